r"""The likelihood engine behind :func:`kanalysis.lmm` and :func:`kanalysis.mmrm`.

Both models are generalised least squares with a block-diagonal marginal covariance,

.. math::

    y_i = X_i \beta + \varepsilon_i, \qquad \varepsilon_i \sim N(0, V_i(\phi)),

with :math:`\beta` profiled out. The REML criterion (Patterson & Thompson 1971; the convention
of lme4 and SAS PROC MIXED) is

.. math::

    -2\ell_R(\phi) = (N - p)\log 2\pi + \sum_i \log|V_i| + \log|X'V^{-1}X| + r'V^{-1}r,

with :math:`r = y - X\hat\beta(\phi)`; the ML criterion drops :math:`\log|X'V^{-1}X|` and uses
:math:`N \log 2\pi`.

* LMM: :math:`V_i = Z_i G Z_i' + \sigma^2 I = \sigma^2 (I + Z_i \Psi Z_i')`,
  :math:`\Psi = \Lambda\Lambda' = G / \sigma^2` with :math:`\Lambda` lower triangular (lme4's
  :math:`\theta`, Bates et al. 2015). :math:`\sigma^2` is profiled out and every evaluation uses
  only per-subject sums (:math:`X_i'X_i, X_i'Z_i, Z_i'Z_i, X_i'y_i, Z_i'y_i, y_i'y_i`) through the
  Woodbury identity :math:`(I + Z\Psi Z')^{-1} = I - Z U Z'`, :math:`U = \Psi(I + Z'Z\Psi)^{-1}`
  (a q x q solve per subject, batched).
* MMRM: :math:`V_i = \Sigma_{o_i o_i}`, the rows and columns of a structured visit covariance
  for the visits subject *i* attended. Subjects are grouped by observed-visit pattern (and
  covariance group); each evaluation factorises one t x t matrix per pattern and uses per-pattern
  sums :math:`\sum_i x_{ij}x_{ik}'`, :math:`\sum_i x_{ij}y_{ik}`, :math:`\sum_i y_{ij}y_{ik}`.

The gradient in the covariance parameters is analytic:
:math:`\partial(-2\ell_R)/\partial\phi_k = \mathrm{tr}(V^{-1}V_k) - \mathrm{tr}(C X'V^{-1}V_kV^{-1}X)
- r'V^{-1}V_kV^{-1}r` with :math:`C = (X'V^{-1}X)^{-1}` (the middle term only under REML).

References
----------
Bates D, Maechler M, Bolker B, Walker S (2015). Fitting linear mixed-effects models using lme4.
Journal of Statistical Software 67(1).
Mallinckrodt CH, Lane PW, Schnell D, Peng Y, Mancuso JP (2008). Recommendations for the primary
analysis of continuous endpoints in longitudinal clinical trials. Drug Inf J 42:303-319.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOG2PI = float(np.log(2.0 * np.pi))


# ----------------------------------------------------------------------------------------------
# small batched linear algebra
# ----------------------------------------------------------------------------------------------
def batched_inv_logdet(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and log|det| of a stack of small square matrices (closed form for q <= 2)."""
    q = K.shape[-1]
    if q == 1:
        d = K[..., 0, 0]
        return (1.0 / d)[..., None, None], np.log(np.abs(d))
    if q == 2:
        a, b, c, d = K[..., 0, 0], K[..., 0, 1], K[..., 1, 0], K[..., 1, 1]
        det = a * d - b * c
        inv = np.empty_like(K)
        inv[..., 0, 0] = d / det
        inv[..., 0, 1] = -b / det
        inv[..., 1, 0] = -c / det
        inv[..., 1, 1] = a / det
        return inv, np.log(np.abs(det))
    inv = np.linalg.inv(K)
    _, logdet = np.linalg.slogdet(K)
    return inv, logdet


def group_sums(A: np.ndarray, B: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-group cross products sum_i A_i' B_i as a (G, a, b) array (rows sorted by group)."""
    out = np.empty((len(starts), A.shape[1], B.shape[1]))
    for j in range(B.shape[1]):
        out[:, :, j] = np.add.reduceat(A * B[:, j : j + 1], starts, axis=0)
    return out


def sym_solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        L = np.linalg.cholesky(A)
        return np.linalg.solve(L.T, np.linalg.solve(L, b))
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, b, rcond=None)[0]


def sym_inv_logdet(A: np.ndarray) -> tuple[np.ndarray, float]:
    try:
        L = np.linalg.cholesky(A)
        Li = np.linalg.inv(L)
        return Li.T @ Li, 2.0 * float(np.log(np.diag(L)).sum())
    except np.linalg.LinAlgError:
        sign, logdet = np.linalg.slogdet(A)
        return np.linalg.pinv(A), float(logdet) if sign > 0 else np.inf


# ----------------------------------------------------------------------------------------------
# LMM: random effects + sigma^2 I
# ----------------------------------------------------------------------------------------------
def _tmm(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched product of stacks of small matrices stored subject-last: ``(m, k, G) @ (k, n, G)
    -> (m, n, G)``; either factor may be a fixed ``(m, k)`` / ``(k, n)`` matrix.

    The subject axis is the innermost, contiguous one, and the loop runs over the short inner
    dimension k, so each step is one multiply-add over G-long vectors (``np.matmul`` on 10^5
    matrices of size 2 x 2 dispatches one tiny product per matrix and is far slower).
    """
    if A.ndim == 2:
        A = A[:, :, None]
    if B.ndim == 2:
        B = B[:, :, None]
    out = A[:, 0, None, :] * B[None, 0, :, :]
    for k in range(1, A.shape[1]):
        out += A[:, k, None, :] * B[None, k, :, :]
    return out


def _tinv_logdet(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and log|det| of a subject-last stack (q, q, G); closed form for q <= 2."""
    q = K.shape[0]
    if q == 1:
        return 1.0 / K, np.log(np.abs(K[0, 0]))
    if q == 2:
        a, b, c, d = K[0, 0], K[0, 1], K[1, 0], K[1, 1]
        det = a * d - b * c
        inv = np.empty_like(K)
        inv[0, 0] = d / det
        inv[0, 1] = -b / det
        inv[1, 0] = -c / det
        inv[1, 1] = a / det
        return inv, np.log(np.abs(det))
    Kg = np.transpose(K, (2, 0, 1))
    _, logdet = np.linalg.slogdet(Kg)
    return np.ascontiguousarray(np.transpose(np.linalg.inv(Kg), (1, 2, 0))), logdet


def _tcond(A: np.ndarray) -> np.ndarray:
    """2-norm condition numbers of a subject-last stack of symmetric PSD matrices (q, q, G)."""
    q = A.shape[0]
    if q == 1:
        return np.where(A[0, 0] != 0, 1.0, np.inf)
    if q == 2:
        half_tr = 0.5 * (A[0, 0] + A[1, 1])
        disc = np.sqrt(np.maximum(half_tr**2 - (A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]), 0.0))
        lo, hi = half_tr - disc, half_tr + disc
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), np.inf)
    return np.linalg.cond(np.transpose(A, (2, 0, 1)))


def lmm_sums(y: np.ndarray, X: np.ndarray, Z: np.ndarray, starts: np.ndarray) -> dict:
    """Per-subject sufficient statistics of an LMM in one pass over the rows.

    Rows are sorted by subject (``starts`` = first row of each subject). Returns, stored
    subject-last, ``Bt`` = X_i'Z_i (p, q, G), ``At`` = Z_i'Z_i (q, q, G), ``ct`` = Z_i'y_i
    (q, G), and the totals ``XtX``, ``Xty``, ``yty``. Each column of ``[X, Z, y] * Z_j`` is
    summed by subject with one ``np.bincount`` (a streaming pass over a contiguous vector), and
    the totals come from one ``[X, Z, y]' [X, Z, y]`` product; nothing later reads the rows.
    """
    N, p = X.shape
    q = Z.shape[1]
    G = len(starts)
    n_i = np.diff(np.r_[starts, N])
    codes = np.repeat(np.arange(G), n_i)
    Wt = np.empty((p + q + 1, N))  # [X Z y]' with rows contiguous (a copy, not a transpose)
    Wt[:p] = X.T
    Wt[p : p + q] = Z.T
    Wt[-1] = y
    Zt = Wt[p : p + q]
    sums = np.empty((p + q + 1, q, G))
    buf = np.empty(N)  # one work vector for every product: no fresh memory per column
    for j in range(q):
        for k in range(p + q + 1):
            if p <= k < p + j:  # Z'Z is symmetric: copy the entries already summed
                sums[k, j] = sums[p + j, k - p]
                continue
            np.multiply(Wt[k], Zt[j], out=buf)
            sums[k, j] = np.bincount(codes, weights=buf, minlength=G)
    WtW = Wt @ Wt.T
    np.multiply(Wt[-1], Wt[-1], out=buf)
    return dict(Bt=np.ascontiguousarray(sums[:p]), At=np.ascontiguousarray(sums[p : p + q]),
                ct=np.ascontiguousarray(sums[p + q]),
                XtX=np.ascontiguousarray(WtW[:p, :p]), Xty=WtW[:p, -1].copy(),
                yty=float(WtW[-1, -1]), N=N, n_i=n_i,
                yty_i=np.bincount(codes, weights=buf, minlength=G))


