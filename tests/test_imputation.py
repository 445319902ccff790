"""Reference-based multiple imputation (kanalysis.imputation) against the committed R references
(tests/reference/imputation/), exact identities and the rules of each step."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis import imputation as mi
from kanalysis.errors import ConfigurationError, DataValidationError

REF = Path(__file__).parent / "reference" / "imputation"
DATA = Path(__file__).parent / "data" / "models" / "antidepressant_dia_hamd17.csv"
FORMULA = "CHANGE ~ BASVAL*VISIT + THERAPY*VISIT"
REFS = {"DRUG": "PLACEBO", "PLACEBO": "PLACEBO"}
KW = dict(subject="PATIENT", visit="VISIT", group="THERAPY")


@pytest.fixture(scope="module")
def antidep():
    d = pd.read_csv(DATA, dtype={"PATIENT": str, "VISIT": str})
    return d[["PATIENT", "VISIT", "THERAPY", "BASVAL", "CHANGE"]]


def dropout_ice(d, strategy="JR"):
    last = d.groupby("PATIENT")["VISIT"].max()
    nxt = {"4": "5", "5": "6", "6": "7"}
    ice = pd.DataFrame({"PATIENT": last.index, "VISIT": last.map(nxt)}).dropna()
    ice["strategy"] = strategy
    return ice.reset_index(drop=True)


@pytest.fixture(scope="module")
def reference():
    ref = json.loads((REF / "condmean_reference.json").read_text())
    d = pd.read_csv(REF / "condmean_data.csv", dtype={"PATIENT": str, "VISIT": str})
    ice = pd.read_csv(REF / "condmean_ice.csv", dtype={"PATIENT": str, "VISIT": str})
    return ref, d, ice


def point(res, parameter="diff", visit="7"):
    f = res.to_frame()
    return f[(f.parameter == parameter) & (f.visit.astype(str) == visit)].iloc[0]


# --- the closed-form R reference (nlme::gls + conditional means + lm) ---------------------------
@pytest.mark.parametrize("strategy", ["MAR", "JR", "CR", "CIR"])
def test_condmean_matches_closed_form_r(reference, strategy):
    ref, d, ice = reference
    ice = ice.assign(strategy=strategy)
    dr = mi.draws(d, FORMULA, **KW, ice=ice,
                  method=mi.CondMean(resampling="bootstrap", n_samples=2, seed=1), progress=False)
    imp = mi.impute(dr, references=REFS)
    # imputed values, including intermittent (MAR) and after an observed post-ICE value
    np.testing.assert_allclose(imp.Y[0], np.array(ref[strategy]["imputed"]), atol=1e-6)
    np.testing.assert_allclose(dr.full.sigmas[0], np.array(ref[strategy]["sigma"]), rtol=1e-6)
    an = mi.analyse(imp, covariates=["BASVAL"])
    got = an.labels.assign(est=an.estimate[0], se=an.std_error[0], dfs=an.df[0])
    r = pd.DataFrame(ref[strategy]["ancova"])
    m = got.merge(r, on=["visit", "parameter"], validate="1:1")
    assert len(m) == 12
    np.testing.assert_allclose(m.est, m.estimate, atol=1e-6)
    np.testing.assert_allclose(m.se, m.std_error, atol=1e-6)
    np.testing.assert_array_equal(m.dfs, m.df)


def test_post_ice_values_left_out_of_fit_but_kept(reference):
    ref, d, ice = reference
    dr = mi.draws(d, FORMULA, **KW, ice=ice.assign(strategy="JR"), progress=False,
                  method=mi.CondMean(resampling="bootstrap", n_samples=2, seed=1))
    y = dr.grid.Y
    observed_post = ~np.isnan(y) & (np.arange(4)[None] >= dr.ice_k[:, None])
    assert observed_post.sum() == 8 + 5
    assert not dr.fit_mask[observed_post].any()
    imp = mi.impute(dr, references=REFS)
    np.testing.assert_array_equal(imp.Y[0][observed_post], y[observed_post])
    # the retrieved-dropout option keeps them in the fit: a different fit
    dr2 = mi.draws(d, FORMULA, **KW, ice=ice.assign(strategy="JR"), progress=False,
                   fit_post_ice=True, method=mi.CondMean(resampling="bootstrap", n_samples=2))
    assert dr2.fit_mask[observed_post].all()
    assert not np.allclose(dr2.full.sigmas, dr.full.sigmas)


# --- exact identities ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jr_jackknife(antidep):
    dr = mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), method=mi.CondMean(),
                  progress=False)
    return dr


def test_mar_condmean_ancova_equals_mmrm_difference(antidep):
    dr = mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep, "MAR"), progress=False,
                  method=mi.CondMean(resampling="bootstrap", n_samples=2, seed=3))
    an = mi.analyse(mi.impute(dr), covariates=["BASVAL"])
    fit = ka.mmrm(antidep, "CHANGE ~ BASVAL*C(VISIT) + THERAPY*C(VISIT)", subject="PATIENT",
                  visit="VISIT")
    for v in ["4", "5", "6", "7"]:
        # DRUG - PLACEBO at visit v from the MMRM coefficients
        b = fit.fe_params
        mmrm_diff = -b["THERAPY[T.PLACEBO]"] - b.get(f"THERAPY[T.PLACEBO]:C(VISIT)[T.{v}]", 0.0)
        j = an.labels.index[(an.labels.visit == v) & (an.labels.parameter == "diff")][0]
        assert an.estimate[0, j] == pytest.approx(mmrm_diff, abs=1e-6)


def test_jr_without_ices_equals_mar(antidep):
    m = mi.CondMean(resampling="bootstrap", n_samples=3, seed=5)
    a = mi.pool(mi.analyse(mi.impute(mi.draws(antidep, FORMULA, **KW, method=m, progress=False),
                                     references=REFS), covariates=["BASVAL"]))
    b = mi.pool(mi.analyse(mi.impute(mi.draws(antidep, FORMULA, **KW, method=m, progress=False,
                                              ice=dropout_ice(antidep, "MAR"))),
                           covariates=["BASVAL"]))
    pd.testing.assert_frame_equal(a.to_frame().drop(columns="method"),
                                  b.to_frame().drop(columns="method"), rtol=1e-9)


def test_jackknife_pooling_and_protocol(jr_jackknife):
    dr = jr_jackknife
    assert len(dr.samples) == 173 and dr.n_failed == 0
    an = mi.analyse(mi.impute(dr, references=REFS), covariates=["BASVAL"])
    res = mi.pool(an, conf_level=0.9)
    f = res.to_frame()
    for c in ("visit", "parameter", "estimate", "std_error", "ci_lower", "ci_upper", "p_value",
              "df"):
        assert c in f.columns
    assert len(f) == 12 and set(f.parameter) == {"diff", "DRUG", "PLACEBO"}
    est = an.estimate
    loo = est[1:]
    se = np.sqrt(171 / 172 * ((loo - loo.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(f["std_error"], se)
    np.testing.assert_allclose(f["estimate"], est[0])
    z = 1.6448536269514722
    np.testing.assert_allclose(f["ci_upper"] - f["ci_lower"], 2 * z * se)
    row = point(res)
    assert row.estimate == pytest.approx(-2.1256, abs=2e-3)  # between MAR (-2.80) and CR
    assert 0.8 < row.std_error < 1.4
    kn = res.key_numbers()
    json.dumps(kn)
    assert "JR" in str(res.summary())


def test_ice_at_first_visit_jr_and_cir_equal_cr():
    rng = np.random.default_rng(1)
    mu_own, mu_ref = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    A = rng.normal(size=(4, 4))
    S, R = A @ A.T + np.eye(4), np.cov(rng.normal(size=(4, 30)))
    cr = mi.STRATEGIES["CR"](mu_own, mu_ref, S, R, 0)
    for name in ("JR", "CIR"):
        got = mi.STRATEGIES[name](mu_own, mu_ref, S, R, 0)
        np.testing.assert_allclose(got[0], cr[0])
        np.testing.assert_allclose(got[1], cr[1])
    with pytest.raises(DataValidationError, match="LMCF"):
        mi.STRATEGIES["LMCF"](mu_own, mu_ref, S, R, 0)
    mu, sig = mi.STRATEGIES["LMCF"](mu_own, mu_ref, S, R, 2)
    np.testing.assert_allclose(mu[:, 2:], mu_own[:, [1, 1]])
    mu, _ = mi.STRATEGIES["CIR"](mu_own, mu_ref, S, R, 2)
    np.testing.assert_allclose(mu[:, 3] - mu[:, 1], mu_ref[:, 3] - mu_ref[:, 1])


def test_carpenter_covariance_is_the_regression_construction():
    """Pre-ICE values from the own arm, post-ICE values from the reference arm's regression on
    them: Cov = [[S11, S11 B'], [B S11, B S11 B' + R22.1]] with B = R21 R11^-1."""
    rng = np.random.default_rng(2)
    A, C = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    S, R = A @ A.T + np.eye(5), C @ C.T + np.eye(5)
    k = 2
    from kanalysis.imputation.strategies import carpenter_sigma

    got = carpenter_sigma(S, R, k)
    B = R[k:, :k] @ np.linalg.inv(R[:k, :k])
    R221 = R[k:, k:] - B @ R[:k, k:]
    want = np.block([[S[:k, :k], S[:k, :k] @ B.T], [B @ S[:k, :k], B @ S[:k, :k] @ B.T + R221]])
    np.testing.assert_allclose(got, want, atol=1e-10)
    np.testing.assert_allclose(carpenter_sigma(R, R, k), R)


def test_separate_covariances_per_arm(antidep):
    dr = mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), same_cov=False,
                  progress=False, method=mi.CondMean(resampling="bootstrap", n_samples=2))
    assert dr.full.sigmas.shape == (2, 4, 4)
    assert not np.allclose(dr.full.sigmas[0], dr.full.sigmas[1])
    res = mi.pool(mi.analyse(mi.impute(dr, references=REFS), covariates=["BASVAL"]))
    assert np.isfinite(res.to_frame()["estimate"]).all()


def test_user_strategy(antidep):
    def shifted_jr(mu_own, mu_ref, sigma_own, sigma_ref, k):
        mu, s = mi.STRATEGIES["JR"](mu_own, mu_ref, sigma_own, sigma_ref, k)
        mu = mu.copy()
        mu[:, k:] += 3.0
        return mu, s

    mi.register_strategy("JR+3", shifted_jr)
    try:
        m = mi.CondMean(resampling="bootstrap", n_samples=2, seed=1)
        base = mi.impute(mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), method=m,
                                  progress=False), references=REFS)
        new = mi.impute(mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep, "JR+3"),
                                 method=m, progress=False), references=REFS)
        post = base.missing & base.post_ice
        np.testing.assert_allclose((new.Y[0] - base.Y[0])[post], 3.0, atol=1e-9)
        inter = base.missing & ~base.post_ice  # one intermittent missing value: MAR, unchanged
        assert inter.sum() >= 1
        np.testing.assert_allclose(new.Y[0][inter], base.Y[0][inter], atol=1e-9)
        with pytest.raises(ConfigurationError):
            mi.register_strategy("jr", shifted_jr)
    finally:
        mi.STRATEGIES.pop("JR+3", None)


def test_update_strategy_without_refit(antidep):
    ice = dropout_ice(antidep)
    upd = ice[["PATIENT"]].assign(strategy="CR")
    m = mi.CondMean(resampling="bootstrap", n_samples=3, seed=2)
    a = mi.impute(mi.draws(antidep, FORMULA, **KW, ice=ice, method=m, progress=False),
                  references=REFS, update_strategy=upd)
    b = mi.impute(mi.draws(antidep, FORMULA, **KW, ice=ice.assign(strategy="CR"), method=m,
                           progress=False), references=REFS)
    np.testing.assert_allclose(a.Y, b.Y, atol=1e-8)


# --- data handling -----------------------------------------------------------------------------
def test_missing_visits_as_nan_rows_or_absent(antidep):
    grid = pd.MultiIndex.from_product([antidep.PATIENT.unique(), ["4", "5", "6", "7"]],
                                      names=["PATIENT", "VISIT"]).to_frame(index=False)
    subj = antidep.drop_duplicates("PATIENT")[["PATIENT", "THERAPY", "BASVAL"]]
    withnan = grid.merge(subj, on="PATIENT").merge(antidep[["PATIENT", "VISIT", "CHANGE"]],
                                                   how="left")
    assert withnan.CHANGE.isna().sum() > 0
    m = mi.CondMean(resampling="bootstrap", n_samples=2, seed=1)
    a = mi.impute(mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), method=m,
                           progress=False), references=REFS)
    b = mi.impute(mi.draws(withnan.sample(frac=1, random_state=1), FORMULA, **KW,
                           ice=dropout_ice(antidep), method=m, progress=False), references=REFS)
    np.testing.assert_allclose(a.Y, b.Y, atol=1e-9)


def test_bad_input_messages(antidep):
    ice = dropout_ice(antidep)
    with pytest.raises(DataValidationError, match="strategy"):
        mi.draws(antidep, FORMULA, **KW, ice=ice.drop(columns="strategy"))
    with pytest.raises(DataValidationError, match="not known strategies"):
        mi.draws(antidep, FORMULA, **KW, ice=ice.assign(strategy="JTR"))
    with pytest.raises(DataValidationError, match="not subjects"):
        mi.draws(antidep, FORMULA, **KW, ice=pd.concat([ice, pd.DataFrame(
            {"PATIENT": ["nobody"], "VISIT": ["5"], "strategy": ["JR"]})]))
    with pytest.raises(DataValidationError, match="not visit levels"):
        mi.draws(antidep, FORMULA, **KW, ice=ice.assign(VISIT="99"))
    with pytest.raises(DataValidationError, match="more than one row"):
        mi.draws(antidep, FORMULA, **KW, ice=pd.concat([ice, ice.iloc[:1]]))
    with pytest.raises(DataValidationError, match="needs column"):
        mi.draws(antidep, FORMULA, subject="PATIENT", visit="VISIT", group="ARM")
    with pytest.raises(ConfigurationError, match="method"):
        mi.draws(antidep, FORMULA, **KW, method="jackknife")
    with pytest.raises(ConfigurationError, match="resampling"):
        mi.CondMean(resampling="jack")
    before = antidep.copy()
    mi.draws(antidep, FORMULA, **KW, ice=ice, progress=False,
             method=mi.CondMean(resampling="bootstrap", n_samples=2))
    pd.testing.assert_frame_equal(antidep, before)


def test_resampling_on_the_dask_executor_gives_the_same_draws(antidep):
    m = mi.CondMean(resampling="bootstrap", n_samples=6, seed=8)
    a = mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), method=m, progress=False)
    b = mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), method=m, progress=False,
                 scheduler="threads")
    for sa, sb in zip(a.samples, b.samples, strict=True):
        np.testing.assert_allclose(sa.params.beta, sb.params.beta, rtol=1e-10)
        np.testing.assert_array_equal(sa.weights, sb.weights)


def test_failed_refits_counted_skipped_and_limited(antidep, monkeypatch):
    small = antidep[antidep.PATIENT.isin(sorted(antidep.PATIENT.unique())[:100])]
    from kanalysis.imputation import _fit

    real = _fit.WideFitter.refit

    def flaky(self, subjects=None, weights=None, leave_out=None):
        if leave_out is not None and leave_out % 50 == 0:
            raise _fit.FitFailedError("simulated failure")
        return real(self, subjects=subjects, weights=weights, leave_out=leave_out)

    monkeypatch.setattr(_fit.WideFitter, "refit", flaky)
    with pytest.warns(ka.errors.StatisticalWarning, match="2 of 100 jackknife refits failed"):
        dr = mi.draws(small, FORMULA, **KW, ice=dropout_ice(small), progress=False)
    assert dr.n_failed == 2 and len(dr.samples) == 99
    res = mi.pool(mi.analyse(mi.impute(dr, references=REFS), covariates=["BASVAL"]))
    assert res.details["n_failed"] == 2 and "Failed refits" in res.summary()
    with pytest.raises(mi.ImputationFailedError, match="failure_share"):
        mi.draws(small, FORMULA, **KW, ice=dropout_ice(small), progress=False,
                 method=mi.CondMean(failure_share=0.01))


# --- delta and tipping point -------------------------------------------------------------------
def test_delta_template_follows_the_cumulative_rule(jr_jackknife):
    imp = mi.impute(jr_jackknife, references=REFS)
    tmpl = mi.delta_template(imp, delta=[5, 6, 7, 8], dlag=[1, 2, 3, 4], missing_only=False)
    k = pd.Series(jr_jackknife.ice_k, index=jr_jackknife.grid.subjects)
    sid = k.index[k == 1][0]  # ICE at the second visit
    got = tmpl[tmpl.PATIENT == sid]["delta"].to_numpy()
    np.testing.assert_allclose(got, [0, 6, 20, 44])
    assert set(tmpl.columns) >= {"is_mar", "is_missing", "is_post_ice", "delta"}
    only = mi.delta_template(imp, delta=[1, 1, 1, 1], missing_only=True)
    assert (only.loc[~only.is_missing, "delta"] == 0).all()


def test_delta_shifts_the_analysis_linearly(jr_jackknife):
    imp = mi.impute(jr_jackknife, references=REFS)
    base = mi.pool(mi.analyse(imp, covariates=["BASVAL"]))
    tmpl = mi.delta_template(imp, delta=[2, 2, 2, 2], dlag=[1, 0, 0, 0])
    drug = tmpl.PATIENT.map(dict(zip(jr_jackknife.grid.subjects,
                                     np.array(jr_jackknife.grid.arms)[jr_jackknife.grid.arm_code],
                                     strict=True))) == "DRUG"
    tmpl.loc[~drug, "delta"] = 0.0
    shifted = mi.pool(mi.analyse(imp, covariates=["BASVAL"], delta=tmpl))
    r0, r1 = point(base), point(shifted)
    assert r1.estimate > r0.estimate  # worse (higher) scores imputed in the active arm
    assert point(shifted, "PLACEBO").estimate == pytest.approx(point(base, "PLACEBO").estimate,
                                                              abs=0.2)


def test_tipping_point_condmean(jr_jackknife):
    tp = mi.tipping_point(jr_jackknife, REFS, deltas=np.linspace(0, 10, 11), arms=["DRUG"],
                          covariates=["BASVAL"])
    g = tp.to_frame()
    assert len(g) == 11 and g["estimate"].is_monotonic_increasing
    assert g["p_value"].iloc[0] < 0.05 and g["p_value"].iloc[-1] > 0.05
    td = tp.tipping_delta
    assert 0 < td < 10
    # at the tipping delta the p-value is alpha (up to linear interpolation)
    at = mi.tipping_point(jr_jackknife, REFS, deltas=[td], arms=["DRUG"], covariates=["BASVAL"])
    assert at.to_frame()["p_value"].iloc[0] == pytest.approx(0.05, abs=0.01)
    json.dumps(tp.key_numbers())
    grid2 = mi.tipping_point(jr_jackknife, REFS, deltas={"DRUG": [0, 4, 8], "PLACEBO": [-2, 0]},
                             covariates=["BASVAL"])
    assert len(grid2.to_frame()) == 6 and len(grid2.tipping_delta) == 2


def test_tipping_plot(jr_jackknife, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from kanalysis.plots.imputation import tipping_plot

    tp = mi.tipping_point(jr_jackknife, REFS, deltas=np.linspace(0, 8, 9), covariates=["BASVAL"])
    ax = tipping_plot(tp)
    assert ax.get_xlabel() and len(ax.lines) == 3  # estimate, no-effect line, tipping point
    assert any("tipping point" in t.get_text() for t in ax.texts)
    ax.figure.savefig(tmp_path / "tp.png")
    # Not significant without any shift: said in words, no tipping line at delta = 0.
    shifted = mi.tipping_point(jr_jackknife, REFS, deltas=np.linspace(6, 10, 5),
                               covariates=["BASVAL"])
    assert shifted.to_frame()["p_value"].iloc[0] > 0.05 and shifted.tipping_delta == 6
    ax = tipping_plot(shifted)
    assert len(ax.lines) == 2
    assert any("not significant" in t.get_text() for t in ax.texts)


# --- other analyses and methods ----------------------------------------------------------------
def test_custom_analysis_function_matches_fast_path(antidep):
    dr = mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), progress=False,
                  method=mi.CondMean(resampling="bootstrap", n_samples=3, seed=2))
    imp = mi.impute(dr, references=REFS)
    fast = mi.analyse(imp, covariates=["BASVAL"])

    def my_ancova(frame, **ctx):
        return mi.ancova(frame, **ctx)

    slow = mi.analyse(imp, covariates=["BASVAL"], fun=my_ancova)
    np.testing.assert_allclose(slow.estimate, fast.estimate, atol=1e-9)
    np.testing.assert_allclose(slow.std_error, fast.std_error, atol=1e-9)

    def responders(frame, *, outcome, visit, group, **_):
        last = frame[frame[visit] == "7"]
        rate = last.groupby(group)[outcome].apply(lambda y: float(np.mean(y <= -8)))
        n = last.groupby(group)[outcome].size()
        se = np.sqrt(rate * (1 - rate) / n)
        return pd.DataFrame({"visit": "7", "parameter": [f"responders {a}" for a in rate.index],
                             "estimate": rate.to_numpy(), "std_error": se.to_numpy()})

    out = mi.pool(mi.analyse(imp, fun=responders), type="normal").to_frame()
    assert ((out.estimate > 0) & (out.estimate < 1)).all()


def test_approxbayes_bayes_bmlmi_against_mice(antidep):
    mice = json.loads((REF / "mice_reference.json").read_text())
    ref = {r["visit"]: r for r in mice["pooled"]}
    ice = dropout_ice(antidep, "MAR")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ab = mi.pool(mi.analyse(mi.impute(mi.draws(
            antidep, FORMULA, **KW, ice=ice, method=mi.ApproxBayes(n_samples=100, seed=11),
            progress=False)), covariates=["BASVAL"]))
        ba = mi.pool(mi.analyse(mi.impute(mi.draws(
            antidep, FORMULA, **KW, ice=ice, method=mi.Bayes(n_samples=100, burn_in=100, thin=5,
                                                              seed=12),
            progress=False)), covariates=["BASVAL"]))
        bm = mi.pool(mi.analyse(mi.impute(mi.draws(
            antidep, FORMULA, **KW, ice=ice, method=mi.BMLMI(B=60, D=2, seed=13),
            progress=False)), covariates=["BASVAL"]))
    for res in (ab, ba, bm):
        for v in ("5", "7"):
            row = point(res, visit=v)
            r = ref[v]
            tol = 4 * np.hypot(row.mcse, r["mcse"]) + 0.05
            assert row.estimate == pytest.approx(r["estimate"], abs=tol), (res.method, v)
            assert row.std_error == pytest.approx(r["std_error"], rel=0.15), (res.method, v)
        assert np.isfinite(res.to_frame()["mcse"]).all()
    assert point(ab).df < 169 and point(ab, visit="4").df == pytest.approx(170 / 172 * 169)


def test_rubin_and_barnard_rubin_formulas():
    from kanalysis.imputation.pool import barnard_rubin_df, rubin

    est = np.array([[1.0], [1.4], [0.8], [1.2]])
    se = np.array([[0.5], [0.6], [0.55], [0.45]])
    q, s, df = rubin(est, se, np.array([50.0]))
    W, B, M = np.mean(se**2), np.var(est, ddof=1), 4
    T = W + (1 + 1 / M) * B
    lam = (1 + 1 / M) * B / T
    nu_old = (M - 1) / lam**2
    nu_obs = 51 / 53 * 50 * (1 - lam)
    assert q[0] == pytest.approx(1.1) and s[0] == pytest.approx(np.sqrt(T))
    assert df[0] == pytest.approx(nu_old * nu_obs / (nu_old + nu_obs))
    # no between-imputation variance: nu_obs (Barnard & Rubin 1999; rbmi)
    assert barnard_rubin_df(4, np.array([0.0]), np.array([1.0]),
                            np.array([50.0]))[0] == pytest.approx(51 / 53 * 50)
    assert np.isinf(barnard_rubin_df(4, np.array([0.0]), np.array([1.0]),
                                     np.array([np.inf]))[0])


def test_bootstrap_percentile_and_normal(antidep):
    dr = mi.draws(antidep, FORMULA, **KW, ice=dropout_ice(antidep), progress=False,
                  method=mi.CondMean(resampling="bootstrap", n_samples=60, seed=4))
    an = mi.analyse(mi.impute(dr, references=REFS), covariates=["BASVAL"])
    pc, nm = mi.pool(an), mi.pool(an, type="normal")
    boot = an.estimate[1:]
    j = 9  # visit 7, diff
    assert an.labels.iloc[j].tolist() == ["7", "diff"]
    assert pc.to_frame().ci_lower.iloc[j] == pytest.approx(np.quantile(boot[:, j], 0.025,
                                                                       method="weibull"))
    assert nm.to_frame().std_error.iloc[j] == pytest.approx(boot[:, j].std(ddof=1))
    assert nm.to_frame().estimate.iloc[j] == pytest.approx(an.estimate[0, j])


def test_ice_from_cohort_defaults():
    cohort = ka.load_cohort(Path(__file__).parents[1] / "data" / "synthetic" / "single")
    ice = mi.ice_from_cohort(cohort)
    assert set(ice.columns) >= {"subject_id", "visit", "strategy"}
    assert ice.subject_id.is_unique and len(ice) > 0
    by_reason = ice.groupby("reason")["strategy"].first()
    assert by_reason.get("lack of efficacy") == "JR"
    assert by_reason.get("withdrew consent", "MAR") == "MAR"
    assert mi.strategy_for_reason("Lost_to follow-up") == "MAR"
    assert mi.strategy_for_reason("Adverse Event") == "JR"
    assert mi.strategy_for_reason("something else", other="CR") == "CR"


def test_refits_agree_with_the_engine_refit_api(antidep):
    """The pattern-sum refits equal kanalysis.models.MMRMModel.refit (the public refit API)."""
    small = antidep[antidep.PATIENT.isin(sorted(antidep.PATIENT.unique())[:60])]
    for method in (mi.CondMean(), mi.CondMean(resampling="bootstrap", n_samples=4, seed=3)):
        a = mi.draws(small, FORMULA, **KW, ice=dropout_ice(small), method=method,
                     progress=False)
        b = mi.draws(small, FORMULA, **KW, ice=dropout_ice(small), method=method,
                     progress=False, refit_engine="model")
        assert len(a.samples) == len(b.samples)
        for sa, sb in zip(a.samples, b.samples, strict=True):
            np.testing.assert_allclose(sa.params.beta, sb.params.beta, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(sa.params.sigmas, sb.params.sigmas, rtol=2e-5)


# --- the names outside checks use, on a freshly drawn trial --------------------------------------
def _fresh_trial(seed=7):
    """Two arms named as in ketamine trials, integer week visits, dropouts and intermittent
    missing values carried as NaN rows, and the ICE table keyed by the same column names."""
    rng = np.random.default_rng(seed)
    rows, ice = [], []
    weeks = [1, 2, 4, 6]
    cov = 20 * (0.5 + 0.5 * np.eye(4))
    for arm, mu in (("ketamine", [-8, -10, -11, -12]), ("midazolam", [-4, -5, -6, -6.5])):
        for j in range(40):
            pid, b = f"{arm[:3]}-{j}", rng.normal(32, 5)
            y = np.array(mu) - 0.2 * (b - 32) + rng.multivariate_normal(np.zeros(4), cov)
            drop = int(rng.integers(1, 8))  # dropout before visit index 1..3, else none
            for v, w in enumerate(weeks):
                missing = (drop <= 3 and v >= drop) or (v == 1 and j % 9 == 0)
                rows.append((pid, arm, w, b, np.nan if missing else y[v]))
            if drop <= 3:
                ice.append((pid, weeks[drop], "JR" if arm == "ketamine" else "MAR"))
    data = pd.DataFrame(rows, columns=["pid", "arm", "week", "madrs0", "madrs_chg"])
    return data, pd.DataFrame(ice, columns=["pid", "week", "strategy"])


@pytest.mark.parametrize("method", [
    mi.CondMean(resampling="jackknife"), mi.ApproxBayes(n_samples=5, seed=3),
    mi.BMLMI(B=4, D=2, seed=3), mi.Bayes(n_samples=4, burn_in=20, thin=5, seed=3)],
    ids=lambda m: type(m).__name__)
def test_outside_names_on_a_fresh_trial(method):
    with_nan, ice = _fresh_trial()
    left_out = with_nan.dropna(subset=["madrs_chg"]).reset_index(drop=True)
    before = (with_nan.copy(), left_out.copy(), ice.copy())
    refs = {"ketamine": "midazolam", "midazolam": "midazolam"}
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about on clean input
        for data in (with_nan, left_out):
            dr = mi.draws(data, "madrs_chg ~ madrs0*week + arm*week", subject="pid",
                          visit="week", group="arm", ice=ice, method=method, covariance="us")
            imp = mi.impute(dr, references=refs)
            res = mi.pool(mi.analyse(imp, covariates=["madrs0"], delta=None))
            frames.append(res.to_frame())
    pd.testing.assert_frame_equal(with_nan, before[0])
    pd.testing.assert_frame_equal(left_out, before[1])
    pd.testing.assert_frame_equal(ice, before[2])
    a, b = frames
    pd.testing.assert_frame_equal(a, b)  # NaN rows or left-out visits: the same analysis
    for c in ("visit", "parameter", "estimate", "std_error", "ci_lower", "ci_upper", "p_value"):
        assert c in a.columns
    assert len(a) == 4 * 3 and not a.duplicated(["visit", "parameter"]).any()
    assert sorted(a["visit"].unique()) == [1, 2, 4, 6]
    diff = a[a["parameter"].str.contains("diff")]
    assert len(diff) == 4 and set(a["parameter"]) - set(diff["parameter"]) == {"ketamine",
                                                                                "midazolam"}
    last = a[a["visit"] == 6].set_index("parameter")["estimate"]
    # the difference is active minus control, the LS-means are the arms'
    assert last[diff["parameter"].iloc[0]] == pytest.approx(last["ketamine"] - last["midazolam"],
                                                            abs=1e-8)
    assert last["ketamine"] < last["midazolam"]  # the drug arm improves more
    assert (a["ci_lower"] < a["estimate"]).all() and (a["estimate"] < a["ci_upper"]).all()
    if isinstance(method, mi.CondMean):
        dt = mi.delta_template(imp, delta=[0, 1, 1, 1], dlag=[1, 1, 1, 1], missing_only=True)
        assert {"pid", "week", "delta"} <= set(dt.columns)
        tp = mi.tipping_point(dr, refs, deltas=np.linspace(0, 8, 9), arms=["ketamine"])
        grid = tp.to_frame()
        assert grid["estimate"].is_monotonic_increasing  # worse imputed drug values
        assert np.isfinite(tp.key_numbers()["tipping_delta"])
