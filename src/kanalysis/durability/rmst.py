"""Restricted mean survival time (R survmean) and differences between groups."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.durability._curves import _rmst_one
from kanalysis.durability.km import kaplan_meier
from kanalysis.errors import ConfigurationError, DataValidationError, StatisticalWarning
from kanalysis.intervals import normal_quantile
from kanalysis.results import resolve_conf_level
from kanalysis.rules import reference_level


def rmst(
    table: pd.DataFrame,
    tau: float,
    time: str = "time",
    event: str = "event",
    group: str | None = "arm",
    reference: str | None = None,
    conf_level: float | None = None,
    *,
    alpha: float | None = None,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Restricted mean survival time up to ``tau`` by group, and differences between groups.

    .. math::
        \\mathrm{RMST}(\\tau) = \\int_0^\\tau \\hat S(t)\\,dt, \\qquad
        \\widehat{\\mathrm{Var}} = \\sum_{t_j \\le \\tau}
        \\left(\\int_{t_j}^{\\tau} \\hat S(u)\\,du\\right)^2 \\frac{d_j}{n_j (n_j - d_j)}

    This is R's ``print(survfit(...), rmean = tau)`` (and survRM2's) estimate and SE. The
    difference of each group against ``reference`` has SE :math:`\\sqrt{se_1^2 + se_0^2}`
    (independent groups), a normal CI and a two-sided p-value.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject.
    tau : float
        Horizon, on the time scale of ``time`` (days). Choose it before looking at the data,
        no later than the end of follow-up in every group.
    reference : str, optional
        Reference group for differences (default: the control arm of
        :func:`kanalysis.rules.control_arm`, else the first sorted level).
    conf_level : float, default 0.95
        Confidence level (``alpha`` and ``confidence`` are deprecated spellings).

    Returns
    -------
    pandas.DataFrame
        Indexed by group (plus rows ``"<group> - <reference>"`` for differences) with columns
        ``estimate`` (the RMST, or the difference), ``std_error, statistic`` (z of the
        difference), ``p_value, ci_lower, ci_upper, n, tau``; the test columns are NaN on the
        group rows. ``attrs["count_columns"]`` names the count column ``n``.

    References
    ----------
    Royston & Parmar (2013) BMC Med Res Methodol 13:152; Uno H et al. (2014) J Clin Oncol
    32:2380-2385; R ``survival:::survmean``.
    """
    conf_level = resolve_conf_level(conf_level, alpha=alpha, confidence=confidence, where="rmst")
    z = normal_quantile(conf_level)
    tau = float(tau)
    if not np.isfinite(tau) or tau <= 0:
        raise ConfigurationError(f"tau must be a positive number of days, got {tau}.")
    km = kaplan_meier(table, time=time, event=event, group=group)
    rows = {}
    for level in km.groups:
        c = km._curve(level)
        if c["time"].max() < tau:
            warnings.warn(
                f"rmst: follow-up in group {level!r} ends at {c['time'].max():g} < tau = {tau:g}; "
                "the curve is carried forward flat (as R does). Choose a smaller tau "
                "(e.g. durability.rmst_tau).",
                StatisticalWarning, stacklevel=2,
            )
        est, se = _rmst_one(c, tau)
        rows[level] = {"estimate": est, "std_error": se, "statistic": np.nan, "p_value": np.nan,
                       "ci_lower": est - z * se, "ci_upper": est + z * se,
                       "n": km.n[level]}
    if len(km.groups) > 1:
        ref = reference if reference is not None else reference_level(km.groups)
        if ref not in rows:
            raise ConfigurationError(f"reference {ref!r} is not a level of {group!r}: {km.groups}.")
        for level in km.groups:
            if level == ref:
                continue
            diff = rows[level]["estimate"] - rows[ref]["estimate"]
            se = math.hypot(rows[level]["std_error"], rows[ref]["std_error"])
            zval = diff / se if se > 0 else np.nan
            rows[f"{level} - {ref}"] = {
                "estimate": diff, "std_error": se, "statistic": zval,
                "p_value": 2 * stats.norm.sf(abs(zval)) if se > 0 else np.nan,
                "ci_lower": diff - z * se, "ci_upper": diff + z * se,
                "n": km.n[level] + km.n[ref]}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["n"] = out["n"].astype(int)
    out["tau"] = tau
    out.index.name = km.group
    out.attrs["count_columns"] = {"n": None}
    out.attrs["conf_level"] = conf_level
    return out


def rmst_tau(table: pd.DataFrame, time: str = "time", group: str | None = "arm") -> float:
    """The RMST horizon that every group observes: the shortest group's longest follow-up.

    ``min over groups of max(time)``, so that no group's curve has to be carried forward past
    its data (with one group, or ``group=None``, its longest follow-up). Pre-specify tau in a
    protocol where you can; this is the usual data-driven default (Tian et al. 2020, Stat Med
    39:2390).
    """
    if time not in table.columns or (group is not None and group not in table.columns):
        raise DataValidationError(
            f"rmst_tau: the table needs columns {[c for c in (time, group) if c]}; it has "
            f"{list(table.columns)}.")
    times = pd.to_numeric(table[time], errors="coerce")
    if times.notna().sum() == 0:
        raise DataValidationError(f"rmst_tau: column {time!r} has no follow-up times.")
    if group is None or table[group].nunique() <= 1:
        return float(times.max())
    return float(times.groupby(table[group]).max().min())
