#!/usr/bin/env python3
# -*- coding: utf-8 -*-

#
# SPDX-License-Identifier: GPL-3.0
#
# GNU Radio Python Flow Graph
# Title: gr-gensemcom teaching demo: TISC, DeepJSCC and JPEG2000 + LDPC side by side
# Author: gr-gensemcom
# Description: A teaching demo: the same images through three systems side by side, live. An image source loops over a folder (--image; default the bundled examples/data photos), one image every --period seconds, into one Semantic Link block per system, TISC (a caption over the digital path and a learned token embedding over the analog path, regenerated at the receiver), DeepJSCC (the image as analog symbols) and JPEG2000 + LDPC + QAM (the classical digital baseline). Each shows sent | received; the constellation sinks show the received, equalised symbols of JPEG2000's digital payload and of DeepJSCC's analog path; the link monitor counts images received, frames and images lost and the channel uses of the latest image. The SNR slider and the channel chooser (AWGN / Rayleigh block fading, perfect-CSI equalisation) act on all three links while they run. The models run in the inference worker, never on the GUI thread; a link still busy with an image skips the next one rather than queueing it. --profile embedded (shipped small models, CPU) or tiny (random models, tests); --size crops and scales each image to size x size. Headless: QT_QPA_PLATFORM=offscreen. Runs until the window is closed or Ctrl-C.
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

from PyQt5 import Qt
from PyQt5.QtCore import QObject, pyqtSlot
from gnuradio import qtgui
import sip
from gnuradio import gensemcom
from gnuradio import gr
from gnuradio.filter import firdes
from gnuradio.fft import window
import sys
import signal
from argparse import ArgumentParser
from gnuradio.eng_arg import eng_float, intx
from gnuradio import eng_notation
from gnuradio import gr, pdu
from gnuradio.qtgui import Range, RangeWidget
from PyQt5 import QtCore



from gnuradio import qtgui

