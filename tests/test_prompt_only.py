"""Prompt-only baseline (BLIP caption -> digital path -> SD) on the tiny random models."""
import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("hf_offline", "one_torch_thread")

from gensemcom.frame import SemanticFrame  # noqa: E402
from gensemcom.systems import build, names  # noqa: E402
from gensemcom.link import FrameLink, PhyConfig, run_link  # noqa: E402


@pytest.fixture(scope="module")
def system():
    return build("prompt-only", profile="tiny", device="cpu", threads=1)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(5).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def test_frame_is_digital_token_ids(system, image):
    f = system.encode(image)
    assert f.system == "prompt-only" and f.analog.size == 0
    assert f.header["dt"] == "<u2" and f.header["size"] == [40, 48] and "seed" in f.header
    ids = np.frombuffer(f.digital, "<u2").tolist()
    assert ids and ids == system.pipe.tokenizer(f.meta["report"]["caption"], add_special_tokens=False).input_ids


def test_end_to_end_reproducible(system, image):
    link = FrameLink(PhyConfig(seed=3))
    r1 = run_link(system, image, 30.0, link, rng=np.random.default_rng(1))
    r2 = run_link(system, image, 30.0, link, rng=np.random.default_rng(1))
    assert r1.crc_ok and r1.image is not None
    assert r1.image.shape == image.shape and r1.image.dtype == np.uint8
    assert np.array_equal(r1.image, r2.image)
    assert r1.channel_uses["analog"] == 0 and r1.channel_uses["digital"] > 0
    reseeded = SemanticFrame("prompt-only", r1.frame_tx.digital, header=dict(r1.frame_tx.header, seed=1))
    assert not np.array_equal(system.decode(reseeded), r1.image)


def test_utf8_encoding_matches_ids(image):
    ids = build("prompt-only", profile="tiny", device="cpu", threads=1)
    txt = build("prompt-only", profile="tiny", device="cpu", threads=1, encoding="utf8")
    f = txt.encode(image)
    assert f.header["dt"] == "utf8" and f.digital.decode("utf-8") == f.meta["report"]["caption"]
    a = txt.decode(f)
    assert a is not None and a.shape == image.shape
    assert np.array_equal(a, ids.decode(ids.encode(image)))  # same caption, same seed, same image


def test_crc_failure_gives_none(system, image):
    f = system.encode(image)
    rx, ok, _ = FrameLink(PhyConfig(seed=1)).send(f, -15.0, np.random.default_rng(2))
    assert not ok and system.decode(rx) is None
    assert system.decode(SemanticFrame("prompt-only", f.digital, header=f.header, crc_ok=False)) is None


def test_bad_frames_give_none(system, image):
    f = system.encode(image)
    assert system.decode(SemanticFrame("prompt-only", f.digital + b"\x01", header=f.header)) is None
    assert system.decode(SemanticFrame("prompt-only", b"\xff\xff", header=f.header)) is None  # id 65535
    assert system.decode(SemanticFrame("prompt-only", b"\xff\xfe", header={"dt": "utf8"})) is None


def test_registry_and_profiles():
    assert "prompt-only" in names()
    with pytest.raises(ValueError, match="no profile 'embedded'; its profiles: full, tiny"):
        build("prompt-only", profile="embedded")
    with pytest.raises(ValueError):
        build("prompt-only", profile="tiny", encoding="ascii85")


def test_full_profile_without_models_fails_clearly(monkeypatch, tmp_path):
    from gensemcom.models.hf import ModelNotAvailable

    monkeypatch.setenv("GENSEMCOM_BLIP", str(tmp_path / "blip"))
    monkeypatch.setenv("GENSEMCOM_SD", str(tmp_path / "sd"))
    with pytest.raises(ModelNotAvailable, match="GENSEMCOM_BLIP"):
        build("prompt-only", profile="full", device="cpu")
