"""The leakage check of ``curate build-tuples``: near-duplicates in two splits.

:func:`cross_split_pairs` runs the near-duplicate search of
:mod:`curate.hygiene.near_duplicates` on the valid images and pixel-checks only the
candidate pairs that cross a split, so it costs about what the candidate search costs. It
returns nothing (and decodes nothing) when the images are in fewer than two splits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from curate.hygiene import near_duplicates as nd
from curate.hygiene.thumbnails import decoded_images

MAX_EXAMPLES = 5


def cross_split_pairs(
    images: pd.DataFrame,
    *,
    min_pixel_sim: float = nd.DEFAULT_MIN_PIXEL_SIM,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Confirmed near-duplicate pairs of ``images`` (rows of ``images.parquet``) that sit in
    two splits; only ``status == "ok"`` rows take part. Columns of
    :func:`~curate.hygiene.near_duplicates.group_pairs`'s pairs plus ``rel_path_a``, ``rel_path_b``."""
    ok = images[images["status"].eq("ok")].reset_index(drop=True)
    splits = ok["split"].dropna().unique() if "split" in ok.columns else []
    if len(splits) < 2:
        _, empty = nd.group_pairs(ok.head(0), pd.DataFrame({"a": [], "b": [], "pixel_sim": []}))
        return empty.assign(
            rel_path_a=pd.Series(dtype="string"), rel_path_b=pd.Series(dtype="string")
        )
    thumbs = decoded_images(
        ok["path"].astype(str).tolist(),
        ok["sha256"].astype(str).tolist(),
        stats=False,
        progress=progress,
    ).thumbs
    _, pairs = nd.near_duplicates(thumbs, ok, min_pixel_sim=min_pixel_sim, cross_split_only=True)
    pairs = pairs[pairs["cross_split"].to_numpy(bool)].reset_index(drop=True)
    rel = ok.set_index("image_id")["rel_path"].astype("string")
    return pairs.assign(
        rel_path_a=rel.loc[pairs["image_id_a"]].to_numpy(),
        rel_path_b=rel.loc[pairs["image_id_b"]].to_numpy(),
    )


def leakage_summary(pairs: pd.DataFrame) -> dict[str, Any]:
    """JSON-ready counts of cross-split pairs (:func:`cross_split_pairs`, or any pairs table of
    :func:`~curate.hygiene.near_duplicates.group_pairs`): near-duplicate pairs, same-person
    pairs, images per split with a copy in another split, and (with ``rel_path_a``/``_b``)
    up to :data:`MAX_EXAMPLES` example pairs, most similar first."""
    pairs = pairs[pairs["cross_split"].to_numpy(bool)]
    near = pairs[(pairs["relation"] == nd.NEAR_DUPLICATE).to_numpy(bool)]
    per_split: dict[str, set[int]] = {}
    for side in ("a", "b"):
        for split, ids in near.groupby(near[f"split_{side}"].astype(object).fillna("(none)"))[
            f"image_id_{side}"
        ]:
            per_split.setdefault(str(split), set()).update(int(i) for i in ids)
    out: dict[str, Any] = {
        "cross_split_pairs": int(len(near)),
        "cross_split_same_person_pairs": int(len(pairs) - len(near)),
        "images_with_copy_in_other_split": {k: len(v) for k, v in sorted(per_split.items())},
    }
    if {"rel_path_a", "rel_path_b"} <= set(pairs.columns):
        top = near.sort_values("pixel_sim", ascending=False, kind="mergesort").head(MAX_EXAMPLES)
        out["examples"] = [
            [str(r.rel_path_a), str(r.rel_path_b), round(float(r.pixel_sim), 4)]
            for r in top.itertuples()
        ]
    return out
