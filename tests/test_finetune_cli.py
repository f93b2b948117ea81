"""``curate finetune``'s options are made from :class:`curate.train.config.FinetuneConfig`
(its fields, types and defaults, and ``CLI_HELP``). ``finetune_cli_options.json`` holds the
options as they were declared one by one before (issue 28): names, flags, types, choices,
defaults, help. A change of the command line must be deliberate: rewrite the file with
``python tests/test_finetune_cli.py`` and review its diff."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("finetune_cli_options.json")


def finetune_options() -> list[dict[str, Any]]:
    """Every parameter of ``curate finetune`` as the command line parses and shows it."""
    import typer.main

    from curate.cli import app

    cmd = typer.main.get_command(app).commands["finetune"]
    ctx = cmd.make_context("finetune", ["x", "--out", "y"], resilient_parsing=True)

    def annotation(a: Any) -> str:
        if isinstance(a, type) and issubclass(a, enum.Enum):
            return "choice:" + "|".join(m.value for m in a)
        return getattr(a, "__name__", repr(a))

    return [
        {
            "name": p.name,
            "opts": list(p.opts),
            "secondary_opts": list(p.secondary_opts),
            "annotation": annotation(p.type_descriptor.annotation),
            "default": p.default.value if isinstance(p.default, enum.Enum) else p.default,
            "help": getattr(p, "help", None),
            "is_flag": getattr(p, "is_flag", None),
            "required": p.required,
            "hidden": getattr(p, "hidden", False),
            "display_type": str(p.display_type(ctx)),
            "kind": type(p).__name__,
        }
        for p in cmd.params
    ]


def test_the_finetune_options_are_the_ones_declared_before() -> None:
    want = json.loads(SNAPSHOT.read_text())
    got = json.loads(json.dumps(finetune_options(), default=str))
    assert [o["name"] for o in got] == [o["name"] for o in want]
    for g, w in zip(got, want, strict=True):
        assert g == w, g["name"]


def test_every_option_default_is_the_configs() -> None:
    from curate.train.config import CLI_HELP, FinetuneConfig

    d = FinetuneConfig()
    by_name = {o["name"]: o for o in finetune_options()}
    for name in CLI_HELP:
        assert by_name[name]["default"] == getattr(d, name), name
        assert by_name[name]["help"] == CLI_HELP[name], name


if __name__ == "__main__":  # rewrite the snapshot after a deliberate change of the options
    SNAPSHOT.write_text(json.dumps(finetune_options(), indent=1, default=str) + "\n")
    sys.exit(0)
