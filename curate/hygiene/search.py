"""Candidate pairs for near-duplicate search, without an N x N matrix.

Every image has an *index* vector per orientation (its full frame, and its mirror) and a
few *query* vectors (windows of it). A candidate is a query's ``k`` most similar index
vectors of other images with cosine similarity at least ``min_sim``.

:func:`cell_join` is an inverted-file join: a two-level spherical k-means partitions the
space into cells; each query goes to its nearest cell, each index vector to its nearest
cells (``spill`` of them, so close pairs across a cell border still meet; queries to
``query_spill`` cells), and each cell is one matrix product of its queries with its index
vectors. Work is about ``n_queries * n_index * spill * query_spill / n_cells`` dot products
instead of ``n_queries * n_index``. A query that visits several cells keeps its top ``k``
over all of them, as :func:`brute_join` does.
:func:`brute_join` is the exact reference (blocked, for tests and small data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from curate.errors import CurateError

ROW_BLOCK = 256  # query rows per matrix product: the similarity block stays in cache
# cell_join's defaults (docs/hygiene.md: candidate recall on planted FER copies, time at 1M)
POINTS_PER_CELL = 256
SPILL = 3
QUERY_SPILL = 3


@dataclass(frozen=True)
class Candidates:
    """Directed candidate matches: query ``(image, window)`` -> index ``(image, orientation)``."""

    query_image: np.ndarray  # int64
    query_window: np.ndarray  # int16
    index_image: np.ndarray  # int64
    index_orientation: np.ndarray  # int8 (0 as is, 1 mirrored)
    sim: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.sim)


def _check(index: np.ndarray, queries: np.ndarray) -> tuple[int, int, int, int]:
    if (
        index.ndim != 3
        or queries.ndim != 3
        or index.shape[0] != queries.shape[0]
        or index.shape[2] != queries.shape[2]
    ):
        raise CurateError(
            f"index must be (N, orientations, d) and queries (N, windows, d) with the "
            f"same N and d; got {index.shape} and {queries.shape}"
        )
    n, o, d = index.shape
    return n, o, queries.shape[1], d


def brute_join(
    index: np.ndarray, queries: np.ndarray, *, k: int, min_sim: float, block: int = 2048
) -> Candidates:
    """Exact top-``k`` per query over all index vectors of other images (reference)."""
    n, o, w, d = _check(index, queries)
    flat_index = index.reshape(n * o, d)
    owner = np.repeat(np.arange(n), o)
    parts = []
    flat_q = queries.reshape(n * w, d)
    for start in range(0, n * w, block):
        q = flat_q[start : start + block]
        rows = np.arange(start, start + len(q))
        sims = q @ flat_index.T
        sims[owner[None, :] == (rows // w)[:, None]] = -np.inf
        parts.append(_top_k(rows, np.arange(n * o), sims, k, min_sim))
    return _assemble(parts, w, o)


def _top_k(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int, min_sim: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``sims``, its ``k`` largest entries at or above ``min_sim``.

    Threshold first, then rank only the survivors: near-duplicate candidates are rare, so
    one comparison pass over ``sims`` replaces a partial sort of every row (which cost
    ~85 % of the join's time)."""
    flat = np.flatnonzero(sims >= min_sim)  # 1-d: far faster than a 2-d nonzero
    if flat.size == 0 or k <= 0:
        e = np.empty(0, np.int64)
        return e, e, np.empty(0, np.float32)
    r, c = np.divmod(flat, sims.shape[1])
    v = sims.reshape(-1)[flat]
    counts = np.bincount(r, minlength=sims.shape[0])
    if counts.max() > k:
        order = np.lexsort((-v, r))  # row-major already; within a row by similarity, descending
        r, c, v = r[order], c[order], v[order]
        rank = np.arange(r.size) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < k
        r, c, v = r[keep], c[keep], v[keep]
    return rows[r], cols[c], v.astype(np.float32)


def _assemble(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], w: int, o: int) -> Candidates:
    if parts:
        qrow = np.concatenate([p[0] for p in parts]).astype(np.int64)
        irow = np.concatenate([p[1] for p in parts]).astype(np.int64)
        sim = np.concatenate([p[2] for p in parts]).astype(np.float32)
    else:
        qrow = irow = np.empty(0, np.int64)
        sim = np.empty(0, np.float32)
    return Candidates(
        qrow // w, (qrow % w).astype(np.int16), irow // o, (irow % o).astype(np.int8), sim
    )


