"""Model serving on Ray Serve behind the worker's ZeroMQ front (``gensemcom worker --ray``).

The GNU Radio blocks keep speaking the worker's wire protocol to one address; only
where the models run changes:

* the **front** is an ordinary :class:`~gensemcom.worker.server.WorkerServer`: the
  same ROUTER socket, decoding, validation, queue, inline methods (``echo``,
  ``status``), error replies and counters. Its :class:`RayServeExecutor` replaces
  the compute thread's model call: each queued request's (method, profile,
  arrays, meta) goes to a Ray Serve deployment handle, from up to ``concurrency``
  threads at once, and the replica's answer (outputs or an error code) comes back
  as the usual reply;
* the **deployment** ``SemanticSystems`` has ``num_replicas`` replicas (each with
  ``ray_actor_options={"num_gpus": F}`` when GPUs are asked for). A replica holds
  its own :class:`~gensemcom.worker.models.ModelStore` (systems built lazily per
  (system, profile), as in a plain worker) and runs the registered methods through
  :func:`~gensemcom.worker.server.call_method`, the same function as a plain
  worker's compute thread: there is no second copy of the method code;
* **batching**: requests of batchable methods (``tiny_encode``, ``tiny_decode``,
  any method registered ``batchable=True``) go through ``@serve.batch`` in the
  replica, grouped by the same key as the plain worker's batcher (method, profile,
  array names/dtypes/shapes but dim 0, meta). The semantic methods take one image
  of any size with per-request meta and are not batchable (as in a plain worker);
* **sessions**: a multi-round exchange keeps state between rounds
  (:class:`~gensemcom.worker.systems.SessionStore`). Ray Serve routes each request
  to any replica, so requests of a *multi-round* system that name a ``session``
  run in the front process itself (its own model store, one at a time), where
  every round finds its state; one-shot systems (all but ``row_refine`` and
  ``task_adaptive`` today) and sessionless requests go to Ray.

``import ray`` happens only here and only when a Ray front starts; without Ray the
error names ``pip install .[ray]``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .models import ModelStore, resolve_device
from .registry import METHODS, CallContext, MethodSpec, RequestError
from .server import Executor, WorkerServer, batch_key_of, call_method
from . import wire

log = logging.getLogger(__name__)

APP_NAME = "gensemcom"
DEPLOYMENT = "SemanticSystems"
RAY_MISSING = ("Ray Serve is not installed; install the extra: pip install .[ray]  "
               "(or: pip install 'ray[serve]>=2.9')")

Parts = List[Dict[str, np.ndarray]]


class RayUnavailable(RuntimeError):
    """Ray (with Serve) cannot be imported."""


def import_ray() -> Tuple[Any, Any]:
    """Import ``ray`` and ``ray.serve``.

    Returns:
        The two modules.

    Raises:
        RayUnavailable: Naming ``pip install .[ray]`` when Ray is missing.
    """
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise RayUnavailable(f"{RAY_MISSING} ({exc})") from None
    return ray, serve


class SemanticSystemsReplica:
    """What one replica of the ``SemanticSystems`` deployment does (plain Python, testable without Ray).

    Args:
        device: Torch device of this replica (``auto``: the GPU Ray gave it, else CPU).
        threads: ``torch.set_num_threads`` for CPU inference (None: torch's default).
    """

    def __init__(self, device: str = "auto", threads: Optional[int] = None):
        self.device = resolve_device(device)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.models = ModelStore(self.device)
        self.calls = 0
        self.batches = 0

    def run(self, method: str, profile: str, parts: Parts, meta: Dict[str, Any]) -> Tuple:
        """Run a registered method on one or more requests' arrays.

        Args:
            method: The method name (the front validated it; looked up here in the same registry).
            profile: Model profile.
            parts: Each request's arrays (more than one only for a batchable method, same batch key).
            meta: The requests' meta.

        Returns:
            ``("ok", outputs per part, reply meta)`` or ``("err", code, message)``; never raises.
        """
        self.batches += 1
        self.calls += len(parts)
        try:
            spec = METHODS.get(method)
            ctx = CallContext(profile, self.device, self.models, dict(meta), len(parts), None)
            outs, rmeta = call_method(spec, ctx, parts)
            return ("ok", outs, rmeta)
        except (RequestError, wire.WireError) as exc:
            return ("err", exc.code, exc.message)
        except Exception as exc:  # a model failure is an error reply, as in a plain worker
            log.exception("method %s failed", method)
            return ("err", "model_error", f"{method} raised {type(exc).__name__}: {exc}")

    def run_batched(self, requests: List[Tuple]) -> List[Tuple]:
        """Run requests collected by ``@serve.batch``: merge those with equal batch keys.

        Args:
            requests: ``(method, profile, arrays, meta)`` of each request.

        Returns:
            One ``run``-style answer per request, in order, each with a single output map.
        """
        groups: Dict[Tuple, List[int]] = {}
        for i, (method, profile, arrays, meta) in enumerate(requests):
            groups.setdefault(batch_key_of(method, profile, arrays, meta), []).append(i)
        answers: List[Any] = [None] * len(requests)
        for idx in groups.values():
            method, profile, _, meta = requests[idx[0]]
            res = self.run(method, profile, [requests[i][2] for i in idx], meta)
            for k, i in enumerate(idx):
                answers[i] = ("ok", [res[1][k]], res[2]) if res[0] == "ok" else res
        return answers

    def info(self) -> Dict[str, Any]:
        """This replica's device, loaded models and call counts."""
        return {"device": self.device, "models": self.models.loaded(), "calls": self.calls,
                "batches": self.batches}


_DEPLOYMENT_CLASS: Any = None


def deployment_class() -> Any:
    """The ``@serve.deployment`` class ``SemanticSystems`` (built on first use, importing Ray)."""
    global _DEPLOYMENT_CLASS
    if _DEPLOYMENT_CLASS is not None:
        return _DEPLOYMENT_CLASS
    _, serve = import_ray()

    @serve.deployment(name=DEPLOYMENT)
    class SemanticSystems:
        """Holds the semantic systems' models and runs the registered worker methods."""

        def __init__(self, device: str = "auto", threads: Optional[int] = None, max_batch: int = 8,
                     max_wait_ms: float = 2.0):
            self.impl = SemanticSystemsReplica(device, threads)
            self.batched.set_max_batch_size(max(1, int(max_batch)))
            self.batched.set_batch_wait_timeout_s(max(0.0, max_wait_ms / 1e3))

        async def __call__(self, method: str, profile: str, parts: Parts, meta: Dict[str, Any]) -> Tuple:
            try:
                batchable = METHODS.get(method).batchable
            except RequestError as exc:
                return ("err", exc.code, exc.message)
            if batchable and len(parts) == 1:
                return await self.batched((method, profile, parts[0], meta))
            return self.impl.run(method, profile, parts, meta)

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
        async def batched(self, requests: List[Tuple]) -> List[Tuple]:
            return self.impl.run_batched(requests)

        async def info(self) -> Dict[str, Any]:
            return self.impl.info()

    _DEPLOYMENT_CLASS = SemanticSystems
    return SemanticSystems


class RayServeExecutor(Executor):
    """Sends a :class:`WorkerServer`'s queued calls to the ``SemanticSystems`` Ray Serve deployment.

    Args:
        address: Ray cluster: ``local`` (start one in this process), ``auto`` (the
            cluster ``ray start`` set up on this host) or ``ray://host:port`` / ``host:port``.
        replicas: Replicas of the deployment.
        gpus_per_replica: ``num_gpus`` of each replica (0: CPU only).
        cpus_per_replica: ``num_cpus`` of each replica.
        max_batch: ``@serve.batch`` size for batchable methods.
        max_wait_ms: ``@serve.batch`` wait for companions.
        device: Replica device (``auto``: its GPU if it has one, else CPU).
        threads: Torch CPU threads per replica.
        num_cpus: CPUs of a ``local`` cluster (None: all).
        object_store_mb: Object store of a ``local`` cluster (None: Ray's default).
        concurrency: Requests in flight to Ray at once.
        timeout_s: Longest wait for a replica's answer (then a ``timeout`` error reply).
        app_name: Ray Serve application name.
    """

    def __init__(self, address: str = "local", *, replicas: int = 1, gpus_per_replica: float = 0.0,
                 cpus_per_replica: float = 1.0, max_batch: int = 8, max_wait_ms: float = 2.0, device: str = "auto",
                 threads: Optional[int] = None, num_cpus: Optional[int] = None,
                 object_store_mb: Optional[int] = None, concurrency: int = 64, timeout_s: float = 600.0,
                 app_name: str = APP_NAME):
        if replicas < 1 or gpus_per_replica < 0 or cpus_per_replica < 0 or concurrency < 1:
            raise ValueError("replicas and concurrency must be >= 1, GPUs and CPUs per replica >= 0")
        self.address = address or "local"
        self.replicas = int(replicas)
        self.gpus_per_replica = float(gpus_per_replica)
        self.cpus_per_replica = float(cpus_per_replica)
        self.max_batch, self.max_wait_ms = int(max_batch), float(max_wait_ms)
        self.device, self.threads = device, threads
        self.num_cpus, self.object_store_mb = num_cpus, object_store_mb
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.app_name = app_name
        self.handle: Any = None
        self.server: Optional[WorkerServer] = None
        self._owns_ray = False
        self._lock = threading.Lock()
        self._local_lock = threading.Lock()
        self._counts = {"dispatched": 0, "answered": 0, "in_flight": 0, "failed": 0, "local_session_calls": 0}
        self._status_cache: Tuple[float, Dict[str, Any]] = (0.0, {})

    # ------------------------------------------------------------------ lifecycle
    def start(self, server: WorkerServer) -> None:
        """Connect to (or start) Ray, start Serve without its HTTP proxy and deploy ``SemanticSystems``."""
        ray, serve = import_ray()
        self.server = server
        if not ray.is_initialized():
            kw: Dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
            if self.address == "local":
                kw["num_cpus"] = self.num_cpus
                if self.object_store_mb:
                    kw["object_store_memory"] = int(self.object_store_mb) * 2 ** 20
            ray.init(address=self.address, **kw)
            self._owns_ray = True
        if self.gpus_per_replica:
            have = float(ray.cluster_resources().get("GPU", 0))
            if have < self.gpus_per_replica:
                msg = (f"each replica asks for {self.gpus_per_replica} GPU but the Ray cluster has {have:g}; "
                       "pass --gpus-per-replica 0 to serve on CPUs")
                if self.address == "local":  # nothing will add GPUs to a cluster started here: fail, not hang
                    self.stop()
                    raise ValueError(msg)
                log.warning("%s (waiting for an autoscaler to add GPU nodes)", msg)
        serve.start(proxy_location="Disabled")
        options: Dict[str, Any] = {"num_cpus": self.cpus_per_replica}
        if self.gpus_per_replica:
            options["num_gpus"] = self.gpus_per_replica
        app = deployment_class().options(num_replicas=self.replicas, ray_actor_options=options,
                                         max_ongoing_requests=max(self.max_batch * 2, 16)).bind(
            self.device, self.threads, self.max_batch, self.max_wait_ms)
        quiet = {"log_level": "WARNING", "enable_access_log": False}  # no line per request
        self.handle = serve.run(app, name=self.app_name, route_prefix=None, logging_config=quiet)
        log.info("Ray Serve: %d replica(s) of %s (%s GPU, %s CPU each) on %s", self.replicas, DEPLOYMENT,
                 self.gpus_per_replica, self.cpus_per_replica, self.address)

    def stop(self) -> None:
        """Delete the application and, when this process started Ray, shut Serve and Ray down."""
        try:
            ray, serve = import_ray()
            if ray.is_initialized():
                try:
                    serve.delete(self.app_name)
                except Exception:  # the cluster may already be gone
                    log.debug("cannot delete the Serve application", exc_info=True)
                if self._owns_ray:
                    serve.shutdown()
                    ray.shutdown()
        finally:
            self.handle = None
            self._owns_ray = False

    # ------------------------------------------------------------------ calls
    def _stays_here(self, spec: MethodSpec, ctx: CallContext) -> bool:
        """True for a request of a multi-round system that names a session (its state lives in this process)."""
        if spec.name not in ("semantic_encode", "semantic_decode") or not ctx.meta.get("session"):
            return False
        from .. import systems

        try:
            return systems.get(ctx.meta.get("system")).backend(ctx.profile).max_rounds > 1
        except Exception:  # unknown system or profile: the replica answers the error
            return False

    def _count(self, **delta: int) -> None:
        with self._lock:
            for k, v in delta.items():
                self._counts[k] += v

    def call(self, spec: MethodSpec, ctx: CallContext, parts: Parts) -> Tuple[Parts, Dict[str, Any]]:
        """Forward one call to the deployment (or run a session round here); error answers raise RequestError."""
        if self._stays_here(spec, ctx):
            self._count(local_session_calls=1)
            with self._local_lock:
                ctx.device = self.server.device if self.server is not None else resolve_device("auto")
                return call_method(spec, ctx, parts)
        if self.handle is None:
            raise RequestError("unavailable", "the Ray Serve deployment is not running")
        self._count(dispatched=1, in_flight=1)
        try:
            answer = self.handle.remote(spec.name, ctx.profile, parts, ctx.meta).result(timeout_s=self.timeout_s)
        except TimeoutError:
            self._count(failed=1)
            raise RequestError("timeout", f"no answer from Ray Serve within {self.timeout_s:.0f} s") from None
        except Exception as exc:  # a replica died, the cluster went away, ...
            self._count(failed=1)
            raise RequestError("worker_lost", f"Ray Serve failed: {type(exc).__name__}: {exc}") from None
        finally:
            self._count(in_flight=-1)
        self._count(answered=1)
        if answer[0] == "err":
            raise RequestError(answer[1], answer[2])
        return answer[1], answer[2]

    # ------------------------------------------------------------------ status
    def status(self) -> Dict[str, Any]:
        """The deployment's replicas by state (``serve.status()``) and this front's queue to Ray.

        Cached for a second: the ``status`` method runs on the front's I/O thread.
        """
        now = time.monotonic()
        with self._lock:
            counts = dict(self._counts)
            cached_at, cached = self._status_cache
        if now - cached_at > 1.0:
            cached = self._serve_status()
            with self._lock:
                self._status_cache = (now, cached)
        return {"backend": "ray_serve", "ray_address": self.address, "app": self.app_name,
                "deployment": DEPLOYMENT, "replicas_requested": self.replicas,
                "gpus_per_replica": self.gpus_per_replica, "cpus_per_replica": self.cpus_per_replica,
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait_ms, "queue": counts, **cached}

    def _serve_status(self) -> Dict[str, Any]:
        try:
            _, serve = import_ray()
            app = serve.status().applications.get(self.app_name)
            if app is None:
                return {"app_status": "NOT_RUNNING", "replicas": {}}
            dep = app.deployments.get(DEPLOYMENT)
            states = {str(getattr(k, "value", k)): int(v) for k, v in (dep.replica_states or {}).items()} if dep else {}
            return {"app_status": str(getattr(app.status, "value", app.status)),
                    "deployment_status": str(getattr(dep.status, "value", dep.status)) if dep else "MISSING",
                    "replicas": states, "message": (dep.message if dep else "") or app.message or ""}
        except Exception as exc:  # status must answer even when the cluster is unhappy
            return {"app_status": "UNKNOWN", "replicas": {}, "message": f"{type(exc).__name__}: {exc}"}


def format_executor_status(st: Dict[str, Any]) -> List[str]:
    """Lines for ``--status`` describing a Ray Serve front's deployment."""
    q = st.get("queue", {})
    reps = ", ".join(f"{k} {v}" for k, v in sorted(st.get("replicas", {}).items())) or "none"
    lines = [f"  ray serve: app {st.get('app')} ({st.get('app_status')}) on {st.get('ray_address')}",
             f"  deployment {st.get('deployment')} ({st.get('deployment_status', '?')}): replicas {reps} "
             f"(asked {st.get('replicas_requested')}, {st.get('gpus_per_replica')} GPU / "
             f"{st.get('cpus_per_replica')} CPU each), batch {st.get('max_batch')} / {st.get('max_wait_ms')} ms",
             f"  queue to ray: in flight {q.get('in_flight')}  dispatched {q.get('dispatched')}  "
             f"answered {q.get('answered')}  failed {q.get('failed')}  "
             f"session rounds run in the front {q.get('local_session_calls')}"]
    if st.get("message"):
        lines.append(f"  message: {st['message']}")
    return lines
