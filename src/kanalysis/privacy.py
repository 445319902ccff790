"""Privacy protection for real patient data: identifier detection and small-count suppression.

Three tools, used by ``kanalysis import`` and by the notebooks when ``privacy="strict"``:

- :func:`detect_identifiers` finds columns that look like direct identifiers (names, medical record
  numbers, e-mail addresses, phone numbers, postal addresses, dates of birth, exact calendar dates,
  social-security-like numbers, free text) by their column name **and** by their content. The
  importers drop such columns and list them in the import report. Findings never carry the values
  themselves, so the report is safe to share.
- :func:`suppress_small_counts` masks counts below a threshold (default 11) in an aggregate table, with
  secondary (complementary) suppression so that a published row or column total cannot be used to
  recover a masked cell. :func:`format_count` does the same for a single number in a figure
  annotation.
- :class:`PrivacyPolicy` bundles the mode and the threshold so that a notebook can take one object and
  apply it everywhere.

The threshold of 11 follows the cell-size suppression policy of the US Centers for Medicare &
Medicaid Services (CMS, "Cell Size Suppression Policy", 2020: no cell with 1-10 beneficiaries may be
published). Secondary suppression follows the usual statistical-disclosure-control practice described
in Hundepool et al., *Statistical Disclosure Control*, Wiley 2012, chapter 4.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.rules import DEFAULT_MIN_CELL_COUNT

__all__ = [
    "DEFAULT_MIN_CELL_COUNT",
    "IDENTIFIER_KINDS",
    "PRIVACY_MODES",
    "PrivacyPolicy",
    "collapse_rare_categories",
    "detect_identifiers",
    "drop_identifiers",
    "format_count",
    "normalise_privacy_mode",
    "suppress_small_counts",
]


# What each kind of identifier is, for the report.
IDENTIFIER_KINDS: dict[str, str] = {
    "name": "person name",
    "mrn": "medical record / patient / insurance number",
    "email": "e-mail address",
    "phone": "telephone number",
    "address": "postal address or place below region level",
    "birth_date": "date of birth",
    "exact_date": "exact calendar date or time",
    "ssn": "social-security-like national identifier",
    "free_text": "free text (may hold any identifier)",
}

# --- detection by column name -------------------------------------------------------------------
# Column names are normalised to lower-case tokens joined by "_" (camelCase split, punctuation and
# spaces removed) before matching, so "Patient Name", "patientName" and "PATIENT_NAME" all become
# "patient_name".
_NAME_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("birth_date", re.compile(r"(^|_)(dob|birth_?date|date_of_birth|birth_?day|birth|brthdt|birthdt)(_|$)")),
    (
        "name",
        re.compile(
            r"^(name|names)$|(^|_)(first|last|given|family|middle|full|maiden|patient|pt|person|"
            r"subject|client|rater|physician|doctor|nurse|contact)_?names?(_|$)|(^|_)(surname|"
            r"forename|firstname|lastname|fullname|initials)(_|$)"
        ),
    ),
    ("email", re.compile(r"(^|_)(e_?mail|email_?address|mail)(_|$)")),
    ("phone", re.compile(r"(^|_)(phone|telephone|tel|mobile|cell|cellphone|fax|phone_?number)(_|$)")),
    (
        "address",
        re.compile(
            r"(^|_)(address|addr|street|city|town|zip|zipcode|zip_code|postcode|post_code|postal|"
            r"postal_code|county|residence|house_number|apartment)(_|$)"
        ),
    ),
    (
        "ssn",
        re.compile(
            r"(^|_)(ssn|social_security|social_security_number|sin|national_id|nin|passport|"
            r"driver_?s?_?licen[cs]e|licen[cs]e_?number|tax_id|personnummer|cpr|bsn)(_|$)"
        ),
    ),
    (
        "mrn",
        re.compile(
            r"(^|_)(mrn|medical_record|medical_record_number|record_number|chart_number|"
            r"hospital_number|hospital_id|patient_number|patient_id|patient_no|pat_id|nhs|"
            r"nhs_number|health_card|insurance|insurance_number|member_id|policy_number|"
            r"account_number|encounter_id|visit_id|fin|accession)(_|$)"
        ),
    ),
    (
        "exact_date",
        re.compile(
            r"(^|_)(date|datetime|timestamp|time|dt|dtm|dttm|dtc|day_of|admission|discharge)(_|$)"
            r"|^[a-z]*(dtc|dtm)$|^[a-z]{1,6}dt$"
        ),
    ),
    (
        "free_text",
        re.compile(
            r"(^|_)(comment|comments|note|notes|remark|remarks|free_?text|narrative|verbatim|"
            r"description|memo|text|observation|observations|other_specify|specify)(_|$)"
        ),
    ),
]

# --- detection by content -----------------------------------------------------------------------
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
_PHONE = re.compile(
    r"(?<![\w.-])(\+\d{1,3}[\s.-]?)?(\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{2,4}([\s.-]?\d{2,4}){1,2}(?![\w-])"
)
_DATE = re.compile(
    r"(?<!\d)(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d{4}/\d{1,2}/\d{1,2})(?!\d)"
    r"|(?i:\b\d{1,2}[ -]?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[ -]?\d{2,4}\b)"
)
_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")
# A record number: an optional short letter prefix and 6 or more digits, the whole value.
_MRN = re.compile(r"^[A-Za-z]{0,4}[-_ ]?\d{6,12}$")
# Two or three capitalised words ("Jane Doe", "Doe, Jane", "Mary-Ann O'Neil").
_PERSON = re.compile(r"^[A-Z][a-z'\-]+,?(\s+[A-Z]\.?)?(\s+[A-Z][a-z'\-]+){1,2}$")
# Capitalised words that make a label an institution or a category rather than a person.
_NOT_PERSON_WORDS = {
    "adverse", "event", "events", "hospital", "clinic", "university", "center", "centre", "site",
    "unit", "health", "medical", "institute", "department", "ward", "group", "arm", "trial",
    "study", "visit", "week", "day", "baseline", "screening", "follow", "up", "lost", "withdrawal",
    "consent", "completed", "ketamine", "esketamine", "placebo", "midazolam", "saline", "other",
    "unknown", "not", "applicable", "disorder", "depression", "severe", "moderate", "mild", "male",
    "female", "private", "public", "regional", "county", "general", "national", "research",
}

_CONTENT_RULES: list[tuple[str, re.Pattern[str], str]] = [
    ("email", _EMAIL, "search"),
    ("ssn", _SSN, "search"),
    ("phone", _PHONE, "search"),
    ("exact_date", _DATE, "search"),
    ("mrn", _MRN, "match"),
    ("name", _PERSON, "match"),
]

# Share of non-missing values that must match for whole-value patterns (record numbers, names).
_WHOLE_VALUE_SHARE = 0.5
# Free text: long values with several words that are mostly unique.
_FREE_TEXT_MIN_MEAN_WORDS = 4.0
_FREE_TEXT_MIN_UNIQUE_SHARE = 0.5


def _normalise_column_name(name: object) -> str:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return text


def _kind_from_name(name: object) -> str | None:
    normal = _normalise_column_name(name)
    for kind, pattern in _NAME_RULES:
        if pattern.search(normal):
            return kind
    return None


def _string_values(series: pd.Series) -> pd.Series:
    values = series.dropna()
    if values.empty:
        return values.astype(str)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        # Numbers can still be record numbers or phone numbers: keep the integral ones as text.
        if pd.api.types.is_float_dtype(values):
            integral = values[np.isfinite(values) & (values == np.round(values))]
            return integral.astype("int64").astype(str)
        if pd.api.types.is_bool_dtype(values):
            return values.iloc[0:0].astype(str)
        return values.astype(str)
    return values.astype(str).str.strip()


def _has_phone_number(value: str) -> bool:
    # Dates and clock times are digit runs with separators too: take them out first.
    value = _TIME.sub(" ", _DATE.sub(" ", value))
    match = _PHONE.search(value)
    # A phone number has at least 7 digits; shorter runs are doses, scores or times.
    if match is None or _DATE.fullmatch(match.group(0).strip()):
        return False
    return sum(ch.isdigit() for ch in match.group(0)) >= 7


def _has_non_person_word(value: str) -> bool:
    return any(word.lower().strip(",.") in _NOT_PERSON_WORDS for word in value.split())


def _content_findings(series: pd.Series) -> list[tuple[str, int]]:
    """Kinds of identifier found in the values of one column, with the number of matching values."""
    if pd.api.types.is_datetime64_any_dtype(series):
        n = int(series.notna().sum())
        return [("exact_date", n)] if n else []
    text = _string_values(series)
    text = text[text != ""]
    if text.empty:
        return []
    numeric = pd.api.types.is_numeric_dtype(series)
    found: list[tuple[str, int]] = []
    for kind, pattern, how in _CONTENT_RULES:
        if numeric and kind not in ("mrn", "phone"):
            continue
        if how == "search":
            if kind == "phone":
                hits = text.map(_has_phone_number)
            else:
                hits = text.map(lambda v, p=pattern: p.search(v) is not None)
            n = int(hits.sum())
            # Dates and phone numbers inside a few values of a numeric-looking column are noise;
            # e-mail and SSN patterns are specific enough that a single hit counts.
            if kind in ("exact_date", "phone") and n < max(1, int(0.2 * len(text))):
                if not (kind == "phone" and n >= 1 and not numeric):
                    continue
            if n:
                found.append((kind, n))
        else:
            hits = text.map(lambda v, p=pattern: p.match(v) is not None)
            if kind == "name":
                hits &= ~text.map(_has_non_person_word)
            n = int(hits.sum())
            if n and n >= _WHOLE_VALUE_SHARE * len(text):
                found.append((kind, n))
    if not numeric:
        words = text.str.split().str.len()
        if (
            words.mean() >= _FREE_TEXT_MIN_MEAN_WORDS
            and text.nunique() >= _FREE_TEXT_MIN_UNIQUE_SHARE * len(text)
        ):
            found.append(("free_text", int((words >= 3).sum())))
    return found


def detect_identifiers(
    df: pd.DataFrame,
    *,
    table: str = "",
    exclude: Iterable[str] = (),
    by_name: bool = True,
    by_content: bool = True,
) -> pd.DataFrame:
    """Find columns that look like direct identifiers.

    Each column is checked by name (normalised to snake_case tokens and matched against patterns such
    as ``name``, ``mrn``, ``email``, ``phone``, ``address``, ``dob``, ``date``, ``ssn``, ``comment``) and
    by content (e-mail, SSN-like ``123-45-6789``, telephone numbers, calendar dates, record numbers of
    6-12 digits with an optional letter prefix, capitalised person names, and free text of several
    mostly unique words). Date-time typed columns are exact dates.

    Parameters
    ----------
    df : pandas.DataFrame
        Table to scan; it is not modified.
    table : str, optional
        Table or file name, copied into the result for the report.
    exclude : iterable of str
        Columns to skip (for instance columns already converted to study days).
    by_name, by_content : bool, default True
        Which detectors to run.

    Returns
    -------
    pandas.DataFrame
        One row per flagged column with columns ``table``, ``column``, ``kind`` (a key of
        :data:`IDENTIFIER_KINDS`), ``detected_by`` (``"column name"``, ``"content"`` or both),
        ``n_matching`` (values matching a content pattern; missing when detected by name only) and
        ``reason``. The values themselves are never included.

    Notes
    -----
    Detection is a safety net, not a guarantee: an identifier in a column with an innocent name and an
    unusual format can pass. The import report therefore lists every column kept as well as every
    column dropped, so that a person can check.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"id": ["a", "b"], "contact": ["x@y.org", "z@w.com"]})
    >>> detect_identifiers(df)[["column", "kind"]].to_dict("records")
    [{'column': 'contact', 'kind': 'email'}]
    """
    skip = set(exclude)
    rows = []
    for column in df.columns:
        if column in skip:
            continue
        name_kind = _kind_from_name(column) if by_name else None
        content = _content_findings(df[column]) if by_content else []
        if name_kind is None and not content:
            continue
        # The most specific content finding wins over a generic name finding.
        if content:
            kind, n_matching = content[0]
            if name_kind is not None and name_kind != kind and name_kind != "exact_date":
                kind = name_kind
        else:
            kind, n_matching = name_kind, None
        detected_by = (
            "column name and content"
            if name_kind is not None and content
            else ("column name" if name_kind is not None else "content")
        )
        reason = f"looks like {IDENTIFIER_KINDS[kind]} ({detected_by}"
        if n_matching is not None:
            reason += f": {n_matching} of {int(df[column].notna().sum())} values match"
        reason += ")"
        rows.append(
            {
                "table": table,
                "column": str(column),
                "kind": kind,
                "detected_by": detected_by,
                "n_matching": n_matching,
                "reason": reason,
            }
        )
    return pd.DataFrame(
        rows, columns=["table", "column", "kind", "detected_by", "n_matching", "reason"]
    ).astype({"n_matching": "Int64"})


def drop_identifiers(
    df: pd.DataFrame, *, table: str = "", keep: Iterable[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return a copy of ``df`` without identifier-like columns, and the findings.

    Parameters
    ----------
    df : pandas.DataFrame
        Input table (not modified).
    table : str, optional
        Name used in the findings.
    keep : iterable of str
        Columns never dropped (e.g. the pseudonymous subject key).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        The cleaned copy and the output of :func:`detect_identifiers`.
    """
    findings = detect_identifiers(df, table=table, exclude=keep)
    return df.drop(columns=list(findings["column"])), findings


