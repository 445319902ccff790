"""Tests for kanalysis.durability.

Reference values come from R's survival package: tests/reference/survival/survival_reference.R
run on the frozen CSVs in tests/reference/survival/inputs/ (R is not needed to run these tests).
Derivation edge cases use small hand-built cohorts whose answers are worked out by hand below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kanalysis import durability as du
from kanalysis.cohort import Cohort
from kanalysis.errors import ConfigurationError, DataValidationError, StatisticalWarning

REF_DIR = Path(__file__).parent / "reference" / "survival"
REF = json.loads((REF_DIR / "survival_reference.json").read_text())
INPUTS = REF_DIR / "inputs"


def _arr(values) -> np.ndarray:
    """R's JSON (null = NA / Inf) as a float array."""
    return np.array([np.nan if v is None else v for v in np.atleast_1d(values)], dtype=float)


def _alda(name: str, time: str) -> pd.DataFrame:
    d = pd.read_csv(INPUTS / f"{name}.csv")
    # alda files: censor = 1 means censored
    return d.assign(time=d[time], event=1 - d["censor"])


DATASETS = {
    "alda_alcohol_relapse": (lambda: _alda("alda_alcohol_relapse", "weeks"), None),
    "alda_cocaine_relapse_1": (lambda: _alda("alda_cocaine_relapse_1", "weeks"), "needle"),
    "alda_psychiatric_discharge": (lambda: _alda("alda_psychiatric_discharge", "days"),
                                   "treatment_plan"),
    "alda_rearrest": (lambda: _alda("alda_rearrest", "days"), "person_crime"),
    "synthetic_maintenance": (lambda: pd.read_csv(INPUTS / "synthetic_maintenance.csv"), "arm"),
    "synthetic_serial": (lambda: pd.read_csv(INPUTS / "synthetic_serial.csv"), "arm"),
}
KM_CASES = [(name, ct) for name in DATASETS for ct in du.CONF_TYPES]


def _same_groups(mine, ref) -> None:
    """R drops the strata of a one-level factor (labelled "all" in the JSON)."""
    mine = [str(g) for g in mine]
    ref = [str(g) for g in np.atleast_1d(ref)]
    if set(ref) == {"all"}:
        assert len(set(mine)) == 1 and len(mine) == len(ref)
    else:
        assert mine == ref


def _close(mine, ref, atol):
    mine = np.asarray(mine, dtype=float)
    ref = _arr(ref)
    mine = np.where(np.isfinite(mine), mine, np.nan)
    assert mine.shape == ref.shape
    np.testing.assert_allclose(mine, ref, atol=atol, rtol=0, equal_nan=True)


# ------------------------------------------------------------------------------------------
# Kaplan-Meier vs R survfit
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "conf_type"), KM_CASES)
def test_km_curve_matches_r(name, conf_type):
    data, group = DATASETS[name]
    ref = REF["km"][name][conf_type]["curve"]
    km = du.kaplan_meier(data(), group=group, conf_type=conf_type)
    tab = km.table
    _same_groups(tab[km.group], ref["group"])
    for col in ("time", "n_risk", "n_event", "survival", "std_err_log", "lower", "upper"):
        _close(tab[col], ref[col], 1e-6)


@pytest.mark.parametrize(("name", "conf_type"), KM_CASES)
def test_km_quantiles_and_median_match_r(name, conf_type):
    data, group = DATASETS[name]
    ref = REF["km"][name][conf_type]["quantile"]
    km = du.kaplan_meier(data(), group=group, conf_type=conf_type)
    q = km.quantile([0.25, 0.5, 0.75])
    for p, key in ((0.25, "25"), (0.5, "50"), (0.75, "75")):
        qq = q[q["prob"] == p]
        _close(qq["estimate"], ref["q" + key], 1e-6)
        _close(qq["ci_lower"], ref["lower" + key], 1e-6)
        _close(qq["ci_upper"], ref["upper" + key], 1e-6)
    med = km.median()
    assert list(med.columns) == ["estimate", "ci_lower", "ci_upper"]
    _same_groups(med.index, ref["group"])
    _close(med["estimate"], ref["q50"], 1e-6)
    _close(med["ci_lower"], ref["lower50"], 1e-6)
    _close(med["ci_upper"], ref["upper50"], 1e-6)


