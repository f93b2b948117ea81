"""`curate screen` end to end on tiny builds written by hand (planted mislabeled image, side face)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import TUPLE_COLUMNS, fake_screen_faces, make_build, write_embeddings
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import CurateError
from curate.screen import screen
from curate.screens import faces as face_screen_module

NO_HYGIENE = {
    "skip_quality_screen": True,
    "skip_not_face_screen": True,
    "skip_near_duplicates_screen": True,
}


def _screen(build: Path, out: Path, emb_file: Path, **kw):
    """The patent's boundary alone, with a global null (the tests of its math by hand)."""
    kw = {"null": "effective", "skip_label_screen": True, **NO_HYGIENE, **kw}
    return screen(build, out, embeddings=emb_file, skip_faces_screen=True, **kw)


def test_planted_mislabeled_image_is_the_most_suspect(tmp_path):
    """Default settings: the label screen ranks the planted image first, suggests the class
    whose cluster it sits in, rejects it, and its tuples are redrawn without it."""
    build, images, emb = make_build(tmp_path)
    res = screen(
        build,
        tmp_path / "out",
        embeddings=write_embeddings(tmp_path / "e.parquet", images, emb),
        skip_faces_screen=True,
    )
    out = tmp_path / "out"
    suspect = pd.read_parquet(out / "images_suspect.parquet")
    top = suspect.iloc[0]
    assert top["image_id"] == 5 and top["rel_path"] == "angry/005.png"
    assert (
        top["suggested_label"] == "happy"
        and top["label_reject"]
        and top["label_reason"] == "label_suspect"
    )
    assert top["suspicion"] > 0.9 and top["label_pvalue"] < 0.01
    assert suspect["label_score"].is_monotonic_decreasing  # the label ranking, its own order
    assert suspect.loc[suspect["image_id"] != 5, "label_pvalue"].min() > top["label_pvalue"]
    assert {"suspicion", "label_pvalue", "suggested_label", "rejected_share", "mean_z"} <= set(
        suspect.columns
    )
    scores = pd.read_parquet(out / "scores.parquet")
    tuples = pd.read_parquet(build / "tuples.parquet")
    # the image left the pool: tuples anchored on it are rejected for it, the others redrawn
    anchored = scores["anchor"] == 5
    assert (~scores.loc[anchored, "keep"]).all() and scores.loc[anchored, "reason"].str.contains(
        "label_suspect"
    ).all()
    others = scores[~anchored]
    assert not others[["positive", "negative"]].eq(5).any(axis=None)
    was = tuples[["positive", "negative"]].eq(5).any(axis=1) & (tuples["anchor"] != 5)
    assert was.sum() > 0 and scores.loc[was.to_numpy(), "redrawn"].all()
    assert scores.loc[was.to_numpy(), "redrawn_members"].str.contains(":label_suspect").all()
    assert (
        res.n_redrawn
        == int(was.sum())
        == json.loads((out / "run.json").read_text())["counts"]["tuples_redrawn"]
    )
    assert scores["tuple_id"].tolist() == tuples["tuple_id"].tolist()
    b = json.loads((out / "boundary.json").read_text())
    assert b["null"] == "class_empirical" and b["label_model"]["classes"][0]["class"] == "angry"
    assert [c["class"] for c in b["class_nulls"]["same"]] == ["angry", "happy", "sad", "surprise"]


