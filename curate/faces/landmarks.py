"""Faces found by MediaPipe: the landmarker's 478 points and pose, the BlazeFace
detector's confidence, the aligned crop, and one output row per image (scored by the
occlusion model)."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.faces.geometry import align_face, five_points, pose_from_matrix, prepare_for_detection
from curate.images import load_arrays


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
            rgb, gray = load_arrays(path)  # the embedder's pixels (curate.images)
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
