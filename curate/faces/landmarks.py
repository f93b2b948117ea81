"""Faces found by MediaPipe: the landmarker's 478 points and pose, the BlazeFace
detector's confidence, the aligned crop, and one output row per image (scored by the
occlusion model, a batch at a time). :class:`FaceAnalyzer` runs MediaPipe's Tasks API;
:mod:`curate.faces.litert` the same models without it, faster."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import zipfile
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.faces.geometry import (
    align_by_keypoints,
    align_face,
    calibrated_yaw,
    five_points,
    keypoint_yaw,
    pose_from_matrix,
    prepare_for_detection,
)
from curate.images import load_arrays
from curate.workers import exit_with_parent


@dataclass
class FaceResult:
    """What the landmarker found in one image (internal)."""

    face_found: bool
    detail: str | None
    yaw: float = math.nan
    pitch: float = math.nan
    roll: float = math.nan
    face_confidence: float = 0.0
    aligned: np.ndarray | None = None  # 48x48 uint8 (by the keypoints without landmarks)
    landmarks: np.ndarray | None = None  # 478x2 pixels of the original image
    matrix_yaw: float = math.nan  # the transformation matrix's yaw alone (yaw is calibrated)
    blendshapes: np.ndarray | None = None  # 52 scores (BLENDSHAPE_NAMES) when asked for
    box: tuple[float, float, float, float] | None = None  # landmarks' x0, y0, x1, y1 (pixels)


# MediaPipe's face blendshapes (``FaceBlendshapesGraph``, face_blendshapes_graph.cc): the
# 146 landmarks its model reads (kLandmarksSubsetIdxs) and its 52 outputs in order.
BLENDSHAPE_LANDMARKS = (
    0,
    1,
    4,
    5,
    6,
    7,
    8,
    10,
    13,
    14,
    17,
    21,
    33,
    37,
    39,
    40,
    46,
    52,
    53,
    54,
    55,
    58,
    61,
    63,
    65,
    66,
    67,
    70,
    78,
    80,
    81,
    82,
    84,
    87,
    88,
    91,
    93,
    95,
    103,
    105,
    107,
    109,
    127,
    132,
    133,
    136,
    144,
    145,
    146,
    148,
    149,
    150,
    152,
    153,
    154,
    155,
    157,
    158,
    159,
    160,
    161,
    162,
    163,
    168,
    172,
    173,
    176,
    178,
    181,
    185,
    191,
    195,
    197,
    234,
    246,
    249,
    251,
    263,
    267,
    269,
    270,
    276,
    282,
    283,
    284,
    285,
    288,
    291,
    293,
    295,
    296,
    297,
    300,
    308,
    310,
    311,
    312,
    314,
    317,
    318,
    321,
    323,
    324,
    332,
    334,
    336,
    338,
    356,
    361,
    362,
    365,
    373,
    374,
    375,
    377,
    378,
    379,
    380,
    381,
    382,
    384,
    385,
    386,
    387,
    388,
    389,
    390,
    397,
    398,
    400,
    402,
    405,
    409,
    415,
    454,
    466,
    468,
    469,
    470,
    471,
    472,
    473,
    474,
    475,
    476,
    477,
)
BLENDSHAPE_NAMES = (
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
)


def found_face(
    points: np.ndarray,
    matrix: np.ndarray,
    confidence: float,
    prepared_shape: tuple[int, ...],
    pad: int,
    scale: float,
    gray: np.ndarray,
) -> FaceResult:
    """The :class:`FaceResult` of a face the landmarker found.

    ``points``: its 478 landmarks normalised to the prepared image (x and y first);
    ``matrix``: the facial transformation matrix; ``prepared_shape``, ``pad``, ``scale``:
    what :func:`~curate.faces.geometry.prepare_for_detection` did to the image ``gray``.
    """
    h, w = prepared_shape[:2]
    marks = (np.asarray(points, dtype=np.float64)[:, :2] * (w, h)).astype(np.float32) / scale - pad
    matrix_yaw, pitch, roll = pose_from_matrix(matrix)
    aligned = align_face(gray, five_points(marks))
    return FaceResult(
        True,
        None,
        calibrated_yaw(matrix_yaw, marks),
        pitch,
        roll,
        float(confidence),
        aligned,
        marks,
        matrix_yaw,
    )


NO_FACE = "no face found by the landmarker"
# BlazeFace scores at or above this are a face to its detector (min_face_detection_confidence)
FACE_LIKE = 0.5


def no_face_detail(confidence: float, yaw: float = math.nan) -> str:
    """``detail`` of an image where no face was found, saying what a curator can do: below
    BlazeFace's own threshold (:data:`FACE_LIKE`) most such pictures are not faces at all
    (or too dark, blurred or cut off: drop them); above it a face was detected whose
    landmarks could not be placed (a profile, or a face covered or tilted far: look at it,
    or keep such images with ``--no-face keep``). ``yaw``: the turn read from the detector's
    keypoints (:func:`~curate.faces.geometry.keypoint_yaw`), said where known."""
    if confidence < FACE_LIKE:
        return (
            f"{NO_FACE}: no face detected (score {confidence:.2f}; not a face, "
            "or one too dark, blurred or cut off)"
        )
    turned = "" if math.isnan(yaw) else f", turned {abs(yaw):.0f} degrees by its keypoints"
    return (
        f"{NO_FACE}: a face detected (score {confidence:.2f}{turned}) without landmarks "
        "(a profile, or a face covered or tilted far)"
    )


def missed_face(
    confidence: float,
    keypoints: np.ndarray | None,
    gray: np.ndarray | None = None,
    pad: int = 0,
    scale: float = 1.0,
) -> FaceResult:
    """The :class:`FaceResult` of an image whose landmarks could not be placed: where
    BlazeFace found a face (score at least :data:`FACE_LIKE`, its six ``keypoints`` in
    pixels of the prepared image) its ``yaw`` is :func:`~curate.faces.geometry.keypoint_yaw`,
    so the side-face screen can name a turned face as one, and, given the picture's ``gray``
    (and the ``pad`` and ``scale`` of :func:`~curate.faces.geometry.prepare_for_detection`),
    its ``aligned`` crop is :func:`~curate.faces.geometry.align_by_keypoints`, so occlusion
    is scored and the occlusion screen can name a covered face as one; else NaN and None."""
    if keypoints is None or confidence < FACE_LIKE:
        return FaceResult(False, no_face_detail(confidence), face_confidence=float(confidence))
    yaw = keypoint_yaw(keypoints)
    aligned = (
        None
        if gray is None
        else align_by_keypoints(gray, np.asarray(keypoints, np.float32) / scale - pad)
    )
    return FaceResult(
        False,
        no_face_detail(confidence, yaw),
        yaw=yaw,
        face_confidence=float(confidence),
        aligned=aligned,
    )


class FaceFinder:
    """Finds the face of one image: decoding here, the landmarker in the subclass
    (:class:`FaceAnalyzer` on MediaPipe Tasks, :class:`curate.faces.litert.LiteFaceFinder`
    on the bare models)."""

    def close(self) -> None:
        """Release the landmarker."""

    def find_face(self, path: str | os.PathLike[str]) -> FaceResult:
        """Landmarks, pose, detector score and aligned crop for one image file."""
        try:
            rgb, gray = load_arrays(path)  # the embedder's pixels (curate.images)
        except CurateError as exc:
            return FaceResult(False, exc.message)
        return self.find_face_in_array(rgb, gray)

    def find_face_in_array(self, rgb: np.ndarray, gray: np.ndarray) -> FaceResult:
        """As :meth:`find_face`, for an already decoded image (RGB uint8 and its grey)."""
        raise NotImplementedError

    def find_many(self, paths: Sequence[str]) -> list[FaceResult]:
        """:func:`find_one` of each of ``paths``, in order: here one at a time; a subclass
        may find them together, with the same results
        (:meth:`curate.faces.litert.LiteFaceFinder.find_many`)."""
        results = []
        for path in paths:
            try:
                found = self.find_face(path)
            except find_errors() as exc:  # recorded, not hidden
                found = failed_analysis(exc)
            results.append(with_box(found))
        return results


def find_errors() -> tuple[type[Exception], ...]:
    """The errors of one image's analysis that its row records (``analysis_failed``)
    instead of stopping the run."""
    import cv2

    return (RuntimeError, ValueError, OSError, cv2.error)


def failed_analysis(exc: Exception) -> FaceResult:
    """The :class:`FaceResult` of an analysis that raised one of :func:`find_errors`."""
    return FaceResult(False, f"analysis_failed: {type(exc).__name__}: {exc}")


def with_box(found: FaceResult) -> FaceResult:
    """``found`` with its landmarks' box (x0, y0, x1, y1) set where it has landmarks."""
    if found.landmarks is not None and found.box is None:
        lo, hi = found.landmarks.min(axis=0), found.landmarks.max(axis=0)
        found.box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    return found


