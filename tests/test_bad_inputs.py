"""No input that breaks us: malformed inputs to `validate`, `synth` and `import` (mapping, ADaM,
REDCap) end in a clear message and a non-zero exit, never a traceback, a hang or a changed file.

Each case builds its input in a fresh folder, runs the command in-process (``cli.main``) and checks

- the exit code is not 0;
- no traceback is printed;
- the message names the problem (a phrase of the rule);
- nothing under the test folder changed (every file hashed before and after), so no input and no
  foreign folder was touched and no partial output was left.

The `run` command's bad inputs are tested with the runner (tests/test_runner.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from kanalysis.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


# --- material ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "cohort"
    assert main(["synth", "--design", "single", "--n-subjects", "12", "--seed", "1",
                 "--out", str(out)]) == 0
    return out


def _cohort(tmp: Path, small: Path) -> Path:
    target = tmp / "cohort"
    shutil.copytree(small, target)
    return target


def _edit_csv(folder: Path, table: str, func) -> None:
    df = pd.read_csv(folder / f"{table}.csv", dtype=object)
    func(df)
    df.to_csv(folder / f"{table}.csv", index=False)


def _to_parquet(folder: Path, table: str, func) -> None:
    df = pd.read_csv(folder / f"{table}.csv")
    func(df)
    (folder / f"{table}.csv").unlink()
    df.to_parquet(folder / f"{table}.parquet", index=False)


_EXPORT = """id,type,date,time,score,dose
A1,infusion,2024-03-01,09:00,,0.5
A1,PHQ9,2024-02-29,09:00,18,
A1,PHQ9,2024-03-02,09:00,12,
B2,infusion,2024-03-04,10:30,,0.5
B2,PHQ9,2024-03-04,10:00,20,
B2,PHQ9,2024-03-05,10:00,15,
"""
_MAPPING = """[cohort]
name = "tiny"

[infusions]
file = "export.csv"
where = { type = "infusion" }
ignore = ["score"]
[infusions.columns]
subject_id = "id"
date = "date"
time = "time"
dose = "dose"
[infusions.constants]
drug = "ketamine_iv"
dose_unit = "mg/kg"
duration_min = 40

[assessments]
file = "export.csv"
where = { type = "PHQ9" }
ignore = ["dose"]
[assessments.columns]
subject_id = "id"
date = "date"
time = "time"
scale = "type"
score = "score"

