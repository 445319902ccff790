"""Figures for durability of response: Kaplan-Meier with an at-risk table, swimmer plot,
cumulative incidence, and response rates by visit.

Each function takes a result object or tidy DataFrame, draws on ``ax`` (a new styled figure when
None) and returns the matplotlib Axes. Functions that print counts take ``min_count``: counts
below it are printed as ``"<min_count"`` (strict privacy mode for real patient data).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from kanalysis.errors import ConfigurationError
from kanalysis.plots._columns import has_column
from kanalysis.plots._columns import values as shared_values
from kanalysis.plots.style import OKABE_ITO, arm_colors, style_context

__all__ = [
    "cumulative_incidence_plot",
    "format_count",
    "km_plot",
    "response_rate_plot",
    "swimmer_plot",
]


def format_count(n: int, min_count: int | None = None) -> str:
    """A count as text; 1 to ``min_count - 1`` is masked as ``"<min_count"``.

    :func:`kanalysis.privacy.format_count` with ``min_count`` as the threshold (None: every
    count shown); 0 is shown, as in the tables.
    """
    from kanalysis.privacy import format_count as privacy_format_count

    return privacy_format_count(n, min_count if min_count is not None else 1)


def _nice_times(t_max: float, n: int = 5) -> np.ndarray:
    """Round tick times from 0 to t_max (multiples of 7 days when that fits)."""
    if t_max <= 0:
        return np.array([0.0])
    for step in (7, 14, 28, 56, 84, 182, 364):
        if t_max / step <= n:
            return np.arange(0, t_max + 1e-9, step, dtype=float)
    raw = t_max / n
    mag = 10 ** np.floor(np.log10(raw))
    step = mag * min((1, 2, 5, 10), key=lambda m: abs(m * mag - raw))
    return np.arange(0, t_max + 1e-9, step, dtype=float)


def km_plot(
    km,
    *,
    ax=None,
    ci: bool = True,
    censor_marks: bool = True,
    at_risk: bool = True,
    times: Sequence[float] | None = None,
    min_count: int | None = None,
    colors: dict | None = None,
    xlabel: str = "Days",
    ylabel: str = "Probability free of relapse",
    **km_kwargs,
) -> Axes:
    """Kaplan-Meier curves with pointwise CI bands and a numbers-at-risk table beneath.

    Parameters
    ----------
    km : KaplanMeierResult or pandas.DataFrame
        A :func:`kanalysis.durability.kaplan_meier` result, or a per-subject table passed to it
        with ``km_kwargs`` (``time``, ``event``, ``group``, ``conf_type``).
    ax : matplotlib Axes, optional
        Axes for the curves. When None, a new figure holds the curves and, below them with a
        shared time axis, the at-risk table. With a given ``ax`` the table is an inset below it.
    ci : bool
        Shade the pointwise CI (the result's ``conf_type``).
    censor_marks : bool
        Tick marks at censoring times.
    at_risk : bool
        Draw the numbers at risk at ``times`` (default: round times up to the end of follow-up).
    min_count : int, optional
        Print at-risk counts below this as ``"<min_count"`` (privacy).
    colors : dict, optional
        Group -> colour (default :func:`kanalysis.plots.style.arm_colors`).

    Returns
    -------
    matplotlib.axes.Axes
        The curve axes; the at-risk table axes is ``ax.at_risk_ax`` (None without a table).
    """
    from kanalysis.durability import KaplanMeierResult, kaplan_meier

    if not isinstance(km, KaplanMeierResult):
        km = kaplan_meier(km, **km_kwargs)
    groups = km.groups
    colors = colors or arm_colors(groups)
    tab = km.table
    t_max = float(tab["time"].max())
    times = _nice_times(t_max) if times is None else np.asarray(times, dtype=float)
    with style_context():
        table_ax = None
        own_table = False
        n_rows = len(groups)
        if ax is None and at_risk:
            _, (ax, table_ax) = plt.subplots(
                2, 1, sharex=True, figsize=(3.5, 2.6 + 0.16 * n_rows),
                gridspec_kw={"height_ratios": [4.0, 0.55 + 0.22 * n_rows]},
            )
            own_table = True
        elif ax is None:
            _, ax = plt.subplots(figsize=(3.5, 2.6))
        elif at_risk:
            table_ax = ax.inset_axes([0.0, -0.30 - 0.07 * n_rows, 1.0, 0.08 + 0.07 * n_rows],
                                     sharex=ax)
        for level in groups:
            c = tab[tab[km.group] == level]
            col = colors.get(level, OKABE_ITO["black"])
            x = np.concatenate([[0.0], c["time"].to_numpy()])
            y = np.concatenate([[1.0], c["survival"].to_numpy()])
            ax.step(x, y, where="post", color=col, lw=1.2, label=str(level))
            if ci:
                lo = np.concatenate([[1.0], c["lower"].to_numpy()])
                hi = np.concatenate([[1.0], c["upper"].to_numpy()])
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(x[ok], lo[ok], hi[ok], step="post", color=col, alpha=0.18,
                                lw=0)
            if censor_marks:
                cens = c[c["n_censor"] > 0]
                ax.plot(cens["time"], cens["survival"], ls="none", marker="|", ms=4,
                        color=col, mew=0.8)
        ax.set_ylim(0, 1.02)
        x_end = max(t_max, times.max())
        # a little room left of day 0 so the first at-risk column clears the row labels
        ax.set_xlim(-0.04 * x_end, x_end * 1.03)
        ax.set_ylabel(ylabel)
        if len(groups) > 1:
            ax.legend(frameon=False, loc="upper right")
        ax.set_title(f"{int(km.conf_level * 100)}% CI: {km.conf_type}", loc="left",
                     fontsize="small")
        if table_ax is not None:
            risk = km.at_risk(times)
            for row, level in enumerate(groups):
                ypos = len(groups) - 1 - row
                for t in times:
                    table_ax.text(t, ypos, format_count(int(risk.loc[level, t]), min_count),
                                  ha="center", va="center", fontsize="small",
                                  color=colors.get(level, OKABE_ITO["black"]))
            table_ax.set_ylim(-0.6, len(groups) - 0.4)
            table_ax.set_yticks(range(len(groups)))
            table_ax.set_yticklabels([str(g) for g in reversed(groups)], fontsize="small")
            table_ax.tick_params(axis="y", length=0, pad=6)
            for side in ("top", "right", "left"):
                table_ax.spines[side].set_visible(False)
            table_ax.set_title("Number at risk", loc="left", fontsize="small")
            table_ax.set_xlabel(xlabel)
            table_ax.set_xticks(times)
            if own_table:
                ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel(xlabel)
            ax.set_xticks(times)
    ax.at_risk_ax = table_ax
    return ax


def cumulative_incidence_plot(
    cif,
    *,
    cause: str = "relapse",
    competing: str | None = "dropout",
    ci: bool = True,
    ax=None,
    colors: dict | None = None,
    xlabel: str = "Days",
    ylabel: str = "Cumulative incidence",
    **cif_kwargs,
) -> Axes:
    """Aalen-Johansen cumulative incidence curves: ``cause`` solid, ``competing`` dashed.

    With ``ci`` the pointwise CI of ``cause`` is shaded (infinitesimal-jackknife SE, as R).

    Parameters
    ----------
    cif : CumulativeIncidenceResult or pandas.DataFrame
        A :func:`kanalysis.durability.cumulative_incidence` result, or a per-subject table
        passed to it with ``cif_kwargs``.
    """
    from kanalysis.durability import CumulativeIncidenceResult, cumulative_incidence

    if not isinstance(cif, CumulativeIncidenceResult):
        cif = cumulative_incidence(cif, **cif_kwargs)
    names = set(cif.causes.values())
    for c in (cause, competing):
        if c is not None and c not in names:
            raise ConfigurationError(f"Unknown cause {c!r}; the result has {sorted(names)}.")
    colors = colors or arm_colors(cif.groups)
    with style_context():
        if ax is None:
            _, ax = plt.subplots(figsize=(3.5, 2.6))
        for level in cif.groups:
            c = cif.table[cif.table[cif.group] == level]
            x = np.concatenate([[0.0], c["time"].to_numpy()])
            col = colors.get(level, OKABE_ITO["black"])
            ax.step(x, np.concatenate([[0.0], c[f"cif_{cause}"].to_numpy()]), where="post",
                    color=col, lw=1.2, label=f"{level}: {cause}")
            if ci:
                lo = np.concatenate([[0.0], c[f"lower_{cause}"].to_numpy()])
                hi = np.concatenate([[0.0], c[f"upper_{cause}"].to_numpy()])
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(x[ok], lo[ok], hi[ok], step="post", color=col, alpha=0.15,
                                lw=0)
            if competing is not None:
                ax.step(x, np.concatenate([[0.0], c[f"cif_{competing}"].to_numpy()]),
                        where="post", color=col, lw=1.0, ls="--", label=f"{level}: {competing}")
        ax.set_ylim(0, 1)
        ax.set_xlim(left=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False, fontsize="x-small", loc="best")
    return ax


def response_rate_plot(
    rates: pd.DataFrame,
    *,
    x: str = "visit",
    group: str = "arm",
    ax=None,
    colors: dict | None = None,
    ylabel: str = "Responders (%)",
    dodge: float = 0.12,
) -> Axes:
    """Response (or remission) rate by visit and arm with Wilson CI error bars.

    Parameters
    ----------
    rates : pandas.DataFrame
        Output of :func:`kanalysis.outcomes.response_rates` (``visit, arm, estimate,
        ci_lower, ci_upper``), visits in time order. A rate blanked (NaN) under its previous
        name (``rate``, ``lower``, ``upper``) is not drawn either.
    """
    missing = [c for c in (x, group) if c not in rates.columns] + [
        c for c in ("estimate", "ci_lower", "ci_upper") if not has_column(rates, c)]
    if missing:
        raise ConfigurationError(
            f"rates has no column(s) {missing}; pass the output of outcomes.response_rates.")
    visits = list(dict.fromkeys(rates[x]))
    levels = sorted(rates[group].unique(), key=str)
    colors = colors or arm_colors(levels)
    offsets = (np.arange(len(levels)) - (len(levels) - 1) / 2) * dodge
    with style_context():
        if ax is None:
            _, ax = plt.subplots(figsize=(3.5, 2.6))
        for off, level in zip(offsets, levels, strict=True):
            r = rates[rates[group] == level].set_index(x).reindex(visits)
            pos = np.arange(len(visits)) + off
            col = colors.get(level, OKABE_ITO["black"])
            y = 100 * shared_values(r, "estimate")
            err = np.vstack([y - 100 * shared_values(r, "ci_lower"),
                             100 * shared_values(r, "ci_upper") - y])
            ax.errorbar(pos, y, yerr=err, color=col, marker="o", ms=3.5, lw=1.0, capsize=2,
                        label=str(level))
        ax.set_xticks(np.arange(len(visits)))
        ax.set_xticklabels([str(v) for v in visits])
        ax.set_ylim(0, 100)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("Visit")
        if len(levels) > 1:
            ax.legend(frameon=False)
    return ax


def swimmer_plot(
    cohort,
    table: pd.DataFrame | None = None,
    *,
    scale: str | None = None,
    ax=None,
    max_subjects: int | None = 60,
    colors: dict | None = None,
    sort_by: str | None = None,
) -> Axes:
    """One horizontal lane per subject: follow-up, response periods, infusions, relapse, censoring.

    Lanes run from the first infusion (day 0) to the last assessment. The lane is drawn thick and
    coloured by arm while the subject is in response (from one responding assessment to the
    next assessment), thin grey otherwise. Infusions are ticks (``|`` induction, ``v``
    maintenance); relapse is a red ``X`` and censoring an open ``>`` at the day in the
    durability table.

    Parameters
    ----------
    cohort : kanalysis.Cohort
        Source of assessments and infusions.
    table : pandas.DataFrame, optional
        Output of :func:`kanalysis.durability.derive` (adds relapse / censoring symbols).
        Without it all subjects are drawn without those symbols.
    max_subjects : int, optional
        Draw at most this many subjects (the first after sorting), to keep lanes readable.
    sort_by : {"time", "follow_up"}, optional
        Lane order: by the durability table's ``time`` (default when ``table`` is given) or by
        length of follow-up.
    """
    from kanalysis.outcomes import responder_status

    status = responder_status(cohort, scale)
    obs = status[status["score"].notna()]
    last_day = obs.groupby("subject_id")["day"].max()
    subjects = cohort.subjects.set_index("subject_id")
    ids = list(table["subject_id"]) if table is not None else list(last_day.index)
    ids = [i for i in ids if i in last_day.index]
    if sort_by is None:
        sort_by = "time" if table is not None else "follow_up"
    if sort_by == "time" and table is not None:
        key = table.set_index("subject_id")["time"]
    elif sort_by == "follow_up":
        key = last_day
    else:
        raise ConfigurationError(f"sort_by must be 'follow_up' or 'time', got {sort_by!r}.")
    ids = sorted(ids, key=lambda i: (key.get(i, 0), str(i)))
    if max_subjects is not None:
        ids = ids[-max_subjects:]
    arms = subjects.loc[ids, "arm"] if "arm" in subjects.columns else pd.Series("all", ids)
    colors = colors or arm_colors(arms.unique())
    inf = cohort.infusions
    with style_context():
        if ax is None:
            _, ax = plt.subplots(figsize=(3.5, max(2.4, 0.08 * len(ids) + 1.4)))
        lane = {sid: k for k, sid in enumerate(ids)}
        ax.hlines(range(len(ids)), 0, [last_day[i] for i in ids], color="0.75", lw=0.8, zorder=0.5)
        resp_segments = {}
        for sid, g in obs[obs["subject_id"].isin(ids)].groupby("subject_id"):
            d = g["day"].to_numpy()
            r = g["response"].to_numpy()
            ends = np.append(d[1:], d[-1])
            segs: list[tuple[float, float]] = []
            for k in range(len(d)):
                if r[k] != 1 or ends[k] <= d[k]:
                    continue
                if segs and abs(segs[-1][0] + segs[-1][1] - d[k]) < 1e-9:
                    segs[-1] = (segs[-1][0], float(ends[k]) - segs[-1][0])  # contiguous: extend
                else:
                    segs.append((float(d[k]), float(ends[k] - d[k])))
            if segs:
                ax.broken_barh(segs, (lane[sid] - 0.3, 0.6),
                               color=colors.get(arms[sid], OKABE_ITO["blue"]), lw=0)
                resp_segments[sid] = segs
        sel = inf[inf["subject_id"].isin(ids)]
        for phase, marker in (("induction", "|"), ("maintenance", "v")):
            p = sel[sel["phase"] == phase] if "phase" in sel.columns else sel
            if len(p):
                # orange stays visible on the black, blue and grey lanes
                ax.plot(p["day"], p["subject_id"].map(lane), ls="none", marker=marker, ms=2.5,
                        color=OKABE_ITO["orange"], mew=0.8, label=f"{phase} infusion")
        if table is not None:
            t = table[table["subject_id"].isin(ids)]
            rel = t[t["event"] == 1]
            cen = t[t["event"] == 0]
            ax.plot(rel["event_day"], rel["subject_id"].map(lane), ls="none", marker="X", ms=4,
                    color=OKABE_ITO["vermillion"], label="relapse")
            ax.plot(cen["event_day"], cen["subject_id"].map(lane), ls="none", marker=">", ms=3.5,
                    mfc="none", color="0.2", label="censored")
        ax.set_yticks([])
        ax.set_ylim(-1, len(ids))
        ax.set_xlim(left=min(0.0, float(obs["day"].min()) if len(obs) else 0.0))
        ax.set_xlabel("Study day")
        ax.set_ylabel("Subjects")
        handles, labels = ax.get_legend_handles_labels()
        for level in sorted(arms.unique(), key=str):
            handles.append(plt.Rectangle((0, 0), 1, 1, color=colors.get(level)))
            labels.append(f"in response ({level})")
        ax.legend(handles, labels, frameon=False, fontsize="x-small", loc="upper center",
                  bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax.response_segments = resp_segments
    return ax
