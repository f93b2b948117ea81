#!/usr/bin/env bash
# The README's main job: draw the bundled SYNTHETIC example, build triplets, screen
# them with the bundled backbone and write the HTML report. Runs offline.
#
#   bash examples/quickstart.sh [OUT]        (default OUT: runs/example)
set -euo pipefail
OUT=${1:-runs/example}
CURATE=${CURATE:-curate}
command -v "${CURATE%% *}" >/dev/null 2>&1 || CURATE=.venv/bin/curate

$CURATE example "$OUT/data"
$CURATE build-tuples "$OUT/data/manifest.csv" --out "$OUT/tuples" --per-anchor 3 --seed 0
$CURATE screen "$OUT/tuples" --out "$OUT/screen" --alpha-pos 0.05 --alpha-neg 0.05 --max-occlusion 0.8 --no-face keep --skip-near-duplicates-screen
echo "open $OUT/screen/report.html"
