"""Train, export and evaluate the DeepJSCC baseline (:mod:`gensemcom.models.deepjscc`).

Training (``gensemcom train deepjscc`` or ``python -m gensemcom.train.deepjscc``)
loads every BSDS400 training JPEG into memory once, draws random crops with flips,
draws one SNR per sample uniformly from ``--snr-range``, sends the power-normalised
latent through AWGN (with the link's MMSE equaliser) and minimises the MSE. It
checkpoints model, optimiser, step, elapsed time and RNG states every
``--ckpt-min`` minutes (``--resume`` continues from ``--out``), stops at
``--steps`` or ``--time-limit-min``, and exports the final weights as float16 to
``python/gensemcom/models/weights/deepjscc_cbr24.pt`` with a JSON record of how they
were made (command, data, seed, steps, wall time, validation PSNRs).

The learning rate is constant, then decays along a half cosine to 10% over the last
``--decay-frac`` of the run, where progress is the larger of step / steps and
elapsed / time limit (so a time-limited run still anneals).

``--eval-kodak`` measures the exported (or ``--weights``) model on the 24 Kodak
images through the real PHY path (:func:`gensemcom.link.run_link`: link
power normalisation, AWGN or Rayleigh, MMSE, de-normalisation) and reports PSNR per
SNR and the encode + decode time; ``--record`` writes the table into the JSON.

Kodak is used for evaluation only, never for training.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
VAL_SNRS = (1.0, 5.0, 10.0, 15.0)


def shared_dir() -> Path:
    """The shared data folder: ``$GENSEMCOM_SHARED`` or ``../shared`` beside the repo."""
    return Path(os.environ.get("GENSEMCOM_SHARED", REPO_ROOT.parent / "shared"))


def weights_name(cbr: Fraction) -> str:
    """File stem of the exported weights for a CBR: ``deepjscc_cbr24`` for 1/24."""
    cbr = Fraction(cbr)
    tag = str(cbr.denominator) if cbr.numerator == 1 else f"{cbr.numerator}_{cbr.denominator}"
    return f"deepjscc_cbr{tag}"


# ------------------------------------------------------------------ data
def load_images(folder: Path, exts=(".jpg", ".jpeg", ".png")) -> List[np.ndarray]:
    """Every image in ``folder`` as an RGB uint8 array (sorted by name)."""
    from PIL import Image
    from tqdm import tqdm

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    out = []
    for p in tqdm(files, desc=f"loading {Path(folder).name}", leave=False, mininterval=2):
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def random_batch(images: Sequence[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` random ``crop`` x ``crop`` patches with random flips, (B, 3, crop, crop) float32 in [0, 1]."""
    out = np.empty((batch, crop, crop, 3), np.uint8)
    for i in range(batch):
        im = images[rng.integers(len(images))]
        h, w = im.shape[:2]
        if rng.random() < 0.5 and h != w:  # portrait and landscape images: use either
            im = im.transpose(1, 0, 2)
            h, w = w, h
        y, x = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        p = im[y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            p = p[:, ::-1]
        if rng.random() < 0.5:
            p = p[::-1]
        out[i] = p
    return out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def validation_set(images: Sequence[np.ndarray], n: int = 32, crop: int = 256, seed: int = 0) -> np.ndarray:
    """A fixed set of ``n`` crops (one per image, cycling) for validation PSNR."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        im = images[i % len(images)]
        h, w = im.shape[:2]
        c = min(crop, h, w)
        y, x = rng.integers(h - c + 1), rng.integers(w - c + 1)
        crops.append(im[y:y + c, x:x + c])
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def validate(model, val: np.ndarray, snrs=VAL_SNRS, batch: int = 8, seed: int = 0) -> Dict[str, float]:
    """Mean PSNR (dB) on ``val`` per SNR, AWGN with MMSE, fixed noise seed."""
    import torch

    from ..models.deepjscc import psnr

    was_training = model.training
    model.eval()
    res = {}
    with torch.no_grad():
        for snr in snrs:
            g = torch.Generator().manual_seed(seed)
            vals = []
            for i in range(0, len(val), batch):
                x = torch.from_numpy(val[i:i + batch])
                s = torch.full((x.shape[0],), float(snr))
                vals.append(psnr(model(x, s, generator=g), x))
            res[f"{snr:g}"] = float(torch.cat(vals).mean())
    model.train(was_training)
    return res


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, model, opt, step: int, elapsed: float, rng: np.random.Generator,
                    args: argparse.Namespace, history: list) -> None:
    """Write a resumable checkpoint atomically (model, optimiser, step, time, RNG states)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"config": model.config(), "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
            "elapsed": elapsed, "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "py_rng": random.getstate(), "args": {k: v for k, v in vars(args).items() if k != "func"},
            "history": history}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, str(tmp))
    os.replace(tmp, path)


