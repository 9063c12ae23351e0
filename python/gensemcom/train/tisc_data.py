"""Frozen-model features for training TISC's embedded models, computed once and cached.

The embedded captioner reads EfficientNet-Lite0's stride-32 head features of the image
resized whole to 224 x 224 (Flickr8k ships its photos as 224 x 224 squares stretched
from their original aspect, so every image is stretched to a square the same way), and
the generator's targets are TAEF2 latents of the image resized whole to ``res`` x
``res`` and low-passed (:func:`gensemcom.models.tisc_embedded.lowpass`). Both networks are frozen, so
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


def square(path, side: int) -> np.ndarray:
    """An image file resized whole (aspect not kept) to ``side`` x ``side``, (side, side, 3) uint8."""
    from ..image_io import load_image
    from ..models.tisc_embedded import resize_square

    return resize_square(load_image(path), side)


def pixels(u8):
    """(N, H, W, 3) uint8 tensor -> (N, 3, H, W) float in [0, 1]."""
    return u8.permute(0, 3, 1, 2).float() / 255.0


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
    from ..models.tisc_embedded import FEAT_SIDE, lowpass

    if threads:
        torch.set_num_threads(int(threads))
    trunk, taef2 = load_pretrained(), TAEF2()
    feats, lats, lps, imgs = [], [], [], []
    files = [Path(f) for f in files]
    with torch.inference_mode():
        for i in tqdm(range(0, len(files), batch), desc=desc, mininterval=5, unit="batch"):
            part = files[i:i + batch]
            small = torch.from_numpy(np.stack([square(p, res) for p in part]))
            feats.append(trunk.features(pixels(torch.from_numpy(np.stack([square(p, FEAT_SIDE) for p in part]))))[1]
                         .half())
            y = pixels(small)
            lats.append(taef2.encode(y).half())
            lps.append(taef2.encode(lowpass(y, lowpass_side)).half())
            imgs.append(small)
    return {"feat": torch.cat(feats), "latent": torch.cat(lats), "latent_lp": torch.cat(lps),
            "image": torch.cat(imgs), "files": [str(f) for f in files], "res": int(res),
            "lowpass": int(lowpass_side)}
