"""``curate report DIR``: re-render the HTML screening report of a screen run."""

from __future__ import annotations

from pathlib import Path

import typer

from curate.cli._app import FOLDER_OUT, app, console, handles_errors, renamed, safe


@app.command("report", short_help="Re-render the HTML report (and review view) of a screen run.")
@handles_errors
def report(
    screen_dir: Path = typer.Argument(
        ..., metavar="SCREEN_DIR", help="Output folder of `curate screen` (holds scores.parquet)."
    ),
    out_file: Path | None = typer.Option(
        None, "--out-file", metavar="FILE", help="Report file (default: SCREEN_DIR/report.html)."
    ),
    max_gallery: int = typer.Option(
        24, "--max-gallery", min=1, help="Most items shown in each gallery; bounds the file size."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random face samples."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing --out-file that is not a curate "
        "report (a file of SCREEN_DIR is never replaced).",
    ),
    decisions: Path | None = typer.Option(
        None,
        "--decisions",
        metavar="FILE",
        help="A decisions.csv downloaded from the review view: load it, to go on reviewing.",
    ),
    max_thumbnails: int = typer.Option(
        20_000,
        "--max-thumbnails",
        min=0,
        help="Most thumbnails in the review view (the images the screens reject or suspect).",
    ),
    old_out: Path | None = typer.Option(
        None, "--out", "-o", hidden=True, help="Deprecated: --out-file."
    ),
) -> None:
    """Write a self-contained HTML report of a screen run: no network, and one inline script
    (the review view, allowed by its hash) in which a curator keeps, drops or relabels images
    and downloads the decisions for `curate export --decisions`."""
    from curate.report import write_report

    out = renamed(
        out_file, old_out, new_flag="--out-file", old_flag="--out", why=FOLDER_OUT, command="report"
    )
    path = write_report(
        screen_dir,
        out,
        max_gallery=max_gallery,
        seed=seed,
        decisions=decisions,
        max_thumbnails=max_thumbnails,
        force=force,
    )
    size = path.stat().st_size / 1e6
    console.print(f"report written: {safe(path)} ({size:.2f} MB)", soft_wrap=True)
