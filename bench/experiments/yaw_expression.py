"""Does the calibrated yaw's nose term respond to expression? (issue 23)

On the colour studio portraits of ``taiwanese-posed`` (posed expressions, meant frontal), the
side-face screen rejects a disgust face. If a wrinkled nose or a raised lip moved the nose
tip between the cheeks, the nose's offset (``cheek_offset``) would grow with expression
while rigid points did not. This script measures, per expression class, the mean |offset|
along the eye line of a moving point (the nose tip, landmark 1) and of a rigid one (the
nose bridge between the eyes, 168) against several references (the outer cheeks 234/454
used by ``calibrated_yaw``, the temples 127/356, the forehead 54/284, the jaw 172/397, the
outer eye corners 33/263), with the disgust / neutral ratio of each, and the matrix's yaw
(a rigid fit of the whole mesh). A nose term that answered to expression would show a
larger ratio for the tip than for the bridge, and for the cheeks than for the other
references; a head turned away shows the same ratio everywhere, and in the matrix's yaw.

Usage::

    python -m bench.experiments.yaw_expression [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import DATA
from curate.faces.geometry import LEFT_EYE, RIGHT_EYE
from curate.faces.litert import LiteFaceFinder
from curate.faces.model_file import resolve_face_model
from curate.images import load_arrays

REFERENCES = {
    "cheeks": (234, 454),
    "temples": (127, 356),
    "forehead": (54, 284),
    "jaw": (172, 397),
    "eye corners": (33, 263),
}
POINTS = {"nose tip": 1, "nose bridge": 168}


def offset(pts: np.ndarray, point: int, ref: tuple[int, int]) -> float:
    """``point``'s place between the two ``ref`` landmarks along the eye line (as cheek_offset)."""
    axis = pts[list(RIGHT_EYE)].mean(axis=0) - pts[list(LEFT_EYE)].mean(axis=0)
    axis /= np.hypot(*axis)
    lo, hi = pts[ref[0]] @ axis, pts[ref[1]] @ axis
    return float((pts[point] @ axis - (lo + hi) / 2) / ((hi - lo) / 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    root = args.data / "taiwanese-posed"
    tw = pd.read_csv(root / "manifest.csv")
    finder = LiteFaceFinder(resolve_face_model(None))
    rows = []
    for p in tw["path"]:
        r = finder.find_face_in_array(*load_arrays(root / p))
        row = {"matrix yaw": abs(r.matrix_yaw), "calibrated yaw": abs(r.yaw)}
        if r.landmarks is not None:
            row |= {
                f"{n} / {k}": abs(offset(r.landmarks, i, ref))
                for n, i in POINTS.items()
                for k, ref in REFERENCES.items()
            }
        rows.append(row)
    d = pd.DataFrame(rows).assign(label=tw["label"])
    means = d.groupby("label").mean()
    pd.set_option("display.width", 200)
    print(
        f"mean |offset| per expression class ({int(d['nose tip / cheeks'].notna().sum())} faces with landmarks):"
    )
    print(means.T.round(3).to_string())
    print(
        "disgust / neutral: "
        + ", ".join(
            f"{c} {means.loc['disgust', c] / means.loc['neutral', c]:.2f}" for c in means.columns
        )
    )


if __name__ == "__main__":
    main()
