"""Tests for kanalysis.outcomes.

Rates, Newcombe differences and the adjusted odds ratio are checked against R
(tests/reference/survival/outcomes_reference.R: prop.test, glm); derivations against small
hand-built tables whose answers are worked out in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kanalysis import outcomes as oc
from kanalysis.cohort import Cohort
from kanalysis.errors import ConfigurationError, DataValidationError

REF_DIR = Path(__file__).parent / "reference" / "survival"
REF = json.loads((REF_DIR / "outcomes_reference.json").read_text())
STATUS = pd.read_csv(REF_DIR / "inputs" / "synthetic_single_status.csv")


def _assessments(rows):
    return pd.DataFrame(rows, columns=["subject_id", "scale", "day", "visit", "visit_number",
                                       "score"])


# ------------------------------------------------------------------------------------------
# derivations
# ------------------------------------------------------------------------------------------
def test_baseline_is_last_non_missing_score_on_or_before_first_infusion():
    a = _assessments([
        ("A", "MADRS", -7.0, "screening", 0, 34.0),
        ("A", "MADRS", -0.04, "baseline", 1, 32.0),
        ("A", "MADRS", 1.0, "day1", 2, 10.0),
        ("B", "MADRS", -7.0, "screening", 0, 30.0),
        ("B", "MADRS", 0.0, "baseline", 1, np.nan),  # missing baseline: fall back to screening
        ("B", "MADRS", 1.0, "day1", 2, 20.0),
        ("C", "MADRS", 1.0, "day1", 1, 20.0),  # no baseline at all
    ])
    base = oc.baseline_scores(a, "MADRS").set_index("subject_id")
    assert base.loc["A", "baseline"] == 32 and base.loc["A", "baseline_day"] == -0.04
    assert base.loc["B", "baseline"] == 30 and base.loc["B", "baseline_day"] == -7
    assert "C" not in base.index


def test_responder_status_change_percent_response_remission():
    a = _assessments([
        ("A", "MADRS", -0.04, "baseline", 0, 30.0),
        ("A", "MADRS", 1.0, "day1", 1, 15.0),  # exactly 50%: response
        ("A", "MADRS", 7.0, "day7", 2, 16.0),  # 46.7%: no response
        ("A", "MADRS", 14.0, "day14", 3, 10.0),  # remission (<= 10)
        ("A", "MADRS", 21.0, "day21", 4, np.nan),  # missed visit: outcomes missing
        ("Z", "MADRS", -0.04, "baseline", 0, 0.0),  # baseline 0
        ("Z", "MADRS", 1.0, "day1", 1, 0.0),
    ])
    s = oc.responder_status(a, "MADRS")
    sa = s[s["subject_id"] == "A"].set_index("visit")
    assert sa.loc["day1", "change"] == -15 and sa.loc["day1", "percent_change"] == -50
    assert sa["response"].tolist()[:3] == [1.0, 0.0, 1.0]
    assert sa["remission"].tolist()[:3] == [0.0, 0.0, 1.0]
    assert np.isnan(sa.loc["day21", "response"]) and np.isnan(sa.loc["day21", "remission"])
    z = s[s["subject_id"] == "Z"].iloc[0]
    assert np.isnan(z["percent_change"]) and np.isnan(z["response"])
    assert z["change"] == 0 and z["remission"] == 1.0
    alt = oc.responder_status(a, "MADRS", remission_threshold=12, response_reduction=0.4)
    assert alt[alt["subject_id"] == "A"]["response"].tolist()[:3] == [1.0, 1.0, 1.0]


def test_time_to_first_response_and_censoring():
    status = pd.DataFrame({
        "subject_id": ["A", "A", "B", "B", "C"], "arm": "k",
        "day": [1.0, 7.0, 1.0, 7.0, 1.0], "response": [0.0, 1.0, 0.0, 0.0, np.nan],
        "remission": [0.0, 0.0, 0.0, 0.0, np.nan],
    })
    subjects = pd.DataFrame({"subject_id": ["A", "B", "C"],
                             "disposition": ["completed", "dropped_out", "completed"]})
    t = oc.time_to_first(status, "response", subjects=subjects).set_index("subject_id")
    assert t.loc["A", "time"] == 7 and t.loc["A", "event"] == 1
    assert t.loc["B", "time"] == 7 and t.loc["B", "event"] == 0
    assert t.loc["B", "censor_reason"] == "dropout"
    assert "C" not in t.index  # no non-missing post-baseline assessment
    with pytest.raises(ConfigurationError):
        oc.time_to_first(status, "relapse")


def test_sustained_response_window():
    status = pd.DataFrame({
        "subject_id": ["A"] * 3 + ["B"] * 3 + ["C"] * 2, "arm": "k",
        "day": [14.0, 21.0, 28.0, 14.0, 21.0, 28.0, 14.0, 40.0],
        "response": [1.0, np.nan, 1.0, 1.0, 0.0, 1.0, np.nan, 1.0],
    })
    s = oc.sustained_response(status, (14, 28)).set_index("subject_id")
    assert s.loc["A", "sustained"] == 1.0 and s.loc["A", "n_assessments"] == 2
    assert s.loc["B", "sustained"] == 0.0
    assert np.isnan(s.loc["C", "sustained"])  # nothing observed inside the window
    s3 = oc.sustained_response(status, (14, 28), min_assessments=3).set_index("subject_id")
    assert np.isnan(s3.loc["A", "sustained"])


def test_responder_status_from_cohort_carries_arm():
    a = _assessments([("A", "MADRS", -0.04, "baseline", 0, 30.0),
                      ("A", "MADRS", 1.0, "day1", 1, 10.0)])
    subj = pd.DataFrame({"subject_id": ["A"], "arm": ["ketamine"]})
    inf = pd.DataFrame({"subject_id": ["A"], "infusion_number": [1], "day": [0.0]})
    c = Cohort(subjects=subj, assessments=a, infusions=inf, metadata={"primary_scale": "MADRS"})
    s = oc.responder_status(c)
    assert s["arm"].tolist() == ["ketamine"] and s["response"].tolist() == [1.0]


# ------------------------------------------------------------------------------------------
# rates and comparisons vs R
# ------------------------------------------------------------------------------------------
def test_response_rates_wilson_match_r_prop_test():
    rates = oc.response_rates(STATUS).set_index(["visit", "arm"])
    for r in REF["rates"]:
        row = rates.loc[(r["visit"], r["arm"])]
        assert row["n"] == r["n"] and row["responders"] == r["responders"]
        assert row["lower"] == pytest.approx(r["lower"], abs=1e-10)
        assert row["upper"] == pytest.approx(r["upper"], abs=1e-10)
    # visits come out in time order
    order = STATUS.groupby("visit")["day"].median().sort_values().index.tolist()
    assert list(dict.fromkeys(oc.response_rates(STATUS)["visit"])) == order


def test_risk_difference_newcombe_matches_r():
    rd = oc.risk_difference(STATUS, "ketamine", "midazolam").set_index("visit")
    for r in REF["risk_difference"]:
        assert rd.loc[r["visit"], "rd"] == pytest.approx(r["rd"], abs=1e-10)
        assert rd.loc[r["visit"], "lower"] == pytest.approx(r["lower"], abs=1e-10)
        assert rd.loc[r["visit"], "upper"] == pytest.approx(r["upper"], abs=1e-10)


def test_newcombe_published_example():
    # Newcombe (1998) Table II, example (a): 56/70 vs 48/80 -> 0.2000 (0.0524, 0.3339)
    d, lo, hi = oc.newcombe_ci(56, 70, 48, 80)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)


def test_odds_ratio_adjusted_for_baseline_matches_r_glm():
    r = REF["odds_ratio"]
    out = oc.odds_ratio(STATUS, "ketamine", "midazolam", visit="24h").iloc[0]
    assert out["n"] == r["n"]
    for col, rcol in (("odds_ratio", "or"), ("or_lower", "lower"), ("or_upper", "upper"),
                      ("p_value", "p")):
        assert out[col] == pytest.approx(r[rcol], rel=1e-5)
    assert out["estimate"] == pytest.approx(np.log(r["or"]), rel=1e-5)
    assert np.exp(out["ci_lower"]) == pytest.approx(r["lower"], rel=1e-5)
    assert out["statistic"] == pytest.approx(out["estimate"] / out["std_error"])
    with pytest.raises(DataValidationError, match="one row per subject"):
        oc.odds_ratio(STATUS, "ketamine", "midazolam")


def test_missing_as_failure_changes_denominator():
    obs = oc.response_rates(STATUS, by=["visit"]).set_index("visit")
    nri = oc.response_rates(STATUS, by=["visit"], missing="failure").set_index("visit")
    assert (nri["n"] >= obs["n"]).all()
    assert (nri["responders"] == obs["responders"]).all()
    with pytest.raises(ConfigurationError):
        oc.response_rates(STATUS, missing="impute")
