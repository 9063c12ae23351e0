"""Semantic systems: one module (or package) per paper, each a transmitter and a receiver.

:func:`build` constructs one by name and profile (:mod:`.registry`);
:class:`gensemcom.link.FrameLink` carries its frames over the PHY core. Adding a
system: see "Adding a system" in the README.
"""
from .base import PROFILES, LinkContext, Option, SemanticSystem, as_image  # noqa: F401
from .registry import (SystemSpec, UnknownSystem, UnsupportedProfile, build, check, describe, get,  # noqa: F401
                       names, register_system)
