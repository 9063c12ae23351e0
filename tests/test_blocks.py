"""GNU Radio blocks in real flowgraphs: PDUs pushed through, outputs counted, bad input dropped."""
import numpy as np
import pmt
import pytest

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks, channels, gr  # noqa: E402

import gensemcom  # noqa: E402
from gensemcom.blocks.pdu_utils import make_pdu, meta_get, meta_set  # noqa: E402
from gensemcom.phy.channels import noise_var, noise_voltage  # noqa: E402

from conftest import wait_until  # noqa: E402

pytestmark = pytest.mark.flowgraph


class Harness:
    """A top block with a chain of message blocks and a message_debug at its end."""

    def __init__(self, *chain):
        self.tb = gr.top_block()
        self.chain = chain
        self.sink = blocks.message_debug()
        for a, b in zip(chain, chain[1:]):
            self.tb.msg_connect(a, "out", b, "in")
        self.tb.msg_connect(chain[-1], "out", self.sink, "store")
        self.tb.start()

    def post(self, msg, block=None):
        (block or self.chain[0]).to_basic_block()._post(pmt.intern("in"), msg)

    def wait(self, n, timeout=60):
        return wait_until(lambda: self.sink.num_messages() >= n, timeout)

    def wait_handled(self, block, n, timeout=30):
        return wait_until(lambda: block.counters()["received"] >= n, timeout)

    def outputs(self):
        return [self.sink.get_message(i) for i in range(self.sink.num_messages())]

    def close(self):
        self.tb.stop()
        self.tb.wait()


def u8(data, meta=None):
    return make_pdu(meta, np.frombuffer(bytes(data), np.uint8), "u8")


def test_blocks_exported_lazily():
    for name in gensemcom.__all__:
        if name == "inference_call":
            continue
        assert callable(getattr(gensemcom, name))
    with pytest.raises(AttributeError):
        gensemcom.no_such_block


@pytest.mark.parametrize("modulation", [4, 16, 64, 256])
def test_digital_tx_rx_round_trip_many_pdus(modulation):
    tx = gensemcom.digital_tx(modulation=modulation)
    rx = gensemcom.digital_rx(modulation=modulation, noise_var=1e-3)
    h = Harness(tx, rx)
    payloads = [bytes([i]) * (1 + 97 * i) for i in range(6)]
    try:
        for i, p in enumerate(payloads):
            h.post(u8(p, meta_set(pmt.make_dict(), "image_id", f"img{i}")))
        assert h.wait(len(payloads))
    finally:
        h.close()
    out = h.outputs()
    assert len(out) == len(payloads)
    for i, m in enumerate(out):
        assert bytes(pmt.u8vector_elements(pmt.cdr(m))) == payloads[i]
        assert meta_get(pmt.car(m), "crc_ok") is True
        assert meta_get(pmt.car(m), "image_id") == f"img{i}"  # provenance survives
    assert tx.counters() == {"received": 6, "sent": 6, "dropped": 0, "drop_reasons": {}, "csi_reports": 0}


def test_digital_link_through_awgn_channel_block_at_moderate_snr():
    tx = gensemcom.digital_tx(modulation=16, snr_db=9.0)  # the code rate adapts to the SNR it is told
    ch = gensemcom.pdu_channel(channel="awgn", snr_db=9.0, seed=1)
    rx = gensemcom.digital_rx(modulation=16)
    h = Harness(tx, ch, rx)
    text = b"a photograph of a lighthouse on a rocky coast at sunset" * 10
    try:
        for _ in range(3):
            h.post(u8(text))
        assert h.wait(3)
    finally:
        h.close()
    for m in h.outputs():
        meta = pmt.car(m)
        assert meta_get(meta, "crc_ok") is True
        assert meta_get(meta, "snr_db") == 9.0
        assert meta_get(meta, "noise_var") is None  # symbol-level entry removed from the bytes PDU
        assert bytes(pmt.u8vector_elements(pmt.cdr(m))) == text


def test_digital_rx_flags_crc_failure_at_very_low_snr():
    tx = gensemcom.digital_tx(modulation=64)
    ch = gensemcom.pdu_channel(channel="awgn", snr_db=-2.0, seed=2)
    rx = gensemcom.digital_rx(modulation=64)
    h = Harness(tx, ch, rx)
    try:
        h.post(u8(b"x" * 400))
        assert h.wait(1)
    finally:
        h.close()
    meta = pmt.car(h.outputs()[0])
    assert meta_get(meta, "crc_ok") is False
    assert len(meta_get(meta, "failed_blocks")) >= 1
    assert rx.counters()["crc_failed"] == 1


