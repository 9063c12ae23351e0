"""Worker server + client over real loopback sockets: round trips, rejection, timeouts,
retries, tiny models, batching, CURVE, auto-start and the CLI."""
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from gensemcom.worker import wire
from gensemcom.worker.client import WorkerClient, WorkerError, WorkerUnavailable
from gensemcom.worker.registry import METHODS
from gensemcom.worker.security import SecurityError, keygen
from gensemcom.worker.server import WorkerServer
from conftest import wait_for, free_endpoint  # noqa: E402

LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture
def make_server():
    servers = []

    def make(**kw):
        kw.setdefault("bind", LOOPBACK)
        srv = WorkerServer(kw.pop("bind"), **kw).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="module")
def server():
    reg = METHODS.copy()

    @reg.register("boom")
    def boom(ctx, arrays):
        raise RuntimeError("model exploded")

    srv = WorkerServer(LOOPBACK, max_bytes=16 * 1024 * 1024, registry=reg, max_batch=1).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with WorkerClient(server.endpoint, timeout_ms=10000, retries=0) as c:
        yield c


def _array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) > 0.5
    if dt.kind in "iu":
        return rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, size=shape, dtype=dt)
    if dt.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    return rng.standard_normal(shape).astype(dt)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("dtype", list(wire.DTYPES))
def test_echo_every_dtype_and_shape(client, dtype):
    shapes = [(), (0,), (5,), (2, 3), (1, 0, 2), (2, 2, 2, 3)]
    arrays = {f"s{i}": _array(dtype, shape, i) for i, shape in enumerate(shapes)}
    reply = client.call("echo", arrays)
    assert list(reply.arrays) == list(arrays)
    for name, arr in arrays.items():
        assert reply[name].dtype == arr.dtype and reply[name].shape == arr.shape
        np.testing.assert_array_equal(reply[name], arr)


def test_echo_large_8mib(client):
    big = _array(np.float64, (1024, 1024))
    reply = client.call("echo", {"big": big, "small": np.arange(3, dtype=np.int8)})
    np.testing.assert_array_equal(reply["big"], big)
    np.testing.assert_array_equal(reply["small"], np.arange(3, dtype=np.int8))


def test_echo_no_arrays_and_meta(client):
    reply = client.call("echo")
    assert reply.arrays == {} and reply.attempts == 1


