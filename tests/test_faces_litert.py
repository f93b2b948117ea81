"""The LiteRT face backend (curate.faces.litert) against brute-force references of
MediaPipe's calculators, and against the Tasks path (the reference) on real and synthetic
faces."""

from __future__ import annotations

import json
import math
import struct
import zipfile
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


@pytest.fixture(scope="module")
def face_model() -> Path:
    try:
        return M.resolve_face_model()
    except CurateError as exc:
        pytest.skip(f"no MediaPipe face model available: {exc.message}")


@pytest.fixture(scope="module")
def finders(face_model: Path):
    """(reference Tasks FaceAnalyzer, LiteFaceFinder) on the same model file."""
    pytest.importorskip("mediapipe")
    pytest.importorskip("ai_edge_litert")
    with L.quiet_native_stderr():
        # the Tasks path has no retry (LiteLandmarker.retry): compare the first look alone
        tasks, lite = L.FaceAnalyzer(face_model), R.LiteFaceFinder(face_model, retry=False)
    yield tasks, lite
    tasks.close()


def _compare(finders, images: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Both backends on decoded images: |differences| over faces both found."""
    tasks, lite = finders
    found, diffs = [], {k: [] for k in ("yaw", "pitch", "roll", "confidence", "aligned")}
    for rgb, gray in images:
        a, b = tasks.find_face_in_array(rgb, gray), lite.find_face_in_array(rgb, gray)
        found.append((a.face_found, b.face_found))
        diffs["confidence"].append(abs(a.face_confidence - b.face_confidence))
        if a.face_found and b.face_found:
            for k in ("yaw", "pitch", "roll"):
                diffs[k].append(abs(getattr(a, k) - getattr(b, k)))
            diffs["aligned"].append(np.abs(a.aligned.astype(int) - b.aligned).mean())
    out = {k: np.array(v) for k, v in diffs.items()}
    out["found"] = np.array(found)
    return out


# ----------------------------------------------------------------- against Tasks
def test_real_faces_agree_with_the_tasks_path(finders, shared_data):
    fer = sorted((shared_data / "fer2013" / "val").rglob("*.jpg"))[::150]
    conditions = sorted((shared_data / "face-conditions" / "images").glob("*.png"))[::90]
    paths = fer + conditions
    assert len(paths) >= 40
    d = _compare(finders, [load for load in map(_arrays, paths)])
    assert (d["found"][:, 0] == d["found"][:, 1]).all()
    assert d["found"][:, 0].mean() > 0.8
    assert d["confidence"].max() < 1e-5
    for k in ("yaw", "pitch", "roll"):
        assert np.median(d[k]) < 0.01, k  # measured: about 0.001 degrees
        assert d[k].max() < 0.5, k
    assert d["aligned"].max() < 1.0  # mean grey-level difference of the aligned crops


def test_synthetic_faces_of_several_sizes_agree_with_the_tasks_path(finders, tmp_path):
    """Cartoon faces from curate.synthetic at 48, 100 and 160 px (the last two are
    upscaled less or not at all, so the crops sample at fractional positions), square
    and padded to non-square canvases (a letterboxed detector input)."""
    from curate.synthetic import make_example

    images = []
    for size in (48, 100, 160):
        make_example(
            tmp_path / str(size),
            per_class=2,
            size=size,
            seed=size,
            side_faces=0.3,
            occluded=0.3,
            duplicates=0,
        )
        for p in sorted((tmp_path / str(size) / "images").rglob("*.png")):
            rgb, gray = _arrays(p)
            images.append((rgb, gray))
            wide = np.pad(gray, ((0, 0), (size // 3, size // 5)), mode="edge")
            images.append((np.repeat(wide[..., None], 3, axis=2), wide))
    d = _compare(finders, images)
    assert len(images) == 72
    assert (d["found"][:, 0] == d["found"][:, 1]).all()
    assert d["found"][:, 0].sum() >= 20
    assert d["confidence"].max() < 1e-5
    for k in ("yaw", "pitch", "roll"):
        assert np.median(d[k]) < 0.01, k
        assert d[k].max() < 0.5, k


def test_analyze_faces_backends_agree_row_by_row(face_model, shared_data):
    pytest.importorskip("ai_edge_litert")
    paths = [str(p) for p in sorted((shared_data / "fer2013" / "val" / "sad").glob("*.jpg"))[:40]]
    paths.append(str(shared_data / "README.md"))  # not an image: same detail either way
    tasks = A.analyze_faces(paths, workers=1, backend="tasks")
    lite = A.analyze_faces(paths, workers=2, backend="litert")
    assert list(lite.columns) == list(tasks.columns)
    # litert looks again where BlazeFace finds nothing (LiteLandmarker.retry): it finds
    # every face the Tasks path finds, and agrees on why the rest were not analysed
    assert (lite["face_found"] >= tasks["face_found"]).all()
    neither = ~lite["face_found"].to_numpy()
    assert (
        lite["detail"][neither].fillna("").tolist() == tasks["detail"][neither].fillna("").tolist()
    )
    both = tasks["face_found"]
    for col, tol in (
        ("yaw", 0.5),
        ("pitch", 0.5),
        ("roll", 0.5),
        ("occlusion", 0.05),
        ("occlusion_any", 0.05),
        ("face_confidence", 1e-5),
    ):
        assert np.abs(lite.loc[both, col] - tasks.loc[both, col]).max() < tol, col


def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from curate.images import load_arrays

    return load_arrays(path)


# ----------------------------------------------------------------- brute-force references
def test_anchors_match_a_plain_loop():
    ref = []
    for stride, per_cell in ((8, 2), (16, 6)):  # strides 8, 16, 16, 16: the 16s share cells
        cells = 128 // stride
        for y in range(cells):
            for x in range(cells):
                ref += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
    assert np.allclose(R.ssd_anchors(), np.array(ref), atol=1e-7)
    assert R.ssd_anchors().shape == (896, 2)


def _weighted_nms_first(boxes, keypoints, scores, min_score=0.5, iou_threshold=0.5):
    """MediaPipe's WeightedNonMaxSuppression, first output only, written as its loop."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    order = [i for i in order if scores[i] >= min_score]
    if not order:
        return None
    top = boxes[order[0]]
    tw, ts, tk = np.zeros(4), 0.0, np.zeros_like(keypoints[0])
    for i in order:
        b = boxes[i]
        ix = max(0.0, min(b[2], top[2]) - max(b[0], top[0]))
        iy = max(0.0, min(b[3], top[3]) - max(b[1], top[1]))
        inter = ix * iy
        union = (b[2] - b[0]) * (b[3] - b[1]) + (top[2] - top[0]) * (top[3] - top[1]) - inter
        if union > 0 and inter / union > iou_threshold:
            tw, ts, tk = tw + scores[i] * b, ts + scores[i], tk + scores[i] * keypoints[i]
    return tw / ts, tk / ts


def test_top_face_is_the_first_output_of_weighted_nms():
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(1, 40))
        centre = rng.uniform(0.3, 0.7, (n, 2)) if trial % 2 else rng.uniform(0, 1, (n, 2))
        half = rng.uniform(0.05, 0.3, (n, 2))
        boxes = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
        keypoints = rng.uniform(0, 1, (n, 6, 2)).astype(np.float32)
        scores = rng.uniform(0.05, 1.0, n).astype(np.float32)
        got, want = (
            R.LiteLandmarker.top_face(boxes, keypoints, scores),
            _weighted_nms_first(boxes, keypoints, scores),
        )
        if want is None:
            assert got is None
            continue
        assert np.allclose(got[0], want[0], atol=1e-6) and np.allclose(got[1], want[1], atol=1e-6)


