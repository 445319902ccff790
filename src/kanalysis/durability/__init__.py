"""Durability of response: relapse derivations and survival analysis that agree with R's survival.

Layout: ``derivation.py`` (cohort -> per-subject table), one module per estimator (``km.py``,
``logrank.py``, ``cox.py``, ``rmst.py``, ``cif.py``), ``results.py`` (the result classes, in the
common protocol of :mod:`kanalysis.results`) and the numerical kernels in ``_curves.py``. Import
from ``kanalysis.durability``.

Two halves:

1. :func:`derive` turns a :class:`kanalysis.Cohort` into one analysis-ready row per subject
   (``time``, ``event``, ``censor_reason``, ``status`` and covariates), with every relapse rule a
   parameter carrying its published default.
2. Survival estimators with the options reviewers expect from R's ``survival`` package:
   :func:`kaplan_meier`, :func:`logrank`, :func:`cox`, :func:`counting_process`, :func:`rmst` and
   :func:`cumulative_incidence`, plus the tabulations :func:`censoring_reasons` and
   :func:`rmst_tau`.

Choice of library, per estimator
--------------------------------
- **Kaplan-Meier**: written here (a few vectorised lines). lifelines' ``KaplanMeierFitter`` only
  offers the log-log ("exponential Greenwood") interval, while R's default is ``conf.type="log"``
  and reviewers ask for ``plain`` too; its median CI is not R's either. Our CIs follow R's
  ``survfit`` (Greenwood variance of log S; ``log``, ``log-log``, ``plain``) and quantile CIs are the
  times where the CI curves cross the quantile, as ``quantile.survfit`` computes them.
- **Log-rank**: written here after R's ``survdiff`` (hypergeometric variance, strata summed),
  because statsmodels' ``survdiff`` returns the statistic but not the observed / expected counts per
  group that a results table needs. Tests check the statistic against both R and statsmodels.
- **Cox PH**: statsmodels ``PHReg``. It supports Efron *and* Breslow ties, strata and delayed entry
  (counting-process ``(start, stop]`` data) in one estimator; lifelines' ``CoxPHFitter`` and
  ``CoxTimeVaryingFitter`` offer Efron only. The Schoenfeld-residual proportional-hazards test is
  written here because neither library implements R's current ``cox.zph`` score test (survival >=
  3.0), which is what R users will compare with.
- **RMST**: written here. lifelines' ``restricted_mean_survival_time`` variance is not the
  Greenwood-type variance R prints; ours reproduces ``print(survfit(...), rmean = tau)``.
- **Cumulative incidence**: Aalen-Johansen written here. lifelines' ``AalenJohansenFitter`` breaks
  tied times by adding random jitter, so its estimate is not reproducible and differs from R's
  multi-state ``survfit``; ours handles ties exactly as R does.

References
----------
Kaplan EL, Meier P (1958). J Am Stat Assoc 53:457-481. Greenwood M (1926). Rep Public Health Med
Subj 33. Brookmeyer R, Crowley J (1982). Biometrics 38:29-41 (median CI). Efron B (1977). J Am Stat
Assoc 72:557-565. Grambsch PM, Therneau TM (1994). Biometrika 81:515-526. Therneau TM, Grambsch PM
(2000). *Modeling Survival Data*. Springer. Royston P, Parmar MKB (2013). BMC Med Res Methodol
13:152 (RMST). Aalen OO, Johansen S (1978). Scand J Stat 5:141-150.
"""

from kanalysis.durability._checks import CONF_TYPES
from kanalysis.durability.cif import cumulative_incidence
from kanalysis.durability.cox import cox
from kanalysis.durability.derivation import (
    CONFIRMATION_DAYS,
    DEFAULT_RELAPSE_THRESHOLD,
    RELAPSE_RULES,
    SUBJECT_COVARIATES,
    censoring_reasons,
    counting_process,
    derive,
)
from kanalysis.durability.km import kaplan_meier
from kanalysis.durability.logrank import logrank
from kanalysis.durability.results import (
    CoxResult,
    CumulativeIncidenceResult,
    KaplanMeierResult,
    LogrankResult,
)
from kanalysis.durability.rmst import rmst, rmst_tau

__all__ = [
    "CONFIRMATION_DAYS",
    "CONF_TYPES",
    "DEFAULT_RELAPSE_THRESHOLD",
    "RELAPSE_RULES",
    "SUBJECT_COVARIATES",
    "CoxResult",
    "CumulativeIncidenceResult",
    "KaplanMeierResult",
    "LogrankResult",
    "censoring_reasons",
    "counting_process",
    "cox",
    "cumulative_incidence",
    "derive",
    "kaplan_meier",
    "logrank",
    "rmst",
    "rmst_tau",
]
