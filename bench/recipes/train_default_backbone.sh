#!/usr/bin/env bash
# Train the bundled default backbone (issue 7) with curate's own commands.
#
#   DATA=../shared/data/fer2013 OUT=runs/default DEVICE=cuda EPOCHS=30 bash bench/recipes/train_default_backbone.sh
#
# DATA: FER2013 laid out as DATA/<split>/<class>/<image> (train and val);
# the train split is learnt, the val split measured. Everything is seeded.
set -euo pipefail
DATA=${DATA:-../shared/data/fer2013}
OUT=${OUT:-runs/default}
RUN=${RUN:-$OUT/run}
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-30}
MAX_STEPS=${MAX_STEPS:-}
CURATE=${CURATE:-curate}
SEED=${SEED:-0}

mkdir -p "$OUT"
# 1. validate the images (duplicates and broken files are excluded) and sample triplets
if [ ! -f "$OUT/tuples/tuples.parquet" ]; then
  $CURATE build-tuples "$DATA" --out "$OUT/tuples" --kind triplet --per-anchor 1 --seed "$SEED"
fi
# 2. train from random init with the boundary applied at every step
$CURATE finetune "$OUT/tuples" --out "$RUN" \
  --backbone resnet10t --weights none --in-chans 1 --input-size 64 \
  --embed-dim 128 --scale 1.0 --epochs "$EPOCHS" ${MAX_STEPS:+--max-steps "$MAX_STEPS"} \
  --batch-tuples 128 --lr 2e-3 --weight-decay 5e-4 --ce-weight 1.0 \
  --screen-every-step --alpha-pos 0.05 --alpha-neg 0.05 --null effective --screen-warmup-steps 500 \
  --seed "$SEED" --device "$DEVICE" --val-split val
# 3. measure on the val split
$CURATE evaluate "$RUN" "$DATA/val" --out-file "$OUT/evaluate_val.json" --device "$DEVICE"
