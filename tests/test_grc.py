"""GRC integration: the block YAML files in grc/ and the example flowgraphs in examples/.

* every ``examples/*.grc`` compiles with ``grcc`` against the repository's ``grc/``
  directory, and the committed generated ``examples/*.py`` is what ``grcc`` makes now;
* every ``grc/*.block.yml`` loads in GRC, sits under ``[GenSemCom]``, documents every
  parameter, passes every argument by name, and its parameter ids are the block
  constructor's arguments (with the same defaults);
* the rendered ``make`` code builds the block with its GRC defaults, and the
  message ports the YAML declares exist on the block.

grcc and GRC are pointed at the repository's ``grc/`` only: any installed copy of
the gensemcom YAML files (``make install`` puts them in a global block path, where
they would overwrite ours) is taken out of the search path.
"""
import ast
import glob
import importlib
import inspect
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, wait_until

yaml = pytest.importorskip("yaml")

GRC_DIR = ROOT / "grc"
EXAMPLES_DIR = ROOT / "examples"
BLOCK_FILES = sorted(GRC_DIR.glob("*.block.yml"))
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.grc"))
GRCC = shutil.which("grcc")

needs_grcc = pytest.mark.skipif(GRCC is None, reason="grcc (GNU Radio Companion compiler) is not installed")

# generated-code lines that depend on the GNU Radio installation, not on our files
_VOLATILE = re.compile(r"^#\s*(GNU Radio version|Generated|Date)\b", re.I)


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _ids(paths):
    return [p.name for p in paths]


def _block_name(data):
    assert data["id"].startswith("gensemcom_"), data["id"]
    return data["id"][len("gensemcom_"):]


# Qt GUI blocks follow gr-qtgui's template: the make code builds the block, then puts its
# widget() into the window (`${win} = self.${id}.widget()`, `${gui_hint() % win}`); the
# gui_hint parameter is GRC's, not the constructor's
_MAKO_PRELUDE = re.compile(r"\A\s*<%.*?%>\\\n", re.S)


def _is_gui(data):
    return any(p.get("dtype") == "gui_hint" for p in data.get("parameters", []))


def _ctor_params(data):
    return [p for p in data.get("parameters", []) if p.get("dtype") != "gui_hint"]


def _ctor_make(data):
    """The make template's constructor call (a Qt GUI block's widget lines removed)."""
    make = data["templates"]["make"]
    if not _is_gui(data):
        return make
    make = _MAKO_PRELUDE.sub("", make)
    return make.split("\n${win}", 1)[0]


def _grc_block_paths(var, default=""):
    """A GRC block path setting with the directories that hold gensemcom YAML removed."""
    try:
        from gnuradio import gr
        value = gr.prefs().get_string("grc", var, default)
    except ImportError:
        value = default
    keep = []
    for p in value.split(os.pathsep):
        if not p:
            continue
        d = os.path.normpath(os.path.expanduser(os.path.expandvars(p)))
        if d != os.path.normpath(GRC_DIR) and glob.glob(os.path.join(d, "gensemcom_*.yml")):
            continue  # an installed (possibly stale) copy of our blocks
        keep.append(p)
    return os.pathsep.join(keep)


@pytest.fixture(scope="module")
def grc_env(tmp_path_factory):
    """Environment in which GRC sees our grc/ and the stock blocks, nothing else of ours."""
    env = dict(os.environ)
    env["GRC_BLOCKS_PATH"] = str(GRC_DIR)
    # gr::prefs reads GR_CONF_<SECTION>_<OPTION> before the config files
    env["GR_CONF_GRC_GLOBAL_BLOCKS_PATH"] = _grc_block_paths("global_blocks_path", "/usr/share/gnuradio/grc/blocks")
    env["GR_CONF_GRC_LOCAL_BLOCKS_PATH"] = _grc_block_paths("local_blocks_path")
    env["GRC_HIER_PATH"] = str(tmp_path_factory.mktemp("grc_hier"))
    return env


