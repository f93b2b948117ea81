"""Galleries of embedded thumbnails: abnormal tuples, suspect images, and the images each
image screen rejected (side and occluded faces, ...).

Each gallery is capped; the heading says how many items exist and how many are shown.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from curate import screens
from curate.report.html import Markup, chip, chips, esc, fmt_num, join, note, tag
from curate.report.inputs import ScreenRun
from curate.report.sensitivity import min_negative_distance
from curate.report.thumbnails import Thumbnails
from curate.screens.base import Screen
from curate.stats.statistical import POSITIVE_TOO_FAR

PATH_CHARS = 40


def _short(path: str) -> str:
    return path if len(path) <= PATH_CHARS else "\u2026" + path[-(PATH_CHARS - 1) :]


def _image_info(run: ScreenRun, image_id: Any) -> tuple[str | None, str, str | None]:
    """(path, shown path, label) of an image id, from the best table at hand."""
    images = run.images
    if images is None or image_id is None or (isinstance(image_id, float) and math.isnan(image_id)):
        return None, f"image {image_id}", None
    try:
        row = images.loc[int(image_id)]
    except (KeyError, ValueError, TypeError):
        return None, f"image {image_id} (not in the image table)", None
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    path = row.get("path")
    shown = row.get("rel_path") if isinstance(row.get("rel_path"), str) else path
    label = row.get("label") if isinstance(row.get("label"), str) else None
    return (path if isinstance(path, str) else None), str(shown), label


def thumb(
    thumbs: Thumbnails, path: str | None, *, caption: list[Any], title: str, role: str | None = None
) -> Markup:
    """One thumbnail box: role, image (or why it is missing), caption lines."""
    uri, why = thumbs.get(path) if path else (None, "no path known")
    if uri:
        img = Markup(f'<img src="{esc(uri)}" alt="{esc(title)}" title="{esc(title)}">')
    else:
        img = tag("div", why or "not shown", class_="missing", title=title)
    head = tag("div", role, class_="role") if role else Markup("")
    lines = join(
        tag("div", c, class_="path" if i == len(caption) - 1 else None)
        for i, c in enumerate(caption)
        if c is not None
    )
    return Markup(f'<div class="thumb">{head}{img}{lines}</div>')


def _number(value: Any, default: float) -> float:
    return value if isinstance(value, (int, float)) else default


def _severity(run: ScreenRun, code: str) -> np.ndarray:
    """How far past its sub-boundary each tuple is, in standard deviations of its null."""
    s = run.scores
    b = run.boundary or {}
    alpha = b.get("alpha_pos" if code == POSITIVE_TOO_FAR else "alpha_neg")
    if {"z_ap", "z_neg"} <= set(s.columns) and isinstance(alpha, (int, float)) and 0 < alpha < 1:
        z = s["z_ap" if code == POSITIVE_TOO_FAR else "z_neg"].to_numpy(dtype=float)
        return z - float(norm.isf(alpha))
    sigma = _number(b.get("sigma"), 0.0) or 1.0
    if code == POSITIVE_TOO_FAR:
        return (s["d_ap"].to_numpy(dtype=float) - _number(b.get("t_pos"), 0.0)) / sigma
    t = _number(b.get("t_neg"), 0.0)
    return (t - min_negative_distance(s)) / sigma


def _top(mask: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest ``score`` among ``mask``, largest first."""
    idx = np.flatnonzero(mask)
    if idx.size > k:
        idx = idx[np.argpartition(-np.nan_to_num(score[idx], nan=-np.inf), k - 1)[:k]]
    return idx[np.argsort(-np.nan_to_num(score[idx], nan=-np.inf), kind="stable")]


MEMBERS = (
    ("anchor", "anchor_label"),
    ("positive", "anchor_label"),
    ("negative", "negative_label"),
    ("negative2", "negative2_label"),
)


