"""JupyterLab as the project uses it: notebooks open as notebooks, under the project's kernel.

:func:`install_lab_settings` (run by ``make lab``, and by the browser test) puts two things into the
environment's ``share/jupyter`` folder (``sys.prefix``), never into the user's home:

- ``lab/settings/overrides.json`` from the repository's ``jupyter/lab/settings/``: jupytext's
  "Jupytext Notebook" is the default viewer of Python files, so double-clicking
  ``notebooks/02_symptom_trajectories.py`` opens it as a notebook;
- the kernel spec ``python3`` of this interpreter, displayed as "Python 3 (kanalysis)", the name
  the notebooks' jupytext headers and :func:`kanalysis.runner.run_notebooks` use.

Saving a notebook from JupyterLab rewrites only what the user changed: ``[tool.jupytext]`` in
``pyproject.toml`` keeps the header to the tracked keys (formats and kernelspec) and the cell
metadata to the tags.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from kanalysis.runner.params import KERNEL_DISPLAY_NAME, KERNEL_NAME, project_root

__all__ = ["install_kernel_spec", "install_lab_settings"]


def install_kernel_spec(prefix: str | Path = sys.prefix) -> Path:
    """Write the ``python3`` kernel spec of this interpreter under ``prefix``, displayed as
    :data:`~kanalysis.runner.params.KERNEL_DISPLAY_NAME`; return its folder."""
    folder = Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return folder


def install_lab_settings(prefix: str | Path = sys.prefix) -> Path:
    """Install the project's JupyterLab settings and kernel spec under ``prefix``; return the
    overrides file."""
    source = project_root() / "jupyter" / "lab" / "settings" / "overrides.json"
    target = Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    install_kernel_spec(prefix)
    return target


if __name__ == "__main__":  # pragma: no cover - `make lab`
    path = install_lab_settings()
    print(f"JupyterLab settings and the '{KERNEL_DISPLAY_NAME}' kernel installed in {sys.prefix}")
