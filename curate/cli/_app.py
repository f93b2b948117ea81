"""The Typer application object, the console, the error handling shared by commands, and
:func:`safe`, which every command passes the data it prints through."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import unicodedata
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from curate.errors import CurateError, CurateWarning

# Plain (click) help: at 80 columns it keeps option names whole, wraps help text in a
# wide column and shows on/off flags without a value (rich's panels did neither).
app = typer.Typer(
    name="curate",
    help="Clean facial-expression training data before and during metric-learning fine-tuning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

CACHE_DIR_HELP = (
    "Shared cache of embeddings and face analyses, keyed by image content "
    "(default: $CURATE_CACHE, else $XDG_CACHE_HOME/curate or ~/.cache/curate; "
    "'none' for no cache; docs/cache.md)."
)

console = Console(stderr=False, highlight=False)


def _version_callback(value: bool) -> None:
    if value:
        from curate import __version__

        typer.echo(f"curate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Show the version and exit.",
    ),
) -> None:
    """Clean facial-expression training data before and during metric-learning fine-tuning."""


err_console = Console(stderr=True, highlight=False)

FORCE_HELP = (
    "Replace a previous run of this command in --out that had other settings (the same settings "
    "re-run without it). Never needed for a new or empty folder; a folder holding anything else is "
    "never written."
)

# characters a terminal acts on: C0/C1 controls (ESC starts colour, cursor, OSC-8 link and
# title sequences), DEL, and the Unicode format characters that reorder or hide text
_SHOWN_AS_IS = {"\n"}


def safe(value: object, *, newlines: bool = False) -> str:
    """``value`` as text that is printed exactly as it reads: every control character
    (ESC, CR, BEL, backspace, DEL, C1, and Unicode format characters such as bidi
    overrides) becomes a visible ``\\xNN`` / ``\\uNNNN`` escape, and rich markup is
    escaped. Labels, file names, paths and messages from data go through it before they
    reach the terminal; ``newlines=True`` keeps line breaks (multi-line messages)."""
    text = str(value)
    out = []
    for ch in text:
        if (ch in _SHOWN_AS_IS and newlines) or not _acts_on_terminal(ch):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return escape("".join(out))


def _acts_on_terminal(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Turn a CurateError (and Ctrl-C) into a clear message and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.showwarning = (
            _show_warning  # warnings carry data (labels, paths): printed through safe()
        )
        os.environ.setdefault("MPLCONFIGDIR", _matplotlib_dir())
        try:
            kwargs = {k: _path_argument(v) for k, v in kwargs.items()}
            return fn(*args, **kwargs)
        except CurateError as exc:
            err_console.print(
                f"[bold red]error:[/] {safe(exc.message, newlines=True)}",
                markup=True,
                soft_wrap=True,
            )
            if exc.hint:
                err_console.print(
                    f"[yellow]fix:[/] {safe(exc.hint, newlines=True)}", soft_wrap=True
                )
            raise typer.Exit(code=2) from None
        except OSError as exc:
            from curate.io import DISK_ERRNOS, disk_error

            if exc.errno not in DISK_ERRNOS:
                raise
            err = disk_error(exc.filename or "a file", exc)
            err_console.print(f"[bold red]error:[/] {safe(err.message)}", soft_wrap=True)
            err_console.print(f"[yellow]fix:[/] {safe(err.hint)}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print(
                "[red]interrupted[/]: outputs are written atomically, so no half-written file was left"
            )
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


# One meaning per option name in every command: --out is an output folder, --out-file one
# output file, --json prints JSON on stdout instead of a table. Earlier spellings that
# broke this stay working as hidden aliases that warn (:func:`renamed`).
FOLDER_OUT = "--out names a folder in the other commands"


def renamed(
    new: Any, old: Any, *, new_flag: str, old_flag: str, command: str, why: str = ""
) -> Any:
    """The value of an option given under its name (``new_flag``) or under its earlier
    name (``old_flag``, a hidden alias: a deprecation warning, ``why`` in brackets); None
    when neither was given; both is an error."""
    if old is None:
        return new
    if new is not None:
        raise CurateError(
            f"{old_flag} and {new_flag} both given: {old_flag} is the earlier name of "
            f"{new_flag} in curate {command}",
            hint=f"give {new_flag} only",
        )
    warnings.warn(
        f"{old_flag} is deprecated in curate {command}: use {new_flag}"
        + (f" ({why})" if why else ""),
        CurateWarning,
        stacklevel=2,
    )
    return old


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Print a warning with its control characters escaped (a label with ESC in a
    plotting library's "glyph missing" warning must not reach the terminal raw); curate's
    own warnings as a yellow ``warning:`` line."""
    text = safe(str(message), newlines=True)
    if issubclass(category, CurateWarning):
        err_console.print(f"[yellow]warning:[/] {text}", soft_wrap=True)
    else:
        err_console.print(
            f"{safe(os.path.basename(filename))}:{lineno}: {category.__name__}: {text}",
            soft_wrap=True,
        )


def _matplotlib_dir() -> str:
    """Where matplotlib keeps its font cache and settings when ``$MPLCONFIGDIR`` is unset:
    inside curate's cache folder (docs/cache.md), never elsewhere in the user's home."""
    from curate.cache import default_cache_dir

    return str(default_cache_dir() / "matplotlib")


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{1,15}:/")


def _path_argument(value: Any) -> Any:
    """A path argument as the command reads it: ``~`` and ``~user`` expanded (also when the
    shell did not, because the path was quoted); a ``~user`` that names no user, or a URL
    given as a path, is a :class:`CurateError` (curate reads local files only)."""
    if isinstance(value, list):
        return [_path_argument(v) for v in value]
    if not isinstance(value, (str, Path)):
        return value
    text = str(value)
    if isinstance(value, Path) and _URL.match(text) and not Path(text).exists():
        url = _URL.sub(lambda m: m.group(0) + "/", text, count=1)
        raise CurateError(
            f"{url} looks like a URL; curate reads local files only",
            hint="download it first, then pass the local file or folder",
        )
    if text.startswith("~"):
        expanded = os.path.expanduser(text)
        if expanded == text:
            raise CurateError(
                f"{text}: {text.split('/')[0]} names no user on this machine, so '~' cannot "
                "be expanded",
                hint="write the path out in full",
            )
        return type(value)(expanded) if isinstance(value, Path) else expanded
    return value


def main() -> None:
    """Console-script entry point.

    Once the command is done, Ctrl-C (while worker pools and the interpreter shut down)
    ends the process at once with exit code 130, instead of Python's "Exception ignored
    in atexit callback" and exit code 0; every output is written by then.
    """
    try:
        app(prog_name="curate")
    finally:
        signal.signal(signal.SIGINT, _interrupted_at_exit)


def _interrupted_at_exit(signum: int, frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.write(2, b"interrupted while shutting down; every output was already written\n")
    os._exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
