"""The evaluation harness: rows, summary, envelope, plots and --resume on tiny images."""
import argparse
import csv
import json

import numpy as np
import pytest

pytest.importorskip("torchmetrics")
from PIL import Image  # noqa: E402

from gensemcom.eval import harness as H  # noqa: E402
from gensemcom.systems.jpeg2000_ldpc import jpeg2000_available  # noqa: E402

pytestmark = pytest.mark.skipif(not jpeg2000_available(), reason="Pillow built without OpenJPEG")

SNRS = "-4,24"
COMBOS = ["--j2k-modulations", "4,16", "--j2k-rates", "1/2,5/6"]
N_COMBOS = 4


def _parse(argv):
    p = argparse.ArgumentParser(prog="gensemcom")
    H.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["eval", *argv])


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    y, x = np.mgrid[0:64, 0:64]
    rng = np.random.default_rng(0)
    for i in range(2):
        im = np.stack([(x * 4 + 40 * i) % 256, y * 4, (x + y) * 2], -1)
        im = np.clip(im + rng.integers(-8, 9, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(d / f"img{i}.png")
    return d


def _run(images, out, *extra):
    args = _parse(["--systems", "jpeg2000-ldpc", "--images", str(images), f"--snrs={SNRS}", "--cbr", "1/6",
                   "--out", str(out), "--metrics", "psnr,ssim,ms-ssim", "-q", *COMBOS, *extra])
    return H.run_eval(args)


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_harness_outputs_and_resume(images, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(images, out) == 0
    rows = _csv_rows(out / "rows.csv")
    assert len(rows) == 2 * 2 * N_COMBOS
    for r in rows:
        assert int(r["uses_total"]) <= int(r["budget"]) == 64 * 64 * 3 // 6
        assert float(r["cbr_actual"]) <= 1 / 6
        if r["failed"] == "True":
            assert float(r["psnr"]) == 0.0
    data = json.loads((out / "rows.json").read_text())
    env = [r for r in data if r["system"] == H.ENVELOPE]
    assert len(env) == 2 * 2 and all(r["envelope_of"].startswith("jpeg2000-ldpc@") for r in env)
    assert {"channel_uses", "metrics", "timings", "crc_ok", "failed", "cbr_actual"} <= set(env[0])
    summary = {(s["system"], s["snr"]): s for s in json.loads((out / "summary.json").read_text())}
    low, high = summary[(H.ENVELOPE, -4.0)], summary[(H.ENVELOPE, 24.0)]
    assert low["failure_rate"] == 1.0 and low["psnr"] == 0.0
    assert high["failure_rate"] == 0.0 and high["psnr"] > 20 and high["psnr_ok"] == high["psnr"]
    for m in ("psnr", "ssim", "ms-ssim", "failure_rate"):
        if m != "ms-ssim":  # 64x64 is too small for MS-SSIM: no numbers, no plot
            assert (out / f"{m}_vs_snr.png").stat().st_size > 1000
            assert (out / f"{m}_vs_uses.png").stat().st_size > 1000
    assert high["ms-ssim"].startswith("not computed")
    assert "jpeg2000-ldpc-envelope" in capsys.readouterr().out

    # resume with everything done: nothing runs
    res = H.evaluate(H.config_from_args(_parse(["--systems", "jpeg2000-ldpc", "--images", str(images),
                                                f"--snrs={SNRS}", "--cbr", "1/6", "--out", str(out), "--resume",
                                                "-q", *COMBOS])))
    assert (res["new_rows"], res["skipped_rows"]) == (0, 2 * 2 * N_COMBOS)

    # an interrupted run: drop the last 5 rows, resume runs exactly those
    lines = (out / "rows.csv").read_text().splitlines(keepends=True)
    (out / "rows.csv").write_text("".join(lines[:-5]))
    res = H.evaluate(H.config_from_args(_parse(["--images", str(images), f"--snrs={SNRS}", "--cbr", "1/6",
                                                "--out", str(out), "--resume", "-q", *COMBOS])))
    assert (res["new_rows"], res["skipped_rows"]) == (5, 2 * 2 * N_COMBOS - 5)
    assert len(_csv_rows(out / "rows.csv")) == 2 * 2 * N_COMBOS
    assert len([r for r in res["rows"] if r["system"] == H.ENVELOPE]) == 4

    # resume with other settings is refused
    assert _run(images, out, "--resume", "--channel", "rayleigh") == 2
    assert "different settings" in capsys.readouterr().err


def test_unknown_system_and_missing_images(images, tmp_path, capsys):
    assert _run(images, tmp_path / "o1", "--systems", "jpeg2000-ldpc,nope") == 2
    err = capsys.readouterr().err
    assert "unknown system" in err and "nope" in err
    assert _run(tmp_path / "missing", tmp_path / "o2") == 2
    assert "does not exist" in capsys.readouterr().err


def test_single_file_and_one_combo(images, tmp_path):
    out = tmp_path / "one"
    res = H.evaluate(H.config_from_args(_parse(["--images", str(images / "img0.png"), "--snrs", "20", "--cbr",
                                                "1/6", "--j2k-modulations", "16", "--j2k-rates", "1/2",
                                                "--out", str(out), "-q"])))
    assert res["new_rows"] == 1
    assert {r["system"] for r in res["rows"]} == {"jpeg2000-ldpc@16qam-r1/2", H.ENVELOPE}


@pytest.mark.flowgraph
def test_flowgraph_path(images, tmp_path):
    pytest.importorskip("gnuradio")
    out = tmp_path / "fg"
    res = H.evaluate(H.config_from_args(_parse(["--images", str(images / "img1.png"), "--snrs=-4,20", "--cbr",
                                                "1/6", "--j2k-modulations", "16", "--j2k-rates", "1/2",
                                                "--out", str(out), "--flowgraph", "-q"])))
    by = {r["snr"]: r for r in res["rows"] if r["system"] != H.ENVELOPE}
    assert by[20.0]["crc_ok"] and not by[20.0]["failed"] and by[20.0]["metrics"]["psnr"] > 20
    assert by[-4.0]["failed"]
    assert by[20.0]["channel_uses"]["total"] <= by[20.0]["budget"]
