"""Speed and memory benchmark of kanalysis.lmm / kanalysis.mmrm against R and statsmodels.

Canonical command (about 20 minutes on the project's 2-core machine)::

    .venv/bin/python benchmarks/bench_models.py

Options: ``--designs balanced,jittered,registry,bcva``, ``--sizes 1000,10000,100000,1000000``,
``--only kanalysis,lme4,lme4_tight,statsmodels,nlme_gls,glmmTMB`` (implementations to run),
``--quick`` (1,000 and 10,000 subjects, jittered and bcva only, fast peers), ``--no-r``,
``--skip-over SECONDS`` (skip a peer fit predicted to take longer), ``--out DIR`` (where the
JSON and the plot go; default ``benchmarks/``).

Designs (``simulate.py``): ``balanced`` (8 weekly visits shared by everyone, 20 % dropout),
``jittered`` (the weekly schedule with each visit +-1.5 days, 20 % MAR dropout, so that every
subject has its own visit days), ``registry`` (3-30 visits per subject at irregular days over
years; the MMRM uses 8 ADaM-style 90-day analysis windows) and ``bcva`` (R mmrm's BCVA-shaped
design: 1,000 subjects x 10 visits, ``BCVA_CHG ~ BCVA_BL + ARMCD * AVISIT + RACE``,
unstructured).

Fits (the same data for every implementation: Parquet for Python, CSV with 17 significant
digits for R, so that both read identical numbers and log-likelihoods compare to ~1e-9):

- LMM ``score ~ day * arm``, random ``~ 1 + day`` by subject, REML: kanalysis ``lmm``; lme4
  ``lmer`` with default control (as users run it) and tight (``bobyqa``, ``rhoend = 1e-12``);
  statsmodels ``MixedLM.fit(reml=True)``.
- MMRM ``score ~ arm * C(visit)``, unstructured covariance, REML: kanalysis ``mmrm``;
  ``nlme::gls(corSymm + varIdent)``; ``glmmTMB(us(visit + 0 | subject), dispformula = ~0)``.

Timing: every implementation runs in a fresh process per fit size and fits the same data
``--repeat`` times in that process (default 2; a fit longer than ``--repeat-limit``, default
60 s, is not repeated); the table gives the fastest fit ("fit s") and the first ("1st s"), and
ratios use the fastest for every implementation alike. A fit's time covers the fit call only
(formula handling and design building included, reading the file not), measured inside R with
``system.time`` around the fit and in Python with ``time.perf_counter``. Python workers also
fit the first 100 subjects once before the timed fits (imports and first-call caches). The
repeat matters on the project's machine, a Firecracker VM: the first touch of guest memory
that the host has not yet backed costs about 20 us per 4 KB page (measured: 92 MB of fresh
memory 0.54 s, the same allocation again 0.01 s), and freed memory is handed back to the
host, so a single fit in a fresh process also measures how much memory it touches and how
long the host takes to supply it, which varies from run to run by a factor of three.
Peak memory is the worker process's own peak resident set size since it started (``VmHWM``,
read by the worker at its end, in Python and in R; interpreter and data included). A peer fit predicted (from its previous size, linearly in
subjects) to take longer than ``--skip-over`` is skipped and marked so; every peer also has a
largest size per design (``PEER_MAX``) so that the default run stays near 20 minutes. The
1-minute load average is recorded at the start of every fit (the machine may be shared).

Where the limit is: for each kanalysis LMM fit the worker also times, on the fitted model,
one read of every number of the data (the floor of any method), the one pass that forms the
per-subject sufficient statistics, one criterion-and-gradient evaluation and one exact
Hessian, next to the fit's own stage times and evaluation counts.
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

DEFAULT_SIZES = (1000, 10000, 100000, 1000000)
DEFAULT_DESIGNS = ("balanced", "jittered", "registry", "bcva")
SKIP_OVER_SECONDS = 300.0
HARD_TIMEOUT_SECONDS = 1200.0
# Largest number of subjects per (design, implementation) in the default run. kanalysis runs
# every requested size except the registry at 1,000,000 (16.5 million rows, several GB).
PEER_MAX = {
    "balanced": {"kanalysis": 1_000_000, "lme4": 100_000, "lme4_tight": 10_000,
                 "statsmodels": 1_000, "nlme_gls": 0, "glmmTMB": 0},
    "jittered": {"kanalysis": 1_000_000, "lme4": 100_000, "lme4_tight": 100_000,
                 "statsmodels": 10_000, "nlme_gls": 1_000, "glmmTMB": 1_000},
    "registry": {"kanalysis": 100_000, "lme4": 100_000, "lme4_tight": 10_000,
                 "statsmodels": 1_000, "nlme_gls": 0, "glmmTMB": 0},
    "bcva": {"kanalysis": 1_000, "nlme_gls": 1_000, "glmmTMB": 1_000},
}
# Seconds per subject measured on this project's 2-core machine, to predict a peer's time
# before it has run at a smaller size in the same invocation.
PRIOR_SECONDS_PER_SUBJECT = {"statsmodels": 8e-3, "lme4": 3.5e-4, "lme4_tight": 8e-4,
                             "nlme_gls": 7e-2, "glmmTMB": 2e-2}

LMM_FORMULA = "score ~ day * arm"
MMRM_FORMULA = "score ~ arm * C(visit)"
BCVA_FORMULA = "BCVA_CHG ~ BCVA_BL + ARMCD * AVISIT + RACE"

# ---------------------------------------------------------------------------------- R peers
R_HEAD = r"""
suppressPackageStartupMessages({library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1])
msgs <- character(0)
fit <- NULL
repeat_fits <- as.integer(a[3])
repeat_limit <- as.numeric(a[4])
# Fit up to repeat_fits times (a fit longer than repeat_limit seconds is not repeated); the
# times of every fit are reported and the fastest is the benchmark figure.
timed <- function(make_fit) {
  times <- numeric(0)
  for (k in seq_len(repeat_fits)) {
    s <- withCallingHandlers(
      system.time(fit <<- make_fit())[["elapsed"]],
      warning = function(w) {msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning")})
    times <- c(times, s)
    if (s > repeat_limit) break
  }
  times
}
"""
R_TAIL = r"""
hwm <- grep("^VmHWM:", readLines("/proc/self/status"), value = TRUE)
peak_mb <- as.numeric(gsub("[^0-9]", "", hwm)) / 1024
writeLines(toJSON(list(seconds = min(sec), seconds_all = I(sec), peak_rss_self_mb = peak_mb,
                       params = as.list(beta), llf = as.numeric(logLik(fit)),
                       messages = I(as.character(msgs))), auto_unbox = TRUE, digits = NA), a[2])
"""
R_SCRIPTS = {
    "lme4": r"""
suppressPackageStartupMessages(library(lme4))
d$subject <- factor(d$subject)
sec <- timed(function() lmer(score ~ day * arm + (1 + day | subject), data = d, REML = TRUE))
msgs <- c(msgs, fit@optinfo$conv$lme4$messages)
beta <- fixef(fit)
""",
    "lme4_tight": r"""
suppressPackageStartupMessages(library(lme4))
d$subject <- factor(d$subject)
ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
sec <- timed(function() lmer(score ~ day * arm + (1 + day | subject), data = d, REML = TRUE,
                  control = ctl))
msgs <- c(msgs, fit@optinfo$conv$lme4$messages)
beta <- fixef(fit)
""",
    "nlme_gls": r"""
suppressPackageStartupMessages(library(nlme))
d$visit <- factor(d$visit); d$subject <- factor(d$subject)
sec <- timed(function() gls(score ~ arm * visit, data = d, method = "REML",
                 correlation = corSymm(form = ~ as.integer(visit) | subject),
                 weights = varIdent(form = ~ 1 | visit)))
beta <- coef(fit)
""",
    "glmmTMB": r"""
suppressPackageStartupMessages(library(glmmTMB))
d$visit <- factor(d$visit); d$subject <- factor(d$subject)
sec <- timed(function() glmmTMB(score ~ arm * visit + us(visit + 0 | subject), data = d,
                     dispformula = ~ 0, REML = TRUE))
beta <- fixef(fit)$cond
""",
    "nlme_gls_bcva": r"""
suppressPackageStartupMessages(library(nlme))
d$AVISIT <- factor(d$AVISIT); d$USUBJID <- factor(d$USUBJID)
d$ARMCD <- factor(d$ARMCD); d$RACE <- factor(d$RACE)
sec <- timed(function() gls(BCVA_CHG ~ BCVA_BL + ARMCD * AVISIT + RACE, data = d, method = "REML",
                 correlation = corSymm(form = ~ as.integer(AVISIT) | USUBJID),
                 weights = varIdent(form = ~ 1 | AVISIT)))
beta <- coef(fit)
""",
    "glmmTMB_bcva": r"""
suppressPackageStartupMessages(library(glmmTMB))
d$AVISIT <- factor(d$AVISIT); d$USUBJID <- factor(d$USUBJID)
d$ARMCD <- factor(d$ARMCD); d$RACE <- factor(d$RACE)
sec <- timed(function() glmmTMB(BCVA_CHG ~ BCVA_BL + ARMCD * AVISIT + RACE + us(AVISIT + 0 | USUBJID),
                     data = d, dispformula = ~ 0, REML = TRUE))
beta <- fixef(fit)$cond
""",
}
R_PACKAGES = {"lme4": "lme4", "lme4_tight": "lme4", "nlme_gls": "nlme", "glmmTMB": "glmmTMB"}

FACTORS = ("visit", "AVISIT", "ARMCD", "RACE")
_FORMULAIC = re.compile(r"^(?:C\()?([A-Za-z_][A-Za-z0-9_.]*)\)?\[(?:T\.)?(.+)\]$")


def canonical(term: str) -> str:
    """One name per fixed effect across formulaic and R (``visit=2:arm``, pieces sorted)."""
    if term in ("Intercept", "(Intercept)"):
        return "Intercept"
    pieces = []
    for piece in term.split(":"):
        m = _FORMULAIC.match(piece)
        if m:
            pieces.append(f"{m.group(1)}={m.group(2)}")
            continue
        for f in FACTORS:  # R: factor name followed by the level
            if piece.startswith(f) and len(piece) > len(f):
                pieces.append(f"{f}={piece[len(f):]}")
                break
        else:
            pieces.append(piece)
    return ":".join(sorted(pieces))


# --------------------------------------------------------------------------- Python workers
def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set (``VmRSS``) or its peak since exec (``VmHWM``), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _best_of(func, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best


def _limit_probe(res) -> dict:
    """Times on the fitted LMM: a read of every number, one pass, one evaluation, one Hessian."""
    import numpy as np
    from threadpoolctl import threadpool_limits


    eng, design = res.engine, res.design
    Z = np.column_stack([np.ones(len(design.y)), design.data["day"].to_numpy(float)])
    X, y, starts = design.X, design.y, design.subject_starts
    theta = res._theta_internal
    with threadpool_limits(limits=1, user_api="blas"):  # as inside the fit
        return _limit_times(eng, X, Z, y, starts, theta)


def _limit_times(eng, X, Z, y, starts, theta) -> dict:
    from kanalysis.models._engine import lmm_sums

    return {
        "touch_seconds": _best_of(lambda: (float(X.sum()), float(Z.sum()), float(y.sum()))),
        "one_pass_seconds": _best_of(lambda: lmm_sums(y, X, Z, starts)),
        "evaluation_seconds": _best_of(lambda: eng.deviance_and_grad(theta), 5),
        "hessian_seconds": _best_of(lambda: eng.hessian(theta), 5),
        "engine": type(eng).__name__,
    }


def run_worker(kind: str, data_path: str, out_path: str, repeat: int = 2,
               repeat_limit: float = 60.0) -> None:
    import warnings

    import pandas as pd

    data = pd.read_parquet(data_path)
    subject = "USUBJID" if kind == "kanalysis_bcva" else "subject"
    design_seconds = None

    def fit(frame):
        import kanalysis as ka
        if kind == "kanalysis_lmm":
            return ka.lmm(frame, formula=LMM_FORMULA, groups="subject", re_formula="~ 1 + day",
                          reml=True)
        if kind == "kanalysis_mmrm":
            return ka.mmrm(frame, formula=MMRM_FORMULA, subject="subject", visit="visit",
                           covariance="us", reml=True)
        if kind == "kanalysis_bcva":
            return ka.mmrm(frame, formula=BCVA_FORMULA, subject="USUBJID", visit="AVISIT",
                           covariance="us", reml=True)
        if kind == "statsmodels":
            import statsmodels.formula.api as smf
            return smf.mixedlm(LMM_FORMULA, frame, groups=frame["subject"],
                               re_formula="~day").fit(reml=True)
        raise SystemExit(f"unknown worker {kind!r}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = data[subject].drop_duplicates().iloc[:100]
        t0 = time.perf_counter()
        fit(data[data[subject].isin(first)].reset_index(drop=True))
        first_call = time.perf_counter() - t0
    rss_before = _rss_mb()
    times = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(repeat):  # as in the R scripts: the fastest fit is the figure
            res = None  # the previous fit's memory is freed before the next one starts
            t0 = time.perf_counter()
            res = fit(data)
            times.append(time.perf_counter() - t0)
            if times[-1] > repeat_limit:
                break
    out = {"seconds": min(times), "seconds_all": times, "llf": float(res.llf),
           "rss_before_fit_mb": rss_before,
           "warmup_seconds_100_subjects": first_call,
           "params": {str(k): float(v) for k, v in res.fe_params.items()},
           "messages": sorted({f"{w.category.__name__}: {w.message}" for w in caught})[:5]}
    if kind == "kanalysis_lmm":
        out["timings"] = dict(res.timings)
        out["limit"] = _limit_probe(res)
    if kind in ("kanalysis_mmrm", "kanalysis_bcva"):
        try:  # formula handling and design building alone
            from kanalysis.models._design import build_design
            visit = "AVISIT" if kind == "kanalysis_bcva" else "visit"
            formula = BCVA_FORMULA if kind == "kanalysis_bcva" else MMRM_FORMULA
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                design_seconds = _best_of(lambda: build_design(
                    data, formula, subject, extra_columns=[visit], what="mmrm"), 2)
        except Exception as exc:  # an internal API: report, do not fail the benchmark
            out["messages"].append(f"design timing unavailable: {exc}")
        out["design_seconds"] = design_seconds
        out["n_patterns"] = int(getattr(res, "n_patterns", 0) or 0)
    out["peak_rss_self_mb"] = _rss_mb("VmHWM")
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
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if code != 0 or not os.path.exists(out_path):
        return {"error": f"exit {code}: {' '.join(err.strip().splitlines()[-2:])[:200]}"}
    with open(out_path) as fh:
        out = json.load(fh)
    # The worker's own peak since exec (VmHWM). ru_maxrss from wait4 is not used when the
    # worker gives its own: it also counts the pages of the driver that the child held between
    # fork and exec, so every fit after a large one would show the driver's size.
    out["peak_rss_mb"] = out.get("peak_rss_self_mb") or usage.ru_maxrss / 1024.0
    return out


def _have_r(package: str) -> bool:
    try:
        code = f"stopifnot(requireNamespace('{package}', quietly=TRUE)); library(jsonlite)"
        return subprocess.run(["Rscript", "-e", code], capture_output=True,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _r_versions() -> str:
    code = ("cat(R.version.string, paste(sapply(c('lme4','nlme','glmmTMB'), function(p) "
            "tryCatch(paste(p, as.character(packageVersion(p))), error=function(e) "
            "paste(p, 'missing'))), collapse=', '))")
    try:
        return subprocess.run(["Rscript", "-e", code], capture_output=True, text=True,
                              timeout=120).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "R not available"


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
    import numpy
    import pandas
    versions = {"numpy": numpy.__version__, "pandas": pandas.__version__}
    try:
        import statsmodels
        versions["statsmodels"] = statsmodels.__version__
    except ImportError:
        pass
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions, "commit": commit,
            "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def _plan(design: str, sizes, only, r_ok) -> list[tuple[int, str, str, str]]:
    """(n, model, impl, worker kind) in running order for one design."""
    caps = PEER_MAX[design]

    def want(impl):
        return only is None or impl in only

    steps = []
    if design == "bcva":
        for impl, kind in (("kanalysis", "kanalysis_bcva"), ("glmmTMB", "glmmTMB_bcva"),
                           ("nlme_gls", "nlme_gls_bcva")):
            if want(impl) and (impl == "kanalysis" or r_ok.get(impl)):
                steps.append((1000, "MMRM us", impl, kind))
        return steps
    for n in sizes:
        lmm = [("kanalysis", "kanalysis_lmm"), ("lme4", "lme4"), ("lme4_tight", "lme4_tight"),
               ("statsmodels", "statsmodels")]
        mmrm = [("kanalysis", "kanalysis_mmrm"), ("glmmTMB", "glmmTMB"),
                ("nlme_gls", "nlme_gls")]
        for model, impls in (("LMM", lmm), ("MMRM us", mmrm)):
            for impl, kind in impls:
                if not want(impl) or n > caps.get(impl, 0):
                    continue
                if impl in R_PACKAGES and not r_ok.get(impl):
                    continue
                steps.append((n, model, impl, kind))
    return steps


def run(designs, sizes, only=None, use_r=True, skip_over=SKIP_OVER_SECONDS,
        json_path=None, repeat=2, repeat_limit=60.0) -> dict:
    from simulate import simulate, simulate_bcva

    r_ok = {impl: use_r and _have_r(pkg) for impl, pkg in R_PACKAGES.items()}
    meta = {"machine": _machine(), "r": _r_versions() if use_r else "not used",
            "uptime_start": _uptime(), "designs": list(designs), "sizes": list(sizes),
            "r_available": r_ok, "repeat": repeat, "repeat_limit_seconds": repeat_limit}
    rows: list[dict] = []
    out = {"meta": meta, "rows": rows}
    with tempfile.TemporaryDirectory(prefix="kanalysis_bench_") as tmp:
        scripts = {}
        for name, body in R_SCRIPTS.items():
            scripts[name] = os.path.join(tmp, f"{name}.R")
            with open(scripts[name], "w") as fh:
                fh.write(R_HEAD + body + R_TAIL)
        for design in designs:
            steps = _plan(design, sizes, only, r_ok)
            last_time: dict[tuple[str, str], tuple[int, float]] = {}
            data_n = None
            for n, model, impl, kind in steps:
                if data_n != n:
                    data = simulate_bcva(n, seed=2026) if design == "bcva" else \
                        simulate(design, n, seed=2026 + n)
                    data_n = n
                    parquet = os.path.join(tmp, f"{design}_{n}.parquet")
                    data.to_parquet(parquet, index=False)
                    n_rows_all = len(data)
                    mmrm_data = data
                    if design == "registry":  # MMRM rows: the first record in each window
                        mmrm_data = data[data["visit"] > 0].reset_index(drop=True)
                        mmrm_parquet = os.path.join(tmp, f"{design}_{n}_mmrm.parquet")
                        mmrm_data.to_parquet(mmrm_parquet, index=False)
                    else:
                        mmrm_parquet = parquet
                    ref: dict[str, dict] = {}
                frame = mmrm_data if model.startswith("MMRM") else data
                row = {"design": design, "model": model, "impl": impl, "n_subjects": n,
                       "n_rows": len(frame) if model.startswith("MMRM") else n_rows_all,
                       "load1": round(os.getloadavg()[0], 2)}
                rows.append(row)
                key = (model, impl)
                if impl != "kanalysis":
                    if key in last_time:
                        n0, t0 = last_time[key]
                        predicted = t0 * n / n0
                    else:
                        predicted = PRIOR_SECONDS_PER_SUBJECT[impl] * n * \
                            (3.0 if design == "registry" else 1.0)
                    if predicted > skip_over:
                        row["skipped"] = f"predicted {predicted:.0f} s > {skip_over:.0f} s"
                        continue
                out_path = os.path.join(tmp, f"{design}_{kind}_{n}.json")
                if kind.startswith(("lme4", "nlme", "glmmTMB")):
                    csv = os.path.join(tmp, f"{design}_{n}{'_m' if model != 'LMM' else ''}.csv")
                    if not os.path.exists(csv):
                        frame.to_csv(csv, index=False, float_format="%.17g")  # round-trip exact
                    cmd = ["Rscript", scripts[kind], csv, out_path, str(repeat),
                           str(repeat_limit)]
                else:
                    path = mmrm_parquet if model.startswith("MMRM") else parquet
                    cmd = [sys.executable, __file__, "--worker", kind, "--data", path,
                           "--out", out_path, "--repeat", str(repeat),
                           "--repeat-limit", str(repeat_limit)]
                print(f"  [{datetime.now(UTC):%H:%M:%S}] {design:9s} {model:8s} {impl:12s} "
                      f"n={n:>9,d}  load {row['load1']:.2f} ...", file=sys.stderr, flush=True)
                res = _spawn(cmd, out_path)
                if res.get("seconds_all"):
                    res["first_seconds"] = res["seconds_all"][0]
                row.update(res)
                if "error" in res:
                    continue
                last_time[key] = (n, res["seconds"])
                params = {canonical(k): v for k, v in res["params"].items()}
                row["params"] = params
                if impl == "kanalysis":
                    ref[model] = row
                elif model in ref and "params" in ref[model]:
                    ours = ref[model]["params"]
                    common = set(ours) & set(params)
                    if common != set(ours) | set(params):
                        row["note"] = "term names differ"
                    if common:
                        row["max_abs_diff_beta"] = max(abs(ours[k] - params[k]) for k in common)
                    row["diff_llf"] = res["llf"] - ref[model]["llf"]
                    row["ratio"] = res["seconds"] / ref[model]["seconds"]
                if json_path:
                    _write_json(json_path, out)
    meta["uptime_end"] = _uptime()
    return out


def _write_json(path: str, out: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(out, fh, indent=1)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- reporting
def format_table(rows: list[dict]) -> str:
    head = (f"{'design':9s} {'model':8s} {'subjects':>9s} {'rows':>10s} {'implementation':12s} "
            f"{'fit s':>9s} {'1st s':>9s} {'peak MB':>8s} {'max|dbeta|':>10s} {'d llf':>9s} {'ratio':>8s} "
            f"{'load':>5s}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        def fmt(key, spec, r=r):
            v = r.get(key)
            width = int(spec.split(".")[0])
            return format(v, spec) if isinstance(v, int | float) else "-".rjust(width)
        note = r.get("skipped") or r.get("error") or r.get("note") or ""
        msgs = [" ".join(str(m).split()) for m in r.get("messages", []) if m]
        if msgs and not note:
            note = "; ".join(m[:60] for m in msgs[:2])
        ratio = f"{r['ratio']:7.1f}x" if "ratio" in r else "-".rjust(8)
        lines.append(
            f"{r['design']:9s} {r['model']:8s} {r['n_subjects']:>9,d} {r['n_rows']:>10,d} "
            f"{r['impl']:12s} {fmt('seconds', '9.3f')} {fmt('first_seconds', '9.3f')} "
            f"{fmt('peak_rss_mb', '8.0f')} "
            f"{fmt('max_abs_diff_beta', '10.1e')} {fmt('diff_llf', '9.1e')} {ratio} "
            f"{r['load1']:5.2f}  {note}")
    return "\n".join(lines)


def format_limits(rows: list[dict]) -> str:
    head = (f"{'design':9s} {'subjects':>9s} {'rows':>10s} {'engine':16s} {'read ms':>8s} "
            f"{'pass ms':>8s} {'eval ms':>8s} {'hess ms':>8s} {'evals':>5s} {'hess':>4s} "
            f"{'design s':>8s} {'sums s':>7s} {'optim s':>7s} {'infer s':>7s} {'fit s':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["impl"] != "kanalysis" or r["model"] != "LMM" or "limit" not in r:
            continue
        lim, tm = r["limit"], r["timings"]
        lines.append(
            f"{r['design']:9s} {r['n_subjects']:>9,d} {r['n_rows']:>10,d} {lim['engine']:16s} "
            f"{1e3 * lim['touch_seconds']:8.2f} {1e3 * lim['one_pass_seconds']:8.2f} "
            f"{1e3 * lim['evaluation_seconds']:8.2f} {1e3 * lim['hessian_seconds']:8.2f} "
            f"{tm['evaluations']:5d} {tm['hessians']:4d} {tm['design_seconds']:8.3f} "
            f"{tm['sums_seconds']:7.3f} {tm['optimise_seconds']:7.3f} "
            f"{tm['inference_seconds']:7.3f} {r['seconds']:7.3f}")
    mm = [r for r in rows if r["impl"] == "kanalysis" and r["model"].startswith("MMRM")
          and "seconds" in r]
    if mm:
        lines += ["", "MMRM (kanalysis): fit time and the part spent on formulas and the design",
                  f"{'design':9s} {'subjects':>9s} {'rows':>10s} {'patterns':>8s} "
                  f"{'design s':>8s} {'fit s':>8s}"]
        for r in mm:
            ds = r.get("design_seconds")
            lines.append(f"{r['design']:9s} {r['n_subjects']:>9,d} {r['n_rows']:>10,d} "
                         f"{r.get('n_patterns', 0):>8d} "
                         f"{ds if ds is None else format(ds, '8.3f'):>8} {r['seconds']:8.3f}")
    return "\n".join(lines)


def _get(rows, design, model, impl, n):
    for r in rows:
        if (r["design"], r["model"], r["impl"], r["n_subjects"]) == (design, model, impl, n) \
                and "seconds" in r:
            return r
    return None


def check_targets(rows: list[dict]) -> list[str]:
    """The targets of the model-speed issue, from the rows of this run (ratios within it)."""
    out = []

    def line(text, ok):
        tag = "not measured" if ok is None else ("met" if ok else "NOT met")
        out.append(f"  [{tag}] {text}")

    k = _get(rows, "jittered", "LMM", "kanalysis", 100000)
    for impl, need in (("lme4", 20), ("lme4_tight", 40)):
        p = _get(rows, "jittered", "LMM", impl, 100000)
        ok = None if not (k and p) else p["seconds"] / k["seconds"] >= need
        detail = f": {p['seconds'] / k['seconds']:.1f}x ({k['seconds']:.2f} s vs " \
            f"{p['seconds']:.1f} s)" if k and p else ""
        line(f"LMM jittered 100,000 subjects >= {need}x faster than {impl}{detail}", ok)
    p = _get(rows, "jittered", "LMM", "lme4_tight", 100000)
    line("LMM jittered 100,000: REML logLik >= lme4-tight's"
         + (f" (ours - lme4 tight = {-p['diff_llf']:.2e})" if k and p else ""),
         None if not (k and p) else p["diff_llf"] <= 1e-6)
    k10, s10 = _get(rows, "jittered", "LMM", "kanalysis", 10000), \
        _get(rows, "jittered", "LMM", "statsmodels", 10000)
    line("LMM jittered 10,000 subjects >= 300x faster than statsmodels"
         + (f": {s10['seconds'] / k10['seconds']:.0f}x" if k10 and s10 else ""),
         None if not (k10 and s10) else s10["seconds"] / k10["seconds"] >= 300)
    m, p = _get(rows, "jittered", "MMRM us", "kanalysis", 100000), \
        _get(rows, "jittered", "LMM", "lme4", 100000)
    line("MMRM us 8 visits, jittered 100,000 subjects >= 20x faster than lmer's LMM on the "
         "same data (design building included)"
         + (f": {p['seconds'] / m['seconds']:.1f}x ({m['seconds']:.2f} s vs "
            f"{p['seconds']:.1f} s)" if m and p else ""),
         None if not (m and p) else p["seconds"] / m["seconds"] >= 20)
    line("LMM jittered 100,000 subjects: peak memory < 1 GB"
         + (f": {k['peak_rss_mb']:.0f} MB (whole process)" if k else ""),
         None if not k else k["peak_rss_mb"] < 1024)
    return out


def plot(rows: list[dict], stem: str) -> list[str]:
    """Log-log plot of fit time against subjects, one panel per design (PNG and PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = [d for d in ("balanced", "jittered", "registry")
               if any(r["design"] == d for r in rows)]
    if not designs:
        return []
    fig, axes = plt.subplots(1, len(designs), figsize=(5.2 * len(designs), 4.4), sharey=True,
                             squeeze=False)
    styles = {"kanalysis": ("C0", "o"), "lme4": ("C1", "s"), "lme4_tight": ("C3", "D"),
              "statsmodels": ("C2", "^"), "nlme_gls": ("C4", "v"), "glmmTMB": ("C5", "P")}
    for ax, design in zip(axes[0], designs, strict=True):
        series = {}
        for r in rows:
            if r["design"] == design and "seconds" in r:
                series.setdefault((r["model"], r["impl"]), []).append(
                    (r["n_subjects"], r["seconds"]))
        for (model, impl), pts in sorted(series.items()):
            pts.sort()
            color, marker = styles.get(impl, ("k", "x"))
            ls = "-" if model == "LMM" else "--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, color=color, marker=marker,
                    label=f"{model} {impl}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{design} days")
        ax.set_xlabel("subjects")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("fit time (s)")
    fig.suptitle("fit time: LMM solid, MMRM us dashed", fontsize=10)
    fig.tight_layout()
    paths = [f"{stem}.png", f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="comma-separated numbers of subjects (default 1000,...,1000000)")
    p.add_argument("--designs", default=",".join(DEFAULT_DESIGNS),
                   help="comma-separated designs: balanced, jittered, registry, bcva")
    p.add_argument("--only", default=None,
                   help="comma-separated implementations to run (kanalysis, lme4, lme4_tight, "
                        "statsmodels, nlme_gls, glmmTMB); kanalysis is always run")
    p.add_argument("--quick", action="store_true",
                   help="1,000 and 10,000 subjects, jittered and bcva designs, no nlme::gls")
    p.add_argument("--no-r", action="store_true", help="do not run the R peers")
    p.add_argument("--skip-over", type=float, default=SKIP_OVER_SECONDS,
                   help="skip a peer fit predicted to take longer (seconds; default 300)")
    p.add_argument("--repeat", type=int, default=2,
                   help="fits per process, for every implementation; the fastest is reported "
                        "(default 2)")
    p.add_argument("--repeat-limit", type=float, default=60.0,
                   help="a fit that takes longer than this many seconds is not repeated")
    p.add_argument("--out", default=str(HERE), help="directory for the JSON and the plot")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # --out is then the worker's JSON file
        run_worker(args.worker, args.data, args.out, repeat=args.repeat,
                   repeat_limit=args.repeat_limit)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    only = set(args.only.split(",")) | {"kanalysis"} if args.only else None
    if args.quick:
        sizes = [s for s in sizes if s <= 10000] or [1000, 10000]
        designs = [d for d in designs if d in ("jittered", "bcva")]
        only = (only or {"kanalysis", "lme4", "lme4_tight", "statsmodels", "glmmTMB"}) \
            - {"nlme_gls"}
    unknown = [d for d in designs if d not in PEER_MAX]
    if unknown:
        p.error(f"unknown design(s) {unknown}; choose from {list(PEER_MAX)}")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H%M")
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, f"results_{stamp}.json")
    m = _machine()
    print(f"# kanalysis model benchmark, {m['date_utc']}; {m['nproc']} CPUs: {m['cpu']}; "
          f"Python {m['python']}; commit {m['commit']}", flush=True)
    print(f"# command: {' '.join(['python', 'benchmarks/bench_models.py'] + (argv or sys.argv[1:]))}")
    print(f"# uptime at start: {_uptime()}", flush=True)
    out = run(designs, sizes, only=only, use_r=not args.no_r, skip_over=args.skip_over,
              json_path=json_path, repeat=max(1, args.repeat), repeat_limit=args.repeat_limit)
    rows = out["rows"]
    print(f"# R: {out['meta']['r']}")
    print(format_table(rows))
    print("\nWhere the time goes (kanalysis LMM; read = one read of every number of X, Z and "
          "y; pass = the one pass forming the per-subject sums; eval = one criterion + "
          "gradient; hess = one exact Hessian; then the fit's stages):")
    print(format_limits(rows))
    print("\nTargets (ratios within this run; jittered design):")
    print("\n".join(check_targets(rows)))
    print(f"\n# uptime at end: {out['meta']['uptime_end']}")
    out["targets"] = check_targets(rows)
    _write_json(json_path, out)
    figs = plot(rows, os.path.join(args.out, f"bench_models_{stamp}"))
    print(f"# results: {os.path.relpath(json_path)}; plot: "
          f"{', '.join(os.path.relpath(f) for f in figs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
