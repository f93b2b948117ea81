"""Fit the calibrated yaw (``curate.faces.geometry.calibrated_yaw``) on both blind pose audits.

The transformation matrix's yaw reads three-quarter views low on small crops; the nose's
place between the outer cheeks (``cheek_offset``) carries more of the turn. This script
runs the landmarker (litert, in this process) on every face of the blind pose audits:
``bench/audit/face_audit.csv`` (pose 0 frontal, 1 ambiguous, 2 clearly turned),
``face_conditions_pose_audit.csv`` (``turned`` 0 / 1 / 2) and
``face_conditions_pose_audit2.csv`` (``pose``; sampled by strata of ``|yaw|``), and fits, on
their DEV parts only (``curate/faces/holdout.py``: the file-name rule, share 0.5),
``yaw = a * matrix_yaw + b * cheek_offset`` (a, b >= 0) by an ordinal logistic model whose
class boundaries are the audits' own definitions: frontal below 15 degrees, clearly turned
(three-quarter or profile) above 30 degrees, the three classes weighted alike (a model of
the label given the yaw, so the second pose audit's sampling by yaw needs no weights there).
``--fit-audits 2`` fits on the first two audits only, as the weights in use were. Then it
prints AUROC (clearly turned vs frontal) and, for several thresholds, the recall of clearly
turned faces (found, and counting no_face) and the share of frontal faces rejected, on dev
and holdout of each audit, for the matrix's yaw alone and for the calibrated yaw: the face
audit and the first pose audit unweighted, the second pose audit weighted by its strata
(stratum size over audited count), so its rates estimate its pool. The default
``--max-yaw`` is the largest multiple of 5 whose DEV recall of the clearly turned faces found
is at least 0.8 on every audit, and whose DEV share of frontal faces rejected is at most 5%
on every audit.

Last, the keypoint yaw (``curate.faces.geometry.keypoint_yaw``, the turn of a face the
detector finds without landmarks): the least-squares slope through 0 of the calibrated yaw
on ``keypoint_offset`` (the FaceDetector's keypoints, as ``LiteLandmarker.find`` reports
them) over the ``fer2013/val`` faces found with a detector score of at least 0.5, dev and
holdout halves apart (``YAW_FROM_KEYPOINTS`` is the dev slope), and how it ranks the
audits' clearly turned faces against the frontal ones.

Usage::

    python -m bench.derivations.yaw_calibration [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from bench.common.paths import AUDIT, DATA
from curate.faces.fit_occlusion import auroc
from curate.faces.geometry import (
    YAW_FROM_CHEEKS,
    YAW_FROM_KEYPOINTS,
    YAW_FROM_MATRIX,
    cheek_offset,
    keypoint_offset,
    prepare_for_detection,
)
from curate.faces.holdout import is_holdout
from curate.faces.litert import DETECTOR_NMS_IOU, MIN_SCORE, LiteFaceFinder
from curate.faces.model_file import resolve_face_model
from curate.images import load_arrays

BOUNDS = (15.0, 30.0)  # the audits' class boundaries, degrees
CHEEK_UNITS = 30.0  # cheek_offset is fitted in units of 30 (same order as degrees)
MIN_RECALL = 0.8
MAX_FRONTAL = 0.05
THRESHOLDS = (15, 20, 22, 25, 30, 35)
AUDITS = ("face audit", "first pose audit", "second pose audit")


def audited_faces(data: Path) -> pd.DataFrame:
    a = pd.read_csv(AUDIT / "face_audit.csv")[["path", "pose"]].assign(audit=AUDITS[0], w=1.0)
    b = pd.read_csv(AUDIT / "face_conditions_pose_audit.csv").rename(columns={"turned": "pose"})
    b = b.assign(path="face-conditions/" + b["path"], audit=AUDITS[1], w=1.0)
    c = pd.read_csv(AUDIT / "face_conditions_pose_audit2.csv")
    c = c.assign(audit=AUDITS[2], w=c["stratum_size"] / c["stratum_audited"])
    out = pd.concat([a, b, c[["path", "pose", "audit", "w"]]], ignore_index=True)
    out["holdout"] = is_holdout(out["path"], 0.5)
    return pd.concat([out, analysed(data, out["path"])], axis=1)


def analysed(data: Path, paths: pd.Series) -> pd.DataFrame:
    """Per face: found, matrix yaw, cheek offset, calibrated yaw, and the FaceDetector's
    score and keypoint offset (whether or not landmarks were found)."""
    finder = LiteFaceFinder(resolve_face_model(None))
    lm = finder.landmarker
    rows = []
    for p in paths:
        rgb, gray = load_arrays(data / p)
        r = finder.find_face_in_array(rgb, gray)
        image = prepare_for_detection(rgb)[0]
        boxes, kps, scores = lm.detections(image)
        top = lm.top_face(boxes, kps, scores, MIN_SCORE, DETECTOR_NMS_IOU)
        rows.append(
            {
                "found": r.face_found,
                "matrix_yaw": r.matrix_yaw,
                "yaw": r.yaw,
                "cheek": cheek_offset(r.landmarks) if r.landmarks is not None else np.nan,
                "detector": float(scores.max()) if scores.size else 0.0,
                "kp_offset": keypoint_offset(top[1] * image.shape[1::-1])
                if top is not None
                else np.nan,
            }
        )
    return pd.DataFrame(rows)


def keypoint_slope(data: Path, a: pd.DataFrame) -> None:
    """The keypoint yaw's slope on fer2013/val (dev and holdout), and its AUROC on the audits."""
    paths = pd.Series(
        sorted(p.relative_to(data).as_posix() for p in (data / "fer2013" / "val").rglob("*.jpg"))
    )
    v = analysed(data, paths).assign(holdout=is_holdout(paths, 0.5))
    use = v["found"] & (v["detector"] >= 0.5)
    cells = []
    for part in ("dev", "holdout"):
        d = v[use & (v["holdout"] == (part == "holdout"))]
        x, y = d["kp_offset"].to_numpy(), d["yaw"].to_numpy()
        cells.append(
            f"{part} {float(x @ y / (x @ x)):.2f} (n {len(d)}, r {np.corrcoef(x, y)[0, 1]:.2f})"
        )
    print(
        f"keypoint yaw: slope of the calibrated yaw on keypoint_offset over fer2013/val faces found with a "
        f"detector score >= 0.5: {' | '.join(cells)} (in use: {YAW_FROM_KEYPOINTS})"
    )
    for part in ("dev", "holdout"):
        d = a[(a["holdout"] == (part == "holdout")) & (a["detector"] >= 0.5) & (a["pose"] != 1)]
        lost = d[~d["found"]]
        kp = np.abs(YAW_FROM_KEYPOINTS * lost["kp_offset"])
        print(
            f"  audits, {part}: AUROC |keypoint yaw| clearly turned vs frontal {auroc((d['pose'] == 2).to_numpy(), d['kp_offset'].abs().to_numpy()):.3f} "
            f"(n {len(d)}); faces without landmarks: {len(lost)} ({int((lost['pose'] == 2).sum())} clearly turned, "
            f"{int((kp[lost['pose'] == 2] > 25).sum())} of them past 25 degrees; {int((lost['pose'] == 0).sum())} frontal, "
            f"{int((kp[lost['pose'] == 0] > 25).sum())} of them past 25)"
        )


