"""Worker methods for the semantic systems: ``semantic_load``, ``semantic_encode`` and
``semantic_decode``.

Every registered system and each of its profiles (:func:`gensemcom.systems.names`,
:attr:`SystemSpec.profiles`) becomes a model ``system.<name>``, built by
:func:`gensemcom.systems.build` on first use and kept resident; a profile the system
does not have is refused as ``model_unavailable`` with the supported ones listed. A
request names the system in its meta (looked up in the registry, never imported by
name from the request); frames travel in the worker form of
:func:`gensemcom.frame.to_arrays`:

* ``semantic_encode``: ``image`` uint8 (H, W, 3); meta ``system``, optional
  ``snr_db``, ``modulation``, ``code_rate``, ``budget_symbols`` and, for a feedback
  exchange, ``session``, ``round`` and the receiver's feedback frame (arrays
  ``fb_digital``, ``fb_analog``, ``fb_header``; meta ``fb_segments``, ``fb_crc_ok``)
  -> arrays ``digital``, ``analog``, ``header``; meta ``segments``, ``frame_meta``;
* ``semantic_decode``: arrays ``digital``, ``analog``, ``header``; meta ``system``,
  ``crc_ok``, ``segments``, optional ``snr_db``, ``session``, ``round``, ``task`` (the
  receiver's task, a string of at most 256 bytes, for task-adaptive systems) -> array
  ``image`` uint8 (H, W, 3), meta ``final`` (True when the exchange is over),
  ``received_text`` (the caption or prompt the receiver read, for systems that send one) and, when
  the receiver asks for another round, its feedback frame as ``fb_*`` arrays and meta;
  or an error reply ``no_image`` when the system cannot produce an image.

**Sessions.** A multi-round exchange keeps each side's ``ctx.state`` in the worker
under ``(system, profile, session, side)`` (:class:`SessionStore`): sessions idle for
longer than a timeout are forgotten, and past a bound on open sessions the least
recently used is; a final round closes its session. One-shot systems keep nothing.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Dict, Optional

import numpy as np

from .models import model_names, register_model
from .registry import METHODS, ArraySpec, CallContext, RequestError

MAX_PIXELS = 4096 * 4096 * 3  #: largest image (elements of H x W x 3) a request may carry
MAX_ROUNDS = 64  #: the largest round number a request may name


class SessionStore:
    """Per-exchange state of multi-round systems, bounded in time and number.

    Args:
        ttl_s (float): a session unused for this long is forgotten.
        max_open (int): the most sessions kept; the least recently used goes first.
    """

    def __init__(self, ttl_s: float = 600.0, max_open: int = 256):
        self.ttl_s, self.max_open = float(ttl_s), int(max_open)
        self._d: "collections.OrderedDict[tuple, list]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def get(self, key: tuple) -> Dict[str, Any]:
        """The state dict of ``key`` (a new empty one for a new or expired session)."""
        now = time.monotonic()
        with self._lock:
            for k in [k for k, (_, t) in self._d.items() if now - t > self.ttl_s]:
                del self._d[k]
                self.evicted += 1
            entry = self._d.pop(key, None)
            state = entry[0] if entry is not None else {}
            self._d[key] = [state, now]
            while len(self._d) > self.max_open:
                self._d.popitem(last=False)
                self.evicted += 1
            return state

    def close(self, key: tuple) -> None:
        with self._lock:
            self._d.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)


SESSIONS = SessionStore()


def _system_loader(name: str, profile: str):
    def load(device: str):
        from ..systems import build

        return build(name, profile, device=device)

    return load


def register_systems() -> None:
    """Register a ``system.<name>`` model for every system and each of its profiles."""
    from .. import systems

    for name in systems.names():
        for profile in systems.get(name).profiles:
            register_model(f"system.{name}", profile)(_system_loader(name, profile))


def _system(ctx: CallContext):
    from .. import systems

    name = ctx.meta.get("system") if isinstance(ctx.meta, dict) else None
    if not isinstance(name, str):
        raise RequestError("bad_meta", "meta 'system' (a system name) is required")
    try:
        _, profile = systems.check(name, ctx.profile)
    except systems.UnknownSystem as e:
        raise RequestError("unknown_system", str(e)) from None
    except systems.UnsupportedProfile as e:
        raise RequestError("model_unavailable", str(e)) from None
    if profile not in model_names().get(f"system.{name}", ()):  # a system registered after start-up
        register_model(f"system.{name}", profile)(_system_loader(name, profile))
    try:
        return ctx.model(f"system.{name}")
    except RequestError:
        raise
    except (OSError, ValueError, LookupError, NotImplementedError, ImportError, RuntimeError) as e:
        # models that cannot be loaded (not in the cache, no hub, missing weights): the loader says which
        raise RequestError("model_unavailable", f"{name} ({profile} profile): {e}") from None


def _context(meta: Dict[str, Any], side: str, system):
    from ..systems.base import LinkContext

    def num(key, kind, default=None):
        v = meta.get(key)
        if v is None:  # absent or null: the default (a null modulation is no modulation to use)
            return None if default is None else kind(default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise RequestError("bad_meta", f"meta {key!r} must be a finite number, got {v!r:.40}")
        return kind(v)

    session, rnd = meta.get("session", ""), num("round", int, 0)
    if not isinstance(session, str) or len(session) > 128:
        raise RequestError("bad_meta", "meta 'session' must be a string of at most 128 characters")
    if not 0 <= rnd < min(MAX_ROUNDS, max(1, system.max_rounds)):
        raise RequestError("bad_meta", f"meta 'round' {rnd} is outside 0..{max(1, system.max_rounds) - 1} "
                           f"for {system.name}")
    repeat = num("header_repeat", int, 1)
    if not 1 <= repeat <= 8:
        raise RequestError("bad_meta", f"meta 'header_repeat' must be 1..8, got {repeat}")
    task = meta.get("task", "")
    if not isinstance(task, str) or len(task.encode("utf-8", "replace")) > 256:
        raise RequestError("bad_meta", "meta 'task' must be a string of at most 256 bytes")
    ctx = LinkContext(num("snr_db", float), num("modulation", int, 16), num("code_rate", float, 0.5),
                      num("budget_symbols", int), repeat, round=rnd, session=session, task=task)
    if system.max_rounds > 1 and session:
        ctx.state = SESSIONS.get((system.name, getattr(system, "profile", ""), session, side))
    return ctx


def _frame(arrays, meta, system_name: str, prefix: str = ""):
    from ..frame import FrameError, from_arrays

    try:
        return from_arrays(arrays, meta, system_name, prefix)
    except FrameError as e:
        raise RequestError("bad_frame", str(e)) from None


_FB = [ArraySpec("fb_digital", ("uint8",), ndim=1, optional=True),
       ArraySpec("fb_analog", ("float32",), ndim=1, optional=True),
       ArraySpec("fb_header", ("uint8",), ndim=1, optional=True)]


@METHODS.register("semantic_encode", inputs=[ArraySpec("image", ("uint8",), ndim=3, dims={2: 3},
                                                        max_elems=MAX_PIXELS)] + _FB)
def semantic_encode(ctx: CallContext, arrays: Dict[str, np.ndarray]):
    """image uint8 (H, W, 3) [+ feedback frame] -> the system's frame as arrays."""
    from ..frame import plain_meta, to_arrays

    system = _system(ctx)
    lctx = _context(ctx.meta, "tx", system)
    if "fb_digital" in arrays:
        lctx.feedback = _frame(arrays, ctx.meta, system.name, "fb_")
    elif lctx.round > 0:
        raise RequestError("bad_arrays", f"round {lctx.round} of {system.name} needs the feedback frame (fb_*)")
    try:
        frame = system.encode(np.ascontiguousarray(arrays["image"]), lctx)
    except ValueError as e:  # the request cannot be served as asked (a budget too small for the image, ...)
        raise RequestError("bad_request", f"{system.name}: {e}") from None
    out, meta = to_arrays(frame)
    meta["frame_meta"] = plain_meta(frame.meta)
    return out, meta


