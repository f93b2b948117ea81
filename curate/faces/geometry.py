"""Face geometry: the five alignment points, the 48x48 alignment, head pose from
MediaPipe's transformation matrix, and the padding that lets the landmarker see tight crops."""

from __future__ import annotations

import math

import numpy as np

# Five landmarks (eye centres, nose tip, mouth corners), as MediaPipe mesh indices.
LEFT_EYE = (33, 133, 159, 145)  # the eye on the image's left (the subject's right eye)
RIGHT_EYE = (362, 263, 386, 374)
NOSE_TIP = 1
MOUTH = (61, 291)
ALIGN_SIZE = 48
# Where those five points sit in the 48x48 aligned crop; the mean positions on frontal
# FER2013 training faces with |yaw| and |roll| under 10 degrees (298 of 600 sampled).
TEMPLATE = np.array(
    [[14.7, 18.2], [33.2, 18.2], [24.0, 29.4], [16.5, 37.2], [31.6, 37.2]], dtype=np.float32
)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The five alignment points (pixels, shape 5x2) from the 478x2 landmark array."""
    return np.stack(
        [
            landmarks[list(LEFT_EYE)].mean(axis=0),
            landmarks[list(RIGHT_EYE)].mean(axis=0),
            landmarks[NOSE_TIP],
            landmarks[MOUTH[0]],
            landmarks[MOUTH[1]],
        ]
    ).astype(np.float32)


def align_face(gray: np.ndarray, points: np.ndarray, template: np.ndarray = TEMPLATE) -> np.ndarray:
    """Warp ``gray`` so the ``points`` land on ``template`` (the five of :data:`TEMPLATE`
    unless told); 48x48 uint8."""
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(points, template, method=cv2.LMEDS)
    if matrix is None:  # degenerate points: fall back to a plain resize
        return cv2.resize(gray, (ALIGN_SIZE, ALIGN_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(
        gray,
        matrix,
        (ALIGN_SIZE, ALIGN_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


# Where BlazeFace's eye, nose and mouth keypoints land in the 48x48 aligned crop: the
# template's eyes and nose, and the middle of its mouth corners (the detector has one
# mouth keypoint).
KEYPOINT_TEMPLATE = np.array(
    [TEMPLATE[0], TEMPLATE[1], TEMPLATE[2], TEMPLATE[3:5].mean(axis=0)], dtype=np.float32
)


def align_by_keypoints(gray: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Warp ``gray`` so BlazeFace's eye, nose and mouth keypoints (the first four of its six,
    pixels of ``gray``) land on :data:`KEYPOINT_TEMPLATE`; 48x48 uint8. The crop of a face
    detected without landmarks, where occlusion is still scored (it ranks occlusion on
    face-conditions about as the landmark crop does: docs/faces.md, "Faces BlazeFace
    misses", covered faces without landmarks)."""
    points = np.asarray(keypoints, dtype=np.float32)[:4, :2]
    return align_face(gray, points, KEYPOINT_TEMPLATE)


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


# Landmarks at the outer cheeks (the face contour at eye height), left then right in the image.
CHEEKS = (234, 454)
# The calibrated yaw (:func:`calibrated_yaw`): degrees of the matrix's yaw and of the nose's
# offset between the cheeks (fraction of the half-width). Fitted by bench/derivations/yaw_calibration.py
# on the dev parts of both blind pose audits (an ordinal fit, classes weighted alike, with the
# audits' own boundaries: frontal below 15 degrees, clearly turned above 30).
YAW_FROM_MATRIX = 0.2618
YAW_FROM_CHEEKS = 28.66


