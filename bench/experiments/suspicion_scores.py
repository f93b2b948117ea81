"""Which suspicion score finds FER2013's wrong labels among the training images (issue 25, third
round): out-of-sample priors against the running area under the margin, measured on the training
images' FERPlus votes (never PublicTest).

Reads the work folder of ``experiment_real_noise.py`` (its batch-hard arms, ``--init base``):
the 3,001-image subset (``orig_train.csv``), the base network ``screener_bh`` (trained on 8,001
other Training images, so its predictions on the subset are out-of-sample), the face-screen
folders ``screens/bh_once_s<seed>`` (``curate screen`` with that network: its label suspicion)
and the runs of ``--arm`` recorded with ``--record-scores`` (every visit's head score and logits,
``visit_scores.parquet``). Per score: AUROC for a wrong label over all images and within each
label (mean over labels), and the share of wrong labels among its 10% and 20% most suspect images
(``prec10``, ``prec20``: over all images; ``_pc``: the same share of each label; ``_w``: weighted
by the image's visits, as the suppressed triplets are). Scores:

* out-of-sample, fixed: ``base_head`` (the base network's best other log-probability minus its
  label's), ``probe`` (1 - p(label) of a 5-fold linear probe on its embeddings, what cleanlab
  ranks), ``knn30`` (share of the 30 nearest embeddings with another label), ``label_screen``
  (``curate screen``'s ``suspicion``: the ``--suspect-prior``);
* running, over the visits of a run (seeds averaged): ``aum`` (the mean head score, the default's
  ``--suspect-score head``), ``1-p`` (mean 1 - softmax p(label)), ``first`` (the first visit's
  head score, before the run trained on the image), and the rank means ``aum+label_screen``
  (``--suspect-prior``), ``aum+base_head``, ``aum+knn30``;
* confident learning (``cl``, per-class thresholds instead of a fixed share: an image is flagged
  when another class's mean probability passes that class's mean self-confidence and its own
  does not): on the running mean probabilities and on the base network's.

Also the FERPlus votes a wrong label's own class got (how systematic the noise is)::

    PYTHONPATH=. python -m bench.experiments.suspicion_scores --work /work/scratch/mining/exp \\
        --arm full_suppress_head_pos --seeds 0,1,2,3,4 --out bench/results/real_noise_suspicion_scores.csv
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.ferplus import FERPLUS_TO_FER, SHARED, sha256_of

# FER2013 class -> its FERPlus vote column
EMOTION_VOTES = {fer: plus for plus, fer in FERPLUS_TO_FER.items()}


def pct(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x) / len(x)


def measures(x: np.ndarray, bad: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out = {"auroc": float(roc_auc_score(bad, x))}
    out["auroc_within"] = float(
        np.mean(
            [
                roc_auc_score(bad[y == c], x[y == c])
                for c in np.unique(y)
                if bad[y == c].any() and (~bad[y == c]).any()
            ]
        )
    )
    for q in (0.1, 0.2):
        sel = np.zeros(len(x), bool)
        sel[np.argsort(-x, kind="stable")[: int(round(q * len(x)))]] = True
        pc = np.zeros(len(x), bool)
        for c in np.unique(y):
            at = np.flatnonzero(y == c)
            pc[at[np.argsort(-x[at], kind="stable")[: max(1, int(round(q * len(at))))]]] = True
        tag = f"prec{int(q * 100)}"
        out[tag] = float(bad[sel].mean())
        out[f"{tag}_w"] = float((w * bad)[sel].sum() / w[sel].sum())
        out[f"{tag}_pc"] = float(bad[pc].mean())
    return out


def confident_learning(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Flag per image: its own class's probability is under that class's mean self-confidence
    and another class's passes its own (the off-diagonal of the confident joint)."""
    t = np.array([p[y == j, j].mean() if (y == j).any() else 1.0 for j in range(p.shape[1])])
    above = p >= t[None]
    best = np.where(above, p, -1.0).argmax(1)
    return above.any(1) & (best != y) & ~above[np.arange(len(y)), y]


def base_probabilities(screener: Path, paths: list[str], classes: list[str]) -> np.ndarray:
    """N x classes: the head probabilities of the network ``screener`` for ``paths``."""
    from curate.train.evaluate import predict

    base = predict(screener, paths, device="cpu")
    return base[[f"p_{c}" for c in classes]].to_numpy()