@pytest.mark.parametrize(("name", "conf_type"), KM_CASES)
def test_km_landmarks_match_r_summary_times(name, conf_type):
    data, group = DATASETS[name]
    ref = REF["km"][name][conf_type]["landmarks"]
    km = du.kaplan_meier(data(), group=group, conf_type=conf_type)
    s = km.survival_at(sorted(set(_arr(ref["time"]))))
    gcol = group if group is not None else "group"
    assert list(s.columns[:2]) == [gcol, "time"]
    assert {"estimate", "ci_lower", "ci_upper", "at_risk"} <= set(s.columns)
    s = s.dropna(subset=["estimate"])  # R drops times past the end of a curve
    _same_groups(s[gcol], ref["group"])
    _close(s["time"], ref["time"], 0)
    for col, rcol in (("estimate", "survival"), ("ci_lower", "lower"), ("ci_upper", "upper"),
                      ("at_risk", "at_risk")):
        _close(s[col], ref[rcol], 1e-6)


@pytest.mark.parametrize("name", list(DATASETS))
def test_rmst_and_se_match_r_print_survfit(name):
    data, group = DATASETS[name]
    ref = REF["km"][name]["rmst"]
    tau = _arr(ref["tau"])[0]
    out = du.rmst(data(), tau, group=group)
    groups = [str(g) for g in np.atleast_1d(ref["group"])]
    by_group = out[out["p_value"].isna()]
    _same_groups(by_group.index, groups)
    _close(by_group["estimate"], ref["rmst"], 1e-4)
    _close(by_group["std_error"], ref["se"], 1e-4)
    if len(groups) == 2:
        diff = out[out["p_value"].notna()].iloc[0]
        r_rmst, r_se = _arr(ref["rmst"]), _arr(ref["se"])
        sign = -1 if name == "synthetic_maintenance" else 1  # control arm is the reference
        assert diff["estimate"] == pytest.approx(sign * (r_rmst[1] - r_rmst[0]), abs=1e-4)
        assert diff["std_error"] == pytest.approx(np.hypot(*r_se), abs=1e-4)
        assert diff["ci_lower"] < diff["estimate"] < diff["ci_upper"]
        assert diff["statistic"] == pytest.approx(diff["estimate"] / diff["std_error"])


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_rmst_differs_from_lifelines_variance():
    """lifelines' RMST variance is not R's; ours must be R's (checked above), so differ here."""
    import lifelines
    from lifelines.utils import restricted_mean_survival_time

    d = DATASETS["alda_rearrest"][0]()
    kmf = lifelines.KaplanMeierFitter().fit(d["time"], d["event"])
    _, var_ll = restricted_mean_survival_time(kmf, t=730, return_variance=True)
    ours = du.rmst(d, 730, group=None)
    assert ours["estimate"].iloc[0] == pytest.approx(
        restricted_mean_survival_time(kmf, t=730), abs=1e-6)
    assert abs(np.sqrt(var_ll) - ours["std_error"].iloc[0]) > 1e-3


# ------------------------------------------------------------------------------------------
# log-rank vs R survdiff
# ------------------------------------------------------------------------------------------
LOGRANK = {
    "alda_cocaine_relapse_1": ("needle", None),
    "alda_psychiatric_discharge": ("treatment_plan", None),
    "alda_rearrest_stratified": ("person_crime", "property_crime"),
    "synthetic_maintenance": ("arm", None),
}


@pytest.mark.parametrize("name", list(LOGRANK))
def test_logrank_matches_r_survdiff(name):
    group, strata = LOGRANK[name]
    data = DATASETS[name.replace("_stratified", "")][0]()
    ref = REF["logrank"][name]
    res = du.logrank(data, group=group, strata=strata)
    assert res.chisq == pytest.approx(ref["chisq"], abs=1e-6)
    assert res.p == pytest.approx(ref["p"], abs=1e-8)
    assert res.df == ref["df"]
    k = len(res.table)
    # R reports observed / expected per group and stratum (column-major); sum over strata
    obs = _arr(ref["observed"]).reshape(-1, k).sum(0)
    exp_ = _arr(ref["expected"]).reshape(-1, k).sum(0)
    _close(res.table["observed"], obs, 1e-8)
    _close(res.table["expected"], exp_, 1e-6)


