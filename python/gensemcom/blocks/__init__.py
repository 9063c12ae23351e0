"""The GNU Radio blocks: one block per file, file name = block name = GRC id
(``grc/gensemcom_<name>.block.yml``). Each is a thin adapter over the pure core
(``phy``, ``frame``, ``link``, ``systems``, ``worker``); ``pdu_utils`` holds what they
share (PDU parsing, metadata keys, counting of received/sent/dropped messages) and
``worker_block`` the base of the blocks that call the inference worker.
"""
from .analog_demapper import analog_demapper
from .analog_mapper import analog_mapper
from .burst_framer import burst_framer
from .burst_rx import burst_rx
from .burst_tx import burst_tx
from .diffusion_decoder import diffusion_decoder
from .digital_rx import digital_rx
from .digital_tx import digital_tx
from .equalizer import equalizer
from .frame_demapper import frame_demapper
from .frame_mapper import frame_mapper
from .image_display import image_display
from .image_sink import image_sink
from .image_source import image_source
from .inference_call import inference_call
from .link_monitor import link_monitor
from .ota_rx import ota_rx
from .ota_tx import ota_tx
from .pdu_channel import pdu_channel
from .pilot_inserter import pilot_inserter
from .return_link import return_link
from .semantic_decoder import semantic_decoder
from .semantic_encoder import semantic_encoder
from .semantic_link import semantic_link
from .stream_channel import stream_channel

__all__ = [
    "analog_demapper", "analog_mapper", "burst_framer", "burst_rx", "burst_tx", "diffusion_decoder", "digital_rx",
    "digital_tx", "equalizer", "frame_demapper", "frame_mapper", "image_display", "image_sink", "image_source",
    "inference_call", "link_monitor", "ota_rx", "ota_tx", "pdu_channel", "pilot_inserter", "return_link",
    "semantic_decoder", "semantic_encoder", "semantic_link", "stream_channel",
]
