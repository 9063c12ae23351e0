"""The full GenED-SC profile's models (Hugging Face, GPU): CLIP, a vision-language captioner, an image editor.

* :class:`ClipBackbone`: the paper's pretrained image-to-text encoder ``f_I2T``
  (Sections III-B2 and IV-A): CLIP's image encoder gives the global embedding ``g``
  and, DenseCLIP-style, the patch-level embeddings ``e_v`` on the patch grid (each
  patch token through the same final layer norm and visual projection as the class
  token, so ``e_v``, ``g`` and the text embedding ``e_t`` share one space); CLIP's text
  encoder gives ``e_t`` of the class-level text ``T``. transformers ``CLIPModel``;
  default :data:`DEFAULT_CLIP`, ``$GENSEMCOM_GENED_CLIP``.
* :class:`VLMCaptioner`: the transmitter's ``p = f_LLM(I_o)`` (Section III-B, Note;
  the paper used GPT-4o): a local instruction-tuned vision-language model
  (``AutoModelForImageTextToText``: Qwen2-VL, LLaVA, SmolVLM, ...) prompted with the
  paper's :data:`CAPTION_PROMPT` (Section IV-D); default :data:`DEFAULT_VLM`,
  ``$GENSEMCOM_GENED_VLM``.
* :class:`Editor`: the receiver's ``I_g = f_MLLM(I_r, p)`` (Eq. 11, Section IV-D;
  the paper used GPT-4o's image editing): a diffusers image-editing pipeline given the
  JSCC reconstruction ``I_r`` and the paper's :data:`EDIT_PROMPT` with the caption;
  default :data:`DEFAULT_EDITOR` (InstructPix2Pix), ``$GENSEMCOM_GENED_EDITOR``; any
  other diffusers editing pipeline taking ``prompt`` and ``image`` (e.g.
  ``QwenImageEditPipeline``) is loaded through ``DiffusionPipeline``.

Ids are hub ids or local ``save_pretrained`` folders (argument, else environment
variable, else default; a hub id's folder in ``$GENSEMCOM_MODELS`` is used when there:
:func:`gensemcom.models.local.locate`). With ``HF_HUB_OFFLINE`` set nothing touches the network
(``local_files_only``); a model that cannot be loaded raises
:class:`~gensemcom.models.hf.ModelNotAvailable` naming the id and how to provide it.
Device: CUDA when available, else CPU; float16 on CUDA (the vision-language model in bfloat16 where
the GPU has it: Qwen2-VL is published in bfloat16 and overflows in float16), float32 on CPU. Tests run
this code on the tiny random models of :mod:`gensemcom.models.tiny_hf`
(:func:`~gensemcom.models.tiny_hf.tiny_clip_dir`,
:func:`~gensemcom.models.tiny_hf.tiny_vlm_dir`,
:func:`~gensemcom.models.tiny_hf.tiny_editor_dir`).
"""
from __future__ import annotations

import inspect
import os
from typing import Optional, Sequence, Tuple

import numpy as np

DEFAULT_CLIP = "openai/clip-vit-base-patch16"
DEFAULT_VLM = "Qwen/Qwen2-VL-2B-Instruct"
DEFAULT_EDITOR = "timbrooks/instruct-pix2pix"
ENV = {"clip": ("GENSEMCOM_GENED_CLIP", DEFAULT_CLIP), "vlm": ("GENSEMCOM_GENED_VLM", DEFAULT_VLM),
       "editor": ("GENSEMCOM_GENED_EDITOR", DEFAULT_EDITOR)}

#: the transmitter's image-to-text prompt (Section IV-D), verbatim
CAPTION_PROMPT = (
    "Describe the image in precise detail to enable accurate text-to-image generation. First, summarize the overall "
    "scene and tone. Next, identify all main objects, including their quantities, colors, and appearances. Then, "
    "specify the absolute position (e.g., top, bottom, left, right) of each object and the relative spatial "
    "relationships between them (e.g., above, below, in front of, behind). Finally, describe how these objects are "
    "positioned within the background scene. Provide a comprehensive, detailed, and accurate description to ensure "
    "the generated image faithfully reconstructs the original.")

