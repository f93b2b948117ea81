"""The occlusion-weights recipe (curate.faces.fit_occlusion) on tiny data: seeded, loadable,
and a cross-validation fold never trains on its held-out faces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from curate.errors import CurateError
from curate.faces import fit_occlusion as fit
from curate.faces import occluders
from curate.faces.occlusion import OcclusionModel, build_occlusion_net

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _crops(n: int, seed: int = 0) -> np.ndarray:
    """Distinct 48x48 grey 'faces': smooth random fields, no two alike."""
    import cv2

    rng = np.random.default_rng(seed)
    out = [
        cv2.GaussianBlur(rng.uniform(0, 255, (48, 48)).astype(np.float32), (0, 0), 2.0)
        for _ in range(n)
    ]
    return np.clip(np.stack(out) * 2 - 128, 0, 255).astype(np.uint8)


def _save_net(path: Path, seed: int, occluded_bias: float | None = None) -> Path:
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = build_occlusion_net()
    if occluded_bias is not None:  # a fit that calls every face clean
        head = net[-1]
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.constant_(head.bias, occluded_bias)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _labels(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [f"c/{i}.jpg" for i in range(n)],
            "occluded": [i % 2 for i in range(n)],
            "sample": ["random" if i % 3 else "ranked" for i in range(n)],
            "idx": np.arange(n),
        }
    )


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_synthetic_fit_is_seeded_and_its_file_loads(tmp_path):
    crops = _crops(60)
    a = fit.fit_synthetic(crops, epochs=1, seed=3)
    b = fit.fit_synthetic(crops, epochs=1, seed=3)
    c = fit.fit_synthetic(crops, epochs=1, seed=4)
    assert _same(a.state, b.state) and not _same(a.state, c.state)
    assert a.n_faces == 60 and len(a.history) == 1 and a.history[0]["epoch"] == 1
    path = fit.save_occlusion_weights([a.state], tmp_path / "w.safetensors", {"fitted_by": "test"})
    model = OcclusionModel(path)
    assert len(model.nets) == 1
    assert _same(model.nets[0].state_dict(), a.state)
    probs = model.probabilities(crops[:4])
    assert probs.shape == (4, 5) and ((probs >= 0) & (probs <= 1)).all()
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata()["fitted_by"] == "test" and f.metadata()["analysis_version"].startswith(
            "faces-"
        )


def test_clean_with_drops_the_faces_an_earlier_fit_finds_occluded(tmp_path):
    crops = _crops(40)
    all_clean = _save_net(tmp_path / "clean.safetensors", 0, occluded_bias=-10.0)
    all_occluded = _save_net(tmp_path / "occluded.safetensors", 0, occluded_bias=10.0)
    kept = fit.fit_synthetic(crops, epochs=1, clean_with=all_clean)
    assert kept.n_dropped == 0 and kept.n_faces == 40
    with pytest.raises(CurateError, match="no face left"):
        fit.fit_synthetic(crops, epochs=1, clean_with=all_occluded)
    with pytest.raises(CurateError, match="clean_with"):
        fit.fit_synthetic(crops, epochs=1, pseudo_labels=True)


def test_labelled_fold_never_trains_on_its_held_out_faces(tmp_path, monkeypatch):
    crops = _crops(90, seed=1)
    labels = _labels(50)
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    fold = fit.cv_folds(len(labels))
    held = set(labels.loc[fold == 2, "idx"])
    train = set(labels.loc[fold != 2, "idx"])
    assert held and train

    jittered: list[np.ndarray] = []
    batches: list[tuple[np.ndarray, np.ndarray]] = []
    real_jitter, real_batch = occluders.jitter, occluders.labelled_stage_batch

    def spy_jitter(img, rng):
        jittered.append(np.array(img, copy=True))
        return real_jitter(img, rng)

    def spy_batch(crops_, idx, rng, donors, *args, **kwargs):
        batches.append((np.array(idx, copy=True), np.array(donors, copy=True)))
        return real_batch(crops_, idx, rng, donors, *args, **kwargs)

    monkeypatch.setattr(occluders, "jitter", spy_jitter)
    monkeypatch.setattr(occluders, "labelled_stage_batch", spy_batch)
    res = fit.fit_labelled(
        crops, labels, init=init, clean_with=clean, seeds=(0,), epochs=2, cv_fold=2
    )

    faces = {i: crops[i].astype(np.float32) for i in range(len(crops))}
    seen = {i for img in jittered for i, f in faces.items() if np.array_equal(img, f)}
    assert seen & train, "the spy must see the labelled faces that are trained on"
    assert not seen & held
    assert batches, "the spy must see the synthetic part of the batches"
    for idx, donors in batches:
        assert not set(idx.tolist()) & (held | train)  # the clean pool holds no labelled face
        assert not any(np.array_equal(d, crops[h]) for d in donors for h in held)
    assert res.n_clean == len(crops) - len(labels) and res.n_train == len(train)
    assert set(res.held_out["idx"]) == held
    assert res.held_out["score"].between(0, 1).all()
    assert len(res.history) == 2 and "auroc" in res.history[0]


def test_labelled_fit_is_seeded_and_saves_one_file_of_members(tmp_path):
    crops = _crops(70, seed=2)
    labels = _labels(30)
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    a = fit.fit_labelled(crops, labels, init=init, clean_with=clean, seeds=(0, 1), epochs=1)
    b = fit.fit_labelled(crops, labels, init=init, clean_with=clean, seeds=(0, 1), epochs=1)
    assert all(_same(x, y) for x, y in zip(a.states, b.states, strict=True))
    assert not _same(a.states[0], a.states[1])
    assert a.held_out.empty and len(a.baseline) == 30
    path = fit.save_occlusion_weights(a.states, tmp_path / "two.safetensors", {})
    model = OcclusionModel(path)
    assert len(model.nets) == 2
    assert all(_same(n.state_dict(), s) for n, s in zip(model.nets, a.states, strict=True))


def test_match_labels_names_faces_outside_the_sample():
    labels = pd.DataFrame({"path": ["a/1.jpg", "b/2.jpg"], "occluded": [1, 0], "sample": "random"})
    got = fit.match_labels(labels, ["b/2.jpg", "x/0.jpg", "a/1.jpg"])
    assert got["idx"].tolist() == [2, 0]
    with pytest.raises(CurateError, match="b/2.jpg"):
        fit.match_labels(labels, ["a/1.jpg"])


def test_fit_script_needs_an_explicit_out():
    res = subprocess.run(
        [sys.executable, "-m", "bench.recipes.fit_occlusion", "--epochs", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert res.returncode == 2 and "--out" in res.stderr


def test_the_committed_stage4_weights_start_the_labelled_stage():
    from curate.io import file_sha256

    stage4 = ROOT / "bench" / "audit" / "occlusion_stage4.safetensors"
    assert file_sha256(stage4) == "b53e65729a0ed0fe14fda9ff9b0192dcb4f0feda4122a02d844bcd3991496e00"
    model = OcclusionModel(stage4)
    assert len(model.nets) == 1
    probs = model.probabilities(_crops(3))
    assert probs.shape == (3, 5) and ((probs >= 0) & (probs <= 1)).all()


# --------------------------------------------------------------------------- the two outputs


def test_glasses_only_reads_the_kind_of_cover():
    assert fit.glasses_only("clear_glasses") and fit.glasses_only("clear_glasses;hat")
    for kind in (
        "",
        "none",
        "hand",
        "hand;clear_glasses",
        "sunglasses",
        "clear_glasses;other",
        None,
        float("nan"),
    ):
        assert not fit.glasses_only(kind), kind


def test_covered_scores_discount_clear_glasses_only():
    from curate.faces.occlusion import covered_scores

    two = np.array([[0.9, 0.0], [0.9, 1.0], [0.8, 0.5], [0.1, 0.9]])
    occlusion, covered = covered_scores(two)
    assert np.allclose(covered, two[:, 0]) and np.allclose(occlusion, [0.9, 0.0, 0.4, 0.01])
    five = np.array([[0.7, 0.1, 0.2, 0.3, 0.4]])  # a synthetic-stage network has no glasses output
    assert covered_scores(five)[0] == pytest.approx([0.7]) and covered_scores(five)[
        1
    ] == pytest.approx([0.7])


def test_labelled_stage_synthetic_targets():
    crops = _crops(8, seed=5).astype(np.float32)
    rng = np.random.default_rng(0)
    seen = {"dark": 0, "clear": 0}
    for _ in range(200):
        out, y = occluders.covered_targets(crops[0], rng, crops, (occluders.glasses,))
        assert y[0] == 1 and out.shape == (48, 48)
        seen["clear" if y[1] == 1 else "dark"] += 1
    assert seen["dark"] and seen["clear"]  # sunglasses are covered, not "clear glasses only"
    for _ in range(20):
        _, y = occluders.covered_targets(crops[0], rng, crops, (occluders.sunglasses,))
        assert y.tolist() == [1.0, 0.0]
    mix = occluders.labelled_stage_mix()
    assert occluders.hat not in mix and mix.count(occluders.sunglasses) == 2
    for _ in range(50):
        _, y = occluders.covered_targets(crops[1], rng, crops, (occluders.face_mask,))
        assert y[1] == 0
    x, y = occluders.labelled_stage_batch(
        crops, np.arange(8), np.random.default_rng(1), crops, occluders.labelled_stage_mix()
    )
    assert x.shape == (8, 1, 48, 48) and y.shape == (8, 2)


def test_labelled_fit_makes_two_outputs_from_the_first_two_of_init(tmp_path):
    from safetensors.torch import load_file

    crops = _crops(70, seed=3)
    labels = _labels(30).assign(
        kind=["clear_glasses" if i % 4 == 1 else ("hand" if i % 2 else "") for i in range(30)]
    )
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    start = fit._start_from(init)
    full = build_occlusion_net()
    full.load_state_dict(load_file(str(init)))
    two = build_occlusion_net(2)
    two.load_state_dict(start)
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(two.eval()(x), full.eval()(x)[:, :2])
    res = fit.fit_labelled(
        crops, labels, init=init, clean_with=clean, seeds=(0,), epochs=1, cv_fold=0
    )
    model = OcclusionModel(fit.save_occlusion_weights(res.states, tmp_path / "w.safetensors", {}))
    assert model.probabilities(crops[:4]).shape == (4, 2)
    assert all(o <= c + 1e-12 for o, c in model.scores(crops[:4]))
    assert {"score", "occlusion"} <= set(res.held_out.columns)


def test_excluded_faces_never_enter_the_clean_pool(tmp_path, monkeypatch):
    crops = _crops(80, seed=4)
    labels = _labels(20)
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    exclude = list(range(60, 80))
    batches = []
    real = occluders.labelled_stage_batch

    def spy(crops_, idx, rng, donors, *args, **kwargs):
        batches.append((np.array(idx, copy=True), np.array(donors, copy=True)))
        return real(crops_, idx, rng, donors, *args, **kwargs)

    monkeypatch.setattr(occluders, "labelled_stage_batch", spy)
    res = fit.fit_labelled(
        crops, labels, init=init, clean_with=clean, seeds=(0,), epochs=1, exclude=exclude
    )
    assert res.n_clean == 80 - 20 - 20
    for idx, donors in batches:
        assert not set(idx.tolist()) & set(exclude)
        assert not any(np.array_equal(d, crops[e]) for d in donors for e in exclude)


def test_a_weights_file_of_mixed_networks_is_refused(tmp_path):
    from safetensors.torch import save_file

    states = [
        {k: v.contiguous() for k, v in build_occlusion_net(n).state_dict().items()} for n in (2, 5)
    ]
    save_file(fit.join_members(states), str(tmp_path / "mixed.safetensors"))
    with pytest.raises(CurateError, match="outputs"):
        OcclusionModel(tmp_path / "mixed.safetensors")


def test_extra_uncovered_faces_and_balanced_classes(tmp_path, monkeypatch):
    """extra_bare faces are trained on as uncovered and join the clean pool; with classes
    the uncovered labelled faces are drawn with each class equally likely."""
    crops = _crops(70, seed=5)
    labels = _labels(30)
    extra = _crops(10, seed=6)
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    # one rare class among the uncovered labelled faces: a few of them, the rest "common"
    bare = labels.loc[labels["occluded"] == 0, "idx"].to_numpy()
    classes = np.array(["common"] * len(crops), dtype=object)
    classes[bare[:2]] = "rare"
    jittered: list[np.ndarray] = []
    real_jitter = occluders.jitter

    def spy_jitter(img, rng):
        jittered.append(np.array(img, copy=True))
        return real_jitter(img, rng)

    monkeypatch.setattr(occluders, "jitter", spy_jitter)
    res = fit.fit_labelled(
        crops,
        labels,
        init=init,
        clean_with=clean,
        seeds=(0,),
        epochs=3,
        classes=classes.tolist(),
        extra_bare=extra,
        extra_classes=["posed"] * len(extra),
    )
    assert res.n_clean == len(crops) - len(labels) + len(extra)
    assert res.n_train == len(labels) + len(extra)
    seen = jittered
    rare = sum(any(np.array_equal(s, crops[i].astype(np.float32)) for i in bare[:2]) for s in seen)
    common = sum(
        any(np.array_equal(s, crops[i].astype(np.float32)) for i in bare[2:]) for s in seen
    )
    posed = sum(any(np.array_equal(s, e.astype(np.float32)) for e in extra) for s in seen)
    assert posed > 0
    # three classes drawn alike: the 2 rare faces make about a third of the uncovered draws
    # (unbalanced: 2 of 25 faces, 8%)
    assert rare / (rare + common + posed) > 0.2, (rare, common, posed)


def test_balance_covered_draws_covered_faces_of_every_class_alike(tmp_path, monkeypatch):
    """With balance_covered the covered labelled faces are drawn with each class equally
    likely too (the class says nothing about the target); without it, as they come."""
    crops = _crops(70, seed=7)
    labels = _labels(30)
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    covered = labels.loc[labels["occluded"] == 1, "idx"].to_numpy()
    classes = np.array(["common"] * len(crops), dtype=object)
    classes[covered[:2]] = "rare"  # 2 of the 15 covered faces
    real_jitter = occluders.jitter

    def rare_share(balance_covered: bool) -> float:
        jittered: list[np.ndarray] = []

        def spy_jitter(img, rng):
            jittered.append(np.array(img, copy=True))
            return real_jitter(img, rng)

        monkeypatch.setattr(occluders, "jitter", spy_jitter)
        fit.fit_labelled(
            crops,
            labels,
            init=init,
            clean_with=clean,
            seeds=(0,),
            epochs=3,
            classes=classes.tolist(),
            balance_covered=balance_covered,
        )
        drawn = [
            sum(any(np.array_equal(s, crops[i].astype(np.float32)) for s in jittered) for i in g)
            for g in (covered[:2], covered[2:])
        ]
        hits = [
            sum(np.array_equal(s, crops[i].astype(np.float32)) for s in jittered for i in g)
            for g in (covered[:2], covered[2:])
        ]
        assert drawn[0] > 0
        return hits[0] / (hits[0] + hits[1])

    # two classes drawn alike: the 2 rare faces make about half of the covered draws
    # (as they come: 2 of 15 faces, 13%)
    assert rare_share(True) > 0.35
    assert rare_share(False) < 0.3


def test_clothing_paints_only_under_the_chin_and_is_seeded():
    """The painted collar changes the bottom rows of the crop only (never the eyes, nose or
    mouth of the template) and is the same for the same seed."""
    face = _crops(1, seed=8)[0].astype(np.float32)
    lowest = int(min(occluders.CLOTHING_TOP) - 5.0)  # the edge rises at most 5 rows at the sides
    for seed in range(20):
        a = occluders.clothing(face, np.random.default_rng(seed))
        b = occluders.clothing(face, np.random.default_rng(seed))
        assert np.array_equal(a, b)
        assert np.array_equal(a[: lowest - 1], face[: lowest - 1])
        assert not np.allclose(a[-2:], face[-2:])


def test_clothing_is_painted_only_when_asked(tmp_path, monkeypatch):
    """Without clothing no collar is painted (the recipe without it is unchanged); with it
    faces do get one, and the labelled faces and the clean pool stay the same."""
    crops = _crops(70, seed=9)
    labels = _labels(30)
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    painted = []
    real = occluders.clothing

    def spy(img, rng):
        painted.append(1)
        return real(img, rng)

    monkeypatch.setattr(occluders, "clothing", spy)
    res = fit.fit_labelled(crops, labels, init=init, clean_with=clean, seeds=(0,), epochs=1)
    assert not painted
    res2 = fit.fit_labelled(
        crops, labels, init=init, clean_with=clean, seeds=(0,), epochs=1, clothing=0.5
    )
    assert painted
    assert res.n_train == res2.n_train and res.n_clean == res2.n_clean


def test_soup_averages_the_seeds_into_one_network(tmp_path):
    crops = _crops(70, seed=2)
    labels = _labels(30)
    init = _save_net(tmp_path / "init.safetensors", 1)
    clean = _save_net(tmp_path / "clean.safetensors", 2, occluded_bias=-10.0)
    kw = {"init": init, "clean_with": clean, "seeds": (0, 1), "epochs": 1, "cv_fold": 0}
    both = fit.fit_labelled(crops, labels, **kw)
    souped = fit.fit_labelled(crops, labels, **kw, soup=True)
    assert len(souped.states) == 1
    one = souped.states[0]
    assert not any(torch.equal(one["0.weight"], st["0.weight"]) for st in both.states)
    for k, v in one.items():
        if v.dtype.is_floating_point:
            want = (both.states[0][k] + both.states[1][k]) / 2
            assert torch.allclose(v, want, atol=1e-7), k
        else:
            assert torch.equal(v, both.states[0][k])
    # the held-out fold is scored by the soup, not by the two networks
    path = fit.save_occlusion_weights(souped.states, tmp_path / "soup.safetensors", {})
    model = OcclusionModel(path)
    assert len(model.nets) == 1
    held = crops[souped.held_out["idx"].to_numpy()]
    assert np.allclose(model.probabilities(held)[:, 0], souped.held_out["score"], atol=0.02)
    assert not np.array_equal(souped.held_out["score"], both.held_out["score"])
    with pytest.raises(CurateError, match="different parameters"):
        fit.soup_states([one, {k: v for k, v in one.items() if not k.startswith("0.")}])
