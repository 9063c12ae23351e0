"""Loaders and small helpers for the Hugging Face models of the generative systems.

* :func:`load_blip`: BLIP image captioning (``BlipForConditionalGeneration`` +
  ``BlipProcessor``); default :data:`DEFAULT_BLIP`, overridden by ``$GENSEMCOM_BLIP``
  or the ``model_id`` argument (a hub id or a local directory).
* :func:`load_sd`: Stable Diffusion (``StableDiffusionPipeline.from_pretrained``);
  default :data:`DEFAULT_SD` (SD 1.5), overridden by ``$GENSEMCOM_SD`` or
  ``model_id``.

Without an argument or environment variable, a copy in the local models folder
``$GENSEMCOM_MODELS/<org>/<name>`` (written by ``gensemcom models fetch --to DIR``) is
loaded before the Hugging Face cache (:func:`gensemcom.models.local.locate`).

Device: CUDA when available, else CPU; dtype float16 on CUDA and float32 on CPU
unless given. When ``HF_HUB_OFFLINE`` is set (1/true/yes/on) the loaders pass
``local_files_only=True`` so nothing touches the network; a model that is neither a
local directory nor in the Hugging Face cache then raises :class:`ModelNotAvailable`
naming the id and how to provide it. Loaded models are cached per process (keyed by
id, device and dtype), so systems sharing a model share its memory.

Helpers used by :mod:`gensemcom.systems.tisc` and :mod:`gensemcom.systems.prompt_only`:
:func:`caption`, :func:`prompt_ids`,
:func:`encode_ids`, :func:`generate`.

The ``tiny`` profile points these loaders at the random models of
:mod:`gensemcom.models.tiny_hf` (saved with ``save_pretrained``), so tests run this
very code.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_BLIP = "Salesforce/blip-image-captioning-base"
DEFAULT_SD = "stable-diffusion-v1-5/stable-diffusion-v1-5"
ENV_BLIP = "GENSEMCOM_BLIP"
ENV_SD = "GENSEMCOM_SD"

_CACHE: Dict[tuple, object] = {}
_LOCK = threading.Lock()
#: held while a shared pipeline is used or modified (placeholder rows, attention
#: processors, embedding hooks): the systems share cached pipelines
PIPE_LOCK = threading.RLock()


class ModelNotAvailable(RuntimeError):
    """A model that cannot be loaded (missing path, not downloaded while offline)."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_id(kind: str, model_id: Optional[str] = None) -> str:
    """The model id or path to load: ``model_id``, else the env var, else the default; a
    hub id is replaced by its folder in ``$GENSEMCOM_MODELS`` when there (see
    :func:`gensemcom.models.local.locate`).

    Args:
        kind (str): ``"blip"`` or ``"sd"``.
        model_id (str | None): explicit id or local path.
    """
    if kind not in ("blip", "sd"):
        raise ValueError(f"unknown model kind {kind!r}: use 'blip' or 'sd'")
    from .local import locate

    env, default = (ENV_BLIP, DEFAULT_BLIP) if kind == "blip" else (ENV_SD, DEFAULT_SD)
    return locate(str(model_id)) if model_id else locate(default, env)


def pick_device(device: Optional[str] = None) -> str:
    """``device``, else ``"cuda"`` when available, else ``"cpu"``."""
    import torch

    if device:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype=None):
    """torch dtype: ``dtype`` (a torch dtype or a name such as "float16"), else float16
    on CUDA and float32 elsewhere."""
    import torch

    if dtype is not None:
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return torch.float16 if str(device).startswith("cuda") else torch.float32


def _looks_like_path(model_id: str) -> bool:
    return (os.path.isabs(model_id) or model_id.startswith(("./", "../", "~")) or os.path.exists(model_id)
            or model_id.count("/") > 1)


