"""Every notebook executes through papermill on the bundled cohorts, and its key numbers equal
direct library calls on the same data, so a notebook cannot silently show something else."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jupytext
import pytest
from privacy_scan import scan_small_counts

import kanalysis as ka
from kanalysis import durability, outcomes, runner, safety
from kanalysis.errors import ConfigurationError

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
SINGLE = ROOT / "data" / "synthetic" / "single"
MAINTENANCE = ROOT / "data" / "synthetic" / "maintenance"


def _approx(value):
    return pytest.approx(value, rel=1e-10, abs=1e-12)


def _run(tmp_path, name, **kwargs):
    """Run one notebook with its defaults, and check its report is one people can read."""
    result = runner.run_notebooks(
        [name], out=tmp_path, run_id="run", progress=False, html=True, **kwargs
    )
    assert result.ok
    _check_readable_report(result.run_dir, tmp_path)
    manifest = json.loads(result.manifest_path.read_text())
    return result, result.results[name], manifest


# ---------------------------------------------------------------------------------------------
# Committed notebooks
# ---------------------------------------------------------------------------------------------
def test_committed_notebooks_are_py_percent_without_outputs():
    sources = sorted(NOTEBOOK_DIR.glob("*.py"))
    assert [p.stem for p in sources] == list(runner.NOTEBOOKS)
    assert not list(NOTEBOOK_DIR.glob("*.ipynb")), "executed notebooks must not be committed"
    for path in sources:
        text = path.read_text()
        assert "formats: py:percent" in text and '# %% tags=["parameters"]' in text
        nb = jupytext.read(path)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: exactly one parameters cell"
        for cell in nb.cells:
            assert not cell.get("outputs"), f"{path.name} holds outputs"


def test_notebooks_declare_the_documented_parameters():
    common = {
        "cohort_path",
        "scale",
        "response_reduction",
        "remission_threshold",
        "relapse_rule",
        "relapse_threshold",
        "alpha",
        "covariance",
        "output_dir",
        "figure_formats",
        "privacy",
        "min_cell_count",
    }
    for name in runner.NOTEBOOKS:
        specs = runner.declared_parameters(NOTEBOOK_DIR / f"{name}.py")
        assert common <= set(specs), name
        assert all(spec.help for spec in specs.values()), f"{name}: every parameter has help"
        # Defaults must pass validation (relative paths from the repository root).
        runner.validate_parameters(**{k: s.default for k, s in specs.items()})


# ---------------------------------------------------------------------------------------------
# Bad parameters
# ---------------------------------------------------------------------------------------------
def test_bad_parameter_inside_the_notebook_names_it(tmp_path):
    """Papermill only warns; the notebook's validation cell raises and the run names it."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    nb = jupytext.read(NOTEBOOK_DIR / "01_cohort_overview.py")
    with pytest.raises(PapermillExecutionError) as info:
        pm.execute_notebook(
            nb,
            str(tmp_path / "out.ipynb"),
            parameters={"scale": "MADRSX"},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(ROOT),
        )
    assert info.value.ename == "ConfigurationError"
    assert "scale" in info.value.evalue and "MADRSX" in info.value.evalue


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"remission_threshold": 99}, "remission_threshold"),
        ({"covariance": "diagonal"}, "covariance"),
        ({"cohort_path": "data/synthetic/nowhere"}, "cohort_path"),
        ({"thresold": 3}, "Unknown notebook parameter"),
    ],
)
def test_runner_rejects_bad_parameters_before_running(tmp_path, params, match):
    with pytest.raises(ConfigurationError, match=match):
        runner.run_notebooks(["02"], parameters=params, out=tmp_path, run_id="x", progress=False)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Each notebook against the library
