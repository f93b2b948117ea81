"""``analyze_faces``: every image's face in worker processes, cached by content hash in the
shared cache (:mod:`curate.cache`, ``docs/cache.md``).

Workers find the faces (a landmarker per process: :data:`BACKENDS`); this process scores
occlusion on each batch of aligned faces they send back, so workers never load torch."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from curate import cache
from curate.errors import CurateError
from curate.faces.landmarks import BLENDSHAPE_NAMES, face_rows, find_faces
from curate.faces.model_file import resolve_face_model
from curate.faces.occlusion import OCCLUSION_WEIGHTS, OcclusionModel
from curate.io import file_sha256
from curate.limits import workers_for

# Bump when anything that changes a row changes: it is part of the cache key.
# 2: occlusion averaged over the face and its mirror image; 3: decoded by curate.images
# (alpha on white, 16-bit scaled, grey by Pillow's luma: the embedder's pixels); 4:
# ``occlusion`` by the occlusion policy (clear glasses alone do not count), ``occlusion_any``
# replaces ``occlusion_region``; 5: ``yaw`` calibrated from the matrix and the landmarks
# (geometry.calibrated_yaw), faces BlazeFace misses looked for again (litert retry); 6:
# the retry on two squares, trying the next where a face does not hold; 7: the mirror image
# looked at too (litert), ``yaw`` from BlazeFace's keypoints where a face is detected
# without landmarks; 8: occlusion weights refitted with painted collars under the chin
# (``--clothing 0.2``: a dark collar under a lowered chin read as the edge of a scarf); 9:
# occlusion weights fitted twice as long (``--epochs 12``) and averaged into one network
# (``--soup``: a third of the work per face); 10: occlusion scored on faces detected
# without landmarks too, on their crop aligned by the detector's keypoints; 11: the calibrated
# ``yaw`` within +-90 (23 of 16,237 cached faces read beyond, 2 beyond 180, which the cache's
# reader rejected as a damaged shard on every run; no verdict changes)
ANALYSIS_VERSION = "faces-11"

COLUMNS = [
    "path",
    "face_found",
    "yaw",
    "pitch",
    "roll",
    "occlusion",
    "occlusion_any",
    "face_confidence",
    "detail",
]

ProgressFn = Callable[[int, int], None]
CACHE_KIND = "faces"
SHARD_SUFFIX = ".parquet"
# MediaPipe's 52 face blendshape scores and the landmarks' box, made in the same pass as the
# analysis when asked for (``blendshapes=True``) and cached in a namespace of their own, so
# the face analyses cached without them stay valid. Bump when they change.
BLENDSHAPES_KIND = "face_blendshapes"
BLENDSHAPES_VERSION = "blendshapes-1"
BLENDSHAPE_COLUMNS = ["blendshapes", "face_box"]


class Engine(Protocol):
    """Runs the analyses of :func:`analyze_faces` somewhere else (a cluster)."""

    def describe(self) -> str: ...

    def analyze_faces(
        self, keys: list[str], paths: list[str], model_path: Path, backend: str
    ) -> Iterator[list[tuple[str, dict[str, Any]]]]: ...


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
        raise CurateError(
            f"unknown face backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}"
        )
    if backend == "litert" and importlib_util.find_spec("ai_edge_litert") is None:
        raise CurateError(
            "the litert face backend needs the ai-edge-litert package",
            hint="pip install ai-edge-litert, or use the tasks backend",
        )
    return backend


def default_workers(n_images: int) -> int:
    """Worker processes for ``n_images``: one per core, at most 8, at least 32 images each."""
    return max(1, min(os.cpu_count() or 1, 8, n_images // 32))


def analyze_faces(
    paths: Sequence[str | os.PathLike[str]],
    sha256s: Sequence[str | None] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    face_model: str | None = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    backend: str | None = None,
    shard_size: int = cache.SHARD_ITEMS,
    shard_seconds: float = cache.SHARD_SECONDS,
    engine: Engine | None = None,
    blendshapes: bool = False,
) -> pd.DataFrame:
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
        Runs the analyses elsewhere (:class:`curate.ray_engine.RayEngine`):
        ``engine.analyze_faces(keys, paths, model_path, backend)`` yields lists of
        ``(key, row)`` made by :meth:`~curate.faces.landmarks.FaceFinder.find_many` and
        :func:`~curate.faces.landmarks.face_rows`, in any order; they are cached as they
        arrive, so an interrupted run resumes. ``None``: worker processes here.
    blendshapes:
        Also return MediaPipe's 52 face blendshape scores of every found face
        (:data:`~curate.faces.landmarks.BLENDSHAPE_NAMES`) and the box of its landmarks,
        made in the same landmarker pass and cached in their own namespace
        (:data:`BLENDSHAPES_KIND`); images analysed before without them are analysed again
        once. With an ``engine`` they are made here.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``path``, ``face_found``, ``yaw``, ``pitch``, ``roll``
        (degrees, NaN without a face), ``occlusion`` (0..1: occluded for expression
        recognition, clear glasses alone do not count; NaN without a face),
        ``occlusion_any`` (0..1: anything over the face, clear glasses included),
        ``face_confidence`` (detector score, 0 when nothing was detected) and ``detail``
        (why no face was analysed, else None). With ``blendshapes`` also
        :data:`BLENDSHAPE_COLUMNS`: ``blendshapes`` (52 float32 scores, None without a
        face: ``detail`` says why) and ``face_box`` (x0, y0, x1, y1 of the landmarks in
        pixels of the image, None without a face).
    """
    path_list = [str(p) for p in paths]
    given = list(sha256s) if sha256s is not None else [None] * len(path_list)
    if len(given) != len(path_list):
        raise CurateError(
            f"{len(given)} sha256 values for {len(path_list)} paths",
            hint="pass one sha256 per path, or none",
        )
    # every file hashed now (a changed file is an error); an unreadable one keeps None
    hashes = cache.content_hashes(path_list, given)
    backend = resolve_backend(backend)
    workers = workers_for(workers, len(path_list))  # 0 or more, at most the CPUs and the images
    model_path = resolve_face_model(face_model)
    folder, bs_folder = _cache_folders(
        cache.resolve_cache_dir(cache_dir), model_path, backend, blendshapes
    )

    # one analysis per distinct content; files without a hash are analysed by path
    keys = [h if h is not None else f"path:{p}" for p, h in zip(path_list, hashes, strict=True)]
    cached = (
        cache.read_shards(folder, SHARD_SUFFIX, _read_shard, set(keys))
        if folder is not None
        else {}
    )
    bs_cached = (
        cache.read_shards(bs_folder, SHARD_SUFFIX, _read_bs_shard, set(keys))
        if bs_folder is not None
        else {}
    )
    work = work_list(
        path_list,
        keys,
        set(cached),
        set(bs_cached),
        blendshapes=blendshapes,
        on_engine=engine is not None,
    )
    total = len(path_list)
    done = total - sum(work.weight.values())
    if progress is not None:
        progress(done, total)
    fresh, fresh_bs = _analyse(
        work,
        folder,
        bs_folder,
        set(cached),
        set(bs_cached),
        model_path,
        backend,
        workers,
        progress,
        done,
        total,
        engine,
        blendshapes,
        shard_size,
        shard_seconds,
    )
    return analysis_table(
        path_list, keys, {**cached, **fresh}, {**bs_cached, **fresh_bs} if blendshapes else None
    )


