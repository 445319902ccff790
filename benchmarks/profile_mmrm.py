"""Where ka.mmrm spends its time at scale (issue 10 item 2): a profile of one fit.

Usage::

    .venv/bin/python benchmarks/profile_mmrm.py [--subjects 100000] [--top 25]

Data: benchmarks/simulate.py ``simulate_jittered`` (8 weekly visits, visit days jittered, 20 %
dropout), MMRM ``score ~ arm * C(visit)``, ``us``, REML, Satterthwaite; the fit includes design
building and the first use of the standard errors (lazy inference). Prints the wall time of
each stage and the cProfile functions with the largest cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from simulate import simulate_jittered  # noqa: E402

from kanalysis.models import MMRMModel  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    d = simulate_jittered(args.subjects)
    print(f"{len(d)} rows, {args.subjects} subjects; load {os.getloadavg()[0]:.2f}")
    prof = cProfile.Profile()
    prof.enable()
    t0 = time.perf_counter()
    model = MMRMModel(d, "score ~ arm * C(visit)", subject="subject", visit="visit",
                      covariance="us")
    t1 = time.perf_counter()
    fit = model.fit()
    t2 = time.perf_counter()
    _ = fit.bse
    t3 = time.perf_counter()
    prof.disable()
    print(f"prepare (design, visits, checks): {t1 - t0:.2f} s; fit: {t2 - t1:.2f} s; "
          f"inference (Hessian, P, df): {t3 - t2:.2f} s; total {t3 - t0:.2f} s")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    from kanalysis.models._results import single_thread_blas

    single_thread_blas(main)()
