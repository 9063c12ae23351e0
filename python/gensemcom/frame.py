"""The SemanticFrame: the one data type that crosses the air.

A semantic transmitter turns an image into a frame with

* a **digital part** (bytes that must arrive exactly: caption token IDs, a header with
  shapes and norms), sent over CRC-32 + LDPC + M-QAM;
* an **analog part** (a float32 vector sent uncoded: a token embedding, a latent, JSCC
  features), power-normalised into complex symbols;
* a **header**: small JSON-able values the receiver needs (shapes, norms, options);
  it travels inside the digital part (:meth:`SemanticFrame.pack_digital`);
* **meta**: provenance that never crosses the air (image id, SNR, timings).

:func:`frame_to_pmt` / :func:`frame_from_pmt` are the one function pair that converts
frames to and from PMT dicts for GNU Radio messages.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import msgpack
import numpy as np

WIRE_VERSION = 1
MAX_HEADER_BYTES = 1 << 16


class FrameError(ValueError):
    """A frame (or its packed digital part) that cannot be used; the message says why."""


@dataclass
class SemanticFrame:
    """What a semantic transmitter produces and a semantic receiver consumes.

    Attributes:
        system (str): the system that made it (``"tisc"``, ``"deepjscc"``, ...).
        digital (bytes): the system's exact payload.
        analog (np.ndarray): float32 1-D vector sent uncoded (even length; empty for
            digital-only systems).
        header (dict): small values the receiver needs; sent in the digital part.
        meta (dict): provenance and bookkeeping; never sent.
        crc_ok (bool | None): at a receiver, whether the digital part arrived intact
            (None at the transmitter).
    """

    system: str
    digital: bytes = b""
    analog: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    header: Dict[str, Any] = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)
    crc_ok: Optional[bool] = None

    def __post_init__(self):
        self.analog = np.ascontiguousarray(self.analog, dtype=np.float32).reshape(-1)
        if self.analog.size % 2:
            raise FrameError(f"analog part has odd length {self.analog.size}: pad it to an even length")
        self.digital = bytes(self.digital)

    # ------------------------------------------------------------ the air
    def pack_digital(self, analog_scale: float = 1.0) -> bytes:
        """The bytes that go over the digital path: system, header, analog length and
        scale, then the system's payload. Format: ``>HI`` (version, header length),
        msgpack header, payload."""
        head = msgpack.packb({"s": self.system, "h": self.header, "n": int(self.analog.size),
                              "k": float(analog_scale)}, use_bin_type=True)
        if len(head) > MAX_HEADER_BYTES:
            raise FrameError(f"frame header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
        return struct.pack(">HI", WIRE_VERSION, len(head)) + head + self.digital

    @staticmethod
    def unpack_digital(data: bytes) -> Dict[str, Any]:
        """Inverse of :meth:`pack_digital`: a dict with system, header, analog_len,
        analog_scale and digital.

        Raises:
            FrameError: on a truncated or malformed packet or an unknown version.
        """
        data = bytes(data)
        if len(data) < 6:
            raise FrameError(f"digital part of {len(data)} bytes is too short for a frame header")
        version, hlen = struct.unpack(">HI", data[:6])
        if version != WIRE_VERSION:
            raise FrameError(f"unknown frame version {version}")
        if hlen > MAX_HEADER_BYTES or 6 + hlen > len(data):
            raise FrameError(f"frame header length {hlen} does not fit in {len(data)} bytes")
        try:
            head = msgpack.unpackb(data[6:6 + hlen], raw=False, strict_map_key=True)
        except Exception as e:  # msgpack raises several types
            raise FrameError(f"frame header is not valid msgpack: {e}") from None
        if not isinstance(head, dict) or not {"s", "h", "n", "k"} <= set(head):
            raise FrameError("frame header lacks system, header, analog length or scale")
        return {"system": head["s"], "header": head["h"], "analog_len": int(head["n"]),
                "analog_scale": float(head["k"]), "digital": data[6 + hlen:]}


# ------------------------------------------------------------------ PMT
def frame_to_pmt(frame: SemanticFrame):
    """A frame as a PMT dict (for GNU Radio messages). Imports pmt lazily."""
    import pmt

    d = pmt.make_dict()
    d = pmt.dict_add(d, pmt.intern("system"), pmt.intern(frame.system))
    d = pmt.dict_add(d, pmt.intern("digital"), pmt.init_u8vector(len(frame.digital), list(frame.digital)))
    d = pmt.dict_add(d, pmt.intern("analog"), pmt.init_f32vector(frame.analog.size, frame.analog))
    head = msgpack.packb(frame.header, use_bin_type=True) if frame.header else b""
    d = pmt.dict_add(d, pmt.intern("header"), pmt.init_u8vector(len(head), list(head)))
    d = pmt.dict_add(d, pmt.intern("meta"), pmt.to_pmt(_plain(frame.meta)))
    if frame.crc_ok is not None:
        d = pmt.dict_add(d, pmt.intern("crc_ok"), pmt.from_bool(bool(frame.crc_ok)))
    return d


def frame_from_pmt(msg) -> SemanticFrame:
    """Inverse of :func:`frame_to_pmt`.

    Raises:
        FrameError: if ``msg`` is not a frame dict.
    """
    import pmt

    if not pmt.is_dict(msg):
        raise FrameError("not a semantic frame (expected a PMT dict)")

    def get(key):
        return pmt.dict_ref(msg, pmt.intern(key), pmt.PMT_NIL)

    system, digital, analog = get("system"), get("digital"), get("analog")
    if not pmt.is_symbol(system) or not pmt.is_u8vector(digital) or not pmt.is_f32vector(analog):
        raise FrameError("semantic frame dict needs 'system' (symbol), 'digital' (u8vector), 'analog' (f32vector)")
    header_raw = get("header")
    header = {}
    if pmt.is_u8vector(header_raw) and pmt.length(header_raw):
        try:
            header = msgpack.unpackb(bytes(pmt.u8vector_elements(header_raw)), raw=False)
        except Exception as e:
            raise FrameError(f"frame header is not valid msgpack: {e}") from None
    meta_p = get("meta")
    meta = pmt.to_python(meta_p) if pmt.is_dict(meta_p) else {}
    crc = get("crc_ok")
    return SemanticFrame(pmt.symbol_to_string(system), bytes(pmt.u8vector_elements(digital)),
                         np.asarray(pmt.f32vector_elements(analog), np.float32), header, dict(meta or {}),
                         pmt.to_bool(crc) if pmt.is_bool(crc) else None)


def _plain(d: Dict[str, Any]) -> Dict[str, Any]:
    """Meta values PMT can hold (numbers, strings, bools, lists of those)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[str(k)] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(i, (int, float, str, bool)) for i in v):
            out[str(k)] = list(v)
        elif isinstance(v, dict):
            out[str(k)] = _plain(v)
        else:
            out[str(k)] = str(v)
    return out
