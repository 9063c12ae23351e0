"""Tiny RANDOM versions of BLIP captioning and Stable Diffusion, saved to disk.

The ``tiny`` profile of the generative systems (:mod:`gensemcom.systems.tisc`,
:mod:`gensemcom.systems.prompt_only`) and the tests use these. They have the same
architectures as the real models (``BlipForConditionalGeneration`` + ``BlipProcessor``;
``StableDiffusionPipeline`` with ``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel``, ``CLIPTokenizer`` and a DDIM scheduler) with a few thousand random
weights, built from configs with a fixed seed and written with ``save_pretrained``.
The systems then load them with the **same** ``from_pretrained`` code the ``full``
profile uses (:mod:`gensemcom.models.hf`), so a tiny run exercises the real loading,
tokenising, captioning, textual inversion and generation paths; only the weights are
meaningless (captions are random words, images are noise).

Nothing is downloaded: the tokenizers' vocabularies are generated here (a small BERT
WordPiece word list for BLIP; a byte-level BPE vocabulary for CLIP with every byte
character with and without ``</w>``, the two special tokens and a few merges).

The models are built once per process and cached on disk under
``$GENSEMCOM_CACHE/tiny-hf-<key>`` (default: the system temp directory), the key
covering this builder's version and the transformers/diffusers versions; a directory
is written under a temporary name and renamed when complete, so concurrent processes
never see half a model.

The GenED-SC full profile's code (:mod:`gensemcom.models.gened_sc_full`) runs in
tests on a tiny CLIP (``CLIPModel`` + ``CLIPProcessor``), a tiny InstructPix2Pix
(``StableDiffusionInstructPix2PixPipeline`` sharing the tiny SD's components, with an
8-channel UNet) and a tiny LLaVA (``LlavaForConditionalGeneration`` + ``LlavaProcessor``
with a generated WordLevel tokenizer and a chat template).

Public API: :func:`tiny_blip_dir`, :func:`tiny_sd_dir`, :func:`build_tiny_blip`,
:func:`build_tiny_sd`, :data:`TINY_RESOLUTION`, :func:`tiny_clip_dir`,
:func:`tiny_editor_dir`, :func:`tiny_vlm_dir`, :func:`build_tiny_clip`,
:func:`build_tiny_instruct_pix2pix`, :func:`build_tiny_vlm`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Dict, Optional

BUILDER_VERSION = 2
SEED = 20251206
TINY_RESOLUTION = 32
"""Image side (pixels) the tiny models are built for (BLIP input and SD output)."""

#: the tiny BLIP tokenizer's word list (after the special tokens)
TINY_WORDS = (
    "a an the of on in with and at by photo picture image man woman person people child dog cat "
    "bird horse car bus train boat plane bike street road field grass tree trees water beach sky "
    "house room table chair bed kitchen red blue green white black yellow small large two three "
    "sitting standing riding walking playing holding top front next group close view"
).split()

_LOCK = threading.Lock()
_BUILT: Dict[str, Path] = {}


def _cache_root(root=None) -> Path:
    import diffusers
    import transformers

    base = Path(root or os.environ.get("GENSEMCOM_CACHE") or Path(tempfile.gettempdir()) / "gensemcom-cache")
    key = f"tiny-hf-v{BUILDER_VERSION}-tf{transformers.__version__}-df{diffusers.__version__}"
    return base / key


def _build_once(name: str, builder, root=None) -> Path:
    """Build ``name`` with ``builder(tmpdir)`` unless a complete copy exists; returns its dir."""
    with _LOCK:
        final = _cache_root(root) / name
        cached = _BUILT.get(str(final))
        if cached is not None and (cached / "COMPLETE").is_file():
            return cached
        if not (final / "COMPLETE").is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".{name}-{uuid.uuid4().hex}"
            try:
                builder(tmp)
                (tmp / "COMPLETE").write_text("ok\n")
                if final.exists():  # stale or incomplete: replace it
                    shutil.rmtree(final, ignore_errors=True)
                try:
                    os.replace(tmp, final)
                except OSError:
                    if not (final / "COMPLETE").is_file():  # not another process winning the race
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        _BUILT[str(final)] = final
        return final


def _seeded():
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    return state


# ---------------------------------------------------------------- BLIP
def build_tiny_blip(out_dir) -> Path:
    """Write a tiny random ``BlipForConditionalGeneration`` + ``BlipProcessor`` to ``out_dir``.

    Vision: ViT with 32-wide hidden states, 2 layers, 8x8 patches of a 32x32 image.
    Text decoder: 2 BERT layers, 32 wide, over a WordPiece vocabulary of special
    tokens plus :data:`TINY_WORDS`, written to ``vocab.txt``.
    """
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil,
                              BlipProcessor)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = specials + list(dict.fromkeys(TINY_WORDS))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, bos_token="[DEC]")
    ids = {w: i for i, w in enumerate(vocab)}
    text = dict(vocab_size=len(vocab), hidden_size=32, encoder_hidden_size=32, intermediate_size=37,
                projection_dim=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                bos_token_id=ids["[DEC]"], eos_token_id=ids["[SEP]"], pad_token_id=ids["[PAD]"],
                sep_token_id=ids["[SEP]"])
    vision = dict(hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2,
                  num_attention_heads=4, image_size=TINY_RESOLUTION, patch_size=8)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32)
    state = _seeded()
    try:
        model = BlipForConditionalGeneration(config).eval()
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.max_new_tokens = 8
    model.save_pretrained(out)
    improc = BlipImageProcessorPil(size={"height": TINY_RESOLUTION, "width": TINY_RESOLUTION})
    BlipProcessor(image_processor=improc, tokenizer=tok).save_pretrained(out)
    return out


# ---------------------------------------------------------------- SD
def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character map."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


#: merges of the tiny CLIP tokenizer (pairs of existing symbols; the results join the vocab)
TINY_MERGES = ("t h", "th e</w>", "a n", "o n</w>", "i n", "in g</w>", "o f</w>", "e r</w>",
               "d o", "do g</w>", "c a", "ca t</w>")


def tiny_clip_text_config(tok):
    """A 2-layer CLIP text config of width 32 (projection 32) over tokenizer ``tok``'s
    vocabulary and special tokens: the tiny pipelines' text encoder."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def write_clip_tokenizer_files(out_dir) -> Path:
    """Write a byte-level BPE ``vocab.json`` and ``merges.txt`` for ``CLIPTokenizer``.

    The vocabulary holds every byte character alone and with ``</w>`` (so any text
    tokenises, character by character at worst), the merge results of
    :data:`TINY_MERGES`, then ``<|startoftext|>`` and ``<|endoftext|>`` last, as in
    CLIP's own vocabulary.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars]
    for m in TINY_MERGES:
        a, b = m.split(" ")
        if a + b not in vocab:
            vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(TINY_MERGES) + "\n")
    return out


def build_tiny_sd(out_dir) -> Path:
    """Write a tiny random ``StableDiffusionPipeline`` to ``out_dir``.

    UNet (4/8 channels, one cross-attention block, cross-attention width 32), a
    2-level VAE (latent 4 x 16 x 16 for a 32 x 32 image), a 2-layer CLIP text encoder
    of width 32 (so the TISC embedding has 32 elements), a generated CLIP tokenizer,
    a DDIM scheduler and no safety checker.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    out = Path(out_dir)
    tokdir = write_clip_tokenizer_files(out / "_tokenizer_src")
    tok = CLIPTokenizer.from_pretrained(tokdir, model_max_length=77)  # reads vocab.json + merges.txt
    state = _seeded()
    try:
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, sample_size=TINY_RESOLUTION // 2, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
            norm_num_groups=4)
        vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            latent_channels=4, norm_num_groups=4, sample_size=TINY_RESOLUTION)
        text_encoder = CLIPTextModel(tiny_clip_text_config(tok)).eval()
    finally:
        torch.random.set_rng_state(state)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)
    shutil.rmtree(tokdir, ignore_errors=True)
    return out