def test_global_null_reproduces_the_patent_boundary_by_hand(tmp_path):
    build, images, emb = make_build(tmp_path)
    res = _screen(build, tmp_path / "out", write_embeddings(tmp_path / "e.parquet", images, emb))
    out = tmp_path / "out"
    suspect = pd.read_parquet(out / "images_suspect.parquet")
    assert suspect.loc[0, "image_id"] == 5 and suspect.loc[0, "rel_path"] == "angry/005.png"
    assert suspect.loc[0, "rejected_share"] > 0.2
    assert suspect.loc[0, "rejected_share"] > 3 * suspect.loc[1, "rejected_share"]
    assert list(suspect.columns) == [
        "image_id",
        "path",
        "rel_path",
        "label",
        "split",
        "n_tuples",
        "n_rejected",
        "rejected_share",
        "mean_z",
    ]
    # no image screens: ordered by mean_z, and the planted image also has the top share
    assert suspect["mean_z"].is_monotonic_decreasing
    assert (
        suspect.sort_values("rejected_share", ascending=False, kind="mergesort")["image_id"].iloc[0]
        == 5
    )

    scores = pd.read_parquet(out / "scores.parquet")
    tuples = pd.read_parquet(build / "tuples.parquet")
    assert list(scores.columns) == TUPLE_COLUMNS + [
        "d_ap",
        "d_an",
        "z_ap",
        "z_neg",
        "boundary_score",
        "boundary_reject",
        "boundary_reason",
        "keep",
        "reason",
    ]
    assert scores["boundary_reject"].eq(~scores["keep"]).all()  # the only screen that ran
    touches = scores[["anchor", "positive", "negative"]].eq(5).any(axis=1)
    # the planted image sits in another class's cluster: its negatives of that class are too
    # close; every rejected tuple contains it, and a fifth of its tuples are rejected
    assert (~scores["keep"]).sum() >= 3 and touches[~scores["keep"]].all()
    assert (~scores.loc[touches, "keep"]).mean() > 0.2
    assert scores["reason"].isna().eq(scores["keep"]).all()

    # brute-force distances and verdicts from the planted embeddings
    b = json.loads((out / "boundary.json").read_text())
    x = emb - emb.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d_ap = np.linalg.norm(x[scores["anchor"]] - x[scores["positive"]], axis=1)
    d_an = np.linalg.norm(x[scores["anchor"]] - x[scores["negative"]], axis=1)
    assert np.allclose(scores["d_ap"], d_ap, atol=1e-5) and np.allclose(
        scores["d_an"], d_an, atol=1e-5
    )
    assert np.array_equal(scores["keep"], (d_ap <= b["t_pos"]) & (d_an >= b["t_neg"]))
    assert np.allclose(scores["z_ap"], (d_ap - b["mu"]) / b["sigma"], atol=1e-4)
    assert np.allclose(scores["z_neg"], (b["mu"] - d_an) / b["sigma"], atol=1e-4)

    kept, rejected = (
        pd.read_parquet(out / "kept.parquet"),
        pd.read_parquet(out / "rejected.parquet"),
    )
    assert list(kept.columns) == list(tuples.columns) == list(rejected.columns)
    assert (
        sorted(kept["tuple_id"].tolist() + rejected["tuple_id"].tolist())
        == tuples["tuple_id"].tolist()
    )
    assert res.n_kept == len(kept) and res.n_rejected == len(rejected)

    # suspicion counts by hand for the planted image
    blamed = (
        ((scores["anchor"] == 5) & ~scores["keep"]).sum()
        + ((scores["positive"] == 5) & (scores["d_ap"] > b["t_pos"])).sum()
        + ((scores["negative"] == 5) & (scores["d_an"] < b["t_neg"])).sum()
    )
    top = suspect.iloc[0]
    assert top["n_rejected"] == blamed and top["n_tuples"] == touches.sum()
    # mean_z by hand: its positive pairs count (d - mu) / sigma, its negative pairs (mu - d) / sigma
    z = pd.concat(
        [
            (scores.loc[scores["anchor"] == 5, "d_ap"] - b["mu"]) / b["sigma"],
            (scores.loc[scores["positive"] == 5, "d_ap"] - b["mu"]) / b["sigma"],
            (b["mu"] - scores.loc[scores["anchor"] == 5, "d_an"]) / b["sigma"],
            (b["mu"] - scores.loc[scores["negative"] == 5, "d_an"]) / b["sigma"],
        ]
    )
    assert top["mean_z"] == pytest.approx(z.mean())

    assert set(b) >= {
        "s",
        "d",
        "center",
        "null",
        "d_null",
        "mu",
        "sigma",
        "alpha_pos",
        "alpha_neg",
        "t_pos",
        "t_neg",
        "nulls",
        "calibration",
        "random_pair_distances",
    }
    assert (
        b["d"] == 16
        and b["null"] == "effective"
        and set(b["nulls"]) == {"theory", "effective", "empirical"}
    )
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "screen" and run["counts"]["kept"] == len(kept)
    assert run["counts"]["rejected_by_reason"] == res.reasons
    assert not (out / "faces.parquet").exists()


