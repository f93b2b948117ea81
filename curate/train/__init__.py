"""Fine-tuning with the statistical boundary applied at every step (``curate finetune``),
and the run's use on images (``curate evaluate``, ``curate predict``).

Modules: :mod:`~curate.train.model` (network and run format, :func:`load_run`),
:mod:`~curate.train.data` (tuples, images in memory, batches, augmentation),
:mod:`~curate.train.loss` (tuple losses and the in-loop boundary),
:mod:`~curate.train.loop` (:func:`finetune`), :mod:`~curate.train.evaluate`
(:func:`evaluate`, :func:`predict`) and :mod:`~curate.train.report`.
"""

from __future__ import annotations

from curate.train.evaluate import evaluate, predict
from curate.train.loop import FinetuneConfig, FinetuneResult, finetune
from curate.train.model import EmbeddingNet, load_run

__all__ = ["EmbeddingNet", "FinetuneConfig", "FinetuneResult", "evaluate", "finetune", "load_run", "predict"]
