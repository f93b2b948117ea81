"""Image-level label verdicts: how well each image fits its own class, and which class it fits best
(the maths of the label screen, :mod:`curate.screens.label`, and of the class-aware nulls).

For image ``i`` and class ``k`` the evidence is the root-mean-square distance ``r_ik``
from the image to every member of ``k`` (the image itself left out of its own class),

    r_ik^2 = mean_j |x_i - x_j|^2 = |x_i|^2 - 2 x_i . m_k + q_k,

with ``m_k`` the mean and ``q_k`` the mean squared modulus of the members of ``k``: one
pass over the class sums, O(N K d) time and O(N K) memory, never an N x N matrix.

Why this form: if the distance of two faces of one class is normal N(mu_s, sigma^2) and of
two faces of different classes N(mu_d, sigma^2), the log-likelihood ratio "i and j share a
class" is linear in their distance, so summed over the members of a class it is linear in
the image's mean distance to that class. The class evidence is therefore ``-r_ik / tau``,
with ``tau`` the standard deviation of the boundary's null, ``s / sqrt(2 d_eff)`` (the
participation ratio of the embeddings' covariance), unless given.

Class priors are not the labelled shares: a class the embedding cannot tell from others
(FER2013's fear) holds far fewer true members than it has labels. They are the fixed point
of the EM update of Saerens et al. (2002), ``pi_k = mean_i p(k | x_i)``, with a floor of
``prior_floor * n_k / N`` so that no class can vanish. The verdict of image ``i`` labelled
``y`` is its posterior ``p(y | x_i) = pi_y exp(-r_iy / tau) / sum_k pi_k exp(-r_ik / tau)``;
``suspicion = 1 - p(y | x_i)`` is the probability that the label is wrong (conservative:
the distance evidence is soft, so correct labels get posteriors well below 1), and the class
other than ``y`` with the highest posterior is the ``suggested_label`` ("labelled y, looks
like ..."); ``label_rank`` is 1 when the label itself fits best.

``label_pvalue`` is a p-value for "the label is right": the share of the reference images
whose evidence against their own label (``suspicion_logit``) is at least as large, the
reference being every image weighted by its label posterior (the images that fit their
labels). The image screen rejects a label at level ``alpha`` when ``label_pvalue < alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.stats.statistical import effective_dimension

# Floor of the EM class priors, as a share of each class's labelled share. 0.01 ranks
# FER2013's real noise best (dev AUROC 0.868 vs 0.852 at 0.1, bench/quality/quality_real_noise.py),
# because FER2013's fear and disgust hold far fewer true members than labels; below 0.1 a
# backbone that cannot separate the classes (the cartoon example: AUROC 0.647 at 0.01, 0.701
# at 0.1, 0.810 at 1) makes whole classes look mislabelled. docs/label.md has the table.
PRIOR_FLOOR = 0.1
# The label screen never rejects more than this share of a class's images (its most suspect
# first). FER2013's disgust is the case: the EM prior of the class falls to its floor, every
# one of its 55 PublicTest images gets a p-value below 0.01 (19 of them truly disgust by
# FERPlus) and the class would vanish from training. At 0.5 the screen keeps half of it, and
# its precision on FERPlus-mislabelled images rises (dev 0.856 -> 0.872; docs/label.md).
MAX_CLASS_SHARE = 0.5
LABEL_SUSPECT = "label_suspect"  # the label screen's reason
_CHUNK = 65536
LABEL_COLUMNS = (
    "label",
    "suggested_label",
    "label_posterior",
    "suggested_posterior",
    "suspicion",
    "suspicion_logit",
    "label_pvalue",
    "label_rank",
    "distance_own",
    "distance_suggested",
)


@dataclass(frozen=True)
class LabelModel:
    """The fitted image-level model; :meth:`to_dict` is JSON-ready (for ``boundary.json``)."""

    classes: tuple[str, ...]
    counts: tuple[int, ...]
    prior: tuple[float, ...]
    tau: float
    prior_floor: float
    iterations: int
    converged: bool
    capped: tuple[dict[str, Any], ...] = ()  # classes the screen's max-class-share cap acted on

    def to_dict(self) -> dict[str, Any]:
        """Plain data: per class its labelled count and estimated prior, and the settings."""
        return {
            "tau": self.tau,
            "prior_floor": self.prior_floor,
            "iterations": self.iterations,
            "converged": self.converged,
            "capped_classes": [dict(c) for c in self.capped],
            "classes": [
                {"class": c, "n_labelled": n, "prior": p}
                for c, n, p in zip(self.classes, self.counts, self.prior, strict=True)
            ],
        }


def encode_labels(
    labels: np.ndarray | pd.Series | list[Any], n: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class codes (int64, one per row) and the sorted class names of ``labels`` (as strings)."""
    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1 or arr.size != n:
        raise CurateError(
            f"{arr.size} labels for {n} embeddings", hint="give one label per embedding row"
        )
    missing = pd.isna(arr)
    if missing.any():
        raise CurateError(
            f"labels are missing for rows {np.flatnonzero(missing)[:5].tolist()}",
            hint="drop the unlabelled images or give them a label",
        )
    classes, codes = np.unique(arr.astype(str), return_inverse=True)
    return codes.astype(np.int64), tuple(str(c) for c in classes)


