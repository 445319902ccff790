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
# # 07 Power and sample size
#
# How many patients does the next ketamine trial need? This notebook answers by simulation and
# by formula, side by side. A scenario file (TOML, see `examples/design_*.toml`) states the
# assumptions: means by arm and visit, their spread and correlation, retention per visit, or the
# kanalysis synthetic generator with its published defaults and any of them changed. Each
# replicate is a whole simulated trial analysed as the statistical analysis plan says (MMRM at a
# landmark visit with Satterthwaite df by default); the power at each sample size is the share of
# replicates that reject, with its Monte Carlo SE and exact CI. Failed fits are counted as
# failures to reject and reported. The null scenario (no treatment effect) checks the type I
# error. Replicates run on a local Dask cluster (`design_workers`) or an existing one
# (`dask_scheduler`); the same seed gives the same numbers either way.
#
# The defaults keep `make run` quick: a few dozen replicates per point. For a protocol, use
# `n_sim` of 1,000 or more (MC SE of 80% power: 1.3% at 1,000) or the `kanalysis design` command.

# %% tags=["parameters"]
cohort_path: str = "data/synthetic/single"  # not used here (common parameter)
scale = None  # type: Optional[str] not used here (common parameter)
response_reduction: float = 0.5  # not used here (common parameter)
remission_threshold = None  # type: Optional[float] not used here (common parameter)
relapse_rule: str = "loss_of_response"  # not used here (common parameter)
relapse_threshold = None  # type: Optional[float] not used here (common parameter)
alpha: float = 0.05  # two-sided significance level of the simulated tests
covariance: str = "us"  # MMRM covariance: us, cs, csh, ar1, ar1h or toep
output_dir: str = "reports/notebooks"  # figures/, tables/ and results.json go here
figure_formats: str = "pdf,svg,png"  # comma-separated figure formats
privacy: str = "none"  # no patient data is used; kept for the common interface
min_cell_count: int = 11  # not used here (common parameter)
scenario_file: str = "examples/design_ketamine_mmrm.toml"  # scenario, relative to the repo root
n_per_arm: str = "20:60:20"  # sample sizes per arm: start:stop:step or a comma list
n_sim: int = 30  # replicates per scenario and sample size
seed: int = 20261202  # root seed (recorded; the same seed gives the same numbers)
analysis: str = "mmrm"  # mmrm, lmm_slope, responder, cox or logrank
df_method: str = "satterthwaite"  # MMRM df: satterthwaite or kenward-roger
target_power: float = 0.8  # target line of the power curve
include_null: bool = True  # also simulate the null scenario (type I error)
design_workers = None  # type: Optional[int] start a local Dask cluster of this many workers
dask_scheduler = None  # type: Optional[str] address of an existing Dask scheduler

# %% [markdown]
# Check the parameters (papermill injects them without checking), then read the scenario. A bad
# value stops here with a message naming it.

# %%
from pathlib import Path

from IPython.display import display

from kanalysis.design import load_scenario, simulate_power
from kanalysis.design.cli import parse_n
from kanalysis.design.report import assumptions_table, power_table, type1_check
from kanalysis.errors import ConfigurationError
from kanalysis.plots.style import use_style
from kanalysis.runner import NotebookReport, notebook_parameters, project_root

params = notebook_parameters(globals())
report = NotebookReport("07_power", params)
report.record(privacy=report.privacy)  # no patient data is read here
grid = parse_n(n_per_arm)
if not isinstance(n_sim, int) or n_sim < 1:
    raise ConfigurationError(f"n_sim must be a positive integer, got {n_sim!r}")
if not 0 < target_power < 1:
    raise ConfigurationError(f"target_power must lie in (0, 1), got {target_power!r}")
if design_workers is not None and dask_scheduler is not None:
    raise ConfigurationError("give design_workers or dask_scheduler, not both")
path = Path(scenario_file)
if not path.exists() and (project_root() / path).exists():
    path = project_root() / path
scenario = load_scenario(path)
scenarios = [scenario, scenario.null()] if include_null else [scenario]
use_style()
print(scenario)
display(scenario.assumptions())

# %% [markdown]
# ## The analytic answer
#
# For normal outcomes analysed by MMRM, Lu, Luo & Chen (2008) give the sample size under monotone
# dropout from the correlation and retention up to the landmark visit.

# %%
analytic = None
if analysis == "mmrm" and getattr(scenario, "kind", "") == "normal":
    analytic = scenario.analytic_mmrm(power=target_power, alpha=params.alpha)
    print(analytic.summary())
    report.record(analytic=analytic.key_numbers())
else:
    print("No closed form for this scenario and analysis; see the simulation below.")

# %% [markdown]
# ## Simulated power

# %%
result = simulate_power(
    scenarios, n_per_arm=grid, n_sim=n_sim, seed=seed, analysis=analysis,
    covariance=params.covariance, df_method=df_method, alpha=params.alpha,
    workers=design_workers, scheduler=dask_scheduler, progress=False)
table = power_table(result)
report.save_table(table, "power")
display(table)

# %% [markdown]
# ## Power curve
#
# Simulated power with its exact CI band, the analytic curve (dotted) where a formula applies,
# and the target.

# %%
ax = result.plot(target=target_power)
report.save_figure(ax.figure, "power_curve")

# %% [markdown]
# ## Type I error
#
# The null scenario's rejection rate is flagged when it lies outside alpha +- 2 MC SE.

# %%
checks = type1_check(result)
display(checks)
if checks["flagged"].any():
    print("WARNING: the type I error lies outside alpha +- 2 MC SE for some sample sizes.")

# %% [markdown]
# ## Assumptions, seeds and versions

# %%
display(assumptions_table(result))

# %% [markdown]
# ## Key numbers

# %%
report.record(power=result.key_numbers(), type1=checks.to_dict(orient="records"),
              n_for_target={s.name: result.n_for_power(target_power, i)
                            for i, s in enumerate(result.scenarios) if not s.is_null})
report.write()
display(report.results)
