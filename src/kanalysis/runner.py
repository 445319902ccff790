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
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import importlib.metadata
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, KanalysisError
from kanalysis.tables import PRIVACY_MODES, atomic_write_text, check_privacy, write_table

__all__ = [
    "COVARIANCE_STRUCTURES",
    "DEFAULT_COHORT",
    "FIGURE_FORMATS",
    "KERNEL_NAME",
    "NOTEBOOKS",
    "NotebookExecutionError",
    "NotebookParameters",
    "NotebookReport",
    "RELAPSE_RULES",
    "RunResult",
    "declared_parameters",
    "find_notebooks",
    "kernel_command",
    "parse_cli_value",
    "project_root",
    "read_results",
    "run_notebooks",
    "sha256_file",
    "to_jsonable",
    "validate_parameters",
    "write_results_section",
]

KERNEL_NAME = "python3"
NOTEBOOKS = (
    "01_cohort_overview",
    "02_symptom_trajectories",
    "03_response_durability",
    "04_safety",
    "05_paper_figures",
    "07_power",
)
DEFAULT_COHORT = "data/synthetic/serial"
COVARIANCE_STRUCTURES = ("us", "cs", "csh", "ar1", "ar1h", "toep")
#: Relapse rules of :func:`kanalysis.durability.derive`: (a) loss of response, (b) score threshold,
#: (c) clinical events, by letter or name; combine with "+" (``"b+c"`` is SUSTAIN-1's definition).
RELAPSE_RULES = (
    "a",
    "b",
    "c",
    "loss_of_response",
    "threshold",
    "clinical_event",
    "clinical_events",
)
FIGURE_FORMATS = ("pdf", "svg", "png")
RESULTS_SCHEMA_VERSION = "1.0"
MANIFEST_SCHEMA_VERSION = "1.0"

_PACKAGES = (
    "kanalysis",
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "lifelines",
    "formulaic",
    "matplotlib",
    "seaborn",
    "papermill",
    "jupytext",
    "nbconvert",
    "nbclient",
    "ipykernel",
    "jupyter_client",
)


class NotebookExecutionError(KanalysisError, RuntimeError):
    """A notebook cell raised; the partially executed notebook is kept at ``output_path``.

    Attributes
    ----------
    notebook : str
        Notebook name.
    cell_index : int
        Index of the failing cell in the executed notebook.
    ename, evalue : str
        Exception name and message raised in the cell.
    output_path : pathlib.Path
        The partially executed notebook.
    """

    def __init__(
        self,
        notebook: str,
        cell_index: int,
        ename: str,
        evalue: str,
        output_path: Path,
        source: str = "",
    ):
        self.notebook = notebook
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.output_path = output_path
        first_line = next((ln for ln in source.splitlines() if ln.strip()), "")
        where = f" ({first_line.strip()[:60]!r})" if first_line else ""
        cell = f"in cell {cell_index}" if cell_index >= 0 else "(kernel failure)"
        super().__init__(
            f"Notebook {notebook!r} failed {cell}{where}: {ename}: {evalue}\n"
            f"The partially executed notebook is at {output_path}."
        )


# --------------------------------------------------------------------------------------------
# Paths and discovery
# --------------------------------------------------------------------------------------------
def project_root() -> Path:
    """The repository root: the folder holding ``notebooks/`` above the package, else the cwd."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "notebooks").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def find_notebooks(
    names: Iterable[str] | None = None, notebook_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Resolve notebook names to ``.py`` sources, in run order.

    ``names`` may be full stems (``01_cohort_overview``), their number (``01``) or topic
    (``cohort_overview``). None means every notebook in the folder.
    """
    folder = Path(notebook_dir) if notebook_dir is not None else project_root() / "notebooks"
    available = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if not available:
        raise ConfigurationError(f"No notebooks (*.py) found in {folder}.")
    if names is None:
        return available
    chosen: list[Path] = []
    for name in names:
        name = name.strip().removesuffix(".py")
        if not name:
            continue
        hits = [p for p in available if p.stem == name]
        if not hits:
            hits = [
                p
                for p in available
                if p.stem.split("_", 1)[0] == name or p.stem.split("_", 1)[-1] == name
            ]
        if len(hits) != 1:
            raise ConfigurationError(
                f"Notebook {name!r} is not one of {[p.stem for p in available]}; pass a name, its "
                "number (e.g. '01') or its topic (e.g. 'cohort_overview')."
            )
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return sorted(chosen)


