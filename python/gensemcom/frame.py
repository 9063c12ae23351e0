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

* **air form** -- :func:`to_air` / :func:`from_air`: the semantic header (system id,
  header, analog segment lengths and scales: :func:`pack_header` / :func:`unpack_header`,
  a few dozen bytes the PHY sends in its own strongly protected header block), the
  payload (for the digital path at its MCS) and the analog path's unit-power complex
  symbols, segments in order. A receiver that keeps the header but loses the payload
  gets a frame with the header's true values, ``header_ok`` True and ``crc_ok`` False,
  for the system's policy; one that loses the header still gets the analog symbols,
  un-scaled and flagged (both False).
* **worker form** -- :func:`to_arrays` / :func:`from_arrays`: arrays ``digital``,
  ``analog``, ``header`` plus a small meta map, for the inference worker's requests.
* **PMT form** -- :func:`frame_to_pmt` / :func:`frame_from_pmt`, for GNU Radio messages.
* **plain meta** -- :func:`plain_meta`: meta values every form can carry.

Decoders are total: any bytes, arrays or PMT give a frame or :class:`FrameError`.
Payload codecs (token ids, UTF-8 text, label maps) are in :mod:`gensemcom.codecs`.
"""
from __future__ import annotations

import binascii
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import msgpack
import numpy as np

from .phy.analog import analog_demap, analog_map

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
        header (dict): small values the receiver needs; sent in the PHY's protected
            header block (:func:`pack_header`: at most :data:`MAX_AIR_HEADER` bytes).
        meta (dict): provenance and bookkeeping; never sent.
        crc_ok (bool | None): at a receiver, whether the digital payload arrived intact
            (None at the transmitter).
        header_ok (bool | None): at a receiver, whether the protected header arrived
            (default: ``crc_ok``).

    Attributes:
        segments (dict[str, np.ndarray]): the analog segments, float32, in order.
        analog (np.ndarray): the segments concatenated (read-only view of the frame's
            whole analog part).
    """

    __slots__ = ("system", "digital", "segments", "header", "meta", "crc_ok", "header_ok")

    def __init__(self, system: str, digital: bytes = b"", analog: AnalogLike = None,
                 header: Optional[Dict[str, Any]] = None, meta: Optional[Dict[str, Any]] = None,
                 crc_ok: Optional[bool] = None, header_ok: Optional[bool] = None):
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
        #: at a receiver: the protected header arrived (True even when the payload failed
        #: its CRC); defaults to ``crc_ok`` for frames built without the distinction
        self.header_ok = crc_ok if header_ok is None else header_ok

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
             "header": dict(self.header), "meta": dict(self.meta), "crc_ok": self.crc_ok,
             "header_ok": self.header_ok}
        d.update(kw)
        return SemanticFrame(**d)

    def __eq__(self, other) -> bool:
        if not isinstance(other, SemanticFrame):
            return NotImplemented
        return (self.system, self.digital, self.header, self.meta, self.crc_ok, self.header_ok,
                list(self.segments)) == \
            (other.system, other.digital, other.header, other.meta, other.crc_ok, other.header_ok,
             list(other.segments)) and \
            all(np.array_equal(self.segments[k], other.segments[k]) for k in self.segments)

    def __repr__(self) -> str:
        segs = ", ".join(f"{k}={v.size}" for k, v in self.segments.items()) or "none"
        return (f"SemanticFrame({self.system!r}, digital={len(self.digital)} B, analog segments: {segs}, "
                f"header keys {sorted(self.header)}, crc_ok={self.crc_ok}, header_ok={self.header_ok})")


# ================================================================== air form
#: Well-known header keys, sent as one-byte labels (any other string key is sent as
#: is), so the protected header stays inside one code block. Append only: a label's
#: number is part of the air format.
HEADER_LABELS = ("size", "shape", "pos", "norm", "seed", "dt", "snr_tx", "res", "mode", "n", "k", "q", "idx",
                 "rows", "means", "len", "h", "w", "c", "cbr", "fg", "bg", "round", "classes", "task", "snr_db",
                 "coded")
