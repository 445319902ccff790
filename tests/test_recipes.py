"""Analysis recipes: the notebooks' analyses as functions, and the paper figures that use them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kanalysis import durability as du
from kanalysis import figures, recipes
from kanalysis.cohort import load_cohort
from kanalysis.errors import ConfigurationError
from kanalysis.outcomes import responder_status
from kanalysis.results import RESULT_COLUMNS, SummaryText

ROOT = Path(__file__).resolve().parents[1]
MAINTENANCE = ROOT / "data" / "synthetic" / "maintenance"
SINGLE = ROOT / "data" / "synthetic" / "single"


@pytest.fixture(scope="module")
def maintenance():
    return load_cohort(MAINTENANCE)


@pytest.fixture(scope="module")
def single():
    return load_cohort(SINGLE)


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def test_durability_recipe_is_notebook_03(maintenance):
    res = recipes.durability(maintenance, relapse_rule="b", relapse_threshold=20,
                             conf_level=0.9)
    table = du.derive(maintenance, relapse_rule="b", relapse_threshold=20)
    pd.testing.assert_frame_equal(res.table, table)
    assert res.relapse_rule == "b"
    # the reference arm is the control arm, for Cox and RMST alike
    assert res.reference == "no_maintenance"
    assert res.rmst.index[-1] == "maintenance - no_maintenance"
    assert res.cox.to_frame()["term"].iloc[0].endswith("[T.maintenance]")
    # tau: the shortest arm's longest follow-up
    assert res.tau == table.groupby("arm")["time"].max().min() == du.rmst_tau(table)
    km = du.kaplan_meier(table, conf_level=0.9)
    pd.testing.assert_frame_equal(res.km.to_frame(), km.to_frame())
    counts = du.censoring_reasons(table)
    assert counts["n"].sum() == len(table)
    assert counts.loc[counts["outcome"] == "relapse", "n"].sum() == table["event"].sum()
    assert isinstance(res.summary(), SummaryText)
    keys = res.key_numbers()
    assert keys["n_relapses"] == int(table["event"].sum())
    assert keys["logrank"]["p_value"] == pytest.approx(res.logrank.p)


def test_durability_recipe_follows_its_parameters(maintenance):
    a = recipes.durability(maintenance, relapse_rule="loss_of_response")
    b = recipes.durability(maintenance, relapse_rule="threshold", relapse_threshold=18)
    assert a.relapse_rule == "a" and b.relapse_rule == "b"
    assert not a.to_frame().equals(b.to_frame())
    wide = recipes.durability(maintenance, relapse_rule="b", relapse_threshold=30)
    # a higher cut-off can only remove relapses
    assert wide.table["event"].sum() <= b.table["event"].sum()


def test_paper_durability_numbers_follow_relapse_rule(maintenance, tmp_path):
    """The paper's figure 3 follows relapse_rule and equals notebook 03's recipe."""
    by_rule = {}
    for rule, threshold in (("a", None), ("b", 18.0)):
        paper = figures.PaperData(SINGLE, MAINTENANCE, relapse_rule=rule,
                                  relapse_threshold=threshold, conf_level=0.9)
        recipe = recipes.durability(maintenance, relapse_rule=rule,
                                    relapse_threshold=threshold, conf_level=0.9)
        pd.testing.assert_frame_equal(paper.kaplan_meier.to_frame(), recipe.km.to_frame())
        pd.testing.assert_frame_equal(paper.durability.table, recipe.table)
        by_rule[rule] = paper.kaplan_meier.by_group()
    assert not by_rule["a"].equals(by_rule["b"])
    svgs = {}
    for rule in ("a", "b"):
        out = tmp_path / rule
        written = figures.build_paper_figures(
            out=out, figures=["fig3_durability"], widths=["single"], formats=("svg",),
            relapse_rule=rule, relapse_threshold=18.0 if rule == "b" else None)
        svgs[rule] = next(p for p in written if p.suffix == ".svg").read_bytes()
    assert svgs["a"] != svgs["b"]


def test_paper_lsmeans_are_the_recipe_in_visit_order(single):
    paper = figures.PaperData(SINGLE, covariance="cs")
    recipe = _quiet(recipes.mmrm_by_visit, responder_status(single), covariance="cs")
    pd.testing.assert_frame_equal(_quiet(lambda: paper.lsmeans), recipe.lsmeans)
    order = recipe.visit_order
    positions = [order.index(v) for v in recipe.lsmeans["visit"]]
    assert positions == sorted(positions)
    assert order != sorted(order)  # "24h" < "40min" as text: a text sort would differ
    assert {"estimate", "std_error", "ci_lower", "ci_upper"} <= set(recipe.lsmeans.columns)


def test_response_and_safety_recipes(single):
    res = recipes.response(single, conf_level=0.9)
    assert res.control == "midazolam"
    assert set(res.risk_differences) == {"ketamine"}
    rates = res.rates["response"]
    assert {"estimate", "ci_lower", "ci_upper", "n", "responders"} <= set(rates.columns)
    assert (rates["ci_lower"] <= rates["estimate"]).all()
    assert rates.attrs["count_columns"] == {"n": None, "responders": "n"}
    visits = list(dict.fromkeys(rates["visit"]))
    assert visits == res.visit_order
    saf = _quiet(recipes.safety, single, conf_level=0.9)
    assert set(saf.exceedances) == {"session", "subject"}
    assert saf.trend is None and any("One infusion" in n for n in saf.notes)
    assert saf.control == "midazolam" and saf.active == ["ketamine"]
    assert isinstance(saf.summary(), str)
    assert set(saf.key_numbers()["exceedance_proportion_sessions"]) == {"ketamine", "midazolam"}


def test_recipe_options_map_notebook_parameters():
    params = {"scale": None, "alpha": 0.1, "relapse_rule": "b+c", "relapse_threshold": 20.0,
              "response_reduction": 0.5, "remission_threshold": None, "covariance": "cs",
              "output_dir": "x", "privacy": "none"}
    opts = recipes.recipe_options("durability", params)
    assert opts == {"scale": None, "conf_level": pytest.approx(0.9), "relapse_rule": "b+c",
                    "relapse_threshold": 20.0, "response_reduction": 0.5}
    traj = recipes.recipe_options("trajectories", params)
    assert traj["covariance"] == "cs" and "relapse_rule" not in traj
    with pytest.raises(ConfigurationError, match="Unknown recipe"):
        recipes.recipe_options("nope", params)


def test_recipes_speak_the_result_protocol(maintenance):
    res = recipes.durability(maintenance)
    for part in (res.km, res.logrank, res.cox, res.cif):
        frame = part.to_frame()
        assert [c for c in RESULT_COLUMNS if c in frame.columns]
        assert isinstance(part.summary(), SummaryText)
        json.dumps(part.key_numbers(), allow_nan=False)
    assert np.isfinite(res.rmst["estimate"]).all()
    json.dumps(res.key_numbers(), allow_nan=False)
