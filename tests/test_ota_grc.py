"""The OTA, USRP and HackRF example flowgraphs name the right blocks.

grcc compiles them, and checks the committed .py is current, in test_grc.py (which skips
a radio example, with the reason, where gr-uhd / gr-soapy are not installed).
"""
import pytest

from conftest import ROOT

yaml = pytest.importorskip("yaml")

EXAMPLES = sorted(p for pat in ("ota_*.grc", "usrp_*.grc", "hackrf_*.grc") for p in (ROOT / "examples").glob(pat))
# blocks a radio example needs, by example-name prefix
RADIO_BLOCKS = {"usrp_": ("uhd_usrp_sink", "uhd_usrp_source"), "hackrf_": ("soapy_hackrf_sink", "soapy_hackrf_source")}


def _load(p):
    with open(p) as f:
        return yaml.safe_load(f)


def test_examples_exist():
    names = {p.stem for p in EXAMPLES}
    assert {"ota_loopback", "ota_zmq_tx", "ota_zmq_rx", "usrp_tx", "usrp_rx", "hackrf_tx", "hackrf_rx"} <= names


@pytest.mark.parametrize("grc_file", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_structure(grc_file):
    data = _load(grc_file)
    opts = data["options"]["parameters"]
    assert opts["id"] == grc_file.stem and opts["generate_options"] == "no_gui"
    ids = {b["id"] for b in data["blocks"]}
    params = {b["name"] for b in data["blocks"] if b["id"] == "parameter"}
    assert "snr_db" in params
    if grc_file.stem.endswith("tx") or grc_file.stem == "ota_loopback":
        assert "gensemcom_ota_tx" in ids
    if grc_file.stem.endswith("rx") or grc_file.stem == "ota_loopback":
        assert "gensemcom_ota_rx" in ids
    for prefix, needed in RADIO_BLOCKS.items():
        if grc_file.stem.startswith(prefix):
            assert ids & set(needed), f"{grc_file.name} uses none of {needed}"
            assert {"freq", "samp_rate"} <= params, "radio examples take --freq and --samp-rate"
    if "zmq" in grc_file.stem:
        assert ids & {"zeromq_push_sink", "zeromq_pull_source"}


