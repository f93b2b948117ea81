"""The quality screen: blank, very dark or bright, blurred, oddly shaped or tiny images.

Statistics and thresholds are :mod:`curate.hygiene.quality` (``docs/hygiene.md`` has the
definitions and the measured flag rates); each threshold is an option (``--option
quality_min_edges=4``). The score is how far an image is past its nearest threshold:
the largest of the ratios ``threshold / value`` (for the lower bounds) and ``value /
threshold`` (for ``quality_max_p05``), so above 1 means rejected, like the face score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from curate.hygiene import quality as q
from curate.hygiene.thumbnails import decoded_for
from curate.screens import register
from curate.screens.base import (
    Option,
    Reason,
    Screen,
    ScreenContext,
    ScreenOutput,
    check_number,
)

SCORE_CAP = 1000.0  # the score of an image whose statistic is 0 (a constant frame)
_T = q.QualityThresholds()
# option name -> (QualityThresholds field, statistic, lower bound?)
THRESHOLDS: dict[str, tuple[str, str, bool]] = {
    "quality_min_std": ("min_std", "quality_std", True),
    "quality_min_entropy": ("min_entropy", "quality_entropy", True),
    "quality_min_p99": ("min_p99", "quality_p99", True),
    "quality_max_p05": ("max_p05", "quality_p05", False),
    "quality_min_edges": ("min_edges", "quality_edges", True),
    "quality_min_aspect": ("min_aspect", "quality_aspect", True),
    "quality_min_side": ("min_side", "quality_min_side", True),
}
_HELP = {
    "quality_min_std": "Blank below this std of the grey values (0-255).",
    "quality_min_entropy": "Blank below this grey-histogram entropy (bits).",
    "quality_min_p99": "Too dark when the 99th grey percentile (0-1) is below this.",
    "quality_max_p05": "Too bright when the 5th grey percentile (0-1) is above this.",
    "quality_min_edges": "Blurry below this std of the Laplacian (image scaled to <= 64 px).",
    "quality_min_aspect": "Odd aspect when min(w/h, h/w) is below this.",
    "quality_min_side": "Too small when the shorter side of the source has fewer pixels.",
}


def thresholds_of(settings: Mapping[str, Any]) -> q.QualityThresholds:
    """The :class:`~curate.hygiene.quality.QualityThresholds` the options give."""
    return q.QualityThresholds(
        **{field: settings[name] for name, (field, _, _) in THRESHOLDS.items()}
    )


def quality_score(stats: pd.DataFrame, t: q.QualityThresholds) -> np.ndarray:
    """Per image, the largest ratio past a threshold (above 1: rejected; see the module)."""
    ratios = []
    for field, col, lower in THRESHOLDS.values():
        v = stats[col].to_numpy(np.float64)
        bound = float(getattr(t, field))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = bound / v if lower else v / bound
        ratios.append(np.where(np.isfinite(r), np.minimum(r, SCORE_CAP), SCORE_CAP))
    return np.maximum.reduce(ratios)


@register
class QualityScreen(Screen):
    """Unusable image quality (:func:`curate.hygiene.quality.quality_table`)."""

    name = "quality"
    order = 40
    level = "image"
    summary = "blank, very dark or bright, blurred, oddly shaped or tiny images"
    reasons = (
        Reason(
            q.BLANK,
            "blank",
            "#c7c7c7",
            "near-constant image: grey std below --option quality_min_std or entropy below "
            "quality_min_entropy",
        ),
        Reason(
            q.TOO_DARK,
            "too dark",
            "#3d3d3d",
            "the 99th grey percentile is below quality_min_p99 (almost no bright pixel)",
        ),
        Reason(
            q.TOO_BRIGHT,
            "too bright",
            "#dbdb8d",
            "the 5th grey percentile is above quality_max_p05 (almost no dark pixel)",
        ),
        Reason(
            q.BLURRY, "blurry", "#9edae5", "edge strength (Laplacian std) below quality_min_edges"
        ),
        Reason(
            q.ODD_ASPECT,
            "odd aspect",
            "#f7b6d2",
            "the source is much longer than wide (min(w/h, h/w) below quality_min_aspect)",
        ),
        Reason(
            q.TOO_SMALL,
            "too small",
            "#ad494a",
            "the source's shorter side is below quality_min_side pixels",
        ),
    )
    options = (
        *(
            Option(
                name,
                float(getattr(_T, field)),
                _HELP[name],
                check_number(name, low=0, example=getattr(_T, field)),
                cli=False,
            )
            for name, (field, _, _) in THRESHOLDS.items()
        ),
    )
    skip_help = (
        "Do not run the image-quality screen. Its thresholds: --option quality_min_edges=4 etc. "
        "(docs/hygiene.md)."
    )
    progress_stages = {"hygiene": "decoding for the hygiene screens"}
    suspect_columns = q.COLUMNS

    def run(self, ctx: ScreenContext) -> ScreenOutput:
        t = thresholds_of(ctx.settings)
        stats = decoded_for(ctx.images, ctx.shared, ctx.progress).stats
        table = q.quality_table(stats, t)
        table.insert(0, "image_id", ctx.images["image_id"].to_numpy(np.int64))
        reason = table["quality_reason"].astype(object).where(table["quality_reason"].notna(), None)
        return ScreenOutput(
            score=quality_score(stats, t),
            reject=table["quality_reject"].to_numpy(bool),
            reason=reason.to_numpy(dtype=object),
            table=table,
        )

    def caption(self, row, code: str) -> list[str]:
        def num(col: str, fmt: str) -> str | None:
            v = row.get(col)
            return fmt.format(v) if isinstance(v, float) and not math.isnan(v) else None

        shown = {
            q.BLANK: [num("quality_std", "std {:.1f}"), num("quality_entropy", "{:.1f} bits")],
            q.TOO_DARK: [num("quality_p99", "p99 {:.2f}")],
            q.TOO_BRIGHT: [num("quality_p05", "p05 {:.2f}")],
            q.BLURRY: [num("quality_edges", "edges {:.1f}")],
            q.ODD_ASPECT: [num("quality_aspect", "aspect {:.2f}")],
            q.TOO_SMALL: [num("quality_min_side", "side {:.0f} px")],
        }.get(code, [])
        return [s for s in shown if s]
