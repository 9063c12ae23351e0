"""SC-SIC's ``full`` profile: the paper's noise-robust fine-tuning of Stable Cascade's Stage B.

``gensemcom train sc-sic --profile full`` (or ``python -m gensemcom.train.sc_sic_full``)
fine-tunes Stage B (lite by default, ``--no-full-lite`` for the 1.5B one) as Khalid et
al. (2025, Section 4.1) do: each step takes ``--full-batch`` images of ``--full-data``
resized to ``--full-resolution`` squared (the paper: Cityscapes at 1024 x 1024; the
default here is CamVid's training set), Stage A encodes them to Stage B's latents, the
frozen EfficientNet-V2-S encoder gives ``Z`` (image x 3/4), ``Z`` crosses AWGN at an
SNR drawn per sample uniformly from ``--full-snr-range`` (1-20 dB), and Stage B
minimises the diffusion loss (its noise prediction against the noise of latents noised
at a uniform ``t``; :func:`gensemcom.models.stable_cascade.noise_robust_loss`) with
AdamW at ``--full-lr`` for ``--full-steps`` steps (1e-4, 15000).

A checkpoint (Stage B, the optimiser, the step, the losses) is written atomically to
``--full-out/ckpt.pt`` every ``--full-ckpt-every`` steps and at the end;
``--full-resume`` continues from it (batches and noises are drawn from the seed and the
step, so a resumed run sees what an uninterrupted one would). At the end the
fine-tuned Stage B is saved with ``save_pretrained`` to ``--full-out/decoder_lite``
(or ``decoder``), which the system loads with ``decoder=<--full-out>`` (the other
parts from the hub), and ``--full-out/record.json`` records the run (command, data,
settings, losses, wall time, versions). Needs a GPU in practice (the paper: one
48 GB RTX A6000); ``--full-grad-checkpointing`` saves memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .deepjscc import REPO_ROOT, shared_dir

DEFAULT_OUT = REPO_ROOT / "out" / "sc_sic_full"
#: history granularity of the JSON record (mean loss per this many steps)
HISTORY_EVERY = 50


def default_data() -> Path:
    """CamVid's training images under the shared data folder (``SHARED/data/camvid/train``)."""
    return shared_dir() / "data" / "camvid" / "train"


def add_full_arguments(g) -> None:
    """Add the fine-tuning's options (all ``--full-*``, so they sit beside the embedded
    trainer's in one parser) to ``g`` (a parser or an argument group)."""
    from ..models.stable_cascade import PAPER_FINETUNE

    p = PAPER_FINETUNE
    g.add_argument("--full-data", default=None,
                   help="folder of training images (default: SHARED/data/camvid/train)")
    g.add_argument("--full-encoder", default=None,
                   help="EfficientNet-V2-S encoder: hub repo id, .safetensors/.pt file or folder "
                        "(default: stabilityai/stable-cascade)")
    g.add_argument("--full-decoder", default=None,
                   help="Stage B to start from (and Stage A): hub repo id or local folder "
                        "(default: stabilityai/stable-cascade)")
    g.add_argument("--full-lite", action=argparse.BooleanOptionalAction, default=True,
                   help="fine-tune Stage B lite (700M) rather than the 1.5B one (default: lite)")
    g.add_argument("--full-resolution", type=int, default=p["resolution"],
                   help="training images are resized to this square side (default %(default)s)")
    g.add_argument("--full-batch", type=int, default=p["batch"], help="batch size (default %(default)s)")
    g.add_argument("--full-steps", type=int, default=p["steps"], help="optimisation steps (default %(default)s)")
    g.add_argument("--full-lr", type=float, default=p["lr"], help="AdamW learning rate (default %(default)s)")
    g.add_argument("--full-snr-range", default=f"{p['snr_range'][0]:g},{p['snr_range'][1]:g}",
                   help="training SNR range in dB, uniform per sample (default %(default)s)")
    g.add_argument("--full-seed", type=int, default=0, help="seed of batches and noises (default 0)")
    g.add_argument("--full-out", default=str(DEFAULT_OUT),
                   help="output folder: ckpt.pt, record.json, the fine-tuned decoder (default %(default)s)")
    g.add_argument("--full-resume", action="store_true", help="continue from --full-out/ckpt.pt")
    g.add_argument("--full-ckpt-every", type=int, default=500, help="checkpoint every N steps (default 500)")
    g.add_argument("--full-time-limit-min", type=float, default=0.0,
                   help="stop (and checkpoint) after this many minutes (0: none)")
    g.add_argument("--full-device", default=None, help="torch device (default: CUDA when available)")
    g.add_argument("--full-bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast for Stage B (default: on with CUDA)")
    g.add_argument("--full-grad-checkpointing", action="store_true", help="gradient checkpointing in Stage B")
    g.add_argument("--full-clip-grad", type=float, default=1.0,
                   help="gradient norm clipping (Stable Cascade's 1.0; 0: none)")
    g.add_argument("--full-flip", action="store_true", help="random horizontal flips (off in the paper)")
    g.add_argument("--full-no-export", action="store_true", help="do not save the fine-tuned decoder at the end")


