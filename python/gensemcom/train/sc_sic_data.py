"""Training pairs for SC-SIC's embedded Stage B: frozen trunk features and TAEF2 latents.

The embedded profile's trunk (EfficientNet-Lite0) and Stage A (TAEF2) are frozen, so
their outputs are computed once per training crop and cached
(:func:`build_cache`): for each image, the TAEF2 latent of the whole image (cropped to
a multiple of 8 pixels, so latents of crops are slices of it, with the whole image as
context), and for ``crops_per_image`` random ``crop`` x ``crop`` crops aligned to 8
pixels, the trunk's stride-32 features of the crop resized by 3/4 (the paper's resize
rule) and the crop's colour means on the same grid. Training then only runs the
learned encoder head and Stage B.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np


def list_images(folders: Sequence[Path], exts=(".jpg", ".jpeg", ".png")) -> List[Path]:
    """Every image file in ``folders``, sorted per folder."""
    out: List[Path] = []
    for f in folders:
        f = Path(f)
        if not f.is_dir():
            raise FileNotFoundError(f"training folder {f} not found")
        out += sorted(p for p in f.iterdir() if p.suffix.lower() in exts)
    if not out:
        raise FileNotFoundError(f"no images in {', '.join(map(str, folders))}")
    return out


def build_cache(files: Sequence[Path], crop: int = 256, crops_per_image: int = 6, seed: int = 0,
                threads: int = 0) -> Dict[str, object]:
    """Trunk features, colour grids and TAEF2 latents of random crops (see the module).

    Returns:
        dict: ``last`` (N, 320, g, g) fp16, ``head`` (N, 1280, g, g) fp16, ``rgb`` (N, 3, g, g)
        fp16, ``rgb_fine`` (N, 3, 4g, 4g) fp16 (colour means on a 4x finer grid), ``latent`` (N, 32, crop/8, crop/8) fp16, ``source`` (N,) image index, ``files``,
        ``crop``; ``g = crop * 3/4 / 32``.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from tqdm import tqdm

    from ..models.effnet_lite import load_pretrained
    from ..models.sc_sic_embedded import color_grid, trunk_input
    from ..models.taef2 import TAEF2

    if threads:
        torch.set_num_threads(int(threads))
    rng = np.random.default_rng(seed)
    trunk, taef2 = load_pretrained(), TAEF2()
    last, head, rgb, fine, lat, src = [], [], [], [], [], []
    with torch.inference_mode():
        for i, p in enumerate(tqdm(files, desc="SC-SIC cache (TAEF2 + EfficientNet-Lite0)", mininterval=5)):
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"))
            h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8
            if min(h, w) < crop:
                continue
            x = torch.from_numpy(np.array(a[:h, :w])).permute(2, 0, 1)[None].float() / 255.0
            z = taef2.encode(x)[0]
            boxes = [(8 * rng.integers((h - crop) // 8 + 1), 8 * rng.integers((w - crop) // 8 + 1))
                     for _ in range(crops_per_image)]
            xc = torch.cat([x[..., y:y + crop, q:q + crop] for y, q in boxes])
            f_last, f_head = trunk.features(trunk_input(xc))
            last.append(f_last.half())
            head.append(f_head.half())
            rgb.append(color_grid(xc, f_head.shape[-2:]).half())
            fine.append(F.adaptive_avg_pool2d(xc, tuple(4 * g for g in f_head.shape[-2:])).half())
            lat.append(torch.stack([z[:, y // 8:(y + crop) // 8, q // 8:(q + crop) // 8] for y, q in boxes]).half())
            src += [i] * len(boxes)
    return {"last": torch.cat(last), "head": torch.cat(head), "rgb": torch.cat(rgb), "rgb_fine": torch.cat(fine),
            "latent": torch.cat(lat),
            "source": torch.tensor(src), "files": [str(f) for f in files], "crop": int(crop)}
