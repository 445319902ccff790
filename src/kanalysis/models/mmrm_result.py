r"""The result of an MMRM fit: cheap numbers at once, inference on first use.

``fe_params``, ``llf``, ``cov`` and the covariance parameters are available as soon as the
optimiser stops (one evaluation of the criterion). The observed information (Hessian in the
covariance parameters), Satterthwaite df, the Kenward-Roger adjustment and the empirical
covariance are computed the first time something needs them (``bse``, ``df``, ``lsmeans``,
``contrast``, ``f_test``, ``anova``, ...), so that refits that only need the estimates (multiple
imputation, bootstrap, jackknife, simulation) never pay for them.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd

from kanalysis.errors import ConvergenceWarning
from kanalysis.models import inference
from kanalysis.models._engine import second_derivatives
from kanalysis.models._results import FixedEffectsInference, FixedEffectsResult, SummaryText


class MMRMResult(FixedEffectsResult):
    r"""Result of :func:`kanalysis.mmrm` and of :meth:`MMRMModel.fit` / ``refit``.

    Attributes
    ----------
    fe_params, bse, df, tvalues, pvalues : pandas.Series
        Fixed effects; SEs from the model-based covariance (Satterthwaite), the Kenward-Roger
        adjusted covariance or the empirical (sandwich) covariance; df by the chosen method.
        Everything but ``fe_params`` is computed on first use.
    cov, corr : pandas.DataFrame
        Estimated within-subject covariance and correlation by visit level. With ``group=`` they
        are dicts ``{group level: DataFrame}``.
    llf : float
        REML or ML log-likelihood; ``-2 * llf`` is SAS PROC MIXED's "-2 Res Log Likelihood"
        (REML) or "-2 Log Likelihood" (ML).
    aic, bic : float
        SAS / R mmrm convention: ``k`` = covariance parameters (+ fixed effects under ML);
        BIC uses log(number of subjects).
    scale : float
        Mean of the diagonal of ``cov`` (the residual variance for homogeneous structures).
    n_obs, n_subjects, n_dropped, n_patterns : int
        Observations and subjects the likelihood uses (bootstrap multiplicities count each
        copy), rows not used (missing values), distinct observed-visit patterns.
    converged : bool
        Always True for a returned result: a fit that fails raises
        :class:`~kanalysis.errors.FitFailedError`.
    optimizer_trace : list of dict
        One entry per evaluation of the criterion: ``attempt``, ``start``, ``stage``, ``f``,
        ``max_grad``.
    covariance : str
        The structure used (with a fallback list, the first that converged);
        ``covariance_attempts`` lists every structure tried and why it was not used.
    cov_params_natural : pandas.DataFrame
        Asymptotic covariance of the covariance parameters (inverse observed information).
    """

    def __init__(self, model, engine_std, optimum, structures, covariance,
                 subject_weights=None, attempts=(), warn=True):
        self.model = model
        self.design = model.design
        self._engine_std = engine_std
        self._structures = structures
        self._optimum = optimum
        self._subject_weights = subject_weights
        self.converged = bool(optimum.converged)
        self.optimizer_message = optimum.message
        self.covariance = covariance
        self.covariance_attempts = list(attempts)
        self.reml = model.reml
        self.df_method = model.df_method
        self.vcov = model.vcov
        self.subject, self.visit, self.group = model.subject, model.visit, model.group
        self.formula = model.formula
        self.visit_levels = model.visit_levels
        self.group_levels = model.group_levels
        self.method = "REML" if self.reml else "ML"
        s = model._scale
        eng = engine_std
        n_obs = eng.N
        self.n_obs = int(round(n_obs)) if float(n_obs).is_integer() else float(n_obs)
        n_sub = float(eng.subject_weights.sum())
        self.n_subjects = int(round(n_sub)) if n_sub.is_integer() else n_sub
        self.n_dropped = int(model.design.n_dropped + (len(model.y) - eng.n_rows))
        self.n_patterns = eng.n_patterns
        st = eng.state_opt(optimum.x)
        self._state_std = st
        dev_std = st["core"]["logdet"] + st["rss"]
        if self.reml:
            dev_std += st["ld_x"] + (eng.N - eng.p) * np.log(2 * np.pi)
            dev = dev_std + (eng.N - eng.p) * np.log(s**2)
        else:
            dev_std += eng.N * np.log(2 * np.pi)
            dev = dev_std + eng.N * np.log(s**2)
        if model.obs_weights is not None:  # log|V_i| = log|Sigma_oo| - sum_j log w_ij
            rows = eng._rows
            mult = np.ones(int(rows.sum()))
            if subject_weights is not None:
                mult = np.asarray(subject_weights, float)[model.subject_codes[rows]]
            dev -= float(np.sum(mult * np.log(model.obs_weights[rows])))
        self.llf = -0.5 * float(dev)
        k = sum(eng.nat_sizes) + (0 if self.reml else eng.p)
        self.n_params = k
        self.aic = float(dev) + 2 * k
        self.bic = float(dev) + k * np.log(max(n_sub, 1.0))
        self._beta = st["beta"] * s
        if warn:
            self._warn_boundary()

    @functools.cached_property
    def optimizer_trace(self) -> list:
        opt = self._optimum
        return list(getattr(opt, "trace_all", opt.trace))

    @functools.cached_property
    def fe_params(self) -> pd.Series:
        return pd.Series(self._beta, index=self.design.fe_names, name="estimate")

    @functools.cached_property
    def natural_params(self) -> np.ndarray:
        eng, s = self._engine_std, self.model._scale
        nat_std = eng.opt_to_nat(self._optimum.x)
        return np.concatenate([st.scale_natural(v, s**2) for st, v in
                               zip(self._structures, eng.split(nat_std, eng.nat_sizes),
                                   strict=True)])

    @functools.cached_property
    def _nat_names(self) -> list:
        names = []
        for gl, struct in zip(self.group_levels, self._structures, strict=True):
            prefix = "" if self.group is None else f"{gl}:"
            names += [prefix + n for n in struct.natural_names]
        return names

    @functools.cached_property
    def covariance_parameters(self) -> pd.Series:
        """Covariance parameters on SAS's (natural) scale."""
        return pd.Series(self.natural_params, index=self._nat_names, name="estimate")

    @functools.cached_property
    def _sigmas(self) -> list:
        s2 = self.model._scale ** 2
        return [S * s2 for S in self._state_std["sigmas"]]

    @functools.cached_property
    def _cov_corr(self):
        covs, corrs = {}, {}
        for gl, S in zip(self.group_levels, self._sigmas, strict=True):
            sd = np.sqrt(np.diag(S))
            covs[gl] = pd.DataFrame(S, index=self.visit_levels, columns=self.visit_levels)
            corrs[gl] = pd.DataFrame(S / np.outer(sd, sd), index=self.visit_levels,
                                     columns=self.visit_levels)
        if self.group is None:
            return covs[self.group_levels[0]], corrs[self.group_levels[0]]
        return covs, corrs

    @property
    def cov(self):
        """Within-subject covariance by visit (a dict per covariance group with group=)."""
        return self._cov_corr[0]

    @property
    def corr(self):
        """Within-subject correlation by visit (a dict per covariance group with group=)."""
        return self._cov_corr[1]

    @functools.cached_property
    def scale(self) -> float:
        return float(np.mean([np.mean(np.diag(S)) for S in self._sigmas]))

    @functools.cached_property
    def boundary_messages(self) -> list:
        """What is on the boundary of the parameter space (empty for an interior fit)."""
        eng = self._engine_std
        msgs = []
        for gl, struct, v in zip(self.group_levels, self._structures,
                                 eng.split(self.natural_params, eng.nat_sizes), strict=True):
            for m in struct.boundary_messages(v):
                msgs.append(m + ("" if self.group is None else f" (group {gl})"))
        return msgs

    @property
    def boundary(self) -> bool:
        return bool(self.boundary_messages)

    def _warn_boundary(self):
        msgs = self.boundary_messages
        if msgs:
            warnings.warn(
                "mmrm: boundary fit: " + "; ".join(msgs) + ". Consider a simpler covariance "
                "structure (e.g. 'toep', 'ar1h' or 'cs' instead of 'us') or check visits with "
                "very few observations.", ConvergenceWarning, stacklevel=5)

    # --- deprecated names ---------------------------------------------------------------------
    @property
    def n_groups(self):
        """Deprecated: the number of subjects (use ``n_subjects``)."""
        warnings.warn("MMRMResult.n_groups is deprecated; use n_subjects", DeprecationWarning,
                      stacklevel=2)
        return self.n_subjects

    # --- lazily computed pieces ---------------------------------------------------------------
    @functools.cached_property
    def engine(self):
        """The likelihood engine on the outcome's own scale (for inference)."""
        return self._engine_std.rescaled(self.model._scale)

    @functools.cached_property
    def _natural_info(self):
        eng, nat = self.engine, self.natural_params
        d2 = second_derivatives(self._structures, nat)
        H = eng.hessian_nat(nat, d2)
        W, ok = inference.param_covariance(H)
        return d2, H, W, ok

    @property
    def hessian_ok(self) -> bool:
        """Whether the observed information in the covariance parameters is positive
        definite (if not, df and Kenward-Roger adjustments are approximate)."""
        return self._natural_info[3]

    @functools.cached_property
    def cov_params_natural(self) -> pd.DataFrame:
        W = self._natural_info[2]
        return pd.DataFrame(W, index=self._nat_names, columns=self._nat_names)

    def _compute_inference(self) -> FixedEffectsInference:
        eng, nat = self.engine, self.natural_params
        d2, _, W, ok = self._natural_info
        if not ok and not self.boundary:
            warnings.warn(
                "mmrm: the Hessian in the covariance parameters is not positive definite, so "
                "df and Kenward-Roger adjustments are approximate. Consider a simpler "
                "covariance structure.", ConvergenceWarning, stacklevel=5)
        st = eng.state(nat)
        C = st["C"]
        P = eng.P_list(nat)
        PhiA = None
        if self.df_method == "kenward-roger":
            inner = eng.kr_inner(nat, W, d2)
            PhiA = C + 2.0 * C @ inner @ C
            PhiA = 0.5 * (PhiA + PhiA.T)
        if self.vcov == "empirical":
            V, df_fn = self._empirical(st)
            return FixedEffectsInference(C=C, P=P, W=W, PhiA=None, empirical=V,
                                         empirical_df=df_fn)
        return FixedEffectsInference(C=C, P=P, W=W, PhiA=PhiA)

    def _empirical(self, st):
        r"""Sandwich covariance (SAS ``EMPIRICAL``, R mmrm ``vcov = "Empirical"``, CR0)

        .. math:: C \Big(\sum_i X_i'V_i^{-1}r_ir_i'V_i^{-1}X_i\Big) C,

        and its Satterthwaite df (Bell & McCaffrey 2002, as R mmrm): for a contrast c,
        :math:`\nu = \mathrm{tr}(G)^2 / \sum_{ij} G_{ij}^2` with :math:`G = D - A'CA`,
        :math:`a_i = X_i'V_i^{-1}X_iCc`, :math:`D = \mathrm{diag}(c'Ca_i)` (the n x n matrix
        :math:`G_{ij} = g_i'g_j`, :math:`g_i = (I-H)_i'\tilde X_iCc` of R mmrm's vignette,
        written with p x p sums)."""
        model, eng = self.model, self._engine_std
        rows = eng._rows
        local = np.full(model.n_subjects, -1)
        local[eng.subjects] = np.arange(len(eng.subjects))
        sc, vc = local[model.subject_codes[rows]], model.visit_codes[rows]
        X = model.design.X[rows]
        y = model.y[rows]
        if model._root_w is not None:
            X, y = X * model._root_w[rows][:, None], y * model._root_w[rows]
        n, t, p = len(eng.subjects), model.n_visits, X.shape[1]
        Xf = np.zeros((n, t, p))
        Xf[sc, vc] = X
        yf = np.zeros((n, t))
        yf[sc, vc] = y
        Wp = st["core"]["W"]  # the inverse covariances at the optimum, by pattern
        Wsub = Wp[eng.subject_pattern]  # (n, t, t)
        C = st["C"]
        k = eng.subject_weights
        beta = self._beta
        r = yf - Xf @ beta
        score = np.einsum("ntp,nt->np", Xf, np.einsum("nab,nb->na", Wsub, r))
        meat = score.T @ (k[:, None] * score)
        V = C @ meat @ C
        V = 0.5 * (V + V.T)

        def df_fn(Lmat):
            out = []
            for c in np.atleast_2d(Lmat):
                u = C @ c
                a = np.einsum("ntp,nt->np", Xf, np.einsum("nab,nb->na", Wsub, Xf @ u))
                d = a @ u
                q = np.einsum("np,pq,nq->n", a, C, a)
                M = a.T @ (k[:, None] * a)
                CM = C @ M
                tr = float(np.sum(k * (d - q)))
                ss = float(np.sum(k * d**2) - 2.0 * np.sum(k * d * q) + np.sum(CM * CM.T))
                out.append(tr**2 / ss if ss > 0 else np.inf)
            return np.array(out)

        return V, df_fn

    # --- rows the fit used ----------------------------------------------------------------------
    @functools.cached_property
    def analysis_data(self) -> pd.DataFrame:
        """The rows of ``model.data`` this fit used (outcome observed, subject included)."""
        rows = self._engine_std._rows
        if rows.all():
            return self.design.data
        return self.design.data.iloc[np.flatnonzero(rows)]

    def _grid_data(self) -> pd.DataFrame:
        w = self._subject_weights
        if w is None or np.all(w[self.model.subject_codes[self._engine_std._rows]] == 1):
            return self.analysis_data
        rows = np.flatnonzero(self._engine_std._rows)
        mult = np.asarray(w, dtype=float)[self.model.subject_codes[rows]]
        if not np.allclose(mult, np.round(mult)):
            raise NotImplementedError("LS-means with non-integer subject weights")
        return self.design.data.iloc[np.repeat(rows, np.round(mult).astype(int))]

    def _predict_population(self, newdata, alpha=0.05):
        return super()._predict_population(self.analysis_data if newdata is None else newdata,
                                           alpha)

    def _level_order(self) -> dict:
        return {self.visit: list(self.visit_levels)}

    def summary(self) -> SummaryText:
        """Printable summary (also what ``print(result)`` shows)."""
        lines = [
            f"MMRM fit by {self.method}: {self.formula}",
            f"Covariance: {self.covariance}({self.visit} | {self.subject})"
            + ("" if self.group is None else f", separate per {self.group}"),
            f"Observations: {self.n_obs}  Subjects: {self.n_subjects}  Visit patterns: "
            f"{self.n_patterns}  Rows dropped (missing values): {self.n_dropped}",
            f"-2 logLik: {-2 * self.llf:.4f}  AIC: {self.aic:.4f}  BIC: {self.bic:.4f}  "
            f"converged: {self.converged}",
        ]
        for name, why in self.covariance_attempts:
            lines.append(f"  (covariance {name!r} not used: {why})")
        lines += ["", "Within-subject covariance:"]
        covs = self.cov if isinstance(self.cov, dict) else {None: self.cov}
        for gl, c in covs.items():
            if gl is not None:
                lines.append(f"  {self.group} = {gl}")
            lines += c.to_string(float_format=lambda v: f"{v:.4f}").splitlines()
        df_label = "Kenward-Roger" if self.df_method == "kenward-roger" else "Satterthwaite"
        lines += ["", f"Fixed effects ({df_label} df):"]
        lines += self._fe_summary_lines()
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict:
        out = super().key_numbers()
        out.update({"n_subjects": self.n_subjects, "covariance": self.covariance,
                    "method": self.method, "minus2_llf": -2.0 * self.llf,
                    "aic": self.aic, "bic": self.bic})
        return out

    def __repr__(self) -> str:
        return str(self.summary())
