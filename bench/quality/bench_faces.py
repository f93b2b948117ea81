"""Measure the face screens against every hand label we have, dev and holdout side by side.

Analyses (fresh cache, timed) face-conditions (1,760 in-the-wild faces), all of
``fer2013/val`` (3,589) and the hand-labelled FER2013 training faces of the holdout part
(``curate/faces/holdout.py``), then prints:

- faces found, and images/s per core (face-conditions);
- pose: the ``--max-yaw`` rule on the blind face audit (``bench/derivations/yaw_threshold.py``):
  recall of clearly turned faces and the share of frontal faces rejected, per set and
  threshold; the benchmark's own yaw flags for reference;
- occlusion: AUROC of ``occlusion_any`` against face-conditions' ``occluded`` flag (the
  benchmark's definition: glasses count), of ``occlusion`` against the occlusion policy
  (clear glasses alone do not count) and of ``occlusion_any`` against anything-over-the-face
  on the face audit, and both on the FER2013 hand labels' holdout part (with the share of
  its uncovered faces flagged occluded, per expression class); precision, recall
  and share flagged of ``fer2013/val`` at several ``--max-occlusion`` values;
- defaults: the share of ``fer2013/val`` images the face screens flag at their defaults,
  against the share the blind audit finds truly unusable (clearly turned, occluded by the
  policy, or not a face), and on a grid of ``--max-yaw`` x ``--max-occlusion``;
- the first two blind audits of face-conditions (``bench/audit/README.md``), and the second
  pose audit (stratified by ``|yaw|``, weighted back to its pool);
- the colour studio portraits of ``taiwanese-posed`` (all frontal and uncovered, so every
  rejection is wrong): the share face-rejected per expression class, dev and holdout
  performers (``holdout_subjects``); the same for CK+ (``ckplus48``: 48 px grey crops of
  posed expressions at their peak, frontal and uncovered, never used in fitting), by subject;
- ``no_face`` among the ``fer2013/val`` images FERPlus kept as faces (a row in its votes,
  plurality not ``NF``), dev and holdout (the file-name rule, share 0.5), by the screen's
  rule (a face detected without landmarks whose keypoint yaw is past ``--max-yaw`` is a
  side face, one whose crop aligned by the keypoints scores past ``--max-occlusion`` is
  occluded; both counted apart), with the reasons the misses get.

Dev figures helped choose things (thresholds, recipe); holdout figures did not.

Usage::

    python -m bench.quality.bench_faces [--data ../shared/data] [--workers 2] [--save DIR]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import AUDIT, DATA
from bench.derivations.yaw_threshold import (
    audit_table,
    first_pose_audit,
    second_annotator,
    second_pose_audit,
)
from bench.derivations.yaw_threshold import report as pose_report
from curate.faces import analyze_faces
from curate.faces.fit_occlusion import auroc
from curate.faces.holdout import SHARES, holdout_subjects, is_holdout
from curate.screens import faces as S

FLAGS = ["yaw_over_30", "yaw_over_45", "occluded"]
POLICY = {
    "hand",
    "hand_edge",
    "sunglasses",
    "mask",
    "hair",
    "other",
}  # occluded for expression recognition
ANY_COVER = POLICY | {"clear_glasses"}
PARTS = ("dev", "holdout")


def cpu_seconds() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def kinds(cover: str) -> set[str]:
    return {k for k in str(cover).split(";") if k}


def side(fmt: str, values: dict[str, object]) -> str:
    """``dev X | holdout Y``."""
    return " | ".join(f"{p} {fmt.format(values[p])}" for p in PARTS)


def analyse(paths: list[str], cache: str, workers: int) -> pd.DataFrame:
    return analyze_faces(paths, cache_dir=cache, workers=workers)


# ----------------------------------------------------------------------------- face-conditions
def face_conditions(d: pd.DataFrame) -> None:
    """``d``: labels.csv rows with the analysis and ``holdout``."""
    unflagged = (d[FLAGS].sum(axis=1) == 0).to_numpy()
    found = d["face_found"].to_numpy()
    print(
        f"face-conditions: {len(d)} faces ({int(d['holdout'].sum())} holdout), {unflagged.sum()} unflagged, "
        + ", ".join(f"{f} {int(d[f].sum())}" for f in FLAGS)
    )
    print(
        f"  faces found: {found.mean():.3f} overall, {found[unflagged].mean():.3f} unflagged, "
        + ", ".join(f"{found[d[f] == 1].mean():.3f} {f}" for f in FLAGS)
    )
    yaw = d["yaw"].abs().to_numpy()
    for flag in (
        "yaw_over_30",
        "yaw_over_45",
    ):  # reference only: the flags disagree with the pictures
        vals = {}
        for p in PARTS:
            m = (
                ((d[flag] == 1).to_numpy() | unflagged)
                & found
                & (d["holdout"] == (p == "holdout")).to_numpy()
            )
            vals[p] = auroc((d[flag] == 1).to_numpy()[m], yaw[m])
        print(
            f"  AUROC |yaw| {flag} vs unflagged (the benchmark's pose flags): {side('{:.3f}', vals)}"
        )
    vals, n = {}, {}
    for p in PARTS:
        m = (
            ((d["occluded"] == 1).to_numpy() | unflagged)
            & found
            & (d["holdout"] == (p == "holdout")).to_numpy()
        )
        vals[p] = auroc((d["occluded"] == 1).to_numpy()[m], d["occlusion_any"].to_numpy()[m])
        n[p] = f"{m.sum()}, {int(d['occluded'].to_numpy()[m].sum())} occluded"
        vals[p + " policy"] = auroc(
            (d["occluded"] == 1).to_numpy()[m], d["occlusion"].to_numpy()[m]
        )
    print(
        f"  AUROC occlusion_any, occluded vs unflagged (target 0.85): {side('{:.3f}', vals)}  (n {side('{}', n)})"
    )
    print(
        f"  the same with occlusion (clear glasses discounted; the flag counts glasses): "
        f"dev {vals['dev policy']:.3f} | holdout {vals['holdout policy']:.3f}"
    )
    verdict = S.face_verdicts(
        d, max_yaw=S.DEFAULT_MAX_YAW, max_occlusion=S.DEFAULT_MAX_OCCLUSION, no_face="reject"
    )
    rej = verdict["face_reject"].to_numpy()
    groups = {"unflagged": unflagged, **{f: (d[f] == 1).to_numpy() for f in FLAGS}}
    print(
        "  rejected by the face screens at defaults: "
        + ", ".join(f"{k} {rej[g].mean():.3f}" for k, g in groups.items())
    )


# ----------------------------------------------------------------------------- hand labels
def fer_holdout(labels: pd.DataFrame) -> None:
    """The holdout hand labels of FER2013 training faces (never fitted on), with the analysis."""
    f = labels[labels["face_found"]]
    rnd = (f["sample"] == "random").to_numpy()
    old = f["occluded"].to_numpy() == 1
    policy = np.array([bool(kinds(k) & POLICY) for k in f["kind"]]) & old
    print(
        f"FER2013 hand labels, holdout part ({len(labels)} faces, {len(f)} with a face found, "
        f"{rnd.sum()} randomly sampled): AUROC occlusion_any vs occluded {auroc(old, f['occlusion_any']):.3f} "
        f"(random {auroc(old[rnd], f['occlusion_any'].to_numpy()[rnd]):.3f}); occlusion vs the policy "
        f"{auroc(policy, f['occlusion']):.3f} (random {auroc(policy[rnd], f['occlusion'].to_numpy()[rnd]):.3f})"
    )
    # the expression bias on FER2013: faces the hand labels call uncovered, flagged occluded
    bare = f[f["occluded"] == 0]
    flagged = (bare["occlusion"] > S.DEFAULT_MAX_OCCLUSION).groupby(
        bare["path"].str.split("/").str[0]
    )
    print(
        f"  uncovered faces flagged occluded at --max-occlusion {S.DEFAULT_MAX_OCCLUSION:g}, by class: "
        + ", ".join(f"{c} {g.mean():.3f} (n {len(g)})" for c, g in flagged)
        + f"; all {(bare['occlusion'] > S.DEFAULT_MAX_OCCLUSION).mean():.3f} (n {len(bare)})"
    )


def audit_occlusion(a: pd.DataFrame) -> None:
    """``a``: :func:`yaw_threshold.audit_table` (face audit with analyses and weights)."""
    a = a.assign(
        policy=[bool(kinds(c) & POLICY) for c in a["cover"]],
        covered=[bool(kinds(c) & ANY_COVER) for c in a["cover"]],
    )
    vals = {}
    for p in PARTS:
        f = a[a["face_found"] & (a["holdout"] == (p == "holdout"))]
        vals[p] = (
            f"{auroc(f['policy'].to_numpy(), f['occlusion']):.3f} (n {len(f)}, {int(f['policy'].sum())} occluded) / "
            f"{auroc(f['covered'].to_numpy(), f['occlusion_any']):.3f}"
        )
    print(
        "face audit (blind): AUROC occlusion vs the policy / occlusion_any vs anything over the face: "
        + side("{}", vals)
    )
    print(
        "  fer2013/val (stratum-weighted), --max-occlusion:  precision / recall of the policy, share of "
        "faces flagged   [dev | holdout]"
    )
    val = a[(a["source"] == "fer2013/val") & a["face_found"]]
    for t in sorted({0.3, 0.4, 0.5, 0.6, 0.7, S.DEFAULT_MAX_OCCLUSION}):
        cells = []
        for p in PARTS:
            v = val[val["holdout"] == (p == "holdout")]
            flag = (v["occlusion"] > t).to_numpy()
            w, y = v["w"].to_numpy(), v["policy"].to_numpy()
            prec = (w * flag * y).sum() / max((w * flag).sum(), 1e-9)
            rec = (w * flag * y).sum() / max((w * y).sum(), 1e-9)
            cells.append(f"{prec:.3f} / {rec:.3f}, {(w * flag).sum() / w.sum():.3f}")
        mark = "  <- default" if t == S.DEFAULT_MAX_OCCLUSION else ""
        print(f"  {t:5.2f}   " + " | ".join(cells) + mark)


def defaults_vs_audit(val: pd.DataFrame, a: pd.DataFrame) -> None:
    """Share of all fer2013/val images the face screens flag at defaults vs the audit's unusable share."""
    v = S.face_verdicts(
        val, max_yaw=S.DEFAULT_MAX_YAW, max_occlusion=S.DEFAULT_MAX_OCCLUSION, no_face="reject"
    )
    reason = v["face_reason"].fillna("")
    share = {
        code: reason.str.contains(code).mean() for code in (S.SIDE_FACE, S.OCCLUDED, S.NO_FACE)
    }
    print(
        f"fer2013/val at the defaults (--max-yaw {S.DEFAULT_MAX_YAW:g}, --max-occlusion "
        f"{S.DEFAULT_MAX_OCCLUSION:g}, --no-face reject): {v['face_reject'].mean():.3f} of {len(v)} images "
        f"flagged (side_face {share[S.SIDE_FACE]:.3f}, occluded {share[S.OCCLUDED]:.3f}, "
        f"no_face {share[S.NO_FACE]:.3f}); without no_face "
        f"{(reason.str.contains(S.SIDE_FACE) | reason.str.contains(S.OCCLUDED)).mean():.3f}"
    )
    au = a[a["source"] == "fer2013/val"]
    au = au.assign(
        turned=au["pose"] == 2,
        occ=[bool(kinds(c) & POLICY) for c in au["cover"]],
        notface=au["cover"].str.contains("not_a_face"),
    )
    cells = {}
    for p in ("dev", "holdout", "all"):
        d = au if p == "all" else au[au["holdout"] == (p == "holdout")]
        w = d["w"].to_numpy()

        def share_of(x: pd.Series, w: np.ndarray = w) -> float:
            return float(np.average(x.to_numpy(), weights=w))

        cells[p] = (
            f"{share_of(d['turned'] | d['occ'] | d['notface']):.3f} (clearly turned {share_of(d['turned']):.3f}, "
            f"occluded by the policy {share_of(d['occ']):.3f}, not a face {share_of(d['notface']):.3f}; n {len(d)})"
        )
    print(
        "  the blind audit's truly unusable share of fer2013/val: "
        + " | ".join(f"{p} {c}" for p, c in cells.items())
    )
    flagged = S.face_verdicts(
        a, max_yaw=S.DEFAULT_MAX_YAW, max_occlusion=S.DEFAULT_MAX_OCCLUSION, no_face="reject"
    )["face_reject"].to_numpy()
    au_flag = flagged[(a["source"] == "fer2013/val").to_numpy()]
    bad = (au["turned"] | au["occ"] | au["notface"]).to_numpy()
    w = au["w"].to_numpy()
    print(
        f"  on the audited fer2013/val faces (weighted): precision {np.sum(w * au_flag * bad) / np.sum(w * au_flag):.3f}, "
        f"recall {np.sum(w * au_flag * bad) / np.sum(w * bad):.3f} of the unusable ones"
    )


