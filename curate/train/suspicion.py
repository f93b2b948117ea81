"""The images' label suspicion during fine-tuning: which images rank as the most suspect
(``--exclude-suspects``: :func:`suspicion_cut`, :func:`suspect_images`), the run's
``image_suspicion.parquet`` (:func:`image_suspicion_table`) and what the run left out of
each label (:func:`left_out_by_label`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from curate.train.config import FinetuneConfig
from curate.train.data import TrainingData


def suspicion_cut(
    history: np.ndarray,
    share: float,
    min_visits: int,
    groups: np.ndarray | None = None,
    cap: float | None = None,
) -> float | np.ndarray:
    """The mean suspicion at or above which an image is among the ``share`` most suspect of the
    images screened at least ``min_visits`` times (``inf`` when none has been).

    ``history`` is ``[n, 2]``: sum of label suspicion, screened visits, per image. With
    ``groups`` (``[n]``, e.g. label codes) the rank is taken within each group and the result
    is each image's cut, ``[n]``. With ``groups`` and ``cap`` the rank is over all images, but no
    group loses more than ``cap`` of its screened images: each image's cut is the higher of the
    overall cut and its group's cut at ``cap`` (``--suspect-class-cap``)."""
    if groups is not None:
        floor = -math.inf if cap is None else float(suspicion_cut(history, share, min_visits))
        cuts = np.full(len(history), math.inf)
        for g in np.unique(groups):
            at = groups == g
            own = suspicion_cut(history[at], share if cap is None else cap, min_visits)
            cuts[at] = max(floor, float(own))
        return cuts
    visits = history[:, 1]
    ok = visits >= min_visits
    if not ok.any():
        return math.inf
    mean = history[ok, 0] / visits[ok]
    k = max(1, int(round(share * mean.size)))
    return float(np.partition(mean, mean.size - k)[mean.size - k])


def config_cut(
    cfg: FinetuneConfig, history: np.ndarray, label_codes: np.ndarray
) -> float | np.ndarray:
    """:func:`suspicion_cut` with ``cfg``'s share, visits and rank (within each label,
    ``--suspect-per-class``; over all images, capped per label with ``--suspect-class-cap``)."""
    by_label = cfg.suspect_per_class or cfg.suspect_class_cap is not None  # never both (check)
    return suspicion_cut(
        history,
        cfg.suspect_share,
        cfg.suspect_min_visits,
        label_codes if by_label else None,
        cfg.suspect_class_cap,
    )


def suspect_images(
    history: np.ndarray, batch: np.ndarray | None, cut: float | np.ndarray, min_visits: int
) -> np.ndarray:
    """Bool per image: screened at least ``min_visits`` times and its mean suspicion is at least
    ``cut`` (one value, or one per image).

    ``history`` is ``[n, 2]`` (sum of suspicion, visits) before this step; ``batch`` (``[n]``,
    ``nan`` = not scored) adds this step's suspicion, so an image can be excluded at the very
    visit that makes its record long enough.
    """
    total, visits = history[:, 0].copy(), history[:, 1].copy()
    if batch is not None:
        seen = np.isfinite(batch)
        total[seen] += batch[seen]
        visits[seen] += 1
    return (visits >= min_visits) & (total >= cut * np.maximum(visits, 1))


