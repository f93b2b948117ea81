"""Batch-hard triplet mining in class-balanced batches (``curate finetune --mining batch-hard``).

The method of Xie et al. (IEEE TCSVT 2022, "triplet loss with multistage outlier
suppression and class-pair margins"): each step draws ``P`` classes times ``K`` images
(:class:`ClassBalancedSampler`), forwards them once, and every image with a positive and a
negative in the batch anchors one triplet with its hardest positive (the farthest image of
its label) and its hardest negative (the closest image of another label),
:func:`batch_hard_triplets`. Those hardest triplets are where the outliers enter: a
mislabelled or unusable face is very often the farthest "positive" of its label. The
statistical boundary is applied to the mined triplets at every step
(:class:`curate.train.loss.InLoopScreen`), so the hardest triplets whose distances do not
fit the null are the ones discarded.

The null of a mined distance is not the null of a random pair: the hardest positive is the
largest of ``K - 1`` same-label distances and the hardest negative the smallest of the
``(P - 1) K`` other-label ones. :func:`mined_alphas` turns the boundary's significance
levels into the levels of those order statistics (Sidak: ``1 - (1 - alpha) ** (1 / n)``), so
a clean batch has an ``alpha`` chance that its hardest positive fails, as a random pair has.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from curate.errors import CurateError


def mined_alphas(
    alpha_pos: float, alpha_neg: float, n_positives: int, n_negatives: int
) -> tuple[float, float]:
    """Significance levels of the boundary tested on the hardest of ``n_positives`` same-label
    and ``n_negatives`` other-label distances: the maximum of ``n`` independent null draws
    exceeds the null's ``1 - a`` quantile with probability ``1 - (1 - a) ** n``, so testing the
    maximum at ``1 - (1 - alpha) ** (1 / n)`` keeps the level ``alpha`` (Sidak)."""

    def one(alpha: float, n: int) -> float:
        return alpha if n <= 1 else 1.0 - (1.0 - alpha) ** (1.0 / n)

    return one(alpha_pos, n_positives), one(alpha_neg, n_negatives)


class ClassBalancedSampler:
    """Seeded batches of ``p`` classes times ``k`` images over a pool of labelled images.

    Each epoch every class's images are shuffled into a cycle; each batch draws ``p``
    distinct classes, with probability proportional to their size (so the class prior of
    the pool is kept roughly, not flattened), and takes the next ``k`` images of each
    class's cycle (a class with fewer than ``k`` images repeats some). The batches of an
    epoch depend only on ``(seed, epoch)``, so a resumed run draws the same ones.
    """

    def __init__(
        self, labels: np.ndarray, p: int, k: int, seed: int, steps_per_epoch: int | None = None
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        self.classes = np.unique(labels)
        if p < 2 or k < 2:
            raise CurateError(
                f"batch-hard mining needs at least 2 classes and 2 images per class per batch, "
                f"got --classes-per-batch {p} --images-per-class {k}",
                hint="use for example --classes-per-batch 4 --images-per-class 24",
            )
        if len(self.classes) < 2:
            raise CurateError(
                "batch-hard mining needs images of at least two classes",
                hint="train with --mining none on tuples of one class",
            )
        self.labels, self.p, self.k, self.seed = (
            labels,
            min(int(p), len(self.classes)),
            int(k),
            int(seed),
        )
        self.members = [np.flatnonzero(labels == c) for c in self.classes]
        sizes = np.array([len(m) for m in self.members], dtype=np.float64)
        self.class_p = sizes / sizes.sum()
        self.steps_per_epoch = (
            int(steps_per_epoch)
            if steps_per_epoch
            else max(1, math.ceil(len(labels) / (self.p * self.k)))
        )
        self._plan: tuple[int, list[np.ndarray]] | None = None

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch``: each ``[p * k]`` pool indices, grouped by class."""
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1]
        rng = np.random.default_rng([self.seed, int(epoch), 0xB47C4])
        cycles = [rng.permutation(m) for m in self.members]
        pos = np.zeros(len(cycles), dtype=np.int64)
        out = []
        for _ in range(self.steps_per_epoch):
            chosen = np.sort(rng.choice(len(self.classes), self.p, replace=False, p=self.class_p))
            parts = []
            for c in chosen:
                cyc = cycles[c]
                idx = (pos[c] + np.arange(self.k)) % len(cyc)
                pos[c] += self.k
                parts.append(cyc[idx])
            out.append(np.concatenate(parts))
        self._plan = (int(epoch), out)
        return out


