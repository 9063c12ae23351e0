#!/usr/bin/env python3
"""Round-trip overhead of Ray Serve behind the worker's ZMQ front, against the plain ZMQ worker.

In one run, on loopback, with the same client and the same payload (a float32 tensor,
default 1 MiB): the ``wait`` method with ``delay_ms=0`` (echoes its arrays; queued,
so it runs where the models run) through

* a plain worker process (``python -m gensemcom.worker``): front, queue, compute thread;
* a Ray front process (``python -m gensemcom.worker --ray``): the same front, the call
  forwarded to one replica of the ``SemanticSystems`` Ray Serve deployment and back.

The inline ``echo`` (answered by the front's I/O thread in both) is timed too, as the
floor of the ZMQ path. Reports median and p95 of each and the differences.

Usage::

    python bench/worker_ray.py                  # text report
    python bench/worker_ray.py --json --iterations 500
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from gensemcom.worker.client import LocalWorker, WorkerClient  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_bench import timed_median  # noqa: E402  (the same client-side timing as the ZMQ worker's bench)


def _measure(address: str, x: np.ndarray, args: argparse.Namespace) -> Dict[str, Any]:
    with WorkerClient(address, timeout_ms=60_000, retries=0) as client:
        reply = client.call("wait", {"x": x}, meta={"delay_ms": 0})
        assert np.array_equal(reply["x"], x)
        queued = timed_median(lambda: client.call("wait", {"x": x}, meta={"delay_ms": 0}), args.iterations, args.warmup)
        inline = timed_median(lambda: client.call("echo", {"x": x}), args.iterations, args.warmup)
    return {"wait_ms": queued, "echo_inline_ms": inline}


def _stop(worker: LocalWorker, timeout_s: float = 120.0) -> None:
    """SIGTERM and wait (a Ray front shuts Serve and Ray down, which takes seconds)."""
    if worker.proc.poll() is None:
        worker.proc.send_signal(signal.SIGTERM)
        try:
            worker.proc.wait(timeout_s)
        except Exception:
            worker.proc.kill()
            worker.proc.wait(10)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Both measurements, one after the other, in one run."""
    n = int(args.size_mib * 1024 * 1024 // 4)
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    out: Dict[str, Any] = {"payload_bytes": x.nbytes, "iterations": args.iterations}
    plain = LocalWorker(["--log-level", "WARNING", "--threads", "1"])
    try:
        out["zmq_worker"] = _measure(plain.address, x, args)
    finally:
        _stop(plain)
    front = LocalWorker(["--ray", "--ray-num-cpus", str(args.ray_cpus), "--ray-object-store-mb", "256",
                         "--threads", "1", "--log-level", "WARNING"], startup_timeout_s=300)
    try:
        out["ray_serve_front"] = _measure(front.address, x, args)
    finally:
        _stop(front)
    z, r = out["zmq_worker"]["wait_ms"], out["ray_serve_front"]["wait_ms"]
    out["ray_minus_zmq_ms"] = {"p50": round(r["p50"] - z["p50"], 3), "p95": round(r["p95"] - z["p95"], 3)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mib", type=float, default=1.0, help="payload in MiB (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=300, help="timed calls per case (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls first (default: %(default)s)")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args()
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"payload {res['payload_bytes']} bytes float32, {res['iterations']} calls each")
    for name in ("zmq_worker", "ray_serve_front"):
        w, e = res[name]["wait_ms"], res[name]["echo_inline_ms"]
        print(f"  {name:16s} wait (queued, model side): p50 {w['p50']:.3f} ms  p95 {w['p95']:.3f} ms   "
              f"echo (front only): p50 {e['p50']:.3f} ms  p95 {e['p95']:.3f} ms")
    d = res["ray_minus_zmq_ms"]
    print(f"  Ray Serve minus ZMQ worker: p50 {d['p50']:+.3f} ms  p95 {d['p95']:+.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
