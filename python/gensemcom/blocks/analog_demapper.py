"""GNU Radio block: analog demapper (complex symbols -> real vector, de-normalised)."""
import numpy as np

from ..phy.analog import analog_demap
from .pdu_utils import KEY_ANALOG_SCALE, PduError, meta_get, pdu_block


class analog_demapper(pdu_block):
    """Complex symbols PDU in, float vector PDU out (two reals per symbol).

    The symbols are multiplied by the scale the mapper used: the ``scale``
    parameter when positive, else the ``analog_scale`` metadata key. A PDU with
    neither is dropped and counted. Equalise faded symbols first (equalizer block,
    MMSE for analog data).

    Args:
        scale (float): de-normalisation scale; <= 0 means read ``analog_scale``.
        max_items (int): largest accepted vector length.
    """

    in_kind, out_kind = "c32", "f32"

    def __init__(self, scale=-1.0, max_items=1 << 22):
        self.scale = float(scale)
        pdu_block.__init__(self, "gensemcom_analog_demapper", max_items=max_items)

    def set_scale(self, scale):
        self.scale = float(scale)

    def process(self, meta, y):
        scale = self.scale if self.scale > 0 else meta_get(meta, KEY_ANALOG_SCALE)
        if scale is None or not np.isfinite(scale) or scale <= 0:
            raise PduError("no analog scale: set the scale parameter or carry 'analog_scale' in the metadata")
        return meta, analog_demap(y, scale)
