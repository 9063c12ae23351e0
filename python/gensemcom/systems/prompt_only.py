"""Prompt-only baseline: a BLIP caption over the digital path, Stable Diffusion at the receiver.

Transmitter: BLIP captions the image; the caption travels as SD-tokenizer (CLIP)
token IDs, two bytes each (``encoding="ids"``, the default: ~1.3 tokens per word,
and the receiver needs only SD's tokenizer), or as UTF-8 text (``encoding="utf8"``).
The header carries the id dtype, the generation seed and the original image size;
there is no analog part, so every channel use is digital (CRC-32 + LDPC + QAM).

With the link's defaults (16-QAM, rate-1/2 LDPC) a caption of up to ~30 tokens and
the header fit one code block: 576 complex channel uses per image.

Receiver: text-to-image with the SD pipeline from a seeded latent (the same seed
gives the same image), resized to the original size. A frame whose digital part
failed its CRC carries no caption: decode returns None.

Profiles: ``full`` (BLIP base + SD 1.5, see :mod:`gensemcom.models.hf`; on a CPU one
50-step 512 x 512 generation takes minutes, on a GPU seconds) and ``tiny`` (the
random models of :mod:`gensemcom.models.tiny_hf`, for tests). There is no ``embedded``
profile yet.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..frame import SemanticFrame
from ._caption_diffusion import CAPTION_DIFFUSION_OPTIONS, CaptionDiffusionSystem
from .base import LinkContext, Option, as_image, header_size
from .registry import register_system

PROFILES = {
    "full": dict(resolution=512, gen_steps=50, guidance=7.5, caption_max_tokens=30, num_beams=3),
    "tiny": dict(resolution=32, gen_steps=2, guidance=2.0, caption_max_tokens=8, num_beams=1),
}
ENCODINGS = ("ids", "utf8")


@register_system("prompt-only", profiles=("full", "tiny"), summary="a BLIP caption over the digital path, "
                 "Stable Diffusion at the receiver (baseline)")
class PromptOnly(CaptionDiffusionSystem):
    """BLIP caption -> digital path -> Stable Diffusion.

    Args:
        profile (str): ``"full"`` or ``"tiny"``.
        device (str | None): torch device (default CUDA when available).
        blip (str | None), sd (str | None): model ids or local directories overriding
            the profile's.
        dtype: torch dtype (default float16 on CUDA, float32 on CPU).
        encoding (str): ``"ids"`` (CLIP token ids, uint16) or ``"utf8"``.
        resolution (int), gen_steps (int), guidance (float), seed (int): generation.
        caption_max_tokens (int), num_beams (int): BLIP captioning.
        threads (int | None): torch CPU threads, set again before every encode and
            decode (the PHY's numba/OpenMP code may change torch's setting).

    Raises:
        ValueError: unknown encoding.
        gensemcom.models.hf.ModelNotAvailable: a model that cannot be loaded.
    """

    OPTIONS = CAPTION_DIFFUSION_OPTIONS + (
        Option("encoding", "ids", "caption encoding on the digital path", ENCODINGS),)

    def __init__(self, profile: str = "full", device: Optional[str] = None, blip: Optional[str] = None,
                 sd: Optional[str] = None, dtype=None, encoding: str = "ids", resolution: Optional[int] = None,
                 gen_steps: Optional[int] = None, guidance: Optional[float] = None, seed: int = 0,
                 caption_max_tokens: Optional[int] = None, num_beams: Optional[int] = None,
                 threads: Optional[int] = None):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.encoding = encoding
        self._setup_models(PROFILES, profile, device, blip, sd, dtype, resolution, gen_steps, guidance, seed,
                           caption_max_tokens, num_beams, threads)

    def encode(self, image: np.ndarray, ctx: Optional[LinkContext] = None) -> SemanticFrame:
        """Image -> frame: the caption (token ids or UTF-8) in the digital part, no analog part."""
        self._apply_threads()
        from ..codecs import pack_ids
        from ..models.hf import prompt_ids

        img = as_image(image)
        text = self.caption(img)
        header = {"seed": self.seed, "size": [int(img.shape[0]), int(img.shape[1])]}
        if self.encoding == "ids":
            digital, header["dt"] = pack_ids(prompt_ids(self.pipe.tokenizer, text))
        else:
            digital, header["dt"] = text.encode("utf-8"), "utf8"
        return SemanticFrame(self.name, digital, np.zeros(0, np.float32), header, {"report": {"caption": text}})

    def received_text(self, frame: SemanticFrame) -> Optional[str]:
        """The caption the receiver rendered, or None when the digital part failed."""
        from ..codecs import unpack_ids

        if frame.crc_ok is False:
            return None
        h = frame.header or {}
        try:
            if h.get("dt") == "utf8":
                return frame.digital.decode("utf-8")
            return self.pipe.tokenizer.decode(unpack_ids(frame.digital, h.get("dt", "")), skip_special_tokens=True)
        except (TypeError, ValueError, IndexError, UnicodeDecodeError, OverflowError):
            return None

    def decode(self, frame: SemanticFrame, ctx: Optional[LinkContext] = None) -> Optional[np.ndarray]:
        """Received frame -> image, or None when the digital part failed CRC or is unusable."""
        self._apply_threads()
        from ..codecs import unpack_ids
        from ..models.hf import PIPE_LOCK, encode_ids, generate

        if frame.crc_ok is False:
            return None
        h = frame.header or {}
        try:
            seed = int(h.get("seed", self.seed))
            size = header_size(h["size"]) if "size" in h else None
            if "size" in h and size is None:
                return None  # a size the receiver refuses to render
            if h.get("dt") == "utf8":
                kw = {"prompt": frame.digital.decode("utf-8")}
            else:
                ids = unpack_ids(frame.digital, h.get("dt", ""))
                with PIPE_LOCK:
                    kw = {"prompt_embeds": encode_ids(self.pipe, ids)}
        except (TypeError, ValueError, IndexError, UnicodeDecodeError, OverflowError):
            return None
        with PIPE_LOCK:
            return generate(self.pipe, seed, self.resolution, self.resolution, self.gen_steps, self.guidance,
                            size=size, **kw)
