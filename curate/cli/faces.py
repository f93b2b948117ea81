"""``curate faces``: a thin wrapper over :func:`curate.faces.faces_for_source`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli._app import (
    CACHE_DIR_HELP,
    FOLDER_OUT,
    app,
    console,
    handles_errors,
    renamed,
    safe,
)
from curate.cli._choices import RAY_ACTORS_HELP, RAY_HELP, ray_engine
from curate.cli._progress import rate_bar
from curate.errors import CurateError
from curate.faces.occlusion import OCCLUSION_THRESHOLD
from curate.screens.faces import DEFAULT_MAX_YAW


@app.command("faces", short_help="Head pose and occlusion of every image's face.")
@handles_errors
def faces_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="Image folder, CSV/Parquet manifest with a path column, or a build-tuples output folder (has images.parquet).",
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out-file",
            metavar="FILE",
            show_default=False,
            help="Output Parquet file: one row per image (see docs/faces.md). Required.",
        ),
    ] = None,
    face_model: Annotated[
        str | None,
        typer.Option(
            help="MediaPipe face_landmarker.task (default: $CURATE_FACE_MODEL, the user cache, or a packaged copy)."
        ),
    ] = None,
    cache_dir: Annotated[str | None, typer.Option(metavar="DIR", help=CACHE_DIR_HELP)] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes (default: one per core, at most 8).")
    ] = None,
    path_column: Annotated[str, typer.Option(help="Manifest column holding image paths.")] = "path",
    backend: Annotated[
        str | None,
        typer.Option(
            help="How faces are found: litert (the .task bundle's models run directly; default where ai-edge-litert is installed) or tasks (MediaPipe's Tasks API, the reference)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an earlier curate faces file at --out-file that had other settings (the same settings re-run without it); a file curate faces did not write is never replaced.",
        ),
    ] = False,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    ray_actors: Annotated[int | None, typer.Option(help=RAY_ACTORS_HELP)] = None,
    old_out: Annotated[
        Path | None, typer.Option("--out", "-o", hidden=True, help="Deprecated: --out-file.")
    ] = None,
) -> None:
    """Find each image's face: yaw, pitch, roll (degrees), occlusion (0-1) and its region."""
    from curate.faces import faces_for_source

    out = renamed(
        out_file, old_out, new_flag="--out-file", old_flag="--out", why=FOLDER_OUT, command="faces"
    )
    if out is None:
        raise CurateError(
            "curate faces needs --out-file: the Parquet file to write",
            hint="for example --out-file faces.parquet",
        )
    with rate_bar("analysing faces") as progress:
        result = faces_for_source(
            source,
            out,
            cache_dir=cache_dir,
            face_model=face_model,
            workers=workers,
            path_column=path_column,
            force=force,
            progress=progress,
            backend=backend,
            engine=ray_engine(ray, ray_actors),
        )
    faces = result.faces
    found = faces["face_found"]
    t = Table(title="faces", title_justify="left")
    t.add_column("images", justify="right")
    t.add_column("face found", justify="right", style="green")
    t.add_column("no face", justify="right", style="red")
    t.add_column(f"|yaw| > {DEFAULT_MAX_YAW:g}", justify="right")
    t.add_column(f"occlusion > {OCCLUSION_THRESHOLD:g}", justify="right")
    t.add_row(
        f"{len(faces):,}",
        f"{int(found.sum()):,}",
        f"{int((~found).sum()):,}",
        f"{int((faces['yaw'].abs() > DEFAULT_MAX_YAW).sum()):,}",
        f"{int((faces['occlusion'] > OCCLUSION_THRESHOLD).sum()):,}",
    )
    console.print(t)
    details = faces.loc[~found, "detail"].astype("string").fillna("no face")
    reasons = details.str.split(":", n=1).str[0].value_counts()
    for reason, n in reasons.items():
        console.print(f"  no face: {safe(str(reason))} ({n:,})")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {safe(note)}")
    console.print(f"wrote {safe(str(result.out))} and {safe(str(result.run_json))}")
