"""GNU Radio blocks of the over-the-air burst PHY: ``ota_tx`` and ``ota_rx``.

``ota_tx`` (message port ``in`` -> complex stream) takes either

* a semantic frame as a PMT dict (:func:`gensemcom.frame.frame_to_pmt`): its digital
  part is packed with :meth:`SemanticFrame.pack_digital` and sent over CRC-32 + LDPC +
  M-QAM (:class:`DigitalLink`), its analog part is power-normalised
  (:func:`analog_map`) and sent as raw complex symbols -- exactly as
  :class:`gensemcom.link.FrameLink` does; or
* a PDU: a u8 vector is the digital part (metadata key ``analog``, an f32vector of even
  length, adds an analog part); an f32 vector alone is an analog-only frame.

The frame's data-carrier symbols (header + payload) go through GNU Radio's
``ofdm_carrier_allocator_cvc`` (sync words, pilots), ``fft_vcc`` and
``ofdm_cyclic_prefixer``; each burst is scaled to unit average power times
``amplitude`` and followed by ``gap`` zero samples.

``ota_rx`` (complex stream -> message ports ``out`` and ``stats``) detects bursts
with ``ofdm_sync_sc_cfb`` (Schmidl & Cox), corrects the fine CFO with
``frequency_modulator_fc``, cuts header and payload with ``header_payload_demux`` and
``fft_vcc``; Python blocks estimate the channel, decode the header (answering the
demux), track and equalise the payload and decode it with :class:`DigitalLink`.
``out`` carries what the tx took (frame dict or PDU) with ``crc_ok`` and ``snr_db``;
``stats`` a dict of counters after every detected frame.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Dict, Optional

import numpy as np
import pmt
from gnuradio import digital, fft, gr, pdu

from ..frame import FrameError, frame_from_pmt, to_air
from ..ota.phy import FRAME_LEN_TAG, HEADER_SYMS, LENGTH_TAG, N_SYNC, Header, OtaError, OtaParams, frame_data_symbols
from ..phy.analog import analog_map
from ..phy.digital import DigitalPath
from .pdu_utils import PduError, counting, make_pdu, meta_get, meta_set, parse_pdu

KEY_ANALOG = "analog"
KEY_SEQ = "seq"
KEY_HEADER_OK = "header_ok"
_K_CHAN, _K_N0, _K_DOF, _K_HDR, _K_DELAY = (pmt.intern(k) for k in ("ota_chan", "ota_n0", "ota_dof", "ota_hdr",
                                                                    "ota_delay"))
_K_FRAME_LEN = pmt.intern(FRAME_LEN_TAG)
MAX_DELAY = 8192  # largest per-frame leading delay (metadata "ota_delay", samples)


# ====================================================================== stats
class OtaStats:
    """Receiver counters shared by the rx's blocks (thread safe)."""

    FIELDS = ("frames_detected", "header_ok", "header_crc_failed", "payload_ok", "payload_crc_failed",
              "frames_out", "dropped")

    def __init__(self):
        self._lock = threading.Lock()
        self.c = {k: 0 for k in self.FIELDS}
        self.snr_sum = 0.0
        self.n_snr = 0
        self.snr_last = float("nan")

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.c[key] += n

    def snr(self, snr_db: float) -> None:
        with self._lock:
            self.snr_last = float(snr_db)
            self.snr_sum += float(snr_db)
            self.n_snr += 1

    def as_dict(self) -> Dict[str, Any]:
        with self._lock:
            d: Dict[str, Any] = dict(self.c)
            n = self.n_snr
            d["snr_db_last"] = self.snr_last
            d["snr_db_mean"] = self.snr_sum / n if n else float("nan")
            return d

    def as_pmt(self):
        d = pmt.make_dict()
        for k, v in self.as_dict().items():
            d = pmt.dict_add(d, pmt.intern(k), pmt.from_double(v) if isinstance(v, float) else pmt.from_long(v))
        return d

    def summary(self) -> str:
        d = self.as_dict()
        return ("frames detected {frames_detected}, header ok {header_ok}, header CRC failed {header_crc_failed}, "
                "payload ok {payload_ok}, payload CRC failed {payload_crc_failed}, out {frames_out}, "
                "dropped {dropped}, mean SNR {snr_db_mean:.1f} dB").format(**d)


def _pilot_table(p: OtaParams):
    from ..ota.phy import PILOT_SYMBOLS
    return [tuple(float(v) for v in row[: len(p.pilots)]) for row in PILOT_SYMBOLS]


