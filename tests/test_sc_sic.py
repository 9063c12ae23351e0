"""Stable Cascade SIC, embedded and tiny profiles (:mod:`gensemcom.systems.sc_sic`).

* the paper's resize rule and channel-use accounting (512 x 512 -> [16, 12, 12] ->
  1,152 complex channel uses, compression ratio 341; 1024 -> [16, 24, 24]);
* 8-bit quantisation round trip; analog and digital modes through the real PHY at
  high SNR give back the sent embedding; a lost payload (digital), a lost header or a
  hostile header renders nothing;
* the real pretrained parts: TAEF2 loads strictly into diffusers' AutoencoderTiny and
  round-trips an image above a PSNR floor; EfficientNet-Lite0 loads strictly;
* the shipped embedded weights regenerate the bundled photo far better than a
  colour-mean image (fails with the model removed);
* the trainer trains, checkpoints and resumes on a tiny cache;
* the link through the worker and the flowgraph with the tiny profile.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from gensemcom import systems
from gensemcom.frame import SemanticFrame
from gensemcom.link import FrameLink, PhyConfig, run_link

PHOTO = ROOT / "examples" / "data" / "astronaut.jpg"


def _photo(size=256):
    from PIL import Image

    with Image.open(PHOTO) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def tiny():
    return systems.build("sc_sic", "tiny")


# ------------------------------------------------------------------ shapes and accounting
def test_the_papers_resize_rule():
    from gensemcom.models.sc_sic_embedded import embedding_grid, latent_grid

    assert embedding_grid(512, 512) == (12, 12) and embedding_grid(1024, 1024) == (24, 24)
    assert embedding_grid(512, 768) == (12, 18) and embedding_grid(20, 20) == (1, 1)
    assert latent_grid(512, 768) == (64, 96) and latent_grid(100, 50) == (13, 7)


@pytest.mark.parametrize("side,grid", [(512, 12), (1024, 24)])
def test_encoder_output_shapes(tiny, side, grid):
    z = tiny.embed(np.zeros((side, side, 3), np.uint8))
    assert z.shape == (16, grid, grid) and z.dtype == np.float32


def test_512_costs_1152_channel_uses_in_analog_mode(tiny):
    img = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    assert tiny.analog_uses(512, 512) == 1152
    frame = tiny.encode(img, None)
    assert frame.analog.size == 2304 and frame.header == {"size": [512, 512]}
    assert frame.meta["report"]["compression_ratio"] == pytest.approx(341.3, abs=0.1)
    res = run_link(tiny, img, 20.0, FrameLink(PhyConfig(seed=0)))
    assert res.channel_uses["analog"] == 1152 and res.channel_uses["header"] == 600
    assert res.image.shape == img.shape


# ------------------------------------------------------------------ modes
def test_quantisation_round_trip():
    from gensemcom.systems.sc_sic import dequantize, quantize

    z = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    data, lo, hi = quantize(z)
    assert len(data) == 1000 and lo == z.min() and hi == z.max()
    back = dequantize(data, lo, hi)
    assert np.max(np.abs(back - z)) <= (hi - lo) / 255 / 2 + 1e-6
    data, lo, hi = quantize(np.full(8, 3.0, np.float32))  # a constant vector survives
    assert np.allclose(dequantize(data, lo, hi), 3.0)


@pytest.mark.parametrize("name", ["sc_sic", "sc_sic-digital"])
def test_both_modes_round_trip_at_high_snr(name):
    sysm = systems.build(name, "tiny")
    img = _photo(128)
    z = sysm.embed(img)
    res = run_link(sysm, img, 60.0, FrameLink(PhyConfig(seed=0, modulation=16, rate="1/2")))
    assert res.crc_ok and res.header_ok and res.image.shape == img.shape
    got, size = sysm.received_embedding(res.frame_rx)
    assert size == (128, 128) and got.shape == z.shape
    if name == "sc_sic":
        assert res.channel_uses["analog"] == z.size // 2 and not res.frame_tx.digital
        assert np.max(np.abs(got - z)) < 1e-2 * np.abs(z).max()
    else:
        assert res.channel_uses["analog"] == 0 and len(res.frame_tx.digital) == z.size
        q = res.frame_tx.header["q"]
        assert np.max(np.abs(got - z)) <= (q[1] - q[0]) / 255 / 2 + 1e-5


def test_digital_mode_costs_what_its_bytes_cost_and_falls_off_the_cliff():
    sysm = systems.build("sc_sic-digital", "tiny")
    img = _photo(128)
    good = run_link(sysm, img, 20.0, FrameLink(PhyConfig(seed=0, modulation=16, rate="1/2")))
    # 16 x 3 x 3 = 144 bytes = 1,152 bits at 16-QAM rate 1/2 -> at least 576 payload symbols
    assert good.crc_ok and good.channel_uses["digital"] >= 600 + 576
    bad = run_link(sysm, img, -3.0, FrameLink(PhyConfig(seed=0, modulation=16, rate="1/2")))
    assert bad.header_ok and not bad.crc_ok and bad.image is None


def test_lost_or_hostile_frames_render_nothing(tiny):
    img = _photo(64)
    frame = tiny.encode(img, None)
    lost = SemanticFrame("sc_sic", b"", frame.analog, {}, crc_ok=False, header_ok=False)
    assert tiny.decode(lost, None) is None
    huge = SemanticFrame("sc_sic", b"", frame.analog, {"size": [100000, 100000]}, crc_ok=True, header_ok=True)
    assert tiny.decode(huge, None) is None
    short = SemanticFrame("sc_sic", b"", frame.analog[:-4], frame.header, crc_ok=True, header_ok=True)
    assert tiny.decode(short, None) is None
    nan = SemanticFrame("sc_sic", b"", np.full_like(frame.analog, np.nan), frame.header, crc_ok=True, header_ok=True)
    assert tiny.decode(nan, None) is None
    badq = SemanticFrame("sc_sic", bytes(frame.analog.size), None, {"size": [64, 64], "q": ["a", 1]}, crc_ok=True,
                         header_ok=True)
    assert tiny.decode(badq, None) is None
    with pytest.raises(ValueError, match="mode"):
        systems.build("sc_sic", "tiny", mode="smoke-signals")


# ------------------------------------------------------------------ the pretrained parts
def test_taef2_loads_strictly_and_round_trips_a_photo():
    import torch

    from gensemcom.models import taef2

    vae = taef2.TAEF2()
    x = torch.from_numpy(_photo(256).transpose(2, 0, 1).copy()).float()[None] / 255
    with torch.inference_mode():
        z = vae.encode(x)
        y = vae.decode(z)
    assert z.shape == (1, 32, 32, 32)
    y8 = y[0].mul(255).round().byte().permute(1, 2, 0).numpy()
    assert _psnr(y8, _photo(256)) > 25.0
    sd = torch.load(taef2.TAEF2_DIR / "taef2_encoder.pth", weights_only=True)
    assert len(sd) == len(vae.vae.encoder.layers.state_dict())
    assert (taef2.TAEF2_DIR / "LICENSE").read_text().startswith("MIT License")


def test_taef2_refuses_a_file_with_a_missing_key(tmp_path):
    import shutil

    import torch

    from gensemcom.models import taef2

    shutil.copy(taef2.TAEF2_DIR / "taef2_decoder.pth", tmp_path / "taef2_decoder.pth")
    sd = torch.load(taef2.TAEF2_DIR / "taef2_encoder.pth", weights_only=True)
    sd.pop("11.pool.1.weight")
    torch.save(sd, tmp_path / "taef2_encoder.pth")
    with pytest.raises(RuntimeError, match="pool"):
        taef2.load_taef2(tmp_path)


def test_efficientnet_lite0_loads_strictly_and_sees_a_macaw_in_kodim23():
    import torch

    from gensemcom.models.effnet_lite import load_pretrained
    from gensemcom.train.deepjscc import shared_dir

    m = load_pretrained()
    last, head = m.features(torch.zeros(1, 3, 384, 384))
    assert last.shape == (1, 320, 12, 12) and head.shape == (1, 1280, 12, 12)
    kodim23 = shared_dir() / "data" / "kodak" / "kodim23.png"
    if not kodim23.is_file():
        pytest.skip("Kodak (../shared/data/kodak) not present: the ImageNet check needs kodim23")
    from PIL import Image

    with Image.open(kodim23) as im:
        x = torch.from_numpy(np.asarray(im.convert("RGB").resize((224, 224))).transpose(2, 0, 1).copy())
    with torch.inference_mode():
        assert int(m(x[None].float() / 255).argmax()) == 88  # ImageNet class 88: macaw


# ------------------------------------------------------------------ the shipped model
def test_embedded_weights_regenerate_the_photo():
    from gensemcom.models.sc_sic_embedded import WEIGHTS

    assert WEIGHTS.is_file() and WEIGHTS.with_suffix(".json").is_file()
    sysm = systems.build("sc_sic", "embedded")
    img = _photo(256)
    res = run_link(sysm, img, 20.0, FrameLink(PhyConfig(seed=0)))
    assert res.crc_ok and res.channel_uses["analog"] == 16 * 6 * 6 // 2
    mean = np.broadcast_to(img.mean((0, 1)).round().astype(np.uint8), img.shape)
    got = _psnr(res.image, img)  # 14.7 dB measured against 10.3 for the colour mean (a 6 x 6 grid of Z)
    assert got > 13.5 and got > _psnr(mean, img) + 3.5
    # the noise-conditioned Stage B degrades gracefully: -2 dB (11.5 measured) still beats the colour mean
    low = run_link(sysm, img, -2.0, FrameLink(PhyConfig(seed=0)))
    assert _psnr(mean, img) + 0.7 < _psnr(low.image, img) < got


# ------------------------------------------------------------------ the trainer
def test_trainer_trains_checkpoints_and_resumes(tmp_path):
    import torch

    from gensemcom.train import sc_sic

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from PIL import Image

    for i, s in enumerate((256, 288)):
        Image.fromarray(_photo(s)).save(imgs / f"{i}.png")
    common = ["--data", str(imgs), "--cache", str(tmp_path / "cache.pt"), "--crops-per-image", "2", "--batch", "2",
              "--hidden", "8", "--widths", "8,8,8", "--threads", "1", "--eval-every", "0", "--out",
              str(tmp_path / "ckpt.pt"), "--export-to", str(tmp_path / "w.pt")]
    assert sc_sic.main(common + ["--steps", "3"]) == 0
    cache = torch.load(tmp_path / "cache.pt", weights_only=False)
    assert cache["head"].shape == (4, 1280, 6, 6) and cache["latent"].shape == (4, 32, 32, 32)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"] == 3
    assert sc_sic.main(common + ["--steps", "5", "--resume"]) == 0
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"] == 5
    record = json.loads((tmp_path / "w.json").read_text())
    assert record["training"]["steps"] == 5 and record["data"]["kodak_used_for_training"] is False
    sysm = systems.build("sc_sic", "embedded", weights=str(tmp_path / "w.pt"))
    assert sysm.decode(sysm.encode(_photo(64), None), None).shape == (64, 64, 3)


# ------------------------------------------------------------------ worker and flowgraph
@pytest.fixture(scope="module")
def worker():
    from gensemcom.worker.server import WorkerServer

    srv = WorkerServer("tcp://127.0.0.1:*", profile="tiny").start()
    yield srv
    srv.stop()


@pytest.mark.flowgraph
def test_sc_sic_through_the_flowgraph(tmp_path, worker):
    pytest.importorskip("gnuradio")
    from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph
    from gensemcom.image_io import save_image

    save_image(tmp_path / "p.png", _photo(96))
    for name in ("sc_sic", "sc_sic-digital"):
        rep = run_flowgraph(FlowgraphOptions(system=name, profile="tiny", images=str(tmp_path / "p.png"),
                                             snr_db=15.0, address=worker.endpoint, timeout_s=120))
        row = rep["images"][0]
        assert row["received"], (name, row)
        if name == "sc_sic":
            assert row["channel_uses"]["analog"] == 16 * 2 * 2 // 2
        else:
            assert row["channel_uses"]["analog"] == 0 and row["channel_uses"]["digital"] > 600
    assert Path(tmp_path / "p.png").is_file()
