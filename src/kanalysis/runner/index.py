"""``index.html``: the page of a run that a collaborator opens first.

It shows the cohort, the parameters, the key numbers of every notebook, and links to each
notebook's HTML report, the figures, the tables and the manifest. Every link is relative to the run
folder, so the folder can be zipped, moved or served as it is.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kanalysis._io import atomic_write_text
from kanalysis.runner.display import key_numbers_table

__all__ = ["write_index"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .92rem; }
th, td { padding: .2rem .7rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-completed { color: #1a7f37; } .status-failed { color: #cf222e; font-weight: bold; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures figure { margin: 0; width: 16rem; } .figures img { width: 100%; border: 1px solid #eee; }
.figures figcaption { font-size: .85rem; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _rows(pairs: Sequence[tuple[Any, Any]]) -> str:
    body = "".join(
        f"<tr><th>{_e(k)}</th><td class=\"{'num' if _numeric(v) else ''}\">{_e(v)}</td></tr>"
        for k, v in pairs
    )
    return f"<table>{body}</table>"


def _numeric(value: Any) -> bool:
    try:
        float(str(value).lstrip("<"))
    except ValueError:
        return False
    return True


def _cohort_rows(run_dir: Path, parameters: Mapping[str, Any], results: Mapping[str, Any]):
    rows: list[tuple[str, Any]] = [("cohort", parameters.get("cohort_path", "(notebook defaults)"))]
    for section in results.values():
        if isinstance(section, Mapping) and "n_subjects" in section:
            rows.append(("subjects", section["n_subjects"]))
            if isinstance(section.get("n_by_arm"), Mapping):
                rows.append(("by arm", ", ".join(f"{a}: {n}" for a, n in
                                                 section["n_by_arm"].items())))
            break
    for section in results.values():
        if isinstance(section, Mapping) and "privacy" in section:
            rows.append(("scale", section.get("scale")))
            threshold = section.get("min_cell_count")
            privacy = section["privacy"]
            if privacy == "strict" and threshold is not None:
                privacy = f"strict (counts below {threshold} suppressed)"
            rows.append(("privacy", privacy))
            break
    return rows


def write_index(
    run_dir: Path,
    *,
    run_id: str,
    records: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    results: Mapping[str, Any],
    ok: bool,
) -> Path:
    """Write ``run_dir/index.html`` and return its path."""
    run_dir = Path(run_dir)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>kanalysis run {_e(run_id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>kanalysis run <code>{_e(run_id)}</code></h1>",
        f"<p>Status: <span class=\"status-{'completed' if ok else 'failed'}\">"
        f"{'completed' if ok else 'failed'}</span>. The executed notebooks, figures, tables and "
        "the <a href=\"manifest.json\">manifest</a> (parameters, sha256 of inputs and outputs, "
        "package versions, git commit) are in this folder; "
        "<a href=\"results.json\">results.json</a> holds the key numbers below.</p>",
        "<h2>Cohort</h2>",
        _rows(_cohort_rows(run_dir, parameters, results)),
        "<h2>Notebooks</h2>",
    ]
    nb_rows = []
    for record in records:
        link = record.get("html")
        name = _e(record["name"])
        title = f'<a href="{_e(link)}">{name}</a>' if link else name
        status = record.get("status", "")
        error = record.get("error") or {}
        note = f" ({_e(error.get('ename'))}: {_e(error.get('evalue'))})" if error else ""
        nb_rows.append(
            f"<tr><td>{title}</td><td class=\"status-{_e(status)}\">{_e(status)}{note}</td>"
            f"<td class=\"num\">{record.get('duration_s', 0):.0f} s</td>"
            f"<td><a href=\"{_e(record.get('executed', ''))}\">.ipynb</a></td></tr>"
        )
    parts.append(
        "<table><tr><th>notebook</th><th>status</th><th>time</th><th>executed</th></tr>"
        + "".join(nb_rows)
        + "</table>"
    )
    parts.append("<h2>Parameters</h2>")
    shown = [(k, v) for k, v in sorted(parameters.items()) if k != "output_dir"]
    parts.append(_rows(shown or [("(the notebooks' defaults)", "")]))
    parts.append("<h2>Key numbers</h2>")
    for record in records:
        name = record["name"]
        section = results.get(name, results.get(name.split("_", 1)[-1]))
        if not isinstance(section, Mapping) or not section:
            continue
        table = key_numbers_table(section)
        parts.append(f"<h3>{_e(record['name'])}</h3>")
        parts.append(_rows(list(zip(table["quantity"], table["value"], strict=True))))
    figures = sorted((run_dir / "figures").rglob("*.png")) if (run_dir / "figures").is_dir() else []
    if figures:
        parts.append("<h2>Figures</h2><div class=\"figures\">")
        for png in figures:
            rel = png.relative_to(run_dir).as_posix()
            others = [
                f'<a href="{_e(p.relative_to(run_dir).as_posix())}">{p.suffix[1:]}</a>'
                for p in sorted(png.parent.glob(f"{png.stem}.*"))
                if p.suffix != ".png"
            ]
            parts.append(
                f'<figure><a href="{_e(rel)}"><img src="{_e(rel)}" alt="{_e(png.stem)}"></a>'
                f"<figcaption>{_e(png.stem)} {' '.join(others)}</figcaption></figure>"
            )
        parts.append("</div>")
    tables = sorted((run_dir / "tables").glob("*.csv")) if (run_dir / "tables").is_dir() else []
    if tables:
        parts.append("<h2>Tables</h2><table>")
        for csv in tables:
            rel = csv.relative_to(run_dir).as_posix()
            tex = csv.with_suffix(".tex")
            tex_link = (
                f' <a href="{_e(tex.relative_to(run_dir).as_posix())}">LaTeX</a>'
                if tex.exists()
                else ""
            )
            parts.append(f'<tr><td>{_e(csv.stem)}</td><td><a href="{_e(rel)}">CSV</a>{tex_link}'
                         "</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return atomic_write_text(run_dir / "index.html", "\n".join(parts) + "\n")

