"""Registry of rating scales: range, direction, item count, response and remission rules.

Every scale that a cohort's ``assessments.scale`` column names must be registered here, so that
validation can check score ranges and derivations can apply the right response and remission
rules. Users add their own scales with :func:`register_scale`.

Sources for the defaults (see ``docs/scales.md``):

- Response as a >= 50% reduction from baseline: Murrough et al. 2013 (Biol Psychiatry 74:250),
  Phillips et al. 2019 (Am J Psychiatry 176:401), McInnes et al. 2022 (J Affect Disord 301:486),
  Trivedi et al. 2006 (Am J Psychiatry 163:28).
- MADRS remission <= 10 (Reif et al. 2023, ESCAPE-TRD; Ekstrand et al. 2022, KetECT; Salloum et al.
  2019) with <= 12 as the common alternative (Daly et al. 2019, SUSTAIN-1 family).
- HAM-D17 remission <= 7 and QIDS-SR16 <= 5 (Trivedi et al. 2006); PHQ-9 < 5 (Kroenke et al. 2001;
  McInnes et al. 2022).
- CADSS 23 items scored 0-4, total 0-92 (Bremner et al. 1998); some ketamine papers use the 19
  subjective items only (0-76): register ``CADSS19`` for that version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from kanalysis.errors import ConfigurationError

__all__ = [
    "Scale",
    "canonical_scale_name",
    "get_scale",
    "list_scales",
    "register_scale",
    "scales_frame",
]


@dataclass(frozen=True)
class Scale:
    """A rating scale and its clinical rules.

    Parameters
    ----------
    name : str
        Registry key, as used in ``assessments.scale`` (e.g. ``"MADRS"``).
    label : str
        Full name for tables and figure axes.
    min, max : float
        Range of the total score.
    n_items : int
        Number of items summed into the total.
    higher_is_worse : bool
        Direction: True for symptom scales, where a fall is improvement.
    response_reduction : float
        Fraction of the baseline score that must be lost for response (0.5 = a >= 50% reduction).
    remission_threshold : float or None
        Cut-off for remission; None where the scale has no remission rule (e.g. CADSS).
    remission_inclusive : bool
        True if remission is ``score <= threshold``; False if ``score < threshold`` (PHQ-9 < 5).
    remission_alternatives : tuple of float
        Other thresholds in common use (MADRS <= 12), offered as documented options.
    construct : str
        ``depression``, ``ptsd``, ``anxiety``, ``pain`` or ``dissociation``.
    source : str
        Where the range and rules come from.
    max_missing_items : int
        Most items that may be missing for a total built from items to be prorated (sum x
        n_items / items answered, rounded half up); with more missing, the total is missing.
        0 (the default): any missing item leaves the total missing.
    missing_items_rule : str
        The rule for missing items in words, with its reference.
    """

    name: str
    label: str
    min: float
    max: float
    n_items: int
    higher_is_worse: bool = True
    response_reduction: float | None = 0.5
    remission_threshold: float | None = None
    remission_inclusive: bool = True
    remission_alternatives: tuple[float, ...] = field(default_factory=tuple)
    construct: str = "depression"
    source: str = ""
    max_missing_items: int = 0
    missing_items_rule: str = "total missing when any item is missing"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigurationError("A scale needs a non-empty string `name`.")
        if not (math.isfinite(self.min) and math.isfinite(self.max) and self.min < self.max):
            raise ConfigurationError(
                f"Scale {self.name!r}: `min` ({self.min}) must be a finite number below `max` "
                f"({self.max})."
            )
        if self.n_items < 1:
            raise ConfigurationError(f"Scale {self.name!r}: `n_items` must be at least 1.")
        if (isinstance(self.max_missing_items, bool) or not isinstance(self.max_missing_items, int)
                or not 0 <= self.max_missing_items < self.n_items):
            raise ConfigurationError(
                f"Scale {self.name!r}: `max_missing_items` must be a whole number from 0 to "
                f"n_items - 1 ({self.n_items - 1}), got {self.max_missing_items!r}.")
        if self.response_reduction is not None and not 0 < self.response_reduction < 1:
            raise ConfigurationError(
                f"Scale {self.name!r}: `response_reduction` must lie between 0 and 1 "
                f"(0.5 = a 50% reduction), got {self.response_reduction}."
            )
        if self.remission_threshold is not None:
            self.check_score(self.remission_threshold, what="remission_threshold")

    def check_score(self, value: float, what: str = "score") -> float:
        """Return ``value`` if it lies within the scale's range, else raise ConfigurationError."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{what} for scale {self.name!r} must be a number, got {value!r}."
            ) from None
        if not self.min <= number <= self.max:
            raise ConfigurationError(
                f"{what} = {value} is outside the range of {self.name} "
                f"({self.min:g} to {self.max:g})."
            )
        return number

    def is_remission(self, score, threshold: float | None = None):
        """Remission indicator for a score or array of scores (NaN stays NaN)."""
        cut = self.remission_threshold if threshold is None else self.check_score(threshold)
        if cut is None:
            raise ConfigurationError(f"Scale {self.name!r} has no remission rule.")
        s = pd.Series(score, dtype="float64") if not isinstance(score, pd.Series) else score
        hit = s <= cut if self.remission_inclusive else s < cut
        if not self.higher_is_worse:
            hit = s >= cut if self.remission_inclusive else s > cut
        return hit.astype("float64").where(s.notna())