# ------------------------------------------------------------------ malformed requests
def _raw(server, frames, timeout_ms=5000):
    """Send raw frames over a DEALER socket and decode the reply."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.endpoint)
    try:
        sock.send_multipart(frames)
        assert sock.poll(timeout_ms), "worker did not answer the malformed request"
        return wire.decode(sock.recv_multipart())
    finally:
        sock.close(0)


def _hdr(**over):
    h = {"v": 1, "id": 77, "k": "req", "m": "echo", "p": "", "a": [["x", "float32", [4]]]}
    h.update(over)
    return msgpack.packb(h)


MALFORMED = {
    "bad header": ([b"\x00\xffnot msgpack"], "bad_header"),
    "header not a map": ([msgpack.packb("echo")], "bad_header"),
    "wrong dtype": ([_hdr(a=[["x", "object", [4]]]), bytes(16)], "bad_dtype"),
    "size mismatch": ([_hdr(), bytes(12)], "size_mismatch"),
    "truncated": ([_hdr(a=[["x", "float32", [4]], ["y", "float32", [1]]]), bytes(16)], "truncated"),
    "unknown method": ([_hdr(m="__import__('os').system", a=[])], "unknown_method"),
    "method too long": ([_hdr(m="x" * 200, a=[])], "bad_header"),
    "unregistered method": ([_hdr(m="os.system", a=[])], "unknown_method"),
    "path as profile": ([_hdr(p="/etc/passwd", a=[])], "bad_profile"),
    "reply kind": ([_hdr(k="ok", a=[])], "bad_kind"),
    "method dtype check": ([_hdr(m="tiny_encode", a=[["image", "int32", [1, 3, 4, 4]]]), bytes(192)], "bad_dtype"),
    "method shape check": ([_hdr(m="tiny_encode", a=[["image", "float32", [1, 2, 4, 4]]]), bytes(128)], "bad_shape"),
    "method array names": ([_hdr(m="tiny_decode", a=[["x", "float32", [1, 4, 1, 1]]]), bytes(16)], "bad_arrays"),
    "bad meta": ([_hdr(m="wait", a=[], meta={"delay_ms": 10**9})], "bad_meta"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_error_and_worker_keeps_serving(server, client, case):
    frames, code = MALFORMED[case]
    reply = _raw(server, frames)
    assert reply.kind == "err" and reply.code == code, reply
    assert reply.error  # names the problem
    np.testing.assert_array_equal(client.call("echo", [np.arange(3)])["x0"], np.arange(3))


def test_oversized_request_rejected(server, client):
    too_big = np.zeros(server.max_bytes // 8 + 1, np.float64)
    with pytest.raises(WorkerError) as err:
        client.call("echo", {"x": too_big})
    assert err.value.code == "oversized" and str(server.max_bytes) in err.value.message
    assert client.call("echo", {"x": np.ones(2)})["x"].sum() == 2


def test_model_exception_becomes_error_reply(server, client):
    with pytest.raises(WorkerError) as err:
        client.call("boom", {"x": np.ones(2)})
    assert err.value.code == "model_error" and "model exploded" in err.value.message
    with pytest.raises(WorkerError) as err:
        client.call("tiny_encode", {"image": np.ones((1, 3, 4, 4), np.float32)}, profile="full")
    assert err.value.code == "model_unavailable"
    assert client.ping()
    errors = client.status()["requests"]
    assert errors["error:model_error"] >= 1


def test_status_reports_counts_models_latency(server, client):
    client.call("tiny_encode", {"image": np.ones((1, 3, 8, 8), np.float32)})
    st = client.status()
    assert st["role"] == "worker" and st["pid"] > 0
    assert {"name": "tiny.autoencoder", "profile": "tiny"}.items() <= st["models"][0].items()
    assert st["queue_depth"] == 0
    assert st["requests"]["method:tiny_encode"] >= 1 and st["requests"]["requests"] >= st["requests"]["ok"]
    assert set(st["latency_ms"]) >= {"p50", "p95", "p99"}
    stats = client.stats()
    assert stats["requests"] >= stats["ok"] > 0 and stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]


# ------------------------------------------------------------------ tiny model and batching
def _local_model():
    from gensemcom.worker.models import build_tiny_autoencoder
    return build_tiny_autoencoder()


def test_tiny_model_output_matches_local_model(client):
    import torch

    x = np.random.default_rng(3).random((2, 3, 16, 12), dtype=np.float32)
    latent = client.call("tiny_encode", {"image": x})["latent"]
    image = client.call("tiny_decode", {"latent": latent})["image"]
    model = _local_model()
    with torch.no_grad():
        want_latent = model.encode(torch.from_numpy(x)).numpy()
        want_image = model.decode(torch.from_numpy(np.array(latent))).numpy()
    assert latent.shape == (2, 4, 4, 3) and image.shape == (2, 3, 16, 12)
    np.testing.assert_allclose(latent, want_latent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(image, want_image, rtol=1e-5, atol=1e-6)
    assert not np.allclose(latent, 0) and np.ptp(image) > 0


def test_concurrent_requests_are_batched(make_server):
    import torch

    srv = make_server(max_batch=4, max_wait_ms=10000)  # 4 arrivals complete the batch long before the wait
    xs = [np.random.default_rng(i).random((1, 3, 8, 8), dtype=np.float32) for i in range(4)]
    out = [None] * 4
    with WorkerClient(srv.endpoint, timeout_ms=30000, retries=0) as c:
        def one(i):
            out[i] = c.call("tiny_encode", {"image": xs[i]})["latent"]
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        batching = c.status()["batching"]
    assert batching["histogram"] == {"4": 1} and batching["batches"] == 1 and batching["max_seen"] == 4
    model = _local_model()
    for x, got in zip(xs, out):
        with torch.no_grad():
            np.testing.assert_allclose(got, model.encode(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ availability
def test_no_worker_raises_unavailable_in_bounded_time():
    with WorkerClient(free_endpoint(), timeout_ms=200, retries=1) as c:
        t0 = time.monotonic()
        with pytest.raises(WorkerUnavailable, match="2 attempts"):
            c.call("echo", {"x": np.zeros(3)})
        assert time.monotonic() - t0 < 10
        assert c.stats()["unavailable"] == 1 and c.stats()["retries"] == 1


def test_retry_reaches_restarted_worker(make_server):
    first = make_server()
    endpoint = first.endpoint
    with WorkerClient(endpoint, timeout_ms=150, retries=100) as c:
        assert c.ping()
        first.stop()
        result = {}
        t = threading.Thread(target=lambda: result.update(r=c.call("echo", {"x": np.arange(4)})))
        t.start()
        wait_for(lambda: c.stats()["retries"] >= 1, what="a retry")
        make_server(bind=endpoint)  # same port: the restarted worker
        t.join(30)
        np.testing.assert_array_equal(result["r"]["x"], np.arange(4))
        assert result["r"].attempts >= 2 and c.stats()["retries"] >= 1


def test_client_is_thread_safe(client):
    errors = []

    def hammer(k):
        try:
            for i in range(20):
                x = np.full(8, k * 100 + i, np.int32)
                np.testing.assert_array_equal(client.call("echo", {"x": x})["x"], x)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_auto_started_local_worker_is_terminated():
    c = WorkerClient(None, timeout_ms=5000)
    try:
        proc = c.local.proc
        assert c.address.startswith("tcp://127.0.0.1:")
        assert c.call("echo", {"x": np.ones(2)})["x"].sum() == 2
    finally:
        c.close()
    assert proc.poll() is not None


# ------------------------------------------------------------------ security
def test_curve_refuses_client_without_key(make_server, tmp_path):
    keys = tmp_path / "keys"
    keygen(keys)
    keygen(tmp_path / "intruder")
    srv = make_server(curve_keys=str(keys))
    with WorkerClient(srv.endpoint, curve_keys=str(keys), timeout_ms=5000) as good:
        assert good.call("echo", {"x": np.arange(3)})["x"].tolist() == [0, 1, 2]
    with WorkerClient(srv.endpoint, timeout_ms=300, retries=0) as plain:
        with pytest.raises(WorkerUnavailable):
            plain.call("echo", {"x": np.arange(3)})
    # right server key, but a client key the server never authorized
    (tmp_path / "intruder" / "server.key").write_bytes((keys / "server.key").read_bytes())
    with WorkerClient(srv.endpoint, curve_keys=str(tmp_path / "intruder"), timeout_ms=300, retries=0) as bad:
        with pytest.raises(WorkerUnavailable):
            bad.call("echo", {"x": np.arange(3)})
    assert srv.running


def test_non_loopback_bind_requires_curve():
    with pytest.raises(SecurityError, match="keygen"):
        WorkerServer("tcp://0.0.0.0:*")


# ------------------------------------------------------------------ command line
def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "gensemcom.worker", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_status_help_keygen_and_refusal(server, tmp_path):
    out = _cli("--status", server.endpoint)
    assert out.returncode == 0, out.stderr
    assert "worker pid" in out.stdout and "latency ms" in out.stdout and "queue depth" in out.stdout
    assert _cli("--status", server.endpoint, "--json").stdout.lstrip().startswith("{")
    assert _cli("--status", free_endpoint(), "--timeout-ms", "200").returncode == 2
    help_text = _cli("--help").stdout
    for flag in ("--bind", "--connect-broker", "--profile", "--device", "--max-batch", "--max-wait-ms",
                 "--curve-keys", "--status", "keygen", "broker"):
        assert flag in help_text
    assert _cli("keygen", str(tmp_path / "k")).returncode == 0 and (tmp_path / "k" / "server.key").exists()
    refused = _cli("--bind", "tcp://0.0.0.0:*")
    assert refused.returncode == 1 and "CURVE" in refused.stderr


def test_cli_hooks_integrate_with_another_parser():
    import argparse

    from gensemcom.worker import cli

    parser = argparse.ArgumentParser(prog="gensemcom")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    cli.add_broker_parser(sub)
    args = parser.parse_args(["worker", "--bind", "tcp://127.0.0.1:7000", "--profile", "embedded", "--device", "cpu",
                              "--max-batch", "4", "--max-wait-ms", "1.5", "--curve-keys", "/k"])
    assert (args.command, args.bind, args.profile, args.device, args.max_batch, args.max_wait_ms,
            args.curve_keys, args.worker_mode, args.func) == (
        "worker", "tcp://127.0.0.1:7000", "embedded", "cpu", 4, 1.5, "/k", None, cli.run)
    args = parser.parse_args(["worker", "--connect-broker", "tcp://h:1"])
    assert args.connect_broker == "tcp://h:1"
    assert parser.parse_args(["worker", "keygen", "/tmp/k"]).worker_mode == "keygen"
    assert parser.parse_args(["worker", "broker", "--frontend", "tcp://127.0.0.1:1"]).worker_mode == "broker"
    args = parser.parse_args(["broker", "--backend", "tcp://127.0.0.1:2"])
    assert (args.worker_mode, args.backend, args.func) == ("broker", "tcp://127.0.0.1:2", cli.run)
    assert cli.run(parser.parse_args(["worker", "--bind", "tcp://*:0"])) == 1  # refused without CURVE
