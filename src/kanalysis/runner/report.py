"""The object notebooks use: :class:`NotebookReport` loads the cohort, applies the run's privacy
policy to everything it publishes, and writes figures, tables and key numbers into the run folder.

A notebook holds narrative, its parameters and calls::

    params, report, cohort = setup_notebook("02_symptom_trajectories", globals())
    shown = report.publish(result, "mmrm_lsmeans")      # suppress, save CSV + LaTeX, record
    report.save_figure(fig, "lsmeans")                  # save PDF/SVG/PNG and display it
    report.finish()                                     # results.json + the key numbers table

Privacy is resolved once, in :meth:`NotebookReport.load_cohort`, from the run's parameters and the
cohort's metadata.json (:meth:`kanalysis.privacy.PrivacyPolicy.resolve`: the stricter wins), and
:meth:`~NotebookReport.publish` applies it to every table, so a notebook cannot forget it.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.privacy import PrivacyPolicy
from kanalysis.runner.display import detect_count_columns, format_table, key_numbers_table
from kanalysis.runner.jsonio import to_jsonable, write_results_section
from kanalysis.runner.params import NotebookParameters, notebook_parameters, validate_parameters
from kanalysis.tables import write_table

__all__ = ["NotebookReport", "install_warning_format", "setup_notebook"]


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as ``Category: message``, without the file path of the code that raised it."""
    return f"{category.__name__}: {message}\n"


def install_warning_format() -> None:
    """Show warnings without file paths (paths name the machine and its user)."""
    warnings.formatwarning = _format_warning


