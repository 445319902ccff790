"""Tests for the CDISC ADaM importer (kanalysis.importers.adam) and `kanalysis import --adam`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

import kanalysis as ka
from kanalysis.cli import main as cli_main
from kanalysis.importers import import_adam

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "adam"


def _make_fixtures_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "tests" / "fixtures" / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(df: pd.DataFrame, path: Path) -> None:
    """Write an XPT the way the fixture builder does: dates as DATE9, date-times as DATETIME20."""
    df = df.copy()
    formats = {}
    for column in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[column]):
            if column.endswith("DTM"):
                formats[column] = "DATETIME20"
            else:
                df[column] = df[column].dt.date.astype(object).where(df[column].notna(), None)
                formats[column] = "DATE9"
    pyreadstat.write_xport(df, str(path), file_format_version=5, variable_format=formats)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A fresh ADaM-like XPT fixture, written by pyreadstat.write_xport for this test run."""
    folder = tmp_path_factory.mktemp("adam")
    _make_fixtures_module().make_adam(folder)
    return folder


@pytest.fixture(scope="module")
def imported(built):
    return import_adam(built)


def _read(folder: Path, name: str) -> pd.DataFrame:
    df, _ = pyreadstat.read_xport(str(folder / f"{name}.xpt"), dates_as_pandas_datetime=True)
    return df


def test_committed_fixture_matches_the_builder(built):
    for name in ("adsl", "adqs", "adex", "adae", "advs", "adtte"):
        pd.testing.assert_frame_equal(_read(built, name), _read(FIXTURE, name))


def test_adam_fixture_imports_to_a_valid_cohort(imported, tmp_path):
    assert imported.ok, imported.to_markdown()
    folder = imported.save(tmp_path / "cohort")
    cohort = ka.load_cohort(folder)
    assert cohort.metadata["source"] == "adam" and cohort.metadata["privacy"] == "strict"
    assert cohort.metadata["design"] == "serial"
    assert cohort.metadata["extra_tables"] == {"time_to_event": "time_to_event.csv"}
    assert (folder / "time_to_event.csv").exists()
    assert cli_main(["validate", str(folder)]) == 0


def test_assessments_round_trip_against_the_raw_xpt(built, imported, tmp_path):
    cohort = ka.load_cohort(imported.save(tmp_path / "cohort"))
    adqs, adex = _read(built, "adqs"), _read(built, "adex")
    first = adex.groupby("USUBJID")["ASTDTM"].min()
    keep = (adqs["PARAMCD"] == "MADRSTOT") & (adqs["ANL01FL"] == "Y") & (adqs["DTYPE"] == "")
    rows = adqs[keep]
    expected = sorted(
        (r.USUBJID, round((r.ADTM - first[r.USUBJID]).total_seconds() / 86400, 6), float(r.AVAL))
        for r in rows.itertuples()
    )
    got = sorted((r.subject_id, round(r.day, 6), r.score) for r in cohort.assessments.itertuples())
    assert got == expected
    assert set(cohort.assessments["scale"]) == {"MADRS"}
    # Visit numbers follow (AVISITN, ATPTN): screening 0, baseline 1, the two day-1 time points 2, 3.
    labels = cohort.assessments.drop_duplicates("visit_number").set_index("visit_number")["visit"]
    assert labels.loc[0] == "screening" and labels.loc[1] == "baseline"
    assert labels.loc[2].startswith("day1_40min") and labels.loc[3].startswith("day1_24h")
    # 40 minutes after the first dose is day 0.02778.
    assert (cohort.assessments["day"] - 40 / 1440).abs().min() < 1e-9


def test_infusions_subjects_and_events_round_trip(built, imported):
    adsl, adex, adae = _read(built, "adsl"), _read(built, "adex"), _read(built, "adae")
    inf = imported.cohort.infusions
    assert len(inf) == len(adex)
    assert sorted(inf["dose"]) == sorted(adex["EXDOSE"])
    assert set(inf["duration_min"]) == {40.0}
    assert set(inf["drug"]) == {"ketamine_iv", "midazolam_iv"}
    assert inf.groupby("subject_id")["day"].min().eq(0).all()
    subj = imported.cohort.subjects.set_index("subject_id")
    for r in adsl.itertuples():
        s = subj.loc[r.USUBJID]
        assert s["arm"] == r.TRT01P.lower()
        assert s["age"] == r.AGE and s["sex"] == r.SEX and s["bmi"] == r.BMIBL
        assert s["n_failed_trials"] == r.NFAILTRT
        assert s["anxious_distress"] == (1.0 if r.ANXDISFL == "Y" else 0.0)
        assert s["randomization_day"] == (r.RANDDT - r.TRTSDT).days
        if r.EOSSTT == "DISCONTINUED":
            assert s["disposition"] == "dropped_out"
            assert s["dropout_day"] == (r.EOSDT - r.TRTSDT).days
            assert s["dropout_reason"] == r.DCSREAS.lower()
        else:
            assert s["disposition"] == "completed" and np.isnan(s["dropout_day"])
    ae = imported.cohort.adverse_events
    assert sorted(ae["term"]) == sorted(adae["AEDECOD"].str.lower())
    assert ae["serious"].tolist() == (adae["AESER"] == "Y").tolist()


