"""The ``curate`` command line: thin Typer wrappers over the library.

Each command lives in its own module under ``curate/cli/`` and registers itself on
:data:`app`; it parses options, calls one library function and renders the result.
A :class:`curate.errors.CurateError` becomes a red message and exit code 2.
"""

from __future__ import annotations

# ruff: noqa: I001  (commands register in pipeline order, which --help shows)

from curate.cli._app import app, main  # noqa: F401

# Command modules register themselves on import; one line per command module.
from curate.cli import example  # noqa: E402,F401
from curate.cli import build  # noqa: E402,F401
from curate.cli import faces  # noqa: E402,F401
from curate.cli import screen  # noqa: E402,F401
from curate.cli import report  # noqa: E402,F401
from curate.cli import finetune  # noqa: E402,F401
from curate.cli import models  # noqa: E402,F401

__all__ = ["app", "main"]
