"""Does screening during fine-tuning help? The six-arm experiment of issue 6.

On FER2013 (train to learn, val to measure), with the same backbone, budget and seed:

1. ``none``  - no screening;
2. ``once``  - screening once before training: the train tuples are screened with
   ``curate.screen`` using the network of arm 1 (trained on the same data without
   screening; no face-aware backbone is available offline), then a fresh network is
   trained on the kept tuples;
3. ``every`` - the statistical boundary applied to every batch (``curate finetune``
   default);

each with the original labels (``clean``) and with 20% extra symmetric label noise
injected into train (``noisy``: a random 20% of train images get a label drawn
uniformly from the other classes). Reports validation accuracy and macro F1 of all
six, and for the noisy runs whether the drops hit the tuples that hold a noisy image.

The budget is set by flags, so the same script runs small on a laptop CPU and large
on a GPU box::

    python -m bench.experiments.experiment_finetune --max-train-images 3000 --epochs 4 --device cpu
    python -m bench.experiments.experiment_finetune --max-train-images 0 --epochs 20 --device cuda

``--max-train-images 0`` uses the whole train split. Results: a table on stdout and
``WORK/results.json``.

Measured (2026-11-26, this project's shared 2-core CPU, one torch thread)::

    python -m bench.experiments.experiment_finetune --backbone test_resnet --max-train-images 3000 \
        --max-val-images 1000 --epochs 6 --batch-tuples 32 --lr 3e-3 --device cpu \
        --conditions noisy,clean --work /tmp/exp_cpu            # 31 min

``test_resnet`` is timm's 0.37 M-parameter ResNet, random init, 1 channel, 48x48; a
stratified 3,000-image train sample (2,978 triplets after duplicates), 1,000 val images,
6 epochs of 32 triplets (564 steps), seed 0, alpha 0.05, effective null.

    condition  arm    val acc  macro F1  trained tuples  dropped / rejected
    noisy      none   0.422    0.323     2978            -
    noisy      once   0.418    0.329     2760            7.3% (precision 0.55, recall 0.08 for noisy tuples)
    noisy      every  0.400    0.299     2978            10.7% per step (noisy 11.5%, clean 10.0%)
    clean      none   0.454    0.361     2978            -
    clean      once   0.431    0.346     2807            5.7%
    clean      every  0.432    0.339     2978            10.6% per step

Replicate with ``--seed 1 --conditions noisy --arms none,every`` (other sample, other
noise): none 0.431 / 0.332, every 0.404 / 0.308. With ``--screen-warmup-steps 188``
(screening from epoch 3): every 0.415 / 0.317, 6.4% dropped (noisy 7.2%, clean 5.7%).

In-loop screening does not beat no screening under injected noise here; it costs 2-3
points in both replicates. Why (numbers from ``screen_noisy/scores.parquet``, i.e. the
arm-1 network, d_null 7.1, sigma 0.27, T_pos 1.85, T_neg 0.98):

* the positive sub-boundary tests "farther than random different-label pairs"; a
  mislabelled positive pair *is* such a pair (median d_ap 1.39 against 1.45 for random
  pairs), so it is rejected about as often as the boundary's calibration rate: 0.6% of
  noisy positive pairs against 0.2% of clean ones. In training, positive_too_far
  dropped 0.3% of tuples;
* almost all drops are negative_too_close: 16% of false negatives (negatives whose
  true class is the anchor's) fall below T_neg, but so do 6% of true negatives, which
  are twelve times more numerous. The drops hit noisy tuples at 11.5% against 10.0% for
  clean ones, and the clean condition drops as much (10.6%) as the noisy one: the drop
  rate follows the null's calibration, not the noise, and mostly removes hard true
  negatives, the most informative triplets;
* the classification loss still sees most noisy images (an image trains while any
  tuple holding it is kept);
* the CPU budget gives a weak embedding (42-45% accuracy): clean positive pairs (median
  1.25) are barely closer than random pairs (1.45).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common.paths import ROOT as REPO

DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013"
IMAGE_EXT = (".jpg", ".jpeg", ".png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with train/<class>/ and val/<class>/",
    )
    p.add_argument(
        "--work", type=Path, default=Path("/tmp/curate_experiment_finetune"), help="output folder"
    )
    p.add_argument(
        "--max-train-images", type=int, default=3000, help="stratified train subsample (0: all)"
    )
    p.add_argument(
        "--max-val-images", type=int, default=0, help="stratified val subsample (0: all)"
    )
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-tuples", type=int, default=64)
    p.add_argument("--backbone", default="resnet10t")
    p.add_argument("--in-chans", type=int, default=1)
    p.add_argument("--input-size", type=int, default=48)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--logit-scale", type=float, default=16.0)
    p.add_argument(
        "--noise", type=float, default=0.2, help="share of train images given a wrong label"
    )
    p.add_argument(
        "--alpha", type=float, default=0.05, help="alpha_pos = alpha_neg of both screens"
    )
    p.add_argument("--null", default="effective")
    p.add_argument(
        "--screen-warmup-steps",
        type=int,
        default=0,
        help="arm 3: steps before in-loop screening starts",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--conditions", default="clean,noisy")
    p.add_argument("--arms", default="none,once,every")
    return p.parse_args(argv)


def stratified_subset(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A class-stratified random subset of about ``n`` rows, index kept (all rows when
    ``n`` <= 0)."""
    if n <= 0 or n >= len(df):
        return df
    rng = np.random.default_rng(seed)
    frac = n / len(df)
    keep = [
        rng.choice(idx, max(1, int(round(len(idx) * frac))), replace=False)
        for _, idx in sorted(df.groupby("label").indices.items())
    ]
    return df.iloc[np.sort(np.concatenate(keep))]