#: the receiver's editing prompt (Section IV-D), verbatim, ``{caption}`` where the paper writes
#: ``{Caption from the image}``
EDIT_PROMPT = (
    "This is a compressed image. Please enhance the resolution and sharpness of this image while preserving its "
    "original colors, details, composition, and layout. The restored image should look clear and high-definition. "
    "Please control the brightness and average brightness of each part of the generated image to be consistent with "
    "the reference image I gave. Use the following text to reconstruct: {caption}.")

#: tokenizers with a longer limit than this are taken as unlimited (no truncation of the prompt)
_LONG_TOKENIZER = 4096


def model_id(kind: str, given: Optional[str] = None) -> str:
    """The id or path to load for ``kind``.

    Args:
        kind (str): ``"clip"``, ``"vlm"`` or ``"editor"``.
        given (str | None): an explicit hub id or local folder.

    Returns:
        str: ``given``, else the kind's environment variable (``$GENSEMCOM_GENED_CLIP``,
        ``$GENSEMCOM_GENED_VLM``, ``$GENSEMCOM_GENED_EDITOR``), else the default; a hub
        id is replaced by its folder in ``$GENSEMCOM_MODELS`` when there.

    Raises:
        ValueError: unknown ``kind``.
    """
    from .local import locate

    if kind not in ENV:
        raise ValueError(f"unknown GenED-SC model kind {kind!r}: use one of {sorted(ENV)}")
    env, default = ENV[kind]
    return locate(str(given)) if given else locate(default, env)


_resolve = model_id  # the classes' ``model_id`` arguments shadow the function


def _load(kind: str, mid: str, fn):
    """Run ``fn(local_files_only)``; a missing folder or a failed load raises ModelNotAvailable."""
    from .hf import ModelNotAvailable, _looks_like_path, hub_offline

    env = ENV[kind][0]
    how = (f"download it once with network access (unset HF_HUB_OFFLINE; e.g. `hf download {mid}`) into the Hugging "
           f"Face cache, point {env} (or the model argument) at a local save_pretrained folder, or fetch it with "
           "`gensemcom models fetch --system gened_sc --to DIR` and set GENSEMCOM_MODELS=DIR; the embedded "
           "profile needs no download")
    if _looks_like_path(mid) and not os.path.isdir(os.path.expanduser(mid)):
        raise ModelNotAvailable(f"GenED-SC {kind} model path {mid!r} is not a folder: {how}")
    offline = hub_offline()
    try:
        return fn(offline)
    except ModelNotAvailable:
        raise
    except (OSError, ValueError, KeyError) as e:
        where = " (HF_HUB_OFFLINE is set and it is not in the Hugging Face cache?)" if offline else ""
        raise ModelNotAvailable(f"cannot load the GenED-SC {kind} model {mid!r}{where} ({type(e).__name__}: "
                                f"{str(e)[:300]}); {how}") from e


def _device_dtype(device: Optional[str]):
    from .hf import pick_device, pick_dtype

    dev = pick_device(device)
    return dev, pick_dtype(dev)


def _rgb(image: np.ndarray):
    """(H, W, 3) or (H, W) uint8 -> PIL RGB image."""
    from PIL import Image

    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return Image.fromarray(np.ascontiguousarray(a)).convert("RGB")


