"""Executing notebooks: discovery, the kernel check, papermill, the HTML export."""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanalysis._io import atomic_write_text
from kanalysis.errors import ConfigurationError, KanalysisError
from kanalysis.runner.jsonio import RESULTS_SCHEMA_VERSION, _dump_json, read_results, to_jsonable
from kanalysis.runner.manifest import _relative, _write_manifest
from kanalysis.runner.params import (
    KERNEL_NAME,
    _primary_scale_of,
    declared_parameters,
    project_root,
    validate_parameters,
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

