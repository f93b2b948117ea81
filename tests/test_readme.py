"""The README is executed: its first two commands, its main job and its Python example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _first_block() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block, "README must open with a bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_first_lines_are_install_and_test_commands() -> None:
    install, test = _first_block()
    assert "pip install torch==2.14.1 torchvision==0.29.1" in install
    assert "bash examples/quickstart.sh" in install
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text()
    # CI runs exactly the README's test command (with the venv CI just built)
    assert test.strip() in ci


def test_main_job_runs_and_matches_readme_commands(tmp_path: Path) -> None:
    """examples/quickstart.sh, as the README's first command runs it."""
    script = (ROOT / "examples" / "quickstart.sh").read_text()
    for cmd in re.findall(
        r"^curate .*$", README.split("## What the main job does")[1].split("```")[1], re.M
    ):
        sub = cmd.split()[1]
        assert f"$CURATE {sub}" in script, (
            f"README shows `{cmd}` but quickstart.sh does not run {sub}"
        )
    env = dict(os.environ, CURATE=f"{sys.executable} -m curate")
    out = tmp_path / "example"
    res = subprocess.run(
        ["bash", str(ROOT / "examples" / "quickstart.sh"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    images = pd.read_parquet(out / "tuples" / "images.parquet")
    assert images["status"].str.startswith("duplicate_of").sum() == 2
    scores = pd.read_parquet(out / "screen" / "scores.parquet")
    assert len(scores) == 720
    assert 0.0 < (~scores["keep"]).mean() < 0.5
    html = (out / "screen" / "report.html").read_text()
    assert "<html" in html.lower() and "negative_too_close" in html
    # the outcome table the README shows is the one this run prints
    counts = json.loads((out / "screen" / "run.json").read_text())["counts"]
    shown = dict(
        re.findall(r"^ +(\w+) +│ +(\d+) │", README.split("## What the main job does")[1], re.M)
    )
    actual = {
        "kept": counts["kept"],
        "rejected": counts["rejected"],
        **counts["rejected_by_reason"],
    }
    assert {k: int(v) for k, v in shown.items()} == {k: v for k, v in actual.items() if v}, (
        "README's outcome table of the main job is out of date"
    )


def test_python_example_runs(tmp_path: Path) -> None:
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    subprocess.run(
        [sys.executable, "-m", "curate", "example", "runs/example/data"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "triplets;" in res.stdout


@pytest.mark.parametrize(
    "command",
    [
        "example",
        "build-tuples",
        "screen",
        "report",
        "export",
        "faces",
        "finetune",
        "evaluate",
        "predict",
        "models",
    ],
)
def test_every_command_has_help(command: str) -> None:
    from typer.testing import CliRunner

    from curate.cli import app

    res = CliRunner().invoke(app, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert len(res.output) > 200


def test_scaling_commands_use_real_options() -> None:
    """The commands of the README's scaling section name options their commands have."""
    from typer.testing import CliRunner

    from curate.cli import app

    part = README.split("## One machine, one GPU, a Ray cluster, several GPUs")[1].split("\n## ")[0]
    block = (
        re.search(r"```bash\n(.*?)```", part, re.S).group(1).replace("\\\n", " ")
    )  # continued lines
    commands = [
        re.sub(r"^torchrun .*?-m curate ", "curate ", line)
        for line in block.splitlines()
        if line.startswith(("curate ", "torchrun "))
    ]
    assert len(commands) >= 6 and any("--ray" in c for c in commands)
    runner = CliRunner()
    for cmd in commands:
        sub = cmd.split()[1]
        res = runner.invoke(app, [sub, "--help"], env={"COLUMNS": "300"})
        assert res.exit_code == 0, res.output
        for flag in re.findall(r"(?<=\s)--[a-z][a-z0-9-]*", cmd):
            assert flag in res.output, f"README: `{cmd}` uses {flag}, which `curate {sub}` lacks"
