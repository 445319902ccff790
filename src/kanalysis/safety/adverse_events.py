"""Adverse events: incidence with exact CIs, worst severity, serious events, risk differences.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError, StatisticalWarning
from kanalysis.intervals import (
    _check_confidence,
    clopper_pearson,
    newcombe_difference,
    poisson_rate_interval,
)
from kanalysis.results import with_count_columns
from kanalysis.safety.adapters import (
    SEVERITY_ORDER,
    _as_bool,
    _as_list,
    _require_columns,
    _subjects_of,
    _table,
)


def _add_proportion(out: pd.DataFrame, conf_level: float) -> None:
    """Add ``n, estimate, ci_lower, ci_upper`` (Clopper-Pearson) of ``n_with_event / n_subjects``,
    and the previous names ``proportion, lower, upper`` (kept for one release), in place."""
    out["n"] = out["n_subjects"]
    out["estimate"] = out["n_with_event"] / out["n_subjects"]
    lower, upper = clopper_pearson(out["n_with_event"], out["n_subjects"], conf_level)
    out["ci_lower"], out["ci_upper"] = np.asarray(lower, float), np.asarray(upper, float)
    out["proportion"], out["lower"], out["upper"] = (out["estimate"], out["ci_lower"],
                                                     out["ci_upper"])


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
        ``term``, ``arm``, ``n`` (= ``n_subjects``), ``n_subjects``, ``n_with_event``,
        ``estimate`` (the incidence), ``ci_lower``, ``ci_upper``, ``n_events``, ``n_infusions``,
        ``events_per_infusion``, ``rate_lower``, ``rate_upper``; sorted by term then arm.
        Previous names ``proportion``, ``lower``, ``upper`` are kept for one release. ``attrs["count_columns"]`` names the counts and their
        denominators.

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
    _add_proportion(out, clevel)
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
        ``term``, ``arm``, ``severity``, ``n``, ``n_subjects``, ``n_with_event``, ``estimate``,
        ``ci_lower``, ``ci_upper``; every term x arm x severity, zeros included.
        Previous names ``proportion``, ``lower``, ``upper`` are kept for one release.

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
    _add_proportion(out, clevel)
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
        ``proportion_control``, ``estimate`` (the risk difference), ``ci_lower``, ``ci_upper``,
        in the order of the terms in ``incidence``. Previous names ``risk_difference``,
        ``lower``, ``upper`` are kept for one release.

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