# GRC blocks of optional hardware modules (gr-uhd, gr-soapy, gr-osmosdr): an example that
# uses one is skipped, with the reason, on a machine where that module is not installed
HARDWARE_PREFIXES = ("uhd_", "soapy_", "osmosdr_")
STOCK_BLOCKS = Path("/usr/share/gnuradio/grc/blocks")


def _skip_without_hardware_blocks(grc_file):
    ids = {b["id"] for b in _load(grc_file).get("blocks", [])}
    missing = sorted(i for i in ids if i.startswith(HARDWARE_PREFIXES)
                     and not (STOCK_BLOCKS / f"{i}.block.yml").is_file())
    if missing:
        pytest.skip(f"{grc_file.name} needs GRC blocks {missing}, not installed here (install gr-uhd / gr-soapy)")


def _grcc(grc_file, out_dir, env):
    _skip_without_hardware_blocks(grc_file)
    r = subprocess.run([GRCC, "-o", str(out_dir), str(grc_file)], capture_output=True, text=True,
                       env=env, timeout=120)
    log = r.stdout + r.stderr
    generated = Path(out_dir) / (_load(grc_file)["options"]["parameters"]["id"] + ".py")
    return r.returncode, log, generated


# ---------------------------------------------------------------- examples


def test_there_are_examples_and_blocks():
    assert EXAMPLES, "no examples/*.grc"
    assert BLOCK_FILES, "no grc/*.block.yml"


