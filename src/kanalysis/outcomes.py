"""Response and remission: derivations from the assessments table, rates, and group comparisons.

Every clinical rule is a parameter whose default is the published one:

- **Baseline**: the last non-missing score on or before the subject's first infusion (day <= the
  first infusion's day, which the data model puts at day 0).
- **Response**: a reduction of at least ``response_reduction`` (default 50%) from baseline
  (Murrough et al. 2013, Biol Psychiatry 74:250; Phillips et al. 2019, Am J Psychiatry 176:401).
- **Remission**: the scale's threshold from :mod:`kanalysis.scales` (MADRS <= 10: Reif et al.
  2023; <= 12 as used in SUSTAIN-1, Daly et al. 2019, is a documented alternative).
- **Sustained response**: response at every non-missing assessment in a window (e.g. McInnes
  et al. 2022 report sustained response at 4 and 8 weeks).

A baseline score of 0 makes percent change undefined: change and remission are still derived, but
``percent_change``, ``improvement`` and ``response`` are missing for that subject (never silently
"responder" or "non-responder").

Comparisons of rates use score intervals, which keep their coverage with small samples and rates
near 0 or 1: Wilson (1927) for one proportion, Newcombe (1998, method 10) for a difference, and a
logistic model adjusted for the baseline score for the odds ratio (statsmodels GLM; Wald CI, as R's
``confint.default``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.intervals import newcombe_difference, normal_quantile, wilson_interval
from kanalysis.results import resolve_conf_level, with_count_columns
from kanalysis.rules import baseline_scores, default_scale
from kanalysis.scales import Scale, get_scale

__all__ = [
    "baseline_scores",
    "newcombe_ci",
    "odds_ratio",
    "response_rates",
    "responder_status",
    "risk_difference",
    "sustained_response",
    "time_to_first",
    "wilson_ci",
]

_EPS = 1e-9  # tolerance for "exactly 50%" on integer scores stored as floats


def _tables(data, subjects=None, infusions=None):
    """Accept a Cohort or an assessments DataFrame (+ optional subjects / infusions)."""
    if hasattr(data, "assessments") and hasattr(data, "subjects"):
        return data.assessments, data.subjects, data.infusions
    if isinstance(data, pd.DataFrame):
        return data, subjects, infusions
    raise DataValidationError(
        f"Expected a kanalysis Cohort or an assessments DataFrame, got {type(data).__name__}."
    )


def _default_scale(data, scale):
    """The :class:`Scale` to analyse (:func:`kanalysis.rules.default_scale`)."""
    return get_scale(default_scale(data, scale))


def responder_status(
    data,
    scale: str | Scale | None = None,
    *,
    response_reduction: float | None = None,
    remission_threshold: float | None = None,
    subjects: pd.DataFrame | None = None,
    infusions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Change, percent change, response and remission at every post-baseline assessment.

    .. math::
        \\mathrm{change} = y - y_0, \\quad
        \\mathrm{percent\\_change} = 100 (y - y_0) / y_0, \\quad
        \\mathrm{response} = [\\, (y_0 - y) / y_0 \\ge r \\,]

    Parameters
    ----------
    data : Cohort or pandas.DataFrame
        A cohort, or an assessments table (then pass ``subjects`` for the arm column).
    scale : str or Scale, optional
        Default: the cohort's primary scale (:func:`kanalysis.rules.default_scale`).
    response_reduction : float, optional
        Fraction of baseline that must be lost (default: the scale's, 0.5).
    remission_threshold : float, optional
        Remission cut-off (default: the scale's, MADRS 10).

    Returns
    -------
    pandas.DataFrame
        One row per post-baseline assessment (missing scores kept, with missing outcomes):
        ``subject_id, arm, scale, visit, visit_number, day, score, baseline, change,
        percent_change, improvement, response, remission``. ``response`` / ``remission`` are
        float 1/0 and NaN where undefined (missing score; response also when baseline is 0).
    """
    sc = _default_scale(data, scale)
    if not sc.higher_is_worse:
        raise ConfigurationError(f"Response rules assume higher {sc.name} scores are worse.")
    r = sc.response_reduction if response_reduction is None else float(response_reduction)
    if r is None or not 0 < r < 1:
        raise ConfigurationError(
            f"Scale {sc.name} has no response rule; pass response_reduction between 0 and 1."
        )
    assessments, subj, inf = _tables(data, subjects, infusions)
    needed = ["subject_id", "scale", "day", "visit", "visit_number", "score"]
    missing = [c for c in needed if c not in assessments.columns]
    if missing:
        raise DataValidationError(f"assessments has no column(s) {missing}.")
    base = baseline_scores(assessments, sc, infusions=inf)
    a = assessments[assessments["scale"].astype(str).str.upper() == sc.name.upper()][needed]
    a = a.merge(base, on="subject_id", how="inner")
    a = a[a["day"] > a["baseline_day"]].copy()
    a["score"] = a["score"].astype(float)
    a["change"] = a["score"] - a["baseline"]
    with np.errstate(divide="ignore", invalid="ignore"):
        improvement = np.where(a["baseline"] > 0, -a["change"] / a["baseline"], np.nan)
    a["improvement"] = improvement
    a["percent_change"] = -100.0 * a["improvement"]
    resp = (a["improvement"] >= r - _EPS).astype(float)
    a["response"] = resp.where(a["improvement"].notna())
    if sc.remission_threshold is None and remission_threshold is None:
        a["remission"] = np.nan
    else:
        a["remission"] = sc.is_remission(a["score"], remission_threshold).to_numpy()
    if subj is not None and "arm" in subj.columns:
        a = a.merge(subj[["subject_id", "arm"]], on="subject_id", how="left")
    else:
        a["arm"] = "all"
    cols = ["subject_id", "arm", "scale", "visit", "visit_number", "day", "score", "baseline",
            "change", "percent_change", "improvement", "response", "remission"]
    return a[cols].sort_values(["subject_id", "day", "visit_number"], ignore_index=True)