_REGISTRY: dict[str, Scale] = {}


def register_scale(scale: Scale, *, overwrite: bool = False) -> Scale:
    """Add a scale to the registry.

    Parameters
    ----------
    scale : Scale
        The scale to add.
    overwrite : bool, default False
        Replace an existing scale of the same name; otherwise that is an error.

    Returns
    -------
    Scale
        The registered scale.

    Examples
    --------
    >>> from kanalysis.scales import Scale, register_scale
    >>> s = register_scale(Scale("HAMD6", "HAM-D6 (Bech)", 0, 22, 6, remission_threshold=4))
    """
    if not isinstance(scale, Scale):
        raise ConfigurationError(f"register_scale expects a Scale, got {type(scale).__name__}.")
    key = scale.name.upper()
    if key in _REGISTRY and not overwrite:
        raise ConfigurationError(
            f"A scale named {scale.name!r} is already registered; pass overwrite=True to replace it."
        )
    _REGISTRY[key] = scale
    return scale


def get_scale(name: str) -> Scale:
    """Look a scale up by name (case-insensitive); unknown names raise with the known ones listed."""
    if isinstance(name, Scale):
        return name
    key = str(canonical_scale_name(str(name))).upper()
    if key not in _REGISTRY:
        raise ConfigurationError(
            f"Unknown scale {name!r}. Known scales: {', '.join(sorted(_REGISTRY))}. "
            "Register your own with kanalysis.register_scale(Scale(...))."
        )
    return _REGISTRY[key]


def _squash(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def canonical_scale_name(name):
    """The registry name of a scale written any common way, or ``name`` unchanged if unknown.

    Case, surrounding spaces, hyphens, underscores and spaces inside are ignored, and the usual
    aliases are known: ``"PHQ-9"``, ``"phq9"``, ``" Phq 9 "`` -> ``"PHQ9"``; ``"madrs"`` ->
    ``"MADRS"``; ``"HAM-D17"`` -> ``"HAMD17"``. Cohorts apply it once, when they are built, so that
    analyses compare canonical names only.
    """
    if not isinstance(name, str):
        return name
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key].name
    squashed = _squash(key)
    for reg_key, scale in _REGISTRY.items():
        if _squash(reg_key) == squashed:
            return scale.name
    for alias, target in _ALIASES.items():
        if _squash(alias) == squashed and target in _REGISTRY:
            return _REGISTRY[target].name
    return name


def list_scales() -> list[str]:
    """Names of all registered scales, sorted."""
    return sorted(s.name for s in _REGISTRY.values())


