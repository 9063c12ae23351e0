"""Hostile input and faults outside the worker: sizes read from the air, headers that pass
their CRC but lie, and the link command keeping every result (issue: hostile input)."""
import signal
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest

from gensemcom import systems
from gensemcom.frame import SemanticFrame, pack_header
from gensemcom.image_io import image_ids, load_image, save_image
from gensemcom.systems.base import MAX_IMAGE_PIXELS, header_size

from conftest import ROOT, wait_for


def test_header_size_refuses_what_it_cannot_render():
    assert header_size([480, 640]) == (480, 640)
    for bad in ([12000, 12000], [0, 5], [-1, 4], ["1", 2], [1.5, 2], [True, 2], [1, 2, 3], None, "64x64", [2**70, 1]):
        assert header_size(bad) is None, bad
    assert header_size([4096, 4096]) == (4096, 4096) and 4096 * 4096 == MAX_IMAGE_PIXELS


@pytest.mark.parametrize("name,profile", [("deepjscc", "tiny"), ("row-refine", "tiny"), ("tisc", "embedded")])
def test_a_frame_asking_for_a_huge_image_renders_nothing(name, profile):
    from gensemcom.link import FrameLink

    s = systems.build(name, profile, **({"progress": False, "ti_steps": 2} if name == "tisc" else {}))
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    frame = s.encode(img, FrameLink().context(20.0))
    ctx = FrameLink().context(20.0)
    assert s.decode(frame.replace(crc_ok=True), ctx) is not None
    huge = frame.replace(crc_ok=True, header=dict(frame.header, size=[12000, 12000]))
    t0 = time.perf_counter()
    assert s.decode(huge, systems.LinkContext(20.0)) is None
    assert time.perf_counter() - t0 < 5.0  # refused, not rendered


def test_frame_demapper_survives_a_lying_header_and_keeps_serving():
    """A digital part whose CRC is valid but whose wire header has wrong types: dropped and
    counted by the block, and the next frame still comes out."""
    pmt = pytest.importorskip("pmt")
    from gnuradio import blocks, gr

    from gensemcom.blocks import frame_demapper
    from gensemcom.blocks.pdu_utils import make_pdu, meta_set
    from gensemcom.frame import frame_from_pmt

    def digital_pdu(payload: bytes, seq: int, nh: int = -1):
        m = meta_set(meta_set(meta_set(pmt.make_dict(), "frame_seq", seq), "crc_ok", True), "analog_symbols", 0)
        m = meta_set(m, "header_bytes", len(payload) if nh < 0 else nh)
        return make_pdu(m, np.frombuffer(payload, np.uint8), "u8")

    lies = []
    for h in ({"s": "x", "h": {}, "a": [["n", "a string", 1.0]]}, {"s": "x", "h": {}, "a": [[4, float("inf")]]},
              {"s": 5, "h": {}, "a": []}, {"s": "x", "h": 3, "a": []}, {"s": "x", "h": {}, "a": [[-2, 1.0]]},
              {"s": "x", "h": {}, "a": [[2**40, 1.0]]}):
        lies.append(b"\x00\x01" + msgpack.packb([h["h"], h["a"]]))
    tb = gr.top_block()
    dem, sink = frame_demapper(), blocks.message_debug()
    tb.msg_connect(dem, "out", sink, "store")
    tb.start()
    try:
        for i, lie in enumerate(lies):
            dem.to_basic_block()._post(pmt.intern("digital"), digital_pdu(lie, i))
        good = pack_header(SemanticFrame("deepjscc", b"ok", None, {"k": 1}))
        dem.to_basic_block()._post(pmt.intern("digital"), digital_pdu(good + b"ok", 99, len(good)))
        wait_for(lambda: sink.num_messages() >= 1, 20, "the good frame")
    finally:
        tb.stop()
        tb.wait()
    c = dem.counters()
    assert c["dropped"] == len(lies) and c["drop_reasons"] == {"bad frame header": len(lies)}
    f = frame_from_pmt(sink.get_message(0))
    assert f.digital == b"ok" and f.header == {"k": 1} and f.crc_ok


