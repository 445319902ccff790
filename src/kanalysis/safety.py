"""Safety and tolerability of ketamine infusions: vitals, dissociation and adverse events.

Ketamine is given in a monitored setting because of dissociation, blood-pressure rises and nausea.
This module turns the ``vitals`` and ``adverse_events`` tables of a cohort (see
``docs/data_model.md``) into the numbers ketamine papers and clinic audits report:

- within-infusion courses (mean and t-based CI by minute, arm and infusion number):
  :func:`infusion_course`;
- per-session peak change from the pre-infusion value and time back to baseline:
  :func:`session_peaks`, :func:`return_to_baseline`, :func:`return_time_summary`;
- blood-pressure threshold exceedances with exact (Clopper-Pearson) CIs: :func:`exceedances`,
  :func:`session_exceedances`;
- change of peak dissociation and peak blood-pressure rise over repeated infusions (linear mixed
  model): :func:`infusion_trend`;
- adverse-event incidence, severity, serious events and risk differences (Newcombe hybrid score
  CI): :func:`ae_incidence`, :func:`ae_by_severity`, :func:`ae_serious`, :func:`ae_risk_difference`;
- association of first-infusion dissociation with antidepressant response:
  :func:`dissociation_response`.

Interval helpers :func:`clopper_pearson`, :func:`wilson_interval`, :func:`newcombe_difference` and
:func:`poisson_rate_interval` are public too. Functions return counts without suppression; small
cells are suppressed downstream (reports, and plots through ``min_count``).

Every function accepts a :class:`kanalysis.Cohort`, or the table itself as a DataFrame that already
carries an ``arm`` column (or with ``subjects=`` to look the arm up).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.errors import (
    ConfigurationError,
    ConvergenceError,
    ConvergenceWarning,
    DataValidationError,
    StatisticalWarning,
)
from kanalysis.intervals import (  # re-exported: safety users look for them here
    _check_confidence,
    clopper_pearson,
    newcombe_difference,
    poisson_rate_interval,
    wilson_interval,
)
from kanalysis.results import AnalysisResult, SummaryText, json_records, with_count_columns
from kanalysis.rules import baseline_scores, default_scale, km_median, last_induction_day

__all__ = [
    "DEFAULT_DBP_THRESHOLD",
    "DEFAULT_RETURN_TOLERANCE",
    "DEFAULT_SBP_THRESHOLD",
    "SEVERITY_ORDER",
    "VITAL_VARIABLES",
    "DissociationResponseResult",
    "InfusionTrendResult",
    "ae_by_severity",
    "ae_incidence",
    "ae_risk_difference",
    "ae_serious",
    "clopper_pearson",
    "dissociation_response",
    "exceedances",
    "infusion_course",
    "infusion_trend",
    "newcombe_difference",
    "poisson_rate_interval",
    "return_time_summary",
    "return_to_baseline",
    "session_exceedances",
    "session_peaks",
    "wilson_interval",
]

#: Systolic threshold (mmHg) for a blood-pressure exceedance: a session counts if any reading is
#: strictly above it. 180/110 mmHg is the limit most ketamine infusion protocols use to hold or
#: stop an infusion; it is usually attributed to the consensus statement of Sanacora et al. 2017
#: (JAMA Psychiatry 74:399, doi:10.1001/jamapsychiatry.2017.0080), but the exact numbers could not
#: be confirmed in that paper's text, so treat the default as a protocol convention and report the
#: threshold used.
DEFAULT_SBP_THRESHOLD = 180.0
#: Diastolic threshold (mmHg); see :data:`DEFAULT_SBP_THRESHOLD` for the source and its caveat.
DEFAULT_DBP_THRESHOLD = 110.0

#: The within-infusion variables of the ``vitals`` table.
VITAL_VARIABLES: tuple[str, ...] = ("cadss", "sbp", "dbp", "heart_rate")

#: Default tolerance for "back to baseline": a reading at most this far above the pre-infusion
#: value (mmHg, bpm, CADSS points). A project convention, not a published rule; pass your own.
DEFAULT_RETURN_TOLERANCE: dict[str, float] = {
    "sbp": 10.0,
    "dbp": 10.0,
    "heart_rate": 10.0,
    "cadss": 0.0,
}

#: Severity grades of the ``adverse_events`` table, mildest first.
SEVERITY_ORDER: tuple[str, ...] = ("mild", "moderate", "severe")

_SESSION_KEYS = ["subject_id", "infusion_number"]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _table(data: Any, name: str) -> pd.DataFrame:
    """The table ``name`` of a Cohort, or ``data`` itself when it is a DataFrame."""
    if isinstance(data, pd.DataFrame):
        return data
    table = getattr(data, name, None)
    if table is None:
        raise DataValidationError(
            f"The cohort has no {name!r} table; the safety analyses need it "
            f"(see docs/data_model.md, optional tables)."
        )
    if not isinstance(table, pd.DataFrame):
        raise ConfigurationError(
            f"Expected a kanalysis.Cohort or a pandas DataFrame, got {type(data).__name__}."
        )
    return table


def _subjects_of(data: Any, subjects: pd.DataFrame | None) -> pd.DataFrame | None:
    if subjects is not None:
        return subjects
    if isinstance(data, pd.DataFrame):
        return None
    return getattr(data, "subjects", None)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"Table {table!r} lacks column(s) {missing}; it has {list(frame.columns)}. "
            f"See docs/data_model.md for the expected columns."
        )


def _with_arm(
    frame: pd.DataFrame, subjects: pd.DataFrame | None, table: str, arm: str = "arm"
) -> pd.DataFrame:
    """Return ``frame`` with an ``arm`` column, taken from ``subjects`` when not already present."""
    if arm in frame.columns:
        return frame.copy()
    if subjects is None:
        raise DataValidationError(
            f"Table {table!r} has no {arm!r} column and no subjects table was given to look it up; "
            f"pass a Cohort, or subjects=<subjects DataFrame>."
        )
    _require_columns(subjects, ["subject_id", arm], "subjects")
    out = frame.merge(subjects[["subject_id", arm]], on="subject_id", how="left")
    unknown = out.loc[out[arm].isna(), "subject_id"].unique()
    if len(unknown):
        raise DataValidationError(
            f"Table {table!r}: {len(unknown)} subject_id value(s) have no arm in subjects, "
            f"e.g. {list(unknown[:5])}; fix the subjects table or drop these rows."
        )
    return out


def _vitals(data: Any, subjects: pd.DataFrame | None, variables: Sequence[str]) -> pd.DataFrame:
    vitals = _table(data, "vitals")
    _require_columns(vitals, [*_SESSION_KEYS, "minute", *variables], "vitals")
    return _with_arm(vitals, _subjects_of(data, subjects), "vitals")


def _as_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast pandas ``string`` columns to object so that formula parsers treat them as factors."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].astype(object)
    return out


_TRUE_TEXT = {"true": True, "t": True, "yes": True, "y": True, "1": True,
              "false": False, "f": False, "no": False, "n": False, "0": False}


def _as_bool(values: pd.Series, what: str) -> pd.Series:
    """Read a yes/no column stored as bool, 0/1 or text ("True", "yes"); missing counts as False."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).astype(bool)
    if pd.api.types.is_numeric_dtype(values):
        return values.fillna(0).astype(float).ne(0)
    text = values.astype("string").str.strip().str.lower()
    mapped = text.map(_TRUE_TEXT)
    bad = text.notna() & mapped.isna()
    if bad.any():
        raise DataValidationError(
            f"{what} must be true/false; rows {list(values.index[bad.to_numpy()][:5])} have "
            f"{sorted(set(values[bad].astype(str)))[:5]}."
        )
    return mapped.fillna(False).astype(bool)


