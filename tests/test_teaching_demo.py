"""The teaching demo (``examples/teaching_demo.grc``) and the two blocks it is made of.

* ``semantic_link``: one system's whole link in one block, in a plain top block against
  an in-process tiny worker: an image through with its ``stats`` dict, the symbol
  outputs, frames lost when the header cannot survive, run-time channel and SNR
  changes, pilots counted in the channel uses, the gate that skips rather than queues,
  an image lost inside the link released and reported;
* ``link_monitor``: the Qt table on the offscreen platform, fed from a GNU Radio thread;
* the flowgraph: grcc compiles it and the slider and chooser reach every link; its
  committed script, run as GRC runs it (``/usr/bin/python3``, the installed module,
  ``QT_QPA_PLATFORM=offscreen``, ``--profile tiny``), shows images in every display,
  feeds both constellation sinks and the monitor, keeps images coming after the
  channel is switched to Rayleigh and the SNR moved, never keeps the GUI thread
  waiting, and stops cleanly (``tests/tools/teaching_demo_probe.py`` drives it).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import test_grc
from conftest import ROOT, wait_until
from test_examples import SYSTEM_PYTHON, _system_python_has
from test_grc import _grcc, _load, needs_grcc

pmt = pytest.importorskip("pmt")
gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks  # noqa: E402

import gensemcom  # noqa: E402
from gensemcom.blocks.pdu_utils import image_to_pdu, meta_set  # noqa: E402
from gensemcom.phy.channels import PilotPattern  # noqa: E402

grc_env = test_grc.grc_env  # the fixture that points grcc at the repository's grc/ only

GRC_FILE = ROOT / "examples" / "teaching_demo.grc"
SCRIPT = ROOT / "examples" / "teaching_demo.py"
PROBE = ROOT / "tests" / "tools" / "teaching_demo_probe.py"
LINKS = {"tisc_link": "tisc", "deepjscc_link": "deepjscc", "jpeg2000_link": "jpeg2000-ldpc"}

needs_installed_demo = pytest.mark.skipif(
    not _system_python_has("from gnuradio.gensemcom import semantic_link, link_monitor, image_display; "
                           "from gnuradio.qtgui import Range; from gnuradio import pdu; from PyQt5 import Qt"),
    reason="needs gr-gensemcom installed with semantic_link and link_monitor (run `make install`), "
           "gr-qtgui, gr-pdu and python3-pyqt5 for /usr/bin/python3")


def _image(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.cumsum(rng.integers(-8, 9, (n, n, 3)), axis=1) + 128, 0, 255).astype(np.uint8)


def _image_pdu(image_id="img0", n=64, seed=0):
    meta = meta_set(pmt.make_dict(), "image_id", image_id)
    return image_to_pdu(meta, _image(n, seed))


# ---------------------------------------------------------------- semantic_link


@pytest.fixture(scope="module")
def worker(one_torch_thread):
    from gensemcom.worker.server import WorkerServer

    srv = WorkerServer("tcp://127.0.0.1:*", profile="tiny").start()
    yield srv
    srv.stop()


@pytest.fixture
def run_link(worker):
    """A semantic_link (tiny profile) in a running top block with a message_debug on each
    output; yields make(**kw) -> (link, {port: message_debug}). Stopped after the test."""
    made = []

    def make(**kw):
        kw = dict(dict(system="deepjscc", profile="tiny", address=worker.endpoint, seed=1, timeout_ms=60000), **kw)
        tb = gr.top_block()
        link = gensemcom.semantic_link(**kw)
        sinks = {p: blocks.message_debug() for p in ("out", "stats", "digital_symbols", "analog_symbols")}
        for port, dbg in sinks.items():
            tb.msg_connect(link, port, dbg, "store")
        tb.start()
        made.append((tb, link, sinks))  # Python blocks must outlive their running flowgraph
        return link, sinks

    yield make
    for tb, _, _ in made:
        tb.stop()
        tb.wait()


def _messages(dbg):
    return [dbg.get_message(i) for i in range(dbg.num_messages())]


def _stats(sinks, n, timeout=60.0):
    assert wait_until(lambda: sinks["stats"].num_messages() >= n, timeout), "no stats message"
    return [pmt.to_python(m) for m in _messages(sinks["stats"])]


@pytest.mark.flowgraph
def test_semantic_link_one_image_through_with_stats_and_symbols(run_link):
    link, sinks = run_link(snr_db=15.0)
    link.post(_image_pdu("first"))
    (s,) = _stats(sinks, 1)
    assert wait_until(lambda: sinks["out"].num_messages() == 1, 10)
    meta = pmt.to_python(pmt.car(sinks["out"].get_message(0)))
    assert meta["image_id"] == "first" and list(meta["shape"]) == [64, 64, 3]
    assert s["system"] == "deepjscc" and s["channel"] == "awgn" and s["image_id"] == "first"
    assert s["received"] is True and s["frame_ok"] is True and s["header_ok"] and s["crc_ok"] and s["final"]
    assert s["snr_db"] == 15.0 and s["round"] == 0 and s["decode_ms"] > 0 and s["encode_ms"] > 0
    uses = s["channel_uses"]
    # DeepJSCC sends only the header digitally: twice (the link's fixed Rayleigh-proof repetition)
    assert uses["header"] == uses["digital"] == 2 * 600
    assert uses["analog"] == meta["analog_symbols"] > 0 and uses["total"] == uses["digital"] + uses["analog"]
    assert (s["images_received"], s["images_lost"], s["images_skipped"], s["frames_lost"]) == (1, 0, 0, 0)
    # the symbol outputs: equalised symbols, thinned to max_symbols, metadata stripped to provenance
    (d,), (a,) = _messages(sinks["digital_symbols"]), _messages(sinks["analog_symbols"])
    assert pmt.length(pmt.cdr(d)) == 1024 and pmt.length(pmt.cdr(a)) == min(1024, uses["analog"])
    assert pmt.to_python(pmt.car(a)) == {"system": "deepjscc", "image_id": "first"}
    x = np.asarray(pmt.c32vector_elements(pmt.cdr(d)))
    assert np.mean(np.abs(np.abs(x.real) - 1 / np.sqrt(2))) < 0.2  # the header's QPSK at 15 dB
    c = link.counters()
    assert c["link"]["images_received"] == 1 and c["link"]["in_flight"] == 0
    assert c["frame_demapper"]["sent"] == 1 and link.latest_stats() == s


@pytest.mark.flowgraph
def test_semantic_link_counts_a_frame_lost_on_the_channel(run_link):
    """At -10 dB the protected header cannot survive: the frame counts as lost, DeepJSCC has
    nothing to decode (image lost, with the decoder's reason), and the gate opens again."""
    link, sinks = run_link(snr_db=-10.0)
    link.post(_image_pdu("noisy"))
    (s,) = _stats(sinks, 1)
    assert s["received"] is False and s["frame_ok"] is False and s["image_id"] == "noisy"
    assert "could not reconstruct" in s["reason"]
    assert (s["images_received"], s["images_lost"], s["frames_lost"]) == (0, 1, 1)
    assert wait_until(lambda: link.counters()["link"]["in_flight"] == 0, 5)
    assert link.counters()["frame_demapper"]["header_lost"] == 1


@pytest.mark.flowgraph
def test_semantic_link_switches_channel_and_snr_while_running(run_link):
    link, sinks = run_link(snr_db=20.0)
    link.post(_image_pdu("a"))
    _stats(sinks, 1)
    link.set_channel("rayleigh")
    link.set_snr_db(18.0)
    assert (link.dchan.kind, link.achan.kind, link.dtx.path.channel) == ("rayleigh",) * 3
    req, mcs = link.encoder._request(), link.dtx.path.mcs_for(18.0)[0]
    assert (req["modulation"], req["code_rate"]) == (mcs.modulation, mcs.code_rate)  # both read Rayleigh's table
    assert link.dchan.snr_db == link.achan.snr_db == link.encoder.snr_db == 18.0
    link.post(_image_pdu("b", seed=1))
    s = _stats(sinks, 2)[1]
    assert s["channel"] == "rayleigh" and s["received"] and s["frame_ok"] and s["snr_db"] == 18.0
    # the equalisers used the true gains: the symbols are back near unit power, not faded
    a = np.asarray(pmt.c32vector_elements(pmt.cdr(_messages(sinks["analog_symbols"])[1])))
    assert 0.3 < np.mean(np.abs(a) ** 2) < 2.0
    with pytest.raises(ValueError, match="awgn or rayleigh"):
        link.set_channel("rician")
    assert link.channel == "rayleigh" and link.dchan.kind == "rayleigh"
    link.set_channel("awgn")
    link.post(_image_pdu("c", seed=2))
    s = _stats(sinks, 3)[2]
    assert s["channel"] == "awgn" and s["received"] and s["frame_ok"]


@pytest.mark.flowgraph
def test_semantic_link_counts_pilots_in_the_channel_uses(run_link):
    link, sinks = run_link(snr_db=20.0, channel="rayleigh", estimator="lmmse", n_pilots=4)
    link.post(_image_pdu())
    (s,) = _stats(sinks, 1)
    p = PilotPattern(64, 4)
    assert s["received"] and s["frame_ok"]
    assert s["channel_uses"]["header"] == p.n_tx(1200) and s["channel_uses"]["digital"] == p.n_tx(1200)


@pytest.mark.flowgraph
def test_semantic_link_skips_images_while_busy_and_releases_lost_ones(run_link):
    """max_in_flight=1: images offered while one is inside the link are skipped (counted,
    not queued); a message the encoder drops is reported lost and frees the gate."""
    link, sinks = run_link(snr_db=15.0)
    link.post(pmt.intern("not an image"))
    (lost,) = _stats(sinks, 1)
    assert lost["received"] is False and "dropped by gensemcom_semantic_encoder" in lost["reason"]
    for i in range(3):
        link.post(_image_pdu(f"burst{i}", seed=i))
    s = _stats(sinks, 2)[1]
    assert s["image_id"] == "burst0" and s["images_skipped"] == 2 and s["images_lost"] == 1
    time.sleep(0.5)
    assert sinks["out"].num_messages() == 1
    c = link.counters()["link"]
    assert (c["received"], c["sent"], c["skipped"], c["in_flight"]) == (4, 2, 2, 0)


def test_semantic_link_refuses_bad_options():
    for kw, msg in [({"channel": "rician"}, "awgn or rayleigh"), ({"estimator": "zf"}, "perfect, ls or lmmse"),
                    ({"estimator": "ls", "n_pilots": 64}, "pilots"), ({"max_symbols": 0}, "max_symbols")]:
        with pytest.raises(ValueError, match=msg):
            gensemcom.semantic_link(system="deepjscc", profile="tiny", **kw)


# ---------------------------------------------------------------- link_monitor


@pytest.fixture(scope="module")
def qapp():
    """One QApplication on the offscreen platform (set before Qt picks one)."""
    QtWidgets = pytest.importorskip("PyQt5.QtWidgets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QT_QPA_PLATFORM", "offscreen")
        yield QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])


