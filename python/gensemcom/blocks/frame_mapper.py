"""GNU Radio block: frame mapper (SemanticFrame -> digital PDU + analog symbols PDU)."""
from __future__ import annotations

import numpy as np
import pmt
from gnuradio import gr

from ..frame import FrameError, frame_from_pmt, to_air
from .pdu_utils import KEY_HEADER_BYTES, counting, make_pdu, meta_set

KEY_FRAME_SEQ = "frame_seq"


class frame_mapper(counting, gr.basic_block):
    """SemanticFrame in; its digital PDU (port ``digital``) and analog PDU (port ``analog``) out.

    The frame's air form (:func:`gensemcom.frame.to_air`): the digital PDU (u8)
    carries the semantic header (its length in ``header_bytes``: ``digital_tx`` sends
    it in the protected header block) and then the payload; the analog PDU (c32) the
    analog segments as complex symbols (two reals each), each segment at unit average
    power, the scales written into the header. Both carry ``frame_seq`` and
    the frame's provenance in their metadata, so ``frame_demapper`` can pair them.
    A frame without an analog part sends no analog PDU (``analog_symbols`` = 0).
    """

    def __init__(self):
        gr.basic_block.__init__(self, "gensemcom_frame_mapper", None, None)
        self._init_counters()
        self._seq = 0
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("digital"))
        self.message_port_register_out(pmt.intern("analog"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def _handle(self, msg):
        self._count("n_in")
        try:
            frame = frame_from_pmt(msg)
            air = to_air(frame)
        except FrameError as e:
            self.drop("bad frame", str(e))
            return
        digital, symbols = air.header + air.digital, air.analog
        meta = pmt.make_dict()
        for k, v in frame.meta.items():
            meta = meta_set(meta, k, v)
        meta = meta_set(meta, KEY_FRAME_SEQ, self._seq)
        meta = meta_set(meta, "system", frame.system)
        meta = meta_set(meta, "digital_bytes", len(digital))
        meta = meta_set(meta, KEY_HEADER_BYTES, len(air.header))
        meta = meta_set(meta, "analog_symbols", int(symbols.size))
        self._seq += 1
        self.message_port_pub(pmt.intern("digital"), make_pdu(meta, np.frombuffer(digital, np.uint8), "u8"))
        if symbols.size:  # a digital-only frame sends no analog PDU (analog_symbols = 0 tells the demapper)
            self.message_port_pub(pmt.intern("analog"), make_pdu(meta, symbols, "c32"))
        self._count("n_out")