def export_weights(model, dest: Path, record: dict) -> None:
    """Float16 state dict + config to ``dest`` (.pt) and ``record`` to the matching .json."""
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"config": model.config(), "state_dict": sd, "cbr": str(model.cbr)}, str(dest))
    record = dict(record, weights_file=dest.name, weights_bytes=dest.stat().st_size)
    dest.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


class ThreadTuner:
    """Pick the torch thread count that trains fastest now, on a shared CPU.

    With ``"auto"``, every ``period`` steps it times ``probe`` steps at each thread
    count from 1 to the number of CPUs and keeps the fastest (median step time).
    Two threads on a CPU where another process holds one core can be several times
    slower than one thread, and twice as fast when the core is free.

    Args:
        spec (str | int): ``"auto"`` or a fixed thread count.
        period (int): steps between probes.
        probe (int): steps timed per candidate (the first one after a switch is dropped).
    """

    def __init__(self, spec, period: int = 300, probe: int = 6):
        import torch

        self.torch = torch
        if str(spec) == "auto":
            self.choices = list(range(1, (os.cpu_count() or 1) + 1))
        else:
            self.choices = [int(spec)]
        self.period, self.probe = period, probe
        self.queue: List[int] = []
        self.times: Dict[int, List[float]] = {}
        self.current = self.choices[-1]
        self.left = 0
        self._set(self.current)

    def _set(self, n: int) -> None:
        if self.torch.get_num_threads() != n:
            self.torch.set_num_threads(n)
        self.current = n

    def before(self) -> int:
        """Call before a step; returns the thread count it will run with."""
        if len(self.choices) == 1:
            return self.current
        if not self.queue and self.left <= 0:
            self.times = {}
            self.queue = [n for n in self.choices for _ in range(self.probe)]
        if self.queue:
            self._set(self.queue[0])
        return self.current

    def after(self, dt: float) -> None:
        """Call after a step with its duration (seconds)."""
        if len(self.choices) == 1:
            return
        if self.queue:
            n = self.queue.pop(0)
            self.times.setdefault(n, []).append(dt)
            if not self.queue:
                med = {k: float(np.median(v[1:] or v)) for k, v in self.times.items()}
                self._set(min(med, key=med.get))
                self.left = self.period
        else:
            self.left -= 1


def lr_at(base: float, progress: float, decay_frac: float) -> float:
    """Constant ``base``, then a half cosine down to base/10 over the last ``decay_frac``."""
    start = 1.0 - decay_frac
    if progress <= start or decay_frac <= 0:
        return base
    t = min((progress - start) / decay_frac, 1.0)
    return base * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))


