"""CRC-32 and the framing layer: any byte payload <-> fixed-size code blocks.

A payload is prefixed with its length (4 bytes, big-endian), cut into chunks of
``k // 8 - 4`` bytes (zero-padded at the end), and each chunk gets its own CRC-32
(IEEE 802.3, ``zlib.crc32``), so every code block is ``k`` bits and the receiver knows
exactly which blocks failed. An empty payload takes zero blocks.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

CRC_BYTES = 4
LEN_BYTES = 4


def crc32(data: bytes) -> int:
    """CRC-32 (IEEE 802.3 polynomial, as zlib and Ethernet compute it)."""
    return zlib.crc32(bytes(data)) & 0xFFFFFFFF


def append_crc(data: bytes) -> bytes:
    """``data`` followed by its CRC-32, big-endian."""
    return bytes(data) + struct.pack(">I", crc32(data))


def check_crc(block: bytes) -> bool:
    """True when the last four bytes of ``block`` are the CRC-32 of the rest."""
    block = bytes(block)
    if len(block) < CRC_BYTES:
        return False
    return struct.unpack(">I", block[-CRC_BYTES:])[0] == crc32(block[:-CRC_BYTES])


@dataclass
class Deframed:
    """Result of :meth:`BlockFramer.join`.

    Attributes:
        payload (bytes | None): the payload, trimmed to its length when the first
            block (which carries the length) passed its CRC and the length is
            plausible; the untrimmed data otherwise; None only when there is nothing.
        block_ok (np.ndarray): one bool per code block: its CRC passed.
        length_ok (bool): the length field was received intact and is plausible.
    """

    payload: Optional[bytes]
    block_ok: np.ndarray
    length_ok: bool = True
    failed_blocks: List[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every block passed its CRC and the length is consistent."""
        return bool(self.length_ok and np.all(self.block_ok))


class BlockFramer:
    """Split byte payloads into ``k``-bit code blocks with CRC-32, and join them back.

    Args:
        k (int): information bits per code block (the LDPC ``k``); at least 72.
        max_blocks (int): refuse payloads that would need more blocks than this.
    """

    def __init__(self, k: int, max_blocks: int = 65535):
        self.k = int(k)
        self.block_bytes = self.k // 8
        self.chunk_bytes = self.block_bytes - CRC_BYTES
        if self.chunk_bytes < LEN_BYTES + 1:
            raise ValueError(f"k={k} leaves no room for a CRC-32 and a length field")
        self.pad_bits = self.k - 8 * self.block_bytes
        self.max_blocks = int(max_blocks)

    @property
    def max_payload(self) -> int:
        """Largest payload (bytes) that fits in ``max_blocks`` blocks."""
        return self.max_blocks * self.chunk_bytes - LEN_BYTES

    def n_blocks(self, n_bytes: int) -> int:
        """Code blocks needed for a payload of ``n_bytes``."""
        if n_bytes == 0:
            return 0
        return -(-(n_bytes + LEN_BYTES) // self.chunk_bytes)

    def split(self, payload: bytes) -> np.ndarray:
        """Payload -> (B, k) uint8 bit blocks, each chunk followed by its CRC-32.

        Raises:
            ValueError: if the payload needs more than ``max_blocks`` blocks.
        """
        payload = bytes(payload)
        nb = self.n_blocks(len(payload))
        if nb > self.max_blocks:
            raise ValueError(
                f"payload of {len(payload)} bytes needs {nb} code blocks, more than max_blocks={self.max_blocks}"
            )
        if nb == 0:
            return np.zeros((0, self.k), dtype=np.uint8)
        data = struct.pack(">I", len(payload)) + payload
        data += bytes(nb * self.chunk_bytes - len(data))
        blocks = [append_crc(data[i * self.chunk_bytes:(i + 1) * self.chunk_bytes]) for i in range(nb)]
        bits = np.unpackbits(np.frombuffer(b"".join(blocks), dtype=np.uint8)).reshape(nb, 8 * self.block_bytes)
        if self.pad_bits:
            bits = np.concatenate([bits, np.zeros((nb, self.pad_bits), np.uint8)], axis=1)
        return bits

    def join(self, bits: np.ndarray) -> Deframed:
        """(B, k) bit blocks -> payload, with the CRC verdict of every block."""
        bits = np.asarray(bits, dtype=np.uint8).reshape(-1, self.k)
        nb = bits.shape[0]
        if nb == 0:
            return Deframed(b"", np.zeros(0, bool), True, [])
        raw = np.packbits(bits[:, : 8 * self.block_bytes], axis=1)
        ok = np.array([check_crc(row.tobytes()) for row in raw])
        data = b"".join(row[: self.chunk_bytes].tobytes() for row in raw)
        length = struct.unpack(">I", data[:LEN_BYTES])[0]
        length_ok = bool(ok[0]) and self.n_blocks(length) == nb
        payload = data[LEN_BYTES: LEN_BYTES + length] if length_ok else data[LEN_BYTES:]
        return Deframed(payload, ok, length_ok, [int(i) for i in np.flatnonzero(~ok)])