def _how_to(kind: str) -> str:
    env = ENV_BLIP if kind == "blip" else ENV_SD
    flag = "--blip" if kind == "blip" else "--sd"
    return (f"point {env} (gensemcom link {flag} PATH, or the system's model argument) to a local directory "
            f"saved with save_pretrained, or "
            f"download it once with network access (unset HF_HUB_OFFLINE; e.g. `hf download <id>`) into the "
            f"Hugging Face cache, or fetch it with `gensemcom models fetch --to DIR` on a connected machine and set "
            f"GENSEMCOM_MODELS=DIR (see `gensemcom models list`); the 'tiny' profile needs no download")


def _check_source(kind: str, model_id: str) -> None:
    if _looks_like_path(model_id):
        p = Path(os.path.expanduser(model_id))
        if not p.is_dir():
            raise ModelNotAvailable(f"{kind.upper()} model path {model_id!r} does not exist or is not a "
                                    f"directory: {_how_to(kind)}")


def _load(kind: str, model_id: str, fn):
    """Run ``fn(local_files_only)`` and turn loading errors into :class:`ModelNotAvailable`."""
    _check_source(kind, model_id)
    offline = hub_offline()
    try:
        return fn(offline)
    except ModelNotAvailable:
        raise
    except (OSError, ValueError, EnvironmentError) as e:
        if _looks_like_path(model_id):
            where = "the directory is not a complete saved model"
        elif offline:
            where = "offline (HF_HUB_OFFLINE is set) and it is not in the Hugging Face cache"
        else:
            where = ("not in the Hugging Face cache and the hub could not provide it (no network reachable, "
                     "or no such model)")
        raise ModelNotAvailable(f"cannot load {kind.upper()} model {model_id!r}: {where}. To provide it: "
                                f"{_how_to(kind)}. ({type(e).__name__}: {str(e)[:300]})") from e


def load_blip(model_id: Optional[str] = None, device: Optional[str] = None, dtype=None, cache: bool = True):
    """BLIP captioning model and processor.

    Args:
        model_id (str | None): hub id or local directory (default ``$GENSEMCOM_BLIP``
            or :data:`DEFAULT_BLIP`).
        device (str | None): torch device (default CUDA when available).
        dtype: torch dtype (default float16 on CUDA, float32 on CPU).
        cache (bool): reuse a model already loaded in this process.

    Returns:
        tuple: (``BlipForConditionalGeneration`` in eval mode on ``device``,
        ``BlipProcessor``).

    Raises:
        ModelNotAvailable: missing path, or not downloaded while offline.
    """
    model_id = resolve_id("blip", model_id)
    device = pick_device(device)
    dt = pick_dtype(device, dtype)
    key = ("blip", model_id, device, str(dt))
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]

        def fn(local_only):
            from transformers import BlipForConditionalGeneration, BlipProcessor

            proc = BlipProcessor.from_pretrained(model_id, local_files_only=local_only)
            model = BlipForConditionalGeneration.from_pretrained(model_id, local_files_only=local_only, dtype=dt)
            return model.to(device).eval(), proc

        out = _load("blip", model_id, fn)
        for p in out[0].parameters():
            p.requires_grad_(False)
        if cache:
            _CACHE[key] = out
        return out


def load_sd(model_id: Optional[str] = None, device: Optional[str] = None, dtype=None, cache: bool = True,
            safety_checker: bool = False):
    """Stable Diffusion pipeline (``StableDiffusionPipeline.from_pretrained``).

    Args:
        model_id (str | None): hub id or local directory (default ``$GENSEMCOM_SD`` or
            :data:`DEFAULT_SD`, Stable Diffusion 1.5).
        device (str | None): torch device (default CUDA when available).
        dtype: torch dtype (default float16 on CUDA, float32 on CPU).
        cache (bool): reuse a pipeline already loaded in this process.
        safety_checker (bool): load the pipeline's safety checker (off by default:
            reconstructions of transmitted images are compared with the originals,
            and a blacked-out image would be a spurious failure).

    Returns:
        StableDiffusionPipeline on ``device``, all weights frozen
        (``requires_grad=False``), progress bar disabled.

    Raises:
        ModelNotAvailable: missing path, or not downloaded while offline.
    """
    model_id = resolve_id("sd", model_id)
    device = pick_device(device)
    dt = pick_dtype(device, dtype)
    key = ("sd", model_id, device, str(dt), bool(safety_checker))
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]

        def fn(local_only):
            from diffusers import StableDiffusionPipeline

            kw = {} if safety_checker else {"safety_checker": None, "requires_safety_checker": False}
            kw[_diffusers_dtype_kw()] = dt
            return StableDiffusionPipeline.from_pretrained(model_id, local_files_only=local_only, **kw)

        pipe = _load("sd", model_id, fn).to(device)
        for m in (pipe.unet, pipe.vae, pipe.text_encoder):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        pipe.set_progress_bar_config(disable=True)
        if cache:
            _CACHE[key] = pipe
        return pipe


