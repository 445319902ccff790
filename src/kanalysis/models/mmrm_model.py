r"""Prepare an MMRM once, fit it many times.

:class:`MMRMModel` reads the data once: it checks the columns, builds the fixed-effects design
(formula parsing happens here and only here), codes visits, subjects and covariance groups, and
fixes the scale the optimiser works on. :meth:`MMRMModel.fit` gives the same result as
:func:`kanalysis.mmrm`; :meth:`MMRMModel.refit` fits the same model again

* to a new outcome vector (multiple imputation, simulation-based power): NaN marks a missing
  observation, and only the observed-visit patterns are rebuilt, from arrays, never from the
  formula; when the observed rows are those of the previous refit only the outcome sums are
  recomputed;
* to a subset of subjects (jackknife), or
* with per-subject multiplicities (bootstrap): a weight of 2 counts the subject twice, exactly as
  if its rows were duplicated under a new subject id;

starting from the previous optimum (``start="last"``), so a refit usually takes a few Newton
steps with the analytic Hessian. :meth:`MMRMModel.refit_many` runs a batch and counts the fits
that failed instead of raising.

The criterion, its gradient and Hessian are those of :class:`kanalysis.models._engine.MMRMEngine`
(REML or ML, profiled over the fixed effects); a failed fit raises
:class:`~kanalysis.errors.FitFailedError` and never returns numbers. Before failing, the fit is
retried from other starting values (the empirical covariance of OLS residuals, then an
uncorrelated and an exchangeable start), as R mmrm retries other optimisers.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kanalysis.errors import (
    ConfigurationError,
    ConvergenceWarning,
    DataValidationError,
    FitFailedError,
)
from kanalysis.models._design import build_design, design_rows, ols_from_gram
from kanalysis.models._engine import MMRMEngine
from kanalysis.models._results import optimise, single_thread_blas
from kanalysis.models._visits import _order_by_precedence, _ordered_levels
from kanalysis.models.covariance import STRUCTURES, make_structure
from kanalysis.models.mmrm_result import MMRMResult

DF_METHODS = ("satterthwaite", "kenward-roger")

_ADVICE = ("Try a simpler covariance structure ('toep', 'ar1h', 'csh' or 'cs'), check for "
           "visits with very few observations, or rescale the outcome.")


def _normalise_df_method(df_method) -> str:
    m = str(df_method).lower().replace("_", "-")
    if m in ("kr", "kenward-roger", "kenwardroger", "kenward roger"):
        m = "kenward-roger"
    if m in ("satterthwaite", "sat"):
        m = "satterthwaite"
    if m not in DF_METHODS:
        raise ConfigurationError(f"mmrm: df_method must be one of {DF_METHODS}, got "
                                 f"{df_method!r}")
    return m


def _normalise_covariance(covariance) -> list[str]:
    names = [covariance] if isinstance(covariance, str) else list(covariance or [])
    if not names:
        raise ConfigurationError("mmrm: covariance must be a structure name or a non-empty list "
                                 f"of names; choose from {sorted(STRUCTURES)}")
    out = []
    for n in names:
        key = str(n).lower()
        if key not in STRUCTURES:
            raise ConfigurationError(
                f"mmrm: unknown covariance structure {n!r}; choose one of {sorted(STRUCTURES)}")
        out.append(key)
    return out


@dataclass
class RefitBatch:
    """Results of :meth:`MMRMModel.refit_many`.

    ``results[i]`` is the i-th fit, or None when it failed; ``failures`` lists
    ``(i, message)`` for every failed fit.
    """

    results: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def n_ok(self) -> int:
        return len(self.results) - len(self.failures)

    def fe_params(self) -> pd.DataFrame:
        """Fixed effects of every fit, one row per fit (NaN rows for failed fits)."""
        names = next((r.fe_params.index for r in self.results if r is not None), None)
        if names is None:
            return pd.DataFrame()
        rows = [r.fe_params.to_numpy() if r is not None else np.full(len(names), np.nan)
                for r in self.results]
        return pd.DataFrame(np.array(rows), columns=names)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):
        return iter(self.results)


class _Attempt:
    """The optimiser's record over several starting values."""

    def __init__(self):
        self.trace_all: list[dict] = []

    def add(self, attempt: int, start: str, optimum):
        for row in optimum.trace:
            self.trace_all.append({"attempt": attempt, "start": start, **row})


