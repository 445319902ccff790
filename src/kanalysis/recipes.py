"""The analyses of the report notebooks as functions: one place, the same parameters everywhere.

Notebooks 02-04 and the paper figures (:mod:`kanalysis.figures`, ``kanalysis figures``) call these
recipes, so a figure in the manuscript follows the run's parameters (``relapse_rule``,
``response_reduction``, ``relapse_threshold``, ``covariance``, the confidence level) exactly as the
notebook's tables do.

- :func:`trajectories` (notebook 02): linear mixed models of the score over time, and the MMRM of
  the change from baseline by visit with LS-means (:func:`mmrm_by_visit`).
- :func:`response` (notebook 03, first half): response and remission rates by visit and arm,
  risk differences against the control arm.
- :func:`durability` (notebook 03, second half): the per-subject relapse table, Kaplan-Meier,
  log-rank, Cox against the control arm, RMST up to the shortest arm's longest follow-up, the
  censoring reasons and the cumulative incidence with dropout as a competing risk.
- :func:`safety` (notebook 04): within-infusion courses, blood-pressure exceedances, adverse
  events, the trend over repeated infusions and dissociation vs response.

Each returns a result object in the common protocol (:mod:`kanalysis.results`): ``to_frame()``,
``summary()``, ``key_numbers()``, and its parts as attributes (themselves results or tables).
The recipes compute; they do not suppress small cells, save files or draw. :func:`run` maps a
run's notebook parameters (``alpha``, ``relapse_threshold``, ...) onto a recipe's arguments.

Parameter names are those of the notebooks, except the confidence level, which is ``conf_level``
(the notebooks' ``alpha`` is ``1 - conf_level``).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError, StatisticalWarning
from kanalysis.results import AnalysisResult, SummaryText, json_records
from kanalysis.rules import control_arm

__all__ = [
    "RECIPES",
    "DurabilityAnalysis",
    "MMRMByVisit",
    "ResponseAnalysis",
    "SafetyAnalysis",
    "TrajectoryAnalysis",
    "durability",
    "mmrm_by_visit",
    "recipe_options",
    "response",
    "run",
    "safety",
    "trajectories",
]

#: Default landmark days of the Kaplan-Meier survival (4 and 8 weeks).
DEFAULT_LANDMARKS: tuple[float, ...] = (28.0, 56.0)
#: Covariates of the adjusted Cox model, when the durability table has them.
DEFAULT_COX_COVARIATES: tuple[str, ...] = ("baseline", "age", "n_failed_trials")


def _level_kwargs(func: Any, conf_level: float) -> dict[str, float]:
    """Pass the confidence level as ``conf_level`` where accepted, else as the older ``alpha``."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        params = {}
    if "conf_level" in params:
        return {"conf_level": conf_level}
    if "alpha" in params:
        return {"alpha": 1.0 - conf_level}
    return {}


def _check_level(conf_level: float) -> float:
    from kanalysis.results import resolve_conf_level

    return resolve_conf_level(conf_level, where="recipes")


def visit_order(status: pd.DataFrame, visit: str = "visit",
                number: str = "visit_number") -> list:
    """Visits in schedule order (by visit number, then median day), never as sorted text."""
    if status.empty:
        return []
    keys = [c for c in (number, "day") if c in status.columns]
    if not keys:
        return list(pd.unique(status[visit]))
    order = status.groupby(visit, sort=False)[keys].median().sort_values(keys)
    return order.index.tolist()


def _in_visit_order(frame: pd.DataFrame, order: Sequence, by: Sequence[str] = ()) -> pd.DataFrame:
    if frame is None or frame.empty or "visit" not in frame.columns:
        return frame
    rank = {v: i for i, v in enumerate(order)}
    out = frame.assign(_rank=frame["visit"].map(rank))
    return (out.sort_values(["_rank", *[b for b in by if b in out.columns]], kind="mergesort")
            .drop(columns="_rank").reset_index(drop=True))


