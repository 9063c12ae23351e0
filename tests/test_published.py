"""The published architectures of every full profile, built on the meta device (issue 18).

Each full profile's hub models are built from the published configs in
``gensemcom/models/published/*.json`` with no weights and compared with what their
publishers state (parameter counts) and with the shapes the systems rely on, measured
on the built modules and, where a system computes a number itself (TISC's analog
dimension, SC-SIC's embedding grid, GenED-SC's CLIP patch grid), through the system's
own code.
"""
import importlib
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from gensemcom.models import published as P

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _meta(name):
    m = P.build(name)
    assert all(p.device.type == "meta" for p in m.parameters())
    return m


# ------------------------------------------------------------------ the data
def test_one_json_file_per_name_with_every_field():
    files = sorted(p.stem for p in P.DATA_DIR.glob("*.json"))
    assert files == sorted(P.NAMES)
    for name in P.NAMES:
        raw = json.loads(P.path(name).read_text())
        assert raw["name"] == name and "hub_id" not in raw  # the id lives once, in the loader's constant
        for key in ("hub_id_from", "config_source", "used_by", "shapes"):
            assert key in raw, (name, key)
        if "same_as" in raw:
            assert raw["same_as"] in P.NAMES and "same_as" not in P.spec(raw["same_as"]) and "config" not in raw
        raw = P.spec(name)
        for key in ("library", "class", "config", "published_params", "params_source", "tolerance"):
            assert key in raw, (name, key)
        assert raw["library"] in ("diffusers", "transformers", "gensemcom")
        assert 0 <= raw["tolerance"] <= 0.1 and raw["published_params"] > 0
        for key, entry in raw["shapes"].items():
            assert {"value", "measure", "note"} <= set(entry), (name, key)
            assert entry["measure"].split(":")[0] in ("params", "probe") or ":" not in entry["measure"]
            if entry["measure"].startswith("probe:"):
                assert entry["measure"][len("probe:"):] in P.PROBES, (name, key)
        s = P.spec(name)
        if s["library"] != "gensemcom":  # a hub config.json, at the hub id and subfolder the loader uses
            sub = f"{s['subfolder']}/" if s.get("subfolder") else ""
            assert s["config_source"] == f"https://huggingface.co/{s['hub_id']}/blob/main/{sub}config.json", name


def test_spec_is_a_copy_and_unknown_names_are_refused():
    s = P.spec("sd15-unet")
    s["config"]["in_channels"] = 99
    assert P.spec("sd15-unet")["config"]["in_channels"] == 4 == P.config("sd15-unet")["in_channels"]
    with pytest.raises(KeyError, match="unknown published model"):
        P.spec("sd21-unet")


# ------------------------------------------------------------------ one place for the ids
LOADERS = ("hf", "stable_cascade", "task_adaptive_full", "gened_sc_full")


