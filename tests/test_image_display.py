"""The Qt image display in a real flowgraph, on Qt's offscreen platform (no screen needed).

Image PDUs are published by a small source block after the flowgraph starts, so the
display's handler runs on a GNU Radio thread and must hand the image to the GUI
thread through its Qt signal; the test processes Qt events until it is painted.
"""
import importlib
import sys
import time

import numpy as np
import pmt
import pytest

pytest.importorskip("gnuradio.gr")
from gnuradio import gr  # noqa: E402

try:
    from PyQt5 import QtGui, QtWidgets
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("PyQt5 is not installed (Debian: python3-pyqt5), the image display needs it",
                allow_module_level=True)

import gensemcom  # noqa: E402
image_display_module = importlib.import_module("gensemcom.blocks.image_display")  # the module, not the class
from gensemcom.image_io import save_image  # noqa: E402
from gensemcom.blocks.pdu_utils import make_pdu, meta_set  # noqa: E402
from gensemcom.blocks.pdu_utils import image_to_pdu  # noqa: E402

pytestmark = pytest.mark.flowgraph


@pytest.fixture(scope="module")
def qapp():
    """One QApplication on the offscreen platform (set before Qt picks one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QT_QPA_PLATFORM", "offscreen")
        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
        yield app


class poster(gr.basic_block):
    """Publishes the messages a test gives it on its ``out`` port (from the test thread)."""

    def __init__(self):
        gr.basic_block.__init__(self, "test_poster", None, None)
        self.message_port_register_out(pmt.intern("out"))

    def post(self, msg):
        self.message_port_pub(pmt.intern("out"), msg)


def pump(app, pred, timeout=20.0):
    """Process Qt events until ``pred()`` is true or ``timeout`` passes; its last value."""
    t_end = time.monotonic() + timeout
    while True:
        app.processEvents()
        v = pred()
        if v or time.monotonic() > t_end:
            return v
        time.sleep(0.005)


@pytest.fixture
def link(qapp):
    """poster -> image_display in a running top block; yields (poster, display, widget)."""
    made = []

    def make(**kw):
        tb = gr.top_block()
        src, disp = poster(), gensemcom.image_display(**kw)
        tb.msg_connect(src, "out", disp, "in")
        w = disp.widget()
        tb.start()
        made.append((tb, src, disp, w))  # Python blocks must outlive their running flowgraph
        return src, disp, w

    yield make
    for tb, _, _, w in made:
        tb.stop()
        tb.wait()
        w.deleteLater()
    qapp.processEvents()


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pdu(img, **meta):
    m = pmt.make_dict()
    for k, v in meta.items():
        m = meta_set(m, k, v)
    return image_to_pdu(m, img)


def _pixels(label):
    qimg = label.pixmap().toImage().convertToFormat(QtGui.QImage.Format_RGB888)
    ptr = qimg.constBits()
    ptr.setsize(qimg.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(qimg.height(), qimg.bytesPerLine())
    return rows[:, :3 * qimg.width()].reshape(qimg.height(), qimg.width(), 3).copy()  # qimg owns the bytes


def test_shows_the_latest_image_at_its_size(qapp, link):
    src, disp, w = link(title="Received", side_by_side=False)
    assert isinstance(w, QtWidgets.QWidget) and disp.widget() is w
    imgs = [_image(48, 40, 1), _image(48, 40, 2), _image(24, 64, 3)]
    for i, img in enumerate(imgs):
        src.post(_pdu(img, image_id=f"img{i}", snr_db=10.0, crc_ok=True))
    assert pump(qapp, lambda: disp.counters()["shown"] == 3), disp.counters()
    c = disp.counters()
    assert (c["received"], c["sent"], c["dropped"], c["shown"]) == (3, 3, 0, 3)
    pm = w.received.pixmap()
    assert (pm.width(), pm.height()) == (64, 24)
    np.testing.assert_array_equal(_pixels(w.received), imgs[-1])
    assert "img2" in w.caption.text() and "10.0 dB" in w.caption.text() and "CRC ok" in w.caption.text()
    assert w.title.text() == "Received"
    assert not w.sent.isVisibleTo(w)  # no side by side
    info, img = disp.latest()
    assert info["image_id"] == "img2"
    np.testing.assert_array_equal(img, imgs[-1])


def test_bad_input_is_logged_dropped_and_counted(qapp, link):
    src, disp, w = link()
    good = _image(16, 16, 4)
    src.post(_pdu(good, image_id="good"))
    assert pump(qapp, lambda: disp.counters()["shown"] == 1)
    bad = [
        pmt.intern("not a pdu"),
        make_pdu(None, good.reshape(-1), "u8"),                                    # no shape
        make_pdu(meta_set(pmt.make_dict(), "shape", np.array([16, 15, 3], np.int32)), good.reshape(-1), "u8"),
        make_pdu(meta_set(pmt.make_dict(), "shape", np.array([16, 16, 3], np.int32)),
                 good.reshape(-1).astype(np.float32), "f32"),                       # wrong vector type
        make_pdu(None, np.zeros(0, np.uint8), "u8"),                                # empty
    ]
    for m in bad:
        src.post(m)
    assert pump(qapp, lambda: disp.counters()["received"] == 1 + len(bad)), disp.counters()
    c = disp.counters()
    assert c["dropped"] == len(bad) and c["drop_reasons"] == {"bad input": len(bad)}
    assert c["sent"] == 1 and c["shown"] == 1
    np.testing.assert_array_equal(_pixels(w.received), good)  # the last good image stays


def test_side_by_side_reads_the_original_as_image_sink_does(qapp, link, tmp_path):
    src, disp, w = link(side_by_side=True)
    sent = _image(40, 60, 5)
    save_image(tmp_path / "orig.png", sent)
    received = _image(40, 60, 6)
    src.post(_pdu(received, image_id="orig", path=str(tmp_path / "orig.png")))
    assert pump(qapp, lambda: disp.counters()["shown"] == 1)
    assert w.sent.isVisibleTo(w)
    np.testing.assert_array_equal(_pixels(w.sent), sent)
    np.testing.assert_array_equal(_pixels(w.received), received)
    # the source resized the original (source_size): the reference is resized the same way
    src.post(_pdu(_image(32, 32, 7), image_id="orig", path=str(tmp_path / "orig.png"), source_size=32))
    assert pump(qapp, lambda: disp.counters()["shown"] == 2)
    assert w.sent.isVisibleTo(w) and w.sent.pixmap().width() == 32
    # an original whose shape does not match is not shown; an unreadable path neither
    src.post(_pdu(_image(20, 20, 8), path=str(tmp_path / "orig.png")))
    src.post(_pdu(_image(20, 20, 9), path=str(tmp_path / "missing.png")))
    assert pump(qapp, lambda: disp.counters()["shown"] == 4)
    assert not w.sent.isVisibleTo(w)
    assert disp.counters()["dropped"] == 0


def test_an_image_before_the_widget_is_shown_when_it_is_made(qapp):
    tb = gr.top_block()
    src, disp = poster(), gensemcom.image_display(title="", side_by_side=False)
    tb.msg_connect(src, "out", disp, "in")
    tb.start()
    try:
        img = _image(8, 12, 10)
        src.post(_pdu(img))
        assert pump(qapp, lambda: disp.counters()["received"] == 1)
        assert disp.counters()["shown"] == 0 and disp.latest() is not None
        w = disp.widget()
        assert disp.counters()["shown"] == 1 and w.received.pixmap().width() == 12
        assert not w.title.isVisibleTo(w)
    finally:
        tb.stop()
        tb.wait()
    w.deleteLater()


def test_without_pyqt5_the_block_says_what_to_install(monkeypatch):
    image_display_module._qt.cache_clear()
    monkeypatch.setitem(sys.modules, "PyQt5", None)  # import PyQt5 -> ImportError
    try:
        with pytest.raises(ImportError, match="python3-pyqt5"):
            gensemcom.image_display()
    finally:
        monkeypatch.undo()
        image_display_module._qt.cache_clear()
    assert gensemcom.image_display() is not None  # PyQt5 is back


def test_is_exported_with_its_grc_block():
    from conftest import ROOT

    assert gensemcom.image_display is image_display_module.image_display
    assert (ROOT / "grc" / "gensemcom_image_display.block.yml").is_file()
