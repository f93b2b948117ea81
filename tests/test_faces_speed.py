"""The faster face analysis (issue 23, speed) gives the numbers of the path it replaced, bit
for bit: each shortcut against the code it replaced, and the whole analysis, table and
verdicts, on real grey and colour photos."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate.errors import CurateError
from curate.faces import analyze as A
from curate.faces import geometry as G
from curate.faces import landmarks as L
from curate.faces import litert as R
from curate.faces import model_file as M
from curate.faces import occlusion as O
from curate.images import load_arrays, load_face_arrays
from curate.screens.faces import face_verdicts


def old_channel_medians(pixels: np.ndarray) -> list[int]:
    """The padding colour as it was computed before (a sort per channel)."""
    return [int(v) for v in np.median(pixels, axis=0)]


@pytest.mark.parametrize("n", [1, 2, 3, 2304, 2305, 65536])
def test_channel_medians_are_numpys_medians(n):
    rng = np.random.default_rng(n)
    for pixels in (
        rng.integers(0, 256, (n, 3), dtype=np.uint8),
        rng.integers(100, 103, (n, 1), dtype=np.uint8),  # many ties
        np.full((n, 1), 255, dtype=np.uint8),
        (rng.integers(0, 2, (n, 3)) * 255).astype(np.uint8),  # two values: the floored mean
    ):
        assert G.channel_medians(pixels) == old_channel_medians(pixels)
    floats = rng.random((n, 3)) * 255
    assert G.channel_medians(floats) == old_channel_medians(floats)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA"])
def test_load_face_arrays_gives_load_arrays_pixels(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray((rng.integers(0, 65536, (20, 30))).astype(np.uint16))
    else:
        image = image.convert(mode)
    path = tmp_path / f"x_{mode.replace(';', '')}.png"
    image.save(path)
    colour, grey = load_face_arrays(path)
    ref_rgb, ref_grey = load_arrays(path)
    assert np.array_equal(grey, ref_grey)
    if colour.ndim == 2:  # a grey file: its one channel is each of the three
        for c in range(3):
            assert np.array_equal(colour, ref_rgb[..., c])
        assert mode in ("L", "I;16")
    else:
        assert np.array_equal(colour, ref_rgb) and mode not in ("L", "I;16")
    with pytest.raises(CurateError, match="missing"):
        load_face_arrays(tmp_path / "absent.png")


def test_strided_max_pool_is_max_pool():
    import torch

    rng = np.random.default_rng(1)
    pool = O.strided_max_pool()
    for shape in ((3, 12, 48, 48), (2, 5, 7, 9), (1, 1, 2, 2)):
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        for t in (x, x.contiguous(memory_format=torch.channels_last), x.bfloat16()):
            assert torch.equal(pool(t), torch.nn.functional.max_pool2d(t, 2))
    assert O._is_plain_2x2_pool(torch.nn.MaxPool2d(2))
    assert not O._is_plain_2x2_pool(torch.nn.MaxPool2d(3))
    assert not O._is_plain_2x2_pool(torch.nn.MaxPool2d(2, ceil_mode=True))
    assert not O._is_plain_2x2_pool(torch.nn.MaxPool2d(2, stride=1))
    net = O.inference_copy(O.build_occlusion_net())
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())


def old_set_image(interpreter, index, tile, scale, offset):
    """The network input as it was written before: a grey tile converted to RGB first."""
    import cv2

    view = interpreter.tensor(index)()[0]
    rgb = tile if tile.ndim == 3 else cv2.cvtColor(tile, cv2.COLOR_GRAY2RGB)
    np.multiply(rgb, np.float32(scale), out=view, casting="unsafe")
    if offset:
        view += np.float32(offset)
    del view


def old_estimate_scale(procrustes, points):
    """The scale estimate of the geometry pipeline as it was made before: the whole
    similarity solved, then the length of its first column."""
    return float(np.linalg.norm(procrustes.solve(points)[:3, 0]))


class _Tensor:
    """A stand-in for a LiteRT interpreter's input tensor (``tensor(index)()``)."""

    def __init__(self, shape):
        self.buffer = np.full(shape, np.nan, dtype=np.float32)

    def tensor(self, index):
        return lambda: self.buffer


