"""Tests for kanalysis.plots.durability: assert on the artists drawn, not on pixels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from kanalysis import durability as du  # noqa: E402
from kanalysis import outcomes as oc  # noqa: E402
from kanalysis.cohort import Cohort  # noqa: E402
from kanalysis.errors import ConfigurationError  # noqa: E402
from kanalysis.plots import durability as pdur  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def table():
    rng = np.random.default_rng(5)
    n = 40
    arm = np.repeat(["maintenance", "no_maintenance"], n // 2)
    time = np.round(rng.exponential(np.where(arm == "maintenance", 60, 25)), 0) + 1
    event = (rng.random(n) < 0.8).astype(int)
    status = np.where(event == 1, 1, np.where(rng.random(n) < 0.5, 2, 0))
    return pd.DataFrame({"subject_id": [f"S{i}" for i in range(n)], "arm": arm,
                         "time": time, "event": event, "status": status})


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_km_plot_curves_bands_and_at_risk_numbers(table):
    km = du.kaplan_meier(table)
    times = [0, 14, 28, 56]
    ax = pdur.km_plot(km, times=times)
    labels = [ln.get_label() for ln in ax.lines if not ln.get_label().startswith("_")]
    assert labels == ["maintenance", "no_maintenance"]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    risk = km.at_risk(times)
    expected = [str(int(risk.loc[g, t])) for g in km.groups for t in times]
    assert _texts(ax.at_risk_ax) == expected
    # the table shares the time axis: every number sits above its time
    assert [t.get_position()[0] for t in ax.at_risk_ax.texts] == times * 2
    assert ax.at_risk_ax.get_shared_x_axes().joined(ax, ax.at_risk_ax)


def test_km_plot_masks_small_counts(table):
    km = du.kaplan_meier(table)
    times = [0, 14, 28, 56, 84]
    ax = pdur.km_plot(km, times=times, min_count=10)
    risk = km.at_risk(times)
    shown = _texts(ax.at_risk_ax)
    counts = [int(risk.loc[g, t]) for g in km.groups for t in times]
    assert any(c < 10 for c in counts) and any(c >= 10 for c in counts)
    for c, s in zip(counts, shown, strict=True):
        assert s == ("<10" if 0 < c < 10 else str(c))  # 0 is shown, as in the tables


def test_km_plot_on_given_axes_uses_inset_table_and_no_table(table):
    fig, ax = plt.subplots()
    out = pdur.km_plot(table, ax=ax, conf_type="log-log", ci=False)
    assert out is ax and out.at_risk_ax in ax.child_axes
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    bare = pdur.km_plot(table, at_risk=False)
    assert bare.at_risk_ax is None


def test_format_count():
    assert pdur.format_count(3, 5) == "<5"
    assert pdur.format_count(5, 5) == "5"
    assert pdur.format_count(0) == "0"


def test_cumulative_incidence_plot_lines(table):
    ax = pdur.cumulative_incidence_plot(table)
    labels = [ln.get_label() for ln in ax.lines]
    assert labels == ["maintenance: relapse", "maintenance: dropout",
                      "no_maintenance: relapse", "no_maintenance: dropout"]
    cif = du.cumulative_incidence(table)
    last = cif.table[cif.table["arm"] == "maintenance"]["cif_relapse"].iloc[-1]
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(last)
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2  # CI bands
    with pytest.raises(ConfigurationError, match="Unknown cause"):
        pdur.cumulative_incidence_plot(table, cause="death")


def test_response_rate_plot_points_are_rates():
    status = pd.DataFrame({
        "visit": ["d1"] * 4 + ["d7"] * 4, "day": [1] * 4 + [7] * 4,
        "arm": ["k", "k", "p", "p"] * 2, "response": [1, 1, 0, 1, 1, 0, 0, 0],
    })
    rates = oc.response_rates(status)
    ax = pdur.response_rate_plot(rates)
    assert len(ax.containers) == 2
    ydata = [list(c.lines[0].get_ydata()) for c in ax.containers]
    assert ydata == [[100.0, 50.0], [50.0, 0.0]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["d1", "d7"]


def _small_cohort():
    rows = []
    scores = {"A": [30, 10, 12, 25, 26], "B": [30, 12, 11, 10, 11], "C": [30, 28, 27, 26, 25]}
    for sid, sc in scores.items():
        for k, s in enumerate(sc):
            rows.append((sid, "MADRS", -0.04 if k == 0 else 7.0 * k, f"v{k}", k, float(s)))
    a = pd.DataFrame(rows, columns=["subject_id", "scale", "day", "visit", "visit_number",
                                    "score"])
    subj = pd.DataFrame({"subject_id": list(scores), "arm": ["k", "k", "k"],
                         "disposition": "completed"})
    inf = pd.DataFrame({"subject_id": ["A", "B", "C", "A"], "infusion_number": [1, 1, 1, 2],
                        "day": [0.0, 0.0, 0.0, 14.0],
                        "phase": ["induction"] * 3 + ["maintenance"]})
    return Cohort(subjects=subj, assessments=a, infusions=inf, metadata={"primary_scale": "MADRS"})


def test_swimmer_plot_segments_and_symbols():
    c = _small_cohort()
    tab = du.derive(c, relapse_rule="a")
    ax = pdur.swimmer_plot(c, tab)
    # A responds days 7-21, B days 7-28 (to the last assessment); C never responds
    assert ax.response_segments == {"A": [(7.0, 14.0)], "B": [(7.0, 21.0)]}
    bars = [col for col in ax.collections if isinstance(col, PolyCollection)]
    assert len(bars) == 2
    by_label = {ln.get_label(): ln for ln in ax.lines}
    assert len(by_label["relapse"].get_xdata()) == 1
    assert list(by_label["relapse"].get_xdata()) == [21.0]
    assert len(by_label["censored"].get_xdata()) == 1
    assert len(by_label["maintenance infusion"].get_xdata()) == 1
    assert len(by_label["induction infusion"].get_xdata()) == 2  # C is not in the table


def test_figure_saves_with_style(tmp_path, table):
    from kanalysis.plots.style import save_figure

    ax = pdur.km_plot(table)
    paths = save_figure(ax.figure, tmp_path / "km", formats=("png",))
    assert paths[0].exists() and paths[0].stat().st_size > 1000
