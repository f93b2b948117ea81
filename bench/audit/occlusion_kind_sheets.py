"""Draw the blind sheets behind the ``kind`` column of the FER2013 occlusion hand labels.

``bench/audit/fer2013_train_occlusion_labels.csv`` says whether a face is occluded; its
``kind`` column says by what (``bench/audit/README.md``). The kinds were labelled on
sheets of every face labelled occluded plus 108 faces labelled not occluded (drawn with
``numpy.random.default_rng(31)``, to measure the agreement with the first labelling),
shuffled together (``default_rng(32)``), as numbered sheets of 10 x 6 faces at 96 px
with no score and no earlier label shown. The key (number -> path) is written beside
them. Nothing is written to the repository.

Usage::

    python -m bench.audit.occlusion_kind_sheets --out /tmp/kinds
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.audit.audit_sheets import contact_sheets
from bench.common import paths

DATA = paths.DATA / "fer2013" / "train"
LABELS = paths.AUDIT / "fer2013_train_occlusion_labels.csv"
N_CHECK = 108


def sample(labels: pd.DataFrame) -> pd.DataFrame:
    """The faces on the sheets, in sheet order: ``number``, ``path``."""
    occluded = labels.loc[labels["occluded"] == 1, "path"].tolist()
    clean = labels.loc[labels["occluded"] == 0, "path"].to_numpy()
    check = clean[
        np.sort(np.random.default_rng(31).choice(len(clean), N_CHECK, replace=False))
    ].tolist()
    paths = np.array(occluded + check)
    paths = paths[np.random.default_rng(32).permutation(len(paths))]
    return pd.DataFrame({"number": np.arange(len(paths)), "path": paths})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--labels", type=Path, default=LABELS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    d = sample(pd.read_csv(args.labels))
    d.to_csv(args.out / "key.csv", index=False)
    n = contact_sheets([DATA / p for p in d["path"]], args.out, "sheet", cols=10, rows=6, px=96)
    print(f"wrote {len(d)} faces on {n} sheets and key.csv to {args.out}")


if __name__ == "__main__":
    main()
