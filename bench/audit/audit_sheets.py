"""Draw the blind contact sheets behind ``bench/audit/*.csv`` (for re-labelling).

The audits are hand labels of face-conditions faces, made to check the benchmark's flags
themselves. The sheets show numbered faces in a seeded shuffled order and hide the flags
and every score; the key (sheet number -> path) is written beside them, so another
annotator can label the sheets blind and compare. Nothing is written to the repository.

Usage::

    python -m bench.audit.audit_sheets --out /tmp/audit [--data ../shared/data/face-conditions]

Samples (seeds fixed, so the sheets are those the shipped labels were made from):

- pose: 40 unflagged, 40 ``yaw_over_30`` only, 40 ``yaw_over_45`` faces
  (``random_state=7`` each), shuffled with ``random_state=11``;
- occlusion: from the remaining faces, 60 unflagged-for-yaw-and-occlusion and 60
  ``occluded`` faces (``random_state=5``), shuffled with ``random_state=13``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from bench.common import paths

DATA = paths.DATA / "face-conditions"


def samples(labels: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The pose and occlusion audit samples, in sheet order."""
    d = labels
    unf = d[(d.yaw_over_30 == 0) & (d.occluded == 0)]
    pose = pd.concat(
        [
            unf.sample(40, random_state=7),
            d[(d.yaw_over_30 == 1) & (d.yaw_over_45 == 0)].sample(40, random_state=7),
            d[d.yaw_over_45 == 1].sample(40, random_state=7),
        ]
    )
    pose = pose.sample(frac=1, random_state=11).reset_index(drop=True)
    rest = d[~d.path.isin(pose.path)]
    unf = rest[(rest.yaw_over_30 == 0) & (rest.occluded == 0)]
    occ = pd.concat(
        [unf.sample(60, random_state=5), rest[rest.occluded == 1].sample(60, random_state=5)]
    )
    occ = occ.sample(frac=1, random_state=13).reset_index(drop=True)
    return {"pose": pose, "occlusion": occ}


def contact_sheets(
    images: list[Path],
    out: Path,
    name: str,
    *,
    cols: int,
    rows: int,
    px: int,
    first_number: int = 0,
) -> int:
    """Numbered sheets of ``cols`` x ``rows`` grey faces at ``px`` pixels, saved as
    ``OUT/NAME_<k>.png``; face ``j`` is labelled ``first_number + j``. Returns the count."""
    per_sheet = cols * rows
    for first in range(0, len(images), per_sheet):
        sheet = Image.new("L", (cols * px, rows * (px + 16)), 255)
        pen = ImageDraw.Draw(sheet)
        for i, j in enumerate(range(first, min(first + per_sheet, len(images)))):
            x, y = (i % cols) * px, (i // cols) * (px + 16)
            sheet.paste(Image.open(images[j]).convert("L").resize((px, px)), (x, y))
            pen.text((x + px // 2 - 10, y + px + 1), str(first_number + j), fill=0)
        sheet.save(out / f"{name}_{first // per_sheet:02d}.png")
    return (len(images) + per_sheet - 1) // per_sheet


def draw(sample: pd.DataFrame, data: Path, out: Path, name: str) -> None:
    """Sheets of 8 x 5 faces at 120 px, numbered; the key goes to ``NAME_key.csv``."""
    sample[["path"]].to_csv(out / f"{name}_key.csv", index_label="number")
    contact_sheets([data / p for p in sample["path"]], out, name, cols=8, rows=5, px=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, sample in samples(pd.read_csv(args.data / "labels.csv")).items():
        draw(sample, args.data, args.out, name)
    print(f"wrote blind sheets and keys to {args.out}")


if __name__ == "__main__":
    main()
