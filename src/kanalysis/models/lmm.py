r"""Linear mixed models of symptom trajectories: random intercepts and slopes.

.. math::

    y_i = X_i\beta + Z_i u_i + e_i,\quad u_i \sim N(0, G),\quad e_i \sim N(0, \sigma^2 I),
    \qquad V_i = Z_i G Z_i' + \sigma^2 I.

``G = sigma^2 Lambda Lambda'`` with lower-triangular :math:`\Lambda` (lme4's :math:`\theta`); the
criterion is the profiled REML (or ML) deviance of Bates et al. (2015), minimised over
:math:`\theta` with an analytic gradient; see :mod:`kanalysis.models._engine`.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from formulaic import Formula
from scipy import stats

from kanalysis.errors import ConfigurationError, ConvergenceWarning, StatisticalWarning
from kanalysis.models import inference
from kanalysis.models._design import (
    Design,
    _float_columns,
    _required_variables,
    build_design,
    design_rows,
)
from kanalysis.models._engine import LMMEngine, LMMPatternEngine, lmm_sums
from kanalysis.models._results import (
    FixedEffectsResult,
    SummaryText,
    minimise,
    single_thread_blas,
)


class LMMResult(FixedEffectsResult):
    r"""Result of :func:`kanalysis.lmm`.

    Attributes
    ----------
    fe_params, bse, df, tvalues, pvalues : pandas.Series
        Fixed effects, standard errors, Satterthwaite df, t statistics and two-sided p-values.
    llf : float
        Log-likelihood on lme4's scale (``logLik(fit)``): the REML log-likelihood when
        ``reml=True`` (SAS's "-2 Res Log Likelihood" is ``-2 * llf``), else the ML one.
    aic, bic : float
        lme4's definitions: ``-2 llf + 2k`` and ``-2 llf + k log(n_obs)`` with ``k`` = number of
        fixed effects + covariance parameters + 1.
    scale : float
        Residual variance :math:`\sigma^2`.
    cov_re : pandas.DataFrame
        Random-effects covariance :math:`G`, indexed by random-effect term.
    random_effects : pandas.DataFrame
        Conditional modes (BLUPs) :math:`\hat u_i = G Z_i' V_i^{-1}(y_i - X_i\hat\beta)`.
    n_obs, n_groups, n_dropped : int
        Rows used, subjects, rows dropped for missing values.
    timings : dict
        Wall seconds of the fit's stages (``design_seconds``: formulas and checks;
        ``sums_seconds``: the one pass over the rows for the per-subject sums;
        ``optimise_seconds``; ``inference_seconds``: Hessian, Satterthwaite pieces, BLUPs) and
        the number of criterion-and-gradient ``evaluations`` and exact ``hessians`` used.
    """

    def __init__(self, design: Design, engine: LMMEngine, theta, re_names, converged, reml,
                 groups, formula, re_formula, opt_message, z_scale=None):
        self.design = design
        self.engine = engine
        # The engine works with Z / z_scale (random-effect columns of unit root-mean-square, so
        # that theta is well scaled whatever the time unit); results are reported in the
        # original units. theta below is lme4's (original scale).
        z_scale = np.ones(engine.q) if z_scale is None else np.asarray(z_scale, float)
        self.z_scale = z_scale
        self._theta_internal = np.asarray(theta)
        self.theta = (engine.lam(theta) / z_scale[:, None])[engine.tril]
        self.re_names = re_names
        self.converged = converged
        self.reml = reml
        self.groups = groups
        self.formula = formula
        self.re_formula = re_formula
        self.optimizer_message = opt_message
        self.n_obs = engine.N
        self.n_groups = engine.G
        self.n_dropped = design.n_dropped
        self.method = "REML" if reml else "ML"
        self.df_method = "satterthwaite"
        theta = self._theta_internal
        dev = engine.deviance(theta)
        self.llf = -0.5 * dev
        k = engine.p + engine.n_theta + 1
        self.n_params = k
        self.aic = dev + 2 * k
        self.bic = dev + k * np.log(engine.N)
        nat = engine.natural_from_theta(theta)
        st = engine.state(nat)
        self.scale = float(st["sigma2"])
        G_internal = st["G"]
        G = G_internal / np.outer(z_scale, z_scale)
        self.cov_re = pd.DataFrame(G, index=re_names, columns=re_names)
        # Satterthwaite in lmerTest's parameters (theta, sigma): identical to any other
        # parameterisation at interior optima, and at singular fits (theta_jj = 0) it drops the
        # degenerate direction exactly as lmerTest does.
        vp = np.r_[theta, np.sqrt(self.scale)]
        # Exact Hessian of the -2 log-likelihood and P_k = X'V^-1 V_k V^-1 X in (theta, sigma)
        # from the engine's closed forms (no finite differences).
        H, P = engine.vp_derivatives(vp)
        W, ok = inference.param_covariance(H)
        self.hessian_ok = ok
        self._init_inference(st["beta"], st["cov_beta"], P, W)
        self.cov_theta_sigma = W
        b = engine.blups(nat) / z_scale[None, :]
        self.random_effects = pd.DataFrame(b, index=pd.Index(design.subject_labels, name=groups),
                                           columns=re_names)
        self._check_boundary(G_internal, ok)

    def _check_boundary(self, G, hessian_ok):
        """G on the internal scale (unit-RMS random-effect columns), comparable with sigma."""
        sd = np.sqrt(np.maximum(np.diag(G), 0))
        msgs = []
        if np.any(sd < 1e-4 * np.sqrt(self.scale)):
            zero = [n for n, s in zip(self.re_names, sd, strict=True)
                    if s < 1e-4 * np.sqrt(self.scale)]
            msgs.append(f"the random-effect variance of {zero} is estimated at (nearly) zero")
        if len(sd) > 1 and np.all(sd > 0):
            R = G / np.outer(sd, sd)
            if np.any(np.abs(R[~np.eye(len(sd), dtype=bool)]) > 0.9999):
                msgs.append("a random-effects correlation is estimated at +-1")
        if msgs:
            self.boundary = True
            warnings.warn(
                "lmm: boundary (singular) fit: " + "; ".join(msgs) + ". The data carry no "
                "information on this part of the random-effects covariance; consider a simpler "
                "re_formula (e.g. drop the random slope) or rescaling time (weeks instead of "
                "days). Standard errors and df of the fixed effects remain usable.",
                ConvergenceWarning, stacklevel=3)
        else:
            self.boundary = False
            if not hessian_ok:
                warnings.warn(
                    "lmm: the Hessian of the log-likelihood in the covariance parameters is not "
                    "positive definite, so the Satterthwaite df are approximate. Try rescaling "
                    "time or a simpler re_formula.", ConvergenceWarning, stacklevel=3)

    # ------------------------------------------------------------------------------------------
    def variance_components(self) -> pd.DataFrame:
        """Tidy random-effects and residual SDs and correlations.

        Columns ``group``, ``term1``, ``term2``, ``variance``, ``sd_or_corr`` (an SD when
        ``term2`` is missing, else a correlation), like ``as.data.frame(VarCorr(fit))`` in lme4.
        """
        G = self.cov_re.to_numpy()
        sd = np.sqrt(np.maximum(np.diag(G), 0))
        rows = []
        for i, n in enumerate(self.re_names):
            rows.append((self.groups, n, None, G[i, i], sd[i]))
        for i in range(len(sd)):
            for j in range(i):
                corr = G[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                rows.append((self.groups, self.re_names[j], self.re_names[i], G[i, j], corr))
        rows.append(("Residual", None, None, self.scale, np.sqrt(self.scale)))
        return pd.DataFrame(rows, columns=["group", "term1", "term2", "variance", "sd_or_corr"])

    def predict(self, newdata: pd.DataFrame | None = None, level: str = "population",
                alpha: float = 0.05) -> pd.DataFrame:
        """Predictions with a confidence interval.

        ``level="population"`` gives :math:`x'\\hat\\beta` with its standard error, Satterthwaite
        df and CI (the population-average trajectory); ``level="subject"`` adds each subject's
        BLUPs (no CI; subjects not in the fit get the population value).
        """
        if level == "population":
            return self._predict_population(newdata, alpha)
        if newdata is None:
            newdata = self.design.data
        Xn = design_rows(self.design, newdata)
        if level == "subject":
            if self.groups not in newdata.columns:
                raise ConfigurationError(f"predict(level='subject') needs the column "
                                         f"{self.groups!r} in newdata")
            Zn = np.asarray(Formula(self.re_formula).get_model_matrix(newdata), dtype=float)
            b = self.random_effects.reindex(newdata[self.groups].to_numpy()).fillna(0.0)
            pred = Xn @ self._beta + np.einsum("nq,nq->n", Zn, b.to_numpy())
            return pd.DataFrame({"predicted": pred}, index=newdata.index)
        raise ConfigurationError("predict: level must be 'population' or 'subject'")

    predict_population = predict

    def summary(self) -> SummaryText:
        """Printable summary (also what ``print(result)`` shows)."""
        lines = [
            f"Linear mixed model fit by {self.method}: {self.formula}",
            f"Random effects: {self.re_formula} | {self.groups}",
            f"Observations: {self.n_obs}  Subjects: {self.n_groups}  "
            f"Rows dropped (missing values): {self.n_dropped}",
            f"logLik: {self.llf:.4f}  AIC: {self.aic:.4f}  BIC: {self.bic:.4f}  "
            f"converged: {self.converged}",
            "",
            "Variance components:",
        ]
        vc = self.variance_components()
        lines += vc.to_string(index=False, float_format=lambda v: f"{v:.5g}").splitlines()
        lines += ["", "Fixed effects (Satterthwaite df):"]
        lines += self._fe_summary_lines()
        return SummaryText("\n".join(lines))

    def __repr__(self) -> str:
        return str(self.summary())


@single_thread_blas
def lmm(data: pd.DataFrame, formula: str, groups: str, re_formula: str = "~ 1",
        reml: bool = True) -> LMMResult:
    r"""Fit a linear mixed model with correlated random effects per subject.

    .. math::

        y_i = X_i\beta + Z_i u_i + e_i,\qquad u_i\sim N(0, G),\; e_i\sim N(0,\sigma^2 I),

    fitted by REML (default) or ML. The criterion is lme4's profiled deviance (Bates et al.
    2015); :math:`\beta` and :math:`\sigma^2` are profiled out and the relative covariance factor
    :math:`\theta` is optimised with an analytic gradient, using per-subject sufficient statistics
    and the Woodbury identity (one q x q solve per subject and evaluation).

    Parameters
    ----------
    data : DataFrame
        Long data, one row per assessment.
    formula : str
        Fixed part, Wilkinson notation (formulaic), e.g. ``"score ~ day * arm"``; ``C(visit)``
        makes a factor.
    groups : str
        Subject column.
    re_formula : str
        Random part, e.g. ``"~ 1 + day"`` (random intercept and slope, correlated). Default
        ``"~ 1"`` (random intercept).
    reml : bool
        REML (default) or ML.

    Returns
    -------
    LMMResult

    Notes
    -----
    ``llf`` follows lme4's ``logLik`` (REML criterion including :math:`\log|X'V^{-1}X|`, the
    same as SAS PROC MIXED's -2 Res Log Likelihood). Degrees of freedom are Satterthwaite's, as
    in lmerTest, computed from the Hessian of the deviance in lmerTest's parameters
    (:math:`\theta, \sigma`). Subjects sharing the same observed times share their Woodbury
    blocks, so with a visit schedule each evaluation costs the same for 1,000 or 100,000
    subjects. Rows with a missing outcome or covariate are dropped (``n_dropped``); a fit on the
    boundary (a random-effect variance at zero, a correlation at +-1) or a failed optimisation
    raises a ``ConvergenceWarning`` that says what to try.

    References
    ----------
    Bates D, Maechler M, Bolker B, Walker S (2015). J Stat Softw 67(1).
    Kuznetsova A, Brockhoff PB, Christensen RHB (2017). J Stat Softw 82(13).
    """
    if not isinstance(re_formula, str) or not re_formula.strip().startswith("~"):
        raise ConfigurationError(f"lmm: re_formula must look like '~ 1 + day', got {re_formula!r}")
    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(f"lmm: data must be a pandas DataFrame, got {type(data)!r}")
    try:
        re_vars = sorted(_required_variables(re_formula, data.columns))
    except ConfigurationError as exc:
        raise ConfigurationError(f"lmm: could not parse re_formula {re_formula!r}: {exc}") from exc
    t_start = time.perf_counter()
    design = build_design(data, formula, groups, extra_columns=re_vars, what="lmm")
    try:
        Zmm = Formula(re_formula).get_model_matrix(design.data)
    except Exception as exc:
        raise ConfigurationError(f"lmm: could not build the random-effects design "
                                 f"{re_formula!r}: {exc}") from exc
    Z = _float_columns(Zmm)
    re_names = [str(c) for c in Zmm.columns]
    if Z.shape[1] == 0:
        raise ConfigurationError("lmm: re_formula gives no random effects")
    z_scale = np.sqrt(np.einsum("ij,ij->j", Z, Z) / Z.shape[0])
    z_scale[~(z_scale > 0)] = 1.0
    Z /= z_scale
    t_design = time.perf_counter()
    # The one pass over the rows: per-subject X'Z, Z'Z, Z'y and the totals.
    sums = lmm_sums(design.y, design.X, Z, design.subject_starts)
    pat, keys = LMMPatternEngine.patterns(np.transpose(sums["At"], (2, 0, 1)))
    if LMMPatternEngine.feasible(len(keys), len(pat), design.X.shape[1], Z.shape[1]):
        engine = LMMPatternEngine(design.y, design.X, Z, design.subject_starts, reml=reml,
                                  patterns=(pat, keys), sums=sums)
    else:
        engine = LMMEngine(design.y, design.X, Z, design.subject_starts, reml=reml, sums=sums)
    del Z
    t_sums = time.perf_counter()
    if engine.N <= engine.p:
        raise ConfigurationError(f"lmm: {engine.N} observations cannot estimate {engine.p} fixed "
                                 "effects")
    if np.all(engine.n_i == 1):
        warnings.warn("lmm: every subject has a single observation, so random effects are not "
                      "identifiable from the residual variance.", StatisticalWarning,
                      stacklevel=2)
    theta0 = engine.start_theta()
    advice = ("Try rescaling time (e.g. weeks instead of days), centring covariates, or a "
              "simpler re_formula.")
    counts = {"evaluations": 0, "hessians": 0}

    def fun_grad(th):
        counts["evaluations"] += 1
        return engine.deviance_and_grad(th)

    def hess(th):
        counts["hessians"] += 1
        return engine.hessian(th)

    # theta is optimised without bounds: Lambda Lambda' does not change when a column of Lambda
    # changes sign, and projecting Newton steps onto theta_jj >= 0 can park the optimiser on the
    # saddle theta_jj = 0 (where the gradient in theta_jj vanishes by symmetry). Newton steps
    # use the exact Hessian of the profiled deviance.
    theta, converged, msg = minimise(fun_grad, theta0, what="lmm", advice=advice, hess=hess)
    theta = _canonical_theta(engine, theta)
    diag = engine.tril[0] == engine.tril[1]
    scale_th = max(float(np.max(np.abs(theta))), 1e-3)
    for j in np.flatnonzero(diag & (np.abs(theta) < 1e-6 * scale_th)):
        # second-order check at a zero diagonal: move off it and refit if that is better
        trial = theta.copy()
        trial[j] = 1e-2 * scale_th
        if engine.deviance(trial) < engine.deviance(theta) - 1e-9:
            theta, converged, msg = minimise(fun_grad, trial, what="lmm", advice=advice,
                                             hess=hess)
            theta = _canonical_theta(engine, theta)
    t_opt = time.perf_counter()
    result = LMMResult(design, engine, theta, re_names, converged, reml, groups, formula,
                       re_formula, msg, z_scale=z_scale)
    t_end = time.perf_counter()
    result.timings = {
        "design_seconds": t_design - t_start, "sums_seconds": t_sums - t_design,
        "optimise_seconds": t_opt - t_sums, "inference_seconds": t_end - t_opt,
        "total_seconds": t_end - t_start, **counts}
    return result


def _vp_to_nat(engine, vp):
    """(theta, sigma) -> (vech G, sigma^2)."""
    L = engine.lam(vp[:-1])
    s2 = vp[-1] ** 2
    return np.r_[(s2 * (L @ L.T))[engine.tril], s2]


def _vp_jacobian(engine, vp):
    """d(vech G, sigma^2) / d(theta, sigma), analytic."""
    L = engine.lam(vp[:-1])
    sigma = vp[-1]
    n_th = engine.n_theta
    J = np.zeros((n_th + 1, n_th + 1))
    for j, (r, c) in enumerate(zip(*engine.tril, strict=True)):
        E = np.zeros_like(L)
        E[r, c] = 1.0
        dG = sigma**2 * (E @ L.T + L @ E.T)
        J[:n_th, j] = dG[engine.tril]
    J[:n_th, n_th] = (2 * sigma * (L @ L.T))[engine.tril]
    J[n_th, n_th] = 2 * sigma
    return J


def _canonical_theta(engine, theta):
    """Flip column signs of Lambda so its diagonal is non-negative (lme4's convention)."""
    L = engine.lam(theta)
    sign = np.where(np.diag(L) < 0, -1.0, 1.0)
    return (L * sign[None, :])[engine.tril]


def lrt(small, big) -> pd.DataFrame:
    """Likelihood-ratio test of two nested fits (``small`` nested in ``big``).

    Both must be fitted to the same rows. For REML fits the fixed effects must be identical (as
    in R, REML likelihoods are not comparable across fixed effects); refit with ``reml=False``
    to compare fixed effects. Tests on a boundary (a variance = 0) are conservative.

    Returns a one-row DataFrame: ``statistic``, ``df``, ``p_value``, ``llf_small``, ``llf_big``.
    """
    if small.n_obs != big.n_obs:
        raise ConfigurationError(f"lrt: the fits use different numbers of rows ({small.n_obs} vs "
                                 f"{big.n_obs}); fit both to the same data")
    if small.reml != big.reml:
        raise ConfigurationError("lrt: one fit is REML and the other ML; fit both the same way")
    if small.reml and list(small.fe_params.index) != list(big.fe_params.index):
        raise ConfigurationError("lrt: REML fits with different fixed effects cannot be "
                                 "compared; refit both with reml=False")
    df = big.n_params - small.n_params
    if df <= 0:
        raise ConfigurationError(f"lrt: the bigger model must have more parameters "
                                 f"({big.n_params} vs {small.n_params}); swap the arguments?")
    stat = max(2.0 * (big.llf - small.llf), 0.0)
    return pd.DataFrame({"statistic": [stat], "df": [df], "p_value": [stats.chi2.sf(stat, df)],
                         "llf_small": [small.llf], "llf_big": [big.llf]})


def log_time(hours):
    """Log time scale ``log(1 + hours)`` for rapid-onset trajectories (ketamine: hours to days)."""
    h = np.asarray(hours, dtype=float)
    if np.any(h[np.isfinite(h)] <= -1):
        raise ConfigurationError("log_time: hours must be > -1")
    out = np.log1p(h)
    return pd.Series(out, index=hours.index, name=hours.name) if isinstance(hours, pd.Series) \
        else out


def piecewise(time, knots) -> pd.DataFrame:
    """Piecewise-linear basis: ``time`` and ``max(time - knot, 0)`` for each knot.

    Columns are named ``time``, ``time_after_<knot>``; add them to the data and use them in the
    formula (e.g. ``score ~ (day + day_after_7) * arm``).
    """
    t = pd.Series(np.asarray(time, dtype=float),
                  index=getattr(time, "index", None), name=getattr(time, "name", None) or "time")
    name = t.name
    out = {name: t}
    for k in np.atleast_1d(knots):
        label = f"{name}_after_{k:g}"
        out[label] = (t - float(k)).clip(lower=0.0)
    return pd.DataFrame(out)
