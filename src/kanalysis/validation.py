"""Validation of cohort tables: every problem at once, as a readable error and as a DataFrame.

Per-table rules (columns present, types, ranges, allowed values, unique keys, missing keys) are
pandera schemas evaluated lazily, so that all failures are collected; cross-table rules (every row's
subject exists, visit numbers follow days, no infusion after dropout) are checked here. Nothing is
modified: the checks work on copies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from kanalysis.errors import DataValidationError
from kanalysis.scales import get_scale, list_scales

__all__ = ["ValidationReport", "validate_cohort", "TABLE_SCHEMAS"]

_PROBLEM_COLUMNS = ["table", "column", "rows", "rule", "values", "severity"]
_MAX_LISTED = 10  # rows and values listed per problem; the count says how many in all


def _num(column: str, *, nullable: bool = False, checks=None, required: bool = True) -> pa.Column:
    return pa.Column(float, checks=checks or [], nullable=nullable, required=required,
                     name=column, coerce=False)


def _text(*, nullable: bool = False, isin: Iterable[str] | None = None,
          required: bool = True) -> pa.Column:
    # No pandera dtype: _check_table turns the column into plain text itself (a per-value
    # type check by pandera costs seconds on registry-sized tables).
    checks = [pa.Check.isin(list(isin))] if isin is not None else []
    return pa.Column(None, checks=checks, nullable=nullable, required=required, coerce=False)


SCALE_NAMES = tuple(list_scales())

# Only the structural columns are required (schema 1.1): without them a row cannot be placed (who,
# when, what). Every covariate and descriptive column may be absent or partly missing; validation
# counts those as warnings, and the analyses that need one refuse or use complete cases
# (kanalysis.requirements).
_opt = {"required": False, "nullable": True}
_DAY_LIMIT = 36_525.0  # |study day| beyond 100 years is a unit or date error, not a study day

TABLE_SCHEMAS: dict[str, dict] = {
    "subjects": {
        "columns": {
            "subject_id": _text(),
            "arm": _text(),
            "site": _text(**_opt),
            "age": _num("age", checks=[pa.Check.in_range(18, 100)], **_opt),
            "sex": _text(isin=["F", "M", "other"], **_opt),
            "n_failed_trials": _num("n_failed_trials", checks=[pa.Check.ge(0)], **_opt),
            "episode_duration_months": _num("episode_duration_months",
                                            checks=[pa.Check.ge(0)], **_opt),
            "anxious_distress": _num("anxious_distress", checks=[pa.Check.isin([0, 1])], **_opt),
            "bmi": _num("bmi", checks=[pa.Check.in_range(12, 80)], **_opt),
            "family_history_aud": _num("family_history_aud", checks=[pa.Check.isin([0, 1])],
                                       **_opt),
            "disposition": _text(isin=["completed", "dropped_out"], **_opt),
            "dropout_day": _num("dropout_day", checks=[pa.Check.ge(0)], **_opt),
            "dropout_reason": _text(**_opt),
            "randomization_day": _num("randomization_day", **_opt),
        },
        "key": ["subject_id"],
    },
    "assessments": {
        "columns": {
            "subject_id": _text(),
            "scale": _text(),
            "day": _num("day"),
            "visit": _text(**_opt),
            "visit_number": _num("visit_number", checks=[pa.Check.ge(0)], **_opt),
            "score": _num("score", nullable=True),
        },
        "key": ["subject_id", "scale", "visit_number"],
    },
    "infusions": {
        "columns": {
            "subject_id": _text(),
            "infusion_number": _num("infusion_number", checks=[pa.Check.ge(1)]),
            "day": _num("day"),
            "drug": _text(**_opt),
            "dose": _num("dose", checks=[pa.Check.gt(0), pa.Check.le(10_000)], **_opt),
            "dose_unit": _text(isin=["mg/kg", "mg"], **_opt),
            "duration_min": _num("duration_min", checks=[pa.Check.in_range(0, 1440)], **_opt),
            "phase": _text(isin=["induction", "maintenance"], **_opt),
        },
        "key": ["subject_id", "infusion_number"],
    },
    "vitals": {
        "columns": {
            "subject_id": _text(),
            "infusion_number": _num("infusion_number", checks=[pa.Check.ge(1)]),
            "minute": _num("minute", checks=[pa.Check.in_range(-1440, 1440)]),
            "sbp": _num("sbp", nullable=True, checks=[pa.Check.in_range(50, 260)], required=False),
            "dbp": _num("dbp", nullable=True, checks=[pa.Check.in_range(20, 160)], required=False),
            "heart_rate": _num("heart_rate", nullable=True, checks=[pa.Check.in_range(25, 220)],
                               required=False),
            "cadss": _num("cadss", nullable=True, checks=[pa.Check.in_range(0, 92)],
                          required=False),
        },
        "key": ["subject_id", "infusion_number", "minute"],
    },
    "adverse_events": {
        "columns": {
            "subject_id": _text(),
            "day": _num("day"),
            "infusion_number": _num("infusion_number", nullable=True, required=False),
            "term": _text(),
            "severity": _text(isin=["mild", "moderate", "severe"], **_opt),
            "serious": pa.Column(bool, nullable=True, coerce=False, required=False),
        },
        "key": None,
    },
    "clinical_events": {
        "columns": {
            "subject_id": _text(),
            "day": _num("day"),
            "event": _text(isin=["hospitalisation", "suicide_attempt", "other"]),
        },
        "key": None,
    },
}
# Covariates and descriptive columns whose absence or missingness the report counts (warnings).
DESCRIPTIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    "subjects": ("site", "age", "sex", "n_failed_trials", "episode_duration_months",
                 "anxious_distress", "bmi", "family_history_aud", "disposition"),
    "infusions": ("drug", "dose", "dose_unit", "duration_min", "phase"),
    "assessments": ("visit", "visit_number"),
}
KNOWN_DRUGS = ("ketamine_iv", "esketamine_in", "midazolam_iv", "saline_iv", "placebo_in")
_DAY_COLUMNS = {"day", "dropout_day", "randomization_day"}
_INTEGER_COLUMNS = {"n_failed_trials", "anxious_distress", "family_history_aud", "visit_number",
                    "infusion_number"}
@dataclass
class ValidationReport:
    """Every problem found in a cohort.

    Attributes
    ----------
    problems : DataFrame
        One row per problem: ``table``, ``column``, ``rows`` (0-based row positions in the table
        as loaded, at most ten listed), ``rule``, ``values`` (offending values, at most ten) and
        ``severity`` (``"error"`` or ``"warning"``).
    """

    problems: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=_PROBLEM_COLUMNS)
    )

    def add(self, table: str, column: str | None, rows, rule: str, values=None,
            severity: str = "error") -> None:
        """Record one problem (rows and values may be lists; long lists are abbreviated)."""
        row = {
            "table": table,
            "column": column,
            "rows": _abbreviate(rows),
            "rule": rule,
            "values": _abbreviate(values),
            "severity": severity,
        }
        new = pd.DataFrame([row], columns=_PROBLEM_COLUMNS)
        self.problems = new if self.problems.empty else pd.concat(
            [self.problems, new], ignore_index=True
        )

    @property
    def errors(self) -> pd.DataFrame:
        return self.problems[self.problems["severity"] == "error"].reset_index(drop=True)

    @property
    def warnings(self) -> pd.DataFrame:
        return self.problems[self.problems["severity"] == "warning"].reset_index(drop=True)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return self.errors.empty

    def __str__(self) -> str:
        if self.problems.empty:
            return "No problems found."
        lines = [f"{len(self.errors)} error(s), {len(self.warnings)} warning(s) "
                 "(rows are 0-based data rows: in a CSV file, line = row + 2):"]
        for p in self.problems.itertuples(index=False):
            where = p.table + (f".{p.column}" if p.column else "")
            rows = f" rows {p.rows}" if p.rows not in (None, "") else ""
            vals = f" values {p.values}" if p.values not in (None, "") else ""
            lines.append(f"- [{p.severity}] {where}{rows}: {p.rule}{vals}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The problems as a markdown table."""
        if self.problems.empty:
            return "No problems found.\n"
        head = "| severity | table | column | rows | rule | values |\n|---|---|---|---|---|---|\n"
        body = "".join(
            f"| {p.severity} | {p.table} | {p.column or ''} | {p.rows or ''} | {p.rule} | "
            f"{str(p.values or '').replace('|', '/')} |\n"
            for p in self.problems.itertuples(index=False)
        )
        return head + body

    def to_html(self) -> str:
        """The problems as an HTML table (values escaped)."""
        if self.problems.empty:
            return "<p>No problems found.</p>"
        return self.problems.fillna("").to_html(index=False, escape=True, border=0)

    def raise_if_errors(self) -> ValidationReport:
        """Raise :class:`DataValidationError` listing every error; return self otherwise."""
        if not self.ok:
            raise DataValidationError(
                "The cohort breaks the data model (see docs/data_model.md).\n" + str(self),
                self.problems.copy(),
            )
        return self