def _opencv4_maps(roi, size):
    """OpenCV 4's WarpPerspectiveInvoker for one pixel at a time."""
    m = R._inverse_warp(roi, size).ravel()
    xy = np.zeros((size, size, 2), np.int16)
    alpha = np.zeros((size, size), np.uint16)
    for y in range(size):
        x0, y0, w0 = m[1] * y + m[2], m[4] * y + m[5], m[7] * y + m[8]
        for x in range(size):
            w = w0 + m[6] * x
            w = 32.0 / w if w else 0.0
            fx, fy = int(np.rint((x0 + m[0] * x) * w)), int(np.rint((y0 + m[3] * x) * w))
            xy[y, x] = (fx >> 5, fy >> 5)
            alpha[y, x] = (fy & 31) * 32 + (fx & 31)
    return xy, alpha


@pytest.mark.parametrize(
    "roi",
    [(15.5, 15.5, 31.0, 31.0, 0.0), (20.3, 14.1, 25.7, 21.2, 0.4), (12.0, 18.0, 40.0, 40.0, -2.9)],
)
def test_warp_maps_are_opencv4s(roi):
    xy, alpha = R.warp_maps(roi, 16)
    ref_xy, ref_alpha = _opencv4_maps(roi, 16)
    assert (xy == ref_xy).all() and (alpha == ref_alpha).all()
    fast_xy, fast_alpha = R.affine_maps(roi, 16)
    assert (fast_xy == ref_xy).mean() > 0.99 and (fast_alpha == ref_alpha).mean() > 0.99


