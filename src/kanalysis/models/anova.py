r"""Type III tests of the fixed effects (SAS "Type 3 Tests of Fixed Effects").

For every term of the formula (``ARMCD``, ``AVISIT``, ``ARMCD:AVISIT``, ``BASVAL``, ...) the
hypothesis is SAS's Type 3 hypothesis, which for the models kanalysis fits is a hypothesis about
cell means:

* the cells cross the levels of every factor of the model;
* a term's factors are tested by the contrasts of each level against the first level of the
  fit's level order (for an interaction, the Kronecker product of each factor's contrasts),
  averaging over the factors not in the term with equal weights (the LS-means averaging). SAS
  contrasts each level with its reference level; the F statistic does not depend on that choice,
  but the multi-df Satterthwaite df do a little, so with SAS's ``CLASS ... (ref=first level)``
  the numbers coincide (with SAS's default reference, the last level, the df differ slightly);
* a numeric variable in the term is tested through its slope (the change of the cell mean per
  unit, for a product of numerics the mixed difference);
* numeric variables not in the term are held at 0, as SAS's Type 3 estimable functions do (so a
  factor's test in a model with a factor-by-covariate interaction is at covariate = 0: centre the
  covariate to test at its mean, as SAS users do).

Each hypothesis ``L beta = 0`` is tested with :meth:`FixedEffectsResult.f_test`, i.e. with the
fit's ``df_method``: Satterthwaite by Fai & Cornelius (1996), as SAS ``DDFM=SATTERTHWAITE`` and
lmerTest ``anova(type = 3)``, or Kenward-Roger (SAS ``DDFM=KR``). Terms with no estimable column
(aliased, or a factor with one level) are left out of the table.

References
----------
SAS Institute. SAS/STAT User's Guide, "The Four Types of Estimable Functions" and PROC MIXED
"Type 3 Tests of Fixed Effects".
Kuznetsova A, Brockhoff PB, Christensen RHB (2017). lmerTest package. J Stat Softw 82(13).
Fai AH-T, Cornelius PL (1996). Approximate F-tests of multiple degree of freedom hypotheses in
generalized least squares analyses of unbalanced split-plot experiments. J Stat Comput Simul
54:363-378.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from kanalysis.models._design import design_rows, reference_grid
from kanalysis.models.inference import row_basis

_C_CALL = re.compile(r"^C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:,.*)?\)$")


def _factor_name(piece: str) -> str:
    m = _C_CALL.match(piece.strip())
    return m.group(1) if m else piece.strip()


def term_label(term: str) -> str:
    """A formula term as its variables read: ``C(VISIT)`` -> ``VISIT``,
    ``THERAPY:C(VISIT)`` -> ``THERAPY:VISIT``."""
    return ":".join(_factor_name(p) for p in str(term).split(":"))


def _contrasts(n: int) -> np.ndarray:
    """(n-1, n): each level minus the first (full rank, rows sum to zero)."""
    C = np.zeros((max(n - 1, 0), n))
    for i in range(n - 1):
        C[i, 0], C[i, i + 1] = -1.0, 1.0
    return C


def term_hypothesis(result, term: str) -> np.ndarray | None:
    """The Type 3 hypothesis matrix L (rows over ``fe_params``) of a formula term, or None when
    it cannot be formed (no estimable column)."""
    design = result.design
    cols = design.term_columns.get(term, [])
    if not cols:
        return None
    pieces = [p.strip() for p in str(term).split(":")]
    factors = list(design.factor_variables)
    data = design.data
    term_factors, term_numerics = [], []
    for p in pieces:
        name = _factor_name(p)
        if name in factors:
            term_factors.append(name)
        elif p in data.columns and pd.api.types.is_numeric_dtype(data[p]):
            term_numerics.append(p)
        else:  # a transform (center(x), np.log(x), ...): test its coefficients directly
            names = list(result.fe_params.index)
            L = np.zeros((len(cols), len(names)))
            for i, c in enumerate(cols):
                L[i, names.index(c)] = 1.0
            return L
    levels = result._level_order()
    grid = reference_grid(design, factors, levels, data=data) if factors else \
        pd.DataFrame(index=[0])
    numerics = [v for v in design.variables if v not in factors]
    for v in numerics:
        if v in grid.columns or v in data.columns:
            grid[v] = 0.0

    def rows(shift: dict) -> np.ndarray:
        g = grid.copy()
        for v, dv in shift.items():
            g[v] = g[v] + dv
        return design_rows(design, g)

    # slope in the term's numerics: mixed first differences
    X = np.zeros((len(grid), len(result.fe_params)))
    for k in range(len(term_numerics) + 1):
        for subset in itertools.combinations(term_numerics, k):
            sign = (-1.0) ** (len(term_numerics) - k)
            X += sign * rows({v: 1.0 for v in subset})
    if term_factors:
        cell = pd.MultiIndex.from_frame(grid[term_factors]) if len(term_factors) > 1 else \
            pd.Index(grid[term_factors[0]])
        lev = [list(pd.unique(grid[f])) for f in term_factors]
        keys = list(itertools.product(*lev))
        pos = {k: i for i, k in enumerate(keys)}
        idx = np.array([pos[k if isinstance(k, tuple) else (k,)] for k in cell])
        M = np.zeros((len(keys), X.shape[1]))
        np.add.at(M, idx, X)
        M /= np.bincount(idx, minlength=len(keys))[:, None]
        C = _contrasts(len(lev[0]))
        for lv in lev[1:]:
            C = np.kron(C, _contrasts(len(lv)))
        L = C @ M
    else:
        L = X.mean(axis=0, keepdims=True)
    L[np.abs(L) < 1e-12] = 0.0
    if not np.any(L):
        return None
    return row_basis(L)


def type3_table(result) -> pd.DataFrame:
    """Type III table of a fitted LMM or MMRM: ``term, num_df, den_df, F, p_value``."""
    rows = []
    for term in result.design.term_columns:
        if term in ("1", "0"):
            continue
        L = term_hypothesis(result, term)
        if L is None:
            continue
        test = result._f_test_matrix(L)
        rows.append({"term": term_label(term), "num_df": int(test["num_df"]),
                     "den_df": float(test["den_df"]), "F": float(test["F"]),
                     "p_value": float(test["p_value"])})
    return pd.DataFrame(rows, columns=["term", "num_df", "den_df", "F", "p_value"])
