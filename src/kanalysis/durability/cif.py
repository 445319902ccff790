"""Cumulative incidence with competing risks (Aalen-Johansen, ties as R)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kanalysis.durability._checks import CONF_TYPES, _group_levels, _require_columns
from kanalysis.durability._curves import _aalen_johansen_ij_se, _confint
from kanalysis.durability.results import CumulativeIncidenceResult
from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.intervals import normal_quantile
from kanalysis.results import resolve_conf_level


def cumulative_incidence(
    table: pd.DataFrame,
    time: str = "time",
    status: str = "status",
    group: str | None = "arm",
    causes: dict | None = None,
    conf_type: str = "log",
    conf_level: float | None = None,
    *,
    alpha: float | None = None,
    confidence: float | None = None,
) -> CumulativeIncidenceResult:
    """Cumulative incidence of each cause with competing risks (Aalen-Johansen), no jitter.

    .. math:: F_k(t) = \\sum_{t_j \\le t} \\hat S(t_j^-) \\frac{d_{kj}}{n_j}

    with :math:`\\hat S` the Kaplan-Meier curve for "free of every cause". Tied times are kept
    as they are (no random jitter, unlike lifelines' ``AalenJohansenFitter``), which gives R's
    multi-state ``survfit(Surv(time, factor(status)) ~ arm)`` ``pstate`` exactly.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject (e.g. from :func:`derive`).
    status : str
        Integer column: 0 = censored, other codes = causes.
    causes : dict, optional
        Code -> cause name; default ``{1: "relapse", 2: "dropout"}`` (the codes :func:`derive`
        writes: relapse, and dropout as the competing risk).
    conf_type : {"log", "log-log", "plain"}
        Pointwise CI of each probability from its infinitesimal-jackknife SE (R's multi-state
        ``survfit`` default: ``"log"``, :math:`p \\exp(\\pm z\\,\\mathrm{se}/p)` capped at 1).

    conf_level : float, default 0.95
        Confidence level (``alpha`` and ``confidence`` are deprecated spellings).

    Returns
    -------
    CumulativeIncidenceResult
        ``to_frame()``: one row per group, cause and time with ``estimate`` = F_k(t),
        ``std_error``, ``ci_lower``, ``ci_upper``.

    References
    ----------
    Aalen & Johansen (1978); Putter H, Fiocco M, Geskus RB (2007). Stat Med 26:2389-2430.
    """
    conf_level = resolve_conf_level(conf_level, alpha=alpha, confidence=confidence,
                                    where="cumulative_incidence")
    z = normal_quantile(conf_level)
    causes = dict(causes or {1: "relapse", 2: "dropout"})
    if conf_type not in CONF_TYPES:
        raise ConfigurationError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}.")
    _require_columns(table, [time, status, group])
    t = pd.to_numeric(table[time], errors="coerce").to_numpy(dtype=float)
    st = pd.to_numeric(table[status], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(t) | ~np.isfinite(st) | ~np.isin(st, [0, *causes])
    if bad.any():
        raise DataValidationError(
            f"Columns {time!r} / {status!r}: rows {table.index[bad][:10].tolist()} are missing or "
            f"have a status outside 0 (censored) and {sorted(causes)} (causes)."
        )
    if len(t) == 0:
        raise DataValidationError(
            "cumulative_incidence: the table has no rows; there is nothing to estimate.")
    gname = group if group is not None else "group"
    g = table[group].to_numpy() if group is not None else np.array(["all"] * len(t), dtype=object)
    levels = _group_levels(g)
    frames = []
    for level in levels:
        m = g == level
        tt, ss = t[m], st[m]
        times, inv = np.unique(tt, return_inverse=True)
        counts = np.bincount(inv, minlength=len(times))
        n_risk = len(tt) - np.concatenate([[0], np.cumsum(counts)[:-1]])
        d = {code: np.bincount(inv, weights=(ss == code), minlength=len(times)) for code in causes}
        d_all = sum(d.values())
        surv = np.cumprod(1 - d_all / n_risk)
        surv_before = np.concatenate([[1.0], surv[:-1]])
        res = pd.DataFrame({gname: level, "time": times, "n_risk": n_risk})
        for code, name in causes.items():
            res[f"n_{name}"] = d[code].astype(int)
        res["survival"] = surv
        for code, name in causes.items():
            res[f"cif_{name}"] = np.cumsum(surv_before * d[code] / n_risk)
        se = _aalen_johansen_ij_se(tt, ss, times, n_risk, d, surv_before)
        for key, name in [("survival", "survival"), *causes.items()]:
            prob = res["survival" if key == "survival" else f"cif_{name}"].to_numpy()
            res[f"se_{name}"] = se[key]
            with np.errstate(divide="ignore", invalid="ignore"):
                se_log = np.where(prob > 0, se[key] / prob, 0.0)
            res[f"lower_{name}"], res[f"upper_{name}"] = _confint(prob, se_log, conf_type, z)
        frames.append(res)
    return CumulativeIncidenceResult(pd.concat(frames, ignore_index=True), gname, causes, levels,
                                     conf_level)
