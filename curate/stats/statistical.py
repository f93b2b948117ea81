"""The statistical boundary: reject tuples whose distances are abnormal under a null.

Embeddings are centred and L2-normalised to modulus ``s``. For two unrelated images
the Euclidean distance ``D`` between their normalised embeddings is approximately
normal with mean ``mu = sqrt(2) * s`` and standard deviation ``sigma = s / sqrt(2 *
d_null)``. At significance levels ``alpha_pos`` and ``alpha_neg`` a tuple is rejected
when its anchor-positive distance is above ``T_pos = mu + z(1 - alpha_pos) * sigma``
(``positive_too_far``) or any of its negative pairs is below ``T_neg = mu - z(1 -
alpha_neg) * sigma`` (``negative_too_close``).

The null's dimension ``d_null`` is the embedding dimension (``theory``), the
participation ratio of the embeddings' covariance (``effective``, the default), or
``mu``/``sigma`` are fitted robustly to random different-label pairs (``empirical``).

Distances over tuples are computed chunk by chunk from rows of the embedding matrix,
never from an N x N matrix, so memory grows with the tuple count only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.stats import fused

NULLS = ("theory", "effective", "empirical")  # global nulls (this module)
CLASS_NULLS = ("class", "class_empirical")  # class-aware nulls (curate.stats.nulls)
POSITIVE_TOO_FAR = "positive_too_far"
NEGATIVE_TOO_CLOSE = "negative_too_close"
MAD_TO_SIGMA = 1.4826
RANDOM_PAIR_SAMPLE = 5000
_CHUNK = 1024
KERNELS = ("auto", "fused", "numpy")


def normalize(
    x: np.ndarray, *, center: bool = True, scale: float = 1.0, mean: np.ndarray | None = None
) -> np.ndarray:
    """Centre the rows of ``x`` (on their mean, or on ``mean``) and L2-normalise them to ``scale``.

    Returns a new float32 array (float64 stays float64). A row that is exactly the
    mean has no direction and is returned as zeros.
    """
    arr = _as_float_matrix(x, "embeddings")
    if not (scale > 0 and math.isfinite(scale)):
        raise CurateError(f"scale must be a positive number, got {scale!r}", hint="use --scale 1.0")
    if center:
        m = arr.mean(axis=0) if mean is None else np.asarray(mean, dtype=arr.dtype)
        if m.shape != (arr.shape[1],):
            raise CurateError(f"mean has shape {m.shape}, expected ({arr.shape[1]},)")
        arr = arr - m
    else:
        arr = arr.copy()
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    np.divide(arr * scale, norms, out=arr, where=norms > 0)
    arr[(norms == 0).ravel()] = 0
    return arr


def effective_dimension(x: np.ndarray) -> float:
    """Participation ratio ``(sum l)^2 / sum l^2`` of the eigenvalues of ``np.cov(x, rowvar=False)``.

    Computed from the trace and Frobenius norm of the smaller Gram matrix of the
    centred rows, which has the same non-zero eigenvalues, so no eigendecomposition
    and no d x d matrix when there are fewer images than dimensions.
    """
    arr = _as_float_matrix(x, "embeddings")
    n = arr.shape[0]
    if n < 2:
        raise CurateError(f"the effective dimension needs at least 2 embeddings, got {n}")
    xc = arr - arr.mean(axis=0)
    gram = xc.T @ xc if n >= arr.shape[1] else xc @ xc.T
    gram = gram.astype(np.float64)
    trace = float(np.trace(gram))
    frob2 = float(np.sum(gram * gram))
    if trace <= 0 or frob2 <= 0:
        return 0.0
    return trace * trace / frob2


def null_params(scale: float, d_null: float) -> tuple[float, float]:
    """Mean and standard deviation of the null distance: ``(sqrt(2) * s, s / sqrt(2 * d_null))``."""
    if not d_null > 0:
        raise CurateError(
            f"the null dimension must be positive, got {d_null!r}",
            hint="the embeddings have no variance; check the backbone and weights",
        )
    return math.sqrt(2.0) * scale, scale / math.sqrt(2.0 * d_null)


def thresholds(mu: float, sigma: float, alpha_pos: float, alpha_neg: float) -> tuple[float, float]:
    """``(T_pos, T_neg) = (mu + z(1 - alpha_pos) * sigma, mu - z(1 - alpha_neg) * sigma)``."""
    for name, alpha in (("alpha_pos", alpha_pos), ("alpha_neg", alpha_neg)):
        if not 0 < alpha < 1:
            raise CurateError(
                f"{name} must be strictly between 0 and 1, got {alpha!r}",
                hint=f"use for example --{name.replace('_', '-')} 0.05",
            )
    return mu + upper_quantile(alpha_pos) * sigma, mu - upper_quantile(alpha_neg) * sigma


def upper_quantile(alpha: float) -> float:
    """z(1 - alpha); for an alpha so small that 1 - alpha rounds to 1, -z(alpha) (the same
    number, by symmetry)."""
    z = NormalDist()
    return z.inv_cdf(1 - alpha) if 1 - alpha < 1 else -z.inv_cdf(alpha)


@dataclass(frozen=True)
class Boundary:
    """A fitted boundary; :meth:`to_dict` is the content of ``boundary.json``."""

    s: float
    d: int
    d_null: float | None
    null: str
    mu: float
    sigma: float
    alpha_pos: float
    alpha_neg: float
    t_pos: float
    t_neg: float
    center: bool = True
    nulls: dict[str, dict[str, float | None]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    random_pair_distances: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The boundary as plain JSON-ready data, in the order of ``docs/tables.md``."""
        return {
            "s": self.s,
            "d": self.d,
            "center": self.center,
            "null": self.null,
            "d_null": self.d_null,
            "mu": self.mu,
            "sigma": self.sigma,
            "alpha_pos": self.alpha_pos,
            "alpha_neg": self.alpha_neg,
            "t_pos": self.t_pos,
            "t_neg": self.t_neg,
            "nulls": self.nulls,
            "calibration": self.calibration,
            "random_pair_distances": list(self.random_pair_distances),
        }


