"""Moved: the Ray engine is :mod:`curate.ray_engine`. This module keeps the old import
path (``from curate.distributed import RayEngine``) working."""

from curate.ray_engine import INSTALL_HINT, LOCAL, RayEngine, available

__all__ = ["INSTALL_HINT", "LOCAL", "RayEngine", "available"]