# ---------------------------------------------------------------------------------------------
def test_01_cohort_overview(tmp_path):
    result, res, manifest = _run(tmp_path, "01_cohort_overview")
    cohort = ka.load_cohort(SINGLE)
    subjects = cohort.subjects
    assert res["n_subjects"] == len(subjects)
    assert res["n_by_arm"] == subjects["arm"].value_counts().to_dict()
    assert res["mean_age"] == _approx(subjects["age"].mean())
    baseline = outcomes.baseline_scores(cohort, "MADRS")
    assert res["mean_baseline_score"] == _approx(baseline["baseline"].mean())
    completed = subjects[subjects["disposition"] == "completed"]["arm"].value_counts()
    for arm, n in completed.items():
        assert res["subject_flow"]["completed"][arm] == n
    assert res["n_visits"] == cohort.assessments["visit_number"].nunique()
    tables = {p.name for p in (result.run_dir / "tables").iterdir()}
    assert {"01_cohort_overview_table1.csv", "01_cohort_overview_table1.tex"} <= tables
    assert (result.run_dir / "html" / "01_cohort_overview.html").stat().st_size > 10_000
    assert any(k.startswith("data/synthetic/single/") for k in manifest["inputs"])


def test_02_symptom_trajectories(tmp_path):
    from kanalysis.plots.trajectories import trajectory_data

    result, res, _ = _run(tmp_path, "02_symptom_trajectories")
    cohort = ka.load_cohort(SINGLE)
    data = trajectory_data(cohort, "MADRS")
    fit = ka.lmm(
        data, formula="score ~ log_time * C(arm)", groups="subject_id", re_formula="~ 1 + log_time"
    )
    for term, value in fit.fe_params.items():
        assert res["lmm"]["log_time"]["fixed_effects"][term] == _approx(value)
    fit_ml = ka.lmm(data, formula="score ~ log_time * C(arm)", groups="subject_id",
                    re_formula="~ 1 + log_time", reml=False)
    assert res["lmm"]["log_time"]["aic_ml"] == _approx(fit_ml.aic)
    assert fit_ml.aic != _approx(fit.aic)
    status = outcomes.responder_status(cohort, "MADRS")
    mmrm_fit = ka.mmrm(
        status,
        formula="change ~ baseline * C(visit) + C(arm) * C(visit)",
        subject="subject_id",
        visit="visit",
        covariance="us",
    )
    contrast = mmrm_fit.contrast(specs="arm", by="visit", method="pairwise")
    last = contrast[contrast["visit"] == res["mmrm"]["last_visit"]].iloc[0]
    assert res["mmrm"]["contrast_last_visit"]["estimate"] == _approx(last["estimate"])
    assert res["mmrm"]["contrast_last_visit"]["df"] == _approx(last["df"])
    assert res["mmrm"]["last_visit"] == "day14"
    run_dir = result.run_dir
    nb = json.loads((run_dir / "notebooks" / "02_symptom_trajectories.ipynb").read_text())
    # LS-means in visit order, p-values readable, full precision kept in the CSV.
    shown = "\n".join(
        "".join(o["data"]["text/html"])
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    )
    visits = ["40min", "4h", "24h", "day3", "day7", "day14"]
    lsmeans = (run_dir / "tables" / "02_symptom_trajectories_mmrm_lsmeans.csv").read_text()
    positions = [lsmeans.index(f",{v},") for v in visits]
    assert positions == sorted(positions), "LS-means not in visit order"
    assert re.search(r"<td>(<|&lt;)0\.001</td>|<td>0\.\d{3}</td>", shown)
    assert not re.search(r"\d\.\d{6}", shown), "a table shows 6 decimals"
    assert re.search(r"\d\.\d{7,}", lsmeans), "the CSV lost precision"
    figures = {p.name for p in (result.run_dir / "figures").iterdir()}
    for stem in ("spaghetti", "lsmeans"):
        for fmt in ("pdf", "svg", "png"):
            assert f"02_symptom_trajectories_{stem}.{fmt}" in figures


