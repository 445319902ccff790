"""Tests of kanalysis.plots.safety: what is drawn, ordering, privacy masking, errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from kanalysis import safety  # noqa: E402
from kanalysis.errors import ConfigurationError  # noqa: E402
from kanalysis.plots.safety import (  # noqa: E402
    ae_dot_plot,
    ae_incidence_plot,
    infusion_course_plot,
)
from kanalysis.plots.style import save_figure  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _course() -> pd.DataFrame:
    rows = []
    for arm, shift in (("ketamine", 10.0), ("midazolam", 0.0)):
        for minute, n in ((0, 10), (40, 10), (80, 2)):
            mean = 120 + (shift if minute == 40 else 0)
            rows.append({"variable": "sbp", "arm": arm, "minute": minute, "n": n, "mean": mean,
                         "sd": 5.0, "std_error": 1.0, "lower": mean - 2, "upper": mean + 2})
    return pd.DataFrame(rows)


def _incidence() -> pd.DataFrame:
    # term: (ketamine n, midazolam n), N = 20 per arm
    counts = {"nausea": (8, 2), "headache": (3, 6), "dizziness": (10, 1), "vomiting": (0, 0)}
    rows = [
        {"term": t, "arm": arm, "n_subjects": 20, "n_with_event": k, "proportion": k / 20}
        for t, (kk, km) in counts.items() for arm, k in (("ketamine", kk), ("midazolam", km))
    ]
    out = pd.DataFrame(rows)
    lo, hi = safety.clopper_pearson(out["n_with_event"], out["n_subjects"])
    return out.assign(lower=lo, upper=hi)


def test_infusion_course_draws_one_line_per_arm():
    ax = infusion_course_plot(_course(), "sbp")
    lines = [ln for ln in ax.get_lines() if ln.get_label() in ("ketamine", "midazolam")]
    assert len(lines) == 2
    ket = [ln for ln in lines if ln.get_label() == "ketamine"][0]
    np.testing.assert_array_equal(ket.get_xdata(), [0, 40, 80])
    np.testing.assert_array_equal(ket.get_ydata(), [120, 130, 120])
    assert ax.get_ylabel() == "Systolic BP (mmHg)"
    assert len(ax.collections) == 2  # the two confidence bands


def test_infusion_course_min_count_hides_small_cells():
    ax = infusion_course_plot(_course(), "sbp", min_count=5)
    ket = [ln for ln in ax.get_lines() if ln.get_label() == "ketamine"][0]
    assert np.isnan(ket.get_ydata()[-1]) and not np.isnan(ket.get_ydata()[0])


def test_infusion_course_needs_one_row_per_line():
    course = pd.concat([_course().assign(infusion_number=1), _course().assign(infusion_number=2)])
    with pytest.raises(ConfigurationError, match="infusion_number"):
        infusion_course_plot(course, "sbp")
    ax = infusion_course_plot(course, "sbp", infusion_number=2)
    assert len([ln for ln in ax.get_lines() if ln.get_label() == "midazolam"]) == 1
    with pytest.raises(ConfigurationError, match="cadss"):
        infusion_course_plot(course, "cadss")


def test_ae_dotplot_sorted_by_risk_difference():
    axes = ae_dot_plot(_incidence(), "ketamine", "midazolam")
    assert len(axes) == 2
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    # Risk differences: dizziness 0.45, nausea 0.30, vomiting 0, headache -0.15; largest on top
    # (highest y), so bottom-to-top order is ascending.
    assert labels == ["headache", "vomiting", "nausea", "dizziness"]
    errorbar_points = axes[1].containers[0].lines[0]
    np.testing.assert_allclose(errorbar_points.get_xdata(), [-15, 0, 30, 45])


def test_ae_dotplot_min_count_suppresses_terms(tmp_path):
    axes = ae_dot_plot(_incidence(), "ketamine", "midazolam", min_count=5)
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    # nausea (2 in midazolam), headache (3 in ketamine), dizziness (1) are suppressed; zero cells
    # are not small counts. Suppressed terms sit at the bottom, alphabetically.
    assert labels[:3] == ["nausea (suppressed)", "headache (suppressed)", "dizziness (suppressed)"]
    assert labels[3] == "vomiting"
    texts = [t.get_text() for t in axes[1].texts]
    assert "10/20 vs <5/20" in texts and not any("1/20" == t.split(" vs ")[1] for t in texts)
    files = save_figure(axes[0].figure, tmp_path / "ae", formats=("png",), dpi=72)
    assert files[0].stat().st_size > 1000


def test_ae_dotplot_unknown_arm():
    with pytest.raises(ConfigurationError, match="placebo"):
        ae_dot_plot(_incidence(), "ketamine", "placebo")


def test_ae_incidence_plot_single_arm():
    inc = _incidence().query("arm == 'ketamine'")
    ax = ae_incidence_plot(inc, min_count=5)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "dizziness" and "headache (suppressed)" in labels
    with pytest.raises(ConfigurationError):
        ae_incidence_plot(inc, min_count=0)


def test_plots_on_synthetic_cohort(cohort_single):
    course = safety.infusion_course(cohort_single, ["sbp", "cadss"])
    ax = infusion_course_plot(course, "cadss", infusion_number=1)
    assert ax.get_ylabel() == "CADSS total"
    axes = ae_dot_plot(safety.ae_incidence(cohort_single), "ketamine", "midazolam")
    n_terms = cohort_single.adverse_events["term"].nunique()
    assert len(axes[0].get_yticklabels()) == n_terms


def test_previous_plot_names_are_aliases():
    from kanalysis.plots import safety as sp
    from kanalysis.plots import trajectories as tp

    assert sp.plot_infusion_course is sp.infusion_course_plot
    assert sp.plot_ae_dotplot is sp.ae_dot_plot
    assert sp.plot_ae_incidence is sp.ae_incidence_plot
    assert tp.spaghetti is tp.spaghetti_plot
