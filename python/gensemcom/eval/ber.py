"""Monte Carlo BER / BLER of the PHY (uncoded M-QAM and LDPC-coded M-QAM).

Every point states its SNR both as Es/N0 (the module's convention) and Eb/N0 (per
information bit, code rate included). Rayleigh points use block fading with
perfect-CSI zero forcing and calibrated per-symbol LLRs.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, List, Optional

import numpy as np

from ..phy.channels import complex_noise, ebn0_to_esn0, esn0_to_ebn0, equalize, noise_var
from ..phy.qam import QAM, ber_awgn, ber_rayleigh


@dataclass
class BerPoint:
    """One SNR point of a sweep."""

    esn0_db: float
    ebn0_db: float
    bits: int
    bit_errors: int
    ber: float
    blocks: int = 0
    block_errors: int = 0
    bler: Optional[float] = None
    ber_theory: Optional[float] = None
    ber_rel_gap: Optional[float] = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_snrs(spec: str) -> List[float]:
    """Parse ``"0:20:2"`` (start:stop:step, stop included) or ``"1,2.5,4"``."""
    spec = str(spec).strip()
    if ":" in spec:
        parts = [float(p) for p in spec.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError(f"SNR range {spec!r} must be start:stop or start:stop:step")
        start, stop = parts[0], parts[1]
        step = parts[2] if len(parts) == 3 else 1.0
        if step <= 0:
            raise ValueError(f"SNR step must be positive in {spec!r}")
        n = int(np.floor((stop - start) / step + 1e-9)) + 1
        return [round(start + i * step, 6) for i in range(max(n, 0))]
    return [float(p) for p in spec.split(",") if p.strip()]


def _channel(x: np.ndarray, esn0_db: float, channel: str, coherence: int, rng: np.random.Generator):
    n0 = noise_var(esn0_db)
    if channel == "awgn":
        return x + complex_noise(x.size, n0, rng), np.full(x.size, n0)
    if channel == "rayleigh":
        nb = -(-x.size // coherence)
        h = np.repeat(complex_noise(nb, 1.0, rng), coherence)[: x.size]
        y = h * x + complex_noise(x.size, n0, rng)
        return equalize(y, h, n0, "zf")
    raise ValueError(f"unknown channel {channel!r}")


def uncoded_point(order: int, esn0_db: float, channel: str = "awgn", min_errors: int = 1000,
                  max_bits: int = 10_000_000, coherence: int = 64, seed: Optional[int] = None,
                  batch_bits: int = 1 << 20) -> BerPoint:
    """BER of uncoded Gray M-QAM with hard decisions, until ``min_errors`` or ``max_bits``."""
    qam = QAM(order)
    rng = np.random.default_rng(seed)
    m = qam.bits_per_symbol
    batch = max(m, (batch_bits // m) * m)
    bits = errors = 0
    t0 = time.perf_counter()
    while errors < min_errors and bits < max_bits:
        n = min(batch, ((max_bits - bits + m - 1) // m) * m)
        b = rng.integers(0, 2, n, dtype=np.uint8)
        y, _ = _channel(qam.modulate(b), esn0_db, channel, coherence, rng)
        errors += int(np.count_nonzero(qam.demodulate_hard(y) != b))
        bits += n
    theory = float((ber_awgn if channel == "awgn" else ber_rayleigh)(order, esn0_db))
    ber = errors / bits
    return BerPoint(esn0_db, float(esn0_to_ebn0(esn0_db, m)), bits, errors, ber, ber_theory=theory,
                    ber_rel_gap=(ber - theory) / theory if theory > 0 else None,
                    seconds=time.perf_counter() - t0)


def coded_point(code, order: int, esn0_db: float, channel: str = "awgn", min_block_errors: int = 100,
                max_blocks: int = 10_000, batch: int = 256, llr_method: str = "exact",
                coherence: int = 64, seed: Optional[int] = None, max_iter: Optional[int] = None) -> BerPoint:
    """BER and BLER of an LDPC code on Gray M-QAM with soft (LLR) demapping.

    Random information bits, encoded, mapped, sent through the channel, demapped to
    LLRs and decoded; a block error is any wrong information bit. Decoder time is
    reported in ``extra["decode_bps"]`` (information bits per second).
    """
    qam = QAM(order)
    rng = np.random.default_rng(seed)
    m = qam.bits_per_symbol
    bits = errors = blocks = block_errors = 0
    dec_time = 0.0
    t0 = time.perf_counter()
    while block_errors < min_block_errors and blocks < max_blocks:
        nb = min(batch, max_blocks - blocks)
        u = rng.integers(0, 2, (nb, code.k), dtype=np.uint8)
        c = code.encode(u).reshape(-1)
        pad = (-c.size) % m
        y, nv = _channel(qam.modulate(np.concatenate([c, np.zeros(pad, np.uint8)])), esn0_db, channel, coherence, rng)
        llr = qam.demodulate_llr(y, nv, llr_method)[: c.size].reshape(nb, code.n)
        td = time.perf_counter()
        res = code.decode(llr, max_iter=max_iter)
        dec_time += time.perf_counter() - td
        wrong = res.bits != u
        errors += int(np.count_nonzero(wrong))
        block_errors += int(np.count_nonzero(wrong.any(axis=1)))
        bits += u.size
        blocks += nb
    return BerPoint(esn0_db, float(esn0_to_ebn0(esn0_db, m, code.rate)), bits, errors, errors / bits,
                    blocks, block_errors, block_errors / blocks, seconds=time.perf_counter() - t0,
                    extra={"decode_bps": bits / dec_time if dec_time > 0 else None})


def sweep(snrs_esn0: Iterable[float], point: Callable[[float], BerPoint], progress: bool = True,
          desc: str = "SNR sweep") -> List[BerPoint]:
    """Run ``point`` at each Es/N0 with a tqdm progress bar."""
    from tqdm import tqdm

    out = []
    bar = tqdm(list(snrs_esn0), desc=desc, unit="pt", disable=not progress)
    for s in bar:
        p = point(s)
        bar.set_postfix(esn0=f"{s:g}", ber=f"{p.ber:.2e}", bler=("-" if p.bler is None else f"{p.bler:.2e}"))
        out.append(p)
    return out


def to_esn0(snr: float, snr_type: str, bits_per_symbol: int, rate: float) -> float:
    """Convert an SNR given as ``esn0`` or ``ebn0`` to Es/N0 (dB)."""
    if snr_type == "esn0":
        return float(snr)
    if snr_type == "ebn0":
        return float(ebn0_to_esn0(snr, bits_per_symbol, rate))
    raise ValueError(f"unknown SNR type {snr_type!r}: use 'esn0' or 'ebn0'")


def plot_curves(curves: dict, path: str, title: str = "", x: str = "esn0_db") -> None:
    """Plot BER (and BLER) versus SNR for several labelled curves (matplotlib, PNG/PDF/SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (label, pts) in enumerate(curves.items()):
        color = f"C{i}"
        xs = [getattr(p, x) for p in pts]
        ber = [p.ber if p.ber > 0 else np.nan for p in pts]
        ax.semilogy(xs, ber, "o-", color=color, label=f"{label} BER")
        if pts and pts[0].ber_theory is not None:
            ax.semilogy(xs, [p.ber_theory for p in pts], "--", color=color, alpha=0.7, label=f"{label} theory")
        if pts and pts[0].bler is not None:
            ax.semilogy(xs, [p.bler if p.bler > 0 else np.nan for p in pts], "s:", color=color, label=f"{label} BLER")
    ax.set_xlabel("Es/N0 (dB)" if x == "esn0_db" else "Eb/N0 (dB)")
    ax.set_ylabel("error rate")
    ax.set_ylim(1e-6, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
