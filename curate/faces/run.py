"""``faces_for_source``: the ``curate faces`` command's library side (one source in, one
``faces.parquet`` and its ``run.json`` out)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from curate.cache import OFF, resolve_cache_dir
from curate.errors import CurateError
from curate.faces.analyze import (
    ANALYSIS_VERSION,
    Engine,
    ProgressFn,
    analyze_faces,
    cache_key,
    resolve_backend,
)
from curate.faces.model_file import resolve_face_model
from curate.ingest import ingest
from curate.io import fingerprint_table, read_parquet, run_record, write_parquet
from curate.outdir import claim_file, require_complete
from curate.sources import (
    BUILD_IMAGES_FILE,
    IMAGE_SUFFIXES,
    absolute,
    display_path,
    images_build_dir,
    manifest_paths,
    read_manifest,
    require_columns,
    source_kind,
    walk_entries,
)

UNOPENED = ("not_a_file", "bad_name")  # ingest statuses of entries that are never opened


def source_images(source: str | os.PathLike[str], *, path_column: str = "path") -> pd.DataFrame:
    """The images of ``source`` as a table with ``image_id``, ``path`` and ``sha256``.

    ``source`` (see :func:`curate.sources.source_kind`) is a ``build-tuples`` output
    folder (its ``images.parquet``, rows with status ``ok``) or a ``curate screen``
    folder (the images of the build it screened); a labelled dataset folder or a
    manifest with a ``label`` column, read by :func:`curate.ingest.ingest` (same
    ``image_id`` as ``build-tuples``); else any folder of images (sorted walk) or a
    CSV/Parquet manifest with a ``path`` column (paths relative to the manifest's
    folder). Rows without a path are left out. ``sha256`` is null where not known yet.
    ``problem`` says why an entry of an image folder cannot be read (a FIFO, a device, a
    link loop, a name that is not UTF-8: ``status: detail``), else null.
    """
    src = Path(source).expanduser()
    kind = source_kind(
        src,
        hint="pass an image folder, a CSV/Parquet manifest with a path column, "
        "or a build-tuples output folder",
    )
    build = images_build_dir(src, kind)
    if kind == "run" or (kind == "screen" and build is None):
        what = (
            "a fine-tuning run"
            if kind == "run"
            else "a screen folder whose run.json names no build folder"
        )
        raise CurateError(
            f"{src} is {what}, not a source of images",
            hint="pass an image folder, a manifest, or a build-tuples output folder",
        )
    if build is not None:
        require_complete(build, what="build folder")
        images = read_parquet(build / BUILD_IMAGES_FILE, what="images table")
        ok = images[images["status"] == "ok"]
        return ok[["image_id", "path", "sha256"]].reset_index(drop=True)
    table = read_manifest(src) if kind == "manifest" else None
    if kind == "labelled_folder" or (table is not None and "label" in table.columns):
        images = ingest(src, path_column=path_column)
        keep = images["path"].astype("string").fillna("").ne("")
        listed = images.loc[keep, ["image_id", "path", "sha256", "status", "detail"]].reset_index(
            drop=True
        )
        unopened = listed["status"].isin(UNOPENED)
        listed["problem"] = (listed["status"] + ": " + listed["detail"].astype(str)).where(
            unopened, None
        )
        return listed.drop(columns=["status", "detail"])
    if table is not None:
        require_columns(table, src, {path_column: "--path-column"})
        _, resolved = manifest_paths(table, path_column, src)
        ids = np.flatnonzero([bool(p) for p in resolved])
        paths = [resolved[i] for i in ids]
    else:
        entries = walk_entries(src, IMAGE_SUFFIXES)
        if not entries:
            raise CurateError(
                f"no image files found under {src}",
                hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}",
            )
        paths = [display_path(absolute(e.path)) for e in entries]
        ids = np.arange(len(paths))
        problems = [None if e.status is None else f"{e.status}: {e.detail}" for e in entries]
        return pd.DataFrame(
            {
                "image_id": ids.astype(np.int64),
                "path": paths,
                "sha256": pd.Series([None] * len(paths), dtype="object"),
                "problem": pd.Series(problems, dtype="object"),
            }
        )
    return pd.DataFrame(
        {
            "image_id": ids.astype(np.int64),
            "path": paths,
            "sha256": pd.Series([None] * len(paths), dtype="object"),
        }
    )


@dataclass
class FacesRun:
    """What :func:`faces_for_source` wrote."""

    faces: pd.DataFrame
    out: Path
    run_json: Path
    notes: list[str] = field(default_factory=list)


def faces_for_source(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    face_model: str | None = None,
    workers: int | None = None,
    path_column: str = "path",
    force: bool = False,
    progress: ProgressFn | None = None,
    backend: str | None = None,
    engine: Engine | None = None,
) -> FacesRun:
    """Analyse every image of ``source`` and write ``out`` (Parquet) and ``<out>.run.json``.

    Rows: ``image_id`` (position in the source's canonical order, or the build's
    ``image_id``), then :data:`curate.faces.analyze.COLUMNS`. ``cache_dir`` is the
    shared cache (:func:`curate.cache.resolve_cache_dir`: None for the default,
    ``"none"`` for none); ``backend`` as :func:`~curate.faces.analyze.analyze_faces`.
    ``out`` follows :func:`curate.outdir.claim_file`: a new file, or the output of an
    earlier ``curate faces`` (other settings need ``force``); the record is written last
    and says whether the run completed. ``engine`` runs the analyses elsewhere
    (:class:`curate.ray_engine.RayEngine`), writing the same cache; it is no setting of
    the run (the rows are the same).
    """
    started = time.time()
    out_path = Path(out).expanduser()
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise CurateError(
            f"--out-file must be a .parquet file, got {out_path}",
            hint="for example --out-file faces.parquet",
        )
    backend = resolve_backend(backend)
    images = source_images(source, path_column=path_column)
    model = resolve_face_model(face_model)
    settings = {
        "source": absolute(Path(source).expanduser()),
        "face_model": str(model),
        "path_column": path_column,
        "backend": backend,
        "analysis_version": ANALYSIS_VERSION,
    }
    with claim_file(out_path, "faces", settings=settings, inputs=[source], force=force) as claim:
        out_path = claim.path
        cache = resolve_cache_dir(cache_dir)
        faces = _analyze(
            images,
            cache if cache is not None else OFF,
            face_model,
            workers,
            progress,
            backend,
            engine,
        )
        write_parquet(faces, out_path)
        record = run_record(
            "faces",
            {
                "source": str(source),
                "cache_dir": str(cache) if cache is not None else OFF,
                "face_model": str(model),
                "workers": workers,
                "path_column": path_column,
                "backend": backend,
                "engine": engine.describe() if engine is not None else None,
                "analysis_version": ANALYSIS_VERSION,
            },
            inputs={
                "images": fingerprint_table(images, ["path"]),
                "cache_key": cache_key(model, backend),
            },
            counts={
                "images": len(faces),
                "face_found": int(faces["face_found"].sum()),
                "no_face": int((~faces["face_found"]).sum()),
            },
            started=started,
        )
        run_json = claim.finish(record)
    return FacesRun(faces, out_path, run_json, notes=[claim.note] if claim.note else [])


def _analyze(
    images: pd.DataFrame,
    cache: Path | str,
    face_model: str | None,
    workers: int | None,
    progress: ProgressFn | None,
    backend: str,
    engine: Engine | None = None,
) -> pd.DataFrame:
    """The face rows of ``images``; entries that cannot be read (``problem``) are not
    opened: their row says why."""
    bad = (
        images["problem"].notna().to_numpy()
        if "problem" in images.columns
        else np.zeros(len(images), bool)
    )
    good = images[~bad]
    faces = analyze_faces(
        good["path"].tolist(),
        good["sha256"].tolist(),
        cache_dir=cache,
        face_model=face_model,
        workers=workers,
        progress=progress,
        backend=backend,
        engine=engine,
    )
    if bad.any():
        rows = pd.DataFrame(
            {
                "path": images.loc[bad, "path"].to_numpy(),
                "face_found": False,
                "face_confidence": 0.0,
                "detail": images.loc[bad, "problem"].to_numpy(),
            }
        )
        faces.index = np.flatnonzero(~bad)
        rows.index = np.flatnonzero(bad)
        faces = (
            pd.concat([faces, rows.reindex(columns=faces.columns)])
            .sort_index()
            .reset_index(drop=True)
        )
        faces["face_found"] = faces["face_found"].astype(bool)
        for c in ("path", "detail"):
            faces[c] = faces[c].astype("string")
    faces.insert(0, "image_id", images["image_id"].to_numpy(dtype=np.int64))
    return faces
