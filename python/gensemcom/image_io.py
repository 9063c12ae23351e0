"""Images on disk: listing, loading (RGB, optional square resize), saving. No GNU Radio
import."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import numpy as np


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def list_images(path: str) -> List[Path]:
    """The image files at ``path`` (a file, or a folder's images sorted by name)."""
    if not str(path).strip():
        raise FileNotFoundError("no image path given: name an image file or a folder of images")
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"no image file or folder at {path!r}")


def image_ids(files: List[Path]) -> List[str]:
    """One id per file, for reports and output names: the file's stem, or, where two
    files share a stem (``x.png``, ``x.jpg``), the stem and the suffix (``x_png``)."""
    stems = [f.stem for f in files]
    return [f.stem if stems.count(f.stem) == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}" for f in files]


def to_rgb(im):
    """A PIL image as 8-bit RGB. 16- and 32-bit integer images (modes ``I;16*``,
    ``I``) are scaled from their full range (65535 for 16-bit) to 0..255, not clipped
    as PIL's own conversion does; alpha is dropped."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


def load_image(path, size: int = 0) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3) (:func:`to_rgb`); with ``size`` > 0,
    centre-crop to a square and resize to ``size`` x ``size``."""
    from PIL import Image

    with Image.open(path) as im:
        im = to_rgb(im)
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


def sample_image() -> str:
    """The bundled sample photo (``examples/data/astronaut.jpg``, NASA, public domain):
    in a source checkout, or where ``make install`` put the examples
    (``$PREFIX/share/gnuradio/gensemcom/examples/data``), found from this module's own
    location, so a flowgraph run from GRC (which has no ``__file__``) finds it too.

    Raises:
        FileNotFoundError: naming the places searched.
    """
    here = Path(__file__).resolve().parent
    tried = [here.parents[1] / "examples" / "data" / "astronaut.jpg"]  # python/gensemcom -> the checkout
    for up in here.parents:  # <prefix>/lib/python3.X/dist-packages/gnuradio/gensemcom -> <prefix>
        tried.append(up / "share" / "gnuradio" / "gensemcom" / "examples" / "data" / "astronaut.jpg")
    for p in tried:
        if p.is_file():
            return str(p)
    raise FileNotFoundError("the bundled astronaut.jpg is in none of: " + ", ".join(str(p) for p in tried[:3]))


def sample_folder() -> str:
    """The folder of the bundled sample photos (``examples/data``, where
    :func:`sample_image` is), for flowgraphs that loop over a folder.

    Raises:
        FileNotFoundError: naming the places searched.
    """
    return str(Path(sample_image()).parent)
