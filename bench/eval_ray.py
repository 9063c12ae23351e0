"""``gensemcom eval`` locally vs ``--ray`` on a local Ray cluster, and a worker killed mid-sweep.

Three sweeps of the same cells (embedded systems x images x SNRs), each in its own folder:

1. local: the default run (torch's threads: the machine's cores), and local-1thread (torch on
   one thread, as each Ray task);
2. ray: ``--ray local`` (a local cluster of ``--cpus`` CPUs started for the run, one CPU and
   one torch thread per cell);
3. ray-kill: the same, with one worker process SIGKILLed while it runs a cell (``--kill-after``
   seconds into the sweep, then again every few seconds until one was killed).

Prints and writes (``OUT/eval_ray.json``) the wall times, whether the rows are equal
(everything but timings; float32 torch systems compared to the local run within a tolerance,
since their sums depend on the thread count, and bit for bit between the two Ray runs), the
channel uses, the cells lost (none expected) and the retried cells.

Example::

    python bench/eval_ray.py --images ../shared/data/kodak --limit 8 --snrs=0,5,10,15 --out results/eval_ray
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from gensemcom.eval import harness as H  # noqa: E402


def _compare(a, b):
    """(identical rows, rows differing only in metric values, max |metric difference|, channel uses equal)."""
    a, b = H.comparable_rows(a), H.comparable_rows(b)
    if len(a) != len(b):
        return {"rows": (len(a), len(b)), "identical": 0}
    same = metric_only = 0
    max_diff, uses_equal = 0.0, True
    for x, y in zip(a, b):
        uses_equal &= x["channel_uses"] == y["channel_uses"]
        if x == y:
            same += 1
            continue
        xm, ym = x.pop("metrics"), y.pop("metrics")
        if x == y:
            metric_only += 1
            for k in xm:
                if isinstance(xm[k], float) and isinstance(ym[k], float):
                    max_diff = max(max_diff, abs(xm[k] - ym[k]))
    return {"rows": len(a), "identical": same, "metrics_differ_only": metric_only,
            "other_differences": len(a) - same - metric_only, "max_metric_abs_diff": max_diff,
            "channel_uses_equal": uses_equal}


def _descendants(pid: int):
    """(pid, command line) of every process below ``pid`` (read from /proc)."""
    parent, cmd = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p:
                out.append((c, cmd.get(c, "")))
                todo.append(c)
    return out


def _kill_one_worker(stop: threading.Event, after: float, log: list) -> None:
    """SIGKILL one Ray worker process of this driver's cluster while it runs a cell."""
    if stop.wait(after):
        return
    t0 = time.perf_counter()
    while not stop.is_set():
        for pid, title in _descendants(os.getpid()):
            if title.startswith(("ray::eval ", "ray::_cell_task")):  # a worker running a cell (its task's name)
                os.kill(pid, signal.SIGKILL)
                log.append({"pid": pid, "title": title, "after_s": after + time.perf_counter() - t0})
                return
        stop.wait(0.2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="deepjscc,jpeg2000-ldpc,sc_sic,tisc")
    ap.add_argument("--images", default=None, help="default: the Kodak set in shared data")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--snrs", default="0,5,10,15")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--kill-after", type=float, default=20.0, help="seconds into the third sweep")
    ap.add_argument("--out", default="results/eval_ray")
    a = ap.parse_args(argv)
    out = Path(a.out)
    common = ["--systems", a.systems, f"--snrs={a.snrs}", "--limit", str(a.limit), "--j2k-modulations", "auto",
              "--metrics", "psnr,ssim", "-q"] + (["--images", a.images] if a.images else [])

    def cfg(name):
        p = argparse.ArgumentParser(prog="gensemcom")
        H.add_parser(p.add_subparsers(dest="command"))
        return H.config_from_args(p.parse_args(["eval", *common, "--out", str(out / name)]))

    import ray

    report = {"systems": a.systems, "snrs": a.snrs, "images": a.limit, "cpus": a.cpus}
    runs = {}
    t0 = time.perf_counter()
    runs["local"] = H.evaluate(cfg("local"))
    report["local_wall_s"] = time.perf_counter() - t0
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task: float32 sums depend on the threads
    t0 = time.perf_counter()
    runs["local-1thread"] = H.evaluate(cfg("local-1thread"))
    report["local_1thread_wall_s"] = time.perf_counter() - t0
    torch.set_num_threads(threads)
    for name, kill in (("ray", False), ("ray-kill", True)):
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        stop, killed = threading.Event(), []
        killer = threading.Thread(target=_kill_one_worker, args=(stop, a.kill_after, killed), daemon=True)
        try:
            if kill:
                killer.start()
            t0 = time.perf_counter()
            runs[name] = H.evaluate(cfg(name), ray="auto")
            report[f"{name}_wall_s"] = time.perf_counter() - t0
        finally:
            stop.set()
            ray.shutdown()
        report[f"{name}_failed"] = [(c.describe(), r) for c, r in runs[name]["failed_cells"]]
        report[f"{name}_retried"] = [(c.describe(), n) for c, n in runs[name]["retried_cells"]]
        report[f"{name}_rows"] = runs[name]["new_rows"]
        if kill:
            report["killed"] = killed
    report["cells"] = runs["local"]["new_rows"]
    report["ray_vs_local"] = _compare(runs["local"]["rows"], runs["ray"]["rows"])
    report["ray_vs_local_1thread"] = _compare(runs["local-1thread"]["rows"], runs["ray"]["rows"])
    report["ray_kill_vs_ray"] = _compare(runs["ray"]["rows"], runs["ray-kill"]["rows"])
    by_system = {}
    for x, y in zip(H.comparable_rows(runs["local"]["rows"]), H.comparable_rows(runs["ray"]["rows"])):
        by_system.setdefault(x["system"], [0, 0])[x == y] += 1
    report["ray_vs_local_identical_by_system"] = {s: {"identical": v[1], "differ": v[0]} for s, v in by_system.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_ray.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
