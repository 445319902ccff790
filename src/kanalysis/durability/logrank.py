"""Log-rank test after R's survdiff (hypergeometric variance, strata summed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.durability._checks import _group_levels, _survival_arrays
from kanalysis.durability._curves import _logrank_parts
from kanalysis.durability.results import LogrankResult
from kanalysis.errors import DataValidationError


def logrank(
    table: pd.DataFrame,
    time: str = "time",
    event: str = "event",
    group: str = "arm",
    strata: str | Sequence[str] | None = None,
) -> LogrankResult:
    """Log-rank test of equal survival across groups, optionally stratified (R ``survdiff``).

    .. math:: X^2 = (O - E)^\\top V^{-} (O - E), \\quad
              V_{gh} = \\sum_j \\frac{d_j (n_j - d_j)}{n_j - 1}
              \\frac{n_{gj}}{n_j}\\left(\\delta_{gh} - \\frac{n_{hj}}{n_j}\\right)

    With ``strata``, O, E and V are computed within each stratum and summed (R
    ``survdiff(Surv(time, event) ~ arm + strata(site))``).

    Returns
    -------
    LogrankResult
        ``to_frame()``: ``statistic`` (chi-square), ``df`` (groups - 1), ``p_value``, ``n``,
        ``n_event``; ``table`` has ``<group>, n, observed, expected, o_minus_e``.

    References
    ----------
    Mantel N (1966). Cancer Chemother Rep 50:163-170; Peto R, Peto J (1972). J R Stat Soc A
    135:185-207.
    """
    t, e, g, _ = _survival_arrays(table, time, event, group, strata=strata)
    levels = _group_levels(g)
    k = len(levels)
    if k < 2:
        raise DataValidationError(
            f"logrank: column {group!r} has {k} level(s) {levels}; a log-rank test needs 2 or "
            "more groups.")
    if e.sum() == 0:
        raise DataValidationError(
            f"logrank: column {event!r} has no events (every row is censored); the log-rank "
            "test compares event rates and cannot be computed.")
    gcode = pd.Categorical(g, categories=levels).codes
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    if strata_cols:
        skey = table[strata_cols].astype(str).agg("|".join, axis=1).to_numpy()
    else:
        skey = np.zeros(len(t))
    obs, exp_, var = np.zeros(k), np.zeros(k), np.zeros((k, k))
    for s in pd.unique(skey):
        m = skey == s
        o1, e1, v1 = _logrank_parts(t[m], e[m], gcode[m], k)
        obs, exp_, var = obs + o1, exp_ + e1, var + v1
    diff = obs - exp_
    # R uses a generalised inverse; dropping the last group gives the same statistic
    sub = slice(0, k - 1)
    try:
        chisq = float(diff[sub] @ np.linalg.solve(var[sub, sub], diff[sub]))
    except np.linalg.LinAlgError as err:
        raise DataValidationError(
            f"logrank: the variance of the observed - expected events is singular (groups "
            f"{levels}; events by group {obs.astype(int).tolist()}): no group has subjects at "
            "risk alongside another at the event times, so the groups cannot be compared."
        ) from err
    df = k - 1
    tab = pd.DataFrame({group: levels, "n": np.bincount(gcode, minlength=k),
                        "observed": obs, "expected": exp_, "o_minus_e": diff})
    return LogrankResult(tab, chisq, df, float(stats.chi2.sf(chisq, df)), strata_cols)
