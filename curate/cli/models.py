"""``curate models``: the backbones usable offline (bundled and cached)."""

from __future__ import annotations

from rich.table import Table

from curate.cli._app import app, console, handles_errors, safe
from curate.models import list_models


@app.command("models")
@handles_errors
def models_cmd() -> None:
    """List the bundled backbones and the timm weights found in the local cache."""
    entries = list_models()
    t = Table(title="backbones usable offline", title_justify="left")
    for col in ("name", "kind", "detail", "location"):
        t.add_column(col)
    for e in entries:
        t.add_row(safe(e.name), e.kind, safe(e.detail), safe(e.location))
    console.print(t)
    if not any(e.kind == "hf-cache" for e in entries):
        console.print("no timm weights in the local Hugging Face cache; "
                      "use --weights FILE for other timm backbones")
