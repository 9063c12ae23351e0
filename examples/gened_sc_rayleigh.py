#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom GenED-SC over Rayleigh fading
# Author: gr-gensemcom
# Description: GenED-SC over Rayleigh fading: an image through the GenED-SC transmitter (an importance mask routes 16x16-pixel patches to a Swin foreground branch or a ResConv-CBAM background branch; 8,192 complex channel uses at 256x256 and CR 1/24, sent uncoded as two named analog segments fg and bg; the patch mask in the protected header; the caption as UTF-8 over CRC-32, LDPC rate 1/2 and 16-QAM, the paper's text path), a Rayleigh block-fading channel (perfect-CSI MMSE equaliser; set --channel awgn for AWGN), the receiver (the two decoders and the fusion network, then the editor with the paper's editing prompt and the received caption in the full profile; the embedded profile has no offline editor), then an image sink (PNG files in --out-dir) and a Qt display of sent | received. The SNR slider sets the channels' Es/N0 at run time; --snr-db is its start value. Without --image it sends the bundled examples/data/astronaut.jpg. --profile embedded (shipped models, CPU) or tiny (random models, tests). Headless: QT_QPA_PLATFORM=offscreen. Runs until the window is closed or Ctrl-C.
# GNU Radio version: 3.10.5.1

from packaging.version import Version as StrictVersion

if __name__ == '__main__':
    import ctypes
    import sys
    if sys.platform.startswith('linux'):
        try:
            x11 = ctypes.cdll.LoadLibrary('libX11.so')
            x11.XInitThreads()
        except:
            print("Warning: failed to XInitThreads()")

from gnuradio import gensemcom
from PyQt5 import Qt
from gnuradio import gr
from gnuradio.filter import firdes
from gnuradio.fft import window
import sys
import signal
from argparse import ArgumentParser
from gnuradio.eng_arg import eng_float, intx
from gnuradio import eng_notation
from gnuradio.qtgui import Range, RangeWidget
from PyQt5 import QtCore



from gnuradio import qtgui