def fit_boundary(
    emb_normalized: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    null: str = "effective",
    alpha_pos: float = 0.05,
    alpha_neg: float = 0.05,
    scale: float = 1.0,
    seed: int = 0,
    n_pairs: int = 20000,
    center: bool = True,
) -> Boundary:
    """Fit the boundary to already normalised embeddings (one row per image).

    ``labels`` (one per row) restricts the random pairs used by the ``empirical``
    null and by the calibration check to pairs with different labels; without
    labels any two distinct images form a pair (and ``empirical`` is unavailable).
    All three nulls are computed and recorded; ``null`` picks the one applied.
    """
    if null not in NULLS:
        raise CurateError(f"unknown null {null!r}", hint=f"use --null one of {', '.join(NULLS)}")
    emb = _as_float_matrix(emb_normalized, "embeddings")
    n, d = emb.shape
    if labels is not None and len(labels) != n:
        raise CurateError(f"{len(labels)} labels for {n} embeddings")
    i, j, pair_kind = random_pairs(n, labels, n_pairs=n_pairs, seed=seed)
    dist = pair_distances(emb, i, j)

    nulls: dict[str, dict[str, float | None]] = {}
    for name, d_null in (("theory", float(d)), ("effective", effective_dimension(emb))):
        mu, sigma = null_params(scale, d_null) if d_null > 0 else (math.sqrt(2) * scale, math.nan)
        nulls[name] = {"d_null": d_null, "mu": mu, "sigma": sigma}
    if labels is not None and dist.size >= 2:
        med = float(np.median(dist))
        nulls["empirical"] = {
            "d_null": None,
            "mu": med,
            "sigma": MAD_TO_SIGMA * float(np.median(np.abs(dist - med))),
        }
    else:
        nulls["empirical"] = {"d_null": None, "mu": None, "sigma": None}

    chosen = nulls[null]
    if chosen["mu"] is None or not (chosen["sigma"] or 0) > 0:
        raise CurateError(
            f"the {null} null cannot be fitted: "
            + (
                "no labels or fewer than 2 different-label pairs"
                if null == "empirical"
                else "the embeddings have no variance"
            ),
            hint="use --null effective or --null theory"
            if null == "empirical"
            else "check the backbone and weights; embeddings are all identical",
        )
    mu, sigma = float(chosen["mu"]), float(chosen["sigma"])  # type: ignore[arg-type]
    t_pos, t_neg = thresholds(mu, sigma, alpha_pos, alpha_neg)
    calibration = {
        "n_pairs": int(dist.size),
        "pairs": pair_kind,
        "share_above_t_pos": float(np.mean(dist > t_pos)) if dist.size else None,
        "share_below_t_neg": float(np.mean(dist < t_neg)) if dist.size else None,
        "nominal_alpha_pos": alpha_pos,
        "nominal_alpha_neg": alpha_neg,
    }
    sample = tuple(round(float(v), 6) for v in dist[:RANDOM_PAIR_SAMPLE])
    return Boundary(
        s=float(scale),
        d=int(d),
        d_null=chosen["d_null"],
        null=null,
        mu=mu,
        sigma=sigma,
        alpha_pos=alpha_pos,
        alpha_neg=alpha_neg,
        t_pos=t_pos,
        t_neg=t_neg,
        center=center,
        nulls=nulls,
        calibration=calibration,
        random_pair_distances=sample,
    )