def test_vitals_from_advs_and_cadss_from_adqs(built, imported):
    advs, adex, adqs = _read(built, "advs"), _read(built, "adex"), _read(built, "adqs")
    vit = imported.cohort.vitals
    start = {(r.USUBJID, n): r.ASTDTM for n, r in zip(
        adex.groupby("USUBJID").cumcount() + 1, adex.sort_values(["USUBJID", "ASTDTM"]).itertuples(), strict=True)}
    wide = advs.pivot_table(index=["USUBJID", "ADTM"], columns="PARAMCD", values="AVAL").reset_index()
    got = vit.set_index(["subject_id", "infusion_number", "minute"])
    for r in wide.itertuples():
        number = max(n for (s, n), t in start.items() if s == r.USUBJID and t <= r.ADTM + pd.Timedelta(hours=1))
        minute = (r.ADTM - start[(r.USUBJID, number)]).total_seconds() / 60
        row = got.loc[(r.USUBJID, float(number), minute)]
        assert (row["sbp"], row["dbp"], row["heart_rate"]) == (r.SYSBP, r.DIABP, r.PULSE)
    cadss = adqs[adqs["PARAMCD"] == "CADSSTOT"]
    assert sorted(vit["cadss"].dropna()) == sorted(cadss["AVAL"])
    assert set(vit.loc[vit["cadss"].notna(), "minute"]) == {40.0}
    assert "CADSS" not in set(imported.cohort.assessments["scale"])


def test_adtte_cnsr_zero_is_the_event(built, imported):
    raw = _read(built, "adtte")
    tte = imported.extra_tables["time_to_event"].set_index("subject_id")
    for r in raw.itertuples():
        row = tte.loc[r.USUBJID]
        cnsr = int(round(r.CNSR))
        assert row["cnsr"] == cnsr
        assert row["event"] == (1 if cnsr == 0 else 0)
        assert row["time"] == r.AVAL
    assert tte["event"].sum() == int((raw["CNSR"].round() == 0).sum()) == 8
    assert set(tte.loc[tte["event"] == 0, "cnsr"]) == {1, 2}


def test_adtte_time_units_are_converted_to_days(tmp_path, built):
    shutil.copytree(built, tmp_path / "a")
    t = _read(built, "adtte")
    t["AVAL"] = 2.0
    t["AVALU"] = "WEEKS"
    _write(t, tmp_path / "a" / "adtte.xpt")
    result = import_adam(tmp_path / "a")
    assert (result.extra_tables["time_to_event"]["time"] == 14.0).all()


def test_identifiers_and_unused_variables_are_left_out_and_reported(imported, built, tmp_path):
    folder = imported.save(tmp_path / "cohort")
    text = "\n".join(p.read_text() for p in folder.iterdir())
    adsl = _read(built, "adsl")
    for born in adsl["BRTHDT"]:
        assert born.strftime("%Y-%m-%d") not in text
    assert "told nurse" not in text  # AETERM verbatim text is never imported
    dropped = {d["column"]: d for d in imported.log.dropped}
    assert dropped["BRTHDT"]["kind"] == "birth_date"
    assert "AETERM" in " ".join(dropped)
    md = imported.to_markdown()
    assert "BRTHDT" in md and "MADRS01" in md and "LOCF" in md


def test_ady_only_records_use_the_adam_day_convention(tmp_path, built):
    folder = tmp_path / "a"
    shutil.copytree(built, folder)
    q = _read(built, "adqs").drop(columns=["ADT", "ADTM"])
    _write(q, folder / "adqs.xpt")
    result = import_adam(folder)
    assert result.ok, result.to_markdown()
    a = result.cohort.assessments
    raw = q[(q["PARAMCD"] == "MADRSTOT") & (q["ANL01FL"] == "Y") & (q["DTYPE"] == "")]
    # ADaM has no day 0: ADY 1 is the first-dose day (kanalysis day 0), ADY -7 stays -7.
    expected = sorted(r.ADY - 1 if r.ADY >= 1 else r.ADY for r in raw.itertuples())
    assert sorted(a["day"]) == expected


