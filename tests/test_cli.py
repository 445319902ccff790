from __future__ import annotations

import filecmp

import pytest

from kanalysis.cli import main


@pytest.mark.parametrize("design", ["single", "serial", "maintenance", "clinic"])
def test_synth_validate_load_round_trip(design, tmp_path, capsys):
    out = tmp_path / design
    assert main(["synth", "--design", design, "--n-subjects", "30", "--seed", "3",
                 "--out", str(out)]) == 0
    assert (out / "truth.json").exists() and (out / "metadata.json").exists()
    assert main(["validate", str(out)]) == 0
    assert "valid." in capsys.readouterr().out
    import kanalysis as ka

    assert ka.load_cohort(out).n_subjects == 30


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        main(["synth", "--design", "serial", "--n-subjects", "25", "--seed", "8",
              "--out", str(tmp_path / name)])
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == errors == []


def test_validate_lists_every_problem_and_exits_non_zero(tmp_path, capsys, cohort_single):
    tables = {k: v.copy() for k, v in cohort_single.tables.items()}
    tables["assessments"].loc[3, "score"] = 61
    tables["infusions"].loc[0, "dose"] = 0
    import kanalysis as ka

    ka.Cohort(**tables).save(tmp_path / "bad")
    assert main(["validate", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "assessments.score rows 3" in err and "infusions.dose rows 0" in err
    assert main(["validate", str(tmp_path / "bad"), "--format", "markdown"]) == 1
    assert "| error | assessments | score | 3 |" in capsys.readouterr().err


def test_validate_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_summary_prints_json(capsys, synthetic_dir):
    assert main(["summary", str(synthetic_dir / "clinic")]) == 0
    assert '"subjects": 150' in capsys.readouterr().out


def test_synth_small_serial_cohort_with_no_clinical_events_is_valid(tmp_path):
    # An empty optional table (no clinical events among 10 subjects) is not an error.
    assert main(["synth", "--design", "serial", "--n-subjects", "10", "--out",
                 str(tmp_path / "s")]) == 0
    assert main(["validate", str(tmp_path / "s")]) == 0