class LMMEngine:
    r"""Per-subject sufficient statistics and the profiled (RE)ML criterion of an LMM, with its
    analytic gradient and Hessian.

    **Model and sums.** :math:`V_i = \sigma^2 H_i`, :math:`H_i = I + Z_i\Psi Z_i'`,
    :math:`\Psi = \Lambda\Lambda'` (lme4's :math:`\theta` fills the lower triangle of
    :math:`\Lambda`). The data enter only through :math:`A_i = Z_i'Z_i`, :math:`B_i = X_i'Z_i`,
    :math:`c_i = Z_i'y_i` and the totals :math:`X'X, X'y, y'y` (:func:`lmm_sums`, one pass over
    the rows). Woodbury: :math:`H_i^{-1} = I - Z_iU_iZ_i'` with
    :math:`U_i = \Psi(I + A_i\Psi)^{-1}` and :math:`\log|H_i| = \log|I + A_i\Psi|`, so that
    :math:`X'H^{-1}X = X'X - \sum_i B_iU_iB_i'`, :math:`X'H^{-1}y = X'y - \sum_i B_iU_ic_i`,
    :math:`y'H^{-1}y = y'y - \sum_i c_i'U_ic_i`. Every evaluation is batched q x q algebra over
    subjects, O(G q^2 p) operations, with no per-row work.

    **Criterion.** With :math:`\hat\beta` the GLS estimate, :math:`\rho^2` the penalised
    residual sum :math:`y'H^{-1}y - \hat\beta'X'H^{-1}y` and :math:`n = N - p` (REML) or
    :math:`N` (ML), lme4's profiled deviance is
    :math:`f(\theta) = \sum_i\log|I + A_i\Psi| + [\log|X'H^{-1}X|] + n(1 + \log(2\pi\rho^2/n))`,
    the -2 log-likelihood :math:`F(\Psi, \sigma^2)` at :math:`\hat\sigma^2 = \rho^2/n`.

    **Gradient.** Write :math:`S_i = Z_i'H_i^{-1}Z_i = A_i - A_iU_iA_i`,
    :math:`\tilde B_i = X_i'H_i^{-1}Z_i = B_i - B_iU_iA_i`, :math:`\tilde u_i = Z_i'H_i^{-1}r_i`
    (:math:`r = y - X\hat\beta`) and :math:`K = (X'H^{-1}X)^{-1}`. For a symmetric direction
    :math:`dΨ`, :math:`dF = \mathrm{tr}(Q\,d\Psi)` with
    :math:`Q = \sum_i S_i - \sigma^{-2}\sum_i\tilde u_i\tilde u_i' - [\sum_i\tilde B_i'K\tilde B_i]`
    (the bracket only under REML): this is :math:`\mathrm{tr}(PV_k) - y'PV_kPy` for
    :math:`V_k = \sigma^2 Z\,d\Psi\,Z'` with :math:`P = V^{-1} - V^{-1}X(X'V^{-1}X)^{-1}X'V^{-1}`.
    In :math:`\theta`: :math:`\partial f/\partial\theta_j = 2(Q\Lambda)_{r_jc_j}`.

    **Hessian.** :math:`V` is linear in :math:`\Psi`, so
    :math:`F_{\Psi\Psi}[X, Y] = -\mathrm{tr}(PV_XPV_Y) + 2\,y'PV_XPV_YPy` (Harville 1977), and
    with :math:`D_i = \tilde B_i'K\tilde B_i`, :math:`N_X = \sum_i\tilde B_iX\tilde B_i'`,
    :math:`v_X = \sum_i\tilde B_iX\tilde u_i`:

    .. math::

        \mathrm{tr}(PV_XPV_Y) = \textstyle\sum_i \mathrm{tr}(S_iXS_iY)
            - [\sum_i \mathrm{tr}(D_iXS_iY) + \mathrm{tr}(D_iYS_iX) - \mathrm{tr}(KN_XKN_Y)],

        y'PV_XPV_YPy = \sigma^{-2}\big(\textstyle\sum_i \tilde u_i'XS_iY\tilde u_i
            - v_X'Kv_Y\big).

    The sums over subjects are four small tensors (:math:`\sum S_i\otimes S_i`,
    :math:`\sum D_i\otimes S_i`, :math:`\sum \tilde u_i\tilde u_i'\otimes S_i` of size q^4,
    :math:`\sum \tilde B_i\otimes\tilde B_i` of size p^2q^2, :math:`\sum\tilde B_i\otimes\tilde u_i`),
    each one matrix product over subjects. :math:`\sigma^2` is profiled out: on the profile
    :math:`\partial F/\partial\sigma^2 = 0`, so the Hessian of :math:`f` in :math:`\Psi` is
    the Schur complement :math:`F_{\Psi\Psi} - F_{\Psi s}F_{ss}^{-1}F_{s\Psi}` with
    :math:`F_{s\Psi}[X] = \sigma^{-4}\mathrm{tr}(X\sum_i\tilde u_i\tilde u_i')` and
    :math:`F_{ss} = n\sigma^{-4}`. Finally :math:`\partial\Psi/\partial\theta_j = E_j\Lambda' +
    \Lambda E_j'` and :math:`\partial^2\Psi/\partial\theta_i\partial\theta_j = E_iE_j' + E_jE_i'`
    (:math:`E_j` the unit matrix at :math:`(r_j, c_j)`) give
    :math:`\nabla^2_\theta f = J'\nabla^2_\Psi f\,J + 2\,\delta_{c_ic_j}Q_{r_ir_j}`. The same
    pieces give the exact Hessian of the -2 log-likelihood in lmerTest's parameters
    :math:`(\theta, \sigma)` (:meth:`vp_derivatives`), used for Satterthwaite's df. No finite
    differences are involved anywhere.

    References: Bates et al. (2015), J Stat Softw 67(1); Harville DA (1977), J Am Stat Assoc
    72:320-338; Kuznetsova et al. (2017), J Stat Softw 82(13).
    """

    def __init__(self, y, X, Z, starts, reml=True, sums=None):
        self.reml = bool(reml)
        sums = lmm_sums(y, X, Z, starts) if sums is None else sums
        self.N, self.p = X.shape
        self.q = Z.shape[1]
        self.G = len(starts)
        self.n_i = sums["n_i"]
        # subject-last storage (the fast layout of every evaluation) ...
        self.Bt, self.At, self.ct = sums["Bt"], sums["At"], sums["ct"]
        # ... and subject-first views of the same memory
        self.XtZ = np.transpose(self.Bt, (2, 0, 1))  # (G, p, q)
        self.ZtZ = np.transpose(self.At, (2, 0, 1))  # (G, q, q)
        self.Zty = self.ct.T  # (G, q)
        self.XtX = sums["XtX"]
        self.Xty_sum = sums["Xty"]
        self.yty = sums["yty"]
        self.yty_i = sums.get("yty_i")
        self.ZtZ_sum = self.At.sum(2)
        self.tril = np.tril_indices(self.q)
        self.n_theta = len(self.tril[0])

    # --- parameter maps -----------------------------------------------------------------------
    def lam(self, theta):
        L = np.zeros((self.q, self.q))
        L[self.tril] = theta
        return L

    def _Zr(self, beta):
        """Z_i'r_i = c_i - B_i'beta per subject, subject-last (q, G)."""
        return self.ct - np.tensordot(beta, self.Bt, axes=([0], [0]))

    def _core(self, Psi):
        """Woodbury pieces at Psi; per-subject arrays are subject-last (.., G)."""
        q = self.q
        K = _tmm(self.At, Psi)  # A_i Psi
        K[np.arange(q), np.arange(q)] += 1.0
        Kinv, logdet = _tinv_logdet(K)
        U = _tmm(Psi, Kinv)  # Psi (I + A_i Psi)^{-1}, symmetric
        XZU = _tmm(self.Bt, U)  # B_i U_i, (p, q, G)
        XtHX = self.XtX - np.tensordot(XZU, self.Bt, axes=([1, 2], [1, 2]))
        XtHy = self.Xty_sum - np.tensordot(XZU, self.ct, axes=([1, 2], [0, 1]))
        UZy = (U * self.ct[None]).sum(1)
        ytHy = self.yty - float(np.sum(self.ct * UZy))
        return dict(U=U, XZU=XZU, XtHX=0.5 * (XtHX + XtHX.T), XtHy=XtHy, ytHy=ytHy,
                    logdet=float(logdet.sum()))

    def _beta(self, core):
        CH, logdet_XtHX = sym_inv_logdet(core["XtHX"])
        beta = CH @ core["XtHy"]
        pwrss = max(core["ytHy"] - float(beta @ core["XtHy"]), 1e-300)
        return CH, logdet_XtHX, beta, pwrss

    def _dof(self):
        return self.N - self.p if self.reml else self.N

    def deviance(self, theta):
        """Profiled -2 log-likelihood (REML or ML) at lme4's theta."""
        L = self.lam(theta)
        core = self._core(L @ L.T)
        _, ld_x, _, pwrss = self._beta(core)
        n = self._dof()
        dev = core["logdet"] + n * (1.0 + LOG2PI + np.log(pwrss / n))
        if self.reml:
            dev += ld_x
        return float(dev)

    def _grad_pieces(self, Psi, core, CH, beta, sigma2):
        """Q with d(-2l)/dPsi = tr(Q dPsi), at fixed sigma2 (V = sigma2 (I + Z Psi Z'))."""
        A = self.At
        AU = _tmm(A, core["U"])  # A_i U_i
        sumS = self.ZtZ_sum - np.tensordot(AU, A, axes=([1, 2], [0, 2]))
        Bt = self.Bt - _tmm(core["XZU"], A)  # X_i'H_i^{-1}Z_i, (p, q, G)
        Ztr = self._Zr(beta)
        u = Ztr - (AU * Ztr[None]).sum(1)  # Z_i'H_i^{-1}r_i, (q, G)
        Q = sumS - (u @ u.T) / sigma2
        pieces = dict(B=Bt, Ztr=Ztr, u=u, ZZU=AU)
        if self.reml:
            CB = np.tensordot(CH, Bt, axes=([0], [0]))  # (p, q, G): K B~_i
            Q -= np.tensordot(CB, Bt, axes=([0, 2], [0, 2]))
            pieces["CB"] = CB
        return 0.5 * (Q + Q.T), pieces

    def deviance_and_grad(self, theta):
        L = self.lam(theta)
        Psi = L @ L.T
        core = self._core(Psi)
        CH, ld_x, beta, pwrss = self._beta(core)
        n = self._dof()
        dev = core["logdet"] + n * (1.0 + LOG2PI + np.log(pwrss / n))
        if self.reml:
            dev += ld_x
        sigma2 = pwrss / n
        Q, pc = self._grad_pieces(Psi, core, CH, beta, sigma2)
        # Newton asks for the Hessian where it just evaluated the gradient: keep the pieces
        self._last = (np.asarray(theta, float).tobytes(), core, CH, beta, pwrss, Q, pc)
        grad = 2.0 * (Q @ L)[self.tril]
        return float(dev), grad

    # --- second derivatives -------------------------------------------------------------------
    def _hess_sums(self, core, CH, beta, pc):
        """The subject sums of the Hessian (see the class docstring), each one matrix product
        over subjects: SS = sum S (x) S, DS = sum D (x) S, uuS[a, d, b, c] = sum u_a u_d S_bc,
        BB[p, a, r, b] = sum B~_pa B~_rb, Bu[p, a, b] = sum B~_pa u_b, uu = sum u u'."""
        G, p, q = self.G, self.p, self.q
        A = self.At
        Bt, u = pc["B"], pc["u"]
        S = A - _tmm(pc["ZZU"], A)
        CB = pc["CB"] if "CB" in pc else np.tensordot(CH, Bt, axes=([0], [0]))
        D = _tmm(np.transpose(CB, (1, 0, 2)), Bt)  # B~_i' K B~_i, (q, q, G)
        Sf = S.reshape(q * q, G)
        uu_i = (u[:, None, :] * u[None, :, :]).reshape(q * q, G)
        Bf = Bt.reshape(p * q, G)
        return dict(SS=(Sf @ Sf.T).reshape(q, q, q, q),
                    DS=(D.reshape(q * q, G) @ Sf.T).reshape(q, q, q, q),
                    uuS=(uu_i @ Sf.T).reshape(q, q, q, q),
                    BB=(Bf @ Bf.T).reshape(p, q, p, q),
                    Bu=(Bf @ u.T).reshape(p, q, q), uu=u @ u.T)

    def _psi_derivatives(self, Psi, sigma2=None, theta=None):
        """Gradient matrix Q and Hessian tensor F[a, b, c, d] (F_PsiPsi[X, Y] =
        sum F_abcd X_ab Y_cd) of F(Psi, sigma2) with beta profiled, at ``sigma2`` (default:
        its profile value)."""
        n = self._dof()
        last = getattr(self, "_last", None)
        if sigma2 is None and theta is not None and last is not None \
                and last[0] == np.asarray(theta, float).tobytes():
            _, core, CH, beta, pwrss, Q, pc = last
            s = pwrss / n
        else:
            core = self._core(Psi)
            CH, _, beta, pwrss = self._beta(core)
            s = pwrss / n if sigma2 is None else float(sigma2)
            Q, pc = self._grad_pieces(Psi, core, CH, beta, s)
        h = self._hess_sums(core, CH, beta, pc)
        T1 = np.einsum("abcd->bcda", h["SS"])  # tr(S X S Y): X_bc Y_da
        if self.reml:
            D1 = np.einsum("abcd->bcda", h["DS"])
            T1 = T1 - D1 - np.einsum("abcd->cdab", D1)
            T1 = T1 + np.einsum("parb,rt,tcsd,sp->abcd", h["BB"], CH, h["BB"], CH,
                                optimize=True)
        T2 = (np.einsum("adbc->abcd", h["uuS"])
              - np.einsum("pab,pr,rcd->abcd", h["Bu"], CH, h["Bu"], optimize=True)) / s
        return dict(Q=Q, F=-T1 + 2.0 * T2, s=s, pwrss=pwrss, n=n, uu=h["uu"], BB=h["BB"],
                    XtHX=core["XtHX"], CH=CH, beta=beta)

    def _theta_jacobian(self, theta):
        """Lambda and dPsi/dtheta_j = E_j Lambda' + Lambda E_j' as a (n_theta, q, q) stack."""
        L = self.lam(theta)
        J = np.zeros((self.n_theta, self.q, self.q))
        for j, (r, c) in enumerate(zip(*self.tril, strict=True)):
            J[j, r, :] += L[:, c]
            J[j, :, r] += L[:, c]
        return L, J

    def _theta_block(self, d, J):
        r, c = self.tril
        H = np.einsum("abcd,iab,jcd->ij", d["F"], J, J)
        return H + 2.0 * (c[:, None] == c[None, :]) * d["Q"][r[:, None], r[None, :]]

    def hessian(self, theta):
        """Exact Hessian of the profiled deviance :meth:`deviance` in theta."""
        L, J = self._theta_jacobian(theta)
        d = self._psi_derivatives(L @ L.T, theta=theta)
        d["F"] = d["F"] - np.einsum("ab,cd->abcd", d["uu"], d["uu"]) / (d["s"] ** 2 * d["n"])
        H = self._theta_block(d, J)
        return 0.5 * (H + H.T)

    def vp_derivatives(self, vp):
        """Exact Hessian of the -2 log-likelihood (beta profiled, sigma not) in lmerTest's
        parameters vp = (theta, sigma), and P_k = X'V^{-1} (dV/dvp_k) V^{-1}X for each of
        them (so that dC/dvp_k = -C P_k C with C = cov(beta))."""
        theta, sigma = np.asarray(vp[:-1], float), float(vp[-1])
        s = sigma * sigma
        L, J = self._theta_jacobian(theta)
        d = self._psi_derivatives(L @ L.T, sigma2=s)
        k = self.n_theta
        H = np.zeros((k + 1, k + 1))
        H[:k, :k] = self._theta_block(d, J)
        H[:k, k] = H[k, :k] = 2.0 * sigma * np.einsum("ab,jab->j", d["uu"], J) / s**2
        F_s = (d["n"] - d["pwrss"] / s) / s
        F_ss = (2.0 * d["pwrss"] / s - d["n"]) / s**2
        H[k, k] = 4.0 * s * F_ss + 2.0 * F_s
        P = np.empty((k + 1, self.p, self.p))
        P[:k] = np.einsum("parb,jab->jpr", d["BB"], J) / s
        P[k] = 2.0 * d["XtHX"] / sigma**3
        return 0.5 * (H + H.T), 0.5 * (P + np.transpose(P, (0, 2, 1)))

    # --- natural parameters (vech G, sigma^2) -------------------------------------------------
    def natural_from_theta(self, theta):
        L = self.lam(theta)
        core = self._core(L @ L.T)
        _, _, _, pwrss = self._beta(core)
        sigma2 = pwrss / self._dof()
        G = sigma2 * (L @ L.T)
        return np.r_[G[self.tril], sigma2]

    def _split_nat(self, nat):
        G = np.zeros((self.q, self.q))
        G[self.tril] = nat[:-1]
        G = G + np.tril(G, -1).T
        return G, float(nat[-1])

    def state(self, nat):
        """Everything the result object needs at natural parameters (vech G, sigma^2)."""
        G, sigma2 = self._split_nat(nat)
        Psi = G / sigma2
        core = self._core(Psi)
        CH, ld_x, beta, pwrss = self._beta(core)
        return dict(G=G, sigma2=sigma2, Psi=Psi, core=core, CH=CH, beta=beta, pwrss=pwrss,
                    cov_beta=sigma2 * CH, ld_x=ld_x)

    def deviance_nat(self, nat):
        st = self.state(nat)
        s2 = st["sigma2"]
        dev = st["core"]["logdet"] + self.N * np.log(s2) + st["pwrss"] / s2
        if self.reml:
            dev += (self.N - self.p) * LOG2PI + st["ld_x"] - self.p * np.log(s2)
        else:
            dev += self.N * LOG2PI
        return float(dev)

    def grad_nat(self, nat):
        """Gradient of the (unprofiled) -2 log-likelihood in (vech G, sigma^2)."""
        st = self.state(nat)
        s2, CH, beta, core = st["sigma2"], st["CH"], st["beta"], st["core"]
        Q, pc = self._grad_pieces(st["Psi"], core, CH, beta, s2)
        Qn = Q / s2
        mult = np.where(self.tril[0] == self.tril[1], 1.0, 2.0)
        g_G = mult * Qn[self.tril]
        U = core["U"]
        # tr(H^{-1}) summed over subjects
        trH = self.N - float(np.sum(U * self.At))
        # ||H^{-1} r||^2 summed
        rr = self.yty - 2 * float(beta @ self.Xty_sum) + float(beta @ self.XtX @ beta)
        Ztr = pc["Ztr"]
        UZr = (U * Ztr[None]).sum(1)
        ZZUZr = (self.At * UZr[None]).sum(1)
        Hr2 = rr - 2 * float(np.sum(Ztr * UZr)) + float(np.sum(UZr * ZZUZr))
        g_s = trH / s2 - Hr2 / s2**2
        if self.reml:
            g_s -= float(np.sum(CH * self.XtH2X(U, core["XZU"]))) / s2
        return np.r_[g_G, g_s]

    def XtH2X(self, U, XZU):
        """sum_i X_i'H_i^{-2}X_i."""
        XZUZZ = _tmm(XZU, self.At)
        t1 = np.tensordot(XZU, self.Bt, axes=([1, 2], [1, 2]))
        t2 = np.tensordot(_tmm(XZUZZ, U), self.Bt, axes=([1, 2], [1, 2]))
        return self.XtX - t1 - t1.T + t2

    def P_list(self, nat):
        """X'V^{-1} V_k V^{-1} X for each natural parameter k (so dC/dphi_k = C P_k C)."""
        st = self.state(nat)
        s2, core = st["sigma2"], st["core"]
        B = self.Bt - _tmm(core["XZU"], self.At)
        out = []
        for r, c in zip(*self.tril, strict=True):
            E = np.zeros((self.q, self.q))
            E[r, c] = E[c, r] = 1.0
            out.append(np.tensordot(_tmm(B, E), B, axes=([1, 2], [1, 2])) / s2**2)
        out.append(self.XtH2X(core["U"], core["XZU"]) / s2**2)
        return np.array(out)

    def blups(self, nat):
        st = self.state(nat)
        return (st["core"]["U"] * self._Zr(st["beta"])[None]).sum(1).T

    def start_theta(self):
        r"""Moment start from per-subject least-squares fits.

        With :math:`b_i = A_i^{-1}Z_i'r_i` (r the OLS residuals), :math:`\mathrm{cov}(b)`
        estimates :math:`G + \sigma^2\,\overline{A_i^{-1}}`; :math:`\sigma^2` is estimated from
        the within-subject residuals of y on :math:`Z_i`
        (:math:`\sum_i y_i'y_i - c_i'A_i^{-1}c_i` over :math:`\sum_i n_i - q`). When the
        difference is not positive definite, half of :math:`\mathrm{cov}(b)` is used.
        """
        q = self.q
        beta = sym_solve(self.XtX, self.Xty_sum)
        rss = self.yty - float(beta @ self.Xty_sum)
        s2 = max(rss / max(self.N - self.p, 1), 1e-12)
        theta0 = np.eye(q)[self.tril]
        good = self.n_i > q
        if good.sum() > q + 1:
            good[good] = _tcond(self.At[:, :, good]) < 1e8
        if good.sum() <= q + 1:
            return theta0
        Ai, _ = _tinv_logdet(self.At[:, :, good])
        b = (Ai * self._Zr(beta)[None, :, good]).sum(1)  # (q, G_good)
        Gb = np.cov(b).reshape(q, q)
        Psi0 = 0.5 * Gb / s2 + 1e-4 * np.diag(np.diag(Gb) / s2 + 1e-6)
        if self.yty_i is not None:
            c = self.ct[:, good]
            rss_w = float(np.sum(self.yty_i[good]) - np.sum(c * (Ai * c[None]).sum(1)))
            s2w = rss_w / float(np.sum(self.n_i[good] - q))
            if s2w > 0:
                Gm = Gb - s2w * Ai.mean(axis=2)
                if np.linalg.eigvalsh(Gm).min() > 1e-6 * np.abs(np.diag(Gm)).max():
                    Psi0 = Gm / s2w
        try:
            theta0 = np.linalg.cholesky(Psi0)[self.tril]
        except np.linalg.LinAlgError:
            pass
        return theta0