def test_inconsistent_chg_is_a_warning(tmp_path, built):
    folder = tmp_path / "a"
    shutil.copytree(built, folder)
    q = _read(built, "adqs")
    target = q[(q["PARAMCD"] == "MADRSTOT") & q["CHG"].notna() & (q["ANL01FL"] == "Y")].index[2]
    q.loc[target, "CHG"] = q.loc[target, "CHG"] + 5
    _write(q, folder / "adqs.xpt")
    result = import_adam(folder)
    assert result.ok
    assert result.report.warnings["rule"].str.contains("CHG differs").any()


def test_missing_datasets_and_variables_are_reported(tmp_path, built):
    folder = tmp_path / "a"
    shutil.copytree(built, folder)
    (folder / "adex.xpt").unlink()
    result = import_adam(folder)
    assert result.cohort is None and not result.ok
    assert result.report.errors["rule"].str.contains("required dataset missing: no adex").any()
    assert cli_main(["import", "--adam", str(folder), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()

    shutil.copy(built / "adex.xpt", folder / "adex.xpt")
    s = _read(built, "adsl").drop(columns=["NFAILTRT"])
    s = pd.concat([s, s.iloc[[0]]], ignore_index=True)
    _write(s, folder / "adsl.xpt")
    result = import_adam(folder)
    rules = " | ".join(result.report.errors["rule"])
    assert "duplicated subject rows" in rules
    # A covariate ADaM does not standardise is a warning, never an error: left missing.
    warned = " | ".join(result.report.warnings["rule"])
    assert "no ADSL variable for n_failed_trials" in warned
    assert "n_failed_trials" not in rules
    # Naming the sponsor variable on the command line fills the covariate.
    fixed = import_adam(folder, subject_variables={"n_failed_trials": "BMIBL"})
    assert "n_failed_trials" not in " | ".join(fixed.report.problems["rule"])


def test_unreadable_dataset_is_reported_not_raised(tmp_path, built):
    folder = tmp_path / "a"
    shutil.copytree(built, folder)
    (folder / "adae.xpt").write_bytes(b"this is not a SAS transport file\n" * 20)
    result = import_adam(folder)
    errors = result.report.errors
    assert (errors["table"] == "ADAE").any()
    assert errors.loc[errors["table"] == "ADAE", "rule"].str.contains("cannot read adae.xpt").all()


def test_cli_options_for_adam(tmp_path, built, capsys):
    assert cli_main(["import", "--adam", str(built), "--out", str(tmp_path / "x"),
                     "--scale", "MADRSTOT"]) == 2
    assert "--scale expects NAME=VALUE" in capsys.readouterr().err
    assert cli_main(["import", "--adam", str(built), "--out", str(tmp_path / "y"),
                     "--subject-variable", "n_failed_trials=NFAILTRT", "--population", "FASFL",
                     "--pseudonymise", "--format", "parquet"]) == 0
    cohort = ka.load_cohort(tmp_path / "y")
    assert (tmp_path / "y" / "subjects.parquet").exists()
    assert cohort.subjects["subject_id"].str.fullmatch(r"P\d{4}").all()


def test_input_files_are_not_modified(tmp_path, built):
    folder = tmp_path / "a"
    shutil.copytree(built, folder)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert cli_main(["import", "--adam", str(folder), "--out", str(tmp_path / "out")]) == 0
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert before == after


def test_population_flag_and_pseudonymise(tmp_path, built):
    folder = tmp_path / "a"
    shutil.copytree(built, folder)
    s = _read(built, "adsl")
    s.loc[s.index[-1], "FASFL"] = "N"
    _write(s, folder / "adsl.xpt")
    result = import_adam(folder, population="FASFL", pseudonymise=True)
    assert result.ok, result.to_markdown()
    assert result.cohort.n_subjects == len(s) - 1
    assert set(result.cohort.assessments["subject_id"]) <= set(result.cohort.subjects["subject_id"])
    assert result.cohort.subjects["subject_id"].str.fullmatch(r"P\d{4}").all()
    assert not result.extra_tables["time_to_event"]["subject_id"].str.startswith("KET").any()


def test_sas_epoch_numbers_become_dates(tmp_path, built):
    """Dates stored as plain numbers (no DATE format) count days from 1960-01-01."""
    folder = tmp_path / "a"
    shutil.copytree(built, folder)
    x = _read(built, "adex")
    epoch = pd.Timestamp("1960-01-01")
    x["ASTDT"] = (pd.to_datetime(x["ASTDT"]) - epoch).dt.days.astype(float)
    x["ASTDTM"] = (x["ASTDTM"] - epoch).dt.total_seconds()
    x["AENDTM"] = (x["AENDTM"] - epoch).dt.total_seconds()
    _write(x, folder / "adex.xpt")
    result = import_adam(folder)
    assert result.ok, result.to_markdown()
    pd.testing.assert_frame_equal(result.cohort.infusions, import_adam(built).cohort.infusions)


@pytest.mark.notebooks
def test_adam_fixture_runs_through_the_notebooks(tmp_path, built):
    folder = import_adam(built).save(tmp_path / "cohort")
    code = cli_main(["run", "--cohort", str(folder), "--privacy", "strict", "--out",
                     str(tmp_path / "out"), "--run-id", "adam", "--no-progress", "--no-html"])
    assert code == 0
    run = tmp_path / "out" / "adam"
    assert (run / "manifest.json").exists()
    results = json.loads((run / "results.json").read_text())
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("[0-9]*.py")}
    assert {p.stem for p in run.rglob("*.ipynb")} == notebooks
    assert all(results[name]["privacy"] == "strict" for name in notebooks)


SAS = ROOT / "tests" / "fixtures" / "sas"


@pytest.mark.parametrize("name", ["hadley", "datetime"])
def test_sas7bdat_written_by_sas_reads_as_pandas_reads_it(name):
    """Files written by SAS 9.3/9.4 (haven's test files, see fixtures/sas/SOURCES.md): the
    importer's reader (pyreadstat) and pandas' own SAS7BDAT reader agree on every value."""
    from kanalysis.importers.adam import read_sas_dataset

    ours = read_sas_dataset(SAS / f"{name}.sas7bdat")
    theirs = pd.read_sas(SAS / f"{name}.sas7bdat", encoding="infer")
    theirs.columns = [c.upper() for c in theirs.columns]
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs) > 0
    for column in ours.columns:
        a, b = ours[column], theirs[column]
        if pd.api.types.is_datetime64_any_dtype(b):
            assert pd.api.types.is_datetime64_any_dtype(a), column  # dates are dates, not numbers
            assert (a.astype("datetime64[s]") == b.astype("datetime64[s]")).all(), column
        elif pd.api.types.is_numeric_dtype(a):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True)
        elif a.map(type).eq(str).any():  # character: trimmed text, blanks missing
            assert a.isna().equals(b.isna()) and (a.dropna() == b.dropna().str.strip()).all()
        else:  # a clock time (TIME8.): pandas gives seconds since midnight
            seconds = a.map(lambda t: t.hour * 3600 + t.minute * 60 + t.second)
            np.testing.assert_allclose(seconds.to_numpy(float), b.to_numpy(float))


