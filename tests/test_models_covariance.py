"""Covariance structures ad, adh, toeph, sp_exp and fallback lists.

adh (ANTE(1)), toeph (TOEPH), sp_exp (SP(EXP)(VISITN)), ar1h and csh are compared with the SAS
PROC MIXED listings of the R package mmrm on its example data (tests/reference/models/
mmrm_sas_fev.json, printed precision). ad has no SAS counterpart (ANTE(1) is heterogeneous); it
is checked through the models it nests and is nested in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.errors import ConfigurationError
from kanalysis.models import covariance

DATA = Path(__file__).parent / "data" / "models"
SAS = json.loads((Path(__file__).parent / "reference" / "models" /
                  "mmrm_sas_fev.json").read_text())["fits"]


@pytest.fixture(scope="module")
def fev():
    return pd.read_csv(DATA / "fev_data.csv")


def _sas_params(cov, ref):
    """SAS's parameter names -> ours (same order: variances by visit, then correlations)."""
    ours = list(cov.covariance_parameters.to_numpy())
    theirs = list(ref["covariance_parameters"].values())
    if cov.covariance == "sp_exp":  # SAS prints SP(EXP) (range) first, then the variance
        theirs = theirs[::-1]
    return np.array(ours), np.array(theirs)


@pytest.mark.parametrize("cov,key", [("adh", "adh_reml"), ("adh", "adh_ml"),
                                     ("toeph", "toeph_reml"), ("toeph", "toeph_ml"),
                                     ("sp_exp", "sp_exp_reml"), ("sp_exp", "sp_exp_ml"),
                                     ("ar1h", "ar1h_reml"), ("csh", "csh_reml")])
def test_structures_match_sas(fev, cov, key):
    ref = SAS[key]
    reml = key.endswith("reml")
    fit = ka.mmrm(fev, "FEV1 ~ 1", subject="USUBJID", visit="AVISIT", covariance=cov,
                  reml=reml, time="VISITN" if cov == "sp_exp" else None)
    m2 = ref["minus2_restricted_llf"] if reml else ref["minus2_llf"]
    assert -2 * fit.llf == pytest.approx(m2, abs=0.06)
    ours, theirs = _sas_params(fit, ref)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=2e-4)
    (fe,) = ref["fixed_effects"]
    # SAS stops on its relative-Hessian criterion, a little short of the optimum (ar1h: 3e-4)
    assert fit.fe_params["Intercept"] == pytest.approx(fe["estimate"], abs=5e-4)
    assert fit.bse["Intercept"] == pytest.approx(fe["std_error"], abs=3e-4)
    assert fit.df["Intercept"] == pytest.approx(fe["df"], abs=0.5)


def test_ante_dependence_nesting(fev):
    kw = dict(subject="USUBJID", visit="AVISIT")
    fits = {c: ka.mmrm(fev, "FEV1 ~ ARMCD * AVISIT", covariance=c, **kw)
            for c in ("ar1", "ad", "adh", "us")}
    # ar1 (equal rho) in ad in adh in us
    assert fits["ar1"].llf <= fits["ad"].llf + 1e-8
    assert fits["ad"].llf <= fits["adh"].llf + 1e-8
    assert fits["adh"].llf <= fits["us"].llf + 1e-8
    S = fits["ad"].cov.to_numpy()
    assert np.allclose(np.diag(S), S[0, 0])  # homogeneous variance
    r = fits["ad"].corr.to_numpy()
    assert r[0, 2] == pytest.approx(r[0, 1] * r[1, 2], rel=1e-10)  # first-order ante-dependence
    # two visits: ad and ar1 are the same model
    two = fev[fev.AVISIT.isin(["VIS1", "VIS2"])]
    a = ka.mmrm(two, "FEV1 ~ ARMCD", covariance="ad", **kw)
    b = ka.mmrm(two, "FEV1 ~ ARMCD", covariance="ar1", **kw)
    assert a.llf == pytest.approx(b.llf, abs=1e-7)


@pytest.mark.parametrize("name", ["ad", "adh", "toeph", "sp_exp"])
def test_new_structure_gradients(name):
    from kanalysis.models._engine import MMRMEngine

    rng = np.random.default_rng(0)
    n, t = 50, 4
    subj = np.repeat(np.arange(n), t)
    visit = np.tile(np.arange(t), n)
    keep = rng.random(n * t) > 0.2
    X = np.column_stack([np.ones(n * t), visit])[keep]
    y = (rng.standard_normal((n, t)) @ np.linalg.cholesky(np.eye(t) + 0.5).T).ravel()[keep]
    st = covariance.make_structure(name, t, coordinates=[0.0, 1.0, 2.5, 4.0])
    eng = MMRMEngine(y, X, visit[keep], subj[keep], n, t, np.zeros(n, int), [st])
    opt = st.start(np.eye(t) + 0.4) + 0.05 * rng.standard_normal(st.n_opt)
    f, g = eng.deviance_and_grad_opt(opt)
    fd = np.empty_like(opt)
    for k in range(len(opt)):
        e = np.zeros_like(opt)
        e[k] = 1e-6
        fd[k] = (eng.deviance_and_grad_opt(opt + e)[0] - eng.deviance_and_grad_opt(opt - e)[0]) \
            / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-4)


