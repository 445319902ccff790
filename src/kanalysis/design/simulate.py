r"""Power by simulation: many seeded replicates of a trial, analysed and summarised.

:func:`simulate_power` draws ``n_sim`` trials per scenario, analyses each at every sample size
of ``n_per_arm`` and summarises per (scenario, n): power with its Monte Carlo SE
:math:`\sqrt{\hat p(1-\hat p)/n_{sim}}` and exact Clopper-Pearson interval, the number of failed
fits (counted as failures to reject), mean estimate, bias, empirical SE over mean model SE, and
CI coverage of the true effect (Morris, White & Crowther 2019, Stat Med 38:2074).

Reproducibility. Every random quantity of replicate *r* of a scenario is drawn from
``SeedSequence(seed, spawn_key=(scenario key, r, arm, stream))`` (and the sample size with
``common_random_numbers=False``), so a replicate's data do not depend on which worker draws it,
how replicates are batched, the order tasks complete, or whether the study was run in parts
(``replicates=range(...)``) and merged (:func:`merge_results`, or a shared ``store``). The
scenario key is a hash of the generating model, so two scenarios never share streams. With
common random numbers (the default) the trial of size n is the first n subjects per arm of the
replicate's largest trial, as simr's ``powerCurve`` does: the power curve is smooth and
differences between sample sizes have small MC error (points on the curve are correlated).

Extending. With ``store="study.parquet"``, per-replicate records are saved; a later call with
the same store computes only the (scenario, n, replicate) records it lacks and adds them (more
replicates, more sample sizes), refusing when the seed or the analysis differ.
"""

from __future__ import annotations

import json
import platform
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.design.analyses import RECORD_COLUMNS, Analysis, make_analysis
from kanalysis.design.scenario import Scenario, SyntheticScenario
from kanalysis.errors import ConfigurationError
from kanalysis.results import AnalysisResult, SummaryText

__all__ = ["PowerResult", "merge_results", "simulate_power"]

_PREPARED: dict[tuple, Any] = {}  # per worker process: prepared analyses by (scenario, n, analysis)


