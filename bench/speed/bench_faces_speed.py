"""Face analysis speed, end to end, for both backends on the same 48 px crops, in one run,
and how closely their numbers agree; and the same analysis by the code of an earlier commit
(``--baseline-ref``), so a speed-up is a ratio measured in the same run.

For each data set (a random sample of FER2013 val, and face-conditions) it runs
``analyze_faces`` with no cache, once per backend of ``--backends`` and once with the
baseline code, and prints images/s per core (images over the CPU seconds of the timing
process and its workers, decoding and worker start-up included; torch and the occlusion
weights are loaded in that process before the clocks start, as they are the same for every
run), images/s of wall time, the speed ratio against the first backend and against the
baseline, and, against the first backend and against the baseline, the agreement of
``face_found`` and the |difference| of yaw, pitch, roll, occlusion and face_confidence
(median, 99th percentile, max) over faces both found (the baseline: whether the tables are
identical).

``--finder-only`` times the face finding alone, in the timing process (no workers, no
occlusion network, no worker start-up): ``find_many`` over the images in a worker's
batches of 64 (:func:`curate.faces.landmarks.find_one` over them in code without it), the
landmarker made before the clock starts; the tables then hold what it found
(``face_found``, yaw, pitch, roll, ``face_confidence``, ``detail`` and a hash of each
aligned face, the occlusion network's input). One process is less disturbed by other jobs
than three, so its ratios are steadier.

Every run is timed in a fresh Python process (``--child``), the current code and the
baseline alike: the baseline is ``git archive <ref> curate`` unpacked in a temporary folder
and put first on that process's path. Speeds on a shared machine are noisy: compare the
ratios within one run; --repeat N runs everything N times (interleaved) and prints every
run and the best.

Usage::

    python -m bench.speed.bench_faces_speed [--n-fer 2000] [--face-conditions 1760] [--workers 2]
                                      [--backends tasks,litert] [--repeat 1] [--seed 0]
                                      [--baseline-ref ceb99a4] [--finder-only] [--save DIR]
                                      [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench.common.paths import DATA

REPO = Path(__file__).resolve().parents[2]
# ``main`` before the third round of issue 23's speed work (faces-8: the occlusion weights
# with painted collars; 4f15301, the first baseline, has older occlusion weights, so its
# tables differ)
BASELINE_REF = "ceb99a4"
COMPARED = ("yaw", "pitch", "roll", "occlusion", "occlusion_any", "face_confidence")
FINDER_COMPARED = ("yaw", "pitch", "roll", "face_confidence")  # --finder-only: no occlusion


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


def timed_finder(paths: list[str], backend: str):
    """(table of what was found, CPU seconds, wall seconds) of the face finding over ``paths``
    in this process, as a worker finds them (``--finder-only``), the landmarker made before
    the clock starts."""
    import hashlib

    import pandas as pd

    from curate.faces.landmarks import BATCH, find_one, make_finder
    from curate.faces.model_file import resolve_face_model

    finder = make_finder(backend, resolve_face_model())
    c0, t0 = cpu_seconds(), time.perf_counter()
    if hasattr(finder, "find_many"):  # a worker's batches
        found = [
            f for i in range(0, len(paths), BATCH) for f in finder.find_many(paths[i : i + BATCH])
        ]
    else:  # code before find_many
        found = [find_one(finder, p) for p in paths]
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
    finder.close()
    table = pd.DataFrame(
        {
            "path": paths,
            "face_found": [f.face_found for f in found],
            **{c: [float(getattr(f, c)) for f in found] for c in FINDER_COMPARED},
            "detail": [f.detail for f in found],
            "aligned_sha256": [
                None if f.aligned is None else hashlib.sha256(f.aligned.tobytes()).hexdigest()
                for f in found
            ],
        }
    )
    return table, cpu, wall


def child(spec_file: str) -> None:
    """One timed run in this (fresh) process, as ``spec_file`` (JSON: paths, backend,
    workers, out) asks: the table goes to ``out`` (Parquet), the times to stdout (JSON)."""
    spec = json.loads(Path(spec_file).read_text())
    # what every run needs in this process, loaded before the clock starts: torch and the
    # occlusion networks (this process scores occlusion), the face model file
    import curate
    from curate.faces.model_file import resolve_face_model
    from curate.faces.occlusion import OcclusionModel

    OcclusionModel()
    resolve_face_model()
    if spec.get("finder_only"):
        faces, cpu, wall = timed_finder(spec["paths"], spec["backend"])
    else:
        faces, cpu, wall = timed(spec["paths"], spec["backend"], spec["workers"])
    faces.to_parquet(spec["out"], index=False)
    print(json.dumps({"cpu": cpu, "wall": wall, "curate": curate.__file__}))


def run_in_child(
    paths: list[str],
    backend: str,
    workers: int,
    code: Path,
    scratch: Path,
    name: str,
    finder_only: bool = False,
) -> tuple[object, float, float]:
    """(faces table, CPU seconds, wall seconds) of :func:`timed` (``finder_only``:
    :func:`timed_finder`) in a fresh process whose ``curate`` is the one in the folder
    ``code``."""
    import pandas as pd

    spec = scratch / f"{name}.json"
    out = scratch / f"{name}.parquet"
    spec.write_text(
        json.dumps(
            {
                "paths": paths,
                "backend": backend,
                "workers": workers,
                "out": str(out),
                "finder_only": finder_only,
            }
        )
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code), str(REPO)]))
    done = subprocess.run(
        [sys.executable, "-m", "bench.speed.bench_faces_speed", "--child", str(spec)],
        cwd=code,  # ``-m`` puts the working folder first on the path: the code timed
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"timed run {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["curate"]).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"timed run {name} imported {result['curate']}, not the code in {code}")
    return pd.read_parquet(out), float(result["cpu"]), float(result["wall"])


def export_ref(ref: str, into: Path) -> Path:
    """The ``curate`` package of commit ``ref``, unpacked in ``into``; returns ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "curate"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(
            f"cannot read the baseline {ref!r} from git: {archive.stderr.decode()[-500:]}"
        )
    tar = into / "baseline.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    tar.unlink()
    return into