# ------------------------------------------------------------------ data
def list_images(folder: Path, exts=(".jpg", ".jpeg", ".png", ".bmp")) -> List[Path]:
    """The images in ``folder``, sorted.

    Raises:
        FileNotFoundError: no such folder, or no images in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"training folder {folder} not found (give --full-data, or set GENSEMCOM_SHARED)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def load_batch(files: Sequence[Path], step: int, batch: int, resolution: int, seed: int,
               flip: bool = False) -> np.ndarray:
    """Step ``step``'s batch: ``batch`` images drawn from ``(seed, step)`` alone (so a
    resumed run draws the same ones), resized to ``resolution`` squared (bicubic),
    (B, 3, R, R) float32 in [0, 1]."""
    from PIL import Image

    rng = np.random.default_rng([int(seed), int(step)])
    out = np.empty((batch, resolution, resolution, 3), np.uint8)
    for i, j in enumerate(rng.integers(len(files), size=batch)):
        with Image.open(files[int(j)]) as im:
            a = np.asarray(im.convert("RGB").resize((resolution, resolution), Image.BICUBIC))
        out[i] = a[:, ::-1] if flip and rng.random() < 0.5 else a
    return out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


# ------------------------------------------------------------------ checkpoints
def _save_atomic(path: Path, blob) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, str(tmp))
    os.replace(tmp, path)


def _history(losses: Sequence[float], every: int = HISTORY_EVERY) -> List[Dict]:
    return [{"steps": f"{i + 1}-{min(i + every, len(losses))}", "loss": round(float(np.mean(losses[i:i + every])), 5)}
            for i in range(0, len(losses), every)]


def _write_record(out: Path, record: Dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "record.json.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, out / "record.json")


# ------------------------------------------------------------------ the run
def run_full(args: argparse.Namespace) -> int:
    """Run (or resume) the fine-tuning with the ``--full-*`` options in ``args``; returns
    a process exit status (0 when the steps or the time limit were reached).

    Raises:
        FileNotFoundError: no training images.
        gensemcom.models.hf.ModelNotAvailable: the encoder or the decoder cannot be loaded.
    """
    import diffusers
    import torch
    from tqdm import tqdm

    from ..models import stable_cascade as sc
    from ..models.hf import pick_device

    a = {k: getattr(args, k) for k in vars(args) if k.startswith("full_")}
    out = Path(args.full_out)
    data = Path(args.full_data) if args.full_data else default_data()
    files = list_images(data)
    lo, hi = (float(v) for v in str(args.full_snr_range).split(","))
    device = pick_device(args.full_device)
    bf16 = args.full_bf16 if args.full_bf16 is not None else device.startswith("cuda")
    lite = bool(args.full_lite)

    pipe = sc.load_decoder_pipeline(args.full_decoder, lite=lite, dtype=torch.float32, device=device, cache=False)
    sources = dict(pipe.gensemcom_sources)
    encoder = sc.load_effnet_encoder(args.full_encoder, device)
    tuner = sc.FineTuner(pipe, encoder, lr=args.full_lr, snr_range=(lo, hi),
                         autocast=torch.bfloat16 if bf16 else None, clip_grad=args.full_clip_grad or None,
                         grad_checkpointing=args.full_grad_checkpointing)
    del pipe  # the text encoder is not needed any more (the empty prompt's condition is kept)

    ckpt = out / "ckpt.pt"
    step, elapsed, losses = 0, 0.0, []
    if args.full_resume and ckpt.is_file():
        blob = torch.load(str(ckpt), map_location="cpu", weights_only=False)
        tuner.decoder.load_state_dict(blob["decoder"])
        tuner.optimizer.load_state_dict(blob["optimizer"])
        step, elapsed, losses = int(blob["step"]), float(blob["elapsed"]), list(blob["losses"])
        print(f"resumed {ckpt} at step {step} ({elapsed / 60:.1f} min trained)", file=sys.stderr)

    n_params = sc.count_parameters(tuner.decoder)
    print(f"SC-SIC Stage B fine-tuning: {'lite' if lite else 'full'} ({n_params:,} parameters) on {device}"
          f"{' bf16' if bf16 else ''}; {len(files)} images from {data} at {args.full_resolution}px; batch "
          f"{args.full_batch}, lr {args.full_lr:g}, SNR U({lo:g}, {hi:g}) dB, {args.full_steps} steps",
          file=sys.stderr)
    command = " ".join(shlex.quote(c) for c in getattr(args, "argv", None) or sys.argv)
    record = {"what": "SC-SIC full profile: noise-robust fine-tuning of Stable Cascade's Stage B (Khalid et al. "
                      "2025, Sec. 4.1)", "command": command, "options": {k: v for k, v in a.items()},
              "sources": sources, "encoder": str(args.full_encoder or sc.DEFAULT_REPO), "data": str(data),
              "images": len(files), "stage_b": "decoder_lite" if lite else "decoder", "parameters": n_params,
              "device": device, "bf16": bool(bf16), "host": platform.node(),
              "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__}}

    def save(stopped: str) -> None:
        _save_atomic(ckpt, {"decoder": tuner.decoder.state_dict(), "optimizer": tuner.optimizer.state_dict(),
                            "step": step, "elapsed": elapsed, "losses": losses, "options": a, "sources": sources})
        _write_record(out, dict(record, steps_done=step, stopped=stopped, wall_s=round(elapsed, 1),
                                loss_first_100=round(float(np.mean(losses[:100])), 5) if losses else None,
                                loss_last_100=round(float(np.mean(losses[-100:])), 5) if losses else None,
                                history=_history(losses), checkpoint=str(ckpt)))

    limit_s = args.full_time_limit_min * 60.0 if args.full_time_limit_min else float("inf")
    t_start = time.monotonic() - elapsed
    stopped = "steps"
    bar = tqdm(total=args.full_steps, initial=step, desc="SC-SIC Stage B", dynamic_ncols=True,
               mininterval=1 if sys.stderr.isatty() else 30)

    def fetch(s):
        return load_batch(files, s, args.full_batch, args.full_resolution, args.full_seed, args.full_flip)

    with ThreadPoolExecutor(max_workers=2) as pool:
        ahead = {s: pool.submit(fetch, s) for s in range(step, min(step + 2, args.full_steps))}
        while step < args.full_steps:
            if time.monotonic() - t_start >= limit_s:
                stopped = "time limit"
                break
            x = torch.from_numpy(ahead.pop(step).result())
            if step + 2 < args.full_steps:
                ahead[step + 2] = pool.submit(fetch, step + 2)
            gen = torch.Generator().manual_seed(int(args.full_seed) * 1_000_003 + step)
            losses.append(tuner.step(x, gen))
            step += 1
            elapsed = time.monotonic() - t_start
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
            if args.full_ckpt_every and step % args.full_ckpt_every == 0 and step < args.full_steps:
                save("checkpoint")
        for f in ahead.values():
            f.cancel()
    bar.close()
    elapsed = time.monotonic() - t_start
    if not args.full_no_export and step >= args.full_steps:
        dest = out / ("decoder_lite" if lite else "decoder")
        tuner.decoder.eval().save_pretrained(str(dest))
        record["exported"] = str(dest)
    save(stopped)
    print(f"stopped at step {step} ({stopped}) after {elapsed / 60:.1f} min; {out / 'record.json'}", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gensemcom.train.sc_sic_full", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_full_arguments(p)
    args = p.parse_args(argv)
    args.argv = ["python", "-m", "gensemcom.train.sc_sic_full"] + list(sys.argv[1:] if argv is None else argv)
    return run_full(args)


if __name__ == "__main__":
    sys.exit(main())