def _check_variables(variables: str | Sequence[str]) -> list[str]:
    out = [variables] if isinstance(variables, str) else list(variables)
    if not out:
        raise ConfigurationError("`variables` must name at least one column, e.g. ['sbp'].")
    return out


# --------------------------------------------------------------------------------------------
# Within-infusion courses, peaks, return to baseline
# --------------------------------------------------------------------------------------------


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
        ``std_error``, ``lower``, ``upper`` (interval missing where ``n < 2``).

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
    than half came back. Where the curve is flat at exactly 0.5 the median is the midpoint to the
    next return time, as in R's ``survfit``.

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
        ``variable``, the ``by`` columns, ``n_sessions``, ``n_elevated``, ``n_returned``,
        ``proportion_returned``, ``lower``, ``upper``, ``median_return_minute``.

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


# --------------------------------------------------------------------------------------------
# Threshold exceedances
# --------------------------------------------------------------------------------------------


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
        ``n_subjects`` when ``level="subject"``), ``n_exceeding``, ``proportion``, ``lower``,
        ``upper``.

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


# --------------------------------------------------------------------------------------------
# Repeated infusions: mixed model of per-session peaks
# --------------------------------------------------------------------------------------------

_TREND_OUTCOMES = {
    "peak_cadss": ("cadss", "peak"),
    "peak_sbp_change": ("sbp", "peak_change"),
    "peak_dbp_change": ("dbp", "peak_change"),
    "peak_heart_rate_change": ("heart_rate", "peak_change"),
}


@dataclass
class InfusionTrendResult(AnalysisResult):
    """Mixed model of a per-session peak over infusion number (from :func:`infusion_trend`).

    Attributes
    ----------
    outcome : str
        ``peak_cadss``, ``peak_sbp_change``, ...
    formula, re_formula : str
        Fixed-effects formula and random-effects formula actually fitted.
    random_slope : bool
        Whether the random slope on ``infusion_index`` was kept.
    note : str
        Why the random slope was dropped, if it was.
    fit : object
        The :func:`kanalysis.lmm` result (``fe_params``, ``bse``, ``df``, ``cov_re``, ...).
    data : DataFrame
        One row per session: ``subject_id``, ``arm``, ``infusion_number``, the outcome,
        ``infusion_index`` (0 at the first infusion) and ``later_infusion`` (0/1).
    """

    outcome: str
    formula: str
    re_formula: str
    random_slope: bool
    fit: Any
    data: pd.DataFrame
    note: str = ""

    count_columns: ClassVar[dict[str, str | None]] = {"n": None}

    def to_frame(self) -> pd.DataFrame:
        """Tidy fixed effects: ``outcome, term, estimate, std_error, df, statistic`` (t),
        ``p_value, ci_lower, ci_upper, n`` (sessions)."""
        out = self.fit.to_frame().copy()
        out = out.rename(columns={"t": "statistic"})
        out.insert(0, "outcome", self.outcome)
        out["n"] = len(self.data)
        return out

    def variance_components(self) -> pd.DataFrame:
        """Random-effect SDs / correlation and residual SD, as the engine reports them."""
        return self.fit.variance_components()

    def summary(self) -> SummaryText:
        """Printable summary: the model fitted, the random-slope decision and the estimates."""
        lines = [
            f"Mixed model of {self.outcome} over infusion number",
            f"  fixed:  {self.formula}",
            f"  random: {self.re_formula} | subject_id"
            + ("" if self.random_slope else f"  (random slope dropped: {self.note})"),
            f"  sessions: {len(self.data)}, subjects: {self.data['subject_id'].nunique()}",
            "",
            self.to_frame().to_string(index=False),
        ]
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "formula": self.formula, "re_formula": self.re_formula,
                "random_slope": self.random_slope, "note": self.note,
                "n_sessions": len(self.data), "n_subjects": int(self.data["subject_id"].nunique()),
                "fixed_effects": json_records(self.to_frame())}

    def __repr__(self) -> str:
        return self.summary()


