"""TISC's embedded profile: the small captioner and inversion decoder, the
textual inversion against the frozen decoder, and the shipped weights.

Unit tests use a random bundle saved to a temporary file (the real save/load path);
the end-to-end tests use the shipped weights, which are part of the package: they
fail, not skip, when the weights are missing.
"""
import math

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

torch = pytest.importorskip("torch")

from gensemcom.frame import SemanticFrame  # noqa: E402
from gensemcom.models import tisc_embedded as E  # noqa: E402
from gensemcom.systems import build  # noqa: E402
from gensemcom.systems import tisc as T  # noqa: E402
from gensemcom.link import FrameLink, PhyConfig, run_link  # noqa: E402

WORDS = ["dog", "grass", "runs", "red", "ball", "man", "a", "the", "in", "on", "through", "water"]


@pytest.fixture(scope="module")
def random_bundle_path(tmp_path_factory):
    torch.manual_seed(0)
    v = E.Vocab(WORDS)
    b = E.EmbeddedTISC(v, E.Captioner(len(v)), E.InversionDecoder(len(v)), {"expected_norm": 7.0})
    path = tmp_path_factory.mktemp("bundle") / "tisc_embedded.pt"
    b.save(path, half=False)
    return path


@pytest.fixture(scope="module")
def bundle(random_bundle_path):
    return E.EmbeddedTISC.load(random_bundle_path)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(5)
    x = np.linspace(0, 255, 80)
    img = np.stack(np.broadcast_arrays(x[None, :], x[:, None] * 0.5, 128.0 + 0 * x[None, :]), -1)
    return np.clip(img[:60] + rng.normal(0, 10, (60, 80, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shipped():
    return build("tisc", profile="embedded", progress=False, threads=1)


@pytest.fixture(scope="module")
def astronaut():
    from pathlib import Path

    from gensemcom.image_io import load_image

    return load_image(Path(__file__).resolve().parents[1] / "examples" / "data" / "astronaut.jpg")


# ---------------------------------------------------------------- vocabulary, bundle
def test_vocab_round_trip_and_specials():
    v = E.Vocab(WORDS)
    assert v.itos[:5] == E.SPECIALS and len(v) == 5 + len(WORDS)
    ids = v.encode("A red Dog, runs through the  WATER!")
    assert v.decode(ids) == "a red dog runs through the water"
    assert v.encode("a zebra")[1] == E.UNK
    assert v.decode([E.BOS, ids[0], E.EOS, E.PAD]) == "a"
    built = E.Vocab.build(["a dog", "a dog runs", "a cat"], min_count=2)
    assert built.itos[5:] == ["a", "dog"]


def test_bundle_save_load_round_trip(bundle, random_bundle_path, image, tmp_path):
    again = E.EmbeddedTISC.load(random_bundle_path)
    ids, betas = bundle.caption(image)
    assert (ids, list(betas)) == (lambda r: (r[0], list(r[1])))(again.caption(image))
    v = bundle.init_embedding(image)
    assert v.shape == (bundle.dim,) and np.array_equal(v, again.init_embedding(image))
    assert np.array_equal(bundle.render(ids, v, (30, 40)), again.render(ids, v, (30, 40)))
    assert bundle.record["expected_norm"] == 7.0
    with pytest.raises(FileNotFoundError, match="train them"):
        E.EmbeddedTISC.load(tmp_path / "missing.pt")
    torch.save({"format": "other"}, str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="not a TISC embedded"):
        E.EmbeddedTISC.load(tmp_path / "other.pt")


def test_caption_never_emits_specials_and_scores_are_gates(bundle, image):
    ids, betas = bundle.caption(image, max_len=12)
    assert 0 < len(ids) <= 12 and len(betas) == len(ids)
    assert not {E.PAD, E.BOS, E.UNK, E.PLACEHOLDER_ID, E.EOS} & set(ids)
    assert all(0.0 < b < 1.0 for b in betas)
    assert all(a != b for a, b in zip(ids, ids[1:]))  # no immediate repetition


def test_render_and_context(bundle):
    v = np.zeros(bundle.dim, np.float32)
    a = bundle.render([], v)
    assert a.shape == (bundle.res, bundle.res, 3) and a.dtype == np.uint8
    assert bundle.render([], v, (33, 47)).shape == (33, 47, 3)
    dog = bundle.vocab.stoi["dog"]
    # the placeholder and specials do not enter the context; words do
    assert np.array_equal(a, bundle.render([E.PLACEHOLDER_ID, E.PAD], v))
    assert not np.array_equal(a, bundle.render([dog], v))


# ---------------------------------------------------------------- textual inversion
def test_inversion_lowers_the_loss_and_changes_only_v(bundle, image):
    dec = bundle.decoder
    before = {k: t.clone() for k, t in dec.state_dict().items()}
    ids = [bundle.vocab.stoi["dog"]]
    init = bundle.init_embedding(image)
    x = bundle.to_tensor(image)
    c = dec.context(torch.tensor([ids]))

    def objective(v, sigma):  # the robust loss on fixed noise draws
        g = torch.Generator().manual_seed(99)
        d = torch.randn((64, bundle.dim), generator=g) * sigma
        with torch.no_grad():
            y = dec.generate(torch.as_tensor(v).view(1, -1) + d, c.expand(64, -1))
        return float(((y - x) ** 2).mean())

    v, losses = E.invert(bundle, image, ids, init, steps=40, lr=0.05, train_snr_db=-5.0, seed=0, progress=False)
    sigma = T.sigma_from_snr(init, -5.0)
    assert objective(v, sigma) < 0.9 * objective(init, sigma)
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert all(torch.equal(before[k], t) for k, t in dec.state_dict().items())
    assert not any(p.requires_grad for p in dec.parameters())


def test_inversion_noise_has_the_variance_of_its_snr(bundle, image, monkeypatch):
    """With lr=0, v stays at init and G sees init + delta: var(delta) = sigma^2."""
    seen = []
    real = bundle.decoder.generate

    def spy(v, c):
        seen.append(v.detach().clone())
        return real(v, c)

    monkeypatch.setattr(bundle.decoder, "generate", spy)
    init = bundle.init_embedding(image)
    v, _ = E.invert(bundle, image, [], init, steps=25, lr=0.0, train_snr_db=3.0, draws=4, seed=1, progress=False)
    assert np.allclose(v, init)
    deltas = torch.cat(seen) - torch.as_tensor(init)
    want = T.sigma_from_snr(init, 3.0) ** 2
    assert deltas.shape == (100, bundle.dim)
    assert abs(float(deltas.var()) / want - 1.0) < 0.05
    assert abs(10 * math.log10(float((torch.as_tensor(init) ** 2).mean()) / float(deltas.var())) - 3.0) < 0.25


# ---------------------------------------------------------------- the system, random bundle
def test_system_frame_and_round_trip(random_bundle_path, image):
    s = build("tisc", profile="embedded", weights=str(random_bundle_path), ti_steps=5, progress=False,
                    threads=1)
    assert s.profile == "embedded" and s.dim == 512 and s.token_id == E.PLACEHOLDER_ID
    f = s.encode(image)
    assert f.analog.shape == (s.dim,) and float(np.linalg.norm(f.analog)) > 0  # v itself: its norm is the scale
    assert f.header == {"pos": f.header["pos"], "size": [60, 80]}
    assert f.meta["report"]["ti_steps"] == 5 and T.PLACEHOLDER in f.meta["report"]["prompt"]
    r = run_link(s, image, 40.0, FrameLink(PhyConfig(seed=3)), rng=np.random.default_rng(4))
    assert r.crc_ok and r.frame_rx.digital == r.frame_tx.digital
    assert r.image.shape == image.shape and r.channel_uses["analog"] == 256


def test_system_bad_frames_and_crc_policies(random_bundle_path, image):
    s = build("tisc", profile="embedded", weights=str(random_bundle_path), ti_steps=2, progress=False,
              on_crc_fail="lost")
    fb = build("tisc", profile="embedded", weights=str(random_bundle_path), ti_steps=2, progress=False)
    f = s.encode(image)
    assert s.decode(SemanticFrame("tisc", f.digital, f.analog[:10], f.header)) is None
    assert s.decode(SemanticFrame("tisc", f.digital, f.analog, dict(f.header, pos=999))) is None
    assert s.decode(SemanticFrame("tisc", b"\xff\xff", f.analog, f.header)) is None  # id beyond the vocabulary
    assert s.expected_norm == 7.0
    rx, ok, _ = FrameLink(PhyConfig(seed=1)).send(f, -15.0, np.random.default_rng(2))
    assert not ok and s.decode(rx) is None
    img = fb.decode(rx)
    assert img.shape == (s.resolution, s.resolution, 3)


# ---------------------------------------------------------------- the shipped weights
def test_shipped_weights_and_record(shipped):
    b = shipped.bundle
    assert E.WEIGHTS.is_file() and E.WEIGHTS.stat().st_size < 16e6
    rec = b.record
    assert rec["made_by"] == "gensemcom train tisc-embedded"
    assert rec["decoder"]["steps"] > 0 and rec["captioner"]["steps"] > 0
    assert rec["expected_norm"] > 0 and len(b.vocab) == rec["vocab_size"]


def test_shipped_link_at_high_snr(shipped, astronaut):
    """Exact caption and an analog error at the SNR's level, and a received image
    that resembles the sent one more than a flat grey or another image does."""
    link = FrameLink(PhyConfig(seed=7))
    r = run_link(shipped, astronaut, 25.0, link, rng=np.random.default_rng(1))
    assert r.crc_ok and r.frame_rx.digital == r.frame_tx.digital
    ids = r.frame_tx.meta["report"]["caption"].split()
    assert len(ids) >= 2 and r.frame_tx.meta["report"]["word"] in ids
    # analog error: D reals over D/2 unit-power symbols at Es/N0, de-normalised by ||v||
    d = shipped.dim
    err = float(np.sum((r.frame_rx.analog - r.frame_tx.analog) ** 2))
    norm2 = float(np.sum(r.frame_tx.analog.astype(np.float64) ** 2))
    want = d * 10 ** (-25.0 / 10) / 2 * (2.0 / d) * norm2  # per-real noise var / per-real signal power, times ||v||^2
    assert 0.6 * want < err < 1.6 * want
    img = r.image
    assert img.shape == astronaut.shape

    def mse(a, b):
        return float(np.mean((a.astype(float) - b.astype(float)) ** 2))

    assert mse(img, astronaut) < 0.5 * mse(np.full_like(astronaut, 128), astronaut)
    assert mse(img, astronaut) < mse(img, astronaut[::-1, ::-1])


def test_shipped_caption_and_selection(shipped, astronaut):
    p = shipped._prepare_embedded(astronaut)
    assert p["caption"] and p["word"] is not None and p["word"] not in T.STOPWORDS
    eligible = [s for w, s in zip(p["words"], p["scores"]) if w not in T.STOPWORDS]
    assert p["scores"][p["pos"]] == max(eligible)
