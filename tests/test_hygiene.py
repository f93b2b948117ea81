"""Hygiene math (curate.hygiene) against brute-force references on tiny planted data."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate.errors import CurateError
from curate.hygiene import near_duplicates as nd
from curate.hygiene import not_face as nf
from curate.hygiene import quality as q
from curate.hygiene.search import brute_join, cell_join
from curate.hygiene.windows import FULL, area_matrix, resample, standardize, thumbnail
from curate.synthetic import EXPRESSIONS, _make_subject, render_face


def _faces(n: int, seed: int = 0) -> np.ndarray:
    """``n`` synthetic faces: 4 subjects, varied expression and per-image jitter."""
    rng = np.random.default_rng(seed)
    subjects = [_make_subject(f"s{i}", rng) for i in range(4)]
    names = list(EXPRESSIONS)
    return np.stack(
        [render_face(subjects[i % 4], EXPRESSIONS[names[i % len(names)]], rng) for i in range(n)]
    ).astype(np.float32)


def _textures(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct smooth random 48 x 48 images (photo-like spectra, no shared subject)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = np.stack(
        [
            gaussian_filter(rng.normal(size=(48, 48)), 2.5)
            + 0.3 * gaussian_filter(rng.normal(size=(48, 48)), 1)
            for _ in range(n)
        ]
    )
    x = (x - x.mean((1, 2), keepdims=True)) / x.std((1, 2), keepdims=True)
    return np.clip(128 + 45 * x, 0, 255).astype(np.float32)


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32)


def _crop(a: np.ndarray, keep: float, x: int, y: int) -> np.ndarray:
    side = round(a.shape[0] * keep)
    win = Image.fromarray(a[y : y + side, x : x + side].astype(np.uint8))
    return np.asarray(win.resize(a.shape[::-1], Image.BICUBIC), dtype=np.float32)


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    p = np.pad(a, 4, mode="edge")
    return p[4 + dy : 4 + dy + a.shape[0], 4 + dx : 4 + dx + a.shape[1]].copy()


EDITS = {
    "mirror": lambda a: a[:, ::-1].copy(),
    "brighter": lambda a: np.clip(a + 40, 0, 255),
    "contrast": lambda a: np.clip((a - a.mean()) * 0.6 + a.mean(), 0, 255),
    "jpeg": lambda a: _jpeg(a, 30),
    "resize": lambda a: thumbnail(
        np.asarray(Image.fromarray(a.astype(np.uint8)).resize((24, 24), Image.BILINEAR), np.float32)
    ),
    "crop": lambda a: _crop(a, 0.9, 3, 1),
    "shift": lambda a: _shift(a, 2, -2),
}


# ----------------------------------------------------------------------------- windows


def test_area_matrix_matches_supersampled_average():
    rng = np.random.default_rng(0)
    row = rng.random(13)
    for start, length, n_out in [(0.0, 13.0, 5), (1.3, 9.4, 4), (2.0, 6.5, 7)]:
        got = area_matrix(13, start, length, n_out) @ row
        fine = np.repeat(row, 1000)  # 1000 sub-samples per pixel
        edges = np.round((start + np.arange(n_out + 1) * length / n_out) * 1000).astype(int)
        ref = [fine[a:b].mean() for a, b in itertools.pairwise(edges)]
        assert np.allclose(got, ref, atol=1e-3)


def test_full_window_at_native_size_is_the_image_and_standardize_drops_gain():
    img = np.arange(36, dtype=np.float32).reshape(1, 6, 6)
    assert np.allclose(resample(img, [FULL], 6)[0, 0], img.ravel())
    x = np.random.default_rng(1).random((3, 10)).astype(np.float32)
    assert np.allclose(standardize(x), standardize(3 * x + 7), atol=1e-6)
    assert not standardize(np.full((1, 5), 4.0)).any()


# ----------------------------------------------------------------------------- search


def _loop_join(index, queries, k, min_sim):
    """Plain-loop reference: for each query, the k best index entries of other images."""
    out = set()
    n, o, _ = index.shape
    for i, w in itertools.product(range(n), range(queries.shape[1])):
        sims = [
            (float(queries[i, w] @ index[j, r]), j, r) for j in range(n) if j != i for r in range(o)
        ]
        for s, j, r in sorted(sims, reverse=True)[:k]:
            if s >= min_sim:
                out.add((i, w, j, r))
    return out


def _as_set(c):
    return set(
        zip(
            c.query_image.tolist(),
            c.query_window.tolist(),
            c.index_image.tolist(),
            c.index_orientation.tolist(),
            strict=True,
        )
    )


def test_brute_join_equals_plain_loop():
    rng = np.random.default_rng(2)
    index = standardize(rng.normal(size=(15, 2, 6)))
    queries = standardize(rng.normal(size=(15, 3, 6)))
    got = brute_join(index, queries, k=2, min_sim=0.1, block=7)
    assert _as_set(got) == _loop_join(index, queries, 2, 0.1)
    assert not np.any(got.query_image == got.index_image)


def test_cell_join_finds_planted_close_pairs_like_brute_force():
    rng = np.random.default_rng(3)
    n, d = 3000, 16
    centres = rng.normal(size=(30, d))
    base = centres[rng.integers(0, 30, n)] + 0.7 * rng.normal(size=(n, d))
    base[1::2] = base[0::2] + 0.08 * rng.normal(size=(n // 2, d))  # planted near copies
    x = standardize(base.astype(np.float32))
    index, queries = x[:, None, :], x[:, None, :]
    exact = brute_join(index, queries, k=1, min_sim=0.5)
    approx = cell_join(index, queries, k=1, min_sim=0.5, points_per_cell=64, seed=0)
    planted = {(i, i + 1) for i in range(0, n, 2)}
    found = {
        (min(a, b), max(a, b)) for a, b in zip(approx.query_image, approx.index_image, strict=True)
    }
    assert len(planted & found) >= 0.99 * len(planted)
    assert len(_as_set(approx) & _as_set(exact)) >= 0.97 * len(exact)


def test_cell_join_keeps_each_querys_top_k_over_all_its_cells():
    # A query that visits three cells must keep its k best matches over all of them, as
    # brute force does, not k per cell (which would send up to 3 k pairs to the pixel check).
    rng = np.random.default_rng(4)
    x = standardize(rng.normal(size=(2000, 8)).astype(np.float32))
    index, queries = x[:, None, :], x[:, None, :]
    got = cell_join(index, queries, k=2, min_sim=0.0, points_per_cell=32, spill=3, query_spill=3)
    per_query = np.bincount(got.query_image, minlength=len(x))
    assert per_query.max() == 2
    exact = brute_join(index, queries, k=2, min_sim=0.0)
    best = np.full(len(x), -np.inf)
    np.maximum.at(best, exact.query_image, exact.sim)
    kept = np.full(len(x), -np.inf)
    np.maximum.at(kept, got.query_image, got.sim)
    # the cells see only part of the index: a kept match is never better than brute force's best
    assert np.all(kept <= best + 1e-5)
    # and a query keeps its best matches, not whatever its last cell offered
    assert len(_as_set(got) & _as_set(exact)) >= 0.9 * len(exact)


# ----------------------------------------------------------------------------- near duplicates


def test_pixel_similarity_separates_copies_from_other_images():
    faces = _textures(24)
    copies = np.stack([EDITS[e](faces[i]) for i, e in enumerate(EDITS)])
    thumbs = np.concatenate([faces, copies])
    src = np.arange(len(EDITS))
    sims = nd.pixel_similarity(thumbs, src, len(faces) + src)
    assert sims.min() >= nd.DEFAULT_MIN_PIXEL_SIM, dict(zip(EDITS, sims.round(3), strict=True))
    others = nd.pixel_similarity(thumbs, np.arange(0, 20), np.arange(4, 24))
    assert others.max() < nd.DEFAULT_MIN_PIXEL_SIM
    # symmetric and mirror-invariant
    back = nd.pixel_similarity(thumbs, len(faces) + src, src)
    assert np.allclose(sims, back, atol=1e-5)


def test_near_duplicates_finds_exactly_the_planted_copies_and_the_leak():
    faces = _textures(40, seed=5)
    copies = np.stack([EDITS[e](faces[i]) for i, e in enumerate(EDITS)])
    thumbs = np.concatenate([faces, copies])
    n = len(thumbs)
    images = pd.DataFrame(
        {"image_id": np.arange(100, 100 + n), "split": ["train"] * n, "width": 48, "height": 48}
    )
    images.loc[len(faces), "split"] = "test"  # the mirrored copy of face 0 sits in test
    per_image, pairs = nd.near_duplicates(thumbs, images)
    got = {(int(a), int(b)) for a, b in zip(pairs.image_id_a, pairs.image_id_b, strict=True)}
    planted = {(100 + i, 100 + len(faces) + i) for i in range(len(EDITS))}
    assert got == planted
    assert pairs.set_index("image_id_b").loc[100 + len(faces), "cross_split"]
    assert per_image.near_duplicate_leak.sum() == 2
    # within a split the lower image_id is kept (equal sizes), the copy points at it
    of = per_image.near_duplicate_of
    for i in range(1, len(EDITS)):
        assert of[len(faces) + i] == 100 + i and pd.isna(of[i])


def test_group_pairs_keeps_largest_then_lowest_id_and_same_sequence_stays_apart():
    images = pd.DataFrame(
        {
            "image_id": [10, 11, 12, 13, 14, 15],
            "split": ["train", "train", "train", "val", "train", "train"],
            "width": [48, 96, 96, 48, 48, 48],
            "height": [48, 96, 96, 48, 48, 48],
            "sequence": [None, None, None, None, "S1", "S1"],
            "subject": [None, None, None, None, "P", "P"],
        }
    )
    images.loc[6] = [16, "train", 48, 48, "S2", "P"]
    pairs = pd.DataFrame(
        {
            "a": [0, 1, 2, 4, 0, 4],
            "b": [1, 2, 3, 5, 4, 6],
            "candidate_sim": 0.9,
            "pixel_sim": [0.99, 0.97, 0.95, 0.99, 0.5, 0.98],
        }
    )
    per_image, conf = nd.group_pairs(images, pairs, min_pixel_sim=0.9)
    # brute force: component {0,1,2,3}; in train 1 and 2 are largest, 11 < 12 -> keep 11
    assert per_image.near_duplicate_group.tolist() == [0, 0, 0, 0, -1, -1, -1]
    assert per_image.near_duplicate_of.tolist()[:4] == [11, pd.NA, 11, pd.NA]
    assert per_image.near_duplicate_leak.tolist() == [True] * 4 + [False] * 3
    assert conf.relation.tolist() == ["near_duplicate"] * 3 + ["same_sequence", "same_subject"]
    assert conf.cross_split.tolist() == [False, False, True, False, False]
    assert per_image.same_sequence_of.tolist()[4:] == [15, 14, pd.NA]
    assert np.allclose(per_image.near_duplicate_score[:5], [0.99, 0.99, 0.97, 0.95, 0.5])
    assert (
        per_image.near_duplicate_score[5:].isna().all()
    )  # only partners of its own sequence/subject
    # an image another screen rejected is kept last: prefer 12 over 11 (same size)
    prefer = np.array([True, False, True, True, True, True, True])
    per_image, _ = nd.group_pairs(images, pairs, min_pixel_sim=0.9, prefer=prefer)
    assert per_image.near_duplicate_of.tolist()[:4] == [12, 12, pd.NA, pd.NA]


def test_number_groups_and_keep_per_split_match_a_brute_force_reference():
    """Random components, splits, sizes and preferences against plain loops: groups are
    numbered by their first image, the kept image of a group in a split is the first by
    preferred, largest area, lowest id, and a group in two splits leaks."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 25))
        comp = rng.integers(0, n, n)
        group = nd.number_groups(comp)
        order: list[int] = []  # components with two or more images, by first image
        for c in comp.tolist():
            if (comp == c).sum() > 1 and c not in order:
                order.append(c)
        assert group.tolist() == [order.index(c) if c in order else -1 for c in comp.tolist()]
        split = rng.choice(np.array(["train", "val", "\0"], dtype=object), n)
        pref = rng.random(n) < 0.5
        area = rng.choice([48.0 * 48, 96.0 * 96], n)
        ids = rng.permutation(1000)[:n].astype(np.int64)
        near_of, leak = nd.keep_per_split(group, split, pref, area, ids)
        for i in range(n):
            if group[i] < 0:
                assert pd.isna(near_of[i]) and not leak[i]
                continue
            same = [j for j in range(n) if group[j] == group[i]]
            assert leak[i] == (len({split[j] for j in same}) > 1)
            kept = min(
                (j for j in same if split[j] == split[i]),
                key=lambda j: (not pref[j], -area[j], ids[j]),
            )
            assert pd.isna(near_of[i]) if kept == i else near_of[i] == ids[kept]