@pytest.mark.flowgraph
def test_link_monitor_shows_one_column_per_link(qapp):
    from test_image_display import poster, pump  # the image display's test helpers (that module needs PyQt5)

    tb = gr.top_block()
    src, mon = poster(), gensemcom.link_monitor(title="Links", systems="tisc, deepjscc")
    tb.msg_connect(src, "out", mon, "in")
    w = mon.widget()
    tb.start()
    try:
        uses = {"digital": 1776, "header": 1200, "analog": 16, "total": 1792}
        src.post(pmt.to_pmt({"system": "jpeg2000-ldpc", "channel": "awgn", "received": True, "images_received": 1,
                             "images_lost": 0, "images_skipped": 0, "frames_lost": 0, "mcs": "QPSK-1/2",
                             "channel_uses": {"digital": 1200, "header": 1200, "analog": 0, "total": 1200}}))
        src.post(pmt.to_pmt({"system": "tisc", "channel": "awgn", "snr_db": 10.0, "received": True, "mcs": "16QAM-2/3",
                             "images_received": 1, "images_lost": 0, "images_skipped": 2, "frames_lost": 0,
                             "channel_uses": uses}))
        src.post(pmt.to_pmt({"system": "deepjscc", "channel": "awgn", "received": False, "images_received": 0,
                             "images_lost": 1, "images_skipped": 0, "frames_lost": 1, "reason": "x"}))
        src.post(pmt.intern("not stats"))
        src.post(pmt.to_pmt({"system": "tisc", "channel": "rayleigh", "snr_db": 5.0, "received": False,
                             "images_received": 1, "images_lost": 1, "images_skipped": 2, "frames_lost": 1}))
        assert pump(qapp, lambda: mon.counters()["shown"] == 4, timeout=10.0)
    finally:
        tb.stop()
        tb.wait()
    rows = mon.rows()
    assert [r["system"] for r in rows] == ["tisc", "deepjscc", "jpeg2000-ldpc"]  # the given order first
    # a lost image updates the counts, and the channel uses stay those of the latest received image
    assert rows[0] == {"system": "tisc", "channel": "rayleigh", "snr_db": 5.0, "images_received": 1,
                       "frames_lost": 1, "images_lost": 1, "images_skipped": 2, "mcs": "16QAM-2/3", "digital": 1776,
                       "analog": 16, "total": 1792}
    assert rows[1]["images_lost"] == 1 and "total" not in rows[1]
    assert rows[2]["mcs"] == "no payload"  # a frame whose digital part is only the header
    from gensemcom.blocks.link_monitor import ROWS

    keys = [k for k, _ in ROWS]
    assert w.table.columnCount() == 3 and w.table.horizontalHeaderItem(1).text() == "deepjscc"
    assert w.table.item(keys.index("total"), 0).text() == "1,792"
    assert w.table.item(keys.index("channel"), 0).text() == "rayleigh"
    assert w.table.item(keys.index("total"), 1).text() == ""
    c = mon.counters()
    assert c["received"] == 5 and c["dropped"] == 1 and c["rows"] == 3


