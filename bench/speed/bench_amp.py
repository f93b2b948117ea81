"""Benchmark: ``curate finetune --amp`` (bfloat16 autocast) against ``--no-amp`` (float32) on
the CPU, the same steps on the same tuples in one process.

Target: on a CPU with native bfloat16 (AVX-512 BF16, AMX), the bf16 steps take at most
0.75x the time of the float32 steps. Both runs start from the same weights (the bundled
default model unless --weights) and train the same ``--steps`` batches; the first
``--skip`` steps of each (allocator warm-up) are left out of the median. The validation
accuracy of both runs after those steps is printed too: bf16 should not cost accuracy.

    python -m bench.speed.bench_amp [--data ../shared/data/fer2013] [--n-images 2000] [--steps 30]
                              [--batch-tuples 64] [--input-size 64] [--threads 2]

Without FER2013 (``--data`` absent) it draws grey 48x48 images of noise with random labels
(speed only; the accuracies then mean nothing).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

import curate
from bench.common.paths import DATA as SHARED
from curate.backbone import autocast_precision
from curate.train.config import EARLIER_DEFAULTS, FinetuneConfig
from curate.train.loop import finetune


def _manifest(args: argparse.Namespace, tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    if args.data.is_dir():
        for split, n in (("train", args.n_images), ("val", args.n_images // 4)):
            files = sorted((args.data / split).glob("*/*.jpg"))
            for i in rng.choice(len(files), size=min(n, len(files)), replace=False):
                rows.append({"path": str(files[i]), "label": files[i].parent.name, "split": split})
    else:
        classes = ["angry", "happy", "sad"]
        for i in range(args.n_images + args.n_images // 4):
            p = tmp / f"img{i}.png"
            Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(p)
            rows.append(
                {
                    "path": str(p),
                    "label": classes[i % 3],
                    "split": "val" if i >= args.n_images else "train",
                }
            )
    out = tmp / "manifest.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=SHARED / "fer2013")
    p.add_argument("--n-images", type=int, default=2000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--skip", type=int, default=3)
    p.add_argument("--batch-tuples", type=int, default=64)
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="default: the weights' (64 for the bundled model)",
    )
    p.add_argument("--weights", default="fer_resnet10t")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=2, help="runs of each arm, alternating")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; --amp on this CPU: "
        f"{autocast_precision(torch.device('cpu'), True)[1]}"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build = tmp / "tuples"
        curate.build_tuples(str(_manifest(args, tmp)), str(build), per_anchor=1, seed=0)
        times: dict[bool, list[float]] = {False: [], True: []}
        accs = {}
        # the arms alternate (fp32, bf16, fp32, bf16, ...) so a change of load on a shared
        # machine falls on both
        for i, amp in enumerate([False, True] * args.reps):
            cfg = FinetuneConfig(
                **EARLIER_DEFAULTS,  # the tuple steps it measured
                weights=args.weights,
                input_size=args.input_size,
                epochs=100,
                max_steps=args.steps,
                batch_tuples=args.batch_tuples,
                amp=amp,
                device="cpu",
                workers=1,
                checkpoint_every=0,
                seed=0,
                screen_every_step=False,
            )
            tic = time.perf_counter()
            res = finetune(build, tmp / f"run_amp{int(amp)}_{i}", cfg)
            train = res.metrics[res.metrics["phase"] == "train"]
            step_s = (train["n_images"] / train["images_per_s"]).to_numpy()[args.skip :]
            times[amp].extend(step_s.tolist())
            accs[amp] = res.final.get("accuracy")
            print(
                f"{res.run['precision']:<45} median step {float(np.median(step_s)):.3f} s "
                f"({float(np.median(train['images_per_s'].to_numpy()[args.skip :])):,.0f} img/s), "
                f"run {time.perf_counter() - tic:.0f} s, val accuracy after {args.steps} steps "
                f"{accs[amp] if accs[amp] is None else round(accs[amp], 3)}"
            )
    ratio = float(np.median(times[True]) / np.median(times[False]))
    print(
        f"bf16 / fp32 median step time over all runs: {ratio:.2f} (target <= 0.75) -> {'MET' if ratio <= 0.75 else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
