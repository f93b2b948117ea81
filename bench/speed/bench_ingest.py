"""Benchmark: parallel image validation throughput on real FER2013 train (28,709 images).

    python -m bench.speed.bench_ingest [--source ../shared/data/fer2013/train] [--workers N]

Prints images/s for 1 worker and for N workers (default: CPU count) in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common.paths import DATA
from curate.ingest import discover, validate

DEFAULT = DATA / "fer2013" / "train"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", type=Path, default=DEFAULT)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if not args.source.exists():
        raise SystemExit(f"{args.source} not found: this benchmark needs the shared FER2013 data")
    entries = discover(args.source)
    print(f"{len(entries):,} files in {args.source}")
    results = {}
    for workers in sorted({1, args.workers}):
        t0 = time.perf_counter()
        df = validate(entries, workers=workers)
        dt = time.perf_counter() - t0
        results[workers] = len(df) / dt
        print(
            f"workers={workers}: {dt:6.2f} s  {results[workers]:8,.0f} images/s  "
            f"({df['status'].eq('ok').sum():,} ok)"
        )
    if len(results) > 1:
        print(
            f"parallel speed-up: {results[args.workers] / results[1]:.2f}x on {args.workers} workers"
        )


if __name__ == "__main__":
    main()
