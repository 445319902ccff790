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
    KERNEL_DISPLAY_NAME,
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


def _export_html(nb_path: Path, html_path: Path, *, with_code: bool = False) -> None:
    """Export an executed notebook to HTML; without the code cells unless ``with_code``."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    exporter = HTMLExporter()
    if not with_code:
        exporter.exclude_input = True
        exporter.exclude_input_prompt = True
        exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    atomic_write_text(html_path, body)


def _kernel_manager_class(socket_dir: Path):
    """A kernel manager talking to the kernel over local IPC sockets in ``socket_dir``.

    Over TCP without CurveZMQ keys ipykernel warns that traffic is unencrypted; IPC sockets are
    files readable only by the user, so there is nothing to warn about.
    """
    from jupyter_client.manager import AsyncKernelManager

    class _IPCKernelManager(AsyncKernelManager):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(socket_dir / "kernel"))
            super().__init__(*args, **kwargs)

    return _IPCKernelManager


def _inside(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def _injected_path(path: str | os.PathLike[str], root: Path) -> str:
    """A path as passed to the kernel (which runs in ``root``): relative inside the repository,
    else absolute."""
    p = Path(path).resolve()
    return p.relative_to(root.resolve()).as_posix() if _inside(p, root) else str(p)


def _shown_path(path: str | os.PathLike[str], root: Path, run_dir: Path) -> str:
    """A path as written into outputs, never absolute: relative to the repository root when
    inside it, else relative to the run folder."""
    p = Path(path).resolve()
    if _inside(p, root):
        return p.relative_to(root.resolve()).as_posix()
    return Path(os.path.relpath(p, run_dir.resolve())).as_posix()


def _check_run_folder(run_dir: Path, inputs: Iterable[Path]) -> None:
    """Refuse a run folder that exists and is not empty, or that is, holds or lies in an input
    (:func:`kanalysis._paths.check_output_dir`); nothing is changed."""
    from kanalysis._paths import check_output_dir

    for parent in run_dir.parents:
        if parent.exists() and not parent.is_dir():
            try:  # named as the user would type it, not as an absolute path of the machine
                shown = parent.resolve().relative_to(Path.cwd().resolve()).as_posix()
            except ValueError:
                shown = parent.name
            raise ConfigurationError(
                f"--out: {shown!r} is a file, not a folder; pass a folder (it is created if "
                "missing). Nothing was changed."
            )
    check_output_dir(run_dir, inputs=list(inputs), marker=None, what="The run folder")


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
    with_code: bool = False,
    execution_timeout: int | None = 1800,
    raise_on_error: bool = True,
) -> RunResult:
    """Execute notebooks with papermill and write ``out/<run-id>/`` (see the package docstring).

    Parameters
    ----------
    notebooks : iterable of str, optional
        Names, numbers or topics (see :func:`find_notebooks`); None runs them all in order. An
        empty selection is an error.
    cohort : path, optional
        Cohort folder, passed as ``cohort_path`` and every other ``*_cohort_path`` parameter not
        given in ``parameters`` (default: each notebook's default cohort).
    parameters : mapping, optional
        Other notebook parameters (``-p NAME VALUE`` on the command line). Names no notebook
        declares are an error.
    privacy : {"none", "strict"}, optional
        Shortcut for ``parameters["privacy"]`` (any case).
    out : path, default "reports"
        Parent folder of the run folder; keep it out of git.
    run_id : str, optional
        Name of the run folder; default a UTC timestamp. Pass one for a deterministic path. An
        existing non-empty run folder is an error, and nothing is changed.
    notebook_dir, cwd : path, optional
        Notebook folder and the kernel's working directory; default ``notebooks/`` and the
        repository root, so that relative paths in parameters resolve from the root.
    kernel_name : str, default "python3"
        Must resolve to this interpreter (checked).
    progress : bool
        Show a progress bar per notebook (cells) labelled with the notebook.
    html : bool
        Export each executed notebook to HTML, and write the run's ``index.html``.
    with_code : bool, default False
        Keep the code cells in the HTML (by default the HTML shows narrative and results only).
    execution_timeout : int or None
        Seconds allowed per cell.
    raise_on_error : bool
        Raise :class:`NotebookExecutionError` after writing the manifest when a cell fails.

    Returns
    -------
    RunResult
    """
    import tempfile

    import jupytext
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from kanalysis._paths import RUN_MARKER, write_marker
    from kanalysis.runner.index import write_index

    if notebooks is not None:
        notebooks = [n for n in (notebooks if not isinstance(notebooks, str) else [notebooks])]
        if not any(str(n).strip().removesuffix(".py") for n in notebooks):
            raise ConfigurationError(
                "No notebook selected (--notebooks was empty); pass names, numbers or topics, "
                "e.g. --notebooks 01,04, or leave it out to run every notebook."
            )
    sources = find_notebooks(notebooks, notebook_dir)
    root = Path(cwd) if cwd is not None else project_root()
    params: dict[str, Any] = dict(parameters or {})
    if cohort is not None:
        if not Path(cohort).is_dir():
            raise ConfigurationError(
                f"--cohort {cohort}: no such cohort folder (it must hold metadata.json and the "
                "tables)."
            )
        params["cohort_path"] = str(Path(cohort).resolve())
    if privacy is not None:
        params["privacy"] = privacy
    run_id = run_id or _default_run_id()
    if not run_id or any(s in run_id for s in ("/", "\\", "..")) or run_id.startswith("."):
        raise ConfigurationError(
            f"`run_id` must be a plain folder name, but {run_id!r} was passed."
        )
    out_path = Path(out).expanduser()
    if not str(out):
        raise ConfigurationError("--out is empty; pass the folder that receives the run folder.")
    run_dir = (out_path / run_id).resolve()

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
        checked["output_dir"] = str(run_dir)
        if checked.get("scale") is None and checked.get("cohort_path"):
            # Range-check thresholds against the scale the notebook will use.
            checked["scale"] = _primary_scale_of(checked["cohort_path"])
        try:
            validate_parameters(**checked)
            _check_cohort_privacy(checked)
        except ConfigurationError as exc:
            raise ConfigurationError(f"Notebook {name!r}: {exc}") from exc
        effective[name] = values
    inputs = [Path(v) for vals in effective.values() for k, v in vals.items()
              if k.endswith("cohort_path") and v is not None]
    _check_run_folder(run_dir, [*inputs, *(s.parent for s in sources)])
    _check_kernel(kernel_name)

    # Paths the kernel gets (relative inside the repository, else absolute), and the same paths
    # as every output shows them (never absolute: relative to the repository or the run folder).
    def is_path(key: str, value: Any) -> bool:
        return (key.endswith("cohort_path") or key == "output_dir") and bool(value)

    params["output_dir"] = str(run_dir)
    injected = {k: (_injected_path(v, root) if is_path(k, v) else v) for k, v in params.items()}
    shown = {k: (_shown_path(v, root, run_dir) if is_path(k, v) else v) for k, v in params.items()}
    replacements = {
        injected[k]: shown[k] for k in params if is_path(k, params[k]) and injected[k] != shown[k]
    }
    shown_effective = {
        name: {k: (_shown_path(v, root, run_dir) if is_path(k, v) else v)
               for k, v in values.items()} | {"output_dir": shown["output_dir"]}
        for name, values in effective.items()
    }

    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    try:
        (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
        write_marker(run_dir, RUN_MARKER, run_id=run_id)
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the run folder {run_dir}: {exc.strerror}.") from exc
    records: list[dict[str, Any]] = []
    failure: NotebookExecutionError | None = None
    socket_dir = Path(tempfile.mkdtemp(prefix="kanalysis-kernel-"))
    try:
        for i, src in enumerate(sources, start=1):
            name = src.stem
            nb = jupytext.read(src)
            nb.metadata["kernelspec"] = {
                "name": kernel_name,
                "display_name": KERNEL_DISPLAY_NAME,
                "language": "python",
            }
            nb_params = {
                k: v for k, v in injected.items() if k in declared[name] or k == "output_dir"
            }
            final = run_dir / "notebooks" / f"{name}.ipynb"
            partial = final.with_name(f".{name}.partial.ipynb")
            t0 = time.perf_counter()
            record: dict[str, Any] = {
                "name": name,
                "source": _shown_path(src, root, run_dir),
                "parameters": to_jsonable({k: shown[k] for k in nb_params}),
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
                    kernel_manager_class=_kernel_manager_class(socket_dir),
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
                # The kernel died (nbclient DeadKernelError), a cell timed out
                # (CellTimeoutError) or the kernel could not start: no cell raised, so the
                # running cell is not known.
                record["status"] = "failed"
                record["error"] = {
                    "cell_index": None, "ename": type(exc).__name__, "evalue": str(exc)
                }
                failure = NotebookExecutionError(name, -1, type(exc).__name__, str(exc), final)
            finally:
                if partial.exists():
                    _strip_machine_paths(partial, src, root, replacements)
                    os.replace(partial, final)
            record["duration_s"] = round(time.perf_counter() - t0, 3)
            record["executed"] = _relative(final, run_dir)
            if html and final.exists():
                html_path = run_dir / "html" / f"{name}.html"
                _export_html(final, html_path, with_code=with_code)
                record["html"] = _relative(html_path, run_dir)
            records.append(record)
            if failure is not None:
                break
    finally:
        import shutil

        shutil.rmtree(socket_dir, ignore_errors=True)

    results_path = run_dir / "results.json"
    if not results_path.exists():
        atomic_write_text(results_path, _dump_json({"schema_version": RESULTS_SCHEMA_VERSION}))
    if html:
        write_index(
            run_dir,
            run_id=run_id,
            records=records,
            parameters=shown,
            results=read_results(run_dir),
            ok=failure is None,
        )
    manifest_path = _write_manifest(
        run_dir,
        run_id=run_id,
        started=started,
        records=records,
        params=shown,
        effective=effective,
        shown_effective=shown_effective,
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


def _check_cohort_privacy(values: Mapping[str, Any]) -> None:
    """The cohort's metadata privacy settings are valid (the stricter of them and the parameters
    applies in the notebooks)."""
    import json

    from kanalysis.privacy import PrivacyPolicy

    path = Path(values.get("cohort_path") or "") / "metadata.json"
    if not path.is_file():
        return
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return  # load_cohort reports a broken metadata.json with its own message
    try:
        PrivacyPolicy.resolve(values.get("privacy"), values.get("min_cell_count"), metadata)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (in {path.parent.name}/metadata.json)") from exc


def _strip_machine_paths(
    nb_path: Path, source: Path, root: Path, replacements: Mapping[str, str]
) -> None:
    """Replace absolute paths in the executed notebook: papermill's input and output paths, and
    the absolute parameter values the kernel needed (in the injected cell and the metadata)."""
    import json

    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    meta = nb.get("metadata", {}).get("papermill", {})
    name = _relative(source, root)
    meta["input_path"] = name if not name.startswith("..") else source.name
    meta["output_path"] = f"notebooks/{nb_path.name.removeprefix('.').replace('.partial', '')}"
    text = json.dumps(nb, indent=1, ensure_ascii=False)
    # Longest first, so that a folder inside another is replaced whole.
    for absolute in sorted(replacements, key=len, reverse=True):
        text = text.replace(json.dumps(absolute)[1:-1], json.dumps(replacements[absolute])[1:-1])
    atomic_write_text(nb_path, text + "\n")