def random_pairs(
    n: int, labels: np.ndarray | None, *, n_pairs: int = 20000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """Up to ``n_pairs`` random pairs ``(i, j)`` of distinct rows, with different labels when given.

    Returns the two index arrays and ``"different_label"`` or ``"any"``.
    """
    rng = np.random.default_rng(seed)
    codes = (
        None
        if labels is None
        else np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)[1]
    )
    kind = "any" if codes is None else "different_label"
    got_i: list[np.ndarray] = []
    got_j: list[np.ndarray] = []
    have = 0
    for _ in range(20):
        if n < 2 or have >= n_pairs:
            break
        m = 2 * (n_pairs - have) + 16
        i, j = rng.integers(0, n, m), rng.integers(0, n, m)
        ok = i != j if codes is None else codes[i] != codes[j]
        i, j = i[ok][: n_pairs - have], j[ok][: n_pairs - have]
        got_i.append(i)
        got_j.append(j)
        have += i.size
    if not got_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), kind
    return np.concatenate(got_i), np.concatenate(got_j), kind


def pair_distances(emb: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows ``emb[i]`` and ``emb[j]`` (float64), chunked."""
    return tuple_distances(emb, i, j, j)["d_ap"]


def tuple_distances(
    emb: np.ndarray,
    anchor: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    negative2: np.ndarray | None = None,
    *,
    workers: int | None = None,
    kernel: str = "auto",
) -> dict[str, np.ndarray]:
    """Distances of every tuple, from index arrays into the rows of ``emb``.

    Returns float64 arrays ``d_ap`` and ``d_an`` (and ``d_an2``, ``d_nn2`` when
    ``negative2`` is given). Works in chunks on a small thread pool; memory is
    O(number of tuples), never O(N^2). ``kernel``: ``"fused"`` (one pass over the
    tuples, :mod:`curate.stats.fused`, needs numba), ``"numpy"`` (gathers the rows
    chunk by chunk, then dot products), or ``"auto"``: fused from
    :data:`curate.stats.fused.MIN_TUPLES` tuples on when numba is installed.
    """
    if kernel not in KERNELS:
        raise CurateError(
            f"unknown distance kernel {kernel!r}", hint=f"use one of {', '.join(KERNELS)}"
        )
    e = _as_float_matrix(emb, "embeddings")
    idx = {"anchor": anchor, "positive": positive, "negative": negative}
    if negative2 is not None:
        idx["negative2"] = negative2
    cols = {k: _as_index(v, k, e.shape[0]) for k, v in idx.items()}
    lengths = {v.size for v in cols.values()}
    if len(lengths) != 1:
        raise CurateError(
            f"index arrays have different lengths: { {k: v.size for k, v in cols.items()} }"
        )
    t = lengths.pop()
    names = ["d_ap", "d_an"] + (["d_an2", "d_nn2"] if negative2 is not None else [])
    if kernel == "fused" or (kernel == "auto" and t >= fused.MIN_TUPLES and fused.available()):
        e = np.ascontiguousarray(e)
        cols = {k: np.ascontiguousarray(v) for k, v in cols.items()}
        out = {k: np.empty(t, dtype=np.float64) for k in names}
        chunk = max(_CHUNK, -(-t // 64))  # no temporaries: few large chunks

        def fused_work(start: int) -> None:
            fused.fused_chunk(e, cols, out, slice(start, min(start + chunk, t)))

        _run_chunks(fused_work, range(0, t, chunk), workers)
        return out
    sq = np.einsum("ij,ij->i", e, e, dtype=np.float64)
    # normalised rows all have the modulus s: then |a - b|^2 = 2 s^2 - 2 a.b needs no norms
    const = float(sq.mean()) if np.ptp(sq) <= 1e-5 * max(float(sq.max()), 1e-30) else None
    out = {k: np.empty(t, dtype=np.float64) for k in names}
    pairs = [
        ("d_ap", "anchor", "positive"),
        ("d_an", "anchor", "negative"),
        ("d_an2", "anchor", "negative2"),
        ("d_nn2", "negative", "negative2"),
    ][: len(names)]

    def work(start: int) -> None:
        sl = slice(start, min(start + _CHUNK, t))
        rows = {role: np.take(e, cols[role][sl], axis=0) for role in cols if role != "positive"}
        rows["positive"] = np.take(e, cols["positive"][sl], axis=0)
        for name, left, right in pairs:
            dot = np.einsum("ij,ij->i", rows[left], rows[right])
            out[name][sl] = _from_dot(dot, sq, const, cols[left][sl], cols[right][sl])

    _run_chunks(work, range(0, t, _CHUNK), workers)
    return out


def apply_boundary(dist: dict[str, np.ndarray], b: Boundary) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``b`` to tuple distances: ``keep`` (bool) and ``reason`` (object: None or ``;``-joined codes)."""
    too_far = np.asarray(dist["d_ap"]) > b.t_pos
    too_close = np.asarray(dist["d_an"]) < b.t_neg
    for key in ("d_an2", "d_nn2"):
        if key in dist:
            too_close |= np.asarray(dist[key]) < b.t_neg
    code = too_far.astype(np.int8) + 2 * too_close.astype(np.int8)
    table = np.array(
        [None, POSITIVE_TOO_FAR, NEGATIVE_TOO_CLOSE, f"{POSITIVE_TOO_FAR};{NEGATIVE_TOO_CLOSE}"],
        dtype=object,
    )
    return code == 0, table[code]


def _from_dot(
    dot: np.ndarray, sq: np.ndarray, const: float | None, i: np.ndarray, j: np.ndarray
) -> np.ndarray:
    """Distances from dot products: sqrt(|a|^2 + |b|^2 - 2 a.b), exactly 0 where i == j."""
    if const is None:
        d2 = sq[i] + sq[j] - 2.0 * dot
    else:
        d2 = dot
        d2 *= -2.0
        d2 += 2.0 * const
    np.maximum(d2, 0.0, out=d2)
    np.sqrt(d2, out=d2)
    d2[i == j] = 0.0
    return d2


def _run_chunks(fn: Callable[[int], None], starts: range, workers: int | None) -> None:
    n = workers or min(
        8,
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
    )
    if n <= 1 or len(starts) <= 1:
        for s in starts:
            fn(s)
        return
    with ThreadPoolExecutor(n) as ex:  # numpy gathers and einsum release the GIL
        for _ in ex.map(fn, starts):
            pass


def _as_float_matrix(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CurateError(
            f"{what} must be a non-empty 2-D array (images x dimensions), got shape {arr.shape}"
        )
    if arr.dtype != np.float64:
        arr = arr.astype(np.float32, copy=False)
    return arr


def _as_index(v: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(v)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise CurateError(f"{name} must be a 1-D integer array of row indices")
    arr = arr.astype(np.intp, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise CurateError(f"{name} has row indices outside 0..{n - 1}")
    return arr
