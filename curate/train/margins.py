"""Class-pair margins of the triplet loss (``curate finetune --margin-mode``).

One global ``--margin`` asks every pair of expressions to be equally far apart. Xie et al.
(IEEE TCSVT 2022) give each class pair its own margin, either one per unordered pair
(``class-pair``) or one per ordered pair (``ordered-pair``: anchor class first, so
fear-to-surprise need not equal surprise-to-fear).

Here the margins are ADAPTED, not learnt, from the statistics the class-aware boundary
already fits (:func:`curate.stats.nulls.fit_class_nulls`, ``class_empirical``, image
weights ``sqrt(p(label | x))`` so suspect labels weigh less) on a running window of the
network's own embeddings, refitted every ``refit_every`` steps: ``mu[i, i]``/``sigma[i, i]``
describe the distance between two images of class ``i``, ``mu[i, j]`` between images of
classes ``i`` and ``j``. The separation of the ordered pair ``i -> j`` (anchor class ``i``)
is ``s = (mu[i, j] - mu[i, i]) / sigma[i, i]``: how many of the anchor class's own spreads an
image of ``j`` lies beyond an image of ``i``. The unordered separation uses the mean of both
classes' same-class medians and their pooled spread. A pair separated less than the average
pair gets a larger margin, one separated more a smaller one:
``margin_ij = margin * clip(mean(s) / s_ij, 0.5, 2)`` (``2 * margin`` when ``s_ij <= 0``;
``margin`` everywhere while the mean separation is not positive, e.g. at random init).
Why adapted rather than learnt: a learnt margin is pulled to zero by the loss it sits in
(the loss falls as the margin falls) unless it is regularised by yet another weight; the
fitted nulls are measured on the current embedding, so confusable pairs (fear and
surprise) are asked to separate more than the ones the network already separates (happy
and sad), with no new parameter.
"""

from __future__ import annotations

import numpy as np
import torch

from curate.stats import statistical as st
from curate.stats.nulls import fit_class_nulls
from curate.train.config import MARGIN_MODES

RATIO_CLIP = (0.5, 2.0)


def class_pair_margins(mu: np.ndarray, sigma: np.ndarray, margin: float, mode: str) -> np.ndarray:
    """``K x K`` margins (row: anchor class, column: negative class; diagonal unused, set to
    ``margin``) from the fitted nulls' ``mu``/``sigma`` (``K x K``, diagonal: same class)."""
    k = mu.shape[0]
    out = np.full((k, k), float(margin))
    if mode == "global" or k < 2:
        return out
    same_mu, same_sd = np.diag(mu), np.diag(sigma)
    if mode == "ordered-pair":
        s = (mu - same_mu[:, None]) / np.maximum(same_sd[:, None], 1e-12)
    elif mode == "class-pair":
        centre = (same_mu[:, None] + same_mu[None, :]) / 2
        spread = np.sqrt((same_sd[:, None] ** 2 + same_sd[None, :] ** 2) / 2)
        s = (mu - centre) / np.maximum(spread, 1e-12)
    else:
        raise ValueError(f"unknown margin mode {mode!r}")
    off = ~np.eye(k, dtype=bool)
    mean = float(np.mean(s[off]))
    if not np.isfinite(mean) or mean <= 0:
        return out
    lo, hi = RATIO_CLIP
    ratio = np.where(s > 0, mean / np.maximum(s, 1e-12), hi)
    out[off] = margin * np.clip(ratio, lo, hi)[off]
    return out


class PairMargins:
    """The class-pair margins, refitted to a running window of the network's embeddings.
    The window and margins are part of the checkpoint."""

    def __init__(
        self,
        mode: str,
        margin: float,
        n_classes: int,
        dim: int,
        *,
        scale: float,
        center: bool = True,
        window: int = 2048,
        refit_every: int = 10,
        seed: int = 0,
    ) -> None:
        if mode not in MARGIN_MODES:
            raise ValueError(f"unknown margin mode {mode!r}")
        self.mode, self.margin, self.k = mode, float(margin), int(n_classes)
        self.scale, self.center, self.size, self.refit_every, self.seed = (
            scale,
            center,
            window,
            refit_every,
            seed,
        )
        self.window = np.zeros((0, dim), dtype=np.float32)
        self.window_labels = np.zeros(0, dtype=np.int64)
        self.margins = np.full((self.k, self.k), self.margin)
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "window": torch.from_numpy(self.window.copy()),
            "window_labels": torch.from_numpy(self.window_labels.copy()),
            "margins": torch.from_numpy(self.margins.copy()),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.window = state["window"].numpy().astype(np.float32)
        self.window_labels = state["window_labels"].numpy().astype(np.int64)
        self.margins = state["margins"].numpy().astype(np.float64)

    def update(self, emb: np.ndarray, labels: np.ndarray, step: int) -> np.ndarray:
        """The margins of this step: the window extended by the batch, refitted every
        ``refit_every`` steps. :meth:`commit_pending` keeps the new window and margins
        once the step is complete (an interrupted step leaves the state unchanged)."""
        if self.mode == "global":
            return self.margins
        window = np.concatenate([self.window, emb.astype(np.float32)])[-self.size :]
        window_labels = np.concatenate([self.window_labels, labels.astype(np.int64)])[-self.size :]
        margins = self.margins
        if step % self.refit_every == 0 and len(np.unique(window_labels)) == self.k:
            x = st.normalize(window, center=self.center, scale=self.scale)
            nulls = fit_class_nulls(
                x,
                window_labels.astype(str),
                method="class_empirical",
                scale=self.scale,
                pairs_per_class_pair=300,
                seed=self.seed * 100_003 + step,
            )
            order = np.argsort(
                np.array(nulls.classes).astype(np.int64)
            )  # codes as strings: back to code order
            mu, sigma = nulls.mu[np.ix_(order, order)], nulls.sigma[np.ix_(order, order)]
            margins = class_pair_margins(mu, sigma, self.margin, self.mode)
        self._pending = (window, window_labels, margins)
        return margins

    def commit_pending(self) -> None:
        if self._pending is not None:
            self.window, self.window_labels, self.margins = self._pending
            self._pending = None

    def discard_pending(self) -> None:
        self._pending = None


def margin_table(margins: np.ndarray, classes: list[str], epoch: int) -> list[dict[str, object]]:
    """Rows of ``class_pair_margins.parquet`` for one epoch: every ordered class pair."""
    k = len(classes)
    return [
        {
            "epoch": int(epoch),
            "anchor_class": classes[i],
            "negative_class": classes[j],
            "margin": float(margins[i, j]),
        }
        for i in range(k)
        for j in range(k)
        if i != j
    ]
