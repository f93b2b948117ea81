"""Draw the blind sheets of the face audit (``bench/audit/face_audit.csv``).

The face audit labels, from the picture alone, the head pose (frontal / ambiguous /
clearly turned) and what covers the face (hand, sunglasses, clear glasses, mask or scarf,
hair, hat, other) of a sample drawn without looking at any curate score:

- 480 ``fer2013/val`` images drawn uniformly (``numpy.random.default_rng(2026)``);
- 80 ``face-conditions`` faces flagged ``yaw_over_45`` and 80 of the other
  ``face-conditions`` faces, drawn uniformly (``default_rng(2027)``) to enrich the sample
  with turned heads by a signal that is not MediaPipe's (the benchmark's own flags,
  from another pose estimator);

shuffled together (``default_rng(2028)``) and drawn as numbered sheets of 8 x 5 faces
at 120 px. The key (sheet number -> path relative to the data folder) is written beside
them; nothing on a sheet shows a flag, a source or a score. Nothing is written to the
repository. The protocol is in ``bench/audit/README.md``.

Usage::

    python bench/face_audit_sheets.py --out /tmp/face_audit [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from audit_sheets import contact_sheets

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N_VAL, N_FC_TURNED, N_FC_OTHER = 480, 80, 80


def sample(data: Path) -> pd.DataFrame:
    """The audit sample in sheet order: ``number``, ``path`` (relative to ``data``), ``source``."""
    val = sorted(p.relative_to(data).as_posix() for p in (data / "fer2013" / "val").rglob("*.jpg"))
    rng = np.random.default_rng(2026)
    picked_val = [val[i] for i in sorted(rng.choice(len(val), N_VAL, replace=False))]
    fc = pd.read_csv(data / "face-conditions" / "labels.csv")
    fc["path"] = "face-conditions/" + fc["path"]
    rng = np.random.default_rng(2027)
    turned = fc.loc[fc["yaw_over_45"] == 1, "path"].to_numpy()
    other = fc.loc[fc["yaw_over_45"] == 0, "path"].to_numpy()
    picked_fc = list(rng.choice(turned, N_FC_TURNED, replace=False)) + list(
        rng.choice(other, N_FC_OTHER, replace=False))
    d = pd.DataFrame({"path": picked_val + picked_fc,
                      "source": ["fer2013/val"] * N_VAL + ["face-conditions"] * (N_FC_TURNED + N_FC_OTHER)})
    d = d.iloc[np.random.default_rng(2028).permutation(len(d))].reset_index(drop=True)
    return d.rename_axis("number").reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    d = sample(args.data)
    d[["number", "path"]].to_csv(args.out / "key.csv", index=False)
    n = contact_sheets([args.data / p for p in d["path"]], args.out, "sheet", cols=8, rows=5, px=120)
    print(f"wrote {len(d)} faces on {n} sheets and key.csv to {args.out}")


if __name__ == "__main__":
    main()