# --------------------------------------------------------------------------------------------
# notebook 02: trajectories
# --------------------------------------------------------------------------------------------
@dataclass
class MMRMByVisit(AnalysisResult):
    """MMRM of the change from baseline by visit (and arm), with LS-means in visit order.

    Attributes
    ----------
    formula, covariance : str
    fit : kanalysis.models.MMRMResult
    lsmeans : pandas.DataFrame
        ``arm, visit, estimate, std_error, df, ci_lower, ci_upper, ...`` in visit order.
    contrasts : pandas.DataFrame or None
        Pairwise arm differences by visit (None with one arm).
    visit_order : list
    conf_level : float
    """

    formula: str
    covariance: str
    fit: Any
    lsmeans: pd.DataFrame
    contrasts: pd.DataFrame | None
    visit_order: list
    conf_level: float

    def to_frame(self) -> pd.DataFrame:
        """The LS-means, in visit order."""
        return self.lsmeans.copy()

    @property
    def last_visit(self) -> Any:
        return self.visit_order[-1] if self.visit_order else None

    def summary(self) -> SummaryText:
        head = (f"MMRM {self.formula} ({self.covariance} covariance), LS-means with "
                f"{100 * self.conf_level:g}% CIs in visit order")
        return SummaryText(head + "\n" + self.lsmeans.to_string(index=False))

    def key_numbers(self) -> dict[str, Any]:
        last = self.lsmeans[self.lsmeans["visit"] == self.last_visit]
        out: dict[str, Any] = {
            "formula": self.formula, "covariance": self.covariance,
            "llf": float(self.fit.llf), "last_visit": self.last_visit,
            "lsmeans_last_visit": {str(a): float(e) for a, e in zip(last["arm"], last["estimate"],
                                                                    strict=True)},
        }
        if self.contrasts is not None and len(self.contrasts):
            at_last = self.contrasts[self.contrasts["visit"] == self.last_visit]
            if len(at_last):
                keep = [c for c in ("contrast", "estimate", "std_error", "df", "ci_lower",
                                    "ci_upper", "p_value") if c in at_last.columns]
                out["contrast_last_visit"] = json_records(at_last[keep].iloc[:1])[0]
        return out


def mmrm_by_visit(
    status: pd.DataFrame,
    *,
    covariance: str = "us",
    conf_level: float = 0.95,
) -> MMRMByVisit:
    """MMRM ``change ~ baseline * visit (+ arm * visit)`` and its LS-means by visit and arm.

    The model of notebook 02 and of the paper's LS-means figure: the change from baseline at
    every post-baseline visit, an unstructured (``covariance``) within-subject covariance, arm
    terms when there are two or more arms. LS-means are by arm within visit (with one arm: by
    visit, labelled with that arm), sorted in visit order; pairwise arm contrasts by visit.

    Parameters
    ----------
    status : pandas.DataFrame
        :func:`kanalysis.outcomes.responder_status` output.
    covariance : str
        Covariance structure (:data:`kanalysis.models.covariance.STRUCTURES`).
    conf_level : float
        Confidence level of the LS-means and contrasts.
    """
    from kanalysis.models import mmrm

    conf_level = _check_level(conf_level)
    data = status[status["change"].notna()] if "change" in status.columns else status
    if data.empty:
        raise DataValidationError(
            "mmrm_by_visit: no post-baseline change scores (does every subject lack a "
            "baseline or a later assessment?).")
    multi = data["arm"].nunique() > 1
    formula = "change ~ baseline * C(visit)" + (" + C(arm) * C(visit)" if multi else "")
    order = visit_order(status)
    fit = mmrm(status, formula=formula, subject="subject_id", visit="visit",
               covariance=covariance)
    level = _level_kwargs(fit.lsmeans, conf_level)
    if multi:
        lsmeans = fit.lsmeans(specs="arm", by="visit", **level)
        contrasts = fit.contrast(specs="arm", by="visit", method="pairwise",
                                 **_level_kwargs(fit.contrast, conf_level))
        contrasts = _in_visit_order(contrasts, order)
    else:
        lsmeans = fit.lsmeans(specs="visit", **level)
        lsmeans.insert(0, "arm", data["arm"].iloc[0])
        contrasts = None
    lsmeans = _in_visit_order(lsmeans, order, by=["arm"])
    return MMRMByVisit(formula, covariance, fit, lsmeans, contrasts, order, conf_level)


