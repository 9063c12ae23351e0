"""The system contract: a system declared in a few lines runs through FrameLink, the
worker and the flowgraph untouched; a two-round system runs its feedback path in all
three; the registry refuses what a system does not declare."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from gensemcom import systems
from gensemcom.frame import SemanticFrame
from gensemcom.link import FrameLink, PhyConfig, run_link
from gensemcom.systems.base import SemanticSystem
from gensemcom.systems.registry import register_system
from gensemcom.systems.row_refine import RowRefine, worst_rows

ROOT = Path(__file__).resolve().parents[1]


# a whole system, declared here and nowhere else
@register_system("toy-mean", profiles="tiny")
class ToyMean(SemanticSystem):
    """The image's mean colour, exactly (digital only)."""

    def __init__(self, profile, device=None):
        pass

    def encode(self, image, ctx):
        return SemanticFrame(self.name, bytes(np.round(image.mean((0, 1))).astype(np.uint8)), None,
                             {"shape": list(image.shape)}, {"report": {"colour": image.mean((0, 1)).tolist()}})

    def decode(self, frame, ctx):
        if not frame.crc_ok:
            return None
        return np.broadcast_to(np.frombuffer(frame.digital, np.uint8), frame.header["shape"]).copy()


def _image(h=32, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expect_mean(img):
    return np.broadcast_to(np.round(img.mean((0, 1))).astype(np.uint8), img.shape)


@pytest.fixture(scope="module")
def worker():
    from gensemcom.worker.server import WorkerServer

    srv = WorkerServer("tcp://127.0.0.1:*", profile="tiny").start()
    yield srv
    srv.stop()


# ------------------------------------------------------------------ registry
def test_registry_declares_profiles_and_refuses_others():
    spec = systems.get("toy-mean")
    assert spec.profiles == ("tiny",) and spec.default_profile == "tiny" and spec.offline == {"tiny": True}
    assert "toy-mean" in systems.names() and "toy-mean" in systems.describe()
    with pytest.raises(systems.UnsupportedProfile, match="no profile 'full'; its profiles: tiny"):
        systems.build("toy-mean", "full")
    with pytest.raises(systems.UnsupportedProfile, match="its profiles: embedded, tiny"):
        systems.check("deepjscc", "full")
    with pytest.raises(systems.UnknownSystem, match="known: .*tisc"):
        systems.build("telepathy")
    with pytest.raises(TypeError, match="no option"):
        systems.build("row-refine", colour="red")
    with pytest.raises(ValueError, match="already served"):
        register_system("toy-mean", profiles="tiny")(type("Other", (ToyMean,), {}))


def test_every_system_declares_consistent_backends():
    for name in systems.names():
        spec = systems.get(name)
        assert spec.profiles and spec.summary and spec.default_profile in spec.profiles
        for p in spec.profiles:
            cls = spec.backend(p)
            assert cls.name == name and p in cls.profiles
            assert all(o.help for o in cls.OPTIONS), (name, p)
    tisc = systems.get("tisc")
    assert tisc.backend("embedded").__name__ == "TISCEmbedded" and tisc.backend("full").__name__ == "TISCFull"
    assert not tisc.offline["full"] and tisc.offline["embedded"]


def test_grc_system_options_are_the_registry():
    # the toy system registered by this module is a test's own, not a built-in
    builtin = [n for n in systems.names() if systems.get(n).backend(systems.get(n).profiles[0]).__module__
               .startswith("gensemcom.")]
    for block in ("semantic_encoder", "semantic_decoder", "diffusion_decoder", "semantic_link"):
        data = yaml.safe_load((ROOT / "grc" / f"gensemcom_{block}.block.yml").read_text())
        param = next(p for p in data["parameters"] if p["id"] == "system")
        assert sorted(param["options"]) == builtin, block


# ------------------------------------------------------------------ a toy system, untouched
def test_toy_system_through_framelink():
    img = _image()
    res = run_link(systems.build("toy-mean", "tiny"), img, 20.0, FrameLink(PhyConfig(seed=0)))
    assert res.crc_ok and np.array_equal(res.image, _expect_mean(img))
    assert res.channel_uses["analog"] == 0 and res.channel_uses["digital"] > 0 and len(res.rounds) == 1


def test_toy_system_through_the_worker(worker):
    from gensemcom.frame import from_arrays, to_arrays
    from gensemcom.worker.client import WorkerClient, WorkerError

    img = _image()
    with WorkerClient(worker.endpoint, profile="tiny", timeout_ms=20000, retries=0) as c:
        enc = c.call("semantic_encode", {"image": img}, meta={"system": "toy-mean"})
        frame = from_arrays(enc.arrays, enc.meta, "toy-mean")
        assert enc.meta["frame_meta"]["report"]["colour"] == pytest.approx(img.mean((0, 1)).tolist())
        arrays, meta = to_arrays(frame)
        dec = c.call("semantic_decode", arrays, meta=dict(meta, system="toy-mean", crc_ok=True))
        assert np.array_equal(dec.arrays["image"], _expect_mean(img)) and dec.meta["final"] is True
        with pytest.raises(WorkerError, match="no profile 'full'; its profiles: tiny"):
            c.call("semantic_load", meta={"system": "toy-mean"}, profile="full")


def test_toy_system_through_the_flowgraph(tmp_path, worker):
    pytest.importorskip("gnuradio")
    from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph
    from gensemcom.image_io import save_image

    img = _image()
    save_image(tmp_path / "toy.png", img)
    rep = run_flowgraph(FlowgraphOptions(system="toy-mean", profile="tiny", images=str(tmp_path / "toy.png"),
                                         snr_db=20.0, address=worker.endpoint, timeout_s=60))
    row = rep["images"][0]
    assert row["received"] and row["transmitter"]["colour"] == pytest.approx(img.mean((0, 1)).tolist())
    assert row["channel_uses"]["analog"] == 0 and "rounds" not in row
    assert rep["blocks"]["semantic_decoder"]["feedback"] == 0


# ------------------------------------------------------------------ two rounds
def test_worst_rows_known_answer():
    rx = np.full((4, 4, 3), 0.5)
    rx[1] += 0.2
    rx[3] -= 0.1
    means = np.full(4, 128, np.uint8)
    assert worst_rows(rx, means, 2).tolist() == [1, 3] and worst_rows(rx, means, 1).tolist() == [1]


def test_row_refine_two_rounds_in_python():
    img = _image(64, 64, 3)
    sys_ = systems.build("row-refine", "tiny", res=32, rows=8)
    res = run_link(sys_, img, 8.0, FrameLink(PhyConfig(seed=5)))
    r0, r1 = res.rounds
    assert r0.crc_ok and r1.crc_ok and r0.feedback_rx.crc_ok and len(res.rounds) == 2
    # the receiver asked for exactly the rows whose received mean strayed furthest from the exact one
    x0 = np.clip(r0.frame_rx.segment("pixels").reshape(32, 32, 3) + 0.5, 0, 1)
    asked = worst_rows(x0, np.frombuffer(r0.frame_rx.digital, np.uint8), 8).tolist()
    from gensemcom.codecs import unpack_ids
    assert unpack_ids(r0.feedback_rx.digital, r0.feedback_rx.header["dt"]) == asked
    assert r1.frame_tx.segment_sizes() == {"rows": 8 * 32 * 3}
    # combining two copies lowers the error on the resent rows
    from PIL import Image
    ref = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR)).astype(float) / 255
    first = np.mean((x0[asked] - ref[asked]) ** 2)
    second = np.clip(r1.frame_rx.segment("rows").reshape(8, 32, 3) + 0.5, 0, 1)
    combined = np.mean((0.5 * (x0[asked] + second) - ref[asked]) ** 2)
    assert combined < 0.75 * first
    assert res.channel_uses["rounds"] == 2 and res.channel_uses["feedback"] == r0.feedback_uses > 0
    assert res.channel_uses["analog"] == r0.channel_uses["analog"] + r1.channel_uses["analog"]
    assert res.image.shape == img.shape