def test_digital_rx_drop_failed_counts_instead_of_forwarding():
    tx = gensemcom.digital_tx(modulation=64)
    ch = gensemcom.pdu_channel(channel="awgn", snr_db=-2.0, seed=2)
    rx = gensemcom.digital_rx(modulation=64, drop_failed=True)
    good = gensemcom.digital_rx(modulation=64)
    h = Harness(tx, ch, rx)
    try:
        h.post(u8(b"x" * 400))
        assert h.wait_handled(rx, 1)
    finally:
        h.close()
    assert h.sink.num_messages() == 0
    assert rx.counters()["dropped"] == 1 and rx.counters()["drop_reasons"] == {"crc failed": 1}
    del good


def test_runtime_snr_change_via_callback_and_message():
    ch = gensemcom.pdu_channel(channel="awgn", snr_db=30.0, seed=3)
    h = Harness(ch)
    x = np.ones(20000, np.complex64)
    try:
        h.post(make_pdu(None, x, "c32"))
        assert h.wait(1)
        ch.set_snr_db(0.0)
        h.post(make_pdu(None, x, "c32"))
        assert h.wait(2)
        ch.to_basic_block()._post(pmt.intern("snr"), pmt.from_double(10.0))
        assert wait_until(lambda: ch.snr_db == 10.0, 10)
        ch.to_basic_block()._post(pmt.intern("snr"), pmt.intern("loud"))  # bad: dropped, counted
        assert wait_until(lambda: ch.counters()["dropped"] == 1, 10)
        h.post(make_pdu(None, x, "c32"))
        assert h.wait(3)
    finally:
        h.close()
    powers = [np.mean(np.abs(np.asarray(pmt.c32vector_elements(pmt.cdr(m))) - 1) ** 2) for m in h.outputs()]
    assert powers[0] == pytest.approx(noise_var(30), rel=0.1)
    assert powers[1] == pytest.approx(noise_var(0), rel=0.1)
    assert powers[2] == pytest.approx(noise_var(10), rel=0.1)


def test_runtime_channel_switch_keeps_snr_and_auto_equalizer_follows():
    """pdu_channel.set_channel switches AWGN <-> Rayleigh while running (SNR kept, the
    seeded stream continued, a bad name refused); an "auto" equaliser uses the true gains
    of faded PDUs and passes AWGN ones through unchanged."""
    ch = gensemcom.pdu_channel(channel="awgn", snr_db=25.0, coherence=16, seed=3)
    eq = gensemcom.equalizer(estimator="auto", method="zf", n_pilots=0)
    tb, raw, out = gr.top_block(), blocks.message_debug(), blocks.message_debug()
    tb.msg_connect(ch, "out", eq, "in")
    tb.msg_connect(eq, "out", out, "store")
    tb.msg_connect(ch, "out", raw, "store")
    x = np.exp(2j * np.pi * np.random.default_rng(0).random(4096)).astype(np.complex64)

    def send(n):
        ch.to_basic_block()._post(pmt.intern("in"), make_pdu(None, x, "c32"))
        assert wait_until(lambda: out.num_messages() >= n and raw.num_messages() >= n, 30)

    tb.start()
    try:
        send(1)
        rng = ch._chan.rng
        ch.set_channel("rayleigh")
        assert ch._chan.rng is rng  # the seeded stream goes on, not restarted
        send(2)
        with pytest.raises(ValueError, match="unknown channel"):
            ch.set_channel("rician")
        assert ch.kind == "rayleigh" and ch.snr_db == 25.0
        ch.set_channel("awgn")
        send(3)
    finally:
        tb.stop()
        tb.wait()
    metas = [pmt.car(raw.get_message(i)) for i in range(3)]
    assert [meta_get(m, "csi") is None for m in metas] == [True, False, True]
    assert all(meta_get(m, "snr_db") == 25.0 for m in metas)
    h_true = meta_get(metas[1], "csi")
    assert np.ptp(np.abs(h_true)) > 0.1 and np.allclose(h_true[:16], h_true[0])  # faded, per 16-symbol block
    outs = [out.get_message(i) for i in range(3)]
    ys = [np.asarray(pmt.c32vector_elements(pmt.cdr(m))) for m in outs]
    for y, m in zip(ys, outs):
        assert np.median(np.abs(y - x) ** 2) < 20 * noise_var(25)  # every PDU back near x
        assert meta_get(pmt.car(m), "equalized") is True and meta_get(pmt.car(m), "csi") is None
    # AWGN PDUs went through untouched (the symbols the channel made, bit for bit)
    assert np.array_equal(ys[0], np.asarray(pmt.c32vector_elements(pmt.cdr(raw.get_message(0)))))


