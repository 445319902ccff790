r"""Step 1: fit the imputation model and draw its parameters (rbmi's ``draws``).

The imputation model is an MMRM fitted by REML,

.. math::

    y_i = X_i\beta + \varepsilon_i,\qquad \varepsilon_i \sim N(0, \Sigma_{g(i)}),

with a covariance common to all subjects (``same_cov=True``) or one per arm. Observed outcomes
after an ICE under a non-MAR strategy are left out of the fit (as in rbmi: they do not follow
the MAR model); they are still conditioned on when imputing and kept in the analysis. With
``fit_post_ice=True`` they enter the fit too (a retrieved-dropout model: put an on/off
treatment indicator in the formula).

The method decides the parameter draws: the full-data fit plus leave-one-out or bootstrap
refits (:class:`CondMean`), bootstrap refits (:class:`ApproxBayes`, :class:`BMLMI`), or Gibbs
posterior draws (:class:`Bayes`). Refits start from the full-data optimum and run on
:func:`kanalysis.parallel.map_batches` (give ``workers=`` or ``scheduler=`` for Dask).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, KanalysisError, StatisticalWarning
from kanalysis.imputation._data import Grid, build_grid
from kanalysis.imputation._fit import FitFailedError, ModelFitter, Params, WideFitter
from kanalysis.imputation._gibbs import gibbs
from kanalysis.imputation._parallel import run_map
from kanalysis.imputation.ice import ice_arrays
from kanalysis.imputation.methods import BMLMI, ApproxBayes, Bayes, CondMean
from kanalysis.imputation.strategies import STRATEGIES
from kanalysis.models._results import single_thread_blas
from kanalysis.models.covariance import make_structure

__all__ = ["Draws", "ImputationFailedError", "Sample", "draws"]


class ImputationFailedError(KanalysisError, RuntimeError):
    """Too many refits of the imputation model failed (more than the method's failure_share)."""


@dataclass
class Sample:
    """One parameter draw and the subjects (with multiplicities) its analysis uses."""

    params: Params
    weights: np.ndarray  # (n,) int multiplicity of each subject in this sample's analysis
    label: str = ""


@dataclass
class Draws:
    """Result of :func:`draws`: the fitted imputation model and its parameter draws."""

    grid: Grid
    method: object
    formula: str
    subject: str
    visit: str
    group: str
    covariance: str
    same_cov: bool
    fit_post_ice: bool
    ice_k: np.ndarray  # (n,) first affected visit index, t = no ICE
    strategy: np.ndarray  # (n,) strategy names ("MAR" without ICE)
    fit_mask: np.ndarray  # (n, t) values used in the fit
    cov_group: np.ndarray  # (n,) covariance group
    full: Params
    samples: list[Sample]
    failures: list[tuple[int, str]] = field(default_factory=list)
    n_attempted: int = 0

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def cov_of_arm(self, arm_code: int) -> int:
        return 0 if self.same_cov else int(arm_code)

    def summary(self) -> str:
        m = self.method
        lines = [f"Imputation model: {self.formula}, covariance {self.covariance}"
                 + ("" if self.same_cov else f" per {self.group}"),
                 f"Method: {m!r}",
                 f"Subjects: {len(self.grid.subjects)}, visits: {list(self.grid.visit_levels)}, "
                 f"ICEs: {int((self.ice_k < len(self.grid.visit_levels)).sum())}",
                 f"Parameter draws: {len(self.samples)}; failed refits: {self.n_failed} of "
                 f"{self.n_attempted}"]
        for i, msg in self.failures[:5]:
            lines.append(f"  refit {i} failed: {msg}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def _refit(fitter, item):
    kind, arg = item
    try:
        if kind == "loo":
            return fitter.refit(leave_out=arg), None
        return fitter.refit(weights=arg), None
    except FitFailedError as exc:
        return None, str(exc)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _bootstrap_weights(rng, arm_code, n_samples):
    """Stratified (by arm) bootstrap multiplicities, (n_samples, n)."""
    n = len(arm_code)
    out = np.zeros((n_samples, n), dtype=np.int64)
    strata = [np.flatnonzero(arm_code == a) for a in np.unique(arm_code)]
    for b in range(n_samples):
        for idx in strata:
            pick = idx[rng.integers(0, len(idx), len(idx))]
            out[b] += np.bincount(pick, minlength=n)
    return out


def _check_failures(failures, attempted, share, what):
    if not failures:
        return
    n = len(failures)
    detail = "; ".join(f"#{i}: {m}" for i, m in failures[:5])
    if n > share * attempted:
        raise ImputationFailedError(
            f"draws: {n} of {attempted} {what} refits failed, more than the allowed share "
            f"{share:g} (failure_share); first failures: {detail}. Try a simpler covariance "
            "structure or check visits with few observations.")
    warnings.warn(f"draws: {n} of {attempted} {what} refits failed and were skipped "
                  f"(allowed share {share:g}): {detail}", StatisticalWarning, stacklevel=3)


@single_thread_blas
def draws(data: pd.DataFrame, formula: str, subject: str, visit: str, group: str,
          ice: pd.DataFrame | None = None, method=None, covariance: str = "us",
          same_cov: bool = True, *, reml: bool = True, fit_post_ice: bool = False,
          visit_order: list | None = None, workers: int | None = None, scheduler=None,
          progress: bool = True, refit_engine: str = "sums") -> Draws:
    """Fit the imputation model and draw its parameters.

    Parameters
    ----------
    data : DataFrame
        Long data, one row per subject and visit; missing visits may be left out or carry a
        NaN outcome. Covariates constant within subject are filled into missing visits.
    formula : str
        Imputation model, e.g. ``"CHANGE ~ BASVAL*VISIT + THERAPY*VISIT"`` (visit as a factor:
        string labels or ``C(VISIT)``). It must contain ``group`` so that reference-based
        strategies can switch the arm.
    subject, visit, group : str
        Subject, visit and arm columns.
    ice : DataFrame, optional
        One row per subject with an ICE: columns ``subject``, ``visit`` (first affected visit)
        and ``strategy``. Subjects without a row are MAR.
    method : CondMean, ApproxBayes, BMLMI or Bayes
        Default ``CondMean(resampling="jackknife")``.
    covariance : str
        Visit covariance structure (``us`` default; see :mod:`kanalysis.models.covariance`);
        :class:`Bayes` supports ``us`` only.
    same_cov : bool
        One covariance for all subjects (True) or one per arm.
    reml : bool
        REML (default) or ML fits.
    fit_post_ice : bool
        Keep observed post-ICE values of non-MAR strategies in the fit (retrieved dropout).
    visit_order : list, optional
        Explicit visit order.
    workers, scheduler :
        Passed to :func:`kanalysis.parallel.map_batches` (a Dask LocalCluster of ``workers``
        processes, or an existing scheduler / Client).
    progress : bool
        Progress bar for long runs.
    refit_engine : {"sums", "model"}
        ``"sums"`` (default): refits update the full fit's pattern sums (subtract one subject,
        weight by multiplicities) and take Newton steps with the full-data Hessian;
        ``"model"``: :meth:`kanalysis.models.MMRMModel.refit` (the engine's public refit API;
        same optimum, about 2-3 times slower per refit).

    Returns
    -------
    Draws

    References
    ----------
    Gower-Page C, Noci A, Wolbers M (2022). rbmi: A R package for standard and reference-based
    multiple imputation methods. JOSS 7:4251.
    """
    method = CondMean() if method is None else method
    if not isinstance(method, (CondMean, ApproxBayes, BMLMI, Bayes)):
        raise ConfigurationError(f"draws: method must be CondMean, ApproxBayes, BMLMI or Bayes, "
                                 f"got {method!r}")
    if isinstance(method, Bayes) and covariance != "us":
        raise ConfigurationError("draws: the Bayes method supports covariance='us' only")
    make_structure(covariance, 1)
    grid = build_grid(data, formula, subject, visit, group, visit_order=visit_order)
    if len(grid.arms) > 1 and group not in _formula_variables(formula, data.columns):
        raise ConfigurationError(f"draws: the formula {formula!r} must contain the arm column "
                                 f"{group!r} (reference-based strategies switch it)")
    n, t = grid.Y.shape
    ice_k, strategy = ice_arrays(ice, subject, visit, grid.subjects, grid.visit_levels,
                                 STRATEGIES)
    observed = ~np.isnan(grid.Y)
    post = np.arange(t)[None, :] >= ice_k[:, None]
    non_mar = (strategy != "MAR")[:, None]
    fit_mask = observed & ~(post & non_mar & (not fit_post_ice))
    Yfit = np.where(fit_mask, grid.Y, np.nan)
    keep = fit_mask.any(1)
    if not keep.all():
        # subjects with nothing in the fit still get imputed; the fit ignores them
        pass
    cov_group = np.zeros(n, dtype=np.int64) if same_cov else grid.arm_code.copy()
    n_cov = 1 if same_cov else len(grid.arms)
    X_own = grid.X_arm[grid.arm_code, np.arange(n)]
    if refit_engine == "sums":
        fitter = WideFitter(Yfit, X_own, cov_group, n_cov, covariance=covariance, reml=reml,
                            visit_levels=grid.visit_levels)
    elif refit_engine == "model":
        frame = grid.frame.copy()
        frame[grid.outcome] = Yfit.ravel()
        fitter = ModelFitter(frame, formula, subject, visit, group, grid.subjects,
                             grid.visit_levels, grid.fe_names, covariance=covariance, reml=reml,
                             same_cov=same_cov)
    else:
        raise ConfigurationError(f"draws: refit_engine must be 'sums' or 'model', got "
                                 f"{refit_engine!r}")
    full = fitter.fit()
    ones = np.ones(n, dtype=np.int64)
    samples = [Sample(full, ones, "full")]
    failures: list[tuple[int, str]] = []
    attempted = 0
    job = functools.partial(_refit, fitter)
    if isinstance(method, Bayes):
        posts = gibbs(Yfit, X_own, cov_group, n_cov, full, n_samples=method.n_samples,
                      burn_in=method.burn_in, thin=method.thin, seed=method.seed,
                      progress=progress)
        samples = [Sample(p, ones, f"draw {i + 1}") for i, p in enumerate(posts)]
    elif isinstance(method, CondMean) and method.resampling == "jackknife":
        items = [("loo", i) for i in range(n)]
        res = run_map(job, items, workers=workers, scheduler=scheduler, progress=progress,
                      desc="jackknife")
        attempted = n
        for i, (params, msg) in enumerate(res):
            if params is None:
                failures.append((i, msg))
            else:
                w = ones.copy()
                w[i] = 0
                samples.append(Sample(params, w, f"leave out {grid.subjects[i]}"))
        _check_failures(failures, attempted, method.failure_share, "jackknife")
    else:
        n_boot = method.B if isinstance(method, BMLMI) else method.n_samples
        rng = np.random.default_rng(method.seed)
        W = _bootstrap_weights(rng, grid.arm_code, n_boot)
        items = [("w", w) for w in W]
        res = run_map(job, items, workers=workers, scheduler=scheduler, progress=progress,
                      desc="bootstrap")
        attempted = n_boot
        boot = []
        for b, (params, msg) in enumerate(res):
            if params is None:
                failures.append((b, msg))
            else:
                analysis_w = ones if isinstance(method, ApproxBayes) else W[b]
                boot.append(Sample(params, analysis_w, f"bootstrap {b + 1}"))
        _check_failures(failures, attempted, method.failure_share, "bootstrap")
        samples = (samples + boot) if isinstance(method, CondMean) else boot
    return Draws(grid=grid, method=method, formula=formula, subject=subject, visit=visit,
                 group=group, covariance=covariance, same_cov=same_cov,
                 fit_post_ice=fit_post_ice, ice_k=ice_k, strategy=strategy, fit_mask=fit_mask,
                 cov_group=cov_group, full=full, samples=samples, failures=failures,
                 n_attempted=attempted)


def _formula_variables(formula, columns):
    from kanalysis.models._design import _required_variables

    return _required_variables(formula, columns)
