#!/usr/bin/env python3
"""Measure the MCS BLER table link adaptation reads (``phy/data/mcs_bler.json``).

Every MCS of the adaptation ladder (QPSK 1/5 ... 256-QAM 5/6), one LDPC code block per
trial, over AWGN and Rayleigh block fading (coherence 64, perfect CSI, ZF), Es/N0 from
-8 to 32 dB in 0.5 dB steps; see :func:`gensemcom.phy.mcs.measure_bler_table`.

Examples:
    python bench/mcs_table.py                                  # regenerate the shipped table
    python bench/mcs_table.py --quick --out /tmp/mcs.json      # a small budget (CI)
    python bench/mcs_table.py --plot results/bench/mcs_bler.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from gensemcom.phy import mcs as M  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Examples:")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(M.BLER_TABLE), help="JSON to write (default: the shipped table)")
    ap.add_argument("--snrs", default="-8:32:0.5", help="start:stop:step in dB (stop included)")
    ap.add_argument("--channels", default="awgn,rayleigh", help="comma list (default awgn,rayleigh)")
    ap.add_argument("--max-blocks", type=int, default=1000, help="code blocks per point at most (default 1000)")
    ap.add_argument("--min-errors", type=int, default=50, help="stop a point after this many errors (default 50)")
    ap.add_argument("--quick", action="store_true", help="small budget: 1 dB steps, 60 blocks, QPSK and 16-QAM only")
    ap.add_argument("--plot", help="also plot the curves to this PNG")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    start, stop, step = (float(v) for v in a.snrs.split(":"))
    ladder = M.LADDER
    if a.quick:
        step, a.max_blocks, a.min_errors = 1.0, 60, 10
        ladder = tuple(m for m in M.LADDER if m.modulation <= 16)
    snrs = list(np.round(np.arange(start, stop + step / 2, step), 2))
    t0 = time.time()
    table = M.measure_bler_table(snrs, a.channels.split(","), ladder, a.max_blocks, a.min_errors, a.seed)
    table["meta"].update(command="python bench/mcs_table.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                         seconds=round(time.time() - t0, 1), date=time.strftime("%Y-%m-%d"))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(table, f, indent=1)
    print(f"wrote {a.out} in {time.time() - t0:.0f} s")
    for ch, t in table["channels"].items():
        for name in t["bler"]:
            x = [s for s, b in zip(t["snr_db"], t["bler"][name]) if b <= M.DEFAULT_TARGET_BLER]
            print(f"  {ch:8s} {name:12s} BLER <= 1e-2 from {x[0] if x else float('nan'):5.1f} dB")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(table["channels"]), figsize=(7 * len(table["channels"]), 5), squeeze=False)
        for ax, (ch, t) in zip(axes[0], table["channels"].items()):
            for i, (name, curve) in enumerate(t["bler"].items()):
                ax.semilogy(t["snr_db"], np.maximum(curve, 1e-4), marker="os^vDpP*hX"[i % 10], ms=3, label=name)
            ax.axhline(M.DEFAULT_TARGET_BLER, color="k", lw=0.8, ls="--")
            ax.set(title=f"code-block error rate, {ch}", xlabel="Es/N0 (dB)", ylabel="BLER", ylim=(1e-4, 1.1))
            ax.grid(True, which="both", alpha=0.3)
        axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
