"""Shared optimiser driver and the fixed-effects part of the LMM and MMRM results."""

from __future__ import annotations

import functools
import warnings
from contextlib import nullcontext

import numpy as np
import pandas as pd
from scipy import optimize, stats

from kanalysis.errors import ConfigurationError, ConvergenceError, ConvergenceWarning
from kanalysis.models import inference
from kanalysis.models._design import Design, design_rows, reference_grid


def single_thread_blas(func):
    """Run ``func`` with one BLAS thread.

    The fits work on many small matrices, where BLAS threads only add synchronisation cost;
    on a loaded 2-core machine multithreaded OpenBLAS made MMRM fits 3-4x slower.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits

            ctx = threadpool_limits(limits=1, user_api="blas")
        except Exception:  # threadpoolctl missing or unable to inspect the BLAS
            ctx = nullcontext()
        with ctx:
            return func(*args, **kwargs)

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
    for _ in range(max_iter):
        free = ~((x <= lo + 1e-12) & (g > 0))
        if np.max(np.abs(g[free]), initial=0.0) < tol:
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
        x, f, g = xn, fn, gn
    free = ~((x <= lo + 1e-12) & (g > 0))
    return x, f, g, bool(np.max(np.abs(g[free]), initial=0.0) < tol)


def minimise(fun_grad, x0, bounds=None, what="model", advice="", hess=None):
    """Minimise an objective with analytic gradient.

    Few parameters (random-effects models): damped Newton with a finite-difference Hessian of
    the analytic gradient. Many parameters (unstructured covariances): L-BFGS-B, then Newton
    polishing. Either way the optimum is tight (gradient ~1e-8), so that estimates agree with
    R's to 1e-4 or better. Returns (x, converged, message).
    """
    x = np.asarray(x0, dtype=float)
    n = len(x)
    lo = np.array([b[0] if b and b[0] is not None else -np.inf for b in bounds]) \
        if bounds else np.full(n, -np.inf)
    x = np.maximum(x, lo)
    f, g = fun_grad(x)
    message = "Newton"
    ok = False
    if n <= 8 and np.isfinite(f):
        x, f, g, ok = _newton(fun_grad, x, f, g, lo, max_iter=60, hess=hess)
    if not ok:
        res = optimize.minimize(fun_grad, x, jac=True, method="L-BFGS-B", bounds=bounds,
                                options=dict(maxiter=5000, maxfun=20000, ftol=1e-13,
                                             gtol=1e-8, maxcor=30))
        message = str(res.message)
        x = res.x
        f, g = fun_grad(x)
        x, f, g, ok = _newton(fun_grad, x, f, g, lo, max_iter=30, hess=hess)
    if not (np.all(np.isfinite(x)) and np.isfinite(f) and np.all(np.isfinite(g))):
        raise ConvergenceError(
            f"{what}: the optimiser ran into non-finite values of the likelihood "
            f"({message}). {advice}")
    free = ~((x <= lo + 1e-12) & (g > 0))
    gmax = float(np.max(np.abs(g[free]), initial=0.0))
    # Converged: the Newton iterations stopped on a tiny gradient or a tiny Newton decrement
    # (predicted gain in the log-likelihood < 1e-6), both free of the outcome's scale.
    converged = bool(np.isfinite(f) and (ok or gmax < 1e-5))
    if not converged:
        warnings.warn(
            f"{what}: the optimiser did not converge (largest gradient component {gmax:.3g}, "
            f"optimiser message: {message}). {advice}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return x, converged, message


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


class FixedEffectsResult:
    """Fixed effects, their covariance and small-sample df (shared by LMM and MMRM results)."""

    design: Design
    df_method: str = "satterthwaite"

    def _init_inference(self, beta, C, P, W, PhiA=None, alpha=0.05):
        names = self.design.fe_names
        self._beta = beta
        self._C = C  # model-based covariance
        self._P = P
        self._W = W
        self._PhiA = PhiA
        self._V = PhiA if PhiA is not None else C  # covariance used for SEs
        self.fe_params = pd.Series(beta, index=names, name="estimate")
        _, df = inference.satterthwaite(np.eye(len(beta)), C, P, W)
        self.bse = pd.Series(np.sqrt(np.diag(self._V)), index=names, name="std_error")
        self.df = pd.Series(df, index=names, name="df")
        self.tvalues = pd.Series(beta / self.bse.to_numpy(), index=names, name="t")
        self.pvalues = pd.Series(2 * stats.t.sf(np.abs(self.tvalues.to_numpy()), df),
                                 index=names, name="p_value")
        self.cov_params = pd.DataFrame(self._V, index=names, columns=names)
        self.cov_params_model = pd.DataFrame(C, index=names, columns=names)

    # ------------------------------------------------------------------------------------------
    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Confidence intervals for the fixed effects with t quantiles on the model's df."""
        q = stats.t.ppf(1 - alpha / 2, self.df.to_numpy())
        se = self.bse.to_numpy()
        b = self.fe_params.to_numpy()
        return pd.DataFrame({"lower": b - q * se, "upper": b + q * se}, index=self.fe_params.index)

    def _contrast_rows(self, Lmat: np.ndarray, alpha: float = 0.05) -> dict:
        est = Lmat @ self._beta
        _, df = inference.satterthwaite(Lmat, self._C, self._P, self._W)
        var = np.einsum("mp,pq,mq->m", Lmat, self._V, Lmat)
        return inference.t_table(est, var, df, alpha)

    def estimate(self, L, alpha: float = 0.05) -> pd.DataFrame:
        """Estimate linear combinations ``L @ beta`` with SE, df, t, p and CI.

        Parameters
        ----------
        L : array-like (p,) or (m, p), or dict term -> coefficient
            Coefficients over ``fe_params`` (in its order).
        """
        Lmat = _parse_L(L, list(self.fe_params.index))
        out = pd.DataFrame(self._contrast_rows(Lmat, alpha))
        return out

    def _predict_population(self, newdata, alpha):
        if newdata is None:
            newdata = self.design.data
        Xn = design_rows(self.design, newdata)
        tab = self._contrast_rows(Xn, alpha)
        return pd.DataFrame({
            "predicted": tab["estimate"], "std_error": tab["std_error"], "df": tab["df"],
            "ci_lower": tab["ci_lower"], "ci_upper": tab["ci_upper"]}, index=newdata.index)

    def predict(self, newdata: pd.DataFrame | None = None, alpha: float = 0.05) -> pd.DataFrame:
        """Population-average predictions x'beta with SE, df and CI (default: analysis rows)."""
        return self._predict_population(newdata, alpha)

    def f_test(self, L) -> dict:
        """Joint test of ``L beta = 0`` (Kenward-Roger F when df_method='kenward-roger', else a
        Satterthwaite-type F with the KR df formula applied to the model-based covariance)."""
        Lmat = _parse_L(L, list(self.fe_params.index))
        PhiA = self._PhiA if self._PhiA is not None else self._C
        F, ndf, ddf, p = inference.kenward_roger_f(Lmat, self._beta, self._C, PhiA, self._P,
                                                   self._W)
        return {"F": F, "num_df": ndf, "den_df": ddf, "p_value": p}

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """Tidy fixed-effects table: term, estimate, std_error, df, t, p_value, ci_lower, ci_upper."""
        ci = self.conf_int(alpha)
        return pd.DataFrame({
            "term": self.fe_params.index,
            "estimate": self.fe_params.to_numpy(),
            "std_error": self.bse.to_numpy(),
            "df": self.df.to_numpy(),
            "t": self.tvalues.to_numpy(),
            "p_value": self.pvalues.to_numpy(),
            "ci_lower": ci["lower"].to_numpy(),
            "ci_upper": ci["upper"].to_numpy(),
        })

    # ------------------------------------------------------------------------------------------
    def _level_order(self) -> dict:
        """Level orders to use in reference grids (MMRM: the visit order of the fit)."""
        return {}

    def _reference_rows(self, specs, by, weights):
        specs = [specs] if isinstance(specs, str) else list(specs)
        by = [] if by is None else ([by] if isinstance(by, str) else list(by))
        for v in specs + by:
            if v not in self.design.data.columns:
                raise ConfigurationError(f"lsmeans: {v!r} is not a variable of the model; "
                                         f"variables: {self.design.variables}")
        factors = list(dict.fromkeys(specs + by + self.design.factor_variables))
        grid = reference_grid(self.design, factors, self._level_order())
        Xg = design_rows(self.design, grid)
        keys = specs + by
        others = [f for f in factors if f not in keys]
        if weights == "equal" or not others:
            w = np.ones(len(grid))
        elif weights == "proportional":
            counts = self.design.data.groupby(others, observed=True).size()
            w = np.array([counts.get(tuple(r) if len(others) > 1 else r[0], 0)
                          for r in grid[others].itertuples(index=False, name=None)], dtype=float)
        else:
            raise ConfigurationError("lsmeans: weights must be 'equal' or 'proportional', got "
                                     f"{weights!r}")
        cells = grid[keys].drop_duplicates().reset_index(drop=True)
        gkeys = [tuple(r) for r in grid[keys].itertuples(index=False, name=None)]
        ckeys = [tuple(r) for r in cells.itertuples(index=False, name=None)]
        pos = {k: i for i, k in enumerate(ckeys)}
        Lm = np.zeros((len(cells), Xg.shape[1]))
        wsum = np.zeros(len(cells))
        for i, k in enumerate(gkeys):
            Lm[pos[k]] += w[i] * Xg[i]
            wsum[pos[k]] += w[i]
        Lm /= np.where(wsum > 0, wsum, 1.0)[:, None]
        return cells, Lm, specs, by

    def lsmeans(self, specs, by=None, weights: str = "equal", alpha: float = 0.05) -> pd.DataFrame:
        """LS-means (estimated marginal means) in the emmeans / SAS LSMEANS sense.

        The reference grid crosses the levels of every factor in the model; numeric covariates
        are held at their mean over the analysis rows. Means over factors not in ``specs``/``by``
        use equal weights (``weights="equal"``, emmeans' default) or weights proportional to the
        frequencies of their level combinations in the data (``"proportional"``).

        Returns
        -------
        DataFrame with the ``specs`` and ``by`` columns, ``estimate``, ``std_error``, ``df``,
        ``ci_lower``, ``ci_upper`` (and ``t``, ``p_value`` for H0: mean = 0).
        """
        cells, Lm, specs, by = self._reference_rows(specs, by, weights)
        tab = self._contrast_rows(Lm, alpha)
        out = cells.copy()
        for k in ("estimate", "std_error", "df", "ci_lower", "ci_upper", "t", "p_value"):
            out[k] = tab[k]
        if by:  # emmeans order: specs vary fastest within each by cell
            out = out.sort_values(by, kind="stable").reset_index(drop=True)
        return out

    def contrast(self, specs, by=None, method: str = "pairwise", ref=None,
                 weights: str = "equal", alpha: float = 0.05) -> pd.DataFrame:
        """Differences of LS-means between the levels of ``specs`` within each ``by`` cell.

        ``method="pairwise"`` gives every ``a - b`` with ``a`` before ``b`` in level order (as
        emmeans' ``pairwise``); ``method="trt.vs.ctrl"`` gives ``level - ref`` for every other
        level (``ref`` defaults to the first level). p-values and CIs are not adjusted for
        multiplicity.
        """
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
        Lmat = np.array(rows)
        tab = self._contrast_rows(Lmat, alpha)
        out = pd.DataFrame({"contrast": names})
        for j, bname in enumerate(by_l):
            out[bname] = [k[j] for k in bykeys]
        for k in ("estimate", "std_error", "df", "t", "p_value", "ci_lower", "ci_upper"):
            out[k] = tab[k]
        return out

    def _fe_summary_lines(self) -> list[str]:
        tab = self.to_frame()
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            txt = tab.to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return txt.splitlines()
