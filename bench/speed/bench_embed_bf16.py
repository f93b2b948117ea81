"""Benchmark: bfloat16 autocast for embedding on the CPU (issue 24, "and for embedding in curate
screen ... if it helps there too"), against float32 in the same run, and what it does to the
embeddings.

    python -m bench.speed.bench_embed_bf16 [--weights fer_resnet10t] [--rounds 5] [--threads 2] [--n-fer N]

On two sets, the bundled network's own preprocessing:

- FER2013 PublicTest (``fer2013/val``, 3,589 48x48 grey crops; FERPlus votes as truth), or
  for speed only its first ``--n-fer`` images (the quality measures use all);
- taiwanese-posed (629 colour 256x256 portraits, whole pictures).

Speed: the pipeline's own batches (:func:`curate.embed.prepare_batch`, batch 64) through
:func:`curate.embed.embed_batch`, float32 and bfloat16 autocast alternating, ``--rounds``
times each (the median round counts, so a busy machine hurts both alike); and end to end
(:func:`curate.embed.embed_images_result`: decode, preprocess, forward, no cache), float32 and
bfloat16 alternating, ``--e2e-rounds`` times each (the fastest of each counts, and the ratio of
the medians is printed too).

Embeddings: cosine similarity of each image's bfloat16 embedding to its float32 one (min,
mean); the share of each image's 10 nearest neighbours (cosine) that stay the same; and the
measures the embeddings serve, for both: on PublicTest the kNN label-disagreement ranking
(k = 10) AUROC against "the original label is not the FERPlus plurality", and on the colour
set the performer-grouped probe (leave one performer out, as ``bench/quality/measure_backbone.py``).
With ``--screen``, also ``curate screen`` with its defaults on PublicTest, without and with
``--amp``: AUROC of ``images_suspect.parquet``'s order against "the original label is not the
FERPlus plurality" on the dev / holdout halves of ``bench/quality/quality_real_noise.py``, and how many
images the two runs reject differently.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.common.ferplus import TO_FERPLUS, load_table
from bench.common.metrics import auroc
from bench.common.paths import DATA
from bench.common.probe import lopo_accuracy as lopo


def timed_forward(loaded, batches: list[torch.Tensor], bf16: bool) -> tuple[float, np.ndarray]:
    from curate.embed import embed_batch

    t = time.perf_counter()
    out = [embed_batch(loaded.model, b, bf16=bf16) for b in batches]
    return time.perf_counter() - t, np.concatenate(out)


def timed_end_to_end(loaded, paths: list[str], bf16: bool) -> tuple[float, np.ndarray]:
    from curate.embed import embed_images_result

    loaded.cpu_bf16 = bf16
    try:
        t = time.perf_counter()
        res = embed_images_result(paths, [None] * len(paths), loaded, cache_dir="none", workers=0)
        return time.perf_counter() - t, res.embeddings
    finally:
        loaded.cpu_bf16 = False


def neighbours(emb: np.ndarray, k: int = 10) -> np.ndarray:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def knn_disagreement(emb: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    nn = neighbours(emb, k)
    return (labels[nn] != labels[:, None]).mean(axis=1)


def measure(
    name: str, loaded, paths: list[str], rounds: int, n_timed: int = 0, e2e_rounds: int = 2
) -> dict:
    from curate.embed import prepare_batch

    timed = paths[:n_timed] if n_timed else paths
    batches = [prepare_batch(timed[i : i + 64], loaded) for i in range(0, len(timed), 64)]
    times: dict[bool, list[float]] = {False: [], True: []}
    outs = {}
    for _ in range(rounds):
        for bf16 in (False, True):
            t, outs[bf16] = timed_forward(loaded, batches, bf16)
            times[bf16].append(t)
    e2e: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(e2e_rounds):
        for bf16 in (False, True):
            e2e[bf16].append(timed_end_to_end(loaded, timed, bf16)[0])
    f32, b16 = (timed_end_to_end(loaded, paths, bf16)[1] for bf16 in (False, True))
    cos = (f32 * b16).sum(1) / (np.linalg.norm(f32, axis=1) * np.linalg.norm(b16, axis=1))
    nn32, nn16 = neighbours(f32), neighbours(b16)
    kept = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(nn32, nn16, strict=True)])
    fwd32, fwd16 = statistics.median(times[False]), statistics.median(times[True])
    r = {
        "images": len(paths),
        "images_timed": len(timed),
        "forward_f32_s": round(fwd32, 3),
        "forward_bf16_s": round(fwd16, 3),
        "forward_ratio_bf16_over_f32": round(fwd16 / fwd32, 3),
        "end_to_end_f32_s": round(min(e2e[False]), 3),
        "end_to_end_bf16_s": round(min(e2e[True]), 3),
        "end_to_end_ratio": round(min(e2e[True]) / min(e2e[False]), 3),
        "end_to_end_ratio_of_medians": round(
            statistics.median(e2e[True]) / statistics.median(e2e[False]), 3
        ),
        "cosine_min": round(float(cos.min()), 5),
        "cosine_mean": round(float(cos.mean()), 6),
        "knn10_kept": round(float(kept), 4),
        "forward_equals_end_to_end_f32": bool(
            np.allclose(outs[False], f32[: len(timed)], atol=1e-5)
        ),
    }
    print(f"== {name}: {json.dumps(r)}", flush=True)
    return {**r, "_emb": (f32, b16)}


def screen_ranking(data: Path, out: Path) -> dict:
    """``curate screen`` defaults on PublicTest with ``amp`` off and on (see module doc)."""
    import hashlib

    from curate.build import build_tuples
    from curate.screen import screen

    files = sorted((data / "fer2013" / "val").glob("*/*.jpg"))
    df = pd.DataFrame(
        {
            "path": [str(p.resolve()) for p in files],
            "rel": [f"val/{p.parent.name}/{p.name}" for p in files],
            "label": [p.parent.name for p in files],
        }
    )
    sha = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in df["path"]]
    df["half"] = np.where([int(s[:8], 16) % 2 == 0 for s in sha], "dev", "holdout")
    votes = pd.read_csv(data / "ferplus" / "ferplus_votes_train_val.csv")
    df = df.merge(
        votes[["path", "plurality_label_8cls"]]
        .rename(columns={"path": "rel"})
        .drop_duplicates("rel"),
        on="rel",
        how="left",
    )
    ok = df["plurality_label_8cls"].notna().to_numpy()
    bad = (
        df["label"].map(lambda s: TO_FERPLUS.get(s, s)) != df["plurality_label_8cls"]
    ).to_numpy() & ok
    build_tuples(data / "fer2013" / "val", out / "build", seed=0, force=True)
    res: dict = {}
    rejected = {}
    for amp in (False, True):
        t = time.perf_counter()
        screen(out / "build", out / f"screen_amp_{amp}", seed=0, force=True, amp=amp)
        seconds = time.perf_counter() - t
        suspect = pd.read_parquet(out / f"screen_amp_{amp}" / "images_suspect.parquet")
        order = pd.Series(
            -np.arange(len(suspect), dtype=np.float64), index=suspect["path"].to_numpy()
        )
        score = order.reindex(df["path"]).fillna(-float(len(suspect))).to_numpy()
        rejected[amp] = (
            set(suspect.loc[suspect["label_reject"], "path"])
            if "label_reject" in suspect
            else set()
        )
        res[f"amp_{amp}"] = {
            h: round(
                auroc(
                    score[(df["half"] == h).to_numpy() & ok], bad[(df["half"] == h).to_numpy() & ok]
                ),
                4,
            )
            for h in ("dev", "holdout")
        } | {"screen_s": round(seconds, 1), "label_rejected": len(rejected[amp])}
    res["label_rejected_differently"] = len(rejected[False] ^ rejected[True])
    print(
        f"== curate screen defaults on PublicTest, AUROC dev / holdout: {json.dumps(res)}",
        flush=True,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--weights", default=None, help="a bundled model or run (default: the default network)"
    )
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--e2e-rounds", type=int, default=2, help="end-to-end passes of each precision")
    ap.add_argument(
        "--n-fer", type=int, default=0, help="time on the first N PublicTest images (0: all)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--screen",
        type=Path,
        metavar="DIR",
        help="also screen PublicTest with and without --amp into DIR (the ranking part)",
    )
    ap.add_argument("--only-screen", action="store_true", help="skip the speed and embedding parts")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from curate.backbone import cpu_bf16_supported, load_backbone

    print(
        f"torch {torch.__version__}, {args.threads} threads, CPU native bfloat16: {cpu_bf16_supported()}"
    )
    loaded = load_backbone(None, args.weights, device="cpu")
    results: dict = {"weights": loaded.weights_source}
    if args.screen:
        results["screen_publictest"] = screen_ranking(args.data, args.screen)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
        if args.only_screen:
            return

    table = load_table(args.data / "fer2013", args.data / "ferplus" / "ferplus_votes_train_val.csv")
    val = table[table["split"] == "val"].drop_duplicates("path").reset_index(drop=True)
    r = measure(
        "FER2013 PublicTest", loaded, val["path"].tolist(), args.rounds, args.n_fer, args.e2e_rounds
    )
    f32, b16 = r.pop("_emb")
    ok = val["ferplus_label"].notna().to_numpy()
    noisy = (val["label"] != val["ferplus_label"]).to_numpy()
    labels = val["label"].to_numpy()
    r["knn_auroc_f32"] = round(auroc(knn_disagreement(f32, labels)[ok], noisy[ok]), 4)
    r["knn_auroc_bf16"] = round(auroc(knn_disagreement(b16, labels)[ok], noisy[ok]), 4)
    print(
        f"   kNN ranking AUROC vs FERPlus: float32 {r['knn_auroc_f32']}, bfloat16 {r['knn_auroc_bf16']}"
    )
    results["fer2013_val"] = r

    root = args.data / "taiwanese-posed"
    m = pd.read_csv(root / "manifest.csv")
    r = measure(
        "taiwanese-posed",
        loaded,
        [str(root / p) for p in m["path"]],
        args.rounds,
        0,
        args.e2e_rounds,
    )
    f32, b16 = r.pop("_emb")
    y, groups = m["label"].to_numpy(), m["subject"].to_numpy()
    r["probe_f32"], r["probe_bf16"] = round(lopo(f32, y, groups), 4), round(lopo(b16, y, groups), 4)
    print(
        f"   colour probe (leave one performer out): float32 {r['probe_f32']}, bfloat16 {r['probe_bf16']}"
    )
    results["taiwanese"] = r
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
