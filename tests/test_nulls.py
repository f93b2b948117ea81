"""Class-aware nulls against brute-force references, calibration on data drawn from the model."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from curate.errors import CurateError
from curate.stats import nulls as nulls_mod
from curate.stats.nulls import (
    apply_class_boundary,
    class_calibration,
    class_pair_verdicts,
    class_verdicts,
    fit_class_boundary,
    fit_class_nulls,
    stratified_pairs,
    tuple_z,
)
from curate.stats.statistical import normalize, tuple_distances


def _clouds(n_per=(40, 30, 25), d=6, sep=1.2, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(n_per), d)) * sep
    x = np.concatenate(
        [c + spread * rng.normal(size=(n, d)) for c, n in zip(centres, n_per, strict=True)]
    )
    labels = np.concatenate([np.full(n, f"k{i}") for i, n in enumerate(n_per)])
    return normalize(x, center=False), labels


def _brute_moments(x, codes, w, a, b):
    """weighted mean and variance of D^2 over all pairs (i in a, j in b, i != j), by a plain loop."""
    num = num2 = den = 0.0
    for i in range(len(x)):
        for j in range(len(x)):
            if i == j or codes[i] != a or codes[j] != b:
                continue
            d2 = float(np.sum((x[i] - x[j]) ** 2))
            ww = w[i] * w[j]
            num += ww * d2
            num2 += ww * d2 * d2
            den += ww
    m = num / den
    return m, num2 / den - m * m


def test_moment_nulls_match_brute_force_pair_moments():
    x, labels = _clouds(n_per=(12, 9, 7), seed=1)
    codes = np.unique(labels, return_inverse=True)[1]
    w = np.random.default_rng(2).uniform(0.2, 1.0, len(x))
    nl = fit_class_nulls(x, labels, method="class", weights=w, min_pairs=1)
    for a in range(3):
        for b in range(3):
            m2, v = _brute_moments(x, codes, w, a, b)
            mu = math.sqrt(m2) * (1 - v / (8 * m2 * m2))
            sigma = math.sqrt(v / (4 * m2))
            assert nl.mu[a, b] == pytest.approx(mu, rel=1e-9), (a, b)
            assert nl.sigma[a, b] == pytest.approx(sigma, rel=1e-9), (a, b)
    assert not nl.pooled.any()


def test_moment_null_of_centred_isotropic_data_is_the_patents_formula():
    rng = np.random.default_rng(3)
    d, s = 16, 2.0
    x = normalize(rng.normal(size=(6000, d)), scale=s)
    labels = np.where(rng.random(6000) < 0.5, "a", "b")  # two labels, same distribution
    nl = fit_class_nulls(x, labels, method="class", weights=np.ones(6000), scale=s)
    assert np.allclose(nl.mu, math.sqrt(2) * s, rtol=0.01)
    assert np.allclose(nl.sigma, s / math.sqrt(2 * d), rtol=0.05)
    assert np.allclose(nl.d_eff, d, rtol=0.05)


def _loop_wquantile(v, w, q):
    pts = sorted(zip(v.tolist(), w.tolist(), strict=True))
    total = sum(p[1] for p in pts)
    cum, xs, ys = 0.0, [], []
    for val, wt in pts:
        xs.append((cum + 0.5 * wt) / total)
        ys.append(val)
        cum += wt
    if q <= xs[0]:
        return ys[0]
    for k in range(1, len(xs)):
        if q <= xs[k]:
            t = (q - xs[k - 1]) / (xs[k] - xs[k - 1])
            return ys[k - 1] + t * (ys[k] - ys[k - 1])
    return ys[-1]


def test_empirical_nulls_are_weighted_median_and_tail_quantiles_of_the_sampled_pairs():
    x, labels = _clouds(seed=4)
    codes = np.unique(labels, return_inverse=True)[1]
    w = np.random.default_rng(5).uniform(0.1, 1.0, len(x))
    nl = fit_class_nulls(
        x,
        labels,
        weights=w,
        alpha_pos=0.1,
        alpha_neg=0.02,
        pairs_per_class_pair=300,
        seed=7,
        min_pairs=1,
    )
    i, j, a, b = stratified_pairs(codes, 3, 300, np.random.default_rng(7))
    d = np.sqrt(((x[i] - x[j]) ** 2).sum(1))
    z = NormalDist().inv_cdf
    for ca in range(3):
        for cb in range(ca, 3):
            sel = (a == ca) & (b == cb)
            med = _loop_wquantile(d[sel], w[i[sel]] * w[j[sel]], 0.5)
            assert nl.mu[ca, cb] == pytest.approx(med, rel=1e-9)
            if ca == cb:
                q = _loop_wquantile(d[sel], w[i[sel]] * w[j[sel]], 0.9)
                assert nl.t_pos[ca] == pytest.approx(q, rel=1e-9)
                assert nl.sigma[ca, ca] == pytest.approx((q - med) / z(0.9), rel=1e-9)
            else:
                q = _loop_wquantile(d[sel], w[i[sel]] * w[j[sel]], 0.02)
                assert nl.t_neg[ca, cb] == pytest.approx(q, rel=1e-9)
                assert nl.t_neg[cb, ca] == nl.t_neg[ca, cb]


def test_stratified_pairs_never_pair_an_image_with_itself_and_respect_classes():
    codes = np.array([0, 0, 1, 1, 1, 2])
    i, j, a, b = stratified_pairs(codes, 3, 500, np.random.default_rng(0))
    assert (i != j).all()
    assert (codes[i] == a).all() and (codes[j] == b).all() and (a <= b).all()
    assert not ((a == 2) & (b == 2)).any()  # class 2 has one image: no same-class pair
    i2, j2, _, _ = stratified_pairs(codes, 3, 500, np.random.default_rng(0))
    assert (i == i2).all() and (j == j2).all()


@pytest.mark.parametrize("method", ["class", "class_empirical"])
def test_calibration_holds_on_fresh_data_drawn_from_the_model(method):
    # embeddings in 48 dimensions: pair distances are close to normal, as the model assumes.
    # Fit on one draw, measure on fresh members around the same class centres.
    n_per, d = (700, 600, 500), 48
    fit_x, fit_labels = _clouds(n_per=n_per, d=d, sep=0.25, seed=10)
    centres = np.random.default_rng(10).normal(size=(3, d)) * 0.25  # the centres _clouds drew
    rng = np.random.default_rng(11)
    fresh = np.concatenate(
        [c + rng.normal(size=(n, d)) for c, n in zip(centres, n_per, strict=True)]
    )
    new_x, new_labels = normalize(fresh, center=False), fit_labels
    for alpha in (0.05, 0.01):
        nl = fit_class_nulls(
            fit_x,
            fit_labels,
            method=method,
            weights=np.ones(len(fit_x)),
            alpha_pos=alpha,
            alpha_neg=alpha,
            pairs_per_class_pair=20000,
        )
        cal = class_calibration(new_x, new_labels, nl, pairs_per_class_pair=20000, seed=3)
        assert abs(cal["share_above_t_pos"] - alpha) < 0.01, cal
        assert abs(cal["share_below_t_neg"] - alpha) < 0.01, cal


def test_a_mislabelled_positive_is_too_far_and_a_clean_one_is_kept():
    x, labels = _clouds(n_per=(60, 60), d=8, sep=3.0, spread=0.3, seed=12)
    codes = np.unique(labels, return_inverse=True)[1]
    nl = fit_class_nulls(x, labels, weights=np.ones(len(x)))
    # tuple 0: anchor 0 (k0), positive 1 (k0), negative 70 (k1): clean
    # tuple 1: anchor 2 (k0), positive 65 (k1, but treated as labelled k0), negative 71
    dist = tuple_distances(x, np.array([0, 2]), np.array([1, 65]), np.array([70, 71]))
    keep, reason = apply_class_boundary(dist, nl, codes[[0, 2]], codes[[70, 71]])
    assert keep.tolist() == [True, False]
    assert reason[1] == "positive_too_far"
    z = tuple_z(dist, nl, codes[[0, 2]], codes[[70, 71]])
    assert z["d_ap"][1] > z["d_ap"][0]


def test_a_negative_of_the_anchors_true_class_is_too_close():
    x, labels = _clouds(n_per=(60, 60), d=8, sep=3.0, spread=0.3, seed=13)
    codes = np.unique(labels, return_inverse=True)[1]
    nl = fit_class_nulls(x, labels, weights=np.ones(len(x)))
    # negative 3 is a k0 image; in this tuple it plays a k1 negative (mislabelled as k1)
    dist = tuple_distances(x, np.array([0]), np.array([1]), np.array([3]))
    keep, reason = apply_class_boundary(dist, nl, codes[[0]], np.array([1]))
    assert not keep[0] and reason[0] == "negative_too_close"


def test_quadruplet_negative_pair_of_one_class_is_not_tested():
    x, labels = _clouds(n_per=(30, 30, 30), d=8, sep=3.0, spread=0.3, seed=14)
    codes = np.unique(labels, return_inverse=True)[1]
    nl = fit_class_nulls(x, labels, weights=np.ones(len(x)))
    dist = tuple_distances(x, np.array([0]), np.array([1]), np.array([30]), np.array([31]))
    far, close = class_verdicts(dist, nl, codes[[0]], codes[[30]], codes[[31]])  # n, n2 both k1
    assert not far[0] and not close[0]
    fail, z = class_pair_verdicts(dist, nl, codes[[0]], codes[[30]], codes[[31]])
    assert set(fail) == set(z) == {"d_ap", "d_an", "d_an2", "d_nn2"}
    assert not fail["d_nn2"][0] and z["d_nn2"][0] == 0.0


_A = st.floats(0.001, 0.499)


@settings(max_examples=40, deadline=None)
@given(a1=_A, a2=_A, method=st.sampled_from(["class", "class_empirical"]))
@example(a1=0.46875, a2=0.499, method="class_empirical")  # a tail quantile at the median
def test_rejections_are_monotone_in_alpha(a1, a2, method):
    lo, hi = sorted((a1, a2))
    x, labels = _clouds(n_per=(25, 20, 15), seed=15)
    codes = np.unique(labels, return_inverse=True)[1]
    rng = np.random.default_rng(16)
    a = rng.integers(0, len(x), 200)
    p = np.array([rng.choice(np.flatnonzero(codes == codes[t])) for t in a])
    n = np.array([rng.choice(np.flatnonzero(codes != codes[t])) for t in a])
    dist = tuple_distances(x, a, p, n)
    out = []
    for alpha in (lo, hi):
        nl = fit_class_nulls(
            x,
            labels,
            method=method,
            weights=np.ones(len(x)),
            alpha_pos=alpha,
            alpha_neg=alpha,
            pairs_per_class_pair=400,
        )
        out.append(class_verdicts(dist, nl, codes[a], codes[n]))
    (far_lo, close_lo), (far_hi, close_hi) = out
    assert (far_lo <= far_hi).all() and (close_lo <= close_hi).all()


def test_sparse_class_pairs_fall_back_to_the_pooled_null_and_the_record_is_json():
    x, labels = _clouds(n_per=(40, 40, 3), seed=17)
    nl = fit_class_nulls(x, labels, weights=np.ones(len(x)), min_pairs=10)
    assert nl.pooled[2, 2] and not nl.pooled[0, 0]  # 3 images: 3 distinct pairs < 10
    rec = nl.to_dict()
    text = json.dumps(rec, allow_nan=False)
    assert '"method": "class_empirical"' in text
    assert [s["class"] for s in rec["same"]] == ["k0", "k1", "k2"]
    assert rec["same"][2]["pooled"] is True
    assert len(rec["pairs"]) == 3 and rec["pairs"][0]["classes"] == ["k0", "k1"]
    assert rec["same"][0]["t_pos"] == pytest.approx(nl.t_pos[0])


def test_fit_class_boundary_is_what_the_training_loop_can_call_on_a_window():
    # the loop has a window of normalised embeddings with integer class codes
    x, labels = _clouds(n_per=(50, 40, 30), seed=18)
    window_labels = np.unique(labels, return_inverse=True)[1]
    fit = fit_class_boundary(x, window_labels, seed=5, pairs_per_class_pair=300)
    assert fit.nulls.classes == ("0", "1", "2")
    assert len(fit.verdicts) == len(x)
    cal = fit.nulls.calibration
    assert set(cal) == {"accepted_pairs", "all_labelled_pairs"}
    assert abs(cal["accepted_pairs"]["share_above_t_pos"] - 0.05) < 0.05
    batch = np.array([0, 1, 60])
    codes = fit.nulls.codes(window_labels[batch])
    dist = tuple_distances(x, batch[:1], batch[1:2], batch[2:])
    keep, _ = apply_class_boundary(dist, fit.nulls, codes[:1], codes[2:])
    assert keep.dtype == bool and keep.shape == (1,)
    json.dumps(fit.to_dict(), allow_nan=False)


def test_class_nulls_refuse_bad_settings_and_unknown_labels():
    x, labels = _clouds(seed=19)
    with pytest.raises(CurateError, match="unknown class null 'kde'"):
        fit_class_nulls(x, labels, method="kde")
    with pytest.raises(CurateError, match="needs alphas below 0.5"):
        fit_class_nulls(x, labels, alpha_pos=0.5)
    with pytest.raises(CurateError, match="alpha_neg must be strictly between 0 and 1"):
        fit_class_nulls(x, labels, alpha_neg=0.0)
    with pytest.raises(CurateError, match="at least two classes"):
        fit_class_nulls(x, np.full(len(x), "one"))
    with pytest.raises(CurateError, match="weights must be"):
        fit_class_nulls(x, labels, weights=np.ones(3))
    nl = fit_class_nulls(x, labels)
    with pytest.raises(CurateError, match=r"labels \['zz'\] are not among the fitted classes"):
        nl.codes(["k0", "zz"])


def test_moment_fit_uses_no_pair_sampling(monkeypatch):
    x, labels = _clouds(seed=20)
    monkeypatch.setattr(nulls_mod, "stratified_pairs", None)  # would fail if called
    fit_class_nulls(x, labels, method="class", weights=np.ones(len(x)))


def test_class_nulls_refuse_nan_embeddings_like_the_label_screen() -> None:
    import numpy as np
    import pytest

    from curate.errors import CurateError
    from curate.stats.label_model import label_posteriors
    from curate.stats.nulls import fit_class_nulls

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 4))
    emb[3, 1] = np.nan
    labels = np.array(["a", "b"] * 20)
    for fit in (lambda: fit_class_nulls(emb, labels), lambda: label_posteriors(emb, labels)):
        with pytest.raises(CurateError, match="NaN or infinity"):
            fit()
