"""Burst format: preamble alignment, gain and noise estimation."""
import cmath

import numpy as np
import pytest

from gensemcom.phy.burst import BurstFormat, zadoff_chu
from gensemcom.phy.channels import complex_noise, noise_var


def test_zadoff_chu_constant_amplitude_and_autocorrelation():
    z = zadoff_chu(63)
    assert np.allclose(np.abs(z), 1)
    c = np.abs([np.vdot(z, np.roll(z, s)) for s in range(1, 63)])
    assert c.max() < 1e-3 * 63


@pytest.mark.parametrize("shift", [-12, -3, 0, 5, 15])
def test_align_finds_payload_with_shift_gain_and_noise(shift):
    fmt = BurstFormat(guard=32)
    rng = np.random.default_rng(abs(shift))
    x = (rng.standard_normal(500) + 1j * rng.standard_normal(500)).astype(np.complex64) / np.sqrt(2)
    burst = fmt.build(x)
    assert burst.size == x.size + fmt.overhead and fmt.payload_len(burst.size) == 500
    g = 0.5 * cmath.exp(0.7j)
    n0 = noise_var(20)
    rx = g * burst + complex_noise(burst.size, n0, rng)
    rx = np.roll(rx, shift)  # a stream delay (or advance)
    a = fmt.align(rx[: burst.size - 16], 500)
    assert a.offset == 32 + shift
    assert abs(a.gain - g) < 4 * np.sqrt(n0 / 63)  # 4 std of the LS estimate
    assert a.noise_var == pytest.approx(n0 / abs(g) ** 2, rel=0.5)
    assert np.mean(np.abs(a.payload - x) ** 2) == pytest.approx(n0 / abs(g) ** 2, rel=0.2)
    assert a.peak > 0.95


def test_align_rejects_short_window_and_bad_format():
    fmt = BurstFormat(guard=16)
    with pytest.raises(ValueError):
        fmt.align(np.zeros(50, np.complex64), 100)
    with pytest.raises(ValueError):
        BurstFormat(guard=4)
    with pytest.raises(ValueError):
        BurstFormat(preamble_len=64)
