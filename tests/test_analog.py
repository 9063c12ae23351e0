"""Analog mapping of real vectors to power-normalised complex symbols."""
import numpy as np
import pytest

from gensemcom.phy.analog import analog_demap, analog_map, pack_scale, unpack_scale


def test_round_trip_and_unit_power(rng):
    x = (rng.standard_normal(768) * 3.7 + 1.0).astype(np.float32)
    s, scale = analog_map(x)
    assert s.size == 384 and s.dtype == np.complex64
    assert np.mean(np.abs(s) ** 2) == pytest.approx(1.0, rel=1e-5)
    assert np.allclose(analog_demap(s, scale), x, rtol=1e-5, atol=1e-5)
    assert s[0] == pytest.approx(complex(x[0], x[1]) / scale, rel=1e-5)


def test_scale_travels_as_four_bytes():
    b = pack_scale(3.25)
    assert len(b) == 4 and unpack_scale(b) == 3.25


def test_noise_after_demap_scales_with_norm(rng):
    """Channel noise N0 per symbol becomes N0 * scale^2 / 2 per real value."""
    x = rng.standard_normal(20000).astype(np.float32) * 2
    s, scale = analog_map(x)
    n0 = 0.01
    y = s + np.sqrt(n0 / 2) * (rng.standard_normal(s.size) + 1j * rng.standard_normal(s.size))
    err = analog_demap(y, scale) - x
    assert np.mean(err ** 2) == pytest.approx(n0 * scale ** 2 / 2, rel=0.05)


def test_bad_inputs():
    with pytest.raises(ValueError, match="odd"):
        analog_map(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        analog_map(np.array([1.0, np.nan]))
    s, scale = analog_map(np.zeros(4))
    assert scale == 1.0 and not s.any()
    s, scale = analog_map(np.zeros(0))
    assert s.size == 0
