"""DeepJSCC baseline: power constraint, CBR arithmetic, shapes, SNR conditioning,
the system through the PHY link, and the shipped weights on Kodak."""
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gensemcom.models.deepjscc import (PowerNorm, cbr_of, channel, channel_uses,  # noqa: E402
                                       channels_for_cbr)
from gensemcom.systems import LinkContext, build  # noqa: E402
from gensemcom.systems.deepjscc import BUDGET_RULE, EMBEDDED_WEIGHTS, coded_size  # noqa: E402
from gensemcom.link import FrameLink, PhyConfig, run_link  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENSEMCOM_SHARED", ROOT.parent / "shared"))
KODAK = SHARED / "data" / "kodak"
PSNR_FLOOR_20DB = 28.0
"""Mean PSNR floor (dB) of the shipped model on kodim01 + kodim23 at 20 dB AWGN (16-QAM
header); the shipped weights measured 29.8 dB (27.16 and 32.41)."""


@pytest.fixture(scope="module")
def tiny():
    return build("deepjscc", profile="tiny")


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    # smooth-ish content so that nothing degenerates
    base = rng.integers(0, 256, size=(h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(base, 4, 0), 4, 1)[:h, :w])


def test_power_constraint_exact(tiny):
    frame = tiny.encode(_image(64, 96), LinkContext(snr_db=7.0))
    s = frame.analog[0::2].astype(np.float64) + 1j * frame.analog[1::2]
    assert abs(np.mean(np.abs(s) ** 2) - 1.0) < 1e-5
    z = PowerNorm()(torch.randn(3, 16, 5, 7) * 9.0)
    p = z.reshape(3, -1).pow(2).sum(1) / (z[0].numel() / 2)
    assert torch.allclose(p, torch.ones(3), atol=1e-5)


def test_cbr_arithmetic(tiny):
    assert channels_for_cbr("1/24") == 16 and channels_for_cbr("1/12") == 32 and channels_for_cbr(1 / 48) == 8
    assert cbr_of(16) == Fraction(1, 24)
    with pytest.raises(ValueError):
        channels_for_cbr("1/1000")
    h, w = 512, 768
    frame = tiny.encode(_image(h, w), LinkContext(snr_db=10.0))
    assert frame.header == {"size": [h, w]}  # the latent's shape follows from it (not sent)
    n_sym = frame.analog.size // 2
    assert n_sym == channel_uses(h, w, 16) == 49152
    assert Fraction(n_sym, 3 * h * w) == Fraction(1, 24) == tiny.cbr


@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (8, 8), (50, 7)])
def test_shape_round_trip_odd_sizes(tiny, hw):
    img = _image(*hw)
    frame = tiny.encode(img, LinkContext(snr_db=5.0))
    assert frame.header["size"] == list(hw)
    out = tiny.decode(frame, LinkContext(snr_db=5.0))
    assert out.shape == img.shape and out.dtype == np.uint8


