"""The SemanticFrame, the one data type that crosses the air, and all its encodings.

A semantic transmitter turns an image into a frame with

* a **digital part** (bytes that must arrive exactly: caption token ids, a label map),
  sent over CRC-32 + LDPC + M-QAM;
* **analog segments**: named float32 vectors sent uncoded (a token embedding, a
  latent, the foreground and background features of a dual-branch JSCC). Each segment
  is power-normalised on its own, so each reaches the channel at unit average power
  and its scale travels in the digital header. A one-vector frame has one segment,
  :data:`DEFAULT_SEGMENT`;
* a **header**: small JSON-able values the receiver needs (shapes, norms, options);
  it travels inside the digital part;
* **meta**: provenance that never crosses the air (image id, SNR, timings, the
  system's ``report``, the feedback ``session`` and ``round``).

Every encoding of a frame lives in this module, so no block, link or worker writes
its own:

* **air form** -- :func:`to_air` / :func:`from_air`: the digital path's bytes (wire
  header + payload, :func:`pack_digital` / :func:`unpack_digital`) and the analog
  path's unit-power complex symbols, segments in order. A receiver that lost the
  digital part (CRC failure) still gets the analog symbols, un-scaled and flagged
  (``crc_ok`` False): the header, and with it the scales and segment lengths, is gone.
* **worker form** -- :func:`to_arrays` / :func:`from_arrays`: arrays ``digital``,
  ``analog``, ``header`` plus a small meta map, for the inference worker's requests.
* **PMT form** -- :func:`frame_to_pmt` / :func:`frame_from_pmt`, for GNU Radio messages.
* **plain meta** -- :func:`plain_meta`: meta values every form can carry.

Decoders are total: any bytes, arrays or PMT give a frame or :class:`FrameError`.
Payload codecs (token ids, UTF-8 text, label maps) are in :mod:`gensemcom.codecs`.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import msgpack
import numpy as np

from .phy.analog import analog_demap, analog_map

WIRE_VERSION = 2
MAX_HEADER_BYTES = 1 << 16
#: the largest analog part (reals, all segments) a frame may announce or carry
MAX_ANALOG = 1 << 26
MAX_SEGMENTS = 16
MAX_NAME = 32
#: the segment name of a one-vector frame (written without its name on the air)
DEFAULT_SEGMENT = "analog"

AnalogLike = Union[None, np.ndarray, Sequence[float], Mapping[str, Any]]


class FrameError(ValueError):
    """A frame (or one of its encodings) that cannot be used; the message says why."""


def _segment(name: str, x) -> np.ndarray:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise FrameError(f"analog segment name must be a string of 1 to {MAX_NAME} characters, got {name!r}")
    try:
        a = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as e:
        raise FrameError(f"analog segment {name!r} is not a real vector: {e}") from None
    if a.size % 2:
        raise FrameError(f"analog segment {name!r} has odd length {a.size}: pad it to an even length "
                         "(two reals make one complex symbol)")
    return a


class SemanticFrame:
    """What a semantic transmitter produces and a semantic receiver consumes.

    Args:
        system (str): the system that made it (``"tisc"``, ``"deepjscc"``, ...).
        digital (bytes): the system's exact payload.
        analog: the analog part: one real vector (the segment :data:`DEFAULT_SEGMENT`),
            or a mapping of segment names to real vectors, in sending order. Each
            segment has an even length. None or empty: a digital-only frame.
        header (dict): small values the receiver needs; sent in the digital part.
        meta (dict): provenance and bookkeeping; never sent.
        crc_ok (bool | None): at a receiver, whether the digital part arrived intact
            (None at the transmitter).

    Attributes:
        segments (dict[str, np.ndarray]): the analog segments, float32, in order.
        analog (np.ndarray): the segments concatenated (read-only view of the frame's
            whole analog part).
    """

    __slots__ = ("system", "digital", "segments", "header", "meta", "crc_ok")

    def __init__(self, system: str, digital: bytes = b"", analog: AnalogLike = None,
                 header: Optional[Dict[str, Any]] = None, meta: Optional[Dict[str, Any]] = None,
                 crc_ok: Optional[bool] = None):
        self.system = str(system)
        self.digital = bytes(digital)
        if isinstance(analog, Mapping):
            if len(analog) > MAX_SEGMENTS:
                raise FrameError(f"{len(analog)} analog segments, more than {MAX_SEGMENTS}")
            self.segments = {k: _segment(k, v) for k, v in analog.items()}
        else:
            a = _segment(DEFAULT_SEGMENT, np.zeros(0) if analog is None else analog)
            self.segments = {DEFAULT_SEGMENT: a} if a.size else {}
        self.header = dict(header or {})
        self.meta = dict(meta or {})
        self.crc_ok = crc_ok

    @property
    def analog(self) -> np.ndarray:
        if not self.segments:
            return np.zeros(0, np.float32)
        if len(self.segments) == 1:
            return next(iter(self.segments.values()))
        return np.concatenate(list(self.segments.values()))

    def segment(self, name: str = DEFAULT_SEGMENT) -> np.ndarray:
        """One analog segment (empty if the frame has none of that name)."""
        return self.segments.get(name, np.zeros(0, np.float32))

    def segment_sizes(self) -> Dict[str, int]:
        """Reals per segment, in order."""
        return {k: int(v.size) for k, v in self.segments.items()}

    def replace(self, **kw) -> "SemanticFrame":
        """A copy with some fields replaced (``analog`` takes a vector or a mapping)."""
        d = {"system": self.system, "digital": self.digital, "analog": dict(self.segments),
             "header": dict(self.header), "meta": dict(self.meta), "crc_ok": self.crc_ok}
        d.update(kw)
        return SemanticFrame(**d)

    def __eq__(self, other) -> bool:
        if not isinstance(other, SemanticFrame):
            return NotImplemented
        return (self.system, self.digital, self.header, self.meta, self.crc_ok, list(self.segments)) == \
            (other.system, other.digital, other.header, other.meta, other.crc_ok, list(other.segments)) and \
            all(np.array_equal(self.segments[k], other.segments[k]) for k in self.segments)

    def __repr__(self) -> str:
        segs = ", ".join(f"{k}={v.size}" for k, v in self.segments.items()) or "none"
        return (f"SemanticFrame({self.system!r}, digital={len(self.digital)} B, analog segments: {segs}, "
                f"header keys {sorted(self.header)}, crc_ok={self.crc_ok})")


# ================================================================== air form
@dataclass
class AirHeader:
    """What the digital path's wire header says (:func:`unpack_digital`).

    Attributes:
        system (str): the transmitting system.
        header (dict): the system's header.
        segments (list[tuple[str, int, float]]): per analog segment, in order: name,
            number of reals, and the scale that de-normalises its symbols.
        payload (bytes): the system's digital payload.
    """

    system: str
    header: Dict[str, Any]
    segments: List[Tuple[str, int, float]]
    payload: bytes

    @property
    def analog_len(self) -> int:
        return sum(n for _, n, _ in self.segments)


def pack_digital(frame: SemanticFrame, scales: Sequence[float] = ()) -> bytes:
    """The bytes the digital path carries: ``>HI`` (version, wire-header length), the
    msgpack wire header ``{"s": system, "h": header, "a": segments}`` and the payload.
    Each segment is ``[n, scale]`` (the default segment) or ``[name, n, scale]``.

    Args:
        frame (SemanticFrame): the frame.
        scales (Sequence[float]): one scale per analog segment (:func:`analog_map`'s).

    Raises:
        FrameError: a header msgpack cannot pack, or one over :data:`MAX_HEADER_BYTES`.
    """
    sizes = frame.segment_sizes()
    if len(scales) != len(sizes):
        raise FrameError(f"{len(scales)} scales for {len(sizes)} analog segments")
    segs = [[n, float(k)] if name == DEFAULT_SEGMENT else [name, n, float(k)]
            for (name, n), k in zip(sizes.items(), scales)]
    try:
        head = msgpack.packb({"s": frame.system, "h": frame.header, "a": segs}, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise FrameError(f"frame header cannot be packed: {e}") from None
    if len(head) > MAX_HEADER_BYTES:
        raise FrameError(f"frame header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    return struct.pack(">HI", WIRE_VERSION, len(head)) + head + frame.digital


def _check_segments(raw) -> List[Tuple[str, int, float]]:
    if not isinstance(raw, (list, tuple)) or len(raw) > MAX_SEGMENTS:
        raise FrameError("frame header's analog segments are not a list of at most "
                         f"{MAX_SEGMENTS} entries")
    out, total, names = [], 0, set()
    for e in raw:
        if isinstance(e, (list, tuple)) and len(e) == 2:
            name, n, k = DEFAULT_SEGMENT, e[0], e[1]
        elif isinstance(e, (list, tuple)) and len(e) == 3:
            name, n, k = e
        else:
            raise FrameError(f"frame header has a malformed analog segment {e!r:.60}")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or name in names:
            raise FrameError(f"frame header has a bad or repeated segment name {name!r:.40}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n % 2:
            raise FrameError(f"segment {name!r} has a bad length {n!r:.40} (a non-negative even integer)")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
            raise FrameError(f"segment {name!r} has a bad scale {k!r:.40} (finite, >= 0)")
        total += n
        if total > MAX_ANALOG:
            raise FrameError(f"frame header announces over {MAX_ANALOG} analog values")
        names.add(name)
        out.append((name, int(n), float(k)))
    return out


def unpack_digital(data: bytes) -> AirHeader:
    """Inverse of :func:`pack_digital`.

    Raises:
        FrameError: on a truncated or malformed packet, an unknown version, or wire
            fields of the wrong type or range (and on nothing else: this is total).
    """
    try:
        data = bytes(data)
    except (TypeError, ValueError) as e:
        raise FrameError(f"digital part is not bytes: {e}") from None
    if len(data) < 6:
        raise FrameError(f"digital part of {len(data)} bytes is too short for a frame header")
    version, hlen = struct.unpack(">HI", data[:6])
    if version != WIRE_VERSION:
        raise FrameError(f"unknown frame version {version} (this receiver reads version {WIRE_VERSION})")
    if hlen > MAX_HEADER_BYTES or 6 + hlen > len(data):
        raise FrameError(f"frame header length {hlen} does not fit in {len(data)} bytes")
    try:
        head = msgpack.unpackb(data[6:6 + hlen], raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several types (ValueError, ExtraData, UnicodeDecodeError, ...)
        raise FrameError(f"frame header is not valid msgpack: {type(e).__name__}") from None
    if not isinstance(head, dict) or not {"s", "h", "a"} <= set(head):
        raise FrameError("frame header lacks system, header or analog segments")
    system, header = head["s"], head["h"]
    if not isinstance(system, str) or not 0 < len(system) <= 64:
        raise FrameError(f"frame header's system is not a name: {system!r:.40}")
    if not isinstance(header, dict):
        raise FrameError("frame header's system header is not a map")
    return AirHeader(system, header, _check_segments(head["a"]), data[6 + hlen:])


@dataclass
class AirFrame:
    """A frame as the PHY carries it (:func:`to_air`).

    Attributes:
        digital (bytes): wire header and payload, for the digital path.
        analog (np.ndarray): complex64 symbols of every segment, each at unit
            average power, in order.
        segments (list[tuple[str, int, float]]): name, complex symbols and scale per segment.
    """

    digital: bytes
    analog: np.ndarray
    segments: List[Tuple[str, int, float]] = field(default_factory=list)

    def analog_uses(self) -> Dict[str, int]:
        """Complex channel uses per analog segment."""
        return {name: n for name, n, _ in self.segments}


def to_air(frame: SemanticFrame) -> AirFrame:
    """Frame -> air form: each segment power-normalised (:func:`analog_map`), its scale
    written into the wire header.

    Raises:
        FrameError: non-finite analog values, or a header that cannot be packed.
    """
    symbols, segs = [], []
    for name, x in frame.segments.items():
        try:
            s, k = analog_map(x)
        except ValueError as e:
            raise FrameError(f"analog segment {name!r}: {e}") from None
        symbols.append(s)
        segs.append((name, int(s.size), float(k)))
    digital = pack_digital(frame, [k for _, _, k in segs])
    analog = np.concatenate(symbols).astype(np.complex64) if symbols else np.zeros(0, np.complex64)
    return AirFrame(digital, analog, segs)


def lost_frame(system: str, symbols: np.ndarray, meta: Optional[Dict[str, Any]] = None) -> SemanticFrame:
    """The frame a receiver builds when the digital part (with the header) is lost:
    ``crc_ok`` False, no payload or header, the analog symbols un-scaled (unit power,
    scale 1) as one default segment, for systems that can fall back on them."""
    return SemanticFrame(system, b"", analog_demap(np.asarray(symbols).reshape(-1), 1.0), {}, meta, False)


def from_air(digital: Optional[bytes], symbols: np.ndarray, crc_ok: bool = True, system: str = "",
             meta: Optional[Dict[str, Any]] = None, on_bad_header: str = "raise") -> SemanticFrame:
    """Air form -> frame at a receiver.

    Args:
        digital (bytes | None): the digital path's bytes (None: nothing decoded).
        symbols (np.ndarray): the analog path's equalised complex symbols.
        crc_ok (bool): whether the digital path passed its CRC.
        system (str): the system to name in a frame whose header was lost.
        meta (dict): the received frame's meta.
        on_bad_header (str): a digital part that passed CRC but does not parse:
            ``"raise"`` (FrameError) or ``"lost"`` (treated as a lost digital part).

    Returns:
        SemanticFrame: ``crc_ok`` True with the header's segments, each de-normalised
        by its scale; or :func:`lost_frame` when the digital part was lost.

    Raises:
        FrameError: a bad header with ``on_bad_header="raise"``, or fewer analog
            symbols than the header announces.
    """
    symbols = np.asarray(symbols, np.complex64).reshape(-1)
    if digital is None or not crc_ok:
        return lost_frame(system, symbols, meta)
    try:
        head = unpack_digital(digital)
    except FrameError:
        if on_bad_header == "lost":
            return lost_frame(system, symbols, meta)
        raise
    need = head.analog_len // 2
    if symbols.size < need:
        raise FrameError(f"{symbols.size} analog symbols received, the header announces {need}")
    segs, at = {}, 0
    for name, n, k in head.segments:
        segs[name] = analog_demap(symbols[at: at + n // 2], k)
        at += n // 2
    return SemanticFrame(head.system, head.payload, segs, head.header, meta, True)


# ================================================================== worker form
def to_arrays(frame: SemanticFrame, prefix: str = "") -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Frame -> (arrays, meta) for a worker request or reply: arrays ``digital`` (u8),
    ``analog`` (f32, segments concatenated), ``header`` (u8, msgpack); meta
    ``segments`` ([[name, n], ...]) and ``crc_ok``. ``prefix`` names a second frame in
    the same message (``"fb_"`` for feedback)."""
    header = msgpack.packb(frame.header, use_bin_type=True) if frame.header else b""
    arrays = {f"{prefix}digital": np.frombuffer(frame.digital, np.uint8),
              f"{prefix}analog": np.ascontiguousarray(frame.analog, np.float32),
              f"{prefix}header": np.frombuffer(header, np.uint8)}
    meta: Dict[str, Any] = {f"{prefix}segments": [[k, n] for k, n in frame.segment_sizes().items()]}
    if frame.crc_ok is not None:
        meta[f"{prefix}crc_ok"] = bool(frame.crc_ok)
    return arrays, meta


def _unpack_header(raw: bytes) -> Dict[str, Any]:
    if not raw:
        return {}
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several types
        raise FrameError(f"frame header is not valid msgpack: {type(e).__name__}") from None
    if not isinstance(header, dict):
        raise FrameError("frame header must be a map")
    return header


def _split(analog: np.ndarray, segments) -> Dict[str, np.ndarray]:
    if segments is None:
        return {DEFAULT_SEGMENT: analog} if analog.size else {}
    if not isinstance(segments, (list, tuple)) or len(segments) > MAX_SEGMENTS:
        raise FrameError("segments must be a list of [name, length] pairs")
    out, at = {}, 0
    for e in segments:
        if not (isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str)
                and isinstance(e[1], int) and not isinstance(e[1], bool) and e[1] >= 0):
            raise FrameError(f"malformed segment entry {e!r:.60}")
        out[e[0]] = analog[at: at + e[1]]
        at += e[1]
    if at != analog.size:
        raise FrameError(f"segments add up to {at} values, the analog part has {analog.size}")
    return out