def test_digital_tx_set_channel_switches_the_adaptation_table():
    tx = gensemcom.digital_tx(snr_db=8.0)
    awgn = tx.path.mcs_for(8.0)[0]
    tx.set_channel("rayleigh")
    assert tx.path.channel == "rayleigh" and tx.path.mcs_for(8.0)[0] != awgn
    with pytest.raises(ValueError, match="awgn or rayleigh"):
        tx.set_channel("rician")
    assert tx.path.channel == "rayleigh"


def test_analog_mapper_demapper_round_trip_and_noise():
    amap, ch, ademap = gensemcom.analog_mapper(), gensemcom.pdu_channel("awgn", 15.0, seed=4), gensemcom.analog_demapper()
    h = Harness(amap, ch, ademap)
    x = np.random.default_rng(0).standard_normal(4096).astype(np.float32) * 2.5
    try:
        h.post(make_pdu(None, x, "f32"))
        assert h.wait(1)
    finally:
        h.close()
    m = h.outputs()[0]
    y = np.asarray(pmt.f32vector_elements(pmt.cdr(m)))
    scale = meta_get(pmt.car(m), "analog_scale")
    assert scale == pytest.approx(np.sqrt(np.mean(x[0::2] ** 2 + x[1::2] ** 2)), rel=1e-5)
    # per-real error variance = N0 * scale^2 / 2
    assert np.mean((y - x) ** 2) == pytest.approx(noise_var(15) * scale ** 2 / 2, rel=0.1)


@pytest.mark.parametrize("estimator,n_pilots", [("perfect", 0), ("ls", 4), ("lmmse", 4)])
def test_rayleigh_with_pilots_and_equalizer_delivers_digital_payload(estimator, n_pilots):
    tx = gensemcom.digital_tx(modulation=4)
    ins = gensemcom.pilot_inserter(block_len=64, n_pilots=n_pilots) if n_pilots else None
    ch = gensemcom.pdu_channel(channel="rayleigh", snr_db=12.0, coherence=64, seed=5)
    eq = gensemcom.equalizer(estimator=estimator, method="zf", block_len=64, n_pilots=n_pilots)
    rx = gensemcom.digital_rx(modulation=4)
    chain = [tx] + ([ins] if ins else []) + [ch, eq, rx]
    h = Harness(*chain)
    text = bytes(range(256)) * 2
    try:
        h.post(u8(text))
        assert h.wait(1)
    finally:
        h.close()
    m = h.outputs()[0]
    assert meta_get(pmt.car(m), "crc_ok") is True
    assert bytes(pmt.u8vector_elements(pmt.cdr(m))) == text


def test_stream_glue_through_gnuradio_channel_model():
    """PDUs -> burst_tx -> channels.channel_model -> burst_rx -> PDUs, every one counted."""
    tb = gr.top_block()
    dtx = gensemcom.digital_tx(modulation=16)
    btx = gensemcom.burst_tx(guard=32)
    cm = channels.channel_model(noise_voltage=noise_voltage(14.0), frequency_offset=0.0, epsilon=1.0,
                                taps=[0.8j], noise_seed=7, block_tags=False)
    brx = gensemcom.burst_rx(guard=32)
    drx = gensemcom.digital_rx(modulation=16)
    sink = blocks.message_debug()
    tb.msg_connect(dtx, "out", btx, "in")
    tb.connect(btx, cm, brx)
    tb.msg_connect(brx, "out", drx, "in")
    tb.msg_connect(drx, "out", sink, "store")
    texts = [f"frame {i}: ".encode() + bytes(range(40 + i)) for i in range(5)]
    tb.start()
    try:
        for i, t in enumerate(texts):
            dtx.to_basic_block()._post(pmt.intern("in"), u8(t, meta_set(pmt.make_dict(), "image_id", i)))
        assert wait_until(lambda: sink.num_messages() >= 5, 60)
    finally:
        tb.stop()
        tb.wait()
    assert sink.num_messages() == 5  # every burst came out, the last one too
    for i in range(5):
        m = sink.get_message(i)
        assert meta_get(pmt.car(m), "crc_ok") is True
        assert meta_get(pmt.car(m), "image_id") == i  # metadata crossed as stream tags
        assert bytes(pmt.u8vector_elements(pmt.cdr(m))) == texts[i]
        assert abs(meta_get(pmt.car(m), "burst_gain") - 0.8j) < 0.1
    assert brx.counters()["sent"] == 5


