"""``curate finetune``, ``curate evaluate`` and ``curate predict``: thin wrappers over :mod:`curate.train`."""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_type_hints

import typer
from rich import box
from rich.table import Table

from curate.cli._app import FORCE_HELP, app, console, err_console, handles_errors, renamed, safe
from curate.cli._choices import KindOpt, NullOpt
from curate.cli._progress import stage_bars
from curate.errors import CurateError
from curate.train.config import CLI_HELP, FinetuneConfig

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


# the choices of the fields that have them (the tuple kind and the null are shared with
# build-tuples and screen)
_CHOICES: dict[str, type[Enum]] = {
    "kind": KindOpt,
    "ce_on": CeOn,
    "mining": MiningOpt,
    "margin_mode": MarginMode,
    "null": NullOpt,
    "augment_kind": AugmentKind,
}
F = TypeVar("F", bound=Callable[..., Any])
FramingOption = Annotated[  # evaluate's and predict's --framing
    str,
    typer.Option(
        help="auto: cut the faces out around their landmarks where the run trained so "
        "(a network without a record, such as a bundled one: where the faces fill only "
        "part of the pictures, as curate screen decides); face: always; full: never.",
    ),
]
FRAMED = "framing: the faces were cut out around their landmarks (--framing)"


def _optional(kind: Any) -> bool:
    return type(None) in get_args(kind)


_HINTS = get_type_hints(FinetuneConfig)
# optional fields with a default other than None: ``none`` on the command line is None
_NONE_SPELLED = {n for n in CLI_HELP if _optional(_HINTS[n]) and getattr(D, n) is not None}


def _config_param(name: str, kind: Any, default: Any) -> inspect.Parameter:
    """The option of one :class:`FinetuneConfig` field: its type (or its choices,
    :data:`_CHOICES`), its default and its help line (:data:`curate.train.config.CLI_HELP`).
    An optional field whose default is not None takes ``none`` for None
    (:func:`finetune_config`)."""
    inner = _CHOICES.get(name) or next((a for a in get_args(kind) if a is not type(None)), kind)
    if name in _CHOICES and default is not None:
        default = inner(default)
    if _optional(kind) and default is None:
        inner = inner | None
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[inner, typer.Option(help=CLI_HELP[name])],
    )


def config_options(fn: F) -> F:
    """Give ``fn`` (a command taking ``**settings``) one option per field of
    :data:`curate.train.config.CLI_HELP`, in its order, after the arguments and the required
    options: the command line is made from the config, so its defaults are the library's."""
    sig = inspect.signature(fn, eval_str=True)
    fixed = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    lead = [p for p in fixed if p.default is inspect.Parameter.empty]
    made = [_config_param(name, _HINTS[name], getattr(D, name)) for name in CLI_HELP]
    fn.__signature__ = sig.replace(parameters=[*lead, *made, *fixed[len(lead) :]])  # type: ignore[attr-defined]
    return fn


