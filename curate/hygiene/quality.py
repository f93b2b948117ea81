"""Unusable image quality: blank or near-constant, very dark or very bright, heavily
blurred, extreme aspect ratio, tiny source.

Scores are image statistics on the decoded grey image (values 0-255) and the source size;
the definitions follow CleanVision's image-property issues, re-derived here (no
dependency), and the defaults are documented with their measured flag rates in
``docs/hygiene.md``.

| column | definition | flagged when (default) | reason |
|---|---|---|---|
| ``quality_std`` | standard deviation of the grey values | ``< 3`` | ``blank`` |
| ``quality_entropy`` | Shannon entropy (bits) of the 256-bin grey histogram | ``< 3`` | ``blank`` |
| ``quality_p99`` | 99th percentile of grey / 255 | ``< 0.25`` | ``too_dark`` |
| ``quality_p05`` | 5th percentile of grey / 255 | ``> 0.90`` | ``too_bright`` |
| ``quality_edges`` | std of the 3 x 3 Laplacian (8-neighbour) response on the image scaled to at most 64 px | ``< 6`` | ``blurry`` |
| ``quality_aspect`` | ``min(w / h, h / w)`` of the source | ``< 0.35`` | ``odd_aspect`` |
| ``quality_min_side`` | ``min(w, h)`` of the source in pixels | ``< 24`` | ``too_small`` |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.hygiene.windows import area_matrix

BLANK = "blank"
TOO_DARK = "too_dark"
TOO_BRIGHT = "too_bright"
BLURRY = "blurry"
ODD_ASPECT = "odd_aspect"
TOO_SMALL = "too_small"
REASONS = (BLANK, TOO_DARK, TOO_BRIGHT, BLURRY, ODD_ASPECT, TOO_SMALL)
COLUMNS = (
    "quality_std",
    "quality_entropy",
    "quality_p99",
    "quality_p05",
    "quality_edges",
    "quality_aspect",
    "quality_min_side",
)
EDGE_MAX_SIDE = 64


@dataclass(frozen=True)
class QualityThresholds:
    """Flag thresholds (defaults: ``docs/hygiene.md``)."""

    min_std: float = 3.0
    min_entropy: float = 3.0
    min_p99: float = 0.25
    max_p05: float = 0.90
    min_edges: float = 6.0
    min_aspect: float = 0.35
    min_side: int = 24


def image_stats(
    gray: np.ndarray, width: int | None = None, height: int | None = None
) -> dict[str, float]:
    """The :data:`COLUMNS` of one grey image (``width``/``height``: source size, default its own)."""
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2 or g.size == 0:
        raise CurateError(f"expected a 2-D grey image, got shape {g.shape}")
    h, w = g.shape
    width = int(width or w)
    height = int(height or h)
    hist = np.bincount(np.clip(np.rint(g), 0, 255).astype(np.int64).ravel(), minlength=256)
    p = hist[hist > 0] / g.size
    return {
        "quality_std": float(g.std()),
        "quality_entropy": float(-(p * np.log2(p)).sum()),
        "quality_p99": float(np.percentile(g, 99) / 255.0),
        "quality_p05": float(np.percentile(g, 5) / 255.0),
        "quality_edges": edge_strength(g),
        "quality_aspect": float(min(width / height, height / width)),
        "quality_min_side": float(min(width, height)),
    }


def edge_strength(gray: np.ndarray) -> float:
    """Std of the 8-neighbour Laplacian on the image area-scaled to at most 64 px a side."""
    g = np.asarray(gray, dtype=np.float64)
    h, w = g.shape
    f = EDGE_MAX_SIDE / max(h, w)
    if f < 1:
        nh, nw = max(3, round(h * f)), max(3, round(w * f))
        g = (
            area_matrix(h, 0, h, nh).astype(np.float64)
            @ g
            @ area_matrix(w, 0, w, nw).T.astype(np.float64)
        )
    if min(g.shape) < 3:
        return 0.0
    c = g[1:-1, 1:-1]
    neigh = (
        g[:-2, :-2]
        + g[:-2, 1:-1]
        + g[:-2, 2:]
        + g[1:-1, :-2]
        + g[1:-1, 2:]
        + g[2:, :-2]
        + g[2:, 1:-1]
        + g[2:, 2:]
    )
    return float((8 * c - neigh).std())


def quality_table(stats: pd.DataFrame, thresholds: QualityThresholds | None = None) -> pd.DataFrame:
    """Add ``quality_reject`` (bool) and ``quality_reason`` (``;``-joined, null) to a stats table.

    A blank image is not also called dark, bright or blurry (one cause, one reason).
    """
    t = thresholds or QualityThresholds()
    missing = [c for c in COLUMNS if c not in stats.columns]
    if missing:
        raise CurateError(
            f"quality stats lack columns {missing}", hint="make rows with image_stats()"
        )
    blank = (stats.quality_std < t.min_std) | (stats.quality_entropy < t.min_entropy)
    flags = {
        BLANK: blank,
        TOO_DARK: ~blank & (stats.quality_p99 < t.min_p99),
        TOO_BRIGHT: ~blank & (stats.quality_p05 > t.max_p05),
        BLURRY: ~blank & (stats.quality_edges < t.min_edges),
        ODD_ASPECT: stats.quality_aspect < t.min_aspect,
        TOO_SMALL: stats.quality_min_side < t.min_side,
    }
    mat = np.stack([np.asarray(v, bool) for v in flags.values()], 1)
    names = np.array(list(flags))
    reason = [";".join(names[row]) if row.any() else None for row in mat]
    out = stats.copy()
    out["quality_reject"] = mat.any(1)
    out["quality_reason"] = pd.array(reason, dtype="string")
    return out
