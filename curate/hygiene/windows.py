"""Exact area resampling of rectangular windows of grey images.

A window is ``(scale, fx, fy)``: a square of side ``scale`` (fraction of the image side)
whose top-left corner sits at ``fx * (1 - scale)``, ``fy * (1 - scale)`` (fractions), so
``fx = fy = 0.5`` is the centred window and ``(1.0, 0.5, 0.5)`` the whole image. Each output
cell is the mean of the input pixels it covers (partial pixels weighted by overlap), so
resampling is linear, exact and separable: ``out = Ry @ image @ Rx.T``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from curate.errors import CurateError

Window = tuple[float, float, float]
FULL: Window = (1.0, 0.5, 0.5)


def area_matrix(n_in: int, start: float, length: float, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights: output cell ``k`` averages ``[start + k L/n, start + (k+1) L/n)``.

    The interval is clipped to ``[0, n_in)``; every row sums to one.
    """
    if n_in < 1 or n_out < 1 or length <= 0:
        raise CurateError(
            f"area_matrix needs positive sizes, got n_in={n_in}, n_out={n_out}, length={length}"
        )
    edges = start + np.arange(n_out + 1) * (length / n_out)
    lo = np.clip(edges[:-1], 0, n_in)
    hi = np.clip(edges[1:], 0, n_in)
    pix = np.arange(n_in)
    overlap = np.minimum(hi[:, None], pix[None, :] + 1) - np.maximum(lo[:, None], pix[None, :])
    overlap = np.clip(overlap, 0.0, None)
    total = overlap.sum(1, keepdims=True)
    if np.any(total <= 0):
        raise CurateError(
            f"window [{start}, {start + length}) lies outside an image of {n_in} pixels"
        )
    return (overlap / total).astype(np.float32)


def area_matrices(n_in: int, starts: np.ndarray, lengths: np.ndarray, n_out: int) -> np.ndarray:
    """Vectorised :func:`area_matrix`: ``(K, n_out, n_in)`` for ``K`` (start, length) pairs."""
    starts = np.asarray(starts, np.float64)[:, None]
    lengths = np.asarray(lengths, np.float64)[:, None]
    edges = starts + np.arange(n_out + 1)[None, :] * (lengths / n_out)  # (K, n_out + 1)
    lo = np.clip(edges[:, :-1], 0, n_in)[..., None]
    hi = np.clip(edges[:, 1:], 0, n_in)[..., None]
    pix = np.arange(n_in)[None, None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return (overlap / np.maximum(overlap.sum(2, keepdims=True), 1e-12)).astype(np.float32)


@lru_cache(maxsize=4096)
def window_operators(
    height: int, width: int, window: Window, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(Ry, Rx)`` such that ``Ry @ image @ Rx.T`` is the window resampled to ``size x size``
    (cached: the same few windows are resampled again and again; do not modify them)."""
    scale, fx, fy = window
    if not 0 < scale <= 1 or not 0 <= fx <= 1 or not 0 <= fy <= 1:
        raise CurateError(f"window {window} must have 0 < scale <= 1 and 0 <= fx, fy <= 1")
    ry = area_matrix(height, (1 - scale) * height * fy, scale * height, size)
    rx = area_matrix(width, (1 - scale) * width * fx, scale * width, size)
    return ry, rx


def resample(images: np.ndarray, windows: Sequence[Window], size: int) -> np.ndarray:
    """``(N, H, W)`` images -> ``(N, len(windows), size * size)`` float32 window pixels.

    Windows that share a column range share one product ``image @ Rx.T``; their row
    operators are stacked into one matrix product.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise CurateError(f"expected a stack of grey images (N, H, W), got shape {images.shape}")
    n, h, w = images.shape
    out = np.empty((n, len(windows), size * size), dtype=np.float32)
    by_columns: dict[tuple[float, float], list[int]] = {}
    for j, (scale, fx, _) in enumerate(windows):
        by_columns.setdefault((scale, fx), []).append(j)
    for (scale, fx), members in by_columns.items():
        _, rx = window_operators(h, w, (scale, fx, 0.0), size)
        cols = images @ rx.T  # (N, H, size)
        rys = np.concatenate([window_operators(h, w, windows[j], size)[0] for j in members])
        rows = (rys @ cols).reshape(n, len(members), size, size)  # (N, k, size, size)
        out[:, members] = rows.reshape(n, len(members), size * size)
    return out


def standardize(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Zero mean, unit norm along the last axis (brightness and contrast drop out).

    A constant row stays all zeros (it has no pattern to compare).
    """
    x = np.asarray(x, dtype=np.float32)
    x = x - x.mean(-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(norm > eps, x / np.maximum(norm, eps), 0.0).astype(np.float32)


def thumbnail(gray: np.ndarray, size: int = 48) -> np.ndarray:
    """Any grey image (H, W) -> ``size x size`` float32 by area resampling (aspect not kept)."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise CurateError(f"expected a 2-D grey image, got shape {gray.shape}")
    h, w = gray.shape
    if (h, w) == (size, size):
        return gray.copy()  # the area operator of a side onto itself is the identity
    return _whole(h, size) @ gray @ _whole(w, size).T


@lru_cache(maxsize=256)
def _whole(n_in: int, n_out: int) -> np.ndarray:
    return area_matrix(n_in, 0, n_in, n_out)


def mirror_grid(x: np.ndarray, size: int) -> np.ndarray:
    """Left-right mirror of flattened ``size x size`` grids along the last axis."""
    return x.reshape(*x.shape[:-1], size, size)[..., ::-1].reshape(x.shape)