def cheek_offset(landmarks: np.ndarray) -> float:
    """Where the nose tip sits between the outer cheeks along the eye line: 0 in the middle,
    +-1 at a cheek, beyond for a profile; positive when it sits right of the middle in the
    image (the face turned to its own left). ``landmarks``: 478 x 2 (or x 3) pixels."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    eye_l, eye_r = pts[list(LEFT_EYE)].mean(axis=0), pts[list(RIGHT_EYE)].mean(axis=0)
    axis = eye_r - eye_l
    norm = float(np.hypot(*axis))
    if norm == 0:
        return 0.0
    axis /= norm
    nose, left, right = pts[NOSE_TIP] @ axis, pts[CHEEKS[0]] @ axis, pts[CHEEKS[1]] @ axis
    half = (right - left) / 2
    return float((nose - (left + right) / 2) / half) if half > 0 else 0.0


def calibrated_yaw(matrix_yaw: float, landmarks: np.ndarray) -> float:
    """Yaw in the degrees of two blind pose audits: ``YAW_FROM_MATRIX * matrix_yaw +
    YAW_FROM_CHEEKS * cheek_offset``. The matrix alone reads three-quarter views low on small
    crops; the nose's place between the cheeks carries most of the turn (docs/faces.md).
    Within +-90 (a profile), as :func:`keypoint_yaw`: where the outer cheeks nearly meet along
    the eye line the offset runs to many half-widths."""
    yaw = YAW_FROM_MATRIX * matrix_yaw + YAW_FROM_CHEEKS * cheek_offset(landmarks)
    return float(np.clip(yaw, -90.0, 90.0))


# BlazeFace's six keypoints, in its order: the eyes (the image's left one first), the nose
# tip, the mouth, the ear tragions (the image's left one first).
KP_EYES, KP_NOSE, KP_EARS = (0, 1), 2, (4, 5)
# Degrees of calibrated yaw per unit of :func:`keypoint_offset`: the least-squares slope
# (through 0) of the calibrated yaw on the keypoint offset over the dev half of
# fer2013/val's faces found with a BlazeFace score of at least 0.5 (1,748 faces, r 0.92;
# 36.05 on the holdout half; bench/derivations/yaw_calibration.py). For faces whose landmarks cannot be
# placed (docs/faces.md, "Faces BlazeFace misses"), where it is the only estimate of the turn.
YAW_FROM_KEYPOINTS = 37.35


def keypoint_offset(keypoints: np.ndarray) -> float:
    """Where BlazeFace's nose keypoint sits between its two ear keypoints along the eye line:
    0 in the middle, +-1 at an ear, beyond for a profile; positive when it sits right of the
    middle in the image (as :func:`cheek_offset`). ``keypoints``: 6 x 2 pixels. Where the ears
    swap sides or meet (a profile) it is +-3 (90 degrees of :func:`keypoint_yaw`) on the side
    the nose points to."""
    kp = np.asarray(keypoints, dtype=np.float64)[:, :2]
    axis = kp[KP_EYES[1]] - kp[KP_EYES[0]]
    norm = float(np.hypot(*axis))
    if norm == 0:
        return 0.0
    axis /= norm
    nose, left, right = kp[KP_NOSE] @ axis, kp[KP_EARS[0]] @ axis, kp[KP_EARS[1]] @ axis
    half = (right - left) / 2
    if half <= 0.05 * norm:  # the ears on one spot or swapped: a profile
        return 3.0 * float(
            np.sign(nose - (kp[KP_EYES[0]] @ axis + kp[KP_EYES[1]] @ axis) / 2) or 1.0
        )
    return float((nose - (left + right) / 2) / half)


def keypoint_yaw(keypoints: np.ndarray) -> float:
    """Yaw in calibrated degrees (as :func:`calibrated_yaw`) from BlazeFace's six keypoints
    alone (:func:`keypoint_offset`), within +-90."""
    return float(np.clip(YAW_FROM_KEYPOINTS * keypoint_offset(keypoints), -90.0, 90.0))


PAD_FRACTION = 0.5
MIN_SIDE = 256


def channel_medians(pixels: np.ndarray) -> list[int]:
    """``int(np.median(pixels[:, c]))`` for each column ``c`` of an N x C pixel array; for
    uint8 counted in a histogram (the same integers, several times faster than sorting:
    the middle value, or the floored mean of the two middle values)."""
    if pixels.dtype != np.uint8 or len(pixels) == 0:
        return [int(v) for v in np.median(pixels, axis=0)]
    n = len(pixels)
    out = []
    for c in range(pixels.shape[1]):
        cumulative = np.cumsum(np.bincount(pixels[:, c], minlength=256))
        upper = int(np.searchsorted(cumulative, n // 2 + 1))  # the value at sorted index n // 2
        lower = upper if n % 2 else int(np.searchsorted(cumulative, n // 2))  # at n // 2 - 1
        out.append((lower + upper) // 2)
    return out


def prepare_for_detection(rgb: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Pad with the median grey and upscale small images; return (image, pad, scale).

    ``rgb`` is H x W x 3, or H x W for a grey image (each channel of the RGB result alike).
    A pixel ``(x, y)`` of the prepared image is ``((x / scale) - pad, (y / scale) - pad)``
    in the original image.
    """
    import cv2

    h, w = rgb.shape[:2]
    pad = int(round(PAD_FRACTION * max(h, w)))
    channels = rgb.shape[2] if rgb.ndim == 3 else 1
    fill = channel_medians(rgb.reshape(-1, channels))
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    side = max(padded.shape[:2])
    scale = MIN_SIDE / side if side < MIN_SIDE else 1.0
    if scale != 1.0:
        padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(padded), pad, scale