def kernel_command(kernel_name: str = KERNEL_NAME) -> list[str]:
    """The command line jupyter_client would start for ``kernel_name``.

    For ``python3`` it must start the interpreter running kanalysis (``sys.executable``), so that
    notebooks see the project's environment; :func:`run_notebooks` checks this before running.
    """
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name=kernel_name)
    return list(manager.format_kernel_cmd())


def _check_kernel(kernel_name: str) -> None:
    try:
        cmd = kernel_command(kernel_name)
    except Exception as exc:  # jupyter_client raises NoSuchKernel, a KeyError subclass
        raise ConfigurationError(
            f"Jupyter kernel {kernel_name!r} was not found ({exc}). Install ipykernel in this "
            "environment (`pip install -e .`) or pass an installed kernel name."
        ) from exc
    if kernel_name == KERNEL_NAME:
        exe = Path(cmd[0])
        if exe.resolve() != Path(sys.executable).resolve() and exe != Path(sys.executable):
            raise ConfigurationError(
                f"The 'python3' kernel starts {cmd[0]}, not this environment's interpreter "
                f"{sys.executable}; a kernelspec elsewhere shadows it. Check `jupyter kernelspec "
                "list` and remove the stale 'python3' spec, or run from the project's venv."
            )


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterSpec:
    """One name declared in a notebook's ``parameters`` cell."""

    name: str
    type: str
    default: Any
    help: str


