"""The fixed method registry of the inference worker.

A request names a method; the server looks the name up here and nowhere else,
so a request can only run code that was registered in this process. Semantic
systems extend the default registry :data:`METHODS`::

    from gensemcom.worker.registry import METHODS, ArraySpec

    @METHODS.register("mysys_encode", batchable=True,
                      inputs=[ArraySpec("image", ("float32",), ndim=4, dims={1: 3})])
    def mysys_encode(ctx, arrays):
        model = ctx.model("mysys.encoder")      # loaded lazily for ctx.profile
        return {"latent": run(model, arrays["image"], ctx.device)}

A handler receives a :class:`CallContext` and a dict of arrays and returns a
dict of arrays, or a tuple ``(arrays, meta)``. Batchable methods receive the
inputs of several requests concatenated along dim 0 and must return outputs
whose dim 0 matches, so the server can split the replies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .models import ModelNotAvailable, ModelStore

_METHOD_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


class RequestError(Exception):
    """A request the server rejects; becomes an error reply.

    Args:
        code: Short error code (``unknown_method``, ``bad_dtype``, ``bad_shape``, ...).
        message: Explanation naming the problem.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ArraySpec:
    """Expected input array of a method.

    Args:
        name: Array name in the request.
        dtypes: Accepted wire dtype names (empty: any supported dtype).
        ndim: Required number of dimensions (None: any).
        dims: Required sizes by axis, e.g. ``{1: 3}`` for 3 channels.
        multiple_of: Required divisors by axis, e.g. ``{2: 4, 3: 4}``.
        max_elems: Largest accepted element count (guards model memory).
        optional: The request may leave the array out.
    """

    name: str
    dtypes: Tuple[str, ...] = ()
    ndim: Optional[int] = None
    dims: Mapping[int, int] = field(default_factory=dict)
    multiple_of: Mapping[int, int] = field(default_factory=dict)
    max_elems: Optional[int] = None
    optional: bool = False

    def check(self, arr: np.ndarray) -> None:
        """Validate one array.

        Args:
            arr: The received array.

        Raises:
            RequestError: With code ``bad_dtype`` or ``bad_shape``.
        """
        if self.dtypes and arr.dtype.name not in self.dtypes:
            raise RequestError("bad_dtype", f"array {self.name!r} must be {'/'.join(self.dtypes)}, "
                               f"got {arr.dtype.name}")
        if self.ndim is not None and arr.ndim != self.ndim:
            raise RequestError("bad_shape", f"array {self.name!r} must have {self.ndim} dimensions, "
                               f"got shape {list(arr.shape)}")
        for axis, size in self.dims.items():
            if arr.ndim <= axis or arr.shape[axis] != size:
                raise RequestError("bad_shape", f"array {self.name!r} needs size {size} on axis {axis}, "
                                   f"got shape {list(arr.shape)}")
        for axis, div in self.multiple_of.items():
            if arr.ndim <= axis or arr.shape[axis] % div or arr.shape[axis] == 0:
                raise RequestError("bad_shape", f"array {self.name!r} needs a positive multiple of {div} "
                                   f"on axis {axis}, got shape {list(arr.shape)}")
        if self.max_elems is not None and arr.size > self.max_elems:
            raise RequestError("bad_shape", f"array {self.name!r} has {arr.size} elements "
                               f"(max {self.max_elems})")


@dataclass
class CallContext:
    """What a handler may use besides its arrays.

    Attributes:
        profile: Model profile of the request (server default if it named none).
        device: Torch device string.
        models: The resident model store.
        meta: The request's small option map.
        batch_size: Number of requests merged into this call.
        server: The serving :class:`~gensemcom.worker.server.WorkerServer`.
    """

    profile: str
    device: str
    models: ModelStore
    meta: Dict[str, Any]
    batch_size: int = 1
    server: Any = None

    def model(self, name: str) -> Any:
        """Return model ``name`` for this request's profile, loading it on first use.

        Raises:
            RequestError: ``model_unavailable`` if the profile has no such model.
        """
        try:
            return self.models.get(name, self.profile)
        except ModelNotAvailable as exc:
            raise RequestError("model_unavailable", str(exc)) from None


