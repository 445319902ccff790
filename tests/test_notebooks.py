"""Every notebook executes through papermill on the bundled cohorts, and its key numbers equal
direct library calls on the same data, so a notebook cannot silently show something else."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import pytest

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
    result = runner.run_notebooks(
        [name], out=tmp_path, run_id="run", progress=False, html=True, **kwargs
    )
    assert result.ok
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
# Strict privacy
# ---------------------------------------------------------------------------------------------
SUBJECT_ID = re.compile(r"\bS\d{4}\b")


def test_strict_run_shows_no_row_level_records(tmp_path):
    result = runner.run_notebooks(
        ["01", "02", "03", "04"],
        cohort=SINGLE,
        privacy="strict",
        out=tmp_path,
        run_id="strict",
        progress=False,
    )
    run_dir = result.run_dir
    leaks = []
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in {".ipynb", ".html", ".csv", ".tex", ".json", ".svg"}:
            if SUBJECT_ID.search(path.read_text(errors="ignore")):
                leaks.append(path.name)
    assert not leaks, f"subject ids in {leaks}"
    assert not (run_dir / "figures" / "03_response_durability_swimmer.svg").exists()
    flow = (run_dir / "tables" / "01_cohort_overview_subject_flow.csv").read_text()
    assert "<11" in flow  # 1 ketamine subject dropped out: hidden
    results = result.results
    assert all(results[name]["privacy"] == "strict" for name in results if name[:2].isdigit())
