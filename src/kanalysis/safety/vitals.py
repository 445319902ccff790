"""Within-infusion vitals: courses, per-session peaks, return to baseline, BP exceedances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.errors import ConfigurationError
from kanalysis.intervals import _check_confidence, clopper_pearson
from kanalysis.results import with_count_columns
from kanalysis.rules import km_median
from kanalysis.safety.adapters import (
    _SESSION_KEYS,
    VITAL_VARIABLES,
    _as_list,
    _check_variables,
    _require_columns,
    _vitals,
)

#: Systolic threshold (mmHg) for a blood-pressure exceedance: a session counts if any reading is
#: strictly above it. 180/110 mmHg is the limit most ketamine infusion protocols use to hold or
#: stop an infusion; it is usually attributed to the consensus statement of Sanacora et al. 2017
#: (JAMA Psychiatry 74:399, doi:10.1001/jamapsychiatry.2017.0080), but the exact numbers could not
#: be confirmed in that paper's text, so treat the default as a protocol convention and report the
#: threshold used.
DEFAULT_SBP_THRESHOLD = 180.0


#: Diastolic threshold (mmHg); see :data:`DEFAULT_SBP_THRESHOLD` for the source and its caveat.
DEFAULT_DBP_THRESHOLD = 110.0


#: Default tolerance for "back to baseline": a reading at most this far above the pre-infusion
#: value (mmHg, bpm, CADSS points). A project convention, not a published rule; pass your own.
DEFAULT_RETURN_TOLERANCE: dict[str, float] = {
    "sbp": 10.0,
    "dbp": 10.0,
    "heart_rate": 10.0,
    "cadss": 0.0,
}


def _baseline_values(vitals: pd.DataFrame, variable: str, baseline: str) -> pd.Series:
    pre = vitals.loc[(vitals["minute"] <= 0) & vitals[variable].notna()]
    grouped = pre.sort_values("minute").groupby(_SESSION_KEYS)[variable]
    if baseline == "last":
        return grouped.last()
    if baseline == "mean":
        return grouped.mean()
    raise ConfigurationError(
        f"`baseline` must be 'last' (the reading closest to the infusion start) or 'mean' (the "
        f"mean of all readings at minute <= 0), but {baseline!r} was passed."
    )


def infusion_course(
    data: Any,
    variables: str | Sequence[str] = VITAL_VARIABLES,
    by: str | Sequence[str] | None = ("arm", "infusion_number"),
    *,
    change_from_baseline: bool = False,
    baseline: str = "last",
    conf_level: float | None = None,
    confidence: float | None = None,
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean within-infusion course of CADSS, blood pressure and heart rate by minute.

    For each variable, group (default arm x infusion number) and minute from the infusion start,
    the mean of the non-missing readings with a t-based interval
    ``mean -+ t(1 - alpha/2, n - 1) * sd / sqrt(n)`` (R's ``t.test(x)$conf.int``). Each reading is
    one session, so the interval treats sessions within a group as independent; pooled over
    infusion numbers (``by="arm"``) a subject contributes several sessions and the interval is too
    narrow; use :func:`infusion_trend` for inference across infusions.

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort with a ``vitals`` table, or the vitals table (with ``arm`` or ``subjects=``).
    variables : str or sequence of str, default ("cadss", "sbp", "dbp", "heart_rate")
        Columns of ``vitals`` to summarise.
    by : str or sequence of str or None, default ("arm", "infusion_number")
        Grouping columns besides ``minute``; ``"arm"`` alone pools infusions.
    change_from_baseline : bool, default False
        Summarise the change from the session's pre-infusion value instead of the raw value.
    baseline : {"last", "mean"}, default "last"
        Pre-infusion value when ``change_from_baseline``: the reading at minute <= 0 closest to the
        start, or the mean of readings at minute <= 0.
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).
    subjects : DataFrame, optional
        Subjects table to look up ``arm`` when ``data`` is a bare vitals table without it.

    Returns
    -------
    DataFrame
        Columns ``variable``, the ``by`` columns, ``minute``, ``n``, ``mean``, ``sd``,
        ``std_error``, ``estimate`` (the mean), ``df``, ``ci_lower``, ``ci_upper`` (interval
        missing where ``n < 2``). Previous names ``lower``, ``upper`` are kept for one release.

    Examples
    --------
    >>> import kanalysis as ka
    >>> from kanalysis.safety import infusion_course
    >>> cohort = ka.load_cohort("data/synthetic/serial")  # doctest: +SKIP
    >>> course = infusion_course(cohort, ["sbp", "cadss"], by=["arm", "infusion_number"])  # doctest: +SKIP
    >>> course.query("variable == 'sbp' and infusion_number == 1")  # doctest: +SKIP
    """
    clevel = _check_confidence(conf_level, confidence)
    variables = _check_variables(variables)
    by_cols = _as_list(by)
    vitals = _vitals(data, subjects, variables)
    _require_columns(vitals, by_cols, "vitals")
    pieces = []
    for variable in variables:
        columns = list(dict.fromkeys([*_SESSION_KEYS, *by_cols, "minute", variable]))
        frame = vitals[columns].copy()
        if change_from_baseline:
            base = _baseline_values(vitals, variable, baseline).rename("_baseline")
            frame = frame.join(base, on=_SESSION_KEYS)
            frame[variable] = frame[variable] - frame["_baseline"]
        frame = frame.dropna(subset=[variable])
        groups = [*by_cols, "minute"]
        agg = (
            frame.groupby(groups, sort=True, dropna=False)[variable]
            .agg(n="count", mean="mean", sd="std")
            .reset_index()
        )
        agg.insert(0, "variable", variable)
        pieces.append(agg)
    out = pd.concat(pieces, ignore_index=True)
    out["n"] = out["n"].astype(int)
    out["std_error"] = out["sd"] / np.sqrt(out["n"])
    dof = (out["n"] - 1).where(out["n"] > 1)
    t_crit = stats.t.ppf(1 - (1 - clevel) / 2, dof)
    out["estimate"] = out["mean"]
    out["df"] = dof
    out["ci_lower"] = out["mean"] - t_crit * out["std_error"]
    out["ci_upper"] = out["mean"] + t_crit * out["std_error"]
    # names of the previous release, kept for one release
    out["lower"], out["upper"] = out["ci_lower"], out["ci_upper"]
    return with_count_columns(out, {"n": None})