class teaching_demo(gr.top_block, Qt.QWidget):

    def __init__(self, address='', channel='awgn', image='', period=3, profile='embedded', size=256, snr_db=10):
        gr.top_block.__init__(self, "gr-gensemcom teaching demo: TISC, DeepJSCC and JPEG2000 + LDPC side by side", catch_exceptions=True)
        Qt.QWidget.__init__(self)
        self.setWindowTitle("gr-gensemcom teaching demo: TISC, DeepJSCC and JPEG2000 + LDPC side by side")
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

        self.settings = Qt.QSettings("GNU Radio", "teaching_demo")

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
        self.period = period
        self.profile = profile
        self.size = size
        self.snr_db = snr_db

        ##################################################
        # Variables
        ##################################################
        self.snr = snr = snr_db
        self.image_folder = image_folder = image or gensemcom.sample_folder()
        self.chan = chan = channel

        ##################################################
        # Blocks
        ##################################################

        self._snr_range = Range(0, 20, 0.5, snr_db, 200)
        self._snr_win = RangeWidget(self._snr_range, self.set_snr, "SNR (Es/N0, dB)", "counter_slider", float, QtCore.Qt.Horizontal)
        self.top_layout.addWidget(self._snr_win)
        # Create the options list
        self._chan_options = ['awgn', 'rayleigh']
        # Create the labels list
        self._chan_labels = ['AWGN', 'Rayleigh block fading']
        # Create the combo box
        # Create the radio buttons
        self._chan_group_box = Qt.QGroupBox("Channel" + ": ")
        self._chan_box = Qt.QHBoxLayout()
        class variable_chooser_button_group(Qt.QButtonGroup):
            def __init__(self, parent=None):
                Qt.QButtonGroup.__init__(self, parent)
            @pyqtSlot(int)
            def updateButtonChecked(self, button_id):
                self.button(button_id).setChecked(True)
        self._chan_button_group = variable_chooser_button_group()
        self._chan_group_box.setLayout(self._chan_box)
        for i, _label in enumerate(self._chan_labels):
            radio_button = Qt.QRadioButton(_label)
            self._chan_box.addWidget(radio_button)
            self._chan_button_group.addButton(radio_button, i)
        self._chan_callback = lambda i: Qt.QMetaObject.invokeMethod(self._chan_button_group, "updateButtonChecked", Qt.Q_ARG("int", self._chan_options.index(i)))
        self._chan_callback(self.chan)
        self._chan_button_group.buttonClicked[int].connect(
            lambda i: self.set_chan(self._chan_options[i]))
        self.top_layout.addWidget(self._chan_group_box)
        self.tisc_link = gensemcom.semantic_link(
            system='tisc',
            profile=profile,
            snr_db=snr,
            channel=chan,
            coherence=64,
            estimator='perfect',
            n_pilots=4,
            modulation='auto',
            code_rate='auto',
            budget_symbols=0,
            address=address,
            seed=(-1),
            task='',
            timeout_ms=120000,
            max_in_flight=1,
            max_symbols=1024,
            curve_keys='')
        self.tisc_display = gensemcom.image_display(
            title='TISC: sent | received',
            side_by_side=True)
        self._tisc_display_win = self.tisc_display.widget()
        self.top_grid_layout.addWidget(self._tisc_display_win, 0, 0, 1, 1)
        for r in range(0, 1):
            self.top_grid_layout.setRowStretch(r, 1)
        for c in range(0, 1):
            self.top_grid_layout.setColumnStretch(c, 1)
        self.monitor = gensemcom.link_monitor(
            title='Links',
            systems='tisc, deepjscc, jpeg2000-ldpc')
        self._monitor_win = self.monitor.widget()
        self.top_grid_layout.addWidget(self._monitor_win, 1, 2, 1, 1)
        for r in range(1, 2):
            self.top_grid_layout.setRowStretch(r, 1)
        for c in range(2, 3):
            self.top_grid_layout.setColumnStretch(c, 1)
        self.jpeg2000_link = gensemcom.semantic_link(
            system='jpeg2000-ldpc',
            profile=profile,
            snr_db=snr,
            channel=chan,
            coherence=64,
            estimator='perfect',
            n_pilots=4,
            modulation='auto',
            code_rate='auto',
            budget_symbols=0,
            address=address,
            seed=(-1),
            task='',
            timeout_ms=120000,
            max_in_flight=1,
            max_symbols=1024,
            curve_keys='')
        self.jpeg2000_display = gensemcom.image_display(
            title='JPEG2000 + LDPC: sent | received',
            side_by_side=True)
        self._jpeg2000_display_win = self.jpeg2000_display.widget()
        self.top_grid_layout.addWidget(self._jpeg2000_display_win, 0, 2, 1, 1)
        for r in range(0, 1):
            self.top_grid_layout.setRowStretch(r, 1)
        for c in range(2, 3):
            self.top_grid_layout.setColumnStretch(c, 1)
        self.image_source = gensemcom.image_source(
            path=image_folder,
            period_s=period,
            repeat=True,
            size=size,
            start_delay_s=0.5)
        self.digital_to_stream = pdu.pdu_to_tagged_stream(gr.types.complex_t, 'packet_len')
        self.digital_constellation = qtgui.const_sink_c(
            1024, #size
            "Digital path: JPEG2000 + LDPC", #name
            1, #number of inputs
            None # parent
        )
        self.digital_constellation.set_update_time(0.10)
        self.digital_constellation.set_y_axis((-2), 2)
        self.digital_constellation.set_x_axis((-2), 2)
        self.digital_constellation.set_trigger_mode(qtgui.TRIG_MODE_FREE, qtgui.TRIG_SLOPE_POS, 0.0, 0, "")
        self.digital_constellation.enable_autoscale(False)
        self.digital_constellation.enable_grid(True)
        self.digital_constellation.enable_axis_labels(True)

        self.digital_constellation.disable_legend()

        labels = ["JPEG2000 + LDPC", '', '', '', '',
            '', '', '', '', '']
        widths = [1, 1, 1, 1, 1,
            1, 1, 1, 1, 1]
        colors = ["blue", "red", "red", "red", "red",
            "red", "red", "red", "red", "red"]
        styles = [0, 0, 0, 0, 0,
            0, 0, 0, 0, 0]
        markers = [0, 0, 0, 0, 0,
            0, 0, 0, 0, 0]
        alphas = [1.0, 1.0, 1.0, 1.0, 1.0,
            1.0, 1.0, 1.0, 1.0, 1.0]

        for i in range(1):
            if len(labels[i]) == 0:
                self.digital_constellation.set_line_label(i, "Data {0}".format(i))
            else:
                self.digital_constellation.set_line_label(i, labels[i])
            self.digital_constellation.set_line_width(i, widths[i])
            self.digital_constellation.set_line_color(i, colors[i])
            self.digital_constellation.set_line_style(i, styles[i])
            self.digital_constellation.set_line_marker(i, markers[i])
            self.digital_constellation.set_line_alpha(i, alphas[i])

        self._digital_constellation_win = sip.wrapinstance(self.digital_constellation.qwidget(), Qt.QWidget)
        self.top_grid_layout.addWidget(self._digital_constellation_win, 1, 0, 1, 1)
        for r in range(1, 2):
            self.top_grid_layout.setRowStretch(r, 1)
        for c in range(0, 1):
            self.top_grid_layout.setColumnStretch(c, 1)
        self.deepjscc_link = gensemcom.semantic_link(
            system='deepjscc',
            profile=profile,
            snr_db=snr,
            channel=chan,
            coherence=64,
            estimator='perfect',
            n_pilots=4,
            modulation='auto',
            code_rate='auto',
            budget_symbols=0,
            address=address,
            seed=(-1),
            task='',
            timeout_ms=120000,
            max_in_flight=1,
            max_symbols=1024,
            curve_keys='')
        self.deepjscc_display = gensemcom.image_display(
            title='DeepJSCC: sent | received',
            side_by_side=True)
        self._deepjscc_display_win = self.deepjscc_display.widget()
        self.top_grid_layout.addWidget(self._deepjscc_display_win, 0, 1, 1, 1)
        for r in range(0, 1):
            self.top_grid_layout.setRowStretch(r, 1)
        for c in range(1, 2):
            self.top_grid_layout.setColumnStretch(c, 1)
        self.analog_to_stream = pdu.pdu_to_tagged_stream(gr.types.complex_t, 'packet_len')
        self.analog_constellation = qtgui.const_sink_c(
            1024, #size
            "Analog path: DeepJSCC", #name
            1, #number of inputs
            None # parent
        )
        self.analog_constellation.set_update_time(0.10)
        self.analog_constellation.set_y_axis((-3), 3)
        self.analog_constellation.set_x_axis((-3), 3)
        self.analog_constellation.set_trigger_mode(qtgui.TRIG_MODE_FREE, qtgui.TRIG_SLOPE_POS, 0.0, 0, "")
        self.analog_constellation.enable_autoscale(False)
        self.analog_constellation.enable_grid(True)
        self.analog_constellation.enable_axis_labels(True)

        self.analog_constellation.disable_legend()

        labels = ["DeepJSCC", '', '', '', '',
            '', '', '', '', '']
        widths = [1, 1, 1, 1, 1,
            1, 1, 1, 1, 1]
        colors = ["red", "red", "red", "red", "red",
            "red", "red", "red", "red", "red"]
        styles = [0, 0, 0, 0, 0,
            0, 0, 0, 0, 0]
        markers = [0, 0, 0, 0, 0,
            0, 0, 0, 0, 0]
        alphas = [1.0, 1.0, 1.0, 1.0, 1.0,
            1.0, 1.0, 1.0, 1.0, 1.0]

        for i in range(1):
            if len(labels[i]) == 0:
                self.analog_constellation.set_line_label(i, "Data {0}".format(i))
            else:
                self.analog_constellation.set_line_label(i, labels[i])
            self.analog_constellation.set_line_width(i, widths[i])
            self.analog_constellation.set_line_color(i, colors[i])
            self.analog_constellation.set_line_style(i, styles[i])
            self.analog_constellation.set_line_marker(i, markers[i])
            self.analog_constellation.set_line_alpha(i, alphas[i])

        self._analog_constellation_win = sip.wrapinstance(self.analog_constellation.qwidget(), Qt.QWidget)
        self.top_grid_layout.addWidget(self._analog_constellation_win, 1, 1, 1, 1)
        for r in range(1, 2):
            self.top_grid_layout.setRowStretch(r, 1)
        for c in range(1, 2):
            self.top_grid_layout.setColumnStretch(c, 1)


        ##################################################
        # Connections
        ##################################################
        self.msg_connect((self.deepjscc_link, 'analog_symbols'), (self.analog_to_stream, 'pdus'))
        self.msg_connect((self.deepjscc_link, 'out'), (self.deepjscc_display, 'in'))
        self.msg_connect((self.deepjscc_link, 'stats'), (self.monitor, 'in'))
        self.msg_connect((self.image_source, 'out'), (self.deepjscc_link, 'in'))
        self.msg_connect((self.image_source, 'out'), (self.jpeg2000_link, 'in'))
        self.msg_connect((self.image_source, 'out'), (self.tisc_link, 'in'))
        self.msg_connect((self.jpeg2000_link, 'digital_symbols'), (self.digital_to_stream, 'pdus'))
        self.msg_connect((self.jpeg2000_link, 'out'), (self.jpeg2000_display, 'in'))
        self.msg_connect((self.jpeg2000_link, 'stats'), (self.monitor, 'in'))
        self.msg_connect((self.tisc_link, 'stats'), (self.monitor, 'in'))
        self.msg_connect((self.tisc_link, 'out'), (self.tisc_display, 'in'))
        self.connect((self.analog_to_stream, 0), (self.analog_constellation, 0))
        self.connect((self.digital_to_stream, 0), (self.digital_constellation, 0))


    def closeEvent(self, event):
        self.settings = Qt.QSettings("GNU Radio", "teaching_demo")
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
        self.set_chan(self.channel)

    def get_image(self):
        return self.image

    def set_image(self, image):
        self.image = image
        self.set_image_folder(self.image or gensemcom.sample_folder())

    def get_period(self):
        return self.period

    def set_period(self, period):
        self.period = period

    def get_profile(self):
        return self.profile

    def set_profile(self, profile):
        self.profile = profile

    def get_size(self):
        return self.size

    def set_size(self, size):
        self.size = size

    def get_snr_db(self):
        return self.snr_db

    def set_snr_db(self, snr_db):
        self.snr_db = snr_db
        self.set_snr(self.snr_db)

    def get_snr(self):
        return self.snr

    def set_snr(self, snr):
        self.snr = snr
        self.deepjscc_link.set_snr_db(self.snr)
        self.jpeg2000_link.set_snr_db(self.snr)
        self.tisc_link.set_snr_db(self.snr)

    def get_image_folder(self):
        return self.image_folder

    def set_image_folder(self, image_folder):
        self.image_folder = image_folder

    def get_chan(self):
        return self.chan

    def set_chan(self, chan):
        self.chan = chan
        self._chan_callback(self.chan)
        self.deepjscc_link.set_channel(self.chan)
        self.jpeg2000_link.set_channel(self.chan)
        self.tisc_link.set_channel(self.chan)



