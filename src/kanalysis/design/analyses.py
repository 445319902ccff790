r"""Analyses applied to every simulated trial; each returns one record per replicate.

A record holds ``estimate, std_error, df, statistic, p_value, ci_lower, ci_upper`` (the result
vocabulary of :mod:`kanalysis.results`), ``reject`` (``p_value < alpha``), ``failed`` and
``message``. A fit that raises, does not converge or returns non-finite numbers is *failed*: its
numbers are NaN and it counts as a failure to reject (never silently as a rejection or dropped).

========================  =====================================================================
``"mmrm"``                treatment difference at the landmark visit from an MMRM
                          ``y ~ 0 + C(visit) + C(visit):trt`` (plus baseline for the synthetic
                          designs) with any covariance structure and Satterthwaite or
                          Kenward-Roger df (:func:`kanalysis.mmrm`)
``"lmm_slope"``           difference in linear slopes, random intercept and slope
                          (:func:`kanalysis.lmm`, ``y ~ time * trt``)
``"responder"``           difference in responder rates at the landmark (missing = non-
                          responder); pooled two-proportion z test, Wald CI; ``"remitter"``
                          the same for remission (synthetic designs: MADRS <= 10)
``"cox"``, ``"logrank"``  time to relapse (maintenance designs, :func:`kanalysis.durability.
                          derive` with its published rule): Cox log hazard ratio; ``logrank``
                          takes its p-value from the log-rank test
callable                  ``f(data) -> {"estimate":, "std_error":, "p_value":, ...}`` on the
                          long frame (normal scenarios) or the cohort (synthetic ones)
========================  =====================================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.errors import ConfigurationError

__all__ = ["ANALYSES", "RECORD_COLUMNS", "Analysis", "combine_cohorts", "make_analysis"]

ANALYSES = ("mmrm", "lmm_slope", "responder", "remitter", "cox", "logrank")
RECORD_COLUMNS = ("estimate", "std_error", "df", "statistic", "p_value", "ci_lower", "ci_upper",
                  "reject", "failed", "message")


def _failed(message: str) -> dict[str, Any]:
    rec = dict.fromkeys(RECORD_COLUMNS[:7], np.nan)
    rec.update(reject=False, failed=True, message=str(message)[:300])
    return rec


def _record(estimate, se, df, p, alpha: float, conf_level: float) -> dict[str, Any]:
    est, se = float(estimate), float(se)
    df = float(df) if df is not None else np.inf
    p = float(p)
    if not (np.isfinite(est) and np.isfinite(se) and se > 0 and np.isfinite(p)):
        return _failed(f"non-finite result (estimate {est}, SE {se}, p {p})")
    q = stats.t.ppf(0.5 + conf_level / 2, df) if np.isfinite(df) else stats.norm.ppf(
        0.5 + conf_level / 2)
    return {"estimate": est, "std_error": se, "df": df, "statistic": est / se, "p_value": p,
            "ci_lower": est - q * se, "ci_upper": est + q * se, "reject": bool(p < alpha),
            "failed": False, "message": ""}


class Analysis:
    """Base: ``prepare(scenario, n)`` once per worker and (scenario, n); ``run(data, n, state)``
    per replicate."""

    name = "analysis"

    def __init__(self, alpha: float = 0.05, conf_level: float = 0.95, **options):
        self.alpha, self.conf_level = float(alpha), float(conf_level)
        self.options = options

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha, "conf_level": self.conf_level,
                **{k: v for k, v in self.options.items() if not callable(v)}}

    def check(self, scenario) -> None:
        """Raise ConfigurationError when the analysis cannot apply to the scenario."""

    def prepare(self, scenario, n: int):
        return None

    def run(self, scenario, data, n: int, state) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, scenario, data, n: int, state) -> dict[str, Any]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.run(scenario, data, n, state)
        except (ArithmeticError, ValueError, RuntimeError, np.linalg.LinAlgError) as err:
            return _failed(f"{type(err).__name__}: {err}")


# ---- data helpers ---------------------------------------------------------------------------

def combine_cohorts(parts, arms):
    """Stack generated blocks (``(block, cohort)``) into one cohort; subject ids are prefixed
    by their block so they stay unique. Returns the cohort with ``subjects['_order']``: the
    position of the subject within its arm (the nested-subset order)."""
    from kanalysis.cohort import Cohort

    tables: dict[str, list[pd.DataFrame]] = {}
    for block, cohort in parts:
        for name, table in cohort.tables.items():
            if table is None or "subject_id" not in table.columns:
                continue
            t = table.copy()
            t["subject_id"] = f"B{block:04d}-" + t["subject_id"].astype(str)
            tables.setdefault(name, []).append(t)
    merged = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
    subj = merged["subjects"]
    subj["_order"] = subj.groupby("arm", sort=False).cumcount()
    merged["subjects"] = subj
    first = parts[0][1]
    return Cohort(**merged, metadata=dict(first.metadata), truth=None)


def _subset_cohort(cohort, n: int, arms):
    """The first ``n`` subjects of each of ``arms``, with their tables."""
    from kanalysis.cohort import Cohort

    subj = cohort.subjects
    keep = subj[subj["arm"].isin(arms) & (subj["_order"] < n)]
    ids = set(keep["subject_id"])
    tables = {}
    for name, table in cohort.tables.items():
        if table is None:
            continue
        tables[name] = keep if name == "subjects" else table[table["subject_id"].isin(ids)]
    return Cohort(**tables, metadata=cohort.metadata, truth=None)


def _change_frame(cohort, arms, landmark=None):
    """Change from baseline at post-baseline visits, with baseline and trt (synthetic single)."""
    a = cohort.assessments
    a = a[a["scale"] == cohort.primary_scale]
    base = a[a["visit"] == "baseline"].set_index("subject_id")["score"]
    post = a[a["visit"] != "baseline"].copy()
    post["base"] = post["subject_id"].map(base)
    post = post[post["base"].notna()]
    post["y"] = post["score"] - post["base"]
    arm = cohort.subjects.set_index("subject_id")["arm"]
    post["trt"] = (post["subject_id"].map(arm) != arms[0]).astype(float)
    order = (post.drop_duplicates("visit").sort_values("visit_number")["visit"].tolist())
    post["visit"] = pd.Categorical(post["visit"], categories=order, ordered=True)
    return post.rename(columns={"subject_id": "subject"}).reset_index(drop=True), base


# ---- MMRM ------------------------------------------------------------------------------------

def _term(names, visit, suffix=":trt") -> str:
    hits = [nm for nm in names if nm.endswith(suffix) and f"[{visit}]" in nm]
    if len(hits) != 1:
        raise RuntimeError(f"no unique treatment-by-visit term for visit {visit!r}")
    return hits[0]


class MMRMAnalysis(Analysis):
    """Landmark treatment difference from an MMRM (see the module table)."""

    name = "mmrm"

    def __init__(self, covariance: str = "us", df_method: str = "satterthwaite",
                 alpha: float = 0.05, conf_level: float = 0.95, landmark=None):
        from kanalysis.models.covariance import make_structure

        make_structure(covariance, 2)  # validate the structure name
        df_method = str(df_method).lower().replace("_", "-")
        if df_method in ("kr", "kenward-roger", "kenwardroger"):
            df_method = "kenward-roger"
        if df_method not in ("satterthwaite", "kenward-roger"):
            raise ConfigurationError(f"df_method must be 'satterthwaite' or 'kenward-roger', got "
                                     f"{df_method!r}")
        super().__init__(alpha, conf_level, covariance=covariance, df_method=df_method,
                         landmark=landmark)

    def check(self, scenario) -> None:
        lm = self.options["landmark"]
        if scenario.kind == "normal" and lm is not None and lm not in scenario.visits:
            raise ConfigurationError(f"mmrm: landmark {lm!r} is not a visit of the scenario "
                                     f"({scenario.visits})")
        if scenario.kind == "synthetic" and scenario.design != "single":
            raise ConfigurationError("mmrm: the synthetic maintenance design is analysed by "
                                     "'cox' or 'logrank'")

    def _landmark(self, scenario):
        return self.options["landmark"] if self.options["landmark"] is not None else \
            scenario.landmark

    def prepare(self, scenario, n: int):
        if scenario.kind != "normal":
            return None
        return _PreparedMMRM.create(scenario, n, self.options["covariance"],
                                    self.options["df_method"])

    def run(self, scenario, data, n, state):
        lm = self._landmark(scenario)
        if scenario.kind == "normal":
            if state is not None and state.model is not None:
                return state.refit(data, n, lm, self.alpha, self.conf_level)
            frame = data.long(n)
            formula = "y ~ 0 + C(visit) + C(visit):trt"
        else:
            frame, _ = _change_frame(_subset_cohort(data, n, scenario.arms), scenario.arms)
            frame = frame[frame["visit"].notna()]
            formula = "y ~ 0 + C(visit) + base + C(visit):trt"
        return _mmrm_record(frame, formula, lm, self.options["covariance"],
                            self.options["df_method"], self.alpha, self.conf_level)


def _mmrm_record(frame, formula, landmark, covariance, df_method, alpha, conf_level):
    from kanalysis.models import mmrm

    fit = mmrm(frame, formula, subject="subject", visit="visit", covariance=covariance,
               df_method=df_method)
    return _from_fit(fit, landmark, alpha, conf_level)


def _from_fit(fit, landmark, alpha, conf_level):
    if not getattr(fit, "converged", True):
        return _failed("did not converge")
    term = _term(list(fit.fe_params.index), landmark)
    return _record(fit.fe_params[term], fit.bse[term], fit.df[term], fit.pvalues[term], alpha,
                   conf_level)


class _PreparedMMRM:
    """One MMRMModel per (scenario, n) refitted with each replicate's outcome (NaN = missing),
    when the refit API (:class:`kanalysis.models.MMRMModel`) is available."""

    def __init__(self, model, order, start="cold"):
        self.model, self.order, self.start = model, order, start

    @classmethod
    def create(cls, scenario, n, covariance, df_method):
        try:
            from kanalysis.models import MMRMModel
        except ImportError:
            return cls(None, None)
        J = len(scenario.visits)
        subj = np.repeat(np.arange(2 * n), J)
        arm = np.repeat(np.r_[np.zeros(n), np.ones(n)], J)
        # A complete trial drawn from the scenario with a fixed seed: it sets the scale the
        # optimiser works on and the cold starting values (a fit's own outcome replaces it).
        rng = np.random.default_rng(20261202)
        y0 = np.vstack([scenario.means[a] + rng.standard_normal((n, J)) @ scenario._chol[a].T
                        for a in scenario.arms])
        template = pd.DataFrame({
            "subject": subj, "trt": arm,
            "visit": pd.Categorical(np.tile(np.asarray(scenario.visits, dtype=object), 2 * n),
                                    categories=list(scenario.visits), ordered=True),
            "y": y0.ravel()})
        model = MMRMModel(template, "y ~ 0 + C(visit) + C(visit):trt", subject="subject",
                          visit="visit", covariance=covariance, df_method=df_method,
                          visit_order=list(scenario.visits))
        rows = model.data
        order = (rows["subject"].to_numpy(), rows["visit"].cat.codes.to_numpy())
        return cls(model, order, cls._true_start(model, scenario, covariance))

    @staticmethod
    def _true_start(model, scenario, covariance):
        """Optimiser start at the scenario's own covariance (a fixed point, so fits do not
        depend on which replicates a worker fitted before; a warm ``start="last"`` would),
        falling back to the model's cold start if the model does not expose its structures."""
        try:
            structures = model.structures(covariance)
            S = scenario.covariance[scenario.control] / float(model._scale) ** 2
            x0 = np.concatenate([st.start(S) for st in structures])
            return x0 if np.all(np.isfinite(x0)) else "cold"
        except (AttributeError, TypeError, ValueError, np.linalg.LinAlgError):
            return "cold"

    def refit(self, data, n, landmark, alpha, conf_level):
        from kanalysis.errors import KanalysisError

        idx = data.rows(n)  # first n per arm, control first: template subjects 0..2n-1
        y = data.y[idx][self.order[0], self.order[1]]
        try:
            fit = self.model.refit(y=y, start=self.start)
        except KanalysisError as err:
            return _failed(f"{type(err).__name__}: {err}")
        return _from_fit(fit, landmark, alpha, conf_level)


