"""Hygiene screens on real FER data and at scale (issue #15). Prints every figure of
docs/hygiene.md; each subcommand states what it measures.

    python -m bench.quality.bench_hygiene planted   # planted copies of fer2013/val: recall, precision
    python -m bench.quality.bench_hygiene real --sheet DIR   # FER2013 train+val: groups, leakage, 100-pair sheet
    python -m bench.quality.bench_hygiene ckplus    # CK+: same-sequence frames, same-subject pairs
    python -m bench.quality.bench_hygiene scale     # 1,000,000 synthetic descriptors vs brute force
    python -m bench.quality.bench_hygiene notface   # not-a-face AUROC on the hand-labelled FERPlus drops
    python -m bench.quality.bench_hygiene quality   # quality flag rates

Data: ``../shared/data`` beside the checkout (``--data``). Thumbnails are decoded once with
``curate.images.load_image`` and cached under ``--cache`` (default /tmp/curate-hygiene).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.common import paths
from bench.common.paths import DATA
from curate.hygiene import near_duplicates as nd
from curate.hygiene import not_face as nf
from curate.hygiene import quality as q
from curate.hygiene import search
from curate.hygiene.search import brute_join, cell_join
from curate.hygiene.windows import thumbnail
from curate.images import load_image

AUDIT = paths.AUDIT / "fer2013_ferplus_dropped_labels.csv"


# ----------------------------------------------------------------------------- data


def fer_table(data: Path) -> pd.DataFrame:
    rows = []
    for split in ("train", "val"):
        for p in sorted((data / "fer2013" / split).glob("*/*.jpg")):
            rows.append(
                {"path": str(p), "rel": str(p.relative_to(data / "fer2013")), "split": split}
            )
    df = pd.DataFrame(rows)
    df.insert(0, "image_id", np.arange(len(df)))
    return df


def gray(path: str) -> np.ndarray:
    return np.asarray(load_image(path, in_chans=1), dtype=np.float32)


def thumbs_of(paths: list[str], cache: Path, name: str) -> np.ndarray:
    f = cache / f"{name}.npy"
    if f.exists():
        return np.load(f)
    cache.mkdir(parents=True, exist_ok=True)
    t = np.stack([thumbnail(gray(p)) for p in paths]).astype(np.float32)
    np.save(f, t)
    return t


# ----------------------------------------------------------------------------- planted


def _jpeg(a, quality):
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32)


def _resize(a, f):
    h, w = a.shape
    im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    return np.asarray(
        im.resize((round(w * f), round(h * f)), Image.BILINEAR if f < 1 else Image.BICUBIC),
        dtype=np.float32,
    )


def _crop(a, keep, rng):
    h, w = a.shape
    ch, cw = round(h * keep), round(w * keep)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    im = Image.fromarray(np.clip(np.rint(a[y : y + ch, x : x + cw]), 0, 255).astype(np.uint8))
    return np.asarray(im.resize((w, h), Image.BICUBIC), dtype=np.float32)


def _shift(a, k, rng):
    dy, dx = rng.choice([-k, k]), rng.choice([-k, k])
    p = np.pad(a, k, mode="edge")
    return p[k + dy : k + dy + a.shape[0], k + dx : k + dx + a.shape[1]].copy()


def _clip(a):
    return np.clip(np.rint(a), 0, 255)


CONDITIONS = {
    "resize_0.5": lambda a, r: _resize(a, 0.5),
    "resize_0.75": lambda a, r: _resize(a, 0.75),
    "resize_2": lambda a, r: _resize(a, 2.0),
    "jpeg_75": lambda a, r: _jpeg(a, 75),
    "jpeg_40": lambda a, r: _jpeg(a, 40),
    "jpeg_15": lambda a, r: _jpeg(a, 15),
    "crop_95": lambda a, r: _crop(a, 0.95, r),
    "crop_90": lambda a, r: _crop(a, 0.90, r),
    "crop_85": lambda a, r: _crop(a, 0.85, r),
    "shift_1": lambda a, r: _shift(a, 1, r),
    "shift_2": lambda a, r: _shift(a, 2, r),
    "shift_4": lambda a, r: _shift(a, 4, r),
    "bright_+30": lambda a, r: _clip(a + 30),
    "bright_-40": lambda a, r: _clip(a - 40),
    "bright_+60": lambda a, r: _clip(a + 60),
    "contrast_0.6": lambda a, r: _clip((a - a.mean()) * 0.6 + a.mean()),
    "contrast_1.4": lambda a, r: _clip((a - a.mean()) * 1.4 + a.mean()),
    "gamma_0.6": lambda a, r: _clip(255 * (a / 255) ** 0.6),
    "gamma_1.6": lambda a, r: _clip(255 * (a / 255) ** 1.6),
    "mirror": lambda a, r: a[:, ::-1].copy(),
    "mirror+jpeg40+bright20": lambda a, r: _jpeg(_clip(a[:, ::-1] + 20), 40),
    "crop90+contrast0.7+jpeg50": lambda a, r: _jpeg(
        _clip((lambda c: (c - c.mean()) * 0.7 + c.mean())(_crop(a, 0.9, r))), 50
    ),
}
# strengths beyond "small": reported separately, not in the headline recall
BEYOND = {"crop_85", "shift_4"}


def planted(args) -> None:
    fer = fer_table(args.data)
    thumbs = thumbs_of(fer.path.tolist(), args.cache, "fer_thumbs")
    rng = np.random.default_rng(0)
    val = rng.permutation(np.flatnonzero(fer.split.to_numpy() == "val"))
    conds = list(CONDITIONS)
    src = val
    cond = np.array([conds[i % len(conds)] for i in range(len(src))])
    copies = np.stack(
        [thumbnail(CONDITIONS[c](gray(fer.path[s]), rng)) for s, c in zip(src, cond, strict=True)]
    )
    n0 = len(fer)
    allt = np.concatenate([thumbs, copies]).astype(np.float32)
    pd.DataFrame({"image_id": np.arange(len(allt)), "split": "all", "width": 48, "height": 48})
    t = time.time()
    desc = nd.candidate_descriptors(allt)
    cand = nd.find_candidates(desc)
    t_cand = time.time() - t
    cand["pixel_sim"] = nd.pixel_similarity(allt, cand.a.to_numpy(), cand.b.to_numpy())
    t_all = time.time() - t
    # truth: a copy matches its source, the source's byte-identical copies (same sha) and the
    # images the clean run confirms as near-duplicates of the source
    import hashlib

    sha = np.array([hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in fer.path])
    clean = cand[(cand.a < n0) & (cand.b < n0) & (cand.pixel_sim >= nd.DEFAULT_MIN_PIXEL_SIM)]
    related = {i: {i} for i in range(n0)}
    for _h, grp in pd.Series(np.arange(n0)).groupby(sha):
        members = set(grp.tolist())
        for m in members:
            related[m] |= members
    for a, b in zip(clean.a, clean.b, strict=True):
        related[a].add(b)
        related[b].add(a)
    copy_of = {n0 + j: int(s) for j, s in enumerate(src)}
    involving = cand[(cand.b >= n0)]
    for thr in sorted({nd.DEFAULT_MIN_PIXEL_SIM, 0.94, 0.95, 0.96, 0.97, 0.98}):
        rep = involving[involving.pixel_sim >= thr]
        ok_pairs = 0
        found = np.zeros(len(src), bool)
        for a, b in zip(rep.a, rep.b, strict=True):
            s = copy_of[b]
            other = copy_of.get(a, a)
            if other in related[s] or (a >= n0 and copy_of[a] in related[s]):
                ok_pairs += 1
                if a < n0:
                    found[b - n0] = True
        inscope = ~np.isin(cond, list(BEYOND))
        print(
            f"pixel_sim >= {thr:.2f}: recall {found[inscope].mean():.4f} (in scope, n={inscope.sum()}), "
            f"{found.mean():.4f} (all 22 conditions); precision among reported pairs with a copy "
            f"{ok_pairs / max(1, len(rep)):.4f} ({len(rep)} pairs)"
        )
        if thr == nd.DEFAULT_MIN_PIXEL_SIM:
            per = pd.Series(found).groupby(cond).mean().sort_values()
            print("  recall by condition:", per.round(3).to_dict())
    print(
        f"candidates {len(cand)} pairs for {len(allt)} images; candidate stage {t_cand:.1f}s, "
        f"with pixel check {t_all:.1f}s"
    )
    cand.to_parquet(args.cache / "fer_planted_pairs.parquet")
    # the real data: pairs among the FER2013 images themselves (same run)
    fer["width"], fer["height"] = 48, 48
    base = cand[cand.b < n0]
    for thr in (0.95, 0.96, nd.DEFAULT_MIN_PIXEL_SIM, 0.98):
        per_image, pairs = nd.group_pairs(fer, base, min_pixel_sim=thr)
        ident = sha[pairs.image_id_a.to_numpy()] == sha[pairs.image_id_b.to_numpy()]
        cross = pairs.cross_split.to_numpy()
        print(
            f"FER2013 train+val at pixel_sim >= {thr}: {len(pairs)} confirmed pairs "
            f"({ident.sum()} byte-identical, {(~ident).sum()} near), "
            f"{per_image.near_duplicate_group.max() + 1} groups holding {(per_image.near_duplicate_group >= 0).sum()} "
            f"images, {per_image.near_duplicate_of.notna().sum()} near_duplicate_of; cross-split pairs "
            f"{cross.sum()} ({(cross & ~ident).sum()} not byte-identical), val images leaking "
            f"{pairs[cross].image_id_b.nunique()}"
        )
        if thr == nd.DEFAULT_MIN_PIXEL_SIM and args.sheet:
            near = (
                pairs[~ident]
                .sample(min(100, int((~ident).sum())), random_state=0)
                .reset_index(drop=True)
            )
            args.sheet.mkdir(parents=True, exist_ok=True)
            near.assign(
                path_a=fer.rel.to_numpy()[near.image_id_a],
                path_b=fer.rel.to_numpy()[near.image_id_b],
            ).to_csv(args.sheet / "pairs_key.csv", index_label="number")
            pair_sheets(near, fer, args.sheet)
            print(
                f"  wrote sheets of 100 random confirmed near (not byte-identical) pairs to {args.sheet}"
            )


# ----------------------------------------------------------------------------- real


def real(args) -> None:
    fer = fer_table(args.data)
    thumbs = thumbs_of(fer.path.tolist(), args.cache, "fer_thumbs")
    fer["width"], fer["height"] = 48, 48
    t = time.time()
    per_image, pairs = nd.near_duplicates(thumbs, fer)
    dt = time.time() - t
    grouped = per_image.near_duplicate_group >= 0
    print(
        f"FER2013 train+val: {len(fer)} images, {len(pairs)} confirmed pairs, "
        f"{per_image.near_duplicate_group.max() + 1} groups with {grouped.sum()} images, "
        f"{per_image.near_duplicate_of.notna().sum()} marked near_duplicate_of ({dt:.0f}s)"
    )
    cross = pairs[pairs.cross_split]
    print(
        f"cross-split (train/val) pairs: {len(cross)}; val images with a train near-duplicate: "
        f"{cross.image_id_b.nunique()}"
    )
    import hashlib

    sha = np.array([hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in fer.path])
    same = sha[pairs.image_id_a.to_numpy()] == sha[pairs.image_id_b.to_numpy()]
    print(
        f"of the confirmed pairs, byte-identical: {same.sum()}, near (not identical): {(~same).sum()}; "
        f"cross-split near (not identical): {(~same & pairs.cross_split.to_numpy()).sum()}"
    )
    pairs.to_parquet(args.cache / "fer_pairs.parquet")
    if args.sheet:
        near = pairs[~same].sample(min(100, (~same).sum()), random_state=0).reset_index(drop=True)
        args.sheet.mkdir(parents=True, exist_ok=True)
        near.assign(
            path_a=fer.rel.to_numpy()[near.image_id_a], path_b=fer.rel.to_numpy()[near.image_id_b]
        ).to_csv(args.sheet / "pairs_key.csv", index_label="number")
        pair_sheets(near, fer, args.sheet)
        print(f"wrote 100-pair contact sheets to {args.sheet}")


def pair_sheets(
    pairs: pd.DataFrame, fer: pd.DataFrame, out: Path, per_sheet: int = 25, px: int = 80
) -> None:
    from PIL import ImageDraw

    cols = 5
    for s in range(0, len(pairs), per_sheet):
        chunk = pairs.iloc[s : s + per_sheet]
        sheet = Image.new(
            "L", (cols * (2 * px + 10), ((len(chunk) + cols - 1) // cols) * (px + 14)), 255
        )
        pen = ImageDraw.Draw(sheet)
        for i, (_, r) in enumerate(chunk.iterrows()):
            x, y = (i % cols) * (2 * px + 10), (i // cols) * (px + 14)
            for j, iid in enumerate((r.image_id_a, r.image_id_b)):
                im = Image.open(fer.path[int(iid)]).convert("L").resize((px, px))
                sheet.paste(im, (x + j * px, y))
            pen.text((x + px - 12, y + px + 1), f"{s + i}: {r.pixel_sim:.3f}", fill=0)
        sheet.save(out / f"pairs_{s // per_sheet:02d}.png")


# ----------------------------------------------------------------------------- ckplus


def ckplus(args) -> None:
    ck = pd.read_csv(args.data / "ckplus48" / "manifest.csv")
    thumbs = thumbs_of([str(args.data / "ckplus48" / p) for p in ck.path], args.cache, "ck_thumbs")
    ck.insert(0, "image_id", np.arange(len(ck)))
    per_image, pairs = nd.near_duplicates(thumbs, ck)
    seq_pairs = ck.groupby("sequence").size().map(lambda n: n * (n - 1) // 2).sum()
    print(
        f"CK+: {len(ck)} frames, {seq_pairs} same-sequence frame pairs; confirmed pairs: "
        f"{(pairs.relation == nd.SAME_SEQUENCE).sum()} same_sequence, "
        f"{(pairs.relation == nd.NEAR_DUPLICATE).sum()} near_duplicate"
    )
    nd_pairs = pairs[pairs.relation == nd.NEAR_DUPLICATE]
    subj = ck.subject.to_numpy()
    same_subject = subj[nd_pairs.image_id_a] == subj[nd_pairs.image_id_b]
    print(
        f"  near_duplicate pairs of one subject (other sequences): {same_subject.sum()}, of two subjects: "
        f"{(~same_subject).sum()}"
    )
    # pixel similarity of every same-subject, other-sequence pair (different photos of one person)
    a, b = [], []
    for _, grp in ck.groupby("subject"):
        rows = grp.index.to_numpy()
        for i in rows:
            for j in rows:
                if i < j and ck.sequence[i] != ck.sequence[j]:
                    a.append(i)
                    b.append(j)
    sims = nd.pixel_similarity(thumbs, np.array(a), np.array(b))
    print(
        f"  all {len(a)} same-subject other-sequence pairs: pixel_sim quantiles 50/99/99.9/max "
        f"{np.quantile(sims, [0.5, 0.99, 0.999, 1]).round(3).tolist()}; at or above "
        f"{nd.DEFAULT_MIN_PIXEL_SIM}: {(sims >= nd.DEFAULT_MIN_PIXEL_SIM).mean():.4f}"
    )
    a, b = [], []
    for _, grp in ck.groupby("sequence"):
        rows = grp.index.to_numpy()
        a += [i for i in rows for j in rows if i < j]
        b += [j for i in rows for j in rows if i < j]
    sims = nd.pixel_similarity(thumbs, np.array(a), np.array(b))
    print(
        f"  all {len(a)} same-sequence frame pairs: pixel_sim quantiles min/50/max "
        f"{np.quantile(sims, [0, 0.5, 1]).round(3).tolist()}"
    )


# ----------------------------------------------------------------------------- scale


def synthetic_descriptors(n: int, n_planted: int, d: int = nd.PROJECTION_DIMS, seed: int = 0):
    """Projected descriptors as the candidate stage sees them: index ``(n, 2, d)`` (frame and
    mirror) and queries ``(n, 6, d)`` (windows), unit norm. Images are drawn around 1,000
    cluster centres; an image's windows and mirror lie at cosine ~0.83 from its frame. The
    last ``n_planted`` images are copies: their frame is a random window of image ``i``
    (``i < n_planted``) plus noise (cosine ~0.98)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, d)).astype(np.float32)
    index = np.empty((n, 2, d), np.float32)
    queries = np.empty((n, len(nd.CANDIDATE_WINDOWS), d), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        c = centres[rng.integers(0, 1000, m)] + 1.2 * rng.normal(size=(m, d)).astype(np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        index[s : s + m, 0] = c
        index[s : s + m, 1] = c + 0.12 * rng.normal(size=(m, d))
        queries[s : s + m] = c[:, None] + 0.12 * rng.normal(size=(m, queries.shape[1], d))
        queries[s : s + m, 0] = c
    pick = rng.integers(0, queries.shape[1], n_planted)
    copy = queries[np.arange(n_planted), pick] + 0.03 * rng.normal(size=(n_planted, d))
    index[n - n_planted :, 0] = copy
    index[n - n_planted :, 1] = copy + 0.12 * rng.normal(size=(n_planted, d))
    queries[n - n_planted :] = copy[:, None] + 0.12 * rng.normal(
        size=(n_planted, queries.shape[1], d)
    )
    queries[n - n_planted :, 0] = copy
    index /= np.linalg.norm(index, axis=2, keepdims=True)
    queries /= np.linalg.norm(queries, axis=2, keepdims=True)
    return index, queries


def scale(args) -> None:
    """The candidate search at ``--n`` images against brute force on a ``--subset`` of the same
    data, both timed in this run (wall and this process's CPU time, with the machine's load:
    the development machine is shared)."""
    n, sub = args.n, args.subset
    n_planted = n // 100
    t0 = time.time()
    index, queries = synthetic_descriptors(n, n_planted)
    src = np.arange(n_planted)
    t_desc = time.time() - t0
    load0 = os.getloadavg()[0]
    t, c = time.time(), time.process_time()
    cells = {
        "points_per_cell": args.points_per_cell,
        "spill": args.spill,
        "query_spill": args.query_spill,
    }
    cand = cell_join(index, queries, k=nd.DEFAULT_K, min_sim=nd.DEFAULT_MIN_CANDIDATE_SIM, **cells)
    t_join, c_join = time.time() - t, time.process_time() - c
    pairs = set(
        zip(
            np.minimum(cand.query_image, cand.index_image).tolist(),
            np.maximum(cand.query_image, cand.index_image).tolist(),
            strict=True,
        )
    )
    rec = np.mean([(int(i), n - n_planted + int(i)) in pairs for i in src])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(
        f"cell join settings {cells}; threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        f"{n:,} images x {queries.shape[1]} query windows x {index.shape[1]} orientations, d={index.shape[2]}: "
        f"cell join {t_join:.1f}s wall, {c_join:.1f}s CPU (load average {load0:.1f} -> "
        f"{os.getloadavg()[0]:.1f}; {len(cand):,} matches), planted-pair recall {rec:.4f}, "
        f"synthetic data {t_desc:.1f}s, peak RSS {peak:.2f} GiB (index + queries "
        f"{(index.nbytes + queries.nbytes) / 2**30:.2f} GiB)"
    )
    t, c = time.time(), time.process_time()
    ex = brute_join(
        index[:sub], queries[:sub], k=nd.DEFAULT_K, min_sim=nd.DEFAULT_MIN_CANDIDATE_SIM
    )
    t_brute, c_brute = time.time() - t, time.process_time() - c
    t = time.time()
    ap = cell_join(
        index[:sub], queries[:sub], k=nd.DEFAULT_K, min_sim=nd.DEFAULT_MIN_CANDIDATE_SIM, **cells
    )
    t_cell_sub = time.time() - t
    est, est_cpu = t_brute * (n / sub) ** 2, c_brute * (n / sub) ** 2
    agree = len(
        {(a, b) for a, b in zip(ap.query_image, ap.index_image, strict=True)}
        & {(a, b) for a, b in zip(ex.query_image, ex.index_image, strict=True)}
    ) / max(1, len(ex))
    print(
        f"brute force on a {sub:,} subset: {t_brute:.1f}s wall, {c_brute:.1f}s CPU (cell join on it "
        f"{t_cell_sub:.1f}s, {agree:.3f} of brute-force matches found) -> {est:,.0f}s wall extrapolated to "
        f"{n:,} (quadratic); ratio brute/cell at {n:,}: {est / t_join:,.0f}x wall, {est_cpu / c_join:,.0f}x CPU"
    )


# ----------------------------------------------------------------------------- not a face, quality


def _ferplus_split(fer: pd.DataFrame, data: Path) -> pd.DataFrame:
    votes = pd.read_csv(data / "ferplus" / "ferplus_votes_train_val.csv", usecols=["path"])
    fer["in_ferplus"] = fer.rel.isin(set(votes.path))
    labels = pd.read_csv(AUDIT).set_index("path").label
    fer["hand"] = fer.rel.map(labels)
    import hashlib

    # split rule fixed before tuning: the first hex digit of the file's sha256 even -> tune half
    fer["tune"] = [
        int(hashlib.sha256(Path(p).read_bytes()).hexdigest()[0], 16) % 2 == 0 for p in fer.path
    ]
    return fer


def notface(args) -> None:
    from sklearn.metrics import roc_auc_score

    fer = _ferplus_split(fer_table(args.data), args.data)
    thumbs = thumbs_of(fer.path.tolist(), args.cache, "fer_thumbs")
    ck = pd.read_csv(args.data / "ckplus48" / "manifest.csv")
    ckt = thumbs_of([str(args.data / "ckplus48" / p) for p in ck.path], args.cache, "ck_thumbs")
    feats = nf.not_face_features(thumbs)
    s = nf.not_face_score(feats)
    s_ck = nf.not_face_score(nf.not_face_features(ckt))
    kept = fer.in_ferplus.to_numpy()
    tune = fer.tune.to_numpy()
    notf = (fer.hand == "not_face").to_numpy()
    print(
        f"hand labels of the {(~kept).sum()} FERPlus-dropped files: {fer.hand.value_counts().to_dict()}; "
        f"tune half (sha256 first hex digit even): {(notf & tune).sum()} not-a-face, report half "
        f"{(notf & ~tune).sum()}"
    )

    def auroc(score, pos, neg):
        return roc_auc_score(
            np.r_[np.ones(pos.sum()), np.zeros(neg.sum())], np.r_[score[pos], score[neg]]
        )

    signals = {
        "not_face_score (max robust z)": s,
        "flat share": feats["flat"],
        "-grey entropy": -feats["entropy"],
        "log face-space distance": feats["face_space"],
    }
    for name, sc in signals.items():
        print(
            f"  AUROC not-a-face vs FERPlus-kept, {name}: tune {auroc(sc, notf & tune, kept):.4f}, "
            f"report {auroc(sc, notf & ~tune, kept):.4f}, all {auroc(sc, notf, kept):.4f}"
        )
    # threshold rule, on the tune half only: most not-a-face recall with <= 0.5 % of kept faces flagged
    grid = np.arange(2.0, 30.0, 0.5)
    ok = [(t, (s[notf & tune] > t).mean()) for t in grid if (s[kept & tune] > t).mean() <= 0.005]
    rule = max(ok, key=lambda p: (p[1], -p[0]))[0]
    print(
        f"  tune-half rule -> threshold {rule} (shipped DEFAULT_MAX_SCORE {nf.DEFAULT_MAX_SCORE})"
    )
    t = nf.DEFAULT_MAX_SCORE
    print(
        f"  at {t}: flagged FERPlus-kept {(s[kept] > t).mean():.4f} (tune {(s[kept & tune] > t).mean():.4f}, "
        f"report {(s[kept & ~tune] > t).mean():.4f}), CK+ {(s_ck > t).mean():.4f}; not-a-face recall tune "
        f"{(s[notf & tune] > t).mean():.3f}, report {(s[notf & ~tune] > t).mean():.3f}; unusable faces "
        f"{(s[(fer.hand == 'unusable_face').to_numpy()] > t).mean():.3f}, fine {(s[(fer.hand == 'fine').to_numpy()] > t).mean():.3f}"
    )


def quality(args) -> None:
    fer = _ferplus_split(fer_table(args.data), args.data)
    stats = pd.DataFrame([q.image_stats(gray(p)) for p in fer.path])
    table = q.quality_table(stats)
    kept = fer.in_ferplus.to_numpy()
    print(
        f"FERPlus-kept: {table.quality_reject[kept].mean():.4f} flagged "
        f"{table.quality_reason[kept].value_counts().to_dict()}"
    )
    for lab in ("not_face", "unusable_face", "fine"):
        m = (fer.hand == lab).to_numpy()
        print(
            f"hand {lab} ({m.sum()}): {table.quality_reject[m].mean():.3f} flagged "
            f"{table.quality_reason[m].value_counts().to_dict()}"
        )
    ck = pd.read_csv(args.data / "ckplus48" / "manifest.csv")
    ckq = q.quality_table(
        pd.DataFrame([q.image_stats(gray(str(args.data / "ckplus48" / p))) for p in ck.path])
    )
    print(
        f"CK+: {ckq.quality_reject.mean():.4f} flagged {ckq.quality_reason.value_counts().to_dict()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["planted", "real", "ckplus", "scale", "notface", "quality"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/curate-hygiene"))
    ap.add_argument("--sheet", type=Path, default=None)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--subset", type=int, default=20_000)
    ap.add_argument("--points-per-cell", type=int, default=search.POINTS_PER_CELL)
    ap.add_argument("--spill", type=int, default=search.SPILL)
    ap.add_argument("--query-spill", type=int, default=search.QUERY_SPILL)
    args = ap.parse_args()
    globals()[args.what](args)


if __name__ == "__main__":
    main()
