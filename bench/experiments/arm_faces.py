"""Accuracy of the real-noise arms on the faces the face screens keep and on those they reject.

Offline, no training: evaluates the saved networks of ``experiment_real_noise.py``'s runs
(``WORK/runs/<arm>_s<seed>``) on an evaluation CSV (``path``, ``label``; default the experiment's
FERPlus-labelled PublicTest, ``WORK/eval_ferplus.csv``) and splits each run's accuracy by the
face screens' verdict on the evaluation images (``--faces``: a ``curate faces`` table of them, the
verdict taken at the screen's defaults by :func:`curate.screens.faces.face_verdicts`; a ``curate
screen`` folder's ``faces.parquet`` works too). It asks whether networks fine-tuned without the
rejected faces (``--face-screen``) lose accuracy on such faces at test time (about 28% of
PublicTest and of the experiment's development set)::

    curate faces WORK/dev_ferplus.csv --out-file DEV_FACES
    python -m bench.experiments.arm_faces --work WORK --eval WORK/dev_ferplus.csv \\
        --faces DEV_FACES --arms bh,bh_faces,full_suppress_head_pos_nf,full_suppress_head_pos
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from bench.experiments.arm_classes import find_runs


def accuracy_by_verdict(predictions: pd.DataFrame, faces: pd.DataFrame) -> dict[str, float]:
    """Accuracy over all images, the kept faces and the rejected ones (``predictions``: ``path``,
    ``label``, ``prediction``; ``faces``: ``path``, ``face_reject``), matched by real path; images
    without a verdict count in ``all`` only. Also the rejected share of the matched images."""
    real = lambda s: s.map(os.path.realpath)  # noqa: E731
    verdict = dict(zip(real(faces["path"]), faces["face_reject"].astype(bool), strict=True))
    p = predictions.assign(reject=real(predictions["path"]).map(verdict))
    right = p["prediction"] == p["label"]
    matched = p["reject"].notna()
    rejected = matched & p["reject"].fillna(False).astype(bool)
    kept = matched & ~rejected
    return {
        "all": float(right.mean()),
        "kept": float(right[kept].mean()) if kept.any() else float("nan"),
        "rejected": float(right[rejected].mean()) if rejected.any() else float("nan"),
        "rejected_share": float(rejected.sum() / max(1, matched.sum())),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--arms", required=True, help="comma-separated arm names")
    ap.add_argument("--faces", type=Path, required=True, help="curate faces table of --eval")
    ap.add_argument("--eval", type=Path, help="evaluation CSV (default: WORK/eval_ferplus.csv)")
    ap.add_argument("--out", type=Path, help="write one row per run here (CSV)")
    args = ap.parse_args(argv)

    import torch

    from curate.screens.faces import face_verdicts
    from curate.train.evaluate import evaluate

    torch.set_num_threads(1)
    faces = pd.read_parquet(args.faces)
    if "face_reject" not in faces:
        faces = face_verdicts(faces)
    evaluation = args.eval or args.work / "eval_ferplus.csv"
    rows = []
    for r in find_runs([args.work], args.arms.split(",")).itertuples():
        preds = evaluate(r.run, evaluation, device="cpu").predictions  # path, label, prediction
        row = {"arm": r.arm, "seed": r.seed, **accuracy_by_verdict(preds, faces)}
        rows.append(row)
        print(
            f"{r.arm} s{r.seed}: all {row['all']:.3f}, kept faces {row['kept']:.3f}, "
            f"rejected faces {row['rejected']:.3f}",
            flush=True,
        )
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    print(
        f"\n{evaluation}: rejected share of the evaluation images {table['rejected_share'].iloc[0]:.3f}"
    )
    print("mean over seeds (accuracy)")
    print(table.groupby("arm", sort=False)[["all", "kept", "rejected"]].mean().round(3).to_string())


if __name__ == "__main__":
    main()