def test_stream_channel_hier_block_noise_estimate():
    sc = gensemcom.stream_channel(snr_db=10.0, phase=2.0, seed=1)
    tb = gr.top_block()
    sink = blocks.message_debug()
    tb.msg_connect(sc, "out", sink, "store")
    x = np.exp(1j * np.random.default_rng(1).uniform(0, 6.3, 3000)).astype(np.complex64)
    tb.start()
    try:
        sc.tx.framer.to_basic_block()._post(pmt.intern("in"), make_pdu(None, x, "c32"))
        assert wait_until(lambda: sink.num_messages() >= 1, 30)
    finally:
        tb.stop()
        tb.wait()
    m = sink.get_message(0)
    y = np.asarray(pmt.c32vector_elements(pmt.cdr(m)))
    assert y.size == x.size
    assert np.mean(np.abs(y - x) ** 2) == pytest.approx(noise_var(10), rel=0.15)
    assert meta_get(pmt.car(m), "noise_var") == pytest.approx(noise_var(10), rel=0.6)


# ------------------------------------------------------------------ bad input
BAD_COMMON = {
    "not a pair": pmt.intern("hello"),
    "meta not a dict": pmt.cons(pmt.from_long(3), pmt.init_u8vector(2, [1, 2])),
}


def _bad_inputs_for(kind):
    out = dict(BAD_COMMON)
    if kind == "u8":
        out["wrong vector type"] = make_pdu(None, np.ones(4, np.float32), "f32")
        out["empty"] = make_pdu(None, np.zeros(0, np.uint8), "u8")
    elif kind == "f32":
        out["wrong vector type"] = make_pdu(None, np.ones(4, np.uint8), "u8")
        out["empty"] = make_pdu(None, np.zeros(0, np.float32), "f32")
        out["nan"] = make_pdu(None, np.array([1, np.nan], np.float32), "f32")
        out["inf"] = make_pdu(None, np.array([np.inf, 1], np.float32), "f32")
    else:
        out["wrong vector type"] = make_pdu(None, np.ones(4, np.float32), "f32")
        out["empty"] = make_pdu(None, np.zeros(0, np.complex64), "c32")
        out["nan"] = make_pdu(None, np.array([1, complex(np.nan, 0)], np.complex64), "c32")
        out["inf"] = make_pdu(None, np.array([1, complex(0, np.inf)], np.complex64), "c32")
    return out


BLOCKS_AND_GOOD = {
    "digital_tx": (lambda: gensemcom.digital_tx(modulation=16, max_blocks=2), "u8",
                   lambda: u8(b"ok"), {"too long for one frame": u8(bytes(1000))}),
    "digital_rx": (lambda: gensemcom.digital_rx(modulation=4), "c32",
                   lambda: make_pdu(None, gensemcom.digital_tx(modulation=4).path.transmit(b"", b"ok").symbols, "c32"),
                   {"shorter than a header block": make_pdu(None, np.ones(10, np.complex64), "c32")}),
    "analog_mapper": (lambda: gensemcom.analog_mapper(max_items=1000), "f32",
                      lambda: make_pdu(None, np.ones(8, np.float32), "f32"),
                      {"odd length": make_pdu(None, np.ones(7, np.float32), "f32"),
                       "oversized": make_pdu(None, np.ones(1002, np.float32), "f32")}),
    "analog_demapper": (lambda: gensemcom.analog_demapper(), "c32",
                        lambda: make_pdu(meta_set(pmt.make_dict(), "analog_scale", 2.0), np.ones(4, np.complex64), "c32"),
                        {"no scale": make_pdu(None, np.ones(4, np.complex64), "c32")}),
    "pdu_channel": (lambda: gensemcom.pdu_channel(), "c32", lambda: make_pdu(None, np.ones(4, np.complex64), "c32"), {}),
    "pilot_inserter": (lambda: gensemcom.pilot_inserter(), "c32",
                       lambda: make_pdu(None, np.ones(4, np.complex64), "c32"), {}),
    "equalizer": (lambda: gensemcom.equalizer(estimator="perfect", n_pilots=0), "c32",
                  lambda: make_pdu(meta_set(pmt.make_dict(), "csi", np.ones(4, np.complex64)), np.ones(4, np.complex64), "c32"),
                  {"csi missing": make_pdu(None, np.ones(4, np.complex64), "c32")}),
    "burst_framer": (lambda: gensemcom.burst_framer(), "c32", lambda: make_pdu(None, np.ones(4, np.complex64), "c32"), {}),
}


@pytest.mark.parametrize("name", sorted(BLOCKS_AND_GOOD))
def test_bad_input_is_logged_dropped_counted_and_flowgraph_survives(name):
    make, kind, good, extra = BLOCKS_AND_GOOD[name]
    blk = make()
    bad = {**_bad_inputs_for(kind), **extra}
    h = Harness(blk)
    try:
        for msg in bad.values():
            h.post(msg)
        h.post(good())
        assert h.wait(1)
        assert h.wait_handled(blk, len(bad) + 1)
    finally:
        h.close()
    c = blk.counters()
    assert c["received"] == len(bad) + 1
    assert c["dropped"] == len(bad), c
    assert c["sent"] == 1 and h.sink.num_messages() == 1
