"""Settings of ``curate finetune``: :class:`FinetuneConfig` and the in-loop boundary's
:class:`ScreenSettings`.

Free of torch, so the command line reads its defaults from here without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from curate.errors import CurateError
from curate.stats import statistical as st
from curate.stats.statistical import CLASS_NULLS

NULLS = (*st.NULLS, *CLASS_NULLS)  # global nulls, then the class-aware ones of ``curate screen``

KINDS = ("triplet", "quadruplet")
MINING = ("none", "hard", "semihard", "batch-hard")  # none/hard/semihard: pre-sampled tuples
NO_PRIOR = "none"  # --suspect-prior none: no prior, also with --face-screen
PRIOR_CLASS_CAP = 0.5  # --suspect-class-cap where the --face-screen folder is the prior by default
FACE_REJECTS = ("drop", "classify")  # --face-rejects: what --face-screen does with its rejects
MARGIN_MODES = ("global", "class-pair", "ordered-pair")  # curate.train.margins
AUTO = (
    "auto"  # margin_mode / suspect_score: the value of the --mining mode (FinetuneConfig.resolved)
)
# What the settings left at auto (None for the switches) become, by --mining: batch-hard takes
# the setting that won on real FER2013 noise (bench/experiments/experiment_real_noise.py, arm
# full_suppress_head_pos); the pre-sampled tuple modes keep their earlier defaults.
AUTO_BATCH_HARD: dict[str, Any] = {
    "margin_mode": "class-pair",
    "exclude_suspects": True,
    "suspect_score": "head",
    "screen_negatives": False,
}
AUTO_TUPLES: dict[str, Any] = {
    "margin_mode": "global",
    "exclude_suspects": False,
    "suspect_score": "posterior",
    "screen_negatives": True,
}
# finetune's defaults before batch-hard mining with outlier suppression became the default
# (issue 25): pass them to train as an earlier curate did by default (the benches that measured
# with them, the tests written for them)
EARLIER_DEFAULTS: dict[str, Any] = {
    **AUTO_TUPLES,
    "mining": "none",
    "null": "effective",
    "suspect_min_visits": 3,
    "suspect_per_class": True,
    "framing": "full",  # whole pictures, as every run before --framing
}
CE_ON = ("kept", "all")
SUSPECT_SCORES = (
    "posterior",
    "margin",
    "head",
    "rank",
)  # what --exclude-suspects ranks (train.mining: batch_margins, head_margins, rank_average)
MINED_SCORES = ("margin", "head", "rank")  # the scores measured in the P x K batches
AUGMENT_KINDS = ("light", "photos")  # curate.train.data.AUGMENTS
# Logits are computed from unit-length embeddings multiplied by this factor (NormFace,
# Wang et al. 2017): with unit features a plain linear layer starts with tiny logits and
# learns slowly. Stored in config.json as ``logit_scale``.
DEFAULT_LOGIT_SCALE = 16.0


@dataclass(frozen=True)
class ScreenSettings:
    """The boundary options of ``curate screen``, applied at every step."""

    alpha_pos: float = 0.05
    alpha_neg: float = 0.05
    null: str = "effective"
    center: bool = True
    window: int = 2048  # recent embeddings the boundary is fitted to
    warmup_steps: int = 0  # steps trained on every tuple before screening starts
    negatives: bool = True  # the negative sub-boundary drops tuples too (off: the positive only)

    def check(self) -> None:
        """Raise a :class:`CurateError` for options out of range."""
        if self.null not in NULLS:
            raise CurateError(
                f"unknown null {self.null!r}", hint=f"use --null one of {', '.join(NULLS)}"
            )
        st.thresholds(1.0, 1.0, self.alpha_pos, self.alpha_neg)  # validates the alphas
        if self.window < 2:
            raise CurateError(f"--screen-window must be at least 2, got {self.window}")


_SCREEN = ScreenSettings()


@dataclass
class FinetuneConfig:
    """Settings of ``curate finetune`` (unset means the default shown)."""

    backbone: str | None = None  # None: the bundled default model (then weights must be None)
    weights: str | None = (
        None  # None: the backbone's pretrained weights; "none": random; a file or a RUN
    )
    in_chans: int | None = None  # None: from the weights, else 3
    input_size: int | None = None  # None: the backbone's input size
    embed_dim: int = 128
    scale: float = 1.0
    logit_scale: float = DEFAULT_LOGIT_SCALE  # logits = linear(unit embedding * logit_scale)
    kind: str | None = None  # None: from the tuples
    margin: float = 0.2
    margin2: float = 0.1
    ce_weight: float = 1.0
    ce_on: str = "kept"  # "kept": images of kept tuples; "all": every image of the batch
    soft_label_prefix: str | None = (
        None  # images.parquet columns <prefix><class>: soft targets of the CE
    )
    mining: str = "batch-hard"  # P x K class-balanced batches, hardest triplets (train.mining);
    # none / hard / semihard: the pre-sampled tuples of the build
    classes_per_batch: int = 4  # batch-hard: P
    images_per_class: int = 24  # batch-hard: K
    steps_per_epoch: int | None = None  # batch-hard: None = ceil(training images / (P * K))
    margin_mode: str = AUTO  # global, class-pair or ordered-pair (train.margins); auto: AUTO_*
    metric_weight: float = 1.0  # weight of the tuple loss (0: classification only)
    face_screen: str | None = (
        None  # a `curate screen` folder: its face-rejected images are left out first
    )
    face_rejects: str = AUTO  # ... drop, or classify: kept for the classification loss only;
    # auto: classify with batch-hard mining, else drop
    framing: str = AUTO  # face (cut out around the landmarks), full, or auto: as the
    # --face-screen folder's backbone saw them, else as the pictures ask (curate.train.framing)
    screen_every_step: bool = True
    alpha_pos: float = _SCREEN.alpha_pos
    alpha_neg: float = _SCREEN.alpha_neg
    screen_negatives: bool | None = None  # off: only too-far positives drop tuples; None: AUTO_*
    null: str = "class_empirical"
    center: bool = _SCREEN.center
    screen_window: int = _SCREEN.window
    screen_warmup_steps: int = _SCREEN.warmup_steps
    exclude_suspects: bool | None = None  # leave out the images whose label stays most suspect
    # (None: AUTO_*): ...
    suspect_share: float = 0.2  # ... this share of the images screened at least suspect_min_visits
    suspect_min_visits: int = 1  # ... times, ranked by their mean suspicion score
    suspect_per_class: bool = False  # ... over all images (True: within each label)
    suspect_class_cap: float | None = None  # ... none of a label's images past this share
    suspect_score: str = AUTO  # ... posterior (1 - p(label | x)), or batch-hard: margin, head, rank
    suspect_prior: str | None = (
        AUTO  # a `curate screen` folder: its label suspicion, rank-averaged with the score;
        # auto: the --face-screen folder under batch-hard suppression (then PRIOR_CLASS_CAP);
        # None ("none"): no prior
    )
    epochs: int = 10
    max_steps: int | None = None
    batch_tuples: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_share: float = 0.05
    augment: bool = True
    augment_kind: str = (
        "light"  # "light", or "photos": stronger zoom/shift, colour jitter before grey
    )
    seed: int = 0
    val_split: str | None = "val"
    reset_head: bool = False
    device: str = "auto"
    amp: bool = True
    workers: int = 4
    preload_max_gb: float = 4.0
    checkpoint_every: int = 200
    eval_batch_size: int = 256

    def resolved(self) -> FinetuneConfig:
        """These settings with the ones left at auto (``None`` for the switches) set from
        :data:`AUTO_BATCH_HARD` or :data:`AUTO_TUPLES` by ``mining``."""
        auto = AUTO_BATCH_HARD if self.mining == "batch-hard" else AUTO_TUPLES
        unset = {k: v for k, v in auto.items() if getattr(self, k) in (None, AUTO)}
        out = replace(self, **unset) if unset else self
        if out.face_rejects == AUTO:  # the eighth round's winning arm keeps them for the head
            classify = out.face_screen is not None and out.mining == "batch-hard"
            out = replace(out, face_rejects="classify" if classify else "drop")
        if out.suspect_prior in (AUTO, NO_PRIOR):
            # the winning arm of the eighth round: the face screen's `curate screen` folder also
            # ranks the suspects, and no label loses more than PRIOR_CLASS_CAP of its images
            prior = (
                out.face_screen
                if out.suspect_prior == AUTO
                and out.face_screen is not None
                and out.mining == "batch-hard"
                and out.exclude_suspects
                and out.suspect_score in MINED_SCORES
                and not out.suspect_per_class
                else None
            )
            cap = out.suspect_class_cap
            if prior is not None and cap is None:
                cap = PRIOR_CLASS_CAP
            out = replace(out, suspect_prior=prior, suspect_class_cap=cap)
        return out

    def check(self) -> None:
        """Raise a :class:`CurateError` for settings out of range."""
        if self.resolved() is not self:
            self.resolved().check()
            return
        check_numbers(self)
        if self.kind is not None and self.kind not in KINDS:
            raise CurateError(f"unknown --kind {self.kind!r}", hint="use triplet or quadruplet")
        if self.mining not in MINING:
            raise CurateError(
                f"unknown --mining {self.mining!r}", hint=f"use one of {', '.join(MINING)}"
            )
        if self.margin_mode not in MARGIN_MODES:
            raise CurateError(
                f"unknown --margin-mode {self.margin_mode!r}",
                hint=f"use one of {', '.join(MARGIN_MODES)} or {AUTO}",
            )
        if self.margin_mode != "global" and self.mining != "batch-hard":
            raise CurateError(
                f"--margin-mode {self.margin_mode} needs --mining batch-hard",
                hint="pass --mining batch-hard, or --margin-mode global",
            )
        if self.mining == "batch-hard":
            if self.classes_per_batch < 2 or self.images_per_class < 2:
                raise CurateError(
                    "--classes-per-batch and --images-per-class must be at least 2",
                    hint="use for example --classes-per-batch 4 --images-per-class 24",
                )
            if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
                raise CurateError(
                    f"--steps-per-epoch must be at least 1, got {self.steps_per_epoch}"
                )
        if self.metric_weight < 0:
            raise CurateError(f"--metric-weight must not be negative, got {self.metric_weight}")
        if self.soft_label_prefix is not None and not self.soft_label_prefix.strip():
            raise CurateError(
                "--soft-label-prefix must not be empty",
                hint="for example --soft-label-prefix soft_",
            )
        if self.augment_kind not in AUGMENT_KINDS:
            raise CurateError(
                f"unknown --augment-kind {self.augment_kind!r}",
                hint=f"use one of {', '.join(AUGMENT_KINDS)}",
            )
        if self.ce_on not in CE_ON:
            raise CurateError(f"unknown --ce-on {self.ce_on!r}", hint="use kept or all")
        for name in ("epochs", "batch_tuples", "embed_dim"):
            if getattr(self, name) < 1:
                raise CurateError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if self.batch_tuples < 2:
            raise CurateError("--batch-tuples must be at least 2")
        if not (self.scale > 0 and self.lr > 0 and self.logit_scale > 0 and self.ce_weight >= 0):
            raise CurateError(
                "--scale, --logit-scale and --lr must be positive and --ce-weight not negative"
            )
        self.screen_settings().check()
        if self.suspect_score not in SUSPECT_SCORES:
            raise CurateError(
                f"unknown --suspect-score {self.suspect_score!r}",
                hint=f"use one of {', '.join(SUSPECT_SCORES)} or {AUTO}",
            )
        if self.suspect_score in MINED_SCORES and self.mining != "batch-hard":
            raise CurateError(
                f"--suspect-score {self.suspect_score} needs --mining batch-hard (it is measured "
                "in the P x K batches)",
                hint="pass --mining batch-hard, or --suspect-score posterior",
            )
        if self.face_rejects not in FACE_REJECTS:
            raise CurateError(
                f"unknown --face-rejects {self.face_rejects!r}",
                hint=f"use one of {', '.join(FACE_REJECTS)} or {AUTO}",
            )
        from curate.train.framing import check_framing  # here: importing config stays cheap

        check_framing(self.framing)
        if self.face_rejects == "classify" and (
            self.face_screen is None or self.mining != "batch-hard"
        ):
            raise CurateError(
                "--face-rejects classify keeps the --face-screen rejects in the batch-hard "
                "batches for the classification loss",
                hint="pass --face-screen SCREEN with --mining batch-hard, or drop --face-rejects",
            )
        if self.suspect_prior is not None and not (
            self.exclude_suspects and self.suspect_score in MINED_SCORES
        ):
            raise CurateError(
                "--suspect-prior ranks the suspects of --exclude-suspects with a batch-hard "
                f"--suspect-score ({', '.join(MINED_SCORES)})",
                hint="pass --mining batch-hard --exclude-suspects --suspect-score head, or drop "
                "--suspect-prior",
            )
        if self.exclude_suspects:
            if self.suspect_score == "posterior" and (
                not self.screen_every_step or self.null not in CLASS_NULLS
            ):
                raise CurateError(
                    "--exclude-suspects needs the in-loop screen with a class-aware null "
                    f"(--screen-every-step --null {CLASS_NULLS[-1]}), got "
                    f"{'--no-screen-every-step' if not self.screen_every_step else '--null ' + self.null}",
                    hint=f"pass --null {' or '.join(CLASS_NULLS)}, or drop --exclude-suspects",
                )
            if not 0 < self.suspect_share < 1:
                raise CurateError(
                    f"--suspect-share must be strictly between 0 and 1, got {self.suspect_share}",
                    hint="use for example --suspect-share 0.2 (about the share of wrong labels you expect)",
                )
            if self.suspect_class_cap is not None:
                if not 0 < self.suspect_class_cap <= 1:
                    raise CurateError(
                        f"--suspect-class-cap must be in (0, 1], got {self.suspect_class_cap}",
                        hint="use for example --suspect-class-cap 0.5 (at most half of any label left out)",
                    )
                if self.suspect_per_class:
                    raise CurateError(
                        "--suspect-class-cap caps a rank over all images; --suspect-per-class "
                        "already leaves out --suspect-share of every label",
                        hint="drop one of --suspect-class-cap and --suspect-per-class",
                    )
            if self.suspect_min_visits < 1:
                raise CurateError(
                    f"--suspect-min-visits must be at least 1, got {self.suspect_min_visits}"
                )

    def screen_settings(self) -> ScreenSettings:
        """The in-loop boundary options."""
        return ScreenSettings(
            alpha_pos=self.alpha_pos,
            alpha_neg=self.alpha_neg,
            null=self.null,
            center=self.center,
            window=self.screen_window,
            warmup_steps=self.screen_warmup_steps,
            negatives=bool(self.resolved().screen_negatives),
        )


def check_numbers(cfg: FinetuneConfig) -> None:
    """Type, range and resource checks of the numeric settings (:mod:`curate.limits`): a
    fraction where a whole number is needed, NaN, a negative count, a seed out of range
    or an input size whose batches would not fit in memory is a :class:`CurateError`."""
    from curate.limits import check_batch_memory, real_number, seed_value, whole_number
    from curate.runs import MAX_EMBED_DIM, MAX_INPUT_SIDE, MAX_SCALE

    seed_value(cfg.seed)
    whole_number(cfg.epochs, "--epochs", lo=1)
    whole_number(cfg.batch_tuples, "--batch-tuples", lo=2, hi=1 << 16)
    whole_number(cfg.embed_dim, "--embed-dim", lo=1, hi=MAX_EMBED_DIM)
    whole_number(cfg.workers, "--workers", lo=0)
    whole_number(cfg.checkpoint_every, "--checkpoint-every", lo=0)  # 0: at epoch ends only
    whole_number(cfg.eval_batch_size, "--eval-batch-size", lo=1, hi=1 << 16)
    if cfg.max_steps is not None:
        whole_number(cfg.max_steps, "--max-steps", lo=1)
    if cfg.in_chans is not None:
        whole_number(cfg.in_chans, "--in-chans", lo=1, hi=16)
    for name in ("lr", "scale", "logit_scale"):
        real_number(
            getattr(cfg, name),
            "--" + name.replace("_", "-"),
            lo=0,
            lo_open=True,
            hi=MAX_SCALE if name != "lr" else 10.0,
        )
    real_number(
        cfg.weight_decay,
        "--weight-decay",
        lo=0,
        hi=10.0,
        hint="pass for example --weight-decay 1e-4",
    )
    real_number(cfg.ce_weight, "--ce-weight", lo=0)
    real_number(cfg.margin, "--margin", lo=0)
    real_number(cfg.margin2, "--margin2", lo=0)
    real_number(cfg.warmup_share, "--warmup-share", lo=0, hi=1)
    real_number(cfg.preload_max_gb, "--preload-max-gb", lo=0)
    if cfg.input_size is not None:
        side = whole_number(
            cfg.input_size,
            "--input-size",
            lo=8,
            hi=MAX_INPUT_SIDE,
            hint=f"pass --input-size N with N from 8 to {MAX_INPUT_SIDE} pixels (48 for FER2013)",
        )
        images = cfg.batch_tuples * 4
        check_batch_memory(
            images,
            side,
            f"--input-size {side} with --batch-tuples {cfg.batch_tuples} "
            f"({images:,} images a step)",
            hint="lower --input-size or --batch-tuples",
        )


# ----------------------------------------------------------------------------- the command line
# `curate finetune`'s options, in the order its --help lists them: one per field named here, with
# its help line (the flag is `--` + the name with dashes; the type and the default are the
# field's; curate/cli/finetune.py builds the options from them). The fields not named here
# (warmup_share, workers, eval_batch_size) keep their defaults on the command line.
CLI_HELP: dict[str, str] = {
    "backbone": "timm model name (default: the bundled model).",
    "weights": "'none' (random), a weights file, a fine-tuning RUN folder, or a model name that `curate models` lists; default: timm's cached pretrained weights.",
    "in_chans": "Input channels: 1 for grayscale, 3 for RGB (default: the weights', else 3).",
    "input_size": "Square input side in pixels, e.g. 48 (default: the backbone's).",
    "embed_dim": "Dimension of the embedding layer.",
    "scale": "Modulus s of the embeddings.",
    "logit_scale": "Class logits = linear layer on the unit embedding times this factor.",
    "kind": "Loss: triplet or quadruplet (default: the tuples' kind).",
    "margin": "Margin of the anchor-positive vs anchor-negative term.",
    "margin2": "Quadruplet: margin of the anchor-positive vs negative-negative2 term.",
    "ce_weight": "Weight of the classification loss on the embedding (0: head trained on detached embeddings).",
    "ce_on": "Images the classification loss uses: those of kept tuples, or all.",
    "soft_label_prefix": "Soft targets of the classification loss from the manifest columns PREFIX<class> (e.g. annotator votes; each row is normalised); tuples still use the label.",
    "mining": "none/hard/semihard: pre-sampled tuples (hard, semihard: in-batch negative mining among images that pass the negative sub-boundary); batch-hard: class-balanced batches of --classes-per-batch x --images-per-class images, each image's hardest positive and negative, the boundary on the mined triplets.",
    "classes_per_batch": "Batch-hard: classes per batch (P).",
    "images_per_class": "Batch-hard: images per class per batch (K).",
    "steps_per_epoch": "Batch-hard: steps per epoch (default: training images / (P x K)).",
    "margin_mode": "Batch-hard: global (one --margin), class-pair (one per pair of classes) or ordered-pair (one per anchor class and negative class), adapted from the class-pair distance nulls; auto: class-pair with --mining batch-hard, else global.",
    "metric_weight": "Weight of the triplet/quadruplet loss (0: classification only).",
    "face_screen": "A `curate screen` folder with the face screens on: the images they rejected (large head pose, occlusion, no face) are left out before training (see --face-rejects).",
    "face_rejects": "With --face-screen: drop (leave the rejected images out of training) or classify (with --mining batch-hard: keep them in the batches and the classification loss, but out of every mined triplet, as anchor, positive or negative; the network still sees turned and covered faces, the metric loss does not); auto (the default): classify with --mining batch-hard, else drop.",
    "framing": "face: the network sees each face cut out around its landmarks (the face analysis, cached), as curate screen's backbone does where faces fill only part of the picture; full: whole pictures; auto (the default): as the --face-screen folder's backbone saw them, or without one where the training pictures' faces fill only part of the frame (as curate screen decides). The run records it, and curate evaluate and predict frame the same way.",
    "screen_every_step": "Apply the statistical boundary to every batch.",
    "alpha_pos": "Significance level of the positive sub-boundary.",
    "alpha_neg": "Significance level of the negative sub-boundary.",
    "screen_negatives": "The negative sub-boundary drops tuples too; --no-screen-negatives: only too-far positives do. Default: off with --mining batch-hard (on real noise it dropped clean hard negatives as often as any), else on.",
    "null": "class_empirical / class: one null per class and class pair (as curate screen); theory (d), effective (participation ratio) or empirical: one global null.",
    "center": "Centre embeddings on the window mean before the boundary.",
    "screen_window": "Recent embeddings the in-loop boundary is fitted to (at least the batch's images: a larger batch is fitted on its own).",
    "screen_warmup_steps": "Steps on every tuple before in-loop screening starts.",
    "exclude_suspects": "Leave the images whose label stays most suspect out of both losses (image_suspicion.parquet lists them); needs a class-aware null, or a batch-hard --suspect-score. With --mining batch-hard they leave mining too (multistage outlier suppression). Default: on with --mining batch-hard, else off.",
    "suspect_share": "With --exclude-suspects: share of the screened images left out, most suspect first (about the share of wrong labels you expect).",
    "suspect_min_visits": "With --exclude-suspects: screened visits before an image can be left out.",
    "suspect_per_class": "With --exclude-suspects: rank within each label, so --suspect-share of every class (a global rank can leave out whole hard classes).",
    "suspect_class_cap": "With --exclude-suspects, ranked over all images: leave out at most this share of any label's screened images (the rank over all images can otherwise take most of a noisy class, and the network stops predicting it). Default: 0.5 where --suspect-prior is the --face-screen folder by default, else no cap.",
    "suspect_score": "With --exclude-suspects: what is ranked: posterior (1 - p(label | x) against the in-loop window; needs a class-aware --null); with --mining batch-hard also margin (how much closer the image sits to another label than to its own in the batch), head (the classification head's best other logit minus its label's: AUM, negated) or rank (the mean of those two's ranks in the batch); auto: head with --mining batch-hard, else posterior.",
    "suspect_prior": "With --exclude-suspects and a batch-hard --suspect-score: a `curate screen` folder whose label screen scored these images (images_suspect.parquet, matched by path); each image is ranked by the mean of two percentile ranks, its running score's and its label suspicion there (a prior from a network that, ideally, has not seen these labels). Images the screen did not score take its median. auto (the default): the --face-screen folder, where it holds a label screen, with --suspect-class-cap 0.5 unless given (pass --suspect-class-cap 1 for no cap); none: no prior.",
    "epochs": "Passes over the tuples.",
    "max_steps": "Stop after this many steps.",
    "batch_tuples": "Tuples per batch (their unique images are forwarded once).",
    "lr": "Peak learning rate (AdamW, warm-up then cosine).",
    "weight_decay": "AdamW weight decay.",
    "augment": "Flip, small rotation/scale/shift, brightness/contrast (saturation for RGB).",
    "augment_kind": "light; or photos: for colour photos and looser framing (zoom 0.75-1.2, shift 10 %, rotation 15 degrees, stronger brightness/contrast, saturation and hue jitter before the grey conversion).",
    "seed": "Seed: same seed and input, same run (bit for bit on CPU).",
    "val_split": "Split of images.parquet measured after each epoch ('none' to skip).",
    "reset_head": "Train a new classification head even when --weights RUN has the tuples' classes (with other classes a new head is always trained, with a note).",
    "device": "auto, cpu, cuda or cuda:N.",
    "amp": "bfloat16 autocast on CUDA, and on CPUs with native bfloat16 (AVX-512 BF16, AMX, Arm BF16; off with a note elsewhere); run.json records the precision.",
    "checkpoint_every": "Steps between checkpoints (also at each epoch end).",
    "preload_max_gb": "Decode all images into memory when they fit this size.",
}
