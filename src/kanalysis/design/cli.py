"""``kanalysis design``: a simulated power study from a scenario file.

The scenario file (TOML) holds a ``[scenario]`` table (see
:meth:`kanalysis.design.Scenario.from_dict`) and optionally an ``[analysis]`` table with the
defaults of the command's options (``analysis``, ``covariance``, ``df_method``, ``alpha``,
``threshold``, ``direction``, ``landmark``, ``n``, ``n_sim``, ``seed``, ``target``, ``null``).
Everything is checked before any task is sent; errors are one clear line, exit code 2.

Outputs in ``--out`` (a new or empty folder, or one an earlier ``kanalysis design`` marked with
``.kanalysis-design.json``, whose store is then extended): ``power_table.csv``, ``replicates.parquet`` (the store: a later run with a
larger ``--n-sim`` adds to it), ``report.md``, ``power_curve.png`` / ``.pdf`` and
``results.json`` (seed, versions, the table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kanalysis.errors import ConfigurationError

_ANALYSIS_KEYS = {"analysis", "covariance", "df_method", "alpha", "threshold", "direction",
                  "landmark", "n", "n_sim", "seed", "target", "null"}


def _is_design_marker(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("kanalysis") == "design"
    except (OSError, ValueError, AttributeError):
        return False


def _design_marker():
    from kanalysis._paths import Marker

    return Marker(".kanalysis-design.json", "a kanalysis design folder (.kanalysis-design.json)",
                  _is_design_marker)


def parse_n(text: str) -> list[int]:
    """``"40:200:20"`` (start:stop:step, stop included) or ``"40,60,80"``."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [int(v) for v in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1
            if step < 1 or stop < start:
                raise ValueError
            return list(range(start, stop + 1, step))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ConfigurationError(f"--n must be start:stop:step (e.g. 40:200:20) or a comma "
                                 f"list of whole numbers, got {text!r}") from err


def _settings(path: Path) -> dict[str, Any]:
    from kanalysis.design.scenario import read_scenario_file

    data = read_scenario_file(path)
    table = data.get("analysis", {})
    unknown = sorted(set(table) - _ANALYSIS_KEYS)
    if unknown:
        raise ConfigurationError(f"scenario file {path}: unknown [analysis] key(s) {unknown}; "
                                 f"known: {sorted(_ANALYSIS_KEYS)}")
    return table


def run(args) -> int:
    """Handler of ``kanalysis design`` (arguments declared in :mod:`kanalysis.cli`)."""
    from kanalysis.design import load_scenario, simulate_power
    from kanalysis.design.report import power_table, report_markdown

    path = Path(args.scenario)
    cfg = _settings(path)
    scenario = load_scenario(path)

    def pick(name, default=None):
        value = getattr(args, name, None)
        return value if value is not None else cfg.get(name, default)

    n_grid = parse_n(pick("n")) if pick("n") is not None else None
    if not n_grid:
        raise ConfigurationError("give the sample sizes per arm with --n (e.g. 40:200:20) or "
                                 "n = \"40:200:20\" in [analysis]")
    options = {k: cfg[k] for k in ("threshold", "direction", "landmark") if k in cfg}
    if args.threshold is not None:
        options["threshold"] = args.threshold
    scenarios = [scenario, scenario.null()] if (args.null or cfg.get("null")) else [scenario]
    from kanalysis._paths import check_output_dir, write_marker

    # Only a new or empty folder, or one an earlier `kanalysis design` wrote (it is extended).
    marker = _design_marker()
    out = check_output_dir(args.out, inputs=[path], marker=marker, what="--out")
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, marker, kanalysis="design", scenario_file=path.name)
    result = simulate_power(
        scenarios, n_per_arm=n_grid, n_sim=int(pick("n_sim", 1000)), seed=pick("seed"),
        analysis=pick("analysis", "mmrm"), covariance=pick("covariance", "us"),
        df_method=pick("df_method", "satterthwaite"), alpha=float(pick("alpha", 0.05)),
        workers=args.workers, scheduler=args.scheduler, batch_size=args.batch_size,
        store=out / "replicates.parquet", progress=not args.no_progress, **options)
    target = float(pick("target", 0.8))
    table = power_table(result)
    _write_text(out / "power_table.csv", table.to_csv(index=False))
    _write_text(out / "report.md", report_markdown(result, target=target))
    _write_text(out / "results.json", json.dumps(
        {**result.key_numbers(), "scenario_file": path.name, "target": target}, indent=2,
        default=str))
    _save_curve(result, out, target)
    print(table.to_string(index=False))
    print(f"\nroot seed {result.seed}; {int(result.replicates['failed'].sum())} failed fit(s); "
          f"outputs in {out}")
    return 0


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _save_curve(result, out: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from kanalysis.plots.style import save_figure, style_context

    with style_context():
        ax = result.plot(target=target)
        save_figure(ax.figure, out / "power_curve", formats=("png", "pdf"))
        plt.close(ax.figure)
