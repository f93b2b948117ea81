"""Data hygiene: near-duplicates and split leakage, non-faces, unusable images.

Pure functions (arrays and tables in, arrays and tables out); the screens in
``curate.screens`` wrap them. ``docs/hygiene.md`` documents the methods, thresholds and
the measurements behind them.

- :mod:`curate.hygiene.windows`: exact area resampling of image windows (the one
  primitive the descriptors and the pixel check share).
- :mod:`curate.hygiene.search`: candidate pairs from an inverted-file cell join (no
  N x N matrix), with a brute-force reference.
- :mod:`curate.hygiene.near_duplicates`: descriptors, pixel-level confirmation, groups,
  kept representative and cross-split leakage.
- :mod:`curate.hygiene.quality`: blank, dark, bright, blurred, odd-shaped, tiny images.
- :mod:`curate.hygiene.not_face`: a not-a-face score that needs no face detector.
"""
