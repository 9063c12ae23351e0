"""The digital path: bytes -> CRC-32 blocks -> LDPC -> Gray M-QAM, and back.

:class:`DigitalLink` carries a payload at one modulation and code; :class:`DigitalPath`
carries a frame: the protected header block (:mod:`.header`), then the payload at an
MCS chosen per frame (:mod:`.mcs`), named in the header.

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
from .header import HeaderCodec
from .mcs import MCS, parse_choice, select_mcs
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


# ====================================================================== frames
@dataclass
class PathTx:
    """One frame's digital symbols as :meth:`DigitalPath.transmit` makes them.

    Attributes:
        symbols (np.ndarray): header block(s) then payload, complex64, unit power.
        n_header (int): channel uses of the protected header.
        mcs (MCS): the payload's modulation and code.
        reason (str): why that MCS (link adaptation's explanation, or "fixed ...").
    """

    symbols: np.ndarray
    n_header: int
    mcs: MCS
    reason: str = ""


@dataclass
class PathRx:
    """What :meth:`DigitalPath.receive` returns.

    Attributes:
        header_ok (bool): the protected header arrived.
        header (bytes | None): the semantic header (None when lost).
        payload (bytes | None): the payload; None when the header was lost.
        crc_ok (bool): the payload passed its CRC (False when the header was lost).
        mcs (MCS | None): the payload's MCS as the header named it.
        n_header (int): channel uses of the header.
        snr_db (float | None): the data-aided Es/N0 estimate from the header.
        failed_blocks (list[int]): payload code blocks whose CRC failed.
        n_blocks (int): payload code blocks.
        reason (str): why the header was lost ("" otherwise).
    """

    header_ok: bool
    header: Optional[bytes]
    payload: Optional[bytes]
    crc_ok: bool
    mcs: Optional[MCS]
    n_header: int
    snr_db: Optional[float] = None
    failed_blocks: List[int] = field(default_factory=list)
    n_blocks: int = 0
    reason: str = ""


class DigitalPath:
    """A frame's digital path: the protected header block (QPSK, 5G NR LDPC rate 1/5,
    :mod:`gensemcom.phy.header`), then the payload at its MCS, chosen per frame when
    modulation or rate is ``"auto"`` (:func:`gensemcom.phy.mcs.select_mcs`).

    Args:
        modulation (int | str): QAM order, or "auto".
        backend (str): LDPC backend, or "none" (uncoded payload).
        rate (str): code rate, or "auto".
        llr_method (str): "exact" or "maxlog".
        max_iter (int | None): decoder iterations.
        max_blocks (int): largest payload in code blocks.
        target_bler (float): link adaptation's code-block error target.
        channel (str): the BLER table adaptation reads ("awgn" or "rayleigh").
        header_repeat (int): copies of the header block (both ends; see :class:`HeaderCodec`).
    """

    def __init__(self, modulation=16, backend: str = "default", rate="1/2", llr_method: str = "exact",
                 max_iter: Optional[int] = None, max_blocks: int = 4096, target_bler: float = 1e-2,
                 channel: str = "awgn", header_repeat: int = 1):
        self.modulation = parse_choice(modulation, "modulation")
        self.rate = parse_choice(rate, "rate") if backend != "none" else "1"
        self.backend = backend
        self.llr_method, self.max_iter, self.max_blocks = llr_method, max_iter, int(max_blocks)
        self.target_bler, self.channel = float(target_bler), channel
        self.header = HeaderCodec(backend if backend in ("numba", "numpy") else "default", header_repeat)
        self._links = {}
        # fail early on a fixed MCS that does not exist
        self.mcs_for(None)

    def mcs_for(self, snr_db: Optional[float]):
        """The payload MCS for a frame sent at ``snr_db`` and the reason (link adaptation)."""
        return select_mcs(snr_db, self.target_bler, self.channel, self.modulation, self.rate, self.backend)

    def accepts(self, mcs: MCS) -> bool:
        """Whether ``mcs`` matches this path's modulation and rate (each fixed or "auto")."""
        return (self.modulation == "auto" or mcs.modulation == self.modulation) and \
            (self.rate == "auto" or mcs.rate == MCS(mcs.modulation, self.rate, mcs.backend).rate)

    def payload_link(self, mcs) -> DigitalLink:
        """The :class:`DigitalLink` of one MCS (cached)."""
        key = (mcs.modulation, mcs.rate, mcs.backend)
        if key not in self._links:
            self._links[key] = DigitalLink(mcs.modulation, mcs.backend, mcs.rate, self.max_blocks,
                                           self.llr_method, self.max_iter)
        return self._links[key]

    def n_symbols(self, n_header: int, n_payload: int, mcs) -> int:
        """Channel uses of a frame with a semantic header of ``n_header`` bytes and a
        payload of ``n_payload`` bytes at ``mcs``."""
        return self.header.n_symbols(n_header) + self.payload_link(mcs).n_symbols(n_payload)

    def transmit(self, header: bytes, payload: bytes, snr_db: Optional[float] = None, mcs=None) -> PathTx:
        """Header and payload -> symbols.

        Args:
            header (bytes): the semantic header.
            payload (bytes): the payload.
            snr_db (float | None): the Es/N0 the transmitter expects (adaptation).
            mcs (MCS | None): force an MCS (default: :meth:`mcs_for`).

        Raises:
            ValueError: a header or payload too large.
        """
        reason = "given"
        if mcs is None:
            mcs, reason = self.mcs_for(snr_db)
        h = self.header.encode(header, mcs)
        p = self.payload_link(mcs).transmit(payload)
        return PathTx(np.concatenate([h, p]).astype(np.complex64), int(h.size), mcs, reason)

    def receive(self, y: np.ndarray, noise_var) -> PathRx:
        """Equalised symbols (header first) -> header and payload.

        Args:
            y (np.ndarray): received symbols.
            noise_var (float | np.ndarray): complex noise variance (one or per symbol).
        """
        y = np.asarray(y, np.complex64).reshape(-1)
        nv = np.broadcast_to(np.asarray(noise_var, np.float64), y.shape) if np.ndim(noise_var) == 0 \
            else np.asarray(noise_var, np.float64).reshape(-1)
        h = self.header.decode(y, nv, self.backend if self.backend in ("numba", "numpy") else None)
        if not h.ok:
            return PathRx(False, None, None, False, None, h.n_symbols, None, reason=h.reason)
        yp, nvp = y[h.n_symbols:], nv[h.n_symbols:]
        link = self.payload_link(h.mcs)
        if yp.size == 0 or link.n_blocks_for_symbols(yp.size) == 0:
            return PathRx(True, h.body, b"", True, h.mcs, h.n_symbols, h.snr_db)
        res = link.receive(yp, nvp)
        return PathRx(True, h.body, res.payload, bool(res.crc_ok), h.mcs, h.n_symbols, h.snr_db,
                      list(res.failed_blocks), res.n_blocks)
