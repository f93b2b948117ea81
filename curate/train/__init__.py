"""Fine-tuning with the statistical boundary applied at every step (``curate finetune``),
and the run's use on images (``curate evaluate``, ``curate predict``).

Modules: :mod:`~curate.train.config` (:class:`FinetuneConfig`, free of torch, so the
command line reads its defaults cheaply), :mod:`~curate.train.data` (tuples, images in
memory, batches, augmentation), :mod:`~curate.train.loss` (tuple losses and the in-loop
boundary), :mod:`~curate.train.loop` (:func:`finetune`), :mod:`~curate.train.evaluate`
(:func:`evaluate`, :func:`predict`) and :mod:`~curate.train.report`. The network and
the run format are in :mod:`curate.runs`. The public functions are exported lazily by
:mod:`curate` (``curate.finetune``, ``curate.FinetuneConfig``, ``curate.load_run``, ...).
"""
