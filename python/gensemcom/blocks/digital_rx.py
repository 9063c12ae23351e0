"""GNU Radio block: digital receiver (QAM symbols -> protected header, payload -> bytes)."""
import numpy as np
import pmt

from ..frame import csi_frame, frame_to_pmt
from ..phy.digital import DigitalPath, estimate_noise_var
from .pdu_utils import (KEY_CRC_OK, KEY_CSI, KEY_EQUALIZED, KEY_FAILED_BLOCKS, KEY_HEADER_BYTES, KEY_HEADER_OK,
                        KEY_MCS, KEY_N_BLOCKS, KEY_NOISE_VAR, KEY_SNR_EST, PduError, meta_del, meta_get, meta_set,
                        pdu_block)


class digital_rx(pdu_block):
    """QAM symbols PDU in, bytes PDU out with ``header_ok`` and ``crc_ok`` flags.

    The frame's protected header block comes first (QPSK, 5G NR LDPC rate 1/5,
    CRC-16): it names the payload's MCS, so the receiver needs no MCS configuration.
    Soft demapping (exact or max-log LLRs) feeds the LDPC decoders; every payload code
    block is checked with CRC-32. The noise variance comes from the metadata key
    ``noise_var`` (scalar or per symbol, set by the channel or equaliser blocks), else
    from the ``noise_var`` parameter when positive, else it is estimated blindly from
    the distance to the nearest QPSK point of the header.

    Output: the semantic header's bytes, then the payload's (``header_bytes`` in the
    metadata says where one ends), with ``header_ok``, ``crc_ok``, ``failed_blocks``,
    ``n_blocks``, ``mcs`` and ``snr_est_db`` (the Es/N0 estimated from the header
    symbols, data-aided). A lost header gives an empty PDU with ``header_ok`` and
    ``crc_ok`` False; a failed payload the header alone with ``crc_ok`` False. Such
    frames are forwarded flagged, or dropped and counted when ``drop_failed`` is set;
    never passed on unflagged. After every decoded header the estimate is published on
    ``csi`` as a CSI frame (:func:`gensemcom.frame.csi_frame`) for the transmitter's
    link adaptation (through a ``return_link``, or straight to ``digital_tx``'s ``csi``).

    Args:
        modulation (int | str): the payload QAM order this receiver accepts, or "auto"
            (any the header names). A frame at another one is dropped and counted.
        backend (str): LDPC backend ("default", "numba", "numpy"; the header names the code).
        code_rate (str): the payload code rate this receiver accepts, or "auto".
        llr_method (str): "exact" or "maxlog".
        noise_var (float): complex noise variance to assume when the metadata has
            none; <= 0 means estimate it.
        max_iter (int): LDPC decoder iterations (0: backend default).
        drop_failed (bool): drop frames whose header or CRC fails instead of flagging them.
        max_blocks (int): bursts carrying more code blocks are dropped.
        header_repeat (int): copies of the header block, as at the transmitter.
    """

    in_kind, out_kind = "c32", "u8"

    def __init__(self, modulation="auto", backend="default", code_rate="auto", llr_method="exact", noise_var=-1.0,
                 max_iter=0, drop_failed=False, max_blocks=4096, header_repeat=1):
        self.path = DigitalPath(modulation, backend, code_rate, llr_method, int(max_iter) or None, max_blocks,
                                header_repeat=int(header_repeat))
        self.noise_var = float(noise_var)
        self.drop_failed = bool(drop_failed)
        self.n_crc_fail = self.n_header_fail = 0
        pdu_block.__init__(self, "gensemcom_digital_rx", max_items=1 << 24)
        self.message_port_register_out(pmt.intern("csi"))
        self._warned_csi = False

    def counters(self):
        c = pdu_block.counters(self)
        c["crc_failed"] = self.n_crc_fail
        c["header_lost"] = self.n_header_fail
        return c

    def process(self, meta, y):
        if y.size < self.path.header.block_symbols:
            raise PduError(f"{y.size} symbols are fewer than one header block ({self.path.header.block_symbols})")
        if meta_get(meta, KEY_CSI) is not None and not meta_get(meta, KEY_EQUALIZED, False) and not self._warned_csi:
            self._warned_csi = True
            self.logger.warn("input carries channel gains (csi) but no equaliser ran: add a gensemcom equalizer")
        nv = meta_get(meta, KEY_NOISE_VAR)
        if nv is None:
            nv = self.noise_var if self.noise_var > 0 else \
                estimate_noise_var(y[: self.path.header.block_symbols], self.path.header.qam)
        nv = np.asarray(nv, dtype=np.float64)
        if nv.ndim and nv.size != y.size:
            raise PduError(f"noise_var has {nv.size} values for {y.size} symbols")
        res = self.path.receive(y, np.maximum(nv, 1e-9))
        if res.mcs is not None and not self.path.accepts(res.mcs):
            self.drop("unexpected MCS", f"the header names {res.mcs}, this receiver accepts "
                      f"modulation {self.path.modulation}, rate {self.path.rate}")
            return None
        # symbol-level entries describe the input, not the decoded bytes
        for key in (KEY_NOISE_VAR, KEY_EQUALIZED, KEY_CSI):
            meta = meta_del(meta, key)
        meta = meta_set(meta, KEY_HEADER_OK, bool(res.header_ok))
        meta = meta_set(meta, KEY_CRC_OK, bool(res.crc_ok))
        meta = meta_set(meta, KEY_FAILED_BLOCKS, list(res.failed_blocks))
        meta = meta_set(meta, KEY_N_BLOCKS, res.n_blocks)
        meta = meta_set(meta, KEY_HEADER_BYTES, len(res.header or b""))
        if res.mcs is not None:
            meta = meta_set(meta, KEY_MCS, res.mcs.name)
        if res.snr_db is not None:
            meta = meta_set(meta, KEY_SNR_EST, round(float(res.snr_db), 2))
            self.message_port_pub(pmt.intern("csi"), frame_to_pmt(csi_frame(res.snr_db)))
        if not res.header_ok:
            self.n_header_fail += 1
            self.n_crc_fail += 1
            if self.drop_failed:
                self.drop("header lost", res.reason)
                return None
            self.logger.warn(f"protected header lost ({res.reason}): forwarded with header_ok=False")
        elif not res.crc_ok:
            self.n_crc_fail += 1
            if self.drop_failed:
                self.drop("crc failed", f"blocks {res.failed_blocks} of {res.n_blocks}")
                return None
            self.logger.warn(f"payload CRC failed in blocks {res.failed_blocks} of {res.n_blocks} at {res.mcs}: "
                             "forwarded with the header and crc_ok=False")
        data = (res.header or b"") + ((res.payload or b"") if res.crc_ok else b"")
        return meta, np.frombuffer(data, dtype=np.uint8)