def agreement(ref, other) -> list[str]:
    """Lines describing how ``other`` agrees with ``ref`` (two faces tables, same rows)."""
    import numpy as np

    both = (ref["face_found"] & other["face_found"]).to_numpy()
    lines = [
        f"  face_found agrees on {(ref['face_found'] == other['face_found']).mean():.2%} "
        f"({int((ref['face_found'] != other['face_found']).sum())} of {len(ref)} differ); "
        f"compared below: {both.sum()} faces both found"
    ]
    for col in [c for c in COMPARED if c in ref.columns]:
        d = np.abs(ref[col].to_numpy()[both] - other[col].to_numpy()[both])
        unit = " deg" if col in ("yaw", "pitch", "roll") else ""
        lines.append(
            f"  |diff| {col:15s} median {np.median(d):.2g}{unit}, p99 "
            f"{np.quantile(d, 0.99):.2g}{unit}, max {d.max():.2g}{unit}"
        )
    return lines


def run_set(
    name: str,
    paths: list[str],
    entries: list[tuple[str, str, Path]],
    workers: int,
    repeat: int,
    scratch: Path,
    save: Path | None,
    baseline: str | None,
    finder_only: bool = False,
) -> dict[str, object]:
    """Time every entry (label, backend, code folder) on ``paths`` and print speeds, ratios
    and agreement; with ``save``, write each entry's table to ``save/<set>.<label>.parquet``.
    Returns the numbers (for ``--json``)."""
    what = "the face finding alone, one process" if finder_only else f"{workers} worker(s)"
    print(f"\n{name}: {len(paths)} images, {what}", flush=True)
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in entries}
    tables = {}
    for r in range(repeat):
        for label, backend, code in entries:
            tag = f"{name.replace(' ', '_')}.{label.replace('@', '_at_')}.{r}"
            faces, cpu, wall = run_in_child(
                paths, backend, workers, code, scratch, tag, finder_only
            )
            tables.setdefault(label, faces)
            runs[label].append((cpu, wall))
            print(
                f"  run {r + 1} {label:15s} {len(paths) / cpu:6.1f} images/s per core",
                flush=True,
            )
    best = {label: (min(c for c, _ in rs), min(w for _, w in rs)) for label, rs in runs.items()}
    first = entries[0][0]
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for label, table in tables.items():
            table.to_parquet(save / f"{name.replace(' ', '_')}.{label}.parquet", index=False)
    for label, _, _ in entries:
        cpu, wall = best[label]
        print(
            f"  {label:15s} {len(paths) / cpu:6.1f} images/s per core (CPU {cpu:6.1f} s)  "
            f"{len(paths) / wall:6.1f} images/s wall ({len(paths) / wall / max(workers, 1):5.1f} "
            f"per worker)  speed x{best[first][0] / cpu:.2f} per core, "
            f"x{best[first][1] / wall:.2f} wall vs {first}"
        )
    out: dict[str, object] = {
        "images": len(paths),
        "workers": workers,
        "runs_images_per_core_s": {
            label: [round(len(paths) / c, 2) for c, _ in rs] for label, rs in runs.items()
        },
        "best_images_per_core_s": {
            label: round(len(paths) / c, 2) for label, (c, _) in best.items()
        },
    }
    if baseline is not None:
        backend = baseline.split("@")[0]
        print(
            f" {backend} against {baseline} (the same images and run): per core "
            + ", ".join(
                f"x{rb[0] / rc[0]:.2f}"
                for rb, rc in zip(runs[baseline], runs[backend], strict=True)
            )
            + f" run by run, x{best[baseline][0] / best[backend][0]:.2f} best against best"
        )
        same = tables[backend].equals(tables[baseline])
        print(f"  identical tables (every column, every row): {same}")
        out["speedup_per_core_vs_baseline"] = round(best[baseline][0] / best[backend][0], 3)
        out["speedup_per_core_vs_baseline_by_run"] = [
            round(rb[0] / rc[0], 3) for rb, rc in zip(runs[baseline], runs[backend], strict=True)
        ]
        out["identical_to_baseline"] = bool(same)
    for label, _, _ in entries[1:]:
        print(f" {label} against {first}:")
        for line in agreement(tables[first], tables[label]):
            print(line)
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
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
    ap.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help="git commit whose curate is timed too, with the last backend ('' for none)",
    )
    ap.add_argument(
        "--finder-only",
        action="store_true",
        help="time the face finding alone in one process (no workers, no occlusion)",
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="folder for the per-backend tables")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers to this file")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    backends = args.backends.split(",")
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
    results: dict[str, object] = {
        "command": "python -m bench.speed.bench_faces_speed " + " ".join(sys.argv[1:]),
        "load_average_at_start": os.getloadavg(),
        "baseline_ref": args.baseline_ref or None,
        "finder_only": args.finder_only,
        "code_commit": subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "sets": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_faces_speed_") as tmp:
        scratch = Path(tmp)
        entries = [(b, b, REPO) for b in backends]
        baseline = None
        if args.baseline_ref:
            code = export_ref(args.baseline_ref, scratch / "baseline")
            baseline = f"{backends[-1]}@{args.baseline_ref}"
            entries.append((baseline, backends[-1], code))
        for name, paths in sets:
            results["sets"][name] = run_set(  # type: ignore[index]
                name,
                paths,
                entries,
                0 if args.finder_only else args.workers,
                args.repeat,
                scratch,
                args.save,
                baseline,
                args.finder_only,
            )
    results["load_average_at_end"] = os.getloadavg()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
