"""``screen``: embed the images of a build, apply the statistical boundary and the face
screens to every tuple, and write scores, kept/rejected tuples, suspect images, the
boundary and the run record (see ``docs/tables.md``)."""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.io import fingerprint_table, read_parquet, run_record, write_json, write_parquet
from curate.screens.statistical import (
    NULLS,
    Boundary,
    apply_boundary,
    fit_boundary,
    normalize,
    thresholds,
    tuple_distances,
)

StageProgress = Callable[[str, int, int], None]
ROLES = ("anchor", "positive", "negative", "negative2")
FACE_COLUMNS = ("face_found", "yaw", "occlusion", "face_reject", "face_reason")


@dataclass
class ScreenResult:
    """What :func:`screen` wrote and counted."""

    out_dir: Path
    kind: str
    n_images: int
    n_tuples: int
    n_kept: int
    n_rejected: int
    reasons: dict[str, int]
    boundary: Boundary
    backbone: str
    weights_source: str
    random_weights: bool
    n_embedded: int
    n_cached: int
    face_screens: bool
    report_path: Path | None
    notes: list[str] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Embedded:
    emb: np.ndarray
    backbone: str
    weights_source: str
    fingerprint: str
    random_weights: bool
    n_computed: int
    n_cached: int


def screen(build_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
           backbone: str | None = None, weights: str | None = None,
           embeddings: str | os.PathLike[str] | None = None, alpha_pos: float = 0.05,
           alpha_neg: float = 0.05, null: str = "effective", center: bool = True,
           scale: float = 1.0, batch_size: int = 64, workers: int | None = None,
           device: str = "cpu", seed: int = 0, max_yaw: float = 30.0,
           max_occlusion: float | None = None, no_face: str = "reject",
           skip_face_screens: bool = False, face_model: str | None = None,
           report: bool = True, progress: StageProgress | None = None) -> ScreenResult:
    """Screen every tuple of ``build_dir`` (a ``curate build-tuples`` folder) into ``out_dir``.

    Embeddings come from ``embeddings`` (a Parquet file) when given, else from the
    backbone (see :func:`curate.backbone.load_backbone`), cached in
    ``out_dir/embeddings``. ``progress(stage, done, total)`` reports the ``embed``
    and ``faces`` stages. ``report=False`` skips ``report.html``.
    """
    started = time.time()
    if null not in NULLS:
        raise CurateError(f"unknown --null {null!r}", hint=f"use one of {', '.join(NULLS)}")
    build, out = Path(build_dir).expanduser(), Path(out_dir).expanduser()
    if out.resolve() == build.resolve():
        raise CurateError(f"--out {out} is the build folder itself; screening would overwrite its run.json",
                          hint="choose a separate --out folder")
    thresholds(math.sqrt(2.0), 0.1, alpha_pos, alpha_neg)  # check the alphas before any work
    if not (scale > 0 and math.isfinite(scale)):
        raise CurateError(f"--scale must be a positive number, got {scale}", hint="use --scale 1.0")
    faces_mod = None if skip_face_screens else _faces_module()
    images, tuples, build_run = _read_build(build)
    kind = "quadruplet" if "negative2" in tuples.columns else "triplet"
    roles = [r for r in ROLES if r in tuples.columns]

    ids = np.unique(np.concatenate([tuples[r].to_numpy(np.int64) for r in roles]))
    used = images.set_index("image_id").loc[ids].reset_index()
    rows = {role: np.searchsorted(ids, tuples[role].to_numpy(np.int64)) for role in roles}

    if embeddings is not None:
        got = _embeddings_from_file(Path(embeddings), used)
    else:
        got = _embed(used, out, backbone, weights, device, seed, batch_size, workers, progress)

    emb = normalize(got.emb, center=center, scale=scale)
    labels = used["label"].astype(str).to_numpy()
    boundary = fit_boundary(emb, labels=labels, null=null, alpha_pos=alpha_pos,
                            alpha_neg=alpha_neg, scale=scale, seed=seed, center=center)
    dist = tuple_distances(emb, rows["anchor"], rows["positive"], rows["negative"],
                           rows.get("negative2"))
    keep, reason = apply_boundary(dist, boundary)

    faces = None
    notes: list[str] = []
    if faces_mod is not None:
        faces = _face_screens(faces_mod, used, out, max_yaw=max_yaw, max_occlusion=max_occlusion,
                              no_face=no_face, face_model=face_model, progress=progress)
        reason = _add_face_reasons(reason, faces, rows, ids)
        keep = pd.isna(pd.Series(reason)).to_numpy()

    scores = tuples.copy()
    for k, v in dist.items():
        scores[k] = v
    scores["keep"] = keep
    scores["reason"] = pd.array(reason, dtype="string")
    suspect = _suspect_images(used, rows, dist, boundary, faces)

    write_parquet(scores, out / "scores.parquet")
    write_parquet(tuples[keep].reset_index(drop=True), out / "kept.parquet")
    write_parquet(tuples[~keep].reset_index(drop=True), out / "rejected.parquet")
    write_parquet(suspect, out / "images_suspect.parquet")
    write_json(boundary.to_dict(), out / "boundary.json")
    if faces is not None:
        write_parquet(faces, out / "faces.parquet")
    else:
        (out / "faces.parquet").unlink(missing_ok=True)

    reasons = _reason_counts(scores["reason"])
    params = {
        "build_dir": str(build.resolve()), "backbone": got.backbone, "weights": weights,
        "embeddings": str(Path(embeddings).resolve()) if embeddings is not None else None,
        "alpha_pos": alpha_pos, "alpha_neg": alpha_neg, "null": null, "center": center,
        "scale": scale, "batch_size": batch_size, "workers": workers, "device": device,
        "seed": seed, "skip_face_screens": skip_face_screens, "max_yaw": max_yaw,
        "max_occlusion": max_occlusion, "no_face": no_face, "face_model": face_model,
        "kind": kind,
    }
    inputs = {
        "build_dir": str(build.resolve()),
        "build_fingerprint": (build_run.get("inputs") or {}).get("fingerprint"),
        "tuples_fingerprint": fingerprint_table(tuples),
        "weights_source": got.weights_source, "weights_fingerprint": got.fingerprint,
        "random_weights": got.random_weights,
    }
    counts = {
        "images": len(used), "embedded": got.n_computed, "embeddings_cached": got.n_cached,
        "tuples": len(scores), "kept": int(keep.sum()), "rejected": int((~keep).sum()),
        "rejected_by_reason": reasons, "face_rejected_images":
            int(faces["face_reject"].sum()) if faces is not None else None,
    }
    run = run_record("screen", params, inputs=inputs, counts=counts, started=started)
    write_json(run, out / "run.json")
    report_path = _write_report(out, notes) if report else None
    return ScreenResult(out_dir=out, kind=kind, n_images=len(used), n_tuples=len(scores),
                        n_kept=int(keep.sum()), n_rejected=int((~keep).sum()), reasons=reasons,
                        boundary=boundary, backbone=got.backbone, weights_source=got.weights_source,
                        random_weights=got.random_weights, n_embedded=got.n_computed,
                        n_cached=got.n_cached, face_screens=faces is not None,
                        report_path=report_path, notes=notes, run=run)


