"""DeepJSCC as a semantic system: the whole image as one analog latent.

The transmitter runs the SNR-adaptive DeepJSCC encoder
(:mod:`gensemcom.models.deepjscc`) and puts its latent, already normalised to unit
average complex-symbol power, in the frame's analog part; the frame's protected
header carries only the image size (and the coded size when it differs; the latent's
shape follows from it and the model), one 600-use block.
The link (:class:`gensemcom.link.FrameLink`) re-normalises the analog vector (scale
~1, since the latent already has unit power), sends it uncoded, equalises (MMSE) and
undoes the scale, so the decoder sees the latent at the scale it was trained on,
plus noise. At CBR 1/24 a 768x512 Kodak image costs 49,152 analog channel uses.

**Budget rule.** With a budget (``ctx.budget_symbols``; ``gensemcom eval`` gives
``floor(cbr * 3 H W)``) the frame, protected header block and latent, never needs
more complex channel uses than it; without one the latent alone is held to
``floor(CBR * 3 H W)`` at the model's own CBR (the header's 600 uses on top). The
encoder pads the image to multiples of 8, so an H x W image costs
``C * ceil(H/8) * ceil(W/8) / 2`` channel uses, padding included
(:func:`~gensemcom.models.deepjscc.channel_uses`). When that exceeds the budget (less the
header's 600 uses when a budget is given), the encoder resizes the image to the **coded size** (:func:`coded_size`): the grid of
latent cells with the most cells that fits the budget (ties: the aspect ratio
closest to the image's), a side keeping its full length where its cells are not
reduced; the decoder decodes at the coded size and resizes back to H x W. For
example 768x512 at 1/24 (budget 49,152) is coded at 760x512 (48,640 latent uses +
600 header). Each frame's
``meta["report"]`` states the rule, the budget, the coded size and the latent's
channel uses.

Profiles:

* ``embedded``: the shipped weights ``models/weights/deepjscc_cbr24.pt`` (trained
  on BSDS400, see the JSON beside them);
* ``tiny``: a small randomly initialised model with a fixed seed (tests);
* ``path=...``: any exported weights file or training checkpoint.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..frame import DEFAULT_SEGMENT, SemanticFrame, header_symbols
from .base import LinkContext, Option, SemanticSystem, as_image, header_size
from .registry import register_system

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
EMBEDDED_WEIGHTS = WEIGHTS_DIR / "deepjscc_cbr24.pt"
DEFAULT_SNR_DB = 10.0
TINY_SEED = 1234
#: the budget rule, as each frame's report states it
BUDGET_RULE = ("protected header + latent channel uses (padding counted) <= a given budget, latent <= CBR * 3HW "
               "without one; an image that does not fit is coded at a smaller size and resized back")


def coded_size(height: int, width: int, max_uses: int, latent_channels: int) -> Optional[Tuple[int, int]]:
    """The size at which the encoder codes an H x W image so that its latent fits a budget.

    The latent of an (h, w) input has ``ceil(h/8) x ceil(w/8)`` cells of
    ``latent_channels`` reals, ``latent_channels / 2`` complex channel uses each
    (padding counted). An image that fits keeps its size; otherwise the cell grid
    ``gh x gw`` (``gh <= ceil(H/8)``, ``gw <= ceil(W/8)``) with the most cells that
    fits is chosen (ties: the aspect ratio closest to the image's), and a side whose
    cells were reduced becomes ``8 * cells`` pixels long.

    Args:
        height (int), width (int): the image size.
        max_uses (int): complex channel uses the latent may take.
        latent_channels (int): the model's latent channels C (even).

    Returns:
        tuple[int, int] | None: the coded (height, width), or None when not even one
        cell fits.
    """
    from ..models.deepjscc import DOWNSAMPLE

    cells = (2 * int(max_uses)) // int(latent_channels)
    gh0, gw0 = -(-height // DOWNSAMPLE), -(-width // DOWNSAMPLE)
    if gh0 * gw0 <= cells:
        return int(height), int(width)
    if cells < 1:
        return None
    aspect = math.log(height / width)
    gh, gw = max(((g, min(gw0, cells // g)) for g in range(1, min(gh0, cells) + 1)),
                 key=lambda c: (c[0] * c[1], -abs(math.log(c[0] / c[1]) - aspect)))
    return (int(height) if gh == gh0 else DOWNSAMPLE * gh), (int(width) if gw == gw0 else DOWNSAMPLE * gw)


def _resize(x, size: Tuple[int, int]):
    """(B, 3, h, w) tensor -> (B, 3, *size): bilinear, antialiased (a no-op at the same size)."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


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

    def budget(self, image: np.ndarray, ctx: LinkContext) -> int:
        """Channel uses the frame may take: the context's budget (header block included),
        else ``floor(CBR * 3HW)`` for the latent."""
        if ctx is not None and ctx.budget_symbols is not None:
            return int(ctx.budget_symbols)
        return int(math.floor(self.cbr * image.size))

    def coded(self, h: int, w: int, budget: int, with_coded: bool = False, repeat: int = 1):
        """The coded size of an H x W image under a frame budget: the latent gets what the
        protected header block (with the ``coded`` field or not) leaves
        (:func:`coded_size`); None when nothing fits."""
        header = {"size": [int(h), int(w)], **({"coded": [int(h), int(w)]} if with_coded else {})}
        uses = header_symbols(self.name, header, {DEFAULT_SEGMENT: 2 * budget}, repeat)
        return coded_size(h, w, budget - uses, self.model.c)

    def _snr(self, ctx: Optional[LinkContext]) -> float:
        snr = None if ctx is None else ctx.snr_db
        return self.default_snr_db if snr is None else float(snr)

    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        """Image (H, W, 3) uint8 -> frame: unit-power latent in ``analog``, shapes in
        ``header``, the budget accounting in ``meta["report"]`` (see the module's budget rule).

        Raises:
            BudgetError: when the budget cannot carry even one latent cell.
        """
        import torch

        from .jpeg2000_ldpc import BudgetError

        img = as_image(image)
        h, w = img.shape[:2]
        budget = self.budget(img, ctx)
        # a given budget holds the protected header too; without one the latent is held to
        # the model's CBR. The coded size travels only when the receiver cannot derive it.
        header = {"size": [int(h), int(w)]}
        own = coded_size(h, w, int(math.floor(self.cbr * img.size)), self.model.c)
        rep = 1 if ctx is None else int(ctx.header_repeat)
        coded = own if ctx is None or ctx.budget_symbols is None else self.coded(h, w, budget, repeat=rep)
        if coded != own:
            coded = self.coded(h, w, budget, with_coded=True, repeat=rep)
            header["coded"] = None if coded is None else list(coded)
        if coded is None:
            raise BudgetError(f"a budget of {budget} channel uses is too small for one DeepJSCC latent cell "
                              f"({self.model.c // 2} channel uses) and the protected header")
        snr = self._snr(ctx)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(self.device, torch.float32)
        with torch.no_grad():
            x = _resize(x.unsqueeze(0) / 255.0, coded)
            z = self.model.encode(x, torch.tensor([snr], device=self.device))
        z = z[0].float().cpu().numpy()
        report = {"budget_rule": BUDGET_RULE, "budget": budget, "latent_uses": z.size // 2, "snr_tx": snr,
                  "header_uses": header_symbols(self.name, header, {DEFAULT_SEGMENT: z.size},
                                                1 if ctx is None else int(ctx.header_repeat)),
                  "coded_height": coded[0], "coded_width": coded[1], "resized": coded != (h, w)}
        return SemanticFrame(self.name, b"", z.reshape(-1), header, meta={"report": report})

    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        """Received frame -> image of the original size, or None when the header
        (digital part) was lost or is inconsistent with the latent."""
        import torch

        from ..models.deepjscc import DOWNSAMPLE

        if frame.crc_ok is False:
            return None
        size = header_size(frame.header.get("size"))
        if size is None:
            return None
        coded = header_size(frame.header["coded"]) if "coded" in frame.header else \
            coded_size(size[0], size[1], int(math.floor(self.cbr * size[0] * size[1] * 3)), self.model.c)
        if coded is None:
            return None
        # the latent's shape follows from the coded size and the model (not sent)
        shape = [self.model.c, -(-coded[0] // DOWNSAMPLE), -(-coded[1] // DOWNSAMPLE)]
        if int(np.prod(shape)) != frame.analog.size:
            return None
        snr = self._snr(ctx)
        z = torch.from_numpy(frame.analog.reshape(shape).copy()).to(self.device).unsqueeze(0)
        with torch.no_grad():
            out = _resize(self.model.decode(z, torch.tensor([snr], device=self.device), coded), size)
        out = out[0].clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(out)
