"""Tests for the clinic-export importer (kanalysis.importers.clinic) and `kanalysis import --mapping`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.cli import main as cli_main
from kanalysis.errors import ConfigurationError
from kanalysis.importers import import_clinic, load_mapping

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "clinic"
EXAMPLE = ROOT / "examples" / "mapping_clinic.toml"


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def clinic_copy(tmp_path) -> Path:
    """The clinic fixture copied to a temporary folder (the tests may not touch the original)."""
    target = tmp_path / "export"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture(scope="module")
def imported():
    return import_clinic(FIXTURE / "mapping.toml")


def _write_mapping(folder: Path, text: str) -> Path:
    path = folder / "mapping.toml"
    path.write_text(textwrap.dedent(text))
    return path


# --- the fixture imports cleanly ---------------------------------------------------------------------
def test_fixture_imports_to_a_valid_strict_cohort(imported, tmp_path):
    assert imported.ok, imported.to_markdown()
    folder = imported.save(tmp_path / "cohort")
    cohort = ka.load_cohort(folder)  # validates
    assert cohort.metadata["source"] == "clinic"
    assert cohort.metadata["privacy"] == "strict"
    assert cohort.metadata["primary_scale"] == "MADRS"
    assert set(cohort.assessments["scale"]) == {"MADRS", "PHQ9"}
    assert cohort.n_subjects == 24
    assert (folder / "import_report.md").exists()
    assert cli_main(["validate", str(folder)]) == 0


def test_example_mapping_and_fixture_mapping_agree(imported):
    example = import_clinic(EXAMPLE)
    assert example.ok
    for name, table in imported.cohort.tables.items():
        pd.testing.assert_frame_equal(table, example.cohort.tables[name])


def test_import_never_modifies_the_input_files(clinic_copy, tmp_path):
    before = _hashes(clinic_copy)
    mtimes = {p.name: p.stat().st_mtime_ns for p in clinic_copy.iterdir()}
    result = import_clinic(clinic_copy / "mapping.toml")
    result.save(tmp_path / "out")
    assert cli_main(["import", "--mapping", str(clinic_copy / "mapping.toml"),
                     "--out", str(tmp_path / "out2")]) == 0
    assert _hashes(clinic_copy) == before
    assert {p.name: p.stat().st_mtime_ns for p in clinic_copy.iterdir()} == mtimes
    # The report records the SHA-256 of what was read.
    shas = {f["file"]: f["sha256"] for f in result.log.files}
    assert shas["clinic_export.csv"] == before["clinic_export.csv"]


def test_every_kept_value_survives_the_round_trip(imported, tmp_path):
    """Recompute every kept value from the raw files independently and compare with the saved cohort."""
    cohort = ka.load_cohort(imported.save(tmp_path / "cohort"))
    key = dict(zip(imported.id_key["original_id"], imported.id_key["subject_id"], strict=True))
    raw = pd.read_csv(FIXTURE / "clinic_export.csv", dtype=str, keep_default_na=False)
    stamp = raw["Date"] + " " + raw["Time"]
    raw["when"] = [dt.datetime.strptime(s, "%d.%m.%Y %H:%M") for s in stamp]
    infusions = raw[raw["Record type"] == "infusion"]
    first = infusions.groupby("Patient MRN")["when"].min()

    def day(row):
        return (row["when"] - first[row["Patient MRN"]]).total_seconds() / 86400

    expected = sorted(
        (key[r["Patient MRN"]], {"PHQ-9": "PHQ9"}.get(r["Record type"], r["Record type"]),
         round(day(r), 6), float(r["Score"]))
        for _, r in raw[raw["Record type"].isin(["MADRS", "PHQ-9"])].iterrows()
    )
    got = sorted(
        (r.subject_id, r.scale, round(r.day, 6), r.score) for r in cohort.assessments.itertuples()
    )
    assert got == expected
    expected_inf = sorted((key[r["Patient MRN"]], round(day(r), 6), float(r["Dose mg/kg"]),
                           float(r["Minutes"])) for _, r in infusions.iterrows())
    got_inf = sorted((r.subject_id, round(r.day, 6), r.dose, r.duration_min)
                     for r in cohort.infusions.itertuples())
    assert got_inf == expected_inf
    vitals = raw[raw["Record type"] == "vitals"]
    expected_vit = []
    for _, r in vitals.iterrows():
        started = infusions[(infusions["Patient MRN"] == r["Patient MRN"])
                            & (infusions["when"] <= r["when"] + dt.timedelta(hours=1))]["when"].max()
        expected_vit.append((key[r["Patient MRN"]], (r["when"] - started).total_seconds() / 60,
                             float(r["SBP"]), float(r["DBP"]), float(r["HR"]),
                             float(r["CADSS"]) if r["CADSS"] else None))
    got_vit = [(r.subject_id, r.minute, r.sbp, r.dbp, r.heart_rate,
                None if pd.isna(r.cadss) else r.cadss) for r in cohort.vitals.itertuples()]
    assert sorted(got_vit, key=str) == sorted(expected_vit, key=str)
    events = raw[raw["Record type"] == "adverse event"]
    assert sorted(cohort.adverse_events["term"]) == sorted(events["AE term"])
    assert sorted(cohort.adverse_events["day"].round(6)) == sorted(round(day(r), 6) for _, r in events.iterrows())
    # 40 minutes is 0.02778 of a day: hours are kept as fractions.
    assert any(abs(d - 4 / 24) < 1e-9 for d in cohort.assessments["day"])

    patients = pd.read_excel(FIXTURE / "patients.xlsx")
    subj = cohort.subjects.set_index("subject_id")
    for _, p in patients.iterrows():
        s = subj.loc[key[p["Patient MRN"]]]
        assert s["sex"] == {"Female": "F", "Male": "M"}[p["Gender"]]
        assert s["n_failed_trials"] == p["Prior failed trials"]
        assert s["bmi"] == pytest.approx(p["BMI"])
        born, start = p["Birth date"].date(), first[p["Patient MRN"]].date()
        age = start.year - born.year - ((start.month, start.day) < (born.month, born.day))
        assert s["age"] == age
        if isinstance(p["Stopped on"], str) and p["Stopped on"]:
            stop = dt.datetime.strptime(p["Stopped on"], "%d.%m.%Y").date()
            assert s["dropout_day"] == (stop - start).days
            assert s["disposition"] == "dropped_out"
            assert s["dropout_reason"] == p["Stop reason"]
        else:
            assert s["disposition"] == "completed"


def test_identifiers_and_dates_are_dropped_and_reported(imported, tmp_path):
    folder = imported.save(tmp_path / "cohort")
    text = "\n".join(p.read_text() for p in folder.iterdir())
    raw = pd.read_csv(FIXTURE / "clinic_export.csv", dtype=str, keep_default_na=False)
    patients = pd.read_excel(FIXTURE / "patients.xlsx", dtype=str)
    secrets = (set(raw["Patient MRN"]) | set(raw["Patient name"]) | set(raw["Email"])
               | set(patients["Full name"]) | set(patients["Phone"]) | set(raw["Date"]))
    for secret in secrets:
        assert secret not in text, secret
    assert "sleeping better" not in text
    dropped = {(d["column"], d["kind"]) for d in imported.log.dropped}
    assert {("Full name", "name"), ("Phone", "phone"), ("Patient name", "name"),
            ("Email", "email"), ("Comments", "free_text")} <= dropped
    report = imported.to_markdown()
    for column in ("Full name", "Phone", "Patient name", "Email", "Comments", "Birth date"):
        assert column in report
    assert set(imported.cohort.subjects["subject_id"]) == {f"P{i:04d}" for i in range(1, 25)}


def test_cli_import_writes_report_and_id_key(tmp_path):
    out = tmp_path / "cohort"
    key = tmp_path / "secret" / "key.csv"
    html = tmp_path / "report.html"
    assert cli_main(["import", "--mapping", str(FIXTURE / "mapping.toml"), "--out", str(out),
                     "--id-key", str(key), "--report", str(html)]) == 0
    assert not any("key" in p.name for p in out.iterdir())
    assert pd.read_csv(key).shape == (24, 2)
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Columns dropped and why" in page


def test_yaml_mapping_and_parquet_input_give_the_same_cohort(clinic_copy, imported):
    pd.read_csv(clinic_copy / "clinic_export.csv", dtype=str, keep_default_na=False).to_parquet(
        clinic_copy / "clinic_export.parquet")
    toml_text = (clinic_copy / "mapping.toml").read_text().replace("clinic_export.csv",
                                                                   "clinic_export.parquet")
    import tomllib

    import yaml

    spec = tomllib.loads(toml_text)
    (clinic_copy / "mapping.yaml").write_text(yaml.safe_dump(spec))
    result = import_clinic(clinic_copy / "mapping.yaml")
    assert result.ok, result.to_markdown()
    for name, table in imported.cohort.tables.items():
        pd.testing.assert_frame_equal(table, result.cohort.tables[name])


# --- problems: every one reported, with file, column, rows and rule -------------------------------------
BASIC = """
[infusions]
file = "inf.csv"
[infusions.columns]
subject_id = "id"
datetime = "start"
dose = "dose"
[infusions.constants]
drug = "ketamine_iv"
dose_unit = "mg/kg"
duration_min = 40
phase = "induction"

