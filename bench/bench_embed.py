"""Benchmark: end-to-end embedding throughput (decode, preprocess, forward) against the
bare model forward on already-prepared tensors, same model, batch size and threads.

Target: end-to-end >= 0.85 x bare forward.

    python bench/bench_embed.py [--backbone resnet18 --weights none] [--images DIR]
                                [--n-images 2048] [--batch-size 64] [--threads N] [--device cpu]

Default model: the bundled default backbone (resnet10t, 64x64 grayscale), whose cheap
forward makes decoding and preprocessing weigh the most.

Without --images it draws 48x48 grayscale JPEGs (the size of FER2013) in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from curate.backbone import load_backbone
from curate.embed import build_transform, default_workers, embed_batch, embed_images_result
from curate.images import load_image


def _images(args: argparse.Namespace, tmp: Path) -> list[str]:
    if args.images:
        files = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in {".jpg", ".png", ".jpeg"})
        if not files:
            raise SystemExit(f"no images under {args.images}")
        return [str(p) for p in files[: args.n_images]]
    rng = np.random.default_rng(0)
    out = []
    for i in range(args.n_images):
        p = tmp / f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8), "L").save(p, quality=90)
        out.append(str(p))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default=None, help="timm name (default: the bundled model)")
    ap.add_argument("--weights", default=None, help="'none' for random weights")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--images", default=None)
    ap.add_argument("--n-images", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_backbone(args.backbone, args.weights, device=args.device)
    dev = next(loaded.model.parameters()).device
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        paths = _images(args, tmp)
        n = len(paths)
        transform = build_transform(loaded.data_config)
        prepared = torch.stack([transform(load_image(p, loaded.in_chans)) for p in paths])
        batches = list(prepared.split(args.batch_size))
        embed_batch(loaded.model, batches[0])  # warm-up (allocator, cudnn, first-call costs)

        def bare() -> float:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for b in batches:
                embed_batch(loaded.model, b)
            return n / (time.perf_counter() - t)

        def end_to_end(run: int) -> float:
            t = time.perf_counter()
            res = embed_images_result(paths, [None] * n, loaded, cache_dir=tmp / f"cache{run}",
                                      batch_size=args.batch_size, workers=args.workers)
            rate = n / (time.perf_counter() - t)
            assert res.n_computed == res.n_unique  # nothing came from a cache
            return rate

        # interleave to share the (noisy, shared) CPU fairly between the two measurements
        bare_rates, e2e_rates = [], []
        for run in range(args.rounds):  # ABBA order: a drifting load favours neither
            if run % 2 == 0:
                bare_rates.append(bare())
                e2e_rates.append(end_to_end(run))
            else:
                e2e_rates.append(end_to_end(run))
                bare_rates.append(bare())
    b, e = max(bare_rates), max(e2e_rates)
    workers = default_workers(dev.type) if args.workers is None else args.workers
    print(f"{loaded.name} ({loaded.weights_source}), input {tuple(loaded.data_config['input_size'])}, "
          f"{n} images, batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
          f"{workers} decode workers, device {dev}")
    print(f"  bare forward on prepared tensors: {b:8.1f} images/s   (runs: {', '.join(f'{r:.1f}' for r in bare_rates)})")
    print(f"  end to end (decode+prep+forward): {e:8.1f} images/s   (runs: {', '.join(f'{r:.1f}' for r in e2e_rates)})")
    print(f"  ratio end-to-end / bare: {e / b:.3f} best-of-runs, "
          f"{np.median(e2e_rates) / np.median(bare_rates):.3f} median-of-runs   (target >= 0.85)")
    print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")


if __name__ == "__main__":
    main()
