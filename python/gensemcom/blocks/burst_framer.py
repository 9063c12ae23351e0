"""GNU Radio block: burst framer (symbols PDU -> preamble + symbols burst PDU)."""

from ..phy.burst import BurstFormat
from .pdu_utils import pdu_block

LENGTH_TAG = "packet_len"


class burst_framer(pdu_block):
    """Symbols PDU in, burst PDU (guard, preamble, payload, guard) out.

    Args:
        guard (int): zero samples before and after each burst.
        preamble_len (int): Zadoff-Chu preamble length (odd).
    """

    in_kind, out_kind = "c32", "c32"

    def __init__(self, guard=32, preamble_len=63):
        self.fmt = BurstFormat(int(guard), int(preamble_len))
        pdu_block.__init__(self, "gensemcom_burst_framer")

    def process(self, meta, x):
        return meta, self.fmt.build(x)
