"""``analyze_faces``: every image's face in worker processes, cached by content hash in the
shared cache (:mod:`curate.cache`, ``docs/cache.md``).

Workers find the faces (a landmarker per process: :data:`BACKENDS`); this process scores
occlusion on each batch of aligned faces they send back, so workers never load torch."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from importlib import util as importlib_util
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from curate import cache
from curate.errors import CurateError
from curate.faces.landmarks import face_rows, find_faces
from curate.faces.model_file import resolve_face_model
from curate.faces.occlusion import OCCLUSION_WEIGHTS, OcclusionModel
from curate.io import file_sha256

# Bump when anything that changes a row changes: it is part of the cache key.
# 2: occlusion averaged over the face and its mirror image; 3: decoded by curate.images
# (alpha on white, 16-bit scaled, grey by Pillow's luma: the embedder's pixels); 4:
# ``occlusion`` by the occlusion policy (clear glasses alone do not count), ``occlusion_any``
# replaces ``occlusion_region``; 5: ``yaw`` calibrated from the matrix and the landmarks
# (geometry.calibrated_yaw), faces BlazeFace misses looked for again (litert retry); 6:
# the retry on two squares, trying the next where a face does not hold
ANALYSIS_VERSION = "faces-6"

COLUMNS = ["path", "face_found", "yaw", "pitch", "roll", "occlusion", "occlusion_any",
           "face_confidence", "detail"]

ProgressFn = Callable[[int, int], None]
CACHE_KIND = "faces"
SHARD_SUFFIX = ".parquet"


class Engine(Protocol):
    """Runs the analyses of :func:`analyze_faces` somewhere else (a cluster)."""

    def describe(self) -> str: ...

    def analyze_faces(self, keys: list[str], paths: list[str], model_path: Path,
                      backend: str) -> Iterator[list[tuple[str, dict[str, Any]]]]: ...

# How faces are found: "litert" runs the .task bundle's models directly with ai-edge-litert
# (curate.faces.litert, the default where it is installed); "tasks" runs MediaPipe's Tasks
# FaceLandmarker (the reference). They agree to about 0.01 degrees (docs/faces.md, "Speed").
BACKENDS = ("litert", "tasks")


def default_backend() -> str:
    """``litert`` when ``ai-edge-litert`` is installed, else ``tasks``."""
    return "litert" if importlib_util.find_spec("ai_edge_litert") is not None else "tasks"


def resolve_backend(backend: str | None) -> str:
    """``backend`` checked (one of :data:`BACKENDS`, its package installed), or the default."""
    if backend is None:
        return default_backend()
    if backend not in BACKENDS:
        raise CurateError(f"unknown face backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
    if backend == "litert" and importlib_util.find_spec("ai_edge_litert") is None:
        raise CurateError("the litert face backend needs the ai-edge-litert package",
                          hint="pip install ai-edge-litert, or use the tasks backend")
    return backend


def default_workers(n_images: int) -> int:
    """Worker processes for ``n_images``: one per core, at most 8, at least 32 images each."""
    return max(1, min(os.cpu_count() or 1, 8, n_images // 32))


def analyze_faces(paths: Sequence[str | os.PathLike[str]], sha256s: Sequence[str | None] | None = None,
                  *, cache_dir: str | os.PathLike[str] | None = None, face_model: str | None = None,
                  workers: int | None = None, progress: ProgressFn | None = None,
                  backend: str | None = None, shard_size: int = cache.SHARD_ITEMS,
                  shard_seconds: float = cache.SHARD_SECONDS, engine: Engine | None = None) -> pd.DataFrame:
    """Analyse faces in image files: one row per path, in input order.

    Parameters
    ----------
    paths:
        Image files (any format Pillow reads, grey or colour, any size).
    sha256s:
        Content hashes of the files as recorded (``images.parquet``), or None. Every
        file is hashed afresh; one whose bytes changed is a :class:`CurateError`. The
        hashes key the cache.
    cache_dir:
        The shared cache root (:func:`curate.cache.resolve_cache_dir`: None for the
        default, ``"none"`` for no cache); analyses go to
        ``<cache_dir>/faces/<key>/shard-*.parquet`` as they are made (every
        ``shard_size`` images or ``shard_seconds`` seconds, and when the run stops). The
        key covers :data:`ANALYSIS_VERSION`, the backend, the landmarker file and the
        occlusion weights, so a change of any of them recomputes.
    face_model:
        Explicit ``face_landmarker.task``; see :func:`resolve_face_model`.
    workers:
        Processes; default :func:`default_workers`. ``0`` or ``1`` runs in this process.
    progress:
        Called as ``progress(done, total)`` after each batch of images (cached ones count
        at once).
    backend:
        One of :data:`BACKENDS`; default :func:`default_backend`.
    engine:
        Runs the analyses elsewhere (:class:`curate.distributed.RayEngine`):
        ``engine.analyze_faces(keys, paths, model_path, backend)`` yields lists of
        ``(key, row)`` made by :func:`~curate.faces.landmarks.find_one` and
        :func:`~curate.faces.landmarks.face_rows`, in any order; they are cached as they
        arrive, so an interrupted run resumes. ``None``: worker processes here.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``path``, ``face_found``, ``yaw``, ``pitch``, ``roll``
        (degrees, NaN without a face), ``occlusion`` (0..1: occluded for expression
        recognition, clear glasses alone do not count; NaN without a face),
        ``occlusion_any`` (0..1: anything over the face, clear glasses included),
        ``face_confidence`` (detector score, 0 when nothing was detected) and ``detail``
        (why no face was analysed, else None).
    """
    path_list = [str(p) for p in paths]
    given = list(sha256s) if sha256s is not None else [None] * len(path_list)
    if len(given) != len(path_list):
        raise CurateError(f"{len(given)} sha256 values for {len(path_list)} paths",
                          hint="pass one sha256 per path, or none")
    # every file hashed now (a changed file is an error); an unreadable one keeps None
    hashes = cache.content_hashes(path_list, given)
    backend = resolve_backend(backend)
    if workers is not None and workers < 0:
        raise CurateError(f"workers must be 0 or more, got {workers}",
                          hint="0 or 1 analyse in this process; omit it for one process per core")
    model_path = resolve_face_model(face_model)
    root = cache.resolve_cache_dir(cache_dir)
    folder = (cache.namespace_dir(root, CACHE_KIND, cache_key(model_path, backend),
                                  cache_settings(model_path, backend))
              if root is not None else None)

    # one analysis per distinct content; files without a hash are analysed by path
    keys = [h if h is not None else f"path:{p}" for p, h in zip(path_list, hashes, strict=True)]
    cached = (cache.read_shards(folder, SHARD_SUFFIX, _read_shard, set(keys))
              if folder is not None else {})
    todo: dict[str, str] = {}
    weight: dict[str, int] = {}  # input rows each analysis stands for
    for p, key in zip(path_list, keys, strict=True):
        if key not in cached:
            todo.setdefault(key, p)
            weight[key] = weight.get(key, 0) + 1
    total = len(path_list)
    done = total - sum(weight.values())
    if progress is not None:
        progress(done, total)
    writer = (cache.ShardWriter(folder, SHARD_SUFFIX, _write_shard, max_items=shard_size,
                                max_seconds=shard_seconds) if folder is not None else None)
    try:
        fresh = (_run(todo, weight, model_path, backend, workers, progress, done, total, writer)
                 if engine is None else
                 _run_on(engine, todo, weight, model_path, backend, progress, done, total, writer))
    finally:
        if writer is not None:
            writer.close()
    if folder is not None:
        cache.compact(folder, SHARD_SUFFIX, _read_shard, _write_shard)
    results = {**cached, **fresh}

    rows = []
    for p, key in zip(path_list, keys, strict=True):
        rec = dict(results[key])
        rec.pop("sha256", None)
        rec["path"] = p
        rows.append(rec)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["face_found"] = out["face_found"].astype(bool)
    for c in ("yaw", "pitch", "roll", "occlusion", "occlusion_any", "face_confidence"):
        out[c] = out[c].astype("float64")
    for c in ("path", "detail"):  # same dtype whether any value is set
        out[c] = out[c].astype("string")
    return out


def _run(todo: dict[str, str], weight: dict[str, int], model_path: Path, backend: str,
         workers: int | None, progress: ProgressFn | None, done: int, total: int,
         writer: cache.ShardWriter[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Analyse the files in ``todo`` (key -> path); return rows by key. Each batch of rows
    goes to ``writer`` (the cache) as it arrives, except rows of files without a hash."""
    keys, todo_paths = list(todo), list(todo.values())
    out: dict[str, dict[str, Any]] = {}
    if not todo_paths:
        return out
    n_workers = workers if workers is not None else default_workers(len(todo_paths))
    occlusion = OcclusionModel()
    start = 0
    with contextlib.closing(find_faces(todo_paths, model_path, backend, n_workers)) as batches:
        for found in batches:
            batch = slice(start, start + len(found))
            for key, row in zip(keys[batch], face_rows(todo_paths[batch], found, occlusion), strict=True):
                out[key] = row
                done += weight[key]
                if writer is not None and not key.startswith("path:"):
                    writer.add([key], [row])
            start += len(found)
            if progress is not None:
                progress(done, total)
    return out


