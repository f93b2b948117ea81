"""Occlusion scored on the crop aligned by BlazeFace's keypoints, against the crop aligned by
the landmarks, on face-conditions faces that have both (issue 23, ``faces-10``).

A face BlazeFace detects without landmarks is aligned by the detector's eye, nose and mouth
keypoints instead (``curate.faces.geometry.align_by_keypoints``) and its occlusion scored
there. This checks that the keypoint crop ranks occlusion about as well: for every
face-conditions face with landmarks and a detection, ``occlusion_any`` on both crops,
AUROC against the benchmark's ``occluded`` flag (occluded vs unflagged for yaw and
occlusion, as ``bench_faces``), their correlation, and the share flagged past the default
``--max-occlusion`` on both crops, dev and holdout (``curate/faces/holdout.py``).

Usage::

    python -m bench.experiments.occlusion_keypoint_crop [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import DATA
from curate.faces.fit_occlusion import auroc
from curate.faces.geometry import align_by_keypoints, prepare_for_detection
from curate.faces.holdout import SHARES, is_holdout
from curate.faces.litert import DETECTOR_NMS_IOU, MIN_SCORE, LiteFaceFinder
from curate.faces.model_file import resolve_face_model
from curate.faces.occlusion import OcclusionModel
from curate.images import load_face_arrays
from curate.screens.faces import DEFAULT_MAX_OCCLUSION


def scored(data: Path) -> pd.DataFrame:
    """face-conditions labels with ``land`` and ``kp``: (occlusion, occlusion_any) on the
    landmark crop and on the keypoint crop (NaN where either is missing)."""
    labels = pd.read_csv(data / "face-conditions" / "labels.csv")
    finder = LiteFaceFinder(resolve_face_model(None))
    lm, model = finder.landmarker, OcclusionModel()
    rows = []
    for p in labels["path"]:
        rgb, gray = load_face_arrays(data / "face-conditions" / p)
        found = finder.find_face_in_array(rgb, gray)
        grey = rgb if rgb.ndim == 2 else np.ascontiguousarray(rgb[..., 0])
        prepared, pad, scale = prepare_for_detection(grey)
        boxes, kps, scores = lm.detections(prepared)
        top = lm.top_face(boxes, kps, scores, MIN_SCORE, DETECTOR_NMS_IOU)
        if not found.face_found or top is None:
            rows.append((np.nan,) * 4)
            continue
        kp = top[1] * prepared.shape[1::-1] / scale - pad
        rows.append((*model.score(found.aligned), *model.score(align_by_keypoints(gray, kp))))
    cols = ["land_policy", "land", "kp_policy", "kp"]
    out = pd.concat([labels, pd.DataFrame(rows, columns=cols)], axis=1)
    out["holdout"] = is_holdout("face-conditions/" + out["path"], SHARES["face-conditions"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    d = scored(ap.parse_args().data)
    d = d[d["kp"].notna()]
    unflagged = (d["yaw_over_30"] == 0) & (d["occluded"] == 0)
    print(
        f"face-conditions faces with landmarks and a detection: {len(d)}; occlusion_any on the "
        "landmark crop | the keypoint crop"
    )
    for part in ("dev", "holdout"):
        q = d[(d["holdout"] == (part == "holdout")) & ((d["occluded"] == 1) | unflagged)]
        y = (q["occluded"] == 1).to_numpy()
        clean = q[~y]
        print(
            f"  {part} ({len(q)}, {int(y.sum())} occluded): AUROC occluded vs unflagged "
            f"{auroc(y, q['land'].to_numpy()):.3f} | {auroc(y, q['kp'].to_numpy()):.3f}; "
            f"correlation {np.corrcoef(q['land'], q['kp'])[0, 1]:.3f}; unflagged faces past "
            f"--max-occlusion {DEFAULT_MAX_OCCLUSION:g} (occlusion) "
            f"{(clean['land_policy'] > DEFAULT_MAX_OCCLUSION).mean():.3f} | "
            f"{(clean['kp_policy'] > DEFAULT_MAX_OCCLUSION).mean():.3f}"
        )


if __name__ == "__main__":
    main()
