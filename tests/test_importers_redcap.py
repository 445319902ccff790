from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.cli import main as cli_main
from kanalysis.errors import ConfigurationError
from kanalysis.importers.redcap import import_redcap, read_dictionary

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "redcap"
MAPPING = ROOT / "examples" / "mapping_redcap.toml"
IDENTIFIERS = ("Ingrid", "Haugen", "example.org", "4821300", "1001", "husband")


@pytest.fixture(scope="module")
def raw_result():
    return import_redcap(FIXTURE / "records_raw.csv", dictionary=FIXTURE / "dictionary.csv",
                         mapping=MAPPING)


def _copy(tmp_path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(FIXTURE, folder)
    shutil.copy(MAPPING, folder / "mapping.toml")
    return folder


def _run(folder: Path, records: str = "records_raw.csv", mapping: str = "mapping.toml"):
    return import_redcap(folder / records, dictionary=folder / "dictionary.csv",
                         mapping=folder / mapping)


def test_dictionary_is_read_with_choices_and_identifiers():
    fields = read_dictionary(FIXTURE / "dictionary.csv")
    assert next(iter(fields)) == "record_id"
    assert fields["sex"].choices == {"1": "Female", "2": "Male", "3": "Other"}
    assert fields["ae_flags"].columns == ["ae_flags___1", "ae_flags___2"]
    assert fields["dob"].identifier and not fields["sex"].identifier
    assert fields["anxious_distress"].choices == {"1": "Yes", "0": "No"}


def test_raw_export_imports_and_validates(raw_result):
    assert raw_result.ok, raw_result.to_markdown()
    c = raw_result.cohort
    assert c.n_subjects == 30 and set(c.assessments["scale"]) == {"PHQ9", "GAD7"}
    assert c.metadata["source"] == "redcap" and c.metadata["privacy"] == "strict"
    assert set(c.subjects["sex"].dropna()) <= {"F", "M", "other"}
    assert c.subjects["site"].isin(["Oslo", "Bergen"]).all()  # dropdown labels
    # Withdrawn patients (branching logic fills the date only for them) are dropped_out.
    assert (c.subjects["disposition"] == "dropped_out").sum() == 4
    # Infusion days from the datetime: the first infusion is day 0.
    assert (c.infusions.groupby("subject_id")["day"].min().abs() < 1e-9).all()
    # Vitals: repeating instrument placed within infusions; CADSS only at 40 min (branching).
    assert set(c.vitals["minute"]) == {-5.0, 40.0, 60.0}
    assert c.vitals.loc[c.vitals["minute"] != 40, "cadss"].isna().all()
    assert c.vitals.loc[c.vitals["minute"] == 40, "cadss"].notna().all()
    # A checkbox choice feeds `serious`.
    assert c.adverse_events["serious"].sum() == 1
    assert ka.Cohort(**c.tables, metadata=c.metadata).validate().ok


def test_labels_export_gives_the_same_cohort(raw_result):
    labels = import_redcap(FIXTURE / "records_labels.csv", dictionary=FIXTURE / "dictionary.csv",
                           mapping=MAPPING)
    assert labels.ok, labels.to_markdown()
    for name, table in raw_result.cohort.tables.items():
        other = labels.cohort.tables[name]
        if name == "assessments":  # visit labels are event labels in a labels export
            table, other = table.drop(columns="visit"), other.drop(columns="visit")
        pd.testing.assert_frame_equal(table, other, check_dtype=False)


def test_phq9_totals_sum_items_and_prorate_at_most_two_missing(raw_result):
    records = pd.read_csv(FIXTURE / "records_raw.csv", dtype=str)
    phq = records[records["phq9_datetime"].notna()]
    items = phq[[f"phq9_{k}" for k in range(1, 10)]].astype(float)
    answered = items.notna().sum(axis=1)
    expected = np.where(answered == 9, items.sum(axis=1),
                        np.where(answered >= 7, np.floor(items.sum(axis=1) * 9 / answered + 0.5),
                                 np.nan))
    got = raw_result.cohort.assessments.query("scale == 'PHQ9'")["score"].to_numpy()
    assert sorted(np.nan_to_num(got, nan=-1)) == sorted(np.nan_to_num(expected, nan=-1))
    assert (answered < 9).any() and (answered < 7).any()  # both rules are exercised
    warnings = " | ".join(raw_result.report.warnings["rule"])
    assert "PHQ9 total(s) prorated" in warnings and "left missing: more than 2" in warnings


def test_no_identifier_reaches_the_cohort_folder(tmp_path):
    folder = _copy(tmp_path)
    out = tmp_path / "cohort"
    key = tmp_path / "key.csv"
    assert cli_main(["import", "--redcap", str(folder / "records_raw.csv"), "--dictionary",
                     str(folder / "dictionary.csv"), "--mapping", str(folder / "mapping.toml"),
                     "--out", str(out), "--id-key", str(key)]) == 0
    assert cli_main(["validate", str(out)]) == 0
    text = "\n".join(p.read_text() for p in out.iterdir())
    for needle in IDENTIFIERS:
        assert needle not in text, needle
    assert "1001" in key.read_text()  # the key, kept outside the cohort, maps the record ids
    report = (out / "import_report.md").read_text()
    assert "identifier = y in the data dictionary" in report


def test_event_filter_and_gad7_day_first_dates(tmp_path, raw_result):
    folder = _copy(tmp_path)
    text = (folder / "mapping.toml").read_text().replace(
        'instrument = "gad7"', 'instrument = "gad7"\nevents = ["infusion_1_arm_1"]')
    (folder / "mapping.toml").write_text(text)
    result = _run(folder)
    assert result.ok, result.to_markdown()
    gad = result.cohort.assessments.query("scale == 'GAD7'")
    assert len(gad) == 30 and (gad["day"] < 0).all()
    # The labels export writes GAD-7 dates day-first (validation datetime_dmy): same days.
    labels = import_redcap(FIXTURE / "records_labels.csv", dictionary=FIXTURE / "dictionary.csv",
                           mapping=MAPPING)
    a = raw_result.cohort.assessments.query("scale == 'GAD7'")["day"].to_numpy()
    b = labels.cohort.assessments.query("scale == 'GAD7'")["day"].to_numpy()
    np.testing.assert_allclose(a, b)


def test_inputs_are_never_modified(tmp_path):
    folder = _copy(tmp_path)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert _run(folder).ok
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert before == after


def test_strict_run_of_a_key_analysis_on_the_redcap_cohort(tmp_path, raw_result):
    """Load the imported folder and run the primary analysis (PHQ-9 by visit)."""
    folder = raw_result.save(tmp_path / "cohort")
    cohort = ka.load_cohort(folder)
    assert cohort.primary_scale == "PHQ9"
    from kanalysis.tables import table_one

    t1 = table_one(cohort.subjects, privacy="strict")
    assert (t1.long["level"] == "Missing").any()  # BMI and failed trials are partly missing
    a = cohort.assessments.query("scale == 'PHQ9'")
    first, last = a[a["visit_number"] == 1]["score"].mean(), a[a["visit_number"] == 6]["score"].mean()
    assert last < first  # symptoms fall over the course


def test_mapping_errors_name_the_problem(tmp_path):
    folder = _copy(tmp_path)
    base = (folder / "mapping.toml").read_text()
    cases = {
        'instrument = "infusion"': ('instrument = "infusions"', "is not a form of the data dictionary"),
        'sex = "sex"': ('sex = "first_name"', "flagged identifier = y"),
        'dose = "inf_dose"': ('dose = "inf_dose_mg"', "not in the records export"),
    }
    for old, (new, message) in cases.items():
        (folder / "bad.toml").write_text(base.replace(old, new, 1))
        result = _run(folder, mapping="bad.toml")
        assert not result.ok
        assert message in " | ".join(result.report.errors["rule"]), message


def test_unknown_choice_and_bad_dates_are_reported_with_rows(tmp_path):
    folder = _copy(tmp_path)
    records = pd.read_csv(folder / "records_raw.csv", dtype=str, keep_default_na=False)
    records.loc[0, "sex"] = "7"
    row = records.index[records["inf_datetime"] != ""][0]
    records.loc[row, "inf_datetime"] = "31/02/2024 10:00"
    records.to_csv(folder / "records_raw.csv", index=False)
    result = _run(folder)
    errors = result.report.errors
    sex = errors[errors["column"] == "sex"]
    assert len(sex) == 1 and sex["rows"].iloc[0] == "0" and "one of its choices" in sex["rule"].iloc[0]
    assert errors["rule"].str.contains("validation type datetime_ymd").any()


def test_dictionary_problems_are_configuration_errors(tmp_path):
    bad = tmp_path / "dictionary.csv"
    bad.write_text("name,type\nrecord_id,text\n")
    with pytest.raises(ConfigurationError, match="not a REDCap data dictionary"):
        read_dictionary(bad)
    d = pd.read_csv(FIXTURE / "dictionary.csv", dtype=str, keep_default_na=False)
    d.loc[d["Variable / Field Name"] == "sex", "Choices, Calculations, OR Slider Labels"] = "Female"
    d.to_csv(bad, index=False)
    with pytest.raises(ConfigurationError, match="'sex' needs choices"):
        read_dictionary(bad)


@pytest.mark.slow
@pytest.mark.notebooks
def test_redcap_fixture_runs_through_the_notebooks_in_strict_mode(tmp_path, raw_result):
    """Raw REDCap files -> import -> validate -> every notebook in strict mode; no identifier
    (names, MRN, e-mail, record ids, the free-text note) in any output file."""
    folder = raw_result.save(tmp_path / "cohort")
    assert cli_main(["validate", str(folder)]) == 0
    code = cli_main(["run", "--cohort", str(folder), "--privacy", "strict", "--out",
                     str(tmp_path / "out"), "--run-id", "redcap", "--no-progress"])
    assert code == 0
    run = tmp_path / "out" / "redcap"
    assert (run / "manifest.json").exists()
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".html", ".csv", ".tex", ".json", ".svg",
                                              ".md", ".txt"):
            text = path.read_text(errors="ignore")
            # Record ids ("1001", ...) are short numbers that can occur by chance in HTML; they
            # are checked in the cohort folder (test_no_identifier_reaches_the_cohort_folder).
            for needle in (n for n in IDENTIFIERS if not n.isdigit() or len(n) > 4):
                assert needle not in text, (needle, path.name)


