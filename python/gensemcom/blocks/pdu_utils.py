"""PDU helpers shared by every gr-gensemcom message block.

A PDU is a PMT pair (metadata dict, uniform vector). :func:`parse_pdu` validates one
and raises :class:`PduError` with a readable reason; :func:`make_pdu` builds one;
:class:`pdu_block` is the base of the thin GNU Radio adapters: it registers the
``in``/``out`` ports, validates input, calls :meth:`pdu_block.process`, and logs, drops
and counts anything bad without ever raising inside the message handler.

Metadata keys used across the module are defined here once.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pmt
from gnuradio import gr

# metadata keys (one place)
KEY_SNR_DB = "snr_db"            # float: Es/N0 the channel applied
KEY_NOISE_VAR = "noise_var"      # float or f32vector: complex noise variance per symbol
KEY_CSI = "csi"                  # c32vector: true per-symbol channel gains (simulation)
KEY_CRC_OK = "crc_ok"            # bool: every block passed CRC-32
KEY_FAILED_BLOCKS = "failed_blocks"  # s32vector: indices of failed code blocks
KEY_N_BLOCKS = "n_blocks"        # int: code blocks in the frame
KEY_ANALOG_SCALE = "analog_scale"    # float: scale that de-normalises analog symbols
KEY_EQUALIZED = "equalized"      # bool: an equaliser has removed the channel gains
KEY_HEADER_BYTES = "header_bytes"  # int: the digital PDU's leading semantic-header bytes
KEY_HEADER_OK = "header_ok"      # bool: the protected header block decoded
KEY_MCS = "mcs"                  # str: the payload's MCS ("16QAM-1/2")
KEY_SNR_EST = "snr_est_db"       # float: the receiver's data-aided Es/N0 estimate

# PDU vector kinds: name -> (pmt predicate, pmt constructor, numpy dtype)
_KINDS = {
    "u8": (pmt.is_u8vector, pmt.init_u8vector, np.uint8),
    "f32": (pmt.is_f32vector, pmt.init_f32vector, np.float32),
    "c32": (pmt.is_c32vector, pmt.init_c32vector, np.complex64),
}
_ELEMENTS = {
    "u8": pmt.u8vector_elements,
    "f32": pmt.f32vector_elements,
    "c32": pmt.c32vector_elements,
}


class PduError(ValueError):
    """A PDU that a block cannot use; the message says why."""


def pdu_parts(msg, error=None) -> Tuple[Any, Any]:
    """A PDU's (metadata dict, vector); nil metadata becomes an empty dict.

    Raises:
        PduError (or ``error``, a subclass): not a pair, or metadata not a dict.
    """
    error = error or PduError
    if not pmt.is_pair(msg):
        raise error("not a PDU (expected a PMT pair of metadata dict and vector)")
    meta, vec = pmt.car(msg), pmt.cdr(msg)
    if pmt.is_null(meta):
        meta = pmt.make_dict()
    elif not pmt.is_dict(meta):
        raise error("PDU metadata is not a dict")
    return meta, vec


def parse_pdu(msg, kind: str, max_items: int = 1 << 22, allow_empty: bool = False) -> Tuple[Any, np.ndarray]:
    """Validate a PDU and return (metadata PMT dict, numpy array).

    Args:
        msg (pmt): the message.
        kind (str): expected vector type, ``"u8"``, ``"f32"`` or ``"c32"``.
        max_items (int): largest accepted vector length.
        allow_empty (bool): accept a zero-length vector.

    Raises:
        PduError: not a pair, metadata not a dict, wrong vector type, empty, too long,
            or (for float types) NaN/Inf samples.
    """
    meta, vec = pdu_parts(msg)
    is_kind, _, dtype = _KINDS[kind]
    if not is_kind(vec):
        got = next((k for k, (p, _, _) in _KINDS.items() if p(vec)), None)
        raise PduError(f"PDU vector is {got + ' vector' if got else 'not a supported uniform vector'}, expected {kind}")
    n = pmt.length(vec)
    if n == 0 and not allow_empty:
        raise PduError("empty PDU")
    if n > max_items:
        raise PduError(f"PDU of {n} items is larger than max_items={max_items}")
    data = np.asarray(_ELEMENTS[kind](vec), dtype=dtype)
    if kind != "u8" and not np.all(np.isfinite(data.view(np.float32))):
        raise PduError("PDU has NaN or Inf samples")
    return meta, data


def make_pdu(meta, data: np.ndarray, kind: str):
    """Build a PDU from a metadata PMT dict (or None) and a numpy array."""
    _, init, dtype = _KINDS[kind]
    data = np.ascontiguousarray(data, dtype=dtype).reshape(-1)
    if meta is None:
        meta = pmt.make_dict()
    return pmt.cons(meta, init(data.size, data))


def meta_get(meta, key: str, default=None):
    """A metadata value as a Python object (numpy arrays for uniform vectors)."""
    k = pmt.intern(key)
    if not pmt.dict_has_key(meta, k):
        return default
    v = pmt.dict_ref(meta, k, pmt.PMT_NIL)
    if pmt.is_uniform_vector(v):
        return np.asarray(pmt.to_python(v))
    return pmt.to_python(v)


def meta_set(meta, key: str, value):
    """Return ``meta`` with ``key`` set (numpy arrays become uniform vectors)."""
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            v = pmt.init_c32vector(value.size, value.astype(np.complex64).reshape(-1))
        elif value.dtype.kind in "iub":
            v = pmt.init_s32vector(value.size, value.astype(np.int32).reshape(-1))
        else:
            v = pmt.init_f32vector(value.size, value.astype(np.float32).reshape(-1))
    elif isinstance(value, (list, tuple)) and all(isinstance(i, (int, np.integer)) for i in value):
        v = pmt.init_s32vector(len(value), [int(i) for i in value])
    else:
        v = pmt.to_pmt(value.item() if isinstance(value, np.generic) else value)
    return pmt.dict_add(meta, pmt.intern(key), v)


def meta_del(meta, key: str):
    """Return ``meta`` without ``key``."""
    return pmt.dict_delete(meta, pmt.intern(key))


class counting:
    """Mixin for GNU Radio blocks: readable counters, and log-and-drop.

    Call :meth:`_init_counters` in the block's constructor.
    """

    def _init_counters(self) -> None:
        self._lock = threading.Lock()
        self.n_in = 0
        self.n_out = 0
        self.n_dropped = 0
        self.drop_reasons: Dict[str, int] = collections.Counter()

    def _count(self, attr: str) -> None:
        with self._lock:
            setattr(self, attr, getattr(self, attr) + 1)

    def counters(self) -> Dict[str, Any]:
        """Readable counters: PDUs received, sent, dropped, and drops per reason."""
        with self._lock:
            return {"received": self.n_in, "sent": self.n_out, "dropped": self.n_dropped,
                    "drop_reasons": dict(self.drop_reasons)}

    def drop(self, reason: str, detail: str = "") -> None:
        """Log, count and drop the current message."""
        with self._lock:
            self.n_dropped += 1
            self.drop_reasons[reason] += 1
        self.logger.error(f"dropped PDU: {reason}{': ' + detail if detail else ''}")

    def stop(self) -> bool:
        c = self.counters()
        if c["dropped"]:
            self.logger.warn(f"received {c['received']}, sent {c['sent']}, dropped {c['dropped']} {c['drop_reasons'] or ''}")
        return True



class pdu_block(counting, gr.basic_block):
    """Base of gr-gensemcom's PDU-in/PDU-out blocks.

    Subclasses set ``in_kind``/``out_kind`` and implement :meth:`process`. Every bad
    PDU is logged with ``self.logger``, dropped and counted under its reason; an
    unexpected exception in :meth:`process` is logged with its type and counted as an
    error. Nothing raises inside the message handler.

    Args:
        name (str): block name.
        max_items (int): largest accepted input vector.
    """

    in_kind = "u8"
    out_kind = "u8"
    allow_empty = False

    def __init__(self, name: str, max_items: int = 1 << 22):
        gr.basic_block.__init__(self, name=name, in_sig=None, out_sig=None)
        self.max_items = int(max_items)
        self._init_counters()
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.message_port_register_out(pmt.intern("out"))

    # ---------------------------------------------------------------- handler
    def _handle(self, msg) -> None:
        self._count("n_in")
        try:
            meta, data = parse_pdu(msg, self.in_kind, self.max_items, self.allow_empty)
        except PduError as e:
            self.drop("bad input", str(e))
            return
        try:
            result = self.process(meta, data)
        except PduError as e:
            self.drop("bad input", str(e))
            return
        except Exception as e:  # a bug or a backend failure: never kill the flowgraph
            self.drop("error", f"{type(e).__name__}: {e}")
            return
        if result is None:
            return
        meta_out, data_out = result
        self.message_port_pub(pmt.intern("out"), make_pdu(meta_out, data_out, self.out_kind))
        self._count("n_out")

    def process(self, meta, data: np.ndarray) -> Optional[Tuple[Any, np.ndarray]]:
        """Turn one valid input (metadata PMT dict, array) into an output, or None.

        Raise :class:`PduError` for input that is well formed but unusable.
        """
        raise NotImplementedError


# ------------------------------------------------------------ image PDUs
KEY_SHAPE = "shape"


def image_from_pdu(msg, max_pixels: int = 4096 * 4096):
    """An image PDU -> (metadata PMT dict, uint8 array (H, W, 3)); raises PduError."""
    meta, data = parse_pdu(msg, "u8", max_items=3 * max_pixels)
    shape = meta_get(meta, KEY_SHAPE)
    if shape is None:
        raise PduError("image PDU needs metadata 'shape' = [H, W, 3]")
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    if len(shape) != 3 or shape[2] != 3 or shape[0] * shape[1] * 3 != data.size:
        raise PduError(f"image shape {list(shape)} does not match {data.size} bytes of RGB")
    return meta, data.reshape(shape)


def image_to_pdu(meta, image: np.ndarray):
    """(metadata, uint8 (H, W, 3)) -> image PDU with ``shape`` in the metadata."""
    meta = meta_set(meta if meta is not None else pmt.make_dict(), KEY_SHAPE, np.asarray(image.shape, np.int32))
    return make_pdu(meta, image.reshape(-1), "u8")


def image_info(meta) -> dict:
    """An image PDU's metadata as a plain dict (uniform vectors become lists)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in (pmt.to_python(meta) or {}).items()}


def frame_meta(meta) -> dict:
    """A PDU's metadata as a frame's plain meta: :func:`image_info` less the image ``shape``."""
    return {k: v for k, v in image_info(meta).items() if k != KEY_SHAPE}


def receive_image(block: "counting", msg):
    """An image block's first step: count the message, parse the image PDU, and on bad
    input log, drop and count it. Returns (metadata PMT, image, plain metadata dict) or
    None when the message was dropped."""
    block._count("n_in")
    try:
        meta, img = image_from_pdu(msg)
    except PduError as e:
        block.drop("bad input", str(e))
        return None
    return meta, img, image_info(meta)