def with_prior(history: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``history`` (``[n, 2]``: sum of suspicion, visits) with each screened image's mean score
    replaced by the mean of two percentile ranks among the screened images: its mean score's
    and its ``prior``'s (``[n]``, ``--suspect-prior``; an image without one, ``nan``, takes the
    median prior). Rows never screened are left as they are. Ranks put the running score and a
    prior of another scale on one footing, as ``--suspect-score rank`` does within a batch."""
    from scipy.stats import rankdata

    out = np.array(history, dtype=np.float64, copy=True)
    seen = out[:, 1] > 0
    n = int(seen.sum())
    if not n:
        return out
    finite = np.isfinite(prior)
    p = np.where(finite, prior, np.median(prior[finite]) if finite.any() else 0.0)[seen]
    mean = out[seen, 0] / out[seen, 1]
    out[seen, 0] = (rankdata(mean) + rankdata(p)) / (2 * n) * out[seen, 1]
    return out


def class_codes(data: TrainingData, ids: np.ndarray) -> np.ndarray:
    """Class index of each image of ``ids`` (-1: a label outside the classes)."""
    class_index = {c: i for i, c in enumerate(data.classes)}
    return (
        data.images.loc[ids, "label"]
        .astype(str)
        .map(class_index)
        .fillna(-1)
        .to_numpy(dtype=np.int64)
    )


def final_suspects(
    suspicion: np.ndarray,
    cfg: FinetuneConfig,
    label_codes: np.ndarray,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """The images ``--exclude-suspects`` leaves out at the end of the run (``prior``: the
    ``--suspect-prior`` per image, ranked with the running score by :func:`with_prior`)."""
    if not cfg.exclude_suspects:
        return np.zeros(len(suspicion), bool)
    if prior is not None:
        suspicion = with_prior(suspicion, prior)
    cut = config_cut(cfg, suspicion, label_codes)
    return suspect_images(suspicion, None, cut, cfg.suspect_min_visits)


def image_suspicion_table(
    suspicion: np.ndarray,
    ids: np.ndarray,
    data: TrainingData,
    cfg: FinetuneConfig,
    prior: np.ndarray | None = None,
) -> pd.DataFrame:
    """``image_suspicion.parquet``: per training image, its in-loop label suspicion record
    (with ``prior``, the ``--suspect-prior`` per image, as ``prior_suspicion``)."""
    visits = suspicion[:, 1]
    seen = visits > 0
    mean = np.divide(suspicion[:, 0], visits, out=np.full(len(visits), np.nan), where=seen)
    excluded = final_suspects(suspicion, cfg, class_codes(data, ids), prior)
    table = pd.DataFrame(
        {
            "image_id": ids[seen],
            "label": data.images.loc[ids[seen], "label"].astype(str).to_numpy(),
            "visits": visits[seen].astype(np.int64),
            "mean_suspicion": mean[seen],
            "excluded": excluded[seen],
        }
    )
    if prior is not None:
        table["prior_suspicion"] = np.asarray(prior, np.float64)[seen]
    return table.sort_values(["mean_suspicion", "image_id"], ascending=[False, True]).reset_index(
        drop=True
    )


LEFT_OUT_BY_LABEL_COLUMNS = [
    "label",
    "images",
    "face_rejected",
    "face_rejected_share",
    "suppressed",
    "suppressed_share",
]


def left_out_by_label(
    labels: np.ndarray, *, face_rejected: np.ndarray, suppressed: np.ndarray
) -> pd.DataFrame:
    """What a run left out of each label, so that a bias shows at once (suppression that
    takes half of one expression and none of another, say): one row per label in sorted
    order, then ``all``.

    ``labels``: the label of each training image (the images the run could train on
    before the face screen); ``face_rejected``, ``suppressed``: per image, whether the face
    screen rejected it (with ``--face-rejects classify`` kept for the classification loss
    only) and whether outlier suppression left it out at the end of the run. Columns
    :data:`LEFT_OUT_BY_LABEL_COLUMNS`; the shares are of the label's ``images``.
    """
    df = pd.DataFrame(
        {
            "label": pd.Series(labels, dtype="string").fillna("(none)").to_numpy(),
            "face_rejected": np.asarray(face_rejected, bool),
            "suppressed": np.asarray(suppressed, bool),
        }
    )
    rows = []
    for label, g in [*sorted(df.groupby("label", sort=True)), ("all", df)]:
        row: dict[str, object] = {"label": str(label), "images": len(g)}
        for col in ("face_rejected", "suppressed"):
            row[col] = int(g[col].sum())
            row[f"{col}_share"] = float(g[col].mean()) if len(g) else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=LEFT_OUT_BY_LABEL_COLUMNS)
