"""The interface every semantic system implements.

A system is a transmitter (:meth:`SemanticSystem.encode`: image -> SemanticFrame)
and a receiver (:meth:`SemanticSystem.decode`: received SemanticFrame -> image). The
PHY in between (:class:`gensemcom.link.FrameLink`, or the blocks of a flowgraph) is
shared by every system, so systems compare at equal channel uses under one SNR
convention.

A system may hold a conversation: after decoding round ``r`` the receiver may answer
with a **feedback frame** (:meth:`SemanticSystem.feedback`), carried over a return
link back to the transmitter, which encodes round ``r + 1`` knowing it
(``ctx.feedback``). What a side must remember between rounds lives in ``ctx.state``,
a dict the link keeps per exchange and per side (never in the system object, so one
system serves many exchanges at once). One-shot systems ignore all of this.

Images are ``uint8`` numpy arrays of shape (H, W, 3), RGB.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..frame import SemanticFrame

#: the model profiles, in order: Hugging Face models (GPU), small shipped weights, random test models
PROFILES = ("full", "embedded", "tiny")
#: the largest image a receiver renders (pixels): every size read from the air is checked against it
MAX_IMAGE_PIXELS = 4096 * 4096


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
        header_repeat (int): copies of the protected header block the link sends (its
            channel uses count in the budget).
        round (int): the exchange's round, 0 for the first transmission.
        feedback (SemanticFrame | None): at the transmitter in round ``r > 0``, the
            receiver's feedback frame as it arrived over the return link (``crc_ok``
            False when it was lost).
        state (dict): this side's memory of the exchange, kept by the link between
            rounds (empty in round 0).
        session (str): the exchange's id.
        task (str): at the receiver, what its application needs from the exchange
            (a class label such as "person", or free text), for task-adaptive systems
            that put it in their feedback; empty: no task.
    """

    snr_db: Optional[float] = None
    modulation: int = 16
    code_rate: float = 0.5
    budget_symbols: Optional[int] = None
    header_repeat: int = 1
    round: int = 0
    feedback: Optional[SemanticFrame] = None
    state: Dict[str, Any] = field(default_factory=dict)
    session: str = ""
    task: str = ""


@dataclass(frozen=True)
class Option:
    """A constructor option a system declares (for ``build``, the CLI and the docs).

    Attributes:
        name (str): keyword argument name.
        default: its default (None: the profile's default).
        help (str): one line for ``--help``.
        choices (tuple): allowed values, when a closed set.
    """

    name: str
    default: Any = None
    help: str = ""
    choices: Tuple[Any, ...] = ()


class SemanticSystem(abc.ABC):
    """A semantic transmitter/receiver pair.

    Subclasses are registered with :func:`gensemcom.systems.register_system`, which
    sets :attr:`name` and :attr:`profiles`; they implement :meth:`encode` and
    :meth:`decode`, take ``profile`` and ``device`` keyword arguments plus the options
    they declare in :attr:`OPTIONS`. ``decode`` returns None when the frame cannot be
    turned into an image (a lost digital part, for example); the caller reports that
    as a failure.

    Attributes:
        name (str): the registered system name.
        profiles (tuple[str, ...]): the profiles this class serves.
        OPTIONS (tuple[Option, ...]): the constructor options beyond profile and device.
        max_rounds (int): the most rounds an exchange may take (1: one-shot).
        rate_matched (bool): a digital-only system that fills a channel-use budget
            (``ctx.budget_symbols``) at the link's modulation and code rate; ``gensemcom
            eval`` sweeps those and reports the best per SNR as ``<name>-envelope``.

    What the transmitter reports about an image (a caption, a loss) goes in
    ``frame.meta["report"]`` (a flat dict of plain values); links copy it into their
    reports as it is.
    """

    name: str = "base"
    profiles: Tuple[str, ...] = ()
    OPTIONS: Tuple[Option, ...] = ()
    max_rounds: int = 1
    rate_matched: bool = False

    @abc.abstractmethod
    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        """Image (H, W, 3) uint8 -> frame to transmit (round ``ctx.round``)."""

    @abc.abstractmethod
    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        """Received frame -> image (H, W, 3) uint8, or None when it cannot."""

    def received_text(self, frame: SemanticFrame) -> Optional[str]:
        """The text the receiver read from ``frame`` (a caption, a hybrid prompt), for
        reports and displays; None when the system sends none or it did not arrive
        intact (the default: systems without text)."""
        return None

    def feedback(self, frame: SemanticFrame, image: Optional[np.ndarray],
                 ctx: LinkContext) -> Optional[SemanticFrame]:
        """After decoding round ``ctx.round`` into ``image``: the receiver's feedback
        frame for the transmitter, or None when the exchange is complete (the default:
        one-shot systems). Called only while ``ctx.round + 1 < max_rounds``."""
        return None


def as_image(x: np.ndarray) -> np.ndarray:
    """Validate and return an (H, W, 3) uint8 image; raises ValueError otherwise."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {x.dtype}")
    return x


def header_size(value) -> Optional[Tuple[int, int]]:
    """An image size ``[H, W]`` read from a received header, validated before anything
    is allocated: two integers of at least 1 whose product is at most
    :data:`MAX_IMAGE_PIXELS`. Returns ``(H, W)``, or None for anything else (a header
    that passed its CRC may still be hostile)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    h, w = value
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (h, w)) or h * w > MAX_IMAGE_PIXELS:
        return None
    return int(h), int(w)
