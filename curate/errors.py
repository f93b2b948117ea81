"""The one exception type the library raises for bad input or bad settings.

The CLI turns a :class:`CurateError` into a red message and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CurateError(Exception):
    """A problem the user can fix: says what was wrong, where, and how to fix it.

    Parameters
    ----------
    message:
        What went wrong, naming the file, row and value where they are known.
    hint:
        How to fix it (the option to use, the column to add, ...).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nFix: {self.hint}"
        return self.message


class CurateWarning(UserWarning):
    """Something the user should know that did not stop the run (a damaged cache shard
    recomputed, a worker count capped, ...). The CLI prints it as a yellow ``warning:`` line."""
