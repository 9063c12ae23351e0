"""GNU Radio block: the return link (receiver -> transmitter) of a system that holds a
conversation: a SemanticFrame in, the same frame through its own PHY and channel out."""
from __future__ import annotations

from typing import Any, Dict

import pmt
from gnuradio import gr

from ..link import header_repeat
from .digital_rx import digital_rx
from .digital_tx import digital_tx
from .equalizer import connect_through_channel
from .frame_demapper import frame_demapper
from .frame_mapper import frame_mapper
from .pdu_channel import pdu_channel


class return_link(gr.hier_block2):
    """SemanticFrame in (``in``), the frame as the transmitter receives it out (``out``).

    The path a receiver's feedback frame takes back to the transmitter, built from the
    module's own PHY blocks: ``frame_mapper -> digital_tx -> pdu_channel ->
    [equalizer] -> digital_rx -> frame_demapper`` for the wire header and payload (and
    ``pdu_channel -> [equalizer]`` for analog segments, if a feedback frame has any).
    It has its own modulation, code rate, channel and SNR, independent of the forward
    link's; a feedback frame whose digital part fails CRC arrives with ``crc_ok``
    False, for the transmitter's system to decide on. Rayleigh fading is equalised
    with perfect CSI.

    Args:
        snr_db (float): Es/N0 of the return channel (dB). Settable.
        channel (str): "awgn" or "rayleigh".
        modulation (int | str): QAM order (default 4: feedback is short and must arrive), or "auto".
        code_rate (str): LDPC rate, or "auto" (link adaptation at ``snr_db``).
        coherence (int): Rayleigh block length in symbols.
        seed (int): channel seed (the analog path uses seed + 1; -1: fresh entropy).
    """

    def __init__(self, snr_db=10.0, channel="awgn", modulation=4, code_rate="auto", coherence=64, seed=-1):
        gr.hier_block2.__init__(self, "gensemcom_return_link", gr.io_signature(0, 0, 0), gr.io_signature(0, 0, 0))
        self.message_port_register_hier_in("in")
        self.message_port_register_hier_out("out")
        fading = channel == "rayleigh"
        self.mapper = frame_mapper()
        rep = header_repeat(channel)
        self.dtx = digital_tx(modulation=modulation, code_rate=str(code_rate), snr_db=float(snr_db), channel=channel,
                              header_repeat=rep)
        self.dchan = pdu_channel(channel, float(snr_db), int(coherence), int(seed))
        self.achan = pdu_channel(channel, float(snr_db), int(coherence), int(seed) + 1 if int(seed) >= 0 else -1)
        self.drx = digital_rx(modulation=modulation, code_rate=str(code_rate), header_repeat=rep)
        self.demapper = frame_demapper()
        self.msg_connect(self, "in", self.mapper, "in")
        self.msg_connect(self.mapper, "digital", self.dtx, "in")
        self.msg_connect(self.dtx, "out", self.dchan, "in")
        self.msg_connect(self.mapper, "analog", self.achan, "in")
        # keep the equalizers referenced: a Python block collected while the flowgraph holds it crashes GNU Radio
        self.deq = connect_through_channel(self, self.dchan, self.drx, "in", fading, "zf", coherence)
        self.aeq = connect_through_channel(self, self.achan, self.demapper, "analog", fading, "mmse", coherence)
        self.msg_connect(self.drx, "out", self.demapper, "digital")
        self.msg_connect(self.demapper, "out", self, "out")

    def post(self, msg) -> None:
        """Queue one frame as if it had arrived on ``in`` (for Python callers)."""
        self.mapper.to_basic_block()._post(pmt.intern("in"), msg)

    def set_snr_db(self, snr_db) -> None:
        for blk in (self.dchan, self.achan, self.dtx):
            blk.set_snr_db(snr_db)

    def counters(self) -> Dict[str, Any]:
        """Counters of the inner blocks, by role."""
        return {"frame_mapper": self.mapper.counters(), "digital_tx": self.dtx.counters(),
                "digital_channel": self.dchan.counters(), "digital_rx": self.drx.counters(),
                "frame_demapper": self.demapper.counters()}
