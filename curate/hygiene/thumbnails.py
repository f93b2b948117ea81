"""Decode each image once for the hygiene screens: its 48 x 48 grey thumbnail and its
quality statistics.

The near-duplicate, not-a-face and quality screens all look at the grey image, decoded
by :func:`curate.images.load_image` (the one decoder). :func:`decoded_images` decodes the
images a memo does not hold yet and keeps them there, keyed by the sha256 of the file
(so the three screens of one ``curate screen`` run share one decode: the memo is the run's
:attr:`curate.screens.base.ScreenContext.shared`). Decoding a 48 x 48 FER image and
computing both costs well under a millisecond.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from curate.hygiene.quality import COLUMNS, image_stats
from curate.hygiene.windows import thumbnail
from curate.images import load_image
from curate.limits import one_blas_thread

THUMB_SIDE = 48
MEMO_KEY = "hygiene.decoded"  # the entry of ScreenContext.shared that holds the memo
_CHUNK = 512


@dataclass(frozen=True)
class Decoded:
    """Per image, in the order asked for: ``thumbs`` ``(N, 48, 48)`` float32 grey
    thumbnails (exact area resampling, aspect not kept) and ``stats``, the
    :data:`curate.hygiene.quality.COLUMNS` of the full decoded image (source size; None
    when not asked for)."""

    thumbs: np.ndarray
    stats: pd.DataFrame | None


def decode_one(
    path: str | os.PathLike[str], stats: bool = True
) -> tuple[np.ndarray, dict[str, float] | None]:
    """The thumbnail and (with ``stats``) the quality statistics of one image file."""
    grey = np.asarray(load_image(path, in_chans=1), dtype=np.float32)
    return thumbnail(grey, THUMB_SIDE), image_stats(grey) if stats else None


def decoded_images(
    paths: Sequence[str | os.PathLike[str]],
    sha256: Sequence[str],
    *,
    memo: MutableMapping[str, object] | None = None,
    workers: int | None = None,
    stats: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Decoded:
    """Thumbnails and quality statistics of ``paths``, decoding only what ``memo`` lacks.

    ``memo`` (a dict, e.g. ``ctx.shared``) keeps a ``{sha256: (thumb, stats)}`` table under
    :data:`MEMO_KEY`; images with one hash are decoded once. ``workers`` threads decode
    (default: up to 4; the decoder releases the GIL). Without ``stats`` only thumbnails
    are made (``Decoded.stats`` is then None, and nothing is memoised). A file that cannot
    be decoded raises the decoder's :class:`~curate.errors.CurateError`, which names it.
    """
    if len(paths) != len(sha256):
        raise ValueError(f"{len(paths)} paths for {len(sha256)} hashes")
    table: dict[str, tuple[np.ndarray, dict[str, float] | None]]
    table = memo.setdefault(MEMO_KEY, {}) if memo is not None and stats else {}  # type: ignore[assignment]
    todo: dict[str, str] = {}
    for p, h in zip(paths, sha256, strict=True):
        if h not in table and h not in todo:
            todo[h] = str(p)
    keys = list(todo)
    # a thread per 64 images at least (a 256-px photo takes ~2 ms: 313 of them were one thread's)
    n_threads = max(1, min(workers or min(4, os.cpu_count() or 1), -(-len(keys) // 64)))
    done = 0
    # the thumbnail and the edge statistic are small matrix products: BLAS's own threads on
    # top of these would only cost (curate.limits.one_blas_thread)
    with one_blas_thread(), ThreadPoolExecutor(n_threads) as pool:
        for start in range(0, len(keys), _CHUNK * n_threads):
            batch = keys[start : start + _CHUNK * n_threads]
            got_all = pool.map(decode_one, [todo[h] for h in batch], [stats] * len(batch))
            for h, got in zip(batch, got_all, strict=True):
                table[h] = got
            done += len(batch)
            if progress is not None:
                progress(done, len(keys))
    if not len(paths):
        return Decoded(
            np.empty((0, THUMB_SIDE, THUMB_SIDE), np.float32),
            pd.DataFrame(columns=list(COLUMNS)) if stats else None,
        )
    rows = [table[h] for h in sha256]
    return Decoded(
        np.stack([r[0] for r in rows]).astype(np.float32, copy=False),
        pd.DataFrame([r[1] for r in rows], columns=list(COLUMNS)) if stats else None,
    )


def decoded_for(
    images: pd.DataFrame,
    memo: MutableMapping[str, object] | None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Decoded:
    """:func:`decoded_images` of the rows of an images table (``path``, ``sha256``), with
    ``progress`` as a screen's stage callback (stage ``hygiene``)."""
    cb = (lambda done, total: progress("hygiene", done, total)) if progress else None
    return decoded_images(
        images["path"].astype(str).tolist(),
        images["sha256"].astype(str).tolist(),
        memo=memo,
        progress=cb,
    )
