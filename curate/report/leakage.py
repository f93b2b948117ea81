"""The report's leakage section: near-duplicate pairs whose images sit in two splits.

Reads ``near_duplicates.parquet`` of the screen folder (written by the near-duplicate
screen, ``curate.screens.near_duplicates``): counts by split pair, then a seeded random
sample of the cross-split pairs, both images side by side. The verdicts are read, never
recomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.hygiene.near_duplicates import NEAR_DUPLICATE
from curate.io import read_parquet
from curate.report.galleries import _image_info, _short, thumb
from curate.report.html import Markup, chip, fmt_int, join, note, table, tag
from curate.report.inputs import ScreenRun
from curate.report.thumbnails import Thumbnails
from curate.screens.near_duplicates import PAIRS_FILE


def leakage_body(run: ScreenRun, thumbs: Thumbnails, max_items: int, seed: int) -> list[Any]:
    """The near-duplicate screen's section (:meth:`curate.screens.near_duplicates.NearDuplicateScreen.report`):
    what leaks between which splits, and a sample of the pairs."""
    path = run.screen_dir / PAIRS_FILE
    if not path.exists():
        return [
            note(
                f"{PAIRS_FILE} is missing: the near-duplicate screen did not run "
                "(--skip-near-duplicates-screen), so leakage was not looked for."
            )
        ]
    try:
        pairs = read_parquet(path, what=PAIRS_FILE)
    except CurateError as exc:
        return [note(exc.message)]
    cross = pairs[pairs["cross_split"].astype(bool).to_numpy()]
    near = cross[(cross["relation"] == NEAR_DUPLICATE).to_numpy(bool)]
    is_near = (pairs["relation"] == NEAR_DUPLICATE).to_numpy(bool)
    within = pairs[~pairs["cross_split"].astype(bool).to_numpy() & is_near]
    related = int((~is_near).sum())
    body: list[Any] = [
        tag(
            "p",
            join(
                [
                    f"{fmt_int(int(is_near.sum()))} confirmed pairs of the same photo ({fmt_int(len(within))} within a "
                    "split, where all but one image of each group is rejected as ",
                    chip(NEAR_DUPLICATE),
                    f"; {fmt_int(len(near))} across splits). A photo in two splits is leakage: the model is "
                    "evaluated on what it was trained on. Both copies are kept; "
                    "`curate export --drop-leaked test` leaves out the ones outside the training split.",
                    (
                        f" {fmt_int(related)} further confirmed pairs are frames of one sequence or photos of one "
                        f"subject (same_sequence / same_subject; {fmt_int(len(cross) - len(near))} across splits): "
                        "listed in near_duplicates.parquet, never rejected."
                    )
                    if related
                    else "",
                ]
            ),
        )
    ]
    if not len(cross):
        splits = pairs[["split_a", "split_b"]].stack().dropna().nunique() if len(pairs) else 0
        body.append(
            note(
                "No image has a near-duplicate in another split"
                + (
                    "."
                    if splits > 1 or run.suspect is None
                    else " (the screened images are in one split, or none)."
                )
            )
        )
        return body
    body.append(_counts(cross))
    others = len(cross) - len(near)
    if others:
        body.append(
            note(
                f"{fmt_int(others)} cross-split pairs are frames of one sequence or photos of one "
                "subject (same_sequence / same_subject): the same person in two splits, which "
                "identity-disjoint splits avoid; they are in the table, not in the sample."
            )
        )
    body.append(_sample(run, near if len(near) else cross, thumbs, max_items, seed))
    return body


def _counts(cross: pd.DataFrame) -> Markup:
    """Pairs and images per (split, split) and relation."""
    a = cross["split_a"].astype(object).fillna("(none)").astype(str)
    b = cross["split_b"].astype(object).fillna("(none)").astype(str)
    first, second = a.where(a <= b, b), b.where(a <= b, a)
    rows = []
    frame = cross.assign(s1=first, s2=second)
    for (s1, s2, rel), part in frame.groupby(["s1", "s2", "relation"], sort=True):
        ids1 = np.where(
            part["split_a"].astype(object).fillna("(none)").astype(str) == s1,
            part["image_id_a"],
            part["image_id_b"],
        )
        ids2 = np.where(
            part["split_a"].astype(object).fillna("(none)").astype(str) == s1,
            part["image_id_b"],
            part["image_id_a"],
        )
        rows.append(
            (
                f"{s1} \u2194 {s2}",
                str(rel),
                fmt_int(len(part)),
                fmt_int(len(set(ids1.tolist()))),
                fmt_int(len(set(ids2.tolist()))),
            )
        )
    return table(
        ["splits", "relation", "pairs", "images in the first", "images in the second"],
        rows,
        numeric_from=2,
    )


def _sample(
    run: ScreenRun, pairs: pd.DataFrame, thumbs: Thumbnails, max_items: int, seed: int
) -> Markup:
    rng = np.random.default_rng(seed)
    idx = np.arange(len(pairs))
    if idx.size > max_items:
        idx = np.sort(rng.choice(idx, size=max_items, replace=False))
    shown = pairs.iloc[idx].sort_values("pixel_sim", kind="mergesort")
    head = tag(
        "h3",
        f"A random sample of {len(shown):,} of {len(pairs):,} cross-split pairs "
        "(least similar first)",
    )
    items = []
    for r in shown.itertuples(index=False):
        boxes = []
        for side in ("a", "b"):
            image_id = getattr(r, f"image_id_{side}")
            path, shown_path, label = _image_info(run, image_id)
            split = getattr(r, f"split_{side}")
            boxes.append(
                thumb(
                    thumbs,
                    path,
                    title=shown_path,
                    role=str(split) if pd.notna(split) else None,
                    caption=[tag("b", label) if label else None, _short(shown_path)],
                )
            )
        la, lb = getattr(r, "label_a", None), getattr(r, "label_b", None)
        differ = isinstance(la, str) and isinstance(lb, str) and la != lb
        meta = join(
            [
                tag("div", f"pixel similarity {float(r.pixel_sim):.3f}"),
                tag("div", str(r.relation)),
                tag("div", "labels differ", class_="c-negative_too_close") if differ else "",
            ]
        )
        items.append(
            Markup(f'<div class="tuple"><div class="meta">{meta}</div>{join(boxes)}</div>')
        )
    return join([head, Markup('<div class="tuples">'), join(items), Markup("</div>")])
