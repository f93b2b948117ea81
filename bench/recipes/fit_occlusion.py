"""Fit occlusion weights with the recipe in :mod:`curate.faces.fit_occlusion` (command line).

Data: FER2013 *training* faces (``--data``, default ``../shared/data/fer2013/train``), a
seeded sample, each run through the same landmarker and 48x48 alignment as ``curate
faces`` (``--crops-cache FILE`` keeps them: landmarking 12,000 faces takes about 8
minutes on one core). Nothing here reads the face-conditions benchmark, and nothing is
written into the package unless ``--out`` names it.

The shipped weights (stage 5; about 35 minutes of training on one busy core; the full
command with every flag is in docs/faces.md, "Fitting the occlusion weights")::

    python -m bench.recipes.fit_occlusion --crops-cache /tmp/fer_aligned.npz \\
        --real-labels bench/audit/fer2013_train_occlusion_labels.csv --dev-only \\
        --balance-classes --posed-bare ../shared/data/taiwanese-posed --clothing 0.2 \\
        --epochs 12 --seeds 0,1,2 --soup --out /tmp/occlusion.safetensors

``--init`` and ``--clean-with`` default to the stage-4 weights committed in
``bench/audit/occlusion_stage4.safetensors``; ``--cv-fold K`` holds out fold K of 5 and
writes the held-out scores to ``OUT.heldout.csv``. The synthetic stages 1-4 (how the
stage-4 weights were made; docs/faces.md, "Fitting the occlusion weights")::

    python -m bench.recipes.fit_occlusion --crops-cache /tmp/fer_aligned.npz --first-fit-hands --out /tmp/w1.safetensors
    python -m bench.recipes.fit_occlusion --crops-cache /tmp/fer_aligned.npz --clean-with /tmp/w1.safetensors --out /tmp/w2.safetensors
    python -m bench.recipes.fit_occlusion --crops-cache /tmp/fer_aligned.npz --clean-with /tmp/w2.safetensors --pseudo-labels --out /tmp/w3.safetensors
    python -m bench.recipes.fit_occlusion --crops-cache /tmp/fer_aligned.npz --clean-with /tmp/w3.safetensors --pseudo-labels --out /tmp/w4.safetensors

Prints the held-out AUROC (synthetic occluders, or the held-out labelled fold) after every epoch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import paths
from curate.faces import fit_occlusion as fit
from curate.faces.holdout import holdout_subjects, kept_out_of_fitting
from curate.faces.occluders import FIRST_FIT_HANDS, HANDS
from curate.faces.occlusion import OUTPUTS

DATA = paths.DATA / "fer2013" / "train"
STAGE4 = paths.AUDIT / "occlusion_stage4.safetensors"


def aligned_fer_faces(
    n: int, seed: int, cache: Path | None, data: Path = DATA
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned 48x48 crops of ``n`` seeded FER2013 training faces (faces found only) and
    their paths relative to the train folder (``happy/Training_123.jpg``)."""
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if "paths" in z:
            return z["crops"][z["found"]], z["paths"][z["found"]]
        print(f"{cache} has no paths (an older cache): landmarking again")
    paths = fit.sample_images(data, n, seed)
    crops, found = fit.aligned_crops(paths)
    rel = np.array([p.relative_to(data).as_posix() for p in paths])
    if cache is not None:
        np.savez_compressed(cache, crops=crops, found=found, paths=rel)
    return crops[found], rel[found]


def posed_bare(folder: Path) -> tuple[np.ndarray, list[str]]:
    """Aligned faces and expression labels of the dev performers of a taiwanese-posed
    folder (all frontal and uncovered; the holdout performers never enter fitting)."""
    manifest = pd.read_csv(folder / "manifest.csv")
    dev = manifest[~manifest["subject"].isin(holdout_subjects(manifest["subject"]))]
    crops, found = fit.aligned_crops([folder / p for p in dev["path"]])
    print(
        f"--posed-bare: {int(found.sum())} faces of {dev['subject'].nunique()} dev performers "
        f"({', '.join(sorted(dev['subject'].unique()))})"
    )
    return crops[found], dev["label"].to_numpy()[found].tolist()


