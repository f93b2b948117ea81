"""curate: clean facial-expression training data for metric learning.

Every command is a function here, typed and imported lazily (``import curate`` stays
fast and loads neither torch nor the screens until a function is used):

    curate.make_example       curate example
    curate.build_tuples       curate build-tuples
    curate.faces_for_source   curate faces
    curate.screen             curate screen
    curate.write_report       curate report
    curate.export             curate export
    curate.finetune           curate finetune
    curate.evaluate           curate evaluate
    curate.predict            curate predict
    curate.list_models        curate models

``curate.screen``, ``curate.export`` and ``curate.ingest`` are the functions, also after
their modules are imported: the modules (``curate/screen.py``, ...) are reached with
``from curate.screen import ...`` or ``importlib.import_module("curate.screen")``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

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
    "fit_boundary": "curate.stats.statistical",
    "screen": "curate.screen",
    "export": "curate.export",
    "finetune": "curate.train.loop",
    "FinetuneConfig": "curate.train.config",
    "load_run": "curate.runs",
    "evaluate": "curate.train.evaluate",
    "predict": "curate.train.evaluate",
    "write_report": "curate.report",
    "list_models": "curate.models",
    "analyze_faces": "curate.faces",
    "resolve_face_model": "curate.faces",
    "faces_for_source": "curate.faces",
    "screen_faces": "curate.screens.faces",
}

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports on first use
    from curate.backbone import load_backbone as load_backbone
    from curate.build import build_tuples as build_tuples
    from curate.embed import embed_images as embed_images
    from curate.errors import CurateError as CurateError
    from curate.export import export as export
    from curate.faces import analyze_faces as analyze_faces
    from curate.faces import faces_for_source as faces_for_source
    from curate.faces import resolve_face_model as resolve_face_model
    from curate.ingest import ingest as ingest
    from curate.models import list_models as list_models
    from curate.report import write_report as write_report
    from curate.runs import load_run as load_run
    from curate.screen import screen as screen
    from curate.screens.faces import screen_faces as screen_faces
    from curate.stats.statistical import fit_boundary as fit_boundary
    from curate.synthetic import make_example as make_example
    from curate.train.config import FinetuneConfig as FinetuneConfig
    from curate.train.evaluate import evaluate as evaluate
    from curate.train.evaluate import predict as predict
    from curate.train.loop import finetune as finetune
    from curate.tuples import sample_tuples as sample_tuples


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'curate' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


class _Package(types.ModuleType):
    """The ``curate`` package object: importing a submodule whose name is a public
    function (``curate/screen.py``) does not replace the function ``curate.screen``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = sorted(_EXPORTS)
