"""The evaluation harness: rows, summary, envelope, plots and --resume on tiny images;
the envelope's choice, the default SNRs, the CBR labels and the loss markers on
synthetic rows."""
import argparse
import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torchmetrics")
from PIL import Image  # noqa: E402

from gensemcom.eval import harness as H  # noqa: E402
from gensemcom.eval import plots as P  # noqa: E402
from gensemcom.systems.jpeg2000_ldpc import jpeg2000_available  # noqa: E402

needs_j2k = pytest.mark.skipif(not jpeg2000_available(), reason="Pillow built without OpenJPEG")

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


@needs_j2k
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
    assert {"channel_uses", "metrics", "timings", "crc_ok", "failed", "header_lost", "cbr_actual"} <= set(env[0])
    assert len([r for r in data if r["system"] == H.BEST_MEAN]) == 2 * 2
    assert all(r["header_lost"] in ("True", "False") for r in rows)
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


@needs_j2k
def test_unknown_system_and_missing_images(images, tmp_path, capsys):
    assert _run(images, tmp_path / "o1", "--systems", "jpeg2000-ldpc,nope") == 2
    err = capsys.readouterr().err
    assert "unknown system" in err and "nope" in err
    assert _run(tmp_path / "missing", tmp_path / "o2") == 2
    assert "does not exist" in capsys.readouterr().err


@needs_j2k
def test_single_file_and_one_combo(images, tmp_path):
    out = tmp_path / "one"
    res = H.evaluate(H.config_from_args(_parse(["--images", str(images / "img0.png"), "--snrs", "20", "--cbr",
                                                "1/6", "--j2k-modulations", "16", "--j2k-rates", "1/2",
                                                "--out", str(out), "-q"])))
    assert res["new_rows"] == 1
    assert {r["system"] for r in res["rows"]} == {"jpeg2000-ldpc@16qam-r1/2", H.ENVELOPE, H.BEST_MEAN}


@needs_j2k
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


# ------------------------------------------------------------ synthetic rows
def _row(system, image, snr, psnr, failed=False, header_lost=False, uses=800, hw=(64, 64), reason=None):
    """One harness row as :func:`H.evaluate` writes it (the fields the summary reads)."""
    base = system.split("@")[0]
    return {"system": system, "base_system": base, "image": image, "snr": float(snr), "channel": "awgn",
            "failed": failed, "header_lost": header_lost, "fail_reason": reason or ("crc" if failed else None),
            "height": hw[0], "width": hw[1], "channel_uses": {"digital": uses, "analog": 0, "total": uses},
            "cbr_actual": H.achieved_cbr(uses, *hw), "metrics": {"psnr": 0.0 if failed else psnr}}


def test_envelope_never_trades_a_lost_image_for_a_higher_mean():
    a, b, c = "jpeg2000-ldpc@64qam-r5/6", "jpeg2000-ldpc@16qam-r1/2", "jpeg2000-ldpc@4qam-r1/2"
    rows = []
    # 5 dB: a has the best mean (40 + 40 + 40 + 0) / 4 = 30 but loses img3, which b and c deliver
    for i in range(4):
        rows.append(_row(a, f"img{i}", 5, 40.0, failed=(i == 3)))
        rows.append(_row(b, f"img{i}", 5, 28.0))
        rows.append(_row(c, f"img{i}", 5, 25.0))
    # -5 dB: every combination loses images; c loses the fewest
    for i in range(4):
        rows.append(_row(a, f"img{i}", -5, 40.0, failed=True, header_lost=True))
        rows.append(_row(b, f"img{i}", -5, 35.0, failed=(i < 2)))
        rows.append(_row(c, f"img{i}", -5, 20.0, failed=(i == 0)))
    picked = {(r["system"], r["snr"]): r["envelope_of"] for r in H.envelope_rows(rows)}
    assert picked[(H.ENVELOPE, 5.0)] == b  # the best of those that lose nothing
    assert picked[(H.BEST_MEAN, 5.0)] == a  # reported beside it
    assert picked[(H.ENVELOPE, -5.0)] == c  # fewest lost, although b's mean (17.5) beats c's (15)
    assert picked[(H.BEST_MEAN, -5.0)] == b
    summary = {(s["system"], s["snr"]): s for s in H.summarize(rows + H.envelope_rows(rows), ["psnr"])}
    assert summary[(H.ENVELOPE, 5.0)]["lost"] == 0 and summary[(H.BEST_MEAN, 5.0)]["lost"] == 1
    assert summary[(a, -5.0)]["header_lost"] == 4 and summary[(b, -5.0)]["header_lost"] == 0


