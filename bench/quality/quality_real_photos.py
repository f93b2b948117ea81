"""Representations on real colour photographs and on FER2013, in one run.

Two data sets, each with an independent truth about its labels:

- ``taiwanese-posed`` (``../shared/data/taiwanese-posed``): 629 colour 256-px portraits of 14
  performers posing seven expressions; truth: about 100 observers' label. An image is a
  disagreement when its label is not neutral and the observers read another expression
  (observers had no neutral option, so neutral images are left out of the metrics but
  stay in the data, and a suggested ``neutral`` cannot be judged). The performers are split into DEV and HOLDOUT halves
  (:func:`curate.faces.holdout.taiwanese_holdout_subjects`, fixed before any tuning); each half is
  built and screened on its own, as a user would screen a new data set.
- FER2013 PublicTest (``fer2013/val``) with the FERPlus plurality as truth, split into dev
  and holdout halves by the file bytes' SHA-256 (as ``bench/quality/quality_real_noise.py``);
  screened whole, measured per half.

For each: curate with DEFAULT settings (``build_tuples`` + ``screen``: ``--representation
auto``, ``--framing auto``), ranked by ``images_suspect.parquet``; then every
representation (the backbone on the whole picture and framed from the landmarks, the
blendshapes, both combined): its cross-validated probe's balanced accuracy (folds grouped
by performer on taiwanese-posed), curate's label ranking on it
(:func:`curate.stats.label_model.label_posteriors`), cleanlab (``rank.get_label_quality_scores``
self_confidence / normalized_margin and ``filter.find_label_issues`` on out-of-fold probe
probabilities) and kNN label disagreement (k = 10); then the suggested labels by confidence
(``suggested_confidence``) and what ``export --relabel`` does with its defaults. Last, the
speed target: the default screen against its per-image network stages (the backbone's
embedding plus the face analysis), both from an empty cache, on the colour set, after the
one-time imports (timm, the face models), which neither is charged.

    python -m bench.quality.quality_real_photos [--out DIR] [--sets taiwanese,speed,fer2013]

cleanlab (AGPL-3.0) is imported here only, never by curate. Results go to
``DIR/quality_real_photos.json`` as each part finishes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.ferplus import TO_FERPLUS
from bench.common.metrics import auroc, knn_disagreement
from bench.common.paths import DATA
from curate.faces.holdout import taiwanese_holdout_subjects

REPRESENTATIONS = (
    ("backbone (whole picture)", "backbone", "full"),
    ("backbone (face framed)", "backbone", "face"),
    ("blendshapes", "blendshapes", "auto"),
    ("combined (framing auto)", "combined", "auto"),
)
CONFIDENCE_BINS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
RELABEL_SWEEP = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def screen_default(
    source: Path, out: Path, seed: int, reuse: bool = False
) -> tuple[pd.DataFrame, dict, float]:
    """build-tuples + screen with default settings; images_suspect.parquet, run.json and
    seconds (with ``reuse``, a completed earlier screen in ``out`` is read back)."""
    from curate.build import build_tuples
    from curate.screen import screen

    done = out / "screen" / "run.json"
    if reuse and done.exists() and json.loads(done.read_text()).get("state") == "complete":
        run = json.loads(done.read_text())
        return (
            pd.read_parquet(out / "screen" / "images_suspect.parquet"),
            run,
            float(run.get("seconds") or 0),
        )
    build_tuples(source, out / "build", seed=seed, force=True)
    t = time.perf_counter()
    screen(out / "build", out / "screen", seed=seed, force=True)
    seconds = time.perf_counter() - t
    run = json.loads((out / "screen" / "run.json").read_text())
    return pd.read_parquet(out / "screen" / "images_suspect.parquet"), run, seconds


def rank_of(suspect: pd.DataFrame, paths: pd.Series) -> np.ndarray:
    """Score per path: the earlier in images_suspect.parquet, the higher (absent: last)."""
    order = pd.Series(-np.arange(len(suspect), dtype=np.float64), index=suspect["path"].to_numpy())
    return order.reindex(paths.to_numpy()).fillna(-float(len(suspect))).to_numpy()


def per_representation(
    images: pd.DataFrame,
    truth: np.ndarray,
    evaluable: np.ndarray,
    seed: int,
    parts: dict[str, np.ndarray] | None = None,
) -> dict:
    """Probe accuracy and label rankings (curate, cleanlab, kNN) on every representation."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from curate.cache import resolve_cache_dir
    from curate.representations import get
    from curate.representations.base import RepresentationContext
    from curate.representations.choose import _probe
    from curate.stats.label_model import label_posteriors
    from curate.stats.statistical import normalize

    labels = images["label"].astype(str).to_numpy()
    groups = images["subject"].to_numpy() if "subject" in images.columns else None
    parts = parts or {"all": np.ones(len(images), dtype=bool)}
    out: dict = {}
    for title, name, framing in REPRESENTATIONS:
        ctx = RepresentationContext(
            images=images,
            settings={"framing": framing, "seed": seed},
            cache_dir=resolve_cache_dir(None),
        )
        feats = get(name).compute(ctx)
        pr = _probe(feats, labels, groups, seed)
        codes = np.searchsorted(pr.classes, labels)
        scores = {
            "curate label": label_posteriors(normalize(feats.vectors), labels)[0][
                "suspicion_logit"
            ].to_numpy(),
            "kNN k=10": knn_disagreement(feats.vectors, labels, 10),
        }
        for method in ("self_confidence", "normalized_margin"):
            scores[f"cleanlab {method}"] = -get_label_quality_scores(
                codes, pr.probabilities, method=method
            )
        flagged = find_label_issues(codes, pr.probabilities)
        scores["cleanlab find_label_issues"] = flagged + 0.5 * (
            1 - get_label_quality_scores(codes, pr.probabilities)
        )
        res = {
            "probe_balanced_accuracy": round(pr.balanced_accuracy, 4),
            "framing": feats.details.get("framing"),
            "missing": int(feats.missing.sum()),
        }
        for part, m in parts.items():
            sel = m & evaluable
            res[part] = {
                k: round(auroc(np.nan_to_num(v[sel], nan=-np.inf), truth[sel]), 4)
                for k, v in scores.items()
            }
        out[title] = res
        print(
            f"  {title:26s} probe {pr.balanced_accuracy:.3f}  "
            + "  ".join(
                f"{part}: " + ", ".join(f"{k} {v:.3f}" for k, v in res[part].items())
                for part in parts
            ),
            flush=True,
        )
    return out


