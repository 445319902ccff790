"""Imputation methods: how the imputation model's parameters are drawn and how values are
imputed from them.

- :class:`CondMean`: conditional mean imputation (Wolbers et al. 2022). The full-data REML fit
  imputes each missing value by its conditional mean; inference comes from re-running the whole
  analysis on jackknife (leave one subject out) or bootstrap samples.
- :class:`ApproxBayes`: approximate Bayesian MI. Each imputation uses the REML fit of a
  bootstrap sample (stratified by arm) as a posterior draw and imputes the original data by a
  random draw from the conditional distribution; pooled by Rubin's rules.
- :class:`BMLMI`: bootstrapped maximum likelihood MI (von Hippel & Bartlett 2021): ``B``
  bootstrap fits, each imputing its bootstrap sample ``D`` times; pooled by their ANOVA.
- :class:`Bayes`: posterior draws of the MVN model by Gibbs data augmentation (no Stan).

Every resampling method takes ``failure_share``: refits that fail are counted, reported with
their reason and skipped while their share stays at or below it; above it, ``draws`` stops
with an error listing them.

References
----------
Wolbers M, Noci A, Delmar P, Gower-Page C, Yiu S, Bartlett JW (2022). Standard and reference-based
conditional mean imputation. Pharm Stat 21:1246-1257.
von Hippel PT, Bartlett JW (2021). Maximum likelihood multiple imputation: faster imputations and
consistent standard errors without posterior draws. Stat Sci 36:400-420.
"""

from __future__ import annotations

from dataclasses import dataclass

from kanalysis.errors import ConfigurationError

__all__ = ["ApproxBayes", "BMLMI", "Bayes", "CondMean"]


def _pos_int(value, name, what, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what}: {name} must be an integer >= {minimum}, got {value!r}")


def _share(value, what):
    if not 0.0 <= float(value) < 1.0:
        raise ConfigurationError(f"{what}: failure_share must lie in [0, 1), got {value!r}")


@dataclass(frozen=True)
class CondMean:
    """Conditional mean imputation with jackknife or bootstrap inference.

    Parameters
    ----------
    resampling : {"jackknife", "bootstrap"}
    n_samples : int
        Bootstrap samples (ignored by the jackknife, which uses one per subject).
    seed : int, optional
        Bootstrap seed.
    failure_share : float
        Largest share of failed refits that are skipped (default 0.05).
    """

    resampling: str = "jackknife"
    n_samples: int = 1000
    seed: int | None = None
    failure_share: float = 0.05

    def __post_init__(self):
        if self.resampling not in ("jackknife", "bootstrap"):
            raise ConfigurationError(f"CondMean: resampling must be 'jackknife' or 'bootstrap', "
                                     f"got {self.resampling!r}")
        _pos_int(self.n_samples, "n_samples", "CondMean")
        _share(self.failure_share, "CondMean")

    @property
    def stochastic(self) -> bool:
        return False


@dataclass(frozen=True)
class ApproxBayes:
    """Approximate Bayesian MI: bootstrap + REML as posterior draws, Rubin's rules.

    Parameters
    ----------
    n_samples : int
        Number of imputations (one bootstrap fit each).
    seed : int, optional
    failure_share : float
    """

    n_samples: int = 20
    seed: int | None = None
    failure_share: float = 0.05

    def __post_init__(self):
        _pos_int(self.n_samples, "n_samples", "ApproxBayes", 2)
        _share(self.failure_share, "ApproxBayes")

    @property
    def stochastic(self) -> bool:
        return True


@dataclass(frozen=True)
class BMLMI:
    """Bootstrapped ML multiple imputation (von Hippel & Bartlett 2021).

    Parameters
    ----------
    B : int
        Bootstrap samples (one REML fit each).
    D : int
        Random imputations of each bootstrap sample (>= 2).
    seed : int, optional
    failure_share : float
    """

    B: int = 50
    D: int = 2
    seed: int | None = None
    failure_share: float = 0.05

    def __post_init__(self):
        _pos_int(self.B, "B", "BMLMI", 2)
        _pos_int(self.D, "D", "BMLMI", 2)
        _share(self.failure_share, "BMLMI")

    @property
    def stochastic(self) -> bool:
        return True


@dataclass(frozen=True)
class Bayes:
    r"""Bayesian MI by Gibbs data augmentation for the multivariate normal model.

    Model: :math:`y_i \sim N(X_i\beta, \Sigma_{g(i)})` with one unstructured visit covariance
    per covariance group. Prior (as rbmi's default): flat on :math:`\beta`; independent
    inverse-Wishart :math:`\Sigma_g \sim IW(\nu_0, \Psi_g)` with :math:`\nu_0 = t + 2` and
    :math:`\Psi_g = \hat\Sigma_g` (the REML estimate), so that the prior mean is
    :math:`\hat\Sigma_g` with the least information for which that mean exists. Each
    iteration draws the missing outcomes given :math:`(\beta, \Sigma)`, then
    :math:`\beta \mid \Sigma, Y \sim N(\hat\beta_{GLS}, (\sum_i X_i'\Sigma^{-1}X_i)^{-1})`, then
    :math:`\Sigma_g \mid \beta, Y \sim IW(\nu_0 + n_g, \Psi_g + \sum_{i \in g} r_i r_i')`.

    Parameters
    ----------
    n_samples : int
        Posterior draws kept (imputations).
    burn_in : int
        Iterations discarded first (started at the REML estimate).
    thin : int
        Keep every ``thin``-th iteration.
    seed : int, optional
    """

    n_samples: int = 20
    burn_in: int = 200
    thin: int = 50
    seed: int | None = None

    def __post_init__(self):
        _pos_int(self.n_samples, "n_samples", "Bayes", 2)
        _pos_int(self.burn_in, "burn_in", "Bayes", 0)
        _pos_int(self.thin, "thin", "Bayes", 1)

    @property
    def stochastic(self) -> bool:
        return True

    failure_share: float = 0.0