class FaceAnalyzer(FaceFinder):
    """MediaPipe Tasks landmarker + detector (+ an occlusion model) for one process: the
    reference implementation, and the fallback where ``ai-edge-litert`` is not installed.

    Not thread-safe; create one per worker process.
    """

    def __init__(
        self, model_path: Path, *, occlusion_model: Any | None = None, blendshapes: bool = False
    ) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self._mp = mp
        self.landmarker = vision.FaceLandmarker.create_from_options(
            vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(model_path)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=1,
                min_face_detection_confidence=0.5,
                min_face_presence_confidence=0.5,
                output_face_blendshapes=blendshapes,
                output_facial_transformation_matrixes=True,
            )
        )
        with zipfile.ZipFile(model_path) as bundle:
            detector_bytes = bundle.read("face_detector.tflite")
        self.detector = vision.FaceDetector.create_from_options(
            vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=detector_bytes),
                running_mode=vision.RunningMode.IMAGE,
                min_detection_confidence=0.05,
            )
        )
        self.occlusion_model = occlusion_model

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        self.landmarker.close()
        self.detector.close()

    def find_face_in_array(self, rgb: np.ndarray, gray: np.ndarray) -> FaceResult:
        """As :meth:`find_face`, for an already decoded image (RGB uint8 and its grey)."""
        prepared, pad, scale = prepare_for_detection(rgb)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=prepared)
        scored = [
            (d.categories[0].score, d)
            for d in self.detector.detect(image).detections
            if d.categories
        ]
        confidence, top = max(scored, key=lambda s: s[0], default=(0.0, None))
        result = self.landmarker.detect(image)
        if not result.face_landmarks:
            h, w = prepared.shape[:2]
            keypoints = (
                np.array([[k.x * w, k.y * h] for k in top.keypoints])
                if top is not None and len(top.keypoints) == 6
                else None
            )
            return missed_face(float(confidence), keypoints, gray, pad, scale)
        points = np.array([[p.x, p.y] for p in result.face_landmarks[0]])
        found = found_face(
            points,
            np.asarray(result.facial_transformation_matrixes[0]),
            confidence,
            prepared.shape,
            pad,
            scale,
            gray,
        )
        if result.face_blendshapes:
            found.blendshapes = np.array(
                [c.score for c in result.face_blendshapes[0]], dtype=np.float32
            )
        return found

    def analyze(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """One output row (without ``image_id``) for one image file."""
        return self.row(str(path), self.find_face(path))

    def row(self, path: str, found: FaceResult) -> dict[str, Any]:
        """Turn a :class:`FaceResult` into an output row, scoring occlusion."""
        return face_rows([path], [found], self.occlusion_model)[0]


def face_rows(
    paths: Sequence[str], found: Sequence[FaceResult], occlusion_model: Any | None
) -> list[dict[str, Any]]:
    """Output rows (without ``image_id``) for faces found in ``paths``; the occlusion model
    (:class:`~curate.faces.occlusion.OcclusionModel`, or None for no score) reads all
    aligned faces in one batch."""
    # faces found, and faces detected without landmarks (aligned by the detector's keypoints)
    with_face = [i for i, f in enumerate(found) if f.aligned is not None]
    scores: dict[int, tuple[float, float]] = {}
    if occlusion_model is not None and with_face:
        batch = np.stack([found[i].aligned for i in with_face])  # type: ignore[misc]
        scores = dict(zip(with_face, occlusion_model.scores(batch), strict=True))
    rows = []
    for i, (path, f) in enumerate(zip(paths, found, strict=True)):
        occlusion, covered = scores.get(i, (math.nan, math.nan))
        rows.append(
            {
                "path": path,
                "face_found": f.face_found,
                "yaw": f.yaw,
                "pitch": f.pitch,
                "roll": f.roll,
                "occlusion": occlusion,
                "occlusion_any": covered,
                "face_confidence": f.face_confidence,
                "detail": f.detail,
            }
        )
    return rows


# --------------------------------------------------------------------------- many images
BATCH = 64  # most images per task sent to a worker (and so per occlusion batch)

_WORKER: FaceFinder | None = None


def find_faces(
    paths: list[str], model_path: Path, backend: str, n_workers: int, *, blendshapes: bool = False
) -> Generator[list[FaceResult], None, None]:
    """The faces of ``paths``, a batch of at most :data:`BATCH` at a time, in order: in this
    process (``n_workers <= 1``) or in ``n_workers`` spawned processes. ``backend``:
    ``litert`` or ``tasks`` (:data:`curate.faces.analyze.BACKENDS`); with ``blendshapes``
    every found face carries its 52 blendshape scores."""
    size = max(1, min(BATCH, len(paths) // (max(n_workers, 1) * 4)))
    batches = [paths[i : i + size] for i in range(0, len(paths), size)]
    if n_workers <= 1:
        with quiet_native_stderr():
            finder = make_finder(backend, model_path, blendshapes=blendshapes)
            try:
                for batch in batches:
                    yield finder.find_many(batch)
            finally:
                finder.close()
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        n_workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(backend, str(model_path), blendshapes),
    ) as pool:
        yield from pool.map(_find_in_worker, batches)


def make_finder(backend: str, model_path: Path, *, blendshapes: bool = False) -> FaceFinder:
    """The face finder of ``backend`` on the model file ``model_path`` (with ``blendshapes``:
    one that scores them too)."""
    if backend == "litert":
        from curate.faces.litert import LiteFaceFinder

        return LiteFaceFinder(model_path, blendshapes=blendshapes)
    return FaceAnalyzer(model_path, blendshapes=blendshapes)


# --------------------------------------------------------------------------- workers
def _init_worker(backend: str, model_path: str, blendshapes: bool = False) -> None:
    global _WORKER
    from multiprocessing import util

    exit_with_parent()  # a parent killed by SIGKILL leaves no worker behind
    # this process only finds faces, and its Python errors reach the parent pickled
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    _WORKER = make_finder(backend, Path(model_path), blendshapes=blendshapes)
    # close while MediaPipe's dispatcher threads still run (a plain atexit hook is too late)
    util.Finalize(_WORKER, _WORKER.close, exitpriority=10)


def _find_in_worker(paths: list[str]) -> list[FaceResult]:
    assert _WORKER is not None, "worker not initialised"
    found = _WORKER.find_many(paths)
    for f in found:
        f.landmarks = None  # not needed by the rows: less to send back
    return found


def find_one(finder: FaceFinder, path: str) -> FaceResult:
    """The face in one file; a failed analysis is a result that says why (never raises for
    a bad image: :func:`find_errors`). For many files, :meth:`FaceFinder.find_many` (the
    local workers and the Ray actors of :mod:`curate.ray_engine` call it) gives the same."""
    return FaceFinder.find_many(finder, [path])[0]


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
