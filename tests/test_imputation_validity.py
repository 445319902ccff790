"""Slow coverage study of reference-based imputation (make test-slow).

Trials are simulated under the jump-to-reference (JR) assumption itself: complete outcomes from
a multivariate normal model with a common unstructured covariance; patients drop out completely
at random (MCAR, so the true estimand has a closed form); after dropout, the outcomes of the
active arm follow the reference arm's conditional distribution given the patient's own earlier
values. The JR estimand at the last visit is then (1 - p) (mu_active - mu_reference), p the
active arm's dropout probability. Over >= 1,000 trials the nominal 95% CI of conditional mean
imputation with jackknife SEs must cover in 93-97% of trials. Rubin's rules under reference-based
imputation are known to be conservative: the between-imputation variance carries information
the JR assumption takes away ("information anchoring", Cro, Carpenter & Kenward 2019; Seaman,
White & Leacy 2014). The test therefore checks only that ApproxBayes + Rubin is not
anti-conservative (coverage >= 93%) and prints its coverage. In a development run of 200
trials it was 98.5%; the jackknife gave 94.0%.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from kanalysis import imputation as mi

N_TRIALS = int(os.environ.get("KANALYSIS_COVERAGE_TRIALS", "1000"))
T = 3
MU = {"DRUG": np.array([-4.0, -7.0, -9.0]), "PLACEBO": np.array([-3.0, -4.5, -5.5])}
SIGMA = np.array([[20.0, 14.0, 12.0], [14.0, 30.0, 22.0], [12.0, 22.0, 36.0]])
P_DROP = 0.3  # per arm, spread over visits 2 and 3
TRUE = (1 - P_DROP) * (MU["DRUG"][-1] - MU["PLACEBO"][-1])


def simulate(rng, n_per_arm=60):
    rows, ice = [], []
    L = np.linalg.cholesky(SIGMA)
    for arm in ("DRUG", "PLACEBO"):
        for j in range(n_per_arm):
            sid = f"{arm[0]}{j:03d}"
            base = rng.normal(25, 4)
            shift = -0.3 * (base - 25)
            y = MU[arm] + shift + L @ rng.standard_normal(T)
            u = rng.random()
            k = T if u >= P_DROP else (1 if u < P_DROP / 2 else 2)  # first affected visit index
            if k < T and arm == "DRUG":  # JR: post-ICE values from the reference conditional
                mu_own, mu_ref = MU[arm] + shift, MU["PLACEBO"] + shift
                A = SIGMA[k:, :k] @ np.linalg.inv(SIGMA[:k, :k])
                cm = mu_ref[k:] + A @ (y[:k] - mu_own[:k])
                cv = SIGMA[k:, k:] - A @ SIGMA[:k, k:]
                y[k:] = cm + np.linalg.cholesky(cv) @ rng.standard_normal(T - k)
            for v in range(k):
                rows.append((sid, str(v + 1), arm, base, y[v]))
            if k < T:
                ice.append((sid, str(k + 1), "JR"))
    d = pd.DataFrame(rows, columns=["PATIENT", "VISIT", "THERAPY", "BASVAL", "CHANGE"])
    return d, pd.DataFrame(ice, columns=["PATIENT", "VISIT", "strategy"])


def one_trial(seed):
    rng = np.random.default_rng(seed)
    d, ice = simulate(rng)
    out = {}
    kw = dict(subject="PATIENT", visit="VISIT", group="THERAPY", ice=ice, progress=False)
    refs = {"DRUG": "PLACEBO", "PLACEBO": "PLACEBO"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, method in (("jackknife", mi.CondMean()),
                             ("rubin", mi.ApproxBayes(n_samples=20, seed=seed))):
            dr = mi.draws(d, "CHANGE ~ BASVAL*VISIT + THERAPY*VISIT", method=method, **kw)
            res = mi.pool(mi.analyse(mi.impute(dr, references=refs), covariates=["BASVAL"]))
            r = res.estimate("diff", visit="3")
            out[name] = (r.ci_lower <= TRUE <= r.ci_upper, r.estimate)
    return out


@pytest.mark.slow
def test_coverage_under_jump_to_reference():
    from kanalysis.parallel import map_batches

    results = map_batches(one_trial, list(range(N_TRIALS)), progress=False)
    for name in ("jackknife", "rubin"):
        cover = np.mean([r[name][0] for r in results])
        bias = np.mean([r[name][1] for r in results]) - TRUE
        se_mc = np.sqrt(0.95 * 0.05 / N_TRIALS)
        print(f"{name}: coverage {cover:.3f} (MC SE {se_mc:.3f}), bias {bias:.3f}")
        if name == "jackknife":
            assert 0.93 <= cover <= 0.97, (name, cover)
        else:  # conservative by construction under JR (see the module docstring)
            assert cover >= 0.93, (name, cover)
        assert abs(bias) < 0.15
