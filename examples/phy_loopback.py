#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom PHY loopback
# Author: gr-gensemcom
# Description: Simulated PHY loopback: a text PDU through the digital path (CRC-32, LDPC, QAM) and a float vector through the analog path, each across a PDU channel
# GNU Radio version: 3.10.5.1

from gnuradio import blocks
import pmt
from gnuradio import gensemcom
from gnuradio import gr
from gnuradio.filter import firdes
from gnuradio.fft import window
import sys
import signal
from argparse import ArgumentParser
from gnuradio.eng_arg import eng_float, intx
from gnuradio import eng_notation




class phy_loopback(gr.top_block):

    def __init__(self, snr_db=12):
        gr.top_block.__init__(self, "gr-gensemcom PHY loopback", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.snr_db = snr_db

        ##################################################
        # Variables
        ##################################################
        self.modulation = modulation = 16
        self.channel = channel = "awgn"

        ##################################################
        # Blocks
        ##################################################

        self.vector_source = blocks.message_strobe(pmt.cons(pmt.make_dict(), pmt.init_f32vector(8, [0.5, -1.0, 1.5, 2.0, -0.25, 0.75, 3.0, -2.0])), 1000)
        self.text_source = blocks.message_strobe(pmt.cons(pmt.make_dict(), pmt.init_u8vector(17, list(b"Hello, GenSemCom!"))), 1000)
        self.digital_tx = gensemcom.digital_tx(
            modulation=modulation,
            backend='default',
            code_rate='1/2',
            max_blocks=4096,
            snr_db=10.0,
            target_bler=0.01,
            channel='awgn',
            header_repeat=1)
        self.digital_sink = blocks.message_debug(True)
        self.digital_rx = gensemcom.digital_rx(
            modulation=modulation,
            backend='default',
            code_rate='1/2',
            llr_method='exact',
            noise_var=(-1.0),
            max_iter=0,
            drop_failed=False,
            max_blocks=4096,
            header_repeat=1)
        self.digital_channel = gensemcom.pdu_channel(
            channel=channel,
            snr_db=snr_db,
            coherence=64,
            seed=(-1))
        self.analog_sink = blocks.message_debug(True)
        self.analog_mapper = gensemcom.analog_mapper(max_items=4194304)
        self.analog_demapper = gensemcom.analog_demapper(scale=(-1.0), max_items=4194304)
        self.analog_channel = gensemcom.pdu_channel(
            channel=channel,
            snr_db=snr_db,
            coherence=64,
            seed=(-1))


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.analog_channel, 'out'), (self.analog_demapper, 'in'))
        self.msg_connect((self.analog_demapper, 'out'), (self.analog_sink, 'print'))
        self.msg_connect((self.analog_mapper, 'out'), (self.analog_channel, 'in'))
        self.msg_connect((self.digital_channel, 'out'), (self.digital_rx, 'in'))
        self.msg_connect((self.digital_rx, 'out'), (self.digital_sink, 'print'))
        self.msg_connect((self.digital_tx, 'out'), (self.digital_channel, 'in'))
        self.msg_connect((self.text_source, 'strobe'), (self.digital_tx, 'in'))
        self.msg_connect((self.vector_source, 'strobe'), (self.analog_mapper, 'in'))


    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.analog_channel.set_snr_db(self.snr_db)
        self.digital_channel.set_snr_db(self.snr_db)

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation

    def get_channel(self):
        return self.channel

    def set_channel(self, channel):
        self.channel = channel
        self.analog_channel.set_channel(self.channel)
        self.digital_channel.set_channel(self.channel)



def argument_parser():
    description = 'Simulated PHY loopback: a text PDU through the digital path (CRC-32, LDPC, QAM) and a float vector through the analog path, each across a PDU channel'
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(12)),
        help="Set SNR (Es/N0, dB) [default=%(default)r]")
    return parser


def main(top_block_cls=phy_loopback, options=None):
    if options is None:
        options = argument_parser().parse_args()
    tb = top_block_cls(snr_db=options.snr_db)

    def sig_handler(sig=None, frame=None):
        tb.stop()
        tb.wait()

        sys.exit(0)

    signal.signal(signal.SIGINT, sig_handler)
    signal.signal(signal.SIGTERM, sig_handler)

    tb.start()

    tb.wait()


if __name__ == '__main__':
    main()
