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
    # these two once killed the I/O thread (the process kept its port and never answered again)
    "meta keys str and bytes": ([_hdr(m="tiny_encode", a=[["image", "float32", [1, 3, 4, 4]]],
                                      meta={"a": 1, b"b": 2}), bytes(192)], "bad_meta"),
    "empty array, absurd dims": ([_hdr(a=[["x", "float64", [0, 2**39, 2**39]]]), b""], "bad_shape"),
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


# ------------------------------------------------------------------ hostile input and faults
def test_meta_with_bytes_keys_cannot_silence_the_worker(make_server):
    srv = make_server()
    poison = [msgpack.packb({"v": 1, "id": 5, "k": "req", "m": "tiny_encode", "p": "", "meta": {"a": 1, b"b": 2},
                             "a": [["image", "float32", [1, 3, 4, 4]]]}, use_bin_type=True), bytes(192)]
    for _ in range(3):
        reply = _raw(srv, poison)
        assert (reply.kind, reply.code, reply.request_id) == ("err", "bad_meta", 5)
    with WorkerClient(srv.endpoint, timeout_ms=5000, retries=0) as c:
        assert c.ping(2000)
        assert c.call("echo", {"x": np.arange(3)})["x"].tolist() == [0, 1, 2]
        assert c.status()["requests"]["error:bad_meta"] == 3


def test_unforeseen_exception_on_the_request_path_is_answered(make_server, monkeypatch):
    from gensemcom.worker import server as server_mod

    def broken_batch_key(msg, profile):
        raise TypeError("a bug on the request path")

    monkeypatch.setattr(server_mod, "batch_key", broken_batch_key)
    srv = make_server()
    with WorkerClient(srv.endpoint, timeout_ms=5000, retries=0) as c:
        for _ in range(2):
            with pytest.raises(WorkerError) as err:
                c.call("tiny_encode", {"image": np.zeros((1, 3, 4, 4), np.float32)})
            assert err.value.code == "internal_error" and "TypeError: a bug on the request path" in err.value.message
        assert c.call("echo", {"x": np.ones(2)})["x"].sum() == 2  # the I/O thread still serves
        assert c.status()["requests"]["error:internal_error"] == 2


def test_compute_loop_survives_a_failure_outside_the_handler(make_server, monkeypatch):
    from gensemcom.worker import server as server_mod

    def lost_device(device):
        raise RuntimeError("CUDA device lost")

    srv = make_server()
    monkeypatch.setattr(server_mod, "resolve_device", lost_device)
    with WorkerClient(srv.endpoint, timeout_ms=5000, retries=0) as c:
        with pytest.raises(WorkerError) as err:
            c.call("wait", {"x": np.ones(2)}, meta={"delay_ms": 0})
        assert "CUDA device lost" in err.value.message
        monkeypatch.undo()
        srv._device_req = "cpu"
        assert c.call("wait", {"x": np.ones(2)}, meta={"delay_ms": 0})["x"].sum() == 2  # compute thread alive


def test_status_is_answered_while_a_model_computes(server, client):
    done = {}
    t = threading.Thread(target=lambda: done.update(r=client.call("wait", {"x": np.arange(3)},
                                                                  meta={"delay_ms": 1500})))
    t.start()
    with WorkerClient(server.endpoint, timeout_ms=5000, retries=0) as other:
        wait_for(lambda: server.batcher.depth() >= 1, what="the wait request to compute")
        t0 = time.monotonic()
        st = other.status()
        status_s = time.monotonic() - t0
        t0 = time.monotonic()
        alive = other.ping(500)
        ping_s = time.monotonic() - t0
    assert st["queue_depth"] >= 1 and "r" not in done  # answered while the model was still busy
    assert status_s < 0.5 and alive and ping_s < 0.5, (status_s, ping_s)
    t.join(10)
    assert done["r"]["x"].tolist() == [0, 1, 2]


def test_ping_tells_a_live_worker_from_a_dead_or_wedged_one(server):
    wedged = zmq.Context.instance().socket(zmq.ROUTER)  # holds its port, never answers (like a dead I/O thread)
    wedged.linger = 0
    wedged.bind(LOOPBACK)
    try:
        for endpoint, want in [(server.endpoint, True), (wedged.last_endpoint.decode(), False),
                               (free_endpoint(), False)]:
            with WorkerClient(endpoint, timeout_ms=10000, retries=3) as c:
                t0 = time.monotonic()
                assert c.ping(300) is want
                assert time.monotonic() - t0 < 2.0  # its own short timeout, no retries
                assert c.stats()["requests"] == 0 and c.stats()["failures"] == 0  # pings are not calls
            assert c.ping(300) is False  # closed: False, never an exception
    finally:
        wedged.close(0)


# property-based: a running server answers every mutated request and keeps serving legitimate ones
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                     st.text(max_size=6), st.binary(max_size=6))
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3)
                       | st.dictionaries(st.one_of(st.text(max_size=4), st.binary(max_size=3)), c, max_size=3),
                       max_leaves=8)
