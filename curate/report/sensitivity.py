"""Kept share as a function of alpha_pos and alpha_neg, without re-running the screen.

The screen's boundary is T_pos = mu + z(1 - alpha_pos) sigma and
T_neg = mu - z(1 - alpha_neg) sigma. A tuple is kept when its anchor-positive
distance is at most T_pos, every negative pair distance is at least T_neg, and no
other screen rejected it. Those three facts are all the grid needs: one pass over
the tuples bins them by threshold, and cumulative sums give every cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from curate import screens
from curate.stats.statistical import upper_quantile
from curate.tuples import ROLES

DEFAULT_ALPHAS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


_Z = np.vectorize(upper_quantile, otypes=[float])  # z(1 - alpha), as the boundary computes it


def t_pos(mu: float, sigma: float, alpha: float | np.ndarray) -> np.ndarray:
    """Upper sub-boundary: mu + z(1 - alpha) * sigma (:func:`curate.stats.statistical.thresholds`)."""
    return mu + _Z(np.asarray(alpha, dtype=float)) * sigma


def t_neg(mu: float, sigma: float, alpha: float | np.ndarray) -> np.ndarray:
    """Lower sub-boundary: mu - z(1 - alpha) * sigma (:func:`curate.stats.statistical.thresholds`)."""
    return mu - _Z(np.asarray(alpha, dtype=float)) * sigma


@dataclass
class Sensitivity:
    """Kept share on a grid of alphas; rows alpha_pos, columns alpha_neg."""

    alphas_pos: np.ndarray
    alphas_neg: np.ndarray
    kept_share: np.ndarray  # shape (len(alphas_pos), len(alphas_neg))
    n_tuples: int
    n_other_rejected: int  # tuples rejected by other screens, whatever alpha

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.kept_share,
            index=pd.Index(self.alphas_pos, name="alpha_pos"),
            columns=pd.Index(self.alphas_neg, name="alpha_neg"),
        )


def min_negative_distance(scores: pd.DataFrame) -> np.ndarray:
    """Per tuple, the smallest distance among the pairs compared with T_neg."""
    cols = [c for c in ("d_an", "d_an2", "d_nn2") if c in scores.columns]
    arr = scores[cols].to_numpy(dtype=float)
    # A missing distance never rejects: treat it as +inf.
    return np.where(np.isnan(arr), np.inf, arr).min(axis=1)


def kept_share_grid(
    d_ap: np.ndarray,
    d_neg_min: np.ndarray,
    other_ok: np.ndarray,
    mu: float,
    sigma: float,
    alphas_pos: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    alphas_neg: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
) -> np.ndarray:
    """Share of tuples kept for every (alpha_pos, alpha_neg) pair.

    ``other_ok`` is false for tuples another screen (faces, ...) rejected; they
    stay rejected whatever alpha is. Cost: O(n log k) for n tuples and k alphas.
    """
    d_ap = np.asarray(d_ap, dtype=float)
    d_neg_min = np.asarray(d_neg_min, dtype=float)
    other_ok = np.asarray(other_ok, dtype=bool)
    n = d_ap.size
    ap = np.asarray(alphas_pos, dtype=float)
    an = np.asarray(alphas_neg, dtype=float)
    if n == 0:
        return np.zeros((ap.size, an.size))
    tp = t_pos(mu, sigma, ap)
    tn = t_neg(mu, sigma, an)
    op, on = np.argsort(tp), np.argsort(tn)
    tp_s, tn_s = tp[op], tn[on]
    # kept at tp_s[k] iff d_ap <= tp_s[k] iff k >= i, with i = #thresholds below d_ap
    i = np.searchsorted(tp_s, d_ap[other_ok], side="left")
    # kept at tn_s[l] iff d >= tn_s[l] iff l < j, with j = #thresholds at or below d
    j = np.searchsorted(tn_s, d_neg_min[other_ok], side="right")
    p1, n1 = tp_s.size + 1, tn_s.size + 1
    hist = np.bincount(i * n1 + j, minlength=p1 * n1).reshape(p1, n1)
    # kept(k, l) = sum over i <= k and j > l
    cum = np.cumsum(hist, axis=0)[:-1]  # rows k = 0..P-1: i <= k
    kept = np.cumsum(cum[:, ::-1], axis=1)[:, ::-1][:, 1:]  # columns l: j >= l + 1
    grid = np.empty((ap.size, an.size))
    grid[np.ix_(op, on)] = kept / n
    return grid


def sensitivity(
    scores: pd.DataFrame,
    flags: pd.DataFrame,
    mu: float,
    sigma: float,
    alphas_pos: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    alphas_neg: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
) -> Sensitivity:
    """The kept-share grid for a screen's scores, with every other screen's verdicts held fixed."""
    boundary_codes = set(screens.get("boundary").codes)
    other = [c for c in flags.columns if c not in boundary_codes]
    other_ok = ~flags[other].to_numpy().any(axis=1) if other else np.ones(len(scores), bool)
    grid = kept_share_grid(
        scores["d_ap"].to_numpy(dtype=float),
        min_negative_distance(scores),
        other_ok,
        mu,
        sigma,
        alphas_pos,
        alphas_neg,
    )
    return Sensitivity(
        np.asarray(alphas_pos, float),
        np.asarray(alphas_neg, float),
        grid,
        len(scores),
        int((~other_ok).sum()),
    )


def sensitivity_z(
    scores: pd.DataFrame,
    flags: pd.DataFrame,
    alphas_pos: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    alphas_neg: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
) -> Sensitivity:
    """The kept-share grid from each tuple's standardised distances ``z_ap`` and ``z_neg``
    (toward rejection, against the tuple's own class or class-pair null): a tuple is kept
    at (alpha_pos, alpha_neg) when ``z_ap <= z(1 - alpha_pos)`` and ``z_neg <= z(1 - alpha_neg)``,
    which is :func:`kept_share_grid` with ``mu = 0``, ``sigma = 1``."""
    boundary_codes = set(screens.get("boundary").codes)
    other = [c for c in flags.columns if c not in boundary_codes]
    other_ok = ~flags[other].to_numpy().any(axis=1) if other else np.ones(len(scores), bool)
    z_ap = scores["z_ap"].to_numpy(dtype=float)
    z_neg = scores["z_neg"].to_numpy(dtype=float)
    grid = kept_share_grid(z_ap, -z_neg, other_ok, 0.0, 1.0, alphas_pos, alphas_neg)
    return Sensitivity(
        np.asarray(alphas_pos, float),
        np.asarray(alphas_neg, float),
        grid,
        len(scores),
        int((~other_ok).sum()),
    )


YAW_GRID: tuple[float, ...] = (15, 20, 25, 30, 35, 40, 45, 60)
OCCLUSION_GRID: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class FaceSensitivity:
    """Images the face screens reject, and tuples that hold one, at other thresholds."""

    rows: list[dict[str, float | str]]  # setting, max_yaw, max_occlusion, images, tuples
    n_images: int
    n_tuples: int


def face_sensitivity(
    faces: pd.DataFrame,
    tuples: pd.DataFrame | None,
    *,
    max_yaw: float,
    max_occlusion: float,
    no_face: str,
) -> FaceSensitivity:
    """Share of images the face screens reject (by the screen's own rule,
    :func:`curate.screens.faces.face_verdicts`) and share of ``tuples`` (the build's, before
    any redraw) holding at least one such image, when one threshold moves and the other stays."""
    from curate.screens.faces import face_verdicts

    ids = faces["image_id"].to_numpy(np.int64)
    members = [c for c in ROLES if tuples is not None and c in tuples.columns]
    rows = []
    settings = sorted({(float(y), float(max_occlusion)) for y in (*YAW_GRID, max_yaw)}) + sorted(
        {(float(max_yaw), float(o)) for o in (*OCCLUSION_GRID, max_occlusion)}
        - {(max_yaw, max_occlusion)}
    )
    for y, o in settings:
        bad = face_verdicts(faces, max_yaw=y, max_occlusion=o, no_face=no_face)[
            "face_reject"
        ].to_numpy(bool)
        row: dict[str, float | str] = {
            "max_yaw": y,
            "max_occlusion": o,
            "images": float(bad.mean()) if len(bad) else 0.0,
        }
        if members:
            assert tuples is not None  # members come from its columns
            flagged = ids[bad]
            hit = np.logical_or.reduce(
                [np.isin(tuples[c].to_numpy(np.int64), flagged) for c in members]
            )
            row["tuples"] = float(hit.mean()) if len(hit) else 0.0
        rows.append(row)
    return FaceSensitivity(rows, len(faces), 0 if tuples is None else len(tuples))


def alpha_grid(nominal: Sequence[float | None]) -> tuple[float, ...]:
    """The default alphas plus the run's own alphas, sorted."""
    extra = [float(a) for a in nominal if a is not None and 0 < float(a) < 1]
    return tuple(sorted(set(DEFAULT_ALPHAS) | set(extra)))
