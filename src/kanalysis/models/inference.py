r"""Small-sample inference for fixed effects: Satterthwaite and Kenward-Roger, LS-means.

Notation: :math:`C(\phi) = (X'V(\phi)^{-1}X)^{-1}` is the model-based covariance of
:math:`\hat\beta`; :math:`\phi` are the covariance parameters in their natural scale;
:math:`W = 2H^{-1}` estimates the covariance of :math:`\hat\phi`, with :math:`H` the Hessian of the
-2 (RE)ML log-likelihood (observed information), computed by central differences of the analytic
gradient; :math:`P_k = X'V^{-1}V_kV^{-1}X`, so that :math:`\partial C/\partial\phi_k = C P_k C`.

Satterthwaite (1946) df for a contrast :math:`l'\beta`:
:math:`\nu = 2 (l'Cl)^2 / (g'Wg)`, :math:`g_k = l'CP_kCl` (as lmerTest and R mmrm).

Kenward & Roger (1997): :math:`\Phi_A = C + 2C\{\sum_{kl} W_{kl}(Q_{kl} - P_kCP_l
- \tfrac14 R_{kl})\}C` with :math:`Q_{kl} = X'V^{-1}V_kV^{-1}V_lV^{-1}X` and
:math:`R_{kl} = X'V^{-1}V_{kl}V^{-1}X`; for one-dimensional contrasts the KR df equal the
Satterthwaite df computed from :math:`C` (the scaling factor is exactly one), so KR changes the
standard error, not the df. Multi-row contrasts use the full KR F approximation.

References
----------
Satterthwaite FE (1946). An approximate distribution of estimates of variance components.
Biometrics Bulletin 2:110-114.
Kenward MG, Roger JH (1997). Small sample inference for fixed effects from restricted maximum
likelihood. Biometrics 53:983-997.
Kuznetsova A, Brockhoff PB, Christensen RHB (2017). lmerTest package. J Stat Softw 82(13).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def numerical_hessian(grad_fn, x: np.ndarray, rel: float = 1e-4, typical=None) -> np.ndarray:
    """Hessian by central differences of an analytic gradient, symmetrised.

    The step for parameter k is ``rel * max(|x_k|, 1e-3 * typical_k)``, where ``typical`` gives
    each parameter's natural magnitude (so that a covariance near zero gets a step on the scale
    of the variances, not of itself).
    """
    x = np.asarray(x, dtype=float)
    K = len(x)
    H = np.empty((K, K))
    if typical is None:
        typical = np.full(K, max(float(np.max(np.abs(x))), 1e-8))
    typical = np.maximum(np.asarray(typical, dtype=float), 1e-12)
    def safe(z):
        try:
            g = np.asarray(grad_fn(z), dtype=float)
        except (np.linalg.LinAlgError, TypeError, ValueError, FloatingPointError):
            return None
        return g if np.all(np.isfinite(g)) else None

    g0 = None
    for k in range(K):
        h = rel * max(abs(x[k]), 1e-3 * typical[k])
        for _ in range(6):  # near a boundary a step may leave the parameter space: shrink it
            e = np.zeros(K)
            e[k] = h
            gp, gm = safe(x + e), safe(x - e)
            if gp is not None and gm is not None:
                H[:, k] = (gp - gm) / (2.0 * h)
                break
            if gp is not None or gm is not None:  # one-sided difference
                g0 = safe(x) if g0 is None else g0
                if g0 is not None:
                    H[:, k] = (gp - g0) / h if gp is not None else (g0 - gm) / h
                    break
            h /= 10.0
        else:
            H[:, k] = np.nan
    return 0.5 * (H + H.T)


def param_covariance(H: np.ndarray) -> tuple[np.ndarray, bool]:
    """W = 2 H^{-1}; returns (W, ok) where ok is False when H is not positive definite."""
    if not np.all(np.isfinite(H)):
        H = np.where(np.isfinite(H), H, 0.0)
        return 2.0 * np.linalg.pinv(H), False
    try:
        np.linalg.cholesky(H)
        return 2.0 * np.linalg.inv(H), True
    except np.linalg.LinAlgError:
        return 2.0 * np.linalg.pinv(H), False


def satterthwaite(Lmat: np.ndarray, C: np.ndarray, P: np.ndarray, W: np.ndarray):
    """Variance and Satterthwaite df of each row of ``Lmat`` (one-dimensional contrasts)."""
    Lmat = np.atleast_2d(Lmat)
    LC = Lmat @ C  # (m, p)
    v = np.einsum("mp,mp->m", LC, Lmat)
    g = np.einsum("mp,kpq,mq->mk", LC, P, LC)  # l'C P_k C l
    denom = np.einsum("mk,kl,ml->m", g, W, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2.0 * v**2 / denom
    df = np.where(np.isfinite(df) & (df > 0), df, np.inf)
    return v, df


def kenward_roger_adjusted(C: np.ndarray, P: np.ndarray, Q: np.ndarray, R: np.ndarray,
                           W: np.ndarray) -> np.ndarray:
    """Kenward-Roger adjusted covariance of the fixed effects, Phi_A."""
    K = P.shape[0]
    inner = np.zeros_like(C)
    for k in range(K):
        for m in range(K):
            if W[k, m] == 0.0:
                continue
            inner += W[k, m] * (Q[k, m] - P[k] @ C @ P[m] - 0.25 * R[k, m])
    PhiA = C + 2.0 * C @ inner @ C
    return 0.5 * (PhiA + PhiA.T)


def kenward_roger_f(Lmat, beta, C, PhiA, P, W):
    """KR F test of H0: L beta = 0 (L with full row rank). Returns (F, ndf, ddf, p)."""
    Lmat = np.atleast_2d(Lmat)
    ell = Lmat.shape[0]
    LCL_inv = np.linalg.inv(Lmat @ C @ Lmat.T)
    Theta = Lmat.T @ LCL_inv @ Lmat
    K = P.shape[0]
    T = [Theta @ C @ P[k] @ C for k in range(K)]
    tr = np.array([np.trace(Tk) for Tk in T])
    A1 = float(tr @ W @ tr)
    A2 = float(sum(W[k, m] * np.trace(T[k] @ T[m]) for k in range(K) for m in range(K)))
    B = (A1 + 6.0 * A2) / (2.0 * ell)
    g = ((ell + 1.0) * A1 - (ell + 4.0) * A2) / ((ell + 2.0) * A2)
    den = 3.0 * ell + 2.0 * (1.0 - g)
    c1, c2, c3 = g / den, (ell - g) / den, (ell + 2.0 - g) / den
    Estar = 1.0 / (1.0 - A2 / ell)
    Vstar = (2.0 / ell) * (1.0 + c1 * B) / ((1.0 - c2 * B) ** 2 * (1.0 - c3 * B))
    rho = Vstar / (2.0 * Estar**2)
    m = 4.0 + (ell + 2.0) / (ell * rho - 1.0)
    lam = m / (Estar * (m - 2.0))
    Lb = Lmat @ beta
    Fstat = float(lam / ell * Lb @ np.linalg.solve(Lmat @ PhiA @ Lmat.T, Lb))
    pval = float(stats.f.sf(Fstat, ell, m))
    return Fstat, ell, m, pval


def row_basis(Lmat: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Rows spanning the same space as ``Lmat`` with full row rank (the same hypothesis)."""
    Lmat = np.atleast_2d(np.asarray(Lmat, dtype=float))
    if Lmat.shape[0] == 1:
        return Lmat
    u, s, vt = np.linalg.svd(Lmat, full_matrices=False)
    r = int(np.sum(s > tol * max(s.max(initial=0.0), 1e-300)))
    if r == Lmat.shape[0]:
        return Lmat
    return s[:r, None] * vt[:r]


