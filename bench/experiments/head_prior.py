"""Does dividing the network head's training class prior out of its probabilities help?

The label screen multiplies two judges' class probabilities: the representation's evidence
(then the dataset's EM class priors) and the network head's (``curate.representations.head``).
The bundled ``ferplus_resnet10t`` head learned FERPlus's vote distributions, whose mean over
FER2013 Training is about neutral 0.33, happy 0.26, sad 0.15, surprise 0.12, angry 0.09,
fear 0.04, disgust 0.02, so its probabilities carry that prior; on the colour portraits of
``taiwanese-posed`` the suggested labels lean to neutral, happy and sad. The Bayes-correct
product of two judges divides one prior out (``p(y | x1, x2) ~ p(y | x1) p(y | x2) / pi(y)``).

This script runs ``bench/quality/quality_real_photos.py`` (``--sets taiwanese,fer2013``) with
the head's probabilities divided by that training prior and renormalised (before the head's
temperature is fitted, so both the label ranking and ``suggested_confidence`` see it).
Compare with the same command without ``--divide-prior``.

Usage::

    python -m bench.experiments.head_prior --out DIR [--divide-prior]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import DATA

FERPLUS_VOTES = {
    "angry": "votes_anger",
    "disgust": "votes_disgust",
    "fear": "votes_fear",
    "happy": "votes_happiness",
    "neutral": "votes_neutral",
    "sad": "votes_sadness",
    "surprise": "votes_surprise",
}


def ferplus_training_prior(data: Path = DATA) -> dict[str, float]:
    """The mean of the normalised seven-class FERPlus votes over FER2013 Training: the class
    prior of ``ferplus_resnet10t``'s soft targets."""
    v = pd.read_csv(data / "ferplus" / "ferplus_votes_train_val.csv")
    m = v.loc[v["split"] == "train", list(FERPLUS_VOTES.values())].to_numpy(np.float64)
    m = m[m.sum(axis=1) > 0]
    return dict(zip(FERPLUS_VOTES, (m / m.sum(axis=1, keepdims=True)).mean(axis=0), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--divide-prior", action="store_true")
    args = ap.parse_args()
    prior = ferplus_training_prior()
    print("FERPlus training prior:", {k: round(float(x), 4) for k, x in prior.items()}, flush=True)
    if args.divide_prior:
        import curate.representations.head as head

        restrict = head.restrict

        def divided(out, mapping, dataset_classes):  # type: ignore[no-untyped-def]
            p = restrict(out, mapping, dataset_classes)
            q = p / np.array([prior[head.canonical(mapping.mapping[c])] for c in dataset_classes])
            return q / q.sum(axis=1, keepdims=True)

        head.restrict = divided
    from bench.quality import quality_real_photos

    sys.argv = ["quality_real_photos", "--out", str(args.out), "--sets", "taiwanese,fer2013"]
    quality_real_photos.main()


if __name__ == "__main__":
    main()
