"""The embedded task-adaptive models: a CamVid segmenter and a conditional latent DDPM.

Everything the embedded ``task_adaptive`` profile runs offline on a CPU:

* :class:`SegHead` over the ImageNet-pretrained EfficientNet-Lite0 trunk
  (:meth:`gensemcom.models.effnet_lite.EfficientNetLite0.pyramid`, frozen): a small
  feature-pyramid decoder (strides 32, 16, 8 merged top-down) giving the 11 CamVid
  classes at stride 8, upsampled bilinearly. :class:`Segmenter` wraps trunk and head:
  :meth:`Segmenter.predict` (label map) and :meth:`Segmenter.cam` (a Grad-CAM class
  activation map for a set of classes, at the trunk's stride-16 features: the
  attention of the transmitter's phase 3).
* :class:`CondDenoiser`: a conditional DDPM in TAEF2's latent space (32 channels at
  1/8 resolution, :mod:`gensemcom.models.taef2`). The condition is the one-hot label
  map (11 classes + unlabelled) and a binary edge map, both at pixel resolution,
  folded into the latent grid by ``pixel_unshuffle(8)`` and a 1x1 convolution, then
  concatenated with the noisy latent into a diffusers ``UNet2DModel``. The network
  predicts the clean latent (``prediction_type="sample"``); sampling is DDIM
  (diffusers' ``DDIMScheduler``). An all-zero edge map is phase 1's "no preference";
  the trainer teaches both conditions, as the paper does.
* :func:`edge_map` (Canny, OpenCV) and :func:`work_resize`: the working resolution
  every model shares (:data:`WORK_SIZE`, CamVid's 4:3 at 0.8 scale).

The classes are CamVid's 11 (:data:`CLASSES`); label :data:`VOID` is unlabelled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: CamVid's classes, in label order (label 11 is "unlabelled")
CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian", "bicyclist")
N_CLASSES = len(CLASSES)
VOID = 11
#: (H, W) of the working resolution: segmentation, edges, latents (x 1/8) and the DDPM's output
WORK_SIZE = (288, 384)
LATENT_CHANNELS = 32
FACTOR = 8  #: TAEF2's downsampling


def work_resize(image: np.ndarray, size: Tuple[int, int] = WORK_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 -> the working size (area-averaged when shrinking)."""
    import cv2

    h, w = size
    if image.shape[:2] == (h, w):
        return np.ascontiguousarray(image)
    interp = cv2.INTER_AREA if image.shape[0] >= h else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)


def resize_labels(labels: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(H, W) label map -> ``size`` by nearest neighbour (labels are never blended)."""
    import cv2

    h, w = size
    if labels.shape == (h, w):
        return np.ascontiguousarray(labels)
    return cv2.resize(np.ascontiguousarray(labels), (w, h), interpolation=cv2.INTER_NEAREST)


def edge_map(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8 in {0, 1}: Canny edges of the grey image after a
    3x3 Gaussian blur (OpenCV; hysteresis thresholds ``low``/``high``)."""
    import cv2

    g = cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), (3, 3), 0)
    return (cv2.Canny(g, low, high) > 0).astype(np.uint8)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255.0)


# ---------------------------------------------------------------- segmentation
class SegHead(nn.Module):
    """A feature-pyramid decoder over EfficientNet-Lite0's strides 8, 16 and 32.

    Args:
        channels (int): width of the merged features.
        in_channels (tuple): the pyramid's channels (stride 8, 16, 32).
        n_classes (int): output classes.
        depth (int): 3x3 convolutions after the merge.
    """

    def __init__(self, channels: int = 96, in_channels: Sequence[int] = (40, 112, 1280),
                 n_classes: int = N_CLASSES, depth: int = 2):
        super().__init__()
        self.config = dict(channels=channels, in_channels=tuple(in_channels), n_classes=n_classes, depth=depth)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        layers = []
        for _ in range(depth):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)]
        self.merge = nn.Sequential(*layers)
        self.classify = nn.Conv2d(channels, n_classes, 1)

    def forward(self, s8: torch.Tensor, s16: torch.Tensor, s32: torch.Tensor) -> torch.Tensor:
        """Pyramid features -> logits (B, n_classes, H/8, W/8)."""
        x = self.lateral[2](s32)
        x = F.interpolate(x, size=s16.shape[-2:], mode="bilinear", align_corners=False) + self.lateral[1](s16)
        x = F.interpolate(x, size=s8.shape[-2:], mode="bilinear", align_corners=False) + self.lateral[0](s8)
        return self.classify(self.merge(x))