# ---------------------------------------------------------------- the flowgraph


@needs_grcc
def test_teaching_demo_compiles_and_its_widgets_reach_every_link(tmp_path, grc_env):
    data = _load(GRC_FILE)
    opts = data["options"]["parameters"]
    assert opts["generate_options"] == "qt_gui" and opts["id"] == "teaching_demo"
    blocks_ = {b["name"]: b for b in data["blocks"]}
    for name, system in LINKS.items():
        p = blocks_[name]["parameters"]
        assert blocks_[name]["id"] == "gensemcom_semantic_link" and p["system"] == system
        assert (p["snr_db"], p["channel"]) == ("snr", "chan")
    assert blocks_["image_source"]["parameters"]["repeat"] == "True"
    assert blocks_["snr"]["id"] == "variable_qtgui_range" and blocks_["snr"]["parameters"]["value"] == "snr_db"
    assert blocks_["chan"]["id"] == "variable_qtgui_chooser" and blocks_["chan"]["parameters"]["value"] == "channel"
    rc, log, generated = _grcc(GRC_FILE, tmp_path, grc_env)
    assert rc == 0 and "Error" not in log, log
    code = generated.read_text()
    for option in ("--profile", "--image", "--snr-db", "--channel", "--address", "--period", "--size"):
        assert f'"{option}"' in code, option
    assert "default='embedded'" in code and "default='awgn'" in code
    assert "image or gensemcom.sample_folder()" in code and "Range(0, 20, 0.5, snr_db, 200)" in code
    assert "self._chan_options = ['awgn', 'rayleigh']" in code
    for name in LINKS:
        assert f"self.{name}.set_snr_db(self.snr)" in code, f"the SNR slider does not reach {name}"
        assert f"self.{name}.set_channel(self.chan)" in code, f"the channel chooser does not reach {name}"
        assert f"self.msg_connect((self.{name}, 'stats'), (self.monitor, 'in'))" in code
        display = name.replace("_link", "_display")
        assert f"self.msg_connect((self.{name}, 'out'), (self.{display}, 'in'))" in code
        assert f"self.msg_connect((self.image_source, 'out'), (self.{name}, 'in'))" in code
    assert "self.msg_connect((self.jpeg2000_link, 'digital_symbols'), (self.digital_to_stream, 'pdus'))" in code
    assert "self.msg_connect((self.deepjscc_link, 'analog_symbols'), (self.analog_to_stream, 'pdus'))" in code
    assert code.count("qtgui.const_sink_c(") == 2


