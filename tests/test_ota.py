"""The over-the-air burst PHY (gensemcom.ota): numpy core, GNU Radio blocks, impairments, ZMQ."""
import socket
import time

import numpy as np
import pytest

from gensemcom.frame import SemanticFrame
from gensemcom.ota.phy import (HEADER_SYMS, N_SYNC, Header, OfdmReceiverCore, OtaError, OtaParams,
                               frame_data_symbols, header_symbols, modulate, sc_threshold)
from gensemcom.phy.digital import DigitalLink, DigitalPath

from conftest import wait_until

P = OtaParams()


def _fft_symbols(y, p=P, off=8):
    s = y[: (y.size // p.sym_len) * p.sym_len].reshape(-1, p.sym_len)[:, p.cp_len - off:p.cp_len - off + p.fft_len]
    return np.fft.fftshift(np.fft.fft(s, axis=1), axes=1)


# ------------------------------------------------------------------ numpy core
def test_header_round_trip_and_crc():
    h = Header(1234, 56789, 3.25, 65535, 4, True)
    raw = h.pack()
    assert len(raw) == 16
    assert Header.unpack(raw) == h
    bad = bytearray(raw)
    bad[5] ^= 0x10
    with pytest.raises(OtaError, match="CRC"):
        Header.unpack(bytes(bad))
    with pytest.raises(OtaError):
        Header(1 << 24, 0).pack()


def test_core_decodes_a_clean_frame_exactly(rng):
    link = DigitalLink(16)
    dig = link.transmit(bytes(range(200)))
    ana = (rng.normal(size=300) + 1j * rng.normal(size=300)).astype(np.complex64) / np.sqrt(2)
    h = Header(dig.size, ana.size, 2.0, 7, 4, False)
    Y = _fft_symbols(modulate(frame_data_symbols(dig, ana, h, P), P))
    core = OfdmReceiverCore(P)
    ce = core.estimate(Y[0], Y[1])
    got, _ = core.decode_header(Y[N_SYNC:N_SYNC + HEADER_SYMS], ce)
    assert got == h
    eq = core.equalize(Y[N_SYNC + HEADER_SYMS:], ce, HEADER_SYMS, dig.size + ana.size)
    assert np.max(np.abs(eq.symbols[dig.size:] - ana)) < 1e-3
    assert link.receive(eq.symbols[: dig.size], eq.noise_var[: dig.size]).payload == bytes(range(200))
    assert eq.snr_db > 40


def test_threshold_helper_is_monotone_and_clipped():
    t = [sc_threshold(s) for s in (-10, 3, 6, 10, 20, 40)]
    assert t == sorted(t) and t[0] == 0.2 and 0.5 < t[-1] <= 0.9


# ------------------------------------------------------------------ GNU Radio
gr = pytest.importorskip("gnuradio.gr")
import pmt  # noqa: E402
from gnuradio import blocks, channels, gr  # noqa: E402,F811

from gensemcom.blocks import ota_rx, ota_tx  # noqa: E402
from gensemcom.flowgraphs.ota_sim import OtaSim, run_ota_sim  # noqa: E402
from gensemcom.blocks.pdu_utils import make_pdu, meta_get, meta_set  # noqa: E402

pytestmark = pytest.mark.flowgraph


def _capture_tx(msgs, n_out=None, **kw):
    """Run ota_tx alone; return its output samples."""
    tb = gr.top_block()
    tx = ota_tx(**kw)
    vs = blocks.vector_sink_c()
    tb.connect(tx, vs)
    tb.start()
    try:
        for m in msgs:
            tx.post(m)
        n_out = len(msgs) if n_out is None else n_out
        assert wait_until(lambda: tx.framer.counters()["received"] >= len(msgs), 20)
        assert wait_until(lambda: tx.burst.counters()["sent"] >= n_out, 20)
        time.sleep(0.05)
    finally:
        tb.stop()
        tb.wait()
    return np.array(vs.data(), np.complex64), tx


def _run_rx(samples, **kw):
    tb = gr.top_block()
    rx = ota_rx(**kw)
    src = blocks.vector_source_c(np.asarray(samples, np.complex64))
    sink, stats = blocks.message_debug(), blocks.message_debug()
    tb.connect(src, rx)
    tb.msg_connect(rx, "out", sink, "store")
    tb.msg_connect(rx, "stats", stats, "store")
    tb.start()
    return tb, rx, sink, stats


def test_tx_matches_numpy_reference():
    payload = bytes(range(50))
    y, tx = _capture_tx([make_pdu(None, np.frombuffer(payload, np.uint8), "u8")], gap=100)
    # the digital part: the protected header block (QPSK), then the payload at 16-QAM 1/2
    dig = DigitalPath(16, rate="1/2").transmit(b"", payload).symbols
    x = modulate(frame_data_symbols(dig, np.zeros(0), Header(dig.size, 0, 1.0, 0, 2, False), P), P)
    assert y.size == x.size + 100
    assert np.max(np.abs(y[: x.size] - x)) < 1e-4
    assert 0.8 < np.mean(np.abs(x) ** 2) < 1.3  # about unit average power (sync symbols run higher)


def test_round_trip_no_impairment_pdu_and_frame(rng):
    a = rng.normal(size=600).astype(np.float32) * 4
    frame = SemanticFrame("tisc", b"caption tokens" * 10, rng.normal(size=400).astype(np.float32),
                          {"shape": [2, 3]}, {"image_id": "img7"})
    with OtaSim(None, seed=1) as sim:
        res = sim.send([(b"digital part", a), b"only digital", a[:10], frame], timeout=30)
        c = sim.counters()
    assert [r.detected for r in res] == [True] * 4 and all(r.crc_ok for r in res)
    assert res[0].digital == b"digital part"
    assert np.mean((res[0].analog - a) ** 2) / np.mean(a ** 2) < 1e-4
    assert res[1].digital == b"only digital" and res[1].analog.size == 0
    assert res[2].digital == b"" and np.allclose(res[2].analog, a[:10], atol=1e-2)
    f = res[3].frame
    assert f.system == "tisc" and f.digital == frame.digital and f.header == {"shape": [2, 3]} and f.crc_ok
    assert np.mean((f.analog - frame.analog) ** 2) < 1e-4
    assert f.meta["snr_db"] > 30
    assert c["frames_detected"] == 4 and c["payload_ok"] == 4 and c["header_crc_failed"] == 0


IMPAIRMENTS = {
    "noise": dict(snr_db=12.0),
    "cfo": dict(snr_db=30.0, cfo=0.3),
    "timing": dict(snr_db=30.0, epsilon=1.0001, max_delay=3000),
    "multipath": dict(snr_db=30.0, taps=[1.0, 0.5j, 0.3]),
    "combined": dict(snr_db=12.0, cfo=-0.25, epsilon=1.0001, max_delay=3000, taps=[1.0, 0.5, 0.3]),
}


@pytest.mark.parametrize("case", list(IMPAIRMENTS))
def test_detection_and_decoding_under_impairment(case, rng):
    kw = dict(IMPAIRMENTS[case])
    snr = kw.pop("snr_db")
    items = [(rng.integers(0, 256, 200, dtype=np.uint8).tobytes(), rng.normal(size=500).astype(np.float32))
             for _ in range(4)]
    with OtaSim(snr, seed=3, threshold=sc_threshold(snr), **kw) as sim:
        res = sim.send(items, timeout=30)
    assert all(r.detected for r in res), sim.counters()
    assert all(r.crc_ok for r in res) and [r.digital for r in res] == [d for d, _ in items]
    nmse = np.mean([np.mean((r.analog - a) ** 2) / np.mean(a ** 2) for r, (_, a) in zip(res, items)])
    # MMSE floor for a flat channel N0 / (1 + N0); multipath can be 2 dB worse on faded carriers
    n0 = 10 ** (-snr / 10)
    assert nmse < 2.0 * n0 / (1 + n0), nmse
    assert all(abs(r.snr_db - snr) < 4 for r in res)  # measured SNR near the true one


def test_corrupted_header_is_counted_and_dropped():
    dig = DigitalPath(16, rate="1/2").transmit(b"", b"good frame").symbols
    good = modulate(frame_data_symbols(dig, np.zeros(0), Header(dig.size, 0, 1.0, 1, 2, False), P), P)
    d = frame_data_symbols(dig, np.zeros(0), Header(dig.size, 0, 1.0, 2, 2, False), P)
    d[: HEADER_SYMS * P.n_data] = header_symbols(Header(dig.size, 0, 1.0, 2, 2, False), P)
    d[:64] *= -1  # flip every bit of the first copy ...
    d[64:128] *= -1  # ... and of the second: the combined decision loses
    bad = modulate(d, P)
    z = np.zeros(500, np.complex64)
    tb, rx, sink, stats = _run_rx(np.concatenate([z, bad, z, good, z, z, z]))
    try:
        assert wait_until(lambda: sink.num_messages() >= 1, 20)
        assert wait_until(lambda: rx.counters()["frames_detected"] >= 2, 5)
    finally:
        tb.stop()
        tb.wait()
    c = rx.counters()
    assert c["frames_detected"] == 2 and c["header_crc_failed"] == 1 and c["frames_out"] == 1
    m = sink.get_message(0)
    assert bytes(pmt.u8vector_elements(pmt.cdr(m))) == b"good frame" and meta_get(pmt.car(m), "seq") == 1
    last = pmt.to_python(stats.get_message(stats.num_messages() - 1))
    assert last["header_crc_failed"] == 1 and last["payload_ok"] == 1


def test_payload_crc_failure_is_flagged_and_counted(capfd):
    path = DigitalPath(16, rate="1/2")
    dig = path.transmit(b"", bytes(300)).symbols
    d = frame_data_symbols(dig, np.zeros(0), Header(dig.size, 0, 1.0, 5, 2, False), P)
    rng = np.random.default_rng(0)
    k = HEADER_SYMS * P.n_data + path.header.block_symbols  # past the protected header block
    d[k:k + 400] = (rng.normal(size=400) + 1j * rng.normal(size=400)) / np.sqrt(2)  # wipe a code block
    z = np.zeros(500, np.complex64)
    tb, rx, sink, _ = _run_rx(np.concatenate([z, modulate(d, P), z, z]))
    try:
        assert wait_until(lambda: sink.num_messages() >= 1, 20)
    finally:
        tb.stop()
        tb.wait()
    meta = pmt.car(sink.get_message(0))
    assert meta_get(meta, "crc_ok") is False and 0 in list(meta_get(meta, "failed_blocks"))
    assert rx.counters()["payload_crc_failed"] == 1
    assert "payload CRC failed 1" in capfd.readouterr().err  # printed in stop()


def test_tx_drops_bad_input_and_counts():
    y, tx = _capture_tx([make_pdu(meta_set(pmt.make_dict(), "analog", np.ones(3, np.float32)),
                                  np.zeros(4, np.uint8), "u8"),
                         pmt.intern("not a pdu"),
                         make_pdu(None, np.ones(4, np.float32), "f32")], n_out=1)
    c = tx.counters()["framer"]
    assert c["received"] == 3 and c["sent"] == 1 and c["dropped"] == 2


def test_run_ota_sim_api():
    frame = SemanticFrame("deepjscc", b"\x01\x02", np.linspace(-1, 1, 96).astype(np.float32), {"h": 1})
    r = run_ota_sim(frame, snr_db=25, cfo=0.1, epsilon=1.0001, taps=[1, 0.3], seed=4)
    assert r.detected and r.crc_ok and r.frame.system == "deepjscc" and r.frame.digital == b"\x01\x02"
    assert np.mean((r.analog - frame.analog) ** 2) / np.mean(frame.analog ** 2) < 0.02


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zmq_two_radios_carry_frames(rng):
    """tx and rx as two top blocks linked only by GNU Radio's ZMQ stream blocks."""
    zeromq = pytest.importorskip("gnuradio.zeromq")
    addr = f"tcp://127.0.0.1:{_free_port()}"
    tx_tb, rx_tb = gr.top_block(), gr.top_block()
    tx = ota_tx()
    air = channels.channel_model(P.noise_voltage(15), 0.2 / P.fft_len, 1.0001, [1.0], 7, False)
    tx_tb.connect(tx, air, zeromq.push_sink(gr.sizeof_gr_complex, 1, addr, 100, False, -1))
    rx = ota_rx(threshold=sc_threshold(15))
    sink = blocks.message_debug()
    rx_tb.connect(zeromq.pull_source(gr.sizeof_gr_complex, 1, addr, 100, False, -1), rx)
    rx_tb.msg_connect(rx, "out", sink, "store")
    rx_tb.start()
    tx_tb.start()
    try:
        payloads = [rng.integers(0, 256, 100, dtype=np.uint8) for _ in range(3)]
        for p in payloads:
            tx.post(make_pdu(None, p, "u8"))
        # a flush burst: the pull source hands over whole ZMQ messages
        tx.post(make_pdu(None, np.zeros(1, np.uint8), "u8"))
        assert wait_until(lambda: sink.num_messages() >= 3, 30), rx.counters()
    finally:
        tx_tb.stop()
        tx_tb.wait()
        rx_tb.stop()
        rx_tb.wait()
    got = {meta_get(pmt.car(sink.get_message(i)), "seq"): bytes(pmt.u8vector_elements(pmt.cdr(sink.get_message(i))))
           for i in range(sink.num_messages())}
    assert [got.get(i) for i in range(3)] == [p.tobytes() for p in payloads]
