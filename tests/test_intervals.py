"""Interval helpers shared by outcomes and safety (R values in comments)."""

from __future__ import annotations

import numpy as np
import pytest

from kanalysis.errors import ConfigurationError
from kanalysis.intervals import (
    clopper_pearson,
    newcombe_difference,
    poisson_rate_interval,
    wilson_interval,
)
from kanalysis.outcomes import wilson_ci


def test_wilson_matches_prop_test():
    # R: prop.test(3, 10, correct = FALSE)$conf.int -> 0.1077913 0.6032219
    lo, hi = wilson_interval(3, 10)
    assert lo == pytest.approx(0.1077913, abs=1e-7) and hi == pytest.approx(0.6032219, abs=1e-7)


def test_wilson_interval_always_contains_the_estimate():
    n = np.arange(1, 400)
    for k in (np.zeros_like(n), n // 3, n):
        lo, hi = wilson_interval(k, n)
        p = k / n
        assert np.all(lo <= p) and np.all(p <= hi)
    assert wilson_interval(0, 69)[0] == 0.0  # not a rounding residue above 0


def test_outcomes_wrapper_gives_nan_for_empty_visits():
    lo, hi = wilson_ci([0, 3, 0], [69, 10, 0])
    assert lo[0] == 0.0 and np.isnan(lo[2]) and np.isnan(hi[2])
    assert hi[1] == pytest.approx(0.6032219, abs=1e-7)


def test_clopper_pearson_and_poisson_match_r():
    # R: binom.test(3, 86)$conf.int -> 0.007252 0.098625 ; binom.test(0, 20) upper 0.1684335
    lo, hi = clopper_pearson(3, 86)
    assert (round(lo, 4), round(hi, 4)) == (0.0073, 0.0986)
    assert clopper_pearson(0, 20)[1] == pytest.approx(0.1684335, abs=1e-7)
    # R: poisson.test(0, 100)$conf.int -> 0 0.03688879
    assert poisson_rate_interval(0, 100)[1] == pytest.approx(0.03688879, abs=1e-8)


def test_newcombe_published_example():
    # Newcombe (1998) table II, example (a): 56/70 - 48/80 -> 0.0524 to 0.3339
    d, lo, hi = newcombe_difference(56, 70, 48, 80)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)


@pytest.mark.parametrize("args", [(5, 3), (-1, 3), (1, 0)])
def test_impossible_counts_are_rejected(args):
    with pytest.raises(ConfigurationError, match="Counts must satisfy"):
        wilson_interval(*args)