def test_logrank_agrees_with_statsmodels_survdiff():
    from statsmodels.duration.survfunc import survdiff

    d = DATASETS["alda_rearrest"][0]()
    res = du.logrank(d, group="person_crime", strata="property_crime")
    chisq, p = survdiff(d["time"], d["event"], d["person_crime"], strata=d["property_crime"])
    assert res.chisq == pytest.approx(chisq, rel=1e-10)


# ------------------------------------------------------------------------------------------
# Cox vs R coxph / cox.zph
# ------------------------------------------------------------------------------------------
COX = {
    "alda_cocaine_relapse_1": ("needle", "time", None),
    "alda_psychiatric_discharge": ("treatment_plan", "time", None),
    "alda_rearrest": ("person_crime + property_crime + age", "time", None),
    "synthetic_maintenance": ("arm", "time", None),
    "synthetic_serial": ("anxious_distress + baseline + age", "time", None),
    "synthetic_maintenance_cp": ("maintenance_infusions", "stop", "start"),
}


def _cox_data(name):
    if name == "synthetic_maintenance_cp":
        return pd.read_csv(INPUTS / "synthetic_maintenance_cp.csv")
    return DATASETS[name][0]()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("name", list(COX))
def test_cox_matches_r_coxph(name, ties):
    formula, time, start = COX[name]
    ref = REF["cox"][name][ties]
    fit = du.cox(_cox_data(name), formula, time=time, start=start, ties=ties)
    s = fit.coef_table
    assert list(s.columns[:5]) == ["coef", "se", "hr", "lower", "upper"]
    assert "p" in s.columns
    assert len(s) == len(np.atleast_1d(ref["term"]))
    for col in ("coef", "se", "hr", "lower", "upper", "p"):
        np.testing.assert_allclose(s[col], _arr(ref[col]), atol=1e-4, rtol=1e-4)
    assert fit.loglik_null == pytest.approx(ref["loglik"][0], abs=1e-6)
    assert fit.loglik == pytest.approx(ref["loglik"][1], abs=1e-6)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("name", list(COX))
def test_cox_zph_matches_r(name, ties):
    formula, time, start = COX[name]
    ref = REF["cox"][name][ties]
    fit = du.cox(_cox_data(name), formula, time=time, start=start, ties=ties)
    z = fit.ph_test()
    assert z.index[-1] == "GLOBAL"
    np.testing.assert_allclose(z["chisq"], _arr(ref["zph_chisq"]), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(z["p"], _arr(ref["zph_p"]), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(z["df"], _arr(ref["zph_df"]))


def test_cox_reference_level_flips_the_hazard_ratio():
    d = DATASETS["synthetic_maintenance"][0]()
    default = du.cox(d, "arm").coef_table
    flipped = du.cox(d, "arm", reference={"arm": "no_maintenance"}).coef_table
    assert flipped.index[0] == "arm[T.maintenance]"
    assert flipped["hr"].iloc[0] == pytest.approx(1 / default["hr"].iloc[0], rel=1e-8)
    with pytest.raises(ConfigurationError, match="not a level"):
        du.cox(d, "arm", reference={"arm": "placebo"})


def test_cox_rejects_bad_ties_and_no_events():
    d = DATASETS["alda_cocaine_relapse_1"][0]()
    with pytest.raises(ConfigurationError, match="ties"):
        du.cox(d, "needle", ties="exact")
    with pytest.raises(DataValidationError, match="no events"):
        du.cox(d.assign(event=0), "needle")


# ------------------------------------------------------------------------------------------
# cumulative incidence vs R multi-state survfit
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REF["cif"]))
def test_cumulative_incidence_matches_r_multistate_survfit(name):
    path = INPUTS / ("competing_example.csv" if name == "competing_example" else f"{name}.csv")
    d = pd.read_csv(path)
    ref = REF["cif"][name]
    res = du.cumulative_incidence(d)
    assert [str(g) for g in res.table["arm"]] == ref["group"]
    for col in ("time", "survival", "cif_relapse", "cif_dropout", "se_survival", "se_relapse",
                "se_dropout", "lower_relapse", "upper_relapse", "lower_survival",
                "upper_survival"):
        _close(res.table[col], ref[col], 1e-6)
    total = res.table["survival"] + res.table["cif_relapse"] + res.table["cif_dropout"]
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_cumulative_incidence_is_deterministic_with_ties():
    d = pd.read_csv(INPUTS / "competing_example.csv")
    assert d["time"].duplicated().any()
    a = du.cumulative_incidence(d).table
    b = du.cumulative_incidence(d.sample(frac=1, random_state=3)).table
    pd.testing.assert_frame_equal(a, b)
    at = du.cumulative_incidence(d).at([0, 30, 1000])
    assert (at.loc[at["time"] == 0, "cif_relapse"] == 0).all()


