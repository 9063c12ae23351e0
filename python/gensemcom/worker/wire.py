"""Wire format of the inference worker: a msgpack header frame plus raw array frames.

A message is a list of ZeroMQ frames::

    [header, buffer_0, buffer_1, ...]

``header`` is a msgpack map (never pickle) with these keys:

==========  ===============================================================
``v``       protocol version (int, currently 1)
``id``      request id (int), echoed in the reply
``k``       kind: ``"req"``, ``"ok"`` (reply) or ``"err"`` (error reply)
``m``       method name (str), looked up in a fixed registry by the server
``p``       model profile (str): ``""`` (server default), ``full``,
            ``embedded`` or ``tiny``
``a``       list of array descriptors ``[name, dtype, shape]``, one per
            buffer frame, in frame order
``meta``    small map of plain values (options, status data), optional
``e``       error message (str), only on ``"err"`` replies
``code``    short error code (str), only on ``"err"`` replies
==========  ===============================================================

Each buffer frame holds the C-contiguous, little-endian bytes of one array,
sent zero-copy (``copy=False``) and received with :func:`numpy.frombuffer`.
Every field is validated on receive; anything wrong raises :class:`WireError`
whose ``code`` and message name the problem, so the server can reply with an
error and keep serving. :func:`decode` is total: any list of frames gives a
:class:`Message` or a :class:`WireError`, nothing else, and it allocates no
array before the header's shapes and dtypes agree with the frames' lengths.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import msgpack
import numpy as np

VERSION = 1
"""Protocol version carried in every header."""

KIND_REQUEST = "req"
KIND_OK = "ok"
KIND_ERROR = "err"

from ..systems.base import PROFILES  # noqa: E402  (one list of profiles)
"""Model profiles a request may name ("" selects the server default)."""

DTYPES = {
    "uint8": np.dtype("<u1"),
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "complex64": np.dtype("<c8"),
    "complex128": np.dtype("<c16"),
    "bool": np.dtype("bool"),
}
"""Supported dtypes by wire name, all little-endian."""

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Default limit on the total size of one message (header plus buffers)."""

MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAYS = 64
MAX_NDIM = 8
MAX_NAME_LEN = 64
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")

ArrayMap = Dict[str, np.ndarray]
ArraysLike = Union[Mapping[str, Any], Sequence[Any], None]


class WireError(ValueError):
    """A message that does not follow the wire format.

    Args:
        code: Short machine-readable code (``bad_header``, ``bad_meta``,
            ``bad_dtype``, ``bad_shape``, ``size_mismatch``, ``oversized``,
            ``truncated``, ``bad_buffer``, ...).
        message: Human-readable explanation naming the problem.
        request_id: The request id if it could be read from the header.
    """

    def __init__(self, code: str, message: str, request_id: int = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass
class Message:
    """A decoded message.

    Attributes:
        kind: ``"req"``, ``"ok"`` or ``"err"``.
        request_id: Request id (echoed in replies).
        method: Method name.
        profile: Model profile name ("" for the server default).
        arrays: Arrays by name, in frame order (read-only views on the frames).
        meta: Small dict of plain values.
        error: Error message for ``"err"`` replies, else ``""``.
        code: Error code for ``"err"`` replies, else ``""``.
    """

    kind: str
    request_id: int
    method: str
    profile: str = ""
    arrays: ArrayMap = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)
    error: str = ""
    code: str = ""

    @property
    def nbytes(self) -> int:
        """Total bytes of the array payload."""
        return sum(a.nbytes for a in self.arrays.values())


def dtype_name(dtype: Any) -> str:
    """Return the wire name of a numpy dtype.

    Args:
        dtype: Anything :class:`numpy.dtype` accepts.

    Returns:
        The wire name, e.g. ``"float32"``.

    Raises:
        WireError: If the dtype is not supported.
    """
    dt = np.dtype(dtype)
    name = dt.name
    if name not in DTYPES:
        raise WireError("bad_dtype", f"unsupported dtype {dt!s}; supported: {', '.join(DTYPES)}")
    return name


