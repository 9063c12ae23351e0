"""What the torch systems share (CPU threads) and what the caption + Stable Diffusion
systems share (TISC full, prompt-only): profile defaults, loading BLIP and SD, captioning."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .base import Option, SemanticSystem, as_image


#: the options of the caption + SD systems (TISC full adds its own)
CAPTION_DIFFUSION_OPTIONS = (
    Option("blip", None, "BLIP captioner: Hugging Face id or local directory (default: the profile's)"),
    Option("sd", None, "Stable Diffusion pipeline: Hugging Face id or local directory (default: the profile's)"),
    Option("dtype", None, "torch dtype (default float16 on CUDA, float32 on CPU)"),
    Option("resolution", None, "generation resolution in pixels, a multiple of 8 (default: the profile's)"),
    Option("gen_steps", None, "denoising steps at the receiver (default: the profile's)"),
    Option("guidance", None, "classifier-free guidance scale (default: the profile's)"),
    Option("seed", 0, "generation seed (sent in the header)"),
    Option("caption_max_tokens", None, "longest BLIP caption in tokens (default: the profile's)"),
    Option("num_beams", None, "BLIP beam search width (default: the profile's)"),
    Option("threads", None, "torch CPU threads (default: torch's setting)"),
)


class TorchSystem(SemanticSystem):
    """Base of systems that run torch models: ``threads`` (torch CPU threads) set
    again before every encode and decode (the PHY's numba/OpenMP code may change it)."""

    threads = None

    def _apply_threads(self) -> None:
        """Set torch's CPU threads again (the PHY's numba/OpenMP code may change them)."""
        if self.threads:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)


class CaptionDiffusionSystem(TorchSystem):
    """Base of systems that caption with BLIP and generate with Stable Diffusion."""

    def _setup_models(self, profiles: Dict[str, dict], profile: str, device: Optional[str], blip: Optional[str],
                      sd: Optional[str], dtype, resolution: Optional[int], gen_steps: Optional[int],
                      guidance: Optional[float], seed: int, caption_max_tokens: Optional[int],
                      num_beams: Optional[int], threads: Optional[int]) -> dict:
        """Validate the profile, set the shared options and load BLIP and SD.

        Returns:
            dict: the profile's defaults (for system-specific options).

        Raises:
            ValueError: a profile without defaults or a resolution not a multiple of 8.
        """
        from ..models import hf

        if profile not in profiles:
            raise ValueError(f"{self.name} has no defaults for profile {profile!r}: use one of {', '.join(profiles)}")
        self.threads = int(threads) if threads else None
        self._apply_threads()
        d = profiles[profile]
        self.profile = profile
        self.resolution = int(d["resolution"] if resolution is None else resolution)
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, got {self.resolution}")
        self.seed = int(seed)
        self.gen_steps = int(d["gen_steps"] if gen_steps is None else gen_steps)
        self.guidance = float(d["guidance"] if guidance is None else guidance)
        self.caption_max_tokens = int(d["caption_max_tokens"] if caption_max_tokens is None else caption_max_tokens)
        self.num_beams = int(d["num_beams"] if num_beams is None else num_beams)
        if profile == "tiny":
            from ..models.tiny_hf import tiny_blip_dir, tiny_sd_dir

            blip = blip or str(tiny_blip_dir())
            sd = sd or str(tiny_sd_dir())
        self.device = hf.pick_device(device)
        self.blip, self.processor = hf.load_blip(blip, self.device, dtype)
        self.pipe = hf.load_sd(sd, self.device, dtype)
        return d

    def caption(self, image: np.ndarray) -> str:
        """BLIP caption of the image."""
        from ..models.hf import caption

        return caption(self.blip, self.processor, as_image(image), self.caption_max_tokens, self.num_beams)
