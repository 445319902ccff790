"""``manifest.json``: what a run used and wrote (parameters, sha256 of inputs and outputs,
package versions, git commit), so that a report can be traced and reproduced."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kanalysis._io import atomic_write_text
from kanalysis.runner.jsonio import _dump_json, to_jsonable

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



def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (through ``..`` when outside it), never absolute."""
    path, base = Path(path).resolve(), Path(base).resolve()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, base)).as_posix()


def _outside_name(path: Path, root: Path, run_dir: Path) -> str:
    """Relative to the repository when inside it, else to the run folder (never absolute)."""
    name = _relative(path, root)
    return _relative(path, run_dir) if name.startswith("..") else name


def _write_manifest(
    run_dir: Path,
    *,
    run_id: str,
    started: str,
    records: list[dict[str, Any]],
    params: Mapping[str, Any],
    effective: Mapping[str, Mapping[str, Any]],
    shown_effective: Mapping[str, Mapping[str, Any]] | None = None,
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
            inputs[_outside_name(path, root, run_dir)] = sha256_file(path)
    for src in sources:
        inputs[_outside_name(src, root, run_dir)] = sha256_file(src)
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "run_id": run_id,
        "status": "completed" if ok else "failed",
        "started_at": started,
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "parameters": to_jsonable(params),
        "notebook_parameters": to_jsonable(
            shown_effective if shown_effective is not None else effective
        ),
        "notebooks": records,
        "inputs": inputs,
        "packages": _package_versions(),
        "platform": platform.platform(),
        "git": _git_state(root),
        "outputs": _hash_tree(run_dir, run_dir, skip={"manifest.json"}),
    }
    return atomic_write_text(run_dir / "manifest.json", _dump_json(manifest))
