"""The hygiene screens end to end on a tiny planted dataset: a near-duplicate in its split,
a copy across splits (leakage), a blank frame, a text image and a drawing, through
build-tuples, screen, the report and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from curate.build import build_tuples
from curate.cli import app
from curate.errors import CurateError
from curate.export import export
from curate.hygiene import thumbnails
from curate.report import write_report
from curate.screen import screen

CLASSES = ("angry", "happy", "neutral", "sad")


def _photo(rng: np.random.Generator) -> np.ndarray:
    """A smooth random 48 x 48 picture with sensor noise: photo-like, and no two alike."""
    x = gaussian_filter(rng.normal(size=(48, 48)), 2.5) + 0.3 * gaussian_filter(
        rng.normal(size=(48, 48)), 1
    )
    x = (x - x.mean()) / x.std()
    return np.clip(128 + 45 * x + rng.normal(0, 3, (48, 48)), 0, 255)


def _gradient() -> np.ndarray:
    """A smooth light background: many grey levels, but flat (neighbours differ by < 2)."""
    return np.tile(np.linspace(175, 245, 48), (48, 1))


def _text() -> np.ndarray:
    img = _gradient()
    for row in range(6, 44, 7):
        for col in range(4, 44, 6):
            img[row : row + 3, col : col + 4] = 30.0  # letters of a line of text
    return img


def _drawing() -> np.ndarray:
    img = _gradient()
    yy, xx = np.mgrid[:48, :48]
    ring = np.abs(np.hypot(yy - 24, xx - 24) - 15) < 1.2
    img[ring] = 20.0
    img[30:32, 16:32] = 20.0  # a mouth
    img[17:20, 17:20] = img[17:20, 28:31] = 20.0  # eyes
    return img


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L").save(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """ROOT/<split>/<class>/<image>: 220 photos plus the planted images (names in the dict)."""
    root = tmp_path_factory.mktemp("hygiene") / "data"
    rng = np.random.default_rng(0)
    photos = {}
    for split, n in (("train", 30), ("test", 25)):
        for label in CLASSES:
            for i in range(n):
                photos[f"{split}/{label}/{i:03d}.png"] = _photo(rng)
    for rel, px in photos.items():
        _save(root / rel, px)
    source = photos["train/happy/000.png"]
    _save(
        root / "train/happy/zz_copy.png", np.clip(source[:, ::-1] + 25, 0, 255)
    )  # mirrored, brighter
    leak = photos["train/sad/003.png"]
    cropped = np.asarray(
        Image.fromarray(leak[2:46, 1:45].astype(np.uint8)).resize((48, 48), Image.BICUBIC)
    )
    _save(root / "test/sad/zz_leak.png", cropped)  # a 92 % crop in the other split
    _save(root / "train/angry/zz_blank.png", 128 + rng.normal(0, 0.4, (48, 48)))
    _save(root / "train/neutral/zz_text.png", _text())
    _save(root / "train/neutral/zz_drawing.png", _drawing())
    build = root.parent / "build"
    result = build_tuples(root, build, per_anchor=1, seed=0)
    ids = result.images.set_index("rel_path")["image_id"]
    return {
        "root": root,
        "build": build,
        "result": result,
        "id": lambda rel: int(ids[rel]),
        "work": root.parent,
    }


def test_build_tuples_warns_of_the_copy_across_splits(planted) -> None:
    leak = planted["result"].leakage
    assert leak[["rel_path_a", "rel_path_b"]].values.tolist() == [
        ["test/sad/zz_leak.png", "train/sad/003.png"]
    ]
    assert bool(leak["cross_split"].iloc[0]) and leak["pixel_sim"].iloc[0] >= 0.97
    counts = json.loads((planted["build"] / "run.json").read_text())["counts"]["leakage"]
    assert counts["cross_split_pairs"] == 1
    assert counts["images_with_copy_in_other_split"] == {"test": 1, "train": 1}
    assert (
        json.loads((planted["build"] / "run.json").read_text())["params"]["check_leakage"] is True
    )


def test_build_tuples_cli_prints_the_leak_and_can_skip_the_check(planted, tmp_path) -> None:
    r = CliRunner().invoke(
        app, ["build-tuples", str(planted["root"]), "--out", str(tmp_path / "b")]
    )
    assert r.exit_code == 0, r.output
    assert "leakage" in r.output and "1 near-duplicate pair(s) across splits" in r.output
    assert "zz_leak.png" in r.output
    r = CliRunner().invoke(
        app,
        ["build-tuples", str(planted["root"]), "--out", str(tmp_path / "c"), "--no-leakage-check"],
    )
    assert r.exit_code == 0 and "leakage" not in r.output
    assert json.loads((tmp_path / "c" / "run.json").read_text())["counts"]["leakage"] is None


@pytest.fixture(scope="module")
def screened(planted) -> dict:
    out = planted["work"] / "screen"
    res = screen(
        planted["build"],
        out,
        skip_faces_screen=True,
        skip_label_screen=True,
        null="effective",
        embeddings=_embeddings(planted),
    )
    return {
        **planted,
        "out": out,
        "res": res,
        "suspect": pd.read_parquet(out / "images_suspect.parquet").set_index("rel_path"),
    }


def _embeddings(planted) -> Path:
    images = planted["result"].images
    ok = images[images["status"].eq("ok")]
    rng = np.random.default_rng(1)
    path = planted["work"] / "emb.parquet"
    pd.DataFrame(
        {"image_id": ok["image_id"], "embedding": list(rng.normal(size=(len(ok), 8)))}
    ).to_parquet(path)
    return path


def _rejected(suspect: pd.DataFrame, col: str) -> set[str]:
    return set(suspect.index[suspect[col].fillna(False).astype(bool)])


def test_each_hygiene_screen_rejects_exactly_what_was_planted(screened) -> None:
    s = screened["suspect"]
    assert _rejected(s, "quality_reject") == {"train/angry/zz_blank.png"}
    assert s.loc["train/angry/zz_blank.png", "quality_reason"] == "blank"
    assert (
        s.loc["train/angry/zz_blank.png", "quality_score"]
        > 1
        > s["quality_score"].drop("train/angry/zz_blank.png").max()
    )
    assert _rejected(s, "not_face_reject") == {
        "train/angry/zz_blank.png",
        "train/neutral/zz_text.png",
        "train/neutral/zz_drawing.png",
    }
    photos = s.drop(index=[r for r in s.index if "zz_" in r])
    assert (
        photos["not_face_score"].max() < 9.5 < s.loc["train/neutral/zz_text.png", "not_face_score"]
    )
    # within its split the copy goes, its source stays; across splits both stay (leakage)
    assert _rejected(s, "near_duplicate_reject") == {"train/happy/zz_copy.png"}
    assert s.loc["train/happy/zz_copy.png", "near_duplicate_of"] == screened["id"](
        "train/happy/000.png"
    )
    # image ids stay integers (nullable), never floats
    assert s["near_duplicate_of"].dtype == "Int64" and s["same_sequence_of"].dtype == "Int64"
    assert not s.loc[["test/sad/zz_leak.png", "train/sad/003.png"], "near_duplicate_reject"].any()
    assert s.loc[["test/sad/zz_leak.png", "train/sad/003.png"], "near_duplicate_leak"].all()
    assert s["near_duplicate_leak"].sum() == 2
    run = screened["res"].run
    assert run["counts"]["rejected_images_by_screen"] == {
        "quality": 1,
        "not_face": 3,
        "near_duplicates": 1,
    }
    assert run["params"]["screens"][2:] == ["near_duplicates", "boundary"]
    assert set(run["params"]["screens"][:2]) == {"quality", "not_face"}


def test_near_duplicates_table_lists_the_pairs_with_their_relation(screened) -> None:
    pairs = pd.read_parquet(screened["out"] / "near_duplicates.parquet")
    i = screened["id"]
    got = {
        frozenset((int(a), int(b))): bool(c)
        for a, b, c in pairs[["image_id_a", "image_id_b", "cross_split"]].values
    }
    assert got == {
        frozenset((i("train/happy/000.png"), i("train/happy/zz_copy.png"))): False,
        frozenset((i("train/sad/003.png"), i("test/sad/zz_leak.png"))): True,
    }
    assert set(pairs["relation"]) == {"near_duplicate"} and (pairs["pixel_sim"] >= 0.97).all()
    assert pairs.dtypes["split_a"] == "string" and set(pairs.columns) >= {
        "label_a",
        "label_b",
        "group",
    }
    art = screened["res"].outputs["near_duplicates"].artifacts
    assert art["cross_split_pairs"] == 1 and art["groups"] == 2


def test_rejected_images_leave_the_tuples(screened) -> None:
    scores = pd.read_parquet(screened["out"] / "scores.parquet")
    bad = {
        screened["id"](r)
        for r in (
            "train/angry/zz_blank.png",
            "train/neutral/zz_text.png",
            "train/neutral/zz_drawing.png",
            "train/happy/zz_copy.png",
        )
    }
    anchored = scores["anchor"].isin(bad)
    assert anchored.sum() == 4 and (~scores.loc[anchored, "keep"]).all()
    assert not scores.loc[~anchored, ["positive", "negative"]].isin(bad).any(axis=None)
    codes = set(";".join(scores.loc[anchored, "reason"]).split(";"))
    assert {"blank", "not_a_face", "near_duplicate"} <= codes


def test_report_shows_the_leak_and_a_gallery_per_reason(screened) -> None:
    html = write_report(screened["out"]).read_text()
    assert 'id="leakage"' in html and "Leakage across splits" in html
    assert "1 across splits" in html and "A random sample of 1 of 1 cross-split pairs" in html
    assert "zz_leak.png" in html and "003.png" in html
    for code in ("blank", "not_a_face", "near_duplicate"):
        assert f">{code}</span> \u2014 a random sample of" in html, code
    assert "copy of image" in html  # the near-duplicate caption names the kept image
    gallery = html.split("near_duplicate</span> \u2014 a random sample of")[1].split("<h4")[0]
    assert (
        '<div class="role">rejected</div>' in gallery and '<div class="role">kept</div>' in gallery
    )


def test_export_states_the_leak_and_drops_one_side_on_request(screened, tmp_path) -> None:
    leak, source = screened["id"]("test/sad/zz_leak.png"), screened["id"]("train/sad/003.png")
    plain = export(screened["out"], tmp_path / "plain", format="csv")
    assert {leak, source} <= set(plain.manifest["image_id"]) and plain.n_leaked == 2
    assert plain.n_image_rejected == {"quality": 1, "not_face": 3, "near_duplicates": 1}
    test = export(screened["out"], tmp_path / "test", format="csv", drop_leaked="test")
    assert leak not in set(test.manifest["image_id"]) and source in set(test.manifest["image_id"])
    assert (
        test.n_dropped_leaked == 1
        and test.n_leaked == 0
        and len(test.manifest) == len(plain.manifest) - 1
    )
    train = export(screened["out"], tmp_path / "train", format="csv", drop_leaked="train")
    assert source not in set(train.manifest["image_id"]) and leak in set(train.manifest["image_id"])
    hf = export(screened["out"], tmp_path / "hf", format="hf", drop_leaked="test")
    row = hf.manifest.set_index("image_id").loc[leak]
    assert not row["kept"] and row["reasons"] == "leaked"
    with pytest.raises(CurateError, match="drop-leaked must be one of"):
        export(screened["out"], tmp_path / "bad", format="csv", drop_leaked="val")
    r = CliRunner().invoke(
        app, ["export", str(screened["out"]), "--out", str(tmp_path / "cli"), "--format", "csv"]
    )
    assert (
        r.exit_code == 0
        and "leakage: 2 exported image(s)" in r.output
        and "--drop-leaked test" in r.output
    )
    r = CliRunner().invoke(
        app,
        [
            "export",
            str(screened["out"]),
            "--out",
            str(tmp_path / "cli2"),
            "--format",
            "csv",
            "--drop-leaked",
            "test",
        ],
    )
    assert r.exit_code == 0 and "left out 1 image(s) with a near-duplicate" in r.output
    assert "leakage:" not in r.output


def test_each_image_is_decoded_once_per_run_and_skip_flags_work(
    planted, tmp_path, monkeypatch
) -> None:
    calls = []
    real = thumbnails.decode_one
    monkeypatch.setattr(
        thumbnails, "decode_one", lambda p, stats=True: calls.append(p) or real(p, stats)
    )
    res = screen(
        planted["build"],
        tmp_path / "s",
        skip_faces_screen=True,
        skip_label_screen=True,
        embeddings=_embeddings(planted),
    )
    assert len(calls) == len(set(calls)) == res.n_images  # three screens, one decode each
    calls.clear()
    r = CliRunner().invoke(
        app,
        [
            "screen",
            str(planted["build"]),
            "--out",
            str(tmp_path / "cli"),
            "--embeddings",
            str(_embeddings(planted)),
            "--skip-faces-screen",
            "--skip-label-screen",
            "--skip-quality-screen",
            "--skip-not-face-screen",
            "--skip-near-duplicates-screen",
        ],
    )
    assert r.exit_code == 0, r.output
    assert not calls and not (tmp_path / "cli" / "near_duplicates.parquet").exists()
    assert json.loads((tmp_path / "cli" / "run.json").read_text())["params"]["screens"] == [
        "boundary"
    ]
    assert "near-duplicate screen did not run" in (tmp_path / "cli" / "report.html").read_text()
    r = CliRunner().invoke(
        app,
        ["screen", str(planted["build"]), "--out", str(tmp_path / "bad"), "--min-pixel-sim", "1.5"],
    )
    assert r.exit_code == 2 and "min_pixel_sim must be a number" in r.output


def test_near_duplicates_runs_after_every_other_builtin_image_screen() -> None:
    """Its keep rule relies on it (curate.screens.near_duplicates): the registry runs image
    screens in registration order."""
    from curate import screens

    image = [s.name for s in screens.registered() if s.level == "image"]
    assert image[-1] == "near_duplicates" and {"faces", "label", "quality", "not_face"} <= set(
        image[:-1]
    )


def test_report_lists_reasons_without_images_once_instead_of_empty_galleries(screened) -> None:
    html = write_report(screened["out"]).read_text()
    suspect = pd.read_parquet(screened["out"] / "images_suspect.parquet")
    reasons = ";".join(suspect["quality_reason"].dropna())
    unused = [c for c in ("too_bright", "blurry", "odd_aspect", "too_small") if c not in reasons]
    assert unused, "the fixture should leave some quality reasons unused"
    assert "a random sample of 0 of 0" not in html
    line = html.split("No image rejected as ")[1].split("</p>")[0]
    for code in unused:
        assert f">{code}</span>" in line


def test_report_counts_same_sequence_pairs_apart_from_copies(tmp_path) -> None:
    # CK+-like: frames of one sequence are confirmed by the pixel check but are not copies;
    # the section must not call them "pairs of the same photo".
    from types import SimpleNamespace

    from curate.report.leakage import leakage_body

    pairs = pd.DataFrame(
        {
            "image_id_a": [0, 1, 4],
            "image_id_b": [1, 2, 5],
            "split_a": pd.array(["all"] * 3, dtype="string"),
            "split_b": pd.array(["all"] * 3, dtype="string"),
            "candidate_sim": np.float32(0.9),
            "pixel_sim": np.float32([0.99, 0.995, 0.98]),
            "relation": ["same_sequence", "same_sequence", "near_duplicate"],
            "cross_split": False,
            "group": [-1, -1, 0],
        }
    )
    pairs.to_parquet(tmp_path / "near_duplicates.parquet")
    html = "".join(
        map(str, leakage_body(SimpleNamespace(screen_dir=tmp_path, suspect=None), None, 12, 0))
    )
    assert "1 confirmed pairs of the same photo (1 within a split" in html
    assert "2 further confirmed pairs are frames of one sequence" in html