def test_row_refine_one_shot_when_capped():
    res = run_link(systems.build("row-refine"), _image(), 12.0, FrameLink(PhyConfig(seed=1)), max_rounds=1)
    assert len(res.rounds) == 1 and res.rounds[0].feedback_tx is None and "feedback" not in res.channel_uses


def test_row_refine_through_the_worker_keeps_session_state(worker):
    from gensemcom.frame import from_arrays, to_arrays
    from gensemcom.worker.client import WorkerClient, WorkerError

    img = _image()
    link = FrameLink(PhyConfig(seed=3))
    with WorkerClient(worker.endpoint, profile="tiny", timeout_ms=20000, retries=0) as c:
        base = {"system": "row-refine", "session": "s1"}
        enc = c.call("semantic_encode", {"image": img}, meta=dict(base, round=0))
        rx, ok, _ = link.send(from_arrays(enc.arrays, enc.meta, "row-refine"), 15.0)
        a, m = to_arrays(rx)
        dec = c.call("semantic_decode", a, meta=dict(base, round=0, **m))
        assert dec.meta["final"] is False and dec.arrays["fb_digital"].size == 16  # 8 uint16 row indices
        fb = from_arrays(dec.arrays, dec.meta, "row-refine", "fb_")
        fa, fm = to_arrays(fb.replace(crc_ok=True), "fb_")
        enc1 = c.call("semantic_encode", dict(fa, image=img), meta=dict(base, round=1, **fm))
        f1 = from_arrays(enc1.arrays, enc1.meta, "row-refine")
        assert f1.segment_sizes() == {"rows": 8 * 32 * 3}
        rx1, _, _ = link.send(f1, 15.0)
        a1, m1 = to_arrays(rx1)
        dec1 = c.call("semantic_decode", a1, meta=dict(base, round=1, **m1))
        assert dec1.meta["final"] is True and dec1.arrays["image"].shape == img.shape
        with pytest.raises(WorkerError, match="round"):  # a round the system does not have
            c.call("semantic_decode", a1, meta=dict(base, round=2, **m1))
        with pytest.raises(WorkerError, match="feedback"):  # round 1 without the feedback frame
            c.call("semantic_encode", {"image": img}, meta=dict(base, round=1))


