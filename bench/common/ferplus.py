"""FERPlus labels for FER2013: the loader the real-noise benchmarks share, and a manifest writer.

FERPlus (Barsoum et al., 2016) gave every FER2013 Training and PublicTest face ten votes.
Here an image's FERPlus label is the plurality over all ten vote categories; an image whose
top category is contempt, unknown or not-a-face, whose top vote is tied, or that has no
FERPlus row has no clean label (``ferplus_status`` says which). ``mislabelled`` is the shared
definition of real label noise: the original label differs from ``plurality_label_8cls``
of the votes file (false for ties and images without votes).

Write a manifest for ``curate build-tuples`` with the FERPlus labels (what a user who has the
votes would train on; images without a clean label are left out and counted)::

    python -m bench.common.ferplus manifest --out runs/ferplus/manifest.csv
    curate build-tuples runs/ferplus/manifest.csv --out runs/ferplus/tuples
    curate finetune runs/ferplus/tuples --soft-label-prefix soft_ ...   # or train on the plurality label
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import DATA as SHARED

IMAGE_EXT = (".jpg", ".jpeg", ".png")
FERPLUS_TO_FER = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprise": "surprise",
}
# FER2013 class names whose FERPlus name differs
TO_FERPLUS = {"angry": "anger", "happy": "happiness", "sad": "sadness"}
VOTE_CATEGORIES = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)


def sha256_of(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_table(data_root: Path, votes_csv: Path) -> pd.DataFrame:
    """Every FER2013 train/val image: ``path``, ``rel``, ``split``, ``label`` (original),
    ``sha256``, ``ferplus_label`` (None without a clean label), ``ferplus_status`` (``ok``,
    ``tied``, ``no_votes``, ``contempt``, ``unknown``, ``NF``), ``mislabelled`` and the
    ``votes_<category>`` columns. The votes file lists ``train/angry/Training_15784307.jpg``
    twice (identical rows), so that image has two rows here; the real-noise experiment's
    subset was drawn from this table, so it stays as it is (the manifest writer drops the copy)."""
    rows = [
        {"path": str(f), "rel": f"{split}/{cls.name}/{f.name}", "split": split, "label": cls.name}
        for split in ("train", "val")
        for cls in sorted((data_root / split).iterdir())
        if cls.is_dir()
        for f in sorted(cls.iterdir())
        if f.suffix.lower() in IMAGE_EXT
    ]
    if not rows:
        raise SystemExit(f"no images under {data_root}/train/<class>/")
    df = pd.DataFrame(rows)
    df["sha256"] = [sha256_of(p) for p in df["path"]]
    votes = pd.read_csv(votes_csv)
    df = df.merge(votes, left_on="rel", right_on="path", how="left", suffixes=("", "_votes"))
    vote_cols = [f"votes_{c}" for c in VOTE_CATEGORIES]
    v = df[vote_cols].to_numpy(dtype=float)
    has = ~np.isnan(v).any(axis=1)
    v = np.nan_to_num(v, nan=-1.0)
    top = v.max(axis=1)
    tied = (v == top[:, None]).sum(axis=1) > 1
    top_cat = np.array(VOTE_CATEGORIES, dtype=object)[v.argmax(axis=1)]
    status = np.where(~has, "no_votes", np.where(tied, "tied", top_cat))
    df["ferplus_status"] = [s if s not in FERPLUS_TO_FER else "ok" for s in status]
    df["ferplus_label"] = [
        FERPLUS_TO_FER.get(s) if st == "ok" else None
        for s, st in zip(status, df["ferplus_status"], strict=True)
    ]
    orig8 = df["label"].map({fer: plus for plus, fer in FERPLUS_TO_FER.items()})
    plural8 = df["plurality_label_8cls"]
    df["mislabelled"] = plural8.notna() & (orig8 != plural8)
    return df[
        [
            "path",
            "rel",
            "split",
            "label",
            "sha256",
            "ferplus_label",
            "ferplus_status",
            "mislabelled",
            *vote_cols,
        ]
    ]


def write_manifest(out: Path, data_root: Path, votes_csv: Path) -> dict[str, int]:
    """``path,label,split,original_label,soft_<class>...`` with the FERPlus label of every train
    and val image that has one and its votes for the seven FER2013 classes (``curate finetune
    --soft-label-prefix soft_``; contempt, unknown and not-a-face votes dropped); returns the
    counts of the images left out, by reason and split."""
    table = load_table(data_root, votes_csv).drop_duplicates("path")
    ok = table["ferplus_label"].notna()
    m = table[ok].assign(original_label=lambda d: d["label"], label=lambda d: d["ferplus_label"])
    soft = [f"soft_{fer}" for fer in FERPLUS_TO_FER.values()]
    for plus, fer in FERPLUS_TO_FER.items():
        m[f"soft_{fer}"] = m[f"votes_{plus}"].astype(int)
    out.parent.mkdir(parents=True, exist_ok=True)
    m[["path", "label", "split", "original_label", *soft]].to_csv(out, index=False)
    left = table[~ok].groupby(["split", "ferplus_status"]).size()
    return {f"{s}/{r}": int(n) for (s, r), n in left.items()}


def write_soft_manifest(out: Path, data_root: Path, votes_csv: Path) -> dict[str, int]:
    """The training manifest of the bundled ``fer_resnet18_ferplus`` (issue 24):
    ``path,label,split,original_label,ferplus_status,soft_<class>...``.

    Soft targets: the votes for the seven FER2013 classes; contempt, unknown and not-a-face
    votes are dropped (the network has no such class) and ``curate finetune`` normalises
    each row. Training images (``train``) keep every image with at least one vote for the
    seven classes, also those whose plurality is tied or is contempt/unknown/not-a-face
    (their soft targets still say something); their ``label`` (what the tuples and the
    per-epoch accuracy use) is the plurality of the seven classes, a tie broken towards
    the original label when it is among the tied classes, else the first tied class in
    ``FERPLUS_TO_FER`` order. Validation images (``val``, PublicTest) keep the evaluation
    convention of :func:`load_table`: only images with a clean FERPlus label, which is
    their ``label``. Left out, counted: images without a FERPlus row, training images
    with no vote for the seven classes, validation images without a clean label."""
    table = load_table(data_root, votes_csv).drop_duplicates("path").reset_index(drop=True)
    plus = list(FERPLUS_TO_FER)
    votes = table[[f"votes_{c}" for c in plus]].to_numpy(dtype=float)
    has = ~np.isnan(votes).any(axis=1)
    votes = np.nan_to_num(votes)
    top = votes.max(axis=1, keepdims=True)
    tied = (votes == top) & (top > 0)
    orig = table["label"].map({fer: i for i, fer in enumerate(FERPLUS_TO_FER.values())}).to_numpy()
    pick = np.where(tied[np.arange(len(table)), orig], orig, tied.argmax(axis=1))
    fer = np.array(list(FERPLUS_TO_FER.values()), dtype=object)
    train = (table["split"] == "train") & has & (votes.sum(axis=1) > 0)
    val = (table["split"] == "val") & table["ferplus_label"].notna()
    m = table.assign(
        original_label=table["label"],
        label=np.where(table["split"] == "train", fer[pick], table["ferplus_label"]),
    )
    for i, f in enumerate(FERPLUS_TO_FER.values()):
        m[f"soft_{f}"] = votes[:, i].astype(int)
    keep = train | val
    out.parent.mkdir(parents=True, exist_ok=True)
    m[keep][
        [
            "path",
            "label",
            "split",
            "original_label",
            "ferplus_status",
            *[f"soft_{f}" for f in FERPLUS_TO_FER.values()],
        ]
    ].to_csv(out, index=False)
    left = table[~keep].groupby(["split", "ferplus_status"]).size()
    return {f"{s}/{r}": int(n) for (s, r), n in left.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    mp = sub.add_parser("manifest", help="write a build-tuples manifest with the FERPlus labels")
    sp = sub.add_parser(
        "soft-manifest", help="write the training manifest of issue 24 (soft vote targets)"
    )
    for q in (mp, sp):
        q.add_argument("--out", type=Path, required=True)
        q.add_argument("--data-root", type=Path, default=SHARED / "fer2013")
        q.add_argument(
            "--votes", type=Path, default=SHARED / "ferplus" / "ferplus_votes_train_val.csv"
        )
    args = p.parse_args(argv)
    left = (write_manifest if args.cmd == "manifest" else write_soft_manifest)(
        args.out, args.data_root, args.votes
    )
    print(f"wrote {args.out}; left out (no clean FERPlus label): {left}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
