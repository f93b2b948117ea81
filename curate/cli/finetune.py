"""``curate finetune``, ``curate evaluate`` and ``curate predict``: thin wrappers over :mod:`curate.train`."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from curate.cli._app import FORCE_HELP, app, console, err_console, handles_errors, renamed, safe
from curate.cli._choices import KindOpt, NullOpt
from curate.cli._progress import stage_bars
from curate.errors import CurateError
from curate.train.config import FinetuneConfig

D = FinetuneConfig()  # every option's default is the library's


class MiningOpt(str, Enum):
    none = "none"
    hard = "hard"
    semihard = "semihard"
    batch_hard = "batch-hard"


class MarginMode(str, Enum):
    auto = "auto"
    global_ = "global"
    class_pair = "class-pair"
    ordered_pair = "ordered-pair"


class AugmentKind(str, Enum):
    light = "light"
    photos = "photos"


class CeOn(str, Enum):
    kept = "kept"
    all = "all"


@app.command("finetune", short_help="Fine-tune on tuples, screening every batch.")
@handles_errors
def finetune_cmd(
    tuples: Annotated[
        Path,
        typer.Argument(
            metavar="TUPLES",
            help="build-tuples folder, or screen output folder (its kept.parquet is used).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Run folder: model.safetensors, config.json, metrics, report."
        ),
    ],
    backbone: Annotated[
        str | None, typer.Option(help="timm model name (default: the bundled model).")
    ] = D.backbone,
    weights: Annotated[
        str | None,
        typer.Option(
            help="'none' (random), a weights file, a fine-tuning RUN folder, or a model name that `curate models` lists; default: timm's cached pretrained weights."
        ),
    ] = D.weights,
    in_chans: Annotated[
        int | None,
        typer.Option(
            help="Input channels: 1 for grayscale, 3 for RGB (default: the weights', else 3)."
        ),
    ] = D.in_chans,
    input_size: Annotated[
        int | None,
        typer.Option(help="Square input side in pixels, e.g. 48 (default: the backbone's)."),
    ] = D.input_size,
    embed_dim: Annotated[int, typer.Option(help="Dimension of the embedding layer.")] = D.embed_dim,
    scale: Annotated[float, typer.Option(help="Modulus s of the embeddings.")] = D.scale,
    logit_scale: Annotated[
        float,
        typer.Option(help="Class logits = linear layer on the unit embedding times this factor."),
    ] = D.logit_scale,
    kind: Annotated[
        KindOpt | None,
        typer.Option(help="Loss: triplet or quadruplet (default: the tuples' kind)."),
    ] = None if D.kind is None else KindOpt(D.kind),
    margin: Annotated[
        float, typer.Option(help="Margin of the anchor-positive vs anchor-negative term.")
    ] = D.margin,
    margin2: Annotated[
        float,
        typer.Option(help="Quadruplet: margin of the anchor-positive vs negative-negative2 term."),
    ] = D.margin2,
    ce_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the classification loss on the embedding (0: head trained on detached embeddings)."
        ),
    ] = D.ce_weight,
    ce_on: Annotated[
        CeOn,
        typer.Option(help="Images the classification loss uses: those of kept tuples, or all."),
    ] = CeOn(D.ce_on),
    soft_label_prefix: Annotated[
        str | None,
        typer.Option(
            help="Soft targets of the classification loss from the manifest columns PREFIX<class> (e.g. annotator votes; each row is normalised); tuples still use the label."
        ),
    ] = D.soft_label_prefix,
    mining: Annotated[
        MiningOpt,
        typer.Option(
            help="none/hard/semihard: pre-sampled tuples (hard, semihard: in-batch negative mining among images that pass the negative sub-boundary); batch-hard: class-balanced batches of --classes-per-batch x --images-per-class images, each image's hardest positive and negative, the boundary on the mined triplets."
        ),
    ] = MiningOpt(D.mining),
    classes_per_batch: Annotated[
        int, typer.Option(help="Batch-hard: classes per batch (P).")
    ] = D.classes_per_batch,
    images_per_class: Annotated[
        int, typer.Option(help="Batch-hard: images per class per batch (K).")
    ] = D.images_per_class,
    steps_per_epoch: Annotated[
        int | None,
        typer.Option(help="Batch-hard: steps per epoch (default: training images / (P x K))."),
    ] = D.steps_per_epoch,
    margin_mode: Annotated[
        MarginMode,
        typer.Option(
            help="Batch-hard: global (one --margin), class-pair (one per pair of classes) or ordered-pair (one per anchor class and negative class), adapted from the class-pair distance nulls; auto: class-pair with --mining batch-hard, else global."
        ),
    ] = MarginMode(D.margin_mode),
    metric_weight: Annotated[
        float, typer.Option(help="Weight of the triplet/quadruplet loss (0: classification only).")
    ] = D.metric_weight,
    face_screen: Annotated[
        str | None,
        typer.Option(
            help="A `curate screen` folder with the face screens on: the images they rejected (large head pose, occlusion, no face) are left out before training."
        ),
    ] = D.face_screen,
    screen_every_step: Annotated[
        bool, typer.Option(help="Apply the statistical boundary to every batch.")
    ] = D.screen_every_step,
    alpha_pos: Annotated[
        float, typer.Option(help="Significance level of the positive sub-boundary.")
    ] = D.alpha_pos,
    alpha_neg: Annotated[
        float, typer.Option(help="Significance level of the negative sub-boundary.")
    ] = D.alpha_neg,
    screen_negatives: Annotated[
        bool | None,
        typer.Option(
            help="The negative sub-boundary drops tuples too; --no-screen-negatives: only too-far positives do. Default: off with --mining batch-hard (on real noise it dropped clean hard negatives as often as any), else on."
        ),
    ] = D.screen_negatives,
    null: Annotated[
        NullOpt,
        typer.Option(
            help="class_empirical / class: one null per class and class pair (as curate screen); theory (d), effective (participation ratio) or empirical: one global null."
        ),
    ] = NullOpt(D.null),
    center: Annotated[
        bool, typer.Option(help="Centre embeddings on the window mean before the boundary.")
    ] = D.center,
    screen_window: Annotated[
        int, typer.Option(help="Recent embeddings the in-loop boundary is fitted to.")
    ] = D.screen_window,
    screen_warmup_steps: Annotated[
        int, typer.Option(help="Steps on every tuple before in-loop screening starts.")
    ] = D.screen_warmup_steps,
    exclude_suspects: Annotated[
        bool | None,
        typer.Option(
            help="Leave the images whose label stays most suspect out of both losses (image_suspicion.parquet lists them); needs a class-aware null, or a batch-hard --suspect-score. With --mining batch-hard they leave mining too (multistage outlier suppression). Default: on with --mining batch-hard, else off."
        ),
    ] = D.exclude_suspects,
    suspect_share: Annotated[
        float,
        typer.Option(
            help="With --exclude-suspects: share of the screened images left out, most suspect first (about the share of wrong labels you expect)."
        ),
    ] = D.suspect_share,
    suspect_min_visits: Annotated[
        int,
        typer.Option(
            help="With --exclude-suspects: screened visits before an image can be left out."
        ),
    ] = D.suspect_min_visits,
    suspect_per_class: Annotated[
        bool,
        typer.Option(
            help="With --exclude-suspects: rank within each label, so --suspect-share of every class (a global rank can leave out whole hard classes)."
        ),
    ] = D.suspect_per_class,
    suspect_score: Annotated[
        str,
        typer.Option(
            help="With --exclude-suspects: what is ranked: posterior (1 - p(label | x) against the in-loop window; needs a class-aware --null); with --mining batch-hard also margin (how much closer the image sits to another label than to its own in the batch), head (the classification head's best other logit minus its label's: AUM, negated) or rank (the mean of those two's ranks in the batch); auto: head with --mining batch-hard, else posterior."
        ),
    ] = D.suspect_score,
    epochs: Annotated[int, typer.Option(help="Passes over the tuples.")] = D.epochs,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps.")
    ] = D.max_steps,
    batch_tuples: Annotated[
        int, typer.Option(help="Tuples per batch (their unique images are forwarded once).")
    ] = D.batch_tuples,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")
    ] = D.lr,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = D.weight_decay,
    augment: Annotated[
        bool,
        typer.Option(
            help="Flip, small rotation/scale/shift, brightness/contrast (saturation for RGB)."
        ),
    ] = D.augment,
    augment_kind: Annotated[
        AugmentKind,
        typer.Option(
            help="light; or photos: for colour photos and looser framing (zoom 0.75-1.2, shift 10 %, rotation 15 degrees, stronger brightness/contrast, saturation and hue jitter before the grey conversion)."
        ),
    ] = AugmentKind(D.augment_kind),
    seed: Annotated[
        int, typer.Option(help="Seed: same seed and input, same run (bit for bit on CPU).")
    ] = D.seed,
    val_split: Annotated[
        str,
        typer.Option(help="Split of images.parquet measured after each epoch ('none' to skip)."),
    ] = D.val_split or "none",
    reset_head: Annotated[
        bool,
        typer.Option(
            help="Train a new classification head even when --weights RUN has the tuples' classes (with other classes a new head is always trained, with a note)."
        ),
    ] = D.reset_head,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = D.device,
    amp: Annotated[
        bool,
        typer.Option(
            help="bfloat16 autocast on CUDA, and on CPUs with native bfloat16 (AVX-512 BF16, AMX, Arm BF16; off with a note elsewhere); run.json records the precision."
        ),
    ] = D.amp,
    checkpoint_every: Annotated[
        int, typer.Option(help="Steps between checkpoints (also at each epoch end).")
    ] = D.checkpoint_every,
    preload_max_gb: Annotated[
        float, typer.Option(help="Decode all images into memory when they fit this size.")
    ] = D.preload_max_gb,
    restart: Annotated[
        bool, typer.Option(help="Discard a checkpoint in --out instead of resuming from it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help=FORCE_HELP + " Its checkpoints are discarded.")
    ] = False,
) -> None:
    """Fine-tune an embedding network on tuples, screening every batch with the statistical boundary.

    On several GPUs (or CPU processes): torchrun --nproc-per-node N -m curate finetune ...
    (each process forwards its share of every batch; same result as one process).
    """
    from curate.train.loop import finetune

    cfg = finetune_config(**{k: v for k, v in locals().items() if k in _CONFIG_FIELDS})
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 draws bars and reports
    bar_ctx = (
        stage_bars({"decode": "decoding images", "train": "training", "val": "epochs"})
        if main
        else contextlib.nullcontext(None)
    )
    try:
        with bar_ctx as bars:
            result = finetune(
                tuples, out, cfg, restart=restart, force=force, progress=_train_progress(bars)
            )
    except KeyboardInterrupt:
        err_console.print(
            f"[red]interrupted[/]: the last completed step is checkpointed in {safe(str(out))}; "
            "run the same command again to resume"
        )
        raise typer.Exit(code=130) from None
    _render_finetune(result)


_CONFIG_FIELDS = frozenset(f.name for f in fields(FinetuneConfig))


def finetune_config(**options: Any) -> FinetuneConfig:
    """The :class:`FinetuneConfig` of ``curate finetune``'s options (each named as its
    field): choices as their values, ``--val-split none`` as None."""
    values = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
    if isinstance(values.get("val_split"), str) and values["val_split"].lower() == "none":
        values["val_split"] = None
    return FinetuneConfig(**values)


def _train_progress(bars: Any) -> Callable[[str, int, int, dict[str, Any]], None]:
    """The progress callback of :func:`curate.train.loop.finetune`: the decode, train and
    val bars (``bars`` None: on a torchrun rank other than 0, nothing)."""

    def progress(phase: str, done: int, total: int, info: dict[str, Any]) -> None:
        if bars is None:
            return
        text = None  # decoding: the rate
        if phase == "train":
            text = (
                f"loss {info['loss']:.3f}  kept {1 - info['share_dropped']:.0%}  "
                f"{info['images_per_s']:,.0f} img/s"
            )
        elif phase == "val":
            text = f"val acc {info.get('val_accuracy', float('nan')):.3f}  F1 {info.get('val_macro_f1', float('nan')):.3f}"
        bars.update(phase, done, total, text)

    return progress


def _render_finetune(result: Any) -> None:
    if not result.is_main:  # torchrun: rank 0 reports
        return
    counts = result.run["counts"]
    for note in result.notes:
        if not note.startswith("step "):  # the folder replaced, a new head, --amp off on this CPU
            console.print(f"[yellow]note:[/] {safe(note)}")
    console.print(f"precision: {safe(str(result.run.get('precision', 'float32')))}")
    if result.resumed_from_step:
        console.print(f"resumed from step {result.resumed_from_step}")
    if counts.get("steps_all_dropped"):
        console.print(
            f"[yellow]{counts['steps_all_dropped']} step(s) dropped every tuple and trained on the "
            "classification loss only[/]"
        )
    table = Table(title=f"finetune: {safe(str(result.run_dir))}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in (
        "tuples",
        "steps",
        "mean_share_dropped",
        "val_images",
        "val_accuracy",
        "val_macro_f1",
    ):
        v = counts.get(key)
        table.add_row(
            key.replace("_", " "),
            "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)),
        )
    console.print(table)
    if not result.config.get("pretrained_from"):
        console.print("[bold red]the network started from random weights[/]")
    console.print(f"report: {safe(str(result.run_dir / 'report.html'))}")


@app.command(
    "evaluate",
    short_help="Accuracy, macro F1 and confusion matrix of a run.",
    context_settings={"allow_extra_args": True},
)  # the FILE of --json FILE (_earlier_json_file)
@handles_errors
def evaluate_cmd(
    ctx: typer.Context,
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="Fine-tuning run folder, or a model name that `curate models` lists (fer_resnet10t).",
        ),
    ],
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="Labelled images: class-per-folder, CSV/Parquet manifest, or build-tuples folder.",
        ),
    ],
    split: Annotated[str | None, typer.Option(help="Only images of this split (e.g. val).")] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print the metrics as JSON on stdout instead of the tables."),
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out-file", metavar="FILE", help="Also write the metrics as JSON to this file."
        ),
    ] = None,
    skip_unknown_classes: Annotated[
        bool, typer.Option(help="Leave out images of classes the run was not trained on.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing --out-file that is not curate's "
            "metrics (an input is never replaced).",
        ),
    ] = False,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="bfloat16 autocast (faster; on the CPU only where it has native bfloat16). Default: on CUDA only, float32 on the CPU.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Accuracy, per-class accuracy, macro F1 and confusion matrix of a run on a labelled split."""
    from curate.io import write_json
    from curate.outdir import check_output_file
    from curate.train.evaluate import DUPLICATES_SKIPPED, evaluate

    json_out, out_file = _earlier_json_file(ctx.args, json_out, out_file)
    if out_file is not None:  # checked before the work, so a bad --out-file fails fast
        out_file = check_output_file(
            out_file,
            option="--out-file",
            what="the metrics",
            inputs=[run, source],
            force=force,
            ours=_is_metrics_json,
        )

    result = evaluate(
        run,
        source,
        split=split,
        device=device,
        batch_size=batch_size,
        skip_unknown_classes=skip_unknown_classes,
        amp=amp,
    )
    data = result.to_dict()
    if out_file is not None:
        write_json(data, out_file)
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    m = result.metrics
    table = Table(
        title=f"{safe(str(run))} on {safe(str(source))}" + (f" ({safe(split)})" if split else "")
    )
    for col in ("class", "images", "accuracy", "precision", "F1"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for r in m["per_class"]:
        table.add_row(
            safe(r["class"]), str(r["n"]), _f(r["accuracy"]), _f(r["precision"]), _f(r["f1"])
        )
    table.add_section()
    table.add_row(
        "[bold]all[/]",
        str(m["n_images"]),
        f"[bold]{_f(m['accuracy'])}[/]",
        "",
        f"[bold]{_f(m['macro_f1'])}[/] (macro)",
    )
    console.print(table)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for c in m["classes"]:
        cm.add_column(safe(c[:8]), justify="right")
    for c, row in zip(m["classes"], m["confusion"], strict=True):
        cm.add_row(safe(c), *map(str, row))
    console.print(cm)
    for k, v in result.skipped.items():
        if k == DUPLICATES_SKIPPED:
            console.print(
                f"[yellow]left out {v:,} duplicate(s): byte-identical copies (or repeated "
                "manifest rows) of images that were evaluated once[/]"
            )
        else:
            console.print(f"[yellow]skipped {v:,} image(s): {safe(k)}[/]")


def _earlier_json_file(
    extra: list[str], json_out: bool, out_file: Path | None
) -> tuple[bool, Path | None]:
    """``--json`` and ``--out-file`` as given, reading ``RUN SOURCE --json FILE``, the earlier
    spelling of ``--out-file FILE`` (``--json`` is a flag now, as in ``curate predict``), with
    a warning: FILE arrives as the one extra argument (``-``: print, as ``--json``)."""
    if not extra:
        return json_out, out_file
    if not json_out or len(extra) > 1:
        raise CurateError(
            f"unexpected argument(s): {' '.join(extra)}",
            hint="curate evaluate takes RUN and SOURCE (see curate evaluate --help)",
        )
    if extra == ["-"]:
        return True, out_file
    return False, renamed(
        out_file,
        Path(extra[0]),
        new_flag="--out-file",
        old_flag="--json FILE",
        command="evaluate",
        why="--json alone prints the metrics as JSON",
    )


def _is_metrics_json(path: Path) -> bool:
    """Whether ``path`` holds metrics an earlier ``curate evaluate --out-file`` wrote."""
    from curate.io import read_json_file

    data = read_json_file(path, what="metrics", hint="", max_bytes=64 * 2**20)
    return isinstance(data, dict) and {"run", "source", "accuracy", "confusion"} <= data.keys()


def _f(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


@app.command("predict", short_help="Predicted expression and probabilities per image.")
@handles_errors
def predict_cmd(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="Fine-tuning run folder, or a model name that `curate models` lists (fer_resnet10t).",
        ),
    ],
    images: Annotated[
        list[str],
        typer.Argument(metavar="IMAGE", help="Image files, folders (recursive) or glob patterns."),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON records instead of a table.")
    ] = False,
    faces: Annotated[
        bool, typer.Option(help="Add the face-screen columns (pose, occlusion, verdict).")
    ] = False,
    top: Annotated[
        int, typer.Option(min=1, help="Class probabilities shown per image in the table.")
    ] = 3,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="bfloat16 autocast (faster; on the CPU only where it has native bfloat16). Default: on CUDA only, float32 on the CPU.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Predicted expression and class probabilities for each image."""
    from curate.train.evaluate import predict

    table = predict(run, images, device=device, batch_size=batch_size, faces=faces, amp=amp)
    if json_out:
        typer.echo(table.to_json(orient="records", indent=2))
        return
    prob_cols = [c for c in table.columns if c.startswith("p_")]
    paths = [str(p) for p in table["path"]]
    base = _common_folder(paths)
    where = f" (paths under {base}{os.sep})" if base else ""
    out = Table(
        title=f"predictions of {safe(str(run))}{safe(where)}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    # paths fold onto more lines rather than being cut, so rows stay distinguishable
    out.add_column("image", overflow="fold", ratio=3)
    out.add_column("expression", no_wrap=True)
    out.add_column(f"top {top} probabilities", ratio=2)
    extra = [c for c in ("face_found", "yaw", "occlusion", "face_reason") if c in table.columns]
    for c in extra:
        out.add_column(c, overflow="fold")
    for path, (_, r) in zip(paths, table.iterrows(), strict=True):
        shown = os.path.relpath(path, base) if base else path
        if r["status"] != "ok":
            out.add_row(
                safe(shown),
                f"[red]{safe(r['status'])}[/]",
                safe(str(r["detail"])),
                *[safe(_cell(r[c])) for c in extra],
            )
            continue
        probs = sorted(((r[c], c[2:]) for c in prob_cols), reverse=True)[:top]
        out.add_row(
            safe(shown),
            safe(str(r["prediction"])),
            " ".join(f"{safe(name)} {p:.2f}" for p, name in probs),
            *[safe(_cell(r[c])) for c in extra],
        )
    console.print(out)
    n_bad = int((table["status"] != "ok").sum())
    if n_bad:
        console.print(
            f"[yellow]{n_bad:,} of {len(table):,} image(s) could not be read: no prediction[/]"
        )


def _common_folder(paths: list[str]) -> str:
    """The deepest folder holding every path ('' for one path or none in common)."""
    if len(paths) < 2:
        return ""
    try:
        base = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:  # mixed drives or relative and absolute
        return ""
    return "" if base in ("", os.sep) else base


def _cell(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) and not math.isnan(v) else str(v)
