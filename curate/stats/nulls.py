"""Class-aware nulls: one normal distance distribution per class and per class pair.

The global null of :mod:`curate.stats.statistical` models every distance like the
distance of two unrelated faces, so a mislabelled positive pair (distributed like an
unrelated pair) cannot look abnormal. Here the positive sub-boundary asks "is this
anchor-positive distance abnormally large for two faces of class ``a``" against the
same-class null ``N(mu_aa, sigma_aa^2)``, and the negative one "abnormally small for
classes ``a`` and ``b``" against the class-pair null ``N(mu_ab, sigma_ab^2)``:

    T_pos(a) = mu_aa + z(1 - alpha_pos) sigma_aa,     T_neg(a, b) = mu_ab - z(1 - alpha_neg) sigma_ab.

Two fits, both weighted by ``v_i`` per image (default: the square root of the image's
label posterior from :func:`curate.stats.label_model.label_posteriors`, so images whose label
does not fit count less and the noise being hunted does not pull the fit):

``class`` (moments): for rows of modulus ``s``, ``D^2 = 2 s^2 - 2 x.y``, so the mean and
variance of ``D^2`` for a class pair follow from the class means and second-moment
matrices ``M_a = E[x x^T]``: ``E D^2 = 2 s^2 - 2 m_a.m_b`` and ``Var D^2 = 4 (s^4 / d_ab -
(m_a.m_b)^2)`` with the (cross) effective dimension ``d_ab = s^4 / tr(M_a M_b)`` (for one
class, the participation ratio of ``M_a``). ``D`` is then normal with ``mu = sqrt(E D^2)
(1 - Var D^2 / (8 (E D^2)^2))`` and ``sigma = sqrt(Var D^2 / (4 E D^2))`` (delta method).
With ``m = 0`` this is the patent's ``mu = sqrt(2) s``, ``sigma = s / sqrt(2 d)``.

``class_empirical`` (default): random pairs of every class pair, weighted ``v_i v_j``;
``mu`` is the weighted median and ``sigma`` is set so that the normal's tail quantile
the sub-boundary cuts at matches the weighted one: ``sigma = (q(1 - alpha_pos) - mu) /
z(1 - alpha_pos)`` for a class, ``(mu - q(alpha_neg)) / z(1 - alpha_neg)`` for a pair. Real
distances are bounded (at most ``2 s``) and skewed, so a normal fitted by mean and
standard deviation misses the tails (see ``docs/boundary.md``); this fit keeps them.

A class pair with fewer than ``min_pairs`` distinct pairs uses the pooled null of all
same-label (or different-label) pairs, recorded as ``pooled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.stats.label_model import PRIOR_FLOOR, _as_matrix, encode_labels, label_posteriors
from curate.stats.statistical import (
    CLASS_NULLS,
    NEGATIVE_TOO_CLOSE,
    POSITIVE_TOO_FAR,
    pair_distances,
    upper_quantile,
)

PAIRS_PER_CLASS_PAIR = 2000
MAX_PAIRS = 2_000_000
MIN_PAIRS = 30
_MIN_SIGMA = 1e-12


@dataclass(frozen=True)
class ClassNulls:
    """Fitted class-aware nulls. ``mu``/``sigma`` are ``K x K``: the diagonal holds the
    same-class nulls, the rest the class-pair nulls. :meth:`to_dict` is JSON-ready."""

    method: str
    classes: tuple[str, ...]
    scale: float
    alpha_pos: float
    alpha_neg: float
    mu: np.ndarray
    sigma: np.ndarray
    n_pairs: np.ndarray
    d_eff: np.ndarray
    pooled: np.ndarray
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def t_pos(self) -> np.ndarray:
        """``T_pos`` per class (length ``K``)."""
        z = upper_quantile(self.alpha_pos)
        return np.diag(self.mu) + z * np.diag(self.sigma)

    @property
    def t_neg(self) -> np.ndarray:
        """``T_neg`` per class pair (``K x K``, symmetric; the diagonal is ``-inf``: never tested)."""
        z = upper_quantile(self.alpha_neg)
        t = self.mu - z * self.sigma
        np.fill_diagonal(t, -np.inf)
        return t

    def codes(self, labels: np.ndarray | pd.Series | list[Any]) -> np.ndarray:
        """Class codes of ``labels`` in this fit's class order; unknown classes raise."""
        arr = np.asarray(labels, dtype=object).astype(str)
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.fromiter((index.get(v, -1) for v in arr), dtype=np.int64, count=arr.size)
        if (out < 0).any():
            bad = sorted(set(arr[out < 0].tolist()))[:5]
            raise CurateError(
                f"labels {bad} are not among the fitted classes {list(self.classes)}",
                hint="fit the nulls on embeddings that include every class being screened",
            )
        return out

    def with_calibration(self, calibration: dict[str, Any]) -> ClassNulls:
        """A copy with ``calibration`` recorded."""
        return ClassNulls(
            self.method,
            self.classes,
            self.scale,
            self.alpha_pos,
            self.alpha_neg,
            self.mu,
            self.sigma,
            self.n_pairs,
            self.d_eff,
            self.pooled,
            calibration,
        )

    def to_dict(self) -> dict[str, Any]:
        """Every fitted distribution: ``same`` (one per class) and ``pairs`` (one per class pair)."""
        t_pos, t_neg = self.t_pos, self.t_neg
        k = len(self.classes)

        def rec(a: int, b: int) -> dict[str, Any]:
            return {
                "mu": _num(self.mu[a, b]),
                "sigma": _num(self.sigma[a, b]),
                "n_pairs": int(self.n_pairs[a, b]),
                "d_eff": _num(self.d_eff[a, b]),
                "pooled": bool(self.pooled[a, b]),
            }

        return {
            "method": self.method,
            "scale": self.scale,
            "alpha_pos": self.alpha_pos,
            "alpha_neg": self.alpha_neg,
            "classes": list(self.classes),
            "same": [
                {"class": self.classes[a], **rec(a, a), "t_pos": _num(t_pos[a])} for a in range(k)
            ],
            "pairs": [
                {
                    "classes": [self.classes[a], self.classes[b]],
                    **rec(a, b),
                    "t_neg": _num(t_neg[a, b]),
                }
                for a in range(k)
                for b in range(a + 1, k)
            ],
            "calibration": self.calibration,
        }


