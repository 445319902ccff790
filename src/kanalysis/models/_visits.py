"""Visit levels of an MMRM: their order (category, numeric, or within-subject precedence)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _ordered_levels(values: pd.Series) -> list | None:
    """Levels in their natural order when the values say it: category order (Categorical) or
    numeric order (numbers, or strings that all read as numbers); None otherwise."""
    present = set(pd.unique(values))
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if c in present]
    uniq = pd.unique(values)
    num = pd.to_numeric(pd.Series(uniq), errors="coerce")
    if num.notna().all():
        return [u for _, u in sorted(zip(num, uniq, strict=True), key=lambda z: z[0])]
    return None


def _order_by_precedence(data: pd.DataFrame, subject: str, visit: str, levels) -> list:
    """Order visit labels ("40min", "4h", "day1", ...) by how they follow each other within
    subjects in the rows as given: level a comes before b when, among subjects with both, a
    precedes b more often than not (a Copeland ranking, robust to missed visits)."""
    frame = data[[subject, visit]].dropna()
    frame = frame[frame[visit].isin(set(levels))]
    subj = pd.factorize(frame[subject])[0]
    lev = list(pd.unique(frame[visit]))  # first appearance, the tie-break
    code = frame[visit].map({v: i for i, v in enumerate(lev)}).to_numpy()
    rank = frame.groupby(subj, sort=False).cumcount().to_numpy().astype(float)
    L = len(lev)
    pos = np.full((subj.max() + 1, L), np.nan)
    # first occurrence within subject: assign in reverse so that the first row wins
    pos[subj[::-1], code[::-1]] = rank[::-1]
    before = np.zeros((L, L))
    for a in range(L):
        with np.errstate(invalid="ignore"):
            before[a] = np.nansum(pos[:, [a]] < pos, axis=0)
    wins = (before > before.T).sum(1)
    mean_pos = np.nanmean(pos / np.nanmax(pos, axis=1, keepdims=True).clip(min=1), axis=0)
    order = sorted(range(L), key=lambda a: (-wins[a], mean_pos[a], a))
    return [lev[a] for a in order]
