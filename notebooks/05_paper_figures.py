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
# # 05 Paper figures
#
# The publication figures and Table 1, built by `kanalysis.figures.build_paper_figures`: the same
# function as `make figures`, so the manuscript and this report cannot drift apart. Each figure is
# written at single- and double-column width (3.5 and 7.2 in) as PDF, SVG and 300-dpi PNG, with
# the Okabe-Ito palette and no dates or versions in the files (running twice gives identical
# bytes).
#
# The durability figure needs relapse follow-up, which the default cohort (one infusion, 14
# days) does not have: it uses `durability_cohort_path`, the maintenance design by default.
# `kanalysis run --cohort DIR` sets both to `DIR`.

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
durability_cohort_path: str = "data/synthetic/maintenance"  # cohort of the durability figure

# %% [markdown]
# Check the parameters (papermill injects them without checking), load and validate the cohort,
# and settle the privacy policy (the stricter of `privacy` and the cohort's metadata). A bad value
# stops here with a message naming the parameter.

# %%
from kanalysis.runner import setup_notebook

params, report, cohort = setup_notebook("05_paper_figures", globals())

# %%
from pathlib import Path

from IPython.display import Image, display

from kanalysis import figures
from kanalysis.runner import sha256_file

paper_dir = Path(params.output_dir) / "figures" / "paper"
written = report.apply(
    figures.build_paper_figures,
    cohort_path=params.cohort_path,
    durability_cohort_path=durability_cohort_path,
    out=paper_dir,
    formats=params.figure_formats,
    scale=params.scale,
    covariance=params.covariance,
    conf_level=1 - params.alpha,
    response_reduction=params.response_reduction,
    remission_threshold=params.remission_threshold,
    relapse_rule=params.relapse_rule,
    relapse_threshold=params.relapse_threshold,
)
report.record(
    files={path.name: sha256_file(path) for path in written},
    n_files=len(written),
)
print(f"{len(written)} files in figures/paper/ of the run folder")

# %% [markdown]
# ## The figures (double-column versions)

# %%
for name in figures.FIGURES:
    png = paper_dir / f"{name}_double.png"
    if png.exists():
        print(name)
        display(Image(filename=str(png), width=720))

# %% [markdown]
# ## Table 1

# %%
import pandas as pd

report.show(pd.read_csv(paper_dir / "table1.csv"))

# %% [markdown]
# ## Key numbers

# %%
report.finish()
