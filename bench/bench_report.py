"""Benchmark the HTML report on a fabricated 1,000,000-tuple screen folder.

Prints the report size (the issue requires under 20 MB) and the render time. The
screen folder is fabricated by the test fixture ``tests/test_report.py::make_screen_dir``
(tiny PNG faces, planted distances, boundary.json, faces.parquet, images_suspect).

    python bench/bench_report.py [--tuples 1000000] [--images 5000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_report import make_screen_dir  # noqa: E402

from curate.report import write_report  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,2000"]
EXPRESSIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def browser_seconds(page: Path, profile: Path) -> float:
    """Wall time of a headless Chromium that loads ``page`` and takes a screenshot."""
    t = time.perf_counter()
    subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}",
                    f"--screenshot={profile}.png", page.as_uri()],
                   capture_output=True, timeout=120, check=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tuples", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=5_000)
    ap.add_argument("--quadruplet", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="fabricate here and keep the folder")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        t0 = time.perf_counter()
        info = make_screen_dir(root, n_images=args.images, n_tuples=args.tuples,
                               quadruplet=args.quadruplet, labels=EXPRESSIONS)
        t1 = time.perf_counter()
        out = write_report(info["screen"])
        t2 = time.perf_counter()
        size = out.stat().st_size
        print(f"fabricated {args.tuples:,} tuples over {args.images:,} images in {t1 - t0:.1f} s")
        print(f"report: {out}")
        print(f"size: {size / 1e6:.2f} MB (limit 20 MB) -> {'OK' if size < 20e6 else 'TOO BIG'}")
        print(f"render time (write_report, end to end): {t2 - t1:.1f} s")
        if CHROMIUM.exists():
            blank = root / "blank.html"
            blank.write_text("<!DOCTYPE html><title>blank</title>")
            base = min(browser_seconds(blank, root / f"p{i}") for i in range(2))
            load = min(browser_seconds(out, root / f"q{i}") for i in range(2))
            print(f"headless Chromium load + screenshot: {load:.1f} s "
                  f"(blank page: {base:.1f} s, so the report adds {load - base:.1f} s)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
