"""bench.experiments.arm_classes: the per-expression tables of the real-noise arms."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.experiments.arm_classes import (
    class_table,
    find_runs,
    paired_differences,
    suppression_table,
)


def test_class_table_counts_predictions_by_column() -> None:
    metrics = {
        "classes": ["happy", "sad"],
        "confusion": [[3, 1], [2, 0]],  # rows: true label, columns: predicted
        "per_class": [{"f1": 0.67}, {"f1": None}],
    }
    t = class_table(metrics)
    assert t["n"].tolist() == [4, 2]
    assert t["predicted"].tolist() == [5, 1]
    assert t["f1"].tolist() == [0.67, 0.0]  # a class never predicted right has no F1: 0


def test_suppression_table_shares(tmp_path) -> None:
    pd.DataFrame(
        {
            "anchor_label": ["happy"] * 4 + ["fear"] * 4,
            "suppressed": [False] * 4 + [True, True, True, False],
        }
    ).to_parquet(tmp_path / "mined_triplets.parquet")
    t = suppression_table(tmp_path).set_index("label")
    assert t.loc["fear", "suppressed"] == pytest.approx(0.75)
    assert t.loc["fear", "share_batch"] == pytest.approx(0.5)
    assert t.loc["fear", "share_ce"] == pytest.approx(1 / 5)  # 1 of the 5 images left in the loss
    pd.DataFrame({"anchor_label": ["happy"], "kept": [True]}).to_parquet(
        tmp_path / "mined_triplets.parquet"
    )
    assert suppression_table(tmp_path) is None  # recorded before suppression existed


def test_find_runs_first_folder_wins_and_skips_unfinished(tmp_path) -> None:
    for work, run, done in [
        ("a", "bh_s0", True),
        ("a", "bh_s1", False),
        ("b", "bh_s0", True),
        ("b", "bh_s1", True),
        ("b", "ce_s0", True),
    ]:
        d = tmp_path / work / "runs" / run
        d.mkdir(parents=True)
        if done:
            (d / "model.safetensors").write_bytes(b"")
    runs = find_runs([tmp_path / "a", tmp_path / "b"], ["bh"])
    assert runs[["arm", "seed"]].values.tolist() == [["bh", 0], ["bh", 1]]
    assert runs["run"].tolist() == [tmp_path / "a/runs/bh_s0", tmp_path / "b/runs/bh_s1"]


def test_paired_differences_by_seed_in_points() -> None:
    runs = pd.DataFrame(
        {
            "arm": ["bh", "bh", "bh", "full", "full", "full", "full"],
            "seed": [0, 1, 2, 0, 1, 2, 3],  # seed 3 has no bh run: left out
            "accuracy": [0.50, 0.60, 0.55, 0.52, 0.61, 0.54, 0.90],
            "macro_f1": [0.30, 0.30, 0.30, 0.31, 0.33, 0.32, 0.90],
        }
    )
    d = paired_differences(runs, "bh").set_index("arm").loc["full"]
    assert d["seeds"] == 3
    assert d["accuracy"] == pytest.approx((2 + 1 - 1) / 3)
    assert d["accuracy_se"] == pytest.approx(pd.Series([2.0, 1.0, -1.0]).std() / 3**0.5)
    assert d["accuracy_ahead"] == 2
    assert d["macro_f1"] == pytest.approx(2.0)
    assert d["macro_f1_ahead"] == 3
