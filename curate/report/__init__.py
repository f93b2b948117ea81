"""The self-contained HTML screening report (``curate report``).

:func:`write_report` reads a ``curate screen`` output folder and writes one HTML file
with every figure, thumbnail and style inline and no script, so it opens from disk or
an e-mail attachment with no network.
"""

from __future__ import annotations

from curate.report.inputs import ScreenRun, load_screen_dir
from curate.report.render import render_html, write_report

__all__ = ["ScreenRun", "load_screen_dir", "render_html", "write_report"]
