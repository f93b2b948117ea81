"""Find near-duplicate faces across face-conditions, fer2013/val and fer2013/train.

FER2013 holds the same face under several file names (JPEG / PNG re-encodings of one
crop). A pair counts when the mean absolute difference of the two 48x48 grey images is
below 4 (re-encodings of one face differ by about 1-1.6; different faces by 10 or
more); candidates come from a cosine above 0.98 between 16x16 mean-pooled, centred
images. Writes ``bench/audit/near_duplicates.csv`` (``a``, ``b``: paths relative to the
data folder, ``a`` < ``b``; ``mad``), which ``curate/faces/holdout.py`` uses to keep copies of
holdout faces out of fitting. About two minutes on one core.

Usage::

    python -m bench.audit.near_duplicates [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.common.paths import AUDIT, DATA

OUT = AUDIT / "near_duplicates.csv"
MAX_MAD = 4.0
MIN_COSINE = 0.98


def images(data: Path) -> list[Path]:
    return (
        sorted((data / "face-conditions" / "images").glob("*.png"))
        + sorted((data / "fer2013" / "val").rglob("*.jpg"))
        + sorted((data / "fer2013" / "train").rglob("*.jpg"))
    )


def near_duplicates(grey: np.ndarray, names: np.ndarray, chunk: int = 1000) -> pd.DataFrame:
    """Pairs (i < j) of ``grey`` (N x 48 x 48) with mean absolute difference below MAX_MAD."""
    x = grey.reshape(len(grey), -1).astype(np.float32)
    small = grey.reshape(len(grey), 16, 3, 16, 3).mean(axis=(2, 4)).reshape(len(grey), -1)
    small = small - small.mean(axis=1, keepdims=True)
    small /= np.linalg.norm(small, axis=1, keepdims=True) + 1e-6
    rows = []
    for i in range(0, len(x), chunk):
        sim = small[i : i + chunk] @ small.T
        for a, b in zip(*np.nonzero(sim > MIN_COSINE), strict=True):
            a += i
            if b > a:
                mad = float(np.abs(x[a] - x[b]).mean())
                if mad < MAX_MAD:
                    rows.append((names[a], names[b], round(mad, 2)))
    return pd.DataFrame(rows, columns=["a", "b", "mad"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    paths = images(args.data)
    grey = np.stack(
        [np.asarray(Image.open(p).convert("L").resize((48, 48)), np.float32) for p in paths]
    )
    names = np.array([p.relative_to(args.data).as_posix() for p in paths])
    pairs = near_duplicates(grey, names)
    pairs.to_csv(args.out, index=False)
    kind = lambda s: s.str.split("/").str[:2].str.join("/")  # noqa: E731
    print(
        f"{len(pairs)} pairs; by sets: {pairs.groupby([kind(pairs['a']), kind(pairs['b'])]).size().to_dict()}"
    )


if __name__ == "__main__":
    main()
