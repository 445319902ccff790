"""Run the kanalysis notebooks with papermill and collect a reproducible report folder.

The notebooks in ``notebooks/`` are jupytext ``py:percent`` files. :func:`run_notebooks` reads each
with jupytext, validates the parameters (papermill itself only warns about unknown names), executes
it with papermill's Python API in the ``python3`` kernel of the running interpreter, and writes::

    OUT/<run-id>/
        index.html                 the page to open first: cohort, parameters, key numbers, links
        notebooks/<name>.ipynb     executed notebooks (kept, partially executed, when a cell fails)
        html/<name>.html           nbconvert HTML export of each (no code cells unless with_code)
        figures/, tables/          written by the notebooks (PDF/SVG/PNG; CSV + LaTeX)
        results.json               key numbers, one section per notebook
        manifest.json              parameters, input and output sha256, package versions, git commit

Notebooks call :func:`setup_notebook` in the cell after their ``parameters`` cell (which validates
the parameters and loads the cohort), and publish through the :class:`NotebookReport` it returns,
which applies the run's privacy policy to every table, so that the same code path runs under the
runner, in CI and in JupyterLab.

The package is split by concern: :mod:`~kanalysis.runner.params` (the parameter schema and its
validation), :mod:`~kanalysis.runner.report` (what a notebook uses), :mod:`~kanalysis.runner.execute`
(papermill and the HTML export), :mod:`~kanalysis.runner.manifest` and
:mod:`~kanalysis.runner.jsonio` (``results.json``), :mod:`~kanalysis.runner.display` (tables
for reading) and :mod:`~kanalysis.runner.index` (the run's ``index.html``). Import from
``kanalysis.runner``.

Adding a notebook: put ``notebooks/NN_topic.py`` (jupytext py:percent, the common parameters cell,
then ``setup_notebook(...)``) in the folder and its name in :data:`NOTEBOOKS`; ``kanalysis run``
discovers every ``notebooks/*.py`` by itself.
"""

from __future__ import annotations

from kanalysis.runner.execute import (
    NotebookExecutionError,
    RunResult,
    find_notebooks,
    kernel_command,
    run_notebooks,
)
from kanalysis.runner.jsonio import (
    RESULTS_SCHEMA_VERSION,
    read_results,
    to_jsonable,
    write_results_section,
)
from kanalysis.runner.manifest import MANIFEST_SCHEMA_VERSION, sha256_file
from kanalysis.runner.params import (
    COMMON_PARAMETERS,
    COVARIANCE_STRUCTURES,
    DEFAULT_COHORT,
    FIGURE_FORMATS,
    KERNEL_DISPLAY_NAME,
    KERNEL_NAME,
    NOTEBOOKS,
    RELAPSE_RULES,
    NotebookParameters,
    ParameterSpec,
    _resolve_from_root,  # noqa: F401  (kanalysis.figures uses it)
    declared_parameters,
    notebook_parameters,
    parse_cli_value,
    project_root,
    validate_parameters,
)
from kanalysis.runner.report import NotebookReport, setup_notebook

__all__ = [
    "COMMON_PARAMETERS",
    "COVARIANCE_STRUCTURES",
    "DEFAULT_COHORT",
    "FIGURE_FORMATS",
    "KERNEL_DISPLAY_NAME",
    "KERNEL_NAME",
    "MANIFEST_SCHEMA_VERSION",
    "NOTEBOOKS",
    "NotebookExecutionError",
    "NotebookParameters",
    "NotebookReport",
    "ParameterSpec",
    "RELAPSE_RULES",
    "RESULTS_SCHEMA_VERSION",
    "RunResult",
    "setup_notebook",
    "declared_parameters",
    "find_notebooks",
    "kernel_command",
    "notebook_parameters",
    "parse_cli_value",
    "project_root",
    "read_results",
    "run_notebooks",
    "sha256_file",
    "to_jsonable",
    "validate_parameters",
    "write_results_section",
]