# ------------------------------------------------------------------------------------------
# Kaplan-Meier behaviour on hand-built data
# ------------------------------------------------------------------------------------------
def test_km_hand_computed_and_landmarks_beyond_follow_up():
    d = pd.DataFrame({"time": [1, 2, 2, 3, 5], "event": [1, 1, 0, 1, 0]})
    km = du.kaplan_meier(d, group=None)
    # S(1) = 4/5, S(2) = 4/5 * 3/4, S(3) = 0.6 * 1/2
    np.testing.assert_allclose(km.table["survival"], [0.8, 0.6, 0.3, 0.3])
    s = km.survival_at([0, 2.5, 5, 6])
    np.testing.assert_allclose(s["estimate"].iloc[:3], [1.0, 0.6, 0.3])
    assert np.isnan(s["estimate"].iloc[3])
    assert s["at_risk"].tolist() == [5, 2, 1, 0]
    assert km.median()["estimate"].iloc[0] == 3.0


def test_km_all_censored_has_no_median():
    d = pd.DataFrame({"time": [1.0, 2.0, 3.0], "event": [0, 0, 0], "arm": "a"})
    med = du.kaplan_meier(d).median()
    assert np.isnan(med.loc["a", "estimate"]) and np.isnan(med.loc["a", "ci_upper"])


def test_km_input_errors_name_the_problem():
    d = pd.DataFrame({"time": [1.0, np.nan], "event": [1, 0], "arm": ["a", "b"]})
    with pytest.raises(DataValidationError, match="missing"):
        du.kaplan_meier(d)
    with pytest.raises(DataValidationError, match="1 \\(event\\) or 0"):
        du.kaplan_meier(d.assign(time=[1.0, 2.0], event=[1, 2]))
    with pytest.raises(ConfigurationError, match="conf_type"):
        du.kaplan_meier(d.assign(time=[1.0, 2.0]), conf_type="arcsin")
    with pytest.raises(DataValidationError, match="needs column.*'days'"):
        du.kaplan_meier(d, time="days")


# ------------------------------------------------------------------------------------------
# counting-process split
# ------------------------------------------------------------------------------------------
def test_counting_process_splits_at_maintenance_infusions():
    table = pd.DataFrame({"subject_id": ["A", "B", "C"], "arm": ["m", "m", "n"],
                          "time": [30.0, 10.0, 20.0], "event": [1, 0, 1],
                          "origin_day": [14.0, 14.0, 14.0]})
    inf = pd.DataFrame({
        "subject_id": ["A", "A", "A", "A", "B", "C"],
        "day": [11.0, 21.0, 28.0, 60.0, 30.0, 5.0],
        "phase": ["induction", "maintenance", "maintenance", "maintenance", "maintenance",
                  "induction"],
    })
    cp = du.counting_process(table, inf)
    a = cp[cp["subject_id"] == "A"]
    # A: maintenance at analysis days 7 and 14 (day 60 is after the end at 30)
    assert a[["start", "stop"]].to_numpy().tolist() == [[0, 7], [7, 14], [14, 30]]
    assert a["maintenance_infusions"].tolist() == [0, 1, 2]
    assert a["event"].tolist() == [0, 0, 1]
    b = cp[cp["subject_id"] == "B"]  # infusion at 16 > follow-up end 10
    assert b[["start", "stop", "maintenance_infusions", "event"]].to_numpy().tolist() == [
        [0, 10, 0, 0]]
    recent = du.counting_process(table, inf, kind="recent", window=5.0)
    a = recent[recent["subject_id"] == "A"]
    assert a[["start", "stop"]].to_numpy().tolist() == [[0, 7], [7, 12], [12, 14], [14, 19],
                                                        [19, 30]]
    assert a["maintenance_infusions"].tolist() == [0, 1, 0, 1, 0]


