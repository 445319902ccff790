r"""Step 2: impute the missing outcomes under each subject's strategy (rbmi's ``impute``).

For subject *i* with own arm *a*, reference arm *r* = ``references[a]`` and ICE at visit *k*,
the strategy (:mod:`kanalysis.imputation.strategies`) gives the joint distribution
:math:`N(\tilde\mu_i, \tilde\Sigma_i)` of all visits from :math:`\mu_i = X_i\beta`,
:math:`\mu_{ref,i} = X_i^{(r)}\beta` (the subject's covariates with the arm set to *r*) and
the arms' covariances. Missing values are imputed from the conditional distribution given the
values conditioned on (:math:`o`):

.. math::

    E[y_m \mid y_o] = \tilde\mu_m + \tilde\Sigma_{mo}\tilde\Sigma_{oo}^{-1}(y_o - \tilde\mu_o),
    \qquad
    \operatorname{Var}[y_m \mid y_o] = \tilde\Sigma_{mm} - \tilde\Sigma_{mo}\tilde\Sigma_{oo}^{-1}
    \tilde\Sigma_{om}.

In two stages: (1) missing values before the ICE (intermittent missing) and all missing values
of subjects without a non-MAR ICE, under MAR given the observed values before the ICE;
(2) missing values from the ICE on, under the strategy, given all values before the ICE
(observed or imputed in stage 1) and any observed post-ICE values. :class:`CondMean` uses the
conditional means; the other methods draw from the conditional normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.imputation.draws import Draws
from kanalysis.imputation.methods import BMLMI, CondMean
from kanalysis.imputation.strategies import STRATEGIES, strategy_function

__all__ = ["Imputed", "impute"]


@dataclass
class Imputed:
    """Completed data sets: ``Y[j]`` (n x t) with analysis multiplicities ``weights[j]``."""

    draws: Draws
    references: dict
    strategy: np.ndarray  # (n,) strategies used
    Y: np.ndarray  # (K, n, t)
    weights: np.ndarray  # (K, n)
    sample_of: np.ndarray  # (K,) index of the parameter draw behind each completed data set

    @property
    def missing(self) -> np.ndarray:
        """(n, t) True where the value was imputed."""
        return np.isnan(self.draws.grid.Y)

    @property
    def post_ice(self) -> np.ndarray:
        t = self.Y.shape[2]
        return np.arange(t)[None, :] >= self.draws.ice_k[:, None]

    def long(self, j: int = 0) -> pd.DataFrame:
        """Completed data set ``j`` as a long frame (the grid's columns, outcome completed)."""
        frame = self.draws.grid.frame.copy()
        frame[self.draws.grid.outcome] = self.Y[j].ravel()
        return frame

    def __repr__(self) -> str:
        return (f"Imputed: {self.Y.shape[0]} completed data sets of {self.Y.shape[1]} subjects x "
                f"{self.Y.shape[2]} visits ({type(self.draws.method).__name__})")


def _bits(mask):
    return (mask * (1 << np.arange(mask.shape[1]))).sum(1)


def _groups(keys: np.ndarray, rows: np.ndarray):
    """Subjects ``rows`` grouped by identical rows of ``keys`` (a 2-D int array)."""
    if len(rows) == 0:
        return []
    uk, inv = np.unique(keys[rows], axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    return [(uk[g], rows[inv == g]) for g in range(len(uk))]


def _resolve_references(references, arms, strategy, arm_code):
    refs = {}
    references = dict(references or {})
    for a in arms:
        r = references.get(a, references.get(str(a), a))
        if r not in arms:
            raise ConfigurationError(f"impute: the reference arm {r!r} (for {a!r}) is not an "
                                     f"arm of the data {list(arms)}")
        refs[a] = r
    unknown = [k for k in references if k not in arms and str(k) not in map(str, arms)]
    if unknown:
        raise ConfigurationError(f"impute: references names unknown arm(s) {unknown}; arms: "
                                 f"{list(arms)}")
    return refs


def _apply_update(dr: Draws, update_strategy) -> np.ndarray:
    strategy = dr.strategy.copy()
    if update_strategy is None:
        return strategy
    if not isinstance(update_strategy, pd.DataFrame) or \
            not {dr.subject, "strategy"} <= set(update_strategy.columns):
        raise ConfigurationError(f"impute: update_strategy must be a DataFrame with columns "
                                 f"{dr.subject!r} and 'strategy'")
    pos = dr.grid.subjects.get_indexer(update_strategy[dr.subject])
    if (pos < 0).any():
        raise DataValidationError(f"impute: update_strategy names unknown subjects "
                                  f"{list(update_strategy[dr.subject][pos < 0][:10])}")
    t = len(dr.grid.visit_levels)
    new = update_strategy["strategy"].astype(str).to_numpy()
    unknown = sorted(set(new) - set(STRATEGIES))
    if unknown:
        raise DataValidationError(f"impute: update_strategy has unknown strategies {unknown}")
    if (dr.ice_k[pos] >= t).any():
        raise DataValidationError("impute: update_strategy names subjects without an ICE in "
                                  "the draws' ICE table")
    observed = ~np.isnan(dr.grid.Y)
    post = np.arange(t)[None, :] >= dr.ice_k[:, None]
    for p, s in zip(pos, new, strict=True):
        if (s == "MAR") != (strategy[p] == "MAR") and (observed[p] & post[p]).any() \
                and not dr.fit_post_ice:
            raise DataValidationError(
                f"impute: subject {dr.grid.subjects[p]!r} has observed values after its ICE, so "
                f"changing its strategy between MAR and {s if s != 'MAR' else strategy[p]} "
                "changes the imputation model's data; run draws() again with the new ICE table.")
        strategy[p] = s
    return strategy


class _Plan:
    """The conditioning groups of both stages, computed once for all parameter draws."""

    def __init__(self, dr: Draws, strategy, refs):
        grid = dr.grid
        n, t = grid.Y.shape
        self.n, self.t = n, t
        observed = ~np.isnan(grid.Y)
        self.Y0 = np.where(observed, grid.Y, 0.0)
        nonmar = strategy != "MAR"
        k_eff = np.where(nonmar, dr.ice_k, t)
        vis = np.arange(t)[None, :]
        before = vis < k_eff[:, None]
        self.arm = grid.arm_code
        amap = {a: i for i, a in enumerate(grid.arms)}
        self.ref = np.array([amap[refs[grid.arms[a]]] for a in grid.arm_code], dtype=np.int64)
        self.cg_own = np.array([dr.cov_of_arm(a) for a in self.arm])
        self.cg_ref = np.array([dr.cov_of_arm(a) for a in self.ref])
        self.X_own = grid.X_arm[self.arm, np.arange(n)]
        self.X_ref = grid.X_arm[self.ref, np.arange(n)]
        # stage 1: MAR, given observed values before the ICE
        tgt1 = ~observed & before
        cond1 = observed & before
        rows1 = np.flatnonzero(tgt1.any(1))
        keys1 = np.column_stack([self.cg_own, _bits(cond1), _bits(tgt1)])
        self.stage1 = [(int(k[0]), cond1[r[0]], tgt1[r[0]], r) for k, r in _groups(keys1, rows1)]
        # stage 2: the strategy, given everything before the ICE and observed values after it
        tgt2 = ~observed & ~before
        cond2 = before | (observed & ~before)
        rows2 = np.flatnonzero(tgt2.any(1))
        scode = {s: i for i, s in enumerate(sorted(set(strategy), key=str))}
        self.snames = {i: s for s, i in scode.items()}
        scodes = np.array([scode[s] for s in strategy])
        keys2 = np.column_stack([self.arm, self.ref, self.cg_own, self.cg_ref, scodes, k_eff,
                                 _bits(cond2), _bits(tgt2)])
        self.stage2 = []
        for k, r in _groups(keys2, rows2):
            fn = strategy_function(self.snames[int(k[4])])
            self.stage2.append((fn, int(k[2]), int(k[3]), int(k[5]), cond2[r[0]], tgt2[r[0]], r))

    def run(self, params, rng=None, n_draws=1):
        """Completed data sets (n_draws, n, t) for one parameter draw (rng None: means)."""
        beta, sig = params.beta, params.sigmas
        mu_own = self.X_own @ beta
        mu_ref = self.X_ref @ beta
        out = np.repeat(self.Y0[None], n_draws, axis=0)
        for cg, o, m, rows in self.stage1:
            S = sig[cg]
            _fill(out, rows, mu_own[rows], S, o, m, rng)
        for fn, cgo, cgr, k, o, m, rows in self.stage2:
            mu, S = fn(mu_own[rows], mu_ref[rows], sig[cgo], sig[cgr], k)
            mu = np.asarray(mu, dtype=float)
            S = np.asarray(S, dtype=float)
            if mu.shape != (len(rows), self.t) or S.shape != (self.t, self.t):
                raise ConfigurationError(
                    f"impute: strategy {fn.__name__!r} returned shapes {mu.shape} and {S.shape}, "
                    f"expected {(len(rows), self.t)} and {(self.t, self.t)}")
            _fill(out, rows, mu, S, o, m, rng)
        return out


def _fill(out, rows, mu, S, o, m, rng):
    """Impute columns ``m`` of ``out[:, rows]`` given columns ``o``."""
    if o.any():
        A = np.linalg.solve(S[np.ix_(o, o)], S[np.ix_(o, m)]).T
        cur = out[:, rows][:, :, o]
        cond = mu[None, :, m] + (cur - mu[None, :, o]) @ A.T
    else:
        A = None
        cond = np.broadcast_to(mu[None, :, m], (out.shape[0], len(rows), int(m.sum()))).copy()
    if rng is not None:
        C = S[np.ix_(m, m)] - (A @ S[np.ix_(o, m)] if A is not None else 0.0)
        C = 0.5 * (C + C.T)
        try:
            L = np.linalg.cholesky(C)
        except np.linalg.LinAlgError:
            w, V = np.linalg.eigh(C)
            L = V * np.sqrt(np.clip(w, 0, None))
        cond = cond + rng.standard_normal(cond.shape) @ L.T
    sub = out[:, rows]
    sub[:, :, m] = cond
    out[:, rows] = sub


def impute(draws: Draws, references: dict | None = None, update_strategy=None) -> Imputed:
    """Impute the missing outcomes of every parameter draw.

    Parameters
    ----------
    draws : Draws
        From :func:`kanalysis.imputation.draws`.
    references : dict
        Reference arm of each arm, e.g. ``{"ketamine": "midazolam", "midazolam": "midazolam"}``.
        Arms not named are their own reference (so JR, CR and CIR leave their subjects in
        their own arm, i.e. MAR-like).
    update_strategy : DataFrame, optional
        Columns ``subject`` and ``strategy``: a new strategy for subjects of the ICE table
        without refitting (only where the fit's data stay the same).

    Returns
    -------
    Imputed
    """
    if not isinstance(draws, Draws):
        raise ConfigurationError(f"impute: draws must come from draws(), got {type(draws)!r}")
    strategy = _apply_update(draws, update_strategy)
    refs = _resolve_references(references, draws.grid.arms, strategy, draws.grid.arm_code)
    plan = _Plan(draws, strategy, refs)
    method = draws.method
    ys, ws, src = [], [], []
    if isinstance(method, CondMean):
        for j, s in enumerate(draws.samples):
            ys.append(plan.run(s.params))
            ws.append(s.weights[None])
            src.append([j])
    else:
        rng = np.random.default_rng(None if method.seed is None else method.seed + 7919)
        D = method.D if isinstance(method, BMLMI) else 1
        for j, s in enumerate(draws.samples):
            ys.append(plan.run(s.params, rng=rng, n_draws=D))
            ws.append(np.repeat(s.weights[None], D, axis=0))
            src.append([j] * D)
    return Imputed(draws=draws, references=refs, strategy=strategy,
                   Y=np.concatenate(ys), weights=np.concatenate(ws),
                   sample_of=np.concatenate([np.asarray(s) for s in src]))
