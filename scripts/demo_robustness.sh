#!/usr/bin/env bash
# The demo's robustness run, after `make demo`: two hardening options (the gate recalibrated on four layers at once,
# `probe --config configs/demo/probe_layers.yaml`; adversarial calibration, `harden --config
# configs/harden/demo.yaml`), then every defence against attacks that ignore it and attacks that know it, over
# budgets (`robustness --config configs/robustness/demo.yaml`): runs/demo/robustness/robustness.md, .json, .png.
# With `full`, the gate recalibrated for randomised check positions too (configs/demo/probe_jitter.yaml), then
# configs/robustness/demo_full.yaml (every option, the eps axis too) in the same folder. With `budgets` (after a
# fast or full run, which made the hardened gate), configs/robustness/demo_budgets.yaml: the budget axes (adaptive
# PGD over steps and eps, adaptive GCG over steps) on the plain, always-on and hardened reminder, in its own folder.
# With `text` (after `make demo`), the gate hardened against images and text (`harden --config
# configs/harden/demo_text.yaml`, when missing), then configs/robustness/demo_text.yaml: that gate under the budget
# study's adaptive PGD and GCG, in its own folder.
# With `baselines` (after `make demo`), configs/robustness/demo_baselines.yaml: the baselines against the PGD image
# and against the image fitted through each of them (defence-aware PGD), the prompt-tuning baseline trained first
# when it is missing or older than the SAPT records.
#   scripts/demo_robustness.sh [WORK_DIR=runs/demo] [fast|full|budgets|baselines|text]
# Extra arguments per step (the reduced demo test shrinks the run with them): DEMO_PROBE_ARGS, DEMO_HARDEN_ARGS,
# DEMO_ROBUSTNESS_ARGS.
set -euo pipefail
set -f  # the extra arguments may hold JSON lists: no globbing
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
MODE=${2:-fast}
case "$MODE" in fast | full | budgets | baselines | text) ;; *) echo "usage: $0 [WORK_DIR] [fast|full|budgets|baselines|text]" >&2; exit 2 ;; esac
PY=${PYTHON:-python}
C="$WORK/configs/robustness"
mkdir -p "$C"
for f in configs/demo/probe_jitter.yaml configs/demo/probe_layers.yaml configs/demo/probe_gate.yaml \
  configs/demo/eval.yaml configs/harden/demo.yaml configs/harden/demo_text.yaml configs/robustness/demo.yaml configs/robustness/demo_full.yaml \
  configs/robustness/demo_budgets.yaml configs/robustness/demo_baselines.yaml configs/robustness/demo_text.yaml \
  configs/demo/fit_prompt_tuning.yaml; do
  sed -e "s#configs/demo/eval.yaml#$C/demo_eval.yaml#" -e "s#configs/demo/probe_gate.yaml#$C/demo_probe_gate.yaml#" \
    -e "s#runs/demo\(/\|\$\)#$WORK\1#g" "$f" >"$C/$(basename "$(dirname "$f")")_$(basename "$f")"
done
start=$(date +%s)
step() { echo; echo "== [$(($(date +%s) - start)) s] $*"; }
robust() {  # robust CONFIG FOLDER: one robustness run, its time, then stop
  $PY -m reminder_lightning robustness --config "$1" ${DEMO_ROBUSTNESS_ARGS:-}
  echo "Robustness run finished in $(($(date +%s) - start)) s: $WORK/$2/robustness.md"
  exit 0
}
if [ "$MODE" = baselines ]; then
  PT="$WORK/prompt_tuning/adapter_config.json"
  if [ ! -f "$PT" ] || [ "$WORK/data/sapt_train_harmful.jsonl" -nt "$PT" ]; then
    step "the prompt-tuning baseline: fit --config $C/demo_fit_prompt_tuning.yaml"
    $PY -m reminder_lightning fit --config "$C/demo_fit_prompt_tuning.yaml" ${DEMO_PT_ARGS:-}
  fi
  step "the baselines against the PGD image and the image fitted through each"
  robust "$C/robustness_demo_baselines.yaml" robustness_baselines
fi
if [ "$MODE" = budgets ]; then
  if [ ! -f "$WORK/harden/reminder.safetensors" ]; then
    echo "$WORK/harden/reminder.safetensors is missing: run scripts/demo_robustness.sh $WORK first (it hardens the gate)." >&2
    exit 2
  fi
  step "the budget axes: adaptive PGD over steps and eps, adaptive GCG over steps"
  robust "$C/robustness_demo_budgets.yaml" robustness_budgets
fi
if [ "$MODE" = text ]; then
  if [ ! -f "$WORK/harden_text/reminder.safetensors" ]; then
    step "adversarial calibration against images and text: adaptive PGD and adaptive GCG against the gate, a refit"
    $PY -m reminder_lightning harden --config "$C/harden_demo_text.yaml" ${DEMO_HARDEN_ARGS:-}
  fi
  step "the gate hardened against text under adaptive PGD and GCG"
  robust "$C/robustness_demo_text.yaml" robustness_text
fi
if [ "$MODE" = full ]; then
  step "the gate recalibrated for randomised check positions"
  $PY -m reminder_lightning probe --config "$C/demo_probe_jitter.yaml" ${DEMO_PROBE_ARGS:-}
fi
step "the gate recalibrated on four layers at once"
$PY -m reminder_lightning probe --config "$C/demo_probe_layers.yaml" ${DEMO_PROBE_ARGS:-}
step "adversarial calibration: rounds of adaptive PGD against the gate and a refit"
$PY -m reminder_lightning harden --config "$C/harden_demo.yaml" ${DEMO_HARDEN_ARGS:-}
step "every defence against every attack and budget"
ROBUSTNESS="$C/robustness_demo.yaml"
[ "$MODE" = full ] && ROBUSTNESS="$C/robustness_demo_full.yaml"
robust "$ROBUSTNESS" robustness
