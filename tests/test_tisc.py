"""TISC (textual-inversion semantic communication) on the tiny random models.

The tiny profile runs the real code path: BLIP captioning, SD cross-attention token
scoring, noise-robust textual inversion through the frozen UNet/text encoder, the
hybrid digital+analog frame over FrameLink, and seeded SD generation. No network.
"""
import math

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("hf_offline", "one_torch_thread")

from gensemcom.frame import SemanticFrame  # noqa: E402
from gensemcom.systems import build, names  # noqa: E402
from gensemcom.systems import tisc as T  # noqa: E402
from gensemcom.link import FrameLink, PhyConfig, run_link  # noqa: E402


@pytest.fixture(scope="module")
def system():
    return build("tisc", profile="tiny", device="cpu", progress=False, threads=1)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def frame(system, image):
    return system.encode(image)


# ---------------------------------------------------------------- select_token
def test_select_token_highest_score_wins():
    assert T.select_token(["red", "car", "street"], [0.1, 0.5, 0.3]) == 1
    assert T.select_token(["red</w>", "car</w>", "street</w>"], [0.6, 0.5, 0.3]) == 0


def test_select_token_excludes_stopwords_specials_and_punctuation():
    toks = ["<|startoftext|>", "a", "dog", "on", "the", "grass", ",", "<|endoftext|>"]
    scores = [9.0, 5.0, 1.0, 4.0, 3.0, 2.0, 8.0, 7.0]
    assert T.select_token(toks, scores) == 5  # grass: the best non-excluded
    assert T.select_token(["[CLS]", "A", "Cat", "[SEP]"], [5, 4, 1, 3]) == 2
    assert T.select_token(["a", "dog"], [2.0, 1.0], exclude=()) == 0
    assert T.select_token(["dog", "cat"], [1.0, 2.0], exclude=["cat"]) == 0
    assert T.select_token(["dog", "cat", "bird"], [float("nan"), 2.0, 1.0], exclude=["cat"]) == 2


def test_select_token_ties_go_to_the_earliest():
    assert T.select_token(["cat", "dog", "bird"], [0.2, 0.7, 0.7]) == 1
    assert T.select_token(["the", "cat", "dog"], [1.0, 0.5, 0.5]) == 1


def test_select_token_errors():
    with pytest.raises(ValueError):
        T.select_token(["a", "the", "."], [1, 2, 3])
    with pytest.raises(ValueError):
        T.select_token(["dog"], [1.0, 2.0])
    with pytest.raises(ValueError):
        T.select_token(["dog"], [float("nan")])


# ---------------------------------------------------------------- noise level
def test_sigma_from_snr():
    v = np.full(8, 2.0)  # P_v = 4
    assert T.sigma_from_snr(v, None) == 0.0
    assert math.isclose(T.sigma_from_snr(v, 0.0), 2.0)
    s = T.sigma_from_snr(v, -5.0)
    assert math.isclose(10 * math.log10(4.0 / s ** 2), -5.0, abs_tol=1e-9)
    assert math.isclose(T.sigma_from_snr(v, 10.0) ** 2, 0.4)


def _ti_inputs(system, image):
    p = system.prepare(image)
    prompt = p["kept"][: p["pos"]] + [system.token_id] + p["kept"][p["pos"]:]
    return p, prompt


def test_robust_ti_injects_noise_of_the_right_variance(system, image):
    """With lr=0 the embedding stays at its initial value, so what the text encoder
    sees at the placeholder is init + delta: its variance must be sigma^2."""
    import torch

    p, prompt = _ti_inputs(system, image)
    te = system.pipe.text_encoder
    seen = []
    emb_mod = getattr(te, "text_model", te).embeddings  # transformers 4 nests it in text_model
    pos_in_seq = 1 + prompt.index(system.token_id)

    def grab(_m, _i, out):
        seen.append(out[0, pos_in_seq].detach().clone())

    handle = emb_mod.register_forward_hook(grab)
    try:
        v, losses = T.textual_inversion(system.pipe, p["latents"], prompt, system.token_id, p["init"], steps=40,
                                        lr=0.0, train_snr_db=-5.0, seed=1, progress=False)
    finally:
        handle.remove()
    assert np.allclose(v, p["init"])
    pos_emb = emb_mod.position_embedding.weight[pos_in_seq].detach()
    deltas = torch.stack(seen) - pos_emb - torch.as_tensor(p["init"])
    want = T.sigma_from_snr(p["init"], -5.0) ** 2
    assert deltas.shape[0] == 40
    assert abs(float(deltas.var()) / want - 1.0) < 0.2
    assert abs(float(deltas.mean())) < 4 * math.sqrt(want / deltas.numel())


