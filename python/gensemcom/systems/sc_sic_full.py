"""SC-SIC, profile ``full``: Stable Cascade's EfficientNet-V2-S encoder at the
transmitter, its Stage B (lite 700M or full 1.5B) and Stage A at the receiver.

The transmitter computes ``Z`` = [16, 3H/128, 3W/128] with
:class:`gensemcom.models.stable_cascade.EfficientNetV2Encoder` (the hub's
``effnet_encoder.safetensors``, loaded strictly); the link side (analog or 8-bit
digital, the header) is :class:`gensemcom.systems.sc_sic.SCSICBase`'s. The receiver
runs diffusers' ``StableCascadeDecoderPipeline`` with the received ``Z`` as its
``image_embeddings`` and an empty prompt (:func:`gensemcom.models.stable_cascade.generate`).
The paper's fine-tuned Stage B is a ``decoder`` folder written by ``gensemcom train
sc-sic --profile full`` (:mod:`gensemcom.train.sc_sic_full`); without it the hub's
Stage B is used as published (the paper's "original model" ablation).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .base import Option
from .registry import register_system
from .sc_sic import COMMON_OPTIONS, DEFAULT_SNR_DB, SCSICBase

FULL_OPTIONS = (
    Option("encoder", None, "EfficientNet-V2-S encoder weights: a hub repo id, a .safetensors/.pt state dict or a "
           "folder with effnet_encoder.safetensors (default $GENSEMCOM_SC_ENCODER or stabilityai/stable-cascade)"),
    Option("decoder", None, "Stage B + Stage A: a hub repo id or a local folder (a save_pretrained pipeline or a "
           "fine-tuned decoder folder; default $GENSEMCOM_SC_DECODER or stabilityai/stable-cascade)"),
    Option("lite", True, "Stage B lite (700M parameters) instead of the full 1.5B", (True, False)),
    Option("steps", 10, "Stage B sampling steps (the decoder pipeline's default)"),
    Option("guidance", 0.0, "classifier-free guidance scale against a zero embedding (used when > 1)"),
    Option("seed", 0, "seed of Stage B's sampling noise"),
    Option("dtype", None, "torch dtype of the decoder (default float16 on CUDA, float32 on CPU)"),
)


def _as_bool(v) -> bool:
    """A bool option that may arrive as text (``"false"``, ``"0"``, ``"no"``)."""
    if isinstance(v, str):
        return v.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(v)


@register_system("sc_sic", profiles=("full",))
class SCSICFull(SCSICBase):
    """SC-SIC with Stable Cascade's EfficientNet-V2-S encoder, Stage B and Stage A (GPU).

    Args:
        profile (str): ``"full"``.
        device (str | None): torch device (default CUDA when available).
        mode (str): ``"analog"`` (the paper) or ``"digital"``.
        default_snr_db (float): the SNR assumed when the link does not give one.
        threads (int | None): torch CPU threads.
        encoder (str | None): encoder weights (hub id, file or folder).
        decoder (str | None): decoder pipeline (hub id or folder).
        lite (bool): Stage B lite instead of the full one.
        steps (int): Stage B sampling steps.
        guidance (float): classifier-free guidance scale (off at <= 1).
        seed (int): sampling seed (the same ``Z`` gives the same image).
        dtype: the decoder's torch dtype or its name.

    Raises:
        ValueError: an unknown profile or mode, or encoder weights that do not map key
            for key.
        gensemcom.models.hf.ModelNotAvailable: a model that cannot be found or downloaded.
    """

    OPTIONS = COMMON_OPTIONS + FULL_OPTIONS

    def __init__(self, profile: str = "full", device: Optional[str] = None, mode: str = "analog",
                 default_snr_db: float = DEFAULT_SNR_DB, threads=None, encoder: Optional[str] = None,
                 decoder: Optional[str] = None, lite: bool = True, steps: int = 10, guidance: float = 0.0,
                 seed: int = 0, dtype=None):
        from ..models import stable_cascade as sc
        from ..models.hf import pick_device

        if profile != "full":
            raise ValueError(f"SCSICFull serves the 'full' profile, not {profile!r}")
        self._setup(mode, default_snr_db, threads)
        self.profile = "full"
        self.device = pick_device(device)
        self.channels = sc.CHANNELS
        self.steps, self.guidance, self.seed = int(steps), float(guidance), int(seed)
        self.lite = _as_bool(lite)
        self.encoder = sc.load_effnet_encoder(encoder, self.device)
        self.pipe = sc.load_decoder_pipeline(decoder, lite=self.lite, dtype=dtype, device=self.device)
        self._sc = sc

    def grid(self, height: int, width: int) -> Tuple[int, int]:
        from ..models.sc_sic_embedded import embedding_grid

        return embedding_grid(height, width)

    def embed(self, image: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().unsqueeze(0) / 255.0
        with torch.inference_mode():
            return self.encoder.embed(x.to(self.device))[0].float().cpu().numpy()

    def reconstruct(self, z: np.ndarray, snr_db: float, size: Tuple[int, int]) -> np.ndarray:
        """Stage B + Stage A from the received ``Z``; the SNR is not used (the paper's Stage
        B is made robust by fine-tuning, not conditioned on the SNR)."""
        from ..models.hf import PIPE_LOCK

        with PIPE_LOCK:
            return self._sc.generate(self.pipe, z[None], size, self.steps, self.guidance, self.seed)[0]


@register_system("sc_sic-digital", profiles=("full",))
class SCSICDigitalFull(SCSICFull):
    """SC-SIC in digital mode with Stable Cascade's models (:class:`SCSICFull` with
    ``mode="digital"``), the ``full`` profile of the ``sc_sic-digital`` system."""

    OPTIONS = tuple(o for o in SCSICFull.OPTIONS if o.name != "mode")

    def __init__(self, profile: str = "full", device: Optional[str] = None, default_snr_db: float = DEFAULT_SNR_DB,
                 threads=None, **kwargs):
        super().__init__(profile, device, "digital", default_snr_db, threads, **kwargs)
