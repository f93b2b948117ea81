"""The one shape every representation has.

A representation turns the images of a build into one vector per image, the space every
verdict about a label is made in (the label screen, the boundary's class-aware nulls,
``suggested_label``). It is a subclass of :class:`Representation` registered with
:func:`curate.representations.register` (one module per representation, like the
screens); :func:`curate.representations.choose.represent` computes the one asked for, or
with ``auto`` measures every candidate on the dataset's own labels and uses the best.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from curate.plugins import Plugin


@dataclass
class RepresentationContext:
    """What a representation sees: the images (``image_id``, ``path``, ``sha256``,
    ``label``, and ``subject`` when the build has it), the run's settings (``backbone``,
    ``weights``, ``device``, ``seed``, ``batch_size``, ``workers``, ``face_model``,
    ``framing``, and every representation's own options), the shared cache, progress and engine, and ``shared``: work one
    representation did that another reuses (the face analysis, the backbone's vectors)."""

    images: pd.DataFrame
    settings: dict[str, Any]
    cache_dir: Path | None = None
    progress: Callable[[str, int, int], None] | None = None
    engine: Any = None
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class Features:
    """One vector per image row (``vectors``, float32, before centring) and what made them.

    ``missing`` marks the rows the representation could not measure (a face without
    landmarks has no blendshapes); they hold an imputed vector (the mean of the others)
    and ``missing_reason`` says why. ``details`` is JSON-ready (for ``run.json``); ``notes``
    are sentences for the user."""

    name: str
    vectors: np.ndarray
    missing: np.ndarray
    missing_reason: list[str | None]
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # for the backbone: where the weights came from (run.json's inputs)
    weights_source: str | None = None
    weights_fingerprint: str | None = None
    random_weights: bool = False
    n_computed: int = 0
    n_cached: int = 0


class Representation(Plugin, ABC):
    """Base class of every representation. Subclasses set the class attributes and :meth:`compute`.

    Like a screen (:class:`curate.plugins.Plugin`), a representation may declare settings
    (:attr:`options`: flags of ``curate screen``, their values in ``ctx.settings`` and
    ``run.json``'s params) and a section of the report (:meth:`report`, default none;
    anchored at ``<name>-representation`` unless ``report_anchor`` says otherwise)."""

    kind: ClassVar[str] = "representation"
    summary: ClassVar[str]
    # measured by ``--representation auto`` (a representation that cannot run everywhere,
    # or that only makes sense asked for, sets False)
    candidate: ClassVar[bool] = True
    # needs the face analysis (the face landmarker) to run
    needs_faces: ClassVar[bool] = False
    # progress stages it reports through ``ctx.progress``, and their labels
    progress_stages: ClassVar[dict[str, str]] = {}

    @property
    def section_anchor(self) -> str:
        return self.report_anchor or f"{self.name}-representation"

    @abstractmethod
    def compute(self, ctx: RepresentationContext) -> Features:
        """One vector per row of ``ctx.images``."""


def impute_missing(vectors: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``vectors`` with the ``missing`` rows set to the mean of the others (zeros when all
    are missing): after centring they sit at the origin and speak for no class."""
    out = np.asarray(vectors, dtype=np.float32).copy()
    if missing.any():
        out[missing] = out[~missing].mean(axis=0) if (~missing).any() else 0.0
    return out


def block_normalize(vectors: np.ndarray, *, standardize: bool = False) -> np.ndarray:
    """Centre ``vectors`` (and with ``standardize`` divide each column by its standard
    deviation), then scale them to a root-mean-square row norm of 1, so blocks of
    different sizes and units weigh alike when concatenated."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    if standardize:
        x = x / (x.std(axis=0) + 1e-6)
    rms = float(np.sqrt(np.mean(np.einsum("ij,ij->i", x, x))))
    return (x / rms if rms > 0 else x).astype(np.float32)
