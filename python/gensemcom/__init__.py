"""gr-gensemcom: generative semantic communication for GNU Radio.

Importable as ``gensemcom`` (pip) and as ``gnuradio.gensemcom`` (CMake install).
The pure-Python core (``phy``, ``systems``, ``models``, ``worker``, ``eval``) never
imports GNU Radio. The GNU Radio blocks are exported here, gr_modtool style, when GNU
Radio is importable; on a machine without it (a GPU host running only the inference
worker) the core still imports.
"""
__version__ = "0.1.0"

try:
    from gnuradio import gr as _gr  # noqa: F401
except ImportError:  # no GNU Radio: the core and the worker still work
    _gr = None

if _gr is not None:
    from .analog_mapper import analog_demapper, analog_mapper
    from .digital_rx import digital_rx
    from .digital_tx import digital_tx
    from .image_display import image_display
    from .image_io import image_sink, image_source
    from .inference_call import inference_call
    from .pdu_channel import pdu_channel
    from .ota.blocks import ota_rx, ota_tx
    from .pilots import equalizer, pilot_inserter
    from .semantic_blocks import (diffusion_decoder, frame_demapper, frame_mapper, semantic_decoder,
                                  semantic_encoder)
    from .stream_channel import stream_channel
    from .stream_glue import burst_framer, burst_rx, burst_tx

__all__ = [
    "ota_rx", "ota_tx",
    "diffusion_decoder", "frame_demapper", "frame_mapper", "image_display", "image_sink", "image_source",
    "semantic_decoder", "semantic_encoder",
    "analog_demapper", "analog_mapper", "burst_framer", "burst_rx", "burst_tx", "digital_rx",
    "digital_tx", "equalizer", "inference_call", "pdu_channel", "pilot_inserter", "stream_channel",
]
