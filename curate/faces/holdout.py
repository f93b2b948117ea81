"""The dev / holdout split of every labelled face set used to tune the face screens, and the
faces the occlusion-weights recipe (:mod:`curate.faces.fit_occlusion`) must never see.

A face is in the HOLDOUT part when the first 8 hex digits of the SHA-256 of its file
name (the base name, e.g. ``fer0032220.png`` or ``Training_10118481.jpg``, UTF-8), read
as an integer and divided by 2**32, fall below the set's share:

| set | holdout share |
|---|---|
| face-conditions (``../shared/data/face-conditions``) | 0.5 |
| hand labels of FER2013 training faces (``bench/audit/fer2013_train_occlusion_labels.csv``) | 0.3 |
| blind pose audit (``bench/audit/pose_audit.csv``), every source | 0.5 |
| ``fer2013/val`` images (the same rule as the audit's ``fer2013/val`` faces) | 0.5 |
| taiwanese-posed performers (``subject``, by :func:`holdout_subjects`) | half |

Nothing in the holdout parts is used to fit or choose anything (weights, thresholds,
recipes); they are only measured. A training face that is a near-duplicate of a holdout
face (FER2013 holds the same face under several names: mean absolute grey difference
below 4 on the 48x48 image) is dropped from training as well (:func:`kept_out_of_fitting`;
the pairs come from ``bench/audit/near_duplicates.py``, see ``bench/audit/README.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

SHARES = {
    "face-conditions": 0.5,
    "fer2013_train_labels": 0.3,
    "pose_audit": 0.5,
    "fer2013_val": 0.5,
}
TRAIN_LABELS = "fer2013_train_occlusion_labels.csv"
NEAR_DUPLICATES = "near_duplicates.csv"


def split_key(name: str) -> float:
    """The face's position in [0, 1): SHA-256 of its base file name, first 32 bits."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    return int(hashlib.sha256(base.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def is_holdout(names: Iterable[str], share: float) -> np.ndarray:
    """Boolean array: which ``names`` fall in the holdout part of a set with ``share``."""
    return np.array([split_key(n) < share for n in names], dtype=bool)


def holdout_subjects(subjects: Iterable[str]) -> set[str]:
    """The holdout half of a set split by person (taiwanese-posed's ``subject``): the
    ``ceil(n / 2)`` distinct subjects with the lowest :func:`split_key` of their name.
    (The plain 0.5 share would split its 14 performers 9 / 5.)"""
    names = sorted(set(subjects), key=split_key)
    return set(names[: (len(names) + 1) // 2])


# taiwanese-posed (../shared/data/taiwanese-posed, 14 performers): the representation work
# (bench/quality/quality_real_photos.py) tunes on the DEV performers only and reports the
# HOLDOUT performers apart. Fixed before any tuning: the seven performers whose SHA-256 of
# the subject name (``P01``, UTF-8) sorts first are the holdout part.
def taiwanese_holdout_subjects(subjects: Iterable[str]) -> set[str]:
    """The holdout half of the performers ``subjects`` (the first half by SHA-256 of the name)."""
    names = sorted(set(subjects), key=lambda s: hashlib.sha256(str(s).encode("utf-8")).hexdigest())
    return set(names[: len(names) // 2])


def holdout_faces(audit: Path, data: Path) -> set[str]:
    """Every holdout face, as a path relative to the data folder ``data``
    (``face-conditions/images/...``, ``fer2013/train/...``); ``audit`` holds the hand labels
    of FER2013 training faces (``bench/audit``)."""
    import pandas as pd

    labels = pd.read_csv(Path(audit) / TRAIN_LABELS)
    train = {
        "fer2013/train/" + p
        for p in labels.loc[is_holdout(labels["path"], SHARES["fer2013_train_labels"]), "path"]
    }
    fc = pd.read_csv(Path(data) / "face-conditions" / "labels.csv")["path"]
    return train | {"face-conditions/" + p for p in fc[is_holdout(fc, SHARES["face-conditions"])]}


def with_near_duplicates(faces: set[str], pairs) -> set[str]:
    """``faces`` and every face linked to one of them by a row of ``pairs`` (columns ``a``,
    ``b``), followed transitively."""
    out = set(faces)
    grew = True
    while grew:
        hit = pairs["a"].isin(out) | pairs["b"].isin(out)
        new = set(pairs.loc[hit, "a"]) | set(pairs.loc[hit, "b"])
        grew = not new <= out
        out |= new
    return out


def kept_out_of_fitting(audit: Path, data: Path) -> set[str]:
    """FER2013 training faces (paths relative to ``fer2013/train``) that fitting must not
    see: the holdout hand labels and every near-duplicate of a holdout face
    (``audit/near_duplicates.csv``, followed transitively)."""
    import pandas as pd

    out = with_near_duplicates(
        holdout_faces(audit, data), pd.read_csv(Path(audit) / NEAR_DUPLICATES)
    )
    return {p.removeprefix("fer2013/train/") for p in out if p.startswith("fer2013/train/")}
