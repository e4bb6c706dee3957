#!/usr/bin/env bash
# A trained demo reminder's gate calibrated again with the `probe` command (configs/demo/probe_gate.yaml: the
# candidates and rule the demo's ProbeCalibration uses), then evaluated as steps 6, 8 and 9 of scripts/demo.sh do:
# RUN_DIR/regate/{reminder.safetensors, gate.json, validation/compare.md, compare.md}. For a gate setting changed after
# training (chosen on validation answers), without training the reminder again.
#   scripts/demo_regate.sh [WORK_DIR=runs/demo] [RUN_DIR=WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
RUN=${2:-$WORK}
PY=${PYTHON:-python}
OUT="$RUN/regate"
C="$RUN/configs"  # rendered by scripts/demo.sh for this run
mkdir -p "$OUT"
sed -e "s#runs/demo\(/\|\$\)#$WORK\1#g" configs/demo/probe_gate.yaml >"$OUT/probe_gate.yaml"
start=$(date +%s)
echo "== the gate of $RUN/reminder.safetensors, calibrated again"
$PY -m reminder_lightning probe --config "$OUT/probe_gate.yaml" --reminder "$RUN/reminder.safetensors" \
  --reminder_output "$OUT/reminder.safetensors" --output "$OUT/gate.safetensors" ${DEMO_PROBE_ARGS:-}
artifact="--model.defence.init_args.artifact=$OUT/reminder.safetensors"
echo "== [$(($(date +%s) - start)) s] held-out and validation prompts with the recalibrated gate"
$PY -m reminder_lightning test --config "$C/eval.yaml" --config "$C/eval_reminder.yaml" "$artifact" \
  --model.output_dir "$OUT/eval/safety_reminder" ${DEMO_TEST_ARGS:-}
$PY -m reminder_lightning test --config "$C/val_reminder.yaml" "$artifact" \
  --model.output_dir "$OUT/eval/val_safety_reminder" ${DEMO_TEST_ARGS:-}
$PY -m reminder_lightning compare --runs "[$WORK/eval/answers, $OUT/eval/val_safety_reminder]" \
  --output_dir "$OUT/validation"
$PY -m reminder_lightning compare --runs "[$WORK/eval/none, $OUT/eval/safety_reminder]" --output_dir "$OUT"
echo "Recalibrated and evaluated in $(($(date +%s) - start)) s: $OUT/compare.md"
