"""The semantic link in real flowgraphs: encoder/decoder through the worker, frame mapper/demapper."""
import json
import subprocess
import sys

import numpy as np
import pmt
import pytest

pytest.importorskip("gnuradio.gr")
from gnuradio import blocks, gr  # noqa: E402

import gensemcom  # noqa: E402
from gensemcom.frame import SemanticFrame, frame_from_pmt, frame_to_pmt, to_air  # noqa: E402
from gensemcom.image_io import save_image  # noqa: E402
from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph  # noqa: E402
from gensemcom.blocks.pdu_utils import make_pdu, meta_get, meta_set  # noqa: E402

from conftest import ROOT, wait_until  # noqa: E402

pytestmark = pytest.mark.flowgraph


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    for i in range(2):
        x = np.clip(np.cumsum(rng.integers(-8, 9, (64, 64, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
        save_image(d / f"img{i}.png", x)
    return d


def test_deepjscc_tiny_link_through_flowgraph_writes_outputs(images, tmp_path):
    out = tmp_path / "out"
    rep = run_flowgraph(FlowgraphOptions(system="deepjscc", profile="tiny", images=str(images), snr_db=15.0,
                               out_dir=str(out), timeout_s=120))
    assert [r["image"] for r in rep["images"]] == ["img0", "img1"]
    for r in rep["images"]:
        assert r["received"] and r["crc_ok"] is True and r["shape"] == [64, 64, 3]
        cu = r["channel_uses"]
        assert cu["analog"] > 0 and cu["digital"] > 0 and cu["total"] == cu["analog"] + cu["digital"]
        assert (out / f"{r['image']}.png").exists() and (out / f"{r['image']}_compare.png").exists()
    assert rep["blocks"]["image_sink"]["sent"] == 2
    assert all(v["dropped"] == 0 for v in rep["blocks"].values())


def test_lost_header_is_counted_not_decoded(images):
    rep = run_flowgraph(FlowgraphOptions(system="deepjscc", profile="tiny", images=str(images), snr_db=-12.0,
                               modulation=256, timeout_s=120))
    assert not any(r["received"] for r in rep["images"])
    assert rep["frames_header_lost"] == 2  # below what even the rate-1/5 header block survives
    assert rep["blocks"]["semantic_decoder"]["errors"] == 2  # the worker refused: no image from a lost frame


def test_link_cli_json(images, tmp_path):
    r = subprocess.run([sys.executable, "-m", "gensemcom.cli", "link", "--system", "deepjscc", "--profile", "tiny",
                        "--image", str(images / "img0.png"), "--snr", "12", "--channel", "rayleigh",
                        "--estimator", "lmmse", "--json", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["channel"] == "rayleigh" and rep["images"][0]["received"]
    assert (tmp_path / "o" / "report.json").exists()
    r = subprocess.run([sys.executable, "-m", "gensemcom.cli", "link", "--system", "nope", "--image",
                        str(images)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "unknown system" in r.stderr


class Harness:
    def __init__(self, max_pending=8):
        self.tb = gr.top_block()
        self.mapper = gensemcom.frame_mapper()
        self.demapper = gensemcom.frame_demapper(max_pending=max_pending)
        self.sink = blocks.message_debug()
        self.dsink = blocks.message_debug()
        self.asink = blocks.message_debug()
        self.tb.msg_connect(self.mapper, "digital", self.dsink, "store")
        self.tb.msg_connect(self.mapper, "analog", self.asink, "store")
        self.tb.msg_connect(self.demapper, "out", self.sink, "store")
        self.tb.start()

    def close(self):
        self.tb.stop()
        self.tb.wait()


def test_frame_mapper_demapper_round_trip_and_pairing():
    h = Harness()
    frames = [SemanticFrame("deepjscc", bytes([i]) * 3, np.arange(8, dtype=np.float32) * (i + 1), {"c": i},
                            {"image_id": f"x{i}"}) for i in range(3)]
    frames.append(SemanticFrame("jpeg2000-ldpc", b"codestream", header={"q": 1}))  # digital only
    try:
        for f in frames:
            h.mapper.to_basic_block()._post(pmt.intern("in"), frame_to_pmt(f))
        h.mapper.to_basic_block()._post(pmt.intern("in"), pmt.intern("junk"))
        assert wait_until(lambda: h.dsink.num_messages() == 4 and h.asink.num_messages() == 3, 10)
        d = [h.dsink.get_message(i) for i in range(4)]
        a = [h.asink.get_message(i) for i in range(3)]
        for i in (2, 0, 1):  # analog halves arrive out of order; pairing is by frame_seq
            h.demapper.to_basic_block()._post(pmt.intern("analog"), a[i])
        for i in range(4):
            h.demapper.to_basic_block()._post(pmt.intern("digital"), d[i])
        assert wait_until(lambda: h.sink.num_messages() == 4, 10)
    finally:
        h.close()
    got = sorted((frame_from_pmt(h.sink.get_message(i)) for i in range(4)), key=lambda f: f.meta.get("image_id", "z"))
    for f, g in zip(frames, got):
        assert (g.system, g.digital, g.header, g.crc_ok) == (f.system, f.digital, f.header, True)
        assert np.allclose(g.analog, f.analog, rtol=1e-5, atol=1e-5)
    assert h.mapper.counters()["dropped"] == 1
    air = to_air(frames[0])
    assert meta_get(pmt.car(d[0]), "digital_bytes") == len(air.header) + len(air.digital)
    assert meta_get(pmt.car(d[0]), "header_bytes") == len(air.header)


def test_frame_demapper_flags_crc_failure_and_evicts_orphans():
    h = Harness(max_pending=2)
    try:
        h.mapper.to_basic_block()._post(pmt.intern("in"), frame_to_pmt(
            SemanticFrame("deepjscc", b"abc", np.ones(4, np.float32), {"c": 1})))
        assert wait_until(lambda: h.dsink.num_messages() == 1 and h.asink.num_messages() == 1, 10)
        dmsg = h.dsink.get_message(0)
        bad = pmt.cons(meta_set(pmt.car(dmsg), "crc_ok", False), pmt.cdr(dmsg))
        h.demapper.to_basic_block()._post(pmt.intern("digital"), bad)
        h.demapper.to_basic_block()._post(pmt.intern("analog"), h.asink.get_message(0))
        assert wait_until(lambda: h.sink.num_messages() == 1, 10)
        # the same frame again with its header lost too
        h.mapper.to_basic_block()._post(pmt.intern("in"), frame_to_pmt(
            SemanticFrame("deepjscc", b"abc", np.ones(4, np.float32), {"c": 1})))
        assert wait_until(lambda: h.dsink.num_messages() == 2 and h.asink.num_messages() == 2, 10)
        dmsg = h.dsink.get_message(1)
        lost = pmt.cons(meta_set(meta_set(pmt.car(dmsg), "crc_ok", False), "header_ok", False), pmt.cdr(dmsg))
        h.demapper.to_basic_block()._post(pmt.intern("digital"), lost)
        h.demapper.to_basic_block()._post(pmt.intern("analog"), h.asink.get_message(1))
        assert wait_until(lambda: h.sink.num_messages() == 2, 10)
        # orphans: analog halves whose digital half never comes are evicted past max_pending
        for seq in range(10, 14):
            h.demapper.to_basic_block()._post(pmt.intern("analog"), make_pdu(
                meta_set(pmt.make_dict(), "frame_seq", seq), np.ones(2, np.complex64), "c32"))
        h.demapper.to_basic_block()._post(pmt.intern("digital"), make_pdu(None, np.ones(3, np.uint8), "u8"))
        assert wait_until(lambda: h.demapper.counters()["dropped"] == 3, 10)
    finally:
        h.close()
    f = frame_from_pmt(h.sink.get_message(0))  # payload lost, header kept: its values and scale
    assert f.crc_ok is False and f.header_ok and f.header == {"c": 1} and f.digital == b""
    assert np.allclose(f.analog, 1.0, atol=1e-5)
    f = frame_from_pmt(h.sink.get_message(1))  # header lost: nothing but un-scaled symbols
    assert f.crc_ok is False and f.header_ok is False and f.header == {} and f.digital == b""
    c = h.demapper.counters()
    assert c["crc_failed"] == 1 and c["header_lost"] == 1 and c["pending"] == 2
    assert c["drop_reasons"] == {"unpaired half": 2, "bad digital PDU": 1}


def test_link_over_the_air_burst_phy(images, tmp_path):
    from gensemcom.flowgraphs.semantic_link import run_flowgraph_ota

    rep = run_flowgraph_ota(FlowgraphOptions(system="deepjscc", profile="tiny", images=str(images / "img0.png"), snr_db=20.0,
                                   out_dir=str(tmp_path)), cfo=0.15, epsilon=1.0001, taps=(1.0, 0.4, 0.2))
    row = rep["images"][0]
    assert row["detected"] and row["crc_ok"] and row["received"]
    assert row["measured_snr_db"] > 15
    assert (tmp_path / "img0_compare.png").exists()


def test_diffusion_decoder_is_the_semantic_decoder_under_the_design_name():
    dec = gensemcom.diffusion_decoder(profile="tiny")
    assert isinstance(dec, gensemcom.semantic_decoder) and dec.system == "tisc"
    assert dec.name() == "gensemcom_diffusion_decoder"
    assert (ROOT / "grc" / "gensemcom_diffusion_decoder.block.yml").is_file()
