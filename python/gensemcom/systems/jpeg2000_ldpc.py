"""Classical baseline: JPEG2000 rate-matched to a channel-use budget, over LDPC + M-QAM.

The transmitter compresses the image with JPEG2000 (OpenJPEG through Pillow's
``JPEG2000`` plugin: irreversible 9/7 wavelet, irreversible colour transform, one
quality layer) and searches the compression ratio so that the codestream, once packed
into a :class:`~gensemcom.frame.SemanticFrame` and framed by the digital PHY (frame
header, 4-byte length, CRC-32 per LDPC code block, whole code blocks, whole QAM
symbols), never needs more complex channel uses than the budget
(:attr:`LinkContext.budget_symbols`). The receiver decodes the codestream when the
digital part passed its CRC; otherwise (or when OpenJPEG cannot decode the bytes) the
image is lost and :meth:`JPEG2000LDPC.decode` returns None. This is the usual "cliff":
above some SNR the image arrives exactly as compressed, below it nothing arrives.

Channel-use arithmetic (:func:`payload_capacity`): the frame's protected header block
(:mod:`gensemcom.phy.header`, 600 channel uses) comes off the budget first
(:func:`frame_overhead`); then with M-QAM (``b = log2 M`` bits per symbol) and an LDPC
code of length ``n`` and ``k`` information bits, the remaining ``U`` symbols carry
``B = floor(U * b / n)`` code blocks; each block holds ``k // 8 - 4`` payload bytes
(the rest is its CRC-32), and the first 4 bytes of the payload are its length, so at
most ``B * (k // 8 - 4) - 4`` codestream bytes fit (:func:`codestream_budget`). This is slightly below the naive
``floor(U * b * rate / 8)`` and exactly what the PHY uses.

Failure convention: a lost image is reported as failed (the harness counts a failure
rate) and, following the Stable Cascade semantic-communication paper, scored PSNR 0
in "PSNR with failures scored 0" (see :mod:`gensemcom.eval.metrics`).

A budget too small for even the smallest codestream raises :class:`BudgetError` at
the transmitter (nothing is sent; the harness records the image as failed with zero
channel uses).
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import struct
import time
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from ..frame import SemanticFrame, header_symbols
from ..phy.digital import DigitalLink
from ..phy.framing import LEN_BYTES
from ..phy.mcs import rate_label
from .base import MAX_IMAGE_PIXELS, LinkContext, Option, SemanticSystem, as_image
from .registry import register_system

#: Default channel-use budget when the context gives none: this fraction of 3*H*W.
DEFAULT_CBR = 1.0 / 24.0

#: Stop the ratio search once the feasible and infeasible ratios are this close.
_RATIO_TOL = 1.005
_MAX_STEPS = 18


class BudgetError(ValueError):
    """The channel-use budget cannot carry even the smallest frame a system can send
    (here: the smallest JPEG2000 codestream; DeepJSCC: one latent cell). The harness
    records the image as failed with zero channel uses."""


def jpeg2000_available() -> bool:
    """Whether Pillow was built with OpenJPEG (the ``JPEG2000`` plugin)."""
    try:
        from PIL import features

        return bool(features.check("jpg_2000"))
    except Exception:
        return False


# ------------------------------------------------------------ rate matching
def payload_capacity(budget_symbols: int, digital: DigitalLink) -> int:
    """Largest digital payload (bytes, frame header included) whose symbols fit the budget.

    Uses the PHY's own framing arithmetic (CRC-32 per code block, 4-byte length,
    whole code blocks, whole QAM symbols, the link's ``max_blocks``) and checks the
    answer against :meth:`DigitalLink.n_symbols`.

    Args:
        budget_symbols (int): complex channel uses available for the digital part.
        digital (DigitalLink): the digital link (modulation and code).

    Returns:
        int: payload bytes; 0 when not even one code block fits.
    """
    budget_symbols = int(budget_symbols)
    if budget_symbols <= 0:
        return 0
    blocks = min(budget_symbols * digital.qam.bits_per_symbol // digital.code.n, digital.framer.max_blocks)
    cap = blocks * digital.framer.chunk_bytes - LEN_BYTES
    if cap <= 0:
        return 0
    assert digital.n_symbols(cap) <= budget_symbols, "framing arithmetic disagrees with DigitalLink.n_symbols"
    return cap


def frame_overhead(system: str = "jpeg2000-ldpc", header: Optional[dict] = None, backend: str = "default",
                   repeat: int = 1) -> int:
    """Channel uses of the frame's protected header block (:mod:`gensemcom.phy.header`),
    which carries the semantic header apart from the payload.

    Args:
        system (str): the system name written into the frame header.
        header (dict | None): the frame's header dict.
        backend (str): LDPC backend.
        repeat (int): copies of the header block the link sends.
    """
    return header_symbols(system, header or {}, None, repeat, backend)


def codestream_budget(budget_symbols: int, modulation: int = 16, rate: Union[str, float] = "1/2",
                      backend: str = "default", header: Optional[dict] = None,
                      system: str = "jpeg2000-ldpc", repeat: int = 1) -> int:
    """Codestream bytes that fit a channel-use budget once framed and sent.

    Args:
        budget_symbols (int): complex channel uses for the whole frame (header block included).
        modulation (int): QAM order.
        rate (str | float): LDPC code rate.
        backend (str): LDPC backend.
        header (dict | None): the frame header the system will send.
        system (str): the system name in the frame header.
        repeat (int): copies of the header block the link sends.

    Returns:
        int: the largest codestream length (bytes) whose frame needs at most
        ``budget_symbols`` symbols; <= 0 when nothing fits.
    """
    dl = DigitalLink(modulation, backend, rate_label(rate))
    return payload_capacity(int(budget_symbols) - frame_overhead(system, header, backend, repeat), dl)


# ------------------------------------------------------------- JPEG2000 codec
def strip_comments(codestream: bytes) -> bytes:
    """Remove COM marker segments (OpenJPEG writes "Created by OpenJPEG ...") from the
    main header of a raw J2K codestream; decoders do not need them."""
    cs = bytes(codestream)
    if cs[:2] != b"\xff\x4f":
        return cs
    out, pos = [cs[:2]], 2
    while pos + 4 <= len(cs):
        marker = cs[pos:pos + 2]
        if marker == b"\xff\x90":  # SOT: end of the main header
            break
        (length,) = struct.unpack(">H", cs[pos + 2:pos + 4])
        if marker != b"\xff\x64":
            out.append(cs[pos:pos + 2 + length])
        pos += 2 + length
    out.append(cs[pos:])
    return b"".join(out)


def j2k_encode(image: np.ndarray, ratio: Optional[float] = None) -> bytes:
    """JPEG2000-compress an RGB image into a raw J2K codestream (no JP2 box, no COM).

    Args:
        image (np.ndarray): (H, W, 3) uint8.
        ratio (float | None): target compression ratio (raw bytes / codestream bytes,
            OpenJPEG's "rates" mode, one quality layer, 9/7 wavelet, ICT); None for
            lossless (5/3 wavelet, RCT).

    Raises:
        RuntimeError: if Pillow has no JPEG2000 support.
    """
    from PIL import Image

    if not jpeg2000_available():
        raise RuntimeError("Pillow was built without OpenJPEG: JPEG2000 is unavailable "
                           "(install a Pillow wheel with 'jpg_2000' support)")
    im = Image.fromarray(as_image(image), "RGB")
    buf = io.BytesIO()
    if ratio is None:
        im.save(buf, format="JPEG2000", no_jp2=True, irreversible=False, mct=1)
    else:
        im.save(buf, format="JPEG2000", no_jp2=True, irreversible=True, mct=1,
                quality_mode="rates", quality_layers=[float(ratio)])
    return strip_comments(buf.getvalue())


def j2k_decode(codestream: bytes) -> np.ndarray:
    """Decode a J2K/JP2 codestream to an (H, W, 3) uint8 RGB image.

    Raises:
        OSError | ValueError | SyntaxError: if OpenJPEG cannot decode it.
    """
    from PIL import Image

    with Image.open(io.BytesIO(bytes(codestream))) as im:
        if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:  # checked before the pixels are decoded
            raise ValueError(f"codestream announces {im.size[0]} x {im.size[1]}, over {MAX_IMAGE_PIXELS} pixels")
        im.load()
        return np.asarray(im.convert("RGB")).copy()


@dataclass
class RateMatch:
    """Result of :func:`rate_match`.

    Attributes:
        codestream (bytes): the chosen codestream.
        ratio (float | None): compression ratio used (None: lossless).
        max_bytes (int): the byte budget.
        steps (int): encoder calls the search made.
    """

    codestream: bytes
    ratio: Optional[float]
    max_bytes: int
    steps: int


def rate_match(image: np.ndarray, max_bytes: int) -> Optional[RateMatch]:
    """The highest-quality JPEG2000 codestream of at most ``max_bytes`` bytes.

    Tries lossless first when it could fit, then brackets and bisects the compression
    ratio (in log scale) keeping the largest codestream that fits. Codestream size is
    not strictly monotone in the ratio, so the result is the best *found*, and it
    always satisfies ``len(codestream) <= max_bytes``.

    Args:
        image (np.ndarray): (H, W, 3) uint8.
        max_bytes (int): byte budget for the codestream.

    Returns:
        RateMatch | None: None when even the most compressed codestream is too big.
    """
    image = as_image(image)
    raw = image.size
    steps = 0
    if max_bytes <= 0:
        return None

    def enc(r):
        nonlocal steps
        steps += 1
        return j2k_encode(image, r)

    if max_bytes >= raw // 3:  # lossless may fit
        cs = enc(None)
        if len(cs) <= max_bytes:
            return RateMatch(cs, None, max_bytes, steps)
    r0 = max(raw / max_bytes, 1.0)
    cs = enc(r0)
    best: Optional[Tuple[bytes, float]] = None
    if len(cs) <= max_bytes:  # feasible: look for an infeasible smaller ratio
        best, hi, lo = (cs, r0), r0, r0
        for _ in range(4):
            if lo <= 1.0:
                return RateMatch(best[0], best[1], max_bytes, steps)
            lo = max(lo / 1.25, 1.0)
            cs = enc(lo)
            if len(cs) > max_bytes:
                break
            best, hi = (cs, lo), lo
    else:  # infeasible: look for a feasible larger ratio, up to the codestream's floor
        lo = r0
        for hi in (r0 * 1.25, r0 * 1.6, float(raw)):
            cs = enc(hi)
            if len(cs) <= max_bytes:
                best = (cs, hi)
                break
            lo = hi
        if best is None:
            return None  # even the headers and the coarsest packets exceed the budget
    while hi / lo > _RATIO_TOL and steps < _MAX_STEPS:
        mid = math.sqrt(lo * hi)
        cs = enc(mid)
        if len(cs) <= max_bytes:
            hi = mid
            if len(cs) > len(best[0]):
                best = (cs, mid)
        else:
            lo = mid
    return RateMatch(best[0], best[1], max_bytes, steps)


# ------------------------------------------------------------------ system
@register_system("jpeg2000-ldpc", offline=("full", "embedded", "tiny"), summary="JPEG2000 + LDPC + M-QAM, rate-matched to a channel-use budget "
                 "(the classical baseline; no models)")
class JPEG2000LDPC(SemanticSystem):
    """JPEG2000 + LDPC + M-QAM, rate-matched to the channel-use budget.

    The modulation and code rate come from the :class:`LinkContext` (the link's own
    settings); the harness sweeps them and reports the best per SNR (the envelope).

    Args:
        profile (str), device (str | None): accepted for the common interface; the
            system has no models, so every profile is the same.
        backend (str): LDPC backend used for the channel-use arithmetic (must match
            the link's).
        default_cbr (float): budget (fraction of 3*H*W complex uses) when the context
            gives no ``budget_symbols``.
        cache_size (int): rate-matched codestreams and decoded images kept in memory
            (the same image at the same budget is encoded once across SNRs). The
            frame's ``meta["j2k_encode_s"]`` always holds the uncached search time.
    """

    HEADER: dict = {}
    rate_matched = True
    OPTIONS = (Option("backend", "default", "LDPC backend for the channel-use arithmetic (match the link's)"),
               Option("default_cbr", DEFAULT_CBR, "budget as a fraction of 3HW channel uses when the link gives none"),
               Option("cache_size", 64, "codestreams and decoded images kept in memory"))

    def __init__(self, profile: str = "embedded", device: Optional[str] = None, backend: str = "default",
                 default_cbr: float = DEFAULT_CBR, cache_size: int = 64):
        if not jpeg2000_available():
            raise RuntimeError("jpeg2000-ldpc needs Pillow with OpenJPEG ('jpg_2000' feature)")
        self.backend = backend
        self.default_cbr = float(default_cbr)
        self.cache_size = int(cache_size)
        self._enc_cache: "collections.OrderedDict" = collections.OrderedDict()
        self._dec_cache: "collections.OrderedDict" = collections.OrderedDict()

    def budget(self, image: np.ndarray, ctx: LinkContext) -> int:
        """Channel uses for this image: the context's, else ``default_cbr * 3HW``."""
        if ctx.budget_symbols is not None:
            return int(ctx.budget_symbols)
        return int(math.floor(self.default_cbr * image.size))

    def max_bytes(self, image: np.ndarray, ctx: LinkContext) -> int:
        """Codestream bytes that fit the budget for the context's modulation and rate."""
        return codestream_budget(self.budget(image, ctx), ctx.modulation, ctx.code_rate, self.backend,
                                 self.HEADER, self.name, ctx.header_repeat)

    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        """Compress to fit the budget and put the codestream into ``frame.digital``.

        Raises:
            BudgetError: when the budget cannot carry the smallest codestream.
        """
        image = as_image(image)
        nbytes = self.max_bytes(image, ctx)
        key = (hashlib.sha1(image.tobytes()).hexdigest(), image.shape, nbytes)
        hit = self._enc_cache.get(key)
        if hit is None:
            t0 = time.perf_counter()
            rm = rate_match(image, nbytes)
            if rm is None:
                raise BudgetError(
                    f"a budget of {self.budget(image, ctx)} channel uses ({ctx.modulation}-QAM, rate "
                    f"{rate_label(ctx.code_rate)}) leaves {nbytes} codestream bytes: too few for any "
                    f"JPEG2000 codestream of a {image.shape[1]}x{image.shape[0]} image")
            hit = (rm, time.perf_counter() - t0)
            self._remember(self._enc_cache, key, hit)
        rm, dt = hit
        meta = {"j2k_bytes": len(rm.codestream), "j2k_max_bytes": nbytes,
                "j2k_ratio": -1.0 if rm.ratio is None else float(rm.ratio),
                "j2k_bpp": 8.0 * len(rm.codestream) / (image.shape[0] * image.shape[1]),
                "j2k_search_steps": rm.steps, "j2k_encode_s": dt}
        return SemanticFrame(self.name, rm.codestream, header=dict(self.HEADER), meta=meta)

    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        """The decoded codestream, or None if the CRC failed or OpenJPEG cannot decode it."""
        if frame.crc_ok is False or not frame.digital:
            return None
        key = hashlib.sha1(frame.digital).hexdigest()
        img = self._dec_cache.get(key)
        if img is None:
            try:
                img = j2k_decode(frame.digital)
            except Exception:  # a codestream OpenJPEG rejects is a real outcome: a lost image
                return None
            self._remember(self._dec_cache, key, img)
        return img.copy()

    def _remember(self, cache, key, value) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
