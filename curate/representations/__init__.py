"""Representations: the space every verdict about a label is made in.

Every representation is a :class:`~curate.representations.base.Representation` subclass
registered here with :func:`register`, one module each (like the screens): ``backbone``
(the embedding of a timm model, the bundled one by default; with the face framed from its
landmarks when it fills only part of the picture), ``blendshapes`` (MediaPipe's 52 face
blendshape scores, made with the face analysis) and ``combined`` (both, each block
normalised). Other packages add one through the ``curate.representations`` entry-point
group. :func:`curate.representations.choose.represent` computes the one asked for, or with
``auto`` (the default) measures each candidate on the dataset's own labels with a
cross-validated probe and uses the best (``docs/representations.md``).
"""

from __future__ import annotations

from curate.errors import CurateError
from curate.plugins import load_entry_points
from curate.representations.base import Features, Representation, RepresentationContext

ENTRY_POINT_GROUP = "curate.representations"
AUTO = "auto"
_REGISTRY: dict[str, type[Representation]] = {}
_PLUGINS_LOADED = False


def register(cls: type[Representation]) -> type[Representation]:
    """Class decorator: add a representation to the registry (its name must be new)."""
    for attr in ("name", "summary"):
        if not hasattr(cls, attr):
            raise TypeError(f"representation {cls.__name__} must define {attr!r}")
    if cls.name == AUTO or not cls.name:
        raise TypeError(f"representation {cls.__name__}: {cls.name!r} is not a usable name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"a representation named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a representation from the registry (tests and plug-in development)."""
    _REGISTRY.pop(name, None)


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    load_entry_points(ENTRY_POINT_GROUP, Representation, register, "Representation")


def registered() -> list[Representation]:
    """One instance of every registered representation, in registration order."""
    _load_plugins()
    return [cls() for cls in _REGISTRY.values()]


def names() -> list[str]:
    """Names of the registered representations."""
    return [r.name for r in registered()]


def choices() -> list[str]:
    """What ``--representation`` accepts: ``auto`` and every registered name."""
    return [AUTO, *names()]


def progress_labels() -> dict[str, str]:
    """The label of every progress stage a representation reports."""
    return {stage: label for r in registered() for stage, label in r.progress_stages.items()}


def get(name: str) -> Representation:
    """The registered representation called ``name``."""
    for r in registered():
        if r.name == name:
            return r
    raise CurateError(f"unknown representation {name!r}", hint=f"use one of {', '.join(choices())}")


__all__ = [
    "AUTO",
    "ENTRY_POINT_GROUP",
    "Features",
    "Representation",
    "RepresentationContext",
    "choices",
    "get",
    "names",
    "progress_labels",
    "register",
    "registered",
    "unregister",
]

# The built-in representations register themselves on import (kept last: they import this module).
from curate.representations import backbone as _backbone  # noqa: E402,F401
from curate.representations import blendshapes as _blendshapes  # noqa: E402,F401
from curate.representations import combined as _combined  # noqa: E402,F401
