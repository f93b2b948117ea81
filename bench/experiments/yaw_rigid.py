"""Is the disgust portraits' yaw the expression or the head? A yaw from rigid landmarks only.

Issue 23: on the colour studio portraits of ``taiwanese-posed`` (meant frontal) the disgust
class reads turned (mean ``|yaw|`` 8.0 against 1.7 for neutral), and six disgust portraits of
two performers read 23-28 degrees, so ``--max-yaw`` cannot come down to 22 (where the second
pose audit's recall would reach 0.80) without rejecting them. A grimace moves landmarks
(the nose wrinkles, the upper lip and one cheek rise) and MediaPipe's transformation matrix
is a weighted Procrustes fit that leans on some of them (the nose wings 129 / 358, the cheeks
205 / 425, the jaw 136 / 365 carry a third of its weight). If the expression, not the head,
made those readings, a yaw from rigid landmarks would read them lower.

This script runs the landmarker (litert) on every face of the three blind pose audits and
on the 629 portraits, keeping the 478 normalised landmarks with their depth, and computes:

* ``rigid``: the geometry pipeline's own fit (metric space, weighted orthogonal Procrustes
  against the canonical face) on rigid points only, equally weighted: the forehead, the
  temples and the face contour above the eyes, the eye corners, the nose bridge (no
  mouth, cheeks, brows, chin or nose wings); ``rigid+tip`` adds the nose tip (1, 4, 5);
  ``mp-moving``: MediaPipe's own weights with the points an expression moves set to 0;
* 2D offsets along the eye line (as ``cheek_offset``): the nose tip (1), the nose bridge
  (168, 6, 197 and their mean ``bridge3``) between the outer cheeks (234 / 454, in use), the
  temples (127 / 356, 162 / 389) or the outer eye corners (33 / 263);
* ``matrix``: the transformation matrix's yaw (MediaPipe's weights).

Then (1) each measure alone: AUROC of ``|x|`` (clearly turned vs frontal, faces found,
unweighted) on the dev | holdout parts of each audit (the face audit's ``fer2013/val`` and
face-conditions parts apart, the second pose audit under annotator A and B), and the ratio
of mean ``|x|`` disgust / neutral on the colour portraits (dev | holdout performers); (2) sets of
measures calibrated by the ordinal fit of ``bench/derivations/yaw_calibration.py`` on the DEV
parts of the three audits (annotator A), with the yaw in use for reference: AUROC, recall of
the clearly turned faces with a yaw / share of frontal faces rejected at 20, 22 and 25
(stratum-weighted as ``bench/derivations/yaw_threshold.py``; faces without landmarks keep
their keypoint yaw), the integer thresholds where every audit's dev part has recall at
least 0.8 and frontal at most 5%, and per expression class on the colour portraits (dev |
holdout performers, ``curate.faces.holdout.taiwanese_holdout_subjects``) mean / max ``|yaw|``
and counts past 20 / 22 / 25; (3) the portraits the yaw in use reads highest, under every
measure and BlazeFace's keypoint yaw (a separate network: ears and nose); (4) per class, the
mean difference of ``|rigid| - |matrix|`` and of the nose tip's and the bridge's offsets.

Usage::

    python -m bench.experiments.yaw_rigid [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import AUDIT, DATA
from bench.derivations.yaw_threshold import face_audit_weights
from bench.experiments.yaw_features import along_eyes, ordinal_fit
from curate.faces.fit_occlusion import auroc
from curate.faces.geometry import (
    YAW_FROM_CHEEKS,
    YAW_FROM_KEYPOINTS,
    YAW_FROM_MATRIX,
    keypoint_offset,
    pose_from_matrix,
    prepare_for_detection,
)
from curate.faces.holdout import is_holdout, taiwanese_holdout_subjects
from curate.faces.landmarks import found_face, missed_face
from curate.faces.litert import (
    DETECTOR_NMS_IOU,
    MIN_SCORE,
    RETRY_MIN_SCORE,
    FaceGeometry,
    LiteFaceFinder,
    read_geometry_metadata,
)
from curate.faces.model_file import resolve_face_model
from curate.images import load_arrays

FOREHEAD = [10, 151, 9, 109, 338, 67, 297, 108, 337, 69, 299, 104, 333, 54, 284, 103, 332]
TEMPLES = [127, 356, 162, 389, 21, 251, 71, 301, 68, 298, 139, 368, 34, 264]
EYE_CORNERS = [33, 133, 362, 263, 130, 359, 243, 463]
BRIDGE = [168, 6, 197, 195, 8]
TIP = [1, 4, 5]
RIGID = FOREHEAD + TEMPLES + EYE_CORNERS + BRIDGE
# MediaPipe's weighted points that an expression moves: nose wings, cheeks, jaw, lower contour
MOVING = [129, 358, 205, 425, 136, 365, 132, 361, 147, 376, 117, 346, 119, 348, 121, 350]
POINTS = {"tip": 1, "168": 168, "6": 6, "197": 197, "bridge3": (168, 6, 197)}
REFERENCES = {
    "cheeks": (234, 454),
    "temples": (127, 356),
    "temples2": (162, 389),
    "eye corners": (33, 263),
}
PARTS = ("FA-val", "FA-fc", "P1", "P2-A", "P2-B")
FIT_PARTS = ("FA-val", "FA-fc", "P1", "P2-A")
THRESHOLDS = (20, 22, 25)
IN_USE = "in use: 0.2618 matrix + 28.66 tip/cheeks"
SETS = {
    IN_USE: None,
    "refit matrix + tip/cheeks": ["matrix", "tip/cheeks"],
    "rigid + tip/cheeks": ["rigid", "tip/cheeks"],
    "rigid + 168/temples": ["rigid", "168/temples"],
    "rigid + bridge3/temples": ["rigid", "bridge3/temples"],
    "rigid + bridge3/cheeks": ["rigid", "bridge3/cheeks"],
    "matrix + bridge3/temples": ["matrix", "bridge3/temples"],
    "rigid alone": ["rigid"],
    "168/temples alone": ["168/temples"],
    "bridge3/eye corners alone": ["bridge3/eye corners"],
}


def point_along(pts: np.ndarray, point: int | tuple[int, ...], ref: tuple[int, int]) -> float:
    if isinstance(point, int):
        return along_eyes(pts, point, *ref)
    extra = np.vstack([pts, pts[list(point)].mean(axis=0)])  # the mean point, appended
    return along_eyes(extra, len(pts), *ref)


def measures(paths: list[str], data: Path) -> pd.DataFrame:
    """Per image: found, yaw (as ``curate faces``), keypoint yaw, and every measure."""
    model = resolve_face_model(None)
    finder = LiteFaceFinder(model)
    lm = finder.landmarker
    with zipfile.ZipFile(model) as bundle:
        canonical, weights = read_geometry_metadata(
            bundle.read("geometry_pipeline_metadata_landmarks.binarypb")
        )

    def equal(idx: list[int]) -> np.ndarray:
        w = np.zeros(canonical.shape[1])
        w[idx] = 1.0 / len(idx)
        return w

    fits = {
        "rigid": FaceGeometry(canonical, equal(RIGID)),
        "rigid+tip": FaceGeometry(canonical, equal(RIGID + TIP)),
        "mp-moving": FaceGeometry(
            canonical, np.where(np.isin(np.arange(len(weights)), MOVING), 0, weights)
        ),
    }
    rows = []
    for i, p in enumerate(paths):
        rgb, gray = load_arrays(data / p)
        grey = rgb.ndim == 3 and bool(
            (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        )
        prepared, pad, scale = prepare_for_detection(
            np.ascontiguousarray(rgb[..., 0]) if grey else rgb
        )
        face = lm.find(prepared)
        if face.landmarks is None and finder.retry and face.confidence >= RETRY_MIN_SCORE:
            face = finder.look_again(prepared, max(gray.shape[:2]) * scale, face)
        image = prepare_for_detection(rgb)[
            0
        ]  # BlazeFace's keypoints, as yaw_calibration reads them
        top = lm.top_face(*lm.detections(image), MIN_SCORE, DETECTOR_NMS_IOU)
        side = image.shape[1::-1]
        row = {
            "path": p,
            "kp_yaw": YAW_FROM_KEYPOINTS * keypoint_offset(top[1] * side)
            if top is not None
            else np.nan,
        }
        if face.landmarks is None or face.matrix is None:
            r = missed_face(face.confidence, face.keypoints)
            rows.append(row | {"found": False, "yaw": r.yaw})
            continue
        r = found_face(
            face.landmarks, face.matrix, face.confidence, prepared.shape, pad, scale, gray
        )
        h, w = prepared.shape[:2]
        row |= {"found": True, "yaw": r.yaw, "matrix": r.matrix_yaw}
        row |= {k: pose_from_matrix(g.matrix(face.landmarks, w, h))[0] for k, g in fits.items()}
        pts = np.asarray(r.landmarks, dtype=np.float64)
        row |= {
            f"{pn}/{rn}": point_along(pts, pi, ref)
            for pn, pi in POINTS.items()
            for rn, ref in REFERENCES.items()
        }
        rows.append(row)
        if (i + 1) % 500 == 0:
            print(f"  {i + 1} / {len(paths)} images", flush=True)
    return pd.DataFrame(rows)


def audits(data: Path) -> pd.DataFrame:
    """Every audited face with ``part``, ``pose``, ``w`` (stratum weight, as
    ``bench/derivations/yaw_threshold.py``) and ``holdout``; the second pose audit twice
    (annotator A, ``P2-A``, and B, ``P2-B``)."""
    fa = pd.read_csv(AUDIT / "face_audit.csv").fillna({"stratum": ""})
    val = (fa["source"] == "fer2013/val").to_numpy()
    n_val = sum(1 for _ in (data / "fer2013" / "val").rglob("*.jpg"))
    fa["w"] = face_audit_weights(fa, n_val, data)
    fa["part"] = np.where(val, "FA-val", "FA-fc")
    p1 = pd.read_csv(AUDIT / "face_conditions_pose_audit.csv").rename(columns={"turned": "pose"})
    p1 = p1.assign(path="face-conditions/" + p1["path"], w=1.0, part="P1")
    p2 = pd.read_csv(AUDIT / "face_conditions_pose_audit2.csv")
    p2 = p2.assign(w=p2["stratum_size"] / p2["stratum_audited"])
    cols = ["path", "pose", "w", "part"]
    a = pd.concat(
        [
            fa[cols],
            p1[cols],
            p2.assign(part="P2-A")[cols],
            p2.assign(part="P2-B", pose=p2["pose_b"])[cols],
        ],
        ignore_index=True,
    )
    a["holdout"] = is_holdout(a["path"], 0.5)
    return a


def calibrated(d: pd.DataFrame, cols: list[str] | None, coef: np.ndarray | None) -> np.ndarray:
    """|yaw| of a set (``None``: the yaw in use); faces without landmarks keep ``yaw``."""
    if cols is None:
        v = YAW_FROM_MATRIX * d["matrix"].abs() + YAW_FROM_CHEEKS * d["tip/cheeks"].abs()
    else:
        v = pd.Series(d[cols].abs().to_numpy() @ coef, index=d.index)
    return np.where(d["found"], v, d["yaw"].abs()).astype(float)


def rates(d: pd.DataFrame, y: np.ndarray, t: float) -> tuple[float, float]:
    """Weighted recall of the clearly turned faces with a yaw, share of frontal ones rejected."""
    judged = ~np.isnan(y)
    side = judged & (np.nan_to_num(y) > t)
    out = []
    for k in (2, 0):
        m = (d["pose"] == k).to_numpy() & judged
        out.append(float(np.average(side[m], weights=d["w"].to_numpy()[m])) if m.any() else np.nan)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    a = audits(args.data)
    unique = list(dict.fromkeys(a["path"]))
    manifest = pd.read_csv(args.data / "taiwanese-posed" / "manifest.csv")
    print(
        f"landmarks of {len(unique)} audited faces and {len(manifest)} colour portraits ...",
        flush=True,
    )
    m = measures(unique, args.data).set_index("path")
    a = pd.concat([a, m.loc[a["path"]].reset_index(drop=True)], axis=1)
    tw = measures(list("taiwanese-posed/" + manifest["path"]), args.data)
    tw = tw.assign(label=manifest["label"], subject=manifest["subject"])
    hold = taiwanese_holdout_subjects(manifest["subject"])
    tw["holdout"] = tw["subject"].isin(hold)
    print(
        f"colour portraits: holdout performers {' '.join(sorted(hold))}; dev "
        f"{' '.join(sorted(set(tw['subject']) - hold))}; all found: {bool(tw['found'].all())}"
    )
    pd.set_option("display.width", 250)

    print(
        "\n(1) each measure alone: AUROC |x| clearly turned vs frontal, faces found [dev | holdout]; "
        "colour mean |x| disgust / neutral [dev | holdout performers]"
    )
    single = ["matrix", "rigid", "rigid+tip", "mp-moving"] + [
        f"{pn}/{rn}" for pn in POINTS for rn in REFERENCES
    ]
    for c in single:
        cells = []
        for part in PARTS:
            v = []
            for h in (False, True):
                d = a[(a["part"] == part) & (a["holdout"] == h) & a["found"] & (a["pose"] != 1)]
                v.append(f"{auroc((d['pose'] == 2).to_numpy(), d[c].abs().to_numpy()):.3f}")
            cells.append(f"{part} {'|'.join(v)}")
        ratio = []
        for h in (False, True):
            g = tw[tw["holdout"] == h].groupby("label")[c].apply(lambda s: s.abs().mean())
            ratio.append(f"{g['disgust'] / g['neutral']:.2f}")
        print(f"  {c:22s} {'; '.join(cells)}; disgust/neutral {' | '.join(ratio)}")

    print(
        "\n(2) calibrated sets (ordinal fit on the dev parts of "
        f"{', '.join(FIT_PARTS)}): weights, logistic scale"
    )
    fit_rows = a[~a["holdout"] & a["found"] & a["part"].isin(FIT_PARTS)]
    readings = {}
    for name, cols in SETS.items():
        if cols is None:
            coef, tau = None, float("nan")
        else:
            coef, tau = ordinal_fit(fit_rows[cols].abs().to_numpy(), fit_rows["pose"].to_numpy())
        ya, yt = calibrated(a, cols, coef), calibrated(tw, cols, coef)
        readings[name] = yt
        print(
            f"== {name}: weights {None if coef is None else np.round(coef, 4).tolist()}, scale {tau:.2f}"
        )
        cells = []
        for part in PARTS:
            v = []
            for h in (False, True):
                mk = (
                    (a["part"] == part) & (a["holdout"] == h) & a["found"] & (a["pose"] != 1)
                ).to_numpy()
                v.append(f"{auroc((a['pose'] == 2).to_numpy()[mk], ya[mk]):.3f}")
            cells.append(f"{part} {'|'.join(v)}")
        print(f"  AUROC [dev|holdout]: {'; '.join(cells)}")
        for t in THRESHOLDS:
            cells = []
            for part in PARTS:
                v = []
                for h in (False, True):
                    mk = ((a["part"] == part) & (a["holdout"] == h)).to_numpy()
                    r = rates(a[mk], ya[mk], t)
                    v.append(f"{r[0]:.3f}/{r[1]:.3f}")
                cells.append(f"{part} {' | '.join(v)}")
            print(f"  > {t} recall/frontal [dev | holdout]: {'; '.join(cells)}")
        ok = []
        for t in range(15, 36):
            dev = [
                rates(
                    a[((a["part"] == p) & ~a["holdout"]).to_numpy()],
                    ya[((a["part"] == p) & ~a["holdout"]).to_numpy()],
                    t,
                )
                for p in PARTS
            ]
            if all(r >= 0.8 and f <= 0.05 for r, f in dev):
                ok.append(t)
        print(
            f"  thresholds with dev recall >= 0.8 and dev frontal <= 0.05 on every part: {ok or 'none'}"
        )
        for h in (False, True):
            d = tw[tw["holdout"] == h].assign(y=yt[(tw["holdout"] == h).to_numpy()])
            cells = []
            for label, g in d.groupby("label"):
                counts = ",".join(str(int((g["y"] > t).sum())) for t in THRESHOLDS)
                cells.append(
                    f"{label} {g['y'].mean():.1f}/{g['y'].max():.1f} [{counts}] of {len(g)}"
                )
            print(
                f"  colour {'holdout' if h else 'dev'} performers, mean/max |yaw| [> 20,22,25]: {'; '.join(cells)}"
            )
        means = tw.assign(y=yt).groupby(["subject", "label"])["y"].mean().unstack()
        top = np.sort(yt)[::-1][:8]
        print(
            f"  colour: largest {', '.join(f'{x:.1f}' for x in top)}; past 20/22/25: "
            f"{'/'.join(str(int((yt > t).sum())) for t in THRESHOLDS)} of {len(yt)}; "
            f"disgust minus neutral, mean over performers: {np.nanmean(means['disgust'] - means['neutral']):.2f} degrees"
        )

    print("\n(3) the portraits the yaw in use reads highest (signed; calibrated sets in degrees)")
    order = np.argsort(-readings[IN_USE])[:10]
    show = tw.iloc[order][
        [
            "path",
            "label",
            "subject",
            "matrix",
            "rigid",
            "mp-moving",
            "tip/cheeks",
            "168/temples",
            "bridge3/eye corners",
            "kp_yaw",
        ]
    ].copy()
    for name in (IN_USE, "rigid + 168/temples", "rigid alone"):
        show[name.split(":")[0]] = readings[name][order]
    show["path"] = show["path"].str.rsplit("/", n=1).str[-1]
    print(show.round(2).to_string(index=False))

    print(
        "\n(4) per class, mean of |rigid| - |matrix| (degrees), |tip/cheeks| - |168/cheeks| and "
        "|168/cheeks| - |168/temples| (offset units; 0.035 is about 1 degree)"
    )
    diff = pd.DataFrame(
        {
            "label": tw["label"],
            "rigid-matrix": tw["rigid"].abs() - tw["matrix"].abs(),
            "tip-bridge": tw["tip/cheeks"].abs() - tw["168/cheeks"].abs(),
            "cheeks-temples": tw["168/cheeks"].abs() - tw["168/temples"].abs(),
            "kp_yaw": tw["kp_yaw"].abs(),
        }
    )
    print(diff.groupby("label").mean().round(3).to_string())


if __name__ == "__main__":
    main()
