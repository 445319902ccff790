"""Importers for real cohort data: clinic exports (through a mapping file) and CDISC ADaM datasets.

Both return an :class:`ImportResult` holding the cohort (study days, identifiers removed, privacy
``strict``), every problem found (import problems and data-model problems in one
:class:`~kanalysis.validation.ValidationReport`) and a log of what was read, kept and dropped.
``result.save(folder)`` writes a cohort folder that ``kanalysis validate`` accepts, with the import
report beside the tables. Input files are only read, never changed.
"""

from kanalysis.importers._common import ImportLog, ImportResult, file_sha256
from kanalysis.importers.adam import import_adam
from kanalysis.importers.clinic import import_clinic, load_mapping
from kanalysis.importers.report import import_report_html, import_report_markdown

__all__ = [
    "ImportLog",
    "ImportResult",
    "file_sha256",
    "import_adam",
    "import_clinic",
    "import_report_html",
    "import_report_markdown",
    "load_mapping",
]