def session_peaks(
    data: Any,
    variables: str | Sequence[str] = VITAL_VARIABLES,
    *,
    baseline: str = "last",
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-session peak of each vital sign and its change from the pre-infusion value.

    The baseline is the pre-infusion value (readings at minute <= 0: the one closest to the
    start by default); the peak is the largest reading after the start (minute > 0), at the first
    minute it is reached; ``peak_change = peak - baseline``. For CADSS the ``peak`` itself is the
    usual summary ("peak CADSS"); for blood pressure and heart rate the ``peak_change``.

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort with a ``vitals`` table, or the vitals table (with ``arm`` or ``subjects=``).
    variables : str or sequence of str, default ("cadss", "sbp", "dbp", "heart_rate")
    baseline : {"last", "mean"}, default "last"
        Pre-infusion value: the reading at minute <= 0 closest to the start, or their mean.
    subjects : DataFrame, optional
        Subjects table to look up ``arm``.

    Returns
    -------
    DataFrame
        One row per session and variable: ``subject_id``, ``infusion_number``, ``arm``,
        ``variable``, ``baseline``, ``peak``, ``peak_minute``, ``peak_change`` (missing where a
        session has no pre-infusion or no post-start reading of that variable).

    Examples
    --------
    >>> from kanalysis.safety import session_peaks
    >>> peaks = session_peaks(cohort, ["sbp", "cadss"])  # doctest: +SKIP
    >>> peaks.query("variable == 'sbp'").groupby("infusion_number")["peak_change"].mean()  # doctest: +SKIP
    """
    variables = _check_variables(variables)
    vitals = _vitals(data, subjects, variables)
    sessions = (
        vitals.groupby(_SESSION_KEYS, sort=True)["arm"].first().reset_index()
    )
    pieces = []
    for variable in variables:
        base = _baseline_values(vitals, variable, baseline).rename("baseline")
        post = vitals.loc[(vitals["minute"] > 0) & vitals[variable].notna()]
        post = post.sort_values([*_SESSION_KEYS, "minute"])
        idx = post.groupby(_SESSION_KEYS)[variable].idxmax()
        peak = post.loc[idx.to_numpy(), [*_SESSION_KEYS, variable, "minute"]].rename(
            columns={variable: "peak", "minute": "peak_minute"}
        )
        frame = sessions.join(base, on=_SESSION_KEYS).merge(peak, on=_SESSION_KEYS, how="left")
        frame.insert(3, "variable", variable)
        frame["peak_change"] = frame["peak"] - frame["baseline"]
        pieces.append(frame)
    out = pd.concat(pieces, ignore_index=True)
    return out[
        [*_SESSION_KEYS, "arm", "variable", "baseline", "peak", "peak_minute", "peak_change"]
    ]


def return_to_baseline(
    data: Any,
    variables: str | Sequence[str] = ("sbp", "dbp", "heart_rate", "cadss"),
    *,
    tolerance: float | Mapping[str, float] | None = None,
    baseline: str = "last",
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Time for a vital sign to come back to its pre-infusion value after the peak.

    A session's variable is *elevated* when its peak exceeds the pre-infusion value by more than
    the tolerance. For elevated sessions the return time is the first minute after the peak with a
    reading ``<= baseline + tolerance``; if no such reading exists, the time is censored at the
    last monitored minute (``event = False``), so the result can go to a Kaplan-Meier estimate.

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort with a ``vitals`` table, or the vitals table (with ``arm`` or ``subjects=``).
    variables : str or sequence of str, default ("sbp", "dbp", "heart_rate", "cadss")
    tolerance : float or mapping, optional
        Allowed distance above baseline, one number for all variables or per variable; defaults to
        :data:`DEFAULT_RETURN_TOLERANCE` (10 mmHg, 10 bpm, 0 CADSS points: a project convention).
    baseline : {"last", "mean"}, default "last"
        Pre-infusion value, as in :func:`session_peaks`.
    subjects : DataFrame, optional
        Subjects table to look up ``arm``.

    Returns
    -------
    DataFrame
        One row per session and variable: the :func:`session_peaks` columns plus ``tolerance``,
        ``elevated`` (bool), ``return_minute`` (minutes from infusion start; censoring time when
        ``event`` is False), ``minutes_from_peak`` and ``event`` (True = returned). Sessions that
        were not elevated, or lack a baseline or post-start reading, have missing times and
        ``event`` False.

    Examples
    --------
    >>> from kanalysis.safety import return_to_baseline
    >>> rtb = return_to_baseline(cohort, "sbp", tolerance=5)  # doctest: +SKIP
    >>> rtb.loc[rtb["elevated"], ["return_minute", "event"]].describe()  # doctest: +SKIP
    """
    variables = _check_variables(variables)
    tolerances: dict[str, float] = {}
    for variable in variables:
        if tolerance is None:
            tol = DEFAULT_RETURN_TOLERANCE.get(variable)
        elif isinstance(tolerance, Mapping):
            tol = tolerance.get(variable)
        else:
            tol = float(tolerance)
        if tol is None or not np.isfinite(tol) or tol < 0:
            raise ConfigurationError(
                f"No usable return-to-baseline tolerance for {variable!r} (got {tol!r}); pass "
                f"tolerance={{'{variable}': <non-negative number>}}."
            )
        tolerances[variable] = float(tol)
    vitals = _vitals(data, subjects, variables)
    peaks = session_peaks(vitals, variables, baseline=baseline)
    peaks["tolerance"] = peaks["variable"].map(tolerances)
    peaks["elevated"] = (peaks["peak_change"] > peaks["tolerance"]).fillna(False).astype(bool)
    pieces = []
    for variable in variables:
        p = peaks.loc[peaks["variable"] == variable].copy()
        post = vitals.loc[(vitals["minute"] > 0) & vitals[variable].notna(),
                          [*_SESSION_KEYS, "minute", variable]]
        last_minute = post.groupby(_SESSION_KEYS)["minute"].max().rename("_last_minute")
        cand = post.merge(
            p[[*_SESSION_KEYS, "baseline", "peak_minute", "tolerance"]], on=_SESSION_KEYS
        )
        back = cand.loc[
            (cand["minute"] > cand["peak_minute"])
            & (cand[variable] <= cand["baseline"] + cand["tolerance"])
        ]
        first_back = back.groupby(_SESSION_KEYS)["minute"].min().rename("_first_back")
        p = p.join(last_minute, on=_SESSION_KEYS).join(first_back, on=_SESSION_KEYS)
        p["event"] = p["elevated"] & p["_first_back"].notna()
        p["return_minute"] = np.where(
            p["elevated"], p["_first_back"].fillna(p["_last_minute"]), np.nan
        )
        p["minutes_from_peak"] = p["return_minute"] - p["peak_minute"]
        pieces.append(p.drop(columns=["_last_minute", "_first_back"]))
    return pd.concat(pieces, ignore_index=True)


def return_time_summary(
    returns: pd.DataFrame,
    by: str | Sequence[str] | None = "arm",
    *,
    conf_level: float | None = None,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Summarise :func:`return_to_baseline` per variable and group.

    Among elevated sessions: how many came back within monitoring (with a Clopper-Pearson CI
    for the share) and the Kaplan-Meier median minute of return (from infusion start), which
    accounts for sessions censored at the end of monitoring; the median is missing when fewer
    than half came back. The median is :func:`kanalysis.rules.km_median`, R's
    ``quantile.survfit`` rule, the same as :mod:`kanalysis.durability`'s: where the curve is flat
    at exactly 0.5 it is the midpoint of the flat (to the last monitored minute when the flat runs
    to the end).

    Parameters
    ----------
    returns : DataFrame
        Output of :func:`return_to_baseline`.
    by : str or sequence of str or None, default "arm"
        Grouping columns besides ``variable`` (e.g. ``["arm", "infusion_number"]``).
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).

    Returns
    -------
    DataFrame
        ``variable``, the ``by`` columns, ``n`` (= ``n_elevated``), ``n_sessions``,
        ``n_elevated``, ``n_returned``, ``estimate`` (share returned), ``ci_lower``,
        ``ci_upper``, ``median_return_minute`` (:func:`kanalysis.rules.km_median`). Previous
        names ``proportion_returned``, ``lower``, ``upper`` are kept for one release.

    References
    ----------
    Kaplan EL, Meier P (1958). Nonparametric estimation from incomplete observations. J Am Stat
    Assoc 53:457-481.

    Examples
    --------
    >>> from kanalysis.safety import return_to_baseline, return_time_summary
    >>> rtb = return_to_baseline(cohort, ["sbp", "cadss"])  # doctest: +SKIP
    >>> return_time_summary(rtb, by="arm")  # doctest: +SKIP
    """
    clevel = _check_confidence(conf_level, confidence)
    _require_columns(returns, ["variable", "elevated", "event", "return_minute"], "returns")
    groups = ["variable", *_as_list(by)]
    _require_columns(returns, groups, "returns")
    rows = []
    for key, g in returns.groupby(groups, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        elevated = g.loc[g["elevated"].astype(bool)]
        event = elevated["event"].astype(bool).to_numpy()
        time = elevated["return_minute"].astype(float).to_numpy()
        row = dict(zip(groups, key, strict=True))
        row.update(
            n_sessions=len(g),
            n_elevated=len(elevated),
            n_returned=int(event.sum()),
            median_return_minute=km_median(time, event) if len(elevated) else np.nan,
        )
        rows.append(row)
    out = pd.DataFrame(rows)
    valid = out["n_elevated"] > 0
    out["proportion_returned"] = (out["n_returned"] / out["n_elevated"]).where(valid)
    out["ci_lower"] = np.nan
    out["ci_upper"] = np.nan
    if valid.any():
        lo, hi = clopper_pearson(out.loc[valid, "n_returned"], out.loc[valid, "n_elevated"],
                                 clevel)
        out.loc[valid, "ci_lower"], out.loc[valid, "ci_upper"] = lo, hi
    out["estimate"] = out["proportion_returned"]
    out["n"] = out["n_elevated"]
    out["lower"], out["upper"] = out["ci_lower"], out["ci_upper"]  # previous names
    out = out[[*groups, "n", "n_sessions", "n_elevated", "n_returned", "estimate", "ci_lower",
               "ci_upper", "median_return_minute", "proportion_returned", "lower", "upper"]]
    return with_count_columns(out, {"n_sessions": None, "n": None, "n_elevated": "n_sessions",
                                    "n_returned": "n_elevated"})


def session_exceedances(
    data: Any,
    sbp: float | None = DEFAULT_SBP_THRESHOLD,
    dbp: float | None = DEFAULT_DBP_THRESHOLD,
    *,
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Flag every monitored session with a blood pressure above the thresholds.

    A session exceeds if any of its readings (pre-infusion readings included) has
    ``sbp > sbp_threshold`` or ``dbp > dbp_threshold`` (strictly greater). Sessions without any
    blood-pressure reading are left out. Sources of the default 180/110 mmHg: see
    :data:`DEFAULT_SBP_THRESHOLD`.

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort with a ``vitals`` table, or the vitals table (with ``arm`` or ``subjects=``).
    sbp, dbp : float or None, default 180, 110
        Thresholds in mmHg; None ignores that component.
    subjects : DataFrame, optional
        Subjects table to look up ``arm``.

    Returns
    -------
    DataFrame
        One row per session: ``subject_id``, ``infusion_number``, ``arm``, ``max_sbp``,
        ``max_dbp``, ``exceeded`` (bool).

    Examples
    --------
    >>> from kanalysis.safety import session_exceedances
    >>> flags = session_exceedances(cohort)  # doctest: +SKIP
    >>> flags.loc[flags["exceeded"]]  # doctest: +SKIP
    """
    if sbp is None and dbp is None:
        raise ConfigurationError("At least one of `sbp` and `dbp` must be a threshold (mmHg).")
    vitals = _vitals(data, subjects, ["sbp", "dbp"])
    has_bp = vitals["sbp"].notna() | vitals["dbp"].notna()
    bp = vitals.loc[has_bp]
    out = (
        bp.groupby(_SESSION_KEYS, sort=True)
        .agg(arm=("arm", "first"), max_sbp=("sbp", "max"), max_dbp=("dbp", "max"))
        .reset_index()
    )
    exceeded = pd.Series(False, index=out.index)
    if sbp is not None:
        exceeded |= out["max_sbp"].gt(float(sbp)).fillna(False).astype(bool)
    if dbp is not None:
        exceeded |= out["max_dbp"].gt(float(dbp)).fillna(False).astype(bool)
    out["exceeded"] = exceeded.astype(bool)
    return out


def exceedances(
    cohort: Any,
    sbp: float | None = DEFAULT_SBP_THRESHOLD,
    dbp: float | None = DEFAULT_DBP_THRESHOLD,
    *,
    by: str | Sequence[str] | None = None,
    level: str = "session",
    conf_level: float | None = None,
    confidence: float | None = None,
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Share of sessions (or subjects) with SBP > 180 or DBP > 110 mmHg, with exact CIs.

    A session exceeds if any of its readings has ``sbp > sbp`` or ``dbp > dbp`` (strictly
    greater; see :func:`session_exceedances`); a subject exceeds if any of their sessions does.
    The proportion ``n_exceeding / n`` gets an exact Clopper-Pearson interval
    (:func:`clopper_pearson`, as R's ``binom.test``). Sessions of one subject are counted as
    independent trials in the session-level interval; the subject-level share avoids that.

    Default thresholds: 180/110 mmHg is the blood pressure at which common ketamine infusion
    protocols hold or stop an infusion, usually attributed to the consensus statement of Sanacora
    et al. (2017, JAMA Psychiatry 74:399-405). The numbers could not be confirmed in that paper's
    text (no pooled rate of sessions above 180/110 was found either), so the default is a protocol
    convention: report the thresholds used and change them where a local protocol differs
    (e.g. 165/100 for treatment-emergent hypertension in Rodrigues et al. 2020).

    Parameters
    ----------
    cohort : Cohort or DataFrame
        A cohort with ``vitals`` and ``subjects`` tables, or the vitals table (with ``arm`` or
        ``subjects=``).
    sbp, dbp : float or None, default 180, 110
        Thresholds in mmHg; None ignores that component.
    by : str or sequence of str, optional
        Extra grouping besides ``arm``, e.g. ``"infusion_number"``.
    level : {"session", "subject"}, default "session"
        Unit of the proportion.
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).
    subjects : DataFrame, optional
        Subjects table to look up ``arm``.

    Returns
    -------
    DataFrame
        Per arm (and ``by`` group): ``arm``, the ``by`` columns, ``n_sessions`` (or
        ``n_subjects`` when ``level="subject"``), ``n_exceeding``, ``n`` (the denominator),
        ``estimate`` (the share), ``ci_lower``, ``ci_upper``. Previous names ``proportion``, ``lower``, ``upper`` are kept for one release.

    References
    ----------
    Sanacora G et al. (2017). A consensus statement on the use of ketamine in the treatment of mood
    disorders. JAMA Psychiatry 74:399-405. doi:10.1001/jamapsychiatry.2017.0080

    Examples
    --------
    >>> import kanalysis as ka
    >>> from kanalysis.safety import exceedances
    >>> cohort = ka.load_cohort("data/synthetic/serial")  # doctest: +SKIP
    >>> exceedances(cohort)  # doctest: +SKIP
    >>> exceedances(cohort, sbp=165, dbp=100, by="infusion_number")  # doctest: +SKIP
    >>> exceedances(cohort, level="subject")  # doctest: +SKIP
    """
    clevel = _check_confidence(conf_level, confidence)
    flags = session_exceedances(cohort, sbp, dbp, subjects=subjects)
    by_cols = [c for c in _as_list(by) if c != "arm"]
    _require_columns(flags, by_cols, "vitals")
    groups = ["arm", *by_cols]
    if level == "session":
        unit, count_col = flags, "n_sessions"
    elif level == "subject":
        unit = flags.groupby([*groups, "subject_id"], sort=True)["exceeded"].any().reset_index()
        count_col = "n_subjects"
    else:
        raise ConfigurationError(
            f"`level` must be 'session' or 'subject', but {level!r} was passed."
        )
    out = (
        unit.groupby(groups, sort=True)["exceeded"]
        .agg(**{count_col: "count", "n_exceeding": "sum"})
        .reset_index()
    )
    out[count_col] = out[count_col].astype(int)
    out["n_exceeding"] = out["n_exceeding"].astype(int)
    out["n"] = out[count_col]
    out["estimate"] = out["n_exceeding"] / out[count_col]
    lower, upper = clopper_pearson(out["n_exceeding"], out[count_col], clevel)
    out["ci_lower"] = np.asarray(lower, dtype=float)
    out["ci_upper"] = np.asarray(upper, dtype=float)
    # names of the previous release, kept for one release
    out["proportion"], out["lower"], out["upper"] = (out["estimate"], out["ci_lower"],
                                                     out["ci_upper"])
    return with_count_columns(out, {count_col: None, "n": None, "n_exceeding": "n"})
