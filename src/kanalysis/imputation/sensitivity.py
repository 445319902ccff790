"""The missing-data sensitivity analysis of a kanalysis cohort, as notebook 06 runs it.

From the cohort's change-from-baseline scores (:func:`kanalysis.outcomes.responder_status`):

1. the primary MMRM (``change ~ baseline*visit + arm*visit``, MAR);
2. conditional mean imputation (jackknife) under MAR, which reproduces the MMRM, and
   approximate Bayesian multiple imputation under MAR (Rubin's rules);
3. the ICEs of the cohort (:func:`ice_from_cohort`, strategy by dropout reason) and JR, CR and
   CIR for every ICE, each with an ANCOVA at every visit (conditional mean + jackknife);
4. a tipping-point analysis of the primary comparison under MAR, shifting the imputed values of
   the active arm(s).

With one arm (open-label cohorts) the estimate is the mean change at the last visit and only
MAR, LMCF and the tipping point apply (reference-based strategies need a reference arm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import DataValidationError
from kanalysis.imputation.analyse import analyse, default_control
from kanalysis.imputation.draws import draws
from kanalysis.imputation.ice import ice_from_cohort
from kanalysis.imputation.impute import impute
from kanalysis.imputation.methods import ApproxBayes, CondMean
from kanalysis.imputation.pool import pool
from kanalysis.imputation.tipping import TippingPointResult, tipping_point
from kanalysis.results import AnalysisResult, SummaryText

__all__ = ["SensitivityResult", "check_count", "delta_grid", "ice_summary",
           "sensitivity_analysis"]


def check_count(value, name: str, minimum: int = 2) -> int:
    """A notebook count parameter, checked (an integer of at least ``minimum``)."""
    from kanalysis.errors import ConfigurationError

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigurationError(f"Parameter `{name}` must be an integer >= {minimum}, but "
                                 f"{value!r} was passed.")
    return int(value)


def delta_grid(max_delta, n: int = 41) -> np.ndarray:
    """The tipping-point grid 0..``max_delta`` in ``n`` points (``max_delta`` checked)."""
    from kanalysis.errors import ConfigurationError

    if isinstance(max_delta, bool) or not isinstance(max_delta, (int, float, np.number)) or \
            not np.isfinite(max_delta) or max_delta == 0:
        raise ConfigurationError(f"Parameter `max_delta` must be a non-zero number, but "
                                 f"{max_delta!r} was passed.")
    return np.linspace(0.0, float(max_delta), n)


def ice_summary(ice: pd.DataFrame) -> pd.DataFrame:
    """Counts of ICEs by dropout reason, strategy and first affected visit."""
    if ice.empty:
        return pd.DataFrame(columns=["reason", "strategy", "n"])
    return (ice.fillna({"reason": "not given"}).groupby(["reason", "strategy"]).size()
            .rename("n").reset_index())


@dataclass
class SensitivityResult(AnalysisResult):
    """All estimands side by side (``table``), the pooled results and the tipping point."""

    table: pd.DataFrame
    results: dict = field(default_factory=dict)
    tipping: TippingPointResult | None = None
    ice: pd.DataFrame | None = None
    control: Any = None
    active: list = field(default_factory=list)
    visit: Any = None
    parameter: str = "diff"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> SummaryText:
        cols = ["analysis", "estimate", "std_error", "ci_lower", "ci_upper", "p_value"]
        lines = [f"Sensitivity analyses of {self.parameter} at visit {self.visit}",
                 self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")]
        if self.tipping is not None:
            lines.append(str(self.tipping.summary()).splitlines()[1])
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        out = super().key_numbers()
        out.update(visit=str(self.visit), parameter=self.parameter,
                   control=None if self.control is None else str(self.control),
                   n_ice=0 if self.ice is None else int(len(self.ice)),
                   ice_strategies=({} if self.ice is None else
                                   {str(k): int(v) for k, v in
                                    self.ice["strategy"].value_counts().items()}))
        if self.tipping is not None:
            out["tipping_delta"] = self.tipping.key_numbers()["tipping_delta"]
        return out


def _row(label, frame, parameter, visit):
    r = frame[(frame["parameter"] == parameter) & (frame["visit"].astype(str) == str(visit))]
    r = r.iloc[0]
    return {"analysis": label, **{k: r[k] for k in ("estimate", "std_error", "df", "ci_lower",
                                                    "ci_upper", "p_value")}}


def sensitivity_analysis(cohort, scale: str | None = None, *, covariance: str = "us",
                         conf_level: float = 0.95, mapping=None, other: str = "JR",
                         deltas=None, n_imputations: int = 100, seed: int = 2024,
                         arms: list | None = None, progress: bool = False) -> SensitivityResult:
    """Run the sensitivity analyses of a cohort (see the module docstring).

    Parameters
    ----------
    cohort : kanalysis.Cohort
    scale : str, optional
        Outcome scale (default: the cohort's primary scale).
    covariance : str
        Covariance of the MMRM and of the imputation model.
    conf_level : float
    mapping, other :
        Dropout reason -> strategy (see :func:`ice_from_cohort`).
    deltas : array, optional
        Tipping-point grid (default 0 to 10 in 41 steps, in the scale's points; positive is worse
        for depression scales).
    n_imputations : int
        Imputations of the approximate Bayesian MI under MAR.
    arms : list, optional
        Arms analysed (default: the arms with scores at the last visit).
    """
    from kanalysis import mmrm
    from kanalysis.outcomes import responder_status

    scale = scale or cohort.primary_scale
    status = responder_status(cohort, scale)
    order = (status[["visit", "visit_number"]].drop_duplicates()
             .sort_values("visit_number")["visit"].tolist())
    last = order[-1]
    if arms is None:
        arms = sorted(status.loc[status["visit"] == last, "arm"].unique(), key=str)
    data = status[status["arm"].isin(arms)][["subject_id", "arm", "visit", "baseline",
                                              "change"]].copy()
    data["visit"] = pd.Categorical(data["visit"], categories=order)
    used = [v for v in order if v in set(data["visit"])]
    data["visit"] = data["visit"].cat.set_categories(used)
    multi = len(arms) > 1
    formula = "change ~ baseline*visit" + (" + arm*visit" if multi else "")
    ice = ice_from_cohort(cohort, scale, mapping=mapping, other=other)
    ice = ice[ice["subject_id"].isin(set(data["subject_id"])) & ice["visit"].isin(used)]
    refs = None
    control = None
    if multi:
        control = default_control(arms, {})
        refs = {a: control for a in arms}
    active = [a for a in arms if a != control] if multi else list(arms)
    parameter = "diff" if len(arms) == 2 else (f"diff_{active[0]}" if multi else str(arms[0]))
    kw = dict(subject="subject_id", visit="visit", group="arm", covariance=covariance,
              progress=progress)
    rows, results = [], {}
    # 1. the primary MMRM
    fit = mmrm(data, formula, subject="subject_id", visit="visit", covariance=covariance,
               visit_order=used)
    alpha = 1 - conf_level
    results["mmrm"] = fit
    jk = CondMean(resampling="jackknife")
    # 2. MAR
    mar_ice = ice.assign(strategy="MAR")
    dr_mar = draws(data, formula, ice=mar_ice, method=jk, **kw)
    res = pool(analyse(impute(dr_mar, refs), covariates=["baseline"]), conf_level=conf_level)
    results["MAR"] = res
    rows.append(_row("MAR (conditional mean)", res.to_frame(), parameter, last))
    dr_ab = draws(data, formula, ice=mar_ice, method=ApproxBayes(n_samples=n_imputations,
                                                                 seed=seed), **kw)
    res = pool(analyse(impute(dr_ab, refs), covariates=["baseline"]), conf_level=conf_level)
    results["MAR_MI"] = res
    rows.append(_row("MAR (multiple imputation)", res.to_frame(), parameter, last))
    # 3. strategies. Without observed values after the ICEs (dropout) every strategy has the
    # MAR fit's data, so the MAR draws serve them all (impute(update_strategy=...)); otherwise
    # the draws are refitted without the post-ICE values.
    def with_strategies(strategies: pd.DataFrame):
        try:
            return impute(dr_mar, refs, update_strategy=strategies)
        except DataValidationError:
            return impute(draws(data, formula, ice=ice.assign(
                strategy=strategies["strategy"].to_numpy()), method=jk, **kw), refs)

    if multi and len(ice):
        res = pool(analyse(with_strategies(ice[["subject_id", "strategy"]]),
                           covariates=["baseline"]), conf_level=conf_level)
        results["by_reason"] = res
        rows.append(_row("By dropout reason", res.to_frame(), parameter, last))
        for s in ("JR", "CR", "CIR"):
            imp = with_strategies(ice[["subject_id"]].assign(strategy=s))
            res = pool(analyse(imp, covariates=["baseline"]), conf_level=conf_level)
            results[s] = res
            rows.append(_row(f"{s} (all ICEs)", res.to_frame(), parameter, last))
    elif len(ice):
        k_first = ice["visit"].map({v: i for i, v in enumerate(used)})
        if (k_first > 0).any():  # LMCF needs a visit before the ICE; others stay MAR
            upd = ice[["subject_id"]].assign(strategy=np.where(k_first > 0, "LMCF", "MAR"))
            imp = with_strategies(upd)
            res = pool(analyse(imp, covariates=["baseline"]), conf_level=conf_level)
            results["LMCF"] = res
            rows.append(_row("LMCF (all ICEs)", res.to_frame(), parameter, last))
    # 4. tipping point under MAR, active arm(s) shifted
    deltas = np.linspace(0, 10, 41) if deltas is None else np.asarray(deltas, dtype=float)
    tp = tipping_point(dr_mar, refs, deltas=deltas, arms=active, visit=last,
                       parameter=parameter, covariates=["baseline"], conf_level=conf_level,
                       control=control)
    table = pd.DataFrame(rows)
    mm = _mmrm_row(fit, multi, control, active, last, alpha, parameter)
    table = pd.concat([pd.DataFrame([mm]), table], ignore_index=True)
    return SensitivityResult(table=table, results=results, tipping=tp, ice=ice,
                             control=control, active=active, visit=last, parameter=parameter)


def _mmrm_row(fit, multi, control, active, last, alpha, parameter):
    if multi:
        c = fit.contrast(specs="arm", by="visit", method="pairwise", alpha=alpha)
        c = c[c["visit"].astype(str) == str(last)]
        want = f"{active[0]} - {control}"
        hit = c[c["contrast"] == want]
        sign = 1.0
        if hit.empty:
            hit = c[c["contrast"] == f"{control} - {active[0]}"]
            sign = -1.0
        r = hit.iloc[0]
        lo, hi = sorted([sign * r["ci_lower"], sign * r["ci_upper"]])
        return {"analysis": "Primary MMRM (MAR)", "estimate": sign * r["estimate"],
                "std_error": r["std_error"], "df": r["df"], "ci_lower": lo, "ci_upper": hi,
                "p_value": r["p_value"]}
    ls = fit.lsmeans(specs="visit", alpha=alpha)
    r = ls[ls["visit"].astype(str) == str(last)].iloc[0]
    return {"analysis": "Primary MMRM (MAR)", "estimate": r["estimate"],
            "std_error": r["std_error"], "df": r.get("df", np.nan), "ci_lower": r["ci_lower"],
            "ci_upper": r["ci_upper"], "p_value": r.get("p_value", np.nan)}
