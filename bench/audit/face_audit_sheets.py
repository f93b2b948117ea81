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
at 120 px (round 1, numbers 0-639). Round 2 (``--round 2 --faces FACES``, numbers 640-1119)
adds 480 more ``fer2013/val`` images, drawn from those not in round 1: 320 uniformly
and 160 uniformly from the images in the lowest fifth of BlazeFace's ``face_confidence``
over all of ``fer2013/val`` (in ``FACES``, a ``curate faces`` table of ``fer2013/val``;
0 when no face was found), a weak signal of a turned head that is not a pose estimate
(``default_rng(2029)``), shuffled with ``default_rng(2030)``. Within each fifth the
audited images are a uniform sample, so figures over ``fer2013/val`` weigh each image by
its stratum's size over its audited count (``stratum``: ``low_confidence`` or ``rest``). The key (sheet number -> path relative to the data folder) is written beside
them; nothing on a sheet shows a flag, a source or a score. Nothing is written to the
repository. The protocol is in ``bench/audit/README.md``.

Usage::

    python -m bench.audit.face_audit_sheets --out /tmp/face_audit [--data ../shared/data]
    python -m bench.audit.face_audit_sheets --out /tmp/face_audit2 --round 2 --faces faces_fer2013_val.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.audit.audit_sheets import contact_sheets
from bench.common.paths import DATA

N_VAL, N_FC_TURNED, N_FC_OTHER = 480, 80, 80
N2_UNIFORM, N2_LOW = 320, 160
LOW_SHARE = 0.2


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
        rng.choice(other, N_FC_OTHER, replace=False)
    )
    d = pd.DataFrame(
        {
            "path": picked_val + picked_fc,
            "source": ["fer2013/val"] * N_VAL + ["face-conditions"] * (N_FC_TURNED + N_FC_OTHER),
        }
    )
    d = d.iloc[np.random.default_rng(2028).permutation(len(d))].reset_index(drop=True)
    return d.rename_axis("number").reset_index()


def low_confidence(faces: pd.DataFrame, data: Path) -> pd.Series:
    """``fer2013/val`` paths (relative to ``data``) -> in the lowest fifth of face_confidence."""
    rel = faces["path"].map(lambda p: Path(p).resolve().relative_to(data.resolve()).as_posix())
    conf = faces["face_confidence"].fillna(0.0).to_numpy()
    order = np.lexsort((rel.to_numpy(), conf))  # ties broken by path
    low = np.zeros(len(conf), bool)
    low[order[: int(round(LOW_SHARE * len(conf)))]] = True
    return pd.Series(low, index=rel.to_numpy())


def sample_round2(data: Path, faces: pd.DataFrame) -> pd.DataFrame:
    """Round 2 in sheet order: ``number`` (from 640), ``path``, ``stratum``."""
    low = low_confidence(faces, data)
    done = set(sample(data)["path"])
    pool = sorted(p for p in low.index if p not in done)
    rng = np.random.default_rng(2029)
    uniform = [pool[i] for i in sorted(rng.choice(len(pool), N2_UNIFORM, replace=False))]
    rest_low = sorted(p for p in pool if low[p] and p not in set(uniform))
    extra = [rest_low[i] for i in sorted(rng.choice(len(rest_low), N2_LOW, replace=False))]
    d = pd.DataFrame({"path": uniform + extra})
    d = d.iloc[np.random.default_rng(2030).permutation(len(d))].reset_index(drop=True)
    d["number"] = np.arange(len(d)) + N_VAL + N_FC_TURNED + N_FC_OTHER
    d["stratum"] = np.where(d["path"].map(low), "low_confidence", "rest")
    return d[["number", "path", "stratum"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--round", type=int, choices=(1, 2), default=1)
    ap.add_argument(
        "--faces",
        type=Path,
        default=None,
        help="round 2: a `curate faces` table of fer2013/val (face_confidence)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.round == 2:
        if args.faces is None:
            raise SystemExit("--round 2 needs --faces (curate faces of fer2013/val)")
        d = sample_round2(args.data, pd.read_parquet(args.faces))
    else:
        d = sample(args.data)
    d[["number", "path"]].to_csv(args.out / "key.csv", index=False)
    n = contact_sheets(
        [args.data / p for p in d["path"]],
        args.out,
        "sheet",
        cols=8,
        rows=5,
        px=120,
        first_number=int(d["number"].iloc[0]),
    )
    print(f"wrote {len(d)} faces on {n} sheets and key.csv to {args.out}")


if __name__ == "__main__":
    main()