@dataclass
class TrajectoryAnalysis(AnalysisResult):
    """Notebook 02: mixed models of the score over time and the MMRM by visit.

    Attributes
    ----------
    data : pandas.DataFrame
        :func:`kanalysis.plots.trajectories.trajectory_data` (one row per assessment).
    status : pandas.DataFrame
        :func:`kanalysis.outcomes.responder_status` (change from baseline per visit).
    lmm : dict
        Time scale (``"day"``, ``"log_time"``) -> :func:`kanalysis.lmm` fit (REML).
    lmm_aic_ml : dict
        Time scale -> AIC of the same model fitted by ML (to compare time scales).
    mmrm : MMRMByVisit
    scale : str
    """

    data: pd.DataFrame
    status: pd.DataFrame
    lmm: dict
    lmm_aic_ml: dict
    mmrm: MMRMByVisit
    scale: str

    def to_frame(self) -> pd.DataFrame:
        """The MMRM LS-means in visit order."""
        return self.mmrm.to_frame()

    @property
    def visit_order(self) -> list:
        return self.mmrm.visit_order

    def summary(self) -> SummaryText:
        parts = [f"Trajectories of {self.scale}"]
        for name, fit in self.lmm.items():
            parts.append(f"LMM {fit.formula} (AIC, ML: {self.lmm_aic_ml[name]:.2f})")
        parts.append(str(self.mmrm.summary()))
        return SummaryText("\n".join(parts))

    def key_numbers(self) -> dict[str, Any]:
        lmm = {
            name: {"formula": fit.formula,
                   "fixed_effects": {str(k): float(v) for k, v in fit.fe_params.items()},
                   "std_errors": {str(k): float(v) for k, v in fit.bse.items()},
                   "aic_ml": float(self.lmm_aic_ml[name]), "llf": float(fit.llf),
                   "n_obs": int(fit.n_obs)}
            for name, fit in self.lmm.items()
        }
        return {"scale": self.scale, "lmm": lmm, "mmrm": self.mmrm.key_numbers()}


def trajectories(
    cohort: Any,
    scale: str | None = None,
    *,
    response_reduction: float | None = None,
    remission_threshold: float | None = None,
    covariance: str = "us",
    conf_level: float = 0.95,
    time_scales: Sequence[str] = ("day", "log_time"),
) -> TrajectoryAnalysis:
    """Notebook 02's analyses: LMMs of the score on each time scale and the MMRM by visit.

    For each of ``time_scales`` the LMM ``score ~ time (* C(arm))`` with a random intercept and
    slope in time per subject (REML; the AIC of the ML fit compares time scales); then
    :func:`mmrm_by_visit` on the change from baseline.
    """
    from kanalysis.models import lmm as fit_lmm
    from kanalysis.outcomes import responder_status
    from kanalysis.plots.trajectories import trajectory_data
    from kanalysis.rules import default_scale

    conf_level = _check_level(conf_level)
    scale = default_scale(cohort, scale)
    data = trajectory_data(cohort, scale)
    arm_term = " * C(arm)" if data["arm"].nunique() > 1 else ""
    fits, aic = {}, {}
    for name in time_scales:
        if name not in data.columns:
            raise ConfigurationError(
                f"trajectories: time scale {name!r} is not a column of the trajectory data "
                f"({[c for c in ('day', 'hours', 'week', 'log_time') if c in data.columns]}).")
        formula = f"score ~ {name}{arm_term}"
        kwargs = dict(formula=formula, groups="subject_id", re_formula=f"~ 1 + {name}")
        fits[name] = fit_lmm(data, **kwargs)
        aic[name] = float(fit_lmm(data, reml=False, **kwargs).aic)
    status = responder_status(cohort, scale, response_reduction=response_reduction,
                              remission_threshold=remission_threshold)
    model = mmrm_by_visit(status, covariance=covariance, conf_level=conf_level)
    return TrajectoryAnalysis(data, status, fits, aic, model, scale)


