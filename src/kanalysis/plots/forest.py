"""Forest plot: one row per model term with its estimate and confidence interval.

Used for hazard ratios of Cox models (log scale, reference line at 1) and for differences
(linear scale, reference line at 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FormatStrFormatter

from kanalysis.errors import DataValidationError
from kanalysis.plots.style import OKABE_ITO, figure, style_context

__all__ = ["forest_plot", "term_label"]

_REFERENCE = re.compile(r"""treatment\(\s*(?:reference\s*=\s*)?['"]([^'"]+)['"]""")


def term_label(term: str) -> str:
    """Readable label of a formula term: ``C(arm, contr.treatment('placebo'))[T.ketamine]`` gives
    ``"arm: ketamine vs placebo"``, ``C(sex)[T.M]`` gives ``"sex: M"``; others are returned as is."""
    text = str(term)
    if not (text.startswith("C(") and "[T." in text and text.endswith("]")):
        return text
    inner, level = text[2:].rsplit("[T.", 1)
    inner = inner[:-1] if inner.endswith(")") else inner
    label = f"{inner.split(',')[0].strip()}: {level[:-1]}"
    reference = _REFERENCE.search(inner)
    if reference:
        label += f" vs {reference.group(1)}"
    return label


def forest_plot(
    table: pd.DataFrame,
    *,
    estimate: str | None = None,
    lower: str | None = None,
    upper: str | None = None,
    label: str = "term",
    labels: Mapping[str, str] | None = None,
    log_scale: bool | None = None,
    reference: float | None = None,
    annotate: bool = True,
    xlabel: str = "Hazard ratio (95% CI)",
    ax=None,
):
    """Estimates with confidence intervals, one row per term, first row at the top.

    Parameters
    ----------
    table : DataFrame
        E.g. ``CoxResult.to_frame()`` (a result table in the shared vocabulary).
    estimate, lower, upper : str, optional
        Column names. Default: ``hr, hr_lower, hr_upper`` when the table has hazard ratios
        (``CoxResult.to_frame()``; the old ``lower``/``upper`` names too), else ``estimate,
        ci_lower, ci_upper``.
    label : str
        Column of the row labels.
    labels : mapping, optional
        Term -> display label; other terms go through :func:`term_label`.
    log_scale : bool, optional
        Log x axis (ratios); the reference line defaults to 1, else 0. Default: True for hazard
        ratios, False for ``estimate``.
    reference : float, optional
        Position of the no-effect line.
    annotate : bool, default True
        Write "estimate (lower, upper)" at the right of each row.
    xlabel : str
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ratio = "hr" in table.columns
    if estimate is None:
        estimate = "hr" if ratio else "estimate"
    if lower is None:
        lower = ("hr_lower" if "hr_lower" in table.columns else "lower") if ratio else "ci_lower"
    if upper is None:
        upper = ("hr_upper" if "hr_upper" in table.columns else "upper") if ratio else "ci_upper"
    if log_scale is None:
        log_scale = estimate == "hr"
    missing = [c for c in (estimate, lower, upper, label) if c not in table.columns]
    if missing:
        raise DataValidationError(
            f"forest_plot: column(s) {missing} are not in the table; it has {list(table.columns)}."
        )
    if reference is None:
        reference = 1.0 if log_scale else 0.0
    names = [str((labels or {}).get(t, term_label(t))) for t in table[label]]
    est = table[estimate].to_numpy(dtype=float)
    lo = table[lower].to_numpy(dtype=float)
    hi = table[upper].to_numpy(dtype=float)
    y = np.arange(len(names))[::-1].astype(float)
    with style_context():
        if ax is None:
            _, ax = figure("onehalf", aspect=0.2 + 0.07 * len(names))
        ax.axvline(reference, color="0.6", linewidth=0.6, linestyle="--", zorder=0)
        ax.errorbar(
            est,
            y,
            xerr=[est - lo, hi - est],
            fmt="s",
            color=OKABE_ITO["black"],
            markersize=3.5,
            capsize=0,
            elinewidth=1.0,
        )
        if log_scale:
            ax.set_xscale("log")
            low = float(np.nanmin(np.r_[lo, reference]))
            high = float(np.nanmax(np.r_[hi, reference]))
            ticks = [
                t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20) if low / 1.5 <= t <= high * 1.5
            ]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(FormatStrFormatter(""))
        ax.set_yticks(y)
        ax.set_yticklabels(names)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.set_xlabel(xlabel)
        if annotate:
            # A twin axis carries "estimate (lower, upper)" as tick labels, so that the layout
            # engine makes room for them.
            right = ax.twinx()
            right.set_ylim(ax.get_ylim())
            right.set_yticks(y)
            right.set_yticklabels(
                [f"{e:.2f} ({a:.2f}, {b:.2f})" for e, a, b in zip(est, lo, hi, strict=True)]
            )
            right.tick_params(axis="y", length=0)
            right.spines[["top", "right", "left"]].set_visible(False)
    return ax
