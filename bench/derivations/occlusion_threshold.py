"""Pool the cross-validated occlusion scores and pick the default threshold.

Reads the ``FOLD.heldout.csv`` files that ``bench/recipes/fit_occlusion.py --real-labels --dev-only
--cv-fold K --out FOLD.safetensors`` writes (K = 0..4: the dev hand labels only) and prints
the out-of-fold AUROC of ``occlusion_any`` (``score``) against the first labelling's
``occluded`` and of ``occlusion`` against the occlusion policy
(:func:`curate.faces.fit_occlusion.occluded_by_policy`), on all labelled faces and on the
randomly sampled ones; then the best-F1 threshold of ``occlusion`` against the policy on
the randomly sampled ones: the rule behind ``curate.faces.occlusion.OCCLUSION_THRESHOLD``.

Usage::

    python -m bench.derivations.occlusion_threshold /tmp/cv/fold*.heldout.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from curate.faces.fit_occlusion import auroc, occluded_by_policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("heldout", type=Path, nargs="+")
    args = ap.parse_args()
    d = pd.concat([pd.read_csv(f) for f in args.heldout], ignore_index=True)
    if d["path"].duplicated().any():
        raise SystemExit("a face is held out in two files: pass each fold once")
    d["policy"] = [occluded_by_policy(o, k) for o, k in zip(d["occluded"], d["kind"], strict=True)]
    r = d[d["sample"] == "random"]
    print(
        f"out-of-fold AUROC of occlusion_any vs occluded: {auroc(d['occluded'].to_numpy(), d['score'].to_numpy()):.4f} "
        f"on {len(d)} labelled faces, {auroc(r['occluded'].to_numpy(), r['score'].to_numpy()):.4f} on {len(r)} randomly sampled"
    )
    print(
        f"out-of-fold AUROC of occlusion vs the policy: {auroc(d['policy'].to_numpy(), d['occlusion'].to_numpy()):.4f} "
        f"on all, {auroc(r['policy'].to_numpy(), r['occlusion'].to_numpy()):.4f} on the randomly sampled "
        f"({int(r['policy'].sum())} occluded by the policy, {r['policy'].mean():.3f})"
    )
    y, s = r["policy"].to_numpy(), r["occlusion"].to_numpy()
    best = max(
        (
            (2 * ((s > t) & y).sum() / ((s > t).sum() + y.sum()), t)
            for t in np.round(np.arange(0.01, 1.0, 0.01), 2)
        ),
        key=lambda ft: ft[0],
    )
    print(f"best-F1 threshold on the randomly sampled faces: {best[1]:g} (F1 {best[0]:.3f})")
    print("threshold  precision  recall  flagged")
    for t in sorted({0.2, 0.3, best[1], 0.5, 0.6, 0.7}):
        p = s > t
        print(
            f"{t:9.2f}  {(p & y).sum() / max(p.sum(), 1):9.3f}  {(p & y).sum() / y.sum():6.3f}  "
            f"{p.mean():7.3f}"
        )


if __name__ == "__main__":
    main()
