"""Command line of the inference worker.

``python -m gensemcom.worker`` (and, once wired in, ``gensemcom worker``)::

    python -m gensemcom.worker [--bind ADDR | --connect-broker ADDR] [--profile P] ...
    python -m gensemcom.worker --status ADDRESS [--json]
    python -m gensemcom.worker --list-methods
    python -m gensemcom.worker keygen DIR
    python -m gensemcom.worker broker [--frontend ADDR] [--backend ADDR] ...

Integration: :func:`add_parser` adds the ``worker`` subcommand to an existing
argparse subparsers object, :func:`add_broker_parser` a top-level ``broker``
one; both set ``func=run``, and :func:`run` returns the exit code.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, List, Optional

import zmq

from . import wire

EPILOG = """examples:
  python -m gensemcom.worker                              one worker on tcp://127.0.0.1:5555
  python -m gensemcom.worker --profile full --device cuda --max-batch 16
  python -m gensemcom.worker --status tcp://127.0.0.1:5555
  python -m gensemcom.worker keygen ~/.gensemcom/keys    CURVE keys (needed off loopback)
  python -m gensemcom.worker broker --frontend tcp://*:5555 --backend tcp://*:5556 --curve-keys KEYS
  python -m gensemcom.worker --connect-broker tcp://gpu-host:5556 --curve-keys KEYS
  python -m gensemcom.worker --ray                        same front, models on a local Ray Serve deployment
  python -m gensemcom.worker --ray auto --profile full --replicas 4 --gpus-per-replica 1
