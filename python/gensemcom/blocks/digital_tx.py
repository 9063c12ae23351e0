"""GNU Radio block: digital transmitter (bytes -> CRC-32 / LDPC / M-QAM symbols)."""

from ..phy.digital import DigitalLink
from .pdu_utils import KEY_N_BLOCKS, PduError, meta_set, pdu_block


class digital_tx(pdu_block):
    """Bytes PDU in, QAM symbols PDU out.

    The payload is framed into CRC-32 protected code blocks, LDPC encoded and Gray
    mapped onto M-QAM with average symbol power 1. A thin adapter over
    :class:`gensemcom.phy.digital.DigitalLink`.

    Args:
        modulation (int): QAM order, 4, 16, 64 or 256.
        backend (str): LDPC backend ("default", "numba", "numpy", "pyldpc", "grfec") or
            "none" (uncoded).
        code_rate (str): LDPC code rate, e.g. "1/2".
        max_blocks (int): payloads needing more code blocks are dropped.
    """

    in_kind, out_kind = "u8", "c32"

    def __init__(self, modulation=16, backend="default", code_rate="1/2", max_blocks=4096):
        self.link = DigitalLink(modulation, backend, code_rate, max_blocks=max_blocks)
        pdu_block.__init__(self, "gensemcom_digital_tx", max_items=self.link.max_payload)

    def process(self, meta, data):
        if data.size > self.link.max_payload:
            raise PduError(f"payload of {data.size} bytes exceeds {self.link.max_payload} bytes")
        symbols = self.link.transmit(data.tobytes())
        meta = meta_set(meta, KEY_N_BLOCKS, self.link.framer.n_blocks(data.size))
        return meta, symbols
