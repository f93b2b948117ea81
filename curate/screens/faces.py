"""Face screens: reject images whose face is turned aside, occluded, or not found.

Per image (the ``faces`` screen, level ``image``):

* ``side_face`` when ``|yaw| > max_yaw`` degrees (also for a face the detector found
  without landmarks: its yaw is read from the detector's keypoints);
* ``occluded`` when ``occlusion > max_occlusion`` (also for a face the detector found
  without landmarks: its crop is aligned by the detector's keypoints);
* ``no_face`` when no face is found (or the file cannot be decoded), unless it is a side
  face or occluded, and ``no_face="reject"``; with ``no_face="keep"`` such images pass.

The numbers come from :func:`curate.faces.analyze_faces`; ``docs/faces.md`` explains
them and how the defaults were chosen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.cache import OFF
from curate.errors import CurateError
from curate.faces.analyze import COLUMNS, analyze_faces
from curate.faces.occlusion import OCCLUSION_THRESHOLD
from curate.screens import register
from curate.screens.base import Option, Reason, Screen, ScreenContext, ScreenOutput, join_codes

SIDE_FACE = "side_face"
OCCLUDED = "occluded"
NO_FACE = "no_face"
NO_FACE_CHOICES = ("reject", "keep")

# |yaw| (calibrated degrees, curate.faces.geometry.calibrated_yaw) above which a face is a
# side face. Large pose is yaw above 30 degrees (the published definition; the audits'
# "clearly turned"); the default sits below it so that it catches most of those faces
# although the estimate scatters by about 6 degrees: the largest multiple of 5 that catches
# at least 80% of the clearly turned faces found on the dev parts of both blind pose audits
# (bench/derivations/yaw_calibration.py, docs/faces.md).
DEFAULT_MAX_YAW = 25.0
# The occlusion network's own threshold (curate.faces.occlusion.OCCLUSION_THRESHOLD),
# chosen on the dev hand labels only; face-conditions is not used to choose it.
DEFAULT_MAX_OCCLUSION: float = OCCLUSION_THRESHOLD

OUTPUT_COLUMNS = ["image_id", *COLUMNS, "face_reject", "face_reason"]


def screen_faces(
    images: pd.DataFrame,
    *,
    cache_dir: str | os.PathLike[str] | Path,
    max_yaw: float = DEFAULT_MAX_YAW,
    max_occlusion: float | None = None,
    no_face: str = "reject",
    face_model: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    engine: Any = None,
    analysis: pd.DataFrame | None = None,
) -> pd.DataFrame:
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
    face_model, progress, workers, engine:
        Passed to :func:`curate.faces.analyze_faces`.
    analysis:
        The :func:`curate.faces.analyze_faces` rows of these images (in their order) when
        they were already made in this run (the representations' pass): used instead of
        analysing again, which matters where there is no cache.

    Returns
    -------
    pandas.DataFrame
        One row per image, in input order, with the columns of ``faces.parquet``
        (``docs/tables.md``): :data:`OUTPUT_COLUMNS`.
    """
    missing = [c for c in ("image_id", "path", "sha256") if c not in images.columns]
    if missing:
        raise CurateError(
            f"images table has no column {', '.join(map(repr, missing))}",
            hint="pass the rows of images.parquet written by `curate build-tuples`",
        )
    max_occ = check_thresholds(max_yaw, max_occlusion, no_face)
    if analysis is None:
        analysis = analyze_faces(
            images["path"].tolist(),
            images["sha256"].tolist(),
            cache_dir=cache_dir,
            face_model=face_model,
            workers=workers,
            progress=progress,
            engine=engine,
        )
    elif (
        len(analysis) != len(images)
        or (analysis["path"].to_numpy() != images["path"].to_numpy()).any()
    ):
        raise ValueError("analysis rows must be those of images, in their order")
    analysis = analysis[[c for c in analysis.columns if c != "image_id"]].reset_index(drop=True)
    analysis.insert(0, "image_id", images["image_id"].to_numpy(dtype=np.int64))
    return face_verdicts(analysis, max_yaw=max_yaw, max_occlusion=max_occ, no_face=no_face)


