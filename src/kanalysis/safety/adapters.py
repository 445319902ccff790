"""Input adapters of the safety analyses: a Cohort or a bare table, arms looked up, checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.requirements import require_columns

_SESSION_KEYS = ["subject_id", "infusion_number"]


#: The within-infusion variables of the ``vitals`` table.
VITAL_VARIABLES: tuple[str, ...] = ("cadss", "sbp", "dbp", "heart_rate")


#: Severity grades of the ``adverse_events`` table, mildest first.
SEVERITY_ORDER: tuple[str, ...] = ("mild", "moderate", "severe")


def _table(data: Any, name: str) -> pd.DataFrame:
    """The table ``name`` of a Cohort, or ``data`` itself when it is a DataFrame."""
    if isinstance(data, pd.DataFrame):
        return data
    table = getattr(data, name, None)
    if table is None:
        raise DataValidationError(
            f"The cohort has no {name!r} table; the safety analyses need it "
            f"(see docs/data_model.md, optional tables)."
        )
    if not isinstance(table, pd.DataFrame):
        raise ConfigurationError(
            f"Expected a kanalysis.Cohort or a pandas DataFrame, got {type(data).__name__}."
        )
    return table


def _subjects_of(data: Any, subjects: pd.DataFrame | None) -> pd.DataFrame | None:
    if subjects is not None:
        return subjects
    if isinstance(data, pd.DataFrame):
        return None
    return getattr(data, "subjects", None)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    require_columns(frame, columns, table=table, what="kanalysis.safety", allow_missing=True)


def _with_arm(
    frame: pd.DataFrame, subjects: pd.DataFrame | None, table: str, arm: str = "arm"
) -> pd.DataFrame:
    """Return ``frame`` with an ``arm`` column, taken from ``subjects`` when not already present."""
    if arm in frame.columns:
        return frame.copy()
    if subjects is None:
        raise DataValidationError(
            f"Table {table!r} has no {arm!r} column and no subjects table was given to look it up; "
            f"pass a Cohort, or subjects=<subjects DataFrame>."
        )
    _require_columns(subjects, ["subject_id", arm], "subjects")
    out = frame.merge(subjects[["subject_id", arm]], on="subject_id", how="left")
    unknown = out.loc[out[arm].isna(), "subject_id"].unique()
    if len(unknown):
        raise DataValidationError(
            f"Table {table!r}: {len(unknown)} subject_id value(s) have no arm in subjects, "
            f"e.g. {list(unknown[:5])}; fix the subjects table or drop these rows."
        )
    return out


def _vitals(data: Any, subjects: pd.DataFrame | None, variables: Sequence[str]) -> pd.DataFrame:
    vitals = _table(data, "vitals")
    _require_columns(vitals, [*_SESSION_KEYS, "minute", *variables], "vitals")
    return _with_arm(vitals, _subjects_of(data, subjects), "vitals")


def _as_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast pandas ``string`` columns to object so that formula parsers treat them as factors."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].astype(object)
    return out


_TRUE_TEXT = {"true": True, "t": True, "yes": True, "y": True, "1": True,
              "false": False, "f": False, "no": False, "n": False, "0": False}


def _as_bool(values: pd.Series, what: str) -> pd.Series:
    """Read a yes/no column stored as bool, 0/1 or text ("True", "yes"); missing counts as False."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).astype(bool)
    if pd.api.types.is_numeric_dtype(values):
        return values.fillna(0).astype(float).ne(0)
    text = values.astype("string").str.strip().str.lower()
    mapped = text.map(_TRUE_TEXT)
    bad = text.notna() & mapped.isna()
    if bad.any():
        raise DataValidationError(
            f"{what} must be true/false; rows {list(values.index[bad.to_numpy()][:5])} have "
            f"{sorted(set(values[bad].astype(str)))[:5]}."
        )
    return mapped.fillna(False).astype(bool)


def _check_variables(variables: str | Sequence[str]) -> list[str]:
    out = [variables] if isinstance(variables, str) else list(variables)
    if not out:
        raise ConfigurationError("`variables` must name at least one column, e.g. ['sbp'].")
    return out
