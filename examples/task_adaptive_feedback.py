#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom task-adaptive regeneration (three phases, feedback)
# Author: gr-gensemcom
# Description: Task-adaptive regeneration (arXiv 2505.07980) as a two-way link. Phase 1: the semantic encoder segments the image and sends the label map over the digital path (CRC-32, LDPC, QAM) across the forward channel. Phase 2: the semantic decoder regenerates the scene with the conditional latent DDPM and sends its task (--task: a class label such as person, car, cyclist or all, or free text such as "the cyclist") back through the return link, which has its own channel SNR (--return-snr-db). Phase 3: the encoder answers with the attention-masked edge patches, and the decoder regenerates with both conditions. The image sink writes both rounds (name_r0.png, name.png). Give --image (a file or a folder); the script runs until killed (Ctrl-C).
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




class task_adaptive_feedback(gr.top_block):

    def __init__(self, image='', out_dir='task_adaptive_out', profile='embedded', return_snr_db=10, snr_db=10, task='person'):
        gr.top_block.__init__(self, "gr-gensemcom task-adaptive regeneration (three phases, feedback)", catch_exceptions=True)

        ##################################################
        # Parameters
        ##################################################
        self.image = image
        self.out_dir = out_dir
        self.profile = profile
        self.return_snr_db = return_snr_db
        self.snr_db = snr_db
        self.task = task

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
            system='task_adaptive',
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
            system='task_adaptive',
            profile=profile,
            address='',
            timeout_ms=60000,
            curve_keys='',
            task=task)
        self.return_link = gensemcom.return_link(
            snr_db=return_snr_db,
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

    def get_return_snr_db(self):
        return self.return_snr_db

    def set_return_snr_db(self, return_snr_db):
        self.return_snr_db = return_snr_db
        self.return_link.set_snr_db(self.return_snr_db)

    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.analog_channel.set_snr_db(self.snr_db)
        self.digital_channel.set_snr_db(self.snr_db)
        self.digital_tx.set_snr_db(self.snr_db)
        self.semantic_encoder.set_snr_db(self.snr_db)

    def get_task(self):
        return self.task

    def set_task(self, task):
        self.task = task

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
    description = 'Task-adaptive regeneration (arXiv 2505.07980) as a two-way link. Phase 1: the semantic encoder segments the image and sends the label map over the digital path (CRC-32, LDPC, QAM) across the forward channel. Phase 2: the semantic decoder regenerates the scene with the conditional latent DDPM and sends its task (--task: a class label such as person, car, cyclist or all, or free text such as "the cyclist") back through the return link, which has its own channel SNR (--return-snr-db). Phase 3: the encoder answers with the attention-masked edge patches, and the decoder regenerates with both conditions. The image sink writes both rounds (name_r0.png, name.png). Give --image (a file or a folder); the script runs until killed (Ctrl-C).'
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--image", dest="image", type=str, default='',
        help="Set Image file or folder (give --image) [default=%(default)r]")
    parser.add_argument(
        "--out-dir", dest="out_dir", type=str, default='task_adaptive_out',
        help="Set Output folder [default=%(default)r]")
    parser.add_argument(
        "--profile", dest="profile", type=str, default='embedded',
        help="Set Model profile [default=%(default)r]")
    parser.add_argument(
        "--return-snr-db", dest="return_snr_db", type=eng_float, default=eng_notation.num_to_str(float(10)),
        help="Set Return-link SNR (Es/N0, dB) [default=%(default)r]")
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(10)),
        help="Set SNR (Es/N0, dB) [default=%(default)r]")
    parser.add_argument(
        "--task", dest="task", type=str, default='person',
        help="Set Receiver task (class label or free text) [default=%(default)r]")
    return parser


def main(top_block_cls=task_adaptive_feedback, options=None):
    if options is None:
        options = argument_parser().parse_args()
    tb = top_block_cls(image=options.image, out_dir=options.out_dir, profile=options.profile, return_snr_db=options.return_snr_db, snr_db=options.snr_db, task=options.task)

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
