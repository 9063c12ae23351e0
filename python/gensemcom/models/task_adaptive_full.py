"""The full task-adaptive profile's models (Hugging Face, GPU): SegFormer, CLIPSeg, ControlNet.

* **Segmenter**: a SegFormer fine-tuned on Cityscapes (``transformers``
  ``AutoModelForSemanticSegmentation``; default :data:`DEFAULT_SEGMENTER`,
  ``$GENSEMCOM_TA_SEGMENTER``), the street-scene segmenter the paper's Cityscapes
  setting calls for. Its class score map (softmax probability of the asked classes,
  Gaussian-smoothed, scaled to a peak of 1) is the attention for a class label: for a
  segmentation network the class's own score map is its class activation map.
* **Free text**: CLIPSeg (``CLIPSegForImageSegmentation``; default
  :data:`DEFAULT_CLIPSEG`, ``$GENSEMCOM_TA_CLIPSEG``) turns the receiver's text into a
  heat map directly, the paper's CLIP path.
* **Generator**: Stable Diffusion 1.5 with two ControlNets (diffusers
  ``StableDiffusionControlNetPipeline`` with a list of ``ControlNetModel``): the
  segmentation ControlNet (default :data:`DEFAULT_CN_SEG`, trained on ADE20K's
  colour-coded maps, so the Cityscapes labels are drawn in the ADE20K colours of their
  nearest ADE20K class, :data:`CITYSCAPES_TO_ADE`) and the Canny ControlNet (default
  :data:`DEFAULT_CN_CANNY`), whose conditioning scale is 0 in phase 1 (no edges) and
  ``edge_scale`` in phase 3. Why ControlNet rather than a conditional DDPM trained
  from scratch: it conditions a pretrained photographic prior on exactly the two
  inputs the paper uses (a segmentation map and edges), with published weights, and
  the two conditions compose (MultiControlNet) without training.
  ``$GENSEMCOM_SD``, ``$GENSEMCOM_TA_CN_SEG`` and ``$GENSEMCOM_TA_CN_CANNY`` override
  the ids (a hub id or a local ``save_pretrained`` folder).

Without an argument or environment variable a model's folder in ``$GENSEMCOM_MODELS``
(``gensemcom models fetch --to DIR``) is loaded before the Hugging Face cache
(:func:`gensemcom.models.local.locate`). :func:`load_segmenter`, :func:`load_clipseg`
and :func:`load_controlnet` load one model each (``gensemcom models verify`` calls them).
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

DEFAULT_SEGMENTER = "nvidia/segformer-b0-finetuned-cityscapes-1024-1024"
DEFAULT_CLIPSEG = "CIDAS/clipseg-rd64-refined"
DEFAULT_CN_SEG = "lllyasviel/sd-controlnet-seg"
DEFAULT_CN_CANNY = "lllyasviel/sd-controlnet-canny"
ENV = {"segmenter": ("GENSEMCOM_TA_SEGMENTER", DEFAULT_SEGMENTER), "clipseg": ("GENSEMCOM_TA_CLIPSEG", DEFAULT_CLIPSEG),
       "cn_seg": ("GENSEMCOM_TA_CN_SEG", DEFAULT_CN_SEG), "cn_canny": ("GENSEMCOM_TA_CN_CANNY", DEFAULT_CN_CANNY)}

#: Cityscapes train ids (19 classes) -> (ADE20K class index, its colour in the ADE20K palette)
CITYSCAPES_TO_ADE: Dict[int, Tuple[int, Tuple[int, int, int]]] = {
    0: (6, (140, 140, 140)), 1: (11, (235, 255, 7)), 2: (1, (180, 120, 120)), 3: (0, (120, 120, 120)),
    4: (32, (255, 184, 6)), 5: (93, (51, 0, 255)), 6: (136, (41, 0, 255)), 7: (43, (255, 5, 153)),
    8: (4, (4, 200, 3)), 9: (13, (120, 120, 70)), 10: (2, (6, 230, 230)), 11: (12, (150, 5, 61)),
    12: (12, (150, 5, 61)), 13: (20, (0, 102, 200)), 14: (83, (255, 0, 20)), 15: (80, (255, 0, 245)),
    16: (20, (0, 102, 200)), 17: (116, (163, 0, 255)), 18: (127, (255, 245, 0))}
#: extra words per Cityscapes class name for the receiver's class-label feedback
SYNONYMS: Dict[str, Tuple[str, ...]] = {
    "person": ("person", "persons", "people", "pedestrian", "pedestrians"), "rider": ("rider", "cyclist", "cyclists"),
    "car": ("car", "cars", "vehicle", "vehicles"), "bicycle": ("bicycle", "bike", "bicycles"),
    "traffic sign": ("traffic sign", "sign", "signs"), "traffic light": ("traffic light", "traffic lights"),
    "sidewalk": ("sidewalk", "pavement"), "vegetation": ("vegetation", "tree", "trees")}


def model_id(kind: str, given: Optional[str] = None) -> str:
    """The id or path for ``kind``: ``given``, else its environment variable, else the
    default; a hub id is replaced by its folder in ``$GENSEMCOM_MODELS`` when there."""
    from .local import locate

    env, default = ENV[kind]
    return locate(str(given)) if given else locate(default, env)


def _load(kind: str, mid: str, fn):
    from .hf import ModelNotAvailable, hub_offline

    if (os.path.isabs(mid) or mid.startswith(".")) and not os.path.isdir(mid):
        raise ModelNotAvailable(f"task_adaptive {kind} path {mid!r} is not a folder")
    try:
        return fn(hub_offline())
    except (OSError, ValueError) as e:
        env = ENV.get(kind, ("GENSEMCOM_SD", ""))[0]
        raise ModelNotAvailable(f"cannot load the task_adaptive {kind} model {mid!r} ({type(e).__name__}: "
                                f"{str(e)[:200]}); download it once with network access, point {env} at a "
                                "local save_pretrained folder, or fetch it with `gensemcom models fetch --system "
                                "task_adaptive --to DIR` and set GENSEMCOM_MODELS=DIR; the embedded profile needs no "
                                "download") from e


def _processor_and_model(kind: str, mid: Optional[str], proc_cls, model_cls, device: str):
    """(processor, model in eval mode on ``device``) of ``kind`` from ``mid`` (default
    :func:`model_id` ``(kind)``), both through :func:`_load` (cache first, then the hub)."""
    mid = model_id(kind, mid)
    proc = _load(kind, mid, lambda off: proc_cls.from_pretrained(mid, local_files_only=off))
    model = _load(kind, mid, lambda off: model_cls.from_pretrained(mid, local_files_only=off))
    return proc, model.to(device).eval()


def load_segmenter(mid: Optional[str] = None, device: str = "cpu"):
    """The SegFormer segmenter and its image processor.

    Args:
        mid (str | None): hub id or local folder (default :func:`model_id` ``("segmenter")``).
        device (str): torch device.

    Returns:
        tuple: (``AutoImageProcessor``, ``AutoModelForSemanticSegmentation`` in eval mode on ``device``).

    Raises:
        ModelNotAvailable: a missing folder, or not downloaded while offline.
    """
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    return _processor_and_model("segmenter", mid, AutoImageProcessor, AutoModelForSemanticSegmentation, device)


def load_clipseg(mid: Optional[str] = None, device: str = "cpu"):
    """CLIPSeg and its processor.

    Args:
        mid (str | None): hub id or local folder (default :func:`model_id` ``("clipseg")``).
        device (str): torch device.

    Returns:
        tuple: (``CLIPSegProcessor``, ``CLIPSegForImageSegmentation`` in eval mode on ``device``).

    Raises:
        ModelNotAvailable: a missing folder, or not downloaded while offline.
    """
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    return _processor_and_model("clipseg", mid, CLIPSegProcessor, CLIPSegForImageSegmentation, device)


def load_controlnet(kind: str, mid: Optional[str] = None, dtype=None):
    """One ControlNet (``"cn_seg"`` or ``"cn_canny"``).

    Args:
        kind (str): ``"cn_seg"`` or ``"cn_canny"``.
        mid (str | None): hub id or local folder (default :func:`model_id` ``(kind)``).
        dtype: torch dtype (default float32).

    Returns:
        ``diffusers.ControlNetModel`` (on the CPU).

    Raises:
        ModelNotAvailable: a missing folder, or not downloaded while offline.
    """
    import torch
    from diffusers import ControlNetModel

    from .hf import _diffusers_dtype_kw

    mid = model_id(kind, mid)
    kw = {_diffusers_dtype_kw(): dtype or torch.float32}
    return _load(kind, mid, lambda off: ControlNetModel.from_pretrained(mid, local_files_only=off, **kw))


class FullModels:
    """The full profile's models, loaded on first use.

    Args:
        device (str | None): torch device (default CUDA when available).
        segmenter, clipseg, cn_seg, cn_canny, sd (str | None): ids or local folders.
    """

    def __init__(self, device: Optional[str] = None, segmenter: Optional[str] = None, clipseg: Optional[str] = None,
                 cn_seg: Optional[str] = None, cn_canny: Optional[str] = None, sd: Optional[str] = None):
        from .hf import pick_device, pick_dtype, resolve_id

        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.ids = {"segmenter": model_id("segmenter", segmenter), "clipseg": model_id("clipseg", clipseg),
                    "cn_seg": model_id("cn_seg", cn_seg), "cn_canny": model_id("cn_canny", cn_canny),
                    "sd": resolve_id("sd", sd)}
        self.seg_processor, self.segformer = load_segmenter(self.ids["segmenter"], self.device)
        self.id2label = {int(k): str(v) for k, v in self.segformer.config.id2label.items()}
        self._clipseg = None
        self._pipe = None

    # ---------------------------------------------------------------- segmentation
    def seg_probs(self, image: np.ndarray):
        """(H, W, 3) uint8 -> softmax class probabilities (C, H, W) at the image's size."""
        import torch
        import torch.nn.functional as F

        x = self.seg_processor(images=image, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.no_grad():
            lg = self.segformer(pixel_values=x).logits.float()
        lg = F.interpolate(lg, size=image.shape[:2], mode="bilinear", align_corners=False)
        return torch.softmax(lg, 1)[0].cpu()

    def class_words(self) -> Dict[int, Tuple[str, ...]]:
        """Class id -> the words that name it in a task request."""
        out = {}
        for i, name in self.id2label.items():
            n = name.lower().replace("_", " ")
            out[i] = (n,) + tuple(w for w in SYNONYMS.get(n, ()) if w != n)
        return out

    def clipseg(self, image: np.ndarray, text: str) -> np.ndarray:
        """CLIPSeg's heat map of ``text`` (sigmoid of its logits) at the image's size, peak 1."""
        import torch
        import torch.nn.functional as F

        if self._clipseg is None:
            self._clipseg = load_clipseg(self.ids["clipseg"], self.device)
        proc, model = self._clipseg
        inp = proc(text=[text], images=[image], return_tensors="pt", padding=True).to(self.device)
        with torch.no_grad():
            lg = model(**inp).logits.float()
        lg = lg.reshape(1, 1, *lg.shape[-2:])
        a = torch.sigmoid(F.interpolate(lg, size=image.shape[:2], mode="bilinear", align_corners=False))[0, 0].cpu()
        return (a / a.max().clamp(min=1e-8)).numpy().astype(np.float32)

    # ---------------------------------------------------------------- generation
    def pipeline(self):
        if self._pipe is None:
            from diffusers import StableDiffusionControlNetPipeline

            nets = [load_controlnet(kind, self.ids[kind], self.dtype) for kind in ("cn_seg", "cn_canny")]
            sd = self.ids["sd"]
            self._pipe = _load("sd", sd, lambda off: StableDiffusionControlNetPipeline.from_pretrained(
                sd, controlnet=nets, torch_dtype=self.dtype, safety_checker=None, requires_safety_checker=False,
                local_files_only=off)).to(self.device)
            self._pipe.set_progress_bar_config(disable=True)
        return self._pipe

    def generate(self, labels: np.ndarray, edges: np.ndarray, prompt: str, steps: int, guidance: float,
                 edge_scale: float, seed: int) -> np.ndarray:
        """Labels (Cityscapes ids) and binary edges at the working size -> (H, W, 3) uint8."""
        import torch
        from PIL import Image

        pipe = self.pipeline()
        h, w = labels.shape
        colours = np.zeros((256, 3), np.uint8)
        for k, (_, c) in CITYSCAPES_TO_ADE.items():
            colours[k] = c
        seg = Image.fromarray(colours[labels])
        edge = Image.fromarray(np.repeat((edges > 0).astype(np.uint8)[..., None] * 255, 3, 2))
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        out = pipe(prompt, image=[seg, edge], height=h, width=w, num_inference_steps=int(steps),
                   guidance_scale=float(guidance), generator=g, output_type="np",
                   controlnet_conditioning_scale=[1.0, float(edge_scale) if edges.any() else 0.0]).images[0]
        return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def smooth_peak(prob: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    """Gaussian-smoothed map scaled to a peak of 1 (all zero stays zero)."""
    import cv2

    a = cv2.GaussianBlur(np.asarray(prob, np.float32), (0, 0), sigma)
    peak = float(a.max())
    return a / peak if peak > 0 else a


def class_attention(probs, classes: Sequence[int], weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of the classes' probability maps, smoothed, peak 1."""
    a = np.zeros(tuple(probs.shape[1:]), np.float32)
    for c, w in zip(classes, weights):
        if 0 <= int(c) < probs.shape[0]:
            a += float(w) * probs[int(c)].numpy()
    return smooth_peak(a)
