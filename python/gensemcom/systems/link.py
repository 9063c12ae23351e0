"""A semantic frame through the PHY core: the same code the GNU Radio blocks use.

``transmit`` packs the frame's digital part (header + payload) onto CRC-32 + LDPC +
M-QAM symbols and its analog part onto power-normalised symbols; ``channel`` applies
AWGN or Rayleigh block fading; ``receive`` equalises fading (ZF for QAM, MMSE for analog
symbols; perfect CSI or pilot LS/LMMSE; on AWGN analog symbols arrive as x + n) and rebuilds the frame, flagging a digital
part that failed its CRC. :func:`run_link` does all three for one image and reports
channel uses (digital and analog separately) and timings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from ..frame import FrameError, SemanticFrame
from ..phy.analog import analog_demap, analog_map
from ..phy.channels import PilotPattern, equalize, make_channel
from ..phy.digital import DigitalLink
from .base import LinkContext, SemanticSystem, as_image


@dataclass
class LinkConfig:
    """PHY settings of a link.

    Attributes:
        modulation (int): QAM order of the digital path.
        backend (str): LDPC backend.
        rate (str): LDPC code rate.
        channel (str): "awgn" or "rayleigh".
        coherence (int): Rayleigh block length (symbols).
        estimator (str): Rayleigh equaliser: "perfect", "ls" or "lmmse".
        n_pilots (int): pilots per coherence block for "ls"/"lmmse".
        seed (int | None): channel seed.
    """

    modulation: int = 16
    backend: str = "default"
    rate: str = "1/2"
    channel: str = "awgn"
    coherence: int = 64
    estimator: str = "perfect"
    n_pilots: int = 4
    seed: Optional[int] = None


@dataclass
class Transmission:
    """Symbols of one frame: digital (QAM) and analog, and the analog scale."""

    digital: np.ndarray
    analog: np.ndarray
    analog_scale: float
    n_digital_bytes: int


@dataclass
class LinkResult:
    """What happened to one image."""

    image: Optional[np.ndarray]
    frame_tx: SemanticFrame
    frame_rx: Optional[SemanticFrame]
    crc_ok: bool
    channel_uses: Dict[str, int]
    timings: Dict[str, float] = field(default_factory=dict)


class FrameLink:
    """Frames over the PHY core.

    Args:
        cfg (LinkConfig): PHY settings.
    """

    def __init__(self, cfg: Optional[LinkConfig] = None):
        self.cfg = cfg or LinkConfig()
        self.digital = DigitalLink(self.cfg.modulation, self.cfg.backend, self.cfg.rate)
        self.pilots = PilotPattern(self.cfg.coherence, self.cfg.n_pilots) if (
            self.cfg.channel == "rayleigh" and self.cfg.estimator in ("ls", "lmmse")) else None
        self._rng_seed = self.cfg.seed

    def context(self, snr_db: Optional[float] = None, budget_symbols: Optional[int] = None) -> LinkContext:
        return LinkContext(snr_db, self.cfg.modulation, self.digital.code.rate, budget_symbols)

    def transmit(self, frame: SemanticFrame) -> Transmission:
        analog, scale = analog_map(frame.analog)
        payload = frame.pack_digital(scale)
        return Transmission(self.digital.transmit(payload), analog, scale, len(payload))

    def channel_uses(self, tx: Transmission) -> Dict[str, int]:
        """Complex channel uses, digital and analog, pilots included."""
        d, a = tx.digital.size, tx.analog.size
        if self.pilots is not None:
            d, a = self.pilots.n_tx(d), self.pilots.n_tx(a)
        return {"digital": int(d), "analog": int(a), "total": int(d + a)}

    def _through(self, x: np.ndarray, snr_db: float, ch_seed, method: str):
        """One path through the channel and the equaliser: (symbols, noise var per symbol)."""
        if x.size == 0:
            return x, np.zeros(0)
        tx = self.pilots.insert(x) if self.pilots is not None else x
        out = make_channel(self.cfg.channel, snr_db, self.cfg.coherence, ch_seed)(tx)
        if out.h is None:  # AWGN: nothing to equalise, analog symbols arrive as x + n
            return out.y, np.full(out.y.size, out.noise_var)
        if self.pilots is not None:
            return self.pilots.equalize(out.y, out.noise_var, self.cfg.estimator, method)
        return equalize(out.y, out.h, out.noise_var, method)

    def receive_digital(self, y: np.ndarray, nv) -> tuple:
        """Digital symbols -> (unpacked frame dict or None, crc_ok)."""
        res = self.digital.receive(y, nv)
        if not res.crc_ok:
            return None, False
        try:
            return SemanticFrame.unpack_digital(res.payload), True
        except FrameError:
            return None, False

    def send(self, frame: SemanticFrame, snr_db: float, rng: Optional[np.random.Generator] = None):
        """Frame through transmitter, channel and receiver.

        Returns:
            tuple[SemanticFrame, bool, Transmission]: the received frame (when the
            digital part, which carries the header, fails its CRC: ``crc_ok`` False,
            empty digital part and header, analog symbols un-scaled), whether the
            digital part passed CRC, and the transmission.
        """
        rng = rng or np.random.default_rng(self._rng_seed)
        tx = self.transmit(frame)
        seeds = rng.integers(0, 2**31, size=2)
        yd, nvd = self._through(tx.digital, snr_db, int(seeds[0]), "zf")
        ya, _ = self._through(tx.analog, snr_db, int(seeds[1]), "mmse")
        head, ok = self.receive_digital(yd, nvd)
        if head is None:
            # the header is lost with the digital part: the analog symbols arrive
            # un-scaled (scale 1) and flagged, for systems that can fall back on them
            rx = SemanticFrame(frame.system, b"", analog_demap(ya, 1.0), {}, dict(frame.meta), False)
            return rx, False, tx
        analog = analog_demap(ya, head["analog_scale"])[: head["analog_len"]]
        rx = SemanticFrame(head["system"], head["digital"], analog, head["header"], dict(frame.meta), True)
        return rx, ok, tx


def run_link(system: SemanticSystem, image: np.ndarray, snr_db: float, link: Optional[FrameLink] = None,
             rng: Optional[np.random.Generator] = None, budget_symbols: Optional[int] = None) -> LinkResult:
    """One image through a semantic system and the PHY: encode, send, decode."""
    link = link or FrameLink()
    image = as_image(image)
    ctx = link.context(snr_db, budget_symbols)
    t = {}
    t0 = time.perf_counter()
    frame = system.encode(image, ctx)
    t["encode_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rx, ok, tx = link.send(frame, snr_db, rng)
    t["phy_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = system.decode(rx, ctx)
    t["decode_s"] = time.perf_counter() - t0
    return LinkResult(out, frame, rx, ok, link.channel_uses(tx), t)
