"""Cox proportional-hazards regression (statsmodels PHReg) with R-style output."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.durability._checks import _group_levels, _require_columns, _survival_arrays
from kanalysis.durability.results import CoxResult
from kanalysis.errors import ConfigurationError, DataValidationError, StatisticalWarning
from kanalysis.intervals import normal_quantile
from kanalysis.results import resolve_conf_level


def _design(table: pd.DataFrame, formula: str):
    import formulaic

    rhs = formula.split("~", 1)[1] if "~" in formula else formula
    if not rhs.strip():
        raise ConfigurationError("The Cox formula needs at least one covariate, e.g. 'arm + age'.")
    try:
        mm = formulaic.model_matrix("1 + " + rhs, table)
    except Exception as exc:  # formulaic raises many types; re-raise with the formula named
        raise ConfigurationError(f"Cannot build the design for formula {formula!r}: {exc}") from exc
    terms = {}
    for st in mm.model_spec.structure:
        if st.columns == ["Intercept"]:
            continue
        terms[str(st.term)] = list(st.columns)
    x = mm.drop(columns="Intercept")
    return x, terms


def _check_design(x: pd.DataFrame, terms: dict, used: pd.DataFrame, formula: str) -> None:
    """Refuse a term that lost its columns (one-level factor) and constant covariates."""
    for term, cols in terms.items():
        if not cols:
            raise DataValidationError(
                f"cox: term {term!r} of {formula!r} has no column in the model: it is a factor "
                "with a single level in the rows used (e.g. a one-arm cohort), so no hazard "
                "ratio can be estimated for it. Drop the term or analyse a cohort with two or "
                "more levels.")
    for col in x.columns:
        values = x[col].to_numpy(dtype=float)
        if np.nanmax(values) == np.nanmin(values):
            term = next((t for t, cols in terms.items() if col in cols), col)
            raise DataValidationError(
                f"cox: design column {col!r} (term {term!r} of {formula!r}) is constant "
                f"({values[0]:g}) in all {len(values)} rows used; its hazard ratio is not "
                "identifiable. Drop the term.")


#: |log HR| above this, with an SE larger than the estimate, is taken as an infinite coefficient
#: (complete or quasi-complete separation); exp(15) is 3e6.
_SEPARATION_LOG_HR = 15.0


def _separated(beta, se, x: pd.DataFrame, e, formula: str) -> np.ndarray:
    """Coefficients that run off to infinity (R coxph: "coefficient may be infinite").

    Warns naming them; returns a boolean mask so that their estimates are reported as NaN
    instead of a meaningless number such as HR = 1e-12.
    """
    bad = np.array([not np.isfinite(beta[j]) or not np.isfinite(se[j])
                    or (abs(beta[j]) > _SEPARATION_LOG_HR and se[j] > abs(beta[j]) / 10)
                    for j in range(len(beta))], dtype=bool)
    if bad.any():
        cols = [str(c) for c, b in zip(x.columns, bad, strict=True) if b]
        warnings.warn(
            f"cox: the coefficient of {cols} in {formula!r} is infinite (log HR "
            f"{[round(float(v), 1) for v in beta[bad]]}): the covariate separates the "
            f"{int(e.sum())} event(s) from the censored rows completely (e.g. no event in one "
            "arm), so the partial likelihood has no maximum. Its estimate, CI and p-value are "
            "reported as NaN; report the event counts by group instead, or use a penalised "
            "(Firth) Cox model.", StatisticalWarning, stacklevel=3)
    return bad


def cox(
    table: pd.DataFrame,
    formula: str,
    time: str = "time",
    event: str = "event",
    ties: str = "efron",
    start: str | None = None,
    strata: str | Sequence[str] | None = None,
    reference: dict | None = None,
    conf_level: float | None = None,
    *,
    alpha: float | None = None,
    confidence: float | None = None,
) -> CoxResult:
    """Cox proportional-hazards regression (statsmodels ``PHReg``) with R-style output.

    .. math:: h_i(t) = h_0(t) \\exp(x_i^\\top \\beta)

    Fitted by Newton-Raphson on the partial likelihood with Efron's (default, as R's ``coxph``)
    or Breslow's handling of tied event times. Counting-process data (one row per interval
    ``(start, stop]``, e.g. from :func:`counting_process`) are fitted by passing ``start``; a row
    is at risk at t when ``start < t <= stop``, as in R's ``Surv(start, stop, event)``.

    Parameters
    ----------
    table : pandas.DataFrame
        Analysis table (one row per subject, or per interval with ``start``).
    formula : str
        Right-hand side (``"arm + age"`` or ``"~ arm + age"``); categorical columns get
        treatment contrasts against their first sorted level (as R's factors).
    time, event : str
        Stop time and event (1/0) columns.
    ties : {"efron", "breslow"}
        Tie handling.
    start : str, optional
        Start-time column for counting-process data.
    strata : str or list of str, optional
        Columns defining strata with separate baseline hazards (R ``strata()``).
    reference : dict, optional
        Reference level per categorical column, e.g. ``{"arm": "no_maintenance"}`` so that the
        HR is maintenance vs none (default: first sorted level, as R).
    conf_level : float, default 0.95
        Level of the HR confidence interval (``alpha`` and ``confidence`` are deprecated
        spellings).

    Returns
    -------
    CoxResult
        ``to_frame()`` by term: ``estimate`` (log HR), ``std_error``, ``statistic`` (z),
        ``p_value``, ``ci_lower``/``ci_upper`` (log scale) and ``hr, hr_lower, hr_upper``;
        ``coef_table`` holds R's names (``coef, se, hr, lower, upper, z, p``).

    Raises
    ------
    DataValidationError
        No rows or no events; a term without any design column in the rows used (a factor with
        one level, such as ``arm`` in a one-arm cohort), or a constant covariate.

    Warns
    -----
    StatisticalWarning
        A coefficient is infinite because a covariate separates events from non-events
        completely (e.g. no event in one arm); that row is reported as NaN, not as HR = 1e-12.

    References
    ----------
    Cox DR (1972). J R Stat Soc B 34:187-220; Efron (1977); Therneau & Grambsch (2000), ch. 3.
    """
    from statsmodels.duration.hazard_regression import PHReg

    if ties not in ("efron", "breslow"):
        raise ConfigurationError(f"ties must be 'efron' or 'breslow', got {ties!r}.")
    conf_level = resolve_conf_level(conf_level, alpha=alpha, confidence=confidence, where="cox")
    z = normal_quantile(conf_level)
    if isinstance(table, pd.DataFrame) and len(table) == 0:
        raise DataValidationError("cox: the table has no rows; there is nothing to fit.")
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    if reference:
        table = table.copy()
        for col, level in reference.items():
            _require_columns(table, [col])
            levels = _group_levels(table[col].dropna())
            if level not in levels:
                raise ConfigurationError(
                    f"reference level {level!r} is not a level of {col!r}: {levels}.")
            table[col] = pd.Categorical(table[col], [level] + [v for v in levels if v != level])
    x, terms = _design(table, formula)
    used = table.loc[x.index]
    t, e, _, s = _survival_arrays(used, time, event, None, start=start, strata=strata_cols)
    n_dropped = len(table) - len(used)
    if n_dropped:
        warnings.warn(f"cox: {n_dropped} rows with missing covariates were left out.",
                      StatisticalWarning, stacklevel=2)
    if len(t) == 0:
        raise DataValidationError(
            f"cox: no rows are left once rows with missing covariates of {formula!r} are dropped.")
    if e.sum() == 0:
        raise DataValidationError(
            f"cox: column {event!r} has no events (all {len(t)} rows are censored); a Cox model "
            "cannot be fitted.")
    _check_design(x, terms, used, formula)
    if e.sum() < 10 * x.shape[1]:
        # Peduzzi et al. (1995) J Clin Epidemiol 48:1503: < 10 events per coefficient
        warnings.warn(
            f"cox: {int(e.sum())} events for {x.shape[1]} coefficient(s) (< 10 per coefficient); "
            "estimates and Wald CIs may be unreliable.", StatisticalWarning, stacklevel=2)
    skey = (used[strata_cols].astype(str).agg("|".join, axis=1).to_numpy()
            if strata_cols else None)
    xa = x.to_numpy(dtype=float)
    model = PHReg(t, xa, status=e, entry=s, strata=skey, ties=ties)
    res = model.fit(method="newton", maxiter=100, tol=1e-12, disp=False)
    beta = np.asarray(res.params, dtype=float)
    se = np.asarray(res.bse, dtype=float)
    separated = _separated(beta, se, x, e, formula)
    beta_shown = np.where(separated, np.nan, beta)
    se = np.where(separated, np.nan, se)
    zval = beta_shown / se
    summ = pd.DataFrame(
        {
            "coef": beta_shown,
            "se": se,
            "hr": np.exp(beta_shown),
            "lower": np.exp(beta_shown - z * se),
            "upper": np.exp(beta_shown + z * se),
            "z": zval,
            "p": 2 * stats.norm.sf(np.abs(zval)),
        },
        index=pd.Index(x.columns, name="term"),
    )
    ll = float(model.loglike(beta))
    ll0 = float(model.loglike(np.zeros_like(beta)))
    data = {"t": t, "e": e, "s": s, "x": xa, "strata": skey, "beta": beta}
    return CoxResult(summ, ll, ll0, ties, len(t), int(e.sum()), terms, conf_level, data)
