"""Measures of a bundled network or fine-tuning run (issue 24): FERPlus-plurality accuracy on
FER2013 PublicTest, and a performer-grouped linear probe on the colour photos.

    python -m bench.quality.measure_backbone RUN_OR_MODEL [RUN_OR_MODEL ...] [--json OUT.json]

For each network, in one run (so the bundled ``fer_resnet10t`` can be measured beside a
new one on the same machine and code):

1. ``ferplus``: ``curate evaluate`` (float32) on FER2013 PublicTest (``fer2013/val``) with
   the FERPlus plurality labels (the convention of ``bench/common/ferplus.py``: plurality over all
   ten vote categories; images whose top vote is tied or is contempt, unknown or not-a-face,
   and images without votes, have no label and are left out, counted). Accuracy and macro
   F1 on all such images (``all``; byte-identical copies within PublicTest evaluated once),
   on those that are not byte-copies of a FER2013 Training image (``held_out``), and on
   the ``dev`` / ``holdout`` halves of ``held_out`` by ``curate/faces/holdout.py``'s file-name
   hash (share 0.5).
2. ``colour_probe``: embeddings (``curate.embed``, the network's own preprocessing, whole
   256x256 photo) of ``taiwanese-posed``; a standardised multinomial logistic regression
   (scikit-learn, C = 1) on the posed label, leave-one-performer-out (14 folds); accuracy
   and macro F1 of the out-of-fold predictions; the same within the DEV performers and
   within the HOLDOUT performers (``curate/faces/holdout.py``: P01, P02, P05, P08, P10, P12, P14),
   7 folds each. ``colour_probe_framed``: the same on the embeddings ``curate screen``
   makes by default (``--framing auto``: on these portraits the face cut out from its
   landmarks, :mod:`curate.representations.framing`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.ferplus import SHARED, load_table
from bench.common.probe import lopo_predictions
from curate.faces.holdout import holdout_subjects, is_holdout


def ferplus_eval(run: str, table: pd.DataFrame, train_hashes: set[str], tmp: Path) -> dict:
    from curate.train.evaluate import classification_metrics, evaluate

    val = table[(table["split"] == "val")].drop_duplicates("path")
    ok = val[val["ferplus_label"].notna()]
    manifest = tmp / "ferplus_val.csv"
    ok.assign(label=ok["ferplus_label"])[["path", "label"]].to_csv(manifest, index=False)
    res = evaluate(run, manifest, device="cpu")
    # evaluate resolves links (../shared is one): match on the resolved path
    preds = res.predictions.assign(key=lambda d: [os.path.realpath(str(x)) for x in d["path"]])
    preds = preds.merge(
        ok.assign(key=[os.path.realpath(x) for x in ok["path"]])[["key", "sha256"]],
        on="key",
        how="left",
    )
    if preds["sha256"].isna().any():
        raise SystemExit(
            f"{int(preds['sha256'].isna().sum())} evaluated images not found in the votes table"
        )
    classes = list(res.metrics["classes"])
    idx = {c: i for i, c in enumerate(classes)}

    def measure(d: pd.DataFrame) -> dict:
        m = classification_metrics(
            d["label"].map(idx).to_numpy(), d["prediction"].map(idx).to_numpy(), classes
        )
        return {
            "images": int(len(d)),
            "accuracy": round(float(m["accuracy"]), 4),
            "macro_f1": round(float(m["macro_f1"]), 4),
        }

    held = preds[~preds["sha256"].isin(train_hashes)]
    hold = is_holdout(held["path"].tolist(), 0.5)
    return {
        "all": measure(preds),
        "held_out": measure(held),
        "dev": measure(held[~hold]),
        "holdout": measure(held[hold]),
        "left_out_no_label": val[val["ferplus_label"].isna()]["ferplus_status"]
        .value_counts()
        .to_dict(),
        "duplicates_in_val_evaluated_once": int(res.skipped.get("duplicate", 0)),
    }


def lopo(emb: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """Leave-one-performer-out probe: accuracy and macro F1 of the out-of-fold predictions."""
    from sklearn.metrics import accuracy_score, f1_score

    pred = lopo_predictions(emb, y, groups)
    return {
        "images": int(len(y)),
        "performers": int(len(np.unique(groups))),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
    }


def colour_probe(run: str, root: Path, framing: str = "full") -> dict:
    """The probe on all 14 performers, and within the DEV and the HOLDOUT performers
    (``curate/faces/holdout.py``) separately; ``framing`` as curate's ``--framing`` (``full``: the
    whole picture; ``auto``: what ``curate screen`` embeds by default, the face cut out from
    its landmarks when faces are small, :mod:`curate.representations.framing`)."""
    from curate.backbone import load_backbone
    from curate.embed import embed_images_result

    m = pd.read_csv(root / "manifest.csv")
    paths = [str(root / p) for p in m["path"]]
    loaded = load_backbone(None, run, device="cpu")
    boxes, record = None, {"setting": framing, "used": "full"}
    if framing != "full":
        from PIL import Image

        from curate.faces.analyze import analyze_faces
        from curate.representations.framing import decide

        sizes = [Image.open(p).size for p in paths]
        images = pd.DataFrame({"width": [w for w, _ in sizes], "height": [h for _, h in sizes]})
        boxes, record = decide(framing, analyze_faces(paths, blendshapes=True), images)
    emb = embed_images_result(
        paths, [None] * len(paths), loaded, cache_dir="none", workers=0, boxes=boxes
    ).embeddings
    y, groups = m["label"].to_numpy(), m["subject"].to_numpy()
    hold = np.isin(groups, sorted(holdout_subjects(groups)))
    return {
        **lopo(emb, y, groups),
        "framing": record,
        "dev": lopo(emb[~hold], y[~hold], groups[~hold]),
        "holdout": lopo(emb[hold], y[hold], groups[hold]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--data", type=Path, default=SHARED)
    p.add_argument("--skip-ferplus", action="store_true")
    p.add_argument("--skip-probe", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    out = {}
    table = (
        None
        if args.skip_ferplus
        else load_table(
            args.data / "fer2013", args.data / "ferplus" / "ferplus_votes_train_val.csv"
        )
    )
    train_hashes = set() if table is None else set(table.loc[table["split"] == "train", "sha256"])
    with tempfile.TemporaryDirectory() as d:
        for run in args.runs:
            r: dict = {}
            if table is not None:
                r["ferplus_publictest"] = ferplus_eval(run, table, train_hashes, Path(d))
            if not args.skip_probe:
                r["colour_probe"] = colour_probe(run, args.data / "taiwanese-posed")
                r["colour_probe_framed"] = colour_probe(run, args.data / "taiwanese-posed", "auto")
            out[run] = r
            print(run, json.dumps(r, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