[assessments]
file = "scores.csv"
[assessments.columns]
subject_id = "id"
datetime = "when"
scale = "scale"
score = "score"

[subjects]
file = "people.csv"
[subjects.columns]
subject_id = "id"
age = "age"
sex = "sex"
n_failed_trials = "fails"
[subjects.constants]
arm = "ketamine"
"""


def _basic_files(folder: Path, *, scores=None, people=None, infusions=None) -> None:
    (folder / "inf.csv").write_text(infusions or "id,start,dose\nA1,2024-03-01 09:00,0.5\nB2,2024-03-02 10:00,0.5\n")
    (folder / "scores.csv").write_text(scores or (
        "id,when,scale,score\nA1,2024-02-29 09:00,MADRS,30\nA1,2024-03-01 09:40,MADRS,20\n"
        "B2,2024-03-01 10:00,MADRS,28\nB2,2024-03-03 10:00,MADRS,14\n"))
    (folder / "people.csv").write_text(people or "id,age,sex,fails\nA1,40,F,2\nB2,51,M,3\n")


def test_basic_import_day_arithmetic(tmp_path):
    _basic_files(tmp_path)
    result = import_clinic(_write_mapping(tmp_path, BASIC), pseudonymise=False)
    assert result.ok, result.to_markdown()
    a = result.cohort.assessments.set_index(["subject_id", "visit_number"])["day"]
    assert a[("A1", 0)] == pytest.approx(-1.0)
    assert a[("A1", 1)] == pytest.approx(40 / 1440)
    assert a[("B2", 0)] == pytest.approx(-1.0)  # the day before the first infusion, same clock
    assert a[("B2", 1)] == pytest.approx(1.0)
    assert result.cohort.infusions["day"].tolist() == [0.0, 0.0]


def test_dates_without_times_count_whole_days(tmp_path):
    _basic_files(tmp_path, scores="id,when,scale,score\nA1,2024-02-29,MADRS,30\nA1,2024-03-01,MADRS,20\n"
                 "B2,2024-03-01,MADRS,28\nB2,2024-03-03,MADRS,14\n")
    result = import_clinic(_write_mapping(tmp_path, BASIC), pseudonymise=False)
    assert result.ok, result.to_markdown()
    assert result.cohort.assessments["day"].tolist() == [-1.0, 0.0, -1.0, 1.0]


def test_unreadable_encoding_is_reported(tmp_path):
    _basic_files(tmp_path)
    (tmp_path / "people.csv").write_bytes("id,age,sex,fails\nA1,40,F,2\nB2,51,M,3 Bj\xf8rn\n".encode("latin-1"))
    result = import_clinic(_write_mapping(tmp_path, BASIC))
    assert not result.ok
    rules = " ".join(result.report.errors["rule"])
    assert "unreadable encoding" in rules and "people.csv" in rules and "latin-1" in rules


def test_mixed_date_formats_are_reported_with_rows(tmp_path):
    _basic_files(tmp_path, scores=(
        "id,when,scale,score\nA1,2024-02-29 09:00,MADRS,30\nA1,01/03/2024 09:40,MADRS,20\n"
        "B2,2024-03-01 10:00,MADRS,28\nB2,03/13/2024 10:00,MADRS,14\n"))
    result = import_clinic(_write_mapping(tmp_path, BASIC))
    errors = result.report.errors
    mixed = errors[errors["rule"].str.contains("mixed date formats")]
    assert len(mixed) == 1
    assert mixed["table"].iloc[0] == "scores.csv (assessments)"
    assert mixed["column"].iloc[0] == "when"
    assert mixed["rows"].iloc[0] == "0, 1, 2, 3"  # 0-based data rows
    # The dates themselves are never printed in the report.
    assert "01/03/2024" not in result.to_markdown()


def test_ambiguous_slash_dates_need_dayfirst(tmp_path):
    _basic_files(tmp_path, infusions="id,start,dose\nA1,01/03/2024 09:00,0.5\nB2,02/03/2024 10:00,0.5\n",
                 scores="id,when,scale,score\nA1,01/03/2024 09:40,MADRS,20\nB2,03/03/2024 10:00,MADRS,14\n")
    result = import_clinic(_write_mapping(tmp_path, BASIC))
    assert result.report.errors["rule"].str.contains("ambiguous dates").sum() == 2
    fixed = _write_mapping(tmp_path, BASIC.replace("[infusions]\n", "[defaults]\ndayfirst = true\n\n[infusions]\n", 1))
    ok = import_clinic(fixed, pseudonymise=False)
    assert ok.ok, ok.to_markdown()
    b2 = ok.cohort.assessments.query("subject_id == 'B2'")["day"].iloc[0]
    assert b2 == pytest.approx(1.0)  # 3 March minus 2 March, day first


def test_duplicated_subject_rows_are_reported(tmp_path):
    _basic_files(tmp_path, people="id,age,sex,fails\nA1,40,F,2\nB2,51,M,3\nA1,41,F,2\n")
    result = import_clinic(_write_mapping(tmp_path, BASIC))
    dup = result.report.errors[result.report.errors["rule"].str.contains("duplicated subject rows")]
    assert dup["rows"].tolist() == ["0, 2"]
    assert dup["table"].iloc[0] == "people.csv (subjects)"


def test_unmapped_column_is_an_error_unless_ignored(tmp_path):
    _basic_files(tmp_path, people="id,age,sex,fails,favourite_colour\nA1,40,F,2,blue\nB2,51,M,3,red\n")
    mapping = _write_mapping(tmp_path, BASIC)
    result = import_clinic(mapping)
    bad = result.report.errors[result.report.errors["column"] == "favourite_colour"]
    assert len(bad) == 1 and "unmapped column" in bad["rule"].iloc[0]
    ignored = _write_mapping(tmp_path, BASIC.replace(
        '[subjects.columns]', 'ignore = ["favourite_colour"]\n[subjects.columns]'))
    ok = import_clinic(ignored)
    assert ok.ok, ok.to_markdown()
    assert any(d["column"] == "favourite_colour" and "ignore" in d["reason"] for d in ok.log.dropped)


def test_every_problem_is_reported_at_once(tmp_path):
    _basic_files(
        tmp_path,
        people="id,age,sex,fails,colour\nA1,40,F,2,blue\nB2,51,M,3,red\nB2,51,M,3,red\n",
        scores=("id,when,scale,score\nA1,2024-02-29 09:00,MADRS,thirty\nA1,2024-03-01 09:40,MADRS,20\n"
                ",2024-03-01 10:00,MADRS,28\nB2,2024-03-03 10:00,MADRS,99\n"),
        infusions="id,start,dose\nA1,2024-03-01 09:00,0.5\nB2,2024-13-02 10:00,0.5\n",
    )
    result = import_clinic(_write_mapping(tmp_path, BASIC))
    assert result.cohort is not None and not result.ok
    errors = result.report.errors
    found = {
        "unmapped": errors["rule"].str.contains("unmapped column").any(),
        "duplicate": errors["rule"].str.contains("duplicated subject rows").any(),
        "number": ((errors["rule"] == "must be a number") & (errors["rows"] == "0")).any(),
        "missing id": ((errors["rule"] == "missing subject id") & (errors["rows"] == "2")).any(),
        "bad date": errors["rule"].str.contains("impossible date").any(),
        "range": errors["rule"].str.contains("MADRS score must lie between").any(),
    }
    assert all(found.values()), (found, result.to_markdown())
    md = result.to_markdown()
    assert md.index("## Errors") < md.index("## Warnings")
    assert "FAILED" in md


def test_mapped_column_missing_from_file(tmp_path):
    _basic_files(tmp_path)
    result = import_clinic(_write_mapping(tmp_path, BASIC.replace('score = "score"', 'score = "Total"')))
    rules = result.report.errors["rule"]
    assert rules.str.contains("mapped column\\(s\\) not in the file").any()
    assert rules.str.contains("score = 'Total'").any()


def test_identifier_in_a_mapped_column_is_removed_with_a_warning(tmp_path):
    _basic_files(tmp_path)
    (tmp_path / "people.csv").write_text(
        "id,age,sex,fails,why\nA1,40,F,2,\nB2,51,M,3,moved; reach her at kari@example.org\n")
    mapping = _write_mapping(tmp_path, BASIC.replace('n_failed_trials = "fails"',
                                                     'n_failed_trials = "fails"\ndropout_reason = "why"'))
    result = import_clinic(mapping)
    assert result.cohort.subjects["dropout_reason"].isna().all()
    assert result.report.warnings["rule"].str.contains("e-mail").any()
    assert "kari@example.org" not in result.to_markdown()


def test_mapping_problems_are_listed_together(tmp_path):
    path = _write_mapping(tmp_path, """
        [subjectz]
        file = "x.csv"
        [assessments]
        file = "a.csv"
        [assessments.columns]
        subject_id = "id"
        scores = "s"
        """)
    with pytest.raises(ConfigurationError) as err:
        load_mapping(path)
    text = str(err.value)
    for part in ("[subjectz]", "[infusions] is required", "'scores'", "needs `datetime`"):
        assert part in text


def test_cli_import_fails_with_report_and_writes_nothing(tmp_path, capsys):
    _basic_files(tmp_path, people="id,age,sex,fails\nA1,40,F,2\nA1,40,F,2\n")
    out = tmp_path / "cohort"
    code = cli_main(["import", "--mapping", str(_write_mapping(tmp_path, BASIC)), "--out", str(out)])
    assert code == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "duplicated subject rows" in err and "no cohort written" in err


def test_warning_only_import_succeeds(tmp_path):
    _basic_files(tmp_path)
    mapping = _write_mapping(tmp_path, BASIC.replace('[subjects.columns]',
                                                     'ignore = ["not_there"]\n[subjects.columns]'))
    result = import_clinic(mapping)
    assert result.ok
    assert len(result.report.warnings) >= 1 and result.report.errors.empty
    md = result.to_markdown()
    warn_section = md.split("## Warnings")[1].split("##")[0]
    assert "not_there" in warn_section


def test_vitals_and_adverse_events_from_date_times(tmp_path):
    _basic_files(tmp_path, infusions="id,start,dose\nA1,2024-03-01 09:00,0.5\nA1,2024-03-04 09:00,0.5\n"
                 "B2,2024-03-02 10:00,0.5\n")
    (tmp_path / "vit.csv").write_text(
        "id,t,sbp,dbp,hr\nA1,2024-03-01 08:55,120,80,70\nA1,2024-03-01 09:40,150,90,80\n"
        "A1,2024-03-04 09:20,130,85,75\nB2,2024-03-02 10:10,125,82,72\n")
    (tmp_path / "ae.csv").write_text(
        "id,onset,term,sev,ser\nA1,2024-03-01 09:30,nausea,mild,no\nA1,2024-03-05 09:00,headache,"
        "moderate,yes\n")
    extra = """
    [vitals]
    file = "vit.csv"
    [vitals.columns]
    subject_id = "id"
    datetime = "t"
    sbp = "sbp"
    dbp = "dbp"
    heart_rate = "hr"

    [adverse_events]
    file = "ae.csv"
    [adverse_events.columns]
    subject_id = "id"
    datetime = "onset"
    term = "term"
    severity = "sev"
    serious = "ser"
    """
    result = import_clinic(_write_mapping(tmp_path, BASIC + textwrap.dedent(extra)),
                           pseudonymise=False)
    assert result.ok, result.to_markdown()
    v = result.cohort.vitals
    assert v["infusion_number"].tolist() == [1, 1, 2, 1]
    assert v["minute"].tolist() == [-5, 40, 20, 10]
    assert v["cadss"].isna().all()  # not in the export: present but empty
    ae = result.cohort.adverse_events
    assert ae["day"].tolist() == [pytest.approx(0.5 / 24), 4.0]
    assert ae["infusion_number"].tolist() == [1, 2]
    assert ae["serious"].tolist() == [False, True]


def test_wide_export_with_one_column_per_scale(tmp_path):
    _basic_files(tmp_path)
    (tmp_path / "wide.csv").write_text(
        "id,when,MADRS total,PHQ-9 total\nA1,2024-02-29 09:00,30,18\nA1,2024-03-01 09:40,20,\n"
        "B2,2024-03-01 10:00,28,15\nB2,2024-03-03 10:00,x,9\n")
    wide = BASIC.replace('file = "scores.csv"', 'file = "wide.csv"').replace(
        'scale = "scale"\nscore = "score"\n',
        '\n[assessments.scores]\nMADRS = "MADRS total"\nPHQ9 = "PHQ-9 total"\n')
    result = import_clinic(_write_mapping(tmp_path, wide), pseudonymise=False)
    errors = result.report.errors
    assert errors[["column", "rows", "rule"]].values.tolist() == [["MADRS total", "3", "must be a number"]]
    a = result.cohort.assessments
    got = sorted(zip(a["subject_id"], a["scale"], a["score"], strict=True))
    assert got == [("A1", "MADRS", 20.0), ("A1", "MADRS", 30.0), ("A1", "PHQ9", 18.0),
                   ("B2", "MADRS", 28.0), ("B2", "PHQ9", 9.0), ("B2", "PHQ9", 15.0)]
    both = BASIC.replace('score = "score"\n', 'score = "score"\n[assessments.scores]\nMADRS = "x"\n')
    with pytest.raises(ConfigurationError, match="not both"):
        load_mapping(_write_mapping(tmp_path, both))


def test_unusual_but_legal_values_are_warnings(tmp_path):
    _basic_files(tmp_path, infusions="id,start,dose\nA1,2024-03-01 09:00,5\nB2,2024-03-02 10:00,0.5\n")
    result = import_clinic(_write_mapping(tmp_path, BASIC))
    assert result.ok  # warnings do not stop the import
    warn = result.report.warnings
    row = warn[warn["rule"].str.contains("unusual IV ketamine dose")]
    assert row[["table", "column", "rows", "values"]].values.tolist() == [["infusions", "dose", "0", "5"]]
    md = result.to_markdown()
    assert "unusual IV ketamine dose" in md.split("## Warnings")[1].split("## Files")[0]
    assert "unusual IV ketamine dose" not in md.split("## Errors")[1].split("## Warnings")[0]


def test_html_report_escapes_text(tmp_path):
    _basic_files(tmp_path, people="id,age,sex,fails,<b>x</b>\nA1,40,F,2,1\nB2,51,M,3,2\n")
    result = import_clinic(_write_mapping(tmp_path, BASIC))
    page = result.to_html()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert re.search(r"<h2>Errors</h2>\s*<table", page)


@pytest.mark.notebooks
def test_clinic_fixture_runs_through_the_notebooks(tmp_path):
    folder = import_clinic(FIXTURE / "mapping.toml").save(tmp_path / "cohort")
    code = cli_main(["run", "--cohort", str(folder), "--privacy", "strict", "--out",
                     str(tmp_path / "out"), "--run-id", "clinic", "--no-progress", "--no-html"])
    assert code == 0
    run = tmp_path / "out" / "clinic"
    assert (run / "manifest.json").exists()
    results = json.loads((run / "results.json").read_text())
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("[0-9]*.py")}
    assert {p.stem for p in run.rglob("*.ipynb")} == notebooks
    assert all(results[name]["privacy"] == "strict" for name in notebooks)
