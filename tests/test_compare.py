"""``gensemcom compare`` (what ``make demo`` runs): one image through several systems in
the real flowgraph, the grid, the quality-vs-SNR sweep and the self-contained HTML report.

The end-to-end test runs the tiny profiles: DeepJSCC (analog), JPEG2000 + LDPC (digital)
and GenED-SC (analog segments + a caption). Its assertions are known answers: the
channel uses DeepJSCC spends at CBR 1/24, the caption the receiver read equals the one
sent, the metrics equal those recomputed from the saved received images, and with the
transmitter designed for 12 dB the digital system is lost at 0 dB (the cliff) while
the analog one still delivers.
"""
import json
import re

import numpy as np
import pytest

pytest.importorskip("gnuradio")

from gensemcom.eval import compare as C  # noqa: E402
from gensemcom.image_io import save_image  # noqa: E402

from test_link_cli import gensemcom  # noqa: E402  (the CLI in a subprocess, offline)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = np.clip(np.cumsum(rng.integers(-8, 9, (64, 64, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    p = tmp_path_factory.mktemp("img") / "pic.png"
    save_image(p, x)
    return p


def test_parse_snrs():
    assert C.parse_snrs("0,3.5, 7") == [0.0, 3.5, 7.0]
    assert C.parse_snrs("0:6:3") == [0.0, 3.0, 6.0]
    assert C.parse_snrs("-4:0:2") == [-4.0, -2.0, 0.0]
    assert C.parse_snrs("") == [] and C.parse_snrs("  ") == []
    for bad in ("a,b", "0:6:0", "0:6", "1:2:-1"):
        with pytest.raises(C.CompareError, match="--snrs"):
            C.parse_snrs(bad)


def test_resolve_systems():
    from gensemcom import systems

    assert C.resolve_systems("default", "embedded") == list(C.DEFAULT_SYSTEMS)
    every = C.resolve_systems("all", "embedded")
    assert set(C.DEFAULT_SYSTEMS) <= set(every) and "prompt-only" not in every  # prompt-only has no embedded
    assert every == [n for n in systems.names() if "embedded" in systems.get(n).profiles]
    assert C.resolve_systems("deepjscc, tisc", "tiny") == ["deepjscc", "tisc"]
    with pytest.raises(C.CompareError, match="nope"):
        C.resolve_systems("deepjscc,nope", "embedded")
    with pytest.raises(C.CompareError, match="prompt-only"):
        C.resolve_systems("prompt-only", "embedded")


