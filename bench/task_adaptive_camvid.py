#!/usr/bin/env python3
"""Task-adaptive regeneration (embedded) on CamVid test: task mIoU against compression.

For every CamVid test image (or ``--limit`` of them, evenly spaced), the embedded
``task_adaptive`` system runs its three phases through the PHY core
(:class:`gensemcom.link.FrameLink`: protected header, CRC-32 + LDPC + M-QAM at the
link's adapted MCS, the channel at ``--snr``) and the receiver's task goes back over
a return link (QPSK, ``--return-snr``). Phase 1 runs once per image; each
configuration then runs its own phase 2 feedback and phase 3 from phase 1's state:

* ``Seg-only``: phase 1 alone (the label map; no feedback);
* ``Person-CAM-Attn`` / ``Car-CAM-Attn`` at each ``--taus``: the class label
  feedback, Grad-CAM of that class, edges where the CAM exceeds tau;
* ``All-Attn``: the "all" feedback, every edge patch (tau 0).

Each reconstruction is segmented by the **fixed evaluation segmenter**
(``camvid_eval_segmenter.pt``: not the transmitter's; another head, trained on
train + val, sharing the frozen ImageNet EfficientNet-Lite0 trunk) at the working
size and scored against the ground truth: IoU of Pedestrian and Car and the mean over
the 11 classes (dataset-level, from accumulated confusion matrices). The same
segmenter on the original images gives the ceiling. Compression rates are payload
bits as a percentage of the original 480 x 360 x 24 bits, per phase and for the
return link; channel uses are the PHY's. ``--timing`` images run the whole exchange
through :func:`gensemcom.link.run_link` (encode, PHY, decode, feedback) for the
round-trip time of the three phases.

Writes a JSON file, the mIoU-against-compression plot and a picture (sent | phase 1 |
Person-CAM-Attn | the edges it sent | ground truth).

Example (the numbers in the README)::

    python bench/task_adaptive_camvid.py --snr 10 --out results/task_adaptive_camvid.json \\
        --plot docs/images/task_adaptive_miou.png --figure docs/images/task_adaptive_camvid.jpg
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

PED, CAR = 9, 8


def _configs(taus):
    out = [("Seg-only", None, None)]
    for name, task in (("Person", "person"), ("Car", "car")):
        out += [(f"{name}-CAM-Attn@{t:g}", task, t) for t in taus]
    out.append(("All-Attn", "all", 0.0))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--camvid", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0, help="evenly spaced images (0: all)")
    p.add_argument("--shard", default="0/1", help="K/N: run the K-th of N interleaved shards (merge with --merge)")
    p.add_argument("--merge", nargs="*", default=None, help="merge shard JSON files into --out")
    p.add_argument("--snr", type=float, default=10.0)
    p.add_argument("--return-snr", type=float, default=None, help="default: --snr")
    p.add_argument("--channel", choices=["awgn", "rayleigh"], default="awgn")
    p.add_argument("--taus", default="0.3,0.5,0.7")
    p.add_argument("--budget-bytes", type=int, default=4096)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--timing", type=int, default=3, help="images timed end to end through run_link")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="results/task_adaptive_camvid.json")
    p.add_argument("--plot", default="")
    p.add_argument("--figure", default="")
    p.add_argument("--figure-images", type=int, default=3)
    args = p.parse_args(argv)
    if args.merge is not None:
        return merge(args)

    import torch
    from PIL import Image
    from tqdm import tqdm

    from gensemcom import systems
    from gensemcom.link import FrameLink, PhyConfig, run_link
    from gensemcom.codecs import unpack_edge_patches
    from gensemcom.models.task_adaptive_embedded import (N_CLASSES, VOID, load_eval_segmenter, resize_labels,
                                                         work_resize)
    from gensemcom.systems.base import LinkContext
    from gensemcom.train.task_adaptive import confusion
    from gensemcom.train.task_adaptive_data import camvid_pairs
    from gensemcom.eval.metrics import psnr

    if args.threads:
        torch.set_num_threads(args.threads)
    taus = [float(t) for t in args.taus.split(",")]
    configs = _configs(taus)
    rsnr = args.snr if args.return_snr is None else args.return_snr
    system = systems.build("task_adaptive", "embedded", budget_bytes=args.budget_bytes, steps=args.steps)
    evalseg = load_eval_segmenter(trunk=system.segmenter.trunk)
    pairs = camvid_pairs(args.camvid, args.split)
    if args.limit:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, args.limit).round().astype(int)]
    k, n = (int(x) for x in args.shard.split("/"))
    mine = list(range(k, len(pairs), n))
    fwd = FrameLink(PhyConfig(channel=args.channel, seed=1))
    back = FrameLink(PhyConfig(modulation=4, channel=args.channel, seed=2))
    conf = {c[0]: np.zeros((N_CLASSES, N_CLASSES)) for c in configs}
    conf["original"] = np.zeros((N_CLASSES, N_CLASSES))
    conf["transmitter-segmenter"] = np.zeros((N_CLASSES, N_CLASSES))
    per = {c[0]: {"compression_pct": [], "fwd_bytes": [], "fb_bytes": [], "fb_pct": [], "uses": [], "fb_uses": [],
                  "psnr": [], "patches": [], "lost": 0} for c in configs}
    figs = []
    for j, i in enumerate(tqdm(mine, desc="CamVid", mininterval=10)):
        ip, lp = pairs[i]
        with Image.open(ip) as im:
            img = np.asarray(im.convert("RGB"))
        with Image.open(lp) as im:
            gt_full = np.asarray(im)
        gt = resize_labels(gt_full, system.work_size)
        conf["original"] += confusion(evalseg.predict(work_resize(img)), gt, N_CLASSES, VOID)
        rng = np.random.default_rng(1000 + i)
        tx0, rx0 = LinkContext(snr_db=args.snr), LinkContext(snr_db=args.snr)
        f0 = system.encode(img, tx0)
        conf["transmitter-segmenter"] += confusion(system.segment(work_resize(img)), gt, N_CLASSES, VOID)
        r0, ok0, t0 = fwd.send(f0, args.snr, rng)
        im0 = system.decode(r0, rx0)
        uses0 = fwd.channel_uses(t0)["total"]
        bytes0 = len(f0.digital)
        pct0 = f0.meta["report"]["compression_pct"]
        for name, task, tau in configs:
            row = per[name]
            out, fb_bytes, fb_uses, e_bytes, e_pct, uses, patches = im0, 0, 0, 0, 0.0, uses0, 0
            if task is not None and im0 is not None:
                tx, rx = copy.copy(tx0), copy.copy(rx0)
                tx.state, rx.state = dict(tx0.state), dict(rx0.state)
                rx.task = task
                fb = system.feedback(r0, im0, rx)
                fb_rx, _, ftx = back.send(fb, rsnr, rng)
                fb_bytes, fb_uses = len(fb.digital), back.channel_uses(ftx)["total"]
                system.tau = tau
                tx.round = rx.round = 1
                tx.feedback = fb_rx
                f1 = system.encode(img, tx)
                r1, _, t1 = fwd.send(f1, args.snr, rng)
                out = system.decode(r1, rx)
                e_bytes, e_pct = len(f1.digital), f1.meta["report"]["compression_pct"]
                uses += fwd.channel_uses(t1)["total"]
                patches = f1.meta["report"]["patches"]
                if j < args.figure_images and name.startswith("Person") and tau == 0.5:
                    figs.append((img, im0, out, unpack_edge_patches(f1.digital) if f1.digital else None, gt))
            if out is None:
                row["lost"] += 1
                continue
            conf[name] += confusion(evalseg.predict(work_resize(out)), gt, N_CLASSES, VOID)
            row["compression_pct"].append(pct0 + e_pct)
            row["fwd_bytes"].append(bytes0 + e_bytes)
            row["fb_bytes"].append(fb_bytes)
            row["fb_pct"].append(100.0 * 8 * fb_bytes / (24.0 * img.shape[0] * img.shape[1]))
            row["uses"].append(uses)
            row["fb_uses"].append(fb_uses)
            row["psnr"].append(psnr(img, out))
            row["patches"].append(patches)
    timing = []
    system.tau = 0.5
    for i in mine[:args.timing]:
        with Image.open(pairs[i][0]) as im:
            img = np.asarray(im.convert("RGB"))
        t = time.perf_counter()
        res = run_link(system, img, args.snr, FrameLink(PhyConfig(channel=args.channel, seed=5)), task="person",
                       return_snr_db=rsnr)
        timing.append({"wall_s": round(time.perf_counter() - t, 3), "rounds": len(res.rounds),
                       **{k2: round(v, 3) for k2, v in res.timings.items()}})
    shard = {"conf": {k2: v.tolist() for k2, v in conf.items()}, "per": per, "timing": timing, "n": len(mine),
             "args": vars(args), "configs": configs}
    out = Path(args.out if n == 1 else f"{args.out}.shard{k}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(shard))
    if figs and args.figure:
        _figure(figs, args.figure if n == 1 else f"{args.figure}.shard{k}.jpg")
    if n == 1:
        args.merge = [str(out)]
        return merge(args)
    print(f"wrote {out}")
    return 0


def merge(args) -> int:
    from gensemcom.models.task_adaptive_embedded import CLASSES
    from gensemcom.train.task_adaptive import iou_from_confusion

    shards = [json.loads(Path(p).read_text()) for p in args.merge]
    configs = [tuple(c) for c in shards[0]["configs"]]
    conf = {k: sum(np.asarray(s["conf"][k]) for s in shards) for k in shards[0]["conf"]}
    per = {c[0]: {k: [] for k in shards[0]["per"][c[0]] if k != "lost"} for c in configs}
    lost = {c[0]: 0 for c in configs}
    for s in shards:
        for name in per:
            for k in per[name]:
                per[name][k] += s["per"][name][k]
            lost[name] += s["per"][name]["lost"]

    def ious(c):
        iou = iou_from_confusion(c)
        return {"pedestrian": round(float(iou[9]) * 100, 2), "car": round(float(iou[8]) * 100, 2),
                "mIoU": round(float(np.nanmean(iou)) * 100, 2),
                "per_class": {k: round(float(v) * 100, 2) for k, v in zip(CLASSES, iou)}}

    rows = []
    for name, task, tau in configs:
        r = per[name]
        m = (lambda k: round(float(np.mean(r[k])), 4) if r[k] else None)
        rows.append({"config": name, "task": task, "tau": tau, "iou_pct": ious(conf[name]),
                     "compression_pct": m("compression_pct"), "forward_bytes": m("fwd_bytes"),
                     "feedback_bytes": m("fb_bytes"), "feedback_pct": m("fb_pct"), "channel_uses": m("uses"),
                     "feedback_uses": m("fb_uses"), "psnr_db": m("psnr"), "patches": m("patches"),
                     "lost": lost[name]})
    timing = sum((s["timing"] for s in shards), [])
    a = shards[0]["args"]
    report = {"images": sum(s["n"] for s in shards), "split": a["split"], "snr_db": a["snr"],
              "return_snr_db": a["return_snr"] if a["return_snr"] is not None else a["snr"],
              "channel": a["channel"], "budget_bytes": a["budget_bytes"], "ddim_steps": a["steps"],
              "ceiling_original_images": ious(conf["original"]),
              "transmitter_segmenter_on_originals": ious(conf["transmitter-segmenter"]),
              "configs": rows, "round_trip_s": timing,
              "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
              "evaluation_segmenter": "camvid_eval_segmenter.pt: another head (128 wide, 3 convs), trained on "
                                      "CamVid train + val, over the same frozen ImageNet EfficientNet-Lite0 trunk"}
    out = Path(a["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"{'config':<24} {'ped IoU':>8} {'car IoU':>8} {'mIoU':>6} {'compr %':>8} {'fb %':>7} {'uses':>7} "
          f"{'PSNR':>6} {'patches':>7}")
    for r in rows:
        i = r["iou_pct"]
        print(f"{r['config']:<24} {i['pedestrian']:>8} {i['car']:>8} {i['mIoU']:>6} {r['compression_pct']:>8} "
              f"{r['feedback_pct']:>7} {r['channel_uses']:>7} {r['psnr_db']:>6} {r['patches']:>7}")
    c = report["ceiling_original_images"]
    print(f"{'(original images)':<24} {c['pedestrian']:>8} {c['car']:>8} {c['mIoU']:>6}")
    print("round trip (s):", [t["wall_s"] for t in timing])
    if a.get("plot"):
        _plot(rows, report, a["plot"])
    print(f"wrote {out}")
    return 0


def _plot(rows, report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, cls, key in ((axes[0], "Pedestrian", "pedestrian"), (axes[1], "Car", "car")):
        for prefix, marker in (("Person", "o-"), ("Car", "s-")):
            pts = [(r["compression_pct"], r["iou_pct"][key], r["tau"]) for r in rows if r["config"].startswith(prefix)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, label=f"{prefix}-CAM-Attn (tau)")
                for x, y, t in pts:
                    ax.annotate(f"{t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        for r in rows:
            if r["config"] in ("Seg-only", "All-Attn"):
                ax.plot([r["compression_pct"]], [r["iou_pct"][key]], "^" if r["config"] == "All-Attn" else "v",
                        ms=9, label=r["config"])
        ax.axhline(report["ceiling_original_images"][key], ls="--", c="grey", label="original images")
        ax.set_xlabel("compression rate (% of the image's bits)")
        ax.set_ylabel(f"{cls} IoU (%)")
        ax.set_title(f"{cls}, CamVid {report['split']}, {report['channel'].upper()} {report['snr_db']:g} dB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def _figure(figs, path):
    from PIL import Image

    from gensemcom.models.task_adaptive_embedded import work_resize

    palette = np.array([[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
                        [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 0]], np.uint8)
    rows = []
    for img, p1, p3, edges, gt in figs:
        h, w = 240, 320
        e = np.zeros((h, w, 3), np.uint8) if edges is None else work_resize(
            np.repeat((edges * 255).astype(np.uint8)[..., None], 3, 2), (h, w))
        cells = [work_resize(img, (h, w)), work_resize(p1, (h, w)), work_resize(p3, (h, w)), e,
                 work_resize(palette[np.minimum(gt, 11)], (h, w))]
        rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells], 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path, quality=88)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
