#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom OTA receiver on a USRP (B200/B210)
# Author: gr-gensemcom
# Description: OTA RX on a USRP B200/B210 via gr-uhd
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
from gnuradio import uhd
import time




class usrp_rx(gr.top_block):

    def __init__(self, snr_db=12, freq=2.45e9, samp_rate=1e6, rx_gain=40):
        gr.top_block.__init__(self, "gr-gensemcom OTA receiver on a USRP (B200/B210)", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.snr_db = snr_db
        self.freq = freq
        self.samp_rate = samp_rate
        self.rx_gain = rx_gain

        ##################################################
        # Variables
        ##################################################
        self.threshold = threshold = min(0.9, max(0.2, 0.6 * (10**(snr_db / 10.0) * 52.0 / 128.0 / (1.0 + 10**(snr_db / 10.0) * 52.0 / 128.0))**2))
        self.modulation = modulation = 16

        ##################################################
        # Blocks
        ##################################################

        self.usrp_source = uhd.usrp_source(
            ",".join(("", "")),
            uhd.stream_args(
                cpu_format="fc32",
                args='',
                channels=list(range(0,1)),
            ),
        )
        self.usrp_source.set_samp_rate(samp_rate)
        # No synchronization enforced.

        self.usrp_source.set_center_freq(freq, 0)
        self.usrp_source.set_antenna("RX2", 0)
        self.usrp_source.set_gain(rx_gain, 0)
        self.stats_print = blocks.message_debug(False)
        self.ota_rx = gensemcom.ota_rx(
            modulation=modulation,
            backend='default',
            code_rate='1/2',
            threshold=threshold,
            analog_eq='mmse',
            chan_taps=8,
            track_window=8,
            llr_method='exact',
            max_iter=0,
            max_symbols=2048)
        self.frame_store = blocks.message_debug(False)


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.ota_rx, 'out'), (self.frame_store, 'store'))
        self.msg_connect((self.ota_rx, 'stats'), (self.stats_print, 'print'))
        self.connect((self.usrp_source, 0), (self.ota_rx, 0))


    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.set_threshold(min(0.9, max(0.2, 0.6 * (10**(self.snr_db / 10.0) * 52.0 / 128.0 / (1.0 + 10**(self.snr_db / 10.0) * 52.0 / 128.0))**2)))

    def get_freq(self):
        return self.freq

    def set_freq(self, freq):
        self.freq = freq
        self.usrp_source.set_center_freq(self.freq, 0)

    def get_samp_rate(self):
        return self.samp_rate

    def set_samp_rate(self, samp_rate):
        self.samp_rate = samp_rate
        self.usrp_source.set_samp_rate(self.samp_rate)

    def get_rx_gain(self):
        return self.rx_gain

    def set_rx_gain(self, rx_gain):
        self.rx_gain = rx_gain
        self.usrp_source.set_gain(self.rx_gain, 0)

    def get_threshold(self):
        return self.threshold

    def set_threshold(self, threshold):
        self.threshold = threshold

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation



def argument_parser():
    description = 'OTA RX on a USRP B200/B210 via gr-uhd'
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(12)),
        help="Set Expected SNR (dB): sets the detection threshold [default=%(default)r]")
    parser.add_argument(
        "--freq", dest="freq", type=eng_float, default=eng_notation.num_to_str(float(2.45e9)),
        help="Set Centre frequency (Hz) [default=%(default)r]")
    parser.add_argument(
        "--samp-rate", dest="samp_rate", type=eng_float, default=eng_notation.num_to_str(float(1e6)),
        help="Set Sample rate (S/s) [default=%(default)r]")
    parser.add_argument(
        "--rx-gain", dest="rx_gain", type=eng_float, default=eng_notation.num_to_str(float(40)),
        help="Set RX gain (dB, B2xx 0-76) [default=%(default)r]")
    return parser


def main(top_block_cls=usrp_rx, options=None):
    if options is None:
        options = argument_parser().parse_args()
    tb = top_block_cls(snr_db=options.snr_db, freq=options.freq, samp_rate=options.samp_rate, rx_gain=options.rx_gain)

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
