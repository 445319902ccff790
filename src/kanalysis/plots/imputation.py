"""Figures of the missing-data sensitivity analyses: the tipping-point curve and a forest plot
of estimands side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kanalysis.errors import DataValidationError
from kanalysis.plots.forest import forest_plot
from kanalysis.plots.style import OKABE_ITO, figure

__all__ = ["estimands_forest", "tipping_plot"]


def tipping_plot(result, *, ax=None, xlabel: str | None = None,
                 ylabel: str = "Treatment difference"):
    """Estimate and confidence band against delta, with the no-effect line and the tipping point.

    Parameters
    ----------
    result : TippingPointResult
        From :func:`kanalysis.imputation.tipping_point` (one-arm grid).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    grid = result.to_frame()
    if "delta" not in grid.columns:
        raise DataValidationError("tipping_plot: needs a one-dimensional delta grid (a 'delta' "
                                  f"column); got columns {list(grid.columns)}")
    if ax is None:
        _, ax = figure("single", aspect=0.7)
    d = grid["delta"].to_numpy(float)
    color = OKABE_ITO[0] if isinstance(OKABE_ITO, (list, tuple)) else None
    ax.fill_between(d, grid["ci_lower"], grid["ci_upper"], alpha=0.25, color=color, lw=0,
                    label=f"{result.conf_level:.0%} CI")
    ax.plot(d, grid["estimate"], color=color, lw=1.5, label="estimate")
    ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
    td = result.tipping_delta
    alpha = 1 - result.conf_level
    if td is not None and np.isscalar(td) and np.isfinite(td):
        if td == d[np.argmin(np.abs(d))] and grid["p_value"].to_numpy(float)[
                np.argmin(np.abs(d))] >= alpha:  # no shift needed: not significant already
            ax.annotate(f"not significant at $\\delta$ = {td:g}", xy=(0.02, 0.98),
                        xycoords="axes fraction", va="top", fontsize="small")
        else:
            ax.axvline(td, color="0.2", lw=0.8, ls=":")
            ax.annotate(f"tipping point\n$\\delta$ = {td:.2f}", xy=(td, ax.get_ylim()[1]),
                        xytext=(4, -4), textcoords="offset points", va="top", fontsize="small")
    arms = ", ".join(map(str, result.arms))
    ax.set_xlabel(xlabel or f"Delta added to imputed values ({arms})")
    ax.set_ylabel(f"{ylabel}, visit {result.visit}")
    ax.legend(frameon=False, loc="lower right", fontsize="small")
    return ax


def estimands_forest(table: pd.DataFrame, *, label: str = "analysis", ax=None,
                     xlabel: str = "Treatment difference (95% CI)"):
    """Forest plot of one treatment difference under several estimands / assumptions.

    ``table`` has one row per analysis with columns ``label``, ``estimate``, ``ci_lower`` and
    ``ci_upper`` (e.g. the primary MMRM, MAR, JR, CR, CIR)."""
    return forest_plot(table, estimate="estimate", lower="ci_lower", upper="ci_upper",
                       label=label, labels={x: x for x in table[label]}, log_scale=False,
                       reference=0.0, xlabel=xlabel, ax=ax)
