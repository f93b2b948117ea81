"""What the bench scripts share, imported as ``bench.common.<module>``: the folders
(:mod:`paths`), the FERPlus votes (:mod:`ferplus`), ranking metrics and the kNN baseline
(:mod:`metrics`), the leave-one-performer-out probe (:mod:`probe`), the fabricated screen
folder (:mod:`screen_folder`) and the headless browser (:mod:`browser`), which the tests use
too. The dev / holdout rule
is the package's own (:mod:`curate.faces.holdout`)."""
