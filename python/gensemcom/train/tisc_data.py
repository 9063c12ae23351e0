"""Frozen-model features for training TISC's embedded models, computed once and cached.

The embedded captioner reads EfficientNet-Lite0's stride-32 head features of the image
resized whole to 224 x 224 (Flickr8k ships its photos as 224 x 224 squares stretched
from their original aspect, so every image is stretched to a square the same way), and
the generator's targets are TAEF2 latents of the image resized whole to ``res`` x
``res`` and low-passed (:func:`lowpass`). Both networks are frozen, so
:func:`build_cache` runs them once per image.

Why low-passed targets: a 512-d ``v`` carries about a 13 x 13 thumbnail's worth of the
image, so the generator cannot know the sent image's fine detail. Regressed with MSE
in latent space, the unknowable detail of full-resolution targets averages into
latents that TAEF2 decodes to neither the image nor a smooth version of it (15.7 dB on
BSDS400 test after 1,000 steps, where a 13 x 13 colour thumbnail scores 20.4 dB). The
latent of the image low-passed to what ``v`` can carry is a target the generator can
reach, and TAEF2 decodes it back to that smooth image.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

#: the captioner's (and the amortised encoder's) input side: Flickr8k's square
CAPTION_SIDE = 224


def square(path, side: int) -> np.ndarray:
    """An image file resized whole (aspect not kept) to ``side`` x ``side``, (side, side, 3) uint8."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC, reducing_gap=2.0))


def flickr8k(root: Path) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """Flickr8k: {image: [five captions]} and the standard split {train|dev|test: [image]}."""
    root = Path(root)
    caps: Dict[str, List[str]] = {}
    with open(root / "captions.txt", newline="") as fh:
        for row in csv.DictReader(fh):
            caps.setdefault(row["image"], []).append(row["caption"].strip())
    split = {s: [ln.strip() for ln in (root / f"{s}.txt").read_text().splitlines() if ln.strip()]
             for s in ("train", "dev", "test")}
    return caps, split


def lowpass(x, side: int):
    """(B, 3, H, W) in [0, 1] -> the same size, area-downsampled to ``side`` x ``side``
    and bicubic-upsampled back."""
    import torch.nn.functional as F

    small = F.interpolate(x, size=(side, side), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)


def lowpass_latents(images, side: int, taef2=None, batch: int = 32, desc: str = "low-pass TAEF2 latents"):
    """TAEF2 latents of (N, H, W, 3) uint8 images low-passed to ``side`` (fp16)."""
    import torch
    from tqdm import tqdm

    from ..models.taef2 import TAEF2

    taef2 = taef2 or TAEF2()
    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(images), batch), desc=desc, mininterval=5, unit="batch"):
            x = torch.as_tensor(images[i:i + batch]).permute(0, 3, 1, 2).float() / 255.0
            out.append(taef2.encode(lowpass(x, side)).half())
    return torch.cat(out)


def build_cache(files: Sequence[Path], res: int = 128, batch: int = 32, threads: int = 0, lowpass_side: int = 32,
                desc: str = "TISC cache (EfficientNet-Lite0 + TAEF2)") -> Dict[str, object]:
    """EfficientNet-Lite0 head features at 224 and TAEF2 latents at ``res`` of every file,
    of the image itself and low-passed to ``lowpass_side``.

    Returns:
        dict: ``feat`` (N, 1280, 7, 7) fp16, ``latent`` (N, 32, res/8, res/8) fp16,
        ``latent_lp`` (the same, low-passed), ``image`` (N, res, res, 3) uint8 (the
        generator's pixel targets), ``files``, ``res``, ``lowpass``.
    """
    import torch
    from tqdm import tqdm

    from ..models.effnet_lite import load_pretrained
    from ..models.taef2 import TAEF2

    if threads:
        torch.set_num_threads(int(threads))
    trunk, taef2 = load_pretrained(), TAEF2()
    feats, lats, lps, imgs = [], [], [], []
    files = [Path(f) for f in files]
    with torch.inference_mode():
        for i in tqdm(range(0, len(files), batch), desc=desc, mininterval=5, unit="batch"):
            part = files[i:i + batch]
            big = np.stack([square(p, CAPTION_SIDE) for p in part])
            small = np.stack([square(p, res) for p in part])
            x = torch.from_numpy(big).permute(0, 3, 1, 2).float() / 255.0
            feats.append(trunk.features(x)[1].half())
            y = torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255.0
            lats.append(taef2.encode(y).half())
            lps.append(taef2.encode(lowpass(y, lowpass_side)).half())
            imgs.append(torch.from_numpy(small))
    return {"feat": torch.cat(feats), "latent": torch.cat(lats), "latent_lp": torch.cat(lps),
            "image": torch.cat(imgs), "files": [str(f) for f in files], "res": int(res),
            "lowpass": int(lowpass_side)}
