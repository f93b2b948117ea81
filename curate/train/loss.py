"""Tuple losses and the in-loop boundary that decides which tuples enter them.

At every step the embeddings of the batch (detached) are centred on the mean of a
running window of recent embeddings, normalised to the modulus ``s``, and each tuple's
distances are tested against the boundary of ``curate screen``, fitted to that window with
the current weights: one global null (:mod:`curate.stats.statistical`) or the class-aware
nulls (:func:`curate.stats.nulls.fit_class_boundary`: one null per class for the positive
pair, one per class pair for the negatives, weighted by the image verdicts of
:mod:`curate.stats.label_model`). Only the kept tuples contribute to the metric loss. With a
class-aware null each batch image also gets its label suspicion against the window's
classes (``BatchVerdict.suspicion``), which the training loop may accumulate per image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from curate.errors import CurateError
from curate.stats import statistical as st
from curate.stats.nulls import CLASS_NULLS, class_verdicts, fit_class_boundary
from curate.train.config import MINING, ScreenSettings

# ----------------------------------------------------------------------------- losses


def triplet_loss(
    emb: torch.Tensor, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean of ``relu(d(a, p) - d(a, n) + margin)`` over the given triplets
    (pytorch-metric-learning's ``TripletMarginLoss``, Euclidean distance, mean reduction)."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.reducers import MeanReducer

    if a.numel() == 0:
        return emb.sum() * 0.0
    loss_fn = TripletMarginLoss(
        margin=margin, distance=LpDistance(normalize_embeddings=False, p=2), reducer=MeanReducer()
    )
    return loss_fn(emb, indices_tuple=(a, p, n))


def _pair_dist(emb: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    # eps keeps the gradient finite when two rows coincide (duplicate images)
    return (emb[i] - emb[j]).pow(2).sum(1).add(1e-12).sqrt()


def quadruplet_loss(
    emb: torch.Tensor,
    a: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor,
    n2: torch.Tensor,
    margin: float,
    margin2: float,
) -> torch.Tensor:
    """Quadruplet loss of Chen et al. (CVPR 2017), on Euclidean distances, mean over tuples:

    ``relu(d(a,p) - d(a,n) + margin) + relu(d(a,p) - d(n,n2) + margin2)``.

    The second term pushes the anchor-positive distance below the distance between
    two negatives of different classes, which need not share the anchor; ``margin2``
    is usually smaller than ``margin``. (pytorch-metric-learning has no quadruplet loss.)
    """
    if a.numel() == 0:
        return emb.sum() * 0.0
    d_ap = _pair_dist(emb, a, p)
    d_an = _pair_dist(emb, a, n)
    d_nn2 = _pair_dist(emb, n, n2)
    return (F.relu(d_ap - d_an + margin) + F.relu(d_ap - d_nn2 + margin2)).mean()


# ----------------------------------------------------------------------------- mining


def mine_negatives(
    emb: torch.Tensor,
    a: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor,
    labels: torch.Tensor,
    allowed: torch.Tensor,
    mode: str,
) -> torch.Tensor:
    """Replace each tuple's negative by a harder one among the batch's images.

    Candidates are images with a label other than the anchor's and with ``allowed``
    true (images that passed the negative sub-boundary). ``hard`` takes the closest
    candidate; ``semihard`` the closest one farther than the positive, falling back to
    the given negative when there is none. Ties go to the lowest index.
    """
    if mode == "none" or a.numel() == 0:
        return n
    if mode not in MINING:
        raise CurateError(f"unknown mining {mode!r}", hint=f"use one of {', '.join(MINING)}")
    with torch.no_grad():
        e = emb.detach().float()
        d = torch.cdist(e[a], e)  # [t, m]
        ok = (labels[a].unsqueeze(1) != labels.unsqueeze(0)) & allowed.unsqueeze(0)
        if mode == "semihard":
            d_ap = (e[a] - e[p]).pow(2).sum(1).sqrt()
            ok &= d > d_ap.unsqueeze(1)
        d = torch.where(ok, d, torch.full_like(d, float("inf")))
        best = d.argmin(dim=1)
        has = torch.isfinite(d.gather(1, best.unsqueeze(1)).squeeze(1))
        return torch.where(has, best, n)


# ----------------------------------------------------------------------------- in-loop screen


@dataclass
class BatchVerdict:
    """Verdict of the in-loop boundary on one batch."""

    keep: np.ndarray  # bool per tuple
    too_far: np.ndarray  # bool per tuple: positive sub-boundary failed
    too_close: np.ndarray  # bool per tuple: negative sub-boundary failed
    neg_ok: np.ndarray  # bool per batch image: no negative pair of it fell below T_neg
    d_null: float | None
    mu: float
    sigma: float
    t_pos: float  # class-aware nulls: the mean of the per-class T_pos
    t_neg: float  # class-aware nulls: the mean of the per-class-pair T_neg
    active: bool
    suspicion: np.ndarray | None = None  # per batch image, class-aware nulls only: 1 - p(label | x)


class InLoopScreen:
    """Fits the statistical boundary to a running window of embeddings and applies it
    to each batch's tuples. The window is part of the checkpoint."""

    def __init__(self, settings: ScreenSettings, dim: int, scale: float) -> None:
        settings.check()
        self.settings = settings
        self.scale = float(scale)
        self.window = np.zeros((0, dim), dtype=np.float32)
        self.window_labels = np.zeros(0, dtype=np.int64)
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint."""
        return {
            "window": torch.from_numpy(self.window.copy()),
            "window_labels": torch.from_numpy(self.window_labels.copy()),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state`."""
        self.window = state["window"].numpy().astype(np.float32)
        self.window_labels = state["window_labels"].numpy().astype(np.int64)

    def _extended(self, emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The window extended by the batch: its last ``window`` rows, or the whole batch where
        the batch is larger (a P x K batch of batch-hard mining can outgrow a small
        ``--screen-window``; the boundary is then fitted to the batch itself)."""
        w = max(self.settings.window, len(emb))
        return (
            np.concatenate([self.window, emb.astype(np.float32)])[-w:],
            np.concatenate([self.window_labels, labels.astype(np.int64)])[-w:],
        )

    def commit_pending(self) -> None:
        """Make the window that the last call fitted the boundary to the current one
        (called once the training step that used it is complete)."""
        if self._pending is not None:
            self.window, self.window_labels = self._pending
            self._pending = None

    def discard_pending(self) -> None:
        """Forget the window of a step that did not complete."""
        self._pending = None

    def __call__(
        self, emb: np.ndarray, labels: np.ndarray, local: np.ndarray, *, step: int, seed: int
    ) -> BatchVerdict:
        """Screen the tuples of a batch (:meth:`verdict`); with ``negatives`` off in the
        settings only the positive sub-boundary drops tuples."""
        v = self.verdict(emb, labels, local, step=step, seed=seed)
        if self.settings.negatives:
            return v
        return replace(
            v, keep=~v.too_far, too_close=np.zeros_like(v.too_close), neg_ok=np.ones_like(v.neg_ok)
        )

    def verdict(
        self, emb: np.ndarray, labels: np.ndarray, local: np.ndarray, *, step: int, seed: int
    ) -> BatchVerdict:
        """Screen the tuples of a batch with both sub-boundaries.

        ``emb`` are the batch's unique-image embeddings (detached, ``[m, d]``), ``labels``
        their class codes, ``local`` the tuples as ``[t, k]`` indices into ``emb``.
        The boundary is fitted to the window extended by the batch, so it always
        reflects the current weights; :meth:`commit_pending` keeps that window.
        """
        window, window_labels = self._extended(emb, labels)
        self._pending = (window, window_labels)
        t = local.shape[0]
        ones = np.ones(t, dtype=bool)
        if step < self.settings.warmup_steps or window.shape[0] < 2:
            return BatchVerdict(
                ones,
                ~ones,
                ~ones,
                np.ones(len(emb), bool),
                None,
                float("nan"),
                float("nan"),
                float("inf"),
                float("-inf"),
                False,
            )
        s = self.settings
        mean = window.mean(axis=0) if s.center else None
        win = st.normalize(window, center=s.center, scale=self.scale, mean=mean)
        if s.null in CLASS_NULLS:
            return self._class_aware(win, window_labels, len(emb), local, seed * 100_003 + step)
        b = st.fit_boundary(
            win,
            labels=window_labels,
            null=s.null,
            alpha_pos=s.alpha_pos,
            alpha_neg=s.alpha_neg,
            scale=self.scale,
            seed=seed * 100_003 + step,
            n_pairs=2000,
            center=s.center,
        )
        x = st.normalize(emb, center=s.center, scale=self.scale, mean=mean)
        cols = [local[:, i] for i in range(local.shape[1])]
        dist = st.tuple_distances(x, *cols, workers=1)
        keep, _ = st.apply_boundary(dist, b)
        too_far = dist["d_ap"] > b.t_pos
        too_close = self._too_close(dist, b.t_neg)
        # images whose every negative pair in this batch stayed at or above T_neg may serve as mined negatives
        neg_ok = np.ones(len(emb), bool)
        close = dist["d_an"] < b.t_neg
        neg_ok[local[close, 2]] = False
        return BatchVerdict(
            keep, too_far, too_close, neg_ok, b.d_null, b.mu, b.sigma, b.t_pos, b.t_neg, True
        )

    def _class_aware(
        self, win: np.ndarray, window_labels: np.ndarray, m: int, local: np.ndarray, seed: int
    ) -> BatchVerdict:
        """The class-aware boundary fitted to the normalised window, whose last ``m`` rows
        are the batch (:meth:`_extended` keeps at least the batch)."""
        s = self.settings
        names = window_labels.astype(str)
        fit = fit_class_boundary(
            win,
            names,
            null=s.null,
            alpha_pos=s.alpha_pos,
            alpha_neg=s.alpha_neg,
            scale=self.scale,
            seed=seed,
            pairs_per_class_pair=500,
        )
        x, batch_names = win[-m:], names[-m:]
        codes = fit.nulls.codes(batch_names)
        cols = [local[:, i] for i in range(local.shape[1])]
        dist = st.tuple_distances(x, *cols, workers=1)
        n2 = codes[local[:, 3]] if local.shape[1] > 3 else None
        too_far, too_close = class_verdicts(
            dist, fit.nulls, codes[local[:, 0]], codes[local[:, 2]], n2
        )
        neg_ok = np.ones(m, bool)
        neg_ok[local[dist["d_an"] < fit.nulls.t_neg[codes[local[:, 0]], codes[local[:, 2]]], 2]] = (
            False
        )
        t_neg = fit.nulls.t_neg[np.triu_indices(len(fit.nulls.classes), 1)]
        suspicion = fit.verdicts["suspicion"].to_numpy(np.float64)[-m:]
        return BatchVerdict(
            ~(too_far | too_close),
            too_far,
            too_close,
            neg_ok,
            None,
            float("nan"),
            float("nan"),
            float(np.mean(fit.nulls.t_pos)),
            float(np.mean(t_neg)),
            True,
            suspicion,
        )

    @staticmethod
    def _too_close(dist: dict[str, np.ndarray], t_neg: float) -> np.ndarray:
        out = dist["d_an"] < t_neg
        for key in ("d_an2", "d_nn2"):
            if key in dist:
                out |= dist[key] < t_neg
        return out


def triplet_loss_margins(
    emb: torch.Tensor, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margins: torch.Tensor
) -> torch.Tensor:
    """Mean of ``relu(d(a, p) - d(a, n) + margins)`` over the triplets, one margin per
    triplet (the class-pair margin of its anchor's and negative's classes,
    :mod:`curate.train.margins`); Euclidean distances."""
    if a.numel() == 0:
        return emb.sum() * 0.0
    return F.relu(_pair_dist(emb, a, p) - _pair_dist(emb, a, n) + margins).mean()
