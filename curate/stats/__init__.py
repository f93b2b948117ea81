"""The maths of the statistical boundary, shared by the screens and the trainer.

``statistical`` (the global null: thresholds, tuple distances), ``nulls`` (the class-aware
nulls), ``fused`` (the boundary's fused distance kernel: numba with ``curate[fast]``, numpy
without it) and ``simulate`` (``--calibrate``). Importing them loads neither the face stack
nor the built-in screens (``nulls`` uses only the label model of ``curate.screens.label``).
"""
