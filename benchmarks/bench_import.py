"""Registry-scale REDCap import: time and peak memory of import, validate and load.

    .venv/bin/python benchmarks/bench_import.py                       # 5k, 10k, 25k, 50k patients
    .venv/bin/python benchmarks/bench_import.py --patients 50000 --visits 30

Data shape (a ketamine registry as REDCap exports it, raw CSV): a longitudinal project with a
screening event (demographics: sex, site, age from date of birth, BMI missing for 8%, failed
trials missing for 20%) and ``--visits`` infusion events per patient, each with the infusion
(date-time, dose, duration) and a PHQ-9 rated item by item 20 minutes before it. Irregular on
purpose: gaps between infusions drawn from 2-10 days plus clock-time jitter, 5% of PHQ-9s missed,
1% of items skipped (prorated or missing totals), and 15% of patients stopping early (fewer
events). Identifier fields (name, date of birth) are flagged in the dictionary.

Each size runs in two processes: one writes the export (not timed; generating it takes more
memory than importing it), then a fresh one times ``import_redcap`` + save, ``kanalysis
validate`` and ``load_cohort`` (validating). Peak memory is that second process's maximum
resident set size (ru_maxrss) after the timed stages, minus nothing: it includes the interpreter
and libraries (~160 MB). ``import_mb`` is the peak already reached when import + save ended.
Targets (issue 12): 50,000 x 30 in < 60 s in all, peak < 2 GB, on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FREQ = "0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day"
MAPPING = """
[cohort]
name = "registry"
primary_scale = "PHQ9"

[subjects]
instrument = "demographics"
[subjects.columns]
birth_date = "dob"
sex = "sex"
site = "site"
bmi = "bmi"
n_failed_trials = "n_failed"
[subjects.values.sex]
Female = "F"
Male = "M"
[subjects.constants]
arm = "ketamine"

[infusions]
instrument = "infusion"
[infusions.columns]
datetime = "inf_datetime"
dose = "inf_dose"
duration_min = "inf_duration"
[infusions.constants]
drug = "ketamine_iv"
dose_unit = "mg/kg"
phase = "induction"

[[assessments]]
instrument = "phq9"
columns = { datetime = "phq9_datetime" }
items = { PHQ9 = ["phq9_1", "phq9_2", "phq9_3", "phq9_4", "phq9_5", "phq9_6", "phq9_7", "phq9_8", "phq9_9"] }
"""


def dictionary() -> pd.DataFrame:
    rows = [("record_id", "demographics", "text", "Record ID", "", "", ""),
            ("full_name", "demographics", "text", "Name", "", "", "y"),
            ("dob", "demographics", "text", "Date of birth", "", "date_ymd", "y"),
            ("sex", "demographics", "radio", "Sex", "1, Female | 2, Male", "", ""),
            ("site", "demographics", "dropdown", "Site", "1, North | 2, South | 3, West", "", ""),
            ("bmi", "demographics", "text", "BMI", "", "number", ""),
            ("n_failed", "demographics", "text", "Failed trials", "", "integer", ""),
            ("inf_datetime", "infusion", "text", "Start", "", "datetime_ymd", ""),
            ("inf_dose", "infusion", "text", "Dose mg/kg", "", "number", ""),
            ("inf_duration", "infusion", "text", "Minutes", "", "integer", ""),
            ("phq9_datetime", "phq9", "text", "Rated at", "", "datetime_ymd", "")]
    rows += [(f"phq9_{k}", "phq9", "radio", f"PHQ-9 item {k}", FREQ, "", "") for k in range(1, 10)]
    return pd.DataFrame(rows, columns=["Variable / Field Name", "Form Name", "Field Type",
                                       "Field Label", "Choices, Calculations, OR Slider Labels",
                                       "Text Validation Type OR Show Slider Number", "Identifier?"])


def make_export(folder: Path, n: int, visits: int, seed: int = 1) -> Path:
    """Write dictionary.csv, records.csv and mapping.toml for ``n`` patients."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    dictionary().to_csv(folder / "dictionary.csv", index=False)
    (folder / "mapping.toml").write_text(MAPPING)
    ids = np.arange(1, n + 1).astype(str)
    first = (np.datetime64("2021-01-04T08:00") + rng.integers(0, 3 * 365, n).astype("timedelta64[D]")
             + rng.integers(0, 9 * 60, n).astype("timedelta64[m]"))
    demo = pd.DataFrame({
        "record_id": ids, "redcap_event_name": "screening_arm_1", "full_name": "Pat Doe",
        "dob": (np.datetime64("1950-01-01") + rng.integers(0, 50 * 365, n).astype("timedelta64[D]")
                ).astype(str),
        "sex": rng.integers(1, 3, n).astype(str), "site": rng.integers(1, 4, n).astype(str),
        "bmi": np.where(rng.random(n) < 0.08, "", np.round(rng.normal(28, 5, n).clip(16, 60), 1).astype(str)),
        "n_failed": np.where(rng.random(n) < 0.2, "", rng.integers(2, 8, n).astype(str)),
    })
    # Infusion events: stopping early for 15%; irregular gaps and clock times.
    n_events = np.where(rng.random(n) < 0.15, rng.integers(3, visits, n), visits)
    pid = np.repeat(np.arange(n), n_events)
    k = np.concatenate([np.arange(m) for m in n_events])
    gaps = rng.integers(2, 11, len(k)).astype("timedelta64[D]")
    gaps[k == 0] = np.timedelta64(0, "D")
    days = np.zeros(len(k), dtype="timedelta64[D]")
    # cumulative gaps within patient
    cum = np.cumsum(gaps.astype(int))
    start_idx = np.repeat(np.cumsum(n_events) - n_events, n_events)
    days = (cum - cum[start_idx] + gaps[start_idx].astype(int)).astype("timedelta64[D]")
    jitter = rng.integers(-45, 46, len(k)).astype("timedelta64[m]")
    jitter[k == 0] = np.timedelta64(0, "m")
    start = first[pid] + days + jitter
    rated = start - np.timedelta64(20, "m")
    fmt = lambda t: pd.Series(t.astype("datetime64[m]")).dt.strftime("%Y-%m-%d %H:%M").to_numpy()  # noqa: E731
    inf = pd.DataFrame({"record_id": ids[pid], "redcap_event_name": [f"infusion_{j + 1}_arm_1" for j in k],
                        "inf_datetime": fmt(start), "inf_dose": "0.5", "inf_duration": "40"})
    baseline = rng.integers(10, 27, n)
    decline = np.clip(baseline[pid] * (1 - 0.5 * (1 - np.exp(-k / 4))) + rng.normal(0, 2, len(k)), 0, 27)
    items = np.clip(np.round(decline[:, None] / 9 + rng.normal(0, 0.7, (len(k), 9))), 0, 3).astype(int)
    item_text = items.astype(str).astype(object)
    item_text[rng.random(items.shape) < 0.01] = ""
    missed = rng.random(len(k)) < 0.05
    item_text[missed] = ""
    inf["phq9_datetime"] = np.where(missed, "", fmt(rated))
    for j in range(9):
        inf[f"phq9_{j + 1}"] = item_text[:, j]
    records = pd.concat([demo, inf], ignore_index=True)
    order = np.lexsort((records["redcap_event_name"] != "screening_arm_1",
                        records["record_id"].astype(int)))
    cols = ["record_id", "redcap_event_name", "full_name", "dob", "sex", "site", "bmi", "n_failed",
            "inf_datetime", "inf_dose", "inf_duration", "phq9_datetime"] + [f"phq9_{j}" for j in range(1, 10)]
    records.iloc[order][cols].to_csv(folder / "records.csv", index=False)
    return folder


