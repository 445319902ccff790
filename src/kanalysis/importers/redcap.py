"""Import a REDCap project: the records export, its data dictionary and a mapping file.

REDCap (Harris et al. 2009, J Biomed Inform 42:377) is where many academic ketamine clinics keep
their data. A project is described by its **data dictionary** (one row per field: variable name,
form (instrument), field type, choices, validation type, identifier flag, branching logic), and
its **records export** is a CSV with one row per record, per event (longitudinal projects:
``redcap_event_name``) and per instance of a repeating instrument (``redcap_repeat_instrument``,
``redcap_repeat_instance``). This module reads both as users export them:

- raw values or labels, with raw variable names or field labels as headers (the "CSV (labels)"
  export, whose headers are the field labels; aligned with the dictionary by position);
- checkbox fields as one column per choice, ``field___code`` (1/0, or Checked/Unchecked);
- radio, dropdown, yes/no and true/false fields decoded with the dictionary's choices;
- dates and date-times by their validation type (``date_ymd``, ``date_dmy``, ``date_mdy``,
  ``datetime_ymd``, ``datetime_seconds_dmy``, ...), turned into ISO text for the study-day
  conversion;
- blanks left by branching logic are missing values, never errors by themselves.

The mapping file is the clinic mapping format (docs/own_data.md) with ``instrument`` (the REDCap
form) instead of ``file``, and two REDCap keys:

``items``
    ``PHQ9 = ["phq9_1", ..., "phq9_9"]``: item fields summed into the scale total. A total with
    missing items follows the scale's own rule (``Scale.max_missing_items`` and
    ``Scale.missing_items_rule`` in :mod:`kanalysis.scales`): PHQ-9 totals with at most two of
    nine items missing are prorated (sum x 9 / items answered, rounded), as the PHQ instruction
    manual (Spitzer, Williams, Kroenke; Pfizer) allows; GAD-7's total is the sum of all seven
    items (Spitzer et al. 2006), so it is missing when an item is missing, as is any other
    scale's, unless the mapping sets ``max_missing_items``.
``events``
    Keep only rows of these events (raw names such as ``infusion_1_arm_1``, or their labels).

Fields flagged ``identifier = y`` in the dictionary are always dropped. They may feed only a date
conversion (``birth_date`` -> age, a date -> study day), after which they are dropped too; copying
one into the cohort is an error. Everything else goes through the clinic importer: study days
since the first infusion, pseudonymised record ids, identifier screening, validation and the
import report.

Example
-------
>>> from kanalysis.importers.redcap import import_redcap
>>> result = import_redcap("records.csv", dictionary="dictionary.csv",
...                        mapping="examples/mapping_redcap.toml")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.importers._common import WARNING, ImportLog, ImportResult, finish_import, safe_values
from kanalysis.scales import get_scale, list_scales
from kanalysis.validation import ValidationReport

__all__ = ["PRORATE_MAX_MISSING", "RedcapField", "import_redcap", "read_dictionary"]

# Most items that may be missing for a total to be prorated, by built-in scale (from the scale
# registry, where each scale's rule and its reference live); other scales: none.
PRORATE_MAX_MISSING: dict[str, int] = {
    n: get_scale(n).max_missing_items for n in list_scales() if get_scale(n).max_missing_items}

SYSTEM_FIELDS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
                 "redcap_data_access_group", "redcap_survey_identifier")
_SYSTEM_LABELS = {"Event Name": "redcap_event_name", "Repeat Instrument": "redcap_repeat_instrument",
                  "Repeat Instance": "redcap_repeat_instance",
                  "Data Access Group": "redcap_data_access_group",
                  "Survey Identifier": "redcap_survey_identifier"}
# Data dictionary headers: the CSV download and the API names.
_DICT_COLUMNS = {
    "name": ("Variable / Field Name", "field_name"),
    "form": ("Form Name", "form_name"),
    "type": ("Field Type", "field_type"),
    "label": ("Field Label", "field_label"),
    "choices": ("Choices, Calculations, OR Slider Labels", "select_choices_or_calculations"),
    "validation": ("Text Validation Type OR Show Slider Number",
                   "text_validation_type_or_show_slider_number"),
    "identifier": ("Identifier?", "identifier"),
    "branching": ("Branching Logic (Show field only if...)", "branching_logic"),
}
_FIELD_TYPES = {"text", "notes", "radio", "dropdown", "checkbox", "yesno", "truefalse", "calc",
                "descriptive", "file", "slider", "sql", "signature"}
_FIXED_CHOICES = {"yesno": {"1": "Yes", "0": "No"}, "truefalse": {"1": "True", "0": "False"}}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{1,2}:\d{2}(:\d{2})?)?$")
_DMY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[ T](\d{1,2}:\d{2}(?::\d{2})?))?$")
_DATE_KINDS = {"datetime", "date", "time"}


@dataclass(frozen=True)
class RedcapField:
    """One field of the data dictionary."""

    name: str
    form: str
    type: str
    label: str
    choices: dict[str, str] = field(default_factory=dict)
    validation: str = ""
    identifier: bool = False
    branching: str = ""

    @property
    def columns(self) -> list[str]:
        """The export columns of the field (one per choice for a checkbox)."""
        if self.type == "checkbox":
            return [f"{self.name}___{_checkbox_code(c)}" for c in self.choices]
        return [] if self.type == "descriptive" else [self.name]


def _checkbox_code(code: str) -> str:
    return code.lower().replace("-", "_").replace(".", "_")


def _parse_choices(text: str) -> dict[str, str] | None:
    """``"1, Female | 2, Male"`` -> ``{"1": "Female", "2": "Male"}``; None when malformed."""
    out: dict[str, str] = {}
    for part in str(text).split("|"):
        part = part.strip()
        if not part:
            continue
        code, sep, label = part.partition(",")
        if not sep or not code.strip():
            return None
        out[code.strip()] = label.strip()
    return out or None


def _cell(row: pd.Series, key: str) -> str:
    value = row.get(key)
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def read_dictionary(path: str | os.PathLike) -> dict[str, RedcapField]:
    """Read a REDCap data dictionary (CSV download or API export), fields in project order.

    Raises
    ------
    ConfigurationError
        Unreadable file, missing dictionary columns, duplicated or unnamed fields, unknown field
        types, or radio/dropdown/checkbox fields with malformed choices (rows named).
    """
    from kanalysis._paths import InputFileError, check_input_file

    try:
        path = check_input_file(path, table="REDCap data dictionary", what="file")
    except InputFileError as err:
        raise ConfigurationError(str(err)) from None
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigurationError(f"{path.name}: not UTF-8 text ({err.reason} at byte {err.start}); "
                                 "download the dictionary again from REDCap") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise ConfigurationError(f"{path.name}: cannot be read as a REDCap data dictionary "
                                 f"({str(err).strip() or 'empty file'})") from None
    found = {}
    for key, names in _DICT_COLUMNS.items():
        hit = next((n for n in names if n in raw.columns), None)
        if hit is not None:
            found[key] = hit
    lacking = [names[0] for key, names in _DICT_COLUMNS.items()
               if key in ("name", "form", "type") and key not in found]
    if lacking:
        raise ConfigurationError(
            f"{path.name} is not a REDCap data dictionary: it lacks the column(s) "
            f"{', '.join(map(repr, lacking))} (columns present: {', '.join(raw.columns[:12])})")
    problems = []
    fields: dict[str, RedcapField] = {}
    for i, row in raw.iterrows():
        name = _cell(row, found["name"]).strip()
        ftype = _cell(row, found["type"]).strip().lower()
        where = f"row {i} (line {i + 2})"
        if not name:
            problems.append(f"{where}: field without a variable name")
            continue
        if name in fields:
            problems.append(f"{where}: field {name!r} appears twice")
            continue
        if ftype not in _FIELD_TYPES:
            problems.append(f"{where}: field {name!r} has unknown type {ftype!r}")
            continue
        choices: dict[str, str] = {}
        if ftype in ("radio", "dropdown", "checkbox"):
            parsed = _parse_choices(_cell(row, found.get("choices", "")))
            if parsed is None:
                problems.append(f"{where}: {ftype} field {name!r} needs choices such as "
                                "'1, Yes | 0, No'")
                continue
            choices = parsed
        elif ftype in _FIXED_CHOICES:
            choices = dict(_FIXED_CHOICES[ftype])
        fields[name] = RedcapField(
            name=name, form=_cell(row, found["form"]).strip(), type=ftype,
            label=_cell(row, found.get("label", "")).strip(), choices=choices,
            validation=_cell(row, found.get("validation", "")).strip().lower(),
            identifier=_cell(row, found.get("identifier", "")).strip().lower() in ("y", "yes", "1"),
            branching=_cell(row, found.get("branching", "")).strip(),
        )
    if problems:
        raise ConfigurationError(f"{path.name} (REDCap data dictionary) has {len(problems)} "
                                 "problem(s):\n- " + "\n- ".join(problems))
    if not fields:
        raise ConfigurationError(f"{path.name}: the data dictionary defines no field")
    return fields


# --- the records export ------------------------------------------------------------------------
def _export_columns(fields: dict[str, RedcapField]) -> list[tuple[str, str]]:
    """(variable, label header) of every export column, in REDCap's order."""
    out: list[tuple[str, str]] = []
    names = list(fields.values())
    for i, f in enumerate(names):
        if f.type == "checkbox":
            out += [(f"{f.name}___{_checkbox_code(c)}", f"{f.label} (choice={lab})")
                    for c, lab in f.choices.items()]
        elif f.type != "descriptive":
            out.append((f.name, f.label))
        if i + 1 == len(names) or names[i + 1].form != f.form:
            out.append((f"{f.form}_complete", "Complete?"))
    return out


