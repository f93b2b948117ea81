"""Screens and representations from other packages arrive through entry points
(``curate.plugins.load_entry_points``): a good class is registered, anything else is a
clear error naming the entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

from curate import plugins, representations, screens
from curate.errors import CurateError


class _EntryPoint:
    def __init__(self, name: str, obj: object) -> None:
        self.name, self.value, self._obj = name, f"pkg:{name}", obj

    def load(self) -> object:
        return self._obj


def _fake_entry_points(monkeypatch, group: str, *eps: _EntryPoint) -> None:
    real = metadata.entry_points
    wanted = group
    monkeypatch.setattr(
        plugins.metadata,
        "entry_points",
        lambda group=None, **kw: list(eps) if group == wanted else real(group=group, **kw),
    )


def test_a_plug_in_representation_is_registered_from_its_entry_point(monkeypatch):
    from curate.representations.base import Representation

    class Mine(Representation):
        name = "mine_for_test"
        summary = "a plug-in"
        needs_faces = False

        def compute(self, ctx):  # pragma: no cover - never run here
            raise NotImplementedError

    _fake_entry_points(monkeypatch, representations.ENTRY_POINT_GROUP, _EntryPoint("mine", Mine))
    monkeypatch.setattr(representations, "_PLUGINS_LOADED", False)
    try:
        assert "mine_for_test" in representations.choices()
    finally:
        representations.unregister("mine_for_test")


def test_a_representation_option_is_checked_and_must_be_new():
    from curate.plugins import Option, check_number
    from curate.representations.base import Representation

    class One(Representation):
        name = "one_for_test"
        summary = "a plug-in"
        options = (Option("one_side", 8, "a side", check_number("one_side", low=2)),)

        def compute(self, ctx):  # pragma: no cover - never run here
            raise NotImplementedError

    class Two(One):
        name = "two_for_test"

    representations.register(One)
    try:
        assert representations.defaults()["one_side"] == 8
        assert representations.resolve_settings({"one_side": 12})["one_side"] == 12
        with pytest.raises(CurateError, match="one_side must be a number above 2, got 1"):
            representations.resolve_settings({"one_side": 1})
        with pytest.raises(CurateError, match="unknown representation option"):
            representations.resolve_settings({"max_yaw": 30})
        with pytest.raises(TypeError, match="option 'one_side' is taken"):
            representations.register(Two)
        assert (
            One().section_anchor == "one_for_test-representation"
            and One().report(None, None) is None
        )
    finally:
        representations.unregister("one_for_test")
        representations.unregister("two_for_test")


@pytest.mark.parametrize("module", [screens, representations], ids=["screens", "representations"])
def test_an_entry_point_that_is_not_a_plug_in_class_is_a_clear_error(monkeypatch, module):
    _fake_entry_points(monkeypatch, module.ENTRY_POINT_GROUP, _EntryPoint("oops", len))
    monkeypatch.setattr(module, "_PLUGINS_LOADED", False)
    with pytest.raises(
        CurateError, match=r"entry point oops = pkg:oops of group curate\.\w+ is not a curate"
    ):
        module._load_plugins()


def test_a_plug_in_screen_from_its_entry_point_gets_a_flag_a_report_section_and_export_columns(
    tmp_path,
):
    """A package that ships a screen through the ``curate.screens`` entry point (here a
    distribution on the path, no file of curate touched) gets its ``--max-side`` and
    ``--skip-large-image-screen`` flags, runs in ``curate screen``, has its report
    section, and its verdict reaches ``curate export``."""
    import json
    import re

    import pandas as pd
    from builders import make_build, write_embeddings

    curate = _install_documented_plugin(
        tmp_path,
        doc="screens.md",
        heading="Adding a screen",
        module="largescreen",
        entry_point="[curate.screens]\nlarge_image = largescreen:LargeImageScreen\n",
    )

    help_text = curate("screen", "--help")
    assert "--max-side" in help_text and "--skip-large-image-screen" in help_text
    build, images, emb = make_build(tmp_path)
    big = [3, 17, 30]
    images.loc[images["image_id"].isin(big), ["width", "height"]] = 5000
    images.to_parquet(build / "images.parquet", index=False)
    f = write_embeddings(tmp_path / "e.parquet", images, emb)
    out = tmp_path / "screen"
    curate(
        "screen",
        str(build),
        "--out",
        str(out),
        "--embeddings",
        str(f),
        "--max-side",
        "4000",
        "--skip-faces-screen",
        "--skip-label-screen",
        "--skip-quality-screen",
        "--skip-not-face-screen",
        "--skip-near-duplicates-screen",
    )
    run = json.loads((out / "run.json").read_text())
    assert (
        run["params"]["screens"] == ["large_image", "boundary"]
        and run["params"]["max_side"] == 4000
    )
    suspect = pd.read_parquet(out / "images_suspect.parquet")
    assert set(suspect.loc[suspect["large_image_reject"], "image_id"]) == set(big)
    html = (out / "report.html").read_text()
    section = re.search(
        r'<section id="large_image"><h2>Large image screen</h2>(.*?)</section>', html, re.S
    )
    assert section and "3 of" in section.group(1) and "oversized" in section.group(1)
    assert 'href="#large_image"' in html
    curate("export", str(out), "--out", str(tmp_path / "hf"), "--format", "hf")
    meta = pd.read_parquet(next((tmp_path / "hf").rglob("*.parquet")))
    assert set(meta.loc[meta["reasons"].map(lambda r: "oversized" in list(r)), "image_id"]) == set(
        big
    )


def test_a_plug_in_representation_from_its_entry_point_gets_a_flag_and_a_report_section(tmp_path):
    """A package that ships a representation through the ``curate.representations`` entry
    point (docs/representations.md's example, a distribution on the path, no file of curate
    touched) gets its ``--pixels-side`` flag, is a choice of ``--representation``, and its
    setting reaches its vectors, ``run.json`` and its section of the report."""
    import json
    import re

    import pandas as pd
    from builders import make_build

    curate = _install_documented_plugin(
        tmp_path,
        doc="representations.md",
        heading="Adding a representation",
        module="pixelrep",
        entry_point="[curate.representations]\npixels = pixelrep:Pixels\n",
    )

    help_text = curate("screen", "--help")
    assert "--pixels-side" in help_text and "pixels" in help_text
    build, _, _ = make_build(tmp_path)
    out = tmp_path / "screen"
    curate(
        "screen",
        str(build),
        "--out",
        str(out),
        "--representation",
        "pixels",
        "--pixels-side",
        "6",
        "--skip-faces-screen",
        "--skip-quality-screen",
        "--skip-not-face-screen",
        "--skip-near-duplicates-screen",
    )
    run = json.loads((out / "run.json").read_text())
    assert run["params"]["pixels_side"] == 6
    assert run["params"]["representation"]["used"] == "pixels"
    emb = pd.read_parquet(out / "embeddings.parquet")
    assert len(emb["embedding"].iat[0]) == 36  # 6 x 6 pixels
    html = (out / "report.html").read_text()
    section = re.search(
        r'<section id="pixels-representation"><h2>Pixels representation</h2>(.*?)</section>',
        html,
        re.S,
    )
    assert section and "6 x 6 thumbnails" in section.group(1)
    assert 'href="#pixels-representation"' in html


def _install_documented_plugin(
    tmp_path: Path, *, doc: str, heading: str, module: str, entry_point: str
) -> Callable[..., str]:
    """Install the worked example under ``## heading`` of docs/``doc`` as the module ``module``
    of a distribution whose entry point is ``entry_point`` (its ``@register`` removed: the
    entry point registers it), and return a runner of ``python -m curate`` that sees it."""
    root = Path(__file__).resolve().parents[1]
    found = re.search(
        rf"## {heading}.*?```python\n(.*?)```", (root / "docs" / doc).read_text(), re.S
    )
    assert found, f"docs/{doc} has no worked example under {heading!r}"
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(found.group(1).replace("@register\n", ""))
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_point)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)])}

    def curate(*args: str) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "curate", *args], env=env, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    return curate
