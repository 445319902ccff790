"""kanalysis.design.simulate: reproducible, extendable, honest about failures, and in agreement
with the analytic twins within Monte Carlo error. Unit tests run on Dask's synchronous scheduler
or in process."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kanalysis.design import Scenario, merge_results, simulate_power
from kanalysis.design.report import assumptions_table, power_table, report_markdown, type1_check
from kanalysis.errors import ConfigurationError

VISITS = ["w1", "w2", "w4", "w6"]


def _scenario(**kw):
    base = dict(sd=8.0, correlation="ar1:0.6", retention=[1, 0.95, 0.9, 0.85], name="demo")
    base.update(kw)
    return Scenario(VISITS, {"placebo": [-4, -6, -8, -9], "ketamine": [-8, -9, -10, -13]},
                    **base)


def _records(res):
    return res.replicates.drop(columns=["message"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def small_mmrm():
    sc = _scenario()
    return sc, simulate_power([sc, sc.null()], n_per_arm=[12, 20], n_sim=6, seed=42,
                              progress=False)


def test_bit_identical_across_schedulers_and_batch_sizes(small_mmrm):
    sc, serial = small_mmrm
    for kw in (dict(scheduler="synchronous", batch_size=1),
               dict(scheduler="synchronous", batch_size=5),
               dict(scheduler="threads", batch_size=2)):
        other = simulate_power([sc, sc.null()], n_per_arm=[12, 20], n_sim=6, seed=42,
                               progress=False, **kw)
        pd.testing.assert_frame_equal(_records(serial), _records(other), check_exact=True)
    assert serial.replicates["failed"].sum() == 0
    assert len(serial.replicates) == 2 * 2 * 6


def test_split_and_merged_runs_equal_one_run(small_mmrm):
    sc, whole = small_mmrm
    parts = [simulate_power([sc, sc.null()], n_per_arm=[12, 20], seed=42, replicates=r,
                            progress=False, scheduler="synchronous")
             for r in (range(0, 2), range(2, 6))]
    merged = merge_results(*parts[::-1])
    pd.testing.assert_frame_equal(_records(whole), _records(merged), check_exact=True)
    pd.testing.assert_frame_equal(whole.to_frame(), merged.to_frame())
    other_seed = simulate_power(sc, n_per_arm=[12], seed=43, n_sim=1, progress=False)
    with pytest.raises(ConfigurationError, match="seed"):
        merge_results(parts[0], other_seed)


def test_store_is_extended_not_recomputed(tmp_path, small_mmrm):
    sc, whole = small_mmrm
    store = tmp_path / "power.parquet"
    first = simulate_power([sc, sc.null()], n_per_arm=[12, 20], n_sim=3, seed=42, store=store,
                           progress=False)
    assert first.metadata["last_run"]["replicates_computed"] == 2 * 3
    more = simulate_power([sc, sc.null()], n_per_arm=[12, 20], n_sim=6, store=store,
                          progress=False)  # the seed comes from the store
    assert more.metadata["last_run"]["replicates_computed"] == 2 * 3
    assert more.seed == 42
    pd.testing.assert_frame_equal(
        _records(whole), _records(more).astype(_records(whole).dtypes.to_dict()),
        check_exact=True)
    saved = pd.read_parquet(store)
    assert len(saved) == 2 * 2 * 6
    with pytest.raises(ConfigurationError, match="seed"):
        simulate_power(sc, n_per_arm=[12], n_sim=6, seed=7, store=store, progress=False)
    with pytest.raises(ConfigurationError, match="another analysis"):
        simulate_power(sc, n_per_arm=[12], n_sim=6, store=store, covariance="cs",
                       progress=False)


def test_common_random_numbers_make_sample_sizes_share_data(small_mmrm):
    sc, res = small_mmrm
    # without CRN the data at n = 12 differ from the first 12 of n = 20 ...
    sep = simulate_power(sc, n_per_arm=[12, 20], n_sim=6, seed=42, progress=False,
                         common_random_numbers=False)
    crn = res.replicates[res.replicates["scenario_index"] == 0]
    a = crn[crn["n_per_arm"] == 20]["estimate"].to_numpy()
    b = sep.replicates[sep.replicates["n_per_arm"] == 20]["estimate"].to_numpy()
    assert not np.allclose(a, b)
    # ... and with CRN the estimates at the two sizes are strongly correlated.
    e12 = crn[crn["n_per_arm"] == 12]["estimate"].to_numpy()
    assert np.corrcoef(e12, a)[0, 1] > 0.3


def test_power_table_columns_and_reports(small_mmrm):
    sc, res = small_mmrm
    f = res.to_frame()
    for col in ("n_per_arm", "power", "mcse", "n_failed", "power_lower", "power_upper",
                "mean_estimate", "bias", "empirical_se", "mean_model_se", "se_ratio",
                "coverage", "analytic_power", "type1_flag", "estimate", "std_error", "n"):
        assert col in f.columns
    assert np.all((f["power_lower"] <= f["power"]) & (f["power"] <= f["power_upper"]))
    assert f.loc[f["null"], "true_effect"].eq(0).all()
    assert f.loc[~f["null"], "true_effect"].eq(-4).all()
    json.dumps(res.key_numbers())
    text = report_markdown(res)
    assert "Type I error" in text and "root seed" in text and "42" in text
    assert len(power_table(res)) == 4 and len(type1_check(res)) == 2
    assert "numpy" in assumptions_table(res)["value"].str.cat()
    assert "WARNING" not in str(res.summary()) or f["type1_flag"].any()


def _flaky(frame):
    """A user analysis that fails on some replicates."""
    y = frame["y"].to_numpy()
    if y[0] > -4:
        raise ValueError("synthetic failure")
    d = frame.groupby("trt")["y"].mean()
    return {"estimate": d[1] - d[0], "std_error": 1e-6, "p_value": 0.0}


def test_failed_fits_count_as_failures_to_reject():
    sc = _scenario()
    res = simulate_power(sc, n_per_arm=[10], n_sim=40, seed=3, analysis=_flaky, progress=False)
    f = res.to_frame().iloc[0]
    failed = res.replicates["failed"]
    assert 0 < f["n_failed"] < 40 and f["n_failed"] == failed.sum()
    assert f["power"] == pytest.approx((~failed).sum() / 40)  # every success rejects here
    assert res.replicates.loc[failed, "message"].str.contains("synthetic failure").all()
    assert not res.replicates.loc[failed, "reject"].any()


def test_responder_power_matches_two_proportion_formula_and_type1_error():
    sc = _scenario(retention=[1, 1, 1, 1])
    res = simulate_power([sc, sc.null()], n_per_arm=[40, 80], n_sim=600, seed=11,
                         analysis="responder", threshold=-12.0, progress=False)
    f = res.to_frame()
    alt = f[~f["null"]]
    assert np.all(np.abs(alt["power"] - alt["analytic_power"]) < 3 * alt["mcse"] + 0.01)
    null = f[f["null"]]
    assert np.all(np.abs(null["power"] - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 600))


def test_lmm_slope_estimates_the_slope_difference():
    sc = _scenario(retention=[1, 1, 1, 1], times=[1, 2, 4, 6])
    res = simulate_power(sc, n_per_arm=[30], n_sim=4, seed=5, analysis="lmm_slope",
                         progress=False)
    f = res.to_frame().iloc[0]
    assert f["n_failed"] == 0
    assert abs(f["mean_estimate"] - sc.truth("lmm_slope")) < 1.0
    assert 0 < f["analytic_power"] < 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_per_arm=[1, 10]), "n_per_arm"),
    (dict(n_per_arm=["a"]), "n_per_arm"),
    (dict(n_sim=0), "n_sim"),
    (dict(seed=-1), "seed"),
    (dict(analysis="anova"), "analysis"),
    (dict(analysis="responder"), "threshold"),
    (dict(covariance="banded"), "structure|covariance"),
    (dict(df_method="wald"), "df_method"),
    (dict(analysis="cox"), "maintenance"),
    (dict(alpha=1.5), "alpha"),
    (dict(scheduler="nonsense"), "scheduler"),
])
def test_bad_requests_are_rejected_before_running(kwargs, match):
    base = dict(n_per_arm=[10], n_sim=2, seed=1, progress=False)
    base.update(kwargs)
    with pytest.raises((ConfigurationError, ValueError), match=match):
        simulate_power(_scenario(), **base)
    with pytest.raises(ConfigurationError, match="Scenario"):
        simulate_power({"visits": VISITS}, n_per_arm=[10], n_sim=2, seed=1)


def test_synthetic_single_responder_small_study():
    sc = __import__("kanalysis.design", fromlist=["Scenario"]).Scenario.from_synthetic("single")
    for analysis in ("responder", "remitter"):
        res = simulate_power(sc, n_per_arm=[20, 30], n_sim=2, seed=2, analysis=analysis,
                             progress=False)
        f = res.to_frame()
        assert list(f["n_per_arm"]) == [20, 30] and f["n_failed"].sum() == 0
        assert np.isfinite(f["true_effect"]).all() and (f["true_effect"] > 0).all()


@pytest.mark.slow
def test_mmrm_power_matches_lu_luo_chen_and_type1_error_holds():
    """Simulated MMRM (us, Satterthwaite) power agrees with LLC (2008) under MCAR monotone
    dropout, and the null scenario rejects at 5% within MC error."""
    sc = _scenario()
    res = simulate_power([sc, sc.null()], n_per_arm=[40, 80], n_sim=500, seed=2026,
                         progress=False, workers=2)
    f = res.to_frame()
    alt = f[~f["null"]]
    assert np.all(np.abs(alt["power"] - alt["analytic_power"]) < 3 * alt["mcse"])
    null = f[f["null"]]
    assert np.all(np.abs(null["power"] - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 500))
    assert np.all(np.abs(alt["coverage"] - 0.95) < 3 * np.sqrt(0.05 * 0.95 / 500))
    assert np.all(np.abs(alt["se_ratio"] - 1) < 0.15)


@pytest.mark.slow
def test_type1_error_large_study_mmrm_with_mar_dropout():
    sc = _scenario(dropout="mar", mar_slope=1.0).null()
    res = simulate_power(sc, n_per_arm=[50], n_sim=2000, seed=99, progress=False, workers=2)
    f = res.to_frame().iloc[0]
    assert abs(f["power"] - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 2000)
    assert not f["type1_flag"] or abs(f["power"] - 0.05) > 2 * f["mcse"]


def test_synthetic_maintenance_cox_and_logrank():
    sc = Scenario.from_synthetic("maintenance", relapse_hr=0.4)
    cox = simulate_power(sc, n_per_arm=[20], n_sim=2, seed=4, analysis="cox", progress=False)
    lr = simulate_power(sc, n_per_arm=[20], n_sim=2, seed=4, analysis="logrank", progress=False)
    fc, fl = cox.to_frame().iloc[0], lr.to_frame().iloc[0]
    assert fc["n_failed"] == 0 and fc["true_effect"] == pytest.approx(np.log(0.4))
    assert fl["n_failed"] == 0 and fl["true_effect"] == fc["true_effect"]
    # the same trials: the log-rank run reports the Cox estimate with the log-rank p-value
    np.testing.assert_array_equal(cox.replicates["estimate"], lr.replicates["estimate"])
    assert not np.array_equal(cox.replicates["p_value"], lr.replicates["p_value"])
