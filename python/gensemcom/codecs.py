"""Payload codecs: what systems put in a frame's digital part, and back.

* token ids (:func:`pack_ids` / :func:`unpack_ids`): little-endian uint16, or uint32
  when an id does not fit; the dtype code travels in the system's header;
* UTF-8 text (:func:`pack_text` / :func:`unpack_text`);
* label maps (:func:`pack_label_map` / :func:`unpack_label_map`): an (H, W) uint8 map
  of class indices, lossless, as a PNG (per-row prediction filters + deflate): runs of
  one class, which segmentation maps are made of, cost a few bits each.

Every unpacker is total: bad input raises :class:`CodecError` (a ValueError), nothing else.
"""
from __future__ import annotations

import io
from typing import List, Sequence, Tuple

import numpy as np

ID_DTYPES = ("<u2", "<u4")
#: the largest label map :func:`unpack_label_map` will decode (pixels)
MAX_LABEL_PIXELS = 4096 * 4096


class CodecError(ValueError):
    """A payload that does not decode; the message says why."""


def pack_ids(ids: Sequence[int]) -> Tuple[bytes, str]:
    """Token ids -> (little-endian bytes, dtype code ``"<u2"`` or ``"<u4"``): two bytes
    per token when every id fits (CLIP's 49,408-token vocabulary does).

    Raises:
        ValueError: an id outside [0, 2**32).
    """
    arr = np.asarray(list(ids), dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= 2**32):
        raise ValueError("token ids must be in [0, 2**32)")
    dt = "<u2" if (arr.size == 0 or arr.max() < 2**16) else "<u4"
    return arr.astype(dt).tobytes(), dt


def unpack_ids(data: bytes, dtype: str) -> List[int]:
    """Inverse of :func:`pack_ids`.

    Raises:
        CodecError: an unknown dtype code or a length that is not a whole number of ids.
    """
    if dtype not in ID_DTYPES:
        raise CodecError(f"unknown token id dtype {dtype!r}")
    size = np.dtype(dtype).itemsize
    if len(data) % size:
        raise CodecError(f"{len(data)} bytes is not a whole number of {dtype} token ids")
    return [int(i) for i in np.frombuffer(bytes(data), dtype)]


def pack_text(text: str) -> bytes:
    """Text -> UTF-8 bytes."""
    return str(text).encode("utf-8")


def unpack_text(data: bytes) -> str:
    """Inverse of :func:`pack_text`.

    Raises:
        CodecError: bytes that are not UTF-8.
    """
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise CodecError(f"payload is not UTF-8 text: {e}") from None


def pack_label_map(labels: np.ndarray) -> bytes:
    """(H, W) class indices (0..255) -> PNG bytes (lossless; compression level 9).

    Raises:
        ValueError: not a 2-D map, or values outside 0..255.
    """
    from PIL import Image

    a = np.asarray(labels)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"a label map is a non-empty (H, W) array, got shape {a.shape}")
    if a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise ValueError("label map values must be in 0..255")
        a = a.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode="L").save(buf, format="PNG", optimize=True, compress_level=9)
    return buf.getvalue()


def unpack_label_map(data: bytes, max_pixels: int = MAX_LABEL_PIXELS) -> np.ndarray:
    """Inverse of :func:`pack_label_map`: (H, W) uint8.

    Raises:
        CodecError: bytes that are not an 8-bit single-channel PNG, or one larger than
            ``max_pixels`` (checked before the pixels are decoded).
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            if im.format != "PNG" or im.mode != "L":
                raise CodecError(f"label map must be an 8-bit grayscale PNG, got {im.format} {im.mode}")
            w, h = im.size
            if w * h > max_pixels:
                raise CodecError(f"label map of {w} x {h} is over the {max_pixels}-pixel limit")
            im.load()
            return np.asarray(im, np.uint8).copy()
    except CodecError:
        raise
    except Exception as e:  # PIL raises many types on corrupt data
        raise CodecError(f"label map does not decode: {type(e).__name__}: {e}") from None