def fit(dev: pd.DataFrame) -> tuple[float, float, float]:
    """(a, b, tau) of the ordinal fit on the found faces of ``dev``; b per unit cheek_offset."""
    x = np.stack([dev["matrix_yaw"].abs(), dev["cheek"].abs() * CHEEK_UNITS], axis=1)
    y = dev["pose"].to_numpy()
    w = np.array([1.0 / (y == k).sum() for k in y])

    def nll(p: np.ndarray) -> float:
        s, tau = x @ np.abs(p[:2]), abs(p[2])
        f1, f2 = (1 / (1 + np.exp(-(s - b) / tau)) for b in BOUNDS)
        pr = np.where(y == 0, 1 - f1, np.where(y == 1, f1 - f2, f2))
        return float(-(w * np.log(np.clip(pr, 1e-12, 1))).sum())

    r = minimize(
        nll,
        np.array([0.5, 0.5, 5.0]),
        method="Nelder-Mead",
        options={"maxiter": 8000, "maxfev": 8000},
    )
    return float(abs(r.x[0])), float(abs(r.x[1]) * CHEEK_UNITS), float(abs(r.x[2]))


def rates(d: pd.DataFrame, yaw: np.ndarray, t: float) -> tuple[float, float, float]:
    """(recall of the clearly turned faces found, of all clearly turned faces with no_face as
    missed, share of frontal faces rejected) at ``|yaw| > t``, weighted by ``d["w"]``."""
    side = d["found"].to_numpy() & (np.abs(yaw) > t)
    t2, t0 = (d["pose"] == 2).to_numpy(), (d["pose"] == 0).to_numpy()
    found, w = d["found"].to_numpy(), d["w"].to_numpy()

    def mean(m: np.ndarray) -> float:
        return float(np.average(side[m], weights=w[m])) if m.any() else np.nan

    return mean(t2 & found), mean(t2), mean(t0)