# ---- LMM slope -------------------------------------------------------------------------------

class LMMSlopeAnalysis(Analysis):
    """Difference in linear slopes, random intercept and slope per subject."""

    name = "lmm_slope"

    def check(self, scenario) -> None:
        if scenario.kind != "normal":
            raise ConfigurationError("lmm_slope applies to Scenario(...) (normal outcomes)")

    def run(self, scenario, data, n, state):
        from kanalysis.models import lmm

        frame = data.long(n)
        fit = lmm(frame, "y ~ time * trt", groups="subject", re_formula="~ 1 + time")
        if not getattr(fit, "converged", True):
            return _failed("did not converge")
        term = "time:trt"
        return _record(fit.fe_params[term], fit.bse[term], fit.df[term], fit.pvalues[term],
                       self.alpha, self.conf_level)


# ---- responders ------------------------------------------------------------------------------

def _two_proportions(x1, n1, x0, n0, alpha, conf_level):
    p1, p0 = x1 / n1, x0 / n0
    pbar = (x1 + x0) / (n1 + n0)
    se0 = np.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n0))
    se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    if se0 == 0:
        return _failed("no variation in response")
    p = 2 * stats.norm.sf(abs(p1 - p0) / se0)
    rec = _record(p1 - p0, se if se > 0 else se0, None, p, alpha, conf_level)
    return rec