# ------------------------------------------------------------------ training
def train(args: argparse.Namespace) -> int:
    """Run (or resume) training, then export; returns a process exit status."""
    import torch
    from tqdm import tqdm

    from ..models.deepjscc import DeepJSCC, channels_for_cbr, psnr

    tuner = ThreadTuner(args.threads)
    cbr = Fraction(args.cbr)
    c = channels_for_cbr(cbr)
    snr_lo, snr_hi = (float(v) for v in args.snr_range.split(","))
    out = Path(args.out)

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = DeepJSCC(args.width, c)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, elapsed, history = 0, 0.0, []
    if args.resume and out.exists():
        blob = torch.load(str(out), map_location="cpu", weights_only=False)
        if blob["config"] != model.config():
            raise SystemExit(f"checkpoint {out} has config {blob['config']}, not {model.config()}")
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        step, elapsed, history = blob["step"], blob["elapsed"], blob.get("history", [])
        rng.bit_generator.state = blob["np_rng"]
        torch.set_rng_state(blob["torch_rng"])
        random.setstate(blob["py_rng"])
        print(f"resumed {out} at step {step} ({elapsed / 60:.1f} min trained)", file=sys.stderr)

    data_dir = Path(args.data)
    train_imgs = load_images(data_dir)
    val_dir = Path(args.val_data) if args.val_data else data_dir.parent / "test"
    val = validation_set(load_images(val_dir), n=args.val_n) if val_dir.is_dir() else None
    n_params = sum(p.numel() for p in model.parameters())
    print(f"DeepJSCC n={args.width} c={c} CBR={cbr} params={n_params / 1e6:.2f}M; {len(train_imgs)} training "
          f"images from {data_dir}; validation: {val_dir if val is not None else 'none'}", file=sys.stderr)

    use_bf16 = args.bf16
    limit_s = args.time_limit_min * 60.0 if args.time_limit_min else math.inf
    ckpt_s = args.ckpt_min * 60.0
    t_start = time.monotonic() - elapsed
    t_ckpt = time.monotonic()
    model.train()
    ema_loss, ema_psnr = None, None
    bar = tqdm(total=args.steps, initial=step, desc="deepjscc", dynamic_ncols=True,
               mininterval=1 if sys.stderr.isatty() else 30)
    stopped = "steps"
    while step < args.steps:
        elapsed = time.monotonic() - t_start
        if elapsed >= limit_s:
            stopped = "time limit"
            break
        progress = max(step / args.steps, elapsed / limit_s)
        lr = lr_at(args.lr, progress, args.decay_frac)
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        t_step = time.monotonic()
        tuner.before()
        x = torch.from_numpy(random_batch(train_imgs, args.batch, args.crop, rng))
        snr = torch.empty(args.batch).uniform_(snr_lo, snr_hi)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            y = model(x, snr)
        y = y.float()
        loss = torch.nn.functional.mse_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        tuner.after(time.monotonic() - t_step)
        lv = float(loss.detach())
        pv = float(psnr(y.detach(), x).mean())
        ema_loss = lv if ema_loss is None else 0.98 * ema_loss + 0.02 * lv
        ema_psnr = pv if ema_psnr is None else 0.98 * ema_psnr + 0.02 * pv
        bar.update(1)
        bar.set_postfix(loss=f"{ema_loss:.5f}", psnr=f"{ema_psnr:.2f}", lr=f"{lr:.1e}", thr=tuner.current,
                        refresh=False)
        if val is not None and args.eval_every and step % args.eval_every == 0:
            v = validate(model, val)
            history.append({"step": step, "elapsed_s": round(time.monotonic() - t_start, 1),
                            "train_psnr_ema": round(ema_psnr, 3), "val_psnr": {k: round(p, 3) for k, p in v.items()}})
            tqdm.write(f"step {step} ({(time.monotonic() - t_start) / 60:.1f} min) val PSNR "
                       + " ".join(f"{k}dB:{p:.2f}" for k, p in v.items()), file=sys.stderr)
        if time.monotonic() - t_ckpt >= ckpt_s:
            save_checkpoint(out, model, opt, step, time.monotonic() - t_start, rng, args, history)
            t_ckpt = time.monotonic()
    bar.close()
    elapsed = time.monotonic() - t_start
    save_checkpoint(out, model, opt, step, elapsed, rng, args, history)
    print(f"stopped at step {step} ({stopped}) after {elapsed / 60:.1f} min; checkpoint {out}", file=sys.stderr)
    if args.no_export:
        return 0
    return export(args, model=model, step=step, elapsed=elapsed, history=history, stopped=stopped,
                  val=val, data_dir=data_dir, val_dir=val_dir)


