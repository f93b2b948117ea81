"""Atomic writes, run records and fingerprints (of tables and files) shared by every stage.

Every output file is written to a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from curate.errors import CurateError

TRACKED_PACKAGES = (
    "numpy", "pandas", "pyarrow", "pillow", "torch", "torchvision", "timm", "scipy",
    "typer", "rich", "matplotlib", "safetensors", "mediapipe", "ai-edge-litert",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` as Parquet, atomically, without the pandas index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_parquet(path: str | os.PathLike[str], *, what: str = "table") -> pd.DataFrame:
    """Read a Parquet file, turning a missing or broken file into a :class:`CurateError`."""
    p = Path(path)
    if not p.exists():
        raise CurateError(f"{what} not found: {p}", hint="check the path, or run the stage that writes it")
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise CurateError(f"cannot read {what} {p}: {exc}", hint="re-run the stage that writes it") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def versions() -> dict[str, str]:
    """Versions of curate, Python and the libraries that shape results."""
    from curate import __version__

    out = {"curate": __version__, "python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        v = _version(name)
        if v != "not installed":
            out[name] = v
    return out


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks; ``OSError`` when unreadable."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A sha256 over the given columns of a table: same rows, same fingerprint."""
    cols = columns or list(df.columns)
    h = hashlib.sha256()
    h.update(json.dumps(cols).encode())
    hashed = pd.util.hash_pandas_object(df[cols].astype("string"), index=False)
    h.update(hashed.to_numpy().tobytes())
    return h.hexdigest()


def run_record(command: str, params: Mapping[str, Any], *, inputs: Mapping[str, Any],
               counts: Mapping[str, Any], started: float) -> dict[str, Any]:
    """The ``run.json`` every stage writes next to its outputs."""
    return {
        "command": command,
        "argv": sys.argv,
        "params": dict(params),
        "inputs": dict(inputs),
        "counts": dict(counts),
        "versions": versions(),
        "platform": platform.platform(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
    }