def list_split(root: Path, split: str) -> pd.DataFrame:
    rows = [
        {"path": str(f), "label": cls.name, "split": split}
        for cls in sorted((root / split).iterdir())
        if cls.is_dir()
        for f in sorted(cls.iterdir())
        if f.suffix.lower() in IMAGE_EXT
    ]
    if not rows:
        raise SystemExit(f"no images under {root / split}/<class>/")
    return pd.DataFrame(rows)


def make_manifests(args: argparse.Namespace) -> dict[str, Path]:
    """Write ``clean.csv`` and ``noisy.csv`` (train subsample + val) with ``true_label``/``is_noisy``."""
    train = stratified_subset(
        list_split(args.data_root, "train"), args.max_train_images, args.seed
    ).reset_index(drop=True)
    val = stratified_subset(
        list_split(args.data_root, "val"), args.max_val_images, args.seed
    ).reset_index(drop=True)
    classes = sorted(train["label"].unique())
    rng = np.random.default_rng(args.seed + 1)
    noisy = train.copy()
    flip = rng.random(len(noisy)) < args.noise
    others = [[c for c in classes if c != lab] for lab in noisy["label"]]
    noisy.loc[flip, "label"] = [
        others[i][rng.integers(len(classes) - 1)] for i in np.flatnonzero(flip)
    ]
    out: dict[str, Path] = {}
    args.work.mkdir(parents=True, exist_ok=True)
    for name, tr in (("clean", train), ("noisy", noisy)):
        df = pd.concat(
            [tr.assign(true_label=train["label"]), val.assign(true_label=val["label"])],
            ignore_index=True,
        )
        df["is_noisy"] = df["label"] != df["true_label"]
        path = args.work / f"{name}.csv"
        df.to_csv(path, index=False)
        out[name] = path
    return out


def finetune_config(args: argparse.Namespace, **overrides: Any):
    from curate.train.config import EARLIER_DEFAULTS, FinetuneConfig

    base: dict[str, Any] = {**EARLIER_DEFAULTS}  # the settings this bench measured with
    base.update(
        backbone=args.backbone,
        weights="none",
        in_chans=args.in_chans,
        input_size=args.input_size,
        embed_dim=args.embed_dim,
        logit_scale=args.logit_scale,
        epochs=args.epochs,
        batch_tuples=args.batch_tuples,
        lr=args.lr,
        alpha_pos=args.alpha,
        alpha_neg=args.alpha,
        null=args.null,
        seed=args.seed,
        device=args.device,
        checkpoint_every=0,
        screen_warmup_steps=args.screen_warmup_steps,
    )
    base.update(overrides)
    return FinetuneConfig(**base)