def test_default_snrs_start_at_minus_5_and_snrs_still_parse():
    cfg = H.config_from_args(_parse([]))
    assert cfg.snrs == list(H.DEFAULT_SNRS) and cfg.snrs[0] == -5.0 and cfg.snrs == sorted(cfg.snrs)
    assert H.EvalConfig(systems=["deepjscc"]).snrs[0] == -5.0
    assert H.config_from_args(_parse(["--snrs=-4:0:2"])).snrs == [-4.0, -2.0, 0.0]
    assert H.config_from_args(_parse(["--snrs", "3,7"])).snrs == [3.0, 7.0]


def test_link_outcome_reads_header_ok_when_the_link_reports_it():
    old = SimpleNamespace(image=None, crc_ok=False)  # a link without header_ok
    assert H.link_outcome(old) == {"crc_ok": False, "failed": True, "header_lost": True, "fail_reason": "crc"}
    new = SimpleNamespace(image=None, crc_ok=False, header_ok=True)  # header arrived, payload lost
    assert H.link_outcome(new)["header_lost"] is False and H.link_outcome(new)["failed"] is True
    ok = SimpleNamespace(image=np.zeros((2, 2, 3), np.uint8), crc_ok=True, header_ok=True)
    assert H.link_outcome(ok) == {"crc_ok": True, "failed": False, "header_lost": False, "fail_reason": None}


def test_cbr_label_is_measured_from_channel_uses():
    # 481x321 at 20,008 channel uses (DeepJSCC's padded latent) and at 19,200 (fitted to 1/24)
    for uses, label in ((20008, "CBR 1/23.2"), (19200, "CBR 1/24.1")):
        rows = [_row("deepjscc", f"img{i}", snr, 30.0, uses=uses, hw=(481, 321)) for i in range(2) for snr in (0, 10)]
        assert P.cbr_label(H.summarize(rows, ["psnr"])) == label
    nothing = [_row("x", "img0", 0, 0.0, failed=True, uses=0, reason="budget: too small")]
    assert P.cbr_label(H.summarize(nothing, ["psnr"])) is None
    assert P.channel_label("awgn") == "AWGN"
    assert P.channel_label("rayleigh", "lmmse", 64) == "Rayleigh block fading (64 symbols), LMMSE channel estimate"
    assert "perfect CSI" in P.channel_label("rayleigh", "perfect")


def test_plot_marks_lost_images_and_lost_headers(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    rows = []
    for i in range(3):
        for snr in H.DEFAULT_SNRS:
            rows.append(_row("deepjscc", f"img{i}", snr, 20 + snr / 2, uses=512))
            lost = snr < 0 or (snr < 5 and i == 0)
            rows.append(_row("tisc", f"img{i}", snr, 18 + snr / 4, failed=lost, header_lost=lost and snr < 0,
                             uses=300))
            for combo, cliff in (("jpeg2000-ldpc@4qam-r1/2", 0), ("jpeg2000-ldpc@16qam-r3/4", 10)):
                rows.append(_row(combo, f"img{i}", snr, 25 + snr / 3, failed=snr < cliff,
                                 header_lost=snr < cliff - 3, uses=510))
    summary = H.summarize(rows + H.envelope_rows(rows), ["psnr"])
    tisc = {s["snr"]: s for s in summary if s["system"] == "tisc"}
    assert (tisc[-5.0]["lost"], tisc[-5.0]["header_lost"]) == (3, 3)
    assert (tisc[2.0]["lost"], tisc[2.0]["header_lost"]) == (1, 0)
    out = tmp_path / "plots"
    title = P.channel_label("rayleigh", "ls", 64) + "; budget CBR 1/24"
    files = P.make_plots(summary, ["psnr", "failure_rate"], str(out), title)
    assert sorted(p.rsplit("/", 1)[1] for p in files) == ["failure_rate_vs_snr.png", "failure_rate_vs_uses.png",
                                                         "psnr_vs_snr.png", "psnr_vs_uses.png"]
    png = (out / "psnr_vs_snr.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    assert not P.plot_metric(summary, "no-such-metric", str(out / "none.png"))
    # curves are told apart by colour and marker together
    styles = [(st["color"], st["marker"]) for st in (P._style(i, f"s{i}") for i in range(40))]
    assert len(set(styles)) == 40