def out_of_sample_scores(
    screener: Path, paths: list[str], y: np.ndarray, pb: np.ndarray
) -> dict[str, np.ndarray]:
    """Per image, scores of the network ``screener`` (which has not seen these labels):
    ``base_head`` (its head's margin against the label: best other log-probability minus the
    label's), ``probe`` (1 - the label's probability by a 5-fold logistic probe on its
    normalised embeddings) and ``knn30`` (the share of the 30 nearest embeddings with another
    label). ``y``: label codes; ``pb``: :func:`base_probabilities` of the same images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from curate.backbone import load_backbone
    from curate.embed import embed_images

    n = len(paths)
    lp = np.log(np.clip(pb, 1e-12, 1))
    other = np.where(np.eye(pb.shape[1])[y] > 0, -np.inf, lp)
    emb = embed_images(
        paths,
        [sha256_of(p) for p in paths],
        load_backbone(None, str(screener), device="cpu"),
        cache_dir=None,
        workers=1,
    )
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    probe = cross_val_predict(
        LogisticRegression(max_iter=2000, C=1.0),
        e,
        y,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        method="predict_proba",
    )
    sim = e @ e.T
    np.fill_diagonal(sim, -9)
    nn = np.argsort(-sim, 1)[:, :30]
    return {
        "base_head": other.max(1) - lp[np.arange(n), y],
        "probe": 1 - probe[np.arange(n), y],
        "knn30": 1 - (y[nn] == y[:, None]).mean(1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--arm", default="full_suppress_head_pos")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument(
        "--votes", type=Path, default=SHARED / "ferplus" / "ferplus_votes_train_val.csv"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    m = pd.read_csv(args.work / "orig_train.csv")
    m["rp"] = [os.path.realpath(p) for p in m["path"]]
    classes = sorted(m["label"].unique())
    y = m["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    bad = m["mislabelled"].astype(bool).to_numpy()
    pb = base_probabilities(args.work / "screener_bh", m["path"].tolist(), classes)
    fixed = out_of_sample_scores(args.work / "screener_bh", m["path"].tolist(), y, pb)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        sus = pd.read_parquet(args.work / "screens" / f"bh_once_s{seed}" / "images_suspect.parquet")
        ls = pd.Series(
            sus["suspicion"].to_numpy(), index=[os.path.realpath(p) for p in sus["path"]]
        )
        screen = ls.reindex(m["rp"]).to_numpy()
        fixed_s = {
            **fixed,
            "label_screen": np.where(np.isnan(screen), np.nanmedian(screen), screen),
        }
        v = pd.read_parquet(args.work / "runs" / f"{args.arm}_s{seed}" / "visit_scores.parquet")
        ims = pd.read_parquet(args.work / "builds" / f"orig_train_s{seed}" / "images.parquet")
        v["rp"] = [
            os.path.realpath(p) for p in ims.set_index("image_id").loc[v["image_id"], "path"]
        ]
        logits = v[[f"logit_{j}" for j in range(len(classes))]].to_numpy()
        z = np.exp(logits - logits.max(1, keepdims=True))
        z /= z.sum(1, keepdims=True)
        at = m.set_index("rp").index.get_indexer(v["rp"])
        v["own_p"] = z[np.arange(len(v)), y[at]]
        for j in range(len(classes)):
            v[f"p{j}"] = z[:, j]
        g = v.groupby("rp")
        agg = g.agg(
            aum=("head", "mean"),
            first=("head", "first"),
            own_p=("own_p", "mean"),
            w=("head", "size"),
        )
        idx = m.set_index("rp").index.get_indexer(agg.index)  # the visited images
        yy, bb, w = y[idx], bad[idx], agg["w"].to_numpy(float)
        run = {
            "aum": agg["aum"].to_numpy(),
            "1-p": 1 - agg["own_p"].to_numpy(),
            "first": agg["first"].to_numpy(),
        }
        for k in ("label_screen", "base_head", "knn30"):
            run[f"aum+{k}"] = (pct(run["aum"]) + pct(fixed_s[k][idx])) / 2
        for name, x in {**{k: f[idx] for k, f in fixed_s.items()}, **run}.items():
            rows.append({"seed": seed, "score": name, **measures(x, bb, yy, w)})
        pm = g[[f"p{j}" for j in range(len(classes))]].mean().loc[agg.index].to_numpy()
        for name, p in (("cl_running", pm), ("cl_base", pb[idx])):
            f = confident_learning(p, yy)
            rows.append(
                {
                    "seed": seed,
                    "score": name,
                    "flagged_share": float(f.mean()),
                    "prec_flagged": float(bb[f].mean()),
                    "prec_flagged_w": float((w * bb)[f].sum() / w[f].sum()),
                }
            )
        rows.append(
            {
                "seed": seed,
                "score": "base_rate",
                "prec20": float(bb.mean()),
                "prec20_w": float((w * bb).sum() / w.sum()),
            }
        )
    d = pd.DataFrame(rows)
    summary = d.groupby("score", sort=False).mean(numeric_only=True).drop(columns="seed")
    pd.set_option("display.width", 220)
    print(summary.round(3).to_string())
    votes = pd.read_csv(args.votes)
    votes["key"] = votes["path"].str.split("/").str[-1]
    x = m.assign(key=m["path"].str.split("/").str[-1]).merge(
        votes.drop(columns="path"), on="key", how="left"
    )
    x["own_votes"] = [
        x.loc[i, f"votes_{EMOTION_VOTES[lab]}"] for i, lab in zip(x.index, x["label"], strict=True)
    ]
    wrong = x[x["mislabelled"].astype(bool)]
    print(
        "\nwrong labels:",
        len(wrong),
        "- votes their own class got:",
        wrong["own_votes"].value_counts().sort_index().astype(int).to_dict(),
    )
    print("FERPlus plurality of each FER2013 label (top 3):")
    for lab, grp in x.groupby("label"):
        print(
            f"  {lab:9}",
            grp["ferplus_label"].value_counts(normalize=True).head(3).round(2).to_dict(),
        )
    if args.out:
        d.to_csv(args.out, index=False)
        print(f"\n{args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
