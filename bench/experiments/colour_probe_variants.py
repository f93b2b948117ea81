"""What limits a network's colour probe (issue 24): cheap changes to how the embedding is made,
measured on taiwanese-posed before any training.

    python -m bench.experiments.colour_probe_variants [RUN_OR_MODEL ...] [--variants V;V;...] [--json OUT.json]

For each network and each variant, the 629 colour portraits are embedded and probed as in
``bench/quality/measure_backbone.py`` (a standardised multinomial logistic regression, C = 1,
leave one performer out), three times: on all 14 performers (the figure of the model card),
on the DEV performers only and on the HOLDOUT performers only (``curate/faces/holdout.py``:
P01, P02, P05, P08, P10, P12, P14 are held out; choices are made on DEV). Each variant is
``FRAMING,SIZE,GREY,FLIP,LAYER`` (default: one factor at a time from measure_backbone.py's):

- ``framing``: ``full`` (the whole 256-px picture, as ``measure_backbone.py``) or the face cut
  out around its landmarks (``curate.representations.framing.crop_box``) with that margin
  (1.2 is curate's default);
- ``layer``: ``embedding`` (the L2-normalised embedding curate uses), ``pooled`` (the backbone's
  pooled features before the embedding head), ``logits`` (the classification head);
- ``flip`` / ``none``: the mean of the image's and its mirror image's output, or the image's;
- ``size``: the input side (0: the network's own, 64);
- ``grey``: ``plain`` (Pillow's ITU-R 601 grey, what curate does) or ``equalize`` (histogram
  equalisation of the grey face, FER2013's crops being mostly full-range).

The face boxes come from curate's face analysis (cached). The run behind the model card
(``bench/results/issue24_colour_probe_variants.json``; the ``fer_resnet10t`` rows from the
default variants, the ``ferplus_resnet10t`` rows from)::

    python -m bench.experiments.colour_probe_variants ferplus_resnet10t --variants \
      "full,0,plain,none,embedding;1.2,0,plain,none,embedding;1.0,0,plain,none,embedding;\
    0.9,0,plain,none,embedding;1.1,0,plain,none,embedding;0.8,0,plain,none,embedding;\
    1.0,0,plain,flip,embedding;full,0,plain,flip,embedding;1.5,0,plain,none,embedding;\
    1.0,0,equalize,none,embedding;1.0,96,plain,none,embedding"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps

from bench.common.paths import DATA
from bench.common.probe import lopo_accuracy as lopo
from curate.faces.holdout import holdout_subjects

# one factor at a time from the first (measure_backbone.py's: whole picture, own size, plain grey,
# no flip, the embedding)
VARIANTS = (
    "full,0,plain,none,embedding",
    "full,0,plain,flip,embedding",
    "1.0,0,plain,none,embedding",
    "1.2,0,plain,none,embedding",
    "1.5,0,plain,none,embedding",
    "1.8,0,plain,none,embedding",
    "full,0,equalize,none,embedding",
    "full,96,plain,none,embedding",
    "full,0,plain,none,logits",
    "full,0,plain,none,pooled",
)


def outputs(
    model, images: list[Image.Image], size: int, mean: float, std: float, flip: bool
) -> dict:
    """The three layers' outputs (pooled, embedding, logits) of grey PIL images."""
    x = (
        torch.stack(
            [
                torch.from_numpy(
                    np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.float32)
                )
                for im in images
            ]
        )[:, None]
        / 255.0
    )
    x = (x - mean) / std
    outs = []
    with torch.inference_mode():
        for xx in [x, torch.flip(x, dims=[3])] if flip else [x]:
            pooled = model.backbone(xx)
            emb = model(xx)
            outs.append(
                {
                    "pooled": pooled.numpy(),
                    "embedding": emb.numpy(),
                    "logits": model.logits_from_embeddings(emb).numpy(),
                }
            )
    return {k: np.mean([o[k] for o in outs], axis=0) for k in outs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", default=["fer_resnet10t", "ferplus_resnet10t"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--variants",
        default=";".join(VARIANTS),
        help="semicolon-separated variants, each FRAMING,SIZE,GREY,FLIP,LAYER (SIZE 0: the network's own)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from curate.backbone import load_backbone
    from curate.faces.analyze import analyze_faces
    from curate.images import load_image
    from curate.representations.framing import crop_box

    root = args.data / "taiwanese-posed"
    m = pd.read_csv(root / "manifest.csv")
    paths = [str(root / p) for p in m["path"]]
    y, groups = m["label"].to_numpy(), m["subject"].to_numpy()
    hold = np.isin(groups, sorted(holdout_subjects(groups)))
    faces = analyze_faces(paths, blendshapes=True)
    boxes = faces["face_box"].tolist()
    grey = [load_image(p, 1) for p in paths]
    results = []
    for run in args.runs:
        loaded = load_backbone(None, run, device="cpu")
        model = loaded.model.eval()
        mean, std = float(loaded.data_config["mean"][0]), float(loaded.data_config["std"][0])
        own = int(loaded.data_config["input_size"][-1])
        for variant in args.variants.split(";"):
            margin, size_s, grey_s, flip_s, layer = variant.split(",")
            size = int(size_s) or own
            ims = []
            for im, b in zip(grey, boxes, strict=True):
                if margin != "full" and b is not None:
                    im = im.crop(tuple(int(round(v)) for v in crop_box(b, margin=float(margin))))
                ims.append(ImageOps.equalize(im) if grey_s == "equalize" else im)
            emb = outputs(model, ims, size, mean, std, flip_s == "flip")[layer]
            r = {
                "network": run,
                "framing": margin,
                "size": size,
                "grey": grey_s,
                "flip": flip_s == "flip",
                "layer": layer,
                "all14": round(lopo(emb, y, groups), 4),
                "dev": round(lopo(emb[~hold], y[~hold], groups[~hold]), 4),
                "holdout": round(lopo(emb[hold], y[hold], groups[hold]), 4),
            }
            results.append(r)
            print(json.dumps(r), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
