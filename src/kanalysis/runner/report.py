"""The object notebooks use: :class:`NotebookReport` loads the cohort and writes figures, tables
and key numbers into the run folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.runner.jsonio import write_results_section
from kanalysis.runner.params import NotebookParameters, validate_parameters
from kanalysis.tables import write_table


class NotebookReport:
    """What a notebook needs to load its cohort and write figures, tables and results.

    Parameters
    ----------
    name : str
        Notebook name; the section of ``results.json`` and the prefix of its files.
    params : NotebookParameters
        From :func:`validate_parameters`.

    Notes
    -----
    The privacy mode in force is the stricter of the ``privacy`` parameter and the cohort's
    ``metadata["privacy"]``: real data imported as ``strict`` stays strict even when a notebook is
    run with the default ``privacy="none"``.
    """

    def __init__(self, name: str, params: NotebookParameters):
        self.name = name
        self.params = params
        self.output_dir = Path(params.output_dir)
        self.figures_dir = self.output_dir / "figures"
        self.tables_dir = self.output_dir / "tables"
        self.privacy = params.privacy
        self.results: dict[str, Any] = {}
        self.cohort = None

    @property
    def strict(self) -> bool:
        return self.privacy == "strict"

    def load_cohort(self):
        """Load (and validate) the cohort; escalate to strict privacy if its metadata asks."""
        from kanalysis import load_cohort

        self.cohort = load_cohort(self.params.cohort_path)
        if (self.cohort.metadata or {}).get("privacy") == "strict":
            self.privacy = "strict"
        if self.params.scale is None:
            # Thresholds could not be range-checked before the cohort named its primary scale.
            p = self.params
            validate_parameters(
                cohort_path=p.cohort_path,
                scale=self.cohort.primary_scale,
                remission_threshold=p.remission_threshold,
                relapse_threshold=p.relapse_threshold,
                check_paths=False,
            )
        self.results["privacy"] = self.privacy
        self.results["scale"] = self.scale
        return self.cohort

    @property
    def scale(self) -> str:
        """The outcome scale: the parameter, else the cohort's primary scale."""
        if self.params.scale is not None:
            return self.params.scale
        if self.cohort is None:
            raise ConfigurationError("Call load_cohort() before asking for the cohort's scale.")
        return self.cohort.primary_scale

    def save_figure(self, fig, name: str, **kwargs: Any) -> list[Path]:
        """Save ``fig`` as ``figures/<notebook>_<name>.<fmt>`` in the requested formats."""
        from kanalysis.plots.style import save_figure

        return save_figure(
            fig,
            self.figures_dir / f"{self.name}_{name}",
            formats=self.params.figure_formats,
            **kwargs,
        )

    def save_table(self, table: pd.DataFrame, name: str, **kwargs: Any) -> list[Path]:
        """Save ``table`` as ``tables/<notebook>_<name>.csv`` and ``.tex``."""
        return write_table(table, self.tables_dir / f"{self.name}_{name}", **kwargs)

    def record(self, **values: Any) -> None:
        """Add key numbers to this notebook's section of ``results.json`` (written by ``write``)."""
        self.results.update(values)

    def write(self) -> Path:
        """Write this notebook's section of ``results.json``."""
        return write_results_section(self.output_dir, self.name, self.results)

    def count(self, n: int | float) -> int | str:
        """A count for results or annotations: as is, or ``"<min_cell_count"`` when small in strict
        mode (:func:`kanalysis.privacy.format_count`)."""
        if not self.strict:
            return int(n)
        from kanalysis.privacy import format_count

        return format_count(n, self.params.min_cell_count)

    def display_table(self, table: pd.DataFrame, id_columns: Sequence[str] = ("subject_id",)):
        """Return ``table`` for display, refusing row-level records in strict mode.

        A table holding a subject identifier column is row-level data; in strict mode it is
        replaced by its shape so that nothing identifying reaches the executed notebook.
        """
        if self.strict and any(c in table.columns for c in id_columns):
            return pd.DataFrame(
                {
                    "rows": [len(table)],
                    "columns": [table.shape[1]],
                    "note": ["row-level records are not shown (privacy='strict')"],
                }
            )
        return table

