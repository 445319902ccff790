from __future__ import annotations

import hashlib

import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.cohort import SCHEMA_VERSION
from kanalysis.errors import ConfigurationError, DataValidationError


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_load_exposes_tables_metadata_and_truth(cohort_maintenance):
    c = cohort_maintenance
    assert isinstance(c.subjects, pd.DataFrame) and c.n_subjects == 200
    assert c.primary_scale == "MADRS"
    assert c.metadata["design"] == "maintenance" and c.metadata["schema_version"] == SCHEMA_VERSION
    assert c.truth["maintenance_hr"] == 0.4
    assert list(c.tables)[:3] == ["subjects", "assessments", "infusions"]
    assert "subjects=200" in repr(c)


def test_loading_never_modifies_the_input_folder(synthetic_dir):
    before = _digest(synthetic_dir / "single")
    ka.load_cohort(synthetic_dir / "single")
    assert _digest(synthetic_dir / "single") == before


def test_ids_keep_leading_zeros(tmp_path, cohort_single):
    subjects = cohort_single.subjects.assign(subject_id=lambda d: "00" + d["subject_id"].str[1:])
    mapping = dict(zip(cohort_single.subjects["subject_id"], subjects["subject_id"], strict=True))
    tables = {k: v.assign(subject_id=v["subject_id"].map(mapping))
              for k, v in cohort_single.tables.items()}
    ka.Cohort(**tables).save(tmp_path / "c")
    loaded = ka.load_cohort(tmp_path / "c")
    assert loaded.subjects["subject_id"].iloc[0].startswith("00")


def test_save_replaces_atomically_and_leaves_no_temporary_folders(tmp_path, cohort_single):
    target = tmp_path / "cohort"
    cohort_single.save(target)
    first = _digest(target)
    cohort_single.save(target)  # replacing an existing folder
    assert _digest(target) == first
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]


def test_missing_required_table_is_named(tmp_path, cohort_single):
    cohort_single.save(tmp_path / "c")
    (tmp_path / "c" / "infusions.csv").unlink()
    with pytest.raises(DataValidationError, match="lacks required table.*infusions") as err:
        ka.load_cohort(tmp_path / "c")
    assert err.value.problems["table"].tolist() == ["infusions"]


def test_missing_folder_and_bad_table_type(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        ka.load_cohort(tmp_path / "nowhere")
    with pytest.raises(ConfigurationError, match="must be a pandas DataFrame"):
        ka.Cohort(subjects=[], assessments=pd.DataFrame(), infusions=pd.DataFrame())


def test_non_utf8_file_gets_a_clear_error(tmp_path, cohort_single):
    cohort_single.save(tmp_path / "c")
    p = tmp_path / "c" / "subjects.csv"
    p.write_bytes(p.read_bytes().replace(b"site_1", "sité_1".encode("latin-1")))
    with pytest.raises(DataValidationError, match="not valid UTF-8"):
        ka.load_cohort(tmp_path / "c")


def test_invalid_cohort_raises_with_every_problem(tmp_path, cohort_single):
    tables = {k: v.copy() for k, v in cohort_single.tables.items()}
    tables["assessments"].loc[0, "score"] = 99
    tables["infusions"].loc[0, "dose"] = -1
    ka.Cohort(**tables).save(tmp_path / "bad")
    with pytest.raises(DataValidationError) as err:
        ka.load_cohort(tmp_path / "bad")
    assert {"assessments", "infusions"} <= set(err.value.problems["table"])
    assert ka.load_cohort(tmp_path / "bad", validate=False).n_subjects == 120


def test_schema_1_0_cohort_still_loads_and_unknown_version_is_refused(tmp_path, synthetic_dir):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(synthetic_dir / "single", old)
    meta = json.loads((old / "metadata.json").read_text())
    meta["schema_version"] = "1.0"
    (old / "metadata.json").write_text(json.dumps(meta))
    cohort = ka.load_cohort(old)
    assert cohort.metadata["schema_version"] == "1.0" and cohort.n_subjects == 120
    meta["schema_version"] = "9.0"
    (old / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match="schema_version '9.0'"):
        ka.load_cohort(old)


def test_absent_covariates_are_warnings_and_read_as_missing(tmp_path, cohort_single):
    tables = {k: v.copy() for k, v in cohort_single.tables.items()}
    tables["subjects"] = tables["subjects"][["subject_id", "arm", "age", "sex"]]
    tables["infusions"] = tables["infusions"][["subject_id", "infusion_number", "day"]]
    tables["assessments"] = tables["assessments"].drop(columns=["visit", "visit_number"])
    folder = ka.Cohort(**tables).save(tmp_path / "lean")
    cohort = ka.load_cohort(folder)
    report = cohort.validate()
    assert report.ok and report.errors.empty
    warned = set(zip(report.warnings["table"], report.warnings["column"], strict=True))
    assert ("subjects", "n_failed_trials") in warned and ("infusions", "dose") in warned
    assert cohort.subjects["bmi"].isna().all()
    a = cohort.assessments.sort_values(["subject_id", "day"])
    first = a.groupby("subject_id")["visit_number"].first()
    assert (first == 0).all() and a["visit"].str.startswith("visit").all()


def test_scale_aliases_are_canonical_after_load(tmp_path, cohort_single):
    tables = {k: v.copy() for k, v in cohort_single.tables.items()}
    a = tables["assessments"]
    a.loc[a.index[::3], "scale"] = "madrs"
    a.loc[a.index[1::3], "scale"] = " Madrs "
    folder = ka.Cohort(**tables, metadata={"primary_scale": "madrs"}).save(tmp_path / "alias")
    cohort = ka.load_cohort(folder)
    assert set(cohort.assessments["scale"]) == {"MADRS"} and cohort.primary_scale == "MADRS"
