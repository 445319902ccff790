"""Tests of the notebook runner: parameters, kernel, run folder layout, failures."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from kanalysis import runner
from kanalysis.errors import ConfigurationError

PARAMS_CELL = """\
# %% [markdown]
# # A tiny notebook

# %% tags=["parameters"]
cohort_path: str = "data/synthetic/single"  # cohort folder
scale = None  # type: Optional[str] outcome scale
output_dir: str = "reports/tiny"  # where outputs go
fail: bool = False  # raise in the last cell
privacy: str = "none"  # privacy mode

# %%
import sys
from kanalysis.runner import NotebookReport, validate_parameters

params = validate_parameters(cohort_path=cohort_path, scale=scale, output_dir=output_dir,
                             privacy=privacy, fail=fail)
report = NotebookReport("tiny", params)
report.record(executable=sys.executable, answer=42, ratio=0.5)
report.write()

# %%
if fail:
    raise ValueError("planned failure in the last cell")
"""


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    (folder / "01_tiny.py").write_text(PARAMS_CELL)
    return folder


def test_kernel_python3_is_this_interpreter():
    cmd = runner.kernel_command("python3")
    assert Path(cmd[0]).resolve() == Path(sys.executable).resolve()
    assert "ipykernel_launcher" in cmd


def test_declared_parameters_reads_types_defaults_and_help(tiny_dir):
    specs = runner.declared_parameters(tiny_dir / "01_tiny.py")
    assert list(specs) == ["cohort_path", "scale", "output_dir", "fail", "privacy"]
    assert specs["cohort_path"].default == "data/synthetic/single"
    assert specs["scale"].type == "Optional[str]" and specs["scale"].help == "outcome scale"
    assert specs["fail"].help == "raise in the last cell"


def test_derived_value_in_parameters_cell_is_rejected(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text('# %% tags=["parameters"]\na: int = 1\nb: int = a * 2  # derived\n')
    with pytest.raises(ConfigurationError, match="literal default"):
        runner.declared_parameters(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "MADRSX"}, "unknown scale 'MADRSX'"),
        ({"cohort_path": "no/such/folder"}, "cohort_path"),
        ({"scale": "MADRS", "remission_threshold": 75}, "remission_threshold.*outside.*0, 60"),
        ({"response_reduction": 1.5}, "response_reduction"),
        ({"alpha": 0}, "alpha"),
        ({"covariance": "banana"}, "covariance"),
        ({"privacy": "loose"}, "privacy"),
        ({"min_cell_count": 0}, "min_cell_count"),
        ({"figure_formats": "pdf,gif"}, "figure_formats"),
        ({"relapse_rule": "vibes"}, "relapse_rule"),
    ],
)
def test_validate_parameters_names_the_bad_parameter(synthetic_dir, kwargs, match):
    kwargs = {"cohort_path": str(synthetic_dir / "single"), **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        runner.validate_parameters(**kwargs)


def test_validate_parameters_types_values(synthetic_dir):
    p = runner.validate_parameters(
        cohort_path=str(synthetic_dir / "single"),
        scale="MADRS",
        remission_threshold=12,
        figure_formats="png, svg",
        min_cell_count=5.0,
    )
    assert p.remission_threshold == 12.0 and p.figure_formats == ("png", "svg")
    assert p.min_cell_count == 5 and isinstance(p.min_cell_count, int)


def test_parse_cli_value():
    assert runner.parse_cli_value("0.1") == 0.1
    assert runner.parse_cli_value("11") == 11
    assert runner.parse_cli_value("None") is None
    assert runner.parse_cli_value("MADRS") == "MADRS"


def test_find_notebooks_by_number_and_topic(tiny_dir):
    assert runner.find_notebooks(["01"], tiny_dir) == [tiny_dir / "01_tiny.py"]
    assert runner.find_notebooks(["tiny"], tiny_dir) == [tiny_dir / "01_tiny.py"]
    with pytest.raises(ConfigurationError, match="not one of"):
        runner.find_notebooks(["02"], tiny_dir)


def test_write_results_section_merges_and_converts(tmp_path):
    import numpy as np

    runner.write_results_section(tmp_path, "a", {"x": np.float64(1.5), "n": np.int64(3)})
    runner.write_results_section(tmp_path, "b", {"y": float("nan")})
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["a"] == {"n": 3, "x": 1.5} and data["b"] == {"y": None}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_run_writes_run_folder(tiny_dir, tmp_path, repo_root):
    result = runner.run_notebooks(
        None,
        notebook_dir=tiny_dir,
        out=tmp_path / "out",
        run_id="r1",
        progress=False,
        cwd=repo_root,
    )
    run_dir = tmp_path / "out" / "r1"
    assert result.ok and result.run_dir == run_dir.resolve()
    assert (run_dir / "notebooks" / "01_tiny.ipynb").is_file()
    assert (run_dir / "html" / "01_tiny.html").read_text().startswith("<!DOCTYPE html>")
    results = json.loads((run_dir / "results.json").read_text())
    # The kernel ran the project's interpreter.
    assert Path(results["tiny"]["executable"]).resolve() == Path(sys.executable).resolve()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["notebooks"][0]["status"] == "completed"
    assert "data/synthetic/single/subjects.csv" in manifest["inputs"]
    assert manifest["outputs"]["results.json"] == runner.sha256_file(run_dir / "results.json")
    assert "notebooks/01_tiny.ipynb" in manifest["outputs"]
    assert manifest["packages"]["papermill"]
    with pytest.raises(ConfigurationError, match="already exists"):
        runner.run_notebooks(
            None,
            notebook_dir=tiny_dir,
            out=tmp_path / "out",
            run_id="r1",
            progress=False,
            cwd=repo_root,
        )


def test_failing_cell_names_notebook_cell_and_error(tiny_dir, tmp_path, repo_root):
    with pytest.raises(runner.NotebookExecutionError) as info:
        runner.run_notebooks(
            None,
            notebook_dir=tiny_dir,
            parameters={"fail": True},
            out=tmp_path,
            run_id="bad",
            progress=False,
            cwd=repo_root,
        )
    err = info.value
    assert err.notebook == "01_tiny" and err.ename == "ValueError"
    assert "planned failure" in str(err) and "cell" in str(err)
    assert err.output_path.is_file()  # the partial notebook is kept
    nb = json.loads(err.output_path.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert any(s.startswith("if fail") for s in sources)
    assert "planned failure" in json.dumps(nb)
    manifest = json.loads((tmp_path / "bad" / "manifest.json").read_text())
    assert manifest["status"] == "failed"


def test_unknown_parameter_is_an_error_before_running(tiny_dir, tmp_path, repo_root):
    with pytest.raises(ConfigurationError, match="Unknown notebook parameter.*'colour'"):
        runner.run_notebooks(
            None,
            notebook_dir=tiny_dir,
            parameters={"colour": "red"},
            out=tmp_path,
            run_id="x",
            progress=False,
            cwd=repo_root,
        )
    assert not (tmp_path / "x").exists()


def test_cli_run_exit_codes(tiny_dir, tmp_path, repo_root, monkeypatch):
    from kanalysis import cli
    from kanalysis.runner import execute

    monkeypatch.setattr(
        execute,
        "find_notebooks",
        lambda names, notebook_dir=None, _f=runner.find_notebooks: _f(names, tiny_dir),
    )
    code = cli.main(
        [
            "run",
            "--out",
            str(tmp_path),
            "--run-id",
            "ok",
            "--no-progress",
            "--cohort",
            str(repo_root / "data/synthetic/single"),
        ]
    )
    assert code == 0 and (tmp_path / "ok" / "manifest.json").is_file()
    code = cli.main(
        ["run", "--out", str(tmp_path), "--run-id", "ko", "--no-progress", "-p", "fail", "True"]
    )
    assert code == 1


def test_relative_paths_resolve_from_repository_root(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(tmp_path)  # as JupyterLab, which starts kernels in notebooks/
    p = runner.validate_parameters(cohort_path="data/synthetic/single", output_dir="reports/x")
    assert Path(p.cohort_path) == repo_root / "data/synthetic/single"
    assert Path(p.output_dir) == repo_root / "reports/x"


def test_threshold_checked_against_the_cohorts_primary_scale(tiny_dir, tmp_path, repo_root):
    (tiny_dir / "01_tiny.py").write_text(
        PARAMS_CELL.replace(
            'privacy: str = "none"  # privacy mode',
            'privacy: str = "none"  # privacy mode\nremission_threshold = None  # type: float',
        )
    )
    with pytest.raises(ConfigurationError, match="remission_threshold.*MADRS"):
        runner.run_notebooks(
            None,
            notebook_dir=tiny_dir,
            parameters={"remission_threshold": 80},
            out=tmp_path,
            run_id="t",
            progress=False,
            cwd=repo_root,
        )


def test_cohort_option_sets_every_cohort_parameter(tiny_dir, tmp_path, repo_root):
    (tiny_dir / "01_tiny.py").write_text(
        PARAMS_CELL.replace(
            'privacy: str = "none"  # privacy mode',
            'privacy: str = "none"  # privacy mode\n'
            'other_cohort_path: str = "data/synthetic/clinic"  # second cohort',
        )
    )
    result = runner.run_notebooks(
        None,
        notebook_dir=tiny_dir,
        cohort=repo_root / "data/synthetic/single",
        out=tmp_path,
        run_id="c",
        progress=False,
        cwd=repo_root,
    )
    params = result.notebooks[0]["parameters"]
    assert params["other_cohort_path"] == params["cohort_path"]
    manifest = json.loads(result.manifest_path.read_text())
    assert not any("clinic" in k for k in manifest["inputs"])


def test_dead_kernel_fails_the_run_cleanly(tmp_path, repo_root):
    folder = tmp_path / "nbs"
    folder.mkdir()
    (folder / "01_dies.py").write_text(
        '# %% tags=["parameters"]\nx: int = 1  # unused\n\n# %%\nimport os\n\nos._exit(1)\n'
    )
    with pytest.raises(runner.NotebookExecutionError, match="01_dies.*kernel failure") as info:
        runner.run_notebooks(
            None,
            notebook_dir=folder,
            out=tmp_path,
            run_id="dead",
            progress=False,
            cwd=repo_root,
            html=False,
        )
    assert info.value.ename == "DeadKernelError"
    manifest = json.loads((tmp_path / "dead" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert not list((tmp_path / "dead" / "notebooks").glob(".*partial*"))


def test_notebook_parameters_reads_the_common_parameters_from_a_namespace(tmp_path):
    from kanalysis.errors import ConfigurationError
    from kanalysis.runner import COMMON_PARAMETERS, notebook_parameters

    namespace = {
        "cohort_path": "data/synthetic/single", "scale": None, "response_reduction": 0.5,
        "remission_threshold": 12, "relapse_rule": "loss_of_response", "relapse_threshold": None,
        "alpha": 0.1, "covariance": "cs", "output_dir": str(tmp_path), "figure_formats": "png",
        "privacy": "none", "min_cell_count": 11, "In": [], "unrelated": object(),
    }
    params = notebook_parameters(namespace)
    assert (params.alpha, params.covariance, params.remission_threshold) == (0.1, "cs", 12)
    assert set(COMMON_PARAMETERS) <= set(namespace)
    del namespace["covariance"]
    with pytest.raises(ConfigurationError, match="does not define covariance"):
        notebook_parameters(namespace)
    namespace["covariance"] = "banana"
    with pytest.raises(ConfigurationError, match="covariance"):
        notebook_parameters(namespace)


# --- bad input to `kanalysis run`: a clear message, a non-zero exit, nothing changed -----------
def _cli_run(monkeypatch, tiny_dir, capsys, *args):
    from kanalysis import cli
    from kanalysis.runner import execute

    monkeypatch.setattr(
        execute,
        "find_notebooks",
        lambda names, notebook_dir=None, _f=runner.find_notebooks: _f(names, tiny_dir),
    )
    code = cli.main(["run", "--no-progress", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--notebooks", ","], "No notebook selected"),
        (["--notebooks", ""], "No notebook selected"),
        (["--notebooks", "99"], "is not one of"),
        (["--notebooks", "tiny,nonesuch"], "'nonesuch' is not one of"),
        (["-p", "alpha", "banana"], "alpha"),
        (["-p", "privacy", "lenient"], "privacy"),
        (["-p", "min_cell_count", "0"], "min_cell_count"),
        (["--privacy", "loose"], "privacy"),
        (["--run-id", "../escape"], "run_id"),
        (["--cohort", "no/such/cohort"], "no such cohort folder"),
    ],
)
def test_run_rejects_bad_input(monkeypatch, tiny_dir, tmp_path, capsys, args, match):
    out = tmp_path / "out"
    code, err = _cli_run(monkeypatch, tiny_dir, capsys, "--out", str(out), "--run-id", "r",
                         *args)
    assert code != 0
    assert re.search(match, err), err
    assert not out.exists(), "a rejected run wrote something"


def test_run_out_onto_a_file_or_an_unwritable_place(monkeypatch, tiny_dir, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    code, err = _cli_run(monkeypatch, tiny_dir, capsys, "--out", str(target))
    assert code != 0 and "is a file" in err
    assert target.read_text() == "my notes"
    code, err = _cli_run(monkeypatch, tiny_dir, capsys, "--out", str(target / "sub"))
    assert code != 0 and "is a file" in err
    # given relative to the working folder, the message names the file the same way
    monkeypatch.chdir(tmp_path)
    code, err = _cli_run(monkeypatch, tiny_dir, capsys, "--out", "notes.txt/sub/run")
    assert code != 0 and "'notes.txt' is a file" in err
    assert str(tmp_path) not in err and str(tmp_path.resolve()) not in err
    # /proc refuses new folders even for root, so this holds whoever runs the tests.
    code, err = _cli_run(monkeypatch, tiny_dir, capsys, "--out", "/proc/kanalysis-test")
    assert code != 0 and ("cannot write" in err or "Cannot create" in err)


def test_run_never_replaces_an_existing_folder_or_writes_into_an_input(
    monkeypatch, tiny_dir, tmp_path, capsys, repo_root
):
    foreign = tmp_path / "out" / "r"
    foreign.mkdir(parents=True)
    (foreign / "thesis.tex").write_text("chapter 1")
    before = _tree(tmp_path / "out")
    code, err = _cli_run(monkeypatch, tiny_dir, capsys, "--out", str(tmp_path / "out"),
                         "--run-id", "r")
    assert code != 0 and "already exists" in err
    assert _tree(tmp_path / "out") == before
    # An output inside the cohort folder is refused.
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(repo_root / "data/synthetic/single", cohort)
    before = _tree(cohort)
    code, err = _cli_run(monkeypatch, tiny_dir, capsys, "--cohort", str(cohort), "--out",
                         str(cohort / "reports"))
    assert code != 0 and "input" in err
    assert _tree(cohort) == before


def test_run_folder_layout_for_readers(tiny_dir, tmp_path, repo_root):
    """index.html links every notebook, HTML has no code by default (kept with with_code), the
    run is marked as kanalysis's, files are group-readable, and no absolute path is written."""
    result = runner.run_notebooks(None, notebook_dir=tiny_dir, out=tmp_path, run_id="a",
                                  progress=False, cwd=repo_root)
    run_dir = result.run_dir
    index = (run_dir / "index.html").read_text()
    assert 'href="html/01_tiny.html"' in index and 'href="manifest.json"' in index
    assert "answer" in index and "42" in index  # the key numbers
    html = (run_dir / "html" / "01_tiny.html").read_text()
    assert "report.record" not in re.sub(r"<[^>]+>", "", html)
    assert (run_dir / ".kanalysis-run.json").is_file()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o044 == 0o044, path.name
            if path.suffix in {".json", ".html", ".ipynb"}:
                assert str(tmp_path) not in path.read_text(), path.name
    coded = runner.run_notebooks(None, notebook_dir=tiny_dir, out=tmp_path, run_id="b",
                                 progress=False, cwd=repo_root, with_code=True)
    coded_html = (coded.run_dir / "html" / "01_tiny.html").read_text()
    assert "report.record" in re.sub(r"<[^>]+>", "", coded_html)
