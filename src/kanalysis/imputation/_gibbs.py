r"""Gibbs data augmentation for the multivariate normal model (the :class:`Bayes` method).

.. math::

    y_i \sim N(X_i\beta, \Sigma_{g(i)}),\quad p(\beta) \propto 1,\quad
    \Sigma_g \sim IW(\nu_0 = t + 2, \Psi_g = \hat\Sigma_g^{REML}).

One iteration: (1) draw every value missing from the fit from its conditional normal given the
subject's fitted values and :math:`(\beta, \Sigma)`; (2) draw :math:`\beta` from
:math:`N(\hat\beta_{GLS}, (\sum_i X_i'\Sigma_{g(i)}^{-1}X_i)^{-1})` on the completed data;
(3) draw each :math:`\Sigma_g` from :math:`IW(\nu_0 + n_g, \Psi_g + \sum_{i\in g} r_i r_i')`
with :math:`r_i = y_i - X_i\beta`. The chain starts at the REML estimate.

References
----------
Schafer JL (1997). Analysis of Incomplete Multivariate Data, ch. 5. Chapman & Hall.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from kanalysis.imputation._fit import Params


def _patterns(mask: np.ndarray, cov_group: np.ndarray):
    t = mask.shape[1]
    bits = (mask * (1 << np.arange(t))).sum(1) + cov_group * (1 << t)
    out = []
    for key in np.unique(bits):
        idx = np.flatnonzero(bits == key)
        o = mask[idx[0]]
        if o.all():
            continue
        out.append((int(cov_group[idx[0]]), idx, o, ~o))
    return out


def gibbs(Y, X, cov_group, n_groups, start: Params, *, n_samples, burn_in, thin, seed,
          progress=False) -> list[Params]:
    """Posterior draws of ``(beta, Sigma_g)``; ``Y`` has NaN where a value is not in the fit."""
    rng = np.random.default_rng(seed)
    n, t, p = X.shape
    mask = ~np.isnan(Y)
    pats = _patterns(mask, cov_group)
    nu0 = t + 2
    psi = np.array(start.sigmas, dtype=float)
    beta = np.array(start.beta, dtype=float)
    sig = psi.copy()
    Yc = np.where(mask, Y, 0.0)
    members = [np.flatnonzero(cov_group == g) for g in range(n_groups)]
    total = burn_in + n_samples * thin
    out: list[Params] = []
    it_range = range(total)
    if progress and total >= 2000:
        from kanalysis.parallel import progress_bar

        it_range = progress_bar(it_range, desc="Gibbs", leave=False)
    for it in it_range:
        mu = X @ beta
        for g, idx, o, m in pats:
            S = sig[g]
            mu_i = mu[idx]
            if o.any():
                A = np.linalg.solve(S[np.ix_(o, o)], S[np.ix_(o, m)]).T
                cond = mu_i[:, m] + (Y[idx][:, o] - mu_i[:, o]) @ A.T
                C = S[np.ix_(m, m)] - A @ S[np.ix_(o, m)]
            else:
                cond, C = mu_i[:, m], S[np.ix_(m, m)]
            L = np.linalg.cholesky(0.5 * (C + C.T))
            vals = cond + rng.standard_normal((len(idx), int(m.sum()))) @ L.T
            sub = Yc[idx]
            sub[:, m] = vals
            Yc[idx] = sub
        XtSX = np.zeros((p, p))
        XtSy = np.zeros(p)
        for g in range(n_groups):
            Si = np.linalg.inv(sig[g])
            Xg, yg = X[members[g]], Yc[members[g]]
            SX = np.einsum("tu,nup->ntp", Si, Xg)
            XtSX += np.einsum("ntp,ntq->pq", Xg, SX)
            XtSy += np.einsum("ntp,nt->p", SX, yg)
        V = np.linalg.inv(0.5 * (XtSX + XtSX.T))
        bhat = V @ XtSy
        beta = bhat + np.linalg.cholesky(0.5 * (V + V.T)) @ rng.standard_normal(p)
        R = Yc - X @ beta
        for g in range(n_groups):
            Rg = R[members[g]]
            scale = psi[g] + Rg.T @ Rg
            sig[g] = stats.invwishart.rvs(df=nu0 + len(members[g]), scale=scale,
                                          random_state=rng)
        if it >= burn_in and (it - burn_in + 1) % thin == 0:
            out.append(Params(beta=beta.copy(), sigmas=np.array(sig).reshape(psi.shape).copy()))
    return out
