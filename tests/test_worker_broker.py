"""Broker with several workers: load spreading, heartbeats, a killed worker, CURVE."""
import os
import signal
import subprocess
import sys
import threading

import time

import msgpack
import numpy as np
import pytest
import zmq

from gensemcom.worker import wire
from gensemcom.worker.broker import Broker
from gensemcom.worker.client import WorkerClient, WorkerError, WorkerUnavailable
from gensemcom.worker.registry import METHODS
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
        # more than one: a request alone on a lost worker is never re-sent (it may be what killed it)
        wait_for(lambda: by_pid(broker, victim.pid)["outstanding"] >= 2, what="requests on the victim")
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


# ------------------------------------------------------------------ poison requests
def _in_process_workers(broker, names, registry=None):
    workers = [WorkerServer(connect_broker=broker.backend_endpoint, heartbeat_ms=HB_MS, device="cpu",
                            registry=registry, name=name).start() for name in names]
    wait_for(lambda: set(names) <= set(worker_names(broker)), what=f"workers {names} to join")
    return workers


def test_poison_meta_does_not_take_down_the_pool(broker):
    workers = _in_process_workers(broker, ["w0", "w1"])
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(broker.frontend_endpoint)
    try:
        poison = [msgpack.packb({"v": 1, "id": 9, "k": "req", "m": "tiny_encode", "p": "", "meta": {"a": 1, b"b": 2},
                                 "a": [["image", "float32", [1, 3, 4, 4]]]}, use_bin_type=True), bytes(192)]
        sock.send_multipart(poison)
        assert sock.poll(10000), "the pool went silent"
        reply = wire.decode(sock.recv_multipart())
        assert (reply.kind, reply.code, reply.request_id) == ("err", "bad_meta", 9)
        st = broker.status()
        assert sorted(worker_names(broker)) == ["w0", "w1"] and "workers_lost" not in st["requests"]
        assert sum(w["dispatched"] for w in st["workers"]) == 1  # an error reply is forwarded, never retried
        with WorkerClient(broker.frontend_endpoint, timeout_ms=5000, retries=0) as c:
            for _ in range(4):
                assert c.call("echo", {"x": np.arange(2)})["x"].tolist() == [0, 1]
        assert [w["answered"] for w in broker.status()["workers"]] in ([2, 3], [3, 2])
    finally:
        sock.close(0)
        for w in workers:
            w.stop()


@pytest.fixture
def wedging_registry():
    """A registry whose inline ``hang`` blocks the worker's I/O thread (no heartbeats) for 1.5 s."""
    reg = METHODS.copy()
    calls = []

    @reg.register("hang", inline=True)
    def hang(ctx, arrays):
        calls.append(ctx.server.name)
        time.sleep(1.5)
        return arrays

    return reg, calls


def test_request_that_wedges_a_worker_is_answered_not_resent(broker, wedging_registry):
    reg, calls = wedging_registry
    workers = _in_process_workers(broker, ["w0", "w1"], reg)
    try:
        with WorkerClient(broker.frontend_endpoint, timeout_ms=10000, retries=0) as c:
            t0 = time.monotonic()
            with pytest.raises(WorkerError) as err:
                c.call("hang", {"x": np.zeros(1)})
            assert len(calls) == 1  # the second worker never saw it
            assert err.value.code == "worker_lost" and "not re-sent" in err.value.message
            assert time.monotonic() - t0 < 1.5  # answered once the worker went silent, not when it woke
            wait_for(lambda: len(worker_names(broker)) == 2, what="the wedged worker to come back")
            for _ in range(4):
                assert c.call("echo", {"x": np.arange(2)})["x"].tolist() == [0, 1]
        st = broker.status()["requests"]
        assert st["workers_lost"] == 1 and st["error:worker_lost"] == 1 and "redispatched" not in st
    finally:
        for w in workers:
            w.stop()


def test_suspects_run_alone_so_innocents_survive_a_poison(broker, wedging_registry):
    reg, calls = wedging_registry
    (first,) = _in_process_workers(broker, ["w0"], reg)
    others = []
    results, errors = {}, {}

    def call(key, method, **kw):
        try:
            with WorkerClient(broker.frontend_endpoint, timeout_ms=15000, retries=0) as c:
                results[key] = c.call(method, {"x": np.arange(3)}, **kw)["x"].tolist()
        except WorkerError as exc:
            errors[key] = exc.code

    threads = [threading.Thread(target=call, args=("innocent", "wait"), kwargs={"meta": {"delay_ms": 200}})]
    threads[0].start()
    wait_for(lambda: broker.status()["workers"][0]["outstanding"] == 1, what="the innocent request on w0")
    threads.append(threading.Thread(target=call, args=("poison", "hang")))
    threads[1].start()
    wait_for(lambda: broker.status()["workers"][0]["outstanding"] == 2, what="both requests on w0")
    try:
        others = _in_process_workers(broker, ["w1"], reg)  # w1 joins; w0 is about to be lost with both
        for t in threads:
            t.join(30)
        assert results == {"innocent": [0, 1, 2]} and errors == {"poison": "worker_lost"}
        assert len(calls) == 2  # lost with w0 beside the innocent, then convicted alone on one more worker
        assert broker.status()["requests"]["redispatched"] == 2
    finally:
        for w in [first] + others:
            w.stop()