def infusion_trend(
    data: Any,
    outcome: str = "peak_cadss",
    *,
    formula: str | None = None,
    trend: str = "linear",
    random_slope: bool | str = "auto",
    min_subjects_for_slope: int = 5,
    reml: bool = True,
    baseline: str = "last",
    subjects: pd.DataFrame | None = None,
) -> InfusionTrendResult:
    """Does dissociation fade, does the blood-pressure rise change, over repeated infusions?

    Fits the linear mixed model ``y_ij = b0 + b1 * infusion_index_ij (+ arm terms) + u0_i +
    u1_i * infusion_index_ij + e_ij`` to the per-session peak (:func:`session_peaks`), where
    ``infusion_index = infusion_number - 1`` (so the intercept is the first infusion), ``u_i`` is
    bivariate normal per subject and ``e_ij`` is independent normal. The fit uses
    :func:`kanalysis.lmm` (REML by default, Satterthwaite df); results match lme4's
    ``lmer(peak_cadss ~ infusion_index * arm + (1 + infusion_index | subject_id))``.

    The random slope is kept when it is estimable: at least ``min_subjects_for_slope`` subjects
    with two or more sessions and three or more distinct infusion numbers overall, and the fit
    neither fails nor warns of a boundary (singular) solution. Otherwise the model falls back to a
    random intercept, and the result says why (``note``).

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort with ``vitals`` and ``subjects``, or the vitals table (with ``arm`` or
        ``subjects=``).
    outcome : {"peak_cadss", "peak_sbp_change", "peak_dbp_change", "peak_heart_rate_change"}
    formula : str, optional
        Fixed-effects formula on the session table (columns ``infusion_index``,
        ``infusion_number``, ``later_infusion``, ``arm``); overrides ``trend``.
    trend : {"linear", "first_vs_later", "categorical"}, default "linear"
        Shape of the change over infusions in the default formula: a straight line in
        ``infusion_index``; ``later_infusion`` (1 after the first infusion), for attenuation after
        the first infusion followed by a plateau (Rodrigues et al. 2020); or one mean per
        infusion number (``C(infusion_number)``). Crossed with ``arm`` when there are two or
        more arms. The random slope, when kept, is on ``infusion_index``.
    random_slope : bool or "auto", default "auto"
        Force the random slope on or off, or decide as above.
    min_subjects_for_slope : int, default 5
    reml : bool, default True
    baseline : {"last", "mean"}, default "last"
        Pre-infusion value for the change outcomes.
    subjects : DataFrame, optional
        Subjects table to look up ``arm``.

    Returns
    -------
    InfusionTrendResult
        ``to_frame()`` gives the tidy fixed effects; the ``infusion_index`` coefficient is the
        change per infusion (in the reference arm when arm terms are present).

    References
    ----------
    Laird NM, Ware JH (1982). Random-effects models for longitudinal data. Biometrics 38:963-974.
    Singh JB et al. (2016). Am J Psychiatry 173:816-826 (dissociation attenuated with repeated
    dosing).

    Examples
    --------
    >>> from kanalysis.safety import infusion_trend
    >>> trend = infusion_trend(cohort, "peak_cadss")  # doctest: +SKIP
    >>> trend.to_frame().query("term == 'infusion_index'")  # doctest: +SKIP
    >>> infusion_trend(cohort, "peak_cadss", trend="first_vs_later").to_frame()  # doctest: +SKIP
    >>> print(infusion_trend(cohort, "peak_sbp_change").summary())  # doctest: +SKIP
    """
    if outcome not in _TREND_OUTCOMES:
        raise ConfigurationError(
            f"`outcome` must be one of {sorted(_TREND_OUTCOMES)}, but {outcome!r} was passed."
        )
    variable, column = _TREND_OUTCOMES[outcome]
    peaks = session_peaks(data, variable, baseline=baseline, subjects=subjects)
    frame = peaks.rename(columns={column: outcome})
    frame = frame.loc[frame[outcome].notna(), ["subject_id", "arm", "infusion_number", outcome]]
    frame = _plain_strings(frame.reset_index(drop=True))
    frame["infusion_index"] = frame["infusion_number"] - 1
    if frame.empty:
        raise DataValidationError(
            f"No session has a usable {outcome} (vitals.{variable} needs readings after the "
            f"start{' and a pre-infusion value' if column == 'peak_change' else ''})."
        )
    frame["later_infusion"] = (frame["infusion_number"] > 1).astype(int)
    if formula is None:
        trend_terms = {"linear": "infusion_index", "first_vs_later": "later_infusion",
                       "categorical": "C(infusion_number)"}
        if trend not in trend_terms:
            raise ConfigurationError(
                f"`trend` must be one of {sorted(trend_terms)}, but {trend!r} was passed."
            )
        term = trend_terms[trend]
        formula = f"{outcome} ~ {term} * arm" if frame["arm"].nunique() > 1 else f"{outcome} ~ {term}"
    sessions_per_subject = frame.groupby("subject_id")["infusion_index"].nunique()
    n_repeat = int((sessions_per_subject >= 2).sum())
    n_levels = int(frame["infusion_index"].nunique())
    if n_levels < 2:
        raise DataValidationError(
            f"All usable sessions have the same infusion number; a trend over infusions needs "
            f"at least two ({outcome}, {len(frame)} sessions)."
        )

    from kanalysis.models import lmm  # the engine is imported lazily: it is heavy

    def fit(re_formula: str):
        return lmm(frame, formula=formula, groups="subject_id", re_formula=re_formula, reml=reml)

    note = ""
    if random_slope is True or (
        random_slope == "auto" and n_repeat >= min_subjects_for_slope and n_levels >= 3
    ):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = fit("~ 1 + infusion_index")
            boundary = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
            for w in caught:
                if w not in boundary or random_slope is True:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if boundary and random_slope == "auto":
                first_sentence = str(boundary[0].message).split(". ")[0]
                note = f"the random-slope fit warned: {first_sentence}"
            else:
                return InfusionTrendResult(outcome, formula, "~ 1 + infusion_index", True, res,
                                           frame)
        except ConvergenceError as err:
            if random_slope is True:
                raise
            note = f"the random-slope fit failed: {err}"
    elif random_slope == "auto":
        note = (
            f"{n_repeat} subject(s) with repeated sessions (need {min_subjects_for_slope}) and "
            f"{n_levels} infusion number(s) (need 3)"
        )
    elif random_slope is not False:
        raise ConfigurationError(
            f"`random_slope` must be True, False or 'auto', but {random_slope!r} was passed."
        )
    else:
        note = "random_slope=False"
    res = fit("~ 1")
    return InfusionTrendResult(outcome, formula, "~ 1", False, res, frame, note=note)