def scales_frame() -> pd.DataFrame:
    """The registry as a tidy DataFrame, one row per scale."""
    rows = [
        {
            "scale": s.name,
            "label": s.label,
            "min": s.min,
            "max": s.max,
            "n_items": s.n_items,
            "higher_is_worse": s.higher_is_worse,
            "response_reduction": s.response_reduction,
            "remission_threshold": s.remission_threshold,
            "remission_rule": (
                None
                if s.remission_threshold is None
                else f"{'<=' if s.remission_inclusive else '<'} {s.remission_threshold:g}"
            ),
            "construct": s.construct,
            "source": s.source,
        }
        for s in _REGISTRY.values()
    ]
    return pd.DataFrame(rows).sort_values("scale", ignore_index=True)


_BUILTIN = [
    Scale(
        "MADRS", "Montgomery-Asberg Depression Rating Scale", 0, 60, 10,
        remission_threshold=10, remission_alternatives=(12, 9),
        source="10 items 0-6 (NCT03321526); remission <= 10 Reif 2023 / Ekstrand 2022, "
        "<= 12 Daly 2019 (SUSTAIN-1); response >= 50% Murrough 2013",
    ),
    Scale(
        "HAMD17", "Hamilton Depression Rating Scale, 17 items", 0, 52, 17,
        remission_threshold=7,
        source="range NCT04007367; remission <= 7 Trivedi 2006",
    ),
    Scale(
        "PHQ9", "Patient Health Questionnaire-9", 0, 27, 9,
        remission_threshold=5, remission_inclusive=False,
        source="Kroenke 2001; remission < 5 McInnes 2022",
        max_missing_items=2,
        missing_items_rule="prorated when at most 2 of the 9 items are missing (sum x 9 / items "
        "answered, rounded), else missing: PHQ instruction manual (Spitzer, Williams, Kroenke; "
        "Pfizer)",
    ),
    Scale(
        "QIDS_SR16", "Quick Inventory of Depressive Symptomatology, self-report", 0, 27, 16,
        remission_threshold=5,
        source="range Jha 2024; remission <= 5 Trivedi 2006 (STAR*D)",
    ),
    Scale(
        "BDI2", "Beck Depression Inventory-II", 0, 63, 21,
        remission_threshold=13,
        source="21 items 0-3; <= 13 minimal depression (Beck 1996 manual cut-off)",
    ),
    Scale(
        "PCL5", "PTSD Checklist for DSM-5", 0, 80, 20,
        remission_threshold=31, remission_inclusive=False, construct="ptsd",
        source="20 items 0-4; probable-PTSD cut-off 31-33 (Forkus 2022 review)",
    ),
    Scale(
        "GAD7", "Generalized Anxiety Disorder-7", 0, 21, 7,
        remission_threshold=5, remission_inclusive=False, construct="anxiety",
        source="7 items 0-3; < 5 minimal anxiety (Spitzer 2006)",
        max_missing_items=0,
        missing_items_rule="total = sum of all 7 items, 0-21 (Spitzer et al. 2006, Arch Intern "
        "Med 166:1092; PHQ and GAD-7 instruction manual); neither gives a rule for missing items, "
        "so a total with any missing item is missing. A study that prorates (a protocol rule) "
        "sets max_missing_items for GAD7 in its mapping",
    ),
    Scale(
        "PAIN_NRS", "Pain numeric rating scale", 0, 10, 1,
        remission_threshold=None, response_reduction=0.5, construct="pain",
        source="0-10 NRS; >= 50% reduction as substantial improvement (IMMPACT)",
    ),
    Scale(
        "CADSS", "Clinician-Administered Dissociative States Scale, 23 items", 0, 92, 23,
        response_reduction=None, remission_threshold=None, construct="dissociation",
        source="23 items 0-4 (Bremner 1998; NCT04226963)",
    ),
    Scale(
        "CADSS19", "CADSS, 19 subjective items", 0, 76, 19,
        response_reduction=None, remission_threshold=None, construct="dissociation",
        source="19 subjective items (Niciu 2018); record which version was used",
    ),
]
for _scale in _BUILTIN:
    register_scale(_scale)
# Common spellings users write in their exports.
_ALIASES = {"HAMD": "HAMD17", "HAM-D17": "HAMD17", "PHQ-9": "PHQ9", "QIDS": "QIDS_SR16",
            "QIDS-SR16": "QIDS_SR16", "BDI-II": "BDI2", "PCL-5": "PCL5", "GAD-7": "GAD7"}
