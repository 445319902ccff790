"""Numerical kernels of the survival estimators: curves, CIs, quantiles, variances.

Pure functions of numpy arrays, shared by the estimators and their result classes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kanalysis.durability._checks import _TOL, CONF_TYPES
from kanalysis.errors import ConfigurationError


def _km_curve(t: np.ndarray, d: np.ndarray) -> pd.DataFrame:
    """Kaplan-Meier estimate at every distinct time (event or censoring), as R's survfit."""
    order = np.argsort(t, kind="mergesort")
    t, d = t[order], d[order]
    times, first, counts = np.unique(t, return_index=True, return_counts=True)
    n_event = np.add.reduceat(d, first) if len(t) else np.array([], dtype=int)
    n_risk = len(t) - np.concatenate([[0], np.cumsum(counts)[:-1]])
    surv = np.cumprod(1.0 - n_event / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Greenwood increment for var(log S); infinite once everyone left has the event (S = 0)
        inc = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
    std_log = np.sqrt(np.cumsum(inc))
    return pd.DataFrame(
        {
            "time": times,
            "n_risk": n_risk.astype(int),
            "n_event": n_event.astype(int),
            "n_censor": (counts - n_event).astype(int),
            "survival": surv,
            "std_err_log": std_log,
        }
    )


def _confint(surv: np.ndarray, se_log: np.ndarray, conf_type: str, z: float):
    """Pointwise CI for S(t) as R's survfit_confint (se_log = SE of log S, Greenwood)."""
    surv = np.asarray(surv, dtype=float)
    se_log = np.asarray(se_log, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if conf_type == "log":
            x = np.where(surv == 0, np.nan, surv)
            lower = np.exp(np.log(x) - z * se_log)
            upper = np.minimum(np.exp(np.log(x) + z * se_log), 1.0)
        elif conf_type == "log-log":
            x = np.where((surv == 0) | (surv == 1), np.nan, surv)
            se2 = z * se_log / np.log(x)
            lower = np.exp(-np.exp(np.log(-np.log(x)) - se2))
            upper = np.exp(-np.exp(np.log(-np.log(x)) + se2))
        elif conf_type == "plain":
            half = z * se_log * surv
            lower = np.maximum(surv - half, 0.0)
            upper = np.minimum(surv + half, 1.0)
        else:
            raise ConfigurationError(
                f"conf_type must be one of {CONF_TYPES} (R's survfit conf.type), got {conf_type!r}."
            )
    return lower, upper


def _findq(x: np.ndarray, y: np.ndarray, probs: np.ndarray, tol: float = _TOL) -> np.ndarray:
    """Where a horizontal line at p meets a CDF step curve (R's survival:::findq).

    ``x`` are jump times (first entry the start time), ``y`` the CDF 1 - S there (first entry 0).
    A curve flat exactly at p gives the midpoint of the flat, the usual median convention.
    """
    out = np.full(len(probs), np.nan)
    if not np.any(np.isfinite(y)) or np.nanmax(y) < probs.min():
        return out
    xmax = x[-1]
    keep = ~pd.Series(y).duplicated().to_numpy()
    x, y = x[keep], y[keep]
    n = len(y)
    idx = np.arange(n)
    ok = np.isfinite(y)

    def first_reaching(offset: float) -> np.ndarray:
        yy, ii = y[ok] + offset, idx[ok]
        pos = np.searchsorted(yy, probs, side="left")  # first yy >= p
        res = np.full(len(probs), -1)
        inside = pos < len(yy)
        res[inside] = ii[pos[inside]]
        below = probs < yy[0] if len(yy) else np.ones(len(probs), bool)
        res[below] = -1  # approx(rule = 1) gives NA left of the first knot
        return res

    i1, i2 = first_reaching(tol), first_reaching(-tol)
    good = (i1 >= 0) & (i2 >= 0)
    out[good] = (x[i1[good]] + x[i2[good]]) / 2
    out[probs == 0] = x[0]
    if np.isfinite(y[-1]):
        last = (np.abs(probs - y[-1]) < tol) & (i1 >= 0)
        out[last] = (x[i1[last]] + xmax) / 2
    return out


def _km_transform(t, e, s):
    """1 - S(t-) of the pooled Kaplan-Meier curve at each row's stop time (cox.zph 'km')."""
    if s is None:
        c = _km_curve(t, e)
        times, surv = c["time"].to_numpy(), c["survival"].to_numpy()
    else:
        times = np.unique(t)
        ev = np.unique(t[e == 1])
        n_risk = np.array([np.sum((s < u) & (t >= u)) for u in ev])
        d = np.array([np.sum((t == u) & (e == 1)) for u in ev])
        surv_ev = np.cumprod(1 - d / n_risk)
        pos = np.searchsorted(ev, times, side="right") - 1
        surv = np.where(pos >= 0, surv_ev[np.maximum(pos, 0)], 1.0)
    idx = np.searchsorted(times, t, side="left")  # number of curve times strictly before t
    return 1 - np.concatenate([[1.0], surv])[idx]


def _logrank_parts(t, e, gcode, k):
    """Observed, expected and hypergeometric covariance of the log-rank test in one stratum."""
    ev_times = np.unique(t[e == 1])
    if len(ev_times) == 0:
        return np.zeros(k), np.zeros(k), np.zeros((k, k))
    # at risk per group and event time: number with time >= t_j
    n_risk = np.empty((k, len(ev_times)))
    d = np.empty((k, len(ev_times)))
    for j in range(k):
        tj = np.sort(t[gcode == j])
        n_risk[j] = len(tj) - np.searchsorted(tj, ev_times, side="left")
        te = t[(gcode == j) & (e == 1)]
        d[j] = np.bincount(np.searchsorted(ev_times, te), minlength=len(ev_times))
    big_n, big_d = n_risk.sum(0), d.sum(0)
    expected = (n_risk * big_d / big_n).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(big_n > 1, big_d * (big_n - big_d) / (big_n - 1) / big_n**2, 0.0)
    frac = n_risk  # n_g / N scaled below
    v = np.diag((w * frac * big_n).sum(1)) - (w * frac) @ frac.T
    return d.sum(1), expected, v


def _rmst_one(curve: pd.DataFrame, tau: float) -> tuple[float, float]:
    """R survmean: area under the KM curve from min(0, t) to tau, and its Greenwood-type SE."""
    time = curve["time"].to_numpy()
    surv = curve["survival"].to_numpy()
    n_risk, n_event = curve["n_risk"].to_numpy(), curve["n_event"].to_numpy()
    start = min(0.0, time.min())
    with np.errstate(divide="ignore", invalid="ignore"):
        hh = np.where(n_risk - n_event == 0, 0.0, n_event / (n_risk * (n_risk - n_event)))
    keep = time <= tau
    tt = np.concatenate([time[keep], [tau]])
    ss = np.concatenate([surv[keep], [surv[keep][-1] if keep.any() else 1.0]])
    hk = hh[keep]
    delta = np.diff(np.concatenate([[start], tt]))
    rect = delta * np.concatenate([[1.0], ss[:-1]])
    # area after each time t_i up to tau, times its Greenwood increment
    tail = np.cumsum(rect[1:][::-1])
    var = float(np.sum(tail**2 * hk[::-1]))
    return float(rect.sum() + start), math.sqrt(var)


def _aalen_johansen_ij_se(t, status, times, n_risk, d, surv_before) -> dict:
    """Infinitesimal-jackknife SEs of the Aalen-Johansen state probabilities (R's default).

    Each subject's influence on the cause-specific hazard increment at time u is
    (dN_ik(u) - Y_i(u) d_k(u) / n(u)) / n(u); it is carried through p(u) = p(u-) H(u), and the
    variance is the sum of squared influences (Therneau, survival vignette "Multi-state models").
    """
    n = len(t)
    u_free = np.zeros(n)
    u_cause = {code: np.zeros(n) for code in d}
    se_free = np.empty(len(times))
    se_cause = {code: np.empty(len(times)) for code in d}
    for j, u in enumerate(times):
        at_risk = (t >= u).astype(float)
        lam_all = 0.0
        infl_all = np.zeros(n)
        new_cause = {}
        for code in d:
            lam = d[code][j] / n_risk[j]
            infl = (((t == u) & (status == code)).astype(float) - at_risk * lam) / n_risk[j]
            new_cause[code] = u_cause[code] + u_free * lam + surv_before[j] * infl
            lam_all += lam
            infl_all += infl
        u_free = u_free * (1 - lam_all) - surv_before[j] * infl_all
        u_cause = new_cause
        se_free[j] = math.sqrt(float(u_free @ u_free))
        for code in d:
            se_cause[code][j] = math.sqrt(float(u_cause[code] @ u_cause[code]))
    return {"survival": se_free, **se_cause}
