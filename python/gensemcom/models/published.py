"""The published architectures of every full profile's models, built here without their weights.

The full profiles load hub models (BLIP, Stable Diffusion 1.5, Stable Cascade, SegFormer,
CLIPSeg, ControlNet, CLIP, Qwen2-VL, InstructPix2Pix) that the tests only ever see as
tiny random models. This module describes each published model as data, one JSON file
per model in the ``published/`` folder next to it, and builds it from that description
on PyTorch's ``meta`` device (no memory, no download), so the tests can compare it with
what the publisher states. Each file holds:

* ``name``; ``hub_id_from``: the loader constant that holds the hub id
  (``"hf.DEFAULT_SD"`` is :data:`gensemcom.models.hf.DEFAULT_SD`: the id is written
  once, in the loader; :func:`spec` adds it as ``hub_id``), ``subfolder`` (or null);
* ``library`` (``diffusers``, ``transformers`` or ``gensemcom``), ``class`` (and
  ``module`` for the project's own classes), ``config``: the published ``config.json``'s
  values for the keys the class takes, ``config_source``: where that file is (and
  ``config_note``);
* ``published_params``: the parameter count the publisher states, ``params_source``: the
  sentence or table it comes from, ``tolerance``: the relative error allowed (publishers
  round: "860M"), ``count``: ``"stored"`` when the published count includes tied
  weights stored twice in the checkpoint (default: distinct parameters);
* ``used_by``: ``[system, profile, role]`` for every system profile that loads it from
  that hub folder;
* ``shapes``: the numbers a system relies on, each ``{"value", "measure", "note"}``
  (optionally ``"tolerance"`` and ``"args"``): ``measure`` is an attribute path on the
  built module (``"config.in_channels"``, ``"get_input_embeddings().weight.shape[1]"``),
  ``"params:<path>[+<path>]"`` (the parameters of submodules) or ``"probe:<name>"`` (a
  forward pass on meta tensors of the sizes in ``args``, see :data:`PROBES`).

A file with ``same_as`` (another name) is the same published architecture in another hub
folder (InstructPix2Pix's VAE and text encoder are Stable Diffusion 1.5's): the keys it
does not give (``library``, ``class``, ``config``, the published count and its source)
are the other file's.

:func:`build` instantiates a model (random weights on a real device, for timing
benchmarks), :func:`check` builds it on ``meta`` and compares its parameter count and
shapes with the published ones, :func:`used_by` names the models a system's profile
loads. Importing this module is cheap (torch, diffusers and transformers are imported
inside the functions).
"""
from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

#: the folder of the JSON files (installed with the package)
DATA_DIR = Path(__file__).resolve().parent / "published"

#: every published model a full profile loads, one JSON file each
NAMES = (
    "blip-base-captioning", "sd15-unet", "sd15-vae", "sd15-text-encoder",
    "sc-effnet-encoder", "sc-stage-b", "sc-stage-b-lite", "sc-stage-a", "sc-text-encoder",
    "segformer-b0-cityscapes", "clipseg-rd64-refined", "controlnet-sd15-seg", "controlnet-sd15-canny",
    "clip-vit-b16", "qwen2-vl-2b-instruct", "instruct-pix2pix-unet", "instruct-pix2pix-vae",
    "instruct-pix2pix-text-encoder",
)
#: what a ``same_as`` file takes from the file it names (when it does not give it)
_INHERITED = ("library", "module", "class", "file", "config", "config_note", "layout", "published_params",
              "params_source", "tolerance", "count", "shapes")

#: classes some diffusers versions do not export at the top level: the modules to try
_DIFFUSERS_MODULES = {
    "PaellaVQModel": ("diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model",
                      "diffusers.pipelines.wuerstchen"),
}

_SPECS: Dict[str, dict] = {}
_LOCK = threading.Lock()


# ---------------------------------------------------------------- the data
def path(name: str) -> Path:
    """The JSON file of a published model.

    Args:
        name (str): one of :data:`NAMES`.

    Returns:
        Path: ``published/<name>.json``.

    Raises:
        KeyError: an unknown name.
    """
    if name not in NAMES:
        raise KeyError(f"unknown published model {name!r}: {', '.join(NAMES)}")
    return DATA_DIR / f"{name}.json"