def from_arrays(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], system: str,
                prefix: str = "") -> SemanticFrame:
    """Inverse of :func:`to_arrays` (the worker's side).

    Raises:
        FrameError: missing or malformed arrays, header or segments.
    """
    try:
        digital = np.asarray(arrays[f"{prefix}digital"])
        analog = np.asarray(arrays[f"{prefix}analog"])
        header = np.asarray(arrays[f"{prefix}header"])
    except KeyError as e:
        raise FrameError(f"frame array {e} is missing") from None
    if digital.dtype != np.uint8 or header.dtype != np.uint8 or analog.dtype != np.float32:
        raise FrameError("frame arrays must be digital uint8, analog float32, header uint8")
    if analog.ndim != 1 or analog.size > MAX_ANALOG or not np.all(np.isfinite(analog)):
        raise FrameError("analog part must be a finite 1-D vector")
    crc_ok = meta.get(f"{prefix}crc_ok")
    if crc_ok is not None and not isinstance(crc_ok, bool):
        raise FrameError(f"meta '{prefix}crc_ok' must be a bool")
    segs = _split(analog, meta.get(f"{prefix}segments"))
    return SemanticFrame(system, digital.tobytes(), segs, _unpack_header(header.tobytes()), {}, crc_ok)


# ================================================================== PMT form
def frame_to_pmt(frame: SemanticFrame):
    """A frame as a PMT dict (for GNU Radio messages). Imports pmt lazily.

    Keys: ``system`` (symbol), ``digital`` (u8vector), ``analog`` (f32vector, segments
    concatenated), ``segments`` (list of (name, length) pairs), ``header`` (u8vector,
    msgpack), ``meta`` (dict, :func:`plain_meta`) and ``crc_ok`` (bool, at a receiver).
    """
    import pmt

    a, m = to_arrays(frame)
    d = pmt.make_dict()
    d = pmt.dict_add(d, pmt.intern("system"), pmt.intern(frame.system))
    d = pmt.dict_add(d, pmt.intern("digital"), pmt.init_u8vector(a["digital"].size, a["digital"]))
    d = pmt.dict_add(d, pmt.intern("analog"), pmt.init_f32vector(a["analog"].size, a["analog"]))
    d = pmt.dict_add(d, pmt.intern("segments"), pmt.to_pmt([tuple(s) for s in m["segments"]]))
    d = pmt.dict_add(d, pmt.intern("header"), pmt.init_u8vector(a["header"].size, a["header"]))
    d = pmt.dict_add(d, pmt.intern("meta"), pmt.to_pmt(plain_meta(frame.meta)))
    if frame.crc_ok is not None:
        d = pmt.dict_add(d, pmt.intern("crc_ok"), pmt.from_bool(bool(frame.crc_ok)))
    return d


