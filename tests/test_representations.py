"""Representations: the registry, the choice per dataset by a cross-validated probe, the
face framing, and faces without landmarks falling back, recorded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from builders import make_build

from curate.errors import CurateError
from curate.representations import AUTO, choices, get, register, registered, unregister
from curate.representations import blendshapes as bs_module
from curate.representations.base import Features, Representation, RepresentationContext
from curate.representations.choose import represent
from curate.representations.framing import crop_box, decide
from curate.representations.probe import folds_of, probe
from curate.screen import screen

NO_HYGIENE = {
    "skip_quality_screen": True,
    "skip_not_face_screen": True,
    "skip_near_duplicates_screen": True,
}


def _planted(
    n_per_class: int = 30, classes=("angry", "happy", "sad"), subjects: int = 6, seed: int = 0
):
    """Images with labels and subjects; ``signal`` separates the classes, ``noise`` does not."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(classes, n_per_class)
    codes = np.searchsorted(np.array(classes), labels)
    centres = rng.normal(size=(len(classes), 8)) * 3
    signal = (centres[codes] + rng.normal(size=(len(labels), 8))).astype(np.float32)
    noise = rng.normal(size=(len(labels), 20)).astype(np.float32)
    images = pd.DataFrame(
        {
            "image_id": np.arange(len(labels)),
            "path": [f"/x/{i}.png" for i in range(len(labels))],
            "sha256": [f"{i:064x}" for i in range(len(labels))],
            "label": labels,
            "subject": [f"S{i % subjects}" for i in range(len(labels))],
        }
    )
    return images, signal, noise


def _fake(monkeypatch, backbone: np.ndarray, shapes: np.ndarray, missing: np.ndarray | None = None):
    """Planted vectors for the built-in backbone and blendshapes representations."""

    def back(self, ctx):
        return Features(
            "backbone",
            backbone,
            np.zeros(len(backbone), bool),
            [None] * len(backbone),
            details={"backbone": "planted", "framing": {"used": "full"}},
        )

    def shp(self, ctx):
        miss = np.zeros(len(shapes), bool) if missing is None else missing
        return Features(
            "blendshapes",
            np.where(miss[:, None], 0.0, shapes).astype(np.float32),
            miss,
            ["no face found by the landmarker" if m else None for m in miss],
        )

    monkeypatch.setattr(type(get("backbone")), "compute", back)
    monkeypatch.setattr(type(get("blendshapes")), "compute", shp)


def test_registry_lists_the_built_in_representations():
    assert choices()[:4] == [AUTO, "backbone", "blendshapes", "combined"]
    with pytest.raises(CurateError, match="unknown representation"):
        get("nope")


def test_a_plug_in_representation_is_measured_by_auto(monkeypatch):
    images, signal, noise = _planted()
    _fake(monkeypatch, noise, noise)

    @register
    class Planted(Representation):
        name = "planted"
        summary = "a test representation"

        def compute(self, ctx):
            return Features("planted", signal, np.zeros(len(signal), bool), [None] * len(signal))

    try:
        assert "planted" in choices()
        chosen = represent(RepresentationContext(images=images, settings={}), AUTO)
        assert chosen.name == "planted" and set(chosen.measures) == {
            "backbone",
            "blendshapes",
            "combined",
            "planted",
        }
    finally:
        unregister("planted")
    assert "planted" not in [r.name for r in registered()]


@pytest.mark.parametrize("separates", ["backbone", "blendshapes"])
def test_auto_picks_the_representation_that_separates_the_classes(monkeypatch, separates):
    images, signal, noise = _planted()
    if separates == "backbone":
        _fake(monkeypatch, signal, noise[:, :8])
    else:
        _fake(monkeypatch, noise, signal)
    chosen = represent(RepresentationContext(images=images, settings={}), AUTO)
    m = {k: v["balanced_accuracy"] for k, v in chosen.measures.items()}
    assert chosen.name == separates, chosen.sentence
    other = "blendshapes" if separates == "backbone" else "backbone"
    assert m[separates] > 0.9 and m[other] < 0.6
    assert chosen.measures[separates]["grouped_by"] == "subject"  # folds hold whole performers
    assert (
        chosen.sentence.endswith(f"using {separates}")
        and f"{separates} {m[separates]:.2f}" in chosen.sentence
    )
    # asked for by name: that one, measured alone
    fixed = represent(RepresentationContext(images=images, settings={}), other)
    assert fixed.name == other and list(fixed.measures) == [other]


