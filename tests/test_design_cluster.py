"""A real Dask cluster: a scheduler and two workers started as separate processes on 127.0.0.1
with the ``dask`` command of this environment. A power study sent to the scheduler's address is
bit-identical to a serial run; a bad scenario is rejected before any task reaches the
scheduler; a worker killed mid-run is survived with unchanged results (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from kanalysis.design import Scenario, simulate_power
from kanalysis.errors import ConfigurationError

distributed = pytest.importorskip("distributed")

DASK = Path(sys.executable).with_name("dask")
VISITS = ["w1", "w2", "w4", "w6"]


def _scenario():
    return Scenario(VISITS, {"placebo": [-4, -6, -8, -9], "ketamine": [-8, -9, -10, -13]},
                    sd=8.0, correlation="ar1:0.6", retention=[1, 0.95, 0.9, 0.85], name="demo")


def _records(res):
    return res.replicates.drop(columns=["message"]).reset_index(drop=True)


def _start(args, log):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, client, worker processes); everything stopped afterwards."""
    if not DASK.exists() and shutil.which("dask") is None:
        pytest.skip("the dask command is not installed")
    tmp = tmp_path_factory.mktemp("dask")
    log = open(tmp / "cluster.log", "w")  # noqa: SIM115 - closed in the finaliser
    sched_file = tmp / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(sched_file)], log)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sched_file.exists(), "the scheduler did not start within 60 s"
        time.sleep(0.3)
        address = json.loads(sched_file.read_text())["address"]
        workers = [_start(["worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                           "--host", "127.0.0.1", "--name", f"w{i}"], log) for i in range(2)]
        procs += workers
        client = distributed.Client(address, timeout="60s")
        client.wait_for_workers(2, timeout=90)
        yield address, client, workers
        try:
            client.shutdown()  # stops the scheduler and its workers
        except Exception:  # pragma: no cover - already gone
            client.close()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def test_cluster_run_is_bit_identical_to_serial(cluster):
    address, client, _ = cluster
    sc = _scenario()
    kw = dict(n_per_arm=[10, 14], n_sim=4, seed=2024, progress=False)
    serial = simulate_power(sc, **kw)
    remote = simulate_power(sc, scheduler=address, batch_size=1, timeout=240, **kw)
    pd.testing.assert_frame_equal(_records(serial), _records(remote), check_exact=True)
    assert {"w0", "w1"} <= {w["name"] for w in client.scheduler_info()["workers"].values()}


def test_bad_scenario_rejected_before_any_task(cluster):
    address, client, _ = cluster

    def transitions(dask_scheduler):
        return dask_scheduler.transition_counter

    before = client.run_on_scheduler(transitions)
    with pytest.raises(ConfigurationError, match="retention"):
        simulate_power(Scenario(VISITS, {"a": [0] * 4, "b": [1] * 4}, sd=1,
                                retention=[1, 0.8, 0.9, 0.7]),
                       n_per_arm=[10], n_sim=4, seed=1, scheduler=address, progress=False)
    with pytest.raises(ConfigurationError, match="threshold"):
        simulate_power(_scenario(), n_per_arm=[10], n_sim=4, seed=1, scheduler=address,
                       analysis="responder", progress=False)
    assert client.run_on_scheduler(transitions) == before


@pytest.mark.slow
def test_killed_worker_is_survived(cluster):
    address, client, workers = cluster
    sc = _scenario()
    kw = dict(n_per_arm=[12, 20], n_sim=16, seed=77, progress=False)
    serial = simulate_power([sc, sc.null()], **kw)
    out = {}

    def run():
        try:
            out["result"] = simulate_power([sc, sc.null()], scheduler=address, batch_size=1,
                                           timeout=600, **kw)
        except BaseException as err:  # pragma: no cover - reported below
            out["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the run is under way
        done = client.run_on_scheduler(
            lambda dask_scheduler: sum(1 for t in dask_scheduler.tasks.values()
                                       if t.state == "memory"))
        if done >= 2:
            break
        time.sleep(0.2)
    workers[1].kill()
    workers[1].wait(timeout=30)
    thread.join(timeout=600)
    assert not thread.is_alive(), "the run did not finish after the worker was killed"
    assert "error" not in out, out.get("error")
    pd.testing.assert_frame_equal(_records(serial), _records(out["result"]), check_exact=True)