# ------------------------------------------------------------------------------------------
# derive: hand-built cohorts
# ------------------------------------------------------------------------------------------
def _cohort(scores: dict, *, subjects=None, clinical=None, days=None, randomization=None):
    """Cohort with MADRS at `days` (default baseline -0.04 and weekly from day 7)."""
    rows = []
    for sid, sc in scores.items():
        dd = days.get(sid) if isinstance(days, dict) else days
        if dd is None:
            dd = [-0.04] + [7.0 * k for k in range(1, len(sc))]
        for k, (day, s) in enumerate(zip(dd, sc, strict=True)):
            rows.append({"subject_id": sid, "scale": "MADRS", "day": day, "visit": f"v{k}",
                         "visit_number": k, "score": s})
    ids = list(scores)
    subj = pd.DataFrame({"subject_id": ids, "arm": "ketamine", "disposition": "completed",
                         "dropout_day": np.nan, "age": 40.0})
    if randomization is not None:
        subj["randomization_day"] = [randomization.get(i, np.nan) for i in ids]
    if subjects:
        for sid, upd in subjects.items():
            for k, v in upd.items():
                subj.loc[subj["subject_id"] == sid, k] = v
    inf = pd.DataFrame({"subject_id": ids, "infusion_number": 1, "day": 0.0,
                        "drug": "ketamine_iv", "dose": 0.5, "dose_unit": "mg/kg",
                        "duration_min": 40.0, "phase": "induction"})
    return Cohort(subjects=subj, assessments=pd.DataFrame(rows), infusions=inf,
                  clinical_events=clinical, metadata={"primary_scale": "MADRS"})


def _row(tab, sid):
    return tab.set_index("subject_id").loc[sid]


def test_derive_loss_of_response_two_consecutive():
    # baseline 30; response at day 7 (15 = 50%); 16 at day 14 alone is not relapse;
    # 16, 18 at days 28, 35 are two consecutive non-responses -> relapse dated day 28
    c = _cohort({"A": [30, 15, 16, 12, 16, 18, 20]})
    t = du.derive(c, relapse_rule="a")
    r = _row(t, "A")
    assert r["origin_day"] == 7 and r["event"] == 1 and r["time"] == 21
    assert r["relapse_by"] == "a" and r["censor_reason"] is None and r["status"] == 1
    t2 = du.derive(c, relapse_rule="a", relapse_day="confirmation")
    assert _row(t2, "A")["time"] == 28


def test_derive_intermittent_missing_visits_are_skipped():
    # day 21 missing (NaN) and day 35 absent: 16 (day 14) and 17 (day 28) are consecutive
    # non-missing assessments -> relapse at day 14
    c = _cohort({"A": [30, 14, 16, np.nan, 17]}, days={"A": [-0.04, 7, 14, 21, 28]})
    r = _row(du.derive(c, relapse_rule="a"), "A")
    assert r["event"] == 1 and r["event_day"] == 14 and r["time"] == 7


def test_derive_unconfirmed_worsening_at_last_assessment():
    c = _cohort({"A": [30, 12, 13, 20]})
    censored = _row(du.derive(c, relapse_rule="a"), "A")
    assert censored["event"] == 0 and censored["time"] == 14
    assert censored["censor_reason"] == "end_of_follow_up"
    assert bool(censored["unconfirmed_worsening"])
    counted = _row(du.derive(c, relapse_rule="a", unconfirmed_last="count"), "A")
    assert counted["event"] == 1 and counted["event_day"] == 21


def test_derive_threshold_rule_needs_5_to_15_days():
    # scores >= 22 at days 9 and 11 (2 days apart: too close), 11 and 18 (7 days) confirm
    days = [-0.04, 2, 9, 11, 18, 30]
    c = _cohort({"A": [34, 10, 23, 24, 25, 26], "B": [34, 10, 23, 12, 25, 11],
                 "C": [34, 10, 23, 12, 12, 40]}, days={k: days for k in "ABC"})
    t = du.derive(c, relapse_rule="b", origin="first_response")
    assert _row(t, "A")["event_day"] == 9  # 9 -> 18 is 9 days apart, all >= 22
    assert _row(t, "B")["event"] == 0  # never two in a row
    c_row = _row(t, "C")  # worsening at 30 is the last one: censored, flagged
    assert c_row["event"] == 0 and bool(c_row["unconfirmed_worsening"])
    days_far = [-0.04, 2, 9, 30]
    far = _cohort({"D": [34, 10, 23, 24]}, days={"D": days_far})
    d_row = _row(du.derive(far, relapse_rule="b"), "D")  # 21 days apart: > 15, not confirmed
    assert d_row["event"] == 0