def multi_df(nu: np.ndarray) -> float:
    r"""Denominator df of a q-df F test from its components' 1-df Satterthwaite df
    (Fai & Cornelius 1996; SAS ``DDFM=SATTERTHWAITE``):
    :math:`E = \sum_{\nu_m > 2} \nu_m / (\nu_m - 2)`, df :math:`= 2E / (E - q)`.

    One component: its own df. Components with (numerically) equal df: that df. When
    :math:`E \le q` (some :math:`\nu_m \le 2`) the df are 2, as lmerTest and R mmrm return.
    """
    nu = np.asarray(nu, dtype=float)
    q = len(nu)
    if q == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1e-8 * max(float(np.max(np.abs(nu))), 1.0)):
        return float(np.mean(nu))
    big = nu > 2
    E = float(np.sum(nu[big] / (nu[big] - 2.0)))
    if E <= q:
        return 2.0
    return 2.0 * E / (E - q)


def satterthwaite_f(Lmat, beta, C, P, W):
    r"""Satterthwaite F test of H0: L beta = 0 by Fai & Cornelius (1996), as SAS
    ``DDFM=SATTERTHWAITE``, lmerTest and R mmrm compute it.

    With :math:`LCL' = UDU'`, the components :math:`u_m'L\hat\beta` are independent with
    variances :math:`d_m`; :math:`F = \sum_m (u_m'L\hat\beta)^2 / d_m / q` (unscaled) and each
    component's 1-df Satterthwaite df :math:`\nu_m = 2 d_m^2 / (g_m'Wg_m)`,
    :math:`g_{mk} = u_m'L C P_k C L'u_m`, combine by :func:`multi_df`. Returns
    (F, num_df, den_df, p).
    """
    return wald_f(Lmat, beta, C, lambda UL: satterthwaite(UL, C, P, W)[1])


def wald_f(Lmat, beta, V, df_fn):
    """Wald F test of H0: L beta = 0 with covariance V; denominator df from the components'
    1-df df (``df_fn(rows) -> df``) combined by :func:`multi_df`. Returns (F, q, ddf, p)."""
    Lmat = np.atleast_2d(Lmat)
    M = Lmat @ V @ Lmat.T
    d, U = np.linalg.eigh(0.5 * (M + M.T))
    order = np.argsort(d)[::-1]
    d, U = d[order], U[:, order]
    keep = d > 1e-8 * max(float(d[0]), 1e-300)
    d, U = d[keep], U[:, keep]
    q = len(d)
    UL = U.T @ Lmat
    F = float(np.sum((UL @ beta) ** 2 / d) / q)
    ddf = multi_df(np.asarray(df_fn(UL), dtype=float))
    return F, q, ddf, float(stats.f.sf(F, q, ddf))


def t_table(est, var, df, conf_level=0.95):
    """estimate, std_error, df, statistic (t), p_value, ci_lower, ci_upper arrays."""
    se = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    p = 2.0 * stats.t.sf(np.abs(t), df)
    q = stats.t.ppf(0.5 + conf_level / 2.0, df)
    return dict(estimate=est, std_error=se, df=df, statistic=t, p_value=p,
                ci_lower=est - q * se, ci_upper=est + q * se)
