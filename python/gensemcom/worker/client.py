"""Client of the inference worker, as used by GNU Radio blocks.

:class:`WorkerClient` sends one request at a time per thread over a REQ
socket, with a timeout and bounded retries on a fresh socket (ZMQ guide
"lazy pirate"). It raises :class:`WorkerUnavailable` when no worker answers
and :class:`WorkerError` for error replies, and keeps statistics.

If no address is given it starts a local worker process itself
(:class:`LocalWorker`: ``python -m gensemcom.worker`` on a free loopback port),
waits until it answers and terminates it at exit, so a demo needs no manual step.
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import zmq

from . import wire
from .security import CurveKeys
from .stats import Counters

log = logging.getLogger(__name__)

READY_PREFIX = "GENSEMCOM_WORKER_READY "


class WorkerUnavailable(RuntimeError):
    """No worker answered within the timeout after all retries."""


class WorkerError(RuntimeError):
    """The worker answered with an error reply.

    Args:
        code: Error code from the reply (e.g. ``unknown_method``, ``bad_dtype``).
        message: The worker's explanation.
        method: Method of the failed request.
    """

    def __init__(self, code: str, message: str, method: str = ""):
        super().__init__(f"{method or 'request'} failed [{code}]: {message}")
        self.code = code
        self.message = message
        self.method = method


@dataclass
class Reply:
    """A successful reply.

    Attributes:
        arrays: Output arrays by name (read-only views on the received frames).
        meta: Small dict of plain values from the worker.
        latency_s: Round-trip time of the successful attempt plus earlier ones.
        request_id: Id of the request.
        attempts: How many sends it took.
    """

    arrays: Dict[str, np.ndarray]
    meta: Dict[str, Any]
    latency_s: float
    request_id: int
    attempts: int = 1

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def _package() -> str:
    """Importable name of this package (``gensemcom.worker`` or ``gnuradio.gensemcom.worker``)."""
    return __name__.rsplit(".", 1)[0]


def _package_root() -> str:
    """Directory to put on PYTHONPATH so the subprocess imports this same package.

    For ``gnuradio.gensemcom`` that is the folder holding our ``gnuradio/gensemcom``
    (``/usr/local/lib/python3.11/dist-packages``), not the one holding GNU Radio's own
    ``gnuradio`` package (``/usr/lib/python3/dist-packages``): putting Debian's
    dist-packages first would shadow a venv's torch dependencies (sympy) in the worker.
    """
    name = _package().rsplit(".", 1)[0]  # gensemcom or gnuradio.gensemcom
    return str(Path(sys.modules[name].__file__).resolve().parents[name.count(".") + 1])


class LocalWorker:
    """A worker subprocess on a free loopback port, terminated at exit.

    Args:
        args: Extra command-line arguments for ``python -m gensemcom.worker``
            (e.g. ``["--profile", "tiny", "--max-batch", "4"]``).
        startup_timeout_s: Longest wait for the worker to announce its port.
        python: Interpreter (default: this one).

    Raises:
        WorkerUnavailable: If the process exits or stays silent at start-up.
    """

    def __init__(self, args: Sequence[str] = (), startup_timeout_s: float = 60.0,
                 python: Optional[str] = None):
        cmd = [python or sys.executable, "-m", _package(), "--bind", "tcp://127.0.0.1:*", "--announce",
               "--exit-with-parent", *args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self._finalizer = weakref.finalize(self, LocalWorker._terminate, self.proc)
        atexit.register(self._finalizer)
        self.address = self._wait_ready(startup_timeout_s)
        log.info("started local worker pid %d on %s", self.proc.pid, self.address)

    def _wait_ready(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        buf = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    if line.startswith(READY_PREFIX):
                        return line[len(READY_PREFIX):].strip()
            elif self.proc.poll() is not None:
                break
        code = self.proc.poll()
        self.stop()
        raise WorkerUnavailable(f"local worker {' '.join(self.cmd)} did not start "
                                f"(exit code {code}, waited {timeout_s:.0f} s)")

    @property
    def pid(self) -> int:
        """Process id of the worker."""
        return self.proc.pid

    @staticmethod
    def _terminate(proc: subprocess.Popen, timeout: float = 5.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop(self) -> None:
        """Terminate the worker (SIGTERM, then SIGKILL after 5 s)."""
        self._finalizer()


class WorkerClient:
    """Thread-safe client of a worker or broker.

    Each thread gets its own REQ socket; statistics are shared.

    Args:
        address: Worker or broker frontend endpoint; ``None`` or ``""`` starts a
            :class:`LocalWorker` (stopped by :meth:`close` or at exit).
        profile: Model profile sent with each request (``""``: worker default).
        timeout_ms: Wait for each attempt.
        retries: Extra attempts, each on a fresh socket, after a timeout.
        curve_keys: CURVE key directory (client key pair plus server public key).
        max_bytes: Largest reply accepted.
        local_args: Extra arguments for an auto-started local worker.
        startup_timeout_s: Longest wait for an auto-started worker.
        liveness_ms: While a call waits for its reply, :meth:`ping` the worker every
            ``liveness_ms``; two failed pings in a row end the call at once with
            :class:`WorkerUnavailable` (a dead, absent or wedged worker, or no ZMQ
            server at all), however long ``timeout_ms`` is. A busy worker answers
            pings, so a long model call is not cut short. None: no probing.

    Example:
        >>> with WorkerClient("tcp://127.0.0.1:5555") as client:   # doctest: +SKIP
        ...     reply = client.call("echo", {"x": np.arange(4, dtype=np.float32)})
    """

    def __init__(self, address: Optional[str] = None, *, profile: str = "", timeout_ms: int = 5000,
                 retries: int = 2, curve_keys: Optional[str] = None, max_bytes: int = wire.DEFAULT_MAX_BYTES,
                 local_args: Sequence[str] = (), startup_timeout_s: float = 60.0,
                 liveness_ms: Optional[int] = None):
        if profile and profile not in wire.PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {', '.join(wire.PROFILES)}")
        if timeout_ms <= 0 or retries < 0:
            raise ValueError("timeout_ms must be > 0 and retries >= 0")
        self.local: Optional[LocalWorker] = None
        if not address:
            self.local = LocalWorker(local_args, startup_timeout_s)
            address = self.local.address
        self.address = address
        self.profile = profile
        self.timeout_ms = int(timeout_ms)
        self.retries = int(retries)
        self.max_bytes = max_bytes
        self.liveness_ms = int(liveness_ms) if liveness_ms else None
        self.keys = CurveKeys(curve_keys) if curve_keys else None
        self.counters = Counters()
        self._ctx = zmq.Context()
        self._local = threading.local()
        self._sockets: List[zmq.Socket] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(random.randrange(1, 2**31))
        self._closed = False

    # ------------------------------------------------------------------ sockets
    def _new_socket(self) -> zmq.Socket:
        with self._lock:
            if self._closed:
                raise WorkerUnavailable("client is closed")
            sock = self._ctx.socket(zmq.REQ)
            sock.linger = 0
            sock.sndtimeo = self.timeout_ms
            if self.keys is not None:
                self.keys.apply_client(sock)
            sock.connect(self.address)
            self._sockets.append(sock)
        self._local.sock = sock
        return sock

    def _drop_socket(self, sock: zmq.Socket) -> None:
        with self._lock:
            if sock in self._sockets:
                self._sockets.remove(sock)
        sock.close(0)
        self._local.sock = None

    # ------------------------------------------------------------------ calls
    def call(self, method: str, arrays: wire.ArraysLike = None, *, profile: Optional[str] = None,
             meta: Optional[Mapping[str, Any]] = None, timeout_ms: Optional[int] = None,
             retries: Optional[int] = None) -> Reply:
        """Send one request and wait for its reply.

        The arrays are sent zero-copy: do not modify them until ``call`` returns.

        Args:
            method: Registered method name (``echo``, ``status``, ``tiny_encode``...).
            arrays: Dict name -> array, sequence of arrays (named ``x0``...), or None.
            profile: Override the client's model profile.
            meta: Small dict of plain options for the method.
            timeout_ms: Override the per-attempt timeout.
            retries: Override the number of retries.

        Returns:
            The :class:`Reply`.

        Raises:
            WorkerUnavailable: No reply after ``1 + retries`` attempts.
            WorkerError: The worker answered with an error.
            wire.WireError: The arrays cannot be encoded (unsupported dtype).
        """
        timeout = int(timeout_ms or self.timeout_ms)
        tries = 1 + (self.retries if retries is None else int(retries))
        rid = next(self._ids) & 0x7FFFFFFFFFFFFFFF
        frames = wire.encode_request(rid, method, arrays, profile=self.profile if profile is None else profile,
                                     meta=meta)
        self.counters.inc("requests")
        t0 = time.perf_counter()
        for attempt in range(1, tries + 1):
            sock = getattr(self._local, "sock", None) or self._new_socket()
            if attempt > 1:
                self.counters.inc("retries")
            try:
                sock.send_multipart(frames, copy=False)
                if self._wait(sock, timeout, method):
                    reply = sock.recv_multipart(copy=False)
                    return self._finish(reply, rid, method, t0, attempt)
            except zmq.ZMQError as exc:
                log.debug("attempt %d of %s to %s: %s", attempt, method, self.address, exc)
            except _Mismatch:
                pass
            # lazy pirate: the REQ socket is stuck waiting; throw it away
            self._drop_socket(sock)
            log.debug("no reply to %s from %s within %d ms (attempt %d/%d)", method, self.address, timeout,
                      attempt, tries)
        self.counters.inc("failures")
        self.counters.inc("unavailable")
        raise WorkerUnavailable(f"no worker answered {method!r} at {self.address} "
                                f"({tries} attempts x {timeout} ms)")

    def _wait(self, sock: zmq.Socket, timeout: int, method: str) -> bool:
        """Wait up to ``timeout`` ms for a reply on ``sock``; with :attr:`liveness_ms`,
        probe the worker meanwhile and give up at once when it is gone."""
        if not self.liveness_ms or timeout <= self.liveness_ms:
            return bool(sock.poll(timeout, zmq.POLLIN))
        deadline = time.monotonic() + timeout / 1e3
        misses = 0
        while True:
            left = int((deadline - time.monotonic()) * 1e3)
            if left <= 0:
                return False
            if sock.poll(min(left, self.liveness_ms), zmq.POLLIN):
                return True
            misses = 0 if self.ping(min(self.liveness_ms, 2000)) else misses + 1
            if misses >= 2:
                self._drop_socket(sock)
                self.counters.inc("failures")
                self.counters.inc("unavailable")
                raise WorkerUnavailable(f"the worker at {self.address} does not answer (waiting for {method!r}: "
                                        f"two liveness probes {self.liveness_ms} ms apart failed)")

    def _finish(self, frames: List[Any], rid: int, method: str, t0: float, attempt: int) -> Reply:
        try:
            msg = wire.decode(frames, self.max_bytes)
        except wire.WireError as exc:
            self.counters.inc("failures")
            raise WorkerError(exc.code, f"malformed reply: {exc.message}", method) from None
        if msg.request_id != rid and msg.request_id != 0:
            raise _Mismatch()
        latency = time.perf_counter() - t0
        self.counters.latency(latency)
        if msg.kind == wire.KIND_ERROR:
            self.counters.inc("failures")
            self.counters.inc("error_replies")
            raise WorkerError(msg.code, msg.error, method)
        self.counters.inc("ok")
        return Reply(msg.arrays, msg.meta, latency, rid, attempt)

    def status(self, timeout_ms: Optional[int] = None) -> Dict[str, Any]:
        """Return the worker's (or broker's) status map."""
        return self.call("status", timeout_ms=timeout_ms).meta

    def ping(self, timeout_ms: int = 1000) -> bool:
        """Tell a live worker (or broker) from a dead or wedged one.

        Sends ``status`` once, on a fresh socket of its own (not the calling
        thread's, so a call in progress elsewhere is not disturbed), and waits at
        most ``timeout_ms``. A worker answers ``status`` on its I/O thread even
        while a model computes, so a *busy* worker answers at once; a worker whose
        process died or whose I/O thread is stuck does not. Pings are not counted
        in :meth:`stats`.

        Args:
            timeout_ms: Longest wait for the reply.

        Returns:
            True if a well-formed ``status`` reply to this ping arrived in time,
            else False; never raises.
        """
        sock = None
        try:
            with self._lock:
                if self._closed:
                    return False
                sock = self._ctx.socket(zmq.REQ)
            sock.linger = 0
            sock.sndtimeo = max(1, int(timeout_ms))
            if self.keys is not None:
                self.keys.apply_client(sock)
            sock.connect(self.address)
            rid = next(self._ids) & 0x7FFFFFFFFFFFFFFF
            sock.send_multipart(wire.encode_request(rid, "status"))
            if not sock.poll(max(1, int(timeout_ms)), zmq.POLLIN):
                return False
            msg = wire.decode(sock.recv_multipart(), self.max_bytes)
            return msg.kind == wire.KIND_OK and msg.request_id == rid
        except Exception as exc:  # whatever went wrong, the answer is "not alive"
            log.debug("ping %s: %s: %s", self.address, type(exc).__name__, exc)
            return False
        finally:
            if sock is not None:
                sock.close(0)

    def stats(self) -> Dict[str, Any]:
        """Client statistics: requests, ok, failures, retries, latency p50/p95/p99 (ms)."""
        snap = self.counters.snapshot()
        counts = snap["counts"]
        return {"address": self.address, "requests": counts.get("requests", 0), "ok": counts.get("ok", 0),
                "failures": counts.get("failures", 0), "retries": counts.get("retries", 0),
                "unavailable": counts.get("unavailable", 0), "error_replies": counts.get("error_replies", 0),
                "latency_ms": snap["latency_ms"]}

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close all sockets and stop an auto-started worker."""
        with self._lock:
            self._closed = True
            socks, self._sockets = self._sockets, []
        for sock in socks:
            sock.close(0)
        self._ctx.term()
        if self.local is not None:
            self.local.stop()

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Mismatch(Exception):
    """A reply to some other request (stale); treated like a timeout."""
