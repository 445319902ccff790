"""JupyterLab as a person uses it: the settings `make lab` installs, saving without rewriting the
tracked file, and (slow) a real browser opening, running and saving notebook 02."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jupytext
import pytest

from kanalysis.runner import KERNEL_DISPLAY_NAME, KERNEL_NAME, NOTEBOOKS
from kanalysis.runner.lab import install_lab_settings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "02_symptom_trajectories"


def test_install_lab_settings_sets_the_default_viewer_and_the_kernel(tmp_path):
    overrides = install_lab_settings(tmp_path)
    settings = json.loads(overrides.read_text())
    viewers = settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["python"] == "Jupytext Notebook"
    spec = json.loads((tmp_path / "share/jupyter/kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert spec["display_name"] == KERNEL_DISPLAY_NAME
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()
    for name in NOTEBOOKS:  # the notebooks' headers name the same kernel
        meta = jupytext.read(ROOT / "notebooks" / f"{name}.py").metadata["kernelspec"]
        assert (meta["name"], meta["display_name"]) == (KERNEL_NAME, KERNEL_DISPLAY_NAME)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saving_from_jupyterlab_keeps_the_tracked_file(tmp_path, name):
    """A notebook opened and saved with what JupyterLab adds (language info, the kernel spec,
    cell metadata such as execution times and collapsed outputs) is written back byte for byte,
    by jupytext with the project's configuration (pyproject.toml [tool.jupytext])."""
    from jupytext.config import load_jupytext_config

    source = ROOT / "notebooks" / f"{name}.py"
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    nb = jupytext.read(source)
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7",
                                    "mimetype": "text/x-python"}
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME,
                                 "language": "python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for i, cell in enumerate(nb.cells):
        cell.metadata["jp-MarkdownHeadingCollapsed"] = bool(i % 2)
        if cell.cell_type == "code":
            cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
            cell.metadata["scrolled"] = True
            cell.execution_count = i
    # What jupytext's contents manager does on save: the project's config, then write.
    saved = tmp_path / f"{name}.py"
    config = load_jupytext_config(str(saved))
    assert config is not None, "pyproject.toml has no [tool.jupytext] section"
    jupytext.write(nb, saved, fmt="py:percent", config=config)
    assert saved.read_text() == source.read_text()


# ---------------------------------------------------------------------------------------------
# A real browser (make test-slow)
# ---------------------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as err:  # noqa: BLE001 - the page or server is still starting
            last = err
        else:
            if last:
                return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.mark.slow
def test_jupyterlab_opens_runs_and_saves_notebook_02_in_a_browser(tmp_path):
    pytest.importorskip("jupyterlab", reason="make test-slow installs the lab extra")
    webdriver = pytest.importorskip("selenium.webdriver", reason="make test-slow installs it")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are needed (make test-slow installs them)")

    started = time.monotonic()
    # The notebook, with its outputs sent to the test folder, in a folder JupyterLab serves.
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")  # the project's jupytext config
    source = (ROOT / "notebooks" / f"{NOTEBOOK}.py").read_text()
    out_line = 'output_dir: str = "reports/notebooks"'
    assert out_line in source
    text = source.replace(out_line, f'output_dir: str = "{tmp_path / "outputs"}"')
    (work / f"{NOTEBOOK}.py").write_text(text)

    prefix = tmp_path / "prefix"
    install_lab_settings(prefix)
    env = {
        **os.environ,
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    port, token = _free_port(), "kanalysis-test-token"
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.app_settings_dir={prefix / 'share/jupyter/lab/settings'}",
         "--ServerApp.allow_root=True"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
    )
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
              .status == 200, 90, "the JupyterLab server")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
            options.add_argument(flag)
        from selenium.webdriver.chrome.service import Service

        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(120)
        # What a double-click does: open the file with its default viewer.
        driver.get(f"{base}/lab/tree/{NOTEBOOK}.py?token={token}")
        js_state = (
            "const app = window.jupyterapp; if (!app) return null;"
            "const w = app.shell.currentWidget; if (!w || !w.context) return null;"
            "const m = w.content && w.content.model;"
            "return {label: w.title.label, ready: w.context.isReady,"
            " notebook: !!(m && m.cells), editor: !!(w.content && w.content.editor),"
            " cells: m && m.cells ? m.cells.length : 0};"
        )
        state = _wait(
            lambda: (lambda st: st if st and st["ready"] and (st["editor"] or st["cells"] > 1)
                     else None)(driver.execute_script(js_state)),
            120, "the notebook to open")
        assert state["notebook"] and not state["editor"], f"not opened as a notebook: {state}"
        assert state["label"] == f"{NOTEBOOK}.py" and state["cells"] > 5, state
        kernel = _wait(
            lambda: driver.execute_script(
                "const s = window.jupyterapp.shell.currentWidget.sessionContext;"
                "return s.session && s.session.kernel ? s.kernelDisplayName : '';"),
            120, "the kernel to start")
        assert kernel == KERNEL_DISPLAY_NAME
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        js_done = (
            "const nb = window.jupyterapp.shell.currentWidget;"
            "const k = nb.sessionContext.session.kernel;"
            "const cells = nb.content.widgets.filter(c => c.model.type === 'code');"
            "const done = cells.every(c => c.model.executionCount !== null);"
            "return done && k.status === 'idle';"
        )
        remaining = TIMEOUT_S - (time.monotonic() - started)
        _wait(lambda: driver.execute_script(js_done), max(remaining - 60, 60),
              "every cell to run", poll=2)
        errors = driver.execute_script(
            "const nb = window.jupyterapp.shell.currentWidget; const out = [];"
            "for (const c of nb.content.widgets) { if (c.model.type !== 'code') continue;"
            "  for (const o of c.model.outputs.toJSON()) {"
            "    if (o.output_type === 'error') out.push(o.ename + ': ' + o.evalue); } }"
            "return out;")
        assert not errors, errors
        images = driver.execute_script(
            "return Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output"
            " img')).filter(i => i.complete && i.naturalWidth > 0).length;")
        saved_figures = {p.stem for p in (tmp_path / "outputs" / "figures").glob("*.png")}
        assert saved_figures and images >= len(saved_figures), (images, saved_figures)
        driver.save_screenshot(str(tmp_path / "jupyterlab_02.png"))
        assert (tmp_path / "jupyterlab_02.png").stat().st_size > 10_000
        # Saving writes back the same text: outputs are not stored, the header is kept.
        driver.execute_script("window.jupyterapp.commands.execute('docmanager:save')")
        _wait(lambda: not driver.execute_script(
            "return window.jupyterapp.shell.currentWidget.context.model.dirty;"), 60, "the save")
        assert (work / f"{NOTEBOOK}.py").read_text() == text
        assert time.monotonic() - started < TIMEOUT_S
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()