def test_crop_of_an_axis_aligned_roi_samples_whole_pixels():
    image = np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3).astype(np.uint8)
    tile = R.crop(image, R.warp_maps((32.0, 32.0, 64.0, 64.0, 0.0), 32), replicate=False)
    assert (tile == image[::2, ::2]).all()  # a 2x downscale reads every other pixel


def _random_rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_procrustes_recovers_a_similarity_and_ignores_zero_weights():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(3, 30))
    rot, scale, shift = _random_rotation(rng), 1.7, np.array([[0.3], [-2.0], [5.0]])
    target = scale * rot @ source + shift
    weights = rng.uniform(0.1, 1.0, 30)
    target[:, :5] += rng.normal(size=(3, 5)) * 10  # outliers ...
    weights[:5] = 0.0  # ... that carry no weight
    m = R.WeightedProcrustes(source, weights).solve(target)
    assert np.allclose(m[:3, :3], scale * rot, atol=1e-9)
    assert np.allclose(m[:3, 3:], shift, atol=1e-9)


def _protobuf(fields: list[tuple[int, int, bytes | int]]) -> bytes:
    def varint(v: int) -> bytes:
        out = b""
        while True:
            byte, v = v & 0x7F, v >> 7
            out += bytes([byte | (0x80 if v else 0)])
            if not v:
                return out

    buf = b""
    for number, wire, value in fields:
        buf += varint(number << 3 | wire)
        if wire == 0:
            buf += varint(int(value))
        elif wire == 2:
            assert isinstance(value, bytes)
            buf += varint(len(value)) + value
        else:
            assert isinstance(value, bytes)
            buf += value
    return buf


def test_geometry_metadata_is_read_from_its_protobuf():
    vertices = np.arange(4 * 5, dtype="<f4").reshape(4, 5)  # x y z u v for 4 vertices
    mesh = _protobuf([(1, 0, 0), (2, 0, 0), (3, 2, vertices.tobytes()), (4, 2, b"\x00\x01\x02")])
    basis = [_protobuf([(1, 0, i), (2, 5, struct.pack("<f", w))]) for i, w in ((1, 0.25), (3, 0.5))]
    buf = _protobuf([(3, 0, 1), (1, 2, mesh), *[(2, 2, b) for b in basis]])
    canonical, weights = R.read_geometry_metadata(buf)
    assert np.array_equal(canonical, vertices[:, :3].T)
    assert np.allclose(weights, [0.0, 0.25, 0.0, 0.5])
    with pytest.raises(ValueError, match="input source"):
        R.read_geometry_metadata(_protobuf([(3, 0, 2), (1, 2, mesh), (2, 2, basis[0])]))


def test_geometry_recovers_the_pose_of_a_projected_canonical_face(face_model):
    with zipfile.ZipFile(face_model) as bundle:
        canonical, weights = R.read_geometry_metadata(
            bundle.read("geometry_pipeline_metadata_landmarks.binarypb")
        )
    geometry = R.FaceGeometry(canonical, weights)
    width = height = 256
    focal = 0.5 / math.tan(0.5 * math.radians(R.FOV_DEGREES))  # image heights
    for yaw, pitch, roll in ((0, 0, 0), (25, -10, 5), (-40, 15, -12)):
        ry, rx, rz = (math.radians(a) for a in (yaw, -pitch, -roll))  # pose_from_matrix's signs
        rot = (
            np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
            @ np.array(
                [[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]]
            )
            @ np.array(
                [[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]]
            )
        )
        camera = rot @ canonical + np.array([[0.0], [0.0], [-60.0]])  # 60 cm in front
        depth = -camera[2]
        x = 0.5 + focal * camera[0] / depth
        y = 0.5 - focal * camera[1] / depth
        z = (depth - depth.mean()) / (depth.mean() / focal) / 1.0  # relative depth, image widths
        landmarks = np.stack([x, y, z], axis=1)
        got = G.pose_from_matrix(geometry.matrix(landmarks, width, height))
        assert np.allclose(got, (yaw, pitch, roll), atol=1.5), (got, (yaw, pitch, roll))