def test_hub_ids_are_the_loaders_default_constants():
    refs = set()
    for name in P.NAMES:
        s = P.spec(name)
        mod, _, const = s["hub_id_from"].rpartition(".")
        assert mod in LOADERS, name
        assert s["hub_id"] == getattr(importlib.import_module(f"gensemcom.models.{mod}"), const), name
        refs.add(s["hub_id_from"])
    # one spec per hub folder a system loads
    assert len({(P.spec(n)["hub_id"], P.spec(n)["subfolder"]) for n in P.NAMES}) == len(P.NAMES)
    # every hub id a full-profile loader defaults to has a published spec: a new model needs one
    for mod in LOADERS:
        m = importlib.import_module(f"gensemcom.models.{mod}")
        for const, value in vars(m).items():
            if const.startswith("DEFAULT_") and isinstance(value, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", value):
                assert f"{mod}.{const}" in refs, f"{mod}.{const} = {value!r} has no published spec"


def test_every_full_profile_with_hub_models_is_covered():
    from gensemcom import systems

    hub_full = [n for n in systems.names() if "full" in systems.get(n).profiles and not systems.get(n).offline["full"]]
    assert {"tisc", "prompt-only", "sc_sic", "sc_sic-digital", "task_adaptive", "gened_sc"} <= set(hub_full)
    for name in hub_full:
        assert P.used_by(name, "full"), f"system {name!r} loads hub models in its full profile but no published " \
                                        "spec names it (gensemcom/models/published/*.json used_by)"
    for name in P.NAMES:
        for system, profile, role in P.spec(name)["used_by"]:
            assert profile in systems.get(system).profiles and role, (name, system, profile)
    assert P.used_by("tisc", "full") == P.used_by("prompt-only") == \
        ["blip-base-captioning", "sd15-unet", "sd15-vae", "sd15-text-encoder"]
    assert P.used_by("sc_sic") == P.used_by("sc_sic-digital", "full") == \
        ["sc-effnet-encoder", "sc-stage-b", "sc-stage-b-lite", "sc-stage-a", "sc-text-encoder"]
    assert P.used_by("gened_sc", "full") == ["clip-vit-b16", "qwen2-vl-2b-instruct", "instruct-pix2pix-unet",
                                              "instruct-pix2pix-vae", "instruct-pix2pix-text-encoder"]
    assert P.used_by("tisc", "embedded") == [] and P.used_by("no-such-system") == []


# ------------------------------------------------------------------ counts and shapes, model by model
@pytest.mark.parametrize("name", P.NAMES)
def test_published_architecture_on_the_meta_device(name):
    r = P.check(name)
    assert r["ok"], "\n".join(r["errors"])
    s = P.spec(name)
    assert r["rel_error"] <= s["tolerance"] and r["params"] > 0
    assert set(r["shapes"]) == set(s["shapes"])
    for key, entry in s["shapes"].items():
        if "tolerance" not in entry:
            assert r["shapes"][key] == entry["value"], (name, key)


def test_a_check_reports_a_mismatch(monkeypatch):
    real = P._load("sd15-text-encoder")
    fake = json.loads(json.dumps(real))
    fake["config"]["hidden_size"] = 1024  # SD 2's width: what the system must not silently accept
    fake["config"]["num_attention_heads"] = 16
    monkeypatch.setitem(P._SPECS, "sd15-text-encoder", fake)
    r = P.check("sd15-text-encoder")
    assert not r["ok"] and r["shapes"]["embedding_width"] == 1024
    assert any(e.startswith("parameters:") for e in r["errors"])
    assert any(e.startswith("embedding_width: 1024 built vs 768 published") for e in r["errors"])


def test_build_on_the_cpu_gives_real_random_weights():
    m = P.build("sc-stage-a", device="cpu", dtype="bfloat16")
    p = next(m.parameters())
    assert p.device.type == "cpu" and p.dtype == torch.bfloat16 and torch.isfinite(p.float()).all()
    assert P.count_params(m) == P.count_params(P.build("sc-stage-a"))
    assert torch.get_default_dtype() == torch.float32


# ------------------------------------------------------------------ what the systems compute from them
def test_tisc_full_analog_dimension_is_the_published_text_width(monkeypatch, tmp_path):
    """TISCFull computes its analog dimension from SD's token-embedding table: on the
    published text encoder that is 768 reals, 384 channel uses."""
    from transformers import CLIPTokenizer

    from gensemcom.models import hf
    from gensemcom.models.tiny_hf import write_clip_tokenizer_files
    from gensemcom.systems.tisc.full import TISCFull

    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer_files(tmp_path / "tok"), model_max_length=77)
    pipe = SimpleNamespace(tokenizer=tok, text_encoder=_meta("sd15-text-encoder"))
    monkeypatch.setattr(hf, "load_blip", lambda *a, **k: (None, None))
    monkeypatch.setattr(hf, "load_sd", lambda *a, **k: pipe)
    system = TISCFull(profile="full", device="meta", fallback_norm=1.0, progress=False)
    width = P.spec("sd15-text-encoder")["shapes"]["embedding_width"]["value"]
    assert system.dim == width == 768
    v = np.ones(system.dim, np.float32)
    p = {"caption": "a dog", "kept": [5, 6], "pos": 1, "word": "dog", "caption_ms": 0.0, "select_ms": 0.0}
    monkeypatch.setattr(system, "_invert", lambda img: (p, v, [1.0]))
    frame = system.encode(np.zeros((32, 32, 3), np.uint8))
    assert frame.analog.size == 768 and frame.analog.size // 2 == 384  # two reals per complex channel use
    # the caption ids go as two bytes each: the published vocabulary (and <*> after it) fits
    from gensemcom.codecs import pack_ids

    assert pack_ids([P.config("sd15-text-encoder")["vocab_size"]])[1] == "<u2"


