"""Screens: each decides, per image or per tuple, whether training data is abnormal.

Every screen is a :class:`~curate.screens.base.Screen` subclass registered here with
:func:`register`. :func:`registered` lists them in run order (image screens first,
then tuple screens, each by its ``order``); :func:`curate.screen.screen` runs
them in one loop, and the report takes every reason's label and colour from
:func:`reason`. Other packages add screens through the ``curate.screens`` entry-point
group (each entry point names a Screen subclass).

Built in: ``faces`` (image: ``side_face``, ``occluded``, ``no_face``), ``label`` (image:
``label_suspect``), the hygiene screens ``quality`` (image: ``blank``, ``too_dark``,
``too_bright``, ``blurry``, ``odd_aspect``, ``too_small``), ``not_face`` (image:
``not_a_face``) and ``near_duplicates`` (image: ``near_duplicate``; order 90, last of the
built-in image screens, so it keeps the copy the others passed), and ``boundary`` (tuple:
``positive_too_far``, ``negative_too_close``). ``docs/screens.md`` shows how to add one.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any

from curate.errors import CurateError
from curate.plugins import check_new_options, load_entry_points, resolve_options
from curate.screens.base import LEVELS, Option, Reason, Screen, ScreenContext, ScreenOutput

ENTRY_POINT_GROUP = "curate.screens"
# The built-in screens: imported on the registry's first use, not with this package, so
# importing the maths (curate.stats) stays cheap.
# Their run order is each screen's ``order``, not this list's.
BUILTIN_MODULES = ("boundary", "faces", "label", "not_face", "quality", "near_duplicates")
_REGISTRY: dict[str, type[Screen]] = {}
_BUILTINS_LOADED = False
_PLUGINS_LOADED = False


def register(cls: type[Screen]) -> type[Screen]:
    """Class decorator: add a screen to the registry (its name, codes and options must be new)."""
    if not cls.__module__.startswith(f"{__name__}."):
        _load_builtins()  # another package's screen is checked against the built-in ones
    for attr in ("name", "level", "reasons", "summary"):
        if not hasattr(cls, attr):
            raise TypeError(f"screen {cls.__name__} must define {attr!r}")
    if cls.level not in LEVELS:
        raise TypeError(f"screen {cls.name!r}: level must be one of {LEVELS}, got {cls.level!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"a screen named {cls.name!r} is already registered")
    taken_codes = {r.code for s in _REGISTRY.values() if s is not cls for r in s.reasons}
    for r in cls.reasons:
        if ";" in r.code or not r.code:
            raise TypeError(f"screen {cls.name!r}: bad reason code {r.code!r}")
        if r.code in taken_codes:
            raise TypeError(f"screen {cls.name!r}: reason code {r.code!r} is taken")
    check_new_options(cls, list(_REGISTRY.values()), "screen")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a screen from the registry (tests and plug-in development)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for name in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    load_entry_points(ENTRY_POINT_GROUP, Screen, register, "Screen")


def registered() -> list[Screen]:
    """One instance of every registered screen, in run order: image screens first, then
    tuple screens, each by its ``order`` (ties: registration order)."""
    _load_builtins()
    _load_plugins()
    screens = sorted(
        (cls() for cls in _REGISTRY.values()), key=lambda s: (LEVELS.index(s.level), s.order)
    )
    return screens


def get(name: str) -> Screen:
    """The registered screen called ``name``."""
    for s in registered():
        if s.name == name:
            return s
    raise CurateError(f"unknown screen {name!r}", hint=f"known screens: {', '.join(names())}")


def names() -> list[str]:
    """Names of the registered screens in run order."""
    return [s.name for s in registered()]


def reasons() -> list[Reason]:
    """Every registered reason in the order of the ``reason`` columns and the report: the
    tuple screens' codes, then the image screens' codes."""
    screens = registered()
    return [
        r for level in ("tuple", "image") for s in screens if s.level == level for r in s.reasons
    ]


def reason(code: str) -> Reason | None:
    """The registered :class:`Reason` of ``code``, or None for a code no screen registers."""
    return next((r for r in reasons() if r.code == code), None)


def screen_of(code: str) -> Screen | None:
    """The screen that writes reason ``code``."""
    return next((s for s in registered() if code in s.codes), None)


def options() -> dict[str, Option]:
    """Every screen option by name, in run order (each screen's skip option last)."""
    return {o.name: o for s in registered() for o in s.all_options()}


def aliases() -> dict[str, str]:
    """Earlier names of screen options (deprecated, still accepted) -> their names now."""
    out: dict[str, str] = {}
    for s in registered():
        skip = s.skip_option
        if skip is not None:
            out.update(dict.fromkeys(s.skip_aliases, skip.name))
    return out


def progress_labels() -> dict[str, str]:
    """The label of every progress stage a screen reports."""
    return {stage: label for s in registered() for stage, label in s.progress_stages.items()}


def defaults() -> dict[str, Any]:
    """The default value of every screen option."""
    return {name: o.default for name, o in options().items()}


def resolve_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value to use: ``given`` over the defaults, each checked by its screen.

    Raises :class:`CurateError` for an unknown option name or a bad value, before any
    work is done. An earlier name of an option (:func:`aliases`) is read as its name now,
    with a :class:`DeprecationWarning`.
    """
    old = aliases()
    given = dict(given)
    for name in [n for n in given if n in old]:
        if old[name] in given:
            raise CurateError(f"{name} and {old[name]} both given", hint=f"pass {old[name]} only")
        warnings.warn(
            f"screen option {name} is now called {old[name]}", DeprecationWarning, stacklevel=3
        )
        given[old[name]] = given.pop(name)
    return resolve_options(registered(), given, "screen")


__all__ = [
    "ENTRY_POINT_GROUP",
    "Option",
    "Reason",
    "Screen",
    "ScreenContext",
    "ScreenOutput",
    "aliases",
    "defaults",
    "get",
    "names",
    "options",
    "progress_labels",
    "reason",
    "reasons",
    "register",
    "registered",
    "resolve_settings",
    "screen_of",
    "unregister",
]
