"""Mixed models for symptom trajectories: :func:`lmm` (random intercepts and slopes) and
:func:`mmrm` (mixed model for repeated measures with structured visit covariance), one REML/ML
engine with Satterthwaite and Kenward-Roger inference and LS-means.
"""

from kanalysis.models.lmm import LMMResult, lmm, log_time, lrt, piecewise
from kanalysis.models.mmrm import MMRMResult, mmrm

__all__ = ["LMMResult", "MMRMResult", "lmm", "log_time", "lrt", "mmrm", "piecewise"]
