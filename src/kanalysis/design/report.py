"""Protocol-ready outputs of a simulated power study: the power table, the type I error check,
the assumptions with their sources, seeds and versions, and a Markdown report.

The type I error of a null scenario is flagged when it lies outside
:math:`\\alpha \\pm 2\\sqrt{\\alpha(1-\\alpha)/n_{sim}}` (Morris, White & Crowther 2019).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from kanalysis.design.simulate import PowerResult

__all__ = ["assumptions_table", "power_table", "report_markdown", "type1_check"]


def _markdown(frame: pd.DataFrame) -> str:
    """A pipe table (no extra dependency)."""
    def cell(v):
        if isinstance(v, float | np.floating):
            return "" if not np.isfinite(v) else f"{v:.4g}"
        return str(v).replace("|", "/")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def power_table(result: PowerResult, digits: int = 3) -> pd.DataFrame:
    """One row per scenario and n per arm: power [exact CI], MC SE, analytic power, failures."""
    f = result.to_frame()
    conf = int(round(100 * result.conf_level))
    out = pd.DataFrame({
        "scenario": f["scenario"], "n per arm": f["n_per_arm"], "N total": 2 * f["n_per_arm"],
        "replicates": f["n_sim"],
        "power": f["power"].round(digits),
        f"{conf}% CI (exact)": [f"{lo:.{digits}f}-{hi:.{digits}f}"
                                for lo, hi in zip(f["power_lower"], f["power_upper"],
                                                  strict=True)],
        "MC SE": f["mcse"].round(digits + 1),
        "analytic power": f["analytic_power"].round(digits),
        "failed fits": f["n_failed"],
        "mean estimate": f["mean_estimate"].round(digits),
        "bias": f["bias"].round(digits),
        "emp SE / model SE": f["se_ratio"].round(digits),
        "CI coverage": f["coverage"].round(digits),
    })
    return out


def type1_check(result: PowerResult) -> pd.DataFrame:
    """Null scenarios: rejection rate, its MC SE, the alpha +- 2 MC SE band and the flag."""
    f = result.to_frame()
    f = f[f["null"]]
    a = result.alpha
    half = 2 * np.sqrt(a * (1 - a) / f["n_sim"])
    return pd.DataFrame({"scenario": f["scenario"], "n_per_arm": f["n_per_arm"],
                         "type_I_error": f["power"], "mcse": f["mcse"], "band_lower": a - half,
                         "band_upper": a + half, "flagged": f["type1_flag"]}
                        ).reset_index(drop=True)


def assumptions_table(result: PowerResult) -> pd.DataFrame:
    """Every assumption of every scenario with its source, then the analysis, seed, seeding
    scheme and versions."""
    rows = []
    for sc in result.scenarios:
        a = sc.assumptions()
        a.insert(0, "scenario", sc.name)
        rows.append(a)
    meta = result.metadata
    extra = [("analysis", json.dumps(result.analysis.spec(), default=str)),
             ("alpha (two-sided)", f"{result.alpha:g}"),
             ("root seed", str(meta.get("seed"))), ("seeding", str(meta.get("seeding"))),
             ("common random numbers", str(meta.get("common_random_numbers"))),
             ("versions", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()))]
    rows.append(pd.DataFrame({"scenario": "all", "assumption": [k for k, _ in extra],
                              "arm": "", "value": [v for _, v in extra],
                              "source": "simulate_power"}))
    return pd.concat(rows, ignore_index=True)


def report_markdown(result: PowerResult, target: float = 0.8) -> str:
    """A Markdown section for a protocol or SAP: table, chosen n, type I error, assumptions."""
    lines = ["## Sample size by simulation", ""]
    lines.append(f"Analysis: {result.analysis.name}; two-sided alpha {result.alpha:g}; "
                 f"replicates per point: {int(result.replicates.groupby(['scenario_index', 'n_per_arm']).size().max())}.")
    lines.append("")
    lines.append(_markdown(power_table(result)))
    lines.append("")
    for i, sc in enumerate(result.scenarios):
        if sc.is_null:
            continue
        n = result.n_for_power(target, i)
        lines.append(f"- {sc.name}: smallest simulated n per arm with power >= {target:g}: "
                     + ("none in the grid" if not np.isfinite(n) else f"{int(n)}"))
    t1 = type1_check(result)
    if len(t1):
        lines += ["", "Type I error (null scenarios):", "", _markdown(t1)]
        if t1["flagged"].any():
            lines.append("")
            lines.append("**Warning:** a type I error lies outside alpha +- 2 MC SE.")
    failed = int(result.replicates["failed"].sum())
    lines += ["", f"Failed fits: {failed} (counted as failures to reject)."]
    lines += ["", "### Assumptions, seeds and versions", "",
              _markdown(assumptions_table(result))]
    return "\n".join(lines) + "\n"
