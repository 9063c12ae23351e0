"""Semantic adaptation (``--system auto``): per image, the system whose expected quality
at the link's SNR and channel-use budget is best, read from a measured quality table.

The table (:data:`QUALITY_TABLE`, shipped with the weights and made from the first six
Kodak images on AWGN, the command in its ``meta``; ``gensemcom eval ...
--quality-table PATH`` makes one) holds, per channel and per system, the mean of one
metric at each SNR the evaluation swept (the shipped one: **PSNR with lost images
scored 0**, so a system that loses images at an SNR pays for it there) and the channel
uses per pixel the system spent. The transmitter interpolates each candidate's metric
linearly in SNR (clamped to the table's range), drops candidates whose channel uses
(cbr x 3HW) exceed the link's budget, and picks the best; ties go to the fewer channel
uses. Its frame *is* the chosen system's frame, so the receiver learns the choice from
the protected header's system id and decodes with that system; a frame whose header
was lost cannot say which system sent it and is lost. The choice and the reason go
into the frame's report (``auto_choice``, ``auto_reason``).

The chosen system's own rate is adapted too: JPEG2000 + LDPC fills the budget at the MCS
link adaptation picks for the SNR (the table's jpeg2000-ldpc curve is measured that
way), and DeepJSCC conditions on the SNR.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..frame import SemanticFrame
from .base import LinkContext, Option, SemanticSystem, as_image
from .registry import register_system

QUALITY_TABLE = Path(__file__).resolve().parents[1] / "models" / "weights" / "auto_quality.json"
#: the one-shot systems auto may choose, when the table has them
CANDIDATES = ("tisc", "deepjscc", "jpeg2000-ldpc", "prompt-only")


@functools.lru_cache(maxsize=4)
def load_quality_table(path: Optional[str] = None) -> dict:
    """The quality table (see the module docstring).

    Raises:
        FileNotFoundError: no table at ``path`` (default :data:`QUALITY_TABLE`).
    """
    with open(path or QUALITY_TABLE) as f:
        t = json.load(f)
    if not isinstance(t, dict) or "channels" not in t or "metric" not in t:
        raise ValueError(f"{path or QUALITY_TABLE} is not a quality table (needs 'metric' and 'channels')")
    return t


def expected_quality(table: dict, system: str, snr_db: float, channel: str = "awgn") -> Optional[float]:
    """A system's metric at ``snr_db`` from the table (linear in SNR, clamped); None when absent."""
    ch = table["channels"].get(channel) or table["channels"].get("awgn")
    s = (ch or {}).get("systems", {}).get(system)
    if not s:
        return None
    x = np.asarray(ch["snr_db"], float)
    y = np.asarray([np.nan if v is None else v for v in s[table["metric"]]], float)
    ok = np.isfinite(y)
    if not ok.any():
        return None
    return float(np.interp(float(snr_db), x[ok], y[ok]))


def choose(table: dict, snr_db: Optional[float], pixels: int, budget: Optional[int], channel: str = "awgn",
           candidates: Sequence[str] = CANDIDATES, default_snr_db: float = 10.0) -> Tuple[str, str]:
    """(system, why): the candidate with the best expected metric at the SNR whose channel
    uses fit the budget.

    Raises:
        ValueError: no candidate in the table fits.
    """
    snr = default_snr_db if snr_db is None else float(snr_db)
    ch = table["channels"].get(channel) or table["channels"]["awgn"]
    scored = []
    for name in candidates:
        q = expected_quality(table, name, snr, channel)
        if q is None:
            continue
        cbr = float(np.nanmean([np.nan if v is None else v for v in ch["systems"][name].get("cbr", [0.0])]))
        uses = int(math.ceil(cbr * pixels)) if np.isfinite(cbr) else 0
        if budget is not None and uses > budget:
            continue
        scored.append((q, -uses, name, uses))
    if not scored:
        raise ValueError(f"no system in the quality table fits a budget of {budget} channel uses")
    scored.sort(reverse=True)
    q, _, name, uses = scored[0]
    others = ", ".join(f"{n} {v:.2f}" for v, _, n, _ in scored[1:])
    why = (f"best expected {table['metric']} {q:.2f} at {snr:.1f} dB ({channel}, ~{uses} channel uses"
           + (f" of {budget}" if budget is not None else "") + f"); others: {others or 'none'}"
           + (" [no SNR known: assumed]" if snr_db is None else ""))
    return name, why


@register_system("auto", profiles=("embedded", "tiny"), summary="Semantic adaptation: per image, the system with "
                 "the best expected quality at the SNR and budget (measured quality table)")
class AutoSystem(SemanticSystem):
    """Picks a system per image (see the module docstring) and delegates to it.

    Args:
        profile (str): the candidates' profile ("embedded" or "tiny").
        table (str | None): quality table JSON (default: the shipped one).
        channel (str): the table's channel to read ("awgn" or "rayleigh").
        candidates (str): comma-separated systems auto may choose (default: all the
            table has among :data:`CANDIDATES`).
    """

    OPTIONS = (Option("table", None, "quality table JSON (default: the shipped one)"),
               Option("channel", "awgn", "which channel's measurements to read", ("awgn", "rayleigh")),
               Option("candidates", "", "comma-separated systems to choose from (default: the table's)"))

    def __init__(self, profile: str = "embedded", table: Optional[str] = None, channel: str = "awgn",
                 candidates: str = "", **kwargs):
        self.name = "auto"
        self.profile = profile
        self.table = load_quality_table(str(table) if table else None)
        self.channel = channel
        wanted = [c.strip() for c in str(candidates).split(",") if c.strip()] or list(CANDIDATES)
        have = self.table["channels"].get(channel, self.table["channels"].get("awgn", {})).get("systems", {})
        self.candidates = [c for c in wanted if c in have]
        if not self.candidates:
            raise ValueError(f"none of {wanted} is in the quality table ({sorted(have)})")
        self._kwargs = kwargs
        self._systems: Dict[str, SemanticSystem] = {}

    def system(self, name: str) -> SemanticSystem:
        """A candidate system, built on first use."""
        if name not in self._systems:
            from . import registry

            self._systems[name] = registry.build(name, self.profile)
        return self._systems[name]

    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        img = as_image(image)
        name, why = choose(self.table, ctx.snr_db, img.size, ctx.budget_symbols, self.channel, self.candidates)
        frame = self.system(name).encode(img, ctx)
        report = dict(frame.meta.get("report") or {})
        report.update(auto_choice=name, auto_reason=why, auto_metric=self.table["metric"])
        frame.meta["report"] = report
        return frame

    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        if frame.header_ok is False or frame.system not in self.candidates:
            return None  # the header, and with it the sender's system id, was lost
        return self.system(frame.system).decode(frame, ctx)

    def received_text(self, frame: SemanticFrame) -> Optional[str]:
        if frame.header_ok is False or frame.system not in self.candidates:
            return None
        return self.system(frame.system).received_text(frame)
