"""Validation must list every problem (table, column, rows, rule) at once and modify nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.errors import DataValidationError
from kanalysis.validation import validate_cohort


@pytest.fixture
def tables(cohort_serial):
    return {name: t.copy() for name, t in cohort_serial.tables.items()}


def _report(tables):
    return validate_cohort(ka.Cohort(**tables, metadata={"name": "broken"}))


def _has(report, table, column, rule_part, rows=None):
    p = report.problems
    hit = p[(p["table"] == table) & (p["rule"].str.contains(rule_part, regex=False))]
    if column is not None:
        hit = hit[hit["column"] == column]
    assert not hit.empty, f"no {table}.{column} problem matching {rule_part!r} in:\n{report}"
    if rows is not None:
        listed = str(hit["rows"].iloc[0])
        for r in rows:
            assert str(r) in listed.split(", ") or listed.startswith(str(r)), (r, listed)
    return hit


def test_bundled_cohorts_are_valid(cohort_single, cohort_serial, cohort_maintenance, cohort_clinic):
    for c in (cohort_single, cohort_serial, cohort_maintenance, cohort_clinic):
        report = c.validate()
        assert report.ok, str(report)


def test_missing_column(tables):
    tables["subjects"] = tables["subjects"].drop(columns="arm")
    _has(_report(tables), "subjects", "arm", "required column is missing")


def test_text_in_score_names_rows_and_values(tables):
    a = tables["assessments"].astype({"score": object})
    a.loc[[3, 7], "score"] = ["twelve", "n/a?"]
    tables["assessments"] = a
    hit = _has(_report(tables), "assessments", "score", "must be numeric", rows=[3, 7])
    assert "twelve" in hit["values"].iloc[0]


def test_wrong_dtype_boolean_column(tables):
    ae = tables["adverse_events"].astype({"serious": object})
    ae.loc[0, "serious"] = "maybe"
    tables["adverse_events"] = ae
    _has(_report(tables), "adverse_events", "serious", "true or false", rows=[0])


def test_score_out_of_scale_range(tables):
    tables["assessments"].loc[5, "score"] = 75  # MADRS is 0-60
    hit = _has(_report(tables), "assessments", "score", "MADRS score must lie between 0 and 60",
               rows=[5])
    assert "75" in hit["values"].iloc[0]


def test_duplicate_subject_key(tables):
    s = tables["subjects"]
    tables["subjects"] = pd.concat([s, s.iloc[[0]]], ignore_index=True)
    _has(_report(tables), "subjects", "subject_id", "duplicate key", rows=[0, len(s)])


def test_duplicated_visit_with_different_scores(tables):
    a = tables["assessments"]
    dup = a.iloc[[0]].assign(score=a["score"].iloc[0] + 5)
    tables["assessments"] = pd.concat([a, dup], ignore_index=True)
    _has(_report(tables), "assessments", "subject_id, scale, visit_number", "duplicate key")


def test_orphan_subject(tables):
    tables["assessments"].loc[2, "subject_id"] = "GHOST"
    hit = _has(_report(tables), "assessments", "subject_id", "not found in subjects", rows=[2])
    assert "GHOST" in hit["values"].iloc[0]


@pytest.mark.parametrize("dose", [0.0, -0.5])
def test_zero_or_negative_dose(tables, dose):
    tables["infusions"].loc[4, "dose"] = dose
    _has(_report(tables), "infusions", "dose", "must be > 0", rows=[4])


def test_nan_key(tables):
    tables["infusions"].loc[1, "subject_id"] = np.nan
    _has(_report(tables), "infusions", "subject_id", "missing value", rows=[1])


def test_unknown_scale(tables):
    tables["assessments"].loc[0, "scale"] = "MADRSX"
    _has(_report(tables), "assessments", "scale", "unknown scale 'MADRSX'", rows=[0])


def test_empty_table(tables):
    tables["infusions"] = tables["infusions"].iloc[0:0]
    _has(_report(tables), "infusions", None, "table is empty")


def test_infusion_after_dropout(tables):
    s = tables["subjects"]
    sid = s.loc[s["disposition"] == "completed", "subject_id"].iloc[0]
    s.loc[s["subject_id"] == sid, ["disposition", "dropout_day", "dropout_reason"]] = [
        "dropped_out", 3.0, "adverse event"]
    _has(_report(tables), "infusions", "day", "after the subject's dropout_day")


def test_non_numeric_day(tables):
    a = tables["assessments"].astype({"day": object})
    a.loc[9, "day"] = "2024-01-05"
    tables["assessments"] = a
    _has(_report(tables), "assessments", "day", "must be numeric", rows=[9])


def test_visit_numbers_must_follow_days(tables):
    a = tables["assessments"]
    sid = a["subject_id"].iloc[0]
    rows = a.index[a["subject_id"] == sid]
    a.loc[rows[2], "day"] = -5.0  # a later visit number before an earlier one
    _has(_report(tables), "assessments", "visit_number", "increase with day")


def test_value_not_in_allowed_set_and_out_of_range_covariate(tables):
    s = tables["subjects"]
    s.loc[0, "sex"] = "female"
    s.loc[1, "age"] = 7
    report = _report(tables)
    _has(report, "subjects", "sex", "must be one of", rows=[0])
    _has(report, "subjects", "age", "between 18 and 100", rows=[1])


def test_fractional_integer_and_dropout_without_day(tables):
    s = tables["subjects"]
    s["n_failed_trials"] = s["n_failed_trials"].astype(float)
    s.loc[2, "n_failed_trials"] = 2.5
    first = s.index[s["disposition"] == "completed"][0]
    s.loc[first, "disposition"] = "dropped_out"
    report = _report(tables)
    _has(report, "subjects", "n_failed_trials", "whole number", rows=[2])
    _has(report, "subjects", "dropout_day", "needs a dropout_day", rows=[first])


def test_vitals_inverted_pressure_and_unknown_infusion(tables):
    v = tables["vitals"]
    v.loc[0, ["sbp", "dbp"]] = [90, 120]
    v.loc[1, "infusion_number"] = 99
    report = _report(tables)
    _has(report, "vitals", "sbp", "must exceed diastolic", rows=[0])
    _has(report, "vitals", "infusion_number", "no such infusion", rows=[1])


def test_all_problems_reported_at_once_and_input_untouched(tables):
    tables["assessments"].loc[5, "score"] = 75
    tables["infusions"].loc[4, "dose"] = 0
    tables["subjects"].loc[0, "sex"] = "x"
    before = {k: v.copy() for k, v in tables.items()}
    report = _report(tables)
    assert len(report.errors) >= 3
    assert set(report.errors["table"]) >= {"assessments", "infusions", "subjects"}
    for k, v in tables.items():
        pd.testing.assert_frame_equal(v, before[k])
    with pytest.raises(DataValidationError) as err:
        report.raise_if_errors()
    text = str(err.value)
    assert "assessments.score" in text and "infusions.dose" in text and "subjects.sex" in text
    assert set(err.value.problems.columns) >= {"table", "column", "rows", "rule", "values"}
    assert "| error | infusions | dose |" in report.to_markdown()
    assert "<table" in report.to_html()


def test_long_problem_lists_are_abbreviated_with_a_count(tables):
    tables["assessments"]["score"] = 99.0
    hit = _has(_report(tables), "assessments", "score", "must lie between")
    assert f"({len(tables['assessments'])} in all)" in hit["rows"].iloc[0]
