"""kanalysis.design.scenario: the generating models, nested subsets, dropout, files."""

from __future__ import annotations

import numpy as np
import pytest

from kanalysis.design import Scenario, load_scenario
from kanalysis.errors import ConfigurationError

VISITS = ["w1", "w2", "w4", "w6"]
MEANS = {"placebo": [-4, -6, -8, -9], "ketamine": [-8, -9, -10, -12]}


def _scenario(**kw):
    base = dict(sd=8.0, correlation="ar1:0.6", retention=[1, 0.95, 0.9, 0.85], name="demo")
    base.update(kw)
    return Scenario(VISITS, MEANS, **base)


def test_nested_subsets_do_not_depend_on_the_largest_n():
    sc = _scenario()
    small, big = sc.draw(11, 3, 10), sc.draw(11, 3, 35)
    np.testing.assert_array_equal(small.y[small.rows(10)], big.y[big.rows(10)])
    assert not np.array_equal(sc.draw(11, 4, 10).y, small.y, equal_nan=True)
    assert not np.array_equal(sc.draw(12, 3, 10).y, small.y, equal_nan=True)


def test_moments_and_monotone_retention():
    sc = _scenario(retention={"placebo": [1, .9, .8, .7], "ketamine": [.98, .95, .9, .8]})
    d = sc.draw(5, 0, 20_000)
    for ai, arm in enumerate(sc.arms):
        y = d.y[d.arm == ai]
        seen = np.isfinite(y)
        np.testing.assert_allclose(seen.mean(0), sc.retention[arm], atol=0.01)
        assert np.all(seen[:, 1:] <= seen[:, :-1])  # monotone
    full = Scenario(VISITS, MEANS, sd=8.0, correlation="ar1:0.6").draw(5, 0, 20_000)
    y = full.y[full.arm == 1]
    np.testing.assert_allclose(y.mean(0), MEANS["ketamine"], atol=0.2)
    np.testing.assert_allclose(np.cov(y.T), sc.covariance["ketamine"], rtol=0.05, atol=1.0)


def test_mar_dropout_depends_on_the_previous_value():
    sc = _scenario(dropout="mar", mar_slope=1.5)
    d = sc.draw(5, 0, 20_000)
    y = d.y[d.arm == 0]
    at_risk = np.isfinite(y[:, 1])
    dropped = at_risk & ~np.isfinite(y[:, 2])
    stayed = at_risk & np.isfinite(y[:, 2])
    assert y[dropped, 1].mean() > y[stayed, 1].mean() + 2
    # the MCAR version has no such difference
    m = _scenario().draw(5, 0, 20_000).y
    a = np.isfinite(m[:, 1])
    assert abs(m[a & ~np.isfinite(m[:, 2]), 1].mean() - m[a & np.isfinite(m[:, 2]), 1].mean()) < 1


def test_keys_truth_and_null():
    sc = _scenario()
    assert sc.key() == _scenario(name="other name").key()
    assert sc.key() != _scenario(sd=9.0).key()
    assert sc.truth("mmrm") == pytest.approx(-3.0)
    assert sc.truth("lmm_slope") == pytest.approx(np.polyfit([0, 1, 2, 3], [-4, -3, -2, -3],
                                                             1)[0])
    null = sc.null()
    assert null.is_null and not sc.is_null and null.truth("mmrm") == 0
    assert null.key() != sc.key()
    assert sc.arms[0] == "placebo" and Scenario(VISITS, MEANS, sd=1, control="ketamine"
                                                ).arms[0] == "ketamine"
    assert set(sc.assumptions()["assumption"]) >= {"means", "retention", "dropout"}


@pytest.mark.parametrize("kwargs, match", [
    (dict(means={"a": [1, 2, 3, 4]}), "exactly two arms"),
    (dict(means={"a": [1, 2], "b": [1, 2, 3, 4]}), "4 finite values"),
    (dict(retention=[1, 0.9, 0.95, 0.8]), "non-increasing"),
    (dict(retention=[1, 0.9, 0.8]), "retention"),
    (dict(correlation="ar1:1.5"), "rho"),
    (dict(correlation="banded:0.3"), "structure"),
    (dict(dropout="mnar"), "dropout"),
    (dict(landmark="w9"), "landmark"),
    (dict(covariance=np.eye(4)), "not both"),
    (dict(sd=None, correlation=None), "sd and correlation"),
    (dict(control="saline"), "control"),
])
def test_bad_scenarios_name_the_problem(kwargs, match):
    base = dict(sd=8.0, correlation=0.5)
    means = kwargs.pop("means", MEANS)
    base.update(kwargs)
    with pytest.raises(ConfigurationError, match=match):
        Scenario(VISITS, means, **base)


