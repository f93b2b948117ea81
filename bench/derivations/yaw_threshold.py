"""Choose the default ``--max-yaw`` from the blind face audit, and check it.

Reads ``bench/audit/face_audit.csv`` (pose labelled from the picture: 0 frontal, 1
ambiguous, 2 clearly turned) and ``curate faces`` tables of ``fer2013/val`` and
``face-conditions`` (the audited faces' ``yaw``). The rule, on the DEV part of the
``fer2013/val`` audit only (``curate/faces/holdout.py``; stratum-weighted): the largest multiple
of 5 degrees at which the screen still catches at least 90% of the clearly turned faces
the landmarker finds, so that it rejects as few frontal and ambiguous faces as it can
while catching nine clearly turned faces in ten. For reference it also prints where a
class-balanced logistic fit of clearly turned vs frontal on ``|yaw|`` puts the two
classes equally likely (likelihood ratio 1, the point of best recall minus frontal
rejection); that point ignores the ambiguous faces, a fifth of ``fer2013/val``, and
rejects a third of them.

Printed: the fit on dev, a 5-fold cross-validation within dev (folds by the same file-name
hash), and recall / rejection at several thresholds on dev and holdout. Figures over
``fer2013/val`` weigh each audited image by its sampling stratum (``stratum`` column),
those over face-conditions by its flag stratum, so they estimate the whole set. Then the
first pose audit (``face_conditions_pose_audit.csv``, unweighted) and the second
(``face_conditions_pose_audit2.csv``, weighted by its ``|yaw|`` strata), face-conditions faces,
and that audit's second and third annotators (agreement, and the rates under each annotator,
the consensus of the first two and the adjudicated median of all three).

Usage::

    python -m bench.derivations.yaw_threshold --val-faces faces_val.parquet --fc-faces faces_fc.parquet
    python -m bench.derivations.yaw_threshold --second-audit-only --fc-faces faces_fc.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from bench.common.paths import AUDIT, DATA
from curate.faces.fit_occlusion import auroc
from curate.faces.holdout import SHARES, is_holdout, split_key

N_VAL_LOW_SHARE = (
    0.2  # the round-2 stratum: the lowest fifth of face_confidence (face_audit_sheets.py)
)
THRESHOLDS = (15, 18, 20, 22, 25, 30)
GRID = (15, 20, 25, 30, 35, 40)  # candidate defaults
MIN_RECALL = 0.9


def audit_table(val_faces: pd.DataFrame, fc_faces: pd.DataFrame, data: Path = DATA) -> pd.DataFrame:
    """The face audit joined with the analyses (``path`` relative to ``data``), with
    ``holdout``, ``w`` (stratum weight) and the analysis columns."""
    a = pd.read_csv(AUDIT / "face_audit.csv").fillna({"cover": "", "stratum": ""})
    faces = pd.concat([val_faces, fc_faces], ignore_index=True)
    faces = faces.assign(
        path=[Path(p).resolve().relative_to(data.resolve()).as_posix() for p in faces["path"]]
    )
    a = a.merge(faces.drop_duplicates("path"), on="path", how="left", validate="one_to_one")
    if a["face_found"].isna().any():
        raise SystemExit(
            f"{int(a['face_found'].isna().sum())} audited faces are not in the faces tables"
        )
    a["face_found"] = a["face_found"].astype(bool)
    a["holdout"] = is_holdout(a["path"], SHARES["pose_audit"])
    a["w"] = face_audit_weights(a, len(val_faces), data)
    return a


def face_audit_weights(a: pd.DataFrame, n_val: int, data: Path = DATA) -> np.ndarray:
    """Each face of the face audit ``a`` (``face_audit.csv``: ``source``, ``stratum``,
    ``path``) weighted by its sampling stratum, so rates estimate the whole set: a
    ``fer2013/val`` face by its round's share of the ``n_val`` images (the lowest
    :data:`N_VAL_LOW_SHARE` of face_confidence, or the rest) over its audited count, a
    face-conditions face by its ``yaw_over_45`` flag stratum."""
    val = (a["source"] == "fer2013/val").to_numpy()
    size = {
        "low_confidence": round(N_VAL_LOW_SHARE * n_val),
        "rest": n_val - round(N_VAL_LOW_SHARE * n_val),
    }
    counts = a.loc[val, "stratum"].value_counts()
    w = np.zeros(len(a))
    w[val] = a.loc[val, "stratum"].map(lambda s: size[s] / counts[s]).to_numpy()
    flags = pd.read_csv(data / "face-conditions" / "labels.csv")
    flags["path"] = "face-conditions/" + flags["path"]
    fc = a.loc[~val, ["path"]].merge(flags, on="path", how="left")
    turned45 = (fc["yaw_over_45"] == 1).to_numpy()
    n45, n_all = int((flags["yaw_over_45"] == 1).sum()), len(flags)
    w[~val] = np.where(turned45, n45 / turned45.sum(), (n_all - n45) / (~turned45).sum())
    return w


def lr1_threshold(abs_yaw: np.ndarray, turned: np.ndarray) -> float:
    """|yaw| where a class-balanced logistic fit of ``turned`` (bool) on ``abs_yaw`` is 0.5."""
    x, y = np.asarray(abs_yaw, float), np.asarray(turned, float)
    w = np.where(y == 1, 0.5 / y.sum(), 0.5 / (1 - y).sum())

    def nll(p: np.ndarray) -> float:
        z = p[0] + p[1] * x
        return float((w * (np.logaddexp(0, z) - y * z)).sum())

    r = minimize(
        nll,
        np.array([-3.0, 0.2]),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000},
    )
    return float(-r.x[0] / r.x[1])


def lr1_point(dev: pd.DataFrame) -> float:
    """Likelihood-ratio-1 point of clearly turned vs frontal faces (found) in ``dev``."""
    f = dev[dev["yaw"].notna() & (dev["pose"] != 1)]
    return lr1_threshold(f["yaw"].abs().to_numpy(), (f["pose"] == 2).to_numpy())


def fit_default(dev: pd.DataFrame) -> int:
    """The rule: the largest of :data:`GRID` whose weighted recall of the clearly turned
    faces the landmarker finds is at least :data:`MIN_RECALL` (the ``fer2013/val`` rows of
    ``dev``); the smallest of the grid when none is."""
    val = dev[dev["source"] == "fer2013/val"]
    ok = [t for t in GRID if rates(val, t)["turned"] >= MIN_RECALL]
    return max(ok) if ok else min(GRID)


def rates(d: pd.DataFrame, t: float) -> dict[str, float]:
    """Weighted: recall of clearly turned faces (those with a yaw: found, or detected without
    landmarks, ``yaw`` from the detector's keypoints; and counting no_face as caught), share
    of frontal and of ambiguous faces rejected as side faces, at ``|yaw| > t`` (the screen's
    rule, ``curate.screens.faces.face_verdicts``)."""
    judged = d["yaw"].notna()
    side = judged & (d["yaw"].abs() > t)
    out = {}
    for name, k in (("turned", 2), ("frontal", 0), ("ambiguous", 1)):
        g = d[d["pose"] == k]
        f = g[judged[g.index]]
        out[name] = float(np.average(side[f.index], weights=f["w"])) if len(f) else np.nan
        out[name + "_or_no_face"] = (
            float(np.average((side | ~d["face_found"])[g.index], weights=g["w"]))
            if len(g)
            else np.nan
        )
    return out


def print_rates(parts: list[pd.DataFrame], default: float, *, frontal_no_face: bool) -> None:
    """One row per threshold of :data:`THRESHOLDS` (and ``default``, marked): :func:`rates` of
    each of ``parts`` (dev, holdout): recall of the clearly turned faces (with no_face), frontal
    faces rejected (with no_face when ``frontal_no_face``), ambiguous faces rejected."""
    for thr in sorted({*THRESHOLDS, default}):
        r = [rates(d, thr) for d in parts]
        frontal = (
            (f"{x['frontal']:.3f} ({x['frontal_or_no_face']:.3f})" for x in r)
            if frontal_no_face
            else (f"{x['frontal']:.3f}" for x in r)
        )
        mark = " <- default" if thr == default else ""
        print(
            f"  {thr:5g}   "
            + " | ".join(f"{x['turned']:.3f} ({x['turned_or_no_face']:.3f})" for x in r)
            + "   "
            + " | ".join(frontal)
            + "   "
            + " | ".join(f"{x['ambiguous']:.3f}" for x in r)
            + mark
        )


def cross_validate(dev: pd.DataFrame, k: int = 5) -> tuple[list[int], dict[str, float]]:
    """The rule fitted on k-1 folds of dev, rates over the held-out folds (fer2013/val
    faces found, unweighted)."""
    share = SHARES["pose_audit"]
    fold = np.minimum(((dev["path"].map(split_key) - share) / (1 - share) * k).astype(int), k - 1)
    ts, hits = [], {"turned": [0, 0], "frontal": [0, 0]}
    for j in range(k):
        t = fit_default(dev[fold != j])
        ts.append(t)
        te = dev[(fold == j) & dev["yaw"].notna() & (dev["source"] == "fer2013/val")]
        for name, lab in (("turned", 2), ("frontal", 0)):
            g = te[te["pose"] == lab]
            hits[name][0] += int((g["yaw"].abs() > t).sum())
            hits[name][1] += len(g)
    return ts, {n: h[0] / max(h[1], 1) for n, h in hits.items()}


def report(a: pd.DataFrame, default: float) -> None:
    """Print the fit, the cross-validation and the rates, dev and holdout side by side."""
    dev = a[~a["holdout"]]
    rule = fit_default(dev)
    ts, cv = cross_validate(dev)
    print(
        f"yaw rule on the dev part of the face audit (largest multiple of 5 catching >= {MIN_RECALL:.0%} "
        f"of the clearly turned faces found): {rule} (in use: {default:g}); 5-fold CV within dev: "
        f"{', '.join(str(x) for x in ts)}, held-out recall of clearly turned {cv['turned']:.3f}, "
        f"frontal rejected {cv['frontal']:.3f}; for reference, clearly turned and frontal are equally "
        f"likely at {lr1_point(dev):.1f} degrees"
    )
    for src in ("fer2013/val", "face-conditions"):
        cells = {}
        for part in ("dev", "holdout"):
            d = a[(a["source"] == src) & (a["holdout"] == (part == "holdout"))]
            f = d[d["yaw"].notna() & (d["pose"] != 1)]
            n = {k: int((d["pose"] == k).sum()) for k in (0, 1, 2)}
            cells[part] = (
                d,
                f"n frontal/ambiguous/turned {n[0]}/{n[1]}/{n[2]} (turned with a yaw "
                f"{int((d['yaw'].notna() & (d['pose'] == 2)).sum())}), AUROC |yaw| turned vs "
                f"frontal {auroc((f['pose'] == 2).to_numpy(), f['yaw'].abs().to_numpy()):.3f}",
            )
        print(f"{src}: dev {cells['dev'][1]} | holdout {cells['holdout'][1]}")
        print(
            "  |yaw| >   recall turned (with no_face)   frontal rejected (with no_face)   ambiguous rejected"
            "      [dev | holdout]"
        )
        print_rates([cells["dev"][0], cells["holdout"][0]], default, frontal_no_face=True)


def first_pose_audit(fc_faces: pd.DataFrame, default: float, data: Path = DATA) -> None:
    """The first blind pose audit (``face_conditions_pose_audit.csv``: 120 face-conditions
    faces, 0 frontal / 1 slightly turned / 2 clearly turned), the second audit the side-face
    rule must satisfy: recall of the clearly turned faces and frontal faces rejected at
    several thresholds, dev and holdout (face-conditions' rule, unweighted)."""
    p = pd.read_csv(AUDIT / "face_conditions_pose_audit.csv")
    faces = fc_faces.assign(
        path=[
            Path(x).resolve().relative_to((data / "face-conditions").resolve()).as_posix()
            for x in fc_faces["path"]
        ]
    )
    p = p.merge(faces, on="path", how="left", validate="one_to_one")
    p["face_found"] = p["face_found"].fillna(False).astype(bool)
    hold = is_holdout(p["path"], SHARES["face-conditions"])
    print(
        "first pose audit (face-conditions, 120 faces): |yaw| >   recall clearly turned (with no_face)   "
        "frontal rejected   [dev | holdout]"
    )
    for thr in sorted({*THRESHOLDS, default}):
        cells = []
        for part in (False, True):
            d = p[hold == part]
            judged = d["yaw"].notna()
            side = judged & (d["yaw"].abs() > thr)
            t2, t0 = d["turned"] == 2, d["turned"] == 0
            cells.append(
                (
                    f"{side[t2 & judged].mean():.3f} ({side[t2].mean():.3f}, n {int(t2.sum())})",
                    f"{side[t0].mean():.3f} (n {int(t0.sum())})",
                )
            )
        mark = " <- default" if thr == default else ""
        print(
            f"  {thr:5g}   "
            + " | ".join(c[0] for c in cells)
            + "   "
            + " | ".join(c[1] for c in cells)
            + mark
        )


def second_pose_audit(fc_faces: pd.DataFrame, default: float, data: Path = DATA) -> None:
    """The second blind pose audit (``face_conditions_pose_audit2.csv``: 438 face-conditions
    faces sampled by strata of ``|yaw|``, pose 0 frontal / 1 ambiguous / 2 clearly turned):
    recall of the clearly turned faces with a yaw (found, or detected without landmarks) and
    the shares of frontal and ambiguous faces rejected, each face weighted by its stratum's
    size over its audited count, so the rates estimate the audit's pool (every face-conditions
    face in neither earlier audit); dev and holdout (face-conditions' rule)."""
    p = pose_audit2(fc_faces, data)
    hold = is_holdout(p["path"], SHARES["face-conditions"])
    n = {
        part: "/".join(str(int(((p["pose"] == k) & (hold == part)).sum())) for k in (0, 1, 2))
        for part in (False, True)
    }
    print(
        f"second pose audit (face-conditions, {len(p)} faces, stratum-weighted; frontal/ambiguous/turned "
        f"dev {n[False]}, holdout {n[True]}): |yaw| >   recall clearly turned (with no_face)   "
        "frontal rejected   ambiguous rejected   [dev | holdout]"
    )
    print_rates([p[hold == part] for part in (False, True)], default, frontal_no_face=False)
    cells = []
    for part in (False, True):
        lo, hi = bootstrap_recall(p[hold == part].reset_index(drop=True), default)
        cells.append(f"{lo:.3f}-{hi:.3f}")
    print(
        f"  recall at {default:g}, 95% bootstrap interval (faces resampled within strata, "
        f"{N_BOOT} draws): {' | '.join(cells)}"
    )


SECOND_ANNOTATOR_THRESHOLDS = (20, 22, 25, 30)


def cohen_kappa(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> float:
    """Cohen's kappa of two labellings over classes 0, 1, 2; with ``w``, each face weighted
    (the agreement and the chance agreement taken over weighted proportions)."""
    m = confusion(a, b, w)
    m = m / m.sum()
    chance = float(m.sum(axis=1) @ m.sum(axis=0))
    return (float(np.trace(m)) - chance) / (1 - chance)


def confusion(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """3 x 3 (weighted) counts: rows ``a``'s class 0, 1, 2; columns ``b``'s."""
    a, b = np.asarray(a, int), np.asarray(b, int)
    m = np.zeros((3, 3))
    np.add.at(m, (a, b), np.ones(len(a)) if w is None else np.asarray(w, float))
    return m


def consensus(a: pd.Series, b: pd.Series) -> pd.Series:
    """2 where both annotators say clearly turned, 0 where both say frontal, -1 otherwise
    (excluded: :func:`rates` counts no class -1)."""
    return pd.Series(
        np.where((a == 2) & (b == 2), 2, np.where((a == 0) & (b == 0), 0, -1)), a.index
    )


def adjudicated(p: pd.DataFrame) -> pd.Series:
    """Each face's adjudicated pose: the median of the annotators' labels, ``pose`` (A),
    ``pose_b`` (B) and, where A and B disagree, ``pose_c`` (C, the third annotator); where they
    agree it is their label. With all three different (0, 1, 2) that is 1, ambiguous."""
    c = p["pose_c"] if "pose_c" in p else pd.Series(np.nan, p.index)
    a, b = p["pose"], p["pose_b"]
    if ((a != b) & c.isna()).any():
        n = int(((a != b) & c.isna()).sum())
        raise SystemExit(f"{n} faces where pose and pose_b disagree have no pose_c")
    votes = np.stack([a, b, c.fillna(a)], axis=1)
    return pd.Series(np.median(votes, axis=1).astype(int), p.index)


def third_annotator(p: pd.DataFrame) -> None:
    """The third annotator (``pose_c``): on the faces where A and B agree (shown among the
    disagreements so C could not tell them apart), how often C agrees with both; on the
    disagreements, which side C takes."""
    c = p[p["pose_c"].notna()]
    agree = c[c["pose"] == c["pose_b"]]
    split = c[c["pose"] != c["pose_b"]]
    print(
        f"  third annotator (pose_c, {len(c)} faces: the {len(split)} where A and B disagree and "
        f"{len(agree)} where they agree, shuffled together): agrees with A and B on "
        f"{int((agree['pose_c'] == agree['pose']).sum())} of {len(agree)}; on the disagreements "
        f"sides with A {int((split['pose_c'] == split['pose']).sum())}, with B "
        f"{int((split['pose_c'] == split['pose_b']).sum())}, neither "
        f"{int(((split['pose_c'] != split['pose']) & (split['pose_c'] != split['pose_b'])).sum())}"
    )


def second_annotator(fc_faces: pd.DataFrame, default: float, data: Path = DATA) -> None:
    """The second annotator of the second pose audit (``pose_b``, labelled blind to ``pose`` and
    to the yaw): agreement with ``pose`` (confusion matrix, Cohen's kappa unweighted and
    stratum-weighted), then recall of the clearly turned faces with a yaw / share of frontal
    faces rejected at ``|yaw| >`` :data:`SECOND_ANNOTATOR_THRESHOLDS`, dev | holdout,
    stratum-weighted, under annotator A (``pose``), B (``pose_b``), their consensus (both 2
    clearly turned, both 0 frontal, the rest left out) and the adjudicated labels (the median of
    A, B and the third annotator ``pose_c``, :func:`adjudicated`)."""
    p = pose_audit2(fc_faces, data)
    m = confusion(p["pose"], p["pose_b"]).astype(int)
    print(
        "second pose audit, second annotator: confusion (rows A frontal/ambiguous/turned, columns B) "
        + " / ".join(" ".join(str(x) for x in row) for row in m)
        + f"; agreement {np.trace(m) / m.sum():.3f}, Cohen's kappa {cohen_kappa(p['pose'], p['pose_b']):.3f}"
        f" (stratum-weighted {cohen_kappa(p['pose'], p['pose_b'], p['w']):.3f})"
    )
    hold = is_holdout(p["path"], SHARES["face-conditions"])
    labellings = {
        "A": p["pose"],
        "B": p["pose_b"],
        "A and B": consensus(p["pose"], p["pose_b"]),
        "adjudicated": adjudicated(p),
    }
    third_annotator(p)
    heads = []
    for name, pose in labellings.items():
        n = [
            f"{int(((pose == 2) & (hold == part)).sum())}/{int(((pose == 0) & (hold == part)).sum())}"
            for part in (False, True)
        ]
        heads.append(f"{name} (turned/frontal dev {n[0]}, holdout {n[1]})")
    print(
        "  |yaw| >   recall clearly turned / frontal rejected [dev | holdout]: " + "; ".join(heads)
    )
    for thr in sorted({*SECOND_ANNOTATOR_THRESHOLDS, default}):
        cells = []
        for pose in labellings.values():
            q = p.assign(pose=pose)
            r = [rates(q[hold == part], thr) for part in (False, True)]
            cells.append(" | ".join(f"{x['turned']:.3f} / {x['frontal']:.3f}" for x in r))
        mark = " <- default" if thr == default else ""
        print(f"  {thr:5g}   " + "   ".join(cells) + mark)


N_BOOT = 1000


def bootstrap_recall(d: pd.DataFrame, t: float, seed: int = 0) -> tuple[float, float]:
    """2.5% and 97.5% quantiles of the weighted recall of clearly turned faces at ``|yaw| > t``
    over :data:`N_BOOT` resamples of ``d``'s faces, each stratum resampled to its own size."""
    rng = np.random.default_rng(seed)
    groups = [g.index.to_numpy() for _, g in d.groupby("stratum")]
    draws = []
    for _ in range(N_BOOT):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        draws.append(rates(d.loc[idx].reset_index(drop=True), t)["turned"])
    lo, hi = np.nanquantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def pose_audit2(fc_faces: pd.DataFrame, data: Path = DATA) -> pd.DataFrame:
    """``face_conditions_pose_audit2.csv`` joined with a ``curate faces`` table of
    face-conditions, with ``w``: the stratum weight (``stratum_size / stratum_audited``)."""
    p = pd.read_csv(AUDIT / "face_conditions_pose_audit2.csv")
    faces = fc_faces.assign(
        path=[Path(x).resolve().relative_to(data.resolve()).as_posix() for x in fc_faces["path"]]
    )
    p = p.merge(faces, on="path", how="left", validate="one_to_one")
    if p["face_found"].isna().any():
        raise SystemExit(
            f"{int(p['face_found'].isna().sum())} audited faces are not in the faces table"
        )
    p["face_found"] = p["face_found"].astype(bool)
    p["w"] = p["stratum_size"] / p["stratum_audited"]
    return p


def main() -> None:
    from curate.screens.faces import DEFAULT_MAX_YAW

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val-faces", type=Path, help="curate faces table of fer2013/val")
    ap.add_argument(
        "--fc-faces", type=Path, required=True, help="curate faces table of face-conditions"
    )
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--second-audit-only",
        action="store_true",
        help="print only the second pose audit and its second annotator (no --val-faces needed)",
    )
    args = ap.parse_args()
    fc = pd.read_parquet(args.fc_faces)
    if args.second_audit_only:
        second_pose_audit(fc, DEFAULT_MAX_YAW, args.data)
        second_annotator(fc, DEFAULT_MAX_YAW, args.data)
        return
    if args.val_faces is None:
        ap.error("--val-faces is required without --second-audit-only")
    a = audit_table(pd.read_parquet(args.val_faces), fc, args.data)
    report(a, DEFAULT_MAX_YAW)
    first_pose_audit(fc, DEFAULT_MAX_YAW, args.data)
    second_pose_audit(fc, DEFAULT_MAX_YAW, args.data)
    second_annotator(fc, DEFAULT_MAX_YAW, args.data)


if __name__ == "__main__":
    main()
