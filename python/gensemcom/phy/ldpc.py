"""LDPC channel coding for the gensemcom PHY core.

One interface (:class:`LDPCCode`) over several backends:

* ``"numba"``  -- our own decoder: IEEE 802.16e (WiMAX) QC-LDPC codes
  (n = 576 ... 2304, rates 1/2, 2/3A/B, 3/4A/B, 5/6) with linear-time
  dual-diagonal encoding, and the 3GPP 5G NR base graph 2 codes for low rates
  (1/5, 1/4, 1/3; k = 10 z, first 2z systematic bits punctured;
  :class:`NRLDPCCode`), both with a layered normalised min-sum decoder
  (alpha = 0.8; :data:`NR_ALPHA` = 0.7 for NR) compiled with numba,
  vectorised over the z rows of each layer and parallel over frames, with
  per-frame early termination.  A layered sum-product variant
  (``algorithm="spa"``, ~0.15 dB better, ~20x slower) is available through
  :class:`QCLDPCCode` and :class:`NRLDPCCode`.  This is
  :data:`DEFAULT_BACKEND` when numba imports.
* ``"numpy"``  -- the same codes and decoder schedule, vectorised with numpy
  over frames (fallback when numba is missing; much slower).
* ``"pyldpc"`` -- regular Gallager codes built by :func:`pyldpc.make_ldpc`,
  decoded with pyldpc's log-domain BP kernels.
* ``"grfec"``  -- GNU Radio gr-fec's ``ldpc_encoder`` / ``ldpc_decoder``
  (sum-product, probability domain) on the alist codes shipped with GNU Radio.
  ``gnuradio`` is imported lazily, only when this backend is used.

Conventions (shared with the rest of the PHY):

* LLR = log P(bit = 0 | y) / P(bit = 1 | y); positive means 0.
* Bits are ``uint8`` arrays of 0/1, batch first: (B, k) information bits,
  (B, n) codewords.  1-D inputs are accepted and give 1-D outputs.
* Non-finite LLRs are not errors: NaN is treated as 0 (erasure) and +-inf or
  huge values are clipped to +-:data:`LLR_CLIP`.

Example:
    >>> code = get_code("default", "1/2")
    >>> cw = code.encode(np.zeros((4, code.k), np.uint8))
    >>> res = code.decode(10.0 * (1.0 - 2.0 * cw))
    >>> bool(res.ok.all())
    True
"""

from __future__ import annotations

import abc
import functools
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .ldpc_codes import nr_bg2, wimax

__all__ = [
    "DecodeResult",
    "LDPCCode",
    "QCLDPCCode",
    "NRLDPCCode",
    "PyLDPCCode",
    "GrFecLDPCCode",
    "available_backends",
    "get_code",
    "list_codes",
    "DEFAULT_BACKEND",
    "LLR_CLIP",
    "NR_DEFAULT_Z",
    "NR_ALPHA",
]

#: Magnitude at which input LLRs are clipped (also replaces +-inf).
LLR_CLIP = 50.0

#: Default maximum number of decoder iterations (early stopping is per frame).
DEFAULT_MAX_ITER = 50

try:  # numba is optional: the numpy engine is the fallback.
    import numba as _numba

    _HAVE_NUMBA = True
except Exception:  # pragma: no cover - depends on the environment
    _numba = None
    _HAVE_NUMBA = False

#: The best available backend, chosen from ``bench/ldpc_bench.py`` (rate 1/2,
#: Gray QPSK/AWGN, 2-core VM): numba reaches BLER 1e-2 at Eb/N0 ~1.5 dB and
#: decodes ~25 Mbit/s (info bits) at 3 dB; numpy runs the same decoder at
#: ~1.7 Mbit/s; pyldpc and gr-fec need ~0.3-0.5 dB more and are far slower.
DEFAULT_BACKEND: str = "numba" if _HAVE_NUMBA else "numpy"


# --------------------------------------------------------------------------- #
# Result type and base class
# --------------------------------------------------------------------------- #
@dataclass
class DecodeResult:
    """Output of :meth:`LDPCCode.decode`.

    For a 1-D input the fields are a 1-D ``bits`` array and numpy scalars for
    ``ok`` and ``iterations``.

    Attributes:
        bits: (B, k) uint8 decoded information bits.
        ok: (B,) bool, True where the decoder ended on a valid codeword (all
            parity checks satisfied).  False means a detected failure; the
            bits are then the decoder's best guess.
        iterations: (B,) int, decoder iterations used (0 when the hard
            decision of the input was already a codeword).
    """

    bits: np.ndarray
    ok: np.ndarray
    iterations: np.ndarray