def suggestions_by_confidence(
    suspect: pd.DataFrame, right: np.ndarray, judged: np.ndarray
) -> list[dict]:
    """Accuracy of suggested_label among label suspects (label_reject) with a truth, per confidence floor."""
    rej = suspect["label_reject"].fillna(False).to_numpy(bool)
    conf = pd.to_numeric(suspect["suggested_confidence"], errors="coerce").to_numpy()
    rows = []
    for lo in CONFIDENCE_BINS:
        m = rej & judged & (conf >= lo)
        rows.append(
            {
                "confidence_at_least": lo,
                "suspects": int((rej & (conf >= lo)).sum()),
                "with_truth": int(m.sum()),
                "right": round(float(right[m].mean()), 3) if m.any() else None,
                "share_of_images": round(float((rej & (conf >= lo)).mean()), 4),
            }
        )
    return rows


def relabel_default(
    screen_dir: Path,
    out: Path,
    truth_label: pd.Series,
    judged_paths: set[str],
    halves: pd.Series | None = None,
    unjudged_labels: tuple[str, ...] = (),
    to_truth: dict[str, str] | None = None,
    confidence: float | None = None,
) -> dict:
    """export --relabel with its defaults: the share of images relabelled and how many got
    the truth (among relabelled images in ``judged_paths`` whose new label is not one of
    ``unjudged_labels``, labels the truth cannot give); ``to_truth`` renames curate's class
    names to the truth's (FERPlus's ``happiness`` for ``happy``; the observers use curate's)."""
    from curate.export import export

    extra = {} if confidence is None else {"relabel_confidence": confidence}
    res = export(screen_dir, out, relabel=True, format="parquet", force=True, **extra)
    m = res.manifest
    rel = m[m["label"] != m["original_label"]]
    total = pd.read_parquet(screen_dir / "images_suspect.parquet")
    groups = {"all": (total, rel)}
    if halves is not None:
        groups = {
            h: (total[total["path"].map(halves) == h], rel[rel["path"].map(halves) == h])
            for h in sorted(halves.unique())
        }
    report = {}
    for g, (tot, r) in groups.items():
        judged = r[r["path"].isin(judged_paths) & ~r["label"].isin(unjudged_labels)]
        right = (
            judged["label"].replace(to_truth or {}) == judged["path"].map(truth_label)
        ).to_numpy()
        report[g] = {
            "images": len(tot),
            "relabelled": len(r),
            "share": round(len(r) / max(len(tot), 1), 4),
            "with_truth": len(judged),
            "right": round(float(right.mean()), 3) if len(judged) else None,
        }
    return report


