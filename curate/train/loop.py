"""``finetune``: metric-learning fine-tuning with the statistical boundary at every step.

Each step forwards the unique images of a batch of tuples once, tests every tuple's
distances against the boundary fitted with the current weights (see
:mod:`curate.train.loss`), and trains on the kept tuples only (plus a classification
loss so the network predicts expressions). The run is checkpointed and resumes after
an interruption; with the same seed a CPU run is reproduced bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from curate.backbone import autocast_precision, bundled_model_dir, load_backbone, resolve_device
from curate.errors import CurateError
from curate.io import (
    fingerprint_table,
    read_parquet,
    run_record,
    write_json,
    write_parquet,
)
from curate.models import resolve_weights
from curate.outdir import Claim, claim_folder
from curate.runs import (
    EmbeddingNet,
    create_backbone,
    load_run,
    make_data_config,
    run_config,
    save_run,
)
from curate.sources import is_run_dir, path_setting
from curate.stats.nulls import CLASS_NULLS
from curate.train.checkpoints import (
    CKPT_DIR,
    DROP_COLUMNS,
    MINED_COLUMNS,
    SUSPECT,
    TOO_CLOSE,
    TOO_FAR,
    TrainState,
    copy_buffers,
    load_checkpoint,
    restore_buffers,
    save_checkpoint,
    val_row_missing,
)
from curate.train.config import AUTO, MINED_SCORES, FinetuneConfig
from curate.train.data import (
    AUGMENTS,
    NO_AUGMENT,
    ImageStore,
    TrainingData,
    batch_members,
    epoch_batches,
    load_training_data,
    step_generator,
    to_model_input,
)
from curate.train.data_parallel import SINGLE, Parallel, from_env, sync_batchnorm
from curate.train.evaluate import classification_metrics, embed_and_classify
from curate.train.framing import AUTO_WHY, face_boxes, framing_record, resolve_framing
from curate.train.loss import (
    InLoopScreen,
    mine_negatives,
    quadruplet_loss,
    triplet_loss,
    triplet_loss_margins,
)
from curate.train.margins import PairMargins, margin_table
from curate.train.mining import (
    ClassBalancedSampler,
    batch_hard_triplets,
    batch_margins,
    head_margins,
    mined_alphas,
    rank_average,
)
from curate.train.suspicion import (
    class_codes,
    config_cut,
    final_suspects,
    image_suspicion_table,
    left_out_by_label,
    suspect_images,
    with_prior,
)

TrainProgress = Callable[[str, int, int, dict[str, Any]], None]
# settings that change the result; the others (device, workers, ...) may differ on resume
_RUNTIME_ONLY = ("device", "workers", "preload_max_gb", "checkpoint_every", "eval_batch_size")
RUN_OUTPUTS = (
    "model.safetensors",
    "config.json",
    "metrics.parquet",
    "tuple_drops.parquet",
    "evaluation.json",
    "report.html",
    "run.json",
    "mined_triplets.parquet",
    "class_pair_margins.parquet",
)


@dataclass
class FinetuneResult:
    """What :func:`finetune` wrote and measured."""

    run_dir: Path
    metrics: pd.DataFrame
    final: dict[str, Any]
    config: dict[str, Any]
    run: dict[str, Any]
    resumed_from_step: int = 0
    notes: list[str] = field(default_factory=list)
    is_main: bool = True  # False on torchrun ranks other than 0, which write nothing


# ----------------------------------------------------------------------------- network init


def init_network(
    cfg: FinetuneConfig,
    classes: list[str],
    notes: list[str] | None = None,
) -> tuple[EmbeddingNet, dict[str, Any], str | None, str]:
    """The network to fine-tune, its data config, where its weights came from, and its backbone name.

    ``cfg.weights``: ``"none"`` (random), a fine-tuning RUN folder, a weights file, or
    ``None`` for the backbone's own weight resolution (:func:`curate.backbone.load_backbone`).
    A RUN (or bundled model) trained on other classes than the tuples' is transferred: its
    embedding network is kept and a new classification head is trained, with a note added to
    ``notes``; ``reset_head`` trains a new head even when the classes match.
    """
    backbone, w = resolve_weights(cfg.weights, cfg.backbone)  # model names `curate models` lists
    if backbone != cfg.backbone:
        cfg = replace(cfg, backbone=backbone)
    if cfg.backbone is None and w is None:
        w = str(bundled_model_dir())
    if cfg.backbone is None and not (w is not None and is_run_dir(w)):
        raise CurateError(
            "--weights other than a fine-tuning run needs --backbone NAME",
            hint="pass --backbone (a timm model name), for example --backbone resnet18",
        )
    if w is not None and is_run_dir(w):
        net, rc = load_run(w)
        if list(rc["classes"]) != list(classes) or cfg.reset_head:
            if list(rc["classes"]) != list(classes) and notes is not None:
                notes.append(
                    f"new classification head: the weights {w} were trained on {list(rc['classes'])}, "
                    f"the tuples have {list(classes)}; the embedding network is transferred and a "
                    "new head for the tuples' classes is trained from scratch"
                )
            net.classifier = nn.Linear(net.embed_dim, len(classes))
        data_config = dict(rc["data_config"])
        if cfg.input_size is not None:
            data_config = {
                **data_config,
                "input_size": [int(rc["in_chans"]), cfg.input_size, cfg.input_size],
                "crop_pct": 1.0,
            }
        return net, data_config, str(Path(w).resolve()), str(rc["backbone"])
    assert cfg.backbone is not None
    in_chans = cfg.in_chans or 3
    if w is not None and w.lower() == "none":
        body, source = create_backbone(cfg.backbone, in_chans), None
    else:
        loaded = load_backbone(cfg.backbone, w, device="cpu")
        body, source = loaded.model, loaded.weights_source
        in_chans = int(loaded.in_chans)
        if cfg.in_chans is not None and cfg.in_chans != in_chans:
            raise CurateError(
                f"--in-chans {cfg.in_chans} does not match the weights of {cfg.backbone!r} "
                f"({in_chans} channels)",
                hint=f"pass --in-chans {in_chans} or leave it out",
            )
    net = EmbeddingNet(
        body,
        int(cast(Any, body).num_features),
        cfg.embed_dim,
        len(classes),
        cfg.scale,
        cfg.logit_scale,
    )
    return net, make_data_config(body, in_chans, cfg.input_size), source, cfg.backbone


# ----------------------------------------------------------------------------- run settings

# settings newer than the first checkpoints, at their defaults: left out of the fingerprint, so
# the checkpoints and run folders of an earlier curate stay resumable
_LATER_SETTINGS = {
    "classes_per_batch": 4,
    "images_per_class": 24,
    "steps_per_epoch": None,
    "margin_mode": "global",
    "metric_weight": 1.0,
    "face_screen": None,
    "suspect_prior": None,
    "suspect_class_cap": None,
    "face_rejects": "drop",
    "framing": "full",
    "augment_kind": "light",
    "suspect_score": "posterior",
    "screen_negatives": True,
}


def _result_settings(cfg: FinetuneConfig) -> dict[str, Any]:
    """The settings that change the result (not the runtime ones), without later settings at their defaults."""
    return {
        k: v
        for k, v in asdict(cfg).items()
        if k not in _RUNTIME_ONLY and not (k in _LATER_SETTINGS and v == _LATER_SETTINGS[k])
    }


def _fingerprint(cfg: FinetuneConfig, data: TrainingData, build_dir: Path | None = None) -> str:
    """What a checkpoint must match to be resumed: the settings, the tuples and the build
    folder (paths resolved, so ``../ex/tuples`` and its absolute spelling are one run)."""
    settings = _result_settings(cfg)
    cols = [c for c in ("tuple_id", *data.members) if c in data.tuples.columns]
    return json.dumps(
        {
            "settings": settings,
            "tuples": fingerprint_table(data.tuples, cols),
            "build_dir": str(build_dir if build_dir is not None else data.build_dir),
        },
        sort_keys=True,
    )


def run_settings(cfg: FinetuneConfig, source: str | Path) -> dict[str, Any]:
    """The settings a run folder is claimed with (:mod:`curate.outdir`): those that change
    the result, and the resolved source."""
    settings = _result_settings(cfg)
    return {**settings, "source": str(Path(source).expanduser().resolve())}


# ----------------------------------------------------------------------------- one step


# the boundary's quantities a training step records (None before the screen is active)
_SCREEN_INFO = ("d_null", "mu", "sigma", "t_pos", "t_neg")


@dataclass
class _Batch:
    x: torch.Tensor
    labels: torch.Tensor
    labels_np: np.ndarray
    local: np.ndarray
    rows: np.ndarray


def _tuple_loss(
    kind: str, emb: torch.Tensor, local: torch.Tensor, cfg: FinetuneConfig
) -> torch.Tensor:
    a, p, n = local[:, 0], local[:, 1], local[:, 2]
    if kind == "quadruplet":
        return quadruplet_loss(emb, a, p, n, local[:, 3], cfg.margin, cfg.margin2)
    return triplet_loss(emb, a, p, n, cfg.margin)


def _mine_triplets(
    emb: torch.Tensor,
    labels: torch.Tensor,
    excluded: np.ndarray,
    outside: np.ndarray | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Each image's hardest triplet among the images neither ``excluded`` (suppressed) nor
    ``outside`` (kept out of every triplet: ``--face-rejects classify``), as batch positions,
    and the triplets the excluded images would have anchored among the images not
    ``outside`` (``[s, 3]``, suppressed)."""
    usable = np.ones(len(excluded), bool) if outside is None else ~outside

    def mine(ok: np.ndarray) -> torch.Tensor:
        return batch_hard_triplets(
            emb, labels, None if ok.all() else torch.from_numpy(ok).to(emb.device)
        )

    if not excluded.any():
        return mine(usable), np.zeros((0, 3), np.int64)
    unmasked = mine(usable).cpu().numpy()
    return mine(usable & ~excluded), unmasked[excluded[unmasked[:, 0]]]


