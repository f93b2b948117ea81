"""``curate screen`` and ``curate export``: thin wrappers over :func:`curate.screen.screen`
and :func:`curate.export.export`."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from curate import screens as registry
from curate.cli._app import CACHE_DIR_HELP, FORCE_HELP, app, console, handles_errors, safe
from curate.cli._choices import RAY_ACTORS_HELP, RAY_HELP, ray_engine
from curate.cli._progress import stage_bars
from curate.cli._screen_flags import given_screen_options, screen_flags
from curate.export import FORMATS, ExportResult, export
from curate.representations import choices as representation_choices
from curate.representations import progress_labels as representation_progress
from curate.screen import ScreenResult, output_files, screen


class NoFaceOpt(str, Enum):  # kept for importers; the flag's choices come from the face screen
    reject = "reject"
    keep = "keep"


class DropLeakedOpt(str, Enum):
    none = "none"
    test = "test"
    train = "train"


class FormatOpt(str, Enum):
    imagefolder = "imagefolder"
    csv = "csv"
    parquet = "parquet"
    hf = "hf"


assert {f.value for f in FormatOpt} == set(FORMATS)

# the other options' defaults are the library functions' own
_SCREEN = {n: p.default for n, p in inspect.signature(screen).parameters.items()}
_EXPORT = {n: p.default for n, p in inspect.signature(export).parameters.items()}


@app.command("screen", short_help="Embed, screen every tuple, sort into kept and rejected.")
@handles_errors
@screen_flags
def screen_cmd(
    build_dir: Annotated[
        Path,
        typer.Argument(
            metavar="BUILD_DIR",
            help="Output folder of `curate build-tuples` (images.parquet, tuples.parquet).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (scores, kept/rejected tuples, suspect images, boundary, report).",
        ),
    ],
    backbone: Annotated[
        str | None,
        typer.Option(
            help="timm model name used as feature extractor (default: the bundled model)."
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Weights: a .safetensors/.pth file, a curate fine-tuning run folder, a model name that `curate models` lists, or 'none' for random weights. Default: timm's pretrained weights from the local cache."
        ),
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            help="Parquet with image_id or path, and embedding (list of floats); no backbone is loaded."
        ),
    ] = None,
    representation: Annotated[
        str,
        typer.Option(
            metavar="|".join(representation_choices()),
            help="The space the label verdicts are made in: backbone (the embedding), blendshapes (the face's 52 blendshape scores), combined, or auto: measure each on the dataset's labels by a cross-validated probe and use the best (docs/representations.md).",
        ),
    ] = _SCREEN["representation"],
    framing: Annotated[
        str,
        typer.Option(
            metavar="auto|face|full",
            help="What the backbone sees: face cut out from its landmarks, the full picture, or auto: the face when faces fill under 80% of the picture.",
        ),
    ] = _SCREEN["framing"],
    amp: Annotated[
        bool,
        typer.Option(
            help="Embed under bfloat16 autocast on a CPU that computes bfloat16 natively (AVX-512 BF16, AMX, Arm BF16); elsewhere float32, with a note. Cached apart from float32 embeddings."
        ),
    ] = _SCREEN["amp"],
    center: Annotated[
        bool,
        typer.Option("--center/--no-center", help="Subtract the dataset mean before normalising."),
    ] = _SCREEN["center"],
    scale: Annotated[
        float, typer.Option(help="Modulus s the embeddings are normalised to.")
    ] = _SCREEN["scale"],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = _SCREEN[
        "batch_size"
    ],
    workers: Annotated[
        int | None, typer.Option(help="Decoding processes (default: by device and CPU count).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = _SCREEN["device"],
    seed: Annotated[
        int, typer.Option(help="Seed of random pairs (and of random weights).")
    ] = _SCREEN["seed"],
    cache_dir: Annotated[str | None, typer.Option(metavar="DIR", help=CACHE_DIR_HELP)] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Inject known label noise into a copy of the labels and write the precision and recall of every screen at several alphas (calibration.parquet, shown in the report).",
        ),
    ] = _SCREEN["calibrate"],
    redraw: Annotated[
        bool,
        typer.Option(
            help="Redraw tuples whose positive or negative an image screen rejected, from the remaining images."
        ),
    ] = _SCREEN["redraw"],
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="NAME=VALUE for a screen or representation option (those without a flag of their own: the quality thresholds, docs/hygiene.md; any plug-in screen's; docs/screens.md). Repeatable.",
        ),
    ] = None,
    report: Annotated[
        bool, typer.Option(help="Write report.html (curate report SCREEN_DIR writes it later).")
    ] = True,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    ray_actors: Annotated[int | None, typer.Option(help=RAY_ACTORS_HELP)] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    **screen_settings: Any,
) -> None:
    """Embed every image, apply the statistical boundary and face screens, and sort tuples into kept and rejected.

    Every screen's options (thresholds, --skip-<screen>-screen) come from the screen registry
    (curate.screens; docs/screens.md)."""
    given = given_screen_options(screen_settings, option or [])
    stages = {**representation_progress(), **registry.progress_labels()}
    with stage_bars(stages) as bars:
        result = screen(
            build_dir,
            out,
            backbone=backbone,
            weights=weights,
            embeddings=embeddings,
            representation=representation,
            framing=framing,
            center=center,
            amp=amp,
            scale=scale,
            batch_size=batch_size,
            workers=workers,
            device=device,
            seed=seed,
            cache_dir=cache_dir,
            redraw=redraw,
            calibrate=calibrate,
            force=force,
            engine=ray_engine(ray, ray_actors, device),
            progress=bars.update,
            **given,
        )
    from curate.report import write_report  # matplotlib: only when a report is written

    report_path = write_report(result.out_dir) if report else None
    render_summary(result, report_path)


def render_summary(result: ScreenResult, report_path: Path | None = None) -> None:
    """Kept and rejected tuples by reason, the boundary, and warnings."""
    b = result.boundary
    if result.random_weights:
        console.print(
            "[bold red]warning: the backbone has RANDOM weights (--weights none); "
            "distances and rejections are meaningless for real curation.[/]"
        )
    table = Table(title=f"{result.n_tuples:,} {result.kind}s screened", show_edge=False)
    table.add_column("outcome")
    table.add_column("tuples", justify="right")
    table.add_column("share", justify="right")
    share = lambda n: f"{n / result.n_tuples:.1%}" if result.n_tuples else "-"  # noqa: E731
    table.add_row("[green]kept[/]", f"{result.n_kept:,}", share(result.n_kept))
    table.add_row("[red]rejected[/]", f"{result.n_rejected:,}", share(result.n_rejected))
    for reason, n in sorted(result.reasons.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {safe(reason)}", f"{n:,}", share(n))
    console.print(table)
    rec = result.boundary_record or {}
    if b is not None and rec.get("class_nulls"):
        cn = rec["class_nulls"]
        t_pos = [c["t_pos"] for c in cn["same"] if c["t_pos"] is not None]
        t_neg = [c["t_neg"] for c in cn["pairs"] if c["t_neg"] is not None]
        console.print(
            f"boundary ({rec['null']} null: {len(cn['same'])} classes, {len(cn['pairs'])} "
            f"class pairs): T_pos {min(t_pos):.3f}-{max(t_pos):.3f}, "
            f"T_neg {min(t_neg):.3f}-{max(t_neg):.3f}"
        )
    elif b is not None:
        d_null = f"{b.d_null:.1f}" if b.d_null is not None else "fitted"
        console.print(
            f"boundary ({b.null} null, d={b.d}, d_null={d_null}): mu={b.mu:.3f} sigma={b.sigma:.3f} "
            f"T_pos={b.t_pos:.3f} T_neg={b.t_neg:.3f}"
        )
    cal = rec.get("calibration") or {}
    if cal.get("share_above_t_pos") is not None:
        console.print(
            f"calibration on {cal['n_pairs']:,} random {cal['pairs'].replace('_', '-')} pairs: "
            f"{cal['share_above_t_pos']:.1%} above T_pos (nominal {cal['nominal_alpha_pos']:g}), "
            f"{cal['share_below_t_neg']:.1%} below T_neg (nominal {cal['nominal_alpha_neg']:g})"
        )
    if result.n_redrawn:
        console.print(
            f"redrew {result.n_redrawn:,} tuple(s) whose positive or negative an image "
            "screen rejected"
        )
    images_out = result.run.get("counts", {}).get("rejected_images_by_screen") or {}
    if images_out:
        console.print(
            "images rejected: "
            + ", ".join(f"{safe(k)} {v:,}" for k, v in images_out.items())
            + f" of {result.n_images:,}"
        )
    faces_out = result.outputs.get("faces")
    by_class = faces_out.artifacts.get("rejects_by_class") if faces_out is not None else None
    if by_class:
        render_face_rejects(by_class)
    console.print(
        f"images: {result.n_images:,} ({result.n_embedded:,} embedded, "
        f"{result.n_cached:,} from cache) with {safe(result.backbone)} "
        f"[dim]({safe(result.weights_source)})[/]"
    )
    rep = result.run.get("params", {}).get("representation") or {}
    if rep.get("summary"):
        console.print(f"representation: {safe(rep['summary'])}")
    evidence = result.run.get("params", {}).get("label_evidence") or {}
    if evidence.get("summary"):
        console.print(f"label evidence: {safe(evidence['summary'])}")
    for note in result.notes:
        if not note.startswith(("representation: ", "label evidence: ")):
            console.print(f"[yellow]note:[/] {safe(note)}")
    written = [name for name in output_files() if (result.out_dir / name).is_file()]
    console.print(f"wrote {safe(str(result.out_dir))}/: {safe(', '.join(written))}")


def render_face_rejects(rows: list[dict]) -> None:
    """The face screens' rejections per expression class (``rejects_by_class``)."""
    table = Table(title="face-rejected images by class", show_edge=False)
    for col, justify in (
        ("class", "left"),
        ("images", "right"),
        ("rejected", "right"),
        ("share", "right"),
        ("side_face", "right"),
        ("occluded", "right"),
        ("no_face", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            safe(str(r["label"])),
            f"{r['images']:,}",
            f"{r['rejected']:,}",
            f"{r['share']:.1%}" if r["images"] else "-",
            *(f"{r[c]:,}" for c in ("side_face", "occluded", "no_face")),
        )
    console.print(table)


@app.command("export", short_help="Export the surviving images for other trainers.")
@handles_errors
def export_cmd(
    screen_dir: Annotated[
        Path, typer.Argument(metavar="SCREEN_DIR", help="Output folder of `curate screen`.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write the filtered dataset to: new, empty, or an earlier export.",
        ),
    ],
    max_suspicion: Annotated[
        float | None,
        typer.Option(
            help="Also leave out images whose label suspicion (probability that the label is wrong) is at least this."
        ),
    ] = _EXPORT["max_suspicion"],
    relabel: Annotated[
        bool,
        typer.Option(
            "--relabel",
            help="Export images whose only fault is their label under their suggested label when its confidence is at least --relabel-confidence (the manifest keeps original_label).",
        ),
    ] = False,
    relabel_confidence: Annotated[
        float,
        typer.Option(
            help="With --relabel: relabel only suspects whose suggested_confidence is at least this (docs/label.md)."
        ),
    ] = _EXPORT["relabel_confidence"],
    relabel_rest: Annotated[
        str,
        typer.Option(
            metavar="reject|keep",
            help="With --relabel: label suspects below --relabel-confidence stay left out (reject) or are kept under their own label (keep).",
        ),
    ] = _EXPORT["relabel_rest"],
    format: Annotated[
        FormatOpt,
        typer.Option(
            "--format",
            help="imagefolder (OUT/[split/]label/file), a csv/parquet manifest, or hf: a Hugging Face `datasets` imagefolder of every screened image with the columns kept, reasons, suspicion and suggested_label.",
        ),
    ] = FormatOpt(_EXPORT["format"]),
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy files instead of symlinking them (imagefolder).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    include_unscreened: Annotated[
        bool,
        typer.Option(
            "--include-unscreened",
            help="Also export valid images that are in no tuple (never screened).",
        ),
    ] = False,
    drop_leaked: Annotated[
        DropLeakedOpt,
        typer.Option(
            "--drop-leaked",
            help="Near-duplicates in two splits (leakage): test leaves out the copies outside the training split (named train/training), train the copies in it, none keeps both.",
        ),
    ] = DropLeakedOpt(_EXPORT["drop_leaked"]),
    decisions: Annotated[
        Path | None,
        typer.Option(
            "--decisions",
            metavar="FILE",
            help="A curator's decisions.csv from the report's review view: keep puts a rejected image back, drop leaves an image out, relabel exports it under the new label (original_label kept); the other images follow the screens.",
        ),
    ] = None,
) -> None:
    """Write the images that survive the screens as an ImageFolder or a manifest for other trainers."""
    result = export(
        screen_dir,
        out,
        max_suspicion=max_suspicion,
        relabel=relabel,
        relabel_confidence=relabel_confidence,
        relabel_rest=relabel_rest,
        format=format.value,
        copy=copy,
        force=force,
        include_unscreened=include_unscreened,
        drop_leaked=drop_leaked.value,
        decisions=decisions,
    )
    if format is FormatOpt.hf:
        kept = int(result.manifest["kept"].sum())
        console.print(
            f"wrote [green]{result.n_exported:,}[/] images as a Hugging Face dataset: "
            f"{kept:,} with kept=True, {result.n_exported - kept:,} with kept=False and their reasons"
        )
        console.print(f"load it with datasets.load_dataset({str(result.target)!r})")
        _print_leak(result, drop_leaked.value)
        return
    why = [
        f"{n:,} rejected by the {safe(name)} screen" for name, n in result.n_image_rejected.items()
    ]
    if max_suspicion is not None:
        why.append(f"{result.n_suspect:,} with suspicion >= {max_suspicion:g}")
    console.print(
        f"exported [green]{result.n_exported:,}[/] images, left out [red]{result.n_excluded:,}[/]"
        + (f" ({'; '.join(why)}; an image can be counted twice)" if why else "")
    )
    if relabel:
        console.print(
            f"relabelled {result.n_relabelled:,} image(s) to their suggested label (suggested_confidence "
            f">= {relabel_confidence:g}); label suspects below it: "
            + ("kept under their own label" if relabel_rest == "keep" else "left out")
        )
    if result.decisions:
        d = result.decisions
        console.print(
            f"curator's decisions: {d['keep']:,} keep ({d['kept_against_screens']:,} of them rejected by "
            f"the screens), {d['drop']:,} drop, {d['relabel']:,} relabel"
        )
    _print_leak(result, drop_leaked.value)
    if result.n_unscreened:
        how = "exported" if include_unscreened else "left out (--include-unscreened adds them)"
        console.print(
            f"[yellow]{result.n_unscreened:,} valid image(s) are in no tuple, never screened: {how}[/]"
        )
    for label, n in sorted(result.per_label.items()):
        folder = result.folders.get("label", {}).get(label, label)
        console.print(
            f"  {safe(label)}: {n:,}" + (f" (folder {safe(folder)})" if folder != label else "")
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {safe(note)}")
    console.print(f"wrote {safe(str(result.target))}")


def _print_leak(result: ExportResult, drop_leaked: str) -> None:
    """The export summary's line on leakage (near-duplicates exported in two splits)."""
    if result.n_dropped_leaked:
        console.print(
            f"left out {result.n_dropped_leaked:,} image(s) with a near-duplicate in another "
            f"split (--drop-leaked {drop_leaked})"
        )
    if result.n_leaked:
        console.print(
            f"[yellow]leakage: {result.n_leaked:,} exported image(s) have a near-duplicate exported in "
            "another split[/]"
            + (
                "; --drop-leaked test leaves the evaluation copies out"
                if drop_leaked == "none"
                else ""
            )
        )
