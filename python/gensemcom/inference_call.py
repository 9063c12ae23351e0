"""GNU Radio block ``inference_call``: send each PDU to the inference worker, publish the result.

The message handler only validates and enqueues (bounded queue); a separate
thread calls the worker over ZeroMQ, so no model ever runs on GNU Radio's
scheduler thread and a slow or dead worker never stalls the flowgraph.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import pmt
from gnuradio import gr

from .worker.client import WorkerClient, WorkerError, WorkerUnavailable

_STOP = object()

# uniform vector PMT type -> (elements getter, numpy dtype), for the dtypes the wire format carries
_PMT_TO_NUMPY = (
    (pmt.is_u8vector, pmt.u8vector_elements, np.uint8), (pmt.is_s8vector, pmt.s8vector_elements, np.int8),
    (pmt.is_s16vector, pmt.s16vector_elements, np.int16), (pmt.is_s32vector, pmt.s32vector_elements, np.int32),
    (pmt.is_s64vector, pmt.s64vector_elements, np.int64), (pmt.is_f32vector, pmt.f32vector_elements, np.float32),
    (pmt.is_f64vector, pmt.f64vector_elements, np.float64),
    (pmt.is_c32vector, pmt.c32vector_elements, np.complex64),
    (pmt.is_c64vector, pmt.c64vector_elements, np.complex128),
)
_NUMPY_TO_PMT = {
    np.dtype(np.uint8): pmt.init_u8vector, np.dtype(np.bool_): pmt.init_u8vector,
    np.dtype(np.int8): pmt.init_s8vector, np.dtype(np.int16): pmt.init_s16vector,
    np.dtype(np.int32): pmt.init_s32vector, np.dtype(np.int64): pmt.init_s64vector,
    np.dtype(np.float16): pmt.init_f32vector, np.dtype(np.float32): pmt.init_f32vector,
    np.dtype(np.float64): pmt.init_f64vector, np.dtype(np.complex64): pmt.init_c32vector,
    np.dtype(np.complex128): pmt.init_c64vector,
}
_SHAPE = pmt.intern("shape")


class BadPdu(ValueError):
    """The input message is not a usable PDU."""


def uvector_to_numpy(vec: Any) -> Optional[np.ndarray]:
    """Convert a uniform vector PMT to numpy (None for u16/u32/u64, which the wire does not carry)."""
    for test, elements, dtype in _PMT_TO_NUMPY:
        if test(vec):
            return np.asarray(elements(vec), dtype=dtype)
    return None


def pdu_to_array(msg: Any) -> Tuple[Any, np.ndarray]:
    """Split a PDU into its metadata PMT and a numpy array.

    Args:
        msg: A PMT pair ``(metadata dict or nil, uniform vector)``.

    Returns:
        ``(meta, array)`` with ``meta`` a PMT dict.

    Raises:
        BadPdu: If ``msg`` is not a PDU, the vector is empty or of an unsupported type.
    """
    if not pmt.is_pair(msg):
        raise BadPdu("message is not a PDU (pmt pair)")
    meta, vec = pmt.car(msg), pmt.cdr(msg)
    if pmt.is_null(meta):
        meta = pmt.make_dict()
    elif not pmt.is_dict(meta):
        raise BadPdu("PDU metadata is not a dict")
    if not pmt.is_uniform_vector(vec):
        raise BadPdu("PDU data is not a uniform vector")
    arr = uvector_to_numpy(vec)
    if arr is None:
        raise BadPdu("PDU vector type is not supported (u16/u32/u64)")
    if arr.size == 0:
        raise BadPdu("PDU vector is empty")
    return meta, arr


def array_to_pdu(meta: Any, arr: np.ndarray) -> Any:
    """Build a PDU from a metadata dict and an array (flattened; shape goes into ``meta['shape']``).

    Args:
        meta: PMT dict.
        arr: Array of a supported dtype (float16 is widened to float32, bool to u8).

    Returns:
        The PDU (pmt pair).
    """
    make = _NUMPY_TO_PMT.get(arr.dtype)
    if make is None:
        raise BadPdu(f"cannot put dtype {arr.dtype} into a PDU")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    meta = pmt.dict_add(meta, _SHAPE, pmt.init_s64vector(arr.ndim, [int(d) for d in arr.shape]))
    flat = np.ascontiguousarray(arr).reshape(-1)
    return pmt.cons(meta, make(flat.size, flat))


def _shape_from_meta(meta: Any) -> Optional[Tuple[int, ...]]:
    val = pmt.dict_ref(meta, _SHAPE, pmt.PMT_NIL)
    if pmt.is_null(val):
        return None
    try:
        py = uvector_to_numpy(val) if pmt.is_uniform_vector(val) else pmt.to_python(val)
        return tuple(int(d) for d in np.asarray(py).reshape(-1))
    except (TypeError, ValueError):
        raise BadPdu(f"metadata 'shape' is not a list of ints: {val}") from None


class inference_call(gr.basic_block):
    """Call an inference-worker method on each PDU, off the scheduler thread.

    Inputs:
        in: PDU ``(metadata dict, uniform vector)``. The vector is sent as array
        ``input_name``, reshaped to ``metadata['shape']`` if present, else to
        ``shape`` if set, else 1-D.

    Outputs:
        out: PDU with the input metadata plus ``method``, ``latency_ms`` and
        ``shape`` (of the output array), and the output array ``output_name``
        (or the reply's first array) flattened.

    Bad input (not a PDU, metadata not a dict, empty or unsupported vector,
    wrong shape) is logged and counted in :attr:`n_dropped`, as are PDUs that
    find the queue full; worker failures (error replies, no worker) are logged
    and counted in :attr:`n_errors`. Nothing raises in the message handler.

    Args:
        address: Worker or broker endpoint; ``''`` starts a local worker process.
        method: Worker method, e.g. ``echo``, ``tiny_encode``.
        profile: Model profile (``tiny``, ``embedded``, ``full``; ``''``: worker default).
        timeout_ms: Per-attempt reply timeout.
        retries: Extra attempts after a timeout.
        queue_size: PDUs waiting for the worker before new ones are dropped.
        input_name: Name of the request array.
        output_name: Reply array to publish (``''``: the first one).
        shape: Default request shape (e.g. ``(1, 3, 32, 32)``, ``-1`` allowed); ``()``: 1-D.
        curve_keys: CURVE key directory (``''``: none).
    """

    def __init__(self, address: str = "", method: str = "echo", profile: str = "tiny", timeout_ms: int = 5000,
                 retries: int = 2, queue_size: int = 16, input_name: str = "x", output_name: str = "",
                 shape: Sequence[int] = (), curve_keys: str = ""):
        gr.basic_block.__init__(self, name="inference_call", in_sig=None, out_sig=None)
        if timeout_ms <= 0 or retries < 0 or queue_size < 1:
            raise ValueError("timeout_ms > 0, retries >= 0 and queue_size >= 1 are required")
        self.address = address
        self.method = method
        self.profile = profile
        self.timeout_ms = int(timeout_ms)
        self.retries = int(retries)
        self.input_name = input_name
        self.output_name = output_name
        self.shape = tuple(int(d) for d in shape) if shape else ()
        self.curve_keys = curve_keys or None
        self.n_in = self.n_out = self.n_dropped = self.n_errors = 0
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=int(queue_size))
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[WorkerClient] = None
        self._count_lock = threading.Lock()
        self._port_out = pmt.intern("out")
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(self._port_out)
        self.set_msg_handler(pmt.intern("in"), self._on_pdu)

    # ------------------------------------------------------------------ GNU Radio hooks
    def start(self) -> bool:
        """Start the worker-calling thread."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="inference_call", daemon=True)
            self._thread.start()
        return True

    def stop(self) -> bool:
        """Stop the thread (pending PDUs are discarded) and close the client."""
        thread, self._thread = self._thread, None
        if thread is not None:
            while True:  # make room for the stop marker
                try:
                    self._queue.put_nowait(_STOP)
                    break
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass
            thread.join(self.timeout_ms / 1e3 * (self.retries + 1) + 5.0)
        if self._client is not None:
            self._client.close()
            self._client = None
        return True

    # ------------------------------------------------------------------ counters
    def _count(self, name: str) -> None:
        with self._count_lock:
            setattr(self, name, getattr(self, name) + 1)

    def stats(self) -> dict:
        """Block counters plus the client's statistics (once connected)."""
        out = {"in": self.n_in, "out": self.n_out, "dropped": self.n_dropped, "errors": self.n_errors,
               "queued": self._queue.qsize()}
        if self._client is not None:
            out["client"] = self._client.stats()
        return out

    # ------------------------------------------------------------------ handler (scheduler thread)
    def _on_pdu(self, msg: Any) -> None:
        self._count("n_in")
        try:
            meta, arr = pdu_to_array(msg)
            shape = _shape_from_meta(meta) or self.shape
            if shape:
                try:
                    arr = arr.reshape(shape)
                except ValueError:
                    raise BadPdu(f"cannot reshape {arr.size} elements to {list(shape)}") from None
            self._queue.put_nowait((meta, arr, time.perf_counter()))
        except BadPdu as exc:
            self._count("n_dropped")
            self.logger.warn(f"dropping PDU: {exc}")
        except queue.Full:
            self._count("n_dropped")
            self.logger.warn(f"dropping PDU: queue full ({self._queue.maxsize} waiting for the worker)")
        except Exception as exc:  # never raise inside a message handler
            self._count("n_dropped")
            self.logger.error(f"dropping PDU: unexpected {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ worker thread
    def _connect(self) -> WorkerClient:
        if self._client is None:
            self._client = WorkerClient(self.address or None, profile=self.profile, timeout_ms=self.timeout_ms,
                                        retries=self.retries, curve_keys=self.curve_keys)
            self.logger.info(f"calling {self.method} at {self._client.address}")
        return self._client

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            meta, arr, t_in = item
            try:
                reply = self._connect().call(self.method, {self.input_name: arr})
                if not reply.arrays:
                    raise WorkerError("empty_reply", "reply carries no array", self.method)
                name = self.output_name or next(iter(reply.arrays))
                if name not in reply.arrays:
                    raise WorkerError("no_output", f"reply has no array {name!r} (has {list(reply.arrays)})",
                                      self.method)
                meta = pmt.dict_add(meta, pmt.intern("method"), pmt.intern(self.method))
                meta = pmt.dict_add(meta, pmt.intern("latency_ms"),
                                    pmt.from_double((time.perf_counter() - t_in) * 1e3))
                self.message_port_pub(self._port_out, array_to_pdu(meta, reply.arrays[name]))
                self._count("n_out")
            except (WorkerError, WorkerUnavailable, BadPdu) as exc:
                self._count("n_errors")
                self.logger.error(f"{self.method} failed, PDU dropped: {exc}")
            except Exception as exc:  # the thread must survive anything
                self._count("n_errors")
                self.logger.error(f"{self.method} failed, PDU dropped: {type(exc).__name__}: {exc}")
