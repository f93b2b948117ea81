"""Benchmark: one box, a million images: build-tuples, screen (boundary on precomputed
embeddings), report and export end to end, at 100,000 and 1,000,000 images.

    python -m bench.speed.bench_million [--sizes 100000 1000000] [--per-anchor 3]
                                  [--work /work/research/scale/million] [--workers N]

Data: ``curate build-tuples`` reads and decodes every file (ingest hashes and fully
decodes each image; there is no way around it, and there should not be), so the bench
writes real files: one tiny grey PNG per image (8 x 8 pixels, about 90 bytes, pixels
encoding the image number, so every file is distinct), encoded here with zlib (no
Pillow round trip; Pillow decodes them in ingest). Seven classes with FER2013's
shares, splits train/val 90/10, a CSV manifest ``path,label,split``. The embeddings
file holds one 128-d float32 row per image (class centre plus noise), keyed by
``image_id`` (the manifest row; 5 % of them at a random class's centre, so the screen
has wrong labels to find), for ``curate screen --embeddings FILE
--skip-faces-screen``. Files are written once per size under ``--work`` and reused.

The per-image stages that decode every image again are off, as the face screens are:
build-tuples' leakage check (``--no-leakage-check``) and the hygiene screens
(``--skip-near-duplicates-screen --skip-not-face-screen --skip-quality-screen``). Like
embedding and face analysis they cost per image, not per tuple; the near-duplicate
search has its own scale bench (``bench/quality/bench_hygiene.py scale``, ``docs/hygiene.md``).

Each stage runs as its own ``python -m curate`` process; the bench prints its wall time,
CPU time (user + system, including its worker processes) and peak RSS (the largest
single process, from ``wait4``; the bench process itself stays small, since a child's
peak starts at its parent's), and the growth from the smallest to the largest size:
linear means x10 for x10 images. CPU time is the measure to read on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHARES = {
    "angry": 0.14,
    "disgust": 0.015,
    "fear": 0.14,
    "happy": 0.25,
    "neutral": 0.17,
    "sad": 0.17,
    "surprise": 0.115,
}
SIDE = 8
DIM = 128
PLANTED = 0.05  # share of images whose embedding sits at a random class centre (wrong label)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_HEADER = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", SIDE, SIDE, 8, 0, 0, 0, 0))
_END = _chunk(b"IEND", b"")


def tiny_png(i: int, rng: np.random.Generator) -> bytes:
    """An 8 x 8 8-bit grey PNG whose first 8 pixels are the bytes of ``i`` (unique per image)."""
    pixels = rng.integers(0, 256, SIDE * SIDE, dtype=np.uint8)
    pixels[:8] = np.frombuffer(struct.pack(">Q", i), dtype=np.uint8)
    raw = b"".join(b"\x00" + pixels[r * SIDE : (r + 1) * SIDE].tobytes() for r in range(SIDE))
    return _HEADER + _chunk(b"IDAT", zlib.compress(raw, 1)) + _END


def make_dataset(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``n`` PNGs, ``manifest.csv`` and ``embeddings.parquet`` under ``root`` (once)."""
    manifest, emb_file, done = root / "manifest.csv", root / "embeddings.parquet", root / "complete"
    if done.is_file() and done.read_text() == str(n):
        return manifest, emb_file
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    names = list(SHARES)
    labels = rng.choice(
        len(names), size=n, p=np.array(list(SHARES.values())) / sum(SHARES.values())
    )
    split = np.where(rng.random(n) < 0.9, "train", "val")
    rel = [f"img/{i // 1000:04d}/{i:07d}.png" for i in range(n)]
    for d in sorted({r.rsplit("/", 1)[0] for r in rel}):
        (root / d).mkdir(parents=True)
    for i, r in enumerate(rel):
        (root / r).write_bytes(tiny_png(i, rng))
    with open(manifest, "w") as fh:
        fh.write("path,label,split\n")
        fh.writelines(f"{r},{names[c]},{s}\n" for r, c, s in zip(rel, labels, split, strict=True))
    centres = rng.normal(size=(len(names), DIM)).astype(np.float32)
    looks_like = np.where(rng.random(n) < PLANTED, rng.integers(0, len(names), n), labels)
    emb = centres[looks_like] * 0.35 + rng.normal(size=(n, DIM)).astype(np.float32) / np.sqrt(DIM)
    values = pa.array(emb.ravel(), type=pa.float32())
    col = pa.FixedSizeListArray.from_arrays(values, DIM)
    pq.write_table(
        pa.table({"image_id": pa.array(np.arange(n, dtype=np.int64)), "embedding": col}), emb_file
    )
    done.write_text(str(n))
    return manifest, emb_file


