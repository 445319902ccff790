r"""Covariance structures for the within-subject (visit by visit) covariance of an MMRM.

Each structure maps two parameter vectors to the t x t covariance :math:`\Sigma`:

* *optimisation* parameters, unconstrained, used by the optimiser (log standard deviations,
  log-Cholesky factors, tanh/logistic transforms of correlations);
* *natural* parameters, the ones SAS PROC MIXED reports (covariances for ``us``, ``cs`` and
  ``toep``; variances and a correlation for ``csh``, ``ar1``, ``ar1h``), in which standard errors,
  Satterthwaite and Kenward-Roger adjustments are computed. For ``us``, ``cs`` and ``toep``
  :math:`\Sigma` is linear in them, so the Kenward-Roger second-derivative term vanishes, which is
  how SAS ``DDFM=KR`` treats ``TYPE=UN`` (R mmrm calls this "Kenward-Roger-Linear").

========  ==========================================================  =====================
name      structure                                                    natural parameters
========  ==========================================================  =====================
``us``    unstructured                                                 t(t+1)/2 covariances
``cs``    :math:`\sigma^2 I + \sigma_1 J` (compound symmetry)         sigma_1, sigma^2
``csh``   :math:`\sigma_j\sigma_k\rho^{[j\neq k]}`                     t variances, rho
``ar1``   :math:`\sigma^2\rho^{|j-k|}`                                 sigma^2, rho
``ar1h``  :math:`\sigma_j\sigma_k\rho^{|j-k|}`                         t variances, rho
``toep``  :math:`\sigma_{|j-k|}` (Toeplitz)                            t lag covariances
``toeph`` :math:`\sigma_j\sigma_k\rho_{|j-k|}` (heterogeneous Toeplitz)   t variances, t-1 rho
``ad``    :math:`\sigma^2\prod_{m=j}^{k-1}\rho_m` (ante-dependence)     variance, t-1 rho
``adh``   :math:`\sigma_j\sigma_k\prod_{m=j}^{k-1}\rho_m` (SAS ANTE(1))  t variances, t-1 rho
``sp_exp`` :math:`\sigma^2 e^{-|c_j-c_k|/\theta}` (spatial exponential)  variance, range
========  ==========================================================  =====================

:data:`STRUCTURES` is the single list of names (the runner and the notebooks read it).

The ``us`` optimisation parameters are the log of the diagonal and the off-diagonal elements of
the lower Cholesky factor of :math:`\Sigma` (log-Cholesky), smooth and unconstrained as in R mmrm
(Pinheiro & Bates 1996).
"""

from __future__ import annotations

import numpy as np


