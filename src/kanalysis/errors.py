"""Exceptions and warnings raised by kanalysis.

One root class each for errors and warnings, so that callers can catch everything the package
raises with a single ``except KanalysisError``.
"""

from __future__ import annotations


class KanalysisError(Exception):
    """Root of every error kanalysis raises on purpose."""


class DataValidationError(KanalysisError, ValueError):
    """Input data broke one or more rules of the cohort data model.

    Attributes
    ----------
    problems : pandas.DataFrame
        One row per problem with columns ``table``, ``column``, ``rows``, ``rule``, ``values``
        and ``severity``.
    """

    def __init__(self, message: str, problems=None):
        super().__init__(message)
        self.problems = problems


class ConfigurationError(KanalysisError, ValueError):
    """An argument or parameter has a value kanalysis cannot use (unknown scale, bad threshold)."""


class ConvergenceError(KanalysisError, RuntimeError):
    """An optimiser did not reach an optimum; the message says what to try."""


class FitFailedError(ConvergenceError):
    """A model fit failed: no starting value led the optimiser to a converged optimum.

    A failed fit never returns numbers. The message says why and what to try; ``trace`` holds
    the optimiser's record of every attempt (start, iterations, final objective and gradient).
    """

    def __init__(self, message: str, trace=None):
        super().__init__(message)
        self.trace = trace if trace is not None else []


class KanalysisWarning(UserWarning):
    """Root of every warning kanalysis issues."""


class ConvergenceWarning(KanalysisWarning):
    """The fit converged poorly or to a boundary (a variance at 0, a correlation at +-1)."""


class StatisticalWarning(KanalysisWarning):
    """The result is valid but should be read with care (few events, sparse cells)."""