def _diffusers_dtype_kw() -> str:
    """``dtype`` for diffusers that take it (0.36+ deprecates ``torch_dtype``), else ``torch_dtype``."""
    try:
        import diffusers.utils.deprecation_utils as du
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(du, "_resolve_dtype") else "torch_dtype"


def clear_cache() -> None:
    """Forget the models loaded in this process."""
    with _LOCK:
        _CACHE.clear()


# ---------------------------------------------------------------- helpers
def caption(model, processor, image: np.ndarray, max_new_tokens: int = 30, num_beams: int = 3) -> str:
    """BLIP caption of an (H, W, 3) uint8 image (greedy or beam search, deterministic)."""
    import torch

    inputs = processor(images=image, return_tensors="pt")
    pv = inputs["pixel_values"].to(model.device, next(model.parameters()).dtype)
    with torch.no_grad():
        out = model.generate(pixel_values=pv, max_new_tokens=int(max_new_tokens), num_beams=int(num_beams),
                             do_sample=False)
    return processor.decode(out[0], skip_special_tokens=True).strip()


def prompt_ids(tokenizer, text: str) -> List[int]:
    """Token IDs of ``text`` without BOS/EOS/padding, truncated to fit the encoder."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return list(ids)[: tokenizer.model_max_length - 2]


def encode_ids(pipe, ids: Sequence[int]):
    """Text-encoder hidden states for token ``ids`` (BOS + ids + EOS, padded to the
    tokenizer's max length): the ``prompt_embeds`` of ``pipe``."""
    import torch

    tok = pipe.tokenizer
    n = tok.model_max_length
    body = [int(i) for i in ids][: n - 2]
    seq = [tok.bos_token_id] + body + [tok.eos_token_id]
    seq += [tok.pad_token_id] * (n - len(seq))
    vocab = pipe.text_encoder.get_input_embeddings().num_embeddings
    if max(seq) >= vocab:
        raise ValueError(f"token id {max(seq)} outside the text encoder's vocabulary of {vocab}")
    x = torch.tensor([seq], device=pipe.text_encoder.device)
    with torch.no_grad():
        return pipe.text_encoder(x)[0]


def generate(pipe, seed: int, height: int, width: int, steps: int, guidance: float, prompt: Optional[str] = None,
             prompt_embeds=None, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Seeded text-to-image: a prompt string or ``prompt_embeds`` -> (H, W, 3) uint8.

    The image is generated at ``height`` x ``width`` and resized to ``size`` (H, W)
    when given (the original image's size, from the frame header).
    """
    import torch

    device = pipe.unet.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))  # same noise on every device
    latents = torch.randn((1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor,
                           width // pipe.vae_scale_factor), generator=gen)
    kw = {"prompt": prompt} if prompt_embeds is None else {"prompt_embeds": prompt_embeds}
    with torch.no_grad():
        out = pipe(height=height, width=width, num_inference_steps=int(steps), guidance_scale=float(guidance),
                   latents=latents.to(device, pipe.unet.dtype), output_type="np", **kw).images[0]
    img = (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if size is not None and tuple(size) != img.shape[:2]:
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((int(size[1]), int(size[0])), Image.BICUBIC))
    return np.ascontiguousarray(img)