# --------------------------------------------------------------------------------------------
# Adverse events
# --------------------------------------------------------------------------------------------


def _ae_inputs(
    data: Any,
    subjects: pd.DataFrame | None,
    infusions: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Adverse events with arm, subjects per arm (safety population) and infusions per arm."""
    ae = _table(data, "adverse_events")
    _require_columns(ae, ["subject_id", "term", "severity", "serious"], "adverse_events")
    subjects = _subjects_of(data, subjects)
    if subjects is None:
        raise DataValidationError(
            "The adverse-event incidence needs the subjects table for the denominators; pass a "
            "Cohort or subjects=<subjects DataFrame>."
        )
    _require_columns(subjects, ["subject_id", "arm"], "subjects")
    if infusions is None and not isinstance(data, pd.DataFrame):
        infusions = getattr(data, "infusions", None)
    population = subjects[["subject_id", "arm"]].drop_duplicates("subject_id")
    if infusions is not None:
        _require_columns(infusions, ["subject_id", "infusion_number"], "infusions")
        # Safety population: subjects who received at least one infusion.
        population = population.loc[population["subject_id"].isin(infusions["subject_id"])]
        inf = infusions.merge(population, on="subject_id")
        n_infusions = inf.groupby("arm").size()
    else:
        n_infusions = pd.Series(dtype=float)
    n_subjects = population.groupby("arm").size()
    ae = ae.drop(columns=[c for c in ["arm"] if c in ae.columns]).merge(
        population, on="subject_id", how="left"
    )
    outside = ae.loc[ae["arm"].isna(), "subject_id"].unique()
    if len(outside):
        warnings.warn(
            f"adverse_events: {len(outside)} subject(s) are not in the safety population "
            f"(no arm or no infusion), e.g. {list(outside[:5])}; their events are left out.",
            StatisticalWarning,
            stacklevel=3,
        )
        ae = ae.loc[ae["arm"].notna()]
    return ae, n_subjects, n_infusions


def ae_incidence(
    data: Any,
    *,
    serious_only: bool = False,
    severity: str | Sequence[str] | None = None,
    include_any: bool = False,
    conf_level: float | None = None,
    confidence: float | None = None,
    subjects: pd.DataFrame | None = None,
    infusions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Adverse-event incidence by term and arm, with exact CIs, and events per infusion.

    Incidence is the proportion of subjects in the arm with at least one event of the term,
    ``n_with_event / n_subjects``, with a Clopper-Pearson interval (R ``binom.test``). The event
    rate is ``n_events / n_infusions`` with an exact Poisson interval (R ``poisson.test``), which
    treats infusions as exposure units. The denominators are the safety population: subjects
    with at least one infusion (all subjects when no infusions table is given). Every term
    appears for every arm, with zeros where an arm had no such event.

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort, or the ``adverse_events`` table with ``subjects=`` (and ``infusions=``).
    serious_only : bool, default False
        Count serious events only.
    severity : str or sequence of str, optional
        Count only events of these severities (e.g. ``"severe"``).
    include_any : bool, default False
        Add a row ``term = "any"`` (subjects with any event).
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).
    subjects, infusions : DataFrame, optional
        Tables for the denominators when ``data`` is a bare adverse-events table.

    Returns
    -------
    DataFrame
        ``term``, ``arm``, ``n_subjects``, ``n_with_event``, ``proportion``, ``lower``, ``upper``,
        ``n_events``, ``n_infusions``, ``events_per_infusion``, ``rate_lower``, ``rate_upper``;
        sorted by term then arm.

    Examples
    --------
    >>> from kanalysis.safety import ae_incidence
    >>> inc = ae_incidence(cohort, include_any=True)  # doctest: +SKIP
    >>> inc.pivot(index="term", columns="arm", values="proportion")  # doctest: +SKIP
    """
    clevel = _check_confidence(conf_level, confidence)
    ae, n_subjects, n_infusions = _ae_inputs(data, subjects, infusions)
    if serious_only:
        ae = ae.loc[_as_bool(ae["serious"], "adverse_events.serious")]
    if severity is not None:
        wanted = _as_list(severity)
        unknown = sorted(set(wanted) - set(SEVERITY_ORDER))
        if unknown:
            raise ConfigurationError(
                f"Unknown severity {unknown}; use values from {list(SEVERITY_ORDER)}."
            )
        ae = ae.loc[ae["severity"].isin(wanted)]
    all_terms = sorted(_table(data, "adverse_events")["term"].dropna().astype(str).unique())
    if include_any:
        ae = pd.concat([ae, ae.assign(term="any")], ignore_index=True)
        all_terms = ["any", *all_terms]
    arms = sorted(n_subjects.index)
    grid = pd.MultiIndex.from_product([all_terms, arms], names=["term", "arm"])
    n_with = ae.groupby(["term", "arm"])["subject_id"].nunique().reindex(grid, fill_value=0)
    n_ev = ae.groupby(["term", "arm"]).size().reindex(grid, fill_value=0)
    out = pd.DataFrame({"n_with_event": n_with, "n_events": n_ev}).reset_index()
    out["n_subjects"] = out["arm"].map(n_subjects).astype(int)
    out["n"] = out["n_subjects"]
    out["estimate"] = out["n_with_event"] / out["n_subjects"]
    lower, upper = clopper_pearson(out["n_with_event"], out["n_subjects"], clevel)
    out["ci_lower"], out["ci_upper"] = np.asarray(lower, float), np.asarray(upper, float)
    out["proportion"], out["lower"], out["upper"] = (out["estimate"], out["ci_lower"],
                                                     out["ci_upper"])  # previous names
    if len(n_infusions):
        out["n_infusions"] = out["arm"].map(n_infusions).fillna(0).astype(int)
        exposure = out["n_infusions"].where(out["n_infusions"] > 0)
        out["events_per_infusion"] = out["n_events"] / exposure
        valid = exposure.notna().to_numpy()
        rate_lower = np.full(len(out), np.nan)
        rate_upper = np.full(len(out), np.nan)
        if valid.any():
            lo, hi = poisson_rate_interval(
                out.loc[valid, "n_events"], exposure[valid], clevel
            )
            rate_lower[valid], rate_upper[valid] = lo, hi
        out["rate_lower"], out["rate_upper"] = rate_lower, rate_upper
    else:
        out["n_infusions"] = pd.NA
        out["events_per_infusion"] = np.nan
        out["rate_lower"] = np.nan
        out["rate_upper"] = np.nan
    cols = ["term", "arm", "n", "n_subjects", "n_with_event", "estimate", "ci_lower", "ci_upper",
            "n_events", "n_infusions", "events_per_infusion", "rate_lower", "rate_upper",
            "proportion", "lower", "upper"]
    return with_count_columns(out[cols], {"n_subjects": None, "n": None,
                                          "n_with_event": "n_subjects", "n_events": None,
                                          "n_infusions": None})


def ae_by_severity(
    data: Any,
    *,
    include_any: bool = False,
    conf_level: float | None = None,
    confidence: float | None = None,
    subjects: pd.DataFrame | None = None,
    infusions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Subjects by the worst severity of each adverse-event term, per arm, with exact CIs.

    A subject with several events of a term is counted once, at the most severe grade
    (mild < moderate < severe), as in standard AE tables by maximum grade, so the severity rows of
    a term add up to its incidence.

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort, or the ``adverse_events`` table with ``subjects=``.
    include_any : bool, default False
        Add ``term = "any"``: each subject's worst grade over all terms.
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).
    subjects, infusions : DataFrame, optional
        Tables for the denominators when ``data`` is a bare adverse-events table.

    Returns
    -------
    DataFrame
        ``term``, ``arm``, ``severity``, ``n_subjects``, ``n_with_event``, ``proportion``,
        ``lower``, ``upper``; every term x arm x severity, zeros included.

    Examples
    --------
    >>> from kanalysis.safety import ae_by_severity
    >>> ae_by_severity(cohort).query("severity == 'severe'")  # doctest: +SKIP
    """
    clevel = _check_confidence(conf_level, confidence)
    ae, n_subjects, _ = _ae_inputs(data, subjects, infusions)
    bad = sorted(set(ae["severity"].dropna()) - set(SEVERITY_ORDER))
    if bad:
        raise DataValidationError(
            f"adverse_events.severity has values {bad}; allowed are {list(SEVERITY_ORDER)}."
        )
    ae = ae.loc[ae["severity"].notna()].copy()
    ae["_rank"] = ae["severity"].map({s: i for i, s in enumerate(SEVERITY_ORDER)})
    if include_any:
        ae = pd.concat([ae, ae.assign(term="any")], ignore_index=True)
    worst = ae.groupby(["term", "arm", "subject_id"])["_rank"].max().reset_index()
    worst["severity"] = worst["_rank"].map(dict(enumerate(SEVERITY_ORDER)))
    terms = sorted(set(_table(data, "adverse_events")["term"].dropna().astype(str)))
    if include_any:
        terms = ["any", *terms]
    grid = pd.MultiIndex.from_product(
        [terms, sorted(n_subjects.index), list(SEVERITY_ORDER)], names=["term", "arm", "severity"]
    )
    counts = worst.groupby(["term", "arm", "severity"]).size().reindex(grid, fill_value=0)
    out = counts.rename("n_with_event").reset_index()
    out["n_subjects"] = out["arm"].map(n_subjects).astype(int)
    out["n"] = out["n_subjects"]
    out["estimate"] = out["n_with_event"] / out["n_subjects"]
    lower, upper = clopper_pearson(out["n_with_event"], out["n_subjects"], clevel)
    out["ci_lower"], out["ci_upper"] = np.asarray(lower, float), np.asarray(upper, float)
    out["proportion"], out["lower"], out["upper"] = (out["estimate"], out["ci_lower"],
                                                     out["ci_upper"])  # previous names
    out = out[["term", "arm", "severity", "n", "n_subjects", "n_with_event", "estimate",
               "ci_lower", "ci_upper", "proportion", "lower", "upper"]]
    return with_count_columns(out, {"n_subjects": None, "n": None,
                                    "n_with_event": "n_subjects"})


def ae_serious(
    data: Any,
    *,
    conf_level: float | None = None,
    confidence: float | None = None,
    subjects: pd.DataFrame | None = None,
    infusions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Serious adverse events: subjects with any serious event, and by term, per arm.

    The same table as :func:`ae_incidence` restricted to ``serious`` events, with the
    ``term = "any"`` row first.

    Parameters
    ----------
    data : Cohort or DataFrame
        A cohort, or the ``adverse_events`` table with ``subjects=``.
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).
    subjects, infusions : DataFrame, optional

    Returns
    -------
    DataFrame
        Columns as :func:`ae_incidence`; terms without any serious event keep zero rows.

    Examples
    --------
    >>> from kanalysis.safety import ae_serious
    >>> ae_serious(cohort).query("term == 'any'")  # doctest: +SKIP
    """
    return ae_incidence(data, serious_only=True, include_any=True,
                        conf_level=_check_confidence(conf_level, confidence),
                        subjects=subjects, infusions=infusions)


def ae_risk_difference(
    incidence: pd.DataFrame,
    treatment: str,
    control: str,
    *,
    conf_level: float | None = None,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Risk difference (treatment - control) per adverse-event term with Newcombe's CI.

    ``rd = n_t / N_t - n_c / N_c`` with the hybrid score interval of
    :func:`newcombe_difference` (Newcombe 1998, method 10), which handles the zero cells common in
    adverse-event tables.

    Parameters
    ----------
    incidence : DataFrame
        Output of :func:`ae_incidence` (columns ``term``, ``arm``, ``n_with_event``,
        ``n_subjects``).
    treatment, control : str
        Arm labels.
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).

    Returns
    -------
    DataFrame
        ``term``, ``treatment``, ``control``, ``n_with_event_treatment``, ``n_subjects_treatment``,
        ``n_with_event_control``, ``n_subjects_control``, ``proportion_treatment``,
        ``proportion_control``, ``risk_difference``, ``lower``, ``upper``, in the order of the
        terms in ``incidence``.

    References
    ----------
    Newcombe RG (1998). Stat Med 17:873-890.

    Examples
    --------
    >>> from kanalysis.safety import ae_incidence, ae_risk_difference
    >>> inc = ae_incidence(cohort)  # doctest: +SKIP
    >>> ae_risk_difference(inc, treatment="ketamine", control="midazolam")  # doctest: +SKIP
    """
    clevel = _check_confidence(conf_level, confidence)
    _require_columns(incidence, ["term", "arm", "n_with_event", "n_subjects"], "incidence")
    arms = set(incidence["arm"])
    for label, arm in (("treatment", treatment), ("control", control)):
        if arm not in arms:
            raise ConfigurationError(
                f"`{label}`={arm!r} is not an arm of the incidence table; arms are {sorted(arms)}."
            )
    keep = ["term", "n_with_event", "n_subjects"]
    t = incidence.loc[incidence["arm"] == treatment, keep]
    c = incidence.loc[incidence["arm"] == control, keep]
    both = t.merge(c, on="term", suffixes=("_treatment", "_control"), how="inner", sort=False)
    diff, lower, upper = newcombe_difference(
        both["n_with_event_treatment"], both["n_subjects_treatment"],
        both["n_with_event_control"], both["n_subjects_control"], clevel,
    )
    both.insert(1, "treatment", treatment)
    both.insert(2, "control", control)
    both["proportion_treatment"] = both["n_with_event_treatment"] / both["n_subjects_treatment"]
    both["proportion_control"] = both["n_with_event_control"] / both["n_subjects_control"]
    both["estimate"] = np.asarray(diff, float)
    both["ci_lower"] = np.asarray(lower, float)
    both["ci_upper"] = np.asarray(upper, float)
    # names of the previous release, kept for one release
    both["risk_difference"] = both["estimate"]
    both["lower"] = both["ci_lower"]
    both["upper"] = both["ci_upper"]
    return with_count_columns(both.reset_index(drop=True), {
        "n_subjects_treatment": None, "n_with_event_treatment": "n_subjects_treatment",
        "n_subjects_control": None, "n_with_event_control": "n_subjects_control"})


# --------------------------------------------------------------------------------------------
# Dissociation and response
# --------------------------------------------------------------------------------------------


@dataclass
class DissociationResponseResult(AnalysisResult):
    """OLS regression of the change in depression score on first-infusion peak CADSS.

    Attributes
    ----------
    formula : str
        The model fitted (statsmodels formula).
    scale : str
        Depression scale of the outcome.
    timepoint : str
        Which assessment defined the outcome (e.g. ``"day 1 +- 0.5"``).
    fit : statsmodels RegressionResults
    data : DataFrame
        One row per subject: ``subject_id``, ``arm``, ``peak_cadss``, ``baseline``, ``score``,
        ``day``, ``change``.
    conf_level : float
        Confidence level of the coefficient CIs (``confidence`` is its deprecated name).
    """

    formula: str
    scale: str
    timepoint: str
    fit: Any
    data: pd.DataFrame
    conf_level: float = 0.95

    count_columns: ClassVar[dict[str, str | None]] = {"n": None}

    @property
    def confidence(self) -> float:
        """Deprecated name of :attr:`conf_level`."""
        return self.conf_level

    @property
    def n(self) -> int:
        """Number of subjects in the regression."""
        return int(self.fit.nobs)

    def to_frame(self) -> pd.DataFrame:
        """Tidy coefficients: ``term, estimate, std_error, df, statistic`` (t), ``p_value,
        ci_lower, ci_upper, n``."""
        ci = self.fit.conf_int(alpha=1 - self.conf_level)
        out = pd.DataFrame(
            {
                "term": self.fit.params.index,
                "estimate": self.fit.params.to_numpy(),
                "std_error": self.fit.bse.to_numpy(),
                "df": float(self.fit.df_resid),
                "statistic": self.fit.tvalues.to_numpy(),
                "p_value": self.fit.pvalues.to_numpy(),
                "ci_lower": ci.iloc[:, 0].to_numpy(),
                "ci_upper": ci.iloc[:, 1].to_numpy(),
            }
        )
        out["n"] = self.n
        return out

    def summary(self) -> SummaryText:
        """Printable summary: model, outcome definition and coefficients."""
        text = "\n".join(
            [
                f"Dissociation and response: {self.formula}",
                f"  outcome: change in {self.scale} from baseline at {self.timepoint}",
                f"  subjects: {self.n}",
                "",
                self.to_frame().to_string(index=False),
            ]
        )
        return SummaryText(text)

    def key_numbers(self) -> dict[str, Any]:
        return {"formula": self.formula, "scale": self.scale, "timepoint": self.timepoint,
                "n": self.n, "coefficients": json_records(self.to_frame())}

    def __repr__(self) -> str:
        return self.summary()


def _first_infusion_peak_cadss(data: Any, infusion_number: int, subjects: pd.DataFrame | None
                               ) -> pd.DataFrame:
    vitals = getattr(data, "vitals", None) if not isinstance(data, pd.DataFrame) else None
    if vitals is not None and "cadss" in vitals.columns and vitals["cadss"].notna().any():
        peaks = session_peaks(data, "cadss", subjects=subjects)
        peaks = peaks.loc[(peaks["infusion_number"] == infusion_number) & peaks["peak"].notna()]
        return peaks[["subject_id", "peak"]].rename(columns={"peak": "peak_cadss"})
    # No CADSS in vitals: use CADSS ratings in assessments on the day of that infusion.
    assessments = _table(data, "assessments")
    infusions = _table(data, "infusions")
    inf = infusions.loc[infusions["infusion_number"] == infusion_number, ["subject_id", "day"]]
    cad = assessments.loc[assessments["scale"].isin(["CADSS", "CADSS19"])].merge(
        inf.rename(columns={"day": "_inf_day"}), on="subject_id"
    )
    cad = cad.loc[(cad["day"] > cad["_inf_day"]) & (cad["day"] < cad["_inf_day"] + 1)]
    if cad.empty:
        raise DataValidationError(
            "No CADSS ratings found: neither vitals.cadss nor assessments with scale 'CADSS' on "
            f"the day of infusion {infusion_number}."
        )
    return cad.groupby("subject_id")["score"].max().rename("peak_cadss").reset_index()


def dissociation_response(
    cohort: Any,
    *,
    scale: str | None = None,
    day: float | str = 1.0,
    window: float = 0.5,
    infusion_number: int = 1,
    adjust_for: Sequence[str] = (),
    conf_level: float | None = None,
    confidence: float | None = None,
) -> DissociationResponseResult:
    """Does dissociation at the first infusion predict the antidepressant response?

    Ordinary least squares ``change_i = b0 + b1 * peak_cadss_i + b2 * baseline_i (+ covariates)
    + e_i``, where ``change`` is the depression score at the target time minus the baseline score
    (the last rating on or before the first infusion, :func:`kanalysis.rules.baseline_scores`), and ``peak_cadss`` is the peak CADSS of the first infusion
    (:func:`session_peaks`; from CADSS assessments on that day when vitals carry no CADSS). ``b1``
    (term ``peak_cadss``) is the difference in change per CADSS point at equal baseline: negative
    means more dissociation goes with more improvement (Luckenbaugh et al. 2014; Niciu et al.
    2018). It is an association, not a causal effect: dissociation also unblinds.

    Parameters
    ----------
    cohort : Cohort
        Needs ``assessments``, ``subjects`` and ``vitals`` (or CADSS assessments).
    scale : str, optional
        Depression scale; default the cohort's primary scale.
    day : float or "end_of_induction", default 1.0
        Target study day of the outcome (1.0 = 24 h): the assessment closest to it within
        ``+- window`` days. ``"end_of_induction"``: per subject, the first assessment at least
        24 h after their last induction infusion and at most ``window`` days after it (pass e.g.
        ``window=7``), i.e. the 24-h rating after the last induction infusion where there is one.
    window : float, default 0.5
        Days around the target (see ``day``).
    infusion_number : int, default 1
        Infusion whose peak CADSS is the predictor.
    adjust_for : sequence of str, default ()
        Extra covariates from ``subjects`` (e.g. ``["arm"]`` or ``["age"]``); categorical
        columns are treatment coded by the formula.
    conf_level : float, default 0.95
        Confidence level (``confidence`` is its deprecated name).

    Returns
    -------
    DissociationResponseResult
        ``to_frame()``: term, estimate, std_error, t, p_value, ci_lower, ci_upper, n.

    References
    ----------
    Luckenbaugh DA et al. (2014). Do the dissociative side effects of ketamine mediate its
    antidepressant effects? J Affect Disord 159:56-61.

    Examples
    --------
    >>> from kanalysis.safety import dissociation_response
    >>> res = dissociation_response(cohort, day=1.0)  # doctest: +SKIP
    >>> res.to_frame().query("term == 'peak_cadss'")  # doctest: +SKIP
    >>> dissociation_response(cohort, day="end_of_induction", window=7).summary()  # doctest: +SKIP
    """
    import statsmodels.formula.api as smf

    clevel = _check_confidence(conf_level, confidence)
    if isinstance(cohort, pd.DataFrame):
        raise ConfigurationError(
            "dissociation_response needs a Cohort (assessments, subjects and vitals tables)."
        )
    assessments = _table(cohort, "assessments")
    subjects = _table(cohort, "subjects")
    scale = default_scale(cohort, scale)
    scores = assessments.loc[(assessments["scale"].astype(str).str.upper() == scale.upper())
                             & assessments["score"].notna()]
    if scores.empty:
        raise DataValidationError(f"assessments has no non-missing scores of scale {scale!r}.")
    base_table = baseline_scores(cohort, scale)
    base = base_table.set_index("subject_id")["baseline"]
    post = scores.merge(base_table[["subject_id", "baseline_day"]], on="subject_id")
    post = post.loc[post["day"] > post["baseline_day"], ["subject_id", "day", "score"]].copy()
    if isinstance(day, str):
        if day != "end_of_induction":
            raise ConfigurationError(
                f"`day` must be a number of study days or 'end_of_induction', not {day!r}."
            )
        last_inf = last_induction_day(_table(cohort, "infusions")).rename("_last_inf")
        post = post.join(last_inf, on="subject_id")
        # 24 h after the last infusion: ratings on the infusion day itself (40 min, 4 h) are
        # confounded by the acute drug effects.
        after = post["day"] - post["_last_inf"]
        post = post.loc[(after >= 1.0 - 1e-9) & (after <= window)]
        outcome = post.sort_values(["subject_id", "day"]).groupby("subject_id").first()
        timepoint = (
            f"end of induction (first rating 1 to {window:g} days after the last induction "
            f"infusion)"
        )
    else:
        post["_dist"] = (post["day"] - float(day)).abs()
        post = post.loc[post["_dist"] <= window]
        outcome = post.sort_values(["subject_id", "_dist", "day"]).groupby("subject_id").first()
        timepoint = f"day {float(day):g} +- {window:g}"
    outcome = outcome[["day", "score"]]
    cadss = _first_infusion_peak_cadss(cohort, infusion_number, None)
    frame = (
        cadss.join(base, on="subject_id").join(outcome, on="subject_id")
        .merge(subjects[["subject_id", "arm", *[c for c in adjust_for if c != "arm"]]],
               on="subject_id", how="left")
    )
    frame["change"] = frame["score"] - frame["baseline"]
    frame = frame.dropna(subset=["peak_cadss", "baseline", "change", *adjust_for])
    frame = _plain_strings(frame.reset_index(drop=True))
    n_terms = 3 + len(adjust_for)
    if len(frame) <= n_terms:
        raise DataValidationError(
            f"Only {len(frame)} subject(s) have peak CADSS at infusion {infusion_number}, a "
            f"baseline and a {scale} rating at {timepoint}; the regression needs more than "
            f"{n_terms}. Check `day` and widen `window` if the ratings fall outside it."
        )
    formula = " + ".join(["change ~ peak_cadss", "baseline", *adjust_for])
    fit = smf.ols(formula, data=frame).fit()
    return DissociationResponseResult(formula, str(scale), timepoint, fit, frame, clevel)
