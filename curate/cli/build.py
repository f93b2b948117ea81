"""``curate build-tuples``: a thin wrapper over :func:`curate.build.build_tuples`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from curate.build import BuildResult, build_tuples
from curate.cli._app import FORCE_HELP, app, console, handles_errors, safe
from curate.cli._choices import KindOpt
from curate.cli._progress import stage_bars
from curate.images import DEFAULT_MAX_PIXELS

MAX_CONFLICTS = 10  # duplicates with another label named one by one


class PositiveSubject(str, Enum):
    any = "any"
    other = "other"


class NegativeSubject(str, Enum):
    any = "any"
    same = "same"


@app.command(
    "build-tuples", short_help="Validate a labelled image set; sample triplets/quadruplets."
)
@handles_errors
def build_tuples_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="Image folder (ROOT/<class>/<img> or ROOT/<split>/<class>/<img>) or CSV/Parquet manifest.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Output folder for images.parquet, tuples.parquet, run.json."
        ),
    ],
    kind: Annotated[KindOpt, typer.Option(help="Tuple kind.")] = KindOpt.triplet,
    per_anchor: Annotated[int, typer.Option(help="Tuples per anchor image.")] = 1,
    max_tuples: Annotated[
        int | None, typer.Option(help="Cap on the number of tuples (random subset).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed: same seed and input, identical tuples.")
    ] = 0,
    balance_classes: Annotated[
        bool, typer.Option(help="Sample anchors so every class is equally represented.")
    ] = False,
    positive_subject: Annotated[
        PositiveSubject,
        typer.Option(help="'other': positive from a different person than the anchor."),
    ] = PositiveSubject.any,
    negative_subject: Annotated[
        NegativeSubject,
        typer.Option(help="'same': negative from the anchor's own person when one exists."),
    ] = NegativeSubject.any,
    path_column: Annotated[str, typer.Option(help="Manifest column holding image paths.")] = "path",
    label_column: Annotated[str, typer.Option(help="Manifest column holding labels.")] = "label",
    split_column: Annotated[
        str, typer.Option(help="Manifest column holding the split (optional).")
    ] = "split",
    subject_column: Annotated[
        str, typer.Option(help="Manifest column holding the person's identity (optional).")
    ] = "subject",
    max_pixels: Annotated[
        int, typer.Option(help="Images with more pixels are rejected as too_large.")
    ] = DEFAULT_MAX_PIXELS,
    leakage_check: Annotated[
        bool,
        typer.Option(
            help="With two or more splits, look for near-duplicates across them (leakage) and warn."
        ),
    ] = True,
    workers: Annotated[
        int | None, typer.Option(help="Processes for image validation (default: CPU count).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
) -> None:
    """Validate a labelled face-image dataset and sample triplets or quadruplets."""
    with stage_bars({"ingest": "validating images", "leakage": "leakage check"}) as bars:
        result = build_tuples(
            source,
            out,
            kind=kind.value,
            per_anchor=per_anchor,
            max_tuples=max_tuples,
            seed=seed,
            balance_classes=balance_classes,
            positive_subject=positive_subject.value,
            negative_subject=negative_subject.value,
            path_column=path_column,
            label_column=label_column,
            split_column=split_column,
            subject_column=subject_column,
            max_pixels=max_pixels,
            check_leakage=leakage_check,
            workers=workers,
            force=force,
            progress=lambda done, total: bars.update("ingest", done, total),
            leakage_progress=lambda done, total: bars.update("leakage", done, total),
        )
    render_summary(result)


def render_summary(result: BuildResult) -> None:
    """Images per class and status, tuples per class, and everything excluded with why."""
    images = result.images
    codes = images["status"].str.split(":", n=1).str[0]
    table = pd.crosstab(images["label"].fillna("(no label)"), codes)
    t = Table(title="images per class and status", title_justify="left")
    t.add_column("class")
    for col in table.columns:
        t.add_column(str(col), justify="right", style="green" if col == "ok" else "red")
    t.add_column("tuples (as anchor)", justify="right", style="cyan")
    for label, row in table.iterrows():
        n_t = result.stats.tuples_per_class.get(str(label), 0)
        t.add_row(safe(str(label)), *[str(int(v)) for v in row], str(n_t))
    console.print(t)

    bad = images[images["status"].ne("ok")]
    if len(bad):
        console.print(
            f"[red]{len(bad):,} image(s) excluded[/] (every one is in images.parquet with its status and detail):"
        )
        for code, group in bad.groupby(codes[bad.index], sort=True):
            console.print(f"  [red]{safe(str(code))}[/]: {len(group):,}")
            for _, r in group.head(3).iterrows():
                console.print(f"    {safe(str(r['rel_path']))}: {safe(str(r['detail']))}")
            if len(group) > 3:
                console.print(f"    ... and {len(group) - 3:,} more")
        conflicts = bad[bad["detail"].astype(str).str.contains("CONFLICTING label")]
        if len(conflicts):
            console.print(
                f"  [yellow]{len(conflicts):,} duplicate(s) carry a different label than their "
                "original (only the original takes part in tuples):[/]"
            )
            for _, r in conflicts.head(MAX_CONFLICTS).iterrows():
                console.print(
                    f"    {safe(str(r['rel_path']))} ({safe(str(r['label']))}): "
                    f"{safe(str(r['detail']))}"
                )
            if len(conflicts) > MAX_CONFLICTS:
                console.print(
                    f"    ... and {len(conflicts) - MAX_CONFLICTS:,} more (status duplicate_of:* "
                    "in images.parquet)"
                )
    for name, why in result.stats.classes_without_anchors.items():
        console.print(f"[yellow]no anchors[/] for class {safe(name)}: {safe(why)}")
    for name, why in result.stats.splits_skipped.items():
        console.print(f"[yellow]split skipped[/] {safe(name)}: {safe(why)}")
    n = len(result.tuples)
    if result.stats.positive_subject_honoured is not None:
        console.print(
            f"positive from another subject: {result.stats.positive_subject_honoured:,} of {n:,} tuples"
        )
    if result.stats.negative_subject_honoured is not None:
        console.print(
            f"negative from the same subject: {result.stats.negative_subject_honoured:,} of {n:,} tuples"
        )
    _print_leakage(result)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {safe(note)}")
    console.print(
        f"[bold green]wrote[/] {n:,} {result.run['params']['kind']}s from "
        f"{result.run['counts']['images_ok']:,} valid of {len(images):,} images to {safe(str(result.out_dir))}"
    )


def _print_leakage(result: BuildResult) -> None:
    """The warning of the leakage check: near-duplicates in two splits."""
    leak = result.run["counts"].get("leakage")
    if not leak or not leak["cross_split_pairs"]:
        return
    per = ", ".join(
        f"{n:,} in {safe(s)}" for s, n in leak["images_with_copy_in_other_split"].items()
    )
    console.print(
        f"[bold yellow]warning: leakage:[/] {leak['cross_split_pairs']:,} near-duplicate pair(s) "
        f"across splits (images with a copy in another split: {per}); evaluation on them is "
        "inflated"
    )
    for a, b, sim in leak.get("examples", []):
        console.print(f"    {safe(a)} ~ {safe(b)} (pixel similarity {sim:.3f})")
    console.print(
        "  `curate screen` lists every pair in its report (Leakage); `curate export "
        "--drop-leaked test` leaves the copies in the evaluation split out"
    )
