"""Tuples: sample triplets and quadruplets from the validated images table.

Sampling is vectorised with NumPy. Within a split, the eligible images are sorted so
that each class (and, for identity-aware sampling, each subject within a class, and
each class within a subject) is a contiguous block; "another image of my class" and
"an image of another class" are then one uniform integer draw plus a shift past the
excluded block. No Python loop runs per tuple.

Rules (tested in ``tests/test_tuples.py``):
- anchor and positive share the label and are different images (exact duplicates
  never reach this stage: ingest marks them ``duplicate_of``);
- negative has another label; a quadruplet's second negative differs from both;
- tuples never mix splits; only ``status == "ok"`` images take part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.limits import check_memory, seed_value, whole_number

Kind = Literal["triplet", "quadruplet"]
# The member columns of a tuple, in order (``negative2`` only in quadruplets): the one
# definition, used by the screens (curate/screens/base.py), the report and the trainer.
ROLES: tuple[str, ...] = ("anchor", "positive", "negative", "negative2")
BYTES_PER_TUPLE = (
    400  # peak bytes per tuple while sampling (index arrays, the table, its Parquet copy)
)
NO_SPLIT = "\x00none"  # group key for images without a split


@dataclass
class TupleStats:
    """What sampling did, for the console summary and ``run.json``."""

    tuples_per_class: dict[str, int] = field(default_factory=dict)
    classes_without_anchors: dict[str, str] = field(default_factory=dict)
    splits_skipped: dict[str, str] = field(default_factory=dict)
    positive_subject_honoured: int | None = None
    negative_subject_honoured: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "tuples_per_class": self.tuples_per_class,
            "classes_without_anchors": self.classes_without_anchors,
            "splits_skipped": self.splits_skipped,
            "positive_subject_honoured": self.positive_subject_honoured,
            "negative_subject_honoured": self.negative_subject_honoured,
        }


def sample_tuples(
    images: pd.DataFrame,
    *,
    kind: Kind = "triplet",
    per_anchor: int = 1,
    max_tuples: int | None = None,
    seed: int = 0,
    balance_classes: bool = False,
    positive_subject: Literal["any", "other"] = "any",
    negative_subject: Literal["any", "same"] = "any",
) -> tuple[pd.DataFrame, TupleStats]:
    """Sample tuples from the ``ok`` rows of an images table.

    Returns the tuples table (columns in ``docs/tables.md``) and sampling statistics.
    Same input and seed give identical tuples.
    """
    _check_options(images, kind, per_anchor, max_tuples, positive_subject, negative_subject)
    seed = seed_value(seed)
    ok = images.loc[images["status"].eq("ok"), ["image_id", "label", "split", "subject"]]
    if ok["label"].nunique() < 2:
        found = sorted(ok["label"].unique().tolist())
        raise CurateError(
            f"need at least two classes with valid images to build tuples; found {len(found)}: {found}",
            hint="check the labels (class folder names or the label column) and the image statuses",
        )
    rng = np.random.default_rng(seed)
    stats = TupleStats()
    parts = []
    split_keys = ok["split"].astype(object).where(ok["split"].notna(), NO_SPLIT)
    for split in sorted(split_keys.unique()):
        sub = ok[split_keys.eq(split).to_numpy()]
        name = None if split == NO_SPLIT else split
        part = _sample_split(
            sub,
            name,
            kind=kind,
            per_anchor=per_anchor,
            rng=rng,
            balance=balance_classes,
            pos_other=positive_subject == "other",
            neg_same=negative_subject == "same",
            stats=stats,
        )
        if part is not None:
            parts.append(part)
    if not parts:
        raise CurateError(
            "no split has enough classes to build tuples: "
            + "; ".join(f"{k}: {v}" for k, v in stats.splits_skipped.items()),
            hint="each split needs two classes (three for quadruplets) with at least two images in one",
        )
    out = pd.concat(parts, ignore_index=True)
    if max_tuples is not None and len(out) > max_tuples:
        out = _cap(out, max_tuples, rng, balance_classes)
    out = _finish(out, kind, stats, positive_subject, negative_subject)
    return out, stats


def _check_options(
    images: pd.DataFrame,
    kind: str,
    per_anchor: int,
    max_tuples: int | None,
    positive_subject: str,
    negative_subject: str,
) -> None:
    if kind not in ("triplet", "quadruplet"):
        raise CurateError(
            f"unknown tuple kind {kind!r}", hint="use --kind triplet or --kind quadruplet"
        )
    whole_number(per_anchor, "--per-anchor", lo=1)
    if max_tuples is not None:
        whole_number(max_tuples, "--max-tuples", lo=1)
    n_ok = int(images["status"].eq("ok").sum()) if "status" in images.columns else len(images)
    n = n_ok * per_anchor
    check_memory(
        n * BYTES_PER_TUPLE,
        f"--per-anchor {per_anchor:,} ({n:,} tuples of {n_ok:,} images)",
        hint="lower --per-anchor (1 to 10 is usual), or pass --max-tuples",
    )
    if positive_subject not in ("any", "other"):
        raise CurateError(f"--positive-subject must be 'any' or 'other', got {positive_subject!r}")
    if negative_subject not in ("any", "same"):
        raise CurateError(f"--negative-subject must be 'any' or 'same', got {negative_subject!r}")
    if (positive_subject != "any" or negative_subject != "any") and (
        "subject" not in images.columns or images["subject"].isna().all()
    ):
        raise CurateError(
            "identity-aware sampling (--positive-subject/--negative-subject) needs a subject column",
            hint="add a 'subject' column to the manifest (or --subject-column NAME), "
            "or drop those options",
        )


@dataclass
class _Blocks:
    """Contiguous blocks of a sorted key: start offset and size per key code."""

    start: np.ndarray
    size: np.ndarray


def _blocks(codes_sorted: np.ndarray, n_codes: int) -> _Blocks:
    size = np.bincount(codes_sorted, minlength=n_codes)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    return _Blocks(start=start, size=size)


def _draw_outside(
    rng: np.random.Generator, n: int, lo: np.ndarray, size: np.ndarray, total: int | np.ndarray
) -> np.ndarray:
    """Uniform index in [0, total) excluding the block [lo, lo + size), per row.

    Rows where nothing is left outside the block get 0 (callers mask them out)."""
    u = (rng.random(n) * (total - size)).astype(np.int64)
    return u + (u >= lo) * size


def _sample_split(
    sub: pd.DataFrame,
    split: str | None,
    *,
    kind: str,
    per_anchor: int,
    rng: np.random.Generator,
    balance: bool,
    pos_other: bool,
    neg_same: bool,
    stats: TupleStats,
) -> pd.DataFrame | None:
    label_name = split if split is not None else "(no split)"
    classes, cls_codes = np.unique(sub["label"].to_numpy().astype(str), return_inverse=True)
    n_cls = len(classes)
    needed = 3 if kind == "quadruplet" else 2
    if n_cls < needed:
        stats.splits_skipped[label_name] = f"{n_cls} class(es), {kind}s need {needed}"
        return None
    # Sort by (class, subject) so that classes, and subjects within a class, are contiguous.
    subj = _subject_codes(sub)
    order = np.lexsort((subj, cls_codes))
    ids = sub["image_id"].to_numpy(np.int64)[order]
    cls = cls_codes[order]
    subj = subj[order]
    n = len(ids)
    cb = _blocks(cls, n_cls)
    anchor_classes = np.flatnonzero(cb.size >= 2)
    for c in np.flatnonzero(cb.size < 2):
        stats.classes_without_anchors[f"{label_name}/{classes[c]}"] = (
            f"{cb.size[c]} valid image(s); a positive needs a second image of the class"
        )
    if len(anchor_classes) == 0:
        stats.splits_skipped[label_name] = "no class has two valid images"
        return None

    a_pos = _anchor_positions(cb, anchor_classes, per_anchor, balance, rng)
    a_cls = cls[a_pos]
    m = len(a_pos)

    # Positive: another image of the same class (optionally another subject).
    offset = a_pos - cb.start[a_cls]
    r = 1 + (rng.random(m) * (cb.size[a_cls] - 1)).astype(np.int64)
    p_pos = cb.start[a_cls] + (offset + r) % cb.size[a_cls]
    pos_ok = None
    if pos_other:
        p_pos, pos_ok = _positive_other_subject(rng, a_pos, a_cls, cls, subj, cb, p_pos)

    # Negative: any image of another class (optionally the same subject).
    n_pos = _draw_outside(rng, m, cb.start[a_cls], cb.size[a_cls], n)
    neg_ok = None
    if neg_same:
        n_pos, neg_ok = _negative_same_subject(rng, a_pos, cls, subj, n_pos)
    n_cls_ = cls[n_pos]

    data = {
        "anchor": ids[a_pos],
        "positive": ids[p_pos],
        "negative": ids[n_pos],
        "anchor_label": a_cls,
        "negative_label": n_cls_,
    }
    if kind == "quadruplet":
        n2_pos = _draw_outside_two(rng, cb, a_cls, n_cls_, n)
        data["negative2"] = ids[n2_pos]
        data["negative2_label"] = cls[n2_pos]
    out = pd.DataFrame(data)
    for col in ("anchor_label", "negative_label", "negative2_label"):
        if col in out:
            out[col] = pd.Categorical.from_codes(out[col].to_numpy(), categories=classes)
    out["split"] = split
    out["_pos_ok"] = pos_ok if pos_ok is not None else True
    out["_neg_ok"] = neg_ok if neg_ok is not None else True
    return out


def _subject_codes(sub: pd.DataFrame) -> np.ndarray:
    """Integer subject codes; an image without a subject is its own unknown person."""
    codes, uniques = pd.factorize(sub["subject"].astype(object), use_na_sentinel=True)
    codes = codes.astype(np.int64)
    missing = codes < 0
    codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes


def _anchor_positions(
    cb: _Blocks,
    anchor_classes: np.ndarray,
    per_anchor: int,
    balance: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Positions (in the sorted order) of the anchors, per_anchor times each image.

    Balanced: every anchor class gets the same number of anchor slots (per_anchor times
    the smallest anchor class), drawn without replacement from a shuffled class.
    """
    if not balance:
        pos = np.concatenate(
            [np.arange(cb.start[c], cb.start[c] + cb.size[c]) for c in anchor_classes]
        )
        return np.repeat(pos, per_anchor)
    quota = int(cb.size[anchor_classes].min())
    picks = []
    for c in anchor_classes:
        chosen = cb.start[c] + rng.permutation(cb.size[c])[:quota]
        picks.append(np.repeat(np.sort(chosen), per_anchor))
    return np.concatenate(picks)


