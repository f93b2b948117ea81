"""The Typer application object, the console, and the error handling shared by commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from curate.errors import CurateError

app = typer.Typer(
    name="curate",
    help="Clean facial-expression training data before and during metric-learning fine-tuning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(stderr=False, highlight=False)


def _version_callback(value: bool) -> None:
    if value:
        from curate import __version__

        typer.echo(f"curate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Clean facial-expression training data before and during metric-learning fine-tuning."""

err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Turn a CurateError (and Ctrl-C) into a clear message and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CurateError as exc:
            err_console.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, soft_wrap=True)
            if exc.hint:
                err_console.print(f"[yellow]fix:[/] {escape(exc.hint)}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/]: outputs are written atomically, so no half-written file was left")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="curate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
