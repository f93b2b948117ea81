"""A not-a-face score that needs no face detector.

Three cheap signals of a 48 x 48 grey thumbnail, each turned into a robust z-score
against the data set itself (median and MAD: most of any FER data set is faces), and the
score is their maximum (:func:`not_face_score`):

- ``flat``: the share of pixels whose horizontal and vertical neighbour differences are
  both below 2 grey levels. Icons, text, drawings and blank frames are flat; photos of
  faces have texture and noise.
- ``entropy``: Shannon entropy of the 256-bin grey histogram (low: few grey levels);
  enters with a minus sign.
- ``face_space``: log of the distance from the data's face space: faces, standardised
  (zero mean, unit norm, so brightness and contrast drop out) and seen at 16 x 16, lie
  close to a low-dimensional subspace. The model is a probabilistic PCA fitted on the
  images themselves (``dims`` leading axes with their variances plus one isotropic
  variance for the rest); the distance is the per-dimension negative log-likelihood
  excess, about 1 for faces. A blank image (no pattern) gets :data:`BLANK_SCORE`.

``docs/hygiene.md`` gives the AUROC on hand-labelled FER2013 non-faces, the flag rates on
FERPlus-kept and CK+ faces, and how :data:`DEFAULT_MAX_SCORE` was chosen (on one half of
the labels, split by a hash rule before tuning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.errors import CurateError
from curate.hygiene.windows import FULL, resample, standardize
from curate.limits import one_blas_thread

NOT_A_FACE = "not_a_face"
SIZE = 16
DIMS = 24
BLANK_SCORE = 1e6
DEFAULT_MAX_SCORE = 9.5  # tune-half rule, docs/hygiene.md


def face_vectors(thumbs: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` grey thumbnails -> ``(N, 256)`` standardised 16 x 16 vectors."""
    if thumbs.ndim != 3:
        raise CurateError(f"expected (N, H, W) thumbnails, got shape {thumbs.shape}")
    return standardize(resample(thumbs, [FULL], SIZE))[:, 0]


@dataclass(frozen=True)
class FaceSpace:
    """Probabilistic PCA of standardised face vectors."""

    mean: np.ndarray
    axes: np.ndarray  # (256, dims)
    variances: np.ndarray  # (dims,)
    residual_variance: float

    def score(self, x: np.ndarray) -> np.ndarray:
        """Per-dimension negative log-likelihood excess (about 1 for faces); blank rows
        (all zeros after standardising) get :data:`BLANK_SCORE`."""
        blank = ~np.any(x != 0, axis=1)
        c = x - self.mean
        y = c @ self.axes
        inside = (y * y / self.variances).sum(1)
        resid = np.maximum((c * c).sum(1) - (y * y).sum(1), 0.0)
        out = (inside + resid / self.residual_variance) / x.shape[1]
        return np.where(blank, BLANK_SCORE, out)


def fit_face_space(
    x: np.ndarray, *, dims: int = DIMS, sample: int = 20_000, seed: int = 0
) -> FaceSpace:
    """Fit :class:`FaceSpace` on a seeded sample of the non-blank rows of ``x``."""
    live = x[np.any(x != 0, axis=1)]
    if len(live) <= dims:
        raise CurateError(
            f"the not-a-face model needs more than {dims} non-blank images, got {len(live)}",
            hint="run the screen on a larger data set",
        )
    rng = np.random.default_rng(seed)
    pick = live[rng.choice(len(live), min(sample, len(live)), replace=False)].astype(np.float64)
    mean = pick.mean(0)
    with one_blas_thread():  # a 256 x 256 covariance: threads only cost (curate.limits)
        evals, evecs = np.linalg.eigh(np.cov((pick - mean).T))
    order = np.argsort(evals)[::-1]
    evals, evecs = np.maximum(evals[order], 1e-12), evecs[:, order]
    return FaceSpace(
        mean.astype(np.float32),
        evecs[:, :dims].astype(np.float32),
        evals[:dims].astype(np.float32),
        float(evals[dims:].mean()),
    )


def face_space_distance(
    thumbs: np.ndarray, *, model: FaceSpace | None = None, seed: int = 0
) -> np.ndarray:
    """:meth:`FaceSpace.score` with the model fitted on the same thumbnails (or ``model``)."""
    x = face_vectors(thumbs)
    return (model or fit_face_space(x, seed=seed)).score(x)


def flat_fraction(thumbs: np.ndarray, max_step: float = 2.0) -> np.ndarray:
    """Share of pixels whose right and lower neighbours differ by less than ``max_step``."""
    t = np.asarray(thumbs, dtype=np.float32)
    gx = np.abs(np.diff(t, axis=2))[:, :-1, :]
    gy = np.abs(np.diff(t, axis=1))[:, :, :-1]
    return ((gx < max_step) & (gy < max_step)).mean((1, 2))


def grey_entropy(thumbs: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each thumbnail's 256-bin grey histogram."""
    t = np.clip(np.rint(thumbs), 0, 255).astype(np.int64).reshape(len(thumbs), -1)
    out = np.empty(len(t))
    for i, row in enumerate(t):
        p = np.bincount(row, minlength=256)
        p = p[p > 0] / row.size
        out[i] = -(p * np.log2(p)).sum()
    return out


def robust_z(v: np.ndarray) -> np.ndarray:
    """``(v - median) / (1.4826 MAD)``; a zero MAD falls back to the standard deviation."""
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    scale = mad if mad > 0 else (v.std() or 1.0)
    return (v - med) / scale


def not_face_features(thumbs: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
    """The three signals of the module docstring, one value per thumbnail."""
    return {
        "flat": flat_fraction(thumbs),
        "entropy": grey_entropy(thumbs),
        "face_space": np.log(np.clip(face_space_distance(thumbs, seed=seed), 1e-6, None)),
    }


def not_face_score(features: dict[str, np.ndarray]) -> np.ndarray:
    """``max(z(flat), -z(entropy), z(face_space))`` with robust z over the data set."""
    return np.maximum.reduce(
        [
            robust_z(features["flat"]),
            -robust_z(features["entropy"]),
            robust_z(features["face_space"]),
        ]
    )