def test_sd_parts_fit_together():
    unet, vae, text = P.config("sd15-unet"), P.config("sd15-vae"), P.config("sd15-text-encoder")
    assert unet["cross_attention_dim"] == text["hidden_size"] == 768
    assert unet["in_channels"] == unet["out_channels"] == vae["latent_channels"] == 4
    assert unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1) == vae["sample_size"] == 512
    ip2p = P.config("instruct-pix2pix-unet")
    assert P.config("instruct-pix2pix-vae") == vae and P.config("instruct-pix2pix-text-encoder") == text
    assert ip2p["in_channels"] == 2 * vae["latent_channels"] and ip2p["out_channels"] == vae["latent_channels"]
    assert {k: v for k, v in ip2p.items() if k != "in_channels"} == {k: v for k, v in unet.items()
                                                                    if k != "in_channels"}
    for cn in ("controlnet-sd15-seg", "controlnet-sd15-canny"):
        c = P.config(cn)
        for key in ("block_out_channels", "cross_attention_dim", "down_block_types", "layers_per_block",
                    "attention_head_dim", "in_channels"):
            assert c[key] == unet[key], (cn, key)
    assert P.config("controlnet-sd15-seg") == P.config("controlnet-sd15-canny")  # MultiControlNet


def test_sc_sic_embedding_and_stage_b_follow_the_systems_rules():
    from gensemcom.models import stable_cascade as S
    from gensemcom.models.sc_sic_embedded import embedding_grid
    from gensemcom.systems.sc_sic_full import SCSICFull

    enc = P.spec("sc-effnet-encoder")["shapes"]
    for side, key in ((512, "z_512"), (1024, "z_1024")):
        assert [S.CHANNELS, *SCSICFull.grid(None, side, side)] == enc[key]["value"]
    assert enc["z_512"]["value"] == [16, 12, 12] and 16 * 12 * 12 // 2 == 1152  # analog channel uses
    for name in ("sc-stage-b", "sc-stage-b-lite"):
        c = P.config(name)
        assert c["effnet_in_channels"] == S.CHANNELS == enc["channels"]["value"]
        assert c["in_channels"] == c["out_channels"] == P.config("sc-stage-a")["latent_channels"]
        assert c["clip_text_pooled_in_channels"] == P.config("sc-text-encoder")["projection_dim"]
        for key, entry in P.spec(name)["shapes"].items():
            if entry["measure"] == "probe:stage_b":  # the probe's sizes are the pipeline's for that grid
                z = entry["args"]["effnet"]
                grid = S.pipeline_grid(z[1:], S.LATENT_DIM_SCALE, c["patch_size"])
                assert list(grid) == z[1:] and entry["args"]["latent"][1:] == [int(g * S.LATENT_DIM_SCALE)
                                                                               for g in grid], key
    assert embedding_grid(300, 300) == (7, 7)  # the odd grid the lite probe runs
    a = P.spec("sc-stage-a")["shapes"]["image_512"]
    assert a["args"]["latent"] == P.spec("sc-stage-b")["shapes"]["latent_512"]["value"] and a["value"][1:] == [512] * 2


