"""Modulation and coding schemes (MCS) and link adaptation.

An :class:`MCS` is a QAM order and an LDPC code; its index in :data:`CODE_TABLE`
travels in the protected header (:mod:`gensemcom.phy.header`), so a receiver needs no
configuration to decode a payload whose MCS the transmitter chose.

Link adaptation (:func:`select_mcs`): the transmitter picks, from the ladder
:data:`LADDER`, the MCS of highest spectral efficiency whose code-block error rate
at the SNR it is given stays below a target (default 1e-2), reading the BLER table the
project measures and ships (``phy/data/mcs_bler.json``; ``bench/mcs_table.py``
regenerates it: one LDPC code block per trial, AWGN and Rayleigh block fading with
perfect CSI, exact LLRs, the default decoder). Between measured SNRs the BLER is
interpolated in the log domain; below the table's range it counts as 1.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

BLER_TABLE = Path(__file__).resolve().parent / "data" / "mcs_bler.json"
DEFAULT_TARGET_BLER = 1e-2
AUTO = "auto"

#: Codes a header can name: (family, rate). ``"ldpc"`` is the numba/numpy family
#: (5G NR base graph 2 below rate 1/2, IEEE 802.16e from 1/2); ``"none"`` is uncoded.
#: Append only: an index is part of the air format.
CODE_TABLE: Tuple[Tuple[str, str], ...] = (
    ("none", "1"), ("ldpc", "1/5"), ("ldpc", "1/4"), ("ldpc", "1/3"), ("ldpc", "1/2"), ("ldpc", "2/3A"),
    ("ldpc", "2/3B"), ("ldpc", "3/4A"), ("ldpc", "3/4B"), ("ldpc", "5/6"), ("pyldpc", "1/2"),
    ("pyldpc", "1/3"), ("pyldpc", "3/4"), ("grfec", "1/2"), ("grfec", "2/5"), ("grfec", "1/3"), ("grfec", "1/4"))
_ALIASES = {"2/3": "2/3A", "3/4": "3/4A"}
MODULATIONS = (4, 16, 64, 256)


class MCSError(ValueError):
    """An MCS that does not exist or cannot be named on the air."""


def _family(backend: str) -> str:
    return "ldpc" if backend in ("default", "numba", "numpy") else backend


@dataclass(frozen=True)
class MCS:
    """A modulation and coding scheme.

    Attributes:
        modulation (int): QAM order (4, 16, 64 or 256).
        rate (str): code rate label (``"1/2"``, ``"3/4A"``, ...; ``"1"`` uncoded).
        backend (str): LDPC backend that decodes it (``"default"``, ``"numba"``,
            ``"numpy"``, ``"pyldpc"``, ``"grfec"`` or ``"none"``).
    """

    modulation: int
    rate: str
    backend: str = "default"

    def __post_init__(self):
        rate = _ALIASES.get(str(self.rate), str(self.rate))
        object.__setattr__(self, "rate", "1" if self.backend == "none" else rate)
        object.__setattr__(self, "modulation", int(self.modulation))
        if self.modulation not in MODULATIONS:
            raise MCSError(f"modulation must be one of {MODULATIONS}, got {self.modulation}")
        if (_family(self.backend), self.rate) not in CODE_TABLE:
            raise MCSError(f"no code {self.rate!r} in backend {self.backend!r}; "
                           f"codes: {sorted(set(r for _, r in CODE_TABLE))}")

    @property
    def code_id(self) -> int:
        """The code's index in :data:`CODE_TABLE` (sent in the header)."""
        return CODE_TABLE.index((_family(self.backend), self.rate))

    @property
    def bits_per_symbol(self) -> int:
        return int(round(math.log2(self.modulation)))

    @property
    def code_rate(self) -> float:
        return float(Fraction(self.rate.rstrip("AB")))

    @property
    def efficiency(self) -> float:
        """Information bits per channel use (before CRC and framing)."""
        return self.bits_per_symbol * self.code_rate

    @property
    def name(self) -> str:
        mod = {4: "QPSK"}.get(self.modulation, f"{self.modulation}QAM")
        return f"{mod}-{self.rate}"

    @classmethod
    def from_ids(cls, bits_per_symbol: int, code_id: int, backend: str = "default") -> "MCS":
        """The MCS a header names; ``backend`` decodes the "ldpc" family.

        Raises:
            MCSError: unknown ids.
        """
        if not 0 <= code_id < len(CODE_TABLE):
            raise MCSError(f"unknown code id {code_id}")
        family, rate = CODE_TABLE[code_id]
        be = (backend if _family(backend) == "ldpc" else "default") if family == "ldpc" else family
        return cls(1 << int(bits_per_symbol), rate, be)

    def __str__(self) -> str:
        return self.name


