#!/usr/bin/env bash
# The demo's spread over training seeds: the reminder trained with each seed on one split (same prompts, same
# answers, same prompt-end probe), every run calibrated and evaluated as `make demo` does, then one table.
#   scripts/demo_seeds.sh [WORK_DIR=runs/demo] [SPLIT_SEED=1] [SEEDS="0 1 2"]
# Seed 0 is the run `make demo` makes in WORK_DIR (reused when its compare.md exists); seed N goes to
# WORK_DIR/train-seedN. Tables: WORK_DIR/seeds/compare.md (held-out) and WORK_DIR/seeds/validation/compare.md.
# DEMO_SEEDS_GATE=regate compares the gates scripts/demo_regate.sh recalibrated instead (into WORK_DIR/seeds-regate).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
SPLIT_SEED=${2:-1}
SEEDS=${3:-"0 1 2"}
PY=${PYTHON:-python}
held_out="$WORK/eval/none"
validation="$WORK/eval/answers"
labels="none"
for s in $SEEDS; do
  run="$WORK/train-seed$s"
  [ "$s" = 0 ] && run="$WORK"
  [ -f "$run/compare.md" ] || bash scripts/demo.sh "$WORK" "$SPLIT_SEED" "$s" "$run"
  sub=$run${DEMO_SEEDS_GATE:+/$DEMO_SEEDS_GATE}  # DEMO_SEEDS_GATE=regate: the gates of scripts/demo_regate.sh
  held_out="$held_out, $sub/eval/safety_reminder"
  validation="$validation, $sub/eval/val_safety_reminder"
  labels="$labels, seed$s"
done
OUT="$WORK/seeds${DEMO_SEEDS_GATE:+-$DEMO_SEEDS_GATE}"
$PY -m reminder_lightning compare --runs "[$validation]" --labels "[$labels]" --output_dir "$OUT/validation"
$PY -m reminder_lightning compare --runs "[$held_out]" --labels "[$labels]" --output_dir "$OUT"