def test_inference_copy_of_the_occlusion_net_matches_eval_mode():
    import torch

    torch.manual_seed(0)
    net = O.build_occlusion_net()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    net.eval()
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48)).astype(np.uint8)
    ref = O.mean_probabilities([net], faces)
    fast = O.mean_probabilities([O.inference_copy(net)], faces, channels_last=True)
    assert np.abs(ref - fast).max() < 1e-5
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in O.inference_copy(net).modules())


def test_face_rows_score_a_batch_as_one_face_at_a_time():
    if not O.OCCLUSION_WEIGHTS.is_file():
        pytest.skip("occlusion weights not fitted")
    model = O.OcclusionModel()
    rng = np.random.default_rng(3)
    found = [
        L.FaceResult(
            True, None, 1.0, 2.0, 3.0, 0.9, rng.integers(0, 256, (48, 48)).astype(np.uint8)
        ),
        L.FaceResult(False, "no face found by the landmarker", face_confidence=0.2),
        L.FaceResult(
            True, None, -5.0, 0.0, 1.0, 0.8, rng.integers(0, 256, (48, 48)).astype(np.uint8)
        ),
        # detected without landmarks: aligned by the detector's keypoints, scored too
        L.FaceResult(
            False,
            "no face found by the landmarker: a face detected",
            yaw=10.0,
            face_confidence=0.2,
            aligned=rng.integers(0, 256, (48, 48)).astype(np.uint8),
        ),
    ]
    rows = L.face_rows(["a", "b", "c", "d"], found, model)
    assert [r["path"] for r in rows] == ["a", "b", "c", "d"]
    assert not rows[3]["face_found"] and rows[3]["yaw"] == 10.0
    for row, f in zip(rows, found, strict=True):
        if f.aligned is not None:
            occlusion, covered = model.score(f.aligned)
            assert (
                abs(row["occlusion"] - occlusion) < 1e-6
                and abs(row["occlusion_any"] - covered) < 1e-6
            )
        else:
            assert math.isnan(row["occlusion"]) and math.isnan(row["occlusion_any"])
            assert row["detail"] == f.detail and row["face_confidence"] == 0.2


# ----------------------------------------------------------------- choosing the backend
def test_backend_is_checked_and_keys_the_cache(tmp_path, monkeypatch):
    with pytest.raises(CurateError, match="unknown face backend 'gpu'") as err:
        A.resolve_backend("gpu")
    assert "litert, tasks" in err.value.hint
    model = tmp_path / "m.task"
    model.write_bytes(b"x")
    assert A.cache_key(model, "litert") != A.cache_key(model, "tasks")
    monkeypatch.setattr(A.importlib_util, "find_spec", lambda name: None)
    assert A.default_backend() == "tasks"
    with pytest.raises(CurateError, match="needs the ai-edge-litert package") as err:
        A.resolve_backend("litert")
    assert "pip install ai-edge-litert" in err.value.hint


def test_litert_backend_on_files_that_are_not_faces(face_model, tmp_path):
    pytest.importorskip("ai_edge_litert")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)).save(
        noise
    )
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((30, 70), 128, np.uint8)).save(blank)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    df = A.analyze_faces(
        [noise, blank, corrupt, tmp_path / "missing.png"], workers=1, backend="litert"
    )
    assert not df["face_found"].any()
    assert all(
        d.startswith("no face found by the landmarker: no face detected") for d in df["detail"][:2]
    )
    assert df["detail"][2].startswith("unreadable:") and df["detail"][3].startswith("missing:")
    assert df["yaw"].isna().all() and df["occlusion"].isna().all()


