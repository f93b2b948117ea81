"""Tiny hand-made build folders for the screen tests (planted clusters, one mislabeled image)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from curate.io import file_sha256

CLASSES = ("angry", "happy", "sad", "surprise")
TUPLE_COLUMNS = [
    "tuple_id",
    "anchor",
    "positive",
    "negative",
    "anchor_label",
    "negative_label",
    "split",
]


def make_build(
    root: Path,
    *,
    per_class: int = 12,
    dim: int = 16,
    kind: str = "triplet",
    per_anchor: int = 6,
    mislabeled: int | None = 5,
    seed: int = 0,
) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """A build folder (images.parquet, tuples.parquet, run.json) with clustered embeddings.

    Image ``mislabeled`` carries the label of class 0 but sits in the cluster of class 1.
    Returns the folder, the images table and the planted embeddings (row = image_id).
    """
    rng = np.random.default_rng(seed)
    img_dir = root / "images"
    centres = np.linalg.qr(rng.normal(size=(dim, len(CLASSES))))[0].T * 3.0
    rows, emb = [], []
    for c, label in enumerate(CLASSES):
        for i in range(per_class):
            image_id = len(rows)
            path = img_dir / label / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            noise = rng.integers(0, 256, (12, 12), dtype=np.uint8)  # 24 x 24: not `too_small`
            Image.fromarray(noise.repeat(2, 0).repeat(2, 1), "L").save(path)
            cluster = 1 if image_id == mislabeled else c
            emb.append(centres[cluster] + 0.5 * rng.normal(size=dim))
            rows.append(
                {
                    "image_id": image_id,
                    "path": str(path.resolve()),
                    "rel_path": f"{label}/{i:03d}.png",
                    "label": label,
                    "split": "train",
                    "subject": None,
                    "width": 24,
                    "height": 24,
                    "mode": "L",
                    "sha256": file_sha256(path),
                    "status": "ok",
                    "detail": None,
                }
            )
    images = pd.DataFrame(rows)
    labels = images["label"].to_numpy()
    tuples = []
    for a in images["image_id"]:
        same = np.flatnonzero((labels == labels[a]) & (images["image_id"].to_numpy() != a))
        other = np.flatnonzero(labels != labels[a])
        for _ in range(per_anchor):
            n, n2 = rng.choice(other, 2, replace=False)
            t = {
                "anchor": a,
                "positive": int(rng.choice(same)),
                "negative": int(n),
                "anchor_label": labels[a],
                "negative_label": labels[n],
            }
            if kind == "quadruplet":
                t.update(negative2=int(n2), negative2_label=labels[n2])
            tuples.append(t)
    tdf = pd.DataFrame(tuples)
    tdf.insert(0, "tuple_id", np.arange(len(tdf), dtype=np.int64))
    tdf["split"] = "train"
    build = root / "build"
    build.mkdir(parents=True, exist_ok=True)
    images.to_parquet(build / "images.parquet", index=False)
    tdf.to_parquet(build / "tuples.parquet", index=False)
    (build / "run.json").write_text(
        json.dumps(
            {"command": "build-tuples", "params": {"kind": kind}, "inputs": {"fingerprint": "x"}}
        )
    )
    return build, images, np.array(emb)


def write_embeddings(
    path: Path, images: pd.DataFrame, emb: np.ndarray, by: str = "image_id"
) -> Path:
    pd.DataFrame({by: images[by], "embedding": [list(map(float, e)) for e in emb]}).to_parquet(path)
    return path


def fake_screen_faces(side: int, seen: dict | None = None):
    """A stand-in for ``curate.screens.faces.screen_faces``: image ``side`` is turned 55
    degrees, every other face is frontal and clear. ``seen`` records the arguments of the
    last call."""

    def screen_faces(
        imgs,
        *,
        cache_dir,
        max_yaw=30.0,
        max_occlusion=0.5,
        no_face="reject",
        face_model=None,
        progress=None,
        engine=None,
        analysis=None,
    ):
        if seen is not None:
            seen.update(
                n=len(imgs),
                engine=engine,
                max_yaw=max_yaw,
                max_occlusion=max_occlusion,
                cache_dir=cache_dir,
            )
        yaw = np.where(imgs["image_id"] == side, 55.0, 3.0)
        reject = np.abs(yaw) > max_yaw
        return pd.DataFrame(
            {
                "image_id": imgs["image_id"].to_numpy(),
                "path": imgs["path"].to_numpy(),
                "face_found": True,
                "yaw": yaw,
                "pitch": 0.0,
                "roll": 0.0,
                "occlusion": 0.0,
                "occlusion_any": 0.1,
                "face_confidence": 0.9,
                "detail": None,
                "face_reject": reject,
                "face_reason": np.where(reject, "side_face", None),
            }
        )

    return screen_faces