def _read_records(path: Path, fields: dict[str, RedcapField], report: ValidationReport,
                  label: str) -> tuple[pd.DataFrame | None, str]:
    """Read the export as text; rename label headers to variable names. Returns (frame, mode)."""
    from kanalysis._paths import InputFileError, check_input_file

    try:
        check_input_file(path, table="REDCap records", what="file")
    except InputFileError as err:
        report.add(label, None, None, str(err).replace(str(path), path.name))
        return None, ""
    try:
        header = _scan_header(path)
    except UnicodeDecodeError as err:
        report.add(label, None, None, f"{path.name} is not UTF-8 ({err.reason} at byte "
                   f"{err.start}); REDCap exports UTF-8: export again")
        return None, ""
    except ValueError as err:
        report.add(label, None, None, f"{path.name} {err}")
        return None, ""
    if not header or not any(h.strip() for h in header):
        report.add(label, None, None, f"{path.name} is empty (no header line)")
        return None, ""
    record_id = next(iter(fields))
    if record_id in header:
        mode, names = "raw", [h.strip() for h in header]
    else:
        names = _align_labels(header, fields)
        if names is None:
            report.add(label, None, None,
                       f"the header of {path.name} matches neither the variable names nor the "
                       f"field labels of the dictionary (its first field is {record_id!r}); is "
                       "this the export of the same project?")
            return None, ""
        mode = "labels"
    dup = sorted({n for n in names if names.count(n) > 1 and not n.endswith("_complete")})
    if dup:
        report.add(label, ", ".join(dup), None, "duplicated column in the export header")
        return None, ""
    # Registry exports repeat a few values millions of times (event names, choice codes, item
    # scores): those columns are read as categoricals (one small integer per cell); dates and
    # free text, mostly distinct, stay text. A repeated `_complete` column is read once.
    seen: set[str] = set()
    read_names = []
    for i, n in enumerate(names):
        read_names.append(n if n not in seen else f"\x00duplicate {i}")
        seen.add(n)
    text = _text_columns(fields)
    dtypes = {n: (str if n in text else "category") for n in read_names}
    try:
        frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""], header=0,
                            names=read_names, on_bad_lines="error", engine="c",
                            encoding="utf-8-sig")
    except pd.errors.ParserError as err:
        report.add(label, None, None, f"malformed CSV in {path.name}: {str(err).strip()}")
        return None, ""
    except UnicodeDecodeError as err:
        report.add(label, None, None, f"{path.name} is not UTF-8 ({err.reason} at byte "
                   f"{err.start}); REDCap exports UTF-8: export again")
        return None, ""
    if len(read_names) != len(seen):
        frame = frame.drop(columns=[n for n in read_names if n.startswith("\x00")])
    if mode == "labels" and "redcap_repeat_instrument" in frame:
        # The labels export names repeating instruments by their display name ("Adverse Events").
        forms = {re.sub(r"[^a-z0-9]", "", f.form.lower()): f.form for f in fields.values()}
        names_seen = frame["redcap_repeat_instrument"].dropna().unique()
        rename = {v: forms.get(re.sub(r"[^a-z0-9]", "", str(v).lower()), v) for v in names_seen}
        frame["redcap_repeat_instrument"] = _recode(frame["redcap_repeat_instrument"], rename)
    return frame, mode


