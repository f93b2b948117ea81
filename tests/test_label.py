"""Image-level label verdicts against brute-force references on small planted data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from curate.errors import CurateError
from curate.stats import label_model as label_mod
from curate.stats.label_model import (
    LABEL_COLUMNS,
    cap_per_class,
    class_distances,
    encode_labels,
    label_posteriors,
    label_reject,
)
from curate.stats.statistical import effective_dimension, normalize


def _clusters(n_per: int = 30, k: int = 3, d: int = 8, spread: float = 0.25, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(d, k)))[0].T * 3.0
    x = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centres])
    labels = np.repeat(np.array([f"c{i}" for i in range(k)]), n_per)
    return normalize(x), labels


def _brute_rms(x: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(x), k), np.nan)
    for i in range(len(x)):
        for c in range(k):
            d2 = [
                float(np.sum((x[i] - x[j]) ** 2)) for j in range(len(x)) if codes[j] == c and j != i
            ]
            if d2:
                out[i, c] = math.sqrt(sum(d2) / len(d2))
    return out


def test_class_distances_match_a_brute_force_loop_and_leave_the_row_out():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(23, 5)) * rng.uniform(0.5, 2, size=(23, 1))  # rows of different moduli
    codes = np.array([0] * 9 + [1] * 13 + [2])  # class 2 has one member
    got = class_distances(x, codes, 3)
    want = _brute_rms(x, codes, 3)
    assert np.isnan(got[22, 2]) and np.isnan(want[22, 2])
    assert np.allclose(got, want, equal_nan=True)


def test_class_distances_are_the_same_in_chunks(monkeypatch):
    x, labels = _clusters(n_per=20)
    codes, _ = encode_labels(labels, len(x))
    whole = class_distances(x, codes, 3)
    monkeypatch.setattr(label_mod, "_CHUNK", 7)
    assert np.allclose(class_distances(x, codes, 3), whole)


def test_a_planted_mislabelled_image_ranks_first_with_its_true_class_suggested():
    x, labels = _clusters(n_per=30, k=3, seed=1)
    labels = labels.copy()
    labels[5] = "c2"  # truly c0
    verdicts, model = label_posteriors(x, labels)
    assert list(verdicts.columns) == list(LABEL_COLUMNS)
    order = np.argsort(-verdicts["suspicion_logit"].to_numpy(), kind="stable")
    assert order[0] == 5
    assert verdicts.loc[5, "suggested_label"] == "c0"
    assert verdicts.loc[5, "label_rank"] > 1
    assert verdicts.loc[5, "suspicion"] > 0.9
    assert verdicts["suspicion"].drop(index=5).max() < 0.5
    clean = verdicts.drop(index=5)
    assert (clean["label_rank"] == 1).all()
    assert model.classes == ("c0", "c1", "c2") and model.counts == (29, 30, 31)


def test_posterior_is_the_softmax_of_distance_evidence_and_priors_are_the_em_fixed_point():
    x, labels = _clusters(n_per=15, k=3, spread=0.9, seed=2)
    verdicts, model = label_posteriors(x, labels, prior_floor=0.05)
    assert model.converged
    codes, _ = encode_labels(labels, len(x))
    r = _brute_rms(x, codes, 3)
    tau = 1.0 / math.sqrt(2 * effective_dimension(x))
    assert model.tau == pytest.approx(tau)
    prior = np.array(model.prior)
    logits = -r / tau + np.log(prior)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.allclose(verdicts["label_posterior"], p[np.arange(len(x)), codes], atol=1e-9)
    base = np.bincount(codes) / len(codes)
    fixed = p.mean(0) + 0.05 * base
    assert np.allclose(prior, fixed / fixed.sum(), atol=1e-6)


def test_a_class_the_embedding_cannot_separate_gets_a_smaller_prior_than_its_share():
    rng = np.random.default_rng(4)
    x, labels = _clusters(n_per=40, k=2, spread=0.2, seed=4)
    # a third class whose members are spread over the other two clusters
    mixed = x[rng.choice(len(x), 30)] + 0.05 * rng.normal(size=(30, x.shape[1]))
    x = normalize(np.concatenate([x, mixed]))
    labels = np.concatenate([labels, np.full(30, "mixed")])
    verdicts, model = label_posteriors(x, labels)
    share = 30 / len(labels)
    assert dict(zip(model.classes, model.prior, strict=True))["mixed"] < share
    assert (
        verdicts.loc[labels == "mixed", "suspicion"].mean()
        > verdicts.loc[labels != "mixed", "suspicion"].mean()
    )


def test_prior_floor_keeps_every_class_alive():
    rng = np.random.default_rng(5)
    x, labels = _clusters(n_per=40, k=2, spread=0.2, seed=5)
    mixed = x[rng.choice(len(x), 10)] + 0.02 * rng.normal(size=(10, x.shape[1]))
    x = normalize(np.concatenate([x, mixed]))
    labels = np.concatenate([labels, np.full(10, "mixed")])
    _, model = label_posteriors(x, labels, prior_floor=0.01)
    assert min(model.prior) >= 0.01 * 10 / len(labels) / (1 + 0.01) - 1e-12


def test_image_alone_in_its_class_has_no_verdict():
    x, labels = _clusters(n_per=10, k=2)
    x = np.concatenate([x, x[:1]])
    labels = np.concatenate([labels, ["single"]])
    verdicts, _ = label_posteriors(x, labels)
    last = verdicts.iloc[-1]
    assert math.isnan(last["label_posterior"]) and math.isnan(last["suspicion"])
    assert last["label_rank"] == 0
    assert not label_reject(verdicts, 0.5)[-1]


def test_label_pvalue_is_the_posterior_weighted_share_at_or_above_and_rejects_below_alpha():
    x, labels = _clusters(n_per=25, k=3, spread=0.6, seed=7)
    labels = labels.copy()
    labels[[3, 40]] = ["c1", "c2"]
    v, _ = label_posteriors(x, labels)
    t, w = v["suspicion_logit"].to_numpy(), v["label_posterior"].to_numpy()
    want = np.array([w[t >= ti].sum() / w.sum() for ti in t])  # brute force
    assert np.allclose(v["label_pvalue"], want)
    assert v["label_pvalue"].idxmin() in (3, 40)
    reject = label_reject(v, 0.05)
    assert (reject == (want < 0.05)).all()
    assert (label_reject(v, 0.01) <= label_reject(v, 0.2)).all()  # monotone in alpha
    with pytest.raises(CurateError, match="alpha must be strictly between 0 and 1"):
        label_reject(v, 1.0)


def test_same_input_gives_the_same_verdicts():
    x, labels = _clusters(seed=6)
    a, _ = label_posteriors(x, labels)
    b, _ = label_posteriors(x.copy(), list(labels))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(labels=["a"] * 5), "label verdicts need at least two classes"),
        (dict(labels=["a", "b"]), "2 labels for 5 embeddings"),
        (dict(labels=["a", None, "b", "a", "b"]), "labels are missing for rows \\[1\\]"),
        (dict(prior_floor=-1.0), "prior_floor must be a non-negative number"),
        (dict(tau=0.0), "tau must be a positive number"),
    ],
)
def test_bad_input_raises_a_curate_error_naming_it(bad, match):
    x = normalize(np.random.default_rng(0).normal(size=(5, 3)))
    kwargs = {"labels": ["a", "b", "a", "b", "a"], **bad}
    lab = kwargs.pop("labels")
    with pytest.raises(CurateError, match=match):
        label_posteriors(x, lab, **kwargs)


def test_nan_embeddings_are_refused():
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(CurateError, match="NaN or infinity"):
        label_posteriors(x, ["a", "b", "a", "b"])


def test_the_package_never_imports_cleanlab():
    from pathlib import Path

    root = Path(label_mod.__file__).resolve().parents[1]
    hits = [str(p.relative_to(root)) for p in root.rglob("*.py") if "cleanlab" in p.read_text()]
    assert hits == [], f"cleanlab (AGPL-3.0) is referenced in the package: {hits}"


def test_the_per_class_cap_keeps_a_class_from_vanishing_and_keeps_its_most_suspect_rejected():
    rng = np.random.default_rng(4)
    x, labels = _clusters(n_per=40, k=2, spread=0.2, seed=4)
    mixed = x[rng.choice(len(x), 20)] + 0.05 * rng.normal(size=(20, x.shape[1]))
    x = normalize(np.concatenate([x, mixed]))
    labels = np.concatenate([labels, np.full(20, "mixed")])
    v, _ = label_posteriors(x, labels)
    uncapped = label_reject(v, 0.5)
    mixed_rows = np.flatnonzero(labels == "mixed")
    assert uncapped[mixed_rows].sum() > 10  # without a cap most of the class goes
    capped, acted = cap_per_class(uncapped, v, 0.5)
    assert capped[mixed_rows].sum() == 10
    worst = mixed_rows[np.argsort(-v["suspicion_logit"].to_numpy()[mixed_rows], kind="stable")[:10]]
    assert capped[worst].all()
    assert (capped <= uncapped).all()  # the cap only ever keeps
    assert {
        "class": "mixed",
        "n_images": 20,
        "would_reject": int(uncapped[mixed_rows].sum()),
        "rejected": 10,
    } in acted
    for c in acted:  # every class it acted on keeps half
        rows = labels == c["class"]
        assert (
            capped[rows].sum()
            == c["rejected"]
            == c["n_images"] // 2
            < c["would_reject"]
            == uncapped[rows].sum()
        )
    same, none = cap_per_class(uncapped, v, 1.0)
    assert (same == uncapped).all() and none == []
    with pytest.raises(CurateError, match="max_share"):
        cap_per_class(uncapped, v, 0.0)
