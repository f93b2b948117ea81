"""curate.sources: one answer to "what kind of source is this", one manifest reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate.errors import CurateError
from curate.faces.run import source_images
from curate.ingest import ingest
from curate.sources import (
    absolute,
    is_missing,
    read_manifest,
    resolve_paths,
    screen_build_dir,
    source_kind,
    walk_files,
)


def _img(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def test_source_kind_of_every_kind(tmp_path):
    flat = tmp_path / "flat"
    _img(flat / "a.png")
    labelled = tmp_path / "labelled"
    _img(labelled / "happy" / "a.png")
    build = tmp_path / "build"
    build.mkdir()
    (build / "images.parquet").write_bytes(b"")
    screen = tmp_path / "screen"
    screen.mkdir()
    (screen / "kept.parquet").write_bytes(b"")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"")
    manifest = tmp_path / "m.CSV"
    manifest.write_text("path\n")
    kinds = {
        p.name: source_kind(p, hint="h") for p in (flat, labelled, build, screen, run, manifest)
    }
    assert kinds == {
        "flat": "image_folder",
        "labelled": "labelled_folder",
        "build": "build",
        "screen": "screen",
        "run": "run",
        "m.CSV": "manifest",
    }
    with pytest.raises(CurateError, match="source not found") as err:
        source_kind(tmp_path / "nope", hint="the hint")
    assert err.value.hint == "the hint"
    with pytest.raises(CurateError, match="expected a folder, a .csv or a .parquet"):
        source_kind(flat / "a.png", hint="h")


def test_manifest_missing_values_are_one_rule(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("path,label,note\na.png,NA,\n,happy,x\n")
    table = read_manifest(csv)
    assert table["label"].tolist() == ["NA", "happy"]  # text is a value, "NA" included
    assert is_missing(table.loc[0, "note"]) and is_missing(table.loc[1, "path"])
    pq = tmp_path / "m.parquet"
    pd.DataFrame({"path": ["a.png", None], "label": ["NA", "happy"]}).to_parquet(pq)
    assert is_missing(read_manifest(pq).loc[1, "path"])
    assert not any(is_missing(v) for v in ("", "NA", 0, "nan"))


def test_ingest_and_the_face_listing_agree_on_a_blank_path(tmp_path):
    for i in range(3):
        _img(tmp_path / f"{i}.png", 10 * i)
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("path,label\n0.png,happy\n,sad\n2.png,sad\n")
    images = ingest(labelled, workers=1)
    assert images["status"].tolist() == ["ok", "missing", "ok"]
    listed = source_images(labelled)
    assert listed["image_id"].tolist() == [0, 2]  # the blank row keeps its position, unlisted
    unlabelled = tmp_path / "paths.csv"
    unlabelled.write_text("file,note\n0.png,a\n,b\n1.png,c\n  ,d\n2.png,e\n")
    listed = source_images(unlabelled, path_column="file")
    assert [Path(p).name for p in listed["path"]] == ["0.png", "1.png", "2.png"]
    assert listed["image_id"].tolist() == [0, 2, 4]  # rows without a path are left out


def test_walk_order_and_hidden_files(tmp_path):
    for rel in ("b.png", "a/z.png", "a/.hidden.png", ".git/x.png", "c.txt", "A.PNG"):
        _img(tmp_path / rel) if rel.endswith(("png", "PNG")) else (tmp_path / rel).write_text("x")
    names = [p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path, (".png",))]
    assert names == ["A.PNG", "b.png", "a/z.png"]  # a folder's files, then its sub-folders
    assert [p.name for p in walk_files(tmp_path)] == ["A.PNG", "b.png", "c.txt", "z.png"]


def test_screen_build_dir_reads_the_run_record(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "images.parquet").write_bytes(b"")
    screen = tmp_path / "screen"
    screen.mkdir()
    assert screen_build_dir(screen) is None
    (screen / "run.json").write_text(json.dumps({"params": {"build_dir": "../build"}}))
    assert screen_build_dir(screen) == build.resolve()
    (screen / "run.json").write_text(
        json.dumps({"params": {"build_dir": "gone"}, "inputs": {"build_dir": str(build)}})
    )
    assert screen_build_dir(screen) == build.resolve()
    (screen / "run.json").write_text("{not json")
    with pytest.raises(CurateError, match="cannot read"):
        screen_build_dir(screen)


def test_a_screen_folder_stands_for_the_images_of_its_build(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    pd.DataFrame(
        {
            "image_id": [0, 1, 2],
            "path": ["/a.png", "/b.png", "/c.png"],
            "sha256": ["x", "y", "z"],
            "status": ["ok", "corrupt", "ok"],
        }
    ).to_parquet(build / "images.parquet")
    screen = tmp_path / "screen"
    screen.mkdir()
    (screen / "kept.parquet").write_bytes(b"")
    (screen / "run.json").write_text(json.dumps({"params": {"build_dir": str(build)}}))
    for src in (build, screen):
        listed = source_images(src)
        assert listed["image_id"].tolist() == [0, 2] and listed["sha256"].tolist() == ["x", "z"]
    (screen / "run.json").write_text("{}")
    with pytest.raises(CurateError, match="no source of images|not a source|build"):
        source_images(screen)


def test_resolve_paths_equals_absolute_path_by_path(tmp_path):
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "a.png").write_bytes(b"x")
    (real / "sub" / "b.png").write_bytes(b"y")
    (tmp_path / "linkdir").symlink_to(real, target_is_directory=True)
    (tmp_path / "linkfile.png").symlink_to(real / "sub" / "b.png")
    (real / "rel_link.png").symlink_to("sub/b.png")
    (real / "broken.png").symlink_to(real / "gone.png")
    (real / "loop.png").symlink_to(real / "loop.png")
    cases = [
        str(real / "a.png"),
        str(tmp_path / "linkdir" / "a.png"),
        str(tmp_path / "linkfile.png"),
        str(real / "rel_link.png"),
        str(tmp_path / "linkdir" / "sub" / ".." / "a.png"),
        str(tmp_path / "linkdir" / "missing.png"),
        str(tmp_path / "nowhere" / "x.png"),
        str(tmp_path / "linkdir" / "sub" / ".."),
        str(tmp_path / "linkdir" / "."),
        "",
        "a.png",
        str(tmp_path / "linkdir" / "broken.png"),
        str(tmp_path / "linkdir" / "loop.png"),
    ]
    assert resolve_paths(cases) == [absolute(p) if p else "" for p in cases]
