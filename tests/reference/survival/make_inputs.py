"""Freeze the input tables for survival_reference.R (run once; the CSVs are committed).

    .venv/bin/python tests/reference/survival/make_inputs.py

The references must not move when the synthetic generator changes, so the derived tables are
written here once and committed; rerun only on purpose, then rerun the R script.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent / "inputs"


def _write(df: pd.DataFrame, name: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=HERE, suffix=".tmp")
    os.close(fd)
    df.to_csv(tmp, index=False, float_format="%.10g")
    os.replace(tmp, HERE / name)
    print("wrote", HERE / name, len(df), "rows")


def competing_example() -> pd.DataFrame:
    """Two arms, integer days (many ties, incl. events tied with censoring), 3 statuses."""
    rng = np.random.default_rng(20261126)
    n = 80
    arm = np.repeat(["maintenance", "no_maintenance"], n // 2)
    rate = np.where(arm == "maintenance", 1 / 60, 1 / 30)
    t_rel = rng.exponential(1 / rate)
    t_drop = rng.exponential(90, n)
    t_cens = rng.uniform(20, 100, n)
    time = np.ceil(np.minimum.reduce([t_rel, t_drop, t_cens]) / 3) * 3
    status = np.select([t_rel <= np.minimum(t_drop, t_cens), t_drop <= t_cens], [1, 2], 0)
    return pd.DataFrame({"subject_id": [f"S{i:03d}" for i in range(n)], "arm": arm,
                         "time": time, "status": status})


def synthetic_tables() -> dict[str, pd.DataFrame]:
    from kanalysis import durability, synthetic

    out = {}
    maint = synthetic.generate("maintenance", n_subjects=300, seed=11)
    tab = durability.derive(maint, scale="MADRS", relapse_rule="b+c", origin="randomization")
    keep = ["subject_id", "arm", "time", "event", "status", "censor_reason", "origin_day",
            "baseline", "age", "anxious_distress"]
    out["synthetic_maintenance.csv"] = tab[keep]
    cp = durability.counting_process(tab, maint.infusions)
    out["synthetic_maintenance_cp.csv"] = cp[["subject_id", "arm", "start", "stop", "event",
                                              "maintenance_infusions"]]
    serial = synthetic.generate("serial", n_subjects=200, seed=12)
    tab = durability.derive(serial, scale="MADRS", relapse_rule="a", origin="first_response")
    out["synthetic_serial.csv"] = tab[keep]
    from kanalysis.outcomes import responder_status

    single = synthetic.generate("single", n_subjects=120, seed=13)
    status = responder_status(single, "MADRS")
    out["synthetic_single_status.csv"] = status[["subject_id", "arm", "visit", "day", "score",
                                                 "baseline", "response", "remission"]]
    return out


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    _write(competing_example(), "competing_example.csv")
    if "--synthetic" in sys.argv:
        for name, df in synthetic_tables().items():
            _write(df, name)