class gened_sc_rayleigh(gr.top_block, Qt.QWidget):

    def __init__(self, address='', channel='rayleigh', image='', out_dir='out/gened_sc_rayleigh', profile='embedded', snr_db=10):
        gr.top_block.__init__(self, "gr-gensemcom GenED-SC over Rayleigh fading", catch_exceptions=True)
        Qt.QWidget.__init__(self)
        self.setWindowTitle("gr-gensemcom GenED-SC over Rayleigh fading")
        qtgui.util.check_set_qss()
        try:
            self.setWindowIcon(Qt.QIcon.fromTheme('gnuradio-grc'))
        except:
            pass
        self.top_scroll_layout = Qt.QVBoxLayout()
        self.setLayout(self.top_scroll_layout)
        self.top_scroll = Qt.QScrollArea()
        self.top_scroll.setFrameStyle(Qt.QFrame.NoFrame)
        self.top_scroll_layout.addWidget(self.top_scroll)
        self.top_scroll.setWidgetResizable(True)
        self.top_widget = Qt.QWidget()
        self.top_scroll.setWidget(self.top_widget)
        self.top_layout = Qt.QVBoxLayout(self.top_widget)
        self.top_grid_layout = Qt.QGridLayout()
        self.top_layout.addLayout(self.top_grid_layout)

        self.settings = Qt.QSettings("GNU Radio", "gened_sc_rayleigh")

        try:
            if StrictVersion(Qt.qVersion()) < StrictVersion("5.0.0"):
                self.restoreGeometry(self.settings.value("geometry").toByteArray())
            else:
                self.restoreGeometry(self.settings.value("geometry"))
        except:
            pass

        ##################################################
        # Parameters
        ##################################################
        self.address = address
        self.channel = channel
        self.image = image
        self.out_dir = out_dir
        self.profile = profile
        self.snr_db = snr_db

        ##################################################
        # Variables
        ##################################################
        self.snr = snr = snr_db
        self.seed = seed = 0
        self.modulation = modulation = 16
        self.image_path = image_path = image or gensemcom.sample_image()
        self.estimator = estimator = "perfect" if channel == "rayleigh" else "none"
        self.code_rate = code_rate = "1/2"

        ##################################################
        # Blocks
        ##################################################

        self._snr_range = Range(0, 30, 0.5, snr_db, 200)
        self._snr_win = RangeWidget(self._snr_range, self.set_snr, "SNR (Es/N0, dB)", "counter_slider", float, QtCore.Qt.Horizontal)
        self.top_layout.addWidget(self._snr_win)
        self.semantic_encoder = gensemcom.semantic_encoder(
            system='gened_sc',
            profile=profile,
            snr_db=snr,
            modulation=modulation,
            code_rate=code_rate,
            budget_symbols=0,
            address=address,
            timeout_ms=600000,
            curve_keys='',
            header_repeat=1,
            channel='awgn')
        self.image_source = gensemcom.image_source(
            path=image_path,
            period_s=1.0,
            repeat=False,
            size=0,
            start_delay_s=0.5)
        self.image_sink = gensemcom.image_sink(
            out_dir=out_dir,
            side_by_side=bool(out_dir),
            max_keep=64)
        self.image_display = gensemcom.image_display(
            title='GenED-SC: sent | received',
            side_by_side=True)
        self._image_display_win = self.image_display.widget()
        self.top_layout.addWidget(self._image_display_win)
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
        self.digital_equalizer = gensemcom.equalizer(
            estimator=estimator,
            method='zf',
            block_len=64,
            n_pilots=0,
            noise_var=0.1)
        self.digital_channel = gensemcom.pdu_channel(
            channel=channel,
            snr_db=snr,
            coherence=64,
            seed=seed)
        self.diffusion_decoder = gensemcom.diffusion_decoder(
            system='gened_sc',
            profile=profile,
            address=address,
            timeout_ms=600000,
            curve_keys='')
        self.analog_equalizer = gensemcom.equalizer(
            estimator=estimator,
            method='mmse',
            block_len=64,
            n_pilots=0,
            noise_var=0.1)
        self.analog_channel = gensemcom.pdu_channel(
            channel=channel,
            snr_db=snr,
            coherence=64,
            seed=(seed + 1))


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.analog_channel, 'out'), (self.analog_equalizer, 'in'))
        self.msg_connect((self.analog_equalizer, 'out'), (self.frame_demapper, 'analog'))
        self.msg_connect((self.diffusion_decoder, 'out'), (self.image_display, 'in'))
        self.msg_connect((self.diffusion_decoder, 'out'), (self.image_sink, 'in'))
        self.msg_connect((self.digital_channel, 'out'), (self.digital_equalizer, 'in'))
        self.msg_connect((self.digital_equalizer, 'out'), (self.digital_rx, 'in'))
        self.msg_connect((self.digital_rx, 'csi'), (self.digital_tx, 'csi'))
        self.msg_connect((self.digital_rx, 'out'), (self.frame_demapper, 'digital'))
        self.msg_connect((self.digital_tx, 'out'), (self.digital_channel, 'in'))
        self.msg_connect((self.frame_demapper, 'out'), (self.diffusion_decoder, 'in'))
        self.msg_connect((self.frame_mapper, 'analog'), (self.analog_channel, 'in'))
        self.msg_connect((self.frame_mapper, 'digital'), (self.digital_tx, 'in'))
        self.msg_connect((self.image_source, 'out'), (self.semantic_encoder, 'in'))
        self.msg_connect((self.semantic_encoder, 'out'), (self.frame_mapper, 'in'))


    def closeEvent(self, event):
        self.settings = Qt.QSettings("GNU Radio", "gened_sc_rayleigh")
        self.settings.setValue("geometry", self.saveGeometry())
        self.stop()
        self.wait()

        event.accept()

    def get_address(self):
        return self.address

    def set_address(self, address):
        self.address = address

    def get_channel(self):
        return self.channel

    def set_channel(self, channel):
        self.channel = channel
        self.set_estimator("perfect" if self.channel == "rayleigh" else "none")
        self.analog_channel.set_channel(self.channel)
        self.digital_channel.set_channel(self.channel)

    def get_image(self):
        return self.image

    def set_image(self, image):
        self.image = image
        self.set_image_path(self.image or gensemcom.sample_image())

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
        self.set_snr(self.snr_db)
        self.digital_tx.set_snr_db(self.snr_db)

    def get_snr(self):
        return self.snr

    def set_snr(self, snr):
        self.snr = snr
        self.analog_channel.set_snr_db(self.snr)
        self.digital_channel.set_snr_db(self.snr)
        self.semantic_encoder.set_snr_db(self.snr)

    def get_seed(self):
        return self.seed

    def set_seed(self, seed):
        self.seed = seed

    def get_modulation(self):
        return self.modulation

    def set_modulation(self, modulation):
        self.modulation = modulation

    def get_image_path(self):
        return self.image_path

    def set_image_path(self, image_path):
        self.image_path = image_path

    def get_estimator(self):
        return self.estimator

    def set_estimator(self, estimator):
        self.estimator = estimator

    def get_code_rate(self):
        return self.code_rate

    def set_code_rate(self, code_rate):
        self.code_rate = code_rate



