"""Moved: the boundary's maths is :mod:`curate.stats.fused`. This module keeps the old import
path (``curate.screens.fused``) working: it is the same module object. It is no screen."""

import sys

from curate.stats import fused

sys.modules[__name__] = fused
