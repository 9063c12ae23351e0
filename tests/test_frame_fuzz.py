"""The frame codecs are total: any input gives a frame or FrameError, nothing else
(property-based, with a bounded budget; ``bench``-scale fuzzing is for later)."""
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gensemcom.frame import (FrameError, SemanticFrame, frame_from_pmt, from_air, from_arrays, pack_header, to_air,
                             unpack_header)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                    st.text(max_size=8), st.binary(max_size=8))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
                      max_leaves=12)
GOOD = pack_header(SemanticFrame("tisc", b"payload", {"fg": np.ones(4), "bg": np.ones(2)}, {"pos": 1}), [1.0, 2.0])


def _total(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except FrameError:
        return None


@FAST
@given(st.binary(max_size=200))
def test_unpack_header_on_any_bytes(data):
    _total(unpack_header, data, "tisc")


@FAST
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_unpack_header_on_mutated_packets(edits):
    data = bytearray(GOOD)
    for i, b in edits:
        data[i] = b
    _total(unpack_header, bytes(data), "tisc")


@FAST
@given(values, values, values)
def test_wire_header_fields_of_any_type(s, h, a):
    head = msgpack.packb([h, a], use_bin_type=True) if not isinstance(s, str) else msgpack.packb({"s": s, "h": h})
    packet = struct.pack(">H", 0xBEEF) + head
    u = _total(unpack_header, packet, "")
    if u is not None:  # what passes is what the receiver may rely on
        assert isinstance(u.system, str) and isinstance(u.header, dict)
        assert all(isinstance(n, int) and n >= 0 and n % 2 == 0 and np.isfinite(k) for _, n, k in u.segments)
        _total(from_air, packet, b"", np.zeros(u.analog_len // 2, np.complex64), True)


@FAST
@given(values, st.binary(max_size=40), st.lists(st.floats(width=32), max_size=8))
def test_from_arrays_with_any_meta(meta, header, analog):
    arrays = {"digital": np.zeros(3, np.uint8), "analog": np.asarray(analog, np.float32),
              "header": np.frombuffer(header, np.uint8)}
    _total(from_arrays, arrays, meta if isinstance(meta, dict) else {"segments": meta, "crc_ok": meta}, "s")


@FAST
@given(values)
def test_frame_from_any_pmt(v):
    pmt = pytest.importorskip("pmt")
    try:
        msg = pmt.to_pmt(v if not isinstance(v, dict) else {**v, "system": "x"})
    except Exception:  # PMT cannot hold it: nothing to decode
        return
    _total(frame_from_pmt, msg)


def test_a_valid_frame_survives_the_pmt_form():
    pmt = pytest.importorskip("pmt")
    from gensemcom.frame import frame_to_pmt

    f = SemanticFrame("gened", b"x", {"fg": np.arange(4.0), "bg": np.ones(2)}, {"a": 1}, {"image_id": "k", "r": {"c": "d"}},
                      crc_ok=True)
    g = frame_from_pmt(frame_to_pmt(f))
    assert g == f and isinstance(pmt.to_python(frame_to_pmt(f)), dict)
    assert to_air(g).digital == to_air(f).digital


def test_pmt_frame_with_u64_meta_is_kept_and_a_non_map_header_refused():
    pmt = pytest.importorskip("pmt")
    from gensemcom.frame import frame_to_pmt

    d = frame_to_pmt(SemanticFrame("x", b"a", None, {}, {"k": 1}))
    meta = pmt.dict_add(pmt.make_dict(), pmt.intern("ids"), pmt.init_u64vector(3, [1, 2, 3]))
    assert frame_from_pmt(pmt.dict_add(d, pmt.intern("meta"), meta)).meta == {"ids": [1, 2, 3]}
    with pytest.raises(FrameError, match="map"):  # msgpack of a bare integer: never a silent non-dict header
        frame_from_pmt(pmt.dict_add(d, pmt.intern("header"), pmt.init_u8vector(1, [5])))
