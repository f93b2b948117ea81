"""The report's review view: its data (curate.report.review), `curate report --decisions`, and
a review clicked through in headless Chromium on the bundled synthetic example, downloaded as
decisions.csv and applied by `curate export --decisions` (tests/review_driver.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from review_driver import needs_browser, open_browser, wait_file, wait_ready
from typer.testing import CliRunner

from bench.common.screen_folder import LABELS, make_screen_dir
from curate.cli import app
from curate.errors import CurateError
from curate.export import export, image_rejects
from curate.report import load_screen_dir, write_report
from curate.report.review import REVIEW_SUSPICION, review_table

ROOT = Path(__file__).resolve().parents[1]


def _data(html: str, element: str = "rv-data"):
    return json.loads(re.search(rf'id="{element}">(.*?)</script>', html, re.S).group(1))


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory) -> Path:
    return make_screen_dir(tmp_path_factory.mktemp("review"))["screen"]


def test_review_data_lists_every_screened_image_with_thumbnails_for_the_flagged(
    fabricated, tmp_path
):
    html = write_report(fabricated, tmp_path / "r.html").read_text(encoding="utf-8")
    d, thumbs = _data(html), _data(html, "rv-thumbs")
    s = pd.read_parquet(fabricated / "images_suspect.parquet").sort_values("image_id")
    assert d["id"] == s["image_id"].tolist()
    assert d["classes"] == sorted(LABELS)
    assert [d["classes"][k] for k in d["label"]] == s["label"].tolist()
    rejected = (
        s["face_reject"].to_numpy() if "face_reject" in s else s["face_reason"].notna().to_numpy()
    )
    assert d["rejected"] == rejected.astype(int).tolist()
    flagged = rejected | (s["suspicion"].to_numpy() >= REVIEW_SUSPICION)
    assert [t >= 0 for t in d["thumb"]] == flagged.tolist() and len(thumbs) == int(flagged.sum())
    assert d["flagged"] == flagged.astype(int).tolist()
    paths = [d["dirs"][k] + n for k, n in zip(d["dir"], d["name"], strict=True)]
    assert paths == s["path"].tolist()
    # the reason of a rejected image is the screens' code, never recomputed
    first = s[rejected].iloc[0]
    i = d["id"].index(int(first["image_id"]))
    assert d["reasons"][d["reason"][i] - 1] == first["face_reason"]
    assert re.search(r"36 screened images; thumbnails are embedded for the \d+ that", html)
    # a cap on the thumbnails is said in the report
    capped = write_report(fabricated, tmp_path / "c.html", max_thumbnails=2).read_text(
        encoding="utf-8"
    )
    assert len(_data(capped, "rv-thumbs")) == 2
    assert f"embeds thumbnails for 2 of the {int(flagged.sum())} images" in capped


def test_report_loads_decisions_and_keys_the_browser_storage_by_run_and_file(fabricated, tmp_path):
    dec = tmp_path / "decisions.csv"
    dec.write_text(
        "image_id,path,decision,label,verdict,suspicion\n3,,keep,,,\n4,,relabel,sad,,\n5,,drop,,,\n"
    )
    plain = _data(write_report(fabricated, tmp_path / "a.html").read_text(encoding="utf-8"))
    r = CliRunner().invoke(
        app,
        [
            "report",
            str(fabricated),
            "--out-file",
            str(tmp_path / "b.html"),
            "--decisions",
            str(dec),
        ],
    )
    assert r.exit_code == 0, r.output
    html = (tmp_path / "b.html").read_text(encoding="utf-8")
    loaded = _data(html)
    sad = loaded["classes"].index("sad")
    assert loaded["decisions"] == {"3": ["keep"], "4": ["relabel", sad], "5": ["drop"]}
    assert "Decisions loaded from decisions.csv (3 images)" in html
    run_key, file_key = loaded["run"].split(":")
    assert plain["run"] == f"{run_key}:none" and file_key != "none"
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,decision\n999,keep\n")
    with pytest.raises(
        CurateError, match="line 2: image_id 999 is not an image of this screen run"
    ):
        write_report(fabricated, tmp_path / "c.html", decisions=bad)


def test_review_table_without_images_suspect_is_a_note(fabricated, tmp_path):
    run = load_screen_dir(fabricated)
    run.suspect = None
    assert review_table(run) is None
    from curate.report import render_html

    html = render_html(run)
    assert "there are no per-image verdicts to review" in html and "<script>" not in html


# --------------------------------------------------------------------- the bundled example, end to end
@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """`curate example`, `build-tuples` and `screen` as examples/quickstart.sh runs them."""
    out = tmp_path_factory.mktemp("example") / "run"
    env = {
        "CURATE": f"{sys.executable} -m curate",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
    }
    res = subprocess.run(
        ["bash", str(ROOT / "examples" / "quickstart.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=out.parent,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out / "screen"


def test_example_decisions_round_trip_through_export(example, tmp_path):
    """Without a browser: the decisions a curator would download, applied by export."""
    s = pd.read_parquet(example / "images_suspect.parquet")
    rej = s[s["label_reject"]].sort_values("image_id")
    kept = s[~s["label_reject"] & ~s["face_reject"]].sort_values("image_id")
    back, relabel, drop = rej.iloc[0], rej.iloc[1], kept.iloc[0]
    new = next(
        c
        for c in sorted(s["label"].unique())
        if c not in (relabel["label"], relabel["suggested_label"])
    )
    dec = tmp_path / "decisions.csv"
    dec.write_text(
        "image_id,path,decision,label,verdict,suspicion\n"
        f"{back['image_id']},{back['path']},keep,,label_suspect,\n"
        f"{relabel['image_id']},{relabel['path']},relabel,{new},label_suspect,\n"
        f"{drop['image_id']},{drop['path']},drop,,kept,\n"
    )
    base = export(example, tmp_path / "base", format="csv").manifest.set_index("image_id")
    res = export(example, tmp_path / "out", format="csv", decisions=dec).manifest.set_index(
        "image_id"
    )
    assert set(res.index) == set(base.index) - {drop["image_id"]} | {
        back["image_id"],
        relabel["image_id"],
    }
    assert res.loc[relabel["image_id"], "label"] == new
    assert res.loc[relabel["image_id"], "original_label"] == relabel["label"]
    assert res.loc[back["image_id"], "label"] == back["label"]


def review_round_trip(screen: Path, tmp_path: Path) -> None:
    """Relabel by keyboard (r: the suggested label) and by mouse (any class from the card's
    list), keep by keyboard, drop by mouse; reload (the decisions persist); download
    decisions.csv; export with it and check the ImageFolder; re-render with `curate report
    --decisions` and check a fresh browser shows them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    report = write_report(screen, tmp_path / "report.html")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    s = pd.read_parquet(screen / "images_suspect.parquet").set_index("image_id")
    driver = open_browser(downloads)
    try:
        driver.get(report.as_uri())
        wait_ready(driver)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors  # no CSP violation, no script error
        cards = driver.find_elements(By.CSS_SELECTOR, ".rv-card")
        ids = [int(c.get_attribute("data-id")) for c in cards[:4]]
        rejected = np.logical_or.reduce(list(image_rejects(s).values()))
        flagged = s[rejected | (s["suspicion"] >= REVIEW_SUSPICION).to_numpy()]
        # the page sorts by the suspicion it holds (4 decimals), ties by image id
        shown = [round(float(x), 4) for x in flagged["suspicion"]]
        expect = flagged.assign(i=flagged.index, shown=shown).sort_values(
            ["shown", "i"], ascending=[False, True]
        )
        assert ids == expect.index[:4].tolist()  # most suspect first
        progress = driver.find_element(By.ID, "rv-progress").text
        assert progress.startswith(f"0 of {len(flagged)} reviewed")
        lst = driver.find_element(By.ID, "rv-list")
        driver.execute_script("arguments[0].focus()", lst)  # a click would pick the card under it
        lst.send_keys("r")  # card 0: relabel to the suggested label
        lst.send_keys("k")  # card 1: keep
        drop = driver.find_element(
            By.CSS_SELECTOR, '.rv-card[data-pos="2"] button[data-act="drop"]'
        )
        drop.click()  # card 2: drop, by mouse
        other = next(
            c
            for c in sorted(s["label"].unique())
            if c not in (s.loc[ids[3], "label"], s.loc[ids[3], "suggested_label"])
        )
        Select(
            driver.find_element(By.CSS_SELECTOR, '.rv-card[data-pos="3"] .rv-pick')
        ).select_by_visible_text(other)
        assert driver.find_element(By.ID, "rv-progress").text.startswith(
            f"4 of {len(flagged)} reviewed"
        )
        state = driver.find_element(By.CSS_SELECTOR, '.rv-card[data-pos="0"] .rv-state').text
        assert state == f"relabel \u2192 {s.loc[ids[0], 'suggested_label']}"
        driver.refresh()  # saved in this browser, keyed by the run
        wait_ready(driver)
        assert driver.find_element(By.ID, "rv-progress").text.startswith(
            f"4 of {len(flagged)} reviewed"
        )
        # the decision filter shows the drop alone
        Select(driver.find_element(By.ID, "rv-decision")).select_by_value("drop")
        assert [
            c.get_attribute("data-id") for c in driver.find_elements(By.CSS_SELECTOR, ".rv-card")
        ] == [str(ids[2])]
        driver.find_element(By.ID, "rv-download").click()
        csv = wait_file(downloads / "decisions.csv")
    finally:
        driver.quit()
    got = pd.read_csv(csv, keep_default_na=False)
    assert got.columns.tolist() == ["image_id", "path", "decision", "label", "verdict", "suspicion"]
    got = got.set_index("image_id")
    assert sorted(got.index) == sorted(ids)
    assert (
        got.loc[ids[0], "decision"] == "relabel"
        and got.loc[ids[0], "label"] == s.loc[ids[0], "suggested_label"]
    )
    assert got.loc[ids[1], "decision"] == "keep" and got.loc[ids[2], "decision"] == "drop"
    assert got.loc[ids[3], "decision"] == "relabel" and got.loc[ids[3], "label"] == other
    assert got.loc[ids[1], "path"] == s.loc[ids[1], "path"]
    assert abs(got.loc[ids[1], "suspicion"] - s.loc[ids[1], "suspicion"]) < 1e-3

    base = export(screen, tmp_path / "base", format="csv").manifest.set_index("image_id")
    r = CliRunner().invoke(
        app, ["export", str(screen), "--out", str(tmp_path / "clean"), "--decisions", str(csv)]
    )
    assert r.exit_code == 0, r.output
    clean = tmp_path / "clean"  # an ImageFolder of links: label folder -> the image it points at
    exported = {
        str(Path(os.readlink(p)).resolve()): p.parent.name
        for p in clean.rglob("*")
        if p.is_symlink()
    }
    for i, label in (
        (ids[0], s.loc[ids[0], "suggested_label"]),
        (ids[1], s.loc[ids[1], "label"]),
        (ids[3], other),
    ):
        assert exported[str(Path(s.loc[i, "path"]).resolve())] == label
    assert str(Path(s.loc[ids[2], "path"]).resolve()) not in exported
    assert len(exported) == len(set(base.index) - {ids[2]} | {ids[0], ids[1], ids[3]})
    record = json.loads((clean / "export.json").read_text())
    assert (
        record["counts"]["decisions"]["relabel"] == 2 and record["counts"]["decisions"]["drop"] == 1
    )

    # the decisions loaded into a fresh report, in a fresh browser
    again = write_report(screen, tmp_path / "again.html", decisions=csv)
    driver = open_browser(downloads)
    try:
        driver.get(again.as_uri())
        wait_ready(driver)
        assert (
            "decisions in all: 1 keep, 1 drop, 2 relabel"
            in driver.find_element(By.ID, "rv-progress").text
        )
    finally:
        driver.quit()


