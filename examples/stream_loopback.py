#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom stream loopback
# Author: gr-gensemcom
# Description: Simulated stream loopback: a text PDU through the digital path, sent as a burst on a tagged sample stream across GNU Radio's channel model
# GNU Radio version: 3.10.5.1

from gnuradio import blocks
import pmt
from gnuradio import channels
from gnuradio.filter import firdes
from gnuradio import gensemcom
from gnuradio import gr
from gnuradio.fft import window
import sys
import signal
from argparse import ArgumentParser
from gnuradio.eng_arg import eng_float, intx
from gnuradio import eng_notation




class stream_loopback(gr.top_block):

    def __init__(self, snr_db=12):
        gr.top_block.__init__(self, "gr-gensemcom stream loopback", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.snr_db = snr_db

        ##################################################
        # Variables
        ##################################################
        self.noise_voltage = noise_voltage = 10**(-snr_db/20)
        self.modulation = modulation = 16
        self.guard = guard = 32

        ##################################################
        # Blocks
        ##################################################

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
        self.channel_model = channels.channel_model(
            noise_voltage=noise_voltage,
            frequency_offset=0.0,
            epsilon=1.0,
            taps=[1.0],
            noise_seed=0,
            block_tags=False)
        self.burst_tx = gensemcom.burst_tx(
            guard=guard,
            preamble_len=63,
            length_tag='packet_len')
        self.burst_rx = gensemcom.burst_rx(
            guard=guard,
            preamble_len=63,
            length_tag='packet_len',
            max_len=4194304)


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.burst_rx, 'out'), (self.digital_rx, 'in'))
        self.msg_connect((self.digital_rx, 'out'), (self.digital_sink, 'print'))
        self.msg_connect((self.digital_tx, 'out'), (self.burst_tx, 'in'))
        self.msg_connect((self.text_source, 'strobe'), (self.digital_tx, 'in'))
        self.connect((self.burst_tx, 0), (self.channel_model, 0))
        self.connect((self.channel_model, 0), (self.burst_rx, 0))


    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.set_noise_voltage(10**(-self.snr_db/20))

    def get_noise_voltage(self):
        return self.noise_voltage

    def set_noise_voltage(self, noise_voltage):
        self.noise_voltage = noise_voltage
        self.channel_model.set_noise_voltage(self.noise_voltage)

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation

    def get_guard(self):
        return self.guard

    def set_guard(self, guard):
        self.guard = guard



def argument_parser():
    description = "Simulated stream loopback: a text PDU through the digital path, sent as a burst on a tagged sample stream across GNU Radio's channel model"
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(12)),
        help="Set SNR (Es/N0, dB) [default=%(default)r]")
    return parser


def main(top_block_cls=stream_loopback, options=None):
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
