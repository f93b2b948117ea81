#!/usr/bin/env bash
# Train the successor of the bundled fer_resnet10t (issue 24) with curate's own commands, on
# the CPU under bfloat16 autocast: FER2013 Training with the FERPlus votes as soft targets,
# warm-started from fer_resnet10t (SCREEN=1: screened once by `curate screen` first).
#
#   OUT=runs/ferplus MAX_STEPS=900 bash bench/recipes/train_ferplus_backbone.sh
#
# DATA: FER2013 as DATA/<split>/<class>/<image> (train and val); VOTES: the FERPlus votes
# file (bench/common/ferplus.py describes both). Everything is seeded.
set -euo pipefail
DATA=${DATA:-../shared/data/fer2013}
VOTES=${VOTES:-../shared/data/ferplus/ferplus_votes_train_val.csv}
OUT=${OUT:-runs/ferplus}
RUN=${RUN:-$OUT/run}
DEVICE=${DEVICE:-cpu}
MAX_STEPS=${MAX_STEPS:-900}
INPUT_SIZE=${INPUT_SIZE:-}   # empty: the weights' own size (64 px)
CURATE=${CURATE:-curate}
PYTHON=${PYTHON:-python}
SEED=${SEED:-0}

mkdir -p "$OUT"
# 1. the manifest: every image with its votes for the seven classes (soft_<class>; contempt,
#    unknown and not-a-face votes dropped); label = plurality (see bench/common/ferplus.py soft-manifest)
[ -f "$OUT/manifest.csv" ] || $PYTHON -m bench.common.ferplus soft-manifest --out "$OUT/manifest.csv" \
  --data-root "$DATA" --votes "$VOTES"
# 2. validate the images (byte-identical duplicates excluded) and sample one triplet per anchor
[ -f "$OUT/tuples/tuples.parquet" ] || $CURATE build-tuples "$OUT/manifest.csv" --out "$OUT/tuples" \
  --kind triplet --per-anchor 1 --seed "$SEED"
# 3. (not used for the shipped network; measured not to help with votes: see its model card) screen once with the bundled network
#    before training: SCREEN=1 trains on the kept tuples of the near-duplicate/leakage screen and
#    the statistical tuple boundary; not the label screen (the bundled network learnt FER2013's
#    original labels, so it would reject exactly the images the votes relabel), not the face,
#    not-a-face and quality screens (48x48 crops; CPU time)
TRAIN_ON="$OUT/tuples"
if [ "${SCREEN:-0}" = 1 ]; then
  [ -f "$OUT/screen/kept.parquet" ] || $CURATE screen "$OUT/tuples" --out "$OUT/screen" \
    --skip-faces-screen --skip-label-screen --skip-not-face-screen --skip-quality-screen --no-report \
    --workers 1 --device "$DEVICE" --seed "$SEED"
  TRAIN_ON="$OUT/screen"
fi
# 4. fine-tune the bundled network at 64 px (its own size), the votes as soft targets
$CURATE finetune "$TRAIN_ON" --out "$RUN" --weights fer_resnet10t ${INPUT_SIZE:+--input-size "$INPUT_SIZE"} \
  --soft-label-prefix soft_ --ce-on all --ce-weight 1.0 --no-screen-every-step \
  --augment-kind photos --batch-tuples 64 --lr 1e-3 --weight-decay 5e-4 \
  --epochs 10 --max-steps "$MAX_STEPS" --amp --seed "$SEED" --device "$DEVICE" \
  --checkpoint-every 100 --val-split val
# 5. measure (FERPlus plurality on PublicTest, colour probe), beside the bundled network
$PYTHON -m bench.quality.measure_backbone "$RUN" fer_resnet10t --json "$OUT/measures.json"
# 6. the bundled copy (float16 weights) and its measures
if [ -n "${PACKAGE:-}" ]; then
  $PYTHON -m bench.recipes.package_model "$RUN" "$PACKAGE"
  $PYTHON -m bench.quality.measure_backbone "$PACKAGE" --json "$OUT/measures_packaged.json"
fi