def test_sp_exp_needs_one_time_per_visit(fev):
    with pytest.raises(ConfigurationError, match="time="):
        ka.mmrm(fev, "FEV1 ~ 1", subject="USUBJID", visit="AVISIT", covariance="sp_exp")
    with pytest.raises(ConfigurationError, match="several values within visit"):
        ka.mmrm(fev, "FEV1 ~ 1", subject="USUBJID", visit="AVISIT", covariance="sp_exp",
                time="VISITN2")


def test_fallback_list_uses_first_converging(fev, monkeypatch):
    monkeypatch.setattr(covariance.Unstructured, "start",
                        lambda self, S: np.full(self.n_opt, np.nan))
    fit = ka.mmrm(fev, "FEV1 ~ ARMCD * AVISIT", subject="USUBJID", visit="AVISIT",
                  covariance=["us", "toeph", "cs"])
    assert fit.covariance == "toeph"
    assert [n for n, _ in fit.covariance_attempts] == ["us"]
    assert "did not converge" in fit.covariance_attempts[0][1]
    assert "not used" in fit.summary()
    direct = ka.mmrm(fev, "FEV1 ~ ARMCD * AVISIT", subject="USUBJID", visit="AVISIT",
                     covariance="toeph")
    assert fit.llf == pytest.approx(direct.llf, abs=1e-8)
    with pytest.raises(ConfigurationError, match="unknown covariance"):
        ka.mmrm(fev, "FEV1 ~ 1", subject="USUBJID", visit="AVISIT", covariance=["us", "xx"])


def test_structure_names_have_one_source():
    assert set(covariance.STRUCTURES) >= {"us", "cs", "csh", "ar1", "ar1h", "toep", "toeph",
                                          "ad", "adh", "sp_exp"}


def test_observation_weights_match_sas(fev):
    """SAS WEIGHT (R mmrm weights): Var(y_ij) = Sigma_jj / w_ij. SAS's listing:
    -2RLL, UN covariance, fixed effects and SEs, Type 3 F. (SAS prints much larger
    Satterthwaite df for weighted fits, 400-520, than for unweighted ones; those are not
    compared.)"""
    sas = SAS["un_full_weighted_reml"]
    fit = ka.mmrm(fev, "FEV1 ~ RACE + SEX + ARMCD*AVISIT", subject="USUBJID", visit="AVISIT",
                  weights="WEIGHT")
    assert -2 * fit.llf == pytest.approx(sas["minus2_restricted_llf"], abs=0.06)
    cov = fit.cov.to_numpy()  # SAS: AVISIT(ref='VIS4'), visits in their own order
    for name, value in sas["covariance_parameters"].items():
        i, j = (int(k) - 1 for k in name[3:-1].split(","))
        # SAS stops a little short of the optimum: 1e-3 of the variances' scale
        assert cov[i, j] == pytest.approx(value, rel=1e-3, abs=2e-3)
    fe = {r["effect"]: r for r in sas["fixed_effects"]}
    for ours, theirs in (("RACE[T.White]", "RACE White"),
                         ("RACE[T.Black or African American]", "RACE Black or African American")):
        assert fit.fe_params[ours] == pytest.approx(fe[theirs]["estimate"], abs=2e-4)
        assert fit.bse[ours] == pytest.approx(fe[theirs]["std_error"], abs=2e-4)
    F = fit.anova().set_index("term")["F"]
    for row in sas["type3"]:
        term = {"AVISIT*ARMCD": "ARMCD:AVISIT"}.get(row["term"], row["term"])
        assert F[term] == pytest.approx(row["F"], abs=0.006)


