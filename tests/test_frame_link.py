"""SemanticFrame packing, PMT conversion, and frames through the PHY core."""
import numpy as np
import pytest

from gensemcom.frame import (AirHeader, FrameError, SemanticFrame, frame_from_pmt, frame_to_pmt, from_air,
                             from_arrays, pack_header, plain_meta, to_air, to_arrays, unpack_header)
from gensemcom.systems import SemanticSystem, build
from gensemcom.link import FrameLink, PhyConfig, run_link


def test_pack_unpack_header_round_trip():
    f = SemanticFrame("tisc", b"\x01\x02caption", np.arange(6, dtype=np.float32), {"shape": [2, 3], "norm": 1.5})
    d = unpack_header(pack_header(f, [2.5]), "tisc")
    assert d == AirHeader("tisc", {"shape": [2, 3], "norm": 1.5}, [("analog", 6, 2.5)])


def test_named_segments_round_trip_through_the_air_form():
    rng = np.random.default_rng(0)
    fg, bg = rng.standard_normal(64) * 3.0, rng.standard_normal(16) * 0.1
    f = SemanticFrame("gened", b"cap", {"fg": fg, "bg": bg}, {"k": 1}, {"image_id": "x"})
    assert list(f.segments) == ["fg", "bg"] and f.analog.size == 80 and f.segment_sizes() == {"fg": 64, "bg": 16}
    air = to_air(f)
    # each segment reaches the channel at unit average power, whatever its own power
    assert air.segments[0][:2] == ("fg", 32) and air.segments[1][:2] == ("bg", 8)
    assert np.isclose(np.mean(np.abs(air.analog[:32]) ** 2), 1.0) and np.isclose(np.mean(np.abs(air.analog[32:]) ** 2), 1.0)
    g = from_air(air.header, air.digital, air.analog, True, "gened", meta={"image_id": "x"})
    assert g.system == "gened" and g.digital == b"cap" and g.header == {"k": 1} and g.crc_ok
    assert np.allclose(g.segment("fg"), fg, atol=1e-5) and np.allclose(g.segment("bg"), bg, atol=1e-6)


def test_lost_digital_part_gives_unscaled_analog():
    f = SemanticFrame("x", b"", np.full(8, 4.0))
    air = to_air(f)
    g = from_air(None, None, air.analog, False, "x")
    assert g.crc_ok is False and g.header == {} and list(g.segments) == ["analog"]
    assert np.allclose(g.analog, np.sqrt(0.5))  # unit complex power, scale unknown


def test_from_air_rejects_a_short_analog_part_or_treats_a_bad_header_as_lost():
    air = to_air(SemanticFrame("x", b"", np.ones(8)))
    with pytest.raises(FrameError, match="announces"):
        from_air(air.header, air.digital, air.analog[:2], True, "x")
    assert from_air(b"garbage", b"", air.analog, True, "x", on_bad_header="lost").crc_ok is False


def test_arrays_form_round_trip_and_errors():
    f = SemanticFrame("s", b"ab", {"fg": np.ones(4), "bg": np.zeros(2)}, {"n": [1, 2]}, crc_ok=False)
    arrays, meta = to_arrays(f, "fb_")
    g = from_arrays(arrays, meta, "s", "fb_")
    assert g.segment_sizes() == {"fg": 4, "bg": 2} and g.header == {"n": [1, 2]} and g.crc_ok is False
    with pytest.raises(FrameError, match="add up"):
        from_arrays(arrays, {"fb_segments": [["fg", 4]]}, "s", "fb_")
    with pytest.raises(FrameError):
        from_arrays({"digital": np.zeros(1, np.uint8)}, {}, "s")


def test_plain_meta_keeps_what_every_form_carries():
    m = plain_meta({"a": np.float32(1.5), "b": float("nan"), "c": np.arange(3), "d": {"e": object()}, 5: "x"})
    assert m["a"] == 1.5 and m["b"] is None and m["c"] == [0, 1, 2] and isinstance(m["d"]["e"], str) and m["5"] == "x"


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
    link = FrameLink(PhyConfig(modulation=4, channel=channel, estimator=estimator, seed=1))
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
    res = run_link(Thumbnail(), img, -8.0, FrameLink(PhyConfig(modulation=256, seed=2)))
    assert not res.crc_ok and res.frame_rx.crc_ok is False and res.image is None
    assert res.frame_rx.header == {} and res.frame_rx.digital == b""


def test_build_unknown_system():
    with pytest.raises(ValueError, match="unknown system"):
        build("telepathy")