# ====================================================================== transmitter
class ota_framer(counting, gr.basic_block):
    """Frame dict or PDU in (``in``) -> data-carrier symbols PDU out (``out``)."""

    def __init__(self, modulation=16, backend="default", code_rate="1/2", params: Optional[OtaParams] = None,
                 delays: Optional[collections.deque] = None, max_symbols: int = 2048, snr_db: float = 10.0):
        gr.basic_block.__init__(self, name="gensemcom_ota_framer", in_sig=None, out_sig=None)
        self._init_counters()
        self.p = params or OtaParams()
        self.path = DigitalPath(modulation, backend, code_rate)
        self.snr_db = float(snr_db)
        self.seq = 0
        self.max_symbols = int(max_symbols)
        self.delays = delays if delays is not None else collections.deque()
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def symbols(self, msg):
        """(data-carrier symbols, header, leading delay) of one input message."""
        delay = 0
        is_pdu = pmt.is_pair(msg) and pmt.is_uniform_vector(pmt.cdr(msg))
        if not is_pdu:
            frame = frame_from_pmt(msg)
            air = to_air(frame)  # segments at unit power, their scales in the semantic header
            ana, scale = air.analog, 1.0
            tx = self.path.transmit(air.header, air.digital, self.snr_db)
            dig, is_frame = tx.symbols, True
            delay = int(frame.meta.get("ota_delay", 0) or 0)
        else:
            vec = pmt.cdr(msg)
            if pmt.is_f32vector(vec):
                meta, a = parse_pdu(msg, "f32")
                data = np.zeros(0, np.uint8)
            else:
                meta, data = parse_pdu(msg, "u8", 1 << 24, allow_empty=True)
                a = meta_get(meta, KEY_ANALOG)
                a = np.zeros(0, np.float32) if a is None else np.asarray(a, np.float32).reshape(-1)
            if a.size % 2:
                raise PduError(f"analog part has odd length {a.size}")
            if not np.all(np.isfinite(a)):
                raise PduError("analog part has NaN or Inf values")
            ana, scale = analog_map(a)
            # bytes go behind a protected header (empty semantic header) that names their MCS
            dig = self.path.transmit(b"", data.tobytes(), self.snr_db).symbols if data.size \
                else np.zeros(0, np.complex64)
            is_frame = False
            delay = int(meta_get(meta, "ota_delay", 0) or 0)
        h = Header(dig.size, ana.size, scale, self.seq, 2, is_frame)
        n_sym = HEADER_SYMS + max(1, self.p.payload_syms(dig.size + ana.size))
        if n_sym > self.max_symbols:
            raise OtaError(f"frame of {n_sym} OFDM symbols exceeds max_symbols={self.max_symbols}")
        return frame_data_symbols(dig, ana, h, self.p), h, min(max(delay, 0), MAX_DELAY)

    def _handle(self, msg):
        self._count("n_in")
        try:
            syms, h, delay = self.symbols(msg)
        except (PduError, FrameError, OtaError, ValueError) as e:
            self.drop("bad input", str(e))
            return
        except Exception as e:  # never kill the flowgraph
            self.drop("error", f"{type(e).__name__}: {e}")
            return
        self.seq = (self.seq + 1) % 65536
        self.delays.append(delay)
        meta = meta_set(pmt.make_dict(), KEY_SEQ, h.seq)
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, syms, "c32"))
        self._count("n_out")


class ota_burst(counting, gr.basic_block):
    """One OFDM frame (samples PDU) -> scaled burst with leading delay and trailing gap."""

    def __init__(self, scale: float, gap: int, delays: collections.deque):
        gr.basic_block.__init__(self, name="gensemcom_ota_burst", in_sig=None, out_sig=None)
        self._init_counters()
        self.scale, self.gap, self.delays = float(scale), int(gap), delays
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def _handle(self, msg):
        self._count("n_in")
        try:
            meta, x = parse_pdu(msg, "c32")
        except PduError as e:
            self.drop("bad input", str(e))
            return
        pre = self.delays.popleft() if self.delays else 0
        out = np.zeros(pre + x.size + self.gap, np.complex64)
        out[pre:pre + x.size] = x * self.scale
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, out, "c32"))
        self._count("n_out")