# --------------------------------------------------------------------------------------------
# notebook 03: response
# --------------------------------------------------------------------------------------------
@dataclass
class ResponseAnalysis(AnalysisResult):
    """Notebook 03, first half: response and remission by visit, and risk differences.

    Attributes
    ----------
    status : pandas.DataFrame
        :func:`kanalysis.outcomes.responder_status`.
    rates : dict
        ``"response"`` / ``"remission"`` -> :func:`kanalysis.outcomes.response_rates` table in
        visit order.
    control : object or None
        The control arm (:func:`kanalysis.rules.control_arm`) among the compared arms.
    risk_differences : dict
        Active arm -> :func:`kanalysis.outcomes.risk_difference` table vs ``control``.
    visit_order : list
    conf_level : float
    """

    status: pd.DataFrame
    rates: dict
    control: Any
    risk_differences: dict
    visit_order: list
    conf_level: float

    count_columns: ClassVar[dict[str, str | None]] = {"n": None, "responders": "n"}

    def to_frame(self) -> pd.DataFrame:
        """Both rate tables stacked, with an ``outcome`` column."""
        return pd.concat([t.assign(outcome=name) for name, t in self.rates.items()],
                         ignore_index=True)

    @property
    def last_visit(self) -> Any:
        return self.visit_order[-1] if self.visit_order else None

    def summary(self) -> SummaryText:
        lines = [f"Response and remission by visit ({100 * self.conf_level:g}% Wilson CIs)"]
        for name, t in self.rates.items():
            lines += [name, t.to_string(index=False)]
        for arm, rd in self.risk_differences.items():
            lines += [f"risk difference of response, {arm} - {self.control}",
                      rd.to_string(index=False)]
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        out: dict[str, Any] = {"last_visit": self.last_visit, "control": self.control}
        for name, t in self.rates.items():
            last = t[t["visit"] == self.last_visit]
            out[f"{name}_rate_last_visit"] = {str(a): float(r) for a, r in
                                              zip(last["arm"], last["estimate"], strict=True)}
        return out


def response(
    cohort: Any,
    scale: str | None = None,
    *,
    response_reduction: float | None = None,
    remission_threshold: float | None = None,
    conf_level: float = 0.95,
    missing: str = "exclude",
) -> ResponseAnalysis:
    """Notebook 03's response analyses: rates by visit and arm, risk differences vs control.

    Arms named ``not_...`` (e.g. ``not_randomised``) are not compared.
    """
    from kanalysis import outcomes

    conf_level = _check_level(conf_level)
    status = outcomes.responder_status(cohort, scale, response_reduction=response_reduction,
                                       remission_threshold=remission_threshold)
    order = visit_order(status)
    rates = {}
    for outcome in ("response", "remission"):
        table = outcomes.response_rates(status, outcome, by=("visit", "arm"),
                                        conf_level=conf_level, missing=missing)
        rates[outcome] = _in_visit_order(table, order, by=["arm"])
    arms = sorted(a for a in status["arm"].unique() if not str(a).startswith("not_"))
    control = control_arm(arms)
    differences = {}
    if control is not None:
        for arm in arms:
            if arm == control:
                continue
            rd = outcomes.risk_difference(status, arm, control, "response",
                                          conf_level=conf_level, missing=missing)
            differences[arm] = _in_visit_order(rd, order)
    return ResponseAnalysis(status, rates, control, differences, order, conf_level)


