"""Train the models of TISC's ``embedded`` profile (:mod:`gensemcom.models.tisc_embedded`).

``gensemcom train tisc-embedded --part captioner|decoder|pack|all``

* ``captioner`` (after ``decoder``): Show, Attend and Tell on the Flickr8k subset
  (1,000 images, 5,000 captions; the last ``--val-images`` images held out) over the
  frozen first three stages of the decoder's encoder, cross-entropy plus the doubly
  stochastic attention penalty, word dropout, images resized whole to 72 x 72 with
  random 64 x 64 crops and flips; the state with the best validation loss is kept.
* ``decoder``: the token table, encoder ``E`` and generator ``G`` as an autoencoder
  whose 512-d bottleneck ``v`` gets Gaussian noise at an SNR drawn per sample from
  ``--snr-range`` (dB, relative to the mean square of ``v``), conditioned on the mean
  embedding of a caption (Flickr images: one of their human captions with one word
  removed, as the placeholder is; BSDS400 and DUTS images, which have no captions,
  and 20 % of the Flickr ones: the empty prompt). Loss: MSE. Validation: PSNR of
  ``G(E(x))`` on the BSDS400 test split (never Kodak).
* ``pack``: bundle both checkpoints into ``models/weights/tisc_embedded.pt``
  (float16) with a JSON record of how they were made.

Each part stops at ``--steps`` or ``--time-limit-min``. ``all`` runs decoder,
captioner, pack.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .deepjscc import REPO_ROOT, WEIGHTS_DIR, shared_dir

RES, LOAD = 64, 72


def _load_resized(paths: Sequence[Path], size: int = LOAD) -> np.ndarray:
    """Images resized whole (aspect not kept, as the embedded system does) to size x size."""
    from PIL import Image
    from tqdm import tqdm

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(tqdm(paths, desc="loading images", leave=False, mininterval=2)):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC, reducing_gap=2.0))
    return out


def flickr(root: Path) -> Tuple[List[Path], List[List[str]]]:
    """Flickr8k subset: image paths and their captions (same order)."""
    caps = {}
    with open(root / "captions.txt", newline="") as fh:
        for row in csv.DictReader(fh):
            caps.setdefault(row["image"], []).append(row["caption"])
    names = sorted(caps)
    return [root / "images" / n for n in names], [caps[n] for n in names]


def _images(folder: Path) -> List[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _crops(arr: np.ndarray, idx: np.ndarray, rng: np.random.Generator, train: bool = True):
    import torch

    b = np.empty((len(idx), RES, RES, 3), np.uint8)
    for k, i in enumerate(idx):
        if train:
            y, x = rng.integers(0, LOAD - RES + 1, 2)
            im = arr[i, y: y + RES, x: x + RES]
            b[k] = im[:, ::-1] if rng.random() < 0.5 else im
        else:
            o = (LOAD - RES) // 2
            b[k] = arr[i, o: o + RES, o: o + RES]
    return torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255.0


def _lr(base: float, progress: float) -> float:
    """Constant, then a half-cosine to 10 % over the last 30 % of the run."""
    if progress < 0.7:
        return base
    f = min(1.0, (progress - 0.7) / 0.3)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * f)))


def _save(path: Path, blob: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(blob, str(tmp))
    os.replace(tmp, path)


# ------------------------------------------------------------------ captioner
def train_captioner(args) -> int:
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    from ..models.tisc_embedded import BOS, EOS, PAD, UNK, Captioner, Vocab

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    paths, caps = flickr(Path(args.flickr))
    nval = int(args.val_images)
    vocab = Vocab.build([c for cs in caps[:-nval] for c in cs], min_count=3)
    imgs = _load_resized(paths)
    maxlen = 20
    pairs = [(i, c) for i, cs in enumerate(caps) for c in cs]
    train_pairs = [p for p in pairs if p[0] < len(paths) - nval]
    val_pairs = [p for p in pairs if p[0] >= len(paths) - nval]

    def batch_ids(sel):
        seqs = [[BOS] + vocab.encode(c)[: maxlen - 2] + [EOS] for _, c in sel]
        t = max(len(s) for s in seqs)
        return torch.tensor([s + [PAD] * (t - len(s)) for s in seqs])

    model = Captioner(len(vocab))
    # the visual features: the first three stages of the trained decoder's encoder E, frozen
    dck = Path(args.out) / "decoder.pt"
    if not dck.is_file():
        raise SystemExit(f"{dck} is missing: train the decoder first (--part decoder)")
    dsd = torch.load(str(dck), weights_only=False)["state_dict"]
    model.trunk.load_state_dict({k[len("enc."):]: v for k, v in dsd.items()
                                 if k.startswith("enc.net.") and int(k.split(".")[2]) < 6})
    model.trunk.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-4)
    t0, step, hist = time.monotonic(), 0, []
    best = (float("inf"), 0, None)
    limit = args.time_limit_min * 60 if args.time_limit_min else float("inf")

    def val_loss():
        model.eval()
        tot, n = 0.0, 0
        with torch.no_grad():
            for k in range(0, len(val_pairs), 64):
                sel = val_pairs[k: k + 64]
                ids = batch_ids(sel)
                lo, _ = model(_crops(imgs, np.array([i for i, _ in sel]), rng, False), ids)
                tot += float(F.cross_entropy(lo.reshape(-1, lo.shape[-1]), ids[:, 1:].reshape(-1),
                                             ignore_index=PAD, reduction="sum"))
                n += int((ids[:, 1:] != PAD).sum())
        model.train()
        return tot / max(n, 1)

    bar = tqdm(total=args.steps, desc="captioner", dynamic_ncols=True, mininterval=5)
    while step < args.steps and time.monotonic() - t0 < limit:
        prog = max(step / args.steps, (time.monotonic() - t0) / limit)
        for g in opt.param_groups:
            g["lr"] = _lr(args.lr, prog)
        sel = [train_pairs[j] for j in rng.integers(0, len(train_pairs), args.batch)]
        ids = batch_ids(sel)
        inp = ids.clone()  # word dropout on the LSTM's inputs: lean on the image, not the language prior
        drop = (torch.from_numpy(rng.random(inp.shape) < args.word_dropout)) & (inp > UNK)
        inp[drop] = UNK
        lo, al = model(_crops(imgs, np.array([i for i, _ in sel]), rng), inp)
        ce = F.cross_entropy(lo.reshape(-1, lo.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=PAD)
        mask = (ids[:, 1:] != PAD).float().unsqueeze(-1)
        ds = ((1.0 - (al * mask).sum(1)) ** 2).mean()  # doubly stochastic attention
        loss = ce + 1.0 * ds
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(ce=f"{float(ce):.3f}")
        if step % args.eval_every == 0:
            v = val_loss()
            hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), "val_ce": round(v, 4)})
            tqdm.write(f"captioner step {step}: val cross-entropy {v:.3f} (perplexity {math.exp(v):.1f})")
            if v < best[0]:  # 1,000 images overfit quickly: keep the best validation state
                best = (v, step, {k: t.detach().clone() for k, t in model.state_dict().items()})
    bar.close()
    v = val_loss()
    hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), "val_ce": round(v, 4)})
    if best[2] is not None and best[0] < v:
        model.load_state_dict(best[2])
        v, step_kept = best[0], best[1]
    else:
        step_kept = step
    hist.append({"kept_step": step_kept, "val_ce": round(v, 4)})
    model.eval()
    samples = []
    for i in range(len(paths) - nval, len(paths) - nval + 5):
        ids, betas, _ = model.generate(_crops(imgs, np.array([i]), rng, False))
        samples.append({"image": paths[i].name, "caption": vocab.decode(ids), "human": caps[i][0]})
    print(json.dumps({"captioner_val_ce": v, "samples": samples}, indent=1))
    _save(Path(args.out) / "captioner.pt", {"config": model.cfg, "state_dict": model.state_dict(),
                                            "vocab": vocab.itos, "steps": step, "history": hist,
                                            "minutes": round((time.monotonic() - t0) / 60, 2),
                                            "samples": samples, "args": _args(args)})
    return 0


# ------------------------------------------------------------------ decoder
def train_decoder(args) -> int:
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    from ..models.tisc_embedded import PAD, InversionDecoder, Vocab

    torch.manual_seed(args.seed + 1)
    rng = np.random.default_rng(args.seed + 1)
    ck = Path(args.out) / "captioner.pt"
    paths, caps = flickr(Path(args.flickr))
    if ck.is_file():
        vocab = Vocab(torch.load(str(ck), weights_only=False)["vocab"][5:])
    else:  # the same rule as the captioner's, so the two agree
        vocab = Vocab.build([c for cs in caps[: len(paths) - int(args.val_images)] for c in cs], min_count=3)
    shared = Path(args.shared)
    extra = _images(shared / "data" / "bsds400" / "train") + _images(shared / "data" / "duts-subset" / "TR" / "images")
    val_paths = _images(shared / "data" / "bsds400" / "test")[: args.val_n]
    imgs = _load_resized(list(paths) + extra)
    val = _crops(_load_resized(val_paths), np.arange(len(val_paths)), rng, False)
    n_cap = len(paths)
    lo_snr, hi_snr = (float(s) for s in args.snr_range.split(","))

    model = InversionDecoder(len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    t0, step, hist = time.monotonic(), 0, []
    limit = args.time_limit_min * 60 if args.time_limit_min else float("inf")

    def prompts(idx):
        rows = []
        for i in idx:
            ids = []
            if i < n_cap and rng.random() >= 0.2:
                ids = vocab.encode(caps[i][rng.integers(len(caps[i]))])
                if len(ids) > 1:
                    del ids[rng.integers(len(ids))]
            rows.append(ids[:20] or [PAD])
        t = max(len(r) for r in rows)
        return torch.tensor([r + [PAD] * (t - len(r)) for r in rows])

    def validate():
        model.eval()
        with torch.no_grad():
            c = model.context(torch.zeros((len(val), 1), dtype=torch.long))
            y = model.generate(model.encode(val), c)
            mse = (y - val).pow(2).flatten(1).mean(1)
        model.train()
        return float((-10 * torch.log10(mse)).mean())

    bar = tqdm(total=args.steps, desc="decoder", dynamic_ncols=True, mininterval=5)
    while step < args.steps and time.monotonic() - t0 < limit:
        prog = max(step / args.steps, (time.monotonic() - t0) / limit)
        for g in opt.param_groups:
            g["lr"] = _lr(args.lr, prog)
        idx = rng.integers(0, len(imgs), args.batch)
        x = _crops(imgs, idx, rng)
        v = model.encode(x)
        snr = torch.from_numpy(rng.uniform(lo_snr, hi_snr, (len(idx), 1))).float()
        p = v.detach().pow(2).mean(1, keepdim=True)
        v = v + torch.randn_like(v) * torch.sqrt(p / 10 ** (snr / 10))
        y = model.generate(v, model.context(prompts(idx)))
        loss = F.mse_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(psnr=f"{-10 * math.log10(max(float(loss), 1e-10)):.2f}")
        if step % args.eval_every == 0:
            v_ = validate()
            hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), "val_psnr": round(v_, 3)})
            tqdm.write(f"decoder step {step}: validation PSNR G(E(x)) {v_:.2f} dB")
    bar.close()
    v_ = validate()
    hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), "val_psnr": round(v_, 3)})
    print(json.dumps({"decoder_val_psnr": v_}))
    _save(Path(args.out) / "decoder.pt", {"config": model.cfg, "state_dict": model.state_dict(), "vocab": vocab.itos,
                                          "steps": step, "history": hist,
                                          "minutes": round((time.monotonic() - t0) / 60, 2), "args": _args(args)})
    return 0


# ------------------------------------------------------------------ pack
def pack(args) -> int:
    import torch

    from ..models.tisc_embedded import Captioner, EmbeddedTISC, InversionDecoder, Vocab, parameter_counts

    out = Path(args.out)
    cb = torch.load(str(out / "captioner.pt"), weights_only=False)
    db = torch.load(str(out / "decoder.pt"), weights_only=False)
    if cb["vocab"] != db["vocab"]:
        raise SystemExit("captioner and decoder were trained with different vocabularies: retrain the decoder")
    cap = Captioner(**cb["config"])
    cap.load_state_dict(cb["state_dict"])
    dec = InversionDecoder(**db["config"])
    dec.load_state_dict(db["state_dict"])
    bundle = EmbeddedTISC(Vocab(cb["vocab"][5:]), cap, dec)
    # the norm a receiver assumes when the header (which carries the norm) is lost:
    # the mean ||E(x)|| over the decoder's validation images
    val_paths = _images(Path(args.shared) / "data" / "bsds400" / "test")[: args.val_n]
    with torch.no_grad():
        x = _crops(_load_resized(val_paths), np.arange(len(val_paths)), np.random.default_rng(0), False)
        expected_norm = float(dec.eval().encode(x).norm(dim=1).mean())
    record = {"made_by": "gensemcom train tisc-embedded", "data": {
        "captioner": "Flickr8k 1000-image subset (../shared/data/flickr8k-1000), last "
                     f"{cb['args'].get('val_images')} images held out",
        "decoder": "Flickr8k subset + BSDS400 train + DUTS-TR subset; validation BSDS400 test"},
        "captioner": {k: cb[k] for k in ("steps", "minutes", "history", "samples", "args")},
        "decoder": {k: db[k] for k in ("steps", "minutes", "history", "args")},
        "parameters": parameter_counts(bundle), "vocab_size": len(bundle.vocab),
        "expected_norm": round(expected_norm, 4),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}"}
    dest = Path(args.export_to) if args.export_to else WEIGHTS_DIR / "tisc_embedded.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    bundle.save(dest, record)
    record["weights_bytes"] = dest.stat().st_size
    dest.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) and {dest.with_suffix('.json').name}")
    return 0


def _args(args) -> dict:
    d = {k: v for k, v in vars(args).items() if k not in ("func",)}
    d["command"] = " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv))
    return d


def run(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(int(args.threads))
    parts = ["decoder", "captioner", "pack"] if args.part == "all" else [args.part]
    for part in parts:
        rc = {"captioner": train_captioner, "decoder": train_decoder, "pack": pack}[part](args)
        if rc:
            return rc
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    sh = shared_dir()
    p.add_argument("--part", choices=("captioner", "decoder", "pack", "all"), default="all",
                   help="what to do (default: %(default)s)")
    p.add_argument("--shared", default=str(sh), help="shared data root (default: %(default)s)")
    p.add_argument("--flickr", default=str(sh / "data" / "flickr8k-1000"), help="Flickr8k subset folder")
    p.add_argument("--out", default=str(REPO_ROOT / "out" / "tisc_embedded"), help="checkpoint folder")
    p.add_argument("--steps", type=int, default=20000, help="maximum steps per part")
    p.add_argument("--time-limit-min", type=float, default=0.0, help="stop each part after N minutes (0: none)")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--snr-range", default="-5,20", help="decoder: bottleneck SNR range (dB), uniform per sample")
    p.add_argument("--val-images", type=int, default=50, help="captioner: Flickr images held out")
    p.add_argument("--word-dropout", type=float, default=0.25, help="captioner: input words replaced by <unk>")
    p.add_argument("--val-n", type=int, default=64, help="decoder: BSDS400 test images for validation")
    p.add_argument("--eval-every", type=int, default=500, help="validate every N steps")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, noise and init")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--export-to", default=None, help="pack: weights path (default: models/weights/tisc_embedded.pt)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``tisc-embedded`` subcommand to a ``train`` subparsers object."""
    from . import add_trainer

    return add_trainer(subparsers, "tisc-embedded", "train the captioner and decoder of TISC's embedded profile", __doc__, add_arguments, run)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m gensemcom.train.tisc_embedded``."""
    from . import trainer_main

    return trainer_main("gensemcom.train.tisc_embedded", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