def _text_columns(fields: dict[str, RedcapField]) -> set[str]:
    """Export columns read as plain text: dates (by validation type) and free text."""
    return {f.name for f in fields.values()
            if f.type == "notes" or (f.type == "text" and f.validation.startswith(("date", "time")))}


def _recode(values: pd.Series, table: dict) -> pd.Series:
    """``values`` mapped through ``table`` (a value absent from it, or mapped to None, is missing).

    A categorical column is recoded through its categories (once per distinct value) and stays
    categorical; any other column is mapped value by value.
    """
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return values.map(table)
    new = [table.get(c) for c in values.cat.categories]
    categories = pd.Index(list(dict.fromkeys(v for v in new if v is not None)), dtype=object)
    position = {v: k for k, v in enumerate(categories)}
    lookup = np.array([position.get(v, -1) if v is not None else -1 for v in new] + [-1],
                      dtype=np.int64)
    recoded = pd.Categorical.from_codes(lookup[values.cat.codes.to_numpy()],
                                        categories=categories)
    return pd.Series(recoded, index=values.index, name=values.name)


def _as_object(values: pd.Series) -> pd.Series:
    """A categorical column as plain text values (missing as NaN), as the clinic importer reads."""
    return values.astype(object) if isinstance(values.dtype, pd.CategoricalDtype) else values