def test_derive_clinical_events_rule_c_and_combination():
    clinical = pd.DataFrame({"subject_id": ["A", "A", "B"], "day": [3.0, 17.0, 30.0],
                             "event": ["hospitalisation", "hospitalisation", "other"]})
    c = _cohort({"A": [30, 12, 12, 12, 25, 25], "B": [30, 12, 12, 12, 12, 12]},
                clinical=clinical)
    t = du.derive(c, relapse_rule="b+c")
    a = _row(t, "A")  # event at day 3 is before response (day 7); day 17 counts
    assert a["event"] == 1 and a["event_day"] == 17 and a["relapse_by"] == "c"
    assert _row(t, "B")["event"] == 0  # "other" is not a default relapse event
    t_other = du.derive(c, relapse_rule="c", clinical_event_types=("other",))
    assert _row(t_other, "B")["event_day"] == 30
    no_table = _cohort({"A": [30, 12]})
    with pytest.raises(ConfigurationError, match="clinical_events"):
        du.derive(no_table, relapse_rule="c")


def test_derive_excludes_never_responders_baseline_zero_and_no_post_baseline():
    c = _cohort({"NR": [30, 20, 25, 22], "Z": [0, 0, 0], "NB": [30], "OK": [30, 10, 11]})
    t = du.derive(c, relapse_rule="a")
    assert t["subject_id"].tolist() == ["OK"]
    reasons = t.attrs["excluded"].set_index("subject_id")["reason"].to_dict()
    assert reasons == {"NR": "never_responded", "Z": "baseline_zero",
                       "NB": "no_post_baseline_data"}


def test_derive_censor_reasons():
    c = _cohort(
        {"DROP": [30, 10, 11], "MISS": [30, 10, 11, np.nan], "END": [30, 10, 11, 12]},
        subjects={"DROP": {"disposition": "dropped_out", "dropout_day": 16.0}},
    )
    t = du.derive(c, relapse_rule="a")
    assert _row(t, "DROP")["censor_reason"] == "dropout" and _row(t, "DROP")["status"] == 2
    assert _row(t, "MISS")["censor_reason"] == "last_assessment"
    assert _row(t, "END")["censor_reason"] == "end_of_follow_up"
    assert _row(t, "END")["time"] == 14
    capped = du.derive(c, relapse_rule="a", follow_up_days=7)
    assert _row(capped, "END")["time"] == 7
    assert _row(capped, "END")["censor_reason"] == "end_of_follow_up"


def test_derive_randomization_origin_and_no_follow_up():
    c = _cohort({"A": [30, 10, 10, 25, 26], "B": [30, 10, 10], "C": [30, 25, 26]},
                randomization={"A": 14.0, "B": 14.0})
    t = du.derive(c, relapse_rule="a")  # auto -> randomization
    assert t.attrs["origin"] == "randomization"
    assert _row(t, "A")["time"] == 7 and _row(t, "A")["event"] == 1
    b = _row(t, "B")
    assert b["time"] == 0 and b["censor_reason"] == "no_follow_up"
    assert t.attrs["excluded"]["reason"].tolist() == ["not_randomised"]


def test_derive_last_induction_origin():
    c = _cohort({"A": [30, 12, 20, 20], "B": [30, 25, 10, 20]},
                days={"A": [-0.04, 1, 8, 15], "B": [-0.04, 1, 8, 15]})
    c.infusions = pd.concat([c.infusions, c.infusions.assign(infusion_number=2, day=0.5)])
    t = du.derive(c, relapse_rule="a", origin="last_induction")
    a = _row(t, "A")  # in response 24 h after the last infusion; relapse at day 8
    assert a["origin_day"] == 0.5 and a["time"] == 7.5
    assert t.attrs["excluded"]["reason"].tolist() == ["not_in_response_at_origin"]


def test_derive_output_columns_on_bundled_maintenance_cohort():
    import kanalysis as ka

    path = Path(__file__).parents[1] / "data" / "synthetic" / "maintenance"
    t = du.derive(ka.load_cohort(path), scale="MADRS", relapse_rule="b+c")
    assert list(t.columns[:5]) == ["subject_id", "arm", "time", "event", "censor_reason"]
    assert set(t["arm"]) == {"maintenance", "no_maintenance"}
    assert set(t["event"]) <= {0, 1} and (t["time"] >= 0).all()
    assert t.loc[t["event"] == 1, "censor_reason"].isna().all()
    assert t.loc[t["event"] == 0, "censor_reason"].notna().all()
    assert t["subject_id"].is_unique


