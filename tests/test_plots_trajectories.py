"""Tests of trajectory summaries and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

from kanalysis.errors import DataValidationError
from kanalysis.plots import trajectories as tr
from kanalysis.plots.style import OKABE_ITO, arm_colors


@pytest.fixture
def long() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": ["a", "a", "b", "b", "c", "c", "d"],
            "arm": ["k", "k", "k", "k", "k", "k", "m"],
            "visit_number": [0, 1, 0, 1, 0, 1, 0],
            "visit": ["baseline", "day1"] * 3 + ["baseline"],
            "day": [0.0, 1.0, 0.0, 1.1, 0.0, 0.9, 0.0],
            "score": [30.0, 20.0, 34.0, 18.0, 32.0, 16.0, 40.0],
        }
    )


def test_visit_summary_matches_hand_computation(long):
    s = tr.visit_summary(long).set_index(["arm", "visit_number"])
    row = s.loc[("k", 1)]
    assert row["n"] == 3 and row["mean"] == pytest.approx(18.0)
    assert row["sd"] == pytest.approx(2.0) and row["x"] == pytest.approx(1.0)
    # R: t.test(c(20, 18, 16))$conf.int -> 13.03172 22.96828
    assert row["ci_lower"] == pytest.approx(13.03172, abs=1e-5)
    assert row["ci_upper"] == pytest.approx(22.96828, abs=1e-5)
    single = s.loc[("m", 0)]
    assert single["n"] == 1 and np.isnan(single["ci_lower"])
    assert row["visit"] == "day1"


def test_visit_summary_conf_level_widens(long):
    narrow = tr.visit_summary(long, conf_level=0.8).set_index(["arm", "visit_number"])
    wide = tr.visit_summary(long, conf_level=0.99).set_index(["arm", "visit_number"])
    with pytest.warns(DeprecationWarning, match="alpha"):
        old = tr.visit_summary(long, alpha=0.2).set_index(["arm", "visit_number"])
    pd.testing.assert_frame_equal(old, narrow)
    assert (narrow["estimate"] == narrow["mean"]).all()
    assert (wide["ci_upper"] - wide["ci_lower"]).loc[("k", 1)] > (
        narrow["ci_upper"] - narrow["ci_lower"]
    ).loc[("k", 1)]


def test_spaghetti_draws_individuals_and_means(long):
    ax = tr.spaghetti_plot(long)
    assert isinstance(ax, Axes)
    # 4 subjects + 2 arm means.
    assert len(ax.lines) == 6
    colors = arm_colors(["k", "m"])
    mean_k = [ln for ln in ax.lines if ln.get_label() == "k"][0]
    assert mean_k.get_color() == colors["k"]
    np.testing.assert_allclose(mean_k.get_ydata(), [32.0, 18.0])


def test_spaghetti_without_individuals_for_strict_privacy(long):
    ax = tr.spaghetti_plot(long, show_individuals=False, xscale="symlog")
    assert len(ax.lines) == 2
    assert ax.get_xscale() == "symlog"


def test_spaghetti_missing_column(long):
    with pytest.raises(DataValidationError, match="score"):
        tr.spaghetti_plot(long.drop(columns="score"))


def test_lsmeans_plot_positions_and_error_bars():
    ls = pd.DataFrame(
        {
            "arm": ["k", "k", "m", "m"],
            "visit": ["d1", "d7"] * 2,
            "estimate": [-10.0, -8.0, -5.0, -4.0],
            "ci_lower": [-12.0, -10.0, -7.0, -6.0],
            "ci_upper": [-8.0, -6.0, -3.0, -2.0],
        }
    )
    ax = tr.lsmeans_plot(ls, positions={"d1": 1, "d7": 7}, dodge=0.0)
    assert [c.get_label() for c in ax.containers] == ["k", "m"]
    lines = [c.lines[0] for c in ax.containers]
    np.testing.assert_allclose(lines[0].get_xdata(), [1.0, 7.0])
    np.testing.assert_allclose(lines[0].get_ydata(), [-10.0, -8.0])
    assert lines[1].get_color() == OKABE_ITO["blue"] or lines[0].get_color() == OKABE_ITO["blue"]
    ax2 = tr.lsmeans_plot(ls)
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["d1", "d7"]


def test_trajectory_data_on_bundled_cohort(cohort_single):
    d = tr.trajectory_data(cohort_single)
    assert set(d["arm"]) == set(cohort_single.subjects["arm"])
    assert d["score"].notna().all()
    np.testing.assert_allclose(d["log_time"], np.log1p(np.clip(d["day"] * 24, 0, None)))
    with pytest.raises(DataValidationError, match="HAMD"):
        tr.trajectory_data(cohort_single, "HAMD")


def test_schedule_plot_rows_and_markers():
    visits = pd.DataFrame(
        {
            "group": ["k", "k", "m", "m"],
            "visit": ["baseline", "day1"] * 2,
            "median_day": [0.0, 1.0, 0.0, 1.0],
        }
    )
    infusions = pd.DataFrame({"group": ["k", "m"], "median_day": [0.0, 0.0]})
    ax = tr.schedule_plot(visits, infusions)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["m", "k"]
    assert len(ax.collections) == 4  # assessments and infusions of two arms
    assert ax.get_xscale() == "symlog"
    assert [t.get_text() for t in ax.texts] == ["baseline", "day1"]
    long_visits = visits.assign(median_day=[0.0, 90.0, 0.0, 90.0])
    assert tr.schedule_plot(long_visits).get_xscale() == "linear"