def test_probe_folds_keep_each_subject_in_one_fold():
    codes = np.tile([0, 1, 2], 40)
    groups = np.array([f"P{i % 9}" for i in range(120)])
    fold = folds_of(codes, groups, 5, seed=0)
    for g in np.unique(groups):
        assert np.unique(fold[groups == g]).size == 1
    assert np.unique(fold).size == 5
    # without groups: stratified, every class in every fold
    plain = folds_of(codes, None, 5, seed=0)
    assert all(np.unique(codes[plain == f]).size == 3 for f in range(5))


def test_probe_is_deterministic_and_scores_held_out_images():
    images, signal, _ = _planted()
    a = probe(signal, images["label"].to_numpy(), groups=images["subject"].to_numpy(), seed=3)
    b = probe(signal, images["label"].to_numpy(), groups=images["subject"].to_numpy(), seed=3)
    assert np.array_equal(a.probabilities, b.probabilities) and a.balanced_accuracy > 0.9
    assert np.allclose(a.probabilities.sum(axis=1), 1.0)


def test_a_face_without_landmarks_falls_back_and_is_recorded(monkeypatch):
    """The blendshapes of a face the landmarker missed are missing, say why, and sit at the
    origin; combined keeps its backbone block."""
    images, signal, noise = _planted()
    analysis = pd.DataFrame(
        {
            "blendshapes": [
                np.abs(s[:8]).tolist() * 6 + [0.1] * 4 if i != 7 else None
                for i, s in enumerate(signal)
            ],
            "detail": [
                None if i != 7 else "no face found by the landmarker" for i in range(len(signal))
            ],
        }
    )
    analysis["blendshapes"] = [
        None if v is None else np.asarray(v, np.float32) for v in analysis["blendshapes"]
    ]
    monkeypatch.setattr(bs_module, "face_analysis", lambda ctx: analysis)
    ctx = RepresentationContext(images=images, settings={})
    feats = get("blendshapes").compute(ctx)
    assert feats.missing.tolist() == [i == 7 for i in range(len(images))]
    assert (
        feats.missing_reason[7] == "no face found by the landmarker"
        and feats.missing_reason[0] is None
    )
    assert np.all(feats.vectors[7] == 0) and feats.details["images_without"] == 1
    assert any("1 of 90 images have no face landmarks" in n for n in feats.notes)

    monkeypatch.setattr(
        type(get("backbone")),
        "compute",
        lambda self, c: Features(
            "backbone",
            noise,
            np.zeros(len(noise), bool),
            [None] * len(noise),
            details={"backbone": "planted"},
        ),
    )
    comb = get("combined").compute(ctx)
    assert comb.missing[7] and "backbone alone" in comb.missing_reason[7]
    assert np.all(comb.vectors[7, noise.shape[1] :] == 0) and np.any(
        comb.vectors[7, : noise.shape[1]] != 0
    )


def test_screen_records_the_representation_and_embeddings_say_which(tmp_path, monkeypatch):
    build, images, emb = make_build(tmp_path, per_class=12)
    rng = np.random.default_rng(1)
    missing = np.zeros(len(images), bool)
    missing[3] = True
    _fake(
        monkeypatch,
        rng.normal(size=(len(images), 16)).astype(np.float32),
        emb.astype(np.float32),
        missing,
    )
    res = screen(build, tmp_path / "out", skip_faces_screen=True, **NO_HYGIENE)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    rep = run["params"]["representation"]
    assert (
        rep["setting"] == "auto"
        and rep["used"] == "blendshapes" == res.run["params"]["representation"]["used"]
    )
    assert set(rep["measures"]) == {"backbone", "blendshapes", "combined"}
    assert (
        rep["summary"].endswith("using blendshapes")
        and run["counts"]["images_without_representation"] == 1
    )
    assert any(n.startswith("representation: ") for n in res.notes)
    table = pd.read_parquet(tmp_path / "out" / "embeddings.parquet")
    assert set(table["representation"]) == {"blendshapes"}
    assert table["missing_reason"].notna().tolist() == missing.tolist()
    suspect = pd.read_parquet(tmp_path / "out" / "images_suspect.parquet")
    top = suspect.iloc[0]
    assert top["image_id"] == 5 and top["suggested_label"] == "happy"
    assert 0 <= suspect["suggested_confidence"].min() and suspect["suggested_confidence"].max() <= 1
    with pytest.raises(CurateError, match="unknown representation"):
        screen(build, tmp_path / "bad", representation="pixels", skip_faces_screen=True)
    with pytest.raises(CurateError, match="framing"):
        screen(build, tmp_path / "bad", framing="tight", skip_faces_screen=True)