def _abbreviate(items) -> str | None:
    if items is None:
        return None
    if isinstance(items, str):
        return items
    seq = list(items)
    if not seq:
        return None
    shown = ", ".join(_fmt(v) for v in seq[:_MAX_LISTED])
    more = f" ... ({len(seq)} in all)" if len(seq) > _MAX_LISTED else ""
    return shown + more


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


def validate_cohort(cohort) -> ValidationReport:
    """Check a cohort against the data model and return every problem found.

    Parameters
    ----------
    cohort : Cohort
        The cohort to check; it is not modified.

    Returns
    -------
    ValidationReport
        ``report.ok`` is True when there is no error; ``report.problems`` lists every problem.

    Examples
    --------
    >>> report = validate_cohort(cohort)  # doctest: +SKIP
    >>> report.raise_if_errors()  # doctest: +SKIP
    """
    report = ValidationReport()
    for note in getattr(cohort, "notes", None) or ():
        report.add(note.get("table", "cohort"), note.get("column"), None, note["rule"],
                   severity="warning")
    clean: dict[str, pd.DataFrame] = {}
    for name, table in cohort.tables.items():
        clean[name] = _check_table(name, table, report)
    _check_cross_tables(clean, report)
    return report


def _check_table(name: str, table: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Check one table; return a typed copy (unparseable values as NaN) for cross-table rules."""
    spec = TABLE_SCHEMAS[name]
    columns: dict[str, pa.Column] = spec["columns"]
    # A shallow copy: every model column is replaced below by its typed version (never written
    # into), so the input stays as it was without a copy of a registry-sized table.
    df = table.copy(deep=False)
    if df.columns.duplicated().any():
        dup = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        report.add(name, ", ".join(dup), None, "duplicated column name: each column must appear once")
        df = df.loc[:, ~df.columns.duplicated()]
    if df.empty and name in ("subjects", "assessments", "infusions"):
        report.add(name, None, None, "table is empty (no rows)")
    missing = [c for c, col in columns.items() if col.required and c not in df.columns]
    for c in missing:
        report.add(name, c, None, "required column is missing",
                   f"columns present: {', '.join(map(str, df.columns))}")
    for c in DESCRIPTIVE_COLUMNS.get(name, ()):
        if c not in df.columns:
            report.add(name, c, None, "column absent: analyses that need it will refuse or use "
                       "complete cases", severity="warning")
        elif len(df) and df[c].isna().any():
            n_miss = int(df[c].isna().sum())
            what = "subjects" if name == "subjects" else "rows"
            rows = np.flatnonzero(df[c].isna().to_numpy())
            report.add(name, c, rows, f"missing for {n_miss} of {len(df)} {what}",
                       severity="warning")
    present = {c: col for c, col in columns.items() if c in df.columns}
    # Coerce ourselves first, so that text in a numeric column is reported with its rows and values
    # instead of a single dtype failure.
    for c, col in present.items():
        if col.dtype is not None and str(col.dtype).startswith("float"):
            df[c] = _coerce_numeric(name, c, df[c], report)
            if c in _INTEGER_COLUMNS:
                frac = df[c].notna() & (df[c] % 1 != 0)
                if frac.any():
                    report.add(name, c, np.flatnonzero(frac), "must be a whole number",
                               df.loc[frac, c].tolist())
        elif str(col.dtype) == "bool":
            df[c] = _coerce_bool(name, c, df[c], report)
        elif pd.api.types.infer_dtype(df[c], skipna=True) in ("string", "empty"):
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        else:
            df[c] = df[c].astype("string").astype(object).where(df[c].notna(), None)
    schema = pa.DataFrameSchema(
        {c: col for c, col in present.items() if not str(col.dtype) == "bool"},
        strict=False, coerce=False,
    )
    flags = [c for c, col in present.items() if str(col.dtype) == "bool"]
    try:
        schema.validate(df.drop(columns=flags) if flags else df, lazy=True)
    except pa.errors.SchemaErrors as errs:
        _collect_pandera(name, errs.failure_cases, report)
    if name == "assessments" and "scale" in df.columns:
        _check_scores(df, report)
    if name == "infusions":
        _check_drugs(df, report)
    key = spec["key"]
    if key and all(k in df.columns for k in key):
        nan_key = df[key].isna().any(axis=1)
        dup = df.duplicated(subset=key, keep=False) & ~nan_key
        if dup.any():
            report.add(name, ", ".join(key), np.flatnonzero(dup),
                       f"duplicate key: ({', '.join(key)}) must be unique",
                       df.loc[dup, key].astype(str).agg("/".join, axis=1).unique().tolist())
    return df


def _coerce_numeric(table: str, column: str, s: pd.Series, report: ValidationReport) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        what = "date-times" if pd.api.types.is_datetime64_any_dtype(s) else "durations"
        report.add(table, column, None,
                   f"must be a number, but the column holds {what} ({s.dtype}); "
                   + ("convert to study days since the first infusion (float)"
                      if column in _DAY_COLUMNS or column == "minute" else "store plain numbers"))
        return pd.Series(np.nan, index=s.index, dtype=float)
    if s.dtype == object and len(s) and pd.api.types.infer_dtype(s, skipna=True) not in (
            "string", "floating", "integer", "mixed-integer-float", "empty", "boolean"):
        kinds = s.dropna().map(type)
        odd = kinds.map(lambda k: issubclass(k, (pd.Timestamp, pd.Timedelta))
                        or k.__name__ in ("datetime", "date", "timedelta", "time"))
        if odd.any():
            report.add(table, column, np.flatnonzero(s.index.isin(odd[odd].index)),
                       "must be a number, not a date or duration", None)
            s = s.where(~s.index.isin(odd[odd].index), None)
    out = pd.to_numeric(s, errors="coerce")
    bad = out.isna() & s.notna()
    if bad.any():
        blank = (s[bad].astype(str).str.strip() == "").to_numpy(dtype=bool)
        flags = bad.to_numpy(dtype=bool).copy()
        flags[np.flatnonzero(flags)[blank]] = False
        bad = pd.Series(flags, index=s.index)
    if bad.any():
        report.add(table, column, np.flatnonzero(bad), "must be numeric", s[bad].tolist())
    out = out.astype(float)
    inf = np.isinf(out.to_numpy())
    if inf.any():
        report.add(table, column, np.flatnonzero(inf), "must be a finite number (not inf)",
                   out[inf].tolist())
        out = out.where(~inf)
    if column in _DAY_COLUMNS:
        far = out.abs() > _DAY_LIMIT
        if far.any():
            report.add(table, column, np.flatnonzero(far.to_numpy()),
                       f"study day beyond +-{_DAY_LIMIT:g} (100 years): a unit or date error",
                       out[far].tolist())
            out = out.where(~far)
    return out


def _coerce_bool(table: str, column: str, s: pd.Series, report: ValidationReport) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s
    text = s.astype(str).str.strip().str.lower()
    mapping = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False,
               "yes": True, "no": False}
    out = text.map(mapping).where(s.notna(), None)
    bad = out.isna() & s.notna()
    if bad.any():
        report.add(table, column, np.flatnonzero(bad), "must be true or false", s[bad].tolist())
    return out


def _collect_pandera(table: str, failures: pd.DataFrame, report: ValidationReport) -> None:
    if failures is None or failures.empty:
        return
    failures = failures.copy()
    failures["column"] = failures["column"].astype(object)
    for (column, check), grp in failures.groupby(["column", "check"], dropna=False, sort=False):
        if check == "column_in_dataframe":
            continue  # reported ourselves with the list of present columns
        rows = grp["index"].dropna().astype(int).tolist()
        rule = _describe_check(str(check))
        values = grp["failure_case"].tolist()
        report.add(table, None if pd.isna(column) else str(column), rows, rule, values)


def _describe_check(check: str) -> str:
    if check == "not_nullable":
        return "missing value where one is required"
    if check.startswith("in_range"):
        lo, hi = check[len("in_range("):-1].split(", ")
        return f"must lie between {lo} and {hi}"
    if check.startswith("isin"):
        return f"must be one of {check[len('isin('):-1]}"
    if check.startswith("less_than_or_equal_to"):
        return f"must be <= {check.split('(')[1][:-1]}"
    if check.startswith("greater_than_or_equal_to"):
        return f"must be >= {check.split('(')[1][:-1]}"
    if check.startswith("greater_than"):
        return f"must be > {check.split('(')[1][:-1]}"
    if check.startswith("dtype"):
        return f"wrong type: expected {check[len('dtype('):-1]}"
    return check


def _check_scores(df: pd.DataFrame, report: ValidationReport) -> None:
    scales = df["scale"].dropna().unique()
    known = []
    for s in scales:
        try:
            known.append((s, get_scale(s)))
        except Exception:
            rows = np.flatnonzero(df["scale"] == s)
            report.add("assessments", "scale", rows,
                       f"unknown scale {s!r}; register it with kanalysis.register_scale", [s])
    if "score" not in df.columns:
        return
    for name, scale in known:
        sel = (df["scale"] == name) & df["score"].notna()
        out = sel & ((df["score"] < scale.min) | (df["score"] > scale.max))
        if out.any():
            report.add("assessments", "score", np.flatnonzero(out),
                       f"{name} score must lie between {scale.min:g} and {scale.max:g}",
                       df.loc[out, "score"].tolist())


def _check_drugs(df: pd.DataFrame, report: ValidationReport) -> None:
    if "drug" not in df.columns:
        return
    unknown = df["drug"].notna() & ~df["drug"].isin(KNOWN_DRUGS)
    if unknown.any():
        report.add("infusions", "drug", np.flatnonzero(unknown.to_numpy()),
                   f"drug not one of {', '.join(KNOWN_DRUGS)}: analyses treat it as given",
                   df.loc[unknown, "drug"].unique().tolist(), severity="warning")
    if "duration_min" in df.columns:
        zero = (df["duration_min"] == 0) & ~df["drug"].astype(str).str.endswith("_in")
        if zero.any():
            report.add("infusions", "duration_min", np.flatnonzero(zero.to_numpy()),
                       "duration 0 is allowed only for intranasal drugs (*_in); an infusion lasts "
                       "> 0 minutes", df.loc[zero, "drug"].unique().tolist())


def _check_cross_tables(t: dict[str, pd.DataFrame], report: ValidationReport) -> None:
    subjects = t.get("subjects")
    if subjects is None or "subject_id" not in subjects:
        return
    ids = set(subjects["subject_id"].dropna())
    for name, table in t.items():
        if name == "subjects" or "subject_id" not in table.columns:
            continue
        orphan = table["subject_id"].notna() & ~table["subject_id"].isin(ids)
        if orphan.any():
            report.add(name, "subject_id", np.flatnonzero(orphan),
                       "subject_id not found in subjects",
                       table.loc[orphan, "subject_id"].unique().tolist())
    cols = set(subjects.columns)
    if {"disposition", "dropout_day"} <= cols:
        dropped = subjects["disposition"] == "dropped_out"
        no_day = dropped & subjects["dropout_day"].isna()
        if no_day.any():
            report.add("subjects", "dropout_day", np.flatnonzero(no_day),
                       "dropped-out subject needs a dropout_day",
                       subjects.loc[no_day, "subject_id"].tolist())
        day_but_completed = (subjects["disposition"] == "completed") & subjects["dropout_day"].notna()
        if day_but_completed.any():
            report.add("subjects", "dropout_day", np.flatnonzero(day_but_completed),
                       "completed subject must have no dropout_day",
                       subjects.loc[day_but_completed, "subject_id"].tolist())
    assessments = t.get("assessments")
    if assessments is not None and {"subject_id", "scale", "day", "visit_number"} <= set(
        assessments.columns
    ):
        _check_visit_order(assessments, report)
    infusions = t.get("infusions")
    if infusions is not None and {"subject_id", "day", "infusion_number"} <= set(infusions.columns):
        _check_infusion_order(infusions, report)
        if {"disposition", "dropout_day"} <= cols:
            merged = infusions.reset_index().merge(
                subjects[["subject_id", "dropout_day"]], on="subject_id", how="left"
            )
            after = merged["dropout_day"].notna() & (merged["day"] > merged["dropout_day"])
            if after.any():
                report.add("infusions", "day", merged.loc[after, "index"].tolist(),
                           "infusion after the subject's dropout_day",
                           merged.loc[after, "subject_id"].unique().tolist())
        first = infusions.groupby("subject_id")["day"].min()
        not_zero = first[first.abs() > 1e-9]
        if len(not_zero):
            report.add("infusions", "day", None,
                       "the first infusion must be day 0 (study days count from it)",
                       [f"{s}: day {d:g}" for s, d in not_zero.items()], severity="error")
    vitals = t.get("vitals")
    if vitals is not None and infusions is not None and {"subject_id", "infusion_number"} <= set(
        vitals.columns
    ) and "infusion_number" in infusions:
        known = set(zip(infusions["subject_id"], infusions["infusion_number"], strict=True))
        keys = list(zip(vitals["subject_id"], vitals["infusion_number"], strict=True))
        orphan = np.array([k not in known for k in keys], dtype=bool) & vitals["subject_id"].isin(ids).to_numpy()
        if orphan.any():
            report.add("vitals", "infusion_number", np.flatnonzero(orphan),
                       "no such infusion in infusions for this subject",
                       sorted({f"{s}#{n:g}" for s, n in np.array(keys, dtype=object)[orphan]}))
        if {"sbp", "dbp"} <= set(vitals.columns):
            inverted = vitals["sbp"].notna() & vitals["dbp"].notna() & (
                vitals["sbp"] <= vitals["dbp"])
            if inverted.any():
                report.add("vitals", "sbp", np.flatnonzero(inverted),
                           "systolic pressure must exceed diastolic",
                           (vitals.loc[inverted, "sbp"].astype(str) + "/"
                            + vitals.loc[inverted, "dbp"].astype(str)).tolist())


def _check_visit_order(a: pd.DataFrame, report: ValidationReport) -> None:
    ok = a.dropna(subset=["subject_id", "scale", "day", "visit_number"])
    ok = ok.sort_values(["subject_id", "scale", "visit_number"], kind="stable")
    same = (ok["subject_id"] == ok["subject_id"].shift()) & (ok["scale"] == ok["scale"].shift())
    backwards = same & (ok["day"] < ok["day"].shift())
    if backwards.any():
        report.add("assessments", "visit_number", ok.index[backwards].tolist(),
                   "visit numbers must increase with day within subject and scale",
                   ok.loc[backwards, "subject_id"].unique().tolist())
    if "visit" in a.columns:
        # One label per visit number (within scale) across the cohort: a label that means two
        # different visits makes by-visit summaries wrong.
        labels = a.dropna(subset=["visit", "visit_number"]).groupby(["scale", "visit_number"])[
            "visit"].nunique()
        clash = labels[labels > 1]
        for (scale, number), _ in clash.items():
            rows = np.flatnonzero((a["scale"] == scale) & (a["visit_number"] == number))
            report.add("assessments", "visit", rows,
                       f"visit_number {number:g} carries more than one visit label",
                       a.loc[(a["scale"] == scale) & (a["visit_number"] == number),
                             "visit"].unique().tolist(), severity="warning")


def _check_infusion_order(inf: pd.DataFrame, report: ValidationReport) -> None:
    ok = inf.dropna(subset=["subject_id", "day", "infusion_number"]).sort_values(
        ["subject_id", "infusion_number"], kind="stable")
    same = ok["subject_id"] == ok["subject_id"].shift()
    backwards = same & (ok["day"] < ok["day"].shift())
    if backwards.any():
        report.add("infusions", "infusion_number", ok.index[backwards].tolist(),
                   "infusion numbers must increase with day within subject",
                   ok.loc[backwards, "subject_id"].unique().tolist())
