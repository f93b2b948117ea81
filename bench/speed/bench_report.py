"""Benchmark the HTML report and its review view at 10^4 and 10^5 images.

For each size, fabricates a screen folder (``make_screen_dir`` of
``bench/common/screen_folder.py``: three tuples per image, planted distances) whose
``images_suspect.parquet`` carries verdicts at the rates the default screen gives on FER2013
PublicTest (``fer2013/val``: the label screen rejects 7.3%, the face screens 30%, the
near-duplicate screen 2.9%, and 11.5% of the images have a label suspicion of at least 0.9),
with 48x48 grey faces plus noise (their JPEG thumbnails are about the size of FER2013's) for
the images that get a thumbnail.

Prints, per size: the report's size (and how much of it is review thumbnails and data),
the render time, and in headless Chromium (Selenium + chromedriver): the time until the
review view is drawn, next to a blank page's in the same browser, and the time of
filters, two sorts (by id; nearest a face threshold) and a scroll (measured inside the page
with ``performance.now()``, from the change event to the list drawn). Targets (issue 26): opens in under 5 s, filters in
under 200 ms at 10^5 images.

    python -m bench.speed.bench_report [--images 10000 100000] [--tuples N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.common.browser import missing, open_browser, wait_ready
from bench.common.screen_folder import face_image, make_screen_dir
from curate.report import write_report
from curate.report.review import MAX_THUMBNAILS, thumbnail_rows

EXPRESSIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
RATES = {"label": 0.073, "face": 0.30, "near_duplicate": 0.029, "suspicion_ge_0.9": 0.115}


def fabricate(root: Path, n: int, n_tuples: int | None = None, seed: int = 0) -> Path:
    """A screen folder of ``n`` images with FER2013-like verdicts (see the module doc)."""
    rng = np.random.default_rng(seed)
    info = make_screen_dir(
        root,
        n_images=n,
        n_tuples=n_tuples or 3 * n,
        labels=EXPRESSIONS,
        write_images=False,
        seed=seed,
    )
    screen = info["screen"]
    s = (
        pd.read_parquet(screen / "images_suspect.parquet")
        .sort_values("image_id")
        .reset_index(drop=True)
    )
    n = len(s)  # the images in at least one tuple
    label_rej = rng.random(n) < RATES["label"]
    high = label_rej | (
        rng.random(n) < (RATES["suspicion_ge_0.9"] - RATES["label"]) / (1 - RATES["label"])
    )
    s["suspicion"] = np.where(high, rng.uniform(0.9, 1.0, n), rng.uniform(0.0, 0.9, n))
    lab = s["label"].map(EXPRESSIONS.index).to_numpy()
    s["suggested_label"] = [EXPRESSIONS[(k + 1 + rng.integers(6)) % 7] for k in lab]
    s["label_reject"] = label_rej
    s["label_reason"] = pd.Series(np.where(label_rej, "label_suspect", None), dtype="string")
    face = rng.random(n) < RATES["face"]
    s["face_reject"] = face
    s["face_reason"] = pd.Series(
        np.where(face, np.where(rng.random(n) < 0.8, "side_face", "occluded"), None), dtype="string"
    )
    dup = rng.random(n) < RATES["near_duplicate"]
    s["near_duplicate_reject"] = dup
    s["near_duplicate_reason"] = pd.Series(np.where(dup, "near_duplicate", None), dtype="string")
    s.to_parquet(screen / "images_suspect.parquet", index=False)
    table = s.assign(rejected=label_rej | face | dup)
    for i in thumbnail_rows(table, MAX_THUMBNAILS):  # the images the report will embed
        im = np.asarray(face_image(int(lab[i])), dtype=float) + rng.normal(0, 14, (48, 48))
        Path(s["path"].iat[i]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im.clip(0, 255).astype(np.uint8)).save(s["path"].iat[i])
    return screen


def in_page(driver, action: str) -> float:
    """Milliseconds from a control's change event to the list drawn, inside the page."""
    return float(
        driver.execute_script(
            "var t = performance.now();" + action + "; return performance.now() - t;"
        )
    )


def change(element_id: str, value: str) -> str:
    return (
        f"var e = document.getElementById('{element_id}'); e.value = '{value}';"
        "e.dispatchEvent(new Event('change'))"
    )


