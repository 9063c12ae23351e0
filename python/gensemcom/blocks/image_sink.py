"""GNU Radio block: image sink (image PDUs -> PNG files, and kept for Python callers)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pmt
from gnuradio import gr

from ..image_io import save_image, sent_image
from .pdu_utils import counting, receive_image


class image_sink(counting, gr.basic_block):
    """Writes received image PDUs (port ``in``) as PNG files.

    Files are ``<out_dir>/<image_id>.png``; with ``side_by_side``, also
    ``<image_id>_compare.png`` (sent | received) when the metadata's ``path`` points
    at the original. The image of a round that is not its exchange's last (metadata
    ``final`` False, systems with feedback rounds) is ``<image_id>_r<round>.png``. ``received()`` returns the images so far (for scripts and tests).

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
        got = receive_image(self, msg)
        if got is None:
            return
        _, img, info = got
        if self.out_dir:
            try:
                name = str(info.get("image_id", f"image{self.n_out}"))
                if info.get("final") is False:
                    name += f"_r{info.get('round', 0)}"
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