@needs_grcc
@pytest.mark.parametrize("grc_file", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_compiles_with_grcc(grc_file, tmp_path, grc_env):
    rc, log, generated = _grcc(grc_file, tmp_path, grc_env)
    assert rc == 0 and "Error" not in log, log
    assert generated.is_file(), f"grcc did not write {generated.name}:\n{log}"
    assert "overwritten by" not in log, f"another copy of a block shadows ours:\n{log}"
    code = generated.read_text()
    compile(code, str(generated), "exec")
    assert "from gnuradio import gensemcom" in code


@needs_grcc
@pytest.mark.parametrize("grc_file", EXAMPLES, ids=_ids(EXAMPLES))
def test_committed_example_py_is_up_to_date(grc_file, tmp_path, grc_env):
    rc, log, generated = _grcc(grc_file, tmp_path, grc_env)
    assert rc == 0, log
    committed = EXAMPLES_DIR / generated.name
    assert committed.is_file(), f"{committed.name} is not committed next to {grc_file.name}"

    def lines(p):
        return [ln for ln in p.read_text().splitlines() if not _VOLATILE.match(ln)]

    assert lines(committed) == lines(generated), (
        f"{committed.name} is stale: regenerate with "
        f"`GRC_BLOCKS_PATH=grc grcc -o examples examples/{grc_file.name}`")


# Qt GUI examples: they still take every setting on the command line and run without a
# screen on Qt's offscreen platform (QT_QPA_PLATFORM=offscreen; test_examples.py runs them)
QT_GUI_EXAMPLES = {"tisc_loopback", "sc_sic_loopback", "gened_sc_rayleigh", "teaching_demo"}


@pytest.mark.parametrize("grc_file", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_is_headless_and_takes_snr(grc_file):
    data = _load(grc_file)
    opts = data["options"]["parameters"]
    assert opts["generate_options"] == ("qt_gui" if grc_file.stem in QT_GUI_EXAMPLES else "no_gui")
    assert opts["id"] == grc_file.stem
    params = {b["name"]: b for b in data["blocks"] if b["id"] == "parameter"}
    assert "snr_db" in params, "examples take --snr-db on the command line"
    assert params["snr_db"]["parameters"]["type"], "snr_db must have a type to become a CLI option"
    ids = {b["id"] for b in data["blocks"]}
    if grc_file.stem not in QT_GUI_EXAMPLES:
        assert not any(i.startswith(("qtgui_", "variable_qtgui_")) or i == "gensemcom_image_display"
                       for i in ids), "examples must run without a screen"


# ---------------------------------------------------------------- block YAML


def test_tree_lists_every_block():
    tree = _load(GRC_DIR / "gensemcom.tree.yml")
    assert list(tree) == ["[GenSemCom]"]
    listed = {b for group in tree["[GenSemCom]"] for blocks in group.values() for b in blocks}
    defined = {}
    for f in BLOCK_FILES:
        data = _load(f)
        defined[data["id"]] = data["category"].split("/", 1)[1]
    assert listed == set(defined)
    for group in tree["[GenSemCom]"]:
        (name, blocks), = group.items()
        for b in blocks:
            assert defined[b] == name, f"{b}: category {defined[b]!r} but listed under {name!r}"


@pytest.mark.parametrize("path", BLOCK_FILES, ids=_ids(BLOCK_FILES))
def test_block_yaml_structure(path):
    data = _load(path)
    assert data["file_format"] == 1
    assert path.name == data["id"] + ".block.yml"
    assert str(data["category"]).startswith("[GenSemCom]"), data["category"]
    assert data.get("label")
    imports = data["templates"]["imports"].strip().splitlines()
    assert imports[0] == "from gnuradio import gensemcom"
    assert imports[1:] == (["from PyQt5 import Qt"] if _is_gui(data) else []), imports
    name = _block_name(data)
    if _is_gui(data):  # gr-qtgui's pattern
        full = data["templates"]["make"]
        assert _MAKO_PRELUDE.match(full) and "win = 'self._%s_win'%id" in full, full
        assert full.rstrip().endswith("${win} = self.${id}.widget()\n${gui_hint() % win}"), full
    make = _ctor_make(data)
    assert re.match(rf"\s*gensemcom\.{name}\(", make), make

    params = [p["id"] for p in _ctor_params(data)]
    assert len(params) == len(set(params))
    # every argument by name: each ${x} in make is written x=${x}, and each parameter is used
    for ref in re.finditer(r"\$\{\s*(\w+)[^}]*\}", make):
        before = make[:ref.start()]
        assert re.search(rf"\b{ref.group(1)}\s*=\s*$", before), f"{ref.group(0)} is not passed by name"
    for pid in params:
        assert re.search(rf"\b{pid}\s*=\s*\$\{{\s*{pid}\s*\}}", make), f"{pid} is not passed as {pid}=${{{pid}}}"

    doc = data.get("documentation") or ""
    assert doc.strip(), "no documentation section"
    for pid in [p["id"] for p in data.get("parameters", [])]:
        assert re.search(rf"\b{re.escape(pid)}\b", doc), f"documentation does not mention parameter {pid}"
    for port in data.get("inputs", []) + data.get("outputs", []):
        if port.get("domain") == "message":
            assert re.search(rf"\b{port['id']}\b", doc), f"documentation does not mention port {port['id']}"
        else:
            assert port.get("dtype") == "complex", port


def _block_class(name):
    """The block class as GRC-generated code reaches it (``gensemcom.<name>``), or skip."""
    gensemcom = pytest.importorskip("gensemcom")
    try:
        obj = getattr(gensemcom, name)
    except (AttributeError, ImportError) as e:
        try:
            module = importlib.import_module(f"gensemcom.{name}")
        except ImportError:
            pytest.skip(f"block {name!r} is not importable here: {e}")
        pytest.fail(f"module gensemcom.{name} imports but the package does not export the block "
                    f"{name!r}, so GRC's `gensemcom.{name}(...)` fails ({module})")
    if not inspect.isclass(obj):
        pytest.fail(f"gensemcom.{name} is {obj!r}, not the block class: the package must export the "
                    f"class (and keep it exported after its submodule is imported), or GRC's "
                    f"`gensemcom.{name}(...)` fails")
    return obj


@pytest.mark.parametrize("path", BLOCK_FILES, ids=_ids(BLOCK_FILES))
def test_block_yaml_matches_constructor(path):
    data = _load(path)
    name = _block_name(data)
    cls = _block_class(name)
    # a second lookup must give the class too (GRC code may instantiate a block twice)
    assert getattr(importlib.import_module("gensemcom"), name) is cls
    sig = inspect.signature(cls.__init__)
    args = {k: v for k, v in sig.parameters.items()
            if k != "self" and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
    params = {p["id"]: p for p in _ctor_params(data)}
    assert set(params) == set(args), (f"YAML parameters {sorted(params)} != "
                                      f"{cls.__name__}.__init__ arguments {sorted(args)}")
    for pid, p in params.items():
        default = args[pid].default
        if default is inspect.Parameter.empty or "default" not in p:
            continue
        if p["dtype"] == "string":
            assert str(p["default"]) == default, f"{pid}: YAML default {p['default']!r} != {default!r}"
        elif p["dtype"] in ("int", "real", "bool"):
            assert ast.literal_eval(str(p["default"])) == default, \
                f"{pid}: YAML default {p['default']!r} != {default!r}"


# ---------------------------------------------------------------- in GRC itself


@pytest.fixture(scope="module")
def grc_platform(grc_env):
    gr = pytest.importorskip("gnuradio.gr")
    pytest.importorskip("gnuradio.grc.core.platform")
    from gnuradio.grc.core.platform import Platform

    saved = dict(os.environ)
    os.environ.update(grc_env)
    try:
        platform = Platform(name="GNU Radio Companion Compiler", prefs=gr.prefs(), version=gr.version(),
                            version_parts=(gr.major_version(), gr.api_version(), gr.minor_version()))
        platform.build_library()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return platform


def _run_gui_lines(code, block, monkeypatch):
    """Run a Qt GUI block's widget lines as a qt_gui top block would, on Qt's offscreen platform."""
    try:
        from PyQt5 import Qt
    except ImportError:
        pytest.skip("PyQt5 is not installed (Debian: python3-pyqt5)")
    import types

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    app = Qt.QApplication.instance() or Qt.QApplication(["test_grc"])
    top = Qt.QWidget()
    self = types.SimpleNamespace(blk=block, top_layout=Qt.QVBoxLayout(), top_grid_layout=Qt.QGridLayout())
    layout = Qt.QVBoxLayout(top)
    layout.addLayout(self.top_layout)
    layout.addLayout(self.top_grid_layout)
    exec(code, {"Qt": Qt}, {"self": self})
    assert isinstance(self._blk_win, Qt.QWidget)
    assert self.top_layout.indexOf(self._blk_win) >= 0 or self.top_grid_layout.indexOf(self._blk_win) >= 0
    top.deleteLater()
    app.processEvents()


@pytest.mark.parametrize("path", BLOCK_FILES, ids=_ids(BLOCK_FILES))
def test_block_loads_in_grc_and_make_builds_it(path, grc_platform, tmp_path, monkeypatch):
    data = _load(path)
    assert data["id"] in grc_platform.blocks, f"GRC did not load {path.name}"
    fg = grc_platform.make_flow_graph()
    block = fg.new_block(data["id"])
    block.params["id"].set_value("blk")
    if data["id"] == "gensemcom_image_source":  # the one parameter without a usable default
        import numpy as np
        from gensemcom.image_io import save_image
        save_image(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
        block.params["path"].set_value(repr(str(tmp_path / "x.png")))
    fg.rewrite()
    fg.validate()
    errors = [m for _, m in block.iter_error_messages() if "not connected" not in m]
    assert not errors, errors
    make = block.templates.render("make")
    callbacks = block.templates.render("callbacks") or []
    gui_code = ""
    if _is_gui(data):  # constructor, then the widget lines that run with `self` the top block
        make, sep, gui_code = make.partition("\nself._blk_win = ")
        assert sep, make
        gui_code = "self._blk_win = " + gui_code
        compile(gui_code, path.name, "exec")
    compile(make, path.name, "eval")

    name = _block_name(data)
    cls = _block_class(name)
    gensemcom = importlib.import_module("gensemcom")
    obj = eval(make, {"gensemcom": gensemcom})  # the defaults as GRC writes them
    assert isinstance(obj, cls)
    if gui_code:
        _run_gui_lines(gui_code, obj, monkeypatch)
    for cb in callbacks:  # callbacks name real methods and accept the default values
        eval(f"blk.{cb}", {"blk": obj})

    from gnuradio import gr
    import pmt
    if isinstance(obj, gr.hier_block2):
        return  # hierarchical message ports are not listed by message_ports_in/out
    ins = {str(p) for p in pmt.to_python(obj.message_ports_in())}
    outs = {str(p) for p in pmt.to_python(obj.message_ports_out())}
    for port in data.get("inputs", []):
        if port.get("domain") == "message":
            assert port["id"] in ins, f"{name} has no message input {port['id']!r} (has {sorted(ins)})"
    for port in data.get("outputs", []):
        if port.get("domain") == "message":
            assert port["id"] in outs, f"{name} has no message output {port['id']!r} (has {sorted(outs)})"


@pytest.fixture
def xdisplay():
    """A virtual X display (Xvfb) of our own, ended with the test."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        yield ":" + xvfb.stdout.readline().decode().strip()
    finally:
        xvfb.kill()
        xvfb.wait()


@pytest.mark.skipif(shutil.which("gnuradio-companion") is None, reason="gnuradio-companion is not installed")
def test_gnuradio_companion_starts_headless_and_loads_every_example(tmp_path, xdisplay):
    """GRC itself, on a virtual display, opening every example (the installed blocks):
    it starts (its GTK is installed by make), loads each file and reports no error."""
    files = [f for f in EXAMPLES if not any(
        i.startswith(HARDWARE_PREFIXES) and not (STOCK_BLOCKS / f"{i}.block.yml").is_file()
        for i in {b["id"] for b in _load(f).get("blocks", [])})]
    env = dict(os.environ, HOME=str(tmp_path), DISPLAY=xdisplay)  # a fresh GRC config
    env.pop("GRC_BLOCKS_PATH", None)
    log_path = tmp_path / "grc.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["gnuradio-companion", *map(str, files)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp_path)
        try:
            wait_until(lambda: log_path.read_text().count(">>> Done") >= len(files) or proc.poll() is not None, 60)
            time.sleep(1.0)
        finally:
            proc.kill()
            proc.wait()
    text = log_path.read_text(errors="replace")
    assert "Welcome to GNU Radio Companion" in text, text[-3000:]
    for f in files:
        assert f'Loading: "{f}"' in text, (f.name, text[-3000:])
    assert text.count(">>> Done") >= len(files), text[-3000:]
    for bad in ("Traceback", "Error", "rror:", "invalid"):
        assert bad not in text, text[-3000:]


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_example_blocks_do_not_overlap(tmp_path, xdisplay):
    """No block of an example hides another (or its ports): the rectangles are GRC's own,
    measured by its canvas code on a virtual display (tests/tools/grc_block_rects.py)."""
    import json

    tool = Path(__file__).parent / "tools" / "grc_block_rects.py"
    r = subprocess.run(["/usr/bin/python3", str(tool), *map(str, EXAMPLES)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path), DISPLAY=xdisplay))
    assert r.returncode == 0, r.stderr[-3000:]
    rects = json.loads(r.stdout.strip().splitlines()[-1])
    gap = 16  # ports stick out of a block's side
    bad = []
    for path, rs in rects.items():
        for i, a in enumerate(rs):
            for b in rs[i + 1:]:
                if a[1] < b[1] + b[3] + gap and b[1] < a[1] + a[3] + gap and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]:
                    bad.append(f"{Path(path).name}: {a[0]} and {b[0]}")
    assert not bad, bad
