"""Models of the safety data: mixed models over repeated infusions (kanalysis.models.lmm)
and the regression of response on first-infusion dissociation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from kanalysis.errors import (
    ConfigurationError,
    ConvergenceError,
    ConvergenceWarning,
    DataValidationError,
)
from kanalysis.intervals import _check_confidence
from kanalysis.results import AnalysisResult, SummaryText, json_records
from kanalysis.rules import baseline_scores, default_scale, last_induction_day
from kanalysis.safety.adapters import _plain_strings, _table
from kanalysis.safety.vitals import session_peaks

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
