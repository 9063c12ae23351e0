"""Graceful degradation through the link and the blocks: the header survives the payload,
the receiver's SNR report adapts the transmitter (PHY-level tests: test_phy_header_mcs.py)."""
import numpy as np

from gensemcom.frame import SemanticFrame, from_air, pack_header, to_air, unpack_header
from gensemcom.link import FrameLink, PhyConfig
from gensemcom.phy import mcs as M
from gensemcom.phy.channels import make_channel
from gensemcom.phy.digital import DigitalPath

def test_header_survives_where_the_payload_fails():
    """At -1 dB a 64-QAM payload cannot decode; the rate-1/5 QPSK header does, so the
    receiver gets the header's true values and the analog segment's true scale."""
    rng = np.random.default_rng(2)
    link = FrameLink(PhyConfig(modulation=64, rate="5/6", seed=3))
    f = SemanticFrame("tisc", b"caption bytes" * 4, np.arange(8, dtype=np.float32) * 10, {"pos": 2, "size": [8, 8]})
    rx, ok, tx = link.send(f, -1.0, rng)
    assert not ok and rx.header_ok and rx.crc_ok is False
    assert rx.header == {"pos": 2, "size": [8, 8]} and rx.digital == b""
    # the analog part is de-normalised with the header's scale (about 44, not 1)
    assert np.std(rx.analog) > 10
    assert rx.meta["phy"]["header_ok"] is True and rx.meta["phy"]["mcs"] == "64QAM-5/6"


def test_lost_header_gives_a_lost_frame():
    air = to_air(SemanticFrame("tisc", b"x", np.ones(4), {"pos": 1}))
    f = from_air(None, None, air.analog, False, "tisc")
    assert f.header_ok is False and f.crc_ok is False and f.header == {}


def test_semantic_header_is_compact_and_round_trips():
    f = SemanticFrame("deepjscc", b"", np.ones(65536), {"size": [512, 768]})
    air = to_air(f)
    assert len(air.header) <= 25  # one protected header block
    h = unpack_header(air.header, "deepjscc")
    assert h.system == "deepjscc" and h.header == {"size": [512, 768]} and h.segments[0][1] == 65536
    # an unknown key still travels, by name
    assert unpack_header(pack_header(SemanticFrame("tisc", b"", None, {"zz": 1})), "tisc").header == {"zz": 1}


def test_adaptive_path_decodes_without_knowing_the_mcs():
    tx_path, rx_path = DigitalPath("auto", rate="auto"), DigitalPath("auto", rate="auto")
    for snr in (0.0, 12.0, 24.0):
        t = tx_path.transmit(b"hdr", bytes(range(200)), snr)
        out = make_channel("awgn", snr, seed=4)(t.symbols)
        r = rx_path.receive(out.y, out.noise_var)
        assert r.header_ok and r.crc_ok and r.payload == bytes(range(200)) and r.mcs == t.mcs


def test_feedback_changes_the_next_frames_mcs_in_a_flowgraph():
    """digital_rx's CSI report, through a return link, sets digital_tx's SNR: the next
    frame goes at the MCS for the SNR the receiver measured."""
    import time

    import pmt
    from gnuradio import blocks, gr

    import gensemcom
    from gensemcom.blocks.pdu_utils import make_pdu, meta_get

    tb = gr.top_block()
    tx = gensemcom.digital_tx(snr_db=-5.0)  # assumes a bad channel at first
    ch = gensemcom.pdu_channel("awgn", 20.0, 64, 5)
    rx = gensemcom.digital_rx()
    back = gensemcom.return_link(20.0, "awgn", 4, "auto", 64, 6)
    sink = blocks.message_debug()
    tb.msg_connect(tx, "out", ch, "in")
    tb.msg_connect(ch, "out", rx, "in")
    tb.msg_connect(rx, "out", sink, "store")
    tb.msg_connect(rx, "csi", back, "in")
    tb.msg_connect(back, "out", tx, "csi")
    tb.start()
    try:
        tx.to_basic_block()._post(pmt.intern("in"), make_pdu(None, np.arange(100, dtype=np.uint8), "u8"))
        t0 = time.time()
        while tx.n_csi < 1 and time.time() - t0 < 30:
            time.sleep(0.05)
        tx.to_basic_block()._post(pmt.intern("in"), make_pdu(None, np.arange(100, dtype=np.uint8), "u8"))
        while sink.num_messages() < 2 and time.time() - t0 < 30:
            time.sleep(0.05)
    finally:
        tb.stop()
        tb.wait()
    assert sink.num_messages() == 2
    first, second = (meta_get(pmt.car(sink.get_message(i)), "mcs") for i in range(2))
    assert first == "QPSK-1/5" and second == M.select_mcs(20.0)[0].name
    assert abs(tx.snr_db - 20.0) < 1.0


def test_rayleigh_sends_two_header_copies_inside_the_budget():
    from gensemcom.systems import build

    link = FrameLink(PhyConfig(channel="rayleigh", seed=2))
    assert link.digital.header.repeat == 2 and FrameLink(PhyConfig()).digital.header.repeat == 1
    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    budget = 96 * 128 * 3 // 24
    from gensemcom.link import run_link

    res = run_link(build("deepjscc", "tiny"), img, 10.0, link, np.random.default_rng(3), budget_symbols=budget)
    assert res.channel_uses["header"] == 1200 and res.channel_uses["total"] <= budget and res.image is not None
