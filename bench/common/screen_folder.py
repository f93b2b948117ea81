"""A fabricated ``curate screen`` output folder, shared by the report's tests and
``bench/speed/bench_report.py`` (so the benchmark imports no test module).

``make_screen_dir`` writes what ``curate screen`` writes (contracts in docs/tables.md):
tiny PNG faces drawn with PIL, the build folder's images.parquet, scores with planted
distances, boundary.json, faces.parquet, images_suspect.parquet and run.json. The
keep/reason columns follow the screen's rules, so the report's recomputations can be
checked against them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from curate.report.sensitivity import t_neg, t_pos

LABELS = ["angry", "happy", "sad", "surprise", "neutral", "<script>alert(1)</script>"]
EVIL_NAME = "say \"cheese\" 'now'.png"


def face_image(label_idx: int, size: int = 48) -> Image.Image:
    """A 48 x 48 grey cartoon face; the mouth curves with ``label_idx``."""
    im = Image.new("L", (size, size), 30)
    d = ImageDraw.Draw(im)
    d.ellipse((6, 4, size - 6, size - 2), fill=170)
    d.ellipse((14, 16, 20, 22), fill=20)
    d.ellipse((28, 16, 34, 22), fill=20)
    curve = (label_idx % 3 - 1) * 5
    d.line((16, 36 + curve, 24, 36 - curve, 32, 36 + curve), fill=40, width=2)
    return im


def make_screen_dir(
    root: Path,
    *,
    n_images: int = 36,
    n_tuples: int = 240,
    quadruplet: bool = False,
    faces: bool = True,
    random_weights: bool = False,
    misfit: bool = False,
    no_face_share: float = 0.05,
    write_images: bool = True,
    labels=LABELS,
    seed: int = 0,
) -> dict[str, Any]:
    """Fabricate a build folder and a screen output folder under ``root``."""
    rng = np.random.default_rng(seed)
    build, screen, img_dir = root / "build", root / "screen", root / "images"
    for p in (build, screen, img_dir):
        p.mkdir(parents=True, exist_ok=True)
    lab_idx = np.arange(n_images) % len(labels)
    names = [f"img_{i:04d}.png" for i in range(n_images)]
    names[1] = EVIL_NAME
    paths = [str(img_dir / n) for n in names]
    if write_images:
        for i, p in enumerate(paths):
            face_image(int(lab_idx[i])).save(p)
    images = pd.DataFrame(
        {
            "image_id": np.arange(n_images, dtype="int64"),
            "path": paths,
            "rel_path": [f"images/{n}" for n in names],
            "label": [labels[k] for k in lab_idx],
            "split": "train",
            "subject": None,
            "width": 48,
            "height": 48,
            "mode": "L",
            "sha256": None,
            "status": "ok",
            "detail": None,
        }
    )
    images.to_parquet(build / "images.parquet", index=False)
    (build / "run.json").write_text(json.dumps({"params": {"source": str(img_dir)}}))

    # tuples: anchor and positive share a label, negatives differ
    by_label = {k: np.flatnonzero(lab_idx == k) for k in range(len(labels))}
    a_lab = rng.integers(0, len(labels), n_tuples)
    n_lab = (a_lab + rng.integers(1, len(labels), n_tuples)) % len(labels)

    def pick(labs: np.ndarray) -> np.ndarray:
        out = np.empty(labs.size, dtype=np.int64)
        for k, members_k in by_label.items():
            where = labs == k
            out[where] = rng.choice(members_k, size=int(where.sum()))
        return out

    t = pd.DataFrame(
        {
            "tuple_id": np.arange(n_tuples),
            "anchor": pick(a_lab),
            "positive": pick(a_lab),
            "negative": pick(n_lab),
        }
    )
    t["anchor_label"] = [labels[k] for k in a_lab]
    t["negative_label"] = [labels[k] for k in n_lab]
    d_null = 6.0
    mu, sigma = np.sqrt(2), 1 / np.sqrt(2 * d_null)
    tp, tn = float(t_pos(mu, sigma, 0.05)), float(t_neg(mu, sigma, 0.05))
    t["d_ap"] = rng.normal(0.9, 0.2, n_tuples).clip(0.05, 2)
    t["d_an"] = rng.normal(1.45, 0.2, n_tuples).clip(0.05, 2)
    t.loc[[0, 3, 4, 6], "d_ap"] = [1.99, 1.95, 1.93, 1.91]  # 0: the most abnormal positive pair
    t.loc[[1, 5, 7], "d_an"] = [0.06, 0.5, 0.7]  # 1: the most abnormal negative pair
    if quadruplet:
        n2_lab = (n_lab + 1) % len(labels)
        n2_lab = np.where(n2_lab == a_lab, (n2_lab + 1) % len(labels), n2_lab)
        t.insert(4, "negative2", pick(n2_lab))
        t["negative2_label"] = [labels[k] for k in n2_lab]
        t["d_an2"] = rng.normal(1.45, 0.2, n_tuples).clip(0.05, 2)
        t["d_nn2"] = rng.normal(1.45, 0.2, n_tuples).clip(0.05, 2)
        t.loc[2, "d_nn2"] = 0.1
    t["split"] = "train"

    # faces
    max_yaw, max_occ = 30.0, 0.5
    fdf = pd.DataFrame({"image_id": images["image_id"], "path": paths})
    found = rng.random(n_images) >= no_face_share
    found[3] = False
    found[[0, 2]] = True
    yaw = np.where(found, rng.normal(0, 20, n_images), np.nan)
    yaw[4] = 62.0
    yaw[1] = -55.0  # the file name with quotes is a side face: it shows in the galleries
    found[1] = True
    occ = np.where(found, rng.beta(1.5, 6, n_images), np.nan)
    occ[5] = 0.9
    fdf["face_found"] = found
    fdf["yaw"], fdf["pitch"], fdf["roll"] = (
        yaw,
        np.where(found, 0.0, np.nan),
        np.where(found, 0.0, np.nan),
    )
    fdf["occlusion"] = occ
    fdf["occlusion_any"] = np.maximum(occ, 0.3)
    fdf["face_confidence"] = np.where(found, 0.9, 0.0)
    fdf["detail"] = None
    codes = [
        ";".join(
            c
            for c, on in (
                ("side_face", abs(y) > max_yaw),
                ("occluded", o > max_occ),
                ("no_face", not f),
            )
            if on
        )
        or None
        for y, o, f in zip(yaw, occ, found, strict=True)
    ]
    fdf["face_reason"] = pd.Series(codes, dtype="string")
    fdf["face_reject"] = [c is not None for c in codes]

    # verdicts, following the screen's rules (vectorised: the benchmark makes a million)
    members = ["anchor", "positive", "negative"] + (["negative2"] if quadruplet else [])
    neg_cols = ["d_an"] + (["d_an2", "d_nn2"] if quadruplet else [])
    face_flags = {
        "side_face": np.abs(np.nan_to_num(yaw)) > max_yaw,
        "occluded": np.nan_to_num(occ) > max_occ,
        "no_face": ~found,
    }
    verdicts = {
        "positive_too_far": t["d_ap"].to_numpy() > tp,
        "negative_too_close": t[neg_cols].min(axis=1).to_numpy() < tn,
    }
    for code, per_image in face_flags.items():
        hit = np.zeros(n_tuples, bool)
        if faces:
            for m in members:
                hit |= per_image[t[m].to_numpy()]
        verdicts[code] = hit
    bits = sum(v.astype(np.int64) << k for k, v in enumerate(verdicts.values()))
    names = list(verdicts)
    table = [
        ";".join(c for k, c in enumerate(names) if b >> k & 1) or None
        for b in range(2 ** len(names))
    ]
    t["reason"] = pd.Series(np.array(table, dtype=object)[bits], dtype="string")
    t["keep"] = bits == 0
    t.to_parquet(screen / "scores.parquet", index=False)
    cols = [c for c in t.columns if c not in ("d_ap", "d_an", "d_an2", "d_nn2", "keep", "reason")]
    t.loc[t["keep"], cols].to_parquet(screen / "kept.parquet", index=False)
    t.loc[~t["keep"], cols].to_parquet(screen / "rejected.parquet", index=False)
    if faces:
        fdf.to_parquet(screen / "faces.parquet", index=False)

    # images_suspect
    long = pd.concat([pd.DataFrame({"image_id": t[m], "rej": ~t["keep"]}) for m in members])
    agg = (
        long.groupby("image_id")["rej"]
        .agg(["size", "sum"])
        .rename(columns={"size": "n_tuples", "sum": "n_rejected"})
    )
    sus = images[["image_id", "path", "rel_path", "label", "split"]].merge(
        agg, left_on="image_id", right_index=True
    )
    sus["n_rejected"] = sus["n_rejected"].astype("int64")
    sus["suspicion"] = sus["n_rejected"] / sus["n_tuples"]
    if faces:
        # as the face screen scores: past 1 on either measure is rejected
        fdf["face_score"] = np.fmax(np.abs(yaw) / max_yaw, occ / max_occ)
        sus = sus.merge(
            fdf[["image_id", "face_found", "yaw", "occlusion", "face_score", "face_reason"]],
            on="image_id",
        )
    sus = sus.sort_values("suspicion", ascending=False, kind="stable")
    sus.to_parquet(screen / "images_suspect.parquet", index=False)

    # boundary.json
    rp = rng.normal(mu, sigma * (2.0 if misfit else 1.0), 2000)
    share_above, share_below = float((rp > tp).mean()), float((rp < tn).mean())
    boundary = {
        "s": 1.0,
        "d": 128,
        "center": True,
        "null": "effective",
        "d_null": d_null,
        "mu": mu,
        "sigma": sigma,
        "alpha_pos": 0.05,
        "alpha_neg": 0.05,
        "t_pos": tp,
        "t_neg": tn,
        "nulls": {
            "theory": {"d_null": 128, "mu": mu, "sigma": 1 / np.sqrt(256)},
            "effective": {"d_null": d_null, "mu": mu, "sigma": sigma},
            "empirical": {
                "d_null": None,
                "mu": float(np.median(rp)),
                "sigma": float(1.4826 * np.median(np.abs(rp - np.median(rp)))),
            },
        },
        "calibration": {
            "n_pairs": rp.size,
            "share_above_t_pos": share_above,
            "share_below_t_neg": share_below,
            "nominal_alpha_pos": 0.05,
            "nominal_alpha_neg": 0.05,
        },
        "random_pair_distances": [round(float(x), 4) for x in rp],
    }
    (screen / "boundary.json").write_text(json.dumps(boundary))
    # like curate screen: the --weights value in params, the outcome in inputs
    params = {
        "build_dir": str(build),
        "backbone": "resnet18",
        "weights": "none" if random_weights else "/models/fer.safetensors",
        "null": "effective",
        "alpha_pos": 0.05,
        "alpha_neg": 0.05,
        "max_yaw": max_yaw,
        "max_occlusion": max_occ,
        "kind": "quadruplet" if quadruplet else "triplet",
    }
    run = {
        "command": "screen",
        "params": params,
        "inputs": {"build_dir": str(build), "random_weights": random_weights},
        "counts": {"images": n_images, "tuples": n_tuples},
        "versions": {"curate": "0.1.0", "python": "3.11"},
        "started_at": "2026-11-26T14:00:00+0000",
        "seconds": 12.5,
    }
    (screen / "run.json").write_text(json.dumps(run))
    return {
        "screen": screen,
        "build": build,
        "scores": t,
        "faces": fdf,
        "t_pos": tp,
        "t_neg": tn,
        "mu": mu,
        "sigma": sigma,
    }