def sensitivity(val: pd.DataFrame) -> None:
    """Share of fer2013/val images the face screens flag (no_face included) on a grid of
    --max-yaw x --max-occlusion: the image half of the report's face-threshold table."""
    yaws = sorted({15.0, 20.0, 25.0, 30.0, S.DEFAULT_MAX_YAW})
    occs = sorted({0.3, 0.4, 0.5, 0.6, 0.7, S.DEFAULT_MAX_OCCLUSION})
    print(
        "share of fer2013/val images flagged (rows --max-yaw, columns --max-occlusion; no_face rejected):"
    )
    print("         " + "".join(f"{o:>8.2f}" for o in occs))
    for y in yaws:
        row = [
            S.face_verdicts(val, max_yaw=y, max_occlusion=o, no_face="reject")["face_reject"].mean()
            for o in occs
        ]
        print(f"  {y:5.0f}  " + "".join(f"{r:8.3f}" for r in row))


def first_audits(d: pd.DataFrame) -> None:
    """The first blind audits of face-conditions (120 + 120 faces), as before."""
    pose = pd.read_csv(AUDIT / "face_conditions_pose_audit.csv").merge(d, on="path")
    occ = pd.read_csv(AUDIT / "face_conditions_occlusion_audit.csv").merge(d, on="path")
    f = pose[pose["face_found"]]
    clear = f[f["turned"] != 1]
    print(
        f"first pose audit ({len(pose)} face-conditions faces): AUROC |yaw| clearly turned vs frontal "
        f"{auroc((clear['turned'] == 2).to_numpy(), clear['yaw'].abs()):.3f} (n={len(clear)}); the flags as a "
        f"score of any turn: yaw_over_30 {auroc((f['turned'] >= 1).to_numpy(), f['yaw_over_30']):.3f}, "
        f"yaw_over_45 {auroc((f['turned'] >= 1).to_numpy(), f['yaw_over_45']):.3f}"
    )
    f = occ[occ["face_found"]]
    hand = (f["occluded_by_eye"] == 1).to_numpy()
    print(
        f"first occlusion audit ({len(occ)} faces; glasses count): AUROC occlusion_any vs the hand label "
        f"{auroc(hand, f['occlusion_any']):.3f}; the flag as a score of the hand label {auroc(hand, f['occluded']):.3f}"
    )


