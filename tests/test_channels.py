"""Channels, the SNR convention, equalisation and pilots."""
import math

import numpy as np
import pytest

from gensemcom.phy.channels import (AWGNChannel, PilotPattern, RayleighBlockChannel, ebn0_to_esn0, equalize,
                                    esn0_to_ebn0, make_channel, noise_var, noise_voltage)


def test_snr_convention():
    assert noise_var(0) == 1.0
    assert noise_var(10) == pytest.approx(0.1)
    assert noise_voltage(20) == pytest.approx(0.1)
    # QPSK rate 1/2: Es/N0 = Eb/N0 + 10 log10(2 * 0.5) = Eb/N0
    assert ebn0_to_esn0(1.5, 2, 0.5) == pytest.approx(1.5)
    assert ebn0_to_esn0(1.0, 4, 0.5) == pytest.approx(1.0 + 10 * math.log10(2))
    assert esn0_to_ebn0(ebn0_to_esn0(3.0, 6, 0.75), 6, 0.75) == pytest.approx(3.0)


def test_awgn_noise_power_matches_snr():
    x = np.ones(200_000, np.complex64)
    out = AWGNChannel(7.0, seed=1)(x)
    n = out.y - x
    assert np.mean(np.abs(n) ** 2) == pytest.approx(noise_var(7.0), rel=0.02)
    # circular: equal power on I and Q, uncorrelated
    assert np.var(n.real) == pytest.approx(np.var(n.imag), rel=0.03)
    assert abs(np.mean(n.real * n.imag)) < 0.01 * noise_var(7.0)
    assert out.h is None and out.noise_var == pytest.approx(noise_var(7.0))


def test_awgn_seed_reproducible():
    x = np.zeros(10, np.complex64)
    assert np.array_equal(AWGNChannel(0, 3)(x).y, AWGNChannel(0, 3)(x).y)


def test_rayleigh_block_structure_and_power():
    ch = RayleighBlockChannel(100.0, coherence=16, seed=2)
    x = np.ones(16 * 5000, np.complex64)
    out = ch(x)
    h = out.h.reshape(-1, 16)
    assert np.all(h == h[:, :1])  # constant within a block
    assert np.mean(np.abs(h[:, 0]) ** 2) == pytest.approx(1.0, rel=0.05)  # E|h|^2 = 1
    # Rayleigh amplitude: P(|h|^2 < t) = 1 - exp(-t)
    assert np.mean(np.abs(h[:, 0]) ** 2 < 0.5) == pytest.approx(1 - math.exp(-0.5), abs=0.03)
    assert np.allclose(out.y, out.h * x, atol=1e-4)


def test_make_channel_rejects_unknown():
    with pytest.raises(ValueError, match="unknown channel"):
        make_channel("rician", 10)
    with pytest.raises(ValueError):
        RayleighBlockChannel(10, coherence=0)


def test_equalize_zf_and_mmse():
    h = np.array([2j, 0.5, 1 - 1j], np.complex64)
    x = np.array([1, -1j, 0.5], np.complex64)
    y = h * x
    xz, nvz = equalize(y, h, 0.1, "zf")
    assert np.allclose(xz, x, atol=1e-6)
    assert np.allclose(nvz, 0.1 / np.abs(h) ** 2)
    xm, nvm = equalize(y, h, 0.1, "mmse")
    g = np.abs(h) ** 2
    assert np.allclose(xm, g / (g + 0.1) * x, atol=1e-6)
    assert np.allclose(nvm, 0.1 / (g + 0.1))
    with pytest.raises(ValueError):
        equalize(y, h, 0.1, "dfe")


def test_pilot_pattern_round_trip_and_counts():
    p = PilotPattern(block_len=8, n_pilots=2)
    data = np.arange(1, 14).astype(np.complex64)
    tx = p.insert(data)
    assert tx.size == p.n_tx(13) == 13 + 3 * 2
    assert p.n_data(tx.size) == 13
    assert np.array_equal(p.remove(tx), data)
    assert np.all(tx[[0, 1, 8, 9, 16, 17]] == p.pilot)
    with pytest.raises(ValueError):
        PilotPattern(4, 4)


@pytest.mark.parametrize("estimator", ["ls", "lmmse"])
def test_pilot_estimation_noiseless_is_exact(estimator):
    p = PilotPattern(32, 4)
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(200) + 1j * rng.standard_normal(200)).astype(np.complex64)
    ch = RayleighBlockChannel(200.0, coherence=32, seed=4)
    out = ch(p.insert(data))
    x, nv = p.equalize(out.y, 0.0, estimator)
    assert np.allclose(x, data, atol=1e-3)


def test_pilot_estimation_error_variance_matches_theory():
    """LS error variance N0/n_pilots; LMMSE is smaller and unbiased in MSE terms."""
    p = PilotPattern(16, 4)
    n0 = noise_var(5.0)
    ch = RayleighBlockChannel(5.0, coherence=16, seed=9)
    out = ch(p.insert(np.zeros(12 * 20000, np.complex64)))
    h_true = p.remove(out.h)
    h_ls, err_ls = p.estimate(out.y, n0, "ls")
    h_mm, err_mm = p.estimate(out.y, n0, "lmmse")
    mse_ls = np.mean(np.abs(h_ls - h_true) ** 2)
    mse_mm = np.mean(np.abs(h_mm - h_true) ** 2)
    assert mse_ls == pytest.approx(n0 / 4, rel=0.05)
    assert err_ls[0] == pytest.approx(n0 / 4)
    assert mse_mm < mse_ls
    assert mse_mm == pytest.approx(err_mm[0], rel=0.05)
