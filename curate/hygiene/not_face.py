"""A not-a-face score that needs no face detector: distance from the data's face space.

Faces, once standardised (zero mean, unit norm, so brightness and contrast drop out) and
seen at 16 x 16, lie close to a low-dimensional subspace; text, icons, drawings, blank
frames and scenes do not. The model is a probabilistic PCA fitted on the images
themselves (most of any FER data set is faces): ``dims`` leading axes with their
variances, plus one isotropic variance for the rest. The score is the per-dimension
negative log-likelihood excess (Mahalanobis distance inside the subspace plus residual
energy over the residual variance, divided by the dimension), so 1 is typical and large
is unlike the faces. A blank image (no pattern) scores :data:`BLANK_SCORE`.

``docs/hygiene.md`` gives the AUROC on hand-labelled FER2013 non-faces, the flag rates on
FERPlus-kept and CK+ faces, and how :data:`DEFAULT_MAX_SCORE` was chosen (on one half of
the labels, split by a hash rule before tuning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.errors import CurateError
from curate.hygiene.windows import FULL, resample, standardize

NOT_A_FACE = "not_a_face"
SIZE = 16
DIMS = 24
BLANK_SCORE = 1e6
DEFAULT_MAX_SCORE = 3.0


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


def fit_face_space(x: np.ndarray, *, dims: int = DIMS, sample: int = 20_000,
                   seed: int = 0) -> FaceSpace:
    """Fit :class:`FaceSpace` on a seeded sample of the non-blank rows of ``x``."""
    live = x[np.any(x != 0, axis=1)]
    if len(live) <= dims:
        raise CurateError(f"the not-a-face model needs more than {dims} non-blank images, "
                          f"got {len(live)}", hint="run the screen on a larger data set")
    rng = np.random.default_rng(seed)
    pick = live[rng.choice(len(live), min(sample, len(live)), replace=False)].astype(np.float64)
    mean = pick.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((pick - mean).T))
    order = np.argsort(evals)[::-1]
    evals, evecs = np.maximum(evals[order], 1e-12), evecs[:, order]
    return FaceSpace(mean.astype(np.float32), evecs[:, :dims].astype(np.float32),
                     evals[:dims].astype(np.float32), float(evals[dims:].mean()))


def not_face_scores(thumbs: np.ndarray, *, model: FaceSpace | None = None, seed: int = 0) -> np.ndarray:
    """Scores of :class:`FaceSpace` fitted on the same thumbnails (or on ``model``)."""
    x = face_vectors(thumbs)
    return (model or fit_face_space(x, seed=seed)).score(x)
