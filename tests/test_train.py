"""Tests of curate finetune (curate.train): losses against brute force, the in-loop
boundary against the formulas of issue 3, determinism, resume, run format, bad input."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from curate.errors import CurateError
from curate.runs import load_run
from curate.train.config import FinetuneConfig, ScreenSettings
from curate.train.data import (
    NO_AUGMENT,
    Augment,
    ImageStore,
    batch_members,
    epoch_batches,
    load_training_data,
    step_generator,
    to_model_input,
)
from curate.train.loop import finetune
from curate.train.loss import (
    InLoopScreen,
    mine_negatives,
    quadruplet_loss,
    triplet_loss,
)
from curate.train.suspicion import suspect_images, suspicion_cut

torch.set_num_threads(1)  # 2 shared cores: threads only contend

CLASSES = ("angry", "happy", "sad")
SIZE = 16


def draw(cls: int, rng: np.random.Generator) -> np.ndarray:
    """A 16x16 grey pattern per class (stripes, bars, blob) plus noise."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    if cls == 0:
        img = 128 + 90 * np.sign(np.sin(y * 0.9 + rng.uniform(0, 3)))
    elif cls == 1:
        img = 128 + 90 * np.sign(np.sin(x * 0.9 + rng.uniform(0, 3)))
    else:
        cy, cx = rng.uniform(5, 11, 2)
        img = np.where((y - cy) ** 2 + (x - cx) ** 2 < 16, 230, 30).astype(float)
    img = img + rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_build(
    root: Path,
    *,
    per_class_train: int = 10,
    per_class_val: int = 4,
    quadruplets: bool = False,
    seed: int = 0,
) -> Path:
    """Write ``root/images/<split>/<class>/*.png`` and a build-tuples folder ``root/build``."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", per_class_train), ("val", per_class_val)):
        for ci, cls in enumerate(CLASSES):
            d = root / "images" / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                p = d / f"{cls}_{i:03d}.png"
                Image.fromarray(draw(ci, rng), mode="L").save(p)
                rows.append(
                    {
                        "path": str(p.resolve()),
                        "rel_path": str(p.relative_to(root)),
                        "label": cls,
                        "split": split,
                        "subject": None,
                        "width": SIZE,
                        "height": SIZE,
                        "mode": "L",
                        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                        "status": "ok",
                        "detail": None,
                    }
                )
    images = pd.DataFrame(rows)
    images.insert(0, "image_id", np.arange(len(images), dtype=np.int64))
    tuples = []
    train = images[images["split"] == "train"]
    for _, a in train.iterrows():
        same = train[(train["label"] == a["label"]) & (train["image_id"] != a["image_id"])]
        other = train[train["label"] != a["label"]]
        pos = same.iloc[rng.integers(len(same))]
        neg = other.iloc[rng.integers(len(other))]
        t = {"anchor": a["image_id"], "positive": pos["image_id"], "negative": neg["image_id"]}
        labels = {"anchor_label": a["label"], "negative_label": neg["label"]}
        if quadruplets:
            third = other[other["label"] != neg["label"]]
            n2 = third.iloc[rng.integers(len(third))]
            t["negative2"] = n2["image_id"]
            labels["negative2_label"] = n2["label"]
        tuples.append({**t, **labels, "split": "train"})
    tdf = pd.DataFrame(tuples)
    tdf.insert(0, "tuple_id", np.arange(len(tdf), dtype=np.int64))
    for c in ("anchor", "positive", "negative", "negative2"):
        if c in tdf:
            tdf[c] = tdf[c].astype(np.int64)
    build = root / "build"
    build.mkdir(parents=True, exist_ok=True)
    images.to_parquet(build / "images.parquet", index=False)
    tdf.to_parquet(build / "tuples.parquet", index=False)
    kind = "quadruplet" if quadruplets else "triplet"
    (build / "run.json").write_text(
        json.dumps({"command": "build-tuples", "params": {"kind": kind}})
    )
    return build


def tiny_config(**overrides: object):  # -> FinetuneConfig
    """Settings small enough for a test: a tiny timm CNN at 16x16, CPU, 2 epochs."""
    from curate.train.config import EARLIER_DEFAULTS, FinetuneConfig

    base = dict(
        backbone="test_resnet",
        weights="none",
        in_chans=1,
        input_size=SIZE,
        embed_dim=16,
        epochs=2,
        batch_tuples=8,
        device="cpu",
        seed=3,
        screen_window=64,
        checkpoint_every=0,
        lr=3e-3,
        workers=1,
        **EARLIER_DEFAULTS,
    )
    base.update(overrides)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_build(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(build: Path, tmp_path_factory: pytest.TempPathFactory):
    run = tmp_path_factory.mktemp("runs") / "run"
    return finetune(build, run, tiny_config())


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _comparable(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.drop(columns=["images_per_s"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- losses


def test_quadruplet_loss_matches_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(12, 5, generator=g)
    idx = torch.randint(0, 12, (4, 9), generator=g)
    a, p, n, n2 = idx
    got = quadruplet_loss(emb, a, p, n, n2, margin=0.5, margin2=0.2)
    e = emb.tolist()

    def d(u: int, v: int) -> float:
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(e[u], e[v], strict=True)))

    total = 0.0
    for i in range(9):
        dap = d(int(a[i]), int(p[i]))
        total += max(0.0, dap - d(int(a[i]), int(n[i])) + 0.5) + max(
            0.0, dap - d(int(n[i]), int(n2[i])) + 0.2
        )
    assert got.item() == pytest.approx(total / 9, rel=1e-5)


def test_triplet_loss_matches_brute_force_loop_and_has_gradients():
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(10, 4, generator=g, requires_grad=True)
    a, p, n = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]), torch.tensor([8, 9, 0, 1])
    got = triplet_loss(emb, a, p, n, margin=0.3)
    e = emb.detach()
    want = (
        sum(
            max(0.0, (e[x] - e[y]).norm().item() - (e[x] - e[z]).norm().item() + 0.3)
            for x, y, z in zip(a.tolist(), p.tolist(), n.tolist(), strict=True)
        )
        / 4
    )
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    assert triplet_loss(emb, a[:0], p[:0], n[:0], margin=0.3).item() == 0.0


def test_hard_mining_picks_closest_allowed_other_label_negative():
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(9, 3, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2])
    allowed = torch.tensor([True] * 8 + [False])
    a, p, n = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5]), torch.tensor([2, 0, 0])
    got = mine_negatives(emb, a, p, n, labels, allowed, "hard")
    for t in range(3):
        cands = [j for j in range(9) if labels[j] != labels[a[t]] and allowed[j]]
        best = min(cands, key=lambda j: ((emb[a[t]] - emb[j]).norm().item(), j))
        assert got[t].item() == best
    semi = mine_negatives(emb, a, p, n, labels, allowed, "semihard")
    for t in range(3):
        dap = (emb[a[t]] - emb[p[t]]).norm().item()
        cands = [
            j
            for j in range(9)
            if labels[j] != labels[a[t]] and allowed[j] and (emb[a[t]] - emb[j]).norm().item() > dap
        ]
        want = (
            min(cands, key=lambda j: (emb[a[t]] - emb[j]).norm().item()) if cands else n[t].item()
        )
        assert semi[t].item() == want


# ----------------------------------------------------------------------------- in-loop boundary


def _brute_boundary(window: np.ndarray, alpha_pos: float, alpha_neg: float, null: str):
    centred = window - window.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    if null == "theory":
        d_null = window.shape[1]
    else:
        ev = np.linalg.eigvalsh(np.cov(unit, rowvar=False))
        d_null = ev.sum() ** 2 / (ev**2).sum()
    mu, sigma = math.sqrt(2), 1 / math.sqrt(2 * d_null)
    z = NormalDist()
    return (
        window.mean(axis=0),
        mu + z.inv_cdf(1 - alpha_pos) * sigma,
        mu - z.inv_cdf(1 - alpha_neg) * sigma,
        d_null,
    )


@pytest.mark.parametrize("null", ["effective", "theory"])
def test_in_loop_screen_matches_brute_force_boundary_on_planted_tuples(null: str):
    rng = np.random.default_rng(0)
    d = 16
    centres = rng.normal(size=(10, d)) * 3
    labels = np.repeat(np.arange(10), 10)
    emb = (centres[labels] + rng.normal(size=(100, d)) * 0.5).astype(np.float32)
    # plant a positive at the antipode of anchor 0 (a mislabelled positive) and a negative
    # that is a near copy of anchor 5
    emb = np.vstack([emb, 2 * emb.mean(axis=0) - emb[0], emb[5] + 0.01]).astype(np.float32)
    labels = np.append(labels, [0, 3])
    tuples = [(0, 1, 25), (21, 22, 45), (41, 42, 3), (0, 100, 50), (5, 6, 101)]
    local = np.array(tuples)
    screen = InLoopScreen(ScreenSettings(null=null, window=1000), dim=d, scale=1.0)
    res = screen(emb, labels, local, step=0, seed=0)
    mean, t_pos, t_neg, d_null = _brute_boundary(emb, 0.05, 0.05, null)
    assert res.d_null == pytest.approx(d_null, rel=1e-4)
    assert res.t_pos == pytest.approx(t_pos, rel=1e-5) and res.t_neg == pytest.approx(
        t_neg, rel=1e-5
    )
    x = emb - mean
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i, (a, p, n) in enumerate(tuples):
        far = np.linalg.norm(x[a] - x[p]) > t_pos
        close = np.linalg.norm(x[a] - x[n]) < t_neg
        assert (
            res.too_far[i] == far
            and res.too_close[i] == close
            and res.keep[i] == (not far and not close)
        )
    assert res.too_far[3] and res.too_close[4]  # the planted ones
    assert res.keep[:3].all()  # the clean ones


def test_in_loop_screen_is_monotone_in_alpha_and_window_commits_only_on_request():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    local = rng.integers(0, 40, size=(30, 3))
    kept = []
    for alpha in (0.01, 0.05, 0.2, 0.5):
        screen = InLoopScreen(ScreenSettings(alpha_pos=alpha, alpha_neg=alpha), dim=6, scale=1.0)
        kept.append(screen(emb, labels, local, step=0, seed=0).keep)
        assert screen.window.shape[0] == 0
        screen.commit_pending()
        assert screen.window.shape == (40, 6)
    for looser, stricter in zip(kept, kept[1:], strict=False):
        assert not (stricter & ~looser).any()  # raising alpha never keeps a tuple more


def test_in_loop_class_aware_screen_is_the_screen_fit_and_flags_a_planted_mislabelled_positive():
    from curate.stats import statistical as st
    from curate.stats.nulls import fit_class_boundary

    rng = np.random.default_rng(0)
    d = 16
    centres = rng.normal(size=(3, d)) * 3
    labels = np.repeat(np.arange(3), 60)
    emb = (centres[labels] + rng.normal(size=(180, d)) * 0.7).astype(np.float32)
    # image 180 looks like class 2 but is labelled 0: a mislabelled image
    emb = np.vstack([emb, centres[2] + rng.normal(size=d) * 0.7]).astype(np.float32)
    labels = np.append(labels, 0)
    same = [(i, i + 1, (i + 70) % 180) for i in range(0, 178, 3) if i // 60 == (i + 1) // 60]
    tuples = np.array([(0, 180, 70), *same])
    screen = InLoopScreen(ScreenSettings(null="class_empirical", window=1000), dim=d, scale=1.0)
    res = screen(emb, labels, tuples, step=0, seed=0)
    assert res.active and res.d_null is None and res.suspicion is not None
    # the very fit of `curate screen` on the window (here the batch itself)
    x = st.normalize(emb, center=True)
    fit = fit_class_boundary(
        x, labels.astype(str), alpha_pos=0.05, alpha_neg=0.05, seed=0, pairs_per_class_pair=500
    )
    codes = fit.nulls.codes(labels.astype(str))
    for k, (a, p, n) in enumerate(tuples):
        assert res.too_far[k] == (np.linalg.norm(x[a] - x[p]) > fit.nulls.t_pos[codes[a]])
        assert res.too_close[k] == (
            np.linalg.norm(x[a] - x[n]) < fit.nulls.t_neg[codes[a], codes[n]]
        )
    assert res.too_far[0] and res.too_far[1:].mean() < 0.15  # the planted positive; few clean ones
    assert res.suspicion[180] > 0.9 and res.suspicion[180] > np.nanmax(res.suspicion[:180])
    assert res.t_pos == pytest.approx(float(np.mean(fit.nulls.t_pos)))


@pytest.mark.parametrize("null", ["class_empirical", "effective"])
def test_in_loop_screen_fits_a_batch_larger_than_its_window(null: str):
    """A P x K batch of 96 images with --screen-window 64 (the torchrun test's CLI): the
    boundary is fitted to the batch itself, never to fewer rows than the batch indexes."""
    rng = np.random.default_rng(4)
    d = 6
    labels = np.repeat(np.arange(4), 24)
    emb = (rng.normal(size=(4, d))[labels] * 3 + rng.normal(size=(96, d))).astype(np.float32)
    tuples = np.array([(i, i + 1, (i + 30) % 96) for i in range(0, 94, 3) if i % 24 < 22])
    small = InLoopScreen(ScreenSettings(null=null, window=64), dim=d, scale=1.0)
    big = InLoopScreen(ScreenSettings(null=null, window=96), dim=d, scale=1.0)
    got = small(emb, labels, tuples, step=0, seed=0)
    want = big(emb, labels, tuples, step=0, seed=0)
    assert got.active and (got.keep == want.keep).all() and (got.too_far == want.too_far).all()
    small.commit_pending()
    assert small.window.shape[0] == 96  # the batch, whole
    # the next batch is fitted with the window back to its size (its last 64 rows and the batch)
    small(emb[:10], labels[:10], np.array([(0, 1, 9)]), step=1, seed=0)
    small.commit_pending()
    assert small.window.shape[0] == 64


def test_class_cap_limits_each_label_of_the_rank_over_all_images():
    # label 0 holds the 6 most suspect images of 20, label 1 the rest; a 25% cut over all images
    # takes 5 images, all of label 0; capped at a third of a label it takes 2 of label 0's 6
    history = np.column_stack(
        [np.r_[np.linspace(0.9, 0.8, 6), np.linspace(0.5, 0.1, 14)], np.ones(20)]
    )
    groups = np.r_[np.zeros(6, int), np.ones(14, int)]
    overall = suspicion_cut(history, 0.25, 1)
    assert suspect_images(history, None, overall, 1).tolist() == [True] * 5 + [False] * 15
    capped = suspicion_cut(history, 0.25, 1, groups, cap=1 / 3)
    assert suspect_images(history, None, capped, 1).tolist() == [True] * 2 + [False] * 18
    assert np.all(capped[groups == 1] == overall)  # under its cap a label keeps the overall cut
    loose = suspicion_cut(history, 0.25, 1, groups, cap=1.0)  # a cap that never binds
    assert np.all(loose == overall)


def test_class_cap_is_checked():
    with pytest.raises(CurateError, match="--suspect-class-cap must be"):
        FinetuneConfig(mining="batch-hard", suspect_class_cap=0.0).check()
    with pytest.raises(CurateError, match="--suspect-per-class"):
        FinetuneConfig(mining="batch-hard", suspect_class_cap=0.5, suspect_per_class=True).check()


def test_suspect_images_match_a_brute_force_loop():
    rng = np.random.default_rng(2)
    history = np.column_stack([rng.uniform(0, 4, 50), rng.integers(0, 6, 50)]).astype(float)
    history[:, 0] = np.minimum(history[:, 0], history[:, 1])  # a sum of values in [0, 1]
    batch = np.where(rng.random(50) < 0.2, np.nan, rng.random(50))
    eligible = history[:, 1] >= 3
    means = sorted(history[eligible, 0] / history[eligible, 1])
    cut = suspicion_cut(history, 0.25, 3)
    assert cut == means[len(means) - round(0.25 * len(means))]
    assert sum(m >= cut for m in means) == round(0.25 * len(means))  # no ties in random data
    got = suspect_images(history, batch, cut, 3)
    for i in range(50):
        total, visits = history[i]
        if not np.isnan(batch[i]):
            total, visits = total + batch[i], visits + 1
        assert got[i] == (visits >= 3 and total / max(visits, 1) >= cut)
    assert suspicion_cut(history, 0.25, 100) == math.inf
    groups = rng.integers(0, 3, 50)
    per = suspicion_cut(history, 0.25, 3, groups)
    for g in range(3):
        assert np.all(per[groups == g] == suspicion_cut(history[groups == g], 0.25, 3))
    got = suspect_images(history, batch, per, 3)
    for i in range(50):
        total, visits = history[i]
        if not np.isnan(batch[i]):
            total, visits = total + batch[i], visits + 1
        assert got[i] == (visits >= 3 and total / max(visits, 1) >= per[i])
    assert not suspect_images(history, None, math.inf, 1).any()


def test_excluding_suspects_records_them_and_leaves_them_out(build: Path, tmp_path: Path):
    with pytest.raises(CurateError, match="class-aware null"):
        tiny_config(exclude_suspects=True).check()
    res = finetune(
        build,
        tmp_path / "ex",
        tiny_config(
            null="class_empirical",
            exclude_suspects=True,
            suspect_share=0.25,
            suspect_min_visits=2,
            suspect_per_class=False,
            epochs=2,
        ),
    )
    run = res.run_dir
    sus = pd.read_parquet(run / "image_suspicion.parquet")
    n_train = 3 * 10
    assert len(sus) == n_train and sus["visits"].gt(0).all()
    assert sus["mean_suspicion"].is_monotonic_decreasing
    eligible = sus[sus["visits"] >= 2]
    assert sus["excluded"].sum() == round(0.25 * len(eligible)) > 0  # the most suspect quarter
    assert eligible["excluded"].tolist() == sorted(eligible["excluded"].tolist(), reverse=True)
    assert res.run["counts"]["images_excluded"] == int(sus["excluded"].sum())
    by_epoch = pd.read_parquet(run / "tuple_drops_by_epoch.parquet")
    drops = pd.read_parquet(run / "tuple_drops.parquet")
    assert sorted(by_epoch["epoch"].unique()) <= [0, 1]
    for col, flag in (
        ("n_too_far", "positive_too_far"),
        ("n_too_close", "negative_too_close"),
        ("n_suspect", "suspect_member"),
    ):
        assert drops[col].sum() == by_epoch[flag].sum()
    train = res.metrics[res.metrics["phase"] == "train"]
    assert np.allclose(1 - train["n_kept"] / train["n_tuples"], train["share_dropped"])
    assert (
        (train["share_too_far"] + train["share_too_close"] + train["share_suspect"])
        >= train["share_dropped"] - 1e-9
    ).all()
    # a tuple dropped as suspect has an excluded anchor or positive at the end of the run
    if by_epoch["suspect_member"].any():
        assert sus["excluded"].any()


def test_an_image_the_screen_keeps_calling_suspect_leaves_both_losses(
    build: Path, tmp_path: Path, monkeypatch
):
    """Plant the suspicion (global rank): the screen calls every image labelled angry (code 0)
    suspect and no other. Once such an image has its visits, no tuple with it as anchor or positive reaches
    the metric loss and it never reaches the classification loss; the other images do."""
    from dataclasses import replace

    import torch.nn.functional as F

    from curate.train import loop
    from curate.train.loss import InLoopScreen

    real_screen, real_ce = InLoopScreen.__call__, F.cross_entropy
    seen_labels: list[np.ndarray] = []

    def planted(self, emb, labels, local, **kw):
        return replace(
            real_screen(self, emb, labels, local, **kw), suspicion=(labels == 0).astype(float)
        )

    def spy(logits, target, *a, **kw):
        seen_labels.append(target.cpu().numpy())
        return real_ce(logits, target, *a, **kw)

    monkeypatch.setattr(InLoopScreen, "__call__", planted)
    monkeypatch.setattr(loop.F, "cross_entropy", spy)
    res = finetune(
        build,
        tmp_path / "planted",
        tiny_config(
            null="class_empirical",
            exclude_suspects=True,
            suspect_share=0.2,
            suspect_min_visits=2,
            suspect_per_class=False,
            epochs=3,
        ),
    )
    sus = pd.read_parquet(res.run_dir / "image_suspicion.parquet")
    images = pd.read_parquet(build / "images.parquet").set_index("image_id")
    angry = images.loc[sus["image_id"], "label"].eq("angry").to_numpy()
    assert (
        sus["excluded"].to_numpy().tolist() == angry.tolist()
    )  # ties at the top: all angry, nothing else
    by_epoch = pd.read_parquet(res.run_dir / "tuple_drops_by_epoch.parquet")
    tuples = pd.read_parquet(build / "tuples.parquet")
    tuples = tuples[tuples["split"].fillna("") != "val"].set_index("tuple_id")
    flags = ["positive_too_far", "negative_too_close", "suspect_member"]
    last = (
        by_epoch[by_epoch["epoch"] == 2]
        .set_index("tuple_id")[flags]  # rows only for dropped tuples
        .reindex(tuples.index, fill_value=False)
        .astype(bool)
    )
    anchor_angry = images.loc[tuples["anchor"], "label"].eq("angry").to_numpy()
    assert anchor_angry.any() and not anchor_angry.all()
    assert (
        last["suspect_member"].to_numpy().tolist() == anchor_angry.tolist()
    )  # anchor and positive share a label
    train = res.metrics[res.metrics["phase"] == "train"]
    assert len(seen_labels) == len(train)  # one classification loss per step
    steps_per_epoch = len(train) // 3
    late = seen_labels[
        2 * steps_per_epoch : 3 * steps_per_epoch
    ]  # the last epoch's classification targets
    assert len(late) == steps_per_epoch and all(len(t) and not (t == 0).any() for t in late)
    assert any((t == 1).any() for t in late) and any((t == 2).any() for t in late)
    assert (train["images_excluded"].iloc[2 * steps_per_epoch :] > 0).all()
    # the metric loss of the last epoch saw exactly the tuples neither the boundary nor the suspects dropped
    kept = ~last.any(axis=1)
    assert (
        train["n_kept"].iloc[2 * steps_per_epoch :].sum()
        == kept.sum()
        < (~last["positive_too_far"] & ~last["negative_too_close"]).sum()
    )


def test_per_class_rank_leaves_out_the_share_of_every_class_never_a_whole_class(
    build: Path, tmp_path: Path, monkeypatch
):
    """Plant a suspicion far higher for one class (as FER2013's hard classes get): the global
    rank leaves out that whole class, the per-class rank (the default) the most suspect
    quarter of every class."""
    from dataclasses import replace

    from curate.train.loss import InLoopScreen

    real_screen = InLoopScreen.__call__

    def planted(self, emb, labels, local, *, step, seed):
        noise = np.random.default_rng(step).random(len(labels)) * 0.1  # no ties
        return replace(
            real_screen(self, emb, labels, local, step=step, seed=seed),
            suspicion=np.where(labels == 0, 0.8, 0.2) + noise,
        )

    monkeypatch.setattr(InLoopScreen, "__call__", planted)
    images = pd.read_parquet(build / "images.parquet").set_index("image_id")
    share = {}
    for per_class in (True, False, "cap"):
        res = finetune(
            build,
            tmp_path / f"pc{per_class}",
            tiny_config(
                null="class_empirical",
                exclude_suspects=True,
                suspect_share=0.25,
                suspect_min_visits=2,
                suspect_per_class=per_class is True,
                suspect_class_cap=0.5 if per_class == "cap" else None,
                epochs=2,
            ),
        )
        sus = pd.read_parquet(res.run_dir / "image_suspicion.parquet")
        sus = sus[sus["visits"] >= 2].assign(
            label=lambda d: images.loc[d["image_id"], "label"].to_numpy()
        )
        share[per_class] = sus.groupby("label")["excluded"].agg(["sum", "size"])
    for label, row in share[True].iterrows():
        assert row["sum"] == max(1, round(0.25 * row["size"])) < row["size"], label
    glob = share[False]
    assert glob.loc["angry", "sum"] == min(
        glob.loc["angry", "size"], max(1, round(0.25 * glob["size"].sum()))
    )
    assert glob.drop("angry")["sum"].sum() == 0
    assert glob.loc["angry", "sum"] > round(0.5 * glob.loc["angry", "size"])  # the cap binds
    capped = share["cap"]  # the same rank over all images, at most half of any label
    assert capped.loc["angry", "sum"] == round(0.5 * capped.loc["angry", "size"])
    assert capped.drop("angry")["sum"].sum() == 0


# ----------------------------------------------------------------------------- data


def test_batches_cover_every_tuple_once_and_members_index_unique_images():
    batches = epoch_batches(23, 5, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(23))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert all(
        np.array_equal(x, y)
        for x, y in zip(batches, epoch_batches(23, 5, seed=1, epoch=0), strict=True)
    )
    assert not np.array_equal(
        np.concatenate(batches), np.concatenate(epoch_batches(23, 5, seed=1, epoch=1))
    )
    members = np.array([[4, 9, 4], [9, 2, 7]])
    unique, local = batch_members(members)
    assert unique.tolist() == [2, 4, 7, 9] and np.array_equal(unique[local], members)


def test_augment_is_deterministic_bounded_and_off_when_disabled():
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    a1 = Augment()(x, step_generator(0, 5))
    a2 = Augment()(x, step_generator(0, 5))
    a3 = Augment()(x, step_generator(0, 6))
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    assert a1.min() >= 0 and a1.max() <= 1 and a1.shape == x.shape
    assert torch.allclose(NO_AUGMENT(x, step_generator(0, 5)), x.float() / 255, atol=1e-6)


def test_photos_augment_jitters_colour_before_grey_and_zooms_in_and_out():
    from dataclasses import replace

    from curate.train.data import AUGMENTS, PHOTOS_AUGMENT

    assert AUGMENTS["light"] == Augment() and AUGMENTS["photos"] is PHOTOS_AUGMENT
    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (8, 1, 24, 24), dtype=torch.uint8, generator=g)
    colour = torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8, generator=g)
    to_grey = replace(PHOTOS_AUGMENT, grey=True)
    out = to_grey(colour, step_generator(1, 2))
    assert out.shape == (8, 1, 24, 24) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, to_grey(colour, step_generator(1, 2)))
    # a grey image stored as three equal channels gets the same geometry and brightness: the
    # colour jitter does nothing to it, so grey and colour storage train alike on grey data
    assert torch.allclose(
        to_grey(grey.expand(-1, 3, -1, -1), step_generator(1, 2)),
        to_grey(grey, step_generator(1, 2)),
        atol=1e-5,
    )
    # the colour jitter acts before the conversion: the same colours, other grey values than
    # converting first (saturation and hue change the luma of coloured pixels)
    no_colour = replace(to_grey, saturation=0.0, hue=0.0)
    assert (out - no_colour(colour, step_generator(1, 2))).abs().max() > 0.05
    # hue rotation alone keeps the luma and changes the colour
    hue_only = replace(NO_AUGMENT, hue=0.25)
    h = hue_only(colour, step_generator(1, 2))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    x = colour.float() / 255
    inside = ((h > 0.001) & (h < 0.999)).all(1, keepdim=True)  # not clipped
    assert torch.allclose(
        ((h * luma).sum(1, keepdim=True))[inside],
        ((x * luma).sum(1, keepdim=True))[inside],
        atol=1e-4,
    )
    assert (h - x).abs().max() > 0.1
    # zoom below 1 frames the face more loosely (a centred bright square shrinks), above 1 crops
    square = torch.zeros((1, 1, 32, 32), dtype=torch.uint8)
    square[..., 8:24, 8:24] = 255
    area = {
        z: float(
            replace(NO_AUGMENT, zoom=(z, z))(square, step_generator(0, 0)).gt(0.5).float().mean()
        )
        for z in (0.75, 1.0, 1.2)
    }
    assert area[0.75] < area[1.0] < area[1.2] and abs(area[1.0] - 0.25) < 0.01


def test_image_store_matches_the_screen_preprocessing(tmp_path: Path):
    from PIL import Image

    from curate.embed import build_transform
    from curate.images import load_image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (30, 22, 3), dtype=np.uint8), "RGB").save(p)
        paths.append(str(p))
    cfg = {
        "input_size": [3, 16, 16],
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "crop_mode": "center",
    }
    for max_bytes in (10**9, 0):  # preloaded and decoded on demand
        store = ImageStore(paths, cfg, max_bytes=max_bytes, workers=1)
        got = to_model_input(store.get([2, 0]), cfg)
        want = torch.stack([build_transform(cfg)(load_image(paths[i])) for i in (2, 0)])
        assert store.preloaded == (max_bytes > 0)
        assert torch.allclose(
            got, want, atol=1.01 / 255 / 0.2
        )  # 8-bit rounding of the stored pixels

    # a colour store of a grey model: get() is the grey store's pixels exactly, colour=True the RGB ones
    grey_cfg = {**cfg, "input_size": [1, 16, 16], "mean": [0.45], "std": [0.25]}
    for max_bytes in (10**9, 0):
        plain = ImageStore(paths, grey_cfg, max_bytes=max_bytes, workers=1)
        both = ImageStore(paths, grey_cfg, max_bytes=max_bytes, workers=1, colour=True)
        rgb = ImageStore(paths, cfg | {"input_size": [3, 16, 16]}, max_bytes=max_bytes, workers=1)
        assert both.colour and not plain.colour and both.shape == (4, 16, 16)
        assert torch.equal(both.get([2, 0]), plain.get([2, 0])) and both.get([1]).shape == (
            1,
            1,
            16,
            16,
        )
        assert torch.equal(both.get([2, 0], colour=True), rgb.get([2, 0]))


def test_finetune_with_photos_augment_trains_a_grey_net_from_colour_pixels(
    build: Path, tmp_path: Path, monkeypatch
):
    from curate.train import data as train_data

    seen = []
    real = train_data.Augment.__call__

    def spy(self, x, generator):
        out = real(self, x, generator)
        seen.append((x.shape[1], out.shape[1], self.grey))
        return out

    monkeypatch.setattr(train_data.Augment, "__call__", spy)
    res = finetune(build, tmp_path / "photos", tiny_config(epochs=1, augment_kind="photos"))
    assert seen and all(s == (3, 1, True) for s in seen)
    assert res.config["in_chans"] == 1 and res.run["params"]["augment_kind"] == "photos"
    with pytest.raises(CurateError, match="unknown --augment-kind"):
        finetune(build, tmp_path / "bad", tiny_config(augment_kind="heavy"))


# ----------------------------------------------------------------------------- finetune


def test_finetune_writes_a_loadable_run_with_normalised_embeddings(trained, build: Path):
    run = trained.run_dir
    for name in (
        "model.safetensors",
        "config.json",
        "metrics.parquet",
        "report.html",
        "run.json",
        "tuple_drops.parquet",
        "evaluation.json",
    ):
        assert (run / name).is_file(), name
    net, cfg = load_run(run)
    assert cfg["classes"] == list(CLASSES) and cfg["in_chans"] == 1 and cfg["embed_dim"] == 16
    assert cfg["backbone"] == "test_resnet" and cfg["data_config"]["input_size"] == [1, SIZE, SIZE]
    x = torch.randn(5, 1, SIZE, SIZE)
    with torch.no_grad():
        emb, logits = net(x), net.classify(x)
    assert emb.shape == (5, 16) and torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-5)
    assert logits.shape == (5, 3)
    m = trained.metrics
    train, val = m[m["phase"] == "train"], m[m["phase"] == "val"]
    n_tuples = len(pd.read_parquet(build / "tuples.parquet"))
    assert len(train) == 2 * math.ceil(n_tuples / 8) and len(val) == 2
    assert (train["n_kept"] <= train["n_tuples"]).all()
    assert np.allclose(train["share_dropped"], 1 - train["n_kept"] / train["n_tuples"])
    assert (
        (train["share_too_far"] + train["share_too_close"]) >= train["share_dropped"] - 1e-9
    ).all()
    assert train["screen_active"].all() and train["d_null"].gt(0).all()
    assert (train["n_images"] <= 3 * train["n_tuples"]).all()
    drops = pd.read_parquet(run / "tuple_drops.parquet")
    assert drops["n_seen"].tolist() == [2] * n_tuples  # every tuple seen once per epoch
    assert drops["n_too_far"].sum() == round((train["share_too_far"] * train["n_tuples"]).sum())
    assert 0 <= val["val_accuracy"].iloc[-1] <= 1 and trained.final["n_images"] == 12
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "Per-class accuracy" in html and "happy" in html


def test_same_seed_gives_identical_metrics_and_weights(trained, build: Path, tmp_path: Path):
    again = finetune(build, tmp_path / "again", tiny_config())
    pd.testing.assert_frame_equal(_comparable(again.metrics), _comparable(trained.metrics))
    assert _same_weights(again.run_dir, trained.run_dir)
    other = finetune(build, tmp_path / "other", tiny_config(seed=4))
    assert not _same_weights(other.run_dir, trained.run_dir)


def test_interrupted_run_resumes_to_the_uninterrupted_result(trained, build: Path, tmp_path: Path):
    run = tmp_path / "interrupted"

    def stop_at_3(phase: str, done: int, total: int, info: dict) -> None:
        if phase == "train" and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(build, run, tiny_config(), progress=stop_at_3)
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 3
    assert not (run / "model.safetensors").exists()
    resumed = finetune(build, run, tiny_config())
    assert resumed.resumed_from_step == 3
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(trained.metrics))
    assert _same_weights(run, trained.run_dir)
    with pytest.raises(CurateError, match="other settings"):
        finetune(build, run, tiny_config(lr=1e-2))


def test_batch_that_drops_everything_trains_on_classification_only(build: Path, tmp_path: Path):
    res = finetune(
        build, tmp_path / "strict", tiny_config(alpha_pos=0.99, alpha_neg=0.99, epochs=1)
    )
    train = res.metrics[res.metrics["phase"] == "train"]
    assert train["all_dropped"].any()
    dropped = train[train["all_dropped"]]
    assert (dropped["metric_loss"] == 0).all() and (dropped["ce_loss"] > 0).all()
    assert any("classification loss only" in n for n in res.notes)
    assert res.run["counts"]["steps_all_dropped"] == int(train["all_dropped"].sum())


def test_no_screening_keeps_every_tuple_and_quadruplets_train_with_mining(tmp_path: Path):
    qbuild = make_build(tmp_path / "q", quadruplets=True, per_class_train=6, per_class_val=2)
    res = finetune(
        qbuild, tmp_path / "q_run", tiny_config(screen_every_step=False, mining="hard", epochs=1)
    )
    train = res.metrics[res.metrics["phase"] == "train"]
    assert (train["share_dropped"] == 0).all() and train["metric_loss"].gt(0).any()
    assert res.run["params"]["kind"] == "quadruplet"
    res2 = finetune(qbuild, tmp_path / "q_run2", tiny_config(epochs=1, mining="semihard"))
    assert res2.metrics["screen_active"].dropna().all()
    # no classification loss on the embedding: the head is fitted on detached embeddings
    res3 = finetune(qbuild, tmp_path / "q_run3", tiny_config(epochs=1, ce_weight=0.0, ce_on="all"))
    t3 = res3.metrics[res3.metrics["phase"] == "train"]
    assert np.allclose(t3["loss"], t3["metric_loss"] + t3["ce_loss"], atol=1e-5)


def test_soft_labels_of_one_hot_votes_train_like_the_labels_and_bad_votes_are_clear_errors(
    trained, build: Path, tmp_path: Path
):
    soft = tmp_path / "soft"
    shutil.copytree(build, soft)
    images = pd.read_parquet(soft / "images.parquet")
    for c in CLASSES:
        images[f"votes_{c}"] = (images["label"] == c).astype(float) * 10
    images.to_parquet(soft / "images.parquet", index=False)
    res = finetune(soft, tmp_path / "soft_run", tiny_config(soft_label_prefix="votes_"))
    a, b = _comparable(res.metrics), _comparable(trained.metrics)
    assert np.allclose(a["ce_loss"].dropna(), b["ce_loss"].dropna(), rtol=1e-4, atol=1e-5)
    # votes that disagree with the label change the classification loss
    images.loc[images["split"] == "train", "votes_sad"] += 5.0
    images.to_parquet(soft / "images.parquet", index=False)
    other = finetune(
        soft, tmp_path / "soft_run2", tiny_config(soft_label_prefix="votes_", epochs=1)
    )
    first = other.metrics[other.metrics["phase"] == "train"]["ce_loss"].iloc[0]
    assert first != pytest.approx(b[b["phase"] == "train"]["ce_loss"].iloc[0], rel=1e-3)
    with pytest.raises(CurateError, match="lacks the columns .*soft_angry"):
        finetune(soft, tmp_path / "soft_run3", tiny_config(soft_label_prefix="soft_", epochs=1))
    images.loc[images.index[0], [f"votes_{c}" for c in CLASSES]] = 0.0
    images.to_parquet(soft / "images.parquet", index=False)
    with pytest.raises(CurateError, match="positive sum, e.g. image_id 0"):
        finetune(soft, tmp_path / "soft_run4", tiny_config(soft_label_prefix="votes_", epochs=1))


def test_screen_output_folder_is_used_through_kept_parquet(build: Path, tmp_path: Path):
    screen_dir = tmp_path / "screen"
    screen_dir.mkdir()
    tuples = pd.read_parquet(build / "tuples.parquet")
    tuples.iloc[:9].to_parquet(screen_dir / "kept.parquet", index=False)
    (screen_dir / "run.json").write_text(json.dumps({"params": {"source": str(build)}}))
    data = load_training_data(screen_dir)
    assert len(data.tuples) == 9 and data.build_dir == build.resolve()
    assert len(data.val_images) == 12 and data.classes == list(CLASSES)


# ----------------------------------------------------------------------------- bad input


def test_empty_kept_set_is_a_clear_error(build: Path, tmp_path: Path):
    screen_dir = tmp_path / "screen"
    screen_dir.mkdir()
    pd.read_parquet(build / "tuples.parquet").iloc[:0].to_parquet(
        screen_dir / "kept.parquet", index=False
    )
    (screen_dir / "run.json").write_text(json.dumps({"params": {"build_dir": str(build)}}))
    with pytest.raises(CurateError, match="kept set is empty"):
        finetune(screen_dir, tmp_path / "run", tiny_config())


def test_missing_image_is_a_clear_error(tmp_path: Path):
    b = make_build(tmp_path / "m", per_class_train=4, per_class_val=1)
    images = pd.read_parquet(b / "images.parquet")
    Path(images["path"].iloc[2]).unlink()
    with pytest.raises(
        CurateError,
        match=r"1 image file\(s\) are missing.*" + images["path"].iloc[2].split("/")[-1],
    ):
        finetune(b, tmp_path / "run", tiny_config())


def test_tuples_of_another_dataset_than_the_weights_expect(trained, tmp_path: Path):
    root = tmp_path / "other"
    b = make_build(root, per_class_train=4, per_class_val=1)
    for f in ("images.parquet", "tuples.parquet"):
        t = pd.read_parquet(b / f)
        for col in ("label", "anchor_label", "negative_label"):
            if col in t:
                t[col] = t[col].replace({"sad": "surprise"})
        t.to_parquet(b / f, index=False)
    # transfer by default: the embedding network is kept, a new head is trained, with a note
    res = finetune(
        b, tmp_path / "run", tiny_config(weights=str(trained.run_dir), backbone=None, epochs=1)
    )
    assert res.config["classes"] == ["angry", "happy", "surprise"]
    assert res.config["pretrained_from"] == str(trained.run_dir.resolve())
    head_notes = [n for n in res.notes if n.startswith("new classification head")]
    assert len(head_notes) == 1 and "surprise" in head_notes[0] and "sad" in head_notes[0]
    assert head_notes[0] in json.loads((res.run_dir / "run.json").read_text())["notes"]
    # the transferred body is the trained one: before any step its embeddings equal the source run's
    from curate.runs import load_run
    from curate.train.loop import init_network

    src, _ = load_run(trained.run_dir)
    net, _, _, _ = init_network(
        tiny_config(weights=str(trained.run_dir), backbone=None), ["angry", "happy", "surprise"]
    )
    x = torch.rand(3, 1, SIZE, SIZE)
    src.eval()
    net.eval()
    assert torch.equal(src(x), net(x)) and net.classifier.out_features == 3
    # same classes: the head is kept unless --reset-head
    same, _, _, _ = init_network(
        tiny_config(weights=str(trained.run_dir), backbone=None), list(trained.config["classes"])
    )
    assert torch.equal(same.classifier.weight, src.classifier.weight)
    reset, _, _, _ = init_network(
        tiny_config(weights=str(trained.run_dir), backbone=None, reset_head=True),
        list(trained.config["classes"]),
    )
    assert not torch.equal(reset.classifier.weight, src.classifier.weight)


def test_amp_uses_bf16_on_a_cpu_that_has_it_and_records_the_precision(
    build: Path, tmp_path: Path, monkeypatch
):
    from curate.backbone import CPU_BF16_ENV, autocast_precision

    cpu = torch.device("cpu")
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert autocast_precision(cpu, True)[0] and not autocast_precision(cpu, False)[0]
    big = {"epochs": 1, "input_size": 2 * SIZE}  # at 16 px the net's last stage is 1x1: see below
    on = finetune(build, tmp_path / "on", tiny_config(amp=True, **big))
    assert "bfloat16" in json.loads((on.run_dir / "run.json").read_text())["precision"]
    # at 16 px a strided convolution sees 1x1 maps, where oneDNN's bf16 weight gradient is garbage
    small = finetune(build, tmp_path / "small", tiny_config(epochs=1, amp=True))
    assert "1-pixel maps" in small.run["precision"] and small.run["precision"] in small.notes
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    enabled, why = autocast_precision(cpu, True)
    assert not enabled and "lacks native bfloat16" in why
    off = finetune(build, tmp_path / "off", tiny_config(amp=True, **big))
    record = json.loads((off.run_dir / "run.json").read_text())
    assert record["precision"] == why and why in off.notes
    fp32 = finetune(build, tmp_path / "fp32", tiny_config(amp=False, **big))
    # bf16 really ran: the weights differ from float32's, and the "off" run equals float32 exactly
    assert _same_weights(off.run_dir, fp32.run_dir)
    assert not _same_weights(on.run_dir, fp32.run_dir)
    assert autocast_precision(torch.device("cuda"), True)[0]


def test_corrupted_checkpoint_is_a_clear_error(trained, tmp_path: Path):
    run = tmp_path / "copy"
    shutil.copytree(trained.run_dir, run)
    (run / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CurateError, match="corrupted checkpoint"):
        load_run(run)
    (run / "model.safetensors").unlink()
    with pytest.raises(CurateError, match="weights file not found"):
        load_run(run)
    (run / "config.json").write_text("{not json")
    with pytest.raises(CurateError, match="cannot read"):
        load_run(run)


def test_corrupted_resume_checkpoint_is_a_clear_error(trained, build: Path, tmp_path: Path):
    run = tmp_path / "copy"
    shutil.copytree(trained.run_dir, run)
    for f in (run / "checkpoints").glob("*.state.pt"):
        f.write_bytes(b"broken")
    with pytest.raises(CurateError, match="corrupted checkpoint") as exc:
        finetune(build, run, tiny_config())
    assert "--restart" in str(exc.value)


def test_cli_finetune_runs_and_reports_bad_input(build: Path, tmp_path: Path):
    from curate.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "finetune",
            str(build),
            "--out",
            str(tmp_path / "cli_run"),
            "--backbone",
            "test_resnet",
            "--weights",
            "none",
            "--in-chans",
            "1",
            "--input-size",
            "16",
            "--embed-dim",
            "8",
            "--epochs",
            "1",
            "--batch-tuples",
            "8",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "val accuracy" in res.output and (tmp_path / "cli_run" / "model.safetensors").is_file()
    bad = runner.invoke(
        app,
        [
            "finetune",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "x"),
            "--backbone",
            "test_resnet",
            "--weights",
            "none",
        ],
    )
    assert bad.exit_code == 2 and "TUPLES folder not found" in bad.output


def test_report_escapes_data_strings():
    from curate.train.report import build_report

    metrics = pd.DataFrame(
        [
            {
                "phase": "train",
                "step": 0,
                "epoch": 0,
                "loss": 1.0,
                "metric_loss": 0.5,
                "ce_loss": 0.5,
                "train_accuracy": 0.5,
                "share_dropped": 0.1,
                "share_too_far": 0.1,
                "share_too_close": 0.0,
                "d_null": 3.0,
                "all_dropped": False,
            }
        ]
    )
    final = {
        "classes": ["<script>x</script>", "b&c"],
        "confusion": [[1, 0], [0, 1]],
        "accuracy": 1.0,
        "macro_f1": 1.0,
        "per_class": [
            {"class": "<script>x</script>", "n": 1, "accuracy": 1.0, "precision": 1.0, "f1": 1.0}
        ],
    }
    page = build_report(
        metrics=metrics,
        final=final,
        config={"backbone": "<b>", "classes": final["classes"]},
        record={"params": {}, "counts": {}},
    )
    assert (
        "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "b&amp;c" in page
    )


def test_run_images_are_the_members_and_validation_images_as_store_rows():
    from curate.train.data import TrainingData
    from curate.train.loop import RunImages

    images = pd.DataFrame(
        {"label": ["happy", "sad", "happy", "angry", "sad", "fear"]},
        index=pd.Index([10, 11, 12, 13, 14, 15], name="image_id"),
    )
    tuples = pd.DataFrame({"anchor": [12, 10], "positive": [10, 12], "negative": [11, 14]})
    val = pd.DataFrame({"image_id": [15, 13], "label": ["fear", "angry"]})
    data = TrainingData(
        images=images,
        tuples=tuples,
        kind="triplet",
        classes=["happy", "sad", "angry"],
        val_images=val,
        build_dir=Path("."),
        tuples_file=Path("t.parquet"),
    )
    got = RunImages.of(data)
    assert got.ids.tolist() == [10, 11, 12, 13, 14, 15]
    assert got.member_rows.tolist() == [[2, 0, 1], [0, 2, 4]]
    assert got.ids[got.member_rows].tolist() == tuples.to_numpy().tolist()
    assert got.val_rows.tolist() == [5, 3]  # in the validation table's order
    assert got.label_codes.tolist() == [0, 1, 0, 2, 1, -1]  # "fear" is no class of the run


def test_finetune_options_are_the_config_fields_and_their_defaults_the_librarys():
    import dataclasses
    import inspect

    from curate.cli.finetune import finetune_cmd, finetune_config
    from curate.train.config import FinetuneConfig

    params = inspect.signature(finetune_cmd).parameters
    names = {f.name for f in dataclasses.fields(FinetuneConfig)}
    # the settings the command leaves at the library's default (runtime details, the warm-up share)
    assert names - set(params) == {"warmup_share", "workers", "eval_batch_size"}
    defaults = finetune_config(**{k: p.default for k, p in params.items() if k in names})
    assert defaults == FinetuneConfig()
    got = finetune_config(val_split="NONE", epochs=3)
    assert got.val_split is None and got.epochs == 3