# --------------------------------------------------------------------------------------------
# notebook 03: durability
# --------------------------------------------------------------------------------------------
@dataclass
class DurabilityAnalysis(AnalysisResult):
    """Notebook 03, second half: durability of response.

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`kanalysis.durability.derive` (one row per subject at risk of relapse).
    relapse_rule : str
        The canonical rule actually applied (``"a"``, ``"b+c"``, ...).
    censoring : pandas.DataFrame
        :func:`kanalysis.durability.censoring_reasons` by arm.
    km : KaplanMeierResult
        By arm (one curve when there is one arm).
    landmarks : pandas.DataFrame
        ``km.survival_at(landmark days)``.
    cif : CumulativeIncidenceResult
        Relapse with dropout as the competing risk.
    reference : object or None
        Reference arm of the comparisons (the control arm, else the first sorted arm).
    logrank, cox, rmst : results or None
        Between arms (None with one arm); ``cox`` is ``arm`` alone, ``rmst`` up to ``tau``.
    cox_adjusted : CoxResult or None
        Arm plus the covariates of ``adjust_for`` the table has (None when there is no term).
    tau : float or None
        :func:`kanalysis.durability.rmst_tau`.
    conf_level : float
    notes : list of str
        Analyses left out and why.
    """

    table: pd.DataFrame
    relapse_rule: str
    censoring: pd.DataFrame
    km: Any
    landmarks: pd.DataFrame
    cif: Any
    reference: Any
    logrank: Any
    cox: Any
    cox_adjusted: Any
    tau: float | None
    rmst: pd.DataFrame | None
    conf_level: float
    arm_term: str | None = None
    notes: list = field(default_factory=list)

    count_columns: ClassVar[dict[str, str | None]] = {"n": None, "n_event": "n"}

    @property
    def multi_arm(self) -> bool:
        return self.logrank is not None

    @property
    def medians(self) -> pd.DataFrame:
        """Median time to relapse by arm: ``n, n_event, estimate, ci_lower, ci_upper``."""
        return self.km.by_group()

    def to_frame(self) -> pd.DataFrame:
        """Per arm: subjects, relapses and the median time to relapse with its CI."""
        return self.medians.reset_index()

    def summary(self) -> SummaryText:
        lines = [f"Durability (relapse rule {self.relapse_rule}): "
                 f"{len(self.table)} subjects at risk, {int(self.table['event'].sum())} relapses",
                 str(self.km.summary())]
        for part in (self.logrank, self.cox):
            if part is not None:
                lines.append(str(part.summary()))
        if self.rmst is not None:
            lines += [f"RMST up to tau = {self.tau:g} days", self.rmst.to_string()]
        lines += self.notes
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "relapse_rule": self.relapse_rule,
            "n_at_risk_of_relapse": int(len(self.table)),
            "n_relapses": int(self.table["event"].sum()),
            "km_median": json_records(self.medians.reset_index()),
            "km_landmarks": json_records(self.landmarks.drop(columns=["at_risk"])),
        }
        if self.logrank is not None:
            out["logrank"] = {"statistic": float(self.logrank.statistic),
                              "df": int(self.logrank.df),
                              "p_value": float(self.logrank.p_value)}
        if self.cox is not None:
            out["cox"] = json_records(self.cox.to_frame())
        if self.rmst is not None:
            out["rmst_tau"] = self.tau
            out["rmst"] = json_records(self.rmst.reset_index())
        if self.cox_adjusted is not None:
            out["cox_adjusted"] = json_records(self.cox_adjusted.to_frame())
        return out


def durability(
    cohort: Any,
    scale: str | None = None,
    *,
    relapse_rule: str | Sequence[str] = "loss_of_response",
    response_reduction: float | None = None,
    relapse_threshold: float | None = None,
    conf_level: float = 0.95,
    conf_type: str = "log",
    landmarks: Sequence[float] = DEFAULT_LANDMARKS,
    adjust_for: Sequence[str] = DEFAULT_COX_COVARIATES,
    **derive_options: Any,
) -> DurabilityAnalysis:
    """Notebook 03's durability analyses, from the cohort and the run's relapse parameters.

    Steps: :func:`kanalysis.durability.derive` with ``relapse_rule``, ``response_reduction`` and
    ``relapse_threshold`` (and any further ``derive`` option); the censoring reasons by arm;
    Kaplan-Meier by arm with survival at ``landmarks``; the cumulative incidence of relapse with
    dropout as a competing risk. With two or more arms: the log-rank test, the Cox model of arm
    with the control arm (:func:`kanalysis.rules.control_arm`) as the reference, and the RMST
    difference up to ``tau`` = the shortest arm's longest follow-up
    (:func:`kanalysis.durability.rmst_tau`) against the same reference. Last, the Cox model
    adjusted for the columns of ``adjust_for`` that the table has.
    """
    from kanalysis import durability as du
    from kanalysis.rules import parse_relapse_rule, reference_level

    conf_level = _check_level(conf_level)
    rule = "+".join(parse_relapse_rule(relapse_rule))
    table = du.derive(cohort, scale, rule, response_reduction=response_reduction,
                      relapse_threshold=relapse_threshold, **derive_options)
    if table.empty:
        raise DataValidationError(
            f"durability: no subject is at risk of relapse under relapse rule {rule!r} "
            f"(excluded: {table.attrs['excluded']['reason'].value_counts().to_dict()}).")
    censoring = du.censoring_reasons(table, "arm")
    arms = sorted(table["arm"].dropna().unique(), key=str)
    multi = len(arms) > 1
    group = "arm" if multi else None
    km = du.kaplan_meier(table, group=group, conf_type=conf_type, conf_level=conf_level)
    marks = km.survival_at(list(landmarks))
    cif = du.cumulative_incidence(table, status="status", group=group, conf_level=conf_level)
    notes = []
    test = cox_fit = tau = rmst = None
    reference = arm_term = None
    if multi:
        reference = reference_level(arms)
        arm_term = f"C(arm, contr.treatment({reference!r}))"
        test = du.logrank(table, group="arm")
        if table["event"].sum() > 0:
            cox_fit = du.cox(table, arm_term, conf_level=conf_level)
        else:
            notes.append("No relapse: no Cox model.")
        tau = du.rmst_tau(table, group="arm")
        if tau > 0:
            rmst = du.rmst(table, tau=tau, group="arm", reference=reference,
                           conf_level=conf_level)
        else:
            notes.append("An arm has no follow-up after time zero: no RMST.")
    else:
        notes.append("One arm: no between-arm comparison of durability.")
    covariates = [c for c in adjust_for if c in table.columns and table[c].notna().any()]
    terms = ([arm_term] if multi else []) + covariates
    adjusted = None
    if terms and table["event"].sum() > 0:
        try:
            adjusted = du.cox(table, " + ".join(terms), conf_level=conf_level)
        except DataValidationError as err:
            warnings.warn(f"durability: the adjusted Cox model was left out: {err}",
                          StatisticalWarning, stacklevel=2)
            notes.append(f"Adjusted Cox model left out: {err}")
    return DurabilityAnalysis(table, rule, censoring, km, marks, cif, reference, test, cox_fit,
                              adjusted, tau, rmst, conf_level, arm_term, notes)


