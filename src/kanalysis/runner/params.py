"""Notebook parameters: the schema every notebook declares, and its validation.

Papermill injects parameters without checking them (it only warns about unknown names), so the
runner checks every value up front, and each notebook checks again in the cell after its
``parameters`` cell (:func:`notebook_parameters`), so that JupyterLab and CI run the same checks.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kanalysis.errors import ConfigurationError
from kanalysis.models.covariance import STRUCTURES as _COVARIANCE_STRUCTURES
from kanalysis.rules import DEFAULT_MIN_CELL_COUNT, RELAPSE_RULE_NAMES, parse_relapse_rule
from kanalysis.tables import PRIVACY_MODES, check_privacy

KERNEL_NAME = "python3"
#: How JupyterLab and the executed notebooks name the project's kernel.
KERNEL_DISPLAY_NAME = "Python 3 (kanalysis)"
#: The notebooks of a full run, in order. Adding a notebook is this one line (``kanalysis run``
#: runs every ``notebooks/NN_*.py`` it finds; this list is what the tests hold the folder to).
NOTEBOOKS = (
    "01_cohort_overview",
    "02_symptom_trajectories",
    "03_response_durability",
    "04_safety",
    "05_paper_figures",
    "07_power",
)
DEFAULT_COHORT = "data/synthetic/serial"
#: MMRM covariance structures: the names of :data:`kanalysis.models.covariance.STRUCTURES`.
COVARIANCE_STRUCTURES = tuple(_COVARIANCE_STRUCTURES)
#: Accepted names of the relapse rules (:data:`kanalysis.rules.RELAPSE_RULE_NAMES`: keys and
#: aliases; combine with "+", ``"b+c"`` is SUSTAIN-1's definition).
RELAPSE_RULES = RELAPSE_RULE_NAMES
FIGURE_FORMATS = ("pdf", "svg", "png")


def project_root() -> Path:
    """The repository root: the folder holding ``notebooks/`` above the package, else the cwd."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "notebooks").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()




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
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT
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
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
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
    if not isinstance(relapse_rule, str):
        raise ConfigurationError(
            f"Parameter `relapse_rule` must be text such as 'b+c', but {relapse_rule!r} was passed."
        )
    try:
        parse_relapse_rule(relapse_rule)
    except ConfigurationError as exc:
        raise ConfigurationError(f"Parameter `relapse_rule`: {exc}") from exc
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
    output_dir = str(Path(output_dir).resolve())
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
    if not isinstance(privacy, str) or privacy.strip().lower() not in PRIVACY_MODES:
        raise ConfigurationError(
            f"The value for parameter `privacy` must be one of {list(PRIVACY_MODES)} (any case), "
            f"but {privacy!r} was passed."
        )
    privacy = privacy.strip().lower()
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