def member_codes(member_reasons: Any) -> dict[str, list[str]]:
    """``scores.parquet``'s ``member_reasons`` (``role:code;role:code``) as role -> codes."""
    out: dict[str, list[str]] = {}
    if not isinstance(member_reasons, str):
        return out
    for part in member_reasons.split(";"):
        role, sep, code = part.strip().partition(":")
        if sep and code:
            out.setdefault(role, []).append(code)
    return out


def _tuple_chips(reason: Any, by_member: dict[str, list[str]]) -> Markup:
    """The tuple's reasons: a tuple screen's codes as chips, then one line per member an
    image screen rejected, naming it (``negative: occluded``)."""
    member = {c for codes in by_member.values() for c in codes}
    own = (
        [c for c in str(reason).split(";") if c and c not in member]
        if isinstance(reason, str)
        else []
    )
    parts = [tag("div", join(chip(c) for c in own))] if own else []
    for role, codes in by_member.items():
        parts.append(tag("div", join([f"{role}: ", *[chip(c) for c in codes]])))
    return join(parts) if parts else chips(reason)


def _tuple_row(run: ScreenRun, thumbs: Thumbnails, row: pd.Series, severity: float) -> Markup:
    b = run.boundary or {}
    by_member = member_codes(row.get("member_reasons"))
    boxes = []
    for role, label_col in MEMBERS:
        if role not in row.index or pd.isna(row[role]):
            continue
        path, shown, img_label = _image_info(run, row[role])
        label = row.get(label_col) if label_col in row.index else img_label
        codes = by_member.get(role)
        boxes.append(
            thumb(
                thumbs,
                path,
                role=role,
                title=shown,
                caption=[
                    tag("b", label),
                    join(chip(c) for c in codes) if codes else None,
                    _short(shown),
                ],
            )
        )
    dists = []
    for col, key, worse in (
        ("d_ap", "t_pos", np.greater),
        ("d_an", "t_neg", np.less),
        ("d_an2", "t_neg", np.less),
        ("d_nn2", "t_neg", np.less),
    ):
        if col in row.index and pd.notna(row[col]):
            t = b.get(key)
            bad = isinstance(t, (int, float)) and bool(worse(row[col], t))
            cls = (
                ("c-positive_too_far" if key == "t_pos" else "c-negative_too_close")
                if bad
                else None
            )
            dists.append(
                join([f"{col} = ", tag("b" if bad else "span", f"{row[col]:.3f}", class_=cls)])
            )
    tid = row.get("tuple_id", row.name)
    meta = join(
        [
            tag("div", f"tuple {tid}"),
            _tuple_chips(row.get("reason"), by_member),
            join(Markup("<div>") + d + Markup("</div>") for d in dists),
            tag("div", f"{severity:.1f} sigma past the boundary"),
        ]
    )
    return Markup(f'<div class="tuple"><div class="meta">{meta}</div>{join(boxes)}</div>')