def check_thresholds(max_yaw: float, max_occlusion: float | None, no_face: str) -> float:
    """Validate the screen's settings; return the effective ``max_occlusion``."""
    if not (isinstance(max_yaw, (int, float)) and math.isfinite(max_yaw) and 0 < max_yaw <= 180):
        raise CurateError(
            f"max_yaw must be a number of degrees in (0, 180], got {max_yaw!r}",
            hint=f"use --max-yaw {DEFAULT_MAX_YAW:g}",
        )
    max_occ = DEFAULT_MAX_OCCLUSION if max_occlusion is None else max_occlusion
    if not (isinstance(max_occ, (int, float)) and math.isfinite(max_occ) and 0 <= max_occ <= 1):
        raise CurateError(
            f"max_occlusion must be between 0 and 1, got {max_occlusion!r}",
            hint=f"use --max-occlusion {DEFAULT_MAX_OCCLUSION:g}",
        )
    if no_face not in NO_FACE_CHOICES:
        raise CurateError(
            f"no_face must be one of {', '.join(NO_FACE_CHOICES)}, got {no_face!r}",
            hint="use --no-face reject (real photos) or --no-face keep",
        )
    return float(max_occ)


def face_verdicts(
    analysis: pd.DataFrame,
    *,
    max_yaw: float = DEFAULT_MAX_YAW,
    max_occlusion: float | None = None,
    no_face: str = "reject",
) -> pd.DataFrame:
    """Add ``face_reject`` and ``face_reason`` to a face-analysis table.

    ``face_reason`` is None for a kept image, else the ``;``-joined codes in the order
    ``side_face``, ``occluded``, ``no_face``.
    """
    max_occ = check_thresholds(max_yaw, max_occlusion, no_face)
    found = analysis["face_found"].fillna(False).astype(bool).to_numpy()
    yaw = analysis["yaw"].astype("float64").to_numpy()
    occ = analysis["occlusion"].astype("float64").to_numpy()
    # a face detected without landmarks carries the yaw of its detector keypoints and the
    # occlusion of its crop aligned by them: a turned one is a side face, a covered one
    # occluded, whatever --no-face says (curate.faces.landmarks.missed_face)
    side = np.abs(np.nan_to_num(yaw, nan=0.0)) > max_yaw
    occluded = np.nan_to_num(occ, nan=0.0) > max_occ
    lost = ~found & ~side & ~occluded & (no_face == "reject")
    reasons = join_codes([(SIDE_FACE, side), (OCCLUDED, occluded), (NO_FACE, lost)])
    out = analysis.copy()
    out["face_reject"] = side | occluded | lost
    out["face_reason"] = pd.Series(reasons, index=out.index, dtype="object")
    return out[[c for c in OUTPUT_COLUMNS if c in out.columns]]


REJECTS_BY_CLASS_COLUMNS = ["label", "images", "rejected", "share", SIDE_FACE, OCCLUDED, NO_FACE]


def rejects_by_class(faces: pd.DataFrame, labels: Any) -> pd.DataFrame:
    """Face rejections per expression class, so a bias shows at once (a screen that
    rejects grimaces as occluded, say): one row per label in sorted order, then ``all``.

    ``faces``: :func:`face_verdicts` rows (``face_reject``, ``face_reason``); ``labels``:
    one label per row. Columns :data:`REJECTS_BY_CLASS_COLUMNS`: ``images``, ``rejected``
    (face-rejected images), ``share`` (rejected / images) and, per reason, the images
    rejected for it (an image can have several reasons).
    """
    reason = faces["face_reason"].astype("string").fillna("").to_numpy()
    df = pd.DataFrame(
        {
            "label": pd.Series(labels, dtype="string").fillna("(none)").to_numpy(),
            "rejected": faces["face_reject"].fillna(False).astype(bool).to_numpy(),
        }
    )
    for code in (SIDE_FACE, OCCLUDED, NO_FACE):
        df[code] = [code in r.split(";") for r in reason]
    rows = []
    for label, g in [*sorted(df.groupby("label", sort=True)), ("all", df)]:
        n = len(g)
        rows.append(
            {
                "label": label,
                "images": n,
                "rejected": int(g["rejected"].sum()),
                "share": float(g["rejected"].mean()) if n else float("nan"),
                **{c: int(g[c].sum()) for c in (SIDE_FACE, OCCLUDED, NO_FACE)},
            }
        )
    return pd.DataFrame(rows, columns=REJECTS_BY_CLASS_COLUMNS)


def face_score(faces: pd.DataFrame, *, max_yaw: float, max_occlusion: float) -> np.ndarray:
    """How far each face is past its thresholds: ``max(|yaw| / max_yaw, occlusion / max_occlusion)``.

    Above 1 means rejected as a side face or as occluded; NaN where no face was found.
    """
    yaw = np.abs(faces["yaw"].astype("float64").to_numpy()) / max_yaw
    occ = faces["occlusion"].astype("float64").to_numpy() / max(max_occlusion, 1e-12)
    with np.errstate(invalid="ignore"):
        return np.fmax(yaw, occ)


