"""The maths of the statistical boundary, shared by the screens and the trainer.

``statistical`` (the global null: thresholds, tuple distances), ``label_model`` (the
image-level label verdicts: the label screen's maths and the nulls' weights), ``nulls`` (the
class-aware nulls), ``fused`` (the boundary's fused distance kernel: numba with
``curate[fast]``, numpy without it) and ``simulate`` (``--calibrate``). No module here imports
a screen or the face stack.
"""