class Segmenter(nn.Module):
    """A frozen EfficientNet-Lite0 trunk with a trained :class:`SegHead`.

    Args:
        head (SegHead): the decoder.
        trunk: the trunk (default: the ImageNet-pretrained one from PyPI).
    """

    def __init__(self, head: SegHead, trunk: Optional[nn.Module] = None):
        super().__init__()
        if trunk is None:
            from .effnet_lite import load_pretrained

            trunk = load_pretrained()
        self.trunk, self.head = trunk.eval().requires_grad_(False), head.eval()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> logits (B, n_classes, H, W)."""
        s8, s16, s32 = self.trunk.pyramid(x)
        return F.interpolate(self.head(s8, s16, s32), size=x.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) uint8 class indices (0..n_classes-1)."""
        return self.logits(to_tensor(image)).argmax(1)[0].to(torch.uint8).numpy()

    def cam(self, image: np.ndarray, classes: Sequence[int], weights: Optional[Sequence[float]] = None) -> np.ndarray:
        """Grad-CAM of ``classes`` (Selvaraju et al. 2017, in its segmentation form):
        the score is the sum of each class's logits over the pixels predicted as that
        class (over all pixels when none is), weighted by ``weights``; the map is
        ReLU(sum_k alpha_k F_k) over the trunk's stride-16 features F with alpha_k the
        spatial mean of the score's gradient, upsampled to the image and scaled to
        [0, 1] by its maximum (all zero when the classes are absent).

        Returns:
            (H, W) float32 in [0, 1].
        """
        x = to_tensor(image)
        with torch.no_grad():
            s8, s16, s32 = self.trunk.pyramid(x)
        s16 = s16.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.head(s8, s16, s32)
            pred = logits.argmax(1)
            score = logits.new_zeros(())
            w = [1.0] * len(classes) if weights is None else list(weights)
            for c, wc in zip(classes, w):
                m = (pred == int(c)).float()
                m = m if m.sum() > 0 else torch.ones_like(m)
                score = score + float(wc) * (logits[:, int(c)] * m).sum() / m.sum().clamp(min=1.0)
            (g,) = torch.autograd.grad(score, s16)
        a = torch.relu((g.mean((2, 3), keepdim=True) * s16.detach()).sum(1, keepdim=True))
        a = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        peak = float(a.max())
        return (a / peak).numpy().astype(np.float32) if peak > 0 else np.zeros(x.shape[-2:], np.float32)


