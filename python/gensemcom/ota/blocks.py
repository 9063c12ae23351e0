"""GNU Radio blocks of the over-the-air burst PHY: ``ota_tx`` and ``ota_rx``.

``ota_tx`` (message port ``in`` -> complex stream) takes either

* a semantic frame as a PMT dict (:func:`gensemcom.frame.frame_to_pmt`): its digital
  part is packed with :meth:`SemanticFrame.pack_digital` and sent over CRC-32 + LDPC +
  M-QAM (:class:`DigitalLink`), its analog part is power-normalised
  (:func:`analog_map`) and sent as raw complex symbols -- exactly as
  :class:`gensemcom.systems.link.FrameLink` does; or
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
import sys
import threading
from typing import Any, Dict, Optional

import numpy as np
import pmt
from gnuradio import analog, blocks, digital, fft, gr, pdu

from ..frame import FrameError, SemanticFrame, frame_from_pmt, frame_to_pmt
from ..pdu_utils import (KEY_CRC_OK, KEY_FAILED_BLOCKS, KEY_N_BLOCKS, KEY_SNR_DB, PduError, counting, make_pdu,
                         meta_get, meta_set, parse_pdu)
from ..phy.analog import analog_demap, analog_map
from ..phy.digital import DigitalLink
from .phy import (FRAME_LEN_TAG, HEADER_SYMS, LENGTH_TAG, N_SYNC, Header, OfdmReceiverCore, OtaError, OtaParams,
                  ChannelEstimate, frame_data_symbols)

KEY_ANALOG = "analog"
KEY_SEQ = "seq"
KEY_HEADER_OK = "header_ok"
_K_CHAN, _K_N0, _K_DOF, _K_HDR, _K_DELAY = (pmt.intern(k) for k in ("ota_chan", "ota_n0", "ota_dof", "ota_hdr",
                                                                    "ota_delay"))
_K_FRAME_LEN = pmt.intern(FRAME_LEN_TAG)
MAX_DELAY = 8192  # largest per-frame leading delay (metadata "ota_delay", samples)


def _modulation_bits(modulation: int) -> int:
    b = int(np.log2(int(modulation)))
    if 2 ** b != int(modulation):
        raise ValueError(f"modulation must be a power of two, got {modulation}")
    return b


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


# ====================================================================== transmitter
class ota_framer(counting, gr.basic_block):
    """Frame dict or PDU in (``in``) -> data-carrier symbols PDU out (``out``)."""

    def __init__(self, modulation=16, backend="default", code_rate="1/2", params: Optional[OtaParams] = None,
                 delays: Optional[collections.deque] = None, max_symbols: int = 2048):
        gr.basic_block.__init__(self, name="gensemcom_ota_framer", in_sig=None, out_sig=None)
        self._init_counters()
        self.p = params or OtaParams()
        self.link = DigitalLink(int(modulation), backend, code_rate)
        self.bits = _modulation_bits(modulation)
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
            ana, scale = analog_map(frame.analog)
            dig = self.link.transmit(frame.pack_digital(scale))
            is_frame = True
            delay = int(frame.meta.get("ota_delay", 0) or 0)
        else:
            vec = pmt.cdr(msg)
            if pmt.is_f32vector(vec):
                meta, a = parse_pdu(msg, "f32")
                data = np.zeros(0, np.uint8)
            else:
                meta, data = parse_pdu(msg, "u8", self.link.max_payload, allow_empty=True)
                a = meta_get(meta, KEY_ANALOG)
                a = np.zeros(0, np.float32) if a is None else np.asarray(a, np.float32).reshape(-1)
            if a.size % 2:
                raise PduError(f"analog part has odd length {a.size}")
            if not np.all(np.isfinite(a)):
                raise PduError("analog part has NaN or Inf values")
            ana, scale = analog_map(a)
            dig = self.link.transmit(data.tobytes()) if data.size else np.zeros(0, np.complex64)
            is_frame = False
            delay = int(meta_get(meta, "ota_delay", 0) or 0)
        h = Header(dig.size, ana.size, scale, self.seq, self.bits, is_frame)
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


def _pilot_table(p: OtaParams):
    from .phy import PILOT_SYMBOLS
    return [tuple(float(v) for v in row[: len(p.pilots)]) for row in PILOT_SYMBOLS]


# ====================================================================== receiver
HEADER_PAD = 96  # samples the demux adds before and after the header: the fine-timing search range


class ota_header_parser(counting, gr.sync_block):
    """Header samples in (sync symbols and header, with ``HEADER_PAD`` samples either
    side, from ``header_payload_demux``); the demux's ``header_data`` answer out.

    Fine timing: the long training symbol is found by cross-correlation within the
    padding, and the FFT windows are placed ``cp_len // 4`` samples into the cyclic
    prefix (room for pre-cursor paths). Then the channel is estimated from both sync
    symbols and the header decoded; the answer is a dict (payload length in samples,
    ``payload_offset`` for the demux, the channel estimate, which the demux tags onto
    the payload) or False."""

    def __init__(self, core: OfdmReceiverCore, stats: OtaStats, bits: int, max_symbols: int = 2048):
        p = core.p
        gr.sync_block.__init__(self, "gensemcom_ota_header_parser", [np.complex64], None)
        self._init_counters()
        self.core, self.stats, self.bits = core, stats, int(bits)
        self.max_symbols = int(max_symbols)
        self.n_hdr = (N_SYNC + HEADER_SYMS) * p.sym_len + 2 * HEADER_PAD
        s2 = p.sync_words()[1]
        self.lts = np.fft.ifft(np.fft.ifftshift(s2)).astype(np.complex64)
        self.lts_nominal = HEADER_PAD + p.sym_len + p.cp_len
        self.backoff = p.cp_len // 4
        self._buf = np.zeros(self.n_hdr, np.complex64)
        self._have = 0
        self.message_port_register_out(pmt.intern("header_data"))
        self.message_port_register_out(pmt.intern("stats"))

    def _symbols(self, w: np.ndarray, start: int, n: int) -> np.ndarray:
        """FFT outputs (shifted) of n symbols whose first FFT window starts at ``start``."""
        p = self.core.p
        idx = start + np.arange(n)[:, None] * p.sym_len + np.arange(p.fft_len)[None, :]
        return np.fft.fftshift(np.fft.fft(w[idx], axis=1), axes=1)

    def _parse(self, w: np.ndarray):
        p = self.core.p
        self.stats.add("frames_detected")
        # fine timing on the long training symbol
        corr = np.abs(np.correlate(w, self.lts, mode="valid"))
        lo, hi = self.lts_nominal - HEADER_PAD, self.lts_nominal + HEADER_PAD
        t2 = lo + int(np.argmax(corr[lo:hi + 1]))
        offset = int(np.clip(t2 - self.backoff - self.lts_nominal, -HEADER_PAD, HEADER_PAD))
        Y = self._symbols(w, HEADER_PAD + p.cp_len + offset, N_SYNC + HEADER_SYMS)
        ce = self.core.estimate(Y[0], Y[1])
        try:
            h, _ = self.core.decode_header(Y[N_SYNC:], ce)
            if h.bits_per_symbol != self.bits and h.n_digital:
                raise OtaError(f"header says {2 ** h.bits_per_symbol}-QAM, receiver is set to {2 ** self.bits}-QAM")
            if HEADER_SYMS + self.core.p.payload_syms(h.n_digital + h.n_analog) > self.max_symbols:
                raise OtaError("header announces a frame larger than max_symbols")
        except OtaError as e:
            self.stats.add("header_crc_failed")
            self.logger.debug(f"header dropped: {e}")
            self.message_port_pub(pmt.intern("header_data"), pmt.PMT_F)
            self.message_port_pub(pmt.intern("stats"), self.stats.as_pmt())
            return
        self.stats.add("header_ok")
        n = max(1, self.core.p.payload_syms(h.n_digital + h.n_analog))
        d = pmt.make_dict()
        d = pmt.dict_add(d, _K_FRAME_LEN, pmt.from_long(n * p.sym_len))
        d = pmt.dict_add(d, pmt.intern("payload_offset"), pmt.from_long(offset))
        d = pmt.dict_add(d, _K_CHAN, pmt.init_c32vector(ce.h.size, ce.h))
        d = pmt.dict_add(d, _K_N0, pmt.from_double(ce.n0))
        d = pmt.dict_add(d, _K_DOF, pmt.from_long(ce.dof))
        d = pmt.dict_add(d, _K_DELAY, pmt.from_double(ce.delay))
        raw = h.pack()
        d = pmt.dict_add(d, _K_HDR, pmt.init_u8vector(len(raw), list(raw)))
        self.message_port_pub(pmt.intern("header_data"), d)

    def work(self, input_items, output_items):
        x = input_items[0]
        i = 0
        while i < len(x):
            take = min(self.n_hdr - self._have, len(x) - i)
            self._buf[self._have:self._have + take] = x[i:i + take]
            self._have += take
            i += take
            if self._have == self.n_hdr:
                self._have = 0
                try:
                    self._parse(self._buf.copy())
                except Exception as e:  # the demux waits for an answer: always give one
                    self.logger.error(f"header parser error {type(e).__name__}: {e}")
                    self.message_port_pub(pmt.intern("header_data"), pmt.PMT_F)
        return len(x)


class ota_payload(counting, gr.sync_block):
    """Payload samples in (tagged by the demux with the header's dict); equalised
    symbols PDU (digital then analog) out, with per-symbol ``noise_var`` and the header."""

    def __init__(self, core: OfdmReceiverCore, stats: OtaStats):
        gr.sync_block.__init__(self, "gensemcom_ota_payload", [np.complex64], None)
        self._init_counters()
        self.core, self.stats = core, stats
        self._need = 0
        self._buf = []
        self._have = 0
        self._info: Dict[str, Any] = {}
        self.message_port_register_out(pmt.intern("out"))

    def _start(self, tags):
        info = {pmt.symbol_to_string(t.key): t.value for t in tags}
        self._count("n_in")
        try:
            n = pmt.to_long(info[FRAME_LEN_TAG])
            h = Header.unpack(bytes(pmt.u8vector_elements(info["ota_hdr"])))
            ce = ChannelEstimate(np.asarray(pmt.c32vector_elements(info["ota_chan"]), np.complex64),
                                 pmt.to_double(info["ota_n0"]), pmt.to_double(info["ota_delay"]),
                                 pmt.to_long(info["ota_dof"]))
        except (KeyError, OtaError) as e:
            self.drop("payload without header tags", str(e))
            return
        self._need, self._buf, self._have, self._info = n, [], 0, {"header": h, "ce": ce}

    def _finish(self):
        p = self.core.p
        h, ce = self._info["header"], self._info["ce"]
        x = np.concatenate(self._buf)[: self._need]
        self._need, self._buf, self._have = 0, [], 0
        sym = x.reshape(-1, p.sym_len)[:, p.cp_len:]
        Y = np.fft.fftshift(np.fft.fft(sym, axis=1), axes=1)
        eq = self.core.equalize(Y, ce, HEADER_SYMS, h.n_digital + h.n_analog)
        self.stats.snr(eq.snr_db)
        meta = pmt.make_dict()
        meta = meta_set(meta, "noise_var", eq.noise_var)
        meta = meta_set(meta, "ota_hdr", np.frombuffer(h.pack(), np.uint8).astype(np.int32))
        meta = meta_set(meta, KEY_SNR_DB, round(float(eq.snr_db), 3))
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, eq.symbols, "c32"))
        self._count("n_out")

    def work(self, input_items, output_items):
        x = input_items[0]
        n = len(x)
        base = self.nitems_read(0)
        tags = self.get_tags_in_window(0, 0, n)
        starts = sorted({t.offset - base for t in tags if pmt.eq(t.key, _K_FRAME_LEN)})
        i = 0
        while i < n:
            if self._need:
                take = min(self._need - self._have, n - i)
                nxt = next((s for s in starts if i < s < i + take), None)
                if nxt is not None:  # a new frame before this one finished: drop it
                    self.drop("payload cut short")
                    self._need, self._buf, self._have = 0, [], 0
                    i = nxt
                    continue
                self._buf.append(np.array(x[i:i + take]))
                self._have += take
                i += take
                if self._have >= self._need:
                    try:
                        self._finish()
                    except Exception as e:
                        self._need, self._buf, self._have = 0, [], 0
                        self.drop("error", f"{type(e).__name__}: {e}")
            else:
                s = next((s for s in starts if s >= i), None)
                if s is None:
                    break
                self._start([t for t in tags if t.offset - base == s])
                i = s if self._need else s + 1
        return n


class ota_decoder(counting, gr.basic_block):
    """Equalised symbols PDU in; the received frame out (``out``) and counters (``stats``)."""

    def __init__(self, link: DigitalLink, stats: OtaStats, analog_eq: str = "mmse", name: str = "ota_rx"):
        gr.basic_block.__init__(self, name="gensemcom_ota_decoder", in_sig=None, out_sig=None)
        self._init_counters()
        if analog_eq not in ("mmse", "zf"):
            raise ValueError(f"analog_eq must be 'mmse' or 'zf', got {analog_eq!r}")
        self.link, self.stats, self.analog_eq, self.label = link, stats, analog_eq, name
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.message_port_register_out(pmt.intern("stats"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def decode(self, meta, y):
        """(output message, crc_ok) for one equalised frame."""
        h = Header.unpack(bytes(np.asarray(meta_get(meta, "ota_hdr"), np.uint8)))
        nv = np.asarray(meta_get(meta, "noise_var"), np.float64)
        snr_db = float(meta_get(meta, KEY_SNR_DB, float("nan")))
        yd, ya = y[: h.n_digital], y[h.n_digital: h.n_digital + h.n_analog]
        nva = nv[h.n_digital: h.n_digital + h.n_analog]
        if self.analog_eq == "mmse":
            ya = ya / (1.0 + nva)  # MMSE for unit-power symbols: x_zf |h|^2 / (|h|^2 + N0)
        if h.n_digital:
            res = self.link.receive(yd, np.maximum(nv[: h.n_digital], 1e-9))
            ok, payload, failed, nblk = bool(res.crc_ok), res.payload or b"", list(res.failed_blocks), res.n_blocks
        else:
            ok, payload, failed, nblk = True, b"", [], 0
        analog = analog_demap(ya, h.analog_scale)
        info = {KEY_CRC_OK: ok, KEY_SNR_DB: snr_db, KEY_SEQ: h.seq, "noise_var_mean": float(np.mean(nv)) if nv.size else 0.0}
        if h.is_frame:
            frame = None
            if ok:
                try:
                    u = SemanticFrame.unpack_digital(payload)
                    frame = SemanticFrame(u["system"], u["digital"], analog[: 2 * h.n_analog], u["header"], info, True)
                except FrameError:
                    ok = info[KEY_CRC_OK] = False
            if frame is None:
                frame = SemanticFrame("unknown", b"", analog, {}, info, False)
            return frame_to_pmt(frame), ok
        m = pmt.make_dict()
        for k, v in info.items():
            m = meta_set(m, k, v)
        m = meta_set(m, KEY_ANALOG, analog)
        m = meta_set(m, KEY_FAILED_BLOCKS, failed)
        m = meta_set(m, KEY_N_BLOCKS, nblk)
        return make_pdu(m, np.frombuffer(payload if ok else b"", np.uint8), "u8"), ok

    def _handle(self, msg):
        self._count("n_in")
        try:
            meta, y = parse_pdu(msg, "c32", allow_empty=True)
            out, ok = self.decode(meta, y)
        except Exception as e:
            self.stats.add("dropped")
            self.drop("error", f"{type(e).__name__}: {e}")
            return
        self.stats.add("payload_ok" if ok else "payload_crc_failed")
        self.stats.add("frames_out")
        self.message_port_pub(pmt.intern("out"), out)
        self._count("n_out")
        self.message_port_pub(pmt.intern("stats"), self.stats.as_pmt())

    def stop(self):
        print(f"gensemcom {self.label}: {self.stats.summary()}", file=sys.stderr, flush=True)
        return True


class ota_rx(gr.hier_block2):
    """OTA burst receiver: complex baseband in; received frames (``out``) and counters
    (``stats``) out. See the module docstring.

    Args:
        modulation (int): QAM order of the digital part, as at the transmitter.
        backend (str): LDPC backend, as at the transmitter.
        code_rate (str): LDPC code rate, as at the transmitter.
        threshold (float): Schmidl & Cox detection threshold (0-1); 0.3 detects
            frames from about 6 dB up, 0.2 from about 3 dB (more false alarms, which
            cost a header decode each); GNU Radio's 0.9 misses frames below ~15 dB.
            :func:`gensemcom.ota.phy.sc_threshold` picks one for an expected SNR.
        analog_eq (str): "mmse" or "zf" scaling of the analog symbols.
        chan_taps (int): impulse-response taps of the channel fit (<= 16).
        track_window (int): OFDM symbols each side for smoothing pilot phase tracking.
        llr_method (str): "exact" or "maxlog" LLRs.
        max_iter (int): LDPC iterations (0: the backend's default).
        max_symbols (int): largest frame in OFDM symbols, as at the transmitter;
            headers announcing more are counted as failed.
    """

    def __init__(self, modulation=16, backend="default", code_rate="1/2", threshold=0.3, analog_eq="mmse",
                 chan_taps=8, track_window=0, llr_method="exact", max_iter=0, max_symbols=2048):
        gr.hier_block2.__init__(self, "gensemcom_ota_rx", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        self.message_port_register_hier_out("out")
        self.message_port_register_hier_out("stats")
        self.p = p = OtaParams()
        self.stats = OtaStats()
        self.core = OfdmReceiverCore(p, int(chan_taps), int(track_window))
        link = DigitalLink(int(modulation), backend, code_rate, llr_method=llr_method, max_iter=int(max_iter) or None)
        self.sync = digital.ofdm_sync_sc_cfb(p.fft_len, p.cp_len, False, float(threshold))
        self.delay = blocks.delay(gr.sizeof_gr_complex, p.sym_len)
        self.osc = analog.frequency_modulator_fc(-2.0 / p.fft_len)
        self.mixer = blocks.multiply_cc()
        # samples mode with padding: the header parser does the fine timing and moves
        # the payload by up to HEADER_PAD samples (payload_offset)
        self.hpd = digital.header_payload_demux((N_SYNC + HEADER_SYMS) * p.sym_len, 1, 0, FRAME_LEN_TAG, "", False,
                                                gr.sizeof_gr_complex, "", 1.0, [], HEADER_PAD)
        # the demux needs a whole frame of samples in its input buffers
        n_samp = (int(max_symbols) + N_SYNC + 2) * p.sym_len + 2 * HEADER_PAD
        self.mixer.set_min_output_buffer(n_samp)
        self.sync.set_min_output_buffer(n_samp)
        self.hpd.set_min_output_buffer(n_samp)
        self.parser = ota_header_parser(self.core, self.stats, _modulation_bits(modulation), int(max_symbols))
        self.payload = ota_payload(self.core, self.stats)
        self.decoder = ota_decoder(link, self.stats, analog_eq)
        self.connect(self, self.sync)
        self.connect(self, self.delay, (self.mixer, 0), (self.hpd, 0))
        self.connect((self.sync, 0), self.osc, (self.mixer, 1))
        self.connect((self.sync, 1), (self.hpd, 1))
        self.connect((self.hpd, 0), self.parser)
        self.connect((self.hpd, 1), self.payload)
        self.msg_connect(self.parser, "header_data", self.hpd, "header_data")
        self.msg_connect(self.payload, "out", self.decoder, "in")
        self.msg_connect(self.decoder, "out", self, "out")
        self.msg_connect(self.decoder, "stats", self, "stats")
        self.msg_connect(self.parser, "stats", self, "stats")

    def counters(self) -> Dict[str, Any]:
        """Receiver counters: frames detected, header/payload CRC results, SNR."""
        return self.stats.as_dict()
