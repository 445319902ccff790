"""Long data -> the complete subject x visit grid, wide outcomes and design arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.models._design import build_design, design_rows
from kanalysis.models._visits import _order_by_precedence, _ordered_levels
from kanalysis.requirements import require_columns


@dataclass
class Grid:
    """The complete grid of subjects x visits with outcomes, covariates and designs."""

    frame: pd.DataFrame  # n*t rows, subject-major, visit-minor; covariates filled
    subjects: pd.Index
    visit_levels: list
    arms: list
    arm_code: np.ndarray  # (n,)
    Y: np.ndarray  # (n, t) observed outcomes, NaN = missing
    X_arm: np.ndarray  # (n_arms, n, t, p): design with every subject's arm set to each arm
    fe_names: list
    outcome: str


def _check_columns(data, cols, what="draws"):
    require_columns(data, cols, table="the data", what=what, allow_missing=True)


def build_grid(data: pd.DataFrame, formula: str, subject: str, visit: str, group: str,
               visit_order=None) -> Grid:
    """Validate ``data`` and complete it to one row per subject and visit level."""
    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(f"draws: data must be a pandas DataFrame, got {type(data)!r}")
    if not isinstance(formula, str) or "~" not in formula:
        raise ConfigurationError(f"draws: formula must look like 'y ~ x', got {formula!r}")
    outcome = formula.split("~", 1)[0].strip()
    _check_columns(data, [subject, visit, group, outcome])
    probe = build_design(data, formula, subject,
                         extra_columns=[visit, group], what="draws")
    variables = [v for v in probe.variables if v not in (subject,)]
    base = data[list(dict.fromkeys([subject, visit, group, outcome, *variables]))].copy()
    for col in (subject, visit, group):
        if base[col].isna().any():
            bad = base.index[base[col].isna().to_numpy()]
            raise DataValidationError(f"draws: column {col!r} is missing in rows {list(bad[:10])}"
                                      "; every row needs a subject, a visit and an arm.")
    if visit_order is not None:
        visit_levels = list(visit_order)
        unknown = sorted(map(str, set(base[visit]) - set(visit_levels)))
        if unknown:
            raise ConfigurationError(f"draws: visit_order lacks the {visit!r} level(s) {unknown}")
    else:
        visit_levels = _ordered_levels(base[visit])
        if visit_levels is None:
            visit_levels = _order_by_precedence(base, subject, visit, set(base[visit]))
    dup = base.duplicated([subject, visit], keep=False)
    if dup.any():
        raise DataValidationError(
            f"draws: more than one row per {subject!r} and {visit!r} (rows "
            f"{list(base.index[dup][:10])}); keep one row per subject and visit.")
    arm_per = base.groupby(subject, sort=True)[group].nunique()
    if (arm_per > 1).any():
        raise DataValidationError(
            f"draws: the arm column {group!r} changes within subject(s) "
            f"{list(arm_per.index[arm_per > 1][:10])}; it must be constant within subject.")
    subjects = pd.Index(sorted(pd.unique(base[subject])), name=subject)
    n, t = len(subjects), len(visit_levels)
    grid = pd.MultiIndex.from_product([subjects, visit_levels], names=[subject, visit])
    grid = grid.to_frame(index=False)
    if isinstance(base[visit].dtype, pd.CategoricalDtype):
        grid[visit] = pd.Categorical(grid[visit], categories=base[visit].cat.categories)
    else:
        grid[visit] = grid[visit].astype(base[visit].dtype)
    full = grid.merge(base, on=[subject, visit], how="left", sort=False)
    # Fill covariates that are constant within subject into the missing visits.
    for col in [group, *[v for v in variables if v not in (outcome, visit, group)]]:
        if not full[col].isna().any():
            continue
        nun = base.groupby(subject)[col].nunique()
        if (nun <= 1).all():
            first = base.dropna(subset=[col]).groupby(subject)[col].first()
            full[col] = full[col].fillna(full[subject].map(first))
        need = full[col].isna()
        if need.any():
            rows = full.loc[need, [subject, visit]].head(5).to_dict("records")
            raise DataValidationError(
                f"draws: covariate {col!r} varies within subject and is missing where the "
                f"outcome must be imputed ({int(need.sum())} subject-visits, e.g. {rows}); give "
                "it in rows with a NaN outcome for every subject and visit.")
    for col in variables:
        if col in full and full[col].dtype != base[col].dtype and \
                isinstance(base[col].dtype, pd.CategoricalDtype):
            full[col] = pd.Categorical(full[col], categories=base[col].cat.categories)
    Y = full[outcome].to_numpy(dtype=float).reshape(n, t)
    arm_levels = _ordered_levels(base[group]) or sorted(pd.unique(base[group]), key=str)
    arm_of = full[group].to_numpy().reshape(n, t)[:, 0]
    amap = {a: i for i, a in enumerate(arm_levels)}
    arm_code = np.array([amap[a] for a in arm_of], dtype=np.int64)
    design = probe
    X_arm = []
    for a in arm_levels:
        fa = full.copy()
        fa[group] = pd.Series([a] * len(fa), dtype=base[group].dtype) \
            if not isinstance(base[group].dtype, pd.CategoricalDtype) else \
            pd.Categorical([a] * len(fa), categories=base[group].cat.categories)
        fa[outcome] = 0.0
        X_arm.append(design_rows(design, fa).reshape(n, t, -1))
    X_arm = np.stack(X_arm)
    return Grid(frame=full, subjects=subjects, visit_levels=visit_levels, arms=list(arm_levels),
                arm_code=arm_code, Y=Y, X_arm=X_arm, fe_names=list(design.fe_names),
                outcome=outcome)
