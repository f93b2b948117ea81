"""The report as a new user reads it (issue 17): the weights row, which member a face
reason belongs to, advice that does not go in a circle, and a file others can read."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd

from bench.common.screen_folder import make_screen_dir
from curate.models import DEFAULT_MODEL, default_model_dir
from curate.report import load_screen_dir, write_report
from curate.report.alerts import fitting_nulls, null_misfit
from curate.report.inputs import ScreenRun
from curate.report.render import weights_text


def test_weights_row_names_the_bundled_model(tmp_path):
    info = make_screen_dir(tmp_path)
    run_json = info["screen"] / "run.json"
    run = json.loads(run_json.read_text())
    run["params"]["weights"] = None  # what `curate screen` without --weights records
    run["inputs"].update(weights_source=f"run:{default_model_dir()}", weights_fingerprint="ab" * 32)
    run_json.write_text(json.dumps(run))
    assert weights_text(load_screen_dir(info["screen"])) == (
        f"bundled model {DEFAULT_MODEL} ({default_model_dir()}), sha256 abababababab\u2026"
    )
    html = write_report(info["screen"]).read_text()
    assert f"bundled model {DEFAULT_MODEL}" in html
    run["inputs"].update(weights_source="random", weights_fingerprint="random-seed0")
    run_json.write_text(json.dumps(run))
    assert weights_text(load_screen_dir(info["screen"])) == "random (--weights none)"


def test_tuple_gallery_says_which_member_a_face_reason_belongs_to(tmp_path):
    info = make_screen_dir(tmp_path)
    scores_path = info["screen"] / "scores.parquet"
    scores = pd.read_parquet(scores_path)
    # every tuple holds a rejected member (so the gallery cannot prefer clean tuples); tuple 0
    # is the most abnormal positive pair and its negative an occluded face
    scores["member_reasons"] = pd.array(["anchor:no_face"] * len(scores), dtype="string")
    scores.loc[0, "reason"] = "positive_too_far;occluded"
    scores.loc[0, "member_reasons"] = "negative:occluded"
    scores.to_parquet(scores_path, index=False)
    html = write_report(info["screen"]).read_text()
    block = re.search(
        r'<div class="tuple"><div class="meta"><div>tuple 0</div>(.*?)</div></div>(?=<div class="tuple">|</div>)',
        html,
        re.S,
    )
    assert block, "tuple 0 is not in the gallery"
    text = block.group(0)
    assert re.search(r"<div>negative: <span class=\"chip\"[^>]*>occluded</span></div>", text)
    boxes = re.findall(
        r'<div class="thumb"><div class="role">(\w+)</div>(.*?)</div></div>', text, re.S
    )
    by_role = dict(boxes)
    assert ">occluded</span>" in by_role["negative"]
    assert (
        ">occluded</span>" not in by_role["anchor"]
        and ">occluded</span>" not in by_role["positive"]
    )


def _boundary(sample: np.ndarray, null: str, fits: dict[str, tuple[float, float]]) -> dict:
    mu, sigma = fits[null]
    from curate.stats.statistical import thresholds

    tp, tn = thresholds(mu, sigma, 0.05, 0.05)
    return {
        "null": null,
        "mu": mu,
        "sigma": sigma,
        "alpha_pos": 0.05,
        "alpha_neg": 0.05,
        "t_pos": tp,
        "t_neg": tn,
        "nulls": {k: {"mu": m, "sigma": s, "d_null": None} for k, (m, s) in fits.items()},
        "calibration": {
            "n_pairs": sample.size,
            "share_above_t_pos": float(np.mean(sample > tp)),
            "share_below_t_neg": float(np.mean(sample < tn)),
            "nominal_alpha_pos": 0.05,
            "nominal_alpha_neg": 0.05,
        },
        "random_pair_distances": sample.tolist(),
    }


def _run(tmp_path, boundary: dict) -> ScreenRun:
    return ScreenRun(screen_dir=tmp_path, scores=pd.DataFrame(), boundary=boundary)


def test_null_banner_advises_a_null_that_fits_and_never_goes_in_a_circle(tmp_path):
    rng = np.random.default_rng(0)
    normal = rng.normal(1.4, 0.3, 5000)
    fits = {"theory": (1.414, 0.06), "effective": (1.414, 0.15), "empirical": (1.4, 0.3)}
    b = _boundary(normal, "effective", fits)
    assert fitting_nulls(b) == ["empirical"]
    alert = null_misfit(_run(tmp_path, b))
    assert alert is not None and "--null empirical fits these distances" in alert.text
    assert "--null theory" not in alert.text

    # two clusters: no normal null fits, so the advice must not send the user to another one
    bimodal = np.concatenate([rng.normal(0.8, 0.05, 2500), rng.normal(1.6, 0.05, 2500)])
    med = float(np.median(bimodal))
    fits["empirical"] = (med, float(1.4826 * np.median(np.abs(bimodal - med))))
    for used in ("empirical", "effective"):
        alert = null_misfit(_run(tmp_path, _boundary(bimodal, used, fits)))
        assert alert is not None and "No null fits these distances" in alert.text
        assert "--null effective" not in alert.text and "--null empirical" not in alert.text
        assert "Sensitivity" in alert.text


def test_report_is_readable_by_others(tmp_path):
    info = make_screen_dir(tmp_path)
    old = os.umask(0o022)
    try:
        path = write_report(info["screen"])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_null_banner_of_a_class_null_only_offers_checked_alternatives(tmp_path):
    rng = np.random.default_rng(1)
    bimodal = np.concatenate([rng.normal(0.8, 0.05, 2500), rng.normal(1.6, 0.05, 2500)])
    fits = {"theory": (1.414, 0.06), "effective": (1.414, 0.15), "empirical": (1.2, 0.4)}
    b = _boundary(bimodal, "effective", fits)
    b["null"] = "class_empirical"  # a class-aware null is not among the global fits
    alert = null_misfit(_run(tmp_path, b))
    assert alert is not None and "None of the global nulls fits" in alert.text
    assert "--null" not in alert.text.split("expected")[-1]  # no untested null recommended


def test_tuple_gallery_prefers_tuples_whose_members_passed_the_image_screens(tmp_path):
    info = make_screen_dir(tmp_path)
    scores_path = info["screen"] / "scores.parquet"
    scores = pd.read_parquet(scores_path)
    scores["member_reasons"] = pd.array([None] * len(scores), dtype="string")
    scores.loc[0, "reason"] = "positive_too_far;occluded"  # the most abnormal positive pair ...
    scores.loc[0, "member_reasons"] = "negative:occluded"  # ... holds an occluded negative
    scores.to_parquet(scores_path, index=False)
    html = write_report(info["screen"]).read_text()
    n_pos = int(scores["reason"].fillna("").str.contains("positive_too_far").sum())
    assert (
        f"of {n_pos:,} tuples ({n_pos - 1:,} of them with every member passing the image screens)"
        in html
    )
    assert not re.search(r'<div class="meta"><div>tuple 0</div>', html)