def test_near_duplicate_inputs_are_checked():
    with pytest.raises(CurateError, match="thumbnails"):
        nd.candidate_descriptors(np.zeros((3, 32, 32)))
    with pytest.raises(CurateError, match="pixel_sim"):
        nd.group_pairs(pd.DataFrame({"image_id": [1]}), pd.DataFrame({"a": [], "b": []}))


# ----------------------------------------------------------------------------- quality


def _loop_entropy(g):
    counts = {}
    for v in np.rint(g).astype(int).ravel():
        counts[v] = counts.get(v, 0) + 1
    p = np.array(list(counts.values())) / g.size
    return float(-(p * np.log2(p)).sum())


def _loop_laplacian_std(g):
    vals = []
    for y in range(1, g.shape[0] - 1):
        for x in range(1, g.shape[1] - 1):
            vals.append(8 * g[y, x] - (g[y - 1 : y + 2, x - 1 : x + 2].sum() - g[y, x]))
    return float(np.std(vals))


def test_quality_stats_match_loops_and_flag_the_planted_problems():
    rng = np.random.default_rng(7)
    face = _faces(1)[0]
    assert q.image_stats(face)["quality_entropy"] == pytest.approx(_loop_entropy(face))
    assert q.edge_strength(face) == pytest.approx(_loop_laplacian_std(face.astype(np.float64)))
    blurred = np.asarray(
        Image.fromarray(face.astype(np.uint8))
        .resize((6, 6), Image.BILINEAR)
        .resize((48, 48), Image.BICUBIC),
        np.float32,
    )
    cases = {
        "face": (face, 48, 48, None),
        "blank": (np.full((48, 48), 128.0) + rng.normal(0, 0.5, (48, 48)), 48, 48, "blank"),
        "dark": (face * 0.2, 48, 48, "too_dark"),
        "bright": (232.0 + rng.integers(0, 24, (48, 48)), 48, 48, "too_bright"),
        "blurred": (blurred, 48, 48, "blurry"),
        "strip": (face, 200, 48, "odd_aspect"),
        "tiny": (face, 16, 16, "too_small"),
    }
    stats = pd.DataFrame([q.image_stats(g, w, h) for g, w, h, _ in cases.values()])
    table = q.quality_table(stats)
    got = [None if pd.isna(r) else r for r in table.quality_reason]
    assert got == [r for *_, r in cases.values()]
    assert table.quality_reject.tolist() == [r is not None for *_, r in cases.values()]


