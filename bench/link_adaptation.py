#!/usr/bin/env python3
"""Link adaptation against every fixed MCS, measured (not read from the table).

At each Es/N0 from 0 to 25 dB (AWGN by default): the MCS link adaptation picks
(:func:`gensemcom.phy.mcs.select_mcs`, target BLER 1e-2) and every MCS of the ladder
send ``--blocks`` LDPC code blocks each (:func:`gensemcom.phy.mcs.measure_bler`). The
"best fixed MCS that succeeds" at an SNR is the one of highest spectral efficiency
whose measured BLER is at most the target; adaptation is "within 1 dB" at SNR s when
its efficiency is at least that of the best fixed MCS that succeeds at s - 1 dB.

Example:
    python bench/link_adaptation.py --json results/bench/link_adaptation.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from gensemcom.phy import mcs as M  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example:")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snrs", default="0:25:1", help="start:stop:step dB (default 0:25:1)")
    ap.add_argument("--channel", default="awgn", choices=["awgn", "rayleigh"])
    ap.add_argument("--blocks", type=int, default=300, help="code blocks per MCS and SNR (default 300)")
    ap.add_argument("--target", type=float, default=M.DEFAULT_TARGET_BLER)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    start, stop, step = (float(v) for v in a.snrs.split(":"))
    snrs = [round(float(s), 2) for s in np.arange(start, stop + step / 2, step)]
    rng = np.random.default_rng(0)
    measured = {}  # (mcs name, snr) -> bler
    try:
        from tqdm import tqdm
        it = tqdm(snrs, desc="SNR")
    except ImportError:  # pragma: no cover
        it = snrs
    for s in it:
        for m in M.LADDER:
            e, b = M.measure_bler(m, s, a.channel, a.blocks, a.blocks + 1, rng=rng)
            measured[(m.name, s)] = e / b
    rows, ok_all = [], True
    for s in snrs:
        pick, why = M.select_mcs(s, a.target, a.channel)
        good = [m for m in M.LADDER if measured[(m.name, s)] <= a.target]
        best = max(good, key=lambda m: m.efficiency) if good else None
        prev = [m for m in M.LADDER if (m.name, s - 1.0) in measured and measured[(m.name, s - 1.0)] <= a.target]
        best_prev = max(prev, key=lambda m: m.efficiency) if prev else None
        within = best_prev is None or pick.efficiency >= best_prev.efficiency - 1e-9
        ok_all &= within
        rows.append({"snr_db": s, "adaptive": pick.name, "adaptive_efficiency": round(pick.efficiency, 3),
                     "adaptive_bler": measured[(pick.name, s)],
                     "best_fixed": best.name if best else None,
                     "best_fixed_efficiency": round(best.efficiency, 3) if best else 0.0,
                     "within_1db": within})
        print(f"{s:5.1f} dB  adaptive {pick.name:12s} eff {pick.efficiency:4.2f} BLER {measured[(pick.name, s)]:.3f}"
              f"   best fixed {best.name if best else '-':12s} eff {best.efficiency if best else 0:4.2f}"
              f"   within 1 dB: {within}")
    print(f"adaptation within 1 dB of the best fixed MCS at every SNR: {ok_all}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"channel": a.channel, "blocks": a.blocks, "target_bler": a.target, "rows": rows,
                       "within_1db_everywhere": bool(ok_all)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