def mined_suspicion(
    score: str, emb: np.ndarray, logits: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """The batch images' suspicion by ``--suspect-score`` (``margin``, ``head`` or ``rank``) from
    their embeddings and logits: :func:`batch_margins`, :func:`head_margins` or the
    :func:`rank_average` of both."""
    if score == "margin":
        return batch_margins(emb, labels)
    head = head_margins(logits, labels)
    return head if score == "head" else rank_average(head, batch_margins(emb, labels))


def mined_record(
    step: int,
    rows: np.ndarray,
    local: np.ndarray,
    suppressed: np.ndarray,
    too_far: np.ndarray,
    too_close: np.ndarray,
) -> np.ndarray:
    """A step's mined triplets as :data:`MINED_COLUMNS` rows of store rows (``rows``: the
    batch's store rows): the ``local`` ones with the boundary's bits, then the ``suppressed``
    ones with the ``SUSPECT`` bit."""
    bits = np.concatenate(
        [
            TOO_FAR * too_far.astype(np.int64) + TOO_CLOSE * too_close.astype(np.int64),
            np.full(len(suppressed), SUSPECT, np.int64),
        ]
    )
    every = np.concatenate([local, suppressed]).astype(np.int64)
    if not len(every):
        return np.zeros((0, len(MINED_COLUMNS)), np.int64)
    return np.column_stack(
        [
            np.full(len(every), step, np.int64),
            rows[every[:, 0]],
            rows[every[:, 1]],
            rows[every[:, 2]],
            bits,
        ]
    )


def _lr_lambda(total: int, warmup_share: float) -> Callable[[int], float]:
    warm = max(1, int(round(total * warmup_share)))

    def f(step: int) -> float:
        return (
            min(1.0, (step + 1) / warm)
            * 0.5
            * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
        )

    return f


class _Trainer:
    def __init__(
        self,
        cfg: FinetuneConfig,
        data: TrainingData,
        net: EmbeddingNet,
        data_config: dict[str, Any],
        store: ImageStore,
        member_rows: np.ndarray,
        label_codes: np.ndarray,
        val_rows: np.ndarray,
        device: torch.device,
        par: Parallel = SINGLE,
        prior: np.ndarray | None = None,
    ) -> None:
        self.cfg, self.data, self.net, self.data_config = cfg, data, net, data_config
        self.prior = prior  # --suspect-prior per store row (nan: not scored), or None
        self.par = par
        self.store, self.member_rows, self.label_codes, self.val_rows = (
            store,
            member_rows,
            label_codes,
            val_rows,
        )
        self.soft_targets: torch.Tensor | None = None  # [n_images, K] rows summing to 1, or None
        self.device = device
        self.kind = cfg.kind or data.kind
        self.augment = AUGMENTS[cfg.augment_kind] if cfg.augment else NO_AUGMENT
        self.colour = bool(
            store.colour
        )  # RGB pixels jittered, then made grey (augment "photos", grey model)
        if self.colour:
            self.augment = replace(self.augment, grey=True)
        self.amp, self.precision = autocast_precision(device, cfg.amp)
        if self.amp and device.type == "cpu":
            hazard = bf16_cpu_hazard(net, data_config)
            if hazard is not None:
                self.amp, self.precision = False, hazard
        settings = cfg.screen_settings()
        self.sampler: ClassBalancedSampler | None = None  # batch-hard mining: set by _train
        self.pool = np.zeros(0, np.int64)  # ... the store rows it samples from
        # ... and those it keeps out of every mined triplet (--face-rejects classify)
        self.metric_out = np.zeros(len(label_codes), bool)
        self.margins: PairMargins | None = None
        if cfg.mining == "batch-hard":
            # the boundary tests the hardest of K - 1 positives and of (P - 1) K negatives
            p = min(cfg.classes_per_batch, len(data.classes))
            a_pos, a_neg = mined_alphas(
                cfg.alpha_pos,
                cfg.alpha_neg,
                cfg.images_per_class - 1,
                (p - 1) * cfg.images_per_class,
            )
            settings = replace(settings, alpha_pos=a_pos, alpha_neg=a_neg)
            self.margins = PairMargins(
                cfg.margin_mode,
                cfg.margin,
                len(data.classes),
                net.embed_dim,
                scale=net.scale,
                center=cfg.center,
                window=cfg.screen_window,
                seed=cfg.seed,
            )
        self.screen = InLoopScreen(settings, net.embed_dim, net.scale)
        self.params = list(net.parameters())

    def image_batch(self, rows: np.ndarray, step: int) -> _Batch:
        """A batch of images (batch-hard mining): ``rows`` are store rows; no tuples yet."""
        x = self.store.get(rows).to(self.device, non_blocking=True)
        x = self.augment(x, step_generator(self.cfg.seed, step))
        x = to_model_input(x, self.data_config)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        labels_np = self.label_codes[rows]
        return _Batch(
            x,
            torch.from_numpy(labels_np).to(self.device),
            labels_np,
            np.zeros((0, 3), np.int64),
            np.asarray(rows, np.int64),
        )

    def _suspects(
        self, b: _Batch, suspicion: np.ndarray, batch_suspicion: np.ndarray | None
    ) -> np.ndarray:
        """Which of the batch's images ``--exclude-suspects`` leaves out: the run's most suspect
        share by their mean score over earlier visits (``suspicion``: sum/visits before this
        step), counting this step's scores (``batch_suspicion``) where given."""
        cfg = self.cfg
        if self.prior is not None:  # batch-hard only: batch_suspicion is None there
            suspicion = with_prior(suspicion, self.prior)
        cut = config_cut(cfg, suspicion, self.label_codes)
        return suspect_images(
            suspicion[b.rows],
            batch_suspicion,
            cut[b.rows] if isinstance(cut, np.ndarray) else cut,
            cfg.suspect_min_visits,
        )

    def mined_step(
        self, b: _Batch, step: int, suspicion: np.ndarray | None = None
    ) -> tuple[torch.Tensor, dict[str, Any], np.ndarray, np.ndarray | None]:
        """Batch-hard step: mine each image's hardest triplet, screen the mined triplets with
        the boundary, train on the kept ones. Returns the loss, the metrics row, the mined
        triplets as ``[t, 5]`` MINED_COLUMNS rows (store rows) and the batch images' scores
        (``suspect_score``: ``1 - p(label | x)`` against the window, ``None`` unless a
        class-aware null screened the batch; or the batch-hard score of :func:`mined_suspicion`).

        With ``exclude_suspects`` this is multistage outlier suppression: ``suspicion`` (the
        run's ``[n_images, 2]`` sum/visits of those scores before this step) ranks the images
        by their mean score over their earlier visits, and the most suspect ones are
        suppressed before mining (they neither anchor nor serve as positive or negative, and
        leave the classification loss); an image is scored on every visit and can be
        suppressed from its ``suspect_min_visits + 1``-th on. The triplets they would have
        anchored are recorded with the ``SUSPECT`` bit."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed * 7_777_777 + step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            emb = self.par.forward(self.net, b.x)
        emb = emb.float()
        excluded = np.zeros(len(b.rows), bool)
        if cfg.exclude_suspects and suspicion is not None:
            excluded = self._suspects(b, suspicion, None)
        outside = self.metric_out[b.rows]  # --face-rejects classify: classification only
        local_t, suppressed = _mine_triplets(emb, b.labels, excluded, outside)
        local = local_t.cpu().numpy()
        t = len(local)
        emb_np = emb.detach().cpu().numpy()
        info: dict[str, Any] = {"screen_active": False} | dict.fromkeys(_SCREEN_INFO)
        keep, too_far, too_close = np.ones(t, bool), np.zeros(t, bool), np.zeros(t, bool)
        batch_suspicion = None
        if cfg.screen_every_step and t:
            inside = np.flatnonzero(~outside)  # the null's window holds no classify-only image
            at = np.cumsum(~outside) - 1  # batch position -> place among them
            res = self.screen(
                emb_np[inside], b.labels_np[inside], at[local], step=step, seed=cfg.seed
            )
            keep, too_far, too_close = res.keep, res.too_far, res.too_close
            if res.suspicion is not None:
                batch_suspicion = np.full(len(b.rows), np.nan)
                batch_suspicion[inside] = res.suspicion
            info = {"screen_active": res.active} | {k: getattr(res, k) for k in _SCREEN_INFO}
        assert self.margins is not None
        pair_margins = self.margins.update(emb_np[~outside], b.labels_np[~outside], step)
        kept = local[keep]
        metric = emb.sum() * 0.0
        if cfg.metric_weight > 0 and len(kept):
            metric = _margin_triplet_loss(emb, kept, pair_margins, b.labels_np)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.net.logits_from_embeddings(emb if cfg.ce_weight > 0 else emb.detach())
        logits = logits.float()
        if cfg.suspect_score in MINED_SCORES:
            batch_suspicion = mined_suspicion(
                cfg.suspect_score, emb_np, logits.detach().cpu().numpy(), b.labels_np
            )
        all_dropped = t > 0 and not keep.any()
        ce_rows = (
            np.arange(len(b.rows))
            if all_dropped or cfg.ce_on == "all" or not cfg.screen_every_step
            else np.union1d(local[keep].ravel(), np.flatnonzero(outside))
        )
        ce_rows = ce_rows[~excluded[ce_rows]]  # suppressed images leave the classification loss too
        if not len(
            ce_rows
        ):  # no triplet left (suppression emptied a label): every image not suppressed
            ce_rows = np.flatnonzero(~excluded)
        ce = self._cross_entropy(logits, b, ce_rows)
        loss = cfg.metric_weight * metric + (cfg.ce_weight if cfg.ce_weight > 0 else 1.0) * ce
        _check_finite(loss, step)
        acc = (logits.argmax(1) == b.labels).float().mean().item()
        off = ~np.eye(len(pair_margins), dtype=bool)
        row = {
            "n_tuples": t,
            "n_images": len(b.rows),
            "n_kept": int(keep.sum()),
            "share_dropped": float(1 - keep.mean()) if t else 0.0,
            "share_too_far": float(too_far.mean()) if t else 0.0,
            "share_too_close": float(too_close.mean()) if t else 0.0,
            "share_suspect": len(suppressed) / max(t + len(suppressed), 1),
            "images_excluded": int(excluded.sum()),
            "all_dropped": bool(all_dropped),
            "metric_loss": float(metric.item()),
            "ce_loss": float(ce.item()),
            "train_accuracy": acc,
            "margin_mean": float(pair_margins[off].mean()),
            **info,
        }
        return (
            loss,
            row,
            mined_record(step, b.rows, local, suppressed, too_far, too_close),
            batch_suspicion,
        )

    def _cross_entropy(self, logits: torch.Tensor, b: _Batch, rows: np.ndarray) -> torch.Tensor:
        """The classification loss on the batch images ``rows`` (their labels, or their soft
        targets with ``--soft-label-prefix``); zero when ``rows`` is empty (every image of the
        batch suppressed: nothing to learn from)."""
        if not len(rows):
            return logits.sum() * 0.0
        idx = torch.from_numpy(rows).to(self.device)
        if self.soft_targets is None:
            return F.cross_entropy(logits[idx], b.labels[idx])
        target = self.soft_targets[torch.from_numpy(b.rows)].to(self.device)[idx]
        return -(target * F.log_softmax(logits[idx], dim=1)).sum(dim=1).mean()

    def batch(self, tuple_rows: np.ndarray, step: int) -> _Batch:
        rows, local = batch_members(self.member_rows[tuple_rows])
        x = self.store.get(rows, colour=self.colour).to(self.device, non_blocking=True)
        x = self.augment(x, step_generator(self.cfg.seed, step))
        x = to_model_input(x, self.data_config)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        labels_np = self.label_codes[rows]
        return _Batch(x, torch.from_numpy(labels_np).to(self.device), labels_np, local, rows)

    def step(
        self, b: _Batch, step: int, suspicion: np.ndarray
    ) -> tuple[torch.Tensor, dict[str, Any], np.ndarray, np.ndarray | None]:
        """Loss, metrics row, per-tuple drop counts ``[t, 4]`` and the batch images' label
        suspicion (``None`` unless a class-aware null screened the batch). ``suspicion`` is the
        run's ``[n_images, 2]`` sum/visits before this step (read only)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed * 7_777_777 + step)  # dropout / drop-path, reproducible per step
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            emb = self.par.forward(self.net, b.x)  # under torchrun: this rank's shard, all-gathered
        emb = emb.float()
        t = len(b.local)
        batch_suspicion = None
        if cfg.screen_every_step:
            res = self.screen(
                emb.detach().cpu().numpy(), b.labels_np, b.local, step=step, seed=cfg.seed
            )
            keep, too_far, too_close, neg_ok = res.keep, res.too_far, res.too_close, res.neg_ok
            batch_suspicion = res.suspicion
            info = {"screen_active": res.active} | {k: getattr(res, k) for k in _SCREEN_INFO}
        else:
            keep, too_far, too_close = np.ones(t, bool), np.zeros(t, bool), np.zeros(t, bool)
            neg_ok = np.ones(len(b.rows), bool)
            info = {"screen_active": False} | dict.fromkeys(_SCREEN_INFO)
        excluded = np.zeros(len(b.rows), bool)
        if cfg.exclude_suspects and batch_suspicion is not None:
            excluded = self._suspects(b, suspicion, batch_suspicion)
        suspect = excluded[b.local[:, 0]] | excluded[b.local[:, 1]]
        keep = keep & ~suspect
        all_dropped = not keep.any()
        local = torch.from_numpy(b.local[keep]).to(self.device)
        if cfg.mining != "none" and len(local):
            mined = mine_negatives(
                emb,
                local[:, 0],
                local[:, 1],
                local[:, 2],
                b.labels,
                torch.from_numpy(neg_ok).to(self.device),
                cfg.mining,
            )
            local = torch.cat([local[:, :2], mined.unsqueeze(1), local[:, 3:]], dim=1)
        metric = _tuple_loss(self.kind, emb, local, cfg) if len(local) else emb.sum() * 0.0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.net.logits_from_embeddings(emb if cfg.ce_weight > 0 else emb.detach())
        logits = logits.float()
        ce_rows = (
            np.arange(len(b.rows))
            if all_dropped or cfg.ce_on == "all"
            else np.unique(b.local[keep])
        )
        if excluded[
            ce_rows
        ].all():  # nothing but suspects left: train the head on the batch as given
            ce_rows = np.arange(len(b.rows))
        ce = self._cross_entropy(
            logits, b, ce_rows[~excluded[ce_rows]] if (~excluded[ce_rows]).any() else ce_rows
        )
        loss = metric + (cfg.ce_weight if cfg.ce_weight > 0 else 1.0) * ce
        _check_finite(loss, step)
        acc = (logits.argmax(1) == b.labels).float().mean().item()
        row = {
            "n_tuples": t,
            "n_images": len(b.rows),
            "n_kept": int(keep.sum()),
            "share_dropped": float(1 - keep.mean()),
            "share_too_far": float(too_far.mean()),
            "share_too_close": float(too_close.mean()),
            "share_suspect": float(suspect.mean()),
            "images_excluded": int(excluded.sum()),
            "all_dropped": bool(all_dropped),
            "metric_loss": float(metric.item()),
            "ce_loss": float(ce.item()),
            "train_accuracy": acc,
            **info,
        }
        drops = np.stack([np.ones(t, np.int64), too_far, too_close, suspect], 1).astype(np.int64)
        return loss, row, drops, batch_suspicion

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        if len(self.val_rows) == 0:
            return {}
        _, probs = embed_and_classify(
            self.net,
            self.store,
            self.val_rows,
            self.data_config,
            device=self.device,
            batch_size=self.cfg.eval_batch_size,
            amp=self.amp,
        )
        y = self.label_codes[self.val_rows]
        m = classification_metrics(y, probs.argmax(1), self.data.classes)
        val_loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
        return {
            "val_loss": val_loss,
            "val_accuracy": m["accuracy"],
            "val_macro_f1": m["macro_f1"],
            "_metrics": m,
        }


def bf16_cpu_hazard(net: nn.Module, data_config: dict[str, Any]) -> str | None:
    """Why bfloat16 autocast must stay off on the CPU for ``net`` at its input size, or None.

    oneDNN's bfloat16 weight gradient of a strided convolution whose input is 1 pixel high
    or wide is garbage (huge or NaN values; torch 2.14, measured against float32): a
    ResNet at 16 px reaches its last stage at 1x1. One forward pass with hooks finds such
    a convolution."""
    hits: list[str] = []
    hooks = [
        m.register_forward_pre_hook(
            lambda mod, inp, name=name: (
                hits.append(name)
                if any(inp[0].shape[-2 + i] == 1 and mod.stride[i] > 1 for i in (0, 1))
                else None
            )
        )
        for name, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    was_training = net.training
    try:
        net.eval()
        param = next(net.parameters())
        with torch.no_grad():
            net(torch.zeros((2, *[int(v) for v in data_config["input_size"]]), device=param.device))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    if not hits:
        return None
    side = data_config["input_size"][-1]
    return (
        f"float32: --amp is off because at {side} px the strided convolution {hits[0]} sees 1-pixel maps, "
        "where bfloat16 weight gradients on the CPU are wrong (oneDNN); a larger --input-size allows it"
    )


# ----------------------------------------------------------------------------- finetune


def finetune(
    source: str | Path,
    out: str | Path,
    config: FinetuneConfig | None = None,
    *,
    restart: bool = False,
    force: bool = False,
    progress: TrainProgress | None = None,
) -> FinetuneResult:
    """Fine-tune an embedding network on the tuples of ``source`` and write the run to ``out``.

    ``source`` is a build-tuples folder or a screen output folder (its ``kept.parquet``
    is used). When ``out`` holds a checkpoint of the same settings and tuples the run
    resumes from it (``restart=True`` discards it). ``progress(phase, done, total,
    info)`` is called while images are decoded (``"decode"``), after each training step
    (``"train"``, with the step's metrics) and after each validation (``"val"``); an
    exception raised there (Ctrl-C) saves a checkpoint first; Ctrl-C in the middle of a
    step saves the state before that step (the BatchNorm statistics its forward pass
    moved are restored), so a resumed run equals an uninterrupted one bit for bit.

    ``out`` follows :mod:`curate.outdir`: new, empty, or a run of ``curate finetune``;
    a run with other settings is replaced only with ``force`` (its checkpoints too).
    Checkpoints carry the sha256 of their files and are checked before resuming.

    Writes ``model.safetensors``, ``config.json``, ``metrics.parquet`` (one row per step,
    ``phase`` = ``train``, and one per epoch, ``phase`` = ``val``), ``tuple_drops.parquet``
    (per tuple: times seen and dropped by each sub-boundary), ``evaluation.json``,
    ``report.html`` and ``run.json``.

    Under ``torchrun`` (:mod:`curate.train.data_parallel`) every rank runs this function on
    its shard of each batch; ``progress`` is called on every rank; rank 0 claims and
    writes the run, the other ranks return a result with ``is_main`` false.
    """
    started = time.time()
    asked = cfg = config or FinetuneConfig()
    cfg.check()
    cfg = cfg.resolved()  # auto settings as --mining has them
    given = cfg
    cfg = replace(cfg, weights=path_setting(cfg.weights))
    data = load_training_data(source, val_split=cfg.val_split)
    if cfg.face_screen is not None:
        data = without_face_rejects(data, cfg.face_screen, classify=cfg.face_rejects == "classify")
    if cfg.suspect_prior is not None:
        auto = asked.suspect_prior == AUTO  # the --face-screen folder, if it has a label screen
        prior = suspect_prior(data, cfg.suspect_prior, required=not auto)
        if prior is not None:
            data = replace(data, extra={**data.extra, "suspect_prior": prior})
        else:  # nor the cap that came with it
            cfg = replace(cfg, suspect_prior=None, suspect_class_cap=asked.suspect_class_cap)
            given = replace(given, suspect_prior=None, suspect_class_cap=asked.suspect_class_cap)
            data.extra.setdefault("notes", []).append(
                f"--face-screen {cfg.face_screen} holds no label screen, so no --suspect-prior "
                "ranks the suspects with it (screen with the label screen on to add it)"
            )
    framing, decided_by = resolve_framing(
        cfg.framing,
        cfg.face_screen,
        data.images.loc[np.unique(data.tuples[data.members].to_numpy()), "path"]
        .astype(str)
        .tolist(),
    )
    cfg, given = replace(cfg, framing=framing), replace(given, framing=framing)
    if decided_by is not None:
        data.extra["framing_why"] = AUTO_WHY[decided_by]
    kind = cfg.kind or data.kind
    if kind == "quadruplet" and data.kind != "quadruplet":
        raise CurateError(
            f"--kind quadruplet needs quadruplets, but {data.tuples_file} holds triplets",
            hint="build tuples with --kind quadruplet, or train with --kind triplet",
        )
    if kind == "quadruplet" and cfg.mining == "batch-hard":
        if cfg.kind == "quadruplet":
            raise CurateError(
                "--kind quadruplet trains on pre-sampled tuples; --mining batch-hard (the "
                "default) mines triplets in every batch",
                hint="pass --mining none (or hard, semihard) to train the quadruplet loss",
            )
        cfg = replace(cfg, kind="triplet")
        data.extra["notes"] = [
            f"{data.tuples_file.name} holds quadruplets, but batch-hard mining trains triplets: "
            "each batch image with its hardest positive and negative (the tuples' images are "
            "the pool); pass --mining none to train the quadruplet loss on the tuples"
        ]
    par, device = from_env(resolve_device(cfg.device))  # torchrun: this rank and its device
    if not par.is_main:  # the other ranks write nothing; they resume from rank 0's checkpoints
        return _train(
            _Unclaimed(Path(os.path.abspath(Path(out).expanduser()))),
            cfg,
            given,
            data,
            device,
            source,
            restart,
            progress,
            started,
            par,
        )
    weights_run = cfg.weights if cfg.weights is not None and is_run_dir(cfg.weights) else None
    with claim_folder(
        out,
        "finetune",
        settings=run_settings(cfg, source),
        force=force,
        inputs=[source, data.build_dir, weights_run],
        owned=RUN_OUTPUTS,
        owned_dirs=(CKPT_DIR,),
        scratch=(CKPT_DIR,),
    ) as claim:
        return _train(claim, cfg, given, data, device, source, restart, progress, started, par)


@dataclass
class _Unclaimed:
    """The run folder as a torchrun rank other than 0 sees it: read, never written."""

    path: Path
    note: str | None = None


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise CurateError(
            f"the loss became {loss.item()} at step {step}",
            hint="lower --lr, or check the images for extreme values",
        )


def _margin_triplet_loss(
    emb: torch.Tensor, kept: np.ndarray, pair_margins: np.ndarray, labels: np.ndarray
) -> torch.Tensor:
    """The triplet loss of the ``kept`` mined triplets (``[t, 3]`` local rows), each with
    the margin of its anchor's and negative's class pair."""
    m = torch.as_tensor(
        pair_margins[labels[kept[:, 0]], labels[kept[:, 2]]], dtype=emb.dtype, device=emb.device
    )
    rows = torch.from_numpy(kept).to(emb.device)
    return triplet_loss_margins(emb, rows[:, 0], rows[:, 1], rows[:, 2], m)


def _train(
    claim: Claim | _Unclaimed,
    cfg: FinetuneConfig,
    given: FinetuneConfig,
    data: TrainingData,
    device: torch.device,
    source: str | Path,
    restart: bool,
    progress: TrainProgress | None,
    started: float,
    par: Parallel = SINGLE,
) -> FinetuneResult:
    run = claim.path
    notes: list[str] = [claim.note] if claim.note else []
    notes += data.extra.get("notes", [])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the random parts of the network's initialisation
        net, data_config, pretrained_from, backbone = init_network(cfg, data.classes, notes)
    if backbone != cfg.backbone:
        cfg = replace(cfg, backbone=backbone)
        given = replace(given, backbone=backbone)

    # every image the run touches, decoded once
    images = RunImages.of(data, whole_pool=cfg.mining == "batch-hard")
    decode_cb = (lambda ph, d, t: progress(ph, d, t, {})) if progress else None
    paths = data.images.loc[images.ids, "path"].astype(str).tolist()
    boxes = None
    if cfg.framing == "face":
        sha = data.images.loc[images.ids, "sha256"] if "sha256" in data.images else None
        boxes = face_boxes(
            paths,
            None if sha is None else sha.tolist(),
            progress=(lambda d, t: progress("faces", d, t, {})) if progress else None,
        )
        unframed = sum(b is None for b in boxes)
        why = data.extra.get("framing_why", "--framing face")
        notes.append(
            f"framing: the network saw the faces cut out around their landmarks ({why})"
            + (f"; {unframed} image(s) without landmarks whole" if unframed else "")
        )
    store = ImageStore(
        paths,
        data_config,
        max_bytes=int(cfg.preload_max_gb * 1024**3),
        workers=cfg.workers,
        progress=decode_cb,
        colour=cfg.augment and cfg.augment_kind == "photos",
        boxes=boxes,
    )
    net = _place_network(net, device, par)
    trainer = _Trainer(
        cfg,
        data,
        net,
        data_config,
        store,
        images.member_rows,
        images.label_codes,
        images.val_rows,
        device,
        par,
        prior=_prior_rows(data, images.ids),
    )
    n_batches = _set_up_sampling(trainer, images)
    total = (
        cfg.epochs * n_batches
        if cfg.max_steps is None
        else min(cfg.max_steps, cfg.epochs * n_batches)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, cfg.warmup_share))
    fingerprint = _fingerprint(cfg, data)
    fresh = TrainState.new(
        len(images.member_rows), math.ceil(total / n_batches), len(images.ids), len(data.classes)
    )
    loaded = _resume(
        run,
        trainer,
        opt,
        sched,
        fresh,
        total,
        restart,
        (fingerprint, _fingerprint(given, data, build_dir=data.build_dir_as_given)),
    )
    resumed_from = loaded.step if loaded else 0
    state = loaded or fresh

    if cfg.amp and not trainer.amp:
        notes.append(trainer.precision)
    loop = _Loop(run, trainer, opt, sched, state, fingerprint, n_batches, total, progress, notes)
    last_val = loop.run()
    if not par.is_main or isinstance(claim, _Unclaimed):
        return FinetuneResult(
            run_dir=run,
            metrics=pd.DataFrame(state.rows),
            final={},
            config={},
            run={},
            resumed_from_step=resumed_from,
            notes=notes,
            is_main=False,
        )
    if not last_val and len(images.val_rows):
        last_val = trainer.validate()
    return _finish(
        claim,
        cfg,
        data,
        net,
        data_config,
        pretrained_from,
        state,
        last_val,
        started,
        resumed_from,
        notes,
        source,
        images.ids,
        trainer.precision,
    )


@dataclass
class RunImages:
    """Every image a run touches (the tuples' members, the images the face screen kept and
    the validation images) as rows of one store: ``ids`` sorted; ``member_rows`` the tuples'
    members as store rows (``[n_tuples, members]``); ``label_codes`` per store row;
    ``val_rows`` the validation images' rows, in their order; ``pool_rows`` the training
    images batch-hard mining draws from: with ``whole_pool``, every member of the training
    tuples the face screen kept (``face_screen_kept_ids`` of :func:`without_face_rejects`,
    also those whose every tuple held a rejected image; with ``--face-rejects classify`` the
    rejected ones too), else every member of the tuples (training on the tuples themselves
    needs no other image)."""

    ids: np.ndarray
    members: np.ndarray
    member_rows: np.ndarray
    label_codes: np.ndarray
    val_rows: np.ndarray
    pool_rows: np.ndarray

    @classmethod
    def of(cls, data: TrainingData, *, whole_pool: bool = True) -> RunImages:
        members = data.tuples[data.members].to_numpy(dtype=np.int64)
        kept = data.extra.get("face_screen_kept_ids") if whole_pool else None
        extra_ids = np.zeros(0, np.int64) if kept is None else np.asarray(kept, np.int64)
        ids = np.unique(
            np.concatenate(
                [
                    members.ravel(),
                    extra_ids,
                    data.val_images["image_id"].to_numpy(dtype=np.int64),
                ]
            )
        )
        pos = {int(i): r for r, i in enumerate(ids)}
        member_rows = (
            np.vectorize(pos.__getitem__, otypes=[np.int64])(members) if members.size else members
        )
        val_rows = np.array([pos[int(i)] for i in data.val_images["image_id"]], dtype=np.int64)
        pool_rows = (
            np.unique(member_rows) if kept is None else np.searchsorted(ids, np.unique(extra_ids))
        )
        return cls(ids, members, member_rows, class_codes(data, ids), val_rows, pool_rows)


def _place_network(net: EmbeddingNet, device: torch.device, par: Parallel) -> EmbeddingNet:
    """The network on ``device`` (channels-last on CUDA; synchronised BatchNorm and rank 0's
    weights under torchrun)."""
    if par.enabled:
        net = cast(
            EmbeddingNet, sync_batchnorm(net)
        )  # statistics of the global batch, as in one process
    net = net.to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    par.broadcast_from_main(net)
    return net


def _set_up_sampling(trainer: _Trainer, images: RunImages) -> int:
    """Soft targets (``soft_label_prefix``) and, for batch-hard mining, the class-balanced
    sampler and the pool it draws from (face-rejected images left out); the steps per epoch."""
    cfg, data, ids = trainer.cfg, trainer.data, images.ids
    if cfg.soft_label_prefix is not None:
        train_ids = ids[np.isin(ids, images.members)]
        trainer.soft_targets = torch.zeros((len(ids), len(data.classes)))
        trainer.soft_targets[np.searchsorted(ids, train_ids)] = torch.from_numpy(
            soft_targets(data, train_ids, cfg.soft_label_prefix)
        )
    n_batches = len(epoch_batches(len(images.members), cfg.batch_tuples, cfg.seed, 0))
    if cfg.mining == "batch-hard":
        pool = images.pool_rows
        trainer.sampler = ClassBalancedSampler(
            images.label_codes[pool],
            cfg.classes_per_batch,
            cfg.images_per_class,
            cfg.seed,
            cfg.steps_per_epoch,
        )
        trainer.pool = pool
        trainer.metric_out = np.isin(ids, data.extra.get("face_classify_only_ids", []))
        data.extra["training_images"] = int(len(pool))  # what batch-hard mining draws from
        n_batches = trainer.sampler.steps_per_epoch
    return n_batches


def _resume(
    run: Path,
    trainer: _Trainer,
    opt: torch.optim.Optimizer,
    sched: Any,
    fresh: TrainState,
    total: int,
    restart: bool,
    fingerprints: tuple[str, ...],
) -> TrainState | None:
    """The checkpoint's state loaded into the network, optimiser, scheduler, screen and
    margins, or None (no checkpoint, or ``restart``: rank 0 clears the checkpoints)."""
    par = trainer.par
    if restart and par.is_main and (run / CKPT_DIR).exists():
        for f in (run / CKPT_DIR).iterdir():
            f.unlink()
    par.barrier()  # rank 0 has claimed the folder (and cleared it): every rank reads the same checkpoint
    if restart:
        return None
    # a checkpoint of an earlier curate keyed the paths as they were typed (the second fingerprint)
    return load_checkpoint(
        run, trainer.net, opt, sched, trainer.screen, fingerprints, fresh, total, trainer.margins
    )


class _Loop:
    """The training loop: steps until ``total``, a validation at each epoch's end, a
    checkpoint at each epoch's end and every ``checkpoint_every`` steps. An exception
    outside the optimiser's update saves a checkpoint of the last completed step first."""

    def __init__(
        self,
        run: Path,
        trainer: _Trainer,
        opt: torch.optim.Optimizer,
        sched: Any,
        state: TrainState,
        fingerprint: str,
        n_batches: int,
        total: int,
        progress: TrainProgress | None,
        notes: list[str],
    ) -> None:
        self.run_dir, self.trainer, self.opt, self.sched, self.state = (
            run,
            trainer,
            opt,
            sched,
            state,
        )
        self.fingerprint, self.n_batches, self.total = fingerprint, n_batches, total
        self.progress, self.notes = progress, notes
        self.cfg, self.par = trainer.cfg, trainer.par
        self.in_update = False
        self.before_step: dict[str, torch.Tensor] | None = (
            None  # buffers before the step now in its forward pass
        )
        self.saved_step = state.step
        self.last_val: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        """Train to the end; the last validation's metrics ({} when none ran)."""
        trainer, state = self.trainer, self.state
        try:
            if (
                self.par.is_main
                and val_row_missing(state, self.n_batches, self.total)
                and len(trainer.val_rows)
            ):
                self.last_val = _validate(
                    trainer,
                    state,
                    (state.step - 1) // self.n_batches,
                    self.n_batches,
                    self.total,
                    self.progress,
                )
            trainer.net.train()
            while state.step < self.total:
                epoch = state.step // self.n_batches
                self.step()
                self.end_step(epoch)
        except BaseException:
            if not self.in_update and state.step > self.saved_step and self.par.is_main:
                self.save_interrupted()
            raise
        return self.last_val

    def step(self) -> None:
        """One optimisation step: its batch, loss and update, its drops and suspicion in the
        state, its metrics row."""
        trainer, state, cfg = self.trainer, self.state, self.cfg
        epoch, in_epoch = divmod(state.step, self.n_batches)
        tic = time.perf_counter()
        self.before_step = copy_buffers(trainer.net)
        if trainer.sampler is not None:  # batch-hard mining: P x K images, no pre-sampled tuples
            b = trainer.image_batch(
                trainer.pool[trainer.sampler.epoch(epoch)[in_epoch]], state.step
            )
            loss, row, mined, susp = trainer.mined_step(b, state.step, state.suspicion)
            batches, drops = None, None
        else:
            batches = epoch_batches(len(trainer.member_rows), cfg.batch_tuples, cfg.seed, epoch)
            b = trainer.batch(batches[in_epoch], state.step)
            loss, row, drops, susp = trainer.step(b, state.step, state.suspicion)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.par.average_gradients(trainer.params)
        self.in_update = True
        self.opt.step()
        self.sched.step()
        if cfg.screen_every_step:
            trainer.screen.commit_pending()
        if trainer.margins is not None:
            trainer.margins.commit_pending()
        if batches is not None and drops is not None:
            np.add.at(state.drops, batches[in_epoch], drops)
            state.epoch_drops[epoch, batches[in_epoch]] = (
                TOO_FAR * drops[:, 1] + TOO_CLOSE * drops[:, 2] + SUSPECT * drops[:, 3]
            ).astype(np.uint8)
        else:
            state.mined = np.concatenate([state.mined, mined])
        if susp is not None:
            seen = np.isfinite(susp)
            np.add.at(state.suspicion, (b.rows[seen], 0), susp[seen])
            np.add.at(state.suspicion, (b.rows[seen], 1), 1.0)
        row.update(
            {
                "phase": "train",
                "epoch": epoch,
                "step": state.step,
                "loss": float(loss.item()),
                "lr": float(self.opt.param_groups[0]["lr"]),
                "images_per_s": len(b.rows) / max(time.perf_counter() - tic, 1e-9),
            }
        )
        if row["all_dropped"]:
            self.notes.append(
                f"step {state.step}: the boundary dropped every tuple; "
                "trained on the classification loss only"
            )
        state.rows.append(row)
        state.step += 1
        self.before_step = None
        self.in_update = False
        if self.progress is not None:
            self.progress("train", state.step, self.total, row)

    def end_step(self, epoch: int) -> None:
        """After a step: at an epoch's end the margins and the validation; the checkpoint."""
        trainer, state = self.trainer, self.state
        end_of_epoch = state.step % self.n_batches == 0 or state.step == self.total
        if end_of_epoch and trainer.margins is not None:
            state.margins[epoch] = trainer.margins.margins
        if end_of_epoch and self.par.is_main:
            self.last_val = _validate(
                trainer, state, epoch, self.n_batches, self.total, self.progress
            )
        if end_of_epoch or (
            self.cfg.checkpoint_every and state.step % self.cfg.checkpoint_every == 0
        ):
            if self.par.is_main:
                self.save()
            self.saved_step = state.step

    def save(self) -> None:
        trainer = self.trainer
        save_checkpoint(
            self.run_dir,
            trainer.net,
            self.opt,
            self.sched,
            trainer.screen,
            self.state,
            self.fingerprint,
            trainer.margins,
        )

    def save_interrupted(self) -> None:
        """The checkpoint of an interrupted run: the state before the step in progress."""
        if (
            self.before_step is not None
        ):  # the interrupted forward pass moved the BatchNorm statistics
            restore_buffers(self.trainer.net, self.before_step)
        self.trainer.screen.discard_pending()
        if self.trainer.margins is not None:
            self.trainer.margins.discard_pending()
        self.save()


def _validate(
    trainer: _Trainer,
    state: TrainState,
    epoch: int,
    n_batches: int,
    total: int,
    progress: TrainProgress | None,
) -> dict[str, Any]:
    """The end-of-epoch validation, its row added to the metrics."""
    last_val = trainer.validate()
    if last_val:
        vrow = {
            "phase": "val",
            "epoch": epoch,
            "step": state.step - 1,
            **{k: v for k, v in last_val.items() if not k.startswith("_")},
        }
        state.rows.append(vrow)
        if progress is not None:
            progress("val", epoch + 1, math.ceil(total / n_batches), vrow)
    return last_val


def _finish(
    claim: Claim,
    cfg: FinetuneConfig,
    data: TrainingData,
    net: EmbeddingNet,
    data_config: dict[str, Any],
    pretrained_from: str | None,
    state: TrainState,
    last_val: dict[str, Any],
    started: float,
    resumed_from: int,
    notes: list[str],
    source: str | Path,
    ids: np.ndarray,
    precision: str = "float32",
) -> FinetuneResult:
    from curate.train.report import write_report

    run = claim.path
    config = run_config(
        net,
        backbone=str(cfg.backbone),
        classes=data.classes,
        in_chans=int(data_config["input_size"][0]),
        data_config=data_config,
        pretrained_from=pretrained_from,
        extra={
            "kind": cfg.kind or data.kind,
            "seed": cfg.seed,
            "framing": framing_record(cfg.framing),
        },
    )
    save_run(net, run, config)
    metrics = pd.DataFrame(state.rows)
    write_parquet(metrics, run / "metrics.parquet")
    tuple_ids = (
        data.tuples["tuple_id"].to_numpy()
        if "tuple_id" in data.tuples
        else np.arange(len(data.tuples))
    )
    drops = pd.DataFrame(
        {"tuple_id": tuple_ids, **{c: state.drops[:, i] for i, c in enumerate(DROP_COLUMNS)}}
    )
    write_parquet(drops, run / "tuple_drops.parquet")
    write_parquet(
        epoch_drop_table(state.epoch_drops, tuple_ids), run / "tuple_drops_by_epoch.parquet"
    )
    if cfg.mining == "batch-hard":
        write_parquet(
            mined_triplet_table(state.mined, ids, state.rows, data), run / "mined_triplets.parquet"
        )
        write_parquet(
            pd.DataFrame(
                [
                    r
                    for e in range(len(state.margins))
                    if np.isfinite(state.margins[e]).all()
                    for r in margin_table(state.margins[e], data.classes, e)
                ],
                columns=["epoch", "anchor_class", "negative_class", "margin"],
            ),
            run / "class_pair_margins.parquet",
        )
    prior = _prior_rows(data, ids)
    if (cfg.screen_every_step and cfg.null in CLASS_NULLS) or cfg.suspect_score in MINED_SCORES:
        write_parquet(
            image_suspicion_table(state.suspicion, ids, data, cfg, prior),
            run / "image_suspicion.parquet",
        )
    suppressed = final_suspects(state.suspicion, cfg, class_codes(data, ids), prior)
    final = last_val.get("_metrics", {})
    write_json(final, run / "evaluation.json")
    train = metrics[metrics["phase"] == "train"] if len(metrics) else metrics
    counts = {
        "tuples": len(data.tuples),
        "training_images": data.extra.get("training_images"),
        "steps": int(state.step),
        "classes": len(data.classes),
        "val_images": len(data.val_images),
        "mean_share_dropped": float(train["share_dropped"].mean()) if len(train) else None,
        "steps_all_dropped": int(train["all_dropped"].sum()) if len(train) else 0,
        "images_excluded": int(suppressed.sum()),
        "face_rejected_images": data.extra.get("face_rejected_images"),
        "left_out_by_label": _left_out_by_label(data, ids, suppressed),
        "mined_triplets": int(len(state.mined)) if cfg.mining == "batch-hard" else None,
        "val_accuracy": final.get("accuracy"),
        "val_macro_f1": final.get("macro_f1"),
    }
    params = {
        **asdict(cfg),
        "source": str(Path(source).resolve()),
        "build_dir": str(data.build_dir),
        "kind": cfg.kind or data.kind,
        "resolved_data_config": data_config,
    }
    record = run_record(
        "finetune",
        params,
        inputs={"tuples_file": str(data.tuples_file), "pretrained_from": pretrained_from},
        counts=counts,
        started=started,
    )
    record["resumed_from_step"] = resumed_from
    record["precision"] = precision
    record["notes"] = notes[:20]
    write_report(run, metrics=metrics, final=final, config=config, record=record)
    claim.finish(record)  # last: the run is complete
    return FinetuneResult(
        run_dir=run,
        metrics=metrics,
        final=final,
        config=config,
        run=record,
        resumed_from_step=resumed_from,
        notes=notes,
    )


# ----------------------------------------------------------------------------- batch-hard outputs


def _screen_verdicts(screen_dir: str | Path, option: str, hint: str) -> pd.DataFrame:
    """``images_suspect.parquet`` of the `curate screen` folder ``screen_dir`` that ``option``
    (``--face-screen``, ``--suspect-prior``) names; a clear error where there is none."""
    f = Path(screen_dir).expanduser() / "images_suspect.parquet"
    if not f.is_file():
        raise CurateError(f"{option} {screen_dir}: {f.name} not found", hint=hint)
    return read_parquet(f, what="screen image verdicts")


def without_face_rejects(
    data: TrainingData, screen_dir: str | Path, *, classify: bool = False
) -> TrainingData:
    """The first stage: ``data`` without the images whose face screens (large head pose,
    occlusion, no face) rejected them in the ``curate screen`` folder ``screen_dir``
    (``images_suspect.parquet``, matched by path); tuples holding one are left out too.
    ``extra`` records ``face_rejected_ids`` and ``face_rejected_images`` (the rejected
    training images: a rejected validation image stays in validation) and
    ``face_screen_kept_ids``: every member of the training tuples not rejected, those whose
    every tuple held a rejected image included (batch-hard mining draws from them all).

    With ``classify`` (``--face-rejects classify``, batch-hard mining) the rejected members
    stay in the pool: ``face_screen_kept_ids`` holds every member, and
    ``face_classify_only_ids`` the rejected ones, which the batches keep for the
    classification loss and mining keeps out of every triplet."""
    hint = "pass the --out folder of a `curate screen` run with the face screens on"
    sus = _screen_verdicts(screen_dir, "--face-screen", hint)
    if "face_reject" not in sus.columns:
        raise CurateError(
            f"--face-screen {screen_dir}: that screen ran no face screens (no face_reject column)",
            hint=hint,
        )
    bad_paths = set(sus.loc[sus["face_reject"].fillna(False).astype(bool), "path"].astype(str))
    bad = data.images.index[data.images["path"].astype(str).isin(bad_paths)].to_numpy(np.int64)
    members = data.tuples[data.members].to_numpy(np.int64)
    keep = ~np.isin(members, bad).any(axis=1)
    passed = np.setdiff1d(np.unique(members), bad)  # batch-hard mining draws from all of them
    if not keep.any():
        raise CurateError(
            f"--face-screen {screen_dir} rejects an image of every training tuple", hint=hint
        )
    every = np.unique(members)
    rejected = np.intersect1d(every, bad)  # training images: not the validation split's
    return replace(
        data,
        tuples=data.tuples[keep].reset_index(drop=True),
        extra={
            **data.extra,
            "face_rejected_ids": rejected,
            "face_rejected_images": int(len(rejected)),
            "face_screen_kept_ids": every if classify else passed,
            **({"face_classify_only_ids": rejected} if classify else {}),
        },
    )


def suspect_prior(
    data: TrainingData, screen_dir: str | Path, *, required: bool = True
) -> pd.Series | None:
    """``--suspect-prior``: the label suspicion (``suspicion`` of ``images_suspect.parquet``)
    that the `curate screen` folder ``screen_dir`` gave the training images, matched by path,
    indexed by image_id (images it did not score are absent). A screen whose label screen did
    not run is an error, or ``None`` when not ``required`` (the default prior, the
    ``--face-screen`` folder)."""
    hint = "pass the --out folder of a `curate screen` run over the same images (label screen on)"
    sus = _screen_verdicts(screen_dir, "--suspect-prior", hint)
    if "suspicion" not in sus.columns or not sus["suspicion"].notna().any():
        if not required:
            return None
        raise CurateError(
            f"--suspect-prior {screen_dir}: that screen scored no label suspicion", hint=hint
        )
    by_path = sus.dropna(subset=["suspicion"]).drop_duplicates("path").set_index("path")
    paths = data.images["path"].astype(str)
    prior = paths.map(by_path["suspicion"].astype(np.float64)).dropna()
    if prior.empty:
        raise CurateError(
            f"--suspect-prior {screen_dir}: none of its images is a training image", hint=hint
        )
    return prior


def _left_out_by_label(
    data: TrainingData, ids: np.ndarray, suppressed: np.ndarray
) -> list[dict[str, Any]]:
    """``counts["left_out_by_label"]``: :func:`~curate.train.suspicion.left_out_by_label`
    over the training images before the face screen (the tuples' members, the images
    batch-hard mining draws from and the face screen's rejects), ``suppressed`` given per
    store row (``ids``)."""
    rejected = np.asarray(data.extra.get("face_rejected_ids", []), np.int64)
    train = np.unique(
        np.concatenate(
            [
                data.tuples[data.members].to_numpy(np.int64).ravel(),
                np.asarray(data.extra.get("face_screen_kept_ids", []), np.int64),
                rejected,
            ]
        )
    )
    left_out = pd.Series(suppressed, index=ids).reindex(train, fill_value=False)
    return left_out_by_label(
        data.images.loc[train, "label"].astype(str).to_numpy(),
        face_rejected=np.isin(train, rejected),
        suppressed=left_out.to_numpy(bool),
    ).to_dict("records")


def _prior_rows(data: TrainingData, ids: np.ndarray) -> np.ndarray | None:
    """The ``--suspect-prior`` of each store row (``nan``: not scored), or None without one."""
    prior = data.extra.get("suspect_prior")
    return None if prior is None else prior.reindex(ids).to_numpy(np.float64)


def mined_triplet_table(
    mined: np.ndarray, ids: np.ndarray, rows: list[dict[str, Any]], data: TrainingData
) -> pd.DataFrame:
    """``mined_triplets.parquet``: one row per mined triplet of every step (``rows``: the
    run's metrics rows, which give each step's epoch)."""
    epoch_of = {int(r["step"]): int(r["epoch"]) for r in rows if r.get("phase") == "train"}
    step = mined[:, 0]
    labels = data.images["label"].astype(str)
    anchor, positive, negative = (ids[mined[:, i]] for i in (1, 2, 3))
    bits = mined[:, 4]
    return pd.DataFrame(
        {
            "epoch": np.array([epoch_of.get(int(v), -1) for v in step], np.int64),
            "step": step,
            "anchor": anchor,
            "positive": positive,
            "negative": negative,
            "anchor_label": labels.loc[anchor].to_numpy(),
            "negative_label": labels.loc[negative].to_numpy(),
            "positive_too_far": (bits & TOO_FAR) > 0,
            "negative_too_close": (bits & TOO_CLOSE) > 0,
            "suppressed": (bits & SUSPECT) > 0,
            "kept": bits == 0,
        }
    )


# ----------------------------------------------------------------------------- image suspicion


def soft_targets(data: TrainingData, ids: np.ndarray, prefix: str) -> np.ndarray:
    """``[len(ids), K]`` float32 targets of the classification loss: the images' ``<prefix><class>``
    columns of ``images.parquet`` (for example annotator votes), each row divided by its sum.
    Missing columns, negative or non-numeric values and all-zero rows are a :class:`CurateError`."""
    cols = [f"{prefix}{c}" for c in data.classes]
    missing = [c for c in cols if c not in data.images.columns]
    if missing:
        raise CurateError(
            f"--soft-label-prefix {prefix!r}: {data.build_dir / 'images.parquet'} lacks the columns "
            f"{missing} (one per class: {cols})",
            hint="add them to the manifest given to `curate build-tuples`, or drop --soft-label-prefix",
        )
    table = data.images.loc[ids, cols].apply(pd.to_numeric, errors="coerce")
    values = table.to_numpy(np.float64)
    sums = values.sum(axis=1)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | ~(sums > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CurateError(
            f"soft labels of {int(bad.sum())} training image(s) are not non-negative numbers with a "
            f"positive sum, e.g. image_id {int(ids[i])} {data.images.loc[ids[i], 'path']}: "
            f"{dict(zip(cols, table.iloc[i].tolist(), strict=True))}",
            hint=f"fix the {prefix}* columns of the manifest, or drop --soft-label-prefix",
        )
    return (values / sums[:, None]).astype(np.float32)


def epoch_drop_table(epoch_drops: np.ndarray, tuple_ids: np.ndarray) -> pd.DataFrame:
    """``tuple_drops_by_epoch.parquet``: one row per epoch and dropped tuple."""
    epoch, row = np.nonzero(epoch_drops)
    bits = epoch_drops[epoch, row]
    return pd.DataFrame(
        {
            "epoch": epoch.astype(np.int64),
            "tuple_id": tuple_ids[row],
            "positive_too_far": (bits & TOO_FAR) > 0,
            "negative_too_close": (bits & TOO_CLOSE) > 0,
            "suspect_member": (bits & SUSPECT) > 0,
        }
    )
