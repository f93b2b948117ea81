"""Tests of the HTML screening report (curate.report) against a fabricated screen folder
(``bench/common/screen_folder.py``: ``make_screen_dir`` writes what ``curate screen`` writes)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import norm

from bench.common.screen_folder import EVIL_NAME, make_screen_dir
from curate.errors import CurateError
from curate.report import load_screen_dir, render_html, write_report
from curate.report.alerts import calibration_misfit, random_weights
from curate.report.sensitivity import kept_share_grid
from curate.report.tables import counts_by_class, negative_confusion, reason_flags
from curate.report.thumbnails import Thumbnails

SECTIONS = ["Summary", "The boundary", "Sensitivity to alpha", "Rejections", "Faces", "Galleries"]


# ----------------------------------------------------------------------------- HTML parsing
class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in: list[str] = []
        self.headings: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("h2", "h3", "h4"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("h2", "h3", "h4") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    p.close()
    return p


def external_references(html: str) -> list[str]:
    """Every src/href/url() that is not an inline data: URI or a # anchor."""
    p = parse(html)
    refs = [
        v
        for _, attrs in p.tags
        for k, v in attrs.items()
        if k in ("src", "href", "srcset", "poster", "action", "data", "background") and v
    ]
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", html)
    refs += re.findall(r"@import\s+['\"]?([^'\";]+)", html)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def check_scripts(html: str) -> None:
    """The only scripts are the review's: one inline script allowed by its sha256 in the
    Content-Security-Policy (no 'unsafe-inline'), and JSON data blocks in which no ``<``
    can end the block; nothing else in the page can run."""
    policy = re.search(
        r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html
    ).group(1)
    assert "unsafe-inline" not in policy.split("script-src")[-1] and "unsafe-eval" not in policy
    assert policy.startswith("default-src 'none'; img-src data:;")
    p = parse(html)
    scripts = [a for t, a in p.tags if t == "script"]
    code = [a for a in scripts if "type" not in a]
    data = [a for a in scripts if a.get("type") == "application/json"]
    assert len(code) == 1 and len(data) == 2 and len(scripts) == 3
    bodies = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    for attrs, body in bodies:
        if "application/json" in attrs:
            assert "<" not in body and ">" not in body
            json.loads(body)
        else:
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
            assert f"script-src 'sha256-{digest}'" in policy
            assert (
                "innerHTML" not in body and "insertAdjacentHTML" not in body and "eval(" not in body
            )
    assert not any(k.startswith("on") for _, a in p.tags for k in a)  # no inline event handlers


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> dict[str, Any]:
    info = make_screen_dir(tmp_path_factory.mktemp("triplets"))
    info["report"] = write_report(info["screen"])
    info["html"] = info["report"].read_text(encoding="utf-8")
    return info


# ----------------------------------------------------------------------------- tests
def test_report_written_with_every_section_and_counts(screen):
    assert screen["report"] == screen["screen"] / "report.html"
    p = parse(screen["html"])
    for title in SECTIONS:
        assert title in p.headings
    assert 'class="banner' not in screen["html"]  # a clean run raises no alert
    s = screen["scores"]
    kept, rejected = int(s["keep"].sum()), int((~s["keep"]).sum())
    text = " ".join(p.text)
    assert f"{rejected:,} of {len(s):,} tuples rejected" in text
    assert f"{kept:,}" in text and "kept (" in text
    # counts by reason in the table equal the planted verdicts
    for code in ("positive_too_far", "negative_too_close", "side_face", "occluded", "no_face"):
        n = int(s["reason"].fillna("").str.contains(code).sum())
        assert n > 0, code
        assert re.search(rf">{code}</span></td><td class=num>{n:,}</td>", screen["html"]), code


def test_report_is_self_contained(screen):
    html = screen["html"]
    assert external_references(html) == []
    p = parse(html)
    imgs = [a["src"] for t, a in p.tags if t == "img"]
    assert len(imgs) > 10 and all(src.startswith("data:image/") for src in imgs)
    assert not any(t in ("link", "iframe", "object", "embed") for t, _ in p.tags)
    check_scripts(html)
    review = json.loads(re.search(r'id="rv-thumbs">(.*?)</script>', html).group(1))
    assert review and all(u.startswith("data:image/jpeg;base64,") for u in review)
    assert "http://" not in html and "https://" not in html
    # the detector itself finds an external reference
    assert external_references('<img src="http://x.invalid/a.png"><a href="#ok">') == [
        "http://x.invalid/a.png"
    ]
    assert external_references("<div style=\"background:url('//cdn.invalid/a.png')\">") == [
        "//cdn.invalid/a.png"
    ]


