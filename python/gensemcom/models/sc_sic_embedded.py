"""The small models of SC-SIC's ``embedded`` profile (offline, CPU, shipped weights).

Stable Cascade SIC (Khalid et al. 2025) sends a compact image embedding
``Z = E(x)`` (EfficientNet-V2-S features, a 1x1 conv to 16 channels, a non-affine
batch norm; 512 x 512 -> [16, 12, 12]) and regenerates the image with Stage B (a
latent diffusion model conditioned on the noisy ``Z``) and Stage A (a VQGAN decoder).
The embedded profile keeps that structure with parts that run offline on a CPU:

* **Encoder** (:class:`SCEncoder`): the ImageNet-pretrained EfficientNet-Lite0 trunk
  (frozen, :mod:`gensemcom.models.effnet_lite`) on the image resized by the paper's
  rule (3/4, then stride 32: 512 -> 12 x 12, 1024 -> 24 x 24); its last block
  (320 channels), its head (1280) and the image's colour means on a grid ``sub``
  times finer (each cell's ``sub x sub`` block as 3 sub^2 channels) go, standardised,
  through a learned head (a 1x1 conv to 256, ReLU, a 3x3 conv to 16) and a
  non-affine batch norm: ``Z`` is [16, 3H/128, 3W/128], unit variance per channel.
  The colour means are our addition: ImageNet features are built to ignore colour
  and fine layout, which pixel fidelity needs (the shipped weights use ``sub`` = 4).
* **Stage B** (:class:`StageB`): a *noise-conditioned latent decoder*, not a
  diffusion model: it maps the received ``Z`` and the SNR (one constant input plane,
  dB / 20) to TAEF2 latents [32, H/8, W/8] in one pass (residual conv blocks at the
  embedding grid, bilinear resize to 1/4 of the latent grid, two x2 upsamplings), with
  a second output, the image's colour layout (:func:`layout_correct`: TAEF2's decoding
  keeps its detail, the layout on 4x the embedding grid comes from this head, which is
  trained on pixels). It is trained with MSE on the latents (and on their 4x4 pools)
  plus the colour head's pixel MSE, ``Z`` sent through the link's analog path at an
  SNR drawn per sample (the paper's noise-robust conditioning). Why not a latent
  diffusion model: on this 2-core CPU, with no GPU lent, a conditional diffusion model
  over 32-channel latents does not train to anything useful in the hour available,
  while a one-pass decoder does, and it also has no sampling randomness (the paper's
  predictability is its best property).
* **Stage A**: TAEF2's decoder (:mod:`gensemcom.models.taef2`), real and pretrained.

The encoder head and Stage B are trained together by ``gensemcom train sc-sic``
(:mod:`gensemcom.train.sc_sic`) and ship in ``models/weights/sc_sic_embedded.pt``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS = Path(__file__).resolve().parent / "weights" / "sc_sic_embedded.pt"
#: the embedding's channels and the paper's resize rule (image side * 3/4, then stride 32)
CHANNELS = 16
RESIZE = 0.75
STRIDE = 32
LATENT_SCALE = 8


def embedding_grid(height: int, width: int) -> Tuple[int, int]:
    """The embedding's (rows, cols) for an H x W image: ``round(3 H / 128)`` (at least 1)
    each, so 512 -> 12, 1024 -> 24, 768 -> 18."""
    return (max(1, int(round(height * RESIZE / STRIDE))), max(1, int(round(width * RESIZE / STRIDE))))


def latent_grid(height: int, width: int) -> Tuple[int, int]:
    """TAEF2's latent (rows, cols) for an H x W image (sides rounded up to multiples of 8)."""
    return (-(-height // LATENT_SCALE), -(-width // LATENT_SCALE))


def trunk_input(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> the encoder's input: the paper's rule, the sides x 3/4
    rounded to the stride (512 -> 384, 1024 -> 768), bilinear with antialiasing."""
    gh, gw = embedding_grid(*x.shape[-2:])
    size = (STRIDE * gh, STRIDE * gw)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=x.device.type != "meta")


def color_grid(x: torch.Tensor, grid, sub: int = 1) -> torch.Tensor:
    """The image's colour means on a grid ``sub`` times finer than the embedding grid,
    each cell's ``sub x sub`` block stacked as channels: (B, 3 sub^2, *grid)."""
    g = tuple(int(v) * int(sub) for v in grid)
    return fine_to_cells(F.adaptive_avg_pool2d(x, g), sub)


def fine_to_cells(fine: torch.Tensor, sub: int) -> torch.Tensor:
    """Colour means on a grid ``sub`` times finer -> (B, 3 sub^2, *grid) (space to depth)."""
    return fine if sub == 1 else F.pixel_unshuffle(fine, int(sub))


class SCEncoder(nn.Module):
    """The learned head over the frozen trunk: features -> ``Z`` (B, 16, gh, gw).

    Args:
        hidden (int): channels of the 1x1 conv.
    """

    def __init__(self, hidden: int = 256, channels: int = CHANNELS, sub: int = 1):
        super().__init__()
        self.sub = int(sub)
        self.IN = 320 + 1280 + 3 * self.sub ** 2
        #: per-channel standardisation of the inputs (set from the training data: the
        #: colour means vary 10 times less than the trunk's features, and would otherwise
        #: be learned 10 times slower)
        self.register_buffer("in_mean", torch.zeros(self.IN))
        self.register_buffer("in_std", torch.ones(self.IN))
        self.mix = nn.Conv2d(self.IN, hidden, 1)
        self.out = nn.Conv2d(hidden, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels, affine=False)

    def forward(self, last: torch.Tensor, head: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([last, head, rgb], 1) - self.in_mean.view(1, -1, 1, 1)) / self.in_std.view(1, -1, 1, 1)
        return self.norm(self.out(F.relu(self.mix(x))))


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return F.relu(x + self.body(x))


class StageB(nn.Module):
    """Noisy ``Z`` (B, 16, gh, gw) and SNR (dB, (B,)) -> TAEF2 latents (B, 32, *latent).

    Args:
        widths (tuple[int, int, int]): channels at the embedding and 1/4 latent grid,
            at 1/2, and at the latent grid.
    """

    def __init__(self, widths=(192, 128, 64), channels: int = CHANNELS, latent_channels: int = 32,
                 rgb_head: bool = False):
        """``rgb_head``: also output the colour layout on 4x the embedding grid (a head on
        the last features plus a shallow path from ``Z``), for :func:`layout_correct`."""
        super().__init__()
        a, b, c = widths
        #: a second output: the image's colour layout at the latent grid (see :func:`layout_correct`)
        self.rgb = nn.Conv2d(c, 3, 3, padding=1) if rgb_head else None
        #: and a shallow path from ``Z`` straight to the 4x4 colour blocks of each cell (zero at start)
        self.rgb_direct = nn.Conv2d(channels + 1, 48, 3, padding=1) if rgb_head else None
        if self.rgb_direct is not None:
            nn.init.zeros_(self.rgb_direct.weight)
            nn.init.zeros_(self.rgb_direct.bias)
        self.inp = nn.Conv2d(channels + 1, a, 3, padding=1)
        self.g0 = _Res(a)
        self.g1 = nn.Sequential(_Res(a), _Res(a))
        self.up1 = nn.Conv2d(a, b, 3, padding=1)
        self.g2 = nn.Sequential(_Res(b), _Res(b))
        self.up2 = nn.Conv2d(b, c, 3, padding=1)
        self.g3 = _Res(c)
        self.outp = nn.Conv2d(c, latent_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, snr_db: torch.Tensor, latent: Tuple[int, int], with_rgb: bool = False):
        s = (snr_db.to(z.dtype) / 20.0).view(-1, 1, 1, 1).expand(z.shape[0], 1, *z.shape[-2:])
        zs = torch.cat([z, s], 1)
        x = self.g0(F.relu(self.inp(zs)))
        lh, lw = int(latent[0]), int(latent[1])
        q = (-(-lh // 4), -(-lw // 4))
        x = self.g1(F.interpolate(x, size=q, mode="bilinear", align_corners=False))
        x = self.g2(F.relu(self.up1(F.interpolate(x, scale_factor=2.0, mode="nearest"))))
        x = self.g3(F.relu(self.up2(F.interpolate(x, scale_factor=2.0, mode="nearest"))))
        lat = self.outp(x)[..., :lh, :lw]
        if with_rgb:
            if self.rgb is None:
                return lat, None
            g4 = (4 * z.shape[-2], 4 * z.shape[-1])
            rgb = F.adaptive_avg_pool2d(self.rgb(x)[..., :lh, :lw], g4)
            if self.rgb_direct is not None:
                rgb = rgb + F.pixel_shuffle(self.rgb_direct(zs), 4)
            return lat, rgb
        return lat


def layout_correct(image: torch.Tensor, rgb: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """Replace ``image``'s colour layout on ``grid`` by the one Stage B predicted.

    Both are average-pooled to ``grid`` (4x the embedding grid), the difference is
    upsampled (bilinear) and added: TAEF2's decoder keeps the detail, the colour head
    (trained on pixels, which the latent MSE does not see) sets the layout.
    """
    size = tuple(image.shape[-2:])
    up = lambda t: F.interpolate(F.adaptive_avg_pool2d(t, grid), size=size, mode="bilinear",  # noqa: E731
                                 align_corners=False)
    return (image + up(rgb) - up(image)).clamp(0, 1)


class EmbeddedSCSIC(nn.Module):
    """The embedded profile's models: trunk, encoder head, Stage B, TAEF2.

    Args:
        config (dict | None): ``{"hidden": int, "widths": [a, b, c]}`` (default sizes).
        taef2 (str | Path | None): TAEF2's folder (default: the shipped copy).
        pretrained (bool): False: the trunk and TAEF2 with random weights (the tiny profile).
    """

    def __init__(self, config: Optional[Dict] = None, taef2: Union[str, Path, None] = None, pretrained: bool = True):
        from .effnet_lite import EfficientNetLite0, load_pretrained
        from .taef2 import TAEF2

        super().__init__()
        self.config = {"hidden": 256, "widths": [192, 128, 64], "sub": 1, "rgb_head": False, **(config or {})}
        self.trunk = load_pretrained() if pretrained else EfficientNetLite0().eval().requires_grad_(False)
        self.encoder = SCEncoder(self.config["hidden"], sub=self.config["sub"])
        self.stage_b = StageB(tuple(self.config["widths"]), rgb_head=bool(self.config["rgb_head"]))
        self.stage_a = TAEF2(taef2, pretrained=pretrained)
        self.record: Dict = {}

    @classmethod
    def load(cls, path: Union[str, Path, None] = None) -> "EmbeddedSCSIC":
        """The shipped (or given) weights: ``{"config", "encoder", "stage_b", "record"}``.

        Raises:
            FileNotFoundError: the file is missing (train it with ``gensemcom train sc-sic``).
        """
        p = Path(path) if path else WEIGHTS
        if not p.is_file():
            raise FileNotFoundError(f"SC-SIC embedded weights {p} are missing: train them with `gensemcom train "
                                    "sc-sic`, or use profile='tiny'")
        blob = torch.load(p, map_location="cpu", weights_only=False)
        m = cls(blob.get("config"))
        m.encoder.load_state_dict({k: v.float() for k, v in blob["encoder"].items()}, strict=True)
        m.stage_b.load_state_dict({k: v.float() for k, v in blob["stage_b"].items()}, strict=True)
        m.record = dict(blob.get("record") or {})
        return m.eval()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> ``Z`` (B, 16, gh, gw)."""
        xt = trunk_input(x)
        last, head = self.trunk.features(xt)
        return self.encoder(last, head, color_grid(x, last.shape[-2:], self.encoder.sub))

    def reconstruct(self, z: torch.Tensor, snr_db: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Received ``Z`` -> image (B, 3, H, W) in [0, 1]: Stage B, then TAEF2's decoder."""
        lat, rgb = self.stage_b(z, snr_db, latent_grid(*size), with_rgb=True)
        img = self.stage_a.decode(lat, out_size=size)
        if rgb is None:
            return img
        return layout_correct(img, rgb, tuple(4 * g for g in z.shape[-2:]))