def _check_max_yaw(value: float) -> float:
    check_thresholds(value, None, "reject")
    return float(value)


def _check_max_occlusion(value: float | None) -> float:
    return check_thresholds(DEFAULT_MAX_YAW, value, "reject")


def _check_no_face(value: str) -> str:
    check_thresholds(DEFAULT_MAX_YAW, None, value)
    return value


def _check_face_model(value: object) -> str | None:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise CurateError(
            f"face_model must be a file path, got {value!r}",
            hint="pass --face-model FILE (a face_landmarker.task), or leave it out",
        )
    return None if value is None else str(value)


@register
class FaceScreen(Screen):
    """Side faces, occluded faces and images without a face (:func:`screen_faces`)."""

    name = "faces"
    order = 10
    level = "image"
    column_prefix = "face"
    summary = "head turned beyond --max-yaw, face occluded, or no face found"
    reasons = (
        Reason(
            SIDE_FACE, "side face", "#ff7f0e", "the head is turned further than --max-yaw degrees"
        ),
        Reason(
            OCCLUDED,
            "occluded",
            "#9467bd",
            "the occlusion score is above --max-occlusion (hands, masks, sunglasses, ...)",
        ),
        Reason(
            NO_FACE,
            "no face",
            "#7f7f7f",
            "the landmarker found no face (or the file could not be decoded); --no-face keep lets them pass",
        ),
    )
    options = (
        Option(
            "max_yaw",
            DEFAULT_MAX_YAW,
            "Reject faces turned further than this many degrees (side_face).",
            _check_max_yaw,
        ),
        Option(
            "max_occlusion",
            DEFAULT_MAX_OCCLUSION,
            "Reject faces whose occlusion score (0-1) is above this (occluded; docs/faces.md).",
            _check_max_occlusion,
        ),
        Option(
            "no_face",
            "reject",
            "What to do with images where no face is found: reject or keep.",
            _check_no_face,
            choices=("reject", "keep"),
        ),
        Option(
            "face_model",
            None,
            "Face landmark model file (default: the packaged or cached one).",
            _check_face_model,
        ),
    )
    skip_help = "Do not run the face screens."
    skip_aliases = ("skip_face_screens",)
    progress_stages = {"faces": "face screens"}
    report_title = "Faces"
    suspect_columns = (
        "face_found",
        "yaw",
        "occlusion",
        "occlusion_any",
        "face_reject",
        "face_reason",
    )
    files = ("faces.parquet",)

    def run(self, ctx: ScreenContext) -> ScreenOutput:
        s = ctx.settings
        progress = ctx.progress
        faces = screen_faces(
            ctx.images,
            cache_dir=ctx.cache_dir if ctx.cache_dir is not None else OFF,
            max_yaw=s["max_yaw"],
            max_occlusion=s["max_occlusion"],
            no_face=s["no_face"],
            face_model=s["face_model"],
            progress=(lambda done, total: progress("faces", done, total)) if progress else None,
            engine=ctx.engine,
            analysis=ctx.shared.get("faces"),
        )
        faces = faces.reset_index(drop=True)
        if not np.array_equal(faces["image_id"].to_numpy(), ctx.images["image_id"].to_numpy()):
            raise CurateError("the face screen returned rows out of order")
        score = face_score(faces, max_yaw=s["max_yaw"], max_occlusion=s["max_occlusion"])
        artifacts: dict[str, Any] = {}
        if "label" in ctx.images.columns:  # JSON-ready, for the CLI summary
            artifacts["rejects_by_class"] = rejects_by_class(faces, ctx.images["label"]).to_dict(
                "records"
            )
        return ScreenOutput(
            score=score,
            reject=faces["face_reject"].to_numpy(dtype=bool),
            reason=faces["face_reason"].to_numpy(dtype=object),
            table=faces,
            artifacts=artifacts,
        )

    def report(self, run: Any, ctx: Any) -> list[Any] | None:
        from curate.report.render import faces_body

        return faces_body(run)

    def caption(self, row, code: str) -> list[str]:
        yaw, occ = row.get("yaw"), row.get("occlusion")
        return [
            d
            for d in (
                f"yaw {yaw:.0f}\u00b0" if isinstance(yaw, float) and not math.isnan(yaw) else None,
                f"occlusion {occ:.2f}" if isinstance(occ, float) and not math.isnan(occ) else None,
            )
            if d
        ]

    def outputs(self, out: ScreenOutput, ctx: ScreenContext) -> dict[str, pd.DataFrame]:
        return {"faces.parquet": out.table}
