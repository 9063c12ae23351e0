"""The digital path: bytes -> CRC-32 blocks -> LDPC -> Gray M-QAM, and back.

The LDPC decoder is fed the soft demapper's LLRs (exact or max-log), never hard
decisions. The number of code blocks is implied by the number of symbols, so a burst
needs no side information beyond the modulation and code, which both ends configure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np

from . import ldpc
from .framing import BlockFramer
from .qam import QAM


class Uncoded:
    """A do-nothing code with the LDPC interface (k = n), for uncoded links and sweeps.

    Args:
        k (int): bits per block.
    """

    backend = "none"

    def __init__(self, k: int = 1024):
        self.k = self.n = int(k)
        self.name = f"uncoded-{k}"

    @property
    def rate(self) -> float:
        return 1.0

    def encode(self, bits: np.ndarray) -> np.ndarray:
        return np.asarray(bits, dtype=np.uint8)

    def decode(self, llr: np.ndarray, max_iter: Optional[int] = None) -> "ldpc.DecodeResult":
        llr = np.asarray(llr)
        bits = (llr < 0).astype(np.uint8)
        lead = llr.shape[:-1]
        return ldpc.DecodeResult(bits, np.ones(lead, bool), np.zeros(lead, int))


def make_code(backend: str = "default", rate: str = "1/2"):
    """An FEC code by name: backend ``"none"`` gives :class:`Uncoded`, others LDPC."""
    if backend == "none":
        return Uncoded()
    return ldpc.get_code(backend=backend, rate=rate)


@dataclass
class RxResult:
    """What the digital receiver returns.

    Attributes:
        payload (bytes | None): the received payload (see :class:`framing.Deframed`).
        crc_ok (bool): every block passed CRC-32 and the length field is intact.
        block_ok (np.ndarray): per-block CRC verdicts.
        failed_blocks (list[int]): indices of the blocks whose CRC failed.
        ldpc_ok (np.ndarray): per-block parity-check verdicts of the decoder.
        iterations (np.ndarray): decoder iterations per block.
    """

    payload: Optional[bytes]
    crc_ok: bool
    block_ok: np.ndarray
    failed_blocks: List[int] = field(default_factory=list)
    ldpc_ok: Optional[np.ndarray] = None
    iterations: Optional[np.ndarray] = None

    @property
    def n_blocks(self) -> int:
        return int(self.block_ok.size)


class DigitalLink:
    """Digital transmitter and receiver for one modulation and code.

    Args:
        modulation (int): QAM order M (4, 16, 64 or 256).
        backend (str): LDPC backend (see :func:`ldpc.available_backends`), or ``"none"``.
        rate (str): code rate, for example ``"1/2"``.
        max_blocks (int): largest payload in code blocks (bigger ones are refused).
        llr_method (str): ``"exact"`` or ``"maxlog"`` demapping.
        max_iter (int | None): decoder iterations (None: the backend's default).
    """

    def __init__(self, modulation: int = 16, backend: str = "default", rate: str = "1/2",
                 max_blocks: int = 4096, llr_method: str = "exact", max_iter: Optional[int] = None,
                 code=None):
        self.qam = QAM(modulation)
        self.code = code if code is not None else make_code(backend, rate)
        self.framer = BlockFramer(self.code.k, max_blocks=max_blocks)
        self.llr_method = llr_method
        self.max_iter = max_iter

    # ----------------------------------------------------------- channel uses
    def n_symbols(self, n_bytes: int) -> int:
        """Complex channel uses for a payload of ``n_bytes``."""
        return self.qam.symbols_for(self.framer.n_blocks(n_bytes) * self.code.n)

    def n_blocks_for_symbols(self, n_symbols: int) -> int:
        """Code blocks carried by ``n_symbols`` symbols."""
        return (int(n_symbols) * self.qam.bits_per_symbol) // self.code.n

    @property
    def max_payload(self) -> int:
        return self.framer.max_payload

    # ------------------------------------------------------------------ tx/rx
    def transmit(self, payload: Union[bytes, bytearray, np.ndarray]) -> np.ndarray:
        """Payload bytes -> complex64 QAM symbols (average power 1).

        Raises:
            ValueError: if the payload is larger than :attr:`max_payload`.
        """
        blocks = self.framer.split(bytes(payload))
        coded = self.code.encode(blocks).reshape(-1) if blocks.size else np.zeros(0, np.uint8)
        pad = (-coded.size) % self.qam.bits_per_symbol
        if pad:
            coded = np.concatenate([coded, np.zeros(pad, np.uint8)])
        return self.qam.modulate(coded)

    def receive(self, y: np.ndarray, noise_var) -> RxResult:
        """Equalised symbols -> payload with per-block CRC verdicts.

        Args:
            y (np.ndarray): received symbols (equalised when the channel fades).
            noise_var (float | np.ndarray): complex noise variance per symbol
                (after zero-forcing, N0 / |h|^2).
        """
        y = np.asarray(y).reshape(-1)
        nb = self.n_blocks_for_symbols(y.size)
        if nb == 0:
            d = self.framer.join(np.zeros((0, self.code.k), np.uint8))
            return RxResult(d.payload, d.ok, d.block_ok, [], np.zeros(0, bool), np.zeros(0, int))
        nv = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), y.shape)
        llr = self.qam.demodulate_llr(y, nv, self.llr_method)[: nb * self.code.n].reshape(nb, self.code.n)
        dec = self.code.decode(llr, max_iter=self.max_iter)
        d = self.framer.join(dec.bits)
        return RxResult(d.payload, d.ok, d.block_ok, d.failed_blocks, dec.ok, dec.iterations)


def estimate_noise_var(y: np.ndarray, qam: QAM, floor: float = 1e-4) -> float:
    """Blind, decision-directed estimate of the complex noise variance N0.

    Mean squared distance to the nearest constellation point. It is accurate at the
    SNRs where the decisions are mostly right and underestimates N0 below that (the
    LLRs become over-confident); prefer a known ``noise_var`` from the channel or
    the equaliser when one is available.
    """
    y = np.asarray(y).reshape(-1)
    if y.size == 0:
        return 1.0
    d = qam.modulate(qam.demodulate_hard(y))
    return max(float(np.mean(np.abs(y - d) ** 2)), floor)
