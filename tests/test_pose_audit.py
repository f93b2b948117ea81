"""The second blind pose audit (bench/audit/face_conditions_pose_audit2.csv) is self-consistent,
the side-face rates over it are weighted by its strata, and its second annotator's agreement
and consensus are computed as documented."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.derivations.yaw_threshold import (
    adjudicated,
    cohen_kappa,
    confusion,
    consensus,
    pose_audit2,
    rates,
    second_annotator,
)

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


def test_second_annotator_labelled_every_face() -> None:
    a = audit2()
    assert a["pose_b"].notna().all()
    assert set(a["pose_b"]) <= {0, 1, 2}
    assert list(a.columns) == [
        "path",
        "stratum",
        "stratum_size",
        "stratum_audited",
        "pose",
        "pose_again",
        "pose_b",
        "pose_c",
    ]


def test_third_annotator_labelled_the_disagreements_and_some_agreements() -> None:
    """pose_c is set on every face where A and B disagree, plus 60 where they agree, and
    nowhere else; so every face has an adjudicated label."""
    a = audit2()
    split = a["pose"] != a["pose_b"]
    assert a.loc[split, "pose_c"].notna().all()
    assert a.loc[~split, "pose_c"].notna().sum() == 60
    assert set(a["pose_c"].dropna()) <= {0, 1, 2}
    adj = adjudicated(a)
    assert adj[~split].equals(a.loc[~split, "pose"].astype(int))


def test_adjudicated_is_the_median_of_three() -> None:
    d = pd.DataFrame(
        {
            "pose": [0, 0, 2, 0, 1],
            "pose_b": [0, 2, 1, 2, 1],
            "pose_c": [np.nan, 2, 2, 1, 0],
        }
    )
    # agreed (C absent), C sides with B, C sides with A, all three differ, agreed (C ignored)
    assert adjudicated(d).tolist() == [0, 2, 2, 1, 1]
    with pytest.raises(SystemExit, match="1 faces where pose and pose_b disagree have no pose_c"):
        adjudicated(d.assign(pose_c=[np.nan, np.nan, 2, 1, 0]))


def test_cohen_kappa() -> None:
    a, b = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    # observed 0.75; chance 0.5 * 0.25 + 0.5 * 0.75 = 0.5
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    # a weight of 2 is the face counted twice
    w = np.array([2.0, 1, 1, 1])
    assert cohen_kappa(a, b, w) == pytest.approx(cohen_kappa(np.r_[0, a], np.r_[0, b]))
    assert confusion(a, b).tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_consensus_keeps_only_agreed_extremes() -> None:
    a = pd.Series([0, 0, 2, 2, 1, 0])
    b = pd.Series([0, 1, 2, 1, 1, 2])
    assert consensus(a, b).tolist() == [0, -1, 2, -1, -1, -1]
    d = pd.DataFrame(
        {"pose": consensus(a, b), "yaw": [0.0, 40, 40, 0, 40, 40], "face_found": True, "w": 1.0}
    )
    r = rates(d, 25)
    assert r["turned"] == 1.0 and r["frontal"] == 0.0


def test_second_annotator_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With a yaw that puts exactly B's clearly turned faces over every threshold, B's recall is
    1 and B's frontal share 0 at each; the consensus too."""
    a = audit2()
    data = tmp_path / "data"
    faces = pd.DataFrame(
        {
            "path": [str(data / p) for p in a["path"]],
            "face_found": True,
            "yaw": np.where(a["pose_b"] == 2, -45.0, 5.0),
        }
    )
    second_annotator(faces, 25, data)
    out = capsys.readouterr().out.splitlines()
    m = confusion(a["pose"], a["pose_b"]).astype(int)
    assert f"agreement {np.trace(m) / m.sum():.3f}" in out[0]
    rows = [x for x in out if x.strip().split()[0] in {"20", "22", "25", "30"}]
    assert len(rows) == 4 and rows[2].endswith("<- default")
    for row in rows:
        cells = re.findall(r"\d\.\d{3} / \d\.\d{3} \| \d\.\d{3} / \d\.\d{3}", row)
        assert len(cells) == 4  # A, B, A and B, adjudicated
        assert cells[1] == cells[2] == "1.000 / 0.000 | 1.000 / 0.000"
