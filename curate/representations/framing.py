"""Face framing for the backbone: when faces fill only part of the pictures
(head-and-shoulders portraits, crops with a wide margin), the backbone sees each face cut
out around its landmarks, framed like the tight crops it was trained on.

``auto`` (the default) frames the faces when the landmarks' box of the median face covers
less than :data:`FRAME_SHARE` of the picture's side; ``face`` always, ``full`` never. The
crop is a square around the landmarks' box, :data:`FACE_MARGIN` times its longer side and
lifted by :data:`FACE_LIFT` of that side (the landmarks stop at the brows; a face crop holds
the forehead). An image without landmarks is seen whole. The choice and the share that made
it are recorded in ``run.json`` (``representation.framing``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError

FRAMINGS = ("auto", "face", "full")
# FER2013's 48x48 crops (what the bundled backbone learnt from): the landmarks' box covers
# about 0.9 of the side; the taiwanese-posed portraits about 0.7.
FRAME_SHARE = 0.8
FACE_MARGIN = 1.2
FACE_LIFT = 0.05


def check_framing(value: Any) -> str:
    if value not in FRAMINGS:
        raise CurateError(
            f"framing must be one of {', '.join(FRAMINGS)}, got {value!r}",
            hint="use --framing auto",
        )
    return str(value)


def frame_shares(analysis: pd.DataFrame, images: pd.DataFrame) -> np.ndarray:
    """Per image, the share of the picture's side its landmarks' box covers (the larger of
    width and height shares; NaN without landmarks or a known size)."""
    out = np.full(len(analysis), np.nan)
    width = pd.to_numeric(images.get("width"), errors="coerce") if "width" in images else None
    height = pd.to_numeric(images.get("height"), errors="coerce") if "height" in images else None
    for i, box in enumerate(analysis["face_box"].tolist()):
        if box is None or width is None or height is None:
            continue
        w, h = float(width.iloc[i]), float(height.iloc[i])
        if w > 0 and h > 0:
            out[i] = max((box[2] - box[0]) / w, (box[3] - box[1]) / h)
    return out


def crop_box(
    box: tuple[float, float, float, float], margin: float = FACE_MARGIN, lift: float = FACE_LIFT
) -> tuple[float, float, float, float]:
    """The square crop around a landmarks' box ``(x0, y0, x1, y1)`` (see module doc)."""
    x0, y0, x1, y1 = box
    side = margin * max(x1 - x0, y1 - y0)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1) - lift * side
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def decide(
    framing: str, analysis: pd.DataFrame, images: pd.DataFrame
) -> tuple[list[tuple[float, float, float, float] | None] | None, dict[str, Any]]:
    """The crop boxes to embed with (None: whole pictures) and the record of the choice."""
    shares = frame_shares(analysis, images)
    median = float(np.nanmedian(shares)) if np.isfinite(shares).any() else float("nan")
    use = framing == "face" or (framing == "auto" and np.isfinite(median) and median < FRAME_SHARE)
    boxes = (
        [crop_box(b) if b is not None else None for b in analysis["face_box"].tolist()]
        if use
        else None
    )
    record = {
        "setting": framing,
        "used": "face" if use else "full",
        "median_face_share": None if not np.isfinite(median) else round(median, 3),
        "frame_share_threshold": FRAME_SHARE,
        "margin": FACE_MARGIN,
        "lift": FACE_LIFT,
        "images_without_landmarks": int(sum(b is None for b in analysis["face_box"].tolist()))
        if use
        else None,
    }
    return boxes, record
