"""``analyze_faces``: every image's face in worker processes, cached by content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from curate.errors import CurateError
from curate.faces.landmarks import FaceAnalyzer, FaceResult, quiet_native_stderr
from curate.faces.model_file import resolve_face_model
from curate.faces.occlusion import OCCLUSION_WEIGHTS, OcclusionModel
from curate.io import file_sha256, write_parquet

# Bump when anything that changes a row changes: it is part of the cache key.
# 2: occlusion averaged over the face and its mirror image; 3: decoded by curate.images
# (alpha on white, 16-bit scaled, grey by Pillow's luma: the embedder's pixels)
ANALYSIS_VERSION = "faces-3"

COLUMNS = ["path", "face_found", "yaw", "pitch", "roll", "occlusion", "occlusion_region",
           "face_confidence", "detail"]

ProgressFn = Callable[[int, int], None]

_WORKER: FaceAnalyzer | None = None


def default_workers(n_images: int) -> int:
    """Worker processes for ``n_images``: one per core, at most 8, at least 32 images each."""
    return max(1, min(os.cpu_count() or 1, 8, n_images // 32))


def analyze_faces(paths: Sequence[str | os.PathLike[str]], sha256s: Sequence[str | None] | None = None,
                  *, cache_dir: str | os.PathLike[str] | None = None, face_model: str | None = None,
                  workers: int | None = None, progress: ProgressFn | None = None) -> pd.DataFrame:
    """Analyse faces in image files: one row per path, in input order.

    Parameters
    ----------
    paths:
        Image files (any format Pillow reads, grey or colour, any size).
    sha256s:
        Content hashes of the files, when already known (``images.parquet``); missing
        ones are computed. They key the cache.
    cache_dir:
        Folder for the cache (``<cache_dir>/faces/<key>/part-*.parquet``); ``None`` for
        no cache. The key covers :data:`ANALYSIS_VERSION`, the landmarker file and the
        occlusion weights, so a change of either recomputes.
    face_model:
        Explicit ``face_landmarker.task``; see :func:`resolve_face_model`.
    workers:
        Processes; default :func:`default_workers`. ``1`` runs in this process.
    progress:
        Called as ``progress(done, total)`` after each image (cached ones count at once).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``path``, ``face_found``, ``yaw``, ``pitch``, ``roll``
        (degrees, NaN without a face), ``occlusion`` (0..1, NaN without a face),
        ``occlusion_region``, ``face_confidence`` (detector score, 0 when nothing was
        detected) and ``detail`` (why no face was analysed, else None).
    """
    path_list = [str(p) for p in paths]
    given = list(sha256s) if sha256s is not None else [None] * len(path_list)
    if len(given) != len(path_list):
        raise CurateError(f"{len(given)} sha256 values for {len(path_list)} paths",
                          hint="pass one sha256 per path, or none")
    # unknown hashes are computed; a file that cannot be read keeps None (not cached)
    hashes: list[str | None] = [str(h) if isinstance(h, str) and h else _sha256(p)
                                for p, h in zip(path_list, given, strict=True)]
    model_path = resolve_face_model(face_model)
    folder = Path(cache_dir) / "faces" / cache_key(model_path) if cache_dir is not None else None
    cached = _read_cache(folder) if folder is not None and folder.is_dir() else {}

    # one analysis per distinct content; files without a hash are analysed by path
    keys = [h if h is not None else f"path:{p}" for p, h in zip(path_list, hashes, strict=True)]
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
    fresh = _run(todo, weight, model_path, workers, progress, done, total)
    results = {**cached, **fresh}
    if folder is not None:
        _write_cache(folder, {k: v for k, v in fresh.items() if not k.startswith("path:")})

    rows = []
    for p, key in zip(path_list, keys, strict=True):
        rec = dict(results[key])
        rec.pop("sha256", None)
        rec["path"] = p
        rows.append(rec)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["face_found"] = out["face_found"].astype(bool)
    for c in ("yaw", "pitch", "roll", "occlusion", "face_confidence"):
        out[c] = out[c].astype("float64")
    for c in ("path", "occlusion_region", "detail"):  # same dtype whether any value is set
        out[c] = out[c].astype("string")
    return out


def _run(todo: dict[str, str], weight: dict[str, int], model_path: Path, workers: int | None,
         progress: ProgressFn | None, done: int, total: int) -> dict[str, dict[str, Any]]:
    """Analyse the files in ``todo`` (key -> path); return rows by key."""
    keys, todo_paths = list(todo), list(todo.values())
    out: dict[str, dict[str, Any]] = {}
    if not todo_paths:
        return out
    n_workers = workers if workers is not None else default_workers(len(todo_paths))
    if n_workers <= 1:
        with quiet_native_stderr():
            analyzer = FaceAnalyzer(model_path, occlusion_model=OcclusionModel())
            try:
                for key, p in zip(keys, todo_paths, strict=True):
                    out[key] = _analyze_one(analyzer, p)
                    done += weight[key]
                    if progress is not None:
                        progress(done, total)
            finally:
                analyzer.close()
        return out
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(str(model_path),)) as pool:
        chunk = max(1, min(64, len(todo_paths) // (n_workers * 4)))
        for key, row in zip(keys, pool.map(_analyze_in_worker, todo_paths, chunksize=chunk), strict=True):
            out[key] = row
            done += weight[key]
            if progress is not None:
                progress(done, total)
    return out


# --------------------------------------------------------------------------- workers
def _init_worker(model_path: str) -> None:
    global _WORKER
    from multiprocessing import util

    import torch

    torch.set_num_threads(1)
    # this process only analyses faces, and its Python errors reach the parent pickled
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    _WORKER = FaceAnalyzer(Path(model_path), occlusion_model=OcclusionModel())
    # close while MediaPipe's dispatcher threads still run (a plain atexit hook is too late)
    util.Finalize(_WORKER, _WORKER.close, exitpriority=10)


def _analyze_in_worker(path: str) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return _analyze_one(_WORKER, path)


def _analyze_one(analyzer: FaceAnalyzer, path: str) -> dict[str, Any]:
    import cv2

    try:
        return analyzer.analyze(path)
    except (RuntimeError, ValueError, OSError, cv2.error) as exc:  # recorded, not hidden
        found = FaceResult(False, f"analysis_failed: {type(exc).__name__}: {exc}")
        return analyzer.row(path, found)


# --------------------------------------------------------------------------- cache
def _sha256(path: str) -> str | None:
    """sha256 of the file bytes, or None when the file cannot be read (then not cached)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def cache_key(model_path: Path) -> str:
    """Cache namespace: analysis version, landmarker model file and occlusion weights."""
    h = hashlib.sha256(ANALYSIS_VERSION.encode())
    for f in (model_path, OCCLUSION_WEIGHTS):
        h.update(bytes.fromhex(file_sha256(f)) if f.is_file() else b"-")
    return h.hexdigest()[:16]


def _read_cache(folder: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            df = pd.read_parquet(part)
        except (OSError, ValueError):  # a broken shard is recomputed, not trusted
            continue
        for rec in df.to_dict("records"):
            rows[rec["sha256"]] = rec
    return rows


def _write_cache(folder: Path, rows: dict[str, dict[str, Any]]) -> None:
    if not rows:
        return
    df = pd.DataFrame([{"sha256": sha, **{k: v for k, v in r.items() if k != "path"}}
                       for sha, r in rows.items()])
    name = hashlib.sha256("".join(sorted(rows)).encode()).hexdigest()[:16]
    write_parquet(df, folder / f"part-{name}.parquet")