def tiny_blip_dir(root: Optional[str] = None) -> Path:
    """Directory of the tiny BLIP (built on first use, then cached)."""
    return _build_once("blip", build_tiny_blip, root)


def tiny_sd_dir(root: Optional[str] = None) -> Path:
    """Directory of the tiny Stable Diffusion pipeline (built on first use, then cached)."""
    return _build_once("sd", build_tiny_sd, root)


# ---------------------------------------------------------------- task-adaptive full profile
CITYSCAPES_LABELS = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                     "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                     "bicycle")


def build_tiny_segformer(out_dir) -> Path:
    """A tiny random SegFormer with Cityscapes' 19 labels and its image processor (64 x 64 input)."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    out = Path(out_dir)
    state = _seeded()
    try:
        cfg = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                              num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
                              decoder_hidden_size=16, num_labels=len(CITYSCAPES_LABELS),
                              id2label=dict(enumerate(CITYSCAPES_LABELS)),
                              label2id={n: i for i, n in enumerate(CITYSCAPES_LABELS)})
        SegformerForSemanticSegmentation(cfg).eval().save_pretrained(out)
    finally:
        torch.random.set_rng_state(state)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(out)
    return out


def build_tiny_clipseg(out_dir) -> Path:
    """A tiny random CLIPSeg (text and vision towers of width 32) with a generated CLIP tokenizer."""
    import torch
    from transformers import (CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, CLIPTokenizer,
                              ViTImageProcessor)

    out = Path(out_dir)
    tokdir = write_clip_tokenizer_files(out / "_tokenizer_src")
    tok = CLIPTokenizer.from_pretrained(tokdir, model_max_length=77)
    state = _seeded()
    try:
        text = tiny_clip_text_config(tok).to_dict()
        vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                      patch_size=8)
        cfg = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=32, extract_layers=[0, 1],
                            reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32)
        CLIPSegForImageSegmentation(cfg).eval().save_pretrained(out)
    finally:
        torch.random.set_rng_state(state)
    CLIPSegProcessor(image_processor=ViTImageProcessor(size={"height": 32, "width": 32}, do_resize=True),
                     tokenizer=tok).save_pretrained(out)
    shutil.rmtree(tokdir, ignore_errors=True)
    return out


def build_tiny_controlnet(out_dir, sd_dir) -> Path:
    """A tiny random ControlNet matching the tiny Stable Diffusion's UNet (``sd_dir``), built from it."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    out = Path(out_dir)
    unet = UNet2DConditionModel.from_pretrained(Path(sd_dir) / "unet")
    state = _seeded()
    try:
        ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8)).save_pretrained(out)
    finally:
        torch.random.set_rng_state(state)
    return out