def test_gened_sc_clip_backbone_on_the_published_clip(monkeypatch):
    """ClipBackbone's own code on the published CLIP ViT-B/16: a 14 x 14 grid of 512-wide e_v."""
    import transformers

    from gensemcom.models.gened_sc_full import ClipBackbone

    model = _meta("clip-vit-b16")
    proc = SimpleNamespace(image_processor=SimpleNamespace(image_mean=[0.48145466, 0.4578275, 0.40821073],
                                                           image_std=[0.26862954, 0.26130258, 0.27577711]))
    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", lambda *a, **k: model)
    monkeypatch.setattr(transformers.CLIPProcessor, "from_pretrained", lambda *a, **k: proc)
    bb = ClipBackbone(device="meta")
    shapes = P.spec("clip-vit-b16")["shapes"]
    assert bb.img_dim == bb.glob_dim == bb.txt_dim == shapes["projection_dim"]["value"] == 512
    with torch.no_grad():
        e_v, g = bb.embed(torch.zeros(1, 3, 224, 224, device="meta"))
    grid = shapes["patch_grid"]["value"]
    assert tuple(e_v.shape) == (1, 512, grid, grid) == (1, 512, 14, 14) and tuple(g.shape) == (1, 512)


def test_task_adaptive_classes_are_the_published_cityscapes_labels():
    from gensemcom.models import task_adaptive_full as TA
    from gensemcom.models.tiny_hf import CITYSCAPES_LABELS

    labels = P.spec("segformer-b0-cityscapes")["shapes"]["labels"]["value"]
    assert labels == list(CITYSCAPES_LABELS) and sorted(TA.CITYSCAPES_TO_ADE) == list(range(len(labels)))
    assert set(TA.SYNONYMS) <= set(labels)
    m = _meta("segformer-b0-cityscapes")
    words = TA.FullModels.class_words(SimpleNamespace(id2label={int(k): v for k, v in m.config.id2label.items()}))
    assert words[11][0] == "person" and "pedestrians" in words[11] and words[7][0] == "traffic sign"


