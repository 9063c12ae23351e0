"""GNU Radio block: image source (a file or a folder of images -> image PDUs)."""
from __future__ import annotations

import threading

import pmt
from gnuradio import gr

from ..image_io import image_ids, list_images, load_image
from .pdu_utils import counting, image_to_pdu, meta_set


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
        self.ids = image_ids(self.files)  # unique even where two files share a stem
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
            for f, image_id in zip(self.files, self.ids):
                if self._stop.is_set():
                    return
                self._count("n_in")
                try:
                    img = load_image(f, self.size)
                except Exception as e:  # an unreadable file: logged, counted, next one
                    self.drop("unreadable image", f"{f}: {e}")
                    continue
                meta = meta_set(meta_set(pmt.make_dict(), "image_id", image_id), "path", str(f))
                if self.size:
                    meta = meta_set(meta, "source_size", self.size)
                self.message_port_pub(pmt.intern("out"), image_to_pdu(meta, img))
                self._count("n_out")
                if self._stop.wait(self.period_s):
                    return
            if not self.repeat:
                return