def run_stage(args: list[str]) -> dict[str, float]:
    """Run ``python -m curate ARGS``; wall, CPU (user + sys, with its children) and peak RSS."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "120"},
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"curate {' '.join(args)} failed:\n{out.decode(errors='replace')[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--per-anchor", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/work/research/scale/million"))
    ap.add_argument(
        "--workers", type=int, default=None, help="ingest processes (default: curate's)"
    )
    ap.add_argument("--make-data", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_data:
        make_dataset(Path(args.make_data[1]), int(args.make_data[0]))
        return

    base = run_stage(["--help"])  # the interpreter with curate's command line loaded
    results: dict[int, dict[str, dict[str, float]]] = {}
    for n in args.sizes:
        root = args.work / f"n{n}"
        t = time.perf_counter()
        # in a child process: a child's peak RSS starts at its parent's (Linux keeps the
        # high-water mark across fork and exec), so this process stays small
        subprocess.run(
            [sys.executable, __file__, "--make-data", str(n), str(root / "data")], check=True
        )
        manifest, emb_file = root / "data" / "manifest.csv", root / "data" / "embeddings.parquet"
        print(
            f"{n:,} images: dataset ready in {time.perf_counter() - t:.0f} s ({root / 'data'})",
            flush=True,
        )
        build, scr, exp = root / "build", root / "screen", root / "export"
        for d in (build, scr, exp):  # rm is much quicker than shutil.rmtree on a million links
            subprocess.run(["rm", "-rf", str(d)], check=True)
        workers = [] if args.workers is None else ["--workers", str(args.workers)]
        stages = {
            "build-tuples": [
                "build-tuples",
                str(manifest),
                "--out",
                str(build),
                "--per-anchor",
                str(args.per_anchor),
                "--seed",
                "0",
                "--no-leakage-check",
                *workers,
            ],
            "screen": [
                "screen",
                str(build),
                "--out",
                str(scr),
                "--embeddings",
                str(emb_file),
                "--skip-faces-screen",
                "--skip-near-duplicates-screen",
                "--skip-not-face-screen",
                "--skip-quality-screen",
                "--no-report",
            ],
            "report": ["report", str(scr)],
            "export": ["export", str(scr), "--out", str(exp)],
        }
        results[n] = {}
        for name, cmd in stages.items():
            results[n][name] = r = run_stage(cmd)
            print(
                f"  {name:13s} {r['wall']:8.1f} s wall {r['cpu']:8.1f} s CPU {r['rss_mib']:8,.0f} MiB peak RSS",
                flush=True,
            )
        n_tuples = pq.read_metadata(build / "tuples.parquet").num_rows
        n_exported = json.loads((exp / "export.json").read_text())["counts"]["exported"]
        print(f"  {n_tuples:,} triplets; {n_exported:,} images exported", flush=True)

    lo, hi = min(args.sizes), max(args.sizes)
    print(
        f"\nper stage: {lo:,} -> {hi:,} images (x{hi / lo:g}); CPU and RSS above those of the bare "
        f"command line (`curate --help`: {base['cpu']:.1f} s CPU, {base['rss_mib']:,.0f} MiB)"
    )
    print(
        f"  {'stage':13s} {'CPU s':>8s} {'CPU s':>8s} {'growth':>7s}   {'MiB':>7s} {'MiB':>7s} {'growth':>7s}"
    )
    tot = {lo: 0.0, hi: 0.0}
    for name in results[lo]:
        a, b = results[lo][name], results[hi][name]
        ca, cb = a["cpu"] - base["cpu"], b["cpu"] - base["cpu"]
        ma, mb = a["rss_mib"] - base["rss_mib"], b["rss_mib"] - base["rss_mib"]
        tot[lo], tot[hi] = tot[lo] + ca, tot[hi] + cb
        print(
            f"  {name:13s} {ca:8.1f} {cb:8.1f} {cb / max(ca, 0.05):6.1f}x   "
            f"{ma:7,.0f} {mb:7,.0f} {mb / max(ma, 1):6.1f}x"
        )
    print(f"  {'total':13s} {tot[lo]:8.1f} {tot[hi]:8.1f} {tot[hi] / max(tot[lo], 0.05):6.1f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
