"""`curate export`: ImageFolder of symlinks or copies, CSV/Parquet manifests, never clobbering OUT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import CurateError
from curate.export import export


def _screen_dir(tmp_path: Path) -> Path:
    """A screen output folder with a hand-written images_suspect.parquet over real files.

    Rows 0/1 (happy) and 3/4 (sad) share a file name from two source folders; row 2 is
    a side face; rows 1 and 4 are at or above suspicion 0.5.
    """
    plan = [
        ("happy", "a.png", 0.0, False),
        ("happy", "a.png", 0.6, False),
        ("sad", "c.png", 0.1, True),
        ("sad", "b.png", 0.49, False),
        ("sad", "b.png", 0.5, False),
    ]
    rows = []
    for i, (label, name, susp, face) in enumerate(plan):
        src = tmp_path / "src" / f"dir{i % 2}" / name
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(b"png %d" % i)
        rows.append(
            {
                "image_id": i,
                "path": str(src),
                "rel_path": f"dir{i % 2}/{name}",
                "label": label,
                "split": "train",
                "n_tuples": 10,
                "n_rejected": int(susp * 10),
                "suspicion": susp,
                "face_found": True,
                "yaw": 50.0 if face else 1.0,
                "occlusion": 0.0,
                "face_reject": face,
                "face_reason": "side_face" if face else None,
            }
        )
    d = tmp_path / "screen"
    d.mkdir()
    pd.DataFrame(rows).sort_values("suspicion", ascending=False).to_parquet(
        d / "images_suspect.parquet", index=False
    )
    return d


def test_imagefolder_of_symlinks_keeps_survivors_only(tmp_path):
    src = _screen_dir(tmp_path)
    res = export(src, tmp_path / "out", max_suspicion=0.5)
    # kept: 0 (happy, 0.0) and 3 (sad, 0.49); 1 and 4 too suspect, 2 a side face
    assert res.n_exported == 2 and res.n_suspect == 2 and res.n_face_rejected == 1
    assert res.per_label == {"happy": 1, "sad": 1}
    files = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert files == ["train/happy/a.png", "train/sad/b.png"]
    link = tmp_path / "out" / "train" / "sad" / "b.png"
    assert link.is_symlink() and os.readlink(link) == str(
        (tmp_path / "src" / "dir1" / "b.png").resolve()
    )
    assert link.read_bytes() == b"png 3"
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert record["counts"]["exported"] == 2 and record["params"]["format"] == "imagefolder"


def test_copy_and_name_collisions(tmp_path):
    src = _screen_dir(tmp_path)
    res = export(src, tmp_path / "out", max_suspicion=1.0, copy=True)
    assert res.n_exported == 4  # everything but the side face
    happy = tmp_path / "out" / "train" / "happy"
    sad = tmp_path / "out" / "train" / "sad"
    assert sorted(p.name for p in happy.iterdir()) == ["1_a.png", "a.png"]
    assert sorted(p.name for p in sad.iterdir()) == ["4_b.png", "b.png"]
    assert not any(p.is_symlink() for p in [*happy.iterdir(), *sad.iterdir()])
    assert (happy / "1_a.png").read_bytes() == b"png 1" and (sad / "b.png").read_bytes() == b"png 3"
    assert set(res.manifest["exported"]) == {
        "train/happy/a.png",
        "train/happy/1_a.png",
        "train/sad/b.png",
        "train/sad/4_b.png",
    }


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest_formats(tmp_path, fmt):
    src = _screen_dir(tmp_path)
    export(src, tmp_path / "out", max_suspicion=0.5, format=fmt)
    f = tmp_path / "out" / f"manifest.{fmt}"
    m = pd.read_csv(f) if fmt == "csv" else pd.read_parquet(f)
    assert list(m.columns) == ["image_id", "path", "rel_path", "label", "split", "suspicion"]
    assert m["image_id"].tolist() == [0, 3] and m["label"].tolist() == ["happy", "sad"]
    assert all(Path(p).is_file() for p in m["path"])
    assert not list((tmp_path / "out").rglob("*.png"))


def test_never_overwrites_a_non_empty_out_without_force(tmp_path):
    src = _screen_dir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    for force in (False, True):  # a folder curate did not make is never written, --force or not
        with pytest.raises(CurateError, match="is not empty .*holds no curate run"):
            export(src, out, force=force)
    assert sorted(p.name for p in out.iterdir()) == [".curate.lock", "precious.txt"]

    prev = tmp_path / "prev"
    export(src, prev, max_suspicion=1.0)
    with pytest.raises(CurateError, match=r"other settings \(max_suspicion: 1.0 -> 0.5\)") as err:
        export(src, prev, max_suspicion=0.5)
    assert "--force" in str(err.value)
    res = export(src, prev, max_suspicion=0.5, force=True)
    assert res.n_exported == 2 and len(list(prev.rglob("*.png"))) == 2
    assert (
        "replaced the previous export run" in res.notes[0]
        and "max_suspicion 1.0 -> 0.5" in res.notes[0]
    )
    again = export(src, prev, max_suspicion=0.5)  # the same settings re-export without --force
    assert again.n_exported == 2 and "same settings" in again.notes[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(src, empty, max_suspicion=0.5).n_exported == 2


def test_export_validates_options_and_inputs(tmp_path):
    src = _screen_dir(tmp_path)
    with pytest.raises(CurateError, match="unknown export format 'zip'"):
        export(src, tmp_path / "o", format="zip")
    with pytest.raises(CurateError, match="max-suspicion must be in"):
        export(src, tmp_path / "o", max_suspicion=0)
    with pytest.raises(CurateError, match="suspect-images table not found"):
        export(tmp_path / "nothing", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_export(tmp_path):
    src = _screen_dir(tmp_path)
    r = CliRunner().invoke(
        app,
        [
            "export",
            str(src),
            "--out",
            str(tmp_path / "o"),
            "--format",
            "csv",
            "--max-suspicion",
            "0.5",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "exported 2 images" in r.output and "happy: 1" in r.output
    again = CliRunner().invoke(app, ["export", str(src), "--out", str(tmp_path / "o")])
    assert again.exit_code == 2 and "--force" in again.output
    assert np.array_equal(pd.read_csv(tmp_path / "o" / "manifest.csv")["image_id"], [0, 3])


def test_valid_images_in_no_tuple_are_counted_and_exported_on_request(tmp_path):
    src = _screen_dir(tmp_path)
    suspect = pd.read_parquet(src / "images_suspect.parquet")
    extra = tmp_path / "src" / "lonely.png"
    extra.write_bytes(b"png lonely")
    images = pd.concat(
        [
            suspect[["image_id", "path", "rel_path", "label", "split"]].assign(status="ok"),
            pd.DataFrame(
                [
                    {
                        "image_id": 9,
                        "path": str(extra),
                        "rel_path": "lonely.png",
                        "label": "sad",
                        "split": "train",
                        "status": "ok",
                    },
                    {
                        "image_id": 10,
                        "path": str(extra),
                        "rel_path": "bad.png",
                        "label": "sad",
                        "split": "train",
                        "status": "corrupt",
                    },
                ]
            ),
        ]
    )
    build = tmp_path / "build"
    build.mkdir()
    images.to_parquet(build / "images.parquet", index=False)
    (src / "run.json").write_text(json.dumps({"params": {"build_dir": str(build)}}))
    res = export(src, tmp_path / "out", max_suspicion=0.5)
    assert res.n_unscreened == 1 and res.n_exported == 2
    res = export(src, tmp_path / "out2", max_suspicion=0.5, include_unscreened=True, format="csv")
    assert res.n_exported == 3
    assert 9 in pd.read_csv(tmp_path / "out2" / "manifest.csv")["image_id"].tolist()


def _label_screen_dir(tmp_path: Path) -> Path:
    """images_suspect.parquet as the label screen writes it: image 1 is a label suspect
    (looks like sad), image 2 a label suspect AND a side face, image 3 fine."""
    rows = []
    for i, (label, lab_rej, face_rej, susp) in enumerate(
        [
            ("happy", False, False, 0.1),
            ("happy", True, False, 0.95),
            ("sad", True, True, 0.9),
            ("sad", False, False, 0.3),
        ]
    ):
        src = tmp_path / "src" / f"{i}.png"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(b"png %d" % i)
        rows.append(
            {
                "image_id": i,
                "path": str(src),
                "rel_path": f"{i}.png",
                "label": label,
                "split": None,
                "suggested_label": "sad" if label == "happy" else "happy",
                "suspicion": susp,
                "suggested_confidence": 0.9 if lab_rej else 0.2,
                "label_reject": lab_rej,
                "label_reason": "label_suspect" if lab_rej else None,
                "face_reject": face_rej,
                "face_reason": "side_face" if face_rej else None,
            }
        )
    d = tmp_path / "screen"
    d.mkdir()
    pd.DataFrame(rows).to_parquet(d / "images_suspect.parquet", index=False)
    return d


def test_default_export_leaves_out_every_image_screen_reject(tmp_path):
    src = _label_screen_dir(tmp_path)
    res = export(src, tmp_path / "out", format="csv")
    assert res.manifest["image_id"].tolist() == [0, 3]
    assert res.n_image_rejected == {"faces": 1, "label": 2} and res.n_relabelled == 0
    # --max-suspicion also drops by the label suspicion
    assert export(src, tmp_path / "o2", format="csv", max_suspicion=0.2).manifest[
        "image_id"
    ].tolist() == [0]


def test_relabel_keeps_label_suspects_under_their_suggested_label(tmp_path):
    src = _label_screen_dir(tmp_path)
    res = export(src, tmp_path / "out", format="csv", relabel=True)
    m = res.manifest.set_index("image_id")
    # image 1 is relabelled; image 2 stays out (a side face too)
    assert m.index.tolist() == [0, 1, 3] and res.n_relabelled == 1
    assert m.loc[1, "label"] == "sad" and m.loc[1, "original_label"] == "happy"
    assert m.loc[0, "label"] == m.loc[0, "original_label"] == "happy"
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert record["params"]["relabel"] is True and record["counts"]["relabelled"] == 1
    r = CliRunner().invoke(
        app, ["export", str(src), "--out", str(tmp_path / "cli"), "--format", "csv", "--relabel"]
    )
    assert r.exit_code == 0 and "relabelled 1 image" in r.output


def test_relabel_only_above_the_confidence_gate(tmp_path):
    src = _label_screen_dir(tmp_path)
    table = pd.read_parquet(src / "images_suspect.parquet")
    table.loc[table["image_id"] == 1, "suggested_confidence"] = 0.5  # below the default gate
    table.to_parquet(src / "images_suspect.parquet", index=False)
    res = export(src, tmp_path / "out", format="csv", relabel=True)
    assert res.n_relabelled == 0 and res.manifest["image_id"].tolist() == [
        0,
        3,
    ]  # image 1 stays out
    kept = export(src, tmp_path / "keep", format="csv", relabel=True, relabel_rest="keep").manifest
    assert kept["image_id"].tolist() == [0, 1, 3]
    assert kept.set_index("image_id").loc[1, "label"] == "happy"  # kept under its own label
    low = export(src, tmp_path / "low", format="csv", relabel=True, relabel_confidence=0.5)
    assert low.n_relabelled == 1 and low.manifest.set_index("image_id").loc[1, "label"] == "sad"
    record = json.loads((tmp_path / "low" / "export.json").read_text())
    assert record["params"]["relabel_confidence"] == 0.5
    with pytest.raises(CurateError, match="relabel-confidence"):
        export(src, tmp_path / "bad", relabel=True, relabel_confidence=1.5)
    with pytest.raises(CurateError, match="relabel-rest"):
        export(src, tmp_path / "bad", relabel=True, relabel_rest="maybe")


def test_relabel_gate_matches_a_brute_force_reference():
    from curate.export import relabel_gate

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        label_only = rng.random(n) < 0.5
        conf = rng.choice([np.nan, 0.0, 0.3, 0.7, 0.70000001, 1.0], n)
        t = float(rng.choice([0.0, 0.3, 0.7, 1.0]))
        want = [bool(lo) and c == c and c >= t for lo, c in zip(label_only, conf, strict=True)]
        assert relabel_gate(label_only, conf, t).tolist() == want


def test_screen_verdicts_split_label_suspects_by_a_per_row_reference():
    """``screen_verdicts`` on a table it can be checked by hand: a label suspect that no
    other screen rejected is relabelled when confident enough, else kept (relabel_rest
    keep) or left rejected; one a face screen also rejected is never relabelled."""
    from curate.export import screen_verdicts

    table = pd.DataFrame(
        {
            "image_id": range(6),
            "label_reject": [True, True, True, False, False, True],
            "face_reject": [False, False, True, True, False, False],
            "suspicion": [0.9, 0.8, 0.9, 0.1, 0.6, 0.7],
            "suggested_confidence": [0.9, 0.2, 0.9, np.nan, 0.9, np.nan],
        }
    )
    for rest in ("reject", "keep"):
        v = screen_verdicts(
            table, max_suspicion=0.75, relabel=True, relabel_confidence=0.6, relabel_rest=rest
        )
        assert v.suspect.tolist() == [True, True, True, False, False, False]
        assert v.relabelled.tolist() == [True, False, False, False, False, False]
        kept_rest = [False, True, False, False, False, True] if rest == "keep" else [False] * 6
        assert v.kept_rest.tolist() == kept_rest
        label = [
            lr and not (r or k)
            for lr, r, k in zip(table["label_reject"], v.relabelled, kept_rest, strict=True)
        ]
        assert v.rejected_by["label"].tolist() == label
        assert v.face_bad.tolist() == table["face_reject"].tolist()
        assert v.kept().tolist() == [
            not (s or lb or f)
            for s, lb, f in zip(v.suspect, label, table["face_reject"], strict=True)
        ]
    plain = screen_verdicts(table)
    assert not plain.suspect.any() and not plain.relabelled.any()
    assert plain.rejected_by["label"].tolist() == table["label_reject"].tolist()
    with pytest.raises(CurateError, match="no label suspicion"):
        screen_verdicts(table.drop(columns="suspicion"), relabel=True)
    with pytest.raises(CurateError, match="no suggested_confidence"):
        screen_verdicts(table.drop(columns="suggested_confidence"), relabel=True)


def test_max_suspicion_needs_the_label_screen(tmp_path):
    src = _screen_dir(tmp_path)
    table = pd.read_parquet(src / "images_suspect.parquet").drop(columns="suspicion")
    table.to_parquet(src / "images_suspect.parquet", index=False)
    with pytest.raises(CurateError, match="label screen did not run"):
        export(src, tmp_path / "o", relabel=True)
