"""Confidence intervals for proportions, differences of proportions and event rates.

Shared by response rates (:mod:`kanalysis.outcomes`), safety tables (:mod:`kanalysis.safety`) and
anything else that reports a proportion: one implementation each, checked against R
(``binom.test``, ``prop.test(correct = FALSE)``, ``poisson.test`` and Newcombe's published examples).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from kanalysis.errors import ConfigurationError
from kanalysis.results import resolve_conf_level

__all__ = ["clopper_pearson", "newcombe_difference", "normal_quantile", "poisson_rate_interval",
           "wilson_interval"]


def _check_confidence(conf_level: float | None, confidence: float | None = None,
                      where: str = "kanalysis") -> float:
    """The confidence level from ``conf_level`` (or the deprecated ``confidence``), checked."""
    return resolve_conf_level(conf_level, confidence=confidence, where=where)


def normal_quantile(conf_level: float) -> float:
    """The two-sided normal critical value z_{1 - (1 - conf_level) / 2} (1.96 at 0.95)."""
    level = _check_confidence(conf_level)
    return float(stats.norm.ppf(1 - (1 - level) / 2))


def _check_counts(k: Any, n: Any, what: str = "n") -> tuple[np.ndarray, np.ndarray]:
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if np.any(k_arr < 0) or np.any(k_arr > n_arr) or np.any(n_arr <= 0):
        raise ConfigurationError(
            f"Counts must satisfy 0 <= k <= {what} and {what} > 0; got k={k!r}, {what}={n!r}."
        )
    return k_arr, n_arr


def clopper_pearson(k: Any, n: Any, conf_level: float | None = None, *,
    confidence: float | None = None) -> tuple[Any, Any]:
    """Exact (Clopper-Pearson) confidence interval for a binomial proportion.

    ``lower = B(alpha/2; k, n - k + 1)`` and ``upper = B(1 - alpha/2; k + 1, n - k)``, where
    ``B(q; a, b)`` is the beta quantile, with ``lower = 0`` when ``k = 0`` and ``upper = 1`` when
    ``k = n``. This is the interval R's ``binom.test`` reports.

    Parameters
    ----------
    k, n : int or array-like
        Successes and trials.
    conf_level : float, default 0.95
        Two-sided confidence level (``confidence`` is its deprecated name).

    Returns
    -------
    lower, upper : float or numpy.ndarray
        Same shape as the broadcast inputs.

    References
    ----------
    Clopper CJ, Pearson ES (1934). The use of confidence or fiducial limits illustrated in the case
    of the binomial. Biometrika 26:404-413.

    Examples
    --------
    >>> from kanalysis.intervals import clopper_pearson
    >>> lo, hi = clopper_pearson(3, 86)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.0073, 0.0986)
    """
    alpha = 1 - _check_confidence(conf_level, confidence)
    k_arr, n_arr = _check_counts(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(k_arr == 0, 0.0, stats.beta.ppf(alpha / 2, k_arr, n_arr - k_arr + 1))
        upper = np.where(k_arr == n_arr, 1.0, stats.beta.ppf(1 - alpha / 2, k_arr + 1, n_arr - k_arr))
    if lower.ndim == 0:
        return float(lower), float(upper)
    return lower, upper


def wilson_interval(k: Any, n: Any, conf_level: float | None = None, *,
    confidence: float | None = None) -> tuple[Any, Any]:
    """Wilson score interval for a binomial proportion (no continuity correction).

    ``(p + z^2/(2n) -+ z sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n)`` with ``p = k/n``; the
    interval of R's ``prop.test(k, n, correct = FALSE)``.

    Parameters
    ----------
    k, n : int or array-like
        Successes and trials.
    conf_level : float, default 0.95
        Two-sided confidence level (``confidence`` is its deprecated name).

    Returns
    -------
    lower, upper : float or numpy.ndarray

    References
    ----------
    Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
    J Am Stat Assoc 22:209-212.

    Examples
    --------
    >>> from kanalysis.intervals import wilson_interval
    >>> lo, hi = wilson_interval(0, 10)
    >>> round(float(hi), 4)
    0.2775
    """
    z = stats.norm.ppf(1 - (1 - _check_confidence(conf_level, confidence)) / 2)
    k_arr, n_arr = _check_counts(k, n)
    p = k_arr / n_arr
    centre = p + z**2 / (2 * n_arr)
    half = z * np.sqrt(p * (1 - p) / n_arr + z**2 / (4 * n_arr**2))
    denom = 1 + z**2 / n_arr
    # The interval always contains p; clamping also removes rounding residue such as a lower
    # limit of 3e-18 at k = 0, which would put p outside its own interval.
    lower = np.clip(np.minimum((centre - half) / denom, p), 0.0, 1.0)
    upper = np.clip(np.maximum((centre + half) / denom, p), 0.0, 1.0)
    if lower.ndim == 0:
        return float(lower), float(upper)
    return lower, upper


def newcombe_difference(
    k1: Any, n1: Any, k2: Any, n2: Any, conf_level: float | None = None, *,
    confidence: float | None = None,
) -> tuple[Any, Any, Any]:
    """Difference of two independent proportions with Newcombe's hybrid score interval.

    With ``p_i = k_i / n_i`` and Wilson intervals ``(l_i, u_i)``, the difference ``d = p1 - p2``
    has ``lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)`` and
    ``upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)`` (Newcombe 1998, method 10). It stays inside
    [-1, 1], behaves well at zero counts (common for adverse events) and its coverage is close to
    nominal, unlike the Wald interval.

    Parameters
    ----------
    k1, n1 : int or array-like
        Events and subjects in the first (e.g. active) group.
    k2, n2 : int or array-like
        Events and subjects in the second (e.g. control) group.
    conf_level : float, default 0.95
        Two-sided confidence level (``confidence`` is its deprecated name).

    Returns
    -------
    difference, lower, upper : float or numpy.ndarray

    References
    ----------
    Newcombe RG (1998). Interval estimation for the difference between independent proportions:
    comparison of eleven methods. Stat Med 17:873-890 (table II, example (a): 56/70 - 48/80 gives
    0.0524 to 0.3339).

    Examples
    --------
    >>> from kanalysis.intervals import newcombe_difference
    >>> d, lo, hi = newcombe_difference(56, 70, 48, 80)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.0524, 0.3339)
    """
    k1_arr, n1_arr = _check_counts(k1, n1, "n1")
    k2_arr, n2_arr = _check_counts(k2, n2, "n2")
    p1 = k1_arr / n1_arr
    p2 = k2_arr / n2_arr
    level = _check_confidence(conf_level, confidence)
    l1, u1 = wilson_interval(k1_arr, n1_arr, level)
    l2, u2 = wilson_interval(k2_arr, n2_arr, level)
    diff = p1 - p2
    lower = diff - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = diff + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    if np.ndim(diff) == 0:
        return float(diff), float(lower), float(upper)
    return diff, lower, upper


def poisson_rate_interval(k: Any, exposure: Any, conf_level: float | None = None, *,
    confidence: float | None = None) -> tuple[Any, Any]:
    """Exact (Garwood) confidence interval for an event rate ``k / exposure``.

    ``lower = G(alpha/2; k) / T`` and ``upper = G(1 - alpha/2; k + 1) / T`` with ``G`` the unit-scale
    gamma quantile (``lower = 0`` when ``k = 0``); the interval of R's ``poisson.test(k, T)``. Used
    for adverse events per infusion.

    Parameters
    ----------
    k : int or array-like
        Number of events.
    exposure : float or array-like
        Exposure (e.g. number of infusions), > 0.
    conf_level : float, default 0.95
        Two-sided confidence level (``confidence`` is its deprecated name).

    Returns
    -------
    lower, upper : float or numpy.ndarray

    References
    ----------
    Garwood F (1936). Fiducial limits for the Poisson distribution. Biometrika 28:437-442.

    Examples
    --------
    >>> from kanalysis.intervals import poisson_rate_interval
    >>> lo, hi = poisson_rate_interval(0, 100)
    >>> round(float(hi), 4)
    0.0369
    """
    alpha = 1 - _check_confidence(conf_level, confidence)
    k_arr = np.asarray(k, dtype=float)
    t_arr = np.asarray(exposure, dtype=float)
    if np.any(k_arr < 0) or np.any(t_arr <= 0):
        raise ConfigurationError(
            f"Event counts must be >= 0 and exposure > 0; got k={k!r}, exposure={exposure!r}."
        )
    with np.errstate(invalid="ignore"):
        lower = np.where(k_arr == 0, 0.0, stats.gamma.ppf(alpha / 2, np.maximum(k_arr, 1e-300)))
    upper = stats.gamma.ppf(1 - alpha / 2, k_arr + 1)
    lower, upper = lower / t_arr, upper / t_arr
    if np.ndim(lower) == 0:
        return float(lower), float(upper)
    return lower, upper
