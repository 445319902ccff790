"""What an analysis needs from the data: required columns, and complete cases said out loud.

The data model requires only structural columns (docs/data_model.md); covariates may be absent or
missing for some subjects. An analysis that needs a column therefore either refuses, with an error
naming the column and the subjects that lack it (:func:`require_columns`), or restricts itself to
complete cases and says how many subjects were left out (:func:`complete_cases`). Never silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from kanalysis.errors import DataValidationError, StatisticalWarning

__all__ = ["CompleteCases", "complete_cases", "require_columns"]

_SHOWN = 10


def _as_list(columns: str | Sequence[str | None]) -> list[str]:
    # None stands for an optional argument the caller left out (e.g. group=None): not required.
    return [columns] if isinstance(columns, str) else [c for c in columns if c is not None]


def _ids(frame: pd.DataFrame, rows: pd.Series, subject: str | None) -> list[str]:
    if subject and subject in frame.columns:
        return [str(v) for v in pd.unique(frame.loc[rows, subject].dropna())]
    return [str(i) for i in frame.index[rows]]


def _listing(ids: list[str]) -> str:
    more = f" ... ({len(ids)} in all)" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


def require_columns(
    frame: pd.DataFrame,
    columns: str | Sequence[str],
    *,
    table: str = "subjects",
    what: str = "this analysis",
    subject: str | None = "subject_id",
    allow_missing: bool = False,
    error: type[Exception] = DataValidationError,
) -> None:
    """Refuse unless ``frame`` has every column (and, by default, no missing value in them).

    Parameters
    ----------
    frame : DataFrame
        The table the analysis uses.
    columns : str or sequence of str
        Columns it needs.
    table : str
        Table name for the message (``"subjects"``).
    what : str
        The analysis, for the message (``"the Cox model"``).
    subject : str or None, default "subject_id"
        Column naming subjects, used to list those with missing values (row labels otherwise).
    allow_missing : bool, default False
        Only require the columns to exist.
    error : exception class, default DataValidationError
        Raised for absent columns (``ConfigurationError`` where a column name is an argument).

    Raises
    ------
    DataValidationError
        Naming the absent columns, or each column with missing values and the subjects missing
        it; ``err.problems`` lists them as a table.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"{what} needs a pandas DataFrame for {table}, got "
                                  f"{type(frame).__name__}.")
    cols = _as_list(columns)
    absent = [c for c in cols if c not in frame.columns]
    problems = []
    if absent:
        problems = [{"table": table, "column": c, "rows": None,
                     "rule": f"column needed by {what} is absent", "values": None,
                     "severity": "error"} for c in absent]
        message = (f"{what} needs column(s) {', '.join(map(repr, absent))} in {table}, which "
                   f"the data lack (columns present: {', '.join(map(str, frame.columns))}).")
        if issubclass(error, DataValidationError):
            raise error(message, pd.DataFrame(problems))
        raise error(message)
    if allow_missing:
        return
    lines = []
    for c in cols:
        miss = frame[c].isna()
        if miss.any():
            ids = _ids(frame, miss, subject)
            lines.append(f"{c!r} is missing for {len(ids)} subject(s): {_listing(ids)}")
            problems.append({"table": table, "column": c, "rows": None,
                             "rule": f"missing value where {what} needs one",
                             "values": _listing(ids), "severity": "error"})
    if lines:
        raise DataValidationError(
            f"{what} needs {', '.join(map(repr, cols))} for every subject in {table}, but "
            + "; ".join(lines) + ". Fill them in, or use complete cases "
            "(kanalysis.requirements.complete_cases) and report the subjects left out.",
            pd.DataFrame(problems),
        )


@dataclass
class CompleteCases:
    """Rows with every needed column present, and who was left out.

    Attributes
    ----------
    data : DataFrame
        The complete rows (a copy).
    n_total, n_used : int
        Subjects (or rows, without a subject column) before and after.
    dropped : list of str
        Subjects left out.
    by_column : dict of str to int
        Subjects missing each column.
    note : str
        One sentence for the output ("complete cases: 117 of 120 subjects; bmi missing for 3").
    """

    data: pd.DataFrame
    n_total: int
    n_used: int
    dropped: list[str]
    by_column: dict[str, int]
    note: str

    @property
    def n_dropped(self) -> int:
        return self.n_total - self.n_used


def complete_cases(
    frame: pd.DataFrame,
    columns: str | Sequence[str],
    *,
    table: str = "subjects",
    what: str = "this analysis",
    subject: str | None = "subject_id",
    min_subjects: int = 1,
    warn: bool = True,
) -> CompleteCases:
    """Keep the rows where every column in ``columns`` is present; say who was left out.

    A subject is left out when any of its rows lacks a needed value (so that one subject does not
    count in some summaries and not others). Absent columns are an error
    (:func:`require_columns`). With ``warn``, a :class:`~kanalysis.errors.StatisticalWarning`
    carries the note whenever a subject is dropped.

    Raises
    ------
    DataValidationError
        A column is absent, or fewer than ``min_subjects`` subjects remain.
    """
    cols = _as_list(columns)
    require_columns(frame, cols, table=table, what=what, subject=subject, allow_missing=True)
    incomplete = frame[cols].isna().any(axis=1)
    by_subject = bool(subject and subject in frame.columns)
    if by_subject:
        bad_ids = set(frame.loc[incomplete, subject].dropna())
        keep = ~frame[subject].isin(bad_ids) & frame[subject].notna()
        n_total = int(frame[subject].nunique())
        n_used = int(frame.loc[keep, subject].nunique())
        by_column = {c: int(frame.loc[frame[c].isna(), subject].nunique()) for c in cols}
    else:
        keep = ~incomplete
        n_total, n_used = len(frame), int(keep.sum())
        by_column = {c: int(frame[c].isna().sum()) for c in cols}
    dropped = _ids(frame, ~keep, subject)
    unit = "subjects" if by_subject else "rows"
    missing_text = ", ".join(f"{c} missing for {n}" for c, n in by_column.items() if n)
    note = (f"{what}: complete cases, {n_used} of {n_total} {unit}"
            + (f" ({missing_text})" if missing_text else ""))
    if n_used < min_subjects:
        raise DataValidationError(
            f"{what}: only {n_used} of {n_total} {unit} have {', '.join(map(repr, cols))} "
            f"({missing_text or 'none missing'}); at least {min_subjects} needed.")
    if warn and n_used < n_total:
        warnings.warn(note, StatisticalWarning, stacklevel=2)
    return CompleteCases(frame.loc[keep].copy(), n_total, n_used, dropped, by_column, note)
