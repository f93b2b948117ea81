"""Face screens: reject images whose face is turned aside, occluded, or not found.

Per image (level ``image`` in :data:`curate.screens.SCREENS`):

* ``side_face`` when ``|yaw| > max_yaw`` degrees;
* ``occluded`` when ``occlusion > max_occlusion``;
* ``no_face`` when the landmarker finds no face (or the file cannot be decoded) and
  ``no_face="reject"``; with ``no_face="keep"`` such images pass.

The numbers come from :func:`curate.faces.analyze_faces`; ``docs/faces.md`` explains
them and how the defaults were chosen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.faces import COLUMNS, OCCLUSION_THRESHOLD, analyze_faces

SIDE_FACE = "side_face"
OCCLUDED = "occluded"
NO_FACE = "no_face"
NO_FACE_CHOICES = ("reject", "keep")

DEFAULT_MAX_YAW = 30.0
# Chosen on face-conditions: best F1 (occluded vs unflagged) among thresholds that reject
# at most 10% of unflagged faces; the only thing fitted on that benchmark (docs/faces.md).
DEFAULT_MAX_OCCLUSION: float = OCCLUSION_THRESHOLD

OUTPUT_COLUMNS = ["image_id", *COLUMNS, "face_reject", "face_reason"]


def screen_faces(images: pd.DataFrame, *, cache_dir: str | os.PathLike[str] | Path,
                 max_yaw: float = DEFAULT_MAX_YAW, max_occlusion: float | None = None,
                 no_face: str = "reject", face_model: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 workers: int | None = None) -> pd.DataFrame:
    """Analyse every image's face and give the face screens' verdict.

    Parameters
    ----------
    images:
        Rows of ``images.parquet`` (status ``ok``) with at least ``image_id``, ``path``
        and ``sha256``.
    cache_dir:
        Where analyses are cached by image hash (see :func:`curate.faces.analyze_faces`).
    max_yaw:
        Reject faces with ``|yaw|`` above this many degrees (``side_face``).
    max_occlusion:
        Reject faces with ``occlusion`` above this (``occluded``); default
        :data:`DEFAULT_MAX_OCCLUSION`.
    no_face:
        ``"reject"`` (reason ``no_face``) or ``"keep"`` images without a face.
    face_model, progress, workers:
        Passed to :func:`curate.faces.analyze_faces`.

    Returns
    -------
    pandas.DataFrame
        One row per image, in input order, with the columns of ``faces.parquet``
        (``docs/tables.md``): :data:`OUTPUT_COLUMNS`.
    """
    missing = [c for c in ("image_id", "path", "sha256") if c not in images.columns]
    if missing:
        raise CurateError(f"images table has no column {', '.join(map(repr, missing))}",
                          hint="pass the rows of images.parquet written by `curate build-tuples`")
    max_occ = check_thresholds(max_yaw, max_occlusion, no_face)
    analysis = analyze_faces(images["path"].tolist(), images["sha256"].tolist(),
                             cache_dir=cache_dir, face_model=face_model, workers=workers,
                             progress=progress)
    analysis.insert(0, "image_id", images["image_id"].to_numpy(dtype=np.int64))
    return face_verdicts(analysis, max_yaw=max_yaw, max_occlusion=max_occ, no_face=no_face)


def check_thresholds(max_yaw: float, max_occlusion: float | None, no_face: str) -> float:
    """Validate the screen's settings; return the effective ``max_occlusion``."""
    if not (isinstance(max_yaw, (int, float)) and math.isfinite(max_yaw) and 0 < max_yaw <= 180):
        raise CurateError(f"max_yaw must be a number of degrees in (0, 180], got {max_yaw!r}",
                          hint=f"use --max-yaw {DEFAULT_MAX_YAW:g}")
    max_occ = DEFAULT_MAX_OCCLUSION if max_occlusion is None else max_occlusion
    if not (isinstance(max_occ, (int, float)) and math.isfinite(max_occ) and 0 <= max_occ <= 1):
        raise CurateError(f"max_occlusion must be between 0 and 1, got {max_occlusion!r}",
                          hint=f"use --max-occlusion {DEFAULT_MAX_OCCLUSION:g}")
    if no_face not in NO_FACE_CHOICES:
        raise CurateError(f"no_face must be one of {', '.join(NO_FACE_CHOICES)}, got {no_face!r}",
                          hint="use --no-face reject (real photos) or --no-face keep")
    return float(max_occ)


def face_verdicts(analysis: pd.DataFrame, *, max_yaw: float = DEFAULT_MAX_YAW,
                  max_occlusion: float | None = None, no_face: str = "reject") -> pd.DataFrame:
    """Add ``face_reject`` and ``face_reason`` to a face-analysis table.

    ``face_reason`` is None for a kept image, else the ``;``-joined codes in the order
    ``side_face``, ``occluded``, ``no_face``.
    """
    max_occ = check_thresholds(max_yaw, max_occlusion, no_face)
    found = analysis["face_found"].fillna(False).astype(bool).to_numpy()
    yaw = analysis["yaw"].astype("float64").to_numpy()
    occ = analysis["occlusion"].astype("float64").to_numpy()
    side = found & (np.abs(np.nan_to_num(yaw, nan=0.0)) > max_yaw)
    occluded = found & (np.nan_to_num(occ, nan=0.0) > max_occ)
    lost = ~found & (no_face == "reject")
    reasons = [
        ";".join(code for code, hit in ((SIDE_FACE, s), (OCCLUDED, o), (NO_FACE, n)) if hit) or None
        for s, o, n in zip(side, occluded, lost, strict=True)
    ]
    out = analysis.copy()
    out["face_reject"] = side | occluded | lost
    out["face_reason"] = pd.Series(reasons, index=out.index, dtype="object")
    return out[[c for c in OUTPUT_COLUMNS if c in out.columns]]
