"""kanalysis.rules: one helper per shared rule, used by every module that applies it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kanalysis import durability, outcomes, rules
from kanalysis.errors import ConfigurationError
from kanalysis.plots import style


@pytest.mark.parametrize(
    ("arms", "control"),
    [
        (["ketamine", "midazolam"], "midazolam"),
        (["maintenance", "no_maintenance"], "no_maintenance"),
        # the case where the two old rules disagreed: priority order, not sorted order
        (["midazolam", "no_maintenance", "ketamine"], "no_maintenance"),
        (["Placebo_IV", "ketamine"], "Placebo_IV"),
        (["ketamine", "esketamine"], None),
        ([], None),
    ],
)
def test_control_arm_one_rule_everywhere(arms, control):
    assert rules.control_arm(arms) == control
    assert style.control_arm(arms) == control  # plots use the same helper
    assert rules.control_arm(list(reversed(arms))) == control  # row order never matters


def test_rmst_reference_and_arm_colours_follow_the_control_rule():
    table = pd.DataFrame({"time": [5, 8, 3, 9, 4, 7], "event": [1, 0, 1, 1, 0, 1],
                          "arm": ["midazolam", "midazolam", "no_maintenance",
                                  "no_maintenance", "zeta", "zeta"]})
    out = durability.rmst(table, tau=3)
    assert all(i.endswith(" - no_maintenance") for i in out.index[3:])
    colors = style.arm_colors(table["arm"])
    assert colors["no_maintenance"] == style.OKABE_ITO["black"]
    assert colors["midazolam"] != style.OKABE_ITO["black"]


def test_reference_level_falls_back_to_the_first_level():
    assert rules.reference_level(["b", "a"]) == "b"
    assert rules.reference_level(["ketamine", "placebo"]) == "placebo"


class _Cohort:
    def __init__(self, assessments, infusions=None, metadata=None):
        self.assessments = assessments
        self.infusions = infusions
        self.subjects = pd.DataFrame({"subject_id": assessments["subject_id"].unique()})
        self.metadata = metadata or {}


def _assessments():
    return pd.DataFrame({
        "subject_id": ["s1", "s1", "s1", "s2", "s2", "s2", "s2"],
        "scale": ["PHQ9", "phq9", "PHQ9", "PHQ9", "PHQ9", "PHQ9", "MADRS"],
        "day": [-3.0, 2.0, 7.0, -1.0, 0.0, 7.0, 0.0],
        "visit_number": [0, 1, 2, 0, 1, 2, 1],
        "visit": ["screen", "first", "week1", "screen", "first", "week1", "first"],
        "score": [20.0, 18.0, 9.0, 15.0, np.nan, 8.0, 30.0],
    })


def test_default_scale_metadata_then_most_frequent():
    a = _assessments()
    assert rules.default_scale(_Cohort(a)) == "PHQ9"  # no metadata: the most frequent
    assert rules.default_scale(_Cohort(a, metadata={"primary_scale": "MADRS"})) == "MADRS"
    assert rules.default_scale(_Cohort(a), "MADRS") == "MADRS"
    assert rules.default_scale(a) == "PHQ9"
    # outcomes and the Cohort use the same rule (outcomes used to fall back to MADRS)
    status = outcomes.responder_status(_Cohort(a))
    assert set(status["scale"].str.upper()) == {"PHQ9"}
    with pytest.raises(ConfigurationError, match="primary_scale"):
        rules.default_scale(a.iloc[:0])


def test_baseline_is_last_score_before_first_infusion_case_insensitive():
    a = _assessments()
    infusions = pd.DataFrame({"subject_id": ["s1", "s2"], "day": [2.0, 0.0]})
    base = rules.baseline_scores(_Cohort(a, infusions), "phq9").set_index("subject_id")
    # s1: first infusion on day 2, so the day-2 rating (lower-case scale) is the baseline
    assert base.loc["s1", "baseline"] == 18.0 and base.loc["s1", "baseline_day"] == 2.0
    # s2: the day-0 score is missing, so the day -1 one counts
    assert base.loc["s2", "baseline"] == 15.0
    pd.testing.assert_frame_equal(outcomes.baseline_scores(_Cohort(a, infusions), "PHQ9"),
                                  rules.baseline_scores(_Cohort(a, infusions), "PHQ9"))
    # without infusions the first infusion is day 0
    no_inf = rules.baseline_scores(a, "PHQ9").set_index("subject_id")
    assert no_inf.loc["s1", "baseline"] == 20.0


@pytest.mark.parametrize(
    ("time", "event", "median"),
    [
        ([10, 20, 30, 40], [1, 1, 1, 1], 25.0),            # flat at 0.5 between events
        ([20, 20, 40, 60, 60, 80], [1, 1, 1, 0, 0, 0], 60.0),  # flat at 0.5 to the end
        ([20, 40, 60, 80], [1, 0, 0, 0], np.nan),          # never reaches 0.5
        ([], [], np.nan),
    ],
)
def test_km_median_is_the_durability_median(time, event, median):
    got = rules.km_median(time, event)
    assert got == pytest.approx(median, nan_ok=True)
    if time:
        km = durability.kaplan_meier(pd.DataFrame({"time": time, "event": event}), group=None)
        assert km.median()["estimate"].iloc[0] == pytest.approx(got, nan_ok=True)


@pytest.mark.parametrize(
    ("rule", "keys"),
    [("a", ["a"]), ("loss_of_response", ["a"]), ("b+c", ["b", "c"]), ("b|c", ["b", "c"]),
     ("threshold, clinical", ["b", "c"]), ("CLINICAL_EVENTS", ["c"]), (["c", "a", "c"], ["c", "a"])],
)
def test_parse_relapse_rule_names_aliases_separators(rule, keys):
    assert rules.parse_relapse_rule(rule) == keys


@pytest.mark.parametrize("rule", ["d", "a+x", "", "+"])
def test_parse_relapse_rule_rejects_unknown(rule):
    with pytest.raises(ConfigurationError, match="relapse rule"):
        rules.parse_relapse_rule(rule)


def test_relapse_rule_names_are_shared():
    assert set(rules.RELAPSE_RULES) == {"a", "b", "c"}
    assert durability.RELAPSE_RULES is rules.RELAPSE_RULES
    assert all(rules.parse_relapse_rule(n) for n in rules.RELAPSE_RULE_NAMES)
    assert rules.DEFAULT_MIN_CELL_COUNT == 11