class ota_burst_source(counting, gr.sync_block):
    """Burst PDUs in (``in``); a continuous sample stream out: queued bursts back to
    back, zeros whenever none is queued. For radio sinks, which pace the stream (a
    radio that runs dry underflows; HackRF may replay stale buffers). Never use it
    without a rate-limiting sink: it produces zeros as fast as it is asked."""

    def __init__(self, max_queue: int = 64):
        gr.sync_block.__init__(self, "gensemcom_ota_burst_source", None, [np.complex64])
        self._init_counters()
        self._q: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._cur = np.zeros(0, np.complex64)
        self._pos = 0
        self.max_queue = int(max_queue)
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def _handle(self, msg):
        self._count("n_in")
        try:
            _, x = parse_pdu(msg, "c32")
        except PduError as e:
            self.drop("bad input", str(e))
            return
        with self._lock:
            if len(self._q) >= self.max_queue:
                self.drop("queue full", f"{self.max_queue} bursts waiting: the radio is slower than the frames")
                return
            self._q.append(x)

    def work(self, input_items, output_items):
        out = output_items[0]
        n, i = len(out), 0
        while i < n:
            if self._pos >= self._cur.size:
                with self._lock:
                    nxt = self._q.popleft() if self._q else None
                if nxt is None:
                    out[i:] = 0
                    break
                self._cur, self._pos = nxt, 0
                self._count("n_out")
            take = min(n - i, self._cur.size - self._pos)
            out[i:i + take] = self._cur[self._pos:self._pos + take]
            i += take
            self._pos += take
        return n


class ota_tx(gr.hier_block2):
    """OTA burst transmitter: frame dict or PDU in (message port ``in``), complex
    baseband out (tagged stream, ``packet_len`` per burst, for burst-mode sinks).

    Args:
        modulation (int): QAM order of the digital part (4, 16, 64, 256).
        backend (str): LDPC backend ("default", ... or "none").
        code_rate (str): LDPC code rate.
        amplitude (float): RMS amplitude of the bursts (1.0: unit average power;
            OFDM peaks are ~3-4x RMS, so radios want 0.1-0.3).
        gap (int): zero samples after every burst (lets the receiver flush; >= 160).
        rolloff (int): cyclic-prefix raised-cosine rolloff in samples (0: none).
        max_symbols (int): largest frame in OFDM symbols (header included); larger
            inputs are dropped and counted. Sets the stream buffer sizes.
        continuous (bool): fill the time between bursts with zeros (a continuous
            stream, untagged) for radio sinks that must never run dry; only with a
            sink that paces the stream (a radio, or a throttle).
    """

    def __init__(self, modulation=16, backend="default", code_rate="1/2", amplitude=1.0, gap=400, rolloff=0,
                 max_symbols=2048, continuous=False):
        gr.hier_block2.__init__(self, "gensemcom_ota_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.message_port_register_hier_in("in")
        self.p = p = OtaParams()
        self.delays: collections.deque = collections.deque()
        self.max_symbols = int(max_symbols)
        self.framer = ota_framer(modulation, backend, code_rate, p, self.delays, self.max_symbols)
        self.to_stream = pdu.pdu_to_tagged_stream(gr.types.complex_t, LENGTH_TAG)
        s1, s2 = p.sync_words()
        self.allocator = digital.ofdm_carrier_allocator_cvc(
            p.fft_len, (list(p.occupied),), (list(p.pilots),), [list(x) for x in _pilot_table(p)],
            [s1.tolist(), s2.tolist()], LENGTH_TAG, True)
        self.ifft = fft.fft_vcc(p.fft_len, False, (), True)
        self.cp = digital.ofdm_cyclic_prefixer(p.fft_len, p.sym_len, int(rolloff), LENGTH_TAG)
        self.to_pdu = pdu.tagged_stream_to_pdu(gr.types.complex_t, LENGTH_TAG)
        self.burst = ota_burst(p.gain * float(amplitude), max(int(gap), 0), self.delays)
        self.continuous = bool(continuous)
        self.out_stream = (ota_burst_source() if self.continuous
                           else pdu.pdu_to_tagged_stream(gr.types.complex_t, LENGTH_TAG))
        # tagged-stream blocks need a whole frame in their buffers
        n = self.max_symbols
        self.to_stream.set_min_output_buffer(n * p.n_data)
        self.allocator.set_min_output_buffer(n + N_SYNC)
        self.ifft.set_min_output_buffer(n + N_SYNC)
        self.cp.set_min_output_buffer((n + N_SYNC) * p.sym_len + int(rolloff))
        if not self.continuous:
            self.out_stream.set_min_output_buffer((n + N_SYNC) * p.sym_len + int(rolloff) + max(int(gap), 0) + MAX_DELAY)
        self.msg_connect(self, "in", self.framer, "in")
        self.msg_connect(self.framer, "out", self.to_stream, "pdus")
        self.connect(self.to_stream, self.allocator, self.ifft, self.cp, self.to_pdu)
        self.msg_connect(self.to_pdu, "pdus", self.burst, "in")
        self.msg_connect(self.burst, "out", self.out_stream, "in" if self.continuous else "pdus")
        self.connect(self.out_stream, self)

    def post(self, msg) -> None:
        """Queue one input message as if it had arrived on ``in`` (for Python callers)."""
        self.framer.to_basic_block()._post(pmt.intern("in"), msg)

    def counters(self):
        return {"framer": self.framer.counters(), "burst": self.burst.counters()}
