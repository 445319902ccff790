"""Mixed models for symptom trajectories: :func:`lmm` (random intercepts and slopes) and
:func:`mmrm` (mixed model for repeated measures with structured visit covariance), one REML/ML
engine with Satterthwaite and Kenward-Roger inference and LS-means. :class:`MMRMModel` prepares
an MMRM once and refits it (new outcomes, subsets, bootstrap weights) from the last optimum.
"""

from kanalysis.errors import FitFailedError
from kanalysis.models.lmm import LMMResult, lmm, log_time, lrt, piecewise
from kanalysis.models.mmrm import MMRMResult, mmrm
from kanalysis.models.mmrm_model import MMRMModel, RefitBatch

__all__ = ["FitFailedError", "LMMResult", "MMRMModel", "MMRMResult", "RefitBatch", "lmm",
           "log_time", "lrt", "mmrm", "piecewise"]