@METHODS.register("semantic_load", inputs=[])
def semantic_load(ctx: CallContext, arrays: Dict[str, np.ndarray]):
    """Load (or find resident) meta 'system' for the request's profile; reply meta
    ``system``, ``profile``, ``max_rounds``. A model that cannot be loaded is a
    ``model_unavailable`` error whose message says which model and how to provide it
    (used by ``gensemcom link`` before it starts a flowgraph)."""
    name = ctx.meta.get("system") if isinstance(ctx.meta, dict) else None
    system = _system(ctx)
    return {}, {"system": name, "profile": ctx.profile, "max_rounds": int(system.max_rounds)}


@METHODS.register("semantic_decode", inputs=[ArraySpec("digital", ("uint8",), ndim=1),
                                              ArraySpec("analog", ("float32",), ndim=1),
                                              ArraySpec("header", ("uint8",), ndim=1)])
def semantic_decode(ctx: CallContext, arrays: Dict[str, np.ndarray]):
    """digital, analog, header (+ meta crc_ok, segments) -> image uint8 (H, W, 3)
    [+ the receiver's feedback frame]."""
    from ..frame import to_arrays

    system = _system(ctx)
    lctx = _context(ctx.meta, "rx", system)
    meta = dict(ctx.meta)
    meta.setdefault("crc_ok", True)
    frame = _frame(arrays, meta, system.name)
    image = system.decode(frame, lctx)
    key = (system.name, getattr(system, "profile", ""), lctx.session)
    if image is None:
        SESSIONS.close(key + ("rx",))
        raise RequestError("no_image", f"{system.name} could not reconstruct an image from this frame"
                           + ("" if frame.crc_ok else " (its digital part failed CRC)"))
    out: Dict[str, Any] = {"image": np.ascontiguousarray(image, dtype=np.uint8)}
    reply: Dict[str, Any] = {"final": True, "round": lctx.round}
    text = system.received_text(frame)
    if isinstance(text, str):
        reply["received_text"] = text[:1024]
    fb: Optional[Any] = None
    if lctx.round + 1 < system.max_rounds:
        fb = system.feedback(frame, image, lctx)
    if fb is not None:
        a, m = to_arrays(fb, "fb_")
        out.update(a)
        reply.update(m, final=False)
    else:
        SESSIONS.close(key + ("rx",))
        SESSIONS.close(key + ("tx",))
    return out, reply


register_systems()
