#!/usr/bin/env python3
"""Benchmark the LDPC backends of gensemcom.phy.ldpc.

For each backend: Gray QPSK (unit energy) over AWGN at the requested Eb/N0
points, BLER / BER / mean iterations, the Eb/N0 where BLER crosses a target
(log-linear interpolation), and decode throughput in information bits/s at a
separate Eb/N0 (wall clock of ``decode`` only, after a JIT warm-up).

Then (unless ``--no-nr``) the 5G NR base graph 2 low-rate codes
(``--nr-codes``, default rate 1/5 with k = 240 and 1120, rates 1/4 and 1/3
with k = 1120) on the same channel over an Es/N0 grid (``--nr-esn0``, default
-6 ... 4 dB), each point stopping early after ``--nr-max-frame-errors`` block
errors; reported with the Es/N0 and Eb/N0 where BLER reaches the target.

Channel: Es/N0 = Eb/N0 + 10 log10(bits_per_symbol * rate), per component
y = (1 - 2 b) / sqrt(2) + n with n ~ N(0, N0 / 2), LLR = 2 sqrt(2) y / N0
(the exact bit LLR of Gray QPSK; identical to BPSK per dimension).

Examples:
    python bench/ldpc_bench.py                       # all backends, rate 1/2
    python bench/ldpc_bench.py --backends numba --frames 5000 --json out.json
    python bench/ldpc_bench.py --backends grfec pyldpc --slow-frames 300
    python bench/ldpc_bench.py --backends --nr-codes 1/5:240 --nr-algorithms nms spa
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from typing import Dict, List, Optional

import numpy as np

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from gensemcom.phy import ldpc  # noqa: E402

FAST_BACKENDS = ("numba",)


def qpsk_awgn_llr(cw: np.ndarray, ebn0_db: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Gray QPSK + AWGN + exact LLRs for a batch of codewords.

    Args:
        cw: (B, n) uint8 codewords.
        ebn0_db: Eb/N0 in dB (per information bit).
        rate: Code rate.
        rng: Random generator.

    Returns:
        (B, n) float32 LLRs, positive meaning bit 0.
    """
    B, n = cw.shape
    pad = n % 2
    bits = np.concatenate([cw, np.zeros((B, pad), np.uint8)], axis=1) if pad else cw
    esn0 = 10.0 ** (ebn0_db / 10.0) * 2.0 * rate  # Es/N0, 2 bits per symbol
    n0 = 1.0 / esn0  # Es = 1
    s = (1.0 - 2.0 * bits.astype(np.float64)) / math.sqrt(2.0)  # I and Q components
    y = s + rng.normal(0.0, math.sqrt(n0 / 2.0), s.shape)
    llr = (2.0 * math.sqrt(2.0) / n0) * y
    return llr[:, :n].astype(np.float32)


def _progress(total: int, desc: str, enabled: bool):
    if tqdm is None or not enabled:
        class _Null:
            def update(self, _n=1):
                pass

            def set_postfix_str(self, _s):
                pass

            def close(self):
                pass

        return _Null()
    return tqdm(total=total, desc=desc, unit="fr", file=sys.stderr, leave=False)


def run_point(code, ebn0: float, frames: int, batch: int, max_iter: Optional[int],
              rng: np.random.Generator, max_frame_errors: Optional[int], progress: bool) -> Dict:
    """Simulate one Eb/N0 point; returns counts and rates."""
    fe = be = undetected = it_sum = done = 0
    t_dec = 0.0
    bar = _progress(frames, f"{code.backend} {ebn0:+.2f} dB", progress)
    while done < frames:
        b = min(batch, frames - done)
        msg = rng.integers(0, 2, (b, code.k), dtype=np.uint8)
        llr = qpsk_awgn_llr(code.encode(msg), ebn0, code.rate, rng)
        t0 = time.perf_counter()
        res = code.decode(llr, max_iter=max_iter)
        t_dec += time.perf_counter() - t0
        err = (res.bits != msg).sum(axis=1)
        fe += int((err > 0).sum())
        be += int(err.sum())
        undetected += int(((err > 0) & res.ok).sum())
        it_sum += int(res.iterations.sum())
        done += b
        bar.update(b)
        bar.set_postfix_str(f"BLER={fe / done:.2e}")
        if max_frame_errors is not None and fe >= max_frame_errors:
            break
    bar.close()
    return {
        "ebn0_db": ebn0,
        "frames": done,
        "frame_errors": fe,
        "bit_errors": be,
        "undetected_frame_errors": undetected,
        "bler": fe / done,
        "ber": be / (done * code.k),
        "mean_iterations": it_sum / done,
        "decode_seconds": t_dec,
    }


