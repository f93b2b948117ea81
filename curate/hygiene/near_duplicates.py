"""Near-duplicate images: the same photo after resize, re-encoding, small crop or shift,
brightness/contrast change or mirror.

Three steps, none of which builds an N x N matrix:

1. **Candidates** (:func:`find_candidates`). Each image's 48 x 48 grey thumbnail gives six
   8 x 8 window descriptors (:data:`CANDIDATE_WINDOWS`: the whole frame, and windows of
   0.9 of the side at the four corners and the centre), standardised (zero mean, unit norm,
   so brightness and contrast drop out), centred on the data's mean descriptor and
   projected on its 32 leading principal axes with square-root whitening
   (:func:`fit_projection`). The index holds every image's whole-frame vector and its
   mirror; each window is a query. A copy cropped or shifted by a few pixels is close to
   one of the windows of its source; a mirrored copy to the mirrored frame. Each query
   keeps its ``k`` most similar index vectors above ``min_sim``
   (:func:`curate.hygiene.search.cell_join`).
2. **Pixel check** (:func:`pixel_similarity`). For every candidate pair, the central 80 %
   of one image (12 x 12, standardised) is matched against a bank of 285 windows of the
   other (relative scales 1 to 0.8, positions on a grid of at most 5 % of the side), as is and
   mirrored, both ways round; pairs scoring at least 0.85 are refined around their best
   window (3 scales x 3 x 3 positions at a third of the grid spacing); the score is the best
   normalised cross-correlation. Copies
   score near 1; different photos of one person lower (``docs/hygiene.md`` gives the
   measured distributions and the threshold :data:`DEFAULT_MIN_PIXEL_SIM`).
3. **Groups** (:func:`group_pairs`): connected components of the confirmed pairs; in each
   split the image with the largest source size (then the lowest ``image_id``) is kept and
   the others are ``near_duplicate_of:<kept image_id>``; a group that spans splits is
   **leakage**, and its cross-split pairs are listed. (With ``prefer``, e.g. the images no
   earlier screen rejected, preferred images are kept first.) Pairs of frames of one sequence (equal
   ``sequence`` values) are reported as ``same_sequence``, other pairs of one person (equal
   ``subject``) as ``same_subject``; neither is merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.errors import CurateError
from curate.hygiene.search import Candidates, cell_join
from curate.hygiene.windows import (
    FULL,
    Window,
    area_matrices,
    mirror_grid,
    resample,
    standardize,
)
from curate.limits import one_blas_thread

THUMB = 48
DESCRIPTOR_SIZE = 8
CANDIDATE_WINDOWS: tuple[Window, ...] = (
    FULL,
    (0.9, 0.0, 0.0),
    (0.9, 1.0, 0.0),
    (0.9, 0.0, 1.0),
    (0.9, 1.0, 1.0),
    (0.9, 0.5, 0.5),
)
PROJECTION_DIMS = 32
WHITEN_POWER = 0.5
DEFAULT_K = 3
DEFAULT_MIN_CANDIDATE_SIM = 0.7
VERIFY_SIZE = 12
VERIFY_REGION = 0.8
VERIFY_SCALES = (1.0, 0.95, 0.9, 0.85, 0.8)
VERIFY_STEP = 0.05
VERIFY_SCALE_STEP = 0.05
REFINE_FROM = 0.85
DEFAULT_MIN_PIXEL_SIM = 0.97

NEAR_DUPLICATE = "near_duplicate"
SAME_SEQUENCE = "same_sequence"
SAME_SUBJECT = "same_subject"


# ----------------------------------------------------------------------------- descriptors


def candidate_descriptors(thumbs: np.ndarray) -> np.ndarray:
    """``(N, 48, 48)`` thumbnails -> ``(N, 6, 64)`` standardised window descriptors."""
    _check_thumbs(thumbs)
    return standardize(resample(thumbs, CANDIDATE_WINDOWS, DESCRIPTOR_SIZE))


def _check_thumbs(thumbs: np.ndarray) -> None:
    if thumbs.ndim != 3 or thumbs.shape[1:] != (THUMB, THUMB):
        raise CurateError(
            f"expected (N, {THUMB}, {THUMB}) thumbnails, got shape {thumbs.shape}",
            hint="make them with curate.hygiene.windows.thumbnail(gray, 48)",
        )


@dataclass(frozen=True)
class Projection:
    """Centre and whitened principal axes of the descriptors (fitted per data set)."""

    mean: np.ndarray  # (64,)
    basis: np.ndarray  # (64, dims)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = (x - self.mean) @ self.basis
        return standardize_norm(y)


def standardize_norm(y: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(y, axis=-1, keepdims=True)
    return (y / np.maximum(n, 1e-9)).astype(np.float32)


def fit_projection(
    full: np.ndarray,
    *,
    dims: int = PROJECTION_DIMS,
    power: float = WHITEN_POWER,
    sample: int = 20_000,
    seed: int = 0,
) -> Projection:
    """Fit :class:`Projection` on whole-frame descriptors ``(N, 64)`` and their mirrors."""
    rng = np.random.default_rng(seed)
    pick = full[rng.choice(len(full), min(sample, len(full)), replace=False)]
    pick = np.concatenate([pick, mirror_grid(pick, DESCRIPTOR_SIZE)])
    mean = pick.mean(0)
    with one_blas_thread():  # a 64 x 64 covariance: threads only cost (curate.limits)
        evals, evecs = np.linalg.eigh(np.cov((pick - mean).T))
    order = np.argsort(evals)[::-1][:dims]
    basis = evecs[:, order] / np.maximum(evals[order], 1e-9) ** (power / 2)
    return Projection(mean.astype(np.float32), basis.astype(np.float32))


def index_and_queries(desc: np.ndarray, projection: Projection) -> tuple[np.ndarray, np.ndarray]:
    """Index ``(N, 2, d)`` (frame, mirrored frame) and queries ``(N, 6, d)`` (windows)."""
    full = desc[:, 0]
    index = np.stack([projection(full), projection(mirror_grid(full, DESCRIPTOR_SIZE))], 1)
    return index, projection(desc)


def find_candidates(
    desc: np.ndarray,
    *,
    k: int = DEFAULT_K,
    min_sim: float = DEFAULT_MIN_CANDIDATE_SIM,
    seed: int = 0,
    projection: Projection | None = None,
    search: dict | None = None,
) -> pd.DataFrame:
    """Unordered candidate pairs ``a < b`` (rows of ``desc``) with their best ``candidate_sim``."""
    if len(desc) < 2:
        return pd.DataFrame(
            {
                "a": np.empty(0, np.int64),
                "b": np.empty(0, np.int64),
                "candidate_sim": np.empty(0, np.float32),
            }
        )
    projection = projection or fit_projection(desc[:, 0], seed=seed)
    index, queries = index_and_queries(desc, projection)
    return unordered_pairs(
        cell_join(index, queries, k=k, min_sim=min_sim, seed=seed, **(search or {}))
    )


def unordered_pairs(c: Candidates) -> pd.DataFrame:
    """Directed candidates -> one row per unordered pair ``a < b`` with the highest sim."""
    a = np.minimum(c.query_image, c.index_image)
    b = np.maximum(c.query_image, c.index_image)
    df = pd.DataFrame({"a": a, "b": b, "candidate_sim": c.sim})
    df = df[df.a != df.b]
    return (
        df.groupby(["a", "b"], as_index=False, sort=True)["candidate_sim"]
        .max()
        .reset_index(drop=True)
    )


# ----------------------------------------------------------------------------- pixel check


def verify_windows() -> list[Window]:
    """The bank of windows one image is matched against (module docstring, step 2)."""
    out: list[Window] = []
    for s in VERIFY_SCALES:
        side = VERIFY_REGION * s
        n = 2 * int(np.ceil((1 - side) / (2 * VERIFY_STEP))) + 1  # odd: the centre is on the grid
        grid = np.linspace(0.0, 1.0, n)
        out += [(side, float(fx), float(fy)) for fy in grid for fx in grid]
    return out


def _bank(thumbs: np.ndarray, windows: list[Window]) -> tuple[np.ndarray, np.ndarray]:
    """The windows of each image, unstandardised, and ``1 / |window - its mean|`` (0 for a
    constant window). Against a zero-mean target ``t`` the correlation of window ``x`` is
    ``(x @ t) * inv_norm``: the mean drops out, so the bank is never standardised."""
    raw = resample(thumbs, windows, VERIFY_SIZE)
    d = raw.shape[-1]
    ss = np.einsum("mwd,mwd->mw", raw, raw) - raw.sum(-1) ** 2 / d
    norm = np.sqrt(np.maximum(ss, 0.0))
    inv = np.where(norm > 1e-6, 1.0 / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
    return raw, inv


def pixel_similarity(
    thumbs: np.ndarray, a: np.ndarray, b: np.ndarray, *, block: int = 256
) -> np.ndarray:
    """Best normalised cross-correlation of each pair ``(a[i], b[i])`` after alignment.

    Coarse: the central region of one image against the window bank of the other
    (:func:`verify_windows`), both ways round, as is and mirrored. Fine: around the best
    coarse window, 3 scales x 3 x 3 positions at a third of the coarse spacing
    (:func:`_refine`). Symmetric in ``a`` and ``b``; invariant to mirroring, brightness and
    contrast.
    """
    _check_thumbs(thumbs)
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if a.shape != b.shape:
        raise CurateError(f"pair arrays differ in length: {a.shape} vs {b.shape}")
    windows = verify_windows()
    n_pairs = len(a)
    # every pair twice: direction 0 matches b's centre against a's bank, direction 1 the reverse
    big, small = np.concatenate([a, b]), np.concatenate([b, a])
    pair = np.tile(np.arange(n_pairs), 2)
    order = np.argsort(big, kind="stable")
    big, small, pair = big[order], small[order], pair[order]
    direction = (order >= n_pairs).astype(np.int64)
    involved, small_row = np.unique(small, return_inverse=True)
    target = standardize(resample(thumbs[involved], [(VERIFY_REGION, 0.5, 0.5)], VERIFY_SIZE))[:, 0]
    target = np.concatenate(
        [target, mirror_grid(target, VERIFY_SIZE)]
    )  # rows + len(involved): mirrored
    uniq, start = np.unique(big, return_index=True)
    stop = np.append(start[1:], len(big))
    top = np.empty(
        (2, len(big)), np.float32
    )  # per entry, as is and mirrored: best coarse score ...
    arg = np.empty((2, len(big)), np.int64)  # ... and its window
    for s0 in range(0, len(uniq), block):
        bank, inv = _bank(
            thumbs[uniq[s0 : s0 + block]], windows
        )  # (m, W, d), each image's bank once
        for j in range(len(bank)):
            rows = slice(start[s0 + j], stop[s0 + j])
            t = small_row[rows]
            sims = bank[j] @ target[np.concatenate([t, t + len(involved)])].T  # (W, 2k)
            sims *= inv[j][:, None]
            k = len(t)
            best_w = sims.argmax(0)
            arg[:, rows] = best_w.reshape(2, k)
            top[:, rows] = sims[best_w, np.arange(2 * k)].reshape(2, k)
    # per pair, the best of its four (direction, mirrored) matches; ties to the first of
    # (0, as is), (0, mirrored), (1, as is), (1, mirrored)
    combo = np.stack([direction * 2, direction * 2 + 1])  # (2, entries)
    flat_pair = np.tile(pair, 2)
    flat_top, flat_combo, flat_arg = top.ravel(), combo.ravel(), arg.ravel()
    pick = np.lexsort((flat_combo, -flat_top, flat_pair))
    first = pick[np.r_[True, flat_pair[pick][1:] != flat_pair[pick][:-1]]] if len(pick) else pick
    best = np.full(n_pairs, -np.inf, np.float32)
    how = np.zeros((n_pairs, 3), np.int64)  # direction, mirrored, window of the best match
    best[flat_pair[first]] = flat_top[first]
    how[flat_pair[first]] = np.stack(
        [flat_combo[first] // 2, flat_combo[first] % 2, flat_arg[first]], 1
    )
    refine = best >= REFINE_FROM
    if refine.any():
        best[refine] = np.maximum(
            best[refine], _refine(thumbs, a[refine], b[refine], how[refine], windows)
        )
    return np.maximum(best, -1.0)


def _refine(
    thumbs: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    how: np.ndarray,
    windows: list[Window],
    chunk: int = 512,
) -> np.ndarray:
    """Best correlation over 27 windows around each pair's best coarse window."""
    h = thumbs.shape[1]
    wins = np.array(windows)[how[:, 2]]  # (P, 3): side, fx, fy
    side, x0, y0 = wins[:, 0], wins[:, 1] * (1 - wins[:, 0]), wins[:, 2] * (1 - wins[:, 0])
    step = VERIFY_STEP / 3
    out = np.full(len(a), -1.0, np.float32)
    centre = resample(thumbs, [(VERIFY_REGION, 0.5, 0.5)], VERIFY_SIZE)  # cheap at 12 x 12
    for s in range(0, len(a), chunk):
        sl = slice(s, s + chunk)
        big = np.where(how[sl, 0] == 0, a[sl], b[sl])
        small = np.where(how[sl, 0] == 0, b[sl], a[sl])
        tgt = standardize(centre[small, 0])
        flip = how[sl, 1] == 1
        tgt[flip] = mirror_grid(tgt[flip], VERIFY_SIZE)
        best = np.full(len(big), -1.0, np.float32)
        for ds in (-VERIFY_SCALE_STEP / 2, 0.0, VERIFY_SCALE_STEP / 2):
            sd = np.clip(side[sl] * (1 + ds), 0.05, 1.0)
            for dy in (-step, 0.0, step):
                ys = np.clip(y0[sl] + dy - (sd - side[sl]) / 2, 0, 1 - sd) * h
                ry = area_matrices(h, ys, sd * h, VERIFY_SIZE)
                rows = np.einsum("pky,pyx->pkx", ry, thumbs[big])
                for dx in (-step, 0.0, step):
                    xs = np.clip(x0[sl] + dx - (sd - side[sl]) / 2, 0, 1 - sd) * h
                    rx = area_matrices(h, xs, sd * h, VERIFY_SIZE)
                    win = standardize(np.einsum("pkx,plx->pkl", rows, rx).reshape(len(big), -1))
                    best = np.maximum(best, (win * tgt).sum(1))
        out[sl] = best
    return out


