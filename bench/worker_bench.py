#!/usr/bin/env python3
"""Benchmark of the gr-gensemcom inference worker.

Three measurements, each against real processes on loopback:

1. **overhead**: round trip of an ``echo`` request carrying a float32 tensor
   (default 1 MiB) to a worker process, against a bare pyzmq REQ/REP echo
   process moving the same bytes (the reference); reports medians and the ratio.
2. **throughput**: ``--clients`` concurrent client threads calling
   ``tiny_encode`` through a broker process in front of ``--workers`` worker
   processes (tiny profile); reports requests/s and per-worker counts.
3. **kill**: the same load, and one worker is killed (SIGKILL) half-way; every
   request must end in an answer or a clear error (none hang, none vanish).

Usage::

    python bench/worker_bench.py                 # all three, text report
    python bench/worker_bench.py --json          # machine-readable
    python bench/worker_bench.py --only overhead --iterations 1000
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from gensemcom.worker.client import LocalWorker, WorkerClient, WorkerError, WorkerUnavailable  # noqa: E402
from gensemcom.worker.stats import percentiles_ms  # noqa: E402

REFERENCE_SERVER = r"""
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REP)
s.bind("tcp://127.0.0.1:*")
print("READY", s.last_endpoint.decode(), flush=True)
while True:
    frames = s.recv_multipart(copy=False)
    s.send_multipart(frames, copy=False)
