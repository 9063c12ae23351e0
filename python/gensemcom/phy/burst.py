"""Burst format for carrying PDUs over sample streams: guard, preamble, payload, guard.

A burst is ``[guard zeros, preamble, payload symbols, guard zeros]``. The preamble is
a Zadoff-Chu sequence (constant amplitude, ideal periodic autocorrelation). Given a
window that contains the burst somewhere within +/- ``guard`` samples of its nominal
place (stream tags after a resampler or filter delay are only that precise), the
receiver finds the preamble by cross-correlation, estimates the complex gain
(amplitude and phase of the channel) and the noise variance from it, and returns the
gain-corrected payload. Frequency-offset tracking and detection in untagged streams
are the burst PHY's work, not this format's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def zadoff_chu(length: int, root: int = 25) -> np.ndarray:
    """Zadoff-Chu sequence of odd ``length`` (unit amplitude)."""
    n = np.arange(length)
    return np.exp(-1j * np.pi * root * n * (n + 1) / length).astype(np.complex64)


@dataclass
class Aligned:
    """A payload cut out of a received window.

    Attributes:
        payload (np.ndarray): gain-corrected payload symbols.
        offset (int): where the preamble started in the window.
        gain (complex): estimated complex channel gain.
        noise_var (float): estimated complex noise variance of the corrected payload
            (N0 / |gain|^2).
        peak (float): normalised correlation peak in [0, 1] (1: noiseless match).
    """

    payload: np.ndarray
    offset: int
    gain: complex
    noise_var: float
    peak: float


class BurstFormat:
    """Guard + Zadoff-Chu preamble + payload + guard.

    Args:
        guard (int): zero samples before and after every burst (at least 8, to
            cover GNU Radio's channel-model resampler, which holds back 8 samples).
        preamble_len (int): Zadoff-Chu length (odd).
    """

    def __init__(self, guard: int = 32, preamble_len: int = 63):
        if guard < 8:
            raise ValueError(f"guard must be at least 8 samples, got {guard}")
        if preamble_len < 7 or preamble_len % 2 == 0:
            raise ValueError(f"preamble length must be odd and >= 7, got {preamble_len}")
        self.guard = int(guard)
        self.preamble = zadoff_chu(int(preamble_len))

    @property
    def overhead(self) -> int:
        """Samples a burst adds to its payload."""
        return 2 * self.guard + self.preamble.size

    def build(self, payload: np.ndarray) -> np.ndarray:
        """Payload symbols -> burst samples."""
        z = np.zeros(self.guard, np.complex64)
        return np.concatenate([z, self.preamble, np.asarray(payload, np.complex64).reshape(-1), z])

    def payload_len(self, burst_len: int) -> int:
        """Payload symbols in a burst of ``burst_len`` samples."""
        return int(burst_len) - self.overhead

    def align(self, window: np.ndarray, n_payload: int) -> Aligned:
        """Find the preamble in ``window`` and cut out ``n_payload`` corrected symbols.

        Raises:
            ValueError: if the window cannot hold the payload after the best peak.
        """
        w = np.asarray(window, np.complex64).reshape(-1)
        lp = self.preamble.size
        last_start = w.size - lp - n_payload
        if last_start < 0:
            raise ValueError(f"window of {w.size} samples cannot hold a preamble and {n_payload} symbols")
        corr = np.abs(np.correlate(w[: last_start + lp], self.preamble, mode="valid"))
        p = int(np.argmax(corr))
        rp = w[p:p + lp]
        gain = complex(np.vdot(self.preamble, rp) / lp)
        resid = rp - gain * self.preamble
        n0 = float(np.sum(np.abs(resid) ** 2) / max(lp - 1, 1))
        energy = float(np.sum(np.abs(rp) ** 2))
        peak = float(abs(np.vdot(self.preamble, rp)) / np.sqrt(lp * energy)) if energy > 0 else 0.0
        g = gain if abs(gain) > 1e-9 else 1e-9
        payload = (w[p + lp:p + lp + n_payload] / g).astype(np.complex64)
        return Aligned(payload, p, gain, max(n0, 1e-9) / max(abs(g) ** 2, 1e-18), peak)
