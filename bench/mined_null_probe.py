"""Why the boundary on batch-hard triplets does or does not find real label noise (issue 25).

Embeds a set of FER2013 images with a network that has not seen their labels, draws the
class-balanced P x K batches of ``curate finetune --mining batch-hard``, mines each image's
hardest positive and negative, applies the in-loop boundary (the alphas of the hardest of
K - 1 / (P - 1) K draws) with each null, and measures against the FERPlus votes:

* a FALSE POSITIVE: the mined positive's FERPlus plurality is not the anchor's label;
* a FALSE NEGATIVE: the mined negative's FERPlus plurality is the anchor's label;
* AUROC of the mined distance for those (d_ap for a false positive, -d_an for a false
  negative): how well ANY threshold on the mined distance could separate them;
* the share of each among the triplets each sub-boundary drops.

Two settings, no evaluation label used to choose anything::

    # the experiment's base network (trained on train images outside the subset) on the subset
    python bench/mined_null_probe.py --work /work/scratch/mining/exp --model screener --images train
    # the bundled network (trained on FER2013 Training) on the dev half of PublicTest (bench/holdout.py)
    python bench/mined_null_probe.py --work /work/scratch/mining/exp --model bundled --images val-dev

``--work`` is the folder of ``bench/experiment_real_noise.py`` (its ``orig.csv`` and
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
    args = p.parse_args(argv)
    import torch
    from ferplus import sha256_of
    from holdout import is_holdout
    from sklearn.metrics import roc_auc_score

    from curate.backbone import load_backbone
    from curate.embed import embed_images
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
    emb = embed_images(m["path"].tolist(), [sha256_of(x) for x in m["path"]], loaded, cache_dir=None, workers=1)
    classes = sorted(m["label"].unique())
    y = m["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    fp = m["ferplus_label"].map({c: i for i, c in enumerate(classes)}).fillna(-1).to_numpy().astype(int)
    sampler = ClassBalancedSampler(y, args.p, args.k, 0)
    print(f"{len(m)} images ({args.images}), model {args.model}, P={args.p} K={args.k}")
    for null in args.nulls.split(","):
        a_pos, a_neg = mined_alphas(args.alpha, args.alpha, args.k - 1, (args.p - 1) * args.k)
        screen = InLoopScreen(ScreenSettings(alpha_pos=a_pos, alpha_neg=a_neg, null=null, window=2048),
                              emb.shape[1], 1.0)
        rec = []
        for step, b in enumerate(sampler.epoch(0)[:args.max_batches]):
            e, lab = emb[b].astype(np.float32), y[b]
            loc = batch_hard_triplets(torch.from_numpy(e), torch.from_numpy(lab)).numpy()
            r = screen(e, lab, loc, step=step, seed=0)
            screen.commit_pending()
            a, pos, neg = b[loc[:, 0]], b[loc[:, 1]], b[loc[:, 2]]
            rec.append(pd.DataFrame({
                "false_pos": (fp[pos] >= 0) & (fp[pos] != y[a]), "false_neg": (fp[neg] >= 0) & (fp[neg] == y[a]),
                "bad_anchor": (fp[a] >= 0) & (fp[a] != y[a]),
                "d_ap": np.linalg.norm(e[loc[:, 0]] - e[loc[:, 1]], axis=1),
                "d_an": np.linalg.norm(e[loc[:, 0]] - e[loc[:, 2]], axis=1),
                "far": r.too_far, "close": r.too_close}))
        d = pd.concat(rec, ignore_index=True)
        print(f"{null}: mined {len(d)}; false positives {d.false_pos.mean():.3f}, false negatives "
              f"{d.false_neg.mean():.3f}, anchor mislabelled {d.bad_anchor.mean():.3f}")
        print(f"  AUROC d_ap for a false positive {roc_auc_score(d.false_pos, d.d_ap):.3f}; -d_an for a false "
              f"negative {roc_auc_score(d.false_neg, -d.d_an):.3f}")
        for name, flag in (("too_far", "far"), ("too_close", "close")):
            sel = d[d[flag]]
            print(f"  {name}: {len(sel)} ({len(sel) / len(d):.3f}); false pos {sel.false_pos.mean():.3f}, "
                  f"false neg {sel.false_neg.mean():.3f}, anchor mislabelled {sel.bad_anchor.mean():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