def class_distances(emb: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Root-mean-square distance from every row to the members of every class (``N x K``, float64).

    A row is left out of its own class; a row alone in its class gets ``nan`` there.
    Computed from class sums in chunks of rows: no N x N matrix.
    """
    x = _as_matrix(emb)
    codes = np.asarray(codes, dtype=np.int64)
    n = x.shape[0]
    if codes.shape != (n,) or (n and (codes.min() < 0 or codes.max() >= n_classes)):
        raise CurateError(f"class codes must be {n} integers in 0..{n_classes - 1}")
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    sums = _class_sums(x, codes, n_classes)
    sq_sums = np.bincount(codes, weights=sq, minlength=n_classes)
    out = np.empty((n, n_classes))
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        ci, si = codes[sl], sq[sl]
        rows = np.arange(ci.size)
        dot = x[sl].astype(np.float64) @ sums.T
        dot[rows, ci] -= si  # leave the row out of its own class
        cnt = np.broadcast_to(counts, dot.shape).copy()
        cnt[rows, ci] -= 1
        qs = np.broadcast_to(sq_sums, dot.shape).copy()
        qs[rows, ci] -= si
        with np.errstate(invalid="ignore", divide="ignore"):
            d2 = si[:, None] + (qs - 2.0 * dot) / cnt
        out[sl] = np.sqrt(np.where(cnt > 0, np.maximum(d2, 0.0), np.nan))
    return out


def label_posteriors(
    emb: np.ndarray,
    labels: np.ndarray | pd.Series | list[Any],
    *,
    tau: float | None = None,
    prior_floor: float = PRIOR_FLOOR,
    head_probs: np.ndarray | None = None,
    max_iter: int = 2000,
    tol: float = 1e-8,
) -> tuple[pd.DataFrame, LabelModel]:
    """Per image (rows of ``emb``, normalised as for the boundary): how well it fits its label.

    Returns a table aligned with the rows, columns :data:`LABEL_COLUMNS` (see
    ``docs/tables.md``), and the fitted :class:`LabelModel`. ``tau`` defaults to the
    effective null's standard deviation ``s / sqrt(2 d_eff)``. ``head_probs`` (``N x K``,
    the classes in sorted order): a second judge's class probabilities, a network's
    classification head (:mod:`curate.representations.head`), whose logarithm is added to
    the distance evidence of every class (the product of the two judges).
    """
    x = _as_matrix(emb)
    n = x.shape[0]
    codes, classes = encode_labels(labels, n)
    k = len(classes)
    if k < 2:
        raise CurateError(
            f"label verdicts need at least two classes, got {list(classes)}",
            hint="screen a dataset with two or more labelled classes",
        )
    if not (prior_floor >= 0 and math.isfinite(prior_floor)):
        raise CurateError(f"prior_floor must be a non-negative number, got {prior_floor!r}")
    if tau is None:
        scale = float(np.sqrt(np.mean(np.einsum("ij,ij->i", x, x))))
        d_eff = effective_dimension(x)
        tau = scale / math.sqrt(2.0 * d_eff) if d_eff > 0 else 0.0
    if not (tau > 0 and math.isfinite(tau)):
        raise CurateError(
            f"tau must be a positive number, got {tau!r}",
            hint="the embeddings have no variance; check the backbone and weights",
        )
    r = class_distances(x, codes, k)
    evidence = np.where(np.isnan(r), -np.inf, -r / tau)
    if head_probs is not None:
        hp = np.asarray(head_probs, dtype=np.float64)
        if hp.shape != (n, k):
            raise CurateError(f"head probabilities have shape {hp.shape}, expected {(n, k)}")
        evidence = evidence + np.log(np.clip(hp, 1e-12, None))
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    log_post, prior, iters, converged = _prior_em(evidence, counts, prior_floor, max_iter, tol)
    return _verdict_table(log_post, r, codes, classes), LabelModel(
        classes=classes,
        counts=tuple(int(c) for c in counts),
        prior=tuple(float(p) for p in prior),
        tau=float(tau),
        prior_floor=float(prior_floor),
        iterations=iters,
        converged=converged,
    )


def label_reject(verdicts: pd.DataFrame, alpha: float) -> np.ndarray:
    """Bool per row: the label is rejected at level ``alpha`` (``label_pvalue < alpha``)."""
    if not 0 < alpha < 1:
        raise CurateError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return verdicts["label_pvalue"].to_numpy(np.float64) < alpha


def cap_per_class(
    reject: np.ndarray, verdicts: pd.DataFrame, max_share: float
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``reject`` with at most ``floor(max_share * n)`` rejections in each labelled class of
    ``n`` images: where a class has more, only its most suspect (largest
    ``suspicion_logit``, then the first row) stay rejected.

    Returns the capped verdicts and, per class the cap acted on, ``class``, ``n_images``,
    ``would_reject`` and ``rejected``.
    """
    if not 0 < max_share <= 1:
        raise CurateError(f"max_share must be in (0, 1], got {max_share!r}")
    out = np.asarray(reject, dtype=bool).copy()
    logit = np.nan_to_num(verdicts["suspicion_logit"].to_numpy(np.float64), nan=-np.inf)
    labels = verdicts["label"].astype(str).to_numpy()
    capped = []
    for c in sorted(set(labels[out].tolist())):
        rows = np.flatnonzero(labels == c)
        allowed = int(math.floor(max_share * rows.size + 1e-9))
        would = int(out[rows].sum())
        if would <= allowed:
            continue
        keep = rows[np.argsort(-logit[rows], kind="stable")[:allowed]]
        out[rows] = False
        out[keep] = True
        capped.append(
            {"class": c, "n_images": int(rows.size), "would_reject": would, "rejected": allowed}
        )
    return out, capped


