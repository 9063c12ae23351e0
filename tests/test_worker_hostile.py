"""Hostile load: a worker, and a broker with two workers, keep answering legitimate requests
while hostile ones (malformed, lying, poisonous) arrive interleaved; every request gets a reply.

The request generators and the load driver are those of ``bench/fuzz_bench.py`` (which runs
the same check at 1000 + 1000, see ``--hostile``)."""
import importlib.util
import time
from pathlib import Path

import pytest

from gensemcom.worker.broker import Broker
from gensemcom.worker.client import WorkerClient
from gensemcom.worker.server import WorkerServer
from conftest import wait_for  # noqa: E402

N = 100
LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "fuzz_bench.py"
    spec = importlib.util.spec_from_file_location("fuzz_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(result, n=N):
    assert result["legit_ok"] == n, result
    assert result["legit_wrong"] == 0 and result["legit_missing"] == 0, result
    assert result["hostile_replies"] == n and result["hostile_missing"] == 0, result
    assert "internal_error" not in result["codes"], result  # every hostile request failed in a foreseen way


def test_hostile_requests_are_hostile(bench):
    import random

    from gensemcom.worker import wire

    reqs = bench.hostile_requests(random.Random(0), 200)
    codes = set()
    for frames in reqs:
        try:
            wire.decode(frames)
        except wire.WireError as exc:
            codes.add(exc.code)
    assert len(reqs) == 200 and {"bad_header", "bad_meta", "size_mismatch", "bad_shape"} <= codes, codes


def test_worker_keeps_answering_under_hostile_load(bench):
    with WorkerServer(LOOPBACK, device="cpu") as srv:
        result = bench.hostile_load(srv.endpoint, N, N, seed=1, timeout_s=10)
        _check(result)
        with WorkerClient(srv.endpoint, timeout_ms=5000, retries=0) as c:
            assert c.ping(2000)
            assert c.status()["requests"]["requests"] >= 2 * N


def test_broker_pool_keeps_answering_under_hostile_load(bench):
    broker = Broker(LOOPBACK, LOOPBACK, heartbeat_ms=100, liveness=5).start()
    workers = [WorkerServer(connect_broker=broker.backend_endpoint, device="cpu", heartbeat_ms=100,
                            name=f"w{i}").start() for i in range(2)]
    try:
        wait_for(lambda: len(broker.status()["workers"]) == 2, what="two workers")
        t0 = time.monotonic()
        result = bench.hostile_load(broker.frontend_endpoint, N, N, seed=2, timeout_s=10)
        _check(result)
        assert time.monotonic() - t0 < 30
        st = broker.status()
        assert sorted(w["name"] for w in st["workers"]) == ["w0", "w1"]
        assert "workers_lost" not in st["requests"] and "redispatched" not in st["requests"]
        assert all(w["answered"] > 0 for w in st["workers"])  # both kept serving
    finally:
        for w in workers:
            w.stop()
        broker.stop()


def test_fuzz_bench_finds_nothing_undocumented(bench, tmp_path, capsys, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):  # set by the bench; undone here
        monkeypatch.setenv(var, "1")
    out = tmp_path / "fuzz.json"
    assert bench.main(["--n", "300", "--only", "digital", "--only", "wire", "--only", "request", "--quiet",
                       "--strict", "--json", str(out)]) == 0
    import json

    report = json.loads(out.read_text())
    assert [d["decoder"] for d in report["decoders"]] == ["frame.unpack_header", "worker wire.decode",
                                                          "worker request path"]
    for d in report["decoders"]:
        assert d["inputs"] == 300 and d["undocumented"] == 0, d
    assert "undocumented" in capsys.readouterr().out  # the table was printed