# ----------------------------------------------------------------------------- groups


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def group_pairs(
    images: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    min_pixel_sim: float = DEFAULT_MIN_PIXEL_SIM,
    prefer: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn scored pairs into groups, kept representatives and leakage.

    Parameters
    ----------
    images:
        One row per image, in the row order the pairs refer to, with ``image_id`` and
        optional ``split``, ``sequence``, ``subject``, ``label``, ``width``, ``height``.
    pairs:
        ``a``, ``b`` (row positions), ``candidate_sim``, ``pixel_sim``: every scored
        candidate pair; those at or above ``min_pixel_sim`` are confirmed.
    prefer:
        Optional bool per image: in each group and split, preferred images are kept before
        the others (the near-duplicate screen prefers images no earlier screen rejected).

    Returns
    -------
    (per_image, confirmed_pairs)
        ``per_image`` (aligned with ``images``): ``near_duplicate_group`` (int64, -1 when
        none), ``near_duplicate_of`` (Int64 image_id of the kept image of its group in its
        split, null for kept or ungrouped images), ``near_duplicate_score`` (best
        ``pixel_sim`` to any scored partner that is not of its sequence or subject,
        confirmed or not; NaN when it has none), ``near_duplicate_leak`` (bool: its group
        has a member in another split), ``same_sequence_of`` (Int64 image_id of a
        confirmed partner in the same sequence, else null).
        ``confirmed_pairs``: ``image_id_a``, ``image_id_b``, ``split_a``, ``split_b``,
        ``label_a``, ``label_b``, ``candidate_sim``, ``pixel_sim``, ``relation``
        (``near_duplicate``, ``same_sequence`` or ``same_subject``), ``cross_split``
        (bool), ``group``.

    Within a group and split the image kept is the first by: preferred, the largest
    source (``width * height``), the lowest ``image_id``.
    """
    for col in ("a", "b", "pixel_sim"):
        if col not in pairs.columns:
            raise CurateError(f"pairs table has no column {col!r}")
    n = len(images)
    ids = images["image_id"].to_numpy(np.int64)
    split = _column(images, "split")
    seq = _column(images, "sequence")
    subj = _column(images, "subject")
    label = _column(images, "label")
    area = (
        (
            pd.to_numeric(images["width"], errors="coerce").fillna(0).to_numpy()
            * pd.to_numeric(images["height"], errors="coerce").fillna(0).to_numpy()
        )
        if {"width", "height"} <= set(images.columns)
        else np.zeros(n)
    )
    pref = np.zeros(n, bool) if prefer is None else np.asarray(prefer, bool)
    if pref.shape != (n,):
        raise CurateError(f"prefer has {pref.size} entries for {n} images")
    pa = pairs["a"].to_numpy(np.int64)
    pb = pairs["b"].to_numpy(np.int64)
    all_sim = pairs["pixel_sim"].to_numpy(np.float64)
    all_related = _related(seq, pa, pb) | _related(subj, pa, pb)
    score = _best_sim(n, pa[~all_related], pb[~all_related], all_sim[~all_related])
    conf = pairs[all_sim >= min_pixel_sim].reset_index(drop=True)
    a = conf["a"].to_numpy(np.int64)
    b = conf["b"].to_numpy(np.int64)
    same_seq = _related(seq, a, b)
    same_subj = ~same_seq & _related(subj, a, b)
    relation = np.where(same_seq, SAME_SEQUENCE, np.where(same_subj, SAME_SUBJECT, NEAR_DUPLICATE))
    dup = ~same_seq & ~same_subj
    comp = _components(n, a[dup], b[dup])
    group = number_groups(comp)
    split_key = pd.Series(split, dtype=object).fillna("\0").to_numpy()
    near_of, leak = keep_per_split(group, split_key, pref, area, ids)
    seq_of = pd.array([pd.NA] * n, dtype="Int64")
    seq_of[b[same_seq]] = ids[a[same_seq]]
    seq_of[a[same_seq]] = ids[b[same_seq]]
    per_image = pd.DataFrame(
        {
            "near_duplicate_group": group,
            "near_duplicate_of": near_of,
            "near_duplicate_score": score,
            "near_duplicate_leak": leak,
            "same_sequence_of": seq_of,
        }
    )
    out = pd.DataFrame(
        {
            "image_id_a": ids[a],
            "image_id_b": ids[b],
            "split_a": split[a],
            "split_b": split[b],
            "label_a": label[a],
            "label_b": label[b],
            "candidate_sim": conf["candidate_sim"].to_numpy(np.float32)
            if "candidate_sim" in conf
            else np.full(len(conf), np.nan, np.float32),
            "pixel_sim": conf["pixel_sim"].to_numpy(np.float32),
            "relation": relation,
            "cross_split": split_key[a] != split_key[b],
            "group": np.where(dup, group[a], -1),
        }
    )
    for col in ("split_a", "split_b", "label_a", "label_b", "relation"):
        out[col] = out[col].astype("string")
    return per_image, out


def _best_sim(n: int, a: np.ndarray, b: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """Per image of ``n``: the best ``sim`` of the pairs ``(a, b)`` it is in (NaN when none)."""
    score = np.full(n, np.nan)
    for rows in (a, b):
        np.fmax.at(score, rows, sim)
    return score


def number_groups(comp: np.ndarray) -> np.ndarray:
    """Group number per image from its connected component ``comp``: -1 for an image alone
    in its component, else 0, 1, ... in the order of each group's first image."""
    n = len(comp)
    size = np.bincount(comp, minlength=n)
    grouped = size[comp] > 1
    _, first = np.unique(comp[grouped], return_index=True)
    first_row = np.flatnonzero(grouped)[first]
    number = np.full(n, -1, np.int64)
    number[comp[first_row]] = np.argsort(np.argsort(first_row))
    return np.where(grouped, number[comp], -1)


def keep_per_split(
    group: np.ndarray, split_key: np.ndarray, pref: np.ndarray, area: np.ndarray, ids: np.ndarray
) -> tuple[pd.arrays.IntegerArray, np.ndarray]:
    """Per image: the ``image_id`` of its group's kept image in its split (Int64, null for
    kept or ungrouped images; the first by ``pref``, then the largest ``area``, then the
    lowest ``image_id``) and whether its group spans more than one split (a leak)."""
    n = len(group)
    near_of = pd.array([pd.NA] * n, dtype="Int64")
    leak = np.zeros(n, bool)
    rows = np.flatnonzero(group >= 0)
    if rows.size:
        frame = pd.DataFrame(
            {
                "row": rows,
                "group": group[rows],
                "split": split_key[rows],
                "pref": pref[rows],
                "area": area[rows],
                "image_id": ids[rows],
            }
        )
        leak[rows] = frame.groupby("group")["split"].transform("nunique").to_numpy() > 1
        frame = frame.sort_values(
            ["group", "split", "pref", "area", "image_id"],
            ascending=[True, True, False, False, True],
            kind="mergesort",
        )
        kept = (
            frame.groupby(["group", "split"], sort=False)["image_id"].transform("first").to_numpy()
        )
        member = frame["image_id"].to_numpy() != kept
        near_of[frame["row"].to_numpy()[member]] = kept[member]
    return near_of, leak


def _related(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs whose two images share a known (non-null) value of ``values``."""
    va, vb = values[a], values[b]
    return pd.notna(va) & pd.notna(vb) & (va == vb)


def _column(images: pd.DataFrame, name: str) -> np.ndarray:
    if name in images.columns:
        return images[name].astype(object).where(images[name].notna(), None).to_numpy()
    return np.full(len(images), None, dtype=object)


def near_duplicates(
    thumbs: np.ndarray,
    images: pd.DataFrame,
    *,
    k: int = DEFAULT_K,
    min_candidate_sim: float = DEFAULT_MIN_CANDIDATE_SIM,
    min_pixel_sim: float = DEFAULT_MIN_PIXEL_SIM,
    prefer: np.ndarray | None = None,
    cross_split_only: bool = False,
    seed: int = 0,
    search: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates, pixel check and groups in one call (see :func:`group_pairs` for outputs).

    ``cross_split_only`` pixel-checks only candidate pairs whose images sit in different
    splits (the leakage check of ``curate build-tuples``: groups within a split are then
    not formed). ``search`` passes settings to :func:`curate.hygiene.search.cell_join`.
    """
    if len(thumbs) != len(images):
        raise CurateError(f"{len(thumbs)} thumbnails for {len(images)} images")
    cand = find_candidates(
        candidate_descriptors(thumbs), k=k, min_sim=min_candidate_sim, seed=seed, search=search
    )
    if cross_split_only:
        split = pd.Series(_column(images, "split"), dtype=object).fillna("\0").to_numpy()
        cand = cand[split[cand["a"].to_numpy()] != split[cand["b"].to_numpy()]].reset_index(
            drop=True
        )
    cand["pixel_sim"] = pixel_similarity(thumbs, cand["a"].to_numpy(), cand["b"].to_numpy())
    return group_pairs(images, cand, min_pixel_sim=min_pixel_sim, prefer=prefer)
