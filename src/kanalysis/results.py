"""The common result protocol: every analysis in kanalysis returns an object that speaks it.

A result has

- ``to_frame()``: a tidy DataFrame whose statistical columns use one vocabulary,
  :data:`RESULT_COLUMNS` (``estimate, std_error, df, statistic, p_value, ci_lower, ci_upper, n``),
  plus grouping columns (``arm``, ``visit``, ``term``, ...) and domain extras beside them (Cox
  adds ``hr, hr_lower, hr_upper`` to ``estimate`` = log HR), never instead of them;
- ``summary()``: printable text;
- ``key_numbers()``: a JSON-ready dict, what a notebook records in ``results.json``;
- ``count_columns``: which columns of ``to_frame()`` hold counts of people, each mapped to its
  denominator column (or None), so that privacy rules (small-cell suppression) can act on any
  result without knowing its type.

The confidence level is called ``conf_level`` (0.95) everywhere in the public API;
:func:`resolve_conf_level` accepts the older ``alpha`` / ``confidence`` spellings for one release
with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from kanalysis.errors import ConfigurationError

__all__ = ["RESULT_COLUMNS", "AnalysisResult", "SummaryText", "count_columns_of", "json_records",
           "resolve_conf_level",
           "with_count_columns"]

#: The shared statistical columns of every ``to_frame()``, in display order.
RESULT_COLUMNS = ("estimate", "std_error", "df", "statistic", "p_value", "ci_lower", "ci_upper",
                  "n")


class SummaryText(str):
    """Text that prints as itself in a notebook (no quotes, real line breaks)."""

    def __repr__(self) -> str:
        return str(self)


def resolve_conf_level(conf_level: float | None = None, *, alpha: float | None = None,
                       confidence: float | None = None, default: float = 0.95,
                       where: str = "kanalysis") -> float:
    """The confidence level from ``conf_level`` or its deprecated spellings.

    ``alpha`` is taken as the two-sided error rate (``conf_level = 1 - alpha``), ``confidence``
    as the level itself. Giving two of them that disagree is an error.
    """
    given = []
    if conf_level is not None:
        given.append(("conf_level", float(conf_level)))
    if alpha is not None:
        warnings.warn(f"{where}: 'alpha' is deprecated; use conf_level={1 - alpha:g}",
                      DeprecationWarning, stacklevel=3)
        given.append(("alpha", 1.0 - float(alpha)))
    if confidence is not None:
        warnings.warn(f"{where}: 'confidence' is deprecated; use conf_level={confidence:g}",
                      DeprecationWarning, stacklevel=3)
        given.append(("confidence", float(confidence)))
    if not given:
        return default
    for name, value in given:
        if not 0.0 < value < 1.0:
            raise ConfigurationError(
                f"{where}: {name} gives the confidence level {value:g}; conf_level must lie "
                "strictly between 0 and 1 (e.g. 0.95)")
    levels = {round(v, 12) for _, v in given}
    if len(levels) > 1:
        raise ConfigurationError(f"{where}: conflicting confidence levels {dict(given)}")
    level = given[0][1]
    if not 0.0 < level < 1.0:
        raise ConfigurationError(f"{where}: conf_level must lie strictly between 0 and 1, got {level}")
    return level


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as JSON-ready records: NaN as None, numpy scalars as Python ones."""
    out = []
    for rec in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        out.append({str(k): (v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes))
                             else v) for k, v in rec.items()})
    return out


class AnalysisResult:
    """Mixin giving an analysis result the common protocol.

    Subclasses implement :meth:`to_frame` and :meth:`summary`, and may override
    :meth:`key_numbers` (by default: the ``to_frame()`` rows as records) and set
    :attr:`count_columns`.
    """

    #: Columns of ``to_frame()`` that count people, mapped to their denominator column or None.
    count_columns: ClassVar[Mapping[str, str | None]] = {}

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - interface
        raise NotImplementedError

    def summary(self) -> SummaryText:  # pragma: no cover - interface
        raise NotImplementedError

    def key_numbers(self) -> dict[str, Any]:
        """JSON-ready numbers for ``results.json``: the ``to_frame()`` rows as records."""
        return {"table": json_records(self.to_frame())}

    def _repr_html_(self) -> str | None:
        try:
            return self.to_frame()._repr_html_()
        except NotImplementedError:  # pragma: no cover
            return None


def with_count_columns(frame: pd.DataFrame, count_columns: Mapping[str, str | None]
                       ) -> pd.DataFrame:
    """Mark the count columns of a result table (``frame.attrs["count_columns"]``) and return it.

    Functions that return a plain DataFrame (a table of rates, incidences, ...) use this so that
    privacy rules can act on the table as on any :class:`AnalysisResult`. Only columns present in
    ``frame`` are recorded.
    """
    frame.attrs["count_columns"] = {k: v for k, v in count_columns.items() if k in frame.columns}
    return frame


def count_columns_of(result: Any) -> dict[str, str | None]:
    """The count columns of a result object or a result table (see :func:`with_count_columns`)."""
    if isinstance(result, pd.DataFrame):
        return dict(result.attrs.get("count_columns", {}))
    return dict(getattr(result, "count_columns", {}) or {})
