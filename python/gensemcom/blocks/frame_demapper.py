"""GNU Radio block: frame demapper (received digital + analog PDUs -> SemanticFrame)."""
from __future__ import annotations

import collections

import numpy as np
import pmt
from gnuradio import gr

from ..frame import FrameError, frame_to_pmt, from_air
from .frame_mapper import KEY_FRAME_SEQ
from .pdu_utils import (KEY_CRC_OK, KEY_HEADER_BYTES, KEY_HEADER_OK, PduError, counting, frame_meta, meta_get,
                        parse_pdu)


class frame_demapper(counting, gr.basic_block):
    """Received digital PDU (port ``digital``) and analog PDU (port ``analog``) in,
    SemanticFrame out.

    The two PDUs of a frame are paired by ``frame_seq`` and rebuilt by
    :func:`gensemcom.frame.from_air`. The digital PDU's first ``header_bytes`` bytes
    are the semantic header; its ``header_ok`` and ``crc_ok`` decide: with the header,
    the frame has the system, each analog segment's length and scale and the header's
    values, and the payload when ``crc_ok`` (otherwise ``crc_ok`` False, for the
    system's policy); without it, the frame is forwarded with ``header_ok`` and
    ``crc_ok`` False, an empty header and un-scaled analog symbols (systems that can
    fall back on the analog part may), never silently as good. Halves whose partner never comes are evicted after
    ``max_pending`` newer frames and counted.

    Args:
        max_pending (int): unpaired halves kept before the oldest is dropped.
    """

    def __init__(self, max_pending=8):
        gr.basic_block.__init__(self, "gensemcom_frame_demapper", None, None)
        self._init_counters()
        self.max_pending = int(max_pending)
        self._pending = collections.OrderedDict()
        self.n_crc_fail = self.n_header_lost = 0
        self.message_port_register_in(pmt.intern("digital"))
        self.message_port_register_in(pmt.intern("analog"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("digital"), self._on_digital)
        self.set_msg_handler(pmt.intern("analog"), self._on_analog)

    def counters(self):
        c = counting.counters(self)
        c["crc_failed"] = self.n_crc_fail
        c["header_lost"] = self.n_header_lost
        c["pending"] = len(self._pending)
        return c

    def _on_digital(self, msg):  # GNU Radio needs bound methods as handlers
        self._half(msg, "digital")

    def _on_analog(self, msg):
        self._half(msg, "analog")

    def _half(self, msg, which):
        self._count("n_in")
        try:
            # an empty digital PDU is a frame whose header (and so everything digital) was lost
            meta, data = parse_pdu(msg, "u8" if which == "digital" else "c32", allow_empty=True)
            seq = meta_get(meta, KEY_FRAME_SEQ)
            if not isinstance(seq, int):
                raise PduError(f"{which} PDU has no integer '{KEY_FRAME_SEQ}'")
        except PduError as e:
            self.drop(f"bad {which} PDU", str(e))
            return
        entry = self._pending.setdefault(seq, {})
        if which in entry:
            self.drop(f"duplicate {which} PDU", f"frame_seq {seq}")
            return
        entry[which] = (meta, data)
        if which == "digital" and meta_get(meta, "analog_symbols", 1) == 0:
            entry["analog"] = (meta, np.zeros(0, np.complex64))  # a digital-only frame
        if len(entry) == 2:
            del self._pending[seq]
            self._emit(entry)
        while len(self._pending) > self.max_pending:
            old, _ = self._pending.popitem(last=False)
            self.drop("unpaired half", f"frame_seq {old} lost its partner")

    def _emit(self, entry):
        dmeta, dbytes = entry["digital"]
        _, symbols = entry["analog"]
        crc_ok = meta_get(dmeta, KEY_CRC_OK, True) is True
        header_ok = meta_get(dmeta, KEY_HEADER_OK, True) is True
        nh = meta_get(dmeta, KEY_HEADER_BYTES, 0)
        raw = dbytes.tobytes()
        if not isinstance(nh, int) or not 0 <= nh <= len(raw):
            self.drop("bad digital PDU", f"'{KEY_HEADER_BYTES}' {nh!r:.40} for {len(raw)} bytes")
            return
        fmeta = {k: v for k, v in frame_meta(dmeta).items()
                 if k not in (KEY_CRC_OK, KEY_HEADER_OK, KEY_HEADER_BYTES, "failed_blocks", "n_blocks",
                              KEY_FRAME_SEQ, "system")}
        system = meta_get(dmeta, "system", "")
        fmeta["crc_ok"], fmeta["header_ok"] = crc_ok, header_ok
        try:
            frame = from_air(raw[:nh] if header_ok else None, raw[nh:] if crc_ok else None, symbols, crc_ok,
                             str(system), fmeta)
        except FrameError as e:
            self.drop("bad frame header", str(e))
            return
        if not header_ok:
            self.n_header_lost += 1
            self.logger.warn("protected header lost: frame forwarded with header_ok=False, analog symbols un-scaled")
        elif not crc_ok:
            self.n_crc_fail += 1
            self.logger.warn("payload failed CRC: frame forwarded with its header and crc_ok=False")
        self.message_port_pub(pmt.intern("out"), frame_to_pmt(frame))
        self._count("n_out")
