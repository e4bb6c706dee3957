#!/usr/bin/env bash
# The demo's held-out prompts through every defence (configs/compare/demo_defences.yaml), for a demo folder that
# `scripts/demo.sh WORK_DIR ...` made: scripts/demo_defences.sh [WORK_DIR=runs/demo]. The trained baselines come
# first when missing or older than the SAPT records: prompt tuning (configs/demo/fit_prompt_tuning.yaml), and DRO
# (its refusal probe, configs/demo/probe_refusal.yaml, then configs/demo/fit_dro.yaml). Extra arguments:
# DEMO_TEST_ARGS per defence's `test`, DEMO_PT_ARGS for the two `fit`s (the reduced demo test uses them), and
# DEMO_REFUSAL_PROBE: a probe file DRO uses as its refusal direction instead of fitting one. The reduced demo test
# needs it: its 20-token answers to ten validation prompts hold no refusal to learn a direction from, and the
# refusal probe then stops (as it should). Table: WORK_DIR/defences/compare.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
PY=${PYTHON:-python}
C="$WORK/configs"
mkdir -p "$C"
sed -e "s#runs/demo\(/\|\$\)#$WORK\1#g" configs/demo/eval.yaml >"$C/eval.yaml"
for f in fit_prompt_tuning fit_dro probe_refusal; do
  sed -e "s#runs/demo\(/\|\$\)#$WORK\1#g" "configs/demo/$f.yaml" >"$C/$f.yaml"
done
sed -e "s#configs/demo/eval.yaml#$C/eval.yaml#" -e "s#runs/demo\(/\|\$\)#$WORK\1#g" configs/compare/demo_defences.yaml \
  >"$C/demo_defences.yaml"
test_args=""
for a in ${DEMO_TEST_ARGS:-}; do test_args="$test_args\"$a\","; done
start=$(date +%s)
if [ ! -f "$WORK/prompt_tuning/adapter_config.json" ] || [ "$WORK/data/sapt_train_harmful.jsonl" -nt "$WORK/prompt_tuning/adapter_config.json" ]; then
  echo "== the prompt-tuning baseline: fit --config $C/fit_prompt_tuning.yaml"
  $PY -m reminder_lightning fit --config "$C/fit_prompt_tuning.yaml" ${DEMO_PT_ARGS:-}
fi
if [ ! -f "$WORK/dro/adapter_config.json" ] || [ "$WORK/data/sapt_train_harmful.jsonl" -nt "$WORK/dro/adapter_config.json" ]; then
  if [ -n "${DEMO_REFUSAL_PROBE:-}" ]; then
    echo "== the DRO baseline: fit --config $C/fit_dro.yaml, refusal direction given: $DEMO_REFUSAL_PROBE"
    $PY -m reminder_lightning fit --config "$C/fit_dro.yaml" ${DEMO_PT_ARGS:-} \
      --model.objective.init_args.refusal_probe "$DEMO_REFUSAL_PROBE"
  else
    echo "== the DRO baseline: probe --config $C/probe_refusal.yaml, then fit --config $C/fit_dro.yaml"
    $PY -m reminder_lightning probe --config "$C/probe_refusal.yaml"
    $PY -m reminder_lightning fit --config "$C/fit_dro.yaml" ${DEMO_PT_ARGS:-}
  fi
fi
$PY -m reminder_lightning compare --config "$C/demo_defences.yaml" --test_args "[${test_args%,}]"
echo "Defences compared in $(($(date +%s) - start)) s: $WORK/defences/compare.md"
