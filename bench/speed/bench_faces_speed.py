"""Face analysis speed, end to end, for both backends on the same 48 px crops, in one run,
and how closely their numbers agree.

For each data set (a random sample of FER2013 val, and face-conditions) it runs
``analyze_faces`` with no cache, first with ``--backends``' first backend, then the other(s),
and prints images/s per core (images over the CPU seconds of this process and its workers,
decoding and worker start-up included; torch and the occlusion weights are loaded in this
process before the clocks start, as they are the same for every backend), images/s of wall time, the speed ratio against the
first backend, and, against the first backend, the agreement of ``face_found`` and the
|difference| of yaw, pitch, roll, occlusion and face_confidence (median, 99th percentile,
max) over faces both found.

Speeds on a shared machine are noisy: compare the ratio within one run; --repeat N runs
every backend N times (interleaved) and reports the best.

Usage::

    python -m bench.speed.bench_faces_speed [--n-fer 2000] [--face-conditions 1760] [--workers 2]
                                      [--backends tasks,litert] [--repeat 1] [--seed 0]
                                      [--save DIR]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from bench.common.paths import DATA

COMPARED = ("yaw", "pitch", "roll", "occlusion", "occlusion_any", "face_confidence")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(paths: list[str], backend: str, workers: int):
    """(faces table, CPU seconds, wall seconds) of one uncached ``analyze_faces`` run."""
    from curate.faces.analyze import analyze_faces

    c0, t0 = cpu_seconds(), time.perf_counter()
    faces = analyze_faces(
        paths, workers=workers, backend=backend, cache_dir="none"
    )  # never the shared cache
    return faces, cpu_seconds() - c0, time.perf_counter() - t0


def agreement(ref, other) -> list[str]:
    """Lines describing how ``other`` agrees with ``ref`` (two faces tables, same rows)."""
    import numpy as np

    both = (ref["face_found"] & other["face_found"]).to_numpy()
    lines = [
        f"  face_found agrees on {(ref['face_found'] == other['face_found']).mean():.2%} "
        f"({int((ref['face_found'] != other['face_found']).sum())} of {len(ref)} differ); "
        f"compared below: {both.sum()} faces both found"
    ]
    for col in COMPARED:
        d = np.abs(ref[col].to_numpy()[both] - other[col].to_numpy()[both])
        unit = " deg" if col in ("yaw", "pitch", "roll") else ""
        lines.append(
            f"  |diff| {col:15s} median {np.median(d):.2g}{unit}, p99 "
            f"{np.quantile(d, 0.99):.2g}{unit}, max {d.max():.2g}{unit}"
        )
    return lines


def run_set(
    name: str, paths: list[str], backends: list[str], workers: int, repeat: int, save: Path | None
) -> None:
    """Time every backend on ``paths`` and print speeds, ratios and agreement; with ``save``,
    write each backend's table to ``save/<set>.<backend>.parquet``."""
    print(f"\n{name}: {len(paths)} images, {workers} worker(s)")
    best: dict[str, tuple[float, float]] = {}
    tables = {}
    for _ in range(repeat):
        for backend in backends:
            faces, cpu, wall = timed(paths, backend, workers)
            tables.setdefault(backend, faces)
            prev = best.get(backend, (float("inf"), float("inf")))
            best[backend] = (min(prev[0], cpu), min(prev[1], wall))
    base = backends[0]
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for backend, table in tables.items():
            table.to_parquet(save / f"{name.replace(' ', '_')}.{backend}.parquet", index=False)
    for backend in backends:
        cpu, wall = best[backend]
        print(
            f"  {backend:7s} {len(paths) / cpu:6.1f} images/s per core (CPU {cpu:6.1f} s)  "
            f"{len(paths) / wall:6.1f} images/s wall ({len(paths) / wall / max(workers, 1):5.1f} "
            f"per worker)  speed x{best[base][0] / cpu:.2f} per core, "
            f"x{best[base][1] / wall:.2f} wall vs {base}"
        )
    for backend in backends[1:]:
        print(f" {backend} against {base}:")
        for line in agreement(tables[base], tables[backend]):
            print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n-fer", type=int, default=2000, help="FER2013 val images (random sample)")
    ap.add_argument(
        "--face-conditions",
        type=int,
        default=1760,
        help="face-conditions images (random sample; 0 to skip)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backends", default="tasks,litert", help="the first is the baseline")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="folder for the per-backend tables")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    backends = args.backends.split(",")
    # what every backend needs in this process, loaded before any clock starts: torch and
    # the occlusion networks (the parent scores occlusion), the face model file
    from curate.faces.model_file import resolve_face_model
    from curate.faces.occlusion import OcclusionModel

    OcclusionModel()
    resolve_face_model()
    rng = np.random.default_rng(args.seed)
    sets = []
    if args.n_fer:
        fer = sorted(str(p) for p in (args.data / "fer2013" / "val").rglob("*.jpg"))
        pick = np.sort(rng.choice(len(fer), min(args.n_fer, len(fer)), replace=False))
        sets.append(("FER2013 val", [fer[i] for i in pick]))
    if args.face_conditions:
        folder = args.data / "face-conditions"
        labels = pd.read_csv(folder / "labels.csv")
        n = min(args.face_conditions, len(labels))
        labels = labels.sample(n, random_state=args.seed).sort_index()
        sets.append(("face-conditions", [str(folder / p) for p in labels["path"]]))
    for name, paths in sets:
        run_set(name, paths, backends, args.workers, args.repeat, args.save)


if __name__ == "__main__":
    main()
