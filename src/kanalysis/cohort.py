"""The cohort data model: tidy tables of one study, loaded from and saved to a folder.

A cohort folder holds one file per table, named after the table (``subjects.csv`` or
``subjects.parquet``), a ``metadata.json`` and, for synthetic cohorts, a ``truth.json`` with the
parameters the data were generated from. The tables and their rules are documented in
``docs/data_model.md`` and enforced by :mod:`kanalysis.validation`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis._io import replace_folder
from kanalysis.errors import ConfigurationError, DataValidationError

__all__ = ["Cohort", "load_cohort", "REQUIRED_TABLES", "OPTIONAL_TABLES", "SCHEMA_VERSION"]

SCHEMA_VERSION = "1.1"
# Versions this kanalysis reads: 1.0 required every covariate column; 1.1 requires only the
# structural columns (docs/data_model.md). Both read the same way.
READABLE_SCHEMA_VERSIONS = ("1.0", "1.1")
_MAX_JSON_BYTES = 50_000_000
REQUIRED_TABLES = ("subjects", "assessments", "infusions")
OPTIONAL_TABLES = ("vitals", "adverse_events", "clinical_events")
ALL_TABLES = REQUIRED_TABLES + OPTIONAL_TABLES

# Columns read as strings whatever they look like, so that ids such as "007" keep their zeros.
_STRING_COLUMNS = {
    "subject_id", "arm", "site", "sex", "disposition", "dropout_reason", "scale", "visit",
    "drug", "dose_unit", "phase", "term", "severity", "event",
}


@dataclass
class Cohort:
    """One study's data as tidy pandas tables.

    Parameters
    ----------
    subjects : DataFrame
        One row per subject (``subject_id``, ``arm``, covariates, disposition).
    assessments : DataFrame
        Long table of rating-scale scores (``subject_id``, ``scale``, ``day``, ``visit``,
        ``visit_number``, ``score``).
    infusions : DataFrame
        One row per infusion (``subject_id``, ``infusion_number``, ``day``, ``drug``, ``dose``,
        ``dose_unit``, ``duration_min``, ``phase``).
    vitals, adverse_events, clinical_events : DataFrame, optional
        Within-infusion monitoring, adverse events, and clinical events that define relapse.
    metadata : dict, optional
        Design, scales, source and privacy mode (see ``docs/data_model.md``).
    truth : dict, optional
        Generating parameters of a synthetic cohort.

    Examples
    --------
    >>> import kanalysis as ka
    >>> cohort = ka.load_cohort("data/synthetic/single")  # doctest: +SKIP
    >>> cohort.assessments.groupby("visit")["score"].mean()  # doctest: +SKIP
    """

    subjects: pd.DataFrame
    assessments: pd.DataFrame
    infusions: pd.DataFrame
    vitals: pd.DataFrame | None = None
    adverse_events: pd.DataFrame | None = None
    clinical_events: pd.DataFrame | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    truth: dict[str, Any] | None = None
    notes: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ALL_TABLES:
            value = getattr(self, name)
            if value is None and name in OPTIONAL_TABLES:
                continue
            if not isinstance(value, pd.DataFrame):
                raise ConfigurationError(
                    f"Cohort table {name!r} must be a pandas DataFrame, got {type(value).__name__}."
                )
        if not isinstance(self.metadata, dict):
            raise ConfigurationError(
                f"Cohort metadata must be a dict, got {type(self.metadata).__name__}.")
        self.metadata = {"schema_version": SCHEMA_VERSION, **(self.metadata or {})}
        self._normalise_scales()

    def _normalise_scales(self) -> None:
        """Registered scales under their canonical names (``PHQ-9``, ``phq9`` -> ``PHQ9``), once.

        Analyses compare scale names exactly, so an alias left in the data would silently select
        fewer rows. Unknown names are kept (validation reports them with their rows).
        """
        from kanalysis.scales import canonical_scale_name

        a = self.assessments
        if "scale" in a.columns and len(a):
            names = a["scale"]
            uniques = pd.unique(names.dropna())
            mapping = {u: canonical_scale_name(u) for u in uniques}
            if any(k != v for k, v in mapping.items()):
                self.assessments = a.assign(
                    scale=names.map(lambda v: mapping.get(v, v) if v is not None else v))
        for key in ("primary_scale",):
            value = self.metadata.get(key)
            if isinstance(value, str) and value:
                self.metadata[key] = canonical_scale_name(value)
        scales = self.metadata.get("scales")
        if isinstance(scales, list):
            self.metadata["scales"] = list(dict.fromkeys(
                canonical_scale_name(v) if isinstance(v, str) else v for v in scales))

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables present, by name, required ones first."""
        return {n: getattr(self, n) for n in ALL_TABLES if getattr(self, n) is not None}

    @property
    def primary_scale(self) -> str:
        """The primary outcome scale: from the metadata, else the most frequent in assessments."""
        from kanalysis.rules import default_scale

        return default_scale(self)

    @property
    def n_subjects(self) -> int:
        return int(len(self.subjects))

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={len(t)}" for n, t in self.tables.items())
        name = self.metadata.get("name", "cohort")
        return f"<kanalysis.Cohort {name!r}: {parts}>"

    def validate(self):
        """Check every rule of the data model; see :func:`kanalysis.validation.validate_cohort`."""
        from kanalysis.validation import validate_cohort

        return validate_cohort(self)

    def save(self, path: str | os.PathLike, format: str = "csv") -> Path:
        """Write the cohort to a folder, atomically.

        The folder is first written under a temporary name beside the target and then renamed into
        place, so that an interrupted save never leaves a half-written cohort. An existing folder
        at ``path`` is replaced.

        Parameters
        ----------
        path : path-like
            Target folder.
        format : {"csv", "parquet"}
            File format of the tables.

        Returns
        -------
        Path
            The folder written.
        """
        from kanalysis._paths import COHORT_MARKER, check_output_dir

        if format not in ("csv", "parquet"):
            raise ConfigurationError(f"format must be 'csv' or 'parquet', got {format!r}.")
        target = check_output_dir(path, marker=COHORT_MARKER, what="cohort folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            files = {}
            for name, table in self.tables.items():
                fname = f"{name}.{format}"
                if format == "csv":
                    # Fixed float format and line ending: same data, same bytes.
                    table.to_csv(tmp / fname, index=False, lineterminator="\n", float_format="%.10g")
                else:
                    table.to_parquet(tmp / fname, index=False)
                files[name] = fname
            meta = {**self.metadata, "tables": files, "format": format}
            _write_json(tmp / "metadata.json", meta)
            if self.truth is not None:
                _write_json(tmp / "truth.json", self.truth)
            replace_folder(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return target


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def _fail(path: Path, rule: str, table: str | None = None) -> DataValidationError:
    name = table or path.stem
    problems = pd.DataFrame([{"table": name, "column": None, "rows": None,
                              "rule": f"{path.name}: {rule}", "values": None,
                              "severity": "error"}])
    return DataValidationError(f"{path.name}: {rule}", problems)


def _scan_nul(path: Path, table: str) -> None:
    """Refuse NUL bytes in a text table: the CSV reader would cut the cell at the NUL silently."""
    line = 1
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            at = block.find(b"\x00")
            if at >= 0:
                line += block.count(b"\n", 0, at)
                raise _fail(path, f"contains a NUL byte (line {line}); the file is binary or "
                            "corrupt: re-export it as plain text", table)
            line += block.count(b"\n")


def _csv_header(path: Path, table: str) -> list[str]:
    import csv

    with open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            header = next(csv.reader(handle), None)
        except csv.Error as err:
            raise _fail(path, f"the header line cannot be read as CSV ({err})", table) from None
    if header is None or not any(h.strip() for h in header):
        raise _fail(path, "the file is empty (no header line); a table file needs at least a "
                    "header naming its columns", table)
    return header


def _check_columns_unique(path: Path, columns, table: str) -> None:
    names = [str(c).strip() for c in columns]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise _fail(path, f"duplicated column name(s) in the header: {', '.join(map(repr, dup))}; "
                    "each column must appear once", table)
    empty = [i + 1 for i, c in enumerate(names) if not c or c.startswith("Unnamed:")]
    if empty:
        raise _fail(path, f"column(s) {empty} of the header have no name", table)


def _read_table(path: Path, table: str | None = None) -> pd.DataFrame:
    from kanalysis._paths import check_input_file

    table = table or path.stem
    check_input_file(path, table=table, what="table file")
    if path.suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise _fail(path, f"cannot be read as Parquet ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'corrupt file'})",
                        table) from None
        _check_columns_unique(path, df.columns, table)
        return df
    try:
        _scan_nul(path, table)
        header = _csv_header(path, table)
        _check_columns_unique(path, header, table)
        # Plain object columns (not pandas' "string" dtype), which formula and plotting
        # libraries treat as categorical.
        dtypes = {c: str for c in header if c in _STRING_COLUMNS}
        df = pd.read_csv(path, dtype=dtypes, keep_default_na=True, encoding="utf-8-sig",
                         on_bad_lines="error")
    except UnicodeDecodeError as err:
        raise _fail(path, f"the file is not valid UTF-8 text ({err.reason} at byte {err.start}). "
                    "Re-save it as UTF-8 CSV.", table) from None
    except pd.errors.EmptyDataError:
        raise _fail(path, "the file is empty (no header line)", table) from None
    except pd.errors.ParserError as err:
        raise _fail(path, f"malformed CSV: {str(err).strip()} (a row with more fields than the "
                    "header, or an unclosed quote)", table) from None
    except (ValueError, OverflowError) as err:
        raise _fail(path, f"cannot be read as CSV: {err}", table) from None
    return df


def _read_json(path: Path, what: str, *, required_type=dict) -> Any:
    from kanalysis._paths import check_input_file

    check_input_file(path, table=what, what="file")
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise _fail(path, f"is larger than {_MAX_JSON_BYTES // 1_000_000} MB; not a kanalysis "
                    f"{what} file", what)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise _fail(path, f"is not valid UTF-8 ({err.reason} at byte {err.start}); re-save it as "
                    "UTF-8", what) from None
    except json.JSONDecodeError as err:
        raise _fail(path, f"is not valid JSON: {err}", what) from None
    except RecursionError:
        raise _fail(path, "is nested too deeply to be kanalysis JSON", what) from None
    if not isinstance(obj, required_type):
        raise _fail(path, f"must hold a JSON object ({{...}}), got a JSON "
                    f"{type(obj).__name__}", what)
    return obj


def _check_metadata(path: Path, metadata: dict[str, Any]) -> None:
    version = metadata.get("schema_version", "1.0")
    if str(version) not in READABLE_SCHEMA_VERSIONS:
        raise _fail(path, f"schema_version {version!r} is not one this kanalysis reads "
                    f"({', '.join(READABLE_SCHEMA_VERSIONS)}); update kanalysis or re-import",
                    "metadata")
    for key in ("primary_scale", "name", "design", "source", "privacy"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise _fail(path, f"{key} must be a text value, got {type(value).__name__} "
                        f"{value!r}", "metadata")
    scales = metadata.get("scales")
    if scales is not None and not (isinstance(scales, list)
                                   and all(isinstance(v, str) for v in scales)):
        raise _fail(path, f"scales must be a list of scale names, got {scales!r}", "metadata")
    mcc = metadata.get("min_cell_count")
    if mcc is not None and (isinstance(mcc, bool) or not isinstance(mcc, int) or mcc < 1):
        raise _fail(path, f"min_cell_count must be a whole number >= 1, got {mcc!r}", "metadata")
    privacy = metadata.get("privacy")
    if privacy is not None and not (isinstance(privacy, str)
                                    and privacy.strip().lower() in ("none", "strict")):
        raise _fail(path, f"privacy must be 'none' or 'strict' (any case), got {privacy!r}",
                    "metadata")


def _complete_columns(tables: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Give absent optional columns their missing values, derive absent visit numbers; say so.

    Only the structural columns are required (schema 1.1). A covariate or descriptive column that
    the folder lacks is read as missing for every row, so that analyses see it and refuse or use
    complete cases with the rows named (:mod:`kanalysis.requirements`), rather than fail on a
    missing key. Absent ``visit_number`` is the order of ``day`` within subject and scale (from 0)
    and absent ``visit`` is ``visit<n>``. Each completion is returned as a note that validation
    reports as a warning.
    """
    from kanalysis.validation import DESCRIPTIVE_COLUMNS

    notes: list[dict[str, Any]] = []
    a = tables.get("assessments")
    if a is not None and {"subject_id", "scale", "day"} <= set(a.columns):
        if "visit_number" not in a.columns:
            day = pd.to_numeric(a["day"], errors="coerce")
            a["visit_number"] = (day.groupby([a["subject_id"], a["scale"]])
                                 .rank(method="first") - 1)
            notes.append({"table": "assessments", "column": "visit_number",
                          "rule": "column absent: derived as the order of day within subject "
                                  "and scale (from 0)"})
        if "visit" not in a.columns:
            a["visit"] = ("visit" + a["visit_number"].astype("Int64").astype(str)).where(
                a["visit_number"].notna(), None)
            notes.append({"table": "assessments", "column": "visit",
                          "rule": "column absent: labelled visit<visit_number>"})
    for name, columns in DESCRIPTIVE_COLUMNS.items():
        t = tables.get(name)
        if t is None:
            continue
        for c in columns:
            if c not in t.columns:
                t[c] = None if c in _STRING_COLUMNS else np.nan
                notes.append({"table": name, "column": c,
                              "rule": "column absent: read as missing for every row; analyses "
                                      "that need it refuse or use complete cases"})
    return notes


def load_cohort(path: str | os.PathLike, *, validate: bool = True) -> Cohort:
    """Load a cohort folder.

    Parameters
    ----------
    path : path-like
        Folder with ``metadata.json`` (optional) and one CSV or Parquet file per table.
    validate : bool, default True
        Check every rule of the data model and raise
        :class:`~kanalysis.errors.DataValidationError` listing all problems at once.

    Returns
    -------
    Cohort

    Raises
    ------
    DataValidationError
        A required table is missing, a file cannot be read, or (with ``validate=True``) any rule
        is broken; ``err.problems`` holds the problems as a DataFrame.
    """
    if path is None or (isinstance(path, str) and not path.strip()):
        raise ConfigurationError("load_cohort: the cohort folder path is empty.")
    folder = Path(path)
    if not folder.exists():
        raise ConfigurationError(f"Cohort folder {str(folder)!r} does not exist.")
    if not folder.is_dir():
        raise ConfigurationError(f"Cohort folder {str(folder)!r} is a file, not a folder.")
    meta_path = folder / "metadata.json"
    metadata: dict[str, Any] = {}
    if meta_path.exists() or meta_path.is_symlink():
        metadata = _read_json(meta_path, "metadata")
        _check_metadata(meta_path, metadata)
    truth = None
    truth_path = folder / "truth.json"
    if truth_path.exists() or truth_path.is_symlink():
        truth = _read_json(truth_path, "truth")

    tables: dict[str, pd.DataFrame] = {}
    missing = []
    for name in ALL_TABLES:
        candidates = [folder / f"{name}.csv", folder / f"{name}.parquet"]
        found = [p for p in candidates if p.exists() or p.is_symlink()]
        if not found:
            if name in REQUIRED_TABLES:
                missing.append(name)
            continue
        if len(found) > 1:
            raise _fail(found[0], f"both {name}.csv and {name}.parquet are in the folder; keep "
                        "one file per table, so that it is clear which one is the data", name)
        tables[name] = _read_table(found[0], name)
    if missing:
        problems = pd.DataFrame(
            [
                {"table": m, "column": None, "rows": None, "rule": "required table is missing",
                 "values": f"no {m}.csv or {m}.parquet in {folder}", "severity": "error"}
                for m in missing
            ]
        )
        raise DataValidationError(
            f"Cohort folder {str(folder)!r} lacks required table(s): {', '.join(missing)} "
            f"(expected files such as {missing[0]}.csv).",
            problems,
        )
    metadata = {k: v for k, v in metadata.items() if k not in ("tables", "format")}
    notes = _complete_columns(tables)
    cohort = Cohort(**tables, metadata=metadata, truth=truth, notes=notes)
    if validate:
        cohort.validate().raise_if_errors()
    return cohort
