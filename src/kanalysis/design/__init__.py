"""Trial design by simulation and by formula: power and sample size for ketamine studies.

- :class:`Scenario` / :meth:`Scenario.from_synthetic`: the data-generating model
  (:mod:`kanalysis.design.scenario`);
- :func:`simulate_power`: seeded replicates on a laptop or a Dask cluster, summarised per
  sample size (:mod:`kanalysis.design.simulate`), with the analyses of
  :mod:`kanalysis.design.analyses`;
- analytic twins (:mod:`kanalysis.design.analytic`): :func:`power_mmrm` (Lu, Luo & Chen
  2008), :func:`power_lmm_slope` (Diggle et al. 2002; Liu & Liang 1997), :func:`events_needed`
  (Schoenfeld; Freedman), :func:`sample_size_survival` (Lachin & Foulkes),
  :func:`power_two_proportions`;
- reports (:mod:`kanalysis.design.report`): the power table, the power curve, assumptions.
"""

from kanalysis.design.analytic import (
    AnalyticPower,
    events_needed,
    power_lmm_slope,
    power_mmrm,
    power_time_averaged,
    power_two_proportions,
    sample_size_survival,
)
from kanalysis.design.scenario import Scenario, SyntheticScenario, load_scenario
from kanalysis.design.simulate import PowerResult, merge_results, simulate_power

__all__ = [
    "AnalyticPower",
    "PowerResult",
    "Scenario",
    "SyntheticScenario",
    "events_needed",
    "load_scenario",
    "merge_results",
    "power_lmm_slope",
    "power_mmrm",
    "power_time_averaged",
    "power_two_proportions",
    "sample_size_survival",
    "simulate_power",
]
