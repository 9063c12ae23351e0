#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom fading loopback
# Author: gr-gensemcom
# Description: Simulated fading loopback: a text PDU through the digital path over Rayleigh block fading with block pilots and an LS equalizer, and a float vector through the analog path over the stream channel (GNU Radio channel model)
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
from gnuradio import pdu




class fading_loopback(gr.top_block):

    def __init__(self, snr_db=15):
        gr.top_block.__init__(self, "gr-gensemcom fading loopback", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.snr_db = snr_db

        ##################################################
        # Variables
        ##################################################
        self.n_pilots = n_pilots = 4
        self.block_len = block_len = 64

        ##################################################
        # Blocks
        ##################################################

        self.vector_source = blocks.message_strobe(pmt.cons(pmt.make_dict(), pmt.init_f32vector(8, [0.5, -1.0, 1.5, 2.0, -0.25, 0.75, 3.0, -2.0])), 1000)
        self.text_source = blocks.message_strobe(pmt.cons(pmt.make_dict(), pmt.init_u8vector(17, list(b"Hello, GenSemCom!"))), 1000)
        self.stream_channel = gensemcom.stream_channel(
            snr_db=snr_db,
            phase=0.5,
            seed=0,
            guard=32)
        self.pilot_inserter = gensemcom.pilot_inserter(block_len=block_len, n_pilots=n_pilots)
        self.fading_channel = gensemcom.pdu_channel(
            channel='rayleigh',
            snr_db=snr_db,
            coherence=block_len,
            seed=(-1))
        self.equalizer = gensemcom.equalizer(
            estimator='ls',
            method='zf',
            block_len=block_len,
            n_pilots=n_pilots,
            noise_var=0.1)
        self.drop_noise_var = pdu.pdu_remove(pmt.intern("noise_var"))
        self.digital_tx = gensemcom.digital_tx(
            modulation=4,
            backend='default',
            code_rate='1/2',
            max_blocks=4096,
            snr_db=10.0,
            target_bler=0.01,
            channel='awgn',
            header_repeat=1)
        self.digital_sink = blocks.message_debug(True)
        self.digital_rx = gensemcom.digital_rx(
            modulation=4,
            backend='default',
            code_rate='1/2',
            llr_method='exact',
            noise_var=(-1.0),
            max_iter=0,
            drop_failed=False,
            max_blocks=4096,
            header_repeat=1)
        self.analog_sink = blocks.message_debug(True)
        self.analog_mapper = gensemcom.analog_mapper(max_items=4194304)
        self.analog_demapper = gensemcom.analog_demapper(scale=(-1.0), max_items=4194304)


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.analog_demapper, 'out'), (self.analog_sink, 'print'))
        self.msg_connect((self.analog_mapper, 'out'), (self.stream_channel, 'in'))
        self.msg_connect((self.digital_rx, 'out'), (self.drop_noise_var, 'pdus'))
        self.msg_connect((self.digital_tx, 'out'), (self.pilot_inserter, 'in'))
        self.msg_connect((self.drop_noise_var, 'pdus'), (self.digital_sink, 'print'))
        self.msg_connect((self.equalizer, 'out'), (self.digital_rx, 'in'))
        self.msg_connect((self.fading_channel, 'out'), (self.equalizer, 'in'))
        self.msg_connect((self.pilot_inserter, 'out'), (self.fading_channel, 'in'))
        self.msg_connect((self.stream_channel, 'out'), (self.analog_demapper, 'in'))
        self.msg_connect((self.text_source, 'strobe'), (self.digital_tx, 'in'))
        self.msg_connect((self.vector_source, 'strobe'), (self.analog_mapper, 'in'))


    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.fading_channel.set_snr_db(self.snr_db)
        self.stream_channel.set_snr_db(self.snr_db)

    def get_n_pilots(self):
        return self.n_pilots

    def set_n_pilots(self, n_pilots):
        self.n_pilots = n_pilots

    def get_block_len(self):
        return self.block_len

    def set_block_len(self, block_len):
        self.block_len = block_len



def argument_parser():
    description = 'Simulated fading loopback: a text PDU through the digital path over Rayleigh block fading with block pilots and an LS equalizer, and a float vector through the analog path over the stream channel (GNU Radio channel model)'
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(15)),
        help="Set SNR (Es/N0, dB) [default=%(default)r]")
    return parser


def main(top_block_cls=fading_loopback, options=None):
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
