"""Why the boundary on batch-hard triplets does or does not find real label noise (issue 25).

Embeds a set of FER2013 images with a network that has not seen their labels, draws the
class-balanced P x K batches of ``curate finetune --mining batch-hard``, mines each image's
hardest positive and negative, applies the in-loop boundary (the alphas of the hardest of
K - 1 / (P - 1) K draws) with each null, and measures against the FERPlus votes:

* a FALSE POSITIVE: the mined positive's FERPlus plurality is not the anchor's label;
* a FALSE NEGATIVE: the mined negative's FERPlus plurality is the anchor's label;
* AUROC of the mined distance for those (d_ap for a false positive, -d_an for a false
  negative): how well ANY threshold on the mined distance could separate them;
* the share of each among the triplets each sub-boundary drops;
* CALIBRATION of the Sidak-adjusted null: how often each sub-boundary fires on triplets
  whose three members all carry their FERPlus label (the nominal rate is alpha);
* a NULL FIT ON THE MINED DISTANCES themselves (the per-anchor hardest distances of each
  label, flagged above their own 1 - alpha quantile): the share of false positives among
  the flagged, i.e. the best any threshold on the mined maxima could do at that rate.

``--per-image`` adds what ACCUMULATING per-image abnormality over ``--epochs`` epochs of
batches could find (multistage suppression), each score's AUROC for a mislabelled image and
the lift of its 20% most suspect images, ranked within each label and over all images:
the class-aware window suspicion (1 - p(label | x), what ``--exclude-suspects`` ranks), the
in-batch margin (mean distance to the own label's batch images minus the nearest other
label's), the anchor's mined hinge (d_ap - d_an), how often an image is mined as a hardest
positive or negative per visit; and, for reference, a 5-fold linear probe's out-of-fold
1 - p(label) on the same embeddings (what cleanlab ranks).

Two settings, no evaluation label used to choose anything::

    # the experiment's base network (trained on train images outside the subset) on the subset
    python -m bench.experiments.mined_null_probe --work /work/scratch/mining/exp --model screener --images train
    # the bundled network (trained on FER2013 Training) on the dev half of PublicTest (curate/faces/holdout.py)
    python -m bench.experiments.mined_null_probe --work /work/scratch/mining/exp --model bundled --images val-dev

``--work`` is the folder of ``bench/experiments/experiment_real_noise.py`` (its ``orig.csv`` and
``screener_bh``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--model", choices=("screener", "bundled"), default="screener")
    p.add_argument("--images", choices=("train", "val-dev"), default="train")
    p.add_argument("--nulls", default="class_empirical,class,effective")
    p.add_argument("--p", type=int, default=4)
    p.add_argument("--k", type=int, default=24)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--max-batches", type=int, default=40)
    p.add_argument("--per-image", action="store_true", help="also the per-image accumulated scores")
    p.add_argument(
        "--epochs", type=int, default=3, help="--per-image: epochs of batches to accumulate over"
    )
    args = p.parse_args(argv)
    import torch
    from sklearn.metrics import roc_auc_score

    from bench.common.ferplus import sha256_of
    from curate.backbone import load_backbone
    from curate.embed import embed_images
    from curate.faces.holdout import is_holdout
    from curate.train.config import ScreenSettings
    from curate.train.loss import InLoopScreen
    from curate.train.mining import ClassBalancedSampler, batch_hard_triplets, mined_alphas

    torch.set_num_threads(1)
    m = pd.read_csv(args.work / "orig.csv")
    if args.images == "train":
        m = m[m["split"] == "train"]
    else:
        m = m[m["split"] == "val"]
        m = m[~is_holdout(m["path"], 0.5)]
    m = m.reset_index(drop=True)
    weights = str(args.work / "screener_bh") if args.model == "screener" else None
    loaded = load_backbone(None, weights, device="cpu")
    emb = embed_images(
        m["path"].tolist(), [sha256_of(x) for x in m["path"]], loaded, cache_dir=None, workers=1
    )
    classes = sorted(m["label"].unique())
    y = m["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    fp = (
        m["ferplus_label"]
        .map({c: i for i, c in enumerate(classes)})
        .fillna(-1)
        .to_numpy()
        .astype(int)
    )
    sampler = ClassBalancedSampler(y, args.p, args.k, 0)
    print(f"{len(m)} images ({args.images}), model {args.model}, P={args.p} K={args.k}")
    for null in args.nulls.split(","):
        a_pos, a_neg = mined_alphas(args.alpha, args.alpha, args.k - 1, (args.p - 1) * args.k)
        screen = InLoopScreen(
            ScreenSettings(alpha_pos=a_pos, alpha_neg=a_neg, null=null, window=2048),
            emb.shape[1],
            1.0,
        )
        rec = []
        for step, b in enumerate(sampler.epoch(0)[: args.max_batches]):
            e, lab = emb[b].astype(np.float32), y[b]
            loc = batch_hard_triplets(torch.from_numpy(e), torch.from_numpy(lab)).numpy()
            r = screen(e, lab, loc, step=step, seed=0)
            screen.commit_pending()
            a, pos, neg = b[loc[:, 0]], b[loc[:, 1]], b[loc[:, 2]]
            rec.append(
                pd.DataFrame(
                    {
                        "false_pos": (fp[pos] >= 0) & (fp[pos] != y[a]),
                        "false_neg": (fp[neg] >= 0) & (fp[neg] == y[a]),
                        "bad_anchor": (fp[a] >= 0) & (fp[a] != y[a]),
                        "anchor_label": y[a],
                        "known": (fp[a] >= 0) & (fp[pos] >= 0) & (fp[neg] >= 0),
                        "bad_member": ((fp[pos] >= 0) & (fp[pos] != y[pos]))
                        | ((fp[neg] >= 0) & (fp[neg] != y[neg])),
                        "d_ap": np.linalg.norm(e[loc[:, 0]] - e[loc[:, 1]], axis=1),
                        "d_an": np.linalg.norm(e[loc[:, 0]] - e[loc[:, 2]], axis=1),
                        "far": r.too_far,
                        "close": r.too_close,
                    }
                )
            )
        d = pd.concat(rec, ignore_index=True)
        print(
            f"{null}: mined {len(d)}; false positives {d.false_pos.mean():.3f}, false negatives "
            f"{d.false_neg.mean():.3f}, anchor mislabelled {d.bad_anchor.mean():.3f}"
        )
        print(
            f"  AUROC d_ap for a false positive {roc_auc_score(d.false_pos, d.d_ap):.3f}; -d_an for a false "
            f"negative {roc_auc_score(d.false_neg, -d.d_an):.3f}"
        )
        for name, flag in (("too_far", "far"), ("too_close", "close")):
            sel = d[d[flag]]
            print(
                f"  {name}: {len(sel)} ({len(sel) / len(d):.3f}); false pos {sel.false_pos.mean():.3f}, "
                f"false neg {sel.false_neg.mean():.3f}, anchor mislabelled {sel.bad_anchor.mean():.3f}",
                flush=True,
            )
        clean = d.known & ~(d.false_pos | d.false_neg | d.bad_anchor | d.bad_member)
        print(
            f"  calibration on {int(clean.sum())} all-clean triplets (nominal {args.alpha}): too_far "
            f"{d.far[clean].mean():.3f}, too_close {d.close[clean].mean():.3f}"
        )
    flagged = d.groupby("anchor_label")["d_ap"].transform(lambda v: v > v.quantile(1 - args.alpha))
    print(
        f"null fit on the mined distances (top {args.alpha:.0%} of d_ap per label): {int(flagged.sum())} flagged, "
        f"false positives {d.false_pos[flagged].mean():.3f} against {d.false_pos.mean():.3f} "
        f"(lift {d.false_pos[flagged].mean() / d.false_pos.mean():.2f})"
    )
    if args.per_image:
        per_image(emb, y, fp, classes, args, m)
    return 0


def per_image(
    emb: np.ndarray,
    y: np.ndarray,
    fp: np.ndarray,
    classes: list[str],
    args: argparse.Namespace,
    m: pd.DataFrame,
) -> None:
    """Scores accumulated per image over the batches of ``--epochs`` epochs, against the FERPlus votes."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from curate.train.config import ScreenSettings
    from curate.train.loss import InLoopScreen
    from curate.train.mining import ClassBalancedSampler, batch_hard_triplets, mined_alphas

    bad = (fp >= 0) & (fp != y)
    a_pos, a_neg = mined_alphas(args.alpha, args.alpha, args.k - 1, (args.p - 1) * args.k)
    screen = InLoopScreen(
        ScreenSettings(alpha_pos=a_pos, alpha_neg=a_neg, null="class_empirical", window=2048),
        emb.shape[1],
        1.0,
    )
    sampler = ClassBalancedSampler(y, args.p, args.k, 0)
    names = (
        "window suspicion",
        "in-batch margin",
        "mined hinge",
        "mined as positive",
        "mined as negative",
    )
    acc = np.zeros((len(names), len(y), 2))
    step = 0
    for epoch in range(args.epochs):
        for b in sampler.epoch(epoch):
            e, lab = emb[b].astype(np.float32), y[b]
            loc = batch_hard_triplets(torch.from_numpy(e), torch.from_numpy(lab)).numpy()
            r = screen(e, lab, loc, step=step, seed=0)
            screen.commit_pending()
            step += 1
            u = e / np.linalg.norm(e, axis=1, keepdims=True)
            dist = np.linalg.norm(u[:, None] - u[None], axis=2)
            same = (lab[:, None] == lab[None]) & ~np.eye(len(b), dtype=bool)
            own = (dist * same).sum(1) / np.maximum(same.sum(1), 1)
            other = np.full(len(b), np.inf)
            for c in np.unique(lab):
                other = np.where(lab != c, np.minimum(other, dist[:, lab == c].mean(1)), other)
            hinge = np.full(len(b), np.nan)
            hinge[loc[:, 0]] = dist[loc[:, 0], loc[:, 1]] - dist[loc[:, 0], loc[:, 2]]
            as_pos = np.bincount(loc[:, 1], minlength=len(b)).astype(float)
            as_neg = np.bincount(loc[:, 2], minlength=len(b)).astype(float)
            susp = r.suspicion if r.suspicion is not None else np.full(len(b), np.nan)
            for i, v in enumerate((susp, own - other, hinge, as_pos, as_neg)):
                ok = np.isfinite(v)
                np.add.at(acc[i], (b[ok], 0), v[ok])
                np.add.at(acc[i], (b[ok], 1), 1.0)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    prob = cross_val_predict(
        LogisticRegression(C=1, max_iter=2000),
        unit,
        y,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        method="predict_proba",
    )
    scores = {
        n: np.divide(
            acc[i, :, 0], acc[i, :, 1], out=np.full(len(y), np.nan), where=acc[i, :, 1] > 0
        )
        for i, n in enumerate(names)
    }
    scores["probe 1 - p(label), out-of-fold"] = 1 - prob[np.arange(len(y)), y]
    print(
        f"\nper image, {args.epochs} epochs of batches; {bad.mean():.3f} of the images mislabelled; per label "
        + ", ".join(f"{c} {bad[y == i].mean():.2f}" for i, c in enumerate(classes))
    )
    for n, sc in scores.items():
        ok = np.isfinite(sc)
        top_label = np.zeros(len(y), bool)
        for c in np.unique(y[ok]):
            i = np.flatnonzero(ok & (y == c))
            top_label[i[np.argsort(-sc[i], kind="stable")[: round(0.2 * len(i))]]] = True
        i = np.flatnonzero(ok)
        top_all = np.zeros(len(y), bool)
        top_all[i[np.argsort(-sc[i], kind="stable")[: round(0.2 * len(i))]]] = True
        within = np.nanmean(
            [
                roc_auc_score(bad[ok & (y == c)], sc[ok & (y == c)])
                for c in np.unique(y)
                if 0 < bad[ok & (y == c)].mean() < 1
            ]
        )
        print(
            f"  {n:32} AUROC {roc_auc_score(bad[ok], sc[ok]):.3f} (mean within a label {within:.3f}); top 20% "
            f"within each label: lift {bad[top_label].mean() / bad[ok].mean():.2f}; over all: lift "
            f"{bad[top_all].mean() / bad[ok].mean():.2f}, leaving out "
            + ", ".join(f"{c} {top_all[y == i].mean():.2f}" for i, c in enumerate(classes)),
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
