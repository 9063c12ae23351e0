"""The interface every semantic system implements, and the system registry.

A system is a transmitter (:meth:`SemanticSystem.encode`: image -> SemanticFrame)
and a receiver (:meth:`SemanticSystem.decode`: received SemanticFrame -> image). The
PHY in between (:mod:`gensemcom.systems.link`) is shared by every system, so systems
compare at equal channel uses under one SNR convention.

Images are ``uint8`` numpy arrays of shape (H, W, 3), RGB.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from ..frame import SemanticFrame


@dataclass
class LinkContext:
    """What a system may know about the link when it encodes or decodes.

    Attributes:
        snr_db (float | None): the channel's Es/N0 (dB), when known (fed back to the
            transmitter, or estimated at the receiver).
        modulation (int): QAM order of the digital path.
        code_rate (float): LDPC code rate of the digital path.
        budget_symbols (int | None): complex channel uses the system may spend per
            image (for rate-matched systems such as JPEG2000 + LDPC).
    """

    snr_db: Optional[float] = None
    modulation: int = 16
    code_rate: float = 0.5
    budget_symbols: Optional[int] = None


class SemanticSystem(abc.ABC):
    """A semantic transmitter/receiver pair.

    Subclasses set :attr:`name` and implement :meth:`encode` and :meth:`decode`.
    ``decode`` returns None when the frame cannot be turned into an image (a lost
    digital part, for example); the caller reports that as a failure.
    """

    name: str = "base"

    @abc.abstractmethod
    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        """Image (H, W, 3) uint8 -> frame to transmit."""

    @abc.abstractmethod
    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        """Received frame -> image (H, W, 3) uint8, or None when it cannot."""


_REGISTRY: Dict[str, Callable[..., SemanticSystem]] = {}


def register_system(name: str):
    """Class decorator: make a system constructible by name (:func:`make_system`)."""

    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def make_system(name: str, **kwargs) -> SemanticSystem:
    """Construct a registered system by name (importing the built-in systems first)."""
    from . import _load_builtin  # noqa: F401  (registers the built-in systems)

    if name not in _REGISTRY:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name](**kwargs)


def system_names():
    from . import _load_builtin  # noqa: F401

    return sorted(_REGISTRY)


def as_image(x: np.ndarray) -> np.ndarray:
    """Validate and return an (H, W, 3) uint8 image; raises ValueError otherwise."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {x.dtype}")
    return x
