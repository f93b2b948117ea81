"""Benchmark: end-to-end embedding throughput (decode, preprocess, forward) against the
bare model forward on already-prepared tensors, same model, batch size and threads.

Target: end-to-end >= 0.85 x bare forward.

The prepared tensors are the pipeline's own (:func:`curate.embed.prepare_batch`): the
same values and the same memory layout as the batches ``embed_images`` feeds to
:func:`curate.embed.embed_batch`. Earlier this bench stacked timm's per-image transform
output, NCHW tensors, which ``x.contiguous(memory_format=torch.channels_last)`` in
``embed_batch`` left as they were for one-channel models (an N x 1 x H x W tensor counts
as channels-last contiguous already): that baseline ran every convolution in NCHW while
the pipeline, whose batches come out of a permute of N x H x W x C pixels, ran
channels-last, the faster layout on oneDNN CPUs, hence end-to-end / bare = 1.17.
``embed_batch`` now lays every batch out channels-last (:func:`curate.embed.channels_last`);
``bare NCHW`` times the model on those NCHW tensors directly, to show the layout's
share. CPU time per image, this process and its decode workers together, is printed
too: on a shared machine the decode workers add CPU share as well.

    python -m bench.speed.bench_embed [--backbone resnet18 --weights none] [--images DIR]
                                [--n-images 2048] [--batch-size 64] [--threads N] [--device cpu]

Default model: the bundled default backbone (resnet10t, 64x64 grayscale), whose cheap
forward makes decoding and preprocessing weigh the most.

Without --images it draws 48x48 grayscale JPEGs (the size of FER2013) in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from curate.backbone import load_backbone
from curate.embed import (
    build_transform,
    default_workers,
    embed_batch,
    embed_images_result,
    prepare_batch,
)
from curate.images import load_image


def _images(args: argparse.Namespace, tmp: Path) -> list[str]:
    if args.images:
        files = sorted(
            p for p in Path(args.images).rglob("*") if p.suffix.lower() in {".jpg", ".png", ".jpeg"}
        )
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
        chunks = [paths[i : i + args.batch_size] for i in range(0, n, args.batch_size)]
        batches = [prepare_batch(c, loaded, dev) for c in chunks]  # the pipeline's tensors
        transform = build_transform(loaded.data_config)
        nchw = list(
            torch.stack([transform(load_image(p, loaded.in_chans)) for p in paths])
            .to(dev)
            .split(args.batch_size)
        )  # the former baseline
        embed_batch(loaded.model, batches[0])  # warm-up (allocator, cudnn, first-call costs)
        with torch.inference_mode():
            diff = float(
                (
                    loaded.model(nchw[0]).float().cpu()
                    - torch.from_numpy(embed_batch(loaded.model, batches[0]))
                )
                .abs()
                .max()
            )

        def cpu() -> float:
            own, kids = (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN),
            )
            return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

        def bare(which: list[torch.Tensor], layout_as_given: bool = False) -> tuple[float, float]:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t, c = time.perf_counter(), cpu()
            for b in which:
                if layout_as_given:  # the model on the NCHW tensors, without embed_batch's layout
                    with torch.inference_mode():
                        loaded.model(b)
                else:
                    embed_batch(loaded.model, b)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return n / (time.perf_counter() - t), (cpu() - c) / n

        def end_to_end(run: int) -> tuple[float, float]:
            t, c = time.perf_counter(), cpu()
            res = embed_images_result(
                paths,
                [None] * n,
                loaded,
                cache_dir=tmp / f"cache{run}",
                batch_size=args.batch_size,
                workers=args.workers,
            )
            rate = n / (time.perf_counter() - t)
            assert res.n_computed == res.n_unique  # nothing came from a cache
            return rate, (cpu() - c) / n

        # interleave to share the (noisy, shared) CPU fairly between the measurements
        runs: dict[str, list[tuple[float, float]]] = {"bare": [], "nchw": [], "e2e": []}
        for run in range(args.rounds):  # ABBA order: a drifting load favours none
            order = ("bare", "nchw", "e2e") if run % 2 == 0 else ("e2e", "nchw", "bare")
            for k in order:
                runs[k].append(
                    end_to_end(run)
                    if k == "e2e"
                    else bare(batches)
                    if k == "bare"
                    else bare(nchw, layout_as_given=True)
                )
    bare_rates, e2e_rates = [r for r, _ in runs["bare"]], [r for r, _ in runs["e2e"]]
    nchw_rates = [r for r, _ in runs["nchw"]]
    b, e = max(bare_rates), max(e2e_rates)
    workers = default_workers(dev.type) if args.workers is None else args.workers
    print(
        f"{loaded.name} ({loaded.weights_source}), input {tuple(loaded.data_config['input_size'])}, "
        f"{n} images, batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
        f"{workers} decode workers, device {dev}"
    )
    print(
        f"  bare forward on prepared tensors: {b:8.1f} images/s   (runs: {', '.join(f'{r:.1f}' for r in bare_rates)})"
    )
    print(
        f"  end to end (decode+prep+forward): {e:8.1f} images/s   (runs: {', '.join(f'{r:.1f}' for r in e2e_rates)})"
    )
    print(
        f"  bare NCHW (the former baseline): {max(nchw_rates):8.1f} images/s   (runs: {', '.join(f'{r:.1f}' for r in nchw_rates)})"
    )
    print(
        f"  ratio end-to-end / bare: {e / b:.3f} best-of-runs, "
        f"{np.median(e2e_rates) / np.median(bare_rates):.3f} median-of-runs   (target >= 0.85)"
    )
    print(
        f"  ratio end-to-end / bare NCHW: {e / max(nchw_rates):.3f} best-of-runs; bare / bare NCHW: "
        f"{b / max(nchw_rates):.3f} (memory layout alone); embeddings differ by {diff:.1e}"
    )
    med = {k: np.median([c for _, c in v]) * 1e3 for k, v in runs.items()}
    print(
        f"  CPU ms per image (this process + decode workers, median): bare {med['bare']:.2f}, "
        f"bare NCHW {med['nchw']:.2f}, end to end {med['e2e']:.2f}"
    )
    print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")


if __name__ == "__main__":
    main()
