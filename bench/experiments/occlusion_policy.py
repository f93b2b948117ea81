"""Which covers hurt expression labels? FERPlus measures per kind of cover and per pose.

For the hand-labelled FER2013 training faces (``kind`` column of
``bench/audit/fer2013_train_occlusion_labels.csv``) and the face audit's ``fer2013/val``
faces (``bench/audit/face_audit.csv``), grouped by what covers the face, prints:

- ``top vote``: share of the ten FERPlus annotators' votes for the most voted expression
  (how much people agree on the expression);
- ``unknown/NF``: share of votes for "unknown" or "not a face";
- ``mislabelled``: FER2013's label differs from the FERPlus plurality;
- ``kNN agree``: share of the 10 nearest neighbours (bundled backbone embedding, all
  FER2013 train + val images in FERPlus, exact copies left out) with the same FERPlus
  plurality label;
- ``head acc``: the bundled model's predicted class equals the FERPlus plurality (its
  backbone was fitted on FER2013 training faces, so on the training faces this is
  optimistic).

Each with a bootstrap standard error. This is the measure behind the occlusion policy
in ``bench/audit/README.md``: clear glasses (and hats) do not hurt, hands do.

Usage (embeds all FER2013 train + val images with the bundled backbone once; a few
minutes on 2 cores, seconds with a filled cache)::

    python -m bench.experiments.occlusion_policy [--data ../shared/data] [--cache-dir /tmp/curate_emb]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import AUDIT, DATA

EMOTIONS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
TO_FERPLUS = {"angry": "anger", "happy": "happiness", "sad": "sadness"}
POLICY = {"hand", "hand_edge", "sunglasses", "mask", "hair", "other"}


def cover_group(kind: str) -> str:
    """One group per face: hand beats sunglasses beats other covers beats glasses / hat."""
    k = set(str(kind).split(";")) - {"", "none"}
    if not k:
        return "nothing"
    if k & {"hand"}:
        return "hand"
    if k == {"hand_edge"}:
        return "hand at the edge"
    if "sunglasses" in k:
        return "sunglasses"
    if k & {"mask", "hair", "other", "hand_edge"}:
        return "mask / hair / object"
    if k == {"clear_glasses"}:
        return "clear glasses only"
    if k <= {"hat", "clear_glasses"}:
        return "hat (with or without glasses)"
    return "not a face"


def ferplus_table(data: Path, cache_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """FERPlus-voted FER2013 train + val images: ``rel``, vote measures, ``pred``; and their
    unit-norm embeddings with the bundled backbone."""
    import torch

    from curate.backbone import bundled_model_dir, load_backbone
    from curate.embed import embed_images_result
    from curate.runs import load_run

    votes = pd.read_csv(data / "ferplus" / "ferplus_votes_train_val.csv").rename(
        columns={"path": "rel"}
    )
    votes = votes[votes["n_votes"] > 0].reset_index(drop=True)
    paths = [str(data / "fer2013" / r) for r in votes["rel"]]
    sha = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    emb = embed_images_result(
        paths, sha, load_backbone(None, None), cache_dir=cache_dir, batch_size=256
    ).embeddings
    net, cfg = load_run(bundled_model_dir())
    with torch.no_grad():
        pred = net.logits_from_embeddings(torch.from_numpy(emb)).numpy().argmax(1)
    v = votes[[f"votes_{e}" for e in EMOTIONS]].to_numpy(float)
    orig = votes["fer2013_orig_label"].map(lambda s: TO_FERPLUS.get(s, s))
    plural = votes["plurality_label_8cls"].fillna("")
    t = pd.DataFrame(
        {
            "rel": votes["rel"],
            "plurality": plural,
            "top vote": v.max(1) / np.maximum(v.sum(1), 1),
            "unknown/NF": (votes["votes_unknown"] + votes["votes_NF"]) / votes["n_votes"],
            "mislabelled": np.where(plural != "", (orig != plural).astype(float), np.nan),
            "pred": [TO_FERPLUS.get(c, c) for c in np.asarray(cfg["classes"])[pred]],
        }
    )
    t["head acc"] = np.where(plural != "", (t["pred"] == plural).astype(float), np.nan)
    return t, emb / np.linalg.norm(emb, axis=1, keepdims=True)


def knn_agreement(rows: np.ndarray, emb: np.ndarray, plural: np.ndarray, k: int = 10) -> np.ndarray:
    """Share of each row's k nearest neighbours (cosine; exact copies left out) sharing its label."""
    out = np.full(len(rows), np.nan)
    for j, i in enumerate(rows):
        s = emb @ emb[i]
        s[s > 0.9999] = -9.0  # itself and byte-identical copies
        nn = np.argpartition(-s, k)[:k]
        if plural[i]:
            out[j] = np.mean(plural[nn] == plural[i])
    return out


def print_groups(
    title: str, faces: pd.DataFrame, table: pd.DataFrame, emb: np.ndarray, by: str
) -> None:
    """``faces``: ``rel`` (relative to fer2013/) and a ``by`` column."""
    where = {r: i for i, r in enumerate(table["rel"])}
    faces = faces[faces["rel"].isin(where)].copy()
    rows = faces["rel"].map(where).to_numpy()
    faces = pd.concat(
        [faces.reset_index(drop=True), table.iloc[rows].reset_index(drop=True).drop(columns="rel")],
        axis=1,
    )
    faces["kNN agree"] = knn_agreement(rows, emb, table["plurality"].to_numpy())
    rng = np.random.default_rng(0)
    cols = ["top vote", "unknown/NF", "mislabelled", "kNN agree", "head acc"]
    print(f"\n{title} ({len(faces)} faces in FERPlus)")
    print(f"{'':32s} {'n':>5s} " + " ".join(f"{c:>13s}" for c in cols))
    for g, d in faces.groupby(by):
        cells = []
        for c in cols:
            x = d[c].dropna().to_numpy(float)
            se = (
                np.std([rng.choice(x, len(x)).mean() for _ in range(300)]) if len(x) > 1 else np.nan
            )
            cells.append(f"{x.mean():.3f} ±{se:.3f}")
        print(f"{str(g):32s} {len(d):5d} " + " ".join(f"{c:>13s}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/curate_emb"))
    args = ap.parse_args()
    table, emb = ferplus_table(args.data, args.cache_dir)
    labels = pd.read_csv(AUDIT / "fer2013_train_occlusion_labels.csv").fillna({"kind": ""})
    labels["rel"] = "train/" + labels["path"]
    labels["cover"] = [
        cover_group(k if o == 1 or k else "")
        for o, k in zip(labels["occluded"], labels["kind"], strict=True)
    ]
    print_groups(
        "FER2013 training faces with occlusion hand labels, by kind of cover",
        labels,
        table,
        emb,
        "cover",
    )
    audit = pd.read_csv(AUDIT / "face_audit.csv").fillna({"cover": ""})
    audit = audit[audit["source"] == "fer2013/val"].copy()
    audit["rel"] = audit["path"].str.removeprefix("fer2013/")
    audit["group"] = audit["cover"].map(cover_group)
    print_groups("face audit, fer2013/val faces, by kind of cover", audit, table, emb, "group")
    plain = audit[audit["cover"] == ""].copy()
    plain["pose"] = plain["pose"].map({0: "0 frontal", 1: "1 ambiguous", 2: "2 clearly turned"})
    print_groups(
        "face audit, fer2013/val faces with nothing over the face, by pose",
        plain,
        table,
        emb,
        "pose",
    )


if __name__ == "__main__":
    main()
