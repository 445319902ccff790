"""Symptom trajectories: individual courses with the arm mean and CI, and LS-means by visit.

:func:`visit_summary` computes the numbers (mean, SD, t-based CI by visit and arm);
:func:`spaghetti_plot` and :func:`lsmeans_plot` draw them. Plot functions take tidy DataFrames, draw on
``ax`` (a new styled single-column figure when None) and return the Axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.plots.style import arm_colors, figure, style_context
from kanalysis.requirements import require_columns
from kanalysis.results import resolve_conf_level

__all__ = ["lsmeans_plot", "schedule_plot", "spaghetti", "spaghetti_plot", "trajectory_data",
           "visit_summary"]


def _require(data: pd.DataFrame, columns: Sequence[str | None], what: str) -> None:
    require_columns(data, columns, table="the data", what=what, allow_missing=True)


def trajectory_data(cohort: Any, scale: str | None = None) -> pd.DataFrame:
    """Assessments of one scale with the subject's arm and time columns for modelling.

    Parameters
    ----------
    cohort : kanalysis.Cohort
    scale : str, optional
        Default: the cohort's primary scale.

    Returns
    -------
    DataFrame
        The assessment columns plus ``arm``, ``hours`` (``day * 24``), ``week`` (``day / 7``) and
        ``log_time`` (``log(1 + hours)``, 0 for pre-infusion rows), sorted by subject and visit;
        rows without a score are dropped.
    """
    scale = scale or cohort.primary_scale
    data = cohort.assessments
    if scale not in set(data["scale"]):
        raise DataValidationError(
            f"The assessments table has no rows for scale {scale!r}; scales present: "
            f"{sorted(set(data['scale']))}."
        )
    out = data[(data["scale"] == scale) & data["score"].notna()].merge(
        cohort.subjects[["subject_id", "arm"]], on="subject_id", how="left"
    )
    out["score"] = out["score"].astype(float)
    out["hours"] = out["day"] * 24.0
    out["week"] = out["day"] / 7.0
    out["log_time"] = np.log1p(out["hours"].clip(lower=0.0))
    for col in ("subject_id", "arm", "visit", "scale"):
        out[col] = out[col].astype(object)
    return out.sort_values(["subject_id", "visit_number"]).reset_index(drop=True)


def visit_summary(
    data: pd.DataFrame,
    *,
    y: str = "score",
    visit: str = "visit_number",
    x: str = "day",
    group: str | None = "arm",
    conf_level: float | None = None,
    label: str | None = "visit",
    min_count: int | None = None,
    alpha: float | None = None,
) -> pd.DataFrame:
    """Mean and t-based confidence interval of ``y`` by visit (and arm).

    .. math:: \\bar y \\pm t_{1-\\alpha/2,\\, n-1}\\, s / \\sqrt{n}

    Parameters
    ----------
    data : DataFrame
        Long data, one row per subject and visit.
    y, visit, x, group : str
        Outcome, visit key, time column (summarised by its median per visit), grouping column
        (None for one group).
    conf_level : float, default 0.95
        Confidence level (``alpha`` = 1 - conf_level is its deprecated spelling).
    label : str, optional
        A visit label column carried into the output.
    min_count : int, optional
        Privacy: cells with fewer than ``min_count`` values get missing statistics and ``n``
        (a mean of a handful of patients nearly describes each of them).

    Returns
    -------
    DataFrame
        Columns ``<group>`` (when given), ``<visit>``, ``<label>``, ``x`` (median time), ``n``,
        ``estimate`` (the mean), ``std_error``, ``df``, ``ci_lower``, ``ci_upper``, and ``mean``,
        ``sd``, ``se`` (``mean``/``se`` kept for one release). Visits with one value have no CI.

    Notes
    -----
    Observed-case summaries: under dropout related to the outcome they are biased; the model-based
    LS-means of :func:`kanalysis.mmrm` are the estimates to report.
    """
    level = resolve_conf_level(conf_level, alpha=alpha, where="visit_summary")
    _require(data, [y, visit, x, group, label], "visit_summary")
    keys = [k for k in (group, visit) if k is not None]
    d = data[data[y].notna()]
    agg = d.groupby(keys, sort=True).agg(
        x=(x, "median"), n=(y, "size"), mean=(y, "mean"), sd=(y, "std")
    )
    if label is not None and label != visit:
        agg[label] = d.groupby(keys, sort=True)[label].first()
    agg = agg.reset_index()
    agg["se"] = agg["sd"] / np.sqrt(agg["n"])
    tq = stats.t.ppf(1 - (1 - level) / 2, np.maximum(agg["n"] - 1, 1))
    half = np.where(agg["n"] > 1, tq * agg["se"], np.nan)
    agg["ci_lower"] = agg["mean"] - half
    agg["ci_upper"] = agg["mean"] + half
    agg["estimate"], agg["std_error"] = agg["mean"], agg["se"]
    agg["df"] = (agg["n"] - 1).where(agg["n"] > 1)
    stats_cols = ["n", "estimate", "std_error", "df", "ci_lower", "ci_upper", "mean", "sd", "se"]
    if min_count is not None:
        small = agg["n"] < min_count
        agg["n"] = agg["n"].astype(float)
        agg.loc[small, stats_cols] = np.nan
    cols = [
        c
        for c in (group, visit, label, "x", *stats_cols)
        if c is not None and c in agg.columns
    ]
    out = agg[list(dict.fromkeys(cols))]
    out.attrs["count_columns"] = {"n": None}
    return out


def _axes(ax, width: str = "single", aspect: float = 0.7):
    if ax is not None:
        return ax
    _, new_ax = figure(width, aspect=aspect)
    return new_ax


def spaghetti_plot(
    data: pd.DataFrame,
    *,
    x: str = "day",
    y: str = "score",
    subject: str = "subject_id",
    group: str | None = "arm",
    visit: str = "visit_number",
    summary: pd.DataFrame | None = None,
    conf_level: float | None = None,
    show_individuals: bool = True,
    max_subjects: int | None = None,
    colors: Mapping[Any, str] | None = None,
    xscale: str = "linear",
    xlabel: str = "Study day",
    ylabel: str | None = None,
    ax=None,
    alpha: float | None = None,
):
    """Individual trajectories (thin lines) with the mean and CI by arm (thick line and band).

    Parameters
    ----------
    data : DataFrame
        Long data (e.g. from :func:`trajectory_data`).
    x, y, subject, group, visit : str
        Column names; ``group=None`` draws one group.
    summary : DataFrame, optional
        Output of :func:`visit_summary`; computed from ``data`` when None.
    conf_level : float, default 0.95
        Confidence level of the band (``alpha`` = 1 - conf_level is its deprecated spelling;
        it never meant transparency).
    show_individuals : bool
        Draw each subject's course. Pass False for privacy-strict outputs: individual courses are
        row-level records.
    max_subjects : int, optional
        Draw at most this many subjects per arm (the first by subject id), to keep files small.
    colors : mapping, optional
        Arm -> colour; default :func:`kanalysis.plots.style.arm_colors`.
    xscale : {"linear", "symlog"}
        ``"symlog"`` spreads the first hours of ketamine trials (40 min, 4 h, 24 h).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    _require(data, [x, y, subject, group, visit], "spaghetti")
    if summary is None:
        level = resolve_conf_level(conf_level, alpha=alpha, where="spaghetti_plot")
        summary = visit_summary(data, y=y, visit=visit, x=x, group=group, conf_level=level,
                                label=None)
    groups = sorted(data[group].dropna().unique(), key=str) if group else [None]
    colors = dict(colors) if colors is not None else arm_colors(g for g in groups if g is not None)
    with style_context():
        ax = _axes(ax)
        for g in groups:
            color = colors.get(g, "0.3") if g is not None else "C0"
            part = data if g is None else data[data[group] == g]
            if show_individuals:
                subjects = sorted(part[subject].unique(), key=str)
                if max_subjects is not None:
                    subjects = subjects[:max_subjects]
                for s in subjects:
                    one = part[part[subject] == s].sort_values(x)
                    ax.plot(one[x], one[y], color=color, alpha=0.15, linewidth=0.4, zorder=1)
            summ = summary if g is None else summary[summary[group] == g]
            summ = summ.sort_values("x")
            ax.fill_between(
                summ["x"],
                summ["ci_lower"],
                summ["ci_upper"],
                color=color,
                alpha=0.25,
                linewidth=0,
                zorder=2,
            )
            ax.plot(
                summ["x"],
                summ["mean"],
                color=color,
                linewidth=1.6,
                marker="o",
                markersize=2.5,
                zorder=3,
                label=str(g) if g is not None else "mean",
            )
        if xscale == "symlog":
            ax.set_xscale("symlog", linthresh=1.0)
            top = float(np.nanmax(data[x])) if len(data) else 1.0
            ticks = [t for t in (0, 1, 3, 7, 14, 28, 56, 84, 112, 168) if t <= top * 1.05]
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) for t in ticks])
            ax.minorticks_off()
        elif xscale != "linear":
            raise ConfigurationError(f"`xscale` must be 'linear' or 'symlog', not {xscale!r}.")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel or y)
        if group is not None:
            ax.legend(title=None, loc="best")
    return ax