def test_adam_package_with_adsl_as_sas7bdat_imports_as_the_xpt_package(tmp_path):
    """ADSL as .sas7bdat (dates as SAS dates), the other datasets as XPT: the same cohort."""
    folder = tmp_path / "adam"
    shutil.copytree(FIXTURE, folder)
    (folder / "adsl.xpt").unlink()
    shutil.copy(SAS / "adsl.sas7bdat", folder / "ADSL.sas7bdat")  # names are case-insensitive
    result = import_adam(folder)
    assert result.ok, result.to_markdown()
    assert "ADSL.sas7bdat" in [f["file"] for f in result.log.files]
    reference = import_adam(FIXTURE)
    for name, table in reference.cohort.tables.items():
        pd.testing.assert_frame_equal(result.cohort.tables[name], table, obj=name)
    # The SAS dates of ADSL were read as dates: RANDDT gives the randomisation day (before day 0).
    rand = result.cohort.subjects["randomization_day"]
    assert rand.notna().all() and (rand < 0).all()


def test_two_files_for_one_dataset_are_refused_not_chosen_between(tmp_path):
    """ADSL as both .xpt and .sas7bdat: which is current cannot be told, so the import stops
    and names both files (it does not silently use one of them)."""
    folder = tmp_path / "adam"
    shutil.copytree(FIXTURE, folder)
    shutil.copy(SAS / "adsl.sas7bdat", folder / "adsl.sas7bdat")
    before = sorted(p.name for p in folder.iterdir())
    result = import_adam(folder)
    assert not result.ok
    text = result.to_markdown()
    assert "adsl.sas7bdat" in text and "adsl.xpt" in text and "keep exactly one" in text
    assert sorted(p.name for p in folder.iterdir()) == before
