"""Ingest: every input image gets a row and a status; bad input never ends in a traceback."""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import face_png
from PIL import Image
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import CurateError
from curate.ingest import ingest

runner = CliRunner()


def _png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> None:
    """A tiny PNG whose header declares a 10-gigapixel image."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """A folder with one example of every kind of bad input the issue lists."""
    root = tmp_path / "messy"
    for i in range(3):
        face_png(root / "happy" / f"ok_{i}.png", i)
        face_png(root / "sad" / f"ok_{i}.png", 100 + i)
    # corrupt / truncated JPEG
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        buf, "JPEG"
    )
    (root / "happy" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "happy" / "zero.jpg").write_bytes(b"")
    (root / "sad" / "text.jpg").write_text("this is not an image\n")
    face_png(root / "sad" / "alpha.png", 7, mode="RGBA")
    Image.fromarray(np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100).save(
        root / "happy" / "deep16.png"
    )
    Image.new("CMYK", (20, 20), (10, 20, 30, 40)).save(root / "sad" / "cmyk.jpg")
    _png_bomb(root / "happy" / "bomb.png")
    unreadable = face_png(root / "sad" / "locked.png", 8)
    os.chmod(unreadable, 0)
    face_png(root / "happy" / "ünïcode name with spaces.png", 9)
    # exact duplicate of ok_0 in the same class
    (root / "happy" / "copy_of_ok_0.png").write_bytes((root / "happy" / "ok_0.png").read_bytes())
    (root / "happy" / ".DS_Store").write_bytes(b"junk")
    yield root
    os.chmod(unreadable, 0o644)


def _status(df: pd.DataFrame, name: str) -> str:
    row = df[df["rel_path"].str.endswith(name)]
    assert len(row) == 1, name
    return str(row["status"].iloc[0])


def test_every_bad_input_gets_a_status(messy: Path) -> None:
    df = ingest(messy, workers=1)
    assert _status(df, "truncated.jpg") == "corrupt"
    assert _status(df, "zero.jpg") == "empty_file"
    assert _status(df, "text.jpg") == "not_an_image"
    assert _status(df, "alpha.png") == "ok"
    assert _status(df, "deep16.png") == "ok"
    assert _status(df, "cmyk.jpg") == "ok"
    assert _status(df, "bomb.png") == "too_large"
    if os.geteuid() != 0:  # root reads anything: the permission case only exists for users
        assert _status(df, "locked.png") == "unreadable"
    assert _status(df, "ünïcode name with spaces.png") == "ok"
    # the first of two byte-identical files (sorted order: the copy) stays, the other points at it
    keeper = df.loc[df["rel_path"].eq("happy/copy_of_ok_0.png"), "image_id"].iloc[0]
    assert _status(df, "copy_of_ok_0.png") == "ok"
    assert _status(df, "happy/ok_0.png") == f"duplicate_of:{keeper}"
    # hidden files are not images of the dataset
    assert not df["rel_path"].str.contains(".DS_Store", regex=False).any()
    # one row per file, every non-ok row explains itself
    assert len(df) == 16
    assert df.loc[df["status"].ne("ok"), "detail"].notna().all()
    assert df["image_id"].tolist() == list(range(len(df)))
    modes = dict(zip(df["rel_path"], df["mode"], strict=True))
    assert modes["sad/alpha.png"] == "RGBA" and modes["sad/cmyk.jpg"] == "CMYK"


def test_unreadable_permissions_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from curate.ingest import validate_file

    f = face_png(tmp_path / "x.png", 1)
    if (
        os.geteuid() == 0
    ):  # root reads mode-000 files, so make the read fail like it would for a user
        ingest_module = sys.modules["curate.ingest"]  # the module; curate.ingest is the function
        real = ingest_module.read_image_file

        def deny(path: str, max_pixels: int) -> bytes:
            if Path(path) == f:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, max_pixels)

        monkeypatch.setattr(ingest_module, "read_image_file", deny)
    else:
        os.chmod(f, 0)
    res = validate_file(str(f))
    os.chmod(f, 0o644)
    assert res.status == "unreadable"
    assert "chmod" in (res.detail or "")


def test_bad_folder_through_cli_has_no_traceback(messy: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["build-tuples", str(messy), "--out", str(tmp_path / "out"), "--workers", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    assert "excluded" in res.output and "corrupt" in res.output
    images = pd.read_parquet(tmp_path / "out" / "images.parquet")
    assert len(images) == 16


def test_stable_ids_and_parallel_equals_serial(make_folder, tmp_path: Path) -> None:
    root = make_folder({"happy": 150, "sad": 150})
    a = ingest(root, workers=1)
    b = ingest(root, workers=2)
    pd.testing.assert_frame_equal(a, b)


def test_split_layout_detected(tmp_path: Path, make_folder) -> None:
    root = tmp_path / "ds"
    make_folder({"happy": 2, "sad": 2}, root=root / "train")
    make_folder({"happy": 2, "sad": 2}, root=root / "val", start_seed=50)
    df = ingest(root, workers=1)
    assert sorted(df["split"].unique()) == ["train", "val"]
    assert sorted(df["label"].unique()) == ["happy", "sad"]


def test_manifest_relative_paths_extra_columns_and_duplicates(tmp_path: Path) -> None:
    for i in range(2):
        face_png(tmp_path / "imgs" / f"h{i}.png", i)
        face_png(tmp_path / "imgs" / f"s{i}.png", 10 + i)
    m = tmp_path / "m.csv"
    m.write_text(
        "path,label,subject,true_label\n"
        "imgs/h0.png, Happy ,p1,happy\n"
        "imgs/h1.png,HAPPY,p2,happy\n"
        "imgs/s0.png,sad,p1,sad\n"
        "imgs/s1.png,sad,p2,sad\n"
        "imgs/h0.png,happy,p1,happy\n"
        "imgs/nope.png,sad,p3,sad\n"
        "imgs/s1.png,,p2,sad\n"
    )
    df = ingest(m, workers=1)
    assert df["status"].tolist() == ["ok", "ok", "ok", "ok", "duplicate_row", "missing", "no_label"]
    assert df["label"].tolist()[:4] == ["happy", "happy", "sad", "sad"]  # stripped, lower-cased
    assert df["true_label"].tolist()[0] == "happy"
    assert "image_id 0" in df["detail"].iloc[4]
    assert Path(df["path"].iloc[0]).is_absolute()


def test_manifest_without_label_column_names_columns_and_option(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("file,emotion\na.png,happy\n")
    with pytest.raises(CurateError) as e:
        ingest(m)
    assert (
        "'path'" in str(e.value)
        and "file, emotion" in str(e.value)
        and "--path-column" in str(e.value)
    )
    m.write_text("path,emotion\na.png,happy\n")
    with pytest.raises(CurateError) as e:
        ingest(m)
    assert (
        "'label'" in str(e.value)
        and "path, emotion" in str(e.value)
        and "--label-column" in str(e.value)
    )
    df = ingest(m, label_column="emotion")
    assert df["status"].tolist() == ["missing"]


def test_parquet_manifest(tmp_path: Path) -> None:
    face_png(tmp_path / "a.png", 1)
    pd.DataFrame({"file": ["a.png"], "y": ["happy"]}).to_parquet(tmp_path / "m.parquet")
    df = ingest(tmp_path / "m.parquet", path_column="file", label_column="y")
    assert df["status"].tolist() == ["ok"] and df["width"].tolist() == [24]


@pytest.mark.parametrize("case", ["missing_manifest", "empty_folder", "single_class"])
def test_clear_errors(case: str, tmp_path: Path, make_folder) -> None:
    if case == "missing_manifest":
        args, expect = [str(tmp_path / "nope.csv")], "source not found"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args, expect = [str(tmp_path / "empty")], "no class folders"
    else:
        args, expect = [str(make_folder({"happy": 3}))], "at least two classes"
    res = runner.invoke(app, ["build-tuples", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert expect in res.output
    assert "Traceback" not in res.output
    if case == "single_class":  # statuses are still written for inspection
        assert len(pd.read_parquet(tmp_path / "o" / "images.parquet")) == 3


def test_images_table_round_trips_parquet(messy: Path, tmp_path: Path) -> None:
    df = ingest(messy, workers=1)
    df.to_parquet(tmp_path / "i.parquet", index=False)
    back = pd.read_parquet(tmp_path / "i.parquet")
    assert back["image_id"].dtype == np.int64
    assert back.astype(str).equals(df.astype(str))
