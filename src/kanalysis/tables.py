"""Report tables: baseline characteristics by arm (Table 1), subject flow, schedules, and writers.

Every table is a tidy pandas DataFrame; :func:`write_table` saves it as CSV and as a booktabs
LaTeX table, atomically (a temporary file moved into place), so a report never holds a half-written
file. With ``privacy="strict"`` the counts go through :func:`kanalysis.privacy.suppress_small_counts`
and summary statistics of groups smaller than ``min_cell_count`` are withheld, so that no cell of a
shared table describes fewer than ``min_cell_count`` patients.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis._io import atomic_write_bytes, atomic_write_text
from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.results import RESULT_COLUMNS
from kanalysis.rules import DEFAULT_MIN_CELL_COUNT

__all__ = [
    "DEFAULT_CATEGORICAL",
    "DEFAULT_CONTINUOUS",
    "DEFAULT_LABELS",
    "PRIVACY_MODES",
    "TableOne",
    "apply_privacy",
    "assessment_schedule",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_privacy",
    "infusion_schedule",
    "pool_rare",
    "subject_flow",
    "suppress_proportions",
    "table_one",
    "to_latex",
    "validation_summary",
    "write_table",
]

PRIVACY_MODES = ("none", "strict")

#: Continuous baseline variables of the data model and how each is summarised.
DEFAULT_CONTINUOUS: dict[str, str] = {
    "age": "mean_sd",
    "bmi": "mean_sd",
    "n_failed_trials": "median_iqr",
    "episode_duration_months": "median_iqr",
}

#: Categorical baseline variables of the data model.
DEFAULT_CATEGORICAL: tuple[str, ...] = ("sex", "anxious_distress", "family_history_aud")

DEFAULT_LABELS: dict[str, str] = {
    "age": "Age, years",
    "bmi": "BMI, kg/m2",
    "n_failed_trials": "Failed antidepressant trials",
    "episode_duration_months": "Episode duration, months",
    "sex": "Sex",
    "anxious_distress": "Anxious distress",
    "family_history_aud": "Family history of alcohol use disorder",
    "baseline_score": "Baseline score",
}

OVERALL = "overall"


# --------------------------------------------------------------------------------------------
# Privacy
# --------------------------------------------------------------------------------------------
def check_privacy(privacy: str, min_cell_count: int = DEFAULT_MIN_CELL_COUNT) -> None:
    """Raise :class:`ConfigurationError` for an unknown privacy mode or a bad threshold."""
    if privacy not in PRIVACY_MODES:
        raise ConfigurationError(
            f"The value for `privacy` must be one of {list(PRIVACY_MODES)}, but {privacy!r} was passed."
        )
    if isinstance(min_cell_count, bool) or not isinstance(min_cell_count, (int, np.integer)):
        raise ConfigurationError(
            f"`min_cell_count` must be an integer, but {min_cell_count!r} was passed."
        )
    if min_cell_count < 1:
        raise ConfigurationError(f"`min_cell_count` must be >= 1, but {min_cell_count} was passed.")


def apply_privacy(
    table: pd.DataFrame,
    count_column: str,
    *,
    index_columns: Sequence[str],
    group_column: str = "group",
    privacy: str = "none",
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
    margins: str = "both",
) -> pd.DataFrame:
    """Suppress small counts of a long table when ``privacy == "strict"``.

    The long table is laid out as a grid (``index_columns`` x ``group_column``) and passed to
    :func:`kanalysis.privacy.suppress_small_counts`, which adds secondary suppression where a
    published total would give a hidden cell back. Suppressed counts become the text
    ``"<min_cell_count>"``; with ``privacy="none"`` the table is returned unchanged.

    Returns
    -------
    DataFrame
        A copy of ``table``; in strict mode ``count_column`` holds text and a boolean
        ``suppressed`` column marks the hidden cells.
    """
    check_privacy(privacy, min_cell_count)
    if privacy == "none" or table.empty:
        return table
    from kanalysis.privacy import suppress_small_counts

    index_columns = list(index_columns)
    wide = table.pivot_table(
        index=index_columns,
        columns=group_column,
        values=count_column,
        aggfunc="first",
        sort=False,
        dropna=False,
    )
    # The overall column is treated as one more cell rather than as a row total: a published
    # total is then protected along its own column too (arm N minus shown levels).
    groups = list(wide.columns)
    _, mask = suppress_small_counts(
        wide.reset_index(drop=True), groups, min_cell_count, margins=margins, return_mask=True
    )
    mask.index = wide.index
    hidden = (
        mask.stack().rename("suppressed").reset_index().rename(columns={"level_1": group_column})
    )
    if group_column not in hidden.columns:
        hidden = hidden.rename(columns={hidden.columns[len(index_columns)]: group_column})
    out = table.drop(columns=["suppressed"], errors="ignore").merge(
        hidden, on=[*index_columns, group_column], how="left"
    )
    out["suppressed"] = out["suppressed"].fillna(False).astype(bool)
    label = f"<{min_cell_count}"
    out[count_column] = [
        label if hide else ("NA" if pd.isna(v) else f"{v:g}")
        for v, hide in zip(out[count_column], out["suppressed"], strict=True)
    ]
    return out


def suppress_proportions(
    table: pd.DataFrame,
    count: str,
    total: str | None = None,
    *,
    derived: Sequence[str] = (),
    privacy: str = "none",
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> pd.DataFrame:
    """Hide small counts of a table of proportions (responders of n, subjects with an event).

    In strict mode a row's ``count`` is hidden when it, its complement ``total - count`` (which a
    reader gets by subtraction) or ``total`` is below ``min_cell_count``; the ``derived`` columns
    (rate, CI) of that row are hidden with it, and so are the shared result columns
    (``estimate``, ``std_error``, ``ci_lower``, ``ci_upper``, ``statistic``, ``p_value``) the
    table has; a hidden ``total`` is shown as text. Rows are
    treated one by one: use :func:`apply_privacy` for cross-tabulations whose margins add up.

    Returns
    -------
    DataFrame
        A copy; in strict mode ``count`` (and ``total``) hold text such as ``"<11"``, and a boolean
        ``suppressed`` column marks the hidden rows.
    """
    check_privacy(privacy, min_cell_count)
    if privacy == "none":
        return table
    out = table.copy()
    k = pd.to_numeric(out[count], errors="coerce")
    small = (k > 0) & (k < min_cell_count)
    total_small = pd.Series(False, index=out.index)
    if total is not None:
        n = pd.to_numeric(out[total], errors="coerce")
        rest = n - k
        small |= (rest > 0) & (rest < min_cell_count)
        total_small = (n > 0) & (n < min_cell_count)
        small |= total_small
    label = f"<{min_cell_count}"

    def text(values: pd.Series, hide: pd.Series) -> list[str]:
        return [
            label if h else ("NA" if pd.isna(v) else f"{v:g}")
            for v, h in zip(values, hide, strict=True)
        ]

    out[count] = text(k, small)
    if total is not None:
        out[total] = text(pd.to_numeric(out[total], errors="coerce"), total_small)
        if "n" in out.columns and total != "n" and count != "n":
            # the shared ``n`` column repeats the denominator: hidden with it
            out["n"] = text(pd.to_numeric(out["n"], errors="coerce"), total_small)
    # The shared result columns (estimate, its CI, ...) hold the same numbers as the rate and
    # CI columns a caller names in ``derived`` (tables carry both names for one release), so
    # they are hidden with them.
    protocol = [c for c in RESULT_COLUMNS if c in out.columns and c not in (count, total)
                and c not in ("n", "df")]
    for col in dict.fromkeys([*derived, *protocol]):
        out[col] = out[col].astype(float).mask(small)
    out["suppressed"] = small.to_numpy()
    return out


def pool_rare(
    table: pd.DataFrame,
    column: str,
    *,
    count_by: str | None = "subject_id",
    privacy: str = "none",
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
    other: str = "other",
) -> pd.DataFrame:
    """Relabel rare categories of ``column`` as ``other`` in strict mode.

    A rare label can identify a patient even when its count is hidden (the one patient with a rare
    adverse event), so in strict mode categories seen for fewer than ``min_cell_count`` distinct
    ``count_by`` values (or rows, when ``count_by`` is None) are pooled with
    :func:`kanalysis.privacy.collapse_rare_categories`. Returns a copy; unchanged in mode "none".
    """
    check_privacy(privacy, min_cell_count)
    if privacy == "none" or table.empty:
        return table
    from kanalysis.privacy import collapse_rare_categories

    counts = None
    if count_by is not None:
        counts = table.groupby(column)[count_by].nunique()
    out = table.copy()
    out[column] = collapse_rare_categories(
        out[column].astype(object), min_cell_count, other=other, count=counts
    )
    return out


# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------
@dataclass
class TableOne:
    """Baseline characteristics by group.

    Attributes
    ----------
    long : pandas.DataFrame
        Tidy numbers, one row per variable, level and group: ``variable``, ``label``, ``level``,
        ``group``, ``n`` (non-missing), ``count``, ``percent``, ``mean``, ``sd``, ``median``,
        ``q1``, ``q3``, ``n_missing``, ``summary`` (how the row is summarised) and ``display``.
    group_sizes : pandas.Series
        Subjects per group (including ``"overall"``).
    group : str
        Grouping column.
    privacy : str
        Privacy mode the table was built with.
    """

    long: pd.DataFrame
    group_sizes: pd.Series
    group: str
    privacy: str = "none"

    def to_frame(self) -> pd.DataFrame:
        """Wide display table: ``characteristic`` then one column per group, ``"<arm> (N=..)"``."""
        long = self.long.copy()
        long["characteristic"] = np.where(
            long["level"].eq(""), long["label"], "  " + long["level"].astype(str)
        )
        order = list(dict.fromkeys(long["group"]))
        wide = long.pivot_table(
            index=["row_order", "characteristic"],
            columns="group",
            values="display",
            aggfunc="first",
            sort=False,
        )
        wide = wide.reset_index().sort_values("row_order").drop(columns="row_order")
        header = {g: f"{g} (N={self.group_sizes.get(g, '')})" for g in order}
        wide = wide[["characteristic", *order]].rename(columns=header)
        wide.columns.name = None
        return wide.reset_index(drop=True)

    def summary(self) -> str:
        return self.to_frame().to_string(index=False)

    def __repr__(self) -> str:
        groups = ", ".join(f"{g}: {n}" for g, n in self.group_sizes.items())
        return f"<TableOne by {self.group!r} ({groups}), privacy={self.privacy!r}>"


def _fmt(value: float, digits: int) -> str:
    return "NA" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _continuous_rows(values: pd.Series, how: str, digits: int, n_total: int) -> dict[str, Any]:
    x = pd.to_numeric(values, errors="coerce").dropna()
    n = int(x.size)
    row: dict[str, Any] = {
        "n": n,
        "count": np.nan,
        "percent": np.nan,
        "mean": float(x.mean()) if n else np.nan,
        "sd": float(x.std(ddof=1)) if n > 1 else np.nan,
        "median": float(x.median()) if n else np.nan,
        "q1": float(x.quantile(0.25)) if n else np.nan,
        "q3": float(x.quantile(0.75)) if n else np.nan,
        "n_missing": int(n_total - n),
        "summary": how,
    }
    if how == "mean_sd":
        row["display"] = f"{_fmt(row['mean'], digits)} ({_fmt(row['sd'], digits)})"
    else:
        row["display"] = (
            f"{_fmt(row['median'], digits)} [{_fmt(row['q1'], digits)}, {_fmt(row['q3'], digits)}]"
        )
    return row


def table_one(
    subjects: pd.DataFrame,
    *,
    group: str = "arm",
    continuous: Mapping[str, str] | Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    overall: bool = True,
    digits: int = 1,
    privacy: str = "none",
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> TableOne:
    """Baseline characteristics by arm ("Table 1").

    Continuous variables are summarised as mean (SD) or median [Q1, Q3]; categorical variables as
    n (%) of non-missing values per level. Binary 0/1 indicators show the "1" level only.

    Parameters
    ----------
    subjects : DataFrame
        One row per subject (the cohort's ``subjects`` table, optionally with extra columns such as
        ``baseline_score``).
    group : str, default "arm"
        Grouping column.
    continuous : mapping or sequence, optional
        Column -> ``"mean_sd"`` or ``"median_iqr"``; a plain list means mean (SD). Defaults to the
        data model's continuous variables present in ``subjects``.
    categorical : sequence of str, optional
        Categorical columns. Defaults to the data model's categorical variables present.
    labels : mapping, optional
        Column -> row label; defaults to :data:`DEFAULT_LABELS`, else the column name.
    overall : bool, default True
        Add an ``"overall"`` column.
    digits : int, default 1
        Decimals of summary statistics.
    privacy : {"none", "strict"}
        ``"strict"`` suppresses counts below ``min_cell_count`` (with secondary suppression) and
        withholds statistics of groups with fewer non-missing values than ``min_cell_count``.
    min_cell_count : int, default 11
        Smallest count shown in strict mode.

    Returns
    -------
    TableOne
        ``.long`` holds the numbers, ``.to_frame()`` the display table.

    Notes
    -----
    SD uses the n - 1 denominator; quartiles use linear interpolation (R ``quantile`` type 7).
    Percentages are of the non-missing values; missing counts are in ``n_missing``. A variable
    missing for any subject gets a "Missing" row, n (% of the group), as journals ask (CONSORT
    2010 item 15, STROBE item 14b); in strict privacy its small counts are suppressed like the
    level counts.
    """
    check_privacy(privacy, min_cell_count)
    if group not in subjects.columns:
        raise DataValidationError(
            f"Column {group!r} (the `group` argument) is not in the subjects table; "
            f"available columns: {list(subjects.columns)}."
        )
    if continuous is None:
        continuous = {c: h for c, h in DEFAULT_CONTINUOUS.items() if c in subjects.columns}
    elif not isinstance(continuous, Mapping):
        continuous = dict.fromkeys(continuous, "mean_sd")
    if categorical is None:
        categorical = [c for c in DEFAULT_CATEGORICAL if c in subjects.columns]
    all_labels = {**DEFAULT_LABELS, **(labels or {})}
    for col, how in continuous.items():
        if how not in ("mean_sd", "median_iqr"):
            raise ConfigurationError(
                f"Summary for {col!r} must be 'mean_sd' or 'median_iqr', but {how!r} was passed."
            )
    missing = [c for c in [*continuous, *categorical] if c not in subjects.columns]
    if missing:
        raise DataValidationError(
            f"Table 1 columns {missing} are not in the subjects table; pass `continuous` / "
            "`categorical` naming existing columns."
        )

    if privacy == "strict":
        # Rare level names could identify a patient even with their counts hidden.
        for col in categorical:
            if not set(subjects[col].dropna().unique()) <= {0, 1}:
                subjects = pool_rare(
                    subjects, col, count_by=None, privacy=privacy, min_cell_count=min_cell_count
                )
    groups: list[tuple[str, pd.DataFrame]] = [
        (str(g), d) for g, d in subjects.groupby(group, sort=True, dropna=False)
    ]
    if overall:
        groups.append((OVERALL, subjects))
    sizes = pd.Series({g: len(d) for g, d in groups}, name="n_subjects")

    rows: list[dict[str, Any]] = []
    order = 0
    for col, how in continuous.items():
        for g, d in groups:
            row = _continuous_rows(d[col], how, digits, len(d))
            rows.append(
                {
                    "row_order": order,
                    "variable": col,
                    "label": all_labels.get(col, col),
                    "level": "",
                    "group": g,
                    **row,
                }
            )
        order += 1
    for col in categorical:
        values = subjects[col]
        levels = sorted(values.dropna().unique().tolist(), key=str)
        binary = set(levels) <= {0, 1} and len(levels) > 0
        # Binary indicators show the "1" row only, but the "0" row is kept until privacy has
        # been applied: N minus the shown count would otherwise give it back.
        shown = sorted(set(levels) | {1}) if binary else levels
        header_order = order
        if not binary:
            # A header row carries the variable label; levels are indented beneath it.
            for g, _d in groups:
                rows.append(
                    {
                        "row_order": header_order,
                        "variable": col,
                        "label": all_labels.get(col, col),
                        "level": "",
                        "group": g,
                        "n": np.nan,
                        "count": np.nan,
                        "percent": np.nan,
                        "mean": np.nan,
                        "sd": np.nan,
                        "median": np.nan,
                        "q1": np.nan,
                        "q3": np.nan,
                        "n_missing": np.nan,
                        "summary": "header",
                        "display": "",
                    }
                )
            order += 1
        for level in shown:
            for g, d in groups:
                x = d[col].dropna()
                count = int((x == level).sum())
                n = int(x.size)
                pct = 100.0 * count / n if n else np.nan
                rows.append(
                    {
                        "row_order": order,
                        "variable": col,
                        "label": all_labels.get(col, col),
                        "level": ("" if level == 1 else "__hidden0__") if binary else str(level),
                        "group": g,
                        "n": n,
                        "count": count,
                        "percent": pct,
                        "mean": np.nan,
                        "sd": np.nan,
                        "median": np.nan,
                        "q1": np.nan,
                        "q3": np.nan,
                        "n_missing": int(len(d) - n),
                        "summary": "count_percent",
                        "display": f"{count} ({_fmt(pct, digits)}%)",
                    }
                )
            if not binary or level == 1:
                order += 1
    rows += _missing_rows(rows, sizes, digits)
    long = pd.DataFrame(rows)
    if privacy == "strict":
        long = _strict_table_one(long, min_cell_count)
    long = long[long["level"] != "__hidden0__"].reset_index(drop=True)
    return TableOne(long=long, group_sizes=sizes, group=group, privacy=privacy)


def _missing_rows(rows: list[dict[str, Any]], sizes: pd.Series, digits: int) -> list[dict[str, Any]]:
    """A "Missing" row under each variable that lacks values for any subject (n and % of N).

    Journals ask for missing data to be shown per variable (CONSORT 2010 item 15, STROBE item
    14b); percentages are of the group size, so that the level percentages (of the non-missing
    values) and the missing count can both be read.
    """
    out: list[dict[str, Any]] = []
    by_variable: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["summary"] == "header" or pd.isna(r["n_missing"]):
            continue
        entry = by_variable.setdefault(r["variable"], {"label": r["label"], "order": r["row_order"],
                                                       "missing": {}})
        entry["order"] = max(entry["order"], r["row_order"])
        entry["missing"][r["group"]] = int(r["n_missing"])
    for variable, entry in by_variable.items():
        if not any(entry["missing"].values()):
            continue
        for g, n_miss in entry["missing"].items():
            size = int(sizes.get(g, 0))
            pct = 100.0 * n_miss / size if size else np.nan
            out.append({
                "row_order": entry["order"] + 0.5, "variable": variable, "label": entry["label"],
                "level": "Missing", "group": g, "n": size, "count": n_miss, "percent": pct,
                "mean": np.nan, "sd": np.nan, "median": np.nan, "q1": np.nan, "q3": np.nan,
                "n_missing": n_miss, "summary": "missing",
                "display": f"{n_miss} ({_fmt(pct, digits)}%)",
            })
    return out


def _strict_table_one(long: pd.DataFrame, threshold: int) -> pd.DataFrame:
    long = long.copy()
    cont = long["summary"].isin(["mean_sd", "median_iqr"])
    # A mean of a handful of patients is close to describing each of them.
    small = cont & (long["n"] < threshold)
    for col in ("mean", "sd", "median", "q1", "q3"):
        long.loc[small, col] = np.nan
    long.loc[small, "display"] = f"n<{threshold}"
    counted = long["summary"].isin(["count_percent", "missing"])
    for variable in long.loc[counted, "variable"].unique():
        part = long[counted & long["variable"].eq(variable)]
        checked = apply_privacy(
            part[["level", "group", "count"]],
            "count",
            index_columns=["level"],
            privacy="strict",
            min_cell_count=threshold,
        )
        idx = part.index[checked["suppressed"].to_numpy()]
        long.loc[idx, ["count", "percent"]] = np.nan
        long.loc[idx, "display"] = f"<{threshold}"
    return long


# --------------------------------------------------------------------------------------------
# Subject flow and schedules
# --------------------------------------------------------------------------------------------
FLOW_STAGES = ("enrolled", "assessed_at_baseline", "infused", "completed", "dropped_out")


def subject_flow(
    subjects: pd.DataFrame,
    infusions: pd.DataFrame,
    assessments: pd.DataFrame | None = None,
    *,
    group: str = "arm",
    privacy: str = "none",
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> pd.DataFrame:
    """Subject flow by arm (CONSORT-style counts).

    Stages: ``enrolled`` (rows of the subjects table), ``assessed_at_baseline`` (a non-missing score
    on or before day 0), ``infused`` (at least one infusion), ``completed`` and ``dropped_out``
    (``disposition``); dropout reasons follow as ``dropped_out: <reason>`` rows.

    Returns
    -------
    DataFrame
        Columns ``stage``, ``group`` (arm or ``"overall"``), ``n``.
    """
    check_privacy(privacy, min_cell_count)
    for name, table, cols in (
        ("subjects", subjects, ["subject_id", group, "disposition"]),
        ("infusions", infusions, ["subject_id"]),
    ):
        absent = [c for c in cols if c not in table.columns]
        if absent:
            raise DataValidationError(
                f"The {name} table lacks column(s) {absent} needed for the flow."
            )
    if privacy == "strict" and "dropout_reason" in subjects.columns:
        # Rare dropout reasons are pooled: the label alone could identify a patient.
        subjects = pool_rare(
            subjects,
            "dropout_reason",
            count_by=None,
            privacy=privacy,
            min_cell_count=min_cell_count,
        )
    infused = set(infusions["subject_id"])
    baseline: set = set()
    if assessments is not None:
        base = assessments[(assessments["day"] <= 0) & assessments["score"].notna()]
        baseline = set(base["subject_id"])
    reasons = (
        sorted(
            subjects.loc[subjects["disposition"].eq("dropped_out"), "dropout_reason"]
            .dropna()
            .astype(str)
            .unique()
        )
        if "dropout_reason" in subjects.columns
        else []
    )

    def counts(d: pd.DataFrame) -> list[tuple[str, int]]:
        out = [
            ("enrolled", len(d)),
            ("assessed_at_baseline", int(d["subject_id"].isin(baseline).sum())),
            ("infused", int(d["subject_id"].isin(infused).sum())),
            ("completed", int(d["disposition"].eq("completed").sum())),
            ("dropped_out", int(d["disposition"].eq("dropped_out").sum())),
        ]
        if assessments is None:
            out.pop(1)
        for r in reasons:
            dropped = d["disposition"].eq("dropped_out")
            out.append((f"dropped_out: {r}", int((dropped & d["dropout_reason"].eq(r)).sum())))
        return out

    rows = []
    for g, d in subjects.groupby(group, sort=True):
        rows += [{"stage": s, "group": str(g), "n": n} for s, n in counts(d)]
    rows += [{"stage": s, "group": OVERALL, "n": n} for s, n in counts(subjects)]
    flow = pd.DataFrame(rows)
    # enrolled = completed + dropped_out, so columns are protected as well as rows.
    return apply_privacy(
        flow,
        "n",
        index_columns=["stage"],
        privacy=privacy,
        min_cell_count=min_cell_count,
        margins="both",
    )


def assessment_schedule(
    assessments: pd.DataFrame,
    subjects: pd.DataFrame,
    *,
    scale: str | None = None,
    group: str = "arm",
    privacy: str = "none",
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> pd.DataFrame:
    """Planned and observed assessments by visit and arm.

    Returns
    -------
    DataFrame
        Columns ``scale``, ``visit_number``, ``visit``, ``group``, ``median_day`` (median study day
        of the visit), ``n_assessed`` (subjects with a non-missing score).
    """
    check_privacy(privacy, min_cell_count)
    data = assessments if scale is None else assessments[assessments["scale"] == scale]
    data = data.merge(subjects[["subject_id", group]], on="subject_id", how="left")
    data = data[data["score"].notna()]
    out = (
        data.groupby(["scale", "visit_number", "visit", group], sort=True)
        .agg(median_day=("day", "median"), n_assessed=("subject_id", "nunique"))
        .reset_index()
        .rename(columns={group: "group"})
    )
    out["group"] = out["group"].astype(str)
    # Visits share subjects, so no published total is a sum of these cells: primary suppression.
    return apply_privacy(
        out,
        "n_assessed",
        index_columns=["scale", "visit_number", "visit"],
        privacy=privacy,
        min_cell_count=min_cell_count,
        margins="none",
    )


def infusion_schedule(
    infusions: pd.DataFrame,
    subjects: pd.DataFrame,
    *,
    group: str = "arm",
    privacy: str = "none",
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> pd.DataFrame:
    """Infusions by number and arm.

    Returns
    -------
    DataFrame
        Columns ``infusion_number``, ``group``, ``phase``, ``drug``, ``median_day``, ``median_dose``,
        ``dose_unit``, ``n_subjects``.
    """
    check_privacy(privacy, min_cell_count)
    data = infusions.merge(subjects[["subject_id", group]], on="subject_id", how="left")
    out = (
        data.groupby(["infusion_number", group, "phase", "drug", "dose_unit"], sort=True)
        .agg(
            median_day=("day", "median"),
            median_dose=("dose", "median"),
            n_subjects=("subject_id", "nunique"),
        )
        .reset_index()
        .rename(columns={group: "group"})
    )
    out["group"] = out["group"].astype(str)
    cols = [
        "infusion_number",
        "group",
        "phase",
        "drug",
        "median_day",
        "median_dose",
        "dose_unit",
        "n_subjects",
    ]
    return apply_privacy(
        out[cols],
        "n_subjects",
        index_columns=["infusion_number", "phase", "drug", "dose_unit"],
        privacy=privacy,
        min_cell_count=min_cell_count,
        margins="none",
    )


def validation_summary(report: Any, *, privacy: str = "none") -> pd.DataFrame:
    """Problems of a :class:`kanalysis.validation.ValidationReport` as a table for a report.

    With ``privacy="strict"`` the ``rows`` and ``values`` columns are dropped: offending values
    are row-level data. Columns: ``severity``, ``table``, ``column``, ``rule`` (+ ``rows``,
    ``values``), errors first.
    """
    check_privacy(privacy)
    problems = report.problems.copy()
    cols = ["severity", "table", "column", "rule"]
    if privacy == "none":
        cols += ["rows", "values"]
    if problems.empty:
        return pd.DataFrame(columns=cols)
    problems["_order"] = problems["severity"].map({"error": 0, "warning": 1}).fillna(2)
    problems = problems.sort_values(["_order", "table", "rule"], kind="stable")
    return problems[cols].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _cell(value: Any, float_format: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return float_format.format(value)
    text = str(value)
    indent = len(text) - len(text.lstrip(" "))
    # Leading spaces mark indented rows (levels under a variable); LaTeX would drop them.
    return "\\quad " * (indent // 2) + _latex_escape(text.lstrip(" "))


def to_latex(
    table: pd.DataFrame,
    *,
    caption: str | None = None,
    label: str | None = None,
    float_format: str = "{:.3g}",
) -> str:
    """Render a DataFrame as a booktabs LaTeX table (needs ``\\usepackage{booktabs}``).

    Text is escaped; numbers in text columns are right-aligned, text left-aligned.
    """
    align = "".join("r" if pd.api.types.is_numeric_dtype(table[c]) else "l" for c in table.columns)
    lines = []
    if caption or label:
        lines += ["\\begin{table}[htbp]", "\\centering"]
        if caption:
            lines.append(f"\\caption{{{_latex_escape(caption)}}}")
        if label:
            lines.append(f"\\label{{{label}}}")
    lines += [f"\\begin{{tabular}}{{{align}}}", "\\toprule"]
    lines.append(" & ".join(_latex_escape(str(c)) for c in table.columns) + " \\\\")
    lines.append("\\midrule")
    for row in table.itertuples(index=False):
        lines.append(" & ".join(_cell(v, float_format) for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if caption or label:
        lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def write_table(
    table: pd.DataFrame,
    path_stem: str | os.PathLike[str],
    formats: Sequence[str] = ("csv", "tex"),
    *,
    caption: str | None = None,
    label: str | None = None,
    float_format: str = "{:.3g}",
) -> list[Path]:
    """Write a table as CSV and/or LaTeX, atomically; return the paths written.

    CSV keeps full precision (``%.10g``) and no index; LaTeX uses ``float_format``.
    """
    stem = Path(path_stem)
    if stem.suffix in (".csv", ".tex"):
        stem = stem.with_suffix("")
    written = []
    for fmt in formats:
        if fmt == "csv":
            text = table.to_csv(index=False, float_format="%.10g", lineterminator="\n")
        elif fmt in ("tex", "latex"):
            fmt = "tex"
            text = to_latex(table, caption=caption, label=label, float_format=float_format)
        else:
            raise ConfigurationError(f"Table format {fmt!r} is not supported; use 'csv' or 'tex'.")
        written.append(atomic_write_text(stem.parent / f"{stem.name}.{fmt}", text))
    return written