def _synthetic_progress(event: str, info: dict[str, Any]) -> None:
    if event == "data":
        if info["n_dropped"]:
            print(f"--clean-with: dropping {info['n_dropped']} faces scored > {fit.CLEAN_MAX}")
        if info["n_pseudo"]:
            print(
                f"pseudo-labelled occluded faces: {info['n_pseudo']} (score >= {info['pseudo_min_score']:.3f})"
            )
        print(
            f"{info['n_faces']} aligned FER2013 training faces: {info['n_train']} fit, {info['n_val']} held out"
        )
    else:
        print(
            f"epoch {info['epoch']}/{info['epochs']} loss {info['loss']:.4f} "
            f"held-out synthetic AUROC {info['auroc']:.4f} "
            f"region accuracy {info['region_accuracy']:.3f} ({info['seconds']:.0f} s)",
            flush=True,
        )


def _labelled_progress(event: str, info: dict[str, Any]) -> None:
    if event == "data":
        print(
            f"{info['n_train']} labelled faces to fit ({info['n_occluded']} occluded, "
            f"{info['n_glasses_only']} of them by clear glasses only), {info['n_held_out']} "
            f"held out; clean pool {info['n_clean']} of {info['n_crops']}"
        )
        base = info["baseline"]
        a = fit.held_out_aurocs(base, base["score"].to_numpy())
        print(
            f"--init on all {len(base)} labelled faces (it was fitted on none of them): AUROC "
            f"{a['auroc']:.4f} (randomly sampled faces {a['auroc_random']:.4f}, n={a['n_random']})"
        )
        return
    msg = ""
    if "auroc" in info:
        msg = (
            f" held-out AUROC {info['auroc']:.4f} (randomly sampled faces "
            f"{info['auroc_random']:.4f}, n={info['n_random']})"
        )
    print(
        f"seed {info['seed']} epoch {info['epoch']}/{info['epochs']}{msg} ({info['seconds']:.0f} s)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="weights file to write (the shipped one is curate/models/faces/occlusion.safetensors)",
    )
    ap.add_argument("--data", type=Path, default=DATA, help="FER2013 train folder")
    ap.add_argument("--n-faces", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crops-cache", type=Path, default=None)
    ap.add_argument(
        "--clean-with",
        type=Path,
        default=None,
        help="weights of a previous fit: its occluded-looking faces leave the clean pool "
        "(with --real-labels: default the stage-4 weights)",
    )
    ap.add_argument(
        "--pseudo-labels",
        action="store_true",
        help="with --clean-with: the previous fit's top 5%% become occluded examples",
    )
    ap.add_argument(
        "--first-fit-hands",
        action="store_true",
        help="the synthetic hands of the first fit (stage 1)",
    )
    ap.add_argument(
        "--real-labels",
        type=Path,
        default=None,
        help="hand labels (CSV: path relative to fer2013/train, occluded 0/1, sample): "
        "fine-tune --init on them, mixed with synthetic occluders",
    )
    ap.add_argument(
        "--init", type=Path, default=STAGE4, help="with --real-labels: starting weights"
    )
    ap.add_argument(
        "--real-frac",
        type=float,
        default=0.85,
        help="with --real-labels: share of each batch drawn from the labelled faces",
    )
    ap.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default 1e-3 with --real-labels, else 3e-3)",
    )
    ap.add_argument(
        "--seeds",
        default=None,
        help="with --real-labels: comma-separated seeds; one network each, all "
        "saved in one file whose score is their mean (default: --seed alone)",
    )
    ap.add_argument(
        "--cv-fold",
        type=int,
        default=None,
        help="with --real-labels: hold out fold K of 5 (seeded) and print its AUROC",
    )
    ap.add_argument(
        "--dev-only",
        action="store_true",
        help="with --real-labels: fit on the dev part only: leave out the holdout labels "
        "and every copy of a holdout face (curate/faces/holdout.py)",
    )
    ap.add_argument(
        "--balance-classes",
        action="store_true",
        help="with --real-labels: draw the uncovered labelled faces with every expression "
        "class (the FER2013 folder) equally likely",
    )
    ap.add_argument(
        "--balance-covered",
        action="store_true",
        help="with --balance-classes: draw the covered labelled faces with every expression "
        "class equally likely too (the class then says nothing about the target)",
    )
    ap.add_argument(
        "--clothing",
        type=float,
        default=0.0,
        help="with --real-labels: share of the faces drawn (whatever their target) that get "
        "a painted collar under the chin (curate.faces.occluders.clothing)",
    )
    ap.add_argument(
        "--soup",
        action="store_true",
        help="with --real-labels: average the seeds' networks into one (a model soup: scores "
        "like their mean at the cost of one network)",
    )
    ap.add_argument(
        "--posed-bare",
        type=Path,
        default=None,
        help="with --real-labels: a taiwanese-posed folder (manifest.csv): the aligned faces "
        "of its DEV performers (curate/faces/holdout.py) join the uncovered faces",
    )
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    crops, rel_paths = aligned_fer_faces(args.n_faces, args.seed, args.crops_cache, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.real_labels is not None:
        labels = fit.match_labels(pd.read_csv(args.real_labels), rel_paths)
        exclude: list[int] = []
        if args.dev_only:
            kept_out = kept_out_of_fitting(paths.AUDIT, paths.DATA)
            n_all = len(labels)
            labels = labels[~labels["path"].isin(kept_out)].reset_index(drop=True)
            exclude = [i for i, p in enumerate(rel_paths) if p in kept_out]
            print(
                f"--dev-only: {n_all - len(labels)} holdout labels (or copies of holdout faces) left out, "
                f"{len(exclude)} faces kept out of the clean pool"
            )
        seeds = [int(x) for x in str(args.seeds).split(",")] if args.seeds else [args.seed]
        classes = [p.split("/")[0] for p in rel_paths] if args.balance_classes else None
        extra, extra_classes = posed_bare(args.posed_bare) if args.posed_bare else (None, None)
        result = fit.fit_labelled(
            crops,
            labels,
            init=args.init,
            clean_with=args.clean_with or args.init,
            seeds=seeds,
            epochs=args.epochs,
            lr=args.lr or 1e-3,
            real_frac=args.real_frac,
            cv_fold=args.cv_fold,
            exclude=exclude,
            classes=classes,
            extra_bare=extra,
            extra_classes=extra_classes,
            balance_covered=args.balance_covered,
            clothing=args.clothing,
            soup=args.soup,
            progress=_labelled_progress,
        )
        held = result.held_out
        if len(held):
            a = fit.held_out_aurocs(held, held["score"].to_numpy())
            what = f"soup of {len(seeds)} networks" if args.soup else f"{len(seeds)}-network file"
            print(
                f"held-out AUROC of the {what}: {a['auroc']:.4f} "
                f"(randomly sampled faces {a['auroc_random']:.4f}, n={a['n_random']})"
            )
            held[["path", "occluded", "kind", "sample", "score", "occlusion"]].to_csv(
                args.out.with_suffix(".heldout.csv"), index=False
            )
        fit.save_occlusion_weights(
            result.states,
            args.out,
            {
                "fitted_by": "bench/recipes/fit_occlusion.py --real-labels",
                "seeds": ",".join(map(str, seeds)),
                "labels": str(result.n_train),
                "epochs": str(args.epochs),
                "real_frac": str(args.real_frac),
                "dev_only": str(bool(args.dev_only)),
                "outputs": ",".join(OUTPUTS),
                "balance_classes": str(bool(args.balance_classes)),
                "balance_covered": str(bool(args.balance_covered)),
                "clothing": str(args.clothing),
                "soup": str(bool(args.soup)),
                "posed_bare": "dev performers" if args.posed_bare else "none",
            },
        )
    else:
        result = fit.fit_synthetic(
            crops,
            epochs=args.epochs,
            seed=args.seed,
            lr=args.lr or 3e-3,
            clean_with=args.clean_with,
            pseudo_labels=args.pseudo_labels,
            hands=FIRST_FIT_HANDS if args.first_fit_hands else HANDS,
            progress=_synthetic_progress,
        )
        meta = {
            "fitted_by": "bench/recipes/fit_occlusion.py",
            "seed": str(args.seed),
            "n_faces": str(result.n_faces),
            "epochs": str(args.epochs),
        }
        if args.first_fit_hands:
            meta["hands"] = "first-fit"
        fit.save_occlusion_weights([result.state], args.out, meta)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