# ------------------------------------------------------------------ the link command
def gensemcom(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "gensemcom.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)


def test_same_stem_images_keep_their_own_results(tmp_path):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    save_image(tmp_path / "in" / "x.png", a)
    from PIL import Image
    Image.fromarray(b).save(tmp_path / "in" / "x.bmp")
    assert image_ids(sorted((tmp_path / "in").iterdir())) == ["x_bmp", "x_png"]
    r = gensemcom("link", "--system", "deepjscc", "--profile", "tiny", "--image", str(tmp_path / "in"), "--snr", "30",
                  "--json", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-2000:]
    import json
    rows = {row["image"]: row for row in json.loads(r.stdout)["images"]}
    assert set(rows) == {"x_bmp", "x_png"} and all(row["received"] for row in rows.values())
    assert sorted(p.name for p in (tmp_path / "out").glob("x_*.png")) == [
        "x_bmp.png", "x_bmp_compare.png", "x_png.png", "x_png_compare.png"]
    # each compare image holds its own original
    for stem, ref in (("x_png", a), ("x_bmp", b)):
        assert np.array_equal(load_image(tmp_path / "out" / f"{stem}_compare.png")[:, :32], ref)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
    img = load_image(tmp_path / "deep.png")
    assert img.shape == (64, 64, 3) and img.min() == 0 and img.max() == 255
    assert np.allclose(img[..., 0], np.round(ramp / 65535 * 255), atol=1)
    assert (img == 255).mean() < 0.01  # PIL's own conversion leaves most of it white


@pytest.mark.parametrize("args,needle", [
    (["--budget", "-5"], "budget must be"), (["--size", "5000"], "size must be"), (["--timeout", "0"], "timeout"),
    (["--snr", "nan"], "SNR must be"), (["--coherence", "0"], "coherence"),
    (["--channel", "rayleigh", "--estimator", "ls", "--pilots", "64"], "pilots"),
    (["--curve-keys", "/nonexistent"], "curve-keys")])
def test_numeric_options_are_checked_before_any_work(tmp_path, args, needle):
    save_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    t0 = time.monotonic()
    r = gensemcom("link", "--system", "deepjscc", "--profile", "tiny", "--image", str(tmp_path / "a.png"),
                  "--out", str(tmp_path / "out"), *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr[-2000:]
    assert time.monotonic() - t0 < 20 and not (tmp_path / "out").exists()


def test_an_out_folder_that_cannot_be_written_fails_first(tmp_path):
    (tmp_path / "file").write_text("x")
    save_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    r = gensemcom("link", "--system", "deepjscc", "--profile", "tiny", "--image", str(tmp_path / "a.png"),
                  "--out", str(tmp_path / "file" / "out"))
    assert r.returncode == 2 and "cannot be created" in r.stderr


def test_a_killed_run_leaves_no_staging_folder(tmp_path):
    save_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    stale = tmp_path / ".gensemcom-link-999999-abc"  # what a SIGKILLed run (pid gone) left behind
    stale.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "gensemcom.cli", "link", "--system", "tisc", "--profile", "tiny",
                             "--image", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(p.name.startswith(".gensemcom-link-") and p != stale for p in tmp_path.iterdir()), 120,
                 "the staging folder")
        assert not stale.exists()  # removed on start
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gensemcom-link-")]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ faults
def test_an_absent_worker_is_noticed_in_seconds(tmp_path):
    from conftest import free_endpoint

    save_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    t0 = time.monotonic()
    r = gensemcom("link", "--system", "deepjscc", "--profile", "tiny", "--image", str(tmp_path / "a.png"),
                  "--address", free_endpoint(), "--timeout", "600")
    assert r.returncode == 2 and "does not answer" in r.stderr, r.stderr[-2000:]
    assert time.monotonic() - t0 < 30  # not the 600 s timeout


def test_a_worker_killed_during_a_link_is_replaced_or_each_image_reported(tmp_path):
    """SIGKILL the local worker while a 3-image link runs: the run ends within 30 s and
    every image is delivered (the call retried on a new local worker) or reported lost
    with its reason."""
    import threading

    from gensemcom.blocks import worker_block
    from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph

    rng = np.random.default_rng(0)
    for i in range(3):
        save_image(tmp_path / f"img{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    addr = worker_block.shared_local_worker()
    victim = worker_block._LOCAL["worker"]
    out = {}

    def run():
        out["report"] = run_flowgraph(FlowgraphOptions(system="tisc", profile="tiny", images=str(tmp_path),
                                                       snr_db=20.0, timeout_s=120, progress=False))

    base = _encodes(addr)
    th = threading.Thread(target=run)
    th.start()
    wait_for(lambda: _encodes(addr) > base, 60, "the worker encoding")
    t_kill = time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)
    th.join(120)
    assert not th.is_alive() and time.monotonic() - t_kill < 30, time.monotonic() - t_kill
    rows = out["report"]["images"]
    assert len(rows) == 3
    for row in rows:
        assert row["received"] or row.get("reason"), row
    assert worker_block._LOCAL["worker"] is not victim  # a new local worker took over


def _encodes(addr):
    from gensemcom.worker.client import WorkerClient

    with WorkerClient(addr, timeout_ms=2000, retries=0) as c:
        return int(c.status()["requests"].get("method:semantic_encode", 0))
