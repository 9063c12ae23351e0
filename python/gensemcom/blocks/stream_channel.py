"""GNU Radio hierarchical block: PDUs across GNU Radio's stream channel model.

PDU -> ``burst_tx`` -> ``channels.channel_model`` -> ``burst_rx`` -> PDU: the tagged
stream glue of :mod:`gensemcom.blocks` around GNU Radio's own channel model, so
a PDU link can be run against GNU Radio's impairments in one block.
"""
from gnuradio import channels, gr

from ..phy.channels import noise_voltage
from .burst_rx import burst_rx
from .burst_tx import burst_tx


class stream_channel(gr.hier_block2):
    """Complex symbols PDU in, the same PDU through ``channels.channel_model`` out.

    The noise is set by Es/N0 (noise_voltage = sqrt(10^(-snr/10)) for unit-power
    symbols); the receiver estimates the gain and ``noise_var`` from the preamble.
    Metadata survive the trip as stream tags.

    Args:
        snr_db (float): Es/N0 in dB.
        phase (float): constant channel phase rotation in radians (the burst
            receiver corrects it from the preamble).
        seed (int): noise seed of the channel model.
        guard (int): burst guard samples.
    """

    def __init__(self, snr_db=10.0, phase=0.0, seed=0, guard=32):
        gr.hier_block2.__init__(self, "gensemcom_stream_channel",
                                gr.io_signature(0, 0, 0), gr.io_signature(0, 0, 0))
        self.message_port_register_hier_in("in")
        self.message_port_register_hier_out("out")
        import cmath
        self.snr_db = float(snr_db)
        self.tx = burst_tx(guard=guard)
        self.channel = channels.channel_model(noise_voltage=noise_voltage(self.snr_db), frequency_offset=0.0,
                                              epsilon=1.0, taps=[cmath.exp(1j * float(phase))],
                                              noise_seed=int(seed), block_tags=False)
        self.rx = burst_rx(guard=guard)
        self.msg_connect(self, "in", self.tx, "in")
        self.connect(self.tx, self.channel, self.rx)
        self.msg_connect(self.rx, "out", self, "out")

    def set_snr_db(self, snr_db):
        """Set Es/N0 (dB) at run time."""
        self.snr_db = float(snr_db)
        self.channel.set_noise_voltage(noise_voltage(self.snr_db))
