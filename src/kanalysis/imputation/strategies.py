r"""Imputation strategies: a subject's joint distribution of all visits after an ICE.

A strategy maps the subject's own-arm parameters and the reference arm's parameters to the
mean and covariance of the subject's outcomes at all ``t`` visits, given that the ICE affects
visits ``k, k+1, ..., t-1`` (0-based ``k``):

.. code-block:: python

    mu, sigma = strategy(mu_own, mu_ref, sigma_own, sigma_ref, k)

``mu_own`` and ``mu_ref`` are (m, t) arrays of ``X_i beta`` for m subjects with the subject's
own arm and with the arm switched to the reference (all other covariates the subject's own);
``sigma_own`` and ``sigma_ref`` are the (t, t) visit covariances. The result is (m, t) and
(t, t). The built-in rules (Carpenter, Roger & Kenward 2013; rbmi's statistical
specifications) are, with ``R`` = ``sigma_ref`` and ``S`` = ``sigma_own`` split at ``k`` into
pre (1) and post (2) blocks:

- ``MAR``: :math:`\mu_i`, :math:`S`.
- ``JR`` (jump to reference): :math:`(\mu_{i,1}, \mu_{ref,2})`; covariance
  :math:`\tilde\Sigma_{11} = S_{11}`, :math:`\tilde\Sigma_{21} = R_{21}R_{11}^{-1}S_{11}`,
  :math:`\tilde\Sigma_{22} = R_{22} - R_{21}R_{11}^{-1}(R_{11} - S_{11})R_{11}^{-1}R_{12}`
  (which is :math:`R` when :math:`S = R`).
- ``CR`` (copy reference): :math:`\mu_{ref}` and :math:`R` at all visits.
- ``CIR`` (copy increments in reference): :math:`\tilde\mu_j = \mu_{i,k-1} + \mu_{ref,j} -
  \mu_{ref,k-1}` for :math:`j \ge k`; covariance as JR.
- ``LMCF`` (last mean carried forward): :math:`\tilde\mu_j = \mu_{i,k-1}` for
  :math:`j \ge k`; covariance :math:`S`.

With the ICE at the first visit (``k = 0``) JR and CIR equal CR; LMCF is undefined there.

References
----------
Carpenter JR, Roger JH, Kenward MG (2013). Analysis of longitudinal trials with protocol
deviation: a framework for relevant, accessible assumptions, and inference via multiple
imputation. J Biopharm Stat 23:1352-1371.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kanalysis.errors import ConfigurationError, DataValidationError

__all__ = ["STRATEGIES", "register_strategy", "strategy_function"]

Strategy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
                    tuple[np.ndarray, np.ndarray]]


def carpenter_sigma(sigma_own: np.ndarray, sigma_ref: np.ndarray, k: int) -> np.ndarray:
    r"""Covariance after a switch to the reference at visit ``k`` (Carpenter et al. 2013):
    the own covariance before, the reference conditional structure after."""
    if k <= 0:
        return sigma_ref.copy()
    t = sigma_own.shape[0]
    if k >= t:
        return sigma_own.copy()
    if np.array_equal(sigma_own, sigma_ref):
        return sigma_ref.copy()
    R, S = sigma_ref, sigma_own
    R11, R12, R22 = R[:k, :k], R[:k, k:], R[k:, k:]
    S11 = S[:k, :k]
    A = np.linalg.solve(R11, R12).T  # R21 R11^-1
    out = np.empty_like(S)
    out[:k, :k] = S11
    out[k:, :k] = A @ S11
    out[:k, k:] = out[k:, :k].T
    out[k:, k:] = R22 - A @ (R11 - S11) @ A.T
    return 0.5 * (out + out.T)


def mar(mu_own, mu_ref, sigma_own, sigma_ref, k):
    """Missing at random: the subject's own arm throughout."""
    return mu_own.copy(), sigma_own.copy()


def jump_to_reference(mu_own, mu_ref, sigma_own, sigma_ref, k):
    """Jump to reference: own-arm mean before the ICE, the reference arm's mean after."""
    mu = mu_own.copy()
    mu[:, k:] = mu_ref[:, k:]
    return mu, carpenter_sigma(sigma_own, sigma_ref, k)


def copy_reference(mu_own, mu_ref, sigma_own, sigma_ref, k):
    """Copy reference: the reference arm's distribution at every visit."""
    return mu_ref.copy(), sigma_ref.copy()


def copy_increments(mu_own, mu_ref, sigma_own, sigma_ref, k):
    """Copy increments in reference: the last pre-ICE own mean plus the reference arm's
    changes from that visit on."""
    if k == 0:
        return copy_reference(mu_own, mu_ref, sigma_own, sigma_ref, k)
    mu = mu_own.copy()
    mu[:, k:] = mu_own[:, [k - 1]] + mu_ref[:, k:] - mu_ref[:, [k - 1]]
    return mu, carpenter_sigma(sigma_own, sigma_ref, k)


def last_mean_carried_forward(mu_own, mu_ref, sigma_own, sigma_ref, k):
    """Last mean carried forward: the own mean at the last visit before the ICE."""
    if k == 0:
        raise DataValidationError(
            "impute: LMCF needs at least one visit before the ICE; an ICE at the first visit "
            "has no last mean to carry forward (use JR or CR for these subjects).")
    mu = mu_own.copy()
    mu[:, k:] = mu_own[:, [k - 1]]
    return mu, sigma_own.copy()


#: Registered strategies by name (upper case for the built-ins).
STRATEGIES: dict[str, Strategy] = {
    "MAR": mar,
    "JR": jump_to_reference,
    "CR": copy_reference,
    "CIR": copy_increments,
    "LMCF": last_mean_carried_forward,
}


def register_strategy(name: str, function: Strategy) -> None:
    """Register a user strategy ``function(mu_own, mu_ref, sigma_own, sigma_ref, k)``.

    It must return ``(mu, sigma)`` of shapes (m, t) and (t, t); see the module docstring. The
    name can then be used in the ICE table's ``strategy`` column and in ``update_strategy``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError("register_strategy: the name must be a non-empty string")
    if not callable(function):
        raise ConfigurationError("register_strategy: function must be callable")
    if name.upper() in {"MAR", "JR", "CR", "CIR", "LMCF"}:
        raise ConfigurationError(f"register_strategy: {name!r} is a built-in strategy")
    STRATEGIES[name] = function


def strategy_function(name: str) -> Strategy:
    """The registered strategy called ``name``."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigurationError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") \
            from None
