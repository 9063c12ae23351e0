"""Channels, the SNR convention, and equalisation.

The SNR convention of gr-gensemcom: **SNR is Es/N0 per complex channel symbol, with
average transmitted power 1**. The complex noise has total variance N0 = 10^(-SNR/10),
N0/2 per real dimension. Eb/N0 figures are always labelled and converted explicitly
with :func:`ebn0_to_esn0` / :func:`esn0_to_ebn0`.

Rayleigh fading is complex (h ~ CN(0, 1)), constant over blocks of ``coherence``
symbols and independent between blocks. Receivers equalise with perfect CSI
(:func:`equalize`) or from pilots (:class:`PilotPattern`, LS or LMMSE estimates).
In GNU Radio's ``channels.channel_model`` the same noise is ``noise_voltage =
sqrt(N0)`` (:func:`noise_voltage`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

ArrayLike = Union[np.ndarray, float]


def noise_var(snr_db: float) -> float:
    """Complex noise variance N0 for an Es/N0 of ``snr_db`` with Es = 1."""
    return 10.0 ** (-float(snr_db) / 10.0)


def noise_voltage(snr_db: float) -> float:
    """``noise_voltage`` for GNU Radio's ``channels.channel_model`` at this Es/N0.

    GNU Radio's complex Gaussian noise source of amplitude A has total power A^2, so
    the voltage is sqrt(N0) for a unit-power signal.
    """
    return math.sqrt(noise_var(snr_db))


def ebn0_to_esn0(ebn0_db: ArrayLike, bits_per_symbol: int, code_rate: float = 1.0) -> ArrayLike:
    """Es/N0 (dB) = Eb/N0 (dB) + 10 log10(bits per symbol x code rate)."""
    return np.asarray(ebn0_db) + 10.0 * math.log10(bits_per_symbol * code_rate)


def esn0_to_ebn0(esn0_db: ArrayLike, bits_per_symbol: int, code_rate: float = 1.0) -> ArrayLike:
    """Eb/N0 (dB) = Es/N0 (dB) - 10 log10(bits per symbol x code rate)."""
    return np.asarray(esn0_db) - 10.0 * math.log10(bits_per_symbol * code_rate)


def sigma_from_snr(v, snr_db: Optional[float]) -> float:
    """Std of real Gaussian noise that puts a real vector ``v`` at a per-element SNR:
    ``sqrt(P_v / 10^(snr_db/10))`` with ``P_v = mean(v^2)``, so that
    ``10 log10(P_v / sigma^2) = snr_db``; 0 when ``snr_db`` is None. ``v`` may be a
    numpy array or a torch tensor (noise-robust training of analog payloads: TISC's
    textual inversion draws ``delta ~ N(0, sigma^2 I)`` with it)."""
    if snr_db is None:
        return 0.0
    v = np.asarray(v.detach().float().cpu() if hasattr(v, "detach") else v, dtype=np.float64)
    p = float(np.mean(v ** 2))
    return math.sqrt(p / 10.0 ** (float(snr_db) / 10.0))


def complex_noise(n: int, n0: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of circular complex Gaussian noise of total variance ``n0``."""
    s = math.sqrt(n0 / 2.0)
    return (rng.standard_normal(n) * s + 1j * rng.standard_normal(n) * s).astype(np.complex64)


def average_power(x: np.ndarray) -> float:
    """Mean |x|^2."""
    x = np.asarray(x)
    return float(np.mean(np.abs(x) ** 2)) if x.size else 0.0


@dataclass
class ChannelOutput:
    """What a channel returns.

    Attributes:
        y (np.ndarray): received complex symbols.
        noise_var (float): complex noise variance N0 added.
        h (np.ndarray | None): per-symbol complex gain (None for AWGN: h = 1).
    """

    y: np.ndarray
    noise_var: float
    h: Optional[np.ndarray] = None


