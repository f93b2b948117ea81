"""Compare occlusion weights on expression bias and on the occlusion benchmarks (issue 23).

For each weights file given (default: the shipped one), on the same aligned faces (found once
with the screen's litert landmarker, kept in ``--crops`` between runs):

- the colour studio portraits of ``taiwanese-posed`` (all frontal and uncovered: every flag is
  wrong): faces flagged occluded at ``--max-occlusion``, per expression class, dev and holdout
  performers (``curate/faces/holdout.py``), and the highest scores;
- the FER2013 hand labels' holdout part (never fitted on; aligned by the recipe's own crops
  cache, ``--fer-crops``): the share of the uncovered faces flagged, per class (the folder),
  and AUROC of ``occlusion_any`` against ``occluded`` (all, randomly sampled);
- face-conditions: AUROC of ``occlusion_any``, ``occluded`` vs unflagged, dev and holdout
  (the file-name rule, share 0.5; the target is 0.85 on holdout);
- the blind face audit: AUROC of ``occlusion`` against the occlusion policy and of
  ``occlusion_any`` against anything over the face, and the share of its frontal uncovered
  ``fer2013/val`` faces flagged, dev and holdout.

Dev figures may choose between weights; holdout figures report.

Usage::

    python -m bench.experiments.occlusion_expression [WEIGHTS ...] --crops /tmp/occ_eval.npz \\
        --fer-crops /tmp/fer_aligned.npz [--max-occlusion 0.45]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import AUDIT, DATA
from curate.faces.fit_occlusion import auroc
from curate.faces.holdout import SHARES, holdout_subjects, is_holdout
from curate.faces.landmarks import quiet_native_stderr
from curate.faces.litert import LiteFaceFinder
from curate.faces.model_file import resolve_face_model
from curate.faces.occlusion import OCCLUSION_THRESHOLD, OCCLUSION_WEIGHTS, OcclusionModel

POLICY = {"hand", "hand_edge", "sunglasses", "mask", "hair", "other"}


def eval_paths(data: Path) -> list[str]:
    """Every face the comparison reads, relative to ``data``: taiwanese-posed, face-conditions,
    fer2013/val."""
    tw = pd.read_csv(data / "taiwanese-posed" / "manifest.csv")["path"]
    fc = pd.read_csv(data / "face-conditions" / "labels.csv")["path"]
    val = sorted(p.relative_to(data).as_posix() for p in (data / "fer2013" / "val").rglob("*.jpg"))
    return [*("taiwanese-posed/" + tw), *("face-conditions/" + fc), *val]


def aligned(data: Path, cache: Path | None) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(paths, found, aligned 48x48 faces) of :func:`eval_paths`, from ``cache`` when it has them."""
    paths = eval_paths(data)
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if list(z["paths"]) == paths:
            return pd.Series(paths), z["found"], z["aligned"]
    with quiet_native_stderr():
        finder = LiteFaceFinder(resolve_face_model(None))
    found = np.zeros(len(paths), bool)
    faces = np.zeros((len(paths), 48, 48), np.uint8)
    for i, p in enumerate(paths):
        r = finder.find_face(data / p)
        found[i] = r.face_found
        if r.aligned is not None:
            faces[i] = r.aligned
        if i % 1000 == 999:
            print(f"  {i + 1} of {len(paths)} faces found", flush=True)
    if cache is not None:
        np.savez_compressed(cache, paths=np.array(paths), found=found, aligned=faces)
    return pd.Series(paths), found, faces


def shares(flags: pd.Series, by: pd.Series) -> str:
    return ", ".join(f"{k} {int(g.sum())}/{len(g)}" for k, g in flags.groupby(by))


