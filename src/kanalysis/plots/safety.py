"""Safety figures: within-infusion courses and the adverse-event dot plot.

Both functions take the tidy tables of :mod:`kanalysis.safety` and draw in the kanalysis style
(:mod:`kanalysis.plots.style`): Okabe-Ito colours, control arms in black.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.plots._columns import require as require_shared
from kanalysis.plots._columns import values as shared_values
from kanalysis.plots.style import (
    JOURNAL_WIDTHS,
    OKABE_ITO,
    OKABE_ITO_CYCLE,
    arm_colors,
    style_context,
)
from kanalysis.requirements import require_columns
from kanalysis.results import resolve_conf_level

__all__ = ["VARIABLE_LABELS", "ae_dot_plot", "ae_incidence_plot", "infusion_course_plot",
           "plot_ae_dotplot", "plot_ae_incidence", "plot_infusion_course"]

#: Axis labels of the vitals variables.
VARIABLE_LABELS: dict[str, str] = {
    "cadss": "CADSS total",
    "sbp": "Systolic BP (mmHg)",
    "dbp": "Diastolic BP (mmHg)",
    "heart_rate": "Heart rate (bpm)",
}


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    require_columns(frame, columns, table="the table from kanalysis.safety", what=what,
                    allow_missing=True)


def infusion_course_plot(
    course: pd.DataFrame,
    variable: str,
    *,
    hue: str = "arm",
    arm: str | None = None,
    infusion_number: int | None = None,
    ax: Any = None,
    infusion_minutes: float | None = 40.0,
    min_count: int | None = None,
    ylabel: str | None = None,
    legend: bool = True,
    band: bool | None = None,
) -> Any:
    """Mean within-infusion course with its confidence band, one line per arm or infusion.

    Parameters
    ----------
    course : DataFrame
        Output of :func:`kanalysis.safety.infusion_course` (columns ``variable``, ``minute``,
        ``n``, ``mean``, ``lower``, ``upper`` and the grouping columns).
    variable : str
        Which variable to draw (``"cadss"``, ``"sbp"``, ``"dbp"``, ``"heart_rate"``).
    hue : str, default "arm"
        Column that separates the lines (``"arm"`` or ``"infusion_number"``).
    arm, infusion_number : optional
        Keep only this arm / infusion (e.g. ``infusion_number=1`` with ``hue="arm"``).
    ax : matplotlib Axes, optional
        Axes to draw on; a new single-column figure otherwise.
    infusion_minutes : float or None, default 40
        Shade the infusion period (0 to this minute); None for no shading (e.g. intranasal).
    min_count : int, optional
        Privacy: minutes where a line rests on fewer than ``min_count`` sessions are not drawn.
    ylabel : str, optional
        Default from :data:`VARIABLE_LABELS`.
    legend : bool, default True
    band : bool, optional
        Draw the confidence bands; by default only with at most three lines (more overlap into
        an unreadable block).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from kanalysis.safety import infusion_course
    >>> from kanalysis.plots.safety import infusion_course_plot
    >>> course = infusion_course(cohort, ["sbp", "cadss"])  # doctest: +SKIP
    >>> ax = infusion_course_plot(course, "sbp", infusion_number=1)  # doctest: +SKIP
    >>> ax = infusion_course_plot(course, "cadss", hue="infusion_number", arm="ketamine")  # doctest: +SKIP
    """
    _require(course, ["variable", "minute", "n"], "course")
    require_shared(course, ["estimate", "ci_lower", "ci_upper"], "course")
    data = course.loc[course["variable"] == variable]
    if data.empty:
        raise ConfigurationError(
            f"The course table has no rows for variable {variable!r}; it has "
            f"{sorted(course['variable'].unique())}."
        )
    for col, value in (("arm", arm), ("infusion_number", infusion_number)):
        if value is not None:
            _require(data, [col], "course")
            data = data.loc[data[col] == value]
            if data.empty:
                raise ConfigurationError(f"No rows with {col} == {value!r} for {variable!r}.")
    _require(data, [hue], "course")
    duplicated = data.duplicated([hue, "minute"])
    if duplicated.any():
        extra = [c for c in ("arm", "infusion_number") if c in data.columns and c != hue]
        raise ConfigurationError(
            f"Several rows per {hue} and minute: select one level of {extra} "
            f"(e.g. infusion_number=1 or arm='ketamine'), or compute the course by {hue} only."
        )
    levels = sorted(data[hue].unique(), key=lambda v: (str(type(v)), v))
    if hue == "arm":
        colors = arm_colors(levels)
    else:
        colors = {lev: OKABE_ITO_CYCLE[i % len(OKABE_ITO_CYCLE)] for i, lev in enumerate(levels)}
    with style_context():
        if ax is None:
            _, ax = plt.subplots(figsize=(JOURNAL_WIDTHS["single"], 0.75 * JOURNAL_WIDTHS["single"]))
        if band is None:
            band = len(levels) <= 3
        if infusion_minutes:
            ax.axvspan(0, infusion_minutes, color="0.95", zorder=0, lw=0)
            ax.text(infusion_minutes / 2, 1.0, "infusion", transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=6.5, color="0.45")
        for level in levels:
            line = data.loc[data[hue] == level].sort_values("minute")
            mean = shared_values(line, "estimate")
            lower = shared_values(line, "ci_lower")
            upper = shared_values(line, "ci_upper")
            if min_count is not None:
                hidden = line["n"].to_numpy() < min_count
                mean, lower, upper = (np.where(hidden, np.nan, a) for a in (mean, lower, upper))
            x = line["minute"].astype(float).to_numpy()
            label = f"infusion {level}" if hue == "infusion_number" else str(level)
            if band:
                ax.fill_between(x, lower, upper, color=colors[level], alpha=0.15, lw=0)
            ax.plot(x, mean, marker="o", ms=3, color=colors[level], label=label)
        ax.set_xlabel("Minutes from infusion start")
        ax.set_ylabel(ylabel or VARIABLE_LABELS.get(variable, variable))
        if legend and len(levels) > 1:
            ax.legend(loc="best")
    return ax


def ae_dot_plot(
    incidence: pd.DataFrame,
    treatment: str,
    control: str,
    *,
    risk_difference: pd.DataFrame | None = None,
    axes: Sequence[Any] | None = None,
    min_count: int | None = None,
    show_counts: bool = True,
    conf_level: float | None = None,
    terms: Sequence[str] | None = None,
    confidence: float | None = None,
) -> np.ndarray:
    """The adverse-event dot plot: incidence by arm (left), risk difference with CI (right).

    Terms are sorted by risk difference, the largest excess in the treatment arm at the top
    (Amit, Heiberger and Lane 2008); suppressed terms (see ``min_count``) go to the bottom. The right panel shows ``treatment - control`` in percentage
    points with the Newcombe interval of :func:`kanalysis.safety.ae_risk_difference`.

    Parameters
    ----------
    incidence : DataFrame
        Output of :func:`kanalysis.safety.ae_incidence`.
    treatment, control : str
        Arm labels to compare.
    risk_difference : DataFrame, optional
        Output of :func:`kanalysis.safety.ae_risk_difference`; computed when omitted.
    axes : pair of Axes, optional
        Where to draw; a new double-column figure otherwise.
    min_count : int, optional
        Privacy: terms where either arm has between 1 and ``min_count - 1`` subjects with the
        event are not drawn (the counts could be read back from the dots) and are labelled
        "suppressed"; printed counts below the threshold show as ``<min_count``.
    show_counts : bool, default True
        Print ``n/N`` per arm beside the left panel.
    conf_level : float, default 0.95
        Level of the risk-difference interval when it is computed here (``confidence`` is its
        deprecated name).
    terms : sequence of str, optional
        Subset of terms to draw.

    Returns
    -------
    numpy.ndarray of two Axes
        Left (incidence) and right (risk difference).

    References
    ----------
    Amit O, Heiberger RM, Lane PW (2008). Graphical approaches to the analysis of safety data from
    clinical trials. Pharm Stat 7:20-35.

    Examples
    --------
    >>> from kanalysis.safety import ae_incidence
    >>> from kanalysis.plots.safety import ae_dot_plot
    >>> inc = ae_incidence(cohort)  # doctest: +SKIP
    >>> axes = ae_dot_plot(inc, treatment="ketamine", control="midazolam", min_count=5)  # doctest: +SKIP
    >>> axes[0].figure.savefig("ae_dotplot.png")  # doctest: +SKIP
    """
    from kanalysis.safety import ae_risk_difference

    _require(incidence, ["term", "arm", "n_with_event", "n_subjects"], "incidence")
    require_shared(incidence, ["estimate"], "incidence")
    if min_count is not None and min_count < 1:
        raise ConfigurationError(f"`min_count` must be a positive integer or None, not {min_count}.")
    if risk_difference is None:
        level = resolve_conf_level(conf_level, confidence=confidence, where="ae_dot_plot")
        risk_difference = ae_risk_difference(incidence, treatment, control, conf_level=level)
    rd = risk_difference.copy()
    if terms is not None:
        rd = rd.loc[rd["term"].isin(terms)]
    if rd.empty:
        raise ConfigurationError("No adverse-event terms to draw.")

    def small(k: Any) -> bool:
        return min_count is not None and 0 < int(k) < min_count

    rd["_suppressed"] = [
        small(a) or small(b)
        for a, b in zip(rd["n_with_event_treatment"], rd["n_with_event_control"], strict=True)
    ]
    # Suppressed terms go to the bottom in alphabetical order, so their position does not give
    # away their risk difference.
    rd["_rd"] = shared_values(rd, "estimate")
    rd["_lo"] = shared_values(rd, "ci_lower")
    rd["_hi"] = shared_values(rd, "ci_upper")
    rd["_sort_rd"] = rd["_rd"].where(~rd["_suppressed"], -np.inf)
    rd = rd.sort_values(["_sort_rd", "term"], ascending=[True, False]).reset_index(drop=True)
    suppressed = rd["_suppressed"].to_numpy(dtype=bool)
    y = np.arange(len(rd))
    colors = arm_colors([treatment, control])
    markers = {treatment: "o", control: "s"}
    height = max(1.6, 0.6 + 0.22 * len(rd))
    with style_context():
        if axes is None:
            fig, axes = plt.subplots(
                1, 2, figsize=(JOURNAL_WIDTHS["double"], height), sharey=True,
                gridspec_kw={"width_ratios": [1.25, 1]},
            )
        axes = np.asarray(axes)
        left, right = axes[0], axes[1]
        keep = ~suppressed
        for arm, prop_col in ((treatment, "proportion_treatment"), (control, "proportion_control")):
            left.scatter(100 * rd.loc[keep, prop_col].to_numpy(float), y[keep], color=colors[arm],
                         marker=markers[arm], s=18, label=arm, zorder=3)
        for yi in y:
            left.axhline(yi, color="0.9", lw=0.5, zorder=0)
            right.axhline(yi, color="0.9", lw=0.5, zorder=0)
        rdk = rd.loc[keep]
        est = 100 * rdk["_rd"].to_numpy(float)
        right.errorbar(
            est, y[keep],
            xerr=[est - 100 * rdk["_lo"].to_numpy(float),
                  100 * rdk["_hi"].to_numpy(float) - est],
            fmt="o", ms=4, color=OKABE_ITO["black"], ecolor=OKABE_ITO["black"], elinewidth=0.9,
            capsize=0, zorder=3,
        )
        right.axvline(0, color="0.5", lw=0.7, ls="--", zorder=1)
        labels = [f"{t} (suppressed)" if s else str(t)
                  for t, s in zip(rd["term"], suppressed, strict=True)]
        left.set_yticks(y, labels)
        left.set_ylim(-0.6, len(rd) - 0.4)
        left.set_xlim(left=-0.02 * max(1e-9, 100 * rd[["proportion_treatment",
                                                      "proportion_control"]].max().max()))
        left.set_xlabel("Subjects with the event (%)")
        right.set_xlabel(f"Risk difference, {treatment} - {control} (percentage points)")
        right.tick_params(axis="y", left=False)
        left.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, borderaxespad=0.2)
        if show_counts:

            def fmt(k: Any, n: Any) -> str:
                return f"<{min_count}/{int(n)}" if small(k) else f"{int(k)}/{int(n)}"

            text = [
                f"{fmt(a, na)} vs {fmt(b, nb)}"
                for a, na, b, nb in zip(rd["n_with_event_treatment"], rd["n_subjects_treatment"],
                                        rd["n_with_event_control"], rd["n_subjects_control"],
                                        strict=True)
            ]
            for yi, t in zip(y, text, strict=True):
                right.annotate(t, xy=(1.0, yi), xycoords=("axes fraction", "data"),
                               xytext=(4, 0), textcoords="offset points", va="center",
                               ha="left", fontsize=6.5, color="0.3", annotation_clip=False)
    return axes


def ae_incidence_plot(
    incidence: pd.DataFrame,
    *,
    ax: Any = None,
    min_count: int | None = None,
    terms: Sequence[str] | None = None,
) -> Any:
    """Adverse-event incidence with exact CIs per arm, for cohorts without a control arm.

    One row per term, sorted by the largest incidence (top), one dot per arm with its
    Clopper-Pearson interval; use :func:`ae_dot_plot` when there is a control arm to compare.

    Parameters
    ----------
    incidence : DataFrame
        Output of :func:`kanalysis.safety.ae_incidence`.
    ax : matplotlib Axes, optional
    min_count : int, optional
        Privacy: cells with between 1 and ``min_count - 1`` subjects are not drawn, and their term
        is labelled "suppressed" when no arm can be drawn.
    terms : sequence of str, optional
        Subset of terms to draw.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from kanalysis.safety import ae_incidence
    >>> from kanalysis.plots.safety import ae_incidence_plot
    >>> ax = ae_incidence_plot(ae_incidence(cohort), min_count=5)  # doctest: +SKIP
    """
    _require(incidence, ["term", "arm", "n_with_event"], "incidence")
    require_shared(incidence, ["estimate", "ci_lower", "ci_upper"], "incidence")
    if min_count is not None and min_count < 1:
        raise ConfigurationError(f"`min_count` must be a positive integer or None, not {min_count}.")
    data = incidence.copy()
    data["_est"] = shared_values(data, "estimate")
    data["_lo"] = shared_values(data, "ci_lower")
    data["_hi"] = shared_values(data, "ci_upper")
    if terms is not None:
        data = data.loc[data["term"].isin(terms)]
    if data.empty:
        raise ConfigurationError("No adverse-event terms to draw.")
    data["_hidden"] = (
        (data["n_with_event"] > 0) & (data["n_with_event"] < min_count)
        if min_count is not None else False
    )
    visible = data.loc[~data["_hidden"]]
    order = (
        visible.groupby("term")["_est"].max()
        .reindex(sorted(data["term"].unique()))
        .fillna(-1.0)
        .reset_index()
        .sort_values(["_est", "term"], ascending=[True, False])["term"]
        .tolist()
    )
    y_of = {term: i for i, term in enumerate(order)}
    arms = sorted(data["arm"].unique(), key=str)
    colors = arm_colors(arms)
    offsets = np.linspace(-0.15, 0.15, len(arms)) if len(arms) > 1 else [0.0]
    with style_context():
        if ax is None:
            _, ax = plt.subplots(
                figsize=(JOURNAL_WIDTHS["single"], max(1.6, 0.6 + 0.22 * len(order)))
            )
        for arm, off in zip(arms, offsets, strict=True):
            rows = visible.loc[visible["arm"] == arm]
            yy = rows["term"].map(y_of).to_numpy(float) + off
            est = 100 * rows["_est"].to_numpy(float)
            ax.errorbar(
                est, yy,
                xerr=[est - 100 * rows["_lo"].to_numpy(float),
                      100 * rows["_hi"].to_numpy(float) - est],
                fmt="o", ms=4, color=colors[arm], elinewidth=0.9, capsize=0, label=str(arm),
            )
        labels = [
            f"{t} (suppressed)" if t not in set(visible["term"]) else str(t) for t in order
        ]
        ax.set_yticks(np.arange(len(order)), labels)
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.set_xlabel("Subjects with the event (%, exact CI)")
        if len(arms) > 1:
            ax.legend(loc="lower right")
    return ax


# Names of the previous release (kept for one release; every plot is now ``<what>_plot``).
plot_infusion_course = infusion_course_plot
plot_ae_dotplot = ae_dot_plot
plot_ae_incidence = ae_incidence_plot