def export(args: argparse.Namespace, model=None, step: Optional[int] = None, elapsed: Optional[float] = None,
           history: Optional[list] = None, stopped: str = "", val=None, data_dir=None, val_dir=None) -> int:
    """Export weights (from ``model`` or the checkpoint ``--out``) with their JSON record."""
    import torch

    from ..models.deepjscc import DeepJSCC

    ckpt_args = {}
    if model is None:
        blob = torch.load(str(args.out), map_location="cpu", weights_only=False)
        model = DeepJSCC(**blob["config"])
        model.load_state_dict(blob["model"])
        step, elapsed, history = blob["step"], blob["elapsed"], blob.get("history", [])
        ckpt_args = blob.get("args", {})
        data_dir = Path(ckpt_args.get("data", args.data))
        val_dir = Path(ckpt_args.get("val_data") or data_dir.parent / "test")
        if val_dir.is_dir():
            val = validation_set(load_images(val_dir), n=ckpt_args.get("val_n", args.val_n))
    final_val = validate(model, val) if val is not None else {}
    # the float16 weights are what ships: measure them, not the float32 ones
    dest = Path(args.export_to) if args.export_to else WEIGHTS_DIR / f"{weights_name(model.cbr)}.pt"
    targs = {k: v for k, v in vars(args).items() if k != "func"}
    targs.update({k: v for k, v in ckpt_args.items() if k in ("batch", "crop", "lr", "snr_range", "seed", "width",
                                                              "steps", "time_limit_min", "decay_frac", "bf16")})
    record = {
        "model": "gensemcom.models.deepjscc.DeepJSCC", "config": model.config(), "cbr": str(model.cbr),
        "cbr_formula": "C / 384 (latent C x H/8 x W/8 reals, two reals per complex channel use)",
        "command": " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv)),
        "data": {"train": str(data_dir), "validation": str(val_dir) if val is not None else None,
                 "validation_crops": None if val is None else f"{len(val)} fixed 256x256 crops, seed 0",
                 "kodak_used_for_training": False},
        "training": {"steps": step, "stopped_by": stopped or "export of checkpoint", "wall_time_s": round(elapsed, 1),
                     "seed": targs.get("seed"), "batch": targs.get("batch"), "crop": targs.get("crop"),
                     "lr": targs.get("lr"),
                     "lr_schedule": f"constant, cosine to 10% over last {targs.get('decay_frac')}",
                     "snr_range_db": targs.get("snr_range"), "snr_sampling": "uniform per sample",
                     "channel": "AWGN + MMSE equaliser (as in FrameLink)", "loss": "MSE",
                     "bf16_autocast": targs.get("bf16"), "threads": targs.get("threads"),
                     "time_limit_min": targs.get("time_limit_min")},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "validation_psnr_db_final": {k: round(v, 3) for k, v in final_val.items()},
        "validation_history": history or [],
        "weights_dtype": "float16",
    }
    export_weights(model, dest, record)
    # re-measure with the float16 weights as shipped
    if val is not None:
        from ..models.deepjscc import load_model

        rec = json.loads(dest.with_suffix(".json").read_text())
        rec["validation_psnr_db_final_fp16"] = {k: round(v, 3) for k, v in validate(load_model(dest), val).items()}
        dest.with_suffix(".json").write_text(json.dumps(rec, indent=1) + "\n")
    print(f"exported {dest} ({dest.stat().st_size / 1e6:.2f} MB); validation PSNR "
          + " ".join(f"{k}dB:{v:.2f}" for k, v in final_val.items()), file=sys.stderr)
    return 0


