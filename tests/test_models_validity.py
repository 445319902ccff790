"""Statistical validity of kanalysis.lmm / kanalysis.mmrm by simulation (``make test-slow``).

- Parameter recovery (LMM): 400 simulated studies from a random intercept + slope model with
  known truth; the mean estimate of every fixed effect and variance component is within 4 Monte
  Carlo standard errors of the truth (or 2 % for variances, where REML's small bias is allowed),
  and the model SEs match the empirical spread of the estimates.
- MMRM (unstructured, Satterthwaite df): 1,000 simulated two-arm trials (100 subjects per arm,
  5 post-baseline visits, MAR dropout that depends on the last observed value); the 95 % CI of the
  arm difference at the last visit covers the truth in 93-97 % of trials; the estimates are
  unbiased and the estimated covariance recovers the true one.
- Type I error: 4,000 trials under the null; the two-sided 5 % test at the last visit rejects in
  4-6 % (4,000 trials give a binomial SE of 0.34 percentage points, so the window is +- 2.9 SE).

Set ``KANALYSIS_VALIDITY_JSON=/path/file.json`` to keep the measured numbers (benchmarks/VALIDITY.md
reports them).
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka

pytestmark = pytest.mark.slow

RESULTS: dict = {}


def _record(key: str, value: dict) -> None:
    RESULTS[key] = value
    path = os.environ.get("KANALYSIS_VALIDITY_JSON")
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(RESULTS, fh, indent=1, default=float)
        os.replace(tmp, path)
    print(f"\n{key}: {value}")


# --------------------------------------------------------------------------- MMRM trials

N_PER_ARM = 100
VISITS = 5
MU_PLACEBO = np.array([-3.0, -5.0, -7.0, -8.0, -9.0])
SD = np.array([5.0, 5.5, 6.0, 6.5, 7.0])
_lag = np.abs(np.subtract.outer(np.arange(VISITS), np.arange(VISITS)))
CORR = np.where(_lag == 0, 1.0, 0.55 + 0.3 * np.exp(-_lag))
SIGMA = np.outer(SD, SD) * CORR
DELTA = -3.0  # active - placebo at the last visit (the effect grows linearly to it)


def simulate_trial(rng: np.random.Generator, delta: float) -> pd.DataFrame:
    """Two-arm trial; dropout after visit j has logit -3.2 + 0.15 * (y_j - mu_j): worse
    (higher) observed scores drop out more often, which is missing at random."""
    n = 2 * N_PER_ARM
    active = np.repeat([1, 0], N_PER_ARM)
    effect = np.linspace(0.2, 1.0, VISITS) * delta
    y = (MU_PLACEBO[None, :] + active[:, None] * effect[None, :]
         + rng.multivariate_normal(np.zeros(VISITS), SIGMA, size=n))
    observed = np.ones((n, VISITS), dtype=bool)
    for j in range(1, VISITS):
        p_drop = 1.0 / (1.0 + np.exp(-(-3.2 + 0.15 * (y[:, j - 1] - MU_PLACEBO[j - 1]))))
        observed[:, j] = observed[:, j - 1] & (rng.random(n) >= p_drop)
    subj, vis = np.nonzero(observed)
    return pd.DataFrame({"subject": subj + 1,
                         "trt": np.where(active[subj] == 1, "active", "placebo"),
                         "visit": vis + 1, "change": y[subj, vis]})


def run_trials(n_trials: int, delta: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    est, se, lo, hi, pval, covs, dropout = [], [], [], [], [], [], []
    for _ in range(n_trials):
        data = simulate_trial(rng, delta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ka.mmrm(data, formula="change ~ trt * C(visit)", subject="subject",
                          visit="visit", covariance="us", reml=True)
        con = res.contrast(specs="trt", by="visit", method="pairwise")
        last = con[con["visit"] == VISITS].iloc[0]
        assert last["contrast"] == "active - placebo"
        est.append(last["estimate"])
        se.append(last["std_error"])
        lo.append(last["ci_lower"])
        hi.append(last["ci_upper"])
        pval.append(last["p_value"])
        covs.append(res.cov.to_numpy(dtype=float))
        dropout.append(1.0 - (data["visit"] == VISITS).sum() / (2 * N_PER_ARM))
    return {"estimate": np.array(est), "se": np.array(se), "lower": np.array(lo),
            "upper": np.array(hi), "p": np.array(pval), "cov": np.array(covs),
            "dropout": np.array(dropout)}


def test_mmrm_coverage_and_recovery():
    n = 1000
    r = run_trials(n, DELTA, seed=20261126)
    covered = (r["lower"] <= DELTA) & (DELTA <= r["upper"])
    coverage = covered.mean()
    mc_se = r["estimate"].std(ddof=1) / np.sqrt(n)
    bias = r["estimate"].mean() - DELTA
    se_ratio = r["se"].mean() / r["estimate"].std(ddof=1)
    cov_mean = r["cov"].mean(axis=0)
    cov_rel = np.abs(cov_mean - SIGMA) / SIGMA
    _record("mmrm_coverage", {
        "trials": n, "coverage": coverage, "coverage_mc_se": np.sqrt(coverage * (1 - coverage) / n),
        "true_delta": DELTA, "mean_estimate": r["estimate"].mean(), "bias": bias,
        "bias_mc_se": mc_se, "mean_model_se": r["se"].mean(),
        "empirical_sd": r["estimate"].std(ddof=1), "se_ratio": se_ratio,
        "power": float((r["p"] < 0.05).mean()), "mean_dropout_by_last_visit": r["dropout"].mean(),
        "max_rel_error_mean_cov": cov_rel.max()})
    assert 0.93 <= coverage <= 0.97, f"coverage {coverage:.3f} outside 93-97 %"
    assert abs(bias) <= 4 * mc_se, f"bias {bias:.4f} vs MC SE {mc_se:.4f}"
    # 1,000 trials: the empirical SD has a relative MC error of ~2.2 %, so +-7 % is ~3 MC SE.
    assert 0.93 <= se_ratio <= 1.07, f"mean model SE / empirical SD = {se_ratio:.3f}"
    # Mean REML covariance estimate over 1,000 trials: MC error ~1 % of each element.
    assert cov_rel.max() <= 0.04, f"mean covariance off by {cov_rel.max():.3f} (relative)"


def test_mmrm_type_one_error():
    n = 4000
    r = run_trials(n, 0.0, seed=20261127)
    rejection = (r["p"] < 0.05).mean()
    ci_excludes = ((r["lower"] > 0) | (r["upper"] < 0)).mean()
    _record("mmrm_type_one_error", {
        "trials": n, "rejection_rate": rejection,
        "mc_se": np.sqrt(rejection * (1 - rejection) / n),
        "ci_excludes_zero": ci_excludes, "mean_estimate": r["estimate"].mean()})
    assert ci_excludes == pytest.approx(rejection, abs=1.0 / n)  # p-value and CI agree
    assert 0.04 <= rejection <= 0.06, f"type I error {rejection:.4f} outside 4-6 %"


# --------------------------------------------------------------------------- LMM recovery

LMM_TRUTH = {"Intercept": 30.0, "day": -0.3, "arm": -1.5, "day:arm": -0.15}
G = np.array([[16.0, -0.2], [-0.2, 0.04]])
SIGMA2 = 9.0
DAYS = np.array([0.0, 1.0, 3.0, 7.0, 14.0, 21.0])


def simulate_lmm(rng: np.random.Generator, n_subjects: int) -> pd.DataFrame:
    arm = np.arange(n_subjects) % 2
    u = rng.multivariate_normal(np.zeros(2), G, size=n_subjects)
    b = LMM_TRUTH
    mu = (b["Intercept"] + b["day"] * DAYS[None, :] + b["arm"] * arm[:, None]
          + b["day:arm"] * DAYS[None, :] * arm[:, None])
    y = mu + u[:, :1] + u[:, 1:] * DAYS[None, :] + rng.normal(0, np.sqrt(SIGMA2), mu.shape)
    # 15 % of subjects lose a random tail of visits (keep >= 1), plus 5 % intermittent gaps.
    keep = np.ones(y.shape, dtype=bool)
    tail = rng.random(n_subjects) < 0.15
    cut = rng.integers(1, len(DAYS), size=n_subjects)
    keep[tail] = np.arange(len(DAYS))[None, :] < cut[tail, None]
    keep &= (rng.random(y.shape) >= 0.05) | (np.arange(len(DAYS))[None, :] == 0)
    s, v = np.nonzero(keep)
    return pd.DataFrame({"subject": s + 1, "arm": arm[s], "day": DAYS[v], "score": y[s, v]})


def test_lmm_parameter_recovery():
    rng = np.random.default_rng(7)
    n_rep, n_subjects = 400, 150
    fe, se, g, s2 = [], [], [], []
    for _ in range(n_rep):
        data = simulate_lmm(rng, n_subjects)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ka.lmm(data, formula="score ~ day * arm", groups="subject",
                         re_formula="~ 1 + day", reml=True)
        fe.append(res.fe_params[list(LMM_TRUTH)].to_numpy(dtype=float))
        se.append(res.bse[list(LMM_TRUTH)].to_numpy(dtype=float))
        g.append(res.cov_re.loc[["Intercept", "day"], ["Intercept", "day"]].to_numpy(dtype=float))
        s2.append(res.scale)
    fe, se, g, s2 = np.array(fe), np.array(se), np.array(g), np.array(s2)
    truth = np.array(list(LMM_TRUTH.values()))
    mc_se = fe.std(axis=0, ddof=1) / np.sqrt(n_rep)
    z = (fe.mean(axis=0) - truth) / mc_se
    se_ratio = se.mean(axis=0) / fe.std(axis=0, ddof=1)
    g_mean = g.mean(axis=0)
    g_z = (g_mean - G) / (g.std(axis=0, ddof=1) / np.sqrt(n_rep))
    s2_z = (s2.mean() - SIGMA2) / (s2.std(ddof=1) / np.sqrt(n_rep))
    _record("lmm_recovery", {
        "replicates": n_rep, "subjects": n_subjects,
        "mean_fixed_effects": dict(zip(LMM_TRUTH, fe.mean(axis=0), strict=True)),
        "z_fixed_effects": dict(zip(LMM_TRUTH, z, strict=True)),
        "se_ratio": dict(zip(LMM_TRUTH, se_ratio, strict=True)),
        "mean_G": g_mean.tolist(), "z_G": g_z.tolist(), "mean_sigma2": s2.mean(), "z_sigma2": s2_z})
    assert np.all(np.abs(z) <= 4), f"fixed-effect bias z-scores {z}"
    # 400 replicates: relative MC error of an empirical SD ~3.5 %, so +-10 % is ~3 MC SE.
    assert np.all((se_ratio > 0.90) & (se_ratio < 1.10)), f"SE / empirical SD {se_ratio}"
    assert np.all((np.abs(g_z) <= 4) | (np.abs(g_mean - G) <= 0.02 * np.abs(G))), (
        f"G mean {g_mean} vs truth {G} (z {g_z})")
    assert abs(s2_z) <= 4 or abs(s2.mean() - SIGMA2) <= 0.02 * SIGMA2, (
        f"sigma^2 mean {s2.mean():.4f} vs {SIGMA2} (z {s2_z:.2f})")