def lsmeans_plot(
    lsmeans: pd.DataFrame,
    *,
    x: str = "visit",
    group: str | None = "arm",
    estimate: str = "estimate",
    lower: str = "ci_lower",
    upper: str = "ci_upper",
    order: Sequence[Any] | None = None,
    positions: Mapping[Any, float] | None = None,
    dodge: float = 0.12,
    colors: Mapping[Any, str] | None = None,
    xlabel: str = "Visit",
    ylabel: str = "LS-mean",
    reference_line: float | None = 0.0,
    ax=None,
):
    """LS-means with confidence intervals by visit and arm (points, error bars, joining lines).

    Parameters
    ----------
    lsmeans : DataFrame
        E.g. ``MMRMResult.lsmeans(specs="arm", by="visit")``: one row per visit and arm.
    x, group, estimate, lower, upper : str
        Column names.
    order : sequence, optional
        Visit order; default the order of first appearance.
    positions : mapping, optional
        Visit -> x position (e.g. study day); default 0, 1, 2, ... with visit labels as ticks.
    dodge : float
        Horizontal offset between arms, as a fraction of the smallest gap between positions.
    reference_line : float or None
        Draw a horizontal line (0 for change from baseline).

    Returns
    -------
    matplotlib.axes.Axes
    """
    _require(lsmeans, [x, group, estimate, lower, upper], "lsmeans_plot")
    order = list(order) if order is not None else list(dict.fromkeys(lsmeans[x]))
    if positions is None:
        pos = {v: float(i) for i, v in enumerate(order)}
        ticks = True
    else:
        pos = {v: float(positions[v]) for v in order}
        ticks = False
    gaps = np.diff(sorted(pos.values()))
    step = float(gaps.min()) if gaps.size else 1.0
    groups = sorted(lsmeans[group].dropna().unique(), key=str) if group else [None]
    colors = dict(colors) if colors is not None else arm_colors(g for g in groups if g is not None)
    with style_context():
        ax = _axes(ax)
        if reference_line is not None:
            ax.axhline(reference_line, color="0.6", linewidth=0.6, zorder=0)
        for k, g in enumerate(groups):
            part = lsmeans if g is None else lsmeans[lsmeans[group] == g]
            part = part[part[x].isin(pos)]
            offset = (k - (len(groups) - 1) / 2) * dodge * step
            xs = part[x].map(pos).to_numpy(dtype=float) + offset
            idx = np.argsort(xs)
            est = part[estimate].to_numpy(dtype=float)[idx]
            lo = part[lower].to_numpy(dtype=float)[idx]
            hi = part[upper].to_numpy(dtype=float)[idx]
            color = colors.get(g, "C0") if g is not None else "C0"
            ax.errorbar(
                xs[idx],
                est,
                yerr=[est - lo, hi - est],
                color=color,
                marker="o",
                markersize=3,
                capsize=2,
                linewidth=1.0,
                elinewidth=0.8,
                label=str(g) if g is not None else None,
            )
        if ticks:
            ax.set_xticks([pos[v] for v in order])
            ax.set_xticklabels([str(v) for v in order], rotation=45, ha="right")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if group is not None:
            ax.legend(loc="best")
    return ax


