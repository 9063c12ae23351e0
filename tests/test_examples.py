"""The TISC and SC-SIC loopback examples (``examples/tisc_loopback.grc``, ``sc_sic_loopback.grc``), end to end.

* grcc compiles it against the repository's ``grc/`` into a Qt GUI flowgraph whose
  command line takes the profile, image, SNR, channel and output folder (every example
  also goes through ``test_grc.py``: compiles, committed .py up to date);
* its committed script runs as GRC runs it, under ``/usr/bin/python3`` with the
  installed module, headless (``QT_QPA_PLATFORM=offscreen``), ``--profile tiny``, one
  small image: the image sink writes exactly one received PNG, at the sent size (the
  TISC receiver resizes to it), and the script exits cleanly on SIGTERM, as on Ctrl-C.

GRC's ``/usr/bin/python3`` has no torch here, so the script is pointed (``--address``)
at an inference worker this test starts with its own interpreter, the way a flowgraph
uses a worker on a GPU host.
"""
import importlib.util
import os
import signal
import subprocess
import time

import numpy as np
import pytest

import test_grc
from conftest import ROOT
from test_grc import _grcc, _load, needs_grcc

grc_env = test_grc.grc_env  # the fixture that points grcc at the repository's grc/ only

GRC_FILE = ROOT / "examples" / "tisc_loopback.grc"
SCRIPT = ROOT / "examples" / "tisc_loopback.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def _system_python_has(code):
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, cwd="/").returncode == 0


needs_installed_gui = pytest.mark.skipif(
    not _system_python_has("from gnuradio.gensemcom import diffusion_decoder, image_display; "
                           "from gnuradio.qtgui import Range; from PyQt5 import Qt"),
    reason="needs gr-gensemcom installed with image_display and diffusion_decoder (run `make install`), "
           "gr-qtgui and python3-pyqt5 for /usr/bin/python3")


@needs_grcc
def test_tisc_loopback_compiles_to_a_qt_gui_flowgraph(tmp_path, grc_env):
    data = _load(GRC_FILE)
    assert data["options"]["parameters"]["generate_options"] == "qt_gui"
    blocks = {b["name"]: b for b in data["blocks"]}
    assert blocks["semantic_encoder"]["parameters"]["system"] == "tisc"
    assert blocks["diffusion_decoder"]["id"] == "gensemcom_diffusion_decoder"
    assert blocks["diffusion_decoder"]["parameters"]["system"] == "tisc"
    assert blocks["snr"]["id"] == "variable_qtgui_range" and blocks["snr"]["parameters"]["value"] == "snr_db"
    rc, log, generated = _grcc(GRC_FILE, tmp_path, grc_env)
    assert rc == 0 and "Error" not in log, log
    code = generated.read_text()
    for option in ("--profile", "--image", "--snr-db", "--channel", "--out-dir", "--address"):
        assert f'"{option}"' in code, option
    assert "default='embedded'" in code and "default='out/tisc_loopback'" in code
    assert "gensemcom.diffusion_decoder(" in code and "gensemcom.image_display(" in code
    assert "Range(0, 30, 0.5, snr_db, 200)" in code
    for cb in ("self.analog_channel.set_snr_db(self.snr)", "self.digital_channel.set_snr_db(self.snr)",
               "self.semantic_encoder.set_snr_db(self.snr)"):
        assert cb in code, f"the SNR slider does not reach {cb}"


