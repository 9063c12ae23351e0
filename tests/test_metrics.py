"""Image metrics: known answers, failure convention, and weights that are not there."""
import math

import numpy as np
import pytest

pytest.importorskip("torchmetrics")

from gensemcom.eval import metrics as M  # noqa: E402


def _img(h=64, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_psnr_identical_is_capped():
    x = _img()
    assert M.psnr(x, x) == M.PSNR_CAP_DB == 100.0


def test_psnr_known_mse():
    # torchmetrics works partly in float32: agreement to 1e-5 dB
    ref = np.full((32, 32, 3), 100, np.uint8)
    out = ref + np.uint8(5)  # MSE 25
    assert M.psnr(ref, out) == pytest.approx(10 * math.log10(255 ** 2 / 25), abs=1e-5)
    out2 = ref.copy()
    out2[::2] += 10  # half the pixels off by 10: MSE 50
    assert M.psnr(ref, out2) == pytest.approx(10 * math.log10(255 ** 2 / 50), abs=1e-5)


def test_ssim_identical_is_one_and_noise_lowers_it():
    x = _img()
    assert M.ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    y = np.clip(x.astype(int) + np.random.default_rng(1).integers(-40, 41, x.shape), 0, 255).astype(np.uint8)
    assert 0.0 < M.ssim(x, y) < 0.99


def test_ms_ssim_256():
    y, xx = np.mgrid[0:256, 0:256]
    x = np.stack([xx, y, (xx + y) // 2], -1).astype(np.uint8)
    assert M.ms_ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(x.astype(int) + np.random.default_rng(2).integers(-30, 31, x.shape), 0, 255).astype(np.uint8)
    v = M.ms_ssim(x, noisy)
    assert 0.5 < v < 1.0
    assert M.ms_ssim(_img(), _img()).startswith("not computed")  # 64x64 is too small for 5 scales


def test_compute_metrics_registry_and_failure():
    x = _img()
    r = M.compute_metrics(x, x, "psnr,ssim")
    assert r == {"psnr": 100.0, "ssim": pytest.approx(1.0, abs=1e-6), "failed": False}
    f = M.compute_metrics(x, None, ["psnr", "ssim", "ms-ssim"])
    assert f == {"psnr": 0.0, "ssim": 0.0, "ms-ssim": 0.0, "failed": True}
    with pytest.raises(ValueError, match="unknown metric"):
        M.compute_metrics(x, x, ["psnr", "nope"])
    with pytest.raises(ValueError, match="shape"):
        M.compute_metrics(x, _img(32, 32), ["psnr"])
    assert M.parse_metrics("PSNR,msssim,ms-ssim") == ["psnr", "ms-ssim"]


def test_weight_metrics_not_computed_without_weights(tmp_path, monkeypatch):
    for var in ("GENSEMCOM_WEIGHTS", "GENSEMCOM_CLIP_MODEL", "GENSEMCOM_DINO_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))
    x = _img()
    names = ["lpips-vgg", "lpips-alex", "clip-i", "dino-i", "clip-score", "fid"]
    if not M._brisque_model_file():  # the PyPI brisque package ships its model: computed offline
        names.append("brisque")
    r = M.compute_metrics(x, x, names, caption="a test")
    assert all(r[n] == M.NOT_COMPUTED for n in names), r
    assert M.compute_set_metrics([x, x], [x, x], ["fid"]) == {"fid": M.NOT_COMPUTED}
    # a failed image does not turn an unavailable metric into a number
    assert M.compute_metrics(x, None, ["lpips-vgg"])["lpips-vgg"] == M.NOT_COMPUTED


def test_brisque_runs_offline_and_prefers_a_sharp_photo_to_its_blur():
    pytest.importorskip("brisque")
    pytest.importorskip("cv2")
    from PIL import Image

    from conftest import ROOT

    with Image.open(ROOT / "examples" / "data" / "astronaut.jpg") as im:
        sharp = np.asarray(im.convert("RGB"))
        blur = np.asarray(im.convert("RGB").resize((64, 64)).resize(im.size, Image.BICUBIC))
    assert not M.weights_status()["brisque"].startswith(M.NOT_COMPUTED)
    r_sharp = M.compute_metrics(sharp, sharp, ["brisque"])["brisque"]
    r_blur = M.compute_metrics(sharp, blur, ["brisque"])["brisque"]
    assert isinstance(r_sharp, float) and r_sharp + 30 < r_blur  # lower is better (13 vs 78 measured)
