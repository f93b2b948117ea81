"""The second blind pose audit (bench/audit/face_conditions_pose_audit2.csv) is self-consistent,
and the side-face rates over it are weighted by its strata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.derivations.yaw_threshold import pose_audit2, rates

AUDIT = Path(__file__).resolve().parents[1] / "bench" / "audit"


def audit2() -> pd.DataFrame:
    return pd.read_csv(AUDIT / "face_conditions_pose_audit2.csv")


def test_strata_are_consistent() -> None:
    a = audit2()
    assert a["path"].is_unique
    assert set(a["pose"]) <= {0, 1, 2}
    assert set(a["pose_again"].dropna()) <= {0, 1, 2}
    for _, g in a.groupby("stratum"):
        assert g["stratum_audited"].nunique() == 1 and g["stratum_size"].nunique() == 1
        assert len(g) == g["stratum_audited"].iloc[0] <= g["stratum_size"].iloc[0]
    # faces of neither earlier audit
    earlier = set(pd.read_csv(AUDIT / "face_audit.csv")["path"]) | set(
        "face-conditions/" + pd.read_csv(AUDIT / "face_conditions_pose_audit.csv")["path"]
    )
    assert not set(a["path"]) & earlier


def test_pool_is_every_other_face(shared_data: Path) -> None:
    """The strata sizes add up to the face-conditions faces in neither earlier audit."""
    a = audit2()
    labels = pd.read_csv(shared_data / "face-conditions" / "labels.csv")
    fc = set("face-conditions/" + labels["path"])
    assert set(a["path"]) <= fc
    earlier = set(pd.read_csv(AUDIT / "face_audit.csv")["path"]) | set(
        "face-conditions/" + pd.read_csv(AUDIT / "face_conditions_pose_audit.csv")["path"]
    )
    assert a.groupby("stratum")["stratum_size"].first().sum() == len(fc - earlier)


def test_rates_weigh_each_face_by_its_stratum(tmp_path: Path) -> None:
    """Two clearly turned faces, one caught: recall is the caught face's share of the weight."""
    a = audit2()
    data = tmp_path / "data"
    faces = pd.DataFrame(
        {
            "path": [str(data / p) for p in a["path"]],
            "face_found": True,
            "yaw": 0.0,
        }
    )
    p = pose_audit2(faces, data)
    assert np.allclose(p["w"], a["stratum_size"] / a["stratum_audited"])
    big, small = p["w"].idxmax(), p["w"].idxmin()
    assert p.loc[big, "w"] > p.loc[small, "w"]
    p["pose"] = 0
    p.loc[[big, small], "pose"] = 2
    p.loc[big, "yaw"] = 40.0
    r = rates(p, 25)
    want = p.loc[big, "w"] / (p.loc[big, "w"] + p.loc[small, "w"])
    assert r["turned"] == pytest.approx(want)
    assert r["frontal"] == 0.0
