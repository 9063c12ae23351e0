"""GNU Radio block: a Qt table of one or more semantic links' counts, updated live.

``link_monitor`` takes the ``stats`` messages of :class:`semantic_link` blocks (PMT
dicts; several links may share one monitor) and shows, per system: images
received and lost, frames lost on the channel, images skipped while the link was
busy, and the channel uses of the latest image (one column per system). Like ``image_display``, the message
handler runs on a GNU Radio thread and only emits a Qt signal (queued across
threads); the table is touched on the GUI thread. PyQt5 is imported when a block is
made, never by ``import gensemcom``.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Dict, List

import pmt
from gnuradio import gr

from .image_display import _NO_QT
from .pdu_utils import counting

#: (key, heading) of the table's rows, in order: one column per link
ROWS = (("channel", "channel"), ("snr_db", "Es/N0 (dB)"), ("images_received", "received"),
        ("frames_lost", "frames lost"), ("images_lost", "images lost"), ("images_skipped", "skipped"),
        ("mcs", "MCS"), ("digital", "digital"), ("analog", "analog"), ("total", "total"))
_COUNTS = ("images_received", "frames_lost", "images_lost", "images_skipped")


@functools.lru_cache(maxsize=None)
def _qt():
    """PyQt5 and the widget classes, built on first use; ImportError without PyQt5."""
    try:
        from PyQt5 import QtCore, QtWidgets
    except ImportError as e:
        raise ImportError(f"{_NO_QT}: {e}") from e

    class LinkMonitorWidget(QtWidgets.QWidget):
        """Title and a table with one column per link and one row per quantity (:data:`ROWS`).

        Attributes:
            table (QTableWidget): the numbers.
            shown_rows (list[dict]): what the table shows, one dict per link (``system`` and
                the :data:`ROWS` keys), in column order (empty for a link that has not reported).
            n_shown (int): updates painted so far.
        """

        def __init__(self, title: str, systems=(), parent=None):
            super().__init__(parent)
            self.n_shown = 0
            self.shown_rows: List[Dict[str, Any]] = []
            self._keys: List[str] = []
            layout = QtWidgets.QVBoxLayout(self)
            self.title = QtWidgets.QLabel(title)
            font = self.title.font()
            font.setBold(True)
            self.title.setFont(font)
            self.title.setWordWrap(True)
            self.title.setVisible(bool(title))
            layout.addWidget(self.title)
            self.table = QtWidgets.QTableWidget(len(ROWS), 0)
            self.table.setVerticalHeaderLabels([h for _, h in ROWS])
            self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
            self.table.setSelectionMode(QtWidgets.QAbstractItemView.NoSelection)
            self.table.setFocusPolicy(QtCore.Qt.NoFocus)
            self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
            self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
            self.table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
            self.table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
            self.table.setTextElideMode(QtCore.Qt.ElideNone)
            self.table.setWordWrap(True)
            layout.addWidget(self.table)
            self.note = QtWidgets.QLabel("Counts since the start (skipped: offered while the link was busy). "
                                         "Payload MCS and channel uses (complex symbols: digital with the "
                                         "protected header, analog, total) of the latest image.")
            self.note.setWordWrap(True)
            layout.addWidget(self.note)
            layout.addStretch(1)
            for key in systems:  # the columns to show first, in this order, empty until their link reports
                self._column(key)
            self._fit()

        def _fit(self):
            rows_h = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
            self.table.setFixedHeight(self.table.horizontalHeader().height() + rows_h + 2 * self.table.frameWidth())

        def _column(self, key: str) -> int:
            if key not in self._keys:
                self._keys.append(key)
                self.shown_rows.append({})
                self.table.setColumnCount(len(self._keys))
                # a long name ("jpeg2000-ldpc") breaks at its hyphen rather than being cut
                self.table.setHorizontalHeaderItem(len(self._keys) - 1,
                                                   QtWidgets.QTableWidgetItem(key.replace("-", "-\n")))
            return self._keys.index(key)

        @staticmethod
        def text(key: str, value: Any) -> str:
            if value is None:
                return ""
            if key == "snr_db" and isinstance(value, (int, float)):
                return f"{value:.1f}"
            if key == "mcs":
                return str(value).replace("-", " ")  # "16QAM 2/3" may wrap in a narrow column
            if isinstance(value, int) and not isinstance(value, bool):
                return f"{value:,}"
            return str(value)

        @QtCore.pyqtSlot(str, object)
        def show_row(self, key: str, row: Dict[str, Any]):
            """GUI thread: show ``row`` (``system`` and the :data:`ROWS` keys) as the column of link ``key``."""
            col = self._column(key)
            for i, (k, _) in enumerate(ROWS):
                item = QtWidgets.QTableWidgetItem(self.text(k, row.get(k)))
                item.setTextAlignment(int(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter))
                self.table.setItem(i, col, item)
            self.shown_rows[col] = dict(row)
            self.n_shown += 1
            self._fit()

    class Bridge(QtCore.QObject):
        """Lives on the GUI thread; ``row`` emitted from another thread is queued to it."""

        row = QtCore.pyqtSignal(str, object)

    return QtCore, QtWidgets, LinkMonitorWidget, Bridge


class link_monitor(counting, gr.basic_block):
    """Shows the ``stats`` dicts of one or more ``semantic_link`` blocks (port ``in``)
    as a live Qt table, one column per system.

    Each column: channel, the Es/N0 of the latest image, images received, frames
    lost (header or payload destroyed by the channel), images lost (inside the link),
    images skipped (offered while the link was busy), and the payload MCS and the
    digital (protected header included), analog and total channel uses of the latest
    received image.
    ``widget()`` returns the QWidget (the GRC template adds it to the window). A
    message that is not a dict with a ``system`` is logged, dropped and counted;
    ``counters()`` adds ``shown`` (updates painted) and ``rows``.

    Args:
        title (str): heading above the table ('' for none).
        systems (str): the columns to show first, in this order, comma separated (for
            example "tisc, deepjscc"); other systems get a column when they first report.

    Raises:
        ImportError: PyQt5 is not installed (Debian: python3-pyqt5).
    """

    def __init__(self, title="Links", systems=""):
        _qt()  # fail here, clearly, rather than in widget()
        gr.basic_block.__init__(self, "gensemcom_link_monitor", None, None)
        self._init_counters()
        self.title = str(title)
        self.systems = [s.strip() for s in str(systems).split(",") if s.strip()]
        self._gui_lock = threading.Lock()
        self._widget = None
        self._bridge = None
        self._rows: Dict[str, Dict[str, Any]] = {}
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def widget(self):
        """The monitor's QWidget; call on the GUI thread once a QApplication exists."""
        QtCore, QtWidgets, LinkMonitorWidget, Bridge = _qt()
        with self._gui_lock:
            if self._widget is None:
                if QtWidgets.QApplication.instance() is None:
                    raise RuntimeError("link_monitor.widget() needs a running QApplication "
                                       "(a qt_gui flowgraph makes one)")
                self._widget = LinkMonitorWidget(self.title, self.systems)
                self._bridge = Bridge()
                self._bridge.row.connect(self._widget.show_row, QtCore.Qt.QueuedConnection)
                for key, row in self._rows.items():  # rows that came before the widget
                    self._widget.show_row(key, dict(row))
            return self._widget

    def rows(self) -> List[Dict[str, Any]]:
        """What the table shows, one dict per link that has reported (``system`` and the
        :data:`ROWS` keys), in column order; before the widget exists, what it would show."""
        with self._gui_lock:
            if self._widget is not None:
                return [dict(r) for r in self._widget.shown_rows if r]
            return [dict(r) for r in self._rows.values()]

    def counters(self) -> Dict[str, Any]:
        c = counting.counters(self)
        with self._gui_lock:
            c["shown"] = self._widget.n_shown if self._widget is not None else 0
            c["rows"] = len(self._rows)
        return c

    def _handle(self, msg):
        self._count("n_in")
        try:
            stats = pmt.to_python(msg) if pmt.is_dict(msg) else None
            if not isinstance(stats, dict) or not isinstance(stats.get("system"), str):
                raise ValueError("expected a PMT dict with a 'system' (a semantic_link's stats)")
        except Exception as e:  # never raise in a handler
            self.drop("bad input", str(e))
            return
        key = stats["system"]
        with self._gui_lock:
            row = self._rows.setdefault(key, {"system": key})
            for k in ("channel", "snr_db") + _COUNTS:
                if stats.get(k) is not None:
                    row[k] = stats[k]
            uses = stats.get("channel_uses")
            if stats.get("received") and isinstance(uses, dict):
                row.update({k: uses.get(k) for k in ("digital", "analog", "total")})
                row["mcs"] = stats.get("mcs") if uses.get("digital") != uses.get("header") else "no payload"
            row = dict(row)
            bridge = self._bridge
        if bridge is not None:
            try:
                bridge.row.emit(key, row)  # queued to the GUI thread
            except RuntimeError as e:  # the Qt objects are gone (the window closed)
                self.drop("display closed", str(e))
                return
        self._count("n_out")
