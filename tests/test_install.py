"""The installed module: ``from gnuradio import gensemcom`` from the venv and the system Python."""
import os
import shutil
import subprocess
import sys
import threading

import pytest

from conftest import ROOT

CODE = "from gnuradio import gensemcom; print(gensemcom.__file__); gensemcom.digital_tx(modulation=4)"


def _installed():
    """The module's files are installed (whether they import is what the tests check)."""
    r = subprocess.run(["/usr/bin/python3", "-c",
                        "import importlib.util, sys; sys.exit(importlib.util.find_spec('gnuradio.gensemcom') is None)"],
                       capture_output=True)
    return r.returncode == 0


needs_install = pytest.mark.skipif(not os.path.exists("/usr/bin/python3") or not _installed(),
                                   reason="gr-gensemcom is not installed (run `make install`)")


@needs_install
@pytest.mark.parametrize("python", [sys.executable, "/usr/bin/python3"])
def test_from_gnuradio_import_gensemcom(python):
    r = subprocess.run([python, "-c", CODE], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "gnuradio/gensemcom/__init__.py" in r.stdout


@needs_install
def test_installed_grc_blocks_found_by_grc():
    if not shutil.which("grcc"):
        pytest.skip("grcc not installed")
    paths = subprocess.run(["/usr/bin/python3", "-c",
                            "from gnuradio import gr; from gnuradio.grc.core.Config import Config; "
                            "print(':'.join(Config(version='3.10', prefs=gr.prefs()).block_paths))"],
                           capture_output=True, text=True)
    assert paths.returncode == 0, paths.stderr
    found = [p for p in paths.stdout.strip().split(":")
             if os.path.exists(os.path.join(p, "gensemcom_digital_tx.block.yml"))]
    assert found, f"GRC block paths {paths.stdout!r} hold no gensemcom blocks"


@needs_install
@pytest.mark.parametrize("example", ["phy_loopback.py", "stream_loopback.py", "fading_loopback.py"])
def test_generated_examples_run_under_system_python(example):
    """GRC runs flowgraphs with /usr/bin/python3: the installed module must serve them."""
    proc = subprocess.Popen(["/usr/bin/python3", str(ROOT / "examples" / example)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd="/")
    out = []
    timer = threading.Timer(30, proc.kill)  # the examples run until stopped
    timer.start()
    try:
        for line in proc.stdout:  # stop as soon as a decoded frame is printed
            out.append(line)
            if "(crc_ok . #t)" in line or "Traceback" in line:
                break
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
    text = "".join(out)
    assert "Traceback" not in text, text
    assert "(crc_ok . #t)" in text, text


@needs_install
def test_local_worker_path_is_the_folder_holding_our_package():
    """A local worker started from the installed module imports that same module and
    nothing else first: not Debian's dist-packages, whose sympy would shadow a venv's torch."""
    from pathlib import Path

    from gensemcom.worker.client import _package_root

    assert (Path(_package_root()) / "gensemcom" / "__init__.py").is_file()
    r = subprocess.run([sys.executable, "-c", "from gnuradio.gensemcom.worker.client import _package_root; "
                        "print(_package_root())"], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    root = Path(r.stdout.strip())
    assert (root / "gnuradio" / "gensemcom" / "__init__.py").is_file(), root
    assert not (root / "gnuradio" / "gr" / "__init__.py").is_file(), f"{root} is GNU Radio's own folder"


@needs_install
def test_installed_module_has_every_model_file():
    """Every weight or table file of the package is installed beside the code (TAEF2's .pth
    once was not, so the embedded TISC profile failed in flowgraphs run by GRC)."""
    from pathlib import Path

    r = subprocess.run(["/usr/bin/python3", "-c", "import importlib.util; "
                        "print(importlib.util.find_spec('gnuradio.gensemcom').submodule_search_locations[0])"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    installed = Path(r.stdout.strip())
    src = ROOT / "python" / "gensemcom"
    wanted = [p.relative_to(src) for ext in ("*.pt", "*.pth", "*.json", "*.npz") for p in src.rglob(ext)]
    assert any(p.suffix == ".pth" for p in wanted)
    missing = [str(p) for p in wanted if not (installed / p).is_file()]
    assert not missing, f"not installed (run `make install`, or add the pattern to CMakeLists.txt): {missing}"
