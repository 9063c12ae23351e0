"""Image quality metrics for the evaluation harness, behind one registry.

:func:`compute_metrics` scores one received image against its reference::

    compute_metrics(ref, out, ["psnr", "ssim", "ms-ssim"])
    -> {"psnr": 27.1, "ssim": 0.81, "ms-ssim": 0.95, "failed": False}

Pixel metrics (always available, computed with torchmetrics on uint8 RGB images,
``data_range`` 255, per image):

* ``psnr``: 10 log10(255^2 / MSE) over all pixels and channels. Identical images
  (MSE 0), and anything above :data:`PSNR_CAP_DB`, give **PSNR_CAP_DB = 100 dB**, a
  finite value so that means and JSON stay valid.
* ``ssim``: SSIM with an 11x11 Gaussian window (sigma 1.5), averaged over RGB.
* ``ms-ssim``: 5-scale MS-SSIM (the standard betas); needs both sides > 160 px,
  otherwise it is reported as a "not computed: ..." string.

Perceptual and semantic metrics the generative-semcom papers report -- ``lpips-vgg``,
``lpips-alex``, ``clip-i``, ``dino-i``, ``clip-score``, ``fid`` (set level, see
:func:`compute_set_metrics`), ``brisque`` (no reference) -- are computed only when their
*own* weights are present locally (nothing is downloaded; see :func:`weights_status`
for where they are looked for). Otherwise their value is the string
:data:`NOT_COMPUTED` = ``"not computed: weights unavailable"``; no other network is
ever substituted under the same name.

Failed images (the system returned None): **failure scored 0** -- ``psnr``, ``ssim``
and ``ms-ssim`` are 0.0 (the Stable Cascade semantic-communication paper's convention
for PSNR), ``failed`` is True, and the other metrics are ``"not computed: image
failed"``. The harness reports the failure rate next to these means, and PSNR over
the successful images only.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

#: PSNR reported for identical images (and the cap for any larger value), in dB.
PSNR_CAP_DB = 100.0
#: Value of a metric whose weights are not available locally.
NOT_COMPUTED = "not computed: weights unavailable"
#: Value of a non-PSNR/SSIM metric for a failed image.
NOT_COMPUTED_FAILED = "not computed: image failed"
#: Metrics scored 0 for a failed image.
ZERO_ON_FAILURE = ("psnr", "ssim", "ms-ssim")

MetricValue = Union[float, str]

_ALIASES = {"msssim": "ms-ssim", "ms_ssim": "ms-ssim", "lpips_vgg": "lpips-vgg", "lpips_alex": "lpips-alex",
            "clip_i": "clip-i", "dino_i": "dino-i", "clip_score": "clip-score", "clipscore": "clip-score"}


def canonical(name: str) -> str:
    """A metric name in registry form (lower case, ``msssim`` -> ``ms-ssim``)."""
    n = str(name).strip().lower()
    return _ALIASES.get(n, n)


# ----------------------------------------------------------------- tensors
def _to_tensor(x: np.ndarray, dtype=np.float64):
    """(H, W, 3) image -> (1, 3, H, W) tensor of ``dtype`` (values unchanged)."""
    import torch

    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"images must be (H, W, 3), got {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=dtype)).permute(2, 0, 1)[None]


def _check_pair(ref: np.ndarray, out: np.ndarray) -> None:
    if np.shape(ref) != np.shape(out):
        raise ValueError(f"reference {np.shape(ref)} and output {np.shape(out)} differ in shape")


# ------------------------------------------------------------ pixel metrics
def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR (dB) of uint8 RGB images with peak 255, capped at :data:`PSNR_CAP_DB`."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_pair(ref, out)
    v = float(peak_signal_noise_ratio(_to_tensor(out), _to_tensor(ref), data_range=255.0))
    return PSNR_CAP_DB if not math.isfinite(v) or v > PSNR_CAP_DB else v


def ssim(ref: np.ndarray, out: np.ndarray) -> float:
    """SSIM (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03), mean over RGB and pixels."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(ref, out)
    # float32 on [0, 1]: >10x faster than float64 on CPU, differs by ~1e-7
    return float(structural_similarity_index_measure(_to_tensor(out, np.float32) / 255.0,
                                                     _to_tensor(ref, np.float32) / 255.0, data_range=1.0))


