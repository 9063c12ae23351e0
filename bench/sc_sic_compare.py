#!/usr/bin/env python3
"""SC-SIC (embedded) against the systems already here, on the same images and channel.

Sends every image through each system with :func:`gensemcom.link.run_link` (the
PHY core: protected header, CRC/LDPC/M-QAM digital path, analog path with power
normalisation and MMSE) at one SNR, channel, modulation and code rate, and reports
per system: mean PSNR, mean BRISQUE (PyPI ``brisque``, lower is better; computed on
the received images only), mean channel uses per image and per 512 x 512-equivalent,
images lost, and encode/decode times. Writes a JSON file, and a figure of
``--figure-images`` images: sent | one column per system, each panel titled with its
PSNR, BRISQUE and channel uses.

It also times the embedded SC-SIC's encode and decode of one 512 x 512 image on this
machine (median of ``--timing-reps``).

Example (the numbers in the README)::

    python bench/sc_sic_compare.py --systems tisc,sc_sic --snr 10 --modulation 4 --rate 1/2 \\
        --figure docs/images/sc_sic_kodak.jpg --figure-images kodim04,kodim14,kodim23 --out results/sc_sic_kodak.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))


def _brisque():
    try:
        from brisque import BRISQUE
    except ImportError:
        return None
    model = BRISQUE(url=False)
    return lambda img: float(model.score(img))


def time_sc_sic(reps: int) -> dict:
    """Median encode and decode time (s) of the embedded SC-SIC for a 512 x 512 image."""
    from gensemcom.systems import build

    sysm = build("sc_sic", "embedded")
    img = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    enc, dec = [], []
    for _ in range(reps + 1):  # the first run warms up
        t0 = time.perf_counter()
        frame = sysm.encode(img, None)
        t1 = time.perf_counter()
        sysm.decode(frame, None)
        enc.append(t1 - t0)
        dec.append(time.perf_counter() - t1)
    import torch

    return {"image": "512x512", "encode_s": round(statistics.median(enc[1:]), 3),
            "decode_s": round(statistics.median(dec[1:]), 3), "threads": torch.get_num_threads(), "reps": reps}


def main(argv=None) -> int:
    from tqdm import tqdm

    from gensemcom.eval.metrics import psnr
    from gensemcom.image_io import load_image, save_image
    from gensemcom.link import FrameLink, PhyConfig, run_link
    from gensemcom.systems import build
    from gensemcom.train.deepjscc import shared_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=None, help="image folder (default: SHARED/data/kodak)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    p.add_argument("--systems", default="tisc,sc_sic", help="comma-separated systems (embedded profiles)")
    p.add_argument("--snr", type=float, default=10.0, help="Es/N0 (dB)")
    p.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"))
    p.add_argument("--modulation", default="4", help="payload QAM order or auto")
    p.add_argument("--rate", default="1/2", help="payload LDPC rate or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, help="write the comparison figure here (.png or .jpg)")
    p.add_argument("--figure-images", default="kodim04,kodim14,kodim23", help="image stems in the figure")
    p.add_argument("--timing-reps", type=int, default=3, help="512x512 encode/decode timing repetitions (0: skip)")
    p.add_argument("--out", default=str(ROOT / "results" / "sc_sic_compare.json"), help="JSON output")
    p.add_argument("--save-images", default=None, help="also write every received image as DIR/SYSTEM/STEM.png")
    a = p.parse_args(argv)

    folder = Path(a.images) if a.images else shared_dir() / "data" / "kodak"
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
    files = files[: a.limit or None]
    if not files:
        p.error(f"no images in {folder}")
    names = [s.strip() for s in a.systems.split(",") if s.strip()]
    built = {n: build(n, "embedded") for n in names}
    mod = a.modulation if a.modulation == "auto" else int(a.modulation)
    link = FrameLink(PhyConfig(modulation=mod, rate=a.rate, channel=a.channel, seed=a.seed))
    brisque = _brisque()
    keep = set(s.strip() for s in a.figure_images.split(",") if s.strip())
    rows, shown = [], {}
    for f in tqdm(files, desc="images"):
        img = load_image(f)
        for n in names:
            r = run_link(built[n], img, a.snr, link, np.random.default_rng(a.seed))
            row = {"image": f.stem, "system": n, "received": r.image is not None,
                   "channel_uses": int(r.channel_uses["total"]),
                   "uses_per_512x512": round(r.channel_uses["total"] * 512 * 512 / (img.shape[0] * img.shape[1]), 1),
                   "encode_s": round(r.timings.get("encode_s", 0.0), 3),
                   "decode_s": round(r.timings.get("decode_s", 0.0), 3)}
            if r.image is not None:
                row["psnr"] = round(psnr(img, r.image), 3)
                if a.save_images:
                    d = Path(a.save_images) / n
                    d.mkdir(parents=True, exist_ok=True)
                    save_image(d / f"{f.stem}.png", r.image)
                if brisque:
                    row["brisque"] = round(brisque(r.image), 2)
            rows.append(row)
            if f.stem in keep:
                shown.setdefault(f.stem, {"sent": img})[n] = (r.image, row)
        if f.stem in keep and brisque:
            shown[f.stem]["sent_brisque"] = round(brisque(img), 2)
    summary = {}
    for n in names:
        rs = [r for r in rows if r["system"] == n]
        got = [r for r in rs if r["received"]]
        summary[n] = {"images": len(rs), "lost": len(rs) - len(got),
                      "psnr_mean": round(float(np.mean([r["psnr"] for r in got])), 3) if got else None,
                      "psnr_failures_0": round(float(np.sum([r["psnr"] for r in got]) / len(rs)), 3),
                      "brisque_mean": round(float(np.mean([r["brisque"] for r in got])), 2)
                      if got and brisque else None,
                      "channel_uses_mean": round(float(np.mean([r["channel_uses"] for r in rs])), 1),
                      "uses_per_512x512_mean": round(float(np.mean([r["uses_per_512x512"] for r in rs])), 1),
                      "encode_s_mean": round(float(np.mean([r["encode_s"] for r in rs])), 3),
                      "decode_s_mean": round(float(np.mean([r["decode_s"] for r in rs])), 3)}
    if brisque:
        sent = [brisque(load_image(f)) for f in files]
        summary["sent"] = {"brisque_mean": round(float(np.mean(sent)), 2)}
    import torch

    out = {"setup": {"images": str(folder), "n": len(files), "snr_db": a.snr, "channel": a.channel,
                     "modulation": a.modulation, "rate": a.rate, "seed": a.seed, "path": "run_link (FrameLink)",
                     "brisque": "PyPI brisque (libsvm model shipped in the package)" if brisque else "not installed"},
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "torch": torch.__version__},
           "summary": summary, "rows": rows}
    if a.timing_reps and "sc_sic" in names:
        out["sc_sic_embedded_512_timing"] = time_sc_sic(a.timing_reps)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"summary": summary, "timing": out.get("sc_sic_embedded_512_timing")}, indent=1))
    if a.figure and shown:
        figure(shown, names, a, Path(a.figure))
    return 0


def figure(shown: dict, names, a, path: Path) -> None:
    """sent | one column per system, one row per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(shown)
    fig, axes = plt.subplots(len(rows), len(names) + 1, figsize=(3.2 * (len(names) + 1), 2.35 * len(rows)),
                             squeeze=False)
    for i, stem in enumerate(rows):
        d = shown[stem]
        axes[i, 0].imshow(d["sent"])
        br = d.get("sent_brisque")
        axes[i, 0].set_title(f"{stem}: sent" + (f"\nBRISQUE {br:.1f}" if br is not None else ""), fontsize=8)
        for j, n in enumerate(names, 1):
            img, row = d[n]
            ax = axes[i, j]
            if img is not None:
                ax.imshow(img)
                t = f"{n}: {row['psnr']:.2f} dB" + (f", BRISQUE {row['brisque']:.1f}" if "brisque" in row else "")
            else:
                t = f"{n}: lost"
            ax.set_title(f"{t}\n{row['channel_uses']:,} channel uses", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"Embedded profiles, {a.channel.upper()} {a.snr:g} dB, payload {a.modulation}-QAM rate {a.rate}",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, **({"pil_kwargs": {"quality": 85}} if path.suffix.lower() in (".jpg", ".jpeg")
                                  else {}))
    print(f"figure: {path}")


if __name__ == "__main__":
    sys.exit(main())
