"""Moved: the boundary's maths is :mod:`curate.stats.statistical`. This module keeps the old import
path (``curate.screens.statistical``) working: it is the same module object. It is no screen."""

import sys

from curate.stats import statistical

sys.modules[__name__] = statistical