def report(weights: Path, faces: pd.DataFrame, fer: pd.DataFrame, threshold: float) -> None:
    model = OcclusionModel(weights)
    d = faces.copy()
    scores = np.array(model.scores(np.stack(d["aligned"].to_numpy())))
    d["occlusion"] = np.where(d["found"], scores[:, 0], np.nan)
    d["occlusion_any"] = np.where(d["found"], scores[:, 1], np.nan)
    print(f"== {weights} (--max-occlusion {threshold:g})")
    tw = d[d["set"] == "tw"]
    flag = tw["occlusion"] > threshold
    for part in ("dev", "holdout"):
        m = tw["part"] == part
        print(
            f"  taiwanese-posed {part} performers flagged occluded {int(flag[m].sum())}/{int(m.sum())}: "
            + shares(flag[m], tw.loc[m, "label"])
        )
    print("  taiwanese-posed, both: " + shares(flag, tw["label"]))
    top = tw.sort_values("occlusion").tail(4)
    print(
        "  highest: "
        + ", ".join(
            f"{p.split('/')[-1]} {lab} {part} {s:.3f}"
            for p, lab, part, s in zip(
                top["path"], top["label"], top["part"], top["occlusion"], strict=True
            )
        )
    )
    fs = np.array(model.scores(np.stack(fer["aligned"].to_numpy())))
    occ, any_ = fs[:, 0], fs[:, 1]
    y = fer["occluded"].to_numpy()
    rnd = (fer["sample"] == "random").to_numpy()
    bare = y == 0
    cls = fer["path"].str.split("/").str[0]
    print(
        f"  FER2013 hand labels, holdout: AUROC occlusion_any vs occluded {auroc(y, any_):.4f} "
        f"(random {auroc(y[rnd], any_[rnd]):.4f}); uncovered flagged {np.mean(occ[bare] > threshold):.3f} "
        f"(n {int(bare.sum())}): "
        + ", ".join(
            f"{c} {np.mean(occ[bare & (cls == c).to_numpy()] > threshold):.3f}"
            for c in sorted(cls.unique())
        )
    )
    fc = d[(d["set"] == "fc") & d["found"]]
    keep = (fc["occluded"] == 1) | ((fc["yaw_over_30"] == 0) & (fc["yaw_over_45"] == 0))
    cells = []
    for part in ("dev", "holdout"):
        f = fc[keep & (fc["part"] == part)]
        cells.append(
            f"{part} {auroc(f['occluded'].to_numpy(), f['occlusion_any'].to_numpy()):.4f} "
            f"(n {len(f)}, {int(f['occluded'].sum())} occluded)"
        )
    print("  face-conditions AUROC occlusion_any, occluded vs unflagged: " + " | ".join(cells))
    a = pd.read_csv(AUDIT / "face_audit.csv").fillna({"cover": ""})
    a = a.merge(d[["path", "found", "occlusion", "occlusion_any"]], on="path")
    a["part"] = np.where(is_holdout(a["path"], SHARES["pose_audit"]), "holdout", "dev")
    kinds = a["cover"].map(lambda c: {k for k in c.split(";") if k})
    a["policy"] = kinds.map(lambda k: bool(k & POLICY))
    a["covered"] = kinds.map(lambda k: bool(k & (POLICY | {"clear_glasses"})))
    cells = []
    for part in ("dev", "holdout"):
        f = a[a["found"] & (a["part"] == part)]
        u = f[(f["source"] == "fer2013/val") & (f["cover"] == "") & (f["pose"] == 0)]
        cells.append(
            f"{part} {auroc(f['policy'].to_numpy(), f['occlusion'].to_numpy()):.4f} / "
            f"{auroc(f['covered'].to_numpy(), f['occlusion_any'].to_numpy()):.4f}, "
            f"frontal uncovered flagged {np.mean(u['occlusion'] > threshold):.3f} (n {len(u)})"
        )
    print("  face audit, occlusion vs policy / occlusion_any vs any cover: " + " | ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path, nargs="*", default=[OCCLUSION_WEIGHTS])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--crops", type=Path, default=None, help="cache of the aligned faces (.npz)")
    ap.add_argument(
        "--fer-crops",
        type=Path,
        required=True,
        help="the recipe's crops cache (bench/recipes/fit_occlusion.py --crops-cache)",
    )
    ap.add_argument("--max-occlusion", type=float, default=OCCLUSION_THRESHOLD)
    args = ap.parse_args()
    paths, found, faces = aligned(args.data, args.crops)
    d = pd.DataFrame({"path": paths, "found": found, "aligned": list(faces)})
    d["set"] = np.select(
        [
            d["path"].str.startswith("taiwanese-posed/"),
            d["path"].str.startswith("face-conditions/"),
        ],
        ["tw", "fc"],
        "val",
    )
    man = pd.read_csv(args.data / "taiwanese-posed" / "manifest.csv")
    man["path"] = "taiwanese-posed/" + man["path"]
    held = set(holdout_subjects(man["subject"]))
    man["part"] = np.where(man["subject"].isin(held), "holdout", "dev")
    lab = pd.read_csv(args.data / "face-conditions" / "labels.csv")
    lab["path"] = "face-conditions/" + lab["path"]
    lab["part"] = np.where(is_holdout(lab["path"], SHARES["face-conditions"]), "holdout", "dev")
    d = d.merge(man[["path", "label", "part"]], on="path", how="left").merge(
        lab[["path", "yaw_over_30", "yaw_over_45", "occluded", "part"]],
        on="path",
        how="left",
        suffixes=("", "_fc"),
    )
    d["part"] = d["part"].fillna(d.pop("part_fc"))
    z = np.load(args.fer_crops)
    crops, rel = z["crops"][z["found"]], z["paths"][z["found"]]
    hl = pd.read_csv(AUDIT / "fer2013_train_occlusion_labels.csv")
    hl = hl[is_holdout(hl["path"], SHARES["fer2013_train_labels"])]
    where = {p: i for i, p in enumerate(rel)}
    hl = hl[hl["path"].isin(where)].reset_index(drop=True)
    hl["aligned"] = [crops[where[p]] for p in hl["path"]]
    for w in args.weights:
        report(w, d, hl, args.max_occlusion)


if __name__ == "__main__":
    main()
