"""Draw labelling sheets of FER2013 training faces and merge the labels back.

The occlusion network's last fitting stage (``bench/fit_occlusion.py --real-labels``)
learns from hand labels in ``bench/audit/fer2013_train_occlusion_labels.csv``. This
script makes more of them, the way the shipped ones were made:

``draw`` picks unlabelled faces from the seeded sample that ``fit_occlusion.py`` uses
(faces the landmarker found): ``--random`` drawn uniformly, plus ``--ranked`` drawn from
the 1,500 that the shipped occlusion network scores highest (to find more occluded faces).
They are shuffled and drawn as numbered sheets of 80 (the original 48x48 image at 96 px),
with a key CSV; nothing shows a score.

``merge`` reads the key and a text file with the numbers of the occluded faces (anything
that covers part of the face: a hand or fingers on it, glasses, an object, hair over an
eye; hats above the brows and watermarks do not count) and appends the rows to the labels.

Usage::

    python bench/label_sheets.py draw --out /tmp/sheets --random 640 --ranked 320 --seed 45 \\
        --crops-cache /tmp/fer_aligned.npz
    python bench/label_sheets.py merge --key /tmp/sheets/key.csv --positives /tmp/sheets/occluded.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from audit_sheets import contact_sheets
from fit_occlusion import DATA, aligned_fer_faces

from curate.faces.occlusion import OcclusionModel

LABELS = Path(__file__).resolve().parent / "audit" / "fer2013_train_occlusion_labels.csv"


def draw(args: argparse.Namespace) -> None:
    crops, paths = aligned_fer_faces(args.n_faces, args.sample_seed, args.crops_cache)
    labels = pd.read_csv(args.labels)
    free = np.flatnonzero(~np.isin(paths, labels["path"]))
    rng = np.random.default_rng(args.seed)
    rand = rng.choice(free, args.random, replace=False)
    rest = np.setdiff1d(free, rand)
    score = OcclusionModel().probabilities(crops[rest])[:, 0]
    ranked = rng.choice(rest[np.argsort(-score)][:1500], args.ranked, replace=False)
    chosen = np.concatenate([rand, ranked])
    rng.shuffle(chosen)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"number": np.arange(len(chosen)), "path": paths[chosen],
                  "sample": np.where(np.isin(chosen, rand), "random", "ranked")}).to_csv(
        args.out / "key.csv", index=False)
    n = contact_sheets([DATA / p for p in paths[chosen]], args.out, "sheet", cols=10, rows=8, px=96)
    print(f"wrote {len(chosen)} faces on {n} sheets and key.csv to {args.out}")

def merge(args: argparse.Namespace) -> None:
    key = pd.read_csv(args.key)
    occluded = {int(t) for t in args.positives.read_text().split()}
    unknown = occluded - set(key["number"])
    if unknown:
        raise SystemExit(f"{args.positives}: numbers not on the sheets: {sorted(unknown)[:10]}")
    labels = pd.read_csv(args.labels)
    new = key.assign(occluded=key["number"].isin(occluded).astype(int),
                     round=int(labels["round"].max()) + 1)[labels.columns]
    clash = new["path"].isin(labels["path"])
    if clash.any():
        raise SystemExit(f"{clash.sum()} faces are labelled already, e.g. {new.loc[clash, 'path'].iloc[0]}")
    pd.concat([labels, new]).to_csv(args.labels, index=False)
    print(f"added {len(new)} labels ({new['occluded'].sum()} occluded) to {args.labels}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("draw")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--random", type=int, default=640)
    d.add_argument("--ranked", type=int, default=320)
    d.add_argument("--seed", type=int, default=45)
    d.add_argument("--n-faces", type=int, default=12000)
    d.add_argument("--sample-seed", type=int, default=0)
    d.add_argument("--crops-cache", type=Path, default=None)
    d.add_argument("--labels", type=Path, default=LABELS)
    m = sub.add_parser("merge")
    m.add_argument("--key", type=Path, required=True)
    m.add_argument("--positives", type=Path, required=True)
    m.add_argument("--labels", type=Path, default=LABELS)
    args = ap.parse_args()
    draw(args) if args.command == "draw" else merge(args)


if __name__ == "__main__":
    main()