@needs_installed_gui
def test_tisc_loopback_default_image_is_the_bundled_one(monkeypatch):
    """Built (not started) as a module: no --image means the bundled astronaut.jpg, found by the
    module wherever it is installed (GRC has no __file__)."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("gnuradio.qtgui")
    from PyQt5 import Qt

    spec = importlib.util.spec_from_file_location("tisc_loopback_example", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    app = Qt.QApplication.instance() or Qt.QApplication(["tisc_loopback"])
    opts = mod.argument_parser().parse_args(["--profile", "tiny"])
    tb = mod.tisc_loopback(address=opts.address, channel=opts.channel, image=opts.image, out_dir=opts.out_dir,
                           profile=opts.profile, snr_db=opts.snr_db)
    try:
        path = tb.get_image_path()
        assert os.path.basename(path) == "astronaut.jpg"
        assert open(path, "rb").read() == (ROOT / "examples" / "data" / "astronaut.jpg").read_bytes()
        assert [f.name for f in tb.image_source.files] == ["astronaut.jpg"]
        assert tb.get_snr() == 10 and tb.get_estimator() == "none"  # AWGN: nothing to equalise
        tb.set_snr(3.5)  # what the slider calls
        assert tb.digital_channel.snr_db == tb.analog_channel.snr_db == 3.5 and tb.semantic_encoder.snr_db == 3.5
    finally:
        tb.deleteLater()
        app.processEvents()


@pytest.mark.slow
@pytest.mark.flowgraph
@needs_installed_gui
@pytest.mark.parametrize("channel,own_worker", [("awgn", True), ("rayleigh", True), ("awgn", False)])
def test_tisc_loopback_runs_headless_under_system_python(channel, own_worker, tmp_path):
    """As GRC's Run button does: /usr/bin/python3 (no torch). With own_worker False there is
    no --address: the flowgraph starts its local worker under the interpreter recorded at
    install (the project's venv)."""
    _run_headless(SCRIPT, channel, own_worker, tmp_path)


@pytest.mark.slow
@pytest.mark.flowgraph
@needs_installed_gui
def test_sc_sic_loopback_runs_headless_under_system_python(tmp_path):
    """The Stable Cascade SIC example (``examples/sc_sic_loopback.grc``), tiny profile:
    one received PNG at the sent size, a clean stop."""
    code = (ROOT / "examples" / "sc_sic_loopback.py").read_text()
    assert code.count("system='sc_sic'") == 2 and "default='out/sc_sic_loopback'" in code
    _run_headless(ROOT / "examples" / "sc_sic_loopback.py", "awgn", True, tmp_path)


@pytest.mark.slow
@pytest.mark.flowgraph
@needs_installed_gui
def test_gened_sc_rayleigh_runs_headless_under_system_python(tmp_path):
    """The GenED-SC example (``examples/gened_sc_rayleigh.grc``), tiny profile, Rayleigh
    fading: one received PNG at the sent size, a clean stop."""
    code = (ROOT / "examples" / "gened_sc_rayleigh.py").read_text()
    assert code.count("system='gened_sc'") == 2 and "channel='rayleigh'" in code
    _run_headless(ROOT / "examples" / "gened_sc_rayleigh.py", "rayleigh", True, tmp_path)


def _run_headless(script, channel, own_worker, tmp_path):
    pytest.importorskip("torch")
    from PIL import Image

    from gensemcom.image_io import save_image
    from gensemcom.worker.client import LocalWorker

    rng = np.random.default_rng(0)
    img = np.clip(np.cumsum(rng.integers(-8, 9, (64, 64, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    save_image(tmp_path / "small.png", img)
    out = tmp_path / "out"
    worker = LocalWorker(["--profile", "tiny", "--threads", "1"]) if own_worker else None
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("GENSEMCOM_WORKER_PYTHON", None)
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([SYSTEM_PYTHON, str(script), "--profile", "tiny",
                                 "--image", str(tmp_path / "small.png"), "--out-dir", str(out),
                                 "--snr-db", "20", "--channel", channel]
                                + (["--address", worker.address] if worker else []),
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            # the tiny TISC profile takes ~5-20 s per image on a 2-core CPU; the compare PNG is written last
            t_end = time.monotonic() + 300
            while (time.monotonic() < t_end and proc.poll() is None
                   and not (out / "small_compare.png").is_file()):
                time.sleep(0.25)
            time.sleep(0.5)
            assert proc.poll() is None, f"the flowgraph exited on its own:\n{log_path.read_text()[-4000:]}"
            proc.send_signal(signal.SIGTERM)  # what the generated sig_handler turns into a clean stop
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if worker is not None:
                worker.stop()
    text = log_path.read_text()
    assert rc == 0, text[-4000:]
    assert "Traceback" not in text and "dropped PDU" not in text, text[-4000:]
    received = sorted(p.name for p in out.glob("*.png") if not p.stem.endswith("_compare"))
    assert received == ["small.png"], (sorted(os.listdir(out)) if out.is_dir() else None, text[-4000:])
    with Image.open(out / "small.png") as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    with Image.open(out / "small_compare.png") as im:
        assert im.size == (128, 64)  # sent | received
