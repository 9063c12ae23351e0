"""Semantic systems: one module per system, each a transmitter and a receiver.

``make_system(name)`` builds one; :mod:`.link` carries frames over the PHY core.
"""
from .base import LinkContext, SemanticSystem, make_system, register_system, system_names  # noqa: F401
