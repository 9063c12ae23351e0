"""GNU Radio block: burst transmitter (symbols PDU -> tagged complex stream)."""
from gnuradio import gr, pdu

from .burst_framer import LENGTH_TAG, burst_framer


class burst_tx(gr.hier_block2):
    """Symbols PDU in (port ``in``), tagged complex burst stream out.

    Args:
        guard (int): zero samples before and after each burst (>= 8).
        preamble_len (int): Zadoff-Chu preamble length (odd).
        length_tag (str): tagged-stream length tag name.
    """

    def __init__(self, guard=32, preamble_len=63, length_tag=LENGTH_TAG):
        gr.hier_block2.__init__(self, "gensemcom_burst_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.message_port_register_hier_in("in")
        self.framer = burst_framer(guard, preamble_len)
        self.to_stream = pdu.pdu_to_tagged_stream(gr.types.complex_t, length_tag)
        self.msg_connect(self, "in", self.framer, "in")
        self.msg_connect(self.framer, "out", self.to_stream, "pdus")
        self.connect(self.to_stream, self)
