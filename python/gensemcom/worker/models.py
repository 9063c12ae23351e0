"""Model profiles and the resident model store of the inference worker.

A *model* is known by a dotted name (``tiny.autoencoder``) and can have one
loader per *profile*:

* ``full``: Hugging Face ids or local paths configured on the worker host,
* ``embedded``: small weights the team ships with the module,
* ``tiny``: random models built from a fixed seed, for tests and demos.

Loaders are registered in code (:func:`register_model`), never named by a
request, and receive only the device; requests cannot pass paths. The
:class:`ModelStore` loads a model on first use and keeps it resident.

torch is imported lazily, so a worker serving only ``echo`` starts fast and
this module imports on machines without torch.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Tuple, Union

from .wire import PROFILES

log = logging.getLogger(__name__)

Loader = Callable[[str], Any]
_LOADERS: Dict[str, Dict[str, Loader]] = {}


class ModelNotAvailable(LookupError):
    """The model has no loader for the requested profile."""


def register_model(name: str, profile: str) -> Callable[[Loader], Loader]:
    """Decorator registering a loader for ``name`` under ``profile``.

    Args:
        name: Model name, e.g. ``"tiny.autoencoder"``.
        profile: One of :data:`~gensemcom.worker.wire.PROFILES`.

    Returns:
        A decorator that stores the loader ``fn(device: str) -> model`` and
        returns it unchanged.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {PROFILES}")

    def deco(fn: Loader) -> Loader:
        _LOADERS.setdefault(name, {})[profile] = fn
        return fn

    return deco


def model_names() -> Dict[str, List[str]]:
    """Return the registered models and the profiles each supports."""
    return {name: sorted(p) for name, p in sorted(_LOADERS.items())}


def resolve_device(device: str = "auto") -> str:
    """Pick the torch device.

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.

    Returns:
        The device string to use.

    Raises:
        ValueError: If the device string is not recognised.
    """
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N)")
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelStore:
    """Loads models lazily per (name, profile) and keeps them resident.

    Args:
        device: Device passed to loaders (resolved, e.g. ``"cpu"``), or a
            callable returning it (resolved on first load).
    """

    def __init__(self, device: Union[str, Callable[[], str]]):
        self._device = device
        self._models: Dict[Tuple[str, str], Any] = {}
        self._load_s: Dict[Tuple[str, str], float] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        """The device models are loaded on."""
        return self._device() if callable(self._device) else self._device

    def get(self, name: str, profile: str) -> Any:
        """Return the resident model, loading it on first use.

        Args:
            name: Registered model name.
            profile: Profile name.

        Returns:
            The model object the loader built.

        Raises:
            ModelNotAvailable: If no loader exists for ``name``/``profile``.
        """
        key = (name, profile)
        model = self._models.get(key)
        if model is not None:
            return model
        loader = _LOADERS.get(name, {}).get(profile)
        if loader is None:
            have = ", ".join(_LOADERS.get(name, {})) or "none"
            raise ModelNotAvailable(f"model {name!r} has no {profile!r} profile (available: {have})")
        with self._lock:
            if key not in self._models:
                t0 = time.perf_counter()
                self._models[key] = loader(self.device)
                self._load_s[key] = time.perf_counter() - t0
                log.info("loaded %s [%s] on %s in %.2f s", name, profile, self.device, self._load_s[key])
            return self._models[key]

    def loaded(self) -> List[Dict[str, Any]]:
        """Describe the resident models (name, profile, device, load time)."""
        return [{"name": n, "profile": p, "device": self.device, "load_s": round(self._load_s[(n, p)], 4)}
                for (n, p) in list(self._models)]


# --------------------------------------------------------------------------- tiny models

TINY_SEED = 1234


def build_tiny_autoencoder(seed: int = TINY_SEED, device: str = "cpu") -> Any:
    """Build the random ``tiny.autoencoder`` (deterministic for a given seed).

    Encoder: ``[N,3,H,W] -> [N,4,H/4,W/4]`` (two stride-2 convolutions);
    decoder: the mirror image with transposed convolutions and a sigmoid.
    ``H`` and ``W`` must be multiples of 4.

    Args:
        seed: Seed of the weight initialisation.
        device: Torch device.

    Returns:
        A ``torch.nn.Module`` in eval mode with ``encode``/``decode`` methods.
    """
    import torch
    from torch import nn

    class TinyAutoencoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, 2, 1))
            self.dec = nn.Sequential(nn.ConvTranspose2d(4, 8, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Sigmoid())

        def encode(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.enc(x)

        def decode(self, z: "torch.Tensor") -> "torch.Tensor":
            return self.dec(z)

    model = TinyAutoencoder()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = max(1, p[0].numel()) if p.ndim > 1 else 8
            p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
    return model.eval().to(device)


@register_model("tiny.autoencoder", "tiny")
def _load_tiny_autoencoder(device: str) -> Any:
    return build_tiny_autoencoder(TINY_SEED, device)