def _scan_header(path: Path) -> list[str]:
    """The header fields; refuse NUL bytes anywhere (read in blocks, not all at once)."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            if b"\x00" in block:
                raise ValueError("contains NUL bytes: not a REDCap CSV export")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
        # Decode the whole file lazily: a bad byte later is found by the CSV reader.
    return next(csv.reader([first]), [])


def _align_labels(header: list[str], fields: dict[str, RedcapField]) -> list[str] | None:
    """Variable names for a labels header, matched in order (labels need not be unique)."""
    expected = _export_columns(fields)
    record_id = next(iter(fields))
    first = fields[record_id]
    if not header or header[0].strip() not in (first.label, record_id):
        return None
    names, pointer = [record_id], 1
    for h in header[1:]:
        h = h.strip()
        if h in _SYSTEM_LABELS:
            names.append(_SYSTEM_LABELS[h])
            continue
        hit = None
        for k in range(pointer, len(expected)):
            if expected[k][1] == h:
                hit = k
                break
        if hit is None:
            return None
        names.append(expected[hit][0])
        pointer = hit + 1
    return names


def _decode(frame: pd.DataFrame, fields: dict[str, RedcapField], file_label: str,
            report: ValidationReport) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Decode ``frame`` in place to raw codes (choices) and ISO text (dates).

    Returns the frame and, for choice fields, their values as labels (a dict of Series).
    """
    labels: dict[str, pd.Series] = {}
    by_column = {c: f for f in fields.values() for c in f.columns}
    for column in list(frame.columns):
        f = by_column.get(column)
        if f is None:
            continue
        values = frame[column]
        present = values.notna()
        if not present.any():
            continue
        uniques = pd.unique(values[present])
        lab = None
        if f.type == "checkbox":
            table = {"1": "1", "0": "0", "checked": "1", "unchecked": "0"}
            decoded = {u: table.get(str(u).strip().lower()) for u in uniques}
        elif f.choices:
            by_label = {v: k for k, v in f.choices.items()}
            by_label_ci = {v.lower(): k for k, v in f.choices.items()}
            decoded = {}
            for u in uniques:
                s = str(u).strip()
                decoded[u] = (s if s in f.choices else by_label.get(s, by_label_ci.get(s.lower())))
            lab = {u: (f.choices[c] if c is not None else None) for u, c in decoded.items()}
        elif f.validation.startswith(("date", "datetime")):
            iso = values.str.match(_ISO_DATE.pattern) & present
            if bool(iso.all() or (iso | ~present).all()):
                frame[column] = values.str.replace("T", " ", regex=False)
                continue
            decoded = {u: _iso(str(u).strip(), f.validation) for u in uniques}
        else:
            continue
        bad = [u for u, c in decoded.items() if c is None]
        if bad:
            rows = np.flatnonzero(values.isin(bad).to_numpy())
            what = ("a date in the format of its validation type " + f.validation
                    if f.validation.startswith(("date", "datetime")) else
                    "one of its choices (" + ", ".join(
                        f"{k} = {v}" for k, v in list(f.choices.items())[:8]) + ")"
                    if f.type != "checkbox" else "1/0 or Checked/Unchecked")
            report.add(file_label, column, rows, f"value is not {what}",
                       safe_values(pd.Series(bad, dtype=object)))
        if lab is not None:
            labels[column] = _recode(values, lab)
        frame[column] = _recode(values, decoded)
    return frame, labels