def run_one(n: int, visits: int, work: Path) -> dict:
    """Time import + save, validate and load of the export written by ``--generate``."""
    from kanalysis.cli import main as cli_main
    from kanalysis.cohort import load_cohort
    from kanalysis.importers.redcap import import_redcap

    src = work / f"export_{n}"
    rows = sum(1 for _ in open(src / "records.csv")) - 1
    size_mb = (src / "records.csv").stat().st_size / 1e6
    out = work / f"cohort_{n}"
    t0 = time.perf_counter()
    result = import_redcap(src / "records.csv", dictionary=src / "dictionary.csv",
                           mapping=src / "mapping.toml")
    if not result.ok:
        raise SystemExit(result.to_markdown()[:4000])
    result.save(out)
    t1 = time.perf_counter()
    import_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del result
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            code = cli_main(["validate", str(out)])
        finally:
            sys.stdout = stdout
    if code != 0:
        raise SystemExit(f"validate exited {code}")
    t2 = time.perf_counter()
    cohort = load_cohort(out)
    t3 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"patients": n, "visits": visits, "export_rows": rows, "export_mb": round(size_mb, 1),
            "assessments": len(cohort.assessments), "infusions": len(cohort.infusions),
            "import_s": round(t1 - t0, 2), "validate_s": round(t2 - t1, 2),
            "load_s": round(t3 - t2, 2), "total_s": round(t3 - t0, 2),
            "import_mb": round(import_mb), "peak_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[5000, 10000, 25000, 50000])
    parser.add_argument("--visits", type=int, default=30)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        make_export(Path(args.work) / f"export_{args.patients[0]}", args.patients[0], args.visits)
        return
    if args.one:
        print(json.dumps(run_one(args.patients[0], args.visits, Path(args.work))))
        return
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{os.cpu_count()} CPU(s)")
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        work = Path(args.work or tmp)
        results = []
        for n in args.patients:
            for stage in ("--generate", "--one"):
                proc = subprocess.run([sys.executable, __file__, stage, "--patients", str(n),
                                       "--visits", str(args.visits), "--work", str(work)],
                                      capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                    raise SystemExit(proc.returncode)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"{n:>7} patients x {args.visits}: {r['export_rows']:>9} rows "
                  f"({r['export_mb']} MB) import {r['import_s']:6.1f} s, validate "
                  f"{r['validate_s']:5.1f} s, load {r['load_s']:5.1f} s, total {r['total_s']:6.1f} s, "
                  f"peak {r['peak_mb']} MB (at the end of import + save: {r['import_mb']} MB)",
                  flush=True)
    frame = pd.DataFrame(results)
    if len(frame) > 1:
        base = frame.iloc[0]
        frame["time_per_patient_vs_smallest"] = (frame["total_s"] / frame["patients"]) / (
            base["total_s"] / base["patients"])
    print(frame.to_string(index=False))
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