def test_snr_conditioning_changes_output(tiny):
    img = _image(32, 48)
    z_lo = tiny.encode(img, LinkContext(snr_db=0.0)).analog
    z_hi = tiny.encode(img, LinkContext(snr_db=20.0)).analog
    assert not np.allclose(z_lo, z_hi, atol=1e-6)
    frame = tiny.encode(img, LinkContext(snr_db=10.0))
    m = tiny.model
    z = torch.from_numpy(frame.analog.reshape(16, 32 // 8, 48 // 8)).unsqueeze(0)
    with torch.no_grad():
        a = m.decode(z, torch.tensor([0.0]))
        b = m.decode(z, torch.tensor([20.0]))
    assert (a - b).abs().max() > 1e-6


def test_channel_layer_matches_link_statistics():
    torch.manual_seed(0)
    z = PowerNorm()(torch.randn(2, 16, 32, 32))
    snr = torch.tensor([0.0, 10.0])
    n0 = 10 ** (-snr / 10)
    y = channel(z, snr, "awgn", mmse=False)
    noise_var = (y - z).reshape(2, -1).pow(2).mean(1) * 2  # complex noise variance
    assert torch.allclose(noise_var, n0, rtol=0.05)
    y = channel(z, snr, "awgn")  # MMSE: (z + n) / (1 + N0)
    assert torch.allclose((y * (1 + n0.view(2, 1, 1, 1)) - z).reshape(2, -1).pow(2).mean(1) * 2, n0, rtol=0.05)
    yr = channel(z, snr, "rayleigh")
    assert yr.shape == z.shape and torch.isfinite(yr).all()


def test_tiny_end_to_end_run_link(tiny):
    img = _image(40, 56)
    res = run_link(tiny, img, 10.0, FrameLink(PhyConfig(seed=1)), np.random.default_rng(1))
    assert res.crc_ok
    assert res.image is not None and res.image.shape == img.shape and res.image.dtype == np.uint8
    assert res.channel_uses["analog"] == channel_uses(40, 56, 16)
    # the latent already has unit power, so the link's normalisation scale is 1
    assert res.frame_tx.analog.size == res.frame_rx.analog.size


@pytest.mark.parametrize("hw", [(481, 321), (321, 481), (512, 512), (512, 768), (100, 77)])
@pytest.mark.parametrize("given", [True, False])
def test_latent_never_exceeds_the_budget(tiny, hw, given):
    """Padding counted, a given budget (the harness's floor(cbr * 3HW)) holds the whole
    frame, protected header included; without one the latent stays within the model's
    CBR 1/24; the decoded image has the original size."""
    h, w = hw
    img = _image(h, w)
    budget = 3 * h * w // 24
    res = run_link(tiny, img, 10.0, FrameLink(PhyConfig(seed=1)), np.random.default_rng(1),
                   budget_symbols=budget if given else None)
    held = res.channel_uses["total"] if given else res.channel_uses["analog"]
    assert res.frame_tx.analog.size // 2 == res.channel_uses["analog"] and held <= budget <= -(-3 * h * w // 24)
    assert res.image is not None and res.image.shape == img.shape
    report = res.frame_tx.meta["report"]
    assert report["budget_rule"] == BUDGET_RULE and report["budget"] == budget
    assert report["latent_uses"] == res.channel_uses["analog"]
    room = budget - res.channel_uses["header"] if given else budget
    assert report["resized"] == (channel_uses(h, w, 16) > room)
    if not report["resized"]:  # sizes that fit are coded as they are
        assert (report["coded_height"], report["coded_width"]) == (h, w)


def test_coded_size_rule():
    assert coded_size(512, 768, 49152, 16) == (512, 768)  # fits exactly: unchanged
    assert coded_size(481, 321, 19300, 16) == (480, 320)  # padded 61x41 cells (20,008 uses) > 19,300
    assert coded_size(100, 77, 962, 16) == (96, 77)  # the width's 10 cells are kept
    assert coded_size(37, 53, 245, 16) == (37, 48)
    assert coded_size(64, 64, 7, 16) is None  # not one cell (8 uses)
    for h, w, budget in ((481, 321, 19300), (1000, 37, 500), (33, 900, 100)):
        ch, cw = coded_size(h, w, budget, 16)
        assert channel_uses(ch, cw, 16) <= budget and ch <= h and cw <= w


def test_budget_too_small_raises(tiny):
    from gensemcom.systems.jpeg2000_ldpc import BudgetError

    with pytest.raises(BudgetError):
        tiny.encode(_image(64, 64), LinkContext(snr_db=10.0, budget_symbols=7))


def test_decode_rejects_a_coded_size_that_disagrees_with_the_latent(tiny):
    frame = tiny.encode(_image(100, 77), LinkContext(snr_db=10.0))
    assert "coded" not in frame.header  # the receiver derives 96 x 77 from the size and the CBR
    frame.header["coded"] = [100, 77]  # 13 x 10 cells, the latent has 12 x 10
    assert tiny.decode(frame, LinkContext(snr_db=10.0)) is None


def test_decode_returns_none_when_header_lost(tiny):
    frame = tiny.encode(_image(16, 16), LinkContext(snr_db=10.0))
    frame.crc_ok = False
    assert tiny.decode(frame, LinkContext(snr_db=10.0)) is None


def test_unknown_profile_and_missing_path():
    with pytest.raises(ValueError):
        build("deepjscc", profile="huge")
    with pytest.raises(FileNotFoundError):
        build("deepjscc", path="/nonexistent/deepjscc.pt")


@pytest.mark.skipif(not EMBEDDED_WEIGHTS.is_file(), reason=f"embedded weights {EMBEDDED_WEIGHTS.name} missing")
@pytest.mark.skipif(not KODAK.is_dir(), reason=f"shared data not found at {KODAK} (set GENSEMCOM_SHARED)")
def test_embedded_model_on_kodak():
    from PIL import Image

    system = build("deepjscc", profile="embedded")
    link = FrameLink(PhyConfig(seed=0))
    rng = np.random.default_rng(0)
    psnrs = []
    for name in ("kodim01.png", "kodim23.png"):
        img = np.asarray(Image.open(KODAK / name).convert("RGB"))
        res = run_link(system, img, 20.0, link, rng)
        mse = np.mean((res.image.astype(np.float64) - img) ** 2)
        psnrs.append(10 * np.log10(255 ** 2 / mse))
    assert np.mean(psnrs) >= PSNR_FLOOR_20DB, psnrs
