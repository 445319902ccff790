"""The estimate / CI columns a plot draws, in the shared vocabulary or the previous names.

Result tables use ``estimate, ci_lower, ci_upper`` (:mod:`kanalysis.results`); for one release
the safety and outcomes tables also carry their previous names (``proportion``/``rate``,
``lower``, ``upper``). A plot draws the shared columns, and a value blanked under either name
(a notebook hiding small cells) stays blank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kanalysis.errors import DataValidationError

#: Shared name -> names of the previous release.
PREVIOUS_NAMES: dict[str, tuple[str, ...]] = {
    "estimate": ("proportion", "rate", "mean", "risk_difference", "rd", "hr"),
    "ci_lower": ("lower", "hr_lower"),
    "ci_upper": ("upper", "hr_upper"),
}


def has_column(frame: pd.DataFrame, name: str) -> bool:
    """Whether ``frame`` has ``name`` or one of its previous names."""
    return name in frame.columns or any(o in frame.columns for o in PREVIOUS_NAMES.get(name, ()))


def require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise naming the missing columns (a shared name is present under either spelling)."""
    missing = [c for c in columns if not has_column(frame, c)]
    if missing:
        raise DataValidationError(
            f"{what}: column(s) {missing} are not in the table; it has {list(frame.columns)}.")


def values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as floats, NaN wherever a previous-name twin of it is NaN."""
    olds = [o for o in PREVIOUS_NAMES.get(name, ()) if o in frame.columns]
    if name not in frame.columns:
        if not olds:
            raise DataValidationError(f"The table has no column {name!r}.")
        return pd.to_numeric(frame[olds[0]], errors="coerce").to_numpy(float)
    out = pd.to_numeric(frame[name], errors="coerce").to_numpy(float).copy()
    for old in olds:
        twin = pd.to_numeric(frame[old], errors="coerce").to_numpy(float)
        out[np.isnan(twin)] = np.nan
    return out
