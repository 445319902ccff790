r"""Mixed model for repeated measures (MMRM): categorical visits, structured visit covariance.

.. math::

    y_i = X_i\beta + \varepsilon_i,\qquad \varepsilon_i \sim N(0, \Sigma_{o_i o_i}),

where :math:`\Sigma` (t x t, one row per visit level) has a chosen structure (see
:data:`kanalysis.models.covariance.STRUCTURES`), optionally one per group (e.g. per arm), and
:math:`o_i` are the visits subject *i* attended (missing at random). Fitted by REML or ML with
the engine in :mod:`kanalysis.models._engine`; :func:`mmrm` is
``MMRMModel(...).fit()`` (:mod:`kanalysis.models.mmrm_model`), which also refits.
"""

from __future__ import annotations

import pandas as pd

from kanalysis.models.mmrm_model import DF_METHODS, MMRMModel
from kanalysis.models.mmrm_result import MMRMResult

__all__ = ["DF_METHODS", "MMRMResult", "mmrm"]


def mmrm(data: pd.DataFrame, formula: str, subject: str, visit: str, covariance="us",
         reml: bool = True, group: str | None = None,
         df_method: str = "satterthwaite", visit_order: list | None = None,
         time: str | None = None, weights: str | None = None,
         vcov: str = "model") -> MMRMResult:
    r"""Fit a mixed model for repeated measures (MMRM).

    .. math::

        y_i = X_i\beta + \varepsilon_i,\qquad \varepsilon_i\sim N(0, \Sigma_{o_io_i}),

    with :math:`\Sigma` over the levels of ``visit`` structured as ``covariance``. Missing visits
    are handled by likelihood (missing at random); subjects are grouped by their observed-visit
    pattern so each pattern's covariance is factorised once per evaluation.

    Parameters
    ----------
    data : DataFrame
        Long data, one row per subject and visit.
    formula : str
        Fixed part, e.g. ``"CHANGE ~ BASVAL*C(VISIT) + THERAPY*C(VISIT)"``.
    subject, visit : str
        Subject and visit columns. Visit levels are ordered by category order (Categorical),
        numerically (numbers or numeric strings), or else (labels such as ``"40min"``,
        ``"day1"``) by the order in which they follow each other within subjects in ``data``
        as given; the order matters for ``ar1``, ``ar1h`` and ``toep`` and for the rows of
        ``cov``. Use ``visit_order`` to set it explicitly.
    covariance : str or list of str
        Within-subject covariance structure, one of
        :data:`kanalysis.models.covariance.STRUCTURES` (``us``, ``cs``, ``csh``, ``ar1``,
        ``ar1h``, ``toep``, ...), or a list tried in order: the first structure that converges
        is used (``result.covariance``; ``result.covariance_attempts`` says why the others
        were not), as pre-specified in many SAPs, e.g. ``["us", "toeph", "ar1h", "cs"]``.
    reml : bool
        REML (default) or ML.
    group : str, optional
        Column (constant within subject) giving a separate covariance per level, e.g. the arm
        (SAS ``REPEATED / GROUP=``).
    visit_order : list, optional
        Explicit order of the visit levels (overrides the rule above).
    time : str, optional
        Numeric column with each visit's time (one value per visit level, e.g. ``AVISITN`` or
        the scheduled day), the coordinates of the spatial structure ``sp_exp``. Without it a
        numeric ``visit`` column serves as the coordinates.
    weights : str, optional
        Column of positive observation weights (SAS ``WEIGHT``, R mmrm ``weights``): the
        residual covariance of subject *i* is :math:`W_i^{-1/2}\Sigma W_i^{-1/2}`, so an
        observation with weight 2 has half the variance. (Bootstrap multiplicities of subjects
        are ``MMRMModel.refit(weights=...)``, a different thing.)
    vcov : {"model", "empirical"}
        Covariance of the fixed effects: model-based (default; Kenward-Roger adjusted with
        ``df_method="kenward-roger"``) or the empirical sandwich (SAS ``EMPIRICAL``, R mmrm
        ``"Empirical"``, CR0) with Bell & McCaffrey's Satterthwaite df as R mmrm computes them.
    df_method : {"satterthwaite", "kenward-roger"}
        Satterthwaite df with the model-based covariance, or Kenward-Roger adjusted covariance
        and df (SAS ``DDFM=KR``; for ``us``, ``cs`` and ``toep`` the covariance is linear in its
        parameters, which reproduces SAS's KR for TYPE=UN).

    Returns
    -------
    MMRMResult
        ``fe_params`` and ``llf`` at once; standard errors, df, LS-means and tests on first use.

    Raises
    ------
    FitFailedError
        When no starting value (and no structure of a fallback list) gives a converged fit.

    References
    ----------
    Mallinckrodt CH et al. (2008). Drug Inf J 42:303-319.
    Kenward MG, Roger JH (1997). Biometrics 53:983-997.
    Sabanes Bove D et al. mmrm: Mixed Models for Repeated Measures (R package vignettes).
    """
    return MMRMModel(data, formula, subject=subject, visit=visit, covariance=covariance,
                     reml=reml, group=group, df_method=df_method,
                     visit_order=visit_order, time=time, weights=weights, vcov=vcov).fit()