MS_SSIM_MIN_SIDE = 161


def ms_ssim(ref: np.ndarray, out: np.ndarray) -> MetricValue:
    """5-scale MS-SSIM (data range 255); a "not computed" string for images < 161 px."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    _check_pair(ref, out)
    if min(np.shape(ref)[:2]) < MS_SSIM_MIN_SIDE:
        return f"not computed: MS-SSIM needs both sides >= {MS_SSIM_MIN_SIDE} px (5 scales, 11 px window)"
    return float(multiscale_structural_similarity_index_measure(_to_tensor(out, np.float32) / 255.0,
                                                                _to_tensor(ref, np.float32) / 255.0, data_range=1.0))


# -------------------------------------------------------- weights (offline)
#: the FID Inception weights torch-fidelity (torchmetrics' FID) loads from the torch hub checkpoints
FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
#: where each torch hub checkpoint the metrics use is published (``gensemcom models fetch --system eval``)
WEIGHT_URLS = {
    "vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alexnet-owt-7be5be79.pth": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    FID_WEIGHTS: "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + FID_WEIGHTS,
}
#: a torch hub folder inside ``$GENSEMCOM_MODELS`` (so ``TORCH_HOME=$GENSEMCOM_MODELS/torch`` also finds it)
MODELS_TORCH_HUB = ("torch", "hub")
_HUB_LOCK = threading.Lock()


def _torch_hub_checkpoints() -> List[Path]:
    """Where torchvision, torch-fidelity and piq look for checkpoints (``$TORCH_HOME``),
    then ``$GENSEMCOM_MODELS/torch/hub/checkpoints``."""
    from ..models.local import models_root

    dirs = []
    try:
        import torch

        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    except Exception:
        pass
    root = models_root()
    if root is not None:
        dirs.append(root.joinpath(*MODELS_TORCH_HUB, "checkpoints"))
    return dirs


@contextlib.contextmanager
def _torch_hub_for(path: Optional[str]):
    """While loading: point torch.hub at the hub folder holding checkpoint ``path``
    (``.../hub/checkpoints/file``) when it is not torch's own, so torchvision and
    torch-fidelity read the file found in ``$GENSEMCOM_MODELS`` instead of downloading."""
    import torch

    hub = Path(path).parent.parent if path else None
    if hub is None or Path(torch.hub.get_dir()) == hub:
        yield
        return
    with _HUB_LOCK:
        old = getattr(torch.hub, "_hub_dir", None)
        torch.hub.set_dir(str(hub))
        try:
            yield
        finally:
            torch.hub._hub_dir = old


def _find_file(names: Sequence[str]) -> Optional[Path]:
    for d in _torch_hub_checkpoints():
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def _hf_model_dir(env: str, local_name: str, repo_ids: Sequence[str]) -> Optional[Path]:
    """A local Hugging Face model folder: ``$env``, ``$GENSEMCOM_WEIGHTS/local_name``,
    ``$GENSEMCOM_MODELS/<org>/<name>`` of one of ``repo_ids``, or a snapshot in the HF
    cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, ~/.cache/huggingface/hub)."""
    from ..models.local import local_path

    cands = []
    if os.environ.get(env):
        cands.append(Path(os.environ[env]))
    if os.environ.get("GENSEMCOM_WEIGHTS"):
        cands.append(Path(os.environ["GENSEMCOM_WEIGHTS"]) / local_name)
    cands.extend(p for p in map(local_path, repo_ids) if p is not None)
    hubs = [os.environ.get("HF_HUB_CACHE"),
            os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None,
            os.path.expanduser("~/.cache/huggingface/hub")]
    for hub in filter(None, hubs):
        for rid in repo_ids:
            snap = Path(hub) / ("models--" + rid.replace("/", "--")) / "snapshots"
            if snap.is_dir():
                cands.extend(sorted(snap.iterdir()))
    for c in cands:
        if (c / "config.json").is_file() and (any(c.glob("*.safetensors")) or any(c.glob("*.bin"))):
            return c
    return None


def _importable(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


_LPIPS_BACKBONES = {"vgg": ("vgg16-397923af.pth",), "alex": ("alexnet-owt-7be5be79.pth",)}
_CLIP_IDS = ("openai/clip-vit-base-patch16", "openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14")
_DINO_IDS = ("facebook/dino-vits16", "facebook/dino-vitb16", "facebook/dinov2-base", "facebook/dinov2-small")


def _lpips_source(net: str) -> Optional[str]:
    if not (_importable("torchvision") and _importable("torchmetrics")):
        return None
    f = _find_file(_LPIPS_BACKBONES[net])
    return str(f) if f else None


def weights_status() -> Dict[str, str]:
    """Where each weight-dependent metric's weights were found, or why not.

    Looked for (never downloaded):

    * ``lpips-vgg`` / ``lpips-alex``: torchvision installed and the torchvision
      backbone checkpoint (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``) in
      ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``) or
      ``$GENSEMCOM_MODELS/torch/hub/checkpoints``; the LPIPS linear layers ship with
      torchmetrics.
    * ``clip-i`` / ``clip-score``: transformers installed and a CLIP model folder in
      ``$GENSEMCOM_CLIP_MODEL``, ``$GENSEMCOM_WEIGHTS/clip``, ``$GENSEMCOM_MODELS/<org>/<name>``
      or the HF cache (openai/clip-vit-base-patch16, -patch32, -large-patch14).
    * ``dino-i``: transformers and a DINO model folder in ``$GENSEMCOM_DINO_MODEL``,
      ``$GENSEMCOM_WEIGHTS/dino``, ``$GENSEMCOM_MODELS/<org>/<name>`` or the HF cache
      (facebook/dino-vits16, ...).
    * ``fid``: torch-fidelity installed and its Inception weights
      (:data:`FID_WEIGHTS`) in the torch hub checkpoints or
      ``$GENSEMCOM_MODELS/torch/hub/checkpoints``.
    * ``brisque``: the PyPI ``brisque`` package (it ships its libsvm model, so it
      works offline; needs OpenCV), else piq installed and ``brisque_svm_weights.pt``
      in the torch hub checkpoints.
    """
    out = {}
    for net in ("vgg", "alex"):
        s = _lpips_source(net)
        out[f"lpips-{net}"] = s or (NOT_COMPUTED + (" (torchvision not installed)" if not _importable("torchvision")
                                                   else f" (no {_LPIPS_BACKBONES[net][0]})"))
    clip = _hf_model_dir("GENSEMCOM_CLIP_MODEL", "clip", _CLIP_IDS) if _importable("transformers") else None
    dino = _hf_model_dir("GENSEMCOM_DINO_MODEL", "dino", _DINO_IDS) if _importable("transformers") else None
    for k in ("clip-i", "clip-score"):
        out[k] = str(clip) if clip else NOT_COMPUTED
    out["dino-i"] = str(dino) if dino else NOT_COMPUTED
    fid = _find_file((FID_WEIGHTS,)) if _importable("torch_fidelity") else None
    out["fid"] = str(fid) if fid else NOT_COMPUTED
    br = _brisque_model_file() or (_find_file(("brisque_svm_weights.pt",)) if _importable("piq") else None)
    out["brisque"] = str(br) if br else NOT_COMPUTED
    return out


def _available(name: str) -> Optional[str]:
    s = weights_status().get(name)
    return None if s is None or s.startswith(NOT_COMPUTED) else s


# ------------------------------------------------- weight-dependent metrics
@functools.lru_cache(maxsize=None)
def _lpips_model(net: str):
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    with _torch_hub_for(_lpips_source(net)):
        return LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True).eval()


def _lpips(net: str):
    def fn(ref, out, **_):
        import torch

        _check_pair(ref, out)
        with torch.no_grad():
            m = _lpips_model(net)
            return float(m(_to_tensor(out).float() / 255.0, _to_tensor(ref).float() / 255.0))

    return fn


@functools.lru_cache(maxsize=None)
def _hf_model(kind: str, path: str):
    import transformers

    if kind == "clip":
        return (transformers.CLIPModel.from_pretrained(path, local_files_only=True).eval(),
                transformers.CLIPProcessor.from_pretrained(path, local_files_only=True))
    return (transformers.AutoModel.from_pretrained(path, local_files_only=True).eval(),
            transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True))


def _clip_image_embed(img: np.ndarray):
    import torch

    model, proc = _hf_model("clip", _available("clip-i"))
    with torch.no_grad():
        e = model.get_image_features(**proc(images=[img], return_tensors="pt"))
    return torch.nn.functional.normalize(e, dim=-1)


def _clip_i(ref, out, **_):
    return float((_clip_image_embed(ref) * _clip_image_embed(out)).sum())


def _clip_score(ref, out, caption: Optional[str] = None, **_):
    """CLIPScore (Hessel et al.): 100 * max(cos(image, text), 0) of the output image."""
    import torch

    if not caption:
        return "not computed: no caption given"
    model, proc = _hf_model("clip", _available("clip-score"))
    with torch.no_grad():
        t = model.get_text_features(**proc(text=[caption], return_tensors="pt", padding=True, truncation=True))
    t = torch.nn.functional.normalize(t, dim=-1)
    return float(100.0 * max(float((_clip_image_embed(out) * t).sum()), 0.0))


def _dino_i(ref, out, **_):
    import torch

    model, proc = _hf_model("dino", _available("dino-i"))
    with torch.no_grad():
        e = model(**proc(images=[ref, out], return_tensors="pt")).last_hidden_state[:, 0]
    e = torch.nn.functional.normalize(e, dim=-1)
    return float((e[0] * e[1]).sum())


def _brisque_model_file() -> Optional[str]:
    """The libsvm model the PyPI ``brisque`` package ships, when it and OpenCV import."""
    if not (_importable("brisque") and _importable("cv2")):  # brisque needs OpenCV
        return None
    import brisque

    f = Path(brisque.__file__).parent / "models" / "svm.txt"
    return str(f) if f.is_file() else None


@functools.lru_cache(maxsize=1)
def _brisque_model():
    from brisque import BRISQUE

    return BRISQUE(url=False)


def _brisque(ref, out, **_):
    if _brisque_model_file():
        return float(_brisque_model().score(np.asarray(out, np.uint8)))
    import piq

    return float(piq.brisque(_to_tensor(out).float() / 255.0, data_range=1.0))


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    Attributes:
        name (str): registry name.
        fn (Callable | None): ``fn(ref, out, caption=None) -> float | str`` (None for
            set-level metrics).
        higher_is_better (bool): direction, for plots and envelopes.
        needs_weights (bool): computed only when :func:`weights_status` finds weights.
        level (str): "image" or "set" (FID: computed over a set of images).
    """

    name: str
    fn: Optional[Callable]
    higher_is_better: bool = True
    needs_weights: bool = False
    level: str = "image"


