"""The inference worker server: one process keeps models resident and answers requests.

Two threads per server:

* the **I/O thread** owns the ZeroMQ sockets. It decodes and validates every
  request (:mod:`~gensemcom.worker.wire`), answers errors and cheap ``inline``
  methods (``echo``, ``status``) at once, queues the rest, forwards replies
  from the compute thread, and in broker mode exchanges heartbeats;
* the **compute thread** takes queued requests, merges requests of the same
  batchable method, profile and shapes (up to ``max_batch`` requests, waiting
  at most ``max_wait_ms`` after the first arrived), runs the handler once and
  splits the outputs into replies.

Nothing a request carries can stop the server: every failure on the request
path (decoding, validation, batching, the handler, encoding the reply) becomes
an error reply with a documented code (``internal_error`` for anything
unforeseen, logged with its traceback), and both threads catch everything per
message and keep serving.

The server either binds a ROUTER socket that clients (REQ or DEALER) connect
to, or connects a DEALER to a :class:`~gensemcom.worker.broker.Broker`
backend (ZMQ guide "paranoid pirate" worker). Nothing a request carries is
executed or opened as a path: method names go through the registry and model
profiles are one of ``full``, ``embedded``, ``tiny``.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import msgpack
import numpy as np
import zmq

from . import methods as _builtin_methods  # noqa: F401  (registers echo, status, tiny models)
from . import systems as _systems  # noqa: F401  (registers semantic_encode/decode and system models)
from . import wire
from .models import ModelStore, model_names, resolve_device
from .registry import METHODS, CallContext, MethodRegistry, MethodSpec, RequestError
from .security import CurveKeys, check_bind
from .stats import Counters

log = logging.getLogger(__name__)

DEFAULT_BIND = "tcp://127.0.0.1:5555"
POLL_MS = 100

Frames = List[Any]


@dataclass
class Job:
    """One validated request waiting for the compute thread."""

    envelope: Frames
    msg: wire.Message
    spec: MethodSpec
    profile: str
    t0: float
    key: Tuple = field(default=())


def batch_key(msg: wire.Message, profile: str) -> Tuple:
    """Requests with equal keys may be merged into one batch.

    The key holds the method, profile, each array's name, dtype and shape
    without dim 0, and the request's meta (packed canonically; :func:`wire.decode`
    guarantees its keys are strings, so they sort).
    """
    return batch_key_of(msg.method, profile, msg.arrays, msg.meta)


def batch_key_of(method: str, profile: str, arrays: Dict[str, np.ndarray], meta: Dict[str, Any]) -> Tuple:
    """:func:`batch_key` from a request's parts (what Ray Serve replicas group by)."""
    shapes = tuple((n, a.dtype.str, a.shape[1:]) for n, a in arrays.items())
    packed = msgpack.packb(sorted(meta.items()), use_bin_type=True) if meta else b""
    return (method, profile, shapes, packed)


def call_method(spec: MethodSpec, ctx: CallContext,
                parts: List[Dict[str, np.ndarray]]) -> Tuple[List[Dict[str, np.ndarray]], Dict[str, Any]]:
    """Run a registered method once on one or more requests' arrays (merged along dim 0).

    The one place a handler is called: the compute thread, and the replicas of
    :mod:`~gensemcom.worker.ray_serve`, both come here.

    Args:
        spec: The method.
        ctx: Its call context (``batch_size`` is ``len(parts)``).
        parts: Each request's validated arrays; more than one only for batchable methods.

    Returns:
        ``(outputs, meta)``: one output map per part, and the reply meta they share.

    Raises:
        RequestError: From the handler, or ``batch_split`` when outputs cannot be split.
    """
    if len(parts) == 1:
        inputs = parts[0]
    else:
        inputs = {n: np.concatenate([p[n] for p in parts], axis=0) for n in parts[0]}
    result = spec.fn(ctx, inputs)
    out, meta = result if isinstance(result, tuple) else (result, {})
    return split_outputs(wire.as_array_map(out), parts), meta