def _iso(value: str, validation: str) -> str | None:
    """A REDCap date or date-time as ISO text, by its validation type (None if it does not fit)."""
    if _ISO_DATE.match(value):
        return value.replace("T", " ")
    m = _DMY.match(value)
    if not m:
        return None
    a, b, year, time = m.group(1), m.group(2), m.group(3), m.group(4)
    if validation.endswith("_mdy"):
        month, day = int(a), int(b)
    elif validation.endswith("_dmy"):
        day, month = int(a), int(b)
    else:
        return None
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{year}-{month:02d}-{day:02d}" + (f" {time}" if time else "")


# --- items -> totals ----------------------------------------------------------------------------
def _scale_total(codes: pd.DataFrame, scale_name: str, items: list[str], max_missing: int,
                 label: str, report: ValidationReport, log: ImportLog) -> pd.Series:
    """Sum of the item fields with the scale's missing-item rule; item ranges checked."""
    from kanalysis.scales import get_scale

    scale = get_scale(scale_name)
    values = pd.DataFrame({i: _to_numeric(codes[i]) for i in items}, index=codes.index)
    for i in items:
        text = codes[i].notna() & values[i].isna()
        if text.any():
            report.add(label, i, np.flatnonzero(text.to_numpy()), "item score must be a number",
                       safe_values(codes.loc[text, i]))
    item_max = scale.max / scale.n_items if scale.n_items == len(items) else None
    if item_max is not None and float(item_max).is_integer():
        out = (values < scale.min) | (values > item_max)
        for i in items:
            if out[i].any():
                report.add(label, i, np.flatnonzero(out[i].to_numpy()),
                           f"{scale.name} item scores lie between 0 and {item_max:g}",
                           values.loc[out[i], i].unique().tolist())
                values.loc[out[i], i] = np.nan
    answered = values.notna().sum(axis=1)
    missing = len(items) - answered
    total = values.sum(axis=1, min_count=1)
    prorated = (missing > 0) & (missing <= max_missing) & (answered > 0)
    total = total.where(missing == 0)
    total[prorated] = np.floor(values[prorated].sum(axis=1) * len(items) / answered[prorated] + 0.5)
    too_many = (answered > 0) & (missing > max_missing)
    if prorated.any():
        report.add(label, ", ".join(items[:3]) + " ...", np.flatnonzero(prorated.to_numpy()),
                   f"{int(prorated.sum())} {scale.name} total(s) prorated (1 to {max_missing} "
                   f"item(s) missing: sum x {len(items)} / items answered, rounded)",
                   severity=WARNING)
    if too_many.any():
        report.add(label, ", ".join(items[:3]) + " ...", np.flatnonzero(too_many.to_numpy()),
                   f"{int(too_many.sum())} {scale.name} total(s) left missing: more than "
                   f"{max_missing} of {len(items)} items missing", severity=WARNING)
    log.keep("assessments", "score", f"{label}: {' + '.join(items)}",
             f"{scale.name} total = sum of {len(items)} items"
             + (f"; prorated with at most {max_missing} missing" if max_missing else
                "; missing if any item is missing"))
    return total


