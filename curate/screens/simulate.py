"""Moved: the boundary's maths is :mod:`curate.stats.simulate`. This module keeps the old import
path (``curate.screens.simulate``) working: it is the same module object. It is no screen."""

import sys

from curate.stats import simulate

sys.modules[__name__] = simulate
