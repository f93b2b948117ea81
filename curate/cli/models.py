"""``curate models``: the backbones usable offline (bundled and cached)."""

from __future__ import annotations

from curate.cli._app import app, console, handles_errors, safe
from curate.models import list_models

USE = {
    "bundled": "--weights {name} (screen, finetune); curate predict {name} IMAGE; curate evaluate {name} SOURCE",
    "hf-cache": "--backbone {name} (its cached weights), or --weights {name}",
}


@app.command("models", short_help="The backbones usable offline (bundled and cached).")
@handles_errors
def models_cmd() -> None:
    """List the bundled backbones and the timm weights found in the local cache.

    Each name works wherever a run folder or weights are accepted.
    """
    entries = list_models()
    console.print(
        "[bold]backbones usable offline[/] (a name works wherever a run folder or "
        "weights are accepted)"
    )
    for e in entries:
        console.print(f"\n[bold cyan]{safe(e.name)}[/]  [dim]{e.kind}[/]")
        # one fact per line, never cut: paths wrap instead of ending in an ellipsis
        for line in (
            e.detail,
            f"location: {e.location}",
            "use: " + USE[e.kind].format(name=e.name),
        ):
            console.print(f"  {safe(line)}")
    if not any(e.kind == "hf-cache" for e in entries):
        console.print(
            "\nno timm weights in the local Hugging Face cache; "
            "use --weights FILE for other timm backbones"
        )
