"""GNU Radio block: burst receiver (complex stream -> detected burst symbols PDUs)."""
import numpy as np
import pmt
from gnuradio import gr

from ..phy.burst import BurstFormat
from .burst_framer import LENGTH_TAG
from .pdu_utils import KEY_NOISE_VAR, counting, make_pdu, meta_set


class burst_rx(counting, gr.sync_block):
    """Tagged complex burst stream in, payload symbols PDU out (port ``out``).

    Output metadata: the stream tags found in the burst, ``noise_var`` (estimated
    from the preamble, after gain correction), ``burst_gain`` (complex channel gain)
    and ``corr_peak`` (normalised preamble correlation, 1 = clean).

    Args:
        guard (int): as at the transmitter.
        preamble_len (int): as at the transmitter.
        length_tag (str): tagged-stream length tag name.
        max_len (int): longest burst accepted (longer ones are dropped and counted).
    """

    def __init__(self, guard=32, preamble_len=63, length_tag=LENGTH_TAG, max_len=1 << 22):
        gr.sync_block.__init__(self, "gensemcom_burst_rx", [np.complex64], None)
        self._init_counters()
        self.fmt = BurstFormat(int(guard), int(preamble_len))
        self.length_key = pmt.intern(length_tag)
        self.max_len = int(max_len)
        self.message_port_register_out(pmt.intern("out"))
        self._chunks, self._have, self._need, self._len = [], 0, 0, 0
        self._meta = None

    def _start(self, length):
        self._count("n_in")
        if length < self.fmt.overhead + 1 or length > self.max_len:
            self.drop("bad burst length", f"{length} samples")
            return
        # wait for all but half a guard: the tail guard never needs to arrive, so a
        # burst held back by a resampler still comes out
        self._len, self._need, self._have = length, length - self.fmt.guard // 2, 0
        self._chunks, self._meta = [], pmt.make_dict()

    def _finish(self):
        window = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.complex64)
        self._need = 0
        try:
            a = self.fmt.align(window, self.fmt.payload_len(self._len))
        except ValueError as e:
            self.drop("burst cut short", str(e))
            return
        meta = meta_set(self._meta, KEY_NOISE_VAR, float(a.noise_var))
        meta = meta_set(meta, "burst_gain", complex(a.gain))
        meta = meta_set(meta, "corr_peak", float(a.peak))
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, a.payload, "c32"))
        self._count("n_out")

    def work(self, input_items, output_items):
        x = input_items[0]
        n = len(x)
        base = self.nitems_read(0)
        tags = sorted(self.get_tags_in_window(0, 0, n), key=lambda t: t.offset)
        starts = [(t.offset - base, pmt.to_long(t.value)) for t in tags
                  if pmt.eq(t.key, self.length_key) and pmt.is_integer(t.value)]
        i = 0
        while i < n:
            if self._need:
                nxt = next((r for r, _ in starts if i < r < i + self._need - self._have), None)
                end = nxt if nxt is not None else min(n, i + self._need - self._have)
                self._chunks.append(np.array(x[i:end]))
                for t in tags:
                    if i <= t.offset - base < end and not pmt.eq(t.key, self.length_key):
                        self._meta = pmt.dict_add(self._meta, t.key, t.value)
                self._have += end - i
                i = end
                if self._have >= self._need or nxt is not None:
                    self._finish()
            else:
                nxt = next(((r, L) for r, L in starts if r >= i), None)
                if nxt is None:
                    break
                i = nxt[0]
                self._start(nxt[1])
                if not self._need:  # dropped: skip to the next tag
                    i += 1
        return n