#: The adaptation ladder, most robust first.
LADDER: Tuple[MCS, ...] = tuple(MCS(m, r) for m, r in (
    (4, "1/5"), (4, "1/4"), (4, "1/3"), (4, "1/2"), (4, "2/3A"), (4, "3/4A"), (16, "1/2"), (16, "2/3A"),
    (16, "3/4A"), (16, "5/6"), (64, "2/3A"), (64, "3/4A"), (64, "5/6"), (256, "3/4A"), (256, "5/6")))


@functools.lru_cache(maxsize=4)
def load_bler_table(path: Optional[str] = None) -> dict:
    """The measured BLER table: ``{"channels": {channel: {"snr_db": [...], "bler":
    {mcs name: [...]}}}, "meta": {...}}``.

    Raises:
        FileNotFoundError: no table (run ``bench/mcs_table.py``).
    """
    with open(path or BLER_TABLE) as f:
        return json.load(f)


def bler_at(name: str, snr_db: float, channel: str = "awgn", table: Optional[dict] = None) -> float:
    """Interpolated code-block error rate of an MCS at an Es/N0 (dB).

    Returns 1.0 below the measured range and for an MCS the table does not hold.
    """
    chans = (table or load_bler_table())["channels"]
    t = chans.get(channel) or chans["awgn"]
    curve = t["bler"].get(name)
    if curve is None:
        return 1.0
    x = np.asarray(t["snr_db"], float)
    y = np.log10(np.clip(np.asarray(curve, float), 1e-7, 1.0))
    if snr_db < x[0]:
        return 1.0
    return float(10 ** np.interp(float(snr_db), x, y))


def select_mcs(snr_db: Optional[float], target_bler: float = DEFAULT_TARGET_BLER, channel: str = "awgn",
               modulation=AUTO, rate=AUTO, backend: str = "default", table: Optional[dict] = None,
               ladder: Sequence[MCS] = LADDER) -> Tuple[MCS, str]:
    """Link adaptation: the highest-efficiency MCS whose BLER at ``snr_db`` is below
    ``target_bler``, among those matching ``modulation`` and ``rate`` (each fixed or
    ``"auto"``).

    Returns:
        tuple[MCS, str]: the MCS and why it was chosen (for the report). With no SNR,
        or none that qualifies, the most robust candidate.

    Raises:
        MCSError: a fixed modulation/rate pair that no ladder entry matches.
    """
    fixed_m = None if modulation in (AUTO, 0, None) else int(modulation)
    fixed_r = None if rate in (AUTO, None) else _ALIASES.get(str(rate), str(rate))
    if fixed_m is not None and fixed_r is not None:
        m = MCS(fixed_m, fixed_r, backend)
        return m, f"fixed {m.name}"
    cands = [MCS(m.modulation, m.rate, backend) for m in ladder
             if (fixed_m is None or m.modulation == fixed_m) and (fixed_r is None or m.rate == fixed_r)]
    if not cands:
        raise MCSError(f"no MCS in the ladder has modulation {modulation} and rate {rate}")
    cands.sort(key=lambda m: m.efficiency)
    if snr_db is None:
        return cands[0], "no SNR known: the most robust MCS"
    best = None
    for m in cands:
        b = bler_at(m.name, snr_db, channel, table)
        if b <= target_bler:
            best = (m, b)
    if best is None:
        b0 = bler_at(cands[0].name, snr_db, channel, table)
        return cands[0], (f"no MCS reaches BLER {target_bler:g} at {snr_db:.1f} dB ({channel}); the most robust "
                          f"(BLER {b0:.2g})")
    return best[0], (f"highest efficiency with BLER {best[1]:.2g} <= {target_bler:g} at {snr_db:.1f} dB "
                     f"({channel}, shipped table)")


