"""``faces_for_source``: the ``curate faces`` command's library side (one source in, one
``faces.parquet`` and its ``run.json`` out)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.faces.analyze import (
    ANALYSIS_VERSION,
    ProgressFn,
    analyze_faces,
    cache_key,
    resolve_backend,
)
from curate.faces.model_file import resolve_face_model
from curate.ingest import ingest
from curate.io import fingerprint_table, read_parquet, run_record, write_json, write_parquet
from curate.sources import (
    BUILD_IMAGES_FILE,
    IMAGE_SUFFIXES,
    images_build_dir,
    manifest_paths,
    read_manifest,
    require_columns,
    source_kind,
    walk_files,
)


def source_images(source: str | os.PathLike[str], *, path_column: str = "path") -> pd.DataFrame:
    """The images of ``source`` as a table with ``image_id``, ``path`` and ``sha256``.

    ``source`` (see :func:`curate.sources.source_kind`) is a ``build-tuples`` output
    folder (its ``images.parquet``, rows with status ``ok``) or a ``curate screen``
    folder (the images of the build it screened); a labelled dataset folder or a
    manifest with a ``label`` column, read by :func:`curate.ingest.ingest` (same
    ``image_id`` as ``build-tuples``); else any folder of images (sorted walk) or a
    CSV/Parquet manifest with a ``path`` column (paths relative to the manifest's
    folder). Rows without a path are left out. ``sha256`` is null where not known yet.
    """
    src = Path(source).expanduser()
    kind = source_kind(src, hint="pass an image folder, a CSV/Parquet manifest with a path column, "
                                 "or a build-tuples output folder")
    build = images_build_dir(src, kind)
    if kind == "run" or (kind == "screen" and build is None):
        what = "a fine-tuning run" if kind == "run" else "a screen folder whose run.json names no build folder"
        raise CurateError(f"{src} is {what}, not a source of images",
                          hint="pass an image folder, a manifest, or a build-tuples output folder")
    if build is not None:
        images = read_parquet(build / BUILD_IMAGES_FILE, what="images table")
        ok = images[images["status"] == "ok"]
        return ok[["image_id", "path", "sha256"]].reset_index(drop=True)
    table = read_manifest(src) if kind == "manifest" else None
    if kind == "labelled_folder" or (table is not None and "label" in table.columns):
        images = ingest(src, path_column=path_column)
        keep = images["path"].astype("string").fillna("").ne("")
        return images.loc[keep, ["image_id", "path", "sha256"]].reset_index(drop=True)
    if table is not None:
        require_columns(table, src, {path_column: "--path-column"})
        _, resolved = manifest_paths(table, path_column, src)
        ids = np.flatnonzero([bool(p) for p in resolved])
        paths = [resolved[i] for i in ids]
    else:
        paths = [str(p.resolve()) for p in walk_files(src, IMAGE_SUFFIXES)]
        if not paths:
            raise CurateError(f"no image files found under {src}",
                              hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
        ids = np.arange(len(paths))
    return pd.DataFrame({"image_id": ids.astype(np.int64), "path": paths,
                         "sha256": pd.Series([None] * len(paths), dtype="object")})


@dataclass
class FacesRun:
    """What :func:`faces_for_source` wrote."""

    faces: pd.DataFrame
    out: Path
    run_json: Path


def faces_for_source(source: str | os.PathLike[str], out: str | os.PathLike[str], *,
                     cache_dir: str | os.PathLike[str] | None = None, face_model: str | None = None,
                     workers: int | None = None, path_column: str = "path",
                     progress: ProgressFn | None = None, backend: str | None = None) -> FacesRun:
    """Analyse every image of ``source`` and write ``out`` (Parquet) and ``<out>.run.json``.

    Rows: ``image_id`` (position in the source's canonical order, or the build's
    ``image_id``), then :data:`curate.faces.analyze.COLUMNS`. ``cache_dir`` defaults to
    ``faces_cache`` beside ``out``; ``backend`` as :func:`~curate.faces.analyze.analyze_faces`.
    """
    started = time.time()
    out_path = Path(out)
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise CurateError(f"--out must be a .parquet file, got {out_path}",
                          hint="for example --out faces.parquet")
    backend = resolve_backend(backend)
    images = source_images(source, path_column=path_column)
    cache = Path(cache_dir) if cache_dir is not None else out_path.parent / "faces_cache"
    faces = analyze_faces(images["path"].tolist(), images["sha256"].tolist(), cache_dir=cache,
                          face_model=face_model, workers=workers, progress=progress,
                          backend=backend)
    faces.insert(0, "image_id", images["image_id"].to_numpy(dtype=np.int64))
    write_parquet(faces, out_path)
    model = resolve_face_model(face_model)
    record = run_record(
        "faces", {"source": str(source), "cache_dir": str(cache), "face_model": str(model),
                  "workers": workers, "path_column": path_column, "backend": backend,
                  "analysis_version": ANALYSIS_VERSION},
        inputs={"images": fingerprint_table(images, ["path"]),
                "cache_key": cache_key(model, backend)},
        counts={"images": len(faces), "face_found": int(faces["face_found"].sum()),
                "no_face": int((~faces["face_found"]).sum())},
        started=started)
    run_json = write_json(record, out_path.with_suffix(".run.json"))
    return FacesRun(faces, out_path, run_json)
