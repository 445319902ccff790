"""Simulated trajectory data for the model benchmark (``bench_models.py``).

Random intercept + slope model over 8 weekly visits with 20 % monotone dropout:

.. math::

    y_{ij} = \\beta_0 + \\beta_1 d_{ij} + \\beta_2 a_i + \\beta_3 d_{ij} a_i + u_{0i} + u_{1i} d_{ij}
             + e_{ij},\\qquad (u_{0i}, u_{1i}) \\sim N(0, G),\\; e_{ij} \\sim N(0, \\sigma^2),

with ``d`` the study day (0, 7, ..., 49), ``a`` the arm (0/1, half of the subjects each) and a
MADRS-like scale. A fifth of the subjects drop out after a uniformly chosen visit 1..7 (they keep
at least the first visit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRUTH = {
    "beta": {"Intercept": 32.0, "day": -0.20, "arm": -1.0, "day:arm": -0.10},
    "G": [[16.0, -0.10], [-0.10, 0.01]],  # intercept SD 4, slope SD 0.1 / day, corr -0.25
    "sigma2": 9.0,
    "days": [0.0, 7.0, 14.0, 21.0, 28.0, 35.0, 42.0, 49.0],
    "dropout": 0.20,
}


def simulate_trajectories(n_subjects: int, seed: int = 2026, truth: dict | None = None
                          ) -> pd.DataFrame:
    """Long data frame ``subject, arm, visit, day, score`` (one row per observed visit).

    ``visit`` is the visit number 1..8; ``subject`` an integer id.
    """
    t = TRUTH if truth is None else truth
    rng = np.random.default_rng(seed)
    days = np.asarray(t["days"], dtype=float)
    n_visits = len(days)
    b = t["beta"]
    arm = (np.arange(n_subjects) % 2).astype(float)
    u = rng.multivariate_normal(np.zeros(2), np.asarray(t["G"]), size=n_subjects)
    mean = (b["Intercept"] + b["day"] * days[None, :] + b["arm"] * arm[:, None]
            + b["day:arm"] * days[None, :] * arm[:, None])
    y = mean + u[:, :1] + u[:, 1:] * days[None, :]
    y = y + rng.normal(0.0, np.sqrt(t["sigma2"]), size=y.shape)
    # Monotone dropout: the number of visits kept by each dropout is uniform on 1..n_visits-1.
    kept = np.full(n_subjects, n_visits)
    drop = rng.random(n_subjects) < t["dropout"]
    kept[drop] = rng.integers(1, n_visits, size=int(drop.sum()))
    observed = np.arange(n_visits)[None, :] < kept[:, None]
    subj, vis = np.nonzero(observed)
    return pd.DataFrame({
        "subject": subj + 1,
        "arm": arm[subj].astype(int),
        "visit": vis + 1,
        "day": days[vis],
        "score": y[subj, vis],
    })
