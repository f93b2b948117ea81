"""The not-a-face screen: drawings, text, icons and blank frames, without a face detector.

The score is :func:`curate.hygiene.not_face.not_face_score` (the largest of three robust
z-scores against the data set itself); images above ``max_not_face`` are ``not_a_face``.
``docs/hygiene.md`` gives its AUROC on hand-labelled FER2013 non-faces, the flag rates on
real faces and how the threshold was chosen. The z-scores need the data set as their own
reference: with fewer than :data:`MIN_IMAGES` images the score is NaN and nothing is
rejected.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from curate.hygiene import not_face as nf
from curate.hygiene.thumbnails import decoded_for
from curate.screens import register
from curate.screens.base import (
    Option,
    Reason,
    Screen,
    ScreenContext,
    ScreenOutput,
    check_number,
    join_codes,
)

MIN_IMAGES = 200
FEATURE_COLUMNS = ("not_face_flat", "not_face_entropy", "not_face_face_space")


def not_face_table(
    thumbs: np.ndarray, *, max_score: float = nf.DEFAULT_MAX_SCORE, seed: int = 0
) -> pd.DataFrame:
    """Per thumbnail: the three signals (:data:`FEATURE_COLUMNS`), ``not_face_score`` and
    ``not_face_reject`` (score above ``max_score``); NaN scores for fewer than
    :data:`MIN_IMAGES` images."""
    n = len(thumbs)
    if n < MIN_IMAGES:
        nan = np.full(n, np.nan)
        return pd.DataFrame(
            {
                **{c: nan for c in FEATURE_COLUMNS},
                "not_face_score": nan,
                "not_face_reject": np.zeros(n, bool),
            }
        )
    feats = nf.not_face_features(thumbs, seed=seed)
    score = nf.not_face_score(feats)
    return pd.DataFrame(
        {
            "not_face_flat": feats["flat"],
            "not_face_entropy": feats["entropy"],
            "not_face_face_space": feats["face_space"],
            "not_face_score": score,
            "not_face_reject": score > max_score,
        }
    )


@register
class NotFaceScreen(Screen):
    """Images that are not faces (:func:`not_face_table`)."""

    name = "not_face"
    order = 30
    level = "image"
    summary = "drawings, text, icons and blank frames: not-a-face score above --max-not-face"
    reasons = (
        Reason(
            nf.NOT_A_FACE,
            "not a face",
            "#17becf",
            "the not-a-face score (flat, few grey levels, far from the data's face space) is "
            "above --max-not-face",
        ),
    )
    options = (
        Option(
            "max_not_face",
            nf.DEFAULT_MAX_SCORE,
            "Reject images whose not-a-face score (a robust z against the data set) is above this.",
            check_number("max_not_face", low=0, example=nf.DEFAULT_MAX_SCORE),
        ),
    )
    skip_help = "Do not run the not-a-face screen."
    report_title = "Not-a-face screen"
    progress_stages = {"hygiene": "decoding for the hygiene screens"}
    suspect_columns = FEATURE_COLUMNS

    def run(self, ctx: ScreenContext) -> ScreenOutput:
        thumbs = decoded_for(ctx.images, ctx.shared, ctx.progress).thumbs
        table = not_face_table(
            thumbs, max_score=ctx.settings["max_not_face"], seed=ctx.settings["seed"]
        )
        table.insert(0, "image_id", ctx.images["image_id"].to_numpy(np.int64))
        reject = table["not_face_reject"].to_numpy(bool)
        return ScreenOutput(
            score=table["not_face_score"].to_numpy(np.float64),
            reject=reject,
            reason=join_codes([(nf.NOT_A_FACE, reject)]),
            table=table,
            artifacts={"scored": len(thumbs) >= MIN_IMAGES},
        )

    def caption(self, row, code: str) -> list[str]:
        s = row.get("not_face_score")
        return [f"score {s:.1f}"] if isinstance(s, float) and not math.isnan(s) else []