def _class_sums(x: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``K x d`` float64 sums of the rows of each class (sorted once, summed in blocks)."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.zeros((n_classes, x.shape[1]))
    for c in np.flatnonzero(counts):
        rows = order[starts[c] : starts[c] + counts[c]]
        for b in range(0, rows.size, _CHUNK):
            out[c] += x[rows[b : b + _CHUNK]].sum(axis=0, dtype=np.float64)
    return out


def _prior_em(
    evidence: np.ndarray, counts: np.ndarray, floor: float, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Fixed point of ``pi_k <- mean_i p(k | x_i) + floor * n_k / N``, renormalised.

    ``a = exp(evidence - row max)`` is computed once; an iteration is then two
    matrix-vector products (``mean_i p_ik = pi_k mean_i a_ik / sum_l a_il pi_l``)."""
    base = counts / counts.sum()
    m = np.max(evidence, axis=1, keepdims=True)
    a = np.exp(evidence - np.where(np.isfinite(m), m, 0.0))
    prior = base.copy()
    converged, iterations = False, 0
    while iterations < max_iter and not converged:
        iterations += 1
        new = (1.0 / (a @ prior)) @ a * (prior / a.shape[0]) + floor * base
        new /= new.sum()
        converged = float(np.abs(new - prior).max()) < tol
        prior = new
    with np.errstate(divide="ignore"):
        log_post = _log_softmax(evidence + np.log(prior))
    return log_post, prior, iterations, converged


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = np.max(z, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return z - m - np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))


def _verdict_table(
    log_post: np.ndarray, r: np.ndarray, codes: np.ndarray, classes: tuple[str, ...]
) -> pd.DataFrame:
    n = len(codes)
    rows = np.arange(n)
    names = np.asarray(classes, dtype=object)
    own = log_post[rows, codes]
    other = log_post.copy()
    other[rows, codes] = -np.inf
    best = np.argmax(other, axis=1)  # the best class other than the label
    m = other[rows, best]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_other = m + np.log(np.sum(np.exp(other - m[:, None]), axis=1))
    alone = np.isnan(r[rows, codes])  # the only image of its class: no evidence
    post = np.exp(own)
    rank = 1 + np.sum(log_post > own[:, None], axis=1)
    logit = np.where(alone, np.nan, log_other - own)
    return pd.DataFrame(
        {
            "label": names[codes],
            "suggested_label": names[best],
            "label_posterior": np.where(alone, np.nan, post),
            "suggested_posterior": np.exp(m),
            "suspicion": np.where(alone, np.nan, 1.0 - post),
            "suspicion_logit": logit,
            "label_pvalue": _pvalues(logit, np.where(alone, 0.0, post)),
            "label_rank": np.where(alone, 0, rank).astype(np.int64),
            "distance_own": r[rows, codes],
            "distance_suggested": r[rows, best],
        }
    )


def _pvalues(stat: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted share of the reference images whose ``stat`` is at least each row's.

    The reference is every scored image weighted by the posterior of its own label, so
    it stands for the images whose labels are right; ``nan`` stays ``nan``."""
    ok = ~np.isnan(stat)
    out = np.full(stat.shape, np.nan)
    if not ok.any() or weight[ok].sum() <= 0:
        return out
    order = np.argsort(stat[ok], kind="stable")
    ref, w = stat[ok][order], weight[ok][order]
    tail = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])  # weight at or above each position
    first = np.searchsorted(ref, stat[ok], side="left")
    out[ok] = tail[first] / tail[0]
    return out


def _as_matrix(emb: np.ndarray) -> np.ndarray:
    arr = np.asarray(emb)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CurateError(
            f"embeddings must be a non-empty 2-D array (images x dimensions), got shape {arr.shape}"
        )
    if arr.dtype != np.float64:
        arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise CurateError(
            "embeddings contain NaN or infinity",
            hint="re-embed the images; check the backbone's weights",
        )
    return arr