def frontal_uncovered(title: str, t: pd.DataFrame, per: str = "performers") -> None:
    """``t``: manifest rows (``label``, ``subject``) with the analysis, of a set whose faces are
    all frontal and uncovered: every face rejection is a wrong one. Target (the colour set):
    at most 0.5% overall, 1% per class."""
    v = S.face_verdicts(
        t, max_yaw=S.DEFAULT_MAX_YAW, max_occlusion=S.DEFAULT_MAX_OCCLUSION, no_face="reject"
    )
    held = holdout_subjects(t["subject"])
    hold = t["subject"].isin(held).to_numpy()
    names = f": {', '.join(sorted(held))}" if len(held) <= 10 else ""
    print(
        f"{title} ({len(t)} images, {t['subject'].nunique()} {per}, {len(held)} of them "
        f"holdout{names}): face-rejected (side_face / occluded / no_face)"
    )
    for p in PARTS:
        m = hold if p == "holdout" else ~hold
        r = S.rejects_by_class(v[m], t["label"].to_numpy()[m])
        cells = [
            f"{x.label} {x.share:.3f} ({x.side_face}/{x.occluded}/{x.no_face} of {x.images})"
            for x in r.itertuples()
        ]
        print(f"  {p}: " + ", ".join(cells))
    occ = t["occlusion"].to_numpy()
    print(
        "  median occlusion by class: "
        + ", ".join(
            f"{k} {np.nanmedian(occ[(t['label'] == k).to_numpy()]):.3f}"
            for k in sorted(t["label"].unique())
        )
    )


