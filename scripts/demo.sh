#!/usr/bin/env bash
# The offline demo (`make demo`) as a chain of the commands a user runs.
#   scripts/demo.sh [WORK_DIR=runs/demo] [SPLIT_SEED=1] [TRAIN_SEED=0] [RUN_DIR=WORK_DIR]
# WORK_DIR holds what every training run of a split shares (prompts, the model's own answers, the prompt-end probe,
# the undefended held-out answers); RUN_DIR what one training run makes (reminder, gate report, defended answers,
# compare.md). The configs under configs/demo/ name runs/demo; they are rendered for both into RUN_DIR/configs/.
# Extra arguments per step (the reduced demo test uses them): DEMO_PROMPTS_ARGS, DEMO_TEST_ARGS, DEMO_FIT_ARGS.
# DEMO_VALIDATION_ONLY=1 stops after the validation comparison (step 6), the held-out prompts unread: how a setting
# is tried, e.g. DEMO_FIT_ARGS="--data.init_args.sapt.cut check_points" with a fourth argument for its own folder.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
SPLIT_SEED=${2:-1}
TRAIN_SEED=${3:-0}
RUN=${4:-$WORK}
PY=${PYTHON:-python}
C="$RUN/configs"
mkdir -p "$C"
for f in configs/demo/*.yaml; do
  sed -e "s#runs/demo/\(reminder.safetensors\|gate_calibration.json\|eval/safety_reminder\|eval/val_safety_reminder\)#$RUN/\1#g" \
    -e "s#\(default_root_dir\|save_dir\): runs/demo\$#\1: $RUN#" -e "s#runs/demo\(/\|\$\)#$WORK\1#g" "$f" >"$C/$(basename "$f")"
done
start=$(date +%s)
step() { echo; echo "== [$(($(date +%s) - start)) s] $*"; }

if [ "$RUN" != "$WORK" ] && [ -f "$WORK/probe.safetensors" ]; then
  step "1-4. the split's data, answers and prompt-end probe are in $WORK already (another training seed)"
else
  step "1. prompts: split (seed $SPLIT_SEED) and typographic images"
  $PY -m reminder_lightning.demo prompts --work_dir "$WORK" --seed "$SPLIT_SEED" ${DEMO_PROMPTS_ARGS:-}
  step "2. the model answers its train, validation and gate prompts, undefended"
  $PY -m reminder_lightning test --config "$C/answers.yaml" ${DEMO_TEST_ARGS:-}
  step "3. SAPT records from those answers"
  $PY -m reminder_lightning.demo records --work_dir "$WORK"
  step "4. the reference's prompt-end probe (for SAPT's loss)"
  $PY -m reminder_lightning probe --config "$C/probe.yaml"
fi
step "5. SAPT training (seed $TRAIN_SEED), then gate calibration on validation answers, then export"
$PY -m reminder_lightning fit --config "$C/fit.yaml" --seed_everything "$TRAIN_SEED" \
  --data.init_args.seed "$TRAIN_SEED" ${DEMO_FIT_ARGS:-}
step "6. validation prompts, with the Safety Reminder (what settings are chosen on)"
$PY -m reminder_lightning test --config "$C/val_reminder.yaml" ${DEMO_TEST_ARGS:-}
$PY -m reminder_lightning compare --runs "[$WORK/eval/answers, $RUN/eval/val_safety_reminder]" \
  --output_dir "$RUN/validation"
if [ -n "${DEMO_VALIDATION_ONLY:-}" ]; then
  echo "Validation run finished in $(($(date +%s) - start)) s: $RUN/validation/compare.md (held-out prompts unread)"
  exit 0
fi
step "7. held-out prompts, undefended"
$PY -m reminder_lightning test --config "$C/eval.yaml" ${DEMO_TEST_ARGS:-}
step "8. held-out prompts, with the Safety Reminder"
$PY -m reminder_lightning test --config "$C/eval.yaml" --config "$C/eval_reminder.yaml" ${DEMO_TEST_ARGS:-}
step "9. compare: held-out, undefended vs the Safety Reminder"
$PY -m reminder_lightning compare --runs "[$WORK/eval/none, $RUN/eval/safety_reminder]" --output_dir "$RUN"
echo "Demo finished in $(($(date +%s) - start)) s: $RUN/compare.md"
