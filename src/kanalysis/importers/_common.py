"""Pieces shared by the clinic and ADaM importers: reading files, dates, the import log and result.

Problems are collected in a :class:`kanalysis.validation.ValidationReport` (``report.add``) so that
import problems and data-model problems end in one list. Problems found in an input file name the
file and give 0-based data rows (line in a CSV file = row + 2), like the data-model checks.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis._io import replace_folder
from kanalysis.errors import DataValidationError
from kanalysis.privacy import DEFAULT_MIN_CELL_COUNT, detect_identifiers
from kanalysis.validation import ValidationReport, validate_cohort

__all__ = ["ImportLog", "ImportResult", "file_sha256", "parse_datetimes", "read_table_file"]

ERROR = "error"
WARNING = "warning"
_DAY = pd.Timedelta(days=1)


def map_unique(values: pd.Series, func) -> pd.Series:
    """``values.map(func)`` computed once per distinct value (registries repeat values a lot)."""
    if values.empty:
        return values.astype(object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([func(u) for u in uniques] + [func(None)], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype=object)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (recorded in the report so a reader can tell which file was read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sheet_rows(positions) -> list[int]:
    """Record positions as reported: 0-based data rows, as everywhere in kanalysis reports.

    In a CSV file the line number is row + 2 (the header is line 1); in a spreadsheet, the row
    number is row + 2 too.
    """
    return [int(p) for p in positions]


@dataclass
class ImportLog:
    """What an import read, kept, converted and dropped; rendered by :mod:`.report`."""

    source: str
    files: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    row_counts: list[dict[str, Any]] = field(default_factory=list)

    def add_file(self, path: Path, role: str, n_rows: int | None, n_columns: int | None) -> None:
        self.files.append(
            {
                "file": path.name,
                "role": role,
                "rows": n_rows,
                "columns": n_columns,
                "sha256": file_sha256(path) if path.is_file() else None,
                "path": str(path),
            }
        )

    def keep(self, table: str, column: str, source: str, how: str = "copied") -> None:
        self.kept.append({"table": table, "column": column, "source": source, "how": how})

    def drop(self, where: str, column: str, reason: str, kind: str = "") -> None:
        entry = {"where": where, "column": column, "kind": kind, "reason": reason}
        if entry not in self.dropped:  # a long export read by several sections
            self.dropped.append(entry)

    def drop_identifiers(self, where: str, findings: pd.DataFrame) -> None:
        for f in findings.itertuples(index=False):
            self.drop(where, f.column, f"identifier: {f.reason}; dropped", f.kind)

    def rows(self, table: str, read: int, kept: int, why: str = "") -> None:
        self.row_counts.append({"table": table, "rows_read": read, "rows_kept": kept, "note": why})

    def frame(self, name: str) -> pd.DataFrame:
        return pd.DataFrame(getattr(self, name))


@dataclass
class ImportResult:
    """Outcome of an import: the cohort (None when it could not be built) and everything said about it.

    Attributes
    ----------
    cohort : kanalysis.Cohort or None
        The imported cohort (study days, identifiers removed).
    report : kanalysis.validation.ValidationReport
        Import problems and data-model problems together (``report.ok`` is False when errors remain).
    log : ImportLog
        Files read (with SHA-256), columns kept and dropped and why, row counts, conversions.
    extra_tables : dict of str to DataFrame
        Tables outside the data model written beside it (ADaM ``time_to_event``).
    id_key : DataFrame or None
        Original subject id -> pseudonym, when ids were pseudonymised. Never written into the
        cohort folder.
    """

    cohort: Any
    report: ValidationReport
    log: ImportLog
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    id_key: pd.DataFrame | None = None

    @property
    def ok(self) -> bool:
        """True when a cohort was built and no error remains."""
        return self.cohort is not None and self.report.ok

    def to_markdown(self) -> str:
        from kanalysis.importers.report import import_report_markdown

        return import_report_markdown(self)

    def to_html(self) -> str:
        from kanalysis.importers.report import import_report_html

        return import_report_html(self)

    def save(self, path: str | os.PathLike, *, format: str = "csv",
             report_name: str = "import_report.md", inputs=()) -> Path:
        """Write the cohort folder (tables, metadata.json, extra tables, the import report), atomically.

        ``path`` must be new, empty or an earlier kanalysis cohort folder, and may not be, hold or
        lie in one of ``inputs`` (the files read; see :func:`kanalysis._paths.check_output_dir`).

        Raises
        ------
        DataValidationError
            When errors remain; nothing is written then.
        OutputPathError
            When ``path`` may not be written.
        """
        from kanalysis._paths import COHORT_MARKER, check_output_dir

        inputs = [*inputs, *(f["path"] for f in self.log.files if f.get("path"))]
        check_output_dir(path, inputs=inputs, marker=COHORT_MARKER, what="cohort folder")
        if not self.ok:
            raise DataValidationError(
                "The import has errors; no cohort folder was written.\n" + str(self.report),
                self.report.problems.copy(),
            )
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.import.", dir=target.parent))
        try:
            folder = self.cohort.save(staging / "cohort", format=format)
            for name, table in self.extra_tables.items():
                table.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n", float_format="%.10g")
            (folder / report_name).write_text(self.to_markdown(), encoding="utf-8")
            replace_folder(folder, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def finish_import(
    tables: dict[str, pd.DataFrame] | None,
    metadata: dict[str, Any],
    report: ValidationReport,
    log: ImportLog,
    *,
    extra_tables: dict[str, pd.DataFrame] | None = None,
    id_key: pd.DataFrame | None = None,
) -> ImportResult:
    """Build the Cohort, run the data-model validation into the same report, return the result."""
    from kanalysis.cohort import Cohort

    cohort = None
    if tables is not None and all(t in tables for t in ("subjects", "assessments", "infusions")):
        metadata = {
            "design": "clinic" if metadata.get("source") == "clinic" else "trial",
            "time_unit": "day",
            "privacy": "strict",
            "min_cell_count": DEFAULT_MIN_CELL_COUNT,
            **metadata,
        }
        if "scales" not in metadata:
            metadata["scales"] = sorted(tables["assessments"]["scale"].dropna().unique().tolist())
        if "primary_scale" not in metadata and metadata["scales"]:
            metadata["primary_scale"] = (
                tables["assessments"]["scale"].mode().iloc[0]
                if len(tables["assessments"])
                else metadata["scales"][0]
            )
        if extra_tables:
            metadata["extra_tables"] = {n: f"{n}.csv" for n in extra_tables}
        cohort = Cohort(**tables, metadata=metadata)
        model = validate_cohort(cohort)
        for p in model.problems.itertuples(index=False):
            # Data-model rows are positions in the imported table, not in the input file.
            report.add(p.table, p.column, p.rows if p.rows else None, p.rule, p.values, p.severity)
        _plausibility_warnings(cohort.tables, report)
        # Last line of defence: no imported table may still hold an identifier-like column, and
        # the free-text-capable model columns must not hold identifier-like values.
        for name, table in cohort.tables.items():
            keep = [c for c in table.columns if c in _MODEL_COLUMNS]
            leftover = detect_identifiers(table, table=name, exclude=keep)
            for c in (c for c in table.columns if c in _SCREENED_TEXT):
                # Distinct values only: as sensitive as all rows for every pattern (shares of
                # distinct values are at least as high), and fast on registry-sized tables.
                distinct = pd.DataFrame({c: pd.Series(table[c].dropna().unique(), dtype=object)})
                by_content = detect_identifiers(distinct, table=name, by_name=False)
                leftover = pd.concat([leftover, by_content], ignore_index=True)
            for f in leftover.itertuples(index=False):
                report.add(name, f.column, None, f"column still looks like an identifier: {f.reason}")
    return ImportResult(cohort, report, log, extra_tables or {}, id_key)


def _plausibility_warnings(tables: dict[str, pd.DataFrame], report: ValidationReport) -> None:
    """Legal but unusual values, worth a second look in real data (warnings, not errors).

    Usual ranges: IV ketamine 0.1-1.5 mg/kg over 15-120 minutes (0.5 mg/kg over 40 minutes in most
    trials); intranasal esketamine 28, 56 or 84 mg (Daly et al. 2019, SUSTAIN-1).
    """
    inf = tables.get("infusions")
    if inf is not None and {"drug", "dose", "dose_unit", "duration_min"} <= set(inf.columns):
        dose = pd.to_numeric(inf["dose"], errors="coerce")
        minutes = pd.to_numeric(inf["duration_min"], errors="coerce")
        ket = (inf["drug"] == "ketamine_iv") & (inf["dose_unit"] == "mg/kg")
        odd = ket & ((dose < 0.1) | (dose > 1.5))
        if odd.any():
            report.add("infusions", "dose", np.flatnonzero(odd.to_numpy()),
                       "unusual IV ketamine dose (usual 0.1-1.5 mg/kg): check the unit",
                       dose[odd].unique().tolist(), severity=WARNING)
        esk = (inf["drug"] == "esketamine_in") & (inf["dose_unit"] == "mg")
        odd = esk & ~dose.isin([28.0, 56.0, 84.0])
        if odd.any():
            report.add("infusions", "dose", np.flatnonzero(odd.to_numpy()),
                       "unusual intranasal esketamine dose (usual 28, 56 or 84 mg)",
                       dose[odd].unique().tolist(), severity=WARNING)
        iv = inf["drug"].astype(str).str.endswith("_iv")
        odd = iv & ((minutes < 15) | (minutes > 120))
        if odd.any():
            report.add("infusions", "duration_min", np.flatnonzero(odd.to_numpy()),
                       "unusual infusion duration (usual 15-120 minutes)",
                       minutes[odd].unique().tolist(), severity=WARNING)
    subjects = tables.get("subjects")
    if subjects is not None and "age" in subjects.columns:
        old = pd.to_numeric(subjects["age"], errors="coerce") > 90
        if old.any():
            report.add("subjects", "age", np.flatnonzero(old.to_numpy()),
                       "age above 90: check the value (and that ages above 89 are allowed to be "
                       "shared under your data agreement)", severity=WARNING)


_SCREENED_TEXT = {"arm", "site", "dropout_reason", "visit", "drug", "term", "event", "scale"}
_MODEL_COLUMNS = {
    "subject_id", "arm", "site", "age", "sex", "n_failed_trials", "episode_duration_months",
    "anxious_distress", "bmi", "family_history_aud", "disposition", "dropout_day",
    "dropout_reason", "randomization_day", "scale", "day", "visit", "visit_number", "score",
    "infusion_number", "drug", "dose", "dose_unit", "duration_min", "phase", "minute", "sbp",
    "dbp", "heart_rate", "cadss", "term", "severity", "serious", "event",
}


# --- reading files ---------------------------------------------------------------------------------
_FORMATS = {
    ".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".xlsx": "excel", ".xlsm": "excel", ".xls": "excel",
}


def read_table_file(
    path: Path,
    *,
    label: str,
    report: ValidationReport,
    format: str | None = None,
    encoding: str = "utf-8",
    sheet: str | int | None = None,
    delimiter: str | None = None,
) -> pd.DataFrame | None:
    """Read a CSV/TSV, Parquet or Excel file without changing it; None (and a problem) when unreadable.

    CSV cells are read as text so that nothing (leading zeros, ids) is altered before mapping.
    """
    from kanalysis._paths import InputFileError, check_input_file

    try:
        check_input_file(path, what="file")
    except InputFileError as err:
        report.add(label, None, None, str(err).replace(str(path), path.name))
        return None
    kind = format or _FORMATS.get(path.suffix.lower())
    if kind is None:
        report.add(
            label, None, None,
            f"cannot tell the format of {path.name}: use a .csv, .tsv, .parquet or .xlsx file or "
            "set `format` in the mapping",
        )
        return None
    try:
        if kind in ("csv", "tsv"):
            sep = delimiter or ("\t" if kind == "tsv" else ",")
            enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
            if b"\x00" in path.read_bytes():
                report.add(label, None, None, f"{path.name} contains NUL bytes: it is binary or "
                           "corrupt, not a text export")
                return None
            frame = pd.read_csv(
                path, sep=sep, dtype=str, encoding=enc, keep_default_na=False,
                na_values=["", "NA", "N/A", "NaN", "nan", "NULL", "null", "."],
                on_bad_lines="error",
            )
            return _checked_header(frame, path, label, sep, report)
        if kind == "parquet":
            return _checked_header(pd.read_parquet(path), path, label, None, report)
        if kind == "excel":
            return pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=object)
    except UnicodeDecodeError as err:
        report.add(
            label, None, None,
            f"unreadable encoding: {path.name} is not valid {encoding} text ({err.reason} at byte "
            f"{err.start}); set `encoding` in the mapping (often 'latin-1' or 'cp1252' for exports "
            "from Excel on Windows)",
        )
        return None
    except pd.errors.EmptyDataError:
        report.add(label, None, None, f"{path.name} is empty (no header line)")
        return None
    except pd.errors.ParserError as err:
        report.add(label, None, None, f"malformed {kind.upper()} in {path.name}: "
                   f"{str(err).strip()} (a row with more fields than the header, or an unclosed "
                   "quote)")
        return None
    except Exception as err:  # any reader failure is reported, the other files still get checked
        first = str(err).splitlines()[0] if str(err) else ""
        report.add(label, None, None, f"cannot read {path.name} as {kind}: {type(err).__name__}: {first}")
        return None
    report.add(label, None, None, f"unknown format {kind!r}: use csv, tsv, parquet or excel")
    return None


def _checked_header(frame: pd.DataFrame, path: Path, label: str, sep: str | None,
                    report: ValidationReport) -> pd.DataFrame | None:
    """Refuse duplicated column names (pandas would rename the second `score` to `score.1`) and
    say so when one column holds another delimiter (a `;` export read with `,`)."""
    import csv

    names = [str(c) for c in frame.columns]
    if sep is not None:  # pandas mangles duplicates: read the real header
        enc = "utf-8-sig"
        try:
            with open(path, encoding=enc, errors="replace", newline="") as handle:
                names = next(csv.reader(handle, delimiter=sep), names)
        except csv.Error:
            pass
    stripped = [n.strip() for n in names]
    dup = sorted({n for n in stripped if stripped.count(n) > 1})
    if dup:
        report.add(label, ", ".join(dup), None,
                   f"duplicated column name(s) in the header of {path.name}: each column must "
                   "appear once (which one is the data?)")
        return None
    if sep is not None and frame.shape[1] == 1:
        for other, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe"), (",", "comma")):
            if other != sep and other in names[0]:
                report.add(label, None, None,
                           f"{path.name} has a single column whose name contains a {name}: the "
                           f"file seems to be {name}-separated; set delimiter = "
                           f"{other!r} in the mapping")
                return None
    return frame


# --- dates -----------------------------------------------------------------------------------------
_TIME_PART = r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*$"
_DATE_SHAPES: list[tuple[str, re.Pattern[str]]] = [
    ("YYYY-MM-DD", re.compile(r"^\d{4}-\d{1,2}-\d{1,2}" + _TIME_PART)),
    ("YYYY/MM/DD", re.compile(r"^\d{4}/\d{1,2}/\d{1,2}" + _TIME_PART)),
    ("NN/NN/YYYY", re.compile(r"^\d{1,2}/\d{1,2}/\d{4}" + _TIME_PART)),
    ("NN-NN-YYYY", re.compile(r"^\d{1,2}-\d{1,2}-\d{4}" + _TIME_PART)),
    ("DD.MM.YYYY", re.compile(r"^\d{1,2}\.\d{1,2}\.\d{4}" + _TIME_PART)),
    ("DDMONYYYY", re.compile(r"^\d{1,2}[ -]?[A-Za-z]{3,9}[ -]?\d{4}" + _TIME_PART)),
    ("Month DD, YYYY", re.compile(r"^[A-Za-z]{3,9}\.? \d{1,2},? \d{4}" + _TIME_PART)),
]


def _shape(value: str) -> str | None:
    for name, pattern in _DATE_SHAPES:
        if pattern.match(value):
            return name
    return None


def parse_datetimes(
    values: pd.Series,
    *,
    label: str,
    column: str,
    report: ValidationReport,
    date_format: str | None = None,
    dayfirst: bool | None = None,
) -> pd.Series:
    """Parse a column of calendar dates (with optional clock times) strictly.

    Every value must follow one format. With ``date_format`` (strftime codes) that format is used;
    otherwise the shape of each value is recognised (ISO ``YYYY-MM-DD``, ``DD.MM.YYYY``,
    ``NN/NN/YYYY``, ``DDMONYYYY``, ...). More than one shape in a column is an error ("mixed date
    formats"), as is an ambiguous ``NN/NN/YYYY`` column where no value has a part above 12, unless
    ``dayfirst`` is given. Problems list the file rows; the dates themselves are never printed.

    Returns
    -------
    pandas.Series of datetime64[ns]
        NaT where the value was missing or could not be parsed.
    """
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(None)
        return parsed.astype("datetime64[ns]")
    present = values.notna() & (values.astype(str).str.strip() != "")
    if not present.any():
        return out
    as_objects = values[present]
    # Excel cells can already be datetimes; strings are parsed below.
    if pd.api.types.infer_dtype(as_objects, skipna=True) == "string":
        is_dt = pd.Series(False, index=as_objects.index)
    else:
        is_dt = as_objects.map(lambda v: isinstance(v, (pd.Timestamp, np.datetime64))
                               or hasattr(v, "isoformat"))
    if is_dt.any():
        out.loc[is_dt[is_dt].index] = pd.to_datetime(as_objects[is_dt].astype(object).map(pd.Timestamp))
    text = as_objects[~is_dt].astype(str).str.strip()
    if is_dt.any() and len(text):
        report.add(
            label, column, sheet_rows(np.flatnonzero(present.to_numpy())[~is_dt.to_numpy()]),
            "mixed date formats: some cells are spreadsheet dates and some are text; format the "
            "whole column as dates",
        )
    if text.empty:
        return out
    positions = pd.Series(np.arange(len(values)), index=values.index)
    if date_format:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        bad = parsed.isna()
        if bad.any():
            report.add(
                label, column, sheet_rows(positions[bad[bad].index]),
                f"value does not match date_format {date_format!r}",
                [f"{n} value(s) of shape {s}" for s, n in text[bad].map(lambda v: _shape(v) or "unrecognised").value_counts().items()],
            )
        out.loc[parsed.index] = parsed
        return out
    iso = text.str.match(_DATE_SHAPES[0][1].pattern)
    if bool(iso.all()):  # the usual export: every value ISO, no need to look at each one
        shapes = pd.Series("YYYY-MM-DD", index=text.index, dtype=object)
    else:
        shapes = map_unique(text, lambda v: None if v is None else _shape(v))
    unknown = shapes.isna()
    if unknown.any():
        report.add(
            label, column, sheet_rows(positions[unknown[unknown].index]),
            "unrecognised date: use YYYY-MM-DD (optionally with HH:MM) or set date_format in the "
            "mapping",
        )
    kinds = shapes.dropna().value_counts()
    if len(kinds) > 1:
        report.add(
            label, column, sheet_rows(positions[shapes.notna()[shapes.notna()].index]),
            "mixed date formats in one column ("
            + "; ".join(f"{n} value(s) as {k}" for k, n in kinds.items())
            + "): export every date the same way or set date_format",
        )
        return out
    if kinds.empty:
        return out
    shape = kinds.index[0]
    use = text[shapes.notna()]
    if shape in ("NN/NN/YYYY", "NN-NN-YYYY"):
        sep = "/" if shape == "NN/NN/YYYY" else "-"
        parts = use.str.split(r"[ T]", n=1, regex=True).str[0].str.split(sep, expand=True).astype(int)
        first_big, second_big = bool((parts[0] > 12).any()), bool((parts[1] > 12).any())
        if first_big and second_big:
            report.add(
                label, column, sheet_rows(positions[use.index]),
                "mixed date formats: some dates are day/month/year and some month/day/year",
            )
            return out
        if dayfirst is None:
            if not first_big and not second_big:
                report.add(
                    label, column, sheet_rows(positions[use.index]),
                    f"ambiguous dates ({shape}): no value shows whether the day or the month comes "
                    "first; set dayfirst = true or false (or date_format) in the mapping",
                )
                return out
            dayfirst = first_big
        fmt = f"%d{sep}%m{sep}%Y" if dayfirst else f"%m{sep}%d{sep}%Y"
        parsed = _parse_with_optional_time(use, fmt)
    elif shape == "DD.MM.YYYY":
        parsed = _parse_with_optional_time(use, "%d.%m.%Y")
    elif shape == "YYYY/MM/DD":
        parsed = _parse_with_optional_time(use, "%Y/%m/%d")
    elif shape == "YYYY-MM-DD":
        parsed = pd.to_datetime(use, format="ISO8601", errors="coerce")
    else:
        parsed = pd.to_datetime(use, format="mixed", errors="coerce")
    bad = parsed.isna()
    if bad.any():
        report.add(label, column, sheet_rows(positions[bad[bad].index]),
                   f"impossible date ({shape} shape but not a real calendar date)")
    out.loc[parsed.index] = parsed
    return out


def _parse_with_optional_time(text: pd.Series, date_fmt: str) -> pd.Series:
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for suffix in ("", " %H:%M", " %H:%M:%S", "T%H:%M", "T%H:%M:%S"):
        todo = result.isna()
        if not todo.any():
            break
        result.loc[todo] = pd.to_datetime(text[todo], format=date_fmt + suffix, errors="coerce")
    return result


def days_between(when: pd.Series, anchor: pd.Series) -> pd.Series:
    """(when - anchor) in days as float: hours become fractions (40 min = 0.02778 day)."""
    return (when - anchor) / _DAY


def to_number(
    values: pd.Series, *, label: str, column: str, report: ValidationReport
) -> pd.Series:
    """Numeric conversion that reports (with rows) every non-empty value that is not a number."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    text = values.astype(object).where(values.notna(), None)
    cleaned = map_unique(text, lambda v: v.strip().replace(",", ".") if isinstance(v, str) else v)
    out = pd.to_numeric(cleaned, errors="coerce").astype(float)
    bad = out.isna() & cleaned.notna() & (cleaned.astype(str) != "")
    if bad.any():
        report.add(
            label, column, sheet_rows(np.flatnonzero(bad.to_numpy())),
            "must be a number", safe_values(values[bad]),
        )
    return out


def safe_values(values: pd.Series, limit: int = 10) -> list[str]:
    """Distinct offending values for a report, with anything identifier-like replaced."""
    shown = []
    for v in pd.unique(values.dropna().astype(str))[:limit]:
        probe = pd.DataFrame({"v": [v]})
        if not detect_identifiers(probe, by_name=False).empty or len(v) > 40:
            shown.append("<value hidden: may identify a person>")
        else:
            shown.append(v)
    return shown
