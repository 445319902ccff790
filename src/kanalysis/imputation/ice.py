"""Intercurrent events (ICEs): the table that says, per subject, from which visit on the
outcome follows a strategy other than "as observed", and which strategy.

An ICE table has one row per subject with an ICE and three columns: the subject column, the
first affected visit (named as the ``subject`` / ``visit`` arguments of
:func:`kanalysis.imputation.draws`) and ``strategy``, one of ``MAR``, ``JR``, ``CR``, ``CIR``,
``LMCF`` or a strategy registered with :func:`kanalysis.imputation.register_strategy`.

:func:`ice_from_cohort` derives it from a kanalysis cohort: the dropout day and reason of each
subject (``subjects.dropout_day``, ``subjects.dropout_reason``) give the first scheduled visit
after dropout and a strategy by reason (:data:`DEFAULT_REASON_STRATEGY`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError

__all__ = ["DEFAULT_REASON_STRATEGY", "ice_from_cohort", "strategy_for_reason"]

#: Default strategy by dropout reason (ICH E9(R1) hypothetical / treatment-policy thinking as in
#: the reference-based literature): dropout for lack of efficacy or an adverse event is not
#: missing at random, and the patient is assumed to behave like the reference arm afterwards
#: (jump to reference); dropout unrelated to the treatment (lost to follow-up, withdrawn
#: consent) is taken as missing at random. Reasons not listed get ``other`` (JR by default,
#: the conservative choice).
DEFAULT_REASON_STRATEGY: dict[str, str] = {
    "lack of efficacy": "JR",
    "adverse event": "JR",
    "lost to follow-up": "MAR",
    "withdrew consent": "MAR",
}


def _norm(reason) -> str:
    return " ".join(str(reason).strip().lower().replace("_", " ").replace("-", " ").split())


def strategy_for_reason(reason, mapping: Mapping[str, str] | None = None,
                        other: str = "JR") -> str:
    """Strategy for one dropout reason; matching ignores case, ``_`` / ``-`` and spacing."""
    table = {_norm(k): v for k, v in (mapping or DEFAULT_REASON_STRATEGY).items()}
    table.setdefault("lost to followup", table.get("lost to follow up", "MAR"))
    return table.get(_norm(reason), other)


def ice_from_cohort(cohort, scale: str | None = None, *, mapping: Mapping[str, str] | None = None,
                    other: str = "JR", subject: str = "subject_id",
                    visit: str = "visit") -> pd.DataFrame:
    """The ICE table of a cohort: first scheduled visit after each dropout, strategy by reason.

    A visit's scheduled day is the median assessment day of that visit label; the first
    affected visit of a subject who dropped out on day ``d`` is the first visit (in visit
    order) whose scheduled day is after ``d``. Dropouts after the last visit have no ICE row.

    Parameters
    ----------
    cohort : kanalysis.Cohort
    scale : str, optional
        Scale of the assessments (default: the cohort's primary scale).
    mapping : dict, optional
        Reason -> strategy (default :data:`DEFAULT_REASON_STRATEGY`).
    other : str
        Strategy for reasons not in ``mapping`` (and missing reasons).
    subject, visit : str
        Column names of the returned table (match the ``draws`` arguments).

    Returns
    -------
    DataFrame with columns ``subject``, ``visit``, ``strategy``, ``reason``, ``dropout_day``.
    """
    subjects = cohort.subjects
    assess = cohort.assessments
    for col in ("subject_id", "dropout_day"):
        if col not in subjects.columns:
            raise DataValidationError(f"ice_from_cohort: table 'subjects' lacks the column {col!r}")
    scale = scale or cohort.primary_scale
    a = assess[assess["scale"] == scale]
    if a.empty:
        raise ConfigurationError(f"ice_from_cohort: no assessments on the scale {scale!r}")
    order_col = "visit_number" if "visit_number" in a.columns else "day"
    sched = (a.groupby("visit").agg(day=("day", "median"), order=(order_col, "median"))
             .sort_values(["order", "day"]))
    drop = subjects[subjects["dropout_day"].notna()]
    reasons = drop["dropout_reason"] if "dropout_reason" in drop.columns else \
        pd.Series(np.nan, index=drop.index)
    rows = []
    for sid, day, reason in zip(drop["subject_id"], drop["dropout_day"], reasons, strict=True):
        after = sched.index[sched["day"].to_numpy() > float(day)]
        if len(after) == 0:
            continue
        strategy = other if pd.isna(reason) else strategy_for_reason(reason, mapping, other)
        rows.append({subject: sid, visit: after[0], "strategy": strategy,
                     "reason": None if pd.isna(reason) else str(reason),
                     "dropout_day": float(day)})
    return pd.DataFrame(rows, columns=[subject, visit, "strategy", "reason", "dropout_day"])


def ice_arrays(ice: pd.DataFrame | None, subject: str, visit: str, subjects: pd.Index,
               visit_levels: list, known_strategies) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject ICE visit index (t = none) and strategy (``"MAR"`` when none).

    Checks the table: the columns, one row per subject, known subjects, visits and strategies.
    """
    n, t = len(subjects), len(visit_levels)
    k = np.full(n, t, dtype=np.int64)
    strat = np.full(n, "MAR", dtype=object)
    if ice is None or len(ice) == 0:
        return k, strat
    if not isinstance(ice, pd.DataFrame):
        raise ConfigurationError(f"draws: ice must be a DataFrame, got {type(ice)!r}")
    missing = [c for c in (subject, visit, "strategy") if c not in ice.columns]
    if missing:
        raise DataValidationError(
            f"draws: the ICE table lacks the column(s) {missing}; it needs {subject!r} (subject), "
            f"{visit!r} (first affected visit) and 'strategy'. Columns: {list(ice.columns)}")
    dup = ice[subject].duplicated(keep=False)
    if dup.any():
        raise DataValidationError(
            f"draws: the ICE table has more than one row for subject(s) "
            f"{sorted(map(str, ice.loc[dup, subject].unique()))[:10]} (rows "
            f"{list(ice.index[dup][:10])}); keep one row (the first ICE) per subject.")
    pos = pd.Index(subjects).get_indexer(ice[subject])
    if (pos < 0).any():
        bad = ice.index[pos < 0]
        raise DataValidationError(
            f"draws: the ICE table's {subject!r} values {list(ice.loc[bad, subject][:10])} (rows "
            f"{list(bad[:10])}) are not subjects of the data.")
    vmap = {v: i for i, v in enumerate(visit_levels)}
    vmap.update({str(v): i for i, v in enumerate(visit_levels)})
    vpos = ice[visit].map(lambda v: vmap.get(v, vmap.get(str(v), -1))).to_numpy()
    if (vpos < 0).any():
        bad = ice.index[vpos < 0]
        raise DataValidationError(
            f"draws: the ICE table's {visit!r} values {list(ice.loc[bad, visit][:10])} (rows "
            f"{list(bad[:10])}) are not visit levels of the data {list(visit_levels)}.")
    st = ice["strategy"].astype(str).str.strip().to_numpy()
    upper = {s.upper(): s for s in known_strategies}
    st = np.array([upper.get(s.upper(), s) for s in st], dtype=object)
    unknown = sorted(set(st) - set(known_strategies))
    if unknown:
        raise DataValidationError(
            f"draws: the ICE table's strategy value(s) {unknown} are not known strategies "
            f"{sorted(known_strategies)}; register new ones with register_strategy().")
    k[pos] = vpos
    strat[pos] = st
    return k, strat