def tuple_noise(build: Path, tuples: pd.DataFrame) -> pd.DataFrame:
    """Per tuple: whether the anchor-positive pair or any member holds a noisy image."""
    images = pd.read_parquet(build / "images.parquet").set_index("image_id")
    if "is_noisy" in images:  # manifest extras may come back as strings
        noisy = images["is_noisy"].astype(str).str.strip().str.lower().isin(["true", "1"])
    else:
        noisy = pd.Series(False, index=images.index)
    members = [c for c in ("anchor", "positive", "negative", "negative2") if c in tuples]
    out = pd.DataFrame({"tuple_id": tuples["tuple_id"]})
    out["noisy_pos_pair"] = (
        noisy.loc[tuples["anchor"]].to_numpy() | noisy.loc[tuples["positive"]].to_numpy()
    )
    out["noisy_any"] = np.any([noisy.loc[tuples[c]].to_numpy() for c in members], axis=0)
    return out


def _share(mask: pd.Series, weights: pd.Series | None = None) -> float | None:
    if len(mask) == 0:
        return None
    return (
        float(mask.mean())
        if weights is None
        else float((mask * weights).sum() / max(weights.sum(), 1))
    )


def drop_diagnostics(run: Path, build: Path) -> dict[str, Any]:
    """For in-loop screening: drop rate of tuples with and without a noisy image."""
    drops = pd.read_parquet(run / "tuple_drops.parquet")
    tuples = pd.read_parquet(build / "tuples.parquet")
    d = drops.merge(tuple_noise(build, tuples), on="tuple_id")
    d["dropped"] = (d["n_too_far"] + d["n_too_close"]).clip(upper=d["n_seen"])
    seen = d["n_seen"].clip(lower=1)
    out = {"mean_drop_rate": float(d["dropped"].sum() / seen.sum())}
    for key in ("noisy_any", "noisy_pos_pair"):
        g = d[d[key]]
        c = d[~d[key]]
        out[f"drop_rate_{key}"] = (
            float(g["dropped"].sum() / max(g["n_seen"].sum(), 1)) if len(g) else None
        )
        out[f"drop_rate_not_{key}"] = (
            float(c["dropped"].sum() / max(c["n_seen"].sum(), 1)) if len(c) else None
        )
        out[f"too_far_rate_{key}"] = (
            float(g["n_too_far"].sum() / max(g["n_seen"].sum(), 1)) if len(g) else None
        )
        out[f"too_far_rate_not_{key}"] = (
            float(c["n_too_far"].sum() / max(c["n_seen"].sum(), 1)) if len(c) else None
        )
    out["share_noisy_any"] = float(d["noisy_any"].mean())
    out["share_of_drops_on_noisy_any"] = float(
        d.loc[d["noisy_any"], "dropped"].sum() / max(d["dropped"].sum(), 1)
    )
    metrics = pd.read_parquet(run / "metrics.parquet")
    train = metrics[metrics["phase"] == "train"]
    out["drop_rate_by_epoch"] = train.groupby("epoch")["share_dropped"].mean().round(4).tolist()
    out["too_far_by_epoch"] = train.groupby("epoch")["share_too_far"].mean().round(4).tolist()
    out["too_close_by_epoch"] = train.groupby("epoch")["share_too_close"].mean().round(4).tolist()
    out["d_null_by_epoch"] = train.groupby("epoch")["d_null"].mean().round(3).tolist()
    out["steps_all_dropped"] = int(train["all_dropped"].sum())
    return out