# --------------------------------------------------------------------------------------------
# notebook 04: safety
# --------------------------------------------------------------------------------------------
@dataclass
class SafetyAnalysis(AnalysisResult):
    """Notebook 04: within-infusion courses, exceedances, adverse events, repeated infusions.

    Attributes
    ----------
    course : pandas.DataFrame
        :func:`kanalysis.safety.infusion_course` by arm and infusion number.
    exceedances : dict
        ``"session"`` / ``"subject"`` -> :func:`kanalysis.safety.exceedances`.
    incidence : pandas.DataFrame or None
        :func:`kanalysis.safety.ae_incidence` (None without an adverse_events table).
    control, active : object, list
        Control arm and the other arms of the incidence table.
    risk_difference : pandas.DataFrame or None
        First active arm vs control (:func:`kanalysis.safety.ae_risk_difference`).
    trend : InfusionTrendResult or None
        Peak CADSS over infusions (None with one infusion per subject).
    dissociation : DissociationResponseResult or None
    dissociation_timepoint : dict
        The ``day``/``window`` used.
    notes : list of str
        Analyses left out and why.
    """

    course: pd.DataFrame
    exceedances: dict
    incidence: pd.DataFrame | None
    control: Any
    active: list
    risk_difference: pd.DataFrame | None
    trend: Any
    dissociation: Any
    dissociation_timepoint: dict
    conf_level: float
    notes: list = field(default_factory=list)

    count_columns: ClassVar[dict[str, str | None]] = {"n": None, "n_exceeding": "n"}

    def to_frame(self) -> pd.DataFrame:
        """Session-level blood-pressure exceedances by arm."""
        return self.exceedances["session"].copy()

    def summary(self) -> SummaryText:
        lines = ["Safety", "exceedances (sessions):",
                 self.exceedances["session"].to_string(index=False)]
        if self.trend is not None:
            lines.append(str(self.trend.summary()))
        if self.dissociation is not None:
            lines.append(str(self.dissociation.summary()))
        lines += self.notes
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exceedance_proportion_sessions": {
                str(a): float(p) for a, p in zip(self.exceedances["session"]["arm"],
                                                 self.exceedances["session"]["estimate"],
                                                 strict=True)},
            "exceedance_proportion_subjects": {
                str(a): float(p) for a, p in zip(self.exceedances["subject"]["arm"],
                                                 self.exceedances["subject"]["estimate"],
                                                 strict=True)},
            "dissociation_timepoint": self.dissociation_timepoint,
        }
        if self.trend is not None:
            out["cadss_trend"] = json_records(self.trend.to_frame())
        if self.dissociation is not None:
            out["dissociation_response"] = json_records(self.dissociation.to_frame())
        return out


