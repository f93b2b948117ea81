"""The recipe of the occlusion weights shipped in ``curate/models/faces/occlusion.safetensors``.

Everything here is seeded: the same faces, labels, starting weights and seed give the
same weights (on the CPU, with the same number of torch threads). ``bench/recipes/fit_occlusion.py``
is the command line around it (it reads FER2013, caches the aligned faces and prints
progress); ``docs/faces.md`` ("Fitting the occlusion weights") lists the runs.

Data: aligned 48x48 crops (:func:`aligned_crops`) of a seeded sample of FER2013
*training* faces (:func:`sample_images`); nothing here reads the face-conditions benchmark.

* :func:`fit_synthetic` (stages 1-4): a network from scratch, half of every batch with
  a synthetic occluder (:mod:`curate.faces.occluders`). ``clean_with`` (an earlier fit)
  drops the faces it scores above 0.5 from the clean pool; with ``pseudo_labels`` its
  top 5% become occluded examples (self-training). Stage 1 used
  :data:`~curate.faces.occluders.FIRST_FIT_HANDS`.
* :func:`fit_labelled` (stage 5, the shipped weights): the stage-4 weights
  (``bench/audit/occlusion_stage4.safetensors``) fine-tuned on hand-labelled faces into
  networks of two outputs (covered, clear glasses only), one network per seed; :func:`save_occlusion_weights` writes them into one file whose score
  is their mean, or (``soup``, the shipped weights since ``faces-9``) their average
  (:func:`soup_states`), one network that scores as well at a third of the work. ``cv_fold`` holds out one of :data:`N_FOLDS` seeded folds of the
  labelled faces (:func:`cv_folds`), which then never enter training.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.faces import occluders
from curate.faces.analyze import ANALYSIS_VERSION
from curate.faces.landmarks import FaceAnalyzer, quiet_native_stderr
from curate.faces.model_file import resolve_face_model
from curate.faces.occlusion import (
    OUTPUTS,
    REGIONS,
    OcclusionModel,
    build_occlusion_net,
    covered_scores,
    mean_probabilities,
    split_members,
    standardize_faces,
)
from curate.io import atomic_path

BATCH = 128
N_FOLDS = 5
FOLD_SEED = 123
CLEAN_MAX = 0.5  # faces an earlier fit scores above this leave the clean pool
PSEUDO_SHARE = 0.05  # with pseudo labels: the earlier fit's top share become occluded examples

# progress(event, info): "data" once (pool sizes), then "epoch" after every epoch
FitProgress = Callable[[str, dict[str, Any]], None]


# ----------------------------------------------------------------------------- data


def sample_images(folder: Path, n: int, seed: int) -> list[Path]:
    """``n`` of the ``*.jpg`` files under ``folder``, drawn with ``seed``, in sorted order."""
    paths = sorted(folder.rglob("*.jpg"))
    if n > len(paths):
        raise CurateError(
            f"{folder} holds {len(paths)} .jpg files, fewer than the {n} asked for",
            hint="lower --n-faces",
        )
    idx = np.random.default_rng(seed).choice(len(paths), n, replace=False)
    return [paths[i] for i in sorted(idx)]


def aligned_crops(
    paths: Sequence[str | os.PathLike[str]], face_model: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(crops uint8 N x 48 x 48, found bool N): each file's face aligned as ``curate faces``
    aligns it (zeros where no face is found)."""
    with quiet_native_stderr():
        analyzer = FaceAnalyzer(resolve_face_model(face_model))
        try:
            results = [analyzer.find_face(p) for p in paths]
        finally:
            analyzer.close()
    crops = [
        r.aligned if r.face_found and r.aligned is not None else np.zeros((48, 48), np.uint8)
        for r in results
    ]
    return np.stack(crops), np.array([r.face_found for r in results], dtype=bool)


