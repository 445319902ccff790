"""Run the kanalysis notebooks with papermill and collect a reproducible report folder.

The notebooks in ``notebooks/`` are jupytext ``py:percent`` files. :func:`run_notebooks` reads each
with jupytext, validates the parameters (papermill itself only warns about unknown names), executes
it with papermill's Python API in the ``python3`` kernel of the running interpreter, and writes::

    OUT/<run-id>/
        notebooks/<name>.ipynb     executed notebooks (kept, partially executed, when a cell fails)
        html/<name>.html           nbconvert HTML export of each
        figures/, tables/          written by the notebooks (PDF/SVG/PNG; CSV + LaTeX)
        results.json               key numbers, one section per notebook
        manifest.json              parameters, input and output sha256, package versions, git commit

Notebooks call :func:`validate_parameters` in the cell after their ``parameters`` cell, and use a
:class:`NotebookReport` to load the cohort, save figures and tables, and record results, so that the
same code path runs under the runner, in CI and in JupyterLab.

The package is split by concern: :mod:`~kanalysis.runner.params` (the parameter schema and its
validation), :mod:`~kanalysis.runner.report` (what a notebook uses), :mod:`~kanalysis.runner.execute`
(papermill and the HTML export), :mod:`~kanalysis.runner.manifest` and
:mod:`~kanalysis.runner.jsonio` (``results.json``). Import from ``kanalysis.runner``.
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
from kanalysis.runner.report import NotebookReport

__all__ = [
    "COMMON_PARAMETERS",
    "COVARIANCE_STRUCTURES",
    "DEFAULT_COHORT",
    "FIGURE_FORMATS",
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
