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
# # 04 Safety and tolerability
#
# What happens during and after an infusion: the within-infusion courses of dissociation (CADSS),
# blood pressure and heart rate by arm; how many sessions cross the blood-pressure thresholds
# (SBP > 180 or DBP > 110 mmHg by default) with exact CIs; adverse events by term and arm with
# risk differences; whether dissociation fades over repeated infusions; and whether dissociation
# at the first infusion goes with the antidepressant response.
#
# With `privacy="strict"` rare adverse-event terms are pooled as `other`, and counts below
# `min_cell_count` (or whose complement is) are hidden in tables and figure annotations.

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

params, report, cohort = setup_notebook("04_safety", globals())

# %% [markdown]
# ## Within-infusion courses
#
# Mean and CI by minute from infusion start, first infusion, by arm.

# %%
from kanalysis import recipes, tables
from kanalysis.plots import safety as safety_plots
from kanalysis.plots.style import figure

if cohort.adverse_events is None:
    raise ValueError(f"The cohort {params.cohort_path} has no adverse_events table.")
# Rare adverse-event terms are pooled as "other" in strict mode (a rare label can identify a
# patient); then the analyses of this notebook, with the run's parameters.
ae_events = report.apply(tables.pool_rare, cohort.adverse_events, "term")
analysis = recipes.safety(
    cohort, **recipes.recipe_options("safety", params), adverse_events=ae_events
)
course = analysis.course
course_shown = report.suppressed(course)
report.publish(course, "infusion_course", show=False)
variables = [v for v in ("cadss", "sbp", "dbp", "heart_rate") if v in set(course["variable"])]
n_rows = (len(variables) + 1) // 2
fig, axes = figure("double", aspect=0.3 * n_rows, nrows=n_rows, ncols=2, squeeze=False)
for i, ax in enumerate(axes.flat):
    if i >= len(variables):
        ax.remove()
        continue
    safety_plots.infusion_course_plot(
        course, variables[i], infusion_number=1, ax=ax, min_count=report.min_count, legend=i == 1
    )
report.save_figure(fig, "infusion_course")
# Mean CADSS at the end of a 40-minute infusion (the first infusion), as reported in trials.
end_of_infusion = course_shown[
    (course_shown["variable"] == "cadss")
    & (course_shown["infusion_number"] == 1)
    & (course_shown["minute"] == 40)
]
report.record(
    cadss_mean_minute_40=dict(zip(end_of_infusion["arm"], end_of_infusion["mean"], strict=True))
)

# %% [markdown]
# ## Blood-pressure threshold exceedances
#
# Share of sessions, and of subjects, with any reading above the thresholds, with exact
# (Clopper-Pearson) CIs. Sessions of one subject are not independent: the subject-level share
# avoids that.

# %%
exceedance = {}
for level, raw in analysis.exceedances.items():
    total = "n_sessions" if level == "session" else raw.columns[1]
    counts = {"n_exceeding": total}  # the count and its denominator
    report.publish(raw, f"exceedances_{level}", count_columns=counts)
    # Proportions of hidden counts are missing in strict mode.
    exceedance[level] = report.suppressed(raw, count_columns=counts)
report.record(
    exceedance_proportion_sessions=exceedance["session"].set_index("arm")["proportion"].to_dict(),
    exceedance_proportion_subjects=exceedance["subject"].set_index("arm")["proportion"].to_dict(),
)

# %% [markdown]
# ## Adverse events
#
# Subjects with at least one event of each term, by arm, with exact CIs, and events per infusion.

# %%
incidence = analysis.incidence
ae_counts = {"n_with_event": "n_subjects"}
incidence_shown = report.suppressed(incidence, count_columns=ae_counts)
report.publish(incidence, "ae_incidence", count_columns=ae_counts)
report.record(
    ae_proportion={
        f"{t}|{a}": p
        for t, a, p in zip(
            incidence_shown["term"],
            incidence_shown["arm"],
            incidence_shown["proportion"],
            strict=True,
        )
    }
)

# %% [markdown]
# The AE dot plot: incidence by arm and the risk difference with its Newcombe CI (active arm vs
# control). With one arm, the incidence alone.

# %%
if analysis.risk_difference is not None:
    report.publish(
        analysis.risk_difference,
        "ae_risk_difference",
        count_columns={
            "n_with_event_treatment": "n_subjects_treatment",
            "n_with_event_control": "n_subjects_control",
        },
    )
    axes = safety_plots.ae_dot_plot(
        incidence,
        analysis.active[0],
        analysis.control,
        risk_difference=analysis.risk_difference,
        min_count=report.min_count,
        conf_level=analysis.conf_level,
    )
    fig = axes.flat[0].figure
else:
    ax = safety_plots.ae_incidence_plot(incidence, min_count=report.min_count)
    fig = ax.figure
report.save_figure(fig, "ae_dotplot")

# %% [markdown]
# ## Across repeated infusions
#
# Mixed model of the per-session peak CADSS over infusion number (does dissociation fade?); only
# for cohorts with more than one infusion per subject.

# %%
if analysis.trend is not None:
    report.publish(analysis.trend, "cadss_trend", record=False)
    report.record(cadss_trend=analysis.trend.to_frame().to_dict(orient="records"))

# %% [markdown]
# ## Dissociation and response
#
# Change in the depression score regressed on the peak CADSS of the first infusion, adjusted for
# the baseline score (OLS with CI). The outcome is the 24-h rating after a single infusion, and the
# first rating at least 24 h after the last induction infusion (within 7 days) after a course.
# Some designs have no rating at the target time (a clinic registry rates at infusions and monthly
# check-ins): the report then says so instead of failing.

# %%
dissociation = analysis.dissociation
report.record(dissociation_timepoint=analysis.dissociation_timepoint)
if dissociation is not None:
    report.publish(dissociation, "dissociation_response", record=False)
    report.record(dissociation_response=dissociation.to_frame().to_dict(orient="records"))
else:
    report.record(dissociation_response=None)
for note in analysis.notes:
    print(note)

# %% [markdown]
# ## Key numbers

# %%
report.finish()
