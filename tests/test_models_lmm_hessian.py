"""The LMM engine's exact second derivatives and its one-pass sufficient statistics.

Each test compares two independent computations: the closed-form Hessians against central
differences of the analytic gradients, the vectorised per-subject sums against a plain loop
over subjects, and a full fit against the same fit with every finite-difference Hessian
disabled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis.models import _engine, _results, inference
from kanalysis.models.lmm import _vp_jacobian, _vp_to_nat


def _data(n=120, seed=4, jitter=1.5):
    rng = np.random.default_rng(seed)
    days = np.array([0, 7, 14, 21, 28, 35], float)
    subj = np.repeat(np.arange(n), len(days))
    day = np.tile(days, n) + jitter * rng.uniform(-1, 1, n * len(days))
    arm = np.repeat(rng.integers(0, 2, n), len(days)).astype(float)
    u0 = np.repeat(rng.normal(0, 4, n), len(days))
    u1 = np.repeat(rng.normal(0, 0.15, n), len(days))
    y = 30 + u0 + (-0.3 + u1) * day - 0.1 * day * arm + rng.normal(0, 3, len(day))
    keep = rng.random(len(y)) > 0.15
    return pd.DataFrame({"subject": subj, "day": day, "arm": arm, "score": y})[keep]


def _engine_for(d, cls, reml, q):
    X = np.column_stack([np.ones(len(d)), d.day, d.arm, d.day * d.arm])
    cols = [np.ones(len(d)), d.day / 10, (d.day / 10) ** 2][:q]
    Z = np.column_stack(cols)
    codes = pd.factorize(d.subject)[0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return cls(d.score.to_numpy(), X, Z, starts, reml=reml)


THETA = {1: np.array([1.1]), 2: np.array([1.3, -0.2, 0.5]),
         3: np.array([1.2, -0.1, 0.4, 0.05, 0.02, 0.3])}


@pytest.mark.parametrize("cls", [_engine.LMMEngine, _engine.LMMPatternEngine])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("jitter", [0.0, 1.5])
def test_exact_hessians_match_differences_of_the_gradient(cls, reml, q, jitter):
    eng = _engine_for(_data(jitter=jitter), cls, reml, q)
    theta = THETA[q]
    H = eng.hessian(theta)
    H_fd = inference.numerical_hessian(lambda t: eng.deviance_and_grad(t)[1], theta)
    np.testing.assert_allclose(H, H_fd, rtol=1e-5, atol=1e-6 * np.abs(H_fd).max())
    # (theta, sigma) of lmerTest, away from the profile value of sigma
    nat = eng.natural_from_theta(theta)
    vp = np.r_[theta, 1.2 * np.sqrt(nat[-1])]
    Hv, P = eng.vp_derivatives(vp)
    Hv_fd = inference.numerical_hessian(
        lambda v: _vp_jacobian(eng, v).T @ eng.grad_nat(_vp_to_nat(eng, v)), vp)
    np.testing.assert_allclose(Hv, Hv_fd, rtol=1e-5, atol=1e-6 * np.abs(Hv_fd).max())
    # P_k by the chain rule from the natural-parameter P list
    P_chain = np.einsum("kj,kab->jab", _vp_jacobian(eng, vp), eng.P_list(_vp_to_nat(eng, vp)))
    np.testing.assert_allclose(P, P_chain, rtol=1e-9, atol=1e-12 * np.abs(P_chain).max())


def test_one_pass_sums_equal_a_loop_over_subjects():
    d = _data(40, seed=7)
    X = np.column_stack([np.ones(len(d)), d.day, d.arm])
    Z = np.column_stack([np.ones(len(d)), d.day])
    y = d.score.to_numpy()
    codes = pd.factorize(d.subject)[0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    s = _engine.lmm_sums(y, X, Z, starts)
    for g, (a, b) in enumerate(zip(starts, np.r_[starts[1:], len(y)], strict=True)):
        np.testing.assert_allclose(s["Bt"][:, :, g], X[a:b].T @ Z[a:b], rtol=1e-12)
        np.testing.assert_allclose(s["At"][:, :, g], Z[a:b].T @ Z[a:b], rtol=1e-12)
        np.testing.assert_allclose(s["ct"][:, g], Z[a:b].T @ y[a:b], rtol=1e-12)
        assert s["yty_i"][g] == pytest.approx(y[a:b] @ y[a:b], rel=1e-12)
    np.testing.assert_allclose(s["XtX"], X.T @ X, rtol=1e-12)
    assert s["yty"] == pytest.approx(y @ y, rel=1e-12)


def test_fit_uses_no_finite_difference_hessian(monkeypatch):
    d = _data(150, seed=11)
    ref = ka.lmm(d, "score ~ day * arm", groups="subject", re_formula="~ 1 + day")

    def refuse(*args, **kwargs):
        raise AssertionError("finite-difference Hessian used")

    monkeypatch.setattr(inference, "numerical_hessian", refuse)
    monkeypatch.setattr(_results, "_hessian_fd", refuse)
    fit = ka.lmm(d, "score ~ day * arm", groups="subject", re_formula="~ 1 + day")
    assert fit.converged and isinstance(fit.engine, _engine.LMMEngine)
    assert not isinstance(fit.engine, _engine.LMMPatternEngine)
    assert fit.timings["hessians"] >= 1 and fit.timings["evaluations"] >= 1
    np.testing.assert_allclose(fit.fe_params, ref.fe_params, rtol=1e-10)
    assert np.isfinite(fit.df).all() and (fit.df > 0).all()
    # the optimum is a minimum of the profiled deviance: gradient ~ 0, Hessian positive definite
    _, g = fit.engine.deviance_and_grad(fit._theta_internal)
    assert np.abs(g).max() < 1e-3
    assert np.linalg.eigvalsh(fit.engine.hessian(fit._theta_internal)).min() > 0