def _read_build(build: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    if not build.is_dir():
        raise CurateError(f"build folder not found: {build}",
                          hint="run `curate build-tuples SOURCE --out DIR` first and pass DIR")
    images = read_parquet(build / "images.parquet", what="images table")
    tuples = read_parquet(build / "tuples.parquet", what="tuples table")
    run_path = build / "run.json"
    build_run = json.loads(run_path.read_text()) if run_path.exists() else {}
    need_i = {"image_id", "path", "rel_path", "label", "split", "sha256", "status"}
    need_t = {"tuple_id", "anchor", "positive", "negative"}
    for name, df, need in (("images.parquet", images, need_i), ("tuples.parquet", tuples, need_t)):
        missing = sorted(need - set(df.columns))
        if missing:
            raise CurateError(f"{build / name} lacks columns {', '.join(missing)}",
                              hint="re-run curate build-tuples with this version of curate")
    if len(tuples) == 0:
        raise CurateError(f"{build / 'tuples.parquet'} has no tuples", hint="check the build's run.json")
    known = set(images["image_id"].tolist())
    for role in ROLES:
        if role in tuples.columns:
            bad = tuples.loc[~tuples[role].isin(known), "tuple_id"]
            if len(bad):
                raise CurateError(f"tuples {bad.head(5).tolist()} refer to {role} images not in "
                                  "images.parquet", hint="re-run curate build-tuples")
    members = np.unique(np.concatenate([tuples[r].to_numpy() for r in ROLES if r in tuples]))
    not_ok = images[images["image_id"].isin(members) & images["status"].ne("ok")]
    if len(not_ok):
        raise CurateError(f"tuples use images whose status is not ok: {not_ok['rel_path'].head(5).tolist()}",
                          hint="re-run curate build-tuples")
    return images, tuples, build_run


def _embed(used: pd.DataFrame, out: Path, backbone: str | None, weights: str | None, device: str,
           seed: int, batch_size: int, workers: int | None,
           progress: StageProgress | None) -> _Embedded:
    from curate.backbone import load_backbone
    from curate.embed import embed_images_result

    loaded = load_backbone(backbone, weights, device=device, seed=seed)
    cb = (lambda done, total: progress("embed", done, total)) if progress else None
    res = embed_images_result(used["path"].tolist(), used["sha256"].tolist(), loaded,
                              cache_dir=out / "embeddings", batch_size=batch_size,
                              workers=workers, progress=cb)
    return _Embedded(res.embeddings, loaded.name, loaded.weights_source, loaded.weights_fingerprint,
                     loaded.random_weights, res.n_computed, res.n_cached)


def _embeddings_from_file(path: Path, used: pd.DataFrame) -> _Embedded:
    from curate.backbone import file_fingerprint

    table = read_parquet(path, what="embeddings file")
    if "embedding" not in table.columns or not ({"image_id", "path"} & set(table.columns)):
        raise CurateError(f"{path} needs an `embedding` column and an `image_id` or `path` column; "
                          f"it has {', '.join(map(str, table.columns))}",
                          hint="write one row per image: image_id (or path) and embedding (list of floats)")
    if "image_id" in table.columns:
        key, want = "image_id", used["image_id"]
        got_keys = table["image_id"].astype("int64")
    else:
        key = "path"
        got_keys = table["path"].astype(str).map(os.path.normpath)
        for col in ("path", "rel_path"):  # absolute paths, else paths relative to the source
            want = used[col].astype(str).map(os.path.normpath)
            if got_keys.isin(want).any():
                break
    dup = got_keys[got_keys.duplicated()]
    if len(dup):
        raise CurateError(f"{path} has several embeddings for {key} {dup.head(5).tolist()}",
                          hint="keep one row per image")
    lookup = pd.Series(np.arange(len(table)), index=got_keys.to_numpy())
    missing = used.loc[~want.isin(lookup.index).to_numpy(), "rel_path"]
    if len(missing):
        raise CurateError(f"{path} has no embedding for {len(missing)} of the {len(used)} images in the "
                          f"tuples, e.g. {', '.join(missing.head(10).astype(str))}",
                          hint=f"embed every image of images.parquet; match them by {key}")
    rows = table["embedding"].iloc[lookup.loc[want.to_numpy()].to_numpy()]
    lens = rows.map(len)
    if lens.nunique() != 1:
        common = int(lens.mode().iloc[0])
        bad = used.loc[(lens != common).to_numpy(), "rel_path"].head(5).tolist()
        raise CurateError(f"embeddings in {path} have different lengths ({sorted(set(lens))}); "
                          f"not {common} long: {', '.join(bad)}", hint="give every image an embedding of the same length")
    emb = np.stack(rows.map(lambda v: np.asarray(v, dtype=np.float32)).to_numpy())
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = used.loc[~finite, "rel_path"].head(5).tolist()
        raise CurateError(f"embeddings in {path} contain NaN or infinity for {bad}")
    return _Embedded(emb, "embeddings-file", f"file:{path.resolve()}", file_fingerprint(path),
                     False, 0, 0)


def _faces_module() -> Any:
    try:
        return importlib.import_module("curate.screens.faces")
    except ModuleNotFoundError as exc:
        if exc.name != "curate.screens.faces":
            raise
        raise CurateError("the face screens (curate.screens.faces) are not installed",
                          hint="pass --skip-face-screens to screen with the statistical boundary only") from exc


def _face_screens(faces_mod: Any, used: pd.DataFrame, out: Path, *, max_yaw: float,
                  max_occlusion: float | None, no_face: str, face_model: str | None,
                  progress: StageProgress | None) -> pd.DataFrame:
    kwargs: dict[str, Any] = {"cache_dir": out / "faces_cache", "max_yaw": max_yaw,
                              "no_face": no_face, "face_model": face_model}
    if max_occlusion is not None:
        kwargs["max_occlusion"] = max_occlusion
    if progress is not None:
        kwargs["progress"] = lambda done, total: progress("faces", done, total)
    faces = faces_mod.screen_faces(used, **kwargs)
    missing = sorted({"image_id", "face_reject", "face_reason"} - set(faces.columns))
    if missing:
        raise CurateError(f"face screen returned no {', '.join(missing)} column")
    return faces.reset_index(drop=True)


def _add_face_reasons(reason: np.ndarray, faces: pd.DataFrame, rows: dict[str, np.ndarray],
                      ids: np.ndarray) -> np.ndarray:
    """Join the face reasons of every member image onto each tuple's statistical reasons."""
    by_row = faces.set_index("image_id").reindex(ids)
    face_codes = [
        set(str(r).split(";")) if rej and isinstance(r, str) and r else ({"face"} if rej else set())
        for rej, r in zip(by_row["face_reject"].fillna(False).astype(bool), by_row["face_reason"], strict=True)
    ]
    rejected_rows = np.flatnonzero([bool(c) for c in face_codes])
    if rejected_rows.size == 0:
        return reason
    hit = np.zeros(len(reason), dtype=bool)
    for r in rows.values():
        hit |= np.isin(r, rejected_rows)
    out = reason.copy()
    for t in np.flatnonzero(hit):
        codes = set().union(*(face_codes[r[t]] for r in rows.values()))
        base = [] if out[t] is None else out[t].split(";")
        out[t] = ";".join(base + sorted(codes - set(base)))
    return out


def _suspect_images(used: pd.DataFrame, rows: dict[str, np.ndarray], dist: dict[str, np.ndarray],
                    b: Boundary, faces: pd.DataFrame | None) -> pd.DataFrame:
    """Per image: tuples it is in, tuples rejected because of a pair (or face) it belongs to,
    and ``mean_z``, the mean standardised distance of its pairs toward rejection.

    Sorted most suspect first: face-rejected images, then by ``mean_z``, then ``suspicion``."""
    fail = {"d_ap": dist["d_ap"] > b.t_pos}
    # z toward rejection: positives are abnormal when far, negatives when close
    z = {"d_ap": (dist["d_ap"] - b.mu) / b.sigma}
    for k in ("d_an", "d_an2", "d_nn2"):
        if k in dist:
            fail[k] = dist[k] < b.t_neg
            z[k] = (b.mu - dist[k]) / b.sigma
    pairs_of = {"anchor": ("d_ap", "d_an", "d_an2"), "positive": ("d_ap",),
                "negative": ("d_an", "d_nn2"), "negative2": ("d_an2", "d_nn2")}
    face_bad = np.zeros(len(used), dtype=bool)
    if faces is not None:
        face_bad = faces.set_index("image_id").reindex(used["image_id"])["face_reject"] \
            .fillna(False).astype(bool).to_numpy()
    n = len(used)
    n_tuples = np.zeros(n, dtype=np.int64)
    n_rejected = np.zeros(n, dtype=np.int64)
    z_sum = np.zeros(n)
    z_count = np.zeros(n)
    for role, r in rows.items():
        blamed = face_bad[r].copy()
        for k in pairs_of[role]:
            if k in fail:
                blamed |= fail[k]
                z_sum += np.bincount(r, weights=z[k], minlength=n)
                z_count += np.bincount(r, minlength=n)
        n_tuples += np.bincount(r, minlength=n)
        n_rejected += np.bincount(r, weights=blamed, minlength=n).astype(np.int64)
    out = used[["image_id", "path", "rel_path", "label", "split"]].copy()
    out["n_tuples"] = n_tuples
    out["n_rejected"] = n_rejected
    out["suspicion"] = n_rejected / np.maximum(n_tuples, 1)
    out["mean_z"] = z_sum / np.maximum(z_count, 1)
    if faces is not None:
        f = faces.set_index("image_id").reindex(used["image_id"])
        for col in FACE_COLUMNS:
            if col in f.columns:
                out[col] = f[col].to_numpy()
    # Most suspect first: unusable faces, then the finest label-consistency ranking.
    # mean_z ranks noisy labels better than the coarse share (bench/quality_fer2013.py).
    out["_face_bad"] = face_bad
    out = out.sort_values(["_face_bad", "mean_z", "suspicion", "image_id"],
                          ascending=[False, False, False, True], kind="mergesort")
    return out.drop(columns="_face_bad").reset_index(drop=True)


def _reason_counts(reason: pd.Series) -> dict[str, int]:
    codes = reason.dropna().str.split(";").explode()
    return {str(k): int(v) for k, v in codes.value_counts().sort_index().items()}


def _write_report(out: Path, notes: list[str]) -> Path | None:
    try:
        report = importlib.import_module("curate.report")
    except ModuleNotFoundError as exc:
        if exc.name != "curate.report":
            raise
        notes.append("report not written: curate.report is not installed")
        return None
    write_report = getattr(report, "write_report", None)
    if write_report is None:
        notes.append("report not written: curate.report has no write_report")
        return None
    return Path(write_report(out))
