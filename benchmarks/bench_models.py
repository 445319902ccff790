"""Speed and memory benchmark of kanalysis.lmm / kanalysis.mmrm against statsmodels and R.

Usage (``make bench`` runs the default)::

    .venv/bin/python benchmarks/bench_models.py [--sizes 1000,10000,100000] [--quick] [--no-r]
                                                [--json results.json]

Data: ``simulate.py`` (random intercept + slope, 8 weekly visits, 20 % dropout), the same data
for every implementation (written once per size to a temporary CSV). Fits:

- LMM ``score ~ day * arm``, random ``~ 1 + day`` by subject, REML: kanalysis, statsmodels
  ``MixedLM`` (default ``fit(reml=True)``) and, with ``Rscript`` + lme4, ``lmer`` (default control,
  as users run it).
- MMRM ``score ~ arm * C(visit)``, unstructured covariance over the 8 visits, REML: kanalysis and,
  with ``Rscript`` + nlme, ``gls(corSymm, varIdent)`` (only up to 1,000 subjects: ~69 s there and
  over 10 minutes at 10,000).

Every fit runs in a fresh subprocess; its wall time covers the fit call only (not reading the
CSV; Python workers first fit the first 100 subjects once, so that lazy imports and first-call
costs, reported as ``warmup_seconds_100_subjects`` in the JSON, are not counted), its peak memory is the subprocess's peak resident set size (``ru_maxrss`` from
``os.wait4``, so it includes the interpreter and the loaded data). A peer fit predicted to take
over 10 minutes (from its time at the previous size, scaled linearly in subjects) is skipped and
marked so. "max |d beta|" is the largest absolute difference between the peer's fixed effects and
kanalysis' on the same data; "speed-up" is peer time / kanalysis time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SKIP_OVER_SECONDS = 600.0
HARD_TIMEOUT_SECONDS = 1800.0
GLS_MAX_SUBJECTS = 1000
# Seconds per subject measured on this project's 2-core machines (issue 3), used to predict a
# peer's time when no smaller size was run in the same invocation.
PRIOR_SECONDS_PER_SUBJECT = {"statsmodels": 2.4e-3, "lme4": 2.1e-4, "nlme_gls": 6.9e-2}

LMM_FORMULA = "score ~ day * arm"
MMRM_FORMULA = "score ~ arm * C(visit)"

R_LMER = r"""
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1]); d$subject <- factor(d$subject)
t0 <- proc.time()[["elapsed"]]
fit <- lmer(score ~ day * arm + (1 + day | subject), data = d, REML = TRUE)
sec <- proc.time()[["elapsed"]] - t0
msgs <- c(fit@optinfo$conv$lme4$messages, unlist(fit@optinfo$warnings))
writeLines(toJSON(list(seconds = sec, params = as.list(fixef(fit)), llf = as.numeric(logLik(fit)),
                       messages = I(as.character(msgs))), auto_unbox = TRUE, digits = NA), a[2])
"""

R_GLS = r"""
suppressPackageStartupMessages({library(nlme); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1]); d$visit <- factor(d$visit, levels = 1:8); d$subject <- factor(d$subject)
t0 <- proc.time()[["elapsed"]]
fit <- gls(score ~ arm * visit, data = d, method = "REML",
           correlation = corSymm(form = ~ as.integer(visit) | subject),
           weights = varIdent(form = ~ 1 | visit))
sec <- proc.time()[["elapsed"]] - t0
writeLines(toJSON(list(seconds = sec, params = as.list(coef(fit)), llf = as.numeric(logLik(fit)),
                       messages = I(character(0))), auto_unbox = TRUE, digits = NA), a[2])
