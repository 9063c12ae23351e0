"""GNU Radio block: a Qt view of the latest received image (optionally sent | received).

``image_display`` takes the image PDUs that ``image_sink`` takes (u8 vector of the
flattened (H, W, 3) RGB image, metadata ``shape``, ``image_id``, ``path``) and shows
the latest one in a Qt widget, the way gr-qtgui's sinks do: the GRC template adds
``widget()`` to the flowgraph's layout.

GNU Radio calls the message handler on its own thread and Qt widgets may only be
touched on the GUI thread, so the handler validates the PDU and emits a Qt signal
(queued across threads); the widget paints on the GUI thread. PyQt5 is imported when
a block is made, never by ``import gensemcom``, so the worker and headless scripts
do not need it.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pmt
from gnuradio import gr

from ..image_io import sent_image
from .pdu_utils import counting, receive_image

_NO_QT = ("image_display needs PyQt5 (Debian: `sudo apt-get install python3-pyqt5`; it comes with "
          "GNU Radio's Qt GUI, gr-qtgui)")


@functools.lru_cache(maxsize=None)
def _qt():
    """PyQt5 and the widget classes, built on first use; ImportError without PyQt5."""
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets
    except ImportError as e:
        raise ImportError(f"{_NO_QT}: {e}") from e

    class ImageLabel(QtWidgets.QLabel):
        """A label that paints its pixmap scaled to fit, keeping the aspect ratio.

        ``pixmap()`` stays the image at its own size.
        """

        def __init__(self, parent=None):
            super().__init__(parent)
            self.setMinimumSize(64, 64)
            self.setAlignment(QtCore.Qt.AlignCenter)
            self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Expanding)

        def sizeHint(self):
            pm = self.pixmap()
            if pm is None or pm.isNull():
                return QtCore.QSize(256, 256)
            return pm.size().expandedTo(QtCore.QSize(256, 256))

        def paintEvent(self, event):
            pm = self.pixmap()
            if pm is None or pm.isNull():
                return super().paintEvent(event)
            scaled = pm.scaled(self.size(), QtCore.Qt.KeepAspectRatio,
                               QtCore.Qt.FastTransformation if pm.width() < self.width() // 2
                               else QtCore.Qt.SmoothTransformation)
            painter = QtGui.QPainter(self)
            painter.drawPixmap((self.width() - scaled.width()) // 2, (self.height() - scaled.height()) // 2, scaled)
            painter.end()

    class ImageDisplayWidget(QtWidgets.QWidget):
        """Title, the sent image (when known) beside the received one, and a caption line.

        Attributes:
            received (QLabel): the received image; ``received.pixmap()`` is at the image's size.
            sent (QLabel): the sent image, shown when side by side and the original is known.
            caption (QLabel): image id, SNR, CRC status and decode time of the latest image.
            n_shown (int): images painted so far.
        """

        def __init__(self, title: str, parent=None):
            super().__init__(parent)
            self.n_shown = 0
            layout = QtWidgets.QVBoxLayout(self)
            self.title = QtWidgets.QLabel(title)
            font = self.title.font()
            font.setBold(True)
            self.title.setFont(font)
            self.title.setWordWrap(True)
            self.title.setVisible(bool(title))
            layout.addWidget(self.title)
            grid = QtWidgets.QGridLayout()
            self.sent_heading = QtWidgets.QLabel("sent")
            self.received_heading = QtWidgets.QLabel("received")
            self.sent, self.received = ImageLabel(), ImageLabel()
            self.received.setText("waiting for an image")
            for col, (head, img) in enumerate([(self.sent_heading, self.sent),
                                               (self.received_heading, self.received)]):
                head.setAlignment(QtCore.Qt.AlignCenter)
                grid.addWidget(head, 0, col)
                grid.addWidget(img, 1, col)
            grid.setRowStretch(1, 1)
            layout.addLayout(grid, 1)
            self.caption = QtWidgets.QLabel("")
            self.caption.setAlignment(QtCore.Qt.AlignCenter)
            self.caption.setWordWrap(True)  # a long caption wraps rather than widening the window
            layout.addWidget(self.caption)
            self._set_sent_visible(False)

        def _set_sent_visible(self, on: bool) -> None:
            self.sent.setVisible(on)
            self.sent_heading.setVisible(on)
            self.received_heading.setVisible(on)

        @staticmethod
        def to_pixmap(image: np.ndarray):
            img = np.ascontiguousarray(image, dtype=np.uint8)
            h, w = img.shape[:2]
            qimg = QtGui.QImage(img.data, w, h, 3 * w, QtGui.QImage.Format_RGB888).copy()  # own the pixels
            return QtGui.QPixmap.fromImage(qimg)

        @QtCore.pyqtSlot(object, object, str)
        def show_image(self, image, sent, caption):
            """GUI thread: show ``image`` (and ``sent``, or None) with ``caption``."""
            self.received.setText("")
            self.received.setPixmap(self.to_pixmap(image))
            if sent is not None:
                self.sent.setPixmap(self.to_pixmap(sent))
            self._set_sent_visible(sent is not None)
            self.caption.setText(caption)
            self.n_shown += 1
            self.updateGeometry()

    class Bridge(QtCore.QObject):
        """Lives on the GUI thread; ``image`` emitted from another thread is queued to it."""

        image = QtCore.pyqtSignal(object, object, str)

    return QtCore, QtWidgets, ImageDisplayWidget, Bridge


def _caption(info: Dict[str, Any], n: int) -> str:
    parts = [str(info.get("image_id", f"image {n}"))]
    if isinstance(info.get("snr_db"), (int, float)):
        parts.append(f"Es/N0 {info['snr_db']:.1f} dB")
    if info.get("crc_ok") is not None:
        parts.append("CRC ok" if info["crc_ok"] else "CRC failed")
    if isinstance(info.get("decode_ms"), (int, float)):
        parts.append(f"decoded in {info['decode_ms'] / 1e3:.1f} s")
    return "  \u00b7  ".join(parts)


class image_display(counting, gr.basic_block):
    """Shows the latest received image PDU (port ``in``) in a Qt widget.

    ``widget()`` returns the QWidget (made on first call, on the GUI thread, with a
    QApplication running); the GRC template adds it to the flowgraph's layout. With
    ``side_by_side``, the sent image is shown beside the received one when the
    metadata's ``path`` points at the original (read as ``image_sink`` reads it,
    resized by ``source_size`` when the source resized it). Bad input is logged,
    dropped and counted; ``counters()`` adds ``shown``, the images painted.

    Args:
        title (str): heading above the images ('' for none).
        side_by_side (bool): show sent | received when the original is known.

    Raises:
        ImportError: PyQt5 is not installed (Debian: python3-pyqt5).
    """

    def __init__(self, title="Received image", side_by_side=True):
        _qt()  # fail here, clearly, rather than in widget()
        gr.basic_block.__init__(self, "gensemcom_image_display", None, None)
        self._init_counters()
        self.title = str(title)
        self.side_by_side = bool(side_by_side)
        self._gui_lock = threading.Lock()
        self._widget = None
        self._bridge = None
        self._latest: Optional[Tuple[Dict[str, Any], np.ndarray, Optional[np.ndarray], str]] = None
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def widget(self):
        """The display's QWidget; call on the GUI thread once a QApplication exists."""
        QtCore, QtWidgets, ImageDisplayWidget, Bridge = _qt()
        with self._gui_lock:
            if self._widget is None:
                if QtWidgets.QApplication.instance() is None:
                    raise RuntimeError("image_display.widget() needs a running QApplication "
                                       "(a qt_gui flowgraph makes one)")
                self._widget = ImageDisplayWidget(self.title)
                self._bridge = Bridge()
                self._bridge.image.connect(self._widget.show_image, QtCore.Qt.QueuedConnection)
                if self._latest is not None:  # an image that came before the widget
                    _, img, ref, text = self._latest
                    self._widget.show_image(img, ref, text)
            return self._widget

    def latest(self) -> Optional[Tuple[Dict[str, Any], np.ndarray]]:
        """(metadata dict, image) of the latest image received, or None."""
        with self._gui_lock:
            return None if self._latest is None else self._latest[:2]

    def counters(self) -> Dict[str, Any]:
        c = counting.counters(self)
        with self._gui_lock:
            c["shown"] = self._widget.n_shown if self._widget is not None else 0
        return c

    def _handle(self, msg):
        got = receive_image(self, msg)
        if got is None:
            return
        _, img, info = got
        ref = None
        if self.side_by_side:
            try:
                ref = sent_image(info, img.shape)
            except Exception as e:  # the received image still shows
                self.logger.warn(f"cannot read the sent image {info.get('path')}: {type(e).__name__}: {e}")
        text = _caption(info, self.n_in)
        with self._gui_lock:
            self._latest = (info, img, ref, text)
            bridge = self._bridge
        if bridge is not None:
            try:
                bridge.image.emit(img, ref, text)  # queued to the GUI thread
            except RuntimeError as e:  # the Qt objects are gone (the window closed)
                self.drop("display closed", str(e))
                return
        self._count("n_out")