def frame_from_pmt(msg) -> SemanticFrame:
    """Inverse of :func:`frame_to_pmt`; total: any PMT gives a frame or FrameError.

    Raises:
        FrameError: if ``msg`` is not a well-formed frame dict.
    """
    import pmt

    try:
        if not pmt.is_dict(msg):
            raise FrameError("not a semantic frame (expected a PMT dict)")

        def get(key):
            return pmt.dict_ref(msg, pmt.intern(key), pmt.PMT_NIL)

        system, digital, analog = get("system"), get("digital"), get("analog")
        if not pmt.is_symbol(system) or not pmt.is_u8vector(digital) or not pmt.is_f32vector(analog):
            raise FrameError("semantic frame dict needs 'system' (symbol), 'digital' (u8vector), "
                             "'analog' (f32vector)")
        header_raw = get("header")
        header = bytes(pmt.u8vector_elements(header_raw)) if pmt.is_u8vector(header_raw) else b""
        segs_p = get("segments")
        segs = None
        if not pmt.is_null(segs_p):
            if not (pmt.is_tuple(segs_p) or pmt.is_vector(segs_p)):
                raise FrameError("'segments' must be a tuple of (name, length) pairs")
            segs = [list(s) for s in pmt.to_python(segs_p)]
        meta_p = get("meta")
        meta = _pmt_meta(meta_p) if pmt.is_dict(meta_p) else {}
        crc = get("crc_ok")
        arrays = {"digital": np.asarray(pmt.u8vector_elements(digital), np.uint8),
                  "analog": np.asarray(pmt.f32vector_elements(analog), np.float32),
                  "header": np.frombuffer(header, np.uint8)}
        f = from_arrays(arrays, {"segments": segs, "crc_ok": pmt.to_bool(crc) if pmt.is_bool(crc) else None},
                        pmt.symbol_to_string(system))
        f.meta = plain_meta(meta)
        return f
    except FrameError:
        raise
    except Exception as e:  # a PMT of an unexpected shape anywhere inside
        raise FrameError(f"malformed semantic frame dict: {type(e).__name__}: {e}") from None