# ------------------------------------------------------------------ state-dict names
def _torchvision_effnet_keys(layout, channels):
    """Key -> shape of torchvision's efficientnet_v2_s().features as ``backbone`` (its
    module naming: Conv2dNormActivation = conv "0" + BN "1"; FusedMBConv: "block.0"
    (and "block.1" to project when expanded); MBConv: "block.0" expand, "block.1"
    depthwise, "block.2" squeeze-excitation fc1/fc2, "block.3" project) plus Stable
    Cascade's ``mapper``."""
    keys = {}

    def conv_bn(prefix, cin, cout, k, groups=1):
        keys[f"{prefix}.0.weight"] = [cout, cin // groups, k, k]
        for n in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.1.{n}"] = [cout]
        keys[f"{prefix}.1.num_batches_tracked"] = []

    conv_bn("backbone.0", 3, layout["stem"], 3)
    for s, (kind, e, k, _stride, cin, cout, n) in enumerate(layout["stages"], start=1):
        for i in range(n):
            ci, p = (cin if i == 0 else cout), f"backbone.{s}.{i}.block"
            hid = ci * e
            if kind == "fused" and e == 1:
                conv_bn(f"{p}.0", ci, cout, k)
            elif kind == "fused":
                conv_bn(f"{p}.0", ci, hid, k)
                conv_bn(f"{p}.1", hid, cout, 1)
            else:
                sq = max(1, ci // 4)
                conv_bn(f"{p}.0", ci, hid, 1)
                conv_bn(f"{p}.1", hid, hid, k, groups=hid)
                keys.update({f"{p}.2.fc1.weight": [sq, hid, 1, 1], f"{p}.2.fc1.bias": [sq],
                             f"{p}.2.fc2.weight": [hid, sq, 1, 1], f"{p}.2.fc2.bias": [hid]})
                conv_bn(f"{p}.3", hid, cout, 1)
    conv_bn(f"backbone.{len(layout['stages']) + 1}", layout["stages"][-1][5], layout["head"], 1)
    keys["mapper.0.weight"] = [channels, layout["head"], 1, 1]
    keys.update({"mapper.1.running_mean": [channels], "mapper.1.running_var": [channels],
                 "mapper.1.num_batches_tracked": []})
    return keys


def test_effnet_encoder_state_dict_is_the_checkpoints_layout():
    """The encoder loads effnet_encoder.safetensors strictly: its state dict must be
    torchvision's layout key for key and shape for shape."""
    s = P.spec("sc-effnet-encoder")
    want = _torchvision_effnet_keys(s["layout"], s["config"]["channels"])
    got = {k: list(v.shape) for k, v in _meta("sc-effnet-encoder").state_dict().items()}
    assert got == want
    learned = sum(int(np.prod(v)) for k, v in want.items() if not re.search(r"running_|num_batches", k))
    assert learned == s["published_params"] == 20_197_968


#: parameter names (layer indices as #) in the published architecture and not in the tiny
#: model the tests run (or the reverse): what the tiny models leave untested
TINY_DIFFERENCES = {
    # tiny_hf's CLIPSeg has the paper's single transposed convolution; rd64-refined has the
    # "complex" one (use_complex_transposed_convolution: conv + two transposed convolutions)
    "clipseg-rd64-refined": ({"decoder.transposed_convolution.weight", "decoder.transposed_convolution.bias"},
                             {"decoder.transposed_convolution.#.weight", "decoder.transposed_convolution.#.bias"}),
    # the tiny Stage B has up_blocks_repeat_mappers [1, 1]: no repeat mappers
    "sc-stage-b": (set(), {"up_repeat_mappers.#.#.weight", "up_repeat_mappers.#.#.bias"}),
}


def _patterns(module):
    return {re.sub(r"(?<=\.)\d+(?=\.)", "#", k) for k in module.state_dict()}


def _tiny_models():
    import transformers
    from diffusers import AutoencoderKL, ControlNetModel, StableCascadeUNet, UNet2DConditionModel

    from gensemcom.models import stable_cascade as S
    from gensemcom.models import tiny_hf as T

    def hf(d):
        cfg = transformers.AutoConfig.from_pretrained(d)
        with torch.device("meta"):
            return getattr(transformers, cfg.architectures[0])(cfg)

    def df(cls, d):
        with torch.device("meta"):
            return cls.from_config(cls.load_config(d))

    sd, ta = T.tiny_sd_dir(), T.tiny_task_adaptive_dirs()
    with torch.device("meta"):
        stage_b, stage_a = StableCascadeUNet(**S.TINY_DECODER), S._paella_class()(**S.TINY_VQGAN)
    return {"sd15-unet": df(UNet2DConditionModel, sd / "unet"), "sd15-vae": df(AutoencoderKL, sd / "vae"),
            "sd15-text-encoder": hf(sd / "text_encoder"), "blip-base-captioning": hf(T.tiny_blip_dir()),
            "clip-vit-b16": hf(T.tiny_clip_dir()),
            "instruct-pix2pix-unet": df(UNet2DConditionModel, T.tiny_editor_dir() / "unet"),
            "segformer-b0-cityscapes": hf(ta["segmenter"]), "clipseg-rd64-refined": hf(ta["clipseg"]),
            "controlnet-sd15-seg": df(ControlNetModel, ta["cn_seg"]), "sc-stage-b": stage_b, "sc-stage-a": stage_a}


def test_tiny_models_have_the_published_parameter_names():
    """The tiny random models the tests run are the published classes with the published
    parameter names (up to layer indices), so the loading code they exercise is the real one."""
    tiny = _tiny_models()
    for name, t in tiny.items():
        assert type(t).__name__ == P.spec(name)["class"], name
        only_tiny, only_pub = _patterns(t) - _patterns(P.build(name)), _patterns(P.build(name)) - _patterns(t)
        assert (only_tiny, only_pub) == TINY_DIFFERENCES.get(name, (set(), set())), name