@pytest.mark.parametrize("scale,offset", [(2.0 / 255.0, -1.0), (1.0 / 255.0, 0.0)])
def test_set_image_broadcasts_grey_as_rgb_would(scale, offset):
    rng = np.random.default_rng(2)
    for tile in (
        rng.integers(0, 256, (128, 128), dtype=np.uint8),
        rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
        np.arange(128 * 128).reshape(128, 128).astype(np.uint8),
    ):
        new, old = _Tensor((1, 128, 128, 3)), _Tensor((1, 128, 128, 3))
        R._set_image(new, 0, tile, scale, offset)
        old_set_image(old, 0, tile, scale, offset)
        assert np.array_equal(new.buffer, old.buffer) and not np.isnan(new.buffer).any()


def broadcast_set_image(interpreter, index, tile, scale, offset):
    """The network input as it was written before the lookup table: a grey tile broadcast
    into the three channels by numpy's float32 multiply, then the offset added."""
    view = interpreter.tensor(index)()[0]
    np.multiply(
        tile if tile.ndim == 3 else tile[..., None], np.float32(scale), out=view, casting="unsafe"
    )
    if offset:
        view += np.float32(offset)
    del view


@pytest.mark.parametrize("scale,offset", [(2.0 / 255.0, -1.0), (1.0 / 255.0, 0.0)])
@pytest.mark.parametrize("size", [128, 256])
def test_set_image_gives_every_grey_level_as_the_broadcast_did(scale, offset, size):
    """The network input of every one of the 256 grey levels, anywhere in the tile, is the
    float the broadcast multiply (and the conversion to RGB before it) wrote: exhaustive
    over the values a uint8 tile can hold; colour tiles too."""
    rng = np.random.default_rng(size)
    every = np.resize(np.arange(256, dtype=np.uint8), size * size)
    for tile in (
        rng.permutation(every).reshape(size, size),
        every.reshape(size, size),
        rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        np.ascontiguousarray(rng.integers(0, 256, (size, 2 * size), dtype=np.uint8)[:, ::2]),
    ):
        new, ref, old = (_Tensor((1, size, size, 3)) for _ in range(3))
        R._set_image(new, 0, tile, scale, offset)
        broadcast_set_image(ref, 0, tile, scale, offset)
        old_set_image(old, 0, tile, scale, offset)
        assert not np.isnan(new.buffer).any()
        assert np.array_equal(new.buffer, ref.buffer) and np.array_equal(new.buffer, old.buffer)
        assert new.buffer.tobytes() == ref.buffer.tobytes()  # the same bits, -0.0 included


def sampled_detections(self, image):
    """BlazeFace's detections as they were made before :class:`R.DetectorCrop`: the input
    always sampled by ``cv2.remap`` with the letterbox's maps."""
    h, w = image.shape[:2]
    side = float(max(w, h))
    maps = R.warp_maps((0.5 * w, 0.5 * h, side, side, 0.0), R.DETECTOR_SIZE)
    tile = R.crop(image, maps, replicate=False)
    R._set_image(self.detector, self._det_in, tile, 2.0 / 255.0, -1.0)
    self.detector.invoke()
    raw = self.detector.get_tensor(self._det_boxes)[0]
    logits = self.detector.get_tensor(self._det_scores)[0, :, 0]
    keep = np.flatnonzero((logits >= R.MIN_LOGIT) & (raw[:, 2] >= 0) & (raw[:, 3] >= 0))
    raw, anchors = raw[keep], self.anchors[keep]
    logits = np.clip(logits[keep].astype(np.float64), -100.0, 100.0)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    centre = raw[:, :2] / R.DETECTOR_SIZE + anchors
    half = raw[:, 2:4] / (2 * R.DETECTOR_SIZE)
    scale = np.array([side / w, side / h], dtype=np.float32)
    shift = 0.5 - 0.5 * scale
    boxes = np.concatenate(
        [(centre - half) * scale + shift, (centre + half) * scale + shift], axis=1
    )
    keypoints = (
        raw[:, 4:16].reshape(-1, 6, 2) / R.DETECTOR_SIZE + anchors[:, None]
    ) * scale + shift
    return boxes, keypoints, scores


