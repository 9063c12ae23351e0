"""The PHY link demo: digital and analog paths through a real GNU Radio flowgraph.

A caption goes over the digital path (CRC-32, LDPC, Gray M-QAM, LLR demapping), a
float vector standing in for a learned embedding over the analog path (power
normalised, uncoded, MMSE-equalised), both through :class:`pdu_channel`. The
semantic systems (TISC and the others) build on exactly these blocks.
"""
from __future__ import annotations

import time
from typing import Dict

import numpy as np
import pmt
from gnuradio import blocks, gr

from ..blocks.analog_demapper import analog_demapper
from ..blocks.analog_mapper import analog_mapper
from ..blocks.digital_rx import digital_rx
from ..blocks.digital_tx import digital_tx
from ..blocks.equalizer import connect_through_channel
from ..blocks.pdu_channel import pdu_channel
from ..blocks.pdu_utils import KEY_CRC_OK, KEY_HEADER_BYTES, KEY_HEADER_OK, make_pdu, meta_get, meta_set
from ..link import FrameLink, header_repeat
from ..phy.channels import noise_var


def wait_for(sink: "blocks.message_debug", n: int, timeout: float = 60.0) -> bool:
    """Poll a ``message_debug`` until it stored ``n`` messages or ``timeout`` passed."""
    t0 = time.monotonic()
    while sink.num_messages() < n:
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.005)
    return True


class PhyLoopback(gr.top_block):
    """Digital and analog PDU paths through one channel type, collected by message_debug.

    Used by the demo and by ``gensemcom eval --flowgraph``. Rayleigh fading is
    equalised with perfect CSI (ZF for the digital path, MMSE for the analog one).

    Args:
        snr_db (float): Es/N0 in dB.
        channel (str): "awgn" or "rayleigh".
        modulation (int | str): QAM order of the digital path, or "auto".
        seed (int): channel seed (the analog path uses seed + 1).
        backend (str): LDPC backend.
        rate (str): LDPC code rate, or "auto".
        coherence (int): Rayleigh block length in symbols.
        analog_scale (float): the analog demapper's scale (<= 0: from the metadata).
    """

    def __init__(self, snr_db: float, channel: str = "awgn", modulation=16, seed: int = 0,
                 backend: str = "default", rate: str = "1/2", coherence: int = 64, analog_scale: float = -1.0):
        gr.top_block.__init__(self, "gensemcom PHY loopback")
        eq = channel == "rayleigh"
        rep = header_repeat(channel)
        self.dtx = digital_tx(modulation, backend, rate, snr_db=snr_db, channel=channel, header_repeat=rep)
        self.drx = digital_rx(modulation, backend, rate, header_repeat=rep)
        self.amap = analog_mapper()
        self.ademap = analog_demapper(scale=analog_scale)
        self.dchan = pdu_channel(channel, snr_db, coherence, seed)
        self.achan = pdu_channel(channel, snr_db, coherence, seed + 1)
        self.dsink = blocks.message_debug()
        self.asink = blocks.message_debug()
        self.msg_connect(self.dtx, "out", self.dchan, "in")
        self.msg_connect(self.amap, "out", self.achan, "in")
        self.deq = connect_through_channel(self, self.dchan, self.drx, "in", eq, "zf", coherence)
        self.aeq = connect_through_channel(self, self.achan, self.ademap, "in", eq, "mmse", coherence)
        self.msg_connect(self.drx, "out", self.dsink, "store")
        self.msg_connect(self.ademap, "out", self.asink, "store")

    def send_text(self, text: bytes, meta=None) -> None:
        self.dtx.to_basic_block()._post(pmt.intern("in"), make_pdu(meta, np.frombuffer(text, np.uint8), "u8"))

    def send_vector(self, x: np.ndarray, meta=None) -> None:
        self.amap.to_basic_block()._post(pmt.intern("in"), make_pdu(meta, x, "f32"))