def _run_on(engine: Engine, todo: dict[str, str], weight: dict[str, int], model_path: Path, backend: str,
            progress: ProgressFn | None, done: int, total: int,
            writer: cache.ShardWriter[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Analyse ``todo`` on ``engine``; each part of rows goes to ``writer`` (the cache) as
    it arrives, except rows of files without a hash (as :func:`_run`)."""
    out: dict[str, dict[str, Any]] = {}
    if not todo:
        return out
    for part in engine.analyze_faces(list(todo), list(todo.values()), model_path, backend):
        for key, row in part:
            out[key] = row
            done += weight[key]
            if writer is not None and not key.startswith("path:"):
                writer.add([key], [row])
        if progress is not None:
            progress(done, total)
    return out


# --------------------------------------------------------------------------- cache
def cache_settings(model_path: Path, backend: str) -> dict[str, str]:
    """Everything that changes an analysis: the analysis version, the backend, the
    occlusion networks' precision (bfloat16 where the CPU has it) and the sha256 of the
    landmarker model file and of the occlusion weights (``docs/cache.md``)."""
    from curate.faces.occlusion import bf16_supported

    files = {"landmarker": model_path, "occlusion_weights": OCCLUSION_WEIGHTS}
    return {"analysis_version": ANALYSIS_VERSION, "backend": backend,
            "occlusion_precision": "bfloat16" if bf16_supported() else "float32",
            **{k: file_sha256(f) if f.is_file() else "-" for k, f in files.items()}}


def cache_key(model_path: Path, backend: str) -> str:
    """The cache namespace of the face analysis: a hash of :func:`cache_settings`."""
    return cache.namespace(CACHE_KIND, cache_settings(model_path, backend))


def _read_shard(path: Path) -> dict[str, dict[str, Any]]:
    return {rec["sha256"]: rec for rec in pd.read_parquet(path).to_dict("records")}


def _write_shard(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    df = pd.DataFrame([{"sha256": sha, **{k: v for k, v in r.items() if k not in ("path", "sha256")}}
                       for sha, r in zip(keys, rows, strict=True)])
    for c in ("detail",):  # same schema whether any value is set
        if c in df.columns:
            df[c] = df[c].astype("string")
    df.to_parquet(path, index=False)