def match_labels(labels: pd.DataFrame, rel_paths: Sequence[str]) -> pd.DataFrame:
    """``labels`` (``path`` relative to the image folder, ``occluded`` 0/1, ``sample``) with
    ``idx``, the row of each labelled face among the crops of ``rel_paths``."""
    for col in ("path", "occluded", "sample"):
        if col not in labels.columns:
            raise CurateError(
                f"the hand labels lack the column {col!r}",
                hint="use bench/audit/fer2013_train_occlusion_labels.csv",
            )
    where = {str(p): i for i, p in enumerate(rel_paths)}
    missing = labels.loc[~labels["path"].isin(where), "path"]
    if len(missing):
        raise CurateError(
            f"{len(missing)} labelled faces are not in the sample of faces with a face "
            f"found, e.g. {missing.iloc[0]}",
            hint="use the --n-faces/--seed the labels came from (12000, 0)",
        )
    out = labels.copy()
    out["idx"] = out["path"].map(where).astype(np.int64)
    return out


def cv_folds(n: int, k: int = N_FOLDS, seed: int = FOLD_SEED) -> np.ndarray:
    """The fold (0..k-1) of each of ``n`` labelled faces, seeded."""
    return np.random.default_rng(seed).integers(0, k, n)


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve of scores ``s`` for labels ``y`` (1 or True positive):
    Mann-Whitney U with ties counted half; NaN without both classes."""
    from scipy.stats import rankdata

    pos = np.asarray(y) == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return math.nan
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# ----------------------------------------------------------------------------- stages 1-4


@dataclass
class SyntheticFit:
    """What :func:`fit_synthetic` made."""

    state: dict[str, Any]
    n_faces: int  # faces in the clean pool (fitted and held out)
    n_dropped: int  # faces ``clean_with`` scored above 0.5
    n_pseudo: int  # pseudo-labelled occluded faces
    history: list[dict[str, Any]] = field(default_factory=list)


def fit_synthetic(
    crops: np.ndarray,
    *,
    epochs: int = 12,
    seed: int = 0,
    lr: float = 3e-3,
    clean_with: Path | None = None,
    pseudo_labels: bool = False,
    hands: occluders.HandStyle = occluders.HANDS,
    progress: FitProgress | None = None,
) -> SyntheticFit:
    """A network trained from scratch on ``crops`` with synthetic occluders (stages 1-4).

    A tenth of the clean pool is held out; after every epoch the held-out synthetic
    AUROC and region accuracy are reported through ``progress`` and kept in ``history``.
    """
    import torch

    torch.manual_seed(seed)
    pseudo = None
    n_dropped, pseudo_min = 0, math.nan
    if clean_with is not None:  # drop training faces a previous fit finds occluded
        probs = OcclusionModel(clean_with).probabilities(crops)
        prev = probs[:, 0]
        n_dropped = int((prev > CLEAN_MAX).sum())
        if pseudo_labels:  # its top 5% become real occluded examples (self-training)
            top = prev >= np.quantile(prev, 1 - PSEUDO_SHARE)
            targets = np.concatenate([np.ones((top.sum(), 1)), probs[top, 1:] > 0.5], axis=1)
            pseudo = (crops[top], targets.astype(np.float32))
            pseudo_min = float(prev[top].min())
        crops = crops[prev <= CLEAN_MAX]
    elif pseudo_labels:
        raise CurateError(
            "pseudo labels need clean_with (the earlier fit that provides them)",
            hint="pass --clean-with WEIGHTS with --pseudo-labels",
        )
    if len(crops) < 10:
        raise CurateError(
            f"{len(crops)} faces left in the clean pool: no face left to fit on",
            hint="sample more faces (--n-faces), or use a cleaner --clean-with fit",
        )
    mix = occluders.occluder_mix(hands)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(crops))
    n_val = len(crops) // 10
    val, train = order[:n_val], order[n_val:]
    donors = crops[train]
    if progress is not None:
        progress(
            "data",
            {
                "n_faces": len(crops),
                "n_train": len(train),
                "n_val": len(val),
                "n_dropped": n_dropped,
                "n_pseudo": 0 if pseudo is None else len(pseudo[0]),
                "pseudo_min_score": pseudo_min,
            },
        )
    xv, yv = occluders.make_batch(crops, val, np.random.default_rng(seed + 1), donors, pseudo, mix)
    net = build_occlusion_net()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * math.ceil(len(train) / BATCH)
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        perm = rng.permutation(train)
        total = 0.0
        for b in range(0, len(perm), BATCH):
            x, y = occluders.make_batch(crops, perm[b : b + BATCH], rng, donors, pseudo, mix)
            loss = loss_fn(net(torch.from_numpy(x)), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(x)
        net.eval()
        with torch.inference_mode():
            pv = torch.sigmoid(net(torch.from_numpy(xv))).numpy()
        occluded = yv[:, 0] == 1
        region_acc = np.mean(
            [
                (pv[occluded, 1 + k] >= 0.5) == (yv[occluded, 1 + k] == 1)
                for k in range(len(REGIONS))
            ]
        )
        info = {
            "epoch": epoch + 1,
            "epochs": epochs,
            "loss": total / max(len(perm), 1),
            "auroc": auroc(yv[:, 0], pv[:, 0]),
            "region_accuracy": float(region_acc),
            "seconds": time.time() - t0,
        }
        history.append(info)
        if progress is not None:
            progress("epoch", info)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    return SyntheticFit(
        state, len(crops), n_dropped, 0 if pseudo is None else len(pseudo[0]), history
    )


# ----------------------------------------------------------------------------- stage 5


@dataclass
class LabelledFit:
    """What :func:`fit_labelled` made."""

    states: list[dict[str, Any]]  # one network per seed
    seeds: list[int]
    n_train: int  # labelled faces fitted on
    n_clean: int  # unlabelled faces in the clean pool
    baseline: pd.DataFrame  # every labelled face with ``score``, the starting weights' score
    held_out: (
        pd.DataFrame
    )  # the held-out fold with ``score`` (the members' mean); empty without cv_fold
    history: list[dict[str, Any]] = field(default_factory=list)


GLASSES_ONLY_KINDS = {
    "clear_glasses",
    "hat",
}  # kinds whose faces are "clear glasses only" when glasses are among them
SHARE_COVERED, SHARE_GLASSES_ONLY = (
    0.37,
    0.13,
)  # of the labelled part of a batch; the rest uncovered
GLASSES_WEIGHT = 0.5  # loss weight of the clear-glasses output


# The occlusion policy (docs/faces.md): the kinds of cover that make a face occluded for
# expression recognition. Clear glasses and hats above the brows do not.
OCCLUDED_KINDS = frozenset({"hand", "hand_edge", "sunglasses", "mask", "hair", "other"})


def occluded_by_policy(occluded: object, kind: object) -> bool:
    """Whether a hand-labelled face is occluded by the policy: one of its kinds of cover is
    in :data:`OCCLUDED_KINDS` (faces without a ``kind`` keep their ``occluded`` label)."""
    kinds = {k for k in str(kind).split(";") if k} if isinstance(kind, str) else set()
    if not kinds:
        return bool(occluded == 1)
    return bool(kinds & OCCLUDED_KINDS)


def glasses_only(kind: object) -> bool:
    """Whether a ``kind`` value (``;``-joined kinds of cover, bench/audit/README.md) says
    that clear glasses are all that covers the face (a hat above them aside)."""
    kinds = {k for k in str(kind).split(";") if k} if isinstance(kind, str) else set()
    return "clear_glasses" in kinds and kinds <= GLASSES_ONLY_KINDS


def fit_labelled(
    crops: np.ndarray,
    labels: pd.DataFrame,
    *,
    init: Path,
    clean_with: Path,
    seeds: Sequence[int] = (0,),
    epochs: int = 6,
    lr: float = 1e-3,
    real_frac: float = 0.85,
    cv_fold: int | None = None,
    exclude: Sequence[int] = (),
    classes: Sequence[str] | None = None,
    extra_bare: np.ndarray | None = None,
    extra_classes: Sequence[str] | None = None,
    balance_covered: bool = False,
    clothing: float = 0.0,
    soup: bool = False,
    progress: FitProgress | None = None,
) -> LabelledFit:
    """Fine-tune ``init`` on hand-labelled real faces, once per seed (stage 5).

    ``labels`` has ``idx`` (row of ``crops``), ``occluded`` (0/1: anything over the face
    but a hat), ``kind`` (what covers it, ``;``-joined; may be empty) and ``sample``
    (``random`` for randomly sampled faces), see :func:`match_labels`. The networks have
    the two outputs of :data:`curate.faces.occlusion.OUTPUTS`; they start from ``init``'s
    layers (its first two outputs when it has more). Each batch of 128: ``real_frac`` of
    it labelled faces, drawn 37% covered by something other than clear glasses alone, 13%
    clear glasses only (:func:`glasses_only`) and 50% uncovered, jittered, with targets
    ``occluded`` and clear-glasses-only (weight :data:`GLASSES_WEIGHT`); the rest as in
    :func:`curate.faces.occluders.labelled_stage_batch` (half with a synthetic occluder, no
    hats). The clean pool is the unlabelled faces that ``clean_with`` scores at most 0.5,
    less ``exclude`` (rows that fitting must never see, e.g. copies of holdout faces).
    With ``cv_fold`` the labelled faces of that fold (:func:`cv_folds`) are held out: they
    are never drawn, never in the clean pool and never a texture donor; their AUROC (of
    ``occluded``) is reported after every epoch.

    Expression balance (the fix for intense expressions read as occlusion): with
    ``classes`` (the expression class of each row of ``crops``) the uncovered labelled
    faces are drawn with every expression class equally likely, so intense, rarer
    expressions (disgust, anger, fear) are as common among the uncovered examples as
    neutral and happy ones; ``extra_bare`` (M x 48 x 48 aligned faces known to be
    uncovered, e.g. posed expressions of studio portraits, with ``extra_classes``) join
    the uncovered labelled faces and the clean pool (so they also carry synthetic
    occluders: their look alone says nothing). ``balance_covered`` (with ``classes``): the
    covered labelled faces (by something other than clear glasses alone, and by clear
    glasses only) are drawn with every class equally likely too, so the expression class
    says nothing about the target. Without it, the hand labels' own mix leaks in: half of
    the labelled fear and surprise faces are covered (hands at the face), a fifth of the
    disgust ones, so an expression could pass for a sign of cover (measured: it did not
    help, docs/faces.md; the shipped weights are fitted without it). ``clothing``:
    the share of all faces drawn (labelled and synthetic, whatever their target) that get
    a collar under the chin first (:func:`curate.faces.occluders.clothing`).

    ``soup``: the networks of the seeds are averaged, parameter by parameter and batch-norm
    statistic by statistic, into one (:func:`soup_states`; ``states`` then holds that one
    network, and the held-out fold is scored by it): as good as scoring all of them, at the
    cost of one.
    """
    crops, classes, extra = _with_extra_bare(crops, classes, extra_bare, extra_classes)
    if cv_fold is not None and not 0 <= cv_fold < N_FOLDS:
        raise CurateError(
            f"cv_fold must be 0..{N_FOLDS - 1}, got {cv_fold}", hint="pass --cv-fold 0 to 4"
        )
    if "kind" not in labels.columns:
        labels = labels.assign(kind="")
    held, train, target, groups = _labelled_draws(labels, cv_fold, extra)
    prev = OcclusionModel(clean_with).probabilities(crops)[:, 0]
    banned = np.isin(
        np.arange(len(crops)), np.concatenate([labels["idx"].to_numpy(), np.asarray(exclude, int)])
    )
    clean = np.flatnonzero((prev <= CLEAN_MAX) & ~banned)
    if extra is not None:
        clean = np.union1d(clean, extra["idx"].to_numpy())
    group_p: list[np.ndarray | None] = [None, None, None]
    if classes is not None:  # each expression class equally likely among the uncovered draws
        # (and, with balance_covered, among the covered ones too)
        for g in (0, 1, 2) if balance_covered else (2,):
            if len(groups[g]):
                group_p[g] = class_balanced(np.asarray(classes, dtype=object)[groups[g]])
    if len(clean) == 0 or len(groups[0]) + len(groups[1]) == 0 or len(groups[2]) == 0:
        raise CurateError(
            f"nothing to fit on: {len(clean)} unlabelled clean faces, "
            f"{len(groups[0]) + len(groups[1])} occluded and {len(groups[2])} clean "
            "labelled faces for training",
            hint="sample more faces, or label both occluded and clean faces",
        )
    baseline = labels.assign(
        score=OcclusionModel(init).probabilities(crops[labels["idx"].to_numpy()])[:, 0]
    )
    if progress is not None:
        progress(
            "data",
            {
                "n_train": len(train),
                "n_occluded": len(groups[0]) + len(groups[1]),
                "n_glasses_only": len(groups[1]),
                "n_held_out": len(held),
                "n_clean": len(clean),
                "n_crops": len(crops),
                "baseline": baseline,
            },
        )
    states: list[Any] = []
    nets: list[Any] = []
    history: list[Any] = []
    for seed in seeds:
        net = _fit_one_labelled(
            crops,
            clean,
            target,
            groups,
            held,
            init=init,
            seed=int(seed),
            epochs=epochs,
            lr=lr,
            real_frac=real_frac,
            history=history,
            progress=progress,
            group_p=group_p,
            clothing=clothing,
        )
        states.append({k: v.detach().contiguous() for k, v in net.state_dict().items()})
        nets.append(net.eval())
    if soup:
        states = [soup_states(states)]
        nets = [build_occlusion_net(len(OUTPUTS))]
        nets[0].load_state_dict(states[0])
        nets[0].eval()
    held_scores = [
        mean_probabilities([net], crops[held["idx"].to_numpy()])
        if len(held)
        else np.zeros((0, len(OUTPUTS)))
        for net in nets
    ]
    probs = np.mean(held_scores, axis=0) if len(held) else np.zeros((0, len(OUTPUTS)))
    occlusion, covered = covered_scores(probs)
    return LabelledFit(
        states,
        [int(s) for s in seeds],
        len(train),
        len(clean),
        baseline,
        held.assign(score=covered, occlusion=occlusion),
        history,
    )


def _with_extra_bare(
    crops: np.ndarray,
    classes: Sequence[str] | None,
    extra_bare: np.ndarray | None,
    extra_classes: Sequence[str] | None,
) -> tuple[np.ndarray, Sequence[str] | None, pd.DataFrame | None]:
    """``crops`` with the known-uncovered ``extra_bare`` faces appended, their classes, and
    their label rows (``occluded`` 0, ``sample`` ``extra``), or None without extra faces."""
    if extra_bare is None or not len(extra_bare):
        return crops, classes, None
    n0 = len(crops)
    crops = np.concatenate([crops, np.asarray(extra_bare, dtype=crops.dtype)])
    extra = pd.DataFrame(
        {
            "idx": np.arange(n0, len(crops)),
            "occluded": 0,
            "kind": "",
            "sample": "extra",
            "path": [f"extra/{i}" for i in range(len(extra_bare))],
        }
    )
    if classes is not None:
        classes = [
            *classes,
            *(extra_classes if extra_classes is not None else ["extra"] * len(extra_bare)),
        ]
    return crops, classes, extra


def _labelled_draws(
    labels: pd.DataFrame, cv_fold: int | None, extra: pd.DataFrame | None
) -> tuple[
    pd.DataFrame, pd.DataFrame, dict[int, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]
]:
    """The held-out labels (fold ``cv_fold``), the training labels (the rest, plus the
    ``extra`` uncovered faces, never held out: not hand labels), each training face's
    targets (occluded, clear glasses only) and the three draw groups of :func:`fit_labelled`
    (covered by more than clear glasses, clear glasses only, uncovered)."""
    fold = cv_folds(len(labels))
    held = labels[fold == cv_fold] if cv_fold is not None else labels.iloc[:0]
    train = labels[fold != cv_fold] if cv_fold is not None else labels
    if extra is not None:
        train = pd.concat([train, extra.reindex(columns=train.columns)], ignore_index=True)
        train["occluded"] = train["occluded"].astype(int)
        train["kind"] = train["kind"].fillna("")
    gonly = train["kind"].map(glasses_only).to_numpy() & (train["occluded"] == 1).to_numpy()
    target = {
        int(i): np.array([o, g], np.float32)
        for i, o, g in zip(train["idx"], train["occluded"].astype(np.float32), gonly, strict=True)
    }
    groups = (
        train.loc[(train["occluded"] == 1).to_numpy() & ~gonly, "idx"].to_numpy(),
        train.loc[gonly, "idx"].to_numpy(),
        train.loc[train["occluded"] == 0, "idx"].to_numpy(),
    )
    return held, train, target, groups


def class_balanced(classes: np.ndarray) -> np.ndarray:
    """Draw probabilities that make every class of ``classes`` (one per face) equally likely."""
    cls = pd.Series(classes)
    p = 1.0 / cls.map(cls.value_counts()).to_numpy(dtype=np.float64)
    return p / p.sum()


def _held_out_scores(net: Any, crops: np.ndarray, held: pd.DataFrame) -> np.ndarray:
    """ "Occluded" probabilities of the held-out labelled faces, as curate scores them."""
    if not len(held):
        return np.zeros(0)
    return mean_probabilities([net.eval()], crops[held["idx"].to_numpy()])[:, 0]


def held_out_aurocs(held: pd.DataFrame, score: np.ndarray) -> dict[str, Any]:
    """AUROC of ``score`` on the held-out faces, all and the randomly sampled ones."""
    rnd = (held["sample"] == "random").to_numpy()
    y = held["occluded"].to_numpy()
    return {
        "auroc": auroc(y, score),
        "auroc_random": auroc(y[rnd], score[rnd]),
        "n_random": int(rnd.sum()),
    }


def _start_from(init: Path) -> dict[str, Any]:
    """``init``'s (first) network as a state dict of the two-output shipped network: its
    last layer keeps the rows of the first two outputs."""
    from safetensors.torch import load_file

    state = split_members(load_file(str(init)))[0]
    last = max((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[0]))
    bias = last.removesuffix("weight") + "bias"
    return {
        **state,
        last: state[last][: len(OUTPUTS)].clone(),
        bias: state[bias][: len(OUTPUTS)].clone(),
    }


def _fit_one_labelled(
    crops: np.ndarray,
    clean: np.ndarray,
    target: Mapping[int, np.ndarray],
    groups: tuple[np.ndarray, np.ndarray, np.ndarray],
    held: pd.DataFrame,
    *,
    init: Path,
    seed: int,
    epochs: int,
    lr: float,
    real_frac: float,
    history: list[dict[str, Any]],
    progress: FitProgress | None,
    group_p: Sequence[np.ndarray | None] = (None, None, None),
    clothing: float = 0.0,
) -> Any:
    """One network of :func:`fit_labelled`."""
    import torch

    torch.manual_seed(seed)
    donors = crops[clean]
    mix = occluders.labelled_stage_mix()
    net = build_occlusion_net(len(OUTPUTS))
    net.load_state_dict(_start_from(init))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * math.ceil(len(clean) / BATCH)
    )
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    covered, gonly, bare = groups
    shares = np.array([SHARE_COVERED, SHARE_GLASSES_ONLY, 1 - SHARE_COVERED - SHARE_GLASSES_ONLY])
    if not len(gonly):  # no clear-glasses-only face labelled: half covered, half bare
        shares = np.array([0.5, 0.0, 0.5])
    if not len(covered):
        shares = np.array([0.0, 0.5, 0.5])
    pools = [g if len(g) else bare for g in groups]
    pool_p = [p if len(g) else group_p[2] for g, p in zip(groups, group_p, strict=True)]
    rng = np.random.default_rng(seed)
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        perm = rng.permutation(clean)
        for b in range(0, len(perm), BATCH):
            idx = perm[b : b + BATCH]
            n_real = int(round(real_frac * len(idx)))
            x, y = occluders.labelled_stage_batch(
                crops, idx[n_real:], rng, donors, mix, clothing_share=clothing
            )
            if n_real:
                group = rng.choice(3, n_real, p=shares)
                take = np.array([rng.choice(pools[g], p=pool_p[g]) for g in group])
                xr = np.stack(
                    [
                        occluders.jitter(occluders.dressed(crops[i], rng, clothing), rng)
                        for i in take
                    ]
                )
                x = np.concatenate([standardize_faces(xr), x])
                y = np.concatenate([np.stack([target[int(i)] for i in take]), y])
            w = torch.ones(y.shape)
            w[:, 1] = GLASSES_WEIGHT
            loss = (bce(net(torch.from_numpy(x)), torch.from_numpy(y)) * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        info: dict[str, Any] = {
            "seed": seed,
            "epoch": epoch + 1,
            "epochs": epochs,
            "seconds": time.time() - t0,
        }
        if len(held):
            info.update(held_out_aurocs(held, _held_out_scores(net, crops, held)))
        history.append(info)
        if progress is not None:
            progress("epoch", info)
    return net


# ----------------------------------------------------------------------------- the weights file


def soup_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One network from several fine-tuned from the same starting weights (a uniform "model
    soup", Wortsman et al., 2022): each floating-point tensor (weights, biases, batch-norm
    running means and variances) is the mean of the networks'; integer counters are the
    first's. Networks fine-tuned from one start lie in one basin of the loss, so their
    average scores like the mean of their scores, at the cost of one network
    (docs/faces.md, "Fitting the occlusion weights")."""
    import torch

    if not states:
        raise CurateError("no networks to average", hint="fit at least one seed")
    keys = list(states[0])
    if any(list(st) != keys for st in states[1:]):
        raise CurateError(
            "the networks to average have different parameters",
            hint="average networks of one architecture only",
        )
    return {
        k: (
            torch.stack([st[k] for st in states]).mean(0).contiguous()
            if states[0][k].dtype.is_floating_point
            else states[0][k].clone()
        )
        for k in keys
    }


def join_members(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One state dict for several networks (the inverse of
    :func:`curate.faces.occlusion.split_members`): ``member0.``, ``member1.``, ... prefixes."""
    return {f"member{i}.{k}": v for i, st in enumerate(states) for k, v in st.items()}


def save_occlusion_weights(
    states: Sequence[dict[str, Any]], path: str | os.PathLike[str], metadata: Mapping[str, str]
) -> Path:
    """Write one network (plain names) or several (joined) as safetensors, atomically;
    ``analysis_version`` is added to ``metadata``. The file loads with
    :class:`curate.faces.occlusion.OcclusionModel`."""
    from safetensors.torch import save_file

    out = Path(path)
    tensors = join_members(states) if len(states) > 1 else dict(states[0])
    with atomic_path(out) as tmp:
        save_file(
            tensors, str(tmp), metadata={**dict(metadata), "analysis_version": ANALYSIS_VERSION}
        )
    return out
