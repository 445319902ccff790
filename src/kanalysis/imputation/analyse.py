r"""Step 3: analyse every completed data set (rbmi's ``analyse``).

The default analysis :func:`ancova` fits, per visit,

.. math::

    y_{iv} = \alpha_v + \sum_{a \ne c} \tau_{va}[\text{arm}_i = a] + z_{iv}'\gamma_v + e_{iv}

by least squares (with the completed data set's subject multiplicities as frequency weights:
jackknife and bootstrap samples), and reports the treatment differences
:math:`\tau_{va}` (parameter ``diff``; ``diff_<arm>`` with more than two arms) and the LS-mean
of each arm (parameter = the arm's name) with counterfactual weights, i.e. the prediction at
the covariate means of all subjects, :math:`\alpha_v + \tau_{va} + \bar z_v'\gamma_v`.
Standard errors and the complete-data df (:math:`n - q`) come from least squares.

Any other analysis is a function ``fun(frame, **context)`` of a completed long data set (one
row per subject and visit, ``frame[outcome]`` complete) returning a DataFrame with columns
``visit``, ``parameter``, ``estimate``, ``std_error`` and optionally ``df``; ``context`` holds
``outcome``, ``subject``, ``visit``, ``group``, ``covariates``, ``control``.

A ``delta`` frame (subject, visit, delta) is added to the completed outcomes before the
analysis (:func:`delta_template` builds the usual patterns).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula

from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.imputation.impute import Imputed

__all__ = ["Analysed", "analyse", "ancova", "delta_template"]


@dataclass
class Analysed:
    """Estimates of every completed data set: arrays (K, P) over parameters ``labels``."""

    imputed: Imputed
    labels: pd.DataFrame  # P rows: visit, parameter
    estimate: np.ndarray
    std_error: np.ndarray
    df: np.ndarray
    delta: pd.DataFrame | None = None
    n: np.ndarray | None = None  # (K,) subjects in each analysis

    def __repr__(self) -> str:
        return f"Analysed: {self.estimate.shape[0]} analyses x {self.estimate.shape[1]} parameters"


def _control(imputed: Imputed, control):
    arms = imputed.draws.grid.arms
    if control is not None:
        if control not in arms:
            raise ConfigurationError(f"analyse: control {control!r} is not an arm of {arms}")
        return control
    refs = imputed.references
    return default_control(arms, refs)


def default_control(arms, refs):
    """The arm the others refer to in ``references``; else the control arm by name (placebo,
    midazolam, ...; :func:`kanalysis.plots.style.control_arm`); else the first arm."""
    targets = [r for a, r in refs.items() if r != a]
    if targets:
        return max(sorted(set(targets), key=str), key=targets.count)
    try:  # the project's one control-arm rule
        from kanalysis.rules import control_arm  # type: ignore[attr-defined]
    except ImportError:
        from kanalysis.plots.style import control_arm

    found = control_arm(arms)
    return arms[0] if found is None else found


def ancova(frame: pd.DataFrame, *, outcome: str, visit: str, group: str,
           covariates: Sequence[str] = (), control=None, weights=None, **_) -> pd.DataFrame:
    """ANCOVA per visit of a completed long data set (see the module docstring).

    ``weights`` (optional, per row) are frequency weights (duplicated subjects)."""
    out = []
    arms = list(pd.unique(frame[group]))
    control = arms[0] if control is None else control
    levels = [control] + [a for a in arms if a != control]
    for v, fv in frame.groupby(visit, sort=False, observed=True):
        w = np.ones(len(fv)) if weights is None else np.asarray(weights)[frame[visit] == v]
        D, names = _visit_design(fv, group, levels, covariates)
        est, se, df = _wls(D[None], fv[outcome].to_numpy(float)[None], w[None], levels)
        for name, e, s in zip(names, est[0], se[0], strict=True):
            out.append({"visit": v, "parameter": name, "estimate": e, "std_error": s,
                        "df": df[0]})
    return pd.DataFrame(out)


def _visit_design(fv, group, levels, covariates):
    cols = [np.ones(len(fv))]
    g = fv[group].to_numpy()
    for a in levels[1:]:
        cols.append((g == a).astype(float))
    if covariates:
        mm = Formula("0 + " + " + ".join(covariates)).get_model_matrix(fv, na_action="raise")
        Z = np.asarray(mm, dtype=float)
        cols.extend(Z.T)
    D = np.column_stack(cols)
    names = ["diff" if len(levels) == 2 else f"diff_{a}" for a in levels[1:]] + \
        [str(a) for a in levels]
    return D, names


def _wls(D, Y, W, levels):
    """Batched weighted least squares. D (K or 1, n, q), Y (K, n), W (K, n) -> estimates of
    the differences and LS-means (K, P), their SEs (K, P) and residual df (K,)."""
    K = Y.shape[0]
    Dw = D * W[:, :, None]
    G = np.einsum("knq,knr->kqr", Dw, np.broadcast_to(D, (K,) + D.shape[1:]))
    h = np.einsum("knq,kn->kq", Dw, Y)
    Ginv = np.linalg.inv(G)
    b = np.einsum("kqr,kr->kq", Ginv, h)
    resid = Y - np.einsum("knq,kq->kn", np.broadcast_to(D, (K,) + D.shape[1:]), b)
    nw = W.sum(1)
    q = D.shape[2]
    df = nw - q
    if np.any(df <= 0):
        raise DataValidationError(f"analyse: {int(nw.min())} subjects cannot estimate an ANCOVA "
                                  f"with {q} coefficients")
    s2 = (W * resid**2).sum(1) / df
    na = len(levels)
    zbar = np.einsum("kn,knq->kq", W, np.broadcast_to(D, (K,) + D.shape[1:])) / nw[:, None]
    rows = []
    for j in range(1, na):  # differences
        c = np.zeros((K, q))
        c[:, j] = 1.0
        rows.append(c)
    for j in range(na):  # LS-means at the covariate means
        c = zbar.copy()
        c[:, :na] = 0.0
        c[:, 0] = 1.0
        if j > 0:
            c[:, j] = 1.0
        rows.append(c)
    Cm = np.stack(rows, axis=1)  # (K, P, q)
    est = np.einsum("kpq,kq->kp", Cm, b)
    var = np.einsum("kpq,kqr,kpr->kp", Cm, Ginv, Cm) * s2[:, None]
    return est, np.sqrt(var), df


def _delta_matrix(imputed: Imputed, delta) -> np.ndarray | None:
    if delta is None:
        return None
    dr = imputed.draws
    if isinstance(delta, np.ndarray):
        if delta.shape != imputed.Y.shape[1:]:
            raise ConfigurationError(f"analyse: a delta array must have shape "
                                     f"{imputed.Y.shape[1:]}")
        return delta.astype(float)
    need = [dr.subject, dr.visit, "delta"]
    if not isinstance(delta, pd.DataFrame) or not set(need) <= set(delta.columns):
        raise ConfigurationError(f"analyse: delta must be a DataFrame with columns {need} "
                                 "(delta_template() builds one)")
    if delta["delta"].isna().any():
        bad = delta.index[delta["delta"].isna()]
        raise DataValidationError(f"analyse: the delta frame has missing 'delta' in rows "
                                  f"{list(bad[:10])}")
    si = dr.grid.subjects.get_indexer(delta[dr.subject])
    vmap = {v: i for i, v in enumerate(dr.grid.visit_levels)}
    vmap.update({str(v): i for i, v in enumerate(dr.grid.visit_levels)})
    vi = delta[dr.visit].map(lambda v: vmap.get(v, vmap.get(str(v), -1))).to_numpy()
    bad = (si < 0) | (vi < 0)
    if bad.any():
        raise DataValidationError(f"analyse: delta rows {list(delta.index[bad][:10])} name "
                                  "subjects or visits that are not in the data")
    M = np.zeros(imputed.Y.shape[1:])
    np.add.at(M, (si, vi), delta["delta"].to_numpy(float))
    return M


def analyse(imputed: Imputed, covariates: Sequence[str] = (), fun: Callable = ancova,
            delta=None, control=None, **kwargs) -> Analysed:
    """Analyse every completed data set.

    Parameters
    ----------
    imputed : Imputed
        From :func:`kanalysis.imputation.impute`.
    covariates : list of str
        Covariates of the default ANCOVA (columns of the data, e.g. ``["BASVAL"]``).
    fun : callable
        The analysis; default :func:`ancova`. See the module docstring for the contract.
    delta : DataFrame, optional
        Columns subject, visit, ``delta``: added to the outcomes before the analysis.
    control : optional
        Control arm of the differences (default: the reference arm of ``impute``).
    **kwargs
        Passed to ``fun``.

    Returns
    -------
    Analysed
    """
    if not isinstance(imputed, Imputed):
        raise ConfigurationError(f"analyse: imputed must come from impute(), got "
                                 f"{type(imputed)!r}")
    dr = imputed.draws
    grid = dr.grid
    covariates = list(covariates or [])
    missing = [c for c in covariates if c not in grid.frame.columns]
    if missing:
        raise ConfigurationError(f"analyse: covariate(s) {missing} are not columns of the draws' "
                                 f"data (formula variables and arm): {list(grid.frame.columns)}")
    control = _control(imputed, control)
    dmat = _delta_matrix(imputed, delta)
    Y = imputed.Y if dmat is None else imputed.Y + dmat[None]
    K, n, t = Y.shape
    W = imputed.weights.astype(float)
    if fun is ancova and not kwargs:
        levels = [control] + [a for a in grid.arms if a != control]
        frame = grid.frame
        ests, ses, dfs, labels = [], [], [], []
        for v_i, v in enumerate(grid.visit_levels):
            fv = frame.iloc[v_i::t]
            D, names = _visit_design(fv, dr.group, levels, covariates)
            e, s, df = _wls(D[None], Y[:, :, v_i], W, levels)
            ests.append(e)
            ses.append(s)
            dfs.append(np.repeat(df[:, None], e.shape[1], axis=1))
            labels += [(v, nm) for nm in names]
        return Analysed(imputed, pd.DataFrame(labels, columns=["visit", "parameter"]),
                        np.concatenate(ests, 1), np.concatenate(ses, 1), np.concatenate(dfs, 1),
                        delta=delta, n=W.sum(1))
    context = dict(outcome=grid.outcome, subject=dr.subject, visit=dr.visit, group=dr.group,
                   covariates=covariates, control=control, **kwargs)
    rows, labels = [], None
    for j in range(K):
        frame = grid.frame.copy()
        frame[grid.outcome] = Y[j].ravel()
        w = imputed.weights[j]
        if not np.all(w == 1):
            reps = np.repeat(np.arange(n), w)
            copy_no = np.concatenate([np.arange(c) for c in w])
            idx = (reps[:, None] * t + np.arange(t)[None, :]).ravel()
            frame = frame.iloc[idx].reset_index(drop=True)
            frame[dr.subject] = [f"{s}#{c}" if c else s for s, c in
                                 zip(frame[dr.subject], np.repeat(copy_no, t), strict=True)]
        res = fun(frame, **context)
        if not isinstance(res, pd.DataFrame) or \
                not {"visit", "parameter", "estimate", "std_error"} <= set(res.columns):
            raise ConfigurationError("analyse: fun must return a DataFrame with columns visit, "
                                     "parameter, estimate, std_error (and optionally df)")
        key = res[["visit", "parameter"]].reset_index(drop=True)
        if labels is None:
            labels = key
        elif not key.equals(labels):
            raise ConfigurationError("analyse: fun returned different parameters for different "
                                     "completed data sets")
        rows.append(res)
    est = np.array([r["estimate"].to_numpy(float) for r in rows])
    se = np.array([r["std_error"].to_numpy(float) for r in rows])
    df = np.array([r["df"].to_numpy(float) if "df" in r else np.full(len(r), np.inf)
                   for r in rows])
    return Analysed(imputed, labels, est, se, df, delta=delta, n=W.sum(1))


def delta_template(imputed: Imputed, delta: Sequence[float] | None = None,
                   dlag: Sequence[float] | None = None, missing_only: bool = True) -> pd.DataFrame:
    r"""A delta frame with one row per subject and visit, and the flags to build deltas.

    With ``delta`` and ``dlag`` (one value per visit) the delta at visit :math:`j` of a
    subject with ICE at visit :math:`k` is :math:`\sum_{l=k}^{j} \delta_l\,
    \text{dlag}_{l-k}` (0 before the ICE), as in rbmi and Roger's five macros; with
    ``missing_only`` observed post-ICE values get 0. Columns: subject, visit, ``is_mar``
    (strategy MAR), ``is_missing``, ``is_post_ice``, ``strategy``, ``delta``.
    """
    dr = imputed.draws
    n, t = imputed.Y.shape[1:]
    delta = np.zeros(t) if delta is None else np.asarray(delta, dtype=float)
    dlag = np.ones(t) if dlag is None else np.asarray(dlag, dtype=float)
    if delta.shape != (t,) or dlag.shape != (t,):
        raise ConfigurationError(f"delta_template: delta and dlag need one value per visit ({t})")
    k = dr.ice_k
    post = imputed.post_ice
    D = np.zeros((n, t))
    for i in np.flatnonzero(k < t):
        ki = int(k[i])
        scaled = delta[ki:] * dlag[: t - ki]
        D[i, ki:] = np.cumsum(scaled)
    missing = imputed.missing
    if missing_only:
        D = np.where(missing, D, 0.0)
    frame = dr.grid.frame[[dr.subject, dr.visit]].copy().reset_index(drop=True)
    frame["is_mar"] = np.repeat(imputed.strategy == "MAR", t)
    frame["is_missing"] = missing.ravel()
    frame["is_post_ice"] = post.ravel()
    frame["strategy"] = np.repeat(imputed.strategy, t)
    frame["delta"] = D.ravel()
    return frame