def taiwanese(args: argparse.Namespace, results: dict) -> None:
    root = args.data / "taiwanese-posed"
    manifest = pd.read_csv(root / "manifest.csv")
    manifest["path"] = [str((root / p).resolve()) for p in manifest["path"]]
    hold = taiwanese_holdout_subjects(manifest["subject"])
    for part in ("dev", "holdout"):
        sub = manifest[manifest["subject"].isin(hold) == (part == "holdout")].reset_index(drop=True)
        out = args.out / f"taiwanese_{part}"
        out.mkdir(parents=True, exist_ok=True)
        sub.to_csv(out / "manifest.csv", index=False)
        suspect, run, seconds = screen_default(
            out / "manifest.csv", out, args.seed, args.reuse_screens
        )
        images = pd.read_parquet(out / "build" / "images.parquet")
        images = images[images["status"] == "ok"].reset_index(drop=True)
        obs = sub.set_index("path")
        truth = (
            (images["label"] != "neutral")
            & (images["path"].map(obs["observer_label"]) != images["label"])
        ).to_numpy()
        evaluable = (images["label"] != "neutral").to_numpy()
        default = auroc(rank_of(suspect, images["path"])[evaluable], truth[evaluable])
        rep = run["params"]["representation"]
        print(
            f"\n== taiwanese-posed {part}: {len(images)} images ({sorted(sub['subject'].unique())}), "
            f"{int(truth.sum())} disagreements among {int(evaluable.sum())} non-neutral",
            flush=True,
        )
        print(
            f"curate DEFAULT label ranking AUROC {default:.3f} ({rep['summary']}; framing "
            f"{(rep['details'].get('framing') or {}).get('used')}); screen {seconds:.0f} s",
            flush=True,
        )
        reps = per_representation(images, truth, evaluable, args.seed)
        s_obs = suspect["path"].map(obs["observer_label"])
        judged = (suspect["label"] != "neutral").to_numpy() & (
            suspect["suggested_label"] != "neutral"
        ).to_numpy()
        right = (suspect["suggested_label"] == s_obs).to_numpy()
        sugg = suggestions_by_confidence(suspect, right, judged)
        judged_paths = set(sub.loc[sub["label"] != "neutral", "path"])
        relabel = relabel_default(
            out / "screen",
            out / "export",
            obs["observer_label"],
            judged_paths,
            unjudged_labels=("neutral",),
        )
        print(
            "suggestions (label suspects with a non-neutral label and suggestion) by confidence: "
            + "; ".join(
                f">={r['confidence_at_least']}: {r['right']} of {r['with_truth']}" for r in sugg
            ),
            flush=True,
        )
        print(f"export --relabel (defaults): {relabel}", flush=True)
        results[f"taiwanese/{part}"] = {
            "default_auroc": round(default, 4),
            "representation": rep,
            "screen_seconds": round(seconds, 1),
            "representations": reps,
            "suggestions": sugg,
            "relabel": relabel,
        }
        _save(args, results)


