"""The imputation model's fitter: one REML/ML MMRM fit of the wide data, and cheap refits.

This is the single place where :mod:`kanalysis.imputation` talks to the MMRM engine of
:mod:`kanalysis.models`. A refit takes a subset of subjects (jackknife) or per-subject
multiplicities (bootstrap) and starts from the full-data optimum (a warm start), so a
resample costs a few Newton steps instead of a fit from scratch. Only ``beta`` and the visit
covariance(s) are computed; no inference (Hessians, df) is done for resamples.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np

from kanalysis.errors import ConvergenceError, ConvergenceWarning, FitFailedError
from kanalysis.models._engine import MMRMEngine
from kanalysis.models._results import _newton, minimise
from kanalysis.models.covariance import make_structure


@dataclass
class Params:
    """Parameters of the imputation model: fixed effects and one visit covariance per group."""

    beta: np.ndarray  # (p,)
    sigmas: np.ndarray  # (n_cov_groups, t, t)
    opt: np.ndarray | None = None  # optimiser parameters (standardised scale), for warm starts
    converged: bool = True


class WideFitter:
    """REML (or ML) MMRM fits of wide data ``Y`` (n x t, NaN = not used in the fit).

    Parameters
    ----------
    Y : (n, t) array
        Outcomes; NaN where a value is missing or left out of the fit.
    X : (n, t, p) array
        Fixed-effects rows of every subject and visit.
    cov_group : (n,) int array
        Covariance group of each subject (all zeros for a common covariance).
    n_cov_groups : int
    covariance : str
        Structure name (see :mod:`kanalysis.models.covariance`).
    reml : bool
    """

    def __init__(self, Y, X, cov_group, n_cov_groups, covariance="us", reml=True,
                 visit_levels=None):
        self.Y = np.asarray(Y, dtype=float)
        self.X = np.asarray(X, dtype=float)
        self.n, self.t, self.p = self.X.shape
        self.cov_group = np.asarray(cov_group, dtype=np.int64)
        self.n_cov_groups = int(n_cov_groups)
        self.covariance = covariance
        self.reml = reml
        self.structures = [make_structure(covariance, self.t, visit_levels)
                           for _ in range(self.n_cov_groups)]
        self.mask = ~np.isnan(self.Y)
        self.scale = 1.0
        self.full: Params | None = None

    def _engine(self, weights):
        """Engine over subjects with multiplicity ``weights`` (duplicated, as a bootstrap)."""
        reps = np.repeat(np.arange(self.n), weights)
        mask = self.mask[reps]
        sub, vis = np.nonzero(mask)
        y = self.Y[reps][sub, vis] / self.scale
        X = self.X[reps][sub, vis]
        engine = MMRMEngine(y, X, vis, sub, len(reps), self.t, self.cov_group[reps],
                            self.structures, reml=self.reml)
        if engine.N - engine.p < 1:
            raise FitFailedError(f"{engine.N} observations cannot estimate {engine.p} "
                                 "fixed effects")
        return engine

    def fit(self) -> Params:
        """The full-data fit (also fixes the outcome scale used by warm-started refits)."""
        w = np.ones(self.n, dtype=np.int64)
        obs = self.mask
        Xo, yo = self.X[obs], self.Y[obs]
        beta0 = np.linalg.lstsq(Xo, yo, rcond=None)[0]
        sd = float(np.sqrt(np.mean((yo - Xo @ beta0) ** 2)))
        self.scale = sd if sd > 0 else 1.0
        engine = self._engine(w)
        S_emp = engine.empirical_cov(beta0 / self.scale)
        opt0 = np.concatenate([s.start(S) for s, S in zip(self.structures, S_emp, strict=True)])
        self.full = self._optimise(engine, opt0, strict=True)
        self._prepare_refits(engine)
        H = engine.hessian_opt(self.full.opt)
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        self._Hinv = (V / np.maximum(w, 1e-8 * max(w.max(), 1e-8))) @ V.T if w.min() > 0 \
            else None
        return self.full

    def _prepare_refits(self, engine):
        """Per-subject pieces of the engine's pattern sums, so that a refit on a subset or with
        multiplicities updates the sums (subtract one subject, or a weighted sum) instead of
        rebuilding them from the data."""
        self.base = engine if engine.pattern_stats else None
        if self.base is None:
            return
        t, p = self.t, self.p
        Xm = np.where(self.mask[:, :, None], self.X, 0.0)
        ym = np.where(self.mask, self.Y, 0.0) / self.scale
        self._cxx = np.einsum("iap,ibq->iabpq", Xm, Xm).reshape(self.n, t * t, p * p)
        self._cxy = np.einsum("iap,ib->iabp", Xm, ym).reshape(self.n, t * t, p)
        self._cyy = np.einsum("ia,ib->iab", ym, ym).reshape(self.n, t * t)
        self._nobs = self.mask.sum(1).astype(float)
        self._pat = engine.subject_pattern

    def _refit_engine(self, w, leave_out=None):
        base = self.base
        if base is None:
            ww = w.copy()
            if leave_out is not None:
                ww[leave_out] = 0
            return self._engine(ww)
        e = copy.copy(base)
        if leave_out is not None:
            s = self._pat[leave_out]
            e.Txx = base.Txx.copy()
            e.Txx[s] -= self._cxx[leave_out]
            e.Txy = base.Txy.copy()
            e.Txy[s] -= self._cxy[leave_out]
            e.Tyy = base.Tyy.copy()
            e.Tyy[s] -= self._cyy[leave_out]
            e.n_s = base.n_s.copy()
            e.n_s[s] -= 1
            e.N = int(base.N - self._nobs[leave_out])
        else:
            M = np.zeros((base.n_patterns, self.n))
            M[self._pat, np.arange(self.n)] = w
            e.Txx = (M @ self._cxx.reshape(self.n, -1)).reshape(base.Txx.shape)
            e.Txy = (M @ self._cxy.reshape(self.n, -1)).reshape(base.Txy.shape)
            e.Tyy = M @ self._cyy
            e.n_s = M.sum(1)
            e.N = int(round(float(w @ self._nobs)))
        if e.N - e.p < 1:
            raise FitFailedError(f"{e.N} observations cannot estimate {e.p} fixed effects")
        return e

    def refit(self, subjects=None, weights=None, leave_out=None) -> Params:
        """Refit leaving out subject ``leave_out``, on a subset (boolean or index array
        ``subjects``) or with multiplicities ``weights``, warm-started at the full-data fit.

        Raises :class:`FitFailedError` when the fit fails or does not converge.
        """
        if self.full is None:
            raise RuntimeError("fit() first")
        w = np.ones(self.n, dtype=np.int64) if weights is None else \
            np.asarray(weights, dtype=np.int64)
        if subjects is not None:
            keep = np.zeros(self.n, dtype=bool)
            keep[np.asarray(subjects)] = True
            w = w * keep
        try:
            engine = self._refit_engine(w, leave_out)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise FitFailedError(f"could not set up the fit: {exc}") from exc
        return self._optimise(engine, self.full.opt, strict=False)

    def _chord(self, fun, x, hess=None, tol=1e-8, max_iter=40, max_hessians=3):
        """Newton steps with a frozen Hessian (first the full-data one), refreshed at the
        current point when the gradient stops shrinking fast (Shamanskii's method)."""
        f, g = fun(x)
        if not np.isfinite(f):
            return x, False
        Hinv, n_hess = self._Hinv, 0
        gnorm = np.max(np.abs(g))
        for _ in range(max_iter):
            if gnorm < tol:
                return x, True
            step = -Hinv @ g
            lam, ok = 1.0, False
            for _ in range(8):
                xn = x + lam * step
                fn, gn = fun(xn)
                if np.isfinite(fn) and fn <= f + 1e-10 * abs(f):
                    ok = True
                    break
                lam *= 0.5
            if not ok:
                return x, False
            new_norm = np.max(np.abs(gn))
            x, f, g = xn, fn, gn
            if new_norm > 0.25 * gnorm and hess is not None and n_hess < max_hessians:
                H = hess(x)
                w, V = np.linalg.eigh(0.5 * (H + H.T))
                if w.min() <= 0:
                    return x, False
                Hinv, n_hess = (V / w) @ V.T, n_hess + 1
            gnorm = new_norm
        return x, bool(gnorm < tol)

    def _optimise(self, engine, opt0, strict):
        fun = engine.deviance_and_grad_opt
        with warnings.catch_warnings():
            warnings.simplefilter("error" if not strict else "default", ConvergenceWarning)
            try:
                converged = False
                if not strict and getattr(self, "_Hinv", None) is not None:
                    # warm start, chord method: Newton steps with the full-data Hessian (a
                    # resample moves the optimum little, so this contracts fast)
                    opt, converged = self._chord(fun, np.array(opt0, dtype=float),
                                                 hess=engine.hessian_opt)
                    msg = "chord Newton (warm start)"
                if not strict and not converged:  # full Newton from the full-data optimum
                    f, g = fun(opt0)
                    lo = np.full(len(opt0), -np.inf)
                    if np.isfinite(f):
                        opt, f, g, converged = _newton(fun, np.array(opt0, dtype=float), f, g,
                                                       lo, max_iter=25, hess=engine.hessian_opt)
                        msg = "Newton (warm start)"
                if not converged:
                    opt, converged, msg = minimise(fun, opt0, what="imputation model",
                                                   hess=engine.hessian_opt)
            except (ConvergenceError, ConvergenceWarning, np.linalg.LinAlgError,
                    FloatingPointError, ValueError) as exc:
                if strict:
                    raise ConvergenceError(
                        f"imputation model: the fit to the data failed: {exc}") from exc
                raise FitFailedError(str(exc)) from exc
        if not converged and not strict:
            raise FitFailedError(f"the optimiser did not converge ({msg})")
        nat_std = engine.opt_to_nat(opt)
        st = engine.state(nat_std)
        beta = st["beta"] * self.scale
        sigmas = np.asarray(st["sigmas"]) * self.scale**2
        for S in sigmas:
            if not np.all(np.isfinite(S)) or np.linalg.eigvalsh(S)[0] <= 0:
                raise FitFailedError("the estimated visit covariance is not positive definite")
        return Params(beta=beta, sigmas=sigmas, opt=opt, converged=bool(converged))


class ModelFitter:
    """The same interface on the engine's public refit API (:class:`kanalysis.models.MMRMModel`):
    ``refit(weights=...)`` warm-started from the last optimum. Slower per refit than
    :class:`WideFitter` (it rebuilds the pattern sums for every weight vector) but independent
    of the engine's internals; ``draws(..., refit_engine="model")`` uses it."""

    def __init__(self, frame, formula, subject, visit, group, subjects, visit_levels, fe_names,
                 covariance="us", reml=True, same_cov=True):
        from kanalysis.models import MMRMModel

        self.model = MMRMModel(frame, formula, subject=subject, visit=visit,
                               covariance=covariance, reml=reml,
                               group=None if same_cov else group, visit_order=visit_levels)
        self.order = pd_index(self.model.subjects).get_indexer(subjects)
        if (self.order < 0).any():
            raise FitFailedError("the model lost subjects (missing covariates)")
        self.n = len(subjects)
        self.fe_names = list(fe_names)
        self.visit_levels = list(visit_levels)
        self.same_cov = same_cov
        self.full = None

    def _params(self, res) -> Params:
        beta = res.fe_params.reindex(self.fe_names).to_numpy(dtype=float)
        covs = [res.cov] if self.same_cov else list(res.cov.values())
        sig = np.array([c.reindex(index=self.visit_levels, columns=self.visit_levels)
                        .to_numpy(dtype=float) for c in covs])
        return Params(beta=beta, sigmas=sig, converged=bool(res.converged))

    def fit(self) -> Params:
        self.full = self._params(self.model.fit())
        return self.full

    def refit(self, subjects=None, weights=None, leave_out=None) -> Params:
        w = np.ones(self.n) if weights is None else np.asarray(weights, dtype=float)
        if leave_out is not None:
            w = w.copy()
            w[leave_out] = 0.0
        wm = np.zeros(len(self.model.subjects))
        wm[self.order] = w
        return self._params(self.model.refit(weights=wm))


def pd_index(values):
    import pandas as pd

    return pd.Index(values)
