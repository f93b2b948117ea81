"""Write a bundled network's training sample (``training_images.txt``): the images it
trained on, as the first 16 hex digits of the SHA-256 of those whose SHA-256 starts with
``0`` (:func:`curate.representations.head.write_training_sample`). ``curate screen`` reads it
to warn when the dataset it screens is the network's training data (its head has seen those
labels).

    python -m bench.recipes.training_sample MODEL_DIR IMAGE_FOLDER [WHAT]

Both bundled networks trained on FER2013 Training (``../shared/data/fer2013/train``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from curate.io import file_sha256
from curate.representations.head import TRAINING_SAMPLE_FILE, write_training_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "model_dir", type=Path, help="the bundled network's folder (curate/models/NAME)"
    )
    ap.add_argument("image_folder", type=Path, help="the images it trained on")
    ap.add_argument(
        "what", nargs="?", help="how training_images.txt names them (default: the folder's name)"
    )
    args = ap.parse_args()
    model, folder = args.model_dir, args.image_folder
    what = args.what if args.what is not None else folder.name
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    digests = [file_sha256(p) for p in files]
    n = write_training_sample(digests, model / TRAINING_SAMPLE_FILE, what)
    print(f"{model / TRAINING_SAMPLE_FILE}: {n} of {len(set(digests))} distinct training images")


if __name__ == "__main__":
    main()