def fer2013(args: argparse.Namespace, results: dict) -> None:
    split = args.data / "fer2013" / "val"
    out = args.out / "fer2013_val"
    out.mkdir(parents=True, exist_ok=True)
    suspect, run, seconds = screen_default(split, out, args.seed, args.reuse_screens)
    images = pd.read_parquet(out / "build" / "images.parquet")
    images = images[images["status"] == "ok"].reset_index(drop=True)
    images["half"] = np.where(
        [
            int(hashlib.sha256(Path(p).read_bytes()).hexdigest()[:8], 16) % 2 == 0
            for p in images["path"]
        ],
        "dev",
        "holdout",
    )
    votes = pd.read_csv(args.data / "ferplus" / "ferplus_votes_train_val.csv")
    rel = images["path"].map(lambda p: "val/" + "/".join(Path(p).parts[-2:]))
    plur = rel.map(votes.drop_duplicates("path").set_index("path")["plurality_label_8cls"])
    evaluable = plur.notna().to_numpy()
    truth = (evaluable & (images["label"].map(lambda s: TO_FERPLUS.get(s, s)) != plur)).to_numpy()
    rank = rank_of(suspect, images["path"])
    rep = run["params"]["representation"]
    halves = {h: (images["half"] == h).to_numpy() for h in ("dev", "holdout")}
    print(
        f"\n== FER2013 PublicTest: {len(images)} images; representation: {rep['summary']}",
        flush=True,
    )
    default = {
        h: round(auroc(rank[m & evaluable], truth[m & evaluable]), 4) for h, m in halves.items()
    }
    print(f"curate DEFAULT label ranking AUROC {default}; screen {seconds:.0f} s", flush=True)
    reps = per_representation(images, truth, evaluable, args.seed, halves)
    by_path = pd.Series(plur.to_numpy(), index=images["path"].to_numpy())
    half_of = pd.Series(images["half"].to_numpy(), index=images["path"].to_numpy())
    s_truth = suspect["path"].map(by_path)
    right = (suspect["suggested_label"].map(lambda s: TO_FERPLUS.get(s, s)) == s_truth).to_numpy()
    sugg = {
        h: suggestions_by_confidence(
            suspect[suspect["path"].map(half_of) == h].reset_index(drop=True),
            right[(suspect["path"].map(half_of) == h).to_numpy()],
            s_truth[(suspect["path"].map(half_of) == h).to_numpy()].notna().to_numpy(),
        )
        for h in halves
    }
    for h, rows in sugg.items():
        print(
            f"suggestions {h} by confidence: "
            + "; ".join(
                f">={r['confidence_at_least']}: {r['right']} of {r['with_truth']} ({r['share_of_images']:.1%} of images)"
                for r in rows
            ),
            flush=True,
        )
    relabel = relabel_default(
        out / "screen",
        out / "export",
        by_path,
        set(images.loc[evaluable, "path"]),
        half_of,
        to_truth=TO_FERPLUS,
    )
    print(f"export --relabel (defaults): {relabel}", flush=True)
    sweep = {}
    for (
        t
    ) in RELABEL_SWEEP:  # what --relabel-confidence T does: the default is read off the dev half
        sweep[t] = relabel_default(
            out / "screen",
            out / "export_sweep",
            by_path,
            set(images.loc[evaluable, "path"]),
            half_of,
            to_truth=TO_FERPLUS,
            confidence=t,
        )
        print(
            f"export --relabel --relabel-confidence {t}: "
            + "; ".join(
                f"{h} {r['share']:.1%} relabelled, {r['right']} right of {r['with_truth']}"
                for h, r in sweep[t].items()
            ),
            flush=True,
        )
    results["fer2013/val"] = {
        "default_auroc": default,
        "representation": rep,
        "screen_seconds": round(seconds, 1),
        "representations": reps,
        "suggestions": sugg,
        "relabel": relabel,
        "relabel_by_confidence": sweep,
    }
    _save(args, results)


