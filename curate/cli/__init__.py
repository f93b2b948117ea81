"""The ``curate`` command line: thin Typer wrappers over the library.

Each command lives in its own module under ``curate/cli/`` and registers itself on
:data:`app`; it parses options, calls one library function and renders the result.
A :class:`curate.errors.CurateError` becomes a red message and exit code 2.

Importing this package loads nothing: the command modules (pandas, typer, the library) are
imported when :func:`main` runs or :data:`app` is asked for. The face workers that ``curate
screen`` and ``curate faces`` spawn re-import the console script, which imports
:func:`main` from here; they must not pay for every command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    app: typer.Typer

# One entry per command module, in pipeline order (the order --help lists the commands).
COMMAND_MODULES = ("example", "build", "faces", "screen", "report", "finetune", "models")


def _registered() -> typer.Typer:
    """The Typer app with every command module imported (each registers itself on it)."""
    from curate.cli._app import app

    for name in COMMAND_MODULES:
        importlib.import_module(f"curate.cli.{name}")
    return app


def main() -> None:
    """Console-script entry point (:func:`curate.cli._app.main` on the full app)."""
    _registered()
    from curate.cli._app import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        return _registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
