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

import pandas as pd

from kanalysis._io import replace_folder
from kanalysis.errors import ConfigurationError, DataValidationError

__all__ = ["Cohort", "load_cohort", "REQUIRED_TABLES", "OPTIONAL_TABLES", "SCHEMA_VERSION"]

SCHEMA_VERSION = "1.0"
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

    def __post_init__(self) -> None:
        for name in ALL_TABLES:
            value = getattr(self, name)
            if value is None and name in OPTIONAL_TABLES:
                continue
            if not isinstance(value, pd.DataFrame):
                raise ConfigurationError(
                    f"Cohort table {name!r} must be a pandas DataFrame, got {type(value).__name__}."
                )
        self.metadata = {"schema_version": SCHEMA_VERSION, **(self.metadata or {})}

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
        if format not in ("csv", "parquet"):
            raise ConfigurationError(f"format must be 'csv' or 'parquet', got {format!r}.")
        target = Path(path)
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


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        header = pd.read_csv(path, nrows=0).columns
        # Plain object columns (not pandas' "string" dtype), which formula and plotting
        # libraries treat as categorical.
        dtypes = {c: str for c in header if c in _STRING_COLUMNS}
        return pd.read_csv(path, dtype=dtypes, keep_default_na=True)
    except UnicodeDecodeError as err:
        raise DataValidationError(
            f"{path.name}: the file is not valid UTF-8 text ({err.reason} at byte {err.start}). "
            "Re-save it as UTF-8 CSV."
        ) from None


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
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigurationError(f"Cohort folder {str(folder)!r} does not exist or is not a folder.")
    meta_path = folder / "metadata.json"
    metadata: dict[str, Any] = {}
    if meta_path.exists():
        try:
            metadata = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise DataValidationError(f"metadata.json is not valid JSON: {err}") from None
    truth = None
    if (folder / "truth.json").exists():
        truth = json.loads((folder / "truth.json").read_text())

    tables: dict[str, pd.DataFrame] = {}
    missing = []
    for name in ALL_TABLES:
        candidates = [folder / f"{name}.csv", folder / f"{name}.parquet"]
        found = [p for p in candidates if p.exists()]
        if not found:
            if name in REQUIRED_TABLES:
                missing.append(name)
            continue
        tables[name] = _read_table(found[0])
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
    cohort = Cohort(**tables, metadata=metadata, truth=truth)
    if validate:
        cohort.validate().raise_if_errors()
    return cohort
