"""Does ``curate finetune``'s default method help on colour photos? Dev performers in, holdout out.

The fine-tuning defaults were chosen on FER2013 (docs/finetune.md). Here the colour studio
portraits of ``taiwanese-posed`` are split by performer (``taiwanese_holdout_subjects``, fixed
before any tuning): the dev half (313 images) is built, screened and fine-tuned from the bundled
network, the holdout half (316) only evaluated, against the posed labels and against the
observers' label (about 100 observers per image; non-neutral images only, the observers had no
neutral option). Arms, seeds ``--seeds``:

* ``defaults``: ``curate finetune BUILD --face-screen SCREEN`` (batch-hard mining, class-pair
  margins, the boundary's positive side, suppression ranked with the screen's prior, capped);
* ``plain_bh``: batch-hard mining alone (no suppression, no in-loop boundary, one margin);
* ``ce_only``: the same with ``--metric-weight 0`` (the classification loss alone);
* ``bundled``: the bundled ``ferplus_resnet10t`` as it is (once; evaluated with the same
  ``--framing``; the results files of session 13 show it on whole pictures in both).

Every arm trains and is evaluated with the same ``--framing`` (``face``, the default: the
faces cut out around their landmarks, which ``curate finetune --face-screen`` does by default
on these portraits since the screen's backbone framed them; ``full``: whole pictures, as every
run did before ``--framing``).

Printed: accuracy and macro-F1 per arm and seed, then mean and sd per arm and truth.

Usage::

    python -m bench.experiments.colour_finetune --work DIR [--seeds 0,1,2] [--framing face|full]
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
    ap.add_argument("--framing", default="face", choices=("face", "full"))
    args = ap.parse_args()
    from curate.build import build_tuples
    from curate.screen import screen
    from curate.train.config import FinetuneConfig
    from curate.train.evaluate import evaluate
    from curate.train.loop import finetune

    root = args.data / "taiwanese-posed"
    m = pd.read_csv(root / "manifest.csv")
    m["path"] = [str((root / p).resolve()) for p in m["path"]]
    hold = m["subject"].isin(taiwanese_holdout_subjects(m["subject"]))
    w = args.work
    w.mkdir(parents=True, exist_ok=True)
    m[~hold].to_csv(w / "dev.csv", index=False)
    m.loc[hold, ["path", "label"]].to_csv(w / "eval_posed.csv", index=False)
    judged = m[hold & (m["label"] != "neutral")]
    judged[["path"]].assign(label=judged["observer_label"]).to_csv(
        w / "eval_observers.csv", index=False
    )
    build_tuples(w / "dev.csv", w / "build", seed=0, force=True)
    screen(w / "build", w / "screen", seed=0, force=True)
    plain = {
        "exclude_suspects": False,
        "screen_every_step": False,
        "margin_mode": "global",
    }
    arms = {
        "defaults": {"face_screen": str(w / "screen")},
        "plain_bh": plain,
        "ce_only": {**plain, "metric_weight": 0.0},
    }
    rows = []

    def measure(run: str | Path, arm: str, seed: int | None) -> None:
        for truth in ("posed", "observers"):
            r = evaluate(run, w / f"eval_{truth}.csv", framing=args.framing)
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "truth": truth,
                    "accuracy": r.metrics["accuracy"],
                    "macro_f1": r.metrics["macro_f1"],
                }
            )
            print(rows[-1], flush=True)

    measure("ferplus_resnet10t", "bundled", None)
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm, settings in arms.items():
            run = w / f"run_{arm}_{seed}"
            cfg = FinetuneConfig(seed=seed, framing=args.framing, **settings)
            finetune(w / "build", run, cfg, force=True)
            measure(run, arm, seed)
    table = pd.DataFrame(rows)
    table.to_csv(w / "colour_finetune.csv", index=False)
    summary = table.groupby(["truth", "arm"])[["accuracy", "macro_f1"]].agg(["mean", "std"])
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