@pytest.mark.slow
@pytest.mark.flowgraph
def test_compare_end_to_end_tiny(picture, tmp_path):
    from PIL import Image

    from gensemcom.eval.metrics import psnr, ssim
    from gensemcom.image_io import load_image

    out = tmp_path / "cmp"
    r = gensemcom("compare", "--profile", "tiny", "--systems", "deepjscc,jpeg2000-ldpc,gened_sc",
                  "--image", str(picture), "--size", "128", "--snr", "12", "--snrs", "0,12", "--out", str(out),
                  "--json", timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    rep = json.loads(r.stdout)
    assert json.loads((out / "report.json").read_text()) == rep
    rows = {s["system"]: s for s in rep["systems"]}
    assert list(rows) == ["deepjscc", "jpeg2000-ldpc", "gened_sc"] and all(s["received"] for s in rows.values())
    ref = load_image(picture, 128)
    for name, row in rows.items():
        got = np.asarray(Image.open(out / "received" / f"{name}.png"))
        assert got.shape == ref.shape
        assert row["metrics"]["psnr"] == pytest.approx(psnr(ref, got), abs=1e-3)
        assert row["metrics"]["ssim"] == pytest.approx(ssim(ref, got), abs=1e-3)
        assert isinstance(row["metrics"]["brisque"], float)
        assert row["timings_ms"]["encode_ms"] > 0 and row["wall_s"] > 0 and row["load_s"] >= 0
    dj, j2k, ged = rows["deepjscc"]["channel_uses"], rows["jpeg2000-ldpc"]["channel_uses"], rows["gened_sc"]
    assert dj["analog"] == 3 * 128 * 128 // 24 and dj["total"] == dj["analog"] + dj["digital"]
    assert j2k["analog"] == 0 and j2k["digital"] > 0
    assert ged["received_text"] == ged["transmitter"]["caption"] and ged["received_text"]
    assert "received_text" not in rows["deepjscc"]
    # the sweep: transmitter designed for 12 dB; at 0 dB the digital system falls off the cliff
    assert rep["settings"]["sweep"] == "fixed" and rep["sweep_mcs"]
    pts = {(p["system"], p["snr_db"]): p for p in rep["sweep"]}
    assert len(pts) == 6
    assert not pts[("jpeg2000-ldpc", 0.0)]["received"] and pts[("jpeg2000-ldpc", 0.0)]["metrics"]["psnr"] == 0.0
    assert pts[("jpeg2000-ldpc", 12.0)]["received"]
    assert pts[("deepjscc", 0.0)]["received"]
    assert pts[("deepjscc", 0.0)]["metrics"]["psnr"] > 0  # random tiny weights: no ordering by SNR
    # the figures and the self-contained report
    for f in ("grid.png", "quality_vs_snr.png"):
        with Image.open(out / f) as im:
            assert im.width > 400 and im.height > 200
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    for name in rows:
        assert f"<th>{name}</th>" in page
    assert ged["received_text"].replace("<", "&lt;")[:20] in page


def test_compare_bad_input_one_line_errors(picture, tmp_path):
    two = tmp_path / "two"
    two.mkdir()
    save_image(two / "a.png", np.zeros((8, 8, 3), np.uint8))
    save_image(two / "b.png", np.zeros((8, 8, 3), np.uint8))
    for args, needle in ((["--systems", "nope"], "nope"), (["--snrs", "1:2:0"], "--snrs"),
                         (["--image", str(two)], "one image"), (["--image", str(tmp_path / "x.png")], "x.png"),
                         (["--snr", "nan"], "SNR")):
        r = gensemcom("compare", "--profile", "tiny", "--image", str(picture), "--out", str(tmp_path / "o"), *args)
        assert r.returncode == 2, (args, r.stderr[-2000:])
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("gensemcom compare: error:")]
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr[-2000:])
    assert not (tmp_path / "o").exists()


def test_compare_help_names_every_output():
    r = gensemcom("compare", "--help")
    assert r.returncode == 0
    for word in ("grid.png", "quality_vs_snr.png", "report.html", "--sweep", "--snrs", "make demo"):
        assert word in r.stdout, word


def test_encoder_and_digital_tx_adapt_on_the_same_table():
    """With "auto" MCS the encoder (which sizes rate-matched payloads) and digital_tx (which
    sends them) read the same channel's BLER table; on Rayleigh at 10 dB that is a lower MCS
    than on AWGN."""
    from gensemcom.blocks.digital_tx import digital_tx
    from gensemcom.blocks.semantic_encoder import semantic_encoder

    seen = {}
    for channel in ("awgn", "rayleigh"):
        enc = semantic_encoder("jpeg2000-ldpc", "tiny", 10.0, channel=channel)
        dtx = digital_tx(snr_db=10.0, channel=channel)
        mcs, _ = dtx.path.mcs_for(10.0)
        req = enc._request()
        assert (req["modulation"], req["code_rate"]) == (mcs.modulation, mcs.code_rate), channel
        seen[channel] = mcs.efficiency
        enc.set_channel("awgn")
        assert enc.channel == "awgn"
    assert seen["rayleigh"] < seen["awgn"]
    with pytest.raises(ValueError, match="awgn or rayleigh"):
        semantic_encoder("deepjscc", "tiny", 10.0, channel="nope")


@pytest.mark.flowgraph
def test_rate_matched_system_keeps_its_budget_on_rayleigh(tmp_path):
    """JPEG2000 + LDPC in the real flowgraph on Rayleigh: the MCS it was sized for is the one
    sent, so it spends at most its budget (CBR 1/24 of 3HW) with the repeated header."""
    from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph

    rng = np.random.default_rng(2)
    x = np.clip(np.cumsum(rng.integers(-6, 7, (256, 256, 3)), axis=1) // 4 + 128, 0, 255).astype(np.uint8)
    save_image(tmp_path / "p.png", x)
    rep = run_flowgraph(FlowgraphOptions(system="jpeg2000-ldpc", profile="tiny", images=str(tmp_path / "p.png"),
                                         snr_db=25.0, channel="rayleigh", progress=False))
    (row,) = rep["images"]
    assert row["received"], row
    assert row["channel_uses"]["header"] == 1200 and row["channel_uses"]["total"] <= 3 * 256 * 256 // 24
