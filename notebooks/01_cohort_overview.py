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
# # 01 Cohort overview
#
# Who is in the cohort and what was done to them: the validation summary, the subject flow
# (enrolled, assessed at baseline, infused, completed, dropped out, by arm), the baseline
# characteristics by arm (Table 1), and the assessment and infusion schedules.
#
# Every number comes from `kanalysis`; this notebook only calls it, shows the result and writes
# the tables and `results.json` into `output_dir`. Run it with `kanalysis run --notebooks 01`.

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

params, report, cohort = setup_notebook("01_cohort_overview", globals())

# %% [markdown]
# ## Validation
#
# Every rule of the data model (`docs/data_model.md`) is checked; errors stop `load_cohort`, so
# only warnings can remain here. With `privacy="strict"` the offending rows and values are not
# listed.

# %%
from kanalysis import outcomes, tables

validation = cohort.validate()
problems = report.apply(tables.validation_summary, validation)
report.publish(problems, "validation")
report.record(
    n_validation_errors=int((validation.problems["severity"] == "error").sum()),
    n_validation_warnings=int((validation.problems["severity"] == "warning").sum()),
)

# %% [markdown]
# ## Subject flow
#
# Stages are nested: enrolled (rows of `subjects`) -> assessed at baseline (a score on or before
# day 0) -> infused (at least one infusion) -> completed or dropped out, with dropout reasons.

# %%
flow = report.apply(tables.subject_flow, cohort.subjects, cohort.infusions, cohort.assessments)
report.publish(
    flow, "subject_flow", caption="Subject flow by arm.", label="tab:flow", show=False
)
flow_wide = flow.pivot(index="stage", columns="group", values="n").loc[flow["stage"].unique()]
report.record(subject_flow=flow_wide.to_dict(orient="index"))
report.show(flow_wide.reset_index())

# %% [markdown]
# ## Baseline characteristics (Table 1)
#
# Continuous variables as mean (SD) or median [Q1, Q3], categorical as n (%); the baseline score is
# the last non-missing score on or before the first infusion.

# %%
baseline = outcomes.baseline_scores(cohort, report.scale)
subjects = cohort.subjects.merge(baseline[["subject_id", "baseline"]], on="subject_id", how="left")
subjects = subjects.rename(columns={"baseline": "baseline_score"})
continuous = {c: h for c, h in tables.DEFAULT_CONTINUOUS.items() if c in subjects.columns}
continuous["baseline_score"] = "mean_sd"
table1 = report.apply(
    tables.table_one,
    subjects,
    continuous=continuous,
    labels={"baseline_score": f"Baseline {report.scale}"},
)
report.publish(
    table1.to_frame(),
    "table1",
    caption="Baseline characteristics by arm.",
    label="tab:table1",
)
report.publish(table1.long, "table1_numbers", show=False)
overall = table1.long[table1.long["group"] == "overall"].set_index("variable")
report.record(
    n_subjects=int(table1.group_sizes["overall"]),
    n_by_arm={k: int(v) for k, v in table1.group_sizes.items() if k != "overall"},
    mean_age=overall.loc["age", "mean"] if "age" in overall.index else None,
    mean_baseline_score=overall.loc["baseline_score", "mean"],
)

# %% [markdown]
# ## Schedules
#
# Assessments of the outcome scale by visit and arm (median study day, subjects assessed), and
# infusions by number and arm.

# %%
assessment_schedule = report.apply(
    tables.assessment_schedule, cohort.assessments, cohort.subjects, scale=report.scale
)
report.publish(assessment_schedule, "assessment_schedule")
report.record(n_visits=int(assessment_schedule["visit_number"].nunique()))

# %%
infusion_schedule = report.apply(tables.infusion_schedule, cohort.infusions, cohort.subjects)
report.publish(infusion_schedule, "infusion_schedule")
report.record(max_infusions=int(cohort.infusions["infusion_number"].max()))

# %% [markdown]
# The schedule at a glance: median study day of each visit (circles) and infusion (triangles).

# %%
from kanalysis.plots.trajectories import schedule_plot

ax = schedule_plot(assessment_schedule, infusion_schedule)
report.save_figure(ax.figure, "schedule")

# %% [markdown]
# ## Key numbers
#
# Written to this notebook's section of `results.json`.

# %%
report.finish()
