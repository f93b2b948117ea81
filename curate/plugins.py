"""What a plug-in stage declares, and how other packages add one.

Screens (:mod:`curate.screens`) and representations (:mod:`curate.representations`) are
:class:`Plugin` subclasses, each registered in its stage's registry: a plug-in declares its
settings (:class:`Option`: ``curate screen``'s flags are made from them,
``curate/cli/_screen_flags.py``; :func:`resolve_options` checks them before any work) and its
section of the HTML report (:meth:`Plugin.report`; ``curate/report/sections.py`` places the
sections). Other packages add theirs through entry points (:func:`load_entry_points`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

from curate.errors import CurateError


@dataclass(frozen=True)
class Option:
    """A setting of a screen: its name (the CLI flag is ``--`` + name with dashes), the
    default the library and the CLI use, a help line, and a check run before any work.

    ``check(value)`` returns the value to use (for example a resolved default) or raises
    :class:`CurateError` naming the value and the fix. ``None`` means no check.
    ``choices``, when set, are the values the CLI offers; ``cli=False`` gives the option
    no flag of its own (``curate screen --option NAME=VALUE`` sets it).
    """

    name: str
    default: Any
    help: str
    check: Callable[[Any], Any] | None = None
    choices: tuple[str, ...] = ()
    cli: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Plugin:
    """What screens and representations share: a name, the settings they declare
    (:attr:`options`) and their section of the report (:meth:`report`, titled
    :attr:`section_title`, anchored at :attr:`section_anchor`)."""

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    # the default title of the report section is "<Name> <kind>"
    kind: ClassVar[str] = "plug-in"
    report_title: ClassVar[str | None] = None
    report_anchor: ClassVar[str | None] = None

    def all_options(self) -> tuple[Option, ...]:
        """Every setting this plug-in declares."""
        return self.options

    def resolve(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check this plug-in's options in ``settings``; return their values to use."""
        return {
            o.name: (o.check(settings[o.name]) if o.check else settings[o.name])
            for o in self.all_options()
        }

    @property
    def section_title(self) -> str:
        return self.report_title or f"{self.name.replace('_', ' ').capitalize()} {self.kind}"

    @property
    def section_anchor(self) -> str:
        return self.report_anchor or self.name

    def report(self, run: Any, ctx: Any) -> list[Any] | None:
        """The body of this plug-in's section of the HTML report (blocks of
        :mod:`curate.report.html`), read from the screen folder ``run``
        (:class:`curate.report.inputs.ScreenRun`: ``run.params`` holds the run's resolved
        settings, this plug-in's options among them; ``ctx`` is a
        :class:`curate.report.sections.SectionContext`: thumbnails, gallery size, seed);
        None (the default): no section."""
        return None


def check_new_options(cls: type[Plugin], others: Sequence[type[Plugin]], what: str) -> None:
    """A :class:`TypeError` when ``cls`` declares an option another registered ``what``
    already declares (every option is one flag of ``curate screen``)."""
    taken = {o.name for other in others if other is not cls for o in other().all_options()}
    for o in cls().all_options():
        if o.name in taken:
            raise TypeError(f"{what} {cls.name!r}: option {o.name!r} is taken by another {what}")


def resolve_options(
    plugins: Sequence[Plugin], given: Mapping[str, Any], what: str
) -> dict[str, Any]:
    """Every option of ``plugins``: ``given`` over the defaults, each checked by its plug-in.

    Raises :class:`CurateError` for an unknown option name or a bad value."""
    known = {o.name: o for p in plugins for o in p.all_options()}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise CurateError(
            f"unknown {what} option(s) {', '.join(unknown)}",
            hint=f"known options: {', '.join(sorted(known))}",
        )
    merged = {**{n: o.default for n, o in known.items()}, **given}
    out: dict[str, Any] = {}
    for p in plugins:
        out.update(p.resolve(merged))
    return out


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


# ----------------------------------------------------------------------------- option checks
def check_number(
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    example: Any = None,
    allow_none: bool = False,
) -> Callable[[Any], Any]:
    """An :class:`Option` check: a finite number within the bounds."""

    def check(value: Any) -> Any:
        if value is None and allow_none:
            return None
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
            hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
            span = (
                f"in {lo}, {hi}"
                if low is not None and high is not None
                else (f"above {low:g}" if low is not None else f"at most {high:g}")
            )
            flag = "--" + name.replace("_", "-")
            raise CurateError(
                f"{name} must be a number {span}, got {value!r}",
                hint=f"use for example {flag} {example}" if example is not None else None,
            )
        return float(value)

    return check


def check_flag(name: str) -> Callable[[Any], Any]:
    """An :class:`Option` check: ``True`` or ``False``."""

    def check(value: Any) -> Any:
        if not isinstance(value, bool):
            raise CurateError(
                f"{name} must be true or false, got {value!r}",
                hint=f"use --{name.replace('_', '-')} (a flag) or --option {name}=true",
            )
        return value

    return check


def check_choice(name: str, choices: Sequence[str]) -> Callable[[Any], Any]:
    """An :class:`Option` check: one of ``choices``."""

    def check(value: Any) -> Any:
        if value not in choices:
            raise CurateError(
                f"{name} must be one of {', '.join(choices)}, got {value!r}",
                hint=f"use --{name.replace('_', '-')} {choices[0]}",
            )
        return value

    return check
