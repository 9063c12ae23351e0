#!/usr/bin/env python3
"""Benchmark of the over-the-air burst PHY (gensemcom.ota) over GNU Radio's channel model.

Three measurements, each through real GNU Radio flowgraphs (ota_tx -> channels.channel_model
-> ota_rx):

1. **detection and decoding** at one SNR with CFO, sample-rate offset (epsilon), a random
   start delay before every frame and a 3-tap multipath channel: frame detection rate,
   header CRC failures, digital code-block error rate (BLER), analog symbol MSE after
   equalisation against the noise floor the SNR implies (genie MMSE with the true
   channel: mean over data carriers of N0 / (|H_k|^2 + N0));
2. **BLER vs SNR** of the digital part against the ideal-channel PHY (DigitalLink with
   perfect CSI: pure AWGN for the flat channel; the same per-carrier gains for the
   multipath channel), and the SNR gap at BLER 10 %;
3. **receiver throughput**: a captured stream of frames replayed through ota_rx alone,
   as fast as the CPU allows: frames/s and samples/s (real-time factor at 1 Msps).

SNR is the per-data-carrier Es/N0 (see gensemcom.flowgraphs.ota_sim). CFO is in subcarrier
spacings (fs / 128).

    python bench/ota_bench.py --json                    # full run (a few minutes)
    python bench/ota_bench.py --quick                   # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from gensemcom.flowgraphs.ota_sim import OtaSim, _cfg_taps  # noqa: E402
from gensemcom.ota.phy import HEADER_SYMS, OtaParams, sc_threshold  # noqa: E402
from gensemcom.phy.digital import DigitalLink  # noqa: E402


def carrier_gains(taps, p: OtaParams) -> np.ndarray:
    """True channel gain of every data carrier (unit-energy taps)."""
    t = np.asarray(_cfg_taps(taps), np.complex128)
    k = np.asarray(p.occupied, np.float64)
    return np.exp(-2j * np.pi * np.outer(k, np.arange(t.size)) / p.fft_len) @ t


def make_items(rng, n, n_bytes, n_analog):
    items = []
    for _ in range(n):
        d = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
        a = rng.normal(size=n_analog).astype(np.float32) if n_analog else np.zeros(0, np.float32)
        items.append((d, a) if n_analog else d)
    return items


def run_point(args, snr_db, taps, n_frames, n_analog, cfo, epsilon, seed):
    rng = np.random.default_rng(seed)
    items = make_items(rng, n_frames, args.digital_bytes, n_analog)
    with OtaSim(snr_db, cfo, epsilon, taps, seed, args.max_delay, args.modulation,
                threshold=sc_threshold(snr_db)) as sim:
        res = []
        for i in range(0, n_frames, args.batch):
            res += sim.send(items[i:i + args.batch], timeout=120)
        counters = sim.counters()
    link = DigitalLink(args.modulation)
    nblk = link.framer.n_blocks(args.digital_bytes)
    detected = sum(r.detected for r in res)
    blk_err = 0
    err, pw = 0.0, 0.0
    for it, r in zip(items, res):
        d, a = (it if n_analog else (it, None))
        if not r.detected:
            blk_err += nblk
            continue
        if not r.crc_ok:
            blk_err += max(1, len(r.failed_blocks))
        elif r.digital != d:  # an undetected error: count the whole frame
            blk_err += nblk
        if n_analog:
            err += float(np.sum((r.analog - a) ** 2))
            pw += float(np.sum(a ** 2))
    return {"frames": n_frames, "detected": detected, "detection_rate": detected / n_frames,
            "blocks": n_frames * nblk, "block_errors": blk_err, "bler": blk_err / (n_frames * nblk),
            "analog_mse": err / pw if pw else None, "counters": counters}


def ideal_bler(args, snr_db, gains, n_frames, seed):
    """DigitalLink with perfect CSI over the given per-carrier gains (None: AWGN)."""
    rng = np.random.default_rng(seed + 7)
    link = DigitalLink(args.modulation)
    p = OtaParams()
    n0 = 10 ** (-snr_db / 10)
    errs = blocks = 0
    for _ in range(n_frames):
        d = rng.integers(0, 256, args.digital_bytes, dtype=np.uint8).tobytes()
        x = link.transmit(d)
        h = np.ones(x.size) if gains is None else np.resize(gains, x.size)  # frequency first, as the PHY maps
        y = h * x + np.sqrt(n0 / 2) * (rng.normal(size=x.size) + 1j * rng.normal(size=x.size))
        res = link.receive(y / h, n0 / np.abs(h) ** 2)
        blocks += res.n_blocks
        errs += int(np.sum(~res.block_ok))
    return errs / blocks


def snr_at(snrs, blers, target=0.1):
    """SNR where the BLER curve crosses ``target`` (log-linear interpolation)."""
    for i in range(len(snrs) - 1):
        a, b = blers[i], blers[i + 1]
        if a > target >= b:
            la, lb = np.log10(max(a, 1e-4)), np.log10(max(b, 1e-4))
            return snrs[i] + (np.log10(target) - la) / (lb - la) * (snrs[i + 1] - snrs[i])
    return None


def throughput(args, n_frames=60):
    """Replay a captured stream of frames through ota_rx alone, as fast as possible."""
    import pmt
    from gnuradio import blocks, channels, gr

    from gensemcom.blocks import ota_rx, ota_tx
    from gensemcom.blocks.pdu_utils import make_pdu, meta_set

    p = OtaParams()
    rng = np.random.default_rng(3)
    tb = gr.top_block()
    tx = ota_tx(modulation=args.modulation)
    ch = channels.channel_model(p.noise_voltage(args.snr), args.cfo / p.fft_len, args.epsilon,
                                _cfg_taps(args.taps), 5, False)
    vs = blocks.vector_sink_c()
    tb.connect(tx, ch, vs)
    tb.start()
    for d, a in make_items(rng, n_frames, args.digital_bytes, args.analog_floats):
        tx.post(make_pdu(meta_set(pmt.make_dict(), "analog", a), np.frombuffer(d, np.uint8), "u8"))
    t0 = time.monotonic()
    while tx.burst.counters()["sent"] < n_frames and time.monotonic() - t0 < 60:
        time.sleep(0.01)
    time.sleep(0.3)
    tb.stop()
    tb.wait()
    sig = np.concatenate([np.array(vs.data(), np.complex64), np.zeros(4000, np.complex64)])
    rx = ota_rx(modulation=args.modulation, threshold=sc_threshold(args.snr))
    tb2 = gr.top_block()
    src = blocks.vector_source_c(sig)
    sink = blocks.message_debug()
    tb2.connect(src, rx)
    tb2.msg_connect(rx, "out", sink, "store")
    t0 = time.perf_counter()
    tb2.start()
    while sink.num_messages() < n_frames and time.perf_counter() - t0 < 120:
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    tb2.stop()
    tb2.wait()
    got = sink.num_messages()
    frame_samples = sig.size / n_frames
    return {"frames": n_frames, "received": got, "wall_s": wall, "frames_per_s": got / wall,
            "samples_per_s": sig.size / wall, "realtime_factor_at_1msps": sig.size / wall / 1e6,
            "samples_per_frame": frame_samples, "air_frames_per_s_at_1msps": 1e6 / frame_samples}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snr", type=float, default=10.0, help="per-data-carrier Es/N0 for the detection test (dB)")
    ap.add_argument("--frames", type=int, default=200, help="frames for the detection test")
    ap.add_argument("--cfo", type=float, default=0.2, help="CFO in subcarrier spacings")
    ap.add_argument("--epsilon", type=float, default=1.0001, help="sample-rate ratio of the channel model")
    ap.add_argument("--taps", default="1,0.5,0.3", help="multipath taps (comma separated; normalised)")
    ap.add_argument("--max-delay", type=int, default=2000, help="random zero samples before each frame: 0..N")
    ap.add_argument("--modulation", type=int, default=16)
    ap.add_argument("--digital-bytes", type=int, default=300)
    ap.add_argument("--analog-floats", type=int, default=1000)
    ap.add_argument("--bler-snrs", default="3,3.5,4,4.5,5,5.5,6,6.5,7", help="SNR grid for the BLER curves")
    ap.add_argument("--bler-frames", type=int, default=60, help="frames per BLER point")
    ap.add_argument("--batch", type=int, default=50, help="frames posted at a time")
    ap.add_argument("--quick", action="store_true", help="a small smoke run")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: detect,bler,throughput")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.bler_frames, args.bler_snrs = 40, 15, "4,5,6,7"
    args.taps = [float(t) for t in args.taps.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    p = OtaParams()
    out = {"params": {k: v for k, v in vars(args).items() if k not in ("json",)},
           "phy": {"fft_len": p.fft_len, "cp_len": p.cp_len, "data_carriers": p.n_data,
                   "pilots": len(p.pilots), "header_symbols": HEADER_SYMS}}
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    if args.json:  # GNU Radio's info logs go to stdout: keep stdout to the JSON object
        from gnuradio import gr
        gr.logging().set_default_level(gr.log_levels.warn)

    if "detect" not in skip:
        t0 = time.monotonic()
        r = run_point(args, args.snr, args.taps, args.frames, args.analog_floats, args.cfo, args.epsilon, 11)
        h = carrier_gains(args.taps, p)
        n0 = 10 ** (-args.snr / 10)
        floor = float(np.mean(n0 / (np.abs(h) ** 2 + n0)))
        r["analog_floor_mmse"] = floor
        r["analog_mse_over_floor_db"] = 10 * np.log10(r["analog_mse"] / floor) if r["analog_mse"] else None
        r["wall_s"] = time.monotonic() - t0
        out["detect"] = r
        say(f"[detect] SNR {args.snr} dB, CFO {args.cfo} sc, eps {args.epsilon}, taps {args.taps}: "
            f"detected {r['detected']}/{r['frames']} ({100 * r['detection_rate']:.1f} %), BLER {r['bler']:.4f}, "
            f"analog MSE {r['analog_mse']:.4f} vs floor {floor:.4f} ({r['analog_mse_over_floor_db']:+.2f} dB), "
            f"rx counters {r['counters']}")

    if "bler" not in skip:
        snrs = [float(s) for s in args.bler_snrs.split(",")]
        curves = {}
        for name, taps in (("flat", [1.0]), ("multipath", args.taps)):
            ota, ideal = [], []
            gains = None if name == "flat" else carrier_gains(taps, p)
            for s in snrs:
                r = run_point(args, s, taps, args.bler_frames, 0, args.cfo, args.epsilon, 100 + int(10 * s))
                ota.append(r["bler"])
                ideal.append(ideal_bler(args, s, gains, args.bler_frames, int(10 * s)))
                say(f"[bler {name}] {s:4.1f} dB: OTA {ota[-1]:.3f} (detected {r['detected']}/{r['frames']}), "
                    f"ideal {ideal[-1]:.3f}")
            a, b = snr_at(snrs, ota), snr_at(snrs, ideal)
            curves[name] = {"snr_db": snrs, "ota_bler": ota, "ideal_bler": ideal, "ota_snr_at_10pct": a,
                            "ideal_snr_at_10pct": b, "gap_db": (a - b) if a is not None and b is not None else None}
            say(f"[bler {name}] SNR at BLER 10 %: OTA {a}, ideal {b}, gap {curves[name]['gap_db']}")
        out["bler"] = curves

    if "throughput" not in skip:
        r = throughput(args, 30 if args.quick else 80)
        out["throughput"] = r
        say(f"[throughput] rx alone: {r['frames_per_s']:.1f} frames/s, {r['samples_per_s'] / 1e6:.2f} MS/s "
            f"(real-time factor {r['realtime_factor_at_1msps']:.2f} at 1 Msps; the air carries "
            f"{r['air_frames_per_s_at_1msps']:.0f} frames/s of {r['samples_per_frame']:.0f} samples at 1 Msps)")

    if args.json:
        print(json.dumps(out, default=lambda o: o.item() if hasattr(o, "item") else str(o), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
