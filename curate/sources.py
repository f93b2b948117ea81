"""Sources: what kind of path a command was given, and how folders and manifests are read.

Every stage that takes a path asks :func:`source_kind`, and every manifest is read by
:func:`read_manifest`, so the stages agree on what a path is and on what a missing
value is. The kinds, tried in this order:

``run``
    a fine-tuning run folder (``config.json`` and ``model.safetensors``), see
    :mod:`curate.runs`;
``screen``
    a ``curate screen`` output folder (``kept.parquet``; its ``run.json`` names the
    build folder, see :func:`screen_build_dir`);
``build``
    a ``curate build-tuples`` output folder (``images.parquet``);
``labelled_folder``
    an image folder with class folders, ``ROOT/<class>/<image>`` or
    ``ROOT/<split>/<class>/<image>`` (see :mod:`curate.ingest`);
``image_folder``
    any other folder: images without labels;
``manifest``
    a CSV or Parquet file with one row per image.

Missing values in a manifest: an empty CSV cell, a null Parquet value, ``None`` and NaN
are missing (:func:`is_missing`); any text, ``"NA"`` included, is a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

# the files that mark the folders curate writes
BUILD_IMAGES_FILE = "images.parquet"
BUILD_TUPLES_FILE = "tuples.parquet"
SCREEN_KEPT_FILE = "kept.parquet"
RUN_JSON_FILE = "run.json"
RUN_CONFIG_FILE = "config.json"
RUN_MODEL_FILE = "model.safetensors"

KINDS = ("run", "screen", "build", "labelled_folder", "image_folder", "manifest")


def source_kind(source: str | os.PathLike[str], *, hint: str) -> str:
    """The kind of ``source`` (one of :data:`KINDS`, see the module doc).

    Raises :class:`CurateError` when ``source`` does not exist (with ``hint``) or is a
    file that is not a CSV/Parquet manifest.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise CurateError(f"source not found: {src}", hint=hint)
    if src.is_dir():
        if is_run_dir(src):
            return "run"
        if (src / SCREEN_KEPT_FILE).is_file():
            return "screen"
        if (src / BUILD_IMAGES_FILE).is_file():
            return "build"
        return "labelled_folder" if class_folders(src) else "image_folder"
    if src.suffix.lower() in MANIFEST_SUFFIXES:
        return "manifest"
    raise CurateError(f"cannot read {src}: expected a folder, a .csv or a .parquet manifest",
                      hint="point SOURCE at the image folder or at its manifest")


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with a run's ``config.json`` and ``model.safetensors``."""
    p = Path(path)
    return p.is_dir() and (p / RUN_CONFIG_FILE).is_file() and (p / RUN_MODEL_FILE).is_file()


def is_hidden(name: str) -> bool:
    """Files and folders whose name starts with a dot are never read."""
    return name.startswith(".")


def class_folders(root: Path) -> list[Path]:
    """The visible sub-folders of ``root``, sorted (class or split folders)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def walk_files(root: Path, suffixes: Iterable[str] | None = None) -> list[Path]:
    """Files under ``root``, in sorted walk order (a folder's files, then its sub-folders),
    skipping hidden names; only those ending in ``suffixes`` (any case) when given."""
    keep = None if suffixes is None else {s.lower() for s in suffixes}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            if not is_hidden(name) and (keep is None or Path(name).suffix.lower() in keep):
                out.append(Path(dirpath) / name)
    return out


# ----------------------------------------------------------------------------- manifests

def read_manifest(manifest: Path) -> pd.DataFrame:
    """A CSV (every cell text, empty cells missing) or Parquet manifest as a table."""
    try:
        if manifest.suffix.lower() == ".csv":
            return pd.read_csv(manifest, dtype=str, keep_default_na=False, na_values=[""])
        return pd.read_parquet(manifest)
    except Exception as exc:  # parser errors come in many types
        raise CurateError(f"cannot read manifest {manifest}: {exc}",
                          hint="check that it is a valid CSV (with a header row) or Parquet file") from exc


def is_missing(v: object) -> bool:
    """The manifests' missing value: None, NaN or pandas' NA."""
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def require_columns(table: pd.DataFrame, manifest: Path, options: Mapping[str, str]) -> None:
    """Raise a :class:`CurateError` naming the first column of ``options`` (column -> the
    option that names it) that ``table`` lacks, and the columns it has."""
    found = ", ".join(map(str, table.columns)) or "(none)"
    for col, option in options.items():
        if col not in table.columns:
            raise CurateError(f"manifest {manifest} has no column {col!r}; columns found: {found}",
                              hint=f"name the right column with {option} COLUMN")


def manifest_paths(table: pd.DataFrame, column: str, manifest: Path) -> tuple[list[str], list[str]]:
    """The paths of a manifest column: (as written, stripped; resolved against the
    manifest's folder). A missing or blank path is ``""`` in both."""
    rel = table[column].astype("string").fillna("").str.strip().tolist()
    base = manifest.parent.resolve()
    return rel, [str((base / p).resolve()) if p else "" for p in rel]


# ----------------------------------------------------------------------------- curate's folders

def read_run_json(folder: Path) -> dict[str, Any]:
    """A stage's ``run.json`` in ``folder`` (empty when there is none)."""
    path = folder / RUN_JSON_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurateError(f"cannot read {path}: {exc}", hint="re-run the stage that wrote it") from exc
    return data if isinstance(data, dict) else {}


def images_build_dir(source: Path, kind: str) -> Path | None:
    """The build-tuples folder whose ``images.parquet`` a source of ``kind`` stands for:
    itself for a ``build``, the build it screened for a ``screen`` (None when its
    ``run.json`` names none), None for every other kind."""
    if kind == "build":
        return source
    return screen_build_dir(source) if kind == "screen" else None


def screen_build_dir(folder: Path) -> Path | None:
    """The build-tuples folder a screen output folder was screened from, or None.

    Read from its ``run.json`` (``params.build_dir``, ``params.source`` or
    ``inputs.build_dir``, relative paths against ``folder``); the first that holds
    ``images.parquet``.
    """
    run = read_run_json(folder)
    params = run.get("params") if isinstance(run.get("params"), dict) else {}
    inputs = run.get("inputs") if isinstance(run.get("inputs"), dict) else {}
    for cand in (params.get("build_dir"), params.get("source"), inputs.get("build_dir")):
        if not cand:
            continue
        p = Path(str(cand))
        p = p if p.is_absolute() else folder / p
        if (p / BUILD_IMAGES_FILE).is_file():
            return p.resolve()
    return None
