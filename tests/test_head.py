"""The network's classification head as label evidence (curate/representations/head.py)."""

from __future__ import annotations

import numpy as np
import pytest

from curate.representations.head import (
    HEAD_MIN_SHARE,
    TRAINING_SAMPLE_FILE,
    HeadOutput,
    combined_confidence,
    decide,
    map_classes,
    read_training_sample,
    training_overlap,
    write_training_sample,
)
from curate.stats.label_model import label_posteriors

FER = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FERPLUS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def test_fer2013_classes_are_covered_by_ferplus_head_classes_renamed():
    m = map_classes(FERPLUS, FER)
    assert m.covered and m.missing == []
    assert m.mapping == {
        "angry": "anger",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happiness",
        "neutral": "neutral",
        "sad": "sadness",
        "surprise": "surprise",
    }
    assert m.renamed() == {"angry": "anger", "happy": "happiness", "sad": "sadness"}
    assert m.unused == ["contempt"]


def test_case_and_spaces_do_not_matter_and_a_missing_class_is_named():
    m = map_classes(FER, (" Happy", "SAD", "contempt"))
    assert not m.covered and m.missing == ["contempt"]
    assert m.mapping == {" Happy": "happy", "SAD": "sad"}


def _planted(n_per: int = 60, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = tuple(f"c{i}" for i in range(k))
    codes = np.repeat(np.arange(k), n_per)
    labels = np.asarray(classes)[codes]
    return rng, classes, codes, labels


def _sharp_head(codes, k, rng, right=0.9):
    """A head whose top class is the truth for ``right`` of the images."""
    p = rng.dirichlet(np.ones(k), size=codes.size) * 0.2
    top = np.where(rng.random(codes.size) < right, codes, rng.integers(k, size=codes.size))
    p[np.arange(codes.size), top] += 1.0
    return p / p.sum(axis=1, keepdims=True)


def test_auto_uses_a_head_that_separates_the_classes_and_not_one_that_does_not():
    rng, classes, codes, labels = _planted()
    good = HeadOutput("net", classes, _sharp_head(codes, len(classes), rng))
    ev = decide(good, labels, classes, probe_balanced_accuracy=0.7)
    assert ev.used and ev.balanced_accuracy > 0.85
    assert ev.probabilities.shape == (codes.size, len(classes))
    np.testing.assert_allclose(ev.probabilities.sum(axis=1), 1.0)
    noise = HeadOutput("net", classes, rng.dirichlet(np.ones(len(classes)), size=codes.size))
    ev = decide(noise, labels, classes, probe_balanced_accuracy=0.7)
    assert not ev.used and ev.balanced_accuracy < HEAD_MIN_SHARE * 0.7
    assert "under 0.6 x the probe's 0.70" in ev.why
    assert ev.record()["head_used"] is False
    assert decide(noise, labels, classes, 0.7, setting="on").used
    assert not decide(good, labels, classes, 0.7, setting="off").used


def test_a_head_covering_only_some_classes_is_not_used_with_a_note():
    rng, classes, codes, labels = _planted()
    head = HeadOutput("net", classes[:3], _sharp_head(np.minimum(codes, 2), 3, rng))
    ev = decide(head, labels, classes, 0.7)
    assert not ev.used
    assert ev.why.endswith("do not name c3")
    assert ev.record()["classes_missing"] == ["c3"]
    assert decide(None, labels, classes, 0.7).used is False


def test_head_classes_the_dataset_lacks_are_dropped_and_renormalised():
    rng, classes, codes, labels = _planted(k=3)
    p = np.tile([0.5, 0.2, 0.2, 0.1], (codes.size, 1))  # head classes: c0 c1 c2 extra
    ev = decide(HeadOutput("net", (*classes, "extra"), p), labels, classes, None, setting="on")
    assert ev.mapping.unused == ["extra"]
    np.testing.assert_allclose(ev.probabilities.sum(axis=1), 1.0)
    assert ev.probabilities.shape == (codes.size, 3)


def test_combined_confidence_matches_a_brute_force_reference():
    rng = np.random.default_rng(3)
    n, k = 40, 3
    a, b = rng.dirichlet(np.ones(k), size=n), rng.dirichlet(np.ones(k), size=n)
    codes = rng.integers(k, size=n)
    got = combined_confidence(a, b, codes)
    prod = [[a[i, j] * b[i, j] for j in range(k)] for i in range(n)]
    prod = [[v / sum(row) for v in row] for row in prod]

    def nll(t):
        total = 0.0
        for i in range(n):
            w = [v ** (1 / t) for v in prod[i]]
            total -= np.log(w[codes[i]] / sum(w))
        return total / n

    best = min(np.exp(np.linspace(np.log(0.05), np.log(20), 4001)), key=nll)
    want = np.array([[v ** (1 / best) for v in row] for row in prod])
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_the_head_finds_a_mislabel_the_embedding_cannot_see():
    rng, classes, codes, labels = _planted(n_per=40, k=3)
    emb = rng.normal(size=(codes.size, 8)).astype(np.float32)  # no class structure at all
    labels = labels.copy()
    labels[5] = "c2"  # truly c0
    head = np.full((codes.size, 3), 0.05)
    head[np.arange(codes.size), codes] = 0.9
    table, _ = label_posteriors(emb, labels, head_probs=head)
    assert int(np.argmax(table["suspicion_logit"].to_numpy())) == 5
    assert table["suggested_label"].iat[5] == "c0"
    with pytest.raises(Exception, match="head probabilities have shape"):
        label_posteriors(emb, labels, head_probs=head[:, :2])


def test_training_overlap_from_the_sample(tmp_path):
    import hashlib

    train = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    other = [hashlib.sha256(f"x{i}".encode()).hexdigest() for i in range(2000)]
    net = tmp_path / "net"
    net.mkdir()
    n = write_training_sample(train, net / TRAINING_SAMPLE_FILE, "test")
    assert n == sum(d.startswith("0") for d in train)
    sample = read_training_sample(net)  # the reader curate uses, on what the writer wrote
    assert training_overlap(sample, np.array(train[:500])) == 1.0
    assert training_overlap(sample, np.array(other)) == 0.0
    mixed = training_overlap(sample, np.array(train[:1000] + other[:1000]))
    assert 0.35 < mixed < 0.65
    assert training_overlap(None, np.array(train)) is None
    assert read_training_sample(tmp_path) is None


def test_decide_warns_when_the_dataset_is_the_networks_training_data():
    import hashlib

    rng, classes, codes, labels = _planted()
    sha = np.array([hashlib.sha256(str(i).encode()).hexdigest() for i in range(codes.size)])
    sample = frozenset(s[:16] for s in sha if s.startswith("0"))
    head = HeadOutput("mynet", classes, _sharp_head(codes, len(classes), rng), sample)
    ev = decide(head, labels, classes, 0.7, sha256=sha)
    assert ev.overlap == 1.0
    assert any("mynet's training images" in n for n in ev.notes)


def _fake_backbone_with_head(monkeypatch, vectors, head_classes, head_probs):
    from curate.representations import get
    from curate.representations.base import Features

    def back(self, ctx):
        ctx.shared["head"] = HeadOutput("planted-net", head_classes, head_probs)
        return Features(
            "backbone",
            vectors,
            np.zeros(len(vectors), bool),
            [None] * len(vectors),
            details={"backbone": "planted", "framing": {"used": "full"}},
        )

    monkeypatch.setattr(type(get("backbone")), "compute", back)


@pytest.mark.parametrize("covered", [True, False])
def test_screen_uses_a_covering_head_and_records_the_decision(tmp_path, monkeypatch, covered):
    import json

    from builders import make_build

    from curate.screen import screen

    build, images, emb = make_build(tmp_path, per_class=12)
    classes = tuple(sorted(images["label"].unique()))
    codes = np.searchsorted(classes, images["label"].to_numpy())
    rng = np.random.default_rng(0)
    head = _sharp_head(codes, len(classes), rng, right=1.0)
    names = tuple(c.upper() for c in classes) if covered else classes[:-1]
    _fake_backbone_with_head(
        monkeypatch,
        emb.astype(np.float32),
        names,
        head if covered else head[:, :-1] / head[:, :-1].sum(axis=1, keepdims=True),
    )
    res = screen(
        build,
        tmp_path / "out",
        representation="backbone",
        skip_faces_screen=True,
        skip_quality_screen=True,
        skip_not_face_screen=True,
        skip_near_duplicates_screen=True,
    )
    ev = json.loads((tmp_path / "out" / "run.json").read_text())["params"]["label_evidence"]
    assert ev["head_used"] is covered and ev["network"] == "planted-net"
    assert any(n.startswith("label evidence: network head") for n in res.notes)
    if covered:
        assert (
            ev["class_mapping"] == {c: c.upper() for c in classes}
            and ev["head_balanced_accuracy"] == 1.0
        )
    else:
        assert ev["classes_missing"] == [classes[-1]] and "do not name" in ev["why"]


def test_label_head_option_is_checked():
    from curate.errors import CurateError
    from curate.screens.label import _check_head_setting

    assert _check_head_setting("off") == "off"
    with pytest.raises(CurateError, match="label_head must be one of auto, on, off"):
        _check_head_setting("yes")
