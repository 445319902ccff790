"""Power curve of a simulated design: power by sample size with its exact CI band, the target
power, and the analytic twin overlaid."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.plots.style import OKABE_ITO, OKABE_ITO_CYCLE, figure

__all__ = ["power_curve"]

_NEEDED = ("scenario", "n_per_arm", "power", "power_lower", "power_upper")


def power_curve(result: Any, *, target: float | None = 0.8, analytic: bool = True,
                ax=None, show_null: bool = True, title: str | None = None):
    """Plot power against n per arm, one line per scenario.

    Parameters
    ----------
    result : PowerResult or DataFrame
        A :class:`kanalysis.design.PowerResult` or its ``to_frame()`` (columns scenario,
        n_per_arm, power, power_lower, power_upper; ``analytic_power`` and ``null`` optional).
    target : float, optional
        Target power drawn as a dashed line (None: no line).
    analytic : bool, default True
        Overlay ``analytic_power`` (dotted) where available.
    ax : matplotlib Axes, optional
    show_null : bool, default True
        Include null scenarios (their curve is the type I error, with alpha as reference).
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    frame = result.to_frame() if hasattr(result, "to_frame") else pd.DataFrame(result)
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise ConfigurationError(f"power_curve: the table lacks column(s) {missing}")
    if not show_null and "null" in frame:
        frame = frame[~frame["null"].astype(bool)]
    if ax is None:
        _, ax = figure("single", aspect=0.75)
    for k, (name, g) in enumerate(frame.groupby("scenario", sort=False)):
        g = g.sort_values("n_per_arm")
        colour = OKABE_ITO_CYCLE[k % len(OKABE_ITO_CYCLE)]
        n = g["n_per_arm"].to_numpy(float)
        ax.fill_between(n, g["power_lower"], g["power_upper"], color=colour, alpha=0.2, lw=0)
        ax.plot(n, g["power"], "o-", color=colour, ms=3, lw=1.2, label=f"{name} (simulated)")
        if analytic and "analytic_power" in g and np.isfinite(g["analytic_power"]).any():
            ax.plot(n, g["analytic_power"], ":", color=colour, lw=1.2,
                    label=f"{name} (analytic)")
    if target is not None:
        ax.axhline(target, color=OKABE_ITO["black"], ls="--", lw=0.8, label=f"target {target:g}")
    ax.set_xlabel("n per arm")
    ax.set_ylabel("power")
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    return ax
