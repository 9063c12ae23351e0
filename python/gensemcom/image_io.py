"""GNU Radio blocks: image source (a file or a folder) and image sink (PNG files; the Qt view is ``image_display``).

Image PDUs are u8 vectors of the flattened (H, W, 3) RGB image with metadata
``shape``, ``image_id`` (file stem) and ``path``.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import List

import numpy as np
import pmt
from gnuradio import gr

from .pdu_utils import PduError, counting, meta_set
from .semantic_blocks import image_from_pdu, image_to_pdu

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


def image_info(meta) -> dict:
    """An image PDU's metadata as a plain dict (uniform vectors become lists)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in (pmt.to_python(meta) or {}).items()}


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


class image_source(counting, gr.basic_block):
    """Emits the images of a file or folder as image PDUs (port ``out``).

    Args:
        path (str): an image file or a folder of images.
        period_s (float): seconds between images (0: as fast as the flowgraph takes them).
        repeat (bool): start over after the last image.
        size (int): 0 keeps the size; > 0 centre-crops and resizes to size x size.
        start_delay_s (float): wait before the first image (lets receivers start).
    """

    def __init__(self, path="", period_s=1.0, repeat=False, size=0, start_delay_s=0.1):
        gr.basic_block.__init__(self, "gensemcom_image_source", None, None)
        self._init_counters()
        self.files = list_images(path)
        self.period_s, self.repeat, self.size = float(period_s), bool(repeat), int(size)
        self.start_delay_s = float(start_delay_s)
        self._stop = threading.Event()
        self._thread = None
        self.message_port_register_out(pmt.intern("out"))

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gensemcom_image_source", daemon=True)
        self._thread.start()
        return True

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return counting.stop(self)

    def _run(self):
        if self._stop.wait(self.start_delay_s):
            return
        while True:
            for f in self.files:
                if self._stop.is_set():
                    return
                self._count("n_in")
                try:
                    img = load_image(f, self.size)
                except Exception as e:  # an unreadable file: logged, counted, next one
                    self.drop("unreadable image", f"{f}: {e}")
                    continue
                meta = meta_set(meta_set(pmt.make_dict(), "image_id", f.stem), "path", str(f))
                if self.size:
                    meta = meta_set(meta, "source_size", self.size)
                self.message_port_pub(pmt.intern("out"), image_to_pdu(meta, img))
                self._count("n_out")
                if self._stop.wait(self.period_s):
                    return
            if not self.repeat:
                return


class image_sink(counting, gr.basic_block):
    """Writes received image PDUs (port ``in``) as PNG files.

    Files are ``<out_dir>/<image_id>.png``; with ``side_by_side``, also
    ``<image_id>_compare.png`` (sent | received) when the metadata's ``path`` points
    at the original. ``received()`` returns the images so far (for scripts and tests).

    Args:
        out_dir (str): folder for the files ('' keeps them only in memory).
        side_by_side (bool): also write sent | received comparisons.
        max_keep (int): images kept in memory for ``received()``.
    """

    def __init__(self, out_dir="", side_by_side=True, max_keep=64):
        gr.basic_block.__init__(self, "gensemcom_image_sink", None, None)
        self._init_counters()
        self.out_dir = str(out_dir)
        self.side_by_side = bool(side_by_side)
        self.max_keep = int(max_keep)
        self._images = []
        self._cv = threading.Condition()
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def received(self):
        """[(metadata dict, image)] received so far."""
        with self._cv:
            return list(self._images)

    def wait(self, n: int, timeout: float = 60.0) -> bool:
        """Block until ``n`` images arrived or ``timeout`` passed."""
        t_end = time.monotonic() + timeout
        with self._cv:
            while len(self._images) < n:
                left = t_end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def _handle(self, msg):
        self._count("n_in")
        try:
            meta, img = image_from_pdu(msg)
        except PduError as e:
            self.drop("bad input", str(e))
            return
        info = image_info(meta)
        if self.out_dir:
            try:
                name = str(info.get("image_id", f"image{self.n_out}"))
                save_image(Path(self.out_dir) / f"{name}.png", img)
                ref = sent_image(info, img.shape) if self.side_by_side else None
                if ref is not None:
                    save_image(Path(self.out_dir) / f"{name}_compare.png", np.concatenate([ref, img], axis=1))
            except Exception as e:  # a full disk must not kill the flowgraph
                self.drop("write failed", f"{type(e).__name__}: {e}")
                return
        with self._cv:
            self._images.append((info, img))
            del self._images[:-self.max_keep]
            self._cv.notify_all()
        self._count("n_out")