class AWGNChannel:
    """Complex AWGN at a given Es/N0 (dB), assuming unit average input power.

    Args:
        snr_db (float): Es/N0 in dB.
        seed (int | None): seed of the noise generator (None: fresh entropy).
    """

    def __init__(self, snr_db: float, seed: Optional[int] = None):
        self.snr_db = float(snr_db)
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray) -> ChannelOutput:
        x = np.asarray(x, dtype=np.complex64).reshape(-1)
        n0 = noise_var(self.snr_db)
        return ChannelOutput(x + complex_noise(x.size, n0, self.rng), n0, None)


class RayleighBlockChannel:
    """Complex Rayleigh block fading plus AWGN: y = h x + n, h ~ CN(0, 1).

    Args:
        snr_db (float): average Es/N0 in dB (E|h|^2 = 1).
        coherence (int): symbols per fading block (h is constant within a block).
        seed (int | None): seed of the fading and noise generator.
    """

    def __init__(self, snr_db: float, coherence: int = 64, seed: Optional[int] = None):
        if int(coherence) < 1:
            raise ValueError(f"coherence must be at least 1 symbol, got {coherence}")
        self.snr_db = float(snr_db)
        self.coherence = int(coherence)
        self.rng = np.random.default_rng(seed)

    def gains(self, n: int) -> np.ndarray:
        """Draw per-symbol gains for ``n`` symbols (one CN(0,1) value per block)."""
        n_blocks = -(-n // self.coherence)
        hb = complex_noise(n_blocks, 1.0, self.rng)
        return np.repeat(hb, self.coherence)[:n]

    def __call__(self, x: np.ndarray) -> ChannelOutput:
        x = np.asarray(x, dtype=np.complex64).reshape(-1)
        h = self.gains(x.size)
        n0 = noise_var(self.snr_db)
        return ChannelOutput(h * x + complex_noise(x.size, n0, self.rng), n0, h)


def make_channel(kind: str, snr_db: float, coherence: int = 64, seed: Optional[int] = None):
    """Build a channel by name: ``"awgn"`` or ``"rayleigh"``."""
    if kind == "awgn":
        return AWGNChannel(snr_db, seed)
    if kind == "rayleigh":
        return RayleighBlockChannel(snr_db, coherence, seed)
    raise ValueError(f"unknown channel {kind!r}: use 'awgn' or 'rayleigh'")


def equalize(y: np.ndarray, h: np.ndarray, n0: ArrayLike, method: str = "zf"):
    """One-tap equalisation with known gains.

    Args:
        y (np.ndarray): received symbols.
        h (np.ndarray): per-symbol channel gains (true or estimated).
        n0 (float | np.ndarray): complex noise variance (per symbol or scalar).
        method (str): ``"zf"`` (x = y / h, unbiased: use for QAM LLRs) or ``"mmse"``
            (x = h* y / (|h|^2 + N0), minimum mean square error for a unit-power
            input: use for analog symbols).

    Returns:
        tuple[np.ndarray, np.ndarray]: the equalised symbols and the per-symbol
        effective noise variance (N0/|h|^2 for ZF; the MMSE error variance
        N0/(|h|^2 + N0) for MMSE).
    """
    y = np.asarray(y)
    h = np.asarray(h)
    g = np.abs(h) ** 2
    n0 = np.broadcast_to(np.asarray(n0, dtype=np.float64), y.shape)
    if method == "zf":
        g_safe = np.maximum(g, 1e-12)
        return (y / np.where(g > 0, h, 1e-6)).astype(np.complex64), n0 / g_safe
    if method == "mmse":
        return (np.conj(h) * y / (g + n0)).astype(np.complex64), n0 / (g + n0)
    raise ValueError(f"unknown equaliser {method!r}: use 'zf' or 'mmse'")


class PilotPattern:
    """Block pilots for block-fading channels, and LS / LMMSE channel estimation.

    Every block of ``block_len`` transmitted symbols starts with ``n_pilots`` known
    pilots followed by ``block_len - n_pilots`` data symbols; the last block may be
    short. Match ``block_len`` to the channel's coherence length.

    Args:
        block_len (int): symbols per block, pilots included.
        n_pilots (int): pilots at the start of each block (>= 1).
        pilot (complex): the pilot symbol (unit power).
    """

    def __init__(self, block_len: int = 64, n_pilots: int = 4, pilot: complex = (1 + 1j) / math.sqrt(2)):
        if n_pilots < 1 or block_len <= n_pilots:
            raise ValueError(f"need 1 <= n_pilots < block_len, got n_pilots={n_pilots}, block_len={block_len}")
        self.block_len = int(block_len)
        self.n_pilots = int(n_pilots)
        self.pilot = complex(pilot)
        self.data_per_block = self.block_len - self.n_pilots

    def n_tx(self, n_data: int) -> int:
        """Transmitted symbols (pilots included) for ``n_data`` data symbols."""
        n_blocks = -(-n_data // self.data_per_block)
        return n_data + n_blocks * self.n_pilots

    def n_data(self, n_tx: int) -> int:
        """Inverse of :meth:`n_tx` (data symbols in ``n_tx`` received symbols)."""
        full, rest = divmod(n_tx, self.block_len)
        return full * self.data_per_block + max(rest - self.n_pilots, 0)

    def _data_mask(self, n_tx: int) -> np.ndarray:
        return (np.arange(n_tx) % self.block_len) >= self.n_pilots

    def insert(self, data: np.ndarray) -> np.ndarray:
        """Interleave pilots with ``data`` symbols."""
        data = np.asarray(data, dtype=np.complex64).reshape(-1)
        n_tx = self.n_tx(data.size)
        out = np.full(n_tx, self.pilot, dtype=np.complex64)
        out[self._data_mask(n_tx)] = data
        return out

    def estimate(self, y: np.ndarray, n0: float = 0.0, method: str = "ls"):
        """Estimate the channel per block from the pilots.

        Args:
            y (np.ndarray): received symbols, pilots included.
            n0 (float): complex noise variance (LMMSE needs it; LS ignores it).
            method (str): ``"ls"`` (mean of y_p / p) or ``"lmmse"`` (the LS estimate
                shrunk by 1 / (1 + N0 / n_pilots), the MMSE estimate for h ~ CN(0,1)).

        Returns:
            tuple[np.ndarray, np.ndarray]: per-symbol estimated gains for the data
            symbols, and the per-symbol variance of the estimation error.
        """
        y = np.asarray(y).reshape(-1)
        n_blocks = -(-y.size // self.block_len)
        pad = n_blocks * self.block_len - y.size
        yb = np.concatenate([y, np.zeros(pad, y.dtype)]).reshape(n_blocks, self.block_len)
        h_ls = yb[:, : self.n_pilots].mean(axis=1) / self.pilot
        err_var_ls = n0 / self.n_pilots
        if method == "ls":
            h, err = h_ls, np.full(n_blocks, err_var_ls)
        elif method == "lmmse":
            shrink = 1.0 / (1.0 + err_var_ls)
            h, err = h_ls * shrink, np.full(n_blocks, err_var_ls * shrink)
        else:
            raise ValueError(f"unknown pilot estimator {method!r}: use 'ls' or 'lmmse'")
        per_sym = np.repeat(h, self.block_len)[: y.size]
        per_err = np.repeat(err, self.block_len)[: y.size]
        mask = self._data_mask(y.size)
        return per_sym[mask], per_err[mask]

    def remove(self, y: np.ndarray) -> np.ndarray:
        """The data symbols of ``y`` (pilots dropped)."""
        y = np.asarray(y).reshape(-1)
        return y[self._data_mask(y.size)]

    def equalize(self, y: np.ndarray, n0: float, estimator: str = "ls", method: str = "zf"):
        """Estimate from pilots, drop them, and equalise the data symbols.

        The estimation error is counted as extra noise (N0 + err) so that LLRs stay
        calibrated.

        Returns:
            tuple[np.ndarray, np.ndarray]: equalised data symbols and their
            effective noise variance.
        """
        h, err = self.estimate(y, n0, estimator)
        return equalize(self.remove(y), h, n0 + err, method)
