from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kanalysis.errors import ConfigurationError
from kanalysis.scales import Scale, get_scale, list_scales, register_scale, scales_frame


@pytest.mark.parametrize(
    ("name", "lo", "hi", "items", "threshold"),
    [
        ("MADRS", 0, 60, 10, 10),
        ("HAMD17", 0, 52, 17, 7),
        ("PHQ9", 0, 27, 9, 5),
        ("QIDS_SR16", 0, 27, 16, 5),
        ("BDI2", 0, 63, 21, 13),
        ("PCL5", 0, 80, 20, 31),
        ("GAD7", 0, 21, 7, 5),
        ("PAIN_NRS", 0, 10, 1, None),
        ("CADSS", 0, 92, 23, None),
    ],
)
def test_builtin_scales_have_published_ranges(name, lo, hi, items, threshold):
    s = get_scale(name)
    assert (s.min, s.max, s.n_items, s.remission_threshold) == (lo, hi, items, threshold)
    assert s.source


def test_madrs_offers_the_common_alternative_threshold():
    assert 12 in get_scale("MADRS").remission_alternatives


def test_remission_rules_inclusive_and_strict():
    madrs = get_scale("MADRS")
    got = madrs.is_remission(pd.Series([9, 10, 11, np.nan]))
    assert got.iloc[:3].tolist() == [1.0, 1.0, 0.0] and np.isnan(got.iloc[3])
    phq = get_scale("PHQ9")  # PHQ-9 remission is < 5, not <= 5
    assert phq.is_remission(pd.Series([4, 5])).tolist() == [1.0, 0.0]
    assert madrs.is_remission(pd.Series([11, 12]), threshold=12).tolist() == [1.0, 1.0]


def test_aliases_and_case_insensitive_lookup():
    assert get_scale("phq-9") is get_scale("PHQ9")
    assert get_scale("hamd") is get_scale("HAMD17")
    assert len(list_scales()) == len(set(list_scales()))


def test_unknown_scale_lists_known_ones():
    with pytest.raises(ConfigurationError, match="Known scales: .*MADRS"):
        get_scale("NOPE")


def test_threshold_outside_range_is_rejected():
    with pytest.raises(ConfigurationError, match="outside the range of MADRS"):
        get_scale("MADRS").check_score(61, what="remission_threshold")
    with pytest.raises(ConfigurationError, match="must be a number"):
        get_scale("MADRS").check_score("ten")


def test_register_custom_scale_and_refuse_silent_overwrite():
    s = register_scale(Scale("HAMD6_TEST", "HAM-D6", 0, 22, 6, remission_threshold=4),
                       overwrite=True)
    assert get_scale("hamd6_test") is s
    assert "HAMD6_TEST" in scales_frame()["scale"].tolist()
    with pytest.raises(ConfigurationError, match="already registered"):
        register_scale(Scale("HAMD6_TEST", "HAM-D6", 0, 22, 6))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min": 10, "max": 5},
        {"n_items": 0},
        {"response_reduction": 1.5},
        {"remission_threshold": 99},
    ],
)
def test_invalid_scale_definitions(kwargs):
    base = {"name": "X", "label": "x", "min": 0, "max": 10, "n_items": 2}
    with pytest.raises(ConfigurationError):
        Scale(**{**base, **kwargs})


def test_missing_item_rules_are_part_of_the_scale_definition():
    phq, gad = get_scale("PHQ9"), get_scale("GAD7")
    assert phq.max_missing_items == 2 and "manual" in phq.missing_items_rule
    # GAD-7: the total is the sum of all seven items (Spitzer 2006); no prorating by default.
    assert gad.max_missing_items == 0 and "Spitzer" in gad.missing_items_rule
    assert all(get_scale(n).max_missing_items < get_scale(n).n_items for n in list_scales())
    for bad in (-1, 7, 1.5, True):
        with pytest.raises(ConfigurationError, match="max_missing_items"):
            Scale("X7", "x", 0, 21, 7, max_missing_items=bad)