def test_ti_changes_only_the_embedding(system, image):
    import torch

    p, prompt = _ti_inputs(system, image)
    mods = {"unet": system.pipe.unet, "vae": system.pipe.vae, "text_encoder": system.pipe.text_encoder}
    before = {f"{k}.{n}": t.detach().clone() for k, m in mods.items() for n, t in m.state_dict().items()}
    v, losses = T.textual_inversion(system.pipe, p["latents"], prompt, system.token_id, p["init"], steps=3,
                                    lr=5e-2, train_snr_db=-5.0, seed=0, progress=False)
    after = {f"{k}.{n}": t for k, m in mods.items() for n, t in m.state_dict().items()}
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert all(not q.requires_grad for m in mods.values() for q in m.parameters())
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert v.shape == p["init"].shape and not np.allclose(v, p["init"])


def test_training_snr_matters_and_runs_are_reproducible(system, image):
    p, prompt = _ti_inputs(system, image)

    def run(snr):
        return T.textual_inversion(system.pipe, p["latents"], prompt, system.token_id, p["init"], steps=2,
                                   lr=5e-2, train_snr_db=snr, seed=4, progress=False)[0]

    a, b, c = run(-5.0), run(-5.0), run(20.0)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


# ---------------------------------------------------------------- transmitter
def test_attention_scores_and_selection(system, image):
    p = system.prepare(image)
    assert p["caption"] and p["ids"]
    assert len(p["scores"]) == len(p["words"]) and all(np.isfinite(p["scores"]))
    if p["word"] is not None:
        assert p["word"].lower() not in T.STOPWORDS
        k = p["words"].index(p["word"])
        eligible = [s for w, s in zip(p["words"], p["scores"]) if w.lower() not in T.STOPWORDS]
        assert p["scores"][k] == max(eligible)
        assert len(p["kept"]) < len(p["ids"])
    scores = T.sd_token_attention(system.pipe, p["latents"], p["ids"])
    assert scores.shape == (len(p["ids"]),) and np.all(scores >= 0) and scores.sum() <= 1.0 + 1e-6


def test_frame_layout(system, frame, image):
    h = frame.header
    assert frame.system == "tisc"
    # only what the receiver cannot derive: the norm rides as the analog segment's scale,
    # the id dtype is CLIP's uint16 and the seed is the receiver's option
    assert set(h) == {"pos", "size"} and h["size"] == [40, 48]
    assert frame.analog.size == system.dim == 32 and frame.analog.size % 2 == 0
    assert float(np.linalg.norm(frame.analog)) > 0
    ids = np.frombuffer(frame.digital, "<u2")
    assert len(frame.digital) == 2 * ids.size and 0 <= h["pos"] <= ids.size
    assert system.token_id not in ids.tolist()
    assert frame.meta["report"]["caption"] and frame.meta["report"]["ti_steps"] == system.ti_steps


# ---------------------------------------------------------------- end to end
def test_end_to_end_high_snr_reproducible(system, image):
    link = FrameLink(PhyConfig(seed=5))
    r1 = run_link(system, image, 30.0, link, rng=np.random.default_rng(11))
    r2 = run_link(system, image, 30.0, link, rng=np.random.default_rng(11))
    assert r1.crc_ok and r1.image is not None
    assert r1.image.shape == image.shape and r1.image.dtype == np.uint8
    assert np.array_equal(r1.image, r2.image)
    assert r1.channel_uses["analog"] == system.dim // 2 and r1.channel_uses["digital"] > 0
    assert np.allclose(r1.frame_rx.analog, r1.frame_tx.analog, atol=0.2)
    assert r1.frame_rx.digital == r1.frame_tx.digital


def test_decode_uses_the_embedding_and_the_receivers_seed(system, frame):
    a = system.decode(frame)
    assert np.array_equal(a, system.decode(frame))
    other = SemanticFrame("tisc", frame.digital, -frame.analog, dict(frame.header))
    assert not np.array_equal(a, system.decode(other))
    seed, system.seed = system.seed, 99
    try:
        assert not np.array_equal(a, system.decode(frame))
    finally:
        system.seed = seed