def _positive_other_subject(
    rng: np.random.Generator,
    a_pos: np.ndarray,
    a_cls: np.ndarray,
    cls: np.ndarray,
    subj: np.ndarray,
    cb: _Blocks,
    fallback: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive of the same class from another subject, where the class has one."""
    key = cls * (subj.max() + 1) + subj  # (class, subject) blocks, contiguous in the sort
    uniq, first = np.unique(key, return_index=True)
    sizes = np.diff(np.append(first, len(key)))
    blk = np.searchsorted(uniq, key[a_pos])
    cs_start, cs_size = first[blk], sizes[blk]
    avail = cb.size[a_cls] - cs_size
    ok = avail > 0
    u = _draw_outside(rng, len(a_pos), cs_start - cb.start[a_cls], cs_size, cb.size[a_cls])
    chosen = np.where(ok, cb.start[a_cls] + u, fallback)
    return chosen, ok


def _negative_same_subject(
    rng: np.random.Generator,
    a_pos: np.ndarray,
    cls: np.ndarray,
    subj: np.ndarray,
    fallback: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Negative of another class from the anchor's own subject, where one exists."""
    by_subject = np.lexsort((cls, subj))  # positions sorted by (subject, class)
    s_sorted, c_sorted = subj[by_subject], cls[by_subject]
    s_first = np.searchsorted(s_sorted, subj[a_pos], side="left")
    s_size = np.searchsorted(s_sorted, subj[a_pos], side="right") - s_first
    key = s_sorted * (cls.max() + 1) + c_sorted
    akey = subj[a_pos] * (cls.max() + 1) + cls[a_pos]
    sc_first = np.searchsorted(key, akey, side="left")
    sc_size = np.searchsorted(key, akey, side="right") - sc_first
    avail = s_size - sc_size
    ok = avail > 0
    u = _draw_outside(rng, len(a_pos), sc_first - s_first, sc_size, s_size)
    idx = np.minimum(s_first + u, len(by_subject) - 1)
    chosen = np.where(ok, by_subject[idx], fallback)
    return chosen, ok


def _draw_outside_two(
    rng: np.random.Generator, cb: _Blocks, c1: np.ndarray, c2: np.ndarray, n: int
) -> np.ndarray:
    """Uniform index outside two disjoint class blocks (shift past the lower, then the upper)."""
    lo_c, hi_c = np.minimum(c1, c2), np.maximum(c1, c2)
    excluded = cb.size[c1] + cb.size[c2]
    u = (rng.random(len(c1)) * (n - excluded)).astype(np.int64)
    u = u + (u >= cb.start[lo_c]) * cb.size[lo_c]
    u = u + (u >= cb.start[hi_c]) * cb.size[hi_c]
    return u


def _cap(
    out: pd.DataFrame, max_tuples: int, rng: np.random.Generator, balance: bool
) -> pd.DataFrame:
    """Keep ``max_tuples`` tuples, chosen at random (evenly per class when balancing)."""
    if not balance:
        keep = np.sort(rng.choice(len(out), size=max_tuples, replace=False))
        return out.iloc[keep].reset_index(drop=True)
    codes = out["anchor_label"].cat.codes.to_numpy()
    present = np.unique(codes)
    per = np.full(len(present), max_tuples // len(present))
    per[: max_tuples % len(present)] += 1
    chosen: list[np.ndarray] = []
    for c, q in zip(present, per, strict=True):
        idx = np.flatnonzero(codes == c)
        chosen.append(rng.choice(idx, size=min(q, len(idx)), replace=False))
    return out.iloc[np.sort(np.concatenate(chosen))].reset_index(drop=True)


def _finish(
    out: pd.DataFrame, kind: str, stats: TupleStats, positive_subject: str, negative_subject: str
) -> pd.DataFrame:
    if positive_subject == "other":
        stats.positive_subject_honoured = int(out["_pos_ok"].sum())
    if negative_subject == "same":
        stats.negative_subject_honoured = int(out["_neg_ok"].sum())
    out = out.drop(columns=["_pos_ok", "_neg_ok"])
    for col in ("anchor_label", "negative_label", "negative2_label"):
        if col in out:
            out[col] = out[col].astype(str)
    out.insert(0, "tuple_id", np.arange(len(out), dtype=np.int64))
    counts = out["anchor_label"].value_counts()
    stats.tuples_per_class = {str(k): int(v) for k, v in sorted(counts.items())}
    cols = ["tuple_id", "anchor", "positive", "negative"]
    if kind == "quadruplet":
        cols.append("negative2")
    cols += ["anchor_label", "negative_label"]
    if kind == "quadruplet":
        cols.append("negative2_label")
    cols.append("split")
    out["split"] = out["split"].astype(object)
    return out[cols]


@dataclass
class Redraw:
    """What :func:`redraw_tuples` did."""

    tuples: pd.DataFrame  # same rows and tuple_ids as the input, affected rows redrawn
    redrawn: np.ndarray  # bool per row: its rejected members were replaced
    lost: np.ndarray  # bool per row: it could not be redrawn (anchor rejected, or
    # no replacement left); it keeps its members


def redraw_tuples(
    tuples: pd.DataFrame,
    images: pd.DataFrame,
    rejected: np.ndarray,
    *,
    seed: int = 0,
    positive_subject: Literal["any", "other"] = "any",
    negative_subject: Literal["any", "same"] = "any",
) -> Redraw:
    """Replace the tuples that hold a rejected image by tuples drawn from the other images.

    A tuple whose positive or negative (or second negative) an image screen rejected is
    redrawn for the same anchor, by the rules of :func:`sample_tuples`, from the images of
    ``images`` (status ``ok``) whose ``image_id`` is not in ``rejected``; it keeps its
    ``tuple_id``. A tuple whose anchor was rejected is not redrawn (the image is out of the
    pool, and so are the tuples anchored on it). Same inputs and seed, same tuples.
    """
    rejected = np.asarray(rejected, dtype=np.int64)
    roles = [r for r in ROLES if r in tuples.columns]
    kind: Kind = "quadruplet" if "negative2" in roles else "triplet"
    hit = np.zeros(len(tuples), dtype=bool)
    for r in roles:
        hit |= np.isin(tuples[r].to_numpy(np.int64), rejected)
    anchor_out = np.isin(tuples["anchor"].to_numpy(np.int64), rejected)
    todo = hit & ~anchor_out
    out = tuples.copy()
    redrawn = np.zeros(len(tuples), dtype=bool)
    if todo.any():
        pool = images.loc[
            images["status"].eq("ok") & ~images["image_id"].isin(rejected),
            ["image_id", "label", "split"],
        ].copy()
        pool["subject"] = images.loc[pool.index, "subject"] if "subject" in images.columns else None
        pool["status"] = "ok"
        anchors = tuples.loc[todo, "anchor"].to_numpy(np.int64)
        need = pd.Series(anchors).value_counts()
        try:
            fresh, _ = sample_tuples(
                pool,
                kind=kind,
                per_anchor=int(need.max()),
                seed=seed,
                positive_subject=positive_subject,
                negative_subject=negative_subject,
            )
        except CurateError:  # too few images left to draw from: nothing is redrawn
            fresh = pd.DataFrame(columns=tuples.columns)
        fresh = fresh[fresh["anchor"].isin(need.index)]
        # the k-th affected tuple of an anchor takes the anchor's k-th fresh tuple
        fresh = fresh.assign(_k=fresh.groupby("anchor").cumcount())
        rows = np.flatnonzero(todo)
        slot = pd.DataFrame(
            {
                "row": rows,
                "anchor": anchors,
                "_k": pd.Series(anchors).groupby(anchors).cumcount().to_numpy(),
            }
        )
        matched = slot.merge(fresh, on=["anchor", "_k"], how="inner")
        cols = [c for c in tuples.columns if c != "tuple_id" and c in matched.columns]
        for c in cols:
            values = out[c].to_numpy(dtype=object).copy()
            values[matched["row"].to_numpy()] = matched[c].to_numpy(dtype=object)
            out[c] = pd.Series(values, index=out.index).astype(tuples[c].dtype)
        redrawn[matched["row"].to_numpy()] = True
    return Redraw(tuples=out, redrawn=redrawn, lost=hit & ~redrawn)
