"""The protected header block, the measured MCS table and link adaptation (PHY core)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gensemcom.phy import mcs as M
from gensemcom.phy.channels import make_channel
from gensemcom.phy.header import HeaderCodec, estimate_snr_db

ROOT = Path(__file__).resolve().parents[1]


def test_header_round_trip_names_the_mcs_and_fits_one_block():
    h = HeaderCodec()
    body = bytes(range(25))
    x = h.encode(body, M.MCS(64, "3/4"))
    assert x.size == 600 == h.block_symbols  # 1,200 coded bits of rate 1/5 on QPSK
    r = h.decode(x, 1e-3)
    assert r.ok and r.body == body and r.mcs == M.MCS(64, "3/4A") and r.n_symbols == 600


def test_a_long_header_takes_more_blocks_and_block_0_says_how_many():
    h = HeaderCodec()
    body = bytes(range(100))
    x = h.encode(body, M.MCS(4, "1/5"))
    assert x.size == 4 * 600
    r = h.decode(np.concatenate([x, np.ones(50, np.complex64)]), 1e-3)
    assert r.ok and r.body == body and r.n_symbols == 2400


def test_header_failure_is_reported_not_guessed():
    h = HeaderCodec()
    x = h.encode(b"abc", M.MCS(16, "1/2"))
    r = h.decode(x * 0 + 1j, 1.0)  # garbage
    assert not r.ok and r.body is None and r.mcs is None and "CRC" in r.reason
    r = h.decode(x[:100], 1.0)
    assert not r.ok and "needs 600" in r.reason


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_snr_estimate_within_1_db(snr):
    h = HeaderCodec()
    x = h.encode(bytes(20), M.MCS(16, "1/2"))
    out = make_channel("awgn", snr, seed=1)(x)
    y = out.y
    r = h.decode(y, out.noise_var)
    assert r.ok and abs(r.snr_db - snr) < 1.0
    # without a noise variance (the blind case) the data-aided estimate still holds
    assert abs(estimate_snr_db(y, x) - snr) < 1.0


def test_auto_mcs_follows_the_table():
    table = M.load_bler_table()
    awgn = table["channels"]["awgn"]
    for snr in (-2.0, 3.0, 8.0, 15.0, 25.0):
        m, why = M.select_mcs(snr, 1e-2, "awgn")
        assert M.bler_at(m.name, snr) <= 1e-2, why
        better = [x for x in M.LADDER if x.efficiency > m.efficiency]
        assert all(M.bler_at(x.name, snr) > 1e-2 for x in better)
        assert m.name in awgn["bler"]
    assert M.select_mcs(-2.0)[0].modulation == 4
    assert M.select_mcs(30.0)[0] == M.MCS(256, "5/6")
    assert M.select_mcs(None)[0] == M.MCS(4, "1/5")  # no SNR known: the most robust
    assert M.select_mcs(10.0, modulation=16)[0].modulation == 16
    assert M.select_mcs(10.0, modulation=16, rate="1/2")[0] == M.MCS(16, "1/2")


def test_table_regeneration_runs_on_a_small_budget(tmp_path):
    out = tmp_path / "mcs.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "mcs_table.py"), "--quick", "--snrs=-2:6:2",
                    "--channels", "awgn", "--out", str(out)], check=True, capture_output=True, timeout=600)
    t = json.loads(out.read_text())
    curve = t["channels"]["awgn"]["bler"]["QPSK-1/2"]
    assert len(curve) == 9 and curve[0] > curve[-1] and curve[-1] == 0.0  # --quick: 1 dB steps


def test_header_copies_are_combined():
    h = HeaderCodec(repeat=2)
    body = bytes(range(20))
    x = h.encode(body, M.MCS(16, "1/2"))
    assert x.size == 1200 == h.n_symbols(len(body)) and np.array_equal(x[:600], x[600:])
    y = x.copy()
    y[:300] = 0  # half of the first copy erased: the second carries the header
    r = h.decode(y, 0.05)
    assert r.ok and r.body == body and r.n_symbols == 1200
    with pytest.raises(ValueError):
        HeaderCodec(repeat=0)