def measure_throughput(code, ebn0: float, frames: int, batch: int, max_iter: Optional[int],
                       rng: np.random.Generator) -> Dict:
    """Decode-only throughput (information bits/s) at one Eb/N0, after warm-up."""
    warm = rng.integers(0, 2, (min(batch, 8), code.k), dtype=np.uint8)
    code.decode(qpsk_awgn_llr(code.encode(warm), ebn0, code.rate, rng), max_iter=max_iter)
    t = 0.0
    done = 0
    while done < frames:
        b = min(batch, frames - done)
        msg = rng.integers(0, 2, (b, code.k), dtype=np.uint8)
        llr = qpsk_awgn_llr(code.encode(msg), ebn0, code.rate, rng)
        t0 = time.perf_counter()
        code.decode(llr, max_iter=max_iter)
        t += time.perf_counter() - t0
        done += b
    return {"ebn0_db": ebn0, "frames": done, "seconds": t, "info_bits_per_s": done * code.k / t}


def snr_at_bler(points: List[Dict], target: float, key: str = "ebn0_db") -> Optional[float]:
    """SNR (``points[i][key]``, dB) where BLER first drops to ``target``.

    Log-linear interpolation between the two points around the crossing; an
    upper bound (the point itself) when that point saw no errors.
    """
    pts = sorted(points, key=lambda p: p[key])
    for a, b in zip(pts, pts[1:]):
        if a["bler"] > target >= b["bler"]:
            if b["bler"] <= 0:
                return b[key]  # upper bound: no errors observed at b
            la, lb = math.log10(a["bler"]), math.log10(b["bler"])
            return a[key] + (math.log10(target) - la) * (b[key] - a[key]) / (lb - la)
    if pts and pts[0]["bler"] <= target:
        return pts[0][key]  # already below target at the first point
    return None


def esn0_to_ebn0(esn0_db: float, rate: float) -> float:
    """Eb/N0 (dB) of Gray QPSK (2 coded bits per symbol) at code rate ``rate``."""
    return esn0_db - 10.0 * math.log10(2.0 * rate)


def nr_code(spec: str, backend: str, algorithm: str):
    """Build the NR BG2 code of ``spec`` = ``"rate:k"`` (e.g. ``"1/5:240"``)."""
    rate, _, k = spec.partition(":")
    code = ldpc.get_code(backend, rate, int(k) if k else None)
    if algorithm != code.algorithm:
        code = ldpc.NRLDPCCode(code.z, rate, engine=backend, algorithm=algorithm)
    return code


