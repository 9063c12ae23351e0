"""GNU Radio block: digital transmitter (protected header + payload -> QAM symbols)."""
import math

import pmt

from ..phy.digital import DigitalPath
from ..phy.header import MAX_BODY
from .pdu_utils import KEY_HEADER_BYTES, KEY_MCS, KEY_N_BLOCKS, PduError, meta_get, meta_set, pdu_block


class digital_tx(pdu_block):
    """Bytes PDU in, QAM symbols PDU out: the frame's protected header block, then its
    payload at an MCS chosen per frame.

    The PDU's first ``header_bytes`` bytes (metadata, set by ``frame_mapper``; 0 when
    absent) are the semantic header: they go, with the payload's MCS, into the
    protected header block (QPSK, 5G NR LDPC rate 1/5, CRC-16: 600 channel uses).
    The rest is the payload: CRC-32 code blocks, LDPC, Gray M-QAM at unit power.
    A thin adapter over :class:`gensemcom.phy.digital.DigitalPath`.

    Link adaptation: with ``modulation`` or ``code_rate`` "auto", each frame's MCS is
    the highest-rate one whose code-block error rate at the SNR the transmitter knows
    stays below ``target_bler`` (the shipped BLER table). That SNR starts at
    ``snr_db`` and follows the receiver's reports on the ``csi`` port (a PMT dict
    with ``snr_db``, or a SemanticFrame whose header holds it: what ``digital_rx``
    publishes on its ``csi`` port, sent back over a ``return_link`` or connected
    directly). The chosen MCS goes into the output metadata (``mcs``).

    Args:
        modulation (int | str): QAM order, 4, 16, 64 or 256, or "auto".
        backend (str): LDPC backend ("default", "numba", "numpy", "pyldpc", "grfec") or
            "none" (uncoded).
        code_rate (str): LDPC code rate, e.g. "1/2" or "1/5", or "auto".
        max_blocks (int): payloads needing more code blocks are dropped.
        snr_db (float): the SNR adaptation assumes until the receiver reports one (settable).
        target_bler (float): the adaptation's code-block error target.
        channel (str): which measured table adaptation reads: "awgn" or "rayleigh" (settable).
        header_repeat (int): copies of the header block, as at the receiver (2 on fading
            channels: Chase combining).
    """

    in_kind, out_kind = "u8", "c32"

    def __init__(self, modulation="auto", backend="default", code_rate="auto", max_blocks=4096, snr_db=10.0,
                 target_bler=1e-2, channel="awgn", header_repeat=1):
        self.path = DigitalPath(modulation, backend, code_rate, max_blocks=max_blocks, target_bler=target_bler,
                                channel=channel, header_repeat=int(header_repeat))
        self.snr_db = float(snr_db)
        self.n_csi = 0
        pdu_block.__init__(self, "gensemcom_digital_tx", max_items=1 << 24)
        self.message_port_register_in(pmt.intern("csi"))
        self.set_msg_handler(pmt.intern("csi"), self._on_csi)

    def counters(self):
        c = pdu_block.counters(self)
        c["csi_reports"] = self.n_csi
        return c

    def set_snr_db(self, snr_db) -> None:
        self.snr_db = float(snr_db)

    def set_channel(self, channel) -> None:
        """Switch the BLER table link adaptation reads ("awgn" or "rayleigh") at run time.

        Raises:
            ValueError: another channel name.
        """
        if channel not in ("awgn", "rayleigh"):
            raise ValueError(f"channel must be awgn or rayleigh, got {channel!r}")
        self.path.channel = str(channel)

    def _on_csi(self, msg):
        snr = csi_snr(msg)
        if snr is None:
            self.drop("bad csi report", "expected a dict or frame with a finite 'snr_db'")
            return
        self.snr_db = snr
        self.n_csi += 1

    def process(self, meta, data):
        nh = meta_get(meta, KEY_HEADER_BYTES, 0)
        if not isinstance(nh, int) or not 0 <= nh <= min(MAX_BODY, data.size):
            raise PduError(f"'{KEY_HEADER_BYTES}' must be an int in [0, {min(MAX_BODY, data.size)}], got {nh!r:.40}")
        raw = data.tobytes()
        mcs, why = self.path.mcs_for(self.snr_db)
        link = self.path.payload_link(mcs)
        if data.size - nh > link.max_payload:
            raise PduError(f"payload of {data.size - nh} bytes exceeds {link.max_payload} bytes at {mcs.name}")
        tx = self.path.transmit(raw[:nh], raw[nh:], mcs=mcs)
        meta = meta_set(meta, KEY_N_BLOCKS, link.framer.n_blocks(data.size - nh))
        meta = meta_set(meta, KEY_MCS, mcs.name)
        meta = meta_set(meta, "mcs_reason", why)
        meta = meta_set(meta, "header_symbols", tx.n_header)
        meta = meta_set(meta, "digital_symbols", int(tx.symbols.size))
        return meta, tx.symbols


def csi_snr(msg):
    """The SNR (dB) in a CSI report: a number, a PMT dict with ``snr_db``, or a
    SemanticFrame PMT (:func:`gensemcom.frame.csi_frame`) whose header holds it; None
    when there is none (or the frame's header was lost)."""
    from ..frame import FrameError, frame_from_pmt

    v = None
    try:
        if pmt.is_number(msg):
            v = pmt.to_double(msg)
        elif pmt.is_dict(msg) and pmt.dict_has_key(msg, pmt.intern("system")):
            f = frame_from_pmt(msg)
            v = f.header.get("snr_db") if f.header_ok is not False else None
        elif pmt.is_dict(msg):
            v = pmt.to_python(pmt.dict_ref(msg, pmt.intern("snr_db"), pmt.PMT_NIL))
    except (FrameError, ValueError, TypeError, RuntimeError):
        return None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
