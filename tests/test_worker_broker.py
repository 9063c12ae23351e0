"""Broker with several workers: load spreading, heartbeats, a killed worker, CURVE."""
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from gensemcom.worker.broker import Broker
from gensemcom.worker.client import WorkerClient, WorkerError, WorkerUnavailable
from gensemcom.worker.security import keygen
from gensemcom.worker.server import WorkerServer
from conftest import wait_for  # noqa: E402

HB_MS = 100
LIVENESS = 5  # 0.5 s: lenient enough for a loaded 2-core CI machine
LOOPBACK = "tcp://127.0.0.1:*"


def worker_names(broker):
    return [w["name"] for w in broker.status()["workers"]]


@pytest.fixture
def broker():
    b = Broker(LOOPBACK, LOOPBACK, heartbeat_ms=HB_MS, liveness=LIVENESS).start()
    yield b
    b.stop()


@pytest.fixture
def spawn():
    """Start worker processes connected to a broker; all killed at teardown."""
    procs = []

    def start(broker, *args):
        cmd = [sys.executable, "-m", "gensemcom.worker", "--connect-broker", broker.backend_endpoint,
               "--heartbeat-ms", str(HB_MS), "--liveness", str(LIVENESS), "--log-level", "WARNING", *args]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        procs.append(proc)
        wait_for(lambda: any(n.endswith(f":{proc.pid}") for n in worker_names(broker)), what="worker to join")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def by_pid(broker, pid):
    return next(w for w in broker.status()["workers"] if w["name"].endswith(f":{pid}"))


def test_broker_spreads_load_across_two_workers(broker, spawn):
    a, b = spawn(broker), spawn(broker)
    with WorkerClient(broker.frontend_endpoint, timeout_ms=10000, retries=0) as c:
        for i in range(10):
            x = np.full((1, 3, 8, 8), i, np.float32)
            assert c.call("tiny_encode", {"image": x})["latent"].shape == (1, 4, 2, 2)
        answered = [by_pid(broker, p.pid)["answered"] for p in (a, b)]
        st = c.status()
    assert sum(answered) == 10 and min(answered) >= 1, answered
    assert st["role"] == "broker" and len(st["workers"]) == 2 and st["queue_depth"] == 0
    assert st["requests"]["answered"] == 10 and st["latency_ms"]["n"] == 10


def test_errors_pass_through_broker(broker, spawn):
    spawn(broker)
    with WorkerClient(broker.frontend_endpoint, timeout_ms=10000, retries=0) as c:
        with pytest.raises(WorkerError) as err:
            c.call("no_such_method", {"x": np.zeros(2)})
        assert err.value.code == "unknown_method"
        with pytest.raises(WorkerError) as err:
            c.call("tiny_encode", {"image": np.zeros((1, 3, 5, 5), np.float32)})
        assert err.value.code == "bad_shape"
        assert c.call("echo", {"x": np.arange(5)})["x"].tolist() == [0, 1, 2, 3, 4]


def test_killed_worker_requests_go_to_the_other(broker, spawn):
    victim, survivor = spawn(broker), spawn(broker)
    n = 8
    results, errors = [None] * n, []
    with WorkerClient(broker.frontend_endpoint, timeout_ms=20000, retries=0) as c:
        def one(i):
            try:
                x = np.full(16, i, np.int64)
                results[i] = c.call("wait", {"x": x}, meta={"delay_ms": 300})["x"]
            except Exception as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        wait_for(lambda: by_pid(broker, victim.pid)["outstanding"] >= 1, what="requests on the victim")
        os.kill(victim.pid, signal.SIGKILL)
        for t in threads:
            t.join(60)
        assert not errors, errors
        for i, r in enumerate(results):
            np.testing.assert_array_equal(r, np.full(16, i, np.int64))
        st = broker.status()
        assert st["requests"]["workers_lost"] == 1 and st["requests"]["redispatched"] >= 1
        assert worker_names(broker) == [by_pid(broker, survivor.pid)["name"]]
        assert c.call("echo", {"x": np.ones(3)})["x"].sum() == 3  # still served


def test_request_waits_for_a_worker_then_times_out_cleanly(broker, spawn):
    with WorkerClient(broker.frontend_endpoint, timeout_ms=200, retries=0) as c:
        with pytest.raises(WorkerUnavailable):
            c.call("echo", {"x": np.zeros(1)})
        assert c.status()["workers"] == []  # the broker itself still answers
    with WorkerClient(broker.frontend_endpoint, timeout_ms=20000, retries=0) as c:
        result = {}
        t = threading.Thread(target=lambda: result.update(r=c.call("echo", {"x": np.arange(2)})))
        t.start()
        wait_for(lambda: broker.status()["queued"] >= 1, what="request queued at the broker")
        spawn(broker)
        t.join(30)
        assert result["r"]["x"].tolist() == [0, 1]


def test_in_process_workers_and_curve_through_broker(tmp_path):
    keys = tmp_path / "keys"
    keygen(keys)
    b = Broker(LOOPBACK, LOOPBACK, heartbeat_ms=HB_MS, curve_keys=str(keys)).start()
    workers = [WorkerServer(connect_broker=b.backend_endpoint, heartbeat_ms=HB_MS, curve_keys=str(keys),
                            name=f"w{i}").start() for i in range(2)]
    try:
        wait_for(lambda: sorted(worker_names(b)) == ["w0", "w1"], what="two CURVE workers")
        with WorkerClient(b.frontend_endpoint, curve_keys=str(keys), timeout_ms=10000) as c:
            for _ in range(4):
                c.call("echo", {"x": np.arange(3)})
        assert [w["answered"] for w in b.status()["workers"]] == [2, 2]
        with WorkerClient(b.frontend_endpoint, timeout_ms=300, retries=0) as plain:
            with pytest.raises(WorkerUnavailable):
                plain.call("echo", {"x": np.arange(3)})
        # a worker that stops says DISCONNECT; the broker drops it at once
        workers[0].stop()
        wait_for(lambda: worker_names(b) == ["w1"], what="w0 to leave")
    finally:
        for w in workers:
            w.stop()
        b.stop()


def test_worker_reconnects_after_broker_restart():
    first = Broker(LOOPBACK, LOOPBACK, heartbeat_ms=HB_MS).start()
    front, back = first.frontend_endpoint, first.backend_endpoint
    worker = WorkerServer(connect_broker=back, heartbeat_ms=HB_MS, name="phoenix").start()
    second = None
    try:
        wait_for(lambda: worker_names(first) == ["phoenix"], what="worker to join")
        first.stop()
        second = Broker(front, back, heartbeat_ms=HB_MS).start()  # same ports, no memory of the worker
        wait_for(lambda: worker_names(second) == ["phoenix"], what="worker to re-register")
        with WorkerClient(front, timeout_ms=10000, retries=0) as c:
            assert c.call("echo", {"x": np.arange(2)})["x"].tolist() == [0, 1]
    finally:
        worker.stop()
        if second is not None:
            second.stop()