def run_nr(args, rng: np.random.Generator, log) -> List[Dict]:
    """BLER vs Es/N0 of the NR codes of ``args.nr_codes`` (see the module doc)."""
    results = []
    for spec in args.nr_codes:
        for alg in args.nr_algorithms:
            try:
                code = nr_code(spec, args.nr_backend, alg)
            except ValueError as exc:
                print(f"[skip] NR {spec} {alg}: {exc}", file=log)
                continue
            print(f"== NR {args.nr_backend}/{alg}: {code.name} n={code.n} k={code.k} "
                  f"rate={code.rate:.4f} (<= {args.nr_frames} frames/point)", file=log, flush=True)
            code.decode(np.ones((2, code.n), np.float32), max_iter=args.max_iter)  # JIT warm-up
            points = []
            for es in args.nr_esn0:
                pt = run_point(code, esn0_to_ebn0(es, code.rate), args.nr_frames, args.batch,
                               args.max_iter, rng, args.nr_max_frame_errors,
                               not args.no_progress)
                pt = {"esn0_db": es, **pt}
                points.append(pt)
                print(f"  Es/N0={es:5.2f} dB  BLER={pt['bler']:.3e} "
                      f"({pt['frame_errors']}/{pt['frames']})  BER={pt['ber']:.3e}"
                      f"  iters={pt['mean_iterations']:.2f}"
                      f"  undetected={pt['undetected_frame_errors']}", file=log, flush=True)
            es_t = snr_at_bler(points, args.target_bler, key="esn0_db")
            eb_t = snr_at_bler(points, args.target_bler)
            print(f"  at BLER={args.target_bler:g}: Es/N0 "
                  f"{'n/a' if es_t is None else f'{es_t:.2f} dB'}, Eb/N0 "
                  f"{'n/a' if eb_t is None else f'{eb_t:.2f} dB'}", file=log, flush=True)
            results.append({
                **code.info(), "backend": args.nr_backend, "algorithm": alg,
                "alpha": code.alpha if alg == "nms" else None, "points": points,
                "target_bler": args.target_bler, "esn0_at_target_bler": es_t,
                "ebn0_at_target_bler": eb_t,
            })
    return results


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description="BLER/BER waterfall and decode throughput of the LDPC backends "
        "(Gray QPSK over AWGN).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backends", nargs="*", default=None,
                   help="backends to run at --rate (default: all available: %s; "
                   "none: NR section only)" % ldpc.available_backends())
    p.add_argument("--rate", default="1/2", help="code rate label passed to get_code")
    p.add_argument("--k", type=int, default=None, help="information bits (default: largest code)")
    p.add_argument("--ebn0", type=float, nargs="+", default=[1.0, 1.25, 1.5, 1.75, 2.0, 2.5],
                   help="Eb/N0 points in dB")
    p.add_argument("--frames", type=int, default=2000,
                   help="frames per point for the fast backend(s) (%s)" % ", ".join(FAST_BACKENDS))
    p.add_argument("--slow-frames", type=int, default=200,
                   help="frames per point for the other backends")
    p.add_argument("--max-frame-errors", type=int, default=None,
                   help="stop a point early after this many frame errors")
    p.add_argument("--batch", type=int, default=500, help="frames per decode call (fast backends)")
    p.add_argument("--slow-batch", type=int, default=16, help="frames per decode call (others)")
    p.add_argument("--max-iter", type=int, default=None, help="decoder iterations (default: code's)")
    p.add_argument("--target-bler", type=float, default=1e-2, help="BLER for the Eb/N0 threshold")
    p.add_argument("--throughput-ebn0", type=float, default=3.0, help="Eb/N0 of the throughput run")
    p.add_argument("--throughput-frames", type=int, default=4000,
                   help="frames for throughput (fast backends; others use --slow-frames)")
    p.add_argument("--no-nr", action="store_true", help="skip the 5G NR BG2 (low-rate) section")
    p.add_argument("--nr-codes", nargs="+", default=["1/5:240", "1/5:1120", "1/4:1120", "1/3:1120"],
                   metavar="RATE:K", help="NR BG2 codes to run (rate:k, k = 10 z)")
    p.add_argument("--nr-esn0", type=float, nargs="+",
                   default=[float(x) for x in range(-6, 5)], help="Es/N0 points (dB) of the NR codes")
    p.add_argument("--nr-frames", type=int, default=3000, help="max frames per NR point")
    p.add_argument("--nr-max-frame-errors", type=int, default=100,
                   help="stop an NR point after this many block errors")
    p.add_argument("--nr-backend", default=ldpc.DEFAULT_BACKEND, choices=["numba", "numpy"],
                   help="backend of the NR codes")
    p.add_argument("--nr-algorithms", nargs="+", default=["nms"], choices=["nms", "spa"],
                   help="NR decoder check updates (spa: numba only, ~20x slower)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--json", default=None, metavar="PATH", help="write results as JSON ('-' = stdout)")
    p.add_argument("--no-progress", action="store_true", help="disable tqdm progress bars")
    args = p.parse_args(argv)

    backends = ldpc.available_backends() if args.backends is None else args.backends
    rng = np.random.default_rng(args.seed)
    out = {
        "config": vars(args) | {"backends": backends},
        "host": {"machine": platform.machine(), "processor": platform.processor(),
                 "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "default_backend": ldpc.DEFAULT_BACKEND,
        "results": [],
        "nr_results": [],
    }
    log = sys.stderr if args.json == "-" else sys.stdout
    for backend in backends:
        try:
            code = ldpc.get_code(backend, args.rate, args.k)
        except ValueError as exc:
            print(f"[skip] {backend}: {exc}", file=log)
            continue
        fast = backend in FAST_BACKENDS
        frames = args.frames if fast else args.slow_frames
        batch = args.batch if fast else args.slow_batch
        print(f"== {backend}: {code.name} n={code.n} k={code.k} rate={code.rate:.4f} "
              f"({frames} frames/point)", file=log, flush=True)
        # warm-up (numba JIT / cache load) outside every timing
        code.decode(np.ones((2, code.n), np.float32), max_iter=args.max_iter)
        points = []
        for eb in args.ebn0:
            pt = run_point(code, eb, frames, batch, args.max_iter, rng,
                           args.max_frame_errors, not args.no_progress)
            points.append(pt)
            print(f"  Eb/N0={eb:5.2f} dB  BLER={pt['bler']:.3e} ({pt['frame_errors']}/{pt['frames']})"
                  f"  BER={pt['ber']:.3e}  iters={pt['mean_iterations']:.2f}"
                  f"  undetected={pt['undetected_frame_errors']}", file=log, flush=True)
        thr = measure_throughput(code, args.throughput_ebn0,
                                 args.throughput_frames if fast else args.slow_frames,
                                 batch, args.max_iter, rng)
        thr_eb = snr_at_bler(points, args.target_bler)
        print(f"  Eb/N0 at BLER={args.target_bler:g}: "
              f"{'n/a' if thr_eb is None else f'{thr_eb:.2f} dB'}", file=log)
        print(f"  throughput @ {args.throughput_ebn0} dB: {thr['info_bits_per_s'] / 1e6:.3f} Mbit/s "
              f"({thr['frames']} frames, {thr['seconds']:.2f} s)", file=log, flush=True)
        out["results"].append({
            **code.info(), "backend": backend, "points": points,
            "ebn0_at_target_bler": thr_eb, "target_bler": args.target_bler,
            "throughput": thr,
        })
    if not args.no_nr:
        out["nr_results"] = run_nr(args, rng, log)
    if args.json:
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
            print(f"wrote {args.json}", file=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
