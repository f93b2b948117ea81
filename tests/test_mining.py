"""Batch-hard mining, class-balanced batches, the boundary on mined triplets and class-pair
margins (curate.train.mining, curate.train.margins) against brute-force references."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import _comparable, _same_weights, make_build, tiny_config

from curate.errors import CurateError
from curate.stats import statistical as st
from curate.stats.nulls import fit_class_boundary
from curate.train.config import EARLIER_DEFAULTS, ScreenSettings
from curate.train.loop import finetune
from curate.train.loss import InLoopScreen, triplet_loss_margins
from curate.train.margins import PairMargins, class_pair_margins
from curate.train.mining import (
    ClassBalancedSampler,
    batch_hard_triplets,
    batch_margins,
    head_margins,
    mined_alphas,
    rank_average,
)
from curate.train.suspicion import LEFT_OUT_BY_LABEL_COLUMNS, left_out_by_label

torch.set_num_threads(1)


def _brute_hard(emb: np.ndarray, labels: np.ndarray) -> list[tuple[int, int, int]]:
    out = []
    n = len(labels)
    for a in range(n):
        pos = [j for j in range(n) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(n) if labels[j] != labels[a]]
        if not pos or not neg:
            continue
        d = np.sqrt(((emb[a] - emb) ** 2).sum(1))
        p = max(pos, key=lambda j: (d[j], -j))
        q = min(neg, key=lambda j: (d[j], j))
        out.append((a, p, q))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_triplets_match_a_brute_force_loop(seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 13)
    labels[0] = 3  # an image alone in its class anchors nothing
    emb = rng.normal(size=(13, 5)).astype(np.float32)
    got = batch_hard_triplets(torch.from_numpy(emb), torch.from_numpy(labels)).numpy()
    assert [tuple(r) for r in got] == _brute_hard(emb, labels)
    assert 0 not in got[:, 0]


def test_batch_hard_triplets_leave_unusable_images_out_of_every_role():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 15)
    emb = rng.normal(size=(15, 5)).astype(np.float32)
    usable = rng.random(15) > 0.3
    got = batch_hard_triplets(
        torch.from_numpy(emb), torch.from_numpy(labels), torch.from_numpy(usable)
    ).numpy()
    keep = np.flatnonzero(usable)  # the brute force on the usable images only, mapped back
    want = [tuple(keep[list(r)]) for r in _brute_hard(emb[keep], labels[keep])]
    assert [tuple(r) for r in got] == want and len(want) > 0
    assert usable[got.ravel()].all()


def test_sampler_draws_p_classes_times_k_images_seeded_and_covers_the_pool():
    labels = np.repeat(np.arange(5), [40, 30, 8, 20, 2])
    s = ClassBalancedSampler(labels, p=3, k=6, seed=1)
    assert s.steps_per_epoch == int(np.ceil(len(labels) / 18))
    batches = s.epoch(0)
    for b in batches:
        assert len(b) == 18
        per = pd.Series(labels[b]).value_counts()
        assert len(per) == 3 and (per == 6).all()  # class 4 (2 images) repeats within its block
    again = ClassBalancedSampler(labels, p=3, k=6, seed=1).epoch(0)
    assert all(np.array_equal(x, y) for x, y in zip(batches, again, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(batches, s.epoch(1), strict=True))
    seen = np.concatenate([b for e in range(6) for b in s.epoch(e)])
    big = np.flatnonzero(labels == 0)
    assert np.isin(big, seen).all()  # a class's cycle visits every one of its images
    counts = pd.Series(labels[seen]).value_counts()
    assert counts[0] > counts[4]  # classes drawn by size: the prior is kept, not flattened
    assert ClassBalancedSampler(labels, p=3, k=6, seed=1, steps_per_epoch=7).steps_per_epoch == 7
    with pytest.raises(CurateError, match="at least 2"):
        ClassBalancedSampler(labels, p=1, k=6, seed=0)


def test_mined_alphas_keep_the_level_of_the_hardest_of_n_null_draws():
    a_pos, a_neg = mined_alphas(0.05, 0.05, 23, 72)
    assert a_pos == pytest.approx(1 - 0.95 ** (1 / 23))
    # simulate: the max of 23 standard normals exceeds the adjusted quantile 5% of the time
    rng = np.random.default_rng(0)
    z = NormalDist().inv_cdf(1 - a_pos)
    assert (rng.normal(size=(40000, 23)).max(1) > z).mean() == pytest.approx(0.05, abs=0.005)
    zn = NormalDist().inv_cdf(a_neg)
    assert (rng.normal(size=(20000, 72)).min(1) < zn).mean() == pytest.approx(0.05, abs=0.006)
    assert mined_alphas(0.05, 0.1, 1, 1) == (0.05, 0.1)


@pytest.mark.parametrize("null", ["class", "class_empirical", "effective"])
def test_boundary_on_mined_triplets_drops_exactly_those_outside_the_thresholds(null: str):
    """The in-loop screen on batch-hard triplets against the thresholds of the fitted null
    (alphas of the hardest of K - 1 positives and (P - 1) K negatives). With a class-aware
    null the planted mislabelled face is in every dropped triplet; the global null, whose
    upper tail is that of random different-label pairs, cannot see a mislabelled positive
    (it IS such a pair) and drops nothing here."""
    rng = np.random.default_rng(0)
    d = 32
    labels = np.repeat(np.arange(3), 8)
    centres = rng.normal(size=(3, d)) * 3
    emb = centres[labels] + rng.normal(size=(24, d)) * 0.5
    emb[5] = (
        centres[2] + rng.normal(size=d) * 0.5
    )  # labelled 0, looks like class 2: a mislabelled face
    emb = emb.astype(np.float32)
    local = batch_hard_triplets(torch.from_numpy(emb), torch.from_numpy(labels)).numpy()
    a_pos, a_neg = mined_alphas(0.05, 0.05, 7, 16)
    screen = InLoopScreen(
        ScreenSettings(alpha_pos=a_pos, alpha_neg=a_neg, null=null, window=64), d, 1.0
    )
    res = screen(emb, labels, local, step=0, seed=0)
    x = st.normalize(emb, center=True, scale=1.0)
    d_ap = np.linalg.norm(x[local[:, 0]] - x[local[:, 1]], axis=1)
    d_an = np.linalg.norm(x[local[:, 0]] - x[local[:, 2]], axis=1)
    if null == "effective":
        b = st.fit_boundary(
            x,
            labels=labels,
            null=null,
            alpha_pos=a_pos,
            alpha_neg=a_neg,
            scale=1.0,
            seed=0,
            n_pairs=2000,
        )
        t_pos, t_neg = np.full(len(local), b.t_pos), np.full(len(local), b.t_neg)
    else:
        fit = fit_class_boundary(
            x,
            labels.astype(str),
            null=null,
            alpha_pos=a_pos,
            alpha_neg=a_neg,
            scale=1.0,
            seed=0,
            pairs_per_class_pair=500,
        )
        codes = fit.nulls.codes(labels.astype(str))
        t_pos = fit.nulls.t_pos[codes[local[:, 0]]]
        t_neg = fit.nulls.t_neg[codes[local[:, 0]], codes[local[:, 2]]]
    np.testing.assert_array_equal(res.too_far, d_ap > t_pos)
    np.testing.assert_array_equal(res.too_close, d_an < t_neg)
    np.testing.assert_array_equal(res.keep, ~(res.too_far | res.too_close))
    dropped = ~res.keep
    holds = (local == 5).any(axis=1)
    if null == "effective":
        assert not dropped.any()
    else:
        assert dropped.any() and holds[dropped].all()
        if (
            null == "class"
        ):  # (the empirical quantile of 28 same-class pairs, 7 of them the planted face's, is loose)
            assert res.too_far[
                local[:, 1] == 5
            ].all()  # the planted face as the hardest positive: too far


def test_class_pair_margins_follow_the_separation_and_order():
    mu = np.array([[1.0, 1.2, 2.0], [1.2, 0.8, 1.9], [2.0, 1.9, 1.0]])
    sigma = np.array([[0.2, 0.3, 0.3], [0.3, 0.1, 0.3], [0.3, 0.3, 0.4]])
    g = class_pair_margins(mu, sigma, 0.2, "global")
    assert (g == 0.2).all()
    ordered = class_pair_margins(mu, sigma, 0.2, "ordered-pair")
    s = (mu - np.diag(mu)[:, None]) / np.diag(sigma)[:, None]
    off = ~np.eye(3, dtype=bool)
    with np.errstate(divide="ignore"):  # the diagonal is 0 and unused
        expect = 0.2 * np.clip(s[off].mean() / s, 0.5, 2.0)
    np.testing.assert_allclose(ordered[off], expect[off])
    assert ordered[0, 1] > ordered[0, 2]  # the confusable pair gets the larger margin
    assert ordered[0, 1] != ordered[1, 0]  # order-aware
    pair = class_pair_margins(mu, sigma, 0.2, "class-pair")
    np.testing.assert_allclose(pair, pair.T)  # order-insensitive
    assert pair[0, 1] > pair[0, 2]
    # before the classes separate (random init) every pair keeps the global margin
    flat = class_pair_margins(np.full((3, 3), 1.0), np.full((3, 3), 0.1), 0.2, "class-pair")
    assert (flat == 0.2).all()


def test_pair_margins_refit_from_the_window_and_commit_only_on_request():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    centres = np.array([[0, 0], [1, 0], [6, 0]], float)
    emb = np.concatenate(
        [centres[labels] + rng.normal(size=(60, 2)) * 0.3, rng.normal(size=(60, 6)) * 0.3], 1
    )
    pm = PairMargins("class-pair", 0.2, 3, 8, scale=1.0, window=200, refit_every=1)
    m = pm.update(emb.astype(np.float32), labels, step=0)
    assert pm.window.shape[0] == 0 and (pm.margins == 0.2).all()  # pending until committed
    assert m[0, 1] > m[0, 2] and m[0, 1] > m[1, 2]  # 0 and 1 are the confusable pair
    pm.commit_pending()
    assert pm.window.shape[0] == 60 and np.array_equal(pm.margins, m)


def test_triplet_loss_with_per_triplet_margins_matches_a_loop():
    rng = np.random.default_rng(0)
    emb = torch.from_numpy(rng.normal(size=(6, 4)).astype(np.float32))
    a, p, n = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([5, 0, 1])
    m = torch.tensor([0.1, 0.5, 2.0])
    want = np.mean(
        [
            max(0.0, float(torch.dist(emb[i], emb[j]) - torch.dist(emb[i], emb[k]) + mm))
            for i, j, k, mm in zip(a, p, n, m, strict=True)
        ]
    )
    assert float(triplet_loss_margins(emb, a, p, n, m)) == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------- in finetune


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_build(tmp_path_factory.mktemp("data"))


def _cfg(**kw: object):
    base = dict(
        mining="batch-hard",
        classes_per_batch=2,
        images_per_class=4,
        steps_per_epoch=4,
        screen_every_step=True,
        margin_mode="ordered-pair",
    )
    base.update(kw)
    return tiny_config(**base)


@pytest.fixture(scope="module")
def mined_run(build: Path, tmp_path_factory: pytest.TempPathFactory):
    return finetune(build, tmp_path_factory.mktemp("runs") / "mined", _cfg())


def test_batch_hard_finetune_records_mined_triplets_and_margins(mined_run, build: Path):
    run = mined_run.run_dir
    mined = pd.read_parquet(run / "mined_triplets.parquet")
    assert len(mined) == mined_run.run["counts"]["mined_triplets"] == 8 * 8  # 8 steps x 8 anchors
    assert set(mined["epoch"]) == {0, 1}
    images = pd.read_parquet(build / "images.parquet").set_index("image_id")
    assert (
        images.loc[mined["anchor"], "label"].to_numpy()
        == images.loc[mined["positive"], "label"].to_numpy()
    ).all()
    assert (
        images.loc[mined["anchor"], "label"].to_numpy()
        != images.loc[mined["negative"], "label"].to_numpy()
    ).all()
    assert (mined["kept"] == ~(mined["positive_too_far"] | mined["negative_too_close"])).all()
    train = mined_run.metrics[mined_run.metrics["phase"] == "train"]
    assert (train["n_images"] == 8).all()
    np.testing.assert_allclose(
        train["share_dropped"].to_numpy(), 1 - mined.groupby("step")["kept"].mean().to_numpy()
    )
    margins = pd.read_parquet(run / "class_pair_margins.parquet")
    assert len(margins) == 2 * 3 * 2  # 2 epochs x 6 ordered pairs
    assert (margins["margin"] > 0).all()
    assert "Class-pair margins" in (run / "report.html").read_text()


def test_batch_hard_run_is_deterministic_and_resumes_bit_for_bit(
    mined_run, build: Path, tmp_path: Path
):
    run = tmp_path / "interrupted"

    def stop_at_3(phase: str, done: int, total: int, info: dict) -> None:
        if phase == "train" and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(build, run, _cfg(), progress=stop_at_3)
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 3
    resumed = finetune(build, run, _cfg())
    assert resumed.resumed_from_step == 3
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(mined_run.metrics))
    assert _same_weights(run, mined_run.run_dir)
    pd.testing.assert_frame_equal(
        pd.read_parquet(run / "mined_triplets.parquet"),
        pd.read_parquet(mined_run.run_dir / "mined_triplets.parquet"),
    )


def test_classification_only_and_face_screen_and_bad_settings(build: Path, tmp_path: Path):
    ce = finetune(
        build,
        tmp_path / "ce",
        _cfg(metric_weight=0.0, screen_every_step=False, margin_mode="global"),
    )
    train = ce.metrics[ce.metrics["phase"] == "train"]
    assert (train["metric_loss"] == 0).all() and (train["share_dropped"] == 0).all()
    # the face screen's rejects leave the pool first
    images = pd.read_parquet(build / "images.parquet")
    screen = tmp_path / "screen"
    screen.mkdir()
    bad = images[(images["split"] == "train") & (images["label"] == "happy")]["path"].iloc[:5]
    pd.DataFrame({"path": images["path"], "face_reject": images["path"].isin(bad)}).to_parquet(
        screen / "images_suspect.parquet"
    )
    r = finetune(build, tmp_path / "faces", _cfg(face_screen=str(screen), face_rejects="drop"))
    assert r.run["counts"]["face_rejected_images"] == 5
    mined = pd.read_parquet(tmp_path / "faces" / "mined_triplets.parquet")
    ids = set(images.loc[images["path"].isin(bad), "image_id"])
    assert not ids & set(mined[["anchor", "positive", "negative"]].to_numpy().ravel())
    # ... and batch-hard mining draws from every other training image, those whose every
    # tuple held a rejected face included (their tuples are gone, they are not)
    tuples = pd.read_parquet(build / "tuples.parquet")
    tuples = tuples[tuples["split"] == "train"] if "split" in tuples else tuples
    cols = [c for c in ("anchor", "positive", "negative", "negative2") if c in tuples]
    members = set(tuples[cols].to_numpy().ravel())
    kept = tuples[~tuples[cols].isin(ids).any(axis=1)]
    orphans = members - ids - set(kept[cols].to_numpy().ravel())
    assert orphans  # the case this checks: images left in no kept tuple
    assert r.run["counts"]["training_images"] == len(members - ids)
    with pytest.raises(CurateError, match="needs --mining batch-hard"):
        finetune(build, tmp_path / "x", tiny_config(margin_mode="class-pair"))
    with pytest.raises(CurateError, match="no face screens"):
        (tmp_path / "noface").mkdir()
        pd.DataFrame({"path": images["path"]}).to_parquet(
            tmp_path / "noface" / "images_suspect.parquet"
        )
        finetune(build, tmp_path / "y", _cfg(face_screen=str(tmp_path / "noface")))


def test_mined_triplets_keep_outside_images_out_of_every_role_and_every_suppressed_triplet():
    from curate.train.loop import _mine_triplets

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 24)
    emb = torch.from_numpy(rng.normal(size=(24, 5)).astype(np.float32))
    outside, excluded = rng.random(24) < 0.25, rng.random(24) < 0.2
    excluded &= ~outside
    local, suppressed = _mine_triplets(emb, torch.from_numpy(labels), excluded, outside)
    local = local.numpy()
    assert len(local) and len(suppressed)
    assert not (outside | excluded)[local.ravel()].any()
    assert excluded[suppressed[:, 0]].all() and not outside[suppressed.ravel()].any()
    # without outside images: as before
    plain, plain_sup = _mine_triplets(emb, torch.from_numpy(labels), excluded)
    again, again_sup = _mine_triplets(emb, torch.from_numpy(labels), excluded, np.zeros(24, bool))
    assert torch.equal(plain, again) and np.array_equal(plain_sup, again_sup)


def test_face_rejects_classify_keeps_them_in_the_batches_and_the_classification_loss_only(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from curate.train import loop

    images = pd.read_parquet(build / "images.parquet")
    screen = tmp_path / "screen"
    screen.mkdir()
    train = images[images["split"] == "train"]
    bad = pd.concat([train[train["label"] == c]["path"].iloc[:4] for c in ("happy", "sad")])
    pd.DataFrame({"path": images["path"], "face_reject": images["path"].isin(bad)}).to_parquet(
        screen / "images_suspect.parquet"
    )
    ids = set(images.loc[images["path"].isin(bad), "image_id"])
    seen: list[tuple[int, int]] = []  # per step: classify-only images in the batch, in the CE
    ce = loop._Trainer._cross_entropy

    def spy(self, logits, b, rows):  # type: ignore[no-untyped-def]
        seen.append((int(self.metric_out[b.rows].sum()), int(self.metric_out[b.rows[rows]].sum())))
        return ce(self, logits, b, rows)

    monkeypatch.setattr(loop._Trainer, "_cross_entropy", spy)
    cfg = _cfg(face_screen=str(screen), face_rejects="classify", steps_per_epoch=6)
    r = finetune(build, tmp_path / "classify", cfg)
    dropped = finetune(
        build,
        tmp_path / "drop",
        _cfg(face_screen=str(screen), face_rejects="drop", steps_per_epoch=6),
    )
    mined = pd.read_parquet(tmp_path / "classify" / "mined_triplets.parquet")
    assert not ids & set(mined[["anchor", "positive", "negative"]].to_numpy().ravel())
    assert r.run["counts"]["face_rejected_images"] == 8
    # the pool keeps them: eight more training images than when they are dropped
    assert r.run["counts"]["training_images"] == dropped.run["counts"]["training_images"] + 8
    in_batch = [s for s in seen[: len(seen) // 2] if s[0]]  # the classify run's steps
    assert in_batch and all(got == want for want, got in in_batch)
    assert (
        "face-screen rejects, in the classification loss only"
        in (tmp_path / "classify" / "report.html").read_text()
    )
    for bad_cfg, match in (
        (_cfg(face_rejects="classify"), "--face-rejects classify"),
        (tiny_config(face_screen=str(screen), face_rejects="classify"), "--face-rejects classify"),
        (_cfg(face_screen=str(screen), face_rejects="keep"), "unknown --face-rejects"),
    ):
        with pytest.raises(CurateError, match=match):
            finetune(build, tmp_path / "bad", bad_cfg)


def test_images_left_out_are_counted_by_label_training_images_only(build: Path, tmp_path: Path):
    """The run counts what it left out per label (face-screen rejects, suppressed images),
    so a bias shows at once; a rejected validation image is no training image left out."""
    images = pd.read_parquet(build / "images.parquet")
    train = images[images["split"] == "train"]
    val = images[images["split"] == "val"]
    bad = pd.concat(
        [train[train["label"] == "happy"]["path"].iloc[:3], val["path"].iloc[:2]]
    )  # 3 training images, 2 validation images
    screen = tmp_path / "screen"
    screen.mkdir()
    pd.DataFrame({"path": images["path"], "face_reject": images["path"].isin(bad)}).to_parquet(
        screen / "images_suspect.parquet"
    )
    cfg = _cfg(
        face_screen=str(screen),
        exclude_suspects=True,
        suspect_score="head",
        suspect_per_class=False,
        suspect_share=0.25,
        suspect_min_visits=1,
    )
    r = finetune(build, tmp_path / "run", cfg)
    counts = r.run["counts"]
    assert counts["face_rejected_images"] == 3
    by_label = pd.DataFrame(counts["left_out_by_label"]).set_index("label")
    assert list(by_label.columns) == LEFT_OUT_BY_LABEL_COLUMNS[1:]
    assert list(by_label.index) == [*sorted(train["label"].unique()), "all"]
    assert by_label.loc["happy", "face_rejected"] == 3
    assert by_label["face_rejected"].drop("all").sum() == 3
    assert by_label.loc["all", "images"] == counts["training_images"]  # classify: all in the pool
    expected = train["label"].value_counts()
    assert by_label["images"].drop("all").to_dict() == expected.to_dict()
    suspicion = pd.read_parquet(tmp_path / "run" / "image_suspicion.parquet")
    excluded = suspicion[suspicion["excluded"]]["label"].value_counts()
    assert counts["images_excluded"] > 0
    assert by_label.loc["all", "suppressed"] == counts["images_excluded"]
    for label, n in by_label["suppressed"].drop("all").items():
        assert n == excluded.get(label, 0)
        share = by_label.loc[label, "suppressed_share"]
        assert share == pytest.approx(n / by_label.loc[label, "images"])
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Images left out, by label" in report


def test_left_out_by_label_table():
    table = left_out_by_label(
        np.array(["sad", "happy", "sad", "sad"]),
        face_rejected=np.array([False, True, False, False]),
        suppressed=np.array([True, False, True, False]),
    )
    assert table.to_dict("records") == [
        {
            "label": "happy",
            "images": 1,
            "face_rejected": 1,
            "face_rejected_share": 1.0,
            "suppressed": 0,
            "suppressed_share": 0.0,
        },
        {
            "label": "sad",
            "images": 3,
            "face_rejected": 0,
            "face_rejected_share": 0.0,
            "suppressed": 2,
            "suppressed_share": pytest.approx(2 / 3),
        },
        {
            "label": "all",
            "images": 4,
            "face_rejected": 1,
            "face_rejected_share": 0.25,
            "suppressed": 2,
            "suppressed_share": 0.5,
        },
    ]


def test_the_face_screen_folder_is_the_default_suspect_prior_with_a_class_cap():
    from curate.train.config import FinetuneConfig

    r = FinetuneConfig(face_screen="S").resolved()
    assert (r.suspect_prior, r.suspect_class_cap, r.face_rejects) == ("S", 0.5, "classify")
    assert FinetuneConfig(face_screen="S", mining="none").resolved().face_rejects == "drop"
    assert FinetuneConfig().resolved().face_rejects == "drop"
    assert FinetuneConfig(face_screen="S", face_rejects="drop").resolved().face_rejects == "drop"
    r = FinetuneConfig(face_screen="S", suspect_class_cap=0.8).resolved()
    assert (r.suspect_prior, r.suspect_class_cap) == ("S", 0.8)
    r = FinetuneConfig(face_screen="S", suspect_prior="P").resolved()  # given: no cap added
    assert (r.suspect_prior, r.suspect_class_cap) == ("P", None)
    for off in (
        FinetuneConfig(face_screen="S", suspect_prior="none"),
        FinetuneConfig(),  # no face screen
        FinetuneConfig(face_screen="S", mining="none"),
        FinetuneConfig(face_screen="S", exclude_suspects=False),
        FinetuneConfig(face_screen="S", suspect_per_class=True),
        FinetuneConfig(face_screen="S", suspect_score="posterior"),
    ):
        r = off.resolved()
        assert (r.suspect_prior, r.suspect_class_cap) == (None, None), off
        assert r.resolved() == r


def test_default_prior_is_read_from_the_face_screen_folder_or_left_out_with_a_note(
    build: Path, tmp_path: Path
):
    images = pd.read_parquet(build / "images.parquet")
    bad = images[(images["split"] == "train") & (images["label"] == "happy")]["path"].iloc[:3]
    verdicts = pd.DataFrame({"path": images["path"], "face_reject": images["path"].isin(bad)})
    plain, labelled = tmp_path / "faces_only", tmp_path / "with_labels"
    for folder, frame in (
        (plain, verdicts),
        (labelled, verdicts.assign(suspicion=np.linspace(0, 1, len(verdicts)))),
    ):
        folder.mkdir()
        frame.to_parquet(folder / "images_suspect.parquet")
    cfg = dict(exclude_suspects=True, suspect_score="head", suspect_per_class=False)
    r = finetune(build, tmp_path / "labelled", _cfg(face_screen=str(labelled), **cfg))
    assert r.run["params"]["suspect_prior"] == str(labelled)
    assert r.run["params"]["suspect_class_cap"] == 0.5
    report = (tmp_path / "labelled" / "report.html").read_text()
    assert "label suspicion of the --face-screen folder" in report
    assert "at most 0.5 of any label" in report
    r = finetune(build, tmp_path / "plain", _cfg(face_screen=str(plain), **cfg))
    assert r.run["params"]["suspect_prior"] is None
    assert r.run["params"]["suspect_class_cap"] is None
    assert any("holds no label screen" in n for n in r.notes)


def test_cli_finetune_batch_hard_with_class_pair_margins(build: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from curate.cli import app

    runner = CliRunner()
    common = [
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
        "--device",
        "cpu",
    ]
    res = runner.invoke(
        app,
        [
            "finetune",
            str(build),
            "--out",
            str(tmp_path / "run"),
            *common,
            "--mining",
            "batch-hard",
            "--classes-per-batch",
            "2",
            "--images-per-class",
            "4",
            "--steps-per-epoch",
            "3",
            "--margin-mode",
            "ordered-pair",
            "--screen-negatives",
        ],
    )
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["params"]["margin_mode"] == "ordered-pair" and record["counts"]["steps"] == 3
    # the summary shows what batch-hard training did: triplets mined, images suppressed
    out = " ".join(res.output.split())
    assert f"mined triplets │ {record['counts']['mined_triplets']}" in out
    n_pool = record["counts"]["training_images"]
    tuples = pd.read_parquet(build / "tuples.parquet")
    members = pd.unique(tuples[["anchor", "positive", "negative"]].to_numpy().ravel())
    assert n_pool == len(members)  # every image of the training tuples, no face screen
    assert f"training images (drawn P x K a batch) │ {n_pool}" in out
    assert f"images suppressed (outliers) │ {record['counts']['images_excluded']}" in out
    # ... and what it left out of each label
    assert "training images left out, by label" in out
    assert f"all │ {n_pool} │ {record['counts']['images_excluded']} │" in out
    assert (
        record["params"]["screen_negatives"] is True
    )  # --screen-negatives given (the batch-hard default is off)
    assert (tmp_path / "run" / "class_pair_margins.parquet").is_file()
    bad = runner.invoke(
        app,
        [
            "finetune",
            str(build),
            "--out",
            str(tmp_path / "x"),
            *common,
            "--mining",
            "none",
            "--margin-mode",
            "class-pair",
        ],
    )
    assert bad.exit_code == 2 and "needs --mining batch-hard" in bad.output


def test_new_settings_at_their_defaults_keep_the_fingerprint_of_earlier_runs():
    from dataclasses import asdict

    from curate.train.config import FinetuneConfig
    from curate.train.loop import _LATER_SETTINGS, _result_settings

    d = FinetuneConfig(**EARLIER_DEFAULTS).resolved()  # an earlier curate's defaults
    assert all(getattr(d, k) == v for k, v in _LATER_SETTINGS.items())  # the values they stand for
    assert not set(_LATER_SETTINGS) & set(_result_settings(d))
    assert (
        _result_settings(FinetuneConfig(mining="batch-hard", margin_mode="class-pair"))[
            "margin_mode"
        ]
        == "class-pair"
    )
    assert set(asdict(d)) - set(_result_settings(d)) >= set(_LATER_SETTINGS)


def test_multistage_suppression_leaves_out_the_most_suspect_images_after_their_first_visit(
    build: Path, tmp_path: Path
):
    """--exclude-suspects with batch-hard mining: an image is scored on every visit and, from its
    second visit on, suppressed when its mean label suspicion is among the --suspect-share most
    suspect of its label; a suppressed image takes no part in that step's triplets, and the
    triplet it would have anchored is recorded as suppressed."""
    cfg = _cfg(
        null="class_empirical",
        exclude_suspects=True,
        suspect_share=0.3,
        suspect_min_visits=1,
        epochs=3,
    )
    r = finetune(build, tmp_path / "suppress", cfg)
    mined = pd.read_parquet(tmp_path / "suppress" / "mined_triplets.parquet")
    sup = mined[mined["suppressed"]]
    assert len(sup) > 0 and not sup["kept"].any()
    assert (
        mined["kept"]
        == ~(mined["positive_too_far"] | mined["negative_too_close"] | mined["suppressed"])
    ).all()
    first_step = mined.groupby("anchor")["step"].min()
    for step, g in mined.groupby("step"):
        out = set(g.loc[g["suppressed"], "anchor"])
        trained = g.loc[~g["suppressed"], ["anchor", "positive", "negative"]].to_numpy().ravel()
        assert not out & set(trained)  # no role in this step's triplets
        assert all(first_step[a] < step for a in out)  # never on the first visit
    train = r.metrics[r.metrics["phase"] == "train"]
    assert (
        train["images_excluded"].sum() >= sup["anchor"].nunique()
        and (train["share_suspect"] > 0).any()
    )
    suspicion = pd.read_parquet(tmp_path / "suppress" / "image_suspicion.parquet")
    assert suspicion["visits"].max() >= 2 and suspicion["excluded"].any()


def test_batch_margins_match_a_loop_and_rank_a_planted_mislabelled_face_first():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 6)
    centres = rng.normal(size=(3, 8)) * 3
    emb = (centres[labels] + rng.normal(size=(18, 8)) * 0.5).astype(np.float32)
    emb[4] = centres[2] + rng.normal(size=8) * 0.5  # labelled 0, looks like class 2
    got = batch_margins(emb, labels)
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for i in range(18):
        d = np.linalg.norm(u[i] - u, axis=1)
        own = np.mean([d[j] for j in range(18) if j != i and labels[j] == labels[i]])
        other = min(d[labels == c].mean() for c in set(labels.tolist()) - {labels[i]})
        assert got[i] == pytest.approx(own - other, abs=1e-5)
    assert int(np.argmax(got)) == 4 and got[4] > 0
    assert np.isnan(batch_margins(emb[:3], np.array([0, 1, 1]))[0])  # alone in its label


def test_suppression_by_margin_and_its_settings(build: Path, tmp_path: Path):
    r = finetune(
        build,
        tmp_path / "margin",
        _cfg(
            exclude_suspects=True,
            suspect_score="margin",
            suspect_share=0.3,
            suspect_min_visits=1,
            suspect_per_class=False,
            epochs=3,
            null="effective",
        ),
    )
    mined = pd.read_parquet(tmp_path / "margin" / "mined_triplets.parquet")
    assert mined["suppressed"].any()
    table = pd.read_parquet(tmp_path / "margin" / "image_suspicion.parquet")
    assert (
        table["excluded"].any() and (table["mean_suspicion"] < 0).any()
    )  # margins, not posteriors
    assert r.run["params"]["suspect_score"] == "margin"
    with pytest.raises(CurateError, match="needs --mining batch-hard"):
        tiny_config(exclude_suspects=True, suspect_score="margin").check()
    with pytest.raises(CurateError, match="unknown --suspect-score"):
        _cfg(suspect_score="cleanlab").check()


def test_the_negative_sub_boundary_switched_off_drops_only_too_far_positives():
    rng = np.random.default_rng(1)
    d = 16
    labels = np.repeat(np.arange(3), 8)
    centres = rng.normal(size=(3, d))  # close classes: the negative side fires
    emb = (centres[labels] + rng.normal(size=(24, d)) * 0.8).astype(np.float32)
    local = batch_hard_triplets(torch.from_numpy(emb), torch.from_numpy(labels)).numpy()
    both, pos_only = (
        InLoopScreen(ScreenSettings(alpha_pos=0.3, alpha_neg=0.3, negatives=n, window=64), d, 1.0)(
            emb, labels, local, step=0, seed=0
        )
        for n in (True, False)
    )
    assert both.too_close.any() and not pos_only.too_close.any() and pos_only.neg_ok.all()
    np.testing.assert_array_equal(pos_only.too_far, both.too_far)
    np.testing.assert_array_equal(pos_only.keep, ~both.too_far)
    cfg = _cfg(screen_negatives=False)
    assert cfg.screen_settings().negatives is False


def test_head_margins_are_the_best_other_logit_minus_the_own_and_rank_average_the_mean_rank():
    logits = np.array([[3.0, 1.0, 0.5], [0.0, 2.0, 5.0], [1.0, 1.0, -2.0]])
    labels = np.array([0, 1, 2])
    assert head_margins(logits, labels).tolist() == [-2.0, 3.0, 3.0]
    a = np.array([0.1, 0.5, 0.3, np.nan])
    b = np.array([3.0, 1.0, 2.0, 0.0])
    got = rank_average(a, b)
    # ranks of a: 1, 3, 2; of b: 3, 1, 2 (of 3 finite rows) -> (1 + 3) / 6, (3 + 1) / 6, (2 + 2) / 6
    assert got[:3] == pytest.approx([4 / 6, 4 / 6, 4 / 6]) and np.isnan(got[3])
    assert rank_average(np.array([1.0, 1.0, 2.0])).tolist() == pytest.approx([0.5, 0.5, 1.0])


@pytest.mark.parametrize("score", ["head", "rank"])
def test_suppression_by_the_head_margin_or_the_rank_average(
    score: str, build: Path, tmp_path: Path
):
    r = finetune(
        build,
        tmp_path / score,
        _cfg(
            exclude_suspects=True,
            suspect_score=score,
            suspect_share=0.3,
            suspect_min_visits=1,
            epochs=3,
            null="effective",
        ),
    )
    assert pd.read_parquet(tmp_path / score / "mined_triplets.parquet")["suppressed"].any()
    table = pd.read_parquet(tmp_path / score / "image_suspicion.parquet")
    assert table["excluded"].any() and r.run["params"]["suspect_score"] == score
    if score == "rank":  # mean ranks within each batch
        assert table["mean_suspicion"].between(0, 1).all()
    with pytest.raises(CurateError, match=f"--suspect-score {score} needs --mining batch-hard"):
        tiny_config(exclude_suspects=True, suspect_score=score).check()


def test_suppression_leaves_out_exactly_the_images_with_a_high_score_from_their_second_visit(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A planted score (1 for every image of the first class, 0 for the others) ranked over all
    images: from its second visit on every image of that class is suppressed, no other is."""
    import curate.train.loop as loop

    monkeypatch.setattr(loop, "batch_margins", lambda emb, labels: (labels == 0).astype(np.float64))
    finetune(
        build,
        tmp_path / "planted",
        _cfg(
            exclude_suspects=True,
            suspect_score="margin",
            suspect_share=0.05,
            suspect_min_visits=1,
            suspect_per_class=False,
            epochs=3,
        ),
    )
    mined = pd.read_parquet(tmp_path / "planted" / "mined_triplets.parquet")
    images = pd.read_parquet(build / "images.parquet").set_index("image_id")
    first = sorted(images.loc[images["split"] == "train", "label"].astype(str).unique())[0]
    seen_before: set[int] = set()
    suppressed_any = False
    for _, g in mined.sort_values("step").groupby("step"):
        planted = {int(i) for i in g["anchor"] if images.loc[i, "label"] == first}
        want = planted & seen_before  # earlier visit: suppressed now
        got = set(g.loc[g["suppressed"], "anchor"].astype(int))
        assert got == want
        trained = set(
            g.loc[~g["suppressed"], ["anchor", "positive", "negative"]].to_numpy().ravel().tolist()
        )
        assert not trained & want
        suppressed_any |= bool(got)
        seen_before |= set(g["anchor"].astype(int))
    assert suppressed_any


