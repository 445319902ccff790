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
# # 06 Estimands and missing data: sensitivity analyses
#
# Patients leave ketamine trials, often for lack of efficacy, and such dropout is not missing at
# random. The primary MMRM assumes MAR; ICH E9(R1) asks for the estimand to be stated and for
# sensitivity analyses under other assumptions about the missing outcomes. This notebook runs,
# for the primary comparison at the last visit:
#
# - the primary MMRM (MAR);
# - conditional mean imputation under MAR (which reproduces the MMRM) and multiple imputation
#   under MAR (approximate Bayesian, Rubin's rules);
# - the intercurrent events of the cohort with a strategy by dropout reason (lack of efficacy or
#   adverse event: jump to reference; lost to follow-up or withdrawn consent: MAR), and jump to
#   reference (JR), copy reference (CR) and copy increments in reference (CIR) for every ICE;
# - a delta-adjustment tipping-point analysis: how much worse must the unobserved scores of the
#   active arm be for the result to lose significance?
#
# Reference-based imputation uses conditional means with jackknife standard errors (Wolbers et
# al. 2022); the methods, the strategies and the checks against R are in `docs/imputation.md`.

# %% tags=["parameters"]
cohort_path: str = "data/synthetic/single"  # cohort folder, relative to the repository root
scale = None  # type: Optional[str] scale in kanalysis.scales; None: the cohort's primary scale
response_reduction: float = 0.5  # response: this fraction of baseline lost, in (0, 1]
remission_threshold = None  # type: Optional[float] remission cut-off; None: the scale's default
relapse_rule: str = "loss_of_response"  # a/loss_of_response, b/threshold, c/clinical_events, or b+c
relapse_threshold = None  # type: Optional[float] cut-off of the threshold rule; None: its default
alpha: float = 0.05  # significance level; intervals are 100 * (1 - alpha)%
covariance: str = "us"  # MMRM and imputation-model covariance: us, cs, csh, ar1, ar1h or toep
output_dir: str = "reports/notebooks"  # figures/, tables/ and results.json go here
figure_formats: str = "pdf,svg,png"  # comma-separated figure formats
privacy: str = "none"  # "strict": no row-level records, small counts suppressed
min_cell_count: int = 11  # smallest count shown when privacy is strict
n_imputations: int = 100  # imputations of the multiple imputation under MAR
max_delta: float = 10.0  # largest shift (scale points, worse) of the tipping-point grid

# %% [markdown]
# Check the parameters (papermill injects them without checking), then load and validate the
# cohort.

# %%
from IPython.display import display

from kanalysis.plots.style import use_style
from kanalysis.runner import NotebookReport, notebook_parameters

params = notebook_parameters(globals())
report = NotebookReport("06_sensitivity", params)
cohort = report.load_cohort()
use_style()
print(cohort)
print(f"scale: {report.scale}; privacy: {report.privacy}")

# %% [markdown]
# ## Intercurrent events
#
# The first scheduled visit after each dropout, with the strategy for its reason.

# %%
from kanalysis import imputation as mi

ice = mi.ice_from_cohort(cohort, report.scale)
ice_counts = mi.ice_summary(ice)
ice_counts["n"] = ice_counts["n"].map(report.count)  # small counts hidden when privacy is strict
report.save_table(ice_counts, "ice_strategies")
display(ice_counts)

# %% [markdown]
# ## All estimands side by side
#
# The treatment difference at the last visit (active minus control; negative favours the
# active arm on depression scales) under each assumption.

# %%
sens = mi.sensitivity_analysis(
    cohort,
    report.scale,
    covariance=params.covariance,
    conf_level=1 - params.alpha,
    n_imputations=mi.check_count(n_imputations, "n_imputations"),
    deltas=mi.delta_grid(max_delta),
)
report.save_table(sens.to_frame(), "estimands")
display(sens.to_frame())

# %%
from kanalysis.plots.imputation import estimands_forest, tipping_plot

ax = estimands_forest(
    sens.to_frame(), xlabel=f"{sens.parameter} at {sens.visit} ({1 - params.alpha:.0%} CI)"
)
report.save_figure(ax.figure, "estimands_forest")

# %% [markdown]
# ## Tipping point
#
# Under MAR, the imputed scores of the active arm are made worse by delta points until the
# difference at the last visit is no longer significant.

# %%
report.save_table(sens.tipping.to_frame(), "tipping_grid")
ax = tipping_plot(sens.tipping, ylabel=f"{sens.parameter}")
report.save_figure(ax.figure, "tipping_point")
print(sens.tipping.summary().splitlines()[1])

# %% [markdown]
# ## Key numbers

# %%
report.record(sensitivity=sens.key_numbers())
report.write()
display(report.results["sensitivity"]["tipping_delta"])