def test_bundled_folder_is_the_default_image_folder():
    from gensemcom.image_io import list_images

    folder = gensemcom.sample_folder()
    assert os.path.samefile(folder, ROOT / "examples" / "data")
    assert len(list_images(folder)) >= 2


@pytest.mark.slow
@pytest.mark.flowgraph
@needs_installed_demo
def test_teaching_demo_runs_headless_under_system_python(tmp_path):
    """As GRC's Run button does, against a tiny worker of our own (GRC's /usr/bin/python3
    has no torch): images in every display, samples in both constellation sinks, rows with
    channel uses in the monitor; after the chooser switches to Rayleigh and the slider
    moves, images keep coming; the GUI thread never waits long; a clean stop."""
    pytest.importorskip("torch")
    from gensemcom.image_io import save_image
    from gensemcom.worker.client import LocalWorker

    folder = tmp_path / "images"
    for i in range(2):
        save_image(folder / f"im{i}.png", _image(64, seed=i))
    worker = LocalWorker(["--profile", "tiny", "--threads", "1", "--log-level", "WARNING"])
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path))  # HOME: Qt settings of our own
    env.pop("GENSEMCOM_WORKER_PYTHON", None)
    try:
        # --size 256, the demo's: JPEG2000's default budget (CBR 1/24: 8,192 channel uses) carries a codestream
        # on AWGN and Rayleigh (at 128 x 128 a Rayleigh MCS leaves no room for one; at 64 x 64 not even AWGN does)
        r = subprocess.run([SYSTEM_PYTHON, str(PROBE), str(SCRIPT), "--image", str(folder), "--address",
                            worker.address, "--profile", "tiny", "--size", "256", "--period", "0.5",
                            "--phase-s", "150", "--switch-snr", "12"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400)
    finally:
        worker.stop()
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Traceback" not in r.stderr and "dropped PDU" not in r.stderr, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    awgn, rayleigh = out["phases"]
    assert all(n >= 1 for n in awgn["shown"].values()), awgn
    assert all(n > 0 for n in awgn["sink_items"].values()), awgn["sink_items"]
    rows = {row["system"]: row for row in awgn["monitor_rows"]}
    assert set(rows) == set(LINKS.values())
    for system, row in rows.items():
        assert row["images_received"] >= 1 and row["total"] > 0 and row["channel"] == "awgn", row
    assert rows["deepjscc"]["analog"] > 0 and rows["jpeg2000-ldpc"]["analog"] == 0
    # after the switch: every link on Rayleigh at the slider's SNR, and a new image in every display
    for name, link in rayleigh["links"].items():
        assert link["channel"] == "rayleigh" and link["channels"] == ["rayleigh", "rayleigh"], (name, link)
        assert link["snr_db"] == 12.0
    assert all(rayleigh["shown"][d] > awgn["shown"][d] for d in awgn["shown"]), (awgn["shown"], rayleigh["shown"])
    assert all(rayleigh["sink_items"][s] > awgn["sink_items"][s] for s in awgn["sink_items"])
    assert {row["channel"] for row in rayleigh["monitor_rows"]} == {"rayleigh"}
    assert out["max_gui_gap_s"] < 1.0, out["max_gui_gap_s"]  # the GUI thread never waited on the worker
    assert out["stop_s"] < 30