def schedule_plot(
    assessments: pd.DataFrame,
    infusions: pd.DataFrame | None = None,
    *,
    group: str = "group",
    day: str = "median_day",
    label: str = "visit",
    colors: Mapping[Any, str] | None = None,
    xscale: str = "auto",
    max_labels: int = 12,
    ax=None,
):
    """Study schedule by arm: assessment visits (circles) and infusions (triangles beneath).

    Parameters
    ----------
    assessments : DataFrame
        :func:`kanalysis.tables.assessment_schedule` (one row per visit and arm).
    infusions : DataFrame, optional
        :func:`kanalysis.tables.infusion_schedule` (one row per infusion number and arm).
    group, day, label : str
        Column names.
    xscale : {"auto", "symlog", "linear"}
        ``"symlog"`` spreads the first hours; ``"auto"`` uses it when follow-up ends within a
        month, a linear axis otherwise.
    max_labels : int
        Visit labels are written above the top arm when there are at most this many visits.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _require(assessments, [group, day, label], "schedule_plot")
    if xscale not in ("auto", "symlog", "linear"):
        raise ConfigurationError(f"`xscale` must be 'auto', 'symlog' or 'linear', not {xscale!r}.")
    groups = sorted(assessments[group].dropna().unique(), key=str)
    colors = dict(colors) if colors is not None else arm_colors(groups)
    top = float(np.nanmax(assessments[day])) if len(assessments) else 1.0
    if xscale == "auto":
        xscale = "symlog" if top <= 31 else "linear"
    with style_context():
        ax = _axes(ax, aspect=0.3 + 0.12 * len(groups))
        for k, g in enumerate(groups):
            y = float(len(groups) - 1 - k)
            visits = assessments[assessments[group] == g]
            ax.scatter(
                visits[day],
                np.full(len(visits), y),
                s=12,
                color=colors.get(g, "C0"),
                zorder=3,
                label="assessment" if k == 0 else None,
            )
            if k == 0 and visits[label].nunique() <= max_labels:
                for x_value, text in zip(visits[day], visits[label], strict=True):
                    ax.annotate(
                        str(text),
                        (x_value, y),
                        xytext=(0, 5),
                        textcoords="offset points",
                        rotation=60,
                        fontsize="x-small",
                        ha="left",
                        va="bottom",
                    )
            if infusions is not None and group in infusions.columns:
                inf = infusions[infusions[group] == g].drop_duplicates(day)
                ax.scatter(
                    inf[day],
                    np.full(len(inf), y - 0.25),
                    marker="^",
                    s=12,
                    color="0.35",
                    zorder=3,
                    label="infusion" if k == 0 else None,
                )
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([str(g) for g in reversed(groups)])
        ax.set_ylim(-0.6, len(groups) - 0.4 + 0.9)
        if xscale == "symlog":
            ax.set_xscale("symlog", linthresh=1.0)
            ticks = [t for t in (0, 1, 3, 7, 14, 28) if t <= top * 1.05]
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel("Study day")
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", length=0)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False)
    return ax


#: Name of the previous release (kept for one release; every plot is now ``<what>_plot``).
spaghetti = spaghetti_plot
