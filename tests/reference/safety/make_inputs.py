"""Write the frozen CSV inputs of the safety reference tests.

The CSVs in this folder are committed; this script documents how they were made and is only re-run
deliberately (then the R references must be regenerated with ``Rscript safety_reference.R``).
Values are simulated, not real patients: 30 subjects in two arms, up to six infusions each, vitals
at fixed minutes with a few missing readings, MADRS at baseline, 24 h and the end of induction, and
a handful of adverse events.

Run from the repository root::

    .venv/bin/python tests/reference/safety/make_inputs.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
MINUTES = [-5.0, 0.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0]
CADSS_MINUTES = {0.0, 40.0, 80.0, 120.0}
TERMS = ["nausea", "dizziness", "headache", "dissociation", "hypertension", "vomiting"]


def main() -> None:
    rng = np.random.default_rng(20260701)
    n_subjects = 30
    subject_ids = [f"S{i:03d}" for i in range(1, n_subjects + 1)]
    arms = np.where(np.arange(n_subjects) % 5 < 3, "ketamine", "midazolam")
    subjects = pd.DataFrame({"subject_id": subject_ids, "arm": arms})
    # Most subjects get six infusions; a few stop early, so the panel is unbalanced.
    n_infusions = rng.choice([6, 6, 6, 6, 5, 4, 3], size=n_subjects)
    subjects["n_infusions"] = n_infusions

    infusion_rows, vital_rows, ae_rows, assessment_rows = [], [], [], []
    for sid, arm, n_inf in zip(subject_ids, arms, n_infusions, strict=True):
        ketamine = arm == "ketamine"
        cadss_intercept = rng.normal(14.0 if ketamine else 4.0, 4.0)
        cadss_slope = rng.normal(-1.5 if ketamine else -0.3, 0.8)
        sbp_base = rng.normal(134, 14)
        sbp_rise_subject = rng.normal(14.0 if ketamine else 4.0, 5.0)
        for inf in range(1, n_inf + 1):
            day = float((inf - 1) * 3.5)
            infusion_rows.append(
                {"subject_id": sid, "infusion_number": inf, "day": day,
                 "drug": "ketamine_iv" if ketamine else "midazolam_iv",
                 "dose": 0.5 if ketamine else 0.045, "dose_unit": "mg/kg",
                 "duration_min": 40.0, "phase": "induction"}
            )
            peak_cadss = max(cadss_intercept + cadss_slope * (inf - 1) + rng.normal(0, 3.0), 0.5)
            rise = sbp_rise_subject - 0.8 * (inf - 1) + rng.normal(0, 6.0)
            sbp0 = sbp_base + rng.normal(0, 5)
            for minute in MINUTES:
                # Triangular course: rises to the peak at 40 min, back by 100 min.
                shape = 0.0 if minute <= 0 else max(0.0, 1 - abs(minute - 40.0) / 60.0)
                sbp = sbp0 + rise * shape + rng.normal(0, 3)
                dbp = 0.62 * sbp + rng.normal(0, 3) + 0.2 * rise * shape
                hr = 72 + 6 * shape + rng.normal(0, 4)
                cadss = (
                    round(max(peak_cadss * shape + rng.normal(0, 0.8), 0.0))
                    if minute in CADSS_MINUTES else np.nan
                )
                if minute > 0 and rng.uniform() < 0.04:
                    sbp = dbp = np.nan  # a missed reading
                vital_rows.append(
                    {"subject_id": sid, "infusion_number": inf, "minute": minute,
                     "sbp": round(sbp, 0), "dbp": round(dbp, 0), "heart_rate": round(hr, 0),
                     "cadss": cadss}
                )
            for term in TERMS:
                p = {"nausea": 0.12, "dizziness": 0.15, "headache": 0.08, "dissociation": 0.2,
                     "hypertension": 0.04, "vomiting": 0.03}[term]
                if not ketamine:
                    p /= 3
                if rng.uniform() < p:
                    severity = rng.choice(["mild", "mild", "moderate", "severe"])
                    ae_rows.append(
                        {"subject_id": sid, "day": day + 0.02, "infusion_number": inf,
                         "term": term, "severity": severity,
                         "serious": bool(severity == "severe" and rng.uniform() < 0.5)}
                    )
        baseline = rng.normal(33, 5)
        change_24h = -10.0 - 0.45 * peak_cadss_first(cadss_intercept) + 0.1 * (baseline - 33)
        change_24h += rng.normal(0, 5)
        assessment_rows += [
            {"subject_id": sid, "scale": "MADRS", "day": -1.0, "visit": "baseline",
             "visit_number": 1, "score": round(baseline)},
            {"subject_id": sid, "scale": "MADRS", "day": 1.0, "visit": "day1",
             "visit_number": 2, "score": float(np.clip(round(baseline + change_24h), 0, 60))},
            {"subject_id": sid, "scale": "MADRS", "day": 21.0, "visit": "week3",
             "visit_number": 3,
             "score": float(np.clip(round(baseline + change_24h + rng.normal(-2, 5)), 0, 60))},
        ]

    subjects = subjects.drop(columns="n_infusions")
    for name, frame in [("subjects", subjects), ("infusions", pd.DataFrame(infusion_rows)),
                        ("vitals", pd.DataFrame(vital_rows)),
                        ("adverse_events", pd.DataFrame(ae_rows)),
                        ("assessments", pd.DataFrame(assessment_rows))]:
        frame.to_csv(HERE / f"{name}.csv", index=False)


def peak_cadss_first(intercept: float) -> float:
    """Expected first-infusion peak (the generator's subject intercept, floored at 0)."""
    return max(intercept, 0.0)


if __name__ == "__main__":
    main()