def browser_numbers(report: Path, root: Path) -> dict[str, float]:
    blank = root / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title><div id=rv-list data-ready=1></div>")
    out: dict[str, float] = {}
    driver = open_browser(root)
    try:
        for name, page in (
            ("blank", blank),
            ("report", report),
            ("blank2", blank),
            ("report2", report),
        ):
            t = time.perf_counter()
            driver.get(page.as_uri())
            wait_ready(driver, timeout=120)
            out[name] = time.perf_counter() - t
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            print("  browser errors:", errors[:3])
        out["filter_all"] = in_page(driver, change("rv-reason", "all"))
        out["filter_class"] = in_page(driver, change("rv-class", "3"))
        out["filter_reason"] = in_page(driver, change("rv-reason", "code:side_face"))
        out["filter_suspicion"] = in_page(
            driver,
            "var e = document.getElementById('rv-min'); e.value = '0.95';"
            "e.dispatchEvent(new Event('change'))",
        )
        out["sort_id_first"] = in_page(driver, change("rv-sort", "id"))
        # nearest a face threshold first (the first sort by it computes the order)
        out["sort_face_first"] = in_page(driver, change("rv-sort", "face"))
        out["back_to_review"] = in_page(
            driver,
            change("rv-min", "0")
            + ";"
            + change("rv-class", "")
            + ";"
            + change("rv-reason", "review"),
        )
        out["scroll"] = in_page(
            driver,
            "var l = document.getElementById('rv-list'); l.scrollTop = l.scrollHeight / 2;"
            "l.dispatchEvent(new Event('scroll'))",
        )
        out["cards_in_dom"] = float(
            driver.execute_script("return document.querySelectorAll('.rv-card').length")
        )
    finally:
        driver.quit()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument(
        "--tuples",
        type=int,
        default=None,
        help="tuples per report (default 3 per image); --images 5000 --tuples 1000000 "
        "measures the report of a million tuples",
    )
    ap.add_argument("--keep", type=Path, default=None, help="fabricate here and keep the folders")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_report_"))
    why_not = missing()
    try:
        for n in args.images:
            root = base / f"n{n}"
            t0 = time.perf_counter()
            n_tuples = args.tuples or 3 * n
            screen = fabricate(root, n, n_tuples)
            t1 = time.perf_counter()
            report = write_report(screen)
            t2 = time.perf_counter()
            html = report.read_text(encoding="utf-8")
            thumbs = json.loads(re.search(r'id="rv-thumbs">(.*?)</script>', html, re.S).group(1))
            data = re.search(r'id="rv-data">(.*?)</script>', html, re.S).group(1)
            size = report.stat().st_size
            print(f"== {n:,} images ({n_tuples:,} tuples), fabricated in {t1 - t0:.0f} s")
            print(
                f"report {size / 1e6:.1f} MB: review thumbnails {sum(map(len, thumbs)) / 1e6:.1f} MB "
                f"({len(thumbs):,} thumbnails, {sum(map(len, thumbs)) / max(1, len(thumbs)):.0f} bytes each), "
                f"review data {len(data) / 1e6:.1f} MB; render (write_report) {t2 - t1:.1f} s"
            )
            if why_not:
                print(f"no browser numbers: {why_not}")
                continue
            b = browser_numbers(report, root)
            load = min(b["report"], b["report2"])
            blank = min(b["blank"], b["blank2"])
            print(
                f"headless Chromium, until the review list is drawn: {load:.2f} s (blank page {blank:.2f} s; "
                f"target < 5 s: {'met' if load < 5 else 'NOT met'})"
            )
            worst = max(
                b[k]
                for k in (
                    "filter_all",
                    "filter_class",
                    "filter_reason",
                    "filter_suspicion",
                    "back_to_review",
                )
            )
            print(
                "in the page, ms: "
                + ", ".join(
                    f"{k} {b[k]:.1f}"
                    for k in (
                        "filter_all",
                        "filter_class",
                        "filter_reason",
                        "filter_suspicion",
                        "sort_id_first",
                        "sort_face_first",
                        "back_to_review",
                        "scroll",
                    )
                )
                + f"; {b['cards_in_dom']:.0f} cards in the DOM"
            )
            print(
                f"slowest filter {worst:.1f} ms (target < 200 ms: {'met' if worst < 200 else 'NOT met'})"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