@pytest.mark.browser
@needs_browser
def test_review_in_chromium_then_export(example, tmp_path):
    review_round_trip(example, tmp_path)


def test_readme_review_loop_is_true(example):
    """The README's loop uses real options, and its progress line counts this example."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Review in the browser, then export")[1].split("\n## ")[0]
    block = section.split("```bash")[1].split("```")[0]
    for line in block.splitlines():
        if line.startswith("curate "):
            words = line.split("#")[0].split()
            help_text = CliRunner().invoke(app, [words[1], "--help"], terminal_width=200).output
            for opt in (w for w in words if w.startswith("--")):
                assert opt in help_text, (line, opt)
        elif line.startswith("bash "):
            assert (ROOT / line.split()[1]).is_file()
    shown = int(re.search(r'"\d+ of (\d+) reviewed"', section).group(1))
    s = pd.read_parquet(example / "images_suspect.parquet")
    rejected = np.logical_or.reduce(list(image_rejects(s).values()))
    assert shown == int((rejected | (s["suspicion"] >= REVIEW_SUSPICION).to_numpy()).sum())


@pytest.mark.browser
@pytest.mark.slow
@needs_browser
def test_review_in_chromium_then_export_on_fer2013_val(shared_data, tmp_path):
    """The same round trip on real data: FER2013 PublicTest, built and screened with the
    defaults (embeddings and face analyses come from the shared cache after a first run)."""
    from curate.build import build_tuples
    from curate.screen import screen as run_screen

    build_tuples(shared_data / "fer2013" / "val", tmp_path / "tuples", per_anchor=3, seed=0)
    run_screen(tmp_path / "tuples", tmp_path / "screen")
    review_round_trip(tmp_path / "screen", tmp_path)


@pytest.mark.browser
@needs_browser
def test_csp_runs_the_hashed_script_and_nothing_else(fabricated, tmp_path):
    """A script added to the report (or an edited review script) does not run: the page's
    policy allows exactly the review script's sha256."""
    from selenium.webdriver.common.by import By

    html = write_report(fabricated, tmp_path / "r.html").read_text(encoding="utf-8")
    planted = tmp_path / "planted.html"
    planted.write_text(
        html.replace("</footer>", "</footer><script>document.title = 'pwned';</script>"),
        encoding="utf-8",
    )
    edited = tmp_path / "edited.html"
    edited.write_text(
        html.replace('listEl.dataset.ready = "1";', 'listEl.dataset.ready = "2";'), encoding="utf-8"
    )
    driver = open_browser(tmp_path)
    try:
        driver.get(planted.as_uri())
        wait_ready(driver)  # the review script still runs
        assert driver.title != "pwned"
        assert any("Content Security Policy" in e["message"] for e in driver.get_log("browser"))
        assert "<script>alert(1)</script>" in driver.find_element(
            By.ID, "rv-list"
        ).text or "<script>alert(1)</script>" in driver.execute_script(
            "return Array.from(document.querySelectorAll('.rv-card b')).map(b => b.textContent).join('|')"
        )
        driver.get(edited.as_uri())
        assert (
            driver.execute_script("return document.getElementById('rv-list').dataset.ready") is None
        )
    finally:
        driver.quit()