def as_array_map(arrays: ArraysLike) -> ArrayMap:
    """Normalise arrays given as a dict, a sequence or ``None`` to a name->array dict.

    Sequences are named ``x0``, ``x1``, ...

    Args:
        arrays: Dict of name -> array-like, sequence of array-likes, or None.

    Returns:
        An ordered dict of numpy arrays.
    """
    if arrays is None:
        return {}
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    items = arrays.items() if isinstance(arrays, Mapping) else ((f"x{i}", a) for i, a in enumerate(arrays))
    return {str(k): np.asarray(v) for k, v in items}


def _wire_array(name: str, arr: np.ndarray) -> Tuple[list, np.ndarray]:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise WireError("bad_name", f"array name {name!r} is not a short identifier")
    wname = dtype_name(arr.dtype)
    target = DTYPES[wname]
    if arr.dtype != target:
        arr = arr.astype(target)
    if arr.ndim > MAX_NDIM:
        raise WireError("bad_shape", f"array {name!r} has {arr.ndim} dimensions (max {MAX_NDIM})")
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
    return [name, wname, list(arr.shape)], arr


def encode(
    kind: str,
    request_id: int,
    method: str,
    arrays: ArraysLike = None,
    *,
    profile: str = "",
    meta: Optional[Mapping[str, Any]] = None,
    error: str = "",
    code: str = "",
) -> List[Any]:
    """Encode a message into ZeroMQ frames.

    Array frames are memoryviews on the (contiguous) arrays, so sending them
    with ``send_multipart(frames, copy=False)`` does not copy the payload.

    Args:
        kind: ``"req"``, ``"ok"`` or ``"err"``.
        request_id: Request id.
        method: Method name.
        arrays: Arrays to carry (dict, sequence or None).
        profile: Model profile name.
        meta: Small dict of msgpack-serialisable plain values.
        error: Error message (error replies).
        code: Error code (error replies).

    Returns:
        The list of frames: header bytes followed by one buffer per array.

    Raises:
        WireError: If an array has an unsupported dtype or a bad name.
    """
    amap = as_array_map(arrays)
    descs, bufs = [], []
    for name, arr in amap.items():
        desc, arr = _wire_array(name, arr)
        descs.append(desc)
        bufs.append(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")
    header: Dict[str, Any] = {"v": VERSION, "id": int(request_id), "k": kind, "m": method, "p": profile, "a": descs}
    if meta:
        header["meta"] = dict(meta)
    if kind == KIND_ERROR:
        header["e"] = error
        header["code"] = code or "error"
    return [msgpack.packb(header, use_bin_type=True)] + bufs


def encode_request(request_id: int, method: str, arrays: ArraysLike = None, *, profile: str = "",
                   meta: Optional[Mapping[str, Any]] = None) -> List[Any]:
    """Encode a request (see :func:`encode`)."""
    return encode(KIND_REQUEST, request_id, method, arrays, profile=profile, meta=meta)


def encode_reply(request_id: int, method: str, arrays: ArraysLike = None, *,
                 meta: Optional[Mapping[str, Any]] = None) -> List[Any]:
    """Encode a successful reply (see :func:`encode`)."""
    return encode(KIND_OK, request_id, method, arrays, meta=meta)


def encode_error(request_id: int, method: str, code: str, error: str) -> List[bytes]:
    """Encode an error reply.

    Args:
        request_id: Id of the failed request (0 if unknown).
        method: Method name of the failed request ("" if unknown).
        code: Short error code.
        error: Message naming the problem.

    Returns:
        The frames of the error reply.
    """
    method = method if isinstance(method, str) else ""
    return encode(KIND_ERROR, request_id, method[:MAX_NAME_LEN], None, error=error[:4000], code=code)


def _frame_len(frame: Any) -> int:
    if isinstance(frame, (bytes, bytearray)):
        return len(frame)
    buf = getattr(frame, "buffer", frame)  # zmq.Frame -> memoryview
    try:
        view = memoryview(buf)
    except TypeError:
        raise WireError("bad_buffer", f"a frame is a {type(frame).__name__}, not a bytes buffer") from None
    if not view.c_contiguous:
        raise WireError("bad_buffer", "a frame is not a contiguous buffer")
    return view.nbytes


def _frame_buffer(frame: Any) -> Any:
    return getattr(frame, "buffer", frame)


def peek_header(frame: Any) -> Dict[str, Any]:
    """Parse a header frame without validating the arrays.

    Used by the broker to read the request id and method.

    Args:
        frame: The header frame (bytes or :class:`zmq.Frame`).

    Returns:
        The header map.

    Raises:
        WireError: If the frame is not a msgpack map or is too large.
    """
    n = _frame_len(frame)
    if n > MAX_HEADER_BYTES:
        raise WireError("bad_header", f"header of {n} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(
            bytes(_frame_buffer(frame)), raw=False, strict_map_key=True,
            max_array_len=4096, max_map_len=1024, max_str_len=MAX_HEADER_BYTES, max_bin_len=MAX_HEADER_BYTES,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError("bad_header", f"header is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise WireError("bad_header", f"header is a {type(header).__name__}, expected a map")
    return header


def _check_desc(i: int, desc: Any, request_id: int) -> Tuple[str, np.dtype, Tuple[int, ...]]:
    if not (isinstance(desc, (list, tuple)) and len(desc) == 3):
        raise WireError("bad_header", f"array descriptor {i} must be [name, dtype, shape]", request_id)
    name, dname, shape = desc
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise WireError("bad_name", f"array {i} name {name!r} is not a short identifier", request_id)
    if not isinstance(dname, str) or dname not in DTYPES:
        raise WireError("bad_dtype", f"array {name!r} has unsupported dtype {dname!r}; "
                        f"supported: {', '.join(DTYPES)}", request_id)
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape):
        raise WireError("bad_shape", f"array {name!r} has invalid shape {shape!r:.80} "
                        f"(a list of at most {MAX_NDIM} non-negative ints)", request_id)
    return name, DTYPES[dname], tuple(shape)


def _check_meta(meta: Any, request_id: int) -> Dict[str, Any]:
    if not isinstance(meta, dict):
        raise WireError("bad_meta", f"meta must be a map, got a {type(meta).__name__}", request_id)
    bad = [k for k in meta if not isinstance(k, str)]
    if bad:
        raise WireError("bad_meta", f"meta keys must be strings, got {bad[0]!r:.40} "
                        f"({type(bad[0]).__name__})", request_id)
    return meta


def decode(frames: Sequence[Any], max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """Decode and validate a message.

    Total: whatever the frames hold, the result is a :class:`Message` or a
    :class:`WireError`. Every array's declared dtype and shape are checked
    against its frame's length (and the declared total against ``max_bytes``)
    before any array is made, so a header that lies allocates nothing.

    Args:
        frames: The frames (bytes or :class:`zmq.Frame`), header first.
        max_bytes: Largest accepted total size (header plus buffers).

    Returns:
        The decoded :class:`Message`; arrays are zero-copy read-only views.

    Raises:
        WireError: If anything in the message is malformed, naming the problem.
    """
    if not isinstance(frames, (list, tuple)):
        try:
            frames = list(frames)
        except TypeError:
            raise WireError("bad_buffer", f"frames must be a sequence, got a {type(frames).__name__}") from None
    if not frames:
        raise WireError("truncated", "empty message (no header frame)")
    total = sum(_frame_len(f) for f in frames)
    header = peek_header(frames[0])
    rid = header.get("id", 0)
    rid = rid if isinstance(rid, int) and not isinstance(rid, bool) else 0
    if total > max_bytes:
        raise WireError("oversized", f"message of {total} bytes exceeds the limit of {max_bytes} bytes", rid)
    if header.get("v") != VERSION:
        raise WireError("bad_version", f"protocol version {header.get('v')!r:.40} not supported "
                        f"(expected {VERSION})", rid)
    if not isinstance(header.get("id"), int) or isinstance(header.get("id"), bool):
        raise WireError("bad_header", "request id missing or not an int")
    kind = header.get("k")
    if kind not in (KIND_REQUEST, KIND_OK, KIND_ERROR):
        raise WireError("bad_header", f"unknown message kind {kind!r:.40}", rid)
    method = header.get("m")
    if not isinstance(method, str) or len(method) > MAX_NAME_LEN:
        raise WireError("bad_header", "method missing, not a string, or too long", rid)
    profile = header.get("p", "")
    if not isinstance(profile, str) or (profile and profile not in PROFILES):
        raise WireError("bad_profile", f"unknown model profile {profile!r:.40}; known: {', '.join(PROFILES)}",
                        rid)
    meta = _check_meta(header.get("meta", {}), rid)
    descs = header.get("a", [])
    if not isinstance(descs, (list, tuple)) or len(descs) > MAX_ARRAYS:
        raise WireError("bad_header", f"array list missing or longer than {MAX_ARRAYS}", rid)
    nbuf = len(frames) - 1
    if nbuf < len(descs):
        raise WireError("truncated", f"header describes {len(descs)} arrays but only {nbuf} buffer frames arrived", rid)
    if nbuf > len(descs):
        raise WireError("extra_frames", f"{nbuf} buffer frames for {len(descs)} described arrays", rid)
    arrays: ArrayMap = {}
    for i, desc in enumerate(descs):
        name, dt, shape = _check_desc(i, desc, rid)
        if name in arrays:
            raise WireError("bad_name", f"array name {name!r} appears twice", rid)
        count = extent = 1
        for d in shape:
            count *= d
            extent *= max(d, 1)
        # the declaration must match the frame before any array is made; as every frame
        # counts towards ``total``, all arrays together stay within ``max_bytes``
        expected = count * dt.itemsize
        got = _frame_len(frames[i + 1])
        if got != expected:
            raise WireError("size_mismatch", f"array {name!r} ({dt.name} {list(shape)}) needs {expected} bytes "
                            f"but its frame has {got}", rid)
        if extent * dt.itemsize > max_bytes:  # an empty array whose other dims are absurd
            raise WireError("bad_shape", f"array {name!r} declares shape {list(shape)}, beyond the "
                            f"{max_bytes}-byte limit", rid)
        arr = np.frombuffer(_frame_buffer(frames[i + 1]), dtype=dt, count=count) if count else np.empty(0, dt)
        arrays[name] = arr.reshape(shape)
    error = header.get("e", "") if kind == KIND_ERROR else ""
    code = header.get("code", "") if kind == KIND_ERROR else ""
    return Message(kind=kind, request_id=rid, method=method, profile=profile, arrays=arrays, meta=meta,
                   error=str(error)[:4000], code=str(code)[:MAX_NAME_LEN])


# --------------------------------------------------------------------------- broker <-> worker
# Control frames of the worker-broker link (ZMQ guide "paranoid pirate"). A worker's
# DEALER talks to the broker's backend ROUTER with messages whose first frame is one of:
#   READY      [READY, info]              worker joins (msgpack info: name, capacity, heartbeat_ms)
#   HEARTBEAT  [HEARTBEAT, stats?]        both ways; the worker's carries a small msgpack summary
#   REQUEST    [REQUEST, ticket, header, buffers...]   broker -> worker
#   REPLY      [REPLY, ticket, header, buffers...]     worker -> broker
#   DISCONNECT [DISCONNECT]               graceful leave (worker) or "please re-register" (broker)
CMD_READY = b"\x01"
CMD_HEARTBEAT = b"\x02"
CMD_REQUEST = b"\x03"
CMD_REPLY = b"\x04"
CMD_DISCONNECT = b"\x05"


def pack_info(info: Mapping[str, Any]) -> bytes:
    """Pack a small control-frame map (msgpack)."""
    return msgpack.packb(dict(info), use_bin_type=True)


def unpack_info(frame: Any) -> Dict[str, Any]:
    """Unpack a control-frame map; returns ``{}`` for anything malformed."""
    try:
        data = bytes(_frame_buffer(frame))
        if len(data) > MAX_HEADER_BYTES:
            return {}
        out = msgpack.unpackb(data, raw=False)
    except Exception:
        return {}
    return out if isinstance(out, dict) else {}
