"""Draw labelling sheets of FER2013 training faces and merge the labels back.

The occlusion network's last fitting stage (``bench/recipes/fit_occlusion.py --real-labels``)
learns from hand labels in ``bench/audit/fer2013_train_occlusion_labels.csv``. This
script makes more of them, the way the shipped ones were made:

``draw`` picks unlabelled faces from the seeded sample that ``fit_occlusion.py`` uses
(faces the landmarker found): ``--random`` drawn uniformly, plus ``--ranked`` drawn from
the 1,500 that the shipped occlusion network scores highest (to find more occluded faces).
They are shuffled and drawn as numbered sheets of 80 (the original 48x48 image at 96 px),
with a key CSV; nothing shows a score.

``merge`` reads the key and either a text file with the numbers of the occluded faces
(``--positives``: anything that covers part of the face: a hand or fingers on it,
glasses, an object, hair over an eye; hats above the brows and watermarks do not count;
rounds 1-5) or the kinds of cover of every face (``--kinds``: ``TAG: numbers`` lines, the
``kind`` values of ``bench/audit/README.md``; round 6 on), and appends the rows.

Usage::

    python -m bench.audit.label_sheets draw --out /tmp/sheets --random 640 --ranked 320 --seed 45 \\
        --crops-cache /tmp/fer_aligned.npz
    python -m bench.audit.label_sheets merge --key /tmp/sheets/key.csv --positives /tmp/sheets/occluded.txt

Round 6 (kinds; ranked by weights fitted on the dev labels only, holdout copies left out)::

    python -m bench.audit.label_sheets draw --out /tmp/r6 --random 640 --ranked 320 --seed 47 --rows 6 \\
        --crops-cache /tmp/fer_aligned.npz --rank-with DEV_WEIGHTS --skip-holdout-copies
    python -m bench.audit.label_sheets merge --key /tmp/r6/key.csv --kinds /tmp/r6/kinds.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.audit.audit_sheets import contact_sheets
from bench.common.paths import AUDIT
from bench.recipes.fit_occlusion import DATA, aligned_fer_faces
from curate.faces.holdout import kept_out_of_fitting
from curate.faces.occlusion import OcclusionModel

LABELS = AUDIT / "fer2013_train_occlusion_labels.csv"
KINDS = [
    "hand",
    "hand_edge",
    "sunglasses",
    "clear_glasses",
    "mask",
    "hair",
    "hat",
    "other",
    "not_a_face",
]
TAGS = {
    "handedge": "hand_edge",
    "sun": "sunglasses",
    "glasses": "clear_glasses",
    "notface": "not_a_face",
}


def draw(args: argparse.Namespace) -> None:
    crops, paths = aligned_fer_faces(args.n_faces, args.sample_seed, args.crops_cache)
    labels = pd.read_csv(args.labels)
    taken = set(labels["path"]) | (
        kept_out_of_fitting(paths.AUDIT, paths.DATA) if args.skip_holdout_copies else set()
    )
    free = np.flatnonzero(~np.isin(paths, list(taken)))
    rng = np.random.default_rng(args.seed)
    rand = rng.choice(free, args.random, replace=False)
    rest = np.setdiff1d(free, rand)
    rank_with = OcclusionModel(args.rank_with) if args.rank_with else OcclusionModel()
    score = rank_with.probabilities(crops[rest])[:, 0]
    ranked = rng.choice(rest[np.argsort(-score)][:1500], args.ranked, replace=False)
    chosen = np.concatenate([rand, ranked])
    rng.shuffle(chosen)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "number": np.arange(len(chosen)),
            "path": paths[chosen],
            "sample": np.where(np.isin(chosen, rand), "random", "ranked"),
        }
    ).to_csv(args.out / "key.csv", index=False)
    n = contact_sheets(
        [DATA / p for p in paths[chosen]], args.out, "sheet", cols=10, rows=args.rows, px=96
    )
    print(f"wrote {len(chosen)} faces on {n} sheets and key.csv to {args.out}")


def read_kinds(text: str, numbers: set[int]) -> dict[int, list[str]]:
    """Parse ``TAG: n n n`` lines (``#`` comments and ``sheet K`` lines ignored) into the
    kinds of cover of each face number; tags are the ``kind`` values of the labels file."""
    kinds: dict[int, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("sheet"):
            continue
        tag, _, nums = line.partition(":")
        tag = TAGS.get(tag.strip(), tag.strip())
        if tag not in KINDS:
            raise SystemExit(f"unknown kind {tag!r} (one of {', '.join(KINDS)})")
        for n in map(int, nums.split()):
            if n not in numbers:
                raise SystemExit(f"face {n} is not on the sheets")
            if tag in kinds.setdefault(n, []):
                raise SystemExit(f"face {n} has {tag} twice")
            kinds[n].append(tag)
    return {n: sorted(k, key=KINDS.index) for n, k in kinds.items()}


def merge(args: argparse.Namespace) -> None:
    key = pd.read_csv(args.key)
    labels = pd.read_csv(args.labels)
    if args.kinds is not None:
        kinds = read_kinds(args.kinds.read_text(), set(key["number"]))
        kind = key["number"].map(lambda n: ";".join(kinds.get(n, [])) or "none")
        # occluded by the first labelling's definition: anything over the face but a hat
        occluded = {n for n, k in kinds.items() if set(k) - {"hat", "not_a_face"}}
    else:
        occluded = {int(t) for t in args.positives.read_text().split()}
        kind = pd.Series("", index=key.index)
    unknown = occluded - set(key["number"])
    if unknown:
        raise SystemExit(f"{args.positives}: numbers not on the sheets: {sorted(unknown)[:10]}")
    new = key.assign(
        occluded=key["number"].isin(occluded).astype(int),
        kind=kind,
        round=int(labels["round"].max()) + 1,
    )[labels.columns]
    clash = new["path"].isin(labels["path"])
    if clash.any():
        raise SystemExit(
            f"{clash.sum()} faces are labelled already, e.g. {new.loc[clash, 'path'].iloc[0]}"
        )
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
    d.add_argument(
        "--rank-with",
        type=Path,
        default=None,
        help="weights that rank the faces for the ranked draw (default: the shipped ones)",
    )
    d.add_argument(
        "--skip-holdout-copies",
        action="store_true",
        help="leave out faces kept out of fitting (holdout faces and their near-duplicates)",
    )
    d.add_argument("--rows", type=int, default=8, help="rows of 10 faces per sheet")
    m = sub.add_parser("merge")
    m.add_argument("--key", type=Path, required=True)
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--positives", type=Path, help="numbers of the occluded faces")
    src.add_argument(
        "--kinds", type=Path, help="'TAG: numbers' lines, the kinds of cover (see read_kinds)"
    )
    m.add_argument("--labels", type=Path, default=LABELS)
    args = ap.parse_args()
    draw(args) if args.command == "draw" else merge(args)


if __name__ == "__main__":
    main()
