"""CRC-32 and code-block framing."""

import numpy as np
import pytest

from gensemcom.phy.framing import BlockFramer, append_crc, check_crc, crc32


def test_crc32_known_answer():
    # the standard CRC-32 check value
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"") == 0
    assert check_crc(append_crc(b"hello"))
    assert not check_crc(b"\x00\x01")


def test_crc_catches_every_single_bit_error():
    block = bytearray(append_crc(bytes(range(60))))
    for bit in range(8 * len(block)):
        bad = bytearray(block)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not check_crc(bytes(bad))


@pytest.mark.parametrize("n_bytes,blocks", [(0, 0), (1, 1), (120, 1), (121, 2), (5000, 41)])
def test_framing_round_trip_block_counts(n_bytes, blocks):
    f = BlockFramer(k=1024)  # 128 bytes: 124 of data + 4 CRC
    payload = np.random.default_rng(n_bytes).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    bits = f.split(payload)
    assert bits.shape == (blocks, 1024) == (f.n_blocks(n_bytes), f.k)
    d = f.join(bits)
    assert d.ok and d.payload == payload and d.failed_blocks == []


def test_framing_odd_k_pads_bits():
    f = BlockFramer(k=902)  # not a multiple of 8
    payload = b"x" * 300
    bits = f.split(payload)
    assert bits.shape[1] == 902 and not bits[:, 896:].any()
    assert f.join(bits).payload == payload


def test_framing_reports_exactly_which_blocks_failed():
    f = BlockFramer(k=1024)
    payload = bytes(range(256)) * 4
    bits = f.split(payload)
    bits[2, 100] ^= 1
    bits[5, 7] ^= 1
    d = f.join(bits)
    assert not d.ok
    assert d.failed_blocks == [2, 5]
    assert d.length_ok  # block 0 is intact, so the length is known
    assert len(d.payload) == len(payload)
    good = [i for i in range(bits.shape[0]) if i not in (2, 5)]
    for i in good[1:]:  # intact blocks deliver their bytes
        lo, hi = i * 124 - 4, (i + 1) * 124 - 4
        assert d.payload[lo:hi] == payload[lo:hi]


def test_framing_corrupt_first_block_loses_length():
    f = BlockFramer(k=1024)
    bits = f.split(b"abc" * 100)
    bits[0, 3] ^= 1
    d = f.join(bits)
    assert not d.length_ok and not d.ok and d.failed_blocks == [0]


def test_framing_refuses_oversized_payload():
    f = BlockFramer(k=1024, max_blocks=2)
    assert f.max_payload == 2 * 124 - 4
    f.split(bytes(f.max_payload))
    with pytest.raises(ValueError, match="max_blocks"):
        f.split(bytes(f.max_payload + 1))
    with pytest.raises(ValueError):
        BlockFramer(k=40)