def _cache_folders(
    root: Path | None, model_path: Path, backend: str, blendshapes: bool
) -> tuple[Path | None, Path | None]:
    """The cache namespaces of the analyses and of the blendshapes (None: no cache, or no
    blendshapes asked for)."""
    folder = (
        cache.namespace_dir(
            root, CACHE_KIND, cache_key(model_path, backend), cache_settings(model_path, backend)
        )
        if root is not None
        else None
    )
    bs_folder = (
        cache.namespace_dir(
            root,
            BLENDSHAPES_KIND,
            blendshapes_cache_key(model_path, backend),
            blendshapes_cache_settings(model_path, backend),
        )
        if root is not None and blendshapes
        else None
    )
    return folder, bs_folder


@dataclass
class WorkList:
    """What :func:`analyze_faces` still has to analyse: ``todo`` (key -> a path of that
    content) in full, ``bs_todo`` for the blendshapes alone (analysed, but without them,
    and run on an engine), and ``weight``: the input rows each ``todo`` key stands for."""

    todo: dict[str, str] = field(default_factory=dict)
    bs_todo: dict[str, str] = field(default_factory=dict)
    weight: dict[str, int] = field(default_factory=dict)


def work_list(
    paths: list[str],
    keys: list[str],
    cached: set[str],
    bs_cached: set[str],
    *,
    blendshapes: bool,
    on_engine: bool,
) -> WorkList:
    """The analyses missing from the cache, one per distinct key (the first path of each).
    Without an engine an image that lacks its blendshapes is analysed again in full; with
    one, only its blendshapes are made (here)."""
    work = WorkList()
    for p, key in zip(paths, keys, strict=True):
        if key not in cached or (blendshapes and key not in bs_cached and not on_engine):
            work.todo.setdefault(key, p)
            work.weight[key] = work.weight.get(key, 0) + 1
        elif blendshapes and key not in bs_cached:
            work.bs_todo.setdefault(key, p)
    return work


