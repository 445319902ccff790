"""Prepare once, fit many: timing of MMRMModel.refit (issue 10, item 5).

Usage::

    .venv/bin/python benchmarks/bench_refit.py [--refits 1000] [--subjects 200] [--json out.json]

Runs on one core (BLAS limited to one thread, as every kanalysis fit does) and prints:

1. ``refits``: 1,000 refits of an MMRM ``us`` (REML) on 200 subjects x 4 visits with a new
   outcome vector each time (simulated from the fitted model, 15 % monotone dropout kept fixed:
   the multiple-imputation / simulation case), target < 3 s;
2. ``bootstrap``: 1,000 refits with bootstrap multiplicities of the subjects (each refit has
   its own design sums);
3. ``jackknife``: the public DIA antidepressant trial (tests/data/models/
   antidepressant_dia_hamd17.csv, 172 patients, ``CHANGE ~ BASVAL*C(VISIT) + THERAPY*C(VISIT)``,
   ``us``, REML): the full fit plus 172 leave-one-out refits (173 REML fits), target < 1 s.

Times are wall-clock seconds of the refit loop only (the model is prepared and fitted once
before the clock starts; that time is printed too). The machine load (``uptime``) is printed
with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kanalysis.models import MMRMModel  # noqa: E402


def simulate(n_subjects: int, n_visits: int = 4, seed: int = 1, dropout: float = 0.15):
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), n_visits)
    visit = np.tile(np.arange(1, n_visits + 1), n_subjects)
    arm = np.repeat(rng.integers(0, 2, n_subjects), n_visits)
    base = np.repeat(rng.normal(25, 4, n_subjects), n_visits)
    t = n_visits
    S = 16 * (0.5 * np.ones((t, t)) + 0.5 * np.eye(t)) * np.sqrt(np.outer(1 + np.arange(t),
                                                                          1 + np.arange(t))) / 2
    e = (rng.standard_normal((n_subjects, t)) @ np.linalg.cholesky(S).T).ravel()
    y = 5 - 0.3 * base - 1.5 * visit - 0.8 * visit * arm + e
    d = pd.DataFrame({"subject": subj, "visit": visit, "arm": arm, "base": base, "y": y})
    last = np.repeat(np.where(rng.random(n_subjects) < dropout,
                              rng.integers(1, t, n_subjects), t), t)
    return d[visit <= last].reset_index(drop=True)


def load():
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover
        return (float("nan"),) * 3


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refits", type=int, default=1000)
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out = {"load_before": load()}

    # 1. new outcomes on a fixed missingness pattern
    d = simulate(args.subjects)
    t0 = time.perf_counter()
    model = MMRMModel(d, "y ~ base + C(visit) * arm", subject="subject", visit="visit",
                      covariance="us")
    fit = model.fit()
    prep = time.perf_counter() - t0
    rng = np.random.default_rng(2)
    mu = model.design.X @ fit.fe_params.to_numpy()
    Sigma = fit.cov.to_numpy()
    Lc = np.linalg.cholesky(Sigma)
    ys = []
    for _ in range(args.refits):
        e = rng.standard_normal((model.n_subjects, model.n_visits)) @ Lc.T
        ys.append(mu + e[model.subject_codes, model.visit_codes])
    t0, c0 = time.perf_counter(), time.process_time()
    batch = model.refit_many(ys=ys)
    t_refit, c_refit = time.perf_counter() - t0, time.process_time() - c0
    out["refits"] = {"n": args.refits, "subjects": args.subjects, "visits": 4,
                     "rows": int(len(model.data)), "prepare_and_first_fit_s": prep,
                     "seconds": t_refit, "cpu_seconds": c_refit,
                     "per_refit_ms": 1e3 * t_refit / args.refits,
                     "failed": batch.n_failed, "target_s": 3.0}

    # 2. bootstrap multiplicities
    W = rng.multinomial(model.n_subjects, np.full(model.n_subjects, 1 / model.n_subjects),
                        size=args.refits)
    t0, c0 = time.perf_counter(), time.process_time()
    boot = model.refit_many(weights=list(W))
    t_boot, c_boot = time.perf_counter() - t0, time.process_time() - c0
    out["bootstrap"] = {"n": args.refits, "seconds": t_boot, "cpu_seconds": c_boot,
                        "per_refit_ms": 1e3 * t_boot / args.refits, "failed": boot.n_failed}

    # 3. jackknife on the DIA trial
    dia = pd.read_csv(ROOT / "tests" / "data" / "models" / "antidepressant_dia_hamd17.csv",
                      dtype={"VISIT": str, "PATIENT": str})
    t0 = time.perf_counter()
    m2 = MMRMModel(dia, "CHANGE ~ BASVAL*C(VISIT) + THERAPY*C(VISIT)", subject="PATIENT",
                   visit="VISIT", covariance="us")
    prep2 = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    full = m2.fit()
    labels = list(m2.subjects)
    sets = [labels[:i] + labels[i + 1:] for i in range(len(labels))]
    jack = m2.refit_many(subject_sets=sets)
    t_jack, c_jack = time.perf_counter() - t0, time.process_time() - c0
    est = jack.fe_params()
    n = len(labels)
    theta = est.mean()
    se_jack = np.sqrt((n - 1) / n * ((est - theta) ** 2).sum())
    term = "THERAPY[T.PLACEBO]"
    out["jackknife"] = {"fits": 1 + len(sets), "subjects": n, "prepare_s": prep2,
                        "seconds": t_jack, "cpu_seconds": c_jack, "failed": jack.n_failed,
                        "target_s": 1.0,
                        "jackknife_se_" + term: float(se_jack[term]),
                        "model_se_" + term: float(full.bse[term])}
    out["load_after"] = load()

    print(f"load average before: {out['load_before'][0]:.2f} {out['load_before'][1]:.2f} "
          f"{out['load_before'][2]:.2f}")
    r = out["refits"]
    print(f"refits    : {r['n']} refits, MMRM us, {r['subjects']} subjects x 4 visits "
          f"({r['rows']} rows): {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU "
          f"({r['per_refit_ms']:.2f} ms each; target "
          f"< 3 s), {r['failed']} failed; prepare + first fit {r['prepare_and_first_fit_s']:.3f} s")
    b = out["bootstrap"]
    print(f"bootstrap : {b['n']} refits with subject multiplicities: {b['seconds']:.2f} s "
          f"wall, {b['cpu_seconds']:.2f} s CPU "
          f"({b['per_refit_ms']:.2f} ms each), {b['failed']} failed")
    j = out["jackknife"]
    print(f"jackknife : DIA trial, {j['fits']} REML fits ({j['subjects']} patients): "
          f"{j['seconds']:.2f} s wall, {j['cpu_seconds']:.2f} s CPU (target < 1 s), "
          f"{j['failed']} failed; jackknife SE of {term} "
          f"{j['jackknife_se_' + term]:.4f} vs model-based {j['model_se_' + term]:.4f}")
    print(f"load average after: {out['load_after'][0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    from kanalysis.models._results import single_thread_blas

    single_thread_blas(main)()