@pytest.mark.parametrize(
    "h,w",
    [
        (256, 256),
        (512, 512),
        (128, 128),
        (384, 384),
        (96, 96),
        (256, 200),
        (200, 256),
        (300, 300),
        (640, 480),
    ],
)
def test_detector_crop_picks_the_pixels_remap_samples(h, w):
    """BlazeFace's input crop picks pixels only where ``cv2.remap`` would sample exactly
    them (the 256 px image a 48 px crop is prepared to, and its multiples), grey and colour."""
    rng = np.random.default_rng(h * 1000 + w)
    side = float(max(w, h))
    maps = R.warp_maps((0.5 * w, 0.5 * h, side, side, 0.0), R.DETECTOR_SIZE)
    frame = R.DetectorCrop.of(h, w)
    assert (frame.pick is not None) == ((h, w) in ((256, 256), (512, 512), (128, 128), (384, 384)))
    for image in (
        rng.integers(0, 256, (h, w), dtype=np.uint8),
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
    ):
        tile = frame.crop(image)
        assert tile.flags.c_contiguous and tile.dtype == np.uint8
        assert np.array_equal(tile, R.crop(image, maps, replicate=False))
    scale = np.array([side / w, side / h], dtype=np.float32)
    assert np.array_equal(frame.scale, scale) and np.array_equal(frame.shift, 0.5 - 0.5 * scale)


def test_procrustes_scale_is_the_solved_matrix_scale():
    rng = np.random.default_rng(3)
    canonical = rng.standard_normal((3, 468)) * 5
    weights = np.where(rng.random(468) < 0.1, rng.random(468), 0.0)
    procrustes = R.WeightedProcrustes(canonical, weights)
    for _ in range(200):
        turn = np.linalg.qr(rng.standard_normal((3, 3)))[0]  # rotations and reflections
        target = rng.uniform(0.2, 3) * turn @ canonical + rng.standard_normal((3, 1))
        target += 0.05 * rng.standard_normal(target.shape)
        for points in (target, target[:, procrustes.used]):
            assert procrustes.scale(points) == old_estimate_scale(procrustes, points)


