"""The protected header: the few bytes a receiver must have, in their own strongly
coded block at the start of every frame.

The header (the PHY's version and the payload's MCS, then the frame's semantic header:
system id, shapes, norms, positions, analog segment lengths and scales; see
:func:`gensemcom.frame.pack_header`) is sent apart from the payload, on QPSK with the
5G NR base graph 2 LDPC code at rate 1/5 (k = 240, z = 24: 1,200 coded bits, **600
complex channel uses per block**) and a CRC-16/CCITT per block, whatever modulation
and code the payload uses. So a frame whose payload fails at its MCS still delivers
its header (the system decides what to do with it), and a receiver needs no
configuration to decode a payload sent at an adaptively chosen MCS.

Block layout (30 bytes = 240 bits): 28 data bytes, then the CRC-16 of those 28. The
data of all blocks together is ``[length u8][version << 4 | log2 M][code id]`` then
the semantic header, zero-padded; ``length`` counts the bytes after itself, so block 0
tells the receiver how many blocks follow. Most frames need one block (a semantic
header up to 25 bytes); the largest takes :data:`MAX_BLOCKS`.

After decoding, the receiver re-encodes the header it got and compares the symbols
with what arrived: a data-aided estimate of the SNR (:func:`estimate_snr_db`), which
the link feeds back to the transmitter for adaptation.
"""
from __future__ import annotations

import binascii
import math
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import ldpc
from .mcs import MCS, MCSError
from .qam import QAM

PHY_VERSION = 3
HEADER_RATE = "1/5"
HEADER_K = 240
BLOCK_BYTES = HEADER_K // 8
DATA_BYTES = BLOCK_BYTES - 2
PREFIX_BYTES = 3
MAX_BLOCKS = 10
#: the largest semantic header the protected header carries
MAX_BODY = MAX_BLOCKS * DATA_BYTES - PREFIX_BYTES


class HeaderError(ValueError):
    """A header that cannot be sent (too large) or an MCS it cannot name."""


@dataclass
class HeaderRx:
    """What :meth:`HeaderCodec.decode` returns.

    Attributes:
        ok (bool): every header block passed its CRC and the fields are valid.
        body (bytes | None): the semantic header (None when lost).
        mcs (MCS | None): the payload's MCS (None when lost or unnamed).
        n_symbols (int): channel uses the header took (known even when it failed
            after block 0; one block's when block 0 failed).
        snr_db (float | None): data-aided Es/N0 estimate from the header symbols
            (None when the header was lost).
        reason (str): why it was lost ("" when ok).
    """

    ok: bool
    body: Optional[bytes]
    mcs: Optional[MCS]
    n_symbols: int
    snr_db: Optional[float] = None
    reason: str = ""


def estimate_snr_db(y: np.ndarray, x: np.ndarray, noise_var=None) -> float:
    """Data-aided Es/N0 (dB) of received symbols ``y`` whose sent symbols ``x`` (unit
    power) are known.

    On AWGN it is ``1 / mean|y - x|^2``. After a zero-forcing equaliser, whose noise
    variance per symbol ``noise_var`` = N0 / |h|^2 is given, it is the mean of
    1 / noise_var (the average channel SNR) corrected by how far the residuals agree
    with those variances, so a mis-scaled estimator shows up in the result.
    """
    y = np.asarray(y, np.complex128).reshape(-1)
    x = np.asarray(x, np.complex128).reshape(-1)[: y.size]
    e = np.abs(y - x) ** 2
    nv = np.ones(y.size) if noise_var is None else np.broadcast_to(np.asarray(noise_var, float), y.shape)
    nv = np.maximum(nv, 1e-12)
    ratio = max(float(np.mean(e / nv)), 1e-12)
    return float(10 * math.log10(float(np.mean(1.0 / nv)) / ratio))


