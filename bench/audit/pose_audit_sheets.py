"""Draw the blind sheets of the second pose audit (``bench/audit/face_conditions_pose_audit2.csv``).

The first two audits hold only 13 and 12 clearly turned face-conditions faces, too few to
measure the side-face screen on face-conditions. This one enriches the sample with turned
heads by the yaw curate read (``faces-8``), stratified so that every rate can be weighted back
to the whole set, while the annotator sees no yaw:

- the pool: the 1,500 face-conditions faces in neither earlier audit
  (``face_audit.csv``, ``face_conditions_pose_audit.csv``);
- strata by ``|yaw|`` of a ``curate faces`` table of face-conditions (``--faces``; the
  ``yaw`` column: calibrated, or from the detector's keypoints for a face detected without
  landmarks): ``yaw_20+`` (``|yaw|`` >= 20), ``yaw_15_20``, ``yaw_10_15``, ``yaw_0_10``,
  ``no_yaw`` (no face detected); :data:`PER_STRATUM` faces are drawn uniformly from each
  (``numpy.random.default_rng(2031)``; all of a stratum when it is smaller);
- shuffled together (``default_rng(2032)``) and drawn as numbered sheets of 8 x 5 faces at
  120 px, as the earlier audits. The key (sheet number -> path) is written beside them,
  ``strata.csv`` (path, stratum, stratum size, audited count) apart: the annotator labels
  the sheets from ``key.csv`` and the pictures only, and the strata are joined afterwards.
  Nothing on a sheet shows a flag, a stratum or a score. Nothing is written to the
  repository. The protocol is in ``bench/audit/README.md``.

Usage::

    python -m bench.audit.pose_audit_sheets --out /tmp/pose_audit2 --faces faces_face_conditions.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.audit.audit_sheets import contact_sheets
from bench.common.paths import AUDIT, DATA

# faces drawn per stratum (None: all of it)
PER_STRATUM: dict[str, int | None] = {
    "yaw_20+": None,
    "yaw_15_20": 50,
    "yaw_10_15": 50,
    "yaw_0_10": 80,
    "no_yaw": None,
}


def stratum(abs_yaw: float) -> str:
    """The stratum of a face by its ``|yaw|`` (NaN: no face detected)."""
    if np.isnan(abs_yaw):
        return "no_yaw"
    if abs_yaw >= 20:
        return "yaw_20+"
    if abs_yaw >= 15:
        return "yaw_15_20"
    return "yaw_10_15" if abs_yaw >= 10 else "yaw_0_10"


def pool(faces: pd.DataFrame, data: Path) -> pd.DataFrame:
    """face-conditions faces in neither earlier audit: ``path`` (relative to ``data``) and
    ``stratum``, sorted by path."""
    fc = data / "face-conditions"
    rel = faces["path"].map(lambda p: Path(p).resolve().relative_to(fc.resolve()).as_posix())
    d = pd.DataFrame({"path": "face-conditions/" + rel, "stratum": faces["yaw"].abs().map(stratum)})
    done = set(pd.read_csv(AUDIT / "face_audit.csv")["path"]) | set(
        "face-conditions/" + pd.read_csv(AUDIT / "face_conditions_pose_audit.csv")["path"]
    )
    return d[~d["path"].isin(done)].sort_values("path").reset_index(drop=True)


def sample(faces: pd.DataFrame, data: Path) -> pd.DataFrame:
    """The audit sample in sheet order: ``number``, ``path``, ``stratum``, ``stratum_size``
    (faces of the pool in the stratum), ``stratum_audited``."""
    p = pool(faces, data)
    rng = np.random.default_rng(2031)
    parts = []
    for name, k in PER_STRATUM.items():
        s = p[p["stratum"] == name]
        take = len(s) if k is None or k >= len(s) else k
        picked = s.iloc[sorted(rng.choice(len(s), take, replace=False))]
        parts.append(picked.assign(stratum_size=len(s), stratum_audited=take))
    d = pd.concat(parts, ignore_index=True)
    d = d.iloc[np.random.default_rng(2032).permutation(len(d))].reset_index(drop=True)
    return d.rename_axis("number").reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--faces", type=Path, required=True, help="a `curate faces` table of face-conditions"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    d = sample(pd.read_parquet(args.faces), args.data)
    d[["number", "path"]].to_csv(args.out / "key.csv", index=False)
    d[["path", "stratum", "stratum_size", "stratum_audited"]].to_csv(
        args.out / "strata.csv", index=False
    )
    n = contact_sheets(
        [args.data / p for p in d["path"]], args.out, "sheet", cols=8, rows=5, px=120
    )
    print(f"wrote {len(d)} faces on {n} sheets, key.csv and strata.csv to {args.out}")


if __name__ == "__main__":
    main()
