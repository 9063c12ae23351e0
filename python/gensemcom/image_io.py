"""Images on disk: listing, loading (RGB, optional square resize), saving. No GNU Radio
import."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import numpy as np


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


def list_images(path: str) -> List[Path]:
    """The image files at ``path`` (a file, or a folder's images sorted by name)."""
    if not str(path).strip():
        raise FileNotFoundError("no image path given: name an image file or a folder of images")
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"no image file or folder at {path!r}")


def load_image(path, size: int = 0) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3); with ``size`` > 0, centre-crop to a
    square and resize to ``size`` x ``size``."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size > 0:
            w, h = im.size
            s = min(w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size))
        return np.asarray(im, dtype=np.uint8).copy()


def sent_image(info: dict, shape) -> "np.ndarray | None":
    """The original of a received image, as the source read it: the file at the
    metadata's ``path``, resized by ``source_size`` when the source resized it; None
    when there is no such file or it does not have ``shape`` (read errors raise)."""
    src = info.get("path")
    if not src or not Path(str(src)).is_file():
        return None
    ref = load_image(src, int(info.get("source_size") or 0))
    return ref if ref.shape == tuple(shape) else None


def save_image(path, image: np.ndarray) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(path)