class HeaderCodec:
    """Encoder and decoder of the protected header.

    Args:
        backend (str): LDPC backend ("default", "numba" or "numpy").
        repeat (int): copies of every header block (both ends must agree). The receiver
            adds the copies' LLRs (Chase combining): each doubling is 3 dB, and on a fading
            channel the copies, a block apart, fade independently. 1 on AWGN; more on
            Rayleigh, where one copy is lost below about 1 dB.

    Raises:
        ValueError: ``repeat`` outside 1..8.
    """

    def __init__(self, backend: str = "default", repeat: int = 1):
        be = backend if backend in ("numba", "numpy") else "default"
        if not 1 <= int(repeat) <= 8:
            raise ValueError(f"header repeat must be 1..8, got {repeat}")
        self.code = ldpc.get_code(be, HEADER_RATE, k=HEADER_K)
        self.qam = QAM(4)
        self.repeat = int(repeat)
        self.copy_symbols = self.qam.symbols_for(self.code.n)
        #: channel uses of one header block with its copies
        self.block_symbols = self.repeat * self.copy_symbols
        self.backend = be

    # ------------------------------------------------------------------ tx
    def n_blocks(self, n_body: int) -> int:
        return max(1, -(-(PREFIX_BYTES + int(n_body)) // DATA_BYTES))

    def n_symbols(self, n_body: int) -> int:
        """Channel uses of a header carrying a semantic header of ``n_body`` bytes."""
        return self.n_blocks(n_body) * self.block_symbols

    def _blocks(self, body: bytes, mcs: MCS) -> np.ndarray:
        body = bytes(body)
        if len(body) > MAX_BODY:
            raise HeaderError(f"header of {len(body)} bytes exceeds {MAX_BODY}")
        data = struct.pack(">BBB", len(body) + 2, (PHY_VERSION << 4) | mcs.bits_per_symbol, mcs.code_id) + body
        nb = self.n_blocks(len(body))
        data += bytes(nb * DATA_BYTES - len(data))
        raw = b"".join(data[i * DATA_BYTES:(i + 1) * DATA_BYTES] +
                       struct.pack(">H", binascii.crc_hqx(data[i * DATA_BYTES:(i + 1) * DATA_BYTES], 0xFFFF))
                       for i in range(nb))
        return np.unpackbits(np.frombuffer(raw, np.uint8)).reshape(nb, HEADER_K)

    def encode(self, body: bytes, mcs: MCS) -> np.ndarray:
        """Semantic header and the payload's MCS -> QPSK symbols (complex64, unit power).

        Raises:
            HeaderError: a header over :data:`MAX_BODY` bytes.
        """
        x = self.qam.modulate(self.code.encode(self._blocks(body, mcs)).reshape(-1))
        return self._copies(x)

    def _copies(self, x: np.ndarray) -> np.ndarray:
        """Each block's symbols followed by its copies."""
        return np.repeat(x.reshape(-1, 1, self.copy_symbols), self.repeat, axis=1).reshape(-1)

    # ------------------------------------------------------------------ rx
    def _decode_blocks(self, y: np.ndarray, nv: np.ndarray, first: int, count: int):
        n = self.block_symbols
        seg = slice(first * n, (first + count) * n)
        # (block, copy, bits): Chase combining adds the copies' LLRs
        llr = self.qam.demodulate_llr(y[seg], nv[seg]).reshape(count, self.repeat, -1)[:, :, : self.code.n].sum(1)
        dec = self.code.decode(llr)
        raw = np.packbits(dec.bits, axis=1)
        ok = [binascii.crc_hqx(r[:DATA_BYTES].tobytes(), 0xFFFF) == struct.unpack(">H", r[DATA_BYTES:].tobytes())[0]
              for r in raw]
        return raw, np.array(ok, bool), dec.bits

    def decode(self, y: np.ndarray, noise_var, backend: Optional[str] = None) -> HeaderRx:
        """Received (equalised) symbols, starting with the header -> the header.

        Args:
            y (np.ndarray): symbols; the header's come first, the rest is ignored.
            noise_var (float | np.ndarray): complex noise variance (per symbol or one).
            backend (str | None): LDPC backend for the payload's MCS (default: this codec's).
        """
        y = np.asarray(y, np.complex64).reshape(-1)
        nv = np.broadcast_to(np.asarray(noise_var, np.float64), y.shape) if np.ndim(noise_var) == 0 \
            else np.asarray(noise_var, np.float64).reshape(-1)
        n = self.block_symbols
        if y.size < n or nv.size != y.size:
            return HeaderRx(False, None, None, min(y.size, n), None, f"{y.size} symbols, a header block needs {n}")
        nv = np.maximum(nv, 1e-9)
        raw, ok, bits = self._decode_blocks(y, nv, 0, 1)
        if not ok[0]:
            return HeaderRx(False, None, None, n, None, "header block 0 failed its CRC")
        length, vm, code_id = struct.unpack(">BBB", raw[0, :PREFIX_BYTES].tobytes())
        nb = self.n_blocks(max(0, length - 2))
        if vm >> 4 != PHY_VERSION or length < 2 or nb > MAX_BLOCKS:
            return HeaderRx(False, None, None, n, None, f"header of PHY version {vm >> 4} (this receiver reads "
                            f"{PHY_VERSION}) or a bad length {length}")
        if nb > 1:
            if y.size < nb * n:
                return HeaderRx(False, None, None, y.size, None, f"header announces {nb} blocks, "
                                f"{y.size} symbols arrived")
            raw2, ok2, bits2 = self._decode_blocks(y, nv, 1, nb - 1)
            if not ok2.all():
                return HeaderRx(False, None, None, nb * n, None, f"header blocks {list(np.flatnonzero(~ok2) + 1)} "
                                "failed their CRC")
            raw, bits = np.concatenate([raw, raw2]), np.concatenate([bits, bits2])
        try:
            mcs = MCS.from_ids(vm & 0x0F, code_id, backend or self.backend)
        except MCSError as e:
            return HeaderRx(False, None, None, nb * n, None, f"header names an unknown MCS: {e}")
        data = b"".join(r[:DATA_BYTES].tobytes() for r in raw)
        x = self._copies(self.qam.modulate(self.code.encode(bits).reshape(-1)))
        snr = estimate_snr_db(y[: nb * n], x, nv[: nb * n])
        return HeaderRx(True, data[PREFIX_BYTES: 1 + length], mcs, nb * n, snr)


__all__ = ["HeaderCodec", "HeaderError", "HeaderRx", "MAX_BODY", "PHY_VERSION", "estimate_snr_db"]
