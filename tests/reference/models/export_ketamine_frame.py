"""Freeze the analysis frame of the bundled synthetic ``single`` cohort for the R references.

Run from the repository root: ``.venv/bin/python tests/reference/models/export_ketamine_frame.py``.
Writes ``tests/reference/models/data/ketamine_single_madrs.csv``: one row per subject and
post-baseline MADRS visit with a score. The CSV is committed so that the reference values do not
depend on the synthetic generator staying byte-identical.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
COHORT = ROOT / "data" / "synthetic" / "single"
OUT = Path(__file__).resolve().parent / "data" / "ketamine_single_madrs.csv"


def main() -> None:
    subjects = pd.read_csv(COHORT / "subjects.csv")
    assessments = pd.read_csv(COHORT / "assessments.csv")
    madrs = assessments[(assessments["scale"] == "MADRS") & assessments["score"].notna()]
    baseline = madrs[madrs["visit_number"] == 0].set_index("subject_id")["score"]
    post = madrs[madrs["visit_number"] > 0].copy()
    post = post[post["subject_id"].isin(baseline.index)]
    post["baseline"] = post["subject_id"].map(baseline)
    post["change"] = post["score"] - post["baseline"]
    arms = subjects.set_index("subject_id")["arm"]
    post["treatment"] = post["subject_id"].map(arms)
    post["arm"] = (post["treatment"] == "ketamine").astype(int)
    post["hours"] = post["day"] * 24.0
    post["log_time"] = np.log1p(post["hours"])
    frame = post.rename(columns={"visit": "visit_label"})
    frame["visit"] = frame["visit_number"].astype(int)
    frame = frame[["subject_id", "treatment", "arm", "visit", "visit_label", "day", "hours",
                   "log_time", "baseline", "score", "change"]]
    frame = frame.sort_values(["subject_id", "visit"]).reset_index(drop=True)
    tmp = OUT.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False, float_format="%.17g")
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({len(frame)} rows, {frame['subject_id'].nunique()} subjects)")


if __name__ == "__main__":
    main()