def image_weights(emb: np.ndarray, labels: np.ndarray | pd.Series | list[Any]) -> np.ndarray:
    """Default fit weights: ``sqrt(p(label | x))`` from :func:`label_posteriors` (images alone in
    their class get weight 1)."""
    verdicts, _ = label_posteriors(emb, labels)
    p = verdicts["label_posterior"].to_numpy(np.float64)
    return np.sqrt(np.where(np.isnan(p), 1.0, p))


def fit_class_nulls(
    emb: np.ndarray,
    labels: np.ndarray | pd.Series | list[Any],
    *,
    method: str = "class_empirical",
    weights: np.ndarray | None = None,
    alpha_pos: float = 0.05,
    alpha_neg: float = 0.05,
    scale: float = 1.0,
    pairs_per_class_pair: int = PAIRS_PER_CLASS_PAIR,
    min_pairs: int = MIN_PAIRS,
    seed: int = 0,
) -> ClassNulls:
    """Fit the class-aware nulls to normalised embeddings (rows of modulus ``scale``).

    ``weights`` (one per row, >= 0) default to :func:`image_weights`; pass ones for an
    unweighted fit. Deterministic under ``seed``.
    """
    if method not in CLASS_NULLS:
        raise CurateError(
            f"unknown class null {method!r}", hint=f"use one of {', '.join(CLASS_NULLS)}"
        )
    _check_alphas(alpha_pos, alpha_neg)
    if method == "class_empirical" and max(alpha_pos, alpha_neg) >= 0.5:
        raise CurateError(
            f"the class_empirical null needs alphas below 0.5, got alpha_pos={alpha_pos}, "
            f"alpha_neg={alpha_neg}",
            hint="a sub-boundary at alpha >= 0.5 rejects half the pairs; use 0.05",
        )
    x = _as_matrix(emb)
    codes, classes = encode_labels(labels, x.shape[0])
    k = len(classes)
    if k < 2:
        raise CurateError(
            f"class-aware nulls need at least two classes, got {list(classes)}",
            hint="use --null effective for a single class",
        )
    w = image_weights(x, labels) if weights is None else _check_weights(weights, x.shape[0])
    if method == "class":
        mu, sigma, n_pairs, d_eff, pooled_nulls = _moment_nulls(x, codes, k, w, scale)
    else:
        mu, sigma, n_pairs, pooled_nulls = _empirical_nulls(
            x, codes, k, w, alpha_pos, alpha_neg, pairs_per_class_pair, seed
        )
        d_eff = np.full((k, k), np.nan)
    pooled = _fill_pooled(mu, sigma, _distinct_pairs(codes, k), min_pairs, pooled_nulls)
    if not np.isfinite(mu).all() or not (sigma > 0).all():
        raise CurateError(
            "the class-aware nulls cannot be fitted: every class needs images with weight > 0",
            hint="use --null effective, or check the labels",
        )
    return ClassNulls(
        method, classes, float(scale), alpha_pos, alpha_neg, mu, sigma, n_pairs, d_eff, pooled
    )


