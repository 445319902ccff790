"""kanalysis.parallel: results in item order whatever runs them (serial, Dask local schedulers, a
LocalCluster of worker processes on 127.0.0.1)."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest

from kanalysis.errors import ConfigurationError
from kanalysis.parallel import default_batch_size, make_batches, map_batches


def _draw(seed: int) -> float:
    """A deterministic function of its item (the pattern simulation studies use)."""
    return float(np.random.default_rng([seed, 7]).normal())


def _blas_threads(_item) -> int:
    from threadpoolctl import threadpool_info

    return max((d.get("num_threads") or 1 for d in threadpool_info()
                if d.get("user_api") == "blas"), default=1)


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("item 3 is bad")
    return x


ITEMS = list(range(37))


def test_serial_keeps_order():
    assert map_batches(_draw, ITEMS, progress=False) == [_draw(i) for i in ITEMS]


def test_empty_items():
    assert map_batches(_draw, [], progress=False) == []
    assert map_batches(_draw, [], scheduler="synchronous", progress=False) == []


@pytest.mark.parametrize("batch_size", [None, 1, 5, 36, 100])
def test_synchronous_scheduler_matches_serial_for_any_batch_size(batch_size):
    expected = [_draw(i) for i in ITEMS]
    got = map_batches(_draw, ITEMS, scheduler="synchronous", batch_size=batch_size,
                      progress=False)
    assert got == expected


def test_threads_scheduler_matches_serial():
    assert map_batches(_draw, ITEMS, scheduler="threads", batch_size=3,
                       progress=False) == [_draw(i) for i in ITEMS]


def test_tasks_run_with_single_threaded_blas():
    assert set(map_batches(_blas_threads, range(4), scheduler="synchronous", batch_size=2,
                           progress=False)) == {1}


def test_errors_propagate():
    with pytest.raises(ValueError, match="item 3"):
        map_batches(_fail_on_three, range(6), scheduler="synchronous", progress=False)


def test_batches_cover_items_once():
    batches = make_batches(list(range(10)), 3)
    assert [s for s, _ in batches] == [0, 3, 6, 9]
    assert [x for _, b in batches for x in b] == list(range(10))
    assert default_batch_size(10_000, 2) == 625
    assert default_batch_size(3, 8) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"workers": 0}, "workers"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "not both"),
    ({"scheduler": "nonsense"}, "scheduler"),
    ({"scheduler": 3.5}, "scheduler"),
    ({"batch_size": 0, "scheduler": "synchronous"}, "batch_size"),
])
def test_bad_arguments_rejected(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        map_batches(_draw, ITEMS, progress=False, **kwargs)


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="could not connect"):
        map_batches(_draw, ITEMS, scheduler="tcp://127.0.0.1:9", progress=False,
                    timeout=2)


def test_progress_bar_counts_items(capsys):
    map_batches(_draw, ITEMS, scheduler="synchronous", batch_size=10, progress=True,
                desc="draws")
    err = capsys.readouterr().err
    assert "draws" in err and "37/37" in err


@pytest.fixture(scope="module")
def local_cluster():
    """A LocalCluster of two single-threaded worker processes on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=":0",
                                       env={"OMP_NUM_THREADS": "1"},
                                       scheduler_kwargs={"dashboard": False})
    client = distributed.Client(cluster, timeout="60s")
    yield client
    client.close()
    cluster.close()


def test_cluster_matches_serial_by_client_and_address(local_cluster):
    expected = [_draw(i) for i in ITEMS]
    f = functools.partial(operator.mul, 3)
    assert map_batches(f, ITEMS, scheduler=local_cluster, batch_size=4, progress=False,
                       timeout=60) == [3 * i for i in ITEMS]
    assert map_batches(_draw, ITEMS, scheduler=local_cluster.scheduler.address, batch_size=7,
                       progress=False, timeout=60) == expected
    # The client we were given stays usable: map_batches closes only what it opened.
    assert local_cluster.submit(operator.add, 1, 2).result(timeout=30) == 3


def test_cluster_workers_have_single_threaded_blas(local_cluster):
    assert set(map_batches(_blas_threads, range(4), scheduler=local_cluster, batch_size=1,
                           progress=False, timeout=60)) == {1}


def test_cluster_error_propagates(local_cluster):
    with pytest.raises(ValueError, match="item 3"):
        map_batches(_fail_on_three, range(6), scheduler=local_cluster, batch_size=2,
                    progress=False, timeout=60)


@pytest.mark.slow
def test_workers_starts_and_closes_a_local_cluster():
    expected = [_draw(i) for i in ITEMS]
    assert map_batches(_draw, ITEMS, workers=2, progress=False, timeout=120) == expected
