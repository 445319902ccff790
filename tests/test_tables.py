"""Tests of report tables: Table 1, subject flow, schedules, privacy and writers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kanalysis import tables
from kanalysis.errors import ConfigurationError, DataValidationError


@pytest.fixture
def subjects() -> pd.DataFrame:
    # Hand-made: 4 ketamine, 3 midazolam, so every number below can be checked by hand.
    return pd.DataFrame(
        {
            "subject_id": ["A", "B", "C", "D", "E", "F", "G"],
            "arm": ["ketamine"] * 4 + ["midazolam"] * 3,
            "age": [30.0, 40.0, 50.0, np.nan, 20.0, 30.0, 40.0],
            "sex": ["F", "F", "M", "other", "M", "M", "F"],
            "anxious_distress": [1, 0, 1, 1, 0, 0, 1],
            "n_failed_trials": [2, 3, 4, 5, 2, 2, 3],
            "disposition": [
                "completed",
                "completed",
                "dropped_out",
                "completed",
                "completed",
                "dropped_out",
                "dropped_out",
            ],
            "dropout_reason": [
                None,
                None,
                "adverse_event",
                None,
                None,
                "lack_of_efficacy",
                "adverse_event",
            ],
        }
    )


@pytest.fixture
def infusions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": ["A", "A", "B", "C", "E", "F", "F", "G"],
            "infusion_number": [1, 2, 1, 1, 1, 1, 2, 1],
            "day": [0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 3.5, 0.0],
            "drug": ["ketamine_iv"] * 4 + ["midazolam_iv"] * 4,
            "dose": [0.5, 0.5, 0.5, 0.5, 0.045, 0.045, 0.045, 0.045],
            "dose_unit": ["mg/kg"] * 8,
            "duration_min": [40.0] * 8,
            "phase": ["induction"] * 8,
        }
    )


def test_table_one_numbers_by_hand(subjects):
    t = tables.table_one(
        subjects,
        continuous={"age": "mean_sd", "n_failed_trials": "median_iqr"},
        categorical=["sex", "anxious_distress"],
    )
    long = t.long.set_index(["variable", "level", "group"])
    age_k = long.loc[("age", "", "ketamine")]
    assert age_k["n"] == 3 and age_k["n_missing"] == 1
    assert age_k["mean"] == pytest.approx(40.0) and age_k["sd"] == pytest.approx(10.0)
    assert age_k["display"] == "40.0 (10.0)"
    nft = long.loc[("n_failed_trials", "", "overall")]
    # R: quantile(c(2,3,4,5,2,2,3), c(.25,.5,.75)) -> 2, 3, 3.5
    assert (nft["q1"], nft["median"], nft["q3"]) == (2.0, 3.0, 3.5)
    assert long.loc[("sex", "F", "ketamine"), "display"] == "2 (50.0%)"
    assert long.loc[("anxious_distress", "", "midazolam"), "count"] == 1
    assert t.group_sizes.to_dict() == {"ketamine": 4, "midazolam": 3, "overall": 7}
    wide = t.to_frame()
    assert list(wide.columns) == [
        "characteristic",
        "ketamine (N=4)",
        "midazolam (N=3)",
        "overall (N=7)",
    ]
    assert wide["characteristic"].tolist() == [
        "Age, years",
        "  Missing",  # one ketamine subject has no age
        "Failed antidepressant trials",
        "Sex",
        "  F",
        "  M",
        "  other",
        "Anxious distress",
    ]


def test_table_one_strict_hides_small_cells(subjects):
    t = tables.table_one(
        subjects, categorical=["sex"], continuous=["age"], privacy="strict", min_cell_count=3
    )
    long = t.long.set_index(["variable", "level", "group"])
    # 'other' (1 subject) is below 3: hidden, and so is a partner cell so it cannot be derived.
    assert long.loc[("sex", "other", "ketamine"), "display"] == "<3"
    sex = t.long[
        t.long["variable"].eq("sex")
        & t.long["group"].eq("ketamine")
        & t.long["summary"].eq("count_percent")
    ]
    assert (sex["display"] == "<3").sum() >= 2
    # Ketamine age has 3 values: shown; a threshold of 4 withholds it.
    assert long.loc[("age", "", "ketamine"), "display"] == "40.0 (10.0)"
    strict4 = tables.table_one(
        subjects, continuous=["age"], categorical=[], privacy="strict", min_cell_count=4
    )
    assert "n<4" in strict4.to_frame().iloc[0].tolist()


def test_table_one_binary_complement_is_protected():
    # 11 of 12 have the feature: showing 11 with N=12 would reveal the single 0.
    subj = pd.DataFrame({"arm": ["k"] * 12, "anxious_distress": [1] * 11 + [0]})
    t = tables.table_one(
        subj,
        continuous=[],
        categorical=["anxious_distress"],
        privacy="strict",
        min_cell_count=5,
        overall=False,
    )
    assert t.long["display"].tolist() == ["<5"]


def test_table_one_errors(subjects):
    with pytest.raises(DataValidationError, match="'cohort'"):
        tables.table_one(subjects, group="cohort")
    with pytest.raises(DataValidationError, match="weight"):
        tables.table_one(subjects, continuous=["weight"])
    with pytest.raises(ConfigurationError, match="privacy"):
        tables.table_one(subjects, privacy="lax")


def test_subject_flow_counts(subjects, infusions):
    flow = tables.subject_flow(subjects, infusions).set_index(["stage", "group"])["n"]
    assert flow[("enrolled", "ketamine")] == 4
    assert flow[("infused", "ketamine")] == 3  # D never infused
    assert flow[("completed", "midazolam")] == 1
    assert flow[("dropped_out", "overall")] == 3
    assert flow[("dropped_out: adverse_event", "overall")] == 2


def test_subject_flow_strict(subjects, infusions):
    flow = tables.subject_flow(subjects, infusions, privacy="strict", min_cell_count=3)
    assert set(flow.loc[flow["suppressed"], "n"]) == {"<3"}
    shown = flow.loc[~flow["suppressed"], "n"].astype(int)
    assert (shown >= 3).all()
    # completed + dropped_out = enrolled, so one hidden cell per arm never stands alone.
    for _, arm in flow.groupby("group"):
        hidden = arm.set_index("stage")["suppressed"]
        assert hidden[["completed", "dropped_out"]].sum() != 1


def test_infusion_schedule(subjects, infusions):
    sched = tables.infusion_schedule(infusions, subjects)
    row = sched[(sched["infusion_number"] == 2) & (sched["group"] == "midazolam")].iloc[0]
    assert row["n_subjects"] == 1 and row["median_day"] == 3.5


def test_assessment_schedule(subjects):
    assessments = pd.DataFrame(
        {
            "subject_id": ["A", "A", "B", "E"],
            "scale": "MADRS",
            "day": [0.0, 1.0, 0.0, 1.2],
            "visit": ["baseline", "day1", "baseline", "day1"],
            "visit_number": [0, 1, 0, 1],
            "score": [30.0, 20.0, 28.0, np.nan],
        }
    )
    sched = tables.assessment_schedule(assessments, subjects)
    assert sched.set_index(["visit", "group"])["n_assessed"].to_dict() == {
        ("baseline", "ketamine"): 2,
        ("day1", "ketamine"): 1,
    }


def test_write_table_csv_and_latex(tmp_path):
    df = pd.DataFrame({"term": ["a_b", "50% & more"], "value": [1.23456, np.nan]})
    paths = tables.write_table(df, tmp_path / "t", caption="Caption", label="tab:t")
    assert [p.name for p in paths] == ["t.csv", "t.tex"]
    assert pd.read_csv(paths[0])["value"].iloc[0] == pytest.approx(1.23456)
    tex = paths[1].read_text()
    assert r"a\_b" in tex and r"50\% \& more" in tex and r"\toprule" in tex
    assert r"\caption{Caption}" in tex and "1.23" in tex
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.tex"]
    with pytest.raises(ConfigurationError, match="docx"):
        tables.write_table(df, tmp_path / "t", formats=("docx",))


def test_table_one_on_bundled_cohort(cohort_serial):
    t = tables.table_one(cohort_serial.subjects)
    sizes = cohort_serial.subjects["arm"].value_counts()
    for arm, n in sizes.items():
        assert t.group_sizes[arm] == n
    age = t.long[(t.long["variable"] == "age") & (t.long["group"] == "overall")].iloc[0]
    assert age["mean"] == pytest.approx(cohort_serial.subjects["age"].mean())


def test_suppress_proportions_hides_count_complement_and_rate():
    df = pd.DataFrame(
        {
            "arm": ["a", "b", "c", "d"],
            "n": [40, 40, 5, 40],
            "responders": [20, 3, 2, 38],
            "rate": [0.5, 0.075, 0.4, 0.95],
        }
    )
    out = tables.suppress_proportions(
        df, "responders", "n", derived=("rate",), privacy="strict", min_cell_count=11
    )
    # a: shown; b: 3 < 11; c: total 5 < 11; d: complement 40 - 38 = 2 < 11.
    assert out["suppressed"].tolist() == [False, True, True, True]
    assert out["responders"].tolist() == ["20", "<11", "<11", "<11"]
    assert out["n"].tolist() == ["40", "40", "<11", "40"]
    assert out["rate"].isna().tolist() == [False, True, True, True]
    same = tables.suppress_proportions(df, "responders", "n", privacy="none")
    assert same is df


def test_pool_rare_counts_subjects_not_rows():
    events = pd.DataFrame(
        {
            "subject_id": ["A"] * 5 + ["B", "C", "D"],
            "term": ["priapism"] * 5 + ["nausea"] * 3,
        }
    )
    out = tables.pool_rare(events, "term", privacy="strict", min_cell_count=2)
    # priapism: 5 events but 1 subject -> pooled; nausea: 3 subjects -> kept.
    assert set(out["term"]) == {"other", "nausea"}
    assert tables.pool_rare(events, "term", privacy="none") is events


def test_table_one_strict_pools_rare_levels():
    subj = pd.DataFrame(
        {"arm": ["k"] * 12 + ["m"] * 12, "sex": ["F"] * 11 + ["intersex"] + ["M"] * 12}
    )
    t = tables.table_one(subj, continuous=[], categorical=["sex"], privacy="strict")
    assert "intersex" not in t.to_frame().to_string()
    assert "other" in set(t.long["level"])


def test_validation_summary_drops_values_in_strict_mode():
    class Report:
        problems = pd.DataFrame(
            {
                "table": ["subjects", "assessments"],
                "column": ["age", "score"],
                "rows": ["[3]", "[7, 9]"],
                "rule": ["age out of range", "score above max"],
                "values": ["[130]", "[99, 75]"],
                "severity": ["warning", "error"],
            }
        )

    strict = tables.validation_summary(Report(), privacy="strict")
    assert list(strict.columns) == ["severity", "table", "column", "rule"]
    assert strict["severity"].tolist() == ["error", "warning"]
    full = tables.validation_summary(Report())
    assert "values" in full.columns and full["values"].iloc[0] == "[99, 75]"


def test_table_one_shows_missing_counts_per_variable(cohort_single):
    import numpy as np

    from kanalysis.tables import table_one

    s = cohort_single.subjects.copy()
    s.loc[s.index[:7], "bmi"] = np.nan
    t = table_one(s)
    miss = t.long[(t.long["variable"] == "bmi") & (t.long["level"] == "Missing")]
    assert miss.set_index("group")["count"]["overall"] == 7
    assert miss["count"].sum() == 14  # by arm (7 in all) plus overall (7)
    assert not ((t.long["variable"] == "age") & (t.long["level"] == "Missing")).any()
    frame = t.to_frame()
    row = frame.index[frame["characteristic"].str.contains("BMI")][0]
    assert frame.loc[row + 1, "characteristic"].strip() == "Missing"
    strict = table_one(s, privacy="strict").long
    hidden = strict[(strict["variable"] == "bmi") & (strict["level"] == "Missing")]
    assert (hidden["display"] == "<11").all()