def _pmt_meta(d) -> Dict[str, Any]:
    """A PMT meta dict as Python, item by item: a value ``pmt.to_python`` cannot convert
    (u64/s64 vectors, for one) becomes a list of its elements or its text, never a lost frame."""
    import pmt

    out: Dict[str, Any] = {}
    items = pmt.dict_items(d)
    for _ in range(min(pmt.length(items), 4096)):
        k, v = pmt.car(pmt.car(items)), pmt.cdr(pmt.car(items))
        items = pmt.cdr(items)
        key = pmt.symbol_to_string(k) if pmt.is_symbol(k) else pmt.write_string(k)
        try:
            out[key] = pmt.to_python(v)
        except Exception:
            for test, elements in ((pmt.is_u64vector, pmt.u64vector_elements),
                                   (pmt.is_s64vector, pmt.s64vector_elements)):
                if test(v):
                    out[key] = list(elements(v))
                    break
            else:
                out[key] = pmt.write_string(v)
    return out


# ================================================================== plain meta
def plain_meta(d: Mapping[str, Any], max_str: int = 1000, _depth: int = 0) -> Dict[str, Any]:
    """Meta values every form can carry (PMT, msgpack, JSON): str keys; bools, ints,
    finite floats, strings (cut to ``max_str``), None, lists of those and nested dicts
    (three levels). numpy scalars and small arrays become Python values and lists;
    anything else its ``str``; non-finite floats None."""

    def value(v, depth):
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, np.ndarray) and v.size <= 4096:
            v = v.tolist()
        if v is None or isinstance(v, (bool, int)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, str):
            return v[:max_str]
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")[:max_str]
        if isinstance(v, (list, tuple)):
            return [value(i, depth + 1) for i in v[:4096]] if depth < 3 else str(v)[:max_str]
        if isinstance(v, Mapping):
            return plain_meta(v, max_str, depth + 1) if depth < 3 else str(v)[:max_str]
        return str(v)[:max_str]

    if not isinstance(d, Mapping):
        return {}
    return {str(k): value(v, _depth) for k, v in d.items()}