def safety(
    cohort: Any,
    scale: str | None = None,
    *,
    conf_level: float = 0.95,
    adverse_events: pd.DataFrame | None = None,
) -> SafetyAnalysis:
    """Notebook 04's analyses.

    Parameters
    ----------
    cohort : kanalysis.Cohort
        Needs a ``vitals`` table.
    scale : str, optional
        Depression scale of the dissociation-response analysis (default: the primary scale).
    adverse_events : pandas.DataFrame, optional
        Replaces the cohort's adverse-events table (e.g. with rare terms pooled for privacy,
        :func:`kanalysis.tables.pool_rare`).
    """
    import dataclasses

    from kanalysis import safety as sa

    conf_level = _check_level(conf_level)
    if getattr(cohort, "vitals", None) is None:
        raise DataValidationError(
            "safety: the cohort has no vitals table (within-infusion monitoring); the safety "
            "analyses need it.")
    notes = []
    course = sa.infusion_course(cohort, by=("arm", "infusion_number"), conf_level=conf_level)
    exceed = {level: sa.exceedances(cohort, level=level, conf_level=conf_level)
              for level in ("session", "subject")}
    ae_cohort = cohort
    if adverse_events is not None:
        ae_cohort = dataclasses.replace(cohort, adverse_events=adverse_events)
    incidence = rd = control = None
    active: list = []
    if getattr(ae_cohort, "adverse_events", None) is not None:
        incidence = sa.ae_incidence(ae_cohort, conf_level=conf_level)
        arms = sorted(incidence["arm"].unique(), key=str)
        control = control_arm(arms)
        active = [a for a in arms if a != control]
        if control is not None and active:
            rd = sa.ae_risk_difference(incidence, active[0], control, conf_level=conf_level)
    else:
        notes.append("No adverse_events table: no adverse-event incidence.")
    trend = None
    if cohort.infusions["infusion_number"].max() > 1:
        trend = sa.infusion_trend(cohort, "peak_cadss")
    else:
        notes.append("One infusion per subject: no trend over infusions.")
    inf = cohort.infusions
    induction = inf[inf["phase"] == "induction"] if "phase" in inf.columns else inf
    if len(induction) and induction.groupby("subject_id")["infusion_number"].max().max() > 1:
        timepoint = {"day": "end_of_induction", "window": 7.0}
    else:
        timepoint = {"day": 1.0, "window": 0.5}
    dissociation = None
    try:
        dissociation = sa.dissociation_response(cohort, scale=scale, conf_level=conf_level,
                                                **timepoint)
    except DataValidationError as err:
        notes.append(f"Dissociation and response is not estimable on this cohort: {err}")
    return SafetyAnalysis(course, exceed, incidence, control, active, rd, trend, dissociation,
                          timepoint, conf_level, notes)


# --------------------------------------------------------------------------------------------
# from a run's parameters
# --------------------------------------------------------------------------------------------
RECIPES = {"trajectories": trajectories, "response": response, "durability": durability,
           "safety": safety}

#: Notebook parameter -> recipe argument, where the names differ.
_PARAMETER_NAMES = {"alpha": "conf_level"}


def recipe_options(recipe: str, params: Any) -> dict[str, Any]:
    """The keyword arguments of ``recipe`` taken from a run's notebook parameters.

    ``params`` is a mapping or an object with attributes (``notebook_parameters(globals())``);
    ``alpha`` becomes ``conf_level = 1 - alpha``. Parameters the recipe does not take are left
    out; ``scale`` is passed too.
    """
    if recipe not in RECIPES:
        raise ConfigurationError(f"Unknown recipe {recipe!r}; available: {sorted(RECIPES)}.")
    values = dict(params) if isinstance(params, Mapping) else {
        k: getattr(params, k) for k in dir(params) if not k.startswith("_")
        and not callable(getattr(params, k))}
    accepted = inspect.signature(RECIPES[recipe]).parameters
    out: dict[str, Any] = {}
    for name, value in values.items():
        target = _PARAMETER_NAMES.get(name, name)
        if target not in accepted or target == "cohort":
            continue
        if name == "alpha":
            if value is None:
                continue
            value = 1.0 - float(value)
        out[target] = value
    return out


def run(recipe: str, cohort: Any, params: Any) -> AnalysisResult:
    """Run ``recipe`` (``"trajectories"``, ``"response"``, ``"durability"``, ``"safety"``) on
    ``cohort`` with the run's notebook parameters (see :func:`recipe_options`)."""
    return RECIPES[recipe](cohort, **recipe_options(recipe, params))
