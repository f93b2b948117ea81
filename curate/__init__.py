"""curate: clean facial-expression training data for metric learning.

The public functions are imported lazily so ``import curate`` stays fast and does
not pull in torch until a stage needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CurateError": "curate.errors",
    "make_example": "curate.synthetic",
    "build_tuples": "curate.build",
    "ingest": "curate.ingest",
    "sample_tuples": "curate.tuples",
    "load_backbone": "curate.backbone",
    "embed_images": "curate.embed",
    "fit_boundary": "curate.screens.statistical",
    "finetune": "curate.train.loop",
    "FinetuneConfig": "curate.train.config",
    "load_run": "curate.runs",
    "evaluate": "curate.train.evaluate",
    "predict": "curate.train.evaluate",
    "write_report": "curate.report",
    "analyze_faces": "curate.faces",
    "resolve_face_model": "curate.faces",
    "faces_for_source": "curate.faces",
    "screen_faces": "curate.screens.faces",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'curate' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