def test_mined_record_maps_batch_positions_to_store_rows_with_the_verdict_bits():
    from curate.train.checkpoints import MINED_COLUMNS, SUSPECT, TOO_CLOSE, TOO_FAR
    from curate.train.loop import mined_record

    rows = np.array([40, 41, 42, 43])  # store rows of the batch's four images
    local = np.array([[0, 1, 2], [3, 2, 1]])
    suppressed = np.array([[1, 0, 3]])
    rec = mined_record(7, rows, local, suppressed, np.array([True, False]), np.array([True, True]))
    assert rec.shape == (3, len(MINED_COLUMNS))
    assert rec.tolist() == [
        [7, 40, 41, 42, TOO_FAR | TOO_CLOSE],
        [7, 43, 42, 41, TOO_CLOSE],
        [7, 41, 40, 43, SUSPECT],
    ]
    empty = mined_record(
        7,
        rows,
        np.zeros((0, 3), np.int64),
        np.zeros((0, 3), np.int64),
        np.zeros(0, bool),
        np.zeros(0, bool),
    )
    assert empty.shape == (0, len(MINED_COLUMNS)) and empty.dtype == np.int64


def _default_config(**kw: object):
    """finetune's defaults but for the size of the network and the run (no EARLIER_DEFAULTS)."""
    from curate.train.config import FinetuneConfig

    base = dict(
        backbone="test_resnet",
        weights="none",
        in_chans=1,
        input_size=16,
        embed_dim=8,
        epochs=2,
        device="cpu",
        workers=1,
        checkpoint_every=0,
        seed=0,
    )
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def test_default_finetune_is_batch_hard_with_suppression_by_the_head_on_the_synthetic_example(
    tmp_path: Path,
):
    """The defaults follow the arm that won on real noise (issue 25): batch-hard mining in P x K
    batches, class-pair margins, the boundary's positive side on the mined triplets (class-aware
    null) and multistage suppression of the 20% most suspect images by the head's margin."""
    from curate.build import build_tuples
    from curate.synthetic import make_example

    manifest = make_example(tmp_path / "data", per_class=8, size=16, duplicates=0)
    build = build_tuples(manifest, tmp_path / "tuples", seed=0, workers=1).out_dir
    r = finetune(build, tmp_path / "run", _default_config())
    params = r.run["params"]
    assert params["mining"] == "batch-hard" and params["margin_mode"] == "class-pair"
    assert params["null"] == "class_empirical" and params["screen_negatives"] is False
    assert params["exclude_suspects"] is True and params["suspect_score"] == "head"
    assert params["suspect_per_class"] is False and params["suspect_min_visits"] == 1
    mined = pd.read_parquet(tmp_path / "run" / "mined_triplets.parquet")
    assert mined["suppressed"].any() and not mined["negative_too_close"].any()
    table = pd.read_parquet(tmp_path / "run" / "image_suspicion.parquet")
    assert table["excluded"].any()
    report = (tmp_path / "run" / "report.html").read_text()
    n = int(table["excluded"].sum())
    assert f"the 0.2 most suspect by head, over all images: {n} images" in report
    assert "boundary sides on the mined triplets</th><td>positive only" in report