def test_framing_crops_small_faces_only():
    images = pd.DataFrame({"width": [256, 256, 48], "height": [256, 256, 48]})
    small = pd.DataFrame(
        {"face_box": [(60.0, 70.0, 200.0, 230.0), (50.0, 60.0, 190.0, 220.0), None]}
    )
    boxes, record = decide("auto", small, images)
    assert record["used"] == "face" and record["median_face_share"] < 0.8 and boxes[2] is None
    assert boxes[0] == crop_box((60.0, 70.0, 200.0, 230.0))
    x0, y0, x1, y1 = boxes[0]
    assert x1 - x0 == pytest.approx(1.2 * 160) and y1 - y0 == pytest.approx(1.2 * 160)
    tight = pd.DataFrame({"face_box": [(2.0, 1.0, 46.0, 47.0)] * 3})
    assert decide("auto", tight, pd.DataFrame({"width": [48] * 3, "height": [48] * 3}))[0] is None
    assert decide("full", small, images)[0] is None and decide("face", tight, images)[0] is not None


def test_blendshapes_are_made_with_the_face_analysis_and_a_blank_image_has_none(tmp_path):
    """A real analysis: a blank picture has no landmarks, so no blendshapes, and says why;
    the face rows are the same as without blendshapes (additive output)."""
    from PIL import Image

    from curate.faces.analyze import analyze_faces

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(blank)
    with_bs = analyze_faces([blank], cache_dir=tmp_path / "c", workers=0, blendshapes=True)
    assert with_bs["blendshapes"].iloc[0] is None and with_bs["face_box"].iloc[0] is None
    assert not with_bs["face_found"].iloc[0] and with_bs["detail"].iloc[0]
    plain = analyze_faces([blank], cache_dir=tmp_path / "c", workers=0)
    assert "blendshapes" not in plain.columns
    pd.testing.assert_frame_equal(plain, with_bs[plain.columns])


def test_litert_blendshapes_match_mediapipe_tasks(shared_data, tmp_path):
    """The litert backend's blendshapes are MediaPipe Tasks' output_face_blendshapes."""
    from curate.faces.analyze import analyze_faces
    from curate.faces.landmarks import BLENDSHAPE_NAMES

    files = sorted((shared_data / "taiwanese-posed" / "images").glob("*.jpg"))[:3]
    lite = analyze_faces(
        files, cache_dir=tmp_path / "a", workers=0, blendshapes=True, backend="litert"
    )
    tasks = analyze_faces(
        files, cache_dir=tmp_path / "b", workers=0, blendshapes=True, backend="tasks"
    )
    for a, b in zip(lite["blendshapes"], tasks["blendshapes"], strict=True):
        assert a.shape == (len(BLENDSHAPE_NAMES),) and np.abs(a - b).max() < 0.01
    assert all(box is not None and box[2] > box[0] for box in lite["face_box"])


def test_probe_probabilities_are_calibrated_by_a_temperature():
    """Overconfident probabilities get a temperature above 1, which lowers their negative
    log-likelihood; calibrated ones keep about 1."""
    from curate.representations.probe import fit_temperature, with_temperature

    rng = np.random.default_rng(0)
    n, k = 4000, 4
    codes = rng.integers(0, k, n)
    right = rng.random(n) < 0.6  # the top class is right 60% of the time ...
    top = np.where(right, codes, (codes + rng.integers(1, k, n)) % k)
    over = np.full((n, k), 0.02 / (k - 1))
    over[np.arange(n), top] = 0.98  # ... but claims 98%
    t = fit_temperature(over, codes)
    cal = with_temperature(over, t)
    assert t > 1.5 and abs(cal.max(axis=1).mean() - 0.6) < 0.03
    nll = lambda p: -np.log(p[np.arange(n), codes]).mean()  # noqa: E731
    assert nll(cal) < nll(over)
    honest = np.full((n, k), 0.4 / (k - 1))
    honest[np.arange(n), top] = 0.6
    assert abs(fit_temperature(honest, codes) - 1.0) < 0.1
    images, signal, _ = _planted()
    assert "temperature" in probe(signal, images["label"].to_numpy()).to_dict()