def _to_numeric(values: pd.Series) -> pd.Series:
    """Item codes as numbers (NaN where missing or not a number), as ``pd.to_numeric`` gives them;
    a categorical column is converted once per category."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return pd.to_numeric(values, errors="coerce")
    numbers = pd.to_numeric(pd.Series(values.cat.categories, dtype=object), errors="coerce")
    codes = values.cat.codes.to_numpy()
    if len(codes) and codes.min() >= 0:
        out = numbers.to_numpy()[codes]
    else:
        out = np.append(numbers.to_numpy(dtype=float), np.nan)[codes]
    return pd.Series(out, index=values.index, name=values.name)


def _stack_assessments(sections: list[dict[str, Any]], record_id: str,
                       event_order: dict[str, int]) -> dict[str, Any]:
    """Several instrument blocks (PHQ-9, GAD-7, ...) -> one long assessments section.

    Every row of an instrument is a rating, even when its total is missing (too many items
    skipped). Where ``visit`` is the event, ``visit_number`` is the event's place in the project
    (the order in which REDCap exports events), so that a missed visit does not shift the others.
    """
    parts = []
    keep_visit = any("visit" in s["columns"] for s in sections)
    for sec in sections:
        frame, cols = sec["_frame"], sec["columns"]
        when = frame[cols["datetime"]] if "datetime" in cols else frame[cols["date"]]
        if "time" in cols and "datetime" not in cols:
            clock = frame[cols["time"]]
            when = when.where(clock.isna(), when.astype(str) + " " + clock.astype(str))
        long_pairs = ([(sc, frame[col]) for sc, col in sec.get("scores", {}).items()]
                      if sec.get("scores") else [(frame[cols["scale"]], frame[cols["score"]])])
        for scale, score in long_pairs:
            part = pd.DataFrame({"record_id": frame[cols["subject_id"]].to_numpy(),
                                 "when": when.to_numpy(), "scale": scale, "score": score.to_numpy()})
            if keep_visit:
                part["visit"] = frame[cols["visit"]].to_numpy() if "visit" in cols else None
            parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    columns = {"subject_id": "record_id", "datetime": "when", "scale": "scale", "score": "score"}
    if keep_visit:
        columns["visit"] = "visit"
        if long["visit"].notna().all() and long["visit"].isin(list(event_order)).all():
            long["visit_number"] = long["visit"].map(event_order).astype(float).map(
                lambda v: f"{v:g}")
            columns["visit_number"] = "visit_number"
    labels = "+".join(s["_label"] for s in sections)
    return {"file": f"{labels}#assessments", "_frame": long, "_label": labels,
            "columns": columns}


# --- the import ---------------------------------------------------------------------------------
def import_redcap(
    records: str | os.PathLike,
    *,
    dictionary: str | os.PathLike,
    mapping: str | os.PathLike | dict[str, Any],
    pseudonymise: bool | None = None,
) -> ImportResult:
    """Import a REDCap project (records export + data dictionary) through a mapping file.

    Parameters
    ----------
    records : path
        The records export (CSV; raw or labels, variable names or labels as headers).
    dictionary : path
        The project's data dictionary (CSV).
    mapping : path or dict
        Which instrument feeds which table and how (clinic mapping format with ``instrument``,
        ``items``, ``events``; see the module notes and ``examples/mapping_redcap.toml``).
    pseudonymise : bool, optional
        Replace record ids by ``P0001`` ... (default: the mapping's ``pseudonymise_ids``, else
        True).

    Returns
    -------
    ImportResult
    """
    from kanalysis.importers.clinic import TARGETS, check_mapping, import_clinic, read_mapping_file

    records, dictionary = Path(records), Path(dictionary)
    if isinstance(mapping, dict):
        spec_all, map_name, base = mapping, "mapping", Path(".")
    else:
        spec_all = read_mapping_file(mapping)
        map_name, base = Path(mapping).name, Path(mapping).parent
    blocks = spec_all.get("assessments")
    if isinstance(blocks, list):  # [[assessments]]: one block per instrument (PHQ-9, GAD-7, ...)
        if not blocks or not all(isinstance(b, dict) for b in blocks):
            raise ConfigurationError(f"Mapping file {map_name}: [[assessments]] blocks must be "
                                     "tables of settings")
        for b in blocks:
            check_mapping({**spec_all, "assessments": b}, map_name, redcap=True)
    else:
        check_mapping(spec_all, map_name, redcap=True)
        blocks = None
    fields = read_dictionary(dictionary)
    forms = list(dict.fromkeys(f.form for f in fields.values()))
    report = ValidationReport()
    log = ImportLog(source="redcap")
    file_label = records.name
    frame, mode = _read_records(records, fields, report, file_label)
    log.add_file(dictionary, "REDCap data dictionary", len(fields), None)
    if frame is None:
        return finish_import(None, {}, report, log)
    log.add_file(records, f"REDCap records ({mode} export)", len(frame), frame.shape[1])
    record_id = next(iter(fields))
    unknown = [c for c in frame.columns if c not in {col for f in fields.values() for col in
                                                      f.columns} | set(SYSTEM_FIELDS)
               | {f"{form}_complete" for form in forms} | {record_id}]
    if unknown:
        report.add(file_label, ", ".join(unknown[:10]), None,
                   "column(s) of the export not in the data dictionary: export the dictionary "
                   "and the records of the same project version")
    codes, labels = _decode(frame, fields, file_label, report)
    del frame
    identifiers = {c for f in fields.values() if f.identifier for c in f.columns}
    for c in sorted(identifiers & set(codes.columns)):
        log.drop(file_label, c, "identifier = y in the data dictionary: always dropped",
                 "identifier")

    mapping_out: dict[str, Any] = {k: v for k, v in spec_all.items() if k in ("cohort", "defaults")}
    defaults = dict(mapping_out.get("defaults") or {})
    for key in ("date_format", "dayfirst", "encoding", "delimiter", "format", "sheet"):
        defaults.pop(key, None)  # REDCap dates are decoded here, by validation type
    mapping_out["defaults"] = defaults
    built: Any = None
    for table in TARGETS:
        spec = spec_all.get(table)
        if table == "assessments" and blocks is not None:
            built = [_section(table, b, fields, forms, codes, labels, identifiers, record_id,
                              file_label, report, log, stacked=True) for b in blocks]
            if all(b is not None for b in built):
                events = (pd.unique(codes["redcap_event_name"].dropna())
                          if "redcap_event_name" in codes else [])
                mapping_out[table] = _stack_assessments(
                    built, record_id, {e: i for i, e in enumerate(events)})
            continue
        if not isinstance(spec, dict) or "instrument" not in spec:
            if isinstance(spec, dict) and table == "subjects":
                mapping_out[table] = {k: v for k, v in spec.items() if k == "constants"}
            continue
        built = _section(table, spec, fields, forms, codes, labels, identifiers, record_id,
                         file_label, report, log)
        if built is not None:
            mapping_out[table] = built
    del codes, labels, built  # the sections hold what is needed: free the decoded export
    if not report.ok:
        return finish_import(None, {}, report, log)
    mapping_out["_base"] = base
    mapping_out["_name"] = map_name
    result = import_clinic(mapping_out, pseudonymise=pseudonymise)
    # One report: the REDCap problems first, then the clinic importer's.
    for p in result.report.problems.itertuples(index=False):
        report.add(p.table, p.column, p.rows, p.rule, p.values, p.severity)
    log.files += [f for f in result.log.files if f not in log.files]
    log.kept += result.log.kept
    log.dropped += [d for d in result.log.dropped if d not in log.dropped]
    log.notes += result.log.notes
    log.row_counts += result.log.row_counts
    if result.cohort is not None:
        result.cohort.metadata["source"] = "redcap"
    return ImportResult(result.cohort, report, log, result.extra_tables, result.id_key)


def _section(table, spec, fields, forms, codes, labels, identifiers, record_id, file_label,
             report, log, stacked: bool = False) -> dict[str, Any] | None:
    """One mapping section -> a clinic-format section holding the instrument's rows as a frame.

    ``subjects`` may name several (non-repeating) instruments: their fields are joined per record.
    """
    from kanalysis.importers.clinic import TARGETS

    instrument = spec["instrument"]
    instruments = instrument if isinstance(instrument, list) else [instrument]
    where = f"[{table}] instrument {instrument!r}"
    if len(instruments) > 1 and table != "subjects":
        report.add(file_label, None, None, f"{where}: only [subjects] may join several "
                   "instruments; use one [[assessments]] block per instrument")
        return None
    wrong = [i for i in instruments if i not in forms]
    if wrong or not instruments:
        report.add(file_label, None, None, f"{where} is not a form of the data dictionary; forms: "
                   f"{', '.join(forms)}")
        return None
    instrument = instruments[0]
    label = f"{file_label}[{'+'.join(instruments)}]"
    form_fields = [f for f in fields.values() if f.form in instruments]
    form_columns = [c for f in form_fields for c in f.columns if c in codes.columns]
    columns = dict(spec.get("columns") or {})
    columns.setdefault("subject_id", record_id)
    items: dict[str, list[str]] = {}
    for scale_name, names in (spec.get("items") or {}).items():
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            report.add(label, None, None, f"{where}: items.{scale_name} must be a list of item "
                       "fields")
            continue
        items[scale_name] = names
    referenced = set(columns.values()) | {n for v in items.values() for n in v} | set(
        spec.get("where") or {})
    all_columns = set(codes.columns)
    absent = sorted(c for c in referenced if c not in all_columns)
    if absent:
        report.add(label, ", ".join(absent), None,
                   f"{where}: field(s) not in the records export; fields of this form: "
                   f"{', '.join(form_columns[:20])}")
        return None
    kinds = TARGETS[table]
    for target, source in columns.items():
        if source in identifiers and target != "subject_id" and kinds.get(target) not in _DATE_KINDS:
            report.add(label, source, None,
                       f"{source!r} is flagged identifier = y in the data dictionary; it may "
                       "feed only a date conversion, never be copied into the cohort")
    # Rows of this instrument.
    rep = codes["redcap_repeat_instrument"] if "redcap_repeat_instrument" in codes else None
    repeating = rep is not None and bool(rep.isin(instruments).any())
    if repeating and len(instruments) > 1:
        report.add(label, None, None, f"{where}: a repeating instrument cannot be joined with "
                   "others")
        return None
    if repeating:
        rows = rep == instrument
    else:
        rows = pd.Series(True, index=codes.index) if rep is None else rep.isna()
        own = [c for c in form_columns if c not in (record_id,)]
        own += [f"{i}_complete" for i in instruments if f"{i}_complete" in codes.columns]
        if own:
            rows &= codes[own].notna().any(axis=1)
    if stacked:
        ignore = set(spec.get("ignore") or [])
        unmapped = [c for c in form_columns if c not in referenced and c not in ignore
                    and c not in identifiers and c != record_id]
        for c in unmapped:
            report.add(label, c, None, "unmapped field: map it, use it in items, or list it "
                       "under `ignore` (nothing is dropped silently)")
        for c in sorted(ignore - set(form_columns)):
            report.add(label, c, None, "`ignore` names a field not in this instrument",
                       severity=WARNING)
    events = spec.get("events")
    if events is not None:
        if not isinstance(events, list) or "redcap_event_name" not in codes:
            report.add(label, "redcap_event_name", None, f"{where}: `events` needs a list and a "
                       "longitudinal export (redcap_event_name)")
            return None
        rows &= codes["redcap_event_name"].isin([str(e) for e in events])
    keep_cols = [record_id] + [c for c in SYSTEM_FIELDS if c in codes.columns and c in referenced]
    keep_cols += [c for c in form_columns if c not in keep_cols]
    keep_cols += [c for c in referenced if c not in keep_cols]
    sub_codes = codes.loc[rows, keep_cols]
    # Choice fields: text targets get labels, numbers and yes/no get codes.
    out = pd.DataFrame(index=sub_codes.index)
    by_column = {c: f for f in fields.values() for c in f.columns}
    targets_of = {}
    for target, source in columns.items():
        targets_of.setdefault(source, []).append(target)
    for c in keep_cols:
        f = by_column.get(c)
        text_target = any(kinds.get(t) == "text" for t in targets_of.get(c, []))
        use_labels = f is not None and f.choices and f.type != "checkbox" and text_target
        out[c] = _as_object(labels[c][rows] if use_labels and c in labels else sub_codes[c])
    # Scale totals from items, then the items leave the frame (used, not unmapped).
    scores = dict(spec.get("scores") or {})
    max_missing = dict(spec.get("max_missing_items") or {})
    for scale_name, names in items.items():
        from kanalysis.scales import canonical_scale_name

        canonical = canonical_scale_name(scale_name)
        allowed = max_missing.get(scale_name, max_missing.get(canonical))
        if allowed is None:
            try:
                allowed = get_scale(canonical).max_missing_items
            except ConfigurationError:
                allowed = 0  # the unknown scale is reported by _scale_total
        if isinstance(allowed, bool) or not isinstance(allowed, int) or allowed < 0:
            report.add(label, None, None, f"max_missing_items.{scale_name} must be a whole "
                       "number >= 0")
            continue
        try:
            total = _scale_total(sub_codes, canonical, names, allowed, label, report, log)
        except ConfigurationError as err:
            report.add(label, None, None, f"items.{scale_name}: {err}")
            continue
        column = f"{canonical} total (from items)"
        out[column] = total
        scores[canonical] = column
    if len(instruments) > 1:  # one row per record: first non-blank value of each field
        out = out.groupby(record_id, sort=False, as_index=False).first()
    item_fields = {n for v in items.values() for n in v}
    drop = [c for c in out.columns if c in identifiers and c not in columns.values()]
    drop += [c for c in out.columns if c in item_fields and c not in columns.values()]
    out = out.drop(columns=drop)
    auto_ignore = [c for c in out.columns if c.endswith("_complete") or c in SYSTEM_FIELDS]
    auto_ignore = [c for c in auto_ignore if c not in columns.values()]
    out = out.drop(columns=auto_ignore)
    if auto_ignore:
        log.notes.append(f"{label}: REDCap system columns not mapped ({', '.join(auto_ignore)}) "
                         "left out")
    # Recoding keys may be REDCap codes or labels.
    values = {}
    for target, recode in (spec.get("values") or {}).items():
        source = columns.get(target)
        f = by_column.get(source)
        if f is not None and f.choices and f.type != "checkbox":
            recode = {f.choices.get(str(k), str(k)): v for k, v in recode.items()}
        values[target] = recode
    section = {k: v for k, v in spec.items()
               if k in ("constants", "ignore", "where")}
    section.update({"file": f"{file_label}#{instrument}", "_frame": out.reset_index(drop=True),
                    "_label": label, "columns": columns, "values": values})
    if scores:
        section["scores"] = scores
    n_rep = "repeating instrument" if repeating else "instrument"
    log.notes.append(f"{label}: {len(out)} row(s) of the {n_rep} feed {table}")
    return section