_LABEL = {k: i for i, k in enumerate(HEADER_LABELS)}
#: the largest semantic header (:func:`pack_header`) the protected header block carries
MAX_AIR_HEADER = 240


#: the system name of a receiver's CSI report (:func:`csi_frame`), known to every receiver
CSI_SYSTEM = "csi"


def csi_frame(snr_db: float) -> SemanticFrame:
    """A receiver's channel report for the transmitter's link adaptation: a
    digital-only frame whose header holds the estimated ``snr_db`` (float32 on the air)."""
    return SemanticFrame(CSI_SYSTEM, b"", None, {"snr_db": round(float(snr_db), 2)})


def system_id(name: str) -> int:
    """The 16-bit id a system's name has on the air (CRC-16/CCITT of its UTF-8 bytes)."""
    return binascii.crc_hqx(str(name).encode("utf-8"), 0xFFFF)


def _system_name(sid: int, expected: str) -> str:
    if expected and system_id(expected) == sid:
        return expected
    from .systems import registry  # lazy: the registry imports the systems, which import this module

    for name in (CSI_SYSTEM, *registry.names()):
        if system_id(name) == sid:
            return name
    raise FrameError(f"frame header names an unknown system (id 0x{sid:04x})")


@dataclass
class AirHeader:
    """What a frame's protected header says (:func:`unpack_header`).

    Attributes:
        system (str): the transmitting system.
        header (dict): the system's header.
        segments (list[tuple[str, int, float]]): per analog segment, in order: name,
            number of reals, and the scale that de-normalises its symbols.
    """

    system: str
    header: Dict[str, Any]
    segments: List[Tuple[str, int, float]]

    @property
    def analog_len(self) -> int:
        return sum(n for _, n, _ in self.segments)


def pack_header(frame: SemanticFrame, scales: Sequence[float] = ()) -> bytes:
    """The frame's semantic header as it travels in the PHY's protected header block:
    the system id (u16, :func:`system_id`) and a msgpack pair ``[header, segments]``,
    the header's well-known keys as one-byte labels (:data:`HEADER_LABELS`), floats as
    float32; each segment ``[n, scale]`` (the default segment) or ``[name, n, scale]``.

    Args:
        frame (SemanticFrame): the frame.
        scales (Sequence[float]): one scale per analog segment (:func:`analog_map`'s).

    Raises:
        FrameError: a header msgpack cannot pack, or one over :data:`MAX_AIR_HEADER`.
    """
    sizes = frame.segment_sizes()
    if len(scales) != len(sizes):
        raise FrameError(f"{len(scales)} scales for {len(sizes)} analog segments")
    return _pack_header(frame.system, frame.header, zip(sizes.items(), scales))


def header_symbols(system: str, header: Mapping[str, Any], segments: Optional[Mapping[str, int]] = None,
                   repeat: int = 1, backend: str = "default") -> int:
    """Channel uses of the protected header block (``repeat`` copies) that carries a
    frame of ``system`` with ``header`` and analog ``segments`` (name -> reals): what a
    system that must fit a budget subtracts before its payload.

    Raises:
        FrameError: a header that cannot be packed.
    """
    from .phy.header import HeaderCodec

    body = _pack_header(system, header, (((name, n), 1.0) for name, n in (segments or {}).items()))
    return HeaderCodec(backend, repeat).n_symbols(len(body))