def test_observation_weights_scale_the_covariance(fev):
    kw = dict(subject="USUBJID", visit="AVISIT", covariance="us")
    plain = ka.mmrm(fev, "FEV1 ~ ARMCD*AVISIT", **kw)
    ones = ka.mmrm(fev.assign(w=1.0), "FEV1 ~ ARMCD*AVISIT", weights="w", **kw)
    assert ones.llf == pytest.approx(plain.llf, abs=1e-8)
    two = ka.mmrm(fev.assign(w=2.0), "FEV1 ~ ARMCD*AVISIT", weights="w", **kw)
    np.testing.assert_allclose(two.cov.to_numpy(), 2 * plain.cov.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(two.fe_params, plain.fe_params, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(two.bse, plain.bse, rtol=1e-5)
    with pytest.raises(ka.DataValidationError, match="positive"):
        ka.mmrm(fev.assign(w=0.0), "FEV1 ~ ARMCD*AVISIT", weights="w", **kw)


# R mmrm's tests (tests/testthat/test-empirical.R, which says they equal SAS EMPIRICAL):
# FEV1 ~ ARMCD, vcov = "Empirical", all rows of fev_data
R_MMRM_EMPIRICAL = {
    "us": [0.16725909903518, -0.16725909903518, 0.40908637028234],
    "ar1": [0.27666930670945, -0.27666930670945, 0.68196697308307],
}


@pytest.mark.parametrize("cov", ["us", "ar1"])
def test_empirical_covariance_matches_r_mmrm_and_sas(fev, cov):
    fit = ka.mmrm(fev, "FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT", covariance=cov,
                  vcov="empirical")
    V = fit.cov_params().to_numpy()
    np.testing.assert_allclose([V[0, 0], V[0, 1], V[1, 1]], R_MMRM_EMPIRICAL[cov], rtol=1e-4)
    model = ka.mmrm(fev, "FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT", covariance=cov)
    np.testing.assert_allclose(fit.fe_params, model.fe_params, rtol=1e-12)


def test_empirical_df_equal_the_explicit_bell_mccaffrey_matrix(fev):
    """df = tr(G)^2 / sum G_ij^2 with G_ij = g_i'g_j, g_i = (I - H)_i' X~_i C c, built as the
    dense n x n matrix of R mmrm's vignette (whitened X~_i = L_i'X_i)."""
    d = fev[fev.USUBJID.isin(fev.USUBJID.unique()[:60])]
    fit = ka.mmrm(d, "FEV1 ~ ARMCD + AVISIT", subject="USUBJID", visit="AVISIT",
                  covariance="us", vcov="empirical")
    model = fit.model
    rows = np.isfinite(model.y)
    S = fit.cov.to_numpy()
    blocks = []
    for code in np.unique(model.subject_codes[rows]):
        sel = rows & (model.subject_codes == code)
        v = model.visit_codes[sel]
        Li = np.linalg.cholesky(np.linalg.inv(S[np.ix_(v, v)]))
        blocks.append(Li.T @ model.design.X[sel])
    Xt = np.vstack(blocks)
    C = np.linalg.inv(Xt.T @ Xt)
    IH = np.eye(len(Xt)) - Xt @ C @ Xt.T
    bounds = np.cumsum([0] + [len(b) for b in blocks])
    for j, c in enumerate(np.eye(len(fit.fe_params))):
        g = np.column_stack([IH[:, bounds[i]:bounds[i + 1]] @ (blocks[i] @ C @ c)
                             for i in range(len(blocks))])
        G = g.T @ g
        nu = np.trace(G) ** 2 / np.sum(G**2)
        assert fit.df.iloc[j] == pytest.approx(nu, rel=1e-6)


def test_empirical_matches_clubsandwich_cr0(fev):
    """nlme::gls + clubSandwich CR0 and its Satterthwaite df (empirical_cr0.R)."""
    ref = json.loads((Path(__file__).parent / "reference" / "models" /
                      "empirical_cr0.json").read_text())["fits"]
    d = fev.dropna()
    for cov, rec in ref.items():
        fit = ka.mmrm(d, rec["call"]["formula"], subject="USUBJID", visit="AVISIT",
                      covariance=cov, vcov="empirical")
        assert fit.llf == pytest.approx(rec["llf"], abs=1e-5)
        np.testing.assert_allclose(fit.fe_params, rec["fe_params"], rtol=1e-6)
        np.testing.assert_allclose(fit.bse, rec["se"], rtol=1e-5)
        np.testing.assert_allclose(fit.df, rec["df"], rtol=1e-5)
        np.testing.assert_allclose(fit.cov_params().to_numpy(), rec["vcov"], rtol=1e-5)


def test_sp_exp_uses_a_numeric_visit_as_its_coordinates(fev):
    """Without time=, a numeric visit column is the coordinate (SAS SP(EXP)(VISITN))."""
    d = fev.assign(VISITN=fev["AVISIT"].str.extract(r"(\d+)")[0].astype(int))
    by_visit = ka.mmrm(d, "FEV1 ~ ARMCD", subject="USUBJID", visit="VISITN",
                       covariance="sp_exp")
    by_time = ka.mmrm(d, "FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT",
                      covariance="sp_exp", time="VISITN")
    assert by_visit.llf == pytest.approx(by_time.llf, rel=1e-9)
    np.testing.assert_allclose(by_visit.fe_params, by_time.fe_params, rtol=1e-7)
