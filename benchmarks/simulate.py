r"""Simulated data for the model benchmark (``bench_models.py``): four designs.

Every design follows the same random intercept + slope model on a MADRS-like scale,

.. math::

    y_{ij} = \beta_0 + \beta_1 d_{ij} + \beta_2 a_i + \beta_3 d_{ij} a_i + u_{0i} + u_{1i} d_{ij}
             + e_{ij},\qquad (u_{0i}, u_{1i}) \sim N(0, G),\; e_{ij} \sim N(0, \sigma^2),

with ``d`` the study day and ``a`` the arm (0/1, alternating subjects). They differ in when the
visits happen:

``balanced``
    8 visits on days 0, 7, ..., 49 for everyone; a fifth of the subjects drop out after a
    uniformly chosen visit (completely at random). All subjects share a handful of visit
    patterns, the best case for any engine that groups subjects by pattern.
``jittered``
    The same weekly schedule, but each post-baseline visit happens up to 1.5 days early or late
    (uniform), as within a trial's visit windows; dropout is at random (MAR): after each
    post-baseline visit a subject leaves with a probability that increases with the score just
    observed, calibrated so that about 20 % of the subjects drop out. Every subject has its own
    visit days.
``registry``
    A clinic-like registry: 3-30 visits per subject (uniform), the first on day 0 and the gaps
    between visits exponential with mean 45 days (follow-up of up to several years), no shared
    schedule. The slope SD is per day, so it is reduced tenfold to keep trajectories plausible.
    ``visit`` is an analysis window (ADaM-style: 90-day windows, the first record in each window,
    windows 1-8 only), used by the MMRM fits; the LMM fits use every row and ``day``.
``bcva``
    Shaped like R mmrm's ``bcva_data``: 1,000 subjects x 10 visits (``AVISIT`` VIS01..VIS10),
    ``BCVA_CHG ~ BCVA_BL + ARMCD * AVISIT + RACE``, unstructured visit covariance (true
    covariance an AR(1)-like correlation 0.8^|j-k| with SDs rising from 3 to 6), missing
    visits at random (about 14 % of the rows, as in bcva_data's 8,605 of 10,000).

Columns: ``subject`` (int), ``arm`` (0/1), ``visit`` (int, 1-based), ``day`` (float) and
``score``; the ``bcva`` design has ``USUBJID, ARMCD, AVISIT, RACE, BCVA_BL, BCVA_CHG``.
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

DESIGNS = ("balanced", "jittered", "registry")


def _outcome(rng, subj, day, arm, t, slope_scale=1.0):
    b = t["beta"]
    G = np.asarray(t["G"], float)
    G = G * np.array([[1.0, slope_scale], [slope_scale, slope_scale**2]])
    n = int(subj.max()) + 1
    u = rng.multivariate_normal(np.zeros(2), G, size=n)
    a = arm[subj]
    mean = b["Intercept"] + b["day"] * slope_scale * day + b["arm"] * a \
        + b["day:arm"] * slope_scale * day * a
    return mean + u[subj, 0] + u[subj, 1] * day + rng.normal(0.0, np.sqrt(t["sigma2"]),
                                                             size=len(day))


def _frame(subj, arm, visit, day, score):
    return pd.DataFrame({"subject": subj + 1, "arm": arm[subj].astype(int), "visit": visit,
                         "day": day, "score": score})


def simulate_balanced(n_subjects: int, seed: int = 2026, truth: dict | None = None
                      ) -> pd.DataFrame:
    """8 weekly visits shared by all subjects, 20 % dropout completely at random."""
    t = TRUTH if truth is None else truth
    rng = np.random.default_rng(seed)
    days = np.asarray(t["days"], dtype=float)
    n_visits = len(days)
    arm = (np.arange(n_subjects) % 2).astype(float)
    kept = np.full(n_subjects, n_visits)
    drop = rng.random(n_subjects) < t["dropout"]
    kept[drop] = rng.integers(1, n_visits, size=int(drop.sum()))
    subj, vis = np.nonzero(np.arange(n_visits)[None, :] < kept[:, None])
    day = days[vis]
    score = _outcome(rng, subj, day, arm, t)
    return _frame(subj, arm, vis + 1, day, score)


def simulate_jittered(n_subjects: int, seed: int = 2026, truth: dict | None = None,
                      jitter: float = 1.5) -> pd.DataFrame:
    """Weekly schedule with visit days jittered by up to +-``jitter`` days; MAR dropout."""
    t = TRUTH if truth is None else truth
    rng = np.random.default_rng(seed)
    days = np.asarray(t["days"], dtype=float)
    n_visits = len(days)
    arm = (np.arange(n_subjects) % 2).astype(float)
    subj = np.repeat(np.arange(n_subjects), n_visits)
    vis = np.tile(np.arange(n_visits), n_subjects)
    day = days[vis] + np.where(vis > 0, rng.uniform(-jitter, jitter, size=len(vis)), 0.0)
    score = _outcome(rng, subj, day, arm, t).reshape(n_subjects, n_visits)
    # MAR dropout: leave after visit j (j < last) with hazard c * expit((y_ij - 30) / 4); the
    # constant c is set by bisection so that the share of subjects who drop out is t["dropout"].
    risk = 1.0 / (1.0 + np.exp(-(score[:, 1:-1] - 30.0) / 4.0))
    draws = rng.random(risk.shape)

    def dropped(c):
        leave = draws < c * risk
        return leave.any(axis=1), leave

    lo, hi = 0.0, 1.0
    for _ in range(40):
        c = 0.5 * (lo + hi)
        if dropped(c)[0].mean() < t["dropout"]:
            lo = c
        else:
            hi = c
    _, leave = dropped(0.5 * (lo + hi))
    # number of visits kept: up to and including the first visit after which the subject left
    first = np.where(leave.any(axis=1), leave.argmax(axis=1) + 2, n_visits)
    keep = (np.arange(n_visits)[None, :] < first[:, None]).ravel()
    return _frame(subj[keep], arm, vis[keep] + 1, day[keep], score.ravel()[keep])


def simulate_registry(n_subjects: int, seed: int = 2026, truth: dict | None = None,
                      min_visits: int = 3, max_visits: int = 30, mean_gap: float = 45.0,
                      window: float = 90.0, n_windows: int = 8) -> pd.DataFrame:
    """Clinic registry: 3-30 visits per subject at irregular days over years."""
    t = TRUTH if truth is None else truth
    rng = np.random.default_rng(seed)
    arm = (np.arange(n_subjects) % 2).astype(float)
    m = rng.integers(min_visits, max_visits + 1, size=n_subjects)
    subj = np.repeat(np.arange(n_subjects), m)
    starts = np.r_[0, np.cumsum(m)[:-1]]
    gaps = rng.exponential(mean_gap, size=len(subj))
    gaps[starts] = 0.0
    day = np.cumsum(gaps)
    day -= np.repeat(day[starts], m)
    score = _outcome(rng, subj, day, arm, t, slope_scale=0.1)
    # ADaM-style analysis window: first record of each 90-day window
    visit = (day // window).astype(np.int64) + 1
    first_in_window = np.r_[True, (subj[1:] != subj[:-1]) | (visit[1:] != visit[:-1])]
    visit = np.where(first_in_window & (visit <= n_windows), visit, 0)
    out = _frame(subj, arm, visit, day, score)
    return out


def simulate(design: str, n_subjects: int, seed: int = 2026) -> pd.DataFrame:
    """Data of one design (``balanced``, ``jittered``, ``registry``)."""
    if design == "balanced":
        return simulate_balanced(n_subjects, seed)
    if design == "jittered":
        return simulate_jittered(n_subjects, seed)
    if design == "registry":
        return simulate_registry(n_subjects, seed)
    raise ValueError(f"unknown design {design!r}; choose from {DESIGNS}")


def simulate_bcva(n_subjects: int = 1000, seed: int = 2026, n_visits: int = 10,
                  missing: float = 0.14) -> pd.DataFrame:
    """BCVA-shaped MMRM data (R mmrm's bcva_data layout, simulated)."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), n_visits)
    vis = np.tile(np.arange(n_visits), n_subjects)
    arm = rng.integers(0, 2, n_subjects)
    race = rng.choice(3, size=n_subjects, p=[0.4, 0.35, 0.25])
    bl = rng.normal(75.0, 10.0, n_subjects)
    sd = np.linspace(3.0, 6.0, n_visits)
    lag = np.abs(np.arange(n_visits)[:, None] - np.arange(n_visits)[None, :])
    Sigma = 0.8**lag * np.outer(sd, sd)
    e = rng.multivariate_normal(np.zeros(n_visits), Sigma, size=n_subjects).ravel()
    trend = 0.5 * (vis + 1)
    effect = np.where(arm[subj] == 1, 0.25 * (vis + 1), 0.0)
    y = 2.0 + 0.02 * (bl[subj] - 75.0) + trend + effect + np.array([0.0, 0.8, -0.6])[race[subj]] + e
    keep = rng.random(len(y)) >= missing
    keep[vis == 0] = True  # everyone has the first visit
    names = np.array([f"VIS{v:02d}" for v in range(1, n_visits + 1)])
    return pd.DataFrame({
        "USUBJID": subj[keep] + 1,
        "ARMCD": np.where(arm[subj[keep]] == 1, "TRT", "CTL"),
        "AVISIT": names[vis[keep]],
        "RACE": np.array(["Asian", "Black", "White"])[race[subj[keep]]],
        "BCVA_BL": bl[subj[keep]],
        "BCVA_CHG": y[keep],
    })


def simulate_trajectories(n_subjects: int, seed: int = 2026, truth: dict | None = None
                          ) -> pd.DataFrame:
    """The balanced design (kept under its old name)."""
    return simulate_balanced(n_subjects, seed, truth)
