r"""Mixed model for repeated measures (MMRM): categorical visits, structured visit covariance.

.. math::

    y_i = X_i\beta + \varepsilon_i,\qquad \varepsilon_i \sim N(0, \Sigma_{o_i o_i}),

where :math:`\Sigma` (t x t, one row per visit level) has a chosen structure (``us``, ``cs``,
``csh``, ``ar1``, ``ar1h``, ``toep``; see :mod:`kanalysis.models.covariance`), optionally one per
group (e.g. per arm), and :math:`o_i` are the visits subject *i* attended (missing at random).
Fitted by REML or ML with the engine in :mod:`kanalysis.models._engine`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError, ConvergenceWarning, DataValidationError
from kanalysis.models import inference
from kanalysis.models._design import Design, build_design
from kanalysis.models._engine import MMRMEngine, second_derivatives, sym_solve
from kanalysis.models._results import (
    FixedEffectsResult,
    SummaryText,
    minimise,
    single_thread_blas,
)
from kanalysis.models.covariance import make_structure

DF_METHODS = ("satterthwaite", "kenward-roger")


def _ordered_levels(values: pd.Series) -> list | None:
    """Levels in their natural order when the values say it: category order (Categorical) or
    numeric order (numbers, or strings that all read as numbers); None otherwise."""
    present = set(pd.unique(values))
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if c in present]
    uniq = pd.unique(values)
    num = pd.to_numeric(pd.Series(uniq), errors="coerce")
    if num.notna().all():
        return [u for _, u in sorted(zip(num, uniq, strict=True), key=lambda z: z[0])]
    return None


def _order_by_precedence(data: pd.DataFrame, subject: str, visit: str, levels) -> list:
    """Order visit labels ("40min", "4h", "day1", ...) by how they follow each other within
    subjects in the rows as given: level a comes before b when, among subjects with both, a
    precedes b more often than not (a Copeland ranking, robust to missed visits)."""
    frame = data[[subject, visit]].dropna()
    frame = frame[frame[visit].isin(set(levels))]
    subj = pd.factorize(frame[subject])[0]
    lev = list(pd.unique(frame[visit]))  # first appearance, the tie-break
    code = frame[visit].map({v: i for i, v in enumerate(lev)}).to_numpy()
    rank = frame.groupby(subj, sort=False).cumcount().to_numpy().astype(float)
    L = len(lev)
    pos = np.full((subj.max() + 1, L), np.nan)
    # first occurrence within subject: assign in reverse so that the first row wins
    pos[subj[::-1], code[::-1]] = rank[::-1]
    before = np.zeros((L, L))
    for a in range(L):
        with np.errstate(invalid="ignore"):
            before[a] = np.nansum(pos[:, [a]] < pos, axis=0)
    wins = (before > before.T).sum(1)
    mean_pos = np.nanmean(pos / np.nanmax(pos, axis=1, keepdims=True).clip(min=1), axis=0)
    order = sorted(range(L), key=lambda a: (-wins[a], mean_pos[a], a))
    return [lev[a] for a in order]


class MMRMResult(FixedEffectsResult):
    r"""Result of :func:`kanalysis.mmrm`.

    Attributes
    ----------
    fe_params, bse, df, tvalues, pvalues : pandas.Series
        Fixed effects; SEs from the model-based covariance (Satterthwaite) or the
        Kenward-Roger adjusted covariance; df by the chosen method.
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
    cov_params_natural : pandas.DataFrame
        Asymptotic covariance of the covariance parameters (inverse observed information).
    """

    def __init__(self, design: Design, engine: MMRMEngine, nat, structures, converged, reml,
                 df_method, subject, visit, group, group_levels, visit_levels, formula,
                 covariance, opt_message):
        self.design = design
        self.engine = engine
        self.converged = converged
        self.reml = reml
        self.df_method = df_method
        self.subject, self.visit, self.group = subject, visit, group
        self.formula = formula
        self.covariance = covariance
        self.optimizer_message = opt_message
        self.visit_levels = visit_levels
        self.group_levels = group_levels
        self.n_obs = engine.N
        self.n_groups = len(design.group_labels)
        self.n_dropped = design.n_dropped
        self.n_patterns = engine.n_patterns
        self.method = "REML" if reml else "ML"
        self.natural_params = nat
        dev = engine.deviance_nat(nat)
        self.llf = -0.5 * dev
        k = len(nat) + (0 if reml else engine.p)
        self.n_params = k
        self.aic = dev + 2 * k
        self.bic = dev + k * np.log(self.n_groups)
        st = engine.state(nat)
        d2 = second_derivatives(structures, nat)
        H = engine.hessian_nat(nat, d2)
        W, ok = inference.param_covariance(H)
        self.hessian_ok = ok
        P = engine.P_list(nat)
        PhiA = None
        if df_method == "kenward-roger":
            inner = engine.kr_inner(nat, W, d2)
            PhiA = st["C"] + 2.0 * st["C"] @ inner @ st["C"]
            PhiA = 0.5 * (PhiA + PhiA.T)
        self._init_inference(st["beta"], st["C"], P, W, PhiA)
        names = []
        for gl, s in zip(group_levels, structures, strict=True):
            prefix = "" if group is None else f"{gl}:"
            names += [prefix + n for n in s.natural_names]
        self.cov_params_natural = pd.DataFrame(W, index=names, columns=names)
        self.covariance_parameters = pd.Series(nat, index=names, name="estimate")
        covs, corrs = {}, {}
        for gl, S in zip(group_levels, st["sigmas"], strict=True):
            sd = np.sqrt(np.diag(S))
            covs[gl] = pd.DataFrame(S, index=visit_levels, columns=visit_levels)
            corrs[gl] = pd.DataFrame(S / np.outer(sd, sd), index=visit_levels,
                                     columns=visit_levels)
        if group is None:
            self.cov, self.corr = covs[group_levels[0]], corrs[group_levels[0]]
        else:
            self.cov, self.corr = covs, corrs
        self.scale = float(np.mean([np.mean(np.diag(S)) for S in st["sigmas"]]))
        msgs = []
        for gl, s, v in zip(group_levels, structures, engine.split(nat, engine.nat_sizes),
                            strict=True):
            for m in s.boundary_messages(v):
                msgs.append(m + ("" if group is None else f" (group {gl})"))
        self.boundary = bool(msgs)
        if msgs:
            warnings.warn(
                "mmrm: boundary fit: " + "; ".join(msgs) + ". Consider a simpler covariance "
                "structure (e.g. 'toep', 'ar1h' or 'cs' instead of 'us') or check visits with "
                "very few observations.", ConvergenceWarning, stacklevel=3)
        elif not ok:
            warnings.warn(
                "mmrm: the Hessian in the covariance parameters is not positive definite, so "
                "df and Kenward-Roger adjustments are approximate. Consider a simpler "
                "covariance structure.", ConvergenceWarning, stacklevel=3)

    def _level_order(self) -> dict:
        return {self.visit: list(self.visit_levels)}

    _second_derivatives = staticmethod(second_derivatives)

    def summary(self) -> SummaryText:
        """Printable summary (also what ``print(result)`` shows)."""
        lines = [
            f"MMRM fit by {self.method}: {self.formula}",
            f"Covariance: {self.covariance}({self.visit} | {self.subject})"
            + ("" if self.group is None else f", separate per {self.group}"),
            f"Observations: {self.n_obs}  Subjects: {self.n_groups}  Visit patterns: "
            f"{self.n_patterns}  Rows dropped (missing values): {self.n_dropped}",
            f"-2 logLik: {-2 * self.llf:.4f}  AIC: {self.aic:.4f}  BIC: {self.bic:.4f}  "
            f"converged: {self.converged}",
            "",
            "Within-subject covariance:",
        ]
        covs = self.cov if isinstance(self.cov, dict) else {None: self.cov}
        for gl, c in covs.items():
            if gl is not None:
                lines.append(f"  {self.group} = {gl}")
            lines += c.to_string(float_format=lambda v: f"{v:.4f}").splitlines()
        df_label = "Kenward-Roger" if self.df_method == "kenward-roger" else "Satterthwaite"
        lines += ["", f"Fixed effects ({df_label} df):"]
        lines += self._fe_summary_lines()
        return SummaryText("\n".join(lines))

    def __repr__(self) -> str:
        return str(self.summary())


@single_thread_blas
def mmrm(data: pd.DataFrame, formula: str, subject: str, visit: str, covariance: str = "us",
         reml: bool = True, group: str | None = None,
         df_method: str = "satterthwaite", visit_order: list | None = None) -> MMRMResult:
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
    covariance : {"us", "cs", "csh", "ar1", "ar1h", "toep"}
        Within-subject covariance structure.
    reml : bool
        REML (default) or ML.
    group : str, optional
        Column (constant within subject) giving a separate covariance per level, e.g. the arm
        (SAS ``REPEATED / GROUP=``).
    visit_order : list, optional
        Explicit order of the visit levels (overrides the rule above).
    df_method : {"satterthwaite", "kenward-roger"}
        Satterthwaite df with the model-based covariance, or Kenward-Roger adjusted covariance
        and df (SAS ``DDFM=KR``; for ``us``, ``cs`` and ``toep`` the covariance is linear in its
        parameters, which reproduces SAS's KR for TYPE=UN).

    Returns
    -------
    MMRMResult

    References
    ----------
    Mallinckrodt CH et al. (2008). Drug Inf J 42:303-319.
    Kenward MG, Roger JH (1997). Biometrics 53:983-997.
    Sabanes Bove D et al. mmrm: Mixed Models for Repeated Measures (R package vignettes).
    """
    df_method = str(df_method).lower().replace("_", "-")
    if df_method in ("kr", "kenward_roger", "kenwardroger"):
        df_method = "kenward-roger"
    if df_method not in DF_METHODS:
        raise ConfigurationError(f"mmrm: df_method must be one of {DF_METHODS}, got {df_method!r}")
    if df_method == "kenward-roger" and not reml:
        raise ConfigurationError("mmrm: Kenward-Roger needs a REML fit (reml=True)")
    make_structure(covariance, 1)  # validate the name early
    design = build_design(data, formula, subject, extra_columns=[visit, group], what="mmrm")
    frame = design.data
    if visit_order is not None:
        visit_levels = [v for v in visit_order if v in set(frame[visit])]
        unknown = sorted(map(str, set(frame[visit]) - set(visit_order)))
        if unknown:
            raise ConfigurationError(f"mmrm: visit_order lacks the {visit!r} level(s) {unknown}")
    else:
        visit_levels = _ordered_levels(frame[visit])
        if visit_levels is None:
            visit_levels = _order_by_precedence(data, subject, visit, set(frame[visit]))
    vpos = {v: i for i, v in enumerate(visit_levels)}
    visit_code = frame[visit].map(vpos).to_numpy().astype(np.int64)
    subj_code = design.group_codes
    dup = pd.Series(subj_code).duplicated(keep=False).to_numpy() & \
        pd.DataFrame({"s": subj_code, "v": visit_code}).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = frame.index[dup]
        raise DataValidationError(
            f"mmrm: subjects have more than one row for the same {visit!r} level (rows "
            f"{list(rows[:10])}{' ...' if len(rows) > 10 else ''}); keep one row per subject and "
            "visit (e.g. the analysis flag ANL01FL).")
    n_subj = len(design.group_labels)
    if group is None:
        group_levels = ["all"]
        cov_group = np.zeros(n_subj, dtype=np.int64)
    else:
        gvals = frame[group]
        per_subj = pd.DataFrame({"s": subj_code, "g": gvals.to_numpy()}).drop_duplicates()
        if per_subj["s"].duplicated().any():
            bad = design.group_labels[per_subj.loc[per_subj["s"].duplicated(), "s"].to_numpy()]
            raise DataValidationError(
                f"mmrm: the covariance group column {group!r} changes within subject(s) "
                f"{list(bad[:10])}; it must be constant within subject.")
        group_levels = _ordered_levels(gvals) or sorted(pd.unique(gvals), key=str)
        gpos = {g: i for i, g in enumerate(group_levels)}
        cov_group = np.zeros(n_subj, dtype=np.int64)
        cov_group[per_subj["s"].to_numpy()] = per_subj["g"].map(gpos).to_numpy()
    t = len(visit_levels)
    structures = [make_structure(covariance, t, visit_levels) for _ in group_levels]
    engine = MMRMEngine(design.y, design.X, visit_code, subj_code, n_subj, t, cov_group,
                        structures, reml=reml)
    if engine.N - engine.p < 1:
        raise ConfigurationError(f"mmrm: {engine.N} observations cannot estimate {engine.p} "
                                 "fixed effects")
    for gi, gl in enumerate(group_levels):
        sel = engine.pat_group == gi
        counts = (engine.pat_mask[sel] * engine.n_s[sel, None]).sum(0)
        if np.any(counts < 2) and covariance in ("us", "csh", "ar1h"):
            few = [str(visit_levels[j]) for j in np.flatnonzero(counts < 2)]
            warnings.warn(
                f"mmrm: visit level(s) {few}" + ("" if group is None else f" in group {gl}")
                + f" have fewer than 2 observations, so their variance under {covariance!r} is "
                "poorly determined; consider a simpler structure.", ConvergenceWarning,
                stacklevel=2)
    # Starting values: OLS residual covariance by visit (available cases), projected to PD.
    beta0 = sym_solve(design.X.T @ design.X, design.X.T @ design.y)
    # Optimise on a standardised outcome (residual SD 1) so that the optimiser's parameters,
    # gradient and stopping rule do not depend on the outcome's units; then map back.
    resid_sd = float(np.sqrt(np.mean((design.y - design.X @ beta0) ** 2)))
    resid_sd = resid_sd if resid_sd > 0 else 1.0
    engine.rescale_y(1.0 / resid_sd)
    S_emp = engine.empirical_cov(beta0 / resid_sd)
    opt0 = np.concatenate([s.start(S) for s, S in zip(structures, S_emp, strict=True)])
    opt, converged, msg = minimise(
        engine.deviance_and_grad_opt, opt0, what="mmrm", hess=engine.hessian_opt,
        advice="Try a simpler covariance structure ('toep', 'ar1h', 'csh' or 'cs'), check for "
               "visits with very few observations, or rescale the outcome.")
    engine.rescale_y(resid_sd)
    nat_std = engine.opt_to_nat(opt)
    nat = np.concatenate([s.scale_natural(v, resid_sd**2) for s, v in
                          zip(structures, engine.split(nat_std, engine.nat_sizes), strict=True)])
    return MMRMResult(design, engine, nat, structures, converged, reml, df_method, subject, visit,
                      group, group_levels, visit_levels, formula, covariance, msg)