# ---------------------------------------------------------------- CLIP
class ClipBackbone:
    """CLIP image and text encoders for the score map (the paper's f_I2T; DenseCLIP-style dense features).

    All three embeddings live in CLIP's joint space (``projection_dim`` wide) and are
    L2-normalised along it, as ``CLIPModel``'s own ``image_embeds`` and
    ``text_embeds`` are, so ``<e_t, e_v>`` at a patch is the cosine similarity.

    Args:
        model_id (str | None): hub id or local folder (default ``$GENSEMCOM_GENED_CLIP``
            or :data:`DEFAULT_CLIP`).
        device (str | None): torch device (default CUDA when available).

    Attributes:
        img_dim (int): channels of ``e_v`` (``projection_dim``).
        glob_dim (int): width of ``g`` (``projection_dim``).
        txt_dim (int): width of the text embedding (``projection_dim``).
        image_size (int): the side the vision tower takes; the patch grid is
            ``image_size // patch_size`` on each side.

    Raises:
        ModelNotAvailable: missing folder, or not downloaded while offline.
    """

    def __init__(self, model_id: Optional[str] = None, device: Optional[str] = None):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.model_id = mid = _resolve("clip", model_id)
        self.device, self.dtype = _device_dtype(device)
        self.processor = _load("clip", mid, lambda off: CLIPProcessor.from_pretrained(mid, local_files_only=off))
        model = _load("clip", mid, lambda off: CLIPModel.from_pretrained(mid, dtype=self.dtype, local_files_only=off))
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        vc = self.model.config.vision_config
        self.image_size = int(vc.image_size)
        self.patch_size = int(vc.patch_size)
        self.img_dim = self.glob_dim = self.txt_dim = int(self.model.config.projection_dim)
        ip = self.processor.image_processor
        self._mean = torch.tensor(ip.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(ip.image_std, dtype=torch.float32).view(1, 3, 1, 1)

    def to(self, device) -> "ClipBackbone":
        """Move the model to ``device`` (float16 on CUDA, float32 elsewhere).

        Args:
            device (str | torch.device): target device.

        Returns:
            ClipBackbone: ``self``.
        """
        from .hf import pick_dtype

        self.device = str(device)
        self.dtype = pick_dtype(self.device)
        self.model.to(self.device, self.dtype)
        return self

    def embed(self, x) -> Tuple:
        """Patch and global image embeddings.

        The images are resized (bicubic, antialiased, whole image: no crop, so the
        patch grid covers all of it) to the model's square ``image_size`` and
        normalised with the processor's CLIP mean and std. Each patch token of the last
        layer goes through the vision tower's ``post_layernorm`` and
        ``visual_projection``, exactly as the class token does for ``g``.

        Args:
            x (torch.Tensor): (B, 3, H, W) float images in [0, 1].

        Returns:
            tuple: ``(e_v, g)``: ``e_v`` (B, D, h, w) with ``h = w = image_size //
            patch_size``, ``g`` (B, D); float32, L2-normalised along D, on ``x``'s device.
        """
        import torch
        import torch.nn.functional as F

        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(x.shape)}")
        s = self.image_size
        xx = x.detach().to(self.device, torch.float32)
        if tuple(xx.shape[-2:]) != (s, s):
            xx = F.interpolate(xx, size=(s, s), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        xx = (xx - self._mean.to(xx.device)) / self._std.to(xx.device)
        grid = s // self.patch_size
        vm = self.model.vision_model
        with torch.no_grad():
            out = vm(pixel_values=xx.to(self.dtype))
            tokens = out.last_hidden_state[:, -grid * grid:]  # drop the class token
            e_v = self.model.visual_projection(vm.post_layernorm(tokens)).float()
            g = self.model.visual_projection(out.pooler_output).float()
        e_v = F.normalize(e_v, dim=-1).transpose(1, 2).reshape(x.shape[0], -1, grid, grid)
        return e_v.to(x.device), F.normalize(g, dim=-1).to(x.device)

    def text(self, texts: Sequence[str]):
        """Text embeddings (CLIP's ``text_embeds``) of ``texts``.

        Args:
            texts (Sequence[str]): e.g. ``["a photo of a dog"]``; truncated to the text
                encoder's length (77 tokens for CLIP).

        Returns:
            torch.Tensor: (N, D) float32, L2-normalised, on the model's device.
        """
        import torch
        import torch.nn.functional as F

        if isinstance(texts, str):
            texts = [texts]
        tok = self.processor.tokenizer
        n = min(int(tok.model_max_length), int(self.model.config.text_config.max_position_embeddings))
        inp = tok(list(texts), padding=True, truncation=True, max_length=n, return_tensors="pt")
        with torch.no_grad():
            out = self.model.text_model(input_ids=inp["input_ids"].to(self.device),
                                        attention_mask=inp["attention_mask"].to(self.device))
            t = self.model.text_projection(out.pooler_output).float()
        return F.normalize(t, dim=-1)


# ---------------------------------------------------------------- transmitter captioner
class VLMCaptioner:
    """The transmitter's captioner: a local vision-language model prompted with CAPTION_PROMPT.

    The model is loaded with ``AutoProcessor`` and ``AutoModelForImageTextToText`` (any
    instruction-tuned VLM with a chat template: Qwen2-VL, LLaVA, SmolVLM, ...); the
    user turn holds the image and the prompt, the processor's chat template formats
    it, and decoding is greedy (deterministic).

    Args:
        model_id (str | None): hub id or local folder (default ``$GENSEMCOM_GENED_VLM``
            or :data:`DEFAULT_VLM`).
        device (str | None): torch device (default CUDA when available).
        prompt (str): the instruction (default the paper's :data:`CAPTION_PROMPT`).
        max_new_tokens (int): generation limit.

    Raises:
        ModelNotAvailable: missing folder, not downloaded while offline, or a model
            without a chat template.
    """

    def __init__(self, model_id: Optional[str] = None, device: Optional[str] = None, prompt: str = CAPTION_PROMPT,
                 max_new_tokens: int = 200):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from .hf import ModelNotAvailable

        self.model_id = mid = _resolve("vlm", model_id)
        self.device, self.dtype = _device_dtype(device)
        if self.dtype == torch.float16 and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            # vision-language LLMs (Qwen2-VL) are published in bfloat16 and overflow in float16
            self.dtype = torch.bfloat16
        self.prompt = str(prompt)
        self.max_new_tokens = int(max_new_tokens)
        self.processor = _load("vlm", mid, lambda off: AutoProcessor.from_pretrained(mid, local_files_only=off))
        tok = getattr(self.processor, "tokenizer", None)
        if not (getattr(self.processor, "chat_template", None) or getattr(tok, "chat_template", None)):
            raise ModelNotAvailable(f"the GenED-SC vlm model {mid!r} has no chat template: use an instruction-tuned "
                                    f"vision-language model (set {ENV['vlm'][0]})")
        model = _load("vlm", mid, lambda off: AutoModelForImageTextToText.from_pretrained(
            mid, dtype=self.dtype, local_files_only=off))
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def __call__(self, image: np.ndarray) -> str:
        """Describe ``image``.

        Args:
            image (np.ndarray): (H, W, 3) uint8.

        Returns:
            str: the newly generated text only (not the prompt), stripped.
        """
        import torch

        pil = _rgb(image)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text], images=[pil], return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items() if hasattr(v, "to")}
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        new = out[:, inputs["input_ids"].shape[1]:]
        dec = getattr(self.processor, "batch_decode", None) or self.processor.tokenizer.batch_decode
        return dec(new, skip_special_tokens=True)[0].strip()


