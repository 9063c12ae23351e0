"""Payload codecs: what systems put in a frame's digital part, and back.

* token ids (:func:`pack_ids` / :func:`unpack_ids`): little-endian uint16, or uint32
  when an id does not fit; the dtype code travels in the system's header;
* UTF-8 text (:func:`pack_text` / :func:`unpack_text`);
* label maps (:func:`pack_label_map` / :func:`unpack_label_map`): an (H, W) uint8 map
  of class indices, lossless, as a PNG (per-row prediction filters + deflate): runs of
  one class, which segmentation maps are made of, cost a few bits each;
* sparse binary patches (:func:`pack_edge_patches` / :func:`unpack_edge_patches`):
  the non-zero P x P patches of a binary map (an attention-masked edge map) with their
  location codes, deflated, within a byte budget.

Every unpacker is total: bad input raises :class:`CodecError` (a ValueError), nothing else.
"""
from __future__ import annotations

import io
import struct
import zlib
from typing import List, Optional, Sequence, Tuple

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


#: magic and version of :func:`pack_edge_patches`' payload
PATCH_MAGIC = b"EP1"
_PATCH_HEAD = struct.Struct("<3sHHBH")  # magic, H, W, patch side, number of patches


def _patch_grid(h: int, w: int, p: int) -> Tuple[int, int]:
    return -(-h // p), -(-w // p)


def nonzero_patches(binary: np.ndarray, patch: int) -> np.ndarray:
    """Row-major indices of the ``patch`` x ``patch`` cells of an (H, W) map that hold a
    non-zero pixel (edge cells are padded with zeros)."""
    a = np.asarray(binary) != 0
    h, w = a.shape
    gh, gw = _patch_grid(h, w, patch)
    pad = np.zeros((gh * patch, gw * patch), bool)
    pad[:h, :w] = a
    return np.flatnonzero(pad.reshape(gh, patch, gw, patch).any(axis=(1, 3)))


def _patch_payload(pad: np.ndarray, idx: np.ndarray, h: int, w: int, patch: int) -> bytes:
    gh, gw = pad.shape[0] // patch, pad.shape[1] // patch
    cells = pad.reshape(gh, patch, gw, patch).transpose(0, 2, 1, 3).reshape(gh * gw, patch * patch)
    idx = np.sort(np.asarray(idx, np.int64))
    deltas = np.diff(np.concatenate([[-1], idx])).astype("<u2")  # location codes: gaps between cells
    body = deltas.tobytes() + np.packbits(cells[idx], axis=1).tobytes()
    return _PATCH_HEAD.pack(PATCH_MAGIC, h, w, patch, idx.size) + zlib.compress(body, 9)


def pack_edge_patches(binary: np.ndarray, patch: int = 16, budget_bytes: Optional[int] = None,
                      priority: Optional[np.ndarray] = None) -> Tuple[bytes, np.ndarray]:
    """The non-zero patches of a binary (H, W) map with their location codes, within a budget.

    Each non-zero ``patch`` x ``patch`` cell (row-major index; cells past the map's
    edge are zero-padded) is kept whole, its bits packed; the cells' indices travel
    as gaps (uint16) and the body is deflated. Under ``budget_bytes`` the most
    important cells are kept: ``priority`` (one score per cell, higher first; default
    the index order) ranks them, and the largest prefix whose payload fits is sent
    (found by bisection, every candidate's size measured), so the payload never
    exceeds the budget; a budget below the empty payload's size raises.

    Returns:
        tuple[bytes, np.ndarray]: the payload and the sent cells' indices (sorted).

    Raises:
        ValueError: a map that is not 2-D, a size or patch out of range, or a budget
            smaller than an empty payload.
    """
    a = np.asarray(binary)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"an edge map is a non-empty (H, W) array, got shape {a.shape}")
    h, w = a.shape
    if not 1 <= patch <= 64 or h > 65535 or w > 65535:
        raise ValueError(f"patch must be 1..64 and the map at most 65535 on a side, got {patch}, {a.shape}")
    gh, gw = _patch_grid(h, w, patch)
    pad = np.zeros((gh * patch, gw * patch), np.uint8)
    pad[:h, :w] = a != 0
    idx = nonzero_patches(pad, patch)
    if priority is not None:
        pr = np.asarray(priority, np.float64).reshape(-1)
        if pr.size != gh * gw:
            raise ValueError(f"priority needs one score per cell ({gh * gw}), got {pr.size}")
        idx = idx[np.argsort(-pr[idx], kind="stable")]
    full = _patch_payload(pad, idx, h, w, patch)
    if budget_bytes is None or len(full) <= budget_bytes:
        return full, np.sort(idx)
    lo, hi = 0, idx.size  # the largest k whose payload fits: lo fits, hi does not
    if len(_patch_payload(pad, idx[:0], h, w, patch)) > budget_bytes:
        raise ValueError(f"a budget of {budget_bytes} bytes is below the empty payload's size")
    best = _patch_payload(pad, idx[:0], h, w, patch)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = _patch_payload(pad, idx[:mid], h, w, patch)
        if len(data) <= budget_bytes:
            lo, best = mid, data
        else:
            hi = mid
    return best, np.sort(idx[:lo])


def unpack_edge_patches(data: bytes, max_pixels: int = MAX_LABEL_PIXELS) -> np.ndarray:
    """Inverse of :func:`pack_edge_patches`: the (H, W) uint8 map, 1 in the sent cells'
    non-zero pixels, 0 elsewhere.

    Raises:
        CodecError: anything that is not such a payload (bad magic, sizes, location
            codes outside the grid or out of order, a body of the wrong length).
    """
    data = bytes(data)
    if len(data) < _PATCH_HEAD.size:
        raise CodecError(f"edge patches: {len(data)} bytes is shorter than the header")
    magic, h, w, patch, n = _PATCH_HEAD.unpack_from(data)
    if magic != PATCH_MAGIC:
        raise CodecError("edge patches: bad magic")
    if not (h and w and 1 <= patch <= 64) or h * w > max_pixels:
        raise CodecError(f"edge patches: bad size {h} x {w} or patch {patch}")
    gh, gw = _patch_grid(h, w, patch)
    cell_bytes = patch * patch // 8 + (1 if patch * patch % 8 else 0)
    want = 2 * n + n * cell_bytes
    if n > gh * gw:
        raise CodecError(f"edge patches: {n} cells in a {gh} x {gw} grid")
    d = zlib.decompressobj()
    try:
        body = d.decompress(data[_PATCH_HEAD.size:], want + 1)
    except zlib.error as e:
        raise CodecError(f"edge patches: body does not inflate: {e}") from None
    if len(body) != want or d.unconsumed_tail or not d.eof:
        raise CodecError(f"edge patches: body of {len(body)} bytes, expected {want}")
    idx = np.cumsum(np.frombuffer(body[:2 * n], "<u2").astype(np.int64)) - 1 if n else np.zeros(0, np.int64)
    if n and (np.any(np.frombuffer(body[:2 * n], "<u2") == 0) or idx[-1] >= gh * gw):
        raise CodecError("edge patches: location codes outside the grid or out of order")
    bits = np.unpackbits(np.frombuffer(body[2 * n:], np.uint8).reshape(n, cell_bytes), axis=1)[:, :patch * patch]
    cells = np.zeros((gh * gw, patch * patch), np.uint8)
    cells[idx] = bits
    full = cells.reshape(gh, gw, patch, patch).transpose(0, 2, 1, 3).reshape(gh * patch, gw * patch)
    return np.ascontiguousarray(full[:h, :w])
