"""One executor for embarrassingly parallel work (simulation studies, bootstraps), on Dask.

:func:`map_batches` applies a function to every item of a list and returns the results in item
order. Where the work runs is one argument away:

=============================  ==============================================================
``workers=None``,              in this process, one item after the other (no Dask needed)
``scheduler=None``
``scheduler="synchronous"``    Dask's synchronous scheduler (single thread; for tests and
                               debugging), ``"threads"`` for Dask's local thread pool
``workers=N``                  a :class:`distributed.LocalCluster` of N worker *processes*
                               with one thread each, started for this call and closed after
``scheduler="tcp://host:port"``  an existing Dask cluster by its scheduler address (SLURM via
                               dask-jobqueue, Kubernetes, a cloud), or a ``distributed.Client``
                               (or a cluster object) already connected
=============================  ==============================================================

Items are grouped into batches, one Dask task per batch, so that the per-task overhead (Dask's
own estimate is 200 us to 1 ms per task, https://docs.dask.org/en/stable/best-practices.html)
stays a small share of the work. A tqdm bar advances as batches complete
(:func:`distributed.as_completed`). Because every result is put back at its item's position,
the output never depends on the number of workers, the batch size or the completion order, as
long as ``func`` itself is deterministic in its item (seed it from the item, never from a global
generator).

BLAS threads are pinned to one per worker (``OMP_NUM_THREADS`` and friends for the worker
processes we start, :func:`threadpoolctl.threadpool_limits` inside every task), so that N
workers use N cores instead of competing for them.

A worker that dies mid-run is survived: the scheduler reruns its batches elsewhere (Dask's
``distributed.scheduler.allowed-failures``), and since batches are pure functions of their
items the results are unchanged.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from typing import Any

from kanalysis.errors import ConfigurationError

__all__ = ["BLAS_ENV", "default_batch_size", "make_batches", "map_batches"]

#: Environment for worker processes: one BLAS / OpenMP thread each.
BLAS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}

_LOCAL_SCHEDULERS = ("synchronous", "sync", "single-threaded", "threads", "threading")

#: Batches per worker by default: enough for load balancing and a smooth progress bar, few
#: enough that the per-task overhead stays negligible.
TASKS_PER_WORKER = 8


def default_batch_size(n_items: int, n_workers: int) -> int:
    """Items per task: ``ceil(n_items / (TASKS_PER_WORKER * n_workers))``, at least 1."""
    return max(1, math.ceil(n_items / (TASKS_PER_WORKER * max(1, n_workers))))


def make_batches(items: Sequence, batch_size: int) -> list[tuple[int, list]]:
    """Consecutive batches ``(start index, items)`` of at most ``batch_size`` items."""
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
    return [(start, list(items[start:start + batch_size]))
            for start in range(0, len(items), batch_size)]


def _run_batch(func: Callable[[Any], Any], batch: list) -> list:
    """Apply ``func`` to each item of one batch with BLAS limited to one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return [func(item) for item in batch]


def progress_bar(iterable=None, *, total: int | None = None, desc: str | None = None,
                 enabled: bool = True, **kwargs):
    """A tqdm progress bar: a widget in a notebook when ipywidgets is installed, text otherwise.

    ``tqdm.auto`` without ipywidgets warns on every import (with the path of the installed
    package, which names the machine), so the text bar is chosen directly in that case.
    """
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc or None, disable=not enabled,
                dynamic_ncols=True, **kwargs)


def _progress_bar(total: int, desc: str, enabled: bool):
    return progress_bar(total=total, desc=desc, enabled=enabled, unit="item")


