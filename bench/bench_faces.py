"""Measure the face analysis on the face-conditions benchmark (1,760 in-the-wild faces).

Prints: share of faces found; AUROC of |yaw| for ``yaw_over_30`` and ``yaw_over_45`` vs
the unflagged faces; AUROC of ``occlusion`` for ``occluded`` vs unflagged, with
precision and recall at the default threshold (``DEFAULT_MAX_OCCLUSION``, chosen on
hand-labelled FER2013 training faces, not here), and for comparison the thresholds this
benchmark would pick;
what the screens reject per group at their defaults; images/s per core; and the same
scores against blind hand labels of 120 + 120 faces (``bench/audit/``, see
``bench/audit/README.md``), which measure how noisy the benchmark's flags are.

Usage::

    python bench/bench_faces.py [--data ../shared/data/face-conditions] [--workers 1]
                                [--limit N] [--save results.parquet]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from curate.faces import analyze_faces
from curate.faces.fit_occlusion import auroc
from curate.screens import faces as S

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "face-conditions"
AUDIT = Path(__file__).resolve().parent / "audit"
FLAGS = ["yaw_over_30", "yaw_over_45", "occluded"]


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def choose_threshold(y: np.ndarray, s: np.ndarray, max_false_reject: float | None) -> tuple[float, float]:
    """(F1, threshold) maximising F1 on a 0.01 grid, optionally among thresholds that
    reject at most ``max_false_reject`` of the negatives."""
    best = (0.0, 0.5)
    for t in np.round(np.arange(0.01, 1.0, 0.01), 2):
        pred = s > t
        if max_false_reject is not None and (pred & ~y).sum() > max_false_reject * (~y).sum():
            continue
        f1 = 2 * (pred & y).sum() / max(pred.sum() + y.sum(), 1)
        if f1 > best[0]:
            best = (float(f1), float(t))
    return best


def audits(d: pd.DataFrame) -> None:
    """Print the scores and the benchmark's flags against the blind hand labels.

    ``d``: labels.csv rows (``path`` relative to the data folder) with the analysis columns.
    """
    pose = pd.read_csv(AUDIT / "face_conditions_pose_audit.csv").merge(d, on="path")
    occ = pd.read_csv(AUDIT / "face_conditions_occlusion_audit.csv").merge(d, on="path")
    if pose.empty and occ.empty:  # a --limit sample without audited faces
        return
    group = np.where(pose["yaw_over_45"] == 1, "yaw_over_45",
                     np.where(pose["yaw_over_30"] == 1, "yaw_over_30 only", "unflagged"))
    table = pd.crosstab(pd.Series(group, name="flags"), pose["turned"].rename("hand label")).rename(
        columns={0: "frontal", 1: "slightly turned", 2: "clearly turned"})
    print(f"pose audit ({len(pose)} faces, blind hand labels), flag group x hand label:")
    print(table.to_string())
    f = pose[pose["face_found"]]
    clear = f[f["turned"] != 1]
    turned = (f["turned"] >= 1).to_numpy()
    print(f"  AUROC |yaw| clearly turned vs frontal (n={len(clear)}): "
          f"{auroc(clear['turned'] == 2, clear['yaw'].abs()):.3f}; any turn vs frontal "
          f"(n={len(f)}): {auroc(turned, f['yaw'].abs()):.3f}")
    print(f"  the flags as a score of any turn: yaw_over_30 {auroc(turned, f['yaw_over_30']):.3f}, "
          f"yaw_over_45 {auroc(turned, f['yaw_over_45']):.3f}")
    unflagged = pose["yaw_over_30"] == 0
    ceiling = []
    for flag in ("yaw_over_30", "yaw_over_45"):
        m = (pose[flag] == 1) | unflagged
        ceiling.append(f"{flag} {auroc(pose.loc[m, flag] == 1, pose.loc[m, 'turned']):.3f}")
    print("  the hand label (0/1/2) as a score of flagged vs unflagged, i.e. what a yaw that "
          "matches the eye would reach: " + ", ".join(ceiling))
    f = occ[occ["face_found"]]
    hand = (f["occluded_by_eye"] == 1).to_numpy()
    print(f"occlusion audit ({len(occ)} faces, blind hand labels): flag x hand label "
          + str(pd.crosstab(occ["occluded"], occ["occluded_by_eye"]).to_dict("index")))
    print(f"  AUROC occlusion vs hand label (n={len(f)}): {auroc(hand, f['occlusion']):.3f}; "
          f"vs the flag on the same faces: {auroc(f['occluded'] == 1, f['occlusion']):.3f}; "
          f"the flag as a score of the hand label: {auroc(hand, f['occluded']):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--save", type=Path, default=None, help="write the per-image results here")
    args = ap.parse_args()

    labels = pd.read_csv(args.data / "labels.csv")
    if args.limit:
        labels = labels.sample(args.limit, random_state=0).sort_index()
    paths = [str(args.data / p) for p in labels["path"]]
    t0, c0 = time.perf_counter(), cpu_seconds()
    with tempfile.TemporaryDirectory() as cache:  # fresh cache: time the real work
        res = analyze_faces(paths, cache_dir=cache, workers=args.workers)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    d = pd.concat([labels.reset_index(drop=True), res.drop(columns="path")], axis=1)
    if args.save:
        d.to_parquet(args.save, index=False)

    unflagged = (d[FLAGS].sum(axis=1) == 0).to_numpy()
    found = d["face_found"].to_numpy()
    print(f"face-conditions: {len(d)} faces, {unflagged.sum()} unflagged, "
          + ", ".join(f"{f} {int(d[f].sum())}" for f in FLAGS))
    print(f"faces found: {found.mean():.3f} overall, {found[unflagged].mean():.3f} unflagged, "
          + ", ".join(f"{found[d[f] == 1].mean():.3f} {f}" for f in FLAGS))

    yaw = d["yaw"].abs().to_numpy()
    rot = np.degrees(np.arccos(np.cos(np.radians(d["yaw"])) * np.cos(np.radians(d["pitch"]))))
    for flag, target in (("yaw_over_30", 0.95), ("yaw_over_45", 0.97)):
        m = ((d[flag] == 1).to_numpy() | unflagged) & found
        y = (d[flag] == 1).to_numpy()[m]
        print(f"AUROC |yaw| {flag} vs unflagged (faces found, n={m.sum()}): {auroc(y, yaw[m]):.3f} "
              f"(target {target}); head-rotation angle sqrt-combined with pitch: "
              f"{auroc(y, rot[m]):.3f}; median |yaw| flagged {np.median(yaw[m][y]):.1f} vs "
              f"unflagged {np.median(yaw[m][~y]):.1f}")

    occ = d["occlusion"].to_numpy()
    m = ((d["occluded"] == 1).to_numpy() | unflagged) & found
    y = (d["occluded"] == 1).to_numpy()[m]
    s = occ[m]
    t = S.DEFAULT_MAX_OCCLUSION
    pred = s > t
    tp = (pred & y).sum()
    print(f"AUROC occlusion occluded vs unflagged (faces found, n={m.sum()}, {y.sum()} occluded): "
          f"{auroc(y, s):.3f} (target 0.85)")
    print(f"at DEFAULT_MAX_OCCLUSION={t:g}: precision {tp / max(pred.sum(), 1):.3f}, "
          f"recall {tp / max(y.sum(), 1):.3f}, flagged {pred.sum()}")
    print(f"unflagged faces above it: {(pred & ~y).mean() / max((~y).mean(), 1e-9):.3f}")
    f1, t_any = choose_threshold(y, s, None)
    f1_10, t_10 = choose_threshold(y, s, 0.10)
    print(f"best-F1 threshold: {t_any:g} (F1 {f1:.3f}); best-F1 threshold rejecting at most 10% "
          f"of unflagged faces: {t_10:g} (F1 {f1_10:.3f}); neither is used for the default")
    print("threshold  precision  recall  F1     unflagged rejected")
    for tt in (0.2, 0.35, 0.42, 0.5, 0.7):
        p = s > tt
        tp_t = (p & y).sum()
        print(f"{tt:9.2f}  {tp_t / max(p.sum(), 1):9.3f}  {tp_t / max(y.sum(), 1):6.3f}  "
              f"{2 * tp_t / max(p.sum() + y.sum(), 1):.3f}  {(p & ~y).sum() / max((~y).sum(), 1):.3f}")
    regions = d.loc[m & (occ > t), "occlusion_region"].value_counts().to_dict()
    print(f"occlusion_region of faces above the threshold: {regions}")

    verdict = S.face_verdicts(res, max_yaw=S.DEFAULT_MAX_YAW, max_occlusion=t, no_face="reject")
    rej = verdict["face_reject"].to_numpy()
    groups = {"unflagged": unflagged, **{f: (d[f] == 1).to_numpy() for f in FLAGS}}
    print("rejected by the face screens at defaults: "
          + ", ".join(f"{k} {rej[g].mean():.3f}" for k, g in groups.items()))
    audits(d)
    print(f"speed: {len(d) / wall:.1f} images/s wall with {args.workers} worker(s); "
          f"{len(d) / cpu:.1f} images/s per core (CPU time {cpu:.0f} s)")


if __name__ == "__main__":
    main()
