"""Prepare once, fit many: MMRMModel.refit must give what a fresh ka.mmrm gives on the same data.

Each test compares a refit with an independent fresh fit of the data the refit stands for (a
subset of subjects, a new outcome, outcomes set missing, subjects duplicated under new ids).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.errors import FitFailedError
from kanalysis.models import MMRMModel, RefitBatch

FORMULA = "score ~ base + C(visit) * arm"
KW = dict(subject="subject_id", visit="visit", covariance="us")


def simulate(n=60, t=4, seed=0, dropout=0.25):
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n), t)
    visit = np.tile(np.arange(1, t + 1), n)
    arm = np.repeat(rng.choice(["drug", "placebo"], n), t)
    base = np.repeat(rng.normal(25, 4, n), t)
    L = np.linalg.cholesky(0.6 * np.ones((t, t)) + 0.4 * np.eye(t) + 0.1 * np.diag(np.arange(t)))
    e = (rng.standard_normal((n, t)) @ L.T).ravel() * 4
    score = -0.3 * base - 1.5 * visit - 1.0 * visit * (arm == "drug") + e
    d = pd.DataFrame({"subject_id": [f"s{i:03d}" for i in subj], "visit": visit, "arm": arm,
                      "base": base, "score": score})
    drop_at = np.repeat(np.where(rng.random(n) < dropout, rng.integers(2, t + 1, n), t + 1), t)
    return d[visit < drop_at].reset_index(drop=True)


@pytest.fixture(scope="module")
def data():
    return simulate()


def _same_fit(a, b, rtol=1e-6):
    assert a.llf == pytest.approx(b.llf, rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(a.fe_params.to_numpy(), b.fe_params.to_numpy(), rtol=rtol,
                               atol=1e-8)
    np.testing.assert_allclose(a.bse.to_numpy(), b.bse.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(a.df.to_numpy(), b.df.to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(a.cov.to_numpy(), b.cov.to_numpy(), rtol=1e-5)
    la, lb = a.lsmeans("arm", by="visit"), b.lsmeans("arm", by="visit")
    np.testing.assert_allclose(la["estimate"], lb["estimate"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(la["std_error"], lb["std_error"], rtol=1e-5)
    assert a.n_obs == b.n_obs and a.n_subjects == b.n_subjects


def test_fit_equals_mmrm_and_inference_is_lazy(data):
    model = MMRMModel(data, FORMULA, **KW)
    fit = model.fit()
    assert "_inf" not in fit.__dict__ and "bse" not in fit.__dict__
    ref = ka.mmrm(data, FORMULA, **KW)
    _same_fit(fit, ref, rtol=1e-10)
    assert "_inf" in fit.__dict__
    again = model.refit()
    _same_fit(again, ref)
    # the warm start is used first and needs few evaluations
    assert again.optimizer_trace[0]["start"] == "last optimum"
    assert len(again.optimizer_trace) < len(fit.optimizer_trace)


def test_refit_subset_equals_fresh_fit(data):
    model = MMRMModel(data, FORMULA, **KW)
    model.fit()
    keep = list(model.subjects[5:])
    sub = model.refit(subjects=keep)
    ref = ka.mmrm(data[data.subject_id.isin(keep)], FORMULA, **KW)
    _same_fit(sub, ref)


def test_refit_new_outcome_and_missing_values_equal_fresh_fits(data):
    model = MMRMModel(data, FORMULA, **KW)
    model.fit()
    rng = np.random.default_rng(5)
    y_new = model.y + rng.normal(0, 2, len(model.y))
    res = model.refit(y=y_new)
    fresh = model.data.assign(score=y_new)
    _same_fit(res, ka.mmrm(fresh, FORMULA, **KW))
    # a Series is aligned on model.data's index
    shuffled = pd.Series(y_new, index=model.data.index).sample(frac=1.0, random_state=1)
    assert model.refit(y=shuffled).llf == pytest.approx(res.llf, abs=1e-8)
    # NaN = missing: the patterns are rebuilt without the formula
    y_nan = y_new.copy()
    y_nan[rng.random(len(y_nan)) < 0.2] = np.nan
    res_nan = model.refit(y=y_nan)
    fresh_nan = model.data.assign(score=y_nan)
    ref_nan = ka.mmrm(fresh_nan, FORMULA, **KW)
    _same_fit(res_nan, ref_nan)
    assert res_nan.n_dropped == ref_nan.n_dropped
    # the same rows again: only the outcome sums are recomputed
    y2 = np.where(np.isnan(y_nan), np.nan, y_nan + 1.0)
    res2 = model.refit(y=y2)
    _same_fit(res2, ka.mmrm(model.data.assign(score=y2), FORMULA, **KW))


def test_bootstrap_weights_equal_duplicated_subjects(data):
    model = MMRMModel(data, FORMULA, **KW)
    model.fit()
    rng = np.random.default_rng(7)
    w = rng.multinomial(model.n_subjects, np.full(model.n_subjects, 1 / model.n_subjects))
    res = model.refit(weights=w)
    copies = []
    for label, k in zip(model.subjects, w, strict=True):
        rows = data[data.subject_id == label]
        for j in range(k):
            copies.append(rows.assign(subject_id=f"{label}_{j}"))
    dup = pd.concat(copies, ignore_index=True)
    ref = ka.mmrm(dup, FORMULA, **KW)
    _same_fit(res, ref)
    # a list of labels drawn with replacement means the same
    labels = np.repeat(model.subjects.to_numpy(), w)
    assert model.refit(subjects=labels).llf == pytest.approx(res.llf, abs=1e-8)
    # weights keyed by label
    res_d = model.refit(weights=dict(zip(model.subjects, w, strict=True)))
    assert res_d.llf == pytest.approx(res.llf, abs=1e-8)


def test_refit_many_counts_failures(data):
    model = MMRMModel(data, FORMULA, **KW)
    model.fit()
    rng = np.random.default_rng(3)
    ys = [model.y + rng.normal(0, 1, len(model.y)) for _ in range(3)]
    ys.insert(1, np.full(len(model.y), np.nan))  # nothing observed: fails
    batch = model.refit_many(ys=ys)
    assert isinstance(batch, RefitBatch)
    assert batch.n_failed == 1 and batch.failures[0][0] == 1
    assert batch.results[1] is None and batch.n_ok == 3
    table = batch.fe_params()
    assert table.shape == (4, len(model.design.fe_names)) and table.iloc[1].isna().all()
    with pytest.raises(FitFailedError, match="no observations"):
        model.refit(y=ys[1])
    # jackknife
    sets = [[s for s in model.subjects if s != leave] for leave in model.subjects[:4]]
    jack = model.refit_many(subject_sets=sets)
    assert jack.n_failed == 0 and all(r.n_subjects == model.n_subjects - 1 for r in jack)


def test_design_matrix_and_data_for_new_rows(data):
    d = data.copy()
    d.loc[[1, 2], "score"] = np.nan  # rows missing only the outcome stay in model.data
    model = MMRMModel(d, FORMULA, **KW)
    assert len(model.data) == len(d) and np.isnan(model.y).sum() == 2
    fit = model.fit()
    assert fit.n_obs == len(d) - 2 and fit.n_dropped == 2
    X = model.design_matrix(model.data)
    np.testing.assert_allclose(X, model.design.X)
    assert X.shape[1] == len(fit.fe_params)


def test_bad_input_gives_clear_kanalysis_errors(data):
    from kanalysis.errors import ConfigurationError, DataValidationError, StatisticalWarning

    with pytest.raises(DataValidationError, match="no rows"):
        ka.mmrm(data.iloc[:0], FORMULA, **KW)
    bad = data.copy()
    bad.loc[3, "score"] = np.inf
    with pytest.raises(DataValidationError, match=r"'score' holds infinite values in rows \[3\]"):
        ka.mmrm(bad, FORMULA, **KW)
    bad = data.assign(base=data["base"].astype(float))
    bad.loc[5, "base"] = -np.inf
    with pytest.raises(DataValidationError, match="'base'"):
        ka.mmrm(bad, FORMULA, **KW)
    # one arm, formula with an arm term: the term is named, never silently dropped
    one = data[data.arm == "drug"]
    with pytest.warns(StatisticalWarning, match="arm"):
        fit = ka.mmrm(one, FORMULA, **KW)
    assert not any("arm" in n for n in fit.fe_params.index)
    assert "arm" not in set(fit.anova()["term"])
    # a covariate that is a copy of another: aliased, dropped with its name
    with pytest.warns(StatisticalWarning, match="base2"):
        ka.mmrm(data.assign(base2=2 * data["base"]), "score ~ base + base2 + C(visit)", **KW)
    with pytest.raises(ConfigurationError, match="weights must have one value per subject"):
        MMRMModel(data, FORMULA, **KW).refit(weights=[1, 2, 3])
    with pytest.raises(ConfigurationError, match="unknown subject"):
        MMRMModel(data, FORMULA, **KW).refit(subjects=["nobody"])