def argument_parser():
    description = "A teaching demo: the same images through three systems side by side, live. An image source loops over a folder (--image; default the bundled examples/data photos), one image every --period seconds, into one Semantic Link block per system, TISC (a caption over the digital path and a learned token embedding over the analog path, regenerated at the receiver), DeepJSCC (the image as analog symbols) and JPEG2000 + LDPC + QAM (the classical digital baseline). Each shows sent | received; the constellation sinks show the received, equalised symbols of JPEG2000's digital payload and of DeepJSCC's analog path; the link monitor counts images received, frames and images lost and the channel uses of the latest image. The SNR slider and the channel chooser (AWGN / Rayleigh block fading, perfect-CSI equalisation) act on all three links while they run. The models run in the inference worker, never on the GUI thread; a link still busy with an image skips the next one rather than queueing it. --profile embedded (shipped small models, CPU) or tiny (random models, tests); --size crops and scales each image to size x size. Headless: QT_QPA_PLATFORM=offscreen. Runs until the window is closed or Ctrl-C."
    parser = ArgumentParser(description=description)
    parser.add_argument(
        "--address", dest="address", type=str, default='',
        help="Set Inference worker address (empty starts a local one) [default=%(default)r]")
    parser.add_argument(
        "--channel", dest="channel", type=str, default='awgn',
        help="Set Start channel (awgn or rayleigh; the chooser switches it) [default=%(default)r]")
    parser.add_argument(
        "--image", dest="image", type=str, default='',
        help="Set Image folder or file (empty = the bundled examples/data photos) [default=%(default)r]")
    parser.add_argument(
        "--period", dest="period", type=eng_float, default=eng_notation.num_to_str(float(3)),
        help="Set Seconds between images [default=%(default)r]")
    parser.add_argument(
        "--profile", dest="profile", type=str, default='embedded',
        help="Set Model profile (embedded, tiny or full) [default=%(default)r]")
    parser.add_argument(
        "--size", dest="size", type=intx, default=256,
        help="Set Image size (crop and scale to size x size; 0 keeps it) [default=%(default)r]")
    parser.add_argument(
        "--snr-db", dest="snr_db", type=eng_float, default=eng_notation.num_to_str(float(10)),
        help="Set Start SNR (Es/N0, dB; the slider moves it) [default=%(default)r]")
    return parser


def main(top_block_cls=teaching_demo, options=None):
    if options is None:
        options = argument_parser().parse_args()

    if StrictVersion("4.5.0") <= StrictVersion(Qt.qVersion()) < StrictVersion("5.0.0"):
        style = gr.prefs().get_string('qtgui', 'style', 'raster')
        Qt.QApplication.setGraphicsSystem(style)
    qapp = Qt.QApplication(sys.argv)

    tb = top_block_cls(address=options.address, channel=options.channel, image=options.image, period=options.period, profile=options.profile, size=options.size, snr_db=options.snr_db)

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
