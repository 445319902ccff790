"""Notebook 06_sensitivity runs through papermill on the bundled two-arm cohort and records the
same numbers as the library call it narrates."""

from __future__ import annotations

from pathlib import Path

import pytest

import kanalysis as ka
from kanalysis import imputation as mi
from kanalysis import runner

pytestmark = pytest.mark.notebooks

SINGLE = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "single"


def test_06_sensitivity_records_the_library_numbers(tmp_path):
    result = runner.run_notebooks(["06_sensitivity"], out=tmp_path, run_id="run", progress=False,
                                  html=False, parameters={"n_imputations": 5, "max_delta": 8.0})
    assert result.ok
    res = result.results["06_sensitivity"]["sensitivity"]
    direct = mi.sensitivity_analysis(ka.load_cohort(SINGLE), "MADRS", n_imputations=5,
                                     deltas=mi.delta_grid(8.0))
    table = direct.to_frame()
    assert [r["analysis"] for r in res["table"]] == table["analysis"].tolist()
    for rec, (_, row) in zip(res["table"], table.iterrows(), strict=True):
        assert rec["estimate"] == pytest.approx(row["estimate"], rel=1e-9)
    assert res["visit"] == "day14" and res["control"] == "midazolam"
    assert res["ice_strategies"]["JR"] > 0
    figures = {p.name for p in (result.run_dir / "figures").iterdir()}
    for stem in ("estimands_forest", "tipping_point"):
        assert f"06_sensitivity_{stem}.png" in figures


def test_06_rejects_bad_notebook_parameters(tmp_path):
    with pytest.raises(Exception, match="n_imputations"):
        mi.check_count(1, "n_imputations")
    with pytest.raises(Exception, match="max_delta"):
        mi.delta_grid("ten")
