"""Benchmark of simulated power: 10,000 trials of 200 subjects x 4 visits, MMRM us + Satterthwaite.

Run from the repository root (the machine should be otherwise idle; the script records `uptime`):

    .venv/bin/python benchmarks/bench_design.py                 # full run, with R (nlme::gls)
    .venv/bin/python benchmarks/bench_design.py --quick         # n_sim 1,000 (a smoke run)
    .venv/bin/python benchmarks/bench_design.py --no-r          # skip the R comparison

Data shape: two arms of 100 subjects, 4 categorical visits, MADRS-like change from baseline
(SD 8-10, AR(1) correlation 0.6), monotone dropout (retention 1, 0.95, 0.90, 0.85: 15% missing
by the last visit, so 3-4 observed-visit patterns per trial). Each trial is one MMRM fit
``y ~ 0 + C(visit) + C(visit):trt``, unstructured covariance, REML, Satterthwaite df for the
landmark (last-visit) difference.

Measured separately, in one run:

* per-fit time (prepared model refitted with each replicate's outcome), data generation per
  trial, and the scheduling cost of the Dask executor (a no-op function over the same number of
  items and tasks);
* wall time of ``simulate_power`` on a 2-worker LocalCluster (started beforehand; its start-up
  time is reported on its own) for n_sim = 1,000 ... 10,000, and on 1 worker for the speed-up;
* the same 1,000 trials fitted in R by ``nlme::gls`` (corSymm + varIdent = unstructured, REML),
  with the largest difference in the landmark estimate.

Targets (issue 14): 10,000 trials < 120 s with 2 workers; speed-up 1 -> 2 workers >= 1.8.
Results are printed and written to ``benchmarks/results_design_<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def scenario():
    from kanalysis.design import Scenario

    return Scenario(["w1", "w2", "w4", "w6"],
                    {"placebo": [-4.0, -6.0, -8.0, -9.0], "ketamine": [-7.0, -9.0, -10.5, -12.0]},
                    sd=[8.0, 9.0, 9.5, 10.0], correlation="ar1:0.6",
                    retention=[1.0, 0.95, 0.90, 0.85], name="bench 200 x 4")


def _noop(item):
    return item


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False
                              ).stdout.strip()
    except OSError:  # pragma: no cover
        return "unavailable"


def per_fit(sc, n: int, k: int, seed: int) -> dict:
    from kanalysis.design.analyses import make_analysis

    ana = make_analysis("mmrm")
    t0 = time.perf_counter()
    draws = [sc.draw(seed, r, n) for r in range(k)]
    gen = (time.perf_counter() - t0) / k
    t0 = time.perf_counter()
    state = ana.prepare(sc, n)
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs = [ana(sc, d, n, state) for d in draws]
    fit = (time.perf_counter() - t0) / k
    return {"generation_s_per_trial": gen, "prepare_s": prep, "fit_s_per_trial": fit,
            "refit_api": getattr(state, "model", None) is not None,
            "failed": int(sum(r["failed"] for r in recs))}


def scheduling(client, n_items: int) -> dict:
    from kanalysis.parallel import map_batches

    t0 = time.perf_counter()
    map_batches(_noop, list(range(n_items)), scheduler=client, progress=False)
    wall = time.perf_counter() - t0
    n_tasks = int(np.ceil(n_items / int(np.ceil(n_items / (8 * len(client.nthreads()))))))
    return {"items": n_items, "tasks": n_tasks, "wall_s": wall,
            "s_per_task": wall / n_tasks}


def study(sc, n_sim: int, scheduler=None, workers=None, seed: int = 1) -> tuple[float, object]:
    from kanalysis.design import simulate_power

    t0 = time.perf_counter()
    res = simulate_power(sc, n_per_arm=[100], n_sim=n_sim, seed=seed, scheduler=scheduler,
                         workers=workers, progress=False)
    return time.perf_counter() - t0, res


R_SCRIPT = r"""
suppressMessages(library(nlme))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$visit <- factor(d$visit, levels = c("w1", "w2", "w4", "w6"))
d$vis <- as.integer(d$visit)
reps <- split(d, d$replicate)
est <- numeric(length(reps)); ok <- logical(length(reps))
t0 <- proc.time()[["elapsed"]]
for (i in seq_along(reps)) {
  x <- reps[[i]]
  fit <- tryCatch(gls(y ~ 0 + visit + visit:trt, data = x, method = "REML",
                      correlation = corSymm(form = ~ vis | subject),
                      weights = varIdent(form = ~ 1 | visit), na.action = na.omit),
                  error = function(e) NULL)
  if (!is.null(fit)) { est[i] <- coef(fit)[["visitw6:trt"]]; ok[i] <- TRUE }
}
el <- proc.time()[["elapsed"]] - t0
writeLines(sprintf('{"seconds": %.6f, "n": %d, "failed": %d, "estimates": [%s]}', el,
                   length(reps), sum(!ok), paste(sprintf("%.10g", est), collapse = ",")),
           args[2])
