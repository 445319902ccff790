"""Kaplan-Meier estimator with R survfit's pointwise intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kanalysis.durability._checks import CONF_TYPES, _group_levels, _survival_arrays
from kanalysis.durability._curves import _confint, _km_curve
from kanalysis.durability.results import KaplanMeierResult
from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.intervals import normal_quantile
from kanalysis.results import resolve_conf_level


def kaplan_meier(
    table: pd.DataFrame,
    time: str = "time",
    event: str = "event",
    group: str | None = "arm",
    conf_type: str = "log",
    conf_level: float | None = None,
    *,
    alpha: float | None = None,
    confidence: float | None = None,
) -> KaplanMeierResult:
    """Kaplan-Meier survival curves by group with Greenwood pointwise confidence intervals.

    .. math::
        \\hat S(t) = \\prod_{t_j \\le t} (1 - d_j / n_j), \\qquad
        \\widehat{\\mathrm{Var}}\\{\\log \\hat S(t)\\} = \\sum_{t_j \\le t} \\frac{d_j}{n_j(n_j - d_j)}

    CI types as R ``survfit(conf.type=)``: ``"log"`` (R's default)
    :math:`\\hat S \\exp(\\pm z\\,\\mathrm{se})` capped at 1; ``"log-log"`` (SAS's default and
    lifelines') :math:`\\hat S^{\\exp(\\pm z\\,\\mathrm{se}/\\log \\hat S)}`; ``"plain"``
    :math:`\\hat S (1 \\pm z\\,\\mathrm{se})` clipped to [0, 1].

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject.
    time, event : str
        Follow-up time and event indicator (1 = event, 0 = censored) columns.
    group : str or None
        Grouping column (e.g. ``"arm"``); None for one curve (labelled ``"all"``).
    conf_type : {"log", "log-log", "plain"}
        Pointwise interval type; no default hides the choice: it is stored on the result.
    conf_level : float, default 0.95
        Confidence level (``alpha`` and ``confidence`` are deprecated spellings).

    Returns
    -------
    KaplanMeierResult
        ``to_frame()``: the curves with ``estimate`` = S(t), ``std_error``, ``ci_lower``,
        ``ci_upper``. With :meth:`~KaplanMeierResult.median`, :meth:`~KaplanMeierResult.quantile`,
        :meth:`~KaplanMeierResult.survival_at` and :meth:`~KaplanMeierResult.at_risk`.

    References
    ----------
    Kaplan & Meier (1958); Greenwood (1926); Therneau & Grambsch (2000), ch. 2; R ``survfit``.
    """
    if conf_type not in CONF_TYPES:
        raise ConfigurationError(
            f"conf_type must be one of {CONF_TYPES} (R's survfit conf.type), got {conf_type!r}."
        )
    conf_level = resolve_conf_level(conf_level, alpha=alpha, confidence=confidence,
                                    where="kaplan_meier")
    z = normal_quantile(conf_level)
    t, e, g, _ = _survival_arrays(table, time, event, group)
    if len(t) == 0:
        raise DataValidationError("kaplan_meier: the table has no rows; there is nothing to estimate.")
    gname = group if group is not None else "group"
    if g is None:
        g = np.array(["all"] * len(t), dtype=object)
    levels = _group_levels(g)
    frames, ns = [], {}
    for level in levels:
        m = g == level
        c = _km_curve(t[m], e[m])
        c["std_err"] = c["std_err_log"] * c["survival"]
        c["lower"], c["upper"] = _confint(c["survival"].to_numpy(), c["std_err_log"].to_numpy(),
                                          conf_type, z)
        c.insert(0, gname, level)
        frames.append(c)
        ns[level] = int(m.sum())
    tab = pd.concat(frames, ignore_index=True)
    return KaplanMeierResult(tab, gname, conf_type, conf_level, levels, ns)
