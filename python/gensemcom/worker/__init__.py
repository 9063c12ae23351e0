"""ZeroMQ inference worker: models live in a separate process, flowgraphs call them.

Modules:
    wire: the message format (msgpack header + raw array frames, no pickle).
    registry: the fixed method registry semantic systems extend.
    server: :class:`WorkerServer` (resident models, batching, broker mode).
    client: :class:`WorkerClient` (timeouts, lazy-pirate retries, auto-start).
    broker: :class:`Broker` (several workers, heartbeats, re-dispatch).
    security: CURVE keys and the loopback-only rule.
    cli: ``python -m gensemcom.worker`` / ``gensemcom worker``.

Names are imported lazily so ``import gensemcom.worker`` stays cheap.
"""
import importlib

_EXPORTS = {
    "WorkerClient": "client", "WorkerUnavailable": "client", "WorkerError": "client", "Reply": "client",
    "LocalWorker": "client", "WorkerServer": "server", "Broker": "broker", "METHODS": "registry",
    "MethodRegistry": "registry", "ArraySpec": "registry", "CallContext": "registry",
    "RequestError": "registry", "register_model": "models", "WireError": "wire", "keygen": "security",
    "SecurityError": "security",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module("." + _EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