def _constant(ref: str) -> str:
    """The string constant ``ref`` (``"module.NAME"``, a module of this package), read from
    the module's source without importing it (some loaders import torch); imported only
    when the value is not a plain string literal."""
    mod, _, const = ref.rpartition(".")
    src = Path(__file__).resolve().parent / f"{mod.replace('.', '/')}.py"
    try:
        tree = ast.parse(src.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        tree = None
    for node in (tree.body if tree is not None else ()):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        if any(isinstance(t, ast.Name) and t.id == const for t in targets) and \
                isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node.value.value
    return str(getattr(importlib.import_module(f".{mod}", __package__), const))


def _read(name: str) -> dict:
    s = json.loads(path(name).read_text(encoding="utf-8"))
    if s.get("name") != name:
        raise ValueError(f"{path(name)} names itself {s.get('name')!r}, not {name!r}")
    return s


def _load(name: str) -> dict:
    with _LOCK:
        s = _SPECS.get(name)
        if s is None:
            s = _read(name)
            if "same_as" in s:
                base = _read(s["same_as"])
                if "same_as" in base:
                    raise ValueError(f"{name}: same_as {s['same_as']!r}, which is itself a same_as")
                for key in _INHERITED:
                    if key not in s and key in base:
                        s[key] = base[key]
            s["hub_id"] = _constant(s["hub_id_from"])
            _SPECS[name] = s
        return s


def spec(name: str) -> dict:
    """A published model's description (its JSON file, read once), with ``hub_id`` added.

    Args:
        name (str): one of :data:`NAMES`.

    Returns:
        dict: a copy of the description (see the module docstring for the keys).

    Raises:
        KeyError: an unknown name.
    """
    return copy.deepcopy(_load(name))


def config(name: str) -> dict:
    """The published config a model is built from.

    Args:
        name (str): one of :data:`NAMES`.

    Returns:
        dict: a copy of the spec's ``config``.
    """
    return copy.deepcopy(_load(name)["config"])


def used_by(system: str, profile: Optional[str] = None) -> List[str]:
    """The published models a system (and profile) loads.

    Args:
        system (str): a system name (``"tisc"``, ``"sc_sic"``, ...).
        profile (str | None): only this profile (default: any).

    Returns:
        list[str]: names from :data:`NAMES`, in that order.
    """
    return [n for n in NAMES if any(u[0] == system and (profile is None or u[1] == profile)
                                    for u in _load(n)["used_by"])]


# ---------------------------------------------------------------- building
@contextlib.contextmanager
def _quiet():
    """diffusers' and transformers' warnings off for a while (unused config keys, deprecations)."""
    import warnings

    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    levels = (dlog.get_verbosity(), tlog.get_verbosity())
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])


def model_class(name: str):
    """The class a published model is built with.

    Args:
        name (str): one of :data:`NAMES`.

    Returns:
        type: the diffusers, transformers or gensemcom class named by the spec.
    """
    s = _load(name)
    lib, cls = s["library"], s["class"]
    if lib == "gensemcom":
        mod = s["module"]
        rel = "." + mod.split("gensemcom.models.", 1)[1] if mod.startswith("gensemcom.models.") else mod
        return getattr(importlib.import_module(rel, __package__ if rel.startswith(".") else None), cls)
    if lib == "transformers":
        import transformers

        return getattr(transformers, cls)
    if lib == "diffusers":
        import diffusers

        found = getattr(diffusers, cls, None)
        for mod in _DIFFUSERS_MODULES.get(cls, ()):
            if found is not None:
                break
            try:
                found = getattr(importlib.import_module(mod), cls, None)
            except ImportError:
                continue
        if found is None:
            raise ImportError(f"diffusers {diffusers.__version__} has no {cls}")
        return found
    raise ValueError(f"{name}: unknown library {lib!r}")


def build(name: str, device="meta", dtype=None):
    """Instantiate a published model from its config, without its weights.

    On ``"meta"`` (the default) nothing is allocated: the parameters have shapes and
    no data. On a real device (``"cpu"``, ``"cuda"``) the weights are the class's
    random initialisation, built directly in ``dtype`` (for timing benchmarks).

    Args:
        name (str): one of :data:`NAMES`.
        device (str | torch.device): where the parameters live.
        dtype (torch.dtype | str | None): parameter dtype (default float32).

    Returns:
        torch.nn.Module: the model in eval mode.

    Raises:
        KeyError: an unknown name.
    """
    import torch

    s = _load(name)
    cls = model_class(name)
    cfg = copy.deepcopy(s["config"])
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    old = torch.get_default_dtype()
    if dtype is not None and dtype.is_floating_point:
        torch.set_default_dtype(dtype)
    try:
        with _quiet(), torch.device(device):
            if s["library"] == "diffusers":
                m = cls.from_config(cfg)
            elif s["library"] == "transformers":
                m = cls(cls.config_class.from_dict(cfg))
            else:
                m = cls(**cfg)
            if dtype is not None:  # built in dtype already: this only catches buffers and stragglers
                m = m.to(dtype)
    finally:
        torch.set_default_dtype(old)
    return m.eval()


