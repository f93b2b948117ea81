"""Screens: each decides, per tuple or per image, whether training data is abnormal.

The registry maps a screen's name to the module that implements it and the reason
codes it can write into ``scores.parquet``'s ``reason`` column. Modules are imported
lazily (:func:`load_screen`), so a screen's heavy dependencies load only when it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from curate.errors import CurateError


@dataclass(frozen=True)
class ScreenInfo:
    """A registered screen: where it lives, what it looks at, the reasons it writes."""

    module: str
    level: str  # "tuple" (distances of the tuple's pairs) or "image" (each member image)
    reasons: tuple[str, ...]
    summary: str


SCREENS: dict[str, ScreenInfo] = {
    "statistical": ScreenInfo(
        "curate.screens.statistical", "tuple", ("positive_too_far", "negative_too_close"),
        "anchor-positive too far or a negative pair too close under the statistical null"),
    "faces": ScreenInfo(
        "curate.screens.faces", "image", ("side_face", "occluded", "no_face"),
        "head turned beyond --max-yaw, face occluded, or no face found"),
}

REASON_CODES: tuple[str, ...] = tuple(code for info in SCREENS.values() for code in info.reasons)


def load_screen(name: str) -> ModuleType:
    """Import and return the module implementing the screen ``name``."""
    info = SCREENS.get(name)
    if info is None:
        raise CurateError(f"unknown screen {name!r}", hint=f"known screens: {', '.join(SCREENS)}")
    return importlib.import_module(info.module)
