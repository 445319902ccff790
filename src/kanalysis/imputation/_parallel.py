"""Resampling runs on the project's executor (:func:`kanalysis.parallel.map_batches`, a Dask
cluster when one is given), with a serial in-process fallback and a tqdm progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def run_map(func: Callable, items: Sequence, *, workers=None, scheduler=None, progress=True,
            desc: str = "") -> list:
    """``[func(item) for item in items]``, on the shared executor when it is available."""
    try:
        from kanalysis.parallel import map_batches
    except ImportError:
        map_batches = None
    if map_batches is not None:
        return list(map_batches(func, items, workers=workers, scheduler=scheduler,
                                progress=bool(progress) and len(items) >= 200, desc=desc))
    if workers not in (None, 1) or scheduler is not None:  # pragma: no cover - old main
        raise RuntimeError("a Dask executor needs kanalysis.parallel")
    show = bool(progress) and len(items) >= 200
    if show:
        from kanalysis.parallel import progress_bar

        return [func(i) for i in progress_bar(items, desc=desc, leave=False)]
    return [func(i) for i in items]
