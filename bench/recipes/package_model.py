"""Package a fine-tuning run as a bundled model folder (``curate/models/NAME``): its
``config.json`` (``pretrained_from`` reduced to a bundled model's name when it was one) and
its weights stored as float16 (half the size; curate loads them into float32).

    python -m bench.recipes.package_model RUN curate/models/NAME
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from curate.io import file_sha256
from curate.models import MODELS_DIR


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("dest", type=Path)
    args = p.parse_args()
    cfg = json.loads((args.run / "config.json").read_text())
    src = cfg.get("pretrained_from")
    if src and Path(src).resolve().parent == MODELS_DIR.resolve():
        cfg["pretrained_from"] = Path(src).name
    state = load_file(str(args.run / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    args.dest.mkdir(parents=True, exist_ok=True)
    save_file(half, str(args.dest / "model.safetensors"))
    (args.dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    size = (args.dest / "model.safetensors").stat().st_size
    print(
        f"wrote {args.dest}: model.safetensors {size / 1e6:.1f} MB, "
        f"sha256 {file_sha256(args.dest / 'model.safetensors')}"
    )


if __name__ == "__main__":
    main()
