r"""Delta adjustment and tipping-point search.

The imputed values of the chosen arm(s) are shifted by :math:`\delta` (added after imputation,
before the analysis, as in rbmi and the five macros) over a grid of :math:`\delta`; the tipping
point is the smallest shift (in the grid's direction) at which the treatment difference at the
chosen visit is no longer significant at ``1 - conf_level``, interpolated linearly in the
p-value between grid points. With :class:`CondMean` the imputation is done once: every grid
point re-runs only the (vectorised) analyses of the same completed data sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.imputation.analyse import analyse, ancova, default_control
from kanalysis.imputation.draws import Draws
from kanalysis.imputation.impute import impute
from kanalysis.imputation.pool import pool
from kanalysis.results import AnalysisResult, SummaryText, resolve_conf_level

__all__ = ["TippingPointResult", "tipping_point"]


class TippingPointResult(AnalysisResult):
    """Grid of pooled estimates over delta and the tipping delta."""

    def __init__(self, grid: pd.DataFrame, tipping_delta, arms, visit, parameter, conf_level):
        self.grid = grid
        self.tipping_delta = tipping_delta
        self.arms = list(arms)
        self.visit = visit
        self.parameter = parameter
        self.conf_level = conf_level

    def to_frame(self) -> pd.DataFrame:
        return self.grid.copy()

    def summary(self) -> SummaryText:
        td = self.tipping_delta
        txt = "not reached in the grid" if td is None or (np.isscalar(td) and np.isnan(td)) \
            else (f"{td:.4g}" if np.isscalar(td) else "see tipping_delta")
        lines = [f"Tipping point: delta added to imputed values in arm(s) {self.arms}, "
                 f"{self.parameter} at visit {self.visit}", f"Tipping delta: {txt}"]
        cols = [c for c in self.grid.columns if c.startswith("delta")] + \
            ["estimate", "ci_lower", "ci_upper", "p_value"]
        lines += self.grid[cols].to_string(index=False,
                                           float_format=lambda v: f"{v:.4f}").splitlines()
        return SummaryText("\n".join(lines))

    def key_numbers(self) -> dict[str, Any]:
        out = super().key_numbers()
        td = self.tipping_delta
        out["tipping_delta"] = None if td is None or (np.isscalar(td) and np.isnan(td)) else \
            (float(td) if np.isscalar(td) else td)
        out.update(arms=[str(a) for a in self.arms], visit=str(self.visit),
                   parameter=self.parameter)
        return out

    count_columns: ClassVar[dict] = {}


def _crossing(d, p, alpha):
    """First delta along ``d`` (sorted by |d|) where p crosses to >= alpha."""
    order = np.argsort(np.abs(d), kind="stable")
    d, p = np.asarray(d)[order], np.asarray(p)[order]
    if p[0] >= alpha:
        return float(d[0])
    for i in range(1, len(d)):
        if p[i] >= alpha:
            x0, x1, y0, y1 = d[i - 1], d[i], p[i - 1], p[i]
            return float(x0 + (alpha - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)
    return float("nan")


def tipping_point(draws: Draws, references: dict | None = None,
                  deltas: Sequence[float] | Mapping[Any, Sequence[float]] = None,
                  arms: Sequence | None = None, *, visit=None, parameter: str = "diff",
                  covariates: Sequence[str] = (), fun=ancova, conf_level: float | None = None,
                  missing_only: bool = True, post_ice_only: bool = False,
                  update_strategy=None, control=None) -> TippingPointResult:
    """Shift imputed values by delta until significance is lost.

    Parameters
    ----------
    draws : Draws
    references : dict
        As in :func:`impute`.
    deltas : sequence or dict
        Grid of shifts added to the imputed values of ``arms`` (default
        ``np.linspace(0, 10, 41)``), or ``{arm: grid}`` for a grid over two arms at once.
    arms : sequence, optional
        Arms whose imputed values are shifted (default: all arms but the control).
    visit : optional
        Visit of the primary comparison (default: the last visit).
    parameter : str
        Parameter tested (default the treatment difference ``diff``).
    missing_only : bool
        Shift imputed values only (default); else also observed post-ICE values.
    post_ice_only : bool
        Shift only values at or after the ICE (intermittent missing values are left alone).

    Returns
    -------
    TippingPointResult
        ``grid``: one row per delta (``delta`` or ``delta_<arm>`` columns) with the pooled row;
        ``tipping_delta``: scalar (one arm) or a frame (two-arm grid).
    """
    level = resolve_conf_level(conf_level, where="tipping_point")
    imputed = impute(draws, references=references, update_strategy=update_strategy)
    grid = draws.grid
    if control is None:
        control = default_control(grid.arms, imputed.references)
    visit = grid.visit_levels[-1] if visit is None else visit
    if isinstance(deltas, Mapping):
        arm_list = list(deltas)
        grids = [np.asarray(deltas[a], dtype=float) for a in arm_list]
    else:
        arm_list = [a for a in grid.arms if a != control] if arms is None else list(arms)
        d = np.linspace(0, 10, 41) if deltas is None else np.asarray(deltas, dtype=float)
        grids = [d] * len(arm_list) if len(arm_list) > 1 else [d]
    bad = [a for a in arm_list if a not in grid.arms]
    if bad:
        raise ConfigurationError(f"tipping_point: arm(s) {bad} are not arms of {grid.arms}")
    shift = imputed.missing.copy() if missing_only else np.ones_like(imputed.missing)
    if post_ice_only:
        shift &= imputed.post_ice
    if not missing_only:
        shift &= imputed.missing | imputed.post_ice
    arm_masks = [(grid.arm_code == grid.arms.index(a))[:, None] & shift for a in arm_list]
    if isinstance(deltas, Mapping):
        mesh = np.array(np.meshgrid(*grids, indexing="ij")).reshape(len(grids), -1).T
        cols = [f"delta_{a}" for a in arm_list]
    else:
        mesh = grids[0][:, None] * np.ones((1, len(arm_list)))
        cols = ["delta"]
    rows = []
    for point in mesh:
        D = sum(dv * m for dv, m in zip(point, arm_masks, strict=True)).astype(float)
        res = pool(analyse(imputed, covariates=covariates, fun=fun, delta=D, control=control),
                   conf_level=level)
        f = res.to_frame()
        r = f[(f["parameter"] == parameter) & (f["visit"].astype(str) == str(visit))]
        if r.empty:
            raise ConfigurationError(f"tipping_point: no {parameter!r} at visit {visit!r}")
        rec = r.iloc[0].to_dict()
        if isinstance(deltas, Mapping):
            rec.update(dict(zip(cols, point, strict=True)))
        else:
            rec["delta"] = point[0]
        rows.append(rec)
    out = pd.DataFrame(rows)
    out = out[cols + [c for c in out.columns if c not in cols]]
    alpha = 1 - level
    if isinstance(deltas, Mapping) and len(arm_list) == 2:
        td = (out.groupby(cols[1])[[cols[0], "p_value"]]
              .apply(lambda g: _crossing(g[cols[0]].to_numpy(), g["p_value"].to_numpy(), alpha))
              .rename("tipping_delta").reset_index())
    else:
        td = _crossing(out[cols[0]].to_numpy(), out["p_value"].to_numpy(), alpha)
    return TippingPointResult(out, td, arm_list, visit, parameter, level)
