"""Tests of kanalysis.lmm / kanalysis.mmrm against published results (not our own output).

Published values (see /work/shared/data/public/SOURCES.md, copied into tests/data/models/ with attribution):
* Reisby HAM-D, Hedeker & Gibbons (2006) Longitudinal Data Analysis, Table 4.5 (ML) and text (REML).
* DIA antidepressant trial (Goldstein et al. 2004; rbmi `antidepressant_data`), SAS PROC MIXED
  REML, TYPE=UN, DDFM=KR output as printed in SOURCES.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.models import lrt

DATA = Path(__file__).parent / "data" / "models"


@pytest.fixture(scope="module")
def reisby():
    return pd.read_csv(DATA / "riesby.csv")


def test_reisby_random_intercept_slope_ml_matches_hedeker_gibbons(reisby):
    res = ka.lmm(reisby, "hamd ~ week", groups="id", re_formula="~ 1 + week", reml=False)
    assert res.fe_params["Intercept"] == pytest.approx(23.577, abs=6e-4)
    assert res.fe_params["week"] == pytest.approx(-2.377, abs=6e-4)
    assert res.bse["Intercept"] == pytest.approx(0.546, abs=6e-4)
    assert res.bse["week"] == pytest.approx(0.209, abs=6e-4)
    G = res.cov_re
    assert G.loc["Intercept", "Intercept"] == pytest.approx(12.63, abs=6e-3)
    assert G.loc["Intercept", "week"] == pytest.approx(-1.42, abs=6e-3)
    assert G.loc["week", "week"] == pytest.approx(2.08, abs=6e-3)
    assert res.scale == pytest.approx(12.22, abs=6e-3)
    assert -2 * res.llf == pytest.approx(2219.04, abs=6e-3)
    assert res.n_obs == 375 and res.n_groups == 66 and res.n_dropped == 21


def test_reisby_reml_variance_components(reisby):
    res = ka.lmm(reisby, "hamd ~ week", groups="id", re_formula="~ 1 + week", reml=True)
    G = res.cov_re.to_numpy()
    np.testing.assert_allclose([G[0, 0], G[0, 1], G[1, 1], res.scale],
                               [12.94, -1.48, 2.13, 12.21], atol=6e-3)


def test_reisby_random_intercept_ml(reisby):
    res = ka.lmm(reisby, "hamd ~ week", groups="id", re_formula="~ 1", reml=False)
    np.testing.assert_allclose(res.fe_params.to_numpy(), [23.552, -2.376], atol=6e-4)
    assert res.cov_re.iloc[0, 0] == pytest.approx(16.16, abs=6e-3)
    assert res.scale == pytest.approx(19.04, abs=6e-3)
    big = ka.lmm(reisby, "hamd ~ week", groups="id", re_formula="~ 1 + week", reml=False)
    test = lrt(res, big)
    assert test["df"].iloc[0] == 2
    assert test["statistic"].iloc[0] == pytest.approx(2 * (big.llf - res.llf))
    assert test["p_value"].iloc[0] < 1e-3


@pytest.fixture(scope="module")
def dia():
    return pd.read_csv(DATA / "antidepressant_dia_hamd17.csv",
                       dtype={"VISIT": str, "PATIENT": str})


DIA_FORMULA = "CHANGE ~ BASVAL*C(VISIT) + THERAPY*C(VISIT)"


@pytest.fixture(scope="module")
def dia_kr(dia):
    return ka.mmrm(dia, DIA_FORMULA, subject="PATIENT", visit="VISIT", covariance="us",
                   reml=True, df_method="kenward-roger")


def test_dia_unstructured_reml_matches_sas(dia_kr):
    res = dia_kr
    assert -2 * res.llf == pytest.approx(3494.2, abs=0.06)
    sas_un = np.array([[19.6845, 0, 0, 0], [16.5157, 34.2105, 0, 0],
                       [15.3879, 25.4250, 38.4363, 0], [16.3599, 26.1843, 33.8949, 45.2587]])
    est = np.tril(res.cov.to_numpy())
    np.testing.assert_allclose(est[np.tril_indices(4)], sas_un[np.tril_indices(4)], rtol=1e-5,
                               atol=2e-4)
    assert list(res.cov.index) == ["4", "5", "6", "7"]
    assert res.n_subjects == 172 and res.n_obs == 608


def test_dia_kenward_roger_contrasts_match_sas(dia_kr):
    con = dia_kr.contrast(specs="THERAPY", by="VISIT", method="pairwise")
    assert list(con["contrast"].unique()) == ["DRUG - PLACEBO"]
    con = con.set_index("VISIT")
    sas = {"4": (0.09181, 0.6826, 169), "5": (-1.4032, 0.9244, 165),
           "6": (-2.2247, 1.0008, 162), "7": (-2.8018, 1.1163, 150)}
    for v, (est, se, df) in sas.items():
        assert con.loc[v, "estimate"] == pytest.approx(est, abs=6e-5 if v == "4" else 6e-5)
        assert con.loc[v, "std_error"] == pytest.approx(se, abs=6e-5)
        assert con.loc[v, "df"] == pytest.approx(df, abs=0.5)
    assert con.loc["7", "p_value"] == pytest.approx(0.0131, abs=6e-5)
    lo, hi = con.loc["7", ["ci_lower", "ci_upper"]]
    assert lo < -2.8018 < hi and hi < 0


def test_dia_lsmeans_visit7_match_sas(dia_kr):
    ls = dia_kr.lsmeans(specs="THERAPY", by="VISIT")
    v7 = ls[ls["VISIT"] == "7"].set_index("THERAPY")
    assert v7.loc["DRUG", "estimate"] == pytest.approx(-7.6239, abs=6e-5)
    assert v7.loc["PLACEBO", "estimate"] == pytest.approx(-4.8221, abs=6e-5)
    assert v7.loc["DRUG", "std_error"] == pytest.approx(0.7914, abs=6e-5)
    assert v7.loc["PLACEBO", "std_error"] == pytest.approx(0.7785, abs=6e-5)
    assert set(ls.columns) >= {"THERAPY", "VISIT", "estimate", "std_error", "df", "ci_lower",
                               "ci_upper"}


def test_dia_model_based_se_and_satterthwaite(dia):
    res = ka.mmrm(dia, DIA_FORMULA, subject="PATIENT", visit="VISIT", covariance="us")
    con = res.contrast(specs="THERAPY", by="VISIT").set_index("VISIT")
    assert con.loc["7", "estimate"] == pytest.approx(-2.8018, abs=6e-5)
    assert con.loc["7", "std_error"] == pytest.approx(1.1140, abs=6e-5)
    # for a single contrast the KR df equal the Satterthwaite df (the KR scale factor is 1)
    assert con.loc["7", "df"] == pytest.approx(150, abs=0.5)
    # estimate() with a dict reproduces the contrast row
    ls = res.lsmeans(specs="THERAPY", by="VISIT")
    assert ls["df"].between(100, 172).all()
