"""Unit tests of the likelihood engine: gradients, invariances, agreement with statsmodels,
robustness and input checks. No number here comes from our own output: each test compares two
independent computations (analytic vs finite-difference gradient, two engines, two
parameterisations of the same model, statsmodels) or checks a property that must hold.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.errors import (
    ConfigurationError,
    ConvergenceWarning,
    DataValidationError,
    FitFailedError,
)
from kanalysis.models import _engine, covariance, log_time, lrt, piecewise


def simulate_trajectories(n_subjects, seed=0, days=(0, 1, 3, 7, 14, 21, 28, 42), dropout=0.2,
                          slope_sd=0.15, jitter=0.0):
    rng = np.random.default_rng(seed)
    days = np.asarray(days, float)
    t = len(days)
    subj = np.repeat(np.arange(n_subjects), t)
    day = np.tile(days, n_subjects) + jitter * rng.random(n_subjects * t)
    arm = np.repeat(rng.integers(0, 2, n_subjects), t).astype(float)
    b0 = np.repeat(rng.normal(0, 5, n_subjects), t)
    b1 = np.repeat(rng.normal(0, slope_sd, n_subjects), t)
    score = 30 + b0 + (-0.3 + b1) * day - 0.2 * day * arm + rng.normal(0, 3, n_subjects * t)
    vidx = np.tile(np.arange(t), n_subjects)
    drop = np.repeat(rng.random(n_subjects) < dropout, t)
    dropvis = np.repeat(rng.integers(1, t, n_subjects), t)
    keep = ~(drop & (vidx >= dropvis))
    return pd.DataFrame({"subject_id": subj.astype(str), "day": day, "visit": vidx, "arm": arm,
                         "score": score})[keep].reset_index(drop=True)


@pytest.fixture(scope="module")
def traj():
    return simulate_trajectories(150, seed=3)


def _fd_grad(f, x, h=1e-6):
    g = np.empty_like(x)
    for k in range(len(x)):
        e = np.zeros_like(x)
        e[k] = h * max(1.0, abs(x[k]))
        g[k] = (f(x + e) - f(x - e)) / (2 * e[k])
    return g


# ---------------------------------------------------------------------------------------------
# analytic gradients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine_cls", [_engine.LMMEngine, _engine.LMMPatternEngine])
@pytest.mark.parametrize("reml", [True, False])
def test_lmm_gradients_match_finite_differences(traj, engine_cls, reml):
    d = traj
    X = np.column_stack([np.ones(len(d)), d.day, d.arm, d.day * d.arm])
    Z = np.column_stack([np.ones(len(d)), d.day])
    codes = pd.factorize(d.subject_id)[0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    eng = engine_cls(d.score.to_numpy(), X, Z, starts, reml=reml)
    theta = np.array([1.3, -0.01, 0.05])
    _, g = eng.deviance_and_grad(theta)
    np.testing.assert_allclose(g, _fd_grad(eng.deviance, theta), rtol=1e-5, atol=1e-5)
    nat = eng.natural_from_theta(theta)
    np.testing.assert_allclose(eng.grad_nat(nat), _fd_grad(eng.deviance_nat, nat, h=1e-7),
                               rtol=1e-4, atol=1e-5)
    # dC/dphi_k = C P_k C
    P = eng.P_list(nat)
    C0 = eng.state(nat)["cov_beta"]
    for k in range(len(nat)):
        e = np.zeros_like(nat)
        e[k] = 1e-6 * max(1.0, abs(nat[k]))
        dC = (eng.state(nat + e)["cov_beta"] - eng.state(nat - e)["cov_beta"]) / (2 * e[k])
        exact = C0 @ P[k] @ C0
        np.testing.assert_allclose(dC, exact, rtol=1e-4, atol=1e-5 * np.abs(exact).max())


def _mmrm_engine(d, structure_name, reml=True, group=False):
    X = np.column_stack([np.ones(len(d))] + [(d.visit == v).to_numpy(float)
                                             for v in range(1, 5)] + [d.arm])
    codes = pd.factorize(d.subject_id)[0]
    n_subj = codes.max() + 1
    grp = np.zeros(n_subj, dtype=int)
    if group:
        grp[codes] = d.arm.to_numpy().astype(int)
    structs = [covariance.make_structure(structure_name, 5) for _ in range(2 if group else 1)]
    return _engine.MMRMEngine(d.score.to_numpy(), X, d.visit.to_numpy(), codes, n_subj, 5, grp,
                              structs, reml=reml), structs


@pytest.mark.parametrize("name", ["us", "cs", "csh", "ar1", "ar1h", "toep"])
def test_mmrm_gradients_match_finite_differences(name):
    d = simulate_trajectories(60, seed=5, days=(0, 7, 14, 21, 28))
    eng, structs = _mmrm_engine(d, name, reml=True, group=(name == "us"))
    rng = np.random.default_rng(1)
    opt = np.concatenate([s.start(np.eye(5) * 20 + 8) for s in structs])
    opt = opt + 0.05 * rng.standard_normal(len(opt))
    f = lambda z: eng.deviance_and_grad_opt(z)[0]  # noqa: E731
    np.testing.assert_allclose(eng.deviance_and_grad_opt(opt)[1], _fd_grad(f, opt), rtol=1e-4,
                               atol=1e-4)
    nat = eng.opt_to_nat(opt)
    np.testing.assert_allclose(eng.grad_nat(nat), _fd_grad(eng.deviance_nat, nat, h=1e-7),
                               rtol=1e-4, atol=1e-4)


def test_toeplitz_pacf_round_trip():
    s = covariance.Toeplitz(6)
    pacf = np.array([0.6, -0.3, 0.2, 0.1, -0.05])
    r = s._acf_from_pacf(pacf)
    np.testing.assert_allclose(s._pacf_from_acf(r), pacf, atol=1e-12)
    assert np.linalg.eigvalsh(r[s._lag]).min() > 0


# ---------------------------------------------------------------------------------------------
# independent implementations and invariances
# ---------------------------------------------------------------------------------------------
def test_lmm_matches_statsmodels_mixedlm(traj):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("score ~ day * arm", traj, groups=traj["subject_id"],
                         re_formula="~day").fit(reml=True, method=["lbfgs"], gtol=1e-10)
    res = ka.lmm(traj, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    np.testing.assert_allclose(res.fe_params.to_numpy(), sm.fe_params.to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(res.bse.to_numpy(), sm.bse_fe.to_numpy(), rtol=1e-3)
    np.testing.assert_allclose(res.cov_re.to_numpy(), sm.cov_re.to_numpy(), rtol=1e-3)
    assert res.scale == pytest.approx(sm.scale, rel=1e-4)
    assert res.llf == pytest.approx(sm.llf, abs=1e-4)
    blup = pd.DataFrame(sm.random_effects).T
    np.testing.assert_allclose(res.random_effects.loc[blup.index].to_numpy(), blup.to_numpy(),
                               rtol=1e-3, atol=1e-4)


def test_direct_and_pattern_engines_give_the_same_fit(traj, monkeypatch):
    fit_a = ka.lmm(traj, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    assert isinstance(fit_a.engine, _engine.LMMPatternEngine)
    monkeypatch.setattr(_engine.LMMPatternEngine, "feasible", staticmethod(lambda *a: False))
    fit_b = ka.lmm(traj, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    assert not isinstance(fit_b.engine, _engine.LMMPatternEngine)
    np.testing.assert_allclose(fit_a.fe_params, fit_b.fe_params, rtol=1e-8)
    np.testing.assert_allclose(fit_a.df, fit_b.df, rtol=1e-5)
    assert fit_a.llf == pytest.approx(fit_b.llf, abs=1e-8)


def test_compound_symmetry_mmrm_equals_random_intercept_lmm(traj):
    """Same marginal model in two parameterisations: equal llf, estimates, SEs and df."""
    lm = ka.lmm(traj, "score ~ C(visit) * arm", groups="subject_id", re_formula="~ 1")
    mm = ka.mmrm(traj, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                 covariance="cs")
    assert lm.llf == pytest.approx(mm.llf, abs=1e-6)
    np.testing.assert_allclose(lm.fe_params, mm.fe_params, rtol=1e-6)
    np.testing.assert_allclose(lm.bse, mm.bse, rtol=1e-5)
    np.testing.assert_allclose(lm.df, mm.df, rtol=1e-4)
    cs = mm.cov.to_numpy()
    assert cs[0, 1] == pytest.approx(lm.cov_re.iloc[0, 0], rel=1e-5)
    assert cs[0, 0] - cs[0, 1] == pytest.approx(lm.scale, rel=1e-5)


def test_two_visit_structures_coincide():
    """With two visits csh, ar1h and us all have three free parameters: identical fits."""
    d = simulate_trajectories(80, seed=11, days=(0, 14), dropout=0.3)
    fits = {c: ka.mmrm(d, "score ~ C(visit) + arm", subject="subject_id", visit="visit",
                       covariance=c) for c in ("us", "csh", "ar1h")}
    for c in ("csh", "ar1h"):
        assert fits[c].llf == pytest.approx(fits["us"].llf, abs=1e-6)
        np.testing.assert_allclose(fits[c].cov, fits["us"].cov, rtol=1e-4)
        np.testing.assert_allclose(fits[c].bse, fits["us"].bse, rtol=1e-4)


def test_group_specific_covariance_equals_separate_fits():
    """With a fully arm-interacted mean, per-arm covariances equal per-arm separate fits."""
    d = simulate_trajectories(120, seed=7, days=(0, 7, 14, 28))
    d.loc[d.arm == 1, "score"] *= 1.7  # different variances by arm
    both = ka.mmrm(d, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                   covariance="us", group="arm")
    assert set(both.cov) == {0.0, 1.0}
    for a in (0.0, 1.0):
        sub = d[d.arm == a]
        one = ka.mmrm(sub, "score ~ C(visit)", subject="subject_id", visit="visit",
                      covariance="us")
        np.testing.assert_allclose(both.cov[a].to_numpy(), one.cov.to_numpy(), rtol=1e-5)
    pooled = ka.mmrm(d, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                     covariance="us")
    assert both.llf > pooled.llf


def test_kenward_roger_single_contrast_f_equals_t_squared():
    d = simulate_trajectories(80, seed=2, days=(0, 7, 14, 28), dropout=0.4)
    res = ka.mmrm(d, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                  covariance="us", df_method="kenward-roger")
    est = res.estimate({"arm": 1.0})
    ft = res.f_test({"arm": 1.0})
    assert ft["F"] == pytest.approx(float(est["statistic"].iloc[0]) ** 2, rel=1e-8)
    assert ft["den_df"] == pytest.approx(float(est["df"].iloc[0]), rel=1e-6)
    # the KR-adjusted covariance is never smaller than the model-based one on the diagonal
    assert np.all(np.diag(res.cov_params()) >= np.diag(res.cov_params_model) - 1e-12)


# ---------------------------------------------------------------------------------------------
# LS-means, contrasts, predictions
# ---------------------------------------------------------------------------------------------
def test_lsmeans_proportional_weights_equal_mean_prediction_in_additive_model():
    rng = np.random.default_rng(4)
    d = simulate_trajectories(100, seed=4, days=(0, 7, 14))
    sex = rng.choice(["F", "M"], size=d.subject_id.nunique(), p=[0.7, 0.3])
    d["sex"] = pd.Series(sex, index=d.subject_id.unique()).loc[d.subject_id].to_numpy()
    d["age"] = rng.normal(40, 10, len(d))
    res = ka.mmrm(d, "score ~ C(visit) * arm + sex + age", subject="subject_id", visit="visit")
    ls = res.lsmeans("arm", by="visit", weights="proportional")
    for _, row in ls.iterrows():
        nd = d.copy()
        nd["arm"] = row["arm"]
        nd["visit"] = row["visit"]
        nd["age"] = d["age"].mean()
        pred = res.estimate(np.asarray(
            res.design.model_spec.get_model_matrix(nd), float).mean(0))
        assert row["estimate"] == pytest.approx(float(pred["estimate"].iloc[0]), rel=1e-10)
    eq = res.lsmeans("arm", by="visit", weights="equal")
    # sex is unbalanced (70/30), so equal and proportional weights give different means
    assert not np.allclose(eq["estimate"], ls["estimate"])
    # ... but the same arm differences (no sex-by-arm interaction)
    ce = res.contrast("arm", by="visit", weights="equal")
    cp = res.contrast("arm", by="visit", weights="proportional")
    np.testing.assert_allclose(ce["estimate"], cp["estimate"], rtol=1e-10)
    assert list(ce.columns) == ["contrast", "visit", "estimate", "std_error", "df", "statistic",
                                "p_value", "ci_lower", "ci_upper"]


def test_contrast_trt_vs_ctrl_and_estimate_agree(traj):
    res = ka.mmrm(traj, "score ~ C(visit) * arm", subject="subject_id", visit="visit")
    c = res.contrast("arm", by="visit", method="trt.vs.ctrl", ref=0.0)
    assert (c["contrast"] == "1 - 0").all()
    last = c[c["visit"] == 7].iloc[0]
    L = {"arm": 1.0, "C(visit)[T.7]:arm": 1.0}
    est = res.estimate(L).iloc[0]
    for k in ("estimate", "std_error", "df", "p_value", "ci_lower", "ci_upper"):
        assert last[k] == pytest.approx(est[k], rel=1e-10)
    with pytest.raises(ConfigurationError):
        res.contrast("arm", by="visit", method="trt.vs.ctrl", ref=5.0)
    with pytest.raises(ConfigurationError):
        res.estimate({"no_such_term": 1.0})


def test_predict_population_with_ci(traj):
    res = ka.lmm(traj, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    grid = pd.DataFrame({"day": [0.0, 7.0, 28.0], "arm": [1.0, 1.0, 1.0]})
    pr = res.predict(grid)
    b = res.fe_params
    expect = b["Intercept"] + b["arm"] + grid.day * (b["day"] + b["day:arm"])
    np.testing.assert_allclose(pr["predicted"], expect, rtol=1e-12)
    assert (pr["ci_lower"] < pr["predicted"]).all() and (pr["predicted"] < pr["ci_upper"]).all()
    X = np.column_stack([np.ones(3), grid.day, grid.arm, grid.day * grid.arm])
    np.testing.assert_allclose(pr["std_error"] ** 2,
                               np.einsum("ip,pq,iq->i", X, res.cov_params().to_numpy(), X))
    subj = res.predict(traj.iloc[:5], level="subject")
    re = res.random_effects.loc[traj.subject_id.iloc[0]]
    expect0 = expect_row = (b["Intercept"] + re["Intercept"]
                            + traj.day.iloc[0] * (b["day"] + re["day"])
                            + traj.arm.iloc[0] * (b["arm"] + traj.day.iloc[0] * b["day:arm"]))
    assert subj["predicted"].iloc[0] == pytest.approx(expect0)
    del expect_row


def test_result_tables_and_summary(traj):
    res = ka.lmm(traj, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    tab = res.to_frame()
    assert list(tab.columns) == ["term", "estimate", "std_error", "df", "statistic", "p_value",
                                 "ci_lower", "ci_upper"]
    assert list(tab.term) == ["Intercept", "day", "arm", "day:arm"]
    vc = res.variance_components()
    assert vc["sd_or_corr"].iloc[-1] == pytest.approx(np.sqrt(res.scale))
    corr = vc.dropna(subset=["term2"])["sd_or_corr"].iloc[0]
    G = res.cov_re.to_numpy()
    assert corr == pytest.approx(G[0, 1] / np.sqrt(G[0, 0] * G[1, 1]))
    text = res.summary()
    assert "day:arm" in text and "Satterthwaite" in text
    assert res.aic == pytest.approx(-2 * res.llf + 2 * 8)
    ci = res.conf_int()
    assert (ci["lower"] < res.fe_params).all()


# ---------------------------------------------------------------------------------------------
# robustness and input checks
# ---------------------------------------------------------------------------------------------
def test_single_observation_subjects_and_intermittent_missing_visits():
    d = simulate_trajectories(120, seed=9, days=(0, 7, 14, 21, 28), dropout=0.0)
    rng = np.random.default_rng(9)
    d = d[rng.random(len(d)) > 0.3]  # intermittent missingness
    singles = d.groupby("subject_id").head(1).iloc[:10].assign(subject_id=lambda x: "single" + x.subject_id)
    d = pd.concat([d, singles], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        m = ka.mmrm(d, "score ~ C(visit) * arm", subject="subject_id", visit="visit")
        lm = ka.lmm(d, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    for r in (m, lm):
        assert np.isfinite(r.fe_params).all() and np.isfinite(r.bse).all()
        assert np.isfinite(r.df).all() and np.isfinite(r.llf)
    assert m.n_patterns > 5


def test_unbalanced_times_use_direct_engine():
    d = simulate_trajectories(200, seed=8, jitter=0.9)
    res = ka.lmm(d, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    assert not isinstance(res.engine, _engine.LMMPatternEngine)
    assert res.converged and np.isfinite(res.df).all()


def test_boundary_fit_warns_and_stays_finite():
    d = simulate_trajectories(100, seed=12, slope_sd=0.0)
    d["score"] = 30 - 0.3 * d.day + np.random.default_rng(0).normal(0, 3, len(d))
    with pytest.warns(ConvergenceWarning, match="boundary"):
        res = ka.lmm(d, "score ~ day", groups="subject_id", re_formula="~ 1 + day")
    assert np.isfinite(res.bse).all() and np.isfinite(res.llf)


def test_missing_values_are_dropped_and_counted(traj):
    d = traj.copy()
    d.loc[[0, 5, 9], "score"] = np.nan
    d.loc[11, "arm"] = np.nan
    res = ka.lmm(d, "score ~ day * arm", groups="subject_id")
    assert res.n_dropped == 4 and res.n_obs == len(d) - 4


def test_bad_input_errors_name_the_problem(traj):
    with pytest.raises(ConfigurationError, match="nosuch"):
        ka.lmm(traj, "score ~ nosuch", groups="subject_id")
    with pytest.raises(ConfigurationError, match="subj"):
        ka.lmm(traj, "score ~ day", groups="subj")
    bad = traj.assign(score=traj.score.astype(str))
    with pytest.raises(DataValidationError, match="score"):
        ka.lmm(bad, "score ~ day", groups="subject_id")
    bad = traj.copy()
    bad.loc[3, "subject_id"] = None
    with pytest.raises(DataValidationError, match="rows"):
        ka.mmrm(bad, "score ~ C(visit)", subject="subject_id", visit="visit")
    dup = pd.concat([traj, traj.iloc[[0]]], ignore_index=True)
    with pytest.raises(DataValidationError, match="visit"):
        ka.mmrm(dup, "score ~ C(visit)", subject="subject_id", visit="visit")
    with pytest.raises(ConfigurationError, match="covariance"):
        ka.mmrm(traj, "score ~ C(visit)", subject="subject_id", visit="visit", covariance="un2")
    with pytest.raises(ConfigurationError, match="df_method"):
        ka.mmrm(traj, "score ~ C(visit)", subject="subject_id", visit="visit", df_method="bw")


def test_time_scale_helpers():
    h = pd.Series([0.0, 4.0, 24.0], name="hours")
    np.testing.assert_allclose(log_time(h), np.log([1.0, 5.0, 25.0]))
    pw = piecewise(pd.Series([0.0, 3.0, 10.0], name="day"), knots=[1, 7])
    assert list(pw.columns) == ["day", "day_after_1", "day_after_7"]
    np.testing.assert_allclose(pw["day_after_7"], [0.0, 0.0, 3.0])
    with pytest.raises(ConfigurationError):
        log_time([-2.0])


def test_aliased_columns_are_dropped_with_a_warning(traj):
    d = traj.assign(arm_copy=traj.arm * 2.0)
    with pytest.warns(ka.errors.StatisticalWarning, match="arm_copy"):
        res = ka.lmm(d, "score ~ day + arm + arm_copy", groups="subject_id")
    assert list(res.fe_params.index) == ["Intercept", "day", "arm"]
    ref = ka.lmm(traj, "score ~ day + arm", groups="subject_id")
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-10)


def test_mmrm_group_must_be_constant_within_subject(traj):
    d = traj.assign(g=np.where(traj.visit % 2 == 0, "a", "b"))
    with pytest.raises(DataValidationError, match="constant within subject"):
        ka.mmrm(d, "score ~ C(visit)", subject="subject_id", visit="visit", group="g")
    with pytest.raises(ConfigurationError, match="REML"):
        ka.mmrm(traj, "score ~ C(visit)", subject="subject_id", visit="visit", reml=False,
                df_method="kenward-roger")


def test_degenerate_data_raise_clear_errors(traj):
    with pytest.raises(DataValidationError, match="exactly"):
        ka.lmm(traj.assign(score=5.0), "score ~ day", groups="subject_id")
    with pytest.raises(DataValidationError, match="exactly"):
        ka.mmrm(traj.assign(score=5.0), "score ~ C(visit)", subject="subject_id", visit="visit")
    one = traj[traj.subject_id == traj.subject_id.iloc[0]]
    with pytest.raises(ConfigurationError, match="single subject"):
        ka.lmm(one, "score ~ day", groups="subject_id")


@pytest.mark.parametrize("time_factor", [1 / 7, 1440.0])
def test_estimates_are_equivariant_under_rescaling(traj, time_factor):
    """Outcome x 1000 and time in weeks or minutes: same t, df, llf up to the known shift."""
    a = ka.lmm(traj, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        b = ka.lmm(traj.assign(score=traj.score * 1000, day=traj.day * time_factor),
                   "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    np.testing.assert_allclose(a.tvalues, b.tvalues, rtol=1e-5)
    np.testing.assert_allclose(a.df, b.df, rtol=1e-4)
    # REML: |V| scales by 1000^(2N), |X'V^-1X| by 1000^(-2p) and time_factor^-4 (two columns)
    shift = -(a.n_obs - 4) * np.log(1000) - 2 * np.log(time_factor)
    assert b.llf == pytest.approx(a.llf + shift, abs=1e-5)
    G_a, G_b = a.cov_re.to_numpy(), b.cov_re.to_numpy()
    assert G_b[1, 1] == pytest.approx(G_a[1, 1] * 1000**2 / time_factor**2, rel=1e-4)


@pytest.mark.parametrize("df_method", ["satterthwaite", "kenward-roger"])
def test_mmrm_raw_data_mode_equals_pattern_sums(monkeypatch, df_method):
    """The memory-saving path (no pattern sums) gives the same fit as the pattern-sum path."""
    d = simulate_trajectories(60, seed=21, days=(0, 7, 14, 28), dropout=0.0)
    d = d[np.random.default_rng(2).random(len(d)) > 0.25]
    kw = dict(subject="subject_id", visit="visit", covariance="csh", df_method=df_method,
              group="arm")
    monkeypatch.setattr(_engine.MMRMEngine, "pattern_over_rows", np.inf)
    a = ka.mmrm(d, "score ~ C(visit) * arm", **kw)
    monkeypatch.setattr(_engine.MMRMEngine, "max_pattern_doubles", 0)
    b = ka.mmrm(d, "score ~ C(visit) * arm", **kw)
    assert a.engine.pattern_stats and not b.engine.pattern_stats
    assert a.llf == pytest.approx(b.llf, abs=1e-8)
    np.testing.assert_allclose(a.bse, b.bse, rtol=1e-6)
    np.testing.assert_allclose(a.df, b.df, rtol=1e-5)


def test_mmrm_predict_population_matches_design(traj):
    res = ka.mmrm(traj, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                  covariance="ar1")
    pr = res.predict()
    np.testing.assert_allclose(pr["predicted"], res.design.X @ res.fe_params.to_numpy())
    assert pr.index.equals(res.design.data.index)
    assert (pr["ci_upper"] > pr["ci_lower"]).all()


def test_string_visit_labels_keep_visit_order():
    d = simulate_trajectories(80, seed=31, days=(0, 1, 3, 7, 14))
    labels = np.array(["40min", "4h", "24h", "day7", "day14"])  # alphabetical order differs
    s = d.assign(visit_label=labels[d.visit])
    num = ka.mmrm(d, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                  covariance="ar1")
    lab = ka.mmrm(s, "score ~ C(visit_label) * arm", subject="subject_id", visit="visit_label",
                  covariance="ar1")
    assert list(lab.cov.index) == list(labels)
    assert lab.llf == pytest.approx(num.llf, abs=1e-8)
    con = lab.contrast("arm", by="visit_label")
    assert list(con["visit_label"]) == list(labels)
    np.testing.assert_allclose(con["estimate"], num.contrast("arm", by="visit")["estimate"],
                               rtol=1e-8)
    rev = ka.mmrm(s, "score ~ C(visit_label) * arm", subject="subject_id", visit="visit_label",
                  covariance="ar1", visit_order=list(labels[::-1]))
    assert list(rev.cov.index) == list(labels[::-1])
    with pytest.raises(ConfigurationError, match="visit_order"):
        ka.mmrm(s, "score ~ C(visit_label)", subject="subject_id", visit="visit_label",
                visit_order=list(labels[:3]))


@pytest.mark.parametrize("covariance", ["us", "toep", "ar1h"])
def test_mmrm_is_equivariant_under_outcome_scale(covariance):
    d = simulate_trajectories(80, seed=200, days=(0, 3, 7, 14, 21, 28), dropout=0.5)
    fits = [ka.mmrm(d.assign(score=d.score * f), "score ~ C(visit) * arm", subject="subject_id",
                    visit="visit", covariance=covariance) for f in (1.0, 1e4)]
    a, b = fits
    n_resid = a.n_obs - len(a.fe_params)
    assert b.llf == pytest.approx(a.llf - n_resid * np.log(1e4), abs=1e-6)
    np.testing.assert_allclose(b.cov.to_numpy(), a.cov.to_numpy() * 1e8, rtol=1e-5)
    np.testing.assert_allclose(a.df, b.df, rtol=1e-4)


@pytest.mark.parametrize("name", ["us", "csh", "ar1h", "toep"])
@pytest.mark.parametrize("reml", [True, False])
def test_mmrm_analytic_hessian_matches_finite_differences(name, reml):
    from kanalysis.models import inference
    from kanalysis.models._engine import second_derivatives

    d = simulate_trajectories(60, seed=5, days=(0, 7, 14, 21, 28))
    eng, structs = _mmrm_engine(d, name, reml=reml, group=(name == "us"))
    opt = np.concatenate([s.start(np.eye(5) * 20 + 8) for s in structs]) + 0.05
    nat = eng.opt_to_nat(opt)
    numeric = inference.numerical_hessian(eng.grad_nat, nat, typical=eng.natural_scale(nat))
    analytic = eng.hessian_nat(nat, second_derivatives(structs, nat))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-5 * np.abs(numeric).max())


def test_visit_labels_ordered_by_within_subject_precedence():
    """The first subject misses "4h": first appearance alone would put "4h" last."""
    d = simulate_trajectories(60, seed=41, days=(0, 1, 3, 7, 14), dropout=0.0)
    labels = np.array(["40min", "4h", "24h", "day7", "day14"])
    d = d.assign(visit_label=labels[d.visit])
    first = d.subject_id.iloc[0]
    d = d[~((d.subject_id == first) & (d.visit_label == "4h"))]
    res = ka.mmrm(d, "score ~ C(visit_label)", subject="subject_id", visit="visit_label",
                  covariance="ar1")
    assert list(res.cov.index) == list(labels)


@pytest.mark.parametrize("name", ["us", "csh", "ar1"])
def test_kenward_roger_fast_inner_equals_explicit_sum(name):
    """sum_kl W_kl (Q_kl - P_k C P_l - R_kl/4) from the O(K t^3) route equals the explicit sum."""
    from kanalysis.models import inference
    from kanalysis.models._engine import second_derivatives

    d = simulate_trajectories(60, seed=8, days=(0, 7, 14, 21, 28), dropout=0.4)
    eng, structs = _mmrm_engine(d, name, reml=True, group=True)
    opt = np.concatenate([s.start(np.eye(5) * 20 + 8) for s in structs]) + 0.05
    nat = eng.opt_to_nat(opt)
    d2 = second_derivatives(structs, nat)
    Wphi = 2 * np.linalg.inv(eng.hessian_nat(nat, d2) + 50 * np.eye(len(nat)))
    C = eng.state(nat)["C"]
    P = eng.P_list(nat)
    Q, R = eng.QR_lists(nat, d2)
    explicit = inference.kenward_roger_adjusted(C, P, Q, R, Wphi)
    fast = C + 2 * C @ eng.kr_inner(nat, Wphi, d2) @ C
    np.testing.assert_allclose(fast, explicit, rtol=1e-8, atol=1e-12 * np.abs(explicit).max())


def test_lrt_of_nested_covariance_structures(traj):
    cs = ka.mmrm(traj, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                 covariance="cs")
    us = ka.mmrm(traj, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                 covariance="us")
    test = lrt(cs, us)
    t = 8
    assert test["df"].iloc[0] == t * (t + 1) // 2 - 2
    assert test["statistic"].iloc[0] == pytest.approx(2 * (us.llf - cs.llf))
    assert us.llf >= cs.llf
    with pytest.raises(ConfigurationError):
        lrt(us, cs)


def test_stateful_transforms_in_formulas(traj):
    """center(day) reparameterises the same model: same predictions, LS-means and llf."""
    a = ka.lmm(traj, "score ~ day * arm", groups="subject_id", re_formula="~ 1 + day")
    b = ka.lmm(traj, "score ~ center(day) * arm", groups="subject_id", re_formula="~ 1 + day")
    assert b.llf == pytest.approx(a.llf, abs=1e-6)
    new = pd.DataFrame({"day": [0.0, 10.0], "arm": [1.0, 0.0]})
    np.testing.assert_allclose(b.predict(new)["predicted"], a.predict(new)["predicted"],
                               rtol=1e-8)
    np.testing.assert_allclose(b.lsmeans("arm")["estimate"], a.lsmeans("arm")["estimate"],
                               rtol=1e-8)


def test_non_convergence_warns_with_advice(traj, monkeypatch):
    from types import SimpleNamespace

    from kanalysis.models import _results

    monkeypatch.setattr(_results, "_newton", lambda fg, x, f, g, lo, **kw: (x, f, g, False))
    monkeypatch.setattr(_results.optimize, "minimize",
                        lambda fg, x, **kw: SimpleNamespace(x=x, message="iteration limit"))
    # MMRM: a failed fit is reported as failed, never as numbers (as R mmrm), after trying
    # every starting value; the error carries the optimiser trace of every attempt
    with pytest.raises(FitFailedError, match="did not converge from any starting value.*"
                       "simpler covariance") as err:
        ka.mmrm(traj, "score ~ C(visit) * arm", subject="subject_id", visit="visit")
    starts = {row["start"] for row in err.value.trace}
    assert {"empirical", "uncorrelated", "exchangeable"} <= starts
    with pytest.warns(ConvergenceWarning, match="did not converge.*rescaling time"):
        res = ka.lmm(traj, "score ~ day", groups="subject_id", re_formula="~ 1 + day")
    assert not res.converged


def test_non_finite_likelihood_raises_convergence_error():
    from kanalysis.errors import ConvergenceError
    from kanalysis.models._results import minimise

    with pytest.raises(ConvergenceError, match="non-finite"):
        minimise(lambda x: (np.nan, np.array([np.nan])), np.array([0.0]), what="test")


def test_mmrm_pattern_sums_equal_the_padded_products(monkeypatch):
    """The compact per-pattern sums (non-zero columns per visit only) equal the sums over the
    padded subject x visit design, with subject weights, missing visits and a continuous
    covariate."""
    monkeypatch.setattr(_engine.MMRMEngine, "pattern_over_rows", np.inf)
    rng = np.random.default_rng(11)
    n, t = 40, 4
    subj = np.repeat(np.arange(n), t)
    visit = np.tile(np.arange(t), n)
    keep = rng.random(n * t) > 0.25
    subj, visit = subj[keep], visit[keep]
    arm = (subj % 2).astype(float)
    base = rng.normal(0, 1, n)[subj]
    onehot = np.eye(t)[visit][:, 1:]
    X = np.column_stack([np.ones(len(subj)), base, arm, onehot, onehot * arm[:, None]])
    y = rng.normal(size=len(subj))
    y[rng.random(len(y)) < 0.1] = np.nan
    w = rng.integers(0, 3, n).astype(float)
    structures = [covariance.make_structure("us", t, list(range(t)))]
    eng = _engine.MMRMEngine(y, X, visit, subj, n, t, np.zeros(n, int), structures,
                             subject_weights=w, keep_rows=True)
    p = X.shape[1]
    S = eng.n_patterns
    for s in range(S):
        b0, b1 = eng.bounds[s], eng.bounds[s + 1]
        Xs, ys = eng.Xs[b0:b1], eng.ys[b0:b1]  # padded, root-weighted rows of pattern s
        Txx = np.einsum("njp,nkq->jkpq", Xs, Xs).reshape(t * t, p * p)
        Txy = np.einsum("njp,nk->jkp", Xs, ys).reshape(t * t, p)
        np.testing.assert_allclose(eng.Txx[s], Txx, atol=1e-12)
        np.testing.assert_allclose(eng.Txy[s], Txy, atol=1e-12)
        np.testing.assert_allclose(eng.Tyy[s], (ys.T @ ys).ravel(), atol=1e-12)
    # the OLS start uses the engine's own outcome and weights
    rows = np.isfinite(y) & (w[subj] > 0)
    sw = w[subj][rows]
    beta = np.linalg.solve((X[rows] * sw[:, None]).T @ X[rows], (X[rows] * sw[:, None]).T @ y[rows])
    np.testing.assert_allclose(eng.ols_beta(), beta, rtol=1e-10)


def test_mmrm_engine_keeps_pattern_sums_only_when_they_pay(traj):
    """Pattern sums for a visit schedule shared by many subjects; the padded rows when nearly
    every subject has its own pattern of many visits (the sums would be larger than the data)."""
    few = ka.mmrm(traj, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                  covariance="ar1")
    assert few.engine.pattern_stats
    rng = np.random.default_rng(4)
    n, t = 60, 12
    d = pd.DataFrame({"subject_id": np.repeat(np.arange(n), t), "visit": np.tile(np.arange(t), n),
                      "arm": np.repeat(rng.choice(["a", "b"], n), t)})
    d["score"] = rng.normal(size=len(d)) + d["visit"] * 0.2
    d = d[rng.random(len(d)) > 0.3]
    many = ka.mmrm(d, "score ~ C(visit) * arm", subject="subject_id", visit="visit",
                   covariance="ar1")
    assert not many.engine.pattern_stats