def argument_parser():
    description = "GenED-SC over Rayleigh fading: an image through the GenED-SC transmitter (an importance mask routes 16x16-pixel patches to a Swin foreground branch or a ResConv-CBAM background branch; 8,192 complex channel uses at 256x256 and CR 1/24, sent uncoded as two named analog segments fg and bg; the patch mask in the protected header; the caption as UTF-8 over CRC-32, LDPC rate 1/2 and 16-QAM, the paper's text path), a Rayleigh block-fading channel (perfect-CSI MMSE equaliser; set --channel awgn for AWGN), the receiver (the two decoders and the fusion network, then the editor with the paper's editing prompt and the received caption in the full profile; the embedded profile has no offline editor), then an image sink (PNG files in --out-dir) and a Qt display of sent | received. The SNR slider sets the channels' Es/N0 at run time; --snr-db is its start value. Without --image it sends the bundled examples/data/astronaut.jpg. --profile embedded (shipped models, CPU) or tiny (random models, tests). Headless: QT_QPA_PLATFORM=offscreen. Runs until the window is closed or Ctrl-C."
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--address", dest="address", type=str, default='',
        help="Set Inference worker address (empty starts a local one) [default=%(default)r]")
    parser.add_argument(
        "--channel", dest="channel", type=str, default='rayleigh',
        help="Set Channel (awgn or rayleigh) [default=%(default)r]")
    parser.add_argument(
        "--image", dest="image", type=str, default='',
        help="Set Image file or folder (empty = the bundled astronaut.jpg) [default=%(default)r]")
    parser.add_argument(
        "--out-dir", dest="out_dir", type=str, default='out/gened_sc_rayleigh',
        help="Set Output folder [default=%(default)r]")
    parser.add_argument(
        "--profile", dest="profile", type=str, default='embedded',
        help="Set Model profile (embedded, tiny or full) [default=%(default)r]")
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(10)),
        help="Set Start SNR (Es/N0, dB; the slider moves it) [default=%(default)r]")
    return parser


def main(top_block_cls=gened_sc_rayleigh, options=None):
    if options is None:
        options = argument_parser().parse_args()

    if StrictVersion("4.5.0") <= StrictVersion(Qt.qVersion()) < StrictVersion("5.0.0"):
        style = gr.prefs().get_string('qtgui', 'style', 'raster')
        Qt.QApplication.setGraphicsSystem(style)
    qapp = Qt.QApplication(sys.argv)

    tb = top_block_cls(address=options.address, channel=options.channel, image=options.image, out_dir=options.out_dir, profile=options.profile, snr_db=options.snr_db)

    tb.start()

    tb.show()

    def sig_handler(sig=None, frame=None):
        tb.stop()
        tb.wait()

        Qt.QApplication.quit()

    signal.signal(signal.SIGINT, sig_handler)
    signal.signal(signal.SIGTERM, sig_handler)

    timer = Qt.QTimer()
    timer.start(500)
    timer.timeout.connect(lambda: None)

    qapp.exec_()

if __name__ == '__main__':
    main()