def split_outputs(out: Dict[str, np.ndarray], parts: List[Dict[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """Split a merged call's outputs along dim 0 into one map per request.

    Args:
        out: The handler's outputs for the merged inputs.
        parts: The requests' inputs (their first array's dim 0 gives each share).

    Returns:
        One output map per part.

    Raises:
        RequestError: ``batch_split`` if an output's dim 0 does not match.
    """
    if len(parts) == 1:
        return [out]
    first_name = next(iter(parts[0]))
    counts = [p[first_name].shape[0] for p in parts]
    total = sum(counts)
    cuts = np.cumsum(counts)[:-1]
    pieces: List[Dict[str, np.ndarray]] = [{} for _ in parts]
    for name, arr in out.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise RequestError("batch_split", f"output {name!r} has shape {list(arr.shape)}, "
                               f"cannot split into a batch of {counts}")
        for part, piece in zip(pieces, np.split(arr, cuts, axis=0)):
            part[name] = piece
    return pieces


class Executor:
    """Where a :class:`WorkerServer` runs its queued (non-inline) methods instead of its compute thread.

    The server keeps the front: sockets, decoding, validation, the queue, error
    replies and counters. An executor only replaces the call of
    :func:`call_method`; :mod:`~gensemcom.worker.ray_serve` forwards it to a Ray
    Serve deployment. Subclasses override :meth:`call` (and may override the rest).

    Attributes:
        concurrency: Batches the server hands to :meth:`call` at once, each
            from its own thread (1: on the compute thread, one at a time).
    """

    concurrency: int = 1

    def start(self, server: "WorkerServer") -> None:
        """Called by :meth:`WorkerServer.start` before serving."""

    def stop(self) -> None:
        """Called by :meth:`WorkerServer.stop`."""

    def call(self, spec: MethodSpec, ctx: CallContext,
             parts: List[Dict[str, np.ndarray]]) -> Tuple[List[Dict[str, np.ndarray]], Dict[str, Any]]:
        """Run one call; same contract as :func:`call_method` (raise RequestError for error replies)."""
        return call_method(spec, ctx, parts)

    def status(self) -> Dict[str, Any]:
        """Extra status (shown under ``executor`` in the server's status)."""
        return {}


class Batcher:
    """Queue of :class:`Job` that hands out batches of compatible requests.

    Args:
        max_batch: Most requests merged into one call (1 disables batching).
        max_wait_s: Longest time to wait for companions after the first request arrived.
    """

    def __init__(self, max_batch: int, max_wait_s: float):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self._q: Deque[Job] = deque()
        self._cond = threading.Condition()
        self._busy = 0

    def put(self, job: Job) -> None:
        """Queue a job."""
        with self._cond:
            self._q.append(job)
            self._cond.notify()

    def depth(self) -> int:
        """Requests queued plus those being computed."""
        with self._cond:
            return len(self._q) + self._busy

    def _collect(self, batch: List[Job]) -> None:
        key = batch[0].key
        for job in [j for j in self._q if j.key == key][: self.max_batch - len(batch)]:
            self._q.remove(job)
            batch.append(job)

    def take(self, stop: threading.Event) -> Optional[List[Job]]:
        """Block until a batch is ready.

        Args:
            stop: When set, return None instead of waiting.

        Returns:
            A non-empty list of jobs sharing one batch key, or None on stop.
        """
        with self._cond:
            while not self._q:
                if stop.is_set():
                    return None
                self._cond.wait(POLL_MS / 1e3)
            batch = [self._q.popleft()]
            if batch[0].spec.batchable and self.max_batch > 1:
                deadline = batch[0].t0 + self.max_wait_s
                while True:
                    self._collect(batch)
                    left = deadline - time.perf_counter()
                    if len(batch) >= self.max_batch or left <= 0 or stop.is_set():
                        break
                    self._cond.wait(left)
            self._busy = len(batch)
            return batch

    def done(self) -> None:
        """Mark the current batch finished."""
        with self._cond:
            self._busy = 0


class WorkerServer:
    """An inference worker serving the method registry over ZeroMQ.

    Args:
        bind: Endpoint to bind (ROUTER), e.g. ``tcp://127.0.0.1:5555``; port
            ``*`` picks a free one (see :attr:`endpoint`). Ignored when
            ``connect_broker`` is given unless set explicitly.
        connect_broker: Broker backend endpoint to connect to instead of binding.
        profile: Default model profile for requests that name none.
        device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda[:N]``.
        max_batch: Most requests merged into one model call.
        max_wait_ms: Longest wait for batch companions after the first request.
        max_bytes: Largest accepted request (header plus buffers).
        curve_keys: CURVE key directory (required for non-loopback binds).
        registry: Method registry (default :data:`~gensemcom.worker.registry.METHODS`).
        heartbeat_ms: Heartbeat interval with the broker.
        liveness: Missed heartbeats before the broker is considered gone.
        capacity: Requests the broker may leave outstanding here (default ``2*max_batch``).
        name: Name shown in status (default ``host:pid``).
        threads: ``torch.set_num_threads`` for CPU inference (None: torch's default,
            all cores; give each of N workers on one CPU host ``cores/N``).
        preload: Models to load (for ``profile``) in :meth:`start`, before serving.
            In broker mode the device (and so torch) is always resolved in
            :meth:`start`: a long import on the compute thread would hold the
            GIL, starve the heartbeats and get the worker declared dead.
        executor: Run queued methods there instead of on the compute thread
            (:class:`Executor`, e.g. :class:`~gensemcom.worker.ray_serve.RayServeExecutor`);
            inline methods and every check and error reply stay in this process.

    Raises:
        SecurityError: If binding a non-loopback address without ``curve_keys``.
        ValueError: On an unknown profile or device.
    """

    def __init__(self, bind: Optional[str] = None, *, connect_broker: Optional[str] = None,
                 profile: str = "tiny", device: str = "auto", max_batch: int = 8, max_wait_ms: float = 2.0,
                 max_bytes: int = wire.DEFAULT_MAX_BYTES, curve_keys: Optional[str] = None,
                 registry: Optional[MethodRegistry] = None, heartbeat_ms: int = 1000, liveness: int = 3,
                 capacity: Optional[int] = None, name: Optional[str] = None, threads: Optional[int] = None,
                 preload: Sequence[str] = (), executor: Optional[Executor] = None):
        if profile not in wire.PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {', '.join(wire.PROFILES)}")
        if bind is None and connect_broker is None:
            bind = DEFAULT_BIND
        if bind is not None:
            check_bind(bind, curve_keys)
        self.bind = bind
        self.connect_broker = connect_broker
        self.profile = profile
        resolve_device(device) if device != "auto" else None  # validate now, import torch later
        self._device_req = device
        self._device: Optional[str] = None if device == "auto" else device
        self.max_bytes = int(max_bytes)
        self.registry = registry or METHODS
        self.heartbeat_s = heartbeat_ms / 1e3
        self.liveness = max(1, int(liveness))
        self.capacity = int(capacity or 2 * max_batch)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.keys = CurveKeys(curve_keys) if curve_keys else None
        self.threads = threads
        self.preload = list(preload)
        self.executor = executor
        self._pool: Any = None
        self.models = ModelStore(lambda: self.device)
        self.batcher = Batcher(max_batch, max_wait_ms / 1e3)
        self.counters = Counters()
        self.endpoint: Optional[str] = None
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._ctx: Optional[zmq.Context] = None
        self._auth = None
        self._t_start = time.time()
        self._results_addr = f"inproc://results-{id(self)}"

    @property
    def device(self) -> str:
        """The torch device (``auto`` is resolved, importing torch, on first use)."""
        if self._device is None:
            self._device = resolve_device(self._device_req)
        return self._device

    def _device_label(self) -> str:
        return self._device or "auto (resolved when a model loads)"

    # ------------------------------------------------------------------ lifecycle
    def start(self, compute_thread: bool = True) -> "WorkerServer":
        """Bind or connect, then start the I/O thread and (by default) the compute thread.

        Args:
            compute_thread: Run the compute loop in a background thread. Pass
                False and call :meth:`serve_forever` from the main thread to
                run models there instead (what the CLI does: PyTorch's OpenMP
                pool is many times slower when first used from another thread).

        Returns:
            self, with :attr:`endpoint` set to the bound address (bind mode).
        """
        if self.connect_broker is not None or self.preload:
            log.info("worker %s: device %s", self.name, self.device)  # resolves it (imports torch) now
        for name in self.preload:
            self.models.get(name, self.profile)
        if self.executor is not None:
            self.executor.start(self)
            if self.executor.concurrency > 1:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.executor.concurrency, thread_name_prefix="gensemcom-exec")
        self._ctx = zmq.Context()
        if self.keys is not None and self.bind is not None:
            self._auth = self.keys.start_authenticator(self._ctx)
        self._results = self._ctx.socket(zmq.PULL)
        self._results.bind(self._results_addr)
        self._front: Optional[zmq.Socket] = None
        if self.connect_broker is None:
            sock = self._ctx.socket(zmq.ROUTER)
            sock.linger = 0
            sock.setsockopt(zmq.MAXMSGSIZE, 4 * self.max_bytes + wire.MAX_HEADER_BYTES)
            if self.keys is not None:
                self.keys.apply_server(sock)
            sock.bind(self.bind)
            self.endpoint = sock.last_endpoint.decode()
            self._front = sock
        else:
            self.endpoint = self.connect_broker
        self._threads = [threading.Thread(target=self._io_loop, name="gensemcom-io", daemon=True)]
        if compute_thread:
            self._threads.append(threading.Thread(target=self._compute_loop, name="gensemcom-compute", daemon=True))
        for t in self._threads:
            t.start()
        log.info("worker %s serving on %s (profile %s, device %s, methods %s)", self.name, self.endpoint,
                 self.profile, self._device_label(), ", ".join(self.registry.names()))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads, close the sockets and terminate the context."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.executor is not None:
            self.executor.stop()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def serve_forever(self) -> None:
        """Run the compute loop in the calling thread until :meth:`request_stop` or Ctrl-C, then stop.

        Starts the server (without a compute thread) if it is not running yet.
        """
        if not self._threads:
            self.start(compute_thread=False)
        try:
            self._compute_loop()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Ask the loops to finish (safe from signal handlers and other threads)."""
        self._stop.set()

    @property
    def running(self) -> bool:
        """True while the I/O thread runs."""
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> "WorkerServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ status
    def status(self) -> Dict[str, Any]:
        """Loaded models, queue depth, request counts and latency percentiles."""
        snap = self.counters.snapshot()
        counts = snap["counts"]
        hist = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("batch_size:")}
        return {
            "role": "worker", "name": self.name, "pid": os.getpid(), "endpoint": self.endpoint,
            "mode": "broker" if self.connect_broker else "bind", "device": self._device_label(),
            "profile": self.profile, "uptime_s": round(time.time() - self._t_start, 3),
            "models": self.models.loaded(), "available_models": model_names(),
            "methods": self.registry.names(), "queue_depth": self.batcher.depth(),
            "requests": {k: v for k, v in counts.items() if not k.startswith("batch_size:")},
            "latency_ms": snap["latency_ms"],
            "batching": {"max_batch": self.batcher.max_batch, "max_wait_ms": self.batcher.max_wait_s * 1e3,
                         "batches": counts.get("batches", 0), "max_seen": max(map(int, hist), default=0),
                         "histogram": hist},
            **({"executor": self.executor.status()} if self.executor is not None else {}),
        }

    def _summary(self) -> Dict[str, Any]:
        snap = self.counters.snapshot()["counts"]
        return {"requests": snap.get("requests", 0), "ok": snap.get("ok", 0), "errors": snap.get("errors", 0),
                "batches": snap.get("batches", 0), "queue_depth": self.batcher.depth(),
                "models": [m["name"] for m in self.models.loaded()]}

    # ------------------------------------------------------------------ request handling
    def _error(self, envelope: Frames, rid: int, method: str, code: str, message: str) -> Frames:
        self.counters.inc("errors")
        self.counters.inc("error:" + code)
        log.debug("error reply %s to request %s (%s): %s", code, rid, method, message)
        return envelope + wire.encode_error(rid, method, code, message)

    def _accept(self, envelope: Frames, body: Frames) -> Optional[Frames]:
        """Validate one request; returns reply frames for errors and inline methods, else queues it.

        Never raises: an unforeseen exception becomes an ``internal_error`` reply.
        """
        t0 = time.perf_counter()
        self.counters.inc("requests")
        rid, method = 0, ""
        try:
            msg = wire.decode(body, self.max_bytes)
            rid, method = msg.request_id, msg.method
            if msg.kind != wire.KIND_REQUEST:
                raise RequestError("bad_kind", f"expected a request, got kind {msg.kind!r}")
            spec = self.registry.get(msg.method)
            spec.check(msg.arrays)
            self.counters.inc("method:" + msg.method)
            profile = msg.profile or self.profile
            job = Job(envelope, msg, spec, profile, t0)
            if spec.inline:
                return self._execute([job])[0]
            if spec.batchable:
                job.key = batch_key(msg, profile)
            self.batcher.put(job)
            return None
        except wire.WireError as exc:
            return self._error(envelope, exc.request_id or rid, method, exc.code, exc.message)
        except RequestError as exc:
            return self._error(envelope, rid, method, exc.code, exc.message)
        except Exception as exc:  # a bug reached by a request: answer it, log it, keep serving
            log.exception("request %s (%s) failed unexpectedly", rid, method)
            return self._internal_error(envelope, rid, method, exc)

    def _internal_error(self, envelope: Frames, rid: int, method: str, exc: BaseException) -> Optional[Frames]:
        try:
            return self._error(envelope, rid, method, "internal_error",
                               f"the worker failed on this request: {type(exc).__name__}: {exc}")
        except Exception:  # not even an error reply can be built (e.g. an id msgpack cannot hold)
            log.exception("cannot build an error reply for request %r", rid)
            try:
                return self._error(envelope, 0, "", "internal_error", f"{type(exc).__name__}")
            except Exception:
                return None

    def handle_request(self, body: Frames) -> Optional[Frames]:
        """Answer one request in the calling thread, without sockets (tests, fuzzing).

        Runs the whole request path of the I/O thread, and for a queued method
        the compute step as well. Use it on a server that was not started.

        Args:
            body: The request frames (header first), as a client sends them.

        Returns:
            The reply frames (``ok`` or ``err``), or None if no reply could be built.
        """
        reply = self._accept([], body)
        if reply is not None:
            return reply
        batch = self.batcher.take(self._stop)
        try:
            replies = self._run_batch(batch or [])
        finally:
            self.batcher.done()
        return replies[0] if replies else None

    def _execute(self, jobs: List[Job]) -> List[Frames]:
        """Run one (possibly merged) call and build the replies; a failure becomes error replies."""
        first = jobs[0]
        spec, msg = first.spec, first.msg
        try:
            device = (self._device or self._device_req) if spec.inline or self.executor else self.device
            ctx = CallContext(first.profile, device, self.models, dict(msg.meta), len(jobs), self)
            parts = [j.msg.arrays for j in jobs]
            if spec.inline or self.executor is None:
                outs, meta = call_method(spec, ctx, parts)
            else:
                outs, meta = self.executor.call(spec, ctx, parts)
            replies = [j.envelope + wire.encode_reply(j.msg.request_id, j.msg.method, o, meta=meta)
                       for j, o in zip(jobs, outs)]
            self.counters.inc("ok", len(jobs))
        except (RequestError, wire.WireError) as exc:
            replies = [self._error(j.envelope, j.msg.request_id, j.msg.method, exc.code, exc.message)
                       for j in jobs]
        except Exception as exc:  # a model failure must never kill the worker
            log.exception("method %s failed", spec.name)
            text = f"{spec.name} raised {type(exc).__name__}: {exc}"
            replies = [self._error(j.envelope, j.msg.request_id, j.msg.method, "model_error", text)
                       for j in jobs]
        if not spec.inline:
            self.counters.inc("batches")
            self.counters.inc(f"batch_size:{len(jobs)}")
        now = time.perf_counter()
        for j in jobs:
            self.counters.latency(now - j.t0)
        return replies

    def _run_batch(self, batch: List[Job]) -> List[Frames]:
        """:meth:`_execute` with a last guard: whatever happens, every job gets a reply."""
        try:
            return self._execute(batch)
        except Exception as exc:
            log.exception("batch of %d %s requests failed unexpectedly", len(batch),
                          batch[0].msg.method if batch else "?")
            replies = [self._internal_error(j.envelope, j.msg.request_id, j.msg.method, exc) for j in batch]
            return [r for r in replies if r is not None]

    # ------------------------------------------------------------------ threads
    def _compute_loop(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(int(self.threads))
        push = self._ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(self._results_addr)
        try:
            while True:
                batch = self.batcher.take(self._stop)
                if batch is None:
                    break
                if self._pool is not None:  # an executor that takes several calls at once
                    self.batcher.done()
                    self._pool.submit(self._run_and_push, batch)
                    continue
                try:
                    replies = self._run_batch(batch)
                finally:
                    self.batcher.done()
                self._push(push, replies)
        except zmq.ContextTerminated:
            pass
        finally:
            push.close(0)

    @staticmethod
    def _push(push: zmq.Socket, replies: List[Frames]) -> None:
        for frames in replies:
            try:
                push.send_multipart(frames, copy=False)
            except zmq.ContextTerminated:
                raise
            except Exception:  # one reply lost is logged, the loop goes on
                log.exception("cannot queue a reply")

    def _run_and_push(self, batch: List[Job]) -> None:
        """One batch on an executor thread; its replies go to the I/O thread through a PUSH of this thread."""
        replies = self._run_batch(batch)
        ctx = self._ctx
        if ctx is None or self._stop.is_set():
            return
        try:
            push = ctx.socket(zmq.PUSH)
        except zmq.ZMQError:
            return
        try:
            push.linger = 1000
            push.connect(self._results_addr)
            self._push(push, replies)
        except zmq.ContextTerminated:
            pass
        finally:
            push.close()

    def _connect_broker(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        if self.keys is not None:
            self.keys.apply_client(sock)
        sock.connect(self.connect_broker)
        info = {"name": self.name, "capacity": self.capacity, "heartbeat_ms": int(self.heartbeat_s * 1e3),
                "liveness": self.liveness, "device": self._device_label(), "profile": self.profile}
        sock.send_multipart([wire.CMD_READY, wire.pack_info(info)])
        return sock

    @staticmethod
    def _split_direct(frames: Frames) -> Tuple[Frames, Frames]:
        """Split a ROUTER message into (envelope, body) for REQ and DEALER clients."""
        if len(frames) >= 2 and len(frames[1]) == 0:
            return frames[:2], frames[2:]
        return frames[:1], frames[1:]

    def _io_loop(self) -> None:
        broker_mode = self.connect_broker is not None
        front = self._connect_broker() if broker_mode else self._front
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(self._results, zmq.POLLIN)
        now = time.monotonic()
        next_hb = now + self.heartbeat_s
        broker_expiry = now + self.heartbeat_s * self.liveness
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(POLL_MS if not broker_mode else
                                          max(1, int(min(POLL_MS / 1e3, self.heartbeat_s) * 1e3))))
                if self._results in events:
                    for _ in range(256):
                        try:
                            front.send_multipart(self._results.recv_multipart(zmq.NOBLOCK, copy=False), copy=False)
                        except zmq.Again:
                            break
                if front in events:
                    for _ in range(256):
                        try:
                            frames = front.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        if broker_mode:
                            broker_expiry = time.monotonic() + self.heartbeat_s * self.liveness
                        reply = self._on_message(frames, broker_mode)
                        if reply == "reconnect":
                            broker_expiry = 0.0
                            break
                        if isinstance(reply, list):
                            try:
                                front.send_multipart(reply, copy=False)
                            except zmq.ContextTerminated:
                                raise
                            except zmq.ZMQError as exc:
                                log.warning("cannot send a reply: %s", exc)
                if broker_mode:
                    now = time.monotonic()
                    if now >= next_hb:
                        front.send_multipart([wire.CMD_HEARTBEAT, wire.pack_info(self._summary())])
                        next_hb = now + self.heartbeat_s
                    if now >= broker_expiry:
                        log.warning("broker %s silent for %d heartbeats, reconnecting", self.connect_broker,
                                    self.liveness)
                        poller.unregister(front)
                        front.close(0)
                        front = self._connect_broker()
                        poller.register(front, zmq.POLLIN)
                        broker_expiry = now + self.heartbeat_s * self.liveness
        except zmq.ContextTerminated:
            return
        except Exception:  # keep the reason visible; the process supervisor restarts us
            log.exception("worker I/O loop failed")
            raise
        finally:
            if broker_mode:
                try:
                    front.send(wire.CMD_DISCONNECT, zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            for sock in (front, self._results):
                try:
                    sock.close(0)
                except zmq.ZMQError:
                    pass

    def _on_message(self, frames: Frames, broker_mode: bool) -> Any:
        """One message from the front socket: reply frames, None or ``"reconnect"``; never raises."""
        try:
            if broker_mode:
                return self._on_broker(frames)
            env, body = self._split_direct(frames)
            return self._accept(env, body)
        except Exception:  # _accept answers its own failures; this only guards the framing
            log.exception("dropped a malformed message of %d frames", len(frames))
            self.counters.inc("errors")
            self.counters.inc("error:internal_error")
            return None

    def _on_broker(self, frames: Frames) -> Any:
        cmd = frames[0].bytes if frames else b""
        if cmd == wire.CMD_REQUEST and len(frames) >= 3:
            return self._accept([wire.CMD_REPLY, frames[1]], frames[2:])
        if cmd == wire.CMD_DISCONNECT:
            return "reconnect"
        return None  # heartbeat or noise