def _check_arguments(workers, scheduler, batch_size) -> None:
    if workers is not None and scheduler is not None:
        raise ConfigurationError("give either workers= (start a local cluster) or scheduler= "
                                 "(use an existing one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigurationError(f"workers must be a positive integer, got {workers!r}")
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(scheduler, str) and scheduler not in _LOCAL_SCHEDULERS and "://" not in scheduler:
        raise ConfigurationError(
            f"scheduler must be a Dask scheduler address such as 'tcp://127.0.0.1:8786', a "
            f"distributed.Client, or one of {', '.join(_LOCAL_SCHEDULERS)}; got {scheduler!r}")


def map_batches(func: Callable[[Any], Any], items: Iterable, *, workers: int | None = None,
                scheduler: Any = None, batch_size: int | None = None, progress: bool = True,
                desc: str = "", timeout: float | None = None) -> list:
    """Apply ``func`` to every item, in batches, serially or on a Dask cluster.

    Parameters
    ----------
    func : callable
        ``func(item) -> result``. It must be picklable (a module-level function or a
        :func:`functools.partial` of one; cloudpickle also handles closures) and deterministic
        given its item.
    items : iterable
        The work items (kept as a list; each must be picklable).
    workers : int, optional
        Start a local cluster of this many single-threaded worker processes for this call.
    scheduler : str or distributed.Client or cluster, optional
        ``"tcp://host:port"`` of a running scheduler, a connected ``Client``, a cluster object
        (``LocalCluster``, ``SLURMCluster``), or ``"synchronous"`` / ``"threads"`` for Dask's
        local schedulers.
    batch_size : int, optional
        Items per task. Default: about ``TASKS_PER_WORKER`` (8) tasks per worker.
    progress : bool, default True
        Show a tqdm bar driven by completed tasks.
    desc : str
        Label of the progress bar.
    timeout : float, optional
        Seconds to wait for the whole map on a cluster before raising ``TimeoutError`` (also
        bounds connecting to ``scheduler``, 30 s by default).

    Returns
    -------
    list
        ``[func(item) for item in items]``, in item order.

    Raises
    ------
    ConfigurationError
        For inconsistent arguments, before any task is sent.
    Exception
        The first exception raised by ``func`` (remaining tasks are cancelled).

    Examples
    --------
    >>> from kanalysis.parallel import map_batches
    >>> map_batches(abs, [-3, 1, -2], progress=False)
    [3, 1, 2]
    """
    _check_arguments(workers, scheduler, batch_size)
    items = list(items)
    if not items:
        return []
    if workers is None and scheduler is None:
        from threadpoolctl import threadpool_limits

        bar = _progress_bar(len(items), desc, progress)
        out = []
        with bar, threadpool_limits(limits=1):  # the same arithmetic as on workers
            for item in items:
                out.append(func(item))
                bar.update(1)
        return out
    if isinstance(scheduler, str) and scheduler in _LOCAL_SCHEDULERS:
        n_workers = 1 if scheduler in ("synchronous", "sync", "single-threaded") else (
            os.cpu_count() or 1)
        size = batch_size or default_batch_size(len(items), n_workers)
        return _map_local_dask(func, make_batches(items, size), len(items), scheduler,
                               progress, desc)
    with ExitStack() as stack:
        client = stack.enter_context(_connect(workers, scheduler, timeout))
        n_workers = workers or max(1, sum(client.nthreads().values()))
        size = batch_size or default_batch_size(len(items), n_workers)
        return _map_client(client, func, make_batches(items, size), len(items), progress, desc,
                           timeout)


class _connect:
    """Context manager yielding a ``distributed.Client``; closes what it started."""

    def __init__(self, workers, scheduler, timeout=None):
        self.workers, self.scheduler = workers, scheduler
        self.connect_timeout = f"{min(float(timeout), 30.0) if timeout else 30.0}s"
        self._stack = ExitStack()

    def __enter__(self):
        from distributed import Client

        sched = self.scheduler
        if self.workers is not None:
            from distributed import LocalCluster

            cluster = self._stack.enter_context(LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=":0", env=dict(BLAS_ENV),
                scheduler_kwargs={"dashboard": False}))
            return self._stack.enter_context(Client(cluster))
        if isinstance(sched, Client):
            return sched
        if isinstance(sched, str):
            try:
                return self._stack.enter_context(Client(sched, timeout=self.connect_timeout))
            except OSError as err:
                raise ConfigurationError(
                    f"could not connect to the Dask scheduler at {sched}: {err}") from err
        if hasattr(sched, "scheduler_address"):  # a cluster object
            return self._stack.enter_context(Client(sched))
        raise ConfigurationError(
            f"scheduler must be an address string, a distributed.Client or a Dask cluster, got "
            f"{type(sched).__name__}")

    def __exit__(self, *exc):
        self._stack.close()
        return False


def _map_client(client, func, batches, n_items, progress, desc, timeout) -> list:
    from distributed import as_completed

    token = uuid.uuid4().hex[:12]
    name = getattr(func, "__name__", None) or type(func).__name__
    keys = [f"kanalysis-{name}-{token}-{i}" for i in range(len(batches))]
    futures = client.map(_run_batch, [func] * len(batches), [b for _, b in batches], key=keys,
                         pure=False)
    position = {f.key: i for i, f in enumerate(futures)}
    results: list = [None] * len(batches)
    bar = _progress_bar(n_items, desc, progress)
    try:
        with bar:
            for future, value in as_completed(futures, with_results=True, timeout=timeout):
                i = position[future.key]
                results[i] = value
                bar.update(len(batches[i][1]))
    except BaseException:
        client.cancel(futures)
        raise
    return [r for batch in results for r in batch]


def _map_local_dask(func, batches, n_items, scheduler, progress, desc) -> list:
    import dask
    from dask.callbacks import Callback

    bar = _progress_bar(n_items, desc, progress)
    sizes = {}

    class _Tick(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in sizes:
                bar.update(sizes[key])

    tasks = []
    for i, (_, batch) in enumerate(batches):
        task = dask.delayed(_run_batch, pure=False)(func, batch,
                                                    dask_key_name=f"kanalysis-batch-{i}")
        sizes[task.key] = len(batch)
        tasks.append(task)
    with bar, _Tick():
        results = dask.compute(*tasks, scheduler=scheduler)
    return [r for batch in results for r in batch]
