"""Per expression: where the arms of the real-noise experiment differ (issue 25's macro-F1).

Offline, no training: evaluates the saved networks of ``experiment_real_noise.py``'s runs
(``WORK/runs/<arm>_s<seed>``) on the experiment's FERPlus-labelled PublicTest
(``WORK/eval_ferplus.csv``) and prints, per arm (mean over the seeds found), each expression's
F1 and how many PublicTest images the networks predict as it, against how many carry it.
With ``--suppression`` it also reads each batch-hard run's ``mined_triplets.parquet`` (one row per
batch image, the anchor) and prints, per training label, the share of visits suppressed and the
label's share of the classification loss before and after suppression (suppressed images leave
the classification loss), which is how outlier suppression moves the head's class prior::

    python -m bench.experiments.arm_classes --work WORK \\
        --arms full_suppress_head_pos,bh_cleanlab,bh,full_suppress_head_pos_once --suppression

``--eval`` takes another evaluation CSV (``path``, ``label``), for example the experiment's
development set ``WORK/dev_ferplus.csv`` (Training images neither the subset nor the screener saw,
by their FERPlus labels), to compare the arms without PublicTest. ``--runs-csv`` writes each
run's accuracy and macro-F1; ``--against ARM`` prints every other arm's difference from ``ARM``,
paired by seed (mean, standard error, seeds ahead).

``--work`` may be given more than once (runs of one arm split over work folders, for example seeds
0-4 in one and 5-9 in another; an arm's seed found in two folders counts once, the first).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

RUN = re.compile(r"^(?P<arm>.+)_s(?P<seed>\d+)$")


def find_runs(works: list[Path], arms: list[str]) -> pd.DataFrame:
    """``arm``, ``seed``, ``run`` of every finished run (``model.safetensors``) of ``arms``."""
    rows, seen = [], set()
    for work in works:
        for run in sorted((work / "runs").glob("*_s*")):
            m = RUN.match(run.name)
            if not m or m["arm"] not in arms or not (run / "model.safetensors").is_file():
                continue
            key = (m["arm"], int(m["seed"]))
            if key not in seen:
                seen.add(key)
                rows.append({"arm": key[0], "seed": key[1], "run": run})
    return pd.DataFrame(rows, columns=["arm", "seed", "run"])


def class_table(metrics: dict) -> pd.DataFrame:
    """Per class of one evaluation: ``n`` (images carrying it), ``predicted``, ``f1``."""
    confusion = np.asarray(metrics["confusion"])
    return pd.DataFrame(
        {
            "class": metrics["classes"],
            "n": confusion.sum(1),
            "predicted": confusion.sum(0),
            "f1": [p["f1"] or 0.0 for p in metrics["per_class"]],
        }
    )


def suppression_table(run: Path) -> pd.DataFrame | None:
    """Per training label of one batch-hard run: ``visits``, ``suppressed`` (share of visits),
    ``share_batch`` (the label's share of batch images) and ``share_ce`` (of the images left in
    the classification loss); ``None`` when the run mined no triplets or predates suppression."""
    path = run / "mined_triplets.parquet"
    if not path.is_file():
        return None
    mined = pd.read_parquet(path)
    if "suppressed" not in mined:  # recorded before outlier suppression existed
        return None
    t = mined.groupby("anchor_label")["suppressed"].agg(visits="size", suppressed="mean")
    kept = t["visits"] * (1 - t["suppressed"])
    t["share_batch"] = t["visits"] / t["visits"].sum()
    t["share_ce"] = kept / kept.sum()
    return t.reset_index().rename(columns={"anchor_label": "label"})


def paired_differences(runs: pd.DataFrame, against: str) -> pd.DataFrame:
    """Per arm other than ``against``: its accuracy and macro-F1 minus ``against``'s on the same
    seed (``runs``: ``arm``, ``seed``, ``accuracy``, ``macro_f1``), in points: ``seeds``,
    ``accuracy``/``macro_f1`` (mean difference), ``*_se`` (its standard error) and ``*_ahead``
    (seeds where the arm is higher). Seeds that ``against`` lacks are left out."""
    base = runs[runs["arm"] == against].set_index("seed")[["accuracy", "macro_f1"]]
    rows = []
    for arm, t in runs[runs["arm"] != against].groupby("arm", sort=False):
        d = (t.set_index("seed")[["accuracy", "macro_f1"]] - base).dropna() * 100
        row: dict = {"arm": arm, "against": against, "seeds": len(d)}
        for col in ("accuracy", "macro_f1"):
            row[col] = d[col].mean() if len(d) else np.nan
            row[f"{col}_se"] = d[col].std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
            row[f"{col}_ahead"] = int((d[col] > 0).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, action="append", required=True)
    ap.add_argument("--arms", required=True, help="comma-separated arm names")
    ap.add_argument("--eval", type=Path, help="evaluation CSV (default: the first WORK's)")
    ap.add_argument("--suppression", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs-csv", type=Path, help="write arm, seed, accuracy, macro_f1, n here")
    ap.add_argument("--against", help="print the other arms' differences from this arm, by seed")
    args = ap.parse_args(argv)

    import torch

    from curate.train.evaluate import evaluate

    torch.set_num_threads(args.threads)
    arms = args.arms.split(",")
    runs = find_runs(args.work, arms)
    evaluation = args.eval or args.work[0] / "eval_ferplus.csv"
    per_class, supp, scores = [], [], []
    for r in runs.itertuples():
        metrics = evaluate(r.run, evaluation, device="cpu").metrics
        per_class.append(class_table(metrics).assign(arm=r.arm, seed=r.seed))
        scores.append(
            {
                "arm": r.arm,
                "seed": r.seed,
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "n": metrics["n_images"],
            }
        )
        print(
            f"{r.arm} s{r.seed}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}",
            flush=True,
        )
        if args.suppression and (s := suppression_table(r.run)) is not None:
            supp.append(s.assign(arm=r.arm, seed=r.seed))
    table = pd.concat(per_class)
    runs_table = pd.DataFrame(scores)
    if args.runs_csv:
        runs_table.to_csv(args.runs_csv, index=False)
    summary = runs_table.groupby("arm", sort=False)[["accuracy", "macro_f1"]].agg(["mean", "std"])
    print(f"\n{evaluation}: mean and sd over seeds\n{summary.round(3).to_string()}")
    if args.against:
        print(f"\npaired by seed, points against {args.against}")
        print(paired_differences(runs_table, args.against).round(2).to_string(index=False))
    for arm in arms:
        t = table[table["arm"] == arm]
        if t.empty:
            continue
        mean = t.groupby("class", sort=False)[["n", "predicted", "f1"]].mean()
        print(f"\n{arm} ({t['seed'].nunique()} seeds): per expression, mean over seeds")
        print(mean.round({"n": 0, "predicted": 0, "f1": 3}).to_string())
    if supp:
        s = pd.concat(supp)
        for arm in arms:
            t = s[s["arm"] == arm]
            if t.empty or not t["suppressed"].any():
                continue
            mean = t.groupby("label")[["visits", "suppressed", "share_batch", "share_ce"]].mean()
            print(
                f"\n{arm}: outlier suppression per training label, mean over {t['seed'].nunique()} seeds"
            )
            print(mean.round(3).to_string())


if __name__ == "__main__":
    main()