@pytest.mark.parametrize("per_class", [1, 2])
def test_default_finetune_on_fewer_classes_than_p_and_fewer_images_than_k(
    per_class: int, tmp_path: Path
):
    """Three classes of one or two training images each (P = 4, K = 24 by default): the batches
    take every class and repeat its images; the run finishes."""
    build = make_build(tmp_path / "data", per_class_train=max(per_class, 2), per_class_val=1)
    if per_class == 1:  # one training image per class: keep each class's first image's tuples
        tuples = pd.read_parquet(build / "tuples.parquet")
        images = pd.read_parquet(build / "images.parquet").set_index("image_id")
        train = images[images["split"] == "train"]
        first = train.groupby("label").head(1).index
        keep = tuples[tuples["anchor"].isin(first)].copy()
        keep["positive"] = keep["anchor"]
        keep["negative"] = [first[(list(first).index(a) + 1) % len(first)] for a in keep["anchor"]]
        keep.to_parquet(build / "tuples.parquet")
    r = finetune(build, tmp_path / "run", _default_config(epochs=2))
    assert r.run["counts"]["steps"] >= 2
    mined = pd.read_parquet(tmp_path / "run" / "mined_triplets.parquet")
    assert len(mined) and mined["anchor_label"].nunique() == 3


def test_batch_hard_on_one_class_is_a_clear_error():
    with pytest.raises(CurateError, match="at least two classes"):
        ClassBalancedSampler(np.zeros(10, np.int64), p=4, k=24, seed=0)


