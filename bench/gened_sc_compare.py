"""GenED-SC's JSCC stage against the embedded DeepJSCC, at the same channel uses.

Every image is resized to 256 x 256 (the paper's size), so both systems spend exactly
8,192 complex analog channel uses (CR 1/24). Each (image, SNR, channel) goes through
the real link (:func:`gensemcom.link.run_link`: protected header, the caption over
CRC-32 + LDPC 1/2 + 16-QAM as the paper sends text, the analog segments, MMSE
equalisation; Rayleigh block fading, perfect CSI) with the same channel seed for both
systems. Measured on the JSCC stage alone (the embedded profile has no editor):

* PSNR, the foreground PSNR over the DUTS saliency mask (DUTS-TE only) and BRISQUE
  (PyPI ``brisque``, its shipped model);
* the symbol accounting per segment: ``fg`` and ``bg`` analog uses, the header, the
  caption's digital uses (and its bytes).

Frames whose protected header was lost count as lost (decode gives None) and are left
out of the means; their number is reported.

Usage::

    python bench/gened_sc_compare.py --duts 100 --shard 0/2 &   # and --shard 1/2
    python bench/gened_sc_compare.py --merge results/gened_sc_compare.json.shard0 \\
        results/gened_sc_compare.json.shard1 --plot docs/images/gened_sc_psnr.png

``--figure`` writes a picture (sent | mask | GenED-SC | DeepJSCC at 1 and 10 dB, AWGN)
of a few DUTS-TE images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

SNRS = (1.0, 4.0, 7.0, 10.0)
CHANNELS = ("awgn", "rayleigh")
SYSTEMS = ("gened_sc", "deepjscc")


def _images(args):
    from PIL import Image

    from gensemcom.train.deepjscc import shared_dir
    from gensemcom.train.gened_sc import load_duts

    data = shared_dir() / "data"
    out = []
    if args.kodak:
        for p in sorted((data / "kodak").glob("*.png"))[: args.kodak]:
            im = np.asarray(Image.open(p).convert("RGB").resize((256, 256), Image.BICUBIC), np.uint8)
            out.append(("kodak", p.stem, im, None))
    if args.duts:
        imgs, masks, names = load_duts(data / "duts-subset", "TE", 256, args.duts_offset + args.duts)
        imgs, masks, names = imgs[args.duts_offset:], masks[args.duts_offset:], names[args.duts_offset:]
        out += [("duts", n, i, m) for i, m, n in zip(imgs, masks, names)]
    return out


def _fg_psnr(ref, out, mask) -> float:
    err = ((ref.astype(np.float64) - out.astype(np.float64)) ** 2)[mask].mean()
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-10)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kodak", type=int, default=24, help="Kodak images (0: none)")
    p.add_argument("--duts", type=int, default=100, help="DUTS-TE images (0: none)")
    p.add_argument("--duts-offset", type=int, default=32,
                   help="skip this many DUTS-TE images first (the trainer validates on the first 32)")
    p.add_argument("--snrs", default=",".join(f"{s:g}" for s in SNRS), help="SNRs in dB, comma-separated")
    p.add_argument("--channels", default=",".join(CHANNELS), help="awgn,rayleigh")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="channel seed base")
    p.add_argument("--shard", default="0/1", help="K/N: the K-th of N interleaved shards of the images")
    p.add_argument("--out", default=str(ROOT / "results" / "gened_sc_compare.json"), help="result JSON")
    p.add_argument("--merge", nargs="*", default=None, help="merge shard JSON files into --out and report")
    p.add_argument("--plot", default=None, help="PNG: PSNR / foreground PSNR against SNR")
    p.add_argument("--figure", default=None, help="JPEG picture of a few DUTS-TE images")
    p.add_argument("--figure-images", type=int, default=4, help="images in --figure")
    args = p.parse_args(argv)
    if args.merge is not None:
        return merge(args)

    import torch
    from tqdm import tqdm

    from gensemcom import systems
    from gensemcom.eval.metrics import compute_metrics
    from gensemcom.link import FrameLink, PhyConfig, run_link

    torch.set_num_threads(args.threads)
    snrs = [float(s) for s in args.snrs.split(",")]
    chans = args.channels.split(",")
    k, n = (int(x) for x in args.shard.split("/"))
    items = _images(args)[k::n]
    sysm = {"gened_sc": systems.build("gened_sc", "embedded", threads=args.threads),
            "deepjscc": systems.build("deepjscc", "embedded", threads=args.threads)}
    rows, figs = [], {}
    bar = tqdm(total=len(items) * len(snrs) * len(chans), desc=f"shard {k}/{n}", unit="cell")
    for ds, name, img, mask in items:
        for ch in chans:
            for si, snr in enumerate(snrs):
                seed = args.seed + 1000 * si + (0 if ch == "awgn" else 500) + zlib.crc32(name.encode()) % 997
                for s, sys_ in sysm.items():
                    link = FrameLink(PhyConfig(modulation=16, rate="1/2", channel=ch, seed=seed))
                    t0 = time.perf_counter()
                    r = run_link(sys_, img, snr, link)
                    dt = time.perf_counter() - t0
                    row = {"dataset": ds, "image": name, "system": s, "channel": ch, "snr": snr, "seconds": dt,
                           "received": r.image is not None, "crc_ok": bool(r.crc_ok),
                           "uses": {kk: int(v) for kk, v in r.channel_uses.items()}}
                    rep = r.frame_tx.meta.get("report", {})
                    if s == "gened_sc":
                        row.update(fg_uses=rep.get("fg_uses"), bg_uses=rep.get("bg_uses"),
                                   fg_share=rep.get("fg_share"), caption=rep.get("caption"),
                                   caption_bytes=rep.get("caption_bytes"),
                                   caption_ok=bool(r.crc_ok and r.frame_rx is not None
                                                   and r.frame_rx.digital == rep.get("caption", "").encode()))
                    if r.image is not None:
                        m = compute_metrics(img, r.image, ("psnr", "brisque"))
                        row.update(psnr=float(m["psnr"]), brisque=float(m["brisque"]))
                        if mask is not None and mask.any():
                            row["fg_psnr"] = _fg_psnr(img, r.image, mask)
                    rows.append(row)
                    if args.figure and ds == "duts" and ch == "awgn" and snr in (1.0, 10.0) \
                            and (name in figs or len(figs) < args.figure_images):
                        figs.setdefault(name, {"sent": img, "mask": mask})[f"{s}@{snr:g}"] = r.image
                        if s == "gened_sc":
                            figs[name][f"route@{snr:g}"] = np.frombuffer(r.frame_tx.header["fg"], np.uint8)
                bar.update(1)
    bar.close()
    out = Path(args.out if n == 1 else f"{args.out}.shard{k}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "args": vars(args)}))
    if args.figure and figs:
        _figure(figs, args.figure if n == 1 else f"{args.figure}.shard{k}.jpg")
    print(f"wrote {out} ({len(rows)} rows)")
    if n == 1:
        args.merge = [str(out)]
        return merge(args)
    return 0


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def merge(args) -> int:
    rows = sum((json.loads(Path(p).read_text())["rows"] for p in args.merge), [])
    table = {}
    for r in rows:
        key = (r["dataset"], r["system"], r["channel"], r["snr"])
        table.setdefault(key, []).append(r)
    report = {"cells": {}, "accounting": {}, "images": {}}
    for (ds, s, ch, snr), rs in sorted(table.items()):
        got = [r for r in rs if r["received"]]
        report["cells"][f"{ds}/{s}/{ch}/{snr:g}"] = {
            "n": len(rs), "lost": len(rs) - len(got), "psnr": _mean(r.get("psnr") for r in got),
            "fg_psnr": _mean(r.get("fg_psnr") for r in got), "brisque": _mean(r.get("brisque") for r in got),
            "seconds": _mean(r["seconds"] for r in rs),
            "caption_ok": _mean(float(r["caption_ok"]) for r in rs) if s == "gened_sc" else None}
    for ds in sorted({r["dataset"] for r in rows}):
        report["images"][ds] = len({r["image"] for r in rows if r["dataset"] == ds})
        for s in SYSTEMS:
            rs = [r for r in rows if r["dataset"] == ds and r["system"] == s]
            if not rs:
                continue
            acc = {"analog": _mean(r["uses"].get("analog") for r in rs),
                   "header": _mean(r["uses"].get("header") for r in rs),
                   "digital_payload": _mean(r["uses"].get("digital", 0) - r["uses"].get("header", 0) for r in rs)}
            if s == "gened_sc":
                acc.update(fg=_mean(r["fg_uses"] for r in rs), bg=_mean(r["bg_uses"] for r in rs),
                           fg_share=_mean(r["fg_share"] for r in rs),
                           caption_bytes=_mean(r["caption_bytes"] for r in rs),
                           caption_unframed_16qam_r12=_mean(int(np.ceil(8 * r["caption_bytes"] / 0.5 / 4)) for r in rs))
            report["accounting"][f"{ds}/{s}"] = acc
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"report": report, "rows": rows}, indent=1))
    _print(report)
    if args.plot:
        _plot(report, args.plot)
    return 0


def _print(report):
    print("| dataset | channel | SNR | GenED-SC PSNR | DeepJSCC PSNR | GenED-SC fg PSNR | DeepJSCC fg PSNR | "
          "GenED-SC BRISQUE | DeepJSCC BRISQUE | lost (G/D) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = report["cells"]
    keys = sorted({tuple(k.split("/")[i] for i in (0, 2, 3)) for k in cells}, key=lambda t: (t[0], t[1], float(t[2])))

    def f(x):
        return "-" if x is None else f"{x:.2f}"

    for ds, ch, snr in keys:
        g, d = cells.get(f"{ds}/gened_sc/{ch}/{snr}", {}), cells.get(f"{ds}/deepjscc/{ch}/{snr}", {})
        print(f"| {ds} | {ch} | {snr} | {f(g.get('psnr'))} | {f(d.get('psnr'))} | {f(g.get('fg_psnr'))} | "
              f"{f(d.get('fg_psnr'))} | {f(g.get('brisque'))} | {f(d.get('brisque'))} | "
              f"{g.get('lost', '-')}/{d.get('lost', '-')} |")
    print(json.dumps(report["accounting"], indent=1))


def _plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = report["cells"]
    panels = [("duts", "fg_psnr", "DUTS-TE foreground PSNR (dB)"), ("duts", "psnr", "DUTS-TE PSNR (dB)"),
              ("kodak", "psnr", "Kodak PSNR (dB)"), ("duts", "brisque", "DUTS-TE BRISQUE (lower is better)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (ds, metric, title) in zip(axes, panels):
        for s, color in (("gened_sc", "tab:red"), ("deepjscc", "tab:blue")):
            for ch, style in (("awgn", "-o"), ("rayleigh", "--s")):
                pts = sorted((float(k.split("/")[3]), v[metric]) for k, v in cells.items()
                             if k.startswith(f"{ds}/{s}/{ch}/") and v.get(metric) is not None)
                if pts:
                    who = "GenED-SC JSCC" if s == "gened_sc" else "DeepJSCC"
                    ax.plot(*zip(*pts), style, color=color, label=f"{who} {'AWGN' if ch == 'awgn' else 'Rayleigh'}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("GenED-SC (embedded, JSCC stage) vs DeepJSCC, 256x256, 8,192 analog channel uses each", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot -> {path}")


def _figure(figs, path):
    from PIL import Image, ImageDraw

    cols = ["sent", "mask", "gened_sc@1", "deepjscc@1", "gened_sc@10", "deepjscc@10"]
    labels = ["sent", "fg patches (routed)", "GenED-SC 1 dB", "DeepJSCC 1 dB", "GenED-SC 10 dB", "DeepJSCC 10 dB"]
    s, pad = 256, 18
    canvas = Image.new("RGB", (len(cols) * s, pad + len(figs) * s), "white")
    d = ImageDraw.Draw(canvas)
    for j, lab in enumerate(labels):
        d.text((j * s + 4, 3), lab, fill="black")
    for i, (name, f) in enumerate(figs.items()):
        for j, c in enumerate(cols):
            if c == "mask":
                bits = np.unpackbits(f.get("route@10", np.zeros(32, np.uint8)))[:256].reshape(16, 16).astype(bool)
                route = np.kron(bits, np.ones((16, 16), bool))
                im = f["sent"].astype(np.float32) * np.where(route, 1.0, 0.3)[..., None]
                if f["mask"] is not None:
                    edge = f["mask"] ^ np.roll(f["mask"], 1, 0) | f["mask"] ^ np.roll(f["mask"], 1, 1)
                    im[edge] = (255, 255, 0)
                im = im.clip(0, 255).astype(np.uint8)
            else:
                im = f.get(c)
            if im is not None:
                canvas.paste(Image.fromarray(im), (j * s, pad + i * s))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, quality=88)
    print(f"figure -> {path}")


if __name__ == "__main__":
    sys.exit(main())
