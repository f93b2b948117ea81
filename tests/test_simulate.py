"""Alpha simulation: noise injection and precision/recall of every screen per alpha."""

from __future__ import annotations

import numpy as np
import pytest

from curate.errors import CurateError
from curate.stats.simulate import SIMULATION_COLUMNS, inject_noise, simulate_alpha
from curate.stats.statistical import normalize


def _clusters(n_per=60, k=4, d=8, spread=0.3, seed=0, adjacent=True):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2.0
    if adjacent:
        centres[1] = centres[0] + 0.8 * rng.normal(size=d)  # class 1 sits next to class 0
    x = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centres])
    return normalize(x), np.repeat(np.array([f"c{i}" for i in range(k)]), n_per)


def test_symmetric_noise_flips_about_rate_to_other_classes():
    x, labels = _clusters()
    noisy, flipped = inject_noise(labels, x, kind="symmetric", rate=0.25, seed=1)
    assert 0.15 < flipped.mean() < 0.35
    assert (noisy[flipped] != labels[flipped]).all() and (noisy[~flipped] == labels[~flipped]).all()
    assert len(set(noisy[flipped])) == 4


def test_class_noise_flips_to_the_nearest_class():
    x, labels = _clusters()
    noisy, flipped = inject_noise(labels, x, kind="class", rate=0.3, seed=2)
    assert set(noisy[flipped & (labels == "c0")]) == {"c1"}
    assert set(noisy[flipped & (labels == "c1")]) == {"c0"}


def test_simulation_finds_injected_noise_and_recall_grows_with_alpha():
    x, labels = _clusters(seed=3, adjacent=False)
    out = simulate_alpha(x, labels, alphas=(0.01, 0.05, 0.2), rate=0.15, seed=4)
    assert list(out.columns) == list(SIMULATION_COLUMNS)
    assert set(out["screen"]) == {"label_suspect", "positive_too_far", "negative_too_close"}
    img = out[(out["screen"] == "label_suspect") & (out["noise"] == "symmetric")].set_index("alpha")
    assert img.loc[0.01, "precision"] > 0.9  # clean clusters: rejects are flips
    assert (img["precision"] > img["base_rate"]).all()
    for _, grp in out.groupby(["noise", "screen"]):
        rec = grp.sort_values("alpha")["recall"].to_numpy()
        assert (np.diff(rec) >= 0).all()
    far = out[
        (out["screen"] == "positive_too_far")
        & (out["noise"] == "symmetric")
        & (out["alpha"] == 0.05)
    ]
    assert float(far["precision"].iloc[0]) > float(far["base_rate"].iloc[0])


def test_alpha_of_one_half_runs_the_image_screen_only():
    x, labels = _clusters(seed=5)
    out = simulate_alpha(x, labels, alphas=(0.5,), noise=("symmetric",), rate=0.1)
    assert out["screen"].tolist() == ["label_suspect"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="pairs", rate=0.1), "unknown noise kind 'pairs'"),
        (dict(kind="symmetric", rate=1.0), "noise rate must be strictly between 0 and 1"),
    ],
)
def test_inject_noise_refuses_bad_settings(kwargs, match):
    x, labels = _clusters()
    with pytest.raises(CurateError, match=match):
        inject_noise(labels, x, **kwargs)


def test_simulate_refuses_alphas_outside_the_unit_interval():
    x, labels = _clusters()
    with pytest.raises(CurateError, match="alphas must lie strictly between 0 and 1"):
        simulate_alpha(x, labels, alphas=(0.0,))