[subjects.constants]
arm = "ketamine"
"""


def _clinic(tmp: Path, export: str = _EXPORT, mapping: str = _MAPPING) -> Path:
    folder = tmp / "export"
    folder.mkdir()
    (folder / "export.csv").write_text(export)
    (folder / "mapping.toml").write_text(mapping)
    return folder


def _adam(tmp: Path) -> Path:
    folder = tmp / "adam"
    shutil.copytree(FIXTURES / "adam", folder)
    return folder


def _adam_edit(folder: Path, name: str, func) -> None:
    df, _ = pyreadstat.read_xport(str(folder / f"{name}.xpt"))
    df = func(df)
    pyreadstat.write_xport(df, str(folder / f"{name}.xpt"), table_name=name.upper(),
                           file_format_version=5)


def _redcap(tmp: Path) -> Path:
    folder = tmp / "redcap"
    shutil.copytree(FIXTURES / "redcap", folder)
    shutil.copy(ROOT / "examples" / "mapping_redcap.toml", folder / "mapping.toml")
    return folder


def _redcap_argv(folder: Path, tmp: Path, records: str = "records_raw.csv",
                 mapping: str = "mapping.toml") -> list[str]:
    return ["import", "--redcap", str(folder / records), "--dictionary",
            str(folder / "dictionary.csv"), "--mapping", str(folder / mapping),
            "--out", str(tmp / "out")]


def _edit_records(folder: Path, func) -> None:
    df = pd.read_csv(folder / "records_raw.csv", dtype=str, keep_default_na=False)
    func(df)
    df.to_csv(folder / "records_raw.csv", index=False)


def _fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


# --- the cases -------------------------------------------------------------------------------------
# Each case: (setup(tmp, small) -> argv, phrase the message must contain).
def _v(folder: Path) -> list[str]:
    return ["validate", str(folder)]


def c_empty_table_file(t, s):
    c = _cohort(t, s)
    (c / "subjects.csv").write_bytes(b"")
    return _v(c), "is empty"


def c_header_only_required_table(t, s):
    c = _cohort(t, s)
    (c / "assessments.csv").write_text("subject_id,scale,day,visit,visit_number,score\n")
    return _v(c), "table is empty"


def c_ragged_row(t, s):
    c = _cohort(t, s)
    with open(c / "infusions.csv", "a") as h:
        h.write("S0001,9,20,ketamine_iv,0.5,mg/kg,40,induction,EXTRA,MORE\n")
    return _v(c), "malformed CSV"


def c_unclosed_quote(t, s):
    c = _cohort(t, s)
    with open(c / "subjects.csv", "a") as h:
        h.write('S9999,"ketamine,site_1,40\n')
    return _v(c), "malformed CSV"


def c_corrupt_parquet(t, s):
    c = _cohort(t, s)
    (c / "vitals.csv").unlink()
    (c / "vitals.parquet").write_bytes(b"PAR1 this is not parquet at all" * 10)
    return _v(c), "cannot be read as Parquet"


def c_folder_as_table(t, s):
    c = _cohort(t, s)
    (c / "adverse_events.csv").unlink()
    (c / "adverse_events.csv").mkdir()
    return _v(c), "is a folder, not a file"


def c_fifo_as_table(t, s):
    c = _cohort(t, s)
    _fifo(c / "assessments.csv")
    return _v(c), "FIFO"


def c_metadata_list(t, s):
    c = _cohort(t, s)
    (c / "metadata.json").write_text("[1, 2, 3]")
    return _v(c), "must hold a JSON object"


def c_metadata_latin1(t, s):
    c = _cohort(t, s)
    (c / "metadata.json").write_bytes('{"name": "Tromsø"}'.encode("latin-1"))
    return _v(c), "not valid UTF-8"


def c_metadata_not_json(t, s):
    c = _cohort(t, s)
    (c / "metadata.json").write_text("{name: single")
    return _v(c), "not valid JSON"


def c_truth_malformed(t, s):
    c = _cohort(t, s)
    (c / "truth.json").write_text('{"seed": 1,,}')
    return _v(c), "truth.json: is not valid JSON"


def c_metadata_unknown_schema(t, s):
    c = _cohort(t, s)
    meta = json.loads((c / "metadata.json").read_text())
    (c / "metadata.json").write_text(json.dumps({**meta, "schema_version": "7.3"}))
    return _v(c), "schema_version '7.3'"


def c_metadata_scale_not_text(t, s):
    c = _cohort(t, s)
    meta = json.loads((c / "metadata.json").read_text())
    (c / "metadata.json").write_text(json.dumps({**meta, "primary_scale": ["MADRS"]}))
    return _v(c), "primary_scale must be a text value"


def c_metadata_min_cell_count(t, s):
    c = _cohort(t, s)
    meta = json.loads((c / "metadata.json").read_text())
    (c / "metadata.json").write_text(json.dumps({**meta, "min_cell_count": "eleven"}))
    return _v(c), "min_cell_count must be a whole number"


def c_duplicated_header(t, s):
    c = _cohort(t, s)
    text = (c / "assessments.csv").read_text().splitlines()
    text[0] = text[0].replace("visit_number", "score")
    (c / "assessments.csv").write_text("\n".join(text) + "\n")
    return _v(c), "duplicated column name"


def c_csv_and_parquet(t, s):
    c = _cohort(t, s)
    pd.read_csv(c / "assessments.csv").to_parquet(c / "assessments.parquet")
    return _v(c), "both assessments.csv and assessments.parquet"


def c_nul_byte_in_score(t, s):
    c = _cohort(t, s)
    lines = (c / "assessments.csv").read_bytes().split(b"\n")
    parts = lines[1].split(b",")
    parts[-1] = b"3\x00 2"
    lines[1] = b",".join(parts)
    (c / "assessments.csv").write_bytes(b"\n".join(lines))
    return _v(c), "NUL byte (line 2)"


def c_infinite_day(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "assessments", lambda d: d.__setitem__("day", d["day"].where(d.index != 2, "inf")))
    return _v(c), "must be a finite number"


def c_huge_day(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "assessments", lambda d: d.__setitem__("day", d["day"].where(d.index != 2, "1e308")))
    return _v(c), "study day beyond"


def c_infinite_dose(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "infusions", lambda d: d.__setitem__("dose", d["dose"].where(d.index != 1, "-inf")))
    return _v(c), "must be a finite number"


def c_huge_dose(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "infusions", lambda d: d.__setitem__("dose", d["dose"].where(d.index != 1, "1e308")))
    return _v(c), "must be <= 10000"


def c_unknown_drug_zero_duration(t, s):
    c = _cohort(t, s)

    def edit(d):
        d.loc[0, "drug"] = "mystery_iv"
        d.loc[0, "duration_min"] = "0"
    _edit_csv(c, "infusions", edit)
    return _v(c), "duration 0 is allowed only for intranasal"


def c_datetime_parquet_day(t, s):
    c = _cohort(t, s)
    _to_parquet(c, "assessments", lambda d: d.__setitem__(
        "day", pd.Timestamp("2024-01-01") + pd.to_timedelta(d["day"], unit="D")))
    return _v(c), "holds date-times"


def c_timedelta_parquet_day(t, s):
    c = _cohort(t, s)
    _to_parquet(c, "infusions", lambda d: d.__setitem__("day", pd.to_timedelta(d["day"], unit="D")))
    return _v(c), "holds durations"


def c_missing_required_table(t, s):
    c = _cohort(t, s)
    (c / "infusions.csv").unlink()
    return _v(c), "infusions: required table is missing"


def c_missing_structural_column(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "assessments", lambda d: d.drop(columns="score", inplace=True))
    return _v(c), "required column is missing"


def c_unknown_scale(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "assessments", lambda d: d.__setitem__("scale", d["scale"].where(d.index != 0, "MADRS-X")))
    return _v(c), "unknown scale 'MADRS-X'"


def c_score_out_of_range(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "assessments", lambda d: d.__setitem__("score", d["score"].where(d.index != 0, "75")))
    return _v(c), "MADRS score must lie between 0 and 60"


def c_text_in_number(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "subjects", lambda d: d.__setitem__("age", d["age"].where(d.index != 0, "forty")))
    return _v(c), "must be numeric"


def c_duplicate_subject(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "subjects", lambda d: d.__setitem__("subject_id", d["subject_id"].where(d.index != 1, d.loc[0, "subject_id"])))
    return _v(c), "duplicate key"


def c_orphan_rows(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "assessments", lambda d: d.__setitem__("subject_id", d["subject_id"].where(d.index != 0, "NOBODY")))
    return _v(c), "subject_id not found in subjects"


def c_first_infusion_not_day_0(t, s):
    c = _cohort(t, s)
    _edit_csv(c, "infusions", lambda d: d.__setitem__("day", d["day"].where(d.index != 0, "1.5")))
    return _v(c), "first infusion must be day 0"


def c_validate_a_file(t, s):
    f = t / "cohort.csv"
    f.write_text("a,b\n")
    return _v(f), "is a file, not a folder"


def c_validate_missing_folder(t, s):
    return _v(t / "nowhere"), "does not exist"


def c_validate_report_inside_input(t, s):
    c = _cohort(t, s)
    return ["validate", str(c), "--report", str(c / "subjects.csv")], "inside an input folder"


def c_validate_report_over_foreign_file(t, s):
    c = _cohort(t, s)
    mine = t / "notes.md"
    mine.write_text("# my notes\n")
    return ["validate", str(c), "--report", str(mine)], "not written by kanalysis"


# synth
def _synth(*extra: str) -> list[str]:
    return ["synth", "--design", "single", "--n-subjects", "10", *extra]


def c_synth_negative_seed(t, s):
    return _synth("--seed", "-1", "--out", str(t / "o")), "seed must be a whole number"


def c_synth_empty_out(t, s):
    return _synth("--out", ""), "the path is empty"


def c_synth_out_dot(t, s):
    (t / "work").mkdir()
    (t / "work" / "paper.tex").write_text("draft")
    os.chdir(t / "work")
    return _synth("--out", "."), "already exists"


def c_synth_out_foreign_folder(t, s):
    (t / "thesis").mkdir()
    (t / "thesis" / "chapter.docx").write_text("years of work")
    return _synth("--out", str(t / "thesis")), "not a kanalysis cohort folder"


def c_synth_out_under_file(t, s):
    (t / "file.txt").write_text("x")
    return _synth("--out", str(t / "file.txt" / "cohort")), "which is a file, not a folder"


def c_synth_out_two_levels_under_file(t, s):
    (t / "notes.txt").write_text("x")
    return _synth("--out", str(t / "notes.txt" / "runs" / "cohort")), \
        "lies under"


def c_synth_out_not_writable(t, s):
    return _synth("--out", "/proc/kanalysis-test/cohort"), "cannot write"


def c_synth_out_existing_file(t, s):
    (t / "cohort").write_text("precious")
    return _synth("--out", str(t / "cohort")), "is an existing file"


def c_synth_out_fifo(t, s):
    _fifo(t / "pipe")
    return _synth("--out", str(t / "pipe")), "FIFO"


def c_synth_out_symlink(t, s):
    (t / "real").mkdir()
    (t / "link").symlink_to(t / "real", target_is_directory=True)
    return _synth("--out", str(t / "link")), "symbolic link"


def c_synth_too_many_subjects(t, s):
    return ["synth", "--design", "clinic", "--n-subjects", "1e9", "--out", str(t / "o")], \
        "would need about"


def c_synth_one_subject(t, s):
    return ["synth", "--design", "single", "--n-subjects", "1", "--out", str(t / "o")], \
        "at least 2"


def c_synth_fractional_subjects(t, s):
    return ["synth", "--design", "single", "--n-subjects", "2.5", "--out", str(t / "o")], \
        "expected a whole number"


def c_synth_unknown_design(t, s):
    return ["synth", "--design", "weekly", "--out", str(t / "o")], "invalid choice"


# import: clinic mapping
def _imp(folder: Path, t: Path, *extra: str) -> list[str]:
    return ["import", "--mapping", str(folder / "mapping.toml"), "--out", str(t / "out"), *extra]


def _mapping_case(old: str, new: str, phrase: str):
    def case(t, s):
        assert old in _MAPPING
        f = _clinic(t, mapping=_MAPPING.replace(old, new, 1))
        return _imp(f, t), phrase
    case.__name__ = f"c_mapping_{phrase[:20]}"
    return case


c_mapping_list_constant = _mapping_case('drug = "ketamine_iv"', 'drug = ["ketamine_iv"]',
                                        "must be one value")
c_mapping_integer_date_format = _mapping_case('name = "tiny"', 'name = "tiny"\n[defaults]\ndate_format = 20240101',
                                              "`date_format` must be text")
c_mapping_string_where = _mapping_case('where = { type = "infusion" }', 'where = "infusion"',
                                       "`where` must be a table")
c_mapping_text_min_cell_count = _mapping_case('name = "tiny"', 'name = "tiny"\nmin_cell_count = "eleven"',
                                              "min_cell_count must be a whole number")
c_mapping_ignore_string = _mapping_case('ignore = ["score"]', 'ignore = "score"',
                                        "`ignore` must be a list")
c_mapping_unknown_section = _mapping_case('[cohort]', '[cohrot]', "unknown section [cohrot]")
c_mapping_unknown_column = _mapping_case('dose = "dose"', 'dosage = "dose"',
                                         "unknown kanalysis column 'dosage'")
c_mapping_bad_encoding = _mapping_case('name = "tiny"', 'name = "tiny"\n[defaults]\nencoding = "utf-99"',
                                       "unknown encoding")
c_mapping_not_bool = _mapping_case('name = "tiny"', 'name = "tiny"\n[defaults]\npseudonymise_ids = "maybe"',
                                   "must be true or false")
c_mapping_toml_syntax = _mapping_case('[cohort]', '[cohort', "cannot be parsed")
c_mapping_column_list = _mapping_case('score = "score"', 'score = ["score"]',
                                      "must name one column")


def c_mapping_wrong_delimiter(t, s):
    f = _clinic(t, export=_EXPORT.replace(",", ";"))
    return _imp(f, t), "seems to be semicolon-separated"


def c_mapping_is_folder(t, s):
    (t / "m.toml").mkdir()
    return ["import", "--mapping", str(t / "m.toml"), "--out", str(t / "out")], "is a folder"


def c_mapping_is_fifo(t, s):
    _fifo(t / "m.toml")
    return ["import", "--mapping", str(t / "m.toml"), "--out", str(t / "out")], "FIFO"


def c_mapping_missing(t, s):
    return ["import", "--mapping", str(t / "none.toml"), "--out", str(t / "out")], "not found"


def c_import_out_holds_inputs(t, s):
    f = _clinic(t)
    return ["import", "--mapping", str(f / "mapping.toml"), "--out", str(f)], "contains an input"


def c_import_out_is_the_export(t, s):
    f = _clinic(t)
    return ["import", "--mapping", str(f / "mapping.toml"), "--out", str(f / "export.csv")], \
        "is an input"


def c_import_out_parent_of_inputs(t, s):
    f = _clinic(t)
    return ["import", "--mapping", str(f / "mapping.toml"), "--out", str(t)], \
        "contains an input"


def c_import_report_over_export(t, s):
    f = _clinic(t)
    return _imp(f, t, "--report", str(f / "export.csv")), "is an input"


def c_import_id_key_over_mapping(t, s):
    f = _clinic(t)
    return _imp(f, t, "--id-key", str(f / "mapping.toml")), "is an input"


def c_import_out_foreign_folder(t, s):
    f = _clinic(t)
    (t / "out").mkdir()
    (t / "out" / "data.xlsx").write_text("keep me")
    return _imp(f, t), "not a kanalysis cohort folder"


def c_clock_time_decimal(t, s):
    f = _clinic(t, export=_EXPORT.replace("2024-03-01,09:00", "2024-03-01,9.55"))
    return _imp(f, t), "clock time must be HH:MM"


def c_clock_time_75_minutes(t, s):
    f = _clinic(t, export=_EXPORT.replace("2024-03-04,10:30", "2024-03-04,10:75"))
    return _imp(f, t), "clock time must be HH:MM"


def c_export_empty(t, s):
    f = _clinic(t, export="")
    return _imp(f, t), "is empty"


def c_export_ragged(t, s):
    f = _clinic(t, export=_EXPORT + "B2,PHQ9,2024-03-06,10:00,14,,extra,cells\n")
    return _imp(f, t), "malformed CSV"


def c_export_duplicated_header(t, s):
    f = _clinic(t, export=_EXPORT.replace("score,dose", "score,score", 1))
    return _imp(f, t), "duplicated column name"


def c_export_nul(t, s):
    f = _clinic(t, export=_EXPORT.replace("18", "1\x008"))
    return _imp(f, t), "NUL bytes"


def c_export_is_fifo(t, s):
    f = _clinic(t)
    _fifo(f / "export.csv")
    return _imp(f, t), "FIFO"


# import: ADaM
def _adam_argv(folder: Path, t: Path, *extra: str) -> list[str]:
    return ["import", "--adam", str(folder), "--out", str(t / "out"), *extra]


def c_adam_missing_folder(t, s):
    return _adam_argv(t / "nowhere", t), "does not exist"


def c_adam_zero_doses(t, s):
    a = _adam(t)
    _adam_edit(a, "adex", lambda d: d.assign(EXDOSE=0.0))
    return _adam_argv(a, t), "no exposure record with a dose > 0"


def c_adam_no_dates(t, s):
    a = _adam(t)
    _adam_edit(a, "adex", lambda d: d.drop(columns=["ASTDTM", "ASTDT", "AENDTM"]))
    _adam_edit(a, "adsl", lambda d: d.drop(columns=["TRTSDT"]))
    return _adam_argv(a, t), "cannot be placed in time"


def c_adam_bad_scale_flag(t, s):
    return _adam_argv(_adam(t), t, "--scale", "MADRSTOT"), "--scale expects NAME=VALUE"


def c_adam_unreadable(t, s):
    a = _adam(t)
    (a / "adqs.xpt").write_bytes(b"not a transport file\n" * 30)
    return _adam_argv(a, t), "cannot read adqs.xpt"


def c_adam_negative_duration(t, s):
    return _adam_argv(_adam(t), t, "--default-duration-min", "-5"), "must be a number of minutes"


def c_adam_unknown_population(t, s):
    return _adam_argv(_adam(t), t, "--population", "ITTFL"), "population flag not found"


def c_adam_flags_remove_everything(t, s):
    a = _adam(t)
    _adam_edit(a, "adqs", lambda d: d.assign(ANL01FL="N"))
    return _adam_argv(a, t), "analysis flags left no record"


def c_adam_required_dataset_missing(t, s):
    a = _adam(t)
    (a / "adsl.xpt").unlink()
    return _adam_argv(a, t), "required dataset missing: no adsl"


# import: REDCap
def c_redcap_not_a_dictionary(t, s):
    r = _redcap(t)
    (r / "dictionary.csv").write_text("name,type\nrecord_id,text\n")
    return _redcap_argv(r, t), "not a REDCap data dictionary"


def c_redcap_foreign_records(t, s):
    r = _redcap(t)
    (r / "records_raw.csv").write_text("patient,score\n1,3\n")
    return _redcap_argv(r, t), "matches neither the variable names nor the field labels"


def c_redcap_empty_records(t, s):
    r = _redcap(t)
    (r / "records_raw.csv").write_text("")
    return _redcap_argv(r, t), "is empty"


def c_redcap_unknown_instrument(t, s):
    r = _redcap(t)
    m = (r / "mapping.toml").read_text().replace('instrument = "infusion"', 'instrument = "infusions"')
    (r / "mapping.toml").write_text(m)
    return _redcap_argv(r, t), "is not a form of the data dictionary"


def c_redcap_identifier_copied(t, s):
    r = _redcap(t)
    m = (r / "mapping.toml").read_text().replace('site = "site"', 'site = "last_name"')
    (r / "mapping.toml").write_text(m)
    return _redcap_argv(r, t), "flagged identifier = y"


def c_redcap_unknown_choice(t, s):
    r = _redcap(t)
    _edit_records(r, lambda d: d.__setitem__("sex", d["sex"].where(d.index != 0, "9")))
    return _redcap_argv(r, t), "value is not one of its choices"


def c_redcap_item_out_of_range(t, s):
    r = _redcap(t)
    d = pd.read_csv(r / "dictionary.csv", dtype=str, keep_default_na=False)
    d.loc[d["Variable / Field Name"] == "phq9_3", "Choices, Calculations, OR Slider Labels"] += " | 7, Always"
    d.to_csv(r / "dictionary.csv", index=False)

    def edit(df):
        row = df.index[df["phq9_3"] != ""][0]
        df.loc[row, "phq9_3"] = "7"
    _edit_records(r, edit)
    return _redcap_argv(r, t), "item scores lie between 0 and 3"


def c_redcap_date_wrong_format(t, s):
    r = _redcap(t)

    def edit(df):
        row = df.index[df["inf_datetime"] != ""][0]
        df.loc[row, "inf_datetime"] = "next Tuesday"
    _edit_records(r, edit)
    return _redcap_argv(r, t), "validation type datetime_ymd"


def c_redcap_without_dictionary(t, s):
    r = _redcap(t)
    return ["import", "--redcap", str(r / "records_raw.csv"), "--mapping",
            str(r / "mapping.toml"), "--out", str(t / "out")], "--redcap needs --dictionary"


def c_redcap_records_fifo(t, s):
    r = _redcap(t)
    _fifo(r / "records_raw.csv")
    return _redcap_argv(r, t), "FIFO"


def c_redcap_mapping_list_instrument_for_infusions(t, s):
    r = _redcap(t)
    m = (r / "mapping.toml").read_text().replace('instrument = "infusion"',
                                                 'instrument = ["infusion", "phq9"]')
    (r / "mapping.toml").write_text(m)
    return _redcap_argv(r, t), "only [subjects] may join several instruments"


def c_redcap_unmapped_field(t, s):
    r = _redcap(t)
    m = (r / "mapping.toml").read_text().replace('ignore = ["phq9_total"]', "ignore = []")
    (r / "mapping.toml").write_text(m)
    return _redcap_argv(r, t), "unmapped field"


CASES = {name[2:]: func for name, func in sorted(globals().items())
         if name.startswith("c_") and callable(func)}


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p.relative_to(root))] = f"mode {stat.S_IFMT(st.st_mode)}"
    return out


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""
    def boom(signum, frame):
        raise TimeoutError(f"command still running after {seconds} s: it hangs")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_there_are_at_least_60_kinds_of_bad_input():
    assert len(CASES) >= 60, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_a_clear_error(name, tmp_path, small_cohort, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "case"
    work.mkdir()
    argv, phrase = CASES[name](work, small_cohort)
    before = _tree(work)
    with _deadline(60):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse refusals
            code = exit_.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert code not in (0, None), f"exit 0 for {name}:\n{text}"
    assert "Traceback" not in text
    assert phrase in text, f"{name}: {phrase!r} not in\n{text}"
    assert _tree(work) == before, f"{name}: files changed"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_messages_show_paths_as_given(name, tmp_path, small_cohort, capsys, monkeypatch,
                                                tmp_path_factory):
    """The same cases with every path given relative to the working folder: no message may show
    the machine's absolute path of any of them (resolved, real or otherwise)."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "case"
    work.mkdir()
    argv, _ = CASES[name](work, small_cohort)
    base = tmp_path_factory.getbasetemp()
    roots = {str(base), os.path.realpath(base)}
    here = os.getcwd()  # a case may have moved into its own folder
    argv = [os.path.relpath(a, here) if any(a.startswith(r) for r in roots) else a for a in argv]
    with _deadline(60):
        try:
            main(argv)
        except SystemExit:
            pass
    out = capsys.readouterr()
    text = out.out + out.err
    for root in roots:
        assert root not in text, f"{name}: absolute path in the message:\n{text}"