def test_03_response_durability(tmp_path):
    result, res, manifest = _run(tmp_path, "03_response_durability")
    cohort = ka.load_cohort(MAINTENANCE)
    table = durability.derive(
        cohort, "MADRS", relapse_rule="loss_of_response", response_reduction=0.5
    )
    assert res["n_at_risk_of_relapse"] == len(table)
    assert res["n_relapses"] == int(table["event"].sum())
    cox = durability.cox(table, "C(arm, contr.treatment('no_maintenance'))").to_frame()
    assert res["cox"][0]["hr"] == _approx(cox["hr"].iloc[0])
    assert res["cox"][0]["hr"] < 1  # maintenance protects against relapse in the design
    adjusted = durability.cox(
        table, "C(arm, contr.treatment('no_maintenance')) + baseline + age + n_failed_trials"
    ).to_frame()
    assert [r["hr"] for r in res["cox_adjusted"]] == [_approx(v) for v in adjusted["hr"]]
    km = durability.kaplan_meier(table, group="arm").median()
    for row in res["km_median"]:
        assert row["estimate"] == _approx(km.loc[row["arm"], "estimate"])
    tau = res["rmst_tau"]
    rmst = durability.rmst(table, tau=tau, group="arm")
    assert res["rmst"][-1]["estimate"] == _approx(rmst["estimate"].iloc[-1])
    assert res["logrank"]["chisq"] == _approx(durability.logrank(table, group="arm").chisq)
    status = outcomes.responder_status(cohort, "MADRS", response_reduction=0.5)
    rates = outcomes.response_rates(status, "response")
    last = rates[rates["visit"] == res["last_visit"]].set_index("arm")["rate"]
    assert res["response_rate_last_visit"] == {k: _approx(v) for k, v in last.items()}
    assert any(k.startswith("data/synthetic/maintenance/") for k in manifest["inputs"])
    assert (result.run_dir / "figures" / "03_response_durability_kaplan_meier.svg").exists()


def test_04_safety(tmp_path):
    _, res, _ = _run(tmp_path, "04_safety")
    cohort = ka.load_cohort(SINGLE)
    exc = safety.exceedances(cohort).set_index("arm")["proportion"]
    assert res["exceedance_proportion_sessions"] == {k: _approx(v) for k, v in exc.items()}
    ae = safety.ae_incidence(cohort)
    for term, arm, p in zip(ae["term"], ae["arm"], ae["proportion"], strict=True):
        assert res["ae_proportion"][f"{term}|{arm}"] == _approx(p)
    dr = safety.dissociation_response(cohort, scale="MADRS").to_frame()
    assert [r["estimate"] for r in res["dissociation_response"]] == [
        _approx(v) for v in dr["estimate"]
    ]


def test_05_paper_figures_match_make_figures(tmp_path):
    from kanalysis.figures import build_paper_figures

    result, res, _ = _run(tmp_path / "nb", "05_paper_figures")
    direct = build_paper_figures(out=tmp_path / "direct")
    assert res["n_files"] == len(direct)
    for path in direct:
        assert res["files"][path.name] == runner.sha256_file(path), path.name


# ---------------------------------------------------------------------------------------------
# Reports people read
# ---------------------------------------------------------------------------------------------
def _image_outputs(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text())
    return sum(
        1
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )


def _check_every_figure_is_displayed(run_dir: Path) -> None:
    figures = run_dir / "figures"
    for nb_path in sorted((run_dir / "notebooks").glob("*.ipynb")):
        name = nb_path.stem
        if name == "05_paper_figures":
            saved = {p.stem for p in (figures / "paper").glob("*_double.png")}
        else:
            saved = {p.stem for p in figures.glob(f"{name}_*.png")}
        assert saved, f"{name} saved no figure"
        assert _image_outputs(nb_path) == len(saved), (name, sorted(saved))


