"""Result classes of the survival estimators, in the common result protocol.

Every class has ``to_frame()`` in the shared vocabulary (:data:`kanalysis.results.RESULT_COLUMNS`),
``summary()`` (text), ``key_numbers()`` (JSON-ready) and ``count_columns``. The tables the
estimators build internally keep the names of R's output (``survival``, ``lower``, ``upper``) for the
plots; ``to_frame()`` is what to publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from kanalysis.durability._curves import _findq, _km_transform
from kanalysis.errors import ConfigurationError
from kanalysis.results import AnalysisResult, SummaryText, json_records

__all__ = ["CoxResult", "CumulativeIncidenceResult", "KaplanMeierResult", "LogrankResult"]


def _pct(level: float) -> str:
    return f"{100 * level:g}%"


@dataclass
class KaplanMeierResult(AnalysisResult):
    """Kaplan-Meier estimates by group.

    Attributes
    ----------
    table : pandas.DataFrame
        The curves as R's ``survfit`` names them, one row per group and distinct time:
        ``<group>, time, n_risk, n_event, n_censor, survival, std_err`` (SE of S, Greenwood),
        ``std_err_log`` (SE of log S), ``lower``, ``upper``. Used by the plots; publish
        :meth:`to_frame`.
    group : str
        Name of the group column (``"group"`` when no grouping was asked for).
    conf_type, conf_level : str, float
        Interval type and level.
    groups : list
        Group levels in order; ``n`` subjects per group.
    """

    table: pd.DataFrame
    group: str
    conf_type: str
    conf_level: float
    groups: list = field(default_factory=list)
    n: dict = field(default_factory=dict)

    count_columns: ClassVar[dict[str, str | None]] = {
        "n": None, "n_risk": "n", "n_event": "n_risk", "n_censor": "n_risk"}

    def _curve(self, level) -> pd.DataFrame:
        return self.table[self.table[self.group] == level]

    def to_frame(self) -> pd.DataFrame:
        """The curves: ``<group>, time, n, n_risk, n_event, n_censor, estimate`` (S(t)),
        ``std_error`` (Greenwood SE of S), ``ci_lower, ci_upper, std_error_log``."""
        t = self.table
        out = pd.DataFrame({
            self.group: t[self.group].to_numpy(),
            "time": t["time"].to_numpy(),
            "n": t[self.group].map(self.n).to_numpy(),
            "n_risk": t["n_risk"].to_numpy(),
            "n_event": t["n_event"].to_numpy(),
            "n_censor": t["n_censor"].to_numpy(),
            "estimate": t["survival"].to_numpy(),
            "std_error": t["std_err"].to_numpy(),
            "ci_lower": t["lower"].to_numpy(),
            "ci_upper": t["upper"].to_numpy(),
            "std_error_log": t["std_err_log"].to_numpy(),
        })
        return out

    def quantile(self, probs: float | Sequence[float] = (0.25, 0.5, 0.75)) -> pd.DataFrame:
        """Survival-time quantiles with CI, as R's ``quantile.survfit``.

        The p-th quantile is the first time the curve drops to 1 - p or below (the midpoint of a
        flat exactly at 1 - p); its CI limits are the same times for the lower and upper CI curves
        (Brookmeyer & Crowley 1982). NaN where a curve never gets that low.

        Returns
        -------
        pandas.DataFrame
            Columns ``<group>, prob, estimate, ci_lower, ci_upper``.
        """
        p = np.atleast_1d(np.asarray(probs, dtype=float))
        if ((p < 0) | (p > 1)).any():
            raise ConfigurationError(f"probs must lie in [0, 1], got {p.tolist()}.")
        rows = []
        for level in self.groups:
            c = self._curve(level)
            x = np.concatenate([[min(0.0, c["time"].min())], c["time"].to_numpy()])
            q = _findq(x, np.concatenate([[0.0], 1 - c["survival"].to_numpy()]), p)
            lo = _findq(x, np.concatenate([[0.0], 1 - c["lower"].to_numpy()]), p)
            hi = _findq(x, np.concatenate([[0.0], 1 - c["upper"].to_numpy()]), p)
            for j, pj in enumerate(p):
                rows.append({self.group: level, "prob": pj, "estimate": q[j], "ci_lower": lo[j],
                             "ci_upper": hi[j]})
        return pd.DataFrame(rows)

    def median(self) -> pd.DataFrame:
        """Median survival time and its CI by group: index = group; ``estimate, ci_lower,
        ci_upper``."""
        q = self.quantile([0.5])
        return q.set_index(self.group)[["estimate", "ci_lower", "ci_upper"]]

    def survival_at(self, days: float | Sequence[float]) -> pd.DataFrame:
        """Survival, CI and number at risk at landmark times (R ``summary(fit, times=)``).

        The estimate at ``t`` is the curve's value at the last distinct time <= t; ``at_risk`` is
        the number with time >= t. Beyond a group's last observed time the estimate is NaN
        (R drops those rows), and ``at_risk`` is 0.

        Returns
        -------
        pandas.DataFrame
            Columns ``<group>, time, estimate, std_error, ci_lower, ci_upper, at_risk``
            (``estimate`` = S(t)).
        """
        days = np.atleast_1d(np.asarray(days, dtype=float))
        frames = []
        names = {"survival": "estimate", "std_err": "std_error", "lower": "ci_lower",
                 "upper": "ci_upper"}
        for level in self.groups:
            c = self._curve(level)
            times = c["time"].to_numpy()
            pos = np.searchsorted(times, days, side="right") - 1
            res = pd.DataFrame({self.group: level, "time": days})
            for col, name in names.items():
                v = np.concatenate([[1.0 if col != "std_err" else 0.0], c[col].to_numpy()])
                res[name] = v[pos + 1]
            # number at risk at t = n_risk of the first distinct time >= t
            nxt = np.searchsorted(times, days, side="left")
            risk = np.concatenate([c["n_risk"].to_numpy(), [0]])
            res["at_risk"] = risk[nxt].astype(int)
            beyond = days > times.max()
            res.loc[beyond, list(names.values())] = np.nan
            frames.append(res)
        out = pd.concat(frames, ignore_index=True)
        out.attrs["count_columns"] = {"at_risk": None}
        return out

    def at_risk(self, days: float | Sequence[float]) -> pd.DataFrame:
        """Numbers at risk by group (rows) at the given times (columns)."""
        s = self.survival_at(days)
        return s.pivot(index=self.group, columns="time", values="at_risk")

    def by_group(self) -> pd.DataFrame:
        """One row per group: ``n, n_event`` and the median (``estimate, ci_lower, ci_upper``)."""
        med = self.median()
        ev = self.table.groupby(self.group)["n_event"].sum()
        out = pd.DataFrame({"n": pd.Series(self.n), "n_event": ev}).join(med)
        out.index.name = self.group
        return out

    def summary(self) -> SummaryText:
        """Text: the interval type and, per group, n, events and the median with its CI."""
        head = (f"Kaplan-Meier by {self.group} ({self.conf_type} CI, {_pct(self.conf_level)}); "
                "estimate = median time")
        return SummaryText(head + "\n" + self.by_group().to_string())

    def key_numbers(self) -> dict[str, Any]:
        """Per group: n, events and the median time with its CI."""
        return {"conf_level": self.conf_level, "conf_type": self.conf_type,
                "median": json_records(self.by_group().reset_index())}


@dataclass
class LogrankResult(AnalysisResult):
    """Log-rank test.

    Attributes
    ----------
    table : pandas.DataFrame
        Per group: ``<group>, n, observed, expected, o_minus_e``.
    chisq, df, p : float, int, float
        The test (``statistic`` and ``p_value`` are the same numbers under the shared names).
    stratified_by : list
        Strata columns.
    """

    table: pd.DataFrame
    chisq: float
    df: int
    p: float
    stratified_by: list

    count_columns: ClassVar[dict[str, str | None]] = {"n": None, "n_event": "n"}

    @property
    def statistic(self) -> float:
        return self.chisq

    @property
    def p_value(self) -> float:
        return self.p

    def to_frame(self) -> pd.DataFrame:
        """One row: ``test, statistic`` (chi-square), ``df, p_value, n, n_event``."""
        return pd.DataFrame({
            "test": ["logrank" + (" (stratified)" if self.stratified_by else "")],
            "statistic": [self.chisq], "df": [self.df], "p_value": [self.p],
            "n": [int(self.table["n"].sum())], "n_event": [int(self.table["observed"].sum())],
        })

    def summary(self) -> SummaryText:
        strata = f", stratified by {self.stratified_by}" if self.stratified_by else ""
        return SummaryText(
            f"Log-rank test{strata}: chi-square = {self.chisq:.4g} on {self.df} df, "
            f"p = {self.p:.4g}\n" + self.table.to_string(index=False))

    def key_numbers(self) -> dict[str, Any]:
        return {"statistic": self.chisq, "df": int(self.df), "p_value": self.p,
                "groups": json_records(self.table)}


@dataclass
class CoxResult(AnalysisResult):
    """A fitted Cox proportional-hazards model.

    Attributes
    ----------
    coef_table : pandas.DataFrame
        Indexed by term: ``coef, se, hr, lower, upper, z, p`` (Wald, as R ``summary(coxph)``);
        :meth:`to_frame` gives the same in the shared vocabulary.
    loglik, loglik_null : float
        Partial log-likelihood at the estimate and at beta = 0.
    ties : str
        ``"efron"`` or ``"breslow"``.
    n, n_events : int
        Rows used and events.
    terms : dict
        Formula term -> its design columns.
    """

    coef_table: pd.DataFrame
    loglik: float
    loglik_null: float
    ties: str
    n: int
    n_events: int
    terms: dict
    conf_level: float
    _data: dict = field(repr=False, default_factory=dict)

    count_columns: ClassVar[dict[str, str | None]] = {"n": None, "n_event": "n"}

    @property
    def hr(self) -> pd.Series:
        """Hazard ratios by term."""
        return self.coef_table["hr"]

    def to_frame(self) -> pd.DataFrame:
        """By term: ``estimate`` (log HR), ``std_error, statistic`` (Wald z), ``p_value``,
        ``ci_lower, ci_upper`` (log HR), ``hr, hr_lower, hr_upper, n, n_event``."""
        c = self.coef_table
        return pd.DataFrame({
            "term": c.index.to_numpy(),
            "estimate": c["coef"].to_numpy(),
            "std_error": c["se"].to_numpy(),
            "statistic": c["z"].to_numpy(),
            "p_value": c["p"].to_numpy(),
            "ci_lower": np.log(c["lower"].to_numpy()),
            "ci_upper": np.log(c["upper"].to_numpy()),
            "hr": c["hr"].to_numpy(),
            "hr_lower": c["lower"].to_numpy(),
            "hr_upper": c["upper"].to_numpy(),
            "n": self.n,
            "n_event": self.n_events,
        })

    def lr_test(self) -> pd.DataFrame:
        """Likelihood-ratio test of all coefficients = 0 (R ``summary(coxph)$logtest``):
        ``statistic, df, p_value``."""
        chisq = 2 * (self.loglik - self.loglik_null)
        df = len(self.coef_table)
        return pd.DataFrame({"statistic": [chisq], "df": [df],
                             "p_value": [stats.chi2.sf(chisq, df)]})

    def ph_test(self, transform: str = "km") -> pd.DataFrame:
        """Test of proportional hazards from scaled Schoenfeld residuals (R ``cox.zph``).

        For each term the score test of adding ``x * g(t)`` to the model at the fitted
        coefficients, as R's ``cox.zph`` computes it since survival 3.0, with ``g`` the
        Kaplan-Meier transform ``1 - S(t-)`` (``transform="km"``, R's default), ``"identity"``,
        ``"rank"`` or ``"log"``, centred at its mean over events. The last row, ``GLOBAL``,
        tests all terms together.

        Returns
        -------
        pandas.DataFrame
            Indexed by term (plus ``GLOBAL``): ``chisq, df, p``.

        References
        ----------
        Grambsch & Therneau (1994) Biometrika 81:515-526; R ``survival::cox.zph``.
        """
        return _zph(self, transform)

    def summary(self) -> SummaryText:
        lr = self.lr_test().iloc[0]
        lines = [
            f"Cox proportional hazards ({self.ties} ties): n = {self.n}, events = {self.n_events}",
            f"  likelihood-ratio test: {lr['statistic']:.4g} on {int(lr['df'])} df, "
            f"p = {lr['p_value']:.4g}",
            f"  hazard ratios with {_pct(self.conf_level)} Wald CIs:",
            self.to_frame()[["term", "hr", "hr_lower", "hr_upper", "p_value"]].to_string(
                index=False),
        ]
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        return {"n": self.n, "n_event": self.n_events, "ties": self.ties,
                "conf_level": self.conf_level, "loglik": self.loglik,
                "terms": json_records(self.to_frame().drop(columns=["n", "n_event"]))}


def _zph(fit: CoxResult, transform: str) -> pd.DataFrame:
    d = fit._data
    t, e, s, x, beta, skey = d["t"], d["e"], d["s"], d["x"], d["beta"], d["strata"]
    if transform == "km":
        gt = _km_transform(t, e, s)
    elif transform == "identity":
        gt = t.copy()
    elif transform == "rank":
        gt = stats.rankdata(t)
    elif transform == "log":
        gt = np.log(t)
    else:
        raise ConfigurationError(
            f"transform must be 'km', 'identity', 'rank' or 'log', got {transform!r}."
        )
    g = gt - gt[e == 1].mean()
    p = x.shape[1]
    risk = np.exp(x @ beta)
    start = s if s is not None else np.full(len(t), -np.inf)
    skey = skey if skey is not None else np.zeros(len(t))
    u_g = np.zeros(p)
    imat = np.zeros((2 * p, 2 * p))
    efron = fit.ties == "efron"
    for st in pd.unique(skey):
        ms = skey == st
        ts, es, ss, xs, rs, gs = t[ms], e[ms], start[ms], x[ms], risk[ms], g[ms]
        for u in np.unique(ts[es == 1]):
            at_risk = (ss < u) & (ts >= u)
            dead = at_risk & (ts == u) & (es == 1)
            nd = int(dead.sum())
            gk = gs[dead][0]  # every death at u has the same g(u)
            w, xr = rs[at_risk], xs[at_risk]
            s0, s1, s2 = w.sum(), w @ xr, (xr * w[:, None]).T @ xr
            wd, xd = rs[dead], xs[dead]
            d0, d1, d2 = wd.sum(), wd @ xd, (xd * wd[:, None]).T @ xd
            fracs = np.arange(nd) / nd if efron else np.zeros(nd)
            vsum = np.zeros((p, p))
            xbar_sum = np.zeros(p)
            for f in fracs:
                a0, a1, a2 = s0 - f * d0, s1 - f * d1, s2 - f * d2
                xbar = a1 / a0
                xbar_sum += xbar
                vsum += a2 / a0 - np.outer(xbar, xbar)
            u_g += gk * (xd.sum(0) - xbar_sum)
            imat[:p, :p] += vsum
            imat[:p, p:] += gk * vsum
            imat[p:, :p] += gk * vsum
            imat[p:, p:] += gk * gk * vsum
    cols = list(fit.coef_table.index)
    rows, names = [], []
    for term, tcols in fit.terms.items():
        jj = [cols.index(c) for c in tcols]
        kk = list(range(p)) + [p + j for j in jj]
        uu = np.concatenate([np.zeros(p), u_g[jj]])
        chisq = float(uu @ np.linalg.solve(imat[np.ix_(kk, kk)], uu))
        rows.append((chisq, len(jj)))
        names.append(term)
    uu = np.concatenate([np.zeros(p), u_g])
    rows.append((float(uu @ np.linalg.solve(imat, uu)), p))
    names.append("GLOBAL")
    out = pd.DataFrame(rows, columns=["chisq", "df"], index=pd.Index(names, name="term"))
    out["p"] = stats.chi2.sf(out["chisq"], out["df"])
    return out


@dataclass
class CumulativeIncidenceResult(AnalysisResult):
    """Aalen-Johansen cumulative incidence by group.

    ``table`` has one row per group and distinct time: ``<group>, time, n_risk``, the number of
    events of each cause (``n_<cause>``), ``survival`` (free of every cause) and
    ``cif_<cause>`` for each cause, each with ``se_``, ``lower_`` and ``upper_`` columns
    (infinitesimal-jackknife SE, as R). :meth:`to_frame` gives it long, one row per cause.
    """

    table: pd.DataFrame
    group: str
    causes: dict
    groups: list
    conf_level: float = 0.95

    count_columns: ClassVar[dict[str, str | None]] = {"n_risk": None, "n_event": "n_risk"}

    def at(self, days: float | Sequence[float]) -> pd.DataFrame:
        """Cumulative incidences at landmark days (value at the last time <= day)."""
        days = np.atleast_1d(np.asarray(days, dtype=float))
        frames = []
        cols = ["survival"] + [f"cif_{c}" for c in self.causes.values()]
        for level in self.groups:
            c = self.table[self.table[self.group] == level]
            pos = np.searchsorted(c["time"].to_numpy(), days, side="right") - 1
            res = pd.DataFrame({self.group: level, "time": days})
            for col in cols:
                start = 1.0 if col == "survival" else 0.0
                res[col] = np.concatenate([[start], c[col].to_numpy()])[pos + 1]
            frames.append(res)
        return pd.concat(frames, ignore_index=True)

    def to_frame(self) -> pd.DataFrame:
        """Long: ``<group>, cause, time, n_risk, n_event, estimate`` (F_k(t)), ``std_error,
        ci_lower, ci_upper``."""
        t = self.table
        frames = []
        for name in self.causes.values():
            frames.append(pd.DataFrame({
                self.group: t[self.group].to_numpy(), "cause": name,
                "time": t["time"].to_numpy(), "n_risk": t["n_risk"].to_numpy(),
                "n_event": t[f"n_{name}"].to_numpy(), "estimate": t[f"cif_{name}"].to_numpy(),
                "std_error": t[f"se_{name}"].to_numpy(),
                "ci_lower": t[f"lower_{name}"].to_numpy(),
                "ci_upper": t[f"upper_{name}"].to_numpy(),
            }))
        return pd.concat(frames, ignore_index=True)

    def final(self) -> pd.DataFrame:
        """The last row of each group and cause of :meth:`to_frame` (incidence at the end)."""
        f = self.to_frame()
        return f.groupby([self.group, "cause"], sort=False).tail(1).reset_index(drop=True)

    def summary(self) -> SummaryText:
        head = (f"Cumulative incidence (Aalen-Johansen) by {self.group}, causes "
                f"{list(self.causes.values())}; at the last time:")
        cols = [self.group, "cause", "time", "estimate", "ci_lower", "ci_upper"]
        return SummaryText(head + "\n" + self.final()[cols].to_string(index=False))

    def key_numbers(self) -> dict[str, Any]:
        return {"conf_level": self.conf_level, "final": json_records(self.final())}