def test_quadruplets_score_all_negative_pairs(tmp_path):
    build, images, emb = make_build(tmp_path, kind="quadruplet", per_anchor=3)
    _screen(build, tmp_path / "out", write_embeddings(tmp_path / "e.parquet", images, emb))
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    b = json.loads((tmp_path / "out" / "boundary.json").read_text())
    x = emb - emb.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d_an2 = np.linalg.norm(x[scores["anchor"]] - x[scores["negative2"]], axis=1)
    d_nn2 = np.linalg.norm(x[scores["negative"]] - x[scores["negative2"]], axis=1)
    assert np.allclose(scores["d_an2"], d_an2, atol=1e-5) and np.allclose(
        scores["d_nn2"], d_nn2, atol=1e-5
    )
    close = scores[["d_an", "d_an2", "d_nn2"]].min(axis=1) < b["t_neg"]
    assert close.any()
    assert scores.loc[close, "reason"].str.contains("negative_too_close").all()
    # a tuple whose only close pair is negative-negative2 (two images of the planted cluster)
    only_nn2 = (
        (scores["d_nn2"] < b["t_neg"])
        & (scores["d_an"] >= b["t_neg"])
        & (scores["d_an2"] >= b["t_neg"])
    )
    assert (~scores.loc[only_nn2, "keep"]).all()
    assert "negative2" in pd.read_parquet(tmp_path / "out" / "kept.parquet").columns


def test_raising_alpha_never_keeps_more_tuples_end_to_end(tmp_path):
    build, images, emb = make_build(tmp_path)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    kept = [
        _screen(build, tmp_path / f"o{a}", f, alpha_pos=a, alpha_neg=a).n_kept
        for a in (0.01, 0.05, 0.2, 0.4)
    ]
    assert kept == sorted(kept, reverse=True) and kept[0] > kept[-1]


