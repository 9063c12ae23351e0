"""Gray M-QAM: mapping, closed-form BER, LLR sign and magnitude."""
import math

import numpy as np
import pytest

from gensemcom.phy.channels import complex_noise, noise_var
from gensemcom.phy.qam import QAM, ber_awgn, ber_rayleigh

ORDERS = (4, 16, 64, 256)


@pytest.mark.parametrize("M", ORDERS)
def test_constellation_unit_power_distinct_and_gray(M):
    q = QAM(M)
    c = q.constellation
    assert np.isclose(np.mean(np.abs(c) ** 2), 1.0, atol=1e-6)
    assert len(np.unique(np.round(c, 5))) == M
    # Gray: every nearest neighbour differs in exactly one bit
    dmin = np.min(np.abs(c[:, None] - c[None, :]) + 10 * np.eye(M))
    for a in range(M):
        for b in range(M):
            if a != b and abs(abs(c[a] - c[b]) - dmin) < 1e-4:
                assert bin(a ^ b).count("1") == 1


@pytest.mark.parametrize("M", ORDERS)
def test_modulate_hard_demodulate_round_trip(M, rng):
    q = QAM(M)
    bits = rng.integers(0, 2, q.bits_per_symbol * 500, dtype=np.uint8)
    s = q.modulate(bits)
    assert s.size == 500
    assert np.array_equal(q.demodulate_hard(s), bits)
    assert np.array_equal(q.demodulate_hard(s + 0.3 * q.scale * (1 + 1j)), bits)


def test_modulate_rejects_partial_symbol():
    with pytest.raises(ValueError, match="multiple"):
        QAM(16).modulate(np.zeros(6, np.uint8))
    with pytest.raises(ValueError, match="order"):
        QAM(8)


def test_closed_form_known_values():
    # QPSK: Q(sqrt(Es/N0)); 16-QAM at Es/N0 -> 3/8 erfc(sqrt(Es/10N0)) + ... (Cho & Yoon)
    from scipy.special import erfc
    g = 10 ** (7 / 10)
    assert ber_awgn(4, 7) == pytest.approx(0.5 * erfc(math.sqrt(g / 2)), rel=1e-12)
    g = 10 ** (12 / 10)
    a = math.sqrt(g / 10)
    expect16 = (3 / 8) * erfc(a) + (1 / 4) * erfc(3 * a) - (1 / 8) * erfc(5 * a)
    assert ber_awgn(16, 12) == pytest.approx(expect16, rel=1e-12)
    # Rayleigh QPSK closed form: 1/2 (1 - sqrt(g/2 / (1 + g/2)))
    g = 10 ** (10 / 10)
    assert ber_rayleigh(4, 10) == pytest.approx(0.5 * (1 - math.sqrt(g / 2 / (1 + g / 2))), rel=1e-6)


@pytest.mark.parametrize("M,snr", [(4, 4.0), (4, 8.0), (16, 10.0), (16, 14.0), (64, 16.0), (256, 22.0)])
def test_simulated_ber_matches_closed_form(M, snr):
    """Monte Carlo BER within 5 standard errors of the exact closed form."""
    from gensemcom.eval.ber import uncoded_point
    p = uncoded_point(M, snr, "awgn", min_errors=3000, max_bits=4_000_000, seed=M + int(snr))
    theory = ber_awgn(M, snr)
    # bit errors within a symbol are correlated: inflate the binomial variance by bits/symbol
    sigma = math.sqrt(theory * (1 - theory) / p.bits * math.log2(M))
    assert abs(p.ber - theory) < 5 * sigma, (p.ber, theory, sigma)


def test_simulated_rayleigh_ber_matches_theory():
    from gensemcom.eval.ber import uncoded_point
    p = uncoded_point(16, 15.0, "rayleigh", min_errors=3000, max_bits=4_000_000, coherence=1, seed=3)
    theory = ber_rayleigh(16, 15.0)
    sigma = math.sqrt(theory * (1 - theory) / p.bits * 4)
    assert abs(p.ber - theory) < 5 * sigma


def test_qpsk_llr_closed_form_and_maxlog_equal():
    q = QAM(4)
    y = np.array([0.3 - 0.2j, -1.1 + 0.05j], np.complex64)
    n0 = 0.5
    exact = q.demodulate_llr(y, n0, "exact")
    # bit 0 maps to the negative amplitude: LLR = -2 sqrt(2) y / N0 per rail
    expect = np.array([[-2 * math.sqrt(2) * v.real / n0, -2 * math.sqrt(2) * v.imag / n0] for v in y]).reshape(-1)
    assert np.allclose(exact, expect, rtol=1e-5)
    assert np.allclose(q.demodulate_llr(y, n0, "maxlog"), expect, rtol=1e-5)


@pytest.mark.parametrize("M", ORDERS)
def test_llr_signs_follow_hard_decisions_and_scale_with_noise(M, rng):
    q = QAM(M)
    bits = rng.integers(0, 2, q.bits_per_symbol * 2000, dtype=np.uint8)
    y = q.modulate(bits) + complex_noise(2000, noise_var(40), rng)
    for method in ("exact", "maxlog"):
        llr = q.demodulate_llr(y, noise_var(40), method)
        assert np.array_equal((llr < 0).astype(np.uint8), q.demodulate_hard(y))
        assert np.array_equal((llr < 0).astype(np.uint8), bits)
    # max-log magnitudes scale exactly as 1/N0
    l1 = q.demodulate_llr(y, 0.1, "maxlog")
    l2 = q.demodulate_llr(y, 0.2, "maxlog")
    assert np.allclose(l1, 2 * l2)
    # exact LLR magnitude never exceeds max-log's, and they agree at high SNR
    le = q.demodulate_llr(y, 0.001, "exact")
    lm = q.demodulate_llr(y, 0.001, "maxlog")
    assert np.allclose(le, lm, rtol=1e-3, atol=1e-3)


def test_llr_exact_is_calibrated():
    """Bits with |LLR| near L are wrong with probability 1 / (1 + e^L)."""
    q = QAM(16)
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, 4 * 200_000, dtype=np.uint8)
    n0 = noise_var(8)
    y = q.modulate(bits) + complex_noise(200_000, n0, rng)
    llr = q.demodulate_llr(y, n0, "exact")
    sel = (np.abs(llr) > 0.9) & (np.abs(llr) < 1.1)
    wrong = np.mean((llr[sel] < 0) != bits[sel].astype(bool))
    assert wrong == pytest.approx(1 / (1 + math.e), abs=0.015)


def test_llr_rejects_bad_noise_and_method():
    q = QAM(4)
    with pytest.raises(ValueError):
        q.demodulate_llr(np.ones(2, np.complex64), 0.0)
    with pytest.raises(ValueError):
        q.demodulate_llr(np.ones(2, np.complex64), 1.0, "approx")
