"""Stable Cascade SIC (Khalid et al., ICML 2025 workshop) as a semantic system.

The transmitter sends a compact image embedding ``Z`` ([16, 12, 12] for 512 x 512,
[16, 24, 24] for 1024 x 1024: the image side x 3/4 / 32), the receiver conditions a
Stage B on the noisy ``Z`` and decodes Stage B's latents with Stage A.

**Two transmission modes** (option ``mode``):

* ``analog`` (the paper): ``Z``'s reals, two per complex channel use, power-normalised
  by the link (the scale rides in the protected header) and sent uncoded; 512 x 512
  costs 16 x 12 x 12 / 2 = 1,152 channel uses (compression ratio 3 x 512^2 / 2304 = 341).
* ``digital`` (the authors' D-SIC follow-up): ``Z`` quantised to 8 bits between its
  minimum and maximum (both in the header), the bytes as the digital payload: CRC,
  LDPC and M-QAM at the link's MCS. A payload that fails its CRC is a lost image (the
  digital cliff, counted like JPEG2000's).

The header is ``{size: [H, W]}`` in analog mode, ``{size: [H, W], q: [lo, hi]}`` in
digital mode (one 600-use protected header block either way): the embedding's grid
follows from the size and the profile's rule, the mode from ``q``.

Backends (:class:`SCSICBase` holds the link side, one place for both):

* ``embedded`` / ``tiny`` (:class:`SCSICEmbedded`): EfficientNet-Lite0 + a learned
  head, a noise-conditioned latent decoder as Stage B, TAEF2 as Stage A
  (:mod:`gensemcom.models.sc_sic_embedded`); ``tiny`` is the same architecture with
  small random weights (tests).
* ``full``: EfficientNet-V2-S and diffusers' Stable Cascade decoder pipeline
  (:mod:`gensemcom.systems.sc_sic_full`).
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import numpy as np

from ..frame import SemanticFrame
from .base import LinkContext, Option, SemanticSystem, as_image, header_size
from .registry import register_system

MODES = ("analog", "digital")
DEFAULT_SNR_DB = 10.0
TINY_SEED = 4321

COMMON_OPTIONS = (
    Option("mode", "analog", "how Z travels: analog (the paper: uncoded, two reals per channel use) or digital "
           "(8-bit quantisation, CRC, LDPC, M-QAM)", MODES),
    Option("default_snr_db", DEFAULT_SNR_DB, "SNR (dB) the receiver assumes when the link does not say"),
    Option("threads", None, "torch CPU threads (default: torch's setting)"),
)


def quantize(z: np.ndarray, bits: int = 8) -> Tuple[bytes, float, float]:
    """``z`` -> (bytes, lo, hi): uniform ``bits``-bit quantisation between the minimum
    and the maximum (float32-rounded, as the header carries them)."""
    z = np.asarray(z, np.float32).reshape(-1)
    lo, hi = float(np.float32(z.min())), float(np.float32(z.max()))
    levels = (1 << bits) - 1
    span = hi - lo if hi > lo else 1.0
    q = np.clip(np.round((z - lo) / span * levels), 0, levels).astype(np.uint8)
    return q.tobytes(), lo, hi


def dequantize(data: bytes, lo: float, hi: float, bits: int = 8) -> np.ndarray:
    """Inverse of :func:`quantize` (the value at the centre of each level)."""
    levels = (1 << bits) - 1
    span = hi - lo if hi > lo else 1.0
    return (np.frombuffer(data, np.uint8).astype(np.float32) / levels * span + lo).astype(np.float32)


class SCSICBase(SemanticSystem):
    """The link side of SC-SIC, shared by every profile.

    Subclasses set :attr:`channels` and implement :meth:`grid` (embedding grid of an
    H x W image), :meth:`embed` (image -> ``Z`` (C, gh, gw) float32) and
    :meth:`reconstruct` (``Z``, SNR, size -> image).
    """

    channels: int = 16
    mode: str = "analog"
    default_snr_db: float = DEFAULT_SNR_DB

    def _setup(self, mode: str, default_snr_db: float, threads) -> None:
        if mode not in MODES:
            raise ValueError(f"SC-SIC mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.default_snr_db = float(default_snr_db)
        if threads:
            import torch

            torch.set_num_threads(int(threads))

    # ------------------------------------------------------------ the models' part
    def grid(self, height: int, width: int) -> Tuple[int, int]:
        raise NotImplementedError

    def embed(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reconstruct(self, z: np.ndarray, snr_db: float, size: Tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------ the link's part
    def shape(self, height: int, width: int) -> Tuple[int, int, int]:
        """``Z``'s shape for an H x W image."""
        return (self.channels,) + tuple(self.grid(height, width))

    def analog_uses(self, height: int, width: int) -> int:
        """Complex channel uses of ``Z`` in analog mode (two reals per use)."""
        return -(-int(np.prod(self.shape(height, width))) // 2)

    def _snr(self, ctx: Optional[LinkContext]) -> float:
        snr = None if ctx is None else ctx.snr_db
        return self.default_snr_db if snr is None else float(snr)

    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        """Image -> frame: ``Z`` in ``analog`` (analog mode) or its 8-bit bytes in
        ``digital`` (digital mode); ``meta["report"]`` gives the shape, the mode, the
        compression ratio and the encoder's time."""
        img = as_image(image)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        z = np.asarray(self.embed(img), np.float32)
        enc_ms = (time.perf_counter() - t0) * 1e3
        if z.shape != self.shape(h, w):
            raise RuntimeError(f"SC-SIC encoder gave {z.shape}, expected {self.shape(h, w)}")
        header: Dict = {"size": [int(h), int(w)]}
        report = {"embedding_shape": "x".join(map(str, z.shape)), "mode": self.mode,
                  "compression_ratio": round(img.size / z.size, 1), "encode_ms": round(enc_ms, 1)}
        flat = z.reshape(-1)
        if self.mode == "analog":
            if flat.size % 2:
                flat = np.concatenate([flat, np.zeros(1, np.float32)])
            return SemanticFrame(self.name, b"", flat, header, meta={"report": report})
        data, lo, hi = quantize(flat)
        header["q"] = [lo, hi]
        report["payload_bytes"] = len(data)
        return SemanticFrame(self.name, data, None, header, meta={"report": report})

    def received_embedding(self, frame: SemanticFrame) -> Optional[Tuple[np.ndarray, Tuple[int, int]]]:
        """The received ``Z`` (C, gh, gw) and the image size, or None when the frame
        cannot give them (lost header or payload, inconsistent sizes)."""
        if frame.header_ok is False:
            return None
        size = header_size(frame.header.get("size"))
        if size is None:
            return None
        shape = self.shape(*size)
        n = int(np.prod(shape))
        if "q" in frame.header:  # digital mode
            q = frame.header["q"]
            if frame.crc_ok is False or len(frame.digital) != n or not isinstance(q, (list, tuple)) or len(q) != 2 \
                    or not all(isinstance(v, (int, float)) for v in q):
                return None
            z = dequantize(frame.digital, float(q[0]), float(q[1]))
        else:
            a = frame.analog
            if a.size not in (n, n + 1):
                return None
            z = np.asarray(a[:n], np.float32)
        if not np.all(np.isfinite(z)):
            return None
        return z.reshape(shape), size

    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        """Received frame -> image of the sent size, or None when the header or (in
        digital mode) the payload was lost."""
        got = self.received_embedding(frame)
        if got is None:
            return None
        z, size = got
        return np.ascontiguousarray(self.reconstruct(z, self._snr(ctx), size))


@register_system("sc_sic", profiles=("embedded", "tiny"), summary="Stable Cascade SIC: a [16, 3H/128, 3W/128] image "
                 "embedding, analog or 8-bit digital, regenerated by a noise-robust Stage B and a pretrained Stage A")
class SCSICEmbedded(SCSICBase):
    """SC-SIC with EfficientNet-Lite0, a learned latent decoder and TAEF2 (CPU, offline).

    Args:
        profile (str): ``"embedded"`` (shipped weights) or ``"tiny"`` (small random
            models, seeded, no pretrained weights: tests).
        mode (str): ``"analog"`` or ``"digital"``.
        weights (str | None): weights to load instead of the shipped ones.
        default_snr_db (float): the SNR assumed when the link does not give one.
        device (str | None): ignored: the small models run on the CPU.
        threads (int | None): torch CPU threads.
    """

    OPTIONS = COMMON_OPTIONS + (Option("weights", None, "embedded weights file (default: the shipped weights)"),)

    def __init__(self, profile: str = "embedded", device: Optional[str] = None, mode: str = "analog",
                 weights=None, default_snr_db: float = DEFAULT_SNR_DB, threads=None):
        import torch

        from ..models import sc_sic_embedded as m

        self._setup(mode, default_snr_db, threads)
        self.device = "cpu"
        if profile == "tiny" and weights is None:
            state = torch.random.get_rng_state()
            torch.manual_seed(TINY_SEED)
            self.model = m.EmbeddedSCSIC({"hidden": 16, "widths": [16, 16, 8]}, pretrained=False)
            torch.random.set_rng_state(state)
            self.profile = "tiny"
        elif profile in ("embedded", "tiny"):
            self.model = m.EmbeddedSCSIC.load(weights)
            self.profile = profile
        else:
            raise ValueError(f"unknown SC-SIC profile {profile!r}: use 'embedded' or 'tiny'")
        self.model.eval()
        self.channels = m.CHANNELS
        self._m = m

    def grid(self, height: int, width: int) -> Tuple[int, int]:
        return self._m.embedding_grid(height, width)

    def embed(self, image: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().unsqueeze(0) / 255.0
        with torch.inference_mode():
            return self.model.embed(x)[0].numpy()

    def reconstruct(self, z: np.ndarray, snr_db: float, size: Tuple[int, int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model.reconstruct(torch.from_numpy(np.ascontiguousarray(z)).unsqueeze(0),
                                       torch.tensor([float(snr_db)]), size)
        return y[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


@register_system("sc_sic-digital", profiles=("embedded", "tiny"), summary="SC-SIC, D-SIC style: the embedding "
                 "quantised to 8 bits over CRC, LDPC and M-QAM (the digital mode as its own system)")
class SCSICDigitalEmbedded(SCSICEmbedded):
    """SC-SIC in digital mode (:class:`SCSICEmbedded` with ``mode="digital"``), named on
    its own so the worker, ``gensemcom eval`` and the GRC blocks can pick the mode by
    system name."""

    OPTIONS = tuple(o for o in SCSICEmbedded.OPTIONS if o.name != "mode")

    def __init__(self, profile: str = "embedded", device: Optional[str] = None, weights=None,
                 default_snr_db: float = DEFAULT_SNR_DB, threads=None):
        super().__init__(profile, device, "digital", weights, default_snr_db, threads)
