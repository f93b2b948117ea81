"""Quality of `curate screen` on FER2013 with 20% injected symmetric label noise.

Injects symmetric noise into (part of) the FER2013 train split (each chosen image gets
a label drawn uniformly from the other classes), builds triplets, screens them, and
reports on the same embeddings:

- the share of tuples rejected; precision and recall of the rejected tuples for
  containing a noisy image (and the share of tuples that contain one, the precision
  of rejecting at random);
- the AUROC of the ``images_suspect`` ranking for the noisy images (its
  ``suspicion`` share, its file order, and its continuous ``mean_z``), next to a
  plain k-nearest-neighbour label-disagreement baseline (share of an image's k
  nearest neighbours, by cosine, whose observed label differs).

The screen needs a backbone that knows faces: pass ``--weights`` (a curate
fine-tuning run folder, or a weights file with ``--backbone``); without either, the
bundled default backbone is used. That one was trained on FER2013 train, so it has
seen the true labels of the train images: measure it on ``--split val``, or read
train-split numbers as optimistic. With ``--split-half``
only one half of train is screened and the other half's clean manifest is written
to ``OUT/train_half_a.csv`` to fine-tune a backbone on images the screen never sees.

    python -m bench.quality.quality_fer2013 --weights RUN [--backbone NAME] [--max-images 6000]
        [--noise 0.2] [--per-anchor 3] [--k 10] [--split-half] [--out /tmp/q]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.metrics import auroc, knn_disagreement
from bench.common.paths import DATA

DEFAULT_DATA = DATA / "fer2013"


def make_manifest(
    data: Path,
    out: Path,
    *,
    split: str,
    noise: float,
    max_images: int | None,
    split_half: bool,
    seed: int,
) -> pd.DataFrame:
    files = sorted((data / split).glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no FER2013 images under {data / split}")
    df = pd.DataFrame(
        {"path": [str(p) for p in files], "true_label": [p.parent.name for p in files]}
    )
    rng = np.random.default_rng(seed)
    if split_half:
        half = rng.permutation(len(df)) < len(df) // 2
        df.loc[half, ["path", "true_label"]].rename(columns={"true_label": "label"}).to_csv(
            out / "train_half_a.csv", index=False
        )
        df = df.loc[~half].reset_index(drop=True)
    if max_images and max_images < len(df):
        df = df.iloc[np.sort(rng.choice(len(df), max_images, replace=False))].reset_index(drop=True)
    classes = np.array(sorted(df["true_label"].unique()))
    noisy = rng.random(len(df)) < noise
    label = df["true_label"].to_numpy().copy()
    for i in np.flatnonzero(noisy):
        label[i] = rng.choice(classes[classes != label[i]])
    df["label"] = label
    df["noisy"] = noisy
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument(
        "--split",
        default="train",
        choices=["train", "val"],
        help="FER2013 folder to inject noise into; use val when the backbone was "
        "trained on train (it has seen the true labels of those images)",
    )
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--per-anchor", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--split-half", action="store_true")
    ap.add_argument("--alpha-pos", type=float, default=0.05)
    ap.add_argument("--alpha-neg", type=float, default=0.05)
    ap.add_argument("--null", default="effective")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/curate_quality_fer2013"))
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="write the manifests (and train_half_a.csv with --split-half), then stop",
    )
    args = ap.parse_args()

    from curate.build import build_tuples
    from curate.screen import screen

    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = make_manifest(
        args.data,
        args.out,
        split=args.split,
        noise=args.noise,
        max_images=args.max_images,
        split_half=args.split_half,
        seed=args.seed,
    )
    manifest.to_csv(args.out / "manifest_noisy.csv", index=False)
    if args.prepare_only:
        print(
            f"wrote {args.out / 'manifest_noisy.csv'}"
            + (f" and {args.out / 'train_half_a.csv'}" if args.split_half else "")
        )
        return
    build_tuples(
        args.out / "manifest_noisy.csv",
        args.out / "build",
        per_anchor=args.per_anchor,
        seed=args.seed,
    )
    res = screen(
        args.out / "build",
        args.out / "screen",
        backbone=args.backbone,
        weights=args.weights,
        alpha_pos=args.alpha_pos,
        alpha_neg=args.alpha_neg,
        null=args.null,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        seed=args.seed,
        skip_faces_screen=True,
    )

    images = pd.read_parquet(args.out / "build" / "images.parquet")
    noisy_ids = set(images.loc[images["label"] != images["true_label"], "image_id"])
    scores = pd.read_parquet(args.out / "screen" / "scores.parquet")
    members = [c for c in ("anchor", "positive", "negative", "negative2") if c in scores]
    has_noisy = scores[members].isin(noisy_ids).any(axis=1).to_numpy()
    rejected = ~scores["keep"].to_numpy()
    precision = float(has_noisy[rejected].mean()) if rejected.any() else float("nan")
    recall = float(rejected[has_noisy].mean()) if has_noisy.any() else float("nan")

    suspect = pd.read_parquet(args.out / "screen" / "images_suspect.parquet")
    suspect["noisy"] = suspect["image_id"].isin(noisy_ids)
    auc_suspicion = auroc(suspect["suspicion"].to_numpy(), suspect["noisy"].to_numpy())
    auc_order = auroc(-np.arange(len(suspect)), suspect["noisy"].to_numpy())  # the file's order
    auc_mean_z = auroc(suspect["mean_z"].to_numpy(), suspect["noisy"].to_numpy())

    # the kNN baseline on the very embeddings the screen used (its embeddings.parquet)
    table = pd.read_parquet(args.out / "screen" / "embeddings.parquet").set_index("image_id")
    emb = np.stack(table.loc[suspect["image_id"], "embedding"].to_numpy())
    knn = knn_disagreement(emb, suspect["label"].astype(str).to_numpy(), args.k)
    auc_knn = auroc(knn, suspect["noisy"].to_numpy())

    b = res.boundary
    result = {
        "backbone": res.backbone,
        "weights_source": res.weights_source,
        "random_weights": res.random_weights,
        "split": args.split,
        "images": int(len(suspect)),
        "noisy_images": int(suspect["noisy"].sum()),
        "noise": args.noise,
        "tuples": res.n_tuples,
        "rejected": res.n_rejected,
        "rejected_share": res.n_rejected / res.n_tuples,
        "reasons": res.reasons,
        "tuples_with_noisy_share": float(has_noisy.mean()),
        "precision_rejected_has_noisy": precision,
        "recall_noisy_tuples_rejected": recall,
        "auroc_suspicion": auc_suspicion,
        "auroc_images_suspect_order": auc_order,
        "auroc_mean_z": auc_mean_z,
        "auroc_knn_disagreement": auc_knn,
        "k": args.k,
        "per_anchor": args.per_anchor,
        "embeddings_recomputed_for_knn": emb.n_computed,
        "boundary": {
            "null": b.null,
            "d": b.d,
            "d_null": b.d_null,
            "mu": b.mu,
            "sigma": b.sigma,
            "t_pos": b.t_pos,
            "t_neg": b.t_neg,
            "calibration": b.calibration,
        },
        "seconds": round(time.time() - t0, 1),
    }
    (args.out / "quality.json").write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
