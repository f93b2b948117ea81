"""How well a representation separates the labelled classes: a cross-validated linear probe.

:func:`probe` fits a multinomial logistic regression (L2, L-BFGS, features
standardised on the training folds) on ``k`` folds and scores the held-out fold: the
balanced accuracy (the mean of the per-class recalls, so a large class does not carry
it) and, per image, the out-of-fold class probabilities. Folds are grouped by
``groups`` (the dataset's ``subject``) when given, so burst shots of one person never
sit on both sides of a fold; else stratified by label. At most ``max_images`` images
(a stratified random subset) are probed; the rest are scored by the probe fitted on
all of them, so every image gets held-out probabilities.

The probabilities are then calibrated against the labels by one temperature ``T``
(``softmax(log p / T)``), the one that minimises the negative log-likelihood of the
out-of-fold probabilities of the probed images: a probe on few images and many features is
overconfident (on the 629 taiwanese-posed portraits, blendshapes: scores of 0.97 are right
0.73 of the time before). ``T`` is recorded (``temperature``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROBE_FOLDS = 5
PROBE_MAX_IMAGES = 20_000
PROBE_L2 = 1e-3  # weight decay per image on standardised features
PROBE_ITERATIONS = 200


@dataclass
class ProbeResult:
    """A cross-validated probe: its balanced accuracy, plain accuracy, out-of-fold
    probabilities (``N x K``, classes in sorted order), and how its folds were made."""

    balanced_accuracy: float
    accuracy: float
    probabilities: np.ndarray
    classes: tuple[str, ...]
    folds: int
    grouped: bool
    n_probed: int
    temperature: float = 1.0

    def to_dict(self) -> dict[str, object]:
        return {
            "balanced_accuracy": round(self.balanced_accuracy, 4),
            "accuracy": round(self.accuracy, 4),
            "folds": self.folds,
            "grouped_by": "subject" if self.grouped else None,
            "images": self.n_probed,
            "temperature": round(self.temperature, 3),
        }


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    l2: float = PROBE_L2,
    iterations: int = PROBE_ITERATIONS,
    seed: int = 0,
):
    """A fitted probe: a function from features to class probabilities (``N x K``).

    Multinomial logistic regression on standardised features, L2 penalty ``l2`` per
    weight, minimised by SciPy's L-BFGS-B from zero (deterministic; ``seed`` is unused)."""
    from scipy.optimize import minimize

    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-6
    z = (x - mean) / std
    n, d = z.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    za = np.hstack([z, np.ones((n, 1))])

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(d + 1, n_classes)
        logits = za @ w
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        value = -np.sum(onehot * np.log(p + 1e-300)) / n + l2 * np.sum(w[:d] ** 2)
        grad = za.T @ (p - onehot) / n
        grad[:d] += 2 * l2 * w[:d]
        return float(value), grad.ravel()

    res = minimize(
        loss,
        np.zeros((d + 1) * n_classes),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": iterations},
    )
    w = res.x.reshape(d + 1, n_classes)

    def predict(q: np.ndarray) -> np.ndarray:
        logits = ((q - mean) / std) @ w[:d] + w[d]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    return predict


def folds_of(codes: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    """Fold number per row: whole groups per fold (balanced by size) when ``groups`` has
    at least ``k`` of them, else stratified by class, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(codes), dtype=np.int64)
    if groups is not None:
        names, inv = np.unique(groups.astype(str), return_inverse=True)
        if len(names) >= k:
            sizes = np.bincount(inv)
            order = rng.permutation(len(names))
            order = order[np.argsort(-sizes[order], kind="stable")]
            load = np.zeros(k)
            of_group = np.empty(len(names), dtype=np.int64)
            for g in order:  # largest groups first, each to the lightest fold
                f = int(np.argmin(load))
                of_group[g] = f
                load[f] += sizes[g]
            return of_group[inv]
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        rng.shuffle(rows)
        fold[rows] = (np.arange(rows.size) + rng.integers(k)) % k
    return fold


def balanced_accuracy(probs: np.ndarray, codes: np.ndarray) -> float:
    """The mean over the classes present in ``codes`` of the share of a class's images whose
    top class is their label."""
    hit = np.asarray(probs).argmax(axis=1) == codes
    return float(np.mean([hit[codes == c].mean() for c in np.unique(codes)]))


def probe(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    folds: int = PROBE_FOLDS,
    max_images: int = PROBE_MAX_IMAGES,
    seed: int = 0,
) -> ProbeResult:
    """Cross-validated probe of features ``x`` (``N x d``) for ``labels`` (see module doc)."""
    with _one_blas_thread():
        return _probe(
            np.asarray(x, dtype=np.float64),
            np.asarray(labels).astype(str),
            groups,
            folds,
            max_images,
            seed,
        )


def _probe(
    x: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, k: int, max_images: int, seed: int
) -> ProbeResult:
    classes, codes = np.unique(labels, return_inverse=True)
    n, n_classes = len(codes), len(classes)
    rng = np.random.default_rng(seed)
    probed = np.arange(n)
    if n > max_images:
        probed = np.sort(rng.choice(n, max_images, replace=False))
    sub_groups = groups[probed] if groups is not None else None
    fold = folds_of(codes[probed], sub_groups, k, seed)
    grouped = groups is not None and len(np.unique(np.asarray(sub_groups).astype(str))) >= k
    probs = np.full((n, n_classes), 1.0 / n_classes)
    for f in range(k):
        test = probed[fold == f]
        train = probed[fold != f]
        if test.size == 0 or np.unique(codes[train]).size < 2:
            continue
        predict = fit_logistic(x[train], codes[train], n_classes, seed=seed + f)
        probs[test] = predict(x[test])
    rest = np.setdiff1d(np.arange(n), probed)
    if rest.size:
        probs[rest] = fit_logistic(x[probed], codes[probed], n_classes, seed=seed)(x[rest])
    t = fit_temperature(probs[probed], codes[probed])
    return ProbeResult(
        balanced_accuracy(probs[probed], codes[probed]),
        float(np.mean(probs[probed].argmax(axis=1) == codes[probed])),
        with_temperature(probs, t),
        tuple(map(str, classes)),
        k,
        bool(grouped),
        int(probed.size),
        t,
    )


def with_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    """``softmax(log probs / t)`` per row."""
    logp = np.log(np.clip(probs, 1e-300, None)) / t
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, codes: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood of
    ``codes`` under :func:`with_temperature` of ``probs``."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(codes))

    def nll(log_t: float) -> float:
        return float(
            -np.log(with_temperature(probs, float(np.exp(log_t)))[rows, codes] + 1e-300).mean()
        )

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def _one_blas_thread():
    """BLAS on one thread inside the block (the probe's small products lose more to
    thread hand-offs than they gain; on a busy machine many times more):
    :func:`curate.limits.one_blas_thread`, once SciPy's own BLAS is loaded."""
    import scipy.optimize  # noqa: F401  (loads SciPy's own BLAS before the limit is set)

    from curate.limits import one_blas_thread

    return one_blas_thread()