# ------------------------------------------------------------------ Kodak evaluation
def eval_kodak(args: argparse.Namespace) -> int:
    """PSNR on Kodak through :func:`run_link` at each SNR, and encode/decode timing."""
    import torch
    from PIL import Image
    from tqdm import tqdm

    from ..systems.deepjscc import DeepJSCC as DeepJSCCSystem
    from ..link import FrameLink, PhyConfig, run_link

    torch.set_num_threads((os.cpu_count() or 1) if args.threads == "auto" else int(args.threads))
    kodak = Path(args.kodak) if args.kodak else shared_dir() / "data" / "kodak"
    files = sorted(kodak.glob("*.png"))[: args.max_images or None]
    if not files:
        raise SystemExit(f"no Kodak PNGs in {kodak}")
    system = DeepJSCCSystem(path=args.weights) if args.weights else DeepJSCCSystem(profile="embedded")
    snrs = [float(s) for s in args.eval_snrs.split(",")]
    link = FrameLink(PhyConfig(modulation=args.modulation, channel=args.channel, seed=args.seed))
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]

    def psnr_u8(a, b):
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))

    table: Dict[str, dict] = {}
    enc_t, dec_t = [], []
    uses = None
    for snr in snrs:
        rng = np.random.default_rng(args.seed)
        delivered, genie, lost = [], [], 0
        for img in tqdm(images, desc=f"Kodak {snr:g} dB", leave=False, mininterval=2):
            res = run_link(system, img, snr, link, rng)
            uses = res.channel_uses
            if res.image is None:
                # header lost: decode the received analog symbols with the sent header
                # (a genie header; the link scale is 1 because the latent has unit power)
                lost += 1
                rx = res.frame_rx
                rx.header, rx.crc_ok = dict(res.frame_tx.header), True
                rx.analog = rx.analog[: res.frame_tx.analog.size]
                genie.append(psnr_u8(system.decode(rx, link.context(snr)), img))
                continue
            p = psnr_u8(res.image, img)
            delivered.append(p)
            genie.append(p)
            enc_t.append(res.timings["encode_s"])
            dec_t.append(res.timings["decode_s"])
        row = {"psnr_db": float(np.mean(genie)), "header_lost": lost,
               "psnr_db_delivered": float(np.mean(delivered)) if delivered else None}
        table[f"{snr:g}"] = row
        print(f"SNR {snr:5.1f} dB ({args.channel}): PSNR {row['psnr_db']:.2f} dB over {len(images)} images; "
              f"header lost {lost}/{len(images)} ({args.modulation}-QAM r1/2 digital path"
              + (f"; delivered only: {row['psnr_db_delivered']:.2f} dB" if lost and delivered else "") + ")")
    h, w = images[0].shape[:2]
    if not enc_t:  # every header lost: time an encode and a decode directly
        for _ in range(3):
            t0 = time.perf_counter()
            fr = system.encode(images[0], link.context(10.0))
            enc_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            system.decode(fr, link.context(10.0))
            dec_t.append(time.perf_counter() - t0)
    timing = {"encode_s_median": float(np.median(enc_t)), "decode_s_median": float(np.median(dec_t)),
              "threads": args.threads}
    print(f"channel uses per {w}x{h} image: {uses} (analog CBR = {uses['analog'] / (3 * h * w):.5f}); "
          f"encode {timing['encode_s_median'] * 1e3:.0f} ms, decode {timing['decode_s_median'] * 1e3:.0f} ms "
          f"(median, {args.threads} threads)")
    if args.record:
        dest = Path(args.weights) if args.weights else WEIGHTS_DIR / "deepjscc_cbr24.pt"
        jpath = dest.with_suffix(".json")
        rec = json.loads(jpath.read_text()) if jpath.exists() else {}
        rec.setdefault("kodak", {})[f"{args.channel}_qam{args.modulation}"] = {
            "psnr_db": {k: round(v["psnr_db"], 3) for k, v in table.items()},
            "header_lost": {k: v["header_lost"] for k, v in table.items()},
            "psnr_db_delivered_only": {k: None if v["psnr_db_delivered"] is None else round(v["psnr_db_delivered"], 3)
                                       for k, v in table.items()},
            "header_path": f"{args.modulation}-QAM, LDPC rate 1/2, CRC-32",
            "note": "psnr_db counts every image; where the digital header failed its CRC the received "
                    "analog symbols are decoded with the sent header (genie header)",
            "images": len(images),
            "path": "run_link (FrameLink: power normalisation, channel, MMSE, header scale)",
            "channel_uses": uses, "timing": timing, "seed": args.seed,
            "command": " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv))}
        jpath.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"recorded in {jpath}")
    return 0