def test_default_finetune_on_quadruplets_says_it_trains_mined_triplets(tmp_path: Path):
    """Batch-hard mining trains triplets: on a quadruplet build the default run says so (note,
    run.json's kind), --kind quadruplet with batch-hard mining is a clear error, and
    --mining none still trains the quadruplet loss on the tuples."""
    from dataclasses import replace

    build = make_build(tmp_path / "data", quadruplets=True)
    r = finetune(build, tmp_path / "run", _default_config())
    assert r.run["params"]["kind"] == "triplet"
    assert any("quadruplets" in n and "--mining none" in n for n in r.notes), r.notes
    assert any("quadruplets" in n for n in r.run["notes"])
    with pytest.raises(CurateError, match="--kind quadruplet") as err:
        finetune(build, tmp_path / "run2", _default_config(kind="quadruplet"))
    assert "--mining none" in (err.value.hint or "")
    none = finetune(build, tmp_path / "run3", replace(_default_config(), mining="none"))
    assert none.run["params"]["kind"] == "quadruplet"
    assert not any("quadruplets" in n for n in none.notes)


def test_an_interrupted_default_run_resumes_to_the_uninterrupted_one(tmp_path: Path):
    """The defaults (batch-hard, suppression by the head's margin from the second visit): the
    images' running suspicion survives the checkpoint, so a run stopped mid-way and resumed
    trains the same weights, suppresses the same images and mines the same triplets."""
    build = make_build(tmp_path / "data")
    cfg = _default_config(epochs=3, steps_per_epoch=3, classes_per_batch=2, images_per_class=4)
    whole = finetune(build, tmp_path / "whole", cfg)
    run = tmp_path / "interrupted"

    def stop_at_5(phase: str, done: int, total: int, info: dict) -> None:
        if phase == "train" and done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(build, run, cfg, progress=stop_at_5)
    resumed = finetune(build, run, cfg)
    assert resumed.resumed_from_step == 5
    assert whole.run["counts"]["images_excluded"] > 0
    assert _same_weights(run, whole.run_dir)
    metrics = [_comparable(pd.read_parquet(r / "metrics.parquet")) for r in (run, whole.run_dir)]
    pd.testing.assert_frame_equal(*metrics)
    for table in ("mined_triplets", "image_suspicion"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(run / f"{table}.parquet"),
            pd.read_parquet(whole.run_dir / f"{table}.parquet"),
        )


