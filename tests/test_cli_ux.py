"""What a new user trips over (issue 17): 80-column help and tables, models by name, the
messages of example / build-tuples / evaluate, and no progress bar before an error."""

from __future__ import annotations

import importlib
import re
import shutil
import warnings
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import CurateError, CurateWarning
from curate.models import default_model_dir, list_models, resolve_run, resolve_weights

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    "example",
    "build-tuples",
    "faces",
    "screen",
    "export",
    "report",
    "finetune",
    "evaluate",
    "predict",
    "models",
]
WIDE = CliRunner(env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})

needs_bundled = pytest.mark.skipif(
    not (default_model_dir() / "model.safetensors").is_file(),
    reason="no bundled model in this checkout",
)


def _invoke(*args: str):
    return WIDE.invoke(app, list(args))


# ----------------------------------------------------------------------------- 80 columns
@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_readable_at_80_columns(command: str) -> None:
    res = _invoke(command, "--help")
    assert res.exit_code == 0, res.output
    text = res.output
    long_lines = [line for line in text.splitlines() if len(line) > 80]
    assert not long_lines, long_lines
    assert "\u2026" not in text  # nothing cut with an ellipsis
    assert "<bool>" not in text  # an on/off flag takes no value
    cmd = typer.main.get_command(app).commands[command]
    for param in cmd.params:
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("-") and not getattr(
                param, "hidden", False
            ):  # hidden: deprecated aliases
                assert re.search(rf"(^|[\s,]){re.escape(name)}([\s,=]|$)", text, re.M), name
    # the help column is wide: continuation lines start by column 34 (rich's panels
    # squeezed help into the last 18 columns)
    indents = [len(line) - len(line.lstrip()) for line in text.splitlines() if line.strip()]
    assert max(indents) <= 34, max(indents)


def test_one_meaning_per_option_name_across_commands() -> None:
    """An option name shared by commands is a flag in all of them or takes a value in all;
    --out is an output folder and --out-file one output file wherever they appear, and
    --json prints JSON (issue 28). The hidden deprecated aliases are left out."""
    kinds: dict[str, set[bool]] = {}
    for name, cmd in typer.main.get_command(app).commands.items():
        for p in cmd.params:
            if p.param_type_name != "option" or p.hidden:
                continue
            for opt in (*p.opts, *p.secondary_opts):
                kinds.setdefault(opt, set()).add(p.is_flag)
            if "--out" in p.opts:
                assert "folder" in (p.help or "").lower(), (name, p.help)
            if "--out-file" in p.opts:
                assert (
                    "file" in (p.help or "").lower() and "folder" not in (p.help or "").lower()
                ), (name, p.help)
            if "--json" in p.opts:
                assert p.is_flag and "print" in (p.help or "").lower(), (name, p.help)
    assert {k: v for k, v in kinds.items() if len(v) > 1} == {}
    assert "--out-file" in kinds and "--json" in kinds


@pytest.mark.parametrize("command", ["faces", "report"])
def test_out_as_a_file_is_a_deprecated_alias_of_out_file(command: str, tmp_path: Path) -> None:
    """The earlier --out FILE / -o FILE of faces and report still reaches the command, with
    a warning that names --out-file; both at once is an error naming the fix."""
    missing = tmp_path / "missing"  # the command then stops at its input, after the options
    for flag in ("--out", "-o"):
        with warnings.catch_warnings():
            warnings.simplefilter("always", CurateWarning)  # not once per place: once per call
            res = _invoke(command, str(missing), flag, str(tmp_path / "x.parquet"))
        assert res.exit_code == 2 and "not found" in res.output, res.output
        assert f"warning: --out is deprecated in curate {command}: use --out-file" in res.output
    res = _invoke(
        command,
        str(missing),
        "--out",
        str(tmp_path / "a.parquet"),
        "--out-file",
        str(tmp_path / "b.parquet"),
    )
    assert res.exit_code == 2 and "--out and --out-file both given" in res.output
    assert "give --out-file only" in res.output
    with warnings.catch_warnings():
        warnings.simplefilter("always", CurateWarning)
        res = _invoke(command, str(missing), "--out-file", str(tmp_path / "x.parquet"))
    assert res.exit_code == 2 and "not found" in res.output and "warning" not in res.output, (
        res.output
    )


def test_command_list_is_not_cut_at_80_columns() -> None:
    res = _invoke("--help")
    for command in COMMANDS:
        line = next(x for x in res.output.splitlines() if x.strip().startswith(command + " "))
        assert not line.rstrip().endswith("..."), line


