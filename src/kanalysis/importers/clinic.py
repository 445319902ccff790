"""Import a ketamine clinic's export (CSV, TSV, Parquet or Excel) through a mapping file.

The mapping file (TOML or YAML; see ``examples/mapping_clinic.toml`` and ``docs/own_data.md``) has one
section per cohort table. Each section names the input ``file`` and, under ``columns``, which of the
file's columns holds each kanalysis column. Calendar dates (``datetime`` or ``date`` + ``time``) are
turned into study days since each subject's first infusion, then dropped. Columns that look like
direct identifiers are dropped and listed in the report; any other column the mapping does not use is
an error unless listed under ``ignore``.

Example
-------
>>> from kanalysis.importers import import_clinic
>>> result = import_clinic("examples/mapping_clinic.toml")  # doctest: +SKIP
>>> print(result.to_markdown())  # doctest: +SKIP
>>> result.save("cohorts/my_clinic")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from kanalysis.errors import ConfigurationError
from kanalysis.importers._common import (
    ERROR,
    WARNING,
    ImportLog,
    ImportResult,
    days_between,
    finish_import,
    map_unique,
    parse_datetimes,
    read_table_file,
    safe_values,
    sheet_rows,
    to_number,
)
from kanalysis.privacy import IDENTIFIER_KINDS, detect_identifiers
from kanalysis.validation import ValidationReport

__all__ = ["TARGETS", "import_clinic", "load_mapping", "mapping_files"]

# kanalysis columns each table can take from the export, and their kind:
# text, number, bool, datetime (a calendar date-time converted to a study day), day (already a
# study day), time (a clock time joined to a `date`).
TARGETS: dict[str, dict[str, str]] = {
    "subjects": {
        "subject_id": "text", "arm": "text", "site": "text", "age": "number", "sex": "text",
        "n_failed_trials": "number", "episode_duration_months": "number",
        "anxious_distress": "number", "bmi": "number", "family_history_aud": "number",
        "disposition": "text", "dropout_reason": "text", "dropout_day": "day",
        "dropout_date": "datetime", "randomization_day": "day", "randomization_date": "datetime",
        "birth_date": "datetime",
    },
    "assessments": {
        "subject_id": "text", "datetime": "datetime", "date": "datetime", "time": "time",
        "day": "day", "scale": "text", "score": "number", "visit": "text", "visit_number": "number",
    },
    "infusions": {
        "subject_id": "text", "datetime": "datetime", "date": "datetime", "time": "time",
        "end_datetime": "datetime", "infusion_number": "number", "drug": "text", "dose": "number",
        "dose_unit": "text", "duration_min": "number", "phase": "text",
    },
    "vitals": {
        "subject_id": "text", "infusion_number": "number", "datetime": "datetime",
        "date": "datetime", "time": "time", "minute": "number", "sbp": "number", "dbp": "number",
        "heart_rate": "number", "cadss": "number",
    },
    "adverse_events": {
        "subject_id": "text", "datetime": "datetime", "date": "datetime", "time": "time",
        "day": "day", "infusion_number": "number", "term": "text", "severity": "text",
        "serious": "bool",
    },
    "clinical_events": {
        "subject_id": "text", "datetime": "datetime", "date": "datetime", "time": "time",
        "day": "day", "event": "text",
    },
}
_SECTION_KEYS = {"file", "format", "sheet", "delimiter", "encoding", "date_format", "dayfirst",
                 "columns", "constants", "values", "ignore", "where", "scores"}
_TOP_KEYS = {"cohort", "defaults", *TARGETS}
_MODEL_ORDER = {
    "subjects": ["subject_id", "arm", "site", "age", "sex", "n_failed_trials",
                 "episode_duration_months", "anxious_distress", "bmi", "family_history_aud",
                 "disposition", "dropout_day", "dropout_reason", "randomization_day"],
    "assessments": ["subject_id", "scale", "day", "visit", "visit_number", "score"],
    "infusions": ["subject_id", "infusion_number", "day", "drug", "dose", "dose_unit",
                  "duration_min", "phase"],
    "vitals": ["subject_id", "infusion_number", "minute", "sbp", "dbp", "heart_rate", "cadss"],
    "adverse_events": ["subject_id", "day", "infusion_number", "term", "severity", "serious"],
    "clinical_events": ["subject_id", "day", "event"],
}
# Text columns whose content is checked for identifiers even though the mapping names them.
_CONTENT_CHECKED = {"site", "dropout_reason", "term", "visit", "arm"}
_TRUE = {"1", "1.0", "true", "yes", "y", "t", "ja"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", "nei"}


def read_mapping_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML or YAML mapping file into a dict (no checks); refuse special files."""
    from kanalysis._paths import InputFileError, check_input_file

    try:
        path = check_input_file(path, what="mapping file")
    except InputFileError as err:
        raise ConfigurationError(str(err)) from None
    if path.stat().st_size > 5_000_000:
        raise ConfigurationError(f"Mapping file {path.name} is larger than 5 MB; not a mapping.")
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            mapping = tomllib.loads(text.decode("utf-8"))
        elif path.suffix.lower() in (".yaml", ".yml"):
            mapping = yaml.safe_load(text.decode("utf-8")) or {}
        else:
            raise ConfigurationError(
                f"Mapping file {path.name}: use a .toml, .yaml or .yml file."
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ConfigurationError(f"Mapping file {path.name} cannot be parsed: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigurationError(f"Mapping file {path.name} is not UTF-8 text ({err.reason} at "
                                 f"byte {err.start}); save it as UTF-8.") from None
    if not isinstance(mapping, dict):
        raise ConfigurationError(f"Mapping file {path.name}: the top level must be a table of "
                                 f"sections, got {type(mapping).__name__}.")
    return mapping


_SCALAR = (str, int, float, bool)
_BOOL_TEXT = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _as_setting_bool(value, where: str, problems: list[str]):
    """A yes/no setting: TOML/YAML booleans, or the text "true"/"false" (read as what it says)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    problems.append(f"{where} must be true or false, got {value!r}")
    return None


def _check_settings(where: str, spec: dict, problems: list[str]) -> None:
    """Types of the per-file settings (shared by [defaults] and the table sections)."""
    import codecs

    instrument = spec.get("instrument")
    if "instrument" in spec and not (isinstance(instrument, str) or (
            isinstance(instrument, list) and instrument
            and all(isinstance(v, str) for v in instrument))):
        problems.append(f"{where} `instrument` must name a REDCap form (or, for [subjects], a "
                        f"list of forms), got {instrument!r}")
    for key in ("file", "date_format", "encoding", "delimiter", "format"):
        if key in spec and not isinstance(spec[key], str):
            problems.append(f"{where} `{key}` must be text, got {type(spec[key]).__name__} "
                            f"{spec[key]!r}")
    if isinstance(spec.get("encoding"), str):
        try:
            codecs.lookup(spec["encoding"])
        except LookupError:
            problems.append(f"{where} unknown encoding {spec['encoding']!r} (e.g. utf-8, "
                            "cp1252, latin-1)")
    if isinstance(spec.get("date_format"), str) and "%" not in spec["date_format"]:
        problems.append(f"{where} date_format {spec['date_format']!r} has no strftime code "
                        "(e.g. %d.%m.%Y)")
    if isinstance(spec.get("delimiter"), str) and len(spec["delimiter"]) != 1:
        problems.append(f"{where} delimiter must be one character (',', ';', '\\t'), got "
                        f"{spec['delimiter']!r}")
    if isinstance(spec.get("format"), str) and spec["format"] not in ("csv", "tsv", "parquet",
                                                                         "excel"):
        problems.append(f"{where} format must be csv, tsv, parquet or excel, got "
                        f"{spec['format']!r}")
    if "sheet" in spec and (isinstance(spec["sheet"], bool)
                            or not isinstance(spec["sheet"], (str, int))):
        problems.append(f"{where} `sheet` must be a sheet name or number")
    for key in ("dayfirst", "pseudonymise_ids"):
        if key in spec:
            spec[key] = _as_setting_bool(spec[key], f"{where} `{key}`", problems)


def check_mapping(mapping: dict[str, Any], name: str, *, redcap: bool = False) -> dict[str, Any]:
    """Check a parsed mapping (every problem at once); normalise yes/no settings in place.

    Raises
    ------
    ConfigurationError
        Listing every problem: unknown sections or keys, wrong types (a list where a value
        belongs, an integer ``date_format``, a text ``where``, a non-numeric ``min_cell_count``),
        unknown kanalysis columns.
    """
    problems: list[str] = []
    top = _TOP_KEYS | ({"redcap"} if redcap else set())
    section_keys = _SECTION_KEYS | ({"instrument", "items", "events", "max_missing_items"}
                                    if redcap else set())
    for key in mapping:
        if key not in top:
            problems.append(f"unknown section [{key}]; sections are {', '.join(sorted(top))}")
    for key in ("cohort", "defaults", "redcap"):
        if key in mapping and not isinstance(mapping[key], dict):
            problems.append(f"[{key}] must be a table of settings, got "
                            f"{type(mapping[key]).__name__}")
    cohort = mapping.get("cohort") if isinstance(mapping.get("cohort"), dict) else {}
    for key in ("name", "primary_scale", "design"):
        if key in cohort and not isinstance(cohort[key], str):
            problems.append(f"[cohort] {key} must be text, got {cohort[key]!r}")
    if "min_cell_count" in cohort:
        mcc = cohort["min_cell_count"]
        if isinstance(mcc, bool) or not isinstance(mcc, int) or mcc < 1:
            problems.append(f"[cohort] min_cell_count must be a whole number >= 1, got {mcc!r}")
    if isinstance(mapping.get("defaults"), dict):
        _check_settings("[defaults]", mapping["defaults"], problems)
    for table in ("assessments", "infusions"):
        if table not in mapping:
            problems.append(f"section [{table}] is required (the cohort needs {table})")
    for table, spec in mapping.items():
        if table not in TARGETS:
            continue
        if not isinstance(spec, dict):
            problems.append(f"[{table}] must be a table of settings")
            continue
        for key in spec:
            if key not in section_keys:
                problems.append(f"[{table}] unknown key {key!r}; keys are {', '.join(sorted(section_keys))}")
        _check_settings(f"[{table}]", spec, problems)
        source = "instrument" if redcap else "file"
        if source not in spec and table != "subjects":
            problems.append(f"[{table}] needs `{source}`, the "
                            + ("REDCap instrument (form) to read" if redcap else "export to read"))
        for key in ("columns", "constants", "values", "where", "scores", "items"):
            if key in spec and not isinstance(spec[key], dict):
                problems.append(f"[{table}] `{key}` must be a table (key = value pairs), got "
                                f"{type(spec[key]).__name__} {spec[key]!r}")
                spec[key] = {}
        columns = spec.get("columns", {}) or {}
        constants = spec.get("constants", {}) or {}
        for target, col in columns.items():
            if not isinstance(col, str):
                problems.append(f"[{table}.columns] {target} must name one column (text), got "
                                f"{col!r}")
        for target, value in constants.items():
            if not isinstance(value, _SCALAR):
                problems.append(f"[{table}.constants] {target} must be one value (text or "
                                f"number), got {type(value).__name__} {value!r}")
        for target in [*columns, *constants]:
            if target not in TARGETS[table]:
                problems.append(
                    f"[{table}] unknown kanalysis column {target!r}; allowed: "
                    f"{', '.join(TARGETS[table])}"
                )
        for column, wanted in (spec.get("where", {}) or {}).items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values or not all(isinstance(v, _SCALAR) for v in values):
                problems.append(f"[{table}.where] {column} must be a value or a list of values")
        if "ignore" in spec and not (isinstance(spec["ignore"], list)
                                     and all(isinstance(v, str) for v in spec["ignore"])):
            problems.append(f"[{table}] `ignore` must be a list of column names, e.g. "
                            f"ignore = [\"Rater\"], got {spec['ignore']!r}")
            spec["ignore"] = []
        scores = spec.get("scores")
        if scores is not None:
            if table != "assessments":
                problems.append(f"[{table}] `scores` (one column per scale) is for [assessments] only")
            elif not scores:
                problems.append("[assessments.scores] must map scale names to your columns")
            elif {"scale", "score"} & set(columns):
                problems.append("[assessments] map either `scale` + `score` (long) or `scores` "
                                "(one column per scale), not both")
            elif not all(isinstance(v, str) for v in scores.values()):
                problems.append("[assessments.scores] each scale must name one column")
        if source in spec and "subject_id" not in columns and not redcap:
            problems.append(f"[{table}.columns] must name the subject column (subject_id = ...)")
        when = {"datetime", "date", "day"} & set(columns)
        if table in ("assessments", "infusions", "adverse_events", "clinical_events") and not when:
            problems.append(f"[{table}.columns] needs `datetime` or `date` (or `day`) ")
        if "time" in columns and "date" not in columns:
            problems.append(f"[{table}.columns] `time` needs `date` beside it")
        for target, values in (spec.get("values", {}) or {}).items():
            if not isinstance(values, dict):
                problems.append(f"[{table}.values.{target}] must map your values to kanalysis values")
            elif not all(isinstance(v, _SCALAR) for v in values.values()):
                problems.append(f"[{table}.values.{target}] each value must be text or a number")
    if problems:
        raise ConfigurationError(
            f"Mapping file {name} has {len(problems)} problem(s):\n- " + "\n- ".join(problems)
        )
    return mapping


def load_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a mapping file (``.toml``, ``.yaml`` or ``.yml``).

    Every problem in the mapping is reported at once in one :class:`ConfigurationError`.
    """
    path = Path(path)
    mapping = read_mapping_file(path)
    check_mapping(mapping, path.name)
    mapping["_base"] = path.parent
    mapping["_name"] = path.name
    return mapping


def mapping_files(mapping: str | os.PathLike | dict[str, Any]) -> list[Path]:
    """The export files a mapping reads (resolved against the mapping's folder)."""
    if not isinstance(mapping, dict):
        mapping = load_mapping(mapping)
    base = Path(mapping.get("_base", "."))
    out = []
    for table in TARGETS:
        spec = mapping.get(table)
        if isinstance(spec, dict) and isinstance(spec.get("file"), str):
            f = Path(spec["file"])
            out.append(f if f.is_absolute() else base / f)
    return out


def import_clinic(
    mapping: str | os.PathLike | dict[str, Any],
    *,
    pseudonymise: bool | None = None,
) -> ImportResult:
    """Import a clinic export described by a mapping file into a cohort.

    Parameters
    ----------
    mapping : path or dict
        The mapping file (or an already loaded mapping from :func:`load_mapping`).
    pseudonymise : bool, optional
        Replace subject ids by ``P0001``, ``P0002`` ... (numbered by first infusion, then by id).
        Default: the mapping's ``[defaults] pseudonymise_ids`` setting, else True (clinic ids are
        usually record numbers). The key is in ``result.id_key``; it is never written into the
        cohort folder.

    Returns
    -------
    ImportResult
        ``result.ok`` tells whether the cohort can be saved; ``result.to_markdown()`` lists every
        problem (table/file, column, rows, rule) and what was dropped and why.

    Notes
    -----
    Study day = (date-time - the subject's first infusion date-time) / 24 h, so the first infusion is
    day 0, a rating 40 minutes after it day 0.02778 and screening negative. A table whose dates carry
    no clock time (mapped as `date` without `time`, or every value at 00:00) counts whole days from
    the date of the first infusion.
    """
    if not isinstance(mapping, dict):
        mapping = load_mapping(mapping)
    base = Path(mapping.get("_base", "."))
    defaults = mapping.get("defaults", {}) or {}
    cohort_spec = mapping.get("cohort", {}) or {}
    report = ValidationReport()
    log = ImportLog(source="clinic")
    if pseudonymise is None:
        pseudonymise = bool(defaults.get("pseudonymise_ids", True))

    # A long export can feed several tables: a column mapped by any section reading the same file
    # is accounted for.
    used_by_file: dict[str, set[str]] = {}
    for table in TARGETS:
        spec = mapping.get(table) or {}
        if "file" in spec:
            cols = (set((spec.get("columns") or {}).values()) | set(spec.get("where") or {})
                    | set((spec.get("scores") or {}).values()))
            used_by_file.setdefault(str(spec["file"]), set()).update(cols)

    staged: dict[str, pd.DataFrame] = {}
    whens: dict[str, pd.Series] = {}
    for table in TARGETS:
        spec = mapping.get(table)
        if spec is None or "file" not in spec:
            continue
        loaded = _stage_table(table, spec, defaults, base, report, log,
                              used_by_file.get(str(spec["file"]), set()))
        if loaded is not None:
            staged[table], whens[table] = loaded

    if "infusions" not in staged or "assessments" not in staged:
        return finish_import(None, {}, report, log)

    # Time origin: each subject's first infusion.
    anchor = whens["infusions"].groupby(staged["infusions"]["subject_id"]).min()
    no_time = anchor.isna()
    if no_time.any():
        report.add("infusions", "datetime", None,
                   "subject(s) with no dated infusion: study days cannot be computed",
                   [f"{int(no_time.sum())} subject(s)"])

    # The staged frames are this import's own: they are finished in place, not copied (a
    # registry's tables are large), and the staging dict is emptied as they move on.
    rows_read = {t: int(df.attrs.get("rows_read", len(df))) for t, df in staged.items()}
    tables: dict[str, pd.DataFrame] = {}
    for table in [t for t in staged if t != "subjects"]:
        tables[table] = _add_study_days(table, staged.pop(table), whens.get(table), anchor,
                                        mapping.get(table, {}) or {}, log)

    tables["infusions"] = _finish_infusions(tables["infusions"], whens["infusions"], mapping, report, log)
    tables["assessments"] = _finish_assessments(tables["assessments"], report, log)
    if "vitals" in tables:
        tables["vitals"] = _finish_vitals(tables["vitals"], whens["vitals"], whens["infusions"],
                                          tables["infusions"], report)
    if "adverse_events" in tables:
        tables["adverse_events"] = _link_infusion(tables["adverse_events"], tables["infusions"], log)
    tables["subjects"] = _finish_subjects(staged.get("subjects"), whens.get("subjects"), anchor,
                                          tables, mapping.get("subjects", {}) or {}, report, log)

    id_key = None
    if pseudonymise:
        tables, id_key = _pseudonymise(tables, anchor, log)

    for table in list(tables):
        _fill_optional_columns(table, tables[table], log)
        order = [c for c in _MODEL_ORDER[table] if c in tables[table].columns]
        ordered = tables[table][order]
        ordered.index = pd.RangeIndex(len(ordered))
        tables[table] = ordered
        log.rows(table, rows_read.get(table, len(ordered)), len(ordered))

    metadata = {
        "name": cohort_spec.get("name", Path(mapping.get("_name", "clinic")).stem),
        "design": cohort_spec.get("design", "clinic"),
        "source": "clinic",
        "privacy": "strict",
        "min_cell_count": int(cohort_spec.get("min_cell_count", 11)),
    }
    if "primary_scale" in cohort_spec:
        metadata["primary_scale"] = cohort_spec["primary_scale"]
    return finish_import(tables, metadata, report, log, id_key=id_key)


def _add_study_days(table: str, out: pd.DataFrame, when: pd.Series | None, anchor: pd.Series,
                    spec: dict, log: ImportLog) -> pd.DataFrame:
    """Study day = (date-time - subject's first infusion) / 24 h, added to ``out`` in place."""
    dated = {"datetime", "date"} & set(spec.get("columns", {}) or {})
    if when is not None and dated:
        start = out["subject_id"].map(anchor)
        if _date_only(spec) or _all_midnight(when):
            # Dates without clock times count whole days from the date of the first infusion.
            start = start.dt.normalize()
        day = days_between(when, start)
        out["day"] = day if "day" not in out else out["day"].where(out["day"].notna(), day)
        log.notes.append(
            f"{table}: calendar dates converted to study days since each subject's first "
            "infusion, then dropped"
        )
    return out


# --- one table -------------------------------------------------------------------------------------
def _stage_table(
    table: str, spec: dict, defaults: dict, base: Path, report: ValidationReport, log: ImportLog,
    used_elsewhere: set[str],
) -> tuple[pd.DataFrame, pd.Series] | None:
    setting = {**{k: v for k, v in defaults.items() if k in _SECTION_KEYS}, **spec}
    if "_frame" in spec:  # already read and decoded (REDCap): the file is logged by the caller
        path = Path(str(spec["file"]))
        label = f"{spec.get('_label', path.name)} ({table})"
        # The REDCap importer hands its decoded frame over: taken (not copied) so that it is
        # freed once this table is staged.
        raw = spec.pop("_frame")
    else:
        path = base / spec["file"]  # as the user wrote it (relative stays relative in messages)
        label = f"{path.name} ({table})"
        raw = read_table_file(
            path, label=label, report=report, format=setting.get("format"),
            encoding=setting.get("encoding", "utf-8"), sheet=setting.get("sheet"),
            delimiter=setting.get("delimiter"),
        )
        if raw is None:
            return None
        if not any(f["file"] == path.name for f in log.files):
            log.add_file(path, table, len(raw), raw.shape[1])
        else:
            next(f for f in log.files if f["file"] == path.name)["role"] += f", {table}"
    raw.columns = [str(c).strip() for c in raw.columns]
    rows_read = len(raw)

    # Row filter for long exports holding several record types in one file.
    where = spec.get("where", {}) or {}
    used_for_filter = set()
    keep_rows = pd.Series(True, index=raw.index)
    for column, wanted in where.items():
        if column not in raw.columns:
            report.add(label, column, None, f"`where` names a column that is not in the file; columns: {', '.join(raw.columns)}")
            continue
        used_for_filter.add(column)
        wanted_values = wanted if isinstance(wanted, list) else [wanted]
        keep_rows &= raw[column].astype(str).isin([str(w) for w in wanted_values])
    positions = pd.Series(np.arange(len(raw)), index=raw.index)

    columns: dict[str, str] = dict(spec.get("columns", {}) or {})
    constants: dict[str, Any] = dict(spec.get("constants", {}) or {})
    recodes: dict[str, dict] = dict(spec.get("values", {}) or {})
    ignore = set(spec.get("ignore", []) or [])

    scores: dict[str, str] = dict(spec.get("scores", {}) or {})
    missing = [f"{t} = {c!r}" for t, c in [*columns.items(), *scores.items()] if c not in raw.columns]
    if missing:
        report.add(label, ", ".join(c for c in columns.values() if c not in raw.columns), None,
                   f"mapped column(s) not in the file ({'; '.join(missing)}); columns present: "
                   f"{', '.join(raw.columns)}")
    mapped_sources = {c for c in [*columns.values(), *scores.values()] if c in raw.columns}

    # Identifier screen of every column no section of the mapping uses.
    unmapped = [c for c in raw.columns if c not in mapped_sources and c not in used_for_filter
                and c not in used_elsewhere]
    findings = detect_identifiers(raw[unmapped], table=label) if unmapped else detect_identifiers(raw.iloc[:, :0])
    log.drop_identifiers(path.name, findings)
    flagged = set(findings["column"])
    for column in unmapped:
        if column in flagged:
            continue
        if column in ignore:
            log.drop(label, column, "listed under `ignore` in the mapping")
            continue
        report.add(
            label, column, None,
            "unmapped column: map it under [" + table + ".columns] or list it under `ignore` "
            "(nothing is dropped silently)",
        )
    for column in ignore - set(raw.columns):
        report.add(label, column, None, "`ignore` names a column that is not in the file", severity=WARNING)

    data = raw[keep_rows] if where else raw
    if where:
        log.notes.append(f"{label}: kept {int(keep_rows.sum())} of {rows_read} rows by `where` {where}")
    pos = positions[keep_rows]
    out = pd.DataFrame(index=data.index)
    kinds = TARGETS[table]
    date_format = setting.get("date_format")
    dayfirst = setting.get("dayfirst")
    datetimes: dict[str, pd.Series] = {}

    for target, source in columns.items():
        if source not in data.columns:
            continue
        kind = kinds[target]
        values = data[source]
        sub_report = ValidationReport()
        if kind == "datetime":
            datetimes[target] = parse_datetimes(values, label=label, column=source, report=sub_report,
                                                date_format=date_format, dayfirst=dayfirst)
            log.drop(label, source, f"calendar date mapped to {target}: converted to a study day, then dropped", "exact_date")
        elif kind == "time":
            datetimes["time"] = values
            log.drop(label, source, "clock time: joined to the date, converted to a study day, then dropped", "exact_date")
        elif kind in ("number", "day"):
            out[target] = to_number(values, label=label, column=source, report=sub_report)
            log.keep(table, target, f"{path.name}:{source}", "number")
        elif kind == "bool":
            out[target] = _to_bool(values, label, source, recodes.get(target), sub_report)
            log.keep(table, target, f"{path.name}:{source}", "true/false")
        else:
            text = values.astype(object).where(values.notna(), None)
            text = map_unique(text, _as_text)
            if target in recodes:
                table_map = {str(k): v for k, v in recodes[target].items()}
                text = map_unique(text, lambda v, m=table_map: m.get(v, v) if v is not None else None)
            out[target] = text
            log.keep(table, target, f"{path.name}:{source}", "recoded" if target in recodes else "copied")
            if target in _CONTENT_CHECKED:
                hit = detect_identifiers(pd.DataFrame({source: data[source]}), table=label, by_name=False)
                if not hit.empty:
                    out[target] = None
                    log.drop(label, source, f"identifier in a mapped column: {hit['reason'].iloc[0]}; "
                             f"{target} left empty", hit["kind"].iloc[0])
                    report.add(label, source, None,
                               f"{target} looks like {IDENTIFIER_KINDS[hit['kind'].iloc[0]]}; its values "
                               "were removed", severity=WARNING)
        # Rows in the sub-report are positions among kept rows; translate to file rows.
        for p in sub_report.problems.itertuples(index=False):
            report.add(p.table, p.column, _translate_rows(p.rows, pos), p.rule, p.values, p.severity)

    for target, value in constants.items():
        out[target] = value
        log.keep(table, target, f"constant {value!r}", "constant")

    # Subject key: trimmed text; missing ids are errors with their rows.
    if "subject_id" in out:
        missing_id = out["subject_id"].isna() | (out["subject_id"] == "")
        if missing_id.any():
            report.add(label, columns.get("subject_id"), sheet_rows(pos[missing_id]),
                       "missing subject id")
        if missing_id.any():
            out = out[~missing_id]
            pos = pos[~missing_id]
            for k in datetimes:
                datetimes[k] = datetimes[k][~missing_id]

    when = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    if "datetime" in datetimes:
        when = datetimes["datetime"]
    elif "date" in datetimes:
        when = datetimes["date"]
        if "time" in datetimes:
            when = _join_time(when, datetimes["time"], label, columns.get("time"), pos, report)
    if table == "subjects":
        for target in ("dropout_date", "randomization_date", "birth_date"):
            if target in datetimes:
                out[target] = datetimes[target]
    if table == "infusions" and "end_datetime" in datetimes:
        out["end_datetime"] = datetimes["end_datetime"]
    if table != "subjects" and {"datetime", "date"} & set(columns):
        # Unreadable dates are reported by the parser; here only the empty cells.
        source = columns.get("datetime") or columns.get("date")
        if source in data.columns:
            cells = data.loc[out.index, source]
            empty = cells.isna() | (cells.astype(str).str.strip() == "")
            if empty.any():
                report.add(label, source, sheet_rows(pos[empty]),
                           "missing date: the record cannot be placed in time")

    if scores:
        out, when, pos = _melt_scores(out, when, pos, data, scores, label, report, log, path.name)

    # Duplicated records.
    if table == "subjects" and "subject_id" in out:
        dup = out["subject_id"].duplicated(keep=False)
        if dup.any():
            report.add(label, columns.get("subject_id"), sheet_rows(pos[dup]),
                       f"duplicated subject rows: {out.loc[dup, 'subject_id'].nunique()} subject(s) "
                       "appear more than once; keep one row per subject")
    elif table in ("assessments", "infusions") and "subject_id" in out:
        key = out[["subject_id"]].assign(_when=when)
        if table == "assessments" and "scale" in out:
            key["scale"] = out["scale"]
        dup = key.duplicated(keep=False) & when.notna()
        if dup.any():
            report.add(label, None, sheet_rows(pos[dup]),
                       f"duplicated {table} rows: same subject{', scale' if table == 'assessments' else ''} "
                       "and date-time", severity=ERROR)
    out.attrs["rows_read"] = rows_read
    return out, when


def _melt_scores(out, when, pos, data, scores, label, report, log, file_name):
    """Wide export (one column per scale) -> one row per rating; blank cells are missed ratings."""
    parts, whens, positions = [], [], []
    for scale_name, source in scores.items():
        if source not in data.columns:
            continue
        sub_report = ValidationReport()
        values = to_number(data.loc[out.index, source], label=label, column=source, report=sub_report)
        for p in sub_report.problems.itertuples(index=False):
            report.add(p.table, p.column, _translate_rows(p.rows, pos), p.rule, p.values, p.severity)
        present = values.notna()
        parts.append(out[present].assign(scale=scale_name, score=values[present]))
        whens.append(when[present])
        positions.append(pos[present])
        log.keep("assessments", "score", f"{file_name}:{source}", f"scale {scale_name} (wide export)")
    if not parts:
        empty = out.iloc[:0].assign(scale=None, score=np.nan)
        return empty, when.iloc[:0], pos.iloc[:0]
    log.notes.append(f"{label}: one column per scale ({', '.join(scores)}) turned into one row per "
                     "rating; blank cells taken as missed ratings")
    return (pd.concat(parts, ignore_index=True), pd.concat(whens, ignore_index=True),
            pd.concat(positions, ignore_index=True))


def _as_text(value) -> str | None:
    """Cell -> trimmed text; spreadsheet numbers such as 1001.0 become "1001" (ids keep matching)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _translate_rows(rows, pos: pd.Series):
    if rows is None or rows == "":
        return rows
    try:
        numbers = [int(r) for r in str(rows).split(" ...")[0].split(", ")]
    except ValueError:
        return rows
    return [int(pos.iloc[n]) for n in numbers if 0 <= n < len(pos)]


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?$")


def _clock_seconds(value) -> float | None:
    """Seconds since midnight of a clock time (HH:MM, HH:MM:SS, 9:10 PM); None if not one.

    Strict on purpose: ``9.55`` (a decimal, not a time), ``10:75`` and ``25:00`` are refused rather
    than read as some other minute.
    """
    if value is None:
        return None
    if hasattr(value, "hour") and hasattr(value, "minute"):
        return value.hour * 3600.0 + value.minute * 60 + getattr(value, "second", 0)
    m = _CLOCK.match(str(value).strip())
    if not m:
        return None
    hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if m.group(4):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if m.group(4).lower() == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return hour * 3600.0 + minute * 60 + second


def _join_time(date: pd.Series, time: pd.Series, label: str, column: str | None,
               pos: pd.Series, report: ValidationReport) -> pd.Series:
    present = time.notna() & (time.astype(str).str.strip() != "")
    uniques = pd.unique(time[present].astype(object))
    lookup = {v: _clock_seconds(v) for v in uniques}
    seconds = time.astype(object).map(lambda v: lookup.get(v) if v in lookup else None)
    bad = present & seconds.isna()
    if bad.any():
        report.add(label, column, sheet_rows(pos[bad]),
                   "clock time must be HH:MM or HH:MM:SS (00:00-23:59) or H:MM AM/PM; "
                   "values such as 9.55 or 10:75 are not read as times",
                   safe_values(time[bad]))
    delta = pd.to_timedelta(seconds.astype(float).fillna(0.0), unit="s")
    return date + delta


def _to_bool(values: pd.Series, label: str, column: str, recode: dict | None,
             report: ValidationReport) -> pd.Series:
    def convert(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if recode and str(v) in recode:
            return bool(recode[str(v)])
        key = str(v).strip().lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
        return "bad"

    converted = values.astype(object).map(convert)
    bad = converted == "bad"
    if bad.any():
        report.add(label, column, sheet_rows(np.flatnonzero(bad.to_numpy())),
                   "must be yes/no, true/false or 1/0 (or map values under [values])",
                   safe_values(values[bad]))
    return converted.where(~bad, None)


# --- per-table finishing ---------------------------------------------------------------------------
def _finish_infusions(inf: pd.DataFrame, when: pd.Series, mapping: dict, report, log) -> pd.DataFrame:
    """Derived infusion columns, added in place (``inf`` is the import's own staged frame)."""
    if "end_datetime" in inf:
        if "duration_min" not in inf:
            inf["duration_min"] = (inf["end_datetime"] - when) / pd.Timedelta(minutes=1)
            log.keep("infusions", "duration_min", "end date-time minus start", "derived")
        inf = inf.drop(columns="end_datetime")
    if "infusion_number" not in inf:
        order = pd.DataFrame({"s": inf["subject_id"], "w": when, "d": inf.get("day")})
        inf["infusion_number"] = (
            order.sort_values(["s", "w", "d"], kind="stable").groupby("s").cumcount() + 1
        ).reindex(inf.index).astype(float)
        log.keep("infusions", "infusion_number", "order of infusion dates within subject", "derived")
    if "phase" not in inf:
        inf["phase"] = "induction"
        log.notes.append("infusions: no phase mapped; every infusion taken as 'induction'")
        report.add("infusions", "phase", None,
                   "no phase mapped: every infusion taken as induction (map `phase` or set it under "
                   "[infusions.constants] if the clinic gives maintenance infusions)", severity=WARNING)
    return inf


def _finish_assessments(a: pd.DataFrame, report, log) -> pd.DataFrame:
    """Canonical scale names and derived visits, in place (``a`` is the import's own frame)."""
    if "scale" in a:
        a["scale"] = map_unique(a["scale"], _canonical_scale)
    if "visit_number" not in a and "day" in a:
        a["visit_number"] = (
            a.sort_values(["subject_id", "scale", "day"], kind="stable")
            .groupby(["subject_id", "scale"]).cumcount()
        ).reindex(a.index).astype(float)
        log.keep("assessments", "visit_number", "order of assessment dates within subject and scale", "derived")
    if "visit" not in a and "visit_number" in a:
        # One label per number, so by-visit summaries stay consistent; baseline is derived from
        # the days (last rating on or before the first infusion), not from the label.
        a["visit"] = "visit" + a["visit_number"].astype("Int64").astype(str)
        log.keep("assessments", "visit", "visit<visit_number>", "derived")
    return a


def _finish_vitals(v, when, inf_when, inf, report) -> pd.DataFrame:
    v = v.copy()
    starts = pd.DataFrame({"subject_id": inf["subject_id"], "infusion_number": inf["infusion_number"],
                           "start": inf_when})
    if "infusion_number" not in v and when.notna().any():
        # The infusion a reading belongs to: the last one starting within 12 h before it.
        rows = []
        for idx, (sid, t) in enumerate(zip(v["subject_id"], when, strict=True)):
            cand = starts[(starts["subject_id"] == sid) & (starts["start"] <= t + pd.Timedelta(hours=1))]
            cand = cand[t - cand["start"] <= pd.Timedelta(hours=12)]
            rows.append(cand.sort_values("start")["infusion_number"].iloc[-1] if len(cand) else np.nan)
            del idx
        v["infusion_number"] = rows
    if "minute" not in v and when.notna().any():
        merged = v[["subject_id", "infusion_number"]].merge(starts, how="left", on=["subject_id", "infusion_number"])
        v["minute"] = ((when.to_numpy() - merged["start"].to_numpy()) / pd.Timedelta(minutes=1))
    lost = v["infusion_number"].isna() if "infusion_number" in v else pd.Series(False, index=v.index)
    if lost.any():
        report.add("vitals", "infusion_number", sheet_rows(np.flatnonzero(lost.to_numpy())),
                   "reading not within 12 h after any infusion of the subject")
    return v.drop(columns=[c for c in ("day",) if c in v])


def _link_infusion(ae: pd.DataFrame, inf: pd.DataFrame, log) -> pd.DataFrame:
    if "infusion_number" in ae or "day" not in ae:
        return ae
    ae = ae.copy()
    numbers = []
    for sid, day in zip(ae["subject_id"], ae["day"], strict=True):
        prior = inf[(inf["subject_id"] == sid) & (inf["day"] <= day + 1e-9)]
        numbers.append(prior["infusion_number"].max() if len(prior) else np.nan)
    ae["infusion_number"] = numbers
    log.keep("adverse_events", "infusion_number", "last infusion on or before onset", "derived")
    return ae


def _fill_optional_columns(table: str, df: pd.DataFrame, log: ImportLog) -> None:
    """Add model columns that may be missing (nullable) but must exist, as empty columns."""
    from kanalysis.validation import TABLE_SCHEMAS

    for column, spec in TABLE_SCHEMAS[table]["columns"].items():
        if column not in df.columns and spec.nullable and column != "randomization_day":
            text = spec.dtype is None or str(spec.dtype).startswith(("str", "object"))
            df[column] = None if text else np.nan
            log.notes.append(f"{table}: {column} not in the export; left missing")


def _calendar_age(born: pd.Series, on: pd.Series) -> pd.Series:
    """Completed years of age (the number on the last birthday), NaN where a date is missing."""
    years = on.dt.year - born.dt.year
    before_birthday = (on.dt.month < born.dt.month) | (
        (on.dt.month == born.dt.month) & (on.dt.day < born.dt.day))
    return (years - before_birthday.astype(float)).astype(float)


def _all_midnight(when: pd.Series) -> bool:
    """True when a date-time column carries dates only (every value at 00:00)."""
    present = when.dropna()
    return bool(len(present)) and bool((present == present.dt.normalize()).all())


def _date_only(spec: dict) -> bool:
    columns = (spec or {}).get("columns", {}) or {}
    return "date" in columns and "time" not in columns and "datetime" not in columns


def _finish_subjects(subjects, when, anchor, tables, spec, report, log) -> pd.DataFrame:
    ids = pd.Index(sorted(set(tables["infusions"]["subject_id"]) | set(tables["assessments"]["subject_id"])))
    if subjects is None:
        subjects = pd.DataFrame({"subject_id": ids})
        for target, value in (spec.get("constants", {}) or {}).items():
            subjects[target] = value
            log.keep("subjects", target, f"constant {value!r}", "constant")
        log.notes.append("subjects: no subjects file; one row per subject id seen in infusions or assessments")
    s = subjects.copy()
    # Subject dates (dropout, randomisation, birth) are calendar dates: whole days from the date of
    # the first infusion.
    s_anchor = s["subject_id"].map(anchor).dt.normalize()
    for target, day_col in (("dropout_date", "dropout_day"), ("randomization_date", "randomization_day")):
        if target in s:
            s[day_col] = days_between(s[target], s_anchor) if day_col not in s else s[day_col]
            s = s.drop(columns=target)
            log.keep("subjects", day_col, f"{target} minus first infusion", "derived")
    if "birth_date" in s:
        age = _calendar_age(s["birth_date"], s_anchor)
        s["age"] = s["age"].where(s["age"].notna(), age) if "age" in s else age
        s = s.drop(columns="birth_date")
        log.keep("subjects", "age", "whole years from date of birth to first infusion", "derived")
    if "disposition" not in s:
        dropped = s["dropout_day"].notna() if "dropout_day" in s else pd.Series(False, index=s.index)
        s["disposition"] = np.where(dropped, "dropped_out", "completed")
        log.keep("subjects", "disposition", "'dropped_out' where a dropout date is given, else 'completed'", "derived")
    for column in ("dropout_day", "dropout_reason", "site", "episode_duration_months",
                   "anxious_distress", "bmi", "family_history_aud"):
        if column not in s:
            s[column] = None if column in ("dropout_reason", "site") else np.nan
            log.notes.append(f"subjects: {column} not in the export; left missing")
    orphan = ~s["subject_id"].isin(anchor.index)
    if orphan.any():
        report.add("subjects", "subject_id", sheet_rows(np.flatnonzero(orphan.to_numpy())),
                   "subject has no infusion: the first infusion is the time origin, so the subject "
                   "cannot be placed in time", severity=WARNING)
    return s


def _canonical_scale(name):
    from kanalysis.scales import get_scale

    if name is None:
        return None
    try:
        return get_scale(str(name)).name
    except ConfigurationError:
        return name  # reported by the data-model validation with its rows


def _pseudonymise(tables: dict[str, pd.DataFrame], anchor: pd.Series, log: ImportLog):
    ids = set()
    for t in tables.values():
        ids |= set(t["subject_id"].dropna())
    # By first infusion (subjects without one last), ties by id.
    frame = pd.DataFrame({"id": sorted(ids, key=str)})
    frame["first"] = frame["id"].map(anchor)
    frame["text"] = frame["id"].astype(str)
    order = frame.sort_values(["first", "text"], na_position="last", kind="stable")["id"].tolist()
    width = max(4, len(str(len(order))))
    key = {orig: f"P{i + 1:0{width}d}" for i, orig in enumerate(order)}
    out = {}
    for name, t in tables.items():  # the import's own frames: replaced in place
        t["subject_id"] = t["subject_id"].map(key)
        out[name] = t
    log.notes.append("subject ids replaced by pseudonyms P0001, P0002 ... (numbered by first infusion); "
                     "the key is not stored in the cohort folder")
    return out, pd.DataFrame({"original_id": list(key), "subject_id": list(key.values())})