# ----------------------------------------------------------------------------- not a face


def test_face_space_score_matches_formula_and_ranks_non_faces_high():
    faces = _faces(300, seed=9)
    rng = np.random.default_rng(9)
    text = np.full((6, 48, 48), 240.0)
    for t in text:
        for row in range(8, 40, 6):
            t[row : row + 2, rng.integers(2, 10) : rng.integers(30, 46)] = 20.0
    blank = np.zeros((1, 48, 48))
    thumbs = np.concatenate([faces, text, blank]).astype(np.float32)
    x = nf.face_vectors(thumbs)
    model = nf.fit_face_space(x[:300], dims=10)
    s = model.score(x)
    c = x[0] - model.mean
    y = model.axes.T @ c
    ref = ((y**2 / model.variances).sum() + (c @ c - y @ y) / model.residual_variance) / x.shape[1]
    assert s[0] == pytest.approx(ref, rel=1e-4)
    assert s[-1] == nf.BLANK_SCORE
    assert s[300:306].min() > np.quantile(s[:300], 0.99)


def test_not_face_score_is_the_max_robust_z_and_flags_flat_images():
    faces = _textures(200, seed=11) + np.random.default_rng(11).normal(0, 3, (200, 48, 48))
    icons = np.full((4, 48, 48), 200.0)
    icons[:, 16:32, 10:38] = 60.0
    thumbs = np.concatenate([faces, icons]).astype(np.float32)
    feats = nf.not_face_features(thumbs)
    flat = feats["flat"]
    t = thumbs[200]
    loop = np.mean(
        [
            abs(t[y, x + 1] - t[y, x]) < 2 and abs(t[y + 1, x] - t[y, x]) < 2
            for y in range(47)
            for x in range(47)
        ]
    )
    assert flat[200] == pytest.approx(loop)

    def z(v):
        med = np.median(v)
        return (v - med) / (1.4826 * np.median(np.abs(v - med)))

    ref = np.maximum.reduce([z(flat), -z(feats["entropy"]), z(feats["face_space"])])
    score = nf.not_face_score(feats)
    assert np.allclose(score, ref)
    assert score[200:].min() > nf.DEFAULT_MAX_SCORE > np.quantile(score[:200], 0.99)


