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
# # 03 Response and durability
#
# Does it work, and for how long? Response (at least a 50% reduction from baseline) and remission
# (the scale's threshold) by visit and arm with Wilson CIs, the arm differences (Newcombe CIs);
# then, among responders, time to relapse: Kaplan-Meier by arm with numbers at risk, the log-rank
# test, a Cox model (hazard ratio) and the restricted mean survival time (RMST).
#
# Relapse follows the `relapse_rule` parameter: (a) loss of response on two consecutive
# assessments, (b) a score at or above the cut-off on two assessments 5-15 days apart
# (SUSTAIN-1), (c) a clinical event; see `kanalysis.durability.derive`. The default cohort is the
# maintenance design (responders randomised to maintenance or not).

# %% tags=["parameters"]
cohort_path: str = "data/synthetic/maintenance"  # cohort folder, relative to the repository root
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

params, report, cohort = setup_notebook("03_response_durability", globals())

# %% [markdown]
# ## Response and remission by visit
#
# Observed cases (missing assessments left out). With `privacy="strict"` counts below
# `min_cell_count`, or whose complement is, are hidden together with their rates.

# %%
from kanalysis import recipes, tables
from kanalysis.plots import durability as durability_plots
from kanalysis.plots.forest import forest_plot
from kanalysis.plots.style import figure

# The analyses of this notebook, with the run's parameters (also used by the paper figures).
response = recipes.run("response", cohort, params)
visit_order = [str(v) for v in response.visit_order]
shown_rates = {}  # what may be published: rates of hidden counts are missing in strict mode
for outcome, raw in response.rates.items():
    raw = raw.assign(visit=raw["visit"].astype(str))
    rates = {"responders": "n"}  # each count with its denominator
    shown_rates[outcome] = report.suppressed(raw, count_columns=rates)
    report.publish(raw, f"{outcome}_rates", count_columns=rates)
fig, axes = figure("double", aspect=0.35, nrows=1, ncols=2)
for ax, outcome in zip(axes, ("response", "remission"), strict=True):
    # The suppressed rates are missing, so they are not drawn.
    durability_plots.response_rate_plot(
        shown_rates[outcome], ax=ax, ylabel=f"{outcome.title()} (%)"
    )
    ax.tick_params(axis="x", labelrotation=60)
report.save_figure(fig, "response_rates")
last_visit = visit_order[-1]
report.record(
    last_visit=last_visit,
    **{
        f"{outcome}_rate_last_visit": shown_rates[outcome]
        .query("visit == @last_visit")
        .set_index("arm")["rate"]
        .to_dict()
        for outcome in ("response", "remission")
    },
)

# %% [markdown]
# Risk differences of response between each active arm and the control arm (Newcombe hybrid
# score CI). Arms named `not_...` (e.g. `not_randomised`) are not compared.

# %%
for arm, rd in response.risk_differences.items():
    report.publish(rd, f"response_risk_difference_{arm}")
if not response.risk_differences:
    print("One arm (or no control arm): no between-arm comparison.")

# %% [markdown]
# ## Durability of response
#
# One row per subject at risk of relapse (`kanalysis.durability.derive`): time from the origin
# (randomisation in the maintenance design, else first response) to relapse or censoring.

# %%
analysis = recipes.run("durability", cohort, params)
at_risk_table = analysis.table
censoring = (
    at_risk_table.assign(outcome=at_risk_table["censor_reason"].fillna("relapse"))
    .groupby(["arm", "outcome"])
    .size()
    .rename("n")
    .reset_index()
    .rename(columns={"arm": "group"})
)
censoring = report.apply(tables.apply_privacy, censoring, "n", index_columns=["outcome"])
report.publish(censoring, "relapse_outcomes")

# %% [markdown]
# Kaplan-Meier estimates by arm (Greenwood SE, `log` CI as R's default), the median time to
# relapse with its CI, and survival without relapse at 4 and 8 weeks with the numbers at risk.

# %%
km = analysis.km
report.publish(analysis.medians.reset_index(), "km_median")
report.publish(analysis.landmarks, "km_landmarks", count_columns=["at_risk"])
numbers = analysis.key_numbers()
report.record(
    relapse_rule=analysis.relapse_rule,
    n_at_risk_of_relapse=report.count(len(at_risk_table)),
    n_relapses=report.count(at_risk_table["event"].sum()),
    km_median=numbers["km_median"],
    km_landmarks=numbers["km_landmarks"],
)

# %% [markdown]
# Kaplan-Meier curves with pointwise CI bands, censoring marks and the numbers at risk beneath
# (masked below `min_cell_count` in strict mode).

# %%
ax = durability_plots.km_plot(km, min_count=report.min_count)
report.save_figure(ax.figure, "kaplan_meier")

# %% [markdown]
# Cumulative incidence of relapse with dropout as a competing risk (Aalen-Johansen).

# %%
ax = durability_plots.cumulative_incidence_plot(analysis.cif)
report.save_figure(ax.figure, "cumulative_incidence")

# %% [markdown]
# Swimmer plot: one lane per subject with response periods, infusions, relapse and censoring.
# Each lane is one patient's record, so it is drawn only when `privacy` is `"none"`.

# %%
if report.strict:
    print("privacy='strict': the swimmer plot (row-level records) is not drawn.")
else:
    ax = durability_plots.swimmer_plot(cohort, at_risk_table, scale=report.scale, max_subjects=40)
    report.save_figure(ax.figure, "swimmer")

# %% [markdown]
# Between arms: log-rank test, Cox proportional-hazards model (Efron ties) against the control
# arm, and the difference in RMST up to the shortest arm's longest follow-up (so that every arm is
# observed up to tau).

# %%
if analysis.multi_arm:
    test = analysis.logrank
    report.publish(test.table, "logrank")
    report.record(logrank={"chisq": test.chisq, "df": test.df, "p": test.p})
    if analysis.cox is not None:
        report.publish(analysis.cox, "cox", record=False)
        report.record(cox=numbers["cox"])
    if analysis.rmst is not None:
        report.publish(analysis.rmst.reset_index(), "rmst")
        report.record(rmst_tau=analysis.tau, rmst=numbers["rmst"])
for note in analysis.notes:
    print(note)

# %% [markdown]
# Cox model adjusted for the baseline score, age and the number of failed antidepressant trials,
# shown as a forest plot of hazard ratios with their CIs (below 1: lower hazard of relapse).

# %%
adjusted = analysis.cox_adjusted
if adjusted is not None:
    report.publish(adjusted, "cox_adjusted", record=False)
    report.record(cox_adjusted=numbers["cox_adjusted"])
    label = f"Hazard ratio ({100 * analysis.conf_level:g}% CI)"
    ax = forest_plot(adjusted.to_frame(), xlabel=label)
    report.save_figure(ax.figure, "cox_forest")

# %% [markdown]
# ## Key numbers

# %%
report.finish()
