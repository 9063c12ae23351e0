"""Gray-coded square M-QAM with exact and max-log LLR demapping.

Conventions (shared by the whole PHY):

* average symbol energy Es = 1 (the constellation is normalised);
* the SNR is Es/N0 per complex symbol, with complex noise of total variance N0
  (N0/2 per real dimension), see :mod:`gensemcom.phy.channels`;
* LLR = log P(b=0 | y) / P(b=1 | y): positive means bit 0;
* a symbol carries ``log2(M)`` bits, most significant first; the first half of the
  bits select the in-phase PAM level and the second half the quadrature level, each
  Gray coded, so the square constellation is Gray coded in both dimensions.

Because the I and Q rails of a square QAM are independent PAMs with independent noise,
both demappers work per rail over sqrt(M) levels, which is exact, not an approximation.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
from scipy.special import erfc, logsumexp

SUPPORTED_ORDERS = (4, 16, 64, 256)

ArrayLike = Union[np.ndarray, float]


def _gray(i: np.ndarray) -> np.ndarray:
    return i ^ (i >> 1)


class QAM:
    """Gray-coded square M-QAM mapper and soft demapper.

    Args:
        order (int): constellation size M, one of 4, 16, 64, 256.

    Attributes:
        order (int): M.
        bits_per_symbol (int): log2(M).
        constellation (np.ndarray): complex64 array of M points indexed by the integer
            whose binary expansion (MSB first) is the bit label.
    """

    def __init__(self, order: int = 16):
        if order not in SUPPORTED_ORDERS:
            raise ValueError(f"QAM order must be one of {SUPPORTED_ORDERS}, got {order!r}")
        self.order = int(order)
        self.bits_per_symbol = int(math.log2(order))
        self._half = self.bits_per_symbol // 2
        self._levels_per_rail = 1 << self._half
        L = self._levels_per_rail
        self.scale = math.sqrt(3.0 / (2.0 * (order - 1)))
        # PAM level of index i is (2i - L + 1); level index i carries Gray label gray(i)
        idx = np.arange(L)
        self._rail_levels = ((2 * idx - L + 1) * self.scale).astype(np.float64)
        label_to_index = np.empty(L, dtype=np.int64)
        label_to_index[_gray(idx)] = idx
        self._label_to_level = self._rail_levels[label_to_index]  # rail label -> amplitude
        # bit j (MSB first) of each rail label, shape (half, L) over the level index
        labels_of_level = _gray(idx)
        self._rail_bits = np.array(
            [(labels_of_level >> (self._half - 1 - j)) & 1 for j in range(self._half)], dtype=np.uint8
        )
        lab = np.arange(order)
        i_lab, q_lab = lab >> self._half, lab & (L - 1)
        self.constellation = (self._label_to_level[i_lab] + 1j * self._label_to_level[q_lab]).astype(np.complex64)
        self._weights = 1 << np.arange(self._half - 1, -1, -1)

    def __repr__(self) -> str:
        return f"QAM({self.order})"

    # ------------------------------------------------------------------ mapping
    def modulate(self, bits: np.ndarray) -> np.ndarray:
        """Map bits to unit-average-energy symbols.

        Args:
            bits (np.ndarray): 0/1 values, 1-D, length a multiple of ``bits_per_symbol``.

        Returns:
            np.ndarray: complex64 symbols, ``len(bits) // bits_per_symbol`` of them.

        Raises:
            ValueError: if the length is not a multiple of ``bits_per_symbol``.
        """
        bits = np.asarray(bits).reshape(-1)
        m = self.bits_per_symbol
        if bits.size % m:
            raise ValueError(f"{bits.size} bits is not a multiple of {m} bits per {self.order}-QAM symbol")
        b = bits.reshape(-1, 2, self._half).astype(np.int64)
        rail_labels = b @ self._weights
        amps = self._label_to_level[rail_labels]
        return (amps[:, 0] + 1j * amps[:, 1]).astype(np.complex64)

    def symbols_for(self, n_bits: int) -> int:
        """Number of symbols that carry ``n_bits`` bits (the last one zero-padded)."""
        return -(-int(n_bits) // self.bits_per_symbol)

    # ---------------------------------------------------------------- demapping
    def demodulate_hard(self, y: np.ndarray) -> np.ndarray:
        """Nearest-point decisions, returned as bits (uint8, MSB first per symbol)."""
        y = np.asarray(y).reshape(-1)
        out = np.empty((y.size, 2, self._half), dtype=np.uint8)
        for r, rail in enumerate((y.real, y.imag)):
            idx = self._nearest_level(rail)
            out[:, r, :] = self._rail_bits[:, idx].T
        return out.reshape(-1)

    def _nearest_level(self, rail: np.ndarray) -> np.ndarray:
        L = self._levels_per_rail
        idx = np.rint((rail / self.scale + L - 1) / 2.0)
        return np.clip(idx, 0, L - 1).astype(np.int64)

    def demodulate_llr(self, y: np.ndarray, noise_var: ArrayLike, method: str = "exact") -> np.ndarray:
        """Soft demapping to bit LLRs (positive means 0).

        Args:
            y (np.ndarray): received (equalised) complex symbols, 1-D.
            noise_var (float | np.ndarray): complex noise variance N0 seen by each
                symbol, a scalar or one value per symbol (after zero-forcing
                equalisation this is N0 / |h|^2).
            method (str): ``"exact"`` (log-sum-exp over the constellation) or
                ``"maxlog"`` (max-log approximation).

        Returns:
            np.ndarray: float64 LLRs, ``len(y) * bits_per_symbol`` of them, in the
            bit order of :meth:`modulate`.

        Raises:
            ValueError: on an unknown method or a non-positive noise variance.
        """
        if method not in ("exact", "maxlog"):
            raise ValueError(f"unknown LLR method {method!r}: use 'exact' or 'maxlog'")
        y = np.asarray(y).reshape(-1)
        nv = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), y.shape)
        if np.any(~(nv > 0)):
            raise ValueError("noise variance must be positive and finite")
        half_var = nv[:, None] / 2.0  # per real dimension
        out = np.empty((y.size, 2, self._half), dtype=np.float64)
        bits = self._rail_bits.astype(bool)  # (half, L)
        for r, rail in enumerate((y.real, y.imag)):
            # log-likelihood of each PAM level: -(y - a)^2 / (2 * N0/2)
            metric = -((rail[:, None] - self._rail_levels[None, :]) ** 2) / (2.0 * half_var)
            for j in range(self._half):
                m0, m1 = metric[:, ~bits[j]], metric[:, bits[j]]
                if method == "exact":
                    out[:, r, j] = logsumexp(m0, axis=1) - logsumexp(m1, axis=1)
                else:
                    out[:, r, j] = m0.max(axis=1) - m1.max(axis=1)
        return out.reshape(-1)


def ber_awgn(order: int, esn0_db: ArrayLike) -> np.ndarray:
    """Exact bit error rate of Gray-coded square M-QAM on AWGN.

    Cho and Yoon, "On the general BER expression of one- and two-dimensional amplitude
    modulations", IEEE Trans. Commun. 50(7), 2002, eq. (14)-(16), written in Es/N0.

    Args:
        order (int): M, one of 4, 16, 64, 256.
        esn0_db (float | np.ndarray): Es/N0 in dB per complex symbol.

    Returns:
        np.ndarray: the bit error probability at each SNR.
    """
    if order not in SUPPORTED_ORDERS:
        raise ValueError(f"QAM order must be one of {SUPPORTED_ORDERS}, got {order!r}")
    gamma = 10.0 ** (np.asarray(esn0_db, dtype=np.float64) / 10.0)
    sqrt_m = int(round(math.sqrt(order)))
    n_rail_bits = int(math.log2(sqrt_m))
    arg = np.sqrt(3.0 * gamma / (2.0 * (order - 1)))
    total = np.zeros_like(gamma)
    for k in range(1, n_rail_bits + 1):
        pk = np.zeros_like(gamma)
        for i in range(int((1 - 2.0 ** -k) * sqrt_m)):
            w = (-1) ** math.floor(i * 2 ** (k - 1) / sqrt_m) * (
                2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / sqrt_m + 0.5)
            )
            pk += w * erfc((2 * i + 1) * arg)
        total += pk / sqrt_m
    return total / n_rail_bits


def ber_rayleigh(order: int, esn0_db: ArrayLike) -> np.ndarray:
    """BER of Gray M-QAM on flat Rayleigh fading with perfect CSI (average Es/N0).

    Averages :func:`ber_awgn` over the exponential distribution of the instantaneous
    SNR by adaptive quadrature (``scipy.integrate.quad``, substituting g = t^2 to
    remove the square-root singularity at zero).
    """
    from scipy.integrate import quad

    def one(mean_db: float) -> float:
        mean = 10.0 ** (mean_db / 10.0)

        def f(t):
            g = t * t
            return float(ber_awgn(order, 10.0 * np.log10(g))) * np.exp(-g / mean) / mean * 2.0 * t if g > 0 else 0.0

        return quad(f, 0.0, np.inf, epsabs=1e-13, epsrel=1e-9, limit=200)[0]

    out = np.array([one(v) for v in np.atleast_1d(np.asarray(esn0_db, dtype=np.float64))])
    return out if np.ndim(esn0_db) else out[0]
