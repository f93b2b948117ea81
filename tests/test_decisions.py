"""A curator's decisions.csv: checked row by row (curate.decisions), applied by `curate export --decisions`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_export import _label_screen_dir  # noqa: I001
from typer.testing import CliRunner

from curate.cli import app
from curate.decisions import read_decisions
from curate.errors import CurateError
from curate.export import export
from curate.io import file_sha256

HEADER = "image_id,path,decision,label,verdict,suspicion\n"


def _write(tmp_path: Path, body: str, name: str = "decisions.csv") -> Path:
    f = tmp_path / name
    f.write_text(HEADER + body, encoding="utf-8")
    return f


def _images(src: Path) -> pd.DataFrame:
    return pd.read_parquet(src / "images_suspect.parquet")


def test_export_applies_keep_drop_and_relabel(tmp_path):
    # the screens keep 0 and 3; 1 is a label suspect, 2 a label suspect and a side face
    src = _label_screen_dir(tmp_path)
    dec = _write(
        tmp_path,
        "0,,drop,,kept,0.1\n"
        f"1,{tmp_path / 'src' / '1.png'},relabel,sad,label_suspect,0.95\n"
        "2,2.png,keep,,label_suspect;side_face,0.9\n",
    )
    res = export(src, tmp_path / "out", format="csv", decisions=dec)
    m = res.manifest.set_index("image_id")
    assert m.index.tolist() == [1, 2, 3]  # 0 dropped, 2 put back, 3 follows the screens
    assert m.loc[1, "label"] == "sad" and m.loc[1, "original_label"] == "happy"
    assert m.loc[2, "label"] == m.loc[2, "original_label"] == "sad"
    assert m["decision"].tolist() == ["relabel", "keep", ""]
    assert res.n_relabelled == 1
    on_disk = pd.read_csv(tmp_path / "out" / "manifest.csv", keep_default_na=False)
    assert on_disk["label"].tolist() == ["sad", "sad", "sad"]
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert record["inputs"]["decisions_sha256"] == file_sha256(dec)
    assert record["counts"]["decisions"] == {
        "keep": 1,
        "drop": 1,
        "relabel": 1,
        "undecided": 0,
        "kept_against_screens": 1,
        "dropped_against_screens": 1,
    }
    assert record["counts"]["exported"] == 3
    # another decisions file is another setting: it needs --force
    other = _write(tmp_path, "0,,keep,,,\n", name="other.csv")
    with pytest.raises(CurateError, match="force"):
        export(src, tmp_path / "out", format="csv", decisions=other)
    assert export(src, tmp_path / "out", format="csv", decisions=other, force=True).manifest[
        "image_id"
    ].tolist() == [0, 3]


def test_imagefolder_export_puts_relabelled_images_under_the_new_label(tmp_path):
    src = _label_screen_dir(tmp_path)
    dec = _write(tmp_path, "1,,relabel,sad,,\n3,,drop,,,\n")
    export(src, tmp_path / "out", decisions=dec)
    files = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    )
    assert files == ["happy/0.png", "sad/1.png"]


def test_decisions_override_relabel_and_max_suspicion(tmp_path):
    src = _label_screen_dir(tmp_path)
    # --relabel would move 1 to sad; the curator keeps it as happy. --max-suspicion 0.2 drops 3; kept back
    dec = _write(tmp_path, "1,,keep,,,\n3,,keep,,,\n")
    res = export(
        src, tmp_path / "out", format="csv", relabel=True, max_suspicion=0.2, decisions=dec
    )
    m = res.manifest.set_index("image_id")
    assert m.index.tolist() == [0, 1, 3] and m.loc[1, "label"] == "happy"


def test_reader_accepts_paths_quoted_formulas_repeats_and_empty_decisions(tmp_path):
    src = _label_screen_dir(tmp_path)
    images = _images(src)
    dec = _write(
        tmp_path,
        "\ufeff" * 0 + ",3.png,drop,,,\n"  # a path alone names the image
        "1,,relabel,happy,,\n"  # relabel to its own label: keep
        "2,,Drop,,,\n2,,drop,,,\n"  # a repeated row counts once
        "0,,,,,\n"  # no decision
        "\n",
    )
    d = read_decisions(dec, images)
    assert d.table.to_dict("list") == {
        "image_id": [1, 2, 3],
        "decision": ["keep", "drop", "drop"],
        "label": ["", "", ""],
    }
    assert d.counts == {"keep": 1, "drop": 2, "relabel": 0, "undecided": 1}
    # a label the report wrote formula-safe ('=x) reads back as the class =x
    images.loc[images["image_id"] == 3, "label"] = "=x"
    d = read_decisions(_write(tmp_path, "0,,relabel,'=x,,\n", "q.csv"), images)
    assert d.relabels() == {0: "=x"}
    # a BOM (Excel's CSV UTF-8) is fine
    bom = tmp_path / "bom.csv"
    bom.write_bytes(("\ufeff" + HEADER + "0,,drop,,,\n").encode("utf-8"))
    assert read_decisions(bom, images).ids("drop") == {0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("0,,keep,,,\n9,,drop,,,\n", r"line 3: image_id 9 is not an image of this screen run"),
        (
            "0,,keep,,,\n,nowhere.png,drop,,,\n",
            r"line 3: path 'nowhere.png' is not an image of this screen run",
        ),
        (
            "1,0.png,drop,,,\n",
            r"line 2: image_id 1 is '.*1.png' in this screen run, the decisions file says '0.png'",
        ),
        (
            "1,,relabel,joyful,,\n",
            r"line 2 \(image 1\): label 'joyful' is not a class of this data \(happy, sad\)",
        ),
        ("1,,relabel,,,\n", r"line 2 \(image 1\): relabel without a label"),
        (
            "0,,maybe,,,\n",
            r"line 2 \(image 0\): decision 'maybe' is not keep, drop, relabel or empty",
        ),
        ("0,,keep,sad,,\n", r"line 2 \(image 0\): a label \('sad'\) on a keep row"),
        (
            "0,,keep,,,\n1,,drop,,,\n0,,drop,,,\n",
            r"lines 2 and 4 disagree about image 0: keep vs drop",
        ),
        ("x1,,keep,,,\n", r"line 2: image_id 'x1' is not a whole number"),
        (",,keep,,,\n", r"line 2: neither image_id nor path is given"),
    ],
)
def test_bad_rows_are_errors_naming_the_line(tmp_path, body, message):
    src = _label_screen_dir(tmp_path)
    dec = _write(tmp_path, body)
    with pytest.raises(CurateError, match=message) as err:
        read_decisions(dec, _images(src))
    assert err.value.hint
    with pytest.raises(CurateError, match=message):  # export checks before it writes anything
        export(src, tmp_path / "out", decisions=dec)
    assert not (tmp_path / "out").exists()


def test_missing_columns_and_files(tmp_path):
    src = _label_screen_dir(tmp_path)
    f = tmp_path / "d.csv"
    f.write_text("id,what\n0,keep\n")
    with pytest.raises(CurateError, match="needs the columns decision and image_id"):
        read_decisions(f, _images(src))
    with pytest.raises(CurateError, match="decisions file not found"):
        read_decisions(tmp_path / "nope.csv", _images(src))
    f.write_bytes(b"image_id,decision\n0,\xff\n")
    with pytest.raises(CurateError, match="not UTF-8"):
        read_decisions(f, _images(src))


def test_cli_export_with_decisions(tmp_path):
    src = _label_screen_dir(tmp_path)
    dec = _write(tmp_path, "2,,keep,,,\n0,,drop,,,\n")
    r = CliRunner().invoke(
        app,
        [
            "export",
            str(src),
            "--out",
            str(tmp_path / "o"),
            "--format",
            "csv",
            "--decisions",
            str(dec),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (
        "curator's decisions: 1 keep (1 of them rejected by the screens), 1 drop, 0 relabel"
        in " ".join(r.output.split())
    )
    bad = _write(tmp_path, "7,,keep,,,\n", "bad.csv")
    r = CliRunner().invoke(
        app, ["export", str(src), "--out", str(tmp_path / "o2"), "--decisions", str(bad)]
    )
    assert r.exit_code == 2 and "image_id 7 is not an image of this screen run" in r.output


def test_hf_export_marks_the_curators_decisions(tmp_path):
    src = _label_screen_dir(tmp_path)
    dec = _write(tmp_path, "2,,keep,,,\n0,,drop,,,\n1,,relabel,sad,,\n")
    m = export(src, tmp_path / "hf", format="hf", decisions=dec).manifest.set_index("image_id")
    assert m["kept"].to_dict() == {0: False, 1: True, 2: True, 3: True}
    assert m["decision"].to_dict() == {0: "drop", 1: "relabel", 2: "keep", 3: ""}
    assert m.loc[1, "label"] == "sad" and m.loc[1, "original_label"] == "happy"
    meta = pd.read_parquet(tmp_path / "hf" / "train" / "metadata.parquet")
    assert set(meta.columns) >= {"decision", "original_label", "kept"}