# --- small-count suppression ----------------------------------------------------------------------
def _check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 1:
        raise ConfigurationError(
            f"The small-count threshold must be a positive integer (default 11), got {threshold!r}."
        )
    return int(threshold)


def format_count(
    n: float | int | None,
    threshold: int = DEFAULT_MIN_CELL_COUNT,
    *,
    suppress_zero: bool = False,
    prefix: str = "",
) -> str:
    """Format a count for a table cell or a figure annotation, hiding small counts.

    Parameters
    ----------
    n : int, float or None
        The count. Missing values give ``"NA"``.
    threshold : int, default 11
        Counts ``1 <= n < threshold`` are shown as ``"<threshold"``. Use ``threshold=1`` to show
        every count (privacy mode ``"none"``).
    suppress_zero : bool, default False
        Also hide 0 (when a zero would itself be disclosive, e.g. "no patient at this site
        relapsed" in a tiny site).
    prefix : str, optional
        Text put in front, e.g. ``"n = "``.

    Returns
    -------
    str

    Examples
    --------
    >>> format_count(25), format_count(4), format_count(4, prefix="n = "), format_count(0)
    ('25', '<11', 'n = <11', '0')
    """
    threshold = _check_threshold(threshold)
    if n is None or (isinstance(n, float) and not np.isfinite(n)) or n is pd.NA:
        return f"{prefix}NA"
    value = float(n)
    if (0 < value < threshold) or (suppress_zero and value == 0 and threshold > 1):
        return f"{prefix}<{threshold}"
    return f"{prefix}{int(value) if value == int(value) else value:g}"