def test_with_prior_averages_the_percentile_ranks_of_the_running_mean_and_the_prior():
    from curate.train.suspicion import with_prior

    history = np.array([[3.0, 3.0], [0.0, 0.0], [1.0, 2.0], [-2.0, 1.0]])  # means 1, -, 0.5, -2
    prior = np.array([0.1, 5.0, np.nan, 0.9])  # nan takes the median prior, 0.9
    got = with_prior(history, prior)
    # screened rows 0, 2, 3: mean ranks 3, 2, 1; prior ranks 1, 2.5, 2.5 (of 3) -> their mean / 3
    want = np.array([(3 + 1) / 6, (2 + 2.5) / 6, (1 + 2.5) / 6])
    np.testing.assert_allclose(got[[0, 2, 3], 0] / got[[0, 2, 3], 1], want)
    np.testing.assert_array_equal(got[:, 1], history[:, 1])  # visits unchanged
    assert got[1].tolist() == [0.0, 0.0]  # never screened: left as it is
    assert with_prior(np.zeros((2, 2)), np.array([1.0, 2.0])).tolist() == [[0, 0], [0, 0]]


def _planted_prior(build: Path, screen: Path) -> str:
    """A fake `curate screen` folder whose label suspicion is 1 for every training image of the
    first class and 0 for the others; returns that class."""
    images = pd.read_parquet(build / "images.parquet")
    train = images[images["split"] == "train"]
    first = sorted(train["label"].astype(str).unique())[0]
    screen.mkdir()
    pd.DataFrame(
        {
            "path": train["path"].astype(str),
            "suspicion": (train["label"].astype(str) == first).astype(float),
        }
    ).to_parquet(screen / "images_suspect.parquet")
    return first