# ---------------------------------------------------------------- receiver editor
class Editor:
    """Generative editing at the receiver: a diffusers image-editing pipeline with EDIT_PROMPT and the caption.

    The pipeline class is the one the model's ``model_index.json`` names:
    ``StableDiffusionInstructPix2PixPipeline`` (the default model; text guidance
    ``guidance``, image guidance ``image_guidance``), or any other diffusers pipeline
    loaded through ``DiffusionPipeline.from_pretrained`` and called with ``prompt`` and
    ``image`` (e.g. ``QwenImageEditPipeline``; the guidance arguments are passed only
    where its ``__call__`` takes them).

    The prompt is ``prompt`` with ``{caption}`` replaced by the caption. A CLIP text
    encoder (InstructPix2Pix's) takes at most 77 tokens, and the paper's
    :data:`EDIT_PROMPT` alone is about 70 of them, so with a long caption the text is
    truncated through the pipeline's own tokenizer to its ``model_max_length`` (what
    the encoder would see anyway; the caption's tail is lost). Pipelines whose
    tokenizer is longer than 4,096 tokens (a language-model text encoder) get the
    whole text. Pass a shorter ``prompt`` template to keep more of the caption.

    Args:
        model_id (str | None): hub id or local folder (default
            ``$GENSEMCOM_GENED_EDITOR`` or :data:`DEFAULT_EDITOR`).
        device (str | None): torch device (default CUDA when available).
        steps (int): denoising steps.
        guidance (float): text guidance scale.
        image_guidance (float): image guidance scale (InstructPix2Pix).
        prompt (str): the instruction template with ``{caption}`` (default the paper's
            :data:`EDIT_PROMPT`).

    Raises:
        ModelNotAvailable: missing folder, or not downloaded while offline.
    """

    def __init__(self, model_id: Optional[str] = None, device: Optional[str] = None, steps: int = 20,
                 guidance: float = 7.5, image_guidance: float = 1.5, prompt: str = EDIT_PROMPT):
        from diffusers import DiffusionPipeline, StableDiffusionInstructPix2PixPipeline

        from .hf import _diffusers_dtype_kw

        self.model_id = mid = _resolve("editor", model_id)
        self.device, self.dtype = _device_dtype(device)
        self.steps, self.guidance, self.image_guidance = int(steps), float(guidance), float(image_guidance)
        self.prompt = str(prompt)
        index = _load("editor", mid, lambda off: DiffusionPipeline.load_config(mid, local_files_only=off))
        self.pipeline_class = str(index.get("_class_name") or "StableDiffusionInstructPix2PixPipeline")
        kw = {_diffusers_dtype_kw(): self.dtype}
        if self.pipeline_class == "StableDiffusionInstructPix2PixPipeline":
            pipe = _load("editor", mid, lambda off: StableDiffusionInstructPix2PixPipeline.from_pretrained(
                mid, safety_checker=None, requires_safety_checker=False, local_files_only=off, **kw))
        else:
            pipe = _load("editor", mid, lambda off: DiffusionPipeline.from_pretrained(mid, local_files_only=off,
                                                                                       **kw))
        self.pipe = pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self._params = set(inspect.signature(self.pipe.__call__).parameters)

    def prompt_for(self, caption: str) -> str:
        """The text given to the pipeline for ``caption`` (template filled, truncated to its tokenizer).

        Args:
            caption (str): the received caption.

        Returns:
            str: the prompt.
        """
        text = self.prompt.replace("{caption}", str(caption).strip())
        tok = getattr(self.pipe, "tokenizer", None)
        n = int(getattr(tok, "model_max_length", 0) or 0) if tok is not None else 0
        if 0 < n <= _LONG_TOKENIZER:
            ids = tok(text, truncation=False).input_ids
            if len(ids) > n:
                text = tok.decode(tok(text, truncation=True, max_length=n).input_ids, skip_special_tokens=True)
        return text

    def __call__(self, image: np.ndarray, caption: str, seed: int = 0) -> np.ndarray:
        """Edit the reconstruction ``image`` with the caption.

        Args:
            image (np.ndarray): (H, W, 3) uint8, the JSCC reconstruction ``I_r``.
            caption (str): the transmitted caption ``p``.
            seed (int): seed of the initial noise (a CPU generator: the same noise on every
                device).

        Returns:
            np.ndarray: (H, W, 3) uint8, the same size as ``image`` (the pipeline runs at
            the nearest multiple of 8 on each side; its output is resized back).
        """
        import torch
        from PIL import Image

        pil = _rgb(image)
        w, h = pil.size
        w8, h8 = max(8, int(round(w / 8)) * 8), max(8, int(round(h / 8)) * 8)
        if (w8, h8) != (w, h):
            pil = pil.resize((w8, h8), Image.BICUBIC)
        kw = {"num_inference_steps": self.steps, "generator": torch.Generator(device="cpu").manual_seed(int(seed))}
        for name, value in (("guidance_scale", self.guidance), ("image_guidance_scale", self.image_guidance),
                            ("output_type", "pil")):
            if name in self._params:
                kw[name] = value
        with torch.no_grad():
            out = self.pipe(prompt=self.prompt_for(caption), image=pil, **kw).images[0]
        if not isinstance(out, Image.Image):
            a = np.asarray(out)
            out = Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8) if a.dtype != np.uint8 else a)
        out = out.convert("RGB")
        if out.size != (w, h):
            out = out.resize((w, h), Image.BICUBIC)
        return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))