def _parameters_source(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return cell.source
    raise ConfigurationError("The notebook has no cell tagged 'parameters'.")


def declared_parameters(path: str | os.PathLike[str]) -> dict[str, ParameterSpec]:
    """Names, types, literal defaults and help comments of a notebook's ``parameters`` cell.

    Raises
    ------
    ConfigurationError
        If the cell is missing or holds anything but ``name: type = literal  # help`` lines.
    """
    import jupytext

    nb = jupytext.read(path)
    source = _parameters_source(nb)
    lines = source.splitlines()
    specs: dict[str, ParameterSpec] = {}
    for node in ast.parse(source).body:
        # `name: type = value  # help`, or papermill's `name = value  # type: T help` (used for
        # Optional types, whose annotation would need an import in the cell).
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, value, type_name = node.target.id, node.value, ast.unparse(node.annotation)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name, value, type_name = node.targets[0].id, node.value, ""
        else:
            raise ConfigurationError(
                f"{Path(path).name}: the parameters cell may hold only literal assignments "
                f"(`name: type = value  # help`); line {node.lineno} is not one."
            )
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError as exc:
            raise ConfigurationError(
                f"{Path(path).name}: parameter {name!r} must have a literal default "
                "(papermill does not recompute derived values)."
            ) from exc
        line = lines[node.lineno - 1]
        help_text = line.split("#", 1)[1].strip() if "#" in line else ""
        if help_text.startswith("type:"):
            parts = help_text[len("type:") :].split(None, 1)
            type_name = parts[0] if parts else ""
            help_text = parts[1].strip() if len(parts) > 1 else ""
        specs[name] = ParameterSpec(name=name, type=type_name, default=default, help=help_text)
    return specs


@dataclass(frozen=True)
class NotebookParameters:
    """Validated notebook parameters (see :func:`validate_parameters`)."""

    cohort_path: str = DEFAULT_COHORT
    scale: str | None = None
    response_reduction: float = 0.5
    remission_threshold: float | None = None
    relapse_rule: str = "loss_of_response"
    relapse_threshold: float | None = None
    alpha: float = 0.05
    covariance: str = "us"
    output_dir: str = "reports/notebooks"
    figure_formats: tuple[str, ...] = FIGURE_FORMATS
    privacy: str = "none"
    min_cell_count: int = 11
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        out["figure_formats"] = ",".join(self.figure_formats)
        out.update(extra)
        return out


def _number(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(
            f"Parameter `{name}` must be a number{' or None' if allow_none else ''}, but "
            f"{value!r} ({type(value).__name__}) was passed."
        )
    if not math.isfinite(float(value)):
        raise ConfigurationError(f"Parameter `{name}` must be finite, but {value!r} was passed.")
    return float(value)


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ConfigurationError(
            f"The value for parameter `{name}` must be one of {list(options)}, but {value!r} was "
            "passed."
        )
    return value


def validate_parameters(
    *,
    cohort_path: str = DEFAULT_COHORT,
    scale: str | None = None,
    response_reduction: float = 0.5,
    remission_threshold: float | None = None,
    relapse_rule: str = "loss_of_response",
    relapse_threshold: float | None = None,
    alpha: float = 0.05,
    covariance: str = "us",
    output_dir: str = "reports/notebooks",
    figure_formats: str | Sequence[str] = FIGURE_FORMATS,
    privacy: str = "none",
    min_cell_count: int = 11,
    check_paths: bool = True,
    **extra: Any,
) -> NotebookParameters:
    """Check notebook parameters and return them typed; raise a clear error for any bad value.

    Papermill injects parameters without checking them, so every notebook calls this in the cell
    after its ``parameters`` cell.

    Parameters
    ----------
    cohort_path : str
        Cohort folder (``kanalysis.load_cohort``); must exist. A relative path is taken from the
        working directory, else from the repository root (JupyterLab runs kernels in
        ``notebooks/``).
    scale : str or None
        Outcome scale registered in :mod:`kanalysis.scales`; None means the cohort's primary scale.
    response_reduction : float
        Fraction of the baseline score lost for response, in (0, 1] (0.5: >= 50% reduction).
    remission_threshold : float or None
        Remission cut-off within the scale's range; None means the scale's default.
    relapse_rule : str
        ``"a"``/``"loss_of_response"``, ``"b"``/``"threshold"``, ``"c"``/``"clinical_events"`` or a
        ``"+"`` combination such as ``"b+c"`` (see :func:`kanalysis.durability.derive`).
    relapse_threshold : float or None
        Score cut-off for the ``threshold`` rule, within the scale's range (None: rule default).
    alpha : float
        Significance level in (0, 0.5]; confidence intervals are (1 - alpha).
    covariance : {"us", "cs", "csh", "ar1", "ar1h", "toep"}
        MMRM within-subject covariance structure.
    output_dir : str
        Folder receiving figures, tables and results.json; a relative path is taken from the
        repository root.
    figure_formats : str or sequence of str
        Comma-separated (``"pdf,svg,png"``) or a list; each of pdf, svg, png.
    privacy : {"none", "strict"}
        ``"strict"``: no row-level records shown, counts below ``min_cell_count`` suppressed.
    min_cell_count : int
        Smallest count shown in strict mode (default 11).
    check_paths : bool
        Check that ``cohort_path`` exists.
    **extra
        Notebook-specific parameters, passed through unchecked.

    Returns
    -------
    NotebookParameters

    Raises
    ------
    ConfigurationError
        Naming the parameter, the value passed and what is allowed.
    """
    from kanalysis.scales import get_scale, list_scales

    if not isinstance(cohort_path, (str, os.PathLike)) or not str(cohort_path):
        raise ConfigurationError(
            f"Parameter `cohort_path` must be a folder path, but {cohort_path!r} was passed."
        )
    cohort_path = _resolve_from_root(cohort_path)
    if check_paths and not Path(cohort_path).is_dir():
        raise ConfigurationError(
            f"Parameter `cohort_path`: the cohort folder {str(cohort_path)!r} does not exist "
            f"(working directory {Path.cwd()}). Pass an existing cohort folder, e.g. "
            f"{DEFAULT_COHORT!r}."
        )
    scale_obj = None
    if scale is not None:
        if scale not in list_scales():
            raise ConfigurationError(
                f"Parameter `scale`: unknown scale {scale!r}; registered scales are "
                f"{sorted(list_scales())} (add one with kanalysis.register_scale)."
            )
        scale_obj = get_scale(scale)
    reduction = _number("response_reduction", response_reduction)
    if not 0 < reduction <= 1:
        raise ConfigurationError(
            f"Parameter `response_reduction` must be in (0, 1] (0.5 = a 50% reduction), but "
            f"{response_reduction!r} was passed."
        )
    thresholds = {
        "remission_threshold": _number("remission_threshold", remission_threshold, allow_none=True),
        "relapse_threshold": _number("relapse_threshold", relapse_threshold, allow_none=True),
    }
    for name, value in thresholds.items():
        if value is None:
            continue
        if scale_obj is not None and not scale_obj.min <= value <= scale_obj.max:
            raise ConfigurationError(
                f"Parameter `{name}` = {value:g} is outside the {scale_obj.name} range "
                f"[{scale_obj.min:g}, {scale_obj.max:g}]."
            )
        if value < 0:
            raise ConfigurationError(f"Parameter `{name}` must be >= 0, but {value:g} was passed.")
    parts = relapse_rule.split("+") if isinstance(relapse_rule, str) else [relapse_rule]
    for part in parts:
        if part.strip() not in RELAPSE_RULES:
            raise ConfigurationError(
                f"The value for parameter `relapse_rule` must be one of {list(RELAPSE_RULES)} or "
                f"a '+' combination (e.g. 'b+c'), but {relapse_rule!r} was passed."
            )
    a = _number("alpha", alpha)
    if not 0 < a <= 0.5:
        raise ConfigurationError(
            f"Parameter `alpha` must be in (0, 0.5], but {alpha!r} was passed."
        )
    _choice("covariance", covariance, COVARIANCE_STRUCTURES)
    if not isinstance(output_dir, (str, os.PathLike)) or not str(output_dir):
        raise ConfigurationError(
            f"Parameter `output_dir` must be a folder path, but {output_dir!r} was passed."
        )
    if not Path(output_dir).is_absolute():
        # Relative to the repository root, wherever the kernel runs (JupyterLab starts it in
        # notebooks/), so that outputs always land in the git-ignored reports/ folder.
        output_dir = str(project_root() / output_dir)
    if isinstance(figure_formats, str):
        formats = tuple(
            f.strip().lower().lstrip(".") for f in figure_formats.split(",") if f.strip()
        )
    else:
        formats = tuple(str(f).lower().lstrip(".") for f in figure_formats)
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad or not formats:
        raise ConfigurationError(
            f"Parameter `figure_formats` must list formats among {list(FIGURE_FORMATS)} "
            f"(comma-separated), but {figure_formats!r} was passed."
        )
    if privacy not in PRIVACY_MODES:
        raise ConfigurationError(
            f"The value for parameter `privacy` must be one of {list(PRIVACY_MODES)}, but "
            f"{privacy!r} was passed."
        )
    if isinstance(min_cell_count, float) and float(min_cell_count).is_integer():
        min_cell_count = int(min_cell_count)
    try:
        check_privacy(privacy, min_cell_count)
    except ConfigurationError as exc:
        raise ConfigurationError(f"Parameter `min_cell_count`: {exc}") from exc
    return NotebookParameters(
        cohort_path=str(cohort_path),
        scale=scale,
        response_reduction=reduction,
        remission_threshold=thresholds["remission_threshold"],
        relapse_rule=relapse_rule,
        relapse_threshold=thresholds["relapse_threshold"],
        alpha=a,
        covariance=covariance,
        output_dir=str(output_dir),
        figure_formats=formats,
        privacy=privacy,
        min_cell_count=int(min_cell_count),
        extra=dict(extra),
    )



#: Parameters every notebook declares, in the order of :func:`validate_parameters`.
COMMON_PARAMETERS: tuple[str, ...] = tuple(
    name
    for name, p in inspect.signature(validate_parameters).parameters.items()
    if p.kind is p.KEYWORD_ONLY and name != "check_paths"
)


def notebook_parameters(namespace: Mapping[str, Any]) -> NotebookParameters:
    """Validate the common notebook parameters found in a notebook's namespace.

    Every notebook declares the same common parameters in its ``parameters`` cell; it calls
    ``notebook_parameters(globals())`` in the next cell instead of naming each one again.

    Raises
    ------
    ConfigurationError
        If a common parameter is not defined in ``namespace`` (a parameters cell that lost one),
        or if any value is invalid (see :func:`validate_parameters`).
    """
    missing = [name for name in COMMON_PARAMETERS if name not in namespace]
    if missing:
        raise ConfigurationError(
            f"The notebook's parameters cell does not define {', '.join(missing)}; every notebook "
            f"declares the common parameters {', '.join(COMMON_PARAMETERS)}."
        )
    return validate_parameters(**{name: namespace[name] for name in COMMON_PARAMETERS})

def _resolve_from_root(path: str | os.PathLike[str]) -> str:
    """A relative path that does not exist from the cwd but does from the repository root."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return str(path)
    from_root = project_root() / candidate
    return str(from_root) if from_root.exists() else str(path)


def _primary_scale_of(cohort_path: str | os.PathLike[str]) -> str | None:
    """``primary_scale`` from a cohort folder's metadata.json, or None."""
    path = Path(cohort_path) / "metadata.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("primary_scale")
    except (OSError, ValueError, AttributeError):
        return None


def parse_cli_value(text: str) -> Any:
    """Type a ``-p NAME VALUE`` string as papermill does: True/False/None, int, float, else str."""
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text in ("None", "none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


# --------------------------------------------------------------------------------------------
# JSON results
# --------------------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Convert numpy / pandas values to plain JSON types; NaN and infinities become None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, np.ndarray)):
        return [to_jsonable(v) for v in (sorted(obj, key=str) if isinstance(obj, set) else obj)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        return obj
    return str(obj)


def _dump_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def read_results(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``results.json`` from a run or output folder ({} when absent)."""
    path = Path(output_dir) / "results.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_results_section(
    output_dir: str | os.PathLike[str], section: str, values: Mapping[str, Any]
) -> Path:
    """Replace one notebook's section of ``output_dir/results.json`` (atomic read-modify-write)."""
    results = read_results(output_dir)
    results["schema_version"] = RESULTS_SCHEMA_VERSION
    results[section] = to_jsonable(values)
    return atomic_write_text(Path(output_dir) / "results.json", _dump_json(results))


# --------------------------------------------------------------------------------------------
# The object notebooks use
# --------------------------------------------------------------------------------------------
class NotebookReport:
    """What a notebook needs to load its cohort and write figures, tables and results.

    Parameters
    ----------
    name : str
        Notebook name; the section of ``results.json`` and the prefix of its files.
    params : NotebookParameters
        From :func:`validate_parameters`.

    Notes
    -----
    The privacy mode in force is the stricter of the ``privacy`` parameter and the cohort's
    ``metadata["privacy"]``: real data imported as ``strict`` stays strict even when a notebook is
    run with the default ``privacy="none"``.
    """

    def __init__(self, name: str, params: NotebookParameters):
        self.name = name
        self.params = params
        self.output_dir = Path(params.output_dir)
        self.figures_dir = self.output_dir / "figures"
        self.tables_dir = self.output_dir / "tables"
        self.privacy = params.privacy
        self.results: dict[str, Any] = {}
        self.cohort = None

    @property
    def strict(self) -> bool:
        return self.privacy == "strict"

    def load_cohort(self):
        """Load (and validate) the cohort; escalate to strict privacy if its metadata asks."""
        from kanalysis import load_cohort

        self.cohort = load_cohort(self.params.cohort_path)
        if (self.cohort.metadata or {}).get("privacy") == "strict":
            self.privacy = "strict"
        if self.params.scale is None:
            # Thresholds could not be range-checked before the cohort named its primary scale.
            p = self.params
            validate_parameters(
                cohort_path=p.cohort_path,
                scale=self.cohort.primary_scale,
                remission_threshold=p.remission_threshold,
                relapse_threshold=p.relapse_threshold,
                check_paths=False,
            )
        self.results["privacy"] = self.privacy
        self.results["scale"] = self.scale
        return self.cohort

    @property
    def scale(self) -> str:
        """The outcome scale: the parameter, else the cohort's primary scale."""
        if self.params.scale is not None:
            return self.params.scale
        if self.cohort is None:
            raise ConfigurationError("Call load_cohort() before asking for the cohort's scale.")
        return self.cohort.primary_scale

    def save_figure(self, fig, name: str, **kwargs: Any) -> list[Path]:
        """Save ``fig`` as ``figures/<notebook>_<name>.<fmt>`` in the requested formats."""
        from kanalysis.plots.style import save_figure

        return save_figure(
            fig,
            self.figures_dir / f"{self.name}_{name}",
            formats=self.params.figure_formats,
            **kwargs,
        )

    def save_table(self, table: pd.DataFrame, name: str, **kwargs: Any) -> list[Path]:
        """Save ``table`` as ``tables/<notebook>_<name>.csv`` and ``.tex``."""
        return write_table(table, self.tables_dir / f"{self.name}_{name}", **kwargs)

    def record(self, **values: Any) -> None:
        """Add key numbers to this notebook's section of ``results.json`` (written by ``write``)."""
        self.results.update(values)

    def write(self) -> Path:
        """Write this notebook's section of ``results.json``."""
        return write_results_section(self.output_dir, self.name, self.results)

    def count(self, n: int | float) -> int | str:
        """A count for results or annotations: as is, or ``"<min_cell_count"`` when small in strict
        mode (:func:`kanalysis.privacy.format_count`)."""
        if not self.strict:
            return int(n)
        from kanalysis.privacy import format_count

        return format_count(n, self.params.min_cell_count)

    def display_table(self, table: pd.DataFrame, id_columns: Sequence[str] = ("subject_id",)):
        """Return ``table`` for display, refusing row-level records in strict mode.

        A table holding a subject identifier column is row-level data; in strict mode it is
        replaced by its shape so that nothing identifying reaches the executed notebook.
        """
        if self.strict and any(c in table.columns for c in id_columns):
            return pd.DataFrame(
                {
                    "rows": [len(table)],
                    "columns": [table.shape[1]],
                    "note": ["row-level records are not shown (privacy='strict')"],
                }
            )
        return table


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_tree(folder: Path, base: Path, skip: Iterable[str] = ()) -> dict[str, str]:
    skip = set(skip)
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        if rel in skip or path.name.startswith("."):
            continue
        out[rel] = sha256_file(path)
    return out


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None  # type: ignore[assignment]
    return versions


def _git_state(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=20, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


@dataclass
class RunResult:
    """Outcome of :func:`run_notebooks`."""

    run_id: str
    run_dir: Path
    notebooks: list[dict[str, Any]]
    manifest_path: Path
    results_path: Path
    ok: bool

    @property
    def results(self) -> dict[str, Any]:
        return read_results(self.run_dir)


def _default_run_id() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _export_html(nb_path: Path, html_path: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    atomic_write_text(html_path, body)


def run_notebooks(
    notebooks: Iterable[str] | None = None,
    *,
    cohort: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    privacy: str | None = None,
    out: str | os.PathLike[str] = "reports",
    run_id: str | None = None,
    notebook_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    kernel_name: str = KERNEL_NAME,
    progress: bool = True,
    html: bool = True,
    execution_timeout: int | None = 1800,
    raise_on_error: bool = True,
) -> RunResult:
    """Execute notebooks with papermill and write ``out/<run-id>/`` (see the module docstring).

    Parameters
    ----------
    notebooks : iterable of str, optional
        Names, numbers or topics (see :func:`find_notebooks`); None runs them all in order.
    cohort : path, optional
        Cohort folder, passed as ``cohort_path`` and every other ``*_cohort_path`` parameter not
        given in ``parameters`` (default: each notebook's default cohort).
    parameters : mapping, optional
        Other notebook parameters (``-p NAME VALUE`` on the command line). Names no notebook
        declares are an error.
    privacy : {"none", "strict"}, optional
        Shortcut for ``parameters["privacy"]``.
    out : path, default "reports"
        Parent folder of the run folder; keep it out of git.
    run_id : str, optional
        Name of the run folder; default a UTC timestamp. Pass one for a deterministic path. An
        existing non-empty run folder is an error.
    notebook_dir, cwd : path, optional
        Notebook folder and the kernel's working directory; default ``notebooks/`` and the
        repository root, so that relative paths in parameters resolve from the root.
    kernel_name : str, default "python3"
        Must resolve to this interpreter (checked).
    progress : bool
        Show a progress bar per notebook (cells) labelled with the notebook.
    html : bool
        Export each executed notebook to HTML.
    execution_timeout : int or None
        Seconds allowed per cell.
    raise_on_error : bool
        Raise :class:`NotebookExecutionError` after writing the manifest when a cell fails.

    Returns
    -------
    RunResult
    """
    import jupytext
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    sources = find_notebooks(notebooks, notebook_dir)
    root = Path(cwd) if cwd is not None else project_root()
    params: dict[str, Any] = dict(parameters or {})
    if cohort is not None:
        params["cohort_path"] = str(Path(cohort).resolve())
    if privacy is not None:
        params["privacy"] = privacy
    run_id = run_id or _default_run_id()
    if not run_id or any(s in run_id for s in ("/", "\\", "..")):
        raise ConfigurationError(
            f"`run_id` must be a plain folder name, but {run_id!r} was passed."
        )
    run_dir = (Path(out) / run_id).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigurationError(
            f"The run folder {run_dir} already exists and is not empty; pass another --run-id or "
            "remove it."
        )
    params["output_dir"] = str(run_dir)

    declared = {p.stem: declared_parameters(p) for p in sources}
    known = set().union(*(set(d) for d in declared.values()))
    if cohort is not None:
        # --cohort sets every cohort parameter (e.g. the paper notebook's durability cohort)
        # that was not given explicitly, so that a run never mixes cohorts by accident.
        for name in sorted(known):
            if name.endswith("cohort_path") and name not in (parameters or {}):
                params[name] = params["cohort_path"]
    unknown = sorted(set(params) - known - {"output_dir"})  # output_dir is the runner's own
    if unknown:
        raise ConfigurationError(
            f"Unknown notebook parameter(s) {unknown}; the notebooks declare {sorted(known)}."
        )
    # Validate up front (with the cohort path resolved from the kernel's cwd) so that a bad value
    # fails before any kernel starts; notebooks validate again for interactive use.
    effective: dict[str, dict[str, Any]] = {}
    for name, specs in declared.items():
        values = {n: spec.default for n, spec in specs.items()}
        values.update({k: v for k, v in params.items() if k in specs})
        for key, value in values.items():
            if key.endswith("cohort_path") and value is not None and not Path(value).is_absolute():
                values[key] = str(root / value)
        checked = dict(values)
        if checked.get("scale") is None and checked.get("cohort_path"):
            # Range-check thresholds against the scale the notebook will use.
            checked["scale"] = _primary_scale_of(checked["cohort_path"])
        try:
            validate_parameters(**checked)
        except ConfigurationError as exc:
            raise ConfigurationError(f"Notebook {name!r}: {exc}") from exc
        effective[name] = values
    _check_kernel(kernel_name)

    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    failure: NotebookExecutionError | None = None
    for i, src in enumerate(sources, start=1):
        name = src.stem
        nb = jupytext.read(src)
        nb.metadata["kernelspec"] = {
            "name": kernel_name,
            "display_name": "Python 3 (kanalysis)",
            "language": "python",
        }
        nb_params = {k: v for k, v in params.items() if k in declared[name]}
        final = run_dir / "notebooks" / f"{name}.ipynb"
        partial = final.with_name(f".{name}.partial.ipynb")
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "name": name,
            "source": _relative(src, root),
            "parameters": to_jsonable(nb_params),
        }
        try:
            pm.execute_notebook(
                nb,
                str(partial),
                parameters=nb_params,
                kernel_name=kernel_name,
                cwd=str(root),
                progress_bar={"desc": f"[{i}/{len(sources)}] {name}", "unit": "cell"}
                if progress
                else False,
                execution_timeout=execution_timeout,
                log_output=False,
            )
            record["status"] = "completed"
        except PapermillExecutionError as exc:
            record["status"] = "failed"
            record["error"] = {
                "cell_index": exc.cell_index,
                "ename": exc.ename,
                "evalue": exc.evalue,
            }
            failure = NotebookExecutionError(
                name, exc.cell_index, exc.ename, exc.evalue, final, source=exc.source or ""
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            # The kernel died (nbclient DeadKernelError), a cell timed out (CellTimeoutError) or
            # the kernel could not start: no cell raised, so the running cell is not known.
            record["status"] = "failed"
            record["error"] = {"cell_index": None, "ename": type(exc).__name__, "evalue": str(exc)}
            failure = NotebookExecutionError(name, -1, type(exc).__name__, str(exc), final)
        finally:
            if partial.exists():
                os.replace(partial, final)
        record["duration_s"] = round(time.perf_counter() - t0, 3)
        record["executed"] = _relative(final, run_dir)
        if html and final.exists():
            html_path = run_dir / "html" / f"{name}.html"
            _export_html(final, html_path)
            record["html"] = _relative(html_path, run_dir)
        records.append(record)
        if failure is not None:
            break

    results_path = run_dir / "results.json"
    if not results_path.exists():
        atomic_write_text(results_path, _dump_json({"schema_version": RESULTS_SCHEMA_VERSION}))
    manifest_path = _write_manifest(
        run_dir,
        run_id=run_id,
        started=started,
        records=records,
        params=params,
        effective=effective,
        root=root,
        sources=sources,
        ok=failure is None,
    )
    result = RunResult(
        run_id=run_id,
        run_dir=run_dir,
        notebooks=records,
        manifest_path=manifest_path,
        results_path=results_path,
        ok=failure is None,
    )
    if failure is not None and raise_on_error:
        raise failure
    return result


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return str(path)


def _write_manifest(
    run_dir: Path,
    *,
    run_id: str,
    started: str,
    records: list[dict[str, Any]],
    params: Mapping[str, Any],
    effective: Mapping[str, Mapping[str, Any]],
    root: Path,
    sources: Sequence[Path],
    ok: bool,
) -> Path:
    inputs: dict[str, str] = {}
    cohort_dirs = sorted(
        {
            Path(value)
            for values in effective.values()
            for key, value in values.items()
            if key.endswith("cohort_path") and value is not None
        }
    )
    for cohort_dir in cohort_dirs:
        for path in sorted(p for p in cohort_dir.rglob("*") if p.is_file()):
            inputs[_relative(path, root)] = sha256_file(path)
    for src in sources:
        inputs[_relative(src, root)] = sha256_file(src)
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "run_id": run_id,
        "status": "completed" if ok else "failed",
        "started_at": started,
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "parameters": to_jsonable(params),
        "notebook_parameters": to_jsonable(effective),
        "notebooks": records,
        "inputs": inputs,
        "packages": _package_versions(),
        "platform": platform.platform(),
        "git": _git_state(root),
        "outputs": _hash_tree(run_dir, run_dir, skip={"manifest.json"}),
    }
    return atomic_write_text(run_dir / "manifest.json", _dump_json(manifest))
