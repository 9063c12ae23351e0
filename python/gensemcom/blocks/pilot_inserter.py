"""GNU Radio block: pilot insertion (known pilots at the start of every block of symbols)."""

from ..phy.channels import PilotPattern
from .pdu_utils import pdu_block


class pilot_inserter(pdu_block):
    """Complex symbols PDU in, the same symbols with block pilots out.

    Each block of ``block_len`` output symbols starts with ``n_pilots`` known
    pilots. Match ``block_len`` to the channel's coherence length, and use the same
    values in the equalizer.

    Args:
        block_len (int): symbols per block, pilots included.
        n_pilots (int): pilots per block.
    """

    in_kind, out_kind = "c32", "c32"

    def __init__(self, block_len=64, n_pilots=4):
        self.pattern = PilotPattern(int(block_len), int(n_pilots))
        pdu_block.__init__(self, "gensemcom_pilot_inserter")

    def process(self, meta, x):
        return meta, self.pattern.insert(x)
