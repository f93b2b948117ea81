"""Benchmark: the statistical boundary over 10,000,000 triplets with embeddings in memory.

Target: under 5 s for distances + verdicts, memory bounded by the tuple count (the
embedding matrix is N x d; nothing N x N is ever built).

    python bench/bench_boundary.py [--tuples 10000000] [--images 30000] [--dim 128]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

from curate.screens.statistical import apply_boundary, fit_boundary, normalize, tuple_distances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tuples", type=int, default=10_000_000)
    ap.add_argument("--images", type=int, default=30_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--quadruplet", action="store_true")
    ap.add_argument("--sorted-anchors", action="store_true",
                    help="anchors in order, as build-tuples writes them (per_anchor tuples each)")
    ap.add_argument("--workers", type=int, default=None, help="threads (default: CPU count, max 8)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    raw = rng.normal(size=(args.images, args.dim)).astype(np.float32)
    labels = rng.integers(0, 7, args.images).astype(str)
    idx = [rng.integers(0, args.images, args.tuples) for _ in range(4 if args.quadruplet else 3)]
    if args.sorted_anchors:
        idx[0] = np.sort(idx[0])

    t0 = time.perf_counter()
    emb = normalize(raw)
    b = fit_boundary(emb, labels=labels)
    t1, c1 = time.perf_counter(), time.process_time()
    dist = tuple_distances(emb, *idx, workers=args.workers)
    t2 = time.perf_counter()
    keep, reason = apply_boundary(dist, b)
    t3, c3 = time.perf_counter(), time.process_time()
    del dist, keep, reason
    # memory in a second pass, traced (tracing slows allocation, so it is not timed)
    tracemalloc.start()
    dist = tuple_distances(emb, *idx, workers=args.workers)
    keep, reason = apply_boundary(dist, b)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    kind = "quadruplets" if args.quadruplet else "triplets"
    out_bytes = sum(v.nbytes for v in dist.values()) + keep.nbytes + reason.nbytes
    order = "sorted" if args.sorted_anchors else "random"
    print(f"{args.tuples:,} {kind}, {args.images:,} images x {args.dim} dims (float32), {order} anchors")
    print(f"  normalize + fit_boundary (d_null={b.d_null:.1f}): {t1 - t0:6.2f} s")
    print(f"  tuple_distances:                   {t2 - t1:6.2f} s")
    print(f"  apply_boundary:                    {t3 - t2:6.2f} s")
    print(f"  boundary total (distances+verdicts): {t3 - t1:6.2f} s   (target < 5 s)")
    print(f"  boundary CPU time (all threads):   {c3 - c1:6.2f} s   (the CPU is shared: see load below)")
    print(f"  all incl. fit:                     {t3 - t0:6.2f} s")
    print(f"  kept {keep.mean():.1%}")
    print(f"  peak traced memory of distances + verdicts: {peak / 2**20:,.0f} MiB "
          f"(outputs alone {out_bytes / 2**20:,.0f} MiB; an N x N float32 matrix would be "
          f"{args.images ** 2 * 4 / 2**20:,.0f} MiB)")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
