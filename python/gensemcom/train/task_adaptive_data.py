"""CamVid at the task-adaptive working size, with every frozen network's output cached.

The embedded task-adaptive profile trains a segmentation head over a frozen
EfficientNet-Lite0 trunk and a conditional DDPM in the latent space of the frozen
TAEF2 autoencoder, so both frozen networks run once per image (and once per
horizontally flipped copy, for the training splits): :func:`build_cache` stores, per
sample, the image at :data:`~gensemcom.models.task_adaptive_embedded.WORK_SIZE`
(uint8), its label map (nearest-neighbour), its Canny edge map, the trunk's pyramid
(strides 8, 16, 32; fp16) and TAEF2's latent (fp16).

CamVid (``../shared/data/camvid``): ``{train,val,test}/*.jpg`` with label PNGs of the
same name in ``{split}annot/``; labels 0-10 are the classes, 11 is unlabelled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

SPLITS = ("train", "val", "test")


def camvid_pairs(root, split: str) -> List[Tuple[Path, Path]]:
    """(image, label) paths of a CamVid split, sorted.

    Raises:
        FileNotFoundError: a missing split folder or label.
    """
    root = Path(root)
    img_dir, ann_dir = root / split, root / f"{split}annot"
    if not img_dir.is_dir() or not ann_dir.is_dir():
        raise FileNotFoundError(f"CamVid split {split!r} not found under {root} (expected {split}/ and {split}annot/)")
    out = []
    for p in sorted(img_dir.iterdir()):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        lab = ann_dir / (p.stem + ".png")
        if not lab.is_file():
            raise FileNotFoundError(f"CamVid label {lab} missing for {p}")
        out.append((p, lab))
    return out


def load_pair(img_path, lab_path) -> Tuple[np.ndarray, np.ndarray]:
    """An image (H, W, 3) uint8 and its labels (H, W) uint8 at the working size."""
    from PIL import Image

    from ..models.task_adaptive_embedded import WORK_SIZE, resize_labels, work_resize

    with Image.open(img_path) as im:
        img = np.asarray(im.convert("RGB"))
    with Image.open(lab_path) as im:
        lab = np.asarray(im)
    return work_resize(img), resize_labels(lab, WORK_SIZE)


def build_cache(root, split: str, flips: bool = True, threads: int = 0) -> Dict[str, object]:
    """Run the frozen networks over a split (see the module).

    Returns:
        dict: ``image`` (N, H, W, 3) uint8, ``labels`` (N, H, W) uint8, ``edges``
        (N, H, W) uint8, ``s8`` / ``s16`` / ``s32`` fp16 pyramid, ``latent`` (N, 32,
        H/8, W/8) fp16, ``source`` (N,) index of the file, ``flipped`` (N,) bool,
        ``files``.
    """
    import torch
    from tqdm import tqdm

    from ..models.effnet_lite import load_pretrained
    from ..models.task_adaptive_embedded import edge_map, to_tensor
    from ..models.taef2 import TAEF2

    if threads:
        torch.set_num_threads(int(threads))
    pairs = camvid_pairs(root, split)
    trunk, taef2 = load_pretrained(), TAEF2()
    cols: Dict[str, list] = {k: [] for k in ("image", "labels", "edges", "s8", "s16", "s32", "latent", "source",
                                             "flipped")}
    with torch.inference_mode():
        for i, (ip, lp) in enumerate(tqdm(pairs, desc=f"CamVid {split} cache", mininterval=5)):
            img0, lab0 = load_pair(ip, lp)
            for flip in ((False, True) if flips else (False,)):
                img = np.ascontiguousarray(img0[:, ::-1]) if flip else img0
                lab = np.ascontiguousarray(lab0[:, ::-1]) if flip else lab0
                x = to_tensor(img)
                s8, s16, s32 = trunk.pyramid(x)
                cols["image"].append(img)
                cols["labels"].append(lab)
                cols["edges"].append(edge_map(img))
                cols["s8"].append(s8[0].half())
                cols["s16"].append(s16[0].half())
                cols["s32"].append(s32[0].half())
                cols["latent"].append(taef2.encode(x)[0].half())
                cols["source"].append(i)
                cols["flipped"].append(flip)
    out: Dict[str, object] = {k: torch.stack(v) for k, v in cols.items() if k in ("s8", "s16", "s32", "latent")}
    for k in ("image", "labels", "edges"):
        out[k] = torch.from_numpy(np.stack(cols[k]))
    out["source"] = torch.tensor(cols["source"])
    out["flipped"] = torch.tensor(cols["flipped"])
    out["files"] = [str(p[0].name) for p in pairs]
    return out
