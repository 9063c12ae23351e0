"""Built-in worker methods: ``echo``, ``status``, ``wait`` and the tiny test models.

Semantic systems add their own (``<system>_encode``/``<system>_decode``,
``caption``, ``generate``, ``embed``) to :data:`~gensemcom.worker.registry.METHODS`
in the same way.
"""
from __future__ import annotations

import time
from typing import Any, Dict

import numpy as np

from .registry import METHODS, ArraySpec, CallContext, RequestError

MAX_WAIT_MS = 2000


@METHODS.register("echo", inline=True)
def echo(ctx: CallContext, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Return the request's arrays unchanged (zero-copy)."""
    return arrays


@METHODS.register("status", inline=True, inputs=[])
def status(ctx: CallContext, arrays: Dict[str, np.ndarray]) -> Any:
    """Loaded models, queue depth, request counts and latency percentiles (in meta)."""
    return {}, ctx.server.status()


@METHODS.register("wait")
def wait(ctx: CallContext, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Sleep meta['delay_ms'] (at most 2000) on the compute thread, then echo (tests, load experiments)."""
    delay = ctx.meta.get("delay_ms", 0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= MAX_WAIT_MS:
        raise RequestError("bad_meta", f"delay_ms must be a number in [0, {MAX_WAIT_MS}], got {delay!r}")
    time.sleep(delay / 1e3)
    return arrays


def _run_torch(ctx: CallContext, fn_name: str, x: np.ndarray) -> np.ndarray:
    import torch

    model = ctx.model("tiny.autoencoder")
    with torch.inference_mode():
        t = torch.from_numpy(np.array(x, dtype=np.float32, copy=True)).to(ctx.device)
        out = getattr(model, fn_name)(t)
    return out.float().cpu().numpy()


_TINY_PIXELS = 3 * 1024 * 1024


@METHODS.register("tiny_encode", batchable=True, inputs=[
    ArraySpec("image", ("float32",), ndim=4, dims={1: 3}, multiple_of={2: 4, 3: 4}, max_elems=_TINY_PIXELS)])
def tiny_encode(ctx: CallContext, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """tiny.autoencoder encoder: image float32 [N,3,H,W] (H, W multiples of 4) -> latent [N,4,H/4,W/4]."""
    return {"latent": _run_torch(ctx, "encode", arrays["image"])}


@METHODS.register("tiny_decode", batchable=True, inputs=[
    ArraySpec("latent", ("float32",), ndim=4, dims={1: 4}, max_elems=_TINY_PIXELS)])
def tiny_decode(ctx: CallContext, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """tiny.autoencoder decoder: latent float32 [N,4,h,w] -> image [N,3,4h,4w] in (0, 1)."""
    return {"image": _run_torch(ctx, "decode", arrays["latent"])}