"""


def r_comparison(sc, res, k: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    from kanalysis.design.simulate import _Task  # noqa: F401  (same draws as the study)

    rows = []
    for r in range(k):
        long = sc.draw(res.seed, r, 100).long(100)
        long["replicate"] = r
        rows.append(long[["replicate", "subject", "visit", "trt", "y"]])
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "trials.csv"
        pd.concat(rows).to_csv(csv, index=False)
        script = Path(tmp) / "gls.R"
        script.write_text(R_SCRIPT)
        out = Path(tmp) / "out.json"
        t0 = time.perf_counter()
        subprocess.run(["Rscript", str(script), str(csv), str(out)], check=True)
        total = time.perf_counter() - t0
        r_out = json.loads(out.read_text())
    ours = res.replicates.sort_values("replicate")["estimate"].to_numpy()[:k]
    diff = np.abs(np.asarray(r_out["estimates"]) - ours)
    return {"trials": k, "gls_fit_seconds": r_out["seconds"], "rscript_total_seconds": total,
            "s_per_fit": r_out["seconds"] / k, "failed": r_out["failed"],
            "max_abs_estimate_difference": float(np.nanmax(diff))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n_sim up to 1,000 only")
    parser.add_argument("--no-r", action="store_true", help="skip the nlme::gls comparison")
    parser.add_argument("--n-sim", type=int, default=10_000, help="largest n_sim (10,000)")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    from kanalysis.design.simulate import _versions

    top = 1000 if args.quick else args.n_sim
    sc = scenario()
    load_before = uptime()
    out: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                 "uptime_before": load_before, "cpu_count": os.cpu_count(),
                 "versions": _versions(), "data": "2 arms x 100 subjects x 4 visits, monotone "
                 "dropout (retention 1/.95/.90/.85), MMRM us REML + Satterthwaite"}
    print(f"load: {load_before}")
    out["per_fit"] = per_fit(sc, 100, 200, seed=3)
    print("per fit:", out["per_fit"])
    timings = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=":0",
                               scheduler_kwargs={"dashboard": False},
                               env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                    "MKL_NUM_THREADS": "1"})
        client = Client(cluster)
        client.wait_for_workers(workers)
        start = time.perf_counter() - t0
        study(sc, 50, scheduler=client)  # warm the workers (imports)
        sizes = [1000] if workers == 1 else sorted({1000, min(2000, top), min(5000, top), top})
        for n_sim in sizes:
            wall, res = study(sc, n_sim, scheduler=client)
            timings[(workers, n_sim)] = wall
            print(f"workers {workers}, n_sim {n_sim}: {wall:.1f} s "
                  f"({wall / n_sim * 1e3:.2f} ms per trial; failed "
                  f"{int(res.replicates['failed'].sum())})")
            if workers == 2 and n_sim == 1000:
                ref = res
        if workers == 2:
            out["scheduling"] = scheduling(client, top)
            print("scheduling (no-op items):", out["scheduling"])
        out[f"cluster_start_s_{workers}_workers"] = start
        client.close()
        cluster.close()
    out["studies"] = [{"workers": w, "n_sim": n, "wall_s": t} for (w, n), t in timings.items()]
    speedup = timings[(1, 1000)] / timings[(2, 1000)]
    out["speedup_1_to_2_workers"] = speedup
    if not args.no_r:
        out["r_nlme_gls"] = r_comparison(sc, ref, 1000)
        print("R nlme::gls:", out["r_nlme_gls"])
    out["uptime_after"] = uptime()
    big = timings.get((2, 10_000))
    print("\nTargets:")
    if big is not None:
        print(f"  10,000 trials with 2 workers: {big:.1f} s  (< 120 s: "
              f"{'met' if big < 120 else 'NOT met'})")
    print(f"  speed-up 1 -> 2 workers (n_sim 1,000): {speedup:.2f}x  (>= 1.8: "
          f"{'met' if speedup >= 1.8 else 'NOT met'})")
    if out.get("r_nlme_gls"):
        r = out["r_nlme_gls"]
        print(f"  per fit: kanalysis {out['per_fit']['fit_s_per_trial'] * 1e3:.1f} ms vs "
              f"nlme::gls {r['s_per_fit'] * 1e3:.1f} ms "
              f"({r['s_per_fit'] / out['per_fit']['fit_s_per_trial']:.1f}x)")
    print(f"load after: {out['uptime_after']}")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H%M")
    path = HERE / f"results_design_{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
