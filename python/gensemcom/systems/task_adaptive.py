"""Task-adaptive regeneration: a segmentation map, the receiver's task, masked edge patches.

The three phases of Task-Adaptive Semantic Communications with Controllable
Diffusion-based Data Regeneration (arXiv 2505.07980), as a two-round exchange:

* **phase 1, round 0 (transmitter)**: the image is segmented at the working size
  (288 x 384, CamVid's 4:3); the label map, optionally subsampled by ``map_scale``,
  goes losslessly as a PNG (per-row prediction filters + deflate,
  :func:`gensemcom.codecs.pack_label_map`) over the digital path.
* **phase 2 (receiver)**: a conditional latent DDPM regenerates the scene from the
  map (the edge condition all zero: "no preference"), TAEF2 draws it, and the
  receiver answers with its task over the return link in its own digital frame: a
  **class label** (1 byte per class; "person", "car", "cyclist", ... or "all") when
  the request names a class, otherwise the **free text** (UTF-8). Without a task
  (``LinkContext.task`` empty) the exchange ends after phase 1.
* **phase 3, round 1 (transmitter)**: an attention map for the task (Grad-CAM from
  the segmenter for class labels; for free text, offline, the MiniLM sentence encoder
  maps the text to weights over the classes, then Grad-CAM; "all" attends
  everywhere), the binary mask ``A > tau`` (``tau <= 0`` keeps every pixel, the
  paper's All-Attn; ``tau >= 1`` keeps none), the Canny edge map masked by it, and
  only its non-zero 16 x 16 patches with their location codes, deflated, within
  ``budget_bytes`` (most-attended patches first:
  :func:`gensemcom.codecs.pack_edge_patches`). The receiver rebuilds the sparse edge
  map and regenerates with both conditions, from the same noise seed as phase 1, so
  what changes is what the edges bring.

Everything crosses the air on the digital path (no analog segment). A lost map (CRC)
loses the image; a lost feedback frame or a lost phase-3 payload leaves phase 1's
image. ``frame.meta["report"]`` carries the bytes of each phase and their
**compression rate**: payload bits as a percentage of the original image's 24-bit
pixels (the paper's measure), for the forward phases and the return link.

Profiles: ``embedded`` (a segmentation head over the ImageNet EfficientNet-Lite0 trunk
and a latent DDPM, both trained here on CamVid: ``gensemcom train task-adaptive``;
TAEF2's pretrained decoder) and ``tiny`` (the same code with random small models, for
tests). The system is named ``task_adaptive``.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..codecs import CodecError, pack_edge_patches, pack_label_map, unpack_edge_patches, unpack_label_map
from ..frame import SemanticFrame
from .base import LinkContext, Option, SemanticSystem, as_image, header_size
from .registry import register_system

#: words that name each CamVid class in a task request (the class label feedback)
CLASS_WORDS: Dict[int, Tuple[str, ...]] = {
    0: ("sky",), 1: ("building", "buildings", "house", "wall"), 2: ("pole", "poles", "lamp post"),
    3: ("road", "street"), 4: ("pavement", "sidewalk"), 5: ("tree", "trees", "vegetation"),
    6: ("sign", "signs", "signsymbol", "traffic sign", "traffic light"), 7: ("fence",),
    8: ("car", "cars", "vehicle", "vehicles"), 9: ("person", "persons", "people", "pedestrian", "pedestrians"),
    10: ("cyclist", "cyclists", "bicyclist", "bicyclists", "bike", "bicycle")}
#: a sentence per class for the MiniLM mapping of free text
CLASS_DESCRIPTIONS: Dict[int, str] = {
    0: "the sky", 1: "a building, house or wall", 2: "a pole, lamp post or column", 3: "the road, a street",
    4: "the pavement, a sidewalk", 5: "a tree, vegetation", 6: "a traffic sign or a traffic light",
    7: "a fence, railing or barrier",
    8: "a car, vehicle, truck or bus", 9: "pedestrians: people, a man, a woman or a child",
    10: "a cyclist riding a bicycle"}
STREET_PROMPT = "a photo of a city street, cars, pedestrians, buildings, high quality"
ALL = 255  #: the label feedback byte for "every class" (All-Attn)
MAX_TASK_TEXT = 256
PATCH = 16


def parse_task(task: str, words: Optional[Dict[int, Tuple[str, ...]]] = None) -> Tuple[str, bytes]:
    """A receiver's task -> its feedback: ``("label", class bytes)`` when the request
    names classes of ``words`` (class id -> the words naming it; default CamVid's
    :data:`CLASS_WORDS`) such as "person", "car and cyclist" or "all"; else ``("text",
    UTF-8)``.

    Raises:
        ValueError: an empty or over-long task.
    """
    words = CLASS_WORDS if words is None else words
    t = " ".join(str(task).lower().replace(",", " ").split())
    if not t or len(t.encode("utf-8")) > MAX_TASK_TEXT:
        raise ValueError(f"a task is 1 to {MAX_TASK_TEXT} bytes of text, got {task!r:.60}")
    if t in ("all", "everything", "all-attn"):
        return "label", bytes([ALL])
    toks = [w for w in t.replace(" and ", " ").split() if w not in ("the", "a", "an")]
    ids: List[int] = []
    i = 0
    while i < len(toks):  # two-word names first ("traffic sign")
        two = " ".join(toks[i:i + 2])
        hit = next((c for c, ws in words.items() if two in ws), None) if i + 1 < len(toks) else None
        if hit is not None:
            ids.append(hit)
            i += 2
            continue
        hit = next((c for c, ws in words.items() if toks[i] in ws), None)
        if hit is None or not 0 <= hit < ALL:
            return "text", str(task).encode("utf-8")
        ids.append(hit)
        i += 1
    return "label", bytes(sorted(set(ids)))


def attention_mask(attention: np.ndarray, tau: float) -> np.ndarray:
    """Binary mask ``A > tau`` of an attention map in [0, 1]; ``tau <= 0`` keeps every
    pixel (All-Attn), ``tau >= 1`` none."""
    if tau <= 0:
        return np.ones(attention.shape, bool)
    return np.asarray(attention) > tau


def patch_scores(attention: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """Mean attention per ``patch`` x ``patch`` cell, row-major (the patches' priority)."""
    h, w = attention.shape
    gh, gw = -(-h // patch), -(-w // patch)
    pad = np.zeros((gh * patch, gw * patch), np.float64)
    pad[:h, :w] = attention
    return pad.reshape(gh, patch, gw, patch).mean(axis=(1, 3)).reshape(-1)


def compression_pct(n_bytes: int, size: Sequence[int]) -> float:
    """Payload bits as a percentage of an (H, W) RGB image's 24 bits per pixel."""
    return 100.0 * 8.0 * n_bytes / (24.0 * int(size[0]) * int(size[1]))


class TaskAdaptiveBase(SemanticSystem):
    """The three-phase protocol; backends provide the models (see the module).

    Backends implement :meth:`segment`, :meth:`attention`, :meth:`edges` and
    :meth:`generate`.
    """

    OPTIONS = (Option("tau", 0.5, "attention threshold of phase 3 (<= 0: every pixel, All-Attn)"),
               Option("budget_bytes", 4096, "phase 3's edge payload cap in bytes (most-attended patches first)"),
               Option("map_scale", 1, "phase 1 sends the label map subsampled by this factor (1, 2 or 4)",
                      (1, 2, 4)),
               Option("steps", 20, "DDIM sampling steps at the receiver"),
               Option("seed", 0, "the receiver's noise seed (the same in both phases)"))
    max_rounds = 2
    work_size: Tuple[int, int] = (288, 384)
    #: class id -> the words naming it (the class-label feedback); the backend's label space
    class_words: Dict[int, Tuple[str, ...]] = CLASS_WORDS

    def __init__(self, profile: str = "embedded", device: Optional[str] = None, tau: float = 0.5,
                 budget_bytes: int = 4096, map_scale: int = 1, steps: int = 20, seed: int = 0):
        self.profile, self.device = profile, device or "cpu"
        self.tau, self.budget_bytes = float(tau), int(budget_bytes)
        self.map_scale, self.steps, self.seed = int(map_scale), int(steps), int(seed)
        if self.map_scale not in (1, 2, 4) or self.steps < 1 or self.budget_bytes < 64:
            raise ValueError(f"task_adaptive needs map_scale 1, 2 or 4, steps >= 1 and budget_bytes >= 64, got "
                             f"{map_scale}, {steps}, {budget_bytes}")

    # ------------------------------------------------------------ model hooks
    def segment(self, image: np.ndarray) -> np.ndarray:
        """Working-size image -> (H, W) uint8 labels."""
        raise NotImplementedError

    def attention(self, image: np.ndarray, classes: Sequence[int], weights: Sequence[float]) -> np.ndarray:
        """Working-size image, the task's classes and weights -> (H, W) attention in [0, 1]."""
        raise NotImplementedError

    def text_classes(self, text: str) -> List[Tuple[int, float]]:
        """Free text -> (class, weight) pairs."""
        raise NotImplementedError

    def text_attention(self, image: np.ndarray, text: str) -> Tuple[np.ndarray, str]:
        """Working-size image and free text -> (attention in [0, 1], what was done); by
        default the text is mapped to classes (:meth:`text_classes`), then :meth:`attention`."""
        pairs = self.text_classes(text)
        how = "text:" + ",".join(f"{self.class_words[c][0]}={w:.2f}" for c, w in pairs)
        return self.attention(image, [c for c, _ in pairs], [w for _, w in pairs]), how

    def edges(self, image: np.ndarray) -> np.ndarray:
        """Working-size image -> (H, W) uint8 binary edges."""
        raise NotImplementedError

    def generate(self, labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Working-size labels and edges -> (H, W, 3) uint8 regenerated image."""
        raise NotImplementedError

    def _work(self, image: np.ndarray) -> np.ndarray:
        from ..models.task_adaptive_embedded import work_resize

        return work_resize(image, self.work_size)

    # ------------------------------------------------------------ transmitter
    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        img = as_image(image)
        size = [int(img.shape[0]), int(img.shape[1])]
        st = ctx.state
        if ctx.round == 0:
            t0 = time.perf_counter()
            work = self._work(img)
            labels = self.segment(work)
            s = self.map_scale
            sent = labels[::s, ::s] if s > 1 else labels
            data = pack_label_map(sent)
            st.update(work=work, size=size)
            report = {"phase": 1, "map_bytes": len(data), "map_shape": list(sent.shape),
                      "compression_pct": round(compression_pct(len(data), size), 4),
                      "segment_s": round(time.perf_counter() - t0, 3)}
            return SemanticFrame(self.name, data, None, {"size": size, "s": s}, {"report": report})
        work = st.get("work")
        if work is None:
            work = self._work(img)
        t0 = time.perf_counter()
        spec, how = self._task(ctx.feedback)
        classes = None
        if spec is None:
            idx, data = np.zeros(0, int), b""
        else:
            if spec[0] == "all":
                att = np.ones(work.shape[:2], np.float32)
            elif spec[0] == "text":
                att, how = self.text_attention(work, spec[1])
            else:
                classes = spec[1]
                att = self.attention(work, spec[1], spec[2])
            edges = self.edges(work) * attention_mask(att, self.tau)
            data, idx = pack_edge_patches(edges, PATCH, self.budget_bytes, patch_scores(att))
        report = {"phase": 3, "task": how, "tau": self.tau, "patches": int(idx.size),
                  "patch_grid": [-(-self.work_size[0] // PATCH), -(-self.work_size[1] // PATCH)],
                  "edge_bytes": len(data), "compression_pct": round(compression_pct(len(data), size), 4),
                  "attention_s": round(time.perf_counter() - t0, 3)}
        if classes is not None:
            report["classes"] = [int(c) for c in classes]
        return SemanticFrame(self.name, data, None, {"e": int(bool(data))}, {"report": report})

    def _task(self, fb: Optional[SemanticFrame]):
        """The feedback frame -> (("all",) | ("classes", ids, weights) | ("text", text) | None, description)."""
        if fb is None or fb.crc_ok is False:
            return None, "feedback lost"
        kind = fb.header.get("fb")
        if kind == "label":
            ids = list(fb.digital)
            if ALL in ids:
                return ("all",), "label:all"
            ids = [c for c in ids if c in self.class_words]
            if not ids:
                return None, "label: no known class"
            return ("classes", ids, [1.0] * len(ids)), "label:" + ",".join(self.class_words[c][0] for c in ids)
        if kind == "text":
            try:
                text = fb.digital.decode("utf-8")
            except UnicodeDecodeError:
                return None, "text: not UTF-8"
            if not text.strip():
                return None, "text: empty"
            return ("text", text), "text"
        return None, f"unknown feedback kind {kind!r}"

    # ------------------------------------------------------------ receiver
    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        st = ctx.state
        if ctx.round == 0:
            size = header_size(frame.header.get("size"))
            s = frame.header.get("s", 1)
            if not frame.crc_ok or size is None or s not in (1, 2, 4):
                return None  # the map is the whole message: without it there is nothing to draw
            try:
                sent = unpack_label_map(frame.digital)
            except CodecError:
                return None
            h, w = self.work_size
            if sent.shape != (-(-h // s), -(-w // s)):
                return None
            labels = np.repeat(np.repeat(sent, s, 0), s, 1)[:h, :w]
            st.update(labels=labels, size=size)
            st["image"] = self._render(labels, np.zeros((h, w), np.uint8), size)
            return st["image"]
        if "labels" not in st:
            return None
        if not frame.crc_ok or not frame.digital:
            return st["image"]  # no edges arrived: phase 1's image stands
        try:
            edges = unpack_edge_patches(frame.digital)
        except CodecError:
            return st["image"]
        if edges.shape != st["labels"].shape:
            return st["image"]
        st["image"] = self._render(st["labels"], edges, st["size"])
        return st["image"]

    def feedback(self, frame: SemanticFrame, image: Optional[np.ndarray], ctx: LinkContext) -> Optional[SemanticFrame]:
        if ctx.round != 0 or image is None or not ctx.task:
            return None
        kind, data = parse_task(ctx.task, self.class_words)
        return SemanticFrame(self.name, data, None, {"fb": kind})

    def _render(self, labels: np.ndarray, edges: np.ndarray, size) -> np.ndarray:
        from ..models.task_adaptive_embedded import work_resize

        out = self.generate(labels, edges)
        return work_resize(out, (int(size[0]), int(size[1])))


@register_system("task_adaptive", profiles=("embedded", "tiny"))
class TaskAdaptiveEmbedded(TaskAdaptiveBase):
    """Task-adaptive regeneration: a segmentation map, the receiver's task as feedback,
    attention-masked edge patches back (CamVid segmenter + latent DDPM in TAEF2 space)."""

    def __init__(self, profile: str = "embedded", device: Optional[str] = None, **kw):
        super().__init__(profile, device, **kw)
        import torch

        from ..models import task_adaptive_embedded as tae
        from ..models.taef2 import TAEF2

        self._torch, self._tae = torch, tae
        if profile == "tiny":
            from ..models.effnet_lite import EfficientNetLite0

            torch.manual_seed(0)
            self.work_size = (64, 96)
            self.segmenter = tae.Segmenter(tae.SegHead(channels=16, depth=1), EfficientNetLite0())
            self.denoiser = tae.CondDenoiser(channels=(16, 16, 32), cond_channels=16).eval()
            self.taef2 = TAEF2(pretrained=False)
            self.latent_mean = torch.zeros(1, tae.LATENT_CHANNELS, 1, 1)
            self.latent_std = torch.ones(1, tae.LATENT_CHANNELS, 1, 1)
            self.steps = min(self.steps, 2)
        else:
            path = tae.BUNDLE_PATH
            if not path.is_file():
                raise FileNotFoundError(f"task_adaptive embedded weights {path} are missing "
                                        "(gensemcom train task-adaptive --part all)")
            b = tae.load_bundle(path)
            self.segmenter = tae.Segmenter(b["seg_head"])
            self.denoiser, self.latent_mean, self.latent_std = b["denoiser"], b["latent_mean"], b["latent_std"]
            self.taef2 = TAEF2()
            self.record = b["record"]
        self._mapper = None

    def segment(self, image):
        return self.segmenter.predict(image)

    def attention(self, image, classes, weights):
        return self.segmenter.cam(image, classes, weights)

    def text_classes(self, text):
        if self._mapper is None:
            from ..models.minilm import ClassMapper

            self._mapper = ClassMapper(CLASS_DESCRIPTIONS)
        return self._mapper(text)

    def edges(self, image):
        return self._tae.edge_map(image)

    def generate(self, labels, edges):
        torch, tae = self._torch, self._tae
        with torch.inference_mode():
            cond = tae.condition(torch.from_numpy(labels)[None], torch.from_numpy(edges)[None])
            z = tae.sample_latent(self.denoiser, cond, self.steps, self.seed)
            img = self.taef2.decode(z * self.latent_std + self.latent_mean)
        return (img[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


@register_system("task_adaptive", profiles="full")
class TaskAdaptiveFull(TaskAdaptiveBase):
    """Task-adaptive regeneration, full profile: SegFormer (Cityscapes), CLIPSeg for free
    text, Stable Diffusion 1.5 with segmentation and Canny ControlNets
    (:mod:`gensemcom.models.task_adaptive_full`; GPU)."""

    OPTIONS = TaskAdaptiveBase.OPTIONS + (
        Option("prompt", STREET_PROMPT, "the generator's text prompt"),
        Option("guidance", 7.5, "classifier-free guidance scale"),
        Option("edge_scale", 1.0, "the Canny ControlNet's conditioning scale in phase 3"),
        Option("segmenter", None, "SegFormer id or folder (default $GENSEMCOM_TA_SEGMENTER or "
               "nvidia/segformer-b0-finetuned-cityscapes-1024-1024)"),
        Option("clipseg", None, "CLIPSeg id or folder (default $GENSEMCOM_TA_CLIPSEG or CIDAS/clipseg-rd64-refined)"),
        Option("cn_seg", None, "segmentation ControlNet (default $GENSEMCOM_TA_CN_SEG or "
               "lllyasviel/sd-controlnet-seg)"),
        Option("cn_canny", None, "Canny ControlNet (default $GENSEMCOM_TA_CN_CANNY or lllyasviel/sd-controlnet-canny)"),
        Option("sd", None, "Stable Diffusion 1.5 pipeline (default $GENSEMCOM_SD or stable-diffusion-v1-5)"),
        Option("work_height", 384, "working height (a multiple of 8)"),
        Option("work_width", 512, "working width (a multiple of 8)"))

    def __init__(self, profile: str = "full", device: Optional[str] = None, prompt: str = STREET_PROMPT,
                 guidance: float = 7.5, edge_scale: float = 1.0, segmenter=None, clipseg=None, cn_seg=None,
                 cn_canny=None, sd=None, work_height: int = 384, work_width: int = 512, **kw):
        super().__init__(profile, device, **kw)
        from ..models.task_adaptive_full import FullModels

        if work_height % 8 or work_width % 8 or not (64 <= work_height <= 2048 and 64 <= work_width <= 2048):
            raise ValueError(f"the working size must be multiples of 8 in 64..2048, got {work_height} x {work_width}")
        self.work_size = (int(work_height), int(work_width))
        self.prompt, self.guidance, self.edge_scale = str(prompt), float(guidance), float(edge_scale)
        self.models = FullModels(device, segmenter, clipseg, cn_seg, cn_canny, sd)
        self.class_words = self.models.class_words()

    def segment(self, image):
        return self.models.seg_probs(image).argmax(0).numpy().astype(np.uint8)

    def attention(self, image, classes, weights):
        from ..models.task_adaptive_full import class_attention

        return class_attention(self.models.seg_probs(image), classes, weights)

    def text_attention(self, image, text):
        return self.models.clipseg(image, text), "text:clipseg"

    def edges(self, image):
        from ..models.task_adaptive_embedded import edge_map

        return edge_map(image)

    def generate(self, labels, edges):
        return self.models.generate(labels, edges, self.prompt, self.steps, self.guidance, self.edge_scale, self.seed)
