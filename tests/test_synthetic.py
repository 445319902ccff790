"""The generator: valid cohorts, byte-identical regeneration, and properties close to the truth."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest

from kanalysis import synthetic
from kanalysis.errors import ConfigurationError


@pytest.mark.parametrize("design", synthetic.DESIGNS)
def test_bundled_cohort_regenerates_byte_for_byte(design, synthetic_dir, tmp_path):
    truth = json.loads((synthetic_dir / design / "truth.json").read_text())
    cohort = synthetic.generate(design, n_subjects=truth["n_subjects"], seed=truth["seed"])
    out = synthetic.write(cohort, tmp_path / design)
    committed = sorted(p.name for p in (synthetic_dir / design).iterdir())
    assert sorted(p.name for p in out.iterdir()) == committed
    match, mismatch, errors = filecmp.cmpfiles(synthetic_dir / design, out, committed,
                                               shallow=False)
    assert mismatch == [] and errors == [], f"regenerated files differ: {mismatch + errors}"


@pytest.mark.parametrize("design", synthetic.DESIGNS)
def test_generated_cohorts_validate_and_round_trip(design, tmp_path):
    import kanalysis as ka

    cohort = synthetic.generate(design, n_subjects=40, seed=7)
    assert cohort.validate().ok
    for fmt in ("csv", "parquet"):
        loaded = ka.load_cohort(synthetic.write(cohort, tmp_path / fmt, format=fmt))
        assert loaded.truth == json.loads(json.dumps(cohort.truth))
        for name, table in cohort.tables.items():
            got = getattr(loaded, name)
            assert got.shape == table.shape, name
            num = table.select_dtypes("number").columns
            np.testing.assert_allclose(got[num].to_numpy(float), table[num].to_numpy(float),
                                       rtol=1e-9, err_msg=name)


def _relative_improvement(cohort, visit):
    a = cohort.assessments.merge(cohort.subjects[["subject_id", "arm"]], on="subject_id")
    base = a[a["visit"] == "baseline"].set_index("subject_id")["score"]
    at = a[a["visit"] == visit]
    return at.assign(imp=1 - at["score"] / at["subject_id"].map(base))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_single_design_response_at_24h_close_to_truth(seed):
    cohort = synthetic.generate("single", n_subjects=1200, seed=seed, include_vitals=False,
                                include_adverse_events=False)
    at = _relative_improvement(cohort, "24h")
    rate = at.groupby("arm")["imp"].apply(lambda s: (s >= 0.5).mean())
    for arm, p in cohort.truth["p_response"].items():
        se = np.sqrt(p * (1 - p) / (len(at) / 2))
        # Covariate effects and measurement noise move the observed rate a little off the
        # configured probability at the covariate means; 4 SE plus 0.04 bounds both.
        assert abs(rate[arm] - p) < 4 * se + 0.04, (arm, rate[arm], p)
    assert rate["ketamine"] - rate["midazolam"] > 0.15


def test_single_design_effect_peaks_at_24h_and_fades_by_day_14():
    cohort = synthetic.generate("single", n_subjects=1500, seed=5, include_vitals=False,
                                include_adverse_events=False)
    ket = {v: _relative_improvement(cohort, v).query("arm == 'ketamine'")["imp"].mean()
           for v in ("40min", "24h", "day7", "day14")}
    assert ket["24h"] > ket["40min"] and ket["24h"] > ket["day7"] > ket["day14"]


@pytest.mark.parametrize("design", ["single", "serial", "clinic"])
def test_dropout_rate_close_to_truth(design):
    rates = []
    for seed in (1, 2, 3):
        c = synthetic.generate(design, n_subjects=1000, seed=seed, include_vitals=False,
                               include_adverse_events=False)
        rates.append((c.subjects["disposition"] == "dropped_out").mean())
    target = c.truth["dropout_rate"]
    assert abs(np.mean(rates) - target) < 0.05, (rates, target)


def test_mar_dropout_follows_worse_observed_scores():
    c = synthetic.generate("serial", n_subjects=3000, seed=9, include_vitals=False,
                           include_adverse_events=False)
    a = c.assessments
    base = a[a["visit"] == "baseline"].set_index("subject_id")["score"]
    a = a.assign(rel=a["score"] / a["subject_id"].map(base))
    last_visit = a.groupby("subject_id")["visit_number"].max()
    dropped = c.subjects.set_index("subject_id")["disposition"].eq("dropped_out")
    seen = a[a["visit_number"].between(1, 10)].copy()
    # Leaves after this visit: dropped out and this was the last visit attended.
    seen["leaves"] = (seen["subject_id"].map(dropped)
                      & (seen["subject_id"].map(last_visit) == seen["visit_number"]))
    assert seen["leaves"].sum() > 50
    # Those who leave had improved less at their last visit than those who stay.
    means = seen.groupby("leaves")["rel"].mean()
    assert means[True] > means[False] + 0.05, means
    assert c.truth["dropout_mechanism"] == "MAR"
    assert synthetic.generate("serial", n_subjects=50, seed=9, mnar=True,
                              include_vitals=False).truth["dropout_mechanism"] == "MNAR"


def _loss_of_response_day(cohort, last_infusion_day):
    """Day of the first post-course visit with < 50% improvement, among end-of-course responders."""
    a = cohort.assessments
    base = a[a["visit"] == "baseline"].set_index("subject_id")["score"]
    a = a.assign(imp=1 - a["score"] / a["subject_id"].map(base))
    end = a[a["visit"] == "day12"].set_index("subject_id")["imp"]
    responders = end[end >= 0.5].index
    post = a[(a["day"] > 12) & a["subject_id"].isin(responders)]
    lost = post[post["imp"] < 0.5].groupby("subject_id")["day"].min() - last_infusion_day
    return lost, responders


def test_serial_relapse_median_close_to_truth():
    from lifelines import KaplanMeierFitter

    cohort = synthetic.generate("serial", n_subjects=1500, seed=21, dropout_rate=0.0,
                                include_vitals=False, include_adverse_events=False)
    lost, responders = _loss_of_response_day(cohort, 11.0)
    time = lost.reindex(responders).fillna(12 * 7.0)
    event = lost.reindex(responders).notna()
    median = KaplanMeierFitter().fit(time, event).median_survival_time_
    truth = cohort.truth["relapse_median_days"]
    # Weekly visits detect relapse up to a week late (plus a two-day decline).
    assert truth <= median <= truth + 9, (median, truth)
    # The latent (continuous-time) relapse days have the configured median.
    latent = np.array([np.nan if d is None else d for d in cohort.truth["latent"]["relapse_day"]])
    assert abs(np.nanmedian(latent - 11.0) - truth) < 2.0
    assert np.isnan(latent[~np.array(cohort.truth["latent"]["responder"])]).all()


def test_maintenance_lengthens_time_to_relapse():
    from lifelines import CoxPHFitter

    c = synthetic.generate("maintenance", n_subjects=2000, seed=4, dropout_rate=0.0,
                           include_vitals=False, include_adverse_events=False)
    a = c.assessments.merge(c.subjects[["subject_id", "arm"]], on="subject_id")
    base = a[a["visit"] == "baseline"].set_index("subject_id")["score"]
    a = a.assign(imp=1 - a["score"] / a["subject_id"].map(base))
    rand = a[a["arm"] != "not_randomised"]
    post = rand[rand["day"] > 14]
    lost = post[post["imp"] < 0.5].groupby("subject_id")["day"].min() - 14
    ids = rand["subject_id"].unique()
    df = c.subjects.set_index("subject_id").loc[ids, ["arm"]]
    df["time"] = lost.reindex(ids).fillna(16 * 7.0).to_numpy()
    df["event"] = lost.reindex(ids).notna().astype(int).to_numpy()
    df["maint"] = (df.pop("arm") == "maintenance").astype(int)
    hr = float(np.exp(CoxPHFitter().fit(df, "time", "event").params_["maint"]))
    # Weekly (interval-censored) detection biases the HR towards 1 a little.
    assert 0.25 < hr < 0.6, hr
    assert c.truth["maintenance_hr"] == 0.4


def test_safety_tables_follow_the_published_time_course(cohort_serial):
    v = cohort_serial.vitals
    sbp = v.groupby("minute")["sbp"].mean()
    assert sbp.idxmax() in (30.0, 40.0)
    assert abs(sbp.loc[120.0] - sbp.loc[0.0]) < 3
    cadss = v.dropna(subset=["cadss"]).groupby(["infusion_number", "minute"])["cadss"].mean()
    assert cadss.loc[(1, 40.0)] > cadss.loc[(1, 120.0)]
    assert cadss.loc[(1, 40.0)] > cadss.loc[(4, 40.0)]  # dissociation lessens after infusion 1
    assert set(cohort_serial.adverse_events["term"]) >= {"nausea", "dizziness", "headache"}


def test_bad_arguments_are_rejected():
    with pytest.raises(ConfigurationError, match="design must be one of"):
        synthetic.generate("weekly")
    with pytest.raises(ConfigurationError, match="n_subjects"):
        synthetic.generate("single", n_subjects=1)
    with pytest.raises(ConfigurationError, match="dropout_rate"):
        synthetic.generate("single", dropout_rate=1.2)