def _analyse(
    work: WorkList,
    folder: Path | None,
    bs_folder: Path | None,
    cached: set[str],
    bs_cached: set[str],
    model_path: Path,
    backend: str,
    workers: int,
    progress: ProgressFn | None,
    done: int,
    total: int,
    engine: Engine | None,
    blendshapes: bool,
    shard_size: int,
    shard_seconds: float,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run the work list (here or on ``engine``), caching the rows as they come and
    compacting the caches after; the new rows and the new blendshape rows by key."""
    writer: cache.ShardWriter[dict[str, Any]] | None = (
        cache.ShardWriter(
            folder, SHARD_SUFFIX, _write_shard, max_items=shard_size, max_seconds=shard_seconds
        )
        if folder is not None
        else None
    )
    bs_writer: cache.ShardWriter[dict[str, Any]] | None = (
        cache.ShardWriter(
            bs_folder,
            SHARD_SUFFIX,
            _write_bs_shard,
            max_items=shard_size,
            max_seconds=shard_seconds,
        )
        if bs_folder is not None
        else None
    )
    todo, bs_todo = work.todo, work.bs_todo
    fresh_bs: dict[str, dict[str, Any]] = {}
    try:
        if engine is None:
            fresh = _run(
                todo,
                work.weight,
                model_path,
                backend,
                workers,
                progress,
                done,
                total,
                writer,
                bs_writer=bs_writer,
                bs_out=fresh_bs if blendshapes else None,
                skip_rows=cached,
            )
        else:
            fresh = _run_on(
                engine, todo, work.weight, model_path, backend, progress, done, total, writer
            )
            if blendshapes:  # the engine's rows carry no blendshapes: made here
                bs_todo.update({k: p for k, p in todo.items() if k not in bs_cached})
                _run(
                    bs_todo,
                    dict.fromkeys(bs_todo, 0),
                    model_path,
                    backend,
                    workers,
                    None,
                    0,
                    0,
                    None,
                    bs_writer=bs_writer,
                    bs_out=fresh_bs,
                    skip_rows=set(bs_todo),
                )
    finally:
        if writer is not None:
            writer.close()
        if bs_writer is not None:
            bs_writer.close()
    if folder is not None:
        cache.compact(folder, SHARD_SUFFIX, _read_shard, _write_shard)
    if bs_folder is not None:
        cache.compact(bs_folder, SHARD_SUFFIX, _read_bs_shard, _write_bs_shard)
    return fresh, fresh_bs


def analysis_table(
    paths: list[str],
    keys: list[str],
    results: dict[str, dict[str, Any]],
    bs_results: dict[str, dict[str, Any]] | None,
) -> pd.DataFrame:
    """:func:`analyze_faces`' table: one row per path from the analysis of its key (and,
    with ``bs_results``, its blendshapes and face box), with the documented dtypes."""
    rows = []
    for p, key in zip(paths, keys, strict=True):
        rec = dict(results[key])
        rec.pop("sha256", None)
        rec["path"] = p
        if bs_results is not None:
            extra = bs_results[key]
            rec["blendshapes"] = (
                None
                if extra.get("blendshapes") is None
                else np.asarray(extra["blendshapes"], dtype=np.float32)
            )
            rec["face_box"] = (
                None if extra.get("box") is None else tuple(float(v) for v in extra["box"])
            )
        rows.append(rec)
    out = pd.DataFrame(
        rows, columns=COLUMNS + (BLENDSHAPE_COLUMNS if bs_results is not None else [])
    )
    out["face_found"] = out["face_found"].astype(bool)
    for c in ("yaw", "pitch", "roll", "occlusion", "occlusion_any", "face_confidence"):
        out[c] = out[c].astype("float64")
    for c in ("path", "detail"):  # same dtype whether any value is set
        out[c] = out[c].astype("string")
    return out


def _run(
    todo: dict[str, str],
    weight: dict[str, int],
    model_path: Path,
    backend: str,
    workers: int | None,
    progress: ProgressFn | None,
    done: int,
    total: int,
    writer: cache.ShardWriter[dict[str, Any]] | None,
    *,
    bs_writer: cache.ShardWriter[dict[str, Any]] | None = None,
    bs_out: dict[str, dict[str, Any]] | None = None,
    skip_rows: set[str] | frozenset[str] = frozenset(),
) -> dict[str, dict[str, Any]]:
    """Analyse the files in ``todo`` (key -> path); return rows by key. Each batch of rows
    goes to ``writer`` (the cache) as it arrives, except rows of files without a hash and
    rows of ``skip_rows`` (cached already). With ``bs_out`` the faces' blendshapes and boxes
    go into it (and to ``bs_writer``) by key as well."""
    keys, todo_paths = list(todo), list(todo.values())
    out: dict[str, dict[str, Any]] = {}
    if not todo_paths:
        return out
    n_workers = workers if workers is not None else default_workers(len(todo_paths))
    occlusion = OcclusionModel()
    start = 0
    with contextlib.closing(
        find_faces(todo_paths, model_path, backend, n_workers, blendshapes=bs_out is not None)
    ) as batches:
        for found in batches:
            batch = slice(start, start + len(found))
            for key, row, f in zip(
                keys[batch], face_rows(todo_paths[batch], found, occlusion), found, strict=True
            ):
                out[key] = row
                done += weight[key]
                if writer is not None and not key.startswith("path:") and key not in skip_rows:
                    writer.add([key], [row])
                if bs_out is not None:
                    extra = blendshape_row(f)
                    bs_out[key] = extra
                    if bs_writer is not None and not key.startswith("path:"):
                        bs_writer.add([key], [extra])
            start += len(found)
            if progress is not None:
                progress(done, total)
    return out


def _run_on(
    engine: Engine,
    todo: dict[str, str],
    weight: dict[str, int],
    model_path: Path,
    backend: str,
    progress: ProgressFn | None,
    done: int,
    total: int,
    writer: cache.ShardWriter[dict[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
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


def blendshape_row(found: Any) -> dict[str, Any]:
    """The blendshapes entry of one :class:`~curate.faces.landmarks.FaceResult`: its 52
    scores and landmark box (None without a face), and why there are none."""
    bs = getattr(found, "blendshapes", None)
    box = getattr(found, "box", None)
    detail = None
    if bs is None:
        detail = found.detail or (
            "no face found by the landmarker"
            if not found.face_found
            else "the landmarker gave no blendshapes"
        )
    return {
        "blendshapes": None if bs is None else [float(v) for v in bs],
        "box": None if box is None or bs is None else [float(v) for v in box],
        "detail": detail,
    }


# --------------------------------------------------------------------------- cache
def blendshapes_cache_settings(model_path: Path, backend: str) -> dict[str, str]:
    """Everything that changes a blendshapes entry: their version, the backend and the
    landmarker model file's sha256."""
    return {
        "blendshapes_version": BLENDSHAPES_VERSION,
        "backend": backend,
        "landmarker": file_sha256(model_path) if model_path.is_file() else "-",
    }


