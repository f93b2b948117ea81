"""Choices shared by several commands (one definition each)."""

from __future__ import annotations

from enum import Enum


class KindOpt(str, Enum):
    """Tuple kind."""

    triplet = "triplet"
    quadruplet = "quadruplet"


class NullOpt(str, Enum):
    """How the null's dimension (or mean and spread) is chosen."""

    class_empirical = "class_empirical"
    class_ = "class"
    theory = "theory"
    effective = "effective"
    empirical = "empirical"