def batch_margins(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per batch image, how much closer it sits to another label than to its own: the mean
    distance of its unit embedding to the other images of its label minus the smallest mean
    distance to the images of another label in the batch (``nan`` without both). Accumulated
    over an image's visits, it is the abnormality score of multistage outlier suppression
    (``--suspect-score margin``): on FER2013 it separates the mislabelled images within each
    label as well as a cross-validated linear probe does, where the mined distances barely do
    (``bench/experiments/mined_null_probe.py --per-image``)."""
    u = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    d = np.sqrt(np.maximum(2.0 - 2.0 * (u @ u.T), 0.0))
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    n_same = same.sum(1)
    own = np.divide((d * same).sum(1), n_same, out=np.full(len(labels), np.nan), where=n_same > 0)
    other = np.full(len(labels), np.inf)
    for c in np.unique(labels):
        at = labels == c
        other = np.where(~at, np.minimum(other, d[:, at].mean(1)), other)
    return np.where(np.isfinite(other), own - other, np.nan)


def head_margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image, how far the classification head prefers another label to its own: the largest
    other logit minus the logit of its label (the negated margin of AUM, Pleiss et al. 2020,
    "Identifying mislabeled data using the area under the margin ranking"). Accumulated over an
    image's visits it is its area under the margin, negated: ``--suspect-score head``."""
    z = np.asarray(logits, dtype=np.float64)
    idx = np.arange(len(z))
    own = z[idx, labels].copy()
    z = z.copy()
    z[idx, labels] = -np.inf
    return z.max(1) - own


def rank_average(*scores: np.ndarray) -> np.ndarray:
    """The mean of the scores' percentile ranks within the batch (each in ``(0, 1]``, ties
    averaged; ``nan`` where any score is ``nan``): ``--suspect-score rank`` averages the ranks of
    :func:`head_margins` and :func:`batch_margins`, so neither's scale dominates."""
    from scipy.stats import rankdata

    out = np.zeros(len(scores[0]))
    ok = np.all([np.isfinite(s) for s in scores], axis=0)
    for s in scores:
        out[ok] += rankdata(s[ok]) / max(int(ok.sum()), 1)
    out[~ok] = np.nan
    return out / len(scores)


def batch_hard_triplets(
    emb: torch.Tensor, labels: torch.Tensor, usable: torch.Tensor | None = None
) -> torch.Tensor:
    """``[t, 3]`` (anchor, hardest positive, hardest negative) indices into the batch.

    Every image that has another image of its label and an image of another label in the
    batch anchors one triplet: its positive is the farthest image of its label, its
    negative the closest image of any other label (Euclidean distance of the detached
    embeddings; ties go to the lowest index). Anchors come in batch order. ``usable``
    (bool per image, default all) leaves the other images out of every role: the
    suppressed images of multistage outlier suppression neither anchor nor are mined.
    """
    with torch.no_grad():
        e = emb.detach().float()
        d = torch.cdist(e, e)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        ok = (
            torch.ones(len(labels), dtype=torch.bool, device=labels.device)
            if usable is None
            else usable
        )
        both = ok.unsqueeze(0) & ok.unsqueeze(1)
        pos_ok, neg_ok = same & ~eye & both, ~same & both
        has = pos_ok.any(1) & neg_ok.any(1)
        hardest_pos = torch.where(pos_ok, d, torch.full_like(d, -1.0)).argmax(1)
        hardest_neg = torch.where(neg_ok, d, torch.full_like(d, float("inf"))).argmin(1)
        a = torch.nonzero(has).squeeze(1)
        return torch.stack([a, hardest_pos[a], hardest_neg[a]], 1)