def tiny_task_adaptive_dirs(root: Optional[str] = None) -> Dict[str, Path]:
    """Folders of the tiny models the task-adaptive full profile's code runs on in tests:
    ``segmenter``, ``clipseg``, ``cn_seg``, ``cn_canny`` (two ControlNets, the same
    random weights) and ``sd``."""
    sd = tiny_sd_dir(root)  # first: _build_once holds a lock the ControlNet's builder must not take again
    cn = _build_once("controlnet", lambda out: build_tiny_controlnet(out, sd), root)
    return {"segmenter": _build_once("segformer", build_tiny_segformer, root),
            "clipseg": _build_once("clipseg", build_tiny_clipseg, root), "cn_seg": cn, "cn_canny": cn,
            "sd": sd}


# ---------------------------------------------------------------- GenED-SC full profile
def _clip_image_processor(side: int):
    """A CLIP image processor resizing to ``side`` and centre-cropping ``side`` x ``side``
    (the PIL backend when this transformers has it: no torchvision needed)."""
    try:
        from transformers import CLIPImageProcessorPil as Proc
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as Proc
    return Proc(size={"shortest_edge": side}, crop_size={"height": side, "width": side})


def build_tiny_clip(out_dir) -> Path:
    """Write a tiny random ``CLIPModel`` + ``CLIPProcessor`` to ``out_dir``.

    Text and vision towers 32 wide with 2 layers, projection 32; the vision tower takes
    a 32 x 32 image in 8 x 8 patches (a 4 x 4 patch grid); the tokenizer is the
    generated byte-level BPE of :func:`write_clip_tokenizer_files`.

    Args:
        out_dir: folder to write (created).

    Returns:
        Path: ``out_dir``.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(out_dir)
    tokdir = write_clip_tokenizer_files(out / "_tokenizer_src")
    tok = CLIPTokenizer.from_pretrained(tokdir, model_max_length=77)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=TINY_RESOLUTION, patch_size=8, projection_dim=32)
    config = CLIPConfig(text_config=tiny_clip_text_config(tok).to_dict(), vision_config=vision, projection_dim=32)
    state = _seeded()
    try:
        CLIPModel(config).eval().save_pretrained(out)
    finally:
        torch.random.set_rng_state(state)
    CLIPProcessor(image_processor=_clip_image_processor(TINY_RESOLUTION), tokenizer=tok).save_pretrained(out)
    shutil.rmtree(tokdir, ignore_errors=True)
    return out


def build_tiny_instruct_pix2pix(out_dir, sd_dir) -> Path:
    """Write a tiny random ``StableDiffusionInstructPix2PixPipeline`` to ``out_dir``.

    The VAE, text encoder, tokenizer and scheduler are the tiny Stable Diffusion's
    (``sd_dir``, :func:`build_tiny_sd`); the UNet has that UNet's config with 8 input
    channels (the noisy latent and the input image's latent, as InstructPix2Pix's),
    with random weights.

    Args:
        out_dir: folder to write.
        sd_dir: folder of the tiny Stable Diffusion.

    Returns:
        Path: ``out_dir``.
    """
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline, UNet2DConditionModel

    out = Path(out_dir)
    sd = StableDiffusionPipeline.from_pretrained(sd_dir, safety_checker=None, requires_safety_checker=False)
    config = dict(sd.unet.config)
    config["in_channels"] = 8
    state = _seeded()
    try:
        unet = UNet2DConditionModel.from_config(config).eval()
    finally:
        torch.random.set_rng_state(state)
    pipe = StableDiffusionInstructPix2PixPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                                  unet=unet, scheduler=sd.scheduler, safety_checker=None,
                                                  feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)
    return out


#: the tiny vision-language model's chat template: "USER: <image> text ASSISTANT: "
TINY_VLM_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }} {% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% endif %}{% if m['role'] != 'user' %}</s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT: {% endif %}")


def build_tiny_vlm(out_dir) -> Path:
    """Write a tiny random ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` to ``out_dir``.

    Vision: a CLIP vision tower 32 wide, 2 layers, 8 x 8 patches of a 32 x 32 image
    (16 image tokens after dropping CLS). Language model: a 2-layer Llama 32 wide.
    Tokenizer: a ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model
    (whitespace and punctuation pre-tokenisation) whose vocabulary is the special
    tokens (``<unk> <pad> <s> </s> <image>``), the chat roles, :data:`TINY_WORDS` and
    punctuation; the processor carries :data:`TINY_VLM_CHAT_TEMPLATE`, so
    ``apply_chat_template`` works as for a real instruction-tuned VLM.

    Args:
        out_dir: folder to write (created).

    Returns:
        Path: ``out_dir``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]
    words = specials + ["USER", "ASSISTANT"] + list(dict.fromkeys(TINY_WORDS)) + list(".,:;!?()-'\"")
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins the words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", model_max_length=512)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                              image_size=TINY_RESOLUTION, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    n_image = (TINY_RESOLUTION // 8) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_id,
                         vision_feature_select_strategy="default", vision_feature_layer=-1, image_seq_length=n_image)
    state = _seeded()
    try:
        model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.max_new_tokens = 8
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    LlavaProcessor(image_processor=_clip_image_processor(TINY_RESOLUTION), tokenizer=tok, patch_size=8,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   chat_template=TINY_VLM_CHAT_TEMPLATE).save_pretrained(out)
    return out


def tiny_clip_dir(root: Optional[str] = None) -> Path:
    """Directory of the tiny CLIP (built on first use, then cached)."""
    return _build_once("clip", build_tiny_clip, root)


def tiny_editor_dir(root: Optional[str] = None) -> Path:
    """Directory of the tiny InstructPix2Pix pipeline (built on first use, then cached)."""
    sd = tiny_sd_dir(root)  # first: _build_once holds a lock the editor's builder must not take again
    return _build_once("instruct-pix2pix", lambda out: build_tiny_instruct_pix2pix(out, sd), root)


def tiny_vlm_dir(root: Optional[str] = None) -> Path:
    """Directory of the tiny LLaVA vision-language model (built on first use, then cached)."""
    return _build_once("llava", build_tiny_vlm, root)
