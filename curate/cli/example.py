"""``curate example``: a thin wrapper over :func:`curate.synthetic.make_example`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from curate.cli._app import app, console, handles_errors, safe
from curate.synthetic import make_example

# The quickstart's settings (examples/quickstart.sh; tests/test_cli_ux.py keeps them equal).
BUILD_ARGS = "--per-anchor 3 --seed 0"
SCREEN_ARGS = "--alpha-pos 0.05 --alpha-neg 0.05 --max-occlusion 0.8 --no-face keep --skip-near-duplicates-screen"


def next_commands(out: Path, manifest: Path) -> list[str]:
    """The quickstart's next two commands for an example drawn into ``out``: the build and
    screen folders beside it, as ``examples/quickstart.sh`` lays them out."""
    root = Path(out).parent
    tuples, screen = root / "tuples", root / "screen"
    return [
        f"next: curate build-tuples {manifest} --out {tuples} {BUILD_ARGS}",
        f"then: curate screen {tuples} --out {screen} {SCREEN_ARGS}",
    ]


@app.command("example", short_help="Draw a small SYNTHETIC dataset with planted label noise.")
@handles_errors
def example_cmd(
    out: Annotated[
        Path,
        typer.Argument(
            metavar="OUT",
            help="Folder to write (absent, empty, or an earlier example, which is replaced).",
        ),
    ],
    per_class: Annotated[int, typer.Option(help="Drawn images per expression.")] = 40,
    noise: Annotated[
        float, typer.Option(help="Share of each class given a wrong observed label.")
    ] = 0.15,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed writes byte-identical files.")
    ] = 0,
    size: Annotated[
        int, typer.Option(help="Image side in pixels (8-bit grayscale, like FER2013).")
    ] = 48,
) -> None:
    """Draw a small SYNTHETIC facial-expression dataset with planted label noise.

    Cartoon faces of 12 made-up people showing 6 expressions, with known wrong labels
    (column true_label), side faces, occluded faces and duplicate files, so that the
    rest of the pipeline can be tried with no data and no network.
    """
    manifest_path = make_example(out, per_class=per_class, noise=noise, seed=seed, size=size)
    m = pd.read_csv(manifest_path)
    console.print(
        f"[bold green]wrote[/] {len(m):,} synthetic {size}x{size} faces "
        f"({m['true_label'].nunique()} expressions, {m['subject'].nunique()} subjects) to {safe(str(out))}"
    )
    console.print(
        f"  planted: {int(m['is_noisy'].sum())} wrong labels, {int(m['is_side_face'].sum())} side faces, "
        f"{int(m['is_occluded'].sum())} occluded faces, {int(m['is_duplicate'].sum())} duplicate files"
    )
    console.print(
        f"  manifest: {safe(str(manifest_path))} (ground truth in columns true_label, is_noisy, ...)"
    )
    for line in next_commands(out, manifest_path):
        console.print(safe(line), soft_wrap=True)
