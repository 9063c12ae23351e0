"""JPEG2000 + LDPC baseline: rate matching, channel-use budget, round trip, failures."""
import numpy as np
import pytest

from gensemcom.frame import SemanticFrame, to_air
from gensemcom.phy.digital import DigitalLink
from gensemcom.systems import LinkContext, build
from gensemcom.systems.jpeg2000_ldpc import (BudgetError, codestream_budget, frame_overhead, j2k_decode,
                                             j2k_encode, jpeg2000_available, payload_capacity, rate_label,
                                             rate_match, strip_comments)
from gensemcom.link import FrameLink, PhyConfig, run_link

pytestmark = pytest.mark.skipif(not jpeg2000_available(), reason="Pillow built without OpenJPEG")


def _images():
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:64, 0:64]
    smooth = np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8)
    noisy = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    return {"smooth": smooth, "noisy": noisy}


IMAGES = _images()


@pytest.mark.parametrize("m,rate", [(4, "1/2"), (16, "2/3"), (64, "5/6"), (16, "3/4")])
def test_payload_capacity_is_tight(m, rate):
    dl = DigitalLink(m, "default", rate)
    for budget in [0, 100, 1151, 1152, 5000, 49152]:
        cap = payload_capacity(budget, dl)
        if cap == 0:
            assert dl.n_symbols(1) > budget  # not even one block fits
            continue
        assert dl.n_symbols(cap) <= budget
        assert dl.n_symbols(cap + 1) > budget  # one more byte needs one more block


def test_rate_labels():
    assert [rate_label(r) for r in (0.5, 2 / 3, 0.75, 5 / 6, "3/4")] == ["1/2", "2/3", "3/4", "5/6", "3/4"]


@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize("max_bytes", [1, 50, 120, 300, 800, 2000, 20000])
def test_rate_match_never_exceeds_byte_budget(name, max_bytes):
    img = IMAGES[name]
    rm = rate_match(img, max_bytes)
    if rm is None:  # too small for any codestream: must fail cleanly
        assert max_bytes <= 300
        return
    assert len(rm.codestream) <= max_bytes
    out = j2k_decode(rm.codestream)
    assert out.shape == img.shape and out.dtype == np.uint8
    if 500 <= max_bytes < len(j2k_encode(img, None)):
        assert len(rm.codestream) >= 0.8 * max_bytes  # the search uses most of the budget


def test_strip_comments_keeps_decodable():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(IMAGES["smooth"]).save(buf, format="JPEG2000", no_jp2=True, quality_mode="rates",
                                           quality_layers=[20])
    raw = buf.getvalue()
    stripped = strip_comments(raw)
    assert len(stripped) <= len(raw) and b"\xff\x64" not in stripped[:200]
    assert np.array_equal(j2k_decode(stripped), j2k_decode(raw))


@pytest.mark.parametrize("m,rate", [(4, "1/2"), (16, "3/4"), (64, "5/6")])
@pytest.mark.parametrize("budget", [700, 1500, 4000])
def test_symbols_never_exceed_budget_through_framelink(m, rate, budget):
    system = build("jpeg2000-ldpc")
    link = FrameLink(PhyConfig(modulation=m, rate=rate, seed=1))
    img = IMAGES["smooth"]
    nbytes = codestream_budget(budget, m, rate)
    try:
        res = run_link(system, img, 30.0, link, budget_symbols=budget)
    except BudgetError:
        assert rate_match(img, nbytes) is None
        return
    assert res.channel_uses["total"] <= budget
    assert res.channel_uses["analog"] == 0
    assert res.channel_uses["header"] == frame_overhead("jpeg2000-ldpc") == 600
    mcs = link.digital.mcs_for(30.0)[0]
    assert link.digital.n_symbols(len(to_air(res.frame_tx).header), len(res.frame_tx.digital), mcs) == \
        res.channel_uses["digital"]


def test_round_trip_high_snr_is_the_decoded_codestream():
    system = build("jpeg2000-ldpc")
    link = FrameLink(PhyConfig(modulation=16, rate="1/2", seed=2))
    img = IMAGES["smooth"]
    res = run_link(system, img, 25.0, link, budget_symbols=3000)
    assert res.crc_ok and res.image is not None
    assert np.array_equal(res.image, j2k_decode(res.frame_tx.digital))
    assert res.frame_rx.digital == res.frame_tx.digital


def test_low_snr_is_a_failure():
    system = build("jpeg2000-ldpc")
    link = FrameLink(PhyConfig(modulation=64, rate="5/6", seed=3))
    res = run_link(system, IMAGES["smooth"], -5.0, link, budget_symbols=3000)
    assert not res.crc_ok and res.image is None


def test_tiny_budget_raises_budget_error():
    system = build("jpeg2000-ldpc")
    ctx = LinkContext(snr_db=10.0, modulation=4, code_rate=0.5, budget_symbols=1200)
    with pytest.raises(BudgetError, match="too few"):
        system.encode(IMAGES["noisy"], ctx)


def test_undecodable_codestream_is_a_failure():
    system = build("jpeg2000-ldpc")
    frame = SemanticFrame("jpeg2000-ldpc", b"\xff\x4f\xff\x51garbage" * 4, crc_ok=True)
    assert system.decode(frame, LinkContext()) is None
    frame.crc_ok = False
    assert system.decode(frame, LinkContext()) is None


def test_default_budget_without_context_budget():
    system = build("jpeg2000-ldpc", default_cbr=1 / 4)
    frame = system.encode(IMAGES["smooth"], LinkContext(modulation=16, code_rate=0.5))
    dl = DigitalLink(16, "default", "1/2")
    assert frame_overhead() + dl.n_symbols(len(frame.digital)) <= 64 * 64 * 3 // 4