# --- bad-looking inputs that are handled correctly (exit 0) --------------------------------------
def test_pm_clock_time_is_read_as_afternoon(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = _clinic(tmp_path, export=_EXPORT.replace("2024-03-04,10:30", "2024-03-04,9:10 PM")
                .replace("2024-03-05,10:00", "2024-03-05,21:10"))
    assert main(_imp(f, tmp_path)) == 0
    import kanalysis as ka

    a = ka.load_cohort(tmp_path / "out").assessments
    # 10:00 on the day of the 9:10 PM infusion is 11 h 10 min before it; 21:10 next day is day 1.
    assert np.isclose(a["day"], -(11 + 10 / 60) / 24).sum() == 1
    assert np.isclose(a["day"], 1.0).sum() == 2


def test_false_as_text_in_mapping_means_false(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = _clinic(tmp_path, mapping=_MAPPING.replace('name = "tiny"',
                                                   'name = "tiny"\n[defaults]\npseudonymise_ids = "false"'))
    assert main(_imp(f, tmp_path)) == 0
    import kanalysis as ka

    assert set(ka.load_cohort(tmp_path / "out").subjects["subject_id"]) == {"A1", "B2"}


def test_adam_text_aval_is_a_warning_not_silent(tmp_path, capsys):
    a = _adam(tmp_path)

    def edit(d):
        d = d.copy()
        d["AVAL"] = d["AVAL"].map(lambda v: f"{v:g}")
        target = d.index[(d["PARAMCD"] == "MADRSTOT") & (d["ANL01FL"] == "Y")
                         & (d["DTYPE"].fillna("") == "")][3]
        d.loc[target, "AVAL"] = "<5"
        return d
    _adam_edit(a, "adqs", edit)
    assert main(_adam_argv(a, tmp_path)) == 0
    report = (tmp_path / "out" / "import_report.md").read_text()
    assert "AVAL is not a number (e.g. '<5')" in report


def test_scale_alias_in_a_cohort_gives_the_same_results(tmp_path, small_cohort):
    import kanalysis as ka
    from kanalysis.outcomes import baseline_scores

    c = _cohort(tmp_path, small_cohort)
    _edit_csv(c, "assessments", lambda d: d.__setitem__("scale", np.where(d.index % 2 == 0, "madrs", "MADRS")))
    ref = baseline_scores(ka.load_cohort(small_cohort))
    got = baseline_scores(ka.load_cohort(c))
    assert len(got) == len(ref) == 12
