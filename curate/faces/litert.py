"""MediaPipe's face landmarker on the bare models of its ``.task`` bundle, run with LiteRT.

The Tasks ``FaceLandmarker`` (:mod:`curate.faces.landmarks`) spends most of its time
outside the two networks: a graph scheduler, a second BlazeFace run for the detector score,
a blendshapes network whose output is thrown away. :class:`LiteLandmarker` runs the same
``face_detector.tflite`` and ``face_landmarks_detector.tflite`` with ``ai-edge-litert`` (one
thread) and re-implements the graph around them from MediaPipe's source, step by step:

* BlazeFace on the whole image, letterboxed to 128x128 (``ImageToTensorCalculator``,
  values in [-1, 1]), its 896 SSD anchors decoded (``TensorsToDetectionsCalculator``);
  ``face_confidence`` is the top score of those at or above 0.05 (the separate
  ``FaceDetector`` of the Tasks path), the face is the first output of weighted
  non-maximum suppression (IoU 0.5) of those at or above 0.5;
* the face rectangle, turned by the angle of the eye keypoints and enlarged 1.5 times
  (``DetectionsToRectsCalculator``, ``RectTransformationCalculator``), is cut out at
  256x256 (values in [0, 1]) for the landmark network, whose presence score must exceed
  0.5; its 478 points are projected back into the image (``LandmarkProjectionCalculator``);
* the facial transformation matrix is the geometry pipeline's
  (``face_geometry/libs/geometry_pipeline.cc``): the first 468 points in a perspective
  camera (63 degree vertical field of view), two passes of scale estimation, then weighted
  orthogonal Procrustes against the canonical face of the bundle's
  ``geometry_pipeline_metadata_landmarks.binarypb``.

Crops are cut with the fixed-point sampling of OpenCV 4's ``warpPerspective``, which
MediaPipe is built with (OpenCV 5's samples differently). On face crops the results agree
with the Tasks path to about 0.01 degrees (``docs/faces.md``, "Speed").
"""

from __future__ import annotations

import functools
import math
import os
import struct
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.faces.geometry import prepare_for_detection
from curate.faces.landmarks import (
    BLENDSHAPE_LANDMARKS,
    FaceFinder,
    FaceResult,
    failed_analysis,
    find_errors,
    found_face,
    missed_face,
    with_box,
)
from curate.images import load_face_arrays

DETECTOR_SIZE = 128
LANDMARKS_SIZE = 256
N_LANDMARKS = 478
N_MESH = 468  # the geometry pipeline reads the mesh without the iris points
MIN_DETECTION = 0.5  # FaceLandmarkerOptions.min_face_detection_confidence
MIN_PRESENCE = 0.5  # FaceLandmarkerOptions.min_face_presence_confidence
MIN_SCORE = 0.05  # the FaceDetector that reports face_confidence
NMS_IOU = 0.5  # FaceDetectorGraphOptions.min_suppression_threshold (its default)
DETECTOR_NMS_IOU = 0.3  # the Tasks FaceDetectorOptions.min_suppression_threshold default
ROI_SCALE = 1.5
FOV_DEGREES = 63.0  # FaceGeometryEnvGeneratorCalculator's perspective camera
NEAR = 1.0
# logit of the lowest score that can matter, with a margin for float rounding
MIN_LOGIT = math.log(MIN_SCORE / (1.0 - MIN_SCORE)) - 1e-4
EXACT_CROPS_ABOVE = 512  # images this large get the float64 crop maps (float32 would round)
MAP_CACHE = 32  # image sizes whose detector crop maps are kept
# LiteFaceFinder.find_many finds the faces of at most this many pictures together, their
# prepared images holding at most about GROUP_BYTES: each network runs on all of them back
# to back, and each step between the networks too (docs/faces.md, "Speed")
GROUP_IMAGES = 64
GROUP_BYTES = 32 * 2**20
# Where the landmark network looks again when BlazeFace finds no face (or the landmarks
# fail): squares around the whole picture, (side / the picture's longer side, degrees of
# rotation), tried in order until a face is found that holds (RETRY_MAX_SHIFT). BlazeFace
# misses turned, tilted and partly covered faces that fill a tight crop (48 px FER2013);
# the landmark network finds many of them when it is shown the whole crop. The two squares
# that gave the most faces that hold on the dev half of fer2013/val's misses (of 15 tried:
# 0.8, 1 and 1.25 times, turned 0, +-20 or +-40 degrees; docs/faces.md).
# Only where BlazeFace's top score reaches RETRY_MIN_SCORE: below it lie mostly pictures
# that are no face at all (FERPlus's dropped files: median 0.18; missed real faces: 0.71).
RETRY_MIN_SCORE = 0.2
# A face found on retry must hold: the landmark network run again on the square its own
# landmarks span (MediaPipe's landmarks-to-rectangle, 1.5x, turned by the eye line) must
# find it again, its points moving by at most this share of the face's width (median);
# the refined points are the result. Faces found at the first look move 0.7% (median),
# turned faces found only on retry 6.5%, with yaw estimates that miss most of the turn.
RETRY_MAX_SHIFT = 0.03
RETRY_ROIS = ((1.25, 0.0), (1.0, 0.0))


# --------------------------------------------------------------------------- the bundle
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a serialised protobuf message, in order."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, wire, value


