"""Representations: the space every verdict about a label is made in.

Every representation is a :class:`~curate.representations.base.Representation` subclass
registered here with :func:`register`, one module each (like the screens): ``backbone``
(the embedding of a timm model, the bundled one by default; with the face framed from its
landmarks when it fills only part of the picture), ``blendshapes`` (MediaPipe's 52 face
blendshape scores, made with the face analysis) and ``combined`` (both, each block
normalised). Other packages add one through the ``curate.representations`` entry-point
group. Like a screen, a representation may declare options (``curate screen`` flags,
:func:`options`) and a report section (:class:`curate.plugins.Plugin`).
:func:`curate.representations.choose.represent` computes the one asked for, or with
``auto`` (the default) measures each candidate on the dataset's own labels with a
cross-validated probe and uses the best (``docs/representations.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curate.errors import CurateError
from curate.plugins import Option, check_new_options, load_entry_points, resolve_options
from curate.representations.base import Features, Representation, RepresentationContext

ENTRY_POINT_GROUP = "curate.representations"
AUTO = "auto"
_REGISTRY: dict[str, type[Representation]] = {}
_PLUGINS_LOADED = False


def register(cls: type[Representation]) -> type[Representation]:
    """Class decorator: add a representation to the registry (its name and options must be new)."""
    for attr in ("name", "summary"):
        if not hasattr(cls, attr):
            raise TypeError(f"representation {cls.__name__} must define {attr!r}")
    if cls.name == AUTO or not cls.name:
        raise TypeError(f"representation {cls.__name__}: {cls.name!r} is not a usable name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"a representation named {cls.name!r} is already registered")
    check_new_options(cls, list(_REGISTRY.values()), "representation")
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


def options() -> dict[str, Option]:
    """Every representation's option by name (``curate screen`` gives each a flag, like the
    screens' options)."""
    return {o.name: o for r in registered() for o in r.all_options()}


def defaults() -> dict[str, Any]:
    """The default value of every representation option."""
    return {name: o.default for name, o in options().items()}


def resolve_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every representation option's value to use: ``given`` over the defaults, each checked
    by its representation (a :class:`CurateError` for an unknown name or a bad value)."""
    return resolve_options(registered(), given, "representation")


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
    "defaults",
    "get",
    "names",
    "options",
    "progress_labels",
    "register",
    "registered",
    "resolve_settings",
    "unregister",
]

# The built-in representations register themselves on import (kept last: they import this module).
from curate.representations import backbone as _backbone  # noqa: E402,F401
from curate.representations import blendshapes as _blendshapes  # noqa: E402,F401
from curate.representations import combined as _combined  # noqa: E402,F401