def test_models_list_is_readable_at_80_columns() -> None:
    res = _invoke("models")
    assert res.exit_code == 0, res.output
    assert all(len(line) <= 80 for line in res.output.splitlines())
    assert "\u2026" not in res.output
    flat = re.sub(r"\n\s*", "", res.output)  # long paths may wrap, never be cut
    for entry in list_models():
        assert entry.name in res.output and entry.location.replace(" ", "") in flat.replace(" ", "")


@needs_bundled
def test_predict_by_model_name_and_its_table_at_80_columns(tmp_path) -> None:
    a, b = tmp_path / "happy", tmp_path / "sad"
    images = []
    for folder in (a, b):
        for i in range(2):
            path = folder / f"a_very_long_image_file_name_that_would_be_cut_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (48, 48), 40 + 60 * i).save(path)
            images.append(path)
    res = _invoke("predict", "fer_resnet10t", str(a), str(b))
    assert res.exit_code == 0, res.output
    assert "\u2026" not in res.output
    assert all(len(line) <= 80 for line in res.output.splitlines())
    # every row names its own image in full, relative to the folder the title names (a
    # long name folds onto more lines of its column)
    assert str(tmp_path) in res.output.replace("\n", "")
    assert _first_column(res.output, "expression") == [str(p.relative_to(tmp_path)) for p in images]


def _first_column(table: str, second: str) -> list[str]:
    """The cells of a rich table's first column, folded lines joined."""
    lines = table.splitlines()
    head = next(i for i, line in enumerate(lines) if second in line and "image" in line)
    cut = lines[head].index(second)
    cells: list[str] = []
    for line in lines[head + 2 :]:
        if not line.strip():
            continue
        if line[cut:].strip() and not line[cut : cut + 1].isspace():
            cells.append(line[:cut].strip())
        else:
            cells[-1] += line[:cut].strip()
    return cells


# ----------------------------------------------------------------------------- names
@needs_bundled
def test_model_names_work_wherever_a_run_or_weights_are_accepted(tmp_path, monkeypatch) -> None:
    bundled = str(default_model_dir())
    from curate.models import DEFAULT_MODEL

    assert resolve_run(DEFAULT_MODEL) == default_model_dir()
    assert resolve_weights(DEFAULT_MODEL, None) == (None, bundled)
    assert resolve_weights(None, "resnet18") == ("resnet18", None)  # nothing to resolve
    with pytest.raises(CurateError, match="run folder not found: nope") as err:
        resolve_run("nope")
    assert "fer_resnet10t" in str(err.value)  # the names that would work
    with pytest.raises(CurateError, match="weights file not found") as err:
        resolve_weights("nope", None)
    assert "curate models" in str(err.value)

    from curate.backbone import load_backbone
    from curate.train.config import FinetuneConfig
    from curate.train.loop import init_network

    lb = load_backbone(None, DEFAULT_MODEL)  # screen --weights NAME
    assert lb.weights_source == f"run:{default_model_dir().resolve()}"
    classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    _, _, source, backbone = init_network(FinetuneConfig(weights=DEFAULT_MODEL), classes)
    assert source == str(default_model_dir().resolve()) and backbone == "resnet10t"

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fer_resnet10t").mkdir()  # a path of that name wins over the model name
    assert resolve_run("fer_resnet10t") == Path("fer_resnet10t")


def test_timm_cache_name_as_weights_means_that_backbone(monkeypatch) -> None:
    from curate import models

    entry = models.ModelEntry("resnet18", "hf-cache", "/hub/models--timm--resnet18", "timm weights")
    monkeypatch.setattr(models, "list_models", lambda: [entry])
    assert resolve_weights("resnet18", None) == ("resnet18", None)
    with pytest.raises(CurateError, match="not of --backbone vit"):
        resolve_weights("resnet18", "vit")
    with pytest.raises(CurateError, match="without an expression head"):
        resolve_run("resnet18")


# ----------------------------------------------------------------------------- messages
def test_example_next_commands_are_the_quickstarts(tmp_path) -> None:
    out = tmp_path / "runs" / "example" / "data"
    res = _invoke("example", str(out), "--per-class", "3")
    assert res.exit_code == 0, res.output
    said = [line for line in res.output.splitlines() if line.startswith(("next:", "then:"))]
    script = (ROOT / "examples" / "quickstart.sh").read_text()
    quick = [
        line.replace("$CURATE", "curate")
        .replace('"$OUT', str(tmp_path / "runs" / "example"))
        .replace('"', "")
        for line in script.splitlines()
        if line.startswith(("$CURATE build-tuples", "$CURATE screen"))
    ]
    assert [s.split(": ", 1)[1] for s in said] == quick


