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

from kanalysis import recipes
from kanalysis.plots import trajectories

# The analyses of this notebook, with the run's parameters (also used by the paper figures).
analysis = recipes.run("trajectories", cohort, params)
data = analysis.data
summary = report.apply(trajectories.visit_summary, data, alpha=params.alpha)
ax = trajectories.spaghetti_plot(
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
for time_name, fit in analysis.lmm.items():
    report.publish(fit, f"lmm_{time_name}_fixed_effects", record=False)
    report.publish(fit.variance_components(), f"lmm_{time_name}_variances", show=False)
aic = analysis.lmm_aic_ml
report.show(pd.DataFrame({"time scale": list(aic), "AIC (ML)": list(aic.values())}))
report.record(lmm=analysis.key_numbers()["lmm"])

# %% [markdown]
# ## MMRM of the change from baseline
#
# `change ~ baseline * visit + arm * visit` with an unstructured (or the `covariance` parameter's)
# within-subject covariance, REML, Satterthwaite df. LS-means weight the visits equally with the
# baseline at its mean (emmeans / SAS default).

# %%
model = analysis.mmrm
report.publish(model.fit, "mmrm_fixed_effects", record=False, show=False)
report.publish(model.lsmeans, "mmrm_lsmeans")

# %% [markdown]
# LS-means of the change from baseline with their confidence intervals, by visit and arm.

# %%
ax = trajectories.lsmeans_plot(
    model.lsmeans, order=model.visit_order, ylabel=f"Change in {report.scale} (LS-mean)"
)
report.save_figure(ax.figure, "lsmeans")

# %% [markdown]
# Arm differences of the LS-means by visit (none for a single-arm cohort).

# %%
report.record(mmrm=model.key_numbers())
if model.contrasts is not None:
    report.publish(model.contrasts, "mmrm_contrasts")

# %% [markdown]
# ## Key numbers

# %%
report.finish()