class ResponderAnalysis(Analysis):
    """Difference in responder rates at the landmark; missing counts as non-response.

    Normal scenarios: responder when ``y <= threshold`` (``direction="below"``, e.g. a change or
    a score) or ``y >= threshold`` (``"above"``). Synthetic: a >= ``reduction`` (50%) fall from
    baseline on the primary scale (response), or with ``remission_score`` a score at or below it
    (remission; ``"remitter"`` uses MADRS <= 10, ESCAPE-TRD / KetECT).
    """

    name = "responder"

    def __init__(self, threshold: float | None = None, direction: str = "below",
                 reduction: float = 0.5, remission_score: float | None = None,
                 alpha: float = 0.05, conf_level: float = 0.95):
        if direction not in ("below", "above"):
            raise ConfigurationError(f"responder: direction must be 'below' or 'above', got "
                                     f"{direction!r}")
        if not 0 < float(reduction) <= 1:
            raise ConfigurationError(f"responder: reduction must lie in (0, 1], got {reduction}")
        super().__init__(alpha, conf_level, threshold=threshold, direction=direction,
                         reduction=reduction, remission_score=remission_score)
        if remission_score is not None:
            self.name = "remitter"

    def check(self, scenario) -> None:
        if scenario.kind == "normal" and self.options["threshold"] is None:
            raise ConfigurationError("responder: give threshold= (responder when y <= threshold)"
                                     " for a Scenario(...)")
        if scenario.kind == "synthetic" and scenario.design != "single":
            raise ConfigurationError("responder: the synthetic maintenance design is analysed "
                                     "by 'cox' or 'logrank'")

    def run(self, scenario, data, n, state):
        if scenario.kind == "normal":
            j = scenario.visits.index(scenario.landmark)
            idx = data.rows(n)
            y = data.y[idx, j]
            thr = float(self.options["threshold"])
            resp = (y <= thr) if self.options["direction"] == "below" else (y >= thr)
            resp = resp & np.isfinite(y)
            trt = data.arm[idx] != 0
        else:
            sub = _subset_cohort(data, n, scenario.arms)
            frame, base = _change_frame(sub, scenario.arms)
            at = frame[frame["visit"] == scenario.landmark].set_index("subject")
            ids = sub.subjects["subject_id"]
            if self.options["remission_score"] is not None:
                hit = (at["base"] + at["y"]) <= float(self.options["remission_score"])
            else:
                hit = (-at["y"] / at["base"]) >= self.options["reduction"]
            resp = ids.map(hit).fillna(False).to_numpy(bool)
            trt = (sub.subjects["arm"] != scenario.arms[0]).to_numpy()
        x1, n1 = int(resp[trt].sum()), int(trt.sum())
        x0, n0 = int(resp[~trt].sum()), int((~trt).sum())
        return _two_proportions(x1, n1, x0, n0, self.alpha, self.conf_level)


