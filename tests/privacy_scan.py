"""A scanner for the strict-privacy tests: every small count or subject id a run folder shows."""

from __future__ import annotations

import html.parser
import json
import re
from pathlib import Path

SUBJECT_ID = re.compile(r"\bS\d{4}\b")
_N_EQUALS = re.compile(r"\bn\s*=\s*(\d+)\b")
_N_PERCENT = re.compile(r"^\s*(\d+)\s*\(\s*\d+(\.\d+)?\s*%?\)")


class _Tables(html.parser.HTMLParser):
    """The tables of an HTML page as lists of rows (header first)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _small(value, threshold) -> bool:
    try:
        v = float(str(value).replace(",", ""))
    except ValueError:
        m = _N_PERCENT.match(str(value))
        return bool(m) and 1 <= int(m.group(1)) < threshold
    return 1 <= v < threshold and v == int(v)


def _small_counts_in_rows(header, rows, threshold, where) -> list[str]:
    from kanalysis.runner.display import COUNT_COLUMN_PATTERN

    leaks = []
    for j, column in enumerate(header):
        counts = bool(COUNT_COLUMN_PATTERN.search(str(column).strip()))
        for row in rows:
            if j >= len(row):
                continue
            cell = row[j]
            if (counts and _small(cell, threshold)) or (
                isinstance(cell, str) and _N_PERCENT.match(cell) and _small(cell, threshold)
            ):
                leaks.append(f"{where}: {column}={cell}")
    return leaks


#: Notebooks that read no patient data (07 simulates trials): their outputs are not scanned.
NO_PATIENT_DATA = ("07_power",)


def scan_small_counts(
    run_dir: Path, threshold: int, exclude: tuple[str, ...] = NO_PATIENT_DATA
) -> list[str]:
    """Every count below ``threshold`` that a strict run shows: in table count columns (CSV and
    the HTML tables), ``n (%)`` cells, ``n = k`` labels of figures (SVG text) and pages, count
    keys of results.json, and subject identifiers anywhere."""
    import csv

    from kanalysis.runner.display import COUNT_COLUMN_PATTERN

    leaks = []

    def skipped(path: Path) -> bool:
        return any(path.name.startswith(name) for name in exclude)

    for path in sorted(p for p in run_dir.rglob("*.csv") if not skipped(p)):
        rows = list(csv.reader(path.open()))
        if rows:
            leaks += _small_counts_in_rows(rows[0], rows[1:], threshold, path.name)
    for path in sorted(p for p in run_dir.rglob("*.html") if not skipped(p)):
        parser = _Tables()
        parser.feed(path.read_text())
        for table in parser.tables:
            if table:
                leaks += _small_counts_in_rows(table[0], table[1:], threshold, path.name)
    for path in sorted(p for p in run_dir.rglob("*.svg") if not skipped(p)):
        text = " ".join(re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(), flags=re.S))
        leaks += [f"{path.name}: n = {k}" for k in _N_EQUALS.findall(text) if _small(k, threshold)]

    def walk(value, key, where):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k if COUNT_COLUMN_PATTERN.search(str(k)) else key, where)
        elif isinstance(value, list):
            for v in value:
                walk(v, key, where)
        elif COUNT_COLUMN_PATTERN.search(str(key)) and isinstance(value, (int, float)):
            if not isinstance(value, bool) and _small(value, threshold):
                leaks.append(f"{where}: {key}={value}")

    results = json.loads((run_dir / "results.json").read_text())
    for name, section in results.items():
        if isinstance(section, dict) and name not in exclude:
            for k, v in section.items():
                if k not in ("min_cell_count",):
                    walk(v, k, f"results.json/{name}")
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in {".ipynb", ".html", ".csv", ".tex", ".json", ".svg"}:
            if SUBJECT_ID.search(re.sub(r"[A-Za-z0-9+/=]{200,}", "", path.read_text())):
                leaks.append(f"{path.name}: a subject id")
    return sorted(set(leaks))
