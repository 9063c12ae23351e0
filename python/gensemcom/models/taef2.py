"""TAEF2, a real pretrained tiny autoencoder, in diffusers' :class:`AutoencoderTiny`.

TAEF2 (Ollin Boer Bohan, MIT licence, ``models/taef2/LICENSE``) is a tiny
autoencoder for the FLUX.2 latent space: 32 latent channels at 1/8 of the image's
resolution, 1.2 M parameters per half. It is the embedded profiles' Stage A: the
receivers predict its latents and its decoder draws the image.

The shipped state dicts (``models/taef2/taef2_{encoder,decoder}.pth``, fp16) are
TAESD-style ``nn.Sequential`` dicts. Two differences from diffusers'
:class:`~diffusers.AutoencoderTiny` are bridged here:

* six blocks (the last three of the encoder, the first three of the decoder) carry
  an extra residual "pool" branch applied before the block:
  ``x + conv1x1(relu(groupnorm4(conv1x1(x))))`` widening to 4x the channels
  (:class:`PoolBranch`);
* the original decoder starts with its ``tanh(x / 3) * 3`` clamp as a layer,
  diffusers' applies it in ``forward``, so decoder keys shift down by one index.

Loading is strict: every key of both files is mapped and every parameter of the
model is filled (:func:`load_taef2`). Images are in ``[0, 1]`` at this module's
API (:meth:`TAEF2.encode` / :meth:`TAEF2.decode`); the latents are the raw ones
(no scaling), about unit scale, bounded by the decoder's clamp at +-3.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

#: where the package ships the weights (with their licence)
TAEF2_DIR = Path(__file__).resolve().parent / "taef2"
LATENT_CHANNELS = 32
#: spatial downsampling of the latent
SCALE = 8
#: indices (in the original TAESD-style Sequentials) of the blocks with a pool branch
ENCODER_POOL_BLOCKS = (11, 12, 13)
DECODER_POOL_BLOCKS = (3, 4, 5)


class PoolBranch(nn.Module):
    """The residual widening branch of TAEF2's middle blocks: 1x1 conv to 4C,
    GroupNorm(4), ReLU, 1x1 conv back to C; the block sees ``x + branch(x)``."""

    def __init__(self, channels: int = 64, widen: int = 4, groups: int = 4):
        super().__init__()
        n = channels * widen
        self.pool = nn.Sequential(nn.Conv2d(channels, n, 1, bias=False), nn.GroupNorm(groups, n),
                                  nn.ReLU(inplace=True), nn.Conv2d(n, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pool(x)


class _PooledBlock(nn.Module):
    """A diffusers ``AutoencoderTinyBlock`` preceded by a :class:`PoolBranch`; its
    state-dict keys stay the original's (``conv.*``, ``pool.*``)."""

    def __init__(self, block: nn.Module, channels: int):
        super().__init__()
        self.conv, self.skip, self.fuse = block.conv, block.skip, block.fuse
        self.pool = PoolBranch(channels).pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def build_autoencoder():
    """An :class:`~diffusers.AutoencoderTiny` with TAEF2's architecture (random weights)."""
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny(latent_channels=LATENT_CHANNELS)
    enc, dec = vae.encoder.layers, vae.decoder.layers
    for i in ENCODER_POOL_BLOCKS:
        enc[i] = _PooledBlock(enc[i], 64)
    for i in DECODER_POOL_BLOCKS:
        dec[i - 1] = _PooledBlock(dec[i - 1], 64)
    return vae


def _shift_decoder_keys(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        out[f"{int(head) - 1}.{rest}"] = v
    return out


def load_taef2(folder: Union[str, Path, None] = None, dtype=torch.float32):
    """TAEF2 from ``folder`` (default: the shipped copy) into an ``AutoencoderTiny``.

    Raises:
        FileNotFoundError: a weight file is missing.
        RuntimeError: a key is missing or unexpected (strict load).
    """
    folder = Path(folder) if folder else TAEF2_DIR
    files = {n: folder / f"taef2_{n}.pth" for n in ("encoder", "decoder")}
    for n, p in files.items():
        if not p.is_file():
            raise FileNotFoundError(f"TAEF2 {n} weights {p} not found")
    vae = build_autoencoder()
    enc = torch.load(files["encoder"], map_location="cpu", weights_only=True)
    dec = _shift_decoder_keys(torch.load(files["decoder"], map_location="cpu", weights_only=True))
    vae.encoder.layers.load_state_dict({k: v.float() for k, v in enc.items()}, strict=True)
    vae.decoder.layers.load_state_dict({k: v.float() for k, v in dec.items()}, strict=True)
    if dtype != torch.float32:
        vae = vae.to(dtype)
    return vae.eval().requires_grad_(False)


class TAEF2(nn.Module):
    """TAEF2 with an image API in ``[0, 1]``.

    Args:
        folder (str | Path | None): the weights' folder (default: the shipped copy).
        pretrained (bool): False: TAEF2's architecture with random weights (tests).
    """

    def __init__(self, folder: Union[str, Path, None] = None, pretrained: bool = True):
        super().__init__()
        self.vae = load_taef2(folder) if pretrained else build_autoencoder().eval().requires_grad_(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> raw latents (B, 32, H/8, W/8)."""
        return self.vae.encode(x * 2 - 1).latents

    def decode(self, z: torch.Tensor, out_size: Optional[tuple] = None) -> torch.Tensor:
        """Raw latents -> (B, 3, 8h, 8w) in [0, 1] (cropped to ``out_size`` when given)."""
        y = self.vae.decode(z).sample.add(1).div(2).clamp(0, 1)
        if out_size is not None:
            y = y[..., :out_size[0], :out_size[1]]
        return y