def _versions() -> dict[str, str]:
    import scipy

    import kanalysis

    out = {"kanalysis": kanalysis.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__, "pandas": pd.__version__,
           "python": platform.python_version()}
    for mod in ("dask", "distributed"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover
            pass
    return out


def _key_hex(words) -> str:
    return "".join(f"{w:08x}" for w in words)


@dataclass(frozen=True)
class _Task:
    """The per-replicate work, shipped to workers once per batch (small and picklable)."""

    scenarios: tuple
    analysis: Analysis
    n_grid: tuple[int, ...]
    seed: int
    crn: bool

    def __call__(self, item: tuple[int, int]) -> list[dict[str, Any]]:
        si, rep = item
        sc = self.scenarios[si]
        out = []
        draws = [(None, sc.draw(self.seed, rep, max(self.n_grid)))] if self.crn else [
            (n, sc.draw(self.seed, rep, n, extra_key=(n,))) for n in self.n_grid]
        for n in self.n_grid:
            data = draws[0][1] if self.crn else dict(draws)[n]
            cache_key = (sc.key(), n, json.dumps(self.analysis.spec(), sort_keys=True,
                                                 default=str))
            if cache_key not in _PREPARED:
                if len(_PREPARED) > 64:
                    _PREPARED.clear()
                _PREPARED[cache_key] = self.analysis.prepare(sc, n)
            rec = self.analysis(sc, data, n, _PREPARED[cache_key])
            out.append({"scenario_index": si, "n_per_arm": n, "replicate": rep, **rec})
        return out


def _clopper_pearson(x: int, n: int, conf_level: float) -> tuple[float, float]:
    a = 1 - conf_level
    lo = 0.0 if x == 0 else float(stats.beta.ppf(a / 2, x, n - x + 1))
    hi = 1.0 if x == n else float(stats.beta.ppf(1 - a / 2, x + 1, n - x))
    return lo, hi


@dataclass
class PowerResult(AnalysisResult):
    """Simulated power per scenario and sample size.

    Attributes
    ----------
    replicates : DataFrame
        One row per (scenario, n_per_arm, replicate) with the analysis record.
    scenarios : list
        The scenarios, in order.
    metadata : dict
        Root seed, seeding scheme, analysis, alpha, versions, timing, workers.
    """

    replicates: pd.DataFrame
    scenarios: list
    analysis: Analysis
    metadata: dict[str, Any] = field(default_factory=dict)
    conf_level: float = 0.95

    count_columns = {}  # counts of simulated trials, not of people

    @property
    def alpha(self) -> float:
        return self.analysis.alpha

    @property
    def seed(self) -> int:
        return int(self.metadata["seed"])

    def truth(self, si: int) -> float:
        tr = self.metadata.get("truth", {})
        v = tr.get(str(si), tr.get(si)) if isinstance(tr, Mapping) else None
        if v is not None:
            return float(v)
        sc = self.scenarios[si]
        if sc.is_null:
            return 0.0
        return float(sc.truth(self.analysis.name))

    def to_frame(self) -> pd.DataFrame:
        """One row per scenario and ``n_per_arm``: power, mcse, exact CI, n_failed, type I
        error flag (null scenarios), mean estimate, bias, empirical / model SE, coverage, and
        the analytic power where a formula applies."""
        rows = []
        reps = self.replicates
        for (si, n), g in reps.groupby(["scenario_index", "n_per_arm"], sort=True):
            si = int(si)
            sc = self.scenarios[si]
            k = len(g)
            x = int(g["reject"].sum())
            p = x / k
            lo, hi = _clopper_pearson(x, k, self.conf_level)
            ok = g[~g["failed"]]
            truth = self.truth(si)
            est = ok["estimate"].to_numpy()
            cover = ((ok["ci_lower"] <= truth) & (truth <= ok["ci_upper"])).mean() if (
                np.isfinite(truth) and len(ok)) else np.nan
            mcse_alpha = np.sqrt(self.alpha * (1 - self.alpha) / k)
            rows.append({
                "scenario": sc.name, "n_per_arm": int(n), "n_sim": k, "power": p,
                "mcse": float(np.sqrt(p * (1 - p) / k)), "power_lower": lo, "power_upper": hi,
                "n_failed": int(g["failed"].sum()), "rejections": x, "null": bool(sc.is_null),
                "type1_flag": bool(sc.is_null and abs(p - self.alpha) > 2 * mcse_alpha),
                "true_effect": truth,
                "mean_estimate": float(est.mean()) if len(est) else np.nan,
                "bias": float(est.mean() - truth) if len(est) and np.isfinite(truth) else np.nan,
                "empirical_se": float(est.std(ddof=1)) if len(est) > 1 else np.nan,
                "mean_model_se": float(ok["std_error"].mean()) if len(ok) else np.nan,
                "coverage": float(cover) if np.isfinite(cover) else np.nan,
                "analytic_power": self._analytic(sc, int(n), g),
            })
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        frame["se_ratio"] = frame["empirical_se"] / frame["mean_model_se"]
        # The shared result vocabulary: the estimated quantity is the power.
        frame["estimate"] = frame["power"]
        frame["std_error"] = frame["mcse"]
        frame["ci_lower"] = frame["power_lower"]
        frame["ci_upper"] = frame["power_upper"]
        frame["n"] = frame["n_sim"]
        return frame

    def _analytic(self, sc, n: int, g: pd.DataFrame) -> float:
        from kanalysis.design import analytic

        name = self.analysis.name
        try:
            if isinstance(sc, Scenario):
                j = sc.visits.index(sc.landmark)
                a, b = sc.arms[1], sc.control
                if name == "mmrm":
                    cov = {arm: sc.covariance[arm][: j + 1, : j + 1] for arm in (a, b)}
                    sd = {arm: np.sqrt(np.diag(cov[arm])) for arm in (a, b)}
                    cor = tuple(cov[arm] / np.outer(sd[arm], sd[arm]) for arm in (a, b))
                    ret = tuple(sc.retention[arm][: j + 1] for arm in (a, b))
                    d = sc.means[a][j] - sc.means[b][j]
                    if d == 0:
                        return self.alpha
                    return analytic.power_mmrm(delta=d, sigma=(sd[a][-1], sd[b][-1]),
                                               correlation=cor, retention=ret, n_total=2 * n,
                                               alpha=self.alpha, method="t").power
                if name == "lmm_slope":
                    same = np.allclose(sc.covariance[a], sc.covariance[b])
                    full = all(np.all(sc.retention[arm] == 1) for arm in (a, b))
                    d = sc.truth("lmm_slope")
                    if not (same and full):
                        return np.nan
                    if d == 0:
                        return self.alpha
                    return analytic.power_lmm_slope(delta=d, times=sc.times,
                                                    covariance=sc.covariance[a], n_per_arm=n,
                                                    alpha=self.alpha).power
                if name == "responder":
                    thr = float(self.analysis.options["threshold"])
                    below = self.analysis.options["direction"] == "below"
                    ps = []
                    for arm in (a, b):
                        z = (thr - sc.means[arm][j]) / np.sqrt(sc.covariance[arm][j, j])
                        ps.append(sc.retention[arm][j] * (stats.norm.cdf(z) if below else
                                                          stats.norm.sf(z)))
                    if np.isclose(ps[0], ps[1]):
                        return self.alpha
                    return analytic.power_two_proportions(ps[0], ps[1], n_per_arm=n,
                                                          alpha=self.alpha).power
            elif name in ("cox", "logrank") and not sc.is_null:
                # Schoenfeld at the mean number of relapses observed in the replicates.
                events = g.get("events")
                if events is None or not np.isfinite(events.mean()):
                    return np.nan
                hr = np.exp(sc.truth("cox"))
                z = np.sqrt(events.mean() * 0.25) * abs(np.log(hr)) - stats.norm.ppf(
                    1 - self.alpha / 2)
                return float(stats.norm.cdf(z))
        except ConfigurationError:
            return np.nan
        return np.nan

    def n_for_power(self, target: float = 0.8, scenario: int | str = 0) -> float:
        """Smallest simulated ``n_per_arm`` whose power reaches ``target`` (NaN if none)."""
        frame = self.to_frame()
        name = scenario if isinstance(scenario, str) else self.scenarios[scenario].name
        sub = frame[(frame["scenario"] == name) & (frame["power"] >= target)]
        return float(sub["n_per_arm"].min()) if len(sub) else float("nan")

    def summary(self) -> SummaryText:
        frame = self.to_frame()
        lines = [f"Simulated power: analysis {self.analysis.name} "
                 f"({json.dumps(self.analysis.spec(), default=str)}), alpha {self.alpha:g}",
                 f"root seed {self.metadata.get('seed')}, common random numbers "
                 f"{self.metadata.get('common_random_numbers')}, versions "
                 f"{self.metadata.get('versions')}"]
        cols = ["scenario", "n_per_arm", "n_sim", "power", "mcse", "power_lower", "power_upper",
                "n_failed", "analytic_power", "bias", "se_ratio", "coverage"]
        lines += frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"
                                       ).splitlines()
        flagged = frame[frame["type1_flag"]]
        for _, r in flagged.iterrows():
            lines.append(f"WARNING: type I error {r['power']:.4f} of {r['scenario']} at n = "
                         f"{r['n_per_arm']} lies outside alpha +- 2 MC SE")
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        frame = self.to_frame()
        table = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return {"table": table, "seed": str(self.metadata.get("seed")),
                "analysis": self.analysis.spec(), "versions": self.metadata.get("versions"),
                "n_failed": int(frame["n_failed"].sum()) if len(frame) else 0}

    def plot(self, **kwargs):
        """Power curve with its exact CI band (see :func:`kanalysis.plots.design.power_curve`)."""
        from kanalysis.plots.design import power_curve

        return power_curve(self, **kwargs)

    def __repr__(self) -> str:
        return str(self.summary())