def default_rule(a: pd.DataFrame, yaw: np.ndarray) -> tuple[int | None, int | None]:
    """(largest multiple of 5 with DEV recall of the clearly turned faces found >= MIN_RECALL on
    every audit; the same, with DEV frontal faces rejected <= MAX_FRONTAL on every audit too)."""
    dev = ~a["holdout"].to_numpy()
    r = {
        t: [
            rates(
                a[(a["audit"] == au).to_numpy() & dev], yaw[(a["audit"] == au).to_numpy() & dev], t
            )
            for au in AUDITS
        ]
        for t in range(5, 50, 5)
    }
    recall = [t for t, x in r.items() if all(v[0] >= MIN_RECALL for v in x)]
    both = [t for t in recall if all(v[2] <= MAX_FRONTAL for v in r[t])]
    return (max(recall) if recall else None), (max(both) if both else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--fit-audits",
        type=int,
        choices=(2, 3),
        default=3,
        help="fit on the dev parts of the first 2 audits (as the weights in use) or of all 3",
    )
    args = ap.parse_args()
    a = audited_faces(args.data)
    dev = a[~a["holdout"] & a["found"] & a["audit"].isin(AUDITS[: args.fit_audits])]
    ka, kb, tau = fit(dev)
    print(
        f"fit on {len(dev)} dev faces found of {args.fit_audits} audits: yaw = {ka:.4f} * matrix_yaw + "
        f"{kb:.2f} * cheek_offset (logistic scale {tau:.2f} degrees)"
    )
    yaws = {
        "matrix yaw": a["matrix_yaw"].to_numpy(),
        "calibrated, this fit": (ka * a["matrix_yaw"] + kb * a["cheek"]).to_numpy(),
        f"calibrated, in use ({YAW_FROM_MATRIX} * matrix_yaw + {YAW_FROM_CHEEKS} * cheek_offset)": (
            YAW_FROM_MATRIX * a["matrix_yaw"] + YAW_FROM_CHEEKS * a["cheek"]
        ).to_numpy(),
    }
    for name, yaw in yaws.items():
        print(f"{name}:")
        for audit in AUDITS:
            for part in ("dev", "holdout"):
                m = ((a["audit"] == audit) & (a["holdout"] == (part == "holdout"))).to_numpy()
                d, y = a[m], yaw[m]
                c = d["found"].to_numpy() & (d["pose"] != 1).to_numpy()
                n = {k: int((d["pose"] == k).sum()) for k in (0, 1, 2)}
                print(
                    f"  {audit}, {part} (frontal/ambiguous/clearly turned {n[0]}/{n[1]}/{n[2]}): AUROC |yaw| "
                    f"clearly turned vs frontal {auroc((d['pose'] == 2).to_numpy()[c], np.abs(y[c])):.3f}"
                    + (
                        " (unweighted: the sample is enriched by |yaw|)"
                        if audit == AUDITS[2]
                        else ""
                    )
                )
                print(
                    "    "
                    + "  ".join(
                        "|yaw|>{}: recall {:.2f} (of all, no_face as missed: {:.2f}), frontal {:.3f}".format(
                            t, *rates(d, y, t)
                        )
                        for t in THRESHOLDS
                    )
                )
    for name, yaw in list(yaws.items())[1:]:
        recall, both = default_rule(a, yaw)
        print(
            f"default rule, {name.split(' (')[0]}: largest multiple of 5 with dev recall >= {MIN_RECALL} "
            f"on every audit: {recall or 'none'}; and dev frontal rejected <= {MAX_FRONTAL} on every "
            f"audit: {both or 'none'}"
        )
    keypoint_slope(args.data, a)


if __name__ == "__main__":
    main()
