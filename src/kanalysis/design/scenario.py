r"""Data-generating scenarios for simulated trials.

Two kinds, with the same small interface (``arms``, ``control``, ``key()``, ``null()``,
``truth(analysis)``, ``assumptions()``, ``draw(root_seed, replicate, n_max)``):

* :class:`Scenario`: multivariate normal outcomes by visit and arm,

  .. math:: y_i \sim N(\mu_{a(i)}, \Sigma_{a(i)}),

  with per-arm visit means, a visit covariance (a matrix, or SDs and a correlation structure:
  ``cs``, ``ar1`` or a matrix), and retention per visit (shared or per arm) under monotone
  MCAR dropout (subject *i* is seen at visit *j* when :math:`U_i < r_{a(i)j}`, so the expected
  share observed is exactly :math:`r_{aj}`) or MAR dropout (a discrete hazard at each visit
  whose log-odds rise by ``mar_slope`` per SD of the previous observed value; its baseline
  hazard is the MCAR one, so retention matches approximately).
* :class:`SyntheticScenario` (from :meth:`Scenario.from_synthetic`): the kanalysis synthetic
  generator (:mod:`kanalysis.synthetic`) with its published defaults and any of its parameters
  changed, drawn in blocks of subjects.

Nested sample sizes (common random numbers): subject *k* of an arm gets the same data whatever
the largest sample size drawn, because every random quantity has its own stream
(:class:`numpy.random.SeedSequence` keyed by the scenario, the replicate, the arm and the
quantity; blocks of subjects for the synthetic generator), and the first ``n`` subjects per arm
form the trial of size ``n``. This is how simr's ``powerCurve`` reuses one simulated dataset per
replicate across sample sizes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from kanalysis.errors import ConfigurationError

__all__ = ["Scenario", "SyntheticScenario", "TrialData", "load_scenario"]

DROPOUT_MODELS = ("monotone", "mar")


@dataclass
class TrialData:
    """One simulated replicate of the largest trial; ``subset(n)`` gives the first n per arm.

    ``y`` has one row per subject (arms stacked in ``arms`` order, ``n_max`` each) and one
    column per visit, NaN where not observed.
    """

    y: np.ndarray
    arm: np.ndarray  # arm index per row
    n_max: int
    visits: list
    times: np.ndarray
    arms: list

    def rows(self, n: int) -> np.ndarray:
        """Row indices of the first ``n`` subjects of each arm."""
        if n > self.n_max:
            raise ConfigurationError(f"n = {n} exceeds the {self.n_max} subjects drawn per arm")
        return np.concatenate([np.flatnonzero(self.arm == a)[:n] for a in range(len(self.arms))])

    def long(self, n: int) -> pd.DataFrame:
        """Long data of the first ``n`` subjects per arm: subject, arm, trt, visit, time, y
        (observed rows only)."""
        idx = self.rows(n)
        y = self.y[idx]
        J = y.shape[1]
        subj = np.repeat(idx, J)
        frame = pd.DataFrame({
            "subject": subj, "arm": np.asarray(self.arms, dtype=object)[self.arm[subj]],
            "trt": (self.arm[subj] != 0).astype(float),
            "visit": pd.Categorical(np.tile(np.asarray(self.visits, dtype=object), len(idx)),
                                    categories=list(self.visits), ordered=True),
            "time": np.tile(self.times, len(idx)), "y": y.ravel(),
        })
        return frame[np.isfinite(frame["y"].to_numpy())].reset_index(drop=True)


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, np.ndarray):
        return _canonical(obj.tolist())
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return float(repr(obj)) if np.isfinite(obj) else str(obj)
    return obj


def _key_words(spec: Mapping[str, Any]) -> tuple[int, ...]:
    """Four 32-bit words of the SHA-256 of the canonical JSON of ``spec``."""
    digest = hashlib.sha256(json.dumps(_canonical(spec), sort_keys=True).encode()).digest()
    return tuple(int.from_bytes(digest[4 * i: 4 * i + 4], "little") for i in range(4))


def _stream(root_seed: int, words: Sequence[int]) -> np.random.Generator:
    """An independent generator for the integer key ``words`` under ``root_seed``
    (numpy's SeedSequence spawn-key mechanism)."""
    return np.random.default_rng(np.random.SeedSequence(int(root_seed),
                                                        spawn_key=tuple(int(w) for w in words)))


def _correlation(structure, J: int) -> np.ndarray:
    if isinstance(structure, Mapping):
        kind = str(structure.get("structure", "cs")).lower()
        rho = float(structure.get("rho", 0.0))
    elif isinstance(structure, str):
        kind, _, val = structure.partition(":")
        kind, rho = kind.strip().lower(), float(val or 0.0)
    elif np.ndim(structure) == 0:
        kind, rho = "cs", float(structure)
    else:
        R = np.asarray(structure, dtype=float)
        if R.shape != (J, J):
            raise ConfigurationError(f"correlation matrix must be {J} x {J}, got {R.shape}")
        return R
    if not -1 < rho < 1:
        raise ConfigurationError(f"correlation rho must lie in (-1, 1), got {rho}")
    idx = np.arange(J)
    if kind in ("cs", "exchangeable", "compound symmetry"):
        R = np.full((J, J), rho)
        np.fill_diagonal(R, 1.0)
        return R
    if kind == "ar1":
        return rho ** np.abs(idx[:, None] - idx[None, :])
    raise ConfigurationError(f"correlation structure must be 'cs', 'ar1' or a matrix, got {kind!r}")


class Scenario:
    """A two-arm trial with normal outcomes at J visits.

    Parameters
    ----------
    visits : sequence
        Visit labels, in order (post-randomisation visits; the outcome is typically the change
        from baseline).
    means : dict
        ``{arm: [mean at each visit]}`` for exactly two arms.
    covariance : (J, J) array_like or dict, optional
        Visit covariance (one for both arms, or ``{arm: matrix}``). Alternatively give ``sd``
        and ``correlation``.
    sd : float or sequence, optional
        Standard deviation (one, or per visit).
    correlation : float, str, dict or (J, J) array_like, optional
        A float is compound symmetry; ``"ar1:0.6"`` or ``{"structure": "ar1", "rho": 0.6}``;
        or a matrix.
    retention : sequence or dict, optional
        Share observed at each visit, non-increasing (monotone dropout), shared or
        ``{arm: [...]}``. Default: complete data.
    dropout : {"monotone", "mar"}
        MCAR monotone dropout, or MAR dropout driven by the previous observed value.
    mar_slope : float, default 0.5
        MAR only: log-odds of dropping out per SD of the previous value above its arm mean
        (positive: worse scores, on a scale where higher is worse, drop out more).
    control : str, optional
        Control arm (default: the first arm in ``means``); effects are other minus control.
    landmark : optional
        Visit of the primary contrast (default: the last visit).
    times : sequence of float, optional
        Numeric visit times for slope analyses (default: numeric visit labels, else 0..J-1).
    name : str
        Label used in tables and figures.
    sources : dict, optional
        Where each assumption comes from (``{"means": "Murrough 2013", ...}``), listed in
        reports.
    """

    kind = "normal"

    def __init__(self, visits: Sequence, means: Mapping[str, Sequence[float]], covariance=None,
                 *, sd=None, correlation=None, retention=None, dropout: str = "monotone",
                 mar_slope: float = 0.5, control: str | None = None, landmark=None,
                 times: Sequence[float] | None = None, name: str = "scenario",
                 sources: Mapping[str, str] | None = None):
        self.visits = list(visits)
        J = len(self.visits)
        if J < 1 or len(set(map(str, self.visits))) != J:
            raise ConfigurationError(f"scenario: visits must be distinct labels, got {visits!r}")
        if not isinstance(means, Mapping) or len(means) != 2:
            raise ConfigurationError("scenario: means must give exactly two arms, {arm: [...]}")
        self.arms = [str(a) for a in means]
        self.control = str(control) if control is not None else self.arms[0]
        if self.control not in self.arms:
            raise ConfigurationError(f"scenario: control {control!r} is not one of {self.arms}")
        self.arms = [self.control] + [a for a in self.arms if a != self.control]
        self.means = {}
        for a in self.arms:
            m = np.asarray(means[a], dtype=float)
            if m.shape != (J,) or not np.all(np.isfinite(m)):
                raise ConfigurationError(f"scenario: means[{a!r}] must hold {J} finite values "
                                         f"(one per visit), got {list(np.ravel(m))}")
            self.means[a] = m
        self.covariance = self._covariances(covariance, sd, correlation, J)
        self.retention = self._retentions(retention, J)
        if dropout not in DROPOUT_MODELS:
            raise ConfigurationError(f"scenario: dropout must be one of {DROPOUT_MODELS}, got "
                                     f"{dropout!r}")
        self.dropout = dropout
        self.mar_slope = float(mar_slope)
        self.landmark = self.visits[-1] if landmark is None else landmark
        if self.landmark not in self.visits:
            raise ConfigurationError(f"scenario: landmark {landmark!r} is not a visit "
                                     f"({self.visits})")
        if times is None:
            num = pd.to_numeric(pd.Series(self.visits), errors="coerce")
            times = num.to_numpy() if num.notna().all() else np.arange(J, dtype=float)
        self.times = np.asarray(times, dtype=float)
        if self.times.shape != (J,) or not np.all(np.diff(self.times) > 0):
            raise ConfigurationError("scenario: times must be increasing, one per visit")
        self.name = str(name)
        self.sources = dict(sources or {})
        self._chol = {a: np.linalg.cholesky(self.covariance[a]) for a in self.arms}

    # ---- construction helpers ---------------------------------------------------------------
    def _covariances(self, covariance, sd, correlation, J):
        if covariance is not None and (sd is not None or correlation is not None):
            raise ConfigurationError("scenario: give covariance, or sd and correlation, not both")
        out = {}
        for a in self.arms:
            if covariance is not None:
                C = covariance[a] if isinstance(covariance, Mapping) else covariance
                S = np.asarray(C, dtype=float)
                if S.ndim == 0:
                    S = np.eye(J) * float(S)
            else:
                if sd is None:
                    raise ConfigurationError("scenario: give covariance, or sd and correlation")
                try:
                    s = np.broadcast_to(np.asarray(sd, dtype=float), (J,)).copy()
                except ValueError as err:
                    raise ConfigurationError(f"scenario: sd must be one value or {J} (one per "
                                             f"visit), got {sd!r}") from err
                if not np.all(np.isfinite(s) & (s > 0)):
                    raise ConfigurationError(f"scenario: sd must be positive, got {sd!r}")
                R = _correlation(0.0 if correlation is None else correlation, J)
                S = R * np.outer(s, s)
            if S.shape != (J, J) or not np.allclose(S, S.T):
                raise ConfigurationError(f"scenario: covariance for arm {a!r} must be a "
                                         f"symmetric {J} x {J} matrix")
            if np.linalg.eigvalsh(S).min() <= 0:
                raise ConfigurationError(f"scenario: covariance for arm {a!r} is not positive "
                                         "definite")
            out[a] = S
        return out

    def _retentions(self, retention, J):
        out = {}
        for a in self.arms:
            r = retention.get(a) if isinstance(retention, Mapping) else retention
            r = np.ones(J) if r is None else np.asarray(r, dtype=float)
            if r.shape != (J,) or np.any(r <= 0) or np.any(r > 1) or np.any(np.diff(r) > 1e-12):
                raise ConfigurationError(
                    f"scenario: retention for arm {a!r} must give {J} shares in (0, 1], "
                    f"non-increasing (monotone dropout); got {np.ravel(r).tolist()}")
            out[a] = r
        return out

    # ---- description ------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """JSON-ready description (also what the seed key is computed from)."""
        return {
            "kind": self.kind, "name": self.name, "visits": [str(v) for v in self.visits],
            "arms": self.arms, "control": self.control,
            "means": {a: self.means[a].tolist() for a in self.arms},
            "covariance": {a: self.covariance[a].tolist() for a in self.arms},
            "retention": {a: self.retention[a].tolist() for a in self.arms},
            "dropout": self.dropout, "mar_slope": self.mar_slope if self.dropout == "mar" else None,
            "landmark": str(self.landmark), "times": self.times.tolist(),
        }

    def key(self) -> tuple[int, ...]:
        """Integer words identifying the generating model (not its name or sources)."""
        spec = self.spec()
        spec.pop("name")
        return _key_words(spec)

    def __repr__(self) -> str:
        return (f"Scenario({self.name!r}: {len(self.visits)} visits, arms {self.arms}, "
                f"dropout {self.dropout}, effect at {self.landmark} = "
                f"{self.truth('mmrm'):.3g})")

    @property
    def is_null(self) -> bool:
        """True when both arms have the same means (a type I error scenario)."""
        return bool(np.allclose(self.means[self.arms[0]], self.means[self.arms[1]]))

    def null(self, name: str | None = None) -> Scenario:
        """The same scenario with the treatment arm's means set to the control's."""
        ctl = self.means[self.control]
        return Scenario(self.visits, {a: ctl for a in self.arms}, covariance=self.covariance,
                        retention=self.retention, dropout=self.dropout, mar_slope=self.mar_slope,
                        control=self.control, landmark=self.landmark, times=self.times,
                        name=name or f"{self.name} (null)", sources=self.sources)

    def truth(self, analysis: str) -> float:
        """True value of the estimand of ``analysis`` (NaN when not defined)."""
        trt, ctl = self.means[self.arms[1]], self.means[self.control]
        j = self.visits.index(self.landmark)
        if analysis == "mmrm":
            return float(trt[j] - ctl[j])
        if analysis == "lmm_slope":
            t = self.times - self.times.mean()
            return float(np.sum(t * (trt - ctl)) / np.sum(t * t))
        return float("nan")

    def analytic_mmrm(self, *, power: float | None = None, n_total: float | None = None,
                      alpha: float = 0.05, method: str = "t"):
        """The closed-form twin of the MMRM landmark analysis of this scenario.

        Lu, Luo & Chen (2008) through :func:`kanalysis.design.analytic.power_mmrm`, with each
        arm's SD at the landmark, its visit correlation and retention up to the landmark (the
        visits after it do not enter the landmark contrast). Give ``power`` for the total
        sample size, or ``n_total`` for the power. The formula assumes MCAR dropout.
        """
        from kanalysis.design.analytic import power_mmrm

        j = self.visits.index(self.landmark)
        arms = (self.arms[1], self.control)
        cov = {a: self.covariance[a][: j + 1, : j + 1] for a in arms}
        sd = {a: np.sqrt(np.diag(cov[a])) for a in arms}
        return power_mmrm(
            delta=self.truth("mmrm"), sigma=tuple(sd[a][-1] for a in arms),
            correlation=tuple(cov[a] / np.outer(sd[a], sd[a]) for a in arms),
            retention=tuple(self.retention[a][: j + 1] for a in arms),
            n_total=n_total, power=power, alpha=alpha, method=method)

    def assumptions(self) -> pd.DataFrame:
        """Every assumption with its value and source."""
        rows = []
        for a in self.arms:
            rows.append(("means", a, ", ".join(f"{v:g}" for v in self.means[a])))
        for a in self.arms:
            sd = np.sqrt(np.diag(self.covariance[a]))
            cor = self.covariance[a] / np.outer(sd, sd)
            rows.append(("sd by visit", a, ", ".join(f"{v:.3g}" for v in sd)))
            rows.append(("correlation", a, "; ".join(", ".join(f"{v:.2f}" for v in r)
                                                     for r in cor)))
            rows.append(("retention", a, ", ".join(f"{v:.3g}" for v in self.retention[a])))
        rows.append(("dropout", "all", self.dropout + (f" (log-odds {self.mar_slope:g} per SD)"
                                                       if self.dropout == "mar" else " (MCAR)")))
        rows.append(("landmark", "all", str(self.landmark)))
        frame = pd.DataFrame(rows, columns=["assumption", "arm", "value"])
        frame["source"] = frame["assumption"].map(
            lambda k: self.sources.get(k) or self.sources.get(k.split()[0], "user input"))
        return frame

    # ---- simulation -------------------------------------------------------------------------
    def draw(self, root_seed: int, replicate: int, n_max: int, extra_key: Sequence[int] = ()
             ) -> TrialData:
        """One replicate of ``n_max`` subjects per arm (rows invariant to ``n_max``)."""
        J = len(self.visits)
        base = (*self.key(), *extra_key, int(replicate))
        ys, arms = [], []
        for ai, a in enumerate(self.arms):
            z = _stream(root_seed, (*base, ai, 0)).standard_normal((n_max, J))
            y = self.means[a] + z @ self._chol[a].T
            u = _stream(root_seed, (*base, ai, 1)).random((n_max, J))
            r = self.retention[a]
            if self.dropout == "monotone":
                seen = u[:, [0]] < r[None, :]
            else:
                seen = np.empty((n_max, J), dtype=bool)
                seen[:, 0] = u[:, 0] < r[0]
                sd = np.sqrt(np.diag(self.covariance[a]))
                for j in range(1, J):
                    h0 = np.clip(1 - r[j] / r[j - 1], 1e-12, 1 - 1e-12)
                    zprev = (y[:, j - 1] - self.means[a][j - 1]) / sd[j - 1]
                    h = expit(logit(h0) + self.mar_slope * zprev)
                    seen[:, j] = seen[:, j - 1] & (u[:, j] >= h)
            ys.append(np.where(seen, y, np.nan))
            arms.append(np.full(n_max, ai))
        return TrialData(np.vstack(ys), np.concatenate(arms), n_max, self.visits, self.times,
                         self.arms)

    # ---- files --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Scenario | SyntheticScenario:
        """Build from a dict (the ``[scenario]`` table of a TOML file)."""
        spec = dict(spec)
        if "synthetic" in spec or "design" in spec and "means" not in spec:
            design = spec.pop("synthetic", None) or spec.pop("design")
            return cls.from_synthetic(design, **spec)
        known = {"visits", "means", "covariance", "sd", "correlation", "retention", "dropout",
                 "mar_slope", "control", "landmark", "times", "name", "sources"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigurationError(f"scenario: unknown key(s) {unknown}; known: "
                                     f"{sorted(known)}")
        for req in ("visits", "means"):
            if req not in spec:
                raise ConfigurationError(f"scenario: '{req}' is required")
        visits = spec.pop("visits")
        means = spec.pop("means")
        return cls(visits, means, **spec)

    @classmethod
    def from_synthetic(cls, design: str = "single", **overrides) -> SyntheticScenario:
        """The kanalysis synthetic generator as the data-generating model.

        Parameters
        ----------
        design : {"single", "maintenance", "serial", "clinic"}
            Generator design; two-arm comparisons need ``single`` (ketamine vs midazolam) or
            ``maintenance`` (maintenance infusions vs none, among day-14 responders).
        **overrides
            ``response_rate`` (active arm's responder probability; single default 0.52, Han et
            al. 2016), ``control_response_rate`` (midazolam 0.26, Dean et al. 2021),
            ``effect_24h`` (target mean MADRS difference at 24 h, converted to a response rate:
            the generator's effect is response-driven), ``relapse_median_days`` (fading of the
            effect; 10 single, 18 serial/maintenance), ``relapse_hr`` (maintenance hazard ratio,
            0.4; SUSTAIN-1 0.30-0.49), ``dropout_rate``, ``mnar``, ``landmark`` (visit label,
            default ``"24h"`` / ``"week16_rand"``), ``block_size``, ``name``, ``null``
            (both arms as the control: a type I error scenario).
        """
        return SyntheticScenario(design, **overrides)


def read_scenario_file(path: str | Path) -> dict:
    """The parsed TOML of a scenario file; a missing, special or non-UTF-8 file, a folder or
    invalid TOML is a :class:`ConfigurationError` naming the file."""
    import tomllib

    from kanalysis._paths import InputFileError, check_input_file

    try:
        p = check_input_file(path, what="scenario file")
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except InputFileError as err:
        raise ConfigurationError(str(err)) from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"scenario file {str(path)!r} is not UTF-8 text (a TOML file "
                                 "must be)") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigurationError(f"scenario file {str(path)!r} is not valid TOML: {err}") from None


def load_scenario(path: str | Path) -> Scenario | SyntheticScenario:
    """Read a scenario from a TOML file (its ``[scenario]`` table, or the whole file)."""
    p = Path(path)
    data = read_scenario_file(p)
    spec = data.get("scenario", data)
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"scenario file {p}: [scenario] must be a table")
    try:
        return Scenario.from_dict(spec)
    except ConfigurationError as err:
        raise ConfigurationError(f"scenario file {p}: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"scenario file {p}: {err}") from err


# ---- the synthetic generator as the model --------------------------------------------------------

_SYNTH_ARMS = {"single": ("midazolam", "ketamine"), "maintenance": ("no_maintenance",
                                                                    "maintenance")}
_SYNTH_LANDMARK = {"single": "24h", "maintenance": "week16_rand"}
_SYNTH_OVERRIDES = {"response_rate", "control_response_rate", "effect_24h",
                    "relapse_median_days", "relapse_hr", "dropout_rate", "mnar", "landmark",
                    "block_size", "name", "null"}
# Mean MADRS baseline of the generator (N(33, 5.5) truncated to [22, 55]) times the difference in
# mean response fraction between responders and others (0.68 - 0.15): the 24-h difference per
# unit difference in responder share (the generator reaches the full effect by 24 h).
_EFFECT_PER_RESPONSE = 33.1 * (0.68 - 0.15)


class SyntheticScenario:
    """The synthetic ketamine generator as a scenario (see :meth:`Scenario.from_synthetic`)."""

    kind = "synthetic"

    def __init__(self, design: str = "single", **overrides):
        from kanalysis import synthetic

        unknown = sorted(set(overrides) - _SYNTH_OVERRIDES)
        if unknown:
            raise ConfigurationError(f"scenario: unknown synthetic override(s) {unknown}; "
                                     f"known: {sorted(_SYNTH_OVERRIDES)}")
        if design not in synthetic.DESIGNS:
            raise ConfigurationError(f"scenario: design must be one of {synthetic.DESIGNS}, "
                                     f"got {design!r}")
        if design not in _SYNTH_ARMS:
            raise ConfigurationError(
                f"scenario: the synthetic {design!r} design has one arm; power for a two-arm "
                "comparison needs 'single' (ketamine vs midazolam) or 'maintenance' "
                "(maintenance vs none); use a Scenario(...) for other designs")
        self.design = design
        self.arms = list(_SYNTH_ARMS[design])
        self.control = self.arms[0]
        self.name = str(overrides.get("name", f"synthetic {design}"))
        self.landmark = overrides.get("landmark", _SYNTH_LANDMARK[design])
        self.block_size = int(overrides.get("block_size", 40 if design == "single" else 30))
        if self.block_size < 2 or self.block_size % 2:
            raise ConfigurationError(f"scenario: block_size must be even and >= 2, got "
                                     f"{self.block_size}")
        self.null_scenario = bool(overrides.get("null", False))
        kw: dict[str, Any] = {}
        if design == "single":
            p_act = float(overrides.get("response_rate", 0.52))
            p_ctl = float(overrides.get("control_response_rate", 0.26))
            if "effect_24h" in overrides:
                if "response_rate" in overrides:
                    raise ConfigurationError("scenario: give response_rate or effect_24h, not "
                                             "both")
                p_act = p_ctl + float(overrides["effect_24h"]) / _EFFECT_PER_RESPONSE
            if self.null_scenario:
                p_act = p_ctl
            for nm, p in (("response_rate", p_act), ("control_response_rate", p_ctl)):
                if not 0 < p < 1:
                    raise ConfigurationError(f"scenario: {nm} must lie in (0, 1), got {p:.4g}")
            kw["p_response"] = {"ketamine": p_act, "midazolam": p_ctl}
        else:
            for bad in ("effect_24h", "control_response_rate"):
                if bad in overrides:
                    raise ConfigurationError(f"scenario: {bad} applies to the 'single' design")
            if "response_rate" in overrides:
                kw["p_response"] = {"induction": float(overrides["response_rate"])}
            hr = float(overrides.get("relapse_hr", 0.4))
            kw["maintenance_hr"] = 1.0 if self.null_scenario else hr
        if "relapse_median_days" in overrides:
            kw["relapse_median_days"] = float(overrides["relapse_median_days"])
        if "dropout_rate" in overrides:
            kw["dropout_rate"] = float(overrides["dropout_rate"])
        if overrides.get("mnar"):
            kw["mnar"] = True
        self.generator_kwargs = kw
        self.overrides = dict(overrides)
        # Validate against the generator itself now (bad values fail before any task is sent).
        self._generate(0, 0, 2 if design == "single" else 4)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "design": self.design,
                "generator": _canonical(self.generator_kwargs), "landmark": str(self.landmark),
                "block_size": self.block_size, "generator_version": 1}

    def key(self) -> tuple[int, ...]:
        spec = self.spec()
        spec.pop("name")
        return _key_words(spec)

    @property
    def is_null(self) -> bool:
        return self.null_scenario

    def null(self, name: str | None = None) -> SyntheticScenario:
        ov = dict(self.overrides, null=True, name=name or f"{self.name} (null)")
        ov.pop("effect_24h", None)
        ov.pop("response_rate", None) if self.design == "single" else None
        return SyntheticScenario(self.design, **ov)

    def __repr__(self) -> str:
        return f"SyntheticScenario({self.name!r}: {self.design}, {self.generator_kwargs})"

    def _generate(self, root_seed: int, word: int, n: int):
        from kanalysis import synthetic

        try:
            return synthetic.generate(self.design, n_subjects=n, seed=int(root_seed) ^ word,
                                      include_vitals=False, include_adverse_events=False,
                                      **self.generator_kwargs)
        except ConfigurationError as err:
            raise ConfigurationError(f"scenario: {err}") from err

    def cohorts(self, root_seed: int, replicate: int, n_max: int, extra_key=()):
        """Blocks of generated subjects until each arm has ``n_max``; yields cohorts."""
        base = (*self.key(), *extra_key, int(replicate))
        counts = dict.fromkeys(self.arms, 0)
        block = 0
        while min(counts.values()) < n_max:
            seed = int(np.random.SeedSequence(int(root_seed), spawn_key=(*base, block))
                       .generate_state(1, np.uint32)[0])
            cohort = self._generate(seed, 0, self.block_size)
            arms = cohort.subjects["arm"].value_counts()
            for a in self.arms:
                counts[a] += int(arms.get(a, 0))
            yield block, cohort
            block += 1
            if block > 10_000:  # pragma: no cover - guards a generator that randomises nobody
                raise ConfigurationError("scenario: the generator randomises too few subjects")

    def draw(self, root_seed: int, replicate: int, n_max: int, extra_key=()):
        """One replicate: a combined cohort with at least ``n_max`` subjects per arm.

        Subject ids are ``B<block>-<id>``; :meth:`subset` takes the first n per arm."""
        from kanalysis.design.analyses import combine_cohorts

        parts = list(self.cohorts(root_seed, replicate, n_max, extra_key))
        return combine_cohorts(parts, self.arms)

    def truth(self, analysis: str, reference_size: int = 20_000) -> float:
        """The estimand's true value: 0 for a null scenario; the generator's log hazard ratio
        for survival analyses; for ``mmrm`` (difference in mean change at the landmark) and
        ``responder`` (difference in responder rates) the value in one large reference cohort
        without dropout (``reference_size`` subjects, fixed seed; its MC SE is about 0.1
        MADRS points and 0.007 for rates; response = 50% reduction, remission = MADRS <= 10, the
        analyses' defaults), computed once and cached."""
        if self.is_null:
            return 0.0
        if analysis in ("cox", "logrank") and self.design == "maintenance":
            return float(np.log(self.generator_kwargs.get("maintenance_hr", 0.4)))
        if analysis not in ("mmrm", "responder", "remitter") or self.design != "single":
            return float("nan")
        cache = self.__dict__.setdefault("_truth", {})
        if analysis not in cache:
            from kanalysis import synthetic
            from kanalysis.design.analyses import _change_frame

            kw = dict(self.generator_kwargs, dropout_rate=0.0)
            cohort = synthetic.generate("single", n_subjects=reference_size, seed=20261202,
                                        include_vitals=False, include_adverse_events=False, **kw)
            frame, _ = _change_frame(cohort, self.arms)
            at = frame[frame["visit"] == self.landmark]
            trt = at["trt"].to_numpy() == 1
            if analysis == "mmrm":
                y = at["y"].to_numpy()
                cache[analysis] = float(y[trt].mean() - y[~trt].mean())
            else:
                if analysis == "responder":
                    resp = (-at["y"] / at["base"]).to_numpy() >= 0.5
                else:
                    resp = (at["base"] + at["y"]).to_numpy() <= 10.0
                cache[analysis] = float(resp[trt].mean() - resp[~trt].mean())
        return cache[analysis]

    def assumptions(self) -> pd.DataFrame:
        from kanalysis import synthetic

        rows = [("generating model", "all", f"kanalysis.synthetic, design {self.design!r}",
                 "kanalysis.synthetic module notes")]
        defaults = {"p_response": str(synthetic._DESIGN_SETTINGS[self.design].p_response),
                    "dropout_rate": synthetic._DESIGN_SETTINGS[self.design].dropout_rate}
        src = {"p_response": "Han et al. 2016 (ketamine 0.52); Dean et al. 2021 (midazolam "
                             "0.26); Phillips et al. 2019 (serial induction 0.65)",
               "maintenance_hr": "SUSTAIN-1 HR 0.30-0.49 (Daly et al. 2019)",
               "relapse_median_days": "Kishimoto et al. 2016 (single, 10 d); Murrough et al. "
                                      "2013 (serial, 18 d)",
               "dropout_rate": "generator default", "mnar": "generator option"}
        for k, v in defaults.items():
            if k not in self.generator_kwargs:
                rows.append((k, "default", str(v), src.get(k, "generator default")))
        for k, v in self.generator_kwargs.items():
            rows.append((k, "set", str(v), "override" + (f" (default: {src[k]})" if k in src
                                                       else "")))
        rows.append(("landmark", "all", str(self.landmark), "scenario"))
        return pd.DataFrame(rows, columns=["assumption", "arm", "value", "source"])
