"""Stable Cascade's parts for SC-SIC's ``full`` profile: the EfficientNet-V2-S image
encoder, the Stage B + Stage A decoder pipeline, and Stage B's noise-robust fine-tuning.

SC-SIC (Khalid et al. 2025) sends ``Z``, the output of Stable Cascade's image encoder
(EfficientNet-V2-S ``features``, a 1x1 conv to 16 channels, a non-affine batch norm)
on the image resized by 3/4 (512 -> 384 -> [16, 12, 12]; 1024 -> 768 -> [16, 24, 24]),
and regenerates the image with Stage B (diffusers' ``StableCascadeUNet``, the lite
700M or the full 1.5B) conditioned on the received ``Z`` as its ``image_embeddings``,
then Stage A (diffusers' ``PaellaVQModel``, a VQGAN decoder).

* :class:`EfficientNetV2Encoder`: the encoder, written here (torchvision is not a
  dependency) with the module names of Stable Cascade's ``EfficientNetEncoder``
  (``backbone`` = torchvision's ``efficientnet_v2_s().features``, ``mapper``), so the
  hub's ``effnet_encoder.safetensors`` loads key for key
  (:func:`load_effnet_encoder`, strict).
* :func:`load_decoder_pipeline`: a ``StableCascadeDecoderPipeline`` from the hub
  (``stabilityai/stable-cascade``, Stage B from ``decoder_lite`` or ``decoder``) or a
  local folder (a ``save_pretrained`` pipeline, or just a fine-tuned ``decoder`` /
  ``decoder_lite`` folder with the other parts from the hub). The components are
  loaded one by one: diffusers 0.42 no longer resolves ``PaellaVQModel`` from a
  pipeline's ``model_index.json``.
* :func:`generate`: the pipeline run on a received ``Z`` with an empty prompt.
* :class:`FineTuner` and :func:`noise_robust_loss`: the paper's fine-tuning of Stage B
  on ``Z`` plus AWGN (SNR uniform in 1-20 dB), with the diffusion loss of the paper's
  Eq. 4 (Stage A latents noised at a uniform ``t`` with Stable Cascade's cosine
  schedule, MSE between the true and the predicted noise).
* :func:`tiny_components`: a tiny random pipeline of the same classes saved with
  ``save_pretrained`` (tests run the real loading and generation code).
* :data:`PUBLISHED_CONFIGS`, :data:`PUBLISHED_PARAMS`: the published architectures and
  parameter counts (benchmarks build them with random weights).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import published
from .hf import ModelNotAvailable, hub_offline, pick_device, pick_dtype
from .local import locate
# the paper's resize rule, one place for both profiles
from .sc_sic_embedded import trunk_input as resize_for_encoder

DEFAULT_REPO = "stabilityai/stable-cascade"
EFFNET_FILE = "effnet_encoder.safetensors"
#: environment variables naming the encoder (file, folder or hub id) and the decoder (folder or hub id)
ENV_ENCODER = "GENSEMCOM_SC_ENCODER"
ENV_DECODER = "GENSEMCOM_SC_DECODER"
CHANNELS = 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-3
#: the pipeline's default ratio of Stage B's latent side to the embedding's (24 -> 256)
LATENT_DIM_SCALE = 10.67
#: the paper's fine-tuning: batch 4, AdamW at 1e-4, 15000 steps, SNR uniform in 1-20 dB, 1024 x 1024 images
PAPER_FINETUNE = {"batch": 4, "lr": 1e-4, "steps": 15000, "snr_range": (1.0, 20.0), "resolution": 1024}

#: EfficientNet-V2-S ``features`` (torchvision's ``_efficientnet_conf("efficientnet_v2_s")``):
#: (block, expand ratio, kernel, stride, in channels, out channels, layers) per stage
EFFNET_V2_S_STAGES = (
    ("fused", 1, 3, 1, 24, 24, 2),
    ("fused", 4, 3, 2, 24, 48, 4),
    ("fused", 4, 3, 2, 48, 64, 4),
    ("mb", 4, 3, 2, 64, 128, 6),
    ("mb", 6, 3, 1, 128, 160, 9),
    ("mb", 6, 3, 2, 160, 256, 15),
)
EFFNET_HEAD = 1280
#: parameters of torchvision's ``efficientnet_v2_s().features``: the published total of
#: ``EfficientNet_V2_S_Weights.IMAGENET1K_V1`` (``num_params`` 21,458,488) less the
#: classifier (``Linear(1280, 1000)``: 1,281,000)
EFFNET_V2_S_FEATURE_PARAMS = 21_458_488 - (1280 * 1000 + 1000)

_SC_LEVELS = (["SDCascadeResBlock", "SDCascadeTimestepBlock"],) * 2 + \
    (["SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"],) * 2
#: the published models' names in :mod:`gensemcom.models.published` (one JSON file each, the data)
PUBLISHED_NAMES = {"decoder": "sc-stage-b", "decoder_lite": "sc-stage-b-lite", "vqgan": "sc-stage-a",
                   "effnet": "sc-effnet-encoder", "text_encoder": "sc-text-encoder"}
_PUBLISHED = {k: published.spec(n) for k, n in PUBLISHED_NAMES.items()}
#: ``StableCascadeUNet`` / ``PaellaVQModel`` configs of the published models, as in the hub
#: repo ``stabilityai/stable-cascade``'s ``decoder/config.json``, ``decoder_lite/config.json``
#: and ``vqgan/config.json`` (read from :mod:`gensemcom.models.published`)
PUBLISHED_CONFIGS: Dict[str, Dict] = {k: _PUBLISHED[k]["config"] for k in ("decoder", "decoder_lite", "vqgan")}
#: where :data:`PUBLISHED_CONFIGS` and :data:`PUBLISHED_PARAMS` come from
CONFIG_SOURCES = {
    **{k: _PUBLISHED[k]["config_source"] for k in ("decoder", "decoder_lite", "vqgan")},
    "params": _PUBLISHED["decoder"]["params_source"],
    "effnet": f"{_PUBLISHED['effnet']['params_source']}; {_PUBLISHED['effnet']['config_source']} for the encoder's "
              "layout",
}
#: parameter counts as published (rounded by the publisher: compare with a tolerance)
PUBLISHED_PARAMS = {**{k: float(_PUBLISHED[k]["published_params"]) for k in ("decoder", "decoder_lite", "vqgan")},
                    "effnet_backbone": float(_PUBLISHED["effnet"]["shapes"]["backbone_params"]["value"])}

_CACHE: Dict[tuple, object] = {}
_LOCK = threading.Lock()


# ---------------------------------------------------------------- the encoder


class ConvBNAct(nn.Sequential):
    """torchvision's ``Conv2dNormActivation``: conv (no bias), BN (eps 1e-3), SiLU
    (children ``0``, ``1``, ``2``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=BN_EPS)]
        if act:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` with SiLU (``fc1``, ``fc2``)."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class FusedMBConv(nn.Module):
    """Fused inverted residual: a 3x3 conv (expanding), a 1x1 projection (``block``)."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int):
        super().__init__()
        hidden = cin * expand
        if hidden != cin:
            self.block = nn.Sequential(ConvBNAct(cin, hidden, kernel, stride), ConvBNAct(hidden, cout, 1, act=False))
        else:
            self.block = nn.Sequential(ConvBNAct(cin, cout, kernel, stride))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.residual else y


class MBConv(nn.Module):
    """Inverted residual with squeeze-excitation: 1x1 expansion, depthwise conv, SE
    (squeeze to a quarter of the input channels), 1x1 projection (``block``)."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int):
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(ConvBNAct(cin, hidden, 1), ConvBNAct(hidden, hidden, kernel, stride, groups=hidden),
                                   SqueezeExcitation(hidden, max(1, cin // 4)), ConvBNAct(hidden, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.residual else y


class EfficientNetV2Encoder(nn.Module):
    """Stable Cascade's image encoder: RGB in [0, 1] -> ``Z`` (B, 16, H/32, W/32).

    ``backbone`` is EfficientNet-V2-S's ``features`` (stem, six stages, 1x1 head to
    1280 channels; :data:`EFFNET_V2_S_STAGES`), ``mapper`` a 1x1 conv to ``channels``
    and a non-affine batch norm; the names are the hub checkpoint's. The input is
    normalised inside with ImageNet's mean and standard deviation (Stable Cascade's
    ``effnet_preprocess``). Stochastic depth is left out (it only acts in training
    and has no parameters). Call :meth:`embed` to apply the paper's resize first.

    Args:
        channels (int): channels of ``Z`` (16).
    """

    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        layers = [ConvBNAct(3, EFFNET_V2_S_STAGES[0][4], 3, 2)]
        for kind, expand, kernel, stride, cin, cout, n in EFFNET_V2_S_STAGES:
            block = FusedMBConv if kind == "fused" else MBConv
            layers.append(nn.Sequential(*[block(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout)
                                          for i in range(n)]))
        layers.append(ConvBNAct(EFFNET_V2_S_STAGES[-1][5], EFFNET_HEAD, 1))
        self.backbone = nn.Sequential(*layers)
        self.mapper = nn.Sequential(nn.Conv2d(EFFNET_HEAD, channels, 1, bias=False),
                                    nn.BatchNorm2d(channels, affine=False))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1], already at the encoder's size -> ``Z``."""
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.mapper(self.backbone(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] at the image's size -> ``Z`` (B, 16, *embedding_grid(H, W))."""
        return self(resize_for_encoder(x))


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (works on the meta device)."""
    return int(sum(p.numel() for p in module.parameters()))


def _looks_like_path(source: str) -> bool:
    return (os.path.isabs(source) or source.startswith(("./", "../", "~")) or os.path.exists(source)
            or source.count("/") > 1 or source.endswith((".safetensors", ".pt", ".pth", ".bin")))


def _read_state(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    blob = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]
    if not isinstance(blob, dict):
        raise ValueError(f"{path} holds a {type(blob).__name__}, not a state dict")
    return blob


def effnet_file(source: Optional[str] = None) -> Path:
    """The encoder's weights file for ``source``: a local ``.safetensors`` / ``.pt`` file,
    a folder holding :data:`EFFNET_FILE`, or a hub repo id (downloaded with
    ``hf_hub_download``; default ``$GENSEMCOM_SC_ENCODER``, else :data:`DEFAULT_REPO`'s
    folder in ``$GENSEMCOM_MODELS`` when there, else :data:`DEFAULT_REPO`).

    Raises:
        ModelNotAvailable: a missing path, or a hub file not available (offline, no network).
    """
    source = locate(str(source)) if source else locate(DEFAULT_REPO, ENV_ENCODER)
    if _looks_like_path(source):
        p = Path(os.path.expanduser(source))
        if p.is_dir():
            p = p / EFFNET_FILE
        if not p.is_file():
            raise ModelNotAvailable(f"Stable Cascade encoder weights {str(p)!r} not found: give a .safetensors or "
                                    f".pt state dict, a folder with {EFFNET_FILE}, or a hub repo id")
        return p
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, EFFNET_FILE, local_files_only=hub_offline()))
    except Exception as e:  # noqa: BLE001 - any hub failure means "not available"
        raise ModelNotAvailable(f"cannot get {EFFNET_FILE} from the hub repo {source!r} "
                                f"({'offline' if hub_offline() else 'download failed'}): download it once with "
                                f"network access into the Hugging Face cache, pass a local file, or fetch it with "
                                f"`gensemcom models fetch --system sc_sic --to DIR` and set GENSEMCOM_MODELS=DIR. "
                                f"({type(e).__name__}: {str(e)[:200]})") from e


def check_state_keys(model: nn.Module, state: Dict[str, torch.Tensor], show: int = 5) -> None:
    """Every key of ``state`` must be one of ``model``'s and every one of ``model``'s be in
    ``state`` with the same shape (BatchNorm's ``num_batches_tracked`` counters may be
    absent: they are not weights).

    Raises:
        ValueError: listing the first ``show`` missing, unexpected and mis-shaped keys.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in state
              if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
            if keys:
                more = f" (+{len(keys) - show} more)" if len(keys) > show else ""
                parts.append(f"{len(keys)} {what}: {', '.join(keys[:show])}{more}")
        raise ValueError(f"{type(model).__name__} state dict does not map key for key: " + "; ".join(parts))


def load_effnet_encoder(source: Optional[str] = None, device: Optional[str] = None) -> EfficientNetV2Encoder:
    """Stable Cascade's encoder with its weights, loaded strictly (every key mapped).

    Args:
        source (str | None): a ``.safetensors`` / ``.pt`` state dict (a ``{"state_dict": ...}``
            blob too), a folder with :data:`EFFNET_FILE`, or a hub repo id (default
            ``$GENSEMCOM_SC_ENCODER`` or :data:`DEFAULT_REPO`).
        device (str | None): torch device (default CPU).

    Returns:
        EfficientNetV2Encoder: float32, eval mode, no gradients.

    Raises:
        ModelNotAvailable: the weights cannot be found or downloaded.
        ValueError: a key missing, unexpected or of another shape (the first few listed).
    """
    path = effnet_file(source)
    state = _read_state(path)
    model = EfficientNetV2Encoder()
    check_state_keys(model, state)
    own = model.state_dict()
    full = {k: state[k] if k in state else own[k] for k in own}  # absent BN counters keep their zeros
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in full.items()}, strict=True)
    return model.to(device or "cpu").eval().requires_grad_(False)


# ---------------------------------------------------------------- the decoder pipeline
def _paella_class():
    try:
        from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel
    except ImportError:  # diffusers before the move to ``deprecated``
        from diffusers.pipelines.wuerstchen import PaellaVQModel
    return PaellaVQModel


@contextlib.contextmanager
def _quiet_diffusers():
    """Silence diffusers' warnings (the decoder pipeline's deprecation notice) for a while."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


def _is_unet_folder(p: Path) -> bool:
    cfg = p / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("_class_name") == "StableCascadeUNet"
    except (OSError, ValueError):
        return False


def decoder_sources(source: Optional[str] = None, lite: bool = True,
                    base: Optional[str] = None) -> Dict[str, Tuple[str, Optional[str]]]:
    """Where each part of the decoder pipeline comes from: ``{part: (repo or folder, subfolder)}``.

    A hub id gives every part from that repo, Stage B from ``decoder_lite`` (``lite``)
    or ``decoder``, as diffusers documents for the lite model. A local folder gives the
    parts it holds (``decoder_lite`` when ``lite`` and present, else ``decoder``; a
    folder that is itself a ``StableCascadeUNet`` is Stage B) and the others from
    ``base`` (a fine-tuned Stage B folder needs nothing else). ``source`` defaults to
    ``$GENSEMCOM_SC_DECODER``, else :data:`DEFAULT_REPO`'s folder in
    ``$GENSEMCOM_MODELS`` when there, else :data:`DEFAULT_REPO`; ``base`` to that
    folder or :data:`DEFAULT_REPO` (:func:`gensemcom.models.local.locate`).

    Raises:
        ModelNotAvailable: a local path that does not exist or holds no Stage B.
    """
    source = locate(str(source)) if source else locate(DEFAULT_REPO, ENV_DECODER)
    base = locate(str(base) if base else DEFAULT_REPO)
    parts = ("vqgan", "text_encoder", "tokenizer", "scheduler")
    if not _looks_like_path(source):
        out = {p: (source, p) for p in parts}
        out["decoder"] = (source, "decoder_lite" if lite else "decoder")
        out["model_index"] = (source, None)
        return out
    root = Path(os.path.expanduser(source))
    if not root.is_dir():
        raise ModelNotAvailable(f"Stable Cascade decoder folder {source!r} does not exist: give a folder saved with "
                                f"save_pretrained (or a fine-tuned decoder folder), or a hub repo id")
    if _is_unet_folder(root):
        dec = (str(root), None)
    else:
        names = (["decoder_lite"] if lite else []) + ["decoder"]
        sub = next((n for n in names if _is_unet_folder(root / n)), None)
        if sub is None:
            raise ModelNotAvailable(f"{source!r} holds no Stable Cascade Stage B (no decoder/ or decoder_lite/ "
                                    f"folder with a StableCascadeUNet config.json)")
        dec = (str(root), sub)
    out = {p: ((str(root), p) if (root / p).is_dir() else (base, p)) for p in parts}
    out["decoder"] = dec
    out["model_index"] = (str(root), None) if (root / "model_index.json").is_file() else (base, None)
    return out


def _latent_dim_scale(where: Tuple[str, Optional[str]]) -> float:
    src = where[0]
    try:
        if _looks_like_path(src):
            path = Path(src) / "model_index.json"
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(src, "model_index.json", local_files_only=hub_offline()))
        return float(json.loads(path.read_text()).get("latent_dim_scale", LATENT_DIM_SCALE))
    except Exception:  # noqa: BLE001 - the pipeline's default when the index cannot be read
        return LATENT_DIM_SCALE


def load_decoder_pipeline(source: Optional[str] = None, lite: bool = True, dtype=None, device: Optional[str] = None,
                          base: Optional[str] = None, cache: bool = True):
    """Stable Cascade's decoder pipeline (Stage B + Stage A + the CLIP text encoder).

    Args:
        source (str | None): hub repo id or local folder (default
            ``$GENSEMCOM_SC_DECODER`` or :data:`DEFAULT_REPO`); see :func:`decoder_sources`.
        lite (bool): Stage B lite (``decoder_lite``, 700M) instead of the 1.5B ``decoder``.
        dtype: torch dtype or its name (default float16 on CUDA, float32 on CPU).
        device (str | None): torch device (default CUDA when available).
        base (str | None): where a local folder's missing parts come from (default
            :data:`DEFAULT_REPO`'s folder in ``$GENSEMCOM_MODELS`` when there, else
            :data:`DEFAULT_REPO`).
        cache (bool): reuse a pipeline already loaded in this process.

    Returns:
        StableCascadeDecoderPipeline: on ``device``, eval mode, weights frozen, progress
        bar off; ``pipe.gensemcom_sources`` says where each part came from.

    Raises:
        ModelNotAvailable: a part that cannot be found or downloaded.
    """
    device = pick_device(device)
    dt = pick_dtype(device, dtype)
    where = decoder_sources(source, lite, base)
    key = ("sc-decoder", json.dumps(where, sort_keys=True), device, str(dt))
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
        pipe = _build_pipeline(where, dt).to(device)
        if cache:
            _CACHE[key] = pipe
        return pipe


def _build_pipeline(where: Dict[str, Tuple[str, Optional[str]]], dt):
    from diffusers import DDPMWuerstchenScheduler, StableCascadeDecoderPipeline, StableCascadeUNet
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    from .hf import _diffusers_dtype_kw

    local = hub_offline()

    def sub(part):
        src, folder = where[part]
        return {"pretrained_model_name_or_path": src, "subfolder": folder, "local_files_only": local}

    try:
        with _quiet_diffusers():
            decoder = StableCascadeUNet.from_pretrained(**sub("decoder"), **{_diffusers_dtype_kw(): dt})
            vqgan = _paella_class().from_pretrained(**sub("vqgan"), **{_diffusers_dtype_kw(): dt})
            scheduler = DDPMWuerstchenScheduler.from_pretrained(**sub("scheduler"))
            text_encoder = CLIPTextModelWithProjection.from_pretrained(**sub("text_encoder"), dtype=dt)
            tokenizer = CLIPTokenizer.from_pretrained(**sub("tokenizer"))
            pipe = StableCascadeDecoderPipeline(decoder=decoder, tokenizer=tokenizer, text_encoder=text_encoder,
                                                scheduler=scheduler, vqgan=vqgan,
                                                latent_dim_scale=_latent_dim_scale(where["model_index"]))
    except (OSError, ValueError, EnvironmentError) as e:
        srcs = sorted({s for s, _ in where.values()})
        why = "offline (HF_HUB_OFFLINE is set) and not in the Hugging Face cache" if local else \
            "not found locally and the hub could not provide it"
        raise ModelNotAvailable(f"cannot load the Stable Cascade decoder from {', '.join(srcs)}: {why}. Download "
                                f"{DEFAULT_REPO} once with network access, give a local folder saved with "
                                f"save_pretrained, or fetch it with `gensemcom models fetch --system sc_sic --to DIR` "
                                f"and set GENSEMCOM_MODELS=DIR. ({type(e).__name__}: {str(e)[:300]})") from e
    for m in (pipe.decoder, pipe.vqgan, pipe.text_encoder):
        m.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    pipe.gensemcom_sources = {k: (v[0] if v[1] is None else f"{v[0]}:{v[1]}") for k, v in where.items()}
    return pipe


def clear_cache() -> None:
    """Forget the pipelines loaded in this process."""
    with _LOCK:
        _CACHE.clear()


def empty_prompt_embeddings(pipe, batch: int = 1):
    """The CLIP text encoding of the empty prompt (Stage B's text condition; SC-SIC uses
    no text): ``(hidden states (B, 77, D), pooled (B, 1, D))`` in the decoder's dtype,
    computed once per pipeline."""
    cached = getattr(pipe, "_gensemcom_empty", None)
    if cached is None:
        device = pipe.decoder.device
        with torch.no_grad():
            hidden, pooled, _, _ = pipe.encode_prompt(device=pipe.text_encoder.device, batch_size=1,
                                                      num_images_per_prompt=1, do_classifier_free_guidance=False,
                                                      prompt=[""])
        cached = (hidden.to(device, pipe.decoder.dtype), pooled.to(device, pipe.decoder.dtype))
        pipe._gensemcom_empty = cached
    hidden, pooled = cached
    return hidden.expand(batch, *hidden.shape[1:]), pooled.expand(batch, *pooled.shape[1:])


def pipeline_grid(grid: Sequence[int], scale: float, patch: int) -> Tuple[int, int]:
    """The embedding grid the pipeline is run at: ``grid`` itself when Stage B's latent
    sides (``int(g * scale)``) divide by its patch size, else the next larger grid that
    gives such sides (512 and 1024 images need no change: 12 -> 128, 24 -> 256)."""
    out = []
    for g in grid:
        g = max(1, int(g))
        while int(g * scale) % patch:
            g += 1
        out.append(g)
    return out[0], out[1]


def generate(pipe, image_embeddings, size: Optional[Tuple[int, int]] = None, steps: int = 10,
             guidance: float = 0.0, seed: int = 0) -> np.ndarray:
    """Stage B + Stage A from received embeddings: the pipeline with an empty prompt.

    The starting noise and the sampler's noise come from a CPU generator seeded with
    ``seed`` (the same images on every device). An embedding whose grid would give an
    odd Stage B latent is resized (bilinear, as Stage B itself reads it) to
    :func:`pipeline_grid`'s grid first.

    Args:
        pipe: StableCascadeDecoderPipeline (:func:`load_decoder_pipeline`).
        image_embeddings: ``Z`` (B, 16, gh, gw) or (16, gh, gw), torch or numpy.
        size (tuple[int, int] | None): (H, W) of the images returned (default: the
            pipeline's own, 4 x the latent).
        steps (int): Stage B sampling steps (the pipeline's default 10).
        guidance (float): classifier-free guidance against a zero embedding (> 1 to use it).
        seed (int): noise seed.

    Returns:
        np.ndarray: (B, H, W, 3) uint8.
    """
    z = torch.as_tensor(np.asarray(image_embeddings, np.float32) if not torch.is_tensor(image_embeddings)
                        else image_embeddings).float()
    if z.ndim == 3:
        z = z.unsqueeze(0)
    b = z.shape[0]
    scale = float(pipe.config.latent_dim_scale)
    gh, gw = pipeline_grid(z.shape[-2:], scale, int(pipe.decoder.config.patch_size))
    if (gh, gw) != tuple(z.shape[-2:]):
        z = F.interpolate(z, size=(gh, gw), mode="bilinear", align_corners=True)
    device, dtype = pipe.decoder.device, pipe.decoder.dtype
    gen = torch.Generator("cpu").manual_seed(int(seed))
    latents = torch.randn((b, int(pipe.decoder.config.in_channels), int(gh * scale), int(gw * scale)), generator=gen)
    hidden, pooled = empty_prompt_embeddings(pipe, b)
    kw = dict(prompt_embeds=hidden, prompt_embeds_pooled=pooled)
    if guidance > 1:
        kw.update(negative_prompt_embeds=hidden, negative_prompt_embeds_pooled=pooled)
    with torch.no_grad():
        out = pipe(image_embeddings=z.to(device, dtype), num_inference_steps=int(steps), guidance_scale=float(guidance),
                   generator=gen, latents=latents.to(device, dtype), output_type="np", **kw).images
    imgs = (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if size is not None and tuple(size) != imgs.shape[1:3]:
        from PIL import Image

        imgs = np.stack([np.asarray(Image.fromarray(i).resize((int(size[1]), int(size[0])), Image.BICUBIC))
                         for i in imgs])
    return np.ascontiguousarray(imgs)


# ---------------------------------------------------------------- noise-robust fine-tuning
def awgn(z: torch.Tensor, snr_db: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``Z`` + AWGN at a per-sample SNR: the noise variance per real is
    ``mean(Z^2) / 10^(SNR/10)`` (``Z``'s reals paired into unit-power complex symbols
    over an AWGN channel of that Es/N0, what :class:`gensemcom.link.FrameLink` does on
    AWGN).

    Args:
        z (torch.Tensor): (B, ...) embeddings.
        snr_db (torch.Tensor): (B,) SNRs in dB.
        generator (torch.Generator | None): CPU generator of the noise.
    """
    b = z.shape[0]
    p = z.detach().float().pow(2).reshape(b, -1).mean(1)
    sigma = torch.sqrt(p / torch.pow(10.0, snr_db.float().to(p.device) / 10.0)).view(b, *([1] * (z.ndim - 1)))
    noise = torch.randn(z.shape, generator=generator).to(z.device, torch.float32)
    return (z.float() + sigma * noise).to(z.dtype)


def stage_a_latents(vqgan, x: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> Stage B's latents (B, 4, H/4, W/4): Stage A's
    encoder output divided by its ``scale_factor`` (the pipeline multiplies it back
    before decoding)."""
    return vqgan.encode(x.to(vqgan.device, vqgan.dtype)).latents / float(vqgan.config.scale_factor)


def noise_robust_loss(decoder, scheduler, latents: torch.Tensor, z: torch.Tensor, clip_pooled: torch.Tensor,
                      snr_range: Tuple[float, float] = PAPER_FINETUNE["snr_range"],
                      snr_db: Optional[torch.Tensor] = None,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The paper's Eq. 4 on one batch: ``|| eps - eps_theta(X_t, t, Z + n) ||^2``.

    ``Z`` goes through :func:`awgn` at an SNR drawn per sample uniformly from
    ``snr_range`` (or ``snr_db``); ``t`` is uniform in [0, 1) per sample; the latents
    are noised with ``scheduler.add_noise`` (DDPMWuerstchenScheduler's cosine
    schedule, the one the pipeline samples with); Stage B predicts the noise from the
    noised latents, ``t`` (its ``timestep_ratio``), the noisy ``Z`` (``effnet``) and
    the pooled text condition.

    Args:
        decoder: StableCascadeUNet (Stage B).
        scheduler: DDPMWuerstchenScheduler.
        latents (torch.Tensor): Stage A latents (B, 4, h, w) (:func:`stage_a_latents`).
        z (torch.Tensor): clean embeddings (B, 16, gh, gw).
        clip_pooled (torch.Tensor): pooled text condition (B, 1, D) (the empty prompt's).
        snr_range (tuple[float, float]): SNR range in dB.
        snr_db (torch.Tensor | None): fixed per-sample SNRs instead.
        generator (torch.Generator | None): CPU generator of SNRs, ``t`` and noises.

    Returns:
        torch.Tensor: the scalar mean squared error (float32).
    """
    b = latents.shape[0]
    device = latents.device
    if snr_db is None:
        snr_db = torch.empty(b).uniform_(float(snr_range[0]), float(snr_range[1]), generator=generator)
    z_hat = awgn(z, snr_db, generator).to(device, latents.dtype)
    t = torch.rand(b, generator=generator).to(device)
    eps = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
    noised = scheduler.add_noise(latents, eps, t)
    pred = decoder(sample=noised, timestep_ratio=t.to(latents.dtype), clip_text_pooled=clip_pooled.to(device),
                   effnet=z_hat, return_dict=False)[0]
    return F.mse_loss(pred.float(), eps.float())


class FineTuner:
    """Stage B's noise-robust fine-tuning (the paper's Section 4.1), one step at a time.

    The encoder and Stage A are frozen (their outputs computed without gradients);
    Stage B trains with AdamW; the text condition is the empty prompt's pooled CLIP
    embedding (SC-SIC uses no text), computed once.

    Args:
        pipe: StableCascadeDecoderPipeline whose ``decoder`` is trained (float32 weights).
        encoder (EfficientNetV2Encoder): the frozen image encoder.
        lr (float): AdamW learning rate (the paper's 1e-4).
        snr_range (tuple[float, float]): training SNRs in dB (the paper's 1-20).
        autocast (torch.dtype | None): autocast dtype for Stage B's forward (bfloat16 on CUDA).
        clip_grad (float | None): gradient norm clipping (Stable Cascade's 1.0).
        grad_checkpointing (bool): trade compute for memory in Stage B.
    """

    def __init__(self, pipe, encoder: EfficientNetV2Encoder, lr: float = PAPER_FINETUNE["lr"],
                 snr_range: Tuple[float, float] = PAPER_FINETUNE["snr_range"], autocast=None,
                 clip_grad: Optional[float] = 1.0, grad_checkpointing: bool = False):
        self.decoder, self.vqgan, self.scheduler = pipe.decoder, pipe.vqgan, pipe.scheduler
        self.device = self.decoder.device
        self.encoder = encoder.to(self.device).eval().requires_grad_(False)
        self.vqgan.eval().requires_grad_(False)
        _, pooled = empty_prompt_embeddings(pipe, 1)
        self.pooled = pooled.detach().float().to(self.device)
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))
        self.autocast = autocast
        self.clip_grad = clip_grad
        self.decoder.requires_grad_(True).train()
        if grad_checkpointing:
            self.decoder.enable_gradient_checkpointing()
        self.optimizer = torch.optim.AdamW([p for p in self.decoder.parameters() if p.requires_grad], lr=float(lr))

    @torch.no_grad()
    def prepare(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> (Stage A latents, clean ``Z``), float32."""
        x = x.to(self.device, torch.float32)
        z = self.encoder.embed(x)
        lat = stage_a_latents(self.vqgan, x).float()
        return lat, z

    def step(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> float:
        """One optimisation step on a batch of images; returns the loss."""
        lat, z = self.prepare(x)
        ctx = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with ctx:
            loss = noise_robust_loss(self.decoder, self.scheduler, lat, z,
                                     self.pooled.expand(lat.shape[0], *self.pooled.shape[1:]), self.snr_range,
                                     generator=generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), float(self.clip_grad))
        self.optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError("the fine-tuning loss is not finite")
        return value


# ---------------------------------------------------------------- published and tiny models
def build_published(name: str, device: Union[str, torch.device] = "meta", dtype=None) -> nn.Module:
    """A published architecture with random weights (``"decoder"``, ``"decoder_lite"``,
    ``"vqgan"``, ``"effnet"``); on the meta device (default) nothing is allocated.

    Raises:
        KeyError: an unknown name.
    """
    from diffusers import StableCascadeUNet

    if name not in PUBLISHED_CONFIGS and name != "effnet":
        raise KeyError(f"unknown published model {name!r}: {', '.join(list(PUBLISHED_CONFIGS) + ['effnet'])}")
    with torch.device(device):
        if name == "effnet":
            m = EfficientNetV2Encoder()
        elif name == "vqgan":
            m = _paella_class()(**PUBLISHED_CONFIGS[name])
        else:
            m = StableCascadeUNet(**PUBLISHED_CONFIGS[name])
    if dtype is not None:
        m = m.to(dtype)
    return m.eval()


#: the tiny Stage B (a decoder-shaped ``StableCascadeUNet``: 4 -> 4 channels, patch 2, Z of 16 channels)
TINY_DECODER = dict(
    in_channels=4, out_channels=4, timestep_ratio_embedding_dim=16, patch_size=2, conditioning_dim=32,
    block_out_channels=[16, 32], num_attention_heads=[0, 2], down_num_layers_per_block=[1, 1],
    up_num_layers_per_block=[1, 1], down_blocks_repeat_mappers=[1, 1], up_blocks_repeat_mappers=[1, 1],
    block_types_per_layer=[list(_SC_LEVELS[0]), list(_SC_LEVELS[2])], clip_text_pooled_in_channels=32, clip_seq=4,
    effnet_in_channels=CHANNELS, pixel_mapper_in_channels=3, kernel_size=3, dropout=[0.0, 0.0], self_attn=True,
    timestep_conditioning_type=["sca"])
#: the tiny Stage A (the published layout, narrow: x4 down/up-sampling, 4 latent channels)
TINY_VQGAN = dict(levels=2, bottleneck_blocks=1, embed_dim=16, latent_channels=4, num_vq_embeddings=16)
TINY_SEED = 20251207
TINY_VERSION = 1


def tiny_components(folder) -> Path:
    """Write a tiny random ``StableCascadeDecoderPipeline`` to ``folder`` with ``save_pretrained``.

    Stage B is :data:`TINY_DECODER`, Stage A :data:`TINY_VQGAN`, the text encoder a
    2-layer ``CLIPTextModelWithProjection`` of width 32 with the generated tokenizer of
    :mod:`gensemcom.models.tiny_hf`, the scheduler ``DDPMWuerstchenScheduler`` and the
    latent scale the published 10.67 (so a 128 x 128 image -> Z 3 x 3 -> latents 32 x 32
    -> 128 x 128). :func:`load_decoder_pipeline` loads it.

    Returns:
        Path: ``folder``.
    """
    import shutil

    from diffusers import DDPMWuerstchenScheduler, StableCascadeDecoderPipeline, StableCascadeUNet
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    from .tiny_hf import tiny_clip_text_config, write_clip_tokenizer_files

    out = Path(folder)
    tokdir = write_clip_tokenizer_files(out / "_tokenizer_src")
    tok = CLIPTokenizer.from_pretrained(tokdir, model_max_length=77)
    state = torch.random.get_rng_state()
    torch.manual_seed(TINY_SEED)
    try:
        decoder = StableCascadeUNet(**TINY_DECODER)
        vqgan = _paella_class()(**TINY_VQGAN)
        text_encoder = CLIPTextModelWithProjection(tiny_clip_text_config(tok)).eval()
    finally:
        torch.random.set_rng_state(state)
    with _quiet_diffusers():
        pipe = StableCascadeDecoderPipeline(decoder=decoder.eval(), tokenizer=tok, text_encoder=text_encoder,
                                            scheduler=DDPMWuerstchenScheduler(), vqgan=vqgan.eval(),
                                            latent_dim_scale=LATENT_DIM_SCALE)
        pipe.save_pretrained(out)
    shutil.rmtree(tokdir, ignore_errors=True)
    return out


def tiny_dir(root: Optional[str] = None) -> Path:
    """Directory of the tiny pipeline (built on first use, then cached like
    :mod:`gensemcom.models.tiny_hf`'s models)."""
    from .tiny_hf import _build_once

    return _build_once(f"stable-cascade-decoder-v{TINY_VERSION}", tiny_components, root)
