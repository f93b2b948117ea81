"""Ranking metrics and the kNN label-noise baseline the quality benchmarks share."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN without
    positives or negatives."""
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def knn_disagreement(emb: np.ndarray, labels: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Share of each row's k nearest neighbours (cosine, self excluded) with another label."""
    x = emb - emb.mean(0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x.astype(np.float32)
    codes = np.unique(labels, return_inverse=True)[1]
    out = np.empty(len(x))
    for s in range(0, len(x), block):
        sims = x[s : s + block] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, s + rows] = -np.inf
        nn = np.argpartition(-sims, k, axis=1)[:, :k]
        out[s : s + block] = (codes[nn] != codes[s : s + block, None]).mean(axis=1)
    return out
