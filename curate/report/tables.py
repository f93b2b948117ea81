"""Counting tables of the report: by reason, by class, and the negative confusion table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from curate.report.palette import order_reasons
from curate.stats.statistical import NEGATIVE_TOO_CLOSE as NEG_REASON


def reason_flags(reason: pd.Series) -> pd.DataFrame:
    """One boolean column per reason code, from the ``;``-joined ``reason`` column.

    Vectorised over the distinct reason strings, so a million tuples cost one
    categorical conversion.
    """
    cat = reason.astype("category")
    categories = [str(c) for c in cat.cat.categories]
    per_cat = [{p.strip() for p in c.split(";") if p.strip()} for c in categories]
    codes = order_reasons(set().union(*per_cat)) if per_cat else []
    idx = cat.cat.codes.to_numpy()
    flags = {}
    for code in codes:
        has = np.array([code in s for s in per_cat] + [False], dtype=bool)  # -1 = missing
        flags[code] = has[idx]
    return pd.DataFrame(flags, index=reason.index)


def counts_by_reason(flags: pd.DataFrame, n_tuples: int) -> pd.DataFrame:
    """Tuples per reason code (a tuple with two reasons counts under both)."""
    counts = flags.sum(axis=0).astype("int64")
    share = counts / n_tuples if n_tuples else counts * 0.0
    return pd.DataFrame(
        {"reason": counts.index, "tuples": counts.to_numpy(), "share": share.to_numpy()}
    )


def counts_by_class(scores: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """Per anchor label: tuples, kept, rejected, rejected share, and tuples per reason."""
    label = scores["anchor_label"].astype("string").fillna("(none)")
    frame = pd.DataFrame(
        {"label": label.to_numpy(), "tuples": 1, "kept": scores["keep"].to_numpy().astype("int64")}
    )
    for code in flags.columns:
        frame[code] = flags[code].to_numpy().astype("int64")
    out = frame.groupby("label", sort=True).sum()
    out.insert(2, "rejected", out["tuples"] - out["kept"])
    out.insert(3, "rejected_share", out["rejected"] / out["tuples"])
    return out


def negative_pairs(scores: pd.DataFrame, t_neg: float | None) -> list[tuple[str, str, str]]:
    """The (first label, second label, distance column) pairs checked against T_neg.

    For triplets only anchor-negative; for quadruplets also anchor-negative2 and
    negative-negative2 when their distances and labels are present.
    """
    pairs = [("anchor_label", "negative_label", "d_an")]
    if "d_an2" in scores.columns and "negative2_label" in scores.columns:
        pairs.append(("anchor_label", "negative2_label", "d_an2"))
    if "d_nn2" in scores.columns and "negative2_label" in scores.columns:
        pairs.append(("negative_label", "negative2_label", "d_nn2"))
    return [
        (a, b, d)
        for a, b, d in pairs
        if a in scores.columns and b in scores.columns and (d == "d_an" or t_neg is not None)
    ]


def negative_confusion(
    scores: pd.DataFrame,
    flags: pd.DataFrame,
    t_neg: float | None,
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Label-pair table of ``negative_too_close`` rejections.

    Returns ``(flagged, total)``: rows are the first label of the pair (the anchor),
    columns the second (the negative). ``flagged`` counts pairs closer than T_neg
    in tuples rejected as ``negative_too_close``; ``total`` counts all such label
    pairs, so ``flagged / total`` is the share the data confuses. With triplets and
    no T_neg, every rejected tuple counts its anchor/negative labels.
    """
    if NEG_REASON not in flags.columns or "negative_label" not in scores.columns:
        return None
    rejected = flags[NEG_REASON].to_numpy()
    flagged_parts, total_parts = [], []
    for first, second, dist in negative_pairs(scores, t_neg):
        a = scores[first].astype("string").fillna("(none)")
        b = scores[second].astype("string").fillna("(none)")
        total_parts.append(pd.DataFrame({"a": a, "b": b}))
        hit = rejected.copy()
        if t_neg is not None and dist in scores.columns:
            hit &= scores[dist].to_numpy() < t_neg
        flagged_parts.append(pd.DataFrame({"a": a[hit], "b": b[hit]}))
    total = pd.concat(total_parts, ignore_index=True)
    flagged = pd.concat(flagged_parts, ignore_index=True)
    total_t = pd.crosstab(total["a"], total["b"])
    flagged_t = pd.crosstab(flagged["a"], flagged["b"]).reindex(
        index=total_t.index, columns=total_t.columns, fill_value=0
    )
    return flagged_t.astype("int64"), total_t.astype("int64")
