"""Input checks shared by the survival estimators (validated arrays, group levels, z)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from kanalysis.errors import DataValidationError
from kanalysis.requirements import require_columns

CONF_TYPES = ("log", "log-log", "plain")
_TOL = math.sqrt(np.finfo(float).eps)


def _require_columns(table: pd.DataFrame, columns: Iterable[str | None], what: str = "table"):
    require_columns(table, list(columns), table="the table", what=what, allow_missing=True)


def _survival_arrays(
    table: pd.DataFrame,
    time: str,
    event: str,
    group: str | None,
    start: str | None = None,
    strata: str | Sequence[str] | None = None,
):
    """Validated time / event (and group, start) columns; raises naming the offending rows."""
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    _require_columns(table, [time, event, group, start, *strata_cols])
    t = pd.to_numeric(table[time], errors="coerce").to_numpy(dtype=float)
    e = pd.to_numeric(table[event], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(t) | ~np.isfinite(e)
    if bad.any():
        rows = table.index[bad][:10].tolist()
        raise DataValidationError(
            f"Columns {time!r} / {event!r} have missing or non-numeric values in rows {rows} "
            f"({int(bad.sum())} rows). Drop or fix these rows before the survival analysis."
        )
    if not np.isin(e, (0.0, 1.0)).all():
        rows = table.index[~np.isin(e, (0.0, 1.0))][:10].tolist()
        raise DataValidationError(
            f"Column {event!r} must be 1 (event) or 0 (censored); rows {rows} are not."
        )
    if (t < 0).any():
        rows = table.index[t < 0][:10].tolist()
        raise DataValidationError(f"Column {time!r} has negative times in rows {rows}.")
    s = None
    if start is not None:
        s = pd.to_numeric(table[start], errors="coerce").to_numpy(dtype=float)
        if (~np.isfinite(s)).any() or (s >= t).any():
            rows = table.index[~np.isfinite(s) | (s >= t)][:10].tolist()
            raise DataValidationError(
                f"Counting-process rows need {start!r} < {time!r}; rows {rows} break this."
            )
    g = None
    if group is not None:
        g = table[group]
        if g.isna().any():
            rows = table.index[g.isna()][:10].tolist()
            raise DataValidationError(f"Column {group!r} is missing in rows {rows}.")
        g = g.to_numpy()
    return t, e.astype(int), g, s


def _group_levels(values) -> list:
    """Group levels in sorted order (R's default factor order for character columns)."""
    return sorted(pd.unique(values), key=lambda v: (str(type(v)), v))
