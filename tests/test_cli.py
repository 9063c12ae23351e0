"""The gensemcom command line: help, phy-ber JSON and plot, the PHY demo."""
import json
import subprocess
import sys

import pytest

from gensemcom.cli import main

from conftest import ROOT


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "gensemcom.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("cmd", [[], ["phy-ber"], ["demo"]])
def test_help_for_every_command(cmd):
    r = run_cli(*cmd, "--help")
    assert r.returncode == 0 and "usage: gensemcom" in r.stdout


def test_phy_ber_json_uncoded_matches_theory_and_plot(tmp_path):
    plot = tmp_path / "ber.png"
    r = run_cli("phy-ber", "-m", "16", "--snrs", "6:10:4", "--min-errors", "2000", "--json", "-q", "--plot", str(plot))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    pts = rep[0]["points"]
    assert [p["esn0_db"] for p in pts] == [6.0, 10.0]
    for p in pts:
        assert p["bit_errors"] >= 2000
        assert abs(p["ber_rel_gap"]) < 0.1
    assert plot.exists() and plot.stat().st_size > 5000


def test_phy_ber_ldpc_ebn0_points_and_conversion():
    r = run_cli("phy-ber", "-m", "16", "--code", "ldpc", "--snr-type", "ebn0", "--snrs", "6", "--max-blocks", "64",
                "--json", "-q")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)[0]["points"][0]
    # 16-QAM rate 1/2: Es/N0 = Eb/N0 + 10 log10(2)
    assert p["ebn0_db"] == pytest.approx(6.0)
    assert p["esn0_db"] == pytest.approx(6.0 + 3.0103, abs=1e-3)
    assert p["blocks"] == 64 and p["bler"] == 0.0


def test_phy_ber_rejects_bad_arguments(capsys):
    assert main(["phy-ber", "-m", "8", "-q"]) == 2
    assert "order" in capsys.readouterr().err
    assert main(["phy-ber", "--snrs", "0:10:-1", "-q"]) == 2
    assert main(["phy-ber", "--code", "ldpc", "--backend", "magic", "-q"]) == 2


def test_demo_runs_flowgraph_and_reports(capsys):
    assert main(["demo", "--snr", "8", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["frames_received"] == 2
    assert rep["crc_ok"] is True and rep["caption_received"] == rep["caption_sent"]
    assert rep["analog_nmse_db"] == pytest.approx(rep["analog_nmse_expected_db"], abs=1.0)