def test_a_suspect_prior_ranks_with_the_running_score_and_decides_between_equal_scores(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """--suspect-prior: with a running head score equal for every image, the prior's rank decides:
    from its second visit on every image of the planted class is suppressed, no other is; the
    image table records the prior."""
    import curate.train.loop as loop

    monkeypatch.setattr(loop, "head_margins", lambda logits, labels: np.zeros(len(labels)))
    first = _planted_prior(build, tmp_path / "screen")
    r = finetune(
        build,
        tmp_path / "prior",
        _cfg(
            exclude_suspects=True,
            suspect_score="head",
            suspect_share=0.05,
            suspect_min_visits=1,
            suspect_per_class=False,
            suspect_prior=str(tmp_path / "screen"),
            epochs=3,
        ),
    )
    mined = pd.read_parquet(tmp_path / "prior" / "mined_triplets.parquet")
    images = pd.read_parquet(build / "images.parquet").set_index("image_id")
    seen_before: set[int] = set()
    for _, g in mined.sort_values("step").groupby("step"):
        planted = {int(i) for i in g["anchor"] if images.loc[i, "label"] == first}
        assert set(g.loc[g["suppressed"], "anchor"].astype(int)) == planted & seen_before
        seen_before |= set(g["anchor"].astype(int))
    assert mined["suppressed"].any()
    table = pd.read_parquet(tmp_path / "prior" / "image_suspicion.parquet")
    is_first = images.loc[table["image_id"], "label"].astype(str).to_numpy() == first
    np.testing.assert_array_equal(table["prior_suspicion"].to_numpy(), is_first.astype(float))
    assert (
        table.loc[table["excluded"], "image_id"].isin(images.index[images["label"] == first]).all()
    )
    assert r.run["params"]["suspect_prior"] == str(tmp_path / "screen")
    report = (tmp_path / "prior" / "report.html").read_text()
    n = int(table["excluded"].sum())
    assert (
        f"the 0.05 most suspect by head and the label suspicion of the --suspect-prior screen, "
        f"over all images: {n} images"
    ) in report


def test_suspect_prior_settings_and_a_folder_without_label_suspicion(build: Path, tmp_path: Path):
    with pytest.raises(CurateError, match="--suspect-prior ranks the suspects"):
        tiny_config(suspect_prior=str(tmp_path)).check()  # pre-sampled tuples: no mined score
    with pytest.raises(CurateError, match="--suspect-prior ranks the suspects"):
        _cfg(exclude_suspects=False, suspect_prior=str(tmp_path)).check()
    _cfg(exclude_suspects=True, suspect_score="head", suspect_prior=str(tmp_path)).check()
    with pytest.raises(CurateError, match="images_suspect.parquet not found"):
        finetune(
            build,
            tmp_path / "r1",
            _cfg(
                exclude_suspects=True, suspect_score="head", suspect_prior=str(tmp_path / "nowhere")
            ),
        )
    (tmp_path / "other").mkdir()
    pd.DataFrame({"path": ["/elsewhere/a.png"], "suspicion": [0.5]}).to_parquet(
        tmp_path / "other" / "images_suspect.parquet"
    )
    with pytest.raises(CurateError, match="none of its images is a training image"):
        finetune(
            build,
            tmp_path / "r2",
            _cfg(
                exclude_suspects=True, suspect_score="head", suspect_prior=str(tmp_path / "other")
            ),
        )