_dims = st.one_of(st.integers(0, 3), st.sampled_from([0, 2**39, 2**40, -1]))
_MUTATIONS = ["meta", "meta", "meta", "field", "shape", "shape", "dtype", "name", "frames", "bytes", "method"]
_keys = st.one_of(st.text(max_size=6), st.binary(max_size=3))
_mixed = st.tuples(st.text(max_size=4), st.binary(max_size=3), _values, _values).map(
    lambda t: {t[0]: t[2], t[1]: t[3]})  # str and bytes keys together
_metas = st.one_of(st.dictionaries(_keys, _values, max_size=3), _values, _mixed, _mixed)
_shapes = st.one_of(st.lists(_dims, max_size=3), st.sampled_from([[0, 2**39, 2**39], [2**39], [0] + [2**39] * 7]))


@st.composite
def _mutated_requests(draw):
    """A valid request of one of the test methods, then 1 to 3 mutations of its header or frames."""
    method = draw(st.sampled_from(["echo", "status", "double", "double", "boom", "nap"]))
    n = draw(st.integers(1, 3))
    header = {"v": 1, "id": draw(st.integers(0, 2**31)), "k": "req", "m": method, "p": "",
              "a": [] if method == "status" else [["x", "float32", [n]]]}
    bufs = [] if method == "status" else [bytes(4 * n)]
    kinds = draw(st.lists(st.sampled_from(_MUTATIONS), min_size=1, max_size=3))
    for kind in kinds:
        if kind == "meta":
            header["meta"] = draw(_metas)
        elif kind == "field":
            header[draw(st.sampled_from(["v", "id", "k", "m", "p", "a", "meta"]))] = draw(_values)
        elif kind in ("shape", "dtype", "name") and isinstance(header.get("a"), list) and header["a"] and \
                isinstance(header["a"][0], list) and len(header["a"][0]) == 3:
            desc = header["a"][0]
            if kind == "shape":  # the declaration lies; the frame may or may not follow it
                desc[2] = draw(_shapes)
                if bufs and draw(st.booleans()) and all(isinstance(d, int) and d >= 0 for d in desc[2]) \
                        and np.prod(desc[2], dtype=object) < 1024:
                    bufs[0] = bytes(4 * int(np.prod(desc[2], dtype=object)))
            elif kind == "dtype":
                desc[1] = draw(st.sampled_from(["int32", "float64", "uint8", "object", "O", ""]))
            else:
                desc[0] = draw(st.sampled_from(["", "../x", "y", "x" * 70]))
        elif kind == "frames":
            bufs = bufs[:-1] if bufs and draw(st.booleans()) else bufs + [draw(st.binary(max_size=8))]
        elif kind == "method":
            header["m"] = draw(st.sampled_from(["echo", "double", "nap", "nope", "status", "boom"]))
    try:
        head = msgpack.packb(header, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        head = b"\xc1"
    if "bytes" in kinds:  # damaged header bytes
        pos = draw(st.integers(0, len(head) - 1))
        head = head[:pos] + bytes([draw(st.integers(0, 255))]) + head[pos + 1:]
    return [head] + bufs


@pytest.fixture(scope="module")
def fuzz_server():
    from gensemcom.worker.methods import echo, status
    from gensemcom.worker.registry import ArraySpec, MethodRegistry

    reg = MethodRegistry()
    reg.register("echo", inline=True)(echo)
    reg.register("status", inline=True, inputs=[])(status)
    reg.register("double", batchable=True, inputs=[ArraySpec("x", ("float32",), max_elems=4096)])(
        lambda ctx, a: {"y": a["x"] * 2})
    reg.register("nap")(lambda ctx, a: time.sleep(0.001) or a)

    @reg.register("boom")
    def boom(ctx, arrays):
        raise ValueError("boom")

    srv = WorkerServer(LOOPBACK, registry=reg, device="cpu", max_batch=4, max_wait_ms=1).start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(srv.endpoint)
    yield srv, sock
    sock.close(0)
    srv.stop()


def _next_reply(sock, timeout_ms=5000):
    assert sock.poll(timeout_ms), "the worker did not answer"
    frames = sock.recv_multipart()
    while frames and not frames[0]:  # a first empty frame was taken for a REQ envelope
        frames = frames[1:]
    return wire.decode(frames)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(frames=_mutated_requests(), n=st.integers(1, 8))
def test_server_answers_every_mutated_request(fuzz_server, frames, n):
    srv, sock = fuzz_server
    sock.send_multipart(frames)
    reply = _next_reply(sock)
    assert reply.kind in ("ok", "err") and (reply.kind == "ok" or reply.code)
    assert reply.code != "internal_error", reply.error  # every failure is a foreseen one
    x = np.arange(n, dtype=np.float32)
    sock.send_multipart(wire.encode_request(2**40 + n, "double", {"x": x}))  # a legitimate request in between
    legit = _next_reply(sock)
    assert legit.request_id == 2**40 + n and legit.kind == "ok", legit
    np.testing.assert_array_equal(legit.arrays["y"], 2 * x)