"""


def _common_security(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-keys", metavar="DIR", default=None,
                   help="CURVE key directory from 'keygen' (required to bind a non-loopback address)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="logging level on stderr (default: %(default)s)")


def _add_broker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", default="tcp://127.0.0.1:5555", metavar="ADDR",
                   help="endpoint clients connect to (default: %(default)s)")
    p.add_argument("--backend", default="tcp://127.0.0.1:5556", metavar="ADDR",
                   help="endpoint workers connect to (default: %(default)s)")
    p.add_argument("--heartbeat-ms", type=int, default=1000, help="heartbeat interval (default: %(default)s)")
    p.add_argument("--liveness", type=int, default=3,
                   help="missed heartbeats before a worker counts as dead (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=10000, help="requests waiting for a worker (default: %(default)s)")
    p.add_argument("--max-lost", type=int, default=2,
                   help="most workers a request may be lost with before it gets 'worker_lost' (1: never "
                        "re-send; a request alone on a lost worker is never re-sent) (default: %(default)s)")
    p.add_argument("--max-bytes", type=int, default=wire.DEFAULT_MAX_BYTES,
                   help="largest request in bytes (default: %(default)s)")
    p.add_argument("--announce", action="store_true", help=argparse.SUPPRESS)
    _common_security(p)
    p.set_defaults(worker_mode="broker", func=run)


def _add_worker_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("serving")
    g.add_argument("--bind", metavar="ADDR", default=None,
                   help="endpoint to bind (default tcp://127.0.0.1:5555; port '*' picks a free one)")
    g.add_argument("--connect-broker", metavar="ADDR", default=None,
                   help="connect to a broker backend instead of binding")
    g.add_argument("--profile", choices=list(wire.PROFILES), default="tiny",
                   help="default model profile (default: %(default)s)")
    g.add_argument("--device", default="auto",
                   help="auto (CUDA if available), cpu, cuda, cuda:N (default: %(default)s)")
    g.add_argument("--preload", metavar="MODEL", action="append", default=[],
                   help="load MODEL (for --profile) before serving; repeatable (see --list-methods)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; with N CPU workers on one host use cores/N)")
    g.add_argument("--max-batch", type=int, default=8,
                   help="most requests merged into one model call (default: %(default)s)")
    g.add_argument("--max-wait-ms", type=float, default=2.0,
                   help="longest wait for batch companions (default: %(default)s)")
    g.add_argument("--max-bytes", type=int, default=wire.DEFAULT_MAX_BYTES,
                   help="largest request in bytes (default: %(default)s)")
    g.add_argument("--heartbeat-ms", type=int, default=1000,
                   help="heartbeat interval with the broker (default: %(default)s)")
    g.add_argument("--liveness", type=int, default=3,
                   help="missed broker heartbeats before reconnecting (default: %(default)s)")
    g.add_argument("--capacity", type=int, default=None,
                   help="requests the broker may leave outstanding here (default: 2 x max-batch)")
    g.add_argument("--announce", action="store_true",
                   help=f"print '{'GENSEMCOM_WORKER_READY'} ENDPOINT' on stdout once bound (used by auto-start)")
    g.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process exits")
    r = p.add_argument_group("ray serve (optional extra: pip install .[ray])")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the models on a Ray Serve deployment behind this same ZMQ front: 'local' (the "
                        "default: start Ray here), 'auto' (the cluster 'ray start' made) or a Ray address")
    r.add_argument("--replicas", type=int, default=1, help="replicas of the deployment (default: %(default)s)")
    r.add_argument("--gpus-per-replica", type=float, default=None,
                   help="num_gpus of each replica (default: 1 with --profile full, else 0)")
    r.add_argument("--cpus-per-replica", type=float, default=1.0,
                   help="num_cpus of each replica (default: %(default)s)")
    r.add_argument("--ray-num-cpus", type=int, default=None,
                   help="CPUs of a local Ray cluster (default: all)")
    r.add_argument("--ray-object-store-mb", type=int, default=None,
                   help="object store of a local Ray cluster in MiB (default: Ray's)")
    m = p.add_argument_group("monitoring")
    m.add_argument("--status", metavar="ADDRESS", default=None,
                   help="print the status of the worker or broker at ADDRESS and exit")
    m.add_argument("--json", action="store_true", help="with --status: print JSON")
    m.add_argument("--timeout-ms", type=int, default=3000, help="with --status: reply timeout (default: %(default)s)")
    m.add_argument("--list-methods", action="store_true", help="list the registered methods and models, then exit")
    _common_security(p)
    sub = p.add_subparsers(dest="worker_mode", metavar="{keygen,broker}")
    k = sub.add_parser("keygen", help="create CURVE key pairs for server and client in DIR",
                       description="Create DIR/server.key[_secret], DIR/client.key[_secret] and "
                                   "DIR/authorized_clients/client.key.")
    k.add_argument("dir", metavar="DIR")
    k.add_argument("--force", action="store_true", help="overwrite existing keys")
    k.set_defaults(worker_mode="keygen")
    b = sub.add_parser("broker", help="run a ROUTER/ROUTER broker in front of several workers",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_broker_options(b)
    p.set_defaults(func=run, worker_mode=None)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``worker`` subcommand.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The new subparser (``func`` defaults to :func:`run`).
    """
    p = subparsers.add_parser("worker", help="run or query the ZMQ inference worker",
                              description="Serve models to GNU Radio flowgraphs over ZeroMQ.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_worker_options(p)
    return p


def add_broker_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add a top-level ``broker`` subcommand (same as ``worker broker``).

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The new subparser.
    """
    p = subparsers.add_parser("broker", help="run a broker in front of several inference workers",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_broker_options(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser of ``python -m gensemcom.worker``."""
    p = argparse.ArgumentParser(prog="python -m gensemcom.worker",
                                description="ZeroMQ inference worker of gr-gensemcom: keeps models resident and "
                                            "serves GNU Radio flowgraphs (encode/decode, caption, generate, "
                                            "embed). Binds 127.0.0.1 unless given CURVE keys.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_worker_options(p)
    return p


# --------------------------------------------------------------------------- actions

def _print_status(args: argparse.Namespace) -> int:
    from .client import WorkerClient, WorkerError, WorkerUnavailable

    try:
        with WorkerClient(args.status, timeout_ms=args.timeout_ms, retries=0,
                          curve_keys=args.curve_keys) as client:
            st = client.status()
    except (WorkerUnavailable, WorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    print(format_status(st))
    return 0


def format_status(st: dict) -> str:
    """Render a worker or broker status map as text."""
    lat = st.get("latency_ms", {})
    lines = [f"{st.get('role', '?')} pid {st.get('pid')} up {st.get('uptime_s', 0):.1f} s"]
    if st.get("role") == "worker":
        lines.append(f"  name {st.get('name')}  mode {st.get('mode')}  device {st.get('device')}  "
                     f"profile {st.get('profile')}")
        models = ", ".join(f"{m['name']} [{m['profile']}]" for m in st.get("models", [])) or "none yet"
        lines.append(f"  loaded models: {models}")
        b = st.get("batching", {})
        lines.append(f"  batching: max {b.get('max_batch')} / {b.get('max_wait_ms')} ms, {b.get('batches')} "
                     f"batches, sizes {b.get('histogram')}")
    else:
        lines.append(f"  frontend {st.get('frontend')}  backend {st.get('backend')}")
        for w in st.get("workers", []):
            models = ", ".join(w.get("reported", {}).get("models", [])) or "none loaded"
            lines.append(f"  worker {w['name']}: dispatched {w['dispatched']} answered {w['answered']} "
                         f"outstanding {w['outstanding']}/{w['capacity']}  models: {models}")
        if not st.get("workers"):
            lines.append("  no workers connected")
    if isinstance(st.get("executor"), dict) and st["executor"].get("backend") == "ray_serve":
        from .ray_serve import format_executor_status

        lines.extend(format_executor_status(st["executor"]))
    lines.append(f"  queue depth {st.get('queue_depth')}")
    lines.append("  requests: " + ", ".join(f"{k} {v}" for k, v in sorted(st.get("requests", {}).items())))
    lines.append(f"  latency ms: p50 {lat.get('p50')}  p95 {lat.get('p95')}  p99 {lat.get('p99')}  "
                 f"(n={lat.get('n')})")
    return "\n".join(lines)


def _keygen(args: argparse.Namespace) -> int:
    from .security import SecurityError, keygen

    try:
        paths = keygen(args.dir, force=args.force)
    except SecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for role, path in paths.items():
        print(f"{role:20s} {path}")
    return 0


def _list_methods() -> int:
    from .models import model_names
    from .server import METHODS

    for name, doc in METHODS.describe().items():
        print(f"{name:14s} {doc}")
    print("models:")
    for name, profiles in model_names().items():
        print(f"  {name:20s} profiles: {', '.join(profiles)}")
    return 0


def _watch_parent(stop: threading.Event, service: Any) -> None:
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                logging.getLogger(__name__).warning("parent exited; stopping")
                stop.set()
                if hasattr(service, "request_stop"):
                    service.request_stop()

    threading.Thread(target=watch, daemon=True).start()


def _serve(service: Any, args: argparse.Namespace, endpoint_attr: str) -> int:
    """Run a WorkerServer (models on this main thread) or a Broker until SIGTERM/SIGINT."""
    from .server import WorkerServer

    stop = threading.Event()
    # a parent that runs us from a GNU Radio thread has these blocked, and children inherit the mask
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    def on_signal(*_: Any) -> None:
        stop.set()
        if isinstance(service, WorkerServer):
            service.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    is_worker = isinstance(service, WorkerServer)
    service.start(compute_thread=False) if is_worker else service.start()
    if getattr(args, "announce", False):
        print(f"GENSEMCOM_WORKER_READY {getattr(service, endpoint_attr)}", flush=True)
    if getattr(args, "exit_with_parent", False):
        _watch_parent(stop, service)
    if is_worker:
        service.serve_forever()
        return 0
    try:
        while not stop.wait(0.5):
            pass
    finally:
        service.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``worker`` (or ``broker``) command line.

    Args:
        args: Namespace from a parser built by :func:`add_parser`,
            :func:`add_broker_parser` or :func:`build_parser`.

    Returns:
        Process exit code (0 success, 1 configuration error, 2 worker unavailable).
    """
    logging.basicConfig(level=getattr(logging, getattr(args, "log_level", "INFO")), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .security import SecurityError

    mode = getattr(args, "worker_mode", None)
    try:
        if mode == "keygen":
            return _keygen(args)
        if mode == "broker":
            from .broker import Broker

            broker = Broker(args.frontend, args.backend, heartbeat_ms=args.heartbeat_ms, liveness=args.liveness,
                            curve_keys=args.curve_keys, max_queue=args.max_queue, max_bytes=args.max_bytes,
                            max_lost=args.max_lost)
            return _serve(broker, args, "frontend_endpoint")
        if args.status:
            return _print_status(args)
        if args.list_methods:
            return _list_methods()
        if args.bind and args.connect_broker:
            print("error: use either --bind or --connect-broker", file=sys.stderr)
            return 1
        from .server import WorkerServer

        executor, max_batch = None, args.max_batch
        if getattr(args, "ray", None):
            executor = _ray_executor(args)
            max_batch = 1  # the replicas batch (@serve.batch); the front sends each request as it comes
        server = WorkerServer(args.bind, connect_broker=args.connect_broker, profile=args.profile,
                              device=args.device, max_batch=max_batch, max_wait_ms=args.max_wait_ms,
                              max_bytes=args.max_bytes, curve_keys=args.curve_keys,
                              heartbeat_ms=args.heartbeat_ms, liveness=args.liveness, capacity=args.capacity,
                              threads=args.threads, preload=args.preload, executor=executor)
        return _serve(server, args, "endpoint")
    except (SecurityError, ValueError, LookupError, OSError, zmq.ZMQError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _ray_executor(args: argparse.Namespace) -> Any:
    """The :class:`~gensemcom.worker.ray_serve.RayServeExecutor` of ``--ray`` (imports Ray; a clear error if absent)."""
    from .ray_serve import RayServeExecutor, import_ray

    import_ray()  # RayUnavailable (a RuntimeError) names 'pip install .[ray]'
    gpus = args.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if args.profile == "full" else 0.0
    return RayServeExecutor(args.ray, replicas=args.replicas, gpus_per_replica=gpus,
                            cpus_per_replica=args.cpus_per_replica, max_batch=args.max_batch,
                            max_wait_ms=args.max_wait_ms, device=args.device, threads=args.threads,
                            num_cpus=args.ray_num_cpus, object_store_mb=args.ray_object_store_mb)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m gensemcom.worker``."""
    return run(build_parser().parse_args(argv))
