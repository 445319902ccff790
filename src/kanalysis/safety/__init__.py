"""Safety and tolerability of ketamine infusions: vitals, dissociation and adverse events.

Ketamine is given in a monitored setting because of dissociation, blood-pressure rises and nausea.
This module turns the ``vitals`` and ``adverse_events`` tables of a cohort (see
``docs/data_model.md``) into the numbers ketamine papers and clinic audits report:

- within-infusion courses (mean and t-based CI by minute, arm and infusion number):
  :func:`infusion_course`;
- per-session peak change from the pre-infusion value and time back to baseline:
  :func:`session_peaks`, :func:`return_to_baseline`, :func:`return_time_summary`;
- blood-pressure threshold exceedances with exact (Clopper-Pearson) CIs: :func:`exceedances`,
  :func:`session_exceedances`;
- change of peak dissociation and peak blood-pressure rise over repeated infusions (linear mixed
  model): :func:`infusion_trend`;
- adverse-event incidence, severity, serious events and risk differences (Newcombe hybrid score
  CI): :func:`ae_incidence`, :func:`ae_by_severity`, :func:`ae_serious`, :func:`ae_risk_difference`;
- association of first-infusion dissociation with antidepressant response:
  :func:`dissociation_response`.

Interval helpers :func:`clopper_pearson`, :func:`wilson_interval`, :func:`newcombe_difference` and
:func:`poisson_rate_interval` are public too. Functions return counts without suppression; small
cells are suppressed downstream (reports, and plots through ``min_count``).

Layout: ``adapters.py`` (a Cohort or a bare table in, arms looked up, checks), ``vitals.py``
and ``adverse_events.py`` (the derivations and tables), ``models.py`` (the mixed model over
infusions, built on :func:`kanalysis.lmm`, and the dissociation regression). Import from
``kanalysis.safety``.

Every function accepts a :class:`kanalysis.Cohort`, or the table itself as a DataFrame that already
carries an ``arm`` column (or with ``subjects=`` to look the arm up).
"""

from __future__ import annotations

from kanalysis.intervals import (  # re-exported: safety users look for them here
    clopper_pearson,
    newcombe_difference,
    poisson_rate_interval,
    wilson_interval,
)
from kanalysis.safety.adapters import SEVERITY_ORDER, VITAL_VARIABLES
from kanalysis.safety.adverse_events import (
    ae_by_severity,
    ae_incidence,
    ae_risk_difference,
    ae_serious,
)
from kanalysis.safety.models import (
    DissociationResponseResult,
    InfusionTrendResult,
    dissociation_response,
    infusion_trend,
)
from kanalysis.safety.vitals import (
    DEFAULT_DBP_THRESHOLD,
    DEFAULT_RETURN_TOLERANCE,
    DEFAULT_SBP_THRESHOLD,
    exceedances,
    infusion_course,
    return_time_summary,
    return_to_baseline,
    session_exceedances,
    session_peaks,
)

__all__ = [
    "DEFAULT_DBP_THRESHOLD",
    "DEFAULT_RETURN_TOLERANCE",
    "DEFAULT_SBP_THRESHOLD",
    "SEVERITY_ORDER",
    "VITAL_VARIABLES",
    "DissociationResponseResult",
    "InfusionTrendResult",
    "ae_by_severity",
    "ae_incidence",
    "ae_risk_difference",
    "ae_serious",
    "clopper_pearson",
    "dissociation_response",
    "exceedances",
    "infusion_course",
    "infusion_trend",
    "newcombe_difference",
    "poisson_rate_interval",
    "return_time_summary",
    "return_to_baseline",
    "session_exceedances",
    "session_peaks",
    "wilson_interval",
]