class LMMPatternEngine(LMMEngine):
    """LMM engine that groups subjects with the same Z_i'Z_i (same observed times).

    With a visit schedule there are few distinct Z_i'Z_i, and every evaluation then costs
    O(patterns x q^2 p^2), independent of the number of subjects: the per-subject terms enter
    only through the pattern sums O_xx[s,q,r] = sum_i (X_i'Z_i)_{.q} (X_i'Z_i)_{.r}',
    O_xy[s,q,r] = sum_i (X_i'Z_i)_{.q} (Z_i'y_i)_r and O_yy[s,q,r] = sum_i (Z_i'y_i)_q (Z_i'y_i)_r.
    Within pattern s, B~_i = B_i M_s and u~_i = M_s'(c_i - B_i'beta) with M_s = I - U_s A_s,
    so the Hessian sums of :class:`LMMEngine` are contractions of the same pattern sums.
    """

    @staticmethod
    def patterns(ZtZ):
        """Pattern id of each subject (equal Z_i'Z_i) and the distinct matrices."""
        G = len(ZtZ)
        flat = np.ascontiguousarray(ZtZ.reshape(G, -1))
        # hash the rows through a fixed random projection, then verify exact equality
        proj = flat @ np.random.default_rng(12345).standard_normal(flat.shape[1])
        pat, uniq = pd.factorize(proj, sort=False)
        first = np.zeros(len(uniq), dtype=np.int64)
        first[pat[::-1]] = np.arange(G)[::-1]
        keys = flat[first]
        if not np.array_equal(keys[pat], flat):
            keys, pat = np.unique(flat, axis=0, return_inverse=True)
            pat = pat.ravel()
        return pat.astype(np.int64), keys

    @staticmethod
    def feasible(n_patterns, G, p, q, max_doubles=3e7):
        m = p * q + q
        return n_patterns <= max(64, G // 3) and n_patterns * m * m <= max_doubles

    def __init__(self, y, X, Z, starts, reml=True, patterns=None, sums=None):
        super().__init__(y, X, Z, starts, reml, sums=sums)
        q, p, G = self.q, self.p, self.G
        pat, keys = patterns if patterns is not None else self.patterns(self.ZtZ)
        S = len(keys)
        self.S = S
        self.pat = pat
        self.ZtZ_s = keys.reshape(S, q, q)
        self.n_s = np.bincount(pat, minlength=S).astype(float)
        F = np.concatenate([self.XtZ.reshape(G, p * q), self.Zty], axis=1)  # (G, m)
        m = F.shape[1]
        order = np.argsort(pat, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(pat, minlength=S))]
        if S > 2000 and G * m * m <= 3e7:
            outer = F[order][:, :, None] * F[order][:, None, :]
            FF = np.add.reduceat(outer, bounds[:-1], axis=0)
        else:
            FF = np.empty((S, m, m))
            for s in range(S):
                Fs = F[order[bounds[s]:bounds[s + 1]]]
                FF[s] = Fs.T @ Fs
        pq = p * q
        # F columns: index a*q + c for X'Z[a, c]; then Z'y[c]
        Fxx = FF[:, :pq, :pq].reshape(S, p, q, p, q)
        self.Oxx = np.ascontiguousarray(Fxx.transpose(0, 2, 4, 1, 3))  # (S, q, r, p, p)
        Fxy = FF[:, :pq, pq:].reshape(S, p, q, q)
        self.Oxy = np.ascontiguousarray(Fxy.transpose(0, 2, 3, 1))  # (S, q, r, p)
        self.Oyy = np.ascontiguousarray(FF[:, pq:, pq:])  # (S, q, r)
        self.Oxx_flat = self.Oxx.reshape(S * q * q, p * p)
        self.Oxy_flat = self.Oxy.reshape(S * q * q, p)
        self.Oyy_flat = self.Oyy.reshape(S * q * q)

    def _contract(self, A, flat):
        return A.reshape(-1) @ flat

    def _core(self, Psi):
        q, p = self.q, self.p
        K = np.eye(q) + Psi @ self.ZtZ_s
        Kinv, logdet = batched_inv_logdet(K)
        U = Kinv @ Psi
        XtHX = self.XtX - self._contract(U, self.Oxx_flat).reshape(p, p)
        XtHy = self.Xty_sum - self._contract(U, self.Oxy_flat)
        ytHy = self.yty - float(self._contract(U, self.Oyy_flat))
        return dict(U=U, XtHX=0.5 * (XtHX + XtHX.T), XtHy=XtHy, ytHy=ytHy,
                    logdet=float(self.n_s @ logdet))

    def _R(self, beta):
        xb = self.Oxy @ beta  # (S, q, r): sum (X'Z)_{.q}'b (Z'y)_r
        bOb = (self.Oxx.reshape(self.S, self.q, self.q, -1) @ np.outer(beta, beta).ravel())
        return self.Oyy - xb - np.transpose(xb, (0, 2, 1)) + bOb

    def _grad_pieces(self, Psi, core, CH, beta, sigma2):
        U = core["U"]
        ZtZ = self.ZtZ_s
        M = np.eye(self.q) - U @ ZtZ  # B_i = X_i'Z_i M_s ; u_i = M_s' Z_i'r_i
        S = ZtZ - ZtZ @ U @ ZtZ
        R = self._R(beta)
        Mt = np.transpose(M, (0, 2, 1))
        Q = np.einsum("s,sqr->qr", self.n_s, S) - np.einsum("sqa,sab,sbr->qr", Mt, R, M) / sigma2
        T = None
        if self.reml:
            T = (self.Oxx.reshape(self.S, self.q, self.q, -1) @ CH.ravel())
            Q -= np.einsum("sqa,sab,sbr->qr", Mt, T, M)
        return 0.5 * (Q + Q.T), dict(M=M, R=R, S=S, T=T)

    def _hess_sums(self, core, CH, beta, pc):
        q, n = self.q, self.n_s
        M, S = pc["M"], pc["S"]
        Mt = np.transpose(M, (0, 2, 1))
        T = pc["T"] if pc["T"] is not None else \
            self.Oxx.reshape(self.S, q, q, -1) @ CH.ravel()
        Sf = S.reshape(self.S, q * q)
        D = (Mt @ T @ M).reshape(self.S, q * q)  # sum over the pattern's subjects of D_i
        uu_s = Mt @ pc["R"] @ M  # sum of u~_i u~_i'
        Oxr = self.Oxy - self.Oxx @ beta  # sum_i B_i[p, c] (c_i - B_i'beta)[d] as [s, c, d, p]
        return dict(SS=((Sf * n[:, None]).T @ Sf).reshape(q, q, q, q),
                    DS=(D.T @ Sf).reshape(q, q, q, q),
                    uuS=(uu_s.reshape(self.S, q * q).T @ Sf).reshape(q, q, q, q),
                    BB=np.einsum("sca,sdb,scdpr->parb", M, M, self.Oxx, optimize=True),
                    Bu=np.einsum("sca,sdb,scdp->pab", M, M, Oxr, optimize=True),
                    uu=uu_s.sum(0))

    def grad_nat(self, nat):
        st = self.state(nat)
        s2, CH, beta, core = st["sigma2"], st["CH"], st["beta"], st["core"]
        Q, pc = self._grad_pieces(st["Psi"], core, CH, beta, s2)
        mult = np.where(self.tril[0] == self.tril[1], 1.0, 2.0)
        g_G = mult * (Q / s2)[self.tril]
        U, R = core["U"], pc["R"]
        trH = self.N - float(self.n_s @ np.einsum("sqr,srq->s", U, self.ZtZ_s))
        rr = self.yty - 2 * float(beta @ self.Xty_sum) + float(beta @ self.XtX @ beta)
        UZU = U @ self.ZtZ_s @ U
        Hr2 = rr - 2 * float(np.sum(U * R)) + float(np.sum(UZU * R))
        g_s = trH / s2 - Hr2 / s2**2
        if self.reml:
            g_s -= float(np.sum(CH * self.XtH2X_p(U))) / s2
        return np.r_[g_G, g_s]

    def XtH2X_p(self, U):
        p = self.p
        A = self._contract(U, self.Oxx_flat).reshape(p, p)
        B = self._contract(U @ self.ZtZ_s @ U, self.Oxx_flat).reshape(p, p)
        return self.XtX - A - A.T + B

    def P_list(self, nat):
        st = self.state(nat)
        s2, U = st["sigma2"], st["core"]["U"]
        p, q = self.p, self.q
        M = np.eye(q) - U @ self.ZtZ_s
        out = []
        for r, c in zip(*self.tril, strict=True):
            E = np.zeros((q, q))
            E[r, c] = E[c, r] = 1.0
            A = M @ E @ np.transpose(M, (0, 2, 1))
            out.append(self._contract(A, self.Oxx_flat).reshape(p, p) / s2**2)
        out.append(self.XtH2X_p(U) / s2**2)
        return np.array(out)

    def blups(self, nat):
        st = self.state(nat)
        U = st["core"]["U"][self.pat]
        return np.einsum("gqr,rg->gq", U, self._Zr(st["beta"]))


