"""Tests of curate evaluate and curate predict: metrics against hand counts, sources,
unknown classes, missing images, inputs by folder and glob, CLI output."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import CLASSES, make_build, tiny_config
from typer.testing import CliRunner

from curate.errors import CurateError, CurateWarning
from curate.train.evaluate import classification_metrics, evaluate, expand_inputs, predict
from curate.train.loop import finetune

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    build = make_build(root, per_class_train=8, per_class_val=4, seed=5)
    run = finetune(build, root / "run", tiny_config(epochs=3)).run_dir
    return root, build, run


def test_metrics_match_hand_counts():
    classes = ["a", "b", "c", "d"]
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 1])
    m = classification_metrics(y_true, y_pred, classes)
    assert m["accuracy"] == pytest.approx(5 / 9)
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [1, 1, 2, 0], [0, 0, 0, 0]]
    # a: P 2/3 R 2/3; b: P 1/3 R 1/2; c: P 2/3 R 1/2; d: absent from truth and predictions
    f1 = [2 / 3, 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2), 2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2)]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    per = {r["class"]: r for r in m["per_class"]}
    assert per["a"]["accuracy"] == pytest.approx(2 / 3) and per["c"]["accuracy"] == pytest.approx(
        0.5
    )
    assert per["d"]["n"] == 0 and per["d"]["accuracy"] is None


def test_metrics_agree_with_scikit_learn_when_available():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    m = classification_metrics(y_true, y_pred, list("abcde"))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro"))
    assert m["confusion"] == sk.confusion_matrix(y_true, y_pred).tolist()


def test_evaluate_on_folder_and_build_agree_with_their_predictions(setup):
    root, build, run = setup
    res = evaluate(run, root / "images" / "val", device="cpu")
    m = res.metrics
    assert m["n_images"] == 12 and m["classes"] == list(CLASSES)
    preds = res.predictions
    assert m["accuracy"] == pytest.approx((preds["prediction"] == preds["label"]).mean())
    assert np.asarray(m["confusion"]).sum() == 12
    assert [r["n"] for r in m["per_class"]] == [4, 4, 4]
    res_b = evaluate(run, build, split="val", device="cpu")
    assert res_b.metrics["accuracy"] == pytest.approx(m["accuracy"])
    assert res_b.to_dict()["split"] == "val"
    with pytest.raises(CurateError, match="no images of split 'test'"):
        evaluate(run, build, split="test", device="cpu")


def test_unknown_class_at_evaluation_is_a_clear_error(setup, tmp_path: Path):
    root, build, run = setup
    images = pd.read_parquet(build / "images.parquet")
    val = images[images["split"] == "val"][["path", "label"]].copy()
    val.loc[val.index[:2], "label"] = "contempt"
    manifest = tmp_path / "m.csv"
    val.to_csv(manifest, index=False)
    with pytest.raises(
        CurateError, match=r"classes the run was not trained on: 'contempt' \(2 images\)"
    ) as exc:
        evaluate(run, manifest, device="cpu")
    assert "--skip-unknown-classes" in str(exc.value)
    res = evaluate(run, manifest, device="cpu", skip_unknown_classes=True)
    assert res.metrics["n_images"] == 10 and res.skipped == {"unknown_class:contempt": 2}


def test_missing_image_at_evaluation_is_a_clear_error(setup, tmp_path: Path):
    _, build, run = setup
    images = pd.read_parquet(build / "images.parquet")
    val = images[images["split"] == "val"][["path", "label"]].copy()
    val.loc[val.index[0], "path"] = str(tmp_path / "gone.png")
    manifest = tmp_path / "m.csv"
    val.to_csv(manifest, index=False)
    with pytest.raises(
        CurateError, match=r"1 image\(s\) .* cannot be evaluated.*gone.png: missing"
    ):
        evaluate(run, manifest, device="cpu")


def test_predict_folders_and_globs_gives_probabilities(setup):
    root, _, run = setup
    folder = root / "images" / "val" / "happy"
    table = predict(
        run, [str(folder), str(root / "images" / "val" / "sad" / "*.png")], device="cpu"
    )
    assert len(table) == 8
    probs = table[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert (table["prediction"] == [CLASSES[i] for i in probs.argmax(1)]).all()
    assert np.allclose(table["confidence"], probs.max(axis=1))
    # same image twice (file and folder) is predicted once
    again = predict(run, [str(folder / "happy_000.png"), str(folder)], device="cpu")
    assert len(again) == 4
    with pytest.raises(CurateError, match="matches no file"):
        expand_inputs([str(root / "nope" / "*.png")])
    with pytest.raises(CurateError, match="image not found"):
        expand_inputs([str(root / "nope.png")])


def test_cli_evaluate_and_predict(setup, tmp_path: Path):
    from curate.cli import app

    root, _, run = setup
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(run),
            str(root / "images" / "val"),
            "--device",
            "cpu",
            "--out-file",
            str(tmp_path / "e.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        "macro" in res.output
        and "confusion matrix" in res.output
        and "deprecated" not in res.output
    )
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["n_images"] == 12 and 0 <= data["accuracy"] <= 1
    # --json prints the metrics as JSON, as it prints predict's records
    res = runner.invoke(
        app, ["evaluate", str(run), str(root / "images" / "val"), "--device", "cpu", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == data
    # --json FILE, the earlier spelling of --out-file FILE, still writes the file, with a warning
    with warnings.catch_warnings():
        warnings.simplefilter("always", CurateWarning)
        res = runner.invoke(
            app,
            [
                "evaluate",
                str(run),
                str(root / "images" / "val"),
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "old.json"),
            ],
        )
    assert res.exit_code == 0, res.output
    assert "warning: --json FILE is deprecated in curate evaluate: use --out-file" in res.output
    assert "confusion matrix" in res.output  # the tables, as before
    assert json.loads((tmp_path / "old.json").read_text()) == data
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(run),
            str(root / "images" / "val"),
            "--json",
            str(tmp_path / "a.json"),
            "--out-file",
            str(tmp_path / "b.json"),
        ],
    )
    assert res.exit_code == 2 and "give --out-file only" in res.output
    res = runner.invoke(app, ["evaluate", str(run), str(root / "images" / "val"), "stray"])
    assert res.exit_code == 2 and "unexpected argument(s): stray" in res.output
    res = runner.invoke(
        app,
        ["predict", str(run), str(root / "images" / "val" / "angry"), "--json", "--device", "cpu"],
    )
    assert res.exit_code == 0, res.output
    records = json.loads(res.output)
    assert len(records) == 4 and {"path", "prediction", "confidence", "p_angry"} <= set(records[0])
    res = runner.invoke(app, ["evaluate", str(tmp_path / "no_run"), str(root / "images" / "val")])
    assert res.exit_code == 2 and "run folder not found" in res.output
