"""Tuple rules from issue 2, each asserted on every sampled tuple."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.build import build_tuples
from curate.errors import CurateError
from curate.tuples import sample_tuples


def synthetic_images(
    n_per_class: dict[str, int],
    *,
    splits: tuple[str | None, ...] = (None,),
    n_subjects: int | None = None,
    bad_every: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """An images table without files: rows as ingest would write them."""
    rng = np.random.default_rng(seed)
    rows = []
    for split in splits:
        for cls, n in n_per_class.items():
            for i in range(n):
                status = "ok" if not bad_every or (len(rows) % bad_every) else "corrupt"
                rows.append(
                    {
                        "label": cls,
                        "split": split,
                        "status": status,
                        "subject": None if n_subjects is None else f"p{rng.integers(n_subjects)}",
                        "sha256": f"{split}-{cls}-{i}",
                    }
                )
    df = pd.DataFrame(rows, columns=["label", "split", "status", "subject", "sha256"])
    df.insert(0, "image_id", np.arange(len(df), dtype=np.int64))
    return df


def check_rules(images: pd.DataFrame, tuples: pd.DataFrame, kind: str = "triplet") -> None:
    """Every rule of issue 2, on every tuple."""
    info = images.set_index("image_id")
    members = ["anchor", "positive", "negative"] + (["negative2"] if kind == "quadruplet" else [])
    lab = {m: info.loc[tuples[m], "label"].to_numpy() for m in members}
    split = {m: info.loc[tuples[m], "split"].astype(object).to_numpy() for m in members}
    for m in members:
        assert (info.loc[tuples[m], "status"] == "ok").all(), f"{m} not ok"
        same_split = (
            pd.Series(split[m]).fillna("~").to_numpy()
            == pd.Series(split["anchor"]).fillna("~").to_numpy()
        )
        assert same_split.all(), f"{m} from another split"
    assert (lab["anchor"] == lab["positive"]).all()
    assert (tuples["anchor"] != tuples["positive"]).all()
    sha = info["sha256"]
    assert (sha.loc[tuples["anchor"]].to_numpy() != sha.loc[tuples["positive"]].to_numpy()).all()
    assert (lab["negative"] != lab["anchor"]).all()
    assert (tuples["anchor_label"].to_numpy() == lab["anchor"]).all()
    assert (tuples["negative_label"].to_numpy() == lab["negative"]).all()
    if kind == "quadruplet":
        assert (lab["negative2"] != lab["anchor"]).all()
        assert (lab["negative2"] != lab["negative"]).all()
        assert (tuples["negative2_label"].to_numpy() == lab["negative2"]).all()
    assert tuples["tuple_id"].tolist() == list(range(len(tuples)))


@pytest.mark.parametrize("kind", ["triplet", "quadruplet"])
def test_rules_hold_with_splits_and_bad_images(kind: str) -> None:
    images = synthetic_images(
        {"a": 30, "b": 5, "c": 12, "d": 1}, splits=("train", "val"), bad_every=7
    )
    tuples, stats = sample_tuples(images, kind=kind, per_anchor=3, seed=1)
    check_rules(images, tuples, kind)
    ok = images[images["status"].eq("ok")]
    eligible = ok.groupby(["split", "label"]).size()
    expected = 3 * eligible[eligible >= 2].sum()
    assert len(tuples) == expected  # every eligible image is the anchor of K tuples
    assert set(tuples["split"]) == {"train", "val"}
    assert "train/d" in stats.classes_without_anchors
    if kind == "quadruplet":
        assert {"negative2", "negative2_label"} <= set(tuples.columns)
    else:
        assert "negative2" not in tuples.columns


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=12), min_size=3, max_size=6),
    per_anchor=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["triplet", "quadruplet"]),
)
def test_rules_property(counts: list[int], per_anchor: int, seed: int, kind: str) -> None:
    images = synthetic_images({f"c{i}": n for i, n in enumerate(counts)}, splits=("s1", None))
    nonempty = sum(n > 0 for n in counts)
    try:
        tuples, _ = sample_tuples(images, kind=kind, per_anchor=per_anchor, seed=seed)
    except CurateError:
        need = 3 if kind == "quadruplet" else 2
        assert nonempty < need or not any(n >= 2 for n in counts)
        return
    check_rules(images, tuples, kind)


def test_seed_determinism_and_variation(tmp_path: Path, make_folder) -> None:
    root = make_folder({"happy": 8, "sad": 8, "angry": 8})
    a = build_tuples(root, tmp_path / "a", seed=3, workers=1)
    build_tuples(root, tmp_path / "b", seed=3, workers=1)
    c = build_tuples(root, tmp_path / "c", seed=4, workers=1)
    assert (tmp_path / "a" / "tuples.parquet").read_bytes() == (
        tmp_path / "b" / "tuples.parquet"
    ).read_bytes()
    assert (tmp_path / "a" / "images.parquet").read_bytes() == (
        tmp_path / "b" / "images.parquet"
    ).read_bytes()
    assert not a.tuples.equals(c.tuples)
    assert a.run["inputs"]["fingerprint"] == c.run["inputs"]["fingerprint"]


def test_max_tuples_and_balance() -> None:
    images = synthetic_images({"a": 100, "b": 10, "c": 40})
    capped, _ = sample_tuples(images, per_anchor=2, max_tuples=50, seed=0)
    assert len(capped) == 50
    check_rules(images, capped)
    bal, _ = sample_tuples(images, per_anchor=2, balance_classes=True, seed=0)
    assert bal["anchor_label"].value_counts().to_dict() == {"a": 20, "b": 20, "c": 20}
    check_rules(images, bal)
    bal_cap, _ = sample_tuples(images, balance_classes=True, max_tuples=9, seed=0)
    assert sorted(bal_cap["anchor_label"].value_counts().tolist()) == [3, 3, 3]


def test_positive_other_subject_and_negative_same_subject() -> None:
    images = synthetic_images({"happy": 40, "sad": 40, "angry": 40}, n_subjects=6, seed=2)
    # a subject that appears in one class only: no same-subject negative possible
    images.loc[len(images)] = {
        "image_id": len(images),
        "label": "happy",
        "split": None,
        "status": "ok",
        "subject": "loner",
        "sha256": "x1",
    }
    images.loc[len(images)] = {
        "image_id": len(images),
        "label": "happy",
        "split": None,
        "status": "ok",
        "subject": "loner",
        "sha256": "x2",
    }
    tuples, stats = sample_tuples(images, positive_subject="other", negative_subject="same", seed=0)
    check_rules(images, tuples)
    subj = images.set_index("image_id")["subject"]
    pos_other = subj.loc[tuples["anchor"]].to_numpy() != subj.loc[tuples["positive"]].to_numpy()
    neg_same = subj.loc[tuples["anchor"]].to_numpy() == subj.loc[tuples["negative"]].to_numpy()
    assert stats.positive_subject_honoured == int(pos_other.sum()) == len(tuples)
    assert stats.negative_subject_honoured == int(neg_same.sum())
    loner = subj.loc[tuples["anchor"]].to_numpy() == "loner"
    assert not neg_same[loner].any() and neg_same[~loner].all()


def test_subject_options_need_subject_column() -> None:
    images = synthetic_images({"a": 3, "b": 3})
    with pytest.raises(CurateError, match="subject column"):
        sample_tuples(images, positive_subject="other")


def test_quadruplet_needs_three_classes() -> None:
    with pytest.raises(CurateError, match="no split has enough classes"):
        sample_tuples(synthetic_images({"a": 3, "b": 3}), kind="quadruplet")


def test_tuples_round_trip_parquet(tmp_path: Path) -> None:
    images = synthetic_images({"a": 6, "b": 6, "c": 6}, splits=("train",))
    t, _ = sample_tuples(images, kind="quadruplet", seed=0)
    t.to_parquet(tmp_path / "t.parquet", index=False)
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back.astype(str).equals(t.astype(str))
    assert back["anchor"].dtype == np.int64