Handler = Callable[[CallContext, Dict[str, np.ndarray]], Any]


@dataclass
class MethodSpec:
    """A registered method.

    Attributes:
        name: Method name as requests spell it.
        fn: The handler.
        inputs: Expected arrays (None: any arrays).
        batchable: Requests with equal shapes (but dim 0) may be merged.
        inline: Cheap method answered on the I/O thread (no queue, no batching).
        doc: One-line description.
    """

    name: str
    fn: Handler
    inputs: Optional[Tuple[ArraySpec, ...]] = None
    batchable: bool = False
    inline: bool = False
    doc: str = ""

    def check(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Validate the request arrays against :attr:`inputs`.

        Raises:
            RequestError: On missing, unexpected or malformed arrays.
        """
        if self.inputs is not None:
            required = {s.name for s in self.inputs if not s.optional}
            allowed = {s.name for s in self.inputs}
            if not required <= set(arrays) <= allowed:
                optional = sorted(allowed - required)
                raise RequestError("bad_arrays", f"method {self.name!r} takes arrays {sorted(required)}"
                                   + (f" (optionally {optional})" if optional else "") + f", got {list(arrays)}")
            for spec in self.inputs:
                if spec.name in arrays:
                    spec.check(arrays[spec.name])
        if self.batchable:
            lead = {a.shape[0] if a.ndim else None for a in arrays.values()}
            if None in lead or len(lead) > 1:
                raise RequestError("bad_shape", f"method {self.name!r} needs arrays with a common "
                                   f"leading (batch) dimension")


class MethodRegistry:
    """Name -> :class:`MethodSpec`; the only code a request can reach."""

    def __init__(self) -> None:
        self._methods: Dict[str, MethodSpec] = {}

    def register(self, name: str, *, inputs: Optional[Sequence[ArraySpec]] = None, batchable: bool = False,
                 inline: bool = False, doc: str = "") -> Callable[[Handler], Handler]:
        """Decorator registering a handler under ``name``.

        Args:
            name: Lower-case method name (letters, digits, ``_`` and ``.``).
            inputs: Expected input arrays, or None to accept any.
            batchable: Allow merging same-shape requests along dim 0.
            inline: Run on the I/O thread (only for cheap, model-free methods).
            doc: One-line description (defaults to the docstring's first line).

        Returns:
            The decorator; it returns the handler unchanged.
        """
        if not _METHOD_RE.match(name):
            raise ValueError(f"invalid method name {name!r}")

        def deco(fn: Handler) -> Handler:
            text = doc or (fn.__doc__ or "").strip().split("\n")[0]
            self._methods[name] = MethodSpec(name, fn, tuple(inputs) if inputs is not None else None,
                                             batchable, inline, text)
            return fn

        return deco

    def get(self, name: str) -> MethodSpec:
        """Look a method up.

        Raises:
            RequestError: ``unknown_method`` naming the available methods.
        """
        spec = self._methods.get(name) if isinstance(name, str) else None
        if spec is None:
            raise RequestError("unknown_method", f"unknown method {name!r}; available: {', '.join(self.names())}")
        return spec

    def names(self) -> List[str]:
        """Sorted method names."""
        return sorted(self._methods)

    def describe(self) -> Dict[str, str]:
        """Method name -> one-line description."""
        return {n: self._methods[n].doc for n in self.names()}

    def copy(self) -> "MethodRegistry":
        """A shallow copy (to extend without touching the default registry)."""
        new = MethodRegistry()
        new._methods = dict(self._methods)
        return new


METHODS = MethodRegistry()
"""The default registry; :mod:`gensemcom.worker.methods` fills in the built-ins."""