def _expit(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _logit(p):
    p = np.clip(p, 1e-10, 1 - 1e-10)
    return np.log(p / (1 - p))


class CovarianceStructure:
    """Base class: subclasses define the maps; derivatives fall back to finite differences."""

    name = "base"
    linear = False  # Sigma linear in the natural parameters
    per_visit_variances = False  # one variance per visit (poorly determined for sparse visits)

    def __init__(self, n_visits: int, visit_labels=None):
        self.t = int(n_visits)
        self.labels = list(visit_labels) if visit_labels is not None else list(range(self.t))

    # to be defined: n_opt, n_natural, natural_names, to_natural, sigma_nat, start
    def sigma_opt(self, opt):
        return self.sigma_nat(self.to_natural(opt))

    def dsigma_nat(self, nat):
        """(n_natural, t, t) derivative of Sigma in the natural parameters."""
        nat = np.asarray(nat, float)
        out = np.empty((len(nat), self.t, self.t))
        for k in range(len(nat)):
            h = 1e-6 * max(1.0, abs(nat[k]))
            e = np.zeros_like(nat)
            e[k] = h
            out[k] = (self.sigma_nat(nat + e) - self.sigma_nat(nat - e)) / (2 * h)
        return out

    def d2sigma_nat(self, nat):
        """Second derivatives as a nested list (None where zero); None if Sigma is linear."""
        if self.linear:
            return None
        nat = np.asarray(nat, float)
        K = len(nat)
        out = [[None] * K for _ in range(K)]
        for k in range(K):
            h = 1e-4 * max(1.0, abs(nat[k]))
            e = np.zeros(K)
            e[k] = h
            dp = self.dsigma_nat(nat + e)
            dm = self.dsigma_nat(nat - e)
            for m in range(K):
                val = (dp[m] - dm[m]) / (2 * h)
                if np.max(np.abs(val)) > 1e-12:
                    out[k][m] = val
        for k in range(K):  # symmetrise
            for m in range(k + 1, K):
                a, b = out[k][m], out[m][k]
                if a is not None or b is not None:
                    a = a if a is not None else b
                    b = b if b is not None else a
                    out[k][m] = out[m][k] = 0.5 * (a + b)
        return out

    def jacobian_opt(self, opt):
        """(n_natural, n_opt) derivative of the natural in the optimisation parameters."""
        opt = np.asarray(opt, float)
        J = np.empty((self.n_natural, len(opt)))
        for k in range(len(opt)):
            h = 1e-6 * max(1.0, abs(opt[k]))
            e = np.zeros_like(opt)
            e[k] = h
            J[:, k] = (self.to_natural(opt + e) - self.to_natural(opt - e)) / (2 * h)
        return J

    def dsigma_opt(self, opt):
        """(n_opt, t, t) derivative of Sigma in the optimisation parameters (chain rule)."""
        opt = np.asarray(opt, float)
        nat = self.to_natural(opt)
        J = np.empty((len(nat), len(opt)))
        for k in range(len(opt)):
            h = 1e-6 * max(1.0, abs(opt[k]))
            e = np.zeros_like(opt)
            e[k] = h
            J[:, k] = (self.to_natural(opt + e) - self.to_natural(opt - e)) / (2 * h)
        dn = self.dsigma_nat(nat)
        return np.einsum("lk,lab->kab", J, dn)

    def scale_natural(self, nat, factor2):
        """Natural parameters after multiplying the outcome by sqrt(factor2): variances and
        covariances scale by factor2, correlations are unchanged."""
        nat = np.array(nat, dtype=float)
        mask = self._variance_like()
        nat[mask] *= factor2
        return nat

    def _variance_like(self):
        return np.ones(self.n_natural, dtype=bool)

    def boundary_messages(self, nat) -> list[str]:
        S = self.sigma_nat(nat)
        msgs = []
        sd = np.sqrt(np.maximum(np.diag(S), 0))
        if np.any(sd < 1e-4 * max(sd.max(), 1e-300)):
            msgs.append("a visit variance is estimated at (nearly) zero")
        if self.t > 1 and sd.min() > 0:
            R = S / np.outer(sd, sd)
            off = R[~np.eye(self.t, dtype=bool)]
            if np.any(np.abs(off) > 0.9999):
                msgs.append("a correlation between visits is estimated at (nearly) +-1")
            if np.linalg.eigvalsh(R).min() < 1e-7:
                msgs.append("the estimated correlation matrix is (nearly) singular")
        return msgs


class Unstructured(CovarianceStructure):
    name = "us"
    per_visit_variances = True
    linear = True

    def __init__(self, n_visits, visit_labels=None):
        super().__init__(n_visits, visit_labels)
        self.tril = np.tril_indices(self.t)
        self.n_opt = self.n_natural = len(self.tril[0])
        self.diag_pos = np.flatnonzero(self.tril[0] == self.tril[1])
        L = self.labels
        self.natural_names = [f"cov({L[r]},{L[c]})" if r != c else f"var({L[r]})"
                              for r, c in zip(*self.tril, strict=True)]
        K = self.n_natural
        self._dnat = np.zeros((K, self.t, self.t))
        for k, (r, c) in enumerate(zip(*self.tril, strict=True)):
            self._dnat[k, r, c] = self._dnat[k, c, r] = 1.0

    def _chol(self, opt):
        L = np.zeros((self.t, self.t))
        L[self.tril] = opt
        d = np.arange(self.t)
        L[d, d] = np.exp(L[d, d])
        return L

    def sigma_nat(self, nat):
        S = np.zeros((self.t, self.t))
        S[self.tril] = nat
        return S + np.tril(S, -1).T

    def to_natural(self, opt):
        L = self._chol(opt)
        return (L @ L.T)[self.tril]

    def sigma_opt(self, opt):
        L = self._chol(opt)
        return L @ L.T

    def dsigma_nat(self, nat):
        return self._dnat

    def dsigma_opt(self, opt):
        # d(LL')/dL_rc = e_r l_c' + l_c e_r' (l_c = column c of L), times L_rr on the diagonal
        L = self._chol(opt)
        r, c = self.tril
        t = self.t
        out = np.zeros((self.n_opt, t, t))
        k = np.arange(self.n_opt)
        scale = np.where(r == c, L[r, c], 1.0)
        out[k, r, :] = L[:, c].T * scale[:, None]
        out[k, :, r] += L[:, c].T * scale[:, None]
        return out

    def jacobian_opt(self, opt):
        return self.dsigma_opt(opt)[:, self.tril[0], self.tril[1]].T

    def start(self, S_emp):
        L = np.linalg.cholesky(S_emp)
        d = np.arange(self.t)
        L[d, d] = np.log(L[d, d])
        return L[self.tril]


class CompoundSymmetry(CovarianceStructure):
    name = "cs"
    linear = True
    n_opt = 2
    n_natural = 2
    natural_names = ["cs_covariance", "residual"]

    def _lo(self):
        return -1.0 / (self.t - 1) if self.t > 1 else -1.0

    def to_natural(self, opt):
        v = np.exp(opt[0])
        lo = self._lo()
        rho = lo + (1 - lo) * _expit(opt[1])
        return np.array([v * rho, v * (1 - rho)])

    def sigma_nat(self, nat):
        return nat[1] * np.eye(self.t) + nat[0] * np.ones((self.t, self.t))

    def dsigma_nat(self, nat):
        return np.array([np.ones((self.t, self.t)), np.eye(self.t)])

    def start(self, S_emp):
        v = float(np.mean(np.diag(S_emp)))
        off = S_emp[~np.eye(self.t, dtype=bool)]
        rho = float(np.mean(off)) / v if self.t > 1 else 0.0
        lo = self._lo()
        rho = np.clip(rho, lo + 1e-3, 0.99)
        return np.array([np.log(v), _logit((rho - lo) / (1 - lo))])


class HeterogeneousCS(CovarianceStructure):
    name = "csh"
    per_visit_variances = True

    def __init__(self, n_visits, visit_labels=None):
        super().__init__(n_visits, visit_labels)
        self.n_opt = self.n_natural = self.t + 1
        self.natural_names = [f"var({v})" for v in self.labels] + ["rho"]

    def _lo(self):
        return -1.0 / (self.t - 1) if self.t > 1 else -1.0

    def _variance_like(self):
        m = np.ones(self.n_natural, dtype=bool)
        m[-1] = False  # rho
        return m

    def to_natural(self, opt):
        lo = self._lo()
        return np.r_[np.exp(opt[: self.t]), lo + (1 - lo) * _expit(opt[self.t])]

    def sigma_nat(self, nat):
        sd = np.sqrt(np.maximum(nat[: self.t], 0))
        R = np.full((self.t, self.t), nat[self.t])
        np.fill_diagonal(R, 1.0)
        return R * np.outer(sd, sd)

    def start(self, S_emp):
        sd = np.sqrt(np.diag(S_emp))
        R = S_emp / np.outer(sd, sd)
        rho = float(np.mean(R[~np.eye(self.t, dtype=bool)])) if self.t > 1 else 0.0
        lo = self._lo()
        rho = np.clip(rho, lo + 1e-3, 0.99)
        return np.r_[np.log(sd**2), _logit((rho - lo) / (1 - lo))]


class AR1(CovarianceStructure):
    name = "ar1"
    n_opt = 2
    n_natural = 2
    natural_names = ["variance", "rho"]

    def _lags(self):
        i = np.arange(self.t)
        return np.abs(i[:, None] - i[None, :])

    def _variance_like(self):
        m = np.ones(self.n_natural, dtype=bool)
        m[-1] = False  # rho
        return m

    def to_natural(self, opt):
        return np.array([np.exp(opt[0]), np.tanh(opt[1])])

    def sigma_nat(self, nat):
        return nat[0] * nat[1] ** self._lags()

    def dsigma_nat(self, nat):
        lag = self._lags()
        rho = nat[1]
        d_rho = nat[0] * lag * np.where(lag > 0, rho ** np.maximum(lag - 1, 0), 0.0)
        return np.array([rho**lag, d_rho])

    def start(self, S_emp):
        v = float(np.mean(np.diag(S_emp)))
        rho = float(np.mean(np.diag(S_emp, 1))) / v if self.t > 1 else 0.0
        return np.array([np.log(v), np.arctanh(np.clip(rho, -0.95, 0.95))])


class HeterogeneousAR1(CovarianceStructure):
    name = "ar1h"
    per_visit_variances = True

    def __init__(self, n_visits, visit_labels=None):
        super().__init__(n_visits, visit_labels)
        self.n_opt = self.n_natural = self.t + 1
        self.natural_names = [f"var({v})" for v in self.labels] + ["rho"]

    def _lags(self):
        i = np.arange(self.t)
        return np.abs(i[:, None] - i[None, :])

    def _variance_like(self):
        m = np.ones(self.n_natural, dtype=bool)
        m[-1] = False  # rho
        return m

    def to_natural(self, opt):
        return np.r_[np.exp(opt[: self.t]), np.tanh(opt[self.t])]

    def sigma_nat(self, nat):
        sd = np.sqrt(np.maximum(nat[: self.t], 0))
        return nat[self.t] ** self._lags() * np.outer(sd, sd)

    def start(self, S_emp):
        sd = np.sqrt(np.diag(S_emp))
        R = S_emp / np.outer(sd, sd)
        rho = float(np.mean(np.diag(R, 1))) if self.t > 1 else 0.0
        return np.r_[np.log(sd**2), np.arctanh(np.clip(rho, -0.95, 0.95))]


class Toeplitz(CovarianceStructure):
    name = "toep"
    linear = True

    def __init__(self, n_visits, visit_labels=None):
        super().__init__(n_visits, visit_labels)
        self.n_opt = self.n_natural = self.t
        self.natural_names = [f"lag{k}" for k in range(self.t)]
        i = np.arange(self.t)
        self._lag = np.abs(i[:, None] - i[None, :])
        self._dnat = np.array([(self._lag == k).astype(float) for k in range(self.t)])

    @staticmethod
    def _acf_from_pacf(pacf):
        """Durbin-Levinson: autocorrelations from partial autocorrelations (|pacf| < 1)."""
        n = len(pacf)
        r = np.zeros(n + 1)
        r[0] = 1.0
        phi = np.zeros(0)
        for k in range(1, n + 1):
            a = pacf[k - 1]
            if k == 1:
                r[1] = a
                phi = np.array([a])
                continue
            # r_k = sum_j phi_{k-1,j} r_{k-j} + a * (1 - sum_j phi_{k-1,j} r_j)
            rk = float(phi @ r[k - 1 : 0 : -1]) + a * (1.0 - float(phi @ r[1:k]))
            r[k] = rk
            phi = np.r_[phi - a * phi[::-1], a]
        return r

    @staticmethod
    def _pacf_from_acf(r):
        n = len(r) - 1
        pacf = np.zeros(n)
        phi = np.zeros(0)
        for k in range(1, n + 1):
            if k == 1:
                a = r[1]
                phi = np.array([a])
            else:
                num = r[k] - float(phi @ r[k - 1 : 0 : -1])
                den = 1.0 - float(phi @ r[1:k])
                a = num / den
                phi = np.r_[phi - a * phi[::-1], a]
            pacf[k - 1] = a
        return pacf

    def to_natural(self, opt):
        v = np.exp(opt[0])
        r = self._acf_from_pacf(np.tanh(opt[1:]))
        return v * r

    def sigma_nat(self, nat):
        return np.asarray(nat)[self._lag]

    def dsigma_nat(self, nat):
        return self._dnat

    def start(self, S_emp):
        v = float(np.mean(np.diag(S_emp)))
        r = np.array([np.mean(np.diag(S_emp, k)) for k in range(self.t)]) / v
        r[0] = 1.0
        # shrink until the Toeplitz matrix is comfortably positive definite
        for _ in range(50):
            if np.linalg.eigvalsh(r[self._lag]).min() > 1e-3:
                break
            r[1:] *= 0.9
        pacf = np.clip(self._pacf_from_acf(r), -0.99, 0.99)
        return np.r_[np.log(v), np.arctanh(pacf)]


class AnteDependence(CovarianceStructure):
    r"""First-order ante-dependence, homogeneous variance (R mmrm ``ad``):
    :math:`\Sigma_{jk} = \sigma^2 \prod_{m=j}^{k-1} \rho_m` (j < k)."""

    name = "ad"
    heterogeneous = False

    def __init__(self, n_visits, visit_labels=None):
        super().__init__(n_visits, visit_labels)
        L = self.labels
        n_var = self.t if self.heterogeneous else 1
        self.n_var = n_var
        self.n_opt = self.n_natural = n_var + self.t - 1
        var_names = [f"var({v})" for v in L] if self.heterogeneous else ["variance"]
        self.natural_names = var_names + [f"rho({L[m]},{L[m + 1]})" for m in range(self.t - 1)]

    def _variance_like(self):
        m = np.zeros(self.n_natural, dtype=bool)
        m[: self.n_var] = True
        return m

    def to_natural(self, opt):
        opt = np.asarray(opt, float)
        return np.r_[np.exp(opt[: self.n_var]), np.tanh(opt[self.n_var:])]

    def _corr(self, rho):
        t = self.t
        logs = np.r_[0.0, np.cumsum(np.log(np.abs(rho) + 1e-300))]
        signs = np.r_[1.0, np.cumprod(np.sign(rho))]
        i = np.arange(t)
        a, b = np.minimum.outer(i, i), np.maximum.outer(i, i)
        return signs[b] / signs[a] * np.exp(logs[b] - logs[a])

    def sigma_nat(self, nat):
        nat = np.asarray(nat, float)
        var = nat[: self.n_var] if self.heterogeneous else np.full(self.t, nat[0])
        sd = np.sqrt(np.maximum(var, 0))
        return self._corr(nat[self.n_var:]) * np.outer(sd, sd)

    def start(self, S_emp):
        d = np.diag(S_emp)
        sd = np.sqrt(d)
        R = S_emp / np.outer(sd, sd)
        rho = np.clip(np.diag(R, 1), -0.95, 0.95) if self.t > 1 else np.zeros(0)
        var = np.log(d) if self.heterogeneous else np.array([np.log(np.mean(d))])
        return np.r_[var, np.arctanh(rho)]


class HeterogeneousAnteDependence(AnteDependence):
    r"""First-order ante-dependence (SAS ``TYPE=ANTE(1)``, R mmrm ``adh``):
    :math:`\Sigma_{jk} = \sigma_j\sigma_k \prod_{m=j}^{k-1} \rho_m`."""

    name = "adh"
    heterogeneous = True
    per_visit_variances = True


class HeterogeneousToeplitz(CovarianceStructure):
    r"""Heterogeneous Toeplitz (SAS ``TYPE=TOEPH``, R mmrm ``toeph``):
    :math:`\Sigma_{jk} = \sigma_j\sigma_k\rho_{|j-k|}`, :math:`\rho_0 = 1`; the correlations
    are optimised through their partial autocorrelations, so every iterate is positive
    definite."""

    name = "toeph"
    per_visit_variances = True

    def __init__(self, n_visits, visit_labels=None):
        super().__init__(n_visits, visit_labels)
        self.n_opt = self.n_natural = 2 * self.t - 1
        self.natural_names = [f"var({v})" for v in self.labels] + \
            [f"rho{k}" for k in range(1, self.t)]
        i = np.arange(self.t)
        self._lag = np.abs(i[:, None] - i[None, :])

    def _variance_like(self):
        m = np.zeros(self.n_natural, dtype=bool)
        m[: self.t] = True
        return m

    def to_natural(self, opt):
        opt = np.asarray(opt, float)
        r = Toeplitz._acf_from_pacf(np.tanh(opt[self.t:]))
        return np.r_[np.exp(opt[: self.t]), r[1:]]

    def sigma_nat(self, nat):
        nat = np.asarray(nat, float)
        sd = np.sqrt(np.maximum(nat[: self.t], 0))
        r = np.r_[1.0, nat[self.t:]]
        return r[self._lag] * np.outer(sd, sd)

    def start(self, S_emp):
        d = np.diag(S_emp)
        sd = np.sqrt(d)
        R = S_emp / np.outer(sd, sd)
        r = np.array([np.mean(np.diag(R, k)) for k in range(self.t)])
        r[0] = 1.0
        for _ in range(50):
            if np.linalg.eigvalsh(r[self._lag]).min() > 1e-3:
                break
            r[1:] *= 0.9
        pacf = np.clip(Toeplitz._pacf_from_acf(r), -0.99, 0.99)
        return np.r_[np.log(d), np.arctanh(pacf)]


class SpatialExponential(CovarianceStructure):
    r"""Spatial exponential (SAS ``TYPE=SP(EXP)(time)``, R mmrm ``sp_exp``):
    :math:`\Sigma_{jk} = \sigma^2 \exp(-d_{jk}/\theta)` with :math:`d_{jk}` the distance
    between the visits' times (``time=`` in :func:`kanalysis.mmrm`). Natural parameters:
    ``variance`` :math:`\sigma^2` and ``range`` :math:`\theta` (SAS's ``SP(EXP)``)."""

    name = "sp_exp"
    n_opt = 2
    n_natural = 2
    natural_names = ["variance", "range"]
    needs_coordinates = True

    def __init__(self, n_visits, visit_labels=None, coordinates=None):
        super().__init__(n_visits, visit_labels)
        if coordinates is None:
            from kanalysis.errors import ConfigurationError

            raise ConfigurationError("covariance 'sp_exp' needs the visits' times: give "
                                     "time='column' (e.g. AVISITN or the scheduled study day)")
        c = np.asarray(coordinates, dtype=float)
        self.coordinates = c
        self._dist = np.abs(c[:, None] - c[None, :])

    def _variance_like(self):
        return np.array([True, False])

    def to_natural(self, opt):
        return np.exp(np.asarray(opt, float))

    def sigma_nat(self, nat):
        return nat[0] * np.exp(-self._dist / max(float(nat[1]), 1e-300))

    def dsigma_nat(self, nat):
        E = np.exp(-self._dist / nat[1])
        return np.array([E, nat[0] * E * self._dist / nat[1] ** 2])

    def start(self, S_emp):
        v = float(np.mean(np.diag(S_emp)))
        if self.t > 1:
            sd = np.sqrt(np.diag(S_emp))
            R = S_emp / np.outer(sd, sd)
            off = ~np.eye(self.t, dtype=bool)
            rho = float(np.clip(np.mean(R[off]), 0.05, 0.95))
            d = float(np.mean(self._dist[off]))
            theta = d / -np.log(rho) if d > 0 else 1.0
        else:
            theta = 1.0
        return np.array([np.log(v), np.log(max(theta, 1e-6))])


STRUCTURES = {
    "us": Unstructured,
    "cs": CompoundSymmetry,
    "csh": HeterogeneousCS,
    "ar1": AR1,
    "ar1h": HeterogeneousAR1,
    "toep": Toeplitz,
    "toeph": HeterogeneousToeplitz,
    "ad": AnteDependence,
    "adh": HeterogeneousAnteDependence,
    "sp_exp": SpatialExponential,
}
"""The covariance structures by name: the one list of structure names kanalysis accepts."""


def make_structure(name: str, n_visits: int, visit_labels=None,
                   coordinates=None) -> CovarianceStructure:
    """Build a covariance structure by name (one of :data:`STRUCTURES`); ``coordinates`` are
    the visits' times for spatial structures."""
    from kanalysis.errors import ConfigurationError

    key = str(name).lower()
    if key not in STRUCTURES:
        raise ConfigurationError(
            f"unknown covariance structure {name!r}; choose one of {sorted(STRUCTURES)}"
        )
    cls = STRUCTURES[key]
    if getattr(cls, "needs_coordinates", False):
        return cls(n_visits, visit_labels, coordinates=coordinates)
    return cls(n_visits, visit_labels)
