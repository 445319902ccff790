"""Tables for reading: sensible digits, p-values as ``0.013`` or ``<0.001``, counts as integers.

The CSV and LaTeX files keep full precision; these functions only shape what a notebook shows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "COUNT_COLUMN_PATTERN",
    "detect_count_columns",
    "format_number",
    "format_p_value",
    "format_table",
    "key_numbers_table",
]

#: Column names that hold counts of people (or records): ``n``, ``n_*``, ``*_n``, ``count``,
#: ``events``, ``responders``, ``at_risk`` and the like.
COUNT_COLUMN_PATTERN = re.compile(
    r"^(n|count|counts|events|observed|responders|remitters|at_risk|relapses|subjects|frequency)$"
    r"|^n_|_n$|^n\d|^count_|_count$|^number_"
)
_P_COLUMN = re.compile(r"^(p|p_value|pvalue|p_val|pr_gt_chisq|p_adjusted|p_adj)$|_p_value$")


def detect_count_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of ``frame`` that look like counts: a count name and whole-number values."""
    found = []
    for column in frame.columns:
        if not COUNT_COLUMN_PATTERN.search(str(column)):
            continue
        values = pd.to_numeric(frame[column], errors="coerce").dropna()
        if values.empty or pd.api.types.is_bool_dtype(frame[column]):
            if frame[column].astype(str).str.startswith("<").any():
                found.append(column)  # already suppressed text
            continue
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)) and (values >= 0).all():
            found.append(column)
    return found


def format_p_value(p: Any) -> str:
    """``0.013``, ``<0.001``, ``0.42``; missing as an empty string."""
    if p is None or (isinstance(p, float) and not math.isfinite(p)) or p is pd.NA:
        return ""
    try:
        value = float(p)
    except (TypeError, ValueError):
        return str(p)
    if not math.isfinite(value):
        return ""
    if value < 0.001:
        return "<0.001"
    return f"{value:.3f}"


def _decimals(values: pd.Series) -> int:
    finite = values[np.isfinite(values)].abs()
    if finite.empty:
        return 2
    size = float(finite.median())
    if size >= 100:
        return 1
    if size >= 1:
        return 2
    if size >= 0.01:
        return 3
    return 4


def format_number(value: Any, decimals: int = 2) -> str:
    """One number for reading; integers stay integers, missing values are empty."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "" if math.isnan(float(value)) else str(float(value))
        if abs(value) >= 1e6 or (value != 0 and abs(value) < 10.0 ** (-decimals) / 2):
            return f"{float(value):.3g}"
        return f"{float(value):.{decimals}f}"
    return str(value)


def format_table(
    frame: pd.DataFrame, *, count_columns: Iterable[str] = (), p_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """A copy of ``frame`` as text for display.

    Counts (``count_columns`` and columns detected by :func:`detect_count_columns`) are whole
    numbers; p-values (``p_columns`` and columns named ``p``, ``p_value``...) are ``0.013`` or
    ``<0.001``; other numbers get 1 to 4 decimals by their typical size (a column keeps one
    number of decimals). The row order is kept.
    """
    counts = set(count_columns) | set(detect_count_columns(frame))
    pcols = set(p_columns) | {c for c in frame.columns if _P_COLUMN.search(str(c))}
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        series = frame[column]
        if column in pcols:
            out[column] = [format_p_value(v) for v in series]
        elif column in counts:
            out[column] = [
                str(int(round(float(v)))) if _is_number(v) else ("" if _missing(v) else str(v))
                for v in series
            ]
        elif pd.api.types.is_float_dtype(series):
            digits = _decimals(series.astype(float))
            out[column] = [format_number(v, digits) for v in series]
        elif pd.api.types.is_object_dtype(series) and any(
            isinstance(v, (float, np.floating)) for v in series
        ):
            numbers = pd.to_numeric(series, errors="coerce").astype(float)
            digits = _decimals(numbers)
            out[column] = [
                format_number(v, digits) if isinstance(v, (float, np.floating)) else
                ("" if _missing(v) else str(v))
                for v in series
            ]
        else:
            out[column] = ["" if _missing(v) else format_number(v) for v in series]
    if isinstance(frame.index, pd.RangeIndex):
        out = out.reset_index(drop=True)
    return out


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return math.isfinite(float(value))
    return False


def _flatten(prefix: str, value: Any, rows: list[tuple[str, Any]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix} / {key}" if prefix else str(key), item, rows)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        for i, item in enumerate(value, start=1):
            label = next(
                (str(item[k]) for k in ("term", "arm", "group", "contrast", "visit") if k in item),
                str(i),
            )
            _flatten(f"{prefix} / {label}", {k: v for k, v in item.items()}, rows)
    else:
        rows.append((prefix, value))


def key_numbers_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """The key numbers of a notebook as a two-column table (``quantity``, ``value``) to read.

    Nested sections become ``section / key`` labels; numbers are shown with a sensible number of
    digits, p-values as ``0.013`` or ``<0.001``.
    """
    rows: list[tuple[str, Any]] = []
    _flatten("", dict(results), rows)
    text = []
    for label, value in rows:
        last = label.rsplit(" / ", 1)[-1]
        if _P_COLUMN.search(last) and _is_number(value):
            shown = format_p_value(value)
        elif isinstance(value, (list, tuple)):
            shown = ", ".join(format_number(v, 3) for v in value)
        elif isinstance(value, (float, np.floating)) and math.isfinite(float(value)):
            shown = format_number(value, 3 if abs(value) < 1 else 2)
        else:
            shown = "" if value is None else format_number(value)
        text.append((label, shown))
    return pd.DataFrame(text, columns=["quantity", "value"])