def test_occlusion_scores_do_not_depend_on_the_chunk(monkeypatch):
    """A face's occlusion scores are the same bit for bit whatever the number of faces per
    forward pass (SCORE_CHUNK may be tuned for speed alone)."""
    rng = np.random.default_rng(4)
    faces = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)
    faces[::3] = np.clip(faces[::3] // 4 + np.arange(48, dtype=np.uint8), 0, 255)  # smoother
    model = O.OcclusionModel()
    scores = {}
    for chunk in (O.SCORE_CHUNK, 16, 8):
        monkeypatch.setattr(O, "SCORE_CHUNK", chunk)
        scores[chunk] = model.probabilities(faces)
        assert np.array_equal(model.probabilities(faces[5:7]), scores[chunk][5:7])
    assert len(scores) == 3
    for chunk, probs in scores.items():
        assert probs.shape == (40, len(O.OUTPUTS)) and np.array_equal(probs, scores[16]), chunk


class StraightProcrustes:
    """The weighted Procrustes solver as it was before (``np.linalg.det`` for the sign),
    on the precomputed sums of a :class:`R.WeightedProcrustes`."""

    def __init__(self, fast):
        self.__dict__.update(fast.__dict__)

    def _rotation_scale(self, target):
        if target.shape[1] != self.used.size:
            target = target[:, self.used]
        wt = target * self.sqrt_weights
        u, _, vt = np.linalg.svd(wt @ self.centred.T)
        rotation = u @ vt
        if np.linalg.det(rotation) < 0:
            u[:, 2] *= -1
            rotation = u @ vt
        return rotation, float(((rotation @ self.centred) * wt).sum()) / self.spread, wt

    def scale(self, target):
        rotation, scale, _ = self._rotation_scale(target)
        return float(np.linalg.norm(scale * rotation[:, 0]))

    def solve(self, target):
        rotation, scale, wt = self._rotation_scale(target)
        out = np.eye(4)
        out[:3, :3] = scale * rotation
        out[:3, 3] = ((wt - scale * rotation @ self.weighted) * self.sqrt_weights).sum(
            axis=1
        ) / self.total
        return out


def straight_matrix(self, landmarks, width, height):
    """The geometry pipeline's matrix as it was computed before (constants made each time,
    the solver of :class:`StraightProcrustes`)."""
    procrustes = StraightProcrustes(self.procrustes)
    height_at_near = 2.0 * R.NEAR * math.tan(0.5 * math.radians(R.FOV_DEGREES))
    width_at_near = width * height_at_near / height
    points = landmarks[: R.N_MESH]
    depth_offset = float(points[:, 2].mean()) * width_at_near
    points = points[procrustes.used].T
    screen = np.stack(
        [
            (points[0] - 0.5) * width_at_near,
            (0.5 - points[1]) * height_at_near,
            points[2] * width_at_near,
        ]
    )

    def metric(scale):
        z = (screen[2] - depth_offset + R.NEAR) / scale
        return np.stack([screen[0] * z / R.NEAR, screen[1] * z / R.NEAR, -z])

    first = procrustes.scale(screen * np.array([[1.0], [1.0], [-1.0]]))
    second = procrustes.scale(metric(first))
    return procrustes.solve(metric(first * second))


def test_det3_has_the_sign_of_numpys_det():
    rng = np.random.default_rng(5)
    for _ in range(20000):
        q = np.linalg.qr(rng.standard_normal((3, 3)))[0]  # rotations and reflections
        u, _, vt = np.linalg.svd(q * rng.uniform(0.1, 10) + 1e-3 * rng.standard_normal((3, 3)))
        for m in (q, u @ vt):
            assert (R._det3(m) < 0) == (np.linalg.det(m) < 0)
    m = rng.standard_normal((3, 3))
    assert R._det3(m) == pytest.approx(np.linalg.det(m), rel=1e-12)


def test_geometry_matrix_is_the_straight_computation():
    """The transformation matrix, bit for bit, on landmarks of faces turned every way."""
    rng = np.random.default_rng(6)
    canonical = rng.standard_normal((3, 468)) * 5
    weights = np.where(rng.random(468) < 0.1, rng.random(468), 0.0)
    geometry = R.FaceGeometry(canonical, weights)
    for _ in range(300):
        landmarks = np.c_[rng.uniform(0.2, 0.8, (478, 2)), 0.05 * rng.standard_normal(478)]
        for w, h in ((256, 256), (512, 384)):
            assert np.array_equal(
                geometry.matrix(landmarks, w, h), straight_matrix(geometry, landmarks, w, h)
            )


@pytest.fixture
def old_path(monkeypatch):
    """Switches the analysis back to the code the speed work replaced: the padding colour by
    sorting, grey files decoded to three equal channels, the occlusion networks with torch's
    max pooling after each ReLU, eight faces per forward pass, grey network inputs converted
    to RGB first, the geometry pipeline's scale from the whole solved similarity, BlazeFace's
    input always sampled by ``cv2.remap``, the geometry pipeline's matrix as it was computed,
    every landmark look posed (its matrix made whether used or not), every picture's face
    found alone (no groups: ``LiteFaceFinder.find_many``)."""

    def use_old() -> None:
        monkeypatch.setattr(R.LiteFaceFinder, "find_many", L.FaceFinder.find_many)
        monkeypatch.setattr(G, "channel_medians", old_channel_medians)
        monkeypatch.setattr(R, "load_face_arrays", load_arrays)
        monkeypatch.setattr(O, "_is_plain_2x2_pool", lambda pool: False)
        monkeypatch.setattr(O, "SCORE_CHUNK", 8)
        monkeypatch.setattr(R, "_set_image", old_set_image)
        monkeypatch.setattr(R.WeightedProcrustes, "scale", old_estimate_scale)
        monkeypatch.setattr(R.LiteLandmarker, "detections", sampled_detections)
        monkeypatch.setattr(R.FaceGeometry, "matrix", straight_matrix)
        landmarks_in = R.LiteLandmarker.landmarks_in
        monkeypatch.setattr(  # every look posed, its matrix used or not
            R.LiteLandmarker,
            "landmarks_in",
            lambda self, image, roi, confidence, pose=True: landmarks_in(
                self, image, roi, confidence, pose=True
            ),
        )

    return use_old


def real_sample(data: Path) -> list[str]:
    """48 px grey crops (FER2013 val across its classes, face-conditions: turned and covered
    faces) and 256 px colour portraits (taiwanese-posed), a fixed sample."""
    rng = np.random.default_rng(0)
    fer = sorted((data / "fer2013" / "val").rglob("*.jpg"))
    conditions = sorted((data / "face-conditions" / "images").glob("*.png"))
    colour = sorted((data / "taiwanese-posed" / "images").glob("*.jpg"))
    picks = []
    for files, n in ((fer, 80), (conditions, 40), (colour, 40)):
        picks += [str(files[i]) for i in np.sort(rng.choice(len(files), n, replace=False))]
    return picks


def test_the_fast_path_gives_the_old_table_and_verdicts_on_real_photos(shared_data, old_path):
    pytest.importorskip("ai_edge_litert")
    try:
        M.resolve_face_model()
    except CurateError as exc:
        pytest.skip(f"no MediaPipe face model available: {exc.message}")
    paths = real_sample(shared_data)
    new = A.analyze_faces(paths, workers=0, backend="litert", cache_dir="none")
    old_path()
    old = A.analyze_faces(paths, workers=0, backend="litert", cache_dir="none")
    # the sample holds grey and colour pictures, faces found and none found (four pictures
    # get a second look, which finds none of their faces; faces found on a second look:
    # test_second_looks_give_the_old_rows)
    assert new["face_found"].sum() > 140 and (~new["face_found"]).any()
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    for max_yaw, max_occlusion in ((25.0, None), (15.0, 0.2)):
        pd.testing.assert_frame_equal(
            face_verdicts(new, max_yaw=max_yaw, max_occlusion=max_occlusion),
            face_verdicts(old, max_yaw=max_yaw, max_occlusion=max_occlusion),
            check_exact=True,
        )


def test_the_tasks_backend_gives_the_old_table_too(shared_data, old_path):
    """The Tasks backend shares the padding and the occlusion scoring: unchanged as well."""
    pytest.importorskip("mediapipe")
    try:
        M.resolve_face_model()
    except CurateError as exc:
        pytest.skip(f"no MediaPipe face model available: {exc.message}")
    paths = real_sample(shared_data)[::4]
    new = A.analyze_faces(paths, workers=0, backend="tasks", cache_dir="none")
    old_path()
    old = A.analyze_faces(paths, workers=0, backend="tasks", cache_dir="none")
    assert new["face_found"].sum() > 30
    pd.testing.assert_frame_equal(new, old, check_exact=True)


# fer2013/val pictures whose face BlazeFace misses: found on the squares of the second look,
# found in the mirror image, and found nowhere (the branches of LiteFaceFinder.look_again)
SECOND_LOOKS = {
    "retry": ["angry/PublicTest_17487264.jpg", "fear/PublicTest_47196221.jpg"],
    "mirror": ["angry/PublicTest_28848742.jpg", "disgust/PublicTest_31237465.jpg"],
    "none": ["angry/PublicTest_2489773.jpg"],
}


def test_second_looks_give_the_old_rows(shared_data, old_path, monkeypatch):
    """Faces found on a second look (the squares, the mirror image) and faces found nowhere
    get the rows of the straight path, whose every look was posed."""
    pytest.importorskip("ai_edge_litert")
    try:
        M.resolve_face_model()
    except CurateError as exc:
        pytest.skip(f"no MediaPipe face model available: {exc.message}")
    paths = [
        str(shared_data / "fer2013" / "val" / n) for names in SECOND_LOOKS.values() for n in names
    ]
    mirrored = []
    real_mirrored = R.LiteLandmarker.mirrored
    monkeypatch.setattr(
        R.LiteLandmarker,
        "mirrored",
        lambda self, face, w, h: mirrored.append(face) or real_mirrored(self, face, w, h),
    )
    new = A.analyze_faces(paths, workers=0, backend="litert", cache_dir="none")
    # the branches are exercised: faces found on both kinds of second look, one found nowhere
    assert new["face_found"].tolist() == [True, True, True, True, False]
    assert len(mirrored) == 2 and all(f.matrix is None for f in mirrored)  # posed there
    old_path()
    old = A.analyze_faces(paths, workers=0, backend="litert", cache_dir="none")
    pd.testing.assert_frame_equal(new, old, check_exact=True)


RESULT_FIELDS = (
    "face_found",
    "detail",
    "yaw",
    "pitch",
    "roll",
    "face_confidence",
    "matrix_yaw",
    "box",
    "aligned",
    "landmarks",
    "blendshapes",
)


def assert_same_results(many: list, ones: list) -> None:
    """Two lists of FaceResults alike in every field, bit for bit (NaN equal to NaN)."""
    assert len(many) == len(ones)
    for a, b in zip(many, ones, strict=True):
        for name in RESULT_FIELDS:
            u, v = getattr(a, name), getattr(b, name)
            if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                assert isinstance(u, np.ndarray) and isinstance(v, np.ndarray), name
                assert u.dtype == v.dtype and np.array_equal(u, v), name
            elif isinstance(u, float) and math.isnan(u):
                assert isinstance(v, float) and math.isnan(v), name
            else:
                assert u == v and type(u) is type(v), name


@pytest.fixture(scope="module")
def lite_finder():
    pytest.importorskip("ai_edge_litert")
    try:
        model = M.resolve_face_model()
    except CurateError as exc:
        pytest.skip(f"no MediaPipe face model available: {exc.message}")
    return R.LiteFaceFinder(model, blendshapes=True)


def test_find_many_finds_what_find_one_finds_on_real_photos(
    shared_data, lite_finder, tmp_path, monkeypatch
):
    """Pictures found together (groups of 7, colour portraits fewer by their bytes) give
    every field of each picture's result as found alone: grey and colour photos, faces
    found on the first look, on a second look, nowhere, and files that cannot be read."""
    not_an_image = tmp_path / "not_an_image.jpg"
    not_an_image.write_text("no picture")
    seconds = [
        str(shared_data / "fer2013" / "val" / n) for names in SECOND_LOOKS.values() for n in names
    ]
    sample = real_sample(shared_data)  # 80 FER2013, 40 face-conditions, 40 colour portraits
    missing = str(tmp_path / "missing.png")
    paths = sample[:30] + seconds + [str(not_an_image)] + sample[30:100] + [missing] + sample[100:]
    monkeypatch.setattr(R, "GROUP_IMAGES", 7)
    monkeypatch.setattr(R, "GROUP_BYTES", 3 * 512 * 512 * 3)  # three colour portraits
    groups = []
    real_find_many = R.LiteLandmarker.find_many
    monkeypatch.setattr(
        R.LiteLandmarker,
        "find_many",
        lambda self, images, **kw: groups.append(len(images)) or real_find_many(self, images, **kw),
    )
    many = lite_finder.find_many(paths)
    ones = [L.find_one(lite_finder, p) for p in paths]
    assert_same_results(many, ones)
    # the groups were used: full ones of 7 grey pictures, and ones cut short by the bytes
    assert sum(groups) == len(paths) - 2 and 7 in groups and 3 in groups
    assert [f.face_found for f in many[30:36]] == [True, True, True, True, False, False]
    assert many[35].detail.startswith("unreadable") and many[106].detail.startswith("missing")
    assert sum(f.face_found for f in many) > 140 and all(
        f.blendshapes is not None for f in many if f.face_found
    )


def test_find_many_records_an_error_on_its_own_picture(shared_data, lite_finder, monkeypatch):
    """Where one picture of a group raises, the group's other pictures get their own
    results and that one the error, as when each is found alone."""
    paths = real_sample(shared_data)[:20]
    broken = R.LiteFaceFinder.prepare(lite_finder, load_face_arrays(paths[5])[0])[0]
    real_tile = R.LiteLandmarker.landmark_tile

    def tile(self, image, roi):
        if image.shape == broken.shape and np.array_equal(image, broken):
            raise ValueError("a broken crop")
        return real_tile(self, image, roi)

    monkeypatch.setattr(R.LiteLandmarker, "landmark_tile", tile)
    many = lite_finder.find_many(paths)
    ones = [L.find_one(lite_finder, p) for p in paths]
    assert_same_results(many, ones)
    assert many[5].detail == "analysis_failed: ValueError: a broken crop"
    assert sum(f.face_found for f in many) == sum(f.face_found for f in ones) >= 18
