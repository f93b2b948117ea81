"""Benchmark: the statistical boundary over 10,000,000 triplets with embeddings in memory.

Runs the boundary (distances + verdicts) with the fused kernel (``kernel="fused"``,
:mod:`curate.stats.fused`, needs ``curate[fast]``) and with the numpy kernel
(``kernel="numpy"``: the code before the fused kernel, chunked gathers and dot products on a
thread pool) in the same run, alternating A B B A, and prints the ratio. Target: under 2 s
for distances + verdicts; memory bounded by the tuple count (the embedding matrix is
N x d; nothing N x N is ever built).

    python -m bench.speed.bench_boundary [--tuples 10000000] [--images 30000] [--dim 128]
                                   [--quadruplet] [--sorted-anchors] [--workers N]

On a shared machine the wall time depends on the load: the CPU time of the process
(all threads) is printed next to it, and the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

from curate.stats import fused
from curate.stats.statistical import apply_boundary, fit_boundary, normalize, tuple_distances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tuples", type=int, default=10_000_000)
    ap.add_argument("--images", type=int, default=30_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--quadruplet", action="store_true")
    ap.add_argument(
        "--sorted-anchors",
        action="store_true",
        help="anchors in order, as build-tuples writes them (per_anchor tuples each)",
    )
    ap.add_argument("--workers", type=int, default=None, help="threads (default: CPU count, max 8)")
    ap.add_argument("--rounds", type=int, default=2, help="A B B A rounds (each runs both kernels)")
    args = ap.parse_args()
    if not fused.available():
        raise SystemExit(f"numba is not installed: {fused.INSTALL_HINT}")

    rng = np.random.default_rng(0)
    raw = rng.normal(size=(args.images, args.dim)).astype(np.float32)
    labels = rng.integers(0, 7, args.images).astype(str)
    idx = [rng.integers(0, args.images, args.tuples) for _ in range(4 if args.quadruplet else 3)]
    if args.sorted_anchors:
        idx[0] = np.sort(idx[0])

    t0 = time.perf_counter()
    emb = normalize(raw)
    b = fit_boundary(emb, labels=labels)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    tuple_distances(emb, *[i[:1000] for i in idx], kernel="fused")  # compile, or load the cache
    t_compile = time.perf_counter() - t0

    def run(kernel: str) -> dict[str, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        dist = tuple_distances(emb, *idx, workers=args.workers, kernel=kernel)
        w1, c1 = time.perf_counter(), time.process_time()
        keep, _ = apply_boundary(dist, b)
        w2, c2 = time.perf_counter(), time.process_time()
        return {
            "dist": w1 - w0,
            "dist_cpu": c1 - c0,
            "verdicts": w2 - w1,
            "total": w2 - w0,
            "total_cpu": c2 - c0,
            "kept": float(keep.mean()),
        }

    runs: dict[str, list[dict[str, float]]] = {"numpy": [], "fused": []}
    for r in range(args.rounds):
        for kernel in ("numpy", "fused") if r % 2 == 0 else ("fused", "numpy"):
            runs[kernel].append(run(kernel))
    dn = tuple_distances(emb, *[i[:200_000] for i in idx], kernel="numpy")
    df = tuple_distances(emb, *[i[:200_000] for i in idx], kernel="fused")
    max_diff = max(float(np.abs(dn[k] - df[k]).max()) for k in dn)

    # memory of the fused path in a second pass, traced (tracing slows allocation: not timed)
    tracemalloc.start()
    dist = tuple_distances(emb, *idx, workers=args.workers, kernel="fused")
    keep, reason = apply_boundary(dist, b)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    kind = "quadruplets" if args.quadruplet else "triplets"
    order = "sorted" if args.sorted_anchors else "random"
    best = {k: min(v, key=lambda x: x["total"]) for k, v in runs.items()}
    print(
        f"{args.tuples:,} {kind}, {args.images:,} images x {args.dim} dims (float32), {order} anchors, "
        f"{args.rounds} rounds A B B A"
    )
    print(f"  normalize + fit_boundary (d_null={b.d_null:.1f}): {t_fit:6.2f} s")
    print(f"  fused kernel compile / cache load (once):  {t_compile:6.2f} s")
    print(
        f"  {'kernel':8s} {'distances':>10s} {'verdicts':>9s} {'total':>7s} {'total CPU':>10s}   (best of runs; all runs' totals)"
    )

    def totals(rs: list[dict[str, float]]) -> str:
        return ", ".join(f"{r['total']:.2f}" for r in rs)

    for k in ("numpy", "fused"):
        x = best[k]
        print(
            f"  {k:8s} {x['dist']:9.2f}s {x['verdicts']:8.2f}s {x['total']:6.2f}s {x['total_cpu']:9.2f}s   "
            f"({totals(runs[k])})"
        )
    ratio = best["numpy"]["total"] / best["fused"]["total"]
    ratio_cpu = best["numpy"]["total_cpu"] / best["fused"]["total_cpu"]
    print(
        f"  speed-up fused vs numpy (today's code): {ratio:.2f}x wall, {ratio_cpu:.2f}x CPU time "
        f"(target: fused total < 2 s)"
    )
    print(f"  distances agree within {max_diff:.1e} (first 200,000 tuples); kept {keep.mean():.1%}")
    out_bytes = sum(v.nbytes for v in dist.values()) + keep.nbytes + reason.nbytes
    print(
        f"  peak traced memory of distances + verdicts (fused): {peak / 2**20:,.0f} MiB "
        f"(outputs alone {out_bytes / 2**20:,.0f} MiB; an N x N float32 matrix would be "
        f"{args.images**2 * 4 / 2**20:,.0f} MiB)"
    )
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"  process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
