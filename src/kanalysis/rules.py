"""One helper per shared clinical or reporting rule, so that every module applies the same one.

Each rule here used to be written in several modules, with answers that had drifted apart. Import
from here; never copy a rule into a module.

- :func:`control_arm` / :func:`is_control_arm`: which arm is the control (the reference of
  hazard ratios, RMST and risk differences, and the arm drawn in black).
- :func:`baseline_scores`: the baseline score, the last non-missing score on or before the first
  infusion, scale matched case-insensitively.
- :func:`default_scale`: the scale used when none is named: the cohort's ``primary_scale``
  metadata, else the most frequent scale of the assessments.
- :func:`last_induction_day`: the day of each subject's last induction infusion.
- :func:`km_median`: the Kaplan-Meier median with R's convention (``survival:::findq``).
- :data:`RELAPSE_RULES`, :func:`parse_relapse_rule`: the relapse rules, their names, aliases
  and the separators of combinations (``"b+c"``, ``"b|c"``, ``"b,c"``).
- :data:`DEFAULT_MIN_CELL_COUNT`: the small-cell threshold (11) used when the policy names none.

The covariance-structure names live in :data:`kanalysis.models.covariance.STRUCTURES`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, DataValidationError

__all__ = [
    "CONFIRMATION_DAYS",
    "CONTROL_ARM_NAMES",
    "DEFAULT_MIN_CELL_COUNT",
    "RELAPSE_RULES",
    "RELAPSE_RULE_ALIASES",
    "RELAPSE_RULE_NAMES",
    "baseline_scores",
    "control_arm",
    "default_scale",
    "is_control_arm",
    "km_median",
    "last_induction_day",
    "parse_relapse_rule",
    "reference_level",
]

#: Smallest count shown when privacy is strict, unless the policy or the cohort names another
#: (the usual small-cell rule of registries and CMS: counts 1-10 are suppressed).
DEFAULT_MIN_CELL_COUNT = 11


# --------------------------------------------------------------------------------------------
# control arm
# --------------------------------------------------------------------------------------------
#: Names that mark a control arm, in priority order (case-insensitive; an arm matches a name when
#: it contains it, e.g. ``"placebo_iv"``). When several arms match, the arm matching the earliest
#: name wins, then the first in sorted order: the choice never depends on row order.
CONTROL_ARM_NAMES: tuple[str, ...] = ("no_maintenance", "placebo", "midazolam", "saline",
                                      "control")


def _control_rank(arm: Any) -> int | None:
    low = str(arm).lower()
    for rank, name in enumerate(CONTROL_ARM_NAMES):
        if name in low:
            return rank
    return None


def is_control_arm(arm: Any) -> bool:
    """Whether ``arm`` is named like a control arm (see :data:`CONTROL_ARM_NAMES`)."""
    if arm is None or (isinstance(arm, float) and math.isnan(arm)):
        return False
    return _control_rank(arm) is not None


def control_arm(arms: Iterable[Any]) -> Any | None:
    """The control arm among ``arms``, or None when no arm is named like one.

    Among the arms that match :data:`CONTROL_ARM_NAMES`, the one matching the earliest name
    (``no_maintenance``, then ``placebo``, ``midazolam``, ``saline``, ``control``), ties broken by
    sorted order.

    Examples
    --------
    >>> control_arm(["ketamine", "midazolam"])
    'midazolam'
    >>> control_arm(["midazolam", "no_maintenance", "maintenance"])
    'no_maintenance'
    >>> control_arm(["ketamine"]) is None
    True
    """
    ranked = [(_control_rank(a), str(a), a) for a in set(arms) if is_control_arm(a)]
    if not ranked:
        return None
    return min(ranked, key=lambda r: (r[0], r[1]))[2]


def reference_level(levels: Sequence[Any]) -> Any:
    """The reference level of a comparison: the control arm, else the first level given.

    ``levels`` should be in the order the analysis uses (sorted, as R's factors).
    """
    levels = list(levels)
    if not levels:
        raise DataValidationError("No group levels: a comparison needs at least one group.")
    found = control_arm(levels)
    return found if found is not None else levels[0]


# --------------------------------------------------------------------------------------------
# scale and baseline
# --------------------------------------------------------------------------------------------
def _assessments_of(data) -> pd.DataFrame | None:
    if isinstance(data, pd.DataFrame):
        return data
    return getattr(data, "assessments", None)


def default_scale(data, scale: Any = None) -> str:
    """The scale name to analyse: ``scale`` when given, else the cohort's primary scale.

    The primary scale is the cohort metadata's ``primary_scale``; without it, the most frequent
    scale among the assessments (ties: the first in sorted order).

    Parameters
    ----------
    data : Cohort or pandas.DataFrame
        A cohort (``metadata``, ``assessments``), or an assessments table.
    scale : str or Scale, optional
        An explicit choice, returned as its name.
    """
    if scale is not None:
        return str(getattr(scale, "name", scale))
    meta = getattr(data, "metadata", None) or {}
    if meta.get("primary_scale"):
        return str(meta["primary_scale"])
    assessments = _assessments_of(data)
    if assessments is not None and "scale" in assessments.columns and len(assessments):
        counts = assessments["scale"].dropna().astype(str).value_counts()
        if len(counts):
            top = counts[counts == counts.max()].index
            return str(sorted(top)[0])
    raise ConfigurationError(
        "No scale given and the cohort names no primary_scale and has no assessments; "
        "pass scale= (e.g. 'MADRS')."
    )


def baseline_scores(data, scale: Any = None, *,
                    infusions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Baseline score per subject: the last non-missing score on or before the first infusion.

    The scale is matched case-insensitively. Without an infusions table (or for subjects with no
    infusion) the first infusion is taken to be on day 0, as the data model defines study days.
    Ties on the same day are broken by ``visit_number`` when present.

    Parameters
    ----------
    data : Cohort or pandas.DataFrame
        A cohort, or its ``assessments`` table.
    scale : str or Scale, optional
        Default: :func:`default_scale`.
    infusions : pandas.DataFrame, optional
        Infusions table when ``data`` is a DataFrame (a cohort's own is used otherwise).

    Returns
    -------
    pandas.DataFrame
        ``subject_id, baseline, baseline_day``; subjects without a baseline are absent.
    """
    name = default_scale(data, scale)
    assessments = _assessments_of(data)
    if assessments is None:
        raise DataValidationError(
            f"Expected a kanalysis Cohort or an assessments DataFrame, got {type(data).__name__}.")
    missing = [c for c in ("subject_id", "scale", "day", "score") if c not in assessments.columns]
    if missing:
        raise DataValidationError(f"assessments has no column(s) {missing}.")
    if infusions is None and not isinstance(data, pd.DataFrame):
        infusions = getattr(data, "infusions", None)
    keep = ["subject_id", "day", "score"] + (["visit_number"] if "visit_number" in
                                              assessments.columns else [])
    a = assessments.loc[(assessments["scale"].astype(str).str.upper() == name.upper())
                        & assessments["score"].notna(), keep]
    if infusions is not None and len(infusions):
        first = infusions.groupby("subject_id")["day"].min().rename("_first_infusion_day")
        a = a.join(first, on="subject_id")
        a["_first_infusion_day"] = a["_first_infusion_day"].fillna(0.0)
    else:
        a = a.assign(_first_infusion_day=0.0)
    order = ["subject_id", "day"] + (["visit_number"] if "visit_number" in a.columns else [])
    pre = a[a["day"] <= a["_first_infusion_day"]].sort_values(order)
    base = pre.groupby("subject_id").tail(1)
    return base.rename(columns={"score": "baseline", "day": "baseline_day"})[
        ["subject_id", "baseline", "baseline_day"]].reset_index(drop=True)


def last_induction_day(infusions: pd.DataFrame) -> pd.Series:
    """Day of each subject's last induction infusion (all infusions when there is no ``phase``).

    Returns a Series indexed by ``subject_id``.
    """
    ind = infusions
    if "phase" in infusions.columns:
        ind = infusions[infusions["phase"] == "induction"]
    return ind.groupby("subject_id")["day"].max()


# --------------------------------------------------------------------------------------------
# Kaplan-Meier median
# --------------------------------------------------------------------------------------------
def km_median(time: Any, event: Any) -> float:
    """Kaplan-Meier median with R's convention (``quantile.survfit`` / ``survival:::findq``).

    The first time the curve drops to 0.5 or below; where it is flat at exactly 0.5, the midpoint
    of the flat (to the last follow-up time when the flat runs to the end). NaN when the curve
    never reaches 0.5 or there are no rows.
    """
    from kanalysis.durability import kaplan_meier

    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(int)
    if len(t) == 0:
        return float("nan")
    km = kaplan_meier(pd.DataFrame({"time": t, "event": e}), group=None)
    return float(km.median()["estimate"].iloc[0])


# --------------------------------------------------------------------------------------------
# relapse rules
# --------------------------------------------------------------------------------------------
#: Relapse rules (canonical one-letter keys) and their published sources.
RELAPSE_RULES: dict[str, str] = {
    "a": "loss of response: improvement from baseline below 50% on 2 consecutive assessments "
         "(Murrough et al. 2013, Biol Psychiatry 74:250)",
    "b": "threshold: score >= 22 (MADRS) on 2 consecutive assessments 5-15 days apart "
         "(SUSTAIN-1, Daly et al. 2019, JAMA Psychiatry 76:893)",
    "c": "clinical event: hospitalisation for worsening depression or suicide attempt "
         "(SUSTAIN-1, Daly et al. 2019), from the clinical_events table",
}
#: Long names accepted for each rule.
RELAPSE_RULE_ALIASES: dict[str, str] = {
    "loss_of_response": "a", "threshold": "b", "clinical_event": "c", "clinical_events": "c",
    "clinical": "c",
}
#: Every accepted name of a single rule (keys and aliases).
RELAPSE_RULE_NAMES: tuple[str, ...] = (*RELAPSE_RULES, *RELAPSE_RULE_ALIASES)
#: Separators of a combination of rules (any of them fires: ``"b+c"`` is SUSTAIN-1's).
RELAPSE_RULE_SEPARATORS: tuple[str, ...] = ("+", "|", ",")
#: Default (min, max) days between the first and the confirming assessment, per rule.
CONFIRMATION_DAYS: dict[str, tuple[float, float]] = {"a": (0.0, math.inf), "b": (5.0, 15.0)}


def parse_relapse_rule(relapse_rule: str | Sequence[str]) -> list[str]:
    """The canonical rule keys (``"a"``, ``"b"``, ``"c"``) of a rule or combination, in order.

    Accepts the keys, their aliases (:data:`RELAPSE_RULE_ALIASES`, case-insensitive) and
    combinations joined by ``+``, ``|`` or ``,`` (or given as a sequence); duplicates are dropped.

    Raises
    ------
    ConfigurationError
        Naming the unknown part and the accepted names.

    Examples
    --------
    >>> parse_relapse_rule("threshold+clinical_events")
    ['b', 'c']
    """
    if isinstance(relapse_rule, str):
        text = relapse_rule
        for sep in RELAPSE_RULE_SEPARATORS[1:]:
            text = text.replace(sep, "+")
        parts = text.split("+")
    else:
        parts = list(relapse_rule)
    rules: list[str] = []
    for part in parts:
        word = str(part).strip().lower()
        key = RELAPSE_RULE_ALIASES.get(word, word)
        if key not in RELAPSE_RULES:
            raise ConfigurationError(
                f"Unknown relapse rule {part!r} in {relapse_rule!r}. Use one of "
                f"{list(RELAPSE_RULE_NAMES)} or a combination joined by '+' such as 'b+c' "
                "(SUSTAIN-1)."
            )
        if key not in rules:
            rules.append(key)
    if not rules:
        raise ConfigurationError(f"relapse_rule {relapse_rule!r} names no rule.")
    return rules