def _check_readable_report(run_dir: Path, tmp_path: Path) -> None:
    """No code in the HTML, every saved figure displayed once, readable numbers, no machine path,
    group-readable files."""
    _check_every_figure_is_displayed(run_dir)
    for html in (run_dir / "html").glob("*.html"):
        text = html.read_text()
        assert "setup_notebook" not in text and "report.publish" not in text, html.name
        assert not re.search(r"<td>-?\d+\.\d{6,}</td>", text), f"{html.name}: 6 decimals"
    index = (run_dir / "index.html").read_text()
    for nb in (run_dir / "notebooks").glob("*.ipynb"):
        assert f'href="html/{nb.stem}.html"' in index
    assert 'href="manifest.json"' in index and "Key numbers" in index
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in {".ipynb", ".html", ".json", ".csv", ".tex", ".svg"}:
            text = path.read_text(errors="ignore")
            for machine in {str(ROOT), str(tmp_path), str(Path.home())} - {"/"}:
                assert machine not in text, f"{path.relative_to(run_dir)} names {machine}"
            assert "without encryption" not in text
            assert "np.float64(" not in text, path.name
        if path.is_file():
            assert path.stat().st_mode & 0o040, f"{path.name} is not group-readable"



# ---------------------------------------------------------------------------------------------
# Strict privacy
# ---------------------------------------------------------------------------------------------
#: The notebooks that read the cohort (07 simulates trials and reads no patient data).
PATIENT_DATA_NOTEBOOKS = [name for name in runner.NOTEBOOKS if not name.startswith("07")]


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    """A maintenance-design cohort of 48 subjects: most cells are small."""
    from kanalysis import synthetic

    folder = tmp_path_factory.mktemp("small") / "cohort"
    cohort = synthetic.generate("maintenance", n_subjects=48, seed=3)
    if cohort.clinical_events is not None and cohort.clinical_events.empty:
        cohort = dataclasses.replace(cohort, clinical_events=None)  # no empty optional table
    synthetic.write(cohort, folder)
    return folder


def test_scanner_finds_small_counts(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.csv").write_text("arm,n,mean\nketamine,7,3.5\nplacebo,40,2.5\n")
    (tmp_path / "f.svg").write_text("<svg><text x='1'>ketamine (n = 4)</text></svg>")
    (tmp_path / "p.html").write_text("<table><tr><th>level</th><th>ketamine</th></tr>"
                                     "<tr><td>female</td><td>5 (20.0%)</td></tr></table>")
    (tmp_path / "results.json").write_text('{"01": {"n_by_arm": {"a": 3, "b": 50}, "x": 2.0}}')
    leaks = "\n".join(scan_small_counts(tmp_path, 11))
    for found in ("t.csv: n=7", "f.svg: n = 4", "p.html: ketamine=5 (20.0%)",
                  "results.json/01: n_by_arm=3"):
        assert found in leaks
    assert "n=40" not in leaks and "x=2.0" not in leaks


def test_cohort_metadata_makes_the_run_stricter(tmp_path, small_cohort):
    """privacy "STRICT" and min_cell_count 30 only in metadata.json: the run follows them."""
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    meta = json.loads((cohort / "metadata.json").read_text())
    meta.update(privacy="STRICT", min_cell_count=30)
    (cohort / "metadata.json").write_text(json.dumps(meta))
    # Compound symmetry: an unstructured MMRM is over-parameterised on 48 subjects.
    result = runner.run_notebooks(
        PATIENT_DATA_NOTEBOOKS, cohort=cohort, out=tmp_path / "out", run_id="meta",
        progress=False, parameters={"covariance": "cs"},
    )
    run_dir = result.run_dir
    leaks = scan_small_counts(run_dir, 30)
    assert not leaks, "\n".join(leaks[:40])
    assert not (run_dir / "figures" / "03_response_durability_swimmer.svg").exists()
    results = result.results
    assert {results[n]["min_cell_count"] for n in results if n[:2].isdigit()} == {30}
    assert "&lt;30" in (run_dir / "html" / "01_cohort_overview.html").read_text()
