"""The dev / holdout rule (curate.faces.holdout): fixed by the file name's hash, so every
script and the occlusion recipe split alike; copies of holdout faces stay out of fitting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from curate.faces import holdout

ROOT = Path(__file__).resolve().parents[1]


def test_split_key_is_the_base_names_hash() -> None:
    expected = int(hashlib.sha256(b"Training_10118481.jpg").hexdigest()[:8], 16) / 2**32
    assert holdout.split_key("happy/Training_10118481.jpg") == expected
    assert holdout.split_key("a\\b\\Training_10118481.jpg") == expected
    names = [f"fer{i:07d}.png" for i in range(2000)]
    share = holdout.is_holdout(names, 0.3).mean()
    assert 0.26 < share < 0.34
    assert not holdout.is_holdout(names, 0.0).any() and holdout.is_holdout(names, 1.0).all()


def test_subjects_split_in_halves() -> None:
    subjects = [f"P{i:02d}" for i in range(1, 15)]
    hold = holdout.holdout_subjects(subjects * 3)
    assert len(hold) == 7 and hold == set(sorted(subjects, key=holdout.split_key)[:7])
    assert len(holdout.holdout_subjects(subjects[:5])) == 3
    assert len(holdout.taiwanese_holdout_subjects(subjects)) == 7


def test_kept_out_follows_near_duplicates(tmp_path: Path) -> None:
    names = [f"happy/Training_{i}.jpg" for i in range(200)]
    held = [n for n in names if holdout.is_holdout([n], 0.3)[0]]
    dev = [n for n in names if n not in held]
    pd.DataFrame({"path": names, "occluded": 0}).to_csv(
        tmp_path / holdout.TRAIN_LABELS, index=False
    )
    # a chain: holdout face -> copy -> copy of the copy; and a pair of two dev faces
    chain = [
        "fer2013/train/" + held[0],
        "fer2013/train/sad/Training_x.jpg",
        "fer2013/val/sad/Val_y.jpg",
        "fer2013/train/sad/Training_z.jpg",
    ]
    pairs = pd.DataFrame(
        {
            "a": chain[:3] + ["fer2013/train/" + dev[0]],
            "b": chain[1:] + ["fer2013/train/" + dev[1]],
            "mad": 1.0,
        }
    )
    pairs.to_csv(tmp_path / holdout.NEAR_DUPLICATES, index=False)
    data = tmp_path / "data"
    (data / "face-conditions").mkdir(parents=True)
    pd.DataFrame({"path": ["images/fer0000001.png"]}).to_csv(
        data / "face-conditions" / "labels.csv", index=False
    )
    out = holdout.kept_out_of_fitting(tmp_path, data)
    assert out == set(held) | {"sad/Training_x.jpg", "sad/Training_z.jpg"}
    assert dev[0] not in out and dev[1] not in out


def test_the_split_of_the_committed_hand_labels() -> None:
    labels = pd.read_csv(ROOT / "bench" / "audit" / holdout.TRAIN_LABELS)
    share = holdout.is_holdout(labels["path"], holdout.SHARES["fer2013_train_labels"]).mean()
    assert 0.27 < share < 0.33
