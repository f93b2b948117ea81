"""bench.experiments.arm_faces: accuracy split by the face screens' verdict."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.experiments.arm_faces import accuracy_by_verdict


def test_accuracy_by_verdict_splits_kept_and_rejected_faces(tmp_path) -> None:
    paths = [str(tmp_path / f"{i}.png") for i in range(5)]
    preds = pd.DataFrame(
        {
            "path": paths,
            "label": ["happy", "sad", "sad", "fear", "happy"],
            "prediction": ["happy", "sad", "happy", "fear", "sad"],
        }
    )
    faces = pd.DataFrame(
        {"path": paths[:4], "face_reject": [False, False, True, True]}
    )  # the last image has no verdict: it counts in "all" only
    got = accuracy_by_verdict(preds, faces)
    assert got["all"] == pytest.approx(3 / 5)
    assert got["kept"] == pytest.approx(1.0)
    assert got["rejected"] == pytest.approx(1 / 2)
    assert got["rejected_share"] == pytest.approx(2 / 4)
    none_rejected = accuracy_by_verdict(preds, faces.assign(face_reject=False))
    assert math.isnan(none_rejected["rejected"]) and none_rejected["rejected_share"] == 0