def test_crc_failure_policies(system, frame):
    lost = build("tisc", profile="tiny", device="cpu", progress=False, threads=1, on_crc_fail="lost")
    emb = build("tisc", profile="tiny", device="cpu", progress=False, threads=1)  # embedding-only by default
    # header and payload lost: the receiver's expected norm and resolution
    rx, ok, _ = FrameLink(PhyConfig(seed=1)).send(frame, -15.0, np.random.default_rng(2))
    assert not ok and rx.crc_ok is False and rx.header_ok is False and rx.digital == b"" and rx.header == {}
    assert lost.decode(rx) is None
    img = emb.decode(rx)
    assert img is not None and img.shape == (emb.resolution, emb.resolution, 3) and img.dtype == np.uint8
    assert emb.expected_norm > 0
    # the caption lost at 256-QAM 5/6, the protected header kept: the true scale and image size
    rx, ok, _ = FrameLink(PhyConfig(modulation=256, rate="5/6", seed=1)).send(frame, 2.0, np.random.default_rng(2))
    assert not ok and rx.header_ok and rx.header == frame.header
    assert lost.decode(rx) is None
    img = emb.decode(rx)
    assert img is not None and img.shape[:2] == tuple(frame.header["size"])


def test_bad_frames_give_none(system, frame):
    assert system.decode(SemanticFrame("tisc", frame.digital, frame.analog[:4], frame.header)) is None
    assert system.decode(SemanticFrame("tisc", frame.digital, frame.analog, {})) is None
    assert system.decode(SemanticFrame("tisc", frame.digital + b"\x00", frame.analog, frame.header)) is None
    bad = dict(frame.header, pos=10_000)
    assert system.decode(SemanticFrame("tisc", frame.digital, frame.analog, bad)) is None


def test_ti_lowers_the_loss(system, image):
    """TI is stochastic gradient descent over the (noise, timestep) pairs it draws:
    the loss over exactly those pairs (re-drawn here from the same seed, in the same
    order: noise, timestep, robust-noise vector per step) is lower at the learned
    embedding than at the initial one. The tiny random UNet depends only weakly on the
    prompt, so the drop is small, but it is deterministic."""
    import torch

    p, prompt = _ti_inputs(system, image)
    pipe = system.pipe
    sched = T._train_scheduler(pipe)
    steps = 40
    gen = torch.Generator("cpu").manual_seed(0)
    pairs = []
    for _ in range(steps):
        n = torch.randn(p["latents"].shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (1,), generator=gen)
        torch.randn(p["init"].shape, generator=gen)  # the robust-noise draw (sigma 0 here)
        pairs.append((t, n))

    def objective(vec):
        v = torch.as_tensor(vec)
        with torch.no_grad(), T.inject_embedding(pipe, system.token_id, lambda: v):
            cond = T._encode_with_grad(pipe, prompt)
            return float(np.mean([torch.nn.functional.mse_loss(
                pipe.unet(sched.add_noise(p["latents"], n, t), t, encoder_hidden_states=cond).sample, n).item()
                for t, n in pairs]))

    v, losses = T.textual_inversion(pipe, p["latents"], prompt, system.token_id, p["init"], steps=steps, lr=1e-2,
                                    train_snr_db=None, seed=0, progress=False)
    assert objective(v) < objective(p["init"])


def test_registry_and_profiles():
    assert "tisc" in names()
    with pytest.raises(ValueError):
        build("tisc", profile="huge")
    with pytest.raises(ValueError):
        build("tisc", profile="tiny", on_crc_fail="retry")


def test_worker_builds_the_tiny_profile():
    from gensemcom.worker.systems import _system_loader

    s = _system_loader("tisc", "tiny")("cpu")
    assert s.profile == "tiny" and s.device == "cpu" and s.dim == 32


def test_full_profile_without_models_fails_clearly(monkeypatch, tmp_path):
    from gensemcom.models.hf import ModelNotAvailable

    monkeypatch.setenv("GENSEMCOM_BLIP", str(tmp_path / "blip"))
    monkeypatch.setenv("GENSEMCOM_SD", str(tmp_path / "sd"))
    with pytest.raises(ModelNotAvailable, match="GENSEMCOM_BLIP"):
        build("tisc", profile="full", device="cpu")
