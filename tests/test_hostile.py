"""Hostile inputs and faults (issue 16): every case of the trial, rebuilt in tmp_path.

Each test is named after the item of ``docs/security.md`` it guards. The promise: no
input can hang curate, run code, reach the network or write outside ``--out``; nothing
is lost or silently replaced; an interrupted run resumes to the same result.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from builders import make_build, write_embeddings
from conftest import face_png
from test_train import make_build as make_train_build
from test_train import tiny_config
from typer.testing import CliRunner

from curate.build import build_tuples
from curate.cli import app
from curate.errors import CurateError
from curate.export import export, folder_name
from curate.ingest import ingest
from curate.outdir import claim_folder
from curate.screen import screen
from curate.train import loop

torch.set_num_threads(1)
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res


def _screen(build: Path, out: Path, emb: Path, **kw):
    return screen(build, out, embeddings=emb, skip_faces_screen=True, **kw)


@pytest.fixture
def screened(tmp_path: Path):
    """A build folder (planted embeddings) and a complete screen folder of it."""
    build, images, emb = make_build(tmp_path, per_class=4, per_anchor=2)
    emb_file = write_embeddings(tmp_path / "e.parquet", images, emb)
    out = tmp_path / "screen"
    _screen(build, out, emb_file)
    return build, out, emb_file


def _mkfifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


# ============================================================================ 1. special files


def test_1_fifo_and_device_files_get_a_status_and_never_block(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(3):
        face_png(root / "happy" / f"{i}.png", i)
        face_png(root / "sad" / f"{i}.png", 10 + i)
    os.symlink("/dev/zero", root / "happy" / "zero.jpg")
    _mkfifo(root / "happy" / "fifo.jpg")
    images = ingest(root, workers=1)
    by_name = dict(zip(images["rel_path"], images["status"], strict=True))
    assert by_name["happy/zero.jpg"] == "not_a_file" and by_name["happy/fifo.jpg"] == "not_a_file"
    detail = images.set_index("rel_path").loc["happy/fifo.jpg", "detail"]
    assert (
        "FIFO" in detail
        and "character device" in images.set_index("rel_path").loc["happy/zero.jpg", "detail"]
    )
    assert (images["status"] == "ok").sum() == 6

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n/dev/urandom,happy\n{root / 'happy' / '0.png'},happy\n")
    rows = ingest(manifest, workers=1)
    assert rows["status"].tolist() == ["not_a_file", "ok"]


def test_1_cli_build_tuples_and_faces_finish_with_a_fifo(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(3):
        face_png(root / "happy" / f"{i}.png", i)
        face_png(root / "sad" / f"{i}.png", 10 + i)
    _mkfifo(root / "happy" / "fifo.jpg")
    res = _cli("build-tuples", root, "--out", tmp_path / "b", "--workers", "1")
    assert res.exit_code == 0 and "not_a_file" in res.output
    flat = tmp_path / "flat"
    _mkfifo(flat / "fifo.png")
    os.symlink("/dev/zero", flat / "zero.png")
    from curate.faces.run import faces_for_source

    faces = faces_for_source(flat, tmp_path / "faces.parquet", workers=1).faces
    assert not faces["face_found"].any()
    assert faces["detail"].str.startswith("not_a_file").all()


def test_1_image_decoder_and_hasher_refuse_special_files_without_blocking(tmp_path: Path) -> None:
    from curate.images import load_image
    from curate.io import NotARegularFile, file_sha256, read_capped

    fifo = _mkfifo(tmp_path / "x.png")
    with pytest.raises(CurateError, match="not_a_file: .*FIFO"):
        load_image(fifo)
    with pytest.raises(NotARegularFile):
        file_sha256(fifo)
    with pytest.raises(CurateError, match="not_a_file: .*character device"):
        load_image("/dev/zero")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 1000)
    with pytest.raises(OSError, match="more than the limit of 999"):
        read_capped(big, 999)
    with pytest.raises(CurateError, match="cannot read manifest"):
        ingest(_mkfifo(tmp_path / "m.csv"))


# ============================================================================ 2. untrusted run folders


def _run_folder(tmp_path: Path, **changes: object) -> Path:
    """A copy of the bundled run folder with config values replaced (None deletes)."""
    from curate.models import default_model_dir

    src = Path(default_model_dir())
    run = tmp_path / "evil_run"
    run.mkdir(exist_ok=True)
    (run / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    cfg = json.loads((src / "config.json").read_text())
    for key, value in changes.items():
        target = cfg["data_config"] if key in cfg["data_config"] else cfg
        target[key] = value
    (run / "config.json").write_text(json.dumps(cfg))
    return run


@pytest.mark.parametrize(
    "backbone",
    ["hf-hub:evil/model", "local-dir:/any/path", "timm/resnet18", "../../x", "resnet18 ", 7],
)
def test_2_run_config_never_names_a_model_source(
    tmp_path: Path, backbone: object, monkeypatch
) -> None:
    import timm

    def no_network(*a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("timm.create_model was reached")

    monkeypatch.setattr(timm, "create_model", no_network)
    from curate.backbone import load_backbone

    run = _run_folder(tmp_path, backbone=backbone)
    with pytest.raises(CurateError, match="curate accepts plain timm model names only") as err:
        load_backbone(None, str(run))
    if isinstance(backbone, str) and ":" in backbone:
        assert "source prefix" in err.value.message
    with pytest.raises(CurateError, match="source prefix"):  # on the command line too
        load_backbone("hf-hub:evil/model", "none")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("embed_dim", -1, "embed_dim must be a whole number"),
        ("embed_dim", 10**12, "embed_dim must be a whole number"),
        ("embed_dim", "128", "embed_dim must be a whole number"),
        ("embed_dim", True, "embed_dim must be a whole number"),
        ("input_size", [1, 0, 64], "input_size must be"),
        ("input_size", [3, 64, 64], "input_size must be"),
        ("interpolation", "evil", "interpolation must be one of"),
        ("mean", [0.1, 0.2], "mean must be a list of 1"),
        ("std", [0.0], "std must be positive"),
        ("std", ["0.2"], "std must be a list of 1"),
        ("scale", float("nan"), "scale must be a positive finite number"),
        ("scale", 0, "scale must be a positive finite number"),
        ("scale", "1.0", "scale must be a positive finite number"),
        ("crop_pct", 1e-9, "crop_pct must be"),
        ("crop_mode", "evil", "crop_mode must be one of"),
        ("classes", ["a", "a"], "classes must be a list"),
        ("classes", "happy", "classes must be a list"),
        ("in_chans", 10**9, "in_chans must be"),
        ("format", "curate-finetune-run/99", "format must be"),
    ],
)
def test_2_and_17_every_run_config_value_is_checked_with_a_clear_error(
    tmp_path: Path, key: str, value: object, words: str
) -> None:
    from curate.runs import load_run

    run = _run_folder(tmp_path, **{key: value})
    with pytest.raises(CurateError, match=words) as err:
        load_run(run)
    assert "config.json" in err.value.message and "trust" in (err.value.hint or "")
    assert "identical" not in err.value.message


def test_2_the_bundled_model_passes_the_checks() -> None:
    from curate.models import default_model_dir
    from curate.runs import read_run_config

    assert read_run_config(default_model_dir())["backbone"] == "resnet10t"


# ============================================================================ 3. terminal escapes


def test_3_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    root = tmp_path / "data"
    evil = "\x1b]8;;mailto:x@evil.example\x1b\\click\x1b]8;;\x1b\\\x1b[2J"
    for i in range(3):
        face_png(root / "happy" / f"{i}.png", i)
        face_png(root / f"sad{evil}" / f"{i}.png", 10 + i)
    (root / "happy" / f"bad{evil}.png").write_bytes(b"not an image")
    res = _cli("build-tuples", root, "--out", tmp_path / "b", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\\x1b]8;;mailto:x@evil.example" in res.output
    bad = _cli("build-tuples", tmp_path / f"nowhere{evil}", "--out", tmp_path / "c")
    assert bad.exit_code == 2 and "\x1b" not in bad.output and "\\x1b[2J" in bad.output


def test_3_safe_escapes_every_control_and_format_character() -> None:
    from curate.cli._app import safe

    assert (
        safe("a\x1b[31mb\x07\x08\r\x7f\x9b\u202etxt[red]")
        == "a\\x1b[31mb\\x07\\x08\\x0d\\x7f\\x9b\\u202etxt\\[red]"
    )
    assert (
        safe("two\nlines", newlines=True) == "two\nlines" and safe("two\nlines") == "two\\x0alines"
    )
    assert safe("joie é ✓") == "joie é ✓"


# ============================================================================ 4. CSV formulas


def test_4_csv_export_neutralises_formula_cells(tmp_path: Path) -> None:
    from curate.export import csv_safe

    table = pd.DataFrame(
        {
            "label": ['=hyperlink("http://x")', "+cmd|' /c calc'!a0", "-2", "@sum", "\tx", "ok"],
            "suspicion": [-0.5, 0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    out = csv_safe(table)
    assert out["label"].tolist() == [
        '\'=hyperlink("http://x")',
        "'+cmd|' /c calc'!a0",
        "'-2",
        "'@sum",
        "'\tx",
        "ok",
    ]
    assert out["suspicion"].tolist() == table["suspicion"].tolist()  # numbers stay numbers
    build, screen_dir = _export_source(tmp_path, ["=1+1", "+cmd", "happy"])
    export(screen_dir, tmp_path / "csv", format="csv", max_suspicion=1.0)
    labels = pd.read_csv(tmp_path / "csv" / "manifest.csv")["label"].tolist()
    assert labels == ["'=1+1", "'+cmd", "happy"]


# ============================================================================ 5, 10, 11. output folders


def test_5_out_policy_refuses_root_files_inputs_and_foreign_folders(
    tmp_path: Path, screened
) -> None:
    build, out, emb = screened
    for bad, words in (
        ("/", "root folder"),
        (emb, "exists and is not a folder"),
        (build, "build folder itself"),
    ):
        with pytest.raises(CurateError, match=words):
            _screen(build, bad, emb)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "report.html").write_text("my own report")
    with pytest.raises(CurateError, match="is not empty .*holds no curate run"):
        _screen(build, foreign, emb, force=True)
    assert (foreign / "report.html").read_text() == "my own report"
    with pytest.raises(
        CurateError, match="holds the output of `curate screen`, not of `curate build-tuples`"
    ):
        build_tuples(build.parent / "images", out)
    assert json.loads((out / "run.json").read_text())["command"] == "screen"
    with pytest.raises(CurateError, match="root folder"):
        with claim_folder("/", "export", settings={}):
            pass
    res = _cli("screen", build, "--out", emb, "--embeddings", emb, "--skip-faces-screen")
    assert res.exit_code == 2 and "exists and is not a folder" in res.output


def test_5_same_settings_rerun_other_settings_need_force_and_say_what_they_replace(
    tmp_path: Path, screened
) -> None:
    build, out, emb = screened
    again = _screen(build, out, emb)
    assert "same settings" in again.notes[0] and "scores.parquet" in again.notes[0]
    with pytest.raises(CurateError, match=r"other settings \(alpha_pos: 0.05 -> 0.2\)") as err:
        _screen(build, out, emb, alpha_pos=0.2)
    assert "--force" in (err.value.hint or "")
    replaced = _screen(build, out, emb, alpha_pos=0.2, force=True)
    assert "alpha_pos 0.05 -> 0.2" in replaced.notes[0]
    assert json.loads((out / "run.json").read_text())["params"]["alpha_pos"] == 0.2
    res = _cli(
        "screen",
        build,
        "--out",
        out,
        "--embeddings",
        emb,
        "--skip-faces-screen",
        "--alpha-pos",
        "0.1",
    )
    assert res.exit_code == 2 and "--force" in res.output
    res = _cli(
        "screen",
        build,
        "--out",
        out,
        "--embeddings",
        emb,
        "--skip-faces-screen",
        "--alpha-pos",
        "0.1",
        "--force",
        "--no-report",
    )
    assert res.exit_code == 0 and "replaced the previous screen run" in res.output


def test_10_a_killed_screen_leaves_a_folder_that_report_export_and_finetune_refuse(
    tmp_path: Path, screened
) -> None:
    build, out, emb = screened
    (out / "report.html").write_text("the old report")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from curate.screen import screen
        s = sys.modules['curate.screen']
        real = s.write_parquet
        def write_then_die(df, path):
            real(df, path)
            os.kill(os.getpid(), signal.SIGKILL)
        s.write_parquet = write_then_die
        screen({str(build)!r}, {str(out)!r}, embeddings={str(emb)!r}, skip_faces_screen=True)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["state"] == "running" and "counts" not in record
    assert not (out / "report.html").exists()  # the old report went before anything new was written
    from curate.report import write_report
    from curate.train.data import load_training_data

    for attempt in (
        lambda: write_report(out),
        lambda: export(out, tmp_path / "x"),
        lambda: load_training_data(out),
    ):
        with pytest.raises(CurateError, match="incomplete `curate screen` run: it was killed"):
            attempt()
    assert not (tmp_path / "x").exists()
    _screen(build, out, emb)  # the same command completes it
    assert json.loads((out / "run.json").read_text())["state"] == "complete"
    write_report(out)


def test_10_a_failed_build_is_marked_and_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    face_png(root / "happy" / "0.png", 0)  # one image: no tuple can be built
    face_png(root / "sad" / "0.png", 1)
    with pytest.raises(CurateError):
        build_tuples(root, tmp_path / "b", workers=1)
    assert (tmp_path / "b" / "images.parquet").is_file()
    assert json.loads((tmp_path / "b" / "run.json").read_text())["state"] == "failed"
    with pytest.raises(CurateError, match="incomplete `curate build-tuples` run: it failed"):
        screen(tmp_path / "b", tmp_path / "s", skip_faces_screen=True)


def test_11_a_second_run_into_a_locked_out_stops(tmp_path: Path, screened) -> None:
    build, out, emb = screened
    with claim_folder(out, "screen", settings={}, force=True):  # another run holds the folder
        with pytest.raises(
            CurateError, match="being written by another curate command .*curate screen"
        ):
            _screen(build, out, emb)
        from curate.report import write_report

        with pytest.raises(CurateError, match="being written by `curate screen` right now"):
            write_report(out)
    _screen(build, out, emb, force=True)


def test_5_faces_output_file_is_never_a_foreign_file_or_its_own_input(tmp_path: Path) -> None:
    from curate.faces.run import faces_for_source

    flat = tmp_path / "flat"
    face_png(flat / "a.png", 0)
    manifest = tmp_path / "paths.parquet"
    pd.DataFrame({"path": [str(flat / "a.png")]}).to_parquet(manifest)
    mine = tmp_path / "mine.parquet"
    mine.write_bytes(b"my own table")
    with pytest.raises(CurateError, match="exists and was not written by curate faces"):
        faces_for_source(flat, mine, workers=1, force=True)
    assert mine.read_bytes() == b"my own table"
    with pytest.raises(CurateError, match="is this command's input"):
        faces_for_source(manifest, manifest, workers=1)
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(CurateError, match="is a folder"):
        faces_for_source(flat, tmp_path / "dir.parquet")


def test_5_finetune_with_other_settings_needs_force_and_starts_afresh(
    train_build: Path, uninterrupted, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(uninterrupted.run_dir, run)
    with pytest.raises(
        CurateError, match=r"other settings \(epochs: 2 -> 1; lr: 0.003 -> 0.002\)"
    ) as err:
        loop.finetune(train_build, run, tiny_config(lr=2e-3, epochs=1))
    assert "--force" in (err.value.hint or "")
    res = loop.finetune(train_build, run, tiny_config(lr=2e-3, epochs=1), force=True)
    assert res.resumed_from_step == 0 and "lr 0.003 -> 0.002" in res.notes[0]
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 3


# ============================================================================ 6, 7. export


def _export_source(
    tmp_path: Path, labels: list[str], split: str | None = "train"
) -> tuple[Path, Path]:
    """A build folder with one real image per label and a screen folder that keeps all."""
    rows = []
    for i, label in enumerate(labels):
        p = face_png(tmp_path / "imgs" / f"{i}" / "face.png", i)
        rows.append(
            {
                "image_id": i,
                "path": str(p),
                "rel_path": f"{i}/face.png",
                "label": label,
                "split": split,
                "n_tuples": 2,
                "n_rejected": 0,
                "suspicion": 0.0,
            }
        )
    screen_dir = tmp_path / "screen_dir"
    screen_dir.mkdir()
    pd.DataFrame(rows).to_parquet(screen_dir / "images_suspect.parquet", index=False)
    return tmp_path / "imgs", screen_dir


def test_6_export_force_deletes_only_what_the_earlier_export_wrote(tmp_path: Path) -> None:
    _, screen_dir = _export_source(tmp_path, ["happy", "sad", "sad"])
    out = tmp_path / "out"
    export(screen_dir, out, max_suspicion=1.0)
    (out / "NOTES.txt").write_text("mine")
    (out / "mywork").mkdir()
    (out / "mywork" / "a.txt").write_text("mine too")
    (out / "train" / "happy" / "keep.txt").write_text("mine in a label folder")
    res = export(screen_dir, out, max_suspicion=0.5, format="csv", force=True)
    assert (out / "NOTES.txt").read_text() == "mine" and (
        out / "mywork" / "a.txt"
    ).read_text() == "mine too"
    assert (out / "train" / "happy" / "keep.txt").is_file()
    assert not (
        out / "train" / "sad"
    ).exists()  # the earlier export's folders it left empty are gone
    assert not list(out.rglob("*.png")) and res.n_exported == 3
    link = tmp_path / "link"
    os.symlink(out, link)  # --out a link to the earlier export
    res = export(screen_dir, link, max_suspicion=1.0, force=True)
    assert (
        res.n_exported == 3 and len(list(out.rglob("*.png"))) == 3 and (out / "NOTES.txt").is_file()
    )


def test_6_an_old_imagefolder_export_that_listed_no_files_is_not_replaced(tmp_path: Path) -> None:
    _, screen_dir = _export_source(tmp_path, ["happy", "sad"])
    out = tmp_path / "old"
    (out / "train" / "happy").mkdir(parents=True)
    (out / "train" / "happy" / "mine.png").write_bytes(b"user file")
    (out / "export.json").write_text(
        json.dumps({"command": "export", "params": {"format": "imagefolder"}})
    )
    with pytest.raises(CurateError, match="did not record the files it wrote"):
        export(screen_dir, out, force=True)
    assert (out / "train" / "happy" / "mine.png").read_bytes() == b"user file"


def test_7_export_folder_names_are_injective_reversible_and_never_hidden(tmp_path: Path) -> None:
    from urllib.parse import unquote

    labels = ["a/b", "a_b", "a\0b", "ab", ".hidden", "..", "50%", "a\\b", "joie"]
    _, screen_dir = _export_source(tmp_path, labels, split=None)
    res = export(screen_dir, tmp_path / "out", max_suspicion=1.0)
    folders = res.folders["label"]
    assert len(set(folders.values())) == len(labels)
    assert {unquote(f) for f in folders.values()} == set(labels)
    assert not any(f.startswith(".") or "/" in f or "\0" in f for f in folders.values())
    assert folders["joie"] == "joie" and folders["a_b"] == "a_b"
    assert json.loads((tmp_path / "out" / "export.json").read_text())["folders"]["label"] == folders
    again = ingest(tmp_path / "out", workers=1)  # curate's own ingest finds every exported image
    ok = again[again["status"] == "ok"]
    assert len(ok) == len(labels) and set(ok["label"]) == {f.lower() for f in folders.values()}
    assert again.loc[again["status"] != "ok", "rel_path"].tolist() == [
        "export.json"
    ]  # recorded, no label
    assert folder_name(".x") == "%2Ex" and folder_name("x.y") == "x.y"


# ============================================================================ 8. folder ingest


def test_8_every_entry_of_a_folder_gets_a_row(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(2):
        face_png(root / "happy" / f"{i}.png", i)
        face_png(tmp_path / "elsewhere" / f"{i}.png", 20 + i)
        face_png(root / "sad" / f"{i}.png", 10 + i)
    os.symlink(tmp_path / "elsewhere", root / "happy" / "linked")  # a linked sub-folder is read
    os.symlink(root / "happy", root / "happy" / "loop")  # a folder link back up: recorded
    _mkfifo(root / "fifo.png")  # root level
    os.symlink(root / "self.png", root / "self.png")  # a link loop at the root
    os.symlink(tmp_path / "gone.png", root / "sad" / "broken.png")  # a broken link
    images = ingest(root, workers=1)
    status = dict(zip(images["rel_path"], images["status"], strict=True))
    assert status["happy/linked/0.png"] == "ok" and status["happy/linked/1.png"] == "ok"
    assert status["fifo.png"] == "not_a_file" and status["self.png"] == "not_a_file"
    assert status["happy/loop"] == "not_a_file" and status["sad/broken.png"] == "missing"
    assert "loop" in images.set_index("rel_path").loc["self.png", "detail"]
    assert len(images) == 10


# ============================================================================ 12, 13, 15. finetune faults


@pytest.fixture(scope="module")
def train_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_train_build(
        tmp_path_factory.mktemp("hostile_train"), per_class_train=6, per_class_val=2
    )


@pytest.fixture(scope="module")
def uninterrupted(train_build: Path, tmp_path_factory: pytest.TempPathFactory):
    return loop.finetune(
        train_build, tmp_path_factory.mktemp("hostile_runs") / "run", tiny_config()
    )


def _state(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def test_12_ctrl_c_inside_a_step_resumes_bit_for_bit(
    train_build: Path, uninterrupted, tmp_path: Path, monkeypatch
) -> None:
    assert any(
        "running_var" in k for k in _state(uninterrupted.run_dir)
    )  # the network has BatchNorm
    real = loop._Trainer.step

    def forward_then_ctrl_c(self, b, step, *rest):
        if step == 4:  # inside the second epoch, after the checkpoint of the first
            self.net(b.x)  # the forward pass moves the BatchNorm running statistics
            raise KeyboardInterrupt
        return real(self, b, step, *rest)

    monkeypatch.setattr(loop._Trainer, "step", forward_then_ctrl_c)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        loop.finetune(train_build, run, tiny_config())
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 4
    monkeypatch.setattr(loop._Trainer, "step", real)
    resumed = loop.finetune(train_build, run, tiny_config())
    assert resumed.resumed_from_step == 4
    want, got = _state(uninterrupted.run_dir), _state(run)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_12_ctrl_c_during_validation_resumes_to_the_same_metrics(
    train_build: Path, uninterrupted, tmp_path: Path, monkeypatch
) -> None:
    real = loop._Trainer.validate

    def validate_then_ctrl_c(self):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    monkeypatch.setattr(loop._Trainer, "validate", validate_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        loop.finetune(train_build, run, tiny_config())
    monkeypatch.setattr(loop._Trainer, "validate", real)
    resumed = loop.finetune(train_build, run, tiny_config())
    cols = [c for c in resumed.metrics.columns if c != "images_per_s"]
    pd.testing.assert_frame_equal(
        resumed.metrics[cols].reset_index(drop=True),
        uninterrupted.metrics[cols].reset_index(drop=True),
    )


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"step": 10**6}, "step must be a whole number from 1 to the run's"),
        ({"step": -3}, "step must be a whole number"),
        ({"step": "abc"}, "step must be a whole number"),
        ({"tag": "step_0000001"}, "tag 'step_0000001' does not match"),
    ],
)
def test_12_a_tampered_last_json_is_a_clear_error(
    train_build: Path, uninterrupted, tmp_path: Path, edit: dict, words: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(uninterrupted.run_dir, run)
    last = run / "checkpoints" / "last.json"
    last.write_text(json.dumps({**json.loads(last.read_text()), **edit}))
    with pytest.raises(CurateError, match=words) as err:
        loop.finetune(train_build, run, tiny_config())
    assert "--restart" in (err.value.hint or "")


def test_12_a_bit_flipped_checkpoint_is_refused(
    train_build: Path, uninterrupted, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(uninterrupted.run_dir, run)
    weights = next((run / "checkpoints").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of a weight: safetensors itself would load it
    weights.write_bytes(bytes(data))
    with pytest.raises(CurateError, match="sha256 differs"):
        loop.finetune(train_build, run, tiny_config())


def test_13_resume_accepts_another_spelling_of_the_same_tuples(
    train_build: Path, uninterrupted, tmp_path: Path, monkeypatch
) -> None:
    def stop_at_2(phase: str, done: int, total: int, info: dict) -> None:
        if phase == "train" and done == 2:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        loop.finetune(train_build.resolve(), run, tiny_config(), progress=stop_at_2)
    monkeypatch.chdir(train_build.parent / "images")
    relative = Path("..") / train_build.name
    resumed = loop.finetune(relative, run, tiny_config())
    assert resumed.resumed_from_step == 2
    want, got = _state(uninterrupted.run_dir), _state(run)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_15_stale_temporary_files_of_a_killed_write_are_removed(
    train_build: Path, uninterrupted, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(uninterrupted.run_dir, run)
    stale = run / "checkpoints" / ".step_0000006.safetensors.x8k2p1q_.tmp"
    stale.write_bytes(b"\0" * 4096)
    top = run / ".metrics.parquet.a1b2c3d4.tmp"
    top.write_bytes(b"\0")
    other = run / ".my.notes.tmp"  # not the name of an atomic write: not curate's to remove
    other.write_text("mine")
    loop.finetune(train_build, run, tiny_config())
    assert not stale.exists() and not top.exists() and other.read_text() == "mine"


# ============================================================================ 16. no tracebacks


def test_16_symlink_loops_and_bad_names_are_statuses_not_tracebacks(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(3):
        face_png(root / "happy" / f"{i}.png", i)
        face_png(root / "sad" / f"{i}.png", 10 + i)
    os.symlink(root / "happy" / "a.png", root / "happy" / "a.png")
    bad = os.fsencode(root / "sad") + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write((root / "sad" / "0.png").read_bytes()[:-1] + b"\x01")
    res = _cli("build-tuples", root, "--out", tmp_path / "b", "--workers", "1")
    assert res.exit_code == 0, res.output
    images = pd.read_parquet(tmp_path / "b" / "images.parquet")
    status = dict(zip(images["rel_path"], images["status"], strict=True))
    assert status["happy/a.png"] == "not_a_file" and status["sad/caf\\xe9.png"] == "bad_name"
    from curate.faces.run import source_images

    assert len(source_images(root)) == 8  # `curate faces` lists the same entries

    pq = tmp_path / "m.parquet"
    pd.DataFrame(
        {
            "path": [b"happy/caf\xe9.png", str(root / "happy" / "0.png").encode()],
            "label": ["happy", "happy"],
        }
    ).to_parquet(pq)
    rows = ingest(pq, workers=1)
    assert (
        rows["status"].tolist() == ["bad_name", "ok"] and "row 0 of m.parquet" in rows["detail"][0]
    )


def test_16_corrupt_build_record_and_bad_embeddings_are_clear_errors(tmp_path: Path) -> None:
    build, images, emb = make_build(tmp_path, per_class=3, per_anchor=1)
    good = write_embeddings(tmp_path / "e.parquet", images, emb)
    for cells, words in (
        ([None] * len(images), "not lists of numbers"),
        (["1,2,3"] * len(images), "not lists of numbers"),
        ([["1.0", "2.0"]] * len(images), "not lists of numbers"),
    ):
        bad = tmp_path / "bad.parquet"
        pd.DataFrame({"image_id": images["image_id"], "embedding": cells}).to_parquet(bad)
        with pytest.raises(CurateError, match=words):
            _screen(build, tmp_path / "o", bad, force=True)
    (build / "run.json").write_text("{broken")
    with pytest.raises(CurateError, match="cannot read run record"):
        _screen(build, tmp_path / "o2", good)


def test_16_ctrl_c_while_shutting_down_exits_130_without_a_traceback(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import atexit, os, signal, sys, time
        def late():  # Ctrl-C arrives while Python shuts down (joining worker pools)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        atexit.register(late)
        from curate.cli import main
        sys.argv = ["curate", "--version"]
        main()
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr


# ============================================================================ 17. messages


def test_17_config_json_linked_to_a_device_is_named(tmp_path: Path) -> None:
    from curate.backbone import load_backbone

    run = tmp_path / "run"
    run.mkdir()
    os.symlink("/dev/zero", run / "config.json")
    (run / "model.safetensors").write_bytes(b"x")
    with pytest.raises(CurateError, match="config.json is a character device, not a regular file"):
        load_backbone(None, str(run))


def test_17_semicolon_csv_names_the_delimiter_and_row_numbers_are_right(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("path;label\na.png;happy\n")
    with pytest.raises(CurateError, match="separated by ';'") as err:
        ingest(m)
    assert "sep=';'" in (err.value.hint or "")
    face_png(tmp_path / "a.png", 0)
    pq = tmp_path / "m.parquet"
    pd.DataFrame({"path": ["a.png", "a.png", ""], "label": ["happy", "", "sad"]}).to_parquet(pq)
    rows = ingest(pq, workers=1)
    assert rows["detail"].tolist()[1:] == [
        "row 1 of m.parquet (counted from 0): empty label in column 'label'",
        "row 2 of m.parquet (counted from 0): the path is empty",
    ]
    csv = tmp_path / "m2.csv"
    csv.write_text("path,label\na.png,happy\na.png,\n")
    assert ingest(csv, workers=1)["detail"][1].startswith("line 3 of m2.csv")


def test_17_pickle_rejection_never_advises_weights_only_false(tmp_path: Path) -> None:
    import pickle

    from curate.backbone import read_state_dict

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    f = tmp_path / "evil.pth"
    with open(f, "wb") as fh:
        pickle.dump({"w": Evil()}, fh, protocol=2)
    with pytest.raises(CurateError, match="refused to load .*can run code") as err:
        read_state_dict(f)
    assert "weights_only=False" not in str(err.value) and "will likely succeed" not in str(
        err.value
    )


def test_17_predict_records_a_fifo_and_a_truncated_image_and_goes_on(tmp_path: Path) -> None:
    from curate.models import default_model_dir
    from curate.train.evaluate import predict

    good = face_png(tmp_path / "good.png", 1, size=48)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    fifo = _mkfifo(tmp_path / "fifo.png")
    table = predict(default_model_dir(), [str(good), str(truncated), str(fifo)], device="cpu")
    assert table["status"].tolist() == ["ok", "corrupt", "not_a_file"]
    assert table["prediction"].notna().tolist() == [True, False, False]
    assert np.isnan(table.loc[1, "confidence"]) and 0 < table.loc[0, "confidence"] <= 1


# ============================================================================ 18. literal missing labels


def test_18_nan_none_na_labels_are_missing(tmp_path: Path) -> None:
    for i in range(5):
        face_png(tmp_path / f"{i}.png", i)
    m = tmp_path / "m.csv"
    m.write_text("path,label\n0.png,NaN\n1.png,None\n2.png,NA\n3.png,n/a\n4.png,happy\n")
    images = ingest(m, workers=1)
    assert images["status"].tolist() == ["no_label"] * 4 + ["ok"]
    assert images["label"].isna().tolist() == [True] * 4 + [False]
    assert "label 'NaN', which stands for a missing value" in images["detail"][0]


# ============================================================================ 19. permissions, CSP


def test_19_outputs_follow_the_umask_and_the_finetune_report_has_the_csp(
    tmp_path: Path, uninterrupted
) -> None:
    from curate.io import current_umask, write_json
    from curate.report.html import CSP

    old = os.umask(0o022)
    try:
        f = write_json({"a": 1}, tmp_path / "x.json")
        assert current_umask() == 0o022
    finally:
        os.umask(old)
    assert (f.stat().st_mode & 0o777) == 0o644  # mkstemp alone gives 0600
    want = 0o666 & ~current_umask()
    for name in ("model.safetensors", "run.json", "report.html", "metrics.parquet"):
        assert (uninterrupted.run_dir / name).stat().st_mode & 0o777 == want, name
    html = (uninterrupted.run_dir / "report.html").read_text()
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    assert "<script" not in html.lower()


def test_read_capped_allocates_what_the_file_holds_and_still_caps_a_growing_file(
    tmp_path: Path, monkeypatch
) -> None:
    """A 90-byte image under a 656 MB cap (ingest's) must not allocate the cap per file
    (``BufferedReader.read(n)`` allocates n bytes first: a million files paid for it), and
    a file that grows after its size was taken is still read whole, up to the cap."""
    import tracemalloc

    from curate import io as cio

    small = tmp_path / "small.png"
    small.write_bytes(b"x" * 90)
    tracemalloc.start()
    try:
        assert cio.read_capped(small, 2**30) == b"x" * 90
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"read_capped of 90 bytes allocated {peak:,} bytes"

    real_fstat = cio.os.fstat

    def stale(fd):  # the size as it was before the file grew
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, *st[1:6], 10, *st[7:]))

    grown = tmp_path / "grown.bin"
    grown.write_bytes(b"y" * 5000)
    monkeypatch.setattr(cio.os, "fstat", stale)
    assert cio.read_capped(grown, 5000) == b"y" * 5000
    with pytest.raises(cio.FileTooLarge):
        cio.read_capped(grown, 4999)


# ============================================================================ round three (issue 27)
# Test names start with test_r3_<item of issue 27>.


def test_r3_1_the_lock_is_never_followed_through_a_link(tmp_path: Path) -> None:
    from curate.outdir import claim_file

    victim = tmp_path / "victim.txt"
    victim.write_text("victim")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / ".curate.lock")
    with pytest.raises(CurateError, match="lock file .* is a symbolic link") as err:
        with claim_folder(out, "build-tuples", settings={}):
            pass
    assert "delete" in (err.value.hint or "")
    (out / ".curate.lock").unlink()
    os.link(victim, out / ".curate.lock")  # a hard link: O_NOFOLLOW alone would not see it
    with pytest.raises(CurateError, match="has other hard links"):
        with claim_folder(out, "build-tuples", settings={}):
            pass
    d = tmp_path / "d"
    d.mkdir()
    os.symlink(victim, d / ".faces.parquet.lock")
    with pytest.raises(CurateError, match="symbolic link"):
        with claim_file(d / "faces.parquet", "faces", settings={}):
            pass
    os.symlink(tmp_path / "nowhere", out / "dangling")
    assert victim.read_text() == "victim" and not (tmp_path / "nowhere").exists()


def test_r3_2_export_never_writes_through_a_linked_folder_inside_out(tmp_path: Path) -> None:
    _, screen_dir = _export_source(tmp_path, ["happy", "sad", "sad"])
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    export(screen_dir, out)
    elsewhere.mkdir()
    shutil.rmtree(out / "train")
    os.symlink(elsewhere, out / "train")
    for copy in (True, False):
        with pytest.raises(CurateError, match=r"train is a symbolic link inside --out"):
            export(screen_dir, out, copy=copy, force=True)
    assert list(elsewhere.iterdir()) == []
    run = tmp_path / "run"  # a folder the run writes into (finetune's checkpoints/) as a link
    run.mkdir()
    os.symlink(elsewhere, run / "checkpoints")
    with pytest.raises(CurateError, match="checkpoints is a symbolic link inside --out"):
        with claim_folder(
            run, "finetune", settings={}, owned_dirs=("checkpoints",), scratch=("checkpoints",)
        ):
            pass
    assert list(elsewhere.iterdir()) == []


def test_r3_3_report_out_never_replaces_an_input_or_a_foreign_file(
    tmp_path: Path, screened
) -> None:
    from curate.report import write_report

    _, out, _ = screened
    before = (out / "scores.parquet").read_bytes()
    for force in (False, True):
        with pytest.raises(CurateError, match="inside this command's input"):
            write_report(out, out / "scores.parquet", force=force)
    assert (out / "scores.parquet").read_bytes() == before
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    res = _cli("report", out, "--out-file", notes)
    assert res.exit_code == 2 and "--force" in res.output and notes.read_text() == "my notes"
    write_report(out, notes, force=True)
    assert notes.read_text().startswith("<!DOCTYPE html>")
    write_report(out, notes)  # its own earlier report is replaced without asking
    write_report(out)
    write_report(out)


def test_r3_4_evaluate_json_never_replaces_its_input_or_a_foreign_file(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nnothing.png,happy\n")
    for flag in ("--out-file", "--json"):  # --json FILE: the deprecated spelling
        res = _cli("evaluate", "fer_resnet10t", manifest, flag, manifest)
        assert res.exit_code == 2 and "is this command's input" in res.output
    assert manifest.read_text() == "path,label\nnothing.png,happy\n"
    other = tmp_path / "other.json"
    other.write_text('{"mine": 1}')
    res = _cli("evaluate", "fer_resnet10t", manifest, "--out-file", other)
    assert res.exit_code == 2 and "--force" in res.output and other.read_text() == '{"mine": 1}'


def test_r3_5_a_damaged_cache_shard_is_a_miss_with_a_warning_never_used(tmp_path: Path) -> None:
    from curate import cache
    from curate.backbone import load_backbone
    from curate.embed import embed_images_result
    from curate.faces import analyze

    paths = [str(face_png(tmp_path / "img" / f"{i}.png", i)) for i in range(3)]
    lb = load_backbone("test_resnet", "none")
    root = tmp_path / "cache"
    first = embed_images_result(paths, [None] * 3, lb, cache_dir=root, workers=0)
    (shard,) = root.rglob("shard-*.npz")
    assert cache.shard_damage(shard, ".npz") is None
    keys = np.load(shard)["sha256"]
    planted = {  # the same keys: wrong dimensions (checksummed name), NaN and wrong dimensions (an older name)
        shard: np.zeros((3, first.embeddings.shape[1] + 1), np.float32),
        shard.with_name("shard-" + "0" * 20 + ".npz"): np.full(
            (3, first.embeddings.shape[1]), np.nan, np.float32
        ),
        shard.with_name("shard-" + "1" * 20 + ".npz"): np.ones((3, 7), np.float32),
    }
    for bad, emb in planted.items():
        for p in root.rglob("shard-*.npz"):
            p.unlink()
        with open(bad, "wb") as fh:
            np.savez(fh, sha256=keys, embedding=emb)
        with pytest.warns(cache.DamagedShardWarning, match="damaged cache shard"):
            again = embed_images_result(paths, [None] * 3, lb, cache_dir=root, workers=0)
        assert again.n_computed == 3 and np.array_equal(again.embeddings, first.embeddings)
        for p in root.rglob("shard-*.npz"):  # only the recomputed shard is left
            assert cache.shard_damage(p, ".npz") is None and np.array_equal(
                np.load(p)["embedding"], first.embeddings
            )
    # a face-analysis shard: flipped bytes (checksum) and an impossible occlusion (validation)
    ns = tmp_path / "faces"
    row = {
        "face_found": True,
        "yaw": 1.0,
        "pitch": 2.0,
        "roll": 3.0,
        "occlusion": 0.1,
        "occlusion_any": 0.2,
        "face_confidence": 0.9,
        "detail": None,
    }
    with cache.ShardWriter(ns, ".parquet", analyze._write_shard) as w:
        w.add(["a" * 64], [row])
    (good,) = ns.glob("shard-*.parquet")
    assert cache.read_shards(ns, ".parquet", analyze._read_shard)["a" * 64]["occlusion"] == 0.1
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    good.write_bytes(bytes(data))
    with pytest.warns(cache.DamagedShardWarning, match="checksum"):
        assert cache.read_shards(ns, ".parquet", analyze._read_shard) == {}
    legacy = ns / ("shard-" + "2" * 20 + ".parquet")
    analyze._write_shard(legacy, ["b" * 64], [{**row, "occlusion": 2.9e182}])
    with pytest.warns(cache.DamagedShardWarning, match="occlusion values outside"):
        assert cache.read_shards(ns, ".parquet", analyze._read_shard) == {}


def test_r3_5_a_blendshape_shard_with_impossible_entries_is_a_miss(tmp_path: Path) -> None:
    """The blendshapes' own cache namespace is validated like the face analyses': 52 scores
    in [0, 1] (or none), a finite box of four numbers, sha256 keys."""
    from curate import cache
    from curate.faces import analyze

    ns = tmp_path / "face_blendshapes"
    row = {"blendshapes": [0.5] * 52, "box": [1.0, 2.0, 30.0, 40.0], "detail": None}
    with cache.ShardWriter(ns, ".parquet", analyze._write_bs_shard) as w:
        w.add(["a" * 64, "b" * 64], [row, {"blendshapes": None, "box": None, "detail": "no face"}])
    got = cache.read_shards(ns, ".parquet", analyze._read_bs_shard)
    assert got["a" * 64]["blendshapes"] == [0.5] * 52 and got["b" * 64]["blendshapes"] is None
    for bad in (
        {**row, "blendshapes": [0.5] * 51},
        {**row, "blendshapes": [2.9e182] * 52},
        {**row, "blendshapes": [float("nan")] * 52},
        {**row, "box": [1.0, 2.0, float("inf"), 4.0]},
    ):
        for p in ns.glob("shard-*"):
            p.unlink()
        with cache.ShardWriter(ns, ".parquet", analyze._write_bs_shard) as w:
            w.add(["c" * 64], [bad])
        with pytest.warns(cache.DamagedShardWarning, match="damaged cache shard"):
            assert cache.read_shards(ns, ".parquet", analyze._read_bs_shard) == {}


def _images(root: Path, rels: list[str]) -> None:
    for i, rel in enumerate(rels):
        face_png(root / rel, i)


def test_r3_6_one_layout_detector_ignores_junk_and_names_a_mixed_layout(tmp_path: Path) -> None:
    from curate.ingest import discover

    split = tmp_path / "split"
    _images(
        split,
        [f"{s}/{c}/{i}.png" for s in ("train", "val") for c in ("happy", "sad") for i in range(2)],
    )
    (split / "val" / "Thumbs.db").write_bytes(b"junk")
    (split / "train" / "happy" / "desktop.ini").write_text("[.ShellClassInfo]")
    (split / ".DS_Store").write_bytes(b"junk")
    table = discover(split)
    assert set(table["label"]) == {"happy", "sad"} and set(table["split"]) == {"train", "val"}
    assert (
        len(table) == 8
        and "Thumbs.db" in table.attrs["notes"][0]
        and "2 file(s)" in table.attrs["notes"][0]
    )
    assert table.attrs["layout"].startswith("split: every first-level folder holds only folders")
    half = tmp_path / "half"  # a class layout with a half-moved split folder
    _images(half, ["happy/0.png", "sad/0.png", "train/happy/1.png"])
    with pytest.raises(
        CurateError, match=r"mixed folder layout: .*train holds only folders"
    ) as err:
        discover(half)
    assert "move every class folder into a split folder" in (err.value.hint or "")
    stray = tmp_path / "stray"  # an image directly in a split folder beside its class folders
    _images(
        stray,
        ["train/happy/0.png", "train/sad/0.png", "train/x.png", "val/happy/1.png", "val/sad/1.png"],
    )
    res = _cli("build-tuples", stray, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "train holds images directly (e.g. x.png)" in res.output
    nested = tmp_path / "nested"  # a class folder with sub-folders stays a class folder
    _images(nested, ["happy/a/0.png", "happy/b/1.png", "sad/2.png"])
    assert dict(zip(discover(nested)["rel_path"], discover(nested)["label"], strict=True)) == {
        "happy/a/0.png": "happy",
        "happy/b/1.png": "happy",
        "sad/2.png": "sad",
    }


def test_r3_7_links_to_the_root_are_not_walked_and_predict_takes_one_path(tmp_path: Path) -> None:
    from curate.ingest import discover
    from curate.train.evaluate import expand_inputs

    data = tmp_path / "data"
    _images(data, ["happy/0.png", "sad/1.png"])
    os.symlink("/", data / "happy" / "everything")
    os.symlink(data, data / "sad" / "up")
    os.symlink("/proc/self", data / "sad" / "proc")
    table = discover(data).set_index("rel_path")
    assert len(table) == 5
    assert table.loc["happy/everything", "status"] == "not_a_file"
    assert "holds the dataset itself" in table.loc["sad/up", "detail"]
    assert "system folder" in table.loc["sad/proc", "detail"]
    one = str(data / "happy" / "0.png")
    assert expand_inputs(one) == [one] and expand_inputs(Path(one)) == [one]
    res = _cli("predict", "fer_resnet10t", "https://example.com/a.png")
    assert (
        res.exit_code == 2
        and "looks like a URL" in res.output
        and "download it first" in res.output
    )
    res = _cli("build-tuples", "~no_such_user_xyz/data", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "names no user" in res.output


def test_r3_10_deeply_nested_json_is_a_clear_error_in_every_record(
    tmp_path: Path, screened
) -> None:
    from curate.io import json_depth, loads_json, read_json_file
    from curate.runs import read_run_config

    deep = "[" * 100_000 + "]" * 100_000
    assert json_depth(deep) == 100_000 and json_depth('{"a": "[[[", "b": [1, {"c": "\\"]"}]}') == 3
    with pytest.raises(ValueError, match="nested 100000 levels deep"):
        loads_json(deep)
    f = tmp_path / "deep.json"
    f.write_text('{"a": ' + deep + "}")
    with pytest.raises(CurateError, match="levels deep"):
        read_json_file(f, what="record", hint="x")
    run = _run_folder(tmp_path)
    (run / "config.json").write_text('{"a": ' + deep + "}")
    with pytest.raises(CurateError, match="levels deep"):
        read_run_config(run)
    build, out, emb = screened
    (out / "run.json").write_text('{"command": "screen", "x": ' + deep + "}")
    res = _cli("report", out)
    assert res.exit_code == 2 and "levels deep" in res.output
    res = _cli("screen", build, "--out", out, "--embeddings", emb, "--skip-faces-screen")
    assert res.exit_code == 2 and "levels deep" in res.output


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"embed_dim": 65536, "classes": [f"c{i}" for i in range(100_000)]},
            "asks for heads of about",
        ),
        ({"input_size": [1, 4096, 4096]}, "input_size must be"),
        ({"backbone": "resnet" * 10_000}, "longer than any timm model name"),
        ({"logit_scale": 1e300}, "logit_scale must be a positive finite number of at most"),
        ({"scale": 1e300}, "scale must be a positive finite number of at most"),
    ],
)
def test_r3_8_a_run_config_cannot_ask_for_more_than_the_limits(
    tmp_path: Path, changes: dict, words: str
) -> None:
    from curate.runs import load_run

    run = _run_folder(tmp_path, **changes)
    with pytest.raises(CurateError, match=words):
        load_run(run)


def test_r3_8_and_14_finetune_numbers_are_checked_before_any_work(tmp_path: Path) -> None:
    from curate.train.config import FinetuneConfig

    for kw, words in (
        ({"input_size": 100_000}, "--input-size must be a whole number from 8 to 1,024"),
        ({"input_size": 0}, "--input-size must be"),
        ({"weight_decay": float("nan")}, "--weight-decay must be a finite number"),
        ({"seed": -1}, "--seed must be a whole number from 0"),
        ({"seed": None}, "--seed must be a whole number"),
        ({"workers": -1}, "--workers must be a whole number of at least 0"),
        ({"epochs": 2.5}, "--epochs must be a whole number"),
    ):
        with pytest.raises(CurateError, match=words):
            FinetuneConfig(**kw).check()
    res = _cli(
        "finetune", tmp_path / "nothing", "--out", tmp_path / "run", "--input-size", "100000"
    )
    assert res.exit_code == 2 and "--input-size" in res.output


def test_r3_13_and_14_counts_seeds_and_alphas_are_messages_not_tracebacks(
    tmp_path: Path, screened
) -> None:
    from curate.limits import cap_workers, cpu_count
    from curate.stats.statistical import thresholds

    build, out, emb = screened
    src = build.parent / "images"
    for args, words in (
        (["--workers", "-1"], "--workers must be a whole number of at least 0"),
        (["--seed", "-1"], "--seed must be a whole number from 0"),
        (["--per-anchor", "1000000000"], "would need about"),
    ):
        res = _cli("build-tuples", src, "--out", tmp_path / "b", *args)
        assert res.exit_code == 2 and words in res.output, res.output
    with pytest.raises(CurateError, match="--per-anchor must be a whole number"):
        build_tuples(src, tmp_path / "b2", per_anchor=2.5)
    with pytest.raises(CurateError, match="--seed must be a whole number"):
        build_tuples(src, tmp_path / "b3", seed=None)
    t_pos, _ = thresholds(0.0, 1.0, 1e-300, 0.05)
    assert 36 < t_pos < 38  # z(1 - 1e-300), where 1 - 1e-300 rounds to 1
    res = _cli(
        "screen",
        build,
        "--out",
        tmp_path / "s",
        "--embeddings",
        emb,
        "--skip-faces-screen",
        "--alpha-pos",
        "1e-300",
        "--no-report",
    )
    assert res.exit_code == 0, res.output
    for cmd in (
        ["predict", "fer_resnet10t", str(next(src.rglob("*.png")))],
        ["evaluate", "fer_resnet10t", str(build)],
    ):
        res = _cli(*cmd, "--batch-size", "0")
        assert res.exit_code == 2 and "--batch-size must be a whole number from 1" in res.output
    assert cap_workers(100, 56) == (
        min(cpu_count(), 56),
        f"--workers 100 capped at {min(cpu_count(), 56)} ({cpu_count()} CPU(s))",
    )
    assert cap_workers(2, 1)[0] == 1 and cap_workers(0, 10) == (0, None)


def test_r3_9_full_or_read_only_disks_are_messages_and_the_cache_is_optional(
    tmp_path: Path, screened, monkeypatch
) -> None:
    import errno
    import tempfile

    from curate import cache
    from curate.backbone import load_backbone
    from curate.embed import embed_images_result

    build, _, emb = screened
    full, ro, cache_root = tmp_path / "full", tmp_path / "ro", tmp_path / "cache"
    real_mkstemp, real_mkdir = tempfile.mkstemp, Path.mkdir

    def mkstemp(*a, dir=None, **k):
        if str(dir).startswith((str(full), str(cache_root / "embeddings"))):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*a, dir=dir, **k)

    def mkdir(self, *a, **k):
        if str(self).startswith(str(ro)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    res = _cli(
        "screen", build, "--out", full, "--embeddings", emb, "--skip-faces-screen", "--no-report"
    )
    assert (
        res.exit_code == 2 and "the disk is full" in res.output and "--cache-dir" in res.output
    ), res.output
    res = _cli("build-tuples", build.parent / "images", "--out", ro)
    assert res.exit_code == 2 and "read-only" in res.output, res.output
    paths = [str(p) for p in sorted((build.parent / "images").rglob("*.png"))[:3]]
    with pytest.warns(cache.CacheOffWarning, match="going on without caching"):
        got = embed_images_result(
            paths, [None] * 3, load_backbone("test_resnet", "none"), cache_dir=cache_root, workers=0
        )
    assert got.embeddings.shape[0] == 3 and np.isfinite(got.embeddings).all()
    with pytest.raises(CurateError, match="root folder"):
        cache.resolve_cache_dir("/")


def test_r3_12_manifest_columns_are_never_silently_mangled(tmp_path: Path) -> None:
    from curate.ingest import discover

    imgs = [str(face_png(tmp_path / "img" / f"{i}.png", i)) for i in range(3)]
    dup = tmp_path / "dup.csv"
    dup.write_text(f"path,label,label\n{imgs[0]},happy,sad\n")
    with pytest.raises(CurateError, match="has the column 'label' more than once"):
        discover(dup)
    lists = tmp_path / "lists.parquet"
    pd.DataFrame({"path": imgs[:2], "label": [["angry", "sad"], ["happy"]]}).to_parquet(lists)
    with pytest.raises(
        CurateError, match=r"row 0 of lists.parquet .*: the label in column 'label' is a list"
    ):
        discover(lists)
    own = tmp_path / "own.csv"
    pd.DataFrame(
        {
            "path": imgs,
            "label": ["caf\u00e9", "cafe\u0301", "happy"],
            "width": ["w1", "w2", "w3"],
            "status": ["mine"] * 3,
            "sha256": ["x"] * 3,
            "notes": ["a", "b", "c"],
        }
    ).to_csv(own, index=False)
    table = ingest(own, workers=1)
    assert (
        table["user_width"].tolist() == ["w1", "w2", "w3"]
        and table["user_status"].tolist() == ["mine"] * 3
    )
    assert table["user_sha256"].tolist() == ["x"] * 3 and table["notes"].tolist() == ["a", "b", "c"]
    assert table["status"].tolist() == ["ok"] * 3 and table["width"].notna().all()
    assert "width -> user_width" in table.attrs["notes"][0]
    assert table["label"].tolist()[:2] == ["caf\u00e9", "caf\u00e9"]  # NFC and NFD: one class


def test_r3_11_labels_named_like_exports_own_files_never_take_their_place(tmp_path: Path) -> None:
    from urllib.parse import unquote

    _, screen_dir = _export_source(
        tmp_path, ["export.json", "metadata.parquet", "README.md", "happy"], split=None
    )
    res = export(screen_dir, tmp_path / "img", max_suspicion=1.0)
    rec = json.loads((tmp_path / "img" / "export.json").read_text())
    assert rec["state"] == "complete" and res.n_exported == 4
    folders = rec["folders"]["label"]
    assert (
        folders["export.json"] == "%65xport.json"
        and unquote(folders["export.json"]) == "export.json"
    )
    assert (tmp_path / "img" / "%65xport.json").is_dir() and folders["happy"] == "happy"
    hf = export(screen_dir, tmp_path / "hf", format="hf")
    meta = pd.read_parquet(tmp_path / "hf" / "train" / "metadata.parquet")
    assert (
        len(meta) == 4
        and hf.n_exported == 4
        and (tmp_path / "hf" / "train" / "%6Detadata.parquet").is_dir()
    )
    again = export(
        screen_dir, tmp_path / "hf", format="hf"
    )  # re-run: the same folders, nothing broken
    assert again.n_exported == 4


def test_r3_15_warnings_are_escaped_plotting_stays_in_the_cache_and_cache_dir_root_is_refused(
    tmp_path: Path, screened, monkeypatch, capsys
) -> None:
    import warnings

    from curate.cli import _app

    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    build, out, emb = screened
    res = _cli(
        "screen",
        build,
        "--out",
        tmp_path / "s",
        "--embeddings",
        emb,
        "--cache-dir",
        "/",
        "--no-report",
    )
    assert res.exit_code == 2 and "root folder" in res.output
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "c" / "matplotlib")
    _app._show_warning("Glyph 27 (\x1b[2J) missing from font", UserWarning, "/x/font.py", 3)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J" in err


def test_r3_13_a_link_to_a_kernel_file_is_never_read(tmp_path: Path) -> None:
    from curate.io import NotARegularFile, read_capped

    with pytest.raises(NotARegularFile, match="file of the kernel"):
        read_capped("/proc/self/pagemap", 2**30)
    _images(tmp_path / "d", ["happy/0.png", "sad/1.png"])
    os.symlink("/proc/self/pagemap", tmp_path / "d" / "happy" / "pagemap.png")
    table = ingest(tmp_path / "d", workers=1).set_index("rel_path")
    assert table.loc["happy/pagemap.png", "status"] == "not_a_file"
    assert "kernel" in table.loc["happy/pagemap.png", "detail"]


def test_r3_14_report_and_build_numbers_are_checked(tmp_path: Path, screened) -> None:
    build, out, _ = screened
    res = _cli("report", out, "--seed", "-1")
    assert res.exit_code == 2 and "--seed must be a whole number from 0" in res.output
    res = _cli(
        "build-tuples", build.parent / "images", "--out", tmp_path / "b", "--max-pixels", "0"
    )
    assert res.exit_code == 2 and "--max-pixels must be a whole number of at least 1" in res.output
    assert not (tmp_path / "b").exists()  # refused before the output folder is claimed


def test_r3_8_and_13_memory_estimates_refuse_before_allocating(monkeypatch) -> None:
    from curate import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 8 * 2**30)
    limits.check_batch_memory(256, [1, 48, 48], "a batch", hint="x")  # 36 MiB: fine
    with pytest.raises(
        CurateError, match=r"a batch would need about 48.0 GiB of memory; this machine has 8.0 GiB"
    ):
        limits.check_batch_memory(256, [3, 1024, 1024], "a batch", hint="lower --batch-size")
    images = pd.DataFrame(
        {
            "image_id": range(4),
            "label": ["a", "a", "b", "b"],
            "split": None,
            "subject": None,
            "status": "ok",
        }
    )
    from curate.tuples import sample_tuples

    with pytest.raises(CurateError, match=r"--per-anchor 1,000,000,000 \(4,000,000,000 tuples"):
        sample_tuples(images, per_anchor=10**9)


def test_r3_15_occlusion_scores_do_not_depend_on_the_batch_so_a_resumed_run_is_bit_identical() -> (
    None
):
    from curate.faces.occlusion import OcclusionModel

    model = OcclusionModel()
    faces = np.random.default_rng(0).random((21, 48, 48)).astype(np.float32)
    whole = model.probabilities(faces)
    parts = np.concatenate(
        [
            model.probabilities(faces[:5]),
            model.probabilities(faces[5:13]),
            model.probabilities(faces[13:]),
        ]
    )  # a run stopped after 5 faces, resumed
    assert np.array_equal(whole, parts)
    order = np.random.default_rng(1).permutation(21)
    assert np.array_equal(model.probabilities(faces[order]), whole[order])
    assert model.scores(faces[:1]) == [model.score(faces[0])]