def test_data_strings_are_escaped(screen):
    html = screen["html"]
    p = parse(html)
    check_scripts(html)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = "".join(t for t in p.text if not t.startswith("{") and not t.startswith("["))
    assert "<script>alert(1)</script>" in text  # shown as text, in tables and galleries
    # in the review data the label is JSON text, its < and > escaped
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in html
    # the quoted file name is text, and no attribute was broken open
    assert EVIL_NAME in text or "say &quot;cheese&quot;" in html
    assert 'say "cheese"' not in re.sub(r">[^<]*<", "><", html)  # never raw inside a tag
    titles = [a.get("title") for _, a in p.tags if a.get("title") and "cheese" in a.get("title")]
    assert titles and all(tt.endswith(EVIL_NAME) for tt in titles)
    assert not any(k in ("now'.png", 'cheese"') for _, a in p.tags for k in a)


def test_galleries_show_the_most_abnormal_first_and_are_capped(screen, tmp_path):
    info = screen
    out = write_report(info["screen"], tmp_path / "small.html", max_gallery=4)
    html = out.read_text(encoding="utf-8")
    s = info["scores"]
    n_pos = int(s["reason"].fillna("").str.contains("positive_too_far").sum())
    assert f"the 2 most abnormal of {n_pos:,} tuples" in html
    first_tuple = re.search(r'<div class="tuple"><div class="meta"><div>tuple (\d+)</div>', html)
    assert first_tuple and first_tuple.group(1) == "0"  # planted d_ap = 1.99
    second_group = html.split("negative_too_close</span> \u2014 the")[1]
    assert re.search(r"<div>tuple (\d+)</div>", second_group).group(1) == "1"  # planted d_an
    n_sus = int((pd.read_parquet(info["screen"] / "images_suspect.parquet")["suspicion"] > 0).sum())
    # the fabricated run has no label screen: the fallback gallery of the most blamed images
    assert f"Showing the 4 images most often in rejected tuples of {n_sus:,} images" in html
    # bounded: 2 groups x 2 tuples x 3 images + 4 suspect + 3 face groups x 2
    thumbs = len(re.findall(r'<div class="thumb">', html))
    assert thumbs <= 2 * 2 * 3 + 4 + 3 * 2
    assert len(re.findall(r'<div class="thumb">', screen["html"])) > thumbs  # max_gallery=24


def test_sensitivity_grid_matches_brute_force():
    rng = np.random.default_rng(1)
    n = 500
    d_ap, d_neg = rng.normal(1.0, 0.3, n), rng.normal(1.3, 0.3, n)
    ok = rng.random(n) > 0.1
    mu, sigma = 1.4, 0.25
    alphas = [0.2, 0.001, 0.05, 0.01, 0.1]  # unsorted on purpose
    grid = kept_share_grid(d_ap, d_neg, ok, mu, sigma, alphas, alphas[::-1])
    for i, ap in enumerate(alphas):
        for j, an in enumerate(alphas[::-1]):
            tp = mu + norm.ppf(1 - ap) * sigma
            tn = mu - norm.ppf(1 - an) * sigma
            expected = sum(ok[k] and d_ap[k] <= tp and d_neg[k] >= tn for k in range(n)) / n
            assert grid[i, j] == pytest.approx(expected)
    # monotone: raising either alpha never keeps more
    order = np.argsort(alphas)
    g = kept_share_grid(
        d_ap, d_neg, ok, mu, sigma, np.array(alphas)[order], np.array(alphas)[order]
    )
    assert np.all(np.diff(g, axis=0) <= 1e-12) and np.all(np.diff(g, axis=1) <= 1e-12)


def test_sensitivity_reproduces_the_screen_at_its_own_alphas(screen):
    s = screen["scores"]
    actual = f"{100 * s['keep'].mean():.1f}%"
    cell = re.search(r'outline:2px solid #000">([^<]+)</td>', screen["html"])
    assert cell and cell.group(1) == actual
    assert "the screen used another rule" not in screen["html"]


def test_tables_count_reasons_and_classes():
    s = pd.DataFrame(
        {
            "anchor_label": ["a", "a", "b", "b", "b"],
            "negative_label": ["b", "b", "a", "a", "a"],
            "keep": [True, False, False, False, True],
            "reason": [None, "positive_too_far;side_face", "negative_too_close", "side_face", None],
            "d_an": [1.0, 1.0, 0.2, 1.0, 1.0],
        }
    )
    flags = reason_flags(s["reason"])
    assert list(flags.columns) == ["positive_too_far", "negative_too_close", "side_face"]
    assert flags.sum().tolist() == [1, 1, 2]
    by = counts_by_class(s, flags)
    assert by.loc["a", ["tuples", "kept", "rejected", "side_face"]].tolist() == [2, 1, 1, 1]
    assert by.loc["b", "rejected_share"] == pytest.approx(2 / 3)
    flagged, total = negative_confusion(s, flags, t_neg=0.5)
    assert flagged.loc["b", "a"] == 1 and flagged.to_numpy().sum() == 1
    assert total.loc["b", "a"] == 3 and total.loc["a", "b"] == 2