def count_params(module) -> int:
    """Distinct parameter elements of a module (tied weights once; works on ``meta``).

    Args:
        module (torch.nn.Module): the model.

    Returns:
        int: the number of parameters.
    """
    return int(sum(p.numel() for p in module.parameters()))


def count_stored(module) -> int:
    """Parameter elements as a checkpoint stores them: every parameter name, tied ones included.

    Args:
        module (torch.nn.Module): the model.

    Returns:
        int: the number of stored parameters.
    """
    return int(sum(p.numel() for _, p in module.named_parameters(remove_duplicate=False)))


# ---------------------------------------------------------------- measuring
def _jsonable(v):
    if isinstance(v, (list, tuple)):  # torch.Size is a tuple
        return [_jsonable(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, (str, float)):
        return v
    if isinstance(v, int) or hasattr(v, "__index__"):
        return int(v)
    return v


_STEP = re.compile(r"^([A-Za-z0-9_]+)(\(\))?((?:\[-?\d+\])*)$")


def attr_path(obj, expr: str):
    """Follow ``expr`` (``"a.b().c[1]"``: attributes, calls without arguments, integer
    indices) from ``obj``; dict-like steps (a diffusers config) are read by key.

    Args:
        obj: the start (a module).
        expr (str): the path.

    Returns:
        the value reached.

    Raises:
        ValueError: a path that is not of that form.
    """
    for step in expr.split("."):
        m = _STEP.match(step)
        if not m:
            raise ValueError(f"bad path step {step!r} in {expr!r}")
        key = m.group(1)
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
        else:
            obj = getattr(obj, key)
        if m.group(2):
            obj = obj()
        for idx in re.findall(r"\[(-?\d+)\]", m.group(3) or ""):
            obj = obj[int(idx)]
    return obj


def _submodule_params(module, paths: str) -> int:
    seen, n = set(), 0
    for p in paths.split("+"):
        for t in attr_path(module, p.strip()).parameters():
            if id(t) not in seen:
                seen.add(id(t))
                n += t.numel()
    return int(n)


def _zeros(module, shape, dtype=None):
    import torch

    p = next(module.parameters())
    return torch.zeros((1, *shape), device=p.device, dtype=dtype or p.dtype)


def _ids(module, n: int):
    import torch

    return _zeros(module, [int(n)], torch.long)


def _time(module):
    import torch

    return torch.tensor([10], device=next(module.parameters()).device)


def _probe_vision_tokens(m, image):
    return m.vision_model(pixel_values=_zeros(m, image)).last_hidden_state.shape[1:]


def _probe_unet(m, latent, text):
    return m(_zeros(m, latent), _time(m), encoder_hidden_states=_zeros(m, text)).sample.shape[1:]


def _probe_vae_scale(m):
    # StableDiffusionPipeline's vae_scale_factor
    return 2 ** (len(m.config.block_out_channels) - 1)


def _probe_vae_encode(m, image):
    return m.encode(_zeros(m, image)).latent_dist.mean.shape[1:]


def _probe_vae_decode(m, latent):
    return m.decode(_zeros(m, latent)).sample.shape[1:]


def _probe_text_hidden(m, tokens):
    return m(input_ids=_ids(m, tokens)).last_hidden_state.shape[1:]


def _probe_text_embeds(m, tokens):
    return m(input_ids=_ids(m, tokens)).text_embeds.shape[1:]


def _probe_effnet(m, image):
    return m.embed(_zeros(m, image)).shape[1:]  # the paper's resize rule inside


def _probe_stage_b(m, latent, effnet, pooled):
    import torch

    r = torch.tensor([0.5], device=next(m.parameters()).device)
    return m(_zeros(m, latent), r, clip_text_pooled=_zeros(m, pooled), effnet=_zeros(m, effnet)).sample.shape[1:]


def _probe_stage_a(m, latent):
    return m.decode(_zeros(m, latent)).sample.shape[1:]


def _probe_id2label(m):
    return [m.config.id2label[i] for i in range(int(m.config.num_labels))]


def _probe_segformer(m, image):
    return m(pixel_values=_zeros(m, image)).logits.shape[1:]


def _probe_clipseg(m, image, tokens):
    return m(input_ids=_ids(m, tokens), pixel_values=_zeros(m, image)).logits.shape[1:]


def _probe_controlnet(m, latent, text, cond):
    out = m(_zeros(m, latent), _time(m), encoder_hidden_states=_zeros(m, text), controlnet_cond=_zeros(m, cond))
    return [len(out.down_block_res_samples), list(out.mid_block_res_sample.shape[1:])]


def _probe_patch_grid(m):
    # ClipBackbone's grid: image_size // patch_size on each side
    return int(m.config.vision_config.image_size) // int(m.config.vision_config.patch_size)


def _probe_clip_patches(m, image):
    vm = m.vision_model
    tokens = vm(pixel_values=_zeros(m, image)).last_hidden_state[:, 1:]  # without the class token
    return m.visual_projection(vm.post_layernorm(tokens)).shape[1:]


def _probe_auto_class(m, auto):
    import transformers

    return getattr(transformers, auto)._model_mapping[type(m.config)].__name__


def _probe_vision_pixels_per_token(m):
    vc = m.config.vision_config
    return int(vc.patch_size) * int(vc.spatial_merge_size)


#: ``"probe:<name>"`` measurements: ``fn(module, **args)`` (forward passes run on the
#: module's device: on ``meta`` they only propagate shapes)
PROBES: Dict[str, Callable[..., Any]] = {
    "vision_tokens": _probe_vision_tokens, "unet": _probe_unet, "vae_scale": _probe_vae_scale,
    "vae_encode": _probe_vae_encode, "vae_decode": _probe_vae_decode, "text_hidden": _probe_text_hidden,
    "text_embeds": _probe_text_embeds, "effnet": _probe_effnet, "stage_b": _probe_stage_b,
    "stage_a": _probe_stage_a, "id2label": _probe_id2label, "segformer": _probe_segformer,
    "clipseg": _probe_clipseg, "controlnet": _probe_controlnet, "patch_grid": _probe_patch_grid,
    "clip_patches": _probe_clip_patches, "auto_class": _probe_auto_class,
    "vision_pixels_per_token": _probe_vision_pixels_per_token,
}


def measure(module, entry: dict):
    """Measure one of a spec's ``shapes`` on a built module.

    Args:
        module (torch.nn.Module): the model (:func:`build`).
        entry (dict): a ``shapes`` entry (``measure`` and, for probes, ``args``).

    Returns:
        the measured value (int, str or nested lists of ints).
    """
    import torch

    how = entry["measure"]
    with _quiet(), torch.no_grad():
        if how.startswith("params:"):
            return _submodule_params(module, how[len("params:"):])
        if how.startswith("probe:"):
            return _jsonable(PROBES[how[len("probe:"):]](module, **entry.get("args", {})))
        return _jsonable(attr_path(module, how))


def _matches(got, want, tolerance: Optional[float]) -> bool:
    if tolerance is not None and isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return abs(got - want) <= float(tolerance) * abs(want)
    return got == want


def check(name: str) -> dict:
    """Build a published model on ``meta`` and compare it with what its publisher states.

    Args:
        name (str): one of :data:`NAMES`.

    Returns:
        dict: ``name``, ``hub_id``, ``subfolder``, ``class``; ``params`` (counted as the
        spec's ``count`` says), ``published``, ``rel_error``, ``tolerance``; ``shapes``
        (each measured value, None where it failed), ``errors`` (one line per mismatch or
        failure), ``ok`` (no errors) and ``seconds``.
    """
    t0 = time.perf_counter()
    s = _load(name)
    pub, tol = float(s["published_params"]), float(s["tolerance"])
    out = {"name": name, "hub_id": s["hub_id"], "subfolder": s.get("subfolder"), "class": s["class"],
           "params": None, "published": s["published_params"], "rel_error": None, "tolerance": tol,
           "shapes": {}, "errors": []}
    try:
        m = build(name)
    except Exception as e:  # noqa: BLE001 - reported, not raised: check() is a report
        out["errors"].append(f"build: {type(e).__name__}: {str(e)[:300]}")
    else:
        n = count_stored(m) if s.get("count") == "stored" else count_params(m)
        rel = abs(n - pub) / pub
        out.update(params=n, rel_error=rel)
        if rel > tol:
            out["errors"].append(f"parameters: {n:,} built vs {s['published_params']:,} published "
                                 f"({rel:.3%} off, tolerance {tol:.3%})")
        for key, entry in s["shapes"].items():
            try:
                got = measure(m, entry)
            except Exception as e:  # noqa: BLE001
                out["shapes"][key] = None
                out["errors"].append(f"{key}: {entry['measure']} failed: {type(e).__name__}: {str(e)[:300]}")
                continue
            out["shapes"][key] = got
            if not _matches(got, entry["value"], entry.get("tolerance")):
                out["errors"].append(f"{key}: {got!r} built vs {entry['value']!r} published ({entry['note']})")
    out["ok"] = not out["errors"]
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