def apply_class_boundary(
    dist: dict[str, np.ndarray],
    nulls: ClassNulls,
    anchor: np.ndarray,
    negative: np.ndarray,
    negative2: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``nulls`` to tuple distances (from :func:`tuple_distances`).

    ``anchor``, ``negative``, ``negative2`` are class codes (``nulls.codes(labels)``) of the
    tuple members; the positive shares the anchor's class. Returns ``keep`` (bool) and
    ``reason`` (object: None or ``;``-joined codes), like :func:`apply_boundary`.
    """
    too_far, too_close = class_verdicts(dist, nulls, anchor, negative, negative2)
    code = too_far.astype(np.int8) + 2 * too_close.astype(np.int8)
    table = np.array(
        [None, POSITIVE_TOO_FAR, NEGATIVE_TOO_CLOSE, f"{POSITIVE_TOO_FAR};{NEGATIVE_TOO_CLOSE}"],
        dtype=object,
    )
    return code == 0, table[code]


def class_pair_verdicts(
    dist: dict[str, np.ndarray],
    nulls: ClassNulls,
    anchor: np.ndarray,
    negative: np.ndarray,
    negative2: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per distance pair (``d_ap``, ``d_an``, ``d_an2``, ``d_nn2``): whether it fails its
    class-aware sub-boundary, and its standardised distance toward rejection (the shape of
    :func:`curate.screens.boundary.pair_verdicts`). A negative pair of two images of the
    same class (possible for ``negative``-``negative2``) never fails and has z 0."""
    a = np.asarray(anchor, dtype=np.int64)
    n = np.asarray(negative, dtype=np.int64)
    t_pos, t_neg = nulls.t_pos, nulls.t_neg
    fail = {
        "d_ap": np.asarray(dist["d_ap"]) > t_pos[a],
        "d_an": np.asarray(dist["d_an"]) < t_neg[a, n],
    }
    z = tuple_z(dist, nulls, a, n, negative2)
    if negative2 is not None and "d_an2" in dist:
        n2 = np.asarray(negative2, dtype=np.int64)
        fail["d_an2"] = np.asarray(dist["d_an2"]) < t_neg[a, n2]
        fail["d_nn2"] = np.asarray(dist["d_nn2"]) < t_neg[n, n2]
    return fail, z


def class_verdicts(
    dist: dict[str, np.ndarray],
    nulls: ClassNulls,
    anchor: np.ndarray,
    negative: np.ndarray,
    negative2: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(too_far, too_close)`` per tuple: the positive and the negative sub-boundary failed."""
    fail, _ = class_pair_verdicts(dist, nulls, anchor, negative, negative2)
    too_close = np.logical_or.reduce([fail[k] for k in ("d_an", "d_an2", "d_nn2") if k in fail])
    return fail["d_ap"], too_close


def tuple_z(
    dist: dict[str, np.ndarray],
    nulls: ClassNulls,
    anchor: np.ndarray,
    negative: np.ndarray,
    negative2: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Standardised distances toward rejection: ``(d_ap - mu_aa) / sigma_aa`` and
    ``(mu_ab - d) / sigma_ab`` for each negative pair (0 for a same-class negative pair)."""
    a = np.asarray(anchor, dtype=np.int64)
    n = np.asarray(negative, dtype=np.int64)
    out = {
        "d_ap": (np.asarray(dist["d_ap"]) - nulls.mu[a, a]) / nulls.sigma[a, a],
        "d_an": _neg_z(dist["d_an"], nulls, a, n),
    }
    if negative2 is not None and "d_an2" in dist:
        n2 = np.asarray(negative2, dtype=np.int64)
        out["d_an2"] = _neg_z(dist["d_an2"], nulls, a, n2)
        out["d_nn2"] = _neg_z(dist["d_nn2"], nulls, n, n2)
    return out


def class_calibration(
    emb: np.ndarray,
    labels: np.ndarray | pd.Series | list[Any],
    nulls: ClassNulls,
    *,
    weights: np.ndarray | None = None,
    pairs_per_class_pair: int = PAIRS_PER_CLASS_PAIR,
    seed: int = 1,
) -> dict[str, Any]:
    """Realised rejection shares next to the nominal alphas, on fresh random pairs.

    ``share_above_t_pos``: weighted share of same-label pairs above their ``T_pos``;
    ``share_below_t_neg``: of different-label pairs below their ``T_neg``; pair weight
    ``w_i w_j``. With ``weights=None`` every pair counts (all labelled pairs); pass the fit's
    weights for the pairs the boundary should accept, or a 0/1 mask of images known to be
    correctly labelled. Also per class (``per_class``: share above ``T_pos``).
    """
    x = _as_matrix(emb)
    codes = nulls.codes(labels)
    k = len(nulls.classes)
    w = np.ones(x.shape[0]) if weights is None else _check_weights(weights, x.shape[0])
    i, j, a, b = stratified_pairs(codes, k, pairs_per_class_pair, np.random.default_rng(seed))
    d = pair_distances(x, i, j)
    pw = w[i] * w[j]
    same = a == b
    above = d > nulls.t_pos[a]
    below = d < nulls.t_neg[a, b]
    per_class = {}
    for c in range(k):
        sel = same & (a == c)
        if pw[sel].sum() > 0:
            per_class[nulls.classes[c]] = _share(above[sel], pw[sel])
    return {
        "nominal_alpha_pos": nulls.alpha_pos,
        "nominal_alpha_neg": nulls.alpha_neg,
        "share_above_t_pos": _share(above[same], pw[same]),
        "share_below_t_neg": _share(below[~same], pw[~same]),
        "n_same_pairs": int(same.sum()),
        "n_different_pairs": int((~same).sum()),
        "weight_same_pairs": float(pw[same].sum()),
        "weight_different_pairs": float(pw[~same].sum()),
        "per_class": per_class,
    }


def stratified_pairs(
    codes: np.ndarray,
    n_classes: int,
    per_pair: int,
    rng: np.random.Generator,
    max_pairs: int = MAX_PAIRS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random pairs ``(i, j)``, ``i != j``, up to ``per_pair`` for every class pair ``a <= b``
    (fewer when ``K (K + 1) / 2 * per_pair`` would exceed ``max_pairs``). Returns ``i, j`` and
    their classes ``a <= b``."""
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_cp = n_classes * (n_classes + 1) // 2
    per = max(1, min(per_pair, max_pairs // max(n_cp, 1)))
    got: list[tuple[np.ndarray, ...]] = []
    for a in range(n_classes):
        for b in range(a, n_classes):
            if counts[a] == 0 or counts[b] == 0 or (a == b and counts[a] < 2):
                continue
            ri = rng.integers(0, counts[a], per)
            i = order[starts[a] + ri]
            if a == b:  # a second, different member: uniform over ordered pairs with i != j
                j = order[starts[a] + (ri + rng.integers(1, counts[a], per)) % counts[a]]
            else:
                j = order[starts[b] + rng.integers(0, counts[b], per)]
            got.append((i, j, np.full(per, a), np.full(per, b)))
    if not got:
        e = np.empty(0, np.int64)
        return e, e, e, e
    return tuple(np.concatenate(p) for p in zip(*got, strict=True))  # type: ignore[return-value]


def _moment_nulls(
    x: np.ndarray, codes: np.ndarray, k: int, w: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[bool, Any]]:
    d = x.shape[1]
    wsum = np.bincount(codes, weights=w, minlength=k)
    w2sum = np.bincount(codes, weights=w * w, minlength=k)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    means = np.zeros((k, d))
    m2 = np.zeros((k, d, d))
    for c in range(k):
        rows = codes == c
        xc, wc = x[rows].astype(np.float64), w[rows]
        means[c] = wc @ xc
        m2[c] = (xc * wc[:, None]).T @ xc
    dot = means @ means.T  # (sum w x)_a . (sum w x)_b
    cross = np.einsum("aij,bij->ab", m2, m2)  # tr(S_a S_b), S = sum w x x^T
    e_dot = np.full((k, k), np.nan)
    e_dot2 = np.full((k, k), np.nan)
    n_pairs = np.zeros((k, k), dtype=np.int64)
    counts = np.bincount(codes, minlength=k)
    for a in range(k):
        for b in range(k):
            if a == b:  # pairs of two different members: remove the i == j terms
                den = wsum[a] ** 2 - w2sum[a]
                if den <= 0:
                    continue
                e_dot[a, a] = (dot[a, a] - np.sum((w * w * sq)[codes == a])) / den
                e_dot2[a, a] = (cross[a, a] - np.sum((w * w * sq * sq)[codes == a])) / den
                n_pairs[a, a] = counts[a] * (counts[a] - 1) // 2
            else:
                den = wsum[a] * wsum[b]
                if den <= 0:
                    continue
                e_dot[a, b] = dot[a, b] / den
                e_dot2[a, b] = cross[a, b] / den
                n_pairs[a, b] = counts[a] * counts[b]
    den = np.where(
        np.eye(k, dtype=bool), (wsum**2 - w2sum)[:, None] * np.eye(k), np.outer(wsum, wsum)
    )
    ok = np.isfinite(e_dot) & (den > 0)
    pooled = {}
    for flag, sel in ((True, ok & np.eye(k, dtype=bool)), (False, ok & ~np.eye(k, dtype=bool))):
        tot = den[sel].sum()
        pooled[flag] = (
            _moment_normal(
                np.sum(den[sel] * e_dot[sel]) / tot, np.sum(den[sel] * e_dot2[sel]) / tot, scale
            )
            if tot > 0
            else None
        )
    mu, sigma = _moment_normal(e_dot, e_dot2, scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_eff = scale**4 / e_dot2
    return mu, sigma, n_pairs, d_eff, pooled


def _moment_normal(
    e_dot: np.ndarray | float, e_dot2: np.ndarray | float, scale: float
) -> tuple[Any, Any]:
    """Normal approximation of ``D = sqrt(2 s^2 - 2 x.y)`` from ``E[x.y]`` and ``E[(x.y)^2]``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        e_d2 = 2 * scale * scale - 2 * np.asarray(e_dot, dtype=np.float64)
        var_d2 = np.maximum(
            4 * (np.asarray(e_dot2, dtype=np.float64) - np.asarray(e_dot) ** 2), 0.0
        )
        mu = np.sqrt(e_d2) * (1 - var_d2 / (8 * e_d2**2))
        sigma = np.sqrt(var_d2 / (4 * e_d2))
    return mu, sigma


def _empirical_nulls(
    x: np.ndarray,
    codes: np.ndarray,
    k: int,
    w: np.ndarray,
    alpha_pos: float,
    alpha_neg: float,
    per_pair: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[bool, Any]]:
    i, j, a, b = stratified_pairs(codes, k, per_pair, np.random.default_rng(seed))
    d = pair_distances(x, i, j)
    pw = w[i] * w[j]
    z_pos = upper_quantile(alpha_pos)
    z_neg = upper_quantile(alpha_neg)
    mu = np.full((k, k), np.nan)
    sigma = np.full((k, k), np.nan)
    n_pairs = np.zeros((k, k), dtype=np.int64)
    key = a * k + b
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(k * k + 1))
    for ab in range(k * k):
        sel = order[bounds[ab] : bounds[ab + 1]]
        if sel.size == 0 or pw[sel].sum() <= 0:
            continue
        ca, cb = divmod(ab, k)
        med = _wquantile(d[sel], pw[sel], 0.5)
        if ca == cb:
            s = (_wquantile(d[sel], pw[sel], 1 - alpha_pos) - med) / z_pos
        else:
            s = (med - _wquantile(d[sel], pw[sel], alpha_neg)) / z_neg
        # the tail quantile can equal the median (ties, alpha near 0.5): keep the threshold at
        # that quantile with a vanishing sigma rather than fall back on the pooled null, so
        # the verdicts stay monotone in alpha
        s = max(s, _MIN_SIGMA)
        mu[ca, cb] = mu[cb, ca] = med
        sigma[ca, cb] = sigma[cb, ca] = s
        n_pairs[ca, cb] = n_pairs[cb, ca] = sel.size
    # pooled nulls over all same-label / different-label pairs, for sparse class pairs
    pooled: dict[bool, tuple[float, float] | None] = {}
    same = a == b
    for flag, z, q in ((True, z_pos, 1 - alpha_pos), (False, z_neg, alpha_neg)):
        sel = np.flatnonzero(same == flag)
        pooled[flag] = None
        if sel.size and pw[sel].sum() > 0:
            med = _wquantile(d[sel], pw[sel], 0.5)
            pooled[flag] = (med, max(abs(_wquantile(d[sel], pw[sel], q) - med) / z, _MIN_SIGMA))
    return mu, sigma, n_pairs, pooled


def _fill_pooled(
    mu: np.ndarray, sigma: np.ndarray, distinct: np.ndarray, min_pairs: int, pooled: dict[bool, Any]
) -> np.ndarray:
    """Replace, in place, the nulls of class pairs with fewer than ``min_pairs`` distinct pairs
    (or no fit) by the pooled same-label / different-label null. Returns the mask replaced."""
    k = mu.shape[0]
    diag = np.eye(k, dtype=bool)
    sparse = (distinct < min_pairs) | ~np.isfinite(mu) | ~(sigma > 0)
    for flag, where in ((True, sparse & diag), (False, sparse & ~diag)):
        if where.any() and pooled.get(flag) is not None:
            mu[where], sigma[where] = pooled[flag]
    return sparse


def _distinct_pairs(codes: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=k).astype(np.int64)
    out = np.outer(counts, counts)
    np.fill_diagonal(out, counts * (counts - 1) // 2)
    return out


def _neg_z(d: np.ndarray, nulls: ClassNulls, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    z = (nulls.mu[a, b] - np.asarray(d)) / nulls.sigma[a, b]
    return np.where(a == b, 0.0, z)


def _wquantile(v: np.ndarray, w: np.ndarray, q: float) -> float:
    """Weighted quantile: the value where the cumulative weight (midpoint rule) reaches ``q``."""
    o = np.argsort(v, kind="stable")
    vs, ws = v[o], w[o]
    cw = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
    return float(np.interp(q, cw, vs))


def _share(flags: np.ndarray, w: np.ndarray) -> float | None:
    tot = float(w.sum())
    return float((flags * w).sum() / tot) if tot > 0 else None


def _check_alphas(alpha_pos: float, alpha_neg: float) -> None:
    for name, alpha in (("alpha_pos", alpha_pos), ("alpha_neg", alpha_neg)):
        if not 0 < alpha < 1:
            raise CurateError(
                f"{name} must be strictly between 0 and 1, got {alpha!r}",
                hint=f"use for example --{name.replace('_', '-')} 0.05",
            )


def _check_weights(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise CurateError(f"weights must be {n} finite numbers >= 0, one per embedding row")
    return w


def _num(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class ClassBoundaryFit:
    """What :func:`fit_class_boundary` returns: the nulls (with their calibration), the
    image verdicts they were weighted by (rows aligned with the embeddings) and the label model."""

    nulls: ClassNulls
    verdicts: pd.DataFrame
    model: Any

    def to_dict(self) -> dict[str, Any]:
        """``{"class_nulls": ..., "label_model": ...}`` for ``boundary.json``."""
        return {"class_nulls": self.nulls.to_dict(), "label_model": self.model.to_dict()}


def fit_class_boundary(
    emb: np.ndarray,
    labels: np.ndarray | pd.Series | list[Any],
    *,
    null: str = "class_empirical",
    alpha_pos: float = 0.05,
    alpha_neg: float = 0.05,
    scale: float = 1.0,
    seed: int = 0,
    prior_floor: float = PRIOR_FLOOR,
    pairs_per_class_pair: int = PAIRS_PER_CLASS_PAIR,
) -> ClassBoundaryFit:
    """The whole class-aware fit on normalised embeddings with labels, as ``curate screen``
    and the training loop use it: image verdicts (:func:`label_posteriors`), nulls weighted by
    ``sqrt(label_posterior)``, and their calibration on fresh pairs (``accepted_pairs``: pairs
    weighted like the fit; ``all_labelled_pairs``: every pair counts)."""
    verdicts, model = label_posteriors(emb, labels, prior_floor=prior_floor)
    p = verdicts["label_posterior"].to_numpy(np.float64)
    w = np.sqrt(np.where(np.isnan(p), 1.0, p))
    nulls = fit_class_nulls(
        emb,
        labels,
        method=null,
        weights=w,
        alpha_pos=alpha_pos,
        alpha_neg=alpha_neg,
        scale=scale,
        seed=seed,
        pairs_per_class_pair=pairs_per_class_pair,
    )
    calibration = {
        "accepted_pairs": class_calibration(
            emb, labels, nulls, weights=w, seed=seed + 1, pairs_per_class_pair=pairs_per_class_pair
        ),
        "all_labelled_pairs": class_calibration(
            emb, labels, nulls, seed=seed + 1, pairs_per_class_pair=pairs_per_class_pair
        ),
    }
    return ClassBoundaryFit(nulls.with_calibration(calibration), verdicts, model)
