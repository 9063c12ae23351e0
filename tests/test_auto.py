"""--system auto: per image, the system with the best expected quality at the SNR and budget."""
import json

import numpy as np
import pytest

from gensemcom import systems
from gensemcom.eval.harness import quality_table
from gensemcom.link import FrameLink, PhyConfig, run_link
from gensemcom.systems.auto import QUALITY_TABLE, choose, expected_quality, load_quality_table

TABLE = {"metric": "psnr", "channels": {"awgn": {"snr_db": [-5.0, 5.0, 20.0], "systems": {
    "deepjscc": {"psnr": [18.0, 24.0, 27.0], "cbr": [0.0425, 0.0425, 0.0425]},
    "jpeg2000-ldpc": {"psnr": [0.0, 20.0, 30.0], "cbr": [0.0415, 0.0415, 0.0415]},
    "prompt-only": {"psnr": [9.0, 9.0, 9.0], "cbr": [0.001, 0.001, 0.001]}}}}}


def test_choice_follows_the_table_and_the_budget():
    assert choose(TABLE, -5.0, 3000, None)[0] == "deepjscc"
    assert choose(TABLE, 20.0, 3000, None)[0] == "jpeg2000-ldpc"
    name, why = choose(TABLE, 12.5, 3000, None)  # interpolated: deepjscc 25.5, jpeg2000 25.0
    assert name == "deepjscc" and "25.50" in why and "jpeg2000-ldpc 25.00" in why
    assert choose(TABLE, 20.0, 3000, 10)[0] == "prompt-only"  # the others do not fit 10 channel uses
    with pytest.raises(ValueError, match="fits"):
        choose(TABLE, 20.0, 3000, 1)
    assert expected_quality(TABLE, "deepjscc", 40.0) == 27.0  # clamped to the table's range


@pytest.mark.skipif(not QUALITY_TABLE.is_file(), reason="no shipped quality table")
def test_the_shipped_table_picks_different_systems_at_low_and_high_snr():
    t = load_quality_table()
    assert t["metric"] == "psnr" and "awgn" in t["channels"]
    low, high = choose(t, -5.0, 768 * 512 * 3, None)[0], choose(t, 20.0, 768 * 512 * 3, None)[0]
    assert low != high, (low, high)


def test_auto_delegates_and_the_receiver_learns_the_choice_from_the_header(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps(TABLE))
    auto = systems.build("auto", "tiny", table=str(path), candidates="deepjscc,jpeg2000-ldpc")
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for snr, want in ((0.0, "deepjscc"), (25.0, "jpeg2000-ldpc")):
        res = run_link(auto, img, snr, FrameLink(PhyConfig(seed=1)), np.random.default_rng(1), budget_symbols=4000)
        assert res.frame_tx.system == want and res.frame_rx.system == want
        assert res.frame_tx.meta["report"]["auto_choice"] == want and "expected psnr" in \
            res.frame_tx.meta["report"]["auto_reason"]
        assert res.image is not None and res.image.shape == img.shape
    lost = res.frame_rx.replace(header_ok=False)
    assert auto.decode(lost, None) is None  # without the header, nobody knows which system sent it


def test_quality_table_from_an_eval_summary():
    summary = [{"system": "tisc", "snr": 0.0, "psnr": 15.0, "cbr_actual": 0.002, "lost": 0},
               {"system": "tisc", "snr": 10.0, "psnr": 16.0, "cbr_actual": 0.002, "lost": 0},
               {"system": "jpeg2000-ldpc@auto", "snr": 10.0, "psnr": 28.0, "cbr_actual": 0.04, "lost": 0},
               {"system": "jpeg2000-ldpc@16qam-r1/2", "snr": 10.0, "psnr": 29.0, "cbr_actual": 0.04, "lost": 0},
               {"system": "jpeg2000-ldpc-envelope", "snr": 10.0, "psnr": 29.0, "cbr_actual": 0.04, "lost": 0}]
    t = quality_table(summary, "awgn")
    ch = t["channels"]["awgn"]
    assert ch["snr_db"] == [0.0, 10.0] and sorted(ch["systems"]) == ["jpeg2000-ldpc", "tisc"]
    assert ch["systems"]["jpeg2000-ldpc"]["psnr"] == [None, 28.0]  # the @auto variant, what the link does
    assert ch["systems"]["tisc"]["psnr"] == [15.0, 16.0]