def speed(args: argparse.Namespace, results: dict) -> None:
    """The default screen vs its per-image network stages, each from an empty cache, on the
    colour set's dev half (built by :func:`taiwanese`)."""
    from curate.backbone import load_backbone
    from curate.embed import embed_images_result
    from curate.faces.analyze import analyze_faces
    from curate.screen import screen

    build = args.out / "taiwanese_dev" / "build"
    if not (
        build / "images.parquet"
    ).exists():  # --sets speed alone: build the dev half (as taiwanese)
        from curate.build import build_tuples

        root = args.data / "taiwanese-posed"
        manifest = pd.read_csv(root / "manifest.csv")
        manifest["path"] = [str((root / p).resolve()) for p in manifest["path"]]
        hold = taiwanese_holdout_subjects(manifest["subject"])
        build.parent.mkdir(parents=True, exist_ok=True)
        manifest[~manifest["subject"].isin(hold)].reset_index(drop=True).to_csv(
            build.parent / "manifest.csv", index=False
        )
        build_tuples(build.parent / "manifest.csv", build, seed=args.seed, force=True)
    images = pd.read_parquet(build / "images.parquet")
    images = images[images["status"] == "ok"]
    # one-time costs first (importing timm, which imports torchvision and torch._dynamo; the face
    # models' imports), so that the stages are not charged what the screens after them reuse
    t = time.perf_counter()
    load_backbone(None)
    analyze_faces(images["path"].tolist()[:1], images["sha256"].tolist()[:1], cache_dir="none")
    t_warm = time.perf_counter() - t
    with (
        tempfile.TemporaryDirectory() as c1,
        tempfile.TemporaryDirectory() as c2,
        tempfile.TemporaryDirectory() as c3,
    ):
        t = time.perf_counter()
        embed_images_result(
            images["path"].tolist(), images["sha256"].tolist(), load_backbone(None), cache_dir=c1
        )
        t_embed = time.perf_counter() - t
        t = time.perf_counter()
        analyze_faces(images["path"].tolist(), images["sha256"].tolist(), cache_dir=c1)
        t_faces = time.perf_counter() - t
        t = time.perf_counter()
        screen(build, args.out / "speed_screen", cache_dir=c2, seed=args.seed, force=True)
        t_screen = time.perf_counter() - t
        # the screen as it ran before representations: the backbone on whole pictures
        t = time.perf_counter()
        screen(
            build,
            args.out / "speed_screen_backbone",
            cache_dir=c3,
            seed=args.seed,
            force=True,
            representation="backbone",
            framing="full",
        )
        t_backbone = time.perf_counter() - t
    stages = t_embed + t_faces
    print(
        f"\n== speed ({len(images)} colour images, empty caches; imports and first loads first, "
        f"{t_warm:.1f} s, charged to none): embedding {t_embed:.1f} s + face analysis "
        f"{t_faces:.1f} s = {stages:.1f} s; default screen {t_screen:.1f} s: {t_screen / stages:.2f}x; "
        f"screen with --representation backbone --framing full (before representations) {t_backbone:.1f} s: "
        f"{t_backbone / stages:.2f}x",
        flush=True,
    )
    results["speed"] = {
        "images": len(images),
        "warm_up_s": round(t_warm, 1),
        "embed_s": round(t_embed, 1),
        "faces_s": round(t_faces, 1),
        "screen_s": round(t_screen, 1),
        "ratio": round(t_screen / stages, 2),
        "screen_backbone_full_s": round(t_backbone, 1),
        "ratio_backbone_full": round(t_backbone / stages, 2),
    }
    _save(args, results)


def _save(args: argparse.Namespace, results: dict) -> None:
    (args.out / "quality_real_photos.json").write_text(json.dumps(results, indent=2, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--sets",
        default="taiwanese,speed,fer2013",
        help="parts to run: taiwanese, speed (builds the taiwanese dev half if absent), fer2013",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reuse-screens",
        action="store_true",
        help="read back the default screens a previous run left in --out",
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/curate_quality_real_photos"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    sets = args.sets.split(",")
    previous = args.out / "quality_real_photos.json"
    if previous.exists():  # resumable: parts not run again keep their numbers
        results.update(json.loads(previous.read_text()))
    if "taiwanese" in sets:
        taiwanese(args, results)
    if "speed" in sets:
        speed(args, results)
    if "fer2013" in sets:
        fer2013(args, results)
    print(f"\nwrote {args.out / 'quality_real_photos.json'}")


if __name__ == "__main__":
    main()