"""

_FACTOR_PIECE = re.compile(r"^(?:C\()?([A-Za-z_][A-Za-z0-9_.]*)\)?\[(?:T\.)?(.+)\]$")
_R_VISIT = re.compile(r"^visit(\d+)$")


def canonical(term: str) -> str:
    """One name per fixed effect across formulaic, patsy and R (``visit=2:arm`` sorted)."""
    if term in ("Intercept", "(Intercept)"):
        return "Intercept"
    pieces = []
    for piece in term.split(":"):
        m = _FACTOR_PIECE.match(piece) or _R_VISIT.match(piece)
        if m and m.re is _FACTOR_PIECE:
            pieces.append(f"{m.group(1)}={m.group(2)}")
        elif m:
            pieces.append(f"visit={m.group(1)}")
        else:
            pieces.append(piece)
    return ":".join(sorted(pieces))


# --------------------------------------------------------------------------- workers

def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_worker(kind: str, data_path: str, out_path: str) -> None:
    import warnings

    import pandas as pd

    data = pd.read_csv(data_path)

    def fit(frame):
        if kind == "kanalysis_lmm":
            import kanalysis as ka
            return ka.lmm(frame, formula=LMM_FORMULA, groups="subject", re_formula="~ 1 + day",
                          reml=True)
        if kind == "kanalysis_mmrm":
            import kanalysis as ka
            return ka.mmrm(frame, formula=MMRM_FORMULA, subject="subject", visit="visit",
                           covariance="us", reml=True)
        if kind == "statsmodels":
            import statsmodels.formula.api as smf
            return smf.mixedlm(LMM_FORMULA, frame, groups=frame["subject"],
                               re_formula="~day").fit(reml=True)
        raise SystemExit(f"unknown worker {kind!r}")

    with warnings.catch_warnings():
        # Warm-up on the first 100 subjects: loads lazily imported modules and first-call
        # caches, which a session pays once, not per fit. Its time is reported separately.
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fit(data[data["subject"] <= 100].reset_index(drop=True))
        first_call = time.perf_counter() - t0
    rss_before = _rss_mb()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        res = fit(data)
        seconds = time.perf_counter() - t0
    params = {str(k): float(v) for k, v in res.fe_params.items()}
    out = {"seconds": seconds, "params": params, "llf": float(res.llf),
           "rss_before_fit_mb": rss_before, "warmup_seconds_100_subjects": first_call,
           "messages": sorted({f"{w.category.__name__}: {w.message}" for w in caught})[:5]}
    with open(out_path, "w") as fh:
        json.dump(out, fh)


# --------------------------------------------------------------------------- driver

def _spawn(cmd: list[str], out_path: str) -> dict:
    """Run one fit in a fresh process; return its JSON plus peak RSS (MB) from wait4."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > HARD_TIMEOUT_SECONDS:
            proc.kill()
            os.wait4(proc.pid, 0)
            return {"error": f"killed after {HARD_TIMEOUT_SECONDS:.0f} s"}
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0 or not os.path.exists(out_path):
        return {"error": f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}
    with open(out_path) as fh:
        out = json.load(fh)
    out["peak_rss_mb"] = usage.ru_maxrss / 1024.0  # Linux: kilobytes
    return out


def _have_r(packages: list[str]) -> bool:
    try:
        code = ";".join(f"stopifnot(requireNamespace('{p}', quietly=TRUE))" for p in packages)
        return subprocess.run(["Rscript", "-e", code], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(),
            "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def run(sizes: list[int], use_r: bool, json_path: str | None, only: set[str] | None = None,
        skip_over: float = SKIP_OVER_SECONDS) -> list[dict]:
    from simulate import simulate_trajectories

    r_lme4 = use_r and _have_r(["lme4", "jsonlite"])
    r_nlme = use_r and _have_r(["nlme", "jsonlite"])
    rows: list[dict] = []
    last_time: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kanalysis_bench_") as tmp:
        for n in sizes:
            data = simulate_trajectories(n, seed=2026 + n)
            csv = os.path.join(tmp, f"data_{n}.csv")
            data.to_csv(csv, index=False, float_format="%.10g")
            n_rows = len(data)
            plan = [("LMM", "kanalysis", "kanalysis_lmm"), ("LMM", "statsmodels", "statsmodels")]
            if r_lme4:
                plan.append(("LMM", "lme4", "lme4"))
            plan.append(("MMRM us", "kanalysis", "kanalysis_mmrm"))
            if r_nlme:
                plan.append(("MMRM us", "nlme_gls", "nlme_gls"))
            if only:
                plan = [p for p in plan if p[1] in only or p[1] == "kanalysis"]
            ref: dict[str, dict] = {}
            for model, impl, kind in plan:
                row = {"model": model, "impl": impl, "n_subjects": n, "n_rows": n_rows}
                rows.append(row)
                if impl == "nlme_gls" and n > GLS_MAX_SUBJECTS:
                    row["skipped"] = (f"not run above {GLS_MAX_SUBJECTS} subjects (~69 s at "
                                      "1,000; over 10 min at 10,000)")
                    continue
                if impl != "kanalysis":
                    if impl in last_time:
                        n0, t0 = last_time[impl]
                        predicted = t0 * n / n0
                    else:
                        predicted = PRIOR_SECONDS_PER_SUBJECT[impl] * n
                    if predicted > skip_over:
                        row["skipped"] = f"predicted {predicted:.0f} s > {skip_over:.0f} s"
                        continue
                out_path = os.path.join(tmp, f"{kind}_{n}.json")
                if kind in ("lme4", "nlme_gls"):
                    script = os.path.join(tmp, f"{kind}.R")
                    with open(script, "w") as fh:
                        fh.write(R_LMER if kind == "lme4" else R_GLS)
                    cmd = ["Rscript", script, csv, out_path]
                else:
                    cmd = [sys.executable, __file__, "--worker", kind, "--data", csv,
                           "--out", out_path]
                print(f"  fitting {model:8s} {impl:12s} n={n:>7,d} ...", file=sys.stderr,
                      flush=True)
                res = _spawn(cmd, out_path)
                row.update(res)
                if "error" in res:
                    continue
                last_time[impl] = (n, res["seconds"])
                params = {canonical(k): v for k, v in res["params"].items()}
                row["params"] = params
                if impl == "kanalysis":
                    ref[model] = row
                elif model in ref and "params" in ref[model]:
                    ours = ref[model]["params"]
                    common = set(ours) & set(params)
                    if common != set(ours) | set(params):
                        row["note"] = "term names differ"
                    row["max_abs_diff_beta"] = max(abs(ours[k] - params[k]) for k in common)
                    row["diff_llf"] = res["llf"] - ref[model]["llf"]
                    row["speedup"] = res["seconds"] / ref[model]["seconds"]
                if json_path:  # keep partial results of a long run
                    _write_json(json_path, rows)
    return rows