# ---------------------------------------------------------------- conditional latent DDPM
def condition(labels: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Label map (B, H, W) long (VOID allowed) and edge map (B, H, W) {0, 1} -> the
    DDPM's pixel condition (B, N_CLASSES + 2, H, W): one-hot labels with VOID, then edges."""
    oh = F.one_hot(labels.long().clamp(0, VOID), VOID + 1).permute(0, 3, 1, 2).float()
    return torch.cat([oh, edges.float()[:, None]], 1)


class CondDenoiser(nn.Module):
    """A diffusers ``UNet2DModel`` over [noisy latent, folded condition].

    Args:
        channels (tuple): the UNet's block widths.
        cond_channels (int): width of the folded condition.
    """

    def __init__(self, channels: Sequence[int] = (48, 96, 144), cond_channels: int = 64):
        super().__init__()
        from diffusers import UNet2DModel

        self.config = dict(channels=tuple(channels), cond_channels=cond_channels)
        cin = (VOID + 2) * FACTOR * FACTOR
        self.fold = nn.Sequential(nn.Conv2d(cin, cond_channels, 1), nn.SiLU(),
                                  nn.Conv2d(cond_channels, cond_channels, 3, padding=1))
        n = len(channels)
        self.unet = UNet2DModel(in_channels=LATENT_CHANNELS + cond_channels, out_channels=LATENT_CHANNELS,
                                block_out_channels=tuple(channels), layers_per_block=1, norm_num_groups=16,
                                down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
                                up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1))

    def fold_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, N_CLASSES + 2, H, W) -> (B, cond_channels, H/8, W/8)."""
        return self.fold(F.pixel_unshuffle(cond, FACTOR))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, folded: torch.Tensor) -> torch.Tensor:
        """Noisy normalised latent, timesteps, folded condition -> predicted clean latent."""
        return self.unet(torch.cat([z_t, folded], 1), t).sample


def make_scheduler(kind: str = "ddim", steps: int = 1000):
    """The noise schedule shared by training (DDPM) and sampling (DDIM): scaled-linear
    betas (0.00085..0.012, Stable Diffusion's), clean-latent prediction."""
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = dict(num_train_timesteps=steps, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
              prediction_type="sample", clip_sample=False)
    return DDIMScheduler(**kw) if kind == "ddim" else DDPMScheduler(**kw)


@torch.no_grad()
def sample_latent(model: CondDenoiser, cond: torch.Tensor, steps: int = 20, seed: int = 0,
                  eta: float = 0.0) -> torch.Tensor:
    """DDIM sampling of the normalised latent given the pixel condition (B, C, H, W)."""
    sched = make_scheduler("ddim")
    sched.set_timesteps(int(steps))
    folded = model.fold_condition(cond)
    g = torch.Generator().manual_seed(int(seed))
    b, _, h, w = cond.shape
    z = torch.randn(b, LATENT_CHANNELS, h // FACTOR, w // FACTOR, generator=g)
    for t in sched.timesteps:
        x0 = model(z, t.expand(b), folded)
        z = sched.step(x0, t, z, eta=eta, generator=g).prev_sample
    return z


# ---------------------------------------------------------------- the bundle
BUNDLE_FORMAT = "gensemcom-task-adaptive-embedded-1"
#: where the shipped weights live: the profile's bundle and the benchmark's evaluation segmenter
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLE_PATH = WEIGHTS_DIR / "task_adaptive_embedded.pt"
EVAL_SEGMENTER_PATH = WEIGHTS_DIR / "camvid_eval_segmenter.pt"


def save_bundle(path, seg_head: SegHead, denoiser: CondDenoiser, latent_mean: torch.Tensor,
                latent_std: torch.Tensor, record: Dict) -> None:
    """Write the embedded profile's weights (fp16) with their configs and training record."""
    half = {k: v.half() if v.is_floating_point() else v for k, v in denoiser.state_dict().items()}
    torch.save({"format": BUNDLE_FORMAT, "seg_config": seg_head.config, "seg": seg_head.state_dict(),
                "ddpm_config": denoiser.config, "ddpm": half, "latent_mean": latent_mean.float(),
                "latent_std": latent_std.float(), "record": record}, path)


def load_bundle(path) -> Dict:
    """Read a bundle: ``seg_head``, ``denoiser`` (eval mode, fp32), ``latent_mean``,
    ``latent_std`` (1, 32, 1, 1) and ``record``.

    Raises:
        ValueError: a file that is not such a bundle.
    """
    d = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(d, dict) or d.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path} is not a {BUNDLE_FORMAT} bundle")
    head = SegHead(**d["seg_config"])
    head.load_state_dict(d["seg"])
    den = CondDenoiser(**d["ddpm_config"])
    den.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in d["ddpm"].items()})
    return {"seg_head": head.eval(), "denoiser": den.eval().requires_grad_(False),
            "latent_mean": d["latent_mean"].view(1, -1, 1, 1), "latent_std": d["latent_std"].view(1, -1, 1, 1),
            "record": d.get("record", {})}


EVAL_FORMAT = "gensemcom-camvid-eval-segmenter-1"


def load_eval_segmenter(path=None, trunk: Optional[nn.Module] = None) -> Segmenter:
    """The fixed CamVid **evaluation** segmenter (not the transmitter's: another head,
    trained on train + val; see :mod:`gensemcom.train.task_adaptive`), for task mIoU on
    reconstructions.

    Raises:
        FileNotFoundError: the weights are missing; ValueError: not such a file.
    """
    p = Path(path) if path else EVAL_SEGMENTER_PATH
    if not p.is_file():
        raise FileNotFoundError(f"the CamVid evaluation segmenter {p} is missing "
                                "(gensemcom train task-adaptive --part eval-segmenter, then --part pack)")
    d = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(d, dict) or d.get("format") != EVAL_FORMAT:
        raise ValueError(f"{p} is not a {EVAL_FORMAT} file")
    head = SegHead(**d["config"])
    head.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in d["state"].items()})
    return Segmenter(head, trunk)