def _check_grid(n_per_arm) -> tuple[int, ...]:
    if isinstance(n_per_arm, int | np.integer):
        n_per_arm = [n_per_arm]
    try:
        grid = [int(v) for v in n_per_arm]
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"n_per_arm must be whole numbers, got {n_per_arm!r}") from err
    if not grid or any(v < 2 for v in grid) or any(int(v) != v for v in n_per_arm):
        raise ConfigurationError(f"n_per_arm must be whole numbers >= 2, got {n_per_arm!r}")
    return tuple(sorted(set(grid)))


def _check_scenarios(scenario) -> list:
    items = list(scenario) if isinstance(scenario, list | tuple) else [scenario]
    for s in items:
        if not isinstance(s, Scenario | SyntheticScenario):
            raise ConfigurationError(
                f"scenario must be a kanalysis.design.Scenario (or a list of them), got "
                f"{type(s).__name__}")
    keys = [s.key() for s in items]
    if len(set(keys)) != len(keys):
        raise ConfigurationError("two scenarios have the same generating model")
    return items


def _store_read(path: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"kanalysis", b"{}"))
    return table.to_pandas(), meta


def _store_write(path: Path, frame: pd.DataFrame, meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"kanalysis": json.dumps(meta, default=str).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def simulate_power(scenario, n_per_arm: Sequence[int] | int, n_sim: int = 1000,
                   seed: int | None = None, analysis: str | Callable | Analysis = "mmrm",
                   covariance: str = "us", alpha: float = 0.05, *,
                   df_method: str = "satterthwaite", conf_level: float = 0.95,
                   workers: int | None = None, scheduler: Any = None,
                   batch_size: int | None = None, store: str | Path | None = None,
                   replicates: Iterable[int] | None = None,
                   common_random_numbers: bool = True, progress: bool = True,
                   timeout: float | None = None, **analysis_options) -> PowerResult:
    """Simulated power of a design at several sample sizes.

    Parameters
    ----------
    scenario : Scenario or SyntheticScenario, or a list of them
        Data-generating model(s); include ``scenario.null()`` for the type I error.
    n_per_arm : sequence of int
        Sample sizes per arm.
    n_sim : int, default 1000
        Replicates per scenario (replicates ``0 .. n_sim - 1``).
    seed : int, optional
        Root seed (default: a fresh 63-bit seed, recorded in the result).
    analysis : {"mmrm", "lmm_slope", "responder", "cox", "logrank"}, callable or Analysis
        See :mod:`kanalysis.design.analyses`.
    covariance : str, default "us"
        MMRM covariance structure (any of :mod:`kanalysis.models.covariance`).
    alpha : float, default 0.05
        Two-sided significance level.
    df_method : {"satterthwaite", "kenward-roger"}
        MMRM degrees of freedom.
    conf_level : float, default 0.95
        Level of the per-replicate CIs (coverage) and the exact CI of the power.
    workers, scheduler, batch_size, progress, timeout
        Where the replicates run (:func:`kanalysis.parallel.map_batches`).
    store : path, optional
        Parquet file of per-replicate records, read and extended.
    replicates : iterable of int, optional
        Run exactly these replicate numbers (parts of a study to merge later).
    common_random_numbers : bool, default True
        Nested subsets across sample sizes (one draw per replicate).
    **analysis_options
        Passed to the analysis (``threshold=`` for responders, ``landmark=`` for MMRM).

    Returns
    -------
    PowerResult
        ``.to_frame()`` has ``n_per_arm, power, mcse, n_failed`` and more per scenario.

    Raises
    ------
    ConfigurationError
        For a bad scenario, grid or analysis, before any task is sent.
    """
    from kanalysis.parallel import map_batches

    scenarios = _check_scenarios(scenario)
    grid = _check_grid(n_per_arm)
    if not 0 < float(alpha) < 1:
        raise ConfigurationError(f"alpha must lie in (0, 1), got {alpha!r}")
    ana = make_analysis(analysis, covariance=covariance, df_method=df_method, alpha=alpha,
                        conf_level=conf_level, **analysis_options)
    for s in scenarios:
        ana.check(s)
    if replicates is None:
        if isinstance(n_sim, bool) or not isinstance(n_sim, int | np.integer) or n_sim < 1:
            raise ConfigurationError(f"n_sim must be a positive integer, got {n_sim!r}")
        reps = list(range(int(n_sim)))
    else:
        reps = sorted({int(r) for r in replicates})
        if not reps or reps[0] < 0:
            raise ConfigurationError("replicates must be non-negative integers")
    path = Path(store) if store is not None else None
    old, old_meta = (None, {})
    if path is not None and path.exists():
        old, old_meta = _store_read(path)
        if seed is None:
            seed = int(old_meta["seed"])
        if int(old_meta.get("seed", seed)) != int(seed):
            raise ConfigurationError(f"store {path} was made with seed {old_meta['seed']}, not "
                                     f"{seed}; use another store or the same seed")
        if old_meta.get("analysis") != json.loads(json.dumps(ana.spec(), default=str)):
            raise ConfigurationError(f"store {path} holds another analysis "
                                     f"({old_meta.get('analysis')}); use another store")
        if bool(old_meta.get("common_random_numbers", True)) != bool(common_random_numbers):
            raise ConfigurationError(f"store {path} used common_random_numbers="
                                     f"{old_meta.get('common_random_numbers')}")
    if seed is None:
        seed = secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigurationError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    keys = [_key_hex(s.key()) for s in scenarios]
    have = set()
    if old is not None:
        have = set(zip(old["scenario_key"], old["n_per_arm"].astype(int),
                       old["replicate"].astype(int), strict=True))
    needed = []
    for si, key in enumerate(keys):
        for r in reps:
            if any((key, n, r) not in have for n in grid):
                needed.append((si, r))
    task = _Task(tuple(scenarios), ana, grid, seed, bool(common_random_numbers))
    t0 = time.perf_counter()
    out = map_batches(task, needed, workers=workers, scheduler=scheduler, batch_size=batch_size,
                      progress=progress, desc=f"power ({ana.name})", timeout=timeout)
    wall = time.perf_counter() - t0
    new = pd.DataFrame([rec for recs in out for rec in recs],
                       columns=["scenario_index", "n_per_arm", "replicate", *RECORD_COLUMNS])
    new["scenario_key"] = [keys[i] for i in new["scenario_index"]]
    new["scenario"] = [scenarios[i].name for i in new["scenario_index"]]
    frame = new
    if old is not None:
        frame = pd.concat([old, new], ignore_index=True)
        frame = frame.drop_duplicates(["scenario_key", "n_per_arm", "replicate"], keep="first")
    frame = frame.astype({"n_per_arm": int, "replicate": int, "reject": bool, "failed": bool})
    meta = {
        "seed": seed, "seeding": "SeedSequence(seed, spawn_key=(scenario key words, "
        + ("" if common_random_numbers else "n, ") + "replicate, arm, stream))",
        "common_random_numbers": bool(common_random_numbers),
        "analysis": json.loads(json.dumps(ana.spec(), default=str)),
        "scenarios": {k: s.spec() for k, s in zip(keys, scenarios, strict=True)},
        "versions": _versions(), "store": None if path is None else path.name,
        "last_run": {"replicates_computed": len(needed), "wall_seconds": wall,
                     "workers": workers, "scheduler": None if scheduler is None else
                     (scheduler if isinstance(scheduler, str) else type(scheduler).__name__)},
    }
    if path is not None:
        _store_write(path, frame, {**old_meta, **meta})
    # The result covers the requested scenarios, grid and replicates.
    sel = frame[frame["scenario_key"].isin(keys) & frame["n_per_arm"].isin(grid)
                & frame["replicate"].isin(reps)].copy()
    sel["scenario_index"] = sel["scenario_key"].map({k: i for i, k in enumerate(keys)})
    sel = sel.sort_values(["scenario_index", "n_per_arm", "replicate"]).reset_index(drop=True)
    return PowerResult(sel, scenarios, ana, meta, conf_level=float(conf_level))


def merge_results(*results: PowerResult) -> PowerResult:
    """Combine parts of one study (same seed, scenarios and analysis; disjoint or overlapping
    replicates) into one result, as if run at once."""
    if not results:
        raise ConfigurationError("merge_results needs at least one result")
    first = results[0]
    for r in results[1:]:
        if r.seed != first.seed or r.analysis.spec() != first.analysis.spec():
            raise ConfigurationError("merge_results: parts differ in seed or analysis")
        if [s.key() for s in r.scenarios] != [s.key() for s in first.scenarios]:
            raise ConfigurationError("merge_results: parts differ in scenarios")
    frame = pd.concat([r.replicates for r in results], ignore_index=True)
    frame = frame.drop_duplicates(["scenario_key", "n_per_arm", "replicate"], keep="first")
    frame = frame.sort_values(["scenario_index", "n_per_arm", "replicate"]).reset_index(drop=True)
    return PowerResult(frame, first.scenarios, first.analysis, dict(first.metadata),
                       conf_level=first.conf_level)