def rate_label(rate) -> str:
    """A code-rate label (``"1/2"``, ``"1/5"``, ...) from a label or a float (0.5, 2/3, ...)."""
    if isinstance(rate, str):
        return rate
    f = Fraction(float(rate)).limit_denominator(16)
    return f"{f.numerator}/{f.denominator}"


def parse_choice(value, kind: str):
    """A CLI/GRC modulation or rate value: ``"auto"`` (or 0 for modulation) or a fixed one."""
    if value in (None, AUTO, "0", 0):
        return AUTO
    return int(value) if kind == "modulation" else str(value)




# ============================================================ measuring the table
def measure_bler(mcs: MCS, snr_db: float, channel: str = "awgn", max_blocks: int = 1000, min_errors: int = 50,
                 coherence: int = 64, rng: Optional[np.random.Generator] = None, batch: int = 50) -> Tuple[int, int]:
    """Code-block errors of one MCS at one Es/N0: (errors, blocks).

    Random information bits, one LDPC code block per trial (the default ``k``), Gray
    M-QAM, AWGN or Rayleigh block fading (``coherence`` symbols) with perfect CSI and
    zero forcing, exact LLRs, the default decoder; a block is in error when its bits
    differ from those sent. Stops after ``min_errors`` errors or ``max_blocks`` blocks.
    """
    from .channels import equalize, make_channel
    from .digital import make_code
    from .qam import QAM

    rng = rng or np.random.default_rng(0)
    code, qam = make_code(mcs.backend, mcs.rate), QAM(mcs.modulation)
    errors = blocks = 0
    while blocks < max_blocks and errors < min_errors:
        b = min(batch, max_blocks - blocks)
        bits = rng.integers(0, 2, (b, code.k), dtype=np.uint8)
        cw = code.encode(bits).reshape(-1)
        pad = (-cw.size) % qam.bits_per_symbol
        x = qam.modulate(np.concatenate([cw, np.zeros(pad, np.uint8)]))
        out = make_channel(channel, snr_db, coherence, int(rng.integers(0, 2**31)))(x)
        if out.h is None:
            y, nv = out.y, np.full(out.y.size, out.noise_var)
        else:
            y, nv = equalize(out.y, out.h, out.noise_var, "zf")
        llr = qam.demodulate_llr(y, nv)[: b * code.n].reshape(b, code.n)
        dec = code.decode(llr)
        errors += int(np.any(dec.bits != bits, axis=1).sum())
        blocks += b
    return errors, blocks


def measure_bler_table(snrs: Sequence[float], channels: Sequence[str] = ("awgn", "rayleigh"),
                       ladder: Sequence[MCS] = LADDER, max_blocks: int = 1000, min_errors: int = 50,
                       seed: int = 0, progress: bool = True) -> dict:
    """Measure the BLER table :func:`select_mcs` reads (see :func:`measure_bler`).

    Per MCS and channel the SNRs are swept upwards; after two consecutive points
    without an error the rest of the curve is 0 (not simulated).
    """
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    rng = np.random.default_rng(seed)
    snrs = [float(s) for s in snrs]
    out = {"channels": {}, "meta": {"max_blocks": int(max_blocks), "min_errors": int(min_errors), "seed": seed,
                                    "coherence": 64, "estimator": "perfect CSI, zero forcing", "llr": "exact",
                                    "unit": "code-block error rate per Es/N0 (dB)"}}
    jobs = [(c, m) for c in channels for m in ladder]
    bar = tqdm(jobs, desc="MCS BLER", unit="curve") if (progress and tqdm) else jobs
    for channel, m in bar:
        t = out["channels"].setdefault(channel, {"snr_db": snrs, "bler": {}, "blocks": {}})
        curve, counts, clean = [], [], 0
        for s in snrs:
            if clean >= 2:
                curve.append(0.0)
                counts.append(0)
                continue
            e, b = measure_bler(m, s, channel, max_blocks, min_errors, rng=rng)
            curve.append(e / b)
            counts.append(b)
            clean = clean + 1 if e == 0 else 0
        t["bler"][m.name], t["blocks"][m.name] = curve, counts
    return out


__all__ = ["AUTO", "CODE_TABLE", "DEFAULT_TARGET_BLER", "LADDER", "MCS", "MCSError", "bler_at", "load_bler_table",
           "measure_bler", "measure_bler_table", "parse_choice", "rate_label", "select_mcs"]
