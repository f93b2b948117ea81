"""Benchmark: the occlusion networks' cost per face, weights files against each other in one run.

    python -m bench.speed.bench_occlusion_speed [WEIGHTS ...] [--baseline-ref 3c1bd0b] [--rounds 7]

Scores the same aligned faces (``--n`` 48x48 crops: the FER2013 training sample of the
occlusion recipe's crops cache, ``--crops``, or random pixels without one) with
:meth:`curate.faces.occlusion.OcclusionModel.probabilities`, as ``curate faces`` does (one
torch thread, chunks of 32, bfloat16 where the CPU has it), for the weights of
``--baseline-ref`` (the shipped file at that commit, read with ``git show``) and each
WEIGHTS file (default: the shipped one), alternating, ``--rounds`` times each; prints the
networks and views per face, the median milliseconds per face of each, and its ratio to
the baseline in the same run (a busy machine slows all alike).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from curate.faces.occlusion import OCCLUSION_WEIGHTS, OcclusionModel

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = "curate/models/faces/occlusion.safetensors"


def timed(model: OcclusionModel, faces: np.ndarray) -> float:
    t0 = time.perf_counter()
    model.probabilities(faces)
    return (time.perf_counter() - t0) / len(faces) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path, nargs="*", default=[OCCLUSION_WEIGHTS])
    ap.add_argument(
        "--baseline-ref", default="ceb99a4", help="commit whose shipped weights are the baseline"
    )
    ap.add_argument("--crops", type=Path, default=None, help="the recipe's crops cache (.npz)")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if args.crops is not None and args.crops.is_file():
        z = np.load(args.crops)
        faces = z["crops"][z["found"]][: args.n]
    else:
        faces = np.random.default_rng(0).integers(0, 256, (args.n, 48, 48), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline.safetensors"
        base.write_bytes(
            subprocess.run(
                ["git", "show", f"{args.baseline_ref}:{SHIPPED}"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            ).stdout
        )
        named = [(f"{args.baseline_ref} (baseline)", OcclusionModel(base))]
        named += [(str(w), OcclusionModel(w)) for w in args.weights]
        for _, m in named:  # warm up
            m.probabilities(faces[:64])
        times: list[list[float]] = [[] for _ in named]
        for _ in range(args.rounds):
            for k, (_, m) in enumerate(named):
                times[k].append(timed(m, faces))
    ref = statistics.median(times[0])
    print(f"{len(faces)} faces, {args.rounds} rounds each, median ms/face (ratio to the baseline)")
    for (name, m), t in zip(named, times, strict=True):
        views = 2 if m.mirror else 1
        med = statistics.median(t)
        print(
            f"  {name}: {len(m.nets)} network(s) x {views} view(s), bf16 {m.bf16}: "
            f"{med:.3f} ms/face ({med / ref:.2f}x)"
        )


if __name__ == "__main__":
    main()
