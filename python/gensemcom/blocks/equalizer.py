"""GNU Radio block: channel equalisation (perfect CSI, pilot LS, pilot LMMSE)."""
import numpy as np
import pmt

from ..phy.channels import PilotPattern, equalize
from .pdu_utils import KEY_CSI, KEY_EQUALIZED, KEY_NOISE_VAR, PduError, meta_del, meta_get, meta_set, pdu_block

_ESTIMATORS = ("perfect", "auto", "ls", "lmmse", "none")


class equalizer(pdu_block):
    """Faded symbols PDU in, equalised symbols PDU out (pilots removed).

    Estimators: "perfect" uses the true gains in the ``csi`` metadata (simulation);
    "auto" does the same when the PDU has ``csi`` and passes it through as "none"
    does when it has none (an AWGN channel's: nothing to equalise), so a chain whose
    ``pdu_channel`` switches between AWGN and Rayleigh keeps one equaliser;
    "ls" and "lmmse" estimate one gain per block from the pilots; "none" only
    removes pilots. The output metadata's ``noise_var`` becomes the per-symbol
    effective noise variance (N0/|h|^2 for ZF, plus the estimation error), which the
    digital receiver turns into calibrated LLRs; ``csi`` is removed.

    Args:
        estimator (str): "perfect", "auto", "ls", "lmmse" or "none".
        method (str): "zf" (for QAM) or "mmse" (for analog symbols).
        block_len (int): symbols per pilot block, as at the pilot inserter.
        n_pilots (int): pilots per block, as at the inserter (0: no pilots, only
            valid with "perfect", "auto" or "none").
        noise_var (float): N0 to assume when the metadata has no ``noise_var``.
    """

    in_kind, out_kind = "c32", "c32"

    def __init__(self, estimator="ls", method="zf", block_len=64, n_pilots=4, noise_var=0.1):
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
        if method not in ("zf", "mmse"):
            raise ValueError(f"method must be 'zf' or 'mmse', got {method!r}")
        if int(n_pilots) == 0 and estimator in ("ls", "lmmse"):
            raise ValueError(f"estimator {estimator!r} needs pilots (n_pilots > 0)")
        self.estimator, self.method = estimator, method
        self.pattern = PilotPattern(int(block_len), int(n_pilots)) if int(n_pilots) > 0 else None
        self.noise_var = float(noise_var)
        pdu_block.__init__(self, "gensemcom_equalizer")

    def process(self, meta, y):
        n0 = meta_get(meta, KEY_NOISE_VAR, self.noise_var)
        if np.ndim(n0):
            raise PduError("equalizer expects a scalar noise_var at its input")
        n0 = float(n0)
        estimator = self.estimator
        if estimator == "auto":
            estimator = "perfect" if pmt.dict_has_key(meta, pmt.intern(KEY_CSI)) else "none"
        if estimator in ("ls", "lmmse"):
            x, nv = self.pattern.equalize(y, n0, estimator, self.method)
        else:
            data = self.pattern.remove(y) if self.pattern else y
            if estimator == "perfect":
                h = meta_get(meta, KEY_CSI)
                if h is None or h.size != y.size:
                    raise PduError("perfect-CSI equaliser needs 'csi' metadata with one gain per symbol")
                h = self.pattern.remove(h) if self.pattern else h
                x, nv = equalize(data, h, n0, self.method)
            else:
                x, nv = data, np.full(data.size, n0)
        meta = meta_del(meta, KEY_CSI)
        meta = meta_set(meta, KEY_EQUALIZED, True)
        meta = meta_set(meta, KEY_NOISE_VAR, np.asarray(nv, dtype=np.float32))
        return meta, x


def connect_through_channel(fg, chan, dst, dst_port: str, fading: bool, method: str, coherence: int):
    """Connect ``chan``'s output to ``dst`` (port ``dst_port``) in flowgraph ``fg``,
    through a perfect-CSI :class:`equalizer` (``method`` "zf" or "mmse") when the channel
    fades; returns the equalizer (None on AWGN)."""
    if not fading:
        fg.msg_connect(chan, "out", dst, dst_port)
        return None
    eq = equalizer("perfect", method, int(coherence), 0)
    fg.msg_connect(chan, "out", eq, "in")
    fg.msg_connect(eq, "out", dst, dst_port)
    return eq