# ---- time to relapse -------------------------------------------------------------------------

class SurvivalAnalysis(Analysis):
    """Time to relapse after randomisation in the maintenance design: Cox log HR (maintenance
    vs none); ``logrank`` uses the log-rank p-value."""

    def __init__(self, method: str = "cox", alpha: float = 0.05, conf_level: float = 0.95):
        super().__init__(alpha, conf_level, method=method)
        self.name = method

    def check(self, scenario) -> None:
        if scenario.kind != "synthetic" or scenario.design != "maintenance":
            raise ConfigurationError(f"{self.name}: time to relapse needs "
                                     "Scenario.from_synthetic('maintenance')")

    def run(self, scenario, data, n, state):
        from kanalysis import durability

        sub = _subset_cohort(data, n, scenario.arms)
        table = durability.derive(sub)
        table = table[table["arm"].isin(scenario.arms)].copy()
        table["trt"] = (table["arm"] != scenario.arms[0]).astype(float)
        if table["event"].sum() < 2:
            return _failed("fewer than 2 relapses")
        fit = durability.cox(table, "~ trt", conf_level=self.conf_level)
        est, se, p = _cox_numbers(fit)
        if self.name == "logrank":
            lr = durability.logrank(table, group="arm")
            p = float(getattr(lr, "p", getattr(lr, "p_value", np.nan)))
        return _record(est, se, None, p, self.alpha, self.conf_level)


