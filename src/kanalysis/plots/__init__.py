"""Plots for kanalysis results. Each plot function takes a tidy DataFrame or a result object and
returns a matplotlib Axes; :mod:`kanalysis.plots.style` holds the shared style."""

from kanalysis.plots.style import (
    JOURNAL_WIDTHS,
    OKABE_ITO,
    arm_colors,
    figure,
    save_figure,
    style_context,
    use_style,
)

__all__ = [
    "JOURNAL_WIDTHS",
    "OKABE_ITO",
    "arm_colors",
    "figure",
    "save_figure",
    "style_context",
    "use_style",
]
