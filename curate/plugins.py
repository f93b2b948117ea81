"""Classes other packages add through entry points: screens (``curate.screens``) and
representations (``curate.representations``) load theirs with :func:`load_entry_points`."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

from curate.errors import CurateError


def load_entry_points(group: str, base: type, register: Callable[[type], type], what: str) -> None:
    """Register every class of the entry point ``group``; one that is not a ``base``
    subclass is a :class:`CurateError` naming the entry point."""
    for ep in metadata.entry_points(group=group):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise CurateError(
                f"entry point {ep.name} = {ep.value} of group {group} is not a curate {what} subclass",
                hint=f"point the entry point at a class decorated with {register.__module__}.register",
            )
        register(cls)
