"""Tests of kanalysis.safety against R (committed JSON) and hand-computed cases.

Reference values: tests/reference/safety/safety_reference.json, written by
``Rscript tests/reference/safety/safety_reference.R`` from the frozen CSVs in that folder
(binom.test, poisson.test, prop.test Wilson intervals + Newcombe's formula, t.test, lme4 +
lmerTest, lm). The R calls are written beside each block of that script.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kanalysis as ka
from kanalysis import safety
from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.rules import km_median

REF_DIR = Path(__file__).parent / "reference" / "safety"
REF = json.loads((REF_DIR / "safety_reference.json").read_text())
TABLES = ("subjects", "infusions", "vitals", "adverse_events", "assessments")


def _frame(key: str) -> pd.DataFrame:
    return pd.DataFrame(REF[key])


@pytest.fixture(scope="module")
def frozen() -> ka.Cohort:
    tables = {name: pd.read_csv(REF_DIR / f"{name}.csv") for name in TABLES}
    return ka.Cohort(**tables, metadata={"primary_scale": "MADRS"})


def _vitals(rows, arm="ketamine"):
    """Hand-made vitals: rows of (subject, infusion, minute, sbp, dbp)."""
    frame = pd.DataFrame(rows, columns=["subject_id", "infusion_number", "minute", "sbp", "dbp"])
    frame["heart_rate"] = 70.0
    frame["cadss"] = np.nan
    frame["arm"] = arm
    return frame


# ---------------------------------------------------------------- interval helpers


def test_clopper_pearson_matches_binom_test():
    cases = _frame("binom_test")
    for row in cases.itertuples():
        lo, hi = safety.clopper_pearson(int(row.x), int(row.n), row.level)
        assert lo == pytest.approx(row.lower, rel=1e-9, abs=1e-12)
        assert hi == pytest.approx(row.upper, rel=1e-9, abs=1e-12)
    lo, hi = safety.clopper_pearson(cases["x"], cases["n"], 0.95)
    assert lo.shape == (len(cases),)
    assert np.all(lo <= cases["x"] / cases["n"]) and np.all(hi >= cases["x"] / cases["n"])


def test_clopper_pearson_edges_by_hand():
    # k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n).
    lo, hi = safety.clopper_pearson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 20), rel=1e-12)
    lo, hi = safety.clopper_pearson(20, 20)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 20), rel=1e-12)


@pytest.mark.parametrize("bad", [(3, 2), (-1, 5), (0, 0)])
def test_clopper_pearson_rejects_bad_counts(bad):
    with pytest.raises(ConfigurationError):
        safety.clopper_pearson(*bad)


def test_confidence_out_of_range():
    with pytest.raises(ConfigurationError, match="confidence"):
        safety.clopper_pearson(1, 10, confidence=95)


def test_newcombe_matches_r_and_published_examples():
    ex = _frame("newcombe_examples")
    diff, lo, hi = safety.newcombe_difference(ex["k1"], ex["n1"], ex["k2"], ex["n2"])
    np.testing.assert_allclose(lo, ex["lower"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hi, ex["upper"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(diff, ex["k1"] / ex["n1"] - ex["k2"] / ex["n2"])
    # Newcombe (1998) table II, method 10, examples (a) and (b), as printed (4 decimals).
    _, lo, hi = safety.newcombe_difference(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    _, lo, hi = safety.newcombe_difference(9, 10, 3, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.1705, 0.8090)


def test_wilson_interval_by_hand():
    # 0/10: upper = z^2/(n + z^2) exactly.
    z = 1.959963984540054
    lo, hi = safety.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z**2 / (10 + z**2), rel=1e-12)


# ---------------------------------------------------------------- exceedances


def test_exceedances_api_and_hand_counts():
    vitals = _vitals(
        [
            ("A", 1, 0, 150, 90), ("A", 1, 40, 181, 100),   # SBP 181 > 180: exceeds
            ("A", 2, 0, 150, 90), ("A", 2, 40, 180, 110),   # exactly 180/110: does not
            ("B", 1, 0, 140, 85), ("B", 1, 40, 160, 111),   # DBP 111 > 110: exceeds
            ("B", 2, 0, 130, 80), ("B", 2, 40, np.nan, np.nan),
        ]
    )
    out = safety.exceedances(vitals)
    assert list(out.columns) == ["arm", "n_sessions", "n_exceeding", "n", "estimate", "ci_lower",
                                 "ci_upper", "proportion", "lower", "upper"]
    assert out.attrs["count_columns"] == {"n_sessions": None, "n": None, "n_exceeding": "n"}
    np.testing.assert_array_equal(out["estimate"], out["proportion"])
    row = out.iloc[0]
    assert (row["n_sessions"], row["n_exceeding"]) == (4, 2)
    assert row["proportion"] == 0.5
    ref = _frame("binom_test").query("x == 2 and n == 4").iloc[0]
    assert row["lower"] == pytest.approx(ref["lower"], rel=1e-9)
    assert row["upper"] == pytest.approx(ref["upper"], rel=1e-9)
    # Thresholds are configurable; None ignores a component.
    assert safety.exceedances(vitals, sbp=179, dbp=None)["n_exceeding"].iloc[0] == 2
    assert safety.exceedances(vitals, sbp=None, dbp=109)["n_exceeding"].iloc[0] == 2
    assert safety.exceedances(vitals, sbp=200, dbp=200)["n_exceeding"].iloc[0] == 0
    subj = safety.exceedances(vitals, level="subject")
    assert (subj["n_subjects"].iloc[0], subj["n_exceeding"].iloc[0]) == (2, 2)


def test_exceedances_match_r(frozen):
    out = safety.exceedances(frozen)
    ref = _frame("exceedances_arm")
    pd.testing.assert_frame_equal(
        out.reset_index(drop=True)[[c for c in out.columns if c in ref.columns]],
        ref[[c for c in out.columns if c in ref.columns]], check_dtype=False, rtol=1e-9
    )
    by_inf = safety.exceedances(frozen, by="infusion_number")
    ref = _frame("exceedances_arm_infusion").sort_values(["arm", "infusion_number"])
    pd.testing.assert_frame_equal(
        by_inf.reset_index(drop=True)[[c for c in by_inf.columns if c in ref.columns]],
        ref[[c for c in by_inf.columns if c in ref.columns]].reset_index(drop=True),
        check_dtype=False, rtol=1e-9,
    )
    subj = safety.exceedances(frozen, level="subject")
    ref = _frame("exceedances_subject")
    pd.testing.assert_frame_equal(
        subj[["arm", "n_subjects", "n_exceeding", "lower", "upper"]], ref,
        check_dtype=False, rtol=1e-9,
    )
    other = safety.exceedances(frozen, sbp=170, dbp=105)
    assert other["n_exceeding"].tolist() == _frame("exceedances_170_105")["n_exceeding"].tolist()


def test_exceedances_bad_level_and_missing_arm(frozen):
    with pytest.raises(ConfigurationError, match="level"):
        safety.exceedances(frozen, level="visit")
    with pytest.raises(DataValidationError, match="arm"):
        safety.exceedances(frozen.vitals)  # bare vitals without arm or subjects
    out = safety.exceedances(frozen.vitals, subjects=frozen.subjects)
    assert out["n_sessions"].tolist() == _frame("exceedances_arm")["n_sessions"].tolist()


def test_exceedances_need_vitals():
    cohort = ka.Cohort(subjects=pd.DataFrame({"subject_id": ["A"], "arm": ["k"]}),
                       assessments=pd.DataFrame(), infusions=pd.DataFrame())
    with pytest.raises(DataValidationError, match="vitals"):
        safety.exceedances(cohort)


# ---------------------------------------------------------------- courses, peaks, return


def test_infusion_course_matches_t_test(frozen):
    out = safety.infusion_course(frozen, by=["arm"])
    ref = _frame("course_arm_minute")
    merged = out.merge(ref, on=["variable", "arm", "minute"], suffixes=("", "_r"))
    assert len(merged) == len(ref) == len(out)
    np.testing.assert_array_equal(merged["n"], merged["n_r"])
    np.testing.assert_allclose(merged["mean"], merged["mean_r"], rtol=1e-10)
    np.testing.assert_allclose(merged["sd"], merged["sd_r"], rtol=1e-10)
    has_ci = merged["lower_r"].notna()
    assert has_ci.sum() > 50
    np.testing.assert_allclose(merged.loc[has_ci, "lower"], merged.loc[has_ci, "lower_r"], rtol=1e-9)
    np.testing.assert_allclose(merged.loc[has_ci, "upper"], merged.loc[has_ci, "upper_r"], rtol=1e-9)

    by_inf = safety.infusion_course(frozen, "sbp")
    ref = _frame("course_sbp_arm_infusion_minute")
    merged = by_inf.merge(ref, on=["variable", "arm", "infusion_number", "minute"],
                          suffixes=("", "_r"))
    assert len(merged) == len(ref)
    np.testing.assert_allclose(merged["mean"], merged["mean_r"], rtol=1e-10)
    np.testing.assert_allclose(merged["upper"], merged["upper_r"], rtol=1e-9)


def test_infusion_course_change_from_baseline_by_hand():
    vitals = _vitals(
        [("A", 1, -5, 100, 60), ("A", 1, 0, 110, 70), ("A", 1, 40, 130, 80),
         ("B", 1, 0, 120, 70), ("B", 1, 40, 126, 75)]
    )
    out = safety.infusion_course(vitals, "sbp", by="arm", change_from_baseline=True)
    at40 = out.loc[out["minute"] == 40].iloc[0]
    assert at40["mean"] == pytest.approx((20 + 6) / 2)  # baseline = last reading at minute <= 0
    assert at40["sd"] == pytest.approx(np.std([20, 6], ddof=1))
    mean_base = safety.infusion_course(vitals, "sbp", by="arm", change_from_baseline=True,
                                       baseline="mean")
    assert mean_base.loc[mean_base["minute"] == 40, "mean"].iloc[0] == pytest.approx((25 + 6) / 2)


def test_session_peaks_match_r(frozen):
    peaks = safety.session_peaks(frozen, ["sbp", "cadss"])
    for variable, key in (("sbp", "peaks_sbp"), ("cadss", "peaks_cadss")):
        ours = peaks.loc[peaks["variable"] == variable]
        merged = ours.merge(_frame(key), on=["subject_id", "infusion_number"], suffixes=("", "_r"))
        assert len(merged) == len(ours) == len(_frame(key))
        for col in ("baseline", "peak", "peak_minute", "peak_change"):
            np.testing.assert_allclose(merged[col], merged[f"{col}_r"].astype(float), rtol=0,
                                       atol=1e-12, equal_nan=True)


def test_return_to_baseline_hand_cases():
    vitals = _vitals(
        [
            # returns: baseline 120, peak 150 at 20, first <= 130 after the peak at 60
            ("A", 1, 0, 120, 70), ("A", 1, 10, 130, 70), ("A", 1, 20, 150, 70),
            ("A", 1, 40, 140, 70), ("A", 1, 60, 128, 70), ("A", 1, 80, 120, 70),
            # never back: censored at the last reading (minute 80; minute 100 is missing)
            ("B", 1, 0, 120, 70), ("B", 1, 10, 150, 70), ("B", 1, 40, 160, 70),
            ("B", 1, 80, 155, 70), ("B", 1, 100, np.nan, np.nan),
            # not elevated: peak 125 within 10 of 120
            ("C", 1, 0, 120, 70), ("C", 1, 40, 125, 70),
        ]
    )
    out = safety.return_to_baseline(vitals, "sbp").set_index("subject_id")
    assert out.loc["A", "elevated"] and out.loc["A", "event"]
    assert (out.loc["A", "peak_minute"], out.loc["A", "return_minute"]) == (20, 60)
    assert out.loc["A", "minutes_from_peak"] == 40
    assert out.loc["B", "elevated"] and not out.loc["B", "event"]
    assert out.loc["B", "return_minute"] == 80
    assert not out.loc["C", "elevated"] and np.isnan(out.loc["C", "return_minute"])
    # A tighter tolerance moves A's return to minute 80 and makes C elevated.
    tight = safety.return_to_baseline(vitals, "sbp", tolerance={"sbp": 2}).set_index("subject_id")
    assert tight.loc["A", "return_minute"] == 80
    assert tight.loc["C", "elevated"] and not tight.loc["C", "event"]
    with pytest.raises(ConfigurationError, match="tolerance"):
        safety.return_to_baseline(vitals, "sbp", tolerance={"dbp": 2})


def test_return_to_baseline_matches_r(frozen):
    ours = safety.return_to_baseline(frozen, "sbp")
    ref = _frame("return_sessions_sbp")
    merged = ours.merge(ref, on=["subject_id", "infusion_number"], suffixes=("", "_r"))
    assert len(merged) == len(ref) == len(ours)
    np.testing.assert_array_equal(merged["elevated"], merged["elevated_r"])
    np.testing.assert_array_equal(merged["event"], merged["event_r"])
    np.testing.assert_allclose(merged["return_minute"], merged["time"].astype(float),
                               equal_nan=True)


def test_return_time_summary_matches_survfit(frozen):
    out = safety.return_time_summary(safety.return_to_baseline(frozen), by="arm")
    ref = _frame("return_median")
    merged = out.merge(ref, on=["variable", "arm"], suffixes=("", "_r"))
    assert len(merged) == len(ref) == 8
    np.testing.assert_array_equal(merged["n_elevated"], merged["n_elevated_r"])
    np.testing.assert_array_equal(merged["n_returned"], merged["n_returned_r"])
    np.testing.assert_allclose(merged["median_return_minute"], merged["quantile_median"])
    lo, hi = safety.clopper_pearson(merged["n_returned"], merged["n_elevated"])
    np.testing.assert_allclose(merged["lower"], lo)


@pytest.mark.parametrize("case", REF["km_median_cases"])
def test_km_median_matches_survfit(case):
    returns = pd.DataFrame({
        "variable": "sbp", "arm": "k", "elevated": True,
        "event": np.asarray(case["event"], dtype=bool),
        "return_minute": np.asarray(case["time"], dtype=float),
    })
    # One Kaplan-Meier median rule in kanalysis (rules.km_median): R's quantile.survfit. It
    # differs from summary(survfit)$table's median only on a curve ending flat at exactly 0.5.
    med = safety.return_time_summary(returns)["median_return_minute"].iloc[0]
    if case["quantile_median"] is None:
        assert np.isnan(med)
    else:
        assert med == pytest.approx(case["quantile_median"])
    assert km_median(case["time"], case["event"]) == pytest.approx(med, nan_ok=True)


# ---------------------------------------------------------------- adverse events


def test_ae_incidence_matches_r(frozen):
    out = safety.ae_incidence(frozen)
    ref = _frame("ae_incidence")
    pd.testing.assert_frame_equal(out.reset_index(drop=True)[[c for c in out.columns if c in ref.columns]],
        ref[[c for c in out.columns if c in ref.columns]],
                                  check_dtype=False, rtol=1e-9)


def test_ae_risk_difference_matches_r(frozen):
    inc = safety.ae_incidence(frozen)
    rd = safety.ae_risk_difference(inc, treatment="ketamine", control="midazolam")
    ref = _frame("ae_risk_difference")
    assert rd["term"].tolist() == ref["term"].tolist()
    np.testing.assert_allclose(rd["risk_difference"], ref["risk_difference"], rtol=1e-12)
    np.testing.assert_allclose(rd["lower"], ref["lower"], rtol=1e-9)
    np.testing.assert_allclose(rd["upper"], ref["upper"], rtol=1e-9)
    with pytest.raises(ConfigurationError, match="placebo"):
        safety.ae_risk_difference(inc, treatment="ketamine", control="placebo")


def test_ae_by_severity_matches_r(frozen):
    out = safety.ae_by_severity(frozen)
    ref = _frame("ae_worst_severity")
    merged = out.merge(ref, on=["term", "arm", "severity"], how="left", suffixes=("", "_r"))
    merged["n_with_event_r"] = merged["n_with_event_r"].fillna(0)
    np.testing.assert_array_equal(merged["n_with_event"], merged["n_with_event_r"])
    assert len(out) == out["term"].nunique() * 2 * 3
    # Worst-severity rows add up to the incidence of the term.
    inc = safety.ae_incidence(frozen).set_index(["term", "arm"])["n_with_event"]
    summed = out.groupby(["term", "arm"])["n_with_event"].sum()
    pd.testing.assert_series_equal(summed, inc.loc[summed.index], check_names=False)


def test_ae_serious_matches_r(frozen):
    out = safety.ae_serious(frozen)
    anyrow = out.loc[out["term"] == "any"].set_index("arm")
    ref = _frame("ae_any_serious").set_index("arm")
    assert anyrow["n_with_event"].to_dict() == ref["n_with_event"].to_dict()
    assert anyrow["n_subjects"].to_dict() == ref["n_subjects"].to_dict()


def test_ae_incidence_hand_case_zero_cells_and_population():
    subjects = pd.DataFrame({"subject_id": ["a", "b", "c", "d", "e"],
                             "arm": ["k", "k", "k", "m", "m"]})
    infusions = pd.DataFrame({"subject_id": ["a", "a", "b", "d", "d"],  # c, e never infused
                              "infusion_number": [1, 2, 1, 1, 2]})
    ae = pd.DataFrame({"subject_id": ["a", "a", "b", "d"], "term": ["nausea"] * 3 + ["headache"],
                       "severity": ["mild", "severe", "mild", "moderate"],
                       "serious": [False, True, False, False]})
    out = safety.ae_incidence(ae, subjects=subjects, infusions=infusions, include_any=True)
    out = out.set_index(["term", "arm"])
    assert out.loc[("nausea", "k"), ["n_subjects", "n_with_event", "n_events", "n_infusions"]
                   ].tolist() == [2, 2, 3, 3]
    assert out.loc[("nausea", "m"), "n_with_event"] == 0  # zero cell kept
    assert out.loc[("nausea", "m"), "upper"] == pytest.approx(1 - 0.025)  # 0/1: 1 - alpha/2
    assert out.loc[("any", "k"), "n_with_event"] == 2
    assert out.loc[("nausea", "k"), "events_per_infusion"] == pytest.approx(1.0)
    severe = safety.ae_incidence(ae, subjects=subjects, infusions=infusions, severity="severe")
    assert severe.set_index(["term", "arm"]).loc[("nausea", "k"), "n_with_event"] == 1
    # Text flags (as read from a CSV by hand) are understood; nonsense is an error.
    text_ae = ae.assign(serious=["False", "True", "no", "0"])
    ser = safety.ae_incidence(text_ae, subjects=subjects, infusions=infusions, serious_only=True)
    assert ser.set_index(["term", "arm"]).loc[("nausea", "k"), "n_with_event"] == 1
    with pytest.raises(DataValidationError, match="serious"):
        safety.ae_incidence(ae.assign(serious="maybe"), subjects=subjects, serious_only=True)
    worst = safety.ae_by_severity(ae, subjects=subjects, infusions=infusions)
    worst = worst.set_index(["term", "arm", "severity"])["n_with_event"]
    assert (worst[("nausea", "k", "severe")], worst[("nausea", "k", "mild")]) == (1, 1)


# ---------------------------------------------------------------- dissociation and response


def _check_lm(res, ref):
    frame = res.to_frame()
    assert frame["term"].tolist() == ["Intercept", "peak_cadss", "baseline"]
    assert res.n == ref["n"]
    for ours, theirs in (("estimate", "estimate"), ("std_error", "std_error"), ("statistic", "t"),
                         ("p_value", "p_value"), ("ci_lower", "ci_lower"),
                         ("ci_upper", "ci_upper")):
        np.testing.assert_allclose(frame[ours], ref[theirs], rtol=1e-8)


def test_dissociation_response_matches_lm(frozen):
    _check_lm(safety.dissociation_response(frozen, day=1.0), REF["dissociation_day1"])
    _check_lm(safety.dissociation_response(frozen, day=21.0), REF["dissociation_day21"])
    # End of induction: the first rating 1 to 20 days after the last infusion is the day-21 one.
    res = safety.dissociation_response(frozen, day="end_of_induction", window=20)
    _check_lm(res, REF["dissociation_day21"])
    assert (res.data["day"] == 21).all()
    assert "peak_cadss" in res.summary()


def test_dissociation_response_errors(frozen):
    with pytest.raises(DataValidationError, match="window"):
        safety.dissociation_response(frozen, day=5.0)
    with pytest.raises(ConfigurationError):
        safety.dissociation_response(frozen, day="week 2")


# ---------------------------------------------------------------- mixed model over infusions


def _check_lmm(res, ref, *, slope: bool):
    assert res.random_slope is slope
    fe = res.fit.fe_params
    assert len(fe) == len(ref["estimate"])
    # Same column order as lme4: (Intercept), infusion_index, arm, interaction.
    np.testing.assert_allclose(fe.to_numpy(), ref["estimate"], rtol=1e-4)
    np.testing.assert_allclose(res.fit.bse.to_numpy(), ref["std_error"], rtol=1e-3)
    np.testing.assert_allclose(res.fit.df.to_numpy(), ref["df"], rtol=1e-3)
    assert res.fit.llf == pytest.approx(ref["loglik"], abs=1e-4)
    resid = [v for v in ref["varcorr"] if v["grp"] == "Residual"][0]
    assert res.fit.scale == pytest.approx(resid["vcov"], rel=1e-4)


def test_infusion_trend_peak_cadss_matches_lme4(frozen):
    res = safety.infusion_trend(frozen, "peak_cadss")
    _check_lmm(res, REF["lmm_peak_cadss_slope"], slope=True)
    ref_re = {(v["var1"], v["var2"]): v["vcov"] for v in REF["lmm_peak_cadss_slope"]["varcorr"]}
    cov = res.fit.cov_re
    assert cov.iloc[0, 0] == pytest.approx(ref_re[("(Intercept)", None)], rel=1e-3)
    assert cov.iloc[1, 1] == pytest.approx(ref_re[("infusion_index", None)], rel=1e-3)
    assert cov.iloc[0, 1] == pytest.approx(ref_re[("(Intercept)", "infusion_index")], rel=1e-3)
    frame = res.to_frame()
    assert {"outcome", "term", "estimate", "ci_lower", "ci_upper"} <= set(frame.columns)
    assert "infusion_index" in res.summary()


def test_infusion_trend_random_intercept_matches_lme4(frozen):
    res = safety.infusion_trend(frozen, "peak_cadss", random_slope=False)
    _check_lmm(res, REF["lmm_peak_cadss_intercept"], slope=False)


def test_infusion_trend_peak_sbp_matches_lme4(frozen):
    res = safety.infusion_trend(frozen, "peak_sbp_change")
    _check_lmm(res, REF["lmm_peak_sbp_slope"], slope=True)


def test_infusion_trend_bad_outcome(frozen):
    with pytest.raises(ConfigurationError, match="outcome"):
        safety.infusion_trend(frozen, "peak_madrs")
    with pytest.raises(ConfigurationError, match="random_slope"):
        safety.infusion_trend(frozen, "peak_cadss", random_slope="yes")


def test_infusion_trend_drops_slope_with_few_repeated_subjects(frozen):
    # Keep three subjects with all their sessions and only the first infusion of the others.
    vitals = frozen.vitals
    keep = vitals["subject_id"].isin(["S001", "S004", "S005"]) | (vitals["infusion_number"] == 1)
    res = safety.infusion_trend(vitals.loc[keep], "peak_cadss", subjects=frozen.subjects)
    assert res.random_slope is False and res.re_formula == "~ 1"
    assert "3 subject(s) with repeated sessions" in res.note
    assert len(res.data) == keep.groupby(
        [vitals["subject_id"], vitals["infusion_number"]]).any().sum()


def test_infusion_trend_three_arms_with_string_dtype(cohort_maintenance):
    # load_cohort gives pandas "string" columns; arm must still enter as a factor.
    res = safety.infusion_trend(cohort_maintenance, "peak_sbp_change", random_slope=False)
    terms = res.to_frame()["term"].tolist()
    assert len(terms) == 6 and sum("arm" in t for t in terms) == 4


# ---------------------------------------------------------------- bundled synthetic cohorts


@pytest.mark.parametrize("design", ["single", "serial", "maintenance", "clinic"])
def test_synthetic_cohorts_run(design, request):
    cohort = request.getfixturevalue(f"cohort_{design}")
    out = safety.exceedances(cohort)
    assert list(out.columns) == ["arm", "n_sessions", "n_exceeding", "n", "estimate", "ci_lower",
                                 "ci_upper", "proportion", "lower", "upper"]
    assert out.attrs["count_columns"] == {"n_sessions": None, "n": None, "n_exceeding": "n"}
    np.testing.assert_array_equal(out["estimate"], out["proportion"])
    assert set(out["arm"]) == set(cohort.subjects.loc[
        cohort.subjects["subject_id"].isin(cohort.vitals["subject_id"]), "arm"])
    assert out["n_sessions"].sum() == cohort.vitals.groupby(
        ["subject_id", "infusion_number"]).ngroups
    assert ((out["lower"] <= out["proportion"]) & (out["proportion"] <= out["upper"])).all()
    inc = safety.ae_incidence(cohort)
    assert ((inc["lower"] <= inc["proportion"]) & (inc["proportion"] <= inc["upper"])).all()
    course = safety.infusion_course(cohort, "sbp", by="arm")
    assert course["n"].sum() == cohort.vitals["sbp"].notna().sum()


def test_infusion_trend_first_vs_later_recovers_synthetic_attenuation(cohort_serial):
    # The generator multiplies peak CADSS by `cadss_attenuation` after the first infusion; the
    # later-infusion effect relative to the first-infusion mean should be close to it.
    res = safety.infusion_trend(cohort_serial, "peak_cadss", trend="first_vs_later",
                                random_slope=False)
    fe = res.fit.fe_params
    ratio = 1 + fe["later_infusion"] / fe["Intercept"]
    assert ratio == pytest.approx(cohort_serial.truth["cadss_attenuation"], abs=0.1)
    cat = safety.infusion_trend(cohort_serial, "peak_cadss", trend="categorical",
                                random_slope=False)
    assert len(cat.fit.fe_params) == cohort_serial.vitals["infusion_number"].nunique()
    with pytest.raises(ConfigurationError, match="trend"):
        safety.infusion_trend(cohort_serial, "peak_cadss", trend="quadratic")