@pytest.mark.slow
def test_ckplus_frames_of_one_sequence_are_same_sequence_not_merged(shared_data):
    from curate.images import load_image

    ck = pd.read_csv(shared_data / "ckplus48" / "manifest.csv")
    thumbs = np.stack(
        [
            thumbnail(np.asarray(load_image(shared_data / "ckplus48" / p, in_chans=1), np.float32))
            for p in ck.path
        ]
    )
    ck.insert(0, "image_id", np.arange(len(ck)))
    per_image, pairs = nd.near_duplicates(thumbs, ck)
    seq = pairs[pairs.relation == nd.SAME_SEQUENCE]
    assert (ck.sequence.to_numpy()[seq.image_id_a] == ck.sequence.to_numpy()[seq.image_id_b]).all()
    assert len(seq) >= 0.9 * ck.groupby("sequence").size().map(lambda n: n * (n - 1) // 2).sum()
    assert (pairs.group[pairs.relation == nd.SAME_SEQUENCE] == -1).all()
    # other photos of one person are same_subject, never merged; two people never confirmed
    assert (pairs.relation != nd.NEAR_DUPLICATE).all()
    subject = ck.subject.to_numpy()
    assert (subject[pairs.image_id_a] == subject[pairs.image_id_b]).all()
    assert (per_image.near_duplicate_group == -1).all()


def test_cell_order_is_the_stable_order_whatever_the_id_width():
    from curate.hygiene.search import _by_cell, _unique_sorted

    cells = np.random.default_rng(5).integers(0, 300, 5000)
    want = np.argsort(cells, kind="stable")
    assert np.array_equal(_by_cell(cells, 300), want)  # 16-bit radix path
    assert np.array_equal(_by_cell(cells + 70_000, 70_300), want)  # wide ids
    x = np.sort(np.random.default_rng(6).integers(0, 50, 200))
    assert np.array_equal(_unique_sorted(x), np.unique(x)) and len(_unique_sorted(x[:0])) == 0


def test_hygiene_decodes_with_blas_on_one_thread_and_the_same_pixels(tmp_path, monkeypatch):
    """The hygiene decode runs its small matrix products with BLAS on one thread
    (``curate.limits.one_blas_thread``: threads made a 256-px thumbnail 200 times slower on
    a busy machine) and gives exactly what the products give with BLAS's threads."""
    from threadpoolctl import threadpool_info

    from curate.hygiene import thumbnails as th
    from curate.limits import one_blas_thread

    rng = np.random.default_rng(0)
    paths, shas = [], []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (256, 200, 3), dtype=np.uint8), "RGB").save(p)
        paths.append(str(p))
        shas.append(f"{i:064x}")
    seen = []
    inner = th.decode_one

    def spy(path, stats=True):
        seen.append(
            max(
                (lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"),
                default=1,
            )
        )
        return inner(path, stats)

    monkeypatch.setattr(th, "decode_one", spy)
    got = th.decoded_images(paths, shas, memo={}, workers=1)
    assert seen == [1, 1, 1]
    for p, thumb, (_, row) in zip(paths, got.thumbs, got.stats.iterrows(), strict=True):
        grey = np.asarray(Image.open(p).convert("L"), dtype=np.float32)
        assert np.array_equal(thumb, thumbnail(grey, th.THUMB_SIDE))  # threaded BLAS here
        assert row.to_dict() == q.image_stats(grey)
    with one_blas_thread():
        assert all(
            lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas"
        )
