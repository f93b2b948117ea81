"""The bundled synthetic example: deterministic, planted problems as recorded, learnable expressions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from curate.errors import CurateError
from curate.synthetic import DEFAULT_CLASSES, make_example


def _digest(out: Path) -> dict[str, str]:
    """sha256 of the manifest and of every image, keyed by relative path."""
    files = [out / "manifest.csv", *sorted((out / "images").rglob("*.png"))]
    return {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("example")
    manifest = make_example(out, seed=0)
    return out, pd.read_csv(manifest)


def test_manifest_layout_and_counts(example: tuple[Path, pd.DataFrame]) -> None:
    out, m = example
    assert list(m.columns) == [
        "path",
        "label",
        "true_label",
        "is_noisy",
        "subject",
        "is_side_face",
        "is_occluded",
        "occluded_region",
        "is_duplicate",
    ]
    assert len(m) == 40 * 6 + 2
    assert m["path"].is_unique
    for rel, true in zip(m["path"], m["true_label"], strict=True):
        assert rel.startswith(f"images/{true}/")
        assert (out / rel).is_file()
    # every file on disk is in the manifest
    assert {str(p.relative_to(out)) for p in (out / "images").rglob("*.png")} == set(m["path"])
    # true classes are balanced (duplicates come on top of the drawn images)
    drawn = m[~m["is_duplicate"]]
    assert drawn["true_label"].value_counts().to_dict() == dict.fromkeys(DEFAULT_CLASSES, 40)
    assert drawn["subject"].nunique() == 12
    assert drawn["subject"].value_counts().max() - drawn["subject"].value_counts().min() <= 6
    # subject names appear in the file names
    assert all(
        Path(p).name.startswith(s + "_") for p, s in zip(m["path"], m["subject"], strict=True)
    )


def test_label_noise_is_planted_as_recorded(example: tuple[Path, pd.DataFrame]) -> None:
    _, m = example
    drawn = m[~m["is_duplicate"]]
    noisy = drawn[drawn["is_noisy"]]
    assert len(noisy) / len(drawn) == pytest.approx(0.15, abs=0.01)
    assert (noisy["label"] != noisy["true_label"]).all()
    clean = m[~m["is_noisy"]]
    assert (clean["label"] == clean["true_label"]).all()
    # each class loses the same number of images to noise; wrong labels spread over several classes
    assert noisy["true_label"].value_counts().to_dict() == dict.fromkeys(DEFAULT_CLASSES, 6)
    assert noisy["label"].nunique() >= 4
    assert set(m["label"]) == set(DEFAULT_CLASSES)


def test_noise_rate_follows_the_request(tmp_path: Path) -> None:
    m = pd.read_csv(make_example(tmp_path / "a", per_class=20, noise=0.3, seed=3, duplicates=0))
    assert m["is_noisy"].mean() == pytest.approx(0.3, abs=0.02)
    assert (m.loc[m["is_noisy"], "label"] != m.loc[m["is_noisy"], "true_label"]).all()
    m0 = pd.read_csv(make_example(tmp_path / "b", per_class=20, noise=0.0, seed=3))
    assert not m0["is_noisy"].any() and (m0["label"] == m0["true_label"]).all()


def test_planted_side_occluded_and_duplicates(example: tuple[Path, pd.DataFrame]) -> None:
    out, m = example
    assert m["is_side_face"].sum() == 12  # 5% of 240
    assert m["is_occluded"].sum() == 12
    assert set(m.loc[m["is_occluded"], "occluded_region"]) == {"eyes", "mouth"}
    assert (m.loc[~m["is_occluded"], "occluded_region"] == "none").all()
    # planted problems do not overlap: a noisy image is otherwise a plain face
    flags = m[["is_noisy", "is_side_face", "is_occluded"]].astype(int).sum(axis=1)
    assert flags.max() == 1

    dups = m[m["is_duplicate"]]
    assert len(dups) == 2
    hashes = {p: hashlib.sha256((out / p).read_bytes()).hexdigest() for p in m["path"]}
    for _, dup in dups.iterrows():
        same = [p for p in m["path"] if hashes[p] == hashes[dup["path"]] and p != dup["path"]]
        assert len(same) == 1, "each duplicate copies exactly one other file"
        original = m[m["path"] == same[0]].iloc[0]
        assert not original["is_duplicate"]
        assert (original["label"], original["true_label"], original["subject"]) == (
            dup["label"],
            dup["true_label"],
            dup["subject"],
        )
    # apart from the planted duplicates, every file is unique
    assert len(set(hashes.values())) == len(m) - 2


def test_images_are_8bit_grayscale_of_the_requested_size(
    example: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    out, m = example
    for rel in m["path"]:
        with Image.open(out / rel) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "L", (48, 48))
    arr = np.asarray(Image.open(out / m["path"].iloc[0]))
    assert arr.dtype == np.uint8 and arr.std() > 10  # a picture, not a flat square
    small = pd.read_csv(make_example(tmp_path, per_class=3, size=32, seed=1))
    with Image.open(tmp_path / small["path"].iloc[0]) as im:
        assert (im.mode, im.size) == ("L", (32, 32))


def test_same_seed_same_bytes_other_seed_other_bytes(
    example: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    out, _ = example
    again = tmp_path / "again"
    make_example(again, seed=0)
    assert _digest(again) == _digest(out)
    make_example(again, seed=0)  # rewriting an earlier example in place gives the same bytes
    assert _digest(again) == _digest(out)

    other = tmp_path / "other"
    make_example(other, seed=1)
    a, b = _digest(out), _digest(other)
    assert a["manifest.csv"] != b["manifest.csv"]
    assert not set(a.values()) & set(b.values())


def _hog(img: np.ndarray, cell: int = 8, bins: int = 8) -> np.ndarray:
    """A plain histogram of gradient orientations per cell, L2-normalised (tolerates small shifts)."""
    gy, gx = np.gradient(img.astype(np.float64))
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    which = np.minimum((ang / np.pi * bins).astype(int), bins - 1)
    n = img.shape[0] // cell
    hist = np.stack(
        [
            (mag * (which == k))[: n * cell, : n * cell].reshape(n, cell, n, cell).sum((1, 3))
            for k in range(bins)
        ],
        axis=-1,
    ).ravel()
    return hist / (np.linalg.norm(hist) + 1e-12)


def test_expressions_carry_signal(example: tuple[Path, pd.DataFrame]) -> None:
    """A nearest-centroid classifier on simple image features, trained on half the clean faces,
    names the expression of the other half far above chance (1/6): the drawings are learnable."""
    out, m = example
    clean = m[~m["is_noisy"] & ~m["is_side_face"] & ~m["is_occluded"] & ~m["is_duplicate"]]
    clean = clean.reset_index(drop=True)
    feats = np.stack([_hog(np.asarray(Image.open(out / p))) for p in clean["path"]])
    y = clean["true_label"].to_numpy()
    train = np.arange(len(clean)) % 2 == 0
    classes = sorted(set(y))
    centroids = np.stack([feats[train & (y == c)].mean(axis=0) for c in classes])
    dist = ((feats[~train, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (np.asarray(classes)[dist.argmin(1)] == y[~train]).mean()
    assert accuracy > 0.6, accuracy


def test_bad_settings_are_refused_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(CurateError, match=r"--noise must be in \[0, 1\), got 1.2") as e:
        make_example(tmp_path / "x", noise=1.2)
    assert "--noise 0.15" in str(e.value)
    with pytest.raises(CurateError, match="unknown expression.*'disgust'"):
        make_example(tmp_path / "x", classes=("happy", "disgust"))
    with pytest.raises(CurateError, match="at least two distinct"):
        make_example(tmp_path / "x", classes=("happy", "happy"))
    with pytest.raises(CurateError, match="--per-class must be at least 2, got 1"):
        make_example(tmp_path / "x", per_class=1)
    with pytest.raises(CurateError, match="--size must be at least 16"):
        make_example(tmp_path / "x", size=8)
    with pytest.raises(CurateError, match="cannot plant"):
        make_example(tmp_path / "x", per_class=4, noise=0.5, side_faces=0.4, occluded=0.4)
    # a folder holding something else is never overwritten
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(CurateError, match="not empty and does not hold an earlier example"):
        make_example(busy)
    assert (busy / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_cli_example(tmp_path: Path) -> None:
    from curate.cli import app

    runner = CliRunner()
    out = tmp_path / "demo"
    result = runner.invoke(
        app,
        ["example", str(out), "--per-class", "5", "--noise", "0.2", "--seed", "4", "--size", "40"],
    )
    assert result.exit_code == 0, result.output
    m = pd.read_csv(out / "manifest.csv")
    assert len(m) == 5 * 6 + 2 and m["is_noisy"].sum() == 6
    assert "wrote 32 synthetic 40x40 faces" in result.output
    assert "6 wrong labels" in result.output
    assert "curate build-tuples" in result.output
    with Image.open(out / m["path"].iloc[0]) as im:
        assert im.size == (40, 40)

    bad = runner.invoke(app, ["example", str(tmp_path / "bad"), "--noise", "-0.1"])
    assert bad.exit_code == 2
    assert "--noise must be in [0, 1), got -0.1" in bad.output


def test_draw_images_follows_its_plan(tmp_path: Path) -> None:
    """One image per plan row, drawn from the generator seeded ``[seed, k]`` (so a row's
    pixels do not depend on the rows before it), a duplicate a byte copy of its original."""
    from curate.synthetic import EXPRESSIONS, _draw_images, _make_subject, render_face

    subjects = [
        _make_subject("s01", np.random.default_rng(0)),
        _make_subject("s02", np.random.default_rng(1)),
    ]
    base = {"is_noisy": False, "is_side_face": False, "occluded_region": "none", "copy_of": None}
    plan = [
        {**base, "true_label": "happy", "label": "happy", "subject": 0, "index": 0},
        {
            **base,
            "true_label": "sad",
            "label": "happy",
            "is_noisy": True,
            "subject": 1,
            "index": 1,
            "occluded_region": "mouth",
        },
        {**base, "true_label": "happy", "label": "happy", "subject": 0, "index": 2, "copy_of": 0},
    ]
    manifest = _draw_images(tmp_path, plan, subjects, seed=7, size=32)
    assert manifest["path"].tolist() == [
        "images/happy/s01_0000.png",
        "images/sad/s02_0001.png",
        "images/happy/s01_0002.png",
    ]
    assert manifest["is_duplicate"].tolist() == [False, False, True]
    assert manifest["is_occluded"].tolist() == [False, True, False]
    assert manifest["subject"].tolist() == ["s01", "s02", "s01"]
    second = render_face(
        subjects[1], EXPRESSIONS["sad"], np.random.default_rng([7, 1]), size=32, occlusion="mouth"
    )
    assert np.array_equal(np.asarray(Image.open(tmp_path / manifest["path"][1])), second)
    first, copy = (tmp_path / manifest["path"][i] for i in (0, 2))
    assert first.read_bytes() == copy.read_bytes()
