"""``gensemcom link``: TISC end to end through the real flowgraph, and bad input.

Every bad input gives a one-line error naming the problem and the fix, exit code 2,
and no output folder (nothing half-written).
"""
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("gnuradio")

from gensemcom.image_io import save_image  # noqa: E402

from conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.flowgraph


def gensemcom(*args, timeout=600, env=None):
    import os

    e = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "gensemcom.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=e)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = np.clip(np.cumsum(rng.integers(-8, 9, (48, 64, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    p = tmp_path_factory.mktemp("img") / "pic.png"
    save_image(p, x)
    return p


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("gensemcom link: error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("profile", ["tiny", "embedded"])
def test_tisc_link_json_end_to_end(picture, tmp_path, profile):
    out = tmp_path / "out"
    r = gensemcom("link", "--system", "tisc", "--profile", profile, "--image", str(picture), "--snr", "20",
                  "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["system"] == "tisc" and rep["profile"] == profile and rep["snr_db"] == 20.0
    (row,) = rep["images"]
    assert row["received"] and row["crc_ok"] is True and row["shape"] == [48, 64, 3]
    cu = row["channel_uses"]
    assert cu["digital"] > 0 and cu["analog"] == (16 if profile == "tiny" else 256)
    t = row["timings_ms"]
    for k in ("encode_ms", "decode_ms", "caption_ms", "select_ms", "inversion_ms"):
        assert t[k] >= 0, k
    tx = row["transmitter"]
    assert "<*>" in tx["prompt"] and tx["caption"] and tx["ti_steps"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["pic.png", "pic_compare.png", "report.json"]
    assert json.loads((out / "report.json").read_text())["images"][0]["output"] == str(out / "pic.png")
    from PIL import Image

    assert Image.open(out / "pic_compare.png").size == (128, 48)  # sent | received
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gensemcom-link-")]  # staging removed


def test_missing_and_unreadable_images(tmp_path):
    out = tmp_path / "out"
    _one_line_error(gensemcom("link", "--image", str(tmp_path / "nope.png"), "--out", str(out)), "nope.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _one_line_error(gensemcom("link", "--image", str(bad), "--out", str(out)), "cannot read image", "broken.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(gensemcom("link", "--image", str(empty), "--out", str(out)), "no images")
    assert not out.exists()


def test_non_rgb_and_huge_images(tmp_path):
    from PIL import Image

    out = tmp_path / "out"
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(gray)
    _one_line_error(gensemcom("link", "--image", str(gray), "--out", str(out)), "grayscale", "--convert")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 4000)).save(huge)
    _one_line_error(gensemcom("link", "--image", str(huge), "--out", str(out)), "5000 x 4000", "--size")
    assert not out.exists()
    # --convert accepts the grayscale image (DeepJSCC tiny: fast)
    r = gensemcom("link", "--system", "deepjscc", "--image", str(gray), "--convert", "--profile", "tiny", "--out", str(out), "--snr", "20")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "gray.png").exists()


def test_unknown_system_and_profile(picture, tmp_path):
    out = tmp_path / "out"
    _one_line_error(gensemcom("link", "--system", "nope", "--image", str(picture), "--out", str(out)),
                    "unknown system", "tisc")
    r = gensemcom("link", "--system", "tisc", "--profile", "huge", "--image", str(picture), "--out", str(out))
    assert r.returncode == 2 and "invalid choice: 'huge'" in r.stderr
    # a profile the system does not declare is refused before any worker or model is touched
    _one_line_error(gensemcom("link", "--system", "deepjscc", "--profile", "full", "--image", str(picture),
                              "--out", str(out)), "no profile 'full'", "its profiles: embedded, tiny")
    assert not out.exists()


def test_model_that_cannot_be_loaded_offline(picture, tmp_path):
    out = tmp_path / "out"
    r = gensemcom("link", "--system", "tisc", "--profile", "full", "--image", str(picture), "--out", str(out),
                  env={"GENSEMCOM_BLIP": "Salesforce/no-such-blip-model", "HF_HOME": str(tmp_path / "hf")})
    line = _one_line_error(r, "no-such-blip-model", "GENSEMCOM_BLIP")
    assert "offline" in line or "network" in line
    r = gensemcom("link", "--system", "tisc", "--profile", "full", "--image", str(picture), "--out", str(out),
                  env={"GENSEMCOM_BLIP": str(tmp_path / "no_dir")})
    _one_line_error(r, "no_dir", "does not exist")
    assert not out.exists()
