"""Tests of the forest plot and its term labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kanalysis.errors import DataValidationError
from kanalysis.plots.forest import forest_plot, term_label


@pytest.mark.parametrize(
    ("term", "label"),
    [
        (
            "C(arm, contr.treatment('no_maintenance'))[T.maintenance]",
            "arm: maintenance vs no_maintenance",
        ),
        ("C(sex)[T.M]", "sex: M"),
        ("age", "age"),
    ],
)
def test_term_label(term, label):
    assert term_label(term) == label


def test_forest_plot_rows_scale_and_annotations():
    table = pd.DataFrame(
        {"term": ["C(arm)[T.k]", "age"], "hr": [0.5, 1.1], "lower": [0.3, 0.9], "upper": [0.8, 1.3]}
    )
    ax = forest_plot(table)
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["arm: k", "age"]
    # The first row is drawn at the top.
    points = ax.containers[0].lines[0]
    np.testing.assert_allclose(points.get_xdata(), [0.5, 1.1])
    assert points.get_ydata()[0] > points.get_ydata()[1]
    right = [a for a in ax.figure.axes if a is not ax][0]
    assert [t.get_text() for t in right.get_yticklabels()] == [
        "0.50 (0.30, 0.80)",
        "1.10 (0.90, 1.30)",
    ]
    # a table in the shared vocabulary (differences): linear scale, reference 0
    ax2 = forest_plot(
        table.rename(columns={"hr": "estimate", "lower": "ci_lower", "upper": "ci_upper"}),
        annotate=False,
    )
    assert ax2.get_xscale() == "linear"
    with pytest.raises(DataValidationError, match="estimate"):
        forest_plot(table.drop(columns="hr"))


def test_forest_plot_draws_cox_to_frame_as_hazard_ratios():
    from kanalysis import durability

    d = pd.DataFrame({"time": [2, 3, 3, 5, 8, 9, 11, 12, 4, 6, 7, 10],
                      "event": [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1],
                      "arm": ["placebo"] * 6 + ["ketamine"] * 6})
    frame = durability.cox(d, "arm").to_frame()
    ax = forest_plot(frame)
    assert ax.get_xscale() == "log"
    (line,) = [c for c in ax.containers][:1]
    x = line.lines[0].get_xdata()
    assert x[0] == pytest.approx(frame["hr"].iloc[0])