def test_quadruplet_report_counts_every_negative_pair(tmp_path):
    info = make_screen_dir(tmp_path, quadruplet=True)
    run = load_screen_dir(info["screen"])
    assert run.is_quadruplet
    s = info["scores"]
    flags = reason_flags(s["reason"])
    flagged, _ = negative_confusion(s, flags, info["t_neg"])
    tn = info["t_neg"]
    close = s["reason"].fillna("").str.contains("negative_too_close")
    expected = int(
        ((s["d_an"] < tn) & close).sum()
        + ((s["d_an2"] < tn) & close).sum()
        + ((s["d_nn2"] < tn) & close).sum()
    )
    assert flagged.to_numpy().sum() == expected
    row = s.loc[2]  # planted close negative-negative2 pair
    assert flagged.loc[row["negative_label"], row["negative2_label"]] >= 1
    html = write_report(info["screen"]).read_text()
    assert "quadruplets" in html and "d_nn2 = " in html
    assert '<div class="role">negative2</div>' in html
    cell = re.search(r'outline:2px solid #000">([^<]+)</td>', html)
    assert cell.group(1) == f"{100 * s['keep'].mean():.1f}%"


def test_optional_inputs_missing_give_notes_not_crashes(tmp_path):
    info = make_screen_dir(tmp_path, faces=False)
    (info["build"] / "images.parquet").unlink()
    (info["screen"] / "boundary.json").unlink()
    html = write_report(info["screen"]).read_text()
    assert "faces.parquet is missing" in html
    assert "boundary.json is missing" in html
    assert "cannot be recomputed for other alphas" in html
    assert "image paths come from images_suspect.parquet" in html
    # thumbnails still come from the suspect table's paths
    assert html.count('<img src="data:image/png') > 0
    assert "Summary" in parse(html).headings


def test_no_image_table_at_all_skips_thumbnails_with_a_note(tmp_path):
    info = make_screen_dir(tmp_path, faces=False, write_images=False)
    (info["build"] / "images.parquet").unlink()
    (info["screen"] / "images_suspect.parquet").unlink()
    (info["screen"] / "run.json").unlink()
    html = write_report(info["screen"]).read_text()
    assert "no image table was found" in html
    assert "run.json is missing" in html
    assert "data:image/png" not in html and "data:image/jpeg" not in html


def test_alerts_in_plain_words(tmp_path):
    info = make_screen_dir(tmp_path / "a", random_weights=True, misfit=True, no_face_share=0.5)
    html = write_report(info["screen"]).read_text()
    assert '<div class="banner red">The backbone ran with RANDOM weights' in html
    assert "The null does not fit this data" in html
    assert re.search(r"No face was found in \d+ of 36 images", html)
    assert calibration_misfit(0.2, 0.05, 20000) and not calibration_misfit(0.055, 0.05, 20000)
    run = load_screen_dir(info["screen"])
    assert random_weights(run) is not None
    run.run["inputs"]["random_weights"] = False
    run.run["params"]["weights"] = None
    assert random_weights(run) is None
    run.run["params"]["random_weights"] = True
    assert random_weights(run) is not None
    assert not calibration_misfit(0.12, 0.05, 50)  # too few pairs to tell


def test_same_inputs_same_bytes(screen, tmp_path):
    again = write_report(screen["screen"], tmp_path / "again.html").read_text(encoding="utf-8")
    assert again == screen["html"]


def test_missing_scores_is_a_clear_error(tmp_path):
    with pytest.raises(CurateError, match="scores.parquet not found") as exc:
        write_report(tmp_path)
    assert "curate screen" in exc.value.hint
    pd.DataFrame({"d_ap": [1.0]}).to_parquet(tmp_path / "scores.parquet")
    with pytest.raises(CurateError, match="lacks column"):
        write_report(tmp_path)


def test_thumbnails_of_odd_images(tmp_path):
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(
        tmp_path / "a.png"
    )
    Image.new("RGBA", (300, 200), (255, 0, 0, 128)).save(tmp_path / "b.png")
    Image.new("CMYK", (40, 40), (0, 50, 50, 0)).save(tmp_path / "c.jpg")
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8\xff not really")
    th = Thumbnails(size=96)
    for name in ("a.png", "b.png", "c.jpg"):
        uri, why = th.get(str(tmp_path / name))
        assert why is None and uri.startswith("data:image/")
    uri, why = th.get(str(tmp_path / "d.jpg"))
    assert uri is None and "image" in why
    assert th.get(str(tmp_path / "nope.png")) == (None, "file not found")
    assert th.count == 3


