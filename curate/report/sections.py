"""The report's sections of the registered plug-ins: each representation and screen renders
its own (:meth:`curate.plugins.Plugin.report`; a screen's default is :func:`reason_counts`, a
representation's none), and the report places them, the representations' first, then the
screens' in run order, between the rejections and the galleries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate import representations, screens
from curate.plugins import Plugin
from curate.report.html import Markup, chip, fmt_int, fmt_pct, note, section, table, tag
from curate.report.inputs import ScreenRun
from curate.report.thumbnails import Thumbnails
from curate.screens.base import Screen


@dataclass
class SectionContext:
    """What a screen's section may use besides the run: the report's thumbnails (shared,
    so an image is embedded once), the cap on gallery items and the seed of samples."""

    thumbs: Thumbnails
    max_items: int
    seed: int


def plugin_sections(run: ScreenRun, ctx: SectionContext) -> list[tuple[str, str, Markup]]:
    """``(anchor, title, section)`` of every registered representation, then screen (in run
    order), that has one."""
    out = []
    plugins: list[Plugin] = [*representations.registered(), *screens.registered()]
    for s in plugins:
        body = s.report(run, ctx)
        if body is not None:
            out.append(
                (
                    s.section_anchor,
                    s.section_title,
                    section(s.section_anchor, s.section_title, body),
                )
            )
    return out


def reason_counts(screen: Screen, run: ScreenRun) -> list[Any] | None:
    """The default section of a screen that ran: its summary, and per reason how many
    images (image screens) or tuples (tuple screens) it rejected. None when it did not run."""
    if screen.name not in (run.params.get("screens") or []):
        return None
    rows_table = run.suspect if screen.level == "image" else run.scores
    what = "images" if screen.level == "image" else "tuples"
    reason_col = screen.columns()[2]
    if rows_table is None or reason_col not in rows_table.columns:
        return [
            tag("p", screen.summary),
            note(f"the {reason_col} column is missing, so its verdicts are not shown"),
        ]
    reason = rows_table[reason_col].astype("string").fillna("")
    n = len(reason)
    rows = []
    for r in screen.reasons:
        k = int(reason.map(lambda v, code=r.code: code in str(v).split(";")).sum()) if n else 0
        rows.append((chip(r.code), fmt_int(k), fmt_pct(k / n if n else None), r.help))
    hit = int((reason != "").sum()) if n else 0
    return [
        tag(
            "p",
            f"{screen.summary[:1].upper()}{screen.summary[1:]}: {fmt_int(hit)} of {fmt_int(n)} "
            f"{what} rejected ({fmt_pct(hit / n if n else None)}).",
        ),
        table(["reason", what, "share", "what it means"], rows),
    ]


__all__ = ["SectionContext", "plugin_sections", "reason_counts"]
