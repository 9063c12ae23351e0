"""SemanticFrame packing, PMT conversion, and frames through the PHY core."""
import numpy as np
import pytest

from gensemcom.frame import FrameError, SemanticFrame, frame_from_pmt, frame_to_pmt
from gensemcom.systems.base import SemanticSystem, make_system
from gensemcom.systems.link import FrameLink, LinkConfig, run_link


def test_pack_unpack_digital_round_trip():
    f = SemanticFrame("tisc", b"\x01\x02caption", np.arange(6, dtype=np.float32), {"shape": [2, 3], "norm": 1.5})
    d = SemanticFrame.unpack_digital(f.pack_digital(2.5))
    assert d == {"system": "tisc", "header": {"shape": [2, 3], "norm": 1.5}, "analog_len": 6,
                 "analog_scale": 2.5, "digital": b"\x01\x02caption"}


@pytest.mark.parametrize("bad", [b"", b"\x00\x01", b"\x00\x02\x00\x00\x00\x00", b"\x00\x01\x00\x00\x00\x09abc",
                                 b"\x00\x01\x00\x00\x00\x01\xc1"])
def test_unpack_rejects_malformed(bad):
    with pytest.raises(FrameError):
        SemanticFrame.unpack_digital(bad)


def test_odd_analog_rejected():
    with pytest.raises(FrameError, match="odd"):
        SemanticFrame("x", analog=np.ones(3))


def test_pmt_round_trip():
    pytest.importorskip("pmt")
    f = SemanticFrame("deepjscc", b"abc", np.linspace(-1, 1, 8), {"c": 16}, {"image_id": "kodim01", "snr_db": 3.0},
                      crc_ok=True)
    g = frame_from_pmt(frame_to_pmt(f))
    assert (g.system, g.digital, g.header, g.meta, g.crc_ok) == (f.system, f.digital, f.header, f.meta, True)
    assert np.array_equal(g.analog, f.analog)
    import pmt
    with pytest.raises(FrameError):
        frame_from_pmt(pmt.intern("nope"))


class Thumbnail(SemanticSystem):
    """A test system: an 8x8 thumbnail, its mean colour exact (digital), the rest analog."""

    name = "thumbnail"

    def encode(self, image, ctx):
        small = image.reshape(8, image.shape[0] // 8, 8, image.shape[1] // 8, 3).mean(axis=(1, 3))
        mean = small.mean(axis=(0, 1))
        return SemanticFrame("thumbnail", bytes(np.round(mean).astype(np.uint8)),
                             (small - mean).astype(np.float32).reshape(-1), {"h": image.shape[0], "w": image.shape[1]})

    def decode(self, frame, ctx):
        if not frame.crc_ok:
            return None
        mean = np.frombuffer(frame.digital, np.uint8).astype(np.float32)
        small = frame.analog.reshape(8, 8, 3) + mean
        big = np.repeat(np.repeat(small, frame.header["h"] // 8, 0), frame.header["w"] // 8, 1)
        return np.clip(np.round(big), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channel,estimator", [("awgn", "perfect"), ("rayleigh", "perfect"), ("rayleigh", "lmmse")])
def test_run_link_reports_uses_and_recovers_image(channel, estimator):
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    link = FrameLink(LinkConfig(modulation=4, channel=channel, estimator=estimator, seed=1))
    res = run_link(Thumbnail(), img, 25.0, link)
    assert res.crc_ok and res.frame_rx.crc_ok
    expect = Thumbnail().decode(SemanticFrame("thumbnail", res.frame_tx.digital, res.frame_tx.analog,
                                              res.frame_tx.header, crc_ok=True), None)
    assert np.abs(res.image.astype(int) - expect.astype(int)).max() <= 12
    assert res.channel_uses["analog"] >= 96 and res.channel_uses["digital"] > 0
    assert res.channel_uses["total"] == res.channel_uses["analog"] + res.channel_uses["digital"]
    if estimator == "lmmse":  # pilots are counted
        assert res.channel_uses["analog"] == link.pilots.n_tx(96)


def test_run_link_lost_digital_part_is_flagged_not_used():
    img = np.zeros((32, 32, 3), np.uint8)
    res = run_link(Thumbnail(), img, -8.0, FrameLink(LinkConfig(modulation=256, seed=2)))
    assert not res.crc_ok and res.frame_rx.crc_ok is False and res.image is None
    assert res.frame_rx.header == {} and res.frame_rx.digital == b""


def test_make_system_unknown():
    with pytest.raises(ValueError, match="unknown system"):
        make_system("telepathy")
