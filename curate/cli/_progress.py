"""The progress bars of every command: one rich bar per stage, with done/total, a rate or
an info text, and the time left."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from curate.cli._app import console, safe


class StageBars:
    """Bars added as stages report; see :func:`stage_bars`. Nothing is drawn before the
    first report, so an error raised before any work prints alone."""

    def __init__(self, labels: Mapping[str, str], unit: str) -> None:
        self._labels, self._unit = labels, unit
        self._bar: Progress | None = None
        self._tasks: dict[str, tuple[TaskID, float, int]] = {}

    def update(self, stage: str, done: int, total: int, text: str | None = None) -> None:
        """Move ``stage``'s bar to ``done`` of ``total``; ``text`` replaces the rate (items
        per second since the stage's first report, so items counted at once, such as
        cached ones, do not inflate it)."""
        if self._bar is None:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[cyan]{task.fields[info]}"),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
        if stage not in self._tasks:
            label = safe(self._labels.get(stage, stage))
            self._tasks[stage] = (
                self._bar.add_task(label, total=total, info=""),
                time.perf_counter(),
                done,
            )
        task, t0, first = self._tasks[stage]
        if text is None:
            dt = time.perf_counter() - t0
            rate = (done - first) / dt if dt > 0 else 0.0
            text = (
                f"{rate:,.1f} {self._unit}/s"
                if 0 < rate < 100
                else f"{rate:,.0f} {self._unit}/s"
                if rate
                else ""
            )
        self._bar.update(task, completed=done, total=total, info=text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextlib.contextmanager
def stage_bars(labels: Mapping[str, str], unit: str = "images") -> Iterator[StageBars]:
    """Bars for a library call that reports ``progress(stage, done, total, ...)``; ``labels``
    names the stages (an unnamed stage shows its own name)."""
    bars = StageBars(labels, unit)
    try:
        yield bars
    finally:
        bars.close()


@contextlib.contextmanager
def rate_bar(label: str, unit: str = "images") -> Iterator[Callable[[int, int], None]]:
    """One bar with done/total, items per second and time left.

    Yields the ``progress(done, total)`` callback that library functions accept.
    """
    with stage_bars({"": label}, unit) as bars:
        yield lambda done, total: bars.update("", done, total)