# ------------------------------------------------------------------ CLI
def run(args: argparse.Namespace) -> int:
    """Dispatch: ``--eval-kodak``, ``--export-only`` or training."""
    if args.eval_kodak:
        return eval_kodak(args)
    if args.export_only:
        return export(args)
    return train(args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the ``deepjscc`` trainer."""
    default_data = shared_dir() / "data" / "bsds400" / "train"
    g = p.add_argument_group("training")
    g.add_argument("--data", default=str(default_data), help="training images (default: %(default)s)")
    g.add_argument("--val-data", default=None, help="validation images (default: DATA/../test)")
    g.add_argument("--val-n", type=int, default=32, help="validation crops (256x256)")
    g.add_argument("--crop", type=int, default=128, help="training crop size")
    g.add_argument("--batch", type=int, default=16, help="batch size")
    g.add_argument("--steps", type=int, default=100000, help="maximum steps")
    g.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate")
    g.add_argument("--decay-frac", type=float, default=0.3, help="fraction of the run with cosine lr decay")
    g.add_argument("--snr-range", default="0,20", help="training SNR range in dB, uniform per sample")
    g.add_argument("--cbr", default="1/24", help="channel bandwidth ratio C/384 (1/24 -> C=16)")
    g.add_argument("--width", type=int, default=96, help="hidden channels N")
    g.add_argument("--seed", type=int, default=0, help="seed of data, noise and init")
    g.add_argument("--out", default=str(REPO_ROOT / "out" / "deepjscc" / "ckpt_cbr24.pt"),
                   help="checkpoint path (default: %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue from --out")
    g.add_argument("--threads", default="auto",
                   help="torch CPU threads, or 'auto': re-pick the fastest count every 300 steps (default)")
    g.add_argument("--time-limit-min", type=float, default=0.0, help="stop after this many minutes (0: none)")
    g.add_argument("--ckpt-min", type=float, default=4.0, help="checkpoint every this many minutes")
    g.add_argument("--eval-every", type=int, default=500, help="validation every N steps (0: never)")
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bfloat16 autocast on CPU (much faster on AVX512-BF16 CPUs)")
    g.add_argument("--no-export", action="store_true", help="do not export weights at the end")
    g.add_argument("--export-only", action="store_true", help="export weights from the checkpoint --out and exit")
    g.add_argument("--export-to", default=None, help="weights path (default: models/weights/deepjscc_cbrXX.pt)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--eval-kodak", action="store_true", help="PSNR on Kodak through run_link, and timing")
    e.add_argument("--weights", default=None, help="weights or checkpoint to evaluate (default: embedded)")
    e.add_argument("--kodak", default=None, help="Kodak folder (default: SHARED/data/kodak)")
    e.add_argument("--eval-snrs", default="1,5,10,15", help="SNRs (dB) for --eval-kodak")
    e.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"), help="channel for --eval-kodak")
    e.add_argument("--modulation", type=int, default=4,
                   help="QAM order of the digital path that carries the header (default: 4, QPSK)")
    e.add_argument("--max-images", type=int, default=0, help="only the first N Kodak images (0: all)")
    e.add_argument("--record", action="store_true", help="write the Kodak table into the weights' JSON")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``deepjscc`` subcommand to a ``train`` subparsers object."""
    from . import add_trainer

    return add_trainer(subparsers, "deepjscc", "train / export / evaluate the DeepJSCC baseline", __doc__, add_arguments, run)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m gensemcom.train.deepjscc``."""
    from . import trainer_main

    return trainer_main("gensemcom.train.deepjscc", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
