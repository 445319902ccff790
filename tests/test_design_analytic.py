"""kanalysis.design.analytic against R (tests/reference/design/analytic.R, base R computing the
published formulas) and against published tables (Lu, Luo & Chen 2008 Table 1 and 2 as asserted
in longpower's tests; Diggle et al. 2002 pp. 29-30; R's power.prop.test help example)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kanalysis.design import (
    events_needed,
    power_lmm_slope,
    power_mmrm,
    power_time_averaged,
    power_two_proportions,
    sample_size_survival,
)
from kanalysis.design.analytic import mmrm_variance_factor
from kanalysis.errors import ConfigurationError

REF = json.loads((Path(__file__).parent / "reference" / "design" / "analytic.json").read_text())

# Lu, Luo & Chen (2008) Table 2 (phi1 for AR(1), linear retention), as printed in longpower's
# tests/testthat/tests.R (6 decimals): rows J=2 then J=4, aJ = .1 .. .4; columns p1J.
LLC_TABLE2 = np.array([
    [1.111111, 1.11, 1.101111, 1.083333, 1.056667, 1.021111],
    [1.25, 1.2475, 1.2275, 1.1875, 1.1275, 1.0475],
    [1.428571, 1.424286, 1.39, 1.321429, 1.218571, 1.081429],
    [1.666667, 1.66, 1.606667, 1.5, 1.34, 1.126667],
    [1.111111, 1.100502, 1.082804, 1.062830, 1.039967, 1.014086],
    [1.25, 1.224745, 1.183929, 1.138862, 1.087970, 1.030895],
    [1.428571, 1.382542, 1.310653, 1.233183, 1.147022, 1.051426],
    [1.666667, 1.590105, 1.474888, 1.354053, 1.221989, 1.077280],
])


def _ar1(rho, J):
    idx = np.arange(J)
    return rho ** np.abs(idx[:, None] - idx[None, :])


def test_llc_table2_published_and_r():
    got = []
    for row in REF["llc_table2"]:
        J, aJ, p1J = row["J"], row["aJ"], row["p1J"]
        rho = 0.0 if p1J == 0 else p1J ** (1 / (J - 1))
        phi = mmrm_variance_factor(_ar1(rho, J), np.linspace(1, 1 - aJ, J))
        assert phi == pytest.approx(row["phi"], rel=1e-10)
        got.append(phi)
    np.testing.assert_allclose(np.array(got).reshape(8, 6), LLC_TABLE2, atol=6e-7)


@pytest.mark.parametrize("phi1, phi2, lam, n_z, n_t", [
    # LLC (2008) Table 1 as asserted in longpower's tests (power .9, effect/sigma .5)
    (1, 1, 1, 168.11876898305, 170.147602556564),
    (1, 1, 2, 189.133615105931, 191.157604171059),
    (1, 2, 0.5, 252.178153474575, 254.192519905287),
    (1, 2, 2, 315.222691843219, 317.23132678479),
    (2, 2, 2, 378.267230211862, 380.272061544442),
])
def test_llc_table1(phi1, phi2, lam, n_z, n_t):
    # phi = 1/r_J with uncorrelated visits: retention at the last visit 1/phi.
    ret = ([1.0, 1.0 / phi1], [1.0, 1.0 / phi2])
    kw = dict(delta=0.5, sigma=1.0, correlation=0.0, retention=ret, power=0.9, allocation=lam)
    assert power_mmrm(**kw).n_total == pytest.approx(n_z, rel=1e-9)
    assert power_mmrm(method="t1", **kw).n_total == pytest.approx(n_t, rel=1e-9)
    exact_t = power_mmrm(method="t", **kw).n_total
    assert n_z < exact_t < n_t  # the fixed point lies between the z answer and one t step


def test_llc_general_cases_match_r():
    for case in REF["llc_cases"]:
        kw = dict(delta=case["delta"], sigma=(case["sa"], case["sb"]),
                  correlation=(np.array(case["Ra"]), np.array(case["Rb"])),
                  retention=(case["ra"], case["rb"]), allocation=case["lambda"],
                  power=case["power"])
        res = power_mmrm(**kw)
        assert res.details["phi"] == pytest.approx((case["phia"], case["phib"]), rel=1e-10)
        assert res.n_total == pytest.approx(case["N_z"], rel=1e-10)
        assert power_mmrm(method="t", **kw).n_total == pytest.approx(case["N_t"], rel=1e-7)


def test_power_mmrm_solves_for_each_missing_quantity():
    base = dict(sigma=8.0, correlation=_ar1(0.6, 4), retention=[1, .9, .85, .8])
    for method in ("z", "t"):
        n = power_mmrm(delta=3.0, power=0.8, method=method, **base).n_total
        pw = power_mmrm(delta=3.0, n_total=n, method=method, **base).power
        d = power_mmrm(n_total=n, power=0.8, method=method, **base).delta
        assert pw == pytest.approx(0.8, abs=1e-9)
        assert d == pytest.approx(3.0, rel=1e-8)
    res = power_mmrm(delta=3.0, n_total=200, **base)
    assert res.n_per_arm == (100.0, 100.0) and 0 < res.power < 1
    assert set(res.to_frame().columns) >= {"n", "power", "delta"}
    assert "Lu, Luo & Chen" in str(res.summary())


def test_power_mmrm_properties():
    # Complete data: phi = 1 whatever the correlation; dropout costs power; correlation with
    # earlier visits recovers some of it.
    assert mmrm_variance_factor(_ar1(0.7, 4), [1, 1, 1, 1]) == pytest.approx(1.0)
    low = power_mmrm(delta=2, sigma=8, correlation=0.0, retention=[1, .9, .8, .7], n_total=200)
    high = power_mmrm(delta=2, sigma=8, correlation=0.8, retention=[1, .9, .8, .7], n_total=200)
    full = power_mmrm(delta=2, sigma=8, correlation=0.0, retention=[1, 1, 1, 1], n_total=200)
    assert low.power < high.power < full.power


@pytest.mark.parametrize("kwargs, match", [
    (dict(delta=1, sigma=1, correlation=0.5, retention=[1, .9], power=0.8, n_total=100), "all but one"),
    (dict(delta=1, sigma=1, correlation=0.5, retention=[1, 1.1], power=0.8), "retention"),
    (dict(delta=1, sigma=1, correlation=0.5, retention=[.8, .9], power=0.8), "non-increasing"),
    (dict(delta=1, sigma=-1, correlation=0.5, retention=[1, .9], power=0.8), "sigma"),
    (dict(delta=1, sigma=1, correlation=[[1, 2], [2, 1]], retention=[1, .9], power=0.8),
     "positive definite"),
    (dict(delta=1, sigma=1, correlation=0.5, retention=[1, .9], power=1.2), "power"),
])
def test_power_mmrm_bad_input(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        power_mmrm(**kwargs)


def test_diggle_tables_published_and_r():
    # Diggle et al. (2002) p. 29: per-group n, rounded up as printed.
    published = {(0.2, 100): 313, (0.2, 200): 625, (0.2, 300): 938, (0.5, 100): 196,
                 (0.5, 200): 391, (0.5, 300): 586, (0.8, 100): 79, (0.8, 200): 157,
                 (0.8, 300): 235}
    for row in REF["diggle_p29"]:
        res = power_lmm_slope(delta=0.5, times=[0, 2, 5], sigma2=row["sigma2"], rho=row["rho"],
                              power=0.8, alternative="one-sided")
        assert res.n_per_arm[0] == pytest.approx(row["n"], rel=1e-10)
        assert int(np.ceil(res.n_per_arm[0])) == published[(row["rho"], row["sigma2"])]
    # p. 30, time-averaged difference, 3 visits
    published30 = {(0.2, 0.2): 145, (0.2, 0.3): 65, (0.2, 0.4): 37, (0.2, 0.5): 24,
                   (0.5, 0.2): 207, (0.5, 0.3): 92, (0.5, 0.4): 52, (0.5, 0.5): 33,
                   (0.8, 0.2): 268, (0.8, 0.3): 120, (0.8, 0.4): 67, (0.8, 0.5): 43}
    for row in REF["diggle_p30"]:
        res = power_time_averaged(delta=row["delta"], n_visits=3, rho=row["rho"], power=0.8,
                                  alternative="one-sided")
        assert res.n_per_arm[0] == pytest.approx(row["n"], rel=1e-10)
        assert int(np.ceil(res.n_per_arm[0])) == published30[(row["rho"], row["delta"])]


def test_random_slope_example_adas_cog():
    a = REF["adas"]
    res = power_lmm_slope(delta=a["delta"], times=a["times"], power=0.8,
                          random={k: a[k] for k in ("sig2_i", "sig2_s", "cov_si", "sig2_e")})
    assert res.n_per_arm[0] == pytest.approx(a["n"], rel=1e-10)
    assert res.n_per_arm[0] == pytest.approx(207.310093300903, rel=1e-9)  # longpower vignette
    back = power_lmm_slope(n_per_arm=208, times=a["times"], power=0.8,
                           random={k: a[k] for k in ("sig2_i", "sig2_s", "cov_si", "sig2_e")})
    assert back.delta == pytest.approx(1.49751028943272, rel=1e-8)


def test_events_schoenfeld_and_freedman_match_r():
    for row in REF["events"]:
        kw = dict(hazard_ratio=row["hr"], power=row["power"], allocation=row["allocation"])
        assert events_needed(**kw) == pytest.approx(row["schoenfeld"], rel=1e-12)
        assert events_needed(method="freedman", **kw) == pytest.approx(row["freedman"],
                                                                       rel=1e-12)
    # Defaults: two-sided 0.05, 1:1; HR 0.5 at 80%: 4 (1.96 + 0.8416)^2 / log(2)^2
    assert events_needed(hazard_ratio=0.5, power=0.8) == pytest.approx(
        4 * (1.959963984540054 + 0.8416212335729143) ** 2 / np.log(2) ** 2)
    with pytest.raises(ConfigurationError, match="hazard_ratio"):
        events_needed(hazard_ratio=1.0, power=0.8)


def test_lachin_foulkes_matches_r():
    for row in REF["lachin_foulkes"]:
        res = sample_size_survival(row["hazard_control"], row["hr"], row["accrual"],
                                   row["follow_up"], row["dropout"], power=row["power"],
                                   allocation=row["allocation"])
        assert res.n_total == pytest.approx(row["n"], rel=1e-10)
        assert 0 < res.details["events"] < res.n_total


def test_two_proportions_match_power_prop_test():
    for row in REF["two_proportions"]:
        res = power_two_proportions(row["p1"], row["p2"], power=0.9)
        assert res.n_per_arm[0] == pytest.approx(row["n_for_power_0.9"], rel=1e-6)
        assert power_two_proportions(row["p1"], row["p2"], n_per_arm=50).power == pytest.approx(
            row["power_at_50"], rel=1e-10)
    # statsmodels / R help example: p1 .5, p2 .75, power .9 -> 76.7 per group
    assert power_two_proportions(0.5, 0.75, power=0.9).n_per_arm[0] == pytest.approx(
        76.7069301141077, rel=1e-6)
