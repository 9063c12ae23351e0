"""The ``inference_call`` block inside real GNU Radio flowgraphs."""

import numpy as np
import pytest

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks, gr, pdu  # noqa: E402
import pmt  # noqa: E402

from gensemcom.blocks.inference_call import array_to_pdu, inference_call, pdu_to_array, uvector_to_numpy  # noqa: E402
from gensemcom.worker.server import WorkerServer  # noqa: E402
from conftest import wait_for, free_endpoint  # noqa: E402

pytestmark = pytest.mark.flowgraph
IN = pmt.intern("in")


@pytest.fixture(scope="module")
def worker():
    srv = WorkerServer("tcp://127.0.0.1:*").start()
    yield srv
    srv.stop()


class Flowgraph:
    """pdu_set (tags each PDU) -> inference_call -> message_debug, started and always stopped."""

    def __init__(self, **kw):
        self.tb = gr.top_block()
        self.tag = pdu.pdu_set(pmt.intern("system"), pmt.intern("tiny"))
        self.blk = inference_call(**kw)
        self.dbg = blocks.message_debug()
        self.tb.msg_connect((self.tag, "pdus"), (self.blk, "in"))
        self.tb.msg_connect((self.blk, "out"), (self.dbg, "store"))

    def __enter__(self):
        self.tb.start()
        return self

    def post(self, msg, direct=False):
        """Post into pdu_set (which passes only PDUs on), or straight into the block."""
        if direct or not pmt.is_pair(msg):
            self.blk.to_basic_block()._post(IN, msg)
        else:
            self.tag.to_basic_block()._post(pmt.intern("pdus"), msg)

    def messages(self):
        return [self.dbg.get_message(i) for i in range(self.dbg.num_messages())]

    def __exit__(self, *exc):
        self.tb.stop()
        self.tb.wait()


def f32_pdu(values, **meta):
    d = pmt.make_dict()
    for k, v in meta.items():
        d = pmt.dict_add(d, pmt.intern(k), pmt.to_pmt(v))
    arr = np.asarray(values, np.float32)
    return pmt.cons(d, pmt.init_f32vector(arr.size, arr))


def test_echo_pdus_and_malformed_ones_dropped(worker):
    with Flowgraph(address=worker.endpoint, method="echo", timeout_ms=5000) as fg:
        for i in range(5):
            fg.post(f32_pdu(np.arange(4) + i, image_id=i))
        fg.post(pmt.intern("not a pdu"))
        fg.post(pmt.cons(pmt.make_dict(), pmt.init_f32vector(0, [])), direct=True)  # empty vector
        fg.post(pmt.cons(pmt.from_long(3), pmt.init_u8vector(2, [1, 2])), direct=True)  # metadata not a dict
        fg.post(pmt.cons(pmt.PMT_NIL, pmt.init_u16vector(2, [1, 2])), direct=True)  # dtype the wire lacks
        fg.post(f32_pdu(np.arange(5), shape=[2, 2]))  # shape does not fit
        wait_for(lambda: fg.dbg.num_messages() == 5 and fg.blk.n_dropped == 5, what="5 outputs, 5 drops")
        msgs = fg.messages()
    assert fg.blk.n_in == 10 and fg.blk.n_out == 5 and fg.blk.n_errors == 0
    def image_id(m):
        return pmt.to_long(pmt.dict_ref(pmt.car(m), pmt.intern("image_id"), pmt.PMT_NIL))

    for i, m in enumerate(sorted(msgs, key=image_id)):
        meta = pmt.car(m)
        np.testing.assert_array_equal(pmt.to_python(pmt.cdr(m)), np.arange(4, dtype=np.float32) + i)
        assert pmt.symbol_to_string(pmt.dict_ref(meta, pmt.intern("method"), pmt.PMT_NIL)) == "echo"
        assert pmt.symbol_to_string(pmt.dict_ref(meta, pmt.intern("system"), pmt.PMT_NIL)) == "tiny"  # kept
        assert pmt.to_double(pmt.dict_ref(meta, pmt.intern("latency_ms"), pmt.PMT_NIL)) > 0


def test_tiny_encode_then_decode_chain(worker):
    """encode -> decode: the output 'shape' metadata feeds the next block."""
    import torch

    from gensemcom.worker.models import build_tiny_autoencoder

    tb = gr.top_block()
    enc = inference_call(address=worker.endpoint, method="tiny_encode", input_name="image", shape=(1, 3, 8, 8))
    dec = inference_call(address=worker.endpoint, method="tiny_decode", input_name="latent")
    dbg = blocks.message_debug()
    tb.msg_connect((enc, "out"), (dec, "in"))
    tb.msg_connect((dec, "out"), (dbg, "store"))
    x = np.random.default_rng(1).random(192, dtype=np.float32)
    tb.start()
    try:
        enc.to_basic_block()._post(IN, f32_pdu(x))
        wait_for(lambda: dbg.num_messages() == 1, what="decoded image")
    finally:
        tb.stop()
        tb.wait()
    out = dbg.get_message(0)
    shape = tuple(uvector_to_numpy(pmt.dict_ref(pmt.car(out), pmt.intern("shape"), pmt.PMT_NIL)))
    model = build_tiny_autoencoder()
    with torch.no_grad():
        want = model.decode(model.encode(torch.from_numpy(x.reshape(1, 3, 8, 8)))).numpy()
    assert shape == (1, 3, 8, 8)
    np.testing.assert_allclose(pmt.to_python(pmt.cdr(out)).reshape(shape), want, rtol=1e-5, atol=1e-6)


def test_worker_failures_counted_not_raised(worker):
    with Flowgraph(address=worker.endpoint, method="no_such_method", timeout_ms=5000) as fg:
        for i in range(3):
            fg.post(f32_pdu([i]))
        wait_for(lambda: fg.blk.n_errors == 3, what="3 worker errors")
    assert fg.blk.n_out == 0 and fg.dbg.num_messages() == 0


def test_unreachable_worker_and_full_queue(worker):
    with Flowgraph(address=free_endpoint(), method="echo", timeout_ms=100, retries=0, queue_size=2) as fg:
        for i in range(6):
            fg.post(f32_pdu([i]))
        wait_for(lambda: fg.blk.n_errors + fg.blk.n_dropped == 6, what="all 6 PDUs accounted for")
    assert fg.blk.n_out == 0 and fg.blk.n_errors >= 1 and fg.blk.n_dropped >= 1


def test_auto_started_worker_is_shared_and_reused():
    from gensemcom.blocks.worker_block import shared_local_worker

    addresses = []
    for _ in range(2):  # two flowgraphs, one after the other, use the same local worker
        with Flowgraph(address="", method="echo") as fg:
            fg.post(f32_pdu([1.5, 2.5]))
            wait_for(lambda: fg.dbg.num_messages() == 1, timeout=60, what="reply from auto-started worker")
            addresses.append(fg.blk._client.address)
        np.testing.assert_array_equal(pmt.to_python(pmt.cdr(fg.messages()[0])), [1.5, 2.5])
    assert addresses[0] == addresses[1] == shared_local_worker()


def test_pdu_helpers_roundtrip_dtypes():
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.int64, np.float32, np.float64, np.complex64,
                  np.complex128):
        arr = (np.arange(6) % 3).astype(dtype).reshape(2, 3)
        meta, back = pdu_to_array(array_to_pdu(pmt.make_dict(), arr))
        assert back.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back.reshape(2, 3), arr)
        assert tuple(uvector_to_numpy(pmt.dict_ref(meta, pmt.intern("shape"), pmt.PMT_NIL))) == (2, 3)