def _write_json(path: str, rows: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"machine": _machine(), "rows": rows}, fh, indent=1)
    os.replace(tmp, path)


def format_table(rows: list[dict]) -> str:
    head = (f"{'model':8s} {'subjects':>9s} {'rows':>9s} {'implementation':14s} {'wall s':>9s} "
            f"{'peak MB':>8s} {'max |d beta|':>12s} {'d llf':>10s} {'speed-up':>9s}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        def fmt(key, spec, r=r):
            v = r.get(key)
            width = int(spec.split(".")[0])
            return format(v, spec) if isinstance(v, int | float) else "-".rjust(width)
        note = r.get("skipped") or r.get("error") or r.get("note") or ""
        msgs = [" ".join(str(m).split()) for m in r.get("messages", []) if m]
        if msgs and not note:
            note = "; ".join(m[:70] for m in msgs[:2])
        lines.append(
            f"{r['model']:8s} {r['n_subjects']:>9,d} {r['n_rows']:>9,d} {r['impl']:14s} "
            f"{fmt('seconds', '9.3f')} {fmt('peak_rss_mb', '8.0f')} "
            f"{fmt('max_abs_diff_beta', '12.2e')} {fmt('diff_llf', '10.2e')} "
            f"{fmt('speedup', '8.1f')}{'x' if 'speedup' in r else ' '}  {note}")
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[str]:
    """The issue-3 targets, evaluated on the rows of this run (ratios within the run)."""
    def get(model, impl, n):
        for r in rows:
            if r["model"] == model and r["impl"] == impl and r["n_subjects"] == n \
                    and "seconds" in r:
                return r
        return None

    out = []

    def line(text, ok):
        out.append(f"  [{'met' if ok else 'NOT met'}] {text}" if ok is not None
                   else f"  [not measured] {text}")

    k, p = get("LMM", "kanalysis", 10000), get("LMM", "statsmodels", 10000)
    line("LMM 10,000 subjects >= 50x faster than statsmodels, estimates equal to 1e-4"
         + (f": {p['speedup']:.0f}x, max |d beta| {p['max_abs_diff_beta']:.1e}" if k and p
            and "speedup" in p else ""),
         (p["speedup"] >= 50 and p["max_abs_diff_beta"] <= 1e-4) if k and p and "speedup" in p
         else None)
    k, p = get("LMM", "kanalysis", 100000), get("LMM", "lme4", 100000)
    line("LMM 100,000 subjects >= 5x faster than lme4"
         + (f": {p['speedup']:.1f}x" if k and p and "speedup" in p else ""),
         p["speedup"] >= 5 if k and p and "speedup" in p else None)
    line("LMM 100,000 subjects peak memory < 2 GB"
         + (f": {k['peak_rss_mb']:.0f} MB" if k else ""), k["peak_rss_mb"] < 2048 if k else None)
    k, p = get("MMRM us", "kanalysis", 1000), get("MMRM us", "nlme_gls", 1000)
    line("MMRM us 1,000 subjects >= 100x faster than nlme::gls"
         + (f": {p['speedup']:.0f}x" if k and p and "speedup" in p else ""),
         p["speedup"] >= 100 if k and p and "speedup" in p else None)
    k, p = get("MMRM us", "kanalysis", 100000), get("LMM", "lme4", 100000)
    line("MMRM us 100,000 subjects faster than lme4's LMM on the same data"
         + (f": {k['seconds']:.2f} s vs {p['seconds']:.2f} s" if k and p else ""),
         k["seconds"] < p["seconds"] if k and p else None)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000",
                   help="comma-separated numbers of subjects (default 1000,10000,100000)")
    p.add_argument("--quick", action="store_true", help="smoke run at 200 and 1,000 subjects")
    p.add_argument("--no-r", action="store_true", help="do not run the R peers")
    p.add_argument("--json", default=None, help="also write the raw results to this JSON file")
    p.add_argument("--only", default=None,
                   help="comma-separated peers to run besides kanalysis "
                        "(statsmodels, lme4, nlme_gls)")
    p.add_argument("--skip-over", type=float, default=SKIP_OVER_SECONDS,
                   help="skip a peer fit predicted to take longer (seconds; default 600)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.data, args.out)
        return 0
    sizes = [200, 1000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    m = _machine()
    print(f"# kanalysis model benchmark, {m['date_utc']}; {m['nproc']} CPUs: {m['cpu']}; "
          f"Python {m['python']}", flush=True)
    only = set(args.only.split(",")) if args.only else None
    rows = run(sizes, use_r=not args.no_r, json_path=args.json, only=only,
               skip_over=args.skip_over)
    print(format_table(rows))
    print("\nTargets (issue 3, ratios within this run):")
    print("\n".join(check_targets(rows)))
    if args.json:
        _write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