def test_cli_report(screen, tmp_path):
    from typer.testing import CliRunner

    import curate.cli.report  # noqa: F401  (registers the command)
    from curate.cli._app import app

    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", str(screen["screen"]), "--out-file", str(out)])
    assert res.exit_code == 0, res.output
    assert str(out) in res.output.replace("\n", "")
    assert out.read_text(encoding="utf-8") == screen["html"]
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert "screen output folder not found" in res.output


def test_boundary_without_empirical_null_or_pair_sample_says_so(screen):
    run = load_screen_dir(screen["screen"])
    run.boundary["nulls"].pop("empirical")
    run.boundary.pop("random_pair_distances")
    run.boundary.pop("calibration")
    html = render_html(run)
    assert "No empirical null was fitted in this run." in html
    assert "holds no random_pair_distances sample" in html
    assert "boundary.json has no calibration check." in html
    assert "Summary" in parse(html).headings


def test_report_of_a_default_screen_shows_class_nulls_label_suspects_and_calibration(tmp_path):
    from builders import make_build, write_embeddings

    from curate.screen import screen as run_screen

    build, images, emb = make_build(tmp_path)
    out = tmp_path / "out"
    run_screen(
        build,
        out,
        embeddings=write_embeddings(tmp_path / "e.parquet", images, emb),
        skip_faces_screen=True,
    )
    html = write_report(out).read_text(encoding="utf-8")
    text = " ".join(parse(html).text)
    b = json.loads((out / "boundary.json").read_text())
    assert "Same-class nulls and T_pos" in text and "Class-pair nulls: T_neg" in text
    first = b["class_nulls"]["same"][0]
    assert first["class"] == "angry" and f"{first['t_pos']:.3f}" in text
    # calibration next to alpha, for the pairs the boundary should accept
    acc = b["class_nulls"]["calibration"]["accepted_pairs"]
    assert f"{100 * acc['share_above_t_pos']:.2f}%" in text
    # the label gallery: labelled X, looks like Y, the planted image first
    gallery = text.split("Label suspects")[1]
    first_box = gallery.split("labelled")[1]
    assert re.search(r"angry\s*,\s*looks like\s+happy", first_box) and "angry/005.png" in first_box
    # the alpha grid is recomputed from the standardised distances: the run's cell matches
    assert "the screen used another rule" not in text and "Sensitivity to alpha" in text
    assert 'class="banner' not in html  # the class-aware null fits: no misfit warning


def test_face_sensitivity_matches_a_brute_force_count():
    from curate.report.sensitivity import face_sensitivity

    rng = np.random.default_rng(3)
    n = 60
    faces = pd.DataFrame(
        {
            "image_id": np.arange(n),
            "face_found": rng.random(n) > 0.1,
            "yaw": rng.normal(0, 25, n),
            "occlusion": rng.random(n),
        }
    )
    faces.loc[~faces["face_found"], ["yaw", "occlusion"]] = np.nan
    tuples = pd.DataFrame({r: rng.integers(0, n, 200) for r in ("anchor", "positive", "negative")})
    sens = face_sensitivity(faces, tuples, max_yaw=30.0, max_occlusion=0.5, no_face="reject")
    for row in sens.rows:
        y, o = row["max_yaw"], row["max_occlusion"]
        bad = (~faces["face_found"]) | (faces["yaw"].abs() > y) | (faces["occlusion"] > o)
        flagged = set(faces.loc[bad, "image_id"])
        assert row["images"] == pytest.approx(bad.mean())
        assert row["tuples"] == pytest.approx(tuples.isin(flagged).any(axis=1).mean())
    assert {(r["max_yaw"], r["max_occlusion"]) for r in sens.rows} >= {
        (30.0, 0.5),
        (20.0, 0.5),
        (30.0, 0.8),
    }


def test_faces_section_tables_rejections_per_class(tmp_path):
    """The faces section counts face-rejected images per expression class, by reason."""
    from html import escape

    from curate.screens.faces import rejects_by_class

    info = make_screen_dir(tmp_path)
    f = info["faces"]
    labels = pd.read_parquet(info["build"] / "images.parquet").set_index("image_id")["label"]
    by_class = rejects_by_class(f, labels.reindex(f["image_id"]).to_numpy())
    html = write_report(info["screen"]).read_text()
    assert "Face-rejected images per expression class" in html
    for r in by_class.itertuples():  # labels escaped (one of them is a script tag)
        assert f"<td>{escape(r.label)}</td><td class=num>{r.images}</td>" in html
    assert by_class.iloc[-1]["label"] == "all" and by_class.iloc[-1]["rejected"] == int(
        f["face_reject"].sum()
    )