def test_gad7_total_with_a_missing_item_is_missing_unless_the_mapping_prorates(tmp_path):
    """GAD-7's total is the sum of all seven items (Spitzer 2006): one blank item leaves it
    missing by default; a protocol rule (max_missing_items) prorates it: sum x 7 / 6, rounded."""
    folder = _copy(tmp_path)
    records = pd.read_csv(folder / "records_raw.csv", dtype=str, keep_default_na=False)
    items = [f"gad7_{k}" for k in range(1, 8)]
    row = records.index[(records[items] != "").all(axis=1)][0]
    values = records.loc[row, items].astype(int)
    full_total, prorated_total = values.sum(), np.floor(values.iloc[1:].sum() * 7 / 6 + 0.5)
    records.loc[row, "gad7_1"] = ""
    records.to_csv(folder / "records_raw.csv", index=False)

    def gad7_scores(result):
        assert result.ok, result.to_markdown()
        return result.cohort.assessments.query("scale == 'GAD7'")["score"]

    reference = gad7_scores(_run(_copy(tmp_path / "reference")))
    default = _run(folder)
    scores = gad7_scores(default)
    assert len(scores) == len(reference)  # the rating is kept, its total missing
    assert scores.isna().sum() == reference.isna().sum() + 1
    kept = sorted(reference.dropna())
    kept.remove(full_total)
    assert sorted(scores.dropna()) == kept
    assert "GAD7 total(s) left missing: more than 0 of 7 items missing" in " | ".join(
        default.report.warnings["rule"])

    text = (folder / "mapping.toml").read_text().replace(
        "items = { GAD7 = [", "max_missing_items = { GAD7 = 1 }\nitems = { GAD7 = [")
    (folder / "mapping.toml").write_text(text)
    prorated = _run(folder)
    scores = gad7_scores(prorated)
    assert sorted(scores.dropna()) == sorted([*kept, prorated_total])
    assert "GAD7 total(s) prorated" in " | ".join(prorated.report.warnings["rule"])
