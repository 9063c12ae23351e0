"""Analog mapping: real vectors <-> power-normalised complex symbols, sent uncoded.

Two reals make one complex symbol (x[2i] + j x[2i+1]); the symbols are scaled to
average power 1, and the scale (the RMS symbol magnitude before scaling) travels in
the digital header (:func:`pack_scale`, 4 bytes) so the receiver can undo it.
"""
from __future__ import annotations

import struct
from typing import Tuple

import numpy as np

SCALE_BYTES = 4


def analog_map(x: np.ndarray) -> Tuple[np.ndarray, float]:
    """Real vector -> unit-power complex symbols and the scale to undo it.

    Args:
        x (np.ndarray): real values, even length, finite.

    Returns:
        tuple[np.ndarray, float]: complex64 symbols (len(x) / 2 of them, average power
        exactly 1 unless x is all zeros) and the scale s, with symbols * s giving back
        the raw pairs.

    Raises:
        ValueError: on an odd length or non-finite values.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size % 2:
        raise ValueError(f"analog vector has odd length {x.size}: two reals make one complex symbol")
    if not np.all(np.isfinite(x)):
        raise ValueError("analog vector has NaN or Inf values")
    s = x[0::2] + 1j * x[1::2]
    scale = float(np.sqrt(np.mean(np.abs(s) ** 2))) if s.size else 0.0
    if scale == 0.0:
        return s.astype(np.complex64), 1.0
    return (s / scale).astype(np.complex64), scale


def analog_demap(y: np.ndarray, scale: float) -> np.ndarray:
    """Complex symbols -> real vector (2 reals per symbol), de-normalised by ``scale``."""
    y = np.asarray(y, dtype=np.complex64).reshape(-1) * np.float32(scale)
    out = np.empty(2 * y.size, dtype=np.float32)
    out[0::2], out[1::2] = y.real, y.imag
    return out


def pack_scale(scale: float) -> bytes:
    """The scale as 4 bytes (IEEE float32, big-endian) for the digital header."""
    return struct.pack(">f", float(scale))


def unpack_scale(data: bytes) -> float:
    """Inverse of :func:`pack_scale`."""
    return struct.unpack(">f", bytes(data[:SCALE_BYTES]))[0]