METRICS: Dict[str, MetricSpec] = {
    "psnr": MetricSpec("psnr", lambda r, o, **_: psnr(r, o)),
    "ssim": MetricSpec("ssim", lambda r, o, **_: ssim(r, o)),
    "ms-ssim": MetricSpec("ms-ssim", lambda r, o, **_: ms_ssim(r, o)),
    "lpips-vgg": MetricSpec("lpips-vgg", _lpips("vgg"), False, True),
    "lpips-alex": MetricSpec("lpips-alex", _lpips("alex"), False, True),
    "clip-i": MetricSpec("clip-i", _clip_i, True, True),
    "dino-i": MetricSpec("dino-i", _dino_i, True, True),
    "clip-score": MetricSpec("clip-score", _clip_score, True, True),
    "brisque": MetricSpec("brisque", _brisque, False, True),
    "fid": MetricSpec("fid", None, False, True, "set"),
}


def metric_names() -> List[str]:
    """All registered metric names."""
    return list(METRICS)


def parse_metrics(spec: Union[str, Iterable[str]]) -> List[str]:
    """``"psnr,ssim,ms-ssim"`` -> canonical names; raises ValueError on unknown names."""
    names = [canonical(n) for n in (spec.split(",") if isinstance(spec, str) else spec) if str(n).strip()]
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}; known: {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def compute_metrics(ref: np.ndarray, out: Optional[np.ndarray], names: Union[str, Iterable[str]] = ("psnr",),
                    caption: Optional[str] = None) -> Dict[str, Union[MetricValue, bool]]:
    """Score one received image against its reference.

    Args:
        ref (np.ndarray): reference image, (H, W, 3) uint8.
        out (np.ndarray | None): received image of the same shape, or None when the
            system failed to produce one.
        names (str | Iterable[str]): metric names (see :data:`METRICS`).
        caption (str | None): the reference caption, for ``clip-score``.

    Returns:
        dict: ``{name: value}`` plus ``"failed": bool``. Values are floats, or
        strings saying why a metric was not computed (:data:`NOT_COMPUTED` for missing
        weights). For a failed image, the metrics in :data:`ZERO_ON_FAILURE` are 0.0
        (failure scored 0).

    Raises:
        ValueError: on unknown metric names or mismatched shapes.
    """
    names = parse_metrics(names)
    res: Dict[str, Union[MetricValue, bool]] = {}
    failed = out is None
    status = weights_status() if any(METRICS[n].needs_weights for n in names) else {}
    for n in names:
        spec = METRICS[n]
        if spec.level == "set":
            res[n] = (NOT_COMPUTED if status.get(n, NOT_COMPUTED).startswith(NOT_COMPUTED)
                      else "not computed: set-level metric (see compute_set_metrics)")
        elif spec.needs_weights and status.get(n, NOT_COMPUTED).startswith(NOT_COMPUTED):
            res[n] = NOT_COMPUTED
        elif failed:
            res[n] = 0.0 if n in ZERO_ON_FAILURE else NOT_COMPUTED_FAILED
        else:
            res[n] = spec.fn(ref, out, caption=caption)
    res["failed"] = failed
    return res


def compute_set_metrics(refs: Sequence[np.ndarray], outs: Sequence[Optional[np.ndarray]],
                        names: Union[str, Iterable[str]] = ("fid",)) -> Dict[str, MetricValue]:
    """Set-level metrics (FID) over the successfully received images of a set.

    Args:
        refs (Sequence[np.ndarray]): reference images.
        outs (Sequence[np.ndarray | None]): received images (None: failed, left out).
        names (str | Iterable[str]): metric names; image-level names are ignored.

    Returns:
        dict: ``{name: value}``; :data:`NOT_COMPUTED` without weights, a "not
        computed: ..." string with fewer than 2 received images.
    """
    names = [n for n in parse_metrics(names) if METRICS[n].level == "set"]
    out: Dict[str, MetricValue] = {}
    for n in names:
        src = _available(n)
        if src is None:
            out[n] = NOT_COMPUTED
            continue
        pairs = [(r, o) for r, o in zip(refs, outs) if o is not None]
        if len(pairs) < 2:
            out[n] = "not computed: fewer than 2 received images"
            continue
        import torch
        from torchmetrics.image.fid import FrechetInceptionDistance

        with _torch_hub_for(src):
            fid = FrechetInceptionDistance(feature=2048, normalize=False)
        for r, o in pairs:
            fid.update(_to_tensor(r).to(torch.uint8), real=True)
            fid.update(_to_tensor(o).to(torch.uint8), real=False)
        out[n] = float(fid.compute())
    return out
