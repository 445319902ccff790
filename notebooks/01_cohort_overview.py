# ---
# jupyter:
#   jupytext:
#     formats: py:percent
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
# Check the parameters (papermill injects them without checking), then load and validate the
# cohort. A bad value stops here with a message naming the parameter.

# %%
from IPython.display import display

from kanalysis.plots.style import use_style
from kanalysis.runner import NotebookReport, notebook_parameters

params = notebook_parameters(globals())
report = NotebookReport("01_cohort_overview", params)
cohort = report.load_cohort()
use_style()
print(cohort)
print(f"scale: {report.scale}; privacy: {report.privacy}")

# %% [markdown]
# ## Validation
#
# Every rule of the data model (`docs/data_model.md`) is checked; errors stop `load_cohort`, so
# only warnings can remain here. With `privacy="strict"` the offending rows and values are not
# listed.

# %%
from kanalysis import outcomes, tables

validation = cohort.validate()
problems = tables.validation_summary(validation, privacy=report.privacy)
report.save_table(problems, "validation")
report.record(
    n_validation_errors=int((validation.problems["severity"] == "error").sum()),
    n_validation_warnings=int((validation.problems["severity"] == "warning").sum()),
)
display(problems)

# %% [markdown]
# ## Subject flow
#
# Stages are nested: enrolled (rows of `subjects`) -> assessed at baseline (a score on or before
# day 0) -> infused (at least one infusion) -> completed or dropped out, with dropout reasons.

# %%
flow = tables.subject_flow(
    cohort.subjects,
    cohort.infusions,
    cohort.assessments,
    privacy=report.privacy,
    min_cell_count=params.min_cell_count,
)
report.save_table(flow, "subject_flow", caption="Subject flow by arm.", label="tab:flow")
flow_wide = flow.pivot(index="stage", columns="group", values="n").loc[flow["stage"].unique()]
report.record(subject_flow=flow_wide.to_dict(orient="index"))
display(flow_wide)

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
table1 = tables.table_one(
    subjects,
    continuous=continuous,
    labels={"baseline_score": f"Baseline {report.scale}"},
    privacy=report.privacy,
    min_cell_count=params.min_cell_count,
)
table1_display = table1.to_frame()
report.save_table(
    table1_display, "table1", caption="Baseline characteristics by arm.", label="tab:table1"
)
report.save_table(table1.long, "table1_numbers")
overall = table1.long[table1.long["group"] == "overall"].set_index("variable")
report.record(
    n_subjects=int(table1.group_sizes["overall"]),
    n_by_arm={k: int(v) for k, v in table1.group_sizes.items() if k != "overall"},
    mean_age=overall.loc["age", "mean"] if "age" in overall.index else None,
    mean_baseline_score=overall.loc["baseline_score", "mean"],
)
display(table1_display)

# %% [markdown]
# ## Schedules
#
# Assessments of the outcome scale by visit and arm (median study day, subjects assessed), and
# infusions by number and arm.

# %%
assessment_schedule = tables.assessment_schedule(
    cohort.assessments,
    cohort.subjects,
    scale=report.scale,
    privacy=report.privacy,
    min_cell_count=params.min_cell_count,
)
report.save_table(assessment_schedule, "assessment_schedule")
report.record(n_visits=int(assessment_schedule["visit_number"].nunique()))
display(assessment_schedule)

# %%
infusion_schedule = tables.infusion_schedule(
    cohort.infusions,
    cohort.subjects,
    privacy=report.privacy,
    min_cell_count=params.min_cell_count,
)
report.save_table(infusion_schedule, "infusion_schedule")
report.record(max_infusions=int(cohort.infusions["infusion_number"].max()))
display(infusion_schedule)

# %% [markdown]
# The schedule at a glance: median study day of each visit (circles) and infusion (triangles).

# %%
import matplotlib.pyplot as plt

from kanalysis.plots.trajectories import schedule_plot

ax = schedule_plot(assessment_schedule, infusion_schedule)
report.save_figure(ax.figure, "schedule")
plt.show()

# %% [markdown]
# ## Key numbers
#
# Written to this notebook's section of `results.json`.

# %%
report.write()
display(report.results)
