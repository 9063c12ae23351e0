"""GNU Radio block: PDU channel (AWGN or Rayleigh block fading), SNR settable at run time."""
import threading

import numpy as np
import pmt

from ..phy.channels import make_channel
from .pdu_utils import KEY_CSI, KEY_EQUALIZED, KEY_NOISE_VAR, KEY_SNR_DB, meta_set, pdu_block


class pdu_channel(pdu_block):
    """Complex symbols PDU in, the same symbols through a channel out.

    SNR is Es/N0 per complex symbol with unit average input power (the module's
    convention). The output metadata carries ``snr_db`` and ``noise_var`` (N0), and
    for Rayleigh fading ``csi``, the true per-symbol gains, for a perfect-CSI
    equaliser. The SNR changes at run time through :meth:`set_snr_db` (a GRC
    callback) or a PMT number, or a dict with key ``snr_db``, on the ``snr`` port;
    the channel itself through :meth:`set_channel` (a GRC callback: AWGN <-> Rayleigh
    while running, the random stream continued).

    Args:
        channel (str): "awgn" or "rayleigh".
        snr_db (float): Es/N0 in dB.
        coherence (int): Rayleigh: symbols per fading block.
        seed (int): random seed (-1: fresh entropy each run).
    """

    in_kind, out_kind = "c32", "c32"

    def __init__(self, channel="awgn", snr_db=10.0, coherence=64, seed=-1):
        self.kind = str(channel)
        self.coherence = int(coherence)
        self._seed = None if int(seed) < 0 else int(seed)
        self._chan_lock = threading.Lock()
        self._chan = make_channel(self.kind, float(snr_db), self.coherence, self._seed)
        pdu_block.__init__(self, "gensemcom_pdu_channel")
        self.message_port_register_in(pmt.intern("snr"))
        self.set_msg_handler(pmt.intern("snr"), self._handle_snr)

    @property
    def snr_db(self):
        return self._chan.snr_db

    def set_snr_db(self, snr_db):
        """Set Es/N0 (dB) at run time."""
        snr = float(snr_db)
        if not np.isfinite(snr):
            raise ValueError(f"SNR must be finite, got {snr_db!r}")
        with self._chan_lock:
            self._chan.snr_db = snr

    def set_channel(self, channel):
        """Switch to "awgn" or "rayleigh" at run time; the SNR, coherence and the random
        stream carry over, and the next PDU goes through the new channel.

        Raises:
            ValueError: an unknown channel (the current one is kept).
        """
        kind = str(channel)
        with self._chan_lock:
            if kind == self.kind:
                return
            new = make_channel(kind, self._chan.snr_db, self.coherence, None)
            new.rng = self._chan.rng  # continue the seeded stream rather than restart it
            self._chan, self.kind = new, kind

    def _handle_snr(self, msg):
        try:
            if pmt.is_dict(msg):
                msg = pmt.dict_ref(msg, pmt.intern(KEY_SNR_DB), pmt.PMT_NIL)
            if not pmt.is_number(msg):
                raise ValueError("expected a number or a dict with 'snr_db'")
            self.set_snr_db(pmt.to_double(msg))
        except Exception as e:  # never raise in a handler
            self.drop("bad snr message", str(e))

    def process(self, meta, x):
        with self._chan_lock:
            out = self._chan(x)
            snr = self._chan.snr_db
        meta = meta_set(meta, KEY_SNR_DB, float(snr))
        meta = meta_set(meta, KEY_NOISE_VAR, float(out.noise_var))
        if out.h is not None:
            meta = meta_set(meta, KEY_CSI, out.h)
            meta = meta_set(meta, KEY_EQUALIZED, False)
        return meta, out.y
