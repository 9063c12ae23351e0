"""GNU Radio block: analog mapper (real vector -> unit-power complex symbols)."""

from ..phy.analog import analog_map
from .pdu_utils import KEY_ANALOG_SCALE, PduError, meta_set, pdu_block


class analog_mapper(pdu_block):
    """Float vector PDU in, unit-power complex symbols PDU out (sent uncoded).

    Two reals make one complex symbol; the symbols are scaled to average power 1 and
    the scale goes into the output metadata as ``analog_scale`` (a semantic frame
    carries it in its digital header). Odd-length vectors and NaN/Inf values are
    dropped and counted.

    Args:
        max_items (int): largest accepted vector length.
    """

    in_kind, out_kind = "f32", "c32"

    def __init__(self, max_items=1 << 22):
        pdu_block.__init__(self, "gensemcom_analog_mapper", max_items=max_items)

    def process(self, meta, x):
        if x.size % 2:
            raise PduError(f"odd-length analog vector ({x.size} values): two reals make one symbol")
        symbols, scale = analog_map(x)
        return meta_set(meta, KEY_ANALOG_SCALE, float(scale)), symbols
