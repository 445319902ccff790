r"""Closed-form power and sample size: the analytic twins of the simulated designs.

Each function solves for the one quantity left out (``None``): the sample size, the power or the
detectable effect. Two-sided ``alpha`` throughout unless ``alternative="one-sided"``.

* :func:`power_mmrm`: MMRM treatment difference at the last visit under monotone dropout,
  Lu, Luo & Chen (2008):

  .. math::

      \phi_k = \Big[\Big(\sum_{j=1}^{J} (r_{kj} - r_{k,j+1})\,
               \operatorname{pad}_J(R_{k,[1:j,1:j]}^{-1})\Big)^{-1}\Big]_{JJ},\qquad
      N_a = \frac{(\phi_a\sigma_a^2 + \lambda\phi_b\sigma_b^2)(z_{1-\alpha/2}+z_{1-\beta})^2}
                 {\Delta^2},\quad N_b = N_a/\lambda,

  with :math:`r_{k,J+1}=0`, retention :math:`r_{kj}` (share of arm *k* observed at visit *j*),
  correlation :math:`R_k` and :math:`\lambda = N_a/N_b`. ``method="t"`` replaces the normal
  quantiles by t quantiles with :math:`N-2` df (``"t1"``: one step from the normal N, the
  "t1" column of LLC Table 1).
* :func:`power_lmm_slope`: difference in linear slopes, Diggle, Heagerty, Liang & Zeger (2002,
  Analysis of Longitudinal Data, section 2.4) and Liu & Liang (1997):
  :math:`n = 2(z_{1-\alpha/2}+z_{1-\beta})^2\,[(X^\top V^{-1}X)^{-1}]_{22}/\delta^2` per arm with
  :math:`X = [1, t]`; for exchangeable :math:`V=\sigma^2[(1-\rho)I+\rho J]` this is Diggle's
  :math:`2(z+z)^2\sigma^2(1-\rho)/(\delta^2\sum_j(t_j-\bar t)^2)`. :func:`power_time_averaged` is
  Diggle's time-averaged difference, :math:`2(z+z)^2\sigma^2(1+(m-1)\rho)/(m\delta^2)`.
* :func:`events_needed`: Schoenfeld (1983), :math:`d = (z_{1-\alpha/2}+z_{1-\beta})^2 /
  (p(1-p)\log^2\mathrm{HR})`, or Freedman (1982), :math:`d = (z+z)^2(1+\kappa\mathrm{HR})^2 /
  (\kappa(1-\mathrm{HR})^2)` with :math:`\kappa = p/(1-p)`.
* :func:`sample_size_survival`: Lachin & Foulkes (1986), exponential survival, uniform accrual
  over ``accrual`` and total duration ``accrual + follow_up``, exponential loss to follow-up.
* :func:`power_two_proportions`: responder rates, the normal approximation of R's
  ``power.prop.test`` (Fleiss, Levin & Paik 2003).

References
----------
Lu K, Luo X, Chen P-Y (2008). Sample size estimation for repeated measures analysis in
randomized clinical trials with missing data. Int J Biostat 4(1):9.
Diggle PJ, Heagerty P, Liang K-Y, Zeger SL (2002). Analysis of Longitudinal Data, 2nd ed. OUP.
Liu G, Liang K-Y (1997). Sample size calculations for studies with correlated observations.
Biometrics 53:937-947.
Schoenfeld DA (1983). Sample-size formula for the proportional-hazards regression model.
Biometrics 39:499-503.
Freedman LS (1982). Tables of the number of patients required in clinical trials using the
logrank test. Stat Med 1:121-129.
Lachin JM, Foulkes MA (1986). Evaluation of sample size and power for analyses of survival with
allowance for nonuniform patient entry, losses to follow-up, noncompliance, and stratification.
Biometrics 42:507-519.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from kanalysis.errors import ConfigurationError
from kanalysis.results import AnalysisResult, SummaryText

__all__ = [
    "AnalyticPower",
    "events_needed",
    "mmrm_variance_factor",
    "power_lmm_slope",
    "power_mmrm",
    "power_time_averaged",
    "power_two_proportions",
    "sample_size_survival",
]


@dataclass
class AnalyticPower(AnalysisResult):
    """The answer of an analytic power calculation.

    Attributes
    ----------
    method : str
        Formula used (with its reference).
    n_total : float
        Total sample size (unrounded; ``n_total_ceiling`` rounds each arm up).
    n_per_arm : tuple of float
        Sample size of each arm.
    power : float
    delta : float
        Effect (difference in means or slopes, log hazard ratio, difference in proportions).
    alpha : float
        Two-sided type I error (or one-sided with ``alternative="one-sided"``).
    details : dict
        Inputs and intermediate quantities (variance factors, event probabilities).
    """

    method: str
    n_total: float
    n_per_arm: tuple[float, float]
    power: float
    delta: float
    alpha: float
    details: dict[str, Any] = field(default_factory=dict)

    count_columns = {}

    @property
    def n_total_ceiling(self) -> int:
        """Total after rounding each arm up to a whole subject."""
        return int(sum(np.ceil(np.asarray(self.n_per_arm) - 1e-9)))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "method": self.method, "n": self.n_total, "n_arm_a": self.n_per_arm[0],
            "n_arm_b": self.n_per_arm[1], "power": self.power, "delta": self.delta,
            "alpha": self.alpha,
        }])

    def summary(self) -> SummaryText:
        na, nb = self.n_per_arm
        return SummaryText(
            f"{self.method}\n  effect {self.delta:.4g}, alpha {self.alpha:g}: power "
            f"{self.power:.4f} with N = {self.n_total:.2f} ({na:.2f} + {nb:.2f}; "
            f"{self.n_total_ceiling} after rounding each arm up)")

    def key_numbers(self) -> dict[str, Any]:
        return {"method": self.method, "n_total": float(self.n_total),
                "n_per_arm": [float(v) for v in self.n_per_arm], "power": float(self.power),
                "delta": float(self.delta), "alpha": float(self.alpha)}

    def __repr__(self) -> str:
        return str(self.summary())


# ---- helpers ----------------------------------------------------------------------------------

def _sides(alternative: str) -> int:
    alt = str(alternative).lower().replace("_", "-")
    if alt in ("two-sided", "two.sided", "2"):
        return 2
    if alt in ("one-sided", "one.sided", "1", "greater", "less"):
        return 1
    raise ConfigurationError(f"alternative must be 'two-sided' or 'one-sided', got {alternative!r}")


def _check_prob(name: str, value, *, open_low=True, open_high=True) -> float:
    v = float(value)
    lo_ok = v > 0 if open_low else v >= 0
    hi_ok = v < 1 if open_high else v <= 1
    if not (np.isfinite(v) and lo_ok and hi_ok):
        raise ConfigurationError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return v


def _one_missing(**given) -> str:
    missing = [k for k, v in given.items() if v is None]
    if len(missing) != 1:
        raise ConfigurationError(
            f"give all but one of {', '.join(given)} (the one left out, None, is solved for); "
            f"missing now: {missing or 'none'}")
    return missing[0]


def _per_arm(value, what: str) -> tuple[Any, Any]:
    """``value`` for both arms, or a pair / mapping of two arms."""
    if isinstance(value, Mapping):
        if len(value) != 2:
            raise ConfigurationError(f"{what}: a mapping must give exactly two arms, got "
                                     f"{list(value)}")
        a, b = list(value.values())
        return a, b
    if isinstance(value, tuple) and len(value) == 2:
        return value
    return value, value


def _solve(f: Callable[[float], float], lo: float, hi: float, what: str) -> float:
    flo, fhi = f(lo), f(hi)
    k = 0
    while np.sign(flo) == np.sign(fhi) and k < 60:
        hi *= 2.0
        fhi = f(hi)
        k += 1
    if np.sign(flo) == np.sign(fhi):
        raise ConfigurationError(f"no {what} achieves the requested power with these inputs")
    return float(optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-14, maxiter=500))


def _normal_or_t(method: str) -> str:
    m = str(method).lower()
    if m not in ("z", "t", "t1"):
        raise ConfigurationError(f"method must be 'z' (normal quantiles), 't' or 't1', got "
                                 f"{method!r}")
    return m


# ---- MMRM -------------------------------------------------------------------------------------

def _as_correlation(correlation, n_visits: int | None) -> np.ndarray:
    R = np.asarray(correlation, dtype=float)
    if R.ndim == 0:
        if n_visits is None:
            raise ConfigurationError("a scalar correlation needs the number of visits "
                                     "(give retention or a matrix)")
        rho = float(R)
        R = np.full((n_visits, n_visits), rho)
        np.fill_diagonal(R, 1.0)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ConfigurationError(f"correlation must be a square matrix, got shape {R.shape}")
    if not np.allclose(R, R.T) or not np.allclose(np.diag(R), 1.0):
        raise ConfigurationError("correlation must be symmetric with a unit diagonal")
    if np.linalg.eigvalsh(R).min() <= 0:
        raise ConfigurationError("correlation matrix must be positive definite")
    return R


def mmrm_variance_factor(correlation, retention) -> float:
    r"""Lu, Luo & Chen's :math:`\phi`: variance of the last-visit mean under monotone dropout,
    in units of the last-visit variance over the number randomised.

    Parameters
    ----------
    correlation : (J, J) array_like or float
        Correlation of the J post-randomisation visits (a float means exchangeable).
    retention : sequence of float
        Share still observed at each visit, non-increasing, ``retention[0] <= 1``.

    Returns
    -------
    float
        :math:`\phi = [(\sum_j (r_j - r_{j+1}) \operatorname{pad}(R_{[1:j,1:j]}^{-1}))^{-1}]_{JJ}`.
        With complete data :math:`\phi = 1`; with no correlation :math:`\phi = 1/r_J`.
    """
    r = np.asarray(retention, dtype=float)
    R = _as_correlation(correlation, len(r))
    J = R.shape[0]
    if r.shape != (J,):
        raise ConfigurationError(f"retention has {r.size} values for {J} visits")
    if np.any(r <= 0) or np.any(r > 1) or np.any(np.diff(r) > 1e-12):
        raise ConfigurationError("retention must be non-increasing, in (0, 1] at every visit "
                                 f"(monotone dropout); got {r.tolist()}")
    info = np.zeros((J, J))
    r_next = np.append(r[1:], 0.0)
    for j in range(J):
        w = r[j] - r_next[j]
        if w > 0:
            info[: j + 1, : j + 1] += w * np.linalg.inv(R[: j + 1, : j + 1])
    return float(np.linalg.inv(info)[J - 1, J - 1])


def power_mmrm(delta: float | None = None, sigma: float | Sequence | Mapping = 1.0,
               correlation=None, retention=None, n_total: float | None = None,
               power: float | None = None, alpha: float = 0.05, allocation: float = 1.0,
               method: str = "z", alternative: str = "two-sided") -> AnalyticPower:
    r"""Power, total sample size or detectable difference of an MMRM landmark contrast.

    Lu, Luo & Chen (2008): the difference in means at the last visit between arms *a* and *b*
    under monotone (MCAR) dropout; see the module notes for the formula.

    Parameters
    ----------
    delta : float, optional
        Difference in means at the last visit.
    sigma : float or pair
        Standard deviation at the last visit (one value, or one per arm as a pair or mapping).
    correlation : (J, J) array_like or float, or pair / mapping of them
        Visit correlation (per arm allowed). A float is exchangeable.
    retention : sequence of float, or pair / mapping of them
        Share observed at each visit (per arm allowed); default complete data.
    n_total : float, optional
        Total sample size of both arms.
    power : float, optional
        Target power.
    alpha : float, default 0.05
        Type I error (two-sided by default).
    allocation : float, default 1.0
        :math:`\lambda = N_a / N_b`.
    method : {"z", "t", "t1"}
        Normal quantiles (longpower's ``power.mmrm``); t quantiles with ``N - 2`` df solved
        exactly (``"t"``); or one step of it, t quantiles at the normal-theory N - 2 df
        (``"t1"``, the t1 column of LLC Table 1). Power and delta use ``"t"`` for both t
        methods.
    alternative : {"two-sided", "one-sided"}

    Returns
    -------
    AnalyticPower
        With ``n_total``, ``n_per_arm``, ``power`` and ``delta``; ``details["phi"]`` holds
        :math:`(\phi_a, \phi_b)`.

    Examples
    --------
    >>> from kanalysis.design import power_mmrm
    >>> res = power_mmrm(delta=0.5, sigma=1, correlation=0.5, retention=[1, 1, 1], power=0.9)
    >>> round(res.n_total, 2)
    168.12
    """
    missing = _one_missing(delta=delta, n_total=n_total, power=power)
    alpha = _check_prob("alpha", alpha)
    method = _normal_or_t(method)
    sides = _sides(alternative)
    lam = float(allocation)
    if not (np.isfinite(lam) and lam > 0):
        raise ConfigurationError(f"allocation must be positive, got {allocation!r}")
    sig_a, sig_b = (float(s) for s in _per_arm(sigma, "sigma"))
    if sig_a <= 0 or sig_b <= 0:
        raise ConfigurationError(f"sigma must be positive, got {sigma!r}")
    if correlation is None and retention is None:
        raise ConfigurationError("give the visit correlation and/or the retention per visit")
    cor_a, cor_b = _per_arm(0.0 if correlation is None else correlation, "correlation")
    ret_a, ret_b = _per_arm(retention, "retention")

    def factor(cor, ret):
        if ret is None:
            J = np.asarray(cor).shape[0] if np.ndim(cor) == 2 else 1
            ret = np.ones(J)
        return mmrm_variance_factor(cor, ret)

    phi_a, phi_b = factor(cor_a, ret_a), factor(cor_b, ret_b)
    v = phi_a * sig_a**2 + lam * phi_b * sig_b**2  # N_a * Var(estimate)

    def power_at(n_tot, d):
        na = n_tot * lam / (1 + lam)
        ncp = abs(d) * np.sqrt(na / v)
        if method == "z":
            return float(stats.norm.cdf(ncp - stats.norm.ppf(1 - alpha / sides)))
        df = max(n_tot - 2.0, 1e-8)
        return float(stats.t.cdf(ncp - stats.t.ppf(1 - alpha / sides, df), df))

    if missing == "power":
        n_tot, d = float(n_total), float(delta)
        if n_tot <= 2:
            raise ConfigurationError(f"n_total must exceed 2, got {n_total!r}")
        pw = power_at(n_tot, d)
    else:
        pw = _check_prob("power", power)
        if missing == "n_total":
            d = float(delta)
            if d == 0:
                raise ConfigurationError("delta = 0 has no sample size (power stays at alpha)")
            za, zb = stats.norm.ppf(1 - alpha / sides), stats.norm.ppf(pw)
            if method in ("z", "t1"):
                na = v * (za + zb) ** 2 / d**2
                n_tot = na * (1 + 1 / lam)
                if method == "t1":  # one step: t quantiles at the normal-theory N - 2 df
                    df = n_tot - 2.0
                    tq = stats.t.ppf(1 - alpha / sides, df) + stats.t.ppf(pw, df)
                    n_tot *= (tq / (za + zb)) ** 2
            else:
                n_tot = _solve(lambda n: power_at(n, d) - pw, 3.0, 100.0, "sample size")
        else:
            n_tot = float(n_total)
            if method == "z":
                za, zb = stats.norm.ppf(1 - alpha / sides), stats.norm.ppf(pw)
                d = (za + zb) * np.sqrt(v / (n_tot * lam / (1 + lam)))
            else:
                d = _solve(lambda x: power_at(n_tot, x) - pw, 1e-12, 1.0, "effect")
    na = n_tot * lam / (1 + lam)
    return AnalyticPower(
        method=f"MMRM landmark difference, Lu, Luo & Chen (2008), {method} quantiles",
        n_total=float(n_tot), n_per_arm=(float(na), float(n_tot - na)), power=float(pw),
        delta=float(d), alpha=alpha,
        details={"phi": (phi_a, phi_b), "sigma": (sig_a, sig_b), "allocation": lam,
                 "alternative": "two-sided" if sides == 2 else "one-sided"})


# ---- LMM slopes ---------------------------------------------------------------------------------

def _slope_variance(times, covariance) -> float:
    t = np.asarray(times, dtype=float)
    V = np.asarray(covariance, dtype=float)
    X = np.column_stack([np.ones_like(t), t])
    M = X.T @ np.linalg.solve(V, X)
    return float(np.linalg.inv(M)[1, 1])


def _lmm_covariance(times, sigma2, rho, random) -> np.ndarray:
    t = np.asarray(times, dtype=float)
    m = len(t)
    if random is not None:
        g = dict(random)
        unknown = set(g) - {"sig2_i", "sig2_s", "cov_si", "sig2_e"}
        if unknown:
            raise ConfigurationError(f"random: unknown keys {sorted(unknown)}; use sig2_i, "
                                     "sig2_s, cov_si, sig2_e")
        Z = np.column_stack([np.ones(m), t])
        G = np.array([[g.get("sig2_i", 0.0), g.get("cov_si", 0.0)],
                      [g.get("cov_si", 0.0), g.get("sig2_s", 0.0)]])
        return Z @ G @ Z.T + g.get("sig2_e", 0.0) * np.eye(m)
    if sigma2 is None or rho is None:
        raise ConfigurationError("give sigma2 and rho (exchangeable) or random= (random "
                                 "intercept and slope variances)")
    return float(sigma2) * ((1 - float(rho)) * np.eye(m) + float(rho) * np.ones((m, m)))


def _per_arm_power(var_unit: float, delta, n_per_arm, power, alpha, sides, what):
    """Solve 2 var_unit (z_a + z_b)^2 / delta^2 = n per arm for the missing one."""
    missing = _one_missing(delta=delta, n_per_arm=n_per_arm, power=power)
    za = stats.norm.ppf(1 - alpha / sides)
    if missing == "power":
        n, d = float(n_per_arm), float(delta)
        pw = float(stats.norm.cdf(abs(d) * np.sqrt(n / (2 * var_unit)) - za))
    elif missing == "n_per_arm":
        d, pw = float(delta), _check_prob("power", power)
        if d == 0:
            raise ConfigurationError("delta = 0 has no sample size")
        n = 2 * var_unit * (za + stats.norm.ppf(pw)) ** 2 / d**2
    else:
        n, pw = float(n_per_arm), _check_prob("power", power)
        d = (za + stats.norm.ppf(pw)) * np.sqrt(2 * var_unit / n)
    return AnalyticPower(method=what, n_total=2 * n, n_per_arm=(n, n), power=pw, delta=float(d),
                         alpha=alpha, details={"variance_per_subject": var_unit})


def power_lmm_slope(delta: float | None = None, times: Sequence[float] = (), *,
                    sigma2: float | None = None, rho: float | None = None,
                    random: Mapping[str, float] | None = None, covariance=None,
                    n_per_arm: float | None = None, power: float | None = None,
                    alpha: float = 0.05, alternative: str = "two-sided") -> AnalyticPower:
    r"""Power or sample size for a difference in linear slopes (two arms, equal n).

    .. math::

        n = \frac{2\,(z_{1-\alpha/2} + z_{1-\beta})^2\,[(X^\top V^{-1}X)^{-1}]_{22}}{\delta^2}
        \quad\text{per arm},\qquad X = [1, t],

    Liu & Liang (1997); with exchangeable ``V`` (``sigma2``, ``rho``) this is Diggle et al.
    (2002, eq. 2.4.1) :math:`2(z+z)^2\sigma^2(1-\rho)/(\delta^2\sum_j(t_j-\bar t)^2)`. With
    ``random={"sig2_i", "sig2_s", "cov_si", "sig2_e"}``, ``V = Z G Z' + sig2_e I`` (random
    intercept and slope), as in longpower's ``lmmpower``. ``covariance`` gives ``V`` directly.

    Returns
    -------
    AnalyticPower
        ``n_per_arm`` (unrounded), ``power`` and ``delta``.
    """
    alpha = _check_prob("alpha", alpha)
    sides = _sides(alternative)
    if len(times) < 2:
        raise ConfigurationError("times must hold at least two visit times")
    V = (np.asarray(covariance, float) if covariance is not None
         else _lmm_covariance(times, sigma2, rho, random))
    var_unit = _slope_variance(times, V)
    return _per_arm_power(var_unit, delta, n_per_arm, power, alpha, sides,
                          "LMM slope difference, Diggle et al. (2002) / Liu & Liang (1997)")


def power_time_averaged(delta: float | None = None, n_visits: int = 2, *, sigma2: float = 1.0,
                        rho: float = 0.0, n_per_arm: float | None = None,
                        power: float | None = None, alpha: float = 0.05,
                        alternative: str = "two-sided") -> AnalyticPower:
    r"""Time-averaged difference in means with exchangeable correlation, Diggle et al. (2002,
    eq. 2.4.2): :math:`n = 2(z+z)^2\sigma^2(1+(m-1)\rho)/(m\delta^2)` per arm."""
    alpha = _check_prob("alpha", alpha)
    m = int(n_visits)
    var_unit = float(sigma2) * (1 + (m - 1) * float(rho)) / m
    return _per_arm_power(var_unit, delta, n_per_arm, power, alpha, _sides(alternative),
                          "time-averaged difference, Diggle et al. (2002)")


# ---- survival ---------------------------------------------------------------------------------

def events_needed(hazard_ratio: float, power: float = 0.8, alpha: float = 0.05,
                  allocation: float = 0.5, method: str = "schoenfeld",
                  alternative: str = "two-sided") -> float:
    r"""Number of events for a log-rank / Cox comparison of two arms.

    Schoenfeld (1983): :math:`d = (z_{1-\alpha/2} + z_{1-\beta})^2 / (p(1-p)\log^2 \mathrm{HR})`;
    Freedman (1982): :math:`d = (z_{1-\alpha/2} + z_{1-\beta})^2 (1 + \kappa\,\mathrm{HR})^2 /
    (\kappa (1 - \mathrm{HR})^2)`, :math:`\kappa = p / (1 - p)`.

    Parameters
    ----------
    hazard_ratio : float
        Hazard ratio of the experimental arm vs control (not 1).
    power : float, default 0.8
    alpha : float, default 0.05
        Two-sided unless ``alternative="one-sided"``.
    allocation : float, default 0.5
        Share ``p`` of subjects in the experimental arm.
    method : {"schoenfeld", "freedman"}

    Returns
    -------
    float
        Events needed (unrounded; round up for a protocol).

    Examples
    --------
    >>> from kanalysis.design import events_needed
    >>> round(events_needed(hazard_ratio=0.5, power=0.8), 2)
    65.35
    """
    hr = float(hazard_ratio)
    if not (np.isfinite(hr) and hr > 0 and hr != 1):
        raise ConfigurationError(f"hazard_ratio must be positive and not 1, got {hazard_ratio!r}")
    pw = _check_prob("power", power)
    alpha = _check_prob("alpha", alpha)
    p = _check_prob("allocation", allocation)
    z = stats.norm.ppf(1 - alpha / _sides(alternative)) + stats.norm.ppf(pw)
    m = str(method).lower()
    if m == "schoenfeld":
        return float(z**2 / (p * (1 - p) * np.log(hr) ** 2))
    if m == "freedman":
        k = p / (1 - p)
        return float(z**2 * (1 + k * hr) ** 2 / (k * (1 - hr) ** 2))
    raise ConfigurationError(f"method must be 'schoenfeld' or 'freedman', got {method!r}")


def _event_probability(lam: float, accrual: float, follow_up: float, dropout: float) -> float:
    """P(event observed) under exponential hazard ``lam``, uniform entry over ``accrual``,
    analysis at ``accrual + follow_up``, exponential loss ``dropout`` (Lachin & Foulkes 1986)."""
    h = lam + dropout
    total = accrual + follow_up
    if accrual <= 0:
        surv = np.exp(-h * follow_up)
    else:
        surv = (np.exp(-h * follow_up) - np.exp(-h * total)) / (h * accrual)
    return float(lam / h * (1 - surv))


def sample_size_survival(hazard_control: float, hazard_ratio: float, accrual: float,
                         follow_up: float, dropout: float = 0.0, power: float = 0.8,
                         alpha: float = 0.05, allocation: float = 0.5,
                         alternative: str = "two-sided") -> AnalyticPower:
    r"""Total sample size for comparing exponential hazards, Lachin & Foulkes (1986).

    .. math::

        N = \frac{\Big(z_{1-\alpha/2}\sqrt{\phi(\bar\lambda)(1/Q_1+1/Q_2)}
                 + z_{1-\beta}\sqrt{\phi(\lambda_1)/Q_1 + \phi(\lambda_2)/Q_2}\Big)^2}
                 {(\lambda_1-\lambda_2)^2},\qquad \phi(\lambda) = \lambda^2 / P(\lambda),

    with :math:`P(\lambda)` the probability of observing the event (uniform entry over
    ``accrual``, analysis at ``accrual + follow_up``, exponential loss at rate ``dropout``),
    :math:`Q_1` = ``allocation`` (experimental arm) and :math:`\bar\lambda = Q_1\lambda_1 +
    Q_2\lambda_2`. ``details["events"]`` gives the expected number of events.
    """
    lam2 = float(hazard_control)
    hr = float(hazard_ratio)
    if lam2 <= 0 or hr <= 0 or hr == 1:
        raise ConfigurationError("hazard_control must be positive and hazard_ratio positive, "
                                 "not 1")
    if accrual < 0 or follow_up < 0 or accrual + follow_up <= 0 or dropout < 0:
        raise ConfigurationError("accrual and follow_up must be >= 0 (not both 0), dropout >= 0")
    pw = _check_prob("power", power)
    alpha = _check_prob("alpha", alpha)
    q1 = _check_prob("allocation", allocation)
    q2 = 1 - q1
    lam1 = lam2 * hr
    za = stats.norm.ppf(1 - alpha / _sides(alternative))
    zb = stats.norm.ppf(pw)

    def phi(lam):
        return lam**2 / _event_probability(lam, accrual, follow_up, dropout)

    lbar = q1 * lam1 + q2 * lam2
    n = (za * np.sqrt(phi(lbar) * (1 / q1 + 1 / q2))
         + zb * np.sqrt(phi(lam1) / q1 + phi(lam2) / q2)) ** 2 / (lam1 - lam2) ** 2
    p1 = _event_probability(lam1, accrual, follow_up, dropout)
    p2 = _event_probability(lam2, accrual, follow_up, dropout)
    return AnalyticPower(
        method="exponential survival, Lachin & Foulkes (1986)", n_total=float(n),
        n_per_arm=(float(n * q1), float(n * q2)), power=pw, delta=float(np.log(hr)), alpha=alpha,
        details={"events": float(n * (q1 * p1 + q2 * p2)), "event_probability": (p1, p2),
                 "hazards": (lam1, lam2)})


# ---- two proportions --------------------------------------------------------------------------

def power_two_proportions(p1: float, p2: float, n_per_arm: float | None = None,
                          power: float | None = None, alpha: float = 0.05,
                          alternative: str = "two-sided") -> AnalyticPower:
    r"""Power or sample size per arm for comparing two proportions (equal n).

    .. math::

        1-\beta = \Phi\Big(\frac{\sqrt{n}\,|p_1-p_2| - z_{1-\alpha/2}\sqrt{2\bar p\bar q}}
        {\sqrt{p_1q_1+p_2q_2}}\Big),\qquad \bar p = (p_1+p_2)/2,

    the formula of R's ``power.prop.test`` (``strict = FALSE``; Fleiss, Levin & Paik 2003).
    """
    p1 = _check_prob("p1", p1)
    p2 = _check_prob("p2", p2)
    alpha = _check_prob("alpha", alpha)
    if p1 == p2:
        raise ConfigurationError("p1 and p2 must differ")
    missing = _one_missing(n_per_arm=n_per_arm, power=power)
    za = stats.norm.ppf(1 - alpha / _sides(alternative))
    pbar = (p1 + p2) / 2
    s0 = np.sqrt(2 * pbar * (1 - pbar))
    s1 = np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    d = abs(p1 - p2)
    if missing == "power":
        n = float(n_per_arm)
        pw = float(stats.norm.cdf((np.sqrt(n) * d - za * s0) / s1))
    else:
        pw = _check_prob("power", power)
        n = float(((za * s0 + stats.norm.ppf(pw) * s1) / d) ** 2)
    return AnalyticPower(method="two proportions, normal approximation (power.prop.test)",
                         n_total=2 * n, n_per_arm=(n, n), power=pw, delta=p1 - p2, alpha=alpha,
                         details={"p1": p1, "p2": p2})