def _mask_self(sims: np.ndarray, row_owner: np.ndarray, col_owner: np.ndarray) -> None:
    """Set ``sims[i, j] = -inf`` where row ``i`` and column ``j`` belong to one image
    (``col_owner`` sorted ascending, as for unique index entries)."""
    lo = np.searchsorted(col_owner, row_owner, side="left")
    hi = np.searchsorted(col_owner, row_owner, side="right")
    width = hi - lo
    if not width.any():
        return
    r = np.repeat(np.arange(len(row_owner)), width)
    c = np.repeat(lo, width) + (np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width))
    sims[r, c] = -np.inf


def _dedupe(c: Candidates) -> Candidates:
    """One row per (query, index entry): a query visiting two cells can meet one twice."""
    n_w = int(c.query_window.max(initial=0)) + 1
    n_o = int(c.index_orientation.max(initial=0)) + 1
    n_i = int(max(c.query_image.max(initial=0), c.index_image.max(initial=0))) + 1
    key = ((c.query_image * n_w + c.query_window) * n_i + c.index_image) * n_o + c.index_orientation
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    return Candidates(
        c.query_image[first],
        c.query_window[first],
        c.index_image[first],
        c.index_orientation[first],
        c.sim[first],
    )


def _by_cell(cells: np.ndarray, n_cells: int) -> np.ndarray:
    """Stable order of entries by cell id (a radix sort when the ids fit 16 bits)."""
    key = cells.astype(np.uint16) if n_cells <= np.iinfo(np.uint16).max else cells
    return np.argsort(key, kind="stable")


def _unique_sorted(x: np.ndarray) -> np.ndarray:
    """``np.unique`` of an ascending array (no sort)."""
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def _top_k_per_query(c: Candidates, k: int, n_windows: int) -> Candidates:
    """Each query's ``k`` most similar matches over all the cells it visited (ties: the
    earlier match); only queries with more than ``k`` matches are ranked."""
    q = c.query_image * n_windows + c.query_window
    if len(q) == 0:
        return c
    over = np.flatnonzero(np.bincount(q)[q] > k)
    if over.size == 0:
        return c
    order = over[np.lexsort((-c.sim[over], q[over]))]
    qs = q[order]
    start = np.flatnonzero(np.r_[True, qs[1:] != qs[:-1]])
    rank = np.arange(qs.size) - np.repeat(start, np.diff(np.r_[start, qs.size]))
    keep = np.ones(len(q), bool)
    keep[over] = False
    keep[order[rank < k]] = True
    return Candidates(
        c.query_image[keep],
        c.query_window[keep],
        c.index_image[keep],
        c.index_orientation[keep],
        c.sim[keep],
    )


def spherical_kmeans(x: np.ndarray, k: int, *, iters: int = 10, seed: int = 0) -> np.ndarray:
    """``k`` unit-norm centroids of unit-norm rows ``x`` (Lloyd on the cosine)."""
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(x)))
    cent = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        lab = np.argmax(x @ cent.T, axis=1)
        sums = np.zeros_like(cent)
        np.add.at(sums, lab, x)
        norm = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norm[:, 0] == 0
        cent = np.where(empty[:, None], cent, sums / np.maximum(norm, 1e-12))
    return cent.astype(np.float32)


@dataclass(frozen=True)
class CellTree:
    """Two-level partition: ``coarse`` centroids, then ``fine[c]`` centroids inside each."""

    coarse: np.ndarray
    fine: list[np.ndarray]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(f) for f in self.fine])])

    def assign(self, x: np.ndarray, spill: int = 1, chunk: int = 65536) -> np.ndarray:
        """Cell ids ``(len(x), spill)``: the best fine cells within the best coarse cells.

        ``spill = 1``: best coarse, best fine; ``2`` adds the second-best fine cell of the best
        coarse cluster; ``3`` also the best fine cell of the second-best coarse cluster
        (duplicates possible when a cluster has one cell).
        """
        if spill not in (1, 2, 3):
            raise CurateError(f"spill must be 1, 2 or 3, got {spill}")
        off = self.offsets
        out = np.empty((len(x), spill), np.int64)
        for s in range(0, len(x), chunk):
            xs = x[s : s + chunk]
            best, second = _top2(xs @ self.coarse.T)
            res = np.empty((len(xs), 3), np.int64)
            for c, m in _members(best, len(self.coarse)):
                f1, f2 = _top2(xs[m] @ self.fine[c].T)
                res[m, 0] = off[c] + f1
                res[m, 1] = off[c] + f2
            if spill == 3:
                for c, m in _members(second, len(self.coarse)):
                    res[m, 2] = off[c] + np.argmax(xs[m] @ self.fine[c].T, axis=1)
            out[s : s + chunk] = res[:, :spill]
        return out


