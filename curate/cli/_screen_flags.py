"""The flags of ``curate screen`` that come from the registries: every registered
screen's options (``--max-yaw``, ``--alpha-label``, ..., a plug-in screen's own) and its
``--skip-<name>-screen``, and every representation's options (a plug-in's), with the
defaults, help and choices the plug-in declares (:class:`curate.plugins.Option`), plus the
earlier names of skip options as hidden, deprecated aliases (``--skip-face-screens``)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from curate import representations
from curate import screens as registry
from curate.errors import CurateError, CurateWarning
from curate.io import loads_json
from curate.plugins import Option

F = TypeVar("F", bound=Callable[..., Any])
_ALIAS_PREFIX = "deprecated__"


def _param(o: Option) -> inspect.Parameter:
    """The command-line parameter of one screen option, with the screen's default, help and
    choices (an on/off flag for a bool)."""
    kind: Any
    if isinstance(o.default, bool):
        decl = o.flag if not o.default else f"{o.flag}/--no-{o.flag[2:]}"
        info = typer.Option(decl, help=o.help, show_default=o.default)
        kind = bool
    elif o.choices:
        kind = Enum(f"{o.name}_choices", {c: c for c in o.choices}, type=str)  # type: ignore[misc,no-redef]
        info = typer.Option(o.flag, help=o.help)
    else:
        kind = type(o.default) if isinstance(o.default, (int, float)) else str
        info = typer.Option(o.flag, help=o.help)
    default = kind(o.default) if o.choices and o.default is not None else o.default
    if o.default is None:
        kind = kind | None
    return inspect.Parameter(
        o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info]
    )


def _alias_param(old: str, new: str) -> inspect.Parameter:
    info = typer.Option(
        "--" + old.replace("_", "-"), hidden=True, help=f"Deprecated: --{new.replace('_', '-')}."
    )
    return inspect.Parameter(
        _ALIAS_PREFIX + old,
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, info],
    )


def declared_options() -> dict[str, Option]:
    """The options of every registered representation, then of every screen in run order."""
    reps, screens = representations.options(), registry.options()
    both = sorted(set(reps) & set(screens))
    if both:
        raise TypeError(
            f"option(s) {', '.join(both)} are declared by a representation and a screen"
        )
    return {**reps, **screens}


def screen_flags(fn: F) -> F:
    """Give ``fn`` (a command taking ``**screen_settings``) one keyword parameter per screen
    or representation option with a flag (``Option.cli``), and the hidden deprecated aliases."""
    sig = inspect.signature(fn, eval_str=True)
    fixed = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in fixed}
    flagged = [o for o in declared_options().values() if o.cli and o.name not in taken]
    aliases = [_alias_param(old, new) for old, new in registry.aliases().items()]
    fn.__signature__ = sig.replace(parameters=[*fixed, *map(_param, flagged), *aliases])  # type: ignore[attr-defined]
    return fn


def given_screen_options(values: Mapping[str, Any], pairs: Sequence[str]) -> dict[str, Any]:
    """The screen and representation options given on the command line: the flags whose
    value is not the plug-in's default and the ``--option NAME=VALUE`` pairs; an old flag
    name is read as its name now, with a warning."""
    known = declared_options()
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith(_ALIAS_PREFIX):
            old = name[len(_ALIAS_PREFIX) :]
            if value:
                new = registry.aliases()[old]
                warnings.warn(
                    f"--{old.replace('_', '-')} is deprecated: use --{new.replace('_', '-')}",
                    CurateWarning,
                    stacklevel=2,
                )
                out[new] = True
            continue
        if isinstance(value, Enum):
            value = value.value
        if name not in known or value != known[name].default:
            out[name] = value
    for name, value in parse_options(pairs).items():
        name = registry.aliases().get(name, name)
        if name in out:
            raise CurateError(
                f"--option {name}=... repeats --{name.replace('_', '-')}",
                hint="give the option once",
            )
        out[name] = value
    return out


def parse_options(pairs: Sequence[str]) -> dict[str, object]:
    """``NAME=VALUE`` pairs of ``--option``; values read as JSON when they parse (numbers,
    true/false, null), else as text."""
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise CurateError(
                f"--option {pair!r} is not NAME=VALUE", hint="for example --option min_side=24"
            )
        try:
            out[name] = loads_json(text)
        except ValueError:
            out[name] = text
    return out
