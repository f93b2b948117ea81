"""Does averaging the yaw of a picture and of its mirror image rank turned faces better?

Issue 23: the calibrated yaw ranks the blind pose audits' clearly turned faces above the
frontal ones with AUROC 0.95-0.99, and at ``--max-yaw 25`` the adjudicated second pose
audit's holdout half misses the 0.80 recall target by 0.009. The landmark network is not
symmetric (the mirror image finds some turned faces the picture does not), so its reading of
the mirror image, sign flipped, is a second estimate of the same turn; if the two scatter
apart, their mean is a less noisy yaw (test-time augmentation, twice the landmark work).

This script runs the face finder (litert, as ``curate faces``) on every face of the three
blind pose audits and on the 629 colour portraits of ``taiwanese-posed``, on each picture and
on its mirror image, and prints: how far the two readings lie apart (correlation, standard
deviation of the difference), the AUROC of ``|yaw|`` (clearly turned vs frontal, faces found
in both, unweighted) on the dev | holdout parts of each audit for the picture, the mirror
image and their mean, and the colour portraits' largest readings under each.

Usage::

    python -m bench.experiments.yaw_mirror [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.paths import AUDIT, DATA
from bench.derivations.yaw_calibration import AUDITS
from curate.faces.fit_occlusion import auroc
from curate.faces.holdout import is_holdout
from curate.faces.litert import LiteFaceFinder
from curate.faces.model_file import resolve_face_model
from curate.images import load_arrays


def audited(data: Path) -> pd.DataFrame:
    """Every face of the three pose audits (``pose``: 0 frontal, 1 ambiguous, 2 clearly
    turned) and the colour portraits (``pose`` -1), with ``audit`` and ``holdout``."""
    a = pd.read_csv(AUDIT / "face_audit.csv")[["path", "pose"]].assign(audit=AUDITS[0])
    b = pd.read_csv(AUDIT / "face_conditions_pose_audit.csv").rename(columns={"turned": "pose"})
    b = b.assign(path="face-conditions/" + b["path"], audit=AUDITS[1])
    c = pd.read_csv(AUDIT / "face_conditions_pose_audit2.csv").assign(audit=AUDITS[2])
    out = pd.concat([a, b[["path", "pose", "audit"]], c[["path", "pose", "audit"]]])
    out["holdout"] = is_holdout(out["path"], 0.5)
    manifest = pd.read_csv(data / "taiwanese-posed" / "manifest.csv")
    colour = pd.DataFrame(
        {"path": "taiwanese-posed/" + manifest["path"], "pose": -1, "audit": "colour"}
    ).assign(holdout=False)
    return pd.concat([out, colour], ignore_index=True)


def readings(paths: pd.Series, data: Path) -> pd.DataFrame:
    """Per picture: the calibrated yaw of the picture and of its mirror image, sign flipped
    (NaN where no face was found)."""
    finder = LiteFaceFinder(resolve_face_model(None))
    rows = []
    for p in paths:
        rgb, gray = load_arrays(data / p)
        seen = finder.find_face_in_array(rgb, gray)
        mirror = finder.find_face_in_array(
            np.ascontiguousarray(rgb[:, ::-1]), np.ascontiguousarray(gray[:, ::-1])
        )
        rows.append(
            {
                "yaw": seen.yaw if seen.face_found else np.nan,
                "yaw_mirror": -mirror.yaw if mirror.face_found else np.nan,
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    d = audited(args.data)
    d = pd.concat([d, readings(d["path"], args.data)], axis=1)
    d["yaw_mean"] = d[["yaw", "yaw_mirror"]].mean(axis=1)
    both = d.dropna(subset=["yaw", "yaw_mirror"])
    diff = both["yaw"] - both["yaw_mirror"]
    print(
        f"{len(d)} pictures, a face in both {len(both)}, in the picture only "
        f"{int((d['yaw'].notna() & d['yaw_mirror'].isna()).sum())}, in the mirror image only "
        f"{int((d['yaw'].isna() & d['yaw_mirror'].notna()).sum())}"
    )
    print(
        f"picture vs mirror image: correlation {np.corrcoef(both['yaw'], both['yaw_mirror'])[0, 1]:.4f}, "
        f"difference mean {diff.mean():.2f} sd {diff.std():.2f} degrees"
    )
    print("AUROC of |yaw|, clearly turned vs frontal [dev | holdout]: picture / mirror / mean")
    for audit in AUDITS:
        cells = []
        for hold in (False, True):
            m = (
                (both["audit"] == audit) & (both["holdout"] == hold) & both["pose"].isin([0, 2])
            ).to_numpy()
            turned = (both["pose"] == 2).to_numpy()[m]
            cells.append(
                " / ".join(
                    f"{auroc(turned, both[c].abs().to_numpy()[m]):.3f}"
                    for c in ("yaw", "yaw_mirror", "yaw_mean")
                )
                + f" (n {int(m.sum())}, {int(turned.sum())} turned)"
            )
        print(f"  {audit}: {' | '.join(cells)}")
    colour = d[d["audit"] == "colour"]
    for c in ("yaw", "yaw_mirror", "yaw_mean"):
        top = np.sort(colour[c].abs().dropna().to_numpy())[::-1]
        print(
            f"colour portraits, largest |{c}|: {', '.join(f'{x:.1f}' for x in top[:7])}; "
            f"past 22 / 25: {int((top > 22).sum())} / {int((top > 25).sum())}"
        )


if __name__ == "__main__":
    main()
