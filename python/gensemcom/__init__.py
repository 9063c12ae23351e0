"""gr-gensemcom: generative semantic communication for GNU Radio.

Importable as ``gensemcom`` (pip) and as ``gnuradio.gensemcom`` (CMake install).
The pure-Python core (``phy``, ``systems``, ``models``, ``worker``, ``eval``) never
imports GNU Radio; the GNU Radio blocks are exported here lazily, so
``from gnuradio import gensemcom; gensemcom.digital_tx(...)`` works in GRC-generated
code while ``import gensemcom.phy`` works on a machine without GNU Radio.
"""
import importlib

__version__ = "0.1.0"

# block name -> module that defines it (one module per block, gr_modtool style)
_BLOCKS = {
    "digital_tx": "digital_tx",
    "digital_rx": "digital_rx",
    "analog_mapper": "analog_mapper",
    "analog_demapper": "analog_mapper",
    "pdu_channel": "pdu_channel",
    "pilot_inserter": "pilots",
    "equalizer": "pilots",
    "burst_framer": "stream_glue",
    "burst_tx": "stream_glue",
    "burst_rx": "stream_glue",
    "stream_channel": "stream_channel",
    "inference_call": "inference_call",
}

__all__ = sorted(_BLOCKS)


def __getattr__(name):
    if name in _BLOCKS:
        module = importlib.import_module("." + _BLOCKS[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
