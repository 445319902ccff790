"""kanalysis: statistics for ketamine and esketamine treatment studies.

Mixed-effects models of symptom trajectories (random intercept and slope models, MMRM), response,
remission and durability of response, and safety, behind parameterized notebooks.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from kanalysis.cohort import Cohort, load_cohort  # noqa: E402
from kanalysis.errors import (  # noqa: E402
    ConfigurationError,
    ConvergenceWarning,
    DataValidationError,
    KanalysisError,
    KanalysisWarning,
)
from kanalysis.scales import Scale, get_scale, register_scale  # noqa: E402

# Model entry points live in kanalysis.models; they are imported on first use so that
# `import kanalysis` stays fast for the command line.
_LAZY = {"lmm": "kanalysis.models", "mmrm": "kanalysis.models", "MMRMModel": "kanalysis.models"}
# Submodules reachable as attributes after a plain `import kanalysis` (kanalysis.safety....).
_SUBMODULES = {
    "durability", "importers", "models", "outcomes", "plots", "privacy", "runner", "safety",
    "synthetic", "tables", "validation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f"kanalysis.{name}")
    raise AttributeError(f"module 'kanalysis' has no attribute {name!r}")


__all__ = [
    "Cohort",
    "ConfigurationError",
    "ConvergenceWarning",
    "DataValidationError",
    "KanalysisError",
    "KanalysisWarning",
    "MMRMModel",
    "Scale",
    "__version__",
    "get_scale",
    "lmm",
    "load_cohort",
    "mmrm",
    "register_scale",
]
