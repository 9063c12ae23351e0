"""GNU Radio block ``inference_call``: send each PDU to the inference worker, publish the result.

The message handler only validates and enqueues (bounded queue); a separate
thread calls the worker over ZeroMQ, so no model ever runs on GNU Radio's
scheduler thread and a slow or dead worker never stalls the flowgraph.
"""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import pmt

from ..worker.client import WorkerError
from .pdu_utils import PduError, pdu_parts
from .worker_block import worker_block

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


class BadPdu(PduError):
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
    meta, vec = pdu_parts(msg, BadPdu)
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


class inference_call(worker_block):
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
        worker_block.__init__(self, "inference_call", address, profile, timeout_ms, retries, queue_size, curve_keys)
        self.method = method
        self.input_name = input_name
        self.output_name = output_name
        self.shape = tuple(int(d) for d in shape) if shape else ()

    def prepare(self, msg: Any):
        meta, arr = pdu_to_array(msg)
        shape = _shape_from_meta(meta) or self.shape
        if shape:
            try:
                arr = arr.reshape(shape)
            except ValueError:
                raise BadPdu(f"cannot reshape {arr.size} elements to {list(shape)}") from None
        return self.method, {self.input_name: arr}, None, meta

    def finish(self, reply, state):
        meta, t_in = state
        if not reply.arrays:
            raise WorkerError("empty_reply", "reply carries no array", self.method)
        name = self.output_name or next(iter(reply.arrays))
        if name not in reply.arrays:
            raise WorkerError("no_output", f"reply has no array {name!r} (has {list(reply.arrays)})", self.method)
        meta = pmt.dict_add(meta, pmt.intern("method"), pmt.intern(self.method))
        meta = pmt.dict_add(meta, pmt.intern("latency_ms"), pmt.from_double((time.perf_counter() - t_in) * 1e3))
        return array_to_pdu(meta, reply.arrays[name])