def run_phy_demo(text: str, dim: int = 768, snr_db: float = 6.0, channel: str = "awgn",
                 modulation: int = 16, seed: int = 0, timeout: float = 60.0) -> Dict:
    """Run the loopback once and report what arrived (a dict for JSON)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(dim).astype(np.float32) * 0.3
    tb = PhyLoopback(snr_db, channel, modulation, seed)
    meta = meta_set(pmt.make_dict(), "image_id", "demo")
    tb.start()
    t0 = time.perf_counter()
    try:
        tb.send_text(text.encode(), meta)
        tb.send_vector(x, meta)
        got = wait_for(tb.dsink, 1, timeout) + wait_for(tb.asink, 1, timeout)
    finally:
        tb.stop()
        tb.wait()
    elapsed = time.perf_counter() - t0
    mcs, _ = tb.dtx.path.mcs_for(snr_db)
    report: Dict = {"snr_db (Es/N0)": snr_db, "channel": channel, "mcs": mcs.name,
                    "ldpc": f"{tb.dtx.path.payload_link(mcs).code.name} ({tb.dtx.path.payload_link(mcs).code.backend})",
                    "frames_received": int(got), "seconds": round(elapsed, 3)}
    if tb.dsink.num_messages():
        m = tb.dsink.get_message(0)
        payload = bytes(pmt.u8vector_elements(pmt.cdr(m)))
        report["digital_channel_uses"] = tb.dtx.path.n_symbols(0, len(text.encode()), mcs)
        report["caption_sent"] = text
        report["caption_received"] = payload.decode("utf-8", errors="replace")
        report["crc_ok"] = bool(meta_get(pmt.car(m), KEY_CRC_OK))
    if tb.asink.num_messages():
        y = np.asarray(pmt.f32vector_elements(pmt.cdr(tb.asink.get_message(0))))
        nmse = float(np.sum((y - x) ** 2) / np.sum(x ** 2))
        report["analog_channel_uses"] = dim // 2
        report["analog_nmse_db"] = round(10 * np.log10(max(nmse, 1e-30)), 2)
        expected = noise_var(snr_db) if channel == "awgn" else None
        if expected is not None:
            report["analog_nmse_expected_db"] = round(10 * np.log10(expected), 2)
    return report


# ------------------------------------------------------------- flowgraph
class FlowgraphLink:
    """Frames through real GNU Radio blocks, with :class:`FrameLink`'s interface.

    The frame's air form (:func:`gensemcom.frame.to_air`) crosses one running
    :class:`PhyLoopback`: its digital bytes ``digital_tx -> pdu_channel -> [equalizer]
    -> digital_rx``, its analog symbols (each segment at unit power) ``pdu_channel ->
    [equalizer] -> analog_demapper`` (scale 1); :func:`gensemcom.frame.from_air`
    rebuilds the frame, de-normalising each segment by the scale its header carries.

    Differences from the core: Rayleigh uses perfect-CSI equalisation only; on AWGN
    the analog path has no equaliser (the core shrinks analog symbols by the MMSE
    factor 1/(1+N0)); the channel noise comes from the blocks' own seeded streams, so
    numbers match the core statistically, not sample by sample.

    Args:
        cfg (PhyConfig): PHY settings (modulation, backend, rate, channel, coherence).
        timeout (float): seconds to wait for a PDU before declaring it lost.
    """

    def __init__(self, cfg, timeout: float = 120.0):
        if cfg.channel == "rayleigh" and cfg.estimator != "perfect":
            raise ValueError("--flowgraph supports Rayleigh with --estimator perfect only")
        self.cfg = cfg
        self.core = FrameLink(cfg)  # channel-use accounting and context only
        self.digital = self.core.digital
        self.timeout = float(timeout)
        self._tb = None

    def context(self, snr_db=None, budget_symbols=None):
        return self.core.context(snr_db, budget_symbols)

    def channel_uses(self, tx):
        return self.core.channel_uses(tx)

    def _build(self, snr_db: float):

        c = self.cfg
        tb = PhyLoopback(snr_db, c.channel, c.modulation, 0 if c.seed is None else int(c.seed), c.backend, c.rate,
                         c.coherence, analog_scale=1.0)
        tb.start()
        self._tb = tb

    def close(self) -> None:
        """Stop the top block."""
        if self._tb is not None:
            self._tb.stop()
            self._tb.wait()
            self._tb = None

    def _post_and_wait(self, block, sink, pdu):
        import pmt


        n = sink.num_messages()
        block.to_basic_block()._post(pmt.intern("in"), pdu)
        if not wait_for(sink, n + 1, self.timeout):
            return None
        return sink.get_message(n)

    def send(self, frame, snr_db: float, rng=None):
        """Frame through the blocks; returns (received frame, crc_ok, Transmission)."""
        from ..frame import from_air, to_air
        from ..link import Transmission

        if self._tb is None:
            self._build(snr_db)
        self._tb.dchan.set_snr_db(snr_db)
        self._tb.achan.set_snr_db(snr_db)
        air = to_air(frame)
        self._tb.dtx.set_snr_db(snr_db)
        tx = Transmission(air, self.digital.transmit(air.header, air.digital, snr_db))
        meta = meta_set(pmt.make_dict(), KEY_HEADER_BYTES, len(air.header))
        msg = self._post_and_wait(self._tb.dtx, self._tb.dsink,
                                  make_pdu(meta, np.frombuffer(air.header + air.digital, np.uint8), "u8"))
        ok = msg is not None and bool(meta_get(pmt.car(msg), KEY_CRC_OK, False))
        hok = msg is not None and bool(meta_get(pmt.car(msg), KEY_HEADER_OK, False))
        y = np.zeros(air.analog.size, np.complex64)
        if air.analog.size:  # the air form's symbols straight into the channel; the demapper at scale 1
            amsg = self._post_and_wait(self._tb.achan, self._tb.asink, make_pdu(None, air.analog, "c32"))
            if amsg is not None:
                r = np.asarray(pmt.f32vector_elements(pmt.cdr(amsg)), np.float32)
                y = (r[0::2] + 1j * r[1::2]).astype(np.complex64)
        raw = bytes(pmt.u8vector_elements(pmt.cdr(msg))) if hok else b""
        nh = meta_get(pmt.car(msg), KEY_HEADER_BYTES, 0) if hok else 0
        rx = from_air(raw[:nh] if hok else None, raw[nh:] if ok else None, y, ok, frame.system, dict(frame.meta),
                      on_bad_header="lost")
        return rx, bool(rx.crc_ok), tx