class MMRMModel:
    r"""A mixed model for repeated measures, prepared once for many fits.

    .. math::

        y_i = X_i\beta + \varepsilon_i,\qquad \varepsilon_i \sim N(0, \Sigma_{o_io_i}),

    Parameters are those of :func:`kanalysis.mmrm`: ``data``, ``formula``, ``subject``,
    ``visit``, ``covariance`` (a structure name or a fallback list), ``reml``, ``group``,
    ``df_method`` and ``visit_order``.

    Attributes
    ----------
    data : DataFrame
        The rows the model uses, in the model's row order (sorted by subject, stable): rows
        with a missing covariate, visit or group are dropped; rows missing only the outcome are
        kept (their ``y`` is NaN) so that refits can fill them in.
    y : ndarray
        The outcome aligned with ``data`` (NaN where missing).
    subjects : Index
        Subject labels in the model's order (the order of ``refit(weights=...)``).
    subject_codes, visit_codes : ndarray
        Per row of ``data``: the subject's position in ``subjects`` and the visit's position in
        ``visit_levels``.
    visit_levels, group_levels : list
        Visit levels in the fit's order; covariance groups (``["all"]`` without ``group``).
    """

    def __init__(self, data: pd.DataFrame, formula: str, subject: str, visit: str,
                 covariance="us", reml: bool = True, group: str | None = None,
                 df_method: str = "satterthwaite", visit_order: list | None = None,
                 time: str | None = None, weights: str | None = None, vcov: str = "model"):
        self.df_method = _normalise_df_method(df_method)
        self.reml = bool(reml)
        if self.df_method == "kenward-roger" and not self.reml:
            raise ConfigurationError("mmrm: Kenward-Roger needs a REML fit (reml=True)")
        self.covariance_candidates = _normalise_covariance(covariance)
        self.covariance_argument = covariance
        self.vcov = str(vcov).lower()
        if self.vcov not in ("model", "empirical"):
            raise ConfigurationError(f"mmrm: vcov must be 'model' or 'empirical', got {vcov!r}")
        if self.vcov == "empirical" and self.df_method == "kenward-roger":
            raise ConfigurationError("mmrm: vcov='empirical' comes with its own Satterthwaite "
                                     "df; use df_method='satterthwaite'")
        self.formula, self.subject, self.visit, self.group = formula, subject, visit, group
        if not isinstance(visit, str) or not isinstance(subject, str):
            raise ConfigurationError("mmrm: subject and visit must be column names (strings)")
        self.time = time
        self.weights = weights
        design = build_design(data, formula, subject, extra_columns=[visit, group, time, weights],
                              what="mmrm", keep_missing_outcome=True)
        self.design = design
        frame = design.data
        self.data = frame
        self.y = design.y
        self._visit_setup(data, frame, visit_order)
        self._time_setup(frame)
        self._weights_setup(frame)
        self.subject_codes = design.subject_codes
        self.subjects = pd.Index(design.subject_labels, name=subject)
        self.n_subjects = len(self.subjects)
        self._check_duplicates(frame)
        self._group_setup(frame)
        obs = np.isfinite(self.y)
        n_obs = int(obs.sum())
        p = design.X.shape[1]
        if n_obs - p < 1:
            raise ConfigurationError(f"mmrm: {n_obs} observations cannot estimate {p} fixed "
                                     "effects")
        self._warn_sparse_visits(obs)
        # The optimiser works on the outcome divided by its OLS residual SD, so that its
        # parameters, gradient and stopping rule do not depend on the outcome's units; this
        # scale is fixed here, for every later refit.
        _, rss = ols_from_gram(design.gram)
        sd = float(np.sqrt(rss / n_obs))
        self._scale = sd if sd > 0 and np.isfinite(sd) else 1.0
        self._last = {}  # covariance name -> last converged optimisation parameters
        self.covariance = None  # the structure chosen by the first successful fit
        self._engine_cache = None

    # --- preparation ----------------------------------------------------------------------------
    def _visit_setup(self, data, frame, visit_order):
        visit = self.visit
        if visit_order is not None:
            present = set(frame[visit])
            levels = [v for v in visit_order if v in present]
            unknown = sorted(map(str, present - set(visit_order)))
            if unknown:
                raise ConfigurationError(f"mmrm: visit_order lacks the {visit!r} level(s) "
                                         f"{unknown}")
        else:
            levels = _ordered_levels(frame[visit])
            if levels is None:
                levels = _order_by_precedence(data, self.subject, visit, set(frame[visit]))
        self.visit_levels = list(levels)
        vpos = {v: i for i, v in enumerate(self.visit_levels)}
        self.visit_codes = frame[visit].map(vpos).to_numpy().astype(np.int64)
        self.n_visits = len(self.visit_levels)

    def _time_setup(self, frame):
        """Visit coordinates for spatial structures: one time per visit level."""
        self.visit_times = None
        spatial = [c for c in self.covariance_candidates
                   if getattr(STRUCTURES[c], "needs_coordinates", False)]
        if self.time is None:
            if not spatial:
                return
            if pd.api.types.is_numeric_dtype(frame[self.visit]) and \
                    not pd.api.types.is_bool_dtype(frame[self.visit]):
                # a numeric visit (AVISITN, week) is its own coordinate, as SAS SP(EXP)(visit)
                self.visit_times = np.asarray(self.visit_levels, dtype=float)
                return
            raise ConfigurationError(
                f"mmrm: covariance {spatial[0]!r} needs the visits' times: the visit column "
                f"{self.visit!r} is not numeric, so give time='column' (a numeric column, one "
                "value per visit level, e.g. AVISITN or the scheduled day)")
        col = frame[self.time]
        if not pd.api.types.is_numeric_dtype(col):
            raise ConfigurationError(f"mmrm: the time column {self.time!r} must be numeric")
        per = pd.DataFrame({"v": self.visit_codes, "c": col.to_numpy(dtype=float)})
        spread = per.groupby("v")["c"].agg(["min", "max"])
        bad = spread.index[(spread["max"] - spread["min"]) > 1e-9 * max(
            1.0, float(np.abs(spread.to_numpy()).max()))]
        if len(bad):
            raise ConfigurationError(
                f"mmrm: the time column {self.time!r} takes several values within visit "
                f"level(s) {[self.visit_levels[b] for b in bad[:5]]}; spatial covariances here "
                "use one time per visit level (e.g. the scheduled day or AVISITN), not "
                "per-subject times")
        self.visit_times = spread["min"].reindex(range(self.n_visits)).to_numpy()

    def _weights_setup(self, frame):
        """Observation weights (SAS ``WEIGHT``): Var(y_ij) = Sigma_jj / w_ij, i.e.
        V_i = W_i^{-1/2} Sigma W_i^{-1/2}. The engine works on sqrt(w) x and sqrt(w) y, and the
        log-likelihood gets the constant + sum(log w) / 2."""
        self.obs_weights = None
        self._root_w = None
        if self.weights is None:
            return
        w = frame[self.weights]
        if not pd.api.types.is_numeric_dtype(w):
            raise ConfigurationError(f"mmrm: the weights column {self.weights!r} must be numeric")
        w = w.to_numpy(dtype=float)
        bad = ~(np.isfinite(w) & (w > 0))
        if bad.any():
            rows = frame.index[bad]
            raise DataValidationError(
                f"mmrm: the weights column {self.weights!r} must be positive and finite; rows "
                f"{list(rows[:10])} are not")
        self.obs_weights = w
        self._root_w = np.sqrt(w)

    def _check_duplicates(self, frame):
        key = self.subject_codes * self.n_visits + self.visit_codes
        dup = pd.Series(key).duplicated(keep=False).to_numpy()
        if dup.any():
            rows = frame.index[dup]
            raise DataValidationError(
                f"mmrm: subjects have more than one row for the same {self.visit!r} level (rows "
                f"{list(rows[:10])}{' ...' if len(rows) > 10 else ''}); keep one row per subject "
                "and visit (e.g. the analysis flag ANL01FL).")

    def _group_setup(self, frame):
        group, n_subj = self.group, self.n_subjects
        if group is None:
            self.group_levels = ["all"]
            self.cov_group = np.zeros(n_subj, dtype=np.int64)
            return
        gvals = frame[group]
        per_subj = pd.DataFrame({"s": self.subject_codes, "g": gvals.to_numpy()}) \
            .drop_duplicates()
        if per_subj["s"].duplicated().any():
            bad = self.subjects[per_subj.loc[per_subj["s"].duplicated(), "s"].to_numpy()]
            raise DataValidationError(
                f"mmrm: the covariance group column {group!r} changes within subject(s) "
                f"{list(bad[:10])}; it must be constant within subject.")
        self.group_levels = _ordered_levels(gvals) or sorted(pd.unique(gvals), key=str)
        gpos = {g: i for i, g in enumerate(self.group_levels)}
        cov_group = np.zeros(n_subj, dtype=np.int64)
        cov_group[per_subj["s"].to_numpy()] = per_subj["g"].map(gpos).to_numpy()
        self.cov_group = cov_group

    def _warn_sparse_visits(self, obs):
        hetero = [c for c in self.covariance_candidates
                  if getattr(STRUCTURES[c], "per_visit_variances", False)]
        if not hetero:
            return
        subj_group = self.cov_group[self.subject_codes[obs]]
        for gi, gl in enumerate(self.group_levels):
            counts = np.bincount(self.visit_codes[obs][subj_group == gi],
                                 minlength=self.n_visits)
            if np.any(counts < 2):
                few = [str(self.visit_levels[j]) for j in np.flatnonzero(counts < 2)]
                warnings.warn(
                    f"mmrm: visit level(s) {few}" + ("" if self.group is None else
                                                     f" in group {gl}")
                    + f" have fewer than 2 observations, so their variance under "
                    f"{hetero[0]!r} is poorly determined; consider a simpler structure.",
                    ConvergenceWarning, stacklevel=4)

    def structures(self, name: str) -> list:
        """One covariance structure object per covariance group."""
        return [make_structure(name, self.n_visits, self.visit_levels,
                               coordinates=self.visit_times) for _ in self.group_levels]

    def design_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Fixed-effects rows (columns as ``fe_params``) for new rows, e.g. missing visits."""
        return design_rows(self.design, frame)

    # --- engines --------------------------------------------------------------------------------
    def _engine(self, y, weights, structures, keep_rows):
        """Engine on the standardised outcome; reuses the design sums of the last engine when
        the observed rows and weights are the same."""
        ys = np.asarray(y, dtype=float) / self._scale
        rows = np.isfinite(ys)
        cache = self._engine_cache
        if cache is not None:
            c_rows, c_w, c_names, eng = cache
            same_w = (c_w is None and weights is None) or (
                c_w is not None and weights is not None and np.array_equal(c_w, weights))
            if same_w and c_names == [s.name for s in structures] and \
                    np.array_equal(c_rows, rows) and hasattr(eng, "ys"):
                new = eng.with_outcome(ys if self._root_w is None else ys * self._root_w)
                new.structures = structures
                return new
        X = self.design.X
        if self._root_w is not None:
            X = X * self._root_w[:, None]
            ys = ys * self._root_w
        eng = MMRMEngine(ys, X, self.visit_codes, self.subject_codes,
                         self.n_subjects, self.n_visits, self.cov_group, structures,
                         reml=self.reml, subject_weights=weights, keep_rows=keep_rows)
        if eng.n_rows == 0:
            raise FitFailedError("mmrm: no observations left to fit (every outcome is missing "
                                 "or every subject has weight 0)")
        if eng.N - eng.p < 1:
            raise FitFailedError(f"mmrm: {eng.N:g} observations cannot estimate {eng.p} fixed "
                                 "effects")
        if keep_rows:
            self._engine_cache = (rows, None if weights is None else np.array(weights),
                                  [s.name for s in structures], eng)
        return eng

    def _cold_starts(self, engine, structures):
        """Starting values: the empirical covariance of OLS residuals, an uncorrelated and an
        exchangeable covariance with the same variances."""
        beta0 = engine.ols_beta()  # on the engine's own outcome and weights
        S_emp = engine.empirical_cov(beta0)
        starts = [("empirical", S_emp)]
        t = self.n_visits
        diag = [np.diag(np.diag(S)) for S in S_emp]
        starts.append(("uncorrelated", diag))
        exch = []
        for S in S_emp:
            sd = np.sqrt(np.diag(S))
            R = np.full((t, t), 0.5)
            np.fill_diagonal(R, 1.0)
            exch.append(R * np.outer(sd, sd))
        starts.append(("exchangeable", exch))
        out = []
        for label, Ss in starts:
            try:
                x0 = np.concatenate([st.start(S) for st, S in zip(structures, Ss, strict=True)])
            except (np.linalg.LinAlgError, ValueError, FloatingPointError):
                continue
            if np.all(np.isfinite(x0)):
                out.append((label, x0))
        return out

    def _optimise(self, engine, structures, name, start):
        """Try the starting values in turn; return (optimum, record) of the first that
        converges, or raise FitFailedError listing every attempt."""
        record = _Attempt()
        starts = []
        if isinstance(start, np.ndarray):
            starts.append(("given", np.asarray(start, dtype=float), True))
        elif start == "last" and name in self._last:
            starts.append(("last optimum", self._last[name], True))
        elif start not in ("last", "cold", None):
            raise ConfigurationError(f"refit: start must be 'last', 'cold' or an array of "
                                     f"optimisation parameters, got {start!r}")
        reasons = []

        def candidates():
            yield from starts
            for lab, x0 in self._cold_starts(engine, structures):
                yield lab, x0, False

        for i, (label, x0, warm) in enumerate(candidates()):
            try:
                opt = optimise(engine.deviance_and_grad_opt, x0, hess=engine.hessian_opt,
                               newton_first=warm)
            except (np.linalg.LinAlgError, ValueError, FloatingPointError, TypeError) as exc:
                reasons.append(f"start {label!r}: {type(exc).__name__}: {exc}")
                continue
            record.add(i, label, opt)
            if opt.converged:
                opt.trace_all = record.trace_all
                return opt
            reasons.append(f"start {label!r}: largest gradient component {opt.max_grad:.3g} "
                           f"({opt.message})")
        raise FitFailedError(
            f"mmrm: the {name!r} fit did not converge from any starting value ("
            + "; ".join(reasons) + f"). {_ADVICE}", trace=record.trace_all)

    def _fit(self, y, weights, start, warn, keep_rows):
        names = [self.covariance] if self.covariance is not None else \
            self.covariance_candidates
        attempts = []
        last_error = None
        for name in names:
            structures = self.structures(name)
            try:
                engine = self._engine(y, weights, structures, keep_rows)
                opt = self._optimise(engine, structures, name, start)
            except FitFailedError as exc:
                last_error = exc
                attempts.append((name, str(exc)))
                continue
            self._last[name] = opt.x
            if self.covariance is None and len(self.covariance_candidates) > 1:
                self.covariance = name
            return MMRMResult(self, engine, opt, structures, name,
                              subject_weights=weights, attempts=attempts, warn=warn)
        if len(names) == 1:
            raise last_error
        raise FitFailedError(
            "mmrm: no covariance structure in " + str(names) + " converged: "
            + "; ".join(f"{n}: {why}" for n, why in attempts),
            trace=getattr(last_error, "trace", []))

    # --- public API -------------------------------------------------------------------------
    @single_thread_blas
    def fit(self) -> MMRMResult:
        """Fit the model to its data (what :func:`kanalysis.mmrm` returns).

        With a list of covariance structures the first that converges is used
        (``result.covariance``), and ``result.covariance_attempts`` says why the ones before
        it were not. Raises :class:`~kanalysis.errors.FitFailedError` when no fit converges.
        """
        self.covariance = None
        return self._fit(self.y, None, start="cold", warn=True, keep_rows=False)

    def _subject_weights(self, subjects, weights):
        w = None
        if weights is not None:
            if isinstance(weights, dict):
                weights = pd.Series(weights)
            if isinstance(weights, pd.Series):
                unknown = [k for k in weights.index if k not in set(self.subjects)]
                if unknown:
                    raise ConfigurationError(f"refit: weights name unknown subject(s) "
                                             f"{unknown[:10]}")
                w = weights.reindex(self.subjects).fillna(0.0).to_numpy(dtype=float)
            else:
                w = np.asarray(weights, dtype=float)
                if w.shape != (self.n_subjects,):
                    raise ConfigurationError(
                        f"refit: weights must have one value per subject ({self.n_subjects}, "
                        f"in the order of model.subjects), got shape {w.shape}")
            if np.any(~np.isfinite(w)) or np.any(w < 0):
                raise ConfigurationError("refit: weights must be finite and >= 0")
        if subjects is not None:
            counts = Counter(list(subjects))
            unknown = [k for k in counts if k not in set(self.subjects)]
            if unknown:
                raise ConfigurationError(f"refit: unknown subject(s) {unknown[:10]}")
            keep = pd.Series(counts, dtype=float).reindex(self.subjects).fillna(0.0)
            keep = keep.to_numpy()
            w = keep if w is None else w * keep
        return w

    def _outcome(self, y):
        if y is None:
            return self.y
        if isinstance(y, pd.Series):
            if not y.index.equals(self.data.index):
                y = y.reindex(self.data.index)
            y = y.to_numpy(dtype=float)
        y = np.asarray(y, dtype=float)
        if y.shape != self.y.shape:
            raise ConfigurationError(f"refit: y must have one value per row of model.data "
                                     f"({len(self.y)}), got shape {y.shape}")
        if np.any(np.isinf(y)):
            raise DataValidationError("refit: y holds infinite values; use NaN for missing")
        return y

    @single_thread_blas
    def refit(self, y=None, subjects=None, weights=None, start="last") -> MMRMResult:
        """Fit the prepared model again.

        Parameters
        ----------
        y : array-like or Series, optional
            New outcome, one value per row of ``model.data`` (a Series is aligned on its
            index); NaN marks a missing observation. Default: the model's outcome.
        subjects : list, optional
            Subject labels to keep (jackknife: all but one). A label given k times counts k
            times (a bootstrap sample of labels).
        weights : array-like, Series or dict, optional
            Per-subject multiplicities (bootstrap), in the order of ``model.subjects`` or keyed
            by label: 2 counts a subject twice, exactly as duplicating its rows under a new id;
            0 leaves it out. (Observation weights, SAS ``WEIGHT``, are a model argument.)
        start : "last", "cold" or array
            ``"last"`` (default): start from the previous converged optimum of this model
            (after :meth:`fit` or an earlier refit), falling back to cold starts; ``"cold"``:
            the empirical starting values only.

        Returns
        -------
        MMRMResult, with inference computed on first use.

        Raises
        ------
        FitFailedError
            When no starting value leads to a converged fit; no numbers are returned.
        """
        yv = self._outcome(y)
        w = self._subject_weights(subjects, weights)
        return self._fit(yv, w, start=start, warn=False, keep_rows=True)

    @single_thread_blas
    def refit_many(self, ys=None, subject_sets=None, weights=None, start="last") -> RefitBatch:
        """Many refits; failures are counted, not raised.

        Give one or more of ``ys`` (outcome vectors), ``subject_sets`` (label lists) and
        ``weights`` (multiplicity vectors) as sequences of equal length; fit ``i`` uses the
        ``i``-th of each. Returns a :class:`RefitBatch`.
        """
        seqs = {k: v for k, v in (("y", ys), ("subjects", subject_sets), ("weights", weights))
                if v is not None}
        if not seqs:
            raise ConfigurationError("refit_many: give ys, subject_sets or weights")
        if isinstance(seqs.get("y"), np.ndarray) and seqs["y"].ndim == 2:
            seqs["y"] = list(seqs["y"])
        if isinstance(seqs.get("weights"), np.ndarray) and seqs["weights"].ndim == 2:
            seqs["weights"] = list(seqs["weights"])
        lengths = {k: len(v) for k, v in seqs.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigurationError(f"refit_many: the sequences differ in length {lengths}")
        n = next(iter(lengths.values()))
        batch = RefitBatch()
        for i in range(n):
            kw = {k: v[i] for k, v in seqs.items()}
            try:
                res = self.refit(start=start, **kw)
            except FitFailedError as exc:
                batch.results.append(None)
                batch.failures.append((i, str(exc)))
                continue
            batch.results.append(res)
        return batch
