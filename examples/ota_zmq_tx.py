#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom OTA transmitter over ZMQ
# Author: gr-gensemcom
# Description: OTA TX process: frames -> ota_tx -> channel model (the air) -> ZMQ push sink; run ota_zmq_rx alongside
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
from gnuradio import zeromq
import math




class ota_zmq_tx(gr.top_block):

    def __init__(self, snr_db=12, cfo=0.2, epsilon=1.0001, period_ms=50, address='tcp://127.0.0.1:5555'):
        gr.top_block.__init__(self, "gr-gensemcom OTA transmitter over ZMQ", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.snr_db = snr_db
        self.cfo = cfo
        self.epsilon = epsilon
        self.period_ms = period_ms
        self.address = address

        ##################################################
        # Variables
        ##################################################
        self.test_pdu = test_pdu = pmt.cons(pmt.dict_add(pmt.make_dict(), pmt.intern('analog'), pmt.init_f32vector(1024, [math.sin(0.05 * i) for i in range(1024)])), pmt.init_u8vector(256, list(range(256))))
        self.noise_voltage = noise_voltage = (128.0 / 52.0 * 10**(-snr_db / 10.0))**0.5
        self.modulation = modulation = 16

        ##################################################
        # Blocks
        ##################################################

        self.zmq_push = zeromq.push_sink(gr.sizeof_gr_complex, 1, address, 100, False, (-1))
        self.ota_tx = gensemcom.ota_tx(
            modulation=modulation,
            backend='default',
            code_rate='1/2',
            amplitude=1.0,
            gap=400,
            rolloff=0,
            max_symbols=2048,
            continuous=False)
        self.frame_source = blocks.message_strobe(test_pdu, period_ms)
        self.channel_model = channels.channel_model(
            noise_voltage=noise_voltage,
            frequency_offset=(cfo / 128.0),
            epsilon=epsilon,
            taps=[1.0],
            noise_seed=0,
            block_tags=False)


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.frame_source, 'strobe'), (self.ota_tx, 'in'))
        self.connect((self.channel_model, 0), (self.zmq_push, 0))
        self.connect((self.ota_tx, 0), (self.channel_model, 0))


    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.set_noise_voltage((128.0 / 52.0 * 10**(-self.snr_db / 10.0))**0.5)

    def get_cfo(self):
        return self.cfo

    def set_cfo(self, cfo):
        self.cfo = cfo
        self.channel_model.set_frequency_offset((self.cfo / 128.0))

    def get_epsilon(self):
        return self.epsilon

    def set_epsilon(self, epsilon):
        self.epsilon = epsilon
        self.channel_model.set_timing_offset(self.epsilon)

    def get_period_ms(self):
        return self.period_ms

    def set_period_ms(self, period_ms):
        self.period_ms = period_ms
        self.frame_source.set_period(self.period_ms)

    def get_address(self):
        return self.address

    def set_address(self, address):
        self.address = address

    def get_test_pdu(self):
        return self.test_pdu

    def set_test_pdu(self, test_pdu):
        self.test_pdu = test_pdu
        self.frame_source.set_msg(self.test_pdu)

    def get_noise_voltage(self):
        return self.noise_voltage

    def set_noise_voltage(self, noise_voltage):
        self.noise_voltage = noise_voltage
        self.channel_model.set_noise_voltage(self.noise_voltage)

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation



def argument_parser():
    description = 'OTA TX process: frames -> ota_tx -> channel model (the air) -> ZMQ push sink; run ota_zmq_rx alongside'
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(12)),
        help="Set SNR (Es/N0 per data carrier, dB) [default=%(default)r]")
    parser.add_argument(
        "--cfo", dest="cfo", type=eng_float, default=eng_notation.num_to_str(float(0.2)),
        help="Set CFO (subcarrier spacings) [default=%(default)r]")
    parser.add_argument(
        "--epsilon", dest="epsilon", type=eng_float, default=eng_notation.num_to_str(float(1.0001)),
        help="Set Sample-rate ratio [default=%(default)r]")
    parser.add_argument(
        "--period-ms", dest="period_ms", type=intx, default=50,
        help="Set Frame period (ms) [default=%(default)r]")
    parser.add_argument(
        "--address", dest="address", type=str, default='tcp://127.0.0.1:5555',
        help="Set ZMQ address [default=%(default)r]")
    return parser


def main(top_block_cls=ota_zmq_tx, options=None):
    if options is None:
        options = argument_parser().parse_args()
    tb = top_block_cls(snr_db=options.snr_db, cfo=options.cfo, epsilon=options.epsilon, period_ms=options.period_ms, address=options.address)

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
