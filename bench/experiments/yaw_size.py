"""Does the yaw estimate depend on the size of the face? (issue 23)

The calibrated yaw (``curate.faces.geometry.calibrated_yaw``) was fitted on 48 px crops (both
blind pose audits). If the landmarker read turns lower on small crops than on large photos,
one calibration could not be right at every size. This script takes the colour studio
portraits of ``taiwanese-posed`` (256 px, the face about 120 px wide), finds each face, then
cuts a tight grey square around its landmarks (``--margin`` times the landmarks' box, as
FER2013 crops are cut), shrinks it to 48x48 with area averaging and finds the face again.
Printed per measure (the matrix's yaw, the nose's offset between the cheeks, the calibrated
yaw): the least-squares slope through 0 of the small crop's value on the large photo's,
their correlation, and the mean absolute value at each size, for the dev and holdout
performers apart (``curate/faces/holdout.py``). A slope of 1 means the same reading at both
sizes. The portraits are meant frontal: the turns measured are those the performers made,
up to about 28 degrees.

Usage::

    python -m bench.experiments.yaw_size [--data ../shared/data] [--margin 1.1 1.3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import DATA
from curate.faces.geometry import ALIGN_SIZE, cheek_offset
from curate.faces.holdout import holdout_subjects
from curate.faces.landmarks import quiet_native_stderr
from curate.faces.litert import LiteFaceFinder
from curate.faces.model_file import resolve_face_model
from curate.images import load_arrays

MEASURES = ("matrix yaw", "cheek offset", "calibrated yaw")


def small_crop(gray: np.ndarray, landmarks: np.ndarray, margin: float) -> np.ndarray:
    """A 48x48 square around the landmarks' box, ``margin`` times its larger side, area-averaged."""
    import cv2

    (x0, y0), (x1, y1) = landmarks.min(axis=0), landmarks.max(axis=0)
    half = margin * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    k = ALIGN_SIZE / (2 * half)
    m = np.float32([[k, 0, -(cx - half) * k], [0, k, -(cy - half) * k]])
    return cv2.warpAffine(
        gray, m, (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )


def readings(r) -> dict[str, float]:  # noqa: ANN001 - a FaceResult
    cheek = cheek_offset(r.landmarks) if r.landmarks is not None else np.nan
    return {"matrix yaw": r.matrix_yaw, "cheek offset": cheek, "calibrated yaw": r.yaw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--margin", type=float, nargs="+", default=[1.1, 1.3])
    args = ap.parse_args()
    root = args.data / "taiwanese-posed"
    tw = pd.read_csv(root / "manifest.csv")
    held = set(holdout_subjects(tw["subject"]))
    with quiet_native_stderr():
        finder = LiteFaceFinder(resolve_face_model(None))
    rows = []
    for p, subject in zip(tw["path"], tw["subject"], strict=True):
        rgb, gray = load_arrays(root / p)
        big = finder.find_face_in_array(rgb, gray)
        if big.landmarks is None:
            continue
        for margin in args.margin:
            crop = small_crop(gray, np.asarray(big.landmarks)[:, :2], margin)
            small = finder.find_face_in_array(np.repeat(crop[..., None], 3, axis=2), crop)
            if small.landmarks is None:
                continue
            rows.append(
                {
                    "part": "holdout" if subject in held else "dev",
                    "margin": margin,
                    **{f"{k} large": v for k, v in readings(big).items()},
                    **{f"{k} small": v for k, v in readings(small).items()},
                }
            )
    d = pd.DataFrame(rows)
    print(
        f"{len(tw)} portraits; found again as a 48x48 crop: "
        + ", ".join(f"margin {m}: {int((d['margin'] == m).sum())}" for m in args.margin)
    )
    for (margin, part), g in d.groupby(["margin", "part"]):
        cells = []
        for k in MEASURES:
            x, y = g[f"{k} large"].to_numpy(float), g[f"{k} small"].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            cells.append(
                f"{k}: slope {x @ y / (x @ x):.3f}, r {np.corrcoef(x, y)[0, 1]:.3f}, "
                f"mean |large| {np.abs(x).mean():.2f} / |small| {np.abs(y).mean():.2f}"
            )
        print(f"margin {margin}, {part} ({len(g)} faces):\n  " + "\n  ".join(cells))
    big = d[d["margin"] == args.margin[0]]
    turned = big[np.abs(big["calibrated yaw large"]) > 15]
    print(
        f"faces turned past 15 degrees on the large photo (margin {args.margin[0]}): {len(turned)}; "
        f"calibrated yaw large vs small: "
        + ", ".join(
            f"{a:.1f}/{b:.1f}"
            for a, b in zip(
                turned["calibrated yaw large"], turned["calibrated yaw small"], strict=True
            )
        )
    )


if __name__ == "__main__":
    main()