def suppress_small_counts(
    df: pd.DataFrame,
    count_columns: Sequence[str],
    threshold: int = DEFAULT_MIN_CELL_COUNT,
    *,
    margins: str = "both",
    total_column: str | None = None,
    total_row: object = None,
    suppress_zero: bool = False,
    label: str | None = None,
    return_mask: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Suppress small counts in an aggregate table, with secondary suppression.

    The cells are the values of ``count_columns`` in every row except ``total_row``. Totals, when the
    table shows them, are the column ``total_column`` (row totals) and the row ``total_row`` (column
    totals).

    Algorithm
    ---------
    1. *Primary suppression*: every cell and every shown total with ``1 <= n < threshold`` is
       suppressed (``0`` too when ``suppress_zero``).
    2. *Secondary suppression*: a line (a row of cells when row totals are known, a column of cells
       when column totals are known; ``margins`` says which) is unsafe when its total is published (or
       can be published elsewhere, e.g. as the N of an arm) and either exactly one of its cells is
       suppressed, or the suppressed cells together add up to less than ``threshold`` so that their
       sum, which is the total minus the shown cells, would itself be a small count. In an unsafe
       line the smallest shown cell (preferring non-zero cells, because a suppressed zero protects
       nothing when structural zeros are known) is suppressed as well. If a line has no shown cell
       left, its total is suppressed instead.
    3. Step 2 is repeated over rows and columns until no line is unsafe, because each new suppression
       can make a crossing line unsafe.

    This greedy rule is the one most disclosure-control guides describe (Hundepool et al. 2012,
    sec. 4.3); it protects against recovering a cell by subtraction from one published total. It
    does not search for the minimum-loss pattern that linear-programming methods find.

    Parameters
    ----------
    df : pandas.DataFrame
        Aggregate table, one row per category (not modified).
    count_columns : sequence of str
        Columns holding counts (the cells).
    threshold : int, default 11
        Smallest count that may be shown.
    margins : {"both", "rows", "columns", "none"}, default "both"
        Which totals are known to a reader: ``"rows"`` protects each row, ``"columns"`` each column.
        The default assumes both are known, which is the safe choice when group sizes (the N of each
        arm) are printed elsewhere.
    total_column : str, optional
        Column of row totals shown in the table; it is checked and suppressed like a cell.
    total_row : label, optional
        Index label of a row of column totals shown in the table.
    suppress_zero : bool, default False
        Also treat 0 as a small count.
    label : str, optional
        Text to put in suppressed cells (for example ``"<11"``). When None, suppressed cells become
        missing (``pd.NA``) and the count columns have the nullable ``Int64`` type.
    return_mask : bool, default False
        Also return a boolean DataFrame, True where a value was suppressed (for footnotes).

    Returns
    -------
    pandas.DataFrame, or (pandas.DataFrame, pandas.DataFrame) with ``return_mask``

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"ketamine": [30, 4, 25], "midazolam": [28, 15, 20]},
    ...                  index=["nausea", "vomiting", "headache"])
    >>> suppress_small_counts(t, ["ketamine", "midazolam"], label="<11")
             ketamine midazolam
    nausea         30        28
    vomiting      <11       <11
    headache      <11       <11

    The 4 is suppressed (primary); the 15 beside it, because the row total would give the 4 back; then
    25 and 20, because the column totals would give the 4 and the 15 back.
    """
    threshold = _check_threshold(threshold)
    if margins not in ("both", "rows", "columns", "none"):
        raise ConfigurationError(
            f"`margins` must be 'both', 'rows', 'columns' or 'none', got {margins!r}."
        )
    columns = list(count_columns)
    missing = [c for c in columns + ([total_column] if total_column else []) if c not in df.columns]
    if missing:
        raise ConfigurationError(
            f"suppress_small_counts: column(s) {missing} are not in the table; it has "
            f"{list(df.columns)}."
        )
    if total_row is not None and total_row not in df.index:
        raise ConfigurationError(f"suppress_small_counts: total_row {total_row!r} is not in the index.")
    all_columns = columns + ([total_column] if total_column else [])
    values = df[all_columns].apply(pd.to_numeric, errors="coerce")
    if not df.index.is_unique:
        # Cells are addressed by label below: work on positions, restore the labels at the end.
        if total_row is not None:
            raise ConfigurationError(
                "suppress_small_counts: the index must be unique when total_row is given."
            )
        values = values.reset_index(drop=True)
    if (values < 0).any().any():
        raise ConfigurationError("suppress_small_counts: counts must not be negative.")

    def small(x: pd.DataFrame) -> pd.DataFrame:
        hit = (x >= 1) & (x < threshold)
        if suppress_zero:
            hit |= x == 0
        return hit.fillna(False)

    mask = small(values)
    cell_rows = [r for r in values.index if total_row is None or r != total_row]
    protect_rows = margins in ("both", "rows")
    protect_cols = margins in ("both", "columns")

    def secure_line(line_index: list, total_key: tuple | None, axis: str) -> bool:
        """Add one complementary suppression to one line if unsafe; True when something changed."""
        if axis == "row":
            row = line_index[0]
            cells = [(row, c) for c in columns]
        else:
            col = line_index[0]
            cells = [(r, col) for r in cell_rows]
        if total_key is not None and mask.at[total_key]:
            return False  # the total is hidden, nothing can be subtracted
        hidden = [k for k in cells if mask.at[k]]
        if not hidden:
            return False
        hidden_sum = float(np.nansum([values.at[k] for k in hidden]))
        if len(hidden) >= 2 and (hidden_sum >= threshold or hidden_sum == 0):
            return False
        shown = [k for k in cells if not mask.at[k] and pd.notna(values.at[k])]
        if shown:
            nonzero = [k for k in shown if values.at[k] > 0]
            pool = nonzero or shown
            choice = min(pool, key=lambda k: (values.at[k], str(k)))
            mask.at[choice] = True
            return True
        if total_key is not None:
            mask.at[total_key] = True
            return True
        return False

    changed = True
    while changed:
        changed = False
        if protect_rows:
            for r in cell_rows:
                key = (r, total_column) if total_column else None
                changed |= secure_line([r], key, "row")
        if protect_cols:
            for c in columns:
                key = (total_row, c) if total_row is not None else None
                changed |= secure_line([c], key, "column")

    out = df.copy()
    for column in all_columns:
        if label is None:
            result = values[column].round().astype("Int64").mask(mask[column])
        else:
            shown = values[column].map(lambda v: "NA" if pd.isna(v) else f"{v:g}")
            result = shown.where(~mask[column], label).astype(object)
        out[column] = result.array
    mask.index = df.index
    if return_mask:
        return out, mask
    return out


def collapse_rare_categories(
    series: pd.Series,
    threshold: int = DEFAULT_MIN_CELL_COUNT,
    *,
    other: str = "other",
    count: pd.Series | None = None,
) -> pd.Series:
    """Relabel categories seen fewer than ``threshold`` times as ``other``.

    A rare category label can identify a patient even when its count is hidden ("the one patient with
    priapism at site B"), so strict-mode tables pool them. If the pooled group is itself below the
    threshold it stays pooled: its count is then suppressed by :func:`suppress_small_counts`.

    Parameters
    ----------
    series : pandas.Series
        Category per record (e.g. adverse event term per event).
    threshold : int, default 11
    other : str, default "other"
        Label for the pooled categories.
    count : pandas.Series, optional
        Count per category to use instead of counting records of ``series`` (e.g. number of distinct
        subjects per term), indexed by category.

    Returns
    -------
    pandas.Series
        Same index as ``series``.
    """
    threshold = _check_threshold(threshold)
    counts = series.value_counts(dropna=True) if count is None else count
    rare = set(counts.index[counts < threshold])
    return series.where(~series.isin(rare) | series.isna(), other)


#: Numeric columns that place a row (time, visit) rather than describe people; never hidden.
_COORDINATE_COLUMNS = frozenset({
    "day", "days", "time", "minute", "minutes", "hour", "hours", "week", "weeks", "visit_number",
    "infusion_number", "tau", "landmark", "timepoint", "conf_level",
})

#: Privacy modes from the least to the most strict.
PRIVACY_MODES = ("none", "strict")


def normalise_privacy_mode(value: object, *, source: str = "privacy") -> str:
    """The canonical privacy mode for ``value``, case-insensitive (``"STRICT"`` is ``"strict"``).

    Raises
    ------
    ConfigurationError
        For anything but a known mode, naming ``source`` (e.g. the cohort's metadata.json).
    """
    if isinstance(value, str) and value.strip().lower() in PRIVACY_MODES:
        return value.strip().lower()
    raise ConfigurationError(
        f"{source}: unknown privacy mode {value!r}; use one of {list(PRIVACY_MODES)} "
        "(case does not matter)."
    )


def _threshold_from(value: object, source: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigurationError(
            f"{source}: min_cell_count must be a positive integer (default "
            f"{DEFAULT_MIN_CELL_COUNT}), but {value!r} was given."
        )
    return int(value)


@dataclass(frozen=True)
class PrivacyPolicy:
    """How outputs treat patient privacy; notebooks take one of these.

    Parameters
    ----------
    mode : {"strict", "none"}, default "strict"
        ``"strict"``: counts below ``min_cell_count`` are suppressed in tables and figure
        annotations, rare categories are pooled, and no row-level record may be printed.
        ``"none"``: everything is shown (synthetic or public data only). Case-insensitive.
    min_cell_count : int, default 11
        Smallest count that may be shown in strict mode.

    Examples
    --------
    >>> policy = PrivacyPolicy("strict", min_cell_count=11)
    >>> policy.format_count(7), PrivacyPolicy("none").format_count(7)
    ('<11', '7')
    """

    mode: str = "strict"
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", normalise_privacy_mode(self.mode, source="PrivacyPolicy"))
        object.__setattr__(
            self, "min_cell_count", _threshold_from(self.min_cell_count, "PrivacyPolicy")
        )

    @classmethod
    def resolve(
        cls,
        privacy: str | None = None,
        min_cell_count: int | None = None,
        metadata: dict | None = None,
    ) -> PrivacyPolicy:
        """The run's policy: the stricter of the run's parameters and the cohort's metadata.

        The mode is strict when either the ``privacy`` parameter or the metadata's ``privacy`` says
        so; real data (metadata ``source`` other than ``"synthetic"``) without a ``privacy`` entry
        counts as strict. The threshold is the larger of the parameter and the metadata's
        ``min_cell_count``. Values are case-insensitive; an unknown mode or a threshold that is
        not a positive integer is an error naming where it came from.

        Examples
        --------
        >>> PrivacyPolicy.resolve("none", 11, {"privacy": "STRICT", "min_cell_count": 30})
        PrivacyPolicy(mode='strict', min_cell_count=30)
        """
        if metadata is not None and not isinstance(metadata, dict):
            raise ConfigurationError(
                f"The cohort's metadata.json must hold an object, not {type(metadata).__name__}."
            )
        metadata = metadata or {}
        modes = [normalise_privacy_mode(privacy or "none", source="parameter `privacy`")]
        if metadata.get("privacy") is not None:
            modes.append(
                normalise_privacy_mode(metadata["privacy"], source="the cohort's metadata.json")
            )
        elif str(metadata.get("source", "synthetic")).lower() != "synthetic":
            modes.append("strict")
        thresholds = [
            _threshold_from(
                DEFAULT_MIN_CELL_COUNT if min_cell_count is None else min_cell_count,
                "parameter `min_cell_count`",
            )
        ]
        if metadata.get("min_cell_count") is not None:
            thresholds.append(
                _threshold_from(metadata["min_cell_count"], "the cohort's metadata.json")
            )
        mode = max(modes, key=PRIVACY_MODES.index)
        return cls(mode=mode, min_cell_count=max(thresholds))

    @classmethod
    def from_metadata(cls, metadata: dict | None, override: str | None = None) -> PrivacyPolicy:
        """Policy for a cohort: ``override`` if given, else its metadata ``privacy`` (default none).

        Real data (metadata ``source`` other than ``synthetic``) defaults to strict when the metadata
        does not say. Prefer :meth:`resolve`, where the stricter setting wins.
        """
        metadata = metadata or {}
        mode = override or metadata.get("privacy")
        if mode is None:
            mode = "none" if metadata.get("source", "synthetic") == "synthetic" else "strict"
        threshold = metadata.get("min_cell_count", DEFAULT_MIN_CELL_COUNT)
        return cls(mode=mode, min_cell_count=_threshold_from(threshold, "metadata.json"))

    @property
    def strict(self) -> bool:
        """True in strict mode."""
        return self.mode == "strict"

    @property
    def allows_row_level(self) -> bool:
        """Whether row-level (per-subject) records may be printed or saved."""
        return not self.strict

    @property
    def threshold(self) -> int:
        """Effective threshold: ``min_cell_count`` in strict mode, 1 (show all) otherwise."""
        return self.min_cell_count if self.strict else 1

    def format_count(self, n: float | int | None, *, prefix: str = "") -> str:
        """:func:`format_count` under this policy."""
        return format_count(n, self.threshold, prefix=prefix)

    def suppress(
        self, df: pd.DataFrame, count_columns: Sequence[str], **kwargs
    ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
        """:func:`suppress_small_counts` under this policy (a copy unchanged in mode "none")."""
        if not self.strict:
            kwargs.pop("label", None)
            if kwargs.get("return_mask"):
                return df.copy(), pd.DataFrame(False, index=df.index, columns=list(count_columns))
            return df.copy()
        kwargs.setdefault("label", f"<{self.min_cell_count}")
        return suppress_small_counts(df, count_columns, self.min_cell_count, **kwargs)

    def apply(
        self,
        frame: pd.DataFrame,
        count_columns: Mapping[str, str | None] | Sequence[str],
        *,
        derived: Sequence[str] | None = None,
        keep: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Suppress the small counts of a long result table; a copy, unchanged in mode "none".

        ``count_columns`` maps each count column to its denominator column (or None), as a
        result's ``count_columns`` does; a list means no denominators.

        - A count with a denominator is hidden when it, its complement (denominator - count,
          which a reader gets by subtraction) or the denominator is below the threshold.
        - Counts without a denominator go through :func:`suppress_small_counts` with row margins
          when a row holds several of them (their sum can be published), else one by one.
        - In a row where any count is hidden, the statistics computed from it (``derived``; by
          default every floating-point column except ``keep`` and time/visit coordinates) are
          hidden too (missing), as are denominators below the threshold.

        Hidden counts read ``"<threshold"``. Counts already shown as text (``"<11"``) stay.
        """
        if not self.strict or frame.empty:
            return frame.copy()
        counts = dict(count_columns) if isinstance(count_columns, Mapping) else {
            c: None for c in count_columns
        }
        counts = {c: d for c, d in counts.items() if c in frame.columns}
        if not counts:
            return frame.copy()
        thr = self.min_cell_count
        label = f"<{thr}"
        out = frame.copy()
        numeric = {c: pd.to_numeric(frame[c], errors="coerce") for c in frame.columns
                   if c in counts or c in counts.values()}
        hidden = pd.DataFrame(False, index=frame.index, columns=list(counts))

        def small(x: pd.Series) -> pd.Series:
            return ((x >= 1) & (x < thr)).fillna(False)

        plain = [c for c, d in counts.items() if d is None or d not in frame.columns]
        if plain:
            grid = pd.DataFrame({c: numeric[c] for c in plain}).reset_index(drop=True)
            _, mask = suppress_small_counts(
                grid, plain, thr, margins="rows" if len(plain) > 1 else "none", return_mask=True
            )
            for c in plain:
                hidden[c] = mask[c].to_numpy()
        denominators_hidden = pd.Series(False, index=frame.index)
        for c, d in counts.items():
            if c in plain:
                continue
            k, n = numeric[c], numeric[d]
            total_small = small(n)
            hidden[c] = (small(k) | small(n - k) | total_small).to_numpy()
            denominators_hidden |= total_small
            if total_small.any():
                out[d] = [label if h else v for v, h in zip(out[d].astype(object), total_small,
                                                            strict=True)]
        for c in counts:
            out[c] = [label if h else v for v, h in zip(out[c].astype(object), hidden[c],
                                                        strict=True)]
        row_hidden = hidden.any(axis=1) | denominators_hidden
        if row_hidden.any():
            if derived is None:
                derived = [
                    c for c in frame.columns
                    if c not in counts and c not in counts.values() and c not in keep
                    and c not in _COORDINATE_COLUMNS
                    and pd.api.types.is_float_dtype(frame[c])
                ]
            for c in derived:
                if c in out.columns:
                    out[c] = out[c].astype(float).mask(row_hidden.to_numpy())
        return out

    def collapse_rare(self, series: pd.Series, **kwargs) -> pd.Series:
        """:func:`collapse_rare_categories` in strict mode; unchanged otherwise."""
        if not self.strict:
            return series
        return collapse_rare_categories(series, self.min_cell_count, **kwargs)

    def check_row_level(self, df: pd.DataFrame, *, what: str = "table") -> None:
        """Raise ConfigurationError if a per-subject table is about to be shown in strict mode."""
        if self.strict and "subject_id" in df.columns:
            raise ConfigurationError(
                f"privacy='strict': the {what} has a subject_id column, so it is row-level data and "
                "must not be printed or saved. Aggregate it first, or run with privacy 'none' on "
                "synthetic or public data."
            )