def screen_diagnostics(screen_dir: Path, build: Path) -> dict[str, Any]:
    """For screening once: rejected share, and precision/recall of rejections for noisy tuples."""
    scores = pd.read_parquet(screen_dir / "scores.parquet")
    scores = scores[scores["split"].fillna("") != "val"] if "split" in scores else scores
    d = scores.merge(tuple_noise(build, scores), on="tuple_id")
    rej = ~d["keep"].astype(bool)
    out = {"rejected_share": float(rej.mean()), "share_noisy_any": float(d["noisy_any"].mean())}
    if d["noisy_any"].any():
        tp = int((rej & d["noisy_any"]).sum())
        out["precision_noisy_any"] = float(tp / max(int(rej.sum()), 1))
        out["recall_noisy_any"] = float(tp / int(d["noisy_any"].sum()))
    boundary = json.loads((screen_dir / "boundary.json").read_text())
    out.update({k: boundary[k] for k in ("d_null", "t_pos", "t_neg")})
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from curate.build import build_tuples
    from curate.screen import screen
    from curate.train.loop import finetune

    torch.set_num_threads(args.threads)
    started = time.time()
    manifests = make_manifests(args)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "arms": {}}
    for cond in args.conditions.split(","):
        build = args.work / f"build_{cond}"
        t0 = time.time()
        b = build_tuples(manifests[cond], build, seed=args.seed)
        results.setdefault("builds", {})[cond] = {
            "images": len(b.images),
            "tuples": len(b.tuples),
            "seconds": round(time.time() - t0, 1),
        }
        print(f"[{cond}] build-tuples: {len(b.tuples)} tuples, {time.time() - t0:.0f}s", flush=True)
        for arm in args.arms.split(","):
            key = f"{cond}/{arm}"
            t0 = time.time()
            extra: dict[str, Any] = {}
            if arm == "none":
                res = finetune(
                    build,
                    args.work / f"run_{cond}_none",
                    finetune_config(args, screen_every_step=False),
                    restart=True,
                )
            elif arm == "every":
                res = finetune(
                    build,
                    args.work / f"run_{cond}_every",
                    finetune_config(args, screen_every_step=True),
                    restart=True,
                )
                extra = drop_diagnostics(res.run_dir, build)
            elif arm == "once":
                probe = args.work / f"run_{cond}_none"
                if not (probe / "model.safetensors").is_file():
                    raise SystemExit(
                        "arm 'once' screens with the network of arm 'none': run that arm first"
                    )
                sdir = args.work / f"screen_{cond}"
                screen(
                    build,
                    sdir,
                    weights=str(probe),
                    alpha_pos=args.alpha,
                    alpha_neg=args.alpha,
                    null=args.null,
                    device=args.device,
                    seed=args.seed,
                    skip_faces_screen=True,
                )
                extra = screen_diagnostics(sdir, build)
                res = finetune(
                    sdir,
                    args.work / f"run_{cond}_once",
                    finetune_config(args, screen_every_step=False),
                    restart=True,
                )
            else:
                raise SystemExit(f"unknown arm {arm!r}")
            results["arms"][key] = {
                "val_accuracy": res.final.get("accuracy"),
                "val_macro_f1": res.final.get("macro_f1"),
                "tuples_trained": len(pd.read_parquet(res.run_dir / "tuple_drops.parquet")),
                "steps": res.run["counts"]["steps"],
                "seconds": round(time.time() - t0, 1),
                **extra,
            }
            r = results["arms"][key]
            print(
                f"[{key}] acc {r['val_accuracy']:.4f}  macro-F1 {r['val_macro_f1']:.4f}  "
                f"({r['seconds']:.0f}s)",
                flush=True,
            )
            (args.work / "results.json").write_text(json.dumps(results, indent=2))
    results["seconds"] = round(time.time() - started, 1)
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        "\ncondition  arm    val_acc  macro_F1  tuples  steps  drop/reject share  drop rate noisy / clean tuples"
    )
    for key, r in results["arms"].items():
        cond, arm = key.split("/")
        share = r.get("mean_drop_rate", r.get("rejected_share"))
        noisy = ""
        if (
            r.get("drop_rate_noisy_any") is not None
            and r.get("drop_rate_not_noisy_any") is not None
        ):
            noisy = f"{r['drop_rate_noisy_any']:.3f} / {r['drop_rate_not_noisy_any']:.3f}"
        elif r.get("precision_noisy_any") is not None:
            noisy = f"precision {r['precision_noisy_any']:.3f} recall {r['recall_noisy_any']:.3f}"
        print(
            f"{cond:9}  {arm:5}  {r['val_accuracy']:.4f}   {r['val_macro_f1']:.4f}   {r['tuples_trained']:6d}  "
            f"{r['steps']:5d}  {'' if share is None else f'{share:.3f}':17}  {noisy}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data_root.is_dir():
        print(f"FER2013 not found at {args.data_root}; pass --data-root", file=sys.stderr)
        return 2
    results = run(args)
    print_table(results)
    print(f"\nresults: {args.work / 'results.json'}  ({results['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
