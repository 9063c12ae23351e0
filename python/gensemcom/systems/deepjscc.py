"""DeepJSCC as a semantic system: the whole image as one analog latent.

The transmitter runs the SNR-adaptive DeepJSCC encoder
(:mod:`gensemcom.models.deepjscc`) and puts its latent, already normalised to unit
average complex-symbol power, in the frame's analog part; the digital part carries
only the header (latent shape, image size, the SNR the encoder assumed). The link
(:class:`gensemcom.link.FrameLink`) re-normalises the analog vector (scale
~1, since the latent already has unit power), sends it uncoded, equalises (MMSE) and
undoes the scale, so the decoder sees the latent at the scale it was trained on,
plus noise. At CBR 1/24 a 768x512 Kodak image costs 49,152 analog channel uses.

Profiles:

* ``embedded``: the shipped weights ``models/weights/deepjscc_cbr24.pt`` (trained
  on BSDS400, see the JSON beside them);
* ``tiny``: a small randomly initialised model with a fixed seed (tests);
* ``path=...``: any exported weights file or training checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..frame import SemanticFrame
from .base import LinkContext, Option, SemanticSystem, as_image, header_size
from .registry import register_system

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
EMBEDDED_WEIGHTS = WEIGHTS_DIR / "deepjscc_cbr24.pt"
DEFAULT_SNR_DB = 10.0
TINY_SEED = 1234


@register_system("deepjscc", profiles=("embedded", "tiny"), summary="SNR-adaptive DeepJSCC: the image as one "
                 "analog latent (CBR 1/24; baseline)")
class DeepJSCC(SemanticSystem):
    """SNR-adaptive DeepJSCC (ADJSCC-style AF modules), CBR 1/24 by default.

    Args:
        profile (str): ``"embedded"`` (shipped weights), ``"tiny"`` (random, seeded,
            for tests) or ``"path"`` (implied by ``path``).
        path (str | Path | None): weights file or checkpoint to load instead.
        device (str | None): torch device (default: CUDA when available, else CPU).
        threads (int | None): torch CPU threads (default: leave torch's setting).
        default_snr_db (float): SNR assumed when ``ctx.snr_db`` is None.

    Raises:
        FileNotFoundError: when the embedded weights (or ``path``) are missing.
        ValueError: on an unknown profile.
    """

    OPTIONS = (Option("path", None, "weights file or training checkpoint to load instead of the profile's"),
               Option("threads", None, "torch CPU threads (default: torch's setting)"),
               Option("default_snr_db", DEFAULT_SNR_DB, "SNR (dB) assumed when the link does not say"))

    def __init__(self, profile: str = "embedded", path=None, device: Optional[str] = None,
                 threads: Optional[int] = None, default_snr_db: float = DEFAULT_SNR_DB):
        import torch

        from ..models.deepjscc import DeepJSCC as Model
        from ..models.deepjscc import load_model

        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.default_snr_db = float(default_snr_db)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise FileNotFoundError(f"DeepJSCC weights {p} not found")
            self.model = load_model(p)
            self.profile = "path"
        elif profile == "embedded":
            if not EMBEDDED_WEIGHTS.is_file():
                raise FileNotFoundError(
                    f"DeepJSCC embedded weights {EMBEDDED_WEIGHTS} are missing: train them with "
                    "`gensemcom train deepjscc` (python -m gensemcom.train.deepjscc), or use "
                    "profile='tiny' or path=...")
            self.model = load_model(EMBEDDED_WEIGHTS)
            self.profile = profile
        elif profile == "tiny":
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(TINY_SEED)
            self.model = Model(n=16, c=16)
            torch.random.set_rng_state(gen_state)
            self.profile = profile
        else:
            raise ValueError(f"unknown DeepJSCC profile {profile!r}: use 'embedded', 'tiny' or path=...")
        self.model.to(self.device).eval()

    @property
    def cbr(self):
        """Exact channel bandwidth ratio of the model (a Fraction, 1/24 for C = 16)."""
        return self.model.cbr

    def _snr(self, ctx: Optional[LinkContext]) -> float:
        snr = None if ctx is None else ctx.snr_db
        return self.default_snr_db if snr is None else float(snr)

    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        """Image (H, W, 3) uint8 -> frame: unit-power latent in ``analog``, shapes in ``header``."""
        import torch

        img = as_image(image)
        snr = self._snr(ctx)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(self.device, torch.float32)
        with torch.no_grad():
            z = self.model.encode(x.unsqueeze(0) / 255.0, torch.tensor([snr], device=self.device))
        z = z[0].float().cpu().numpy()
        header = {"shape": list(z.shape), "size": [int(img.shape[0]), int(img.shape[1])], "snr_tx": snr}
        return SemanticFrame(self.name, b"", z.reshape(-1), header)

    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        """Received frame -> image, or None when the header (digital part) was lost."""
        import torch

        if frame.crc_ok is False:
            return None
        shape = frame.header.get("shape")
        size = header_size(frame.header.get("size"))
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)) \
                or size is None or int(np.prod(shape)) != frame.analog.size:
            return None
        snr = self._snr(ctx)
        z = torch.from_numpy(frame.analog.reshape(shape).copy()).to(self.device).unsqueeze(0)
        with torch.no_grad():
            out = self.model.decode(z, torch.tensor([snr], device=self.device), size)
        out = out[0].clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(out)
