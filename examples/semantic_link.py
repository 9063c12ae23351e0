#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom semantic link
# Author: gr-gensemcom
# Description: The full semantic link (what `gensemcom link` runs): images through a semantic encoder, its digital part through CRC-32/LDPC/QAM and its analog part as complex symbols, both across a PDU channel, then the frame demapper, semantic decoder and an image sink; the decoder's feedback goes back to the encoder through a return link, for systems with feedback rounds (--system row-refine). Give --image (a file or a folder; empty means the images of the current folder); the script runs until killed (Ctrl-C).
# GNU Radio version: 3.10.5.1

from gnuradio import gensemcom
from gnuradio import gr
from gnuradio.filter import firdes
from gnuradio.fft import window
import sys
import signal
from argparse import ArgumentParser
from gnuradio.eng_arg import eng_float, intx
from gnuradio import eng_notation




class semantic_link(gr.top_block):

    def __init__(self, image='', out_dir='semantic_link_out', profile='embedded', snr_db=10, system='deepjscc'):
        gr.top_block.__init__(self, "gr-gensemcom semantic link", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.image = image
        self.out_dir = out_dir
        self.profile = profile
        self.snr_db = snr_db
        self.system = system

        ##################################################
        # Variables
        ##################################################
        self.seed = seed = 0
        self.modulation = modulation = "auto"
        self.code_rate = code_rate = "auto"
        self.channel = channel = "awgn"

        ##################################################
        # Blocks
        ##################################################

        self.semantic_encoder = gensemcom.semantic_encoder(
            system=system,
            profile=profile,
            snr_db=snr_db,
            modulation=modulation,
            code_rate=code_rate,
            budget_symbols=0,
            address='',
            timeout_ms=60000,
            curve_keys='',
            header_repeat=1,
            channel='awgn')
        self.semantic_decoder = gensemcom.semantic_decoder(
            system=system,
            profile=profile,
            address='',
            timeout_ms=60000,
            curve_keys='',
            task='')
        self.return_link = gensemcom.return_link(
            snr_db=snr_db,
            channel=channel,
            modulation=4,
            code_rate='auto',
            coherence=64,
            seed=(seed + 2))
        self.image_source = gensemcom.image_source(
            path=image,
            period_s=1.0,
            repeat=False,
            size=0,
            start_delay_s=0.1)
        self.image_sink = gensemcom.image_sink(
            out_dir=out_dir,
            side_by_side=bool(out_dir),
            max_keep=64)
        self.frame_mapper = gensemcom.frame_mapper()
        self.frame_demapper = gensemcom.frame_demapper(max_pending=8)
        self.digital_tx = gensemcom.digital_tx(
            modulation=modulation,
            backend='default',
            code_rate=code_rate,
            max_blocks=4096,
            snr_db=snr_db,
            target_bler=0.01,
            channel='awgn',
            header_repeat=1)
        self.digital_rx = gensemcom.digital_rx(
            modulation=modulation,
            backend='default',
            code_rate=code_rate,
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
            seed=seed)
        self.analog_channel = gensemcom.pdu_channel(
            channel=channel,
            snr_db=snr_db,
            coherence=64,
            seed=(seed + 1))


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.analog_channel, 'out'), (self.frame_demapper, 'analog'))
        self.msg_connect((self.digital_channel, 'out'), (self.digital_rx, 'in'))
        self.msg_connect((self.digital_rx, 'csi'), (self.digital_tx, 'csi'))
        self.msg_connect((self.digital_rx, 'out'), (self.frame_demapper, 'digital'))
        self.msg_connect((self.digital_tx, 'out'), (self.digital_channel, 'in'))
        self.msg_connect((self.frame_demapper, 'out'), (self.semantic_decoder, 'in'))
        self.msg_connect((self.frame_mapper, 'analog'), (self.analog_channel, 'in'))
        self.msg_connect((self.frame_mapper, 'digital'), (self.digital_tx, 'in'))
        self.msg_connect((self.image_source, 'out'), (self.semantic_encoder, 'in'))
        self.msg_connect((self.return_link, 'out'), (self.semantic_encoder, 'feedback'))
        self.msg_connect((self.semantic_decoder, 'out'), (self.image_sink, 'in'))
        self.msg_connect((self.semantic_decoder, 'feedback'), (self.return_link, 'in'))
        self.msg_connect((self.semantic_encoder, 'out'), (self.frame_mapper, 'in'))


    def get_image(self):
        return self.image

    def set_image(self, image):
        self.image = image

    def get_out_dir(self):
        return self.out_dir

    def set_out_dir(self, out_dir):
        self.out_dir = out_dir

    def get_profile(self):
        return self.profile

    def set_profile(self, profile):
        self.profile = profile

    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.analog_channel.set_snr_db(self.snr_db)
        self.digital_channel.set_snr_db(self.snr_db)
        self.digital_tx.set_snr_db(self.snr_db)
        self.return_link.set_snr_db(self.snr_db)
        self.semantic_encoder.set_snr_db(self.snr_db)

    def get_system(self):
        return self.system

    def set_system(self, system):
        self.system = system

    def get_seed(self):
        return self.seed

    def set_seed(self, seed):
        self.seed = seed

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation

    def get_code_rate(self):
        return self.code_rate

    def set_code_rate(self, code_rate):
        self.code_rate = code_rate

    def get_channel(self):
        return self.channel

    def set_channel(self, channel):
        self.channel = channel
        self.analog_channel.set_channel(self.channel)
        self.digital_channel.set_channel(self.channel)



def argument_parser():
    description = "The full semantic link (what `gensemcom link` runs): images through a semantic encoder, its digital part through CRC-32/LDPC/QAM and its analog part as complex symbols, both across a PDU channel, then the frame demapper, semantic decoder and an image sink; the decoder's feedback goes back to the encoder through a return link, for systems with feedback rounds (--system row-refine). Give --image (a file or a folder; empty means the images of the current folder); the script runs until killed (Ctrl-C)."
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--image", dest="image", type=str, default='',
        help="Set Image file or folder (give --image) [default=%(default)r]")
    parser.add_argument(
        "--out-dir", dest="out_dir", type=str, default='semantic_link_out',
        help="Set Output folder [default=%(default)r]")
    parser.add_argument(
        "--profile", dest="profile", type=str, default='embedded',
        help="Set Model profile [default=%(default)r]")
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(10)),
        help="Set SNR (Es/N0, dB) [default=%(default)r]")
    parser.add_argument(
        "--system", dest="system", type=str, default='deepjscc',
        help="Set Semantic system [default=%(default)r]")
    return parser


def main(top_block_cls=semantic_link, options=None):
    if options is None:
        options = argument_parser().parse_args()
    tb = top_block_cls(image=options.image, out_dir=options.out_dir, profile=options.profile, snr_db=options.snr_db, system=options.system)

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