def test_toml_files(tmp_path):
    good = tmp_path / "s.toml"
    good.write_text(
        '[scenario]\nname = "toml"\nvisits = ["w1", "w2"]\nsd = 8.0\ncorrelation = 0.5\n'
        'retention = [1.0, 0.9]\n[scenario.means]\nplacebo = [-4, -6]\nketamine = [-7, -9]\n')
    sc = load_scenario(good)
    assert sc.name == "toml" and sc.truth("mmrm") == pytest.approx(-3)
    synth = tmp_path / "syn.toml"
    synth.write_text('[scenario]\nsynthetic = "single"\nresponse_rate = 0.6\n')
    assert load_scenario(synth).generator_kwargs["p_response"]["ketamine"] == 0.6
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nvisits = ["w1"]\nmeans = {a = [1], b = [2]}\nsd = -1\n')
    with pytest.raises(ConfigurationError, match="bad.toml"):
        load_scenario(bad)
    with pytest.raises(ConfigurationError, match="unknown key"):
        Scenario.from_dict({"visits": ["w1"], "means": {"a": [1], "b": [2]}, "sd": 1, "foo": 1})
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        (tmp_path / "x.toml").write_text("[scenario\n")
        load_scenario(tmp_path / "x.toml")


def test_synthetic_scenarios():
    s = Scenario.from_synthetic("single", response_rate=0.6, dropout_rate=0.2)
    assert s.generator_kwargs["p_response"] == {"ketamine": 0.6, "midazolam": 0.26}
    e = Scenario.from_synthetic("single", effect_24h=5.0)
    assert e.generator_kwargs["p_response"]["ketamine"] > 0.26
    cohort = s.draw(1, 0, 25)
    counts = cohort.subjects["arm"].value_counts()
    assert counts["ketamine"] >= 25 and counts["midazolam"] >= 25
    again = s.draw(1, 0, 45)  # the first blocks are the same subjects
    first = cohort.subjects.sort_values("subject_id")["subject_id"].tolist()
    assert set(first) <= set(again.subjects["subject_id"])
    assert s.null().is_null and s.null().truth("mmrm") == 0.0
    m = Scenario.from_synthetic("maintenance", relapse_hr=0.5)
    assert m.truth("cox") == pytest.approx(np.log(0.5))
    for kw, match in [(dict(design="serial"), "one arm"), (dict(foo=1), "unknown"),
                      (dict(response_rate=1.5), "response_rate"),
                      (dict(dropout_rate=1.5), "dropout_rate"),
                      (dict(response_rate=0.5, effect_24h=3), "not both")]:
        design = kw.pop("design", "single")
        with pytest.raises(ConfigurationError, match=match):
            Scenario.from_synthetic(design, **kw)


def test_analytic_mmrm_twin_with_complete_data_is_the_two_sample_formula():
    """With no dropout only the landmark variance matters: the Lu-Luo-Chen total equals the
    two-sample normal formula 2 (z_{1-a/2} + z_power)^2 (s_a^2 + s_b^2) / delta^2; visits after
    the landmark do not change it."""
    from scipy import stats

    cov = np.array([[16.0, 8.0, 6.0], [8.0, 25.0, 12.0], [6.0, 12.0, 36.0]])
    means = {"placebo": [0.0, -2.0, -3.0], "drug": [0.0, -5.0, -6.0]}
    sc = Scenario(["w0", "w1", "w2"], means, covariance=cov, control="placebo", landmark="w1")
    res = sc.analytic_mmrm(power=0.9, alpha=0.05, method="z")
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.9)
    expected = 2 * z**2 * (25.0 + 25.0) / 3.0**2
    assert res.key_numbers()["n_total"] == pytest.approx(expected, rel=1e-6)
    cov2 = cov.copy()
    cov2[2, 2], cov2[1, 2], cov2[2, 1] = 100.0, -3.0, -3.0
    other = Scenario(["w0", "w1", "w2"], means, covariance=cov2, control="placebo",
                     landmark="w1").analytic_mmrm(power=0.9, alpha=0.05, method="z")
    assert other.key_numbers()["n_total"] == pytest.approx(res.key_numbers()["n_total"])