def read_geometry_metadata(buf: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The canonical face (3 x 468, centimetres) and the Procrustes weight of each point
    from the bytes of ``geometry_pipeline_metadata_landmarks.binarypb``.

    The message is ``GeometryPipelineMetadata`` (``face_geometry/proto/``): field 1 the
    canonical ``Mesh3d`` (vertex buffer of x, y, z, u, v per vertex in field 3), field 2
    the weighted landmark references (id, weight), field 3 the input source.
    """
    mesh, basis, source = b"", [], 0
    for field, _, value in _fields(buf):
        if field == 1 and isinstance(value, bytes):
            mesh = value
        elif field == 2 and isinstance(value, bytes):
            ref = {f: v for f, _, v in _fields(value)}
            weight = ref.get(2, b"\0\0\0\0")
            basis.append((int(ref.get(1, 0)), struct.unpack("<f", weight)[0]))  # type: ignore[arg-type]
        elif field == 3 and isinstance(value, int):
            source = value
    if source not in (0, 1):  # DEFAULT, FACE_LANDMARK_PIPELINE
        raise ValueError(f"geometry metadata is for input source {source}, not landmarks")
    floats = []
    for field, _, value in _fields(mesh):
        if field == 1 and value != 0:
            raise ValueError(f"canonical mesh has vertex type {value!r}, expected VERTEX_PT")
        if field == 3 and isinstance(value, bytes):  # packed floats
            floats.append(np.frombuffer(value, dtype="<f4"))
    if not floats or not basis:
        raise ValueError("geometry metadata holds no canonical mesh or no landmark weights")
    vertices = np.concatenate(floats).reshape(-1, 5)[:, :3].T.astype(np.float64)
    weights = np.zeros(vertices.shape[1])
    for landmark, weight in basis:
        weights[landmark] = weight
    return vertices, weights


def ssd_anchors() -> np.ndarray:
    """Centres (896 x 2) of the short-range BlazeFace anchors (``SsdAnchorsCalculator``:
    4 layers, strides 8, 16, 16, 16, two anchors per layer and cell, fixed size 1)."""
    strides = (8, 16, 16, 16)
    out = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        cells = math.ceil(DETECTOR_SIZE / strides[layer])
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        out.append(
            np.repeat(np.stack([xx.ravel(), yy.ravel()], axis=1), 2 * (last - layer), axis=0)
        )
        layer = last
    return np.concatenate(out)


# --------------------------------------------------------------------------- crops
Roi = tuple[float, float, float, float, float]  # centre x, centre y, width, height (px), radians


def _box_points(roi: Roi) -> np.ndarray:
    """Corners of a rotated rectangle in ``cv::RotatedRect::points`` order (for rotation 0:
    bottom-left, top-left, top-right, bottom-right)."""
    cx, cy, w, h, rotation = roi
    b, a = math.cos(rotation) * 0.5, math.sin(rotation) * 0.5
    p0 = (cx - a * h - b * w, cy + b * h - a * w)
    p1 = (cx + a * h - b * w, cy - b * h - a * w)
    return np.array(
        [p0, p1, (2 * cx - p0[0], 2 * cy - p0[1]), (2 * cx - p1[0], 2 * cy - p1[1])],
        dtype=np.float32,
    )


def _inverse_warp(roi: Roi, size: int) -> np.ndarray:
    """The 3x3 map from the ``size`` x ``size`` crop back to the image, as
    ``ImageToTensorCalculator`` (``getPerspectiveTransform``) and ``warpPerspective``
    (``invert``, LU) compute it."""
    import cv2

    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], dtype=np.float32)
    _, inverse = cv2.invert(cv2.getPerspectiveTransform(_box_points(roi), dst), flags=cv2.DECOMP_LU)
    return inverse


def _fixed_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps from source coordinates in 1/32 pixel (int32 arrays)."""
    xy = np.empty((*x.shape, 2), dtype=np.int16)
    np.right_shift(x, 5, out=xy[..., 0], casting="unsafe")
    np.right_shift(y, 5, out=xy[..., 1], casting="unsafe")
    return xy, ((y & 31) << 5 | (x & 31)).astype(np.uint16)


def warp_maps(roi: Roi, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point maps of the crop of ``roi`` exactly as OpenCV 4's ``warpPerspective``
    makes them (``WarpPerspectiveInvoker``): per row ``X0 = M1 y + M2``, per pixel
    ``X = cvRound((X0 + M0 x) * 32 / W)``, in that order, rounding half to even.

    MediaPipe's crops come from OpenCV 4; OpenCV 5's ``warpPerspective`` samples
    differently (one grey level off on about 4% of the pixels of a rotated face crop).
    """
    m = _inverse_warp(roi, size).ravel()
    ax = np.arange(size, dtype=np.float64)
    w = (m[7] * ax + m[8])[:, None] + m[6] * ax[None, :]
    w = np.divide(32.0, w, out=np.zeros_like(w), where=w != 0)
    x = ((m[1] * ax + m[2])[:, None] + m[0] * ax[None, :]) * w
    y = ((m[4] * ax + m[5])[:, None] + m[3] * ax[None, :]) * w
    return _fixed_maps(np.rint(x).astype(np.int32), np.rint(y).astype(np.int32))


def affine_maps(roi: Roi, size: int) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`warp_maps`, several times faster, for a rotated rectangle (an affine warp:
    the perspective row of the matrix is 0, 0, 1 up to rounding): float32 coordinates
    rounded by ``cv2.convertMaps``. The two differ only near rounding ties (about 1e-4 of
    the pixels of a rotated face crop, by 1/32 pixel)."""
    import cv2

    m = _inverse_warp(roi, size)
    m = m / float(m[2, 2])
    ax = np.arange(size, dtype=np.float64)
    x = np.add.outer((m[0, 1] * ax + m[0, 2]).astype(np.float32), (m[0, 0] * ax).astype(np.float32))
    y = np.add.outer((m[1, 1] * ax + m[1, 2]).astype(np.float32), (m[1, 0] * ax).astype(np.float32))
    return cv2.convertMaps(x, y, cv2.CV_16SC2)


def crop(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray], *, replicate: bool) -> np.ndarray:
    """The crop of ``image`` (H x W x 3 or H x W) given by fixed-point ``maps`` (bilinear),
    uint8; outside the image the border is repeated (``replicate``) or black."""
    import cv2

    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def roi_to_image(roi: Roi, width: int, height: int) -> np.ndarray:
    """2x3 map from crop-normalised to image-normalised coordinates
    (``GetRotatedSubRectToRectTransformMatrix``)."""
    cx, cy, a, b, rotation = roi
    c, d = math.cos(rotation), math.sin(rotation)
    return np.array(
        [
            [a * c / width, -b * d / width, (-0.5 * a * c + 0.5 * b * d + cx) / width],
            [a * d / height, b * c / height, (-0.5 * b * c - 0.5 * a * d + cy) / height],
        ]
    )


@dataclass
class DetectorCrop:
    """BlazeFace's input crop of every ``h`` x ``w`` image: the whole image letterboxed into
    a square of side ``max(w, h)`` and sampled at 128x128 (:func:`warp_maps`), and the map
    of its coordinates back to the image's (``scale``, ``shift``: float32 x, y).

    Where every sample falls on a pixel (no fraction of one) inside the image, as for a
    square image whose side is a multiple of 128 (the 256 px a 48 px crop is prepared to),
    the bilinear crop is those pixels exactly (their weight is 1, the others' 0): they are
    picked (:attr:`pick`: slices where evenly spaced) instead of sampled by ``cv2.remap``."""

    maps: tuple[np.ndarray, np.ndarray]
    scale: np.ndarray
    shift: np.ndarray
    pick: tuple[Any, Any] | None = None  # (rows, columns) of the pixels, where they are all

    @classmethod
    def of(cls, h: int, w: int) -> DetectorCrop:
        side = float(max(w, h))  # keep_aspect_ratio: the whole image, letterboxed
        maps = warp_maps((0.5 * w, 0.5 * h, side, side, 0.0), DETECTOR_SIZE)
        scale = np.array([side / w, side / h], dtype=np.float32)
        crop = cls(maps, scale, 0.5 - 0.5 * scale)
        xy, fraction = maps
        x, y = xy[..., 0].astype(np.int64), xy[..., 1].astype(np.int64)
        if (
            not fraction.any()
            and (x == x[:1]).all()  # each column samples one image column, each row one row
            and (y == y[:, :1]).all()
            and 0 <= x.min()
            and x.max() < w
            and 0 <= y.min()
            and y.max() < h
        ):
            rows, cols = _as_slice(y[:, 0]), _as_slice(x[0])
            if isinstance(rows, slice) and isinstance(cols, slice):
                crop.pick = (rows, cols)
            else:
                crop.pick = (y[:, :1], x[:1])
        return crop

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The 128x128 crop of ``image`` (uint8, H x W or H x W x 3): :func:`crop` with
        :attr:`maps` (black outside the image), or the same pixels picked."""
        if self.pick is None:
            return crop(image, self.maps, replicate=False)
        return np.ascontiguousarray(image[self.pick])


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """``index`` (integers) as the slice that gives them where evenly spaced and
    increasing, else ``index``."""
    step = int(index[1] - index[0]) if index.size > 1 else 1
    if step > 0 and (np.diff(index) == step).all():
        return slice(int(index[0]), int(index[-1]) + 1, step)
    return index


# --------------------------------------------------------------------------- geometry pipeline
class WeightedProcrustes:
    """Weighted orthogonal Procrustes with scale from a fixed 3 x N ``source`` (MediaPipe's
    ``FloatPrecisionProcrustesSolver``): :meth:`solve` gives the 4x4 similarity ``M``
    (rotation, scale, translation) minimising ``sum_i w_i |M source_i - target_i|^2``."""

    def __init__(self, source: np.ndarray, weights: np.ndarray) -> None:
        used = np.flatnonzero(weights > 0)  # points of weight 0 add nothing to any sum
        self.used = used
        self.sqrt_weights = np.sqrt(np.asarray(weights, dtype=np.float64)[used])
        self.total = float(np.dot(self.sqrt_weights, self.sqrt_weights))
        self.weighted = np.asarray(source, dtype=np.float64)[:, used] * self.sqrt_weights
        centre = (self.weighted * self.sqrt_weights).sum(axis=1, keepdims=True) / self.total
        self.centred = self.weighted - centre * self.sqrt_weights
        self.spread = float((self.centred * self.weighted).sum())

    def _rotation_scale(self, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """The rotation and scale of :meth:`solve`, and the weighted target."""
        if target.shape[1] != self.used.size:
            target = target[:, self.used]
        wt = target * self.sqrt_weights
        u, _, vt = np.linalg.svd(wt @ self.centred.T)
        rotation = u @ vt
        if _det3(rotation) < 0:  # det(U) det(V^T) < 0: flip U's last column
            u[:, 2] *= -1
            rotation = u @ vt
        return rotation, float(((rotation @ self.centred) * wt).sum()) / self.spread, wt

    def scale(self, target: np.ndarray) -> float:
        """The length of the first column of :meth:`solve`'s ``M`` (its scale), the same
        float, without the translation."""
        rotation, scale, _ = self._rotation_scale(target)
        return float(np.linalg.norm(scale * rotation[:, 0]))

    def solve(self, target: np.ndarray) -> np.ndarray:
        """``M`` for a 3 x N ``target`` (all N points, or only those of :attr:`used`)."""
        rotation, scale, wt = self._rotation_scale(target)
        out = np.eye(4)
        out[:3, :3] = scale * rotation
        out[:3, 3] = ((wt - scale * rotation @ self.weighted) * self.sqrt_weights).sum(
            axis=1
        ) / self.total
        return out


def _det3(m: np.ndarray) -> float:
    """The determinant of a 3x3 matrix by its rule of Sarrus (for the sign of an orthogonal
    matrix's, +-1 up to rounding: the sign of ``np.linalg.det``, without its overhead)."""
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


# the perspective camera's height at the near plane, and the sign flip of the first scale
# estimate (ChangeHandedness on the screen points)
HEIGHT_AT_NEAR = 2.0 * NEAR * math.tan(0.5 * math.radians(FOV_DEGREES))
_FLIP_Z = np.array([[1.0], [1.0], [-1.0]])


class FaceGeometry:
    """The geometry pipeline for landmarks: screen points to metric space, then the facial
    transformation matrix (the canonical face's pose in the camera frame)."""

    def __init__(self, canonical: np.ndarray, weights: np.ndarray) -> None:
        self.procrustes = WeightedProcrustes(canonical, weights)

    def matrix(self, landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
        """4x4 transformation matrix from normalised landmarks (x, y in 0..1 of a
        ``width`` x ``height`` image, z in image widths; the first 468 are used)."""
        height_at_near = HEIGHT_AT_NEAR
        width_at_near = width * height_at_near / height
        points = landmarks[:N_MESH]
        depth_offset = float(points[:, 2].mean()) * width_at_near
        points = points[self.procrustes.used].T
        screen = np.stack(
            [
                (points[0] - 0.5) * width_at_near,  # ProjectXY, origin top left
                (0.5 - points[1]) * height_at_near,
                points[2] * width_at_near,
            ]
        )

        def metric(scale: float) -> np.ndarray:  # MoveAndRescaleZ, UnprojectXY, ChangeHandedness
            z = (screen[2] - depth_offset + NEAR) / scale
            return np.stack([screen[0] * z / NEAR, screen[1] * z / NEAR, -z])

        first = self.procrustes.scale(screen * _FLIP_Z)
        second = self.procrustes.scale(metric(first))
        return self.procrustes.solve(metric(first * second))


# --------------------------------------------------------------------------- the landmarker
def _set_image(interpreter, index: int, tile: np.ndarray, scale: float, offset: float) -> None:
    """Write ``tile * scale + offset`` (float32; a grey tile into all three channels) into
    the model's input tensor in place."""
    import cv2

    view = interpreter.tensor(index)()[0]
    if tile.ndim == 3:
        np.multiply(tile, np.float32(scale), out=view, casting="unsafe")
        if offset:
            view += np.float32(offset)
    else:
        # a grey tile: its 256 possible floats looked up, then copied into the three
        # channels (the floats of converting it to RGB first and multiplying, a fifth of
        # the work: numpy's broadcast into three channels was the slowest step)
        grey = cv2.LUT(tile, _input_table(scale, offset))
        written = cv2.merge((grey, grey, grey), dst=view)
        if not np.shares_memory(written, view):  # never expected: OpenCV made a new array
            view[...] = written
    del view  # no reference to the buffer may outlive the call (LiteRT's rule)


@functools.lru_cache(maxsize=8)
def _input_table(scale: float, offset: float) -> np.ndarray:
    """The network input of each grey level 0..255 (256 x 1 float32): ``level * scale +
    offset`` computed as numpy computes it on a tile (a float32 multiply, then a float32
    add), so a lookup gives the same bits."""
    table = np.arange(256, dtype=np.uint8).astype(np.float32) * np.float32(scale)
    if offset:
        table += np.float32(offset)
    table.flags.writeable = False
    return table.reshape(256, 1)


@dataclass
class LiteFace:
    """What the landmarker graph finds in one image."""

    confidence: float  # top BlazeFace score at or above 0.05, else 0
    landmarks: np.ndarray | None  # 478 x 3, image-normalised (None: no face)
    matrix: np.ndarray | None  # 4x4 facial transformation matrix
    blendshapes: np.ndarray | None = None  # 52 scores (BLENDSHAPE_NAMES), when asked for
    keypoints: np.ndarray | None = (
        None  # without landmarks: the FaceDetector's 6 keypoints (pixels)
    )


class LiteLandmarker:
    """``FaceDetector`` score + ``FaceLandmarker`` (IMAGE mode, one face, transformation
    matrix) on the bare models of a ``face_landmarker.task`` bundle, one thread.

    With ``blendshapes`` it also runs the bundle's ``face_blendshapes.tflite`` on the 146
    landmarks MediaPipe's ``FaceBlendshapesGraph`` selects (:data:`BLENDSHAPE_LANDMARKS`,
    in pixels of the image the landmarker saw), as ``output_face_blendshapes`` does.

    Not thread-safe; create one per process.
    """

    def __init__(
        self, model_path: str | Path, *, threads: int = 1, blendshapes: bool = False
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with zipfile.ZipFile(model_path) as bundle:
            detector = bundle.read("face_detector.tflite")
            landmarks = bundle.read("face_landmarks_detector.tflite")
            geometry = bundle.read("geometry_pipeline_metadata_landmarks.binarypb")
            shapes = bundle.read("face_blendshapes.tflite") if blendshapes else None
        self.blendshaper = None
        if shapes is not None:
            self.blendshaper = Interpreter(model_content=shapes, num_threads=threads)
            self.blendshaper.allocate_tensors()
            self._bs_in = self.blendshaper.get_input_details()[0]["index"]
            self._bs_out = self.blendshaper.get_output_details()[0]["index"]
        self.detector = Interpreter(model_content=detector, num_threads=threads)
        self.detector.allocate_tensors()
        self.landmarker = Interpreter(model_content=landmarks, num_threads=threads)
        self.landmarker.allocate_tensors()
        self._det_in = self.detector.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.detector.get_output_details()}
        self._det_boxes, self._det_scores = outs["regressors"], outs["classificators"]
        self._lmk_in = self.landmarker.get_input_details()[0]["index"]
        # the graph reads output 0 (478 x 3 points) and output 1 (face presence logit)
        by_size = {
            int(np.prod(d["shape"])): d["index"]
            for d in self.landmarker.get_output_details()
            if d["name"] in ("Identity", "Identity_1")
        }
        self._lmk_points, self._lmk_presence = by_size[N_LANDMARKS * 3], by_size[1]
        self.anchors = ssd_anchors()
        canonical, weights = read_geometry_metadata(geometry)
        self.geometry = FaceGeometry(canonical, weights)
        self._canonical = canonical
        self._detector_crops: dict[tuple[int, int], DetectorCrop] = {}

    @functools.cached_property
    def mirror(self) -> np.ndarray:
        """:func:`mirror_indices` of the bundle's canonical face (made when first needed:
        only a face found in the mirror image needs them)."""
        return mirror_indices(self._canonical)

    def detections(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BlazeFace on an RGB (or grey, as :meth:`find`) uint8 image: the boxes (N x 4: xmin, ymin, xmax, ymax),
        keypoints (N x 6 x 2) and scores (N) of the anchors scoring at least 0.05, in
        image-normalised coordinates (:meth:`decode_detections` of :meth:`run_detector`)."""
        return self.decode_detections(*self.run_detector(image))

    def run_detector(self, image: np.ndarray) -> tuple[DetectorCrop, np.ndarray, np.ndarray]:
        """BlazeFace's network on ``image`` (as :meth:`detections`): the image's
        :class:`DetectorCrop` and copies of the network's raw outputs (896 x 16
        regressors, 896 logits), for :meth:`decode_detections`."""
        h, w = image.shape[:2]
        frame = self._detector_crops.get((h, w))
        if frame is None:  # the same for every image of this size
            if len(self._detector_crops) >= MAP_CACHE:
                self._detector_crops.pop(next(iter(self._detector_crops)))
            frame = self._detector_crops[(h, w)] = DetectorCrop.of(h, w)
        _set_image(self.detector, self._det_in, frame.crop(image), 2.0 / 255.0, -1.0)  # [-1, 1]
        self.detector.invoke()
        raw = self.detector.get_tensor(self._det_boxes)[0]
        logits = self.detector.get_tensor(self._det_scores)[0, :, 0]
        return frame, raw, logits

    def decode_detections(
        self, frame: DetectorCrop, raw: np.ndarray, logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`detections` from the outputs of :meth:`run_detector`."""
        keep = np.flatnonzero((logits >= MIN_LOGIT) & (raw[:, 2] >= 0) & (raw[:, 3] >= 0))
        raw, anchors = raw[keep], self.anchors[keep]
        logits = np.clip(logits[keep].astype(np.float64), -100.0, 100.0)
        scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        centre = raw[:, :2] / DETECTOR_SIZE + anchors
        half = raw[:, 2:4] / (2 * DETECTOR_SIZE)
        # crop-normalised -> image-normalised: the crop is a square of side max(w, h)
        scale, shift = frame.scale, frame.shift
        boxes = np.concatenate(
            [(centre - half) * scale + shift, (centre + half) * scale + shift], axis=1
        )
        keypoints = (
            raw[:, 4:16].reshape(-1, 6, 2) / DETECTOR_SIZE + anchors[:, None]
        ) * scale + shift
        return boxes, keypoints, scores

    @staticmethod
    def top_face(
        boxes: np.ndarray,
        keypoints: np.ndarray,
        scores: np.ndarray,
        min_score: float = MIN_DETECTION,
        iou: float = NMS_IOU,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Box and keypoints of the first output of weighted non-maximum suppression
        (IoU above ``iou``) among scores of at least ``min_score`` (the landmarker's 0.5 and
        0.5; the ``FaceDetector``'s 0.05 and 0.3): the score-weighted mean of the top
        detection and those overlapping it. None when no score reaches ``min_score``."""
        keep = np.flatnonzero(scores >= min_score)
        if keep.size == 0:
            return None
        top = keep[np.argmax(scores[keep])]
        b, t = boxes[keep], boxes[top]
        iw = np.minimum(b[:, 2], t[2]) - np.maximum(b[:, 0], t[0])
        ih = np.minimum(b[:, 3], t[3]) - np.maximum(b[:, 1], t[1])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        union = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + (t[2] - t[0]) * (t[3] - t[1]) - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        members = keep[overlap > iou]
        weight = scores[members] / scores[members].sum()
        return weight @ boxes[members], np.tensordot(weight, keypoints[members], axes=1)

    def face_roi(
        self, boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, w: int, h: int
    ) -> Roi | None:
        """The rectangle the landmark network looks at in a ``w`` x ``h`` image, from
        :meth:`detections`: the face (:meth:`top_face`) turned so that its eye keypoints
        0 -> 1 lie horizontal and enlarged 1.5 times; None where no face is detected."""
        top = self.top_face(boxes, keypoints, scores)
        if top is None:
            return None
        box, points = top
        (x0, y0), (x1, y1) = points[0] * (w, h), points[1] * (w, h)
        angle = -math.atan2(-(y1 - y0), x1 - x0)
        angle -= 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))
        return (
            0.5 * float(box[0] + box[2]) * w,
            0.5 * float(box[1] + box[3]) * h,
            ROI_SCALE * float(box[2] - box[0]) * w,
            ROI_SCALE * float(box[3] - box[1]) * h,
            angle,
        )

    def detector_keypoints(
        self, boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, w: int, h: int
    ) -> np.ndarray:
        """The six keypoints (pixels) the ``FaceDetector`` reports (the Tasks path's), for
        a face detected without landmarks."""
        return self.top_face(boxes, keypoints, scores, MIN_SCORE, DETECTOR_NMS_IOU)[1] * (w, h)  # type: ignore[index]

    def find(self, image: np.ndarray, *, pose: bool = True) -> LiteFace:
        """Face, landmarks and transformation matrix in an RGB uint8 image, or a grey one
        (H x W) standing for RGB with three equal channels, already padded and upscaled by
        :func:`~curate.faces.geometry.prepare_for_detection`. ``pose=False``: the
        landmarks alone (no matrix, no blendshapes: for a look whose points are used
        only to place another, or are mirrored and posed again)."""
        h, w = image.shape[:2]
        boxes, keypoints, scores = self.detections(image)
        confidence = float(scores.max()) if scores.size else 0.0
        roi = self.face_roi(boxes, keypoints, scores, w, h)
        if roi is None:
            return LiteFace(confidence, None, None)
        face = self.landmarks_in(image, roi, confidence, pose=pose)
        if face.landmarks is None:
            face.keypoints = self.detector_keypoints(boxes, keypoints, scores, w, h)
        return face

    def find_many(self, images: Sequence[np.ndarray], *, pose: bool = True) -> list[LiteFace]:
        """:meth:`find` of each of ``images``, the same faces, found together: BlazeFace on
        every image, then the landmark network on every face, each network back to back,
        and each step between them on every image in turn, so the processor's caches
        keep what the next image needs (BlazeFace's weights, the code of the steps):
        about 15% less CPU per 48 px picture than :meth:`find` one at a time
        (docs/faces.md, "Speed")."""
        runs = [self.run_detector(image) for image in images]
        looks = []
        for image, run in zip(images, runs, strict=True):
            h, w = image.shape[:2]
            boxes, keypoints, scores = self.decode_detections(*run)
            confidence = float(scores.max()) if scores.size else 0.0
            roi = self.face_roi(boxes, keypoints, scores, w, h)
            tile = None if roi is None else self.landmark_tile(image, roi)
            looks.append((confidence, roi, tile, (boxes, keypoints, scores)))
        outputs = [None if tile is None else self.run_landmarks(tile) for _, _, tile, _ in looks]
        faces = []
        for image, (confidence, roi, _, detected), out in zip(images, looks, outputs, strict=True):
            h, w = image.shape[:2]
            if roi is None or out is None:
                faces.append(LiteFace(confidence, None, None))
                continue
            face = self.landmarks_from(out, roi, w, h, confidence, pose=pose)
            if face.landmarks is None:
                face.keypoints = self.detector_keypoints(*detected, w, h)
            faces.append(face)
        return faces

    def landmarks_in(
        self, image: np.ndarray, roi: Roi, confidence: float, *, pose: bool = True
    ) -> LiteFace:
        """The landmark network and the geometry pipeline on the rotated rectangle ``roi``
        of a prepared image (as :meth:`find` after BlazeFace; ``pose=False`` as there)."""
        h, w = image.shape[:2]
        out = self.run_landmarks(self.landmark_tile(image, roi))
        return self.landmarks_from(out, roi, w, h, confidence, pose=pose)

    def landmark_tile(self, image: np.ndarray, roi: Roi) -> np.ndarray:
        """The landmark network's 256x256 crop of the rotated rectangle ``roi`` of a
        prepared image (uint8, as the image: RGB or grey)."""
        h, w = image.shape[:2]
        maps = (warp_maps if max(h, w) > EXACT_CROPS_ABOVE else affine_maps)(roi, LANDMARKS_SIZE)
        return crop(image, maps, replicate=True)

    def run_landmarks(self, tile: np.ndarray) -> tuple[float, np.ndarray]:
        """The landmark network on a :meth:`landmark_tile`: the face presence logit and a
        copy of the raw points (478 x 3, pixels of the tile), for :meth:`landmarks_from`."""
        _set_image(self.landmarker, self._lmk_in, tile, 1.0 / 255.0, 0.0)  # [0, 1]
        self.landmarker.invoke()
        presence = float(self.landmarker.get_tensor(self._lmk_presence).ravel()[0])
        return presence, self.landmarker.get_tensor(self._lmk_points)

    def landmarks_from(
        self,
        out: tuple[float, np.ndarray],
        roi: Roi,
        w: int,
        h: int,
        confidence: float,
        *,
        pose: bool = True,
    ) -> LiteFace:
        """:meth:`landmarks_in` from the outputs of :meth:`run_landmarks` on the crop of
        ``roi`` of a ``w`` x ``h`` image: no face unless the presence score passes
        (above 0.5), else the points projected into the image and, with ``pose``, the
        transformation matrix (and the blendshapes, where made)."""
        presence, points = out
        if not 1.0 / (1.0 + math.exp(-max(presence, -700.0))) > MIN_PRESENCE:
            return LiteFace(confidence, None, None)
        raw = points.reshape(N_LANDMARKS, 3) / LANDMARKS_SIZE
        to_image = roi_to_image(roi, w, h)
        landmarks = np.empty((N_LANDMARKS, 3))
        landmarks[:, :2] = raw[:, :2] @ to_image[:, :2].T + to_image[:, 2]
        landmarks[:, 2] = raw[:, 2] * math.hypot(to_image[0, 0], to_image[1, 0])
        if not pose:
            return LiteFace(confidence, landmarks, None)
        return LiteFace(
            confidence,
            landmarks,
            self.geometry.matrix(landmarks, w, h),
            self.blendshapes(landmarks, w, h) if self.blendshaper is not None else None,
        )

    def blendshapes(self, landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
        """The 52 blendshape scores (:data:`BLENDSHAPE_NAMES`) of image-normalised
        ``landmarks`` (478 x 2 or 3) of a ``width`` x ``height`` image
        (``LandmarksToTensorCalculator``: x and y of the subset, in pixels)."""
        assert self.blendshaper is not None, "created without blendshapes"
        points = np.asarray(landmarks, dtype=np.float64)[list(BLENDSHAPE_LANDMARKS), :2] * (
            width,
            height,
        )
        self.blendshaper.set_tensor(self._bs_in, points.astype(np.float32)[None])
        self.blendshaper.invoke()
        return np.array(self.blendshaper.get_tensor(self._bs_out), dtype=np.float32).reshape(-1)

    def mirrored(self, face: LiteFace, width: int, height: int) -> LiteFace:
        """``face``, found in the mirror image of a ``width`` x ``height`` picture, in the
        picture itself: its points mirrored and renumbered (:attr:`mirror`), the
        transformation matrix and blendshapes made again from them."""
        if face.landmarks is None:
            return LiteFace(face.confidence, None, None)
        points = face.landmarks[self.mirror].copy()
        points[:, 0] = 1.0 - points[:, 0]
        return LiteFace(
            face.confidence,
            points,
            self.geometry.matrix(points, width, height),
            self.blendshapes(points, width, height) if self.blendshaper is not None else None,
        )

    def retry(
        self,
        image: np.ndarray,
        centre: tuple[float, float],
        side: float,
        confidence: float,
        *,
        pose: bool = True,
    ) -> LiteFace:
        """The landmark network on the squares :data:`RETRY_ROIS` around a picture of
        longer side ``side`` centred at ``centre`` in the prepared ``image``: the first face
        whose presence passes and that holds (:meth:`refined`), else no face. For a picture
        where :meth:`find` found none (``pose`` as there)."""
        for k, degrees in RETRY_ROIS:
            face = self.landmarks_in(
                image,
                (centre[0], centre[1], k * side, k * side, math.radians(degrees)),
                confidence,
                pose=False,  # its points only place the square of the look that must hold
            )
            if face.landmarks is not None:
                face = self.refined(image, face, pose=pose)
                if face.landmarks is not None:
                    return face
        return LiteFace(confidence, None, None)

    def refined(self, image: np.ndarray, face: LiteFace, *, pose: bool = True) -> LiteFace:
        """``face`` found again on the square its landmarks span (see :data:`RETRY_MAX_SHIFT`),
        or no face when it does not hold (``pose`` as in :meth:`find`)."""
        h, w = image.shape[:2]
        points = face.landmarks[:, :2] * (w, h)  # type: ignore[index]
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        (ax, ay), (bx, by) = points[33], points[263]  # outer eye corners
        side = ROI_SCALE * max(x1 - x0, y1 - y0)
        again = self.landmarks_in(
            image,
            (0.5 * (x0 + x1), 0.5 * (y0 + y1), side, side, math.atan2(by - ay, bx - ax)),
            face.confidence,
            pose=pose,
        )
        if again.landmarks is None:
            return LiteFace(face.confidence, None, None)
        shift = np.median(np.hypot(*(again.landmarks[:, :2] * (w, h) - points).T)) / max(
            x1 - x0, 1e-6
        )
        return again if shift <= RETRY_MAX_SHIFT else LiteFace(face.confidence, None, None)


def mirror_indices(canonical: np.ndarray) -> np.ndarray:
    """For each of the 478 landmarks, the landmark at its mirror place (left and right
    swapped), from the canonical face (3 x 468, symmetric about x = 0); the iris points
    468-472 and 473-477 swap in order, the two horizontal ones of each crossing over."""
    mirrored = canonical.copy()
    mirrored[0] *= -1
    mesh = ((canonical.T[:, None, :] - mirrored.T[None, :, :]) ** 2).sum(axis=-1).argmin(axis=1)
    return np.concatenate([mesh, [473, 476, 475, 474, 477, 468, 471, 470, 469, 472]])


class LiteFaceFinder(FaceFinder):
    """:class:`~curate.faces.landmarks.FaceFinder` on :class:`LiteLandmarker`: the same
    :class:`~curate.faces.landmarks.FaceResult` as the Tasks path's ``FaceAnalyzer``
    (with ``blendshapes``, its ``blendshapes`` too)."""

    def __init__(
        self, model_path: str | Path, *, retry: bool = True, blendshapes: bool = False
    ) -> None:
        self.landmarker = LiteLandmarker(model_path, blendshapes=blendshapes)
        self.retry = retry  # look again where BlazeFace finds nothing (LiteLandmarker.retry)

    def find_face(self, path: str | os.PathLike[str]) -> FaceResult:
        """As :meth:`FaceFinder.find_face`; a grey file is decoded to one channel only
        (:func:`~curate.images.load_face_arrays`: the same pixels)."""
        try:
            image, gray = load_face_arrays(path)
        except CurateError as exc:
            return FaceResult(False, exc.message)
        return self.find_face_in_array(image, gray)

    def find_face_in_array(self, rgb: np.ndarray, gray: np.ndarray) -> FaceResult:
        """As :meth:`find_face`, for an already decoded image (RGB uint8 and its grey; a
        grey image may come as H x W alone)."""
        prepared, pad, scale = self.prepare(rgb)
        return self.result(self.landmarker.find(prepared), prepared, pad, scale, gray)

    def find_many(self, paths: Sequence[str]) -> list[FaceResult]:
        """:func:`~curate.faces.landmarks.find_one` of each of ``paths``, the same results,
        the faces of up to :data:`GROUP_IMAGES` pictures (:data:`GROUP_BYTES` of prepared
        images) found together (:meth:`LiteLandmarker.find_many`). Where that raises one
        of :func:`~curate.faces.landmarks.find_errors`, each picture of the group is found
        alone, so the error is recorded on its own picture's result."""
        errors = find_errors()
        results: list[FaceResult | None] = [None] * len(paths)
        group: list[tuple[int, np.ndarray, int, float, np.ndarray]] = []
        held = 0

        def flush() -> None:
            try:
                faces: list[LiteFace] | None = self.landmarker.find_many([g[1] for g in group])
            except errors:
                faces = None
            for k, (i, prepared, pad, scale, gray) in enumerate(group):
                try:
                    face = faces[k] if faces is not None else self.landmarker.find(prepared)
                    results[i] = self.result(face, prepared, pad, scale, gray)
                except errors as exc:
                    results[i] = failed_analysis(exc)
            group.clear()

        for i, path in enumerate(paths):
            try:
                try:
                    image, gray = load_face_arrays(path)
                except CurateError as exc:
                    results[i] = FaceResult(False, exc.message)
                    continue
                prepared, pad, scale = self.prepare(image)
            except errors as exc:
                results[i] = failed_analysis(exc)
                continue
            group.append((i, prepared, pad, scale, gray))
            held += prepared.nbytes
            if len(group) >= GROUP_IMAGES or held >= GROUP_BYTES:
                flush()
                held = 0
        flush()
        return [with_box(r) for r in results if r is not None]

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, int, float]:
        """:func:`~curate.faces.geometry.prepare_for_detection` of a decoded picture; a
        grey one (H x W, or three equal channels) is padded, upscaled and cropped as one
        channel instead of three alike."""
        grey = rgb.ndim == 3 and bool(
            (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        )
        return prepare_for_detection(np.ascontiguousarray(rgb[..., 0]) if grey else rgb)

    def result(
        self, face: LiteFace, prepared: np.ndarray, pad: int, scale: float, gray: np.ndarray
    ) -> FaceResult:
        """The :class:`~curate.faces.landmarks.FaceResult` of the first look (``face``) at
        a picture made ready by :meth:`prepare` (``gray``: the picture's grey), a second
        look taken where it found no face (:meth:`look_again`)."""
        if face.landmarks is None and self.retry and face.confidence >= RETRY_MIN_SCORE:
            face = self.look_again(prepared, max(gray.shape[:2]) * scale, face)
        if face.landmarks is None or face.matrix is None:
            return missed_face(face.confidence, face.keypoints, gray, pad, scale)
        found = found_face(
            face.landmarks, face.matrix, face.confidence, prepared.shape, pad, scale, gray
        )
        found.blendshapes = face.blendshapes
        return found

    def look_again(self, prepared: np.ndarray, side: float, first: LiteFace) -> LiteFace:
        """Where the first look (``first``) found no face in the ``prepared`` image of a
        picture of longer side ``side``: the squares of :meth:`LiteLandmarker.retry`, then
        the mirror image (first look, then those squares; the networks are not symmetric:
        they find some turned faces in the mirror image only), else ``first``."""
        centre = (prepared.shape[1] / 2, prepared.shape[0] / 2)
        face = self.landmarker.retry(prepared, centre, side, first.confidence)
        if face.landmarks is not None:
            return face
        flipped = np.ascontiguousarray(prepared[:, ::-1])
        # the flipped picture's points are mirrored back and posed there (mirrored)
        face = self.landmarker.find(flipped, pose=False)
        if face.landmarks is None and face.confidence >= RETRY_MIN_SCORE:
            face = self.landmarker.retry(flipped, centre, side, face.confidence, pose=False)
        if face.landmarks is None:
            return first
        face.confidence = first.confidence  # the picture's own detector score
        return self.landmarker.mirrored(face, prepared.shape[1], prepared.shape[0])
