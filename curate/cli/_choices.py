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


RAY_HELP = (
    "Run embedding and face analysis as Ray Data jobs: auto (the cluster of this machine: "
    "`ray start` or RAY_ADDRESS), local (a Ray instance started here) or HOST:PORT. "
    "Same caches and results as without it; needs curate[ray]."
)
RAY_ACTORS_HELP = (
    "With --ray: model copies (default: one per GPU of the cluster, else one per CPU)."
)


def ray_engine(address: str | None, actors: int | None, device: str = "auto"):
    """The :class:`curate.ray_engine.RayEngine` of ``--ray`` (None without it)."""
    if address is None:
        return None
    from curate.ray_engine import RayEngine

    return RayEngine(address=address, actors=actors, device=device)