def test_build_tuples_names_a_duplicate_with_another_label(tmp_path, make_folder) -> None:
    root = make_folder({"happy": 3, "sad": 3})
    shutil.copy(root / "happy" / "000.png", root / "sad" / "copy_of_happy.png")
    res = _invoke("build-tuples", str(root), "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    text = res.output.replace("\n", " ")
    assert re.search(r"1 duplicate\(s\) carry a different label", text)
    assert re.search(r"sad/copy_of_happy\.png \(sad\): byte-identical to happy/000\.png", text)


def test_build_tuples_error_comes_before_any_progress_bar(tmp_path) -> None:
    res = _invoke("build-tuples", str(tmp_path / "absent"), "--out", str(tmp_path / "b"))
    assert res.exit_code == 2
    assert res.output.startswith("error: source not found"), repr(res.output[:200])


@needs_bundled
def test_evaluate_says_it_left_out_duplicates(tmp_path, make_folder) -> None:
    from curate.train.evaluate import DUPLICATES_SKIPPED, evaluate

    root = make_folder({"happy": 3, "sad": 3})
    shutil.copy(root / "happy" / "000.png", root / "happy" / "dup.png")
    shutil.copy(root / "sad" / "001.png", root / "sad" / "dup.png")
    result = evaluate("fer_resnet10t", root, device="cpu")
    assert result.metrics["n_images"] == 6 and result.skipped == {DUPLICATES_SKIPPED: 2}
    res = _invoke("evaluate", "fer_resnet10t", str(root), "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "left out 2 duplicate(s)" in res.output.replace("\n", " ")


def test_screen_of_an_image_folder_says_to_build_first(tmp_path, make_folder) -> None:
    root = make_folder({"happy": 2, "sad": 2})
    res = _invoke("screen", str(root), "--out", str(tmp_path / "s"))
    assert res.exit_code == 2
    text = res.output.replace("\n", " ")
    assert "looks like an image folder" in text and "curate build-tuples" in text


def test_screen_options_are_checked_before_any_work(tmp_path, monkeypatch) -> None:
    from builders import make_build

    screen_module = importlib.import_module(
        "curate.screen"
    )  # the module; curate.screen is the function

    build, _, _ = make_build(tmp_path, per_class=3, per_anchor=1)

    def no_work(*a, **k):
        raise AssertionError("embedding started before the options were checked")

    monkeypatch.setattr(screen_module, "_represent", no_work)
    for flag, value, match in (
        ("--max-occlusion", "1.5", "max_occlusion"),
        ("--max-yaw", "-3", "max_yaw"),
        ("--alpha-pos", "5", "alpha_pos"),
        ("--scale", "0", "--scale"),
        ("--representation", "pixels", "representation"),
        ("--framing", "tight", "framing"),
    ):
        res = _invoke(
            "screen", str(build), "--out", str(tmp_path / "o"), flag, value, "--no-report"
        )
        assert res.exit_code == 2 and match in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_report_html_and_outputs_follow_the_umask(tmp_path) -> None:
    import os

    from curate.io import write_json, write_text

    old = os.umask(0o022)
    try:
        assert oct(write_text("x", tmp_path / "a.html").stat().st_mode & 0o777) == oct(0o644)
        os.umask(0o077)
        assert oct(write_json({}, tmp_path / "b.json").stat().st_mode & 0o777) == oct(0o600)
    finally:
        os.umask(old)


def test_readme_says_to_activate_the_venv_and_what_defaults_reject_on_real_data() -> None:
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "source .venv/bin/activate" in first or ". .venv/bin/activate" in first
    section = readme.split("## Running on a real dataset", 1)[1].split("\n## ", 1)[0]
    assert "fer2013/val" in section and re.search(r"\d+(\.\d)? ?%", section)


def test_every_screen_table_is_documented() -> None:
    tables = (ROOT / "docs" / "tables.md").read_text()
    for name in ("embeddings.parquet", "scores.parquet", "images_suspect.parquet"):
        assert f"`{name}`" in tables
    assert "docs/cache.md" in tables and (ROOT / "docs" / "cache.md").is_file()