def test_cli_faces_backend_option(face_model, shared_data, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from typer.testing import CliRunner

    from curate.cli import app

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, p in enumerate(sorted((shared_data / "fer2013" / "val" / "happy").glob("*.jpg"))[:3]):
        (folder / f"f{i}.jpg").write_bytes(p.read_bytes())
    tables = {}
    for backend in ("tasks", "litert"):
        out = tmp_path / backend / "faces.parquet"
        result = CliRunner().invoke(
            app, ["faces", str(folder), "--out", str(out), "--workers", "1", "--backend", backend]
        )
        assert result.exit_code == 0, result.output
        record = json.loads(out.with_suffix(".run.json").read_text())
        assert record["params"]["backend"] == backend
        assert "ai-edge-litert" in record["versions"]
        tables[backend] = pd.read_parquet(out)
    assert tables["tasks"]["face_found"].tolist() == tables["litert"]["face_found"].tolist()
    assert np.abs(tables["tasks"]["yaw"] - tables["litert"]["yaw"]).max() < 0.5
    bad = CliRunner().invoke(
        app, ["faces", str(folder), "--out", str(tmp_path / "x.parquet"), "--backend", "gpu"]
    )
    assert bad.exit_code == 2 and "unknown face backend" in bad.output


def test_retry_finds_faces_blazeface_misses_and_leaves_the_rest(face_model, shared_data):
    """FER2013 crops of turned or tilted faces that BlazeFace misses: the landmark network,
    shown the whole crop (LiteLandmarker.retry), finds some; faces found at the first look
    come out the same."""
    pytest.importorskip("ai_edge_litert")
    from curate.images import load_arrays

    paths = sorted((shared_data / "fer2013" / "val" / "angry").glob("*.jpg"))[:300]
    first, again = R.LiteFaceFinder(face_model, retry=False), R.LiteFaceFinder(face_model)
    missed = recovered = 0
    for p in paths:
        rgb, gray = load_arrays(p)
        a, b = first.find_face_in_array(rgb, gray), again.find_face_in_array(rgb, gray)
        if a.face_found:
            assert b.face_found and b.yaw == a.yaw and (b.aligned == a.aligned).all()
        else:
            missed += 1
            recovered += b.face_found
            assert b.face_found or b.detail.startswith("no face found by the landmarker: ")
    assert missed >= 3 and recovered >= 1, (missed, recovered)


def test_a_retried_face_must_hold_when_looked_at_again(face_model, shared_data):
    """LiteLandmarker.refined: a face whose landmarks jump when the network looks at the
    square they span is no face; a steady one comes back refined."""
    pytest.importorskip("ai_edge_litert")
    from curate.faces.geometry import prepare_for_detection
    from curate.images import load_arrays

    lm = R.LiteLandmarker(face_model)
    image = prepare_for_detection(
        load_arrays(sorted((shared_data / "fer2013" / "val" / "happy").glob("*.jpg"))[0])[1]
    )[0]
    face = lm.find(image)
    assert face.landmarks is not None
    again = lm.refined(image, face)
    assert (
        again.landmarks is not None
        and np.abs(again.landmarks[:, :2] - face.landmarks[:, :2]).max() < 0.05
    )
    moved = R.LiteFace(face.confidence, face.landmarks.copy(), face.matrix)
    moved.landmarks[:, 0] = 0.5 + 0.6 * (
        moved.landmarks[:, 0] - 0.5
    )  # squashed: the points will not hold
    assert lm.refined(image, moved).landmarks is None


def test_mirror_indices_swap_left_and_right(face_model):
    """mirror_indices: an involution of the 478 landmarks that swaps the eyes, the cheeks and
    the mouth corners and keeps the nose tip."""
    pytest.importorskip("ai_edge_litert")
    lm = R.LiteLandmarker(face_model)
    m = lm.mirror
    assert sorted(m.tolist()) == list(range(478)) and (m[m] == np.arange(478)).all()
    assert m[1] == 1 and m[33] == 263 and m[133] == 362 and m[234] == 454 and m[61] == 291
    assert m[468] == 473 and m[469] == 476 and m[470] == 475


def test_a_face_found_in_the_mirror_image_comes_back_in_place(face_model, shared_data):
    """LiteLandmarker.mirrored: the landmarks of the mirror image, mirrored and renumbered,
    lie where the landmarks of the picture itself do, and the pose agrees."""
    pytest.importorskip("ai_edge_litert")
    from curate.faces.geometry import pose_from_matrix, prepare_for_detection
    from curate.images import load_arrays

    lm = R.LiteLandmarker(face_model)
    checked = 0
    for p in sorted((shared_data / "fer2013" / "val" / "happy").glob("*.jpg"))[:6]:
        image = prepare_for_detection(load_arrays(p)[0])[0]
        a, b = lm.find(image), lm.find(np.ascontiguousarray(image[:, ::-1]))
        if a.landmarks is None or b.landmarks is None:
            continue
        back = lm.mirrored(b, image.shape[1], image.shape[0])
        eyes = np.hypot(*(a.landmarks[33, :2] - a.landmarks[263, :2]))
        assert np.median(np.hypot(*(back.landmarks[:, :2] - a.landmarks[:, :2]).T)) < 0.04 * eyes
        assert (
            np.abs(np.subtract(pose_from_matrix(back.matrix), pose_from_matrix(a.matrix))).max() < 8
        )
        checked += 1
    assert checked >= 4


def test_faces_detected_without_landmarks_get_an_occlusion_score(face_model, shared_data):
    """End to end on real FER2013 crops: every image whose face BlazeFace detects (score at
    least 0.5) without landmarks has occlusion and occlusion_any from its keypoint crop, equal
    to the model's score of that crop; images with nothing detected have none."""
    pytest.importorskip("ai_edge_litert")
    from curate.images import load_face_arrays

    paths = sorted((shared_data / "fer2013" / "val" / "fear").glob("*.jpg"))[:400]
    df = A.analyze_faces(paths, workers=1, backend="litert")
    detected = ~df["face_found"] & (df["face_confidence"] >= L.FACE_LIKE)
    assert detected.sum() >= 2
    assert df.loc[detected, "occlusion"].notna().all()
    assert df.loc[detected, "occlusion_any"].notna().all()
    assert df.loc[~df["face_found"] & ~detected, "occlusion"].isna().all()
    finder, model = R.LiteFaceFinder(face_model), O.OcclusionModel()
    for i in np.flatnonzero(detected.to_numpy())[:3]:
        rgb, gray = load_face_arrays(paths[i])
        f = finder.find_face_in_array(rgb, gray)
        assert not f.face_found and f.aligned is not None
        occlusion, covered = model.score(f.aligned)
        assert abs(df["occlusion"][i] - occlusion) < 1e-6
        assert abs(df["occlusion_any"][i] - covered) < 1e-6


def test_looking_again_in_the_mirror_image_finds_more_faces(face_model, shared_data):
    """FER2013 crops that BlazeFace and the retry squares miss: some are found in the
    mirror image (LiteFaceFinder.look_again), with landmarks in the picture's own frame."""
    pytest.importorskip("ai_edge_litert")
    from curate.faces.geometry import prepare_for_detection
    from curate.images import load_arrays

    finder = R.LiteFaceFinder(face_model)
    lm = finder.landmarker
    missed = mirrored = 0
    for p in sorted((shared_data / "fer2013" / "val" / "fear").glob("*.jpg"))[140:200]:
        rgb, gray = load_arrays(p)
        image, _, scale = prepare_for_detection(rgb)
        first = lm.find(image)
        if first.landmarks is not None or first.confidence < R.RETRY_MIN_SCORE:
            continue
        side = max(gray.shape) * scale
        if (
            lm.retry(
                image, (image.shape[1] / 2, image.shape[0] / 2), side, first.confidence
            ).landmarks
            is not None
        ):
            continue
        missed += 1
        again = finder.look_again(image, side, first)
        if again.landmarks is not None:
            mirrored += 1
            found = finder.find_face_in_array(rgb, gray)
            assert found.face_found and found.face_confidence == first.confidence
            box = found.landmarks.min(axis=0), found.landmarks.max(axis=0)
            assert (box[0] > -8).all() and (box[1] < 56).all()  # on the 48 px picture
    assert missed >= 2 and mirrored >= 1, (missed, mirrored)
