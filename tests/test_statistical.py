"""The statistical boundary against brute-force references on small planted data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from curate.errors import CurateError
from curate.stats import fused
from curate.stats.statistical import (
    Boundary,
    apply_boundary,
    effective_dimension,
    fit_boundary,
    normalize,
    null_params,
    pair_distances,
    random_pairs,
    thresholds,
    tuple_distances,
)


def _brute_distance(a: np.ndarray, b: np.ndarray) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))


def test_normalize_centres_and_scales_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 6))
    y = normalize(x, scale=2.5)
    assert np.allclose(np.linalg.norm(y, axis=1), 2.5)
    expected = (x - x.mean(0)) / np.linalg.norm(x - x.mean(0), axis=1, keepdims=True) * 2.5
    assert np.allclose(y, expected)
    given_mean = np.full(6, 1.0)
    z = normalize(x, mean=given_mean)
    assert np.allclose(z, (x - 1.0) / np.linalg.norm(x - 1.0, axis=1, keepdims=True))
    nc = normalize(x, center=False)
    assert np.allclose(nc, x / np.linalg.norm(x, axis=1, keepdims=True))


def test_normalize_row_equal_to_mean_becomes_zero():
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    y = normalize(x)
    assert np.allclose(y[2], 0) and np.allclose(np.linalg.norm(y[:2], axis=1), 1)


@pytest.mark.parametrize("n,d", [(200, 5), (7, 12)])
def test_effective_dimension_matches_numpy_cov_eigenvalues(n, d):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d)
    lam = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    assert effective_dimension(x) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)


def test_effective_dimension_isotropic_is_d_and_rank_k_is_k():
    rng = np.random.default_rng(1)
    iso = normalize(rng.normal(size=(40000, 16)))
    assert effective_dimension(iso) == pytest.approx(16, rel=0.01)
    basis = np.linalg.qr(rng.normal(size=(64, 3)))[0]  # rank-3 data in 64 dimensions
    low = normalize(rng.normal(size=(40000, 3)) @ basis.T)
    assert effective_dimension(low) == pytest.approx(3, rel=0.02)


def test_null_params_and_thresholds_follow_the_formulas():
    mu, sigma = null_params(2.0, 8.0)
    assert mu == pytest.approx(math.sqrt(2) * 2.0)
    assert sigma == pytest.approx(2.0 / math.sqrt(16.0))
    t_pos, t_neg = thresholds(mu, sigma, 0.01, 0.2)
    assert t_pos == pytest.approx(mu + norm.ppf(0.99) * sigma)
    assert t_neg == pytest.approx(mu - norm.ppf(0.8) * sigma)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_thresholds_reject_alpha_outside_open_unit_interval(alpha):
    with pytest.raises(CurateError, match="alpha_pos must be strictly between 0 and 1"):
        thresholds(1.4, 0.1, alpha, 0.05)


needs_numba = pytest.mark.skipif(
    not fused.available(), reason="numba is not installed (curate[fast])"
)
KERNEL_PARAMS = ["numpy", pytest.param("fused", marks=needs_numba)]


@pytest.mark.parametrize("kernel", KERNEL_PARAMS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("workers", [1, 3])
def test_tuple_distances_match_a_python_loop(workers, dtype, kernel):
    rng = np.random.default_rng(2)
    emb = normalize(rng.normal(size=(30, 7)).astype(dtype))
    t = 9000  # more than one chunk
    a, p, n, n2 = (rng.integers(0, 30, t) for _ in range(4))
    p[:5] = a[:5]  # identical rows: exactly zero
    got = tuple_distances(emb, a, p, n, n2, workers=workers, kernel=kernel)
    assert set(got) == {"d_ap", "d_an", "d_an2", "d_nn2"}
    for k in list(range(40)) + [4095, 4096, 8999]:
        assert got["d_ap"][k] == pytest.approx(_brute_distance(emb[a[k]], emb[p[k]]), abs=1e-5)
        assert got["d_an"][k] == pytest.approx(_brute_distance(emb[a[k]], emb[n[k]]), abs=1e-5)
        assert got["d_an2"][k] == pytest.approx(_brute_distance(emb[a[k]], emb[n2[k]]), abs=1e-5)
        assert got["d_nn2"][k] == pytest.approx(_brute_distance(emb[n[k]], emb[n2[k]]), abs=1e-5)
    assert np.all(got["d_ap"][:5] == 0.0)
    triplet = tuple_distances(emb, a, p, n, kernel=kernel)
    assert set(triplet) == {"d_ap", "d_an"}
    assert np.allclose(triplet["d_an"], got["d_an"])


@needs_numba
def test_fused_and_numpy_kernels_agree_on_strided_columns_and_auto_picks_fused(monkeypatch):
    rng = np.random.default_rng(3)
    emb = normalize(rng.normal(size=(500, 16)).astype(np.float32))
    members = rng.integers(0, 500, size=(4000, 4))  # columns of a 2-D array are strided views
    cols = [members[:, i] for i in range(4)]
    a = tuple_distances(emb, *cols, kernel="fused")
    b = tuple_distances(emb, *cols, kernel="numpy")
    for k in b:
        assert np.abs(a[k] - b[k]).max() < 1e-6
    calls = []
    real = fused.fused_chunk
    monkeypatch.setattr(fused, "fused_chunk", lambda *args: calls.append(1) or real(*args))
    monkeypatch.setattr(fused, "MIN_TUPLES", 4000)
    tuple_distances(emb, *cols[:3])
    assert calls, "auto picks the fused kernel from MIN_TUPLES tuples on"
    calls.clear()
    tuple_distances(emb, *(c[:3999] for c in cols[:3]))
    assert not calls, "and the numpy kernel below"


def test_fused_kernel_without_numba_names_the_extra(monkeypatch):
    monkeypatch.setattr(fused, "available", lambda: False)
    fused._kernels.cache_clear()
    emb = np.eye(3)
    with pytest.raises(CurateError, match="needs numba") as err:
        tuple_distances(emb, [0], [1], [2], kernel="fused")
    assert "curate[fast]" in err.value.hint
    fused._kernels.cache_clear()
    monkeypatch.setattr(fused, "MIN_TUPLES", 1)
    assert tuple_distances(emb, [0], [1], [2])["d_ap"][0] == pytest.approx(
        math.sqrt(2)
    )  # auto: numpy
    with pytest.raises(CurateError, match="unknown distance kernel"):
        tuple_distances(emb, [0], [1], [2], kernel="gpu")


def test_tuple_distances_validate_indices():
    emb = np.eye(3)
    with pytest.raises(CurateError, match="positive has row indices outside 0..2"):
        tuple_distances(emb, [0], [3], [1])
    with pytest.raises(CurateError, match="different lengths"):
        tuple_distances(emb, [0, 1], [1], [2])


def _boundary(t_pos: float, t_neg: float) -> Boundary:
    return Boundary(
        s=1.0,
        d=4,
        d_null=4.0,
        null="theory",
        mu=1.41,
        sigma=0.3,
        alpha_pos=0.05,
        alpha_neg=0.05,
        t_pos=t_pos,
        t_neg=t_neg,
    )


def test_apply_boundary_matches_a_python_loop_with_quadruplet_pairs():
    rng = np.random.default_rng(3)
    dist = {k: rng.uniform(0.5, 2.0, 500) for k in ("d_ap", "d_an", "d_an2", "d_nn2")}
    b = _boundary(1.7, 1.0)
    keep, reason = apply_boundary(dist, b)
    for i in range(500):
        codes = []
        if dist["d_ap"][i] > b.t_pos:
            codes.append("positive_too_far")
        if min(dist["d_an"][i], dist["d_an2"][i], dist["d_nn2"][i]) < b.t_neg:
            codes.append("negative_too_close")
        assert keep[i] == (not codes)
        assert reason[i] == (";".join(codes) if codes else None)
    # only the negative-negative2 pair is too close: still rejected
    only_nn2 = {
        "d_ap": np.array([1.0]),
        "d_an": np.array([1.5]),
        "d_an2": np.array([1.5]),
        "d_nn2": np.array([0.2]),
    }
    k, r = apply_boundary(only_nn2, b)
    assert not k[0] and r[0] == "negative_too_close"


def test_fit_boundary_records_three_nulls_and_calibration_brute_force():
    rng = np.random.default_rng(4)
    emb = normalize(rng.normal(size=(400, 12)))
    labels = np.array(list("abcd"))[rng.integers(0, 4, 400)]
    b = fit_boundary(
        emb, labels=labels, null="empirical", alpha_pos=0.1, alpha_neg=0.02, n_pairs=3000, seed=7
    )
    i, j, kind = random_pairs(400, labels, n_pairs=3000, seed=7)
    assert kind == "different_label" and len(i) == 3000 and np.all(labels[i] != labels[j])
    dist = np.array([_brute_distance(emb[x], emb[y]) for x, y in zip(i, j, strict=True)])
    med = float(np.median(dist))
    assert b.mu == pytest.approx(med, abs=1e-6)
    assert b.sigma == pytest.approx(1.4826 * np.median(np.abs(dist - med)), abs=1e-6)
    assert b.t_pos == pytest.approx(b.mu + norm.ppf(0.9) * b.sigma)
    assert b.t_neg == pytest.approx(b.mu - norm.ppf(0.98) * b.sigma)
    assert b.calibration["share_above_t_pos"] == pytest.approx(np.mean(dist > b.t_pos))
    assert b.calibration["share_below_t_neg"] == pytest.approx(np.mean(dist < b.t_neg))
    assert b.nulls["theory"]["d_null"] == 12
    assert b.nulls["theory"]["sigma"] == pytest.approx(1 / math.sqrt(24))
    lam = np.linalg.eigvalsh(np.cov(emb, rowvar=False))
    assert b.nulls["effective"]["d_null"] == pytest.approx(lam.sum() ** 2 / (lam**2).sum())
    d = b.to_dict()
    assert (
        d["d_null"] is None and d["null"] == "empirical" and len(d["random_pair_distances"]) == 3000
    )
    assert list(d)[:11] == [
        "s",
        "d",
        "center",
        "null",
        "d_null",
        "mu",
        "sigma",
        "alpha_pos",
        "alpha_neg",
        "t_pos",
        "t_neg",
    ]


def test_calibration_is_near_nominal_alpha_for_isotropic_embeddings():
    rng = np.random.default_rng(5)
    emb = normalize(rng.normal(size=(6000, 64)))
    labels = rng.integers(0, 7, 6000).astype(str)
    b = fit_boundary(emb, labels=labels, null="theory", n_pairs=20000)
    assert b.calibration["share_above_t_pos"] == pytest.approx(0.05, abs=0.012)
    assert b.calibration["share_below_t_neg"] == pytest.approx(0.05, abs=0.012)
    eff = fit_boundary(emb, labels=labels, null="effective", n_pairs=20000)
    assert eff.d_null == pytest.approx(64, rel=0.03)


def test_low_effective_dimension_fixes_the_literal_model():
    # 3 informative directions inside 128 dimensions: the theory null is far too narrow
    rng = np.random.default_rng(6)
    basis = np.linalg.qr(rng.normal(size=(128, 3)))[0]
    emb = normalize(rng.normal(size=(3000, 3)) @ basis.T + 0.01 * rng.normal(size=(3000, 128)))
    labels = rng.integers(0, 5, 3000).astype(str)
    theory = fit_boundary(emb, labels=labels, null="theory")
    eff = fit_boundary(emb, labels=labels, null="effective")
    assert theory.calibration["share_above_t_pos"] + theory.calibration["share_below_t_neg"] > 0.5
    assert eff.d_null < 4
    # at d_null ~ 3 the normal approximation is rough (D^2 is uniform on [0, 4] on the
    # 3-sphere), and the calibration record shows it: ~14% instead of 10% flagged in all
    eff_total = eff.calibration["share_above_t_pos"] + eff.calibration["share_below_t_neg"]
    assert 0.05 < eff_total < 0.2


def test_fit_boundary_errors_name_the_fix():
    emb = normalize(np.random.default_rng(0).normal(size=(20, 3)))
    with pytest.raises(CurateError, match="unknown null 'bogus'"):
        fit_boundary(emb, null="bogus")
    with pytest.raises(CurateError, match="empirical null cannot be fitted") as err:
        fit_boundary(emb, null="empirical")
    assert "--null effective" in str(err.value)
    with pytest.raises(CurateError, match="no variance"):
        fit_boundary(np.ones((10, 4)))


_DIST = st.lists(st.floats(0.0, 2.0), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    ap=_DIST,
    an=_DIST,
    a1=st.floats(0.001, 0.999),
    a2=st.floats(0.001, 0.999),
    b1=st.floats(0.001, 0.999),
    b2=st.floats(0.001, 0.999),
    d_null=st.floats(1.0, 600.0),
)
def test_raising_alpha_never_keeps_more_tuples(ap, an, a1, a2, b1, b2, d_null):
    n = min(len(ap), len(an))
    dist = {"d_ap": np.array(ap[:n]), "d_an": np.array(an[:n])}
    mu, sigma = null_params(1.0, d_null)
    lo_p, hi_p = sorted((a1, a2))
    lo_n, hi_n = sorted((b1, b2))

    def kept(alpha_pos: float, alpha_neg: float) -> np.ndarray:
        t_pos, t_neg = thresholds(mu, sigma, alpha_pos, alpha_neg)
        b = Boundary(1.0, 8, d_null, "effective", mu, sigma, alpha_pos, alpha_neg, t_pos, t_neg)
        return apply_boundary(dist, b)[0]

    strict, loose = kept(hi_p, hi_n), kept(lo_p, lo_n)
    assert not np.any(strict & ~loose)  # every tuple kept at the higher alpha is kept at the lower


def test_pair_distances_and_random_pairs_without_labels():
    emb = normalize(np.random.default_rng(8).normal(size=(10, 4)))
    i, j, kind = random_pairs(10, None, n_pairs=50, seed=1)
    assert kind == "any" and len(i) == 50 and np.all(i != j)
    d = pair_distances(emb, i, j)
    assert d[3] == pytest.approx(np.linalg.norm(emb[i[3]] - emb[j[3]]), abs=1e-6)
    i1, j1, _ = random_pairs(10, None, n_pairs=50, seed=1)
    assert np.array_equal(i, i1) and np.array_equal(j, j1)
