"""The GenED-SC full profile's model code (CLIP, VLM captioner, editor) on tiny random models."""
import re

import numpy as np
import pytest

from conftest import SHARED

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from gensemcom.models import gened_sc_full as gf  # noqa: E402
from gensemcom.models.hf import ModelNotAvailable  # noqa: E402

PAPER = SHARED / "papers" / "gened-sc-mllm-editing.txt"


@pytest.fixture(scope="module")
def tiny_dirs(one_torch_thread):
    from gensemcom.models.tiny_hf import tiny_clip_dir, tiny_editor_dir, tiny_vlm_dir

    return {"clip": str(tiny_clip_dir()), "editor": str(tiny_editor_dir()), "vlm": str(tiny_vlm_dir())}


@pytest.fixture(scope="module")
def clip(tiny_dirs):
    return gf.ClipBackbone(tiny_dirs["clip"], device="cpu")


@pytest.fixture(scope="module")
def editor(tiny_dirs):
    return gf.Editor(tiny_dirs["editor"], device="cpu", steps=2)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_prompts_hold_the_papers_key_phrases():
    assert gf.CAPTION_PROMPT.startswith("Describe the image in precise detail to enable accurate text-to-image")
    for phrase in ("summarize the overall scene and tone", "quantities, colors, and appearances",
                   "absolute position (e.g., top, bottom, left, right)", "(e.g., above, below, in front of, behind)",
                   "faithfully reconstructs the original."):
        assert phrase in gf.CAPTION_PROMPT
    assert gf.EDIT_PROMPT.startswith("This is a compressed image. Please enhance the resolution and sharpness")
    for phrase in ("preserving its original colors, details, composition, and layout", "clear and high-definition",
                   "consistent with the reference image I gave", "Use the following text to reconstruct: {caption}."):
        assert phrase in gf.EDIT_PROMPT
    assert gf.EDIT_PROMPT.count("{caption}") == 1


@pytest.mark.skipif(not PAPER.is_file(), reason="the paper's text is not in ../shared")
def test_prompts_are_the_papers_verbatim():
    text = re.sub(r"\s+", " ", PAPER.read_text(encoding="utf-8"))
    assert gf.CAPTION_PROMPT in text
    assert gf.EDIT_PROMPT.replace("{caption}", "{Caption from the image}") in text


def test_model_id_argument_then_env_then_default(monkeypatch):
    for kind, (env, default) in gf.ENV.items():
        monkeypatch.delenv(env, raising=False)
        assert gf.model_id(kind) == default
        monkeypatch.setenv(env, "/somewhere/" + kind)
        assert gf.model_id(kind) == "/somewhere/" + kind
        assert gf.model_id(kind, "given/id") == "given/id"
    assert (gf.DEFAULT_CLIP, gf.DEFAULT_VLM, gf.DEFAULT_EDITOR) == (
        "openai/clip-vit-base-patch16", "Qwen/Qwen2-VL-2B-Instruct", "timbrooks/instruct-pix2pix")
    with pytest.raises(ValueError):
        gf.model_id("sd")


@pytest.mark.parametrize("cls", [gf.ClipBackbone, gf.VLMCaptioner, gf.Editor])
def test_missing_local_folder_raises_model_not_available(cls, tmp_path, hf_offline):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelNotAvailable, match="no-such-model"):
        cls(missing, device="cpu")


def test_env_var_picks_the_model_and_an_empty_folder_is_not_a_model(tmp_path, monkeypatch, hf_offline):
    monkeypatch.setenv("GENSEMCOM_GENED_EDITOR", str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="GENSEMCOM_GENED_EDITOR"):
        gf.Editor(device="cpu")


def test_clip_backbone_shapes(clip):
    import torch

    assert clip.img_dim == clip.glob_dim == clip.txt_dim == 32
    x = torch.rand(2, 3, 40, 56)
    e_v, g = clip.embed(x)
    assert e_v.shape == (2, 32, 4, 4) and g.shape == (2, 32)
    assert e_v.dtype == g.dtype == torch.float32 and e_v.device == x.device
    assert torch.allclose(g.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(e_v.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    e_v2, _ = clip.embed(x[:1])
    assert torch.allclose(e_v2, e_v[:1], atol=1e-5)  # per image, deterministic
    t = clip.text(["a photo of a dog", "a photo of a cat on the grass", "x"])
    assert t.shape == (3, 32) and t.dtype == torch.float32
    assert not torch.allclose(t[0], t[1])


def test_clip_patch_embeddings_are_the_class_token_path(clip):
    """The class token through the same layers as e_v is g (so e_v and g share a space)."""
    import torch

    x = torch.rand(1, 3, 32, 32)
    _, g = clip.embed(x)
    xx = (x - clip._mean) / clip._std
    with torch.no_grad():
        h = clip.model.vision_model(pixel_values=xx).last_hidden_state[:, 0]
        ref = clip.model.visual_projection(clip.model.vision_model.post_layernorm(h))
    assert torch.allclose(g, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5)


def test_editor_keeps_size_and_is_deterministic(editor):
    img = _image(40, 56)
    a = editor(img, "a dog on the grass", seed=3)
    b = editor(img, "a dog on the grass", seed=3)
    c = editor(img, "a dog on the grass", seed=4)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert editor.pipeline_class == "StableDiffusionInstructPix2PixPipeline"


def test_editor_odd_size_and_long_caption(editor):
    img = _image(37, 50, seed=1)
    long_caption = "a red car next to a tree " * 40
    prompt = editor.prompt_for(long_caption)
    tok = editor.pipe.tokenizer
    assert len(tok(prompt).input_ids) <= tok.model_max_length
    assert prompt.startswith("this is a")  # the tiny tokenizer is per character: the template's head survives
    editor.prompt = "edit: {caption}"
    try:
        assert editor.prompt_for(" a dog ") == "edit: a dog"  # short enough: untouched
    finally:
        editor.prompt = gf.EDIT_PROMPT
    out = editor(img, long_caption)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_vlm_captioner_returns_text(tiny_dirs):
    cap = gf.VLMCaptioner(tiny_dirs["vlm"], device="cpu", max_new_tokens=6)
    assert cap.prompt == gf.CAPTION_PROMPT
    a = cap(_image(40, 56))
    assert isinstance(a, str) and a == cap(_image(40, 56))
    assert "Describe" not in a  # only the new tokens


def test_editor_loads_another_pipeline_class_from_model_index(tmp_path, one_torch_thread):
    """A model whose model_index.json names another diffusers pipeline (here img2img) goes through
    DiffusionPipeline and is called with prompt + image."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    from gensemcom.models.tiny_hf import tiny_sd_dir

    sd = StableDiffusionPipeline.from_pretrained(tiny_sd_dir(), safety_checker=None, requires_safety_checker=False)
    StableDiffusionImg2ImgPipeline(**sd.components).save_pretrained(tmp_path / "img2img")
    ed = gf.Editor(str(tmp_path / "img2img"), device="cpu", steps=2)
    assert ed.pipeline_class == "StableDiffusionImg2ImgPipeline"
    assert type(ed.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    img = _image(24, 40, seed=2)
    out = ed(img, "a cat")
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, ed(img, "a cat"))