def time_to_first(
    status: pd.DataFrame,
    outcome: str = "response",
    *,
    origin_day: float = 0.0,
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Days from ``origin_day`` (first infusion) to the first assessment meeting ``outcome``.

    Subjects who never meet it are censored at their last non-missing assessment
    (``censor_reason``: ``dropout`` if the subjects table says they dropped out, else
    ``last_assessment``).

    Parameters
    ----------
    status : pandas.DataFrame
        Output of :func:`responder_status`.
    outcome : {"response", "remission"}
    subjects : pandas.DataFrame, optional
        For the dropout reason (``disposition`` column).

    Returns
    -------
    pandas.DataFrame
        ``subject_id, arm, time, event, day, censor_reason`` (reason missing for events).
    """
    if outcome not in ("response", "remission"):
        raise ConfigurationError(f"outcome must be 'response' or 'remission', got {outcome!r}.")
    s = status[status[outcome].notna()].sort_values(["subject_id", "day"])
    hit = s[s[outcome] == 1].groupby("subject_id")["day"].min()
    last = s.groupby("subject_id")["day"].max()
    arm = status.groupby("subject_id")["arm"].first()
    out = pd.DataFrame({"arm": arm})
    out["event"] = out.index.isin(hit.index).astype(int)
    out["day"] = hit.reindex(out.index).fillna(last.reindex(out.index))
    out = out[out["day"].notna()]
    out["time"] = out["day"] - origin_day
    out["censor_reason"] = None
    cens = out["event"] == 0
    out.loc[cens, "censor_reason"] = "last_assessment"
    if subjects is not None and "disposition" in subjects.columns:
        dropped = set(subjects.loc[subjects["disposition"] == "dropped_out", "subject_id"])
        out.loc[cens & out.index.isin(dropped), "censor_reason"] = "dropout"
    out.index.name = "subject_id"
    return out.reset_index()[["subject_id", "arm", "time", "event", "day", "censor_reason"]]


def sustained_response(
    status: pd.DataFrame,
    window: tuple[float, float],
    *,
    outcome: str = "response",
    min_assessments: int = 1,
) -> pd.DataFrame:
    """Whether the outcome held at every non-missing assessment with ``window[0] <= day <= window[1]``.

    Parameters
    ----------
    status : pandas.DataFrame
        Output of :func:`responder_status`.
    window : (float, float)
        Study days, inclusive.
    min_assessments : int
        Fewer non-missing assessments in the window make the result missing (not "sustained").

    Returns
    -------
    pandas.DataFrame
        ``subject_id, arm, n_assessments, sustained`` (1.0 / 0.0 / NaN).
    """
    lo, hi = (float(w) for w in window)
    if lo > hi:
        raise ConfigurationError(f"window must be (start, end) with start <= end, got {window}.")
    arm = status.groupby("subject_id")["arm"].first()
    inwin = status[(status["day"] >= lo) & (status["day"] <= hi) & status[outcome].notna()]
    g = inwin.groupby("subject_id")[outcome]
    out = pd.DataFrame({"arm": arm, "n_assessments": g.size().reindex(arm.index).fillna(0)})
    held = g.min().reindex(arm.index)
    out["n_assessments"] = out["n_assessments"].astype(int)
    out["sustained"] = held.where(out["n_assessments"] >= min_assessments)
    out.index.name = "subject_id"
    return out.reset_index()


def wilson_ci(successes, n, conf_level: float = 0.95):
    """Wilson score interval for proportions (R ``prop.test(x, n, correct = FALSE)``).

    Vectorised :func:`kanalysis.intervals.wilson_interval` that gives NaN where ``n = 0`` (a visit
    nobody attended) instead of raising. Returns (lower, upper) as arrays.
    """
    x = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    lower = np.full(np.broadcast(x, n).shape, np.nan)
    upper = lower.copy()
    ok = np.broadcast_to(n > 0, lower.shape)
    if ok.any():
        xs, ns = np.broadcast_to(x, lower.shape)[ok], np.broadcast_to(n, lower.shape)[ok]
        lower[ok], upper[ok] = wilson_interval(xs, ns, conf_level)
    return lower, upper


def newcombe_ci(x1, n1, x0, n0, conf_level: float = 0.95) -> tuple[float, float, float]:
    """Difference p1 - p0 with Newcombe's hybrid score interval (method 10).

    See :func:`kanalysis.intervals.newcombe_difference`; Newcombe RG (1998) Stat Med 17:873-890.
    """
    if min(n1, n0) <= 0:
        raise DataValidationError("Both groups need at least one subject for a risk difference.")
    return newcombe_difference(x1, n1, x0, n0, conf_level)


def _binary_frame(status, outcome, missing):
    if outcome not in status.columns:
        raise DataValidationError(f"status has no column {outcome!r}.")
    if missing == "exclude":
        return status[status[outcome].notna()]
    if missing == "failure":
        return status.assign(**{outcome: status[outcome].fillna(0.0)})
    raise ConfigurationError(f"missing must be 'exclude' or 'failure', got {missing!r}.")


def response_rates(
    status: pd.DataFrame,
    outcome: str = "response",
    by: Sequence[str] = ("visit", "arm"),
    *,
    conf_level: float | None = None,
    missing: str = "exclude",
    alpha: float | None = None,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Proportion meeting ``outcome`` by visit and arm with Wilson score CIs.

    Parameters
    ----------
    status : pandas.DataFrame
        Output of :func:`responder_status` (or any table with a 0/1 ``outcome`` column).
    by : sequence of str
        Grouping columns.
    missing : {"exclude", "failure"}
        Missing outcomes are left out (observed cases) or counted as non-response
        (non-responder imputation, as in ESCAPE-TRD, Reif et al. 2023).

    conf_level : float, default 0.95
        Confidence level (``alpha``, ``confidence``: deprecated spellings).

    Returns
    -------
    pandas.DataFrame
        ``<by>, n, responders, estimate`` (the rate), ``ci_lower, ci_upper``, plus ``rate``,
        ``lower``, ``upper`` (the previous names, kept for one release); ordered by the median
        study day of each visit. ``attrs["count_columns"]``: ``responders`` of ``n``.
    """
    conf_level = resolve_conf_level(conf_level, alpha=alpha, confidence=confidence,
                                    where="response_rates")
    by = list(by)
    s = _binary_frame(status, outcome, missing)
    agg = s.groupby(by, sort=False).agg(n=(outcome, "size"), responders=(outcome, "sum"))
    if "day" in s.columns and "visit" in by:
        order = s.groupby("visit")["day"].median()
        agg = agg.reset_index()
        agg["_order"] = agg["visit"].map(order)
        agg = agg.sort_values(["_order"] + [b for b in by if b != "visit"]).drop(columns="_order")
    else:
        agg = agg.reset_index().sort_values(by)
    agg["responders"] = agg["responders"].astype(int)
    agg["estimate"] = agg["responders"] / agg["n"]
    agg["ci_lower"], agg["ci_upper"] = wilson_ci(agg["responders"], agg["n"], conf_level)
    agg["rate"], agg["lower"], agg["upper"] = agg["estimate"], agg["ci_lower"], agg["ci_upper"]
    return with_count_columns(agg.reset_index(drop=True), {"n": None, "responders": "n"})


def risk_difference(
    status: pd.DataFrame,
    treatment: str,
    reference: str,
    outcome: str = "response",
    group: str = "arm",
    by: Sequence[str] | None = ("visit",),
    *,
    conf_level: float | None = None,
    missing: str = "exclude",
    alpha: float | None = None,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Risk difference treatment - reference with Newcombe's hybrid score CI, per visit.

    Returns
    -------
    pandas.DataFrame
        ``<by>, n_treatment, x_treatment, n_reference, x_reference, estimate`` (the difference),
        ``ci_lower, ci_upper``, plus ``rd, lower, upper`` (previous names, kept for one release).
    """
    conf_level = resolve_conf_level(conf_level, alpha=alpha, confidence=confidence,
                                    where="risk_difference")
    s = _binary_frame(status, outcome, missing)
    levels = set(s[group].unique())
    for lev in (treatment, reference):
        if lev not in levels:
            raise ConfigurationError(f"{lev!r} is not a level of {group!r}: {sorted(levels)}.")
    by = list(by or [])
    rows = []
    groups = s.groupby(by, sort=False) if by else [((), s)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        t = sub.loc[sub[group] == treatment, outcome]
        r = sub.loc[sub[group] == reference, outcome]
        if len(t) == 0 or len(r) == 0:
            continue
        d, lo, hi = newcombe_ci(t.sum(), len(t), r.sum(), len(r), conf_level)
        rows.append(dict(zip(by, key, strict=True), n_treatment=len(t), x_treatment=int(t.sum()),
                         n_reference=len(r), x_reference=int(r.sum()), estimate=d, ci_lower=lo,
                         ci_upper=hi, rd=d, lower=lo, upper=hi))
    columns = [*by, "n_treatment", "x_treatment", "n_reference", "x_reference", "estimate",
               "ci_lower", "ci_upper", "rd", "lower", "upper"]
    return with_count_columns(pd.DataFrame(rows, columns=columns), {
        "n_treatment": None, "x_treatment": "n_treatment", "n_reference": None,
        "x_reference": "n_reference"})


def odds_ratio(
    status: pd.DataFrame,
    treatment: str,
    reference: str,
    outcome: str = "response",
    group: str = "arm",
    covariates: Sequence[str] = ("baseline",),
    *,
    visit: str | None = None,
    conf_level: float | None = None,
    alpha: float | None = None,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Odds ratio treatment vs reference from a logistic model adjusted for baseline.

    .. math:: \\mathrm{logit}\\,P(Y = 1) = \\beta_0 + \\beta_1 [\\mathrm{treatment}]
              + \\gamma^\\top z, \\qquad \\mathrm{OR} = e^{\\beta_1}

    Fitted by maximum likelihood (statsmodels GLM, binomial, logit link; the same fit as R
    ``glm(family = binomial)``), Wald CI and p-value.

    Parameters
    ----------
    visit : str, optional
        Restrict to one visit (the usual primary analysis: e.g. ``"24h"``). Without it the table
        must already have one row per subject.
    covariates : sequence of str
        Adjustment columns (default the baseline score).

    Returns
    -------
    pandas.DataFrame
        One row (and ``visit``): ``term`` (``"treatment"``), ``estimate`` (log odds ratio),
        ``std_error, statistic`` (Wald z), ``p_value, ci_lower, ci_upper`` (log scale), ``n`` and
        ``odds_ratio, or_lower, or_upper`` (the OR scale; earlier releases named these ``or``,
        ``lower``, ``upper`` and the p-value ``p``).
    """
    import statsmodels.api as sm

    conf_level = resolve_conf_level(conf_level, alpha=alpha, confidence=confidence,
                                    where="odds_ratio")

    s = status if visit is None else status[status["visit"] == visit]
    s = s[s[group].isin([treatment, reference])].dropna(subset=[outcome, *covariates])
    if s["subject_id"].duplicated().any() if "subject_id" in s.columns else False:
        raise DataValidationError(
            "odds_ratio needs one row per subject: pass visit= to pick the visit to analyse."
        )
    if s[group].nunique() < 2:
        raise DataValidationError(f"Both {treatment!r} and {reference!r} need subjects with data.")
    x = pd.DataFrame({"treatment": (s[group] == treatment).astype(float)})
    for c in covariates:
        x[c] = s[c].astype(float)
    x = sm.add_constant(x, has_constant="add")
    fit = sm.GLM(s[outcome].astype(float), x, family=sm.families.Binomial()).fit()
    z = normal_quantile(conf_level)
    b, se = float(fit.params["treatment"]), float(fit.bse["treatment"])
    out = {"term": "treatment", "estimate": b, "std_error": se, "statistic": b / se,
           "p_value": float(fit.pvalues["treatment"]), "ci_lower": b - z * se,
           "ci_upper": b + z * se, "n": int(len(s)), "odds_ratio": math.exp(b),
           "or_lower": math.exp(b - z * se), "or_upper": math.exp(b + z * se)}
    if visit is not None:
        out = {"visit": visit, **out}
    return with_count_columns(pd.DataFrame([out]), {"n": None})
