"""Does ``curate finetune``'s outlier suppression pick the labels people dispute, on colour photos?

The fine-tuning defaults were chosen on FER2013 (grey 48 px crops, FERPlus votes as truth:
docs/finetune.md). This checks the same defaults on the colour studio portraits of
``taiwanese-posed``, whose truth is about 100 observers' judgement per image: a posed label is
disputed when the image is not neutral and the observers read another expression (they had no
neutral option, so neutral images are left out of the rates; posed fear is mostly read as
surprise or sad). The performers are split into the dev and holdout halves of
``curate.faces.holdout.taiwanese_holdout_subjects`` (fixed before any tuning); each half is
built, screened and fine-tuned on its own with the README's commands and default settings
(``build-tuples``, ``screen``, ``finetune --face-screen``), for each ``--seeds``.

Printed per half and seed: the share of disputed labels among all scored non-neutral images
(the base rate), among the images suppression left out (``image_suspicion.parquet``,
``excluded``) and among the label screen's rejects (``images_suspect.parquet``,
``label_reject``), and the suppressed images per label.

Usage::

    python -m bench.experiments.suppression_colour --work DIR [--seeds 0,1,2] [--suspect-prior none]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.common.paths import DATA
from curate.faces.holdout import taiwanese_holdout_subjects


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--suspect-prior", default="auto", help="as curate finetune's (auto, none)")
    args = ap.parse_args()
    from curate.build import build_tuples
    from curate.screen import screen
    from curate.train.config import FinetuneConfig
    from curate.train.loop import finetune

    root = args.data / "taiwanese-posed"
    manifest = pd.read_csv(root / "manifest.csv")
    manifest["path"] = [str((root / p).resolve()) for p in manifest["path"]]
    disputed = dict(
        zip(
            manifest["path"],
            (manifest["label"] != "neutral") & (manifest["observer_label"] != manifest["label"]),
            strict=True,
        )
    )
    hold = taiwanese_holdout_subjects(manifest["subject"])
    rows = []
    for part in ("dev", "holdout"):
        sub = manifest[manifest["subject"].isin(hold) == (part == "holdout")]
        work = args.work / part
        work.mkdir(parents=True, exist_ok=True)
        sub.to_csv(work / "manifest.csv", index=False)
        build_tuples(work / "manifest.csv", work / "build", seed=0, force=True)
        screen(work / "build", work / "screen", seed=0, force=True)
        suspect = pd.read_parquet(work / "screen" / "images_suspect.parquet")
        suspect = suspect[suspect["label"] != "neutral"]
        rejects = suspect[suspect["label_reject"].fillna(False).astype(bool)]
        images = pd.read_parquet(work / "build" / "images.parquet").set_index("image_id")
        for seed in (int(s) for s in args.seeds.split(",")):
            run = work / f"run_seed{seed}"
            finetune(
                work / "build",
                run,
                FinetuneConfig(
                    face_screen=str(work / "screen"), seed=seed, suspect_prior=args.suspect_prior
                ),
                force=True,
            )
            scored = pd.read_parquet(run / "image_suspicion.parquet")
            scored = scored[scored["label"] != "neutral"]
            scored["disputed"] = images.loc[scored["image_id"], "path"].map(disputed).to_numpy()
            left_out = scored[scored["excluded"]]
            row = {
                "part": part,
                "seed": seed,
                "scored": len(scored),
                "base_rate": scored["disputed"].mean(),
                "suppressed": len(left_out),
                "suppressed_disputed": left_out["disputed"].mean(),
                "screen_rejects": len(rejects),
                "screen_rejects_disputed": rejects["path"].map(disputed).mean(),
            }
            rows.append(row)
            by_label = left_out.groupby("label")["disputed"].agg(["size", "mean"]).round(2)
            print(
                f"{part} seed {seed}: disputed among the {row['scored']} scored non-neutral images "
                f"{row['base_rate']:.3f}; among the {row['suppressed']} suppressed "
                f"{row['suppressed_disputed']:.3f} ({row['suppressed_disputed'] / row['base_rate']:.2f}x); "
                f"among the label screen's {row['screen_rejects']} rejects "
                f"{row['screen_rejects_disputed']:.3f}",
                flush=True,
            )
            print(f"  suppressed by label (images, share disputed): {by_label.to_dict('index')}")
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    table.to_csv(args.work / "suppression_colour.csv", index=False)


if __name__ == "__main__":
    main()