"""


def free_port() -> int:
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind("tcp://127.0.0.1:*")
    port = int(sock.last_endpoint.decode().rsplit(":", 1)[1])
    sock.close(0)
    return port


class Procs:
    """Subprocesses started by the bench, all killed on exit."""

    def __init__(self) -> None:
        self.procs: List[subprocess.Popen] = []

    def start(self, *args: str, **kw: Any) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1] / "python"), os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen([sys.executable, *args], env=env, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def timed_median(fn, iterations: int, warmup: int) -> Dict[str, float]:
    for _ in range(warmup):
        fn()
    lat = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return percentiles_ms(lat)


def bench_overhead(args: argparse.Namespace, procs: Procs) -> Dict[str, Any]:
    n = int(args.size_mib * 1024 * 1024 // 4)
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    # reference: bare REQ/REP echo process moving the same bytes
    ref = procs.start("-c", REFERENCE_SERVER, stdout=subprocess.PIPE)
    line = ref.stdout.readline().decode().split()
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.connect(line[1])

    def ref_call() -> None:
        req.send(memoryview(x), copy=False)
        req.recv(copy=False)

    reference = timed_median(ref_call, args.iterations, args.warmup)
    req.close(0)
    ctx.term()
    worker = LocalWorker(["--log-level", "WARNING"])
    procs.procs.append(worker.proc)
    with WorkerClient(worker.address, timeout_ms=10000) as client:
        def call() -> None:
            client.call("echo", {"x": x})

        echo = timed_median(call, args.iterations, args.warmup)
        reply = client.call("echo", {"x": x})
        assert np.array_equal(reply["x"], x)
    worker.stop()
    return {"payload_bytes": x.nbytes, "iterations": args.iterations, "echo_ms": echo,
            "reference_reqrep_ms": reference, "ratio_median": round(echo["p50"] / reference["p50"], 3),
            "overhead_median_ms": round(echo["p50"] - reference["p50"], 4),
            "goal_median_ms": 2.0, "goal_met": echo["p50"] < 2.0}


def start_cluster(args: argparse.Namespace, procs: Procs) -> Dict[str, Any]:
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = procs.start("-m", "gensemcom.worker", "broker", "--frontend", front, "--backend", back,
                "--heartbeat-ms", str(args.heartbeat_ms), "--log-level", "ERROR")
    workers = [procs.start("-m", "gensemcom.worker", "--connect-broker", back, "--profile", "tiny",
                           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                           "--heartbeat-ms", str(args.heartbeat_ms), "--log-level", "ERROR",
                           *(["--threads", str(args.threads)] if args.threads else []))
               for _ in range(args.workers)]
    with WorkerClient(front, timeout_ms=500, retries=0) as probe:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if len(probe.status()["workers"]) == args.workers:
                    break
            except WorkerUnavailable:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("workers did not join the broker")
    return {"frontend": front, "backend": back, "workers": workers, "broker": broker}


def per_worker(client: WorkerClient) -> Dict[str, Dict[str, int]]:
    return {w["name"]: {"answered": w["answered"], "batches": w["reported"].get("batches", 0)}
            for w in client.status()["workers"]}


def run_load(front: str, clients: int, duration: float, image: np.ndarray, on_half=None,
             timeout_ms: int = 10000) -> Dict[str, Any]:
    outcome = {"ok": 0, "worker_error": 0, "unavailable": 0, "in_flight": 0}
    lock = threading.Lock()
    lat: List[float] = []
    stop_at = time.monotonic() + duration
    with WorkerClient(front, timeout_ms=timeout_ms, retries=0) as client:
        def loop() -> None:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                with lock:
                    outcome["in_flight"] += 1
                try:
                    out = client.call("tiny_encode", {"image": image})["latent"]
                    key = "ok" if out.shape[1] == 4 else "worker_error"
                except WorkerError:
                    key = "worker_error"
                except WorkerUnavailable:
                    key = "unavailable"
                with lock:
                    outcome["in_flight"] -= 1
                    outcome[key] += 1
                    lat.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=loop) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        if on_half is not None:
            time.sleep(duration / 2)
            on_half()
        for t in threads:  # a call ends by timeout at the latest; a thread still inside one lost its request
            t.join(duration + timeout_ms / 1e3 + 10)
        elapsed = time.perf_counter() - t0
    lost = outcome.pop("in_flight")
    total = sum(outcome.values()) + lost
    return {"requests": total, **outcome, "lost": lost, "seconds": round(elapsed, 3),
            "requests_per_s": round(outcome["ok"] / elapsed, 1), "latency_ms": percentiles_ms(lat)}


def bench_throughput(args: argparse.Namespace, procs: Procs) -> Dict[str, Any]:
    cluster = start_cluster(args, procs)
    image = np.random.default_rng(1).random((1, 3, args.image_size, args.image_size), dtype=np.float32)
    run_load(cluster["frontend"], args.clients, 1.0, image)  # warm-up: models load on every worker
    with WorkerClient(cluster["frontend"], timeout_ms=5000) as c:
        before = per_worker(c)
        load = run_load(cluster["frontend"], args.clients, args.duration, image)
        time.sleep(3 * args.heartbeat_ms / 1e3)  # let the workers' heartbeats report their batch counts
        after = per_worker(c)
    zero = {"answered": 0, "batches": 0}
    counts = {name: after[name]["answered"] - before.get(name, zero)["answered"] for name in after}
    batches = {name: after[name]["batches"] - before.get(name, zero)["batches"] for name in after}
    result = {"clients": args.clients, "workers": args.workers, "image": list(image.shape), **load,
              "per_worker_answered": counts,
              "mean_batch_size": round(sum(counts.values()) / max(1, sum(batches.values())), 2)}
    for p in cluster["workers"] + [cluster["broker"]]:
        p.kill()
    return result


def bench_kill(args: argparse.Namespace, procs: Procs) -> Dict[str, Any]:
    cluster = start_cluster(args, procs)
    image = np.random.default_rng(2).random((1, 3, args.image_size, args.image_size), dtype=np.float32)
    run_load(cluster["frontend"], args.clients, 1.0, image)  # warm-up
    victim = cluster["workers"][0]

    def kill() -> None:
        os.kill(victim.pid, signal.SIGKILL)

    load = run_load(cluster["frontend"], args.clients, args.duration, image, on_half=kill)
    with WorkerClient(cluster["frontend"], timeout_ms=5000) as c:
        st = c.status()
    return {**load, "killed_pid": victim.pid,
            "broker_redispatched": st["requests"].get("redispatched", 0),
            "broker_workers_lost": st["requests"].get("workers_lost", 0), "workers_left": len(st["workers"]),
            "all_answered": load["ok"] == load["requests"]}


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", choices=["overhead", "throughput", "kill"], action="append",
                   help="run only these parts (repeatable)")
    p.add_argument("--size-mib", type=float, default=1.0, help="echo payload (float32) in MiB")
    p.add_argument("--iterations", type=int, default=500, help="timed echo round trips")
    p.add_argument("--warmup", type=int, default=50, help="untimed echo round trips first")
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--workers", type=int, default=2, help="worker processes behind the broker")
    p.add_argument("--duration", type=float, default=6.0, help="seconds of load per run")
    p.add_argument("--image-size", type=int, default=32, help="tiny_encode input is [1,3,S,S]")
    p.add_argument("--max-batch", type=int, default=8, help="worker --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="worker --max-wait-ms")
    p.add_argument("--heartbeat-ms", type=int, default=250, help="broker/worker heartbeat")
    p.add_argument("--threads", type=int, default=1, help="worker --threads (torch CPU threads; 0: torch default)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON results here")
    args = p.parse_args(argv)
    parts = args.only or ["overhead", "throughput", "kill"]
    procs = Procs()
    results: Dict[str, Any] = {"host": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                        "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}}
    try:
        for part in parts:
            results[part] = {"overhead": bench_overhead, "throughput": bench_throughput, "kill": bench_kill}[part](
                args, procs)
            if not args.json:
                print(f"== {part}\n{json.dumps(results[part], indent=2)}", flush=True)
    finally:
        procs.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
