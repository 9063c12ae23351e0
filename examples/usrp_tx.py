#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom OTA transmitter on a USRP (B200/B210)
# Author: gr-gensemcom
# Description: OTA TX on a USRP B200/B210 via gr-uhd: start low gain, use an attenuated cable or antennas
# GNU Radio version: 3.10.5.1

from gnuradio import analog
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
from gnuradio import uhd
import time
import math




class usrp_tx(gr.top_block):

    def __init__(self, snr_db=100, freq=2.45e9, period_ms=50, samp_rate=1e6, amplitude=0.15, tx_gain=50):
        gr.top_block.__init__(self, "gr-gensemcom OTA transmitter on a USRP (B200/B210)", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.snr_db = snr_db
        self.freq = freq
        self.period_ms = period_ms
        self.samp_rate = samp_rate
        self.amplitude = amplitude
        self.tx_gain = tx_gain

        ##################################################
        # Variables
        ##################################################
        self.test_pdu = test_pdu = pmt.cons(pmt.dict_add(pmt.make_dict(), pmt.intern('analog'), pmt.init_f32vector(1024, [math.sin(0.05 * i) for i in range(1024)])), pmt.init_u8vector(256, list(range(256))))
        self.modulation = modulation = 16

        ##################################################
        # Blocks
        ##################################################

        self.usrp_sink = uhd.usrp_sink(
            ",".join(("", "")),
            uhd.stream_args(
                cpu_format="fc32",
                args='',
                channels=list(range(0,1)),
            ),
            "",
        )
        self.usrp_sink.set_samp_rate(samp_rate)
        # No synchronization enforced.

        self.usrp_sink.set_center_freq(freq, 0)
        self.usrp_sink.set_antenna("TX/RX", 0)
        self.usrp_sink.set_gain(tx_gain, 0)
        self.test_noise = analog.noise_source_c(analog.GR_GAUSSIAN, (amplitude * (128.0 / 52.0 * 10**(-snr_db / 10.0))**0.5), 0)
        self.ota_tx = gensemcom.ota_tx(
            modulation=modulation,
            backend='default',
            code_rate='1/2',
            amplitude=amplitude,
            gap=400,
            rolloff=0,
            max_symbols=2048,
            continuous=True)
        self.frame_source = blocks.message_strobe(test_pdu, period_ms)
        self.add = blocks.add_vcc(1)


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.frame_source, 'strobe'), (self.ota_tx, 'in'))
        self.connect((self.add, 0), (self.usrp_sink, 0))
        self.connect((self.ota_tx, 0), (self.add, 0))
        self.connect((self.test_noise, 0), (self.add, 1))


    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.test_noise.set_amplitude((self.amplitude * (128.0 / 52.0 * 10**(-self.snr_db / 10.0))**0.5))

    def get_freq(self):
        return self.freq

    def set_freq(self, freq):
        self.freq = freq
        self.usrp_sink.set_center_freq(self.freq, 0)

    def get_period_ms(self):
        return self.period_ms

    def set_period_ms(self, period_ms):
        self.period_ms = period_ms
        self.frame_source.set_period(self.period_ms)

    def get_samp_rate(self):
        return self.samp_rate

    def set_samp_rate(self, samp_rate):
        self.samp_rate = samp_rate
        self.usrp_sink.set_samp_rate(self.samp_rate)

    def get_amplitude(self):
        return self.amplitude

    def set_amplitude(self, amplitude):
        self.amplitude = amplitude
        self.test_noise.set_amplitude((self.amplitude * (128.0 / 52.0 * 10**(-self.snr_db / 10.0))**0.5))

    def get_tx_gain(self):
        return self.tx_gain

    def set_tx_gain(self, tx_gain):
        self.tx_gain = tx_gain
        self.usrp_sink.set_gain(self.tx_gain, 0)

    def get_test_pdu(self):
        return self.test_pdu

    def set_test_pdu(self, test_pdu):
        self.test_pdu = test_pdu
        self.frame_source.set_msg(self.test_pdu)

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation



def argument_parser():
    description = 'OTA TX on a USRP B200/B210 via gr-uhd: start low gain, use an attenuated cable or antennas'
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(100)),
        help="Set Test noise Es/N0 added before the radio (dB; 100 = none) [default=%(default)r]")
    parser.add_argument(
        "--freq", dest="freq", type=eng_float, default=eng_notation.num_to_str(float(2.45e9)),
        help="Set Centre frequency (Hz) [default=%(default)r]")
    parser.add_argument(
        "--period-ms", dest="period_ms", type=intx, default=50,
        help="Set Frame period (ms) [default=%(default)r]")
    parser.add_argument(
        "--samp-rate", dest="samp_rate", type=eng_float, default=eng_notation.num_to_str(float(1e6)),
        help="Set Sample rate (S/s) [default=%(default)r]")
    parser.add_argument(
        "--amplitude", dest="amplitude", type=eng_float, default=eng_notation.num_to_str(float(0.15)),
        help="Set RMS amplitude (OFDM peaks ~4x) [default=%(default)r]")
    parser.add_argument(
        "--tx-gain", dest="tx_gain", type=eng_float, default=eng_notation.num_to_str(float(50)),
        help="Set TX gain (dB, B2xx 0-89.8) [default=%(default)r]")
    return parser


def main(top_block_cls=usrp_tx, options=None):
    if options is None:
        options = argument_parser().parse_args()
    tb = top_block_cls(snr_db=options.snr_db, freq=options.freq, period_ms=options.period_ms, samp_rate=options.samp_rate, amplitude=options.amplitude, tx_gain=options.tx_gain)

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
