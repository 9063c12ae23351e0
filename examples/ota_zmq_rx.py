#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom OTA receiver over ZMQ
# Author: gr-gensemcom
# Description: OTA RX process: ZMQ pull source -> ota_rx; snr_db is the SNR to expect (sets the detection threshold)
# GNU Radio version: 3.10.5.1

from gnuradio import blocks
from gnuradio import gensemcom
from gnuradio import gr
from gnuradio.filter import firdes
from gnuradio.fft import window
import sys
import signal
from argparse import ArgumentParser
from gnuradio.eng_arg import eng_float, intx
from gnuradio import eng_notation
from gnuradio import zeromq




class ota_zmq_rx(gr.top_block):

    def __init__(self, snr_db=12, address='tcp://127.0.0.1:5555'):
        gr.top_block.__init__(self, "gr-gensemcom OTA receiver over ZMQ", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.snr_db = snr_db
        self.address = address

        ##################################################
        # Variables
        ##################################################
        self.threshold = threshold = min(0.9, max(0.2, 0.6 * (10**(snr_db / 10.0) * 52.0 / 128.0 / (1.0 + 10**(snr_db / 10.0) * 52.0 / 128.0))**2))
        self.modulation = modulation = 16

        ##################################################
        # Blocks
        ##################################################

        self.zmq_pull = zeromq.pull_source(gr.sizeof_gr_complex, 1, address, 100, False, (-1))
        self.stats_print = blocks.message_debug(False)
        self.ota_rx = gensemcom.ota_rx(
            modulation=modulation,
            backend='default',
            code_rate='1/2',
            threshold=threshold,
            analog_eq='mmse',
            chan_taps=8,
            track_window=0,
            llr_method='exact',
            max_iter=0,
            max_symbols=2048)
        self.frame_store = blocks.message_debug(False)


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.ota_rx, 'out'), (self.frame_store, 'store'))
        self.msg_connect((self.ota_rx, 'stats'), (self.stats_print, 'print'))
        self.connect((self.zmq_pull, 0), (self.ota_rx, 0))


    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.set_threshold(min(0.9, max(0.2, 0.6 * (10**(self.snr_db / 10.0) * 52.0 / 128.0 / (1.0 + 10**(self.snr_db / 10.0) * 52.0 / 128.0))**2)))

    def get_address(self):
        return self.address

    def set_address(self, address):
        self.address = address

    def get_threshold(self):
        return self.threshold

    def set_threshold(self, threshold):
        self.threshold = threshold

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation



def argument_parser():
    description = 'OTA RX process: ZMQ pull source -> ota_rx; snr_db is the SNR to expect (sets the detection threshold)'
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(12)),
        help="Set Expected SNR (dB): sets the detection threshold [default=%(default)r]")
    parser.add_argument(
        "--address", dest="address", type=str, default='tcp://127.0.0.1:5555',
        help="Set ZMQ address [default=%(default)r]")
    return parser


def main(top_block_cls=ota_zmq_rx, options=None):
    if options is None:
        options = argument_parser().parse_args()
    tb = top_block_cls(snr_db=options.snr_db, address=options.address)

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
