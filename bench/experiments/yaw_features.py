"""Does more of the landmark geometry rank turned faces better than the calibrated yaw?

Runs the landmarker (litert) on every face of the three blind pose audits (as
``bench/derivations/yaw_calibration.py``) and on the colour studio portraits of
``taiwanese-posed`` (all meant frontal), computes 2D turn measures from the 478 landmarks,
and for each set of measures fits the calibration's ordinal model (frontal below 15 degrees,
clearly turned above 30, classes weighted alike) on the DEV parts of the three audits. Printed
per set: the fitted weights and logistic scale, the AUROC of ``|yaw|`` (clearly turned vs frontal,
faces found) on dev and holdout of each audit (the face audit's ``fer2013/val`` and
face-conditions parts apart; unweighted), and the largest readings on the colour portraits
(what a lower ``--max-yaw`` would start rejecting there); the same for the calibration in use.

Measures (each 0 for a frontal face, signed like the yaw; ``|.|`` is fitted):
``matrix_yaw`` (the transformation matrix's angle), ``cheek`` (the nose tip between the outer
cheeks along the eye line, ``cheek_offset``), ``bridge`` (the nose bridge, landmark 168, there),
``jaw`` (the nose tip between the jaw points 132 / 361), ``eyes`` (log ratio of the two eyes'
widths), ``cheek3`` (``cheek`` cubed: a bend for profiles), ``cheek_pitch`` (``|cheek| * |pitch| / 30``:
turned faces looking down).

Usage::

    python -m bench.experiments.yaw_features [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from bench.common.paths import DATA
from bench.derivations.yaw_calibration import BOUNDS, audited_faces
from curate.faces.fit_occlusion import auroc
from curate.faces.geometry import (
    LEFT_EYE,
    NOSE_TIP,
    RIGHT_EYE,
    YAW_FROM_CHEEKS,
    YAW_FROM_MATRIX,
    cheek_offset,
)
from curate.faces.litert import LiteFaceFinder
from curate.faces.model_file import resolve_face_model
from curate.images import load_arrays

SETS = {
    "matrix_yaw + cheek (the form in use), refitted": ["matrix_yaw", "cheek"],
    "matrix_yaw alone": ["matrix_yaw"],
    "cheek alone": ["cheek"],
    "+ bridge": ["matrix_yaw", "cheek", "bridge"],
    "+ jaw": ["matrix_yaw", "cheek", "jaw"],
    "+ eyes": ["matrix_yaw", "cheek", "eyes"],
    "+ cheek3": ["matrix_yaw", "cheek", "cheek3"],
    "+ cheek_pitch": ["matrix_yaw", "cheek", "cheek_pitch"],
    "all": ["matrix_yaw", "cheek", "bridge", "jaw", "eyes", "cheek3", "cheek_pitch"],
}


def along_eyes(pts: np.ndarray, point: int, left: int, right: int) -> float:
    """Where ``point`` sits between ``left`` and ``right`` along the eye line (as cheek_offset)."""
    axis = pts[list(RIGHT_EYE)].mean(axis=0) - pts[list(LEFT_EYE)].mean(axis=0)
    axis = axis / max(float(np.hypot(*axis)), 1e-9)
    p, lo, hi = pts[point] @ axis, pts[left] @ axis, pts[right] @ axis
    half = (hi - lo) / 2
    return float((p - (lo + hi) / 2) / half) if half > 0 else 0.0


def measures(paths: pd.Series, data: Path) -> pd.DataFrame:
    finder = LiteFaceFinder(resolve_face_model(None))
    rows = []
    for p in paths:
        rgb, gray = load_arrays(data / p)
        r = finder.find_face_in_array(rgb, gray)
        if not r.face_found or r.landmarks is None:
            rows.append({"found": False})
            continue
        pts = np.asarray(r.landmarks, dtype=np.float64)[:, :2]
        cheek = cheek_offset(pts)
        wl = np.hypot(*(pts[133] - pts[33]))
        wr = np.hypot(*(pts[263] - pts[362]))
        rows.append(
            {
                "found": True,
                "matrix_yaw": r.matrix_yaw,
                "cheek": cheek,
                "bridge": along_eyes(pts, 168, 234, 454),
                "jaw": along_eyes(pts, NOSE_TIP, 132, 361),
                "eyes": float(np.log(wr / wl)),
                "cheek3": cheek**3,
                "cheek_pitch": abs(cheek) * abs(r.pitch) / 30,
            }
        )
    return pd.DataFrame(rows)


def ordinal_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights of ``|measures|`` and the logistic scale (degrees), classes weighted alike."""
    w = np.array([1.0 / (y == k).sum() for k in y])

    def nll(p: np.ndarray) -> float:
        s, tau = x @ p[:-1], abs(p[-1])
        f1, f2 = (1 / (1 + np.exp(-np.clip((s - b) / tau, -50, 50))) for b in BOUNDS)
        pr = np.where(y == 0, 1 - f1, np.where(y == 1, f1 - f2, f2))
        return float(-(w * np.log(np.clip(pr, 1e-12, 1))).sum())

    p0 = np.r_[20.0 / x.shape[1] / np.maximum(x.mean(axis=0), 1e-6), 5.0]
    r = minimize(
        nll, p0, method="Nelder-Mead", options={"maxiter": 20000, "maxfev": 20000, "xatol": 1e-6}
    )
    return r.x[:-1], float(abs(r.x[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    a = audited_faces(args.data)[["path", "pose", "audit", "holdout"]]
    a["part"] = np.where(
        a["audit"] != "face audit",
        a["audit"],
        np.where(
            a["path"].str.startswith("fer2013/"),
            "face audit, fer2013/val",
            "face audit, face-conditions",
        ),
    )
    a = pd.concat([a, measures(a["path"], args.data)], axis=1)
    manifest = pd.read_csv(args.data / "taiwanese-posed" / "manifest.csv")
    tw = measures("taiwanese-posed/" + manifest["path"], args.data)
    dev = a[~a["holdout"] & a["found"]]
    parts = list(dict.fromkeys(a["part"]))
    fits = {
        "the calibration in use": (
            ["matrix_yaw", "cheek"],
            np.array([YAW_FROM_MATRIX, YAW_FROM_CHEEKS]),
            np.nan,
        )
    }
    for name, cols in SETS.items():
        fits[name] = (cols, *ordinal_fit(dev[cols].abs().to_numpy(), dev["pose"].to_numpy()))
    for name, (cols, coef, tau) in fits.items():
        yaw = a[cols].abs().to_numpy() @ coef
        cells = []
        for part in parts:
            v = []
            for hold in (False, True):
                m = (
                    (a["part"] == part) & (a["holdout"] == hold) & a["found"] & (a["pose"] != 1)
                ).to_numpy()
                v.append(f"{auroc((a['pose'] == 2).to_numpy()[m], yaw[m]):.3f}")
            cells.append(f"{part} {' | '.join(v)}")
        colour = np.sort(tw.loc[tw["found"], cols].abs().to_numpy() @ coef)[::-1]
        print(f"{name}: weights {np.round(coef, 4).tolist()}, logistic scale {tau:.2f}")
        print(f"  AUROC clearly turned vs frontal [dev | holdout]: {'; '.join(cells)}")
        print(
            f"  colour portraits ({len(tw)}), largest |yaw|: {', '.join(f'{x:.1f}' for x in colour[:7])}; "
            f"past 20 / 22 / 25: {', '.join(str(int((colour > t).sum())) for t in (20, 22, 25))}"
        )


if __name__ == "__main__":
    main()
