# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: py:percent
#     notebook_metadata_filter: -jupytext.text_representation,-language_info,-widgets
#   kernelspec:
#     display_name: Python 3 (kanalysis)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 Symptom trajectories
#
# How depression scores move after ketamine: each subject's course with the mean and its
# confidence interval by arm; a linear mixed model with a random intercept and slope per subject
# on linear time and on log time (ketamine acts within hours, so log time often fits better); and
# an MMRM of the change from baseline with LS-means by visit and arm and the arm differences.
#
# Models are fitted by `kanalysis.lmm` / `kanalysis.mmrm` (REML, Satterthwaite df), whose numbers
# are checked against R (lme4 + lmerTest, nlme + emmeans) in the test suite.

# %% tags=["parameters"]
cohort_path: str = "data/synthetic/single"  # cohort folder, relative to the repository root
scale = None  # type: Optional[str] scale in kanalysis.scales; None: the cohort's primary scale
response_reduction: float = 0.5  # response: this fraction of baseline lost, in (0, 1]
remission_threshold = None  # type: Optional[float] remission cut-off; None: the scale's default
relapse_rule: str = "loss_of_response"  # a/loss_of_response, b/threshold, c/clinical_events, or b+c
relapse_threshold = None  # type: Optional[float] cut-off of the threshold rule; None: its default
alpha: float = 0.05  # significance level; intervals are 100 * (1 - alpha)%
covariance: str = "us"  # MMRM covariance: us, cs, csh, ar1, ar1h or toep
output_dir: str = "reports/notebooks"  # figures/, tables/ and results.json go here
figure_formats: str = "pdf,svg,png"  # comma-separated figure formats
privacy: str = "none"  # "strict": no row-level records, small counts suppressed
min_cell_count: int = 11  # smallest count shown when privacy is strict

# %% [markdown]
# Check the parameters (papermill injects them without checking), load and validate the cohort,
# and settle the privacy policy (the stricter of `privacy` and the cohort's metadata). A bad value
# stops here with a message naming the parameter.

# %%
from kanalysis.runner import setup_notebook

params, report, cohort = setup_notebook("02_symptom_trajectories", globals())

# %% [markdown]
# ## Individual courses, mean and CI by arm
#
# Observed cases, so the mean is biased if dropout depends on the score: the MMRM below is the
# estimate to report. With `privacy="strict"` individual courses are not drawn (they are
# row-level records) and visits with fewer than `min_cell_count` scores are not summarised.

# %%
import pandas as pd

import kanalysis as ka
from kanalysis import outcomes
from kanalysis.plots import trajectories

data = trajectories.trajectory_data(cohort, report.scale)
summary = report.apply(trajectories.visit_summary, data, alpha=params.alpha)
multi_arm = data["arm"].nunique() > 1
ax = trajectories.spaghetti(
    data,
    summary=report.apply(trajectories.visit_summary, data, alpha=params.alpha, label=None),
    show_individuals=not report.strict,
    xscale="symlog",
    ylabel=report.scale,
)
report.save_figure(ax.figure, "spaghetti")
report.publish(summary, "visit_summary")

# %% [markdown]
# ## Linear mixed models: random intercept and slope
#
# `score ~ time * arm + (1 + time | subject)` with time in days, then in log time,
# `log(1 + hours)`. Both are fitted by REML for the estimates. The two time scales put different
# columns in the fixed-effect design, so REML likelihoods are not comparable between them: the AICs
# that compare the time scales come from maximum-likelihood refits.

# %%
arm_term = " * C(arm)" if multi_arm else ""
lmm_fits = {}
for time_name in ("day", "log_time"):
    lmm_fits[time_name] = ka.lmm(
        data,
        formula=f"score ~ {time_name}{arm_term}",
        groups="subject_id",
        re_formula=f"~ 1 + {time_name}",
    )
    report.publish(lmm_fits[time_name], f"lmm_{time_name}_fixed_effects", record=False)
    report.publish(
        lmm_fits[time_name].variance_components(), f"lmm_{time_name}_variances", show=False
    )
lmm_ml_aic = {
    name: ka.lmm(
        data, formula=fit.formula, groups="subject_id", re_formula=f"~ 1 + {name}", reml=False
    ).aic
    for name, fit in lmm_fits.items()
}
report.show(pd.DataFrame({"time scale": list(lmm_ml_aic), "AIC (ML)": list(lmm_ml_aic.values())}))
report.record(
    lmm={
        name: {
            "formula": fit.formula,
            "fixed_effects": fit.fe_params.to_dict(),
            "std_errors": fit.bse.to_dict(),
            "aic_ml": lmm_ml_aic[name],
            "llf": fit.llf,
            "n_obs": fit.n_obs,
        }
        for name, fit in lmm_fits.items()
    }
)

# %% [markdown]
# ## MMRM of the change from baseline
#
# `change ~ baseline * visit + arm * visit` with an unstructured (or the `covariance` parameter's)
# within-subject covariance, REML, Satterthwaite df. LS-means weight the visits equally with the
# baseline at its mean (emmeans / SAS default).

# %%
status = outcomes.responder_status(
    cohort,
    report.scale,
    response_reduction=params.response_reduction,
    remission_threshold=params.remission_threshold,
)
visit_order = status.sort_values("visit_number")["visit"].drop_duplicates().tolist()
mmrm_formula = "change ~ baseline * C(visit)" + (" + C(arm) * C(visit)" if multi_arm else "")
mmrm_fit = ka.mmrm(
    status,
    formula=mmrm_formula,
    subject="subject_id",
    visit="visit",
    covariance=params.covariance,
)
if multi_arm:
    lsmeans = mmrm_fit.lsmeans(specs="arm", by="visit", conf_level=report.conf_level)
    contrasts = mmrm_fit.contrast(
        specs="arm", by="visit", method="pairwise", conf_level=report.conf_level
    )
else:
    lsmeans = mmrm_fit.lsmeans(specs="visit", conf_level=report.conf_level)
    lsmeans["arm"] = data["arm"].iloc[0]
    contrasts = None
report.publish(mmrm_fit, "mmrm_fixed_effects", record=False, show=False)
report.publish(lsmeans, "mmrm_lsmeans")

# %% [markdown]
# LS-means of the change from baseline with their confidence intervals, by visit and arm.

# %%
ax = trajectories.lsmeans_plot(
    lsmeans, order=visit_order, ylabel=f"Change in {report.scale} (LS-mean)"
)
report.save_figure(ax.figure, "lsmeans")

# %% [markdown]
# Arm differences of the LS-means by visit (none for a single-arm cohort).

# %%
last_visit = visit_order[-1]
last = lsmeans[lsmeans["visit"] == last_visit]
report.record(
    mmrm={
        "formula": mmrm_formula,
        "covariance": params.covariance,
        "llf": mmrm_fit.llf,
        "last_visit": last_visit,
        "lsmeans_last_visit": dict(zip(last["arm"], last["estimate"], strict=True)),
    }
)
if contrasts is not None:
    report.publish(contrasts, "mmrm_contrasts")
    at_last = contrasts[contrasts["visit"] == last_visit].iloc[0]
    report.results["mmrm"]["contrast_last_visit"] = {
        k: at_last[k] for k in ("contrast", "estimate", "std_error", "df", "ci_lower", "ci_upper")
    }

# %% [markdown]
# ## Key numbers

# %%
report.finish()
