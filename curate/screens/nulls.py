"""Moved: the boundary's maths is :mod:`curate.stats.nulls`. This module keeps the old import
path (``curate.screens.nulls``) working: it is the same module object. It is no screen."""

import sys

from curate.stats import nulls

sys.modules[__name__] = nulls
