"""Choose alpha from numbers: inject known label noise into a copy of the labels and measure
how precisely each screen finds it at several significance levels.

Two kinds of noise, each flipping a share ``rate`` of the images:

- ``symmetric``: the new label is drawn uniformly from the other classes;
- ``class``: class-dependent (pair-flip) noise, the new label is the class whose mean
  embedding is closest to the image's class mean: the confusion a real annotator makes.

For each alpha the screens are refitted on the noisy copy: the image screen (label
posterior below alpha, :func:`curate.stats.label_model.label_reject`) and the class-aware
tuple boundary at ``alpha_pos = alpha_neg = alpha`` on one triplet per anchor
(``positive_too_far``: precision of containing a flipped anchor or positive;
``negative_too_close``: a flipped anchor or negative; alphas below 0.5 only). Real datasets carry their own
noise, which counts as clean here, so precision is a lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.stats.label_model import (
    LABEL_SUSPECT,
    PRIOR_FLOOR,
    encode_labels,
    label_posteriors,
    label_reject,
)
from curate.stats.nulls import class_verdicts, fit_class_nulls
from curate.stats.statistical import tuple_distances
from curate.tuples import sample_tuples

NOISE_KINDS = ("symmetric", "class")
ALPHAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
SIMULATION_COLUMNS = (
    "noise",
    "rate",
    "alpha",
    "screen",
    "n",
    "rejected",
    "share",
    "precision",
    "recall",
    "base_rate",
)


def inject_noise(
    labels: np.ndarray | pd.Series | list[Any],
    emb: np.ndarray,
    *,
    kind: str,
    rate: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy copy of ``labels`` (str array) and the bool mask of the rows that were flipped."""
    if kind not in NOISE_KINDS:
        raise CurateError(
            f"unknown noise kind {kind!r}", hint=f"use one of {', '.join(NOISE_KINDS)}"
        )
    if not 0 < rate < 1:
        raise CurateError(f"noise rate must be strictly between 0 and 1, got {rate!r}")
    x = np.asarray(emb, dtype=np.float64)
    codes, classes = encode_labels(labels, x.shape[0])
    k = len(classes)
    if k < 2:
        raise CurateError("noise injection needs at least two classes")
    rng = np.random.default_rng(seed)
    flip = rng.random(codes.size) < rate
    new = codes.copy()
    if kind == "symmetric":
        shift = rng.integers(1, k, codes.size)  # uniform over the other classes
        new[flip] = (codes[flip] + shift[flip]) % k
    else:
        means = np.stack([x[codes == c].mean(axis=0) for c in range(k)])
        sim = means @ means.T
        np.fill_diagonal(sim, -np.inf)
        new[flip] = np.argmax(sim, axis=1)[codes[flip]]
    return np.asarray(classes, dtype=object)[new].astype(str), flip


def simulate_alpha(
    emb: np.ndarray,
    labels: np.ndarray | pd.Series | list[Any],
    *,
    alphas: Sequence[float] = ALPHAS,
    noise: Sequence[str] = NOISE_KINDS,
    rate: float = 0.2,
    null: str = "class_empirical",
    scale: float = 1.0,
    prior_floor: float = PRIOR_FLOOR,
    seed: int = 0,
) -> pd.DataFrame:
    """Precision and recall of every screen's rejections for injected noise, per alpha.

    ``emb`` are normalised embeddings (as for the boundary), ``labels`` their labels;
    ``prior_floor`` is passed to :func:`label_posteriors`.
    Returns one row per noise kind, alpha and screen, columns :data:`SIMULATION_COLUMNS`.
    """
    x = np.asarray(emb)
    if not alphas or any(not 0 < a < 1 for a in alphas):
        raise CurateError(f"alphas must lie strictly between 0 and 1, got {list(alphas)}")
    rows: list[dict[str, Any]] = []
    for kind in noise:
        noisy, flipped = inject_noise(labels, x, kind=kind, rate=rate, seed=seed)
        verdicts, _ = label_posteriors(x, noisy, prior_floor=prior_floor)
        p = verdicts["label_posterior"].to_numpy(np.float64)
        weights = np.sqrt(np.where(np.isnan(p), 1.0, p))
        images = pd.DataFrame(
            {
                "image_id": np.arange(len(noisy)),
                "label": noisy,
                "split": None,
                "subject": None,
                "status": "ok",
            }
        )
        tuples, _ = sample_tuples(images, seed=seed)
        a, pos, neg = (tuples[c].to_numpy(np.int64) for c in ("anchor", "positive", "negative"))
        dist = tuple_distances(x, a, pos, neg)
        bad_ap, bad_an = flipped[a] | flipped[pos], flipped[a] | flipped[neg]
        for alpha in alphas:
            base = {"noise": kind, "rate": rate, "alpha": float(alpha)}
            rows.append(
                {**base, "screen": LABEL_SUSPECT, **_pr(label_reject(verdicts, alpha), flipped)}
            )
            if alpha >= 0.5:  # not a sub-boundary: the image screen only
                continue
            nulls = fit_class_nulls(
                x,
                noisy,
                method=null,
                weights=weights,
                alpha_pos=alpha,
                alpha_neg=alpha,
                scale=scale,
                seed=seed,
            )
            codes = nulls.codes(noisy)
            far, close = class_verdicts(dist, nulls, codes[a], codes[neg])
            rows.append({**base, "screen": "positive_too_far", **_pr(far, bad_ap)})
            rows.append({**base, "screen": "negative_too_close", **_pr(close, bad_an)})
    return pd.DataFrame(rows, columns=list(SIMULATION_COLUMNS))


def _pr(rejected: np.ndarray, bad: np.ndarray) -> dict[str, Any]:
    n_rej = int(rejected.sum())
    return {
        "n": int(rejected.size),
        "rejected": n_rej,
        "share": n_rej / max(rejected.size, 1),
        "precision": float(bad[rejected].mean()) if n_rej else float("nan"),
        "recall": float(rejected[bad].mean()) if bad.any() else float("nan"),
        "base_rate": float(bad.mean()),
    }
