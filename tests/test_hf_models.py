"""Hugging Face loaders (gensemcom.models.hf) and the tiny random models (tiny_hf).

Never touches the network: HF_HUB_OFFLINE=1 for every test, and the tiny models are
built from configs and loaded from disk with the same from_pretrained code as the
full profile.
"""
import shutil

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("hf_offline", "one_torch_thread")

from gensemcom.models import hf, tiny_hf  # noqa: E402


def _image(seed=0, h=40, w=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_tiny_blip_captions_and_sd_tokenizes():
    model, proc = hf.load_blip(str(tiny_hf.tiny_blip_dir()), "cpu")
    text = hf.caption(model, proc, _image(), max_new_tokens=8, num_beams=1)
    assert isinstance(text, str) and text.strip()
    assert hf.caption(model, proc, _image(), max_new_tokens=8, num_beams=1) == text  # deterministic
    pipe = hf.load_sd(str(tiny_hf.tiny_sd_dir()), "cpu")
    ids = hf.prompt_ids(pipe.tokenizer, text)
    assert ids and all(isinstance(i, int) and 0 <= i < len(pipe.tokenizer) for i in ids)
    assert pipe.tokenizer.bos_token_id not in ids and pipe.tokenizer.eos_token_id not in ids
    assert pipe.tokenizer.decode(ids).replace(" ", "") == text.lower().replace(" ", "")


def test_tiny_models_are_real_architectures_loaded_from_disk():
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BlipForConditionalGeneration, CLIPTextModel

    model, _ = hf.load_blip(str(tiny_hf.tiny_blip_dir()), "cpu")
    pipe = hf.load_sd(str(tiny_hf.tiny_sd_dir()), "cpu")
    assert isinstance(model, BlipForConditionalGeneration) and isinstance(pipe, StableDiffusionPipeline)
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert pipe.safety_checker is None
    assert str(pipe.unet.config._name_or_path).startswith(str(tiny_hf.tiny_sd_dir()))
    assert not any(p.requires_grad for p in pipe.unet.parameters())
    vocab = pipe.tokenizer.get_vocab()
    assert "<|startoftext|>" in vocab and "<|endoftext|>" in vocab and "a</w>" in vocab and "a" in vocab


def test_missing_tiny_component_fails_loudly(tmp_path):
    """A copy of the tiny pipeline loads; with its UNet removed it does not."""
    d = tmp_path / "sd"
    shutil.copytree(tiny_hf.tiny_sd_dir(), d)
    pipe = hf.load_sd(str(d), "cpu", cache=False)
    assert pipe.unet is not None
    shutil.rmtree(d / "unet")
    with pytest.raises(hf.ModelNotAvailable) as e:
        hf.load_sd(str(d), "cpu", cache=False)
    assert str(d) in str(e.value) and "not a complete saved model" in str(e.value)


def test_generate_seeded_and_resized():
    pipe = hf.load_sd(str(tiny_hf.tiny_sd_dir()), "cpu")
    ids = hf.prompt_ids(pipe.tokenizer, "a red dog")
    emb = hf.encode_ids(pipe, ids)
    a = hf.generate(pipe, 7, 32, 32, 2, 2.0, prompt_embeds=emb, size=(40, 48))
    b = hf.generate(pipe, 7, 32, 32, 2, 2.0, prompt_embeds=emb, size=(40, 48))
    c = hf.generate(pipe, 8, 32, 32, 2, 2.0, prompt_embeds=emb, size=(40, 48))
    assert a.shape == (40, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_missing_local_path_raises_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(hf.ModelNotAvailable) as e:
        hf.load_sd(str(missing), "cpu")
    assert str(missing) in str(e.value) and "GENSEMCOM_SD" in str(e.value)
    with pytest.raises(hf.ModelNotAvailable) as e:
        hf.load_blip(str(missing), "cpu")
    assert str(missing) in str(e.value) and "GENSEMCOM_BLIP" in str(e.value)


def test_missing_hub_id_offline_raises_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    mid = "gensemcom-tests/definitely-not-a-model"
    for load, env in ((hf.load_sd, "GENSEMCOM_SD"), (hf.load_blip, "GENSEMCOM_BLIP")):
        with pytest.raises(hf.ModelNotAvailable) as e:
            load(mid, "cpu", cache=False)
        msg = str(e.value)
        assert mid in msg and env in msg and "HF_HUB_OFFLINE" in msg


def test_env_overrides_and_defaults(monkeypatch):
    monkeypatch.delenv("GENSEMCOM_SD", raising=False)
    monkeypatch.delenv("GENSEMCOM_BLIP", raising=False)
    monkeypatch.delenv("GENSEMCOM_MODELS", raising=False)
    assert hf.resolve_id("sd") == hf.DEFAULT_SD and hf.resolve_id("blip") == hf.DEFAULT_BLIP
    monkeypatch.setenv("GENSEMCOM_SD", "/models/sd15")
    monkeypatch.setenv("GENSEMCOM_BLIP", "/models/blip")
    assert hf.resolve_id("sd") == "/models/sd15" and hf.resolve_id("blip") == "/models/blip"
    assert hf.resolve_id("sd", "x/y") == "x/y"
    assert hf.hub_offline()
    with pytest.raises(ValueError):
        hf.resolve_id("gpt")


def test_device_and_dtype_choice():
    import torch

    assert hf.pick_dtype("cuda") == torch.float16 and hf.pick_dtype("cuda:1") == torch.float16
    assert hf.pick_dtype("cpu") == torch.float32
    assert hf.pick_dtype("cpu", "bfloat16") == torch.bfloat16
    assert hf.pick_device("cpu") == "cpu"