def blendshapes_cache_key(model_path: Path, backend: str) -> str:
    """The cache namespace of the blendshapes: a hash of :func:`blendshapes_cache_settings`."""
    return cache.namespace(BLENDSHAPES_KIND, blendshapes_cache_settings(model_path, backend))


def _read_bs_shard(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of a blendshapes shard, validated (:class:`curate.cache.DamagedShard`):
    sha256 keys, 52 scores in [0, 1] or none, a box of four finite numbers or none."""
    table = pd.read_parquet(path)
    missing = [c for c in ("sha256", "blendshapes", "box", "detail") if c not in table.columns]
    if missing:
        raise cache.DamagedShard(f"no column {missing[0]}")
    if not table["sha256"].map(lambda k: isinstance(k, str) and len(k) == 64).all():
        raise cache.DamagedShard("keys that are not sha256 digests")
    for column, size, lo, hi in (
        ("blendshapes", len(BLENDSHAPE_NAMES), 0.0, 1.0),
        ("box", 4, -np.inf, np.inf),
    ):
        for v in table[column]:
            if v is None:
                continue
            a = np.asarray(v, dtype=float)
            if a.shape != (size,) or not np.isfinite(a).all() or (a < lo).any() or (a > hi).any():
                raise cache.DamagedShard(
                    f"{column} entries that are not {size} finite numbers in [{lo:g}, {hi:g}]"
                )
    return {
        sha: {
            "blendshapes": None if bs is None else list(bs),
            "box": None if box is None else list(box),
            "detail": None if pd.isna(d) else str(d),
        }
        for sha, bs, box, d in zip(
            table["sha256"], table["blendshapes"], table["box"], table["detail"], strict=True
        )
    }


def _write_bs_shard(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "sha256": pa.array(keys, pa.string()),
            "blendshapes": pa.array([r["blendshapes"] for r in rows], pa.list_(pa.float32())),
            "box": pa.array([r["box"] for r in rows], pa.list_(pa.float32())),
            "detail": pa.array([r["detail"] for r in rows], pa.string()),
        }
    )
    pq.write_table(table, path)


def cache_settings(model_path: Path, backend: str) -> dict[str, str]:
    """Everything that changes an analysis: the analysis version, the backend, the
    occlusion networks' precision (bfloat16 where the CPU has it) and the sha256 of the
    landmarker model file and of the occlusion weights (``docs/cache.md``)."""
    from curate.faces.occlusion import bf16_supported

    files = {"landmarker": model_path, "occlusion_weights": OCCLUSION_WEIGHTS}
    return {
        "analysis_version": ANALYSIS_VERSION,
        "backend": backend,
        "occlusion_precision": "bfloat16" if bf16_supported() else "float32",
        **{k: file_sha256(f) if f.is_file() else "-" for k, f in files.items()},
    }


def cache_key(model_path: Path, backend: str) -> str:
    """The cache namespace of the face analysis: a hash of :func:`cache_settings`."""
    return cache.namespace(CACHE_KIND, cache_settings(model_path, backend))


_BOUNDS = {"yaw": 180.0, "pitch": 180.0, "roll": 180.0}  # degrees; the scores below are in [0, 1]
_UNIT = ("occlusion", "occlusion_any", "face_confidence")


def _read_shard(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of a face-analysis shard, validated (:class:`curate.cache.DamagedShard`):
    every column :func:`_write_shard` writes, angles within +-180 degrees, scores in
    [0, 1] (NaN where there is no face), sha256 keys."""
    df = pd.read_parquet(path)
    missing = [c for c in ["sha256", *COLUMNS[1:]] if c not in df.columns]
    if missing:
        raise cache.DamagedShard(f"no column {missing[0]}")
    if not df["sha256"].map(lambda k: isinstance(k, str) and len(k) == 64).all():
        raise cache.DamagedShard("keys that are not sha256 digests")
    if df["face_found"].dtype != bool:
        raise cache.DamagedShard(f"face_found of type {df['face_found'].dtype}")
    for c in (*_BOUNDS, *_UNIT):
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        lo, hi = (-_BOUNDS[c], _BOUNDS[c]) if c in _BOUNDS else (0.0, 1.0)
        if ((v < lo) | (v > hi) | np.isinf(v)).any() or (
            np.isnan(v) & df[c].notna().to_numpy()
        ).any():
            raise cache.DamagedShard(f"{c} values outside [{lo:g}, {hi:g}]")
    return {rec["sha256"]: rec for rec in df.to_dict("records")}


def _write_shard(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    df = pd.DataFrame(
        [
            {"sha256": sha, **{k: v for k, v in r.items() if k not in ("path", "sha256")}}
            for sha, r in zip(keys, rows, strict=True)
        ]
    )
    for c in ("detail",):  # same schema whether any value is set
        if c in df.columns:
            df[c] = df[c].astype("string")
    df.to_parquet(path, index=False)
