"""The screen registry: contract tests parametrised over every registered screen, the
registry's own rules, and the worked example of docs/screens.md run end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import make_build, write_embeddings
from typer.testing import CliRunner

from curate import screens
from curate.cli import app
from curate.errors import CurateError
from curate.export import export
from curate.report import write_report
from curate.screen import screen
from curate.screens.base import Option, Reason, Screen, ScreenContext, ScreenOutput
from curate.stats.statistical import normalize

ROOT = Path(__file__).resolve().parents[1]
NO_HYGIENE = {
    "skip_quality_screen": True,
    "skip_not_face_screen": True,
    "skip_near_duplicates_screen": True,
}
NO_HYGIENE_FLAGS = [
    "--skip-quality-screen",
    "--skip-not-face-screen",
    "--skip-near-duplicates-screen",
]
ALL = screens.registered()
IDS = [s.name for s in ALL]


def _context(tmp_path: Path, **settings) -> ScreenContext:
    build, images, emb = make_build(tmp_path, per_class=4, per_anchor=2)
    tuples = pd.read_parquet(build / "tuples.parquet")
    ids = images["image_id"].to_numpy()
    rows = {
        r: np.searchsorted(ids, tuples[r].to_numpy()) for r in ("anchor", "positive", "negative")
    }
    resolved = screens.resolve_settings(settings)
    resolved.update(center=True, scale=1.0, seed=0)
    return ScreenContext(
        images=images,
        tuples=tuples,
        rows=rows,
        settings=resolved,
        out_dir=tmp_path / "out",
        embeddings=normalize(emb),
    )


@pytest.mark.parametrize("scr", ALL, ids=IDS)
def test_metadata_is_complete(scr: Screen) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", scr.name)
    assert scr.level in ("image", "tuple") and scr.summary and scr.reasons
    for r in scr.reasons:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", r.code), r.code
        assert re.fullmatch(r"#[0-9a-f]{6}", r.color) and r.label and r.help
        assert screens.reason(r.code) == r and screens.screen_of(r.code).name == scr.name
    for o in scr.all_options():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", o.name) and o.help
        assert o.flag == "--" + o.name.replace("_", "-")
        assert not o.choices or o.default in o.choices
    assert set(scr.resolve(screens.defaults())) == {o.name for o in scr.all_options()}
    skip = scr.skip_option
    assert skip is None or (skip.name == f"skip_{scr.name}_screen" and skip.default is False)
    assert all(screens.aliases()[old] == skip.name for old in scr.skip_aliases)


@pytest.mark.parametrize("scr", ALL, ids=IDS)
def test_checked_options_refuse_nonsense_with_a_curate_error(scr: Screen) -> None:
    for o in scr.all_options():
        if o.check is not None:
            with pytest.raises(CurateError, match=o.name):
                o.check(object())


@pytest.mark.parametrize("scr", ALL, ids=IDS)
def test_output_has_the_common_shape_and_is_deterministic(scr: Screen, tmp_path: Path) -> None:
    ctx = _context(tmp_path, no_face="keep")
    first = scr.run(ctx)
    first.validate(scr, ctx.n_rows(scr.level))
    assert (
        first.reject.dtype == bool
        and np.asarray(first.score, dtype=float).shape == first.reject.shape
    )
    again = scr.run(_context(tmp_path / "again", no_face="keep"))
    np.testing.assert_array_equal(first.reject, again.reject)
    np.testing.assert_array_equal(np.asarray(first.score, float), np.asarray(again.score, float))
    assert list(first.reason) == list(again.reason)
    if scr.level == "tuple" and first.blame is not None:
        assert set(first.blame) == set(ctx.roles)
        for role, hit in first.blame.items():  # a blamed member belongs to a rejected tuple
            assert not (hit & ~first.reject).any(), role


def test_reason_codes_and_options_are_unique_across_screens() -> None:
    codes = [r.code for r in screens.reasons()]
    names = [o.name for s in ALL for o in s.options]
    assert len(codes) == len(set(codes)) and len(names) == len(set(names))
    # the report lists tuple screens' codes first, as the reason column does
    levels = [screens.screen_of(c).level for c in codes]
    assert levels == sorted(levels, key=lambda lv: lv != "tuple")


def test_run_order_is_each_screens_declared_order_not_import_order() -> None:
    assert screens.names() == [
        "faces",
        "label",
        "not_face",
        "quality",
        "near_duplicates",
        "boundary",
    ]
    orders = [s.order for s in screens.registered() if s.level == "image"]
    assert orders == sorted(orders) and screens.get("near_duplicates").order == max(orders)


def test_registry_refuses_clashes_and_unknown_options() -> None:
    class Clash(Screen):
        name = "clash"
        level = "image"
        summary = "x"
        reasons = (Reason("side_face", "x", "#000000", "x"),)

        def run(self, ctx):  # pragma: no cover - never runs
            raise AssertionError

    with pytest.raises(TypeError, match="side_face"):
        screens.register(Clash)
    Clash.reasons = (Reason("fine_code", "x", "#000000", "x"),)
    Clash.options = (Option("max_yaw", 1, "x"),)
    with pytest.raises(TypeError, match="max_yaw"):
        screens.register(Clash)
    assert "clash" not in screens.names()
    with pytest.raises(CurateError, match="unknown screen option.*max_yw"):
        screens.resolve_settings({"max_yw": 20})
    with pytest.raises(CurateError, match="max_yaw must be"):
        screens.resolve_settings({"max_yaw": -3})


def test_validate_catches_a_screen_that_breaks_the_shape(tmp_path: Path) -> None:
    scr = screens.get("boundary")
    bad = ScreenOutput(
        score=np.zeros(3),
        reject=np.array([True, False, False]),
        reason=np.array([None, None, None], dtype=object),
    )
    with pytest.raises(CurateError, match="reason to a kept row or none to a rejected"):
        bad.validate(scr, 3)
    with pytest.raises(CurateError, match="shape"):
        bad.validate(scr, 4)
    odd = ScreenOutput(
        score=np.zeros(1), reject=np.array([True]), reason=np.array(["made_up"], dtype=object)
    )
    with pytest.raises(CurateError, match="made_up"):
        odd.validate(scr, 1)


def _docs_example() -> str:
    text = (ROOT / "docs" / "screens.md").read_text()
    return re.search(r"## Adding a screen.*?```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture
def large_image_screen():
    namespace: dict = {}
    exec(compile(_docs_example(), "docs/screens.md", "exec"), namespace)  # noqa: S102
    yield namespace["LargeImageScreen"]
    screens.unregister("large_image")


def test_worked_example_of_docs_plugs_in_everywhere(tmp_path: Path, large_image_screen) -> None:
    build, images, emb = make_build(tmp_path)
    small = [3, 17, 30]  # the images the screen rejects
    images.loc[images["image_id"].isin(small), ["width", "height"]] = 5000
    images.to_parquet(build / "images.parquet", index=False)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    out = tmp_path / "out"
    res = screen(
        build,
        out,
        embeddings=f,
        skip_faces_screen=True,
        skip_label_screen=True,
        max_side=4000,
        **NO_HYGIENE,
    )
    assert res.screens_run == ["large_image", "boundary"]
    scores = pd.read_parquet(out / "scores.parquet")
    tuples = pd.read_parquet(build / "tuples.parquet")
    # the small images left the pool: tuples anchored on one are rejected for it ...
    anchored = scores["anchor"].isin(small)
    assert anchored.any() and (~scores.loc[anchored, "keep"]).all()
    assert scores.loc[anchored, "reason"].str.contains("oversized").all()
    assert scores.loc[anchored, "member_reasons"].str.contains("anchor:oversized").all()
    assert not scores.loc[~anchored, "reason"].fillna("").str.contains("oversized").any()
    # ... and the others that held one as positive or negative were redrawn without it
    held = tuples[["positive", "negative"]].isin(small).any(axis=1) & ~tuples["anchor"].isin(small)
    assert held.any() and scores.loc[held.to_numpy(), "redrawn"].all()
    assert not scores.loc[~anchored, ["positive", "negative"]].isin(small).any(axis=None)
    first = scores[held.to_numpy()].iloc[0]
    role = next(r for r in ("positive", "negative") if tuples.loc[first.name, r] in small)
    assert f"{role}:oversized" in first["redrawn_members"]
    assert res.n_redrawn == int(held.sum())
    suspect = pd.read_parquet(out / "images_suspect.parquet")
    assert set(suspect.loc[suspect["large_image_reject"], "image_id"]) == set(small)
    assert suspect.head(3)["image_id"].isin(small).all()  # image rejects sort first
    run = json.loads((out / "run.json").read_text())
    assert run["params"]["max_side"] == 4000 and run["counts"]["rejected_images_by_screen"] == {
        "large_image": 3
    }
    # the report shows the reason in its registered colour, with a gallery of the rejected images
    html = write_report(out).read_text()
    assert "#8c564b" in html and "oversized" in html and "a random sample of 3 of 3 images" in html
    # export leaves the rejected images out
    exp = export(out, tmp_path / "exp", format="csv")
    assert not set(exp.manifest["image_id"]) & set(small) and exp.n_image_rejected == {
        "large_image": 3
    }
    # from the command line through --option; bad values are refused before any work
    r = CliRunner().invoke(
        app,
        [
            "screen",
            str(build),
            "--out",
            str(tmp_path / "cli"),
            "--embeddings",
            str(f),
            "--skip-faces-screen",
            *NO_HYGIENE_FLAGS,
            "--no-report",
            "--option",
            "max_side=4000",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "oversized" in r.output
    r = CliRunner().invoke(
        app,
        [
            "screen",
            str(build),
            "--out",
            str(tmp_path / "cli2"),
            "--embeddings",
            str(f),
            "--skip-faces-screen",
            "--no-report",
            "--option",
            "max_side=-2",
        ],
    )
    assert r.exit_code == 2 and "max_side must be a number" in r.output
    assert not (tmp_path / "cli2").exists()


def test_old_skip_option_names_still_work_as_deprecated_aliases(tmp_path: Path) -> None:
    build, images, emb = make_build(tmp_path)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    with (
        pytest.warns(DeprecationWarning, match="skip_face_screens is now called skip_faces_screen"),
        pytest.warns(DeprecationWarning, match="skip_near_duplicate_screen is now called"),
    ):
        res = screen(
            build,
            tmp_path / "lib",
            embeddings=f,
            skip_face_screens=True,
            skip_near_duplicate_screen=True,
            skip_quality_screen=True,
            skip_not_face_screen=True,
        )
    assert res.screens_run == ["label", "boundary"]
    run = json.loads((tmp_path / "lib" / "run.json").read_text())
    assert run["params"]["skip_faces_screen"] is True and "skip_face_screens" not in run["params"]
    with pytest.raises(CurateError, match="both given"):
        screens.resolve_settings({"skip_face_screens": True, "skip_faces_screen": False})
    # the command line: hidden from --help, still accepted, with a warning naming the new flag
    help_text = CliRunner().invoke(app, ["screen", "--help"]).output
    assert "--skip-faces-screen" in help_text and "--skip-face-screens" not in help_text
    r = CliRunner().invoke(
        app,
        [
            "screen",
            str(build),
            "--out",
            str(tmp_path / "cli"),
            "--embeddings",
            str(f),
            "--skip-face-screens",
            "--skip-near-duplicate-screen",
            "--skip-quality-screen",
            "--skip-not-face-screen",
            "--no-report",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "--skip-face-screens is deprecated: use --skip-faces-screen" in r.output
    run = json.loads((tmp_path / "cli" / "run.json").read_text())
    assert run["params"]["screens"] == ["label", "boundary"]


def test_every_screen_option_is_a_flag_of_curate_screen_unless_it_says_otherwise() -> None:
    help_text = CliRunner().invoke(app, ["screen", "--help"], terminal_width=200).output
    for o in screens.options().values():
        assert (o.flag in help_text) == o.cli, o.name
    assert "--center / --no-center" in help_text
