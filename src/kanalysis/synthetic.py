"""Synthetic ketamine cohorts from a documented generative model with known truth.

Every test and notebook needs realistic data whose true parameters are known. :func:`generate`
draws a cohort for one of four designs and returns a :class:`~kanalysis.cohort.Cohort` whose
``truth`` holds the parameters used; :func:`write` saves it (``truth.json`` beside the tables).
The same seed gives the same bytes.

Generative model (per subject *i*; [D] marks a generator assumption built on the cited anchors,
see ``../shared/research/ketamine_params.md`` in the project's research notes)

- Covariates: age, sex, failed antidepressant trials (>= 2, TRD definition, Fava et al. 2020),
  episode duration, anxious distress, BMI, family history of alcohol use disorder.
- Baseline severity ``B_i``: MADRS ~ N(33, 5.5) truncated to >= 22 (TRANSFORM pooled 36.7-37.7,
  Shiroma 2020 34.9); PHQ-9 ~ N(19, 4) truncated to >= 10 for the clinic design.
- Latent responder class ``R_i ~ Bernoulli(expit(eta_i))`` with
  ``eta_i = logit(p_arm) + 0.2 (BMI - 29) / 5 + log(1.7) FH_i - 0.1 (failed_i - 3.5)
  + 0.03 (CADSS40_i - 8)``: BMI and family history (Niciu et al. 2014), failed trials (Price et al.
  2022 [S]), dissociation (Luckenbaugh et al. 2014) [D]. ``p_arm`` is the response probability at
  the covariate means: 0.52 at 24 h after one ketamine infusion (Han et al. 2016), 0.26 after
  midazolam (Dean et al. 2021, Cochrane).
- Size of response ``F_i``: responders Beta(mean 0.68, sd 0.08), others Beta(mean 0.15, sd 0.09)
  (bimodal response, ketamine_params section 1b) [D].
- Speed: single infusion, fraction of the 24-h effect reached at 40 min / 4 h = 0.45 / 0.95
  (MADRS 33 -> 25 -> 17, Murrough et al. 2013); serial infusions, ``1 - exp(-k / kappa_i)`` after
  infusion ``k`` with kappa_i log-normal (median 0.6): about 40% respond after one infusion, 60% or
  more after three, 65% after six (Phillips et al. 2019; Murrough et al. 2013 Biol Psychiatry).
- Durability ``D_i``: days from the last infusion until relapse. Single infusion: log-normal with
  median 10 days (superiority over placebo lost by days 10-12, Kishimoto et al. 2016); serial course:
  Weibull with median 18 days (Murrough et al. 2013 Biol Psychiatry); clinic: Weibull with
  S(28) = 0.8 and S(56) = 0.6 (McInnes et al. 2022); maintenance infusions multiply the relapse
  hazard by ``maintenance_hr`` = 0.4 (SUSTAIN-1 HR 0.30-0.49, Daly et al. 2019; a cross-drug
  extrapolation). At relapse the improvement falls to ``0.15 * B_i`` over two days.
- Observation: ``score = B_i (1 - F_i a_i(t)) + e``, e ~ N(0, 2.5), rounded and clipped to the scale.
- Dropout: discrete hazard per scheduled visit, calibrated to the design's dropout rate; MAR (the
  hazard rises with the last observed score) or, with ``mnar=True``, MNAR (with the current,
  unobserved score). Intermittent missed visits with probability 0.04 (clinic 0.10).
- Within-infusion vitals: SBP rise peaking at 40 min, mean +12 (SD 10) mmHg, back to baseline by
  120 min (Yale 2024 +16.0; Riva-Posse 2018 +3.3); DBP rise 0.7 x SBP rise; CADSS at 40 min from a
  zero-inflated log-normal with mean about 8 (van Schalkwyk et al. 2018), attenuated by 0.7 after
  the first infusion (Singh et al. 2016; Rodrigues et al. 2020), near 0 by 120 min.
- Adverse events per ketamine infusion: nausea 0.13 (Rodrigues et al. 2020), dizziness 0.20,
  drowsiness 0.25, headache 0.10, vomiting 0.03, anxiety 0.05; dissociation when CADSS > 20;
  hypertension when SBP > 165 mmHg (Rodrigues et al. 2020 threshold) [D].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from kanalysis.cohort import Cohort
from kanalysis.errors import ConfigurationError

__all__ = ["DESIGNS", "DEFAULT_SIZES", "check_arguments", "estimate_memory", "generate", "write"]

DESIGNS = ("single", "serial", "maintenance", "clinic")
DEFAULT_SIZES = {"single": 120, "serial": 120, "maintenance": 200, "clinic": 150}
DEFAULT_SEED = 20261126

HOUR = 1.0 / 24.0
_VITAL_MINUTES = np.array([0, 10, 20, 30, 40, 60, 80, 100, 120], dtype=float)
_CADSS_MINUTES = {0.0: 0.0, 40.0: 1.0, 80.0: 0.25, 120.0: 0.02}
_AE_RATES = {  # per ketamine infusion, per placebo infusion
    "nausea": (0.13, 0.04), "dizziness": (0.20, 0.07), "drowsiness": (0.25, 0.15),
    "headache": (0.10, 0.07), "vomiting": (0.03, 0.01), "anxiety": (0.05, 0.04),
}


@dataclass(frozen=True)
class _Design:
    scale: str
    arms: tuple[str, ...]
    p_response: dict[str, float]
    dropout_rate: float
    missed_visit_rate: float = 0.04


_DESIGN_SETTINGS = {
    "single": _Design("MADRS", ("ketamine", "midazolam"),
                      {"ketamine": 0.52, "midazolam": 0.26}, dropout_rate=0.08),
    "serial": _Design("MADRS", ("ketamine",), {"ketamine": 0.65}, dropout_rate=0.15),
    "maintenance": _Design("MADRS", ("maintenance", "no_maintenance"),
                           {"induction": 0.65}, dropout_rate=0.10),
    "clinic": _Design("PHQ9", ("ketamine",), {"ketamine": 0.50}, dropout_rate=0.40,
                      missed_visit_rate=0.10),
}


# Bytes of the cohort tables per subject (measured with DataFrame.memory_usage(deep=True) on
# generated cohorts) and the peak-to-tables ratio of generating, validating and writing them.
_BYTES_PER_SUBJECT = {"single": 3_200, "serial": 12_700, "maintenance": 16_400, "clinic": 13_600}
_PEAK_FACTOR = 4.0
MAX_SEED = 2**63 - 1


def estimate_memory(design: str, n_subjects: int) -> int:
    """Peak memory (bytes) that :func:`generate` plus validation and saving need, roughly.

    The per-subject table sizes were measured on generated cohorts; the peak is taken as
    ``4 x`` the tables (copies made by validation and the CSV writer).
    """
    if design not in DESIGNS:
        raise ConfigurationError(f"design must be one of {', '.join(DESIGNS)}; got {design!r}.")
    return int(_BYTES_PER_SUBJECT[design] * _PEAK_FACTOR * int(n_subjects))


def _available_memory() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.0f} MiB"


def check_arguments(design: str, *, n_subjects: int | None = None, seed: int = DEFAULT_SEED,
                    available: int | None = None) -> None:
    """Refuse, before any work, arguments :func:`generate` cannot honour.

    Checks the design, that ``n_subjects`` is a whole number >= 2 whose cohort fits in memory
    (estimate from :func:`estimate_memory` against the machine's available memory, or
    ``available`` bytes), and that ``seed`` is a whole number in ``[0, 2**63)``.

    Raises
    ------
    ConfigurationError
        With the estimate and the memory available when the cohort would not fit.
    """
    if design not in DESIGNS:
        raise ConfigurationError(f"design must be one of {', '.join(DESIGNS)}; got {design!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigurationError(f"seed must be a whole number >= 0, got {seed!r}.")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ConfigurationError(f"seed must be a whole number between 0 and 2**63 - 1, got {seed}.")
    if n_subjects is None:
        return
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)):
        raise ConfigurationError(f"n_subjects must be a whole number >= 2, got {n_subjects!r}.")
    if n_subjects < 2:
        raise ConfigurationError(f"n_subjects must be at least 2, got {n_subjects}.")
    need = estimate_memory(design, n_subjects)
    have = _available_memory() if available is None else available
    if have is not None and need > 0.8 * have:
        raise ConfigurationError(
            f"n_subjects = {n_subjects:,} would need about {_gib(need)} of memory for the {design} "
            f"design ({_BYTES_PER_SUBJECT[design] * _PEAK_FACTOR / 1000:.0f} kB per subject), but "
            f"only {_gib(have)} is available; generate fewer subjects (at most about "
            f"{int(0.8 * have / (_BYTES_PER_SUBJECT[design] * _PEAK_FACTOR)):,})."
        )


def generate(
    design: str = "single",
    n_subjects: int | None = None,
    seed: int = DEFAULT_SEED,
    *,
    mnar: bool = False,
    maintenance_hr: float = 0.4,
    relapse_median_days: float | None = None,
    p_response: dict[str, float] | None = None,
    dropout_rate: float | None = None,
    include_vitals: bool = True,
    include_adverse_events: bool = True,
) -> Cohort:
    """Draw a synthetic ketamine cohort with known generating parameters.

    Parameters
    ----------
    design : {"single", "serial", "maintenance", "clinic"}
        ``single``: one 0.5 mg/kg 40-min IV infusion vs active placebo (midazolam 0.045 mg/kg),
        MADRS at baseline, 40 min, 4 h, 24 h, days 3, 7, 14. ``serial``: six infusions over 12 days
        (days 0, 2, 4, 7, 9, 11), MADRS before each infusion, 24 h after the last and weekly for 12
        weeks. ``maintenance``: the serial induction; responders at day 14 are randomised to weekly
        maintenance infusions or none and followed weekly for 16 weeks. ``clinic``: a community
        registry with PHQ-9 at every infusion, irregular days, heavy dropout, boosters on demand.
    n_subjects : int, optional
        Number of subjects; default ``DEFAULT_SIZES[design]``.
    seed : int
        Seed of the random generator: the same seed gives the same cohort.
    mnar : bool, default False
        Dropout depends on the current (unobserved) score instead of the last observed one.
    maintenance_hr : float, default 0.4
        Relapse hazard ratio of maintenance infusions (SUSTAIN-1: 0.30-0.49).
    relapse_median_days : float, optional
        Median days from the last induction infusion to relapse in responders without maintenance
        (default 10 for ``single``, 18 for ``serial`` and ``maintenance``, 98 for ``clinic``).
    p_response : dict, optional
        Responder probability by arm at the covariate means (design defaults in the module notes).
    dropout_rate : float, optional
        Target share of subjects who drop out before the end of follow-up.
    include_vitals, include_adverse_events : bool, default True
        Generate the optional safety tables (turn off for fast simulation studies).

    Returns
    -------
    Cohort
        With ``cohort.truth`` holding the generating parameters.

    Examples
    --------
    >>> from kanalysis import synthetic
    >>> cohort = synthetic.generate("single", n_subjects=60, seed=1)
    >>> sorted(cohort.subjects["arm"].unique())
    ['ketamine', 'midazolam']
    """
    check_arguments(design, n_subjects=n_subjects, seed=seed)
    n = DEFAULT_SIZES[design] if n_subjects is None else int(n_subjects)
    if not 0 < maintenance_hr <= 5:
        raise ConfigurationError(f"maintenance_hr must lie in (0, 5], got {maintenance_hr}.")
    settings = _DESIGN_SETTINGS[design]
    p_resp = dict(settings.p_response, **(p_response or {}))
    drop = settings.dropout_rate if dropout_rate is None else float(dropout_rate)
    if not 0 <= drop < 1:
        raise ConfigurationError(f"dropout_rate must lie in [0, 1), got {dropout_rate}.")
    default_median = {"single": 10.0, "serial": 18.0, "maintenance": 18.0, "clinic": 98.0}
    median = default_median[design] if relapse_median_days is None else float(relapse_median_days)

    rng = np.random.default_rng([seed, DESIGNS.index(design)])
    gen = _Generator(design, n, rng, settings, p_resp, drop, mnar, maintenance_hr, median)
    cohort = gen.run(include_vitals, include_adverse_events)
    cohort.truth = {
        "design": design, "n_subjects": n, "seed": seed, "scale": settings.scale,
        "p_response": p_resp, "dropout_rate": drop, "dropout_mechanism": "MNAR" if mnar else "MAR",
        "relapse_median_days": median, "relapse_weibull_shape": gen.weibull_shape,
        "maintenance_hr": maintenance_hr if design == "maintenance" else None,
        "residual_sd": gen.residual_sd, "response_fraction_mean": {"responder": 0.68,
                                                                   "non_responder": 0.15},
        "covariate_logit_effects": {"bmi_per_5": 0.2, "family_history_aud": float(np.log(1.7)),
                                    "failed_trial": -0.1, "cadss40_per_point": 0.03},
        "sbp_rise_mean": 12.0, "cadss_peak_mean": 8.0, "cadss_attenuation": 0.7,
        "ae_rates_per_infusion": {k: v[0] for k, v in _AE_RATES.items()},
        "generator_version": 1,
        # Per-subject latent values, for checking derivations and estimators against the truth.
        "latent": gen.latent_table(),
    }
    return cohort


def write(cohort: Cohort, out: str | os.PathLike, format: str = "csv") -> Path:
    """Save a generated cohort (tables, ``metadata.json``, ``truth.json``) atomically."""
    return cohort.save(out, format=format)


class _Generator:
    residual_sd = 2.5

    def __init__(self, design, n, rng, settings, p_resp, drop, mnar, hr, median):
        self.design, self.n, self.rng, self.s = design, n, rng, settings
        self.p_resp, self.drop, self.mnar, self.hr = p_resp, drop, mnar, hr
        self.median = median
        self.weibull_shape = 1.2 if design in ("serial", "maintenance") else (
            1.195 if design == "clinic" else None)
        self.ids = np.array([f"S{i + 1:04d}" for i in range(n)])

    # ---- subjects -------------------------------------------------------------------------
    def subjects(self) -> pd.DataFrame:
        rng, n = self.rng, self.n
        arms = self.s.arms
        if self.design == "single":
            arm = np.where(rng.permutation(n) % 2 == 0, arms[0], arms[1])
        else:
            arm = np.full(n, arms[0], dtype=object)
        age = np.clip(rng.normal(45, 12, n), 18, 80).round(0)
        return pd.DataFrame({
            "subject_id": self.ids,
            "arm": arm.astype(object),
            "site": np.array([f"site_{k}" for k in rng.integers(1, 4, n)], dtype=object),
            "age": age,
            "sex": np.where(rng.random(n) < 0.55, "F", "M").astype(object),
            "n_failed_trials": 2 + rng.poisson(1.5, n),
            "episode_duration_months": np.round(rng.lognormal(np.log(24), 0.8, n), 1),
            "anxious_distress": (rng.random(n) < 0.5).astype(int),
            "bmi": np.round(np.clip(rng.normal(29, 6, n), 16, 60), 1),
            "family_history_aud": (rng.random(n) < 0.3).astype(int),
        })

    def latent(self, subj: pd.DataFrame) -> dict[str, np.ndarray]:
        rng, n = self.rng, self.n
        if self.s.scale == "MADRS":
            base = np.clip(rng.normal(33, 5.5, n), 22, 55)
        else:
            base = np.clip(rng.normal(19, 4, n), 10, 27)
        ketamine = ~subj["arm"].isin(["midazolam"]).to_numpy()
        # Dissociation susceptibility: CADSS at 40 min on the first infusion, zero-inflated
        # log-normal with mean about 8 and SD about 9 (van Schalkwyk et al. 2018).
        dissociates = rng.random(n) < 0.85
        cadss40 = np.where(dissociates, rng.lognormal(np.log(7.0), 0.8, n), 0.0)
        cadss40 = np.where(ketamine, cadss40, rng.lognormal(np.log(0.8), 0.6, n) * dissociates)
        cadss40 = np.clip(cadss40, 0, 80)
        key = {"maintenance": "induction"}.get(self.design)
        p = np.array([self.p_resp[key or a] for a in subj["arm"]])
        eta = (logit(p) + 0.2 * (subj["bmi"].to_numpy() - 29) / 5
               + np.log(1.7) * subj["family_history_aud"].to_numpy()
               - 0.1 * (subj["n_failed_trials"].to_numpy() - 3.5)
               + 0.03 * (cadss40 - 8) * ketamine)
        responder = rng.random(n) < expit(eta)
        frac = np.where(responder, _beta(rng, 0.68, 0.08, n), _beta(rng, 0.15, 0.09, n))
        kappa = rng.lognormal(np.log(0.6), 0.5, n)
        sbp0 = np.clip(rng.normal(122 + 0.3 * (subj["age"].to_numpy() - 45), 13, n), 95, 175)
        return {"base": base, "responder": responder, "frac": frac, "kappa": kappa,
                "cadss40": cadss40, "ketamine": ketamine, "sbp0": sbp0,
                "dbp0": np.clip(rng.normal(78, 8, n), 55, 105), "hr0": rng.normal(74, 9, n),
                "sbp_rise": rng.normal(12, 10, n) * (1 + 0.01 * (subj["age"].to_numpy() - 45))}

    def relapse_after(self, size: int) -> np.ndarray:
        """Days from the last infusion to relapse (no maintenance)."""
        if self.design == "single":
            return self.rng.lognormal(np.log(self.median), 0.6, size)
        k = self.weibull_shape
        scale = self.median / np.log(2) ** (1 / k)
        return scale * self.rng.weibull(k, size)

    def latent_table(self) -> dict[str, list]:
        """Per-subject latent values as JSON-ready columns (None where not applicable).

        ``relapse_day``: study day of the (first) relapse in continuous time, for subjects who
        responded by the end of the infusion course (after one infusion for ``single``); it may
        lie beyond follow-up or after dropout, where the recorded data censor it.
        """
        def column(values, digits):
            return [None if not np.isfinite(v) else round(float(v), digits) for v in values]

        return {
            "subject_id": self.ids.tolist(),
            "responder": [bool(v) for v in self._lat["responder"]],
            "response_fraction": column(self._lat["frac"], 4),
            "relapse_day": column(self._relapse_day, 3),
        }

    # ---- schedule ---------------------------------------------------------------------------
    def run(self, include_vitals: bool, include_ae: bool) -> Cohort:
        subj = self.subjects()
        lat = self._lat = self.latent(subj)
        builder = {"single": self._single, "serial": self._serial,
                   "maintenance": self._maintenance, "clinic": self._clinic}[self.design]
        visits, infusions, subj, clinical = builder(subj, lat)
        assessments, infusions, subj = self._observe(visits, infusions, subj, lat)
        vitals = self._vitals(infusions, lat) if include_vitals else None
        aes = self._adverse_events(infusions, vitals, lat) if include_ae else None
        if clinical is not None:
            clinical = clinical.merge(subj[["subject_id", "dropout_day"]], on="subject_id")
            clinical = clinical[clinical["dropout_day"].isna()
                                | (clinical["day"] <= clinical["dropout_day"])]
            clinical = clinical.drop(columns="dropout_day").reset_index(drop=True)
        meta = {"name": self.design, "design": self.design, "primary_scale": self.s.scale,
                "scales": [self.s.scale] + (["CADSS"] if include_vitals else []),
                "time_unit": "day", "source": "synthetic", "privacy": "none",
                "description": _DESCRIPTIONS[self.design]}
        return Cohort(subjects=subj, assessments=assessments, infusions=infusions, vitals=vitals,
                      adverse_events=aes, clinical_events=clinical, metadata=meta)

    def _single(self, subj, lat):
        days = np.array([-1 * HOUR, 40 / 1440, 4 * HOUR, 1.0, 3.0, 7.0, 14.0])
        labels = ["baseline", "40min", "4h", "24h", "day3", "day7", "day14"]
        # Fraction of the 24-h effect reached by each visit: 40 min and 4 h partial.
        onset = np.array([0.0, 0.45, 0.95, 1.0, 1.0, 1.0, 1.0])
        durability = self.relapse_after(self.n)
        self._relapse_day = np.where(lat["responder"], durability, np.nan)
        visits = []
        for j, (d, lab) in enumerate(zip(days, labels, strict=True)):
            effect = onset[j] * _loss_curve(d, 0.0 + durability, lat["responder"])
            visits.append((j, lab, np.full(self.n, d), effect))
        ket = lat["ketamine"]
        inf = pd.DataFrame({
            "subject_id": self.ids, "infusion_number": 1, "day": 0.0,
            "drug": np.where(ket, "ketamine_iv", "midazolam_iv").astype(object),
            "dose": np.where(ket, 0.5, 0.045), "dose_unit": "mg/kg", "duration_min": 40.0,
            "phase": "induction"})
        return visits, inf, subj, None

    def _induction(self, lat):
        inf_days = np.array([0.0, 2.0, 4.0, 7.0, 9.0, 11.0])
        visits = [(0, "baseline", np.full(self.n, -1 * HOUR), np.zeros(self.n))]
        for k in range(1, 6):  # before infusions 2..6: effect of k infusions
            a = 1 - np.exp(-k / lat["kappa"])
            visits.append((k, f"pre_inf{k + 1}", np.full(self.n, inf_days[k] - HOUR), a))
        a6 = 1 - np.exp(-6 / lat["kappa"])
        visits.append((6, "day12", np.full(self.n, 12.0), a6))
        return inf_days, visits, a6

    def _serial(self, subj, lat):
        inf_days, visits, a6 = self._induction(lat)
        resp_end = lat["responder"] & (lat["frac"] * a6 >= 0.5)
        relapse = 11.0 + self.relapse_after(self.n)
        self._relapse_day = np.where(resp_end, relapse, np.nan)
        clinical = self._clinical_events(resp_end, relapse)
        for w in range(1, 13):
            d = 11.0 + 7 * w
            visits.append((6 + w, f"week{w}_post", np.full(self.n, d),
                           a6 * _loss_curve(d, relapse, lat["responder"])))
        inf = _infusion_table(self.ids, inf_days, "induction")
        return visits, inf, subj, clinical

    def _maintenance(self, subj, lat):
        inf_days, visits, a6 = self._induction(lat)
        resp_end = lat["responder"] & (lat["frac"] * a6 >= 0.5)
        randomised = np.flatnonzero(resp_end)
        arm = np.full(self.n, "not_randomised", dtype=object)
        alloc = self.rng.permutation(len(randomised)) % 2 == 0
        arm[randomised[alloc]] = "maintenance"
        arm[randomised[~alloc]] = "no_maintenance"
        subj = subj.assign(arm=arm, randomization_day=np.where(resp_end, 14.0, np.nan))
        # Proportional hazards on the Weibull relapse time: S(t) = exp(-(t/lambda)^k * HR).
        k = self.weibull_shape
        lam = self.median / np.log(2) ** (1 / k)
        hr = np.where(arm == "maintenance", self.hr, 1.0)
        e = self.rng.exponential(1.0, self.n)
        relapse = 14.0 + lam * (e / hr) ** (1 / k)
        relapse = np.where(resp_end, relapse, 11.0 + self.relapse_after(self.n))
        self._relapse_day = np.where(resp_end, relapse, np.nan)
        clinical = self._clinical_events(resp_end, relapse)
        for w in range(1, 17):
            d = 14.0 + 7 * w
            eff = a6 * _loss_curve(d, relapse, lat["responder"])
            visits.append((6 + w, f"week{w}_rand", np.full(self.n, d), eff))
        inf = _infusion_table(self.ids, inf_days, "induction")
        # Weekly maintenance infusions until relapse (then treatment stops).
        rows = []
        for i in np.flatnonzero(arm == "maintenance"):
            for w in range(1, 17):
                d = 14.0 + 7 * w - 0.5
                if d >= relapse[i]:
                    break
                rows.append((self.ids[i], 6 + w, d))
        maint = pd.DataFrame(rows, columns=["subject_id", "infusion_number", "day"])
        maint = maint.assign(drug="ketamine_iv", dose=0.5, dose_unit="mg/kg", duration_min=40.0,
                             phase="maintenance")
        inf = pd.concat([inf, maint], ignore_index=True).sort_values(
            ["subject_id", "infusion_number"], ignore_index=True)
        # Non-randomised subjects leave after the induction assessment.
        self._end_of_follow_up = np.where(resp_end, 14.0 + 7 * 16, 14.0)
        return visits, inf, subj, clinical

    def _clinic(self, subj, lat):
        rng, n = self.rng, self.n
        gaps = rng.uniform(2, 5, (n, 5)).round(0)
        inf_days = np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1)
        visits = [(0, "baseline", np.full(n, -1 * HOUR), np.zeros(n))]
        for k in range(1, 6):
            a = 1 - np.exp(-k / lat["kappa"])
            visits.append((k, f"inf{k + 1}", inf_days[:, k] - HOUR, a))
        a6 = 1 - np.exp(-6 / lat["kappa"])
        end_ind = inf_days[:, 5]
        resp_end = lat["responder"] & (lat["frac"] * a6 >= 0.5)
        relapse = end_ind + self.relapse_after(n)
        self._relapse_day = np.where(resp_end, relapse, np.nan)
        # Boosters on demand: 60% of relapsing responders return within 3-10 days, which
        # restores the response for a new durability period.
        booster = resp_end & (rng.random(n) < 0.6)
        booster_day = relapse + rng.uniform(3, 10, n).round(0)
        second = booster_day + self.relapse_after(n)
        relapse_eff = np.where(booster, second, relapse)
        checkin = end_ind[:, None] + np.cumsum(rng.uniform(9, 19, (n, 10)).round(0), axis=1)
        for w in range(10):
            d = checkin[:, w]
            lost = _loss_curve(d, relapse, lat["responder"])
            back = booster & (d >= booster_day)
            eff = np.where(back, _loss_curve(d, relapse_eff, lat["responder"]), lost)
            visits.append((6 + w, f"checkin{w + 1}", d, a6 * eff))
        rows = []
        for i in range(n):
            for k in range(6):
                rows.append((self.ids[i], k + 1, inf_days[i, k], "induction"))
            if booster[i] and booster_day[i] < checkin[i, -1]:
                rows.append((self.ids[i], 7, booster_day[i], "maintenance"))
        inf = pd.DataFrame(rows, columns=["subject_id", "infusion_number", "day", "phase"])
        inf = inf.assign(drug="ketamine_iv", dose=0.5, dose_unit="mg/kg", duration_min=40.0)
        inf = inf[["subject_id", "infusion_number", "day", "drug", "dose", "dose_unit",
                   "duration_min", "phase"]]
        return visits, inf, subj, None

    def _clinical_events(self, at_risk, relapse):
        hosp = at_risk & (self.rng.random(self.n) < 0.08)
        if not hosp.any():
            return pd.DataFrame({"subject_id": pd.Series(dtype=object),
                                 "day": pd.Series(dtype=float), "event": pd.Series(dtype=object)})
        return pd.DataFrame({"subject_id": self.ids[hosp],
                             "day": np.round(relapse[hosp] + 1, 0),
                             "event": "hospitalisation"})

    # ---- observation, dropout ------------------------------------------------------------
    def _observe(self, visits, infusions, subj, lat):
        rng, n = self.rng, self.n
        n_vis = len(visits)
        days = np.column_stack([v[2] for v in visits])
        effect = np.column_stack([v[3] for v in visits])
        true_score = lat["base"][:, None] * (1 - lat["frac"][:, None] * effect)
        noise = rng.normal(0, self.residual_sd, (n, n_vis))
        noise[:, 0] = 0.0  # baseline is B_i itself
        scale_max = 60 if self.s.scale == "MADRS" else 27
        score = np.clip(np.round(true_score + noise), 0, scale_max)
        end = getattr(self, "_end_of_follow_up", None)
        scheduled = np.ones((n, n_vis), dtype=bool)
        if end is not None:
            scheduled = days <= end[:, None] + 1e-9
        # Dropout: a discrete hazard before each scheduled post-baseline visit after the first,
        # calibrated so that the share dropping out is about `dropout_rate` (MAR: driven by the
        # last observed relative score; MNAR: by the current one).
        n_slots = np.maximum(scheduled[:, 2:].sum(axis=1), 1)
        h0 = 1 - (1 - self.drop) ** (1 / n_slots)
        rel = score / np.maximum(lat["base"][:, None], 1)
        dropped_at = np.full(n, -1)
        for j in range(2, n_vis):
            driver = rel[:, j] if self.mnar else rel[:, j - 1]
            h = expit(logit(np.clip(h0, 1e-6, 1 - 1e-6)) + 1.2 * (driver - 0.6))
            new = (dropped_at < 0) & scheduled[:, j] & (rng.random(n) < h)
            dropped_at[new] = j
        attended = scheduled.copy()
        for i in np.flatnonzero(dropped_at >= 0):
            attended[i, dropped_at[i]:] = False
        missed = rng.random((n, n_vis)) < self.s.missed_visit_rate
        missed[:, 0] = False
        keep = attended & ~missed
        dropout_day = np.full(n, np.nan)
        for i in np.flatnonzero(dropped_at >= 0):
            j = dropped_at[i]
            lo, hi = days[i, j - 1], days[i, j]
            dropout_day[i] = np.round(lo + rng.uniform(0.1, 0.9) * (hi - lo), 2)
        reasons = np.array(["lack of efficacy", "adverse event", "lost to follow-up",
                            "withdrew consent"], dtype=object)
        no_benefit = rel[np.arange(n), np.maximum(dropped_at - 1, 0)] > 0.7
        reason = np.where(no_benefit, "lack of efficacy",
                          reasons[rng.integers(1, 4, n)]).astype(object)
        subj = subj.assign(
            disposition=np.where(dropped_at >= 0, "dropped_out", "completed").astype(object),
            dropout_day=dropout_day,
            dropout_reason=pd.Series(np.where(dropped_at >= 0, reason, None), dtype=object),
        )
        ii, jj = np.nonzero(keep)
        labels = np.array([v[1] for v in visits], dtype=object)
        numbers = np.array([v[0] for v in visits])
        assessments = pd.DataFrame({
            "subject_id": self.ids[ii], "scale": self.s.scale,
            "day": np.round(days[ii, jj], 5), "visit": labels[jj],
            "visit_number": numbers[jj], "score": score[ii, jj],
        })
        inf = infusions.merge(subj[["subject_id", "dropout_day"]], on="subject_id")
        inf = inf[inf["dropout_day"].isna() | (inf["day"] <= inf["dropout_day"])]
        inf = inf.drop(columns="dropout_day").reset_index(drop=True)
        return assessments, inf, subj

    # ---- safety ----------------------------------------------------------------------------
    def _vitals(self, infusions, lat):
        rng = self.rng
        idx = pd.Index(self.ids).get_indexer(infusions["subject_id"])
        k = infusions["infusion_number"].to_numpy()
        m = _VITAL_MINUTES
        shape = np.where(m <= 40, m / 40, np.clip((120 - m) / 80, 0, None))
        n_inf = len(infusions)
        placebo = infusions["drug"].isin(["midazolam_iv", "saline_iv"]).to_numpy()
        rise = lat["sbp_rise"][idx] * np.where(placebo, 0.15, 1.0)
        rise = rise * np.where(k > 3, 0.9, 1.0) + rng.normal(0, 3, n_inf)
        sbp = lat["sbp0"][idx, None] + rise[:, None] * shape + rng.normal(0, 6, (n_inf, len(m)))
        dbp = lat["dbp0"][idx, None] + 0.7 * rise[:, None] * shape + rng.normal(
            0, 4.5, (n_inf, len(m)))
        hr = lat["hr0"][idx, None] + 4 * shape * (~placebo)[:, None] + rng.normal(
            0, 4, (n_inf, len(m)))
        atten = np.where(k == 1, 1.0, 0.7)
        peak = lat["cadss40"][idx] * atten * rng.lognormal(0, 0.25, n_inf)
        cad_shape = np.array([_CADSS_MINUTES.get(v, np.nan) for v in m])
        cadss = np.round(peak[:, None] * cad_shape, 0)
        dbp = np.minimum(dbp, sbp - 15)
        out = pd.DataFrame({
            "subject_id": np.repeat(infusions["subject_id"].to_numpy(), len(m)),
            "infusion_number": np.repeat(k, len(m)),
            "minute": np.tile(m, n_inf),
            "sbp": np.round(np.clip(sbp, 80, 250), 0).ravel(),
            "dbp": np.round(np.clip(dbp, 40, 150), 0).ravel(),
            "heart_rate": np.round(np.clip(hr, 40, 180), 0).ravel(),
            "cadss": np.clip(cadss, 0, 92).ravel(),
        })
        return out

    def _adverse_events(self, infusions, vitals, lat):
        rng = self.rng
        placebo = infusions["drug"].isin(["midazolam_iv", "saline_iv"]).to_numpy()
        rows = []
        for term, (p_k, p_p) in _AE_RATES.items():
            hit = rng.random(len(infusions)) < np.where(placebo, p_p, p_k)
            for r in np.flatnonzero(hit):
                rows.append((r, term))
        if vitals is not None:
            sess = vitals.groupby(["subject_id", "infusion_number"], sort=False).agg(
                sbp=("sbp", "max"), cadss=("cadss", "max")).reset_index()
            key = infusions[["subject_id", "infusion_number"]].reset_index().merge(
                sess, on=["subject_id", "infusion_number"])
            rows += [(r, "hypertension") for r in key.loc[key["sbp"] > 165, "index"]]
            rows += [(r, "dissociation") for r in key.loc[key["cadss"] > 20, "index"]]
        rows.sort()
        if not rows:
            return pd.DataFrame(columns=["subject_id", "day", "infusion_number", "term",
                                         "severity", "serious"])
        r_idx = np.array([r for r, _ in rows])
        sev = rng.choice(["mild", "moderate", "severe"], size=len(rows), p=[0.72, 0.24, 0.04])
        serious = (sev == "severe") & (rng.random(len(rows)) < 0.1)
        return pd.DataFrame({
            "subject_id": infusions["subject_id"].to_numpy()[r_idx],
            "day": infusions["day"].to_numpy()[r_idx],
            "infusion_number": infusions["infusion_number"].to_numpy()[r_idx],
            "term": [t for _, t in rows],
            "severity": sev.astype(object),
            "serious": serious,
        })


_DESCRIPTIONS = {
    "single": "One 0.5 mg/kg 40-min IV ketamine infusion vs midazolam 0.045 mg/kg; MADRS at "
              "baseline, 40 min, 4 h, 24 h, days 3, 7, 14.",
    "serial": "Six IV ketamine infusions over 12 days; MADRS before each infusion, at day 12 and "
              "weekly for 12 weeks after the course.",
    "maintenance": "Six-infusion induction; day-14 responders randomised to weekly maintenance "
                   "infusions or none, followed weekly for 16 weeks.",
    "clinic": "Community-clinic registry: PHQ-9 at every infusion and at irregular check-ins, "
              "heavy dropout, booster infusions on demand.",
}


def _beta(rng: np.random.Generator, mean: float, sd: float, size: int) -> np.ndarray:
    common = mean * (1 - mean) / sd**2 - 1
    return rng.beta(mean * common, (1 - mean) * common, size)


def _loss_curve(day, relapse_day, responder) -> np.ndarray:
    """Share of the improvement still held at ``day``: 1 before relapse, falling over two days to
    0.15 / F (a residual 15% improvement) after it. Non-responders keep their small effect."""
    day = np.asarray(day, dtype=float)
    since = np.clip((day - relapse_day) / 2.0, 0, 1)
    held = 1 - since * 0.78
    return np.where(responder, held, 1.0)


def _infusion_table(ids: np.ndarray, days: np.ndarray, phase: str) -> pd.DataFrame:
    n_inf = len(days)
    return pd.DataFrame({
        "subject_id": np.repeat(ids, n_inf), "infusion_number": np.tile(np.arange(1, n_inf + 1),
                                                                        len(ids)),
        "day": np.tile(days, len(ids)), "drug": "ketamine_iv", "dose": 0.5, "dose_unit": "mg/kg",
        "duration_min": 40.0, "phase": phase,
    })


def bundled_path(design: str) -> Path:
    """Path of the bundled synthetic cohort of ``design`` in the source tree."""
    return Path(__file__).resolve().parents[2] / "data" / "synthetic" / design


def summary(cohort: Cohort) -> dict[str, Any]:
    """A short description of a cohort: sizes, arms, scales, dropout (used by ``kanalysis summary``)."""
    subj = cohort.subjects
    return {
        "name": cohort.metadata.get("name"),
        "subjects": int(len(subj)),
        "arms": subj["arm"].value_counts().sort_index().to_dict(),
        "assessments": int(len(cohort.assessments)),
        "scales": sorted(cohort.assessments["scale"].dropna().unique().tolist()),
        "infusions": int(len(cohort.infusions)),
        "dropped_out": int((subj["disposition"] == "dropped_out").sum()),
        "optional_tables": [t for t in ("vitals", "adverse_events", "clinical_events")
                            if getattr(cohort, t) is not None],
    }