def _cox_numbers(fit):
    """(log HR, SE, p) of the single term of a Cox fit, whichever result layout it has."""
    frame = fit.to_frame() if hasattr(fit, "to_frame") else None
    if frame is not None and {"estimate", "std_error", "p_value"} <= set(frame.columns):
        row = frame.iloc[0]
        return float(row["estimate"]), float(row["std_error"]), float(row["p_value"])
    row = fit.summary.iloc[0]
    return float(row["coef"]), float(row["se"]), float(row["p"])


# ---- user function ---------------------------------------------------------------------------

class UserAnalysis(Analysis):
    """``func(data)`` returning a mapping with ``estimate``, ``std_error`` and ``p_value``
    (``df``, ``ci_lower``, ``ci_upper`` optional). ``data``: the long frame of the first n per
    arm (normal scenarios) or the cohort subset (synthetic)."""

    def __init__(self, func: Callable, alpha: float = 0.05, conf_level: float = 0.95):
        super().__init__(alpha, conf_level)
        self.func = func
        self.name = getattr(func, "__name__", "user")

    def spec(self) -> dict[str, Any]:
        mod = getattr(self.func, "__module__", "")
        return {"name": "user", "function": f"{mod}.{getattr(self.func, '__qualname__', '')}",
                "alpha": self.alpha, "conf_level": self.conf_level}

    def run(self, scenario, data, n, state):
        arg = data.long(n) if scenario.kind == "normal" else _subset_cohort(data, n,
                                                                             scenario.arms)
        out = self.func(arg)
        if not isinstance(out, Mapping) or not {"estimate", "std_error", "p_value"} <= set(out):
            return _failed("the user function must return a mapping with estimate, std_error "
                           "and p_value")
        rec = _record(out["estimate"], out["std_error"], out.get("df"), out["p_value"],
                      self.alpha, self.conf_level)
        for k in ("ci_lower", "ci_upper"):
            if k in out and not rec["failed"]:
                rec[k] = float(out[k])
        return rec


def make_analysis(analysis, *, covariance: str = "us", df_method: str = "satterthwaite",
                  alpha: float = 0.05, conf_level: float = 0.95, **options) -> Analysis:
    """An :class:`Analysis` from its name (see :data:`ANALYSES`), a callable, or an instance."""
    if isinstance(analysis, Analysis):
        return analysis
    if callable(analysis):
        return UserAnalysis(analysis, alpha=alpha, conf_level=conf_level)
    name = str(analysis).lower()
    if name == "mmrm":
        return MMRMAnalysis(covariance=covariance, df_method=df_method, alpha=alpha,
                            conf_level=conf_level, **options)
    if name in ("lmm_slope", "slope", "lmm"):
        return LMMSlopeAnalysis(alpha=alpha, conf_level=conf_level)
    if name in ("responder", "responders"):
        return ResponderAnalysis(alpha=alpha, conf_level=conf_level, **options)
    if name in ("remitter", "remitters", "remission"):
        options.setdefault("remission_score", 10.0)
        return ResponderAnalysis(alpha=alpha, conf_level=conf_level, **options)
    if name in ("cox", "logrank"):
        return SurvivalAnalysis(method=name, alpha=alpha, conf_level=conf_level)
    raise ConfigurationError(f"analysis must be one of {ANALYSES} or a function, got "
                             f"{analysis!r}")