def _pack_header(system: str, header: Mapping[str, Any], segments) -> bytes:
    """:func:`pack_header` from the system, the header and ``((name, reals), scale)`` pairs."""
    segs = [[n, float(k)] if name == DEFAULT_SEGMENT else [name, n, float(k)] for (name, n), k in segments]
    head = {_LABEL.get(k, k): v for k, v in header.items()}
    try:
        body = msgpack.packb([head, segs], use_bin_type=True, use_single_float=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise FrameError(f"frame header cannot be packed: {e}") from None
    out = struct.pack(">H", system_id(system)) + body
    if len(out) > MAX_AIR_HEADER:
        raise FrameError(f"frame header of {len(out)} bytes exceeds the protected header's {MAX_AIR_HEADER}: "
                         "move bulky values into the digital payload")
    return out


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


def unpack_header(data: bytes, system: str = "") -> AirHeader:
    """Inverse of :func:`pack_header`.

    Args:
        data (bytes): the semantic header from the protected header block.
        system (str): the system the receiver expects (resolves the id fastest; any
            registered system is recognised).

    Raises:
        FrameError: on a truncated or malformed header, an unknown system id, or
            fields of the wrong type or range (and on nothing else: this is total).
    """
    try:
        data = bytes(data)
    except (TypeError, ValueError) as e:
        raise FrameError(f"frame header is not bytes: {e}") from None
    if len(data) < 3 or len(data) > MAX_AIR_HEADER:
        raise FrameError(f"frame header of {len(data)} bytes (3 to {MAX_AIR_HEADER})")
    try:
        body = msgpack.unpackb(data[2:], raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several types (ValueError, ExtraData, UnicodeDecodeError, ...)
        raise FrameError(f"frame header is not valid msgpack: {type(e).__name__}") from None
    if not isinstance(body, list) or len(body) != 2 or not isinstance(body[0], dict):
        raise FrameError("frame header is not a [header, segments] pair")
    header = {}
    for k, v in body[0].items():
        if isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(HEADER_LABELS):
            header[HEADER_LABELS[k]] = v
        elif isinstance(k, str):
            header[k] = v
        else:
            raise FrameError(f"frame header has an unknown key {k!r:.40}")
    name = _system_name(struct.unpack(">H", data[:2])[0], system)
    return AirHeader(name, header, _check_segments(body[1]))


@dataclass
class AirFrame:
    """A frame as the PHY carries it (:func:`to_air`).

    Attributes:
        header (bytes): the semantic header (:func:`pack_header`), for the PHY's
            protected header block.
        digital (bytes): the system's payload, for the digital path at its MCS.
        analog (np.ndarray): complex64 symbols of every segment, each at unit
            average power, in order.
        segments (list[tuple[str, int, float]]): name, complex symbols and scale per segment.
    """

    header: bytes
    digital: bytes
    analog: np.ndarray
    segments: List[Tuple[str, int, float]] = field(default_factory=list)

    def analog_uses(self) -> Dict[str, int]:
        """Complex channel uses per analog segment."""
        return {name: n for name, n, _ in self.segments}


def to_air(frame: SemanticFrame) -> AirFrame:
    """Frame -> air form: each segment power-normalised (:func:`analog_map`), its scale
    written into the semantic header.

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
    header = pack_header(frame, [k for _, _, k in segs])
    analog = np.concatenate(symbols).astype(np.complex64) if symbols else np.zeros(0, np.complex64)
    return AirFrame(header, frame.digital, analog, segs)


def lost_frame(system: str, symbols: np.ndarray, meta: Optional[Dict[str, Any]] = None) -> SemanticFrame:
    """The frame a receiver builds when the protected header is lost: ``header_ok`` and
    ``crc_ok`` False, no payload or header, the analog symbols un-scaled (unit power,
    scale 1) as one default segment, for systems that can fall back on them."""
    return SemanticFrame(system, b"", analog_demap(np.asarray(symbols).reshape(-1), 1.0), {}, meta, False, False)


def from_air(header: Optional[bytes], payload: Optional[bytes], symbols: np.ndarray, crc_ok: bool = True,
             system: str = "", meta: Optional[Dict[str, Any]] = None, on_bad_header: str = "raise") -> SemanticFrame:
    """Air form -> frame at a receiver.

    Args:
        header (bytes | None): the semantic header from the protected header block
            (None: the header block was lost).
        payload (bytes | None): the digital payload (None or ``crc_ok`` False: lost).
        symbols (np.ndarray): the analog path's equalised complex symbols.
        crc_ok (bool): whether the payload passed its CRC.
        system (str): the system the receiver expects (named in a frame whose header was lost).
        meta (dict): the received frame's meta.
        on_bad_header (str): a header that passed its CRC but does not parse:
            ``"raise"`` (FrameError) or ``"lost"`` (treated as a lost header).

    Returns:
        SemanticFrame: with the header (``header_ok`` True) its segments are
        de-normalised by their scales, and the payload is there when ``crc_ok``
        (empty otherwise: the system decides by its policy); without it,
        :func:`lost_frame`.

    Raises:
        FrameError: a bad header with ``on_bad_header="raise"``, or fewer analog
            symbols than the header announces.
    """
    symbols = np.asarray(symbols, np.complex64).reshape(-1)
    if header is None:
        return lost_frame(system, symbols, meta)
    try:
        head = unpack_header(header, system)
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
    ok = bool(crc_ok and payload is not None)
    return SemanticFrame(head.system, bytes(payload) if ok else b"", segs, head.header, meta, ok, True)


# ================================================================== worker form
def to_arrays(frame: SemanticFrame, prefix: str = "") -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Frame -> (arrays, meta) for a worker request or reply: arrays ``digital`` (u8),
    ``analog`` (f32, segments concatenated), ``header`` (u8, msgpack); meta
    ``segments`` ([[name, n], ...]), ``frame_system``, ``crc_ok`` and ``header_ok``. ``prefix`` names a second frame in
    the same message (``"fb_"`` for feedback)."""
    header = msgpack.packb(frame.header, use_bin_type=True) if frame.header else b""
    arrays = {f"{prefix}digital": np.frombuffer(frame.digital, np.uint8),
              f"{prefix}analog": np.ascontiguousarray(frame.analog, np.float32),
              f"{prefix}header": np.frombuffer(header, np.uint8)}
    meta: Dict[str, Any] = {f"{prefix}segments": [[k, n] for k, n in frame.segment_sizes().items()],
                            f"{prefix}frame_system": frame.system}
    for key in ("crc_ok", "header_ok"):
        if getattr(frame, key) is not None:
            meta[f"{prefix}{key}"] = bool(getattr(frame, key))
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
    flags = {}
    for key in ("crc_ok", "header_ok"):
        flags[key] = meta.get(f"{prefix}{key}")
        if flags[key] is not None and not isinstance(flags[key], bool):
            raise FrameError(f"meta '{prefix}{key}' must be a bool")
    segs = _split(analog, meta.get(f"{prefix}segments"))
    named = meta.get(f"{prefix}frame_system")  # the frame's own system (a choice --system auto made)
    if isinstance(named, str) and 0 < len(named) <= 64:
        system = named
    return SemanticFrame(system, digital.tobytes(), segs, _unpack_header(header.tobytes()), {}, **flags)


# ================================================================== PMT form
def frame_to_pmt(frame: SemanticFrame):
    """A frame as a PMT dict (for GNU Radio messages). Imports pmt lazily.

    Keys: ``system`` (symbol), ``digital`` (u8vector), ``analog`` (f32vector, segments
    concatenated), ``segments`` (list of (name, length) pairs), ``header`` (u8vector,
    msgpack), ``meta`` (dict, :func:`plain_meta`), and at a receiver ``crc_ok`` and
    ``header_ok`` (bools).
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
    for key in ("crc_ok", "header_ok"):
        if getattr(frame, key) is not None:
            d = pmt.dict_add(d, pmt.intern(key), pmt.from_bool(bool(getattr(frame, key))))
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
        flags = {k: pmt.to_bool(get(k)) if pmt.is_bool(get(k)) else None for k in ("crc_ok", "header_ok")}
        arrays = {"digital": np.asarray(pmt.u8vector_elements(digital), np.uint8),
                  "analog": np.asarray(pmt.f32vector_elements(analog), np.float32),
                  "header": np.frombuffer(header, np.uint8)}
        f = from_arrays(arrays, {"segments": segs, **flags}, pmt.symbol_to_string(system))
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
