"""The worker's ZMQ front with its models on Ray Serve (``gensemcom worker --ray``), tiny profile.

One local Ray (2 CPUs) and one Ray front for the whole module, a plain worker beside
it for reference; everything is shut down at the end.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ray.serve")

from gensemcom.worker import wire  # noqa: E402
from gensemcom.worker.client import WorkerClient, WorkerError  # noqa: E402
from gensemcom.worker.ray_serve import RayServeExecutor, SemanticSystemsReplica  # noqa: E402
from gensemcom.worker.server import WorkerServer  # noqa: E402

from conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ray_front():
    executor = RayServeExecutor("local", num_cpus=2, object_store_mb=256, cpus_per_replica=1, threads=1,
                                concurrency=8, max_wait_ms=50)
    server = WorkerServer("tcp://127.0.0.1:*", profile="tiny", device="cpu", max_batch=1, executor=executor)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        import ray

        assert not ray.is_initialized()


@pytest.fixture(scope="module")
def plain_worker():
    with WorkerServer("tcp://127.0.0.1:*", profile="tiny", device="cpu") as server:
        yield server


def _image(seed=0, size=32):
    rng = np.random.default_rng(seed)
    return np.clip(np.cumsum(rng.integers(-8, 9, (size, size, 3)), axis=1) + 128, 0, 255).astype(np.uint8)


def _exchange(address):
    meta = {"system": "deepjscc", "snr_db": 10.0}
    with WorkerClient(address, timeout_ms=120_000, retries=0) as c:
        load = c.call("semantic_load", meta=meta, profile="tiny")
        enc = c.call("semantic_encode", {"image": _image()}, meta=meta, profile="tiny")
        dec_meta = dict(meta, crc_ok=True, segments=enc.meta["segments"])
        dec = c.call("semantic_decode", {k: enc.arrays[k] for k in ("digital", "analog", "header")},
                     meta=dec_meta, profile="tiny")
    return load, enc, dec


def test_semantic_methods_match_the_plain_worker(ray_front, plain_worker):
    load_r, enc_r, dec_r = _exchange(ray_front.endpoint)
    load_p, enc_p, dec_p = _exchange(plain_worker.endpoint)
    assert load_r.meta == load_p.meta
    assert sorted(enc_r.arrays) == sorted(enc_p.arrays)
    np.testing.assert_array_equal(enc_r["digital"], enc_p["digital"])
    np.testing.assert_array_equal(enc_r["header"], enc_p["header"])
    np.testing.assert_allclose(enc_r["analog"], enc_p["analog"], rtol=1e-5, atol=1e-5)
    assert enc_r.meta["segments"] == enc_p.meta["segments"]
    assert dec_r["image"].shape == (32, 32, 3)
    assert np.abs(dec_r["image"].astype(int) - dec_p["image"].astype(int)).max() <= 1
    q = ray_front.executor.status()["queue"]
    assert q["answered"] >= 3 and q["local_session_calls"] == 0 and q["in_flight"] == 0


def test_batchable_method_is_batched_on_the_replica(ray_front):
    import threading

    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    out = []
    info0 = ray_front.executor.handle.info.remote().result()
    barrier = threading.Barrier(6)

    def one():
        with WorkerClient(ray_front.endpoint, timeout_ms=120_000, retries=0) as c:
            c.ping()
            barrier.wait()
            out.append(c.call("tiny_encode", {"image": x})["latent"])

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 6 and all(o.shape == (1, 4, 2, 2) for o in out)
    for o in out[1:]:
        np.testing.assert_allclose(o, out[0], rtol=1e-5, atol=1e-6)
    info = ray_front.executor.handle.info.remote().result()  # one replica: it saw them all
    assert info["calls"] - info0["calls"] == 6
    assert info["batches"] - info0["batches"] < 6  # @serve.batch merged some


def test_replica_batches_by_key_without_ray():
    rep = SemanticSystemsReplica("cpu", threads=1)
    a = np.ones((1, 3, 8, 8), np.float32)
    b = np.ones((2, 3, 4, 4), np.float32)
    answers = rep.run_batched([("tiny_encode", "tiny", {"image": a}, {}), ("tiny_encode", "tiny", {"image": b}, {}),
                               ("tiny_encode", "tiny", {"image": a}, {}), ("nope", "tiny", {}, {})])
    assert [x[0] for x in answers] == ["ok", "ok", "ok", "err"]
    assert answers[0][1][0]["latent"].shape == (1, 4, 2, 2) and answers[1][1][0]["latent"].shape == (2, 4, 1, 1)
    assert answers[3][1] == "unknown_method"
    assert rep.batches == 3 and rep.calls == 4


def test_bad_requests_get_the_same_error_replies(ray_front, plain_worker):
    cases = [("no_such_method", {}, {}), ("semantic_encode", {"image": np.zeros((4, 4), np.uint8)}, {}),
             ("semantic_encode", {"image": _image()}, {"system": "no_such_system"}),
             ("semantic_decode", {"digital": np.zeros(3, np.uint8), "analog": np.zeros(3, np.float32),
                                  "header": np.zeros(3, np.uint8)}, {"system": "deepjscc"})]
    for method, arrays, meta in cases:
        errs = []
        for address in (ray_front.endpoint, plain_worker.endpoint):
            with WorkerClient(address, timeout_ms=60_000, retries=0) as c:
                with pytest.raises(WorkerError) as ei:
                    c.call(method, arrays, meta=meta, profile="tiny")
                # the list of known systems is each process's registry: other tests register toy systems
                # in this process, which the Ray replicas do not import
                errs.append((ei.value.code, str(ei.value).split("; known: ")[0]))
        assert errs[0] == errs[1], (method, errs)
    # hostile bytes: the front's own validation answers, as in a plain worker
    import zmq

    ctx = zmq.Context.instance()
    for address in (ray_front.endpoint, plain_worker.endpoint):
        s = ctx.socket(zmq.REQ)
        s.linger = 0
        s.connect(address)
        s.send_multipart([b"\xff\x00garbage"])
        assert s.poll(10_000)
        msg = wire.decode(s.recv_multipart())
        assert msg.kind == wire.KIND_ERROR
        s.close(0)
    assert ray_front.status()["requests"]["errors"] >= 5


def test_status_lists_the_deployment_and_replicas(ray_front):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    cmd = [sys.executable, "-m", "gensemcom.worker", "--status", ray_front.endpoint]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=True).stdout
    assert "ray serve: app gensemcom (RUNNING)" in text
    assert "deployment SemanticSystems" in text and "RUNNING 1" in text and "queue to ray" in text
    js = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=60, env=env,
                                   check=True).stdout)
    ex = js["executor"]
    assert ex["backend"] == "ray_serve" and ex["replicas"] == {"RUNNING": 1} and ex["deployment"] == "SemanticSystems"


@pytest.mark.flowgraph
def test_flowgraph_through_ray_serve(ray_front, tmp_path):
    pytest.importorskip("gnuradio.gr")
    from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph
    from gensemcom.image_io import save_image

    d = tmp_path / "imgs"
    save_image(d / "img0.png", _image(3, 64))
    before = ray_front.executor.status()["queue"]["answered"]
    rep = run_flowgraph(FlowgraphOptions(system="deepjscc", profile="tiny", images=str(d), snr_db=15.0,
                                         address=ray_front.endpoint, out_dir=str(tmp_path / "out"), timeout_s=120))
    assert [r["image"] for r in rep["images"]] == ["img0"]
    r = rep["images"][0]
    assert r["received"] and r["crc_ok"] is True and r["shape"] == [64, 64, 3]
    q = ray_front.executor.status()["queue"]
    assert q["answered"] - before >= 2 and q["local_session_calls"] == 0  # encode and decode went to Ray


def test_missing_ray_names_the_extra(monkeypatch):
    import builtins

    from gensemcom.worker import ray_serve

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ray_serve.RayUnavailable, match=r"pip install \.\[ray\]"):
        ray_serve.import_ray()


def test_multi_round_session_rounds_stay_in_the_front(ray_front):
    q0 = dict(ray_front.executor.status()["queue"])
    meta = {"system": "task_adaptive", "snr_db": 10.0}
    with WorkerClient(ray_front.endpoint, timeout_ms=120_000, retries=0) as c:
        c.call("semantic_encode", {"image": _image(5, 64)}, meta=dict(meta, session="s1", round=0), profile="tiny")
        c.call("semantic_encode", {"image": _image(5, 64)}, meta=meta, profile="tiny")  # no session: Ray
    q1 = ray_front.executor.status()["queue"]
    assert q1["local_session_calls"] - q0["local_session_calls"] == 1
    assert q1["answered"] - q0["answered"] == 1
