"""The near-duplicate screen: the same photo twice, after resize, re-encoding, a small
crop or shift, a brightness or contrast change, or a mirror; and copies across splits
(leakage).

Method and measurements: :mod:`curate.hygiene.near_duplicates`, ``docs/hygiene.md``.
Within each split one image of every group of copies is kept and the others are
rejected as ``near_duplicate`` (``near_duplicate_of`` names the kept one). The image kept
is the first by: no image screen that ran before this one rejected it (its ``order``, 90,
puts it after ``faces``, ``label``, ``not_face`` and ``quality``, and image screens run
by order, so a copy whose label the label screen rejects, or that is blank,
gives way to one that passes), the largest source, the lowest ``image_id``.

Copies in two splits are **leakage**: both stay (one per split) and every confirmed pair is
in ``near_duplicates.parquet`` with ``cross_split``; the report lists the cross-split pairs
and ``curate export --drop-leaked test|train`` removes one side. Frames of one
``sequence`` (``same_sequence``) and other photos of one ``subject`` (``same_subject``) are
reported there too and never rejected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from curate.hygiene import near_duplicates as nd
from curate.hygiene.leakage import leakage_summary
from curate.hygiene.thumbnails import decoded_for
from curate.screens import register
from curate.screens.base import (
    Option,
    Reason,
    Screen,
    ScreenContext,
    ScreenOutput,
    check_number,
    join_codes,
)

PAIRS_FILE = "near_duplicates.parquet"
PER_IMAGE = ("near_duplicate_of", "near_duplicate_group", "near_duplicate_leak", "same_sequence_of")


@register
class NearDuplicateScreen(Screen):
    """Near-duplicate images within a split, and leakage across splits (:func:`nd.near_duplicates`)."""

    name = "near_duplicates"
    order = 90
    level = "image"
    column_prefix = "near_duplicate"
    summary = (
        "the same photo again in its split (resized, re-encoded, cropped, re-toned or mirrored)"
    )
    reasons = (
        Reason(
            nd.NEAR_DUPLICATE,
            "near-duplicate",
            "#e377c2",
            "the same photo as another image of its split (near_duplicate_of: the one kept); "
            "confirmed when the aligned pixel similarity is at least --min-pixel-sim",
        ),
    )
    options = (
        Option(
            "min_pixel_sim",
            nd.DEFAULT_MIN_PIXEL_SIM,
            "Pixel similarity (0-1) from which two images are the same photo (near_duplicate).",
            check_number(
                "min_pixel_sim", low=0, high=1, low_open=True, example=nd.DEFAULT_MIN_PIXEL_SIM
            ),
        ),
    )
    skip_help = "Do not look for near-duplicates and leakage."
    skip_aliases = ("skip_near_duplicate_screen",)
    progress_stages = {"hygiene": "decoding for the hygiene screens"}
    report_title = "Leakage across splits"
    report_anchor = "leakage"
    suspect_columns = PER_IMAGE
    files = (PAIRS_FILE,)

    def report(self, run: Any, ctx: Any) -> list[Any] | None:
        from curate.report.leakage import leakage_body

        return leakage_body(run, ctx.thumbs, ctx.max_items, ctx.seed)

    def run(self, ctx: ScreenContext) -> ScreenOutput:
        thumbs = decoded_for(ctx.images, ctx.shared, ctx.progress).thumbs
        rejected_before = np.zeros(len(ctx.images), bool)
        for out in ctx.results.values():  # the image screens that ran before this one
            rejected_before |= np.asarray(out.reject, bool)
        per_image, pairs = nd.near_duplicates(
            thumbs,
            ctx.images,
            min_pixel_sim=ctx.settings["min_pixel_sim"],
            prefer=~rejected_before,
            seed=ctx.settings["seed"],
        )
        reject = per_image["near_duplicate_of"].notna().to_numpy(bool)
        table = pd.concat([ctx.images[["image_id"]].reset_index(drop=True), per_image], axis=1)
        return ScreenOutput(
            score=per_image["near_duplicate_score"].to_numpy(np.float64),
            reject=reject,
            reason=join_codes([(nd.NEAR_DUPLICATE, reject)]),
            table=table,
            artifacts={
                "pairs": pairs,
                "groups": int(per_image["near_duplicate_group"].max()) + 1,
                **leakage_summary(pairs),
            },
        )

    def outputs(self, out: ScreenOutput, ctx: ScreenContext) -> dict[str, pd.DataFrame]:
        return {PAIRS_FILE: out.artifacts["pairs"]}

    def partner(self, row, code: str):
        of = row.get("near_duplicate_of")
        return None if of is None or pd.isna(of) else int(of)

    def caption(self, row, code: str) -> list[str]:
        of, s = row.get("near_duplicate_of"), row.get("near_duplicate_score")
        return [
            d
            for d in (
                f"copy of image {int(of)}" if of is not None and not pd.isna(of) else None,
                f"pixel similarity {s:.3f}" if isinstance(s, float) and not math.isnan(s) else None,
            )
            if d
        ]