def ferplus_no_face(val: pd.DataFrame, data: Path) -> None:
    """``no_face`` among the fer2013/val images FERPlus kept as faces. Target: at most 1%."""
    votes = pd.read_csv(data / "ferplus" / "ferplus_votes_train_val.csv")
    kept = set(votes.loc[votes["plurality_label_8cls"] != "NF", "path"])
    rel = [
        Path(p).resolve().relative_to((data / "fer2013").resolve()).as_posix() for p in val["path"]
    ]
    is_kept = np.array([r in kept for r in rel])
    hold = is_holdout(rel, SHARES["fer2013_val"])
    v = S.face_verdicts(
        val, max_yaw=S.DEFAULT_MAX_YAW, max_occlusion=S.DEFAULT_MAX_OCCLUSION, no_face="reject"
    )
    codes = v["face_reason"].fillna("").str.split(";")
    no_face = codes.map(lambda r: S.NO_FACE in r).to_numpy()
    # detected without landmarks: keypoint yaw past --max-yaw, or keypoint crop occluded
    unlandmarked = ~val["face_found"].to_numpy() & ~no_face
    turned = unlandmarked & codes.map(lambda r: S.SIDE_FACE in r).to_numpy()
    covered = unlandmarked & ~turned
    cells = {}
    for p in PARTS:
        m = is_kept & (hold if p == "holdout" else ~hold)
        lost = m & no_face
        cells[p] = (
            f"{lost.sum()} of {m.sum()} ({lost.sum() / max(m.sum(), 1):.4f}; without landmarks: "
            f"side faces {(m & turned).sum()}, occluded only {(m & covered).sum()})"
        )
    print("fer2013/val images FERPlus kept as faces, rejected as no_face: " + side("{}", cells))
    lost = is_kept & no_face
    why = val.loc[lost, "detail"].astype("string").str.extract(r"^[^:]*: ([^(]*)")[0].str.strip()
    print("  why: " + ", ".join(f"{k} {n}" for k, n in why.value_counts().items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--save", type=Path, default=None, help="folder for the per-image analyses (parquet)"
    )
    args = ap.parse_args()

    fc_labels = pd.read_csv(args.data / "face-conditions" / "labels.csv")
    val_paths = sorted(str(p) for p in (args.data / "fer2013" / "val").rglob("*.jpg"))
    hand = pd.read_csv(AUDIT / "fer2013_train_occlusion_labels.csv").fillna({"kind": ""})
    hand = hand[is_holdout(hand["path"], SHARES["fer2013_train_labels"])].reset_index(drop=True)
    tw_manifest = pd.read_csv(args.data / "taiwanese-posed" / "manifest.csv")
    ck_manifest = pd.read_csv(args.data / "ckplus48" / "manifest.csv")
    with tempfile.TemporaryDirectory() as cache:  # fresh cache: time the real work
        t0, c0 = time.perf_counter(), cpu_seconds()
        fc = analyse(
            [str(args.data / "face-conditions" / p) for p in fc_labels["path"]], cache, args.workers
        )
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        val = analyse(val_paths, cache, args.workers)
        train = analyse(
            [str(args.data / "fer2013" / "train" / p) for p in hand["path"]], cache, args.workers
        )
        tw = analyse(
            [str(args.data / "taiwanese-posed" / p) for p in tw_manifest["path"]],
            cache,
            args.workers,
        )
        ck = analyse(
            [str(args.data / "ckplus48" / p) for p in ck_manifest["path"]], cache, args.workers
        )
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for name, t in (
            ("face_conditions", fc),
            ("fer2013_val", val),
            ("fer2013_train_holdout_labels", train),
            ("taiwanese_posed", tw),
            ("ckplus48", ck),
        ):
            t.to_parquet(args.save / f"faces_{name}.parquet", index=False)

    d = pd.concat([fc_labels, fc.drop(columns="path")], axis=1)
    d["holdout"] = is_holdout(d["path"], SHARES["face-conditions"])
    face_conditions(d)
    print(f"fer2013/val: faces found {val['face_found'].mean():.3f} of {len(val)}")
    ferplus_no_face(val, args.data)
    print()
    frontal_uncovered(
        "taiwanese-posed colour portraits (all frontal, uncovered)",
        pd.concat([tw_manifest, tw.drop(columns="path")], axis=1),
    )
    # CK+: 48 px grey crops of posed expressions at their peak, frontal and uncovered, never
    # used in fitting: does the occlusion screen respond to intense expressions on FER-like
    # crops, apart from FER2013's own labels?
    frontal_uncovered(
        "ckplus48 posed 48 px grey faces at peak expression (frontal, uncovered, never fitted on)",
        pd.concat([ck_manifest, ck.drop(columns="path")], axis=1),
        per="subjects",
    )
    print()
    a = audit_table(val, fc, args.data)
    pose_report(a, S.DEFAULT_MAX_YAW)
    first_pose_audit(fc, S.DEFAULT_MAX_YAW, args.data)
    second_pose_audit(fc, S.DEFAULT_MAX_YAW, args.data)
    second_annotator(fc, S.DEFAULT_MAX_YAW, args.data)
    print()
    fer_holdout(pd.concat([hand, train.drop(columns="path")], axis=1))
    audit_occlusion(a)
    print()
    defaults_vs_audit(val, a)
    sensitivity(val)
    print()
    first_audits(d)
    print(
        f"speed (face-conditions): {len(fc) / wall:.1f} images/s wall with {args.workers} worker(s); "
        f"{len(fc) / cpu:.1f} images/s per core (CPU time {cpu:.0f} s)"
    )


if __name__ == "__main__":
    main()