def test_review_data_carries_the_face_measures(fabricated, tmp_path):
    """A side face's chip can say how turned it is, an occluded face's how covered: the data
    holds |yaw|, occlusion and the face screen's score of each image, from images_suspect."""
    html = write_report(fabricated, tmp_path / "r.html").read_text(encoding="utf-8")
    d = _data(html)
    s = pd.read_parquet(fabricated / "images_suspect.parquet").sort_values("image_id")
    face = d["face"]
    for key, col, digits in (("occlusion", "occlusion", 2), ("score", "face_score", 3)):
        want = [None if pd.isna(x) else round(float(x), digits) for x in s[col]]
        assert face[key] == want
    assert face["yaw"] == [None if pd.isna(x) else round(abs(float(x)), 1) for x in s["yaw"]]
    side = s[s["face_reason"].fillna("").str.contains("side_face")]
    assert len(side) and all(face["yaw"][d["id"].index(int(i))] > 30 for i in side["image_id"])


def test_review_data_without_face_columns_has_no_face_measures(tmp_path):
    screen = make_screen_dir(tmp_path / "nofaces", faces=False)["screen"]
    d = _data(write_report(screen, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "face" not in d


@pytest.mark.browser
@needs_browser
def test_review_shows_face_measures_and_sorts_by_the_face_threshold(fabricated, tmp_path):
    """On the page: a side face's chip gives its |yaw| in degrees, an occluded face's chip its
    occlusion; the face sort puts the faces nearest their threshold first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    report = write_report(fabricated, tmp_path / "r.html")
    s = pd.read_parquet(fabricated / "images_suspect.parquet").set_index("image_id")
    driver = open_browser(tmp_path)
    try:
        driver.get(report.as_uri())
        wait_ready(driver)
        Select(driver.find_element(By.ID, "rv-reason")).select_by_value("all")
        Select(driver.find_element(By.ID, "rv-sort")).select_by_value("face")
        cards = driver.find_elements(By.CSS_SELECTOR, ".rv-card")
        ids = [int(c.get_attribute("data-id")) for c in cards]
        score = s.loc[ids, "face_score"].to_numpy(float)
        near = np.abs(np.log(score[np.isfinite(score)]))
        assert len(near) >= 4 and (np.diff(near) >= -1e-3).all()  # nearest the line first
        chips = {
            int(c.get_attribute("data-id")): [
                x.text for x in c.find_elements(By.CSS_SELECTOR, ".chip")
            ]
            for c in cards
        }
        for i, texts in chips.items():
            reason = s.loc[i, "face_reason"]
            if isinstance(reason, str) and "side_face" in reason:
                assert f"side_face {round(abs(s.loc[i, 'yaw']), 1):.1f}\u00b0" in texts
            if isinstance(reason, str) and "occluded" in reason:
                assert f"occluded {s.loc[i, 'occlusion']:.2f}" in texts
        assert any("\u00b0" in t for texts in chips.values() for t in texts)
        # every card's reasons carry both measures as a tooltip, kept faces too
        first = cards[0]
        i = int(first.get_attribute("data-id"))
        title = first.find_element(By.CSS_SELECTOR, ".rv-chips").get_attribute("title")
        assert title == (
            f"|yaw| {round(abs(s.loc[i, 'yaw']), 1):.1f}\u00b0, "
            f"occlusion {round(s.loc[i, 'occlusion'], 2):.2f}"
        )
    finally:
        driver.quit()
