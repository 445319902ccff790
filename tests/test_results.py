"""The common result protocol: conf_level, count columns, JSON-ready key numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kanalysis import durability, outcomes, safety
from kanalysis.errors import ConfigurationError
from kanalysis.results import (
    RESULT_COLUMNS,
    SummaryText,
    count_columns_of,
    json_records,
    resolve_conf_level,
    with_count_columns,
)

TABLE = pd.DataFrame({"time": [2, 3, 3, 5, 8, 9, 11, 12, 4, 6, 7, 10],
                      "event": [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1],
                      "arm": ["placebo"] * 6 + ["ketamine"] * 6})


def test_resolve_conf_level_aliases_and_errors():
    assert resolve_conf_level() == 0.95
    assert resolve_conf_level(0.9) == 0.9
    with pytest.warns(DeprecationWarning, match="alpha"):
        assert resolve_conf_level(alpha=0.1) == pytest.approx(0.9)
    with pytest.warns(DeprecationWarning, match="confidence"):
        assert resolve_conf_level(confidence=0.8) == 0.8
    with pytest.raises(ConfigurationError, match="conflicting"), pytest.warns(DeprecationWarning):
        resolve_conf_level(0.9, alpha=0.05)
    for bad in (0.0, 1.0, 95, float("nan")):
        with pytest.raises(ConfigurationError, match="between 0 and 1"):
            resolve_conf_level(bad)


@pytest.mark.parametrize("func", [
    lambda **k: durability.kaplan_meier(TABLE, **k).to_frame(),
    lambda **k: durability.cox(TABLE, "arm", **k).to_frame(),
    lambda **k: durability.rmst(TABLE, 6, **k),
    lambda **k: durability.cumulative_incidence(TABLE.assign(status=TABLE["event"]),
                                                causes={1: "relapse"}, **k).to_frame(),
])
def test_conf_level_is_one_name_with_deprecated_aliases(func):
    new = func(conf_level=0.9)
    with pytest.warns(DeprecationWarning):
        old = func(alpha=0.1)
    pd.testing.assert_frame_equal(new, old)
    with pytest.warns(DeprecationWarning):
        pd.testing.assert_frame_equal(new, func(confidence=0.9))
    wider = func(conf_level=0.99)
    width_99 = (wider["ci_upper"] - wider["ci_lower"]).dropna()
    width_90 = (new["ci_upper"] - new["ci_lower"]).dropna()
    assert len(width_90) and (width_99 >= width_90 - 1e-12).all()
    assert (width_99 > width_90).any()
    assert {"estimate", "ci_lower", "ci_upper"} <= set(new.columns)


def test_outcomes_and_safety_take_conf_level():
    status = pd.DataFrame({"visit": ["v1"] * 6, "arm": ["a"] * 3 + ["b"] * 3,
                           "response": [1, 0, 1, 0, 0, 1], "day": [1.0] * 6})
    new = outcomes.response_rates(status, conf_level=0.8)
    with pytest.warns(DeprecationWarning):
        pd.testing.assert_frame_equal(new, outcomes.response_rates(status, alpha=0.2))
    assert (new["estimate"] == new["rate"]).all()
    lo, hi = safety.clopper_pearson(3, 10, 0.9)
    with pytest.warns(DeprecationWarning):
        assert safety.clopper_pearson(3, 10, confidence=0.9) == (lo, hi)


def test_count_columns_of_results_and_tables():
    km = durability.kaplan_meier(TABLE)
    cols = count_columns_of(km)
    assert cols["n_event"] == "n_risk" and set(cols) <= set(km.to_frame().columns)
    frame = with_count_columns(pd.DataFrame({"n": [5], "k": [2], "x": [1.0]}),
                               {"n": None, "k": "n", "missing": "n"})
    assert count_columns_of(frame) == {"n": None, "k": "n"}
    assert count_columns_of(object()) == {}


def test_summaries_are_text_and_key_numbers_json():
    fits = [durability.kaplan_meier(TABLE), durability.logrank(TABLE),
            durability.cox(TABLE, "arm")]
    for fit in fits:
        text = fit.summary()
        assert isinstance(text, SummaryText) and repr(text) == str(text)
        json.dumps(fit.key_numbers(), allow_nan=False)
        frame = fit.to_frame()
        assert [c for c in frame.columns if c in RESULT_COLUMNS]
    cox = fits[2].to_frame().iloc[0]
    assert cox["hr"] == pytest.approx(np.exp(cox["estimate"]))
    assert cox["hr_lower"] == pytest.approx(np.exp(cox["ci_lower"]))
    assert cox["statistic"] == pytest.approx(cox["estimate"] / cox["std_error"])


def test_json_records_turns_nan_and_numpy_into_json():
    frame = pd.DataFrame({"a": [np.float64(1.5), np.nan], "b": [np.int64(2), np.int64(3)],
                          "c": ["x", None]})
    recs = json_records(frame)
    assert recs == [{"a": 1.5, "b": 2, "c": "x"}, {"a": None, "b": 3, "c": None}]
    json.dumps(recs, allow_nan=False)
