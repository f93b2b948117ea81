"""The leave-one-performer-out probe (taiwanese-posed's colour probe): a standardised
logistic regression fitted without one performer predicts that performer's images."""

from __future__ import annotations

import numpy as np


def lopo_predictions(emb: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions of ``y`` from ``emb``, one fold per value of ``groups``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    pred = np.empty(len(y), dtype=object)
    with threadpool_limits(1, user_api="blas"):  # small problems: BLAS threads only cost
        for s in np.unique(groups):
            test = groups == s
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
            clf.fit(emb[~test], y[~test])
            pred[test] = clf.predict(emb[test])
    return pred


def lopo_accuracy(emb: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Accuracy of the leave-one-performer-out probe."""
    return float(np.mean(lopo_predictions(emb, y, groups) == y))
