"""Head-to-head on REAL label noise: curate vs kNN vs cleanlab on FER2013 with FERPlus truth.

Ground truth: an image is mislabelled when its original FER2013 label differs from the
plurality of ten FERPlus annotators (``../shared/data/ferplus``; ties and images without
votes are left out of the metrics but stay in the data every method sees). Every method
ranks the same images on the same embeddings (the bundled backbone, or ``--embeddings``):

- curate ``label``: the image-level label screen (:func:`curate.stats.label_model.label_posteriors`,
  ``suspicion_logit``), the ranking of ``images_suspect.parquet`` on the embedding alone, and
  ``label + head``: with the network's classification head as a second judge
  (:mod:`curate.representations.head`, what ``--label-head auto`` uses when it decides for it);
- curate ``tuples/<null>``: the mean standardised distance of an image's pairs in one
  triplet per anchor (``build-tuples`` defaults) toward rejection, for every null
  (``theory``, ``effective``, ``empirical``: one global null; ``class``,
  ``class_empirical``: the class-aware nulls); the old ``mean_z`` ranking is ``tuples/effective``;
- curate via the CLI defaults (``--via-cli``): ``build-tuples`` and ``screen`` with default
  settings on the split's folder, ranked by the order of ``images_suspect.parquet``;
- kNN label disagreement, k = 10 and 50 (cosine on centred, normalised embeddings);
- cleanlab ``rank.get_label_quality_scores`` (self_confidence, normalized_margin) and
  ``filter.find_label_issues`` (flagged first, then by self-confidence) on 5-fold
  out-of-fold probabilities of a logistic-regression probe, and on the bundled model's head.

PublicTest (``fer2013/val``; the bundled backbone never trained on it) is split into
``dev`` and ``holdout`` halves by ``int(sha256(file bytes)[:8], 16) % 2`` (0 = dev), so
byte-identical copies stay together; curate's settings were chosen on dev only. ``train``
is the split the backbone was trained on (it has memorised those labels).
Metrics: AUROC, average precision, precision among the top 5% and 10% (ties at the cut
count by their share). cleanlab (AGPL-3.0) is imported here only, never by curate.

    python -m bench.quality.quality_real_noise [--splits val,train] [--embeddings PARQUET]
        [--via-cli] [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.ferplus import TO_FERPLUS
from bench.common.metrics import auroc, knn_disagreement
from bench.common.paths import DATA

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NULL_NAMES = ("theory", "effective", "empirical", "class", "class_empirical")


def precision_at(score: np.ndarray, positive: np.ndarray, frac: float) -> float:
    """Precision among the top ``frac``; rows tied at the cut count by their share."""
    n = max(1, int(round(frac * len(score))))
    cut = np.sort(score)[::-1][n - 1]
    above, at = score > cut, score == cut
    return float((positive[above].sum() + (n - above.sum()) * positive[at].mean()) / n)


def metrics(score: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    score = np.asarray(score, np.float64)
    return {
        "auroc": auroc(score, positive),
        "ap": float(average_precision_score(positive, score)),
        "p5": precision_at(score, positive, 0.05),
        "p10": precision_at(score, positive, 0.10),
    }


def load_images(
    data: Path, split: str, embeddings: Path | None, batch_size: int, cache: Path
) -> pd.DataFrame:
    """One row per image file of ``fer2013/<split>``: path, label, sha256, half, truth,
    embedding (raw backbone output) and head_probs."""
    files = sorted((data / "fer2013" / split).glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no images under {data / 'fer2013' / split}")
    # paths resolved, as build-tuples records them
    df = pd.DataFrame(
        {
            "path": [str(p.resolve()) for p in files],
            "rel": [f"{split}/{p.parent.name}/{p.name}" for p in files],
            "label": [p.parent.name for p in files],
        }
    )
    df["sha256"] = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in df["path"]]
    if split == "val":
        df["half"] = np.where([int(s[:8], 16) % 2 == 0 for s in df["sha256"]], "dev", "holdout")
    else:
        df["half"] = split
    votes = pd.read_csv(data / "ferplus" / "ferplus_votes_train_val.csv")
    df = df.merge(
        votes[["path", "plurality_label_8cls"]].rename(columns={"path": "rel"}),
        on="rel",
        how="left",
    )
    df["evaluable"] = df["plurality_label_8cls"].notna()
    df["mislabelled"] = df["evaluable"] & (
        df["label"].map(lambda s: TO_FERPLUS.get(s, s)) != df["plurality_label_8cls"]
    )
    if embeddings is not None:
        pre = pd.read_parquet(embeddings, columns=["path", "embedding", "head_probs"])
        pre["path"] = [str(Path(p).resolve()) for p in pre["path"]]
        df["path"] = [str(Path(p).resolve()) for p in df["path"]]
        df = df.merge(pre.drop_duplicates("path"), on="path", how="left")
        if df["embedding"].isna().any():
            raise SystemExit(
                f"{embeddings} lacks embeddings for {int(df['embedding'].isna().sum())} images"
            )
    else:
        df["embedding"], df["head_probs"] = _embed(df, batch_size, cache)
    return df


WEIGHTS: str | None = None  # --weights: a run folder or bundled model name (None: the default)


def _embed(
    df: pd.DataFrame, batch_size: int, cache: Path
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import torch

    from curate.backbone import bundled_model_dir, load_backbone
    from curate.embed import embed_images_result
    from curate.models import resolve_run
    from curate.runs import load_run

    loaded = load_backbone(None, WEIGHTS)
    emb = embed_images_result(
        df["path"].tolist(), df["sha256"].tolist(), loaded, cache_dir=cache, batch_size=batch_size
    ).embeddings
    net, cfg = load_run(bundled_model_dir() if WEIGHTS is None else resolve_run(WEIGHTS))
    if tuple(cfg["classes"]) != CLASSES:
        raise SystemExit(f"bundled head classes {cfg['classes']} are not {CLASSES}")
    with torch.no_grad():
        probs = torch.softmax(net.logits_from_embeddings(torch.from_numpy(emb)), 1).numpy()
    return list(emb), list(probs)


def oof_probe(x: np.ndarray, codes: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(codes), len(CLASSES)))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, codes):
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(x[tr], codes[tr])
        probs[np.ix_(te, clf.classes_)] = clf.predict_proba(x[te])
    return probs


def tuple_mean_z(x: np.ndarray, labels: np.ndarray, null: str, seed: int) -> np.ndarray:
    """Per image: mean z toward rejection of its pairs in one triplet per anchor (build-tuples defaults)."""
    from curate.stats import statistical as st
    from curate.stats.nulls import fit_class_nulls, image_weights, tuple_z
    from curate.tuples import sample_tuples

    images = pd.DataFrame(
        {
            "image_id": np.arange(len(labels)),
            "label": labels,
            "split": None,
            "subject": None,
            "status": "ok",
        }
    )
    tuples, _ = sample_tuples(images, seed=seed)
    a, p, n = (tuples[c].to_numpy(np.int64) for c in ("anchor", "positive", "negative"))
    dist = st.tuple_distances(x, a, p, n)
    if null in st.NULLS:
        b = st.fit_boundary(x, labels=labels, null=null, seed=seed)
        z = {"d_ap": (dist["d_ap"] - b.mu) / b.sigma, "d_an": (b.mu - dist["d_an"]) / b.sigma}
    else:
        nulls = fit_class_nulls(x, labels, method=null, weights=image_weights(x, labels), seed=seed)
        codes = nulls.codes(labels)
        z = tuple_z(dist, nulls, codes[a], codes[n])
    total = np.zeros(len(labels))
    count = np.zeros(len(labels))
    for rows, key in ((a, "d_ap"), (p, "d_ap"), (a, "d_an"), (n, "d_an")):
        total += np.bincount(rows, weights=z[key], minlength=len(labels))
        count += np.bincount(rows, minlength=len(labels))
    return total / np.maximum(count, 1)


def via_cli(
    df: pd.DataFrame, data: Path, split: str, out: Path, seed: int, embeddings: Path | None = None
) -> np.ndarray:
    """Rank by the order of images_suspect.parquet after build-tuples + screen with default settings.

    With the bundled backbone (no ``--embeddings``) the screen runs as a user's would: the
    default representation (``--representation auto``, which measures the backbone, the
    blendshapes and both on the split's labels and uses the best; run.json records it).
    With ``--embeddings`` those vectors are passed as a file."""
    from curate.build import build_tuples
    from curate.screen import screen

    emb_file = None
    if embeddings is not None:
        emb_file = out / f"{split}_embeddings.parquet"
        df[["path", "embedding"]].to_parquet(emb_file, index=False)
    build_tuples(data / "fer2013" / split, out / f"{split}_build", seed=seed, force=True)
    screen(
        out / f"{split}_build",
        out / f"{split}_screen",
        embeddings=emb_file,
        seed=seed,
        force=True,
        weights=WEIGHTS if embeddings is None else None,
    )
    rep = (
        json.loads((out / f"{split}_screen" / "run.json").read_text())["params"].get(
            "representation"
        )
        or {}
    )
    print(f"CLI screen representation: {rep.get('summary') or rep.get('used')}")
    suspect = pd.read_parquet(out / f"{split}_screen" / "images_suspect.parquet")
    order = pd.Series(-np.arange(len(suspect), dtype=np.float64), index=suspect["path"].to_numpy())
    # images not in the table (duplicate copies build-tuples excluded) rank last
    return order.reindex(df["path"]).fillna(-float(len(suspect))).to_numpy()


def scores_for(df: pd.DataFrame, args: argparse.Namespace, split: str) -> dict[str, np.ndarray]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from curate.stats.label_model import label_posteriors
    from curate.stats.statistical import normalize

    raw = np.stack(df["embedding"].to_numpy()).astype(np.float32)
    x = normalize(raw)
    labels = df["label"].to_numpy().astype(str)
    codes = np.searchsorted(CLASSES, labels)
    out: dict[str, np.ndarray] = {}
    t = time.perf_counter()
    verdicts, _ = label_posteriors(x, labels)
    out["curate label (embedding only)"] = verdicts["suspicion_logit"].to_numpy()
    out["_seconds_curate_label"] = np.array([time.perf_counter() - t])
    # with the network's head as a second judge, as --label-head auto decides it
    from curate.representations.head import HeadOutput, decide
    from curate.representations.probe import probe

    head = HeadOutput("network", CLASSES, np.stack(df["head_probs"].to_numpy()).astype(np.float64))
    ev = decide(head, labels, CLASSES, probe(x, labels, seed=args.seed).balanced_accuracy)
    print(f"{split}: label evidence: {ev.sentence()}")
    out["curate label + head (--label-head on)"] = label_posteriors(
        x, labels, head_probs=decide(head, labels, CLASSES, None, setting="on").probabilities
    )[0]["suspicion_logit"].to_numpy()
    for null in NULL_NAMES:
        out[f"curate tuples/{null} mean_z"] = tuple_mean_z(x, labels, null, args.seed)
    if args.via_cli:
        out["curate CLI defaults (file order)"] = via_cli(
            df, args.data, split, args.out, args.seed, args.embeddings
        )
    for k in (10, 50):
        out[f"kNN k={k}"] = knn_disagreement(raw, labels, k)  # centres and normalises like x
    t = time.perf_counter()
    probs = {
        "probe OOF": oof_probe(x, codes, args.seed),
        "head": np.stack(df["head_probs"].to_numpy()).astype(np.float64),
    }
    for name, p in probs.items():
        for method in ("self_confidence", "normalized_margin"):
            out[f"cleanlab rank {method} [{name}]"] = -get_label_quality_scores(
                codes, p, method=method
            )
        flagged = find_label_issues(codes, p)
        out[f"cleanlab find_label_issues [{name}]"] = flagged + 0.5 * (
            1 - get_label_quality_scores(codes, p)
        )
    out["_seconds_cleanlab_probe_and_rank"] = np.array([time.perf_counter() - t])
    return out


def cli_boundary_report(df: pd.DataFrame, screen_dir: Path, build_dir: Path) -> None:
    """The CLI run's tuple screens against the truth: precision and recall of
    positive_too_far (anchor or positive truly mislabelled) and negative_too_close (anchor or
    negative), and the calibration boundary.json records next to alpha."""
    scores = pd.read_parquet(screen_dir / "scores.parquet")
    images = pd.read_parquet(build_dir / "images.parquet")[["image_id", "path"]]
    truth = df.set_index("path")[["mislabelled", "evaluable"]]
    by_id = images.join(truth, on="path").set_index("image_id")
    bad = by_id["mislabelled"].fillna(False).astype(bool)
    known = by_id["evaluable"].fillna(False).astype(bool)
    b = json.loads((screen_dir / "boundary.json").read_text())
    print(f"\n== tuple screens of the CLI run ({len(scores):,} tuples, null {b['null']})")
    for code, roles in (
        ("positive_too_far", ("anchor", "positive")),
        ("negative_too_close", ("anchor", "negative")),
    ):
        ok = np.logical_and.reduce([known.loc[scores[r]].to_numpy() for r in roles])
        has = np.logical_or.reduce([bad.loc[scores[r]].to_numpy() for r in roles])[ok]
        fired = scores["boundary_reason"].fillna("").str.contains(code).to_numpy()[ok]
        prec = has[fired].mean() if fired.any() else float("nan")
        print(
            f"{code:20s} fires on {fired.mean():.1%} of {ok.sum():,} tuples with known members: "
            f"precision {prec:.3f} (base rate {has.mean():.3f}), recall {fired[has].mean():.3f}"
        )
    cal = b.get("calibration") or {}
    print(
        f"calibration ({cal.get('pairs')} pairs): {cal.get('share_above_t_pos'):.3f} above T_pos "
        f"(alpha {cal.get('nominal_alpha_pos')}), {cal.get('share_below_t_neg'):.3f} below T_neg "
        f"(alpha {cal.get('nominal_alpha_neg')})"
    )


def cli_label_report(df: pd.DataFrame, screen_dir: Path) -> None:
    """The CLI run's label screen against the truth, per half: images rejected
    (``label_suspect``), their precision and recall for truly mislabelled images, the
    rejected share of each labelled class, and the classes its per-class cap acted on."""
    suspect = pd.read_parquet(screen_dir / "images_suspect.parquet")[["path", "label_reject"]]
    t = df[["path", "label", "half", "mislabelled", "evaluable"]].merge(
        suspect, on="path", how="inner"
    )
    rej = t["label_reject"].fillna(False).astype(bool).to_numpy()
    bad, known = t["mislabelled"].to_numpy(bool), t["evaluable"].to_numpy(bool)
    print(f"\n== label screen of the CLI run ({rej.sum():,} of {len(t):,} images label_suspect)")
    for half in sorted(t["half"].unique()):
        h = (t["half"] == half).to_numpy()
        m = h & known
        share = pd.Series(rej[h]).groupby(t["label"].to_numpy()[h]).mean()
        print(
            f"{half:8s}: rejected {rej[h].sum():,}, precision {bad[rej & m].mean():.3f} (base rate "
            f"{bad[m].mean():.3f}), recall {rej[bad & m].mean():.3f}; rejected share by class "
            + ", ".join(f"{k} {v:.0%}" for k, v in share.items())
        )
    capped = (json.loads((screen_dir / "boundary.json").read_text()).get("label_model") or {}).get(
        "capped_classes"
    )
    for c in capped or []:
        print(
            f"  per-class cap acted on {c['class']}: {c['would_reject']} of {c['n_images']} below "
            f"alpha_label, {c['rejected']} rejected"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--splits", default="val,train")
    ap.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        help="Parquet with path, embedding, head_probs (skips embedding the images)",
    )
    ap.add_argument(
        "--via-cli",
        action="store_true",
        help="also rank by curate build-tuples + screen with default settings",
    )
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--weights",
        default=None,
        help="network to embed with: a fine-tuning run or a bundled model's name (default: the default)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/curate_quality_real_noise"))
    args = ap.parse_args()
    global WEIGHTS
    WEIGHTS = args.weights
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for split in args.splits.split(","):
        df = load_images(
            args.data, split, args.embeddings, args.batch_size, args.out / "embeddings"
        )
        scores = scores_for(df, args, split)
        halves = ("dev", "holdout") if split == "val" else (split,)
        for half in halves:
            m = (df["half"] == half).to_numpy() & df["evaluable"].to_numpy()
            truth = df["mislabelled"].to_numpy()[m]
            print(
                f"\n== {split}/{half}: {int(m.sum())} images with a FERPlus plurality, "
                f"{int(truth.sum())} mislabelled ({truth.mean():.1%}); all {len(df)} images screened"
            )
            print(f"{'method':44s} {'AUROC':>6s} {'AP':>6s} {'P@5%':>6s} {'P@10%':>6s}")
            res = {}
            for name, s in scores.items():
                if name.startswith("_"):
                    continue
                r = metrics(s[m], truth)
                res[name] = r
                print(f"{name:44s} {r['auroc']:6.3f} {r['ap']:6.3f} {r['p5']:6.3f} {r['p10']:6.3f}")
            cl = {k: v for k, v in res.items() if k.startswith("cleanlab")}
            best = max(cl, key=lambda k: cl[k]["auroc"])
            cur = res["curate label (embedding only)"]
            print(
                f"curate label - best cleanlab by AUROC ({best}): AUROC {cur['auroc'] - cl[best]['auroc']:+.3f}, "
                f"P@10% {cur['p10'] - cl[best]['p10']:+.3f}; vs max P@10% over cleanlab variants "
                f"{cur['p10'] - max(v['p10'] for v in cl.values()):+.3f}"
            )
            results[f"{split}/{half}"] = res
        if args.via_cli:
            cli_boundary_report(df, args.out / f"{split}_screen", args.out / f"{split}_build")
            cli_label_report(df, args.out / f"{split}_screen")
        print(
            f"seconds ({split}): curate label {float(scores['_seconds_curate_label'][0]):.2f}, "
            f"cleanlab probe+rank {float(scores['_seconds_cleanlab_probe_and_rank'][0]):.2f}"
        )
    (args.out / "quality_real_noise.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out / 'quality_real_noise.json'}")


if __name__ == "__main__":
    main()
