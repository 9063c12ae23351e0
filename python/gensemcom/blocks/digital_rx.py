"""GNU Radio block: digital receiver (QAM symbols -> LLRs -> LDPC -> CRC-32 -> bytes)."""
import numpy as np

from ..phy.digital import DigitalLink, estimate_noise_var
from .pdu_utils import (KEY_CRC_OK, KEY_CSI, KEY_EQUALIZED, KEY_FAILED_BLOCKS, KEY_N_BLOCKS, KEY_NOISE_VAR, PduError,
                        meta_del, meta_get, meta_set, pdu_block)


class digital_rx(pdu_block):
    """QAM symbols PDU in, bytes PDU out with a ``crc_ok`` flag.

    Soft demapping (exact or max-log LLRs) feeds the LDPC decoder; every code block
    is checked with CRC-32. The noise variance comes from the metadata key
    ``noise_var`` (scalar or per symbol, set by the channel or equaliser blocks), else
    from the ``noise_var`` parameter when positive, else it is estimated blindly from
    the distance to the nearest constellation point.

    Output metadata: the input's, less the symbol-level ``noise_var``/``csi``/
    ``equalized``, plus ``crc_ok`` (bool), ``failed_blocks`` (indices), ``n_blocks``.
    A frame that fails its CRC is forwarded flagged (``crc_ok`` False), or dropped and
    counted when ``drop_failed`` is set; it is never passed on unflagged.

    Args:
        modulation (int): QAM order, 4, 16, 64 or 256 (as at the transmitter).
        backend (str): LDPC backend, as at the transmitter.
        code_rate (str): LDPC code rate, as at the transmitter.
        llr_method (str): "exact" or "maxlog".
        noise_var (float): complex noise variance to assume when the metadata has
            none; <= 0 means estimate it.
        max_iter (int): LDPC decoder iterations (0: backend default).
        drop_failed (bool): drop frames whose CRC fails instead of flagging them.
        max_blocks (int): bursts carrying more code blocks are dropped.
    """

    in_kind, out_kind = "c32", "u8"

    def __init__(self, modulation=16, backend="default", code_rate="1/2", llr_method="exact",
                 noise_var=-1.0, max_iter=0, drop_failed=False, max_blocks=4096):
        self.link = DigitalLink(modulation, backend, code_rate, max_blocks=max_blocks,
                                llr_method=llr_method, max_iter=int(max_iter) or None)
        self.noise_var = float(noise_var)
        self.drop_failed = bool(drop_failed)
        self.n_crc_fail = 0
        pdu_block.__init__(self, "gensemcom_digital_rx",
                           max_items=self.link.qam.symbols_for(max_blocks * self.link.code.n))
        self._warned_csi = False

    def counters(self):
        c = pdu_block.counters(self)
        c["crc_failed"] = self.n_crc_fail
        return c

    def process(self, meta, y):
        if self.link.n_blocks_for_symbols(y.size) == 0:
            raise PduError(f"{y.size} symbols carry no complete code block of {self.link.code.n} bits")
        if meta_get(meta, KEY_CSI) is not None and not meta_get(meta, KEY_EQUALIZED, False) and not self._warned_csi:
            self._warned_csi = True
            self.logger.warn("input carries channel gains (csi) but no equaliser ran: add a gensemcom equalizer")
        nv = meta_get(meta, KEY_NOISE_VAR)
        if nv is None:
            nv = self.noise_var if self.noise_var > 0 else estimate_noise_var(y, self.link.qam)
        nv = np.asarray(nv, dtype=np.float64)
        if nv.ndim and nv.size != y.size:
            raise PduError(f"noise_var has {nv.size} values for {y.size} symbols")
        res = self.link.receive(y, np.maximum(nv, 1e-9))
        # symbol-level entries describe the input, not the decoded bytes
        for key in (KEY_NOISE_VAR, KEY_EQUALIZED, KEY_CSI):
            meta = meta_del(meta, key)
        meta = meta_set(meta, KEY_CRC_OK, bool(res.crc_ok))
        meta = meta_set(meta, KEY_FAILED_BLOCKS, list(res.failed_blocks))
        meta = meta_set(meta, KEY_N_BLOCKS, res.n_blocks)
        if not res.crc_ok:
            self.n_crc_fail += 1
            if self.drop_failed:
                self.drop("crc failed", f"blocks {res.failed_blocks} of {res.n_blocks}")
                return None
            self.logger.warn(f"CRC failed in blocks {res.failed_blocks} of {res.n_blocks}: forwarded with crc_ok=False")
        return meta, np.frombuffer(res.payload or b"", dtype=np.uint8)
