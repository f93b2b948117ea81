"""The review view's browser for the tests: :mod:`bench.common.browser` (shared with
``bench/speed/bench_report.py``) and the mark that skips a test without Chromium."""

from __future__ import annotations

import pytest

from bench.common.browser import missing, open_browser, wait_file, wait_ready

__all__ = ["missing", "needs_browser", "open_browser", "wait_file", "wait_ready"]

needs_browser = pytest.mark.skipif(missing() is not None, reason=missing() or "")
