"""``gensemcom models`` (list, path, fetch, verify) and the local models folder ``$GENSEMCOM_MODELS``.

Everything runs offline: the models folders are built from the tiny random models of
:mod:`gensemcom.models.tiny_hf` (and Stable Cascade's tiny pipeline) saved in the layout
``fetch --to DIR`` writes, with the manifest written by the function fetch uses, and the
project's real loaders load them. ``fetch`` itself is run against a small local HTTP
server that serves a fake hub repo (``HF_ENDPOINT``), and offline (``HF_HUB_OFFLINE``).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from gensemcom.cli import main
from gensemcom.models import hf, local
from gensemcom.models import manifest as M
from gensemcom.models import tiny_hf

from conftest import ROOT

ENVS = sorted({e for m in M.models() for e in m.envs} | {local.ENV_MODELS, "GENSEMCOM_WEIGHTS"})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No models folder, no per-model overrides, empty Hugging Face and torch caches."""
    for var in ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    from huggingface_hub import constants  # read when imported: what the loaders use in this process

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def run(capsys, *args):
    """``gensemcom models ...`` in this process: (exit code, stdout, stderr)."""
    code = main(["models", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "gensemcom.cli", "models", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def save_in_layout(src, root, model_id) -> Path:
    """Copy a saved model to ``root/<org>/<name>`` and write the manifest as fetch does."""
    d = local.local_dir(model_id, root)
    shutil.copytree(src, d)
    M.write_folder_manifest(d, model_id, "main", "0" * 40, None, "local")
    return d


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A models folder holding the tiny BLIP and Stable Diffusion under their real hub ids."""
    root = tmp_path_factory.mktemp("models")
    save_in_layout(tiny_hf.tiny_blip_dir(), root, hf.DEFAULT_BLIP)
    save_in_layout(tiny_hf.tiny_sd_dir(), root, hf.DEFAULT_SD)
    return root


def systems_with_hub_models():
    from gensemcom.systems import registry

    return [s for s in registry.names() if "full" in registry.get(s).profiles and not registry.get(s).offline["full"]]


# ---------------------------------------------------------------- the manifest itself
def test_manifest_ids_are_the_loaders_defaults():
    from gensemcom.eval import metrics
    from gensemcom.models import gened_sc_full as G
    from gensemcom.models import stable_cascade as SC
    from gensemcom.models import task_adaptive_full as TA

    want = {"blip": hf.DEFAULT_BLIP, "sd": hf.DEFAULT_SD, "segformer": TA.DEFAULT_SEGMENTER,
            "clipseg": TA.DEFAULT_CLIPSEG, "controlnet-seg": TA.DEFAULT_CN_SEG, "controlnet-canny": TA.DEFAULT_CN_CANNY,
            "stable-cascade": SC.DEFAULT_REPO, "clip": G.DEFAULT_CLIP, "vlm": G.DEFAULT_VLM,
            "editor": G.DEFAULT_EDITOR, "dino": metrics._DINO_IDS[0], "lpips-vgg": metrics._LPIPS_BACKBONES["vgg"][0],
            "lpips-alex": metrics._LPIPS_BACKBONES["alex"][0], "fid-inception": metrics.FID_WEIGHTS}
    got = {m.name: m.id for m in M.models() if m.kind in ("hub", "url")}
    assert got == want
    # the environment variables are the loaders' own
    envs = {m.name: set(m.envs) for m in M.models()}
    assert envs["blip"] == {hf.ENV_BLIP} and envs["sd"] == {hf.ENV_SD}
    assert envs["stable-cascade"] == {SC.ENV_ENCODER, SC.ENV_DECODER}
    assert envs["segformer"] == {TA.ENV["segmenter"][0]} and envs["vlm"] == {G.ENV["vlm"][0]}
    assert metrics._CLIP_IDS[0] == G.DEFAULT_CLIP  # the metrics' CLIP is GenED-SC's
    for m in M.models():
        assert m.licence and m.uses, m.name
        if m.kind == "hub":
            assert m.revision == "main" and m.size > 0 and any(g.required for g in m.files) and m.load, m.name


def test_every_full_profile_with_hub_models_has_manifest_entries():
    from gensemcom.systems import registry

    systems = systems_with_hub_models()
    assert {"tisc", "prompt-only", "sc_sic", "sc_sic-digital", "task_adaptive", "gened_sc"} <= set(systems)
    for s in systems:
        assert M.select(s, "full", ("hub",)), f"{s}/full uses hub models but has no manifest entry"
    for m in M.models():
        for u in m.uses:
            if u.system != M.EVAL:
                assert u.profile in registry.get(u.system).profiles, (m.name, u)
    # every embedded profile's models are shipped: nothing to fetch
    for s in registry.names():
        if "embedded" in registry.get(s).profiles:
            assert not M.select(s, "embedded", ("hub", "url")), s


def test_published_architectures_are_in_the_manifest():
    published = pytest.importorskip("gensemcom.models.published")
    ids = {m.id for m in M.models()}
    for name in published.NAMES:
        spec = published.spec(name)
        if spec.get("hub_id"):
            assert spec["hub_id"] in ids, name
        for system, profile, _role in spec.get("used_by") or ():  # (an architecture may serve another repo too)
            assert M.select(system, profile, ("hub",)), (name, system, profile)


# ---------------------------------------------------------------- list and path
def test_list_shows_every_full_model_missing_with_how_to(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "$GENSEMCOM_MODELS is not set" in out
    for m in M.models():
        if m.kind in ("hub", "url"):
            assert f"[MISSING] {m.name}: {m.id}" in out
    blocks = out.split("\n\n")
    for s in systems_with_hub_models():
        block = next(b for b in blocks if b.startswith(f"{s} / full"))
        assert "[MISSING]" in block and "looked for: " in block
        assert f"`gensemcom models fetch --system {s} --to DIR`" in block and "GENSEMCOM_MODELS=DIR" in block
    # shipped weights are listed too, found, with nothing to fetch
    tisc_embedded = next(b for b in blocks if b.startswith("tisc / embedded"))
    assert "[shipped] taef2" in tisc_embedded and "[shipped] efficientnet-lite0" in tisc_embedded
    assert "MISSING" not in tisc_embedded
    assert "CreativeML OpenRAIL-M" in out and "stable-cascade-nc-community" in out and "~4.27 GB" in out


def test_models_without_an_action_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "list" in out and "fetch" in out and "verify" in out and "GENSEMCOM_MODELS" in out


def test_list_json_schema(capsys):
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"models_dir", "hf_cache", "systems", "missing", "how_to"}
    assert data["models_dir"] is None and "blip" in data["missing"] and "fetch" in data["how_to"]
    pairs = {(s["system"], s["profile"]) for s in data["systems"]}
    assert ("tisc", "full") in pairs and ("eval", "metrics") in pairs and ("jpeg2000-ldpc", "embedded") in pairs
    keys = {"name", "kind", "id", "revision", "files", "size_bytes", "size_approximate", "licence", "licence_url",
            "envs", "used_by", "status", "source", "path", "looked_for", "how_to", "role", "optional"}
    rows = [r for s in data["systems"] for r in s["models"]]
    for r in rows:
        assert keys <= set(r), keys - set(r)
        assert r["status"] in ("found", "missing", "partial", "shipped", "overridden")
        assert (r["how_to"] is None) == (r["status"] in ("found", "shipped"))
    sd = next(r for r in rows if r["name"] == "sd")
    assert sd["status"] == "missing" and sd["size_approximate"] and "unet/config.json" in sd["files"]
    assert any(u["system"] == "task_adaptive" for u in sd["used_by"])
    tiny = next(s for s in data["systems"] if (s["system"], s["profile"]) == ("tisc", "tiny"))
    assert not tiny["models"] and "nothing to fetch" in tiny["note"]
    code, out, _ = run(capsys, "list", "--system", "sc_sic", "--profile", "full", "--json")
    assert [(s["system"], s["profile"]) for s in json.loads(out)["systems"]] == [("sc_sic", "full")]
    assert run(capsys, "list", "--system", "nope")[0] == 2


def test_path_follows_the_models_folder_and_the_override(capsys, monkeypatch, tiny_folder):
    code, _, err = run(capsys, "path", "sd")
    assert code == 1 and "looked for" in err and "gensemcom models fetch" in err
    monkeypatch.setenv("GENSEMCOM_MODELS", str(tiny_folder))
    code, out, _ = run(capsys, "path", "sd")
    assert code == 0 and out.strip() == str(tiny_folder / hf.DEFAULT_SD)
    code, out, _ = run(capsys, "path", hf.DEFAULT_BLIP)
    assert code == 0 and out.strip() == str(tiny_folder / hf.DEFAULT_BLIP)
    monkeypatch.setenv("GENSEMCOM_SD", str(tiny_hf.tiny_sd_dir()))  # the model's own variable wins
    assert run(capsys, "path", "sd")[1].strip() == str(tiny_hf.tiny_sd_dir())
    code, out, _ = run(capsys, "path", "taef2")
    assert code == 0 and Path(out.strip()).is_dir()
    assert run(capsys, "path", "no-such-model")[0] == 2


def test_locate_order_in_every_loader(monkeypatch, tmp_path):
    from gensemcom.eval import metrics
    from gensemcom.models import gened_sc_full as G
    from gensemcom.models import stable_cascade as SC
    from gensemcom.models import task_adaptive_full as TA

    assert local.locate(hf.DEFAULT_SD, hf.ENV_SD) == hf.DEFAULT_SD  # nothing set: the hub id (HF cache)
    root = tmp_path / "models"
    monkeypatch.setenv("GENSEMCOM_MODELS", str(root))
    assert local.locate(hf.DEFAULT_SD, hf.ENV_SD) == hf.DEFAULT_SD  # set, but no folder for it
    ids = [hf.DEFAULT_SD, hf.DEFAULT_BLIP, TA.DEFAULT_SEGMENTER, TA.DEFAULT_CLIPSEG, TA.DEFAULT_CN_SEG,
           TA.DEFAULT_CN_CANNY, G.DEFAULT_CLIP, G.DEFAULT_VLM, G.DEFAULT_EDITOR, SC.DEFAULT_REPO, "other/sd"]
    for mid in ids:
        local.local_dir(mid, root).mkdir(parents=True)
    d = {mid: str(root / mid) for mid in ids}
    assert hf.resolve_id("sd") == d[hf.DEFAULT_SD] and hf.resolve_id("blip") == d[hf.DEFAULT_BLIP]
    assert hf.resolve_id("sd", "x/y") == "x/y" and hf.resolve_id("sd", "/a/b") == "/a/b"  # no folder: as given
    assert hf.resolve_id("blip", "other/sd") == d["other/sd"]  # an explicit hub id maps through the folder too
    for kind, mid in (("segmenter", TA.DEFAULT_SEGMENTER), ("clipseg", TA.DEFAULT_CLIPSEG),
                      ("cn_seg", TA.DEFAULT_CN_SEG), ("cn_canny", TA.DEFAULT_CN_CANNY)):
        assert TA.model_id(kind) == d[mid]
    for kind, mid in (("clip", G.DEFAULT_CLIP), ("vlm", G.DEFAULT_VLM), ("editor", G.DEFAULT_EDITOR)):
        assert G.model_id(kind) == d[mid]
    (root / SC.DEFAULT_REPO / "decoder_lite").mkdir()
    (root / SC.DEFAULT_REPO / "decoder_lite" / "config.json").write_text('{"_class_name": "StableCascadeUNet"}')
    (root / SC.DEFAULT_REPO / "vqgan").mkdir()
    (root / SC.DEFAULT_REPO / SC.EFFNET_FILE).write_bytes(b"")
    srcs = SC.decoder_sources()
    assert srcs["decoder"] == (d[SC.DEFAULT_REPO], "decoder_lite") and srcs["vqgan"] == (d[SC.DEFAULT_REPO], "vqgan")
    assert srcs["tokenizer"] == (d[SC.DEFAULT_REPO], "tokenizer")  # a missing part: the same folder, not the hub
    assert SC.effnet_file() == root / SC.DEFAULT_REPO / SC.EFFNET_FILE
    # the per-model variable wins; a hub id in it is looked up in the models folder too
    monkeypatch.setenv(hf.ENV_SD, "other/sd")
    assert hf.resolve_id("sd") == d["other/sd"]
    monkeypatch.setenv(hf.ENV_SD, "/elsewhere/sd")
    assert hf.resolve_id("sd") == "/elsewhere/sd"
    # the metrics' CLIP and DINO look there as well
    monkeypatch.setattr(metrics, "_importable", lambda mod: mod == "transformers")
    shutil.rmtree(root / G.DEFAULT_CLIP)
    shutil.copytree(tiny_hf.tiny_clip_dir(), root / G.DEFAULT_CLIP)
    assert metrics.weights_status()["clip-i"] == str(root / G.DEFAULT_CLIP)


def test_metric_checkpoints_in_the_models_folder_are_read_through_torch_hub(monkeypatch, tmp_path):
    import torch

    from gensemcom.eval import metrics

    ckpt = tmp_path.joinpath("models", *metrics.MODELS_TORCH_HUB, "checkpoints")
    ckpt.mkdir(parents=True)
    (ckpt / metrics.FID_WEIGHTS).write_bytes(b"x")
    monkeypatch.setenv("GENSEMCOM_MODELS", str(tmp_path / "models"))
    assert metrics._find_file((metrics.FID_WEIGHTS,)) == ckpt / metrics.FID_WEIGHTS
    before = torch.hub.get_dir()
    with metrics._torch_hub_for(str(ckpt / metrics.FID_WEIGHTS)):  # what torchvision / torch-fidelity then read
        assert Path(torch.hub.get_dir()) == ckpt.parent
    assert torch.hub.get_dir() == before
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch2"))  # the environment still counts afterwards
    assert torch.hub.get_dir() == str(tmp_path / "torch2" / "hub")


# ---------------------------------------------------------------- verify
def test_tiny_models_folder_verifies_and_the_loaders_load_from_it(capsys, monkeypatch, tiny_folder, one_torch_thread):
    code, out, _ = run(capsys, "verify", "--system", "prompt-only", "--dir", str(tiny_folder))
    assert code == 0, out
    assert out.count("[ok]") == 2 and "hashes match" in out and "loads" in out and "all good" in out
    code, out, _ = run(capsys, "verify", "--system", "tisc,prompt-only", "--dir", str(tiny_folder), "--json")
    res = json.loads(out)
    assert code == 0 and res["ok"] and {r["name"] for r in res["models"]} == {"blip", "sd"}
    assert all(r["loaded"] and r["hashes"] == "checked" for r in res["models"])
    # the real loaders, asked for nothing in particular, load from $GENSEMCOM_MODELS
    monkeypatch.setenv("GENSEMCOM_MODELS", str(tiny_folder))
    model, proc = hf.load_blip(device="cpu", cache=False)
    assert Path(model.config._name_or_path) == tiny_folder / hf.DEFAULT_BLIP
    pipe = hf.load_sd(device="cpu", cache=False)
    assert Path(pipe.name_or_path) == tiny_folder / hf.DEFAULT_SD
    code, out, _ = run(capsys, "verify", "--system", "prompt-only", "--no-load")
    assert code == 0 and str(tiny_folder) in out and "files only" in out
    code, out, _ = run(capsys, "list", "--system", "prompt-only", "--profile", "full")
    assert out.count("[found]") == 2 and "MISSING" not in out


def test_a_model_in_the_hugging_face_cache_is_found_and_verified(capsys, tmp_path, one_torch_thread):
    repo = tmp_path / "hf" / "hub" / ("models--" + hf.DEFAULT_BLIP.replace("/", "--"))
    shutil.copytree(tiny_hf.tiny_blip_dir(), repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    code, out, _ = run(capsys, "path", "blip")
    assert code == 0 and out.strip() == str(repo / "snapshots" / ("a" * 40))
    code, out, _ = run(capsys, "verify", "--model", "blip")
    assert code == 0 and "[ok] blip" in out and "hashes: no manifest" in out and "loads" in out, out
    (repo / "snapshots" / ("a" * 40) / "model.safetensors").unlink()  # a partial cache entry
    code, out, _ = run(capsys, "list", "--system", "prompt-only", "--profile", "full")
    assert "[PARTIAL] blip" in out and "missing: model.safetensors | pytorch_model.bin" in out


def test_a_changed_a_truncated_and_a_missing_file_are_named(capsys, tmp_path, tiny_folder):
    root = tmp_path / "copy"
    shutil.copytree(tiny_folder, root)
    blip = root / hf.DEFAULT_BLIP / "model.safetensors"
    data = bytearray(blip.read_bytes())
    data[len(data) // 2] ^= 0x01
    blip.write_bytes(bytes(data))
    sd = root / hf.DEFAULT_SD
    (sd / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    vae = sd / "vae" / "diffusion_pytorch_model.safetensors"
    vae.write_bytes(vae.read_bytes()[:-64])
    code, out, _ = run(capsys, "verify", "--system", "prompt-only", "--dir", str(root))
    assert code == 1 and "not good: blip, sd" in out
    assert "changed: model.safetensors (sha256 differs from the manifest)" in out
    assert "missing: unet/diffusion_pytorch_model.safetensors" in out
    assert "truncated: vae/diffusion_pytorch_model.safetensors" in out
    assert "damaged: vae/diffusion_pytorch_model.safetensors" in out  # its safetensors header says so too
    assert "gensemcom models fetch" in out
    # without a manifest the header check still finds the truncated file
    (sd / M.MANIFEST_FILE).unlink()
    res = M.verify_model(M.get("sd"), root, load=False)
    assert res["status"] == "failed" and res["hashes"] == "no manifest"
    assert any(p.startswith("damaged: vae/") for p in res["problems"])


def test_verify_says_what_is_missing_and_how_to_get_it(capsys, tmp_path):
    code, out, _ = run(capsys, "verify", "--system", "sc_sic", "--dir", str(tmp_path / "empty"))
    assert code == 1 and "[MISSING] stable-cascade" in out
    assert "`gensemcom models fetch --model stable-cascade --to DIR`" in out and "gated" in out
    code, out, _ = run(capsys, "verify", "--system", "tisc")  # where the loaders look: nowhere
    assert code == 1 and "[MISSING] blip" in out and "[ok] taef2" in out and "looked for" in out
    # a model only an optional setting needs is no failure when absent, and not fetched unless asked
    code, out, _ = run(capsys, "verify", "--system", "gened_sc", "--no-load")
    assert code == 1 and "[skipped] clip" in out and "not good: vlm, editor" in out
    out = run(capsys, "fetch", "--system", "gened_sc", "--dry-run")[1]
    assert "would fetch 2 model(s)" in out and "clip" not in out
    assert "would fetch 3 model(s)" in run(capsys, "fetch", "--system", "gened_sc", "--dry-run", "--with-optional")[1]


def test_stable_cascade_folder_verifies_and_loads(capsys, monkeypatch, tmp_path, one_torch_thread):
    from safetensors.torch import save_file

    from gensemcom.models import stable_cascade as SC

    d = local.local_dir(SC.DEFAULT_REPO, tmp_path)
    shutil.copytree(SC.tiny_dir(), d)
    enc = SC.EfficientNetV2Encoder()  # random weights of the published layout (the file's real key set)
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(d / SC.EFFNET_FILE))
    M.write_folder_manifest(d, SC.DEFAULT_REPO)
    code, out, _ = run(capsys, "verify", "--system", "sc_sic", "--dir", str(tmp_path))
    assert code == 0 and "[ok] stable-cascade" in out and "loads" in out, out
    monkeypatch.setenv("GENSEMCOM_MODELS", str(tmp_path))
    pipe = SC.load_decoder_pipeline(device="cpu", cache=False)
    assert set(pipe.gensemcom_sources.values()) <= {str(d), f"{d}:decoder", f"{d}:vqgan", f"{d}:text_encoder",
                                                     f"{d}:tokenizer", f"{d}:scheduler"}


# ---------------------------------------------------------------- fetch
def test_fetch_offline_is_one_line_per_model_and_exit_2(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = run_cli("fetch", "--system", "tisc", "--to", str(tmp_path / "out"), env=env)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("gensemcom models: ")]
    assert len(errors) == 2
    for mid, line in zip((hf.DEFAULT_BLIP, hf.DEFAULT_SD), errors):
        assert mid in line and "cannot be reached" in line
    assert not (tmp_path / "out").exists()


def test_fetch_dry_run_lists_ids_patterns_and_sizes(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network needed
    code, out, _ = run(capsys, "fetch", "--system", "task_adaptive", "--to", str(tmp_path / "m"), "--dry-run")
    assert code == 0 and "would fetch 5 model(s)" in out and "(approximate)" in out
    from gensemcom.models import task_adaptive_full as TA

    for mid in (hf.DEFAULT_SD, TA.DEFAULT_SEGMENTER, TA.DEFAULT_CLIPSEG, TA.DEFAULT_CN_SEG, TA.DEFAULT_CN_CANNY):
        assert f": {mid} @ main" in out and str(tmp_path / "m" / mid) in out
    assert "unet/diffusion_pytorch_model.safetensors" in out and "~1.45 GB" in out
    code, out, _ = run(capsys, "fetch", "--system", "sc_sic", "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and [p["id"] for p in plan["models"]] == ["stabilityai/stable-cascade"]
    assert "effnet_encoder.safetensors" in plan["models"][0]["patterns"] and plan["models"][0]["gated"]
    assert not (tmp_path / "m").exists()
    code, out, _ = run(capsys, "fetch", "--system", "deepjscc", "--profile", "embedded", "--dry-run")
    assert code == 0 and "nothing to fetch" in out


def test_metric_checkpoints_fetch_plan_and_verify(capsys, tmp_path):
    import torch

    from gensemcom.eval import metrics

    code, out, _ = run(capsys, "fetch", "--system", "eval", "--to", str(tmp_path), "--dry-run")
    assert code == 0 and "would fetch 5 model(s)" in out
    assert metrics.WEIGHT_URLS[metrics.FID_WEIGHTS] in out and str(tmp_path / "torch" / "hub" / "checkpoints") in out
    ckpt = tmp_path.joinpath(*metrics.MODELS_TORCH_HUB, "checkpoints")
    ckpt.mkdir(parents=True)
    torch.save({"w": torch.zeros(2)}, ckpt / metrics.FID_WEIGHTS)
    torch.save({"w": torch.ones(2)}, ckpt / metrics._LPIPS_BACKBONES["vgg"][0])  # not the published file
    M.write_folder_manifest(ckpt, "torch hub checkpoints", "-", None, None, "url")
    res = M.verify("eval", tmp_path, load=True, names=["fid-inception", "lpips-vgg", "lpips-alex"])
    got = {r["name"]: r for r in res["models"]}
    assert got["fid-inception"]["status"] == "ok" and got["fid-inception"]["loaded"]
    assert got["lpips-alex"]["status"] == "missing"
    assert got["lpips-vgg"]["status"] == "failed"
    assert any("397923af" in p for p in got["lpips-vgg"]["problems"])


class FakeHub:
    """A local HTTP server answering the hub calls ``snapshot_download`` makes for public repos."""

    def __init__(self, repos, lie=()):
        self.repos = {rid: (hashlib.sha1(rid.encode()).hexdigest(), files) for rid, files in repos.items()}
        self.lie = set(lie)  # files whose advertised sha256 is wrong
        self.log = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, body=b"", headers=(), head=False):
                self.send_response(code)
                for k, v in dict(headers).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def answer(self, head):
                parts = unquote(urlparse(self.path).path).strip("/").split("/")
                hub.log.append((self.command, "/".join(parts)))
                if parts[:2] == ["api", "models"] and "/".join(parts[2:4]) in hub.repos:
                    sha, files = hub.repos["/".join(parts[2:4])]
                    lfs = {f: {"sha256": hashlib.sha256(b + (b"!" if f in hub.lie else b"")).hexdigest(),
                               "size": len(b), "pointerSize": 130} for f, b in files.items()}
                    if parts[4:5] == ["revision"]:
                        sib = [{"rfilename": f, "size": len(b), "blobId": hashlib.sha1(b).hexdigest(), "lfs": lfs[f]}
                               for f, b in files.items()]
                        body = {"id": "/".join(parts[2:4]), "sha": sha, "private": False, "siblings": sib, "tags": []}
                    else:  # tree
                        body = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest(),
                                 "lfs": {"oid": lfs[f]["sha256"], "size": len(b), "pointerSize": 130}}
                                for f, b in files.items()]
                    return self.reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
                if len(parts) >= 5 and parts[2] == "resolve" and "/".join(parts[:2]) in hub.repos:
                    sha, files = hub.repos["/".join(parts[:2])]
                    b = files.get("/".join(parts[4:]))
                    if b is not None:
                        headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(b).hexdigest()}"'}
                        if head:  # the length of the body a GET would send
                            self.send_response(200)
                            for k, v in headers.items():
                                self.send_header(k, v)
                            self.send_header("Content-Length", str(len(b)))
                            self.end_headers()
                            return None
                        return self.reply(200, b, headers)
                return self.reply(404, b'{"error": "not found"}', {"Content-Type": "application/json"}, head)

            def do_GET(self):
                self.answer(False)

            def do_HEAD(self):
                self.answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def gets(self):
        return [p.split("/")[-1] for c, p in self.log if c == "GET" and "/resolve/" in p]


def test_fetch_from_a_local_hub_writes_the_layout_and_manifest_and_repairs(capsys, tmp_path):
    src = tiny_hf.tiny_blip_dir()
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()
             and p.name != "COMPLETE"}
    files.update({"pytorch_model.bin": b"not wanted" * 10, "tf_model.h5": b"not wanted either"})
    out = tmp_path / "out"
    with FakeHub({hf.DEFAULT_BLIP: files}) as hub:
        env = dict(os.environ, HF_ENDPOINT=hub.url)
        env.pop("HF_HUB_OFFLINE", None)
        r = run_cli("fetch", "--model", "blip", "--to", str(out), "--quiet", env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        d = out / hf.DEFAULT_BLIP
        data = json.loads((d / M.MANIFEST_FILE).read_text())
        assert data["id"] == hf.DEFAULT_BLIP and data["commit"] == hub.repos[hf.DEFAULT_BLIP][0]
        assert set(data["files"]) == set(files) - {"pytorch_model.bin", "tf_model.h5"}  # only what the loader needs
        for rel, meta in data["files"].items():
            assert meta == {"size": len(files[rel]), "sha256": hashlib.sha256(files[rel]).hexdigest()}
        assert sorted(hub.gets()) == sorted(data["files"])
        code, text, _ = run(capsys, "verify", "--model", "blip", "--dir", str(out))
        assert code == 0 and "[ok] blip" in text
        # a changed and a missing file: fetching again brings back just those two
        st = (d / "model.safetensors").stat()
        blob = bytearray((d / "model.safetensors").read_bytes())
        blob[100] ^= 0xFF
        (d / "model.safetensors").write_bytes(bytes(blob))
        os.utime(d / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot: the time is unchanged
        (d / "vocab.txt").unlink()
        assert run(capsys, "verify", "--model", "blip", "--dir", str(out), "--no-load")[0] == 1
        hub.log.clear()
        r = run_cli("fetch", "--model", "blip", "--to", str(out), "--quiet", env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert sorted(hub.gets()) == ["model.safetensors", "vocab.txt"]
    code, text, _ = run(capsys, "verify", "--model", "blip", "--dir", str(out), "--no-load")
    assert code == 0, text
    # a file whose bytes do not hash to what the hub says is refused, by name
    with FakeHub({hf.DEFAULT_BLIP: files}, lie={"config.json"}) as hub:
        env = dict(os.environ, HF_ENDPOINT=hub.url)
        env.pop("HF_HUB_OFFLINE", None)
        r = run_cli("fetch", "--model", "blip", "--to", str(tmp_path / "out2"), "--quiet", env=env, timeout=120)
    assert r.returncode == 2 and "sha256 of config.json differs from the hub's" in r.stderr, r.stderr