class LDPCCode(abc.ABC):
    """Common interface of every LDPC backend.

    Subclasses implement :meth:`_encode` and :meth:`_decode` on validated 2-D
    arrays; the public methods handle shapes, dtypes and LLR sanitising.

    Attributes:
        name: Human readable code name (e.g. ``"wimax-2304-1/2"``).
        backend: Backend name as accepted by :func:`get_code`.
        n: Codeword length.
        k: Number of information bits.
        max_iter: Default maximum number of decoder iterations.
    """

    name: str
    backend: str
    n: int
    k: int
    max_iter: int = DEFAULT_MAX_ITER

    @property
    def rate(self) -> float:
        """Code rate k / n."""
        return self.k / self.n

    @property
    def H(self):  # noqa: N802 - standard notation
        """Parity-check matrix as ``scipy.sparse.csr_matrix`` (m, n), or None.

        The codewords returned by :meth:`encode` satisfy ``H @ c = 0 (mod 2)``.
        """
        return None

    # -- public API ---------------------------------------------------------
    def encode(self, bits) -> np.ndarray:
        """Encode information bits.

        Args:
            bits: (B, k) or (k,) array of 0/1 values (any integer or bool
                dtype).

        Returns:
            (B, n) or (n,) uint8 codewords.

        Raises:
            ValueError: Wrong last dimension, more than 2 dimensions or values
                other than 0/1.
        """
        arr, squeeze = _as_bits_2d(bits, self.k, "bits")
        if arr.shape[0] == 0:
            out = np.zeros((0, self.n), np.uint8)
        else:
            out = np.ascontiguousarray(self._encode(arr), dtype=np.uint8)
        return out[0] if squeeze else out

    def decode(self, llr, max_iter: Optional[int] = None) -> DecodeResult:
        """Decode channel LLRs into information bits.

        Args:
            llr: (B, n) or (n,) float LLRs, positive meaning bit 0.  NaN is
                treated as 0 and values are clipped to +-``LLR_CLIP``.
            max_iter: Maximum iterations (default: ``self.max_iter``).
                Decoding stops early, per frame, once all checks hold.

        Returns:
            A :class:`DecodeResult`.

        Raises:
            ValueError: Wrong last dimension, more than 2 dimensions or
                ``max_iter < 1``.
        """
        arr, squeeze = _as_llr_2d(llr, self.n)
        it = self.max_iter if max_iter is None else int(max_iter)
        if it < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if arr.shape[0] == 0:
            res = DecodeResult(
                np.zeros((0, self.k), np.uint8), np.zeros(0, bool), np.zeros(0, np.int64)
            )
        else:
            bits, ok, iters = self._decode(arr, it)
            res = DecodeResult(
                np.ascontiguousarray(bits, dtype=np.uint8),
                np.asarray(ok, dtype=bool),
                np.asarray(iters, dtype=np.int64),
            )
        if squeeze:
            return DecodeResult(res.bits[0], res.ok[0], res.iterations[0])
        return res

    def check(self, codewords) -> np.ndarray:
        """Return, per frame, whether ``codewords`` satisfy all parity checks.

        Args:
            codewords: (B, n) or (n,) 0/1 array.

        Returns:
            (B,) bool array (numpy scalar for 1-D input).

        Raises:
            NotImplementedError: The backend does not expose H.
        """
        H = self.H
        if H is None:
            raise NotImplementedError(f"backend {self.backend!r} does not expose H")
        arr, squeeze = _as_bits_2d(codewords, self.n, "codewords")
        synd = (H @ arr.T.astype(np.int64)) % 2
        ok = ~np.asarray(synd).any(axis=0)
        return ok[0] if squeeze else ok

    def info(self) -> dict:
        """Describe the code (backend, rate, n, k, name) as a dict."""
        return {
            "backend": self.backend,
            "rate": self.rate_name,
            "n": self.n,
            "k": self.k,
            "name": self.name,
        }

    rate_name: str = ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, backend={self.backend!r}, "
            f"n={self.n}, k={self.k}, rate={self.rate:.4f})"
        )

    # -- backend hooks -------------------------------------------------------
    @abc.abstractmethod
    def _encode(self, bits: np.ndarray) -> np.ndarray:
        """Encode validated (B, k) uint8 bits, B >= 1, into (B, n)."""

    @abc.abstractmethod
    def _decode(self, llr: np.ndarray, max_iter: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode sanitised (B, n) float32 LLRs; return (bits, ok, iterations)."""


def _as_bits_2d(bits, length: int, what: str) -> Tuple[np.ndarray, bool]:
    arr = np.asarray(bits)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{what} must have shape ({length},) or (B, {length}), got {arr.shape}")
    squeeze = arr.ndim == 1
    if squeeze:
        arr = arr[None, :]
    if arr.shape[-1] != length:
        raise ValueError(
            f"{what} must have last dimension {length}, got shape {np.asarray(bits).shape}"
        )
    if arr.dtype != np.uint8:
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        elif np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating):
            if arr.size and not np.isin(arr, (0, 1)).all():
                raise ValueError(f"{what} must contain only 0 and 1")
            arr = arr.astype(np.uint8)
        else:
            raise ValueError(f"{what} must be a numeric 0/1 array, got dtype {arr.dtype}")
    elif arr.size and arr.max() > 1:
        raise ValueError(f"{what} must contain only 0 and 1")
    return np.ascontiguousarray(arr), squeeze


def _as_llr_2d(llr, n: int) -> Tuple[np.ndarray, bool]:
    arr = np.asarray(llr)
    if arr.ndim not in (1, 2):
        raise ValueError(f"llr must have shape ({n},) or (B, {n}), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == bool):
        raise ValueError(f"llr must be a real-valued array, got dtype {arr.dtype}")
    squeeze = arr.ndim == 1
    if squeeze:
        arr = arr[None, :]
    if arr.shape[-1] != n:
        raise ValueError(f"llr must have last dimension {n}, got shape {np.asarray(llr).shape}")
    arr = np.array(arr, dtype=np.float32, copy=True, order="C")
    np.nan_to_num(arr, copy=False, nan=0.0, posinf=LLR_CLIP, neginf=-LLR_CLIP)
    np.clip(arr, -LLR_CLIP, LLR_CLIP, out=arr)
    return arr, squeeze


def _csr_from_rows(rows: List[np.ndarray], n: int):
    import scipy.sparse as sp

    indptr = np.zeros(len(rows) + 1, np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    data = np.ones(indices.size, np.uint8)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n))


# --------------------------------------------------------------------------- #
# Decoder kernels: numba
# --------------------------------------------------------------------------- #
_BIG = np.float32(1e30)

if _HAVE_NUMBA:
    _njit = _numba.njit

    @_njit(cache=True, nogil=True)
    def _nb_syndrome_ok(L, row_ptr, col_idx):  # pragma: no cover - jitted
        m_rows = row_ptr.shape[0] - 1
        for m in range(m_rows):
            par = False
            for j in range(row_ptr[m], row_ptr[m + 1]):
                if L[col_idx[j]] < 0:
                    par = not par
            if par:
                return False
        return True

    @_njit(cache=True, nogil=True, fastmath=True)
    def _nb_nms_frame(L, R, tmp, row_ptr, col_idx, max_iter, alpha, beta):  # pragma: no cover
        """Layered normalised/offset min-sum on one frame (in place on L)."""
        m_rows = row_ptr.shape[0] - 1
        R[:] = 0.0
        if _nb_syndrome_ok(L, row_ptr, col_idx):
            return 0, True
        for it in range(1, max_iter + 1):
            for m in range(m_rows):
                s = row_ptr[m]
                e = row_ptr[m + 1]
                min1 = np.float32(1e30)
                min2 = np.float32(1e30)
                imin = s
                neg = False
                for j in range(s, e):
                    t = L[col_idx[j]] - R[j]
                    tmp[j - s] = t
                    a = abs(t)
                    if t < 0:
                        neg = not neg
                    if a < min1:
                        min2 = min1
                        min1 = a
                        imin = j
                    elif a < min2:
                        min2 = a
                m1 = alpha * min1 - beta
                if m1 < 0:
                    m1 = 0.0
                m2 = alpha * min2 - beta
                if m2 < 0:
                    m2 = 0.0
                for j in range(s, e):
                    t = tmp[j - s]
                    mag = m2 if j == imin else m1
                    if neg != (t < 0):
                        mag = -mag
                    R[j] = mag
                    L[col_idx[j]] = t + mag
            if _nb_syndrome_ok(L, row_ptr, col_idx):
                return it, True
        return max_iter, False

    @_njit(cache=True, nogil=True)
    def _nb_phi(x):  # pragma: no cover - jitted
        # phi(x) = -log(tanh(x / 2)) = log((1 + e^-x) / (1 - e^-x)), self inverse
        if x < 1e-12:
            x = 1e-12
        elif x > 40.0:
            x = 40.0
        e = np.exp(-x)
        return np.log1p(e) - np.log1p(-e)

    @_njit(cache=True, nogil=True)
    def _nb_spa_frame(L, R, tmp, row_ptr, col_idx, max_iter, alpha, beta):  # pragma: no cover
        """Layered sum-product (phi form) on one frame (in place on L)."""
        m_rows = row_ptr.shape[0] - 1
        R[:] = 0.0
        if _nb_syndrome_ok(L, row_ptr, col_idx):
            return 0, True
        for it in range(1, max_iter + 1):
            for m in range(m_rows):
                s = row_ptr[m]
                e = row_ptr[m + 1]
                tot = 0.0
                neg = False
                for j in range(s, e):
                    t = L[col_idx[j]] - R[j]
                    tmp[j - s] = t
                    if t < 0:
                        neg = not neg
                    tot += _nb_phi(abs(t))
                for j in range(s, e):
                    t = tmp[j - s]
                    pj = _nb_phi(abs(t))
                    d = tot - pj
                    mag = _nb_phi(d) if d > 0.0 else 40.0
                    if mag > 40.0:
                        mag = 40.0
                    if neg != (t < 0):
                        mag = -mag
                    R[j] = mag
                    L[col_idx[j]] = t + mag
            if _nb_syndrome_ok(L, row_ptr, col_idx):
                return it, True
        return max_iter, False

    @_njit(cache=True, nogil=True, fastmath=True)
    def _nb_qc_syndrome_ok(L, ent_ptr, ent_col, ent_shift, z, par):  # pragma: no cover
        for i in range(ent_ptr.shape[0] - 1):
            par[:] = 0
            for e in range(ent_ptr[i], ent_ptr[i + 1]):
                base = ent_col[e] * z
                p = ent_shift[e]
                for t in range(z - p):
                    par[t] ^= L[base + t + p] < 0
                for t in range(z - p, z):
                    par[t] ^= L[base + t + p - z] < 0
            for t in range(z):
                if par[t]:
                    return False
        return True

    @_njit(cache=True, nogil=True, fastmath=True)
    def _nb_qc_nms_frame(L, R, ent_ptr, ent_col, ent_shift, z, dmax, max_iter, alpha, beta):  # pragma: no cover
        """Layered normalised/offset min-sum on one frame, vectorised over the
        z rows of each layer (they touch disjoint variables).  In place on L;
        R holds the check-to-variable messages, one z-vector per base entry."""
        T = np.empty((dmax, z), np.float32)
        min1 = np.empty(z, np.float32)
        min2 = np.empty(z, np.float32)
        imin = np.empty(z, np.int32)
        sgn = np.empty(z, np.bool_)
        par = np.empty(z, np.bool_)
        R[:, :] = 0.0
        if _nb_qc_syndrome_ok(L, ent_ptr, ent_col, ent_shift, z, par):
            return 0, True
        for it in range(1, max_iter + 1):
            for i in range(ent_ptr.shape[0] - 1):
                e0 = ent_ptr[i]
                deg = ent_ptr[i + 1] - e0
                min1[:] = 1e30
                min2[:] = 1e30
                imin[:] = 0
                sgn[:] = False
                for d in range(deg):
                    e = e0 + d
                    base = ent_col[e] * z
                    p = ent_shift[e]
                    Td = T[d]
                    Re = R[e]
                    for t in range(z - p):
                        Td[t] = L[base + t + p] - Re[t]
                    for t in range(z - p, z):
                        Td[t] = L[base + t + p - z] - Re[t]
                    for t in range(z):
                        v = Td[t]
                        a = abs(v)
                        m1 = min1[t]
                        lt = a < m1
                        min2[t] = m1 if lt else min(min2[t], a)
                        min1[t] = a if lt else m1
                        imin[t] = d if lt else imin[t]
                        sgn[t] ^= v < 0
                for t in range(z):
                    min1[t] = max(alpha * min1[t] - beta, 0.0)
                    min2[t] = max(alpha * min2[t] - beta, 0.0)
                for d in range(deg):
                    e = e0 + d
                    base = ent_col[e] * z
                    p = ent_shift[e]
                    Td = T[d]
                    Re = R[e]
                    for t in range(z):
                        v = Td[t]
                        mag = min2[t] if imin[t] == d else min1[t]
                        r = -mag if sgn[t] != (v < 0) else mag
                        Re[t] = r
                        Td[t] = v + r
                    for t in range(z - p):
                        L[base + t + p] = Td[t]
                    for t in range(z - p, z):
                        L[base + t + p - z] = Td[t]
            if _nb_qc_syndrome_ok(L, ent_ptr, ent_col, ent_shift, z, par):
                return it, True
        return max_iter, False

    @_njit(cache=True, parallel=True)
    def _nb_qc_nms_batch(llr, ent_ptr, ent_col, ent_shift, z, k, max_iter, alpha, beta,
                         bits, ok, iters):  # pragma: no cover
        n_ent = ent_col.shape[0]
        dmax = 0
        for i in range(ent_ptr.shape[0] - 1):
            dmax = max(dmax, ent_ptr[i + 1] - ent_ptr[i])
        for b in _numba.prange(llr.shape[0]):
            L = llr[b].copy()
            R = np.empty((n_ent, z), np.float32)
            it, good = _nb_qc_nms_frame(L, R, ent_ptr, ent_col, ent_shift, z, dmax,
                                        max_iter, alpha, beta)
            ok[b] = good
            iters[b] = it
            for i in range(k):
                bits[b, i] = 1 if L[i] < 0 else 0

    @_njit(cache=True, nogil=True)
    def _nb_max_degree(row_ptr):  # pragma: no cover - jitted
        dmax = 0
        for m in range(row_ptr.shape[0] - 1):
            d = row_ptr[m + 1] - row_ptr[m]
            if d > dmax:
                dmax = d
        return dmax

    # Two explicit batch kernels (not a factory) so that numba's on-disk cache
    # keys them unambiguously.
    @_njit(cache=True, parallel=True)
    def _nb_nms_batch(llr, row_ptr, col_idx, k, max_iter, alpha, beta, bits, ok, iters):  # pragma: no cover
        n_edges = col_idx.shape[0]
        dmax = _nb_max_degree(row_ptr)
        for b in _numba.prange(llr.shape[0]):
            L = llr[b].copy()
            R = np.empty(n_edges, np.float32)
            tmp = np.empty(dmax, np.float32)
            it, good = _nb_nms_frame(L, R, tmp, row_ptr, col_idx, max_iter, alpha, beta)
            ok[b] = good
            iters[b] = it
            for i in range(k):
                bits[b, i] = 1 if L[i] < 0 else 0

    @_njit(cache=True, parallel=True)
    def _nb_spa_batch(llr, row_ptr, col_idx, k, max_iter, alpha, beta, bits, ok, iters):  # pragma: no cover
        n_edges = col_idx.shape[0]
        dmax = _nb_max_degree(row_ptr)
        for b in _numba.prange(llr.shape[0]):
            L = llr[b].copy()
            R = np.empty(n_edges, np.float32)
            tmp = np.empty(dmax, np.float32)
            it, good = _nb_spa_frame(L, R, tmp, row_ptr, col_idx, max_iter, alpha, beta)
            ok[b] = good
            iters[b] = it
            for i in range(k):
                bits[b, i] = 1 if L[i] < 0 else 0


# --------------------------------------------------------------------------- #
# Our QC-LDPC codes (WiMAX)
# --------------------------------------------------------------------------- #
#: "2/3" -> 2/3A (better waterfall than 2/3B with our decoder); "3/4" -> 3/4A
#: (3/4B has a slightly better waterfall but showed undetected errors).
_WIMAX_ALIASES = {"2/3": "2/3A", "3/4": "3/4A"}
_ALGORITHMS = ("nms", "spa")


class QCLDPCCode(LDPCCode):
    """Quasi-cyclic LDPC code with dual-diagonal parity (IEEE 802.16e family).

    Encoding is systematic and linear time (information bits first).  Decoding
    is layered (row-by-row, i.e. turbo-decoding message passing) with either
    normalised/offset min-sum (``"nms"``) or sum-product (``"spa"``) check
    updates, stopping per frame as soon as the hard decision is a codeword.

    Args:
        base: (mb, nb) base matrix (-1 = zero block, p >= 0 = shift), already
            lifted for ``z``; last mb block columns must be dual-diagonal.
        z: Lifting (circulant) size.
        name: Code name.
        rate_name: Nominal rate label (e.g. ``"1/2"``).
        engine: ``"numba"`` or ``"numpy"``.
        algorithm: ``"nms"`` (layered normalised min-sum) or ``"spa"``
            (layered sum-product).  The numpy engine supports only ``"nms"``.
        alpha: Min-sum normalisation factor (``"nms"`` only).
        beta: Min-sum offset, applied after scaling (``"nms"`` only).
        max_iter: Default maximum number of iterations.
        punct_blocks: Leading (systematic) block columns that are punctured:
            encoded but not transmitted.  :meth:`encode` then returns the
            ``n = n_full - punct_blocks * z`` transmitted bits, :meth:`decode`
            takes their LLRs (the punctured ones enter the decoder as 0) and
            :attr:`H` is the parity-check matrix of the punctured code.

    Attributes:
        n_full: Length of the mother codeword, ``nb * z`` (see
            :meth:`encode_full`); equals ``n`` without puncturing.
        n_punct: Number of punctured bits (the first ``n_punct`` positions of
            the mother codeword).

    Raises:
        ValueError: Bad engine/algorithm or a base matrix without the
            dual-diagonal parity structure.
    """

    def __init__(
        self,
        base: np.ndarray,
        z: int,
        name: str,
        rate_name: str,
        engine: str = DEFAULT_BACKEND,
        algorithm: str = "nms",
        alpha: float = 0.8,
        beta: float = 0.0,
        max_iter: int = DEFAULT_MAX_ITER,
        punct_blocks: int = 0,
    ) -> None:
        if engine not in ("numba", "numpy"):
            raise ValueError(f"engine must be 'numba' or 'numpy', got {engine!r}")
        if engine == "numba" and not _HAVE_NUMBA:
            raise ValueError("engine 'numba' requested but numba is not importable")
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
        if engine == "numpy" and algorithm != "nms":
            raise ValueError("the numpy engine only implements algorithm='nms'")
        self.base = np.asarray(base, dtype=np.int64)
        self.z = int(z)
        mb, nb = self.base.shape
        self.mb, self.nb, self.kb = mb, nb, nb - mb
        if not 0 <= int(punct_blocks) < self.kb:
            raise ValueError(f"punct_blocks must be in [0, {self.kb}), got {punct_blocks}")
        self.n_full = nb * self.z
        self.n_punct = int(punct_blocks) * self.z
        self.n = self.n_full - self.n_punct
        self.k = self.kb * self.z
        self.m = mb * self.z
        self.name = name
        self.rate_name = rate_name
        self.backend = engine
        self.algorithm = algorithm
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.max_iter = int(max_iter)
        #: use the z-vectorised layered kernel (numba, nms); False = per-row CSR kernel
        self.qc_kernel = True
        self._check_structure()
        self._build_graph()

    # -- construction -----------------------------------------------------------
    def _check_structure(self) -> None:
        hb, kb, mb = self.base, self.kb, self.mb
        col = hb[:, kb]
        nz = np.flatnonzero(col >= 0)
        if nz.size != 3 or nz[0] != 0 or nz[-1] != mb - 1 or col[0] != col[-1]:
            raise ValueError(f"{self.name}: first parity column is not of the h_b form")
        self._mid_row = int(nz[1])
        self._mid_shift = int(col[nz[1]])
        par = hb[:, kb + 1:]
        want = -np.ones((mb, mb - 1), np.int64)
        for i in range(mb - 1):
            want[i, i] = 0
            want[i + 1, i] = 0
        if not np.array_equal(par, want):
            raise ValueError(f"{self.name}: parity part is not dual-diagonal")

    def _build_graph(self) -> None:
        z, hb = self.z, self.base
        rows = []
        r = np.arange(z)
        for i in range(self.mb):
            blocks = np.flatnonzero(hb[i] >= 0)
            # row t of layer i connects to variable j*z + (t + p) % z
            cols = np.stack([j * z + (r + hb[i, j]) % z for j in blocks], axis=1)  # (z, d)
            rows.extend(list(cols))
        self._rows = rows
        self._H_full = None
        self._row_ptr = np.zeros(self.m + 1, np.int64)
        self._row_ptr[1:] = np.cumsum([len(x) for x in rows])
        self._col_idx = np.concatenate(rows).astype(np.int64)
        self._H = None
        # numpy engine: per layer variable index tables (z, d_layer)
        self._layers = [np.stack(rows[i * z:(i + 1) * z]) for i in range(self.mb)]
        # QC kernel: base-matrix entries layer by layer (column order)
        ent = [(i, j, int(hb[i, j])) for i in range(self.mb) for j in range(self.nb) if hb[i, j] >= 0]
        self._ent_ptr = np.zeros(self.mb + 1, np.int64)
        self._ent_ptr[1:] = np.cumsum([(hb[i] >= 0).sum() for i in range(self.mb)])
        self._ent_col = np.array([j for _, j, _ in ent], np.int64)
        self._ent_shift = np.array([p for _, _, p in ent], np.int64)
        # encoder: (row, col, shift) of information blocks
        self._enc_terms = [
            (i, j, int(hb[i, j])) for i in range(self.mb) for j in range(self.kb) if hb[i, j] >= 0
        ]

    @property
    def H_full(self):  # noqa: N802 - standard notation
        """Parity-check matrix of the mother code, CSR (m, n_full).

        The words returned by :meth:`encode_full` satisfy it; without
        puncturing it is :attr:`H`.
        """
        if self._H_full is None:
            self._H_full = _csr_from_rows(self._rows, self.n_full)
        return self._H_full

    @property
    def H(self):  # noqa: N802
        """Parity-check matrix of the transmitted words, CSR (m', n).

        With puncturing, each punctured block column is solved from a row in
        which it is the only punctured block (a permutation, inverted by its
        transpose) and substituted into the other rows, which gives
        ``m' = m - n_punct`` checks on the ``n`` transmitted bits.
        """
        if self._H is None:
            self._H = self.H_full if self.n_punct == 0 else self._punctured_H()
        return self._H

    def _punctured_H(self):  # noqa: N802
        z, pb = self.z, self.n_punct // self.z
        solve = []
        for j in range(pb):
            rows = [i for i in range(self.mb)
                    if self.base[i, j] >= 0 and (self.base[i, :pb] >= 0).sum() == 1]
            if not rows:
                raise NotImplementedError(
                    f"{self.name}: no row isolates punctured block column {j}"
                )
            solve.append(rows[0])
        sel = np.concatenate([np.arange(i * z, (i + 1) * z) for i in solve])
        rest = np.setdiff1d(np.arange(self.m), sel)
        hf = self.H_full.astype(np.int64)
        p, t = slice(0, self.n_punct), slice(self.n_punct, self.n_full)
        # punctured bits = S_p^T S_t c_t (S_p is a block-diagonal permutation)
        expand = hf[sel][:, p].T @ hf[sel][:, t]
        h = hf[rest][:, t] + hf[rest][:, p] @ expand
        h.data %= 2
        h.eliminate_zeros()
        return h.astype(np.uint8).tocsr()

    @property
    def n_edges(self) -> int:
        """Number of ones in H (Tanner graph edges)."""
        return int(self._col_idx.size)

    # -- encoding ---------------------------------------------------------------
    def encode_full(self, bits) -> np.ndarray:
        """Encode into mother codewords, punctured positions included.

        Args:
            bits: (B, k) or (k,) 0/1 information bits.

        Returns:
            (B, n_full) or (n_full,) uint8 words satisfying :attr:`H_full`;
            :meth:`encode` returns their last ``n`` positions.
        """
        arr, squeeze = _as_bits_2d(bits, self.k, "bits")
        out = np.ascontiguousarray(self._encode_full(arr), dtype=np.uint8)
        return out[0] if squeeze else out

    def _encode(self, bits: np.ndarray) -> np.ndarray:
        return self._encode_full(bits)[:, self.n_punct:]

    def _encode_full(self, bits: np.ndarray) -> np.ndarray:
        z, mb, kb = self.z, self.mb, self.kb
        B = bits.shape[0]
        lam = _qc_block_sums(bits.reshape(B, kb, z), self._enc_terms, mb)
        par = np.empty((B, mb, z), np.uint8)
        total = np.bitwise_xor.reduce(lam, axis=1)
        p0 = np.roll(total, self._mid_shift, axis=1)  # P^{-x} sum(lambda)
        par[:, 0] = p0
        col = self.base[:, kb]
        acc = np.zeros((B, z), np.uint8)
        for i in range(mb - 1):
            # row i: lambda_i + P^{h_i} p0 + p_i + p_{i+1} = 0  (p_i absent for i = 0)
            acc = acc ^ lam[:, i]
            if col[i] >= 0:
                acc = acc ^ np.roll(p0, -int(col[i]), axis=1)
            par[:, i + 1] = acc
        return np.concatenate([bits, par.reshape(B, mb * z)], axis=1)

    # -- decoding ---------------------------------------------------------------
    def _decode(self, llr: np.ndarray, max_iter: int):
        if self.n_punct:  # punctured bits: no channel information
            llr = np.concatenate([np.zeros((llr.shape[0], self.n_punct), np.float32), llr], axis=1)
        if self.backend == "numba":
            return self._decode_numba(llr, max_iter)
        return self._decode_numpy(llr, max_iter)

    def _decode_numba(self, llr: np.ndarray, max_iter: int):
        B = llr.shape[0]
        bits = np.empty((B, self.k), np.uint8)
        ok = np.empty(B, np.bool_)
        iters = np.empty(B, np.int64)
        if self.algorithm == "nms" and self.qc_kernel:
            _nb_qc_nms_batch(
                llr, self._ent_ptr, self._ent_col, self._ent_shift, self.z, self.k,
                int(max_iter), np.float32(self.alpha), np.float32(self.beta), bits, ok, iters,
            )
        else:
            kern = _nb_nms_batch if self.algorithm == "nms" else _nb_spa_batch
            kern(
                llr, self._row_ptr, self._col_idx, self.k, int(max_iter),
                np.float32(self.alpha), np.float32(self.beta), bits, ok, iters,
            )
        return bits, ok, iters

    def _decode_numpy(self, llr: np.ndarray, max_iter: int):
        B = llr.shape[0]
        alpha, beta = np.float32(self.alpha), np.float32(self.beta)
        L = llr.copy()
        ok = self._syndrome_ok_numpy(L)
        iters = np.zeros(B, np.int64)
        active = np.flatnonzero(~ok)
        if active.size:
            La = L[active]
            R = [np.zeros((active.size,) + lay.shape, np.float32) for lay in self._layers]
            for it in range(1, max_iter + 1):
                for li, lay in enumerate(self._layers):
                    T = La[:, lay] - R[li]  # (b, z, d)
                    A = np.abs(T)
                    i1 = A.argmin(axis=-1)[..., None]
                    min1 = np.take_along_axis(A, i1, axis=-1)
                    np.put_along_axis(A, i1, _BIG, axis=-1)
                    min2 = A.min(axis=-1, keepdims=True)
                    m1 = np.maximum(alpha * min1 - beta, 0)
                    m2 = np.maximum(alpha * min2 - beta, 0)
                    mag = np.broadcast_to(m1, T.shape).copy()
                    np.put_along_axis(mag, i1, m2, axis=-1)
                    neg = T < 0
                    sgn_all = np.bitwise_xor.reduce(neg, axis=-1, keepdims=True)
                    Rn = np.where(neg ^ sgn_all, -mag, mag)
                    R[li] = Rn
                    La[:, lay] = T + Rn
                done = self._syndrome_ok_numpy(La)
                if done.any():
                    fin = active[done]
                    L[fin] = La[done]
                    ok[fin] = True
                    iters[fin] = it
                    keep = ~done
                    active, La = active[keep], La[keep]
                    R = [r[keep] for r in R]
                    if active.size == 0:
                        break
            if active.size:
                L[active] = La
                iters[active] = max_iter
        bits = (L[:, : self.k] < 0).astype(np.uint8)
        return bits, ok, iters

    def _syndrome_ok_numpy(self, L: np.ndarray) -> np.ndarray:
        hard = L < 0
        ok = np.ones(L.shape[0], bool)
        for lay in self._layers:
            ok &= ~np.bitwise_xor.reduce(hard[:, lay], axis=-1).any(axis=-1)
        return ok


def _qc_block_sums(blocks: np.ndarray, terms, n_rows: int) -> np.ndarray:
    """Per block row, the GF(2) sum of the shifted blocks ``P^p x_j``.

    Args:
        blocks: (B, nblocks, z) uint8 bit blocks.
        terms: Iterable of (row, block, shift); ``(P^p x)[r] = x[(r + p) mod z]``.
        n_rows: Number of block rows of the result.

    Returns:
        (B, n_rows, z) uint8.
    """
    out = np.zeros((blocks.shape[0], n_rows, blocks.shape[2]), np.uint8)
    for i, j, p in terms:
        out[:, i] ^= np.roll(blocks[:, j], -p, axis=1)
    return out


def _gf2_inv(a: np.ndarray) -> np.ndarray:
    """Inverse of a square 0/1 matrix over GF(2) (Gauss-Jordan on packed rows).

    Raises:
        ValueError: The matrix is singular over GF(2).
    """
    n = a.shape[0]
    aug = np.packbits(np.concatenate([a.astype(bool), np.eye(n, dtype=bool)], axis=1), axis=1)
    for c in range(n):
        byte, shift = c >> 3, 7 - (c & 7)
        col = (aug[:, byte] >> shift) & 1
        cand = np.flatnonzero(col[c:])
        if cand.size == 0:
            raise ValueError("matrix is singular over GF(2)")
        piv = c + int(cand[0])
        if piv != c:
            aug[[c, piv]] = aug[[piv, c]]
            col[[c, piv]] = col[[piv, c]]
        rows = np.flatnonzero(col)
        rows = rows[rows != c]
        aug[rows] ^= aug[c]
    return np.unpackbits(aug, axis=1, count=2 * n)[:, n:]


def _wimax_code(engine: str, rate: str, k: Optional[int]) -> QCLDPCCode:
    rate_class = _WIMAX_ALIASES.get(rate, rate)
    if rate_class not in wimax.RATE_CLASSES:
        raise ValueError(
            f"backend {engine!r} has no rate {rate!r}; available: "
            f"{sorted(set(wimax.RATE_CLASSES) | set(_WIMAX_ALIASES) | set(nr_bg2.RATE_ROWS))}"
        )
    kb = wimax.N_BLOCK_COLS - wimax.base_matrix(rate_class).shape[0]
    if k is None:
        z = wimax.Z0
    else:
        valid = {kb * z: z for z in wimax.Z_VALUES}
        if int(k) not in valid:
            raise ValueError(
                f"backend {engine!r} rate {rate!r} has no k={k}; available k: {sorted(valid)}"
            )
        z = valid[int(k)]
    base = wimax.base_matrix(rate_class, z)
    return QCLDPCCode(
        base, z, name=f"wimax-{24 * z}-{rate_class}", rate_name=rate, engine=engine
    )


# --------------------------------------------------------------------------- #
# 5G NR base graph 2 (low rates)
# --------------------------------------------------------------------------- #
#: Lifting size of the NR codes when ``get_code`` gets ``k=None`` (k = 1120).
NR_DEFAULT_Z = 112
#: Min-sum normalisation of the NR codes.  Swept 0.55 ... 0.8 at BLER ~1e-2
#: (QPSK/AWGN, rates 1/5 and 1/3, k = 240 and 1120): 0.65-0.7 is best; the
#: WiMAX value 0.8 loses ~0.3-0.5 dB on BG2 (high-degree core checks).
NR_ALPHA = 0.7


class NRLDPCCode(QCLDPCCode):
    """3GPP 5G NR LDPC code on base graph 2 (TS 38.212), rates 1/5 ... 1/3.

    The code uses the first ``m`` rows of BG2 (see :mod:`.ldpc_codes.nr_bg2`)
    and punctures the first two systematic block columns, as NR does:
    ``k = 10 z`` information bits, ``n_full = (10 + m) z`` mother-code bits and
    ``n = (8 + m) z`` transmitted bits (rate 1/5: m = 42, n = 50 z; 1/4:
    m = 32, n = 40 z; 1/3: m = 22, n = 30 z).  Shortening (filler bits) and
    the circular-buffer rate matching of NR are not modelled.

    :meth:`encode` returns the transmitted bits: information bits
    ``2z .. 10z - 1`` followed by all parity bits (:meth:`encode_full` gives
    the mother codeword).  Encoding is systematic: the four core parity blocks
    come from a precomputed GF(2) inverse of the 4z x 4z core parity matrix,
    each extension parity block directly from its (degree-1) row.  Decoding
    is the layered decoder of :class:`QCLDPCCode` on the used rows, with LLR 0
    at the punctured positions; early termination tests those rows only.

    Args:
        z: Lifting size, one of ``nr_bg2.LIFTING_SIZES`` (2 ... 384).
        rate: ``"1/5"``, ``"1/4"`` or ``"1/3"`` (keys of ``nr_bg2.RATE_ROWS``).
        engine, algorithm, beta, max_iter: As for :class:`QCLDPCCode`.
        alpha: Min-sum normalisation factor (default :data:`NR_ALPHA`).

    Raises:
        ValueError: Unknown rate, invalid lifting size or bad engine/algorithm.
    """

    def __init__(
        self,
        z: int,
        rate: str = "1/5",
        engine: str = DEFAULT_BACKEND,
        algorithm: str = "nms",
        alpha: float = NR_ALPHA,
        beta: float = 0.0,
        max_iter: int = DEFAULT_MAX_ITER,
    ) -> None:
        if rate not in nr_bg2.RATE_ROWS:
            raise ValueError(f"NR BG2 has no rate {rate!r}; available: {list(nr_bg2.RATE_ROWS)}")
        base = nr_bg2.base_matrix(z, nr_bg2.RATE_ROWS[rate])
        super().__init__(
            base, z, name=f"nr-bg2-{rate}-z{z}", rate_name=rate, engine=engine,
            algorithm=algorithm, alpha=alpha, beta=beta, max_iter=max_iter,
            punct_blocks=nr_bg2.N_PUNCT,
        )

    def _check_structure(self) -> None:
        hb, z, kb, nc = self.base, self.z, nr_bg2.K_B, nr_bg2.N_CORE
        if self.kb != kb or self.mb < nc:
            raise ValueError(f"{self.name}: not a BG2 sub-matrix (shape {hb.shape})")
        core_cols = slice(kb, kb + nc)
        if (hb[:nc, kb + nc:] >= 0).any():
            raise ValueError(f"{self.name}: core rows touch extension columns")
        for i in range(nc, self.mb):
            ext = hb[i, kb + nc:]
            if ext[i - nc] != 0 or (np.delete(ext, i - nc) >= 0).any():
                raise ValueError(f"{self.name}: row {i} has no single shift-0 parity block")
        # dense 4z x 4z core parity matrix; row i*z + r has its ones at
        # (j - kb)*z + (r + p) % z, matching _qc_block_sums
        core = np.zeros((nc * z, nc * z), np.uint8)
        r = np.arange(z)
        for i in range(nc):
            for jj, p in enumerate(hb[i, core_cols]):
                if p >= 0:
                    core[i * z + r, jj * z + (r + p) % z] = 1
        try:
            inv = _gf2_inv(core)
        except ValueError:
            raise ValueError(f"{self.name}: core parity matrix is singular") from None
        self._core_inv_t = np.ascontiguousarray(inv.T, dtype=np.float32)
        self._core_terms = [
            (i, j, int(hb[i, j])) for i in range(nc) for j in range(kb) if hb[i, j] >= 0
        ]
        self._ext_terms = [
            (i - nc, j, int(hb[i, j]))
            for i in range(nc, self.mb) for j in range(kb + nc) if hb[i, j] >= 0
        ]

    def _encode_full(self, bits: np.ndarray) -> np.ndarray:
        z, kb, nc = self.z, nr_bg2.K_B, nr_bg2.N_CORE
        B = bits.shape[0]
        s = bits.reshape(B, kb, z)
        lam = _qc_block_sums(s, self._core_terms, nc).reshape(B, nc * z)
        # H_c p = lam over GF(2); float32 sums of <= 4z ones are exact
        core = (lam.astype(np.float32) @ self._core_inv_t).astype(np.int64) & 1
        core = core.astype(np.uint8).reshape(B, nc, z)
        ext = _qc_block_sums(np.concatenate([s, core], axis=1), self._ext_terms, self.mb - nc)
        return np.concatenate(
            [bits, core.reshape(B, nc * z), ext.reshape(B, (self.mb - nc) * z)], axis=1
        )


def _nr_code(engine: str, rate: str, k: Optional[int]) -> NRLDPCCode:
    if k is None:
        z = NR_DEFAULT_Z
    else:
        valid = {nr_bg2.K_B * zz: zz for zz in nr_bg2.LIFTING_SIZES}
        if int(k) not in valid:
            raise ValueError(
                f"backend {engine!r} rate {rate!r} has no k={k}; available k: "
                f"10 * z for the NR lifting sizes z: {sorted(valid)}"
            )
        z = valid[int(k)]
    return NRLDPCCode(z, rate, engine=engine)


# --------------------------------------------------------------------------- #
# pyldpc backend
# --------------------------------------------------------------------------- #
#: rate -> (n, d_v, d_c) of the regular Gallager codes built with pyldpc.
_PYLDPC_CODES: Dict[str, Tuple[int, int, int]] = {
    "1/2": (2004, 3, 6),
    "1/3": (2004, 4, 6),
    "3/4": (2004, 3, 12),
}
#: Their dimensions (n - rank H) for seed 0; checked at construction.
_PYLDPC_K = {"1/2": 1004, "1/3": 671, "3/4": 1505}
_PYLDPC_SEED = 0


class PyLDPCCode(LDPCCode):
    """Regular (d_v, d_c) Gallager code from :mod:`pyldpc`, decoded by its BP.

    ``pyldpc.make_ldpc(..., systematic=True)`` gives a generator whose first
    k codeword positions are the message, so the message is read directly from
    the decoded codeword (equivalent to ``pyldpc.get_message`` but O(k)).

    Decoding runs pyldpc's own log-domain BP kernels (the ones behind
    ``pyldpc.decode``).  ``pyldpc.decode(H, y, snr)`` forms the channel LLR as
    ``2 y / var`` with ``var = 10 ** (-snr / 10)`` and the same sign
    convention as ours (positive = 0), so feeding ``y = LLR / 2`` with
    ``snr = 0 dB`` passes our LLRs through unchanged.  The loop is re-implemented
    here (instead of calling ``pyldpc.decode``) only to record per-frame
    convergence and iteration counts; frames are processed in small chunks
    because pyldpc keeps dense (m, n, frames) message arrays.

    Args:
        n: Code length (must be divisible by ``d_c``).
        d_v: Variable node degree.
        d_c: Check node degree.
        rate_name: Nominal rate label.
        seed: Seed of the random construction.
        max_iter: Default maximum number of iterations.
        chunk: Frames decoded together (memory: ~16 * m * n * chunk bytes).
    """

    backend = "pyldpc"

    def __init__(
        self,
        n: int,
        d_v: int,
        d_c: int,
        rate_name: str,
        seed: int = _PYLDPC_SEED,
        max_iter: int = DEFAULT_MAX_ITER,
        chunk: int = 8,
    ) -> None:
        import pyldpc

        self._pyldpc = pyldpc
        H, tG = pyldpc.make_ldpc(n, d_v, d_c, systematic=True, sparse=True, seed=seed)
        self._Hd = np.asarray(H, dtype=np.int64)
        tG = np.asarray(tG.toarray() if hasattr(tG, "toarray") else tG, dtype=np.uint8)
        self.n, self.k = tG.shape
        if not np.array_equal(tG[: self.k], np.eye(self.k, dtype=np.uint8)):
            raise RuntimeError("pyldpc did not return a systematic generator")
        self._parity_gen = np.ascontiguousarray(tG[self.k:].T)  # (k, n-k)
        self.name = f"pyldpc-regular({d_v},{d_c})-{self.n}"
        self.rate_name = rate_name
        self.max_iter = int(max_iter)
        self.chunk = int(chunk)
        import scipy.sparse as sp

        self._H = sp.csr_matrix(self._Hd.astype(np.uint8))
        self._graph = None

    @property
    def H(self):  # noqa: N802
        return self._H

    def _encode(self, bits: np.ndarray) -> np.ndarray:
        par = (bits.astype(np.int32) @ self._parity_gen.astype(np.int32)) & 1
        return np.concatenate([bits, par.astype(np.uint8)], axis=1)

    def _get_graph(self):
        if self._graph is None:
            from pyldpc import decoder as pdec
            from pyldpc import utils as putils

            H = self._Hd
            m, n = H.shape
            bh, bv, nh, nv = putils._bitsandnodes(H)
            regular = np.unique(H.sum(0)).size == 1 and np.unique(H.sum(1)).size == 1
            if regular:
                solver = pdec._logbp_numba_regular
                bv = bv.reshape(m, -1)
                nv = nv.reshape(n, -1)
            else:  # pragma: no cover - our codes are regular
                solver = pdec._logbp_numba
            self._graph = (solver, bh, bv, nh, nv)
        return self._graph

    def _decode(self, llr: np.ndarray, max_iter: int):
        B = llr.shape[0]
        bits = np.empty((B, self.k), np.uint8)
        ok = np.zeros(B, bool)
        iters = np.full(B, max_iter, np.int64)
        # Clip harder than LLR_CLIP: pyldpc's tanh/log kernel saturates.
        llr64 = np.clip(llr.astype(np.float64), -30.0, 30.0)
        for s in range(0, B, self.chunk):
            sl = slice(s, min(B, s + self.chunk))
            b_bits, b_ok, b_it = self._decode_chunk(llr64[sl], max_iter)
            bits[sl], ok[sl], iters[sl] = b_bits, b_ok, b_it
        return bits, ok, iters

    def _decode_chunk(self, llr: np.ndarray, max_iter: int):
        solver, bh, bv, nh, nv = self._get_graph()
        m, n = self._Hd.shape
        nm = llr.shape[0]
        # pyldpc.decode(H, y, snr=0): Lc = 2 * y / var with var = 1 and
        # y = LLR / 2  ->  Lc = LLR (sign convention: positive = bit 0).
        y = (llr / 2.0).T.copy()  # (n, frames)
        Lc = 2.0 * y / 1.0
        hard = (Lc <= 0).astype(np.uint8)  # (n, frames)
        synd_ok = ~((self._H @ hard.astype(np.int64)) % 2).any(axis=0)
        done = synd_ok.copy()
        final = hard.copy()
        iters = np.where(done, 0, max_iter).astype(np.int64)
        if not done.all():
            Lq = np.zeros((m, n, nm))
            Lr = np.zeros((m, n, nm))
            for it in range(max_iter):
                Lq, Lr, Lpost = solver(bh, bv, nh, nv, Lc, Lq, Lr, it)
                x = (Lpost <= 0).astype(np.uint8)
                good = ~((self._H @ x.astype(np.int64)) % 2).any(axis=0)
                new = good & ~done
                final[:, new] = x[:, new]
                iters[new] = it + 1
                done |= good
                if done.all():
                    break
            final[:, ~done] = x[:, ~done]
        return final[: self.k].T, done, iters


def _pyldpc_code(rate: str, k: Optional[int]) -> PyLDPCCode:
    if rate not in _PYLDPC_CODES:
        raise ValueError(
            f"backend 'pyldpc' has no rate {rate!r}; available: {sorted(_PYLDPC_CODES)}"
        )
    if k is not None and int(k) != _PYLDPC_K[rate]:
        raise ValueError(
            f"backend 'pyldpc' rate {rate!r} has no k={k}; available k: [{_PYLDPC_K[rate]}]"
        )
    n, dv, dc = _PYLDPC_CODES[rate]
    return PyLDPCCode(n, dv, dc, rate_name=rate)


# --------------------------------------------------------------------------- #
# GNU Radio gr-fec backend
# --------------------------------------------------------------------------- #
_GR_ALIST_DIRS = ("/usr/share/gnuradio/fec/ldpc", "/usr/local/share/gnuradio/fec/ldpc")
_GR_ALIST_RE = re.compile(r"^n_(\d+)_k_(\d+)_gap_(\d+)\.alist$")
#: nominal rate -> alist file name (largest code of that rate class).
_GR_CODES: Dict[str, str] = {
    "1/2": "n_1800_k_0902_gap_28.alist",
    "2/5": "n_1300_k_0522_gap_30.alist",
    "1/3": "n_0300_k_0103_gap_24.alist",
    "1/4": "n_0512_k_0130_gap_21.alist",
}


def _gr_alist_dir() -> Optional[str]:
    env = os.environ.get("GENSEMCOM_GR_LDPC_DIR")
    for d in ((env,) if env else ()) + _GR_ALIST_DIRS:
        if d and os.path.isdir(d):
            return d
    try:  # derive from the GNU Radio prefix if importable
        from gnuradio import gr

        d = os.path.join(gr.prefix(), "share", "gnuradio", "fec", "ldpc")
        if os.path.isdir(d):
            return d
    except Exception:
        pass
    return None


def _gr_code_files() -> Dict[str, Tuple[str, int, int]]:
    """rate -> (alist path, n, k) for the gr-fec codes present on disk."""
    d = _gr_alist_dir()
    out: Dict[str, Tuple[str, int, int]] = {}
    if d is None:
        return out
    for rate, fname in _GR_CODES.items():
        mt = _GR_ALIST_RE.match(fname)
        path = os.path.join(d, fname)
        if mt and os.path.isfile(path):
            out[rate] = (path, int(mt.group(1)), int(mt.group(2)))
    return out


def read_alist(path: str):
    """Read an alist file into a ``scipy.sparse.csr_matrix`` parity-check matrix.

    Args:
        path: alist file (MacKay format, 1-based indices, 0 padding allowed).

    Returns:
        (m, n) uint8 CSR matrix.
    """
    import scipy.sparse as sp

    with open(path) as fh:
        vals = np.array(fh.read().split(), dtype=np.int64)
    n, m, max_cw, max_rw = (int(v) for v in vals[:4])
    col_w = vals[4:4 + n]
    pos = 4 + n + m  # skip the row weights
    # Column lists are either zero padded to max_cw entries or not padded.
    padded = vals.size >= pos + n * max_cw + m * max_rw and (
        vals.size != pos + 2 * int(col_w.sum()) or max_cw * n == int(col_w.sum())
    )
    rows, cols = [], []
    for j in range(n):
        width = max_cw if padded else int(col_w[j])
        ent = vals[pos:pos + width][: col_w[j]]
        pos += width
        ent = ent[ent > 0] - 1
        rows.append(ent)
        cols.append(np.full(ent.size, j))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    return sp.csr_matrix((np.ones(r.size, np.uint8), (r, c)), shape=(m, n))


class GrFecLDPCCode(LDPCCode):
    """GNU Radio gr-fec LDPC (``fec.ldpc_encoder`` / ``fec.ldpc_decoder``).

    The gr-fec FECAPI objects are driven directly through their
    ``generic_work(in_capsule, out_capsule)`` Python binding (one frame per
    call, no flowgraph), which also exposes the per-frame iteration count.
    gr-fec's encoder (``cldpc``) is systematic after a column permutation; its
    decoder returns the information bits in the encoder's input order.

    Soft-input convention of ``fec.ldpc_decoder`` (GNU Radio 3.10, awgn_bp):
    the block negates its input, then forms the likelihood ratio
    ``P1/P0 = exp(-y / (2 sigma^2))``; i.e. its input is ``-2 sigma^2 LLR``
    (positive float = bit 1).  We build decoders with sigma = 0.5 and feed
    ``-0.5 * LLR``.  A frame counts as ``ok`` when the decoder stopped on a
    codeword within ``max_iter`` iterations (it is run with one spare
    iteration to tell "converged at the last iteration" from "gave up").
    gr-fec's decoder also sometimes collapses to the all-zero codeword and
    stops as if it had converged (undetected errors); a frame whose re-encoded
    decision contradicts more than ``consistency_threshold`` of the channel
    hard decisions is therefore reported as failed (set the attribute to None
    to see gr-fec's raw verdict).
    Exact-zero LLRs (erasures, NaN) are replaced by a tiny positive value,
    because gr-fec's decoder breaks on exact zeros (it then returns the
    all-zero codeword and reports success).

    Args:
        alist_path: alist file with the parity-check matrix.
        rate_name: Nominal rate label.
        max_iter: Default maximum number of iterations.
    """

    backend = "grfec"
    _SIGMA = 0.5
    #: LLR clip: the decoder works with exp(LLR) in double precision.
    _CLIP = 30.0
    _ZERO_LLR = 1e-6

    def __init__(self, alist_path: str, rate_name: str, max_iter: int = DEFAULT_MAX_ITER) -> None:
        from gnuradio import fec  # lazy: only this backend needs GNU Radio

        self._fec = fec
        self.alist_path = alist_path
        self._enc = fec.ldpc_encoder.make(alist_path)
        self.k = int(self._enc.get_input_size())
        self.n = int(self._enc.get_output_size())
        self.name = f"grfec-{os.path.basename(alist_path)[:-6]}"
        self.rate_name = rate_name
        self.max_iter = int(max_iter)
        #: Max fraction of channel hard decisions a decoded codeword may
        #: contradict before the frame is declared failed (None: trust gr-fec).
        self.consistency_threshold: Optional[float] = 0.25 if self.rate >= 0.45 else 0.35
        self._decoders: Dict[int, object] = {}
        self._H = None
        self._capsule_new = _capsule_factory()

    @property
    def H(self):  # noqa: N802
        if self._H is None:
            self._H = read_alist(self.alist_path)
        return self._H

    def _decoder(self, max_iter: int):
        dec = self._decoders.get(max_iter)
        if dec is None:
            dec = self._fec.ldpc_decoder.make(self.alist_path, self._SIGMA, max_iter + 1)
            if dec.get_output_size() != self.k or dec.get_input_size() != self.n:
                raise RuntimeError("gr-fec decoder and encoder disagree on (n, k)")
            self._decoders[max_iter] = dec
        return dec

    def _encode(self, bits: np.ndarray) -> np.ndarray:
        cap = self._capsule_new
        out = np.zeros((bits.shape[0], self.n), np.uint8)
        for b in range(bits.shape[0]):
            src = np.ascontiguousarray(bits[b])
            dst = out[b]
            self._enc.generic_work(cap(src), cap(dst))
        return out

    def _decode(self, llr: np.ndarray, max_iter: int):
        cap = self._capsule_new
        dec = self._decoder(max_iter)
        B = llr.shape[0]
        x = np.clip(llr, -self._CLIP, self._CLIP)
        # gr-fec's awgn_bp mishandles inputs that are exactly 0 (erasures): the
        # whole frame collapses to the all-zero codeword and is reported as
        # decoded.  A negligible bias towards 0 avoids it.
        x[x == 0] = self._ZERO_LLR
        x *= np.float32(-2.0 * self._SIGMA**2)
        x = np.ascontiguousarray(x, dtype=np.float32)
        bits = np.zeros((B, self.k), np.uint8)
        iters = np.zeros(B, np.int64)
        for b in range(B):
            src = x[b]
            dst = bits[b]
            dec.generic_work(cap(src), cap(dst))
            iters[b] = int(round(dec.get_iterations()))
        ok = iters <= max_iter
        if self.consistency_threshold is not None and ok.any():
            # gr-fec's probability-domain BP sometimes collapses to the
            # all-zero codeword and stops "successfully".  A genuine decode
            # contradicts the channel hard decisions on at most the raw BER
            # (<= ~0.16 at the BPSK capacity limit of rate 1/2, ~0.26 for rate
            # 1/4), a collapsed frame on ~50 %: such frames are failures.
            idx = np.flatnonzero(ok)
            chat = self._encode(bits[idx])
            disagree = ((llr[idx] < 0) != (chat == 1)).mean(axis=1)
            ok[idx[disagree > self.consistency_threshold]] = False
        return bits, ok, np.minimum(iters, max_iter)


def _capsule_factory() -> Callable[[np.ndarray], object]:
    """Return ``f(array) -> PyCapsule`` wrapping the array's data pointer.

    The caller must keep the array alive for as long as the capsule is used.
    """
    import ctypes

    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]

    def make(arr: np.ndarray):
        if not arr.flags["C_CONTIGUOUS"]:
            raise ValueError("array must be C-contiguous")
        return new(arr.ctypes.data, None, None)

    return make


def _grfec_code(rate: str, k: Optional[int]) -> GrFecLDPCCode:
    files = _gr_code_files()
    if rate not in files:
        raise ValueError(
            f"backend 'grfec' has no rate {rate!r}; available: {sorted(files)}"
        )
    path, _n, kk = files[rate]
    if k is not None and int(k) != kk:
        raise ValueError(f"backend 'grfec' rate {rate!r} has no k={k}; available k: [{kk}]")
    return GrFecLDPCCode(path, rate_name=rate)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def _backend_available(name: str) -> bool:
    if name == "numba":
        return _HAVE_NUMBA
    if name == "numpy":
        return True
    if name == "pyldpc":
        try:
            import pyldpc  # noqa: F401
            from pyldpc import decoder as _d, utils as _u  # noqa: F401

            return hasattr(_d, "_logbp_numba_regular") and hasattr(_u, "_bitsandnodes")
        except Exception:
            return False
    if name == "grfec":
        try:
            from gnuradio import fec

            return hasattr(fec, "ldpc_decoder") and bool(_gr_code_files())
        except Exception:
            return False
    return False


_BACKENDS = ("numba", "numpy", "pyldpc", "grfec")


def available_backends() -> List[str]:
    """Backends usable in this environment, best first.

    Returns:
        Subset of ``["numba", "numpy", "pyldpc", "grfec"]``.  Checking
        ``"grfec"`` imports ``gnuradio.fec``.
    """
    return [b for b in _BACKENDS if _backend_available(b)]


_RATE_RE = re.compile(r"^(\d+)/(\d+)([abAB]?)$")


def _normalise_rate(rate) -> str:
    if isinstance(rate, Fraction):
        return f"{rate.numerator}/{rate.denominator}"
    if not isinstance(rate, str):
        raise ValueError(f"rate must be a string such as '1/2', got {rate!r}")
    r = rate.replace(" ", "")
    mt = _RATE_RE.match(r)
    if mt:
        return f"{mt.group(1)}/{mt.group(2)}{mt.group(3).upper()}"
    return r


def get_code(backend: str = "default", rate: str = "1/2", k: Optional[int] = None) -> LDPCCode:
    """Return an LDPC code (cached: repeated calls give the same object).

    Args:
        backend: ``"default"`` (= :data:`DEFAULT_BACKEND`), ``"numba"``,
            ``"numpy"``, ``"pyldpc"`` or ``"grfec"``.
        rate: Rate label.  numba/numpy: WiMAX "1/2", "2/3A", "2/3B",
            "3/4A", "3/4B", "5/6" plus aliases "2/3" (= 2/3A) and "3/4"
            (= 3/4A); 5G NR base graph 2 "1/5", "1/4", "1/3"
            (:class:`NRLDPCCode`).  pyldpc: "1/2", "1/3", "3/4".  grfec:
            "1/2", "2/5", "1/3", "1/4".
        k: Number of information bits; None picks the largest WiMAX code, or
            k = 1120 (z = :data:`NR_DEFAULT_Z`) for NR.  For the WiMAX codes
            any ``k = k_b * z`` with z in 24..96 step 4 is valid (e.g. rate
            1/2: 288 ... 1152 step 48); for NR ``k = 10 z`` with z an NR
            lifting size (20, 30, ..., 240, ..., 1120, ..., 3840).

    Returns:
        An :class:`LDPCCode`.

    Raises:
        ValueError: Unknown or unavailable backend, or a rate / k the backend
            does not have.
    """
    b = DEFAULT_BACKEND if backend == "default" else backend
    if b not in _BACKENDS:
        raise ValueError(
            f"unknown LDPC backend {backend!r}; known: {['default', *_BACKENDS]}"
        )
    if not _backend_available(b):
        raise ValueError(
            f"LDPC backend {b!r} is not available here (available: {available_backends()})"
        )
    r = _normalise_rate(rate)
    return _get_code_cached(b, r, None if k is None else int(k))


@functools.lru_cache(maxsize=None)
def _get_code_cached(backend: str, rate: str, k: Optional[int]) -> LDPCCode:
    if backend in ("numba", "numpy"):
        if rate in nr_bg2.RATE_ROWS:
            return _nr_code(backend, rate, k)
        return _wimax_code(backend, rate, k)
    if backend == "pyldpc":
        return _pyldpc_code(rate, k)
    return _grfec_code(rate, k)


def list_codes() -> List[dict]:
    """List the codes of every available backend (for CLI help).

    Returns:
        One dict per (backend, rate) with keys ``backend``, ``rate``, ``n``,
        ``k``, ``name`` and ``k_options`` (valid values of ``k``).  Nothing is
        constructed, so this is cheap.
    """
    out: List[dict] = []
    for b in available_backends():
        if b in ("numba", "numpy"):
            for rc in wimax.RATE_CLASSES:
                mb = wimax.base_matrix(rc).shape[0]
                kb = wimax.N_BLOCK_COLS - mb
                aliases = [a for a, t in _WIMAX_ALIASES.items() if t == rc]
                out.append({
                    "backend": b,
                    "rate": rc,
                    "n": 24 * wimax.Z0,
                    "k": kb * wimax.Z0,
                    "name": f"wimax-{24 * wimax.Z0}-{rc}",
                    "aliases": aliases,
                    "k_options": [kb * z for z in wimax.Z_VALUES],
                })
            z = NR_DEFAULT_Z
            for rate, rows in nr_bg2.RATE_ROWS.items():
                out.append({
                    "backend": b,
                    "rate": rate,
                    "n": (nr_bg2.K_B + rows - nr_bg2.N_PUNCT) * z,
                    "k": nr_bg2.K_B * z,
                    "name": f"nr-bg2-{rate}-z{z}",
                    "aliases": [],
                    "k_options": [nr_bg2.K_B * zz for zz in nr_bg2.LIFTING_SIZES],
                })
        elif b == "pyldpc":
            for rate, (n, dv, dc) in _PYLDPC_CODES.items():
                out.append({
                    "backend": b, "rate": rate, "n": n, "k": _PYLDPC_K[rate],
                    "name": f"pyldpc-regular({dv},{dc})-{n}", "aliases": [],
                    "k_options": [_PYLDPC_K[rate]],
                })
        elif b == "grfec":
            for rate, (path, n, kk) in _gr_code_files().items():
                out.append({
                    "backend": b, "rate": rate, "n": n, "k": kk,
                    "name": f"grfec-{os.path.basename(path)[:-6]}", "aliases": [],
                    "k_options": [kk],
                })
    return out
