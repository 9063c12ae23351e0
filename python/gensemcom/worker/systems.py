"""Worker methods for the semantic systems: ``semantic_encode`` and ``semantic_decode``.

Every registered system (:func:`gensemcom.systems.system_names`) becomes a model
``system.<name>`` with a loader per profile, built by
:func:`gensemcom.systems.make_system` on first use and kept resident. A request
names the system in its meta (looked up in the registry, never imported by name
from the request) and carries the image or the received frame as arrays:

* ``semantic_encode``: ``image`` uint8 (H, W, 3); meta ``system``, optional
  ``snr_db``, ``modulation``, ``code_rate``, ``budget_symbols`` -> arrays ``digital``
  (uint8), ``analog`` (float32), ``header`` (uint8, msgpack);
* ``semantic_decode``: arrays ``digital``, ``analog``, ``header``; meta ``system``,
  ``crc_ok``, optional ``snr_db`` -> array ``image`` uint8 (H, W, 3), or an error
  reply ``no_image`` when the system cannot produce one (a lost frame).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict

import msgpack
import numpy as np

from .models import register_model
from .registry import METHODS, ArraySpec, CallContext, RequestError
from .wire import PROFILES

MAX_PIXELS = 4096 * 4096 * 3  #: largest image (elements of H x W x 3) a request may carry


def _system_loader(name: str, profile: str):
    def load(device: str):
        from ..systems import make_system
        from ..systems.base import _REGISTRY

        cls = _REGISTRY[name]
        params = inspect.signature(cls).parameters
        kwargs = {}
        if "profile" in params:
            kwargs["profile"] = profile
        if "device" in params:
            kwargs["device"] = device
        return make_system(name, **kwargs)

    return load


def register_systems() -> None:
    """Register a ``system.<name>`` model for every system and profile."""
    from ..systems import system_names

    for name in system_names():
        for profile in PROFILES:
            register_model(f"system.{name}", profile)(_system_loader(name, profile))


def _system(ctx: CallContext):
    name = ctx.meta.get("system") if isinstance(ctx.meta, dict) else None
    if not isinstance(name, str):
        raise RequestError("bad_meta", "meta 'system' (a system name) is required")
    from ..systems import system_names

    if name not in system_names():
        raise RequestError("unknown_system", f"unknown system {name!r}; known: {', '.join(system_names())}")
    return ctx.model(f"system.{name}")


def _context(meta: Dict[str, Any]):
    from ..systems.base import LinkContext

    def num(key, kind, default=None):
        v = meta.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RequestError("bad_meta", f"meta {key!r} must be a number, got {v!r}")
        return kind(v)

    return LinkContext(num("snr_db", float), num("modulation", int, 16), num("code_rate", float, 0.5),
                       num("budget_symbols", int))


@METHODS.register("semantic_encode", inputs=[ArraySpec("image", ("uint8",), ndim=3, dims={2: 3},
                                                        max_elems=MAX_PIXELS)])
def semantic_encode(ctx: CallContext, arrays: Dict[str, np.ndarray]):
    """image uint8 (H, W, 3) -> the system's frame as arrays digital, analog, header."""
    system = _system(ctx)
    frame = system.encode(np.ascontiguousarray(arrays["image"]), _context(ctx.meta))
    header = msgpack.packb(frame.header, use_bin_type=True)
    return ({"digital": np.frombuffer(frame.digital, np.uint8), "analog": frame.analog,
             "header": np.frombuffer(header, np.uint8)}, {"frame_meta": plain_meta(frame.meta)})


def plain_meta(meta) -> Dict[str, Any]:
    """The scalar entries (str, bool, int, finite float, None) of a frame's meta: what
    the transmitter reports about its work (caption, timings), sent back in the reply."""
    out: Dict[str, Any] = {}
    for k, v in (meta or {}).items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(k, str) and (v is None or isinstance(v, (str, bool, int))
                                   or (isinstance(v, float) and np.isfinite(v))):
            out[k] = v[:1000] if isinstance(v, str) else v
    return out


@METHODS.register("semantic_load", inputs=[])
def semantic_load(ctx: CallContext, arrays: Dict[str, np.ndarray]):
    """Load (or find resident) meta 'system' for the request's profile; reply meta
    ``system``, ``profile``. A model that cannot be loaded is a ``model_unavailable``
    error whose message says which model and how to provide it (used by
    ``gensemcom link`` before it starts a flowgraph)."""
    name = ctx.meta.get("system") if isinstance(ctx.meta, dict) else None
    try:
        _system(ctx)
    except RequestError:
        raise
    except (OSError, ValueError, LookupError, NotImplementedError, ImportError, RuntimeError) as e:
        raise RequestError("model_unavailable", f"{name} ({ctx.profile} profile): {e}") from None
    return {}, {"system": name, "profile": ctx.profile}


@METHODS.register("semantic_decode", inputs=[ArraySpec("digital", ("uint8",), ndim=1),
                                              ArraySpec("analog", ("float32",), ndim=1),
                                              ArraySpec("header", ("uint8",), ndim=1)])
def semantic_decode(ctx: CallContext, arrays: Dict[str, np.ndarray]):
    """digital, analog, header (+ meta crc_ok) -> image uint8 (H, W, 3)."""
    from ..frame import SemanticFrame

    system = _system(ctx)
    try:
        header = msgpack.unpackb(arrays["header"].tobytes(), raw=False) if arrays["header"].size else {}
    except Exception as e:
        raise RequestError("bad_header", f"frame header is not valid msgpack: {e}") from None
    if not isinstance(header, dict):
        raise RequestError("bad_header", "frame header must be a map")
    crc_ok = ctx.meta.get("crc_ok", True)
    if not isinstance(crc_ok, bool):
        raise RequestError("bad_meta", "meta 'crc_ok' must be a bool")
    if arrays["analog"].size % 2:
        raise RequestError("bad_shape", "analog part must have an even length")
    frame = SemanticFrame(system.name, arrays["digital"].tobytes(), arrays["analog"], header, {}, crc_ok)
    image = system.decode(frame, _context(ctx.meta))
    if image is None:
        raise RequestError("no_image", f"{system.name} could not reconstruct an image from this frame"
                           + ("" if crc_ok else " (its digital part failed CRC)"))
    return {"image": np.ascontiguousarray(image, dtype=np.uint8)}


register_systems()
