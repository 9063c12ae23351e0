"""The system registry: every system declares itself here, and everything builds it here.

A system's backend class is registered for the profiles it serves::

    @register_system("tisc", profiles=("full", "tiny"))
    class TISCFull(TISCBase): ...

    @register_system("tisc", profiles="embedded")
    class TISCEmbedded(TISCBase): ...

so a system may have one backend per profile, side by side. :func:`build` is the one
way to construct a system (the worker, eval, the CLI and the blocks call it); an
unsupported profile is refused before anything loads, with the supported ones listed.
The built-in systems are found by importing every module of :mod:`gensemcom.systems`
(no hand-written list); a system in another package registers itself on import.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Type, Union

from .base import PROFILES, Option, SemanticSystem


class UnknownSystem(ValueError):
    """A system name nobody registered."""


class UnsupportedProfile(ValueError):
    """A profile the system does not have."""


@dataclass
class SystemSpec:
    """What a system declares.

    Attributes:
        name (str): the system's name (``--system``).
        backends (dict[str, type]): profile -> backend class.
        offline (dict[str, bool]): profile -> runs with nothing downloaded.
        summary (str): one line (the first backend's docstring's first line, or given).
    """

    name: str
    backends: Dict[str, Type[SemanticSystem]] = field(default_factory=dict)
    offline: Dict[str, bool] = field(default_factory=dict)
    summary: str = ""

    @property
    def profiles(self) -> Tuple[str, ...]:
        """The supported profiles, in :data:`PROFILES` order."""
        return tuple(p for p in PROFILES if p in self.backends)

    @property
    def default_profile(self) -> str:
        """``embedded`` when the system has it, else its first offline profile, else ``full``."""
        if "embedded" in self.backends:
            return "embedded"
        off = [p for p in self.profiles if self.offline[p]]
        return off[0] if off else self.profiles[0]

    def backend(self, profile: str) -> Type[SemanticSystem]:
        if profile not in self.backends:
            raise UnsupportedProfile(f"system {self.name!r} has no profile {profile!r}; its profiles: "
                                     f"{', '.join(self.profiles)}")
        return self.backends[profile]

    def options(self, profile: Optional[str] = None) -> Dict[str, Option]:
        """The options a profile's backend takes (beyond profile and device)."""
        return {o.name: o for o in self.backend(profile or self.default_profile).OPTIONS}


_SPECS: Dict[str, SystemSpec] = {}
_DISCOVERED = False


def register_system(name: str, profiles: Union[str, Iterable[str]] = PROFILES,
                    offline: Optional[Iterable[str]] = None, summary: str = ""):
    """Class decorator: register ``cls`` as system ``name``'s backend for ``profiles``.

    Args:
        name (str): the system's name (lower case, ``-`` between words).
        profiles (str | Iterable[str]): the profiles this class serves (default all:
            a system without models).
        offline (Iterable[str] | None): the profiles among them that run with nothing
            downloaded (default: all but ``full``).
        summary (str): one line for listings (default: the first backend's docstring's
            first line; a later backend's explicit summary replaces it).

    Raises:
        ValueError: an unknown profile, or one another class already serves.
    """
    profs = (profiles,) if isinstance(profiles, str) else tuple(profiles)
    bad = [p for p in profs if p not in PROFILES]
    if bad or not profs:
        raise ValueError(f"system {name!r}: unknown profile(s) {bad}; profiles are {', '.join(PROFILES)}")
    off = set(p for p in profs if p != "full") if offline is None else set(offline)

    def deco(cls):
        spec = _SPECS.setdefault(name, SystemSpec(name))
        for p in profs:
            old = spec.backends.get(p)
            if old is not None and old.__qualname__ != cls.__qualname__:
                raise ValueError(f"system {name!r} profile {p!r} is already served by {old.__qualname__}")
            spec.backends[p] = cls
            spec.offline[p] = p in off
        if summary or not spec.summary:
            spec.summary = summary or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        cls.name = name
        served = set(cls.__dict__.get("profiles", ())) | set(profs)
        cls.profiles = tuple(p for p in PROFILES if p in served)
        return cls

    return deco


def _discover() -> None:
    """Import every module of this package once, so the built-in systems register."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    pkg = importlib.import_module(__package__)
    for m in pkgutil.iter_modules(pkg.__path__):
        if not m.name.startswith("_") and m.name not in ("base", "registry"):
            importlib.import_module(f"{__package__}.{m.name}")


def names() -> List[str]:
    """The registered systems, sorted."""
    _discover()
    return sorted(_SPECS)


def get(name: str) -> SystemSpec:
    """A system's declaration.

    Raises:
        UnknownSystem: naming the registered systems.
    """
    _discover()
    spec = _SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownSystem(f"unknown system {name!r}; known: {', '.join(sorted(_SPECS)) or 'none'}")
    return spec


def check(name: str, profile: Optional[str] = None) -> Tuple[SystemSpec, str]:
    """Validate a (system, profile) pair without building anything; returns the spec
    and the profile (the system's default when None).

    Raises:
        UnknownSystem, UnsupportedProfile: with the known names or profiles.
    """
    spec = get(name)
    profile = profile or spec.default_profile
    spec.backend(profile)
    return spec, profile


def build(name: str, profile: Optional[str] = None, device: Optional[str] = None, **options: Any) -> SemanticSystem:
    """Construct system ``name`` for ``profile`` (default: the system's
    :attr:`SystemSpec.default_profile`) on ``device`` (default: the backend's choice).

    Args:
        name (str): a registered system.
        profile (str | None): one of the system's profiles.
        device (str | None): torch device for systems with models.
        **options: the backend's declared options (:attr:`SemanticSystem.OPTIONS`).

    Raises:
        UnknownSystem, UnsupportedProfile: before anything is loaded.
        TypeError: an option the backend does not declare.
        Exception: whatever the backend raises while loading its models.
    """
    spec, profile = check(name, profile)
    cls = spec.backend(profile)
    declared = {o.name for o in cls.OPTIONS}
    unknown = sorted(set(options) - declared)
    if unknown:
        raise TypeError(f"system {name!r} ({profile}) has no option(s) {', '.join(unknown)}; its options: "
                        f"{', '.join(sorted(declared)) or 'none'}")
    return cls(profile=profile, device=device, **options)


def describe() -> str:
    """A table of the systems and their profiles (``*`` = runs offline), for ``--help``."""
    rows = []
    for n in names():
        s = _SPECS[n]
        profs = ", ".join(p + ("*" if s.offline[p] else "") for p in s.profiles)
        rows.append(f"  {n:<15} {profs:<26} {s.summary}")
    return "\n".join(rows)