def tuple_gallery(
    run: ScreenRun, flags: pd.DataFrame, thumbs: Thumbnails, max_items: int
) -> Markup:
    """The most abnormal rejected tuples, one group per statistical reason."""
    codes = [c for c in screens.get("boundary").codes if c in flags.columns]
    if not codes:
        return note("No tuple was rejected by the statistical boundary.")
    per = max(1, max_items // len(codes))
    # tuples whose members all passed the image screens show what the boundary alone finds
    clean = (
        run.scores["member_reasons"].isna().to_numpy()
        if "member_reasons" in run.scores.columns
        else np.ones(len(run.scores), dtype=bool)
    )
    parts = []
    for code in codes:
        mask = flags[code].to_numpy()
        sev = _severity(run, code)
        pick = mask & clean if (mask & clean).any() else mask
        idx = _top(pick, sev, per)
        total = int(mask.sum())
        among = (
            f" ({int(pick.sum()):,} of them with every member passing the image screens)"
            if pick is not mask
            else ""
        )
        parts.append(
            tag(
                "h4",
                join(
                    [
                        chips(code),
                        f" \u2014 the {idx.size:,} most abnormal of {total:,} tuples{among}",
                    ]
                ),
            )
        )
        rows = run.scores.iloc[idx]
        parts.append(
            Markup('<div class="tuples">')
            + join(
                _tuple_row(run, thumbs, r, float(sev[i]))
                for (_, r), i in zip(rows.iterrows(), idx, strict=True)
            )
            + Markup("</div>")
        )
    return join(parts)


def suspect_gallery(run: ScreenRun, thumbs: Thumbnails, max_items: int) -> Markup:
    """The label suspects: "labelled X, looks like Y", most suspect first (the label screen's
    ranking of ``images_suspect.parquet``). Without the label screen: the images most often in
    rejected tuples."""
    s = run.suspect
    if s is None:
        return note(run.notes.get("suspect", "images_suspect.parquet is missing"))
    if "suggested_label" in s.columns and "label_score" in s.columns:
        return _label_suspects(run, s, thumbs, max_items)
    share = "rejected_share" if "rejected_share" in s.columns else "suspicion"
    if share not in s.columns:
        return note("images_suspect.parquet has no label verdicts and no `rejected_share` column")
    flagged = s[pd.to_numeric(s[share], errors="coerce").fillna(0) > 0]
    order = flagged.sort_values(
        [share] + (["n_rejected"] if "n_rejected" in s else []), ascending=False, kind="stable"
    )
    top = order.head(max_items)
    boxes = []
    for _, r in top.iterrows():
        path, shown = _row_path(run, r)
        counts = (
            f"{int(r['n_rejected'])} of {int(r['n_tuples'])} tuples rejected"
            if {"n_rejected", "n_tuples"} <= set(r.index)
            else ""
        )
        boxes.append(
            thumb(
                thumbs,
                path,
                title=shown,
                caption=[
                    tag("b", r.get("label")),
                    f"rejected share {fmt_num(float(r[share]), 2)}",
                    counts,
                    _image_chips(r),
                    _short(shown),
                ],
            )
        )
    head = tag(
        "p",
        f"The label screen did not run. Showing the {len(top):,} images most often in "
        f"rejected tuples of {len(flagged):,} images that are in at least one rejected tuple "
        f"({len(s):,} images in tuples).",
    )
    return join([head, Markup('<div class="wall">'), join(boxes), Markup("</div>")])


def _label_suspects(run: ScreenRun, s: pd.DataFrame, thumbs: Thumbnails, max_items: int) -> Markup:
    score = pd.to_numeric(s["label_score"], errors="coerce")
    order = s.assign(_k=score.fillna(-np.inf)).sort_values(
        ["_k", "image_id"], ascending=[False, True], kind="stable"
    )
    rejected = order["label_reject"].fillna(False).astype(bool) if "label_reject" in order else None
    top = order.head(max_items)
    boxes = []
    for _, r in top.iterrows():
        path, shown = _row_path(run, r)
        p, post = r.get("label_pvalue"), r.get("suspicion")
        facts = " \u00b7 ".join(
            x
            for x in (
                f"suspicion {fmt_num(float(post), 2)}"
                if isinstance(post, float) and not np.isnan(post)
                else None,
                f"p = {float(p):.2g}" if isinstance(p, float) and not np.isnan(p) else None,
            )
            if x
        )
        boxes.append(
            thumb(
                thumbs,
                path,
                title=shown,
                caption=[
                    join(
                        [
                            "labelled ",
                            tag("b", r.get("label")),
                            ", looks like ",
                            tag("b", r.get("suggested_label")),
                        ]
                    ),
                    facts or None,
                    _image_chips(r),
                    _short(shown),
                ],
            )
        )
    n_rej = int(rejected.sum()) if rejected is not None else 0
    head = tag(
        "p",
        f"The {len(top):,} images whose label fits worst, of {len(s):,} images in tuples; "
        f"{n_rej:,} are rejected as label_suspect (label p-value below alpha_label). "
        "Suspicion is the probability that the label is wrong; the suggested label is the "
        "class the image fits best.",
    )
    return join([head, Markup('<div class="wall">'), join(boxes), Markup("</div>")])


def _row_path(run: ScreenRun, r: pd.Series) -> tuple[str | None, str]:
    path = r.get("path") if isinstance(r.get("path"), str) else None
    if path is None and "image_id" in r.index:
        path = _image_info(run, r["image_id"])[0]
    shown = str(r.get("rel_path") if isinstance(r.get("rel_path"), str) else path)
    return path, shown


def _image_chips(r: pd.Series) -> Markup | None:
    """Chips of the image-screen reasons of one images_suspect row."""
    codes = []
    for scr in screens.registered():
        col = scr.columns()[2]
        if scr.level == "image" and isinstance(r.get(col), str) and r.get(col):
            codes.append(r.get(col))
    return chips(";".join(codes)) if codes else None


def _image_screen_groups(run: ScreenRun) -> list[tuple[Screen, str, np.ndarray]]:
    """(screen, reason code, mask over ``run.suspect``) for every registered image screen
    whose verdict column is in ``images_suspect.parquet``. Verdicts are read, never recomputed."""
    s = run.suspect
    groups = []
    for scr in screens.registered():
        col = scr.columns()[2]
        if scr.level != "image" or s is None or col not in s.columns:
            continue
        codes = s[col].astype("string").fillna("").str.split(";")
        for code in scr.codes:
            groups.append(
                (scr, code, codes.map(lambda parts, c=code: c in parts).to_numpy(dtype=bool))
            )
    return groups


def image_screen_gallery(run: ScreenRun, thumbs: Thumbnails, max_items: int, seed: int) -> Markup:
    """A random sample of the images each image screen rejected (side faces, occluded faces,
    images without a face, ...), one group per reason."""
    groups = _image_screen_groups(run)
    if not groups:
        return note(
            run.notes.get("faces", "faces.parquet is missing")
            if run.suspect is not None
            else run.notes.get("suspect", "images_suspect.parquet is missing")
        )
    f = run.suspect
    assert f is not None  # _image_screen_groups found groups in it
    rng = np.random.default_rng(seed)
    per = max(1, max_items // 2)
    parts, empty = [], []
    for scr, code, mask in groups:
        idx = np.flatnonzero(mask)
        total = idx.size
        if not total:  # listed once below, not as an empty gallery each
            empty.append(code)
            continue
        if total > per:
            idx = np.sort(rng.choice(idx, size=per, replace=False))
        parts.append(
            tag(
                "h4",
                join([chips(code), f" \u2014 a random sample of {idx.size:,} of {total:,} images"]),
            )
        )
        boxes = []
        for _, r in f.iloc[idx].iterrows():
            path = r.get("path") if isinstance(r.get("path"), str) else None
            label, shown = None, str(path) if path else f"image {r.get('image_id')}"
            if "image_id" in r.index:
                known_path, known_shown, label = _image_info(run, r.get("image_id"))
                if known_path:
                    shown = known_shown
                    path = path or known_path
            desc = scr.caption(r.to_dict(), code)
            other = scr.partner(r.to_dict(), code)
            box = thumb(
                thumbs,
                path,
                title=shown,
                role="rejected" if other is not None else None,
                caption=[
                    tag("b", label) if label else None,
                    " \u00b7 ".join(desc) or None,
                    _short(shown),
                ],
            )
            if other is not None:  # e.g. the copy a near-duplicate gave way to, beside it
                o_path, o_shown, o_label = _image_info(run, other)
                box = join(
                    [
                        Markup('<div class="pair">'),
                        box,
                        thumb(
                            thumbs,
                            o_path,
                            title=o_shown,
                            role="kept",
                            caption=[
                                tag("b", o_label) if o_label else None,
                                f"image {other}",
                                _short(o_shown),
                            ],
                        ),
                        Markup("</div>"),
                    ]
                )
            boxes.append(box)
        parts.append(join([Markup('<div class="wall">'), join(boxes), Markup("</div>")]))
    if empty:
        parts.append(
            tag("p", join(["No image rejected as ", join([chips(c) for c in empty]), "."]))
        )
    return join(parts)
