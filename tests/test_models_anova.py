"""Type III tables and multi-df Satterthwaite F tests against SAS PROC MIXED and lmerTest.

* SAS: the PROC MIXED listings shipped with the R package mmrm (fev_data, UN, REML,
  DDFM=SATTERTHWAITE), transcribed by tests/reference/models/transcribe_mmrm_sas.py into
  mmrm_sas_fev.json; printed to integers (df) and 2 decimals (F).
* lmerTest anova(type = 3) on the Reisby data (tests/reference/models/anova_type3.R).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka

DATA = Path(__file__).parent / "data" / "models"
REF = Path(__file__).parent / "reference" / "models"
SAS = json.loads((REF / "mmrm_sas_fev.json").read_text())["fits"]
LMERTEST = json.loads((REF / "anova_type3.json").read_text())["fits"]


@pytest.fixture(scope="module")
def fev():
    return pd.read_csv(DATA / "fev_data.csv")


@pytest.fixture(scope="module")
def fev_un(fev):
    return ka.mmrm(fev, "FEV1 ~ ARMCD*AVISIT + RACE + SEX", subject="USUBJID", visit="AVISIT",
                   covariance="us")


def test_fev_unstructured_fit_matches_sas(fev_un):
    sas = SAS["un_full_reml"]
    assert -2 * fev_un.llf == pytest.approx(sas["minus2_restricted_llf"], abs=0.06)
    # SAS's CLASS AVISIT(ref='VIS1') puts VIS1 last: UN(1..4) are VIS2, VIS3, VIS4, VIS1
    order = ["VIS2", "VIS3", "VIS4", "VIS1"]
    cov = fev_un.cov.loc[order, order].to_numpy()
    for name, value in sas["covariance_parameters"].items():
        i, j = (int(k) - 1 for k in name[3:-1].split(","))
        assert cov[i, j] == pytest.approx(value, rel=2e-3, abs=2e-3)


def test_fev_type3_matches_sas_satterthwaite(fev_un):
    """SAS Type 3 (DDFM=SATTERTHWAITE): the 3-df ARMCD*AVISIT test has den df 148."""
    tab = fev_un.anova().set_index("term")
    assert list(tab.columns) == ["num_df", "den_df", "F", "p_value"]
    names = {"AVISIT*ARMCD": "ARMCD:AVISIT"}
    for row in SAS["un_full_reml"]["type3"]:
        ours = tab.loc[names.get(row["term"], row["term"])]
        assert ours["num_df"] == row["num_df"]
        assert ours["den_df"] == pytest.approx(row["den_df"], abs=0.5)
        assert ours["F"] == pytest.approx(row["F"], abs=0.006, rel=2e-4)
    assert tab.loc["ARMCD:AVISIT", "den_df"] == pytest.approx(148, abs=0.5)


def test_f_test_fai_cornelius_on_coefficients(fev_un):
    names = list(fev_un.fe_params.index)
    inter = [n for n in names if ":" in n]
    L = np.zeros((3, len(names)))
    for i, n in enumerate(inter):
        L[i, names.index(n)] = 1.0
    ft = fev_un.f_test(L)
    assert set(ft) == {"F", "num_df", "den_df", "p_value"}
    assert ft["num_df"] == 3 and ft["den_df"] == pytest.approx(148, abs=0.5)
    # F is the unscaled Wald statistic / q
    b = fev_un.fe_params.to_numpy()
    V = fev_un.cov_params().to_numpy()
    wald = (L @ b) @ np.linalg.solve(L @ V @ L.T, L @ b) / 3
    assert ft["F"] == pytest.approx(wald, rel=1e-10)
    # a redundant row does not change the test
    ft2 = fev_un.f_test(np.vstack([L, L[0] + L[1]]))
    assert ft2["num_df"] == 3 and ft2["F"] == pytest.approx(ft["F"], rel=1e-8)
    # one row: the t test's df
    one = fev_un.f_test(L[:1])
    est = fev_un.estimate(L[:1])
    assert one["den_df"] == pytest.approx(float(est["df"].iloc[0]), rel=1e-10)
    assert one["F"] == pytest.approx(float(est["statistic"].iloc[0]) ** 2, rel=1e-10)


def test_kenward_roger_anova_uses_kr(fev):
    kr = ka.mmrm(fev, "FEV1 ~ ARMCD*AVISIT", subject="USUBJID", visit="AVISIT",
                 covariance="us", df_method="kenward-roger")
    sat = ka.mmrm(fev, "FEV1 ~ ARMCD*AVISIT", subject="USUBJID", visit="AVISIT",
                  covariance="us")
    a, b = kr.anova().set_index("term"), sat.anova().set_index("term")
    assert list(a.index) == ["ARMCD", "AVISIT", "ARMCD:AVISIT"]
    # same hypotheses, different small-sample corrections
    assert not np.allclose(a["den_df"], b["den_df"])
    # 1-df KR test: F = t^2 with the KR standard error, df = Satterthwaite's
    assert a.loc["ARMCD", "den_df"] == pytest.approx(b.loc["ARMCD", "den_df"], rel=1e-8)


@pytest.mark.parametrize("fit_id", ["factor_week", "numeric_week"])
def test_lmm_type3_matches_lmertest(fit_id):
    ref = LMERTEST[fit_id]
    d = pd.read_csv(DATA / "riesby.csv")
    d = d[d.hamd.notna()].assign(endo=lambda x: np.where(x.endog == 1, "endogenous",
                                                         "reactive"), wk=lambda x: x.week)
    fit = ka.lmm(d, ref["call"]["formula"], groups="id", re_formula=ref["call"]["re_formula"])
    assert fit.llf == pytest.approx(ref["llf"], abs=1e-6)
    tab = fit.anova().set_index("term")
    for row in ref["satterthwaite"]:
        ours = tab.loc[row["term"]]
        assert ours["num_df"] == row["num_df"]
        assert ours["den_df"] == pytest.approx(row["den_df"], rel=1e-5)
        assert ours["F"] == pytest.approx(row["F"], rel=1e-5)
        assert ours["p_value"] == pytest.approx(row["p_value"], rel=1e-4)
