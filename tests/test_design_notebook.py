"""notebooks/07_power.py runs through the runner (papermill) and its key numbers equal a direct
simulate_power call with the same parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kanalysis import runner
from kanalysis.design import load_scenario, simulate_power

pytestmark = pytest.mark.notebooks
ROOT = Path(__file__).resolve().parents[1]


def test_07_power_matches_direct_call(tmp_path):
    params = {"n_sim": 3, "n_per_arm": "15,25", "include_null": False, "seed": 5}
    result = runner.run_notebooks(["07_power"], out=tmp_path, run_id="run", progress=False,
                                  html=False, parameters=params)
    assert result.ok
    res = result.results["07_power"]
    sc = load_scenario(ROOT / "examples" / "design_ketamine_mmrm.toml")
    direct = simulate_power(sc, n_per_arm=[15, 25], n_sim=3, seed=5, progress=False).to_frame()
    got = res["power"]["table"]
    assert [r["n_per_arm"] for r in got] == [15, 25]
    np.testing.assert_array_equal([r["power"] for r in got], direct["power"])
    np.testing.assert_allclose([r["mean_estimate"] for r in got], direct["mean_estimate"],
                               rtol=1e-12)
    assert res["power"]["seed"] == "5"
    assert res["analytic"]["n_total"] > 0
    json.dumps(res)
    figs = list((result.run_dir).rglob("07_power_power_curve.*"))
    assert figs, "the power curve was saved"

