"""The import and validation report, as markdown or HTML.

The report lists every problem (errors first, then warnings: unusual but legal values), the files read
with their SHA-256, every column kept and where it came from, every column dropped and why (identifiers
included), row counts and conversions. It never shows the values of dropped columns or calendar dates,
so it can be shared with the cohort.
"""

from __future__ import annotations

import html

import pandas as pd

__all__ = ["import_report_html", "import_report_markdown"]

_ROWS_NOTE = (
    "Rows are 0-based data rows: in an input file, line (CSV) or sheet row (Excel) = row + 2, "
    "since the header is line 1; for a cohort table (subjects, assessments, ...), positions in the "
    "imported table; for an ADaM dataset, record positions."
)


_IDS_NOTE = (
    "Subject ids in cohort tables are pseudonyms (P0001, ...); `kanalysis import --id-key FILE` "
    "writes the key to your original ids."
)


def _md_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "_none_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = ["" if (v is None or (isinstance(v, float) and pd.isna(v))) else str(v) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _sections(result) -> list[tuple[str, pd.DataFrame | str]]:
    report, log = result.report, result.log
    problem_cols = ["table", "column", "rows", "rule", "values"]
    errors = report.errors[problem_cols] if not report.errors.empty else report.errors
    warnings = report.warnings[problem_cols] if not report.warnings.empty else report.warnings
    files = log.frame("files").drop(columns="path", errors="ignore")  # no machine paths in reports
    if not files.empty:
        files = files.assign(sha256=files["sha256"].map(lambda h: h if h is None else h[:16] + "..."))
    notes = "\n".join(f"- {n}" for n in dict.fromkeys(log.notes)) or "_none_"
    return [
        ("Errors", errors),
        ("Warnings (unusual but legal)", warnings),
        ("Files read (never modified)", files),
        ("Columns dropped and why", log.frame("dropped")),
        ("Columns kept", log.frame("kept")),
        ("Rows", log.frame("row_counts")),
        ("Conversions and notes", notes),
    ]


def _status(result) -> str:
    n_err, n_warn = len(result.report.errors), len(result.report.warnings)
    if result.cohort is None:
        state = "FAILED: no cohort could be built"
    elif n_err:
        state = "FAILED: errors remain, the cohort folder is not written"
    else:
        state = "OK: the cohort is valid"
    return f"{state} ({n_err} error(s), {n_warn} warning(s))"


def import_report_markdown(result) -> str:
    """The import report of an :class:`~kanalysis.importers.ImportResult` as markdown."""
    meta = result.cohort.metadata if result.cohort is not None else {}
    lines = [
        f"# Import report: {meta.get('name', result.log.source)}",
        "",
        f"- Source: {result.log.source}",
        f"- Status: {_status(result)}",
        f"- Privacy: strict (counts below {meta.get('min_cell_count', 11)} are suppressed in outputs; "
        "identifier-like columns dropped; dates replaced by study days)",
    ]
    if result.cohort is not None:
        counts = ", ".join(f"{n}: {len(t)} rows" for n, t in result.cohort.tables.items())
        lines.append(f"- Tables: {counts}")
    lines += ["", _ROWS_NOTE]
    if result.id_key is not None:
        lines += ["", _IDS_NOTE]
    lines.append("")
    for title, body in _sections(result):
        lines += [f"## {title}", ""]
        lines.append(body if isinstance(body, str) else _md_table(body))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def import_report_html(result) -> str:
    """The import report as a standalone HTML page (all text escaped)."""
    meta = result.cohort.metadata if result.cohort is not None else {}
    title = html.escape(f"Import report: {meta.get('name', result.log.source)}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;"
        "text-align:left;vertical-align:top}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>Source: {html.escape(result.log.source)}<br>Status: {html.escape(_status(result))}</p>",
        f"<p>{html.escape(_ROWS_NOTE)}</p>",
    ]
    if result.id_key is not None:
        parts.append(f"<p>{html.escape(_IDS_NOTE)}</p>")
    for heading, body in _sections(result):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, str):
            items = [line[2:] for line in body.splitlines() if line.startswith("- ")]
            parts.append(
                "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
                if items else "<p><em>none</em></p>"
            )
        elif body is None or body.empty:
            parts.append("<p><em>none</em></p>")
        else:
            parts.append(body.fillna("").astype(str).to_html(index=False, escape=True, border=0))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
