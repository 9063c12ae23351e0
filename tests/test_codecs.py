"""Payload codecs: token ids, UTF-8 text, label maps (round trips, known sizes, total decoders)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gensemcom.codecs import CodecError, pack_ids, pack_label_map, pack_text, unpack_ids, unpack_label_map, unpack_text


def test_ids_round_trip_and_width():
    data, dt = pack_ids([0, 5, 49407])
    assert dt == "<u2" and len(data) == 6 and unpack_ids(data, dt) == [0, 5, 49407]
    data, dt = pack_ids([70000, 1])
    assert dt == "<u4" and unpack_ids(data, dt) == [70000, 1]
    with pytest.raises(CodecError):
        unpack_ids(b"\x00\x01\x02", "<u2")
    with pytest.raises(CodecError):
        unpack_ids(b"", "float")
    with pytest.raises(ValueError):
        pack_ids([-1])


def test_text_round_trip():
    assert unpack_text(pack_text("a cat on a mat, naïvely")) == "a cat on a mat, naïvely"
    with pytest.raises(CodecError):
        unpack_text(b"\xff\xfe\xfa")


def test_label_map_is_lossless_and_small_for_regions():
    labels = np.zeros((120, 160), np.uint8)
    labels[40:90, 30:100] = 7
    labels[:, 150:] = 19
    data = pack_label_map(labels)
    assert np.array_equal(unpack_label_map(data), labels)
    assert len(data) < labels.size // 50  # a few regions: well under 2 % of a byte per pixel
    noise = np.random.default_rng(0).integers(0, 20, (64, 64)).astype(np.uint8)
    assert np.array_equal(unpack_label_map(pack_label_map(noise)), noise)
    with pytest.raises(ValueError):
        pack_label_map(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(CodecError, match="limit"):
        unpack_label_map(pack_label_map(labels), max_pixels=100)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_are_total(data):
    for fn in (lambda: unpack_ids(data, "<u2"), lambda: unpack_text(data), lambda: unpack_label_map(data)):
        try:
            fn()
        except CodecError:
            pass