# ----------------------------------------------------------------------------------------------
# MMRM: structured residual covariance over visits, grouped by observed-visit pattern
# ----------------------------------------------------------------------------------------------
def second_derivatives(structures, nat):
    """d2 Sigma / d nat_k d nat_l as a nested list over all natural parameters (None where
    zero), or None when every structure is linear in its natural parameters."""
    K = len(nat)
    out = [[None] * K for _ in range(K)]
    k0 = 0
    any_nonlinear = False
    for s in structures:
        n = s.n_natural
        d2 = s.d2sigma_nat(nat[k0:k0 + n])
        if d2 is not None:
            any_nonlinear = True
            for a in range(n):
                for b in range(n):
                    out[k0 + a][k0 + b] = d2[a][b]
        k0 += n
    return out if any_nonlinear else None


def _chunks(idx: np.ndarray, doubles_per_item: int, budget: float = 4e6):
    """Split ``idx`` into consecutive chunks of at most ``budget`` doubles of work arrays."""
    size = max(1, int(budget // max(doubles_per_item, 1)))
    return [idx[i:i + size] for i in range(0, len(idx), size)] if len(idx) else []


def _one(s, n):
    sel = np.zeros(n, dtype=bool)
    sel[s] = True
    return sel


class MMRMEngine:
    """Per-pattern sufficient statistics and the (RE)ML criterion of an MMRM.

    ``structures`` is a list (one per covariance group) of covariance structure objects from
    :mod:`kanalysis.models.covariance`; ``cov_group`` gives the group of each subject.
    """

    max_pattern_doubles = 2.5e7  # 200 MB of pattern sums at most
    pattern_over_rows = 4.0  # pattern sums up to 4x the work of a pass over the padded rows
    small_pattern_doubles = 1e6  # below 8 MB a read of the sums is cheaper than any row loop

    def __init__(self, y, X, visit_code, subj_code, n_subj, n_visits, cov_group, structures,
                 reml=True, subject_weights=None, keep_rows=False):
        """Rows with a NaN outcome are left out. ``subject_weights`` (one per subject, >= 0)
        multiply each subject's contribution to the likelihood, exactly as if the subject were
        in the data that many times (bootstrap multiplicities; 0 leaves a subject out).
        ``keep_rows`` keeps the padded design so that :meth:`with_outcome` can swap outcomes
        without rebuilding the design sums."""
        self.reml = bool(reml)
        self.t = t = n_visits
        self.structures = structures
        y = np.asarray(y, dtype=float)
        subj_code = np.asarray(subj_code, dtype=np.int64)
        visit_code = np.asarray(visit_code, dtype=np.int64)
        w = np.ones(n_subj) if subject_weights is None else \
            np.asarray(subject_weights, dtype=float)
        rows = np.isfinite(y) & (w[subj_code] > 0)
        self._rows = rows
        present = np.zeros(n_subj, dtype=bool)
        present[subj_code[rows]] = True
        subjects = np.flatnonzero(present)  # subjects the likelihood uses
        self.subjects = subjects
        self.subject_weights = w[subjects]
        self.N = float(w[subj_code[rows]].sum())
        self.n_rows = int(rows.sum())
        self.p = p = X.shape[1]
        local = np.full(n_subj, -1, dtype=np.int64)
        local[subjects] = np.arange(len(subjects))
        sc, vc = local[subj_code[rows]], visit_code[rows]
        self._cells = (sc, vc)
        n = len(subjects)
        rw = np.sqrt(self.subject_weights)
        row_of = np.full((n, t), -1, dtype=np.int64)  # row of X holding (subject, visit)
        row_of[sc, vc] = np.flatnonzero(rows)
        mask = row_of >= 0
        bits = (mask * (1 << np.arange(t, dtype=np.int64))).sum(1)
        key = np.asarray(cov_group, dtype=np.int64)[subjects] * (1 << t) + bits
        ukeys, pat = np.unique(key, return_inverse=True)
        pat = pat.ravel()
        self.subject_pattern = pat
        S = len(ukeys)
        self.n_patterns = S
        self.pat_group = (ukeys >> t).astype(int)
        self.pat_mask = np.zeros((S, t), dtype=bool)
        for s, k in enumerate(ukeys):
            self.pat_mask[s] = ((int(k) & ((1 << t) - 1)) >> np.arange(t)) & 1 == 1
        self.n_s = np.bincount(pat, weights=self.subject_weights, minlength=S).astype(float)
        order = np.argsort(pat, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(pat, minlength=S))]
        self.order = order
        self.bounds = bounds
        # Pattern sums of x_ij x_ik' cost S t^2 p^2 doubles and each evaluation reads them all;
        # the padded subject data cost n t p and an evaluation about n t (t + p) per
        # contraction. Keep the sums when they fit the budget and are not much larger than the
        # data (few patterns: a visit schedule, monotone dropout); otherwise (many visits, each
        # subject its own pattern, many fixed effects) contract the padded rows directly.
        pattern_size = S * t * t * p * p
        self.pattern_stats = pattern_size <= self.max_pattern_doubles and (
            pattern_size <= self.small_pattern_doubles
            or pattern_size <= self.pattern_over_rows * n * t * (t + p))
        if self.pattern_stats:
            self.Txx, self.Txy, Tyy = self._pattern_sums(X, y, row_of, rw)
        else:
            keep_rows = True
        if keep_rows:
            Xf = np.zeros((n, t, p))
            Xf[sc, vc] = X[rows] * rw[sc, None]
            yf = np.zeros((n, t))
            yf[sc, vc] = y[rows] * rw[sc]
            self.Xs = np.ascontiguousarray(Xf[order])
            self.ys = np.ascontiguousarray(yf[order])
            self._row_pat = np.repeat(np.arange(S), np.diff(bounds))  # pattern of each Xs row
            del Xf, yf
            if not self.pattern_stats:
                Tyy = np.empty((S, t, t))
                for s in range(S):
                    ys = self.ys[bounds[s] : bounds[s + 1]]
                    Tyy[s] = ys.T @ ys
        self.Tyy = Tyy.reshape(S, t * t)
        self.pm2 = (self.pat_mask[:, :, None] & self.pat_mask[:, None, :]).astype(float)
        self.eye_fill = np.zeros((S, t, t))
        for s in range(S):
            self.eye_fill[s][np.diag(~self.pat_mask[s])] = 1.0
        self.n_groups_cov = len(structures)
        self.nat_sizes = [st.n_natural for st in structures]
        self.opt_sizes = [st.n_opt for st in structures]

    def _pattern_sums(self, X, y, row_of, rw):
        r"""Per-pattern sums :math:`T^{xx}_{s,jk} = \sum_{i \in s} x_{ij} x_{ik}'`,
        :math:`T^{xy}_{s,jk} = \sum_i x_{ij} y_{ik}` and :math:`T^{yy}_{s,jk} = \sum_i y_{ij}
        y_{ik}` (rows scaled by the root subject weights), in one gather of the rows.

        For each pattern the observed visits' rows are laid side by side, keeping at each visit
        only the columns of X that are non-zero there: with factor-coded visits (``arm *
        C(visit)``) a visit's row has a handful of non-zero entries out of p, so the product
        below is over about (t p / k)^2 times fewer entries than the padded t p columns, with k
        the columns per visit.
        """
        t, p, S = self.t, self.p, self.n_patterns
        Txx = np.zeros((S, t * p, t * p))
        Txy = np.zeros((S, t * p, t))
        Tyy = np.zeros((S, t, t))
        for s in range(S):
            idx = self.order[self.bounds[s] : self.bounds[s + 1]]
            vis = np.flatnonzero(self.pat_mask[s])
            w = rw[idx][:, None]
            blocks, cols = [], []
            yc = np.empty((len(idx), len(vis)))
            for a, j in enumerate(vis):
                r = row_of[idx, j]
                block = X[r]
                nz = np.flatnonzero(np.any(block != 0, axis=0))
                blocks.append(block[:, nz] * w)
                cols.append(j * p + nz)
                yc[:, a] = y[r] * w[:, 0]
            Xc = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(idx), 0))
            ci = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
            Txx[s][np.ix_(ci, ci)] = Xc.T @ Xc
            Txy[s][np.ix_(ci, vis)] = Xc.T @ yc
            Tyy[s][np.ix_(vis, vis)] = yc.T @ yc
        Txx = Txx.reshape(S, t, p, t, p).transpose(0, 1, 3, 2, 4).reshape(S, t * t, p * p)
        Txy = Txy.reshape(S, t, p, t).transpose(0, 1, 3, 2).reshape(S, t * t, p)
        return np.ascontiguousarray(Txx), np.ascontiguousarray(Txy), Tyy

    def ols_beta(self):
        r"""Ordinary (weighted) least squares on this engine's outcome and weights, from the
        sufficient statistics: :math:`(\sum_{ij} x_{ij}x_{ij}')^{-1} \sum_{ij} x_{ij}y_{ij}`."""
        t, p = self.t, self.p
        if self.pattern_stats:
            diag = np.arange(t) * (t + 1)
            XtX = self.Txx[:, diag].sum(axis=(0, 1)).reshape(p, p)
            Xty = self.Txy[:, diag].sum(axis=(0, 1))
        else:
            XtX = np.einsum("ntp,ntq->pq", self.Xs, self.Xs)
            Xty = np.einsum("ntp,nt->p", self.Xs, self.ys)
        return sym_solve(XtX, Xty)

    def with_outcome(self, y):
        """A copy of this engine for a new outcome vector observed on the same rows (the
        design sums are shared; only the outcome sums are recomputed). Needs ``keep_rows``."""
        import copy

        if not hasattr(self, "ys"):
            raise ValueError("with_outcome needs an engine built with keep_rows=True")
        y = np.asarray(y, dtype=float)[self._rows]
        sc, vc = self._cells
        t, S = self.t, self.n_patterns
        n = len(self.subjects)
        rw = np.sqrt(self.subject_weights)
        yf = np.zeros((n, t))
        yf[sc, vc] = y * rw[sc]
        ys = np.ascontiguousarray(yf[self.order])
        new = copy.copy(self)
        new.ys = ys
        b = self.bounds
        Tyy = np.empty((S, t, t))
        if self.pattern_stats:
            p = self.p
            Txy = np.empty((S, t, t, p))
            for s in range(S):
                Xs = self.Xs[b[s]:b[s + 1]].reshape(b[s + 1] - b[s], t * p)
                yb = ys[b[s]:b[s + 1]]
                Txy[s] = (Xs.T @ yb).reshape(t, p, t).transpose(0, 2, 1)
                Tyy[s] = yb.T @ yb
            new.Txy = Txy.reshape(S, t * t, p)
        else:
            for s in range(S):
                yb = ys[b[s]:b[s + 1]]
                Tyy[s] = yb.T @ yb
        new.Tyy = Tyy.reshape(S, t * t)
        return new

    def rescaled(self, factor):
        """A copy of this engine with the outcome multiplied by ``factor`` (no data pass)."""
        import copy

        new = copy.copy(self)
        new.Tyy = self.Tyy * factor**2
        if self.pattern_stats:
            new.Txy = self.Txy * factor
        if hasattr(self, "ys"):
            new.ys = self.ys * factor
        return new

    # --- parameter maps -----------------------------------------------------------------------
    def split(self, vec, sizes):
        out, k = [], 0
        for n in sizes:
            out.append(vec[k : k + n])
            k += n
        return out

    def sigmas_nat(self, nat):
        return np.array([st.sigma_nat(v) for st, v in
                         zip(self.structures, self.split(nat, self.nat_sizes), strict=True)])

    def natural_scale(self, nat):
        """Typical magnitude of each natural parameter: mean visit variance divided by how much
        a unit change moves Sigma (1 for a covariance, ~variance for a correlation)."""
        sig = self.sigmas_nat(nat)
        out = []
        for g, d in self.dsigma_nat(nat):
            v = float(np.mean(np.diag(sig[g])))
            out.append(v / max(float(np.max(np.abs(d))), 1e-12))
        return np.array(out)

    def opt_to_nat(self, opt):
        return np.concatenate([st.to_natural(v) for st, v in
                               zip(self.structures, self.split(opt, self.opt_sizes), strict=True)])

    def dsigma_nat(self, nat):
        """List over natural parameters of (group, dSigma) pairs."""
        out = []
        for g, (st, v) in enumerate(zip(self.structures, self.split(nat, self.nat_sizes),
                                        strict=True)):
            for d in st.dsigma_nat(v):
                out.append((g, d))
        return out

    def rescale_y(self, factor):
        """Multiply the outcome by ``factor`` in every sufficient statistic (no data pass)."""
        self.Tyy = self.Tyy * factor**2
        if self.pattern_stats:
            self.Txy = self.Txy * factor
        if hasattr(self, "ys"):
            self.ys = self.ys * factor

    # --- contractions with the data (pattern sums or raw padded rows) --------------------------
    def _xx(self, A, sel=None):
        """sum over patterns s (in sel) and subjects i of X_i' A_s X_i; A is (S_sel, t, t)."""
        p = self.p
        pats = np.arange(self.n_patterns) if sel is None else np.flatnonzero(sel)
        if self.pattern_stats:
            T = self.Txx if sel is None else self.Txx[pats]
            return (A.reshape(-1) @ T.reshape(-1, p * p)).reshape(p, p)
        local = np.full(self.n_patterns, -1)
        local[pats] = np.arange(len(pats))
        out = np.zeros((p, p))
        for Xr, _, rp in self._row_blocks():
            k = local[rp]
            keep = k >= 0
            if not keep.all():
                Xr, k = Xr[keep], k[keep]
            out += np.tensordot(Xr, A[k] @ Xr, axes=([0, 1], [0, 1]))
        return out

    def _xy(self, A):
        """sum_s sum_i X_i' A_s y_i."""
        if self.pattern_stats:
            return A.reshape(-1) @ self.Txy.reshape(-1, self.p)
        out = np.zeros(self.p)
        for Xr, yr, rp in self._row_blocks():
            Ay = np.einsum("njl,nl->nj", A[rp], yr)
            out += np.tensordot(Xr, Ay, axes=([0, 1], [0, 1]))
        return out

    def _quad_xx(self, M):
        """(S, t, t) with [s, j, l] = sum_i x_ij' M x_il."""
        S, t = self.n_patterns, self.t
        if self.pattern_stats:
            return (self.Txx @ M.ravel()).reshape(S, t, t)
        out = np.zeros((S, t, t))
        for Xr, _, rp in self._row_blocks():
            self._add_by_pattern(out, rp, (Xr @ M.T) @ np.transpose(Xr, (0, 2, 1)))
        return out

    def _xb_y(self, beta):
        """(S, t, t) with [s, j, l] = sum_i (x_ij' beta) y_il."""
        S, t = self.n_patterns, self.t
        if self.pattern_stats:
            return (self.Txy @ beta).reshape(S, t, t)
        out = np.zeros((S, t, t))
        for Xr, yr, rp in self._row_blocks():
            self._add_by_pattern(out, rp, (Xr @ beta)[:, :, None] * yr[:, None, :])
        return out

    def _row_blocks(self, budget: float = 2e6):
        """The padded rows (sorted by pattern) in blocks of about ``budget`` doubles of work
        arrays: (X rows, y rows, pattern of each row). Used when the pattern sums would not fit
        in memory; each contraction is then batched over subjects, with no loop over patterns."""
        n = self.Xs.shape[0]
        size = max(1, int(budget // (self.t * (self.t + self.p))))
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            yield self.Xs[lo:hi], self.ys[lo:hi], self._row_pat[lo:hi]

    @staticmethod
    def _add_by_pattern(out, rp, Q):
        """out[s] += sum of the rows of Q whose pattern is s (rows sorted by pattern)."""
        starts = np.flatnonzero(np.r_[True, rp[1:] != rp[:-1]])
        out[rp[starts]] += np.add.reduceat(Q, starts, axis=0)

    def _residual_products(self, beta):
        """(S, t, t) sums of r_ij r_il with r = y - X beta."""
        S, t = self.n_patterns, self.t
        xb = self._xb_y(beta)
        return self.Tyy.reshape(S, t, t) - xb - np.transpose(xb, (0, 2, 1)) + \
            self._quad_xx(np.outer(beta, beta))

    # --- core ---------------------------------------------------------------------------------
    def _core(self, sigmas):
        Sp = sigmas[self.pat_group] * self.pm2 + self.eye_fill
        try:
            L = np.linalg.cholesky(Sp)
        except np.linalg.LinAlgError:
            return None
        logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(1)
        Li = np.linalg.inv(L)
        W = (np.transpose(Li, (0, 2, 1)) @ Li) * self.pm2
        XtVX = self._xx(W)
        XtVy = self._xy(W)
        ytVy = float(W.reshape(-1) @ self.Tyy.ravel())
        return dict(W=W, XtVX=0.5 * (XtVX + XtVX.T), XtVy=XtVy, ytVy=ytVy,
                    logdet=float(self.n_s @ logdet))

    def _beta(self, core):
        C, ld_x = sym_inv_logdet(core["XtVX"])
        beta = C @ core["XtVy"]
        rss = core["ytVy"] - float(beta @ core["XtVy"])
        return C, ld_x, beta, rss

    def deviance_nat(self, nat):
        core = self._core(self.sigmas_nat(nat))
        if core is None:
            return np.inf
        C, ld_x, beta, rss = self._beta(core)
        dev = core["logdet"] + rss
        if self.reml:
            dev += ld_x + (self.N - self.p) * LOG2PI
        else:
            dev += self.N * LOG2PI
        return float(dev)

    def _G_by_group(self, core, C, beta):
        """Per covariance group t x t matrix G with d(-2l)/dphi_k = sum(dSigma_k * G)."""
        W = core["W"]
        t = self.t
        Trr = self._residual_products(beta)
        inner = Trr
        if self.reml:
            inner = inner + self._quad_xx(C)
        Gs = self.n_s[:, None, None] * W - W @ inner @ W
        out = np.zeros((self.n_groups_cov, t, t))
        np.add.at(out, self.pat_group, Gs)
        return out

    def grad_nat(self, nat):
        core = self._core(self.sigmas_nat(nat))
        if core is None:
            raise np.linalg.LinAlgError("covariance not positive definite")
        C, _, beta, _ = self._beta(core)
        Gg = self._G_by_group(core, C, beta)
        return np.array([float(np.sum(d * Gg[g])) for g, d in self.dsigma_nat(nat)])

    def deviance_and_grad_opt(self, opt):
        nat = self.opt_to_nat(opt)
        sig = self.sigmas_nat(nat)
        core = self._core(sig)
        if core is None:
            return np.inf, np.zeros_like(opt)
        C, ld_x, beta, rss = self._beta(core)
        self._last_state = (np.array(opt, dtype=float), dict(
            sigmas=sig, core=core, C=C, beta=beta, cov_beta=C, rss=rss, ld_x=ld_x))
        dev = core["logdet"] + rss
        dev += (ld_x + (self.N - self.p) * LOG2PI) if self.reml else self.N * LOG2PI
        Gg = self._G_by_group(core, C, beta)
        grad = np.empty_like(opt)
        k0 = 0
        for g, (st, v) in enumerate(zip(self.structures, self.split(opt, self.opt_sizes),
                                        strict=True)):
            dS = st.dsigma_opt(v)  # (n_opt, t, t)
            grad[k0 : k0 + len(v)] = np.einsum("kab,ab->k", dS, Gg[g])
            k0 += len(v)
        return float(dev), grad

    def state_opt(self, opt):
        """:meth:`state` at optimisation parameters (reuses the last evaluation there)."""
        last = getattr(self, "_last_state", None)
        if last is not None and np.array_equal(last[0], opt):
            return last[1]
        return self.state(self.opt_to_nat(opt))

    def state(self, nat):
        sig = self.sigmas_nat(nat)
        core = self._core(sig)
        C, ld_x, beta, rss = self._beta(core)
        return dict(sigmas=sig, core=core, C=C, beta=beta, cov_beta=C, rss=rss, ld_x=ld_x)

    def _Y(self, W, beta=None):
        """Per covariance group Y[a, b] = sum_s sum_jl W_ja (sum_i x_ij x_il') W_lb, (n_cov_groups,
        t, t, p, p), and with ``beta`` also Yr[a, b] = sum_s sum_jl W_ja (sum_i x_ij r_il) W_lb.

        With them X'V^-1 A V^-1 X = sum_ab A_ab Y[a, b] for any visit matrix A (one pass over the
        pattern sums instead of one per covariance parameter)."""
        t, p = self.t, self.p
        Y = np.zeros((self.n_groups_cov, t, t, p, p))
        Yr = np.zeros((self.n_groups_cov, t, t, p)) if beta is not None else None
        if self.pattern_stats:
            Wt = np.transpose(W, (0, 2, 1))
            for g in range(self.n_groups_cov):
                for sel in _chunks(np.flatnonzero(self.pat_group == g), t * t * p * p, 3e5):
                    n = len(sel)
                    T = self.Txx[sel].reshape(n, t, t * p * p)
                    tmp = (Wt[sel] @ T).reshape(n, t, t, p * p)  # [s, a, l, pq]
                    # contiguous [s, (a, pq), l] so that the second product is one BLAS call
                    # per pattern (matmul on a transposed view takes numpy's slow loop)
                    tmp = np.ascontiguousarray(tmp.transpose(0, 1, 3, 2)).reshape(
                        n, t * p * p, t)
                    out = (tmp @ W[sel]).sum(0).reshape(t, p * p, t)  # [a, pq, b]
                    Y[g] += np.transpose(out, (0, 2, 1)).reshape(t, t, p, p)
                    if beta is not None:
                        Txr = self.Txy[sel].reshape(n, t, t, p) - \
                            (self.Txx[sel].reshape(n, t, t, p, p) @ beta)
                        tmp = (Wt[sel] @ Txr.reshape(n, t, t * p)).reshape(n, t, t, p)
                        tmp = np.ascontiguousarray(tmp.transpose(0, 1, 3, 2)).reshape(
                            n, t * p, t)
                        out = (tmp @ W[sel]).sum(0).reshape(t, p, t)  # [a, p, b]
                        Yr[g] += np.transpose(out, (0, 2, 1))
            return Y, Yr
        for Xr, yr, rp in self._row_blocks():
            Wr_ = W[rp]
            Z = Wr_ @ Xr  # (n, t, p): W_s X_i per subject
            rg = self.pat_group[rp]
            if beta is not None:
                r = yr - Xr @ beta
                Wres = np.einsum("nl,nlb->nb", r, Wr_)  # r_i' W_s
            for g in np.unique(rg):
                m = rg == g
                Zg = Z if m.all() else Z[m]
                Y[g] += np.tensordot(Zg, Zg, axes=([0], [0])).transpose(0, 2, 1, 3)
                if beta is not None:
                    Rg = Wres if m.all() else Wres[m]
                    Yr[g] += np.tensordot(Zg, Rg, axes=([0], [0])).transpose(0, 2, 1)
        return Y, Yr

    def P_list(self, nat):
        """X'V^{-1} Sigma_k V^{-1} X per natural parameter (dC/dphi_k = C P_k C)."""
        core = self._core(self.sigmas_nat(nat))
        Y, _ = self._Y(core["W"])
        return self._contract_Y(self.dsigma_nat(nat), Y)

    def _contract_Y(self, ds, Y):
        """sum_ab dSigma_k[a, b] Y[group_k][a, b] for every parameter k (one matmul per group)."""
        t2 = self.t * self.t
        tail = Y.shape[3:]
        out = np.zeros((len(ds),) + tail)
        groups = np.array([g for g, _ in ds])
        for g in np.unique(groups):
            ks = np.flatnonzero(groups == g)
            D = np.array([ds[k][1] for k in ks]).reshape(len(ks), t2)
            out[ks] = (D @ Y[g].reshape(t2, -1)).reshape((len(ks),) + tail)
        return out

    def hessian_nat(self, nat, d2sigma=None, state=None):
        """Analytic observed Hessian of the profiled -2 (RE)ML log-likelihood in the natural
        parameters:

        H_kl = -tr(P S_k P S_l) + tr(P S_kl) + 2 r'V^-1 S_k P S_l V^-1 r - r'V^-1 S_kl V^-1 r,

        with P = V^-1 - V^-1 X C X'V^-1 under REML (V^-1 under ML) and S_k = dSigma/dphi_k.
        """
        if state is None:
            core = self._core(self.sigmas_nat(nat))
            C, _, beta, _ = self._beta(core)
        else:
            core, C, beta = state["core"], state["C"], state["beta"]
        W = core["W"]
        ds = self.dsigma_nat(nat)
        K = len(ds)
        Y, Yr = self._Y(W, beta)
        Pk = self._contract_Y(ds, Y)
        uk = self._contract_Y(ds, Yr)
        Trr = self._residual_products(beta)
        B = Trr + self._quad_xx(C) if self.reml else Trr
        B = W @ B  # (S, t, t)
        H = np.zeros((K, K))
        groups = np.array([g for g, _ in ds])
        for g in range(self.n_groups_cov):
            ks = np.flatnonzero(groups == g)
            if len(ks) == 0:
                continue
            dS = np.array([ds[k][1] for k in ks])  # (Kg, t, t)
            block = np.zeros((len(ks), len(ks)))
            Kg = len(ks)
            t = self.t
            for sel in _chunks(np.flatnonzero(self.pat_group == g), Kg * t * t):
                A = W[sel][:, None] @ dS[None]  # (n, Kg, t, t): W S_k
                AB = A @ B[sel][:, None]  # W S_k (W M)
                # -n_s tr(W S_k W S_l) + 2 tr(W S_k W S_l W M), as matrix products (BLAS):
                # tr(A_k D_l) = vec(A_k) . vec(D_l')
                n = len(sel)
                At = np.swapaxes(A, 2, 3).reshape(n, Kg, -1)
                ABt = np.swapaxes(AB, 2, 3).reshape(n, Kg, -1)
                D = 2.0 * ABt - self.n_s[sel][:, None, None] * At
                A2 = np.swapaxes(A.reshape(n, Kg, -1), 0, 1).reshape(Kg, -1)
                block += A2 @ np.swapaxes(D, 0, 1).reshape(Kg, -1).T
            H[np.ix_(ks, ks)] += block
        if self.reml:
            CP = C @ Pk  # (K, p, p)
            H -= CP.reshape(K, -1) @ np.transpose(CP, (0, 2, 1)).reshape(K, -1).T
        H -= 2.0 * uk @ C @ uk.T
        if d2sigma is not None:
            Gg = self._G_by_group(core, C, beta)
            for k in range(K):
                for m in range(K):
                    if d2sigma[k][m] is not None:
                        H[k, m] += float(np.sum(d2sigma[k][m] * Gg[ds[k][0]]))
        return 0.5 * (H + H.T)

    def opt_jacobian(self, opt):
        """d natural / d optimisation parameters (block diagonal over covariance groups)."""
        J = np.zeros((sum(self.nat_sizes), len(opt)))
        r0 = c0 = 0
        for st, v in zip(self.structures, self.split(opt, self.opt_sizes), strict=True):
            J[r0:r0 + st.n_natural, c0:c0 + len(v)] = st.jacobian_opt(v)
            r0 += st.n_natural
            c0 += len(v)
        return J

    def hessian_opt(self, opt):
        """Gauss-Newton form J' H_nat J of the Hessian in the optimisation parameters (exact at
        the optimum, where the gradient term vanishes)."""
        nat = self.opt_to_nat(opt)
        J = self.opt_jacobian(opt)
        d2 = None
        if any(not st.linear for st in self.structures):
            d2 = second_derivatives(self.structures, nat)
        last = getattr(self, "_last_state", None)
        state = last[1] if last is not None and np.array_equal(last[0], opt) else None
        return J.T @ self.hessian_nat(nat, d2, state=state) @ J

    def kr_inner(self, nat, Wphi, d2sigma=None):
        """sum_kl W_kl (Q_kl - P_k C P_l - R_kl / 4) of Kenward-Roger without forming the K^2
        matrices Q_kl: for pattern s, sum_kl W_kl X'V^-1 S_k V^-1 S_l V^-1 X is
        <M_s, Y_s> with M_s = sum_k S_k W_s (sum_l W_kl S_l)."""
        core = self._core(self.sigmas_nat(nat))
        C, _, _, _ = self._beta(core)
        W = core["W"]
        t, p = self.t, self.p
        ds = self.dsigma_nat(nat)
        groups = np.array([g for g, _ in ds])
        dS = np.array([d for _, d in ds])  # (K, t, t)
        Q = np.zeros((p, p))
        for g in range(self.n_groups_cov):
            ks = np.flatnonzero(groups == g)
            if len(ks) == 0:
                continue
            Dt = np.einsum("kl,lab->kab", Wphi[np.ix_(ks, ks)], dS[ks])  # sum_l W_kl S_l
            Kg = len(ks)
            dS_wide = np.transpose(dS[ks], (1, 0, 2)).reshape(t, Kg * t)  # [a, (k, b)]
            for s in np.flatnonzero(self.pat_group == g):
                WD = (W[s] @ Dt).reshape(Kg * t, t)  # [(k, c), d] = (W_s Dt_k)[c, d]
                M = dS_wide @ WD  # sum_k S_k W_s Dt_k
                A = W[s] @ M @ W[s]  # contract with the pattern sums: X'(W M W)X
                Q += self._xx(A[None], _one(s, self.n_patterns))
        Pk = self.P_list(nat)
        PWP = np.einsum("kab,bc,kl,lcd->ad", Pk, C, Wphi, Pk, optimize=True)
        inner = Q - PWP
        if d2sigma is not None:
            Y, _ = self._Y(W)
            for g in range(self.n_groups_cov):
                D2 = np.zeros((t, t))
                for k in np.flatnonzero(groups == g):
                    for m in np.flatnonzero(groups == g):
                        if d2sigma[k][m] is not None:
                            D2 += Wphi[k, m] * d2sigma[k][m]
                inner -= 0.25 * np.einsum("ab,abpq->pq", D2, Y[g])
        return 0.5 * (inner + inner.T)

    def QR_lists(self, nat, d2sigma):
        """Kenward-Roger Q_kl = X'V^-1 S_k V^-1 S_l V^-1 X and R_kl = X'V^-1 S_kl V^-1 X, all K^2
        of them: the explicit (slow) form, kept as the reference that tests kr_inner against."""
        core = self._core(self.sigmas_nat(nat))
        W = core["W"]
        p = self.p
        ds = self.dsigma_nat(nat)
        K = len(ds)
        Q = np.zeros((K, K, p, p))
        R = np.zeros((K, K, p, p))
        WdW = [W @ d for _, d in ds]  # valid for the patterns of the parameter's group
        for k in range(K):
            gk = ds[k][0]
            selk = self.pat_group == gk
            for m in range(k, K):
                if ds[m][0] != gk:
                    continue
                val = self._xx(WdW[k][selk] @ WdW[m][selk] @ W[selk], selk)
                Q[k, m] = val
                Q[m, k] = val.T
                if d2sigma is not None and d2sigma[k][m] is not None:
                    rv = self._xx(W[selk] @ d2sigma[k][m] @ W[selk], selk)
                    R[k, m] = rv
                    R[m, k] = rv
        return Q, R

    def empirical_cov(self, beta):
        """Available-case covariance of residuals by visit (starting values)."""
        Trr = self._residual_products(beta)
        out = []
        for g in range(self.n_groups_cov):
            sel = self.pat_group == g
            num = Trr[sel].sum(0)
            cnt = (self.pm2[sel] * self.n_s[sel, None, None]).sum(0)
            with np.errstate(invalid="ignore", divide="ignore"):
                E = num / cnt
            d = np.diag(E).copy()
            d[~np.isfinite(d) | (d <= 0)] = np.nanmean(d[np.isfinite(d) & (d > 0)]) if np.any(
                np.isfinite(d) & (d > 0)) else 1.0
            sd = np.sqrt(d)
            R = E / np.outer(sd, sd)
            R[~np.isfinite(R)] = 0.0
            R = np.clip(R, -0.95, 0.95)
            np.fill_diagonal(R, 1.0)
            w, v = np.linalg.eigh(R)
            w = np.maximum(w, 0.05)
            R = (v * w) @ v.T
            dd = np.sqrt(np.diag(R))
            R = R / np.outer(dd, dd)
            out.append(R * np.outer(sd, sd))
        return out