def _top2(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column of the largest and of the second largest entry (the largest
    again when there is one column); no full sort."""
    rows = np.arange(len(sims))
    first = np.argmax(sims, axis=1)
    if sims.shape[1] < 2:
        return first, first
    held = sims[rows, first].copy()
    sims[rows, first] = -np.inf
    second = np.argmax(sims, axis=1)
    sims[rows, first] = held
    return first, second


def _members(label: np.ndarray, n_labels: int):
    """``(label value, row indices)`` for each value present, rows ascending (one sort
    instead of a boolean mask per value)."""
    order = np.argsort(label, kind="stable")
    bounds = np.searchsorted(label[order], np.arange(n_labels + 1))
    for c in range(n_labels):
        if bounds[c + 1] > bounds[c]:
            yield c, order[bounds[c] : bounds[c + 1]]


def fit_cells(x: np.ndarray, n_cells: int, *, sample: int = 50_000, seed: int = 0) -> CellTree:
    """A :class:`CellTree` of about ``n_cells`` leaves fitted on a seeded sample of ``x``."""
    rng = np.random.default_rng(seed)
    xs = x[rng.choice(len(x), min(sample, len(x)), replace=False)]
    k1 = max(1, int(round(math.sqrt(n_cells))))
    coarse = spherical_kmeans(xs, k1, seed=seed)
    lab = np.argmax(xs @ coarse.T, axis=1)
    fine = []
    for c in range(len(coarse)):
        members = xs[lab == c]
        if len(members) == 0:
            fine.append(coarse[c : c + 1].copy())
            continue
        k2 = max(1, int(round(n_cells / len(coarse) * len(members) / (len(xs) / len(coarse)))))
        fine.append(spherical_kmeans(members, min(k2, len(members)), seed=seed + 1 + c))
    return CellTree(coarse, fine)


def cell_join(
    index: np.ndarray,
    queries: np.ndarray,
    *,
    k: int,
    min_sim: float,
    points_per_cell: int = POINTS_PER_CELL,
    spill: int = SPILL,
    query_spill: int = QUERY_SPILL,
    seed: int = 0,
    progress=None,
) -> Candidates:
    """Approximate :func:`brute_join` through a cell partition (see module docstring)."""
    n, o, w, d = _check(index, queries)
    flat_index = np.ascontiguousarray(index.reshape(n * o, d), dtype=np.float32)
    flat_q = np.ascontiguousarray(queries.reshape(n * w, d), dtype=np.float32)
    n_cells = max(1, (n * o) // points_per_cell)
    tree = fit_cells(flat_index, n_cells, seed=seed)
    icell = tree.assign(flat_index, spill=spill)
    qcell = tree.assign(flat_q, spill=query_spill).ravel()
    qentry = np.repeat(np.arange(n * w), query_spill)
    ientry = np.repeat(np.arange(n * o), spill)
    icell = icell.ravel()
    total = int(tree.offsets[-1])
    iorder = _by_cell(icell, total)
    ientry, icell = ientry[iorder], icell[iorder]  # within a cell, entries stay ascending
    qorder = _by_cell(qcell, total)
    qcell_sorted = qcell[qorder]
    qorder = qentry[qorder]
    ib = np.searchsorted(icell, np.arange(total + 1))
    qb = np.searchsorted(qcell_sorted, np.arange(total + 1))
    buffer = np.empty(ROW_BLOCK * max(1, int(np.diff(ib).max(initial=1))), np.float32)
    parts = []
    for c in range(total):
        qs, qe, is_, ie = qb[c], qb[c + 1], ib[c], ib[c + 1]
        if qe == qs or ie == is_:
            continue
        entries = _unique_sorted(ientry[is_:ie])
        block = np.ascontiguousarray(flat_index[entries].T)
        rows_all = _unique_sorted(qorder[qs:qe])
        for r0 in range(0, len(rows_all), ROW_BLOCK):  # blocks that stay in cache
            rows = rows_all[r0 : r0 + ROW_BLOCK]
            sims = buffer[: len(rows) * len(entries)].reshape(len(rows), len(entries))
            np.matmul(flat_q[rows], block, out=sims)
            _mask_self(sims, rows // w, entries // o)
            parts.append(_top_k(rows, entries, sims, k, min_sim))
        if progress is not None:
            progress(c + 1, total)
    return _top_k_per_query(_dedupe(_assemble(parts, w, o)), k, w)