class NotebookReport:
    """What a notebook needs to load its cohort and publish figures, tables and results.

    Parameters
    ----------
    name : str
        Notebook name; the section of ``results.json`` and the prefix of its files.
    params : NotebookParameters
        From :func:`validate_parameters`.

    Attributes
    ----------
    policy : kanalysis.privacy.PrivacyPolicy
        The run's privacy policy, the one place privacy is decided: from the parameters, made
        stricter by the cohort's metadata when :meth:`load_cohort` runs.
    """

    def __init__(self, name: str, params: NotebookParameters):
        self.name = name
        self.params = params
        self.output_dir = Path(params.output_dir)
        self.figures_dir = self.output_dir / "figures"
        self.tables_dir = self.output_dir / "tables"
        self.policy = PrivacyPolicy.resolve(params.privacy, params.min_cell_count)
        self.results: dict[str, Any] = {}
        self.cohort = None
        self.visit_order: list[str] = []
        self.n_figures = 0

    # --- privacy ---------------------------------------------------------------------------
    @property
    def privacy(self) -> str:
        """The privacy mode in force (``"none"`` or ``"strict"``)."""
        return self.policy.mode

    @property
    def strict(self) -> bool:
        return self.policy.strict

    @property
    def min_cell_count(self) -> int:
        """The small-cell threshold in force (parameter or cohort metadata, the larger)."""
        return self.policy.min_cell_count

    @property
    def min_count(self) -> int | None:
        """Threshold for figure annotations: ``min_cell_count`` in strict mode, else None."""
        return self.policy.min_cell_count if self.strict else None

    @property
    def conf_level(self) -> float:
        """Confidence level of intervals, ``1 - alpha``."""
        return 1.0 - self.params.alpha

    def privacy_options(self, func: Callable) -> dict[str, Any]:
        """The privacy keywords ``func`` accepts (``privacy``, ``min_cell_count``, ``min_count``,
        ``policy``), set from the policy."""
        accepted = inspect.signature(func).parameters
        options = {
            "policy": self.policy,
            "privacy": self.privacy,
            "min_cell_count": self.min_cell_count,
            "min_count": self.min_count,
        }
        return {k: v for k, v in options.items() if k in accepted}

    def apply(self, func: Callable, *args: Any, **kwargs: Any) -> Any:
        """Call ``func`` with the policy's privacy keywords added (see :meth:`privacy_options`)."""
        for key, value in self.privacy_options(func).items():
            kwargs.setdefault(key, value)
        return func(*args, **kwargs)

    # --- the cohort ------------------------------------------------------------------------
    def load_cohort(self):
        """Load (and validate) the cohort; resolve the privacy policy with its metadata."""
        from kanalysis import load_cohort

        self.cohort = load_cohort(self.params.cohort_path)
        self.policy = PrivacyPolicy.resolve(
            self.params.privacy, self.params.min_cell_count, self.cohort.metadata
        )
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
        assessments = self.cohort.assessments
        if {"visit", "visit_number"} <= set(assessments.columns):
            self.visit_order = (
                assessments.sort_values("visit_number")["visit"].astype(str).drop_duplicates()
            ).tolist()
        self.results["privacy"] = self.privacy
        self.results["min_cell_count"] = self.min_cell_count
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

    # --- publishing ------------------------------------------------------------------------
    def in_visit_order(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows sorted by visit in the cohort's visit order (stable), when there is a visit column."""
        if "visit" not in frame.columns or not self.visit_order:
            return frame
        rank = {v: i for i, v in enumerate(self.visit_order)}
        key = frame["visit"].astype(str).map(rank)
        if key.isna().all():
            return frame
        order = key.fillna(len(rank)).reset_index(drop=True).sort_values(kind="stable").index
        return frame.iloc[order.to_numpy()].reset_index(drop=True)

    def suppressed(
        self,
        result: Any,
        *,
        count_columns: Mapping[str, str | None] | Sequence[str] | None = None,
        derived: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The table of ``result`` (a result object or a DataFrame) with small cells suppressed.

        Counts are ``count_columns`` (each with its denominator), else the result's
        ``count_columns``; columns that look like counts
        (:func:`kanalysis.runner.display.detect_count_columns`) are always added, so a count
        nobody declared is still protected.
        """
        frame = result.to_frame() if hasattr(result, "to_frame") else result
        if not isinstance(frame, pd.DataFrame):
            raise ConfigurationError(
                f"publish: expected a result object (with to_frame()) or a DataFrame, got "
                f"{type(result).__name__}."
            )
        if count_columns is None:
            counts = dict(getattr(result, "count_columns", None) or {})
        elif isinstance(count_columns, Mapping):
            counts = dict(count_columns)
        else:
            counts = {c: None for c in count_columns}
        for column in detect_count_columns(frame):
            # Columns that look like counts are protected too, even when not declared.
            if column not in counts.values():
                counts.setdefault(column, None)
        frame = self.in_visit_order(frame)
        return self.policy.apply(frame, counts, derived=derived)

    def publish(
        self,
        result: Any,
        name: str,
        *,
        count_columns: Mapping[str, str | None] | Sequence[str] | None = None,
        derived: Sequence[str] | None = None,
        record: bool | str = True,
        caption: str | None = None,
        label: str | None = None,
        show: bool = True,
    ) -> pd.DataFrame:
        """Suppress small cells, save ``tables/<notebook>_<name>.csv`` and ``.tex``, record the key
        numbers, display the table formatted for reading, and return it.

        Parameters
        ----------
        result : result object or DataFrame
            Anything with ``to_frame()`` (and optionally ``count_columns``, ``key_numbers()``), or
            a table.
        name : str
            File stem and key in this notebook's ``results.json`` section.
        count_columns, derived : optional
            Override which columns are counts (with denominators) and which are computed from
            them (see :meth:`kanalysis.privacy.PrivacyPolicy.apply`).
        record : bool or str
            Record ``result.key_numbers()`` (a result object) under ``name`` (or the given key).
            Under strict privacy the recorded numbers are those of the suppressed table.
        caption, label : str, optional
            For the LaTeX table.
        show : bool
            Display the formatted table in the notebook.

        Returns
        -------
        pandas.DataFrame
            The suppressed table formatted as text (see
            :func:`kanalysis.runner.display.format_table`); the files keep full precision.
        """
        table = self.suppressed(result, count_columns=count_columns, derived=derived)
        write_table(table, self.tables_dir / f"{self.name}_{name}", caption=caption, label=label)
        if record and hasattr(result, "key_numbers"):
            key = record if isinstance(record, str) else name
            if self.strict:
                self.results[key] = {"table": to_jsonable(table)}
            else:
                self.results[key] = result.key_numbers()
        counts = [c for c in table.columns if c in detect_count_columns(table)]
        if count_columns is not None:
            counts += list(count_columns)
        shown = format_table(table, count_columns=counts)
        if show:
            _display(shown)
            return _displayed(shown)
        return shown

    def save_table(self, table: Any, name: str, **kwargs: Any) -> list[Path]:
        """Save ``tables/<notebook>_<name>.csv`` and ``.tex`` under the privacy policy, without
        displaying or recording (prefer :meth:`publish`)."""
        suppressed = self.suppressed(table)
        return write_table(suppressed, self.tables_dir / f"{self.name}_{name}", **kwargs)

    def show(self, table: pd.DataFrame) -> pd.DataFrame:
        """Display a table (suppressed under strict privacy) formatted for reading, unsaved."""
        shown = format_table(self.suppressed(table))
        _display(shown)
        return _displayed(shown)

    def save_figure(self, fig, name: str, *, show: bool = True, **kwargs: Any) -> SavedFiles:
        """Save ``fig`` as ``figures/<notebook>_<name>.<fmt>``, display it here, and close it."""
        import matplotlib.pyplot as plt

        from kanalysis.plots.style import save_figure

        paths = save_figure(
            fig,
            self.figures_dir / f"{self.name}_{name}",
            formats=self.params.figure_formats,
            **kwargs,
        )
        self.n_figures += 1
        if show:
            _display_figure(fig)
        plt.close(fig)
        return SavedFiles(paths)

    def record(self, **values: Any) -> None:
        """Add key numbers to this notebook's section of ``results.json`` (written by ``write``).

        Under strict privacy, counts (keys named like counts: ``n``, ``n_*``, ...) below the
        threshold are recorded as ``"<threshold"``.
        """
        if self.strict:
            values = {k: _suppress_counts(v, k, self.policy) for k, v in values.items()}
        self.results.update(values)

    def write(self) -> Path:
        """Write this notebook's section of ``results.json``."""
        return write_results_section(self.output_dir, self.name, self.results)

    def key_numbers(self) -> pd.DataFrame:
        """This notebook's key numbers as a table to read."""
        return key_numbers_table(to_jsonable(self.results))

    def finish(self) -> pd.DataFrame:
        """Write ``results.json`` and display the key numbers as a table."""
        self.write()
        table = self.key_numbers().set_index("quantity")
        _display(table)
        return _displayed(table)

    def count(self, n: int | float) -> int | str:
        """A count for results or annotations: as is, or ``"<min_cell_count"`` when small in strict
        mode (:func:`kanalysis.privacy.format_count`)."""
        if not self.strict:
            return int(n)
        return self.policy.format_count(n)

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


def _suppress_counts(value: Any, key: str, policy: PrivacyPolicy) -> Any:
    """``value`` with every count (under a key named like a count) below the threshold hidden."""
    from kanalysis.runner.display import COUNT_COLUMN_PATTERN

    if isinstance(value, Mapping):
        return {
            k: _suppress_counts(v, str(k) if COUNT_COLUMN_PATTERN.search(str(k)) else key, policy)
            for k, v in value.items()
        }
    if isinstance(value, pd.DataFrame):
        return policy.apply(value, detect_count_columns(value))
    if isinstance(value, (list, tuple)):
        return [_suppress_counts(v, key, policy) for v in value]
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if is_number and COUNT_COLUMN_PATTERN.search(key) and 0 < value < policy.min_cell_count:
        return policy.format_count(value)
    return value


class DisplayedTable(pd.DataFrame):
    """A table that has been displayed already: as a cell's last value it is not shown twice.

    Any operation on it gives a plain DataFrame.
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    def _ipython_display_(self) -> None:
        """Shown where it was made; nothing more to display."""


class SavedFiles(list):
    """The paths a figure was saved to (displayed already, so not shown again as a value)."""

    def _ipython_display_(self) -> None:
        """The figure itself was displayed where it was saved."""


def _displayed(table: pd.DataFrame) -> pd.DataFrame:
    return DisplayedTable(table)


def _display_figure(fig) -> None:
    """Display a matplotlib figure as a PNG image, whatever the backend (papermill runs the
    kernel without the inline backend's formatters, JupyterLab with them)."""
    import io

    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover
        return
    if get_ipython() is None:
        return
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=144, bbox_inches="tight")
    width = int(round(fig.get_figwidth() * 96))
    display(Image(data=buffer.getvalue(), format="png", width=width))


def _display(obj: Any) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks
        return
    if get_ipython() is not None:
        display(obj)


def setup_notebook(
    name: str, namespace: Mapping[str, Any]
) -> tuple[NotebookParameters, NotebookReport, Any]:
    """The setup cell of every notebook: validate its parameters, load the cohort, set the style.

    Checks the common parameters found in ``namespace`` (the notebook's ``globals()``), makes a
    :class:`NotebookReport`, loads and validates the cohort (which settles the privacy policy),
    switches on the report figure style, shows warnings without file paths, and prints the cohort
    with the scale and privacy in force.

    Returns
    -------
    (NotebookParameters, NotebookReport, kanalysis.Cohort)
    """
    from kanalysis.plots.style import use_style

    install_warning_format()
    params = notebook_parameters(namespace)
    report = NotebookReport(name, params)
    cohort = report.load_cohort()
    use_style()
    print(cohort)
    where = _shown_path(params.cohort_path)
    print(
        f"cohort: {where}; scale: {report.scale}; privacy: {report.privacy} "
        f"(smallest count shown: {report.min_cell_count if report.strict else 1})"
    )
    return params, report, cohort


def _shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository root or the working directory, else its name."""
    from kanalysis.runner.params import project_root

    p = Path(path).resolve()
    for base in (project_root(), Path.cwd()):
        try:
            return p.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return p.name