def test_derive_rejects_unknown_rule_and_options():
    c = _cohort({"A": [30, 10, 11]})
    with pytest.raises(ConfigurationError, match="Unknown relapse rule"):
        du.derive(c, relapse_rule="z")
    with pytest.raises(ConfigurationError, match="unconfirmed_last"):
        du.derive(c, unconfirmed_last="ignore")
    with pytest.raises(DataValidationError, match="randomization_day"):
        du.derive(c, origin="randomization")


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_stratified_cox_and_zph_match_r(ties):
    ref = REF["cox_strata"]["alda_rearrest"][ties]
    d = DATASETS["alda_rearrest"][0]()
    fit = du.cox(d, "person_crime + age", strata="property_crime", ties=ties)
    for col in ("coef", "se", "hr", "lower", "upper", "p"):
        np.testing.assert_allclose(fit.coef_table[col], _arr(ref[col]), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(fit.ph_test()["chisq"], _arr(ref["zph_chisq"]), rtol=1e-4)


def test_rmst_difference_uses_control_arm_and_explicit_reference():
    d = DATASETS["synthetic_maintenance"][0]()
    out = du.rmst(d, 56)
    assert out.index[-1] == "maintenance - no_maintenance"
    flipped = du.rmst(d, 56, reference="maintenance")
    assert flipped.index[-1] == "no_maintenance - maintenance"
    assert flipped["estimate"].iloc[-1] == pytest.approx(-out["estimate"].iloc[-1])
    with pytest.raises(ConfigurationError, match="tau"):
        du.rmst(d, 0)


# ------------------------------------------------------------------------------------------
# bad input: clear errors naming the problem, never a numpy traceback
# ------------------------------------------------------------------------------------------
_TWO_ARMS = pd.DataFrame({"time": [2, 3, 3, 5, 8, 9, 11, 12, 4, 6, 7, 10],
                          "event": [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1],
                          "arm": ["placebo"] * 6 + ["ketamine"] * 6,
                          "age": [30, 41, 52, 38, 45, 60, 33, 47, 50, 29, 44, 58]})


def test_cox_on_one_arm_names_the_dropped_term():
    one = _TWO_ARMS[_TWO_ARMS["arm"] == "placebo"]
    with pytest.raises(DataValidationError, match="'arm'.*single level"):
        du.cox(one, "arm")
    with pytest.raises(DataValidationError, match="contr.treatment.*single level"):
        du.cox(one, "C(arm, contr.treatment('placebo')) + age")
    with pytest.raises(DataValidationError, match="constant"):
        du.cox(_TWO_ARMS.assign(age=40), "arm + age")


def test_cox_complete_separation_warns_and_reports_nan():
    sep = _TWO_ARMS.assign(event=np.where(_TWO_ARMS["arm"] == "placebo", 0, 1))
    with pytest.warns(StatisticalWarning, match="infinite"):
        fit = du.cox(sep, "arm + age")
    frame = fit.to_frame().set_index("term")
    arm_row = frame.loc[[t for t in frame.index if "arm" in t][0]]
    assert np.isnan(arm_row["hr"]) and np.isnan(arm_row["estimate"])
    assert np.isfinite(frame.loc["age", "hr"])  # the other term is still reported


@pytest.mark.parametrize("func", [
    lambda d: du.kaplan_meier(d),
    lambda d: du.cox(d, "arm"),
    lambda d: du.logrank(d),
    lambda d: du.rmst(d, 5),
    lambda d: du.cumulative_incidence(d.assign(status=d["event"])),
])
def test_empty_table_is_a_clear_error(func):
    with pytest.raises(DataValidationError, match="no rows|no events|one level|0 level"):
        func(_TWO_ARMS.iloc[:0])


def test_all_censored_is_a_clear_error_where_it_matters():
    cens = _TWO_ARMS.assign(event=0)
    with pytest.raises(DataValidationError, match="no events"):
        du.cox(cens, "arm")
    with pytest.raises(DataValidationError, match="no events"):
        du.logrank(cens)
    km = du.kaplan_meier(cens)  # estimable: flat curves, no median
    assert km.median()["estimate"].isna().all()
    assert (km.to_frame()["estimate"] == 1).all()