def test_embeddings_by_path_and_missing_images_are_named(tmp_path):
    build, images, emb = make_build(tmp_path)
    by_path = write_embeddings(tmp_path / "p.parquet", images, emb, by="path")
    a = _screen(build, tmp_path / "a", by_path)
    b = _screen(build, tmp_path / "b", write_embeddings(tmp_path / "i.parquet", images, emb))
    assert a.n_kept == b.n_kept
    rel = pd.DataFrame({"path": images["rel_path"], "embedding": [list(e) for e in emb]})
    rel.to_parquet(tmp_path / "r.parquet")
    assert _screen(build, tmp_path / "c", tmp_path / "r.parquet").n_kept == b.n_kept

    partial = write_embeddings(
        tmp_path / "m.parquet", images.drop(index=[7, 30]), np.delete(emb, [7, 30], axis=0)
    )
    with pytest.raises(CurateError, match="no embedding for 2 of the 48 images") as err:
        _screen(build, tmp_path / "d", partial)
    assert "angry/007.png" in str(err.value) and "sad/006.png" in str(err.value)

    ragged = pd.DataFrame(
        {
            "image_id": images["image_id"],
            "embedding": [list(e[: 16 if i else 15]) for i, e in enumerate(emb)],
        }
    )
    ragged.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(CurateError, match=r"different lengths .*angry/000.png"):
        _screen(build, tmp_path / "e", tmp_path / "x.parquet")
    pd.DataFrame({"id": [1], "vec": [[1.0]]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(CurateError, match="needs an `embedding` column"):
        _screen(build, tmp_path / "f", tmp_path / "bad.parquet")


def test_backbone_path_embeds_once_and_reuses_the_cache(tmp_path):
    import torch

    torch.set_num_threads(1)
    build, images, _ = make_build(tmp_path, per_class=3, per_anchor=2)
    kw = dict(
        backbone="test_resnet", weights="none", skip_faces_screen=True, workers=0, batch_size=8
    )
    first = screen(build, tmp_path / "out", **kw)
    assert first.random_weights and first.n_embedded == 12 and first.n_cached == 0
    assert first.boundary.d == 96
    second = screen(build, tmp_path / "out", **kw)
    assert second.n_embedded == 0 and second.n_cached == 12
    a = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert np.isfinite(a["d_ap"]).all() and first.n_kept == second.n_kept
    assert not (tmp_path / "out" / "embeddings").exists()  # the shared cache holds them
    third = screen(build, tmp_path / "other-out", **kw)  # another --out: the same cache
    assert third.n_embedded == 0 and third.n_cached == 12


def test_amp_embeds_in_bfloat16_on_a_cpu_that_has_it_cached_apart_and_recorded(
    tmp_path, monkeypatch
):
    import torch

    from curate.backbone import CPU_BF16_ENV

    torch.set_num_threads(1)
    build, _, _ = make_build(tmp_path, per_class=3, per_anchor=2)
    kw = dict(
        backbone="test_resnet",
        weights="none",
        skip_faces_screen=True,
        workers=0,
        batch_size=8,
        representation="backbone",
        framing="full",
        cache_dir=tmp_path / "cache",
    )
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    f32 = screen(build, tmp_path / "f32", **kw)
    b16 = screen(build, tmp_path / "b16", amp=True, **kw)
    assert b16.n_embedded == 12 and b16.n_cached == 0  # not the float32 entries
    run = json.loads((tmp_path / "b16" / "run.json").read_text())
    assert run["params"]["amp"] is True
    assert "bfloat16" in run["params"]["representation"]["details"]["precision"]
    assert (
        json.loads((tmp_path / "f32" / "run.json").read_text())["params"]["representation"][
            "details"
        ]["precision"]
        == "float32"
    )
    a = np.stack(pd.read_parquet(tmp_path / "f32" / "embeddings.parquet")["embedding"].to_numpy())
    b = np.stack(pd.read_parquet(tmp_path / "b16" / "embeddings.parquet")["embedding"].to_numpy())
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert not np.array_equal(a, b) and cos.min() > 0.99
    assert f32.n_kept > 0 and b16.n_kept > 0
    monkeypatch.setenv(CPU_BF16_ENV, "0")  # a CPU without native bfloat16: float32, said so
    plain = screen(build, tmp_path / "plain", amp=True, **kw)
    assert plain.n_embedded == 0 and plain.n_cached == 12  # the float32 entries
    assert any("lacks native bfloat16" in n for n in plain.notes)


def test_out_must_differ_from_build_and_build_must_exist(tmp_path):
    build, images, emb = make_build(tmp_path, per_class=3, per_anchor=1)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    with pytest.raises(CurateError, match="is the build folder itself"):
        _screen(build, build, f)
    with pytest.raises(CurateError, match="build folder not found"):
        _screen(tmp_path / "nope", tmp_path / "o", f)
    with pytest.raises(CurateError, match="unknown --null"):
        _screen(build, tmp_path / "o", f, null="literal")


def test_face_screens_reject_tuples_with_a_side_face(tmp_path, monkeypatch):
    build, images, emb = make_build(tmp_path, mislabeled=None)
    side = 20
    seen = {}

    monkeypatch.setattr(face_screen_module, "screen_faces", fake_screen_faces(side, seen))
    res = screen(
        build,
        tmp_path / "out",
        embeddings=write_embeddings(tmp_path / "e.parquet", images, emb),
        max_yaw=40.0,
        null="effective",
        skip_label_screen=True,
        redraw=False,
    )
    # the resolved default reaches the screen (and run.json), not None
    assert seen["n"] == 48 and seen["max_yaw"] == 40.0
    assert seen["max_occlusion"] == face_screen_module.DEFAULT_MAX_OCCLUSION
    assert seen["engine"] is None  # no --ray: faces analysed on this machine
    assert (
        json.loads((tmp_path / "out" / "run.json").read_text())["params"]["max_occlusion"]
        == face_screen_module.DEFAULT_MAX_OCCLUSION
    )
    out = tmp_path / "out"
    scores = pd.read_parquet(out / "scores.parquet")
    has_side = scores[["anchor", "positive", "negative"]].eq(side).any(axis=1)
    assert has_side.any()
    assert (~scores.loc[has_side, "keep"]).all()
    assert scores.loc[has_side, "reason"].str.contains("side_face").all()
    assert not scores.loc[~has_side, "reason"].fillna("").str.contains("side_face").any()
    assert res.reasons["side_face"] == has_side.sum()
    faces = pd.read_parquet(out / "faces.parquet")
    assert (
        len(faces) == 48
        and faces.loc[faces["image_id"] == side, "face_reason"].item() == "side_face"
    )
    by_class = res.outputs["faces"].artifacts["rejects_by_class"]  # shown in the CLI summary
    side_label = images.loc[images["image_id"] == side, "label"].item()
    assert {r["label"]: r["side_face"] for r in by_class}[side_label] == 1
    assert by_class[-1] == {
        "label": "all",
        "images": 48,
        "rejected": 1,
        "share": 1 / 48,
        "side_face": 1,
        "occluded": 0,
        "no_face": 0,
    }
    suspect = pd.read_parquet(out / "images_suspect.parquet")
    top = suspect.iloc[0]
    assert (
        top["image_id"] == side
        and top["rejected_share"] == 1.0
        and top["face_reason"] == "side_face"
    )
    assert {"face_found", "yaw", "occlusion", "face_reject", "face_reason"} <= set(suspect.columns)
    # the side face's tuple partners are not blamed for it
    partner = scores.loc[has_side & (scores["anchor"] != side), "anchor"].iloc[0]
    assert suspect.set_index("image_id").loc[partner, "rejected_share"] < 1.0


def test_skipped_face_screens_leave_no_face_outputs(tmp_path, monkeypatch):
    build, images, emb = make_build(tmp_path, per_class=3, per_anchor=1)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    out = tmp_path / "o"
    out.mkdir()
    (out / "faces.parquet").write_bytes(b"stale")  # from an earlier run with face screens
    (out / "run.json").write_text(
        json.dumps({"command": "screen", "params": {"skip_faces_screen": False}})
    )

    def boom(*a, **k):
        raise AssertionError("the face screen ran although it was skipped")

    monkeypatch.setattr(face_screen_module, "screen_faces", boom)
    res = screen(
        build,
        out,
        embeddings=f,
        skip_faces_screen=True,
        skip_label_screen=True,
        force=True,
        **NO_HYGIENE,
    )
    assert res.screens_run == ["boundary"] and not res.face_screens
    assert not (out / "faces.parquet").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["params"]["screens"] == ["boundary"] and run["params"]["skip_faces_screen"] is True


def test_cli_screen_prints_summary_and_random_weight_warning(tmp_path):
    build, images, emb = make_build(tmp_path)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "screen",
            str(build),
            "--out",
            str(tmp_path / "o"),
            "--embeddings",
            str(f),
            "--skip-faces-screen",
            "--no-report",
            "--alpha-pos",
            "0.1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "kept" in r.output and "negative_too_close" in r.output and "calibration" in r.output
    assert json.loads((tmp_path / "o" / "boundary.json").read_text())["alpha_pos"] == 0.1
    bad = runner.invoke(
        app,
        [
            "screen",
            str(build),
            "--out",
            str(tmp_path / "o2"),
            "--embeddings",
            str(f),
            "--skip-faces-screen",
            "--alpha-neg",
            "1.5",
            "--no-report",
        ],
    )
    assert bad.exit_code == 2 and "alpha_neg must be strictly between 0 and 1" in bad.output
    small, _, _ = make_build(tmp_path / "s", per_class=3, per_anchor=1)
    rw = runner.invoke(
        app,
        [
            "screen",
            str(small),
            "--out",
            str(tmp_path / "o3"),
            "--backbone",
            "test_resnet",
            "--weights",
            "none",
            "--skip-faces-screen",
            "--no-report",
            "--workers",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert rw.exit_code == 0, rw.output
    assert "RANDOM weights" in rw.output


def test_screen_of_an_image_folder_or_a_screen_folder_says_what_to_pass(tmp_path, make_folder):
    root = make_folder({"happy": 2, "sad": 2})
    with pytest.raises(CurateError, match="looks like an image folder") as err:
        screen(root, tmp_path / "o")
    assert "curate build-tuples" in str(err.value)
    build, images, emb = make_build(tmp_path, per_class=3, per_anchor=1)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    _screen(build, tmp_path / "s", f)
    with pytest.raises(CurateError, match="output of `curate screen`") as err:
        screen(tmp_path / "s", tmp_path / "o2")
    assert str(build.resolve()) in str(err.value)


def test_embeddings_file_read_column_wise_still_names_cells_that_are_not_lists(tmp_path):
    build, images, emb = make_build(tmp_path)
    ref = _screen(build, tmp_path / "ref", write_embeddings(tmp_path / "e.parquet", images, emb))
    # an extra image outside the tuples without an embedding is not used, so it does not matter
    extra = pd.DataFrame(
        {
            "image_id": [*images["image_id"], 9999],
            "embedding": [list(map(float, e)) for e in emb] + [None],
        }
    )
    extra.to_parquet(tmp_path / "n.parquet")
    assert _screen(build, tmp_path / "n", tmp_path / "n.parquet").n_kept == ref.n_kept
    pd.DataFrame({"image_id": images["image_id"], "embedding": ["x"] * len(images)}).to_parquet(
        tmp_path / "s.parquet"
    )
    with pytest.raises(CurateError, match="are not lists of numbers for 5 image"):
        _screen(build, tmp_path / "s", tmp_path / "s.parquet")


def test_cli_screen_prints_face_rejections_per_class(tmp_path, monkeypatch):
    build, images, emb = make_build(tmp_path, mislabeled=None)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    side = 20
    monkeypatch.setattr(face_screen_module, "screen_faces", fake_screen_faces(side))
    r = CliRunner().invoke(
        app,
        [
            "screen",
            str(build),
            "--out",
            str(tmp_path / "o"),
            "--embeddings",
            str(f),
            "--max-yaw",
            "40",
            "--skip-label-screen",
            "--no-report",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "face-rejected images by class" in r.output
    side_label = images.loc[images["image_id"] == side, "label"].item()
    row = next(line for line in r.output.splitlines() if line.strip().startswith(side_label))
    n = int((images["label"] == side_label).sum())
    cells = [c.strip() for c in row.split("\u2502")]
    assert cells[1:] == [str(n), "1", f"{1 / n:.1%}", "1", "0", "0"], row


def test_tuple_members_are_the_used_images_in_id_order_and_each_roles_row():
    from curate.screen import tuple_members

    images = pd.DataFrame({"image_id": [9, 3, 5, 7, 1], "label": ["a", "b", "c", "d", "e"]})
    tuples = pd.DataFrame(
        {"tuple_id": [0, 1], "anchor": [7, 3], "positive": [3, 9], "negative": [9, 7]}
    )
    used, rows = tuple_members(images, tuples)
    assert used["image_id"].tolist() == [3, 7, 9]  # image 5 and 1 are in no tuple
    assert used["label"].tolist() == ["b", "d", "a"]
    assert set(rows) == {"anchor", "positive", "negative"}
    for role, r in rows.items():  # every tuple's member found at its row
        assert used["image_id"].to_numpy()[r].tolist() == tuples[role].tolist()
