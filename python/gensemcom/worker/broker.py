"""Scale-out: several workers behind one ZeroMQ ROUTER/ROUTER broker.

Follows the ZMQ guide's "paranoid pirate" pattern:

* **frontend** ROUTER: clients (:class:`~gensemcom.worker.client.WorkerClient`,
  REQ sockets) connect here exactly as they would to a single worker;
* **backend** ROUTER: workers (:class:`~gensemcom.worker.server.WorkerServer`
  with ``connect_broker``) connect their DEALER here, announce themselves with
  READY (name, capacity, heartbeat interval) and exchange heartbeats.

The broker gives each request a ticket and sends it to the live worker with the
fewest outstanding requests (below its announced capacity; ties go to the one
idle longest), so load spreads and a worker can still batch. A worker that
misses ``liveness`` heartbeats, or says DISCONNECT, is dropped ("lost"), and a
request it held may be what killed or wedged it, so the broker never hands a
request that could be poison to a healthy worker beside other work:

* a request that was the only one on the lost worker gets an error reply
  ``worker_lost`` at once (it is the prime suspect, and re-sending it could
  take the next worker down too);
* a request that shared the lost worker with others goes back to the head of
  the queue as a *suspect*: it is sent only to an idle worker, alone (nothing
  else is sent there until it is answered), so a second loss convicts it;
* a request lost with ``max_lost`` workers (default 2) is never sent again.

A request a worker answered, error replies included, is forwarded and never
retried. Late replies from a dropped worker are discarded, so a client never
gets two.
Requests wait in a bounded queue while no worker is free; those older than
``request_ttl_s`` get an error reply ``no_worker``.

The broker answers ``status`` itself (role ``broker``: workers with their
counts and last heartbeat summary, queue depth, latency percentiles).
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional

import zmq

from . import wire
from .security import CurveKeys, check_bind
from .stats import Counters

log = logging.getLogger(__name__)

DEFAULT_FRONTEND = "tcp://127.0.0.1:5555"
DEFAULT_BACKEND = "tcp://127.0.0.1:5556"

Frames = List[Any]


@dataclass
class Pending:
    """A client request held by the broker."""

    ticket: bytes
    envelope: Frames
    body: Frames
    request_id: int
    method: str
    t0: float
    attempts: int = 0
    lost: int = 0  # workers that died or went silent while holding it


@dataclass
class WorkerSlot:
    """What the broker knows about one worker."""

    identity: bytes
    name: str
    capacity: int
    expiry_s: float
    expiry: float
    outstanding: Dict[bytes, Pending] = field(default_factory=dict)
    dispatched: int = 0
    answered: int = 0
    last_used: float = 0.0
    summary: Dict[str, Any] = field(default_factory=dict)

    @property
    def isolating(self) -> bool:
        """True while it holds a suspect request (which runs alone)."""
        return any(p.lost for p in self.outstanding.values())

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "capacity": self.capacity, "outstanding": len(self.outstanding),
                "dispatched": self.dispatched, "answered": self.answered, "reported": self.summary}


class Broker:
    """ROUTER/ROUTER load-balancing broker with heartbeats and re-dispatch.

    Args:
        frontend: Endpoint clients connect to (port ``*``: pick a free one).
        backend: Endpoint workers connect to.
        heartbeat_ms: Heartbeat interval towards workers.
        liveness: Missed heartbeats before a worker is declared dead.
        curve_keys: CURVE key directory (required for non-loopback binds).
        max_queue: Most requests waiting for a worker; more get ``overloaded``.
        max_lost: Most workers a request may be lost with; then (and at once if it
            was alone on the lost worker) it gets ``worker_lost`` instead of being
            re-sent. 1 never re-sends a request.
        request_ttl_s: Queued requests older than this get ``no_worker``.
        max_bytes: Largest request accepted (header plus buffers).

    Raises:
        SecurityError: If binding a non-loopback address without ``curve_keys``.
    """

    def __init__(self, frontend: str = DEFAULT_FRONTEND, backend: str = DEFAULT_BACKEND, *,
                 heartbeat_ms: int = 1000, liveness: int = 3, curve_keys: Optional[str] = None,
                 max_queue: int = 10000, max_lost: int = 2, request_ttl_s: float = 60.0,
                 max_bytes: int = wire.DEFAULT_MAX_BYTES):
        check_bind(frontend, curve_keys)
        check_bind(backend, curve_keys)
        self.frontend, self.backend = frontend, backend
        self.heartbeat_s = heartbeat_ms / 1e3
        self.liveness = max(1, int(liveness))
        self.keys = CurveKeys(curve_keys) if curve_keys else None
        self.max_queue = max_queue
        self.max_lost = max(1, int(max_lost))
        self.request_ttl_s = request_ttl_s
        self.max_bytes = max_bytes
        self.counters = Counters()
        self.workers: "OrderedDict[bytes, WorkerSlot]" = OrderedDict()
        self.queue: Deque[Pending] = deque()
        self.frontend_endpoint: Optional[str] = None
        self.backend_endpoint: Optional[str] = None
        self._tickets = (i.to_bytes(8, "big") for i in itertools.count(1))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ctx: Optional[zmq.Context] = None
        self._auth = None
        self._lock = threading.Lock()  # guards the snapshot read by status() from other threads
        self._t_start = time.time()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Broker":
        """Bind both sockets and start the broker thread.

        Returns:
            self, with :attr:`frontend_endpoint` and :attr:`backend_endpoint` set.
        """
        self._ctx = zmq.Context()
        if self.keys is not None:
            self._auth = self.keys.start_authenticator(self._ctx)
        self._front = self._make(self.frontend)
        self._back = self._make(self.backend)
        self.frontend_endpoint = self._front.last_endpoint.decode()
        self.backend_endpoint = self._back.last_endpoint.decode()
        self._thread = threading.Thread(target=self._loop, name="gensemcom-broker", daemon=True)
        self._thread.start()
        log.info("broker: clients -> %s, workers -> %s", self.frontend_endpoint, self.backend_endpoint)
        return self

    def _make(self, endpoint: str) -> zmq.Socket:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * self.max_bytes + wire.MAX_HEADER_BYTES)
        if self.keys is not None:
            self.keys.apply_server(sock)
        sock.bind(endpoint)
        return sock

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker thread and close its sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def serve_forever(self) -> None:
        """Start (if needed) and block until :meth:`stop` or Ctrl-C."""
        if self._thread is None:
            self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ status
    def status(self) -> Dict[str, Any]:
        """Workers (with dispatched/answered counts), queue depth, counts, latency."""
        snap = self.counters.snapshot()
        with self._lock:
            workers = [w.describe() for w in self.workers.values()]
            depth = len(self.queue)
        return {"role": "broker", "pid": os.getpid(), "frontend": self.frontend_endpoint,
                "backend": self.backend_endpoint, "uptime_s": round(time.time() - self._t_start, 3),
                "workers": workers, "queue_depth": depth + sum(w["outstanding"] for w in workers),
                "queued": depth, "requests": snap["counts"], "latency_ms": snap["latency_ms"],
                "heartbeat_ms": int(self.heartbeat_s * 1e3), "liveness": self.liveness}

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._front, zmq.POLLIN)
        poller.register(self._back, zmq.POLLIN)
        next_hb = time.monotonic() + self.heartbeat_s
        try:
            while not self._stop.is_set():
                wait = max(0.0, min(next_hb - time.monotonic(), 0.1))
                events = dict(poller.poll(int(wait * 1e3) + 1))
                if self._back in events:
                    self._drain(self._back, self._on_backend)
                if self._front in events:
                    self._drain(self._front, self._on_frontend)
                now = time.monotonic()
                if now >= next_hb:
                    for wid in list(self.workers):
                        self._back.send_multipart([wid, wire.CMD_HEARTBEAT])
                    next_hb = now + self.heartbeat_s
                self._purge(now)
                self._dispatch()
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in (self._front, self._back):
                try:
                    sock.close(0)
                except zmq.ZMQError:
                    pass

    def _drain(self, sock: zmq.Socket, handler: Any) -> None:
        for _ in range(512):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                handler(frames)
            except zmq.ContextTerminated:
                raise
            except Exception:  # one bad message must not stop the broker
                log.exception("broker: dropped a message of %d frames", len(frames))
                self.counters.inc("internal_errors")

    # ------------------------------------------------------------------ clients
    def _reply_error(self, envelope: Frames, rid: int, method: str, code: str, message: str) -> None:
        self.counters.inc("errors")
        self.counters.inc("error:" + code)
        self._front.send_multipart(envelope + wire.encode_error(rid, method, code, message))

    def _on_frontend(self, frames: Frames) -> None:
        # REQ clients: [identity, b"", header, buffers...]; DEALER clients: [identity, header, ...]
        if len(frames) >= 2 and len(frames[1]) == 0:
            envelope, body = frames[:2], frames[2:]
        else:
            envelope, body = frames[:1], frames[1:]
        self.counters.inc("requests")
        try:
            self._on_request(envelope, body)
        except zmq.ContextTerminated:
            raise
        except Exception as exc:  # answer and keep serving
            log.exception("broker: request failed unexpectedly")
            self._reply_error(envelope, 0, "", "internal_error",
                              f"the broker failed on this request: {type(exc).__name__}: {exc}")

    def _on_request(self, envelope: Frames, body: Frames) -> None:
        if not body:
            return self._reply_error(envelope, 0, "", "truncated", "empty message (no header frame)")
        try:
            header = wire.peek_header(body[0])
        except wire.WireError as exc:
            return self._reply_error(envelope, 0, "", exc.code, exc.message)
        rid = header.get("id") if isinstance(header.get("id"), int) else 0
        method = header.get("m") if isinstance(header.get("m"), str) else ""
        total = sum(len(f) for f in body)
        if total > self.max_bytes:
            return self._reply_error(envelope, rid, method, "oversized",
                                     f"message of {total} bytes exceeds the limit of {self.max_bytes} bytes")
        if method == "status" and not header.get("a"):
            self.counters.inc("status")
            meta = self.status()
            self._front.send_multipart(envelope + wire.encode_reply(rid, "status", None, meta=meta))
            return None
        if len(self.queue) >= self.max_queue:
            return self._reply_error(envelope, rid, method, "overloaded",
                                     f"broker queue full ({self.max_queue} requests)")
        with self._lock:
            self.queue.append(Pending(next(self._tickets), envelope, body, rid, method, time.monotonic()))
        return None

    # ------------------------------------------------------------------ workers
    def _on_backend(self, frames: Frames) -> None:
        if len(frames) < 2:
            return
        wid, cmd = frames[0].bytes, frames[1].bytes
        slot = self.workers.get(wid)
        if slot is not None:
            slot.expiry = time.monotonic() + slot.expiry_s
        if cmd == wire.CMD_READY:
            info = wire.unpack_info(frames[2]) if len(frames) > 2 else {}
            if slot is not None:  # re-registration: whatever it had is lost
                self._drop(wid, "re-registered")
            hb = info.get("heartbeat_ms", self.heartbeat_s * 1e3)
            hb_s = max(self.heartbeat_s, hb / 1e3 if isinstance(hb, (int, float)) else self.heartbeat_s)
            live = info.get("liveness", self.liveness)
            live = max(self.liveness, live if isinstance(live, int) else self.liveness)
            cap = info.get("capacity", 1)
            new = WorkerSlot(wid, str(info.get("name", wid.hex()))[:128], max(1, cap if isinstance(cap, int) else 1),
                             hb_s * live, time.monotonic() + hb_s * live)
            with self._lock:
                self.workers[wid] = new
            self.counters.inc("workers_joined")
            log.info("worker %s joined (capacity %d)", new.name, new.capacity)
        elif slot is None:
            # unknown worker (e.g. the broker restarted): ask it to register again
            self._back.send_multipart([wid, wire.CMD_DISCONNECT])
        elif cmd == wire.CMD_HEARTBEAT:
            if len(frames) > 2:
                slot.summary = wire.unpack_info(frames[2])
        elif cmd == wire.CMD_REPLY and len(frames) >= 3:
            pending = slot.outstanding.pop(frames[2].bytes, None)
            if pending is None:
                self.counters.inc("stale_replies")
                return
            slot.answered += 1
            self.counters.inc("answered")
            self.counters.latency(time.monotonic() - pending.t0)
            self._front.send_multipart(pending.envelope + list(frames[3:]), copy=False)
        elif cmd == wire.CMD_DISCONNECT:
            self._drop(wid, "disconnected")

    def _drop(self, wid: bytes, why: str) -> None:
        with self._lock:
            slot = self.workers.pop(wid, None)
        if slot is None:
            return
        self.counters.inc("workers_lost")
        lost = sorted(slot.outstanding.values(), key=lambda p: p.t0, reverse=True)
        if lost:
            log.warning("worker %s %s with %d requests outstanding; re-dispatching", slot.name, why, len(lost))
        else:
            log.info("worker %s %s", slot.name, why)
        for p in lost:
            p.lost += 1
            if len(lost) == 1 or p.lost >= self.max_lost:
                # it may be what killed the worker: answer instead of risking another one
                self.counters.inc("lost_requests")
                self._reply_error(p.envelope, p.request_id, p.method, "worker_lost",
                                  f"worker {slot.name} {why} while serving the request "
                                  f"({'alone' if len(lost) == 1 else f'with {len(lost) - 1} others'}; "
                                  f"lost with {p.lost} worker(s)); not re-sent, as it may have caused that")
                continue
            self.counters.inc("redispatched")
            with self._lock:
                self.queue.appendleft(p)  # a suspect: runs alone on its next worker

    def _purge(self, now: float) -> None:
        for wid in [w for w, s in self.workers.items() if s.expiry < now]:
            self._drop(wid, f"missed {self.liveness} heartbeats")
        while self.queue and now - self.queue[0].t0 > self.request_ttl_s:
            with self._lock:
                p = self.queue.popleft()
            self._reply_error(p.envelope, p.request_id, p.method, "no_worker",
                              f"no worker free within {self.request_ttl_s:.0f} s")

    def _dispatch(self) -> None:
        while self.queue:
            free = [s for s in self.workers.values() if len(s.outstanding) < s.capacity and not s.isolating]
            if self.queue[0].lost:  # a suspect goes alone to an idle worker
                free = [s for s in free if not s.outstanding]
            if not free:
                return
            slot = min(free, key=lambda s: (len(s.outstanding), s.last_used))
            with self._lock:
                p = self.queue.popleft()
            p.attempts += 1
            slot.outstanding[p.ticket] = p
            slot.dispatched += 1
            slot.last_used = time.monotonic()
            self._back.send_multipart([slot.identity, wire.CMD_REQUEST, p.ticket] + list(p.body), copy=False)
