"""gr-gensemcom: generative semantic communication for GNU Radio.

Importable as ``gensemcom`` (pip) and as ``gnuradio.gensemcom`` (CMake install).
The pure-Python core (``phy``, ``systems``, ``models``, ``worker``, ``eval``) never
imports GNU Radio. The GNU Radio blocks are exported here, gr_modtool style, when GNU
Radio is importable; on a machine without it (a GPU host running only the inference
worker) the core still imports.
"""
__version__ = "0.1.0"

from .image_io import sample_folder, sample_image  # noqa: E402,F401  (the bundled photos, for flowgraphs and GRC)

try:
    from gnuradio import gr as _gr  # noqa: F401
except ImportError:  # no GNU Radio: the core and the worker still work
    _gr = None

if _gr is not None:
    from .blocks import *  # noqa: F401,F403  (the blocks, gr_modtool style)
    from .blocks import __all__
else:
    __all__ = []
