"""DeepJSCC: a small SNR-adaptive convolutional joint source-channel coding autoencoder.

The design follows Deep JSCC (Bourtsoulatze, Kurka and Gunduz, 2019) with the
attention-feature (AF) modules of ADJSCC (Xu et al., 2021), which make one model
serve every SNR: each AF module pools its input feature map to one value per
channel, appends the SNR, and an MLP turns that into per-channel gains in (0, 1).

Architecture (``N`` hidden channels, ``C`` latent channels, downsampling by 8)::

    encoder: conv5x5/2 (3->N) GDN | conv5x5/2 GDN | AF | conv5x5/2 GDN | res | AF
             | res | AF | conv3x3 (N->C) | power normalisation
    channel: AWGN or Rayleigh block fading with the link's MMSE equaliser (training)
    decoder: conv3x3 (C->N) | AF | res | AF | res | up x2 IGDN | AF | up x2 IGDN
             | up x2 (N->3) | sigmoid

``up x2`` is a 3x3 convolution followed by a pixel shuffle.

**Bandwidth.** An H x W image gives a latent of C x H/8 x W/8 reals; two reals make
one complex channel use, so there are C*H*W/128 channel uses for 3*H*W source
values: **CBR = C / 384**. ``C = 16`` gives **CBR = 1/24 exactly**; ``C = 32`` gives
1/12, ``C = 8`` gives 1/48 (see :func:`channels_for_cbr`).

**Power.** :class:`PowerNorm` scales each image's whole latent so that the complex
symbols ``z[2i] + j z[2i+1]`` (flattened in C order) have average power exactly 1,
the convention of :mod:`gensemcom.phy.channels` and :mod:`gensemcom.phy.analog`, so
the link's own normalisation scale is 1 and the decoder sees the latent at the scale
it was trained on.

Images of any size work: the input is reflect-padded to a multiple of 8 and the
output cropped back.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

DOWNSAMPLE = 8
"""Spatial downsampling factor of the encoder (three stride-2 stages)."""

SNR_SCALE = 20.0
"""The SNR (dB) is fed to the AF modules as snr_db / SNR_SCALE."""


def channels_for_cbr(cbr: Union[str, float, Fraction]) -> int:
    """Latent channels C for a channel bandwidth ratio (CBR = C / 384).

    Args:
        cbr (str | float | Fraction): complex channel uses per source value, e.g.
            ``"1/24"`` or ``1/24``.

    Returns:
        int: the number of latent channels (16 for 1/24).

    Raises:
        ValueError: when the CBR does not give a positive even whole number of
            channels.
    """
    frac = Fraction(cbr).limit_denominator(10000) if not isinstance(cbr, str) else Fraction(cbr)
    c = frac * 2 * 3 * DOWNSAMPLE * DOWNSAMPLE
    if c.denominator != 1 or c <= 0:
        raise ValueError(f"CBR {cbr} needs {c} latent channels: choose C/384 with C a whole number")
    return int(c)


def cbr_of(latent_channels: int) -> Fraction:
    """Exact CBR (complex channel uses / (3 H W)) for ``latent_channels`` channels."""
    return Fraction(int(latent_channels), 2 * 3 * DOWNSAMPLE * DOWNSAMPLE)


def channel_uses(height: int, width: int, latent_channels: int) -> int:
    """Complex channel uses for an image of this size (after padding to a multiple of 8)."""
    hp, wp = -(-height // DOWNSAMPLE) * DOWNSAMPLE, -(-width // DOWNSAMPLE) * DOWNSAMPLE
    return latent_channels * (hp // DOWNSAMPLE) * (wp // DOWNSAMPLE) // 2


# ------------------------------------------------------------------ layers
class GDN(nn.Module):
    """Generalised divisive normalisation (Balle et al.), or its inverse.

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)`` (``inverse``: multiply). The
    parameters are kept non-negative by squaring.

    Args:
        ch (int): channels.
        inverse (bool): IGDN (decoder side) instead of GDN.
    """

    def __init__(self, ch: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(math.sqrt(0.1) * torch.eye(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta ** 2 + 1e-6
        gamma = (self.gamma ** 2).view(*self.gamma.shape, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


class AFModule(nn.Module):
    """ADJSCC attention-feature module: SNR-dependent channel-wise gains.

    Args:
        ch (int): feature channels.
        hidden (int): MLP width (default ``ch // 2``).
    """

    def __init__(self, ch: int, hidden: Optional[int] = None):
        super().__init__()
        hidden = hidden or max(ch // 2, 8)
        self.mlp = nn.Sequential(nn.Linear(ch + 1, hidden), nn.GELU(), nn.Linear(hidden, ch))

    def forward(self, x: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
        ctx = torch.cat([x.mean(dim=(2, 3)), snr.view(-1, 1) / SNR_SCALE], dim=1)
        return x * torch.sigmoid(self.mlp(ctx)).unsqueeze(-1).unsqueeze(-1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a PReLU between and a skip connection."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.PReLU(ch), nn.Conv2d(ch, ch, 3, padding=1))
        self.act = nn.PReLU(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class Up(nn.Module):
    """2x upsampling: 3x3 convolution to 4x the channels, then a pixel shuffle."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class PowerNorm(nn.Module):
    """Scale each sample's whole latent to average complex-symbol power exactly 1.

    With K = numel / 2 complex symbols per sample, ``z * sqrt(K / sum(z^2))``.
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(z.shape[0], -1)
        k = flat.shape[1] / 2.0
        power = flat.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)
        return (flat * torch.sqrt(k / power)).view_as(z)


def channel(z: torch.Tensor, snr_db: torch.Tensor, kind: str = "awgn", coherence: int = 64,
            mmse: bool = True, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The link's analog path, differentiable: AWGN or Rayleigh block fading, then MMSE.

    Matches :class:`gensemcom.link.FrameLink`: reals ``z[2i], z[2i+1]`` form
    one unit-power complex symbol, the complex noise has variance N0 = 10^(-SNR/10)
    (N0/2 per real), and the receiver applies the one-tap MMSE equaliser
    ``h* y / (|h|^2 + N0)`` with perfect CSI (h = 1 for AWGN).

    Args:
        z (torch.Tensor): power-normalised latents (B, ...).
        snr_db (torch.Tensor): per-sample Es/N0 in dB, shape (B,).
        kind (str): ``"awgn"`` or ``"rayleigh"``.
        coherence (int): Rayleigh block length in complex symbols.
        mmse (bool): apply the MMSE equaliser (False: raw AWGN output; AWGN only).
        generator (torch.Generator | None): noise generator.

    Returns:
        torch.Tensor: the equalised latents, same shape as ``z``.
    """
    b = z.shape[0]
    x = z.reshape(b, -1, 2)
    n0 = torch.pow(10.0, -snr_db.to(z.dtype) / 10.0).view(b, 1, 1)
    noise = torch.randn(x.shape, generator=generator, dtype=z.dtype, device=z.device) * torch.sqrt(n0 / 2)
    if kind == "awgn":
        y = x + noise
        if mmse:
            y = y / (1.0 + n0)
        return y.view_as(z)
    if kind != "rayleigh":
        raise ValueError(f"unknown channel {kind!r}: use 'awgn' or 'rayleigh'")
    n_sym = x.shape[1]
    n_blocks = -(-n_sym // coherence)
    h = torch.randn((b, n_blocks, 1, 2), generator=generator, dtype=z.dtype, device=z.device) * math.sqrt(0.5)
    h = h.expand(b, n_blocks, coherence, 2).reshape(b, -1, 2)[:, :n_sym]
    hr, hi = h[..., 0], h[..., 1]
    xr, xi = x[..., 0], x[..., 1]
    yr = hr * xr - hi * xi + noise[..., 0]
    yi = hr * xi + hi * xr + noise[..., 1]
    g = hr * hr + hi * hi + n0[..., 0]
    out = torch.stack([(hr * yr + hi * yi) / g, (hr * yi - hi * yr) / g], dim=-1)
    return out.view_as(z)


# ------------------------------------------------------------------ model
class Encoder(nn.Module):
    """Image in [0, 1] (B, 3, H, W), H and W multiples of 8 -> latent (B, C, H/8, W/8), unit power."""

    def __init__(self, n: int = 64, c: int = 16):
        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(3, n, 5, 2, 2), GDN(n))
        self.s2 = nn.Sequential(nn.Conv2d(n, n, 5, 2, 2), GDN(n))
        self.af2 = AFModule(n)
        self.s3 = nn.Sequential(nn.Conv2d(n, n, 5, 2, 2), GDN(n), ResBlock(n))
        self.af3 = AFModule(n)
        self.res = ResBlock(n)
        self.af4 = AFModule(n)
        self.out = nn.Conv2d(n, c, 3, padding=1)
        self.norm = PowerNorm()

    def forward(self, x: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
        x = self.af2(self.s2(self.s1(x * 2.0 - 1.0)), snr)
        x = self.af3(self.s3(x), snr)
        x = self.af4(self.res(x), snr)
        return self.norm(self.out(x))


class Decoder(nn.Module):
    """Received latent (B, C, h, w) -> image in [0, 1] (B, 3, 8h, 8w)."""

    def __init__(self, n: int = 64, c: int = 16):
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(c, n, 3, padding=1), nn.PReLU(n))
        self.af1 = AFModule(n)
        self.res1 = ResBlock(n)
        self.af2 = AFModule(n)
        self.res2 = ResBlock(n)
        self.up1 = nn.Sequential(Up(n, n), GDN(n, inverse=True))
        self.af3 = AFModule(n)
        self.up2 = nn.Sequential(Up(n, n), GDN(n, inverse=True))
        self.up3 = Up(n, 3)

    def forward(self, z: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
        x = self.af1(self.inp(z), snr)
        x = self.af2(self.res1(x), snr)
        x = self.res2(x)
        x = self.af3(self.up1(x), snr)
        x = self.up3(self.up2(x))
        return torch.sigmoid(x)


class DeepJSCC(nn.Module):
    """SNR-adaptive DeepJSCC autoencoder with a channel in the middle (for training).

    Args:
        n (int): hidden channels.
        c (int): latent channels; CBR = c / 384 (16 -> 1/24).
    """

    def __init__(self, n: int = 64, c: int = 16):
        super().__init__()
        if c % 2:
            raise ValueError(f"latent channels must be even (two reals per symbol), got {c}")
        self.n, self.c = int(n), int(c)
        self.encoder = Encoder(n, c)
        self.decoder = Decoder(n, c)

    @property
    def cbr(self) -> Fraction:
        """Exact channel bandwidth ratio (complex channel uses per source value)."""
        return cbr_of(self.c)

    def config(self) -> dict:
        """Constructor arguments (saved with checkpoints)."""
        return {"n": self.n, "c": self.c}

    @staticmethod
    def pad(x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Reflect-pad (B, 3, H, W) to multiples of 8; returns the padded tensor and (H, W)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % DOWNSAMPLE, (-w) % DOWNSAMPLE
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x, (h, w)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] (B, 3, H, W), any size -> unit-power latent (B, C, ceil(H/8), ceil(W/8))."""
        x, _ = self.pad(x)
        return self.encoder(x, snr_db)

    def decode(self, z: torch.Tensor, snr_db: torch.Tensor, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Received latent -> image in [0, 1], cropped to ``size`` (H, W) when given."""
        out = self.decoder(z, snr_db)
        if size is not None:
            out = out[..., : size[0], : size[1]]
        return out

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor, kind: str = "awgn",
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Encode, send through the channel (with MMSE), decode; same size as ``x``."""
        z = self.encode(x, snr_db)
        return self.decode(channel(z, snr_db, kind, generator=generator), snr_db, tuple(x.shape[-2:]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR (dB) of images in [0, 1]."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


def load_model(path, map_location: str = "cpu") -> DeepJSCC:
    """Build a :class:`DeepJSCC` from a weights file or a training checkpoint.

    Accepts the exported form (``{"config": {...}, "state_dict": {...}}``, possibly
    float16) and training checkpoints (``{"config", "model", ...}``).

    Args:
        path (str | Path): the file.
        map_location (str): torch device to load onto.

    Returns:
        DeepJSCC: the model in eval mode, float32.
    """
    blob = torch.load(str(path), map_location=map_location, weights_only=False)
    if not isinstance(blob, dict) or "config" not in blob:
        raise ValueError(f"{path} is not a DeepJSCC weights file (no 'config')")
    sd = blob.get("state_dict", blob.get("model"))
    if sd is None:
        raise ValueError(f"{path} holds no state dict ('state_dict' or 'model')")
    model = DeepJSCC(**blob["config"])
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval()
