"""GNU Radio block ``ota_rx``: the over-the-air burst OFDM receiver (see ``ota_tx`` and docs/ota.md).

Complex stream in; message ports ``out`` (what the tx took, frame dict or PDU, with
``crc_ok`` and ``snr_db``) and ``stats`` (a dict of counters after every detected frame).
"""
from __future__ import annotations

import sys
from typing import Any, Dict

import numpy as np
import pmt
from gnuradio import analog, blocks, digital, gr

from ..frame import frame_to_pmt, from_air
from ..ota.phy import FRAME_LEN_TAG, HEADER_SYMS, N_SYNC, ChannelEstimate, Header, OfdmReceiverCore, OtaError, OtaParams
from ..phy.analog import analog_demap
from ..phy.digital import DigitalPath
from .ota_tx import (_K_CHAN, _K_DELAY, _K_DOF, _K_FRAME_LEN, _K_HDR, _K_N0, KEY_ANALOG, KEY_HEADER_OK, KEY_SEQ,
                     OtaStats)
from .pdu_utils import (KEY_CRC_OK, KEY_FAILED_BLOCKS, KEY_N_BLOCKS, KEY_SNR_DB, counting, make_pdu, meta_get, meta_set,
                        parse_pdu)

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

    def __init__(self, link: DigitalPath, stats: OtaStats, analog_eq: str = "mmse", name: str = "ota_rx"):
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
        hdr, hok, mcs = b"", True, None
        if h.n_digital:
            res = self.link.receive(yd, np.maximum(nv[: h.n_digital], 1e-9))
            ok, payload, failed, nblk = bool(res.crc_ok), res.payload or b"", list(res.failed_blocks), res.n_blocks
            hdr, hok, mcs = res.header, bool(res.header_ok), res.mcs
        else:
            ok, payload, failed, nblk = True, b"", [], 0
        analog = analog_demap(ya, h.analog_scale)
        info = {KEY_CRC_OK: ok, KEY_HEADER_OK: hok, KEY_SNR_DB: snr_db, KEY_SEQ: h.seq,
                "noise_var_mean": float(np.mean(nv)) if nv.size else 0.0}
        if mcs is not None:
            info["mcs"] = mcs.name
        if h.is_frame:  # the analog symbols are the air form's (unit power per segment)
            frame = from_air(hdr if hok else None, payload if ok else None, ya * h.analog_scale, ok, "", info,
                             on_bad_header="lost")
            ok = info[KEY_CRC_OK] = frame.meta[KEY_CRC_OK] = bool(frame.crc_ok)
            frame.meta[KEY_HEADER_OK] = bool(frame.header_ok)
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
        link = DigitalPath(modulation, backend, code_rate, llr_method=llr_method, max_iter=int(max_iter) or None)
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
        # the digital part starts with the protected header block, QPSK whatever the payload's MCS
        self.parser = ota_header_parser(self.core, self.stats, 2, int(max_symbols))
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
