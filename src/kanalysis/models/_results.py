"""Shared optimiser driver and the fixed-effects part of the LMM and MMRM results."""

from __future__ import annotations

import functools
import threading
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from kanalysis.errors import ConfigurationError, ConvergenceError, ConvergenceWarning
from kanalysis.models import inference
from kanalysis.models._design import Design, design_rows, reference_grid
from kanalysis.results import AnalysisResult, resolve_conf_level

#: The statistical columns of fixed-effects, LS-means and contrast tables (RESULT_COLUMNS order).
_TABLE_COLUMNS = ("estimate", "std_error", "df", "statistic", "p_value", "ci_lower", "ci_upper")


_BLAS = threading.local()
_CONTROLLER: list = []  # the threadpoolctl controller, found once (inspecting libraries is slow)


def _blas_controller():
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except Exception:  # threadpoolctl missing or unable to inspect the BLAS
            _CONTROLLER.append(None)
    return _CONTROLLER[0]


def single_thread_blas(func):
    """Run ``func`` with one BLAS thread.

    The fits work on many small matrices, where BLAS threads only add synchronisation cost;
    on a loaded 2-core machine multithreaded OpenBLAS made MMRM fits 3-4x slower. Nested calls
    (a refit inside ``refit_many``) set the limit once.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if getattr(_BLAS, "depth", 0) > 0:
            return func(*args, **kwargs)
        ctrl = _blas_controller()
        try:
            ctx = ctrl.limit(limits=1, user_api="blas") if ctrl is not None else nullcontext()
        except Exception:  # pragma: no cover - unusual BLAS setups
            ctx = nullcontext()
        _BLAS.depth = 1
        try:
            with ctx:
                return func(*args, **kwargs)
        finally:
            _BLAS.depth = 0

    return wrapper


def _hessian_fd(fun_grad, x, g, lo, forward=True):
    """Finite-difference Hessian of the objective from its analytic gradient."""
    n = len(x)
    H = np.empty((n, n))
    for k in range(n):
        h = 1e-6 * max(abs(x[k]), 1e-2)
        e = np.zeros(n)
        if forward or x[k] - h < lo[k]:
            e[k] = h
            H[:, k] = (fun_grad(x + e)[1] - g) / h
        else:
            e[k] = h
            H[:, k] = (fun_grad(x + e)[1] - fun_grad(x - e)[1]) / (2 * h)
    return 0.5 * (H + H.T)


def _newton(fun_grad, x, f, g, lo, max_iter, tol=1e-8, hess=None):
    """Damped Newton with bound projection; returns x, f, g, success flag.

    Stops when the gradient is below ``tol`` or the Newton decrement g'H^{-1}g (the predicted
    decrease of the objective, times two) is below 1e-10, whichever comes first.
    """
    prev_decrement = np.inf
    for _ in range(max_iter):
        free = ~((x <= lo + 1e-12) & (g > 0))
        gmax = np.max(np.abs(g[free]), initial=0.0)
        if gmax < tol:
            return x, f, g, True
        if prev_decrement < 1e-6 and gmax < 1e-4:
            # the full Newton step before had a tiny predicted gain: the quadratic model is
            # exact to that order, so this point is converged without another Hessian
            return x, f, g, True
        H = hess(x) if hess is not None else _hessian_fd(fun_grad, x, g, lo, forward=True)
        Hf = H[np.ix_(free, free)]
        w, V = np.linalg.eigh(Hf)
        if not np.all(np.isfinite(w)):
            return x, f, g, False
        pd_ok = w.min() > 0
        w = np.maximum(np.abs(w), 1e-8 * max(np.abs(w).max(), 1e-8))
        step = np.zeros_like(x)
        step[free] = -(V / w) @ (V.T @ g[free])
        decrement = float(-g @ step)
        if pd_ok and decrement < 1e-10:
            # converged; the step in hand is still taken (one evaluation, no Hessian) so that
            # the estimates carry the digits of a last quadratic step
            xn = np.maximum(x + step, lo)
            fn, gn = fun_grad(xn)
            if np.isfinite(fn) and fn <= f + 1e-12 * max(abs(f), 1.0):
                return xn, fn, gn, True
            return x, f, g, True
        improved = False
        lam = 1.0
        for _ in range(30):
            xn = np.maximum(x + lam * step, lo)
            fn, gn = fun_grad(xn)
            if np.isfinite(fn) and fn <= f + 1e-4 * lam * float(g @ (xn - x)) + 1e-12 * abs(f):
                improved = True
                break
            lam *= 0.5
        if not improved:
            return x, f, g, pd_ok and decrement < 1e-6
        prev_decrement = decrement if (pd_ok and lam == 1.0) else np.inf
        x, f, g = xn, fn, gn
    free = ~((x <= lo + 1e-12) & (g > 0))
    return x, f, g, bool(np.max(np.abs(g[free]), initial=0.0) < tol)


@dataclass
class Optimum:
    """What an optimisation run returns: the point, whether it converged, and its trace.

    ``trace`` has one entry per objective evaluation: ``{"stage", "f", "max_grad"}``, where
    ``stage`` is ``"newton"`` or ``"lbfgs"`` (the method that asked for the evaluation).
    """

    x: np.ndarray
    f: float
    max_grad: float
    converged: bool
    message: str
    trace: list = field(default_factory=list)

    @property
    def n_evaluations(self) -> int:
        return len(self.trace)


class _Recorder:
    """Wraps an objective-and-gradient function and records every evaluation."""

    def __init__(self, fun_grad):
        self.fun_grad = fun_grad
        self.stage = "newton"
        self.trace: list[dict] = []

    def __call__(self, x):
        f, g = self.fun_grad(x)
        g = np.asarray(g, dtype=float)
        gmax = float(np.max(np.abs(g), initial=0.0)) if np.all(np.isfinite(g)) else np.inf
        self.trace.append({"stage": self.stage, "f": float(f), "max_grad": gmax})
        return f, g


def optimise(fun_grad, x0, bounds=None, hess=None, newton_first: bool = False,
             max_newton: int = 60) -> Optimum:
    """Minimise an objective with analytic gradient; never warns or raises for non-convergence.

    Few parameters (random-effects models), or ``newton_first`` (a warm start near the optimum,
    with an analytic ``hess``): damped Newton. Otherwise, or when Newton fails: L-BFGS-B, then
    Newton polishing. Either way the optimum is tight (gradient ~1e-8), so that estimates agree
    with R's to 1e-4 or better. ``hess(x)`` returns the Hessian of the objective; without it the
    Hessian is finite-differenced from the gradient. Non-finite objectives end the run with
    ``converged=False`` and a message saying so.
    """
    rec = _Recorder(fun_grad)
    x = np.asarray(x0, dtype=float)
    n = len(x)
    lo = np.array([b[0] if b and b[0] is not None else -np.inf for b in bounds]) \
        if bounds else np.full(n, -np.inf)
    x = np.maximum(x, lo)
    f, g = rec(x)
    message = "Newton"
    ok = False
    if (n <= 8 or (newton_first and hess is not None)) and np.isfinite(f):
        x, f, g, ok = _newton(rec, x, f, g, lo, max_iter=max_newton, hess=hess)
    if not ok:
        rec.stage = "lbfgs"
        try:
            res = optimize.minimize(rec, x, jac=True, method="L-BFGS-B", bounds=bounds,
                                    options=dict(maxiter=5000, maxfun=20000, ftol=1e-13,
                                                 gtol=1e-8, maxcor=30))
            message = str(res.message)
            x = np.asarray(res.x, dtype=float)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            message = f"L-BFGS-B failed: {exc}"
        rec.stage = "newton"
        f, g = rec(x)
        if np.isfinite(f) and np.all(np.isfinite(g)):
            x, f, g, ok = _newton(rec, x, f, g, lo, max_iter=30, hess=hess)
    finite = bool(np.all(np.isfinite(x)) and np.isfinite(f) and np.all(np.isfinite(g)))
    if not finite:
        return Optimum(x, float(f), np.inf, False,
                       f"the optimiser ran into non-finite values of the likelihood ({message})",
                       rec.trace)
    free = ~((x <= lo + 1e-12) & (g > 0))
    gmax = float(np.max(np.abs(g[free]), initial=0.0))
    # Converged: the Newton iterations stopped on a tiny gradient or a tiny Newton decrement
    # (predicted gain in the log-likelihood < 1e-6), both free of the outcome's scale.
    converged = bool(ok or gmax < 1e-5)
    return Optimum(x, float(f), gmax, converged, message, rec.trace)


def minimise(fun_grad, x0, bounds=None, what="model", advice="", hess=None):
    """Minimise an objective with analytic gradient (see :func:`optimise`).

    Returns ``(x, converged, message)``; warns (``ConvergenceWarning``) when the optimum is not
    tight and raises :class:`~kanalysis.errors.ConvergenceError` on non-finite values.
    """
    opt = optimise(fun_grad, x0, bounds=bounds, hess=hess)
    if not np.isfinite(opt.max_grad):
        raise ConvergenceError(f"{what}: {opt.message}. {advice}")
    if not opt.converged:
        warnings.warn(
            f"{what}: the optimiser did not converge (largest gradient component "
            f"{opt.max_grad:.3g}, optimiser message: {opt.message}). {advice}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return opt.x, opt.converged, opt.message


def _parse_L(L, names: list[str]) -> np.ndarray:
    if isinstance(L, dict):
        unknown = [k for k in L if k not in names]
        if unknown:
            raise ConfigurationError(f"estimate(): unknown fixed-effect term(s) {unknown}; "
                                     f"the terms are {names}")
        v = np.zeros(len(names))
        for k, c in L.items():
            v[names.index(k)] = float(c)
        return v[None, :]
    if isinstance(L, pd.Series):
        return _parse_L(L.to_dict(), names)
    arr = np.atleast_2d(np.asarray(L, dtype=float))
    if arr.shape[1] != len(names):
        raise ConfigurationError(f"estimate(): L must have {len(names)} columns (one per fixed "
                                 f"effect {names}), got shape {arr.shape}")
    return arr


class SummaryText(str):
    """A summary string that displays as text (not as a quoted repr) in notebooks and REPLs."""

    def __repr__(self) -> str:
        return str(self)


def _level_label(v) -> str:
    """Level as text; integer-valued floats (a 0/1 arm column) without the trailing .0."""
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


@dataclass
class FixedEffectsInference:
    """The pieces every test of the fixed effects is computed from.

    ``C`` is the model-based covariance of the fixed effects, ``P[k]`` = X'V^-1 V_k V^-1 X (so
    dC/dphi_k = C P_k C), ``W`` the covariance of the covariance parameters, ``PhiA`` the
    Kenward-Roger adjusted covariance (or None) and ``empirical`` the sandwich covariance (or
    None). ``V`` is the one standard errors use.
    """

    C: np.ndarray
    P: np.ndarray
    W: np.ndarray
    PhiA: np.ndarray | None = None
    empirical: np.ndarray | None = None
    empirical_df: object = None  # callable(Lmat) -> df for the empirical covariance

    @property
    def V(self) -> np.ndarray:
        if self.empirical is not None:
            return self.empirical
        return self.PhiA if self.PhiA is not None else self.C


class FixedEffectsResult(AnalysisResult):
    """Fixed effects, their covariance and small-sample df (shared by LMM and MMRM results).

    ``fe_params`` is set when the result is made; everything else (standard errors, df,
    tests) comes from :attr:`_inf`, which subclasses either set at once (:meth:`_init_inference`)
    or compute on first use (:meth:`_compute_inference`).
    """

    design: Design
    df_method: str = "satterthwaite"

    def _init_inference(self, beta, C, P, W, PhiA=None, alpha=None):
        """Set the fixed effects and their inference at once (eager)."""
        self._beta = np.asarray(beta, dtype=float)
        self.fe_params = pd.Series(self._beta, index=self.design.fe_names, name="estimate")
        self._inf = FixedEffectsInference(C=C, P=P, W=W, PhiA=PhiA)

    def _compute_inference(self) -> FixedEffectsInference:  # pragma: no cover - interface
        raise NotImplementedError

    @functools.cached_property
    def _inf(self) -> FixedEffectsInference:
        return self._compute_inference()

    @property
    def _C(self):
        return self._inf.C

    @property
    def _P(self):
        return self._inf.P

    @property
    def _W(self):
        return self._inf.W

    @property
    def _PhiA(self):
        return self._inf.PhiA

    @property
    def _V(self):
        return self._inf.V

    @functools.cached_property
    def _fe_table(self) -> dict:
        return self._contrast_rows(np.eye(len(self._beta)), 0.95)

    @functools.cached_property
    def bse(self) -> pd.Series:
        """Standard errors of the fixed effects (from the covariance the fit reports)."""
        return pd.Series(self._fe_table["std_error"], index=self.fe_params.index,
                         name="std_error")

    @functools.cached_property
    def df(self) -> pd.Series:
        """Denominator degrees of freedom of each fixed effect (the fit's ``df_method``)."""
        return pd.Series(self._fe_table["df"], index=self.fe_params.index, name="df")

    @functools.cached_property
    def tvalues(self) -> pd.Series:
        return pd.Series(self._fe_table["statistic"], index=self.fe_params.index,
                         name="statistic")

    @functools.cached_property
    def pvalues(self) -> pd.Series:
        return pd.Series(self._fe_table["p_value"], index=self.fe_params.index, name="p_value")

    def cov_params(self) -> pd.DataFrame:
        """Covariance matrix of ``fe_params`` used for standard errors (model-based,
        Kenward-Roger adjusted or empirical, as the fit was asked for)."""
        names = self.fe_params.index
        return pd.DataFrame(self._V, index=names, columns=names)

    @functools.cached_property
    def cov_params_model(self) -> pd.DataFrame:
        """Model-based covariance of ``fe_params``, (X'V^-1X)^-1."""
        names = self.fe_params.index
        return pd.DataFrame(self._C, index=names, columns=names)

    # ------------------------------------------------------------------------------------------
    def conf_int(self, conf_level: float | None = None, alpha: float | None = None
                 ) -> pd.DataFrame:
        """Confidence intervals for the fixed effects with t quantiles on the model's df."""
        level = resolve_conf_level(conf_level, alpha=alpha, where="conf_int")
        q = stats.t.ppf(0.5 + level / 2, self.df.to_numpy())
        se = self.bse.to_numpy()
        b = self.fe_params.to_numpy()
        return pd.DataFrame({"lower": b - q * se, "upper": b + q * se}, index=self.fe_params.index)

    def _contrast_df(self, Lmat: np.ndarray) -> np.ndarray:
        inf = self._inf
        if inf.empirical is not None and inf.empirical_df is not None:
            return inf.empirical_df(Lmat)
        _, df = inference.satterthwaite(Lmat, inf.C, inf.P, inf.W)
        return df

    def _contrast_rows(self, Lmat: np.ndarray, conf_level: float = 0.95) -> dict:
        Lmat = np.atleast_2d(Lmat)
        est = Lmat @ self._beta
        df = self._contrast_df(Lmat)
        var = np.einsum("mp,pq,mq->m", Lmat, self._V, Lmat)
        return inference.t_table(est, var, df, conf_level)

    def estimate(self, L, conf_level: float | None = None, alpha: float | None = None
                 ) -> pd.DataFrame:
        """Estimate linear combinations ``L @ beta`` with SE, df, t statistic, p and CI.

        Parameters
        ----------
        L : array-like (p,) or (m, p), or dict term -> coefficient
            Coefficients over ``fe_params`` (in its order).
        conf_level : float
            Confidence level of the intervals (default 0.95; ``alpha`` is deprecated).
        """
        level = resolve_conf_level(conf_level, alpha=alpha, where="estimate")
        Lmat = _parse_L(L, list(self.fe_params.index))
        return pd.DataFrame(self._contrast_rows(Lmat, level))[list(_TABLE_COLUMNS)]

    def _predict_population(self, newdata, alpha=0.05):
        if newdata is None:
            newdata = self.design.data
        Xn = design_rows(self.design, newdata)
        tab = self._contrast_rows(Xn, 1.0 - alpha)
        return pd.DataFrame({
            "predicted": tab["estimate"], "std_error": tab["std_error"], "df": tab["df"],
            "ci_lower": tab["ci_lower"], "ci_upper": tab["ci_upper"]}, index=newdata.index)

    def predict(self, newdata: pd.DataFrame | None = None, conf_level: float | None = None,
                alpha: float | None = None) -> pd.DataFrame:
        """Population-average predictions x'beta with SE, df and CI (default: analysis rows)."""
        level = resolve_conf_level(conf_level, alpha=alpha, where="predict")
        return self._predict_population(newdata, 1.0 - level)

    def f_test(self, L) -> dict:
        r"""Joint Wald test of ``L beta = 0``.

        * ``df_method="kenward-roger"``: the Kenward-Roger (1997) scaled F and df with the
          adjusted covariance (SAS ``DDFM=KR``).
        * ``df_method="satterthwaite"``: SAS ``DDFM=SATTERTHWAITE`` / lmerTest / R mmrm, the
          method of Fai & Cornelius (1996): :math:`F = \hat\beta'L'(LCL')^{-1}L\hat\beta / q`
          (unscaled); with :math:`LCL' = U D U'`, each of the :math:`q` components
          :math:`u_m'L\beta` gets a 1-df Satterthwaite :math:`\nu_m`;
          :math:`E = \sum_{\nu_m > 2} \nu_m / (\nu_m - 2)` and the denominator df are
          :math:`2E / (E - q)` (see :func:`kanalysis.models.inference.multi_df`). This
          reproduces SAS's "Type 3 Tests of Fixed Effects" (e.g. the 3-df treatment-by-visit
          test of the R mmrm example data, den df 148).
        * ``vcov="empirical"``: Wald F with the sandwich covariance.

        Rows of ``L`` that are linearly dependent are reduced to a basis first (``num_df`` is
        the rank). Returns a dict with ``F``, ``num_df``, ``den_df``, ``p_value``.
        """
        Lmat = _parse_L(L, list(self.fe_params.index))
        return self._f_test_matrix(Lmat)

    def _f_test_matrix(self, Lmat: np.ndarray) -> dict:
        Lmat = inference.row_basis(Lmat)
        inf = self._inf
        if inf.empirical is not None:
            F, ndf, ddf, p = inference.wald_f(Lmat, self._beta, inf.V, self._contrast_df)
        elif inf.PhiA is not None:
            F, ndf, ddf, p = inference.kenward_roger_f(Lmat, self._beta, inf.C, inf.PhiA,
                                                       inf.P, inf.W)
        else:
            F, ndf, ddf, p = inference.satterthwaite_f(Lmat, self._beta, inf.C, inf.P, inf.W)
        return {"F": F, "num_df": ndf, "den_df": ddf, "p_value": p}

    def anova(self) -> pd.DataFrame:
        """Type III tests of the fixed effects, one row per formula term (SAS "Type 3 Tests of
        Fixed Effects", lmerTest ``anova(type = 3)``, emmeans ``joint_tests``).

        Columns ``term``, ``num_df``, ``den_df``, ``F``, ``p_value``; see
        :mod:`kanalysis.models.anova` for the hypotheses.
        """
        from kanalysis.models.anova import type3_table

        return type3_table(self)

    def to_frame(self, conf_level: float | None = None, alpha: float | None = None
                 ) -> pd.DataFrame:
        """Tidy fixed-effects table: ``term`` then the common result columns ``estimate,
        std_error, df, statistic, p_value, ci_lower, ci_upper`` (statistic = t)."""
        level = resolve_conf_level(conf_level, alpha=alpha, where="to_frame")
        tab = self._contrast_rows(np.eye(len(self._beta)), level)
        out = pd.DataFrame({"term": list(self.fe_params.index)})
        for k in _TABLE_COLUMNS:
            out[k] = tab[k]
        return out

    def key_numbers(self) -> dict:
        """JSON-ready numbers: fit statistics and the fixed-effects table."""
        out = {"n_obs": int(self.n_obs), "llf": float(self.llf),
               "converged": bool(getattr(self, "converged", True)),
               "df_method": self.df_method}
        out.update(super().key_numbers())
        return out

    # ------------------------------------------------------------------------------------------
    def _level_order(self) -> dict:
        """Level orders to use in reference grids (MMRM: the visit order of the fit)."""
        return {}

    def _grid_data(self) -> pd.DataFrame:
        """The analysis rows reference grids average over (covariate means, proportional
        weights)."""
        return self.design.data

    def _reference_rows(self, specs, by, weights):
        specs = [specs] if isinstance(specs, str) else list(specs)
        by = [] if by is None else ([by] if isinstance(by, str) else list(by))
        for v in specs + by:
            if v not in self.design.data.columns:
                raise ConfigurationError(f"lsmeans: {v!r} is not a variable of the model; "
                                         f"variables: {self.design.variables}")
        # by varies slowest, specs fastest (emmeans' order), every factor in level order
        factors = list(dict.fromkeys(by + specs + self.design.factor_variables))
        data = self._grid_data()
        grid = reference_grid(self.design, factors, self._level_order(), data=data)
        Xg = design_rows(self.design, grid)
        keys = by + specs
        others = [f for f in factors if f not in keys]
        if weights == "equal" or not others:
            w = np.ones(len(grid))
        elif weights == "proportional":
            counts = data.groupby(others, observed=True).size()
            w = np.array([counts.get(tuple(r) if len(others) > 1 else r[0], 0)
                          for r in grid[others].itertuples(index=False, name=None)], dtype=float)
        else:
            raise ConfigurationError("lsmeans: weights must be 'equal' or 'proportional', got "
                                     f"{weights!r}")
        cell_id, _ = pd.factorize(pd.MultiIndex.from_frame(grid[keys]), sort=False)
        n_cells = int(cell_id.max()) + 1
        first = np.full(n_cells, -1)
        first[cell_id[::-1]] = np.arange(len(grid))[::-1]
        cells = grid[specs + by].iloc[first].reset_index(drop=True)
        Lm = np.zeros((n_cells, Xg.shape[1]))
        np.add.at(Lm, cell_id, w[:, None] * Xg)
        wsum = np.bincount(cell_id, weights=w, minlength=n_cells)
        Lm /= np.where(wsum > 0, wsum, 1.0)[:, None]
        return cells, Lm, specs, by

    def lsmeans(self, specs, by=None, weights: str = "equal", conf_level: float | None = None,
                alpha: float | None = None) -> pd.DataFrame:
        """LS-means (estimated marginal means) in the emmeans / SAS LSMEANS sense.

        The reference grid crosses the levels of every factor in the model; numeric covariates
        are held at their mean over the analysis rows. Means over factors not in ``specs``/``by``
        use equal weights (``weights="equal"``, emmeans' default) or weights proportional to the
        frequencies of their level combinations in the data (``"proportional"``). Rows come in
        level order (visits in the fit's visit order, never sorted as text), ``specs`` varying
        fastest within each ``by`` cell, as emmeans prints them.

        Returns
        -------
        DataFrame with the ``specs`` and ``by`` columns, then ``estimate``, ``std_error``,
        ``df``, ``statistic`` (t for H0: mean = 0), ``p_value``, ``ci_lower``, ``ci_upper``.
        """
        level = resolve_conf_level(conf_level, alpha=alpha, where="lsmeans")
        cells, Lm, specs, by = self._reference_rows(specs, by, weights)
        tab = self._contrast_rows(Lm, level)
        out = cells.copy()
        for k in _TABLE_COLUMNS:
            out[k] = tab[k]
        return out

    def contrast(self, specs, by=None, method: str = "pairwise", ref=None,
                 weights: str = "equal", conf_level: float | None = None,
                 alpha: float | None = None) -> pd.DataFrame:
        """Differences of LS-means between the levels of ``specs`` within each ``by`` cell.

        ``method="pairwise"`` gives every ``a - b`` with ``a`` before ``b`` in level order (as
        emmeans' ``pairwise``); ``method="trt.vs.ctrl"`` gives ``level - ref`` for every other
        level (``ref`` defaults to the first level). p-values and CIs are not adjusted for
        multiplicity.
        """
        level = resolve_conf_level(conf_level, alpha=alpha, where="contrast")
        if not isinstance(specs, str):
            raise ConfigurationError("contrast: specs must be a single variable name")
        cells, Lm, specs_l, by_l = self._reference_rows(specs, by, weights)
        levels = list(pd.unique(cells[specs]))
        if method == "pairwise":
            pairs = [(a, b) for i, a in enumerate(levels) for b in levels[i + 1:]]
        elif method in ("trt.vs.ctrl", "trt_vs_ctrl"):
            ref = levels[0] if ref is None else ref
            if ref not in levels:
                raise ConfigurationError(f"contrast: ref={ref!r} is not a level of {specs!r}: "
                                         f"{levels}")
            pairs = [(a, ref) for a in levels if a != ref]
        else:
            raise ConfigurationError("contrast: method must be 'pairwise' or 'trt.vs.ctrl', got "
                                     f"{method!r}")
        rows, names, bykeys = [], [], []
        groups = [()] if not by_l else list(dict.fromkeys(
            tuple(r) for r in cells[by_l].itertuples(index=False, name=None)))
        for bk in groups:
            for a, b in pairs:
                sel_a = (cells[specs] == a).to_numpy()
                sel_b = (cells[specs] == b).to_numpy()
                for j, v in enumerate(bk):
                    sel_a &= (cells[by_l[j]] == v).to_numpy()
                    sel_b &= (cells[by_l[j]] == v).to_numpy()
                if sel_a.sum() != 1 or sel_b.sum() != 1:
                    continue
                rows.append(Lm[sel_a][0] - Lm[sel_b][0])
                names.append(f"{_level_label(a)} - {_level_label(b)}")
                bykeys.append(bk)
        if not rows:
            raise ConfigurationError(f"contrast: {specs!r} has fewer than two levels to compare")
        Lmat = np.array(rows)
        tab = self._contrast_rows(Lmat, level)
        out = pd.DataFrame({"contrast": names})
        for j, bname in enumerate(by_l):
            out[bname] = [k[j] for k in bykeys]
        for k in _TABLE_COLUMNS:
            out[k] = tab[k]
        return out

    def _fe_summary_lines(self) -> list[str]:
        tab = self.to_frame()
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            txt = tab.to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return txt.splitlines()