def test_session_store_is_bounded_in_time_and_number():
    import time

    from gensemcom.worker.systems import SessionStore

    s = SessionStore(ttl_s=0.05, max_open=2)
    s.get(("a",))["x"] = 1
    assert s.get(("a",)) == {"x": 1}
    s.get(("b",)), s.get(("c",))
    assert len(s) == 2 and s.get(("a",)) == {}  # evicted as least recently used
    time.sleep(0.1)
    s.get(("d",))
    assert len(s) == 1 and s.evicted >= 3


def test_row_refine_through_a_flowgraph_with_a_return_path(tmp_path, worker):
    pytest.importorskip("gnuradio")
    from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph
    from gensemcom.image_io import save_image

    for i in range(2):
        save_image(tmp_path / f"img{i}.png", _image(48, 48, i))
    rep = run_flowgraph(FlowgraphOptions(system="row-refine", profile="tiny", images=str(tmp_path), snr_db=12.0,
                                         return_snr_db=6.0, address=worker.endpoint, timeout_s=60, seed=1))
    assert [r["received"] for r in rep["images"]] == [True, True]
    for row in rep["images"]:
        assert [r["round"] for r in row["rounds"]] == [0, 1]
        # the header block, then one QPSK code block at the rate adapted to 6 dB (3/4)
        assert row["channel_uses"]["rounds"] == 2 and row["channel_uses"]["feedback"] == 600 + 1152
        assert row["channel_uses"]["analog"] == 32 * 32 * 3 // 2 + 8 * 32 * 3 // 2
    c = rep["blocks"]
    assert c["semantic_decoder"]["feedback"] == 2 and c["return_frame_demapper"]["sent"] == 2
    assert c["semantic_encoder"]["sent"] == 4 and c["image_sink"]["sent"] == 4


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_return_link_block_carries_a_frame(channel):
    pmt = pytest.importorskip("pmt")
    from conftest import wait_for
    from gnuradio import blocks, gr

    from gensemcom.blocks import return_link
    from gensemcom.frame import frame_from_pmt, frame_to_pmt

    tb = gr.top_block()
    back = return_link(snr_db=20.0, channel=channel, seed=1)
    sink = blocks.message_debug()
    tb.msg_connect(back, "out", sink, "store")
    tb.start()
    try:
        fb = SemanticFrame("row-refine", b"\x01\x00\x07\x00", {"x": np.ones(8)}, {"dt": "<u2"},
                           {"session": "s", "round": 0})
        back.post(frame_to_pmt(fb))
        bad = pmt.intern("not a frame")
        back.post(bad)
        wait_for(lambda: sink.num_messages() >= 1, 30, "the feedback frame")
        got = frame_from_pmt(sink.get_message(0))
        wait_for(lambda: back.counters()["frame_mapper"]["dropped"] == 1, 10, "the bad message counted")
    finally:
        tb.stop()
        tb.wait()
    assert got.crc_ok and got.digital == fb.digital and got.header == fb.header and got.meta["session"] == "s"
    x = got.segment("x")  # MMSE-equalised: fades shrink symbols towards 0
    assert np.allclose(x, 1.0, atol=0.3) if channel == "awgn" else (np.all(np.isfinite(x)) and abs(x.mean() - 1) < 0.5)
    # the header block (two copies on a fading channel) + one QPSK rate-3/4 code block
    assert got.header_ok and got.meta["digital_symbols"] == (600 if channel == "awgn" else 1200) + 1152


def test_worker_null_options_take_their_defaults(worker):
    """A request whose meta holds null PHY options (found by the fuzz bench: a model_error
    TypeError inside jpeg2000-ldpc) gets the defaults, not a crash in the system."""
    from gensemcom.worker.client import WorkerClient

    img = _image(128, 128)
    with WorkerClient(worker.endpoint, profile="tiny", timeout_ms=20000, retries=0) as c:
        r = c.call("semantic_encode", {"image": img}, meta={"system": "jpeg2000-ldpc", "modulation": None,
                                                            "code_rate": None, "snr_db": None})
    assert r.arrays["digital"].size > 0