@app.command("finetune", short_help="Fine-tune on tuples, screening every batch.")
@handles_errors
@config_options
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
    *,
    restart: Annotated[
        bool, typer.Option(help="Discard a checkpoint in --out instead of resuming from it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help=FORCE_HELP + " Its checkpoints are discarded.")
    ] = False,
    **settings: Any,
) -> None:
    """Fine-tune an embedding network on tuples, screening every batch with the statistical boundary.

    On several GPUs (or CPU processes): torchrun --nproc-per-node N -m curate finetune ...
    (each process forwards its share of every batch; same result as one process).
    """
    from curate.train.loop import finetune

    cfg = finetune_config(**settings)
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 draws bars and reports
    bar_ctx = (
        stage_bars(
            {
                "faces": "face analysis (framing)",
                "decode": "decoding images",
                "train": "training",
                "val": "epochs",
            }
        )
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


def finetune_config(**options: Any) -> FinetuneConfig:
    """The :class:`FinetuneConfig` of ``curate finetune``'s options (each named as its
    field): choices as their values, ``none`` (``--val-split none``) as None for an optional
    field whose default is not None."""
    values = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
    for name, value in values.items():
        if isinstance(value, str) and value.lower() == "none" and name in _NONE_SPELLED:
            values[name] = None
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
    from curate.train.report import face_rejects_row, left_out_columns

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
    params = result.run.get("params") or {}
    batch_hard = params.get("mining") == "batch-hard"
    rows = {
        **(
            {"training_images": "training images (drawn P x K a batch)"}
            if batch_hard
            else {"tuples": "tuples"}
        ),
        "steps": "steps",
        **(
            {
                "mined_triplets": "mined triplets",
                "images_excluded": "images suppressed (outliers)",
                "face_rejected_images": face_rejects_row(params),
            }
            if batch_hard
            else {"images_excluded": "images excluded (suspects)"}
        ),
        "mean_share_dropped": "mean share dropped",
        "val_images": "val images",
        "val_accuracy": "val accuracy",
        "val_macro_f1": "val macro f1",
    }
    for key, name in rows.items():
        v = counts.get(key)
        if key == "face_rejected_images" and v is None:
            continue  # no --face-screen
        if key == "images_excluded" and not params.get("exclude_suspects"):
            continue  # no --exclude-suspects
        table.add_row(name, "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
    console.print(table)
    _render_left_out(params, counts, left_out_columns(params, counts))
    if not result.config.get("pretrained_from"):
        console.print("[bold red]the network started from random weights[/]")
    console.print(f"report: {safe(str(result.run_dir / 'report.html'))}")


def _render_left_out(params: dict, counts: dict, cols: list[str]) -> None:
    """The training images left out per label (``counts["left_out_by_label"]``)."""
    rows = counts.get("left_out_by_label") or []
    if not rows or not cols:
        return
    table = Table(title="training images left out, by label", show_edge=False)
    table.add_column("label")
    table.add_column("images", justify="right")
    names = {
        "face_rejected": "face rejects"
        + (" (CE only)" if params.get("face_rejects") == "classify" else ""),
        "suppressed": "suppressed",
    }
    for c in cols:
        table.add_column(names[c], justify="right")
        table.add_column("share", justify="right")
    for r in rows:
        table.add_row(
            safe(str(r["label"])),
            f"{r['images']:,}",
            *(v for c in cols for v in (f"{r[c]:,}", f"{r[c + '_share']:.1%}")),
        )
    console.print(table)


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
    framing: FramingOption = "auto",
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

    with _eval_bars(not json_out) as bars:
        result = evaluate(
            run,
            source,
            split=split,
            device=device,
            batch_size=batch_size,
            skip_unknown_classes=skip_unknown_classes,
            amp=amp,
            framing=framing,
            progress=bars,
        )
    data = result.to_dict()
    if out_file is not None:
        write_json(data, out_file)
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    m = result.metrics
    if result.framing == "face":
        console.print(FRAMED)
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


@contextlib.contextmanager
def _eval_bars(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """The progress callback of ``evaluate`` / ``predict``: bars for the face analysis (with
    framing), the decoding and the network (None with ``--json``, whose stdout is the JSON)."""
    if not show:
        yield None
        return
    labels = {
        "faces": "face analysis (framing)",
        "decode": "decoding images",
        "predict": "classifying",
    }
    with stage_bars(labels) as bars:
        yield lambda stage, done, total: bars.update(stage, done, total)


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
    framing: FramingOption = "auto",
) -> None:
    """Predicted expression and class probabilities for each image."""
    from curate.train.evaluate import predict

    with _eval_bars(not json_out) as bars:
        table = predict(
            run,
            images,
            device=device,
            batch_size=batch_size,
            faces=faces,
            amp=amp,
            framing=framing,
            progress=bars,
        )
    if json_out:
        typer.echo(table.to_json(orient="records", indent=2))
        return
    if table.attrs.get("framing") == "face":
        console.print(FRAMED)
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
